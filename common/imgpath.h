/*
 * imgpath.h - confining the files a spec names (rootfs.image, kernel.path,
 * kernel.initrd) to the image directories the operator configured.
 *
 * A spec author can write a spec file but is not root; bangerd is. Without
 * this, a spec could make the daemon read any file (rootfs.image:
 * /etc/shadow copied into a VM's disk, banger's own ssh key, another VM's
 * disk) or block it (a FIFO). Two layers:
 *
 *  - lexical (imgpath_check): the path is absolute and normalized (no "."
 *    or ".." components, no "//", no trailing '/'), strictly below one of
 *    the image roots, and never under <state>/vms/ or <state>/ssh/ (an
 *    image root may itself be inside the state dir, e.g. <state>/images/);
 *  - on open (imgpath_open_at): the root is opened, the rest resolved with
 *    openat2(O_PATH, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 *    RESOLVE_NO_MAGICLINKS); only a regular file owned by root and not
 *    group/world writable is then opened for reading (O_NONBLOCK |
 *    O_NOFOLLOW, the same resolve flags, so a FIFO or a device is never
 *    opened at all and a swap in between is seen as a dev/ino mismatch).
 *
 * Callers use the returned fd from then on, never the path again.
 */
#ifndef BANGER_COMMON_IMGPATH_H
#define BANGER_COMMON_IMGPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "common/err.h"

#define IMGPATH_DEFAULT_ROOT "/var/lib/banger/images"

struct imgpath_conf {
	const char *const *roots; /* absolute, normalized directories (borrowed) */
	size_t n_roots;
	const char *state_dir; /* absolute; NULL: no state dir rule */
};

/*
 * Whether 'root' may be an image root: absolute, normalized, not "/", and
 * not <state>/vms or <state>/ssh or below them. -EINVAL with a message
 * naming the rule otherwise. A root above the state dir is allowed: the
 * lexical rule still refuses paths below those two, and nothing below a
 * root is resolved through a symlink or "..", so the lexical path is the
 * one walked.
 */
int imgpath_root_check(const char *root, const char *state_dir, struct bg_err *err);

/*
 * The lexical rules above for 'path'. 0, or -EINVAL with a message that
 * names the rule (e.g. "'/etc/shadow' is not below an image directory
 * (/var/lib/banger/images)"); the caller prefixes the field.
 */
int imgpath_check(const struct imgpath_conf *conf, const char *path, struct bg_err *err);

/*
 * imgpath_check, then open 'path' for reading as described above. Returns
 * the fd (O_RDONLY | O_CLOEXEC, owned by the caller) and its stat in
 * ret_st (may be NULL), or -errno: -EINVAL for a rule, -ELOOP for a
 * symlink on the way, -EXDEV for an escape, -EPERM for the wrong owner or
 * mode, -ENOENT, ... each with a message naming the file and the rule.
 */
int imgpath_open_at(const struct imgpath_conf *conf, const char *path, struct stat *ret_st,
		    struct bg_err *err);

/*
 * Copy the whole of 'src_fd' (from offset 0) into a new file 'dst' (mode
 * 0600, via a temporary name and rename, so 'dst' is never partial).
 */
int imgpath_copy_fd(int src_fd, const char *dst, struct bg_err *err);

#endif
