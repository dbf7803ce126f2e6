/*
 * fakes.h - a fake host layer and a fake VMM driver for tests of converge and
 * the daemon pass. The host fake records each call ("bridge tap rootdisk ...")
 * and can fail one named operation once; the VMM fake runs a real process
 * ('sh -c <script>' with the control socket in its argv), so liveness checks,
 * pidfds and signals are real.
 */
#ifndef BANGER_TESTS_FAKES_H
#define BANGER_TESTS_FAKES_H

#include <sys/types.h>

#include "common/buf.h"
#include "reconciler/host/host.h"
#include "reconciler/vmm/vmm.h"

extern const struct host_ops fake_host;
extern const struct vmm_driver fake_driver;

/*
 * Calls made so far, space-separated, e.g. "bridge tap rootdisk workdisk launch ".
 * baseimg_resolve records "baseimg" (and answers the image itself),
 * rootfs_grow records "rootfs-grow" (and answers 0: nothing grown).
 */
extern struct buf fake_calls;
/* When set, called with each op's name as it is recorded (before it may fail). */
extern void (*fake_call_hook)(const char *op);
/* When set, the next call of this op fails with -EIO (then it is cleared). */
extern const char *fake_fail_op;
/* What fake_driver.probe() reports. */
extern enum vmm_guest_state fake_probe_says;
/* The shell script the fake VMM runs ("exec sleep 600" by default). */
extern const char *fake_vmm_script;
/* The fake VMM's shutdown() is recorded ("shutdown") but the process keeps running. */
extern bool fake_vmm_ignores_shutdown;
/* What the fake host's rules_generation() says; -1: it fails (not supported). */
extern int64_t fake_rules_gen;
/* The pid of the last fake VMM started. */
extern pid_t fake_last_pid;
/* guest_args of the last start. */
extern char fake_last_args[4096];
/* seed_disk of the last start ("" for none). */
extern char fake_last_seed[4096];

/* When set, netrules_ensure reports its first forward as held by this tap. */
extern const char *fake_netrules_holder;

/* Reset all of the above (and start an empty call log). */
void fakes_reset(void);
void fakes_release(void);

/* A converge_env driver_for that always answers fake_driver. */
int fake_driver_for(void *ctx, enum vmm_kind kind, const char *recorded,
		    const struct vmm_driver **ret, struct bg_err *err);

#endif
