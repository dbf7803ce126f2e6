/*
 * test_ssh.c - reconciler/guest/ssh.c without a server: argv quoting
 * round-trips through a real /bin/sh, the client key is generated once
 * (0700 dir, 0600 key, same key for concurrent first users), and
 * connection failures are bounded by the deadline and reported distinctly
 * (refused, timed out, bad target); the probe's parent loop gives a
 * misbehaving (compromised) probe child no signature and no success. The
 * real sessions are in tests/integration/test_ssh.c.
 *
 * The module's .c is included to reach shell_quote() and probe_serve().
 */
#include "reconciler/guest/ssh.c"

#include <setjmp.h>
#include <stddef.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "tests/lib/testutil.h"

static char *tmpdir;

static int group_setup(void **state)
{
	(void)state;
	tmpdir = test_tmpdir("bg-ssh");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	test_rmtree(tmpdir);
	free(tmpdir);
	return 0;
}

/* What the remote shell sees: run `printf '[%s]' <quoted words>` in /bin/sh. */
static void test_quote_round_trip(void **state)
{
	const char *words[] = { "plain",   "a b", "it's", "'",	   "''",   "$HOME", "`id`",
				"$(id)",   "\\",  "\"",	  "*",	   "a\nb", "-n",    "FOO=bar",
				";",	   "&&",  "|",	  "~",	   "#x",   "%s",    "",
				"a'b'\"c", "\t",  "!",	  "{a,b}", "[ab]", ">x",    "é" };
	struct buf cmd, want;
	_cleanup_free_ char *out = NULL;
	struct bg_err err = { 0 };

	(void)state;
	buf_init(&cmd);
	buf_init(&want);
	buf_adds(&cmd, "printf '[%s]'");
	for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
		buf_addch(&cmd, ' ');
		shell_quote(&cmd, words[i]);
		buf_addf(&want, "[%s]", words[i]);
	}
	{
		const char *argv[] = { "/bin/sh", "-c", cmd.data, NULL };

		assert_int_equal(proc_run(argv, 30000, &out, &err), 0);
	}
	assert_string_equal(out, want.data);
	/* harmless words stay readable; an assignment-looking word is quoted */
	buf_reset(&cmd);
	shell_quote(&cmd, "/usr/bin/env");
	shell_quote(&cmd, "FOO=bar");
	assert_string_equal(cmd.data, "/usr/bin/env'FOO=bar'");
	buf_release(&cmd);
	buf_release(&want);
}

static void test_client_key(void **state)
{
	_cleanup_free_ char *dir = xasprintf("%s/state/ssh", tmpdir);
	_cleanup_free_ char *key = xasprintf("%s/id_ed25519", dir);
	_cleanup_free_ char *pub = xasprintf("%s.pub", key);
	_cleanup_free_ char *p1 = NULL, *p2 = NULL, *p3 = NULL;
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	assert_int_equal(ssh_client_key_ensure(key, &p1, &err), 0);
	assert_true(strncmp(p1, "ssh-ed25519 AAAA", 16) == 0);
	assert_non_null(strstr(p1, " banger"));
	assert_null(strchr(p1, '\n'));
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* second use: the same key */
	assert_int_equal(ssh_client_key_ensure(key, &p2, &err), 0);
	assert_string_equal(p1, p2);
	/* a lost public half is derived again from the private key */
	assert_int_equal(unlink(pub), 0);
	assert_int_equal(ssh_client_key_ensure(key, &p3, &err), 0);
	assert_true(strncmp(p3, p1, strlen("ssh-ed25519 ") + 68) == 0);
	assert_int_equal(ssh_client_key_ensure(key, NULL, &err), 0);
}

static void test_client_key_concurrent_first_use(void **state)
{
	_cleanup_free_ char *key = xasprintf("%s/race/id_ed25519", tmpdir);
	_cleanup_free_ char *pub = xasprintf("%s.pub", key);
	_cleanup_free_ char *final = NULL;
	int pipes[4][2];
	pid_t pids[4];
	struct bg_err err = { 0 };

	(void)state;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pipe2(pipes[i], O_CLOEXEC), 0);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			char *p = NULL;

			if (ssh_client_key_ensure(key, &p, &err) < 0)
				_exit(1);
			if (write(pipes[i][1], p, strlen(p)) != (ssize_t)strlen(p))
				_exit(2);
			_exit(0);
		}
		close(pipes[i][1]);
	}
	for (int i = 0; i < 4; i++) {
		int status;

		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(fs_read_file(pub, 4096, &final, NULL, &err), 0);
	for (int i = 0; i < 4; i++) {
		char buf[1024] = { 0 };
		ssize_t n;

		n = read(pipes[i][0], buf, sizeof(buf) - 1);
		assert_true(n > 0);
		close(pipes[i][0]);
		assert_true(strncmp(final, buf, (size_t)n) == 0);
	}
}

static struct ssh_target target(const char *host, int port, int timeout_ms)
{
	static const char *pins[] = { "web.vm" };
	static char kh[512];

