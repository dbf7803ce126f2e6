/*
 * loop.c - loop devices: attach a file (LOOP_CTL_GET_FREE + LOOP_CONFIGURE,
 * always LO_FLAGS_AUTOCLEAR), find loops by backing file in sysfs, detach
 * with LOOP_CLR_FD and check in sysfs that the detach really happened: a loop
 * that someone holds open only gets AUTOCLEAR and stays until its last user
 * closes it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

#define DELETED_SUFFIX " (deleted)"
#define ATTACH_TRIES 32

/* "/dev/loopN" -> N; -EINVAL for anything else. */
static int loop_number(const char *dev)
{
	const char *p;
	char *end;
	long n;

	if (!dev || strncmp(dev, "/dev/loop", 9) != 0)
		return -EINVAL;
	p = dev + 9;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	n = strtol(p, &end, 10);
	if (errno || *end || n < 0 || n > INT_MAX)
		return -EINVAL;
	return (int)n;
}

/* sysfs backing_file of loopN into ret: 0, -ENXIO when not attached. */
static int read_backing(int n, char *ret, size_t size)
{
	char path[96];
	_cleanup_close_ int fd = -1;
	ssize_t len;

	snprintf(path, sizeof(path), "/sys/block/loop%d/loop/backing_file", n);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENXIO : -errno;
	len = read(fd, ret, size - 1);
	if (len < 0)
		return -errno;
	if (len == 0)
		return -ENXIO;
	ret[len] = '\0';
	if (ret[len - 1] == '\n')
		ret[len - 1] = '\0';
	return 0;
}

int host_loop_backing(const char *dev, char *ret, size_t size)
{
	int n = loop_number(dev);

	if (n < 0)
		return n;
	return read_backing(n, ret, size);
}

/* Compare a sysfs backing_file with a path, ignoring a " (deleted)" suffix. */
static bool backing_matches(const char *backing, const char *path)
{
	size_t bl = strlen(backing), pl = strlen(path), sl = strlen(DELETED_SUFFIX);

	if (bl >= sl && strcmp(backing + bl - sl, DELETED_SUFFIX) == 0)
		bl -= sl;
	if (pl >= sl && strcmp(path + pl - sl, DELETED_SUFFIX) == 0)
		pl -= sl;
	return bl == pl && memcmp(backing, path, bl) == 0;
}

/*
 * The path the kernel would show for 'path': realpath() when it exists, else
 * its resolved directory plus its name (for a file already deleted).
 */
static char *resolve(const char *path)
{
	char *rp = realpath(path, NULL);
	_cleanup_free_ char *dir = NULL;
	const char *slash;

	if (rp)
		return rp;
	slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(path);
	dir = xstrndup(path, (size_t)(slash - path));
	rp = realpath(*dir ? dir : "/", NULL);
	if (!rp)
		return xstrdup(path);
	{
		char *joined = xasprintf("%s/%s", strcmp(rp, "/") == 0 ? "" : rp, slash + 1);
		free(rp);
		return joined;
	}
}

int host_loop_attach(const char *path, bool read_only, char ret_dev[HOST_LOOP_DEV_MAX],
		     struct bg_err *err)
{
	_cleanup_close_ int file = -1;

	file = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (file < 0)
		return bg_error(err, errno, "open '%s'", path);
	return host_loop_attach_fd(file, path, read_only, ret_dev, err);
}

