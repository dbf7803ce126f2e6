/*
 * test_plan.c - the pure planner, as a table over every combination of
 *   desired {none, running, stopped, reboot change, metadata change, broken}
 * x record  {none, each of the 8 phases (Deleting = tombstone), step in progress}
 * x observed {alive, dead, pid reused}
 * with each row's expected action written out, plus targeted tests of the
 * backoff, restart policies, broken files, ordering and determinism.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "reconciler/plan.h"

enum d_kind {
	D_NONE,
	D_RUNNING,
	D_STOPPED,
	D_REBOOT,
	D_META,
	D_BROKEN,
	D_KIND_MAX
};
enum r_kind {
	R_NONE,
	R_PENDING,
	R_CREATING,
	R_STARTING,
	R_RUNNING,
	R_STOPPING,
	R_STOPPED,
	R_FAILED,
	R_DELETING,
	R_STEP,
	R_STOP_WAIT, /* a stop waiting for its VMM to exit (stop_stage set) */
	R_KIND_MAX
};
enum o_kind {
	O_NA,
	O_ALIVE,
	O_DEAD,
	O_REUSED,
	O_KIND_MAX
};

/* Expected result of one row. X: no action at all (the name exists nowhere). */
#define X PLAN_ACTION_MAX

struct row {
	enum d_kind d;
	enum r_kind r;
	enum o_kind o;
	enum plan_action_type want;
	const char *reason;
	enum vm_phase demote_to; /* for DEMOTE rows */
};

#define F VM_PHASE_FAILED
#define NA VM_PHASE_MAX

