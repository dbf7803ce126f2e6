/*
 * test_spec_cache.c - the spec cache (spec/cache.h) gives what a cold load
 * gives: a property test runs random sequences of file operations on a spec
 * directory (writes of valid, invalid and multi-document files, same-size
 * rewrites with the mtime put back, renames within, into a subdirectory, out
 * of and into the directory, deletes, subdirectories made, moved and removed,
 * symlinks and hard links, a userDataFile and its cloud-config) and after each
 * one compares a hinted load (the exact paths changed) and a full load
 * against spec_load_path() of the directory; and a hinted load parses only
 * the files named; a file the caller says is being written keeps its last
 * parse, or is skipped while new.
 *
 * BANGER_TEST_SEED=N replays a run (the seed is printed).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "spec/cache.h"
#include "spec/spec.h"
#include "tests/lib/testutil.h"

#define SEQUENCES 200
#define OPS 30

/* ---- comparing sets ----------------------------------------------------------------------- */

/* A finished set as lines of text: specs with hashes, diagnostics, failed names and files. */
static char *set_text(const struct spec_set *set, bool cached)
{
	char *out = xstrdup("");

	for (size_t i = 0; i < set->n_specs; i++) {
		const struct vm_spec *s = set->specs[i];
		char hash[SPEC_HASH_LEN + 1];
		char *next;

		spec_hash(s, hash);
		/* The cache's hash must be the spec's real hash. */
		if (cached && strcmp(hash, s->hash) != 0)
			fail_msg("spec '%s': cached hash %s, real %s", s->name, s->hash, hash);
		next = xasprintf("%sspec %s %s %s:%u\n", out, s->name, hash,
				 s->source_file ? s->source_file : "-", s->source_line);
		free(out);
		out = next;
	}
	for (size_t i = 0; i < set->n_diags; i++) {
		_cleanup_free_ char *line = spec_diag_format(&set->diags[i]);
		char *next = xasprintf("%sdiag %s\n", out, line);

		free(out);
		out = next;
	}
	for (size_t i = 0; i < set->n_failed_names; i++) {
		char *next = xasprintf("%sfailed-name %s\n", out, set->failed_names[i]);

		free(out);
		out = next;
	}
	for (size_t i = 0; i < set->n_failed_files; i++) {
		char *next = xasprintf("%sfailed-file %s\n", out, set->failed_files[i]);

		free(out);
		out = next;
	}
	return out;
}

static char *cold_text(const char *dir)
{
	struct spec_set set;
	char *text;

	spec_set_init(&set);
	(void)spec_load_path(&set, dir);
	(void)spec_set_finish(&set);
	text = set_text(&set, false);
	spec_set_release(&set);
	return text;
}

static char *cache_text(struct spec_cache *c, const char *const *changed, size_t n, bool full)
{
	struct spec_set set;
	char *text;

	spec_set_init(&set);
	(void)spec_cache_load(c, changed, n, full, &set);
	(void)spec_set_finish(&set);
	text = set_text(&set, true);
	spec_set_release(&set);
	return text;
}

/* ---- the directory and its operations ----------------------------------------------------- */

/* Every valid variant has the same length, so a rewrite can keep the size. */
static char *valid_spec(unsigned name, unsigned mem)
{
	return xasprintf("apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: vm%02u\nspec:\n"
			 "  memoryMiB: %u\n  kernel: {path: /k}\n  rootfs: {image: /i}\n",
			 name % 100, 256 + 256 * (mem % 3));
}

static const char *const INVALID[] = {
	"apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: vm03\nspec:\n  vcpus: 99\n"
	"  kernel: {path: /k}\n  rootfs: {image: /i}\n",
	"{{{ not yaml\n",
	"apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: vm01\nspec:\n  rootfs: {image: /i}\n",
};

static const char *const DIRS[] = { "s1", "s2", "s1/t", "s2/u" };
static const char *const NAMES[] = { "a.yaml", "b.yml", "c.yaml", "d.yaml", "e.yaml", "f.txt" };

struct tree {
	char *dir;	/* the spec directory */
	char *outside;	/* where files moved out wait to come back */
	char **changed; /* the paths this op changed (as inotify would name them) */
	size_t n_changed;
	char **files; /* what nftw found: rel paths of files and symlinks */
	size_t n_files;
	char **dirs; /* rel paths of subdirectories */
	size_t n_dirs;
	unsigned seed;
	int seq, op;
};

static struct tree *g_tree; /* nftw has no context argument */

static void strv_add(char ***v, size_t *n, char *owned)
{
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = owned;
}

