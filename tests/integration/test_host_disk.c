/*
 * test_host_disk.c - loop devices, root disks (copy and reflink; dm-snapshot
 * is in test_host_dm.c), root filesystem growth and work disks for real, on
 * sparse files in a temp dir. Loop devices are global, so each test finds its own by
 * backing file and checks that none is left, nor any file it made.
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/imgpath.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

#define MIB (1024ULL * 1024ULL)

static const char *skip_reason;

struct fixture {
	char *dir;    /* temp dir: the state dir */
	char *image;  /* <dir>/base.img, 64 MiB, 3 MiB of data */
	char *vm_dir; /* <dir>/vms/<id> */
	char id[9];
	char *cow;
	char *work;
	struct host_vm vm;
};

static const uint64_t image_data[] = { 0, 20 * MIB, 63 * MIB };

static int setup(void **state)
{
	struct fixture *f;

	*state = NULL;
	if (skip_reason)
		return 0;
	f = xcalloc(1, sizeof(*f));
	f->dir = test_tmpdir("banger-host-disk");
	f->image = xasprintf("%s/base.img", f->dir);
	hosttest_make_image(f->image, 64 * MIB, image_data, 3, MIB);
	test_unique_suffix(f->id, 8);
	f->vm_dir = xasprintf("%s/vms/%s", f->dir, f->id);
	assert_int_equal(fs_mkdir_p(f->vm_dir, 0700, NULL), 0);
	f->cow = xasprintf("%s/root.img", f->vm_dir);
	f->work = xasprintf("%s/work.img", f->vm_dir);
	f->vm.id = f->id;
	f->vm.vm_dir = f->vm_dir;
	f->vm.rootfs_image = f->image;
	f->vm.cow_disk = f->cow;
	f->vm.work_disk = f->work;
	f->vm.work_disk_mib = 32;
	f->vm.owner_uid = 0;
	f->vm.owner_gid = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int loops, entries;

	if (!f)
		return 0;
	/*
	 * Nothing of ours is left: no loop on our files, nothing but the image,
	 * vms/ and vms/<id>/ in the temp dir.
	 */
	loops = hosttest_count_loops(f->dir);
	entries = hosttest_count_entries(f->dir);
	if (entries != 3)
		(void)hosttest_sh("find %s >&2", f->dir);
	if (loops > 0)
		(void)hosttest_sh("losetup -j %s/base.img -O NAME -n | xargs -r -n1 losetup -d; "
				  "losetup -l -O NAME,BACK-FILE -n | grep ' %s' | awk '{print $1}' "
				  "| xargs -r -n1 losetup -d",
				  f->dir, f->dir);
	test_rmtree(f->dir);
	free(f->dir);
	free(f->image);
	free(f->vm_dir);
	free(f->cow);
	free(f->work);
	free(f);
	assert_int_equal(loops, 0);
	assert_int_equal(entries, 3);
	return 0;
}

static uint64_t file_size(const char *p)
{
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	return (uint64_t)st.st_size;
}