/* clang-format off */
static const struct row table[] = {
	/* ---- no spec: everything recorded is deleted ---------------------------------- */
	{ D_NONE, R_NONE,     O_NA,     X,            NULL,                 NA },
	{ D_NONE, R_PENDING,  O_ALIVE,  PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_PENDING,  O_DEAD,   PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_PENDING,  O_REUSED, PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_CREATING, O_ALIVE,  PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_CREATING, O_DEAD,   PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_CREATING, O_REUSED, PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STARTING, O_ALIVE,  PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STARTING, O_DEAD,   PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STARTING, O_REUSED, PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_RUNNING,  O_ALIVE,  PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_RUNNING,  O_DEAD,   PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_RUNNING,  O_REUSED, PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STOPPING, O_ALIVE,  PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STOPPING, O_DEAD,   PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STOPPING, O_REUSED, PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STOPPED,  O_ALIVE,  PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STOPPED,  O_DEAD,   PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STOPPED,  O_REUSED, PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_FAILED,   O_ALIVE,  PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_FAILED,   O_DEAD,   PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_FAILED,   O_REUSED, PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_DELETING, O_ALIVE,  PLAN_DELETE,  "Deleting",           NA },
	{ D_NONE, R_DELETING, O_DEAD,   PLAN_DELETE,  "Deleting",           NA },
	{ D_NONE, R_DELETING, O_REUSED, PLAN_DELETE,  "Deleting",           NA },
	{ D_NONE, R_STEP,     O_ALIVE,  PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STEP,     O_DEAD,   PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STEP,     O_REUSED, PLAN_DELETE,  "SpecRemoved",        NA },
	{ D_NONE, R_STOP_WAIT, O_ALIVE,  PLAN_RESUME,  "StopInProgress",   NA },
	{ D_NONE, R_STOP_WAIT, O_DEAD,   PLAN_RESUME,  "StopInProgress",   NA },
	{ D_NONE, R_STOP_WAIT, O_REUSED, PLAN_RESUME,  "StopInProgress",   NA },

	/* ---- spec running, same as recorded ------------------------------------------------ */
	{ D_RUNNING, R_NONE,     O_NA,     PLAN_CREATE,  "NewSpec",          NA },
	{ D_RUNNING, R_PENDING,  O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_RUNNING, R_PENDING,  O_DEAD,   PLAN_START,   "Start",            NA },
	{ D_RUNNING, R_PENDING,  O_REUSED, PLAN_START,   "Start",            NA },
	{ D_RUNNING, R_CREATING, O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_RUNNING, R_CREATING, O_DEAD,   PLAN_START,   "Start",            NA },
	{ D_RUNNING, R_CREATING, O_REUSED, PLAN_START,   "Start",            NA },
	{ D_RUNNING, R_STARTING, O_ALIVE,  PLAN_NONE,    "UpToDate",         NA },
	{ D_RUNNING, R_STARTING, O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_RUNNING, R_STARTING, O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_RUNNING, R_RUNNING,  O_ALIVE,  PLAN_NONE,    "UpToDate",         NA },
	{ D_RUNNING, R_RUNNING,  O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_RUNNING, R_RUNNING,  O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_RUNNING, R_STOPPING, O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_RUNNING, R_STOPPING, O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_RUNNING, R_STOPPING, O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_RUNNING, R_STOPPED,  O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_RUNNING, R_STOPPED,  O_DEAD,   PLAN_START,   "DesiredRunning",   NA },
	{ D_RUNNING, R_STOPPED,  O_REUSED, PLAN_START,   "DesiredRunning",   NA },
	{ D_RUNNING, R_FAILED,   O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_RUNNING, R_FAILED,   O_DEAD,   PLAN_START,   "Retry",            NA },
	{ D_RUNNING, R_FAILED,   O_REUSED, PLAN_START,   "Retry",            NA },
	{ D_RUNNING, R_DELETING, O_ALIVE,  PLAN_DELETE,  "Deleting",         NA },
	{ D_RUNNING, R_DELETING, O_DEAD,   PLAN_DELETE,  "Deleting",         NA },
	{ D_RUNNING, R_DELETING, O_REUSED, PLAN_DELETE,  "Deleting",         NA },
	{ D_RUNNING, R_STEP,     O_ALIVE,  PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_RUNNING, R_STEP,     O_DEAD,   PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_RUNNING, R_STEP,     O_REUSED, PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_RUNNING, R_STOP_WAIT, O_ALIVE,  PLAN_RESUME,  "StopInProgress",   NA },
	{ D_RUNNING, R_STOP_WAIT, O_DEAD,   PLAN_RESUME,  "StopInProgress",   NA },
	{ D_RUNNING, R_STOP_WAIT, O_REUSED, PLAN_RESUME,  "StopInProgress",   NA },

	/* ---- spec says stopped --------------------------------------------------------------- */
	{ D_STOPPED, R_NONE,     O_NA,     PLAN_CREATE,  "NewSpec",          NA },
	{ D_STOPPED, R_PENDING,  O_ALIVE,  PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_PENDING,  O_DEAD,   PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_PENDING,  O_REUSED, PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_CREATING, O_ALIVE,  PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_CREATING, O_DEAD,   PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_CREATING, O_REUSED, PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_STARTING, O_ALIVE,  PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_STARTING, O_DEAD,   PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_STARTING, O_REUSED, PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_RUNNING,  O_ALIVE,  PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_RUNNING,  O_DEAD,   PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_RUNNING,  O_REUSED, PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_STOPPING, O_ALIVE,  PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_STOPPING, O_DEAD,   PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_STOPPING, O_REUSED, PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_STOPPED,  O_ALIVE,  PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_STOPPED,  O_DEAD,   PLAN_NONE,    "UpToDate",         NA },
	{ D_STOPPED, R_STOPPED,  O_REUSED, PLAN_NONE,    "UpToDate",         NA },
	{ D_STOPPED, R_FAILED,   O_ALIVE,  PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_FAILED,   O_DEAD,   PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_FAILED,   O_REUSED, PLAN_STOP,    "DesiredStopped",   NA },
	{ D_STOPPED, R_DELETING, O_ALIVE,  PLAN_DELETE,  "Deleting",         NA },
	{ D_STOPPED, R_DELETING, O_DEAD,   PLAN_DELETE,  "Deleting",         NA },
	{ D_STOPPED, R_DELETING, O_REUSED, PLAN_DELETE,  "Deleting",         NA },
	{ D_STOPPED, R_STEP,     O_ALIVE,  PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_STOPPED, R_STEP,     O_DEAD,   PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_STOPPED, R_STEP,     O_REUSED, PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_STOPPED, R_STOP_WAIT, O_ALIVE,  PLAN_RESUME,  "StopInProgress",   NA },
	{ D_STOPPED, R_STOP_WAIT, O_DEAD,   PLAN_RESUME,  "StopInProgress",   NA },
	{ D_STOPPED, R_STOP_WAIT, O_REUSED, PLAN_RESUME,  "StopInProgress",   NA },

	/* ---- spec changed in a field that needs a reboot (memory) ------------------------- */
	{ D_REBOOT, R_NONE,     O_NA,     PLAN_CREATE,  "NewSpec",          NA },
	{ D_REBOOT, R_PENDING,  O_ALIVE,  PLAN_RESTART, "SpecChanged",      NA },
	{ D_REBOOT, R_PENDING,  O_DEAD,   PLAN_START,   "SpecChanged",      NA },
	{ D_REBOOT, R_PENDING,  O_REUSED, PLAN_START,   "SpecChanged",      NA },
	{ D_REBOOT, R_CREATING, O_ALIVE,  PLAN_RESTART, "SpecChanged",      NA },
	{ D_REBOOT, R_CREATING, O_DEAD,   PLAN_START,   "SpecChanged",      NA },
	{ D_REBOOT, R_CREATING, O_REUSED, PLAN_START,   "SpecChanged",      NA },
	{ D_REBOOT, R_STARTING, O_ALIVE,  PLAN_RESTART, "SpecChanged",      NA },
	{ D_REBOOT, R_STARTING, O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_REBOOT, R_STARTING, O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_REBOOT, R_RUNNING,  O_ALIVE,  PLAN_RESTART, "SpecChanged",      NA },
	{ D_REBOOT, R_RUNNING,  O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_REBOOT, R_RUNNING,  O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_REBOOT, R_STOPPING, O_ALIVE,  PLAN_RESTART, "SpecChanged",      NA },
	{ D_REBOOT, R_STOPPING, O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_REBOOT, R_STOPPING, O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_REBOOT, R_STOPPED,  O_ALIVE,  PLAN_RESTART, "SpecChanged",      NA },
	{ D_REBOOT, R_STOPPED,  O_DEAD,   PLAN_START,   "DesiredRunning",   NA },
	{ D_REBOOT, R_STOPPED,  O_REUSED, PLAN_START,   "DesiredRunning",   NA },
	{ D_REBOOT, R_FAILED,   O_ALIVE,  PLAN_RESTART, "SpecChanged",      NA },
	{ D_REBOOT, R_FAILED,   O_DEAD,   PLAN_START,   "SpecChanged",      NA },
	{ D_REBOOT, R_FAILED,   O_REUSED, PLAN_START,   "SpecChanged",      NA },
	{ D_REBOOT, R_DELETING, O_ALIVE,  PLAN_DELETE,  "Deleting",         NA },
	{ D_REBOOT, R_DELETING, O_DEAD,   PLAN_DELETE,  "Deleting",         NA },
	{ D_REBOOT, R_DELETING, O_REUSED, PLAN_DELETE,  "Deleting",         NA },
	{ D_REBOOT, R_STEP,     O_ALIVE,  PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_REBOOT, R_STEP,     O_DEAD,   PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_REBOOT, R_STEP,     O_REUSED, PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_REBOOT, R_STOP_WAIT, O_ALIVE,  PLAN_RESUME,  "StopInProgress",   NA },
	{ D_REBOOT, R_STOP_WAIT, O_DEAD,   PLAN_RESUME,  "StopInProgress",   NA },
	{ D_REBOOT, R_STOP_WAIT, O_REUSED, PLAN_RESUME,  "StopInProgress",   NA },

	/* ---- spec changed in metadata only (labels) --------------------------------------- */
	{ D_META, R_NONE,     O_NA,     PLAN_CREATE,  "NewSpec",          NA },
	{ D_META, R_PENDING,  O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_META, R_PENDING,  O_DEAD,   PLAN_START,   "SpecChanged",      NA },
	{ D_META, R_PENDING,  O_REUSED, PLAN_START,   "SpecChanged",      NA },
	{ D_META, R_CREATING, O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_META, R_CREATING, O_DEAD,   PLAN_START,   "SpecChanged",      NA },
	{ D_META, R_CREATING, O_REUSED, PLAN_START,   "SpecChanged",      NA },
	{ D_META, R_STARTING, O_ALIVE,  PLAN_UPDATE,  "MetadataChanged",  NA },
	{ D_META, R_STARTING, O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_META, R_STARTING, O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_META, R_RUNNING,  O_ALIVE,  PLAN_UPDATE,  "MetadataChanged",  NA },
	{ D_META, R_RUNNING,  O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_META, R_RUNNING,  O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_META, R_STOPPING, O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_META, R_STOPPING, O_DEAD,   PLAN_DEMOTE,  "ProcessDied",      F },
	{ D_META, R_STOPPING, O_REUSED, PLAN_DEMOTE,  "PidReused",        F },
	{ D_META, R_STOPPED,  O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_META, R_STOPPED,  O_DEAD,   PLAN_START,   "DesiredRunning",   NA },
	{ D_META, R_STOPPED,  O_REUSED, PLAN_START,   "DesiredRunning",   NA },
	{ D_META, R_FAILED,   O_ALIVE,  PLAN_START,   "Adopt",            NA },
	{ D_META, R_FAILED,   O_DEAD,   PLAN_START,   "SpecChanged",      NA },
	{ D_META, R_FAILED,   O_REUSED, PLAN_START,   "SpecChanged",      NA },
	{ D_META, R_DELETING, O_ALIVE,  PLAN_DELETE,  "Deleting",         NA },
	{ D_META, R_DELETING, O_DEAD,   PLAN_DELETE,  "Deleting",         NA },
	{ D_META, R_DELETING, O_REUSED, PLAN_DELETE,  "Deleting",         NA },
	{ D_META, R_STEP,     O_ALIVE,  PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_META, R_STEP,     O_DEAD,   PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_META, R_STEP,     O_REUSED, PLAN_RESUME,  "ResumeAfterCrash", NA },
	{ D_META, R_STOP_WAIT, O_ALIVE,  PLAN_RESUME,  "StopInProgress",   NA },
	{ D_META, R_STOP_WAIT, O_DEAD,   PLAN_RESUME,  "StopInProgress",   NA },
	{ D_META, R_STOP_WAIT, O_REUSED, PLAN_RESUME,  "StopInProgress",   NA },

	/* ---- spec file broken: keep the last good spec, touch nothing ---------------------- */
	{ D_BROKEN, R_NONE,     O_NA,     PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_PENDING,  O_ALIVE,  PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_PENDING,  O_DEAD,   PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_PENDING,  O_REUSED, PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_CREATING, O_ALIVE,  PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_CREATING, O_DEAD,   PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_CREATING, O_REUSED, PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_STARTING, O_ALIVE,  PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_STARTING, O_DEAD,   PLAN_DEMOTE,  "ProcessDiedSpecError", F },
	{ D_BROKEN, R_STARTING, O_REUSED, PLAN_DEMOTE,  "ProcessDiedSpecError", F },
	{ D_BROKEN, R_RUNNING,  O_ALIVE,  PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_RUNNING,  O_DEAD,   PLAN_DEMOTE,  "ProcessDiedSpecError", F },
	{ D_BROKEN, R_RUNNING,  O_REUSED, PLAN_DEMOTE,  "ProcessDiedSpecError", F },
	{ D_BROKEN, R_STOPPING, O_ALIVE,  PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_STOPPING, O_DEAD,   PLAN_DEMOTE,  "ProcessDiedSpecError", F },
	{ D_BROKEN, R_STOPPING, O_REUSED, PLAN_DEMOTE,  "ProcessDiedSpecError", F },
	{ D_BROKEN, R_STOPPED,  O_ALIVE,  PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_STOPPED,  O_DEAD,   PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_STOPPED,  O_REUSED, PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_FAILED,   O_ALIVE,  PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_FAILED,   O_DEAD,   PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_FAILED,   O_REUSED, PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_DELETING, O_ALIVE,  PLAN_DELETE,  "Deleting",             NA },
	{ D_BROKEN, R_DELETING, O_DEAD,   PLAN_DELETE,  "Deleting",             NA },
	{ D_BROKEN, R_DELETING, O_REUSED, PLAN_DELETE,  "Deleting",             NA },
	{ D_BROKEN, R_STEP,     O_ALIVE,  PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_STEP,     O_DEAD,   PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_STEP,     O_REUSED, PLAN_NONE,    "SpecError",            NA },
	{ D_BROKEN, R_STOP_WAIT, O_ALIVE,  PLAN_RESUME,  "StopInProgress",   NA },
	{ D_BROKEN, R_STOP_WAIT, O_DEAD,   PLAN_RESUME,  "StopInProgress",   NA },
	{ D_BROKEN, R_STOP_WAIT, O_REUSED, PLAN_RESUME,  "StopInProgress",   NA },
};
/* clang-format on */