	snprintf(kh, sizeof(kh), "%s/known_hosts", tmpdir);
	return (struct ssh_target){ .host = host,
				    .port = port,
				    .user = "root",
				    .known_hosts = kh,
				    .pin_names = pins,
				    .n_pin_names = 1,
				    .identity = "/nonexistent",
				    .connect_timeout_ms = timeout_ms };
}

static void test_connect_refused(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct ssh_target t;
	struct bg_err err = { 0 };

	(void)state;
	/* a port that was just free: bind, learn it, close */
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	t = target("127.0.0.1", ntohs(a.sin_port), 5000);
	assert_int_equal(ssh_probe(&t, &err), -ECONNREFUSED);
	assert_non_null(strstr(err.msg, "root@127.0.0.1"));
}

/* A server that accepts and never says anything: the deadline ends it. */
static void test_silent_server_times_out(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct ssh_target t;
	struct bg_err err = { 0 };
	int64_t start;
	int r;

	(void)state;
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	t = target("127.0.0.1", ntohs(a.sin_port), 700);
	start = now_mono_ms();
	r = ssh_probe(&t, &err);
	assert_true(r == -ETIMEDOUT || r == -ECONNRESET);
	assert_true(now_mono_ms() - start < 5000);
	assert_non_null(strstr(err.msg, "handshake"));
	assert_false(fs_exists(t.known_hosts)); /* nothing pinned */
	close(fd);
}

static void test_bad_targets(void **state)
{
	struct ssh_target t = target("web.vm", 22, 1000);
	const char *empty[] = { NULL };
	struct bg_err err = { 0 };
	int status = -1;

	(void)state;
	assert_int_equal(ssh_probe(&t, &err), -EINVAL); /* not an IP address */
	t = target("127.0.0.1", 22, 1000);
	t.user = NULL;
	assert_int_equal(ssh_probe(&t, &err), -EINVAL);
	t = target("127.0.0.1", 22, 1000);
	assert_int_equal(ssh_exec(&t, empty, &status, &err), -EINVAL);
	assert_int_equal(ssh_exec(&t, NULL, &status, &err), -EINVAL);
	assert_int_equal(status, -1);
}

/*
 * What a compromised probe child could send, straight at the parent's
 * loop: a signature request before the host key check, "done" without one,
 * unknown or oversized messages, terminal escapes in its error text, and
 * silence. None gets a signature or a success.
 */
static void test_probe_parent_distrusts_the_child(void **state)
{
	struct ssh_target t = target("127.0.0.1", 22, 1000);
	struct authkey_list keys = { 0 };
	const char *const pins[] = { "127.0.0.1" };
	struct probe_parent pp = { .t = &t,
				   .where = "root@127.0.0.1:22",
				   .pins = pins,
				   .n_pins = 1,
				   .port = 22,
				   .keys = &keys };
	_cleanup_free_ uint8_t *big = xcalloc(1, PROBE_MSG_MAX + 100);
	struct bg_err err = { 0 };
	int64_t start;
	int sp[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	pp.ctl = sp[0];
	pp.deadline = now_mono_ms() + 1000;

	assert_int_equal(probe_send(sp[1], PROBE_SIGN, 0, 0, "data", 4), 0);
	assert_int_equal(probe_serve(&pp, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "before the host key check"));
	bg_err_clear(&err);

	assert_int_equal(probe_send(sp[1], PROBE_RESULT, PROBE_STAGE_DONE, 0, NULL, 0), 0);
	assert_true(probe_serve(&pp, &err) < 0);
	bg_err_clear(&err);

	assert_int_equal(probe_send(sp[1], 77, 0, 0, NULL, 0), 0);
	assert_int_equal(probe_serve(&pp, &err), -EPROTO);
	bg_err_clear(&err);

	assert_int_equal(send(sp[1], big, PROBE_MSG_MAX + 100, 0), PROBE_MSG_MAX + 100);
	assert_int_equal(probe_serve(&pp, &err), -EPROTO);
	bg_err_clear(&err);

	assert_int_equal(probe_send(sp[1], PROBE_RESULT, PROBE_STAGE_HANDSHAKE,
				    LIBSSH2_ERROR_KEX_FAILURE, "evil\x1b[2J\n", 9),
			 0);
	assert_int_equal(probe_serve(&pp, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "evil?[2J?"));
	bg_err_clear(&err);

	/* silence: the deadline (+ grace) ends it */
	pp.deadline = now_mono_ms() - PROBE_GRACE_MS + 200;
	start = now_mono_ms();
	assert_int_equal(probe_serve(&pp, &err), -ETIMEDOUT);
	assert_true(now_mono_ms() - start < 1000);
	assert_non_null(strstr(err.msg, "probe child killed"));
	bg_err_clear(&err);
	close(sp[0]);
	close(sp[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote_round_trip),
		cmocka_unit_test(test_client_key),
		cmocka_unit_test(test_client_key_concurrent_first_use),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_silent_server_times_out),
		cmocka_unit_test(test_bad_targets),
		cmocka_unit_test(test_probe_parent_distrusts_the_child),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
