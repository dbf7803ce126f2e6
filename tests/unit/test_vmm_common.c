/*
 * test_vmm_common.c - reconciler/vmm/vmm.c: the guest-contract kernel
 * arguments, console log rotation, guest state names.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "reconciler/vmm/vmm.h"
#include "tests/lib/testutil.h"

#define GUEST_ARGS_MAX (2048 - 512 - 1)

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(vmm_guest_state_to_string(VMM_GUEST_UNKNOWN), "unknown");
	assert_string_equal(vmm_guest_state_to_string(VMM_GUEST_CONFIGURING), "configuring");
	assert_string_equal(vmm_guest_state_to_string(VMM_GUEST_RUNNING), "running");
	assert_string_equal(vmm_guest_state_to_string(VMM_GUEST_PAUSED), "paused");
	assert_string_equal(vmm_guest_state_to_string(VMM_GUEST_SHUTDOWN), "shutdown");
	assert_string_equal(vmm_guest_state_to_string(VMM_GUEST_STATE_MAX), "invalid");
	assert_string_equal(vmm_guest_state_to_string((enum vmm_guest_state) - 1), "invalid");
}

static void test_guest_args_exact(void **state)
{
	_cleanup_free_ char *args = NULL;
	struct bg_err err = { 0 };

	(void)state;
	/* "abc\n" is "YWJjCg==" in base64 (RFC 4648 test vectors extended by hand). */
	assert_int_equal(vmm_guest_args("172.30.0.5", "172.30.0.1", "255.255.255.0", "web-1", NULL,
					"abc\n", NULL, &args, &err),
			 0);
	assert_string_equal(args, "root=/dev/vda rw ip=172.30.0.5::172.30.0.1:255.255.255.0:"
				  "web-1:eth0:off banger.user=root banger.sshkeys=YWJjCg==");
}

/* The nameserver goes in ip='s DNS slot (field 8), which the reference image's rcS reads. */
static void test_guest_args_dns(void **state)
{
	_cleanup_free_ char *args = NULL;
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(vmm_guest_args_dns("172.30.0.5", "172.30.0.1", "255.255.255.0",
					    "172.30.0.1", "web-1", NULL, NULL, NULL, &args, &err),
			 0);
	assert_string_equal(args, "root=/dev/vda rw ip=172.30.0.5::172.30.0.1:255.255.255.0:"
				  "web-1:eth0:off:172.30.0.1 banger.user=root");
	assert_int_equal(vmm_guest_args_dns("172.30.0.5", "172.30.0.1", "255.255.255.0", "dns:x",
					    "web-1", NULL, NULL, NULL, &args, &err),
			 -EINVAL);
}

static void test_guest_args_user_and_extra(void **state)
{
	_cleanup_free_ char *args = NULL;
	_cleanup_free_ char *no_keys = NULL;
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(vmm_guest_args("10.1.2.3", "10.1.2.1", "255.255.0.0", "db", "alice", NULL,
					"quiet loglevel=3", &args, &err),
			 0);
	assert_string_equal(args, "root=/dev/vda rw ip=10.1.2.3::10.1.2.1:255.255.0.0:db:eth0:off "
				  "banger.user=alice quiet loglevel=3");
	/* Empty keys and empty extra args add nothing; an empty user is root. */
	assert_int_equal(vmm_guest_args("10.1.2.3", "10.1.2.1", "255.255.0.0", "db", "", "", "",
					&no_keys, &err),
			 0);
	assert_string_equal(no_keys,
			    "root=/dev/vda rw ip=10.1.2.3::10.1.2.1:255.255.0.0:db:eth0:off "
			    "banger.user=root");
}

/* The keys survive the trip: decoding banger.sshkeys= gives the text back. */
static void test_guest_args_keys_roundtrip(void **state)
{
	const char *keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq8w8m1 me@host\n"
			   "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk2yq+/ other@host\n";
	_cleanup_free_ char *args = NULL;
	_cleanup_free_ uint8_t *decoded = NULL;
	struct bg_err err = { 0 };
	const char *b64, *end;
	size_t len;

	(void)state;
	assert_int_equal(vmm_guest_args("172.30.0.9", "172.30.0.1", "255.255.255.0", "k", "root",
					keys, "x=1", &args, &err),
			 0);
	b64 = strstr(args, " banger.sshkeys=");
	assert_non_null(b64);
	b64 += strlen(" banger.sshkeys=");
	end = strchr(b64, ' ');
	assert_non_null(end);
	assert_string_equal(end, " x=1");
	assert_int_equal(base64_decode(b64, (size_t)(end - b64), &decoded, &len), 0);
	assert_int_equal(len, strlen(keys));
	assert_memory_equal(decoded, keys, len);
}

static void test_guest_root_args(void **state)
{
	_cleanup_free_ char *a = NULL;
	_cleanup_free_ char *b = NULL;
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(vmm_guest_root_args(NULL, &a, &err), 0);
	assert_string_equal(a, "root=/dev/vda rw");
	assert_int_equal(vmm_guest_root_args("quiet loglevel=3", &b, &err), 0);
	assert_string_equal(b, "root=/dev/vda rw quiet loglevel=3");
	assert_int_equal(vmm_guest_root_args("a\nb", &b, &err), -EINVAL);
}

