/*
 * test_host.c - the pure parts of reconciler/host/ (no root, no kernel
 * objects): names derived from VM ids, the dm-snapshot and padded-origin
 * tables, root disk sizes, the nftables ruleset, CIDR parsing, the EBUSY
 * backoff, enum names, ext superblocks, qcow2 headers and the image cache's
 * names and index lines.
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "tests/lib/testutil.h"

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
	assert_string_equal(host_orphan_kind_to_string(HOST_ORPHAN_IMAGE_CACHE), "image-cache");
	assert_string_equal(host_orphan_kind_to_string(HOST_ORPHAN_FILTER), "filter");
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

static void test_netrules_table(void **state)
{
	struct bg_err err = { 0 };
	char table[64];

	(void)state;
	assert_int_equal(host_netrules_table("banger0", table, &err), 0);
	assert_string_equal(table, "banger-banger0");
	assert_int_equal(host_netrules_table("br\";x", table, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid bridge name"));
	assert_int_equal(host_netrules_table("", table, &err), -EINVAL);
	assert_int_equal(host_netrules_table(NULL, table, &err), -EINVAL);
}

/* What a tap's filter lets through, as the commands that make it. */
static void test_antispoof_ruleset(void **state)
{
	struct bg_err err = { 0 };
	_cleanup_free_ char *rs = NULL;
	char *bad = NULL;
	char table[64];

	(void)state;
	assert_int_equal(host_antispoof_table("banger0", table, &err), 0);
	assert_string_equal(table, "banger-banger0");
	assert_int_equal(host_antispoof_ruleset("banger0", "bg0c1f9a2e", "02:bb:ac:1e:00:05",
						"172.30.0.5", &rs, &err),
			 0);
	assert_string_equal(
		rs,
		"add table bridge banger-banger0\n"
		"add map bridge banger-banger0 taps { type ifname : verdict; }\n"
		"add set bridge banger-banger0 ports { type ifname; }\n"
		"add chain bridge banger-banger0 prerouting { type filter hook prerouting "
		"priority -300; policy accept; }\n"
		"flush chain bridge banger-banger0 prerouting\n"
		"add rule bridge banger-banger0 prerouting iifname vmap @taps\n"
		"add rule bridge banger-banger0 prerouting iifname @ports drop\n"
		"add chain bridge banger-banger0 bg0c1f9a2e\n"
		"flush chain bridge banger-banger0 bg0c1f9a2e\n"
		"add rule bridge banger-banger0 bg0c1f9a2e ether saddr != 02:bb:ac:1e:00:05 drop\n"
		"add rule bridge banger-banger0 bg0c1f9a2e ether type arp arp htype 1 arp ptype "
		"ip arp hlen 6 arp plen 4 arp saddr ether 02:bb:ac:1e:00:05 arp saddr ip { "
		"172.30.0.5, 0.0.0.0 } accept\n"
		"add rule bridge banger-banger0 bg0c1f9a2e ether type ip ip saddr 172.30.0.5 "
		"accept\n"
		"add rule bridge banger-banger0 bg0c1f9a2e drop\n"
		"add element bridge banger-banger0 ports { \"bg0c1f9a2e\" }\n"
		"add element bridge banger-banger0 taps { \"bg0c1f9a2e\" : jump bg0c1f9a2e }\n");
	/* Nothing from outside reaches the ruleset unchecked. */
	assert_int_equal(host_antispoof_ruleset("br\";x", "bg0c1f9a2e", "02:bb:ac:1e:00:05",
						"172.30.0.5", &bad, &err),
			 -EINVAL);
	assert_int_equal(host_antispoof_ruleset("banger0", "eth0", "02:bb:ac:1e:00:05",
						"172.30.0.5", &bad, &err),
			 -EINVAL);
	assert_int_equal(host_antispoof_ruleset("banger0", "bg0c1f9a2e", "02:bb:ac:1e:00:05 }",
						"172.30.0.5", &bad, &err),
			 -EINVAL);
	assert_int_equal(host_antispoof_ruleset("banger0", "bg0c1f9a2e", "02:bb:ac:1e:00:05",
						"0.0.0.0", &bad, &err),
			 -EINVAL);
	assert_int_equal(host_antispoof_ruleset("banger0", "bg0c1f9a2e", "02:bb:ac:1e:00:05",
						"172.30.0.5; flush ruleset", &bad, &err),
			 -EINVAL);
	assert_null(bad);
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

/* ---- ext superblocks ------------------------------------------------------------ */

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* A superblock with the fields host_ext_fs_bytes() reads. */
static void make_sb(uint8_t sb[HOST_EXT_SB_SIZE], uint32_t blocks_lo, uint32_t blocks_hi,
		    uint32_t log_block, bool is64)
{
	memset(sb, 0, HOST_EXT_SB_SIZE);
	put_le32(sb + 4, blocks_lo);
	put_le32(sb + 24, log_block);
	sb[56] = 0x53;
	sb[57] = 0xef;
	put_le32(sb + 96, is64 ? 0x80 | 0x40 : 0x40);
	put_le32(sb + 336, blocks_hi);
}

static void test_ext_superblock(void **state)
{
	uint8_t sb[HOST_EXT_SB_SIZE];
	uint64_t bytes = 0;

	(void)state;
	/* 16 MiB in 4 KiB blocks. */
	make_sb(sb, 4096, 0, 2, false);
	assert_int_equal(host_ext_fs_bytes(sb, &bytes), 0);
	assert_int_equal(bytes, 16ULL << 20);
	/* 1 KiB blocks (log 0). */
	make_sb(sb, 16384, 0, 0, false);
	assert_int_equal(host_ext_fs_bytes(sb, &bytes), 0);
	assert_int_equal(bytes, 16ULL << 20);
	/* The high half counts only with the 64bit feature. */
	make_sb(sb, 0, 1, 2, true);
	assert_int_equal(host_ext_fs_bytes(sb, &bytes), 0);
	assert_int_equal(bytes, (1ULL << 32) * 4096);
	make_sb(sb, 10, 1, 2, false);
	assert_int_equal(host_ext_fs_bytes(sb, &bytes), 0);
	assert_int_equal(bytes, 10 * 4096);
	/* Not ext, or implausible. */
	make_sb(sb, 4096, 0, 2, false);
	sb[56] = 0;
	assert_int_equal(host_ext_fs_bytes(sb, &bytes), -EINVAL);
	make_sb(sb, 4096, 0, 7, false);
	assert_int_equal(host_ext_fs_bytes(sb, &bytes), -EINVAL);
	make_sb(sb, 0, 0, 2, false);
	assert_int_equal(host_ext_fs_bytes(sb, &bytes), -EINVAL);
	make_sb(sb, 0, 0xffffffff, 6, true);
	assert_int_equal(host_ext_fs_bytes(sb, &bytes), -EINVAL);
}

/* host_ext_grow() on files that hold no ext filesystem: 0, no program run. */
static void test_ext_grow_nothing(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-ext");
	_cleanup_free_ char *small = xasprintf("%s/small", dir);
	_cleanup_free_ char *zeros = xasprintf("%s/zeros", dir);
	struct bg_err err = { 0 };

	(void)state;
	test_write_file(small, "short");
	assert_int_equal(host_ext_grow(small, &err), 0);
	test_write_file(zeros, "");
	assert_int_equal(truncate(zeros, 1 << 20), 0);
	assert_int_equal(host_ext_grow(zeros, &err), 0);
	assert_int_equal(host_ext_grow("rel", &err), -EINVAL);
	assert_int_equal(host_ext_grow(dir, &err), -EINVAL);
	test_rmtree(dir);
}

/* ---- qcow2 headers and the image cache -------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static void test_qcow2_header(void **state)
{
	uint8_t h[HOST_QCOW2_HEADER_MAX] = { 'Q', 'F', 'I', 0xfb };
	struct host_qcow2_header q;
	struct bg_err err = { 0 };

	(void)state;
	put_be32(h + 4, 3);
	put_be64(h + 24, 2ULL << 30);
	put_be64(h + 72, HOST_QCOW2_INCOMPAT_DATA_FILE);
	assert_true(host_is_qcow2(h, sizeof(h)));
	assert_int_equal(host_qcow2_parse(h, 104, &q, &err), 0);
	assert_int_equal(q.version, 3);
	assert_int_equal(q.size, 2ULL << 30);
	assert_int_equal(q.backing_offset, 0);
	assert_int_equal(q.incompatible, HOST_QCOW2_INCOMPAT_DATA_FILE);
	/* A backing file. */
	put_be64(h + 8, 0x200);
	put_be32(h + 16, 12);
	assert_int_equal(host_qcow2_parse(h, 104, &q, &err), 0);
	assert_int_equal(q.backing_offset, 0x200);
	assert_int_equal(q.backing_size, 12);
	/* Version 2: no feature fields; its bytes 72.. are not read. */
	put_be32(h + 4, 2);
	assert_int_equal(host_qcow2_parse(h, 72, &q, &err), 0);
	assert_int_equal(q.incompatible, 0);
	/* Truncated, other versions, not qcow2. */
	assert_int_equal(host_qcow2_parse(h, 71, &q, &err), -EINVAL);
	put_be32(h + 4, 3);
	assert_int_equal(host_qcow2_parse(h, 72, &q, &err), -EINVAL);
	put_be32(h + 4, 4);
	assert_int_equal(host_qcow2_parse(h, 104, &q, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "version 4"));
	h[3] = 0xfa;
	assert_false(host_is_qcow2(h, sizeof(h)));
	assert_int_equal(host_qcow2_parse(h, 104, &q, &err), -EINVAL);
	assert_false(host_is_qcow2("QFI", 3));
	assert_false(host_is_qcow2(NULL, 0));
}

