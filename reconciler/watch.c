/*
 * watch.c - inotify over the spec directory tree; see watch.h.
 */
#include "reconciler/watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define WATCH_DEPTH_MAX 8 /* as the loader: SPEC_DIR_DEPTH_MAX */
#define WATCH_MASK                                                                               \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF | \
	 IN_MOVE_SELF | IN_ATTRIB | IN_MODIFY)

struct watched {
	int wd;
	char *path;
};

/* A file a writer has open: seen created or modified, its IN_CLOSE_WRITE not yet. */
struct writing {
	int wd;	       /* of its directory: a rescan that drops the watch drops the entry */
	char *path;    /* as spec_watch_take_paths() names it */
	int64_t since; /* now_mono_ms() when it was first seen being written */
};

struct spec_watch {
	int fd;
	char *root;
	struct watched *dirs;
	size_t n, cap;
	bool over;    /* the last resync hit SPEC_WATCH_MAX (logged once until it no longer does) */
	char **paths; /* what the events drained since the last take named */
	size_t n_paths;
	bool all; /* an event named nothing that can be narrowed down: everything changed */
	struct writing *writing; /* files being written (watch.h), at most SPEC_WATCH_PATHS_MAX */
	size_t n_writing;
};

/* One resync's walk: the tree beneath root_fd, each directory watched once. */
struct walk {
	int ifd;
	int root_fd;
	const char *root;
	struct watched *dirs;
	size_t n, cap;
	bool over;
};

static void forget_all(struct spec_watch *w)
{
	for (size_t i = 0; i < w->n; i++) {
		(void)inotify_rm_watch(w->fd, w->dirs[i].wd);
		free(w->dirs[i].path);
	}
	w->n = 0;
}

static ssize_t find_wd(const struct watched *dirs, size_t n, int wd)
{
	for (size_t i = 0; i < n; i++)
		if (dirs[i].wd == wd)
			return (ssize_t)i;
	return -1;
}

static void push(struct watched **dirs, size_t *n, size_t *cap, int wd, const char *path)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		*dirs = xreallocarray(*dirs, *cap, sizeof(**dirs));
	}
	(*dirs)[*n].wd = wd;
	(*dirs)[*n].path = xstrdup(path);
	(*n)++;
}

/* ---- files being written ----------------------------------------------------------------- */

static ssize_t writing_find(const struct spec_watch *w, const char *path)
{
	for (size_t i = 0; i < w->n_writing; i++)
		if (strcmp(w->writing[i].path, path) == 0)
			return (ssize_t)i;
	return -1;
}

static void writing_drop(struct spec_watch *w, size_t i)
{
	free(w->writing[i].path);
	w->writing[i] = w->writing[--w->n_writing];
}

static void writing_clear(struct spec_watch *w)
{
	while (w->n_writing)
		writing_drop(w, w->n_writing - 1);
	free(w->writing);
	w->writing = NULL;
}

/*
 * path (owned) is being written. An entry already there keeps its time: its
 * age counts from the first write seen, so a writer that keeps writing and
 * never closes cannot hide the file past SPEC_WATCH_WRITING_MAX_MS. When the
 * set is full, stale entries make room; else the file is not kept out (it is
 * read as it is, as before this set existed).
 */
static void writing_add(struct spec_watch *w, int wd, char *path, int64_t now)
{
	if (writing_find(w, path) >= 0) {
		free(path);
		return;
	}
	for (size_t i = 0; i < w->n_writing && w->n_writing >= SPEC_WATCH_PATHS_MAX;) {
		if (now - w->writing[i].since >= SPEC_WATCH_WRITING_MAX_MS)
			writing_drop(w, i);
		else
			i++;
	}
	if (w->n_writing >= SPEC_WATCH_PATHS_MAX) {
		free(path);
		return;
	}
	w->writing = xreallocarray(w->writing, w->n_writing + 1, sizeof(*w->writing));
	w->writing[w->n_writing++] = (struct writing){ .wd = wd, .path = path, .since = now };
}

/* path, and everything below it when it is a directory, is no longer being written. */
static void writing_forget(struct spec_watch *w, const char *path)
{
	size_t len = strlen(path);

	for (size_t i = 0; i < w->n_writing;) {
		const char *p = w->writing[i].path;

		if (strncmp(p, path, len) == 0 && (p[len] == '\0' || p[len] == '/'))
			writing_drop(w, i);
		else
			i++;
	}
}

/*
 * After a rescan: an entry whose directory is no longer watched, or is now
 * watched under another name, cannot be followed (its close would go unseen
 * or name another path), so it no longer counts.
 */
static void writing_prune(struct spec_watch *w)
{
	for (size_t i = 0; i < w->n_writing;) {
		const struct writing *e = &w->writing[i];
		ssize_t d = find_wd(w->dirs, w->n, e->wd);
		size_t len = d >= 0 ? strlen(w->dirs[d].path) : 0;

		if (d < 0 || strncmp(e->path, w->dirs[d].path, len) != 0 || e->path[len] != '/')
			writing_drop(w, i);
		else
			i++;
	}
}

