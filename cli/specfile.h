/*
 * specfile.h - editing the spec directory in place, by VM name: replace or
 * remove one VM's document in a (possibly multi-document) YAML file, or add
 * a new file for a new VM, atomically.
 *
 * Other writers may edit the same files at any time: another 'banger
 * apply', an editor, a 'git pull'. So:
 *  - bangers serialise on an exclusive flock of <spec dir>/.banger.lock
 *    (hidden, so the spec loader ignores it), held from before the spec dir
 *    is read until the edits are written (specfile_lock());
 *  - an edit names a VM, never a byte range: each file is read once, and
 *    the document's range is found by parsing THAT content;
 *  - the result is parsed again before it is written: every other VM of the
 *    file must be unchanged, a replaced VM must be the new spec, a removed
 *    one gone;
 *  - right before a file is replaced (or removed), its inode, size and
 *    mtime are compared with what was read; if another program changed it
 *    meanwhile, it is left alone and the edit fails with -EAGAIN.
 *
 * The spec dir is a tree an edit cannot leave: it is opened once, a file is
 * resolved beneath that fd (openat2 RESOLVE_BENEATH: a symlink inside the
 * tree to a file inside it is followed, one out of it is an error), its real
 * directory is opened again with no symlinks at all and the name in it must
 * be the same inode (fstat identity); read, check, rename and unlink then
 * all act on that directory fd and name, never on a path resolved again. A
 * directory swapped for a symlink meanwhile makes the edit fail (-EAGAIN)
 * or act inside the tree; never outside it.
 */
#ifndef BANGER_CLI_SPECFILE_H
#define BANGER_CLI_SPECFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* The lock file in the spec dir. Hidden: the loader skips names starting with '.'. */
#define SPECFILE_LOCK_NAME ".banger.lock"

/* How long specfile_lock() waits for another banger that edits the spec dir. */
#define SPECFILE_LOCK_TIMEOUT_MS (30 * 1000)

/* One edit of the spec dir, by VM name. */
struct specfile_edit {
	const char *name; /* the VM */
	/*
	 * Replace or remove: the file that defines the VM, as the spec dir was
	 * loaded under the lock (<spec dir>/...; a symlink to a file inside the
	 * spec dir is followed: its target is written). Create: the new file,
	 * <spec dir>/<name>.yaml.
	 */
	const char *file;
	const char *text; /* the new document body (specfile_doc_body), or NULL: remove */
	const char *hash; /* optional: spec_hash() that 'text' must parse to */
	bool create;	  /* the VM is new: create 'file' (never overwriting) with 'text' */
};

/*
 * Create (if needed) and lock <spec_dir>/.banger.lock exclusively (flock),
 * waiting up to timeout_ms for another holder. Returns the lock's fd
 * (O_CLOEXEC; close it to unlock) or -errno (-EWOULDBLOCK on timeout).
 */
int specfile_lock(const char *spec_dir, int timeout_ms, struct bg_err *err);

/*
 * The body of a YAML document as written in a file: without a leading "---"
 * marker line or a trailing "..." line, ending with exactly one newline. Owned.
 */
char *specfile_doc_body(const char *text, size_t len);

/*
 * Apply edits while holding the lock (lock_fd from specfile_lock()). A VM
 * may be named by at most one edit (-EINVAL otherwise). Each file is read
 * once; its VMs' documents are found by name in that content (a VM no longer
 * there: -EAGAIN); a replaced document that started with a "---" marker keeps
 * it, as does a trailing "..." line; a file left with nothing but comments
 * and markers is removed; others keep their mode and owner. Every file is
 * prepared and checked first, so an error found then writes nothing; then
 * each file is replaced atomically (temp + fsync + rename + directory fsync,
 * common/fs.h) unless it changed since it was read (-EAGAIN, that file left
 * alone: "changed while banger was editing it; run the command again"). Files
 * replaced before a later one fails stay replaced. Returns 0 or -errno.
 */
int specfile_apply(const char *spec_dir, int lock_fd, const struct specfile_edit *edits, size_t n,
		   struct bg_err *err);

/*
 * Open the spec dir once (O_DIRECTORY, O_CLOEXEC) for edits relative to it.
 * With lock_fd >= 0 (specfile_lock()), the lock file in the directory opened
 * must be the one locked (same inode), else -EAGAIN. Returns the fd or -errno.
 */
int specfile_dir_open(const char *spec_dir, int lock_fd, struct bg_err *err);

/*
 * spec_parse_buffer() for a document that is (or will be) 'file' inside the
 * spec dir 'spec_dir' opened as dir_fd: a userDataFile in it is read beneath
 * dir_fd (never through a path resolved again). A file not lexically inside
 * spec_dir is parsed with spec_parse_buffer(). Returns the errors added.
 */
struct spec_set;
int specfile_parse_at(int dir_fd, const char *spec_dir, struct spec_set *set, const char *file,
		      const char *text, size_t len);

#endif