static uint64_t file_bytes_used(const char *p)
{
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static bool loop_detached(void *arg)
{
	char b[4096];

	return host_loop_backing(arg, b, sizeof(b)) == -ENXIO;
}

/* ---- loop devices -------------------------------------------------------------- */

static void test_loop_attach_autoclear(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	char dev[HOST_LOOP_DEV_MAX], backing[4096];
	_cleanup_strv_free_ char **found = NULL;
	size_t n = 0;
	int fd;

	if (skip_reason)
		skip();
	fd = host_loop_attach(f->image, true, dev, &err);
	assert_true(fd >= 0);
	assert_int_equal(host_loop_backing(dev, backing, sizeof(backing)), 0);
	assert_string_equal(backing, f->image);
	assert_int_equal(hosttest_sh("test \"$(cat /sys/block/%s/ro)\" = 1", dev + 5), 0);
	assert_int_equal(hosttest_sh("test \"$(cat /sys/block/%s/loop/autoclear)\" = 1", dev + 5),
			 0);
	assert_int_equal(host_loop_find(f->image, &found, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(found[0], dev);
	/* Writes are refused on the read-only base. */
	assert_int_equal(hosttest_sh("dd if=/dev/zero of=%s bs=512 count=1 2>/dev/null", dev) == 0,
			 0);
	/* AUTOCLEAR: closing the last opener detaches it. */
	close(fd);
	assert_true(test_wait_for(loop_detached, dev, 5000));
	assert_int_equal(hosttest_count_loops(f->dir), 0);
}

static void test_loop_detach(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_retry quick = { .tries = 3, .first_ms = 10, .max_ms = 20 };
	_cleanup_free_ char *dev = NULL;
	char dev2[HOST_LOOP_DEV_MAX];
	int fd;

	if (skip_reason)
		skip();
	/* A persistent loop as losetup makes it (no AUTOCLEAR). */
	dev = hosttest_sh_output("losetup -f --show %s", f->image);
	assert_non_null(dev);
	dev[strcspn(dev, "\n")] = '\0';
	assert_int_equal(strncmp(dev, "/dev/loop", 9), 0);
	/* Another file expected: not ours, left alone. */
	assert_int_equal(host_loop_detach(dev, f->cow, &quick, &err), 0);
	assert_int_equal(hosttest_count_loops(f->image), 1);
	/* Detach twice. */
	assert_int_equal(host_loop_detach(dev, f->image, &quick, &err), 0);
	assert_true(loop_detached(dev));
	assert_int_equal(host_loop_detach(dev, f->image, &quick, &err), 0);
	assert_int_equal(hosttest_sh("test -z \"$(losetup -j %s)\"", f->image), 0);

	/* Busy: someone holds it open. LOOP_CLR_FD only sets AUTOCLEAR; we say so. */
	fd = host_loop_attach(f->image, false, dev2, &err);
	assert_true(fd >= 0);
	assert_int_equal(host_loop_detach(dev2, NULL, &quick, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "in use"));
	assert_false(loop_detached(dev2));
	close(fd);
	assert_true(test_wait_for(loop_detached, dev2, 5000));

	assert_int_equal(host_loop_detach("/dev/sda", NULL, &quick, &err), -EINVAL);
	assert_int_equal(host_loop_detach("/dev/loop1x", NULL, &quick, &err), -EINVAL);
	assert_int_equal(host_loop_attach("/nonexistent/file", true, dev2, &err), -ENOENT);
}

static void test_loop_find_deleted(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *copy = xasprintf("%s/gone.img", f->vm_dir);
	_cleanup_strv_free_ char **found = NULL;
	_cleanup_free_ char *dev = NULL;
	size_t n = 0;

	if (skip_reason)
		skip();
	/* The backing file is deleted while attached: still found and detached by path. */
	hosttest_make_image(copy, 4 * MIB, image_data, 1, 4096);
	dev = hosttest_sh_output("losetup -f --show %s", copy);
	assert_non_null(dev);
	dev[strcspn(dev, "\n")] = '\0';
	assert_int_equal(unlink(copy), 0);
	assert_int_equal(host_loop_find(copy, &found, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(found[0], dev);
	assert_int_equal(host_loop_detach(dev, copy, NULL, &err), 0);
	assert_true(loop_detached(dev));
}

/* ---- root disks ---------------------------------------------------------------- */

static void test_copy_rootdisk(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_disk d;
	struct stat st1, st2;
	int fd;

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), 0);
	assert_int_equal(d.mode, DISK_MODE_COPY);
	assert_string_equal(d.path, f->cow);
	assert_int_equal(file_size(f->cow), 64 * MIB);
	assert_true(hosttest_files_equal(f->image, f->cow, 64 * MIB));
	/* Sparse: 3 MiB of data, not 64 MiB of blocks. */
	printf("copy: 64 MiB image with 3 MiB of data uses %llu KiB\n",
	       (unsigned long long)file_bytes_used(f->cow) / 1024);
	assert_true(file_bytes_used(f->cow) < 8 * MIB);
	assert_int_equal(hosttest_sh("test -z \"$(ls %s | grep tmp)\"", f->vm_dir), 0);

	/* A second ensure keeps what the VM wrote. */
	fd = open(f->cow, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "marker", 6, 10 * MIB), 6);
	close(fd);
	assert_int_equal(stat(f->cow, &st1), 0);
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), 0);
	assert_int_equal(stat(f->cow, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);
	assert_int_equal(hosttest_sh("dd if=%s bs=1M skip=10 count=1 2>/dev/null | head -c 6 | "
				     "grep -q marker",
				     f->cow),
			 0);

	/* deactivate keeps the disk; remove twice deletes it. */
	assert_int_equal(host_ops_linux.rootdisk_deactivate(&f->vm, &err), 0);
	assert_true(hosttest_exists(f->cow));
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
	assert_false(hosttest_exists(f->cow));
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
}

/*
 * The daemon opens the spec's image through common/imgpath and hands the host
 * layer the fd: the root disk (copy) and a loop (dm base) are made from that
 * file even when the path is swapped for another file right after the check.
 */
static void test_rootdisk_from_fd(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	const char *const roots[] = { f->dir };
	struct imgpath_conf conf = { .roots = roots, .n_roots = 1, .state_dir = f->dir };
	_cleanup_free_ char *orig = xasprintf("%s.orig", f->image);
	char dev[HOST_LOOP_DEV_MAX];
	struct host_disk d;
	int fd, loop;

	if (skip_reason)
		skip();
	fd = imgpath_open_at(&conf, f->image, NULL, &err);
	assert_true(fd >= 0);
	/* The swap: the checked file moves away, another takes its name. */
	assert_int_equal(rename(f->image, orig), 0);
	test_write_file(f->image, "SWAPPED IN AFTER THE CHECK");
	f->vm.rootfs_has_fd = true;
	f->vm.rootfs_fd = fd;
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), 0);
	assert_int_equal(file_size(f->cow), 64 * MIB);
	assert_true(hosttest_files_equal(orig, f->cow, 64 * MIB));
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);

	/* LOOP_CONFIGURE on the fd: the loop is over the checked file too. */
	loop = host_loop_attach_fd(fd, f->image, true, dev, &err);
	assert_true(loop >= 0);
	assert_true(hosttest_files_equal(orig, dev, 64 * MIB));
	close(loop);
	assert_true(test_wait_for(loop_detached, dev, 5000));

	close(fd);
	assert_int_equal(rename(orig, f->image), 0);
}

