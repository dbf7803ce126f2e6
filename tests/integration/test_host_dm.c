/*
 * test_host_dm.c - dm-snapshot root disks for real: a read-only base loop, a
 * COW loop and a persistent 'snapshot' target (plus a 'zero'-padded origin
 * when the disk is larger than the image), idempotence, data surviving
 * deactivate/ensure, half-made devices, and gc of dm orphans. Runs only where
 * /dev/mapper/control works; elsewhere each test says why and skips.
 * tests/integration/dm-in-guest.sh runs this binary in a QEMU guest whose
 * kernel has device-mapper.
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

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "common/proc.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

#define MIB (1024ULL * 1024ULL)

static const char *skip_reason;

struct fixture {
	char *dir;
	char *image;
	char *vm_dir;
	char id[9];
	char name[64], base_name[64];
	char *cow;
	struct host_vm vm;
};

static const uint64_t image_data[] = { 0, 20 * MIB, 63 * MIB };

static bool dm_skip(void)
{
	if (skip_reason)
		return true;
	if (!host_dm_available()) {
		test_skip_reason("device-mapper not available: /dev/mapper/control %s",
				 hosttest_exists("/dev/mapper/control") ? "does not answer"
									: "missing");
		return true;
	}
	return false;
}

static int setup(void **state)
{
	struct fixture *f;

	*state = NULL;
	if (skip_reason)
		return 0;
	f = xcalloc(1, sizeof(*f));
	f->dir = test_tmpdir("banger-host-dm");
	f->image = xasprintf("%s/base.img", f->dir);
	hosttest_make_image(f->image, 64 * MIB, image_data, 3, MIB);
	test_unique_suffix(f->id, 8);
	assert_int_equal(host_dm_names(f->id, f->name, NULL, f->base_name, NULL), 0);
	f->vm_dir = xasprintf("%s/vms/%s", f->dir, f->id);
	assert_int_equal(fs_mkdir_p(f->vm_dir, 0700, NULL), 0);
	f->cow = xasprintf("%s/root.cow", f->vm_dir);
	f->vm.id = f->id;
	f->vm.vm_dir = f->vm_dir;
	f->vm.rootfs_image = f->image;
	f->vm.cow_disk = f->cow;
	*state = f;
	return 0;
}

/* Only where dm works: dmsetup would otherwise make a /dev/mapper/control node. */
static bool dm_exists(const char *name)
{
	return host_dm_available() && hosttest_sh("dmsetup info %s >/dev/null 2>&1", name) == 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int loops, entries;
	bool dm_left;

	if (!f)
		return 0;
	dm_left = dm_exists(f->name) || dm_exists(f->base_name);
	if (dm_left)
		(void)hosttest_sh("dmsetup remove %s; dmsetup remove %s", f->name, f->base_name);
	loops = hosttest_count_loops(f->dir);
	entries = hosttest_count_entries(f->dir);
	test_rmtree(f->dir);
	free(f->dir);
	free(f->image);
	free(f->vm_dir);
	free(f->cow);
	free(f);
	assert_false(dm_left);
	assert_int_equal(loops, 0);
	assert_int_equal(entries, 3); /* base.img, vms, vms/<id> */
	return 0;
}

static uint64_t dev_size(const char *dev)
{
	_cleanup_free_ char *out = hosttest_sh_output("blockdev --getsize64 %s", dev);

	assert_non_null(out);
	return strtoull(out, NULL, 10);
}

static void test_dm_detect(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	enum disk_mode m = DISK_MODE_MAX;

	if (dm_skip())
		skip();
	assert_int_equal(host_ops_linux.disk_mode_detect(f->dir, &m, &err), 0);
	assert_int_equal(m, DISK_MODE_DM_SNAPSHOT);
}