static void strv_clear(char ***v, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		free((*v)[i]);
	free(*v);
	*v = NULL;
	*n = 0;
}

static int scan_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	const char *rel = path + strlen(g_tree->dir);

	(void)st;
	(void)ftw;
	if (*rel == '\0')
		return 0;
	rel++;
	if (type == FTW_D)
		strv_add(&g_tree->dirs, &g_tree->n_dirs, xstrdup(rel));
	else
		strv_add(&g_tree->files, &g_tree->n_files, xstrdup(rel));
	return 0;
}

static void scan(struct tree *t)
{
	strv_clear(&t->files, &t->n_files);
	strv_clear(&t->dirs, &t->n_dirs);
	g_tree = t;
	assert_int_equal(nftw(t->dir, scan_one, 16, FTW_PHYS), 0);
}

static char *in(const struct tree *t, const char *rel)
{
	return fs_path_join(t->dir, rel);
}

static void changed(struct tree *t, const char *rel)
{
	strv_add(&t->changed, &t->n_changed, in(t, rel));
}

/* A rel path for a new file: top or an existing subdirectory, a name from the pool. */
static char *pick_place(struct tree *t)
{
	size_t d = (size_t)rand() % (t->n_dirs + 1);
	const char *name = NAMES[(size_t)rand() % ARRAY_SIZE(NAMES)];

	return d == t->n_dirs ? xstrdup(name) : fs_path_join(t->dirs[d], name);
}

static void write_rel(struct tree *t, const char *rel, const char *text)
{
	_cleanup_free_ char *p = in(t, rel);
	struct stat st;

	/* Not through a symlink: inotify would name its target, not rel. */
	if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode))
		assert_int_equal(unlink(p), 0);
	test_write_file(p, text);
	changed(t, rel);
}

static void op_write_valid(struct tree *t)
{
	_cleanup_free_ char *rel = pick_place(t);
	_cleanup_free_ char *text = valid_spec((unsigned)rand() % 6, (unsigned)rand());

	write_rel(t, rel, text);
}

static void op_write_invalid(struct tree *t)
{
	_cleanup_free_ char *rel = pick_place(t);

	write_rel(t, rel, INVALID[(size_t)rand() % ARRAY_SIZE(INVALID)]);
}

static void op_write_multi(struct tree *t)
{
	_cleanup_free_ char *rel = pick_place(t);
	_cleanup_free_ char *a = valid_spec((unsigned)rand() % 6, (unsigned)rand());
	_cleanup_free_ char *b = valid_spec((unsigned)rand() % 6, (unsigned)rand());
	_cleanup_free_ char *text = xasprintf("---\n%s---\n%s", a, b);

	write_rel(t, rel, text);
}

