/*
 * plan.h - the pure planner: desired specs x durable records x observed
 * liveness -> the actions that converge the host, one per VM.
 *
 * plan() does no I/O and keeps no state: the same inputs always give the same
 * list (sorted: deletes first, then by name), so it is tested as a table
 * over every combination of its inputs.
 *
 * Rules, per VM name:
 * - Spec file broken (the name, or the record's source file, failed to load):
 *   the VM keeps its last good spec and is otherwise left alone; only a VMM
 *   that died is demoted (a fact, not a change), never restarted.
 * - No spec: DELETE (a tombstoned record keeps deleting).
 * - A stop waiting for its VMM to exit (stop_stage set, the stop-vmm step
 *   recorded): RESUME it, whatever the spec says now (a broken or removed
 *   spec must not leave a half-stopped VM; the delete comes after).
 * - Step in progress (the intent log survived a crash): RESUME that action.
 * - Spec, no record: CREATE.
 * - Desired running, VMM alive: RESTART when a reboot field changed (or a
 *   reboot-needing change was never applied: observed_generation <
 *   generation), UPDATE when only metadata changed, else NONE.
 * - Desired running, recorded Starting/Running, VMM gone (or pid reused):
 *   DEMOTE, to Failed when restartPolicy allows a restart (always; on-failure
 *   unless it exited 0), else to Stopped.
 * - Desired running, Failed/Pending/Creating: START once the backoff has
 *   passed (a changed spec skips the wait). Stopped: START when it was
 *   stopped on purpose (desired_state was stopped) or its spec changed;
 *   otherwise it ended under its restart policy and stays stopped.
 * - Desired stopped: STOP unless already Stopped (UPDATE when the spec
 *   changed meanwhile).
 */
#ifndef BANGER_RECONCILER_PLAN_H
#define BANGER_RECONCILER_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "reconciler/vm.h"
#include "spec/spec.h"

enum plan_action_type {
	PLAN_NONE,
	PLAN_CREATE,
	PLAN_START,
	PLAN_STOP,
	PLAN_RESTART,
	PLAN_UPDATE,
	PLAN_DEMOTE,
	PLAN_DELETE,
	PLAN_RESUME,
	PLAN_ACTION_MAX
};

/* "none", "create", ...; NULL out of range. */
const char *plan_action_to_string(enum plan_action_type t);
/* The type, or -EINVAL. */
int plan_action_from_string(const char *s);

/*
 * Why an action (or none) was planned. Events and logs show the CamelCase
 * name (plan_reason_to_string()); code compares the enum.
 */
enum plan_reason {
	PLAN_R_UP_TO_DATE,
	PLAN_R_NEW_SPEC,
	PLAN_R_SPEC_CHANGED,
	PLAN_R_METADATA_CHANGED,
	PLAN_R_GENERATION_NOT_APPLIED,
	PLAN_R_ADOPT,
	PLAN_R_DESIRED_RUNNING,
	PLAN_R_DESIRED_STOPPED,
	PLAN_R_EXITED,
	PLAN_R_START,
	PLAN_R_RETRY,
	PLAN_R_BACK_OFF,
	PLAN_R_SPEC_ERROR,
	PLAN_R_PROCESS_DIED,
	PLAN_R_PID_REUSED,
	PLAN_R_PROCESS_DIED_SPEC_ERROR,
	PLAN_R_DELETING,
	PLAN_R_SPEC_REMOVED,
	PLAN_R_RESUME_AFTER_CRASH,
	PLAN_R_STOP_IN_PROGRESS,
	PLAN_REASON_MAX
};

/* "UpToDate", "NewSpec", ...; NULL out of range. */
const char *plan_reason_to_string(enum plan_reason r);

/* A desired VM: a valid spec and its hash (spec_hash()). */
struct plan_desired {
	const struct vm_spec *spec;
	const char *hash;
};

/* A durable record with what was observed about it. */
struct plan_record {
	const struct vm_record *rec;
	const struct vm_spec *spec; /* rec->spec_json parsed; NULL if unparsable */
	enum vm_liveness liveness;
};

struct plan_input {
	const struct plan_desired *desired;
	size_t n_desired;
	const char *const *broken_names; /* names defined in files that failed to load */
	size_t n_broken_names;
	const char *const *broken_files; /* files that failed to load */
	size_t n_broken_files;
	const struct plan_record *records;
	size_t n_records;
	int64_t now; /* epoch ms, for the backoff */
};

struct plan_action {
	enum plan_action_type type;
	const char *name;		  /* borrowed from the inputs */
	const struct plan_record *record; /* NULL for CREATE and for names without one */
	const struct vm_spec *spec;	  /* spec to converge to (desired, else the record's) */
	const char *hash;		  /* its hash, NULL when it is the record's */
	enum plan_reason reason;
	enum vm_phase demote_to;      /* DEMOTE: VM_PHASE_FAILED or VM_PHASE_STOPPED */
	enum plan_action_type resume; /* RESUME: the action to resume */
	int64_t retry_at;	      /* NONE while backing off: when to look again */
};

/*
 * Compute the actions. *ret is an owned array (free()) with one entry per VM
 * name in the union of desired, broken and recorded names, NONE included.
 * Returns 0 (it cannot fail; allocation failure aborts).
 */
int plan(const struct plan_input *in, struct plan_action **ret, size_t *ret_n);

/* Backoff after 'failures' consecutive failures: 1 s doubling, capped at 5 min; 0 for 0. */
int64_t plan_backoff_ms(int failures);

/* A VM Running this long without failing has its failure count reset. */
#define PLAN_STABLE_RUN_MS (60 * 1000)

#endif
