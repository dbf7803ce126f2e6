/*
 * fs.c - atomic file replace, mkdir -p, bounded reads, rm -rf; see fs.h.
 */
#include "common/fs.h"

#include <dirent.h>
#include <errno.h>
#include <linux/openat2.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

static int fsync_dir_of(const char *path, struct bg_err *err)
{
	_cleanup_free_ char *copy = xstrdup(path);
	_cleanup_close_ int dfd = -1;
	const char *dir = dirname(copy);

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return bg_error(err, errno, "open directory '%s'", dir);
	if (fsync(dfd) < 0)
		return bg_error(err, errno, "fsync directory '%s'", dir);
	return 0;
}

int fs_fsync_parent(const char *path, struct bg_err *err)
{
	return fsync_dir_of(path, err);
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, struct bg_err *err)
{
	return fs_write_atomic_checked(path, data, len, mode, geteuid(), getegid(), NULL, NULL,
				       err);
}

int fs_write_atomic_owned(const char *path, const void *data, size_t len, mode_t mode, uid_t uid,
			  gid_t gid, struct bg_err *err)
{
	return fs_write_atomic_checked(path, data, len, mode, uid, gid, NULL, NULL, err);
}

/* A temp file next to 'path' with the data, mode and owner, fsynced and closed. */
static int write_temp(const char *path, const void *data, size_t len, mode_t mode, uid_t uid,
		      gid_t gid, char **ret_tmp, struct bg_err *err)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.XXXXXX", path);
	int fd, r;

	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return bg_error(err, errno, "create temp file for '%s'", path);
	if (fchmod(fd, mode) < 0) {
		r = bg_error(err, errno, "chmod '%s'", tmp);
		goto fail;
	}
	if ((uid != geteuid() || gid != getegid()) && fchown(fd, uid, gid) < 0) {
		r = bg_error(err, errno, "chown '%s'", tmp);
		goto fail;
	}
	r = write_all(fd, data, len);
	if (r < 0) {
		r = bg_error(err, -r, "write '%s'", tmp);
		goto fail;
	}
	if (fsync(fd) < 0) {
		/* Never retry a failed fsync: the kernel may have dropped the pages. */
		r = bg_error(err, errno, "fsync '%s'", tmp);
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = bg_error(err, errno, "close '%s'", tmp);
		goto fail;
	}
	*ret_tmp = TAKE_PTR(tmp);
	return 0;
fail:
	if (fd >= 0)
		(void)close(fd);
	(void)unlink(tmp);
	return r;
}

int fs_write_atomic_checked(const char *path, const void *data, size_t len, mode_t mode, uid_t uid,
			    gid_t gid,
			    int (*check)(const char *path, void *userdata, struct bg_err *err),
			    void *userdata, struct bg_err *err)
{
	_cleanup_free_ char *tmp = NULL;
	int r;

	r = write_temp(path, data, len, mode, uid, gid, &tmp, err);
	if (r < 0)
		return r;
	if (check) {
		r = check(path, userdata, err);
		if (r < 0)
			goto fail;
	}
	if (rename(tmp, path) < 0) {
		r = bg_error(err, errno, "rename '%s' to '%s'", tmp, path);
		goto fail;
	}
	return fsync_dir_of(path, err);
fail:
	(void)unlink(tmp);
	return r;
}

int fs_write_new(const char *path, const void *data, size_t len, mode_t mode, struct bg_err *err)
{
	_cleanup_free_ char *tmp = NULL;
	int r, e;

	r = write_temp(path, data, len, mode, geteuid(), getegid(), &tmp, err);
	if (r < 0)
		return r;
	/* Both put the complete file in place, or fail with EEXIST when 'path' exists. */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return fsync_dir_of(path, err);
	e = errno;
	if (e == EINVAL || e == ENOSYS || e == EOPNOTSUPP)
		e = link(tmp, path) == 0 ? 0 : errno; /* a filesystem without the flag */
	(void)unlink(tmp);
	if (e == EEXIST)
		return bg_errorf(err, EEXIST, "'%s' exists", path);
	if (e)
		return bg_error(err, e, "create '%s'", path);
	return fsync_dir_of(path, err);
}

