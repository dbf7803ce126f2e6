/*
 * overlay.c - a VM's copy-on-write root disk, in one of three modes:
 *
 *   dm-snapshot  the base image on a read-only loop, a sparse per-VM COW file
 *                on a second loop, and a persistent dm 'snapshot' target
 *                "banger-<id>" over them (UUID "BANGER-<id>"). When the disk
 *                is larger than the image, the origin is "banger-<id>-base":
 *                the image's loop followed by a 'zero' target, since a
 *                snapshot cannot be larger than its origin. Both loops are
 *                AUTOCLEAR, so they go away with the dm devices.
 *   reflink      FICLONE of the image into the per-VM file, grown to size.
 *   copy         a sparse copy (only the data ranges, found with
 *                SEEK_DATA/SEEK_HOLE), grown to size.
 *
 * The only includer of libdevmapper.h. libdevmapper reports errors through a
 * log callback without a user pointer, so its last error line is kept in a
 * file-scope buffer (the daemon is single-threaded).
 */
#include <errno.h>
#include <fcntl.h>
#include <libdevmapper.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

#define SECTOR 512ULL
#define MIB (1024ULL * 1024ULL)
#define CHUNK_SECTORS 8	     /* 4 KiB COW chunks */
#define MAX_MIB (1ULL << 30) /* 1 PiB: far above any disk, far below overflow */
#define COPY_BUF (1024 * 1024)
#define LOOP_MAJOR 7

/* libdevmapper's log levels (its log.h is not installed). */
#define DM_LOG_ERR 3
#define DM_LOG_LEVEL_MASK 0x7f

/* ---- pure helpers ------------------------------------------------------------- */

int host_dm_snapshot_table(uint64_t sectors, const char *origin, const char *cow, char *ret,
			   size_t size, struct bg_err *err)
{
	int n;

	if (sectors == 0 || !origin || !*origin || !cow || !*cow || strchr(origin, ' ') ||
	    strchr(cow, ' '))
		return bg_errorf(err, EINVAL, "invalid snapshot table arguments");
	n = snprintf(ret, size, "0 %llu snapshot %s %s P %d", (unsigned long long)sectors, origin,
		     cow, CHUNK_SECTORS);
	if (n < 0 || (size_t)n >= size)
		return bg_errorf(err, ENAMETOOLONG, "snapshot table too long");
	return 0;
}

int host_dm_base_table(uint64_t image_sectors, uint64_t size_sectors, const char *base_loop,
		       char ret_linear[256], char ret_zero[256], struct bg_err *err)
{
	if (image_sectors == 0 || size_sectors <= image_sectors || !base_loop || !*base_loop ||
	    strchr(base_loop, ' '))
		return bg_errorf(err, EINVAL, "invalid base table arguments");
	snprintf(ret_linear, 256, "0 %llu linear %s 0", (unsigned long long)image_sectors,
		 base_loop);
	snprintf(ret_zero, 256, "%llu %llu zero", (unsigned long long)image_sectors,
		 (unsigned long long)(size_sectors - image_sectors));
	return 0;
}

int host_rootdisk_size(uint64_t image_bytes, uint64_t size_mib, const char *image,
		       uint64_t *ret_bytes, struct bg_err *err)
{
	if (size_mib > MAX_MIB)
		return bg_errorf(err, EINVAL, "rootfs size %llu MiB is too large",
				 (unsigned long long)size_mib);
	if (size_mib == 0) {
		*ret_bytes = image_bytes;
		return 0;
	}
	if (size_mib * MIB < image_bytes)
		return bg_errorf(err, EINVAL,
				 "rootfs size %llu MiB is smaller than the image '%s' (%llu bytes, "
				 "%.1f MiB)",
				 (unsigned long long)size_mib, image ? image : "",
				 (unsigned long long)image_bytes,
				 (double)image_bytes / (double)MIB);
	*ret_bytes = size_mib * MIB;
	return 0;
}

uint64_t host_cow_store_size(uint64_t disk_bytes)
{
	uint64_t chunk = CHUNK_SECTORS * SECTOR;
	uint64_t chunks = (disk_bytes + chunk - 1) / chunk;
	/* Each 4 KiB metadata area maps 256 chunks (16-byte entries); plus the header. */
	uint64_t meta = (chunks + 255) / 256 + 2;

	return (chunks + meta) * chunk;
}

