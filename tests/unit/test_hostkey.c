/*
 * test_hostkey.c - reconciler/guest/hostkey.c: a VM's host key pair is made
 * once (0600, in-process), loaded again unchanged, a half-made pair is made
 * again, and a symlink or a foreign key is refused rather than replaced. The
 * files are checked against the real readers: OpenSSH's ssh-keygen parses
 * the private key and derives the same public key and fingerprint, dropbear's
 * converter (what the reference image runs) takes it, and our own decode of
 * the private key follows PROTOCOL.key byte by byte.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/guest/hostkey.h"
#include "tests/lib/testutil.h"

static char *tmpdir;

static int setup(void **state)
{
	(void)state;
	tmpdir = test_tmpdir("bg-hostkey");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_rmtree(tmpdir);
	free(tmpdir);
	return 0;
}

static char *mkdir_case(const char *name)
{
	char *dir = xasprintf("%s/%s", tmpdir, name);

	assert_int_equal(mkdir(dir, 0700), 0);
	return dir;
}

static void test_made_once_then_loaded(void **state)
{
	_cleanup_free_ char *dir = mkdir_case("once");
	_cleanup_free_ char *priv = xasprintf("%s/" HOSTKEY_FILE, dir);
	_cleanup_free_ char *pub = xasprintf("%s.pub", priv);
	_cleanup_free_ char *tmp = xasprintf("%s/.hostkey.tmp", dir);
	struct hostkey a = { 0 }, b = { 0 };
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	assert_int_equal(hostkey_ensure(dir, "banger-vm web-1", &a, &err), 1);
	assert_int_equal(lstat(priv, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(lstat(pub, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_non_null(strstr(a.private_key, "BEGIN OPENSSH PRIVATE KEY"));
	assert_true(strncmp(a.public_line, "ssh-ed25519 AAAA", 16) == 0);
	assert_non_null(strstr(a.public_line, "banger-vm web-1"));
	assert_int_equal(a.blob_len, 51); /* string "ssh-ed25519" + string of 32 bytes */
	assert_false(fs_exists(tmp));

	/* The public half alone, for display. */
	{
		struct hostkey p = { 0 };

		assert_int_equal(hostkey_read_public(dir, &p, &err), 0);
		assert_null(p.private_key);
		assert_string_equal(p.fingerprint, a.fingerprint);
		hostkey_release(&p);
		assert_int_equal(hostkey_read_public(tmpdir, &p, &err), -ENOENT);
		bg_err_clear(&err);
	}

	/* Second call: the same key, nothing generated. */
	assert_int_equal(hostkey_ensure(dir, "ignored", &b, &err), 0);
	assert_string_equal(a.fingerprint, b.fingerprint);
	assert_string_equal(a.private_key, b.private_key);
	hostkey_release(&a);
	hostkey_release(&b);
}

static void test_half_made_pair_is_made_again(void **state)
{
	_cleanup_free_ char *dir = mkdir_case("half");
	_cleanup_free_ char *priv = xasprintf("%s/" HOSTKEY_FILE, dir);
	_cleanup_free_ char *pub = xasprintf("%s.pub", priv);
	struct hostkey a = { 0 }, b = { 0 };
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(hostkey_ensure(dir, "c", &a, &err), 1);
	/* A crash between the two renames leaves only the public half. */
	assert_int_equal(unlink(priv), 0);
	assert_int_equal(hostkey_ensure(dir, "c", &b, &err), 1);
	assert_string_not_equal(a.fingerprint, b.fingerprint);
	assert_true(fs_exists(priv) && fs_exists(pub));
	hostkey_release(&a);
	hostkey_release(&b);
}

