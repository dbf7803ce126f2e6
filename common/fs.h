/*
 * fs.h - file helpers: atomic replace, mkdir -p, bounded reads.
 */
#ifndef BANGER_COMMON_FS_H
#define BANGER_COMMON_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

/*
 * Replace 'path' with 'len' bytes of 'data' so that a crash at any point leaves
 * either the old or the new content: write a temp file in the same directory,
 * fsync it, rename it over 'path', fsync the directory. The new file gets
 * 'mode' (not filtered by umask). Returns 0 or -errno; the temp file is
 * removed on failure.
 */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct bg_err *err);

/*
 * fs_write_atomic() that also gives the new file owner uid/gid (when they
 * differ from the caller's), so replacing a file in someone's home keeps it
 * theirs.
 */
int fs_write_atomic_owned(const char *path, const void *data, size_t len, mode_t mode, uid_t uid,
			  gid_t gid, struct bg_err *err);

/*
 * fs_write_atomic_owned() that calls check(path, userdata, err) after the
 * temp file is complete and right before the rename; a negative return
 * aborts the write (the temp file is removed, 'path' untouched) and is
 * returned. check may be NULL. For "replace only if nobody changed it since
 * I read it" (compare a stat of 'path' with one taken when it was read).
 */
int fs_write_atomic_checked(const char *path, const void *data, size_t len, mode_t mode, uid_t uid,
			    gid_t gid,
			    int (*check)(const char *path, void *userdata, struct bg_err *err),
			    void *userdata, struct bg_err *err);

/*
 * Create 'path' with 'len' bytes of 'data' and 'mode', atomically and
 * exclusively: a temp file written and fsynced, then moved into place only if
 * 'path' does not exist (renameat2 RENAME_NOREPLACE, else link()), then the
 * directory fsynced. -EEXIST (nothing changed) when 'path' exists, even if
 * it appeared meanwhile.
 */
int fs_write_new(const char *path, const void *data, size_t len, mode_t mode, struct bg_err *err);

/* fsync the directory that contains 'path' (for a rename or unlink to be durable). */
int fs_fsync_parent(const char *path, struct bg_err *err);

/*
 * mkdir -p: create 'path' and missing parents. A last component it creates
 * gets exactly 'mode' (not filtered by umask); missing parents get
 * 0755 | mode, filtered by umask. Any directory that already exists,
 * including 'path' itself, is fine and keeps its mode: a caller that needs an
 * existing directory to be private must check it. -ENOTDIR when 'path'
 * exists and is not a directory. Returns 0 or -errno.
 */
int fs_mkdir_p(const char *path, mode_t mode, struct bg_err *err);

/*
 * Read a whole file of at most 'max' bytes into a NUL-terminated, owned buffer.
 * Larger files fail with -EFBIG. ret_len may be NULL.
 */
int fs_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len,
		 struct bg_err *err);

/*
 * fs_read_file() for an open fd, read from its current offset to EOF; 'name'
 * is used in messages. On -EFBIG, bytes past the cap may have been consumed
 * (a pipe cannot give them back): the caller must not read on from fd.
 */
int fs_read_fd(int fd, size_t max, const char *name, char **ret_data, size_t *ret_len,
	       struct bg_err *err);

/* rm -rf that never follows symlinks and never crosses into another filesystem.
 * A missing path counts as done. */
int fs_remove_tree(const char *path, struct bg_err *err);

/* true when path exists (lstat succeeds). */
bool fs_exists(const char *path);

/* Join a directory and a name with exactly one '/'. Owned result. */
char *fs_path_join(const char *dir, const char *name);

/*
 * openat2(dirfd, rel, flags | O_CLOEXEC) with RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS | 'resolve': the name cannot leave dirfd's tree (an
 * absolute symlink or one out of it fails with EXDEV), and /proc magic links
 * are never followed. "" means dirfd itself. EAGAIN (a rename raced the
 * lookup) is retried a bounded number of times, so a rename loop cannot keep
 * the caller there. Returns the fd, or -1 with errno set, like open().
 */
int fs_open_beneath(int dirfd, const char *rel, uint64_t flags, uint64_t resolve);

/*
 * Copy all of in_fd, from offset 0 to its end, to out_fd at out_fd's file
 * position: copy_file_range(2) where the kernel can, read and write where it
 * cannot (another filesystem, a memfd). More than 'max' bytes is EFBIG. 'name'
 * is in_fd's name for errors. Returns 0 or -errno.
 */
int fs_copy_fd(int in_fd, int out_fd, uint64_t max, const char *name, struct bg_err *err);

#endif