/* ---- libdevmapper boundary ---------------------------------------------------- */

static char dm_last_error[512];

static void dm_log_cb(int level, const char *file, int line, int dm_errno_or_class, const char *f,
		      ...) __attribute__((format(printf, 5, 6)));

static void dm_log_cb(int level, const char *file, int line, int dm_errno_or_class, const char *f,
		      ...)
{
	va_list ap;

	(void)file;
	(void)line;
	(void)dm_errno_or_class;
	if ((level & DM_LOG_LEVEL_MASK) > DM_LOG_ERR)
		return;
	va_start(ap, f);
	vsnprintf(dm_last_error, sizeof(dm_last_error), f, ap);
	va_end(ap);
}

static void dm_begin(void)
{
	dm_log_with_errno_init(dm_log_cb);
	dm_last_error[0] = '\0';
}

/* Close libdevmapper's control fd (which it opens without O_CLOEXEC) and free its caches. */
static void dm_end(void)
{
	dm_lib_release();
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct dm_task, dm_task_destroy)
#define _cleanup_dm_task_ _cleanup_(dm_task_destroyp)

/* Run a task; on failure an error naming what and name, with dm's own text. */
static int dm_run(struct dm_task *dmt, const char *what, const char *name, struct bg_err *err)
{
	int e;

	dm_last_error[0] = '\0';
	if (dm_task_run(dmt))
		return 0;
	e = dm_task_get_errno(dmt);
	if (e <= 0)
		e = EIO;
	if (dm_last_error[0])
		return bg_errorf(err, e, "device-mapper %s '%s': %s", what, name, dm_last_error);
	return bg_error(err, e, "device-mapper %s '%s'", what, name);
}

bool host_dm_available(void)
{
	char version[64];
	int fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	close(fd);
	dm_begin();
	ok = dm_driver_version(version, sizeof(version)) != 0;
	dm_end();
	return ok;
}

/* Info about dm device 'name': *ret_exists false when there is none. */
static int dm_info(const char *name, struct dm_info *ret, struct bg_err *err)
{
	_cleanup_dm_task_ struct dm_task *dmt = dm_task_create(DM_DEVICE_INFO);
	int r;

	memset(ret, 0, sizeof(*ret));
	if (!dmt || !dm_task_set_name(dmt, name))
		return bg_errorf(err, ENOMEM, "device-mapper info '%s': cannot set up task", name);
	r = dm_run(dmt, "info", name, err);
	if (r < 0)
		return r;
	if (!dm_task_get_info(dmt, ret))
		return bg_errorf(err, EIO, "device-mapper info '%s': no info", name);
	return 0;
}

/* The devices under dm device 'name' as "major:minor" strings (owned strv). */
static int dm_deps(const char *name, char ***ret, struct bg_err *err)
{
	_cleanup_dm_task_ struct dm_task *dmt = dm_task_create(DM_DEVICE_DEPS);
	struct dm_deps *deps;
	char **v;
	int r;

	if (!dmt || !dm_task_set_name(dmt, name))
		return bg_errorf(err, ENOMEM, "device-mapper deps '%s': cannot set up task", name);
	r = dm_run(dmt, "deps", name, err);
	if (r < 0)
		return r;
	deps = dm_task_get_deps(dmt);
	v = xcalloc((deps ? deps->count : 0) + 1, sizeof(*v));
	for (uint32_t i = 0; deps && i < deps->count; i++)
		v[i] = xasprintf("%u:%u", major(deps->device[i]), minor(deps->device[i]));
	*ret = v;
	return 0;
}

/* "7:N" -> "/dev/loopN" via /sys/dev/block (minors of partitioned loops differ from N). */
static bool devno_to_loop(const char *devno, char ret[HOST_LOOP_DEV_MAX])
{
	char link[128], target[256];
	const char *base;
	ssize_t n;

	if (strncmp(devno, "7:", 2) != 0)
		return false;
	snprintf(link, sizeof(link), "/sys/dev/block/%s", devno);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strncmp(base, "loop", 4) != 0 || strlen(base) >= HOST_LOOP_DEV_MAX - 5)
		return false;
	memcpy(ret, "/dev/", 5);
	memcpy(ret + 5, base, strlen(base) + 1);
	return true;
}