static void check_disk(struct fixture *f, const struct host_disk *d, uint64_t size)
{
	char backing[4096];

	assert_int_equal(d->mode, DISK_MODE_DM_SNAPSHOT);
	assert_string_equal(d->dm_name, f->name);
	assert_int_equal(strncmp(d->path, "/dev/mapper/", 12), 0);
	assert_true(hosttest_exists(d->path));
	assert_int_equal(dev_size(d->path), size);
	assert_int_equal(host_loop_backing(d->base_loop, backing, sizeof(backing)), 0);
	assert_string_equal(backing, f->image);
	assert_int_equal(host_loop_backing(d->cow_loop, backing, sizeof(backing)), 0);
	assert_string_equal(backing, f->cow);
	assert_int_equal(hosttest_sh("test \"$(cat /sys/block/%s/ro)\" = 1", d->base_loop + 5), 0);
	assert_int_equal(hosttest_sh("dmsetup info -c -o uuid --noheadings %s | grep -qx BANGER-%s",
				     f->name, f->id),
			 0);
	assert_int_equal(hosttest_sh("dmsetup table %s | grep -q ' snapshot .* P 8$'", f->name), 0);
	assert_true(hosttest_files_equal(d->path, f->image, 64 * MIB));
}

static void test_dm_rootdisk_padded(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_disk d, d2;
	struct stat st;

	if (dm_skip())
		skip();
	f->vm.rootfs_size_mib = 128;
	if (host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err) < 0)
		fail_msg("%s", err.msg);
	check_disk(f, &d, 128 * MIB);
	/* Larger than the image: the origin is the image padded with zeros. */
	assert_true(dm_exists(f->base_name));
	assert_int_equal(hosttest_sh("dmsetup table %s | grep -q ' zero'", f->base_name), 0);
	assert_int_equal(hosttest_sh("cmp -s -n %llu %s /dev/zero %llu 0",
				     (unsigned long long)(64 * MIB), d.path,
				     (unsigned long long)(64 * MIB)),
			 0);
	/* The COW file is sparse: nothing written yet. */
	assert_int_equal(stat(f->cow, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < MIB);

	/* Twice: the same device. */
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d2, &err),
			 0);
	assert_string_equal(d.path, d2.path);
	assert_string_equal(d.cow_loop, d2.cow_loop);
	assert_string_equal(d.base_loop, d2.base_loop);

	/* Writes land in the COW, survive deactivate + ensure, and never reach the image. */
	assert_int_equal(hosttest_sh("echo marker | dd of=%s bs=1M seek=5 conv=notrunc,fsync "
				     "2>/dev/null",
				     d.path),
			 0);
	assert_int_equal(hosttest_sh("echo tail | dd of=%s bs=1M seek=100 conv=notrunc,fsync "
				     "2>/dev/null",
				     d.path),
			 0);
	assert_int_equal(host_ops_linux.rootdisk_deactivate(&f->vm, &err), 0);
	assert_false(dm_exists(f->name));
	assert_false(dm_exists(f->base_name));
	assert_int_equal(hosttest_count_loops(f->dir), 0);
	assert_true(hosttest_exists(f->cow));
	assert_int_equal(host_ops_linux.rootdisk_deactivate(&f->vm, &err), 0);
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err),
			 0);
	assert_int_equal(hosttest_sh("dd if=%s bs=1M skip=5 count=1 2>/dev/null | head -c 6 | "
				     "grep -q marker",
				     d.path),
			 0);
	assert_int_equal(hosttest_sh("dd if=%s bs=1M skip=100 count=1 2>/dev/null | head -c 4 | "
				     "grep -q tail",
				     d.path),
			 0);
	assert_int_equal(hosttest_sh("dd if=%s bs=1M skip=5 count=1 2>/dev/null | head -c 6 | "
				     "grep -q marker",
				     f->image),
			 1);

	/* The COW store is never taken for a whole disk, nor the other way round. */
	{
		struct host_disk c;
		assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &c, &err),
				 -EINVAL);
	}

	/* Remove twice. */
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
	assert_false(hosttest_exists(f->cow));
	assert_false(dm_exists(f->name));
	assert_false(dm_exists(f->base_name));
}

