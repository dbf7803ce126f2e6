/*
 * cache.c - the spec directory's files, parsed once and kept while they do
 * not change; see cache.h.
 *
 * The walk is spec.c's (through struct spec_walk_hook), so the cache decides
 * only "read this file or not" and "parse these bytes or not"; everything the
 * walk itself reports stays as a cold load reports it. A file's parse result
 * is kept as the unfinished spec_set that parsing it alone gave, and merged
 * into the caller's set in walk order, so diagnostics, failed names and the
 * duplicate check of spec_set_finish() see the same input as after a cold
 * load.
 */
#include "spec/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "spec/internal.h"

/* More hints than this in one load: read everything (one full pass is cheaper). */
#define CACHE_HINTS_MAX SPEC_DIR_FILES_MAX

struct cache_entry {
	char *rel;  /* path inside the directory */
	bool taken; /* moved to the load under way (which owns rel and frag now) */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	size_t len;			 /* bytes read (what the walk's byte bound counts) */
	char digest[SHA256_HEX_LEN + 1]; /* of those bytes */
	bool volatile_;			 /* names a userDataFile: never trusted */
	struct spec_set frag;		 /* what parsing the file alone added */
};

struct file_key {
	dev_t dev;
	ino_t ino;
};

struct spec_cache {
	char *dir;
	struct cache_entry *v; /* the last load's files, sorted by rel */
	size_t n;
	struct cache_entry *next; /* the files of the load under way, in walk order */
	size_t n_next;
	char **pending; /* hints kept for the next load, as given */
	size_t n_pending;
	bool pending_all;
	/* One load's view of its hints. */
	bool all;     /* read every file */
	char **hints; /* rel paths, sorted */
	size_t n_hints;
	char **hint_paths; /* as given, until begin() resolves them */
	size_t n_hint_paths;
	struct file_key *hint_ids; /* inodes the hinted paths are now, sorted */
	size_t n_hint_ids;
	/* Which files are being written (spec_cache_set_writing()), or NULL. */
	bool (*writing)(void *ctx, const char *path);
	void *writing_ctx;
	unsigned long parses;
};

/* What a file adds that is being written and was not read before: nothing, yet. */
static const struct cache_entry not_yet;

static void entry_release(struct cache_entry *e)
{
	free(e->rel);
	e->rel = NULL;
	spec_set_release(&e->frag);
}

