/*
 * watch.c - inotify over the spec directory tree; see watch.h.
 */
#include "reconciler/watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/xalloc.h"

#define WATCH_DEPTH_MAX 8
#define WATCH_MASK                                                                               \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF | \
	 IN_MOVE_SELF | IN_ATTRIB)

struct watched {
	int wd;
	char *path;
};

struct spec_watch {
	int fd;
	char *root;
	struct watched *dirs;
	size_t n, cap;
};

static void forget_all(struct spec_watch *w)
{
	for (size_t i = 0; i < w->n; i++) {
		(void)inotify_rm_watch(w->fd, w->dirs[i].wd);
		free(w->dirs[i].path);
	}
	w->n = 0;
}

static bool watched_wd(const struct spec_watch *w, int wd)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->dirs[i].wd == wd)
			return true;
	return false;
}

static void add_dir(struct spec_watch *w, const char *path, int depth)
{
	DIR *d;
	struct dirent *de;
	int wd;

	wd = inotify_add_watch(w->fd, path, WATCH_MASK | IN_ONLYDIR);
	if (wd < 0) {
		log_debug("inotify_add_watch '%s': %s", path, strerror(errno));
		return;
	}
	/* inotify returns the same wd for the same inode (e.g. via a symlink). */
	if (!watched_wd(w, wd)) {
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 8;
			w->dirs = xreallocarray(w->dirs, w->cap, sizeof(*w->dirs));
		}
		w->dirs[w->n].wd = wd;
		w->dirs[w->n].path = xstrdup(path);
		w->n++;
	}
	if (depth >= WATCH_DEPTH_MAX)
		return;
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;
		struct stat st;

		if (de->d_name[0] == '.')
			continue; /* ".", "..", ".git", Kubernetes' "..data" */
		sub = fs_path_join(path, de->d_name);
		if (stat(sub, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		add_dir(w, sub, depth + 1);
	}
	closedir(d);
}

/* Drop every watch and add them again from the tree as it is now. */
static void resync(struct spec_watch *w)
{
	forget_all(w);
	add_dir(w, w->root, 0);
}

int spec_watch_new(const char *dir, struct spec_watch **ret, struct bg_err *err)
{
	struct spec_watch *w;
	struct stat st;

	if (stat(dir, &st) < 0)
		return bg_error(err, errno, "spec directory '%s'", dir);
	if (!S_ISDIR(st.st_mode))
		return bg_errorf(err, ENOTDIR, "spec directory '%s' is not a directory", dir);
	w = xcalloc(1, sizeof(*w));
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		int e = errno;

		free(w);
		return bg_error(err, e, "inotify_init1");
	}
	w->root = xstrdup(dir);
	resync(w);
	*ret = w;
	return 0;
}

void spec_watch_free(struct spec_watch *w)
{
	if (!w)
		return;
	forget_all(w);
	free(w->dirs);
	close(w->fd);
	free(w->root);
	free(w);
}

int spec_watch_fd(const struct spec_watch *w)
{
	return w->fd;
}

int spec_watch_count(const struct spec_watch *w)
{
	return (int)w->n;
}

bool spec_watch_drain(struct spec_watch *w)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false, rescan = false;

	for (;;) {
		ssize_t n = read(w->fd, buf, sizeof(buf));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break; /* EAGAIN: drained */
		}
		if (n == 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			p += sizeof(*ev) + ev->len;
			changed = true;
			if (ev->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
				rescan = true;
			else if (ev->mask & IN_ISDIR)
				rescan = true; /* a folder came or went */
			else if (ev->len && ev->name[0] == '.' && ev->name[1] == '.')
				rescan = true; /* a "..data" style symlink swap */
		}
	}
	if (rescan)
		resync(w);
	return changed;
}
