/*
 * test_ssh.c - reconciler/guest/ssh.c and known_hosts.c against a real
 * OpenSSH sshd, and OpenSSH's own client against the same known_hosts.
 *
 * Root only. The test process moves itself into a new network namespace and
 * a private mount namespace (unshare), so the sshd it starts listens on a
 * veth address nobody else can reach and its privilege-separation directory
 * (/run/sshd) lives on a private tmpfs; both namespaces die with the test.
 * sshd gets its own host keys and config in a temp dir and authorizes
 * banger's generated client key. The sequence:
 *   first probe pins (one line ssh-keygen -F finds, ed25519 preferred over
 *   ecdsa), second probe OK, exec (stdout/stderr/stdin, exit status 3), PTY
 *   shell (window size, resize, exit status, terminal restored), OpenSSH
 *   accepts the pins; a regenerated host key -> "possible MITM" from us and
 *   "Host key verification failed" from ssh; known_hosts_remove -> re-pin;
 *   an ecdsa-only server after an ed25519 pin -> refused by both; @revoked
 *   -> refused by both; OpenSSH's accept-new entries are read by us.
 * Teardown kills only the sshd it started (by pid, start time checked),
 * deletes the veth and checks that no process is left in the namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/guest/known_hosts.h"
#include "reconciler/guest/probe_sandbox.h"
#include "reconciler/guest/ssh.h"
#include "reconciler/guest/ssh_config.h"
#include "reconciler/store.h"
#include "spec/spec.h"
#include "tests/lib/testutil.h"

#define NAME "web-1.vm"

static struct {
	bool ready;
	char *dir;    /* temp dir: sshd files, state dir */
	char *state;  /* banger state dir */
	char *kh;     /* <state>/ssh/known_hosts */
	char *key;    /* <state>/ssh/id_ed25519 */
	char *block;  /* the managed ssh_config block file */
	char *banger; /* the banger binary under test */
	char veth[2][16];
	char ip[16];
	pid_t sshd;
	uint64_t sshd_start;
	char *netns; /* readlink /proc/self/ns/net */
} T;

static void run_ok(const char *const argv[])
{
	_cleanup_free_ char *out = NULL;
	struct bg_err err = { 0 };

	if (proc_run(argv, 60000, &out, &err) < 0)
		fail_msg("%s: %s\n%s", argv[0], err.msg, out ? out : "");
}

static void keygen(const char *name, const char *type)
{
	_cleanup_free_ char *path = fs_path_join(T.dir, name);
	_cleanup_free_ char *pub = xasprintf("%s.pub", path);
	const char *argv[] = { "ssh-keygen", "-q", "-t", type, "-N", "", "-f", path, NULL };

	(void)unlink(path);
	(void)unlink(pub);
	run_ok(argv);
}

static bool sshd_listening(void *arg)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(22) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	(void)arg;
	inet_pton(AF_INET, T.ip, &a.sin_addr);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static void stop_sshd(void)
{
	int status;

	if (T.sshd <= 0)
		return;
	(void)proc_signal(T.sshd, T.sshd_start, SIGTERM, NULL);
	assert_int_equal(waitpid(T.sshd, &status, 0), T.sshd);
	T.sshd = 0;
}

/* (Re)start sshd with the named host keys (files in T.dir). */
static void start_sshd(const char *const *hostkeys)
{
	_cleanup_free_ char *cfg = fs_path_join(T.dir, "sshd_config");
	_cleanup_free_ char *log = fs_path_join(T.dir, "sshd.log");
	struct proc_spawn_opts o = PROC_SPAWN_OPTS_INIT;
	struct bg_err err = { 0 };
	FILE *f;
	int logfd;

	stop_sshd();
	f = fopen(cfg, "we");
	assert_non_null(f);
	fprintf(f,
		"Port 22\nListenAddress %s\nPidFile none\nAuthorizedKeysFile %s/authorized_keys\n"
		"StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
		"PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n",
		T.ip, T.dir);
	for (const char *const *k = hostkeys; *k; k++)
		fprintf(f, "HostKey %s/%s\n", T.dir, *k);
	fclose(f);
	logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(logfd >= 0);
	o.stdout_fd = o.stderr_fd = logfd;
	{
		const char *argv[] = { "/usr/sbin/sshd", "-D", "-e", "-f", cfg, NULL };

		assert_int_equal(proc_spawn(argv, &o, &T.sshd, &err), 0);
	}
	close(logfd);
	assert_int_equal(proc_start_time(T.sshd, &T.sshd_start, &err), 0);
	if (!test_wait_for(sshd_listening, NULL, 30000))
		fail_msg("sshd did not listen on %s:22 (see %s)", T.ip, log);
}

static struct ssh_target target(void)
{
	static const char *pins[2];

	pins[0] = T.ip;
	pins[1] = NAME;
	return (struct ssh_target){ .host = T.ip,
				    .port = 22,
				    .user = "root",
				    .known_hosts = T.kh,
				    .pin_names = pins,
				    .n_pin_names = 2,
				    .identity = T.key,
				    .connect_timeout_ms = 20000 };
}

