/*
 * test_watch.c - the spec dir watcher: changes are seen (files, subfolders,
 * symlink swaps), a rescan causes no events of its own (no spin), and a spec
 * dir that was removed and made again is watched again after a resync; the
 * watcher never leaves the tree ('x -> /', a link out, an absolute link) and
 * holds at most SPEC_WATCH_MAX watches.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "reconciler/watch.h"
#include "tests/lib/testutil.h"

struct fx {
	char *dir;
	struct spec_watch *w;
};

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	f->dir = test_tmpdir("bg-watch");
	assert_int_equal(spec_watch_new(f->dir, &f->w, NULL), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	spec_watch_free(f->w);
	test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static char *at(const struct fx *f, const char *name)
{
	return fs_path_join(f->dir, name);
}

/* inotify queues events synchronously with the syscalls that cause them, so a drain
 * right after the change sees it, and a second drain sees only what the first caused. */
static void assert_settles(struct fx *f)
{
	for (int i = 0; i < 5; i++)
		if (!spec_watch_drain(f->w))
			return;
	fail_msg("the watcher keeps reporting changes with nothing changing (a rescan loop)");
}

static void test_file_changes(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *a = at(f, "a.yaml");

	assert_false(spec_watch_drain(f->w));
	test_write_file(a, "x");
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	assert_int_equal(unlink(a), 0);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
}

static void test_subfolder_no_spin(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *sub = at(f, "team-a");
	_cleanup_free_ char *git = at(f, ".git");
	_cleanup_free_ char *file = NULL;

	assert_int_equal(spec_watch_count(f->w), 1);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	assert_int_equal(spec_watch_count(f->w), 2);
	/* A file in the new folder is seen. */
	file = fs_path_join(sub, "web.yaml");
	test_write_file(file, "x");
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	/* A hidden folder (.git) is not watched, but its creation is noticed and settles. */
	assert_int_equal(mkdir(git, 0755), 0);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	assert_int_equal(spec_watch_count(f->w), 2);
	/* The folder goes away: its watch is dropped, nothing keeps firing. */
	test_rmtree(sub);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	assert_int_equal(spec_watch_count(f->w), 1);
}

static void test_symlink_swap(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *v1 = at(f, "v1"), *v2 = at(f, "v2");
	_cleanup_free_ char *cur = at(f, "current"), *tmp = at(f, "current.new");
	_cleanup_free_ char *in_v2 = NULL;

	/* Hidden targets, like Kubernetes' ..2024_x folders: reachable only through the link. */
	free(v1);
	free(v2);
	v1 = at(f, "..v1");
	v2 = at(f, "..v2");
	assert_int_equal(mkdir(v1, 0755), 0);
	assert_int_equal(mkdir(v2, 0755), 0);
	assert_int_equal(symlink("..v1", cur), 0);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	assert_int_equal(spec_watch_count(f->w), 2); /* root + v1 through the link */
	assert_int_equal(symlink("..v2", tmp), 0);
	assert_int_equal(rename(tmp, cur), 0);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	/* Now v2 is the one watched: a change in it is seen. */
	in_v2 = fs_path_join(v2, "a.yaml");
	test_write_file(in_v2, "x");
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
}

static void test_root_recreated(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *a = at(f, "a.yaml");

	test_rmtree(f->dir);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	assert_int_equal(spec_watch_count(f->w), 0);
	/* Made again: the periodic resync watches it again. */
	assert_int_equal(mkdir(f->dir, 0755), 0);
	spec_watch_resync(f->w);
	assert_int_equal(spec_watch_count(f->w), 1);
	assert_false(spec_watch_drain(f->w));
	test_write_file(a, "x");
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
}

static void test_hidden_file_writes_are_quiet(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *lock = at(f, ".banger.lock");

	test_write_file(lock, "");
	assert_true(spec_watch_drain(f->w)); /* its creation counts once */
	assert_settles(f);
	for (int i = 0; i < 3; i++) {
		test_write_file(lock, "x"); /* later writes (close-after-write) do not */
		assert_false(spec_watch_drain(f->w));
	}
}

static void test_resync_is_quiet(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *sub = at(f, "sub");

	assert_int_equal(mkdir(sub, 0755), 0);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	for (int i = 0; i < 10; i++) {
		spec_watch_resync(f->w);
		assert_false(spec_watch_drain(f->w));
	}
	assert_int_equal(spec_watch_count(f->w), 2);
}

/* Links out of the tree are never watched; a link to a directory inside it adds no watch. */
static void test_confined(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *sub = at(f, "sub");
	_cleanup_free_ char *root = at(f, "root");
	_cleanup_free_ char *up = at(f, "up");
	_cleanup_free_ char *abs = at(f, "abs");
	_cleanup_free_ char *again = at(f, "again");

	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(symlink("/", root), 0);
	assert_int_equal(symlink("../../../../../../../usr", up), 0);
	assert_int_equal(symlink(sub, abs), 0); /* absolute, even to inside: not followed */
	assert_int_equal(symlink("sub", again), 0);
	spec_watch_resync(f->w);
	assert_int_equal(spec_watch_count(f->w), 2);
}

/* More directories than SPEC_WATCH_MAX: exactly that many watches are held. */
static void test_watch_bound(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < SPEC_WATCH_MAX + 50; i++) {
		char name[32];
		_cleanup_free_ char *p = NULL;

		snprintf(name, sizeof(name), "d%04d", i);
		p = at(f, name);
		assert_int_equal(mkdir(p, 0755), 0);
	}
	spec_watch_resync(f->w);
	assert_int_equal(spec_watch_count(f->w), SPEC_WATCH_MAX);
	spec_watch_resync(f->w);
	assert_int_equal(spec_watch_count(f->w), SPEC_WATCH_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_file_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subfolder_no_spin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_root_recreated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hidden_file_writes_are_quiet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resync_is_quiet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_confined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_bound, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