static void test_copy_rootdisk_grow(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_disk d;

	if (skip_reason)
		skip();
	f->vm.rootfs_size_mib = 256;
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), 0);
	assert_int_equal(file_size(f->cow), 256 * MIB);
	assert_true(hosttest_files_equal(f->image, f->cow, 64 * MIB));
	assert_true(file_bytes_used(f->cow) < 8 * MIB);
	assert_int_equal(hosttest_sh("cmp -s -n %llu %s /dev/zero %llu 0",
				     (unsigned long long)(192 * MIB), f->cow,
				     (unsigned long long)(64 * MIB)),
			 0);
	/* The spec grows again: the disk grows, its content stays. */
	f->vm.rootfs_size_mib = 300;
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), 0);
	assert_int_equal(file_size(f->cow), 300 * MIB);

	/* Smaller than the image: an error naming both sizes, nothing made. */
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
	f->vm.rootfs_size_mib = 32;
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "32 MiB"));
	assert_non_null(strstr(err.msg, "64.0 MiB"));
	assert_false(hosttest_exists(f->cow));
}

static void test_copy_rootdisk_half_done(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_disk d;
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", f->cow);

	if (skip_reason)
		skip();
	/* A crash mid-copy leaves the temp file: remove cleans it... */
	test_write_file(tmp, "half a copy");
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);
	assert_false(hosttest_exists(tmp));
	/* ...and so does the next ensure, which then makes a whole copy. */
	test_write_file(tmp, "half a copy");
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), 0);
	assert_false(hosttest_exists(tmp));
	assert_true(hosttest_files_equal(f->image, f->cow, 64 * MIB));
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);

	/* A dm-snapshot COW store (magic "SnAp") is never taken for a copied disk. */
	test_write_file(f->cow, "SnAp");
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "dm-snapshot mode"));
	assert_int_equal(file_size(f->cow), 4);
	assert_int_equal(host_ops_linux.rootdisk_remove(&f->vm, &err), 0);

	/* Bad input is refused before anything is made. */
	f->vm.id = "../../x";
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), -EINVAL);
	f->vm.id = f->id;
	f->vm.rootfs_image = "/nonexistent/base.img";
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/base.img"));
	f->vm.rootfs_image = "relative.img";
	assert_int_equal(host_ops_linux.rootdisk_ensure(&f->vm, DISK_MODE_COPY, &d, &err), -EINVAL);
	assert_false(hosttest_exists(f->cow));
}

