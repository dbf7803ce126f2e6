/*
 * wait.c - following VMs until they converge; see wait.h.
 */
#include "cli/wait.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/util.h"
#include "common/cleanup.h"
#include "common/str.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/store.h"

#define POLL_MS 250

enum tstate {
	T_WAITING,
	T_DONE,
	T_FAILED
};

/*
 * What one look at a WAIT_APPLIED target's record says. *base is the
 * failures count a new failure must exceed; it follows the record while the
 * record is not yet about this spec (an old spec may fail again meanwhile),
 * and drops when bangerd forgives failures after a stable run.
 */
static enum tstate judge_applied(const struct wait_target *t, const struct vm_record *rec,
				 int *base)
{
	bool ours = strcmp(rec->spec_hash, t->hash) == 0;

	if (!ours) {
		*base = rec->failures;
		return T_WAITING;
	}
	if (rec->failures < *base)
		*base = rec->failures;
	if (t->state == VM_DESIRED_RUNNING && rec->phase == VM_PHASE_RUNNING &&
	    rec->observed_generation == rec->generation)
		return T_DONE;
	if (t->state == VM_DESIRED_STOPPED && rec->phase == VM_PHASE_STOPPED)
		return T_DONE;
	if (rec->phase == VM_PHASE_FAILED && !rec->action && !rec->step && rec->failures > *base)
		return T_FAILED;
	return T_WAITING;
}

int cli_wait(const struct cli_ctx *ctx, const struct wait_target *targets, size_t n,
	     int64_t timeout_ms)
{
	int64_t t0 = now_mono_ms();
	enum tstate *st = xcalloc(n + 1, sizeof(*st));
	char **last = xcalloc(n + 1, sizeof(*last));
	int *base = xcalloc(n + 1, sizeof(*base));
	bool warned = false;
	size_t left = n;
	int rc = CLI_EXIT_OK;

	for (size_t i = 0; i < n; i++)
		base[i] = targets[i].failures_before;
	while (left > 0) {
		_cleanup_(store_freep) struct store *s = NULL;
		double secs = (double)(now_mono_ms() - t0) / 1000.0;

		if (cli_store_open(ctx, &s) < 0) {
			rc = CLI_EXIT_FAIL;
			break;
		}
		if (s && !warned) {
			struct daemon_info info = { 0 };

			if (store_daemon_get(s, &info, NULL) < 0 ||
			    !cli_daemon_fresh(&info, NULL)) {
				fprintf(stderr, "banger: bangerd does not seem to be running; "
						"waiting anyway\n");
				warned = true;
			}
			daemon_info_release(&info);
		}
		for (size_t i = 0; s && i < n; i++) {
			const struct wait_target *t = &targets[i];
			struct vm_record rec = { 0 };
			_cleanup_free_ char *phase = NULL;
			struct bg_err err = { 0 };
			int r;

			if (st[i] != T_WAITING)
				continue;
			r = store_vm_get_by_name(s, t->name, &rec, &err);
			if (r < 0 && r != -ENOENT) {
				cli_error("vm/%s: %s", t->name, err.msg);
				st[i] = T_FAILED;
				left--;
				rc = CLI_EXIT_FAIL;
				continue;
			}
			if (t->goal == WAIT_GONE) {
				if (r == -ENOENT) {
					printf("vm/%s deleted (%.1fs)\n", t->name, secs);
					st[i] = T_DONE;
					left--;
				} else {
					phase = xstrdup(vm_phase_to_string(rec.phase));
				}
			} else if (r == 0) {
				phase = xstrdup(vm_phase_to_string(rec.phase));
				st[i] = judge_applied(t, &rec, &base[i]);
				if (st[i] == T_DONE) {
					printf("vm/%s %s (%.1fs)\n", t->name, phase, secs);
					left--;
				} else if (st[i] == T_FAILED) {
					printf("vm/%s Failed (%.1fs): %s\n", t->name, secs,
					       rec.last_error ? rec.last_error : "unknown error");
					left--;
					rc = CLI_EXIT_FAIL;
				}
			} else {
				phase = xstrdup("Pending");
			}
			if (st[i] == T_WAITING && phase && !str_eq(phase, last[i])) {
				printf("vm/%s %s (%.1fs)\n", t->name, phase, secs);
				free(last[i]);
				last[i] = TAKE_PTR(phase);
			}
			fflush(stdout);
			vm_record_release(&rec);
		}
		if (left == 0)
			break;
		if (now_mono_ms() - t0 >= timeout_ms) {
			for (size_t i = 0; i < n; i++)
				if (st[i] == T_WAITING)
					cli_error("timed out after %.0fs waiting for vm/%s (%s)",
						  (double)timeout_ms / 1000.0, targets[i].name,
						  last[i] ? last[i] : "not recorded yet");
			rc = CLI_EXIT_FAIL;
			break;
		}
		sleep_ms(POLL_MS);
	}
	for (size_t i = 0; i < n; i++)
		free(last[i]);
	free(last);
	free(base);
	free(st);
	return rc;
}