static void test_dm_rootdisk_same_size(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_disk d;

	if (dm_skip())
		skip();
	f->vm.rootfs_size_mib = 0;
	if (host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err) < 0)
		fail_msg("%s", err.msg);
	check_disk(f, &d, 64 * MIB);
	/* Same size as the image: no padded origin. */
	assert_false(dm_exists(f->base_name));
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
	assert_false(dm_exists(f->name));

	/* A whole-disk file where the COW store should be: refused, not overwritten. */
	hosttest_make_image(f->cow, 4 * MIB, image_data, 1, 4096);
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "copy or reflink mode"));
	assert_false(dm_exists(f->name));
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
}

static void test_dm_half_done(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_disk d;

	if (dm_skip())
		skip();
	/* A crash between dm create and table load leaves a device without a table. */
	assert_int_equal(hosttest_sh("dmsetup create %s --notable", f->name), 0);
	assert_int_equal(hosttest_sh("dmsetup create %s --notable", f->base_name), 0);
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err),
			 0);
	check_disk(f, &d, 64 * MIB);
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);

	/* ...and remove alone cleans such leftovers too. */
	assert_int_equal(hosttest_sh("dmsetup create %s --notable", f->name), 0);
	test_write_file(f->cow, "");
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
	assert_false(dm_exists(f->name));
	assert_false(hosttest_exists(f->cow));

	/* Busy: someone holds the device open; remove retries, then says so. */
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err),
			 0);
	{
		int fd = open(d.path, O_RDONLY | O_CLOEXEC);
		struct host_retry quick = { .tries = 2, .first_ms = 10, .max_ms = 10 };

		assert_true(fd >= 0);
		assert_int_equal(host_dm_remove(f->name, &quick, &err), -EBUSY);
		close(fd);
	}
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
	assert_false(dm_exists(f->name));
}

static void test_dm_gc(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_orphan *o = NULL;
	struct host_disk d;
	size_t n = 0;
	int top = -1, base = -1, first_loop = -1, dir = -1;

	if (dm_skip())
		skip();
	f->vm.rootfs_size_mib = 96;
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err),
			 0);
	/* The VM is forgotten: its dm devices, the COW loop under vms/<id>/ and its dir are orphans. */
	assert_int_equal(host_ops_linux.gc_scan(f->dir, NULL, 0, &o, &n, &err), 0);
	for (size_t i = 0; i < n; i++) {
		printf("orphan: %s %s %s\n", host_orphan_kind_to_string(o[i].kind), o[i].name,
		       o[i].detail);
		if (o[i].kind == HOST_ORPHAN_DM && strcmp(o[i].name, f->name) == 0)
			top = (int)i;
		if (o[i].kind == HOST_ORPHAN_DM && strcmp(o[i].name, f->base_name) == 0)
			base = (int)i;
		if (o[i].kind == HOST_ORPHAN_LOOP && first_loop < 0)
			first_loop = (int)i;
		if (o[i].kind == HOST_ORPHAN_VM_DIR)
			dir = (int)i;
	}
	assert_true(top >= 0 && base >= 0 && first_loop >= 0 && dir >= 0);
	assert_true(top < base && base < first_loop && first_loop < dir);
	for (size_t i = 0; i < n; i++)
		if (host_ops_linux.gc_remove(&o[i], &err) < 0)
			fail_msg("%s", err.msg);
	free(o);
	assert_false(dm_exists(f->name));
	assert_false(dm_exists(f->base_name));
	assert_true(hosttest_count_loops(f->dir) == 0);
	assert_false(hosttest_exists(f->vm_dir));
	assert_int_equal(fs_mkdir_p(f->vm_dir, 0700, NULL), 0); /* for teardown's count */
}

