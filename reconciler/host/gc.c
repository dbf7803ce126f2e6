/*
 * gc.c - the leak finder behind 'banger gc': objects that carry banger's
 * names but belong to no known VM id. It looks only at names banger makes:
 * taps "bg<8 hex>" (and only real taps), dm devices "banger-<8 hex>[-base]" or
 * with a UUID starting "BANGER-", loop devices backed by a file under
 * <state>/vms/<id>/, directories <state>/vms/<id>, and the base image cache
 * <state>/images/ (baseimg.c): a <sha>.raw that no <state>/vms/<any>/root.base
 * names and no loop device is backed by, a <sha>.src left without its .raw,
 * and temp files of a conversion that nobody holds locked; tap filter chains
 * "bg<id>" in nftables tables "bridge banger-<bridge>" (antispoof.c); egress
 * and forward chains "bg<id>-*" in tables "ip banger-<bridge>" (netrules.c).
 *
 * "Known" means known to THIS state dir, but taps and dm devices are named
 * host-wide, so another banger instance's running VMs carry the same kind of
 * names. gc_scan records what ties each to an instance (a tap's bridge; for
 * a dm device, loops over files of this state dir, read from sysfs) and
 * host_orphan_is_ours() keeps gc to its own.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

/* Where sysfs is; the unit test points it at a fake tree. */
static const char *gc_sysfs = "/sys";

/* How deep dm devices may stack over the loops (snapshot over "-base" over a loop). */
#define DM_STACK_MAX 4

struct scan {
	const char *const *known;
	size_t n_known;
	const char *vms_prefix; /* "<resolved state>/vms/" */
	struct host_orphan *v;
	size_t n;
};

static bool is_known(const struct scan *s, const char *id)
{
	for (size_t i = 0; i < s->n_known; i++)
		if (s->known[i] && strcmp(s->known[i], id) == 0)
			return true;
	return false;
}

static void add(struct scan *s, enum host_orphan_kind kind, const char *name, const char *detail)
{
	struct host_orphan *o;

	s->v = xreallocarray(s->v, s->n + 1, sizeof(*s->v));
	o = &s->v[s->n++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	snprintf(o->name, sizeof(o->name), "%s", name);
	snprintf(o->detail, sizeof(o->detail), "%s", detail ? detail : "");
}

/* A one-line sysfs attribute without its newline; false when it cannot be read. */
static bool sys_read(const char *path, char *ret, size_t size)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;

	if (fs_read_file(path, 8192, &data, &len, NULL) < 0)
		return false;
	while (len > 0 && data[len - 1] == '\n')
		data[--len] = '\0';
	snprintf(ret, size, "%s", data);
	return true;
}

/* The kernel name ("dm-N") of the dm device called 'name', from <sys>/block/dm-N/dm/name. */
static bool dm_kname(const char *name, char ret[64])
{
	_cleanup_free_ char *block = fs_path_join(gc_sysfs, "block");
	DIR *d = opendir(block);
	struct dirent *de;
	bool found = false;

	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		_cleanup_free_ char *attr = NULL;
		size_t len = strlen(de->d_name);
		char got[256];

		if (strncmp(de->d_name, "dm-", 3) != 0 || len >= 64)
			continue;
		attr = xasprintf("%s/%s/dm/name", block, de->d_name);
		if (sys_read(attr, got, sizeof(got)) && strcmp(got, name) == 0) {
			memcpy(ret, de->d_name, len + 1);
			found = true;
		}
	}
	closedir(d);
	return found;
}

/*
 * true when a loop device below block device 'kname' (its slaves, through
 * stacked dm devices) is backed by a file whose path starts with prefix.
 */
static bool backed_under(const char *kname, const char *prefix, int depth)
{
	_cleanup_free_ char *slaves = xasprintf("%s/block/%s/slaves", gc_sysfs, kname);
	DIR *d = opendir(slaves);
	struct dirent *de;
	bool found = false;

	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		if (strncmp(de->d_name, "loop", 4) == 0) {
			_cleanup_free_ char *attr =
				xasprintf("%s/block/%s/loop/backing_file", gc_sysfs, de->d_name);
			char backing[4096];

			found = sys_read(attr, backing, sizeof(backing)) &&
				strncmp(backing, prefix, strlen(prefix)) == 0;
		} else if (strncmp(de->d_name, "dm-", 3) == 0 && depth > 0) {
			found = backed_under(de->d_name, prefix, depth - 1);
		}
	}
	closedir(d);
	return found;
}