#define NOW 1000000000LL

/* ---- fixtures ------------------------------------------------------------------ */

static struct vm_spec *base_spec(const char *name)
{
	struct vm_spec *s = xcalloc(1, sizeof(*s));

	s->name = xstrdup(name);
	s->labels = xcalloc(1, sizeof(*s->labels));
	s->labels[0].key = xstrdup("team");
	s->labels[0].value = xstrdup("infra");
	s->n_labels = 1;
	s->state = VM_DESIRED_RUNNING;
	s->vmm = VMM_AUTO;
	s->vcpus = 1;
	s->memory_mib = 256;
	s->kernel_path = xstrdup("/k/vmlinux");
	s->rootfs_image = xstrdup("/i/rootfs.ext4");
	s->ssh_user = xstrdup("root");
	s->restart_policy = RESTART_ALWAYS;
	return s;
}

struct fixture {
	struct vm_spec *desired;
	char desired_hash[SPEC_HASH_LEN + 1];
	struct plan_desired pd;
	struct vm_spec *rec_spec;
	struct vm_record rec;
	struct plan_record pr;
	const char *broken[1];
	struct plan_input in;
};

static const enum vm_phase phase_of[R_KIND_MAX] = {
	[R_PENDING] = VM_PHASE_PENDING,	  [R_CREATING] = VM_PHASE_CREATING,
	[R_STARTING] = VM_PHASE_STARTING, [R_RUNNING] = VM_PHASE_RUNNING,
	[R_STOPPING] = VM_PHASE_STOPPING, [R_STOPPED] = VM_PHASE_STOPPED,
	[R_FAILED] = VM_PHASE_FAILED,	  [R_DELETING] = VM_PHASE_DELETING,
	[R_STEP] = VM_PHASE_CREATING,	  [R_STOP_WAIT] = VM_PHASE_STOPPING,
};