static int dm_count(void)
{
	_cleanup_free_ char *out = hosttest_sh_output("dmsetup ls | grep -c '^banger-'");

	return out ? atoi(out) : -1;
}

/* 20 create/remove cycles of dm root disks (both shapes): nothing accumulates. */
/*
 * A root disk larger than its ext4 image: the filesystem is grown through the
 * snapshot to fill it, and the shared base image is not touched.
 */
static void test_dm_rootfs_grow(void **state)
{
	struct fixture *f = *state;
	struct host_disk d;
	struct bg_err err = { 0 };
	_cleanup_free_ char *before = NULL;
	_cleanup_free_ char *after = NULL;
	_cleanup_free_ char *bytes = NULL;

	/* By path: in the dm guest, busybox's shell would run its own mke2fs applet. */
	_cleanup_free_ char *mke2fs = NULL;
	_cleanup_free_ char *dumpe2fs = NULL;
	_cleanup_free_ char *e2fsck = NULL;

	if (dm_skip())
		skip(); /* (a longjmp: nothing allocated yet, cleanups do not run) */
	mke2fs = proc_find_in_path("mke2fs");
	dumpe2fs = proc_find_in_path("dumpe2fs");
	e2fsck = proc_find_in_path("e2fsck");
	assert_non_null(mke2fs);
	assert_non_null(dumpe2fs);
	assert_non_null(e2fsck);
	assert_int_equal(hosttest_sh("%s -q -F -t ext4 %s", mke2fs, f->image), 0);
	before = hosttest_sh_output("sha256sum < %s", f->image);
	f->vm.rootfs_size_mib = 128;
	if (host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err) < 0)
		fail_msg("rootdisk_ensure: %s", err.msg);
	if (host_ops_linux.rootfs_grow(d.path, &err) != 1)
		fail_msg("rootfs_grow: %s", err.msg);
	assert_int_equal(host_ops_linux.rootfs_grow(d.path, &err), 0); /* nothing left to do */
	bytes = hosttest_sh_output(
		"dumpe2fs -h %s 2>/dev/null | awk -F: '/^Block count/ { c = $2 } "
		"/^Block size/ { s = $2 } END { printf \"%%d\", c * s }'",
		d.path);
	assert_non_null(bytes);
	assert_int_equal(strtoull(bytes, NULL, 10), 128 * MIB);
	assert_int_equal(hosttest_sh("%s -fn %s >/dev/null 2>&1", e2fsck, d.path), 0);
	after = hosttest_sh_output("sha256sum < %s", f->image);
	assert_string_equal(before, after);
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
}

static void test_dm_cycles(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	int dm_before, fds_before;
	int64_t t0;

	if (dm_skip())
		skip();
	dm_before = dm_count();
	fds_before = hosttest_count_fds();
	t0 = now_mono_ms();
	for (int i = 0; i < 20; i++) {
		struct host_disk d;

		f->vm.rootfs_size_mib = i % 2 ? 96 : 0;
		if (host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_DM_SNAPSHOT, &d, &err) < 0 ||
		    host_ops_linux.rootdisk_remove(&f->vm, &err) < 0)
			fail_msg("cycle %d: %s", i, err.msg);
	}
	printf("dm cycles: 20 in %lld ms; dm devices %d -> %d, loops left %d, fds %d -> %d\n",
	       (long long)(now_mono_ms() - t0), dm_before, dm_count(), hosttest_count_loops(f->dir),
	       fds_before, hosttest_count_fds());
	assert_int_equal(dm_count(), dm_before);
	assert_int_equal(hosttest_count_loops(f->dir), 0);
	assert_int_equal(hosttest_count_fds(), fds_before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dm_detect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dm_rootdisk_padded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dm_rootdisk_same_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dm_half_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dm_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dm_rootfs_grow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dm_cycles, setup, teardown),
	};

	if (!hosttest_sandbox(&skip_reason))
		test_skip_reason("%s", skip_reason);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