/* Create (and activate) dm device name/uuid with the table lines given. */
static int dm_create(const char *name, const char *uuid, const char *const *lines, size_t n_lines,
		     struct bg_err *err)
{
	_cleanup_dm_task_ struct dm_task *dmt = dm_task_create(DM_DEVICE_CREATE);
	uint32_t cookie = 0;
	int r;

	if (!dmt || !dm_task_set_name(dmt, name) || !dm_task_set_uuid(dmt, uuid))
		return bg_errorf(err, ENOMEM, "device-mapper create '%s': cannot set up task",
				 name);
	for (size_t i = 0; i < n_lines; i++) {
		unsigned long long start, len;
		char type[32];
		int off = 0;

		if (sscanf(lines[i], "%llu %llu %31s %n", &start, &len, type, &off) != 3)
			return bg_errorf(err, EINVAL, "device-mapper create '%s': bad table '%s'",
					 name, lines[i]);
		if (!dm_task_add_target(dmt, start, len, type, lines[i] + off))
			return bg_errorf(err, ENOMEM, "device-mapper create '%s': add target",
					 name);
	}
	if (!dm_task_set_cookie(dmt, &cookie, 0))
		return bg_errorf(err, EIO, "device-mapper create '%s': udev cookie", name);
	r = dm_run(dmt, "create", name, err);
	/* Wait for udev (or libdevmapper itself) to make /dev/mapper/<name>. */
	(void)dm_udev_wait(cookie);
	return r;
}

int host_dm_remove(const char *name, const struct host_retry *retry, struct bg_err *err)
{
	int r;

	dm_begin();
	for (int attempt = 0;; attempt++) {
		_cleanup_dm_task_ struct dm_task *dmt = NULL;
		struct dm_info info;
		uint32_t cookie = 0;

		r = dm_info(name, &info, err);
		if (r < 0)
			break;
		if (!info.exists) {
			r = 0;
			break;
		}
		dmt = dm_task_create(DM_DEVICE_REMOVE);
		if (!dmt || !dm_task_set_name(dmt, name) || !dm_task_set_cookie(dmt, &cookie, 0)) {
			r = bg_errorf(err, ENOMEM, "device-mapper remove '%s': cannot set up task",
				      name);
			break;
		}
		r = dm_run(dmt, "remove", name, err);
		(void)dm_udev_wait(cookie);
		if (r == -ENXIO || r == -ENODEV) {
			r = 0;
			break;
		}
		if (r != -EBUSY)
			break;
		if (!host_retry_wait(retry, attempt)) {
			r = bg_err_wrap(err, "still busy after %d tries", attempt + 1);
			break;
		}
	}
	dm_end();
	return r;
}

int host_dm_foreach(int (*cb)(const char *name, const char *uuid, void *userdata), void *userdata,
		    struct bg_err *err)
{
	_cleanup_dm_task_ struct dm_task *dmt = NULL;
	_cleanup_strv_free_ char **names = NULL;
	struct dm_names *dn;
	size_t n = 0;
	int r;

	dm_begin();
	dmt = dm_task_create(DM_DEVICE_LIST);
	if (!dmt) {
		dm_end();
		return bg_errorf(err, ENOMEM, "device-mapper list: cannot set up task");
	}
	r = dm_run(dmt, "list", "", err);
	if (r < 0) {
		dm_end();
		return r;
	}
	/* Copy the names: the info calls below reuse libdevmapper's buffers. */
	names = xcalloc(1, sizeof(*names));
	dn = dm_task_get_names(dmt);
	if (dn && dn->dev) {
		for (;;) {
			names = xreallocarray(names, n + 2, sizeof(*names));
			names[n++] = xstrdup(dn->name);
			names[n] = NULL;
			if (!dn->next)
				break;
			dn = (struct dm_names *)((char *)dn + dn->next);
		}
	}
	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_dm_task_ struct dm_task *info = dm_task_create(DM_DEVICE_INFO);
		_cleanup_free_ char *uuid = NULL;

		if (info && dm_task_set_name(info, names[i]) && dm_task_run(info)) {
			const char *u = dm_task_get_uuid(info);
			uuid = xstrdup(u ? u : "");
		} else {
			uuid = xstrdup("");
		}
		r = cb(names[i], uuid, userdata);
	}
	dm_end();
	return r < 0 ? r : 0;
}