static void test_cache_names(void **state)
{
	static const char sha[] =
		"18906746d2ba475f5e329dc44f41da01d711d68f2f9ea39db9e911e0e3a8a561";
	_cleanup_free_ char *p = host_baseimg_cache_path("/var/lib/banger", sha);
	_cleanup_free_ char *raw = xasprintf("%s.raw", sha);
	_cleanup_free_ char *src = xasprintf("%s.src", sha);

	(void)state;
	assert_string_equal(p, "/var/lib/banger/images/18906746d2ba475f5e329dc44f41da01d711d68f2f9"
			       "ea39db9e911e0e3a8a561.raw");
	assert_true(host_baseimg_is_sha_name(raw, ".raw"));
	assert_true(host_baseimg_is_sha_name(src, ".src"));
	assert_false(host_baseimg_is_sha_name(raw, ".src"));
	assert_false(host_baseimg_is_sha_name(sha, ".raw"));
	assert_false(host_baseimg_is_sha_name(".tmp-0123.raw", ".raw"));
	raw[0] = 'A';
	assert_false(host_baseimg_is_sha_name(raw, ".raw"));
	assert_null(host_baseimg_cache_path("/s", "../../etc/passwd"));
	assert_null(host_baseimg_cache_path("/s", "abc"));
	assert_null(host_baseimg_cache_path("/s", NULL));
}