static const enum vm_liveness live_of[O_KIND_MAX] = {
	[O_NA] = VM_LIVENESS_NONE,
	[O_ALIVE] = VM_LIVENESS_ALIVE,
	[O_DEAD] = VM_LIVENESS_DEAD,
	[O_REUSED] = VM_LIVENESS_REUSED,
};

static void fixture_build(struct fixture *f, enum d_kind d, enum r_kind r, enum o_kind o)
{
	memset(f, 0, sizeof(*f));
	f->in.now = NOW;
	if (d != D_NONE && d != D_BROKEN) {
		f->desired = base_spec("vm");
		if (d == D_STOPPED)
			f->desired->state = VM_DESIRED_STOPPED;
		if (d == D_REBOOT)
			f->desired->memory_mib = 512;
		if (d == D_META) {
			free(f->desired->labels[0].value);
			f->desired->labels[0].value = xstrdup("platform");
		}
		spec_hash(f->desired, f->desired_hash);
		f->pd.spec = f->desired;
		f->pd.hash = f->desired_hash;
		f->in.desired = &f->pd;
		f->in.n_desired = 1;
	}
	if (d == D_BROKEN) {
		f->broken[0] = "vm";
		f->in.broken_names = f->broken;
		f->in.n_broken_names = 1;
	}
	if (r != R_NONE) {
		f->rec_spec = base_spec("vm");
		/* A VM stopped on purpose carries a spec that says so. */
		if (r == R_STOPPED)
			f->rec_spec->state = VM_DESIRED_STOPPED;
		strcpy(f->rec.id, "0123abcd");
		f->rec.name = xstrdup("vm");
		f->rec.source_file = xstrdup("/specs/vm.yaml");
		spec_hash(f->rec_spec, f->rec.spec_hash);
		f->rec.generation = 1;
		f->rec.observed_generation = 1;
		f->rec.phase = phase_of[r];
		f->rec.desired_state = f->rec_spec->state;
		f->rec.last_exit = -1;
		if (r == R_STEP) {
			f->rec.action = xstrdup("create");
			f->rec.step = xstrdup("ensure-tap");
		}
		if (r == R_STOP_WAIT) {
			f->rec.action = xstrdup("stop");
			f->rec.step = xstrdup("stop-vmm");
			f->rec.stop_stage = VM_STOP_GRACEFUL;
			f->rec.stop_deadline = 1;
		}
		f->pr.rec = &f->rec;
		f->pr.spec = f->rec_spec;
		f->pr.liveness = live_of[o];
		f->in.records = &f->pr;
		f->in.n_records = 1;
	}
}

