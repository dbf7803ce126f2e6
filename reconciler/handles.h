/*
 * handles.h - what is TRUE now about a VM's kernel objects: its VMM process
 * (pid + start time), tap, loop devices and device-mapper device.
 *
 * Handles are transient: an in-memory cache plus <vm dir>/handles.json
 * (cJSON, written atomically, 0600). When both are missing, stale or corrupt
 * they are rebuilt from the OS: the VMM by its control socket path in
 * /proc/<pid>/cmdline, the tap by its name, loops by
 * /sys/block/loop<N>/loop/backing_file, the dm device by its deterministic
 * name in /sys/block/dm-<N>/dm/name. A corrupt handles.json is reported and
 * rebuilt, never trusted.
 *
 * vm_liveness() (and vm_alive(), built on it) is the only liveness test in
 * the code base.
 */
#ifndef BANGER_RECONCILER_HANDLES_H
#define BANGER_RECONCILER_HANDLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "reconciler/vm.h"

struct vm_handles {
	pid_t pid;	     /* VMM pid, 0: none */
	uint64_t start_time; /* its start time (clock ticks since boot), 0: unknown */
	char tap[16];	     /* "bg<id>" or "" */
	char base_loop[32];  /* "/dev/loopN" holding the base image, or "" */
	char cow_loop[32];   /* "/dev/loopN" holding the COW file, or "" */
	char dm_name[64];    /* "banger-<id>" or "" */
	char dm_dev[96];     /* "/dev/mapper/banger-<id>" or "" */
};

/* Deterministic names derived from the VM id (never from its name). */
void handles_tap_name(const char *id, char ret[16]); /* "bg<id>" */
void handles_dm_name(const char *id, char ret[64]);  /* "banger-<id>" */
void handles_dm_uuid(const char *id, char ret[64]);  /* "BANGER-<id>" */

/* Liveness of the recorded VMM: NONE without a pid, else ALIVE/DEAD/REUSED. */
enum vm_liveness vm_liveness(const struct vm_handles *h);
/* vm_liveness(h) == VM_LIVENESS_ALIVE. */
bool vm_alive(const struct vm_handles *h);

/*
 * Parse the contents of a handles.json (len bytes, need not be NUL-terminated)
 * into *ret: a JSON object {"version": 1, "pid", "start_time", "tap",
 * "base_loop", "cow_loop", "dm_name", "dm_dev"}. Unknown keys are ignored,
 * missing ones are empty. -EBADMSG (err says why) for anything else: bad
 * JSON, wrong types, out-of-range or inconsistent values (a pid without a
 * start time), names banger would not have made. The fuzzing entry point.
 */
int handles_parse(const char *data, size_t len, struct vm_handles *ret, struct bg_err *err);

/* <vm_dir>/handles.json: -ENOENT when missing, -EBADMSG when corrupt (err says why). */
int handles_load(const char *vm_dir, struct vm_handles *ret, struct bg_err *err);
int handles_save(const char *vm_dir, const struct vm_handles *h, struct bg_err *err);
/* Remove handles.json; a missing file is fine. */
int handles_remove(const char *vm_dir, struct bg_err *err);

/*
 * Rebuild handles for a VM from the OS alone. 'ctl_sock' is the path the VMM
 * was started with (firecracker --api-sock / qemu -qmp); a process whose
 * cmdline has an argument equal to it or containing it as a path component
 * of a "unix:<path>,..." style option is the VMM. When expected_start is
 * non-zero only a process with that start time matches. cow_disk is the
 * per-VM file behind the COW loop; rootfs_image the base image (a base loop
 * is only attributed to this VM through the dm device's dependencies).
 * Missing objects leave their fields empty; that is not an error.
 */
struct handles_probe {
	const char *id;
	const char *ctl_sock;
	const char *cow_disk;
	const char *rootfs_image;
	uint64_t expected_start;
	/*
	 * Who may be the VMM: a process run by root or by vmm_uid (0: root only),
	 * whose /proc/<pid>/exe is vmm_binary (NULL, or an interpreter script:
	 * not checked), started no earlier than not_before (ticks since boot, 0:
	 * no limit). Anything else naming the socket is ignored: a local user can
	 * put any path in a command line.
	 */
	uid_t vmm_uid;
	const char *vmm_binary;
	uint64_t not_before;
};
int handles_rediscover(const struct handles_probe *p, struct vm_handles *ret, struct bg_err *err);