int host_loop_attach_fd(int file, const char *path, bool read_only, char ret_dev[HOST_LOOP_DEV_MAX],
			struct bg_err *err)
{
	_cleanup_close_ int ctl = -1;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return bg_error(err, errno, "open /dev/loop-control");
	for (int attempt = 0; attempt < ATTACH_TRIES; attempt++) {
		_cleanup_close_ int loop = -1;
		struct loop_config cfg;
		char dev[HOST_LOOP_DEV_MAX];
		int n;

		n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return bg_error(err, errno, "LOOP_CTL_GET_FREE");
		snprintf(dev, sizeof(dev), "/dev/loop%d", n);
		loop = open(dev, O_RDWR | O_CLOEXEC);
		if (loop < 0) {
			/* The node may lag behind the device for a moment. */
			if (errno == ENOENT || errno == ENXIO) {
				sleep_ms(10);
				continue;
			}
			return bg_error(err, errno, "open %s", dev);
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (unsigned int)file;
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
		snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", path);
		if (ioctl(loop, LOOP_CONFIGURE, &cfg) == 0) {
			snprintf(ret_dev, HOST_LOOP_DEV_MAX, "%s", dev);
			return TAKE_FD(loop);
		}
		if (errno == EBUSY)
			continue; /* another process took it between GET_FREE and CONFIGURE */
		return bg_error(err, errno, "attach '%s' to %s", path, dev);
	}
	return bg_errorf(err, EBUSY, "attach '%s': no free loop device after %d tries", path,
			 ATTACH_TRIES);
}

int host_loop_foreach(int (*cb)(const char *dev, const char *backing, void *userdata),
		      void *userdata, struct bg_err *err)
{
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	int r = 0;

	if (!d)
		return bg_error(err, errno, "open /sys/block");
	while ((de = readdir(d))) {
		char dev[300];
		char backing[PATH_MAX + 16];
		int n;

		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
		n = loop_number(dev);
		if (n < 0 || read_backing(n, backing, sizeof(backing)) < 0)
			continue;
		r = cb(dev, backing, userdata);
		if (r < 0)
			break;
	}
	closedir(d);
	return r < 0 ? r : 0;
}

struct find_ctx {
	const char *path;
	char **v;
	size_t n;
};

static int find_cb(const char *dev, const char *backing, void *userdata)
{
	struct find_ctx *c = userdata;

	if (!backing_matches(backing, c->path))
		return 0;
	c->v = xreallocarray(c->v, c->n + 2, sizeof(*c->v));
	c->v[c->n++] = xstrdup(dev);
	c->v[c->n] = NULL;
	return 0;
}

int host_loop_find(const char *path, char ***ret, size_t *ret_n, struct bg_err *err)
{
	_cleanup_free_ char *resolved = resolve(path);
	struct find_ctx c = { .path = resolved };
	int r;

	r = host_loop_foreach(find_cb, &c, err);
	if (r < 0) {
		strv_free(c.v);
		return r;
	}
	if (!c.v)
		c.v = xcalloc(1, sizeof(*c.v));
	*ret = c.v;
	if (ret_n)
		*ret_n = c.n;
	return 0;
}

int host_loop_detach(const char *dev, const char *expect_backing, const struct host_retry *retry,
		     struct bg_err *err)
{
	_cleanup_free_ char *expect = expect_backing ? resolve(expect_backing) : NULL;
	char backing[PATH_MAX + 16];
	int n = loop_number(dev);

	if (n < 0)
		return bg_errorf(err, EINVAL, "invalid loop device '%s'", dev ? dev : "");
	for (int attempt = 0;; attempt++) {
		int r = read_backing(n, backing, sizeof(backing));

		if (r == -ENXIO)
			return 0;
		if (r < 0)
			return bg_error(err, r, "%s: read backing file", dev);
		if (expect && !backing_matches(backing, expect) &&
		    !backing_matches(backing, expect_backing))
			return 0; /* reused by someone else since we looked */
		{
			_cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);

			if (fd < 0 && errno != ENOENT && errno != ENXIO)
				return bg_error(err, errno, "open %s", dev);
			if (fd >= 0 && ioctl(fd, LOOP_CLR_FD) < 0 && errno != ENXIO &&
			    errno != EBUSY)
				return bg_error(err, errno, "%s: LOOP_CLR_FD", dev);
		}
		/* Closing our fd above is what lets an idle loop detach; check it did. */
		if (read_backing(n, backing, sizeof(backing)) == -ENXIO)
			return 0;
		if (!host_retry_wait(retry, attempt))
			return bg_errorf(
				err, EBUSY,
				"%s is still attached to '%s' after %d tries: it is in use; "
				"it detaches by itself when its last user closes it",
				dev, backing, attempt + 1);
	}
}