static void test_detect_temp_fs(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	enum disk_mode m = DISK_MODE_MAX;

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.disk_mode_detect(f->dir, &m, &err), 0);
	printf("disk mode for the temp dir '%s': %s (device-mapper %s)\n", f->dir,
	       disk_mode_to_string(m), host_dm_available() ? "available" : "not available");
	if (host_dm_available())
		assert_int_equal(m, DISK_MODE_DM_SNAPSHOT);
	else
		assert_true(m == DISK_MODE_REFLINK || m == DISK_MODE_COPY);
	/* Probe files never stay. */
	assert_int_equal(hosttest_sh("test -z \"$(ls -A %s | grep probe)\"", f->dir), 0);
	assert_true(host_ops_linux.disk_mode_detect("/nonexistent/state", &m, &err) < 0 ||
		    host_dm_available());
}

/*
 * Reflink for real: an XFS filesystem (reflink on by default) on a loop
 * device, mounted in this test's own mount namespace.
 */
static void test_reflink_rootdisk(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *fsimg = xasprintf("%s/xfs.img", f->dir);
	_cleanup_free_ char *mnt = xasprintf("%s/mnt", f->dir);
	_cleanup_free_ char *mkfs = host_find_tool("mkfs.xfs");
	_cleanup_free_ char *image2 = NULL;
	_cleanup_free_ char *cow_on_xfs = NULL;
	char dev[HOST_LOOP_DEV_MAX];
	struct host_vm vm = f->vm;
	struct host_disk d;
	enum disk_mode m;
	int fd;

	if (skip_reason)
		skip();
	if (!mkfs) {
		test_skip_reason("reflink: mkfs.xfs (xfsprogs) is not installed");
		skip();
	}
	fd = open(fsimg, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(512 * MIB)), 0);
	close(fd);
	assert_int_equal(hosttest_sh("%s -q -m reflink=1 %s", mkfs, fsimg), 0);
	assert_int_equal(mkdir(mnt, 0700), 0);
	fd = host_loop_attach(fsimg, false, dev, &err);
	assert_true(fd >= 0);
	assert_int_equal(mount(dev, mnt, "xfs", 0, NULL), 0);
	close(fd); /* the mount holds the loop now */

	assert_int_equal(host_ops_linux.disk_mode_detect(mnt, &m, &err), 0);
	printf("disk mode on XFS: %s\n", disk_mode_to_string(m));
	if (!host_dm_available())
		assert_int_equal(m, DISK_MODE_REFLINK);

	/* Image and disk on XFS: cloned, sharing the image's blocks. */
	image2 = xasprintf("%s/base.img", mnt);
	assert_int_equal(hosttest_sh("cp --sparse=always %s %s", f->image, image2), 0);
	cow_on_xfs = xasprintf("%s/root.img", mnt);
	vm.rootfs_image = image2;
	vm.cow_disk = cow_on_xfs;
	vm.rootfs_size_mib = 128;
	assert_int_equal(host_ops_linux.rootdisk_ensure(&vm, DISK_MODE_REFLINK, &d, &err), 0);
	assert_int_equal(d.mode, DISK_MODE_REFLINK);
	assert_int_equal(file_size(cow_on_xfs), 128 * MIB);
	assert_true(hosttest_files_equal(image2, cow_on_xfs, 64 * MIB));
	assert_int_equal(hosttest_sh("xfs_io -r -c 'fiemap -v' %s | grep -q 0x2000 || "
				     "filefrag -v %s | grep -q shared",
				     cow_on_xfs, cow_on_xfs),
			 0);
	assert_int_equal(host_ops_linux.rootdisk_remove(&vm, &err), 0);
	assert_false(hosttest_exists(cow_on_xfs));

	/* Image on another filesystem: FICLONE says EXDEV, so it is copied instead. */
	vm.rootfs_image = f->image;
	assert_int_equal(host_ops_linux.rootdisk_ensure(&vm, DISK_MODE_REFLINK, &d, &err), 0);
	assert_int_equal(d.mode, DISK_MODE_COPY);
	assert_true(hosttest_files_equal(f->image, cow_on_xfs, 64 * MIB));
	assert_int_equal(host_ops_linux.rootdisk_remove(&vm, &err), 0);

	assert_int_equal(unlink(image2), 0);
	assert_int_equal(umount2(mnt, 0), 0);
	assert_true(test_wait_for(loop_detached, dev, 5000));
	assert_int_equal(rmdir(mnt), 0);
	assert_int_equal(unlink(fsimg), 0);
}

