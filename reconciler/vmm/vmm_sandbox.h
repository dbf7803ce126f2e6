/*
 * vmm_sandbox.h - the confinement of VMM processes: a per-VM unprivileged
 * uid from the daemon's range (bangerd --vmm-uids START:COUNT), recorded as
 * the group of the VM's 0700 directory; /dev/kvm by the kvm group; the
 * spawn options (ids, namespaces, no_new_privs, seccomp); and the fds the
 * daemon opens for a VMM that may open nothing itself (tap, kernel copies).
 *
 * The uid is recorded where rediscovery reads it (handles.c: the VM dir's
 * group) and freed with the VM dir on delete. A VM dir is 0700 root: the
 * group is a record, it grants nothing.
 */
#ifndef BANGER_RECONCILER_VMM_VMM_SANDBOX_H
#define BANGER_RECONCILER_VMM_VMM_SANDBOX_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/proc.h"

#define VMM_SANDBOX_DEFAULT_UIDS "1879048192:65536"

struct vmm_sandbox {
	uid_t uid_first;
	uid_t uid_count; /* 0: off, VMMs run as root (bangerd --vmm-uids off) */
	gid_t groups[1]; /* supplementary groups of a VMM: kvm, when it exists */
	size_t n_groups;
};

/*
 * Parse "START:COUNT" (decimal) or "off" (count 0). The range must not hold
 * root, nobody (65534) or (uid_t)-1 and must not wrap. -EINVAL with a message.
 */
int vmm_sandbox_parse_uids(const char *s, uid_t *ret_first, uid_t *ret_count, struct bg_err *err);

/* Fill *sb for the range (looks up the kvm group). Never fails. */
void vmm_sandbox_init(struct vmm_sandbox *sb, uid_t first, uid_t count);

/* Is the sandbox on (a uid range configured)? sb may be NULL. */
bool vmm_sandbox_enabled(const struct vmm_sandbox *sb);

/*
 * The VMM uid of the VM whose directory is vm_dir (<state>/vms/<id>): the
 * one recorded (its group, when inside the range), else the lowest one no
 * sibling VM dir records, then recorded (chown root:<uid>, chmod 0700).
 * -ENOSPC when the range is used up.
 */
int vmm_sandbox_uid(const struct vmm_sandbox *sb, const char *vm_dir, uid_t *ret_uid,
		    struct bg_err *err);

/*
 * Spawn options of a confined VMM: no_new_privs, the seccomp deny-list, the
 * namespaces in 'unshare_flags', and when uid != 0 that uid, gid = uid and
 * the sandbox's supplementary groups. sb outlives opts (groups point into it).
 */
void vmm_sandbox_spawn_opts(const struct vmm_sandbox *sb, uid_t uid, unsigned long unshare_flags,
			    struct proc_spawn_opts *opts);

/* Open the existing tap 'name' (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR): an fd, or -errno. */
int vmm_sandbox_tap_open(const char *name, struct bg_err *err);

/*
 * A sealed memfd holding a copy of the regular file at 'path' (opened
 * O_NOFOLLOW now): whatever uid the VMM runs as can read it through
 * /proc/self/fd/N, and nobody can change it under the VMM. An fd, or -errno.
 */
int vmm_sandbox_memfd_copy(const char *path, struct bg_err *err);

#endif