static void test_cache_key_lines(void **state)
{
	struct host_baseimg_key k = { 0 }, back = { 0 };
	_cleanup_free_ char *line = NULL, *odd = NULL;
	struct stat st;

	(void)state;
	assert_int_equal(stat("/", &st), 0);
	host_baseimg_key_of(&st, &k);
	assert_int_equal(k.ino, st.st_ino);
	assert_int_equal(k.mtime_ns, st.st_mtim.tv_nsec);
	assert_int_equal(k.ctime_s, st.st_ctim.tv_sec);
	line = host_baseimg_key_line(&k, "/images/debian 12.qcow2");
	assert_int_equal(line[strlen(line) - 1], '\n');
	assert_true(host_baseimg_key_parse(line, &back));
	assert_true(host_baseimg_key_equal(&k, &back));
	/* Each field counts. */
	back.ctime_ns++;
	assert_false(host_baseimg_key_equal(&k, &back));
	back = k;
	back.size++;
	assert_false(host_baseimg_key_equal(&k, &back));
	/* A newline in the path cannot make a second line. */
	odd = host_baseimg_key_line(&k, "/a\nv1 1 2 3 4 5 6 7 /b");
	assert_ptr_equal(strchr(odd, '\n'), odd + strlen(odd) - 1);
	/* Not lines of ours. */
	assert_false(host_baseimg_key_parse("v2 1 2 3 4 5 6 7 /x", &back));
	assert_false(host_baseimg_key_parse("v1 1 2 3 4 5 6 /x", &back));
	assert_false(host_baseimg_key_parse("v1 1 2 3 4 5 6 7x", &back));
	assert_false(host_baseimg_key_parse("", &back));
	assert_false(host_baseimg_key_parse(NULL, &back));
	assert_true(host_baseimg_key_parse("v1 1 2 3 4 5 6 7", &back));
	assert_int_equal(back.ctime_ns, 7);
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
		cmocka_unit_test(test_netrules_table),
		cmocka_unit_test(test_antispoof_ruleset),
		cmocka_unit_test(test_bridge_mac),
		cmocka_unit_test(test_retry_backoff),
		cmocka_unit_test(test_ext_superblock),
		cmocka_unit_test(test_ext_grow_nothing),
		cmocka_unit_test(test_qcow2_header),
		cmocka_unit_test(test_cache_names),
		cmocka_unit_test(test_cache_key_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
