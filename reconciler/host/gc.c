/*
 * gc.c - the leak finder behind 'banger gc': objects that carry banger's
 * names but belong to no known VM id. It looks only at names banger makes:
 * taps "bg<8 hex>" (and only real taps), dm devices "banger-<8 hex>[-base]" or
 * with a UUID starting "BANGER-", loop devices backed by a file under
 * <state>/vms/<id>/, and directories <state>/vms/<id>.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

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

static int dm_cb(const char *name, const char *uuid, void *userdata)
{
	struct scan *s = userdata;
	char id[HOST_ID_LEN + 1];

	if (host_dm_parse_id(name, uuid, id) && !is_known(s, id))
		add(s, HOST_ORPHAN_DM, name, uuid);
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

static int tap_cb(const struct host_link *l, void *userdata)
{
	struct scan *s = userdata;
	const char *id;

	if (l->is_tap && host_parse_tap_name(l->name, &id) && !is_known(s, id))
		add(s, HOST_ORPHAN_TAP, l->name, "");
	return 0;
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
	case HOST_ORPHAN_TAP:
		return host_net_tap_remove(o->name, err);
	case HOST_ORPHAN_DM:
		if (!host_dm_parse_id(o->name, o->detail, id))
			return bg_errorf(err, EINVAL, "gc: '%s' is not a banger dm device",
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
