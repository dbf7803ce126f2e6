/*
 * test_host_gc.c - the pure parts of reconciler/host/gc.c: which leaked-looking
 * objects are this banger instance's. dm devices are tied to a state dir
 * through sysfs (a fake tree here: this host has no device-mapper), taps by
 * their bridge. Includes the .c to reach its static functions.
 */
#include <errno.h>
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

#include "reconciler/host/gc.c"
#include "tests/lib/testutil.h"

static void mkdirs(const char *dir, const char *rel)
{
	_cleanup_free_ char *path = fs_path_join(dir, rel);

	assert_int_equal(fs_mkdir_p(path, 0755, NULL), 0);
}

static void put(const char *dir, const char *rel, const char *text)
{
	_cleanup_free_ char *path = fs_path_join(dir, rel);
	_cleanup_free_ char *copy = xstrdup(path);

	*strrchr(copy, '/') = '\0';
	assert_int_equal(fs_mkdir_p(copy, 0755, NULL), 0);
	test_write_file(path, text);
}

/* A dm device dm-N named 'name' over the given slaves (loopN / dm-M), held by 'holder'. */
static void fake_dm(const char *sys, int n, const char *name, const char *slave1,
		    const char *slave2, const char *holder)
{
	char rel[128];
	_cleanup_free_ char *text = xasprintf("%s\n", name);

	snprintf(rel, sizeof(rel), "block/dm-%d/dm/name", n);
	put(sys, rel, text);
	snprintf(rel, sizeof(rel), "block/dm-%d/slaves", n);
	mkdirs(sys, rel);
	snprintf(rel, sizeof(rel), "block/dm-%d/holders", n);
	mkdirs(sys, rel);
	for (const char *sl = slave1; sl; sl = sl == slave1 ? slave2 : NULL) {
		snprintf(rel, sizeof(rel), "block/dm-%d/slaves/%s", n, sl);
		put(sys, rel, "");
	}
	if (holder) {
		snprintf(rel, sizeof(rel), "block/dm-%d/holders/%s", n, holder);
		put(sys, rel, "");
	}
}

static void fake_loop(const char *sys, int n, const char *backing)
{
	char rel[128];
	_cleanup_free_ char *text = xasprintf("%s\n", backing);

	snprintf(rel, sizeof(rel), "block/loop%d/loop/backing_file", n);
	put(sys, rel, text);
}

static void test_dm_ownership(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-gc");
	_cleanup_free_ char *sys = fs_path_join(dir, "sys");
	_cleanup_free_ char *prefix = xasprintf("%s/state/vms/", dir);
	_cleanup_free_ char *ours_cow = xasprintf("%saaaaaaaa/root.cow", prefix);
	_cleanup_free_ char *lone_dir = xasprintf("%s/state/vms/dddddddd", dir);
	struct scan s = { .vms_prefix = prefix };

	(void)state;
	gc_sysfs = sys;
	/* This instance's VM aaaaaaaa: snapshot dm-0 over its COW loop1 and dm-1 ("-base"). */
	fake_loop(sys, 0, "/var/lib/banger/images/base/rootfs.ext4");
	fake_loop(sys, 1, ours_cow);
	fake_dm(sys, 0, "banger-aaaaaaaa", "loop1", "dm-1", NULL);
	fake_dm(sys, 1, "banger-aaaaaaaa-base", "loop0", NULL, "dm-0");
	/* Another instance's VM bbbbbbbb, the same shape over its own state dir. */
	fake_loop(sys, 2, "/srv/other-banger/vms/bbbbbbbb/root.cow (deleted)");
	fake_loop(sys, 3, "/var/lib/banger/images/base/rootfs.ext4");
	fake_dm(sys, 2, "banger-bbbbbbbb", "loop2", "dm-3", NULL);
	fake_dm(sys, 3, "banger-bbbbbbbb-base", "loop3", NULL, "dm-2");
	/* A "-base" left alone (its snapshot gone): unknown, unless its VM dir is ours. */
	fake_loop(sys, 4, "/var/lib/banger/images/base/rootfs.ext4");
	fake_dm(sys, 4, "banger-cccccccc-base", "loop4", NULL, NULL);
	fake_dm(sys, 5, "banger-dddddddd-base", "loop4", NULL, NULL);
	mkdirs(dir, "state/vms/dddddddd");
	assert_true(fs_exists(lone_dir));

	{
		char k[64];

		assert_true(dm_kname("banger-bbbbbbbb-base", k));
		assert_string_equal(k, "dm-3");
		assert_false(dm_kname("banger-ffffffff", k));
	}
	assert_true(dm_is_ours(&s, "banger-aaaaaaaa", "aaaaaaaa"));
	assert_true(dm_is_ours(&s, "banger-aaaaaaaa-base", "aaaaaaaa"));
	assert_false(dm_is_ours(&s, "banger-bbbbbbbb", "bbbbbbbb"));
	assert_false(dm_is_ours(&s, "banger-bbbbbbbb-base", "bbbbbbbb"));
	assert_false(dm_is_ours(&s, "banger-cccccccc-base", "cccccccc"));
	assert_true(dm_is_ours(&s, "banger-dddddddd-base", "dddddddd"));
	/* Not in sysfs at all (gone since it was listed): not ours to remove. */
	assert_false(dm_is_ours(&s, "banger-eeeeeeee", "eeeeeeee"));

	/* What dm_cb records for gc. */
	s.known = NULL;
	assert_int_equal(dm_cb("banger-aaaaaaaa", "BANGER-aaaaaaaa", &s), 0);
	assert_int_equal(dm_cb("banger-bbbbbbbb", "BANGER-bbbbbbbb", &s), 0);
	assert_int_equal(dm_cb("vg0-root", "LVM-xyz", &s), 0);
	assert_int_equal(s.n, 2);
	assert_false(s.v[0].unowned);
	assert_true(host_orphan_is_ours(&s.v[0], NULL));
	assert_true(s.v[1].unowned);
	assert_false(host_orphan_is_ours(&s.v[1], "banger0"));
	{
		struct bg_err err = { 0 };

		/* gc_remove refuses it too, before touching device-mapper. */
		assert_int_equal(host_gc_remove(&s.v[1], &err), -EPERM);
		assert_non_null(strstr(err.msg, "another banger instance"));
	}
	free(s.v);
	gc_sysfs = "/sys";
	test_rmtree(dir);
}

static void test_tap_ownership(void **state)
{
	struct host_orphan o = { .kind = HOST_ORPHAN_TAP };

	(void)state;
	snprintf(o.name, sizeof(o.name), "bg01234567");
	/* On no bridge: a leftover of whoever made it, and harmless to remove. */
	assert_true(host_orphan_is_ours(&o, "banger0"));
	assert_true(host_orphan_is_ours(&o, NULL));
	snprintf(o.master, sizeof(o.master), "banger0");
	assert_true(host_orphan_is_ours(&o, "banger0"));
	assert_false(host_orphan_is_ours(&o, "banger1"));
	assert_false(host_orphan_is_ours(&o, NULL));
	o.kind = HOST_ORPHAN_LOOP;
	assert_true(host_orphan_is_ours(&o, NULL));
	o.kind = HOST_ORPHAN_VM_DIR;
	assert_true(host_orphan_is_ours(&o, NULL));
	o.kind = HOST_ORPHAN_KIND_MAX;
	assert_false(host_orphan_is_ours(&o, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dm_ownership),
		cmocka_unit_test(test_tap_ownership),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
