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
};

/*
 * Poll the store until every target reaches its goal, one fails (Failed with
 * this spec: its error is printed) or timeout_ms passes. Returns CLI_EXIT_OK
 * or CLI_EXIT_FAIL.
 */
int cli_wait(const struct cli_ctx *ctx, const struct wait_target *targets, size_t n,
	     int64_t timeout_ms);

#endif
