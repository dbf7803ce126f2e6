/*
 * proc.c - argv spawning, bounded runs, process identity; see proc.h.
 */
#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define OUTPUT_CAP (64 * 1024)

extern char **environ;

static void child_setup_fd(int from, int to, int devnull)
{
	int fd = from >= 0 ? from : devnull;

	if (fd != to)
		(void)dup2(fd, to);
	else
		(void)fcntl(fd, F_SETFD, 0);
}

/* Syscalls a VMM has no business making; seccomp_deny refuses them with EPERM. */
static const char *const denied_syscalls[] = {
	"acct",
	"add_key",
	"bpf",
	"chroot",
	"clock_settime",
	"delete_module",
	"finit_module",
	"fsconfig",
	"fsmount",
	"fsopen",
	"init_module",
	"kexec_file_load",
	"kexec_load",
	"keyctl",
	"mount",
	"move_mount",
	"open_by_handle_at",
	"open_tree",
	"perf_event_open",
	"pivot_root",
	"process_vm_readv",
	"process_vm_writev",
	"ptrace",
	"reboot",
	"request_key",
	"setns",
	"settimeofday",
	"swapoff",
	"swapon",
	"umount2",
	"unshare",
	"userfaultfd",
};

/* The deny-list filter, built in the parent (libseccomp allocates). */
static int deny_filter_new(scmp_filter_ctx *ret, struct bg_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);

	if (!ctx)
		return bg_errorf(err, ENOMEM, "seccomp_init");
	for (size_t i = 0; i < sizeof(denied_syscalls) / sizeof(denied_syscalls[0]); i++) {
		int nr = seccomp_syscall_resolve_name(denied_syscalls[i]);
		int r;

		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
		if (r < 0) {
			seccomp_release(ctx);
			return bg_error(err, -r, "seccomp rule for '%s'", denied_syscalls[i]);
		}
	}
	*ret = ctx;
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/*
 * In the child: close every fd from 3 up but the kept ones (sorted, with the
 * error pipe among them), and let the kept ones (not the pipe) survive exec.
 */
static int child_close_fds(const int *keep, size_t n, int errpipe)
{
	unsigned lo = 3;

	for (size_t i = 0; i <= n; i++) {
		unsigned hi = i < n ? (unsigned)keep[i] : ~0U; /* close [lo, hi) */

		if (hi > lo && syscall(SYS_close_range, lo, i < n ? hi - 1 : ~0U, 0U) != 0)
			for (unsigned fd = lo; fd < hi && fd < 65536; fd++)
				(void)close((int)fd);
		if (i < n) {
			if (keep[i] != errpipe && fcntl(keep[i], F_SETFD, 0) < 0)
				return -errno;
			if (hi + 1 > lo)
				lo = hi + 1;
		}
	}
	return 0;
}

/*
 * Namespaces, ids, no_new_privs, seccomp for the child; -errno on failure.
 * seccomp_load() allocates: safe here because the daemon is single-threaded.
 */
