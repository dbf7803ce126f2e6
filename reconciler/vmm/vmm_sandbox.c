/*
 * vmm_sandbox.c - per-VM VMM uids, spawn confinement, fds for VMMs; see vmm_sandbox.h.
 */
#include "reconciler/vmm/vmm_sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"

#define NOBODY_UID 65534U
#define COPY_MAX (512UL * 1024 * 1024) /* a kernel or initrd larger than this is refused */

static void closedirp(DIR **d)
{
	if (*d)
		(void)closedir(*d);
}

static bool parse_u32(const char *s, size_t len, uint32_t *ret)
{
	uint64_t v = 0;

	if (len == 0 || len > 10)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*ret = (uint32_t)v;
	return true;
}

int vmm_sandbox_parse_uids(const char *s, uid_t *ret_first, uid_t *ret_count, struct bg_err *err)
{
	const char *colon;
	uint32_t first, count;
	uint64_t end;

	if (!s)
		return bg_errorf(err, EINVAL, "--vmm-uids: missing value");
	if (strcmp(s, "off") == 0) {
		*ret_first = 0;
		*ret_count = 0;
		return 0;
	}
	colon = strchr(s, ':');
	if (!colon || !parse_u32(s, (size_t)(colon - s), &first) ||
	    !parse_u32(colon + 1, strlen(colon + 1), &count))
		return bg_errorf(err, EINVAL, "--vmm-uids '%s': expected START:COUNT or 'off'", s);
	if (count == 0)
		return bg_errorf(err, EINVAL, "--vmm-uids '%s': COUNT must be at least 1", s);
	end = (uint64_t)first + count; /* one past the last */
	if (first == 0)
		return bg_errorf(err, EINVAL, "--vmm-uids '%s': the range holds root (uid 0)", s);
	if (end > UINT32_MAX)
		return bg_errorf(err, EINVAL, "--vmm-uids '%s': the range passes uid %u", s,
				 UINT32_MAX - 1);
	if (first <= NOBODY_UID && NOBODY_UID < end)
		return bg_errorf(err, EINVAL, "--vmm-uids '%s': the range holds nobody (uid %u)", s,
				 NOBODY_UID);
	*ret_first = first;
	*ret_count = count;
	return 0;
}

void vmm_sandbox_init(struct vmm_sandbox *sb, uid_t first, uid_t count)
{
	struct group *g = getgrnam("kvm");

	memset(sb, 0, sizeof(*sb));
	sb->uid_first = first;
	sb->uid_count = count;
	if (g) {
		sb->groups[0] = g->gr_gid;
		sb->n_groups = 1;
	}
}

bool vmm_sandbox_enabled(const struct vmm_sandbox *sb)
{
	return sb && sb->uid_count > 0;
}

static bool in_range(const struct vmm_sandbox *sb, gid_t id)
{
	return id >= sb->uid_first && id - sb->uid_first < sb->uid_count;
}

static int cmp_uid(const void *a, const void *b)
{
	uid_t x = *(const uid_t *)a, y = *(const uid_t *)b;

	return (x > y) - (x < y);
}

int vmm_sandbox_uid(const struct vmm_sandbox *sb, const char *vm_dir, uid_t *ret_uid,
		    struct bg_err *err)
{
	_cleanup_free_ char *parent = NULL;
	_cleanup_free_ uid_t *used = NULL;
	_cleanup_(closedirp) DIR *d = NULL;
	_cleanup_close_ int dfd = -1;
	struct dirent *de;
	struct stat st;
	size_t n = 0;
	uid_t uid;
	char *slash;

	if (!vmm_sandbox_enabled(sb) || !vm_dir)
		return bg_errorf(err, EINVAL, "vmm sandbox: no uid range");
	dfd = open(vm_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &st) < 0)
		return bg_error(err, errno, "VM dir '%s'", vm_dir);
	/* 0700, or 0710 once a VMM that opens paths was let through. */
	if (in_range(sb, st.st_gid) && st.st_uid == 0 && (st.st_mode & 067) == 0) {
		*ret_uid = st.st_gid;
		return 0;
	}
	parent = xstrdup(vm_dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent)
		return bg_errorf(err, EINVAL, "VM dir '%s' has no parent", vm_dir);
	*slash = '\0';
	d = opendir(parent);
	if (!d)
		return bg_error(err, errno, "open '%s'", parent);
	while ((de = readdir(d))) {
		struct stat sst;

		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), de->d_name, &sst, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(sst.st_mode) || !in_range(sb, sst.st_gid))
			continue;
		used = xreallocarray(used, n + 1, sizeof(*used));
		used[n++] = sst.st_gid;
	}
	if (n)
		qsort(used, n, sizeof(*used), cmp_uid);
	uid = sb->uid_first;
	for (size_t i = 0; i < n; i++) {
		if (used[i] == uid)
			uid++;
		else if (used[i] > uid)
			break;
	}
	if (!in_range(sb, uid))
		return bg_errorf(err, ENOSPC, "no free VMM uid left in %u:%u",
				 (unsigned)sb->uid_first, (unsigned)sb->uid_count);
	/* Mode first: the group must never grant the VMM anything here. */
	if (fchmod(dfd, 0700) < 0 || fchown(dfd, 0, (gid_t)uid) < 0)
		return bg_error(err, errno, "record VMM uid %u on '%s'", (unsigned)uid, vm_dir);
	*ret_uid = uid;
	return 0;
}

void vmm_sandbox_spawn_opts(const struct vmm_sandbox *sb, uid_t uid, unsigned long unshare_flags,
			    struct proc_spawn_opts *opts)
{
	opts->no_new_privs = true;
	opts->seccomp_deny = true;
	opts->unshare_flags = unshare_flags;
	if (uid != 0) {
		opts->set_ids = true;
		opts->uid = uid;
		opts->gid = (gid_t)uid;
		opts->groups = sb ? sb->groups : NULL;
		opts->n_groups = sb ? sb->n_groups : 0;
	}
}

