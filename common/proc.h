/*
 * proc.h - run programs with argv arrays (never a shell) and identify processes.
 *
 * A process is identified by its pid plus its start time (field 22 of
 * /proc/<pid>/stat, in clock ticks since boot), so a recycled pid never
 * matches. Signals go through a pidfd opened before the identity check, so
 * the check and the kill are about the same process.
 */
#ifndef BANGER_COMMON_PROC_H
#define BANGER_COMMON_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

struct proc_spawn_opts {
	bool new_session;  /* setsid() in the child: survives the parent's session */
	int stdin_fd;	   /* -1: /dev/null */
	int stdout_fd;	   /* -1: /dev/null */
	int stderr_fd;	   /* -1: /dev/null; may equal stdout_fd */
	const char *cwd;   /* NULL: inherit */
	char *const *envp; /* NULL: inherit the environment */

	/* The confinement of a sandboxed child (all off when zero). */
	const int *keep_fds; /* fds (>= 3) inherited under the same numbers */
	size_t n_keep_fds;
	unsigned long unshare_flags; /* CLONE_NEW*: namespaces of its own (CLONE_NEWPID: it is
				      * pid 1 of a new pid namespace); mounts are made private */
	bool set_ids;		     /* run as uid/gid with exactly groups[] */
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t n_groups;
	bool no_new_privs; /* PR_SET_NO_NEW_PRIVS */
	bool seccomp_deny; /* a seccomp filter refusing (EPERM) the syscalls a VMM never needs:
			     * mount, ptrace, module and kexec loading, bpf, keyrings... */
};

/* Options with all fds set to -1 (i.e. /dev/null). */
#define PROC_SPAWN_OPTS_INIT                                     \
	{                                                        \
		.stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1 \
	}

/*
 * Start argv[0] (looked up in PATH when it has no '/') with argv. Every fd
 * other than 0-2 and keep_fds is closed in the child. The confinement
 * options apply in this order: namespaces, fds, ids, no_new_privs, seccomp;
 * any failure is an exec failure. Exec failure is reported here (not
 * as an exit status) through a CLOEXEC pipe. Returns 0 and the pid, or -errno.
 */
int proc_spawn(const char *const argv[], const struct proc_spawn_opts *opts, pid_t *ret_pid,
	       struct bg_err *err);

/*
 * Run argv to completion with a deadline (timeout_ms <= 0: none); on timeout
 * the child is killed with SIGKILL and reaped. stdout and stderr are captured
 * together (at most 64 KiB kept) into *ret_output when non-NULL (owned).
 * Returns 0 when it exited with status 0, else -EIO (non-zero exit, message
 * holds the last output line), -ETIMEDOUT or another -errno.
 */
int proc_run(const char *const argv[], int timeout_ms, char **ret_output, struct bg_err *err);

/*
 * Like proc_run(), for programs whose exit status is an answer (diff, grep):
 * a program that ran to its end is a success whatever its status. Returns 0
 * with *ret_status set to its exit status (0..255), or 128 + the signal
 * number when a signal killed it (as a shell reports it); the output, as with
 * proc_run(), in *ret_output when non-NULL (owned). Returns -errno only when
 * it could not be run (e.g. -ENOENT from exec) or timed out (-ETIMEDOUT; it is
 * killed and reaped); *ret_status and *ret_output are then left alone.
 */
int proc_run_status(const char *const argv[], int timeout_ms, char **ret_output, int *ret_status,
		    struct bg_err *err);

/* What one read of /proc/<pid>/stat says about a process. */
struct proc_stat {
	char state;	     /* field 3: 'R', 'S', 'Z' (zombie), 'X' (dead)... */
	uint64_t utime;	     /* field 14: user CPU, clock ticks */
	uint64_t stime;	     /* field 15: system CPU, clock ticks */
	uint64_t start_time; /* field 22: clock ticks since boot */
	uint64_t rss_pages;  /* field 24: resident set, pages */
};

/*
 * Read /proc/<pid>/stat once into *ret (written only on success): -ENOENT
 * (or another -errno) when there is no such process, -EBADMSG when it does
 * not parse. No error message: callers probe many pids.
 */
int proc_stat_read(pid_t pid, struct proc_stat *ret);

/* Start time of pid in clock ticks since boot. -ENOENT if there is no such process. */
int proc_start_time(pid_t pid, uint64_t *ret_start, struct bg_err *err);

/*
 * true when pid exists, is not a zombie, and (if start_time != 0) started at
 * start_time. The building block of vm_alive(); don't use it as a liveness
 * test for VMs directly.
 */
bool proc_identity_matches(pid_t pid, uint64_t start_time);

/*
 * Open a pidfd for pid after checking its identity. Returns the fd (CLOEXEC),
 * -ESRCH when the process is gone or is another process now.
 */
int proc_pidfd_open(pid_t pid, uint64_t start_time, struct bg_err *err);

/* Send sig to pid only if its identity matches. -ESRCH when gone/mismatched. */
int proc_signal(pid_t pid, uint64_t start_time, int sig, struct bg_err *err);

/*
 * Wait until the process is gone (exited, and reaped if it is our child), at
 * most timeout_ms. Works for non-children through a pidfd. Returns 0 when
 * gone, -ETIMEDOUT otherwise.
 */
int proc_wait_gone(pid_t pid, uint64_t start_time, int timeout_ms);

/* Read /proc/<pid>/cmdline as a NUL-separated buffer (owned). */
int proc_cmdline(pid_t pid, char **ret, size_t *ret_len);

/* Resolve argv0 in PATH: owned absolute path, or NULL when not found/executable. */
char *proc_find_in_path(const char *name);

#endif