/* ---- copying ------------------------------------------------------------------ */

static int copy_range(int src, int dst, off_t start, off_t end, struct bg_err *err)
{
	_cleanup_free_ char *buf = NULL;
	bool use_cfr = true;
	off_t off = start;

	while (off < end) {
		size_t want =
			(size_t)(end - off > (off_t)(64 * MIB) ? (off_t)(64 * MIB) : end - off);
		ssize_t n;

		if (use_cfr) {
			loff_t in = off, out = off;

			n = copy_file_range(src, &in, dst, &out, want, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP || errno == EBADF)) {
				use_cfr = false;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return bg_error(err, errno, "copy_file_range");
			if (n == 0)
				return bg_errorf(err, EIO, "source shrank while copying");
			off += n;
			continue;
		}
		if (!buf)
			buf = xmalloc(COPY_BUF);
		if (want > COPY_BUF)
			want = COPY_BUF;
		n = pread(src, buf, want, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return bg_error(err, errno, "read");
		if (n == 0)
			return bg_errorf(err, EIO, "source shrank while copying");
		for (ssize_t done = 0; done < n;) {
			ssize_t w = pwrite(dst, buf + done, (size_t)(n - done), off + done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return bg_error(err, errno, "write");
			done += w;
		}
		off += n;
	}
	return 0;
}

int host_copy_file(int src_fd, int dst_fd, bool reflink, bool *ret_cloned, struct bg_err *err)
{
	struct stat st;
	off_t off = 0;

	if (ret_cloned)
		*ret_cloned = false;
	if (reflink) {
		if (ioctl(dst_fd, FICLONE, src_fd) == 0) {
			if (ret_cloned)
				*ret_cloned = true;
			return 0;
		}
		if (errno != EXDEV && errno != EOPNOTSUPP && errno != EINVAL && errno != ENOTTY &&
		    errno != ENOSYS)
			return bg_error(err, errno, "FICLONE");
	}
	if (fstat(src_fd, &st) < 0)
		return bg_error(err, errno, "stat source");
	while (off < st.st_size) {
		off_t data = lseek(src_fd, off, SEEK_DATA), hole;
		int r;

		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (data < 0) {
			/* No SEEK_DATA here: the rest counts as data. */
			data = off;
			hole = st.st_size;
		} else {
			hole = lseek(src_fd, data, SEEK_HOLE);
			if (hole < 0)
				hole = st.st_size;
		}
		if (hole > st.st_size)
			hole = st.st_size;
		r = copy_range(src_fd, dst_fd, data, hole, err);
		if (r < 0)
			return r;
		off = hole;
	}
	if (ftruncate(dst_fd, st.st_size) < 0)
		return bg_error(err, errno, "truncate copy");
	return 0;
}

/* ---- mode detection ----------------------------------------------------------- */

/* A file in dir that vanishes by itself: O_TMPFILE, else a named file unlinked at once. */
static int open_probe_file(const char *dir, struct bg_err *err)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	for (int i = 0; i < 100; i++) {
		_cleanup_free_ char *p = xasprintf("%s/.banger-probe-%d-%d", dir, (int)getpid(), i);

		fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			(void)unlink(p);
			return fd;
		}
		if (errno != EEXIST)
			return bg_error(err, errno, "create probe file in '%s'", dir);
	}
	return bg_errorf(err, EEXIST, "create probe file in '%s'", dir);
}

int host_disk_mode_detect(const char *state_dir, enum disk_mode *ret, struct bg_err *err)
{
	_cleanup_close_ int a = -1, b = -1;
	char block[4096];

	if (!state_dir || !*state_dir)
		return bg_errorf(err, EINVAL, "disk mode: no state directory");
	if (host_dm_available()) {
		*ret = DISK_MODE_DM_SNAPSHOT;
		return 0;
	}
	a = open_probe_file(state_dir, err);
	if (a < 0)
		return bg_err_wrap(err, "disk mode");
	b = open_probe_file(state_dir, err);
	if (b < 0)
		return bg_err_wrap(err, "disk mode");
	memset(block, 'b', sizeof(block));
	if (write(a, block, sizeof(block)) != (ssize_t)sizeof(block))
		return bg_error(err, errno, "disk mode: write probe file in '%s'", state_dir);
	*ret = ioctl(b, FICLONE, a) == 0 ? DISK_MODE_REFLINK : DISK_MODE_COPY;
	return 0;
}