static void fixture_release(struct fixture *f)
{
	vm_spec_free(f->desired);
	vm_spec_free(f->rec_spec);
	vm_record_release(&f->rec);
}

static const char *const d_names[] = { "none", "running", "stopped", "reboot", "meta", "broken" };
static const char *const r_names[] = { "none",	   "Pending",  "Creating", "Starting",
				       "Running",  "Stopping", "Stopped",  "Failed",
				       "Deleting", "step",     "stop-wait" };
static const char *const o_names[] = { "n/a", "alive", "dead", "reused" };

/* ---- the table ---------------------------------------------------------------------- */

static void test_table_covers_every_combination(void **state)
{
	bool seen[D_KIND_MAX][R_KIND_MAX][O_KIND_MAX] = { 0 };
	size_t expected = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		const struct row *row = &table[i];

		assert_false(seen[row->d][row->r][row->o]);
		seen[row->d][row->r][row->o] = true;
		/* "no record" rows have nothing to observe; all others need a real observation. */
		assert_true((row->r == R_NONE) == (row->o == O_NA));
	}
	for (int d = 0; d < D_KIND_MAX; d++)
		for (int r = 0; r < R_KIND_MAX; r++)
			for (int o = 0; o < O_KIND_MAX; o++) {
				if ((r == R_NONE) != (o == O_NA))
					continue;
				expected++;
				if (!seen[d][r][o])
					fail_msg("missing row: desired=%s record=%s observed=%s",
						 d_names[d], r_names[r], o_names[o]);
			}
	assert_int_equal(ARRAY_SIZE(table), expected);
	printf("plan table: %zu rows (%d desired x (1 + %d records x 3 observations))\n", expected,
	       D_KIND_MAX, R_KIND_MAX - 1);
}

static void test_table(void **state)
{
	unsigned failures = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		const struct row *row = &table[i];
		struct fixture f;
		struct plan_action *acts = NULL;
		size_t n = 0;

		fixture_build(&f, row->d, row->r, row->o);
		assert_int_equal(plan(&f.in, &acts, &n), 0);
		if (row->want == X) {
			if (n != 0) {
				printf("row %zu (%s/%s/%s): want no action, got %zu\n", i,
				       d_names[row->d], r_names[row->r], o_names[row->o], n);
				failures++;
			}
		} else if (n != 1 || acts[0].type != row->want ||
			   strcmp(plan_reason_to_string(acts[0].reason), row->reason) != 0 ||
			   (row->want == PLAN_DEMOTE && acts[0].demote_to != row->demote_to)) {
			printf("row %zu (%s/%s/%s): want %s/%s, got %s/%s\n", i, d_names[row->d],
			       r_names[row->r], o_names[row->o], plan_action_to_string(row->want),
			       row->reason, n ? plan_action_to_string(acts[0].type) : "-",
			       n ? plan_reason_to_string(acts[0].reason) : "-");
			failures++;
		} else {
			/* The action names the VM and points at its record when there is one. */
			assert_string_equal(acts[0].name, "vm");
			assert_true((acts[0].record != NULL) == (row->r != R_NONE));
			if (row->want == PLAN_RESUME)
				assert_int_equal(acts[0].resume,
						 row->r == R_STOP_WAIT ? PLAN_STOP : PLAN_CREATE);
			/* Actions that converge toward a spec carry one. */
			if (row->want != PLAN_NONE)
				assert_non_null(acts[0].spec);
		}
		free(acts);
		fixture_release(&f);
	}
	assert_int_equal(failures, 0);
}