/*
 * Whether dm device 'name' (VM id 'id') is this state dir's: the VM's
 * directory <state>/vms/<id> exists, or its COW loop is over a file under
 * <state>/vms/ -- looked for below the device, and for a "-base" device
 * (whose only loop is the shared image) below the devices that hold it.
 */
static bool dm_is_ours(const struct scan *s, const char *name, const char *id)
{
	_cleanup_free_ char *vm_dir = xasprintf("%s%s", s->vms_prefix, id);
	_cleanup_free_ char *holders = NULL;
	char kname[64];
	struct stat st;
	DIR *d;
	struct dirent *de;
	bool found = false;

	if (lstat(vm_dir, &st) == 0 && S_ISDIR(st.st_mode))
		return true;
	if (!dm_kname(name, kname))
		return false;
	if (backed_under(kname, s->vms_prefix, DM_STACK_MAX))
		return true;
	holders = xasprintf("%s/block/%s/holders", gc_sysfs, kname);
	d = opendir(holders);
	if (!d)
		return false;
	while (!found && (de = readdir(d)))
		if (strncmp(de->d_name, "dm-", 3) == 0)
			found = backed_under(de->d_name, s->vms_prefix, DM_STACK_MAX);
	closedir(d);
	return found;
}

static int dm_cb(const char *name, const char *uuid, void *userdata)
{
	struct scan *s = userdata;
	char id[HOST_ID_LEN + 1];

	if (host_dm_parse_id(name, uuid, id) && !is_known(s, id)) {
		add(s, HOST_ORPHAN_DM, name, uuid);
		s->v[s->n - 1].unowned = !dm_is_ours(s, name, id);
	}
	return 0;
}

static int loop_cb(const char *dev, const char *backing, void *userdata)
{
	struct scan *s = userdata;
	size_t plen = strlen(s->vms_prefix);
	char id[HOST_ID_LEN + 1];

	if (strncmp(backing, s->vms_prefix, plen) != 0)
		return 0;
	memcpy(id, backing + plen, HOST_ID_LEN);
	id[HOST_ID_LEN] = '\0';
	if (strnlen(backing + plen, HOST_ID_LEN + 1) < HOST_ID_LEN + 1 ||
	    backing[plen + HOST_ID_LEN] != '/' || !host_valid_id(id))
		return 0;
	if (!is_known(s, id))
		add(s, HOST_ORPHAN_LOOP, dev, backing);
	return 0;
}

/* The name of a link's master (its bridge) into ret; "" when none, "?" when unknown. */
static void master_name(int master, char ret[16])
{
	char name[IF_NAMESIZE];

	if (master <= 0)
		ret[0] = '\0';
	else if (if_indextoname((unsigned)master, name))
		snprintf(ret, 16, "%s", name);
	else
		snprintf(ret, 16, "?");
}

static int tap_cb(const struct host_link *l, void *userdata)
{
	struct scan *s = userdata;
	const char *id;

	if (l->is_tap && host_parse_tap_name(l->name, &id) && !is_known(s, id)) {
		add(s, HOST_ORPHAN_TAP, l->name, "");
		master_name(l->master, s->v[s->n - 1].master);
	}
	return 0;
}

static int filter_cb(const char *bridge, const char *tap, void *userdata)
{
	struct scan *s = userdata;
	const char *id;

	if (host_parse_tap_name(tap, &id) && !is_known(s, id)) {
		char table[64];

		if (host_antispoof_table(bridge, table, NULL) < 0)
			return 0;
		add(s, HOST_ORPHAN_FILTER, tap, table);
		snprintf(s->v[s->n - 1].master, sizeof(s->v[s->n - 1].master), "%s", bridge);
	}
	return 0;
}

static int netrules_cb(const char *bridge, const char *tap, void *userdata)
{
	struct scan *s = userdata;
	const char *id;

	if (host_parse_tap_name(tap, &id) && !is_known(s, id)) {
		char table[64];

		if (host_netrules_table(bridge, table, NULL) < 0)
			return 0;
		add(s, HOST_ORPHAN_NETRULES, tap, table);
		snprintf(s->v[s->n - 1].master, sizeof(s->v[s->n - 1].master), "%s", bridge);
	}
	return 0;
}

bool host_orphan_is_ours(const struct host_orphan *o, const char *bridge)
{
	switch (o->kind) {
	case HOST_ORPHAN_TAP:
		return !o->master[0] || (bridge && strcmp(o->master, bridge) == 0);
	case HOST_ORPHAN_FILTER:
	case HOST_ORPHAN_NETRULES:
		return bridge && strcmp(o->master, bridge) == 0;
	case HOST_ORPHAN_DM:
		return !o->unowned;
	case HOST_ORPHAN_LOOP:
	case HOST_ORPHAN_VM_DIR:
	case HOST_ORPHAN_IMAGE_CACHE:
		return true;
	case HOST_ORPHAN_KIND_MAX:
		break;
	}
	return false;
}

