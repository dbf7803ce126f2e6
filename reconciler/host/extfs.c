/*
 * extfs.c - growing an ext2/3/4 filesystem to the disk it sits on: the root
 * disk after its image was copied into a larger disk, the work disk after
 * work_disk_mib grew. The superblock is read here (magic, blocks count,
 * block size), so the common case -- nothing to grow -- costs one pread and
 * runs no program; growing runs 'e2fsck -fy' and 'resize2fs' (argv, never a
 * shell) on the unmounted disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

#define MIB (1024ULL * 1024ULL)
#define GROW_SLACK MIB		/* a filesystem this close to the disk's size is left alone */
#define TOOL_TIMEOUT_MS 1800000 /* e2fsck of a large, damaged disk can take long */
#define E2FSCK_WORST_OK 3	/* 1: errors corrected, 2/3: corrected, reboot advised */

/* Superblock fields (ext4 on-disk layout, little endian). */
#define SB_BLOCKS_LO 4
#define SB_LOG_BLOCK_SIZE 24
#define SB_MAGIC 56
#define SB_FEATURE_INCOMPAT 96
#define SB_BLOCKS_HI 336
#define EXT_MAGIC 0xEF53
#define INCOMPAT_64BIT 0x80
#define MAX_LOG_BLOCK_SIZE 6 /* 64 KiB blocks */

static uint32_t le16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int host_ext_fs_bytes(const uint8_t sb[HOST_EXT_SB_SIZE], uint64_t *ret_bytes)
{
	uint64_t blocks;
	uint32_t log;

	if (le16(sb + SB_MAGIC) != EXT_MAGIC)
		return -EINVAL;
	log = le32(sb + SB_LOG_BLOCK_SIZE);
	if (log > MAX_LOG_BLOCK_SIZE)
		return -EINVAL;
	blocks = le32(sb + SB_BLOCKS_LO);
	if (le32(sb + SB_FEATURE_INCOMPAT) & INCOMPAT_64BIT)
		blocks |= (uint64_t)le32(sb + SB_BLOCKS_HI) << 32;
	if (blocks == 0 || blocks > (UINT64_MAX >> (10 + log)))
		return -EINVAL;
	*ret_bytes = blocks << (10 + log);
	return 0;
}

/* Size of a regular file or block device open on fd. */
static int disk_size(int fd, const char *path, uint64_t *ret, struct bg_err *err)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "stat '%s'", path);
	if (S_ISREG(st.st_mode)) {
		*ret = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, ret) < 0)
			return bg_error(err, errno, "size of '%s'", path);
		return 0;
	}
	return bg_errorf(err, EINVAL, "'%s' is neither a file nor a block device", path);
}

/*
 * A tool's output on one line for an error message (owned): lines joined
 * with " | ", blank ones dropped, runs of spaces squeezed, at most
 * OUTPUT_SHOWN chars from the start, where e2fsck says what is wrong.
 */
#define OUTPUT_SHOWN 1024
static char *one_line(const char *out)
{
	char *ret = xmalloc(OUTPUT_SHOWN + 4);
	bool space = false, newline = false;
	size_t o = 0;

	for (size_t i = 0; out && out[i] && o < OUTPUT_SHOWN; i++) {
		char c = out[i];

		if (c == '\n') {
			newline = o > 0;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\r') {
			space = o > 0;
			continue;
		}
		if (newline) {
			memcpy(ret + o, " | ", 3);
			o += 3;
		} else if (space) {
			ret[o++] = ' ';
		}
		newline = space = false;
		ret[o++] = c;
	}
	ret[o] = '\0';
	return ret;
}

int host_ext_grow(const char *path, struct bg_err *err)
{
	_cleanup_free_ char *e2fsck = NULL, *resize2fs = NULL, *out = NULL;
	uint8_t sb[HOST_EXT_SB_SIZE];
	uint64_t size = 0, fs_bytes = 0;
	int status = 0, r;

	if (!path || path[0] != '/')
		return bg_errorf(err, EINVAL, "grow filesystem: the disk path must be absolute");
	{
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			return bg_error(err, errno, "open '%s'", path);
		r = disk_size(fd, path, &size, err);
		if (r < 0)
			return r;
		n = pread(fd, sb, sizeof(sb), HOST_EXT_SB_OFFSET);
		if (n < 0)
			return bg_error(err, errno, "read '%s'", path);
		if ((size_t)n < sizeof(sb) || host_ext_fs_bytes(sb, &fs_bytes) < 0)
			return 0; /* not a bare ext filesystem */
	}
	if (fs_bytes >= size || size - fs_bytes <= GROW_SLACK)
		return 0;

	e2fsck = host_find_tool("e2fsck");
	resize2fs = host_find_tool("resize2fs");
	if (!e2fsck || !resize2fs)
		return bg_errorf(err, ENOENT,
				 "grow '%s': 'e2fsck' and 'resize2fs' (Debian package e2fsprogs) "
				 "are needed",
				 path);
	{
		/* path is absolute, so never taken for an option (e2fsck has no "--"). */
		const char *argv[] = { e2fsck, "-f", "-y", path, NULL };

		r = proc_run_status(argv, TOOL_TIMEOUT_MS, &out, &status, err);
		if (r < 0)
			return bg_err_wrap(err, "grow '%s': e2fsck", path);
		if (status > E2FSCK_WORST_OK) {
			_cleanup_free_ char *shown = one_line(out);

			return bg_errorf(err, EIO,
					 "grow '%s': 'e2fsck -fy' exited with status %d, the "
					 "filesystem is left as it is: %s",
					 path, status, shown);
		}
	}
	{
		const char *argv[] = { resize2fs, path, NULL };

		free(out);
		out = NULL;
		r = proc_run(argv, TOOL_TIMEOUT_MS, &out, err);
		if (r < 0)
			return bg_err_wrap(err, "grow '%s': resize2fs", path);
	}
	return 1;
}

int host_rootfs_grow(const char *path, struct bg_err *err)
{
	int r = host_ext_grow(path, err);

	if (r < 0)
		return bg_err_wrap(err, "root filesystem");
	return r;
}