/* ---- targeted rules ---------------------------------------------------------------------- */

static enum plan_action_type plan_single(struct fixture *f, struct plan_action *ret)
{
	struct plan_action *acts = NULL;
	size_t n = 0;

	assert_int_equal(plan(&f->in, &acts, &n), 0);
	assert_int_equal(n, 1);
	*ret = acts[0];
	free(acts);
	return ret->type;
}

static void test_backoff(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	assert_int_equal(plan_backoff_ms(0), 0);
	assert_int_equal(plan_backoff_ms(1), 1000);
	assert_int_equal(plan_backoff_ms(2), 2000);
	assert_int_equal(plan_backoff_ms(5), 16000);
	assert_int_equal(plan_backoff_ms(9), 256000);
	assert_int_equal(plan_backoff_ms(10), 300000);
	assert_int_equal(plan_backoff_ms(1000), 300000);

	fixture_build(&f, D_RUNNING, R_FAILED, O_DEAD);
	f.rec.failures = 3;
	f.rec.backoff_until = NOW + 4000;
	assert_int_equal(plan_single(&f, &a), PLAN_NONE);
	assert_string_equal(plan_reason_to_string(a.reason), "BackOff");
	assert_int_equal(a.retry_at, NOW + 4000);
	f.in.now = NOW + 4000;
	assert_int_equal(plan_single(&f, &a), PLAN_START);
	assert_string_equal(plan_reason_to_string(a.reason), "Retry");
	fixture_release(&f);

	/* A changed spec does not wait for the backoff. */
	fixture_build(&f, D_REBOOT, R_FAILED, O_DEAD);
	f.rec.backoff_until = NOW + 60000;
	assert_int_equal(plan_single(&f, &a), PLAN_START);
	assert_string_equal(plan_reason_to_string(a.reason), "SpecChanged");
	fixture_release(&f);
}

static void test_restart_policies(void **state)
{
	static const struct {
		enum restart_policy policy;
		int last_exit;
		enum vm_phase want;
	} cases[] = {
		{ RESTART_ALWAYS, -1, VM_PHASE_FAILED },
		{ RESTART_ALWAYS, 0, VM_PHASE_FAILED },
		{ RESTART_ALWAYS, 1, VM_PHASE_FAILED },
		{ RESTART_ON_FAILURE, -1, VM_PHASE_FAILED },
		{ RESTART_ON_FAILURE, 0, VM_PHASE_STOPPED },
		{ RESTART_ON_FAILURE, 137, VM_PHASE_FAILED },
		{ RESTART_NEVER, -1, VM_PHASE_STOPPED },
		{ RESTART_NEVER, 0, VM_PHASE_STOPPED },
		{ RESTART_NEVER, 1, VM_PHASE_STOPPED },
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct fixture f;
		struct plan_action a;

		fixture_build(&f, D_RUNNING, R_RUNNING, O_DEAD);
		f.desired->restart_policy = cases[i].policy;
		f.rec_spec->restart_policy = cases[i].policy;
		spec_hash(f.desired, f.desired_hash);
		spec_hash(f.rec_spec, f.rec.spec_hash);
		f.rec.last_exit = cases[i].last_exit;
		assert_int_equal(plan_single(&f, &a), PLAN_DEMOTE);
		assert_int_equal(a.demote_to, cases[i].want);
		fixture_release(&f);
	}
}

static void test_stopped_by_policy_stays_stopped(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	/* The VMM ended under restartPolicy never: Stopped although the spec says running. */
	fixture_build(&f, D_RUNNING, R_RUNNING, O_DEAD);
	f.rec.phase = VM_PHASE_STOPPED;
	assert_int_equal(plan_single(&f, &a), PLAN_NONE);
	assert_string_equal(plan_reason_to_string(a.reason), "Exited");
	fixture_release(&f);

	/* ... until its spec changes. */
	fixture_build(&f, D_REBOOT, R_RUNNING, O_DEAD);
	f.rec.phase = VM_PHASE_STOPPED;
	assert_int_equal(plan_single(&f, &a), PLAN_START);
	assert_string_equal(plan_reason_to_string(a.reason), "SpecChanged");
	fixture_release(&f);
}

static void test_unapplied_generation_restarts(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	/* A reboot-needing change was recorded but the VM still runs the old one. */
	fixture_build(&f, D_RUNNING, R_RUNNING, O_ALIVE);
	f.rec.generation = 3;
	f.rec.observed_generation = 2;
	assert_int_equal(plan_single(&f, &a), PLAN_RESTART);
	assert_string_equal(plan_reason_to_string(a.reason), "GenerationNotApplied");
	fixture_release(&f);
}

static void test_unparsable_record_spec_restarts(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	fixture_build(&f, D_RUNNING, R_RUNNING, O_ALIVE);
	strcpy(f.rec.spec_hash, "garbage");
	f.pr.spec = NULL;
	assert_int_equal(plan_single(&f, &a), PLAN_RESTART);
	fixture_release(&f);
}

