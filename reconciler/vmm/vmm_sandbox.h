/*
 * vmm_sandbox.h - the confinement of VMM processes: a per-VM unprivileged
 * uid from the daemon's range (bangerd --vmm-uids START:COUNT), recorded as
 * the group of the VM's 0700 directory; /dev/kvm by the kvm group; the
 * spawn options (ids, namespaces, no_new_privs, seccomp); and the fds the
 * daemon opens for a VMM that may open nothing itself (tap, kernel copies).
 *
 * The uid is recorded where rediscovery reads it (handles.c: the VM dir's
 * group) and freed with the VM dir on delete. A VM dir is 0700 root: the
 * group is a record, it grants nothing; a VMM that opens files by path
 * (Firecracker) gets 0710, search only, and the files it needs are granted
 * to its group one by one (root stays their owner, so the VMM cannot change
 * their mode).
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

/*
 * Let the VMM uid's group use the regular file or block device at 'path':
 * it must be owned by root; it becomes root:<uid> with 'mode' (0660 for a
 * disk the VMM writes, 0640 for one it reads). 0 or -errno.
 */
int vmm_sandbox_grant_file(const char *path, uid_t uid, mode_t mode, struct bg_err *err);

/*
 * A directory where the VMM uid may create its sockets: made if missing (never
 * through a symlink), then root:<uid> 0770. The uid can plant anything there:
 * root removes its entries without following them and connects to a socket
 * there only through vmm_sandbox_sock_path(). 0 or -errno.
 */
int vmm_sandbox_sock_dir(const char *path, uid_t uid, struct bg_err *err);

/*
 * Let the uid reach and search the VM dir (<state>/vms/<id>): it becomes
 * 0710 root:<uid> (the group already records the uid, see vmm_sandbox_uid()),
 * <state>/vms and <state> get search for others (o+x, never read), and every
 * directory above must already allow it (-EACCES names the one that does
 * not). 0 or -errno.
 */
int vmm_sandbox_traverse(const char *vm_dir, uid_t uid, struct bg_err *err);

/*
 * Make the persistent tap 'name' usable by the uid alone (TUNSETOWNER and
 * TUNSETGROUP uid): the VMM attaches to it by name. 0 or -errno.
 */
int vmm_sandbox_tap_own(const char *name, uid_t uid, struct bg_err *err);

/*
 * A path that reaches the unix socket at 'path' without following a symlink
 * in its last component, for connect(): *ret_fd is an O_PATH fd of the
 * socket (the caller closes it) and ret_path ("/proc/self/fd/N") names it
 * while that fd is open. -ENOENT, -ELOOP (a symlink), -ENOTSOCK, ...
 */
int vmm_sandbox_sock_path(const char *path, int *ret_fd, char ret_path[32]);

/* Open the existing tap 'name' (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR): an fd, or -errno. */
int vmm_sandbox_tap_open(const char *name, struct bg_err *err);

/*
 * A sealed memfd holding a copy of the regular file at 'path' (opened
 * O_NOFOLLOW now): whatever uid the VMM runs as can read it through
 * /proc/self/fd/N, and nobody can change it under the VMM. An fd, or -errno.
 */
int vmm_sandbox_memfd_copy(const char *path, struct bg_err *err);

#endif
