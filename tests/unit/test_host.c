/*
 * test_host.c - the pure parts of reconciler/host/ (no root, no kernel
 * objects): names derived from VM ids, the dm-snapshot and padded-origin
 * tables, root disk sizes, the nftables ruleset, CIDR parsing, the EBUSY
 * backoff, enum names.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/timeutil.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"

static void test_disk_mode_strings(void **state)
{
	(void)state;
	assert_string_equal(disk_mode_to_string(DISK_MODE_DM_SNAPSHOT), "dm-snapshot");
	assert_string_equal(disk_mode_to_string(DISK_MODE_REFLINK), "reflink");
	assert_string_equal(disk_mode_to_string(DISK_MODE_COPY), "copy");
	assert_null(disk_mode_to_string(DISK_MODE_MAX));
	assert_null(disk_mode_to_string((enum disk_mode) - 1));
	for (int m = 0; m < DISK_MODE_MAX; m++)
		assert_int_equal(disk_mode_from_string(disk_mode_to_string(m)), m);
	assert_int_equal(disk_mode_from_string("dm"), -EINVAL);
	assert_int_equal(disk_mode_from_string(""), -EINVAL);
	assert_int_equal(disk_mode_from_string(NULL), -EINVAL);
}

static void test_orphan_kind_strings(void **state)
{
	(void)state;
	assert_string_equal(host_orphan_kind_to_string(HOST_ORPHAN_TAP), "tap");
	assert_string_equal(host_orphan_kind_to_string(HOST_ORPHAN_DM), "dm");
	assert_string_equal(host_orphan_kind_to_string(HOST_ORPHAN_LOOP), "loop");
	assert_string_equal(host_orphan_kind_to_string(HOST_ORPHAN_VM_DIR), "vm-dir");
	assert_null(host_orphan_kind_to_string(HOST_ORPHAN_KIND_MAX));
}

static void test_ids_and_tap_names(void **state)
{
	static const char *const bad_ids[] = { "",	   "0123456",  "012345678", "0123456G",
					       "0123456A", "../../..", "01234 67",  "0123456-" };
	char tap[16];
	const char *id;

	(void)state;
	assert_true(host_valid_id("0123abcd"));
	assert_false(host_valid_id(NULL));
	for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
		assert_false(host_valid_id(bad_ids[i]));
		assert_int_equal(host_tap_name(bad_ids[i], tap), -EINVAL);
	}
	assert_int_equal(host_tap_name("0123abcd", tap), 0);
	assert_string_equal(tap, "bg0123abcd");
	assert_true(strlen(tap) < 16);
	assert_true(host_parse_tap_name("bg0123abcd", &id));
	assert_string_equal(id, "0123abcd");
	assert_false(host_parse_tap_name("bg0123abc", NULL));
	assert_false(host_parse_tap_name("bg0123abcde", NULL));
	assert_false(host_parse_tap_name("xx0123abcd", NULL));
	assert_false(host_parse_tap_name("bg0123ABCD", NULL));
	assert_false(host_parse_tap_name("eth0", NULL));
	assert_false(host_parse_tap_name(NULL, NULL));
}

static void test_ifnames(void **state)
{
	static const char *const good[] = { "banger0", "br-test", "a", "x_y.z", "abcdefghijklmno" };
	static const char *const bad[] = { "",
					   "-br",
					   ".br",
					   "..",
					   "a/b",
					   "a b",
					   "a;b",
					   "a$b",
					   "a\"b",
					   "a%d",
					   "abcdefghijklmnop",
					   "a\nb" };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		assert_true(host_valid_ifname(good[i]));
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_false(host_valid_ifname(bad[i]));
	assert_false(host_valid_ifname(NULL));
}

static void test_dm_names(void **state)
{
	char name[64], uuid[64], base[64], base_uuid[64], id[HOST_ID_LEN + 1];

	(void)state;
	assert_int_equal(host_dm_names("deadbeef", name, uuid, base, base_uuid), 0);
	assert_string_equal(name, "banger-deadbeef");
	assert_string_equal(uuid, "BANGER-deadbeef");
	assert_string_equal(base, "banger-deadbeef-base");
	assert_string_equal(base_uuid, "BANGER-deadbeef-base");
	assert_int_equal(host_dm_names("web-1", name, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(host_dm_names("DEADBEEF", name, NULL, NULL, NULL), -EINVAL);

	assert_true(host_dm_parse_id("banger-deadbeef", "", id));
	assert_string_equal(id, "deadbeef");
	assert_true(host_dm_parse_id("banger-0badf00d-base", NULL, id));
	assert_string_equal(id, "0badf00d");
	/* A renamed device is still found by its UUID. */
	assert_true(host_dm_parse_id("renamed", "BANGER-12345678", id));
	assert_string_equal(id, "12345678");
	assert_true(host_dm_parse_id("renamed", "BANGER-12345678-base", id));
	assert_false(host_dm_parse_id("banger-deadbee", "", id));
	assert_false(host_dm_parse_id("banger-deadbeef-x", "", id));
	assert_false(host_dm_parse_id("vg0-root", "LVM-abc", id));
	assert_false(host_dm_parse_id("banger-web", "CRYPT-LUKS2-x", id));
	assert_false(host_dm_parse_id(NULL, NULL, id));
}

