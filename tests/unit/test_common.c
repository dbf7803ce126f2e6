/*
 * test_common.c - common/: errors, atomic files, mkdir -p, spawning, process
 * identity, base64, durations.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/net.h"
#include "common/paths.h"
#include "common/proc.h"
#include "common/str.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "tests/lib/testutil.h"

static void test_err_wrap(void **state)
{
	struct bg_err err = { 0 };
	int r;

	(void)state;
	r = bg_error(&err, ENOENT, "open '%s'", "/x");
	assert_int_equal(r, -ENOENT);
	assert_string_equal(err.msg, "open '/x': No such file or directory");
	r = bg_err_wrap(&err, "vm '%s'", "web-1");
	assert_int_equal(r, -ENOENT);
	assert_string_equal(err.msg, "vm 'web-1': open '/x': No such file or directory");
	assert_int_equal(bg_errorf(&err, -EINVAL, "bad"), -EINVAL);
	assert_string_equal(err.msg, "bad");
	assert_int_equal(bg_error(NULL, 0, "x"), -EIO);
	bg_err_clear(&err);
	assert_int_equal(err.code, 0);
	assert_string_equal(bg_err_msg(&err), "");
}

static void test_err_wrap_truncates(void **state)
{
	struct bg_err err = { 0 };
	char big[3000];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	bg_errorf(&err, EINVAL, "%s", big);
	bg_err_wrap(&err, "prefix");
	assert_int_equal(strlen(err.msg), BG_ERR_MSG_MAX - 1);
	assert_memory_equal(err.msg, "prefix: aaa", 11);
}

static void test_atomic_write(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-common");
	_cleanup_free_ char *path = fs_path_join(dir, "f");
	_cleanup_free_ char *data = NULL;
	struct bg_err err = { 0 };
	struct stat st;
	size_t len;

	(void)state;
	assert_int_equal(fs_write_atomic(path, "one", 3, 0600, &err), 0);
	assert_int_equal(fs_write_atomic(path, "two!", 4, 0640, &err), 0);
	assert_int_equal(fs_read_file(path, 100, &data, &len, &err), 0);
	assert_int_equal(len, 4);
	assert_string_equal(data, "two!");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	/* No temp files left behind. */
	{
		_cleanup_free_ char *out = NULL;
		const char *argv[] = { "ls", "-A", dir, NULL };

		assert_int_equal(proc_run(argv, 5000, &out, &err), 0);
		assert_string_equal(out, "f\n");
	}
	/* A failed write (directory missing) reports the path and leaves nothing. */
	{
		_cleanup_free_ char *bad = fs_path_join(dir, "nope/f");

		assert_int_equal(fs_write_atomic(bad, "x", 1, 0600, &err), -ENOENT);
		assert_non_null(strstr(err.msg, "nope/f"));
	}
	test_rmtree(dir);
}

static int refuse(const char *path, void *userdata, struct bg_err *err)
{
	int *calls = userdata;

	(*calls)++;
	return bg_errorf(err, EAGAIN, "'%s' changed", path);
}

static int allow(const char *path, void *userdata, struct bg_err *err)
{
	int *calls = userdata;

	(void)path;
	(void)err;
	(*calls)++;
	return 0;
}

static void test_atomic_write_checked(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-common");
	_cleanup_free_ char *path = fs_path_join(dir, "f");
	struct bg_err err = { 0 };
	int calls = 0;

	(void)state;
	test_write_file(path, "old");
	/* The check runs once, right before the rename; a refusal leaves the file alone. */
	assert_int_equal(fs_write_atomic_checked(path, "new", 3, 0600, geteuid(), getegid(), refuse,
						 &calls, &err),
			 -EAGAIN);
	assert_int_equal(calls, 1);
	assert_non_null(strstr(err.msg, "changed"));
	{
		_cleanup_free_ char *data = NULL;

		assert_int_equal(fs_read_file(path, 100, &data, NULL, &err), 0);
		assert_string_equal(data, "old");
	}
	assert_int_equal(fs_write_atomic_checked(path, "new", 3, 0600, geteuid(), getegid(), allow,
						 &calls, &err),
			 0);
	assert_int_equal(calls, 2);
	{
		_cleanup_free_ char *data = NULL, *out = NULL;
		const char *argv[] = { "ls", "-A", dir, NULL };

		assert_int_equal(fs_read_file(path, 100, &data, NULL, &err), 0);
		assert_string_equal(data, "new");
		/* No temp files left behind by either. */
		assert_int_equal(proc_run(argv, 5000, &out, &err), 0);
		assert_string_equal(out, "f\n");
	}
	test_rmtree(dir);
}