/*
 * The handle cache: for each VM id, the last known handles, so that a pass
 * costs one read of /proc/<pid>/stat per VM and no file or /proc scan.
 *
 * handles_get() returns the cached entry as the truth, checked by that one
 * read (vm_liveness()), even when the process died or its pid was reused
 * (the caller sees DEAD/REUSED): nothing but this daemon starts a VM's VMM,
 * and it records each with handles_put(). The OS is asked (rediscovery) only
 * when something says the entry may be wrong:
 *  - a cache miss while the cache is cold (the daemon's first pass, after a
 *    restart): handles.json is trusted for a process that is still the one it
 *    names, else the VMM is looked for in /proc (crash safety: a daemon killed
 *    between starting a VMM and recording it);
 *  - handles_cache_mark_stale(): a caller learnt that this VM's handles may
 *    have changed: the entry is rebuilt from the OS on its next get. Nothing
 *    in bangerd calls it yet: a VMM's exit is seen by the stat read (its
 *    pidfd only wakes the loop), and taps are found by their deterministic
 *    names, so no netlink hint is wired;
 *  - handles_cache_mark_all_stale(): the periodic resync. An entry whose
 *    process is still the recorded one is kept (one stat read); any other
 *    (dead, reused, none) is rebuilt.
 * Once the cache is warm (handles_cache_set_warm(), after the first pass), a
 * miss is a VM created since by this daemon: it has no VMM yet and gets an
 * empty entry without any scan. All rediscoveries of one generation (until
 * the next handles_cache_begin_pass() or mark_*stale()) share one scan of
 * /proc. 'corrupt' (may be NULL) is set when a handles.json existed but
 * could not be trusted.
 */
struct handles_cache;
struct handles_cache *handles_cache_new(void);
void handles_cache_free(struct handles_cache *c);
/*
 * The binary rediscovery expects VMs of driver 'vmm' ("qemu", "firecracker")
 * to run (copied; NULL: not checked). The VMM uid is read from the group of
 * the VM dir (see vmm_sandbox.h); the start time must not be older than the
 * VM record (created_at, a minute's slack for clock steps).
 */
void handles_cache_set_vmm_binary(struct handles_cache *c, const char *vmm, const char *path);
/* The VMM uid range [first, first + count): a VM dir group outside it is no VMM uid. */
void handles_cache_set_vmm_uids(struct handles_cache *c, uid_t first, uid_t count);
int handles_get(struct handles_cache *c, const struct vm_record *rec, struct vm_handles *ret,
		bool *corrupt, struct bg_err *err);
/*
 * handles_get() that also says what the same single read of /proc/<pid>/stat
 * found: *ret_liveness (may be NULL) is vm_liveness() of *ret, without a
 * second read.
 */
int handles_observe(struct handles_cache *c, const struct vm_record *rec, struct vm_handles *ret,
		    enum vm_liveness *ret_liveness, bool *corrupt, struct bg_err *err);
/*
 * The cached handles of VM 'id' as they are, without asking the OS: the pid
 * the VMM had before rediscovery replaces a dead one. -ENOENT when none.
 */
int handles_cache_peek(struct handles_cache *c, const char *id, struct vm_handles *ret);
/* A new pass: the /proc index of the last one is dropped (built again on need). */
void handles_cache_begin_pass(struct handles_cache *c);
/* VM 'id' changed (its VMM exited, its tap went): rebuild it from the OS on its next get. */
void handles_cache_mark_stale(struct handles_cache *c, const char *id);
/* Every VM may have changed (the periodic resync): see above. */
void handles_cache_mark_all_stale(struct handles_cache *c);
/* Every VM that exists has been looked up once: from now on a miss is a new VM. */
void handles_cache_set_warm(struct handles_cache *c);

/* What the cache cost, for tests and benchmarks. */
struct handles_cache_stats {
	unsigned long rediscoveries; /* VMs rebuilt from the OS */
	unsigned long proc_scans;    /* scans of /proc (one serves a generation) */
};
void handles_cache_get_stats(const struct handles_cache *c, struct handles_cache_stats *ret);
/* Set (and persist to <vm dir>/handles.json) the handles of a VM. */
int handles_put(struct handles_cache *c, const struct vm_record *rec, const struct vm_handles *h,
		struct bg_err *err);
/* Forget a VM (cache entry and handles.json). */
int handles_forget(struct handles_cache *c, const struct vm_record *rec, struct bg_err *err);

#endif