static char *slurp(const char *path)
{
	char *data = NULL;
	struct bg_err err = { 0 };

	if (fs_read_file(path, 16 << 20, &data, NULL, &err) < 0)
		return xstrdup("");
	return data;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static bool ssh_keygen_finds(const char *name)
{
	const char *argv[] = { "ssh-keygen", "-F", name, "-f", T.kh, NULL };

	return proc_run(argv, 30000, NULL, NULL) == 0;
}

/*
 * OpenSSH's client through the generated block. The ProxyCommand (banger
 * ssh-proxy, which needs the store) is replaced by a direct connection; the
 * pin looked up is the IP, or NAME with alias.
 */
static int openssh(bool alias, char **ret_out)
{
	_cleanup_free_ char *hn = xasprintf("HostName=%s", T.ip);
	const char *argv[] = { "ssh",
			       "-F",
			       T.block,
			       "-o",
			       "BatchMode=yes",
			       "-o",
			       "ConnectTimeout=20",
			       "-o",
			       "ProxyCommand=none",
			       "-o",
			       hn,
			       "-o",
			       alias ? "HostKeyAlias=" NAME : "CheckHostIP=no",
			       NAME,
			       "echo",
			       "openssh-ok",
			       NULL };
	struct bg_err err = { 0 };
	char *out = NULL;
	int r = proc_run(argv, 60000, &out, &err);

	if (ret_out)
		*ret_out = out;
	else
		free(out);
	return r;
}

static int group_setup(void **state)
{
	char sfx[8];
	struct bg_err err = { 0 };
	_cleanup_free_ char *pub = NULL, *ak = NULL, *sshdir = NULL;
	char buf[256];
	ssize_t n;

	(void)state;
	if (geteuid() != 0) {
		test_skip_reason("needs root (network namespace, sshd)");
		return 0;
	}
	if (access("/usr/sbin/sshd", X_OK) < 0) {
		test_skip_reason("openssh-server is not installed (/usr/sbin/sshd)");
		return 0;
	}
	/* Our own network and mount namespaces: nothing we do is visible outside. */
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		test_skip_reason("unshare(CLONE_NEWNET|CLONE_NEWNS) failed: %s", strerror(errno));
		return 0;
	}
	/* sshd insists on its privilege-separation dir; give it one privately. */
	if (access("/run/sshd", F_OK) < 0) {
		if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
			return -1;
		if (mkdir("/run/sshd", 0755) < 0)
			return -1;
	}
	n = readlink("/proc/self/ns/net", buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	T.netns = xstrdup(buf);

	test_unique_suffix(sfx, 6);
	snprintf(T.veth[0], sizeof(T.veth[0]), "bgs%sa", sfx);
	snprintf(T.veth[1], sizeof(T.veth[1]), "bgs%sb", sfx);
	snprintf(T.ip, sizeof(T.ip), "10.213.%d.1", (int)strtol(sfx + 4, NULL, 16));
	{
		_cleanup_free_ char *cidr = xasprintf("%s/24", T.ip);
		const char *lo[] = { "ip", "link", "set", "lo", "up", NULL };
		const char *add[] = { "ip",   "link", "add",  T.veth[0], "type",
				      "veth", "peer", "name", T.veth[1], NULL };
		const char *addr[] = { "ip", "addr", "add", cidr, "dev", T.veth[0], NULL };
		const char *up0[] = { "ip", "link", "set", T.veth[0], "up", NULL };
		const char *up1[] = { "ip", "link", "set", T.veth[1], "up", NULL };

		run_ok(lo);
		run_ok(add);
		run_ok(addr);
		run_ok(up0);
		run_ok(up1);
	}

	T.dir = test_tmpdir("bg-ssh-it");
	T.state = fs_path_join(T.dir, "state");
	T.kh = fs_path_join(T.state, "ssh/known_hosts");
	T.key = fs_path_join(T.state, "ssh/id_ed25519");
	assert_int_equal(ssh_client_key_ensure(T.key, &pub, &err), 0);
	ak = fs_path_join(T.dir, "authorized_keys");
	{
		_cleanup_free_ char *line = xasprintf("%s\n", pub);

		test_write_file(ak, line);
	}
	{
		const char *build = getenv("BUILD");
		_cleanup_free_ char *rel =
			xasprintf("%s/banger", build && *build ? build : "build");

		T.banger = realpath(rel, NULL);
		if (!T.banger)
			fail_msg("no banger binary at '%s' (run from the top of the tree)", rel);
		assert_int_equal(ssh_config_write(T.state, T.banger, &T.block, &err), 0);
	}
	keygen("hk_ed25519", "ed25519");
	keygen("hk_ecdsa", "ecdsa");
	T.ready = true;
	return 0;
}

/* Processes other than us still in our network namespace. */
static int others_in_netns(void)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d))) {
		char path[64], buf[256];
		ssize_t len;
		pid_t pid = (pid_t)atoi(de->d_name);

		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
		len = readlink(path, buf, sizeof(buf) - 1);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		if (strcmp(buf, T.netns) == 0 && proc_identity_matches(pid, 0))
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

static bool netns_empty(void *arg)
{
	(void)arg;
	return others_in_netns() == 0;
}

static int group_teardown(void **state)
{
	pid_t pid = T.sshd;
	uint64_t start = T.sshd_start;

	(void)state;
	if (!T.ready)
		return 0;
	stop_sshd();
	if (pid > 0 && proc_identity_matches(pid, start))
		fail_msg("sshd %d survived", pid);
	/* session processes end when their client disconnects */
	if (!test_wait_for(netns_empty, NULL, 20000))
		fail_msg("%d processes left in the test's network namespace", others_in_netns());
	{
		const char *del[] = { "ip", "link", "del", T.veth[0], NULL };
		const char *show0[] = { "ip", "link", "show", T.veth[0], NULL };
		const char *show1[] = { "ip", "link", "show", T.veth[1], NULL };

		run_ok(del);
		if (proc_run(show0, 10000, NULL, NULL) == 0 ||
		    proc_run(show1, 10000, NULL, NULL) == 0)
			fail_msg("veth pair %s/%s still exists", T.veth[0], T.veth[1]);
	}
	test_rmtree(T.dir);
	if (fs_exists(T.dir))
		fail_msg("%s still exists", T.dir);
	free(T.dir);
	free(T.state);
	free(T.kh);
	free(T.key);
	free(T.block);
	free(T.banger);
	free(T.netns);
	return 0;
}

#define REQUIRE_READY()         \
	do {                    \
		if (!T.ready)   \
			skip(); \
	} while (0)

static void test_first_probe_pins_ed25519(void **state)
{
	static const char *keys[] = { "hk_ecdsa", "hk_ed25519", NULL };
	_cleanup_free_ char *kh = NULL;
	struct ssh_target t;
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	REQUIRE_READY();
	start_sshd(keys);
	t = target();
	if (ssh_probe(&t, &err) < 0)
		fail_msg("%s", err.msg);
	kh = slurp(T.kh);
	assert_int_equal(count_lines(kh), 1);
	/* libssh2 alone would negotiate ecdsa; we asked for ed25519 first */
	assert_true(strncmp(kh, T.ip, strlen(T.ip)) == 0);
	assert_non_null(strstr(kh, "," NAME " ssh-ed25519 AAAA"));
	assert_true(ssh_keygen_finds(T.ip));
	assert_true(ssh_keygen_finds(NAME));
	assert_int_equal(stat(T.kh, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	/* again: OK, nothing appended */
	{
		int64_t start = now_mono_ms();

		if (ssh_probe(&t, &err) < 0)
			fail_msg("%s", err.msg);
		printf("# ssh_probe with a pinned key (connect, kex, pin check, auth): %lld ms\n",
		       (long long)(now_mono_ms() - start));
	}
	free(kh);
	kh = slurp(T.kh);
	assert_int_equal(count_lines(kh), 1);
}

/* Run ssh_exec with stdin from in_path (or /dev/null), capturing stdout and stderr. */
static int exec_capture(const char *const *argv, const char *in_path, int *status, char **out,
			char **errout, struct bg_err *err)
{
	_cleanup_free_ char *o = fs_path_join(T.dir, "exec.out");
	_cleanup_free_ char *e = fs_path_join(T.dir, "exec.err");
	struct ssh_target t = target();
	int save[3], fds[3], r;

	fflush(stdout);
	fflush(stderr);
	fds[0] = open(in_path ? in_path : "/dev/null", O_RDONLY | O_CLOEXEC);
	fds[1] = open(o, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fds[2] = open(e, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	for (int i = 0; i < 3; i++) {
		assert_true(fds[i] >= 0);
		save[i] = dup(i);
		dup2(fds[i], i);
		close(fds[i]);
	}
	r = ssh_exec(&t, argv, status, err);
	for (int i = 0; i < 3; i++) {
		dup2(save[i], i);
		close(save[i]);
	}
	*out = slurp(o);
	*errout = slurp(e);
	return r;
}

static void test_exec(void **state)
{
	const char *script[] = { "sh", "-c", "echo hi; echo oops >&2; exit 3", NULL };
	const char *quoting[] = { "printf", "[%s]", "a b", "it's", "$HOME", ";", "*", "", NULL };
	const char *cat[] = { "cat", NULL };
	const char *big[] = { "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x", NULL };
	_cleanup_free_ char *in = fs_path_join(T.dir, "stdin.txt");
	char *out = NULL, *errout = NULL;
	struct bg_err err = { 0 };
	int status = -1;

	(void)state;
	REQUIRE_READY();
	if (exec_capture(script, NULL, &status, &out, &errout, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(status, 3);
	assert_string_equal(out, "hi\n");
	assert_string_equal(errout, "oops\n");
	free(out);
	free(errout);

	/* each argv element arrives as one word, nothing expanded */
	assert_int_equal(exec_capture(quoting, NULL, &status, &out, &errout, &err), 0);
	assert_int_equal(status, 0);
	assert_string_equal(out, "[a b][it's][$HOME][;][*][]");
	free(out);
	free(errout);

	/* stdin is forwarded, EOF included */
	test_write_file(in, "hello stdin\nsecond line\n");
	assert_int_equal(exec_capture(cat, in, &status, &out, &errout, &err), 0);
	assert_int_equal(status, 0);
	assert_string_equal(out, "hello stdin\nsecond line\n");
	free(out);
	free(errout);

	/* more than a channel window of output */
	assert_int_equal(exec_capture(big, NULL, &status, &out, &errout, &err), 0);
	assert_int_equal(status, 0);
	assert_int_equal(strlen(out), 3000000);
	assert_true(out[0] == 'x' && out[2999999] == 'x');
	free(out);
	free(errout);
}

/* Read from the pty master until 'want' shows up (or the deadline). */
static bool pty_expect(int master, struct buf *acc, const char *want, int timeout_ms)
{
	int64_t deadline = now_mono_ms() + timeout_ms;

	while (!strstr(acc->data, want)) {
		struct pollfd p = { .fd = master, .events = POLLIN };
		int64_t left = deadline - now_mono_ms();
		char buf[4096];
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		n = read(master, buf, sizeof(buf));
		if (n <= 0)
			return false;
		buf_add(acc, buf, (size_t)n);
	}
	return true;
}

static void test_shell_pty(void **state)
{
	struct winsize ws = { .ws_row = 33, .ws_col = 101 };
	struct buf acc;
	int master = -1, res[2], status;
	pid_t pid;
	char result[512] = { 0 };
	int got_status = -1, restored = 0;

	(void)state;
	REQUIRE_READY();
	assert_int_equal(pipe2(res, O_CLOEXEC), 0);
	fflush(stdout);
	pid = forkpty(&master, NULL, NULL, &ws);
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ssh_target t = target();
		struct termios before, after;
		struct bg_err err = { 0 };
		int st = -1, r;

		close(res[0]);
		setenv("TERM", "xterm-256color", 1);
		tcgetattr(STDIN_FILENO, &before);
		r = ssh_shell(&t, &st, &err);
		tcgetattr(STDIN_FILENO, &after);
		dprintf(res[1], "%d %d %d %s", r, st,
			before.c_lflag == after.c_lflag && before.c_iflag == after.c_iflag &&
				before.c_oflag == after.c_oflag,
			err.msg);
		_exit(0);
	}
	close(res[1]);
	buf_init(&acc);
	{
		const char cmd1[] = "stty size; echo term-$TERM; echo mark-$((6*7))\n";
		const char cmd2[] = "stty size; echo mark2-$((7*7))\n";
		const char cmd3[] = "exit 5\n";
		struct winsize ws2 = { .ws_row = 40, .ws_col = 120 };

		assert_int_equal(write(master, cmd1, sizeof(cmd1) - 1), (ssize_t)sizeof(cmd1) - 1);
		if (!pty_expect(master, &acc, "mark-42", 60000))
			fail_msg("no shell output; got '%s'", acc.data);
		assert_non_null(strstr(acc.data, "33 101"));
		assert_non_null(strstr(acc.data, "term-xterm-256color"));
		/* resize: the kernel sends SIGWINCH to the shell's client */
		assert_int_equal(ioctl(master, TIOCSWINSZ, &ws2), 0);
		assert_int_equal(write(master, cmd2, sizeof(cmd2) - 1), (ssize_t)sizeof(cmd2) - 1);
		if (!pty_expect(master, &acc, "mark2-49", 60000))
			fail_msg("no output after resize; got '%s'", acc.data);
		assert_non_null(strstr(strstr(acc.data, "mark-42"), "40 120"));
		assert_int_equal(write(master, cmd3, sizeof(cmd3) - 1), (ssize_t)sizeof(cmd3) - 1);
	}
	/* drain the pty until the child is done, so it never blocks on output */
	for (;;) {
		struct pollfd p[2] = { { .fd = master, .events = POLLIN },
				       { .fd = res[0], .events = POLLIN } };
		char buf[4096];

		assert_true(poll(p, 2, 60000) > 0);
		if (p[0].revents && read(master, buf, sizeof(buf)) <= 0)
			p[0].fd = -1;
		if (p[1].revents) {
			ssize_t n = read(res[0], result, sizeof(result) - 1);

			assert_true(n > 0);
			break;
		}
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(master);
	close(res[0]);
	buf_release(&acc);
	assert_int_equal(sscanf(result, "0 %d %d", &got_status, &restored), 2);
	assert_int_equal(got_status, 5);
	assert_int_equal(restored, 1);
}

static void test_openssh_accepts_our_pins(void **state)
{
	_cleanup_free_ char *before = NULL, *after = NULL;
	char *out = NULL;

	(void)state;
	REQUIRE_READY();
	before = slurp(T.kh);
	if (openssh(false, &out) < 0)
		fail_msg("ssh via the IP pin failed: %s", out);
	assert_non_null(strstr(out, "openssh-ok"));
	free(out);
	if (openssh(true, &out) < 0)
		fail_msg("ssh via the name pin failed: %s", out);
	assert_non_null(strstr(out, "openssh-ok"));
	free(out);
	after = slurp(T.kh);
	assert_string_equal(before, after); /* ssh added nothing */
}

static void test_changed_key_is_mitm(void **state)
{
	static const char *keys[] = { "hk_ed25519", NULL };
	_cleanup_free_ char *before = NULL, *after = NULL, *log = NULL;
	_cleanup_free_ char *log_path = fs_path_join(T.dir, "sshd.log");
	size_t log_start;
	struct ssh_target t = target();
	struct bg_err err = { 0 };
	char *out = NULL;
	char fp[128];
	int status = -1;
	const char *argv[] = { "true", NULL };

	(void)state;
	REQUIRE_READY();
	before = slurp(T.kh);
	keygen("hk_ed25519", "ed25519"); /* a new key: the "VM" is someone else now */
	start_sshd(keys);
	log = slurp(log_path);
	log_start = strlen(log);
	assert_int_equal(ssh_probe(&t, &err), -EKEYREJECTED);
	assert_non_null(strstr(err.msg, "possible MITM"));
	assert_non_null(strstr(err.msg, T.ip));
	{
		_cleanup_free_ char *where = xasprintf("%s:1", T.kh);

		assert_non_null(strstr(err.msg, where));
	}
	assert_non_null(strstr(err.msg, "SHA256:"));
	/* the offered key's fingerprint as ssh-keygen prints it */
	{
		_cleanup_free_ char *pub = fs_path_join(T.dir, "hk_ed25519.pub");
		const char *argv_fp[] = { "ssh-keygen", "-l", "-f", pub, NULL };
		_cleanup_free_ char *o = NULL;

		assert_int_equal(proc_run(argv_fp, 30000, &o, NULL), 0);
		assert_int_equal(sscanf(o, "%*d %127s", fp), 1);
		assert_non_null(strstr(err.msg, fp));
	}
	bg_err_clear(&err);
	assert_int_equal(ssh_exec(&t, argv, &status, &err), -EKEYREJECTED);
	assert_int_equal(status, -1);
	after = slurp(T.kh);
	assert_string_equal(before, after);
	/* authentication never started: sshd saw no public key from us */
	free(log);
	log = slurp(log_path);
	assert_true(strlen(log) >= log_start);
	assert_null(strstr(log + log_start, "publickey"));

	/* OpenSSH refuses too, by IP and by name */
	assert_true(openssh(false, &out) < 0);
	assert_non_null(strstr(out, "Host key verification failed"));
	free(out);
	assert_true(openssh(true, &out) < 0);
	assert_non_null(strstr(out, "Host key verification failed"));
	free(out);
	free(after);
	after = slurp(T.kh);
	assert_string_equal(before, after);
}

static void test_remove_then_repin(void **state)
{
	const char *hosts[] = { T.ip, NAME };
	_cleanup_free_ char *kh = NULL;
	struct ssh_target t = target();
	struct bg_err err = { 0 };

	(void)state;
	REQUIRE_READY();
	assert_int_equal(known_hosts_remove(T.kh, hosts, 2, 22, &err), 1);
	kh = slurp(T.kh);
	assert_int_equal(count_lines(kh), 0);
	if (ssh_probe(&t, &err) < 0)
		fail_msg("%s", err.msg);
	free(kh);
	kh = slurp(T.kh);
	assert_int_equal(count_lines(kh), 1);
	assert_true(ssh_keygen_finds(NAME));
	assert_int_equal(openssh(true, NULL), 0);
}

static void test_other_key_type_is_a_change(void **state)
{
	static const char *ecdsa_only[] = { "hk_ecdsa", NULL };
	static const char *ed_only[] = { "hk_ed25519", NULL };
	_cleanup_free_ char *before = NULL, *after = NULL;
	struct ssh_target t = target();
	struct bg_err err = { 0 };
	char *out = NULL;

	(void)state;
	REQUIRE_READY();
	before = slurp(T.kh);
	assert_non_null(strstr(before, "ssh-ed25519"));
	start_sshd(ecdsa_only);
	assert_int_equal(ssh_probe(&t, &err), -EKEYREJECTED);
	assert_non_null(strstr(err.msg, "possible MITM"));
	assert_non_null(strstr(err.msg, "ecdsa-sha2-nistp256"));
	assert_non_null(strstr(err.msg, "ssh-ed25519"));
	assert_true(openssh(true, &out) < 0);
	assert_non_null(strstr(out, "Host key verification failed"));
	free(out);
	after = slurp(T.kh);
	assert_string_equal(before, after); /* no second key type was added */
	start_sshd(ed_only);
	if (ssh_probe(&t, &err) < 0)
		fail_msg("%s", err.msg);
}

static void test_revoked(void **state)
{
	_cleanup_free_ char *pub = fs_path_join(T.dir, "hk_ed25519.pub");
	_cleanup_free_ char *key = slurp(pub);
	_cleanup_free_ char *line = NULL, *orig = slurp(T.kh);
	struct ssh_target t = target();
	struct bg_err err = { 0 };
	char *out = NULL;
	int fd;

	(void)state;
	REQUIRE_READY();
	line = xasprintf("@revoked * %s", key);
	fd = open(T.kh, O_WRONLY | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
	close(fd);
	assert_int_equal(ssh_probe(&t, &err), -EKEYREJECTED);
	assert_non_null(strstr(err.msg, "revoked"));
	assert_true(openssh(true, &out) < 0);
	assert_non_null(strstr(out, "REVOKED"));
	free(out);
	test_write_file(T.kh, orig);
}

/* What OpenSSH's accept-new writes into our file, we read (and vice versa). */
static void test_openssh_accept_new_interop(void **state)
{
	const char *hosts[] = { T.ip, NAME };
	_cleanup_free_ char *kh = NULL;
	struct ssh_target t = target();
	struct bg_err err = { 0 };
	char *out = NULL;

	(void)state;
	REQUIRE_READY();
	assert_int_equal(known_hosts_remove(T.kh, hosts, 2, 22, &err), 1);
	if (openssh(true, &out) < 0)
		fail_msg("ssh accept-new failed: %s", out);
	free(out);
	kh = slurp(T.kh);
	assert_int_equal(count_lines(kh), 1);
	assert_true(strncmp(kh, NAME " ssh-ed25519 ", strlen(NAME) + 13) == 0); /* not hashed */
	/* the name is pinned by ssh's line; the IP is new and gets its own line */
	if (ssh_probe(&t, &err) < 0)
		fail_msg("%s", err.msg);
	free(kh);
	kh = slurp(T.kh);
	assert_int_equal(count_lines(kh), 2);
	assert_true(ssh_keygen_finds(T.ip));
	assert_int_equal(openssh(false, NULL), 0);
}

static void test_auth_failure_keeps_libssh2_text(void **state)
{
	_cleanup_free_ char *other = fs_path_join(T.dir, "other_key");
	struct ssh_target t = target();
	struct bg_err err = { 0 };

	(void)state;
	REQUIRE_READY();
	keygen("other_key", "ed25519");
	t.identity = other;
	unsetenv("SSH_AUTH_SOCK");
	assert_int_equal(ssh_probe(&t, &err), -EACCES);
	assert_non_null(strstr(err.msg, "public key authentication"));
	assert_non_null(strstr(err.msg, "root@"));
	/* libssh2's own words are kept */
	assert_non_null(strstr(err.msg, "Username/PublicKey combination invalid"));
}

static bool exists(void *arg)
{
	return fs_exists(arg);
}

/* banger's key refused: the user's agent is tried next. */
static void test_agent_fallback(void **state)
{
	_cleanup_free_ char *other = fs_path_join(T.dir, "other_key");
	_cleanup_free_ char *sock = fs_path_join(T.dir, "agent.sock");
	struct proc_spawn_opts o = PROC_SPAWN_OPTS_INIT;
	struct ssh_target t = target();
	struct bg_err err = { 0 };
	uint64_t start;
	pid_t agent;
	int status;

	(void)state;
	REQUIRE_READY();
	{
		const char *argv[] = { "ssh-agent", "-D", "-a", sock, NULL };

		assert_int_equal(proc_spawn(argv, &o, &agent, &err), 0);
		assert_int_equal(proc_start_time(agent, &start, &err), 0);
	}
	assert_true(test_wait_for(exists, sock, 20000));
	setenv("SSH_AUTH_SOCK", sock, 1);
	{
		const char *argv[] = { "ssh-add", "-q", T.key, NULL };

		run_ok(argv);
	}
	t.identity = other; /* not authorized on the server */
	if (ssh_probe(&t, &err) < 0)
		fail_msg("%s", err.msg);
	unsetenv("SSH_AUTH_SOCK");
	assert_int_equal(proc_signal(agent, start, SIGTERM, &err), 0);
	assert_int_equal(waitpid(agent, &status, 0), agent);
}

/* Run argv to completion; stdout+stderr into *ret_out; returns the exit status. */
static int run_status(const char *const *argv, char **ret_out)
{
	struct proc_spawn_opts o = PROC_SPAWN_OPTS_INIT;
	struct bg_err err = { 0 };
	int pfd[2], status;
	struct buf out;
	pid_t pid;

	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	o.stdout_fd = o.stderr_fd = pfd[1];
	assert_int_equal(proc_spawn(argv, &o, &pid, &err), 0);
	close(pfd[1]);
	buf_init(&out);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		char b[4096];
		ssize_t n;

		assert_true(poll(&p, 1, 120000) > 0);
		n = read(pfd[0], b, sizeof(b));
		if (n <= 0)
			break;
		buf_add(&out, b, (size_t)n);
	}
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	*ret_out = buf_detach(&out, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The verbs end to end: a VM record in the state database points at our sshd. */
static void test_cli_ssh_and_ssh_proxy(void **state)
{
	_cleanup_free_ char *db = fs_path_join(T.state, "banger.db");
	_cleanup_(store_freep) struct store *s = NULL;
	struct vm_record rec = { 0 };
	struct bg_err err = { 0 };
	char *out = NULL;

	(void)state;
	REQUIRE_READY();
	assert_int_equal(store_open(db, STORE_READ_WRITE, &s, &err), 0);
	rec.name = xstrdup("web-1");
	rec.phase = VM_PHASE_RUNNING;
	rec.desired_state = VM_DESIRED_RUNNING;
	rec.ip = xstrdup(T.ip);
	rec.last_exit = -1;
	if (store_vm_insert(s, &rec, &err) < 0)
		fail_msg("%s", err.msg);
	vm_record_release(&rec);
	rec = (struct vm_record){ .name = xstrdup("no-ip"), .last_exit = -1 };
	assert_int_equal(store_vm_insert(s, &rec, &err), 0);
	vm_record_release(&rec);
	/* web-2's spec says ssh.user: nobody */
	{
		static const char yaml[] =
			"apiVersion: banger/v1\nkind: VM\nmetadata: {name: web-2}\n"
			"spec:\n  kernel: {path: /boot/vmlinuz}\n"
			"  rootfs: {image: /srv/rootfs.ext4}\n"
			"  ssh: {user: nobody}\n";
		struct spec_set set;

		spec_set_init(&set);
		assert_int_equal(spec_parse_buffer(&set, "web-2.yaml", yaml, strlen(yaml)), 0);
		assert_int_equal(spec_set_finish(&set), 0);
		assert_int_equal(set.n_specs, 1);
		rec = (struct vm_record){ .name = xstrdup("web-2"),
					  .spec_json = spec_to_json(set.specs[0]),
					  .phase = VM_PHASE_RUNNING,
					  .ip = xstrdup(T.ip),
					  .last_exit = -1 };
		spec_set_release(&set);
		if (store_vm_insert(s, &rec, &err) < 0)
			fail_msg("%s", err.msg);
		vm_record_release(&rec);
	}
	store_free(TAKE_PTR(s));

	{
		const char *argv[] = { T.banger,
				       "--state-dir",
				       T.state,
				       "ssh",
				       "web-1",
				       "--",
				       "sh",
				       "-c",
				       "echo hi from $(hostname -s 2>/dev/null || echo vm); "
				       "exit 3",
				       NULL };

		assert_int_equal(run_status(argv, &out), 3);
		assert_non_null(strstr(out, "hi from "));
		free(out);
	}
	{
		const char *argv[] = { T.banger, "--state-dir", T.state, "ssh",	   "web-1.vm",
				       "--wait", "30s",		"--",	 "printf", "%s|",
				       "a b",	 "$x",		NULL };

		assert_int_equal(run_status(argv, &out), 0);
		assert_string_equal(out, "a b|$x|");
		free(out);
	}
	{
		const char *argv[] = { T.banger, "--state-dir", T.state, "ssh",
				       "nosuch", "--",		"true",	 NULL };

		assert_int_equal(run_status(argv, &out), 255);
		assert_non_null(strstr(out, "no VM named 'nosuch'"));
		free(out);
	}
	{
		const char *argv[] = { T.banger, "--state-dir", T.state, "ssh",	 "no-ip",
				       "--wait", "1s",		"--",	 "true", NULL };
		int64_t start = now_mono_ms();

		assert_int_equal(run_status(argv, &out), 255);
		assert_non_null(strstr(out, "no IP address"));
		assert_true(now_mono_ms() - start >= 900); /* it did wait */
		free(out);
	}
	/* the user comes from the spec (sshd refuses nobody), -l overrides it */
	{
		const char *argv[] = { T.banger, "--state-dir", T.state, "ssh", "web-2",
				       "--",	 "id",		"-un",	 NULL };

		assert_int_equal(run_status(argv, &out), 255);
		if (!strstr(out, "nobody@"))
			fail_msg("%s", out);
		free(out);
	}
	{
		const char *argv[] = { T.banger, "--state-dir", T.state, "ssh", "-l", "root",
				       "web-2",	 "--",		"id",	 "-un", NULL };

		assert_int_equal(run_status(argv, &out), 0);
		assert_string_equal(out, "root\n");
		free(out);
	}
	/* OpenSSH through the block's own ProxyCommand: banger ssh-proxy %n */
	{
		const char *argv[] = { "ssh",	   "-F",   T.block,	"-o", "BatchMode=yes",
				       "web-1.vm", "echo", "via-proxy", NULL };

		if (run_status(argv, &out) != 0)
			fail_msg("ssh via ssh-proxy failed: %s", out);
		assert_non_null(strstr(out, "via-proxy"));
		free(out);
	}
	{
		const char *argv[] = { T.banger, "--state-dir", T.state, "ssh-proxy", "a;b", NULL };

		assert_int_equal(run_status(argv, &out), 2);
		free(out);
	}
}

/* ---- the sandboxed probe child ---------------------------------------------------------- */

#define PROBE_MS 3000
#define HANG_PROBE_MS 8000 /* room to inspect the held child, even under ASan */
#ifdef __SANITIZE_ADDRESS__
#define UNDER_ASAN true
#else
#define UNDER_ASAN false
#endif
#define PROBE_SLACK_MS 1500 /* the probe's 1 s kill grace plus scheduling */

/* The one process whose parent is us and that is not our sshd (or 0). */
static pid_t probe_child_pid(void)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t found = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[64], line[256];
		pid_t pid = (pid_t)atoi(de->d_name);
		FILE *f;

		if (pid <= 0 || pid == T.sshd)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/status", pid);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (strncmp(line, "PPid:", 5) == 0 && atoi(line + 5) == getpid())
				found = pid;
		fclose(f);
	}
	closedir(d);
	return found;
}

static bool no_probe_child(void *arg)
{
	(void)arg;
	return probe_child_pid() == 0;
}

/* The value of "Key:" in /proc/pid/status (owned), or NULL. */
static char *proc_status_field(pid_t pid, const char *key)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/status", pid);
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[512];

	while (f && fgets(line, sizeof(line), f)) {
		size_t kl = strlen(key);

		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			char *v = line + kl + 1;

			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = '\0';
			return xstrdup(v);
		}
	}
	return NULL;
}

/* Whether needle occurs in any readable mapping of pid (read through /proc/pid/mem). */
static bool proc_mem_contains(pid_t pid, const void *needle, size_t nlen)
{
	_cleanup_free_ char *maps = xasprintf("/proc/%d/maps", pid);
	_cleanup_free_ char *memp = xasprintf("/proc/%d/mem", pid);
	_cleanup_fclose_ FILE *f = fopen(maps, "re");
	_cleanup_close_ int mem = open(memp, O_RDONLY | O_CLOEXEC);
	char line[512];
	bool found = false;

	assert_non_null(f);
	if (mem < 0)
		fail_msg("open '%s': %s (State: %s)", memp, strerror(errno),
			 proc_status_field(pid, "State"));
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[8];
		uint8_t *buf;
		ssize_t n;

		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' ||
		    strstr(line, "[vvar]") || hi - lo > 512UL * 1024 * 1024)
			continue;
		buf = xmalloc(hi - lo);
		n = pread(mem, buf, hi - lo, (off_t)lo);
		if (n > 0 && memmem(buf, (size_t)n, needle, nlen))
			found = true;
		explicit_bzero(buf, hi - lo);
		free(buf);
	}
	return found;
}

/*
 * banger's ed25519 private key as it sits in the key file: the 64-byte
 * "seed || public" string of the OpenSSH private section, found as the
 * length-prefixed 64 bytes that end with the public key.
 */
static void client_private_key(uint8_t ret_priv[64], uint8_t ret_pub[32])
{
	_cleanup_free_ char *text = slurp(T.key), *pubtext = NULL;
	_cleanup_free_ uint8_t *raw = NULL, *pubblob = NULL;
	_cleanup_free_ char *b64 = xstrdup("");
	size_t raw_len = 0, pub_len = 0;
	char *p, *pub = NULL;
	struct buf b;

	_cleanup_free_ char *pubpath = xasprintf("%s.pub", T.key);

	pubtext = slurp(pubpath);
	pub = strchr(pubtext, ' ');
	assert_non_null(pub);
	pub++;
	pub[strcspn(pub, " \n")] = '\0';
	assert_int_equal(base64_decode(pub, strlen(pub), &pubblob, &pub_len), 0);
	assert_int_equal(pub_len, 4 + 11 + 4 + 32);
	memcpy(ret_pub, pubblob + pub_len - 32, 32);

	buf_init(&b);
	p = strchr(text, '\n');
	assert_non_null(p);
	for (p++; *p && *p != '-'; p++)
		if (*p != '\n')
			buf_addch(&b, *p);
	free(b64);
	b64 = buf_detach(&b, NULL);
	assert_int_equal(base64_decode(b64, strlen(b64), &raw, &raw_len), 0);
	for (size_t i = 0; i + 4 + 64 <= raw_len; i++) {
		static const uint8_t len64[4] = { 0, 0, 0, 64 };

		if (memcmp(raw + i, len64, 4) == 0 && memcmp(raw + i + 4 + 32, ret_pub, 32) == 0) {
			memcpy(ret_priv, raw + i + 4, 64);
			explicit_bzero(raw, raw_len);
			explicit_bzero(text, strlen(text));
			return;
		}
	}
	fail_msg("no ed25519 private key in '%s'", T.key);
}

struct probe_run {
	struct ssh_target t;
	struct bg_err err;
	int r;
	int64_t ms;
};

static void *probe_thread(void *arg)
{
	struct probe_run *pr = arg;
	int64_t start = now_mono_ms();

	pr->r = ssh_probe(&pr->t, &pr->err);
	pr->ms = now_mono_ms() - start;
	return NULL;
}

static size_t sshd_accepted(void)
{
	_cleanup_free_ char *log = fs_path_join(T.dir, "sshd.log");
	_cleanup_free_ char *text = slurp(log);
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, "Accepted publickey")); p++)
		n++;
	return n;
}