int fs_mkdir_p(const char *path, mode_t mode, struct bg_err *err)
{
	_cleanup_free_ char *copy = NULL;
	struct stat st;
	char *p;

	if (!path || !*path)
		return bg_errorf(err, EINVAL, "mkdir: empty path");
	copy = xstrdup(path);
	for (p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755 | mode) < 0 && errno != EEXIST)
			return bg_error(err, errno, "mkdir '%s'", copy);
		*p = '/';
	}
	if (mkdir(copy, mode) < 0) {
		if (errno != EEXIST)
			return bg_error(err, errno, "mkdir '%s'", copy);
		if (stat(copy, &st) < 0)
			return bg_error(err, errno, "stat '%s'", copy);
		if (!S_ISDIR(st.st_mode))
			return bg_errorf(err, ENOTDIR, "'%s' exists and is not a directory", copy);
		/* Someone's existing directory: its mode is theirs to choose. */
		return 0;
	}
	/*
	 * mkdir() applies the umask; the caller asked for exactly 'mode'. The
	 * umask only removes bits, so the directory is never more open than
	 * 'mode' in between.
	 */
	if (chmod(copy, mode) < 0)
		return bg_error(err, errno, "chmod '%s'", copy);
	return 0;
}

int fs_read_fd(int fd, size_t max, const char *name, char **ret_data, size_t *ret_len,
	       struct bg_err *err)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0, alloc = 4096;

	data = xmalloc(alloc);
	for (;;) {
		ssize_t n;

		if (len + 1 >= alloc) {
			if (alloc > max + 1)
				return bg_errorf(err, EFBIG, "'%s' is larger than %zu bytes", name,
						 max);
			alloc *= 2;
			data = xrealloc(data, alloc);
		}
		n = read(fd, data + len, alloc - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return bg_error(err, errno, "read '%s'", name);
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max)
			return bg_errorf(err, EFBIG, "'%s' is larger than %zu bytes", name, max);
	}
	data[len] = '\0';
	*ret_data = TAKE_PTR(data);
	if (ret_len)
		*ret_len = len;
	return 0;
}

int fs_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return bg_error(err, errno, "open '%s'", path);
	return fs_read_fd(fd, max, path, ret_data, ret_len, err);
}

static int remove_at(int dfd, const char *name, dev_t dev, struct bg_err *err)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return bg_error(err, errno, "stat '%s'", name);
	}
	if (S_ISDIR(st.st_mode)) {
		_cleanup_close_ int sub = -1;
		DIR *d;
		struct dirent *de;
		int r = 0;

		if (st.st_dev != dev)
			return bg_errorf(err, EXDEV, "'%s' is on another filesystem, not removing",
					 name);
		sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			return bg_error(err, errno, "open '%s'", name);
		d = fdopendir(sub);
		if (!d)
			return bg_error(err, errno, "opendir '%s'", name);
		sub = -1; /* owned by d now */
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			r = remove_at(dirfd(d), de->d_name, dev, err);
			if (r < 0)
				break;
		}
		closedir(d);
		if (r < 0)
			return r;
		if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			return bg_error(err, errno, "rmdir '%s'", name);
		return 0;
	}
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		return bg_error(err, errno, "unlink '%s'", name);
	return 0;
}

int fs_remove_tree(const char *path, struct bg_err *err)
{
	struct stat st;
	int r;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return bg_error(err, errno, "stat '%s'", path);
	}
	r = remove_at(AT_FDCWD, path, st.st_dev, err);
	if (r < 0)
		return bg_err_wrap(err, "remove '%s'", path);
	return 0;
}

bool fs_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

char *fs_path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	while (*name == '/')
		name++;
	return xasprintf("%.*s/%s", (int)n, dir, name);
}

int fs_open_beneath(int dirfd, const char *rel, uint64_t flags, uint64_t resolve)
{
	struct open_how how = {
		.flags = flags | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | resolve,
	};
	int fd, tries = 0;

	do
		fd = (int)syscall(SYS_openat2, dirfd, *rel ? rel : ".", &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN && ++tries < 64);
	return fd;
}

int fs_copy_fd(int in_fd, int out_fd, uint64_t max, const char *name, struct bg_err *err)
{
	char buf[65536];
	loff_t off = 0;
	bool rw = false;

	for (;;) {
		/* Up to 1 GiB at a time; at 'max', one byte more tells EOF from too big. */
		uint64_t left = (uint64_t)off < max ? max - (uint64_t)off : 1;
		size_t want = left < (1U << 30) ? (size_t)left : (1U << 30);
		ssize_t n = -1;

		if (!rw) {
			n = copy_file_range(in_fd, &off, out_fd, NULL, want, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP))
				rw = true; /* not between these two files: read and write */
		}
		if (rw) {
			n = pread(in_fd, buf, want < sizeof(buf) ? want : sizeof(buf), off);
			for (ssize_t done = 0; n > 0 && done < n;) {
				ssize_t w = write(out_fd, buf + done, (size_t)(n - done));

				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					return bg_error(err, errno, "copy '%s'", name);
				done += w;
			}
			if (n > 0)
				off += n;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return bg_error(err, errno, "copy '%s'", name);
		if (n == 0)
			return 0;
		if ((uint64_t)off > max)
			return bg_errorf(err, EFBIG, "'%s' is larger than %llu bytes", name,
					 (unsigned long long)max);
	}
}
