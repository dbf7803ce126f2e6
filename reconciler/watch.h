/*
 * watch.h - inotify on the spec directory tree.
 *
 * One watch per directory (the spec dir and its non-hidden subdirectories,
 * added and removed as folders come and go). Events are only hints: any of
 * them marks the tree dirty, and the paths they name tell the daemon's spec
 * cache which files to read again (level triggered: a named directory stands
 * for its whole subtree). IN_Q_OVERFLOW and any doubt mean a full rescan of
 * the watches and "everything changed".
 *
 * It also keeps the set of files being written: a non-hidden regular file
 * enters it when it is created (IN_CREATE, one link) or written (IN_MODIFY,
 * e.g. '>' truncating an existing spec), and leaves it when it is closed after
 * writing (IN_CLOSE_WRITE, which is the change), deleted, renamed away or
 * replaced by a rename onto its name. Neither the creation nor a write counts
 * as a change, so no pass starts for them; a pass that runs meanwhile for
 * another reason asks spec_watch_is_writing() and keeps to the file's last
 * complete content (spec/cache.h), never reading it half-written. An overflow
 * clears the set (closes may be lost), and so does a rescan for the entries of
 * a directory no longer watched under the same name; an entry older than
 * SPEC_WATCH_WRITING_MAX_MS no longer counts (a writer that never closes).
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
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* At most this many directories watched (inotify watches held) per spec dir. */
#define SPEC_WATCH_MAX 1024
/* At most this many changed paths kept between takes; past it, everything changed. */
#define SPEC_WATCH_PATHS_MAX 4096
/*
 * A file counts as being written for at most this long after its first
 * creation or write was seen, closed or not: then the passes read it as it is
 * (the periodic resync does, DAEMON_DEFAULT_RESYNC_MS).
 */
#define SPEC_WATCH_WRITING_MAX_MS (30 * 1000)

struct spec_watch;

/* Watch dir (which must exist) and its subdirectories. */
int spec_watch_new(const char *dir, struct spec_watch **ret, struct bg_err *err);
void spec_watch_free(struct spec_watch *w);

/* The inotify fd to poll for readability (O_CLOEXEC, non-blocking). */
int spec_watch_fd(const struct spec_watch *w);

/*
 * Read all pending events. Returns true when anything happened that may
 * change the specs (then the caller reloads); directory changes re-sync the
 * watch set as a side effect. A file created or written but not yet closed is
 * no change (it is in the set of files being written until it is).
 */
bool spec_watch_drain(struct spec_watch *w);

/*
 * Re-read the tree and fix the watch set (the periodic resync calls this, so
 * a spec dir that was removed and created again is watched again). Causes no
 * events when nothing changed.
 */
void spec_watch_resync(struct spec_watch *w);

/*
 * Take the paths that the events drained since the last take named (owned:
 * free with spec_watch_paths_free()), *ret_n of them, each the spec dir as
 * given joined with the entry's path: files created, written, moved in or out,
 * deleted, and directories created, moved or removed (a directory stands for
 * its whole subtree; a watched directory's own events name it). *ret_all is
 * true when an event could not be narrowed down (IN_Q_OVERFLOW, an unknown
 * watch, more than SPEC_WATCH_PATHS_MAX paths): then everything may have
 * changed. Writes to hidden files are not named (they change no spec).
 */
char **spec_watch_take_paths(struct spec_watch *w, size_t *ret_n, bool *ret_all);
void spec_watch_paths_free(char **paths, size_t n);

/*
 * true when path (named as spec_watch_take_paths() names files: the spec dir as
 * given joined with the file's path in it) is being written: the events drained
 * so far showed it created or written and not yet closed, and that began less
 * than SPEC_WATCH_WRITING_MAX_MS before now_ms (now_mono_ms()). Only as fresh
 * as the last spec_watch_drain().
 */
bool spec_watch_is_writing(const struct spec_watch *w, const char *path, int64_t now_ms);

/* Number of directories watched (for tests and debug logs). */
int spec_watch_count(const struct spec_watch *w);

#endif
