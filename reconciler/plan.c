/*
 * plan.c - the pure planner; see plan.h for the rules.
 *
 * No I/O, no clocks, no globals: everything comes in through struct
 * plan_input, and the output depends on nothing else. The only calls out are
 * to memory functions, string comparison, qsort, bsearch and spec_compare().
 */
#include "reconciler/plan.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static const char *const action_names[PLAN_ACTION_MAX] = {
	[PLAN_NONE] = "none",	  [PLAN_CREATE] = "create",   [PLAN_START] = "start",
	[PLAN_STOP] = "stop",	  [PLAN_RESTART] = "restart", [PLAN_UPDATE] = "update",
	[PLAN_DEMOTE] = "demote", [PLAN_DELETE] = "delete",   [PLAN_RESUME] = "resume",
};

static const char *const reason_names[PLAN_REASON_MAX] = {
	[PLAN_R_UP_TO_DATE] = "UpToDate",
	[PLAN_R_NEW_SPEC] = "NewSpec",
	[PLAN_R_SPEC_CHANGED] = "SpecChanged",
	[PLAN_R_METADATA_CHANGED] = "MetadataChanged",
	[PLAN_R_GENERATION_NOT_APPLIED] = "GenerationNotApplied",
	[PLAN_R_ADOPT] = "Adopt",
	[PLAN_R_DESIRED_RUNNING] = "DesiredRunning",
	[PLAN_R_DESIRED_STOPPED] = "DesiredStopped",
	[PLAN_R_EXITED] = "Exited",
	[PLAN_R_START] = "Start",
	[PLAN_R_RETRY] = "Retry",
	[PLAN_R_BACK_OFF] = "BackOff",
	[PLAN_R_SPEC_ERROR] = "SpecError",
	[PLAN_R_PROCESS_DIED] = "ProcessDied",
	[PLAN_R_PID_REUSED] = "PidReused",
	[PLAN_R_PROCESS_DIED_SPEC_ERROR] = "ProcessDiedSpecError",
	[PLAN_R_DELETING] = "Deleting",
	[PLAN_R_SPEC_REMOVED] = "SpecRemoved",
	[PLAN_R_RESUME_AFTER_CRASH] = "ResumeAfterCrash",
	[PLAN_R_STOP_IN_PROGRESS] = "StopInProgress",
};

const char *plan_reason_to_string(enum plan_reason r)
{
	return (unsigned)r < PLAN_REASON_MAX ? reason_names[r] : NULL;
}

const char *plan_action_to_string(enum plan_action_type t)
{
	return (unsigned)t < PLAN_ACTION_MAX ? action_names[t] : NULL;
}

int plan_action_from_string(const char *s)
{
	for (int i = 0; s && i < PLAN_ACTION_MAX; i++)
		if (strcmp(s, action_names[i]) == 0)
			return i;
	return -EINVAL;
}

int64_t plan_backoff_ms(int failures)
{
	const int64_t cap = 5 * 60 * 1000;

	if (failures <= 0)
		return 0;
	if (failures > 20)
		return cap;
	return (int64_t)1000 << (failures - 1) < cap ? (int64_t)1000 << (failures - 1) : cap;
}