/* ---- root filesystem growth ------------------------------------------------------ */

/* Size of the ext filesystem on path, from dumpe2fs (block count x block size). */
static uint64_t ext_size(const char *path)
{
	_cleanup_free_ char *out = hosttest_sh_output(
		"dumpe2fs -h %s 2>/dev/null | awk -F: '/^Block count/ {c=$2} /^Block size/ {s=$2} "
		"END {print c*s}'",
		path);

	assert_non_null(out);
	return strtoull(out, NULL, 10);
}

static void test_rootfs_grow(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *disk = xasprintf("%s/grow.img", f->vm_dir);
	_cleanup_free_ char *sum1 = NULL, *sum2 = NULL;
	struct stat st1, st2;
	char dev[HOST_LOOP_DEV_MAX];
	int fd;

	if (skip_reason)
		skip();
	/* A 16 MiB ext4 with a file, in a 64 MiB file (an image copied into a larger disk). */
	assert_int_equal(hosttest_sh("mkdir %s/t && echo kept > %s/t/f && "
				     "mke2fs -q -F -t ext4 -d %s/t %s 16M && rm -r %s/t && "
				     "truncate -s 64M %s",
				     f->dir, f->dir, f->dir, disk, f->dir, disk),
			 0);
	assert_int_equal(ext_size(disk), 16 * MIB);
	assert_int_equal(host_ops_linux.rootfs_grow(disk, &err), 1);
	assert_int_equal(ext_size(disk), 64 * MIB);
	assert_int_equal(file_size(disk), 64 * MIB);
	assert_int_equal(hosttest_sh("e2fsck -fn %s >/dev/null 2>&1", disk), 0);
	assert_int_equal(hosttest_sh("debugfs -R 'cat /f' %s 2>/dev/null | grep -qx kept", disk),
			 0);
	/* Nothing to do the second time: no e2fsck ran (it would have written the disk). */
	assert_int_equal(stat(disk, &st1), 0);
	assert_int_equal(host_ops_linux.rootfs_grow(disk, &err), 0);
	assert_int_equal(stat(disk, &st2), 0);
	assert_int_equal(st1.st_mtim.tv_sec, st2.st_mtim.tv_sec);
	assert_int_equal(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);

	/* Within 1 MiB of the disk: left alone. */
	assert_int_equal(truncate(disk, (off_t)(64 * MIB + 512 * 1024)), 0);
	assert_int_equal(host_ops_linux.rootfs_grow(disk, &err), 0);
	assert_int_equal(ext_size(disk), 64 * MIB);

	/* Through a loop device (as a dm device would be): grows to the device's size. */
	assert_int_equal(truncate(disk, (off_t)(96 * MIB)), 0);
	fd = host_loop_attach(disk, false, dev, &err);
	assert_true(fd >= 0);
	assert_int_equal(host_ops_linux.rootfs_grow(dev, &err), 1);
	assert_int_equal(host_ops_linux.rootfs_grow(dev, &err), 0);
	close(fd);
	assert_true(test_wait_for(loop_detached, dev, 5000));
	assert_int_equal(ext_size(disk), 96 * MIB);
	assert_int_equal(hosttest_sh("e2fsck -fn %s >/dev/null 2>&1", disk), 0);

	/* Not an ext filesystem (a partitioned image, or anything else): 0, untouched. */
	sum1 = hosttest_sh_output("sha256sum < %s", f->image);
	assert_int_equal(host_ops_linux.rootfs_grow(f->image, &err), 0);
	sum2 = hosttest_sh_output("sha256sum < %s", f->image);
	assert_string_equal(sum1, sum2);

	/*
	 * A damaged filesystem e2fsck cannot repair (no backup superblock, blocks
	 * per group zeroed in the primary): an error with e2fsck's status, nothing resized.
	 */
	assert_int_equal(hosttest_sh("mke2fs -q -F -t ext4 -O sparse_super2 -E num_backup_sb=0 %s "
				     "16M && truncate -s 64M %s && printf '\\0\\0\\0\\0' | "
				     "dd of=%s bs=1 seek=1056 conv=notrunc 2>/dev/null",
				     disk, disk, disk),
			 0);
	assert_true(host_ops_linux.rootfs_grow(disk, &err) < 0);
	printf("damaged: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "e2fsck -fy' exited with status 8"));
	assert_int_equal(file_size(disk), 64 * MIB);

	assert_int_equal(host_ops_linux.rootfs_grow("relative.img", &err), -EINVAL);
	assert_int_equal(host_ops_linux.rootfs_grow("/nonexistent/disk", &err), -ENOENT);
	assert_int_equal(unlink(disk), 0);
}

/* ---- work disks ---------------------------------------------------------------- */

static void test_workdisk(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *sum1 = NULL, *sum2 = NULL, *type = NULL;
	struct stat st1, st2;

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.workdisk_ensure(&f->vm, &err), 0);
	assert_int_equal(file_size(f->work), 32 * MIB);
	assert_true(file_bytes_used(f->work) < 32 * MIB);
	type = hosttest_sh_output("blkid -p -o value -s TYPE %s", f->work);
	assert_non_null(type);
	assert_string_equal(type, "ext4\n");
	assert_int_equal(hosttest_sh("dumpe2fs -h %s 2>/dev/null | grep -q '^Filesystem features:.*"
				     "extent'",
				     f->work),
			 0);
	/* Data written into it (as a guest would) survives a second ensure. */
	assert_int_equal(hosttest_sh("echo hello > %s/m && debugfs -w -R 'write %s/m marker' %s "
				     ">/dev/null 2>&1 && rm %s/m",
				     f->dir, f->dir, f->work, f->dir),
			 0);
	sum1 = hosttest_sh_output("sha256sum < %s", f->work);
	assert_int_equal(stat(f->work, &st1), 0);
	assert_int_equal(host_ops_linux.workdisk_ensure(&f->vm, &err), 0);
	sum2 = hosttest_sh_output("sha256sum < %s", f->work);
	assert_int_equal(stat(f->work, &st2), 0);
	assert_string_equal(sum1, sum2);
	assert_int_equal(st1.st_ino, st2.st_ino);
	assert_int_equal(st1.st_mtim.tv_sec, st2.st_mtim.tv_sec);
	assert_int_equal(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
	assert_int_equal(
		hosttest_sh("debugfs -R 'cat marker' %s 2>/dev/null | grep -qx hello", f->work), 0);

	/* Remove twice. */
	assert_int_equal(host_ops_linux.workdisk_remove(&f->vm, &err), 0);
	assert_false(hosttest_exists(f->work));
	assert_int_equal(host_ops_linux.workdisk_remove(&f->vm, &err), 0);
}

static void test_workdisk_grow(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *sum1 = NULL, *sum2 = NULL;

	if (skip_reason)
		skip();
	f->vm.work_disk_mib = 16;
	assert_int_equal(host_ops_linux.workdisk_ensure(&f->vm, &err), 0);
	assert_int_equal(hosttest_sh("echo kept > %s/m && debugfs -w -R 'write %s/m f' %s "
				     ">/dev/null 2>&1 && rm %s/m",
				     f->dir, f->dir, f->work, f->dir),
			 0);
	/* The spec grows: the file and its filesystem grow, the data stays. */
	f->vm.work_disk_mib = 32;
	assert_int_equal(host_ops_linux.workdisk_ensure(&f->vm, &err), 0);
	assert_int_equal(file_size(f->work), 32 * MIB);
	assert_int_equal(ext_size(f->work), 32 * MIB);
	assert_int_equal(hosttest_sh("e2fsck -fn %s >/dev/null 2>&1", f->work), 0);
	assert_int_equal(hosttest_sh("debugfs -R 'cat /f' %s 2>/dev/null | grep -qx kept", f->work),
			 0);

	/* The spec shrinks: refused, the disk is untouched. */
	sum1 = hosttest_sh_output("sha256sum < %s", f->work);
	f->vm.work_disk_mib = 16;
	assert_int_equal(host_ops_linux.workdisk_ensure(&f->vm, &err), -EINVAL);
	printf("shrink: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "work disk is 32 MiB, spec asks 16 MiB"));
	assert_non_null(strstr(err.msg, "shrinking is not supported"));
	sum2 = hosttest_sh_output("sha256sum < %s", f->work);
	assert_string_equal(sum1, sum2);
	assert_int_equal(file_size(f->work), 32 * MIB);

	/* A crash between growing the file and its filesystem: the next ensure finishes. */
	assert_int_equal(truncate(f->work, (off_t)(48 * MIB)), 0);
	f->vm.work_disk_mib = 48;
	assert_int_equal(host_ops_linux.workdisk_ensure(&f->vm, &err), 0);
	assert_int_equal(ext_size(f->work), 48 * MIB);
	assert_int_equal(hosttest_sh("debugfs -R 'cat /f' %s 2>/dev/null | grep -qx kept", f->work),
			 0);
	assert_int_equal(host_ops_linux.workdisk_remove(&f->vm, &err), 0);
}

static void test_workdisk_edges(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", f->work);
	struct host_vm vm = f->vm;

	if (skip_reason)
		skip();
	/* No work disk: nothing to do. */
	vm.work_disk = NULL;
	assert_int_equal(host_ops_linux.workdisk_ensure(&vm, &err), 0);
	assert_int_equal(host_ops_linux.workdisk_remove(&vm, &err), 0);
	/* A half-formatted temp file from a crash: remove and ensure both clean it up. */
	test_write_file(tmp, "half");
	assert_int_equal(host_ops_linux.workdisk_remove(&f->vm, &err), 0);
	assert_false(hosttest_exists(tmp));
	test_write_file(tmp, "half");
	assert_int_equal(host_ops_linux.workdisk_ensure(&f->vm, &err), 0);
	assert_false(hosttest_exists(tmp));
	assert_int_equal(hosttest_sh("blkid -p -o value -s TYPE %s | grep -qx ext4", f->work), 0);
	assert_int_equal(host_ops_linux.workdisk_remove(&f->vm, &err), 0);
	/* Something else in its place is not overwritten. */
	assert_int_equal(mkdir(f->work, 0700), 0);
	assert_int_equal(host_ops_linux.workdisk_ensure(&f->vm, &err), -EEXIST);
	assert_int_equal(rmdir(f->work), 0);
	/* Bad sizes and paths. */
	vm = f->vm;
	vm.work_disk_mib = 0;
	assert_int_equal(host_ops_linux.workdisk_ensure(&vm, &err), -EINVAL);
	vm = f->vm;
	vm.work_disk = "work.img";
	assert_int_equal(host_ops_linux.workdisk_ensure(&vm, &err), -EINVAL);
	assert_false(hosttest_exists(f->work));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loop_attach_autoclear, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_find_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_rootdisk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rootdisk_from_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_rootdisk_grow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_rootdisk_half_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detect_temp_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reflink_rootdisk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rootfs_grow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workdisk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workdisk_grow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workdisk_edges, setup, teardown),
	};

	if (!hosttest_sandbox(&skip_reason))
		test_skip_reason("%s", skip_reason);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