/* ---- the root disk ------------------------------------------------------------ */

static int check_vm(const struct host_vm *vm, struct bg_err *err)
{
	if (!vm || !host_valid_id(vm->id))
		return bg_errorf(err, EINVAL, "invalid VM id '%s'", vm && vm->id ? vm->id : "");
	if (!vm->cow_disk || vm->cow_disk[0] != '/')
		return bg_errorf(err, EINVAL, "vm %s: the root disk path must be absolute", vm->id);
	return 0;
}

/* The root disk size for vm, from its image. */
static int rootdisk_target(const struct host_vm *vm, uint64_t *ret_image, uint64_t *ret_size,
			   struct bg_err *err)
{
	struct stat st;

	if (!vm->rootfs_image || vm->rootfs_image[0] != '/')
		return bg_errorf(err, EINVAL, "vm %s: the rootfs image path must be absolute",
				 vm->id);
	if ((vm->rootfs_has_fd ? fstat(vm->rootfs_fd, &st) : stat(vm->rootfs_image, &st)) < 0)
		return bg_error(err, errno, "rootfs image '%s'", vm->rootfs_image);
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "rootfs image '%s' is not a regular file",
				 vm->rootfs_image);
	if (st.st_size == 0)
		return bg_errorf(err, EINVAL, "rootfs image '%s' is empty", vm->rootfs_image);
	*ret_image = (uint64_t)st.st_size;
	return host_rootdisk_size(*ret_image, vm->rootfs_size_mib, vm->rootfs_image, ret_size, err);
}

static char *tmp_path(const char *path)
{
	return xasprintf("%s.tmp", path);
}

static int unlink_missing_ok(const char *path, struct bg_err *err)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return bg_error(err, errno, "remove '%s'", path);
	return 0;
}

enum cow_content {
	COW_EMPTY,    /* first chunk all zero (or no data): a new snapshot store */
	COW_SNAPSHOT, /* a dm-snapshot persistent store */
	COW_DISK,     /* anything else: a whole disk, as copy/reflink mode make it */
};

/*
 * What the per-VM file holds, from its first 4 KiB: a persistent snapshot
 * store starts with the magic "SnAp" (0x70416e53, little endian); an ext4
 * disk has its superblock at 1 KiB. A VM keeps the mode it was created in;
 * this stops a later pass in another mode from destroying its data.
 */
static int cow_content(int fd, const char *path, enum cow_content *ret, struct bg_err *err)
{
	static const unsigned char magic[4] = { 0x53, 0x6e, 0x41, 0x70 };
	unsigned char buf[4096];
	ssize_t n = pread(fd, buf, sizeof(buf), 0);

	if (n < 0)
		return bg_error(err, errno, "read '%s'", path);
	if (n >= 4 && memcmp(buf, magic, 4) == 0) {
		*ret = COW_SNAPSHOT;
		return 0;
	}
	*ret = COW_EMPTY;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i]) {
			*ret = COW_DISK;
			break;
		}
	return 0;
}

/* Grow an existing regular file to at least size bytes. */
static int grow_file(const char *path, uint64_t size, struct bg_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	enum cow_content content;
	struct stat st;
	int r;

	if (fd < 0)
		return bg_error(err, errno, "open '%s'", path);
	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "stat '%s'", path);
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "'%s' is not a regular file", path);
	r = cow_content(fd, path, &content, err);
	if (r < 0)
		return r;
	if (content == COW_SNAPSHOT)
		return bg_errorf(err, EINVAL,
				 "'%s' is a dm-snapshot COW store: this VM was created in "
				 "dm-snapshot mode",
				 path);
	if ((uint64_t)st.st_size < size && ftruncate(fd, (off_t)size) < 0)
		return bg_error(err, errno, "grow '%s' to %llu bytes", path,
				(unsigned long long)size);
	return 0;
}

/* Copy or reflink mode: the per-VM file is the root disk. */
static int rootdisk_file_ensure(const struct host_vm *vm, enum disk_mode mode, uint64_t size,
				struct host_disk *ret, struct bg_err *err)
{
	_cleanup_free_ char *tmp = tmp_path(vm->cow_disk);
	_cleanup_close_ int src = -1, dst = -1;
	struct host_disk disk = { .mode = mode };
	bool cloned = false;
	struct stat st;
	int r;

