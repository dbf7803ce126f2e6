/*
 * watch.h - inotify on the spec directory tree.
 *
 * One watch per directory (the spec dir and its non-hidden subdirectories,
 * added and removed as folders come and go). Events are only hints: any of
 * them marks the tree dirty and the daemon reloads everything (level
 * triggered). IN_Q_OVERFLOW and any doubt mean a full rescan of the watches.
 *
 * Confined like the loader (spec/spec.h): the tree is walked beneath the spec
 * dir's fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so a symlink
 * to a directory inside the tree is followed (a Kubernetes-style "..data"
 * swap in the top directory is seen) and one out of it (or an absolute one)
 * never is; each directory is watched once (by inode), at most
 * SPEC_WATCH_MAX of them, 8 levels deep. Past the bound an error is logged
 * (once, until the tree shrinks) and the rest is left to the periodic resync.
 */
#ifndef BANGER_RECONCILER_WATCH_H
#define BANGER_RECONCILER_WATCH_H

#include <stdbool.h>

#include "common/err.h"

/* At most this many directories watched (inotify watches held) per spec dir. */
#define SPEC_WATCH_MAX 1024

struct spec_watch;

/* Watch dir (which must exist) and its subdirectories. */
int spec_watch_new(const char *dir, struct spec_watch **ret, struct bg_err *err);
void spec_watch_free(struct spec_watch *w);

/* The inotify fd to poll for readability (O_CLOEXEC, non-blocking). */
int spec_watch_fd(const struct spec_watch *w);

/*
 * Read all pending events. Returns true when anything happened that may
 * change the specs (then the caller reloads); directory changes re-sync the
 * watch set as a side effect.
 */
bool spec_watch_drain(struct spec_watch *w);

/*
 * Re-read the tree and fix the watch set (the periodic resync calls this, so
 * a spec dir that was removed and created again is watched again). Causes no
 * events when nothing changed.
 */
void spec_watch_resync(struct spec_watch *w);

/* Number of directories watched (for tests and debug logs). */
int spec_watch_count(const struct spec_watch *w);

#endif