static void test_write_new(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-common");
	_cleanup_free_ char *path = fs_path_join(dir, "f");
	_cleanup_free_ char *data = NULL, *out = NULL;
	const char *argv[] = { "ls", "-A", dir, NULL };
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	assert_int_equal(fs_write_new(path, "first", 5, 0640, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	/* Never over an existing file, and nothing left behind. */
	assert_int_equal(fs_write_new(path, "second", 6, 0600, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "exists"));
	assert_int_equal(fs_read_file(path, 100, &data, NULL, &err), 0);
	assert_string_equal(data, "first");
	assert_int_equal(proc_run(argv, 5000, &out, &err), 0);
	assert_string_equal(out, "f\n");
	test_rmtree(dir);
}

static void test_read_fd(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-common");
	_cleanup_free_ char *path = fs_path_join(dir, "f");
	_cleanup_free_ char *data = NULL;
	struct bg_err err = { 0 };
	size_t len = 0;
	int fd;

	(void)state;
	test_write_file(path, "0123456789");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	/* From the current offset. */
	assert_int_equal(lseek(fd, 4, SEEK_SET), 4);
	assert_int_equal(fs_read_fd(fd, 6, "thing", &data, &len, &err), 0);
	assert_string_equal(data, "456789");
	assert_int_equal(len, 6);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	free(data);
	data = NULL;
	assert_int_equal(fs_read_fd(fd, 9, "thing", &data, &len, &err), -EFBIG);
	assert_string_equal(err.msg, "'thing' is larger than 9 bytes");
	assert_null(data);
	close(fd);
	test_rmtree(dir);
}

static void test_read_file_cap(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-common");
	_cleanup_free_ char *path = fs_path_join(dir, "f");
	_cleanup_free_ char *data = NULL;
	struct bg_err err = { 0 };

	(void)state;
	test_write_file(path, "0123456789");
	assert_int_equal(fs_read_file(path, 9, &data, NULL, &err), -EFBIG);
	assert_int_equal(fs_read_file(path, 10, &data, NULL, &err), 0);
	assert_string_equal(data, "0123456789");
	test_rmtree(dir);
}

/* Names shown on a terminal or in the log: nothing that a terminal acts on gets through. */
static void test_str_escape(void **state)
{
	static const struct {
		const char *in, *out;
		bool unsafe;
	} cases[] = {
		{ "web.yaml", "web.yaml", false },
		{ "caf\xc3\xa9 \xe2\x9c\x93.yaml", "caf\xc3\xa9 \xe2\x9c\x93.yaml", false },
		{ "a\\b", "a\\\\b", false },
		{ "\x1b[31mred\x1b[0m\n.yaml", "\\x1b[31mred\\x1b[0m\\n.yaml", true },
		{ "tab\there\r", "tab\\there\\r", true },
		{ "del\x7f", "del\\x7f", true },
		{ "bad\xff\xc3", "bad\\xff\\xc3", true },
		{ "overlong\xc0\xaf", "overlong\\xc0\\xaf", true },
		{ "c1\xc2\x9b", "c1\\u{009B}", true },
		{ "bidi\xe2\x80\xae", "bidi\\u{202E}", true },
		{ "ls\xe2\x80\xa8", "ls\\u{2028}", true },
		{ "", "", false },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *e = str_escape(cases[i].in);

		assert_string_equal(e, cases[i].out);
		assert_int_equal(str_needs_escape(cases[i].in), cases[i].unsafe);
		assert_false(str_needs_escape(e));
	}
	{
		_cleanup_free_ char *e = str_escape(NULL);

		assert_string_equal(e, "");
	}
}

static void test_mkdir_p(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-common");
	_cleanup_free_ char *deep = fs_path_join(dir, "a/b/c");
	_cleanup_free_ char *deep2 = fs_path_join(dir, "a/b/c/d");
	_cleanup_free_ char *file = fs_path_join(dir, "file");
	struct bg_err err = { 0 };
	struct stat st;
	mode_t old_umask = umask(0077);

	(void)state;
	/* A directory it creates gets exactly 'mode', whatever the umask. */
	assert_int_equal(fs_mkdir_p(deep, 0750, &err), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	/* An existing directory keeps its mode: an admin's choice persists. */
	assert_int_equal(chmod(deep, 0710), 0);
	assert_int_equal(fs_mkdir_p(deep, 0700, &err), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0710);
	assert_int_equal(fs_mkdir_p(deep, 0755, &err), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0710);
	/* ...and so does an existing parent, while a new last component gets 'mode'. */
	assert_int_equal(fs_mkdir_p(deep2, 0700, &err), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0710);
	assert_int_equal(stat(deep2, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	umask(old_umask);
	test_write_file(file, "x");
	assert_int_equal(fs_mkdir_p(file, 0700, &err), -ENOTDIR);
	test_rmtree(dir);
	assert_false(fs_exists(dir));
}

static void test_proc_run(void **state)
{
	const char *ok[] = { "sh", "-c", "echo hello; echo err >&2", NULL };
	const char *fail[] = { "sh", "-c", "echo first; echo boom; exit 3", NULL };
	const char *slow[] = { "sleep", "10", NULL };
	const char *missing[] = { "/nonexistent/banger-test", NULL };
	_cleanup_free_ char *out = NULL;
	struct bg_err err = { 0 };
	int64_t t0;

	(void)state;
	assert_int_equal(proc_run(ok, 5000, &out, &err), 0);
	assert_string_equal(out, "hello\nerr\n");
	assert_int_equal(proc_run(fail, 5000, NULL, &err), -EIO);
	assert_string_equal(err.msg, "'sh' exited with status 3: boom");
	t0 = now_mono_ms();
	assert_int_equal(proc_run(slow, 200, NULL, &err), -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 < 5000);
	assert_int_equal(proc_run(missing, 1000, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "exec '/nonexistent/banger-test'"));
}

static void test_proc_run_status(void **state)
{
	const char *ok[] = { "sh", "-c", "echo same", NULL };
	const char *one[] = { "sh", "-c", "echo differs; exit 1", NULL };
	const char *two[] = { "sh", "-c", "echo 'diff: x: No such file' >&2; exit 2", NULL };
	const char *killed[] = { "sh", "-c", "kill -TERM $$", NULL };
	const char *slow[] = { "sleep", "10", NULL };
	const char *missing[] = { "/nonexistent/banger-test", NULL };
	struct bg_err err = { 0 };
	int status = -1;
	int64_t t0;

	(void)state;
	{
		_cleanup_free_ char *out = NULL;

		assert_int_equal(proc_run_status(ok, 5000, &out, &status, &err), 0);
		assert_int_equal(status, 0);
		assert_string_equal(out, "same\n");
	}
	{
		_cleanup_free_ char *out = NULL;

		/* A non-zero exit is not an error of proc_run_status: it ran. */
		assert_int_equal(proc_run_status(one, 5000, &out, &status, &err), 0);
		assert_int_equal(status, 1);
		assert_string_equal(out, "differs\n");
	}
	{
		_cleanup_free_ char *out = NULL;

		assert_int_equal(proc_run_status(two, 5000, &out, &status, &err), 0);
		assert_int_equal(status, 2);
		assert_string_equal(out, "diff: x: No such file\n");
	}
	/* Killed by a signal: 128 + the signal, as a shell reports it. */
	assert_int_equal(proc_run_status(killed, 5000, NULL, &status, &err), 0);
	assert_int_equal(status, 128 + SIGTERM);
	/* Could not run, or did not finish: an error, and *ret_status is left alone. */
	status = -1;
	assert_int_equal(proc_run_status(missing, 1000, NULL, &status, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "exec '/nonexistent/banger-test'"));
	assert_int_equal(status, -1);
	t0 = now_mono_ms();
	assert_int_equal(proc_run_status(slow, 200, NULL, &status, &err), -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 < 5000);
	assert_int_equal(status, -1);
}

static void test_proc_identity(void **state)
{
	const char *argv[] = { "sleep", "30", NULL };
	struct bg_err err = { 0 };
	uint64_t st = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(proc_spawn(argv, NULL, &pid, &err), 0);
	assert_int_equal(proc_start_time(pid, &st, &err), 0);
	assert_true(st > 0);
	assert_true(proc_identity_matches(pid, st));
	assert_true(proc_identity_matches(pid, 0));
	/* A different start time means a different process: never signalled. */
	assert_false(proc_identity_matches(pid, st + 1));
	assert_int_equal(proc_signal(pid, st + 1, SIGKILL, &err), -ESRCH);
	assert_true(proc_identity_matches(pid, st));
	assert_int_equal(proc_signal(pid, st, SIGTERM, &err), 0);
	assert_int_equal(proc_wait_gone(pid, st, 5000), 0);
	assert_false(proc_identity_matches(pid, st));
	assert_int_equal(proc_start_time(pid, &st, &err), -ENOENT);
}

static void test_proc_find_in_path(void **state)
{
	_cleanup_free_ char *sh = proc_find_in_path("sh");
	_cleanup_free_ char *none = proc_find_in_path("banger-no-such-binary");

	(void)state;
	assert_non_null(sh);
	assert_true(sh[0] == '/');
	assert_null(none);
}

static void test_base64(void **state)
{
	const char *vec[][2] = { { "", "" },
				 { "f", "Zg==" },
				 { "fo", "Zm8=" },
				 { "foo", "Zm9v" },
				 { "foob", "Zm9vYg==" },
				 { "fooba", "Zm9vYmE=" },
				 { "foobar", "Zm9vYmFy" } };
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(vec); i++) {
		_cleanup_free_ char *enc = base64_encode(vec[i][0], strlen(vec[i][0]));
		uint8_t *dec = NULL;
		size_t len = 0;

		assert_string_equal(enc, vec[i][1]);
		assert_int_equal(base64_decode(enc, strlen(enc), &dec, &len), 0);
		assert_int_equal(len, strlen(vec[i][0]));
		assert_memory_equal(dec, vec[i][0], len);
		free(dec);
	}
	{
		uint8_t *dec = NULL;
		size_t len;

		assert_int_equal(base64_decode("Zm9", 3, &dec, &len), -EINVAL);
		assert_int_equal(base64_decode("Zm=v", 4, &dec, &len), -EINVAL);
		assert_int_equal(base64_decode("Z!9v", 4, &dec, &len), -EINVAL);
	}
}

/* Fresh pairs each time; the seed signs (OpenSSH checks the pair in test_hostkey). */
static void test_ed25519_keygen(void **state)
{
	uint8_t seed[2][ED25519_SEED_LEN], pub[2][ED25519_PUB_LEN], sig[ED25519_SIG_LEN];

	(void)state;
	assert_int_equal(ed25519_keygen(seed[0], pub[0]), 0);
	assert_int_equal(ed25519_keygen(seed[1], pub[1]), 0);
	assert_memory_not_equal(seed[0], seed[1], ED25519_SEED_LEN);
	assert_memory_not_equal(pub[0], pub[1], ED25519_PUB_LEN);
	assert_memory_not_equal(seed[0], pub[0], ED25519_SEED_LEN);
	assert_int_equal(ed25519_sign(seed[0], "m", 1, sig), 0);
}

static void test_sha256(void **state)
{
	char hex[SHA256_HEX_LEN + 1];

	(void)state;
	sha256_hex("abc", 3, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_duration(void **state)
{
	int64_t ms;

	(void)state;
	assert_int_equal(parse_duration_ms("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(parse_duration_ms("1m30s", &ms), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(parse_duration_ms("90", &ms), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(parse_duration_ms("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(parse_duration_ms("", &ms), -EINVAL);
	assert_int_equal(parse_duration_ms("5x", &ms), -EINVAL);
	assert_int_equal(parse_duration_ms("m", &ms), -EINVAL);
	assert_int_equal(parse_duration_ms("1s5", &ms), -EINVAL);
}

/* SSH wire pieces: a big-endian uint32, and a length-prefixed string. */
static void test_buf_be32(void **state)
{
	struct buf b;
	const uint8_t want[] = { 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0 };

	(void)state;
	buf_init(&b);
	buf_add_be32(&b, 0x01020304u);
	buf_add_str32(&b, "abc", 3);
	buf_add_str32(&b, "", 0);
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
	buf_release(&b);
}

static void test_buf(void **state)
{
	struct buf b;
	char *s;
	size_t len;

	(void)state;
	buf_init(&b);
	for (int i = 0; i < 1000; i++)
		buf_addf(&b, "%d,", i);
	assert_int_equal(b.len, strlen(b.data));
	assert_memory_equal(b.data, "0,1,2,", 6);
	s = buf_detach(&b, &len);
	assert_int_equal(len, strlen(s));
	free(s);
	assert_null(b.data);
	buf_release(&b);
}

/* A loopback listener on an ephemeral port; its port in *ret_port. */
static int listener(int *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

static void test_net_connect(void **state)
{
	struct bg_err err = { 0 };
	int port, lfd, fd = -1;

	(void)state;
	lfd = listener(&port);
	assert_int_equal(net_connect_tcp("127.0.0.1", port, 2000, &fd, &err), 0);
	assert_true(fd >= 0);
	close(fd);
	close(lfd); /* nothing listens there any more */
	assert_int_equal(net_connect_tcp("127.0.0.1", port, 2000, &fd, &err), -ECONNREFUSED);
	assert_non_null(strstr(err.msg, "127.0.0.1"));
	assert_int_equal(net_connect_tcp("::1", port, 2000, &fd, &err) < 0, 1); /* IPv6 parses */
	assert_int_equal(net_connect_tcp("web.vm", 22, 2000, &fd, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not an IP address"));
	assert_int_equal(net_connect_tcp(NULL, 22, 2000, &fd, &err), -EINVAL);
}

static void test_resolv_nameservers(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-common");
	_cleanup_free_ char *path = fs_path_join(dir, "resolv.conf");
	_cleanup_free_ char *missing = fs_path_join(dir, "none");
	_cleanup_strv_free_ char **ns = NULL;
	_cleanup_strv_free_ char **none = NULL;
	struct bg_err err = { 0 };

	(void)state;
	test_write_file(path, "# comment\nsearch example.org\nnameserver 127.0.0.53\n"
			      "nameserver 192.0.2.1\n  nameserver\t198.51.100.7 # x\n"
			      "nameserver 2001:db8::1\nnameserver bogus\nnameserver 192.0.2.2\n"
			      "nameserver 192.0.2.3\n");
	assert_int_equal(net_resolv_nameservers(path, &ns, &err), 3);
	assert_string_equal(ns[0], "192.0.2.1");
	assert_string_equal(ns[1], "198.51.100.7");
	assert_string_equal(ns[2], "192.0.2.2");
	assert_null(ns[3]);
	assert_int_equal(net_resolv_nameservers(missing, &none, &err), 0);
	assert_null(none[0]);
	test_rmtree(dir);
}

/*
 * fs_copy_fd copies a whole file into a memfd (no copy_file_range between
 * those: the read/write path) and into a file on the same filesystem, from
 * offset 0 whatever the source's position; past 'max' it is EFBIG.
 */
static void test_copy_fd(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-copyfd");
	_cleanup_free_ char *src = fs_path_join(dir, "src");
	_cleanup_free_ char *dst = fs_path_join(dir, "dst");
	_cleanup_free_ char *data = NULL;
	_cleanup_close_ int in = -1, mfd = -1, out = -1;
	struct bg_err err = { 0 };
	size_t len;
	char big[200000], back[sizeof(big)];

	(void)state;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	assert_int_equal(fs_write_atomic(src, big, sizeof(big), 0600, &err), 0);
	in = open(src, O_RDONLY | O_CLOEXEC);
	assert_true(in >= 0);
	assert_int_equal(lseek(in, 1000, SEEK_SET), 1000);
	mfd = memfd_create("bg-test", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	assert_int_equal(fs_copy_fd(in, mfd, sizeof(big), src, &err), 0);
	assert_int_equal(pread(mfd, back, sizeof(back), 0), (ssize_t)sizeof(back));
	assert_memory_equal(back, big, sizeof(big));
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(out >= 0);
	assert_int_equal(fs_copy_fd(in, out, UINT64_MAX, src, &err), 0);
	assert_int_equal(fs_read_file(dst, sizeof(big) + 1, &data, &len, &err), 0);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(data, big, sizeof(big));
	assert_int_equal(ftruncate(mfd, 0), 0);
	assert_int_equal(lseek(mfd, 0, SEEK_SET), 0);
	assert_int_equal(fs_copy_fd(in, mfd, sizeof(big) - 1, src, &err), -EFBIG);
	test_rmtree(dir);
}

static void test_paths_absolute(void **state)
{
	_cleanup_free_ char *cwd = getcwd(NULL, 0);
	_cleanup_free_ char *a = paths_absolute(xstrdup("/var/lib/banger"));
	_cleanup_free_ char *b = paths_absolute(xstrdup("state/x"));
	_cleanup_free_ char *c = paths_absolute(xstrdup("."));
	_cleanup_free_ char *want_b = xasprintf("%s/state/x", cwd);

	(void)state;
	assert_string_equal(a, "/var/lib/banger");
	assert_string_equal(b, want_b);
	assert_string_equal(c, cwd);
	assert_null(paths_absolute(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err_wrap),
		cmocka_unit_test(test_err_wrap_truncates),
		cmocka_unit_test(test_atomic_write),
		cmocka_unit_test(test_read_file_cap),
		cmocka_unit_test(test_mkdir_p),
		cmocka_unit_test(test_str_escape),
		cmocka_unit_test(test_proc_run),
		cmocka_unit_test(test_proc_run_status),
		cmocka_unit_test(test_atomic_write_checked),
		cmocka_unit_test(test_write_new),
		cmocka_unit_test(test_read_fd),
		cmocka_unit_test(test_proc_identity),
		cmocka_unit_test(test_proc_find_in_path),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_ed25519_keygen),
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_buf_be32),
		cmocka_unit_test(test_net_connect),
		cmocka_unit_test(test_resolv_nameservers),
		cmocka_unit_test(test_paths_absolute),
		cmocka_unit_test(test_copy_fd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