static void test_snapshot_table(void **state)
{
	struct bg_err err = { 0 };
	char t[128];

	(void)state;
	assert_int_equal(
		host_dm_snapshot_table(2097152, "/dev/loop3", "/dev/loop4", t, sizeof(t), &err), 0);
	assert_string_equal(t, "0 2097152 snapshot /dev/loop3 /dev/loop4 P 8");
	assert_int_equal(
		host_dm_snapshot_table(4194304, "253:7", "/dev/loop12", t, sizeof(t), &err), 0);
	assert_string_equal(t, "0 4194304 snapshot 253:7 /dev/loop12 P 8");
	assert_int_equal(host_dm_snapshot_table(0, "/dev/loop3", "/dev/loop4", t, sizeof(t), &err),
			 -EINVAL);
	assert_int_equal(
		host_dm_snapshot_table(8, "/dev/loop3 x", "/dev/loop4", t, sizeof(t), &err),
		-EINVAL);
	assert_int_equal(host_dm_snapshot_table(8, "", "/dev/loop4", t, sizeof(t), &err), -EINVAL);
	assert_int_equal(host_dm_snapshot_table(8, "/dev/loop3", "/dev/loop4", t, 10, &err),
			 -ENAMETOOLONG);
}

static void test_base_table(void **state)
{
	struct bg_err err = { 0 };
	char linear[256], zero[256];

	(void)state;
	assert_int_equal(host_dm_base_table(131072, 2097152, "/dev/loop3", linear, zero, &err), 0);
	assert_string_equal(linear, "0 131072 linear /dev/loop3 0");
	assert_string_equal(zero, "131072 1966080 zero");
	/* Not larger than the image: no padding to build. */
	assert_int_equal(host_dm_base_table(131072, 131072, "/dev/loop3", linear, zero, &err),
			 -EINVAL);
}

static void test_rootdisk_size(void **state)
{
	struct bg_err err = { 0 };
	uint64_t size = 0;

	(void)state;
	assert_int_equal(host_rootdisk_size(64ULL << 20, 0, "/img", &size, &err), 0);
	assert_int_equal(size, 64ULL << 20);
	assert_int_equal(host_rootdisk_size(64ULL << 20, 64, "/img", &size, &err), 0);
	assert_int_equal(size, 64ULL << 20);
	assert_int_equal(host_rootdisk_size(64ULL << 20, 1024, "/img", &size, &err), 0);
	assert_int_equal(size, 1024ULL << 20);
	size = 7;
	assert_int_equal(host_rootdisk_size(64ULL << 20, 32, "/srv/img.ext4", &size, &err),
			 -EINVAL);
	assert_int_equal(size, 7); /* untouched on failure */
	assert_non_null(strstr(err.msg, "32 MiB"));
	assert_non_null(strstr(err.msg, "'/srv/img.ext4'"));
	assert_non_null(strstr(err.msg, "67108864 bytes"));
	assert_non_null(strstr(err.msg, "64.0 MiB"));
	/* A size that would overflow in bytes. */
	assert_int_equal(host_rootdisk_size(1, UINT64_MAX / 2, "/img", &size, &err), -EINVAL);
}