int vmm_sandbox_grant_file(const char *path, uid_t uid, mode_t mode, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char proc[32];

	/* O_PATH: a device is not opened; chown and chmod reach the inode through it. */
	fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return bg_error(err, errno, "grant '%s'", path);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return bg_errorf(err, EINVAL, "grant '%s': not a regular file or block device",
				 path);
	if (st.st_uid != 0)
		return bg_errorf(err, EPERM, "grant '%s': owned by uid %u, not root", path,
				 (unsigned)st.st_uid);
	/* Mode first: the group never gets more than 'mode' in between. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (chmod(proc, mode) < 0)
		return bg_error(err, errno, "chmod '%s'", path);
	if (fchownat(fd, "", 0, (gid_t)uid, AT_EMPTY_PATH) < 0)
		return bg_error(err, errno, "chown '%s' to group %u", path, (unsigned)uid);
	return 0;
}

int vmm_sandbox_sock_dir(const char *path, uid_t uid, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return bg_error(err, errno, "mkdir '%s'", path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return bg_error(err, errno, "open '%s'", path);
	if (st.st_uid != 0)
		return bg_errorf(err, EPERM, "'%s' is owned by uid %u, not root", path,
				 (unsigned)st.st_uid);
	if (fchmod(fd, 0700) < 0 || fchown(fd, 0, (gid_t)uid) < 0 || fchmod(fd, 0770) < 0)
		return bg_error(err, errno, "hand '%s' to group %u", path, (unsigned)uid);
	return 0;
}

/* Add search for others (o+x) to the root-owned directory 'dir'. */
static int add_search(const char *dir, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return bg_error(err, errno, "open '%s'", dir);
	if (st.st_uid != 0)
		return bg_errorf(err, EPERM, "'%s' is owned by uid %u, not root", dir,
				 (unsigned)st.st_uid);
	if (!(st.st_mode & S_IXOTH) && fchmod(fd, (st.st_mode & 07777) | S_IXOTH) < 0)
		return bg_error(err, errno, "chmod o+x '%s'", dir);
	return 0;
}

int vmm_sandbox_traverse(const char *vm_dir, uid_t uid, struct bg_err *err)
{
	_cleanup_free_ char *path = xstrdup(vm_dir);
	_cleanup_close_ int fd = -1;
	struct stat st;
	char *slash;
	int r;

	fd = open(vm_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return bg_error(err, errno, "VM dir '%s'", vm_dir);
	if (st.st_uid != 0 || st.st_gid != (gid_t)uid)
		return bg_errorf(err, EPERM, "VM dir '%s' is not root:%u", vm_dir, (unsigned)uid);
	if (fchmod(fd, 0710) < 0)
		return bg_error(err, errno, "chmod '%s'", vm_dir);
	/*
	 * <state>/vms and <state> become searchable (never readable) by others;
	 * everything below them is private by its own mode. Above the state dir
	 * is the admin's: say so when it stops the VMM.
	 */
	for (int level = 0; (slash = strrchr(path, '/')) && slash != path; level++) {
		*slash = '\0';
		if (level < 2) {
			r = add_search(path, err);
			if (r < 0)
				return r;
		} else if (stat(path, &st) < 0) {
			return bg_error(err, errno, "stat '%s'", path);
		} else if (!(st.st_mode & S_IXOTH)) {
			return bg_errorf(err, EACCES,
					 "'%s' (mode %04o) is not searchable by others: a VMM uid "
					 "cannot reach its VM dir below it",
					 path, (unsigned)(st.st_mode & 07777));
		}
	}
	return 0;
}

int vmm_sandbox_tap_own(const char *name, uid_t uid, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;

	fd = vmm_sandbox_tap_open(name, err);
	if (fd < 0)
		return fd;
	if (ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0 ||
	    ioctl(fd, TUNSETGROUP, (unsigned long)uid) < 0)
		return bg_error(err, errno, "tap '%s': hand it to uid %u", name, (unsigned)uid);
	return 0;
}

int vmm_sandbox_sock_path(const char *path, int *ret_fd, char ret_path[32])
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode))
		return -ELOOP;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	snprintf(ret_path, 32, "/proc/self/fd/%d", fd);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int vmm_sandbox_tap_open(const char *name, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	struct ifreq ifr;

	if (!name || strlen(name) >= IFNAMSIZ)
		return bg_errorf(err, EINVAL, "tap name '%s'", name ? name : "");
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return bg_error(err, errno, "open /dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return bg_error(err, errno, "tap '%s': TUNSETIFF", name);
	return TAKE_FD(fd);
}

int vmm_sandbox_memfd_copy(const char *path, struct bg_err *err)
{
	_cleanup_close_ int in = -1, mfd = -1;
	struct stat st;
	int r;

	in = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in < 0)
		return bg_error(err, errno, "open '%s'", path);
	if (fstat(in, &st) < 0)
		return bg_error(err, errno, "stat '%s'", path);
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "'%s' is not a regular file", path);
	if ((uint64_t)st.st_size > COPY_MAX)
		return bg_errorf(err, EFBIG, "'%s' is larger than %lu bytes", path, COPY_MAX);
	mfd = memfd_create("banger-vmm-file", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0)
		return bg_error(err, errno, "memfd_create");
	r = fs_copy_fd(in, mfd, COPY_MAX, path, err);
	if (r < 0)
		return r;
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return bg_error(err, errno, "seal the copy of '%s'", path);
	return TAKE_FD(mfd);
}
