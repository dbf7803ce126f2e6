/*
 * test_hostkey.c - reconciler/guest/hostkey.c: a VM's host key pair is made
 * once (0600, by ssh-keygen), loaded again unchanged, its fingerprint agrees
 * with ssh-keygen's, a half-made pair is made again, and a symlink or a
 * foreign key is refused rather than replaced.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
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
	_cleanup_free_ char *out = NULL;
	_cleanup_free_ char *tmp = xasprintf("%s/.hostkey.tmp", dir);
	struct hostkey a = { 0 }, b = { 0 };
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	assert_int_equal(hostkey_ensure(dir, "banger-vm web-1", &a, &err), 1);
	assert_int_equal(stat(priv, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(pub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_non_null(strstr(a.private_key, "BEGIN OPENSSH PRIVATE KEY"));
	assert_true(strncmp(a.public_line, "ssh-ed25519 AAAA", 16) == 0);
	assert_non_null(strstr(a.public_line, "banger-vm web-1"));
	assert_int_equal(a.blob_len, 51); /* string "ssh-ed25519" + string of 32 bytes */
	assert_false(fs_exists(tmp));

	/* ssh-keygen agrees on the fingerprint, and derives the same public key. */
	{
		const char *argv[] = { "ssh-keygen", "-l", "-f", pub, NULL };

		assert_int_equal(proc_run(argv, 10000, &out, &err), 0);
		assert_non_null(strstr(out, a.fingerprint));
		free(out);
	}
	{
		const char *argv[] = { "ssh-keygen", "-y", "-f", priv, NULL };

		assert_int_equal(proc_run(argv, 10000, &out, &err), 0);
		assert_true(strncmp(out, a.public_line, strlen("ssh-ed25519 ") + 68) == 0);
	}

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
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_made_once_then_loaded),
		cmocka_unit_test(test_half_made_pair_is_made_again),
		cmocka_unit_test(test_refuses_what_it_did_not_make),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
