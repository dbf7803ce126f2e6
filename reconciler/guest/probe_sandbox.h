/*
 * probe_sandbox.h - the jail the SSH readiness probe's child runs libssh2 in
 * (one of the two includers of seccomp.h, with common/proc.c's VMM deny-list;
 * neither lets a libseccomp type into a header). The child parses bytes a guest controls,
 * so it keeps nothing but the sockets it inherited: no user, no way to gain
 * privileges, and a seccomp allow-list of the syscalls an SSH handshake over
 * an already connected socket needs.
 */
#ifndef BANGER_RECONCILER_GUEST_PROBE_SANDBOX_H
#define BANGER_RECONCILER_GUEST_PROBE_SANDBOX_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/err.h"

struct probe_sandbox_ids {
	bool drop; /* false when not root: there is nothing to drop to */
	uid_t uid;
	gid_t gid;
};

/*
 * Look up the unprivileged identity (nobody, nogroup) in the parent, before
 * fork(): NSS may open files, which the jail refuses. Returns 0 or -errno.
 */
int probe_sandbox_ids(struct probe_sandbox_ids *ret, struct bg_err *err);

/*
 * Enter the jail, for good: setgroups(0), setresgid/setresuid to ids (when
 * ids->drop), not dumpable, PR_SET_NO_NEW_PRIVS, then the seccomp filter:
 * I/O on open descriptors, memory (never executable), time, futex and exit
 * are allowed;
 * open/openat/openat2 fail with EPERM (libraries probe files and cope);
 * any other syscall kills the process (SIGSYS). Close every descriptor the
 * child must not keep BEFORE calling this (close is allowed, but so is
 * read/write on whatever is still open). Returns 0 or -errno.
 */
int probe_sandbox_enter(const struct probe_sandbox_ids *ids, struct bg_err *err);

#endif