static void test_broken_source_file_keeps_vm(void **state)
{
	const char *files[] = { "/specs/vm.yaml" };
	struct fixture f;
	struct plan_action a;

	(void)state;
	/* The record's file failed to load and no name could be read from it: not a delete. */
	fixture_build(&f, D_NONE, R_RUNNING, O_ALIVE);
	f.in.broken_files = files;
	f.in.n_broken_files = 1;
	assert_int_equal(plan_single(&f, &a), PLAN_NONE);
	assert_string_equal(plan_reason_to_string(a.reason), "SpecError");
	assert_non_null(a.spec); /* the last good spec */
	fixture_release(&f);

	/* The VM moved to a good file while its old file is broken: the good spec wins. */
	fixture_build(&f, D_META, R_RUNNING, O_ALIVE);
	f.in.broken_files = files;
	f.in.n_broken_files = 1;
	assert_int_equal(plan_single(&f, &a), PLAN_UPDATE);
	fixture_release(&f);
}

static void test_broken_directory_keeps_vms(void **state)
{
	const char *dirs[] = { "/specs/" };
	const char *other[] = { "/spec" };
	struct fixture f;
	struct plan_action a;

	(void)state;
	/* A subdirectory (or the whole spec dir) could not be read: its VMs are kept. */
	fixture_build(&f, D_NONE, R_RUNNING, O_ALIVE);
	f.in.broken_files = dirs;
	f.in.n_broken_files = 1;
	assert_int_equal(plan_single(&f, &a), PLAN_NONE);
	assert_string_equal(plan_reason_to_string(a.reason), "SpecError");
	/* A failed path that only shares a prefix ("/spec" vs "/specs/...") is not a parent. */
	f.in.broken_files = other;
	assert_int_equal(plan_single(&f, &a), PLAN_DELETE);
	fixture_release(&f);
}

static void test_unreadable_stored_spec_same_hash(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	/* The stored spec no longer parses (a stricter rule after an upgrade), but the hash
	 * says the spec did not change: nothing to do, and certainly no restart loop. */
	fixture_build(&f, D_RUNNING, R_RUNNING, O_ALIVE);
	f.pr.spec = NULL;
	assert_int_equal(plan_single(&f, &a), PLAN_NONE);
	assert_string_equal(plan_reason_to_string(a.reason), "UpToDate");
	fixture_release(&f);
}

static void test_resume_demote_keeps_policy(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	fixture_build(&f, D_RUNNING, R_RUNNING, O_DEAD);
	f.desired->restart_policy = RESTART_NEVER;
	spec_hash(f.desired, f.desired_hash);
	f.rec.action = xstrdup("demote");
	f.rec.step = xstrdup("teardown");
	assert_int_equal(plan_single(&f, &a), PLAN_RESUME);
	assert_int_equal(a.resume, PLAN_DEMOTE);
	assert_int_equal(a.demote_to, VM_PHASE_STOPPED);
	fixture_release(&f);
}

static void test_failed_delete_backs_off(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	fixture_build(&f, D_NONE, R_DELETING, O_DEAD);
	f.rec.backoff_until = NOW + 8000;
	assert_int_equal(plan_single(&f, &a), PLAN_NONE);
	assert_string_equal(plan_reason_to_string(a.reason), "BackOff");
	assert_int_equal(a.retry_at, NOW + 8000);
	f.in.now = NOW + 8000;
	assert_int_equal(plan_single(&f, &a), PLAN_DELETE);
	fixture_release(&f);
}

/*
 * A delete whose stop waits for the VMM resumes as a delete (at its recorded
 * step, with the record's spec), every pass, even while a failed delete's
 * backoff would hold an idle one back; and a stop in progress is resumed even
 * when the spec came back meanwhile.
 */
static void test_stop_in_progress_resumes(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	fixture_build(&f, D_RUNNING, R_DELETING, O_ALIVE);
	f.rec.action = xstrdup("delete");
	f.rec.step = xstrdup("stop-vmm");
	f.rec.stop_stage = VM_STOP_TERM;
	f.rec.stop_deadline = NOW + 3000;
	f.rec.backoff_until = NOW + 8000;
	assert_int_equal(plan_single(&f, &a), PLAN_RESUME);
	assert_int_equal(a.resume, PLAN_DELETE);
	assert_string_equal(plan_reason_to_string(a.reason), "StopInProgress");
	assert_ptr_equal(a.spec, f.pr.spec);
	assert_null(a.hash);
	fixture_release(&f);

	fixture_build(&f, D_RUNNING, R_STOP_WAIT, O_ALIVE);
	assert_int_equal(plan_single(&f, &a), PLAN_RESUME);
	assert_int_equal(a.resume, PLAN_STOP);
	assert_ptr_equal(a.spec, f.desired); /* finish() sees the spec says running again */
	fixture_release(&f);
}

static void test_resume_unknown_action_starts(void **state)
{
	struct fixture f;
	struct plan_action a;

	(void)state;
	fixture_build(&f, D_RUNNING, R_STEP, O_DEAD);
	free(f.rec.action);
	f.rec.action = xstrdup("bogus");
	assert_int_equal(plan_single(&f, &a), PLAN_RESUME);
	assert_int_equal(a.resume, PLAN_START);
	fixture_release(&f);
}