static size_t accepted_want;

static bool sshd_accepted_reached(void *arg)
{
	(void)arg;
	return sshd_accepted() >= accepted_want;
}

/*
 * The probe child, held after a successful user-auth (failpoint
 * ssh.probe.child-hang): it runs as nobody/nogroup with no supplementary
 * groups, NoNewPrivs and a seccomp filter, and banger's private key is
 * nowhere in its memory although it just authenticated with it. Then the
 * probe's deadline kills and reaps it.
 */
static void test_probe_child_is_jailed(void **state)
{
	const char *const hk[] = { "hk_ed25519", NULL };
	struct probe_run pr = { .t = target() };
	uint8_t priv[64], pub[32];
	pthread_t th;
	pid_t child;

	(void)state;
	REQUIRE_READY();
	start_sshd(hk);
	{
		const char *names[] = { T.ip, NAME };

		(void)known_hosts_remove(T.kh, names, 2, 22, NULL);
	}
	unsetenv("SSH_AUTH_SOCK");
	pr.t.connect_timeout_ms = HANG_PROBE_MS;
	accepted_want = sshd_accepted() + 1;
	setenv("BANGER_FAILPOINT", "ssh.probe.child-hang", 1);
	assert_int_equal(pthread_create(&th, NULL, probe_thread, &pr), 0);
	if (!test_wait_for(sshd_accepted_reached, NULL, HANG_PROBE_MS)) {
		unsetenv("BANGER_FAILPOINT");
		pthread_join(th, NULL);
		fail_msg("sshd never accepted the probe's key (probe: %d %s)", pr.r, pr.err.msg);
	}
	unsetenv("BANGER_FAILPOINT");
	child = probe_child_pid();
	assert_true(child > 0);
	{
		_cleanup_free_ char *uid = proc_status_field(child, "Uid");
		_cleanup_free_ char *gid = proc_status_field(child, "Gid");
		_cleanup_free_ char *groups = proc_status_field(child, "Groups");
		_cleanup_free_ char *nnp = proc_status_field(child, "NoNewPrivs");
		_cleanup_free_ char *sc = proc_status_field(child, "Seccomp");
		_cleanup_free_ char *capeff = proc_status_field(child, "CapEff");
		_cleanup_free_ char *want_uid =
			xasprintf("%u\t%u\t%u\t%u", 65534u, 65534u, 65534u, 65534u);

		assert_non_null(uid);
		assert_string_equal(uid, want_uid);
		assert_string_equal(gid, want_uid); /* nogroup is 65534 on Debian */
		assert_string_equal(groups, "");
		assert_string_equal(nnp, "1");
		assert_string_equal(sc, "2");
		assert_string_equal(capeff, "0000000000000000");
	}
	/* Read the key only now: had we held it before the fork, the child would have a copy. */
	client_private_key(priv, pub);
	if (UNDER_ASAN) {
		/* ASan's heap lives in terabyte-sized reservations a plain scan cannot read. */
		printf("# key scan of the child's memory skipped under ASan (the plain build "
		       "runs it)\n");
	} else {
		assert_true(proc_mem_contains(child, pub, sizeof(pub))); /* the scan finds things */
		assert_false(proc_mem_contains(child, priv, 32));	 /* the seed */
		assert_false(proc_mem_contains(child, priv, sizeof(priv)));
	}
	explicit_bzero(priv, sizeof(priv));

	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(pr.r, -ETIMEDOUT);
	assert_non_null(strstr(pr.err.msg, "probe child killed"));
	assert_true(pr.ms >= HANG_PROBE_MS && pr.ms < HANG_PROBE_MS + PROBE_SLACK_MS);
	assert_int_equal(kill(child, 0), -1); /* killed and reaped: no zombie */
	assert_int_equal(errno, ESRCH);
	assert_true(no_probe_child(NULL));
	bg_err_clear(&pr.err);
}

