/*
 * wait.h - 'apply --wait' and 'delete --wait': follow VMs in the store until
 * they reach their goal, printing each phase change with the elapsed time.
 */
#ifndef BANGER_CLI_WAIT_H
#define BANGER_CLI_WAIT_H

#include <stddef.h>
#include <stdint.h>

#include "cli/cli.h"
#include "spec/spec.h"

enum wait_goal {
	WAIT_APPLIED, /* the VM runs (or is stopped) with exactly this spec */
	WAIT_GONE,    /* the VM's record is gone */
	WAIT_GOAL_MAX
};

struct wait_target {
	const char *name;
	enum wait_goal goal;
	char hash[SPEC_HASH_LEN + 1]; /* WAIT_APPLIED: the spec's hash */
	enum vm_desired_state state;  /* WAIT_APPLIED: running or stopped */
	/*
	 * WAIT_APPLIED: the record's 'failures' count read BEFORE the spec was
	 * written, -1 when there was no record. A VM that was Failed already
	 * keeps its old phase and error for a moment after bangerd takes the
	 * new hash; only a failure counted after that is this spec's.
	 */
	int failures_before;
};

/*
 * Poll the store until every target reaches its goal, one fails or
 * timeout_ms passes. A WAIT_APPLIED target has failed when its record is
 * Failed, with no action in progress, with this spec's hash, and with more
 * failures than before (its error is printed). A WAIT_GONE target is gone
 * when its record is (-ENOENT); any other store error is an error. Returns
 * CLI_EXIT_OK or CLI_EXIT_FAIL.
 */
int cli_wait(const struct cli_ctx *ctx, const struct wait_target *targets, size_t n,
	     int64_t timeout_ms);

#endif