/* Another spec of the same size in place, the mtime put back: only the bytes tell. */
static void op_same_size(struct tree *t)
{
	_cleanup_free_ char *p = NULL, *old = NULL, *text = NULL;
	const char *rel;
	struct stat st;
	struct timespec ts[2];

	if (t->n_files == 0)
		return;
	rel = t->files[(size_t)rand() % t->n_files];
	p = in(t, rel);
	if (lstat(p, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	for (int i = 0; i < 20; i++) {
		free(text);
		text = valid_spec((unsigned)rand() % 6, (unsigned)rand());
		if (fs_read_file(p, 1 << 20, &old, NULL, NULL) < 0 || strcmp(old, text) != 0)
			break;
		free(old);
		old = NULL;
	}
	test_write_file(p, text);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
	changed(t, rel);
}

static void op_rename_within(struct tree *t)
{
	_cleanup_free_ char *to = pick_place(t), *a = NULL, *b = NULL;
	const char *from;

	if (t->n_files == 0)
		return;
	from = t->files[(size_t)rand() % t->n_files];
	a = in(t, from);
	b = in(t, to);
	if (rename(a, b) < 0)
		return; /* onto a directory, or the same name */
	changed(t, from);
	changed(t, to);
}

static void op_rename_out(struct tree *t)
{
	_cleanup_free_ char *a = NULL, *b = NULL;
	const char *from;

	if (t->n_files == 0)
		return;
	from = t->files[(size_t)rand() % t->n_files];
	a = in(t, from);
	b = xasprintf("%s/out-%d", t->outside, rand() % 4);
	assert_int_equal(rename(a, b), 0);
	changed(t, from);
}

static void op_rename_in(struct tree *t)
{
	_cleanup_free_ char *to = pick_place(t), *a = NULL, *b = NULL;

	a = xasprintf("%s/out-%d", t->outside, rand() % 4);
	b = in(t, to);
	if (access(a, F_OK) < 0 || rename(a, b) < 0)
		return;
	changed(t, to);
}

static void op_delete(struct tree *t)
{
	_cleanup_free_ char *p = NULL;
	const char *rel;

	if (t->n_files == 0)
		return;
	rel = t->files[(size_t)rand() % t->n_files];
	p = in(t, rel);
	assert_int_equal(unlink(p), 0);
	changed(t, rel);
}

static void op_mkdir(struct tree *t)
{
	const char *rel = DIRS[(size_t)rand() % ARRAY_SIZE(DIRS)];
	_cleanup_free_ char *p = in(t, rel);

	if (mkdir(p, 0755) == 0)
		changed(t, rel);
}

static void op_rmdir(struct tree *t)
{
	_cleanup_free_ char *p = NULL, *rel = NULL;

	if (t->n_dirs == 0)
		return;
	rel = xstrdup(t->dirs[(size_t)rand() % t->n_dirs]);
	p = in(t, rel);
	test_rmtree(p);
	changed(t, rel);
}

static void op_rename_dir(struct tree *t)
{
	_cleanup_free_ char *a = NULL, *b = NULL, *from = NULL;
	const char *to = DIRS[(size_t)rand() % ARRAY_SIZE(DIRS)];

	if (t->n_dirs == 0)
		return;
	from = xstrdup(t->dirs[(size_t)rand() % t->n_dirs]);
	a = in(t, from);
	b = in(t, to);
	if (rename(a, b) < 0)
		return; /* into itself, or onto a non-empty directory */
	changed(t, from);
	changed(t, to);
}

/*
 * A symlink at the top to a top-level name (maybe dangling), or a hard link;
 * named so the walk reaches the file through it first.
 */
static void op_link(struct tree *t)
{
	_cleanup_free_ char *rel = xasprintf("0l%d.yaml", rand() % 3);
	_cleanup_free_ char *p = in(t, rel), *target = NULL;
	const char *name = NAMES[(size_t)rand() % ARRAY_SIZE(NAMES)];

	(void)unlink(p);
	if (rand() % 2) {
		assert_int_equal(symlink(name, p), 0);
	} else {
		target = in(t, name);
		if (link(target, p) < 0)
			return;
	}
	changed(t, rel);
}

/* A spec naming a userDataFile, or that cloud-config (changed alone). */
static void op_userdata(struct tree *t)
{
	_cleanup_free_ char *rel = NULL, *text = NULL;

	if (rand() % 2) {
		rel = xstrdup("ud.yaml");
		text = xasprintf("#cloud-config\nruncmd: [echo %d]\n", rand() % 3);
	} else {
		rel = xstrdup("u.yaml");
		text = xasprintf("apiVersion: banger/v1\nkind: VM\nmetadata: {name: vm%02d}\n"
				 "spec:\n  kernel: {path: /k}\n  rootfs: {image: /i}\n"
				 "  cloudInit: {userDataFile: ud.yaml}\n",
				 rand() % 6);
	}
	write_rel(t, rel, text);
}

static void (*const OPS_TABLE[])(struct tree *) = {
	op_write_valid, op_write_valid, op_write_invalid, op_write_multi,
	op_same_size,	op_same_size,	op_rename_within, op_rename_out,
	op_rename_in,	op_delete,	op_mkdir,	  op_mkdir,
	op_rmdir,	op_rename_dir,	op_link,	  op_userdata,
};

static unsigned test_seed(void)
{
	const char *env = getenv("BANGER_TEST_SEED");

	if (env && *env)
		return (unsigned)strtoul(env, NULL, 10);
	return (unsigned)time(NULL) ^ (unsigned)getpid();
}

static void assert_same(const struct tree *t, const char *what, const char *want, const char *got)
{
	if (strcmp(want, got) == 0)
		return;
	print_error("seed %u, sequence %d, op %d: the %s load differs from a cold load\n"
		    "--- cold\n%s--- %s\n%s",
		    t->seed, t->seq, t->op, what, want, what, got);
	fail();
}

static void test_property(void **state)
{
	struct tree t = { .seed = test_seed() };

	(void)state;
	print_message("spec cache property test: seed %u (BANGER_TEST_SEED=%u replays it)\n",
		      t.seed, t.seed);
	srand(t.seed);
	for (t.seq = 0; t.seq < SEQUENCES; t.seq++) {
		struct spec_cache *hinted, *full;

		t.dir = test_tmpdir("bg-speccache");
		t.outside = test_tmpdir("bg-speccache-out");
		hinted = spec_cache_new(t.dir);
		full = spec_cache_new(t.dir);
		for (t.op = 0; t.op < OPS; t.op++) {
			_cleanup_free_ char *cold = NULL, *h = NULL, *f = NULL;

			scan(&t);
			OPS_TABLE[(size_t)rand() % ARRAY_SIZE(OPS_TABLE)](&t);
			cold = cold_text(t.dir);
			h = cache_text(hinted, (const char *const *)t.changed, t.n_changed, false);
			f = cache_text(full, NULL, 0, true);
			assert_same(&t, "hinted", cold, h);
			assert_same(&t, "full", cold, f);
			strv_clear(&t.changed, &t.n_changed);
		}
		spec_cache_free(hinted);
		spec_cache_free(full);
		strv_clear(&t.files, &t.n_files);
		strv_clear(&t.dirs, &t.n_dirs);
		test_rmtree(t.dir);
		test_rmtree(t.outside);
		free(t.dir);
		free(t.outside);
	}
}

/* ---- what is parsed --------------------------------------------------------------------- */

static void load(struct spec_cache *c, const char *const *changed, size_t n, bool full,
		 const char *dir)
{
	_cleanup_free_ char *want = cold_text(dir);
	_cleanup_free_ char *got = cache_text(c, changed, n, full);

	assert_string_equal(got, want);
}

static void test_parses_only_what_changed(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-speccache");
	_cleanup_(spec_cache_freep) struct spec_cache *c = spec_cache_new(dir);
	_cleanup_free_ char *p5 = NULL, *text = NULL, *stale = NULL;
	struct stat st;
	struct timespec ts[2];
	const char *hint[1];

	(void)state;
	for (unsigned i = 0; i < 20; i++) {
		_cleanup_free_ char *name = xasprintf("f%02u.yaml", i);
		_cleanup_free_ char *p = fs_path_join(dir, name);
		_cleanup_free_ char *spec = valid_spec(i, 0);

		test_write_file(p, spec);
	}
	/* Names whose walk order ("a" is walked before "a-.yaml") is not strcmp order. */
	{
		_cleanup_free_ char *sub = fs_path_join(dir, "a");
		const char *const more[] = { "a/x.yaml", "a/y.yaml", "a-.yaml", "a.yaml" };

		assert_int_equal(mkdir(sub, 0755), 0);
		for (unsigned i = 0; i < ARRAY_SIZE(more); i++) {
			_cleanup_free_ char *p = fs_path_join(dir, more[i]);
			_cleanup_free_ char *spec = valid_spec(50 + i, 0);

			test_write_file(p, spec);
		}
	}
	load(c, NULL, 0, false, dir);
	assert_int_equal(spec_cache_parses(c), 24);
	assert_int_equal(spec_cache_size(c), 24);

	/* Nothing changed: nothing is parsed, hinted or full (read and hashed, same bytes). */
	load(c, NULL, 0, false, dir);
	load(c, NULL, 0, true, dir);
	assert_int_equal(spec_cache_parses(c), 24);

	/* One file rewritten, same size, mtime put back: invisible to stat ... */
	p5 = fs_path_join(dir, "f05.yaml");
	assert_int_equal(stat(p5, &st), 0);
	text = valid_spec(5, 1);
	test_write_file(p5, text);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, p5, ts, 0), 0);
	/* ... so a load without a hint keeps the old parse (this is what hints are for) ... */
	stale = cache_text(c, NULL, 0, false);
	assert_int_equal(spec_cache_parses(c), 24);
	{
		_cleanup_free_ char *cold = cold_text(dir);

		assert_string_not_equal(stale, cold);
	}
	/* ... and the hint names it: that file alone is parsed again. */
	hint[0] = p5;
	load(c, hint, 1, false, dir);
	assert_int_equal(spec_cache_parses(c), 25);

	/* The same once more, caught by a full load's hash instead. */
	free(text);
	text = valid_spec(5, 2);
	assert_int_equal(stat(p5, &st), 0);
	test_write_file(p5, text);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, p5, ts, 0), 0);
	load(c, NULL, 0, true, dir);
	assert_int_equal(spec_cache_parses(c), 26);

	/* A hint for a directory above a file, or kept with spec_cache_hint(): re-read,
	 * but the bytes are the same, so no parse. */
	hint[0] = dir;
	spec_cache_hint(c, hint, 1, false);
	load(c, NULL, 0, false, dir);
	assert_int_equal(spec_cache_parses(c), 26);

	/* A deleted file leaves the cache. */
	assert_int_equal(unlink(p5), 0);
	hint[0] = p5;
	load(c, hint, 1, false, dir);
	assert_int_equal(spec_cache_size(c), 23);
	assert_int_equal(spec_cache_parses(c), 26);
	test_rmtree(dir);
}

