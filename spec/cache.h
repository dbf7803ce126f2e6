/*
 * cache.h - the spec directory, loaded again without re-parsing what did not change.
 *
 * bangerd loads its whole spec directory on every pass. The cache keeps what
 * each spec file gave (its specs with their spec_hash(), diagnostics, failed
 * names) by path, with the file's device, inode, size, mtime (ns) and the
 * SHA-256 of its bytes, and walks the directory with spec_load_path()'s own
 * walker, so order, bounds, symlinks, hard links and every diagnostic of the
 * walk are the same. A file is then:
 *  - taken from the cache, unread, when its (device, inode, size, mtime) are
 *    unchanged and no hint names it (an ordinary pass);
 *  - read and hashed, and parsed only when its bytes changed, when a hint
 *    names it (its path, a directory above it, or the same inode by another
 *    name) or on a full pass (the periodic resync: a rewrite that kept size
 *    and mtime is caught there);
 *  - always read and parsed when it mentions a userDataFile (its result
 *    depends on another file the cache does not track);
 *  - never read while the caller says it is being written
 *    (spec_cache_set_writing(): bangerd's inotify watch saw it created or
 *    written and not yet closed): the file's last parse is used as if the
 *    write had not begun, or, for a file the cache never read, the file is
 *    skipped as not there yet (no spec, no diagnostic). Its stat is not
 *    updated, so the first load after the write reads it again.
 * Files the walk no longer finds leave the cache. The set a load adds is what
 * a cold spec_load_path() of the directory adds: call spec_set_finish() after.
 */
#ifndef BANGER_SPEC_CACHE_H
#define BANGER_SPEC_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "spec/spec.h"

struct spec_cache;

/* A cache of the spec directory 'dir' (copied; used as given in diagnostics). Owned. */
struct spec_cache *spec_cache_new(const char *dir);
/* NULL is fine. */
void spec_cache_free(struct spec_cache *c);
static inline void spec_cache_freep(struct spec_cache **p)
{
	spec_cache_free(*p);
}

/*
 * Tell which files are being written: writing(ctx, path) is asked during each
 * load for each spec file the walk reaches, 'path' being the directory as
 * given joined with the file's path inside it (inotify's names), and returns
 * true to keep the file's last complete content (see above). NULL: none ever
 * is (the default). ctx is borrowed until the predicate is replaced or the
 * cache freed.
 */
void spec_cache_set_writing(struct spec_cache *c, bool (*writing)(void *ctx, const char *path),
			    void *ctx);

/*
 * Paths that changed (inotify's names: files or directories, the whole subtree
 * of a directory counts), kept for the next spec_cache_load(). 'all' (or a
 * path not beneath the directory) means every file is read at the next load.
 * The strings are copied.
 */
void spec_cache_hint(struct spec_cache *c, const char *const *paths, size_t n, bool all);

/*
 * Load the directory into set (as spec_load_path() does; set is appended to),
 * taking unchanged files from the cache. 'changed' are hints as for
 * spec_cache_hint(), used together with those kept since the last load, which
 * are then forgotten. 'full' reads and hashes every file. Returns the number
 * of errors added. Every spec added has its hash field filled.
 */
int spec_cache_load(struct spec_cache *c, const char *const *changed, size_t n_changed, bool full,
		    struct spec_set *set);

/* How many times the cache parsed a file since it was made (for tests). */
unsigned long spec_cache_parses(const struct spec_cache *c);

/* How many files it holds (for tests and debug logs). */
size_t spec_cache_size(const struct spec_cache *c);

#endif