/* Several VMs at once: deletes first, then by name; input order never matters. */
static void test_ordering_and_determinism(void **state)
{
	const char *names[] = { "delta", "alpha", "echo", "bravo", "charlie" };
	struct vm_spec *specs[5];
	char hashes[5][SPEC_HASH_LEN + 1];
	struct plan_desired desired[5];
	struct vm_record recs[3];
	struct plan_record prs[3];
	struct plan_input in = { .now = NOW };
	struct plan_action *first = NULL;
	size_t n_first = 0;

	(void)state;
	/* Desired: alpha, bravo, charlie, delta (running). Records: echo (no spec ->
	 * delete), alpha (running, alive), bravo (failed). */
	for (int i = 0; i < 5; i++) {
		specs[i] = base_spec(names[i]);
		spec_hash(specs[i], hashes[i]);
		desired[i].spec = specs[i];
		desired[i].hash = hashes[i];
	}
	memset(recs, 0, sizeof(recs));
	for (int i = 0; i < 3; i++) {
		const char *rn[] = { "echo", "alpha", "bravo" };
		const int si[] = { 2, 1, 3 };

		memcpy(recs[i].id, "0000000", 7);
		recs[i].id[7] = (char)('0' + i);
		recs[i].id[8] = '\0';
		recs[i].name = (char *)rn[i];
		strcpy(recs[i].spec_hash, hashes[si[i]]);
		recs[i].generation = recs[i].observed_generation = 1;
		recs[i].phase = i == 2 ? VM_PHASE_FAILED : VM_PHASE_RUNNING;
		recs[i].desired_state = VM_DESIRED_RUNNING;
		recs[i].last_exit = -1;
		prs[i].rec = &recs[i];
		prs[i].spec = specs[si[i]];
		prs[i].liveness = VM_LIVENESS_ALIVE;
	}
	prs[2].liveness = VM_LIVENESS_DEAD;
	/* echo has no desired entry: pass only 4 desired (drop "echo" at index 2). */
	{
		struct plan_desired d4[4] = { desired[0], desired[1], desired[3], desired[4] };

		in.desired = d4;
		in.n_desired = 4;
		in.records = prs;
		in.n_records = 3;
		assert_int_equal(plan(&in, &first, &n_first), 0);
		assert_int_equal(n_first, 5);
		assert_string_equal(first[0].name, "echo");
		assert_int_equal(first[0].type, PLAN_DELETE);
		assert_string_equal(first[1].name, "alpha");
		assert_int_equal(first[1].type, PLAN_NONE);
		assert_string_equal(first[2].name, "bravo");
		assert_int_equal(first[2].type, PLAN_START);
		assert_string_equal(first[3].name, "charlie");
		assert_int_equal(first[3].type, PLAN_CREATE);
		assert_string_equal(first[4].name, "delta");
		assert_int_equal(first[4].type, PLAN_CREATE);

		/* Reversed inputs give the same list. */
		{
			struct plan_desired rd[4] = { d4[3], d4[2], d4[1], d4[0] };
			struct plan_record rp[3] = { prs[2], prs[1], prs[0] };
			struct plan_action *second = NULL;
			size_t n_second = 0;

			in.desired = rd;
			in.records = rp;
			assert_int_equal(plan(&in, &second, &n_second), 0);
			assert_int_equal(n_second, n_first);
			for (size_t i = 0; i < n_first; i++) {
				assert_string_equal(first[i].name, second[i].name);
				assert_int_equal(first[i].type, second[i].type);
				assert_int_equal(first[i].reason, second[i].reason);
			}
			free(second);
		}
	}
	free(first);
	for (int i = 0; i < 5; i++)
		vm_spec_free(specs[i]);
}

static void test_action_names(void **state)
{
	(void)state;
	for (int i = 0; i < PLAN_ACTION_MAX; i++)
		assert_int_equal(plan_action_from_string(plan_action_to_string(i)), i);
	assert_int_equal(plan_action_from_string("nope"), -EINVAL);
	assert_null(plan_action_to_string(PLAN_ACTION_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_covers_every_combination),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_restart_policies),
		cmocka_unit_test(test_stopped_by_policy_stays_stopped),
		cmocka_unit_test(test_unapplied_generation_restarts),
		cmocka_unit_test(test_unparsable_record_spec_restarts),
		cmocka_unit_test(test_broken_source_file_keeps_vm),
		cmocka_unit_test(test_resume_unknown_action_starts),
		cmocka_unit_test(test_broken_directory_keeps_vms),
		cmocka_unit_test(test_unreadable_stored_spec_same_hash),
		cmocka_unit_test(test_resume_demote_keeps_policy),
		cmocka_unit_test(test_failed_delete_backs_off),
		cmocka_unit_test(test_stop_in_progress_resumes),
		cmocka_unit_test(test_ordering_and_determinism),
		cmocka_unit_test(test_action_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