/* The files being written: a NULL-ended list of paths (ctx). */
static bool writing_in(void *ctx, const char *path)
{
	for (const char *const *p = ctx; *p; p++)
		if (strcmp(*p, path) == 0)
			return true;
	return false;
}

/* The spec named 'name', or NULL. */
static const struct vm_spec *find_spec(const struct spec_set *set, const char *name)
{
	for (size_t i = 0; i < set->n_specs; i++)
		if (strcmp(set->specs[i]->name, name) == 0)
			return set->specs[i];
	return NULL;
}

static void load_into(struct spec_cache *c, const char *const *changed, size_t n, bool full,
		      struct spec_set *set)
{
	spec_set_release(set);
	spec_set_init(set);
	(void)spec_cache_load(c, changed, n, full, set);
	assert_int_equal(spec_set_finish(set), 0);
}

/*
 * A pass run for some other reason while '>' rewrites a spec, or while a new
 * spec is written, must not see the half-written bytes: they can be a valid
 * but different spec (here: cut before memoryMiB, so the default 256).
 */
static void test_being_written(void **state)
{
	static const char FULL[] = "apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: vm01\n"
				   "spec:\n  kernel: {path: /k}\n  rootfs: {image: /i}\n"
				   "  memoryMiB: 1024\n";
	_cleanup_free_ char *dir = test_tmpdir("bg-speccache");
	_cleanup_(spec_cache_freep) struct spec_cache *c = spec_cache_new(dir);
	_cleanup_free_ char *a = fs_path_join(dir, "a.yaml"), *b = fs_path_join(dir, "b.yaml");
	_cleanup_free_ char *half = xstrndup(FULL, strstr(FULL, "  memoryMiB") - FULL);
	_cleanup_free_ char *other = valid_spec(2, 0);
	const char *writing[3] = { NULL };
	const char *hints[2] = { a, b };
	struct spec_set set, cold;

	(void)state;
	spec_set_init(&set);
	spec_cache_set_writing(c, writing_in, writing);
	test_write_file(a, FULL);
	load_into(c, NULL, 0, false, &set);
	assert_int_equal(set.n_specs, 1);
	assert_int_equal(find_spec(&set, "vm01")->memory_mib, 1024);
	assert_int_equal(spec_cache_parses(c), 1);

	/* a truncated and half rewritten, b new: both still being written. */
	test_write_file(a, half);
	test_write_file(b, other);
	writing[0] = a;
	writing[1] = b;
	/* (What a reader of the files sees now: a valid vm01 of 256 MiB, and vm02.) */
	spec_set_init(&cold);
	(void)spec_load_path(&cold, dir);
	assert_int_equal(spec_set_finish(&cold), 0);
	assert_int_equal(cold.n_specs, 2);
	assert_int_equal(find_spec(&cold, "vm01")->memory_mib, 256);
	spec_set_release(&cold);
	/* Neither hints naming them nor a full load read them: a keeps its last parse, b is
	 * not there yet (and no diagnostic). */
	for (int full = 0; full < 2; full++) {
		load_into(c, hints, 2, full, &set);
		assert_int_equal(set.n_specs, 1);
		assert_int_equal(find_spec(&set, "vm01")->memory_mib, 1024);
		assert_null(find_spec(&set, "vm02"));
		assert_int_equal(set.n_diags, 0);
	}
	load_into(c, NULL, 0, false, &set);
	assert_int_equal(set.n_specs, 1);
	assert_int_equal(spec_cache_parses(c), 1);

	/* b is closed: it is read; a still is not. */
	writing[1] = NULL;
	load_into(c, hints + 1, 1, false, &set);
	assert_int_equal(set.n_specs, 2);
	assert_int_equal(find_spec(&set, "vm01")->memory_mib, 1024);
	assert_non_null(find_spec(&set, "vm02"));

	/* a is finished and closed: an ordinary load (no hint) reads its new bytes. */
	test_write_file(a, FULL);
	writing[0] = NULL;
	load_into(c, NULL, 0, false, &set);
	assert_int_equal(set.n_specs, 2);
	assert_int_equal(find_spec(&set, "vm01")->memory_mib, 1024);
	/* And a rewrite that is whole (the writer closed it) is the new spec. */
	test_write_file(a, half);
	load_into(c, NULL, 0, false, &set);
	assert_int_equal(find_spec(&set, "vm01")->memory_mib, 256);
	spec_set_release(&set);
	test_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parses_only_what_changed),
		cmocka_unit_test(test_being_written),
		cmocka_unit_test(test_property),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