static void strv_free_n(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void strv_add(char ***v, size_t *n, const char *s)
{
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = xstrdup(s);
}

struct spec_cache *spec_cache_new(const char *dir)
{
	struct spec_cache *c = xcalloc(1, sizeof(*c));

	c->dir = xstrdup(dir);
	return c;
}

void spec_cache_free(struct spec_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		entry_release(&c->v[i]);
	free(c->v);
	strv_free_n(c->pending, c->n_pending);
	free(c->dir);
	free(c);
}

unsigned long spec_cache_parses(const struct spec_cache *c)
{
	return c->parses;
}

size_t spec_cache_size(const struct spec_cache *c)
{
	return c->n;
}

void spec_cache_set_writing(struct spec_cache *c, bool (*writing)(void *ctx, const char *path),
			    void *ctx)
{
	c->writing = writing;
	c->writing_ctx = writing ? ctx : NULL;
}

void spec_cache_hint(struct spec_cache *c, const char *const *paths, size_t n, bool all)
{
	if (all || c->n_pending + n > CACHE_HINTS_MAX) {
		c->pending_all = true;
		n = 0;
	}
	if (c->pending_all) {
		strv_free_n(c->pending, c->n_pending);
		c->pending = NULL;
		c->n_pending = 0;
		return;
	}
	for (size_t i = 0; i < n; i++)
		strv_add(&c->pending, &c->n_pending, paths[i]);
}

/* ---- hints ------------------------------------------------------------------------------- */

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int key_cmp(const void *a, const void *b)
{
	const struct file_key *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* The length of dir without trailing slashes ("/" keeps its one). */
static size_t dir_len(const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	return n;
}

/*
 * A hinted path as a rel path inside the directory (owned), or NULL when it is
 * the directory itself or not beneath it: then nothing narrower than "all" is safe.
 */
static char *hint_rel(const struct spec_cache *c, const char *path)
{
	size_t n = dir_len(c->dir), len;
	const char *rel;

	if (strncmp(path, c->dir, n) != 0)
		return NULL;
	rel = path + n;
	if (n > 1 || c->dir[0] != '/') {
		if (*rel != '/')
			return NULL;
	}
	while (*rel == '/')
		rel++;
	len = strlen(rel);
	while (len > 0 && rel[len - 1] == '/')
		len--;
	if (len == 0)
		return NULL;
	return xstrndup(rel, len);
}

/* Turn the load's hint paths into sorted rel paths; any that cannot be placed means "all". */
static void hints_prepare(struct spec_cache *c)
{
	for (size_t i = 0; i < c->n_hint_paths && !c->all; i++) {
		char *rel = hint_rel(c, c->hint_paths[i]);

		if (!rel) {
			c->all = true;
			break;
		}
		c->hints = xreallocarray(c->hints, c->n_hints + 1, sizeof(*c->hints));
		c->hints[c->n_hints++] = rel;
	}
	if (c->n_hints > 1)
		qsort(c->hints, c->n_hints, sizeof(*c->hints), str_cmp);
}

/*
 * The walk begins: note which inodes the hinted paths are now, so a file
 * reached by another name (a symlink or a hard link in the tree) still counts
 * as named by the hint.
 */
static void hook_begin(void *ctx, int root_fd)
{
	struct spec_cache *c = ctx;

	for (size_t i = 0; i < c->n_hints && !c->all; i++) {
		_cleanup_close_ int fd = fs_open_beneath(root_fd, c->hints[i], O_PATH, 0);
		struct stat st;

		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		c->hint_ids = xreallocarray(c->hint_ids, c->n_hint_ids + 1, sizeof(*c->hint_ids));
		c->hint_ids[c->n_hint_ids++] = (struct file_key){ st.st_dev, st.st_ino };
	}
	if (c->n_hint_ids > 1)
		qsort(c->hint_ids, c->n_hint_ids, sizeof(*c->hint_ids), key_cmp);
}

/* true when a hint names rel or a directory above it. */
static bool hinted_path(const struct spec_cache *c, const char *rel)
{
	_cleanup_free_ char *prefix = xstrdup(rel);
	char *slash;

	if (c->n_hints == 0)
		return false;
	for (;;) {
		const char *key = prefix;

		if (bsearch(&key, c->hints, c->n_hints, sizeof(*c->hints), str_cmp))
			return true;
		slash = strrchr(prefix, '/');
		if (!slash)
			return false;
		*slash = '\0';
	}
}

static bool must_read(const struct spec_cache *c, const char *rel, const struct stat *st)
{
	struct file_key k = { st->st_dev, st->st_ino };

	if (c->all || hinted_path(c, rel))
		return true;
	return c->n_hint_ids &&
	       bsearch(&k, c->hint_ids, c->n_hint_ids, sizeof(*c->hint_ids), key_cmp);
}

/* ---- the walk's hook ---------------------------------------------------------------------- */

/* The last load's entry for rel, or NULL. */
static struct cache_entry *find(struct spec_cache *c, const char *rel)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r;

		r = strcmp(rel, c->v[mid].rel);
		if (r == 0)
			return &c->v[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/*
 * Move e (an entry of the last load, or a new one) into the load under way. An
 * old entry stays in place, marked taken, its rel still there for find().
 */
static struct cache_entry *keep(struct spec_cache *c, struct cache_entry *e)
{
	struct cache_entry *k;

	c->next = xreallocarray(c->next, c->n_next + 1, sizeof(*c->next));
	k = &c->next[c->n_next++];
	*k = *e;
	e->taken = true;
	return k;
}

static bool same_stat(const struct cache_entry *e, const struct stat *st)
{
	return e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
	       e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void set_stat(struct cache_entry *e, const struct stat *st)
{
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->size = st->st_size;
	e->mtime = st->st_mtim;
}

static bool being_written(const struct spec_cache *c, const char *rel)
{
	_cleanup_free_ char *path = NULL;

	if (!c->writing)
		return false;
	path = fs_path_join(c->dir, rel);
	return c->writing(c->writing_ctx, path);
}

/*
 * A file being written is not read, whatever hints or a full pass say: its
 * last parse stands, with the stat it had (so the first load after the write
 * reads it again), or, new, it adds nothing yet.
 */
static const void *lookup_writing(struct spec_cache *c, const char *rel, size_t *ret_len)
{
	struct cache_entry *e = find(c, rel);

	if (!e || e->taken) {
		*ret_len = 0;
		return &not_yet;
	}
	e = keep(c, e);
	*ret_len = e->len;
	return e;
}

static const void *hook_lookup(void *ctx, const char *rel, const struct stat *st, size_t *ret_len)
{
	struct spec_cache *c = ctx;
	struct cache_entry *e;

	if (being_written(c, rel))
		return lookup_writing(c, rel, ret_len);
	if (must_read(c, rel, st))
		return NULL;
	e = find(c, rel);
	if (!e || e->taken || e->volatile_ || !same_stat(e, st))
		return NULL;
	e = keep(c, e);
	*ret_len = e->len;
	return e;
}

static int hook_use(void *ctx, const void *entry, struct spec_set *set)
{
	const struct cache_entry *e = entry;

	(void)ctx;
	spec_set_merge(set, &e->frag);
	return (int)e->frag.n_diags;
}

static int hook_parse(void *ctx, const char *rel, const char *path, const char *rel_dir,
		      const struct stat *st, const char *data, size_t len, const char *top,
		      int root_fd, struct spec_set *set)
{
	struct spec_cache *c = ctx;
	struct cache_entry *old = find(c, rel), fresh = { 0 }, *e;

	if (old && old->taken)
		old = NULL; /* cannot be: a walk reaches each path once */
	char digest[SHA256_HEX_LEN + 1];

	sha256_hex(data, len, digest);
	if (old && !old->volatile_ && strcmp(old->digest, digest) == 0) {
		/* Read again (a hint, a full pass, a new mtime) but the same bytes: no parse. */
		e = keep(c, old);
	} else {
		if (old) {
			/* Its rel goes to the new entry (find() still compares against it). */
			spec_set_release(&old->frag);
			old->taken = true;
			fresh.rel = old->rel;
		} else {
			fresh.rel = xstrdup(rel);
		}
		memcpy(fresh.digest, digest, sizeof(digest));
		/* A cloud-config kept next to the specs is YAML too, but no spec. */
		if (spec_userdata_kind(data, len) != SPEC_USERDATA_CLOUD_CONFIG) {
			(void)spec_parse_buffer_at(&fresh.frag, path, data, len, top, root_fd,
						   rel_dir);
			c->parses++;
			fresh.volatile_ = memmem(data, len, "userDataFile", 12) != NULL;
			for (size_t i = 0; i < fresh.frag.n_specs; i++)
				spec_hash(fresh.frag.specs[i], fresh.frag.specs[i]->hash);
		}
		e = keep(c, &fresh);
	}
	set_stat(e, st);
	e->len = len;
	return hook_use(c, e, set);
}

/* ---- a load ------------------------------------------------------------------------------- */

static int entry_cmp(const void *a, const void *b)
{
	const struct cache_entry *x = a, *y = b;

	return strcmp(x->rel, y->rel);
}

/* The walk is over: what it did not reach is gone; the rest becomes the cache. */
static void generation_end(struct spec_cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		if (!c->v[i].taken)
			entry_release(&c->v[i]);
	free(c->v);
	if (c->n_next > 1)
		qsort(c->next, c->n_next, sizeof(*c->next), entry_cmp);
	c->v = c->next;
	c->n = c->n_next;
	c->next = NULL;
	c->n_next = 0;
}

static void hints_end(struct spec_cache *c)
{
	strv_free_n(c->hints, c->n_hints);
	strv_free_n(c->hint_paths, c->n_hint_paths);
	free(c->hint_ids);
	c->hints = c->hint_paths = NULL;
	c->hint_ids = NULL;
	c->n_hints = c->n_hint_paths = c->n_hint_ids = 0;
	c->all = false;
}

int spec_cache_load(struct spec_cache *c, const char *const *changed, size_t n_changed, bool full,
		    struct spec_set *set)
{
	struct spec_walk_hook hook = {
		.ctx = c,
		.begin = hook_begin,
		.lookup = hook_lookup,
		.use = hook_use,
		.parse = hook_parse,
	};
	int errors;

	/* This load takes the kept hints; hints given during it are for the next one. */
	c->all = full || c->pending_all || c->n_pending + n_changed > CACHE_HINTS_MAX;
	c->hint_paths = TAKE_PTR(c->pending);
	c->n_hint_paths = c->n_pending;
	c->n_pending = 0;
	c->pending_all = false;
	for (size_t i = 0; i < n_changed && !c->all; i++)
		strv_add(&c->hint_paths, &c->n_hint_paths, changed[i]);
	hints_prepare(c);

	errors = spec_load_path_hooked(set, c->dir, &hook);
	generation_end(c);
	hints_end(c);
	return errors;
}