static void test_cow_store_size(void **state)
{
	uint64_t disk = 1ULL << 30;
	uint64_t cow = host_cow_store_size(disk);

	(void)state;
	/* Room for every 4 KiB chunk plus its metadata: a little over the disk. */
	assert_true(cow > disk);
	assert_true(cow < disk + disk / 64);
	assert_int_equal(cow % 4096, 0);
	assert_true(host_cow_store_size(4096) >= 3 * 4096);
}

static void test_cidr(void **state)
{
	static const char *const bad[] = { "172.30.0.1",      "172.30.0.1/",   "172.30.0.1/0",
					   "172.30.0.1/31",   "172.30.0.1/33", "172.30.0.0/24",
					   "172.30.0.255/24", "300.1.1.1/24",  "a.b.c.d/24",
					   "172.30.0.1/2x",   "/24",	       "172.30.0.1/-1" };
	struct bg_err err = { 0 };
	uint32_t addr, net;
	unsigned int prefix;

	(void)state;
	assert_int_equal(host_parse_cidr("172.30.0.1/24", &addr, &net, &prefix, &err), 0);
	assert_int_equal(addr, htonl(0xac1e0001));
	assert_int_equal(net, htonl(0xac1e0000));
	assert_int_equal(prefix, 24);
	assert_int_equal(host_parse_cidr("10.1.2.3/16", &addr, &net, &prefix, &err), 0);
	assert_int_equal(net, htonl(0x0a010000));
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(host_parse_cidr(bad[i], &addr, &net, &prefix, &err), -EINVAL);
	assert_int_equal(host_parse_cidr(NULL, &addr, &net, &prefix, &err), -EINVAL);
}

static void test_bridge_mac(void **state)
{
	uint8_t a[6], b[6], c[6];

	(void)state;
	host_bridge_mac("banger0", a);
	host_bridge_mac("banger0", b);
	host_bridge_mac("banger1", c);
	assert_memory_equal(a, b, 6);
	assert_memory_not_equal(a, c, 6);
	assert_int_equal(a[0] & 1, 0); /* unicast */
	assert_int_equal(a[0] & 2, 2); /* locally administered */
}

static void test_nat_ruleset(void **state)
{
	struct host_net net = { .bridge = "banger0", .cidr = "172.30.0.1/24", .nat = true };
	struct host_net bad = { .bridge = "br\";x", .cidr = "172.30.0.1/24", .nat = true };
	struct bg_err err = { 0 };
	_cleanup_free_ char *rs = NULL;
	char table[64];

	(void)state;
	assert_int_equal(host_nat_table_name("banger0", table, &err), 0);
	assert_string_equal(table, "banger-banger0");
	assert_int_equal(host_nat_ruleset(&net, &rs, &err), 0);
	assert_string_equal(rs, "table ip banger-banger0\n"
				"delete table ip banger-banger0\n"
				"table ip banger-banger0 {\n"
				"\tchain postrouting {\n"
				"\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
				"\t\tip saddr 172.30.0.0/24 oifname != \"banger0\" masquerade\n"
				"\t}\n"
				"}\n");
	assert_int_equal(host_nat_ruleset(&bad, &rs, &err), -EINVAL);
	assert_int_equal(host_nat_table_name("", table, &err), -EINVAL);
}

static void test_retry_backoff(void **state)
{
	struct host_retry r = { .tries = 4, .first_ms = 5, .max_ms = 10 };
	int64_t start = now_mono_ms(), took;
	int waits = 0;

	(void)state;
	while (host_retry_wait(&r, waits))
		waits++;
	took = now_mono_ms() - start;
	/* 4 tries: 3 waits of 5, 10, 10 ms. */
	assert_int_equal(waits, 3);
	assert_true(took >= 25);
	assert_false(host_retry_wait(&(struct host_retry){ .tries = 1 }, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_disk_mode_strings),
		cmocka_unit_test(test_orphan_kind_strings),
		cmocka_unit_test(test_ids_and_tap_names),
		cmocka_unit_test(test_ifnames),
		cmocka_unit_test(test_dm_names),
		cmocka_unit_test(test_snapshot_table),
		cmocka_unit_test(test_base_table),
		cmocka_unit_test(test_rootdisk_size),
		cmocka_unit_test(test_cow_store_size),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_bridge_mac),
		cmocka_unit_test(test_nat_ruleset),
		cmocka_unit_test(test_retry_backoff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
