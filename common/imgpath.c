/*
 * imgpath.c - confining spec-named image files to the image roots; see
 * imgpath.h.
 */
#include "common/imgpath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"

/* Absolute, no "." / ".." / empty components, no trailing '/'; "/" itself is not. */
static const char *normalized_rule(const char *p)
{
	const char *c;

	if (!p || p[0] != '/')
		return "the path must be absolute";
	if (p[1] == '\0')
		return "the path must name a file below an image directory";
	for (c = p; *c;) {
		const char *next = strchr(c + 1, '/');
		size_t n = next ? (size_t)(next - c - 1) : strlen(c + 1);

		if (n == 0)
			return "the path must not contain '//' or end in '/'";
		if ((n == 1 && c[1] == '.') || (n == 2 && c[1] == '.' && c[2] == '.'))
			return "the path must not contain '.' or '..' components";
		if (!next)
			break;
		c = next;
	}
	return NULL;
}

/* 'p' is 'dir' or below it (both normalized). */
static bool at_or_below(const char *p, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* 'p' is strictly below 'dir'. */
static bool strictly_below(const char *p, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(p, dir, n) == 0 && p[n] == '/' && p[n + 1] != '\0';
}

static const char *const private_dirs[] = { "vms", "ssh" };

int imgpath_root_check(const char *root, const char *state_dir, struct bg_err *err)
{
	const char *rule = normalized_rule(root);

	if (rule)
		return bg_errorf(err, EINVAL, "image directory '%s': %s", root ? root : "", rule);
	if (!state_dir)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(private_dirs); i++) {
		_cleanup_free_ char *d = fs_path_join(state_dir, private_dirs[i]);

		if (at_or_below(root, d))
			return bg_errorf(err, EINVAL,
					 "image directory '%s' must not be inside '%s' "
					 "(banger's private files)",
					 root, d);
	}
	return 0;
}

static void roots_list(const struct imgpath_conf *conf, struct buf *b)
{
	for (size_t i = 0; i < conf->n_roots; i++)
		buf_addf(b, "%s%s", i ? ", " : "", conf->roots[i]);
	if (!conf->n_roots)
		buf_adds(b, "none configured");
}

int imgpath_check(const struct imgpath_conf *conf, const char *path, struct bg_err *err)
{
	const char *rule = normalized_rule(path);
	_cleanup_buf_ struct buf b = { 0 };

	if (rule)
		return bg_errorf(err, EINVAL, "'%s': %s", path ? path : "", rule);
	if (conf->state_dir) {
		for (size_t i = 0; i < ARRAY_SIZE(private_dirs); i++) {
			_cleanup_free_ char *d = fs_path_join(conf->state_dir, private_dirs[i]);

			if (at_or_below(path, d))
				return bg_errorf(err, EINVAL,
						 "'%s' is inside banger's private directory '%s'",
						 path, d);
		}
	}
	for (size_t i = 0; i < conf->n_roots; i++)
		if (strictly_below(path, conf->roots[i]))
			return 0;
	buf_init(&b);
	roots_list(conf, &b);
	return bg_errorf(err, EINVAL, "'%s' is not below an image directory (--image-dir: %s)",
			 path, b.data);
}

/* The root 'path' is strictly below (the longest, so nested roots resolve beneath the inner one). */
static const char *root_of(const struct imgpath_conf *conf, const char *path)
{
	const char *best = NULL;

	for (size_t i = 0; i < conf->n_roots; i++)
		if (strictly_below(path, conf->roots[i]) &&
		    (!best || strlen(conf->roots[i]) > strlen(best)))
			best = conf->roots[i];
	return best;
}

/* Beneath the image root with no symlinks at all. Returns the fd or -errno. */
static int openat2_beneath(int dirfd, const char *rel, uint64_t flags)
{
	int fd = fs_open_beneath(dirfd, rel, flags, RESOLVE_NO_SYMLINKS);

	return fd < 0 ? -errno : fd;
}

static const char *resolve_rule(int r)
{
	switch (r) {
	case -ELOOP:
		return "a symlink on the way (symlinks are not followed below an image directory)";
	case -EXDEV:
		return "it escapes its image directory";
	default:
		return NULL;
	}
}