/* Fork, enter the jail, run what(); the child's wait status. */
static int in_sandbox(int (*what)(int fd), int fd)
{
	struct probe_sandbox_ids ids;
	struct bg_err err = { 0 };
	int status;
	pid_t pid;

	assert_int_equal(probe_sandbox_ids(&ids, &err), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (probe_sandbox_enter(&ids, &err) < 0)
			_exit(100);
		_exit(what(fd));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static int try_open_shadow(int fd)
{
	int r = open("/etc/shadow", O_RDONLY | O_CLOEXEC);
	int e = r < 0 ? errno : 0;

	/* report through the pipe we inherited: write() is allowed */
	return write(fd, &e, sizeof(e)) == sizeof(e) ? 0 : 101;
}

static int try_socket(int fd)
{
	(void)fd;
	(void)socket(AF_INET, SOCK_STREAM, 0);
	return 0; /* not reached: the filter kills */
}

static int try_execve(int fd)
{
	char *const argv[] = { (char *)"/bin/true", NULL };

	(void)fd;
	(void)execve("/bin/true", argv, NULL);
	return 0;
}

static int try_mmap_exec(int fd)
{
	(void)fd;
	return mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
			       MAP_FAILED
		       ? 103
		       : 0;
}

static int try_setuid_root(int fd)
{
	(void)fd;
	return setresuid(0, 0, 0) == 0 ? 0 : 102;
}

/*
 * Real attempts from inside the jail: opening a root-only file fails with
 * EPERM; a socket, an exec, executable memory or regaining root kills it.
 */
static void test_probe_sandbox_refuses(void **state)
{
	int p[2], e = 0, status;

	(void)state;
	REQUIRE_READY();
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	status = in_sandbox(try_open_shadow, p[1]);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(read(p[0], &e, sizeof(e)), sizeof(e));
	assert_int_equal(e, EPERM);
	close(p[0]);
	close(p[1]);
	/* root outside can open it: the EPERM is the jail's doing */
	{
		int fd = open("/etc/shadow", O_RDONLY | O_CLOEXEC);

		assert_true(fd >= 0);
		close(fd);
	}
	status = in_sandbox(try_socket, -1);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
	status = in_sandbox(try_execve, -1);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
	status = in_sandbox(try_mmap_exec, -1);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
	status = in_sandbox(try_setuid_root, -1);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSYS);
}

enum hostile {
	HOSTILE_GARBAGE,
	HOSTILE_SILENT,
	HOSTILE_CLOSE,
	HOSTILE_HUGE_PACKET
};

struct hostile_server {
	enum hostile kind;
	int lfd;
	int port;
};

static void *hostile_thread(void *arg)
{
	struct hostile_server *hs = arg;
	struct pollfd pfd = { .fd = hs->lfd, .events = POLLIN };
	uint8_t junk[4096];
	int fd;

	if (hs->kind == HOSTILE_SILENT || poll(&pfd, 1, PROBE_MS + PROBE_SLACK_MS) <= 0)
		return NULL;
	fd = accept4(hs->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	switch (hs->kind) {
	case HOSTILE_GARBAGE:
		/* a banner line, then bytes that are no SSH packet at all */
		(void)!write(fd, "SSH-2.0-evil\r\n", 14);
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)(i * 7 + 13);
		(void)!write(fd, junk, sizeof(junk));
		break;
	case HOSTILE_HUGE_PACKET: {
		static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xf0, 0x04, 0x14 };

		(void)!write(fd, "SSH-2.0-evil\r\n", 14);
		(void)!write(fd, huge, sizeof(huge));
		break;
	}
	case HOSTILE_CLOSE:
	case HOSTILE_SILENT:
	default:
		break;
	}
	if (hs->kind != HOSTILE_CLOSE) {
		/* hold the connection until the client gives up */
		struct pollfd c = { .fd = fd, .events = POLLIN };

		while (poll(&c, 1, PROBE_MS + PROBE_SLACK_MS) > 0 &&
		       read(fd, junk, sizeof(junk)) > 0)
			;
	}
	close(fd);
	return NULL;
}

