/*
 * test_host_cycle.c - 100 create/remove cycles of a full VM's host resources
 * through host_ops_linux, in this test's own network namespace: the bridge
 * once, then per cycle tap_ensure + rootdisk_ensure (the mode this host
 * detects: copy here) + workdisk_ensure, and workdisk_remove +
 * rootdisk_remove + tap_remove. Taps, loop devices, files and fds are
 * counted before and after: nothing may be left. Prints counts and timings.
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

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

#define MIB (1024ULL * 1024ULL)
#define CYCLES 100

static const char *skip_reason;

struct counts {
	int taps, loops, entries, fds;
};

static void count(struct counts *c, const char *state_dir)
{
	c->taps = hosttest_count_links("bg");
	c->loops = hosttest_count_loops(state_dir);
	c->entries = hosttest_count_entries(state_dir);
	c->fds = hosttest_count_fds();
}

static void test_cycles(void **state)
{
	static const uint64_t data[] = { 0, 16 * MIB, 40 * MIB, 63 * MIB };
	struct host_net net = { .cidr = "10.88.9.1/24" };
	struct bg_err err = { 0 };
	struct counts before, after;
	_cleanup_free_ char *state_dir = NULL, *image = NULL;
	char bridge[16], sfx[7];
	enum disk_mode mode;
	int64_t t_create = 0, t_remove = 0;

	(void)state;
	if (skip_reason)
		skip();
	test_unique_suffix(sfx, 6);
	snprintf(bridge, sizeof(bridge), "cyc%s", sfx);
	net.bridge = bridge;
	state_dir = test_tmpdir("banger-host-cycle");
	image = xasprintf("%s/base.img", state_dir);
	hosttest_make_image(image, 64 * MIB, data, 4, MIB);
	assert_int_equal(host_ops_linux.bridge_ensure(&net, &err), 0);
	assert_int_equal(host_ops_linux.disk_mode_detect(state_dir, &mode, &err), 0);
	count(&before, state_dir);

	for (int i = 0; i < CYCLES; i++) {
		char id[9], tap[16];
		_cleanup_free_ char *vm_dir = NULL, *cow = NULL, *work = NULL;
		struct host_vm vm = { 0 };
		struct host_disk disk;
		int64_t t;

		test_unique_suffix(id, 8);
		assert_int_equal(host_tap_name(id, tap), 0);
		vm_dir = xasprintf("%s/vms/%s", state_dir, id);
		cow = xasprintf("%s/root.img", vm_dir);
		work = xasprintf("%s/work.img", vm_dir);
		vm.id = id;
		vm.vm_dir = vm_dir;
		vm.rootfs_image = image;
		vm.rootfs_size_mib = 128;
		vm.cow_disk = cow;
		vm.work_disk = work;
		vm.work_disk_mib = 16;
		vm.owner_uid = 1000 + (uid_t)i;
		vm.owner_gid = 1000;

		t = now_mono_ms();
		assert_int_equal(fs_mkdir_p(vm_dir, 0700, &err), 0);
		if (host_ops_linux.tap_ensure(&net, tap, vm.owner_uid, vm.owner_gid, &err) < 0 ||
		    host_ops_linux.rootdisk_ensure(&vm, mode, &disk, &err) < 0 ||
		    host_ops_linux.workdisk_ensure(&vm, &err) < 0)
			fail_msg("cycle %d: %s", i, err.msg);
		t_create += now_mono_ms() - t;
		assert_int_equal(hosttest_count_links(tap), 1);
		assert_true(hosttest_exists(disk.path));
		assert_true(hosttest_exists(work));

		t = now_mono_ms();
		if (host_ops_linux.workdisk_remove(&vm, &err) < 0 ||
		    host_ops_linux.rootdisk_remove(&vm, &err) < 0 ||
		    host_ops_linux.tap_remove(tap, &err) < 0)
			fail_msg("cycle %d: %s", i, err.msg);
		assert_int_equal(rmdir(vm_dir), 0);
		t_remove += now_mono_ms() - t;
	}
	{
		_cleanup_free_ char *vms = xasprintf("%s/vms", state_dir);
		assert_int_equal(rmdir(vms), 0);
	}

	count(&after, state_dir);
	printf("cycles: %d in %s mode: create %.1f ms, remove %.1f ms per cycle (total %.1f s)\n",
	       CYCLES, disk_mode_to_string(mode), (double)t_create / CYCLES,
	       (double)t_remove / CYCLES, (double)(t_create + t_remove) / 1000.0);
	printf("before: taps %d, loops %d, files %d, fds %d\n", before.taps, before.loops,
	       before.entries, before.fds);
	printf("after:  taps %d, loops %d, files %d, fds %d\n", after.taps, after.loops,
	       after.entries, after.fds);
	assert_int_equal(after.taps, before.taps);
	assert_int_equal(after.taps, 0);
	assert_int_equal(after.loops, before.loops);
	assert_int_equal(after.loops, 0);
	assert_int_equal(after.entries, before.entries);
	assert_int_equal(after.entries, 1); /* base.img */
	assert_int_equal(after.fds, before.fds);

	assert_int_equal(host_link_delete(bridge, NULL, &err), 0);
	test_rmtree(state_dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cycles),
	};

	if (!hosttest_sandbox(&skip_reason))
		test_skip_reason("%s", skip_reason);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