static int check_file(const char *path, const struct stat *st, struct bg_err *err)
{
	if (!S_ISREG(st->st_mode))
		return bg_errorf(err, EINVAL, "'%s' is not a regular file (%s)", path,
				 S_ISFIFO(st->st_mode)	 ? "a FIFO"
				 : S_ISCHR(st->st_mode)	 ? "a character device"
				 : S_ISBLK(st->st_mode)	 ? "a block device"
				 : S_ISSOCK(st->st_mode) ? "a socket"
				 : S_ISDIR(st->st_mode)	 ? "a directory"
							 : "not a file");
	if (st->st_uid != 0)
		return bg_errorf(err, EPERM, "'%s' must be owned by root (owner uid %u)", path,
				 (unsigned)st->st_uid);
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return bg_errorf(err, EPERM, "'%s' must not be group or world writable (mode %04o)",
				 path, (unsigned)(st->st_mode & 07777));
	return 0;
}

/*
 * The lexical rule again on the file's canonical name against the canonical
 * state dir: a state dir reached through a symlink (or an image dir that is
 * one) must not make banger's private files reachable under another name.
 */
static int check_not_private(const struct imgpath_conf *conf, const char *path, int fd,
			     struct bg_err *err)
{
	_cleanup_free_ char *state = NULL;
	char link[64], real[PATH_MAX];
	ssize_t n;

	if (!conf->state_dir)
		return 0;
	state = realpath(conf->state_dir, NULL);
	if (!state)
		return 0; /* no state dir yet: nothing private to reach */
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, real, sizeof(real) - 1);
	if (n < 0)
		return bg_error(err, errno, "'%s': readlink %s", path, link);
	real[n] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(private_dirs); i++) {
		_cleanup_free_ char *d = fs_path_join(state, private_dirs[i]);

		if (at_or_below(real, d))
			return bg_errorf(err, EINVAL,
					 "'%s' is '%s', inside banger's private directory '%s'",
					 path, real, d);
	}
	return 0;
}

int imgpath_open_at(const struct imgpath_conf *conf, const char *path, struct stat *ret_st,
		    struct bg_err *err)
{
	_cleanup_close_ int root_fd = -1, path_fd = -1, fd = -1;
	struct stat pst, st;
	const char *root, *rel;
	int r;

	r = imgpath_check(conf, path, err);
	if (r < 0)
		return r;
	root = root_of(conf, path);
	rel = path + strlen(root) + 1;
	root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return bg_error(err, errno, "image directory '%s'", root);

	path_fd = openat2_beneath(root_fd, rel, O_PATH | O_NOFOLLOW);
	if (path_fd < 0) {
		const char *why = resolve_rule(path_fd);

		if (why)
			return bg_errorf(err, -path_fd, "'%s': %s", path, why);
		return bg_error(err, -path_fd, "'%s'", path);
	}
	if (fstat(path_fd, &pst) < 0)
		return bg_error(err, errno, "stat '%s'", path);
	if (S_ISLNK(pst.st_mode))
		return bg_errorf(err, ELOOP, "'%s' is a symlink (symlinks are not followed)", path);
	r = check_file(path, &pst, err);
	if (r < 0)
		return r;

	/* Only now is it opened for reading; O_NONBLOCK in case it was swapped for a FIFO. */
	fd = openat2_beneath(root_fd, rel, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0) {
		const char *why = resolve_rule(fd);

		if (why)
			return bg_errorf(err, -fd, "'%s': %s", path, why);
		return bg_error(err, -fd, "open '%s'", path);
	}
	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "stat '%s'", path);
	if (st.st_dev != pst.st_dev || st.st_ino != pst.st_ino)
		return bg_errorf(err, EAGAIN, "'%s' changed while it was opened; try again", path);
	r = check_file(path, &st, err);
	if (r < 0)
		return r;
	r = check_not_private(conf, path, fd, err);
	if (r < 0)
		return r;
	if (fcntl(fd, F_SETFL, 0) < 0)
		return bg_error(err, errno, "'%s': clear O_NONBLOCK", path);
	if (ret_st)
		*ret_st = st;
	return TAKE_FD(fd);
}

int imgpath_copy_fd(int src_fd, const char *dst, struct bg_err *err)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int out = -1;
	int r;

	if (asprintf(&tmp, "%s.tmp", dst) < 0)
		return bg_error(err, ENOMEM, "copy to '%s'", dst);
	(void)unlink(tmp);
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0)
		return bg_error(err, errno, "create '%s'", tmp);
	r = fs_copy_fd(src_fd, out, UINT64_MAX, dst, err);
	if (r < 0)
		goto fail;
	if (fchmod(out, 0600) < 0 || fsync(out) < 0) {
		r = bg_error(err, errno, "'%s'", tmp);
		goto fail;
	}
	if (rename(tmp, dst) < 0) {
		r = bg_error(err, errno, "rename '%s'", tmp);
		goto fail;
	}
	return 0;
fail:
	(void)unlink(tmp);
	return r;
}