/* Hostile servers end in an error within the deadline, pin nothing, leave no child. */
static void test_probe_hostile_servers(void **state)
{
	static const struct {
		enum hostile kind;
		const char *name;
	} cases[] = {
		{ HOSTILE_GARBAGE, "garbage after the banner" },
		{ HOSTILE_SILENT, "never answers" },
		{ HOSTILE_CLOSE, "closes at once" },
		{ HOSTILE_HUGE_PACKET, "4 GiB packet length" },
	};

	(void)state;
	REQUIRE_READY();
	unsetenv("SSH_AUTH_SOCK");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct hostile_server hs = { .kind = cases[i].kind, .port = 2200 + (int)i };
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(hs.port) };
		struct ssh_target t = target();
		struct bg_err err = { 0 };
		_cleanup_free_ char *before = slurp(T.kh), *after = NULL;
		int one = 1, r;
		int64_t start, ms;
		pthread_t th;

		inet_pton(AF_INET, T.ip, &a.sin_addr);
		hs.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(hs.lfd >= 0);
		(void)setsockopt(hs.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		assert_int_equal(bind(hs.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
		assert_int_equal(listen(hs.lfd, 4), 0);
		assert_int_equal(pthread_create(&th, NULL, hostile_thread, &hs), 0);
		t.port = hs.port;
		t.connect_timeout_ms = PROBE_MS;
		start = now_mono_ms();
		r = ssh_probe(&t, &err);
		ms = now_mono_ms() - start;
		printf("# hostile server (%s): %d in %lld ms: %s\n", cases[i].name, r,
		       (long long)ms, err.msg);
		assert_true(r < 0);
		assert_true(r != -EKEYREJECTED);
		assert_non_null(strstr(err.msg, "handshake"));
		assert_true(ms < PROBE_MS + PROBE_SLACK_MS);
		assert_true(no_probe_child(NULL));
		after = slurp(T.kh);
		assert_string_equal(before, after); /* nothing pinned */
		assert_int_equal(pthread_join(th, NULL), 0);
		close(hs.lfd);
		bg_err_clear(&err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_probe_pins_ed25519),
		cmocka_unit_test(test_exec),
		cmocka_unit_test(test_shell_pty),
		cmocka_unit_test(test_openssh_accepts_our_pins),
		cmocka_unit_test(test_changed_key_is_mitm),
		cmocka_unit_test(test_remove_then_repin),
		cmocka_unit_test(test_other_key_type_is_a_change),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_openssh_accept_new_interop),
		cmocka_unit_test(test_auth_failure_keeps_libssh2_text),
		cmocka_unit_test(test_agent_fallback),
		cmocka_unit_test(test_cli_ssh_and_ssh_proxy),
		cmocka_unit_test(test_probe_child_is_jailed),
		cmocka_unit_test(test_probe_sandbox_refuses),
		cmocka_unit_test(test_probe_hostile_servers),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