static bool str_in(const char *s, const char *const *list, size_t n)
{
	if (!s)
		return false;
	for (size_t i = 0; i < n; i++)
		if (list[i] && strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* path is failed itself, or lies under the failed directory. */
static bool under(const char *path, const char *failed)
{
	size_t n = strlen(failed);

	while (n > 1 && failed[n - 1] == '/')
		n--;
	return strncmp(path, failed, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool path_in(const char *path, const char *const *list, size_t n)
{
	if (!path)
		return false;
	for (size_t i = 0; i < n; i++)
		if (list[i] && under(path, list[i]))
			return true;
	return false;
}

/*
 * Lookups by name over the inputs sorted once per plan(): a pass at a few
 * thousand VMs must not compare every name with every other.
 */
struct index {
	const struct plan_desired **desired; /* sorted by spec name */
	const struct plan_record **records;  /* sorted by record name */
};

static int cmp_desired(const void *x, const void *y)
{
	return strcmp((*(const struct plan_desired *const *)x)->spec->name,
		      (*(const struct plan_desired *const *)y)->spec->name);
}

static int cmp_record(const void *x, const void *y)
{
	return strcmp((*(const struct plan_record *const *)x)->rec->name,
		      (*(const struct plan_record *const *)y)->rec->name);
}

static int key_desired(const void *key, const void *elem)
{
	return strcmp(key, (*(const struct plan_desired *const *)elem)->spec->name);
}

static int key_record(const void *key, const void *elem)
{
	return strcmp(key, (*(const struct plan_record *const *)elem)->rec->name);
}

static const struct plan_desired *find_desired(const struct plan_input *in, const struct index *ix,
					       const char *name)
{
	const struct plan_desired *const *hit = in->n_desired
							? bsearch(name, ix->desired, in->n_desired,
								  sizeof(*ix->desired), key_desired)
							: NULL;

	return hit ? *hit : NULL;
}

static const struct plan_record *find_record(const struct plan_input *in, const struct index *ix,
					     const char *name)
{
	const struct plan_record *const *hit = in->n_records
						       ? bsearch(name, ix->records, in->n_records,
								 sizeof(*ix->records), key_record)
						       : NULL;

	return hit ? *hit : NULL;
}

/* The VMM process counts as up: the record says it should be running. */
static bool phase_up(enum vm_phase p)
{
	return p == VM_PHASE_STARTING || p == VM_PHASE_RUNNING || p == VM_PHASE_STOPPING;
}

/* May a VM whose VMM ended be restarted under this policy? */
static bool policy_restarts(enum restart_policy policy, int last_exit)
{
	switch (policy) {
	case RESTART_ALWAYS:
		return true;
	case RESTART_ON_FAILURE:
		return last_exit != 0; /* unknown (-1) counts as a failure */
	case RESTART_NEVER:
	default:
		return false;
	}
}

static void set(struct plan_action *a, enum plan_action_type type, enum plan_reason reason)
{
	a->type = type;
	a->reason = reason;
}

/* A record whose VMM died: to Failed (will restart) or Stopped (stays). */
static void demote(struct plan_action *a, const struct plan_record *r,
		   const struct vm_spec *policy_spec)
{
	enum restart_policy policy = policy_spec ? policy_spec->restart_policy : RESTART_NEVER;

	set(a, PLAN_DEMOTE,
	    r->liveness == VM_LIVENESS_REUSED ? PLAN_R_PID_REUSED : PLAN_R_PROCESS_DIED);
	a->demote_to =
		policy_restarts(policy, r->rec->last_exit) ? VM_PHASE_FAILED : VM_PHASE_STOPPED;
}

static void plan_broken(struct plan_action *a, const struct plan_record *r)
{
	a->spec = r ? r->spec : NULL;
	if (r && phase_up(r->rec->phase) && r->liveness != VM_LIVENESS_ALIVE &&
	    r->rec->phase != VM_PHASE_DELETING) {
		demote(a, r, r->spec);
		a->reason = PLAN_R_PROCESS_DIED_SPEC_ERROR;
		return;
	}
	set(a, PLAN_NONE, PLAN_R_SPEC_ERROR);
}

static void plan_running(struct plan_action *a, const struct plan_record *r, bool changed,
			 enum spec_change cmp, int64_t now)
{
	const struct vm_record *rec = r->rec;

	if (r->liveness == VM_LIVENESS_ALIVE) {
		if (cmp == SPEC_REBOOT)
			set(a, PLAN_RESTART, PLAN_R_SPEC_CHANGED);
		else if (rec->observed_generation < rec->generation && phase_up(rec->phase))
			set(a, PLAN_RESTART, PLAN_R_GENERATION_NOT_APPLIED);
		else if (!phase_up(rec->phase) || rec->phase == VM_PHASE_STOPPING)
			set(a, PLAN_START, PLAN_R_ADOPT);
		else if (changed)
			set(a, PLAN_UPDATE,
			    cmp == SPEC_UPDATE ? PLAN_R_METADATA_CHANGED : PLAN_R_SPEC_CHANGED);
		else
			set(a, PLAN_NONE, PLAN_R_UP_TO_DATE);
		return;
	}
	if (phase_up(rec->phase)) {
		demote(a, r, a->spec);
		return;
	}
	switch (rec->phase) {
	case VM_PHASE_STOPPED:
		if (rec->desired_state == VM_DESIRED_STOPPED)
			set(a, PLAN_START, PLAN_R_DESIRED_RUNNING);
		else if (changed)
			set(a, PLAN_START, PLAN_R_SPEC_CHANGED);
		else
			set(a, PLAN_NONE, PLAN_R_EXITED);
		return;
	case VM_PHASE_PENDING:
	case VM_PHASE_CREATING:
	case VM_PHASE_FAILED:
	default:
		if (changed) {
			set(a, PLAN_START, PLAN_R_SPEC_CHANGED);
		} else if (now >= rec->backoff_until) {
			set(a, PLAN_START,
			    rec->phase == VM_PHASE_FAILED ? PLAN_R_RETRY : PLAN_R_START);
		} else {
			set(a, PLAN_NONE, PLAN_R_BACK_OFF);
			a->retry_at = rec->backoff_until;
		}
		return;
	}
}

static void plan_stopped(struct plan_action *a, const struct plan_record *r, bool changed)
{
	if (r->liveness == VM_LIVENESS_ALIVE || r->rec->phase != VM_PHASE_STOPPED)
		set(a, PLAN_STOP, PLAN_R_DESIRED_STOPPED);
	else if (changed)
		set(a, PLAN_UPDATE, PLAN_R_SPEC_CHANGED);
	else
		set(a, PLAN_NONE, PLAN_R_UP_TO_DATE);
}

static void plan_one(const struct plan_input *in, const struct index *ix, const char *name,
		     struct plan_action *a)
{
	const struct plan_desired *d = find_desired(in, ix, name);
	const struct plan_record *r = find_record(in, ix, name);
	const struct vm_record *rec = r ? r->rec : NULL;
	bool broken;
	bool changed;
	enum spec_change cmp;

	memset(a, 0, sizeof(*a));
	a->name = name;
	a->record = r;
	a->demote_to = VM_PHASE_MAX;
	a->resume = PLAN_NONE;

	/* A failed "file" may be a directory that could not be read: everything
	 * recorded from below it counts as broken, never as gone. */
	broken = str_in(name, in->broken_names, in->n_broken_names) ||
		 (!d && rec && path_in(rec->source_file, in->broken_files, in->n_broken_files));
	if (d && !broken) {
		a->spec = d->spec;
		a->hash = d->hash;
	}

	if (!rec) {
		if (d && !broken)
			set(a, PLAN_CREATE, PLAN_R_NEW_SPEC);
		else
			set(a, PLAN_NONE, broken ? PLAN_R_SPEC_ERROR : PLAN_R_UP_TO_DATE);
		return;
	}
	/* A stop that waits for its VMM goes on first, whatever is wanted now. */
	if (rec->step && rec->stop_stage != VM_STOP_NONE) {
		int resume = plan_action_from_string(rec->action);

		/* No usable spec, or a delete: the record's own (as for a broken one). */
		if (!a->spec || rec->phase == VM_PHASE_DELETING) {
			a->spec = r->spec;
			a->hash = NULL;
		}
		set(a, PLAN_RESUME, PLAN_R_STOP_IN_PROGRESS);
		a->resume = resume > PLAN_NONE ? (enum plan_action_type)resume : PLAN_STOP;
		return;
	}
	if (rec->phase == VM_PHASE_DELETING) {
		a->spec = r->spec;
		a->hash = NULL;
		if (in->now < rec->backoff_until && !rec->step) {
			/* A delete that failed waits out its backoff like anything else. */
			set(a, PLAN_NONE, PLAN_R_BACK_OFF);
			a->retry_at = rec->backoff_until;
			return;
		}
		set(a, PLAN_DELETE, PLAN_R_DELETING);
		return;
	}
	if (broken) {
		plan_broken(a, r);
		return;
	}
	if (!d) {
		a->spec = r->spec;
		set(a, PLAN_DELETE, PLAN_R_SPEC_REMOVED);
		return;
	}
	if (rec->step) {
		int resume = plan_action_from_string(rec->action);

		set(a, PLAN_RESUME, PLAN_R_RESUME_AFTER_CRASH);
		a->resume = resume > PLAN_NONE ? (enum plan_action_type)resume : PLAN_START;
		if (a->resume == PLAN_DEMOTE) {
			/* Where a demote lands depends on the restart policy, as when planned. */
			demote(a, r, d->spec);
			set(a, PLAN_RESUME, PLAN_R_RESUME_AFTER_CRASH);
		}
		return;
	}

	changed = strcmp(rec->spec_hash, d->hash) != 0;
	/* A stored spec this build cannot read back: only a changed hash means a change. */
	cmp = r->spec ? spec_compare(r->spec, d->spec) : changed ? SPEC_REBOOT : SPEC_SAME;
	if (d->spec->state == VM_DESIRED_RUNNING)
		plan_running(a, r, changed, cmp, in->now);
	else
		plan_stopped(a, r, changed);
}

static int cmp_names(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int cmp_actions(const void *x, const void *y)
{
	const struct plan_action *a = x, *b = y;
	bool da = a->type == PLAN_DELETE, db = b->type == PLAN_DELETE;

	/* Deletes first, so addresses and names they free are usable in the same pass. */
	if (da != db)
		return da ? -1 : 1;
	return strcmp(a->name, b->name);
}

int plan(const struct plan_input *in, struct plan_action **ret, size_t *ret_n)
{
	size_t cap = in->n_desired + in->n_broken_names + in->n_records;
	const char **names = xcalloc(cap ? cap : 1, sizeof(*names));
	struct plan_action *actions;
	struct index ix;
	size_t n = 0, u = 0;

	for (size_t i = 0; i < in->n_desired; i++)
		names[n++] = in->desired[i].spec->name;
	for (size_t i = 0; i < in->n_broken_names; i++)
		names[n++] = in->broken_names[i];
	for (size_t i = 0; i < in->n_records; i++)
		names[n++] = in->records[i].rec->name;
	qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++)
		if (u == 0 || strcmp(names[u - 1], names[i]) != 0)
			names[u++] = names[i];

	ix.desired = xcalloc(in->n_desired + 1, sizeof(*ix.desired));
	ix.records = xcalloc(in->n_records + 1, sizeof(*ix.records));
	for (size_t i = 0; i < in->n_desired; i++)
		ix.desired[i] = &in->desired[i];
	for (size_t i = 0; i < in->n_records; i++)
		ix.records[i] = &in->records[i];
	qsort(ix.desired, in->n_desired, sizeof(*ix.desired), cmp_desired);
	qsort(ix.records, in->n_records, sizeof(*ix.records), cmp_record);

	actions = xcalloc(u ? u : 1, sizeof(*actions));
	for (size_t i = 0; i < u; i++)
		plan_one(in, &ix, names[i], &actions[i]);
	qsort(actions, u, sizeof(*actions), cmp_actions);
	free(ix.desired);
	free(ix.records);
	free(names);
	*ret = actions;
	*ret_n = u;
	return 0;
}
