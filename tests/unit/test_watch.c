/*
 * test_watch.c - the spec dir watcher: changes are seen (files, subfolders,
 * symlink swaps), a rescan causes no events of its own (no spin), and a spec
 * dir that was removed and made again is watched again after a resync; the
 * watcher never leaves the tree ('x -> /', a link out, an absolute link) and
 * holds at most SPEC_WATCH_MAX watches. The paths events name are collected
 * for the spec cache (create, renames in, out and within, delete, a new
 * subdirectory), and an overflow asks for everything. Files being written
 * (created or written, not yet closed) are kept in a set until they are
 * closed, deleted, renamed away or replaced, for at most
 * SPEC_WATCH_WRITING_MAX_MS.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "common/timeutil.h"
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

/*
 * A pass starts on the first event, so a spec file being written must not
 * be one: its creation is not a change, its close is. Links are whole at once.
 */
static void test_file_being_written_waits_for_close(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *a = at(f, "a.yaml");
	_cleanup_free_ char *hard = at(f, "hard.yaml");
	_cleanup_free_ char *sym = at(f, "sym.yaml");
	int fd;

	fd = open(a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_false(spec_watch_drain(f->w)); /* created, still open */
	assert_int_equal(write(fd, "x\n", 2), 2);
	assert_false(spec_watch_drain(f->w));
	close(fd);
	assert_true(spec_watch_drain(f->w)); /* closed: now it is a change */
	assert_settles(f);
	assert_int_equal(link(a, hard), 0);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	assert_int_equal(symlink("a.yaml", sym), 0);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
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

/* Drain, take the named paths and check that 'want' (NULL-ended names below the dir) are
 * all of them (each at least once, nothing else), and that nothing asks for "everything". */
static void assert_paths(struct fx *f, const char *const *want)
{
	size_t n = 0;
	bool all = true;
	char **got;

	(void)spec_watch_drain(f->w);
	got = spec_watch_take_paths(f->w, &n, &all);
	assert_false(all);
	for (size_t i = 0; i < n; i++) {
		bool known = false;

		for (size_t k = 0; want[k]; k++) {
			_cleanup_free_ char *p = at(f, want[k]);

			known = known || strcmp(got[i], p) == 0;
		}
		if (!known)
			fail_msg("unexpected path named: '%s'", got[i]);
	}
	for (size_t k = 0; want[k]; k++) {
		_cleanup_free_ char *p = at(f, want[k]);
		bool found = false;

		for (size_t i = 0; i < n; i++)
			found = found || strcmp(got[i], p) == 0;
		if (!found)
			fail_msg("'%s' not named", p);
	}
	spec_watch_paths_free(got, n);
	/* Taken: the next take is empty. */
	got = spec_watch_take_paths(f->w, &n, &all);
	assert_int_equal(n, 0);
	assert_false(all);
	spec_watch_paths_free(got, n);
}

static void test_paths(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *outside = test_tmpdir("bg-watch-out");
	_cleanup_free_ char *a = at(f, "a.yaml"), *b = at(f, "b.yaml"), *sub = at(f, "sub");
	_cleanup_free_ char *out = fs_path_join(outside, "x.yaml");
	_cleanup_free_ char *in_sub = NULL;

	/* Create (and the write that follows). */
	test_write_file(a, "x");
	assert_paths(f, (const char *const[]){ "a.yaml", NULL });
	/* Rename within: both names. */
	assert_int_equal(rename(a, b), 0);
	assert_paths(f, (const char *const[]){ "a.yaml", "b.yaml", NULL });
	/* Rename out. */
	assert_int_equal(rename(b, out), 0);
	assert_paths(f, (const char *const[]){ "b.yaml", NULL });
	/* Rename in. */
	assert_int_equal(rename(out, a), 0);
	assert_paths(f, (const char *const[]){ "a.yaml", NULL });
	/* Delete. */
	assert_int_equal(unlink(a), 0);
	assert_paths(f, (const char *const[]){ "a.yaml", NULL });
	/* A new subdirectory, then a file in it: named below it once it is watched. */
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_paths(f, (const char *const[]){ "sub", NULL });
	in_sub = fs_path_join(sub, "c.yaml");
	test_write_file(in_sub, "x");
	assert_paths(f, (const char *const[]){ "sub/c.yaml", NULL });
	/* The subdirectory goes: it (its subtree) and the file in it. */
	test_rmtree(sub);
	assert_paths(f, (const char *const[]){ "sub", "sub/c.yaml", NULL });
	test_rmtree(outside);
}

/*
 * Write more events than inotify's queue holds (two names in turn, as the
 * kernel merges an event equal to the one before it). false, and nothing
 * written, when the queue is too large to overflow in a test.
 */
static bool overflow_queue(struct fx *f, const char *name1, const char *name2)
{
	_cleanup_free_ char *max_s = NULL;
	long max = 16384;

	if (fs_read_file("/proc/sys/fs/inotify/max_queued_events", 64, &max_s, NULL, NULL) >= 0)
		max = strtol(max_s, NULL, 10);
	if (max <= 0 || max > 200000)
		return false;
	for (long i = 0; i < max + 1000; i++) {
		_cleanup_free_ char *p = at(f, i % 2 ? name1 : name2);

		test_write_file(p, "x");
	}
	return true;
}

/* A queue overflow cannot be narrowed down: everything. */
static void test_paths_overflow(void **state)
{
	struct fx *f = *state;
	size_t n = 0;
	bool all = false;
	char **got;

	if (!overflow_queue(f, "a.yaml", "b.yaml")) {
		test_skip_reason("inotify's max_queued_events is too large to overflow here");
		skip();
	}
	assert_true(spec_watch_drain(f->w));
	got = spec_watch_take_paths(f->w, &n, &all);
	assert_true(all);
	assert_int_equal(n, 0);
	spec_watch_paths_free(got, n);
}

static bool writing(const struct fx *f, const char *path)
{
	return spec_watch_is_writing(f->w, path, now_mono_ms());
}

/* Drain and take the named paths: true when 'path' is among them. */
static bool drain_names(struct fx *f, const char *path, bool *ret_changed)
{
	size_t n = 0;
	bool all = false, found = false;
	char **got;

	*ret_changed = spec_watch_drain(f->w);
	got = spec_watch_take_paths(f->w, &n, &all);
	for (size_t i = 0; i < n; i++)
		found = found || strcmp(got[i], path) == 0;
	spec_watch_paths_free(got, n);
	return found || all;
}

/*
 * A new file written in pieces with its fd held open ('cat > a.yaml'): in the
 * set and no change, however many writes; closed, it leaves the set and is
 * the change (named for the cache).
 */
static void test_writing_new_file(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *a = at(f, "a.yaml");
	bool changed;
	int fd;

	assert_false(writing(f, a));
	fd = open(a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_false(spec_watch_drain(f->w));
	assert_true(writing(f, a));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(write(fd, "kind: VM\n", 9), 9);
		assert_false(spec_watch_drain(f->w));
		assert_true(writing(f, a));
	}
	close(fd);
	assert_true(drain_names(f, a, &changed));
	assert_true(changed);
	assert_false(writing(f, a));
	assert_settles(f);
}

/* An existing file truncated by open(O_TRUNC) ('>') and written: in the set until closed. */
static void test_writing_truncated_file(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *a = at(f, "a.yaml"), *lock = at(f, ".lock");
	bool changed;
	int fd;

	test_write_file(a, "kind: VM\n");
	test_write_file(lock, "");
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);
	assert_false(writing(f, a));
	fd = open(a, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_false(spec_watch_drain(f->w)); /* IN_MODIFY of the truncation: no change */
	assert_true(writing(f, a));
	assert_int_equal(write(fd, "kind:", 5), 5);
	assert_false(spec_watch_drain(f->w));
	assert_true(writing(f, a));
	close(fd);
	assert_true(drain_names(f, a, &changed));
	assert_true(changed);
	assert_false(writing(f, a));
	/* A hidden file (the CLI's lock) written is never in the set. */
	fd = open(lock, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "1", 1), 1);
	assert_false(spec_watch_drain(f->w));
	assert_false(writing(f, lock));
	close(fd);
	assert_false(spec_watch_drain(f->w));
}

/* Open a new file for writing, leave it open, and check it is in the set. */
static int start_writing(struct fx *f, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "kind:", 5), 5);
	(void)spec_watch_drain(f->w);
	assert_true(writing(f, path));
	return fd;
}