static void test_guest_args_invalid(void **state)
{
	char *args = NULL;
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(vmm_guest_args("172.30.0", "172.30.0.1", "255.255.255.0", "a", NULL, NULL,
					NULL, &args, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "172.30.0"));
	assert_int_equal(vmm_guest_args("172.30.0.2", "gw", "255.255.255.0", "a", NULL, NULL, NULL,
					&args, &err),
			 -EINVAL);
	assert_int_equal(vmm_guest_args("172.30.0.2", "172.30.0.1", NULL, "a", NULL, NULL, NULL,
					&args, &err),
			 -EINVAL);
	/* ':' would shift the ip= fields; whitespace would split the argument. */
	assert_int_equal(vmm_guest_args("172.30.0.2", "172.30.0.1", "255.255.255.0", "a:b", NULL,
					NULL, NULL, &args, &err),
			 -EINVAL);
	assert_int_equal(vmm_guest_args("172.30.0.2", "172.30.0.1", "255.255.255.0", "a b", NULL,
					NULL, NULL, &args, &err),
			 -EINVAL);
	assert_int_equal(vmm_guest_args("172.30.0.2", "172.30.0.1", "255.255.255.0", "a", "Bob",
					NULL, NULL, &args, &err),
			 -EINVAL);
	assert_int_equal(vmm_guest_args("172.30.0.2", "172.30.0.1", "255.255.255.0", "a",
					"a-very-long-user-name-over-32-chars", NULL, NULL, &args,
					&err),
			 -EINVAL);
	assert_int_equal(vmm_guest_args("172.30.0.2", "172.30.0.1", "255.255.255.0", "a", NULL,
					NULL, "quiet\ninit=/bin/sh", &args, &err),
			 -EINVAL);
	assert_null(args);
}