	snprintf(disk.path, sizeof(disk.path), "%s", vm->cow_disk);
	if (lstat(vm->cow_disk, &st) == 0) {
		/* Made by an earlier pass: keep its contents, grow it if the spec grew. */
		r = grow_file(vm->cow_disk, size, err);
		if (r < 0)
			return bg_err_wrap(err, "vm %s: root disk", vm->id);
		*ret = disk;
		return 0;
	}
	if (errno != ENOENT)
		return bg_error(err, errno, "vm %s: root disk '%s'", vm->id, vm->cow_disk);

	/* Build under a temp name and rename, so a half-made copy is never taken as done. */
	r = unlink_missing_ok(tmp, err);
	if (r < 0)
		return r;
	if (vm->rootfs_has_fd)
		src = fcntl(vm->rootfs_fd, F_DUPFD_CLOEXEC, 3);
	else
		src = open(vm->rootfs_image, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return bg_error(err, errno, "open rootfs image '%s'", vm->rootfs_image);
	dst = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (dst < 0)
		return bg_error(err, errno, "create '%s'", tmp);
	r = host_copy_file(src, dst, mode == DISK_MODE_REFLINK, &cloned, err);
	if (r < 0)
		goto fail;
	if (ftruncate(dst, (off_t)size) < 0) {
		r = bg_error(err, errno, "grow '%s' to %llu bytes", tmp, (unsigned long long)size);
		goto fail;
	}
	if (fchown(dst, vm->owner_uid, vm->owner_gid) < 0) {
		r = bg_error(err, errno, "chown '%s'", tmp);
		goto fail;
	}
	if (fsync(dst) < 0) {
		r = bg_error(err, errno, "fsync '%s'", tmp);
		goto fail;
	}
	if (rename(tmp, vm->cow_disk) < 0) {
		r = bg_error(err, errno, "rename '%s'", tmp);
		goto fail;
	}
	(void)fs_fsync_parent(vm->cow_disk, NULL);
	disk.mode = cloned ? DISK_MODE_REFLINK : DISK_MODE_COPY;
	*ret = disk;
	return 0;
fail:
	(void)unlink(tmp);
	return bg_err_wrap(err, "vm %s: %s root disk", vm->id, disk_mode_to_string(mode));
}

/* Fill the dm fields of ret from the live devices. */
static int dm_describe(const struct host_vm *vm, const char *name, const char *base_name,
		       struct host_disk *ret, struct bg_err *err)
{
	_cleanup_strv_free_ char **deps = NULL;
	_cleanup_free_ char *cow = NULL;
	struct host_disk disk = { .mode = DISK_MODE_DM_SNAPSHOT };
	struct dm_info base;
	int r;

	r = dm_deps(name, &deps, err);
	if (r < 0)
		return r;
	snprintf(disk.path, sizeof(disk.path), "/dev/mapper/%s", name);
	snprintf(disk.dm_name, sizeof(disk.dm_name), "%s", name);
	/* The COW loop is the one backed by our file; the other dep is the origin. */
	cow = realpath(vm->cow_disk, NULL);
	for (char **d = deps; *d; d++) {
		char loop[HOST_LOOP_DEV_MAX], backing[4096];

		if (!devno_to_loop(*d, loop))
			continue;
		if (host_loop_backing(loop, backing, sizeof(backing)) == 0 && cow &&
		    strcmp(backing, cow) == 0)
			snprintf(disk.cow_loop, sizeof(disk.cow_loop), "%s", loop);
		else
			snprintf(disk.base_loop, sizeof(disk.base_loop), "%s", loop);
	}
	if (!disk.base_loop[0] && dm_info(base_name, &base, NULL) == 0 && base.exists) {
		_cleanup_strv_free_ char **bdeps = NULL;

		if (dm_deps(base_name, &bdeps, NULL) == 0 && bdeps[0])
			(void)devno_to_loop(bdeps[0], disk.base_loop);
	}
	*ret = disk;
	return 0;
}

static int rootdisk_dm_ensure(const struct host_vm *vm, uint64_t image_bytes, uint64_t size,
			      struct host_disk *ret, struct bg_err *err)
{
	char name[64], uuid[64], base_name[64], base_uuid[64];
	char base_loop[HOST_LOOP_DEV_MAX], cow_loop[HOST_LOOP_DEV_MAX], origin[HOST_LOOP_DEV_MAX];
	char table[512];
	_cleanup_close_ int base_fd = -1, cow_fd = -1;
	struct dm_info info;
	bool made_base = false;
	int r;

