/*
 * probe_sandbox.c - credentials drop and libseccomp allow-list for the SSH
 * probe child; see probe_sandbox.h.
 */
#include "reconciler/guest/probe_sandbox.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/cleanup.h"

/* What libssh2 (and libcrypto, glibc's malloc) call during a handshake and user-auth. */
static const int allowed[] = {
	SCMP_SYS(read),
	SCMP_SYS(write),
	SCMP_SYS(readv),
	SCMP_SYS(writev),
	SCMP_SYS(recvfrom),
	SCMP_SYS(sendto),
	SCMP_SYS(recvmsg),
	SCMP_SYS(sendmsg),
	SCMP_SYS(poll),
	SCMP_SYS(ppoll),
	SCMP_SYS(close),
	SCMP_SYS(fcntl),
	SCMP_SYS(fstat),
	SCMP_SYS(newfstatat),
	SCMP_SYS(lseek),
	SCMP_SYS(brk),
	SCMP_SYS(munmap),
	SCMP_SYS(mremap),
	SCMP_SYS(madvise),
	SCMP_SYS(futex),
	SCMP_SYS(getrandom),
	SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep),
	SCMP_SYS(gettimeofday),
	SCMP_SYS(getpid),
	SCMP_SYS(gettid),
	SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(rt_sigreturn),
	SCMP_SYS(sched_yield),
	SCMP_SYS(sigaltstack),
	SCMP_SYS(exit),
	SCMP_SYS(exit_group),
};

/*
 * Memory may be mapped or re-protected, never executable: glibc's malloc
 * uses mmap, and mprotect to grow a thread's arena.
 */
static const int no_exec[] = { SCMP_SYS(mmap), SCMP_SYS(mprotect) };

/* Files: refused, not fatal (libcrypto may look for a config or /dev/urandom). */
static const int refused[] = { SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(openat2) };

int probe_sandbox_ids(struct probe_sandbox_ids *ret, struct bg_err *err)
{
	struct passwd *pw;
	struct group *gr;

	*ret = (struct probe_sandbox_ids){ .drop = geteuid() == 0 };
	if (!ret->drop)
		return 0;
	errno = 0;
	pw = getpwnam("nobody");
	if (!pw)
		return bg_error(err, errno ? errno : ENOENT, "ssh probe: no user 'nobody'");
	ret->uid = pw->pw_uid;
	ret->gid = pw->pw_gid;
	gr = getgrnam("nogroup");
	if (gr)
		ret->gid = gr->gr_gid;
	if (ret->uid == 0 || ret->gid == 0)
		return bg_errorf(err, EINVAL, "ssh probe: 'nobody' maps to root");
	return 0;
}

static void seccomp_releasep(scmp_filter_ctx *ctx)
{
	if (*ctx)
		seccomp_release(*ctx);
}

int probe_sandbox_enter(const struct probe_sandbox_ids *ids, struct bg_err *err)
{
	_cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
	int r;

	if (ids->drop) {
		if (setgroups(0, NULL) < 0)
			return bg_error(err, errno, "ssh probe: setgroups");
		if (setresgid(ids->gid, ids->gid, ids->gid) < 0)
			return bg_error(err, errno, "ssh probe: setresgid");
		if (setresuid(ids->uid, ids->uid, ids->uid) < 0)
			return bg_error(err, errno, "ssh probe: setresuid");
	}
	/* Not ptrace-able by other processes of the same (nobody) user, no core dump. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return bg_error(err, errno, "ssh probe: PR_SET_DUMPABLE");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return bg_error(err, errno, "ssh probe: PR_SET_NO_NEW_PRIVS");
	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return bg_errorf(err, ENOMEM, "ssh probe: seccomp_init failed");
	for (size_t i = 0; i < ARRAY_SIZE(allowed); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
		if (r < 0)
			return bg_error(err, -r, "ssh probe: seccomp rule for syscall %d",
					allowed[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(no_exec); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, no_exec[i], 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
		if (r < 0)
			return bg_error(err, -r, "ssh probe: seccomp rule for syscall %d",
					no_exec[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), refused[i], 0);
		if (r < 0)
			return bg_error(err, -r, "ssh probe: seccomp rule for syscall %d",
					refused[i]);
	}
	r = seccomp_load(ctx);
	if (r < 0)
		return bg_error(err, -r, "ssh probe: seccomp_load");
	return 0;
}