/*
 * Open a directory of the tree beneath the spec dir: symlinks are followed only while they
 * stay inside it (an absolute one, or one out of it, fails with EXDEV), magic links never.
 */
static int open_dir_beneath(int root_fd, const char *rel)
{
	return fs_open_beneath(root_fd, rel, O_RDONLY | O_DIRECTORY, 0);
}

/*
 * Watch the directory 'rel' inside the tree and its non-hidden subdirectories. The watch
 * is added on the directory just opened (through its /proc/self/fd entry, so the inode
 * watched is the one opened beneath the root, never a path resolved again); inotify
 * returns the existing wd for an inode already watched, so each directory is walked once.
 */
static void collect(struct walk *wk, const char *rel, int depth)
{
	_cleanup_close_ int fd = -1;
	char proc[64];
	DIR *d;
	struct dirent *de;
	int wd;

	fd = open_dir_beneath(wk->root_fd, rel);
	if (fd < 0) {
		log_debug("spec watch: '%s' in '%s' not watched: %s", rel, wk->root,
			  strerror(errno));
		return;
	}
	if (wk->n >= SPEC_WATCH_MAX) {
		wk->over = true;
		return;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	wd = inotify_add_watch(wk->ifd, proc, WATCH_MASK | IN_ONLYDIR);
	if (wd < 0) {
		log_debug("inotify_add_watch '%s' in '%s': %s", rel, wk->root, strerror(errno));
		return;
	}
	if (find_wd(wk->dirs, wk->n, wd) >= 0)
		return; /* the same directory through another name (a symlink in the tree) */
	{
		_cleanup_free_ char *path = *rel ? fs_path_join(wk->root, rel) : xstrdup(wk->root);

		push(&wk->dirs, &wk->n, &wk->cap, wd, path);
	}
	if (depth >= WATCH_DEPTH_MAX)
		return;
	d = fdopendir(fd);
	if (!d)
		return;
	TAKE_FD(fd);
	while ((de = readdir(d)) && !wk->over) {
		_cleanup_free_ char *sub = NULL;

		if (de->d_name[0] == '.')
			continue; /* ".", "..", ".git", Kubernetes' "..data" */
		if (de->d_type != DT_DIR && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
			continue;
		sub = *rel ? fs_path_join(rel, de->d_name) : xstrdup(de->d_name);
		collect(wk, sub, depth + 1);
	}
	closedir(d);
}

/*
 * Bring the watch set in line with the tree as it is now. Watches that stay
 * are kept as they are (re-adding one is a no-op for the kernel), so an
 * unchanged tree causes no events; only watches of directories that left the
 * tree are removed (their IN_IGNORED is then ignored: the wd is gone from the set).
 */
static void resync(struct spec_watch *w)
{
	struct walk wk = { .ifd = w->fd, .root = w->root };

	/* The top itself may be a symlink (the operator's choice); nothing below it leaves it. */
	wk.root_fd = open(w->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (wk.root_fd >= 0) {
		collect(&wk, "", 0);
		(void)close(wk.root_fd);
	} else {
		log_debug("spec watch: '%s': %s", w->root, strerror(errno));
	}
	if (wk.over && !w->over)
		log_err("spec directory '%s' has more than %d directories to watch (the limit); "
			"changes below the first %d are seen only by the periodic resync",
			w->root, SPEC_WATCH_MAX, SPEC_WATCH_MAX);
	w->over = wk.over;
	for (size_t i = 0; i < w->n; i++) {
		if (find_wd(wk.dirs, wk.n, w->dirs[i].wd) < 0)
			(void)inotify_rm_watch(w->fd, w->dirs[i].wd);
		free(w->dirs[i].path);
	}
	free(w->dirs);
	w->dirs = wk.dirs;
	w->n = wk.n;
	w->cap = wk.cap;
	writing_prune(w);
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

static void paths_clear(struct spec_watch *w)
{
	for (size_t i = 0; i < w->n_paths; i++)
		free(w->paths[i]);
	free(w->paths);
	w->paths = NULL;
	w->n_paths = 0;
}

/* Note a changed path (owned); past SPEC_WATCH_PATHS_MAX, everything changed. */
static void note_path(struct spec_watch *w, char *path)
{
	/* An editor's save names one file several times in a row (create, modify, close). */
	if (w->all || (w->n_paths && strcmp(w->paths[w->n_paths - 1], path) == 0)) {
		free(path);
		return;
	}
	if (w->n_paths >= SPEC_WATCH_PATHS_MAX) {
		free(path);
		paths_clear(w);
		w->all = true;
		return;
	}
	w->paths = xreallocarray(w->paths, w->n_paths + 1, sizeof(*w->paths));
	w->paths[w->n_paths++] = path;
}

/* What one event names: its entry in a watched directory, the directory, or everything. */
static void note_event(struct spec_watch *w, const struct inotify_event *ev)
{
	ssize_t i = ev->wd >= 0 ? find_wd(w->dirs, w->n, ev->wd) : -1;

	if ((ev->mask & IN_Q_OVERFLOW) || i < 0) {
		paths_clear(w);
		w->all = true;
		return;
	}
	if (ev->len && ev->name[0])
		note_path(w, fs_path_join(w->dirs[i].path, ev->name));
	else /* the directory itself (moved, deleted, its mode changed): its whole subtree */
		note_path(w, xstrdup(w->dirs[i].path));
}

char **spec_watch_take_paths(struct spec_watch *w, size_t *ret_n, bool *ret_all)
{
	char **paths = TAKE_PTR(w->paths);

	*ret_n = w->n_paths;
	*ret_all = w->all;
	w->n_paths = 0;
	w->all = false;
	return paths;
}

void spec_watch_paths_free(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

void spec_watch_free(struct spec_watch *w)
{
	if (!w)
		return;
	paths_clear(w);
	writing_clear(w);
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

bool spec_watch_is_writing(const struct spec_watch *w, const char *path, int64_t now_ms)
{
	ssize_t i = writing_find(w, path);

	return i >= 0 && now_ms - w->writing[i].since < SPEC_WATCH_WRITING_MAX_MS;
}

/*
 * IN_CREATE of a regular file: a writer has it open and its close comes as
 * IN_CLOSE_WRITE, so it enters the set of files being written (track_writing())
 * and is no change until then. Links, symlinks and directories are whole at
 * once (a hard link, a regular file that gets no close event, is a change at
 * once and never in the set).
 */
static bool being_written(const char *path, const struct inotify_event *ev)
{
	struct stat st;

	if (!(ev->mask & IN_CREATE) || (ev->mask & IN_ISDIR))
		return false;
	return lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1;
}

/*
 * Follow one event in the set of files being written. Returns true when the
 * event says only that a write is under way (a regular file created, a file
 * written): no change yet, the file's IN_CLOSE_WRITE is. A pass that runs
 * meanwhile for another reason keeps to the file's last complete content
 * (spec/cache.h). Hidden names are never read, so they never enter the set.
 */
static bool track_writing(struct spec_watch *w, const struct inotify_event *ev, int64_t now)
{
	_cleanup_free_ char *path = NULL;
	ssize_t i;

	if (ev->mask & IN_Q_OVERFLOW) {
		writing_clear(w); /* closes may have been lost with the rest */
		return false;
	}
	i = find_wd(w->dirs, w->n, ev->wd);
	if (i < 0 || !ev->len || !ev->name[0])
		return false;
	path = fs_path_join(w->dirs[i].path, ev->name);
	if (ev->name[0] != '.' && ((ev->mask & IN_MODIFY) || being_written(path, ev))) {
		writing_add(w, ev->wd, TAKE_PTR(path), now);
		return true;
	}
	/* Closed, gone, or a whole new file renamed onto the name. */
	if (ev->mask & (IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO))
		writing_forget(w, path);
	return false;
}

bool spec_watch_drain(struct spec_watch *w)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false, rescan = false;
	int64_t now = now_mono_ms();

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
			ssize_t i;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_IGNORED) {
				/* The kernel dropped a watch (its directory is gone, or we removed
				 * it). Forget it; a directory that went away also sent an event to
				 * its parent, which asks for a rescan. */
				i = find_wd(w->dirs, w->n, ev->wd);
				if (i >= 0) {
					/* Its parent's event named it too, unless it was the top. */
					note_path(w, xstrdup(w->dirs[i].path));
					writing_forget(w, w->dirs[i].path);
					free(w->dirs[i].path);
					w->dirs[i] = w->dirs[--w->n];
					rescan = changed = true;
				}
				continue;
			}
			/* Writes to hidden files (the CLI's .banger.lock, editor swap files)
			 * change no spec; creating, moving or deleting one still counts
			 * (Kubernetes' "..data" swap is a rename of hidden names). */
			if (ev->len && ev->name[0] == '.' &&
			    !(ev->mask & (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)))
				continue;
			/* A file being written: its IN_CLOSE_WRITE is the change (a pass now
			 * would read it half-written). A write names nothing until then. */
			if (!track_writing(w, ev, now))
				changed = true;
			else if (ev->mask & IN_MODIFY)
				continue;
			note_event(w, ev);
			if (ev->mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF | IN_CREATE |
					IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE))
				rescan =
					true; /* a folder or a symlink to one may have come or gone */
		}
	}
	if (rescan)
		resync(w);
	return changed;
}

void spec_watch_resync(struct spec_watch *w)
{
	resync(w);
}