	(void)host_dm_names(vm->id, name, uuid, base_name, base_uuid);
	r = dm_info(name, &info, err);
	if (r < 0)
		return r;
	if (info.exists && info.live_table && !info.suspended)
		return dm_describe(vm, name, base_name, ret, err);
	if (info.exists) {
		/* Half-made by an earlier pass (no table, or suspended): start over. */
		r = host_dm_remove(name, NULL, err);
		if (r < 0)
			return r;
	}
	r = host_dm_remove(base_name, NULL, err);
	if (r < 0)
		return r;

	/* The COW store: sparse, sized to hold every chunk; an existing one keeps its data. */
	{
		_cleanup_close_ int fd =
			open(vm->cow_disk, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		struct stat st;

		enum cow_content content;

		if (fd < 0)
			return bg_error(err, errno, "create COW file '%s'", vm->cow_disk);
		if (fstat(fd, &st) < 0)
			return bg_error(err, errno, "stat '%s'", vm->cow_disk);
		if (!S_ISREG(st.st_mode))
			return bg_errorf(err, EINVAL, "'%s' is not a regular file", vm->cow_disk);
		r = cow_content(fd, vm->cow_disk, &content, err);
		if (r < 0)
			return r;
		if (content == COW_DISK)
			return bg_errorf(err, EINVAL,
					 "'%s' holds a whole disk, not a dm-snapshot COW store: "
					 "this VM was created in copy or reflink mode",
					 vm->cow_disk);
		if ((uint64_t)st.st_size < host_cow_store_size(size) &&
		    ftruncate(fd, (off_t)host_cow_store_size(size)) < 0)
			return bg_error(err, errno, "size COW file '%s'", vm->cow_disk);
	}
	if (vm->rootfs_has_fd)
		base_fd =
			host_loop_attach_fd(vm->rootfs_fd, vm->rootfs_image, true, base_loop, err);
	else
		base_fd = host_loop_attach(vm->rootfs_image, true, base_loop, err);
	if (base_fd < 0)
		return base_fd;
	cow_fd = host_loop_attach(vm->cow_disk, false, cow_loop, err);
	if (cow_fd < 0)
		return cow_fd;
	snprintf(origin, sizeof(origin), "%s", base_loop);
	if (size / SECTOR > image_bytes / SECTOR) {
		char linear[256], zero[256];
		const char *lines[2] = { linear, zero };
		struct dm_info bi;

		r = host_dm_base_table(image_bytes / SECTOR, size / SECTOR, base_loop, linear, zero,
				       err);
		if (r < 0)
			return r;
		r = dm_create(base_name, base_uuid, lines, 2, err);
		if (r < 0)
			return r;
		made_base = true;
		r = dm_info(base_name, &bi, err);
		if (r < 0)
			goto fail;
		snprintf(origin, sizeof(origin), "%u:%u", bi.major, bi.minor);
	}
	r = host_dm_snapshot_table(size / SECTOR, origin, cow_loop, table, sizeof(table), err);
	if (r < 0)
		goto fail;
	{
		const char *lines[1] = { table };
		r = dm_create(name, uuid, lines, 1, err);
	}
	if (r < 0)
		goto fail;
	if (vm->owner_uid != 0 || vm->owner_gid != 0) {
		char node[96];

		snprintf(node, sizeof(node), "/dev/mapper/%s", name);
		if (chown(node, vm->owner_uid, vm->owner_gid) < 0) {
			r = bg_error(err, errno, "chown %s", node);
			goto fail;
		}
	}
	/* Closing base_fd/cow_fd now leaves the loops held by dm only (AUTOCLEAR). */
	memset(ret, 0, sizeof(*ret));
	ret->mode = DISK_MODE_DM_SNAPSHOT;
	snprintf(ret->path, sizeof(ret->path), "/dev/mapper/%s", name);
	snprintf(ret->dm_name, sizeof(ret->dm_name), "%s", name);
	snprintf(ret->base_loop, sizeof(ret->base_loop), "%s", base_loop);
	snprintf(ret->cow_loop, sizeof(ret->cow_loop), "%s", cow_loop);
	return 0;
fail:
	(void)host_dm_remove(name, NULL, NULL);
	if (made_base)
		(void)host_dm_remove(base_name, NULL, NULL);
	return r;
}

int host_rootdisk_ensure(const struct host_vm *vm, enum disk_mode mode, struct host_disk *ret,
			 struct bg_err *err)
{
	uint64_t image_bytes = 0, size = 0;
	int r;