static int child_confine(const struct proc_spawn_opts *opts, scmp_filter_ctx filter)
{
	unsigned long ns = opts->unshare_flags & ~(unsigned long)CLONE_NEWPID;

	if (ns && unshare((int)ns) < 0)
		return -errno;
	/* Our mounts are not the host's: nothing propagates either way. */
	if ((ns & CLONE_NEWNS) && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;
	if (opts->set_ids) {
		if (setgroups(opts->n_groups, opts->groups) < 0 ||
		    setresgid(opts->gid, opts->gid, opts->gid) < 0 ||
		    setresuid(opts->uid, opts->uid, opts->uid) < 0)
			return -errno;
	}
	if (opts->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (filter) {
		int r = seccomp_load(filter);

		if (r < 0)
			return r;
	}
	return 0;
}

int proc_spawn(const char *const argv[], const struct proc_spawn_opts *opts, pid_t *ret_pid,
	       struct bg_err *err)
{
	scmp_filter_ctx filter = NULL;
	int *keep = NULL;
	size_t n_keep = 0;
	struct proc_spawn_opts defaults = PROC_SPAWN_OPTS_INIT;
	int pipefd[2];
	int devnull;
	pid_t pid;
	int child_errno = 0;
	ssize_t n;

	if (!argv || !argv[0])
		return bg_errorf(err, EINVAL, "spawn: empty argv");
	if (!opts)
		opts = &defaults;
	for (size_t i = 0; i < opts->n_keep_fds; i++)
		if (opts->keep_fds[i] < 3)
			return bg_errorf(err, EINVAL, "spawn: cannot keep fd %d",
					 opts->keep_fds[i]);
	if (opts->seccomp_deny) {
		int r = deny_filter_new(&filter, err);

		if (r < 0)
			return r;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		int e = errno;
		if (filter)
			seccomp_release(filter);
		return bg_error(err, e, "pipe");
	}
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0) {
		int e = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		if (filter)
			seccomp_release(filter);
		return bg_error(err, e, "open /dev/null");
	}
	/* The kept fds and the error pipe, sorted, for the child to spare. */
	keep = xcalloc(opts->n_keep_fds + 1, sizeof(*keep));
	for (size_t i = 0; i < opts->n_keep_fds; i++)
		keep[n_keep++] = opts->keep_fds[i];
	keep[n_keep++] = pipefd[1];
	qsort(keep, n_keep, sizeof(*keep), cmp_int);
	if (opts->unshare_flags & CLONE_NEWPID)
		/* Like fork(), the child first (pid 1) of a new pid namespace. */
		pid = (pid_t)syscall(SYS_clone, (unsigned long)(SIGCHLD | CLONE_NEWPID), NULL, NULL,
				     NULL, NULL);
	else
		pid = fork();
	if (pid < 0) {
		int e = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		close(devnull);
		free(keep);
		if (filter)
			seccomp_release(filter);
		return bg_error(err, e, "fork");
	}
	if (pid == 0) {
		sigset_t all;

		/* The daemon blocks signals for signalfd; the child must not inherit that. */
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		for (int s = 1; s < NSIG; s++)
			if (s != SIGKILL && s != SIGSTOP)
				signal(s, SIG_DFL);
		if (opts->new_session)
			(void)setsid();
		child_setup_fd(opts->stdin_fd, 0, devnull);
		child_setup_fd(opts->stdout_fd, 1, devnull);
		child_setup_fd(opts->stderr_fd, 2, devnull);
		if (opts->cwd && chdir(opts->cwd) < 0)
			goto fail;
		/* Keep the error pipe (CLOEXEC: it reports exec failures) and keep_fds. */
		{
			int r = child_close_fds(keep, n_keep, pipefd[1]);

			if (r == 0)
				r = child_confine(opts, filter);
			if (r < 0) {
				errno = -r;
				goto fail;
			}
		}
		execvpe(argv[0], (char *const *)argv, opts->envp ? opts->envp : environ);
	fail:
		child_errno = errno;
		(void)!write(pipefd[1], &child_errno, sizeof(child_errno));
		_exit(127);
	}
	free(keep);
	if (filter)
		seccomp_release(filter);
	close(pipefd[1]);
	close(devnull);
	do
		n = read(pipefd[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	if (n == sizeof(child_errno)) {
		(void)waitpid(pid, NULL, 0);
		return bg_error(err, child_errno, "exec '%s'", argv[0]);
	}
	*ret_pid = pid;
	return 0;
}

static const char *last_line(char *out)
{
	size_t n = strlen(out);
	char *p;

	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = '\0';
	p = strrchr(out, '\n');
	return p ? p + 1 : out;
}

/*
 * Run argv to its end with stdout and stderr captured together into *ret_out
 * (owned, always set on success). *ret_wstatus gets waitpid()'s status.
 */
static int run_capture(const char *const argv[], int timeout_ms, struct buf *ret_out,
		       int *ret_wstatus, struct bg_err *err)
{
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	_cleanup_buf_ struct buf out = { 0 };
	int pipefd[2];
	int64_t deadline = timeout_ms > 0 ? now_mono_ms() + timeout_ms : -1;
	bool timed_out = false;
	pid_t pid;
	int status, r;

	buf_init(&out);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return bg_error(err, errno, "pipe");
	opts.stdout_fd = opts.stderr_fd = pipefd[1];
	r = proc_spawn(argv, &opts, &pid, err);
	close(pipefd[1]);
	if (r < 0) {
		close(pipefd[0]);
		return r;
	}
	for (;;) {
		struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
		int wait_ms = -1;
		char chunk[4096];
		ssize_t n;

		if (deadline >= 0) {
			int64_t left = deadline - now_mono_ms();
			if (left <= 0) {
				timed_out = true;
				break;
			}
			wait_ms = (int)left;
		}
		r = poll(&pfd, 1, wait_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			continue;
		n = read(pipefd[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out.len < OUTPUT_CAP)
			buf_add(&out, chunk, (size_t)n);
	}
	close(pipefd[0]);
	if (timed_out)
		(void)kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return bg_error(err, errno, "waitpid '%s'", argv[0]);
	if (timed_out)
		return bg_errorf(err, ETIMEDOUT, "'%s' timed out after %d ms", argv[0], timeout_ms);
	*ret_out = out;
	memset(&out, 0, sizeof(out)); /* handed over */
	*ret_wstatus = status;
	return 0;
}

int proc_run(const char *const argv[], int timeout_ms, char **ret_output, struct bg_err *err)
{
	_cleanup_buf_ struct buf out = { 0 };
	int status, r;

	r = run_capture(argv, timeout_ms, &out, &status, err);
	if (r < 0)
		return r;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		_cleanup_free_ char *copy = xstrdup(out.data);
		const char *line = last_line(copy);

		if (WIFSIGNALED(status))
			r = bg_errorf(err, EIO, "'%s' killed by signal %d%s%s", argv[0],
				      WTERMSIG(status), *line ? ": " : "", line);
		else
			r = bg_errorf(err, EIO, "'%s' exited with status %d%s%s", argv[0],
				      WEXITSTATUS(status), *line ? ": " : "", line);
		if (ret_output)
			*ret_output = buf_detach(&out, NULL);
		return r;
	}
	if (ret_output)
		*ret_output = buf_detach(&out, NULL);
	return 0;
}

int proc_run_status(const char *const argv[], int timeout_ms, char **ret_output, int *ret_status,
		    struct bg_err *err)
{
	_cleanup_buf_ struct buf out = { 0 };
	int status, r;

	r = run_capture(argv, timeout_ms, &out, &status, err);
	if (r < 0)
		return r;
	*ret_status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
	if (ret_output)
		*ret_output = buf_detach(&out, NULL);
	return 0;
}

/* The unsigned decimal field at p into *ret; p then points past it. */
static int stat_field(char **p, uint64_t *ret)
{
	char *end;

	errno = 0;
	*ret = strtoull(*p, &end, 10);
	if (errno || end == *p)
		return -EBADMSG;
	*p = end;
	return 0;
}

int proc_stat_read(pid_t pid, struct proc_stat *ret)
{
	char path[64];
	char buf[1024];
	_cleanup_close_ int fd = -1;
	struct proc_stat st = { 0 };
	ssize_t n;
	char *p;

	if (pid <= 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return n < 0 ? -errno : -ENOENT;
	buf[n] = '\0';
	/* The comm field may hold ')' and spaces: fields start after the last ')'. */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2])
		return -EBADMSG;
	p += 2;
	st.state = *p;
	/* p is at field 3 (state); utime is 14, stime 15, starttime 22, rss 24. */
	for (int field = 3; field < 24; field++) {
		uint64_t v;

		p = strchr(p, ' ');
		if (!p)
			return -EBADMSG;
		p++;
		if (field + 1 != 14 && field + 1 != 15 && field + 1 != 22 && field + 1 != 24)
			continue;
		/* rss (24) may be signed in principle; a negative value is left at 0. */
		if (field + 1 == 24 && *p == '-')
			continue;
		if (stat_field(&p, &v) < 0)
			return -EBADMSG;
		if (field + 1 == 14)
			st.utime = v;
		else if (field + 1 == 15)
			st.stime = v;
		else if (field + 1 == 22)
			st.start_time = v;
		else
			st.rss_pages = v;
	}
	*ret = st;
	return 0;
}

/* Parse state and starttime from /proc/<pid>/stat. */
static int read_stat(pid_t pid, char *ret_state, uint64_t *ret_start)
{
	struct proc_stat st;
	int r = proc_stat_read(pid, &st);

	if (r < 0)
		return r;
	if (ret_state)
		*ret_state = st.state;
	if (ret_start)
		*ret_start = st.start_time;
	return 0;
}

int proc_start_time(pid_t pid, uint64_t *ret_start, struct bg_err *err)
{
	int r;

	if (pid <= 0)
		return bg_errorf(err, EINVAL, "invalid pid %d", (int)pid);
	r = read_stat(pid, NULL, ret_start);
	if (r < 0)
		return bg_error(err, r, "read start time of pid %d", (int)pid);
	return 0;
}

bool proc_identity_matches(pid_t pid, uint64_t start_time)
{
	uint64_t st;
	char state;

	if (pid <= 0)
		return false;
	if (read_stat(pid, &state, &st) < 0)
		return false;
	if (state == 'Z' || state == 'X')
		return false;
	return start_time == 0 || st == start_time;
}

int proc_pidfd_open(pid_t pid, uint64_t start_time, struct bg_err *err)
{
	uint64_t st;
	int fd;

	if (pid <= 0)
		return bg_errorf(err, ESRCH, "invalid pid %d", (int)pid);
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return bg_error(err, errno, "pidfd_open %d", (int)pid);
	/*
	 * pidfd_open fds are always CLOEXEC. Check identity after opening: the fd
	 * pins the process. A zombie (or a leader whose other threads are still
	 * exiting) keeps its start time, so waiting on it through the fd still works.
	 */
	if (read_stat(pid, NULL, &st) < 0 || (start_time != 0 && st != start_time)) {
		close(fd);
		return bg_errorf(err, ESRCH, "pid %d is gone or is another process now", (int)pid);
	}
	return fd;
}

int proc_signal(pid_t pid, uint64_t start_time, int sig, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;

	fd = proc_pidfd_open(pid, start_time, err);
	if (fd < 0)
		return fd;
	if (syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) < 0)
		return bg_error(err, errno, "signal %d to pid %d", sig, (int)pid);
	return 0;
}

int proc_wait_gone(pid_t pid, uint64_t start_time, int timeout_ms)
{
	_cleanup_close_ int fd = -1;
	int64_t deadline = now_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);

	fd = proc_pidfd_open(pid, start_time, NULL);
	if (fd < 0) {
		/* Gone already; reap it if it is our zombie child. */
		(void)waitpid(pid, NULL, WNOHANG);
		return 0;
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_mono_ms();
		int r;

		if (left < 0)
			left = 0;
		r = poll(&pfd, 1, (int)left);
		if (r > 0) {
			(void)waitpid(pid, NULL, WNOHANG);
			return 0;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (left == 0)
			return -ETIMEDOUT;
	}
}

int proc_cmdline(pid_t pid, char **ret, size_t *ret_len)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	return fs_read_file(path, 256 * 1024, ret, ret_len, NULL);
}

char *proc_find_in_path(const char *name)
{
	_cleanup_free_ char *path = NULL;
	char *save = NULL, *dir;
	const char *env;

	if (!name || !*name)
		return NULL;
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
	env = getenv("PATH");
	path = xstrdup(
		env && *env ? env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	for (dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char *full = fs_path_join(*dir ? dir : ".", name);

		if (access(full, X_OK) == 0)
			return full;
		free(full);
	}
	return NULL;
}