static int scan_vm_dirs(struct scan *s, const char *vms, struct bg_err *err)
{
	DIR *d = opendir(vms);
	struct dirent *de;

	if (!d)
		return errno == ENOENT ? 0 : bg_error(err, errno, "open '%s'", vms);
	while ((de = readdir(d))) {
		struct stat st;

		if (!host_valid_id(de->d_name) || is_known(s, de->d_name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		{
			_cleanup_free_ char *path = fs_path_join(vms, de->d_name);
			add(s, HOST_ORPHAN_VM_DIR, path, "");
		}
	}
	closedir(d);
	return 0;
}

/* ---- image caches --------------------------------------------------------------- */

/* Files (by device and inode) that VMs use as base images. */
struct file_ids {
	struct {
		dev_t dev;
		ino_t ino;
	} * v;
	size_t n;
};

static void file_ids_add(struct file_ids *ids, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return;
	ids->v = xreallocarray(ids->v, ids->n + 1, sizeof(*ids->v));
	ids->v[ids->n].dev = st.st_dev;
	ids->v[ids->n].ino = st.st_ino;
	ids->n++;
}

static bool file_ids_has(const struct file_ids *ids, const struct stat *st)
{
	for (size_t i = 0; i < ids->n; i++)
		if (ids->v[i].dev == st->st_dev && ids->v[i].ino == st->st_ino)
			return true;
	return false;
}

static int loop_backing_cb(const char *dev, const char *backing, void *userdata)
{
	(void)dev;
	file_ids_add(userdata, backing);
	return 0;
}

/*
 * What the VMs of state use: the image named in every <state>/vms/<dir>/root.base
 * (whether or not the id is known: an orphan VM dir's cache goes once the dir
 * is gone), and the backing file of every loop device (a running dm-snapshot
 * VM's base loop, even one whose root.base is not written yet).
 */
static int used_images(const char *state, struct file_ids *ret, struct bg_err *err)
{
	_cleanup_free_ char *vms = fs_path_join(state, "vms");
	DIR *d = opendir(vms);
	struct dirent *de;

	if (!d && errno != ENOENT)
		return bg_error(err, errno, "open '%s'", vms);
	while (d && (de = readdir(d))) {
		_cleanup_free_ char *marker = NULL, *data = NULL;
		size_t len = 0;

		if (de->d_name[0] == '.')
			continue;
		marker = xasprintf("%s/%s/root.base", vms, de->d_name);
		if (fs_read_file(marker, 8192, &data, &len, NULL) < 0)
			continue;
		while (len > 0 && data[len - 1] == '\n')
			data[--len] = '\0';
		file_ids_add(ret, data);
	}
	if (d)
		closedir(d);
	return host_loop_foreach(loop_backing_cb, ret, err);
}

/*
 * A conversion's temp file that no process holds locked: 1, or 0 when one
 * does (or it is gone). When ret_fd is non-NULL, the locked fd is returned
 * there, so the caller removes the file while holding the lock.
 */
static int tmp_unlocked(const char *path, int *ret_fd)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat a, b;

	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return 0;
	/* Still the file we locked (not replaced since we opened it)? */
	if (fstat(fd, &a) < 0 || lstat(path, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino || !S_ISREG(b.st_mode))
		return 0;
	if (ret_fd)
		*ret_fd = TAKE_FD(fd);
	return 1;
}

static int scan_images(struct scan *s, const char *state, struct bg_err *err)
{
	_cleanup_free_ char *images = fs_path_join(state, HOST_IMAGES_DIR);
	struct file_ids used = { 0 };
	DIR *d = opendir(images);
	struct dirent *de;
	int r;

	if (!d)
		return errno == ENOENT ? 0 : bg_error(err, errno, "open '%s'", images);
	r = used_images(state, &used, err);
	while (r >= 0 && (de = readdir(d))) {
		_cleanup_free_ char *path = fs_path_join(images, de->d_name);
		struct stat st;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (host_baseimg_is_sha_name(de->d_name, ".raw")) {
			if (!file_ids_has(&used, &st))
				add(s, HOST_ORPHAN_IMAGE_CACHE, path, "unused image cache");
		} else if (host_baseimg_is_sha_name(de->d_name, ".src")) {
			_cleanup_free_ char *raw = xstrdup(path);

			memcpy(raw + strlen(raw) - 4, ".raw", 4);
			if (!fs_exists(raw))
				add(s, HOST_ORPHAN_IMAGE_CACHE, path, "index of a removed cache");
		} else if (strncmp(de->d_name, HOST_IMAGES_TMP_PREFIX,
				   strlen(HOST_IMAGES_TMP_PREFIX)) == 0) {
			if (tmp_unlocked(path, NULL) == 1)
				add(s, HOST_ORPHAN_IMAGE_CACHE, path, "interrupted conversion");
		}
	}
	closedir(d);
	free(used.v);
	return r < 0 ? r : 0;
}

/* Remove one file of <state>/images found by scan_images, checking again that it is unused. */
static int remove_image_file(const char *path, struct bg_err *err)
{
	_cleanup_free_ char *images = xstrdup(path);
	_cleanup_free_ char *state = NULL;
	char *slash = strrchr(images, '/');
	const char *name = slash ? slash + 1 : "";
	size_t il = strlen("/" HOST_IMAGES_DIR);

	if (path[0] != '/' || !slash || (size_t)(slash - images) < il ||
	    strncmp(slash - il, "/" HOST_IMAGES_DIR, il) != 0)
		return bg_errorf(err, EINVAL, "gc: '%s' is not in an image cache", path);
	*slash = '\0';
	state = xstrndup(images, strlen(images) - il);
	if (host_baseimg_is_sha_name(name, ".raw")) {
		_cleanup_free_ char *src = xstrdup(path);
		struct file_ids used = { 0 };
		struct stat st;
		bool busy;
		int r;

		if (lstat(path, &st) < 0)
			return errno == ENOENT ? 0 : bg_error(err, errno, "gc: stat '%s'", path);
		r = used_images(*state ? state : "/", &used, err);
		busy = file_ids_has(&used, &st);
		free(used.v);
		if (r < 0)
			return bg_err_wrap(err, "gc");
		if (busy)
			return bg_errorf(err, EBUSY,
					 "gc: image cache '%s' is in use now; not removing it",
					 path);
		if (unlink(path) < 0 && errno != ENOENT)
			return bg_error(err, errno, "gc: remove '%s'", path);
		memcpy(src + strlen(src) - 4, ".src", 4);
		if (unlink(src) < 0 && errno != ENOENT)
			return bg_error(err, errno, "gc: remove '%s'", src);
		return 0;
	}
	if (host_baseimg_is_sha_name(name, ".src")) {
		_cleanup_free_ char *raw = xstrdup(path);

		memcpy(raw + strlen(raw) - 4, ".raw", 4);
		if (fs_exists(raw))
			return bg_errorf(err, EBUSY,
					 "gc: '%s' has its cache again; not removing it", path);
		if (unlink(path) < 0 && errno != ENOENT)
			return bg_error(err, errno, "gc: remove '%s'", path);
		return 0;
	}
	if (strncmp(name, HOST_IMAGES_TMP_PREFIX, strlen(HOST_IMAGES_TMP_PREFIX)) == 0) {
		_cleanup_close_ int fd = -1;

		if (!fs_exists(path))
			return 0;
		if (tmp_unlocked(path, &fd) != 1)
			return bg_errorf(err, EBUSY,
					 "gc: '%s' is in use by a conversion; not removing it",
					 path);
		if (unlink(path) < 0 && errno != ENOENT)
			return bg_error(err, errno, "gc: remove '%s'", path);
		return 0;
	}
	return bg_errorf(err, EINVAL, "gc: '%s' is not an image cache file", path);
}

/* Top dm devices before the "-base" ones they sit on. */
static int dm_order(const void *a, const void *b)
{
	const struct host_orphan *x = a, *y = b;
	size_t sl = strlen(HOST_DM_BASE_SUFFIX);
	size_t xl = strlen(x->name), yl = strlen(y->name);
	bool xb = xl > sl && strcmp(x->name + xl - sl, HOST_DM_BASE_SUFFIX) == 0;
	bool yb = yl > sl && strcmp(y->name + yl - sl, HOST_DM_BASE_SUFFIX) == 0;

	if (xb != yb)
		return xb ? 1 : -1;
	return strcmp(x->name, y->name);
}

int host_gc_scan(const char *state_dir, const char *const *known_ids, size_t n_known,
		 struct host_orphan **ret, size_t *ret_n, struct bg_err *err)
{
	struct scan s = { .known = known_ids, .n_known = n_known };
	_cleanup_free_ char *state = NULL;
	_cleanup_free_ char *vms = NULL;
	_cleanup_free_ char *prefix = NULL;
	size_t n_dm;
	int r;

	if (!state_dir || !*state_dir)
		return bg_errorf(err, EINVAL, "gc: no state directory");
	state = realpath(state_dir, NULL);
	if (!state)
		return bg_error(err, errno, "gc: state directory '%s'", state_dir);
	vms = fs_path_join(state, "vms");
	prefix = xasprintf("%s/", vms);
	s.vms_prefix = prefix;

	/*
	 * In removal order: dm (top, then base), loops, taps, filters, netrules,
	 * directories, image caches.
	 */
	if (host_dm_available()) {
		r = host_dm_foreach(dm_cb, &s, err);
		if (r < 0)
			goto fail;
	}
	n_dm = s.n;
	if (n_dm > 1)
		qsort(s.v, n_dm, sizeof(*s.v), dm_order);
	r = host_loop_foreach(loop_cb, &s, err);
	if (r < 0)
		goto fail;
	r = host_link_foreach(tap_cb, &s, err);
	if (r < 0)
		goto fail;
	r = host_antispoof_foreach(filter_cb, &s, err);
	if (r < 0)
		goto fail;
	r = host_netrules_foreach(netrules_cb, &s, err);
	if (r < 0)
		goto fail;
	r = scan_vm_dirs(&s, vms, err);
	if (r < 0)
		goto fail;
	r = scan_images(&s, state, err);
	if (r < 0)
		goto fail;
	*ret = s.v;
	*ret_n = s.n;
	return 0;
fail:
	free(s.v);
	return bg_err_wrap(err, "gc scan");
}

/* o->name is "<dir>/vms/<id>" with a valid id. */
static bool is_vm_dir_path(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t vl = strlen("/vms");

	if (!slash || !host_valid_id(slash + 1) || (size_t)(slash - path) < vl)
		return false;
	return strncmp(slash - vl, "/vms", vl) == 0;
}

int host_gc_remove(const struct host_orphan *o, struct bg_err *err)
{
	char id[HOST_ID_LEN + 1];

	if (!o)
		return bg_errorf(err, EINVAL, "gc: no object");
	switch (o->kind) {
	case HOST_ORPHAN_TAP: {
		struct host_link l;
		char master[16];
		int r;

		/* A tap enslaved elsewhere since the scan is someone's now: leave it. */
		r = host_parse_tap_name(o->name, NULL) ? host_link_get(o->name, &l, NULL) : -EINVAL;
		if (r == 0) {
			master_name(l.master, master);
			if (strcmp(master, o->master) != 0)
				return bg_errorf(
					err, EBUSY,
					"gc: tap '%s' is enslaved to '%s' now; not removing "
					"it",
					o->name, master[0] ? master : "no bridge");
		}
		return host_net_tap_remove(o->name, err);
	}
	case HOST_ORPHAN_DM:
		if (!host_dm_parse_id(o->name, o->detail, id))
			return bg_errorf(err, EINVAL, "gc: '%s' is not a banger dm device",
					 o->name);
		if (o->unowned)
			return bg_errorf(err, EPERM,
					 "gc: '%s' may be another banger instance's; not removing "
					 "it",
					 o->name);
		return host_dm_remove(o->name, NULL, err);
	case HOST_ORPHAN_LOOP:
		if (!o->detail[0])
			return bg_errorf(err, EINVAL, "gc: loop %s: no backing file recorded",
					 o->name);
		return host_loop_detach(o->name, o->detail, NULL, err);
	case HOST_ORPHAN_VM_DIR:
		if (!is_vm_dir_path(o->name))
			return bg_errorf(err, EINVAL, "gc: '%s' is not a VM directory", o->name);
		return fs_remove_tree(o->name, err);
	case HOST_ORPHAN_IMAGE_CACHE:
		return remove_image_file(o->name, err);
	case HOST_ORPHAN_FILTER: {
		struct host_net net = { .bridge = o->master };

		if (!host_parse_tap_name(o->name, NULL))
			return bg_errorf(err, EINVAL, "gc: '%s' is not a tap filter", o->name);
		return host_antispoof_remove(&net, o->name, err);
	}
	case HOST_ORPHAN_NETRULES: {
		struct host_net net = { .bridge = o->master };

		if (!host_parse_tap_name(o->name, NULL))
			return bg_errorf(err, EINVAL, "gc: '%s' is not a tap's netrules", o->name);
		return host_netrules_remove(&net, o->name, err);
	}
	case HOST_ORPHAN_KIND_MAX:
		break;
	}
	return bg_errorf(err, EINVAL, "gc: unknown object kind %d", (int)o->kind);
}