	r = check_vm(vm, err);
	if (r < 0)
		return r;
	if ((int)mode < 0 || mode >= DISK_MODE_MAX)
		return bg_errorf(err, EINVAL, "vm %s: invalid disk mode %d", vm->id, (int)mode);
	r = rootdisk_target(vm, &image_bytes, &size, err);
	if (r < 0)
		return bg_err_wrap(err, "vm %s", vm->id);
	if (mode != DISK_MODE_DM_SNAPSHOT)
		return rootdisk_file_ensure(vm, mode, size, ret, err);
	dm_begin();
	r = rootdisk_dm_ensure(vm, image_bytes, size, ret, err);
	dm_end();
	if (r < 0)
		return bg_err_wrap(err, "vm %s: dm-snapshot root disk", vm->id);
	return 0;
}

int host_rootdisk_deactivate(const struct host_vm *vm, struct bg_err *err)
{
	char name[64], base_name[64];
	_cleanup_strv_free_ char **deps = NULL;
	_cleanup_strv_free_ char **base_deps = NULL;
	_cleanup_strv_free_ char **cow_loops = NULL;
	int r;

	r = check_vm(vm, err);
	if (r < 0)
		return r;
	(void)host_dm_names(vm->id, name, NULL, base_name, NULL);
	if (host_dm_available()) {
		struct dm_info info;

		dm_begin();
		/* Note the image loops first: after removal nothing names them. */
		if (dm_info(name, &info, NULL) == 0 && info.exists)
			(void)dm_deps(name, &deps, NULL);
		if (dm_info(base_name, &info, NULL) == 0 && info.exists)
			(void)dm_deps(base_name, &base_deps, NULL);
		dm_end();
		r = host_dm_remove(name, NULL, err);
		if (r < 0)
			return bg_err_wrap(err, "vm %s: deactivate root disk", vm->id);
		r = host_dm_remove(base_name, NULL, err);
		if (r < 0)
			return bg_err_wrap(err, "vm %s: deactivate root disk", vm->id);
	}
	/* Loops on our own COW file are ours alone: detach and check. */
	r = host_loop_find(vm->cow_disk, &cow_loops, NULL, err);
	if (r < 0)
		return bg_err_wrap(err, "vm %s: deactivate root disk", vm->id);
	for (char **l = cow_loops; *l; l++) {
		r = host_loop_detach(*l, vm->cow_disk, NULL, err);
		if (r < 0)
			return bg_err_wrap(err, "vm %s: deactivate root disk", vm->id);
	}
	/*
	 * Image loops are shared by file with other VMs; ours were AUTOCLEAR and
	 * went with the dm devices. One still backed by the image (nobody holds
	 * it) gets LOOP_CLR_FD, which is harmless for a loop someone else holds.
	 */
	for (int pass = 0; pass < 2; pass++) {
		char **list = pass == 0 ? deps : base_deps;

		for (char **d = list; d && *d; d++) {
			char loop[HOST_LOOP_DEV_MAX];

			if (devno_to_loop(*d, loop) && vm->rootfs_image)
				(void)host_loop_detach(loop, vm->rootfs_image,
						       &(struct host_retry){ .tries = 1 }, NULL);
		}
	}
	return 0;
}

int host_rootdisk_remove(const struct host_vm *vm, struct bg_err *err)
{
	_cleanup_free_ char *tmp = NULL;
	int r;

	r = host_rootdisk_deactivate(vm, err);
	if (r < 0)
		return r;
	tmp = tmp_path(vm->cow_disk);
	r = unlink_missing_ok(tmp, err);
	if (r < 0)
		return bg_err_wrap(err, "vm %s", vm->id);
	r = unlink_missing_ok(vm->cow_disk, err);
	if (r < 0)
		return bg_err_wrap(err, "vm %s", vm->id);
	return 0;
}
