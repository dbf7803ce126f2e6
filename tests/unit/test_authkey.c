/*
 * test_authkey.c - reconciler/guest/authkey.c: the public half is read from
 * a real ssh-keygen .pub; the parent signs only a well-formed public-key
 * user-auth request for the probe's user and key (anything else a
 * compromised probe child could ask for is refused); signing reads the
 * private key file only when its public half matches, and the signature
 * is the deterministic 64-byte Ed25519 one.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/guest/authkey.h"
#include "tests/lib/testutil.h"

static char *tmpdir;

static void keygen(const char *path)
{
	const char *argv[] = { "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path, NULL };
	struct bg_err err = { 0 };

	if (proc_run(argv, 60000, NULL, &err) < 0)
		fail_msg("ssh-keygen: %s", err.msg);
}

static int group_setup(void **state)
{
	(void)state;
	tmpdir = test_tmpdir("bg-authkey");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	test_rmtree(tmpdir);
	free(tmpdir);
	return 0;
}

static void put_str(struct buf *b, const void *s, size_t len)
{
	uint8_t x[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			 (uint8_t)len };

	buf_add(b, x, 4);
	buf_add(b, s, len);
}

/* What libssh2 hands its sign callback for a user-auth of user with blob. */
static char *userauth_data(const char *user, const uint8_t *blob, size_t blob_len, uint8_t has_sig,
			   const char *service, size_t *ret_len)
{
	struct buf b;
	uint8_t sid[32];

	memset(sid, 0xab, sizeof(sid));
	buf_init(&b);
	put_str(&b, sid, sizeof(sid));
	buf_addch(&b, 50);
	put_str(&b, user, strlen(user));
	put_str(&b, service, strlen(service));
	put_str(&b, "publickey", 9);
	buf_addch(&b, (char)has_sig);
	put_str(&b, "ssh-ed25519", 11);
	put_str(&b, blob, blob_len);
	return buf_detach(&b, ret_len);
}

