/*
 * gc.c - the leak finder behind 'banger gc': objects that carry banger's
 * names but belong to no known VM id. It looks only at names banger makes:
 * taps "bg<8 hex>" (and only real taps), dm devices "banger-<8 hex>[-base]" or
 * with a UUID starting "BANGER-", loop devices backed by a file under
 * <state>/vms/<id>/, and directories <state>/vms/<id>.
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

bool host_orphan_is_ours(const struct host_orphan *o, const char *bridge)
{
	switch (o->kind) {
	case HOST_ORPHAN_TAP:
		return !o->master[0] || (bridge && strcmp(o->master, bridge) == 0);
	case HOST_ORPHAN_DM:
		return !o->unowned;
	case HOST_ORPHAN_LOOP:
	case HOST_ORPHAN_VM_DIR:
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

	/* In removal order: dm (top, then base), loops, taps, directories. */
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
	r = scan_vm_dirs(&s, vms, err);
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
	case HOST_ORPHAN_KIND_MAX:
		break;
	}
	return bg_errorf(err, EINVAL, "gc: unknown object kind %d", (int)o->kind);
}
