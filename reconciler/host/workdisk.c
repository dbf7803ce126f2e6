/*
 * workdisk.c - a VM's optional work disk: a sparse file of work_disk_mib,
 * formatted ext4 by mke2fs (argv, never a shell) the first time, then kept as
 * it is across restarts and removed with the VM. It is built under
 * "<file>.tmp" and renamed into place, so a half-formatted file is never
 * taken for a finished one. A larger work_disk_mib grows the file, then its
 * filesystem (extfs.c); since that second part is decided from the
 * superblock, a crash between the two is finished by the next ensure. A
 * smaller one is refused: shrinking would lose the guest's data.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

#define MIB (1024ULL * 1024ULL)
#define MAX_WORK_MIB (1ULL << 30)
#define MKE2FS_TIMEOUT_MS 300000

static int check_workdisk(const struct host_vm *vm, struct bg_err *err)
{
	if (!vm || !host_valid_id(vm->id))
		return bg_errorf(err, EINVAL, "invalid VM id '%s'", vm && vm->id ? vm->id : "");
	if (vm->work_disk && vm->work_disk[0] != '/')
		return bg_errorf(err, EINVAL, "vm %s: the work disk path must be absolute", vm->id);
	return 0;
}

/* An existing work disk: grow it (file, then filesystem) to work_disk_mib, never shrink it. */
static int grow(const struct host_vm *vm, const struct stat *st, struct bg_err *err)
{
	uint64_t want = vm->work_disk_mib * MIB;
	int r;

	if ((uint64_t)st->st_size > want)
		return bg_errorf(err, EINVAL,
				 "vm %s: work disk is %llu MiB, spec asks %llu MiB: shrinking is "
				 "not supported; the disk is left as it is",
				 vm->id, (unsigned long long)((uint64_t)st->st_size / MIB),
				 (unsigned long long)vm->work_disk_mib);
	if ((uint64_t)st->st_size < want) {
		_cleanup_close_ int fd = open(vm->work_disk, O_RDWR | O_CLOEXEC | O_NOFOLLOW);

		if (fd < 0)
			return bg_error(err, errno, "vm %s: open work disk '%s'", vm->id,
					vm->work_disk);
		if (ftruncate(fd, (off_t)want) < 0)
			return bg_error(err, errno, "vm %s: grow work disk '%s' to %llu MiB",
					vm->id, vm->work_disk,
					(unsigned long long)vm->work_disk_mib);
		if (fsync(fd) < 0)
			return bg_error(err, errno, "vm %s: fsync work disk '%s'", vm->id,
					vm->work_disk);
	}
	r = host_ext_grow(vm->work_disk, err);
	if (r < 0)
		return bg_err_wrap(err, "vm %s: work disk", vm->id);
	return 0;
}

int host_workdisk_ensure(const struct host_vm *vm, struct bg_err *err)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_free_ char *mke2fs = NULL;
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	r = check_workdisk(vm, err);
	if (r < 0 || !vm->work_disk)
		return r;
	if (vm->work_disk_mib == 0 || vm->work_disk_mib > MAX_WORK_MIB)
		return bg_errorf(err, EINVAL, "vm %s: invalid work disk size %llu MiB", vm->id,
				 (unsigned long long)vm->work_disk_mib);
	if (lstat(vm->work_disk, &st) == 0) {
		if (!S_ISREG(st.st_mode))
			return bg_errorf(err, EEXIST, "vm %s: work disk '%s' is not a regular file",
					 vm->id, vm->work_disk);
		return grow(vm, &st, err); /* made earlier: its data is the point, keep it */
	}
	if (errno != ENOENT)
		return bg_error(err, errno, "vm %s: work disk '%s'", vm->id, vm->work_disk);

	mke2fs = host_find_tool("mke2fs");
	if (!mke2fs)
		return bg_errorf(err, ENOENT,
				 "vm %s: work disk: 'mke2fs' (Debian package e2fsprogs) is not "
				 "installed",
				 vm->id);
	tmp = xasprintf("%s.tmp", vm->work_disk);
	if (unlink(tmp) < 0 && errno != ENOENT)
		return bg_error(err, errno, "vm %s: remove stale '%s'", vm->id, tmp);
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return bg_error(err, errno, "vm %s: create '%s'", vm->id, tmp);
	if (ftruncate(fd, (off_t)(vm->work_disk_mib * MIB)) < 0) {
		r = bg_error(err, errno, "size '%s'", tmp);
		goto fail;
	}
	{
		const char *argv[] = {
			mke2fs, "-F", "-q", "-t", "ext4", "-E", "root_owner=0:0,lazy_itable_init=1",
			"--",	tmp,  NULL
		};
		r = proc_run(argv, MKE2FS_TIMEOUT_MS, NULL, err);
		if (r < 0)
			goto fail;
	}
	if (fchown(fd, vm->owner_uid, vm->owner_gid) < 0) {
		r = bg_error(err, errno, "chown '%s'", tmp);
		goto fail;
	}
	if (fsync(fd) < 0) {
		r = bg_error(err, errno, "fsync '%s'", tmp);
		goto fail;
	}
	if (rename(tmp, vm->work_disk) < 0) {
		r = bg_error(err, errno, "rename '%s'", tmp);
		goto fail;
	}
	(void)fs_fsync_parent(vm->work_disk, NULL);
	return 0;
fail:
	(void)unlink(tmp);
	return bg_err_wrap(err, "vm %s: work disk", vm->id);
}

int host_workdisk_remove(const struct host_vm *vm, struct bg_err *err)
{
	_cleanup_free_ char *tmp = NULL;
	int r;

	r = check_workdisk(vm, err);
	if (r < 0 || !vm->work_disk)
		return r;
	tmp = xasprintf("%s.tmp", vm->work_disk);
	if (unlink(tmp) < 0 && errno != ENOENT)
		return bg_error(err, errno, "vm %s: remove '%s'", vm->id, tmp);
	if (unlink(vm->work_disk) < 0 && errno != ENOENT)
		return bg_error(err, errno, "vm %s: remove work disk '%s'", vm->id, vm->work_disk);
	return 0;
}