static char *repeat(char c, size_t n)
{
	char *s = xmalloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* Keys fill the budget exactly up to GUEST_ARGS_MAX and one base64 quantum more fails. */
static void test_guest_args_e2big_boundary(void **state)
{
	const char *ip = "172.30.0.5", *gw = "172.30.0.1", *mask = "255.255.255.0";
	_cleanup_free_ char *base = NULL;
	_cleanup_free_ char *fits = NULL;
	_cleanup_free_ char *keys = NULL;
	_cleanup_free_ char *keys_big = NULL;
	char *none = NULL;
	struct bg_err err = { 0 };
	size_t room, key_len;

	(void)state;
	assert_int_equal(vmm_guest_args(ip, gw, mask, "vm", NULL, NULL, NULL, &base, &err), 0);
	/* What is left for " banger.sshkeys=" + base64: 4 chars per 3 bytes of keys. */
	room = GUEST_ARGS_MAX - strlen(base) - strlen(" banger.sshkeys=");
	key_len = room / 4 * 3;
	keys = repeat('k', key_len);
	assert_int_equal(vmm_guest_args(ip, gw, mask, "vm", NULL, keys, NULL, &fits, &err), 0);
	assert_true(strlen(fits) <= GUEST_ARGS_MAX);
	assert_true(strlen(fits) > GUEST_ARGS_MAX - 4);

	keys_big = repeat('k', key_len + 1);
	assert_int_equal(vmm_guest_args(ip, gw, mask, "vm", NULL, keys_big, NULL, &none, &err),
			 -E2BIG);
	assert_null(none);
	assert_non_null(strstr(err.msg, "too long"));
	assert_non_null(strstr(err.msg, "2048"));
}

static void test_guest_args_e2big_keys_and_args(void **state)
{
	struct buf keys;
	_cleanup_free_ char *ok = NULL;
	_cleanup_free_ char *huge = NULL;
	char *none = NULL;
	struct bg_err err = { 0 };

	(void)state;
	/* Ten ed25519 keys (100 bytes each, as ssh-keygen writes them) fit... */
	buf_init(&keys);
	for (int i = 0; i < 10; i++)
		buf_addf(&keys,
			 "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8yXwC2mJx3n7l1vHq0ZbM4kTQ0aSxZb9Y"
			 "w3rT5uV%02d user%02d@example.org\n",
			 i, i);
	assert_int_equal(strlen(keys.data), 10 * 100);
	assert_int_equal(vmm_guest_args("172.30.0.5", "172.30.0.1", "255.255.255.0", "vm", NULL,
					keys.data, NULL, &ok, &err),
			 0);
	/* ...twelve do not. */
	for (int i = 10; i < 12; i++)
		buf_addf(&keys,
			 "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8yXwC2mJx3n7l1vHq0ZbM4kTQ0aSxZb9Y"
			 "w3rT5uV%02d user%02d@example.org\n",
			 i, i);
	assert_int_equal(vmm_guest_args("172.30.0.5", "172.30.0.1", "255.255.255.0", "vm", NULL,
					keys.data, NULL, &none, &err),
			 -E2BIG);
	buf_release(&keys);
	/* Kernel arguments alone can overflow too. */
	huge = repeat('a', 1600);
	assert_int_equal(vmm_guest_args("172.30.0.5", "172.30.0.1", "255.255.255.0", "vm", NULL,
					NULL, huge, &none, &err),
			 -E2BIG);
	/* Megabytes of keys are refused without encoding them. */
	{
		_cleanup_free_ char *mb = repeat('k', 4 << 20);

		assert_int_equal(vmm_guest_args("172.30.0.5", "172.30.0.1", "255.255.255.0", "vm",
						NULL, mb, NULL, &none, &err),
				 -E2BIG);
	}
	assert_null(none);
}

/* ---- console rotation ------------------------------------------------------- */

static char *slurp(const char *path)
{
	char *data = NULL;
	struct bg_err err = { 0 };

	if (fs_read_file(path, 1 << 20, &data, NULL, &err) < 0)
		return NULL;
	return data;
}

static void test_rotate_under_cap(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-vmm");
	_cleanup_free_ char *log = fs_path_join(dir, "console.log");
	_cleanup_free_ char *old = fs_path_join(dir, "console.log.1");
	_cleanup_free_ char *data = NULL;
	struct bg_err err = { 0 };

	(void)state;
	/* Missing: nothing to do. */
	assert_int_equal(vmm_console_rotate(log, 10, &err), 0);
	assert_false(fs_exists(old));
	test_write_file(log, "0123456789");
	assert_int_equal(vmm_console_rotate(log, 10, &err), 0);
	assert_false(fs_exists(old));
	data = slurp(log);
	assert_string_equal(data, "0123456789");
	test_rmtree(dir);
}

static void test_rotate_over_cap(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-vmm");
	_cleanup_free_ char *log = fs_path_join(dir, "console.log");
	_cleanup_free_ char *old = fs_path_join(dir, "console.log.1");
	_cleanup_free_ char *tmp = fs_path_join(dir, "console.log.1.tmp");
	_cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	test_write_file(old, "an older generation\n");
	test_write_file(log, "first generation, over the cap\n");
	assert_int_equal(vmm_console_rotate(log, 8, &err), 1);
	a = slurp(old);
	assert_string_equal(a, "first generation, over the cap\n");
	assert_int_equal(stat(log, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_false(fs_exists(tmp));

	/* Next rotation replaces .1. */
	test_write_file(log, "second generation, over too\n");
	assert_int_equal(vmm_console_rotate(log, 8, &err), 1);
	b = slurp(old);
	assert_string_equal(b, "second generation, over too\n");
	c = slurp(log);
	assert_string_equal(c, "");

	/* Not a regular file, or a symlink: refused, nothing touched. */
	assert_true(vmm_console_rotate(dir, 0, &err) < 0);
	d = fs_path_join(dir, "link.log");
	assert_int_equal(symlink(old, d), 0);
	assert_int_equal(vmm_console_rotate(d, 0, &err), -ELOOP);
	test_rmtree(dir);
}

/* The VMM's O_APPEND fd keeps writing after the truncation, at the new end. */
static void test_rotate_appending_writer(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-vmm");
	_cleanup_free_ char *log = fs_path_join(dir, "console.log");
	_cleanup_free_ char *old = fs_path_join(dir, "console.log.1");
	_cleanup_free_ char *before = NULL, *after = NULL;
	_cleanup_close_ int fd = -1;
	struct bg_err err = { 0 };
	char line[64];

	(void)state;
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	assert_true(fd >= 0);
	for (int i = 0; i < 100; i++) {
		int n = snprintf(line, sizeof(line), "boot line %03d\n", i);
		assert_int_equal(write(fd, line, (size_t)n), n);
	}
	assert_int_equal(vmm_console_rotate(log, 1000, &err), 1);
	assert_int_equal(write(fd, "after rotation\n", 15), 15);
	after = slurp(log);
	/* No hole of NULs where the old content was: the write went to offset 0. */
	assert_string_equal(after, "after rotation\n");
	before = slurp(old);
	assert_int_equal(strlen(before), 100 * 14);
	assert_memory_equal(before, "boot line 000\n", 14);
	assert_memory_equal(before + 99 * 14, "boot line 099\n", 14);
	test_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_guest_args_exact),
		cmocka_unit_test(test_guest_args_dns),
		cmocka_unit_test(test_guest_args_user_and_extra),
		cmocka_unit_test(test_guest_args_keys_roundtrip),
		cmocka_unit_test(test_guest_root_args),
		cmocka_unit_test(test_guest_args_invalid),
		cmocka_unit_test(test_guest_args_e2big_boundary),
		cmocka_unit_test(test_guest_args_e2big_keys_and_args),
		cmocka_unit_test(test_rotate_under_cap),
		cmocka_unit_test(test_rotate_over_cap),
		cmocka_unit_test(test_rotate_appending_writer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