static void test_refuses_what_it_did_not_make(void **state)
{
	_cleanup_free_ char *dir = mkdir_case("bad");
	_cleanup_free_ char *priv = xasprintf("%s/" HOSTKEY_FILE, dir);
	_cleanup_free_ char *pub = xasprintf("%s.pub", priv);
	_cleanup_free_ char *secret = xasprintf("%s/secret", tmpdir);
	struct hostkey k = { 0 };
	struct bg_err err = { 0 };

	(void)state;
	/* A symlink planted in the VM dir is not followed. */
	test_write_file(secret, "not yours\n");
	assert_int_equal(symlink(secret, priv), 0);
	test_write_file(
		pub,
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBFJ6R0d1+9S5IVWOH0Q0ZHqaZ8CFjXc3/d4oP0B7z0B x\n");
	assert_int_equal(hostkey_ensure(dir, "c", &k, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a regular file"));
	bg_err_clear(&err);

	/* An RSA public half is not taken for an ed25519 key. */
	assert_int_equal(unlink(priv), 0);
	test_write_file(priv, "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n");
	test_write_file(pub, "ssh-rsa AAAAB3NzaC1yc2E= x\n");
	assert_int_equal(hostkey_ensure(dir, "c", &k, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not an ed25519"));
	bg_err_clear(&err);

	/* A NUL inside the private half: refused (it would hide bytes from the wipe). */
	{
		static const char nul_key[] = "-----BEGIN OPENSSH PRIVATE KEY-----\nab\0cd\n";
		FILE *fp;

		assert_int_equal(unlink(priv), 0);
		fp = fopen(priv, "w");
		assert_non_null(fp);
		assert_int_equal(fwrite(nul_key, 1, sizeof(nul_key) - 1, fp), sizeof(nul_key) - 1);
		assert_int_equal(fclose(fp), 0);
		assert_int_equal(hostkey_ensure(dir, "c", &k, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "NUL byte"));
	}
}

/* "ssh-ed25519 AAAA..." of a public key line: its type and key, without the comment. */
static char *type_and_key(const char *line)
{
	const char *sp = strchr(line, ' ');

	assert_non_null(sp);
	return xstrndup(line, (size_t)(sp + 1 - line) + strcspn(sp + 1, " \n"));
}

static bool have_tool(const char *name)
{
	_cleanup_free_ char *path = proc_find_in_path(name);

	return path != NULL;
}

/* OpenSSH itself parses the private key and derives the .pub's key and fingerprint. */
static void test_openssh_reads_the_key(void **state)
{
	_cleanup_free_ char *dir = mkdir_case("openssh");
	_cleanup_free_ char *priv = xasprintf("%s/" HOSTKEY_FILE, dir);
	_cleanup_free_ char *pub = xasprintf("%s.pub", priv);
	_cleanup_free_ char *derived = NULL, *listed = NULL, *ours = NULL, *theirs = NULL;
	struct hostkey k = { 0 };
	struct bg_err err = { 0 };

	(void)state;
	if (!have_tool("ssh-keygen")) {
		test_skip_reason("ssh-keygen (openssh-client) is not installed: no OpenSSH oracle");
		skip();
	}
	assert_int_equal(hostkey_ensure(dir, "banger-vm-web-1", &k, &err), 1);
	{
		const char *argv[] = { "ssh-keygen", "-y", "-f", priv, NULL };

		if (proc_run(argv, 10000, &derived, &err) < 0)
			fail_msg("ssh-keygen -y refuses our key: %s", err.msg);
	}
	ours = type_and_key(k.public_line);
	theirs = type_and_key(derived);
	assert_string_equal(theirs, ours);
	{
		const char *argv[] = { "ssh-keygen", "-l", "-f", pub, NULL };
		_cleanup_free_ char *fp = NULL;
		const char *sp;

		assert_int_equal(proc_run(argv, 10000, &listed, &err), 0);
		/* "256 SHA256:... comment (ED25519)" */
		assert_true(strncmp(listed, "256 ", 4) == 0);
		sp = listed + 4;
		fp = xstrndup(sp, strcspn(sp, " \n"));
		assert_string_equal(fp, k.fingerprint);
		assert_non_null(strstr(listed, " banger-vm-web-1 (ED25519)"));
	}
	/*
	 * -y copies the public key out of the file; a signature shows the seed
	 * really belongs to it (Ed25519 signs with both, verifies with the public).
	 */
	{
		_cleanup_free_ char *msg = xasprintf("%s/msg", dir);
		_cleanup_free_ char *sig = xasprintf("%s/msg.sig", dir);
		const char *sign[] = { "ssh-keygen", "-Y", "sign", "-n", "banger-test",
				       "-f",	     priv, msg,	   NULL };
		const char *check[] = {
			"sh",
			"-c",
			"exec ssh-keygen -Y check-novalidate -n banger-test -f \"$1\" "
			"-s \"$2\" < \"$3\"",
			"sh",
			pub,
			sig,
			msg,
			NULL
		};

		test_write_file(msg, "signed by the guest's host key\n");
		if (proc_run(sign, 10000, NULL, &err) < 0)
			fail_msg("ssh-keygen -Y sign with our key: %s", err.msg);
		if (proc_run(check, 10000, NULL, &err) < 0)
			fail_msg("ssh-keygen -Y check-novalidate: %s", err.msg);
		/* The check can fail: another message does not verify. */
		test_write_file(msg, "something else\n");
		assert_int_equal(proc_run(check, 10000, NULL, &err), -EIO);
		bg_err_clear(&err);
	}
	hostkey_release(&k);
}

/* The reference image's dropbear converts the key at boot: its converter must take it. */
static void test_dropbear_converts_the_key(void **state)
{
	_cleanup_free_ char *dir = mkdir_case("dropbear");
	_cleanup_free_ char *priv = xasprintf("%s/" HOSTKEY_FILE, dir);
	_cleanup_free_ char *out_path = xasprintf("%s/dropbear_ed25519_host_key", dir);
	_cleanup_free_ char *out = NULL;
	struct hostkey k = { 0 };
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	if (!have_tool("dropbearconvert")) {
		test_skip_reason("dropbearconvert (dropbear-bin) is not installed");
		skip();
	}
	assert_int_equal(hostkey_ensure(dir, "c", &k, &err), 1);
	{
		const char *argv[] = { "dropbearconvert", "openssh", "dropbear", priv,
				       out_path,	  NULL };

		if (proc_run(argv, 10000, &out, &err) < 0)
			fail_msg("dropbearconvert refuses our key: %s", err.msg);
	}
	assert_int_equal(stat(out_path, &st), 0);
	assert_true(st.st_size > 0);
	hostkey_release(&k);
}

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint32_t rd_u32(struct rd *r)
{
	uint32_t v;

	assert_true(r->n >= 4);
	v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->n -= 4;
	return v;
}

static struct rd rd_str(struct rd *r)
{
	uint32_t len = rd_u32(r);
	struct rd s;

	assert_true(len <= r->n);
	s = (struct rd){ r->p, len };
	r->p += len;
	r->n -= len;
	return s;
}

static void assert_str_is(struct rd *r, const char *want)
{
	struct rd s = rd_str(r);

	assert_int_equal(s.n, strlen(want));
	assert_memory_equal(s.p, want, s.n);
}

/* Our own reading of PROTOCOL.key: armour, line width, fields, check integers, padding. */
static void test_private_key_layout(void **state)
{
	static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
	static const char end[] = "-----END OPENSSH PRIVATE KEY-----\n";
	static const char magic[] = "openssh-key-v1";
	/* Private sections that need 5, 4, 6 and 0 bytes of padding. */
	static const char *const comments[] = { "", "c", "banger-vm-web-1", "12345" };

	(void)state;
	for (size_t c = 0; c < sizeof(comments) / sizeof(comments[0]); c++) {
		_cleanup_free_ char *name = xasprintf("layout%zu", c);
		_cleanup_free_ char *dir = mkdir_case(name);
		_cleanup_free_ uint8_t *raw = NULL;
		_cleanup_free_ char *b64 = NULL;
		struct hostkey k = { 0 };
		struct bg_err err = { 0 };
		const char *body, *stop, *line;
		size_t raw_len = 0, b64_len = 0;
		struct rd r, sec, blob, key;
		uint32_t check;

		assert_int_equal(hostkey_ensure(dir, comments[c], &k, &err), 1);
		assert_true(strncmp(k.private_key, begin, strlen(begin)) == 0);
		stop = k.private_key + strlen(k.private_key) - strlen(end);
		assert_string_equal(stop, end);
		/* Lines of exactly 70 base64 characters, the last one 1..70. */
		body = k.private_key + strlen(begin);
		b64 = xmalloc((size_t)(stop - body) + 1);
		for (line = body; line < stop;) {
			size_t n = strcspn(line, "\n");

			assert_true(n > 0 && n <= 70);
			if (line + n + 1 < stop)
				assert_int_equal(n, 70);
			memcpy(b64 + b64_len, line, n);
			b64_len += n;
			line += n + 1;
		}
		assert_int_equal(base64_decode(b64, b64_len, &raw, &raw_len), 0);

		r = (struct rd){ raw, raw_len };
		assert_true(r.n > sizeof(magic));
		assert_memory_equal(r.p, magic, sizeof(magic)); /* with its NUL */
		r.p += sizeof(magic);
		r.n -= sizeof(magic);
		assert_str_is(&r, "none");
		assert_str_is(&r, "none");
		assert_str_is(&r, "");
		assert_int_equal(rd_u32(&r), 1);
		blob = rd_str(&r);
		assert_int_equal(blob.n, k.blob_len);
		assert_memory_equal(blob.p, k.blob, k.blob_len);
		sec = rd_str(&r);
		assert_int_equal(r.n, 0);

		assert_int_equal(sec.n % 8, 0);
		check = rd_u32(&sec);
		assert_int_equal(rd_u32(&sec), check);
		assert_str_is(&sec, "ssh-ed25519");
		key = rd_str(&sec);
		assert_int_equal(key.n, 32);
		assert_memory_equal(key.p, k.blob + k.blob_len - 32, 32);
		key = rd_str(&sec);
		assert_int_equal(key.n, 64); /* seed || public key */
		assert_memory_equal(key.p + 32, k.blob + k.blob_len - 32, 32);
		assert_str_is(&sec, comments[c]);
		assert_true(sec.n < 8);
		for (size_t i = 0; i < sec.n; i++)
			assert_int_equal(sec.p[i], i + 1);
		hostkey_release(&k);
	}
}

static void test_keys_differ(void **state)
{
	_cleanup_free_ char *d1 = mkdir_case("diff1");
	_cleanup_free_ char *d2 = mkdir_case("diff2");
	struct hostkey a = { 0 }, b = { 0 };
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(hostkey_ensure(d1, "same", &a, &err), 1);
	assert_int_equal(hostkey_ensure(d2, "same", &b, &err), 1);
	assert_string_not_equal(a.fingerprint, b.fingerprint);
	assert_string_not_equal(a.public_line, b.public_line);
	assert_string_not_equal(a.private_key, b.private_key);
	hostkey_release(&a);
	hostkey_release(&b);
}

/* Leftovers of a crash are replaced; the mode is 0600 whatever the umask; a bad comment is refused. */
static void test_temp_files_umask_and_comment(void **state)
{
	_cleanup_free_ char *dir = mkdir_case("tmpfiles");
	_cleanup_free_ char *priv = xasprintf("%s/" HOSTKEY_FILE, dir);
	_cleanup_free_ char *tmp = xasprintf("%s/.hostkey.tmp", dir);
	_cleanup_free_ char *tmp_pub = xasprintf("%s.pub", tmp);
	_cleanup_free_ char *long_comment = xmalloc(2000);
	struct hostkey k = { 0 };
	struct bg_err err = { 0 };
	struct stat st;
	mode_t old;

	(void)state;
	test_write_file(tmp, "half a key from before a crash\n");
	test_write_file(tmp_pub, "ssh-ed25519 junk\n");
	old = umask(0377);
	assert_int_equal(hostkey_ensure(dir, "c", &k, &err), 1);
	umask(old);
	assert_false(fs_exists(tmp));
	assert_false(fs_exists(tmp_pub));
	assert_int_equal(stat(priv, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	hostkey_release(&k);

	assert_int_equal(unlink(priv), 0);
	assert_int_equal(hostkey_ensure(dir, "two\nlines", &k, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "comment"));
	bg_err_clear(&err);
	memset(long_comment, 'x', 1999);
	long_comment[1999] = '\0';
	assert_int_equal(hostkey_ensure(dir, long_comment, &k, &err), -EINVAL);
	bg_err_clear(&err);
	assert_false(fs_exists(priv));
	assert_false(fs_exists(tmp));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_made_once_then_loaded),
		cmocka_unit_test(test_half_made_pair_is_made_again),
		cmocka_unit_test(test_refuses_what_it_did_not_make),
		cmocka_unit_test(test_openssh_reads_the_key),
		cmocka_unit_test(test_dropbear_converts_the_key),
		cmocka_unit_test(test_private_key_layout),
		cmocka_unit_test(test_keys_differ),
		cmocka_unit_test(test_temp_files_umask_and_comment),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