static void test_pubfile(void **state)
{
	_cleanup_free_ char *key = xasprintf("%s/k1", tmpdir);
	_cleanup_free_ char *pub = xasprintf("%s.pub", key);
	_cleanup_free_ char *bad = xasprintf("%s/bad.pub", tmpdir);
	struct authkey_list l = { 0 };
	struct bg_err err = { 0 };

	(void)state;
	keygen(key);
	assert_int_equal(authkey_add_pubfile(&l, pub, &err), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.keys[0].blob_len, 4 + 11 + 4 + 32);
	assert_false(l.keys[0].agent);
	test_write_file(bad, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ x\n");
	assert_int_equal(authkey_add_pubfile(&l, bad, &err), -EINVAL);
	test_write_file(bad, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== x\n"); /* key too short */
	assert_int_equal(authkey_add_pubfile(&l, bad, &err), -EINVAL);
	assert_int_equal(l.n, 1);
	authkey_list_release(&l);
}

static void test_only_userauth_is_signed(void **state)
{
	_cleanup_free_ char *key = xasprintf("%s/k2", tmpdir);
	_cleanup_free_ char *pub = xasprintf("%s.pub", key);
	_cleanup_free_ char *ok = NULL, *other_user = NULL, *no_sig = NULL, *service = NULL;
	_cleanup_free_ uint8_t *sig1 = NULL, *sig2 = NULL, *sig3 = NULL;
	struct authkey_list l = { 0 };
	struct bg_err err = { 0 };
	size_t ok_len, n, s1 = 0, s2 = 0, s3 = 0;
	uint8_t other_blob[51];

	(void)state;
	keygen(key);
	assert_int_equal(authkey_add_pubfile(&l, pub, &err), 0);
	ok = userauth_data("root", l.keys[0].blob, l.keys[0].blob_len, 1, "ssh-connection",
			   &ok_len);
	assert_true(authkey_userauth_data_ok((uint8_t *)ok, ok_len, "root", l.keys[0].blob,
					     l.keys[0].blob_len));
	/* trailing, truncated, another user, no signature flag, another service, another key */
	assert_false(authkey_userauth_data_ok((uint8_t *)ok, ok_len - 1, "root", l.keys[0].blob,
					      l.keys[0].blob_len));
	{
		_cleanup_free_ char *longer = xmalloc(ok_len + 1);

		memcpy(longer, ok, ok_len);
		longer[ok_len] = 0;
		assert_false(authkey_userauth_data_ok((uint8_t *)longer, ok_len + 1, "root",
						      l.keys[0].blob, l.keys[0].blob_len));
	}
	other_user =
		userauth_data("admin", l.keys[0].blob, l.keys[0].blob_len, 1, "ssh-connection", &n);
	assert_false(authkey_userauth_data_ok((uint8_t *)other_user, n, "root", l.keys[0].blob,
					      l.keys[0].blob_len));
	no_sig = userauth_data("root", l.keys[0].blob, l.keys[0].blob_len, 0, "ssh-connection", &n);
	assert_false(authkey_userauth_data_ok((uint8_t *)no_sig, n, "root", l.keys[0].blob,
					      l.keys[0].blob_len));
	service = userauth_data("root", l.keys[0].blob, l.keys[0].blob_len, 1, "ssh-userauth", &n);
	assert_false(authkey_userauth_data_ok((uint8_t *)service, n, "root", l.keys[0].blob,
					      l.keys[0].blob_len));
	memcpy(other_blob, l.keys[0].blob, sizeof(other_blob));
	other_blob[50] ^= 1;
	assert_false(authkey_userauth_data_ok((uint8_t *)ok, ok_len, "root", other_blob,
					      sizeof(other_blob)));
	assert_false(authkey_userauth_data_ok((const uint8_t *)"x", 1, "root", l.keys[0].blob,
					      l.keys[0].blob_len));

	/* Ed25519 is deterministic: same data, same 64 bytes; other data, others. */
	assert_int_equal(
		authkey_sign(&l.keys[0], key, NULL, 1000, (uint8_t *)ok, ok_len, &sig1, &s1, &err),
		0);
	assert_int_equal(s1, 64);
	assert_int_equal(
		authkey_sign(&l.keys[0], key, NULL, 1000, (uint8_t *)ok, ok_len, &sig2, &s2, &err),
		0);
	assert_memory_equal(sig1, sig2, 64);
	assert_int_equal(authkey_sign(&l.keys[0], key, NULL, 1000, (uint8_t *)ok, ok_len - 1, &sig3,
				      &s3, &err),
			 0);
	assert_memory_not_equal(sig1, sig3, 64);
	authkey_list_release(&l);
}

/* A .pub that is not the identity's public half: the private key is not used. */
static void test_mismatched_identity(void **state)
{
	_cleanup_free_ char *a = xasprintf("%s/ka", tmpdir);
	_cleanup_free_ char *b = xasprintf("%s/kb", tmpdir);
	_cleanup_free_ char *b_pub = xasprintf("%s.pub", b);
	_cleanup_free_ uint8_t *sig = NULL;
	struct authkey_list l = { 0 };
	struct bg_err err = { 0 };
	size_t sl = 0;

	(void)state;
	keygen(a);
	keygen(b);
	assert_int_equal(authkey_add_pubfile(&l, b_pub, &err), 0);
	assert_int_equal(
		authkey_sign(&l.keys[0], a, NULL, 1000, (const uint8_t *)"x", 1, &sig, &sl, &err),
		-EINVAL);
	assert_non_null(strstr(err.msg, "not the ed25519 key of its .pub"));
	assert_null(sig);
	/* an agent key without an agent */
	l.keys[0].agent = true;
	assert_int_equal(
		authkey_sign(&l.keys[0], a, NULL, 1000, (const uint8_t *)"x", 1, &sig, &sl, &err),
		-EINVAL);
	authkey_list_release(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pubfile),
		cmocka_unit_test(test_only_userauth_is_signed),
		cmocka_unit_test(test_mismatched_identity),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