/* Deleted, renamed away, or replaced by a rename onto it: no longer being written. */
static void test_writing_gone(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *a = at(f, "a.yaml"), *b = at(f, "b.yaml"), *c = at(f, "c.yaml");
	_cleanup_free_ char *sub = at(f, "sub"), *in_sub = NULL;
	int fd;

	fd = start_writing(f, a);
	assert_int_equal(unlink(a), 0);
	assert_true(spec_watch_drain(f->w));
	assert_false(writing(f, a));
	close(fd);

	fd = start_writing(f, a);
	assert_int_equal(rename(a, b), 0);
	assert_true(spec_watch_drain(f->w));
	assert_false(writing(f, a));
	assert_false(writing(f, b)); /* a new name: whole at once (its writer still writes) */
	close(fd);
	assert_true(spec_watch_drain(f->w));
	assert_settles(f);

	fd = start_writing(f, a);
	test_write_file(c, "kind: VM\n");
	assert_int_equal(rename(c, a), 0); /* an editor's save onto it */
	assert_true(spec_watch_drain(f->w));
	assert_false(writing(f, a));
	close(fd);

	/* A directory removed: what was being written in it is gone with it. */
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_true(spec_watch_drain(f->w));
	in_sub = fs_path_join(sub, "d.yaml");
	fd = start_writing(f, in_sub);
	close(fd);
	fd = open(in_sub, O_WRONLY | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	(void)spec_watch_drain(f->w);
	assert_true(writing(f, in_sub));
	test_rmtree(sub);
	assert_true(spec_watch_drain(f->w));
	assert_false(writing(f, in_sub));
	close(fd);
	assert_settles(f);
}

/*
 * The set is emptied where it can no longer be trusted: an overflow (closes
 * may be lost) and a rescan that finds the directory under another name.
 */
static void test_writing_cleared(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *a = at(f, "a.yaml"), *sub = at(f, "sub"), *moved = at(f, "moved");
	_cleanup_free_ char *in_sub = NULL;
	int fd, fd2;

	fd = start_writing(f, a);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_true(spec_watch_drain(f->w));
	in_sub = fs_path_join(sub, "b.yaml");
	fd2 = start_writing(f, in_sub);
	/* The folder is renamed: the rescan watches it as 'moved'; 'sub/b.yaml' is no name. */
	assert_int_equal(rename(sub, moved), 0);
	assert_true(spec_watch_drain(f->w));
	assert_false(writing(f, in_sub));
	assert_true(writing(f, a));
	close(fd2);

	if (!overflow_queue(f, "x.yaml", "y.yaml")) {
		close(fd);
		test_skip_reason("inotify's max_queued_events is too large to overflow here");
		skip();
	}
	assert_true(spec_watch_drain(f->w));
	assert_false(writing(f, a));
	close(fd);
}

/* A writer that never closes hides the file for SPEC_WATCH_WRITING_MAX_MS at most. */
static void test_writing_age_bound(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *a = at(f, "a.yaml");
	int64_t before, after;
	int fd;

	before = now_mono_ms();
	fd = start_writing(f, a);
	after = now_mono_ms();
	assert_true(spec_watch_is_writing(f->w, a, before + SPEC_WATCH_WRITING_MAX_MS - 1));
	assert_false(spec_watch_is_writing(f->w, a, after + SPEC_WATCH_WRITING_MAX_MS));
	/* Later writes do not restart its clock. */
	assert_int_equal(write(fd, "VM\n", 3), 3);
	assert_false(spec_watch_drain(f->w));
	assert_false(spec_watch_is_writing(f->w, a, after + SPEC_WATCH_WRITING_MAX_MS));
	close(fd);
	assert_true(spec_watch_drain(f->w));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_file_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subfolder_no_spin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_root_recreated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_being_written_waits_for_close, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hidden_file_writes_are_quiet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resync_is_quiet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_confined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writing_new_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writing_truncated_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writing_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writing_cleared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writing_age_bound, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
