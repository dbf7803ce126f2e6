/*
 * test_specfile.c - cli/specfile.c: edits of the spec dir by VM name under
 * the lock, and what happens when another program changes a file while
 * banger edits it. Includes the .c to reach prepare_file()/commit().
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

#include "cli/specfile.c"
#include "tests/lib/testutil.h"

struct fixture {
	char *dir;
	int lock;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct bg_err err = { 0 };

	f->dir = test_tmpdir("bg-specfile");
	f->lock = specfile_lock(f->dir, 1000, &err);
	assert_true(f->lock >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->lock);
	test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* A VM document whose rootfs image carries its name, so a mixed-up splice shows. */
static char *vm_doc(const char *name, unsigned mem)
{
	return xasprintf("apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: %s\nspec:\n"
			 "  memoryMiB: %u\n  kernel:\n    path: /k/vmlinux\n  rootfs:\n"
			 "    image: /images/%s.ext4\n",
			 name, mem, name);
}

static char *path_in(const struct fixture *f, const char *name)
{
	return fs_path_join(f->dir, name);
}

static char *slurp(const char *path)
{
	char *data = NULL;

	if (fs_read_file(path, 1 << 20, &data, NULL, NULL) < 0)
		return NULL;
	return data;
}

/* Load one file: the set (ranges as of now). */
static void load(const char *path, struct spec_set *set)
{
	spec_set_init(set);
	assert_int_equal(spec_load_path(set, path), 0);
	assert_int_equal(spec_set_finish(set), 0);
}

/* "name:memory:image" of each VM in the file, comma-separated (owned), or "ERR". */
static char *summary(const char *path)
{
	struct spec_set set;
	char s[2048] = "";

	spec_set_init(&set);
	if (spec_load_path(&set, path) > 0 || spec_set_finish(&set) > 0) {
		spec_set_release(&set);
		return xstrdup("ERR");
	}
	for (size_t i = 0; i < set.n_specs; i++) {
		size_t len = strlen(s);

		snprintf(s + len, sizeof(s) - len, "%s%s:%u:%s", len ? "," : "", set.specs[i]->name,
			 set.specs[i]->memory_mib, set.specs[i]->rootfs_image);
	}
	spec_set_release(&set);
	return xstrdup(s);
}

static void assert_summary(const char *path, const char *want)
{
	_cleanup_free_ char *got = summary(path);

	assert_string_equal(got, want);
}

static char *three(void)
{
	_cleanup_free_ char *a = vm_doc("a", 256), *b = vm_doc("b", 256), *c = vm_doc("c", 256);

	return xasprintf("# three VMs\n%s---\n%s---\n# the last one\n%s", a, b, c);
}

/*
 * The confirmed bug: the spec dir is loaded (byte ranges as of then), then
 * another program edits document 'a' (it grows), then 'delete b' runs. By
 * name, 'b' is found in the file as it is NOW: 'a' keeps its edit, 'b' goes,
 * nothing is mixed up (stale ranges once left 'a' with b's rootfs image).
 */
static void test_edit_after_concurrent_change(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = path_in(f, "abc.yaml");
	_cleanup_free_ char *text = three();
	_cleanup_free_ char *a2 = vm_doc("a", 2048), *b = vm_doc("b", 256), *c = vm_doc("c", 256);
	_cleanup_free_ char *edited = NULL, *b_new = vm_doc("b", 512);
	_cleanup_free_ char *b_body = specfile_doc_body(b_new, strlen(b_new));
	struct specfile_edit del = { .name = "b", .text = NULL };
	struct specfile_edit rep = { .name = "b", .text = b_body };
	struct bg_err err = { 0 };
	struct spec_set set;

	test_write_file(path, text);
	load(path, &set);
	del.file = spec_set_find(&set, "b")->source_file;
	/* Someone else edits 'a' now: a comment and a larger memory size. */
	edited = xasprintf("# three VMs\n# a grew\n%s---\n%s---\n# the last one\n%s", a2, b, c);
	test_write_file(path, edited);

	assert_int_equal(specfile_apply(f->dir, f->lock, &del, 1, &err), 0);
	assert_summary(path, "a:2048:/images/a.ext4,c:256:/images/c.ext4");

	/* Replacing works the same way. */
	test_write_file(path, text);
	spec_set_release(&set);
	load(path, &set);
	rep.file = spec_set_find(&set, "b")->source_file;
	test_write_file(path, edited);
	assert_int_equal(specfile_apply(f->dir, f->lock, &rep, 1, &err), 0);
	assert_summary(path, "a:2048:/images/a.ext4,b:512:/images/b.ext4,c:256:/images/c.ext4");
	spec_set_release(&set);

	/* A VM that is no longer in the file: nothing written, run again. */
	{
		_cleanup_free_ char *before = NULL, *after = NULL;
		_cleanup_free_ char *only_ac = xasprintf("%s---\n%s", a2, c);
		struct specfile_edit gone = { .name = "b", .file = path, .text = NULL };

		test_write_file(path, only_ac);
		before = slurp(path);
		assert_int_equal(specfile_apply(f->dir, f->lock, &gone, 1, &err), -EAGAIN);
		assert_non_null(strstr(err.msg, "vm 'b' is no longer defined in"));
		assert_non_null(strstr(err.msg, "run the command again"));
		after = slurp(path);
		assert_string_equal(before, after);
	}
}

/* A target for one removal edit, as specfile_apply() builds it. */
static void target_one(struct target *t, const char *path, const struct specfile_edit *e)
{
	const char *slash = strrchr(path, '/');
	_cleanup_free_ char *dir = xstrndup(path, (size_t)(slash - path));
	struct stat st;

	memset(t, 0, sizeof(*t));
	t->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(t->dfd >= 0);
	t->base = xstrdup(slash + 1);
	t->root_fd = -1;
	t->spec_dir = "/nonexistent";
	if (stat(path, &st) == 0) {
		t->dev = st.st_dev;
		t->ino = st.st_ino;
	}
	t->shown = path;
	t->edits = xcalloc(1, sizeof(*t->edits));
	t->hashes = xcalloc(1, sizeof(*t->hashes));
	t->edits[0] = e;
	t->n_edits = 1;
}

/* A prepared edit is not written when the file changed since it was read. */
static void check_race(const struct fixture *f, const char *how, bool in_place)
{
	_cleanup_free_ char *path = path_in(f, "abc.yaml");
	_cleanup_free_ char *tmp = path_in(f, "other.tmp");
	_cleanup_free_ char *text = three();
	_cleanup_free_ char *a2 = vm_doc("a", 4096), *b = vm_doc("b", 256), *c = vm_doc("c", 256);
	_cleanup_free_ char *theirs = NULL, *now = NULL;
	struct specfile_edit del = { .name = "c", .file = path, .text = NULL };
	struct target t;
	struct bg_err err = { 0 };

	test_write_file(path, text);
	target_one(&t, path, &del);
	assert_int_equal(prepare_file(&t, &err), 0);

	/* Another program writes the file now: same size, so only its identity tells. */
	theirs = xasprintf("# three VMs\n%s---\n%s---\n# the last one\n%s", a2, b, c);
	theirs[strlen(text)] = '\0';
	assert_int_equal(strlen(theirs), strlen(text));
	theirs[strlen(theirs) - 1] = '\n';
	if (in_place) {
		/* Same inode and size: the mtime/ctime tell. Make sure the clock moved. */
		struct stat st;

		do {
			test_write_file(path, theirs);
			assert_int_equal(stat(path, &st), 0);
		} while (st.st_mtim.tv_sec == t.st.st_mtim.tv_sec &&
			 st.st_mtim.tv_nsec == t.st.st_mtim.tv_nsec);
	} else {
		test_write_file(tmp, theirs);
		assert_int_equal(rename(tmp, path), 0);
	}
	print_message("race (%s): commit after another writer\n", how);
	assert_int_equal(commit(&t, &err), -EAGAIN);
	assert_non_null(strstr(err.msg, "changed while banger was editing it; run the command "
					"again"));
	now = slurp(path);
	assert_string_equal(now, theirs);
	target_release(&t);
}

static void test_changed_before_rename(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = path_in(f, "abc.yaml");
	_cleanup_free_ char *one = vm_doc("solo", 256);

	check_race(f, "rewritten in place", true);
	check_race(f, "replaced by rename", false);

	/* The same for a file that would be removed (its only VM deleted). */
	{
		struct specfile_edit del = { .name = "solo", .file = path, .text = NULL };
		struct target t;
		struct bg_err err = { 0 };
		_cleanup_free_ char *theirs = vm_doc("solo", 512);

		test_write_file(path, one);
		target_one(&t, path, &del);
		assert_int_equal(prepare_file(&t, &err), 0);
		assert_true(t.remove);
		test_write_file(path, theirs);
		assert_int_equal(commit(&t, &err), -EAGAIN);
		assert_summary(path, "solo:512:/images/solo.ext4");
		target_release(&t);
	}
}

/* A VM named twice in one call, or defined twice in the file, is refused; nothing is written. */
static void test_repeated_edits_refused(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = path_in(f, "abc.yaml");
	_cleanup_free_ char *text = three();
	_cleanup_free_ char *a = vm_doc("a", 256);
	_cleanup_free_ char *twice = xasprintf("%s---\n%s", a, a);
	struct specfile_edit two[] = {
		{ .name = "a", .file = path, .text = NULL },
		{ .name = "a", .file = path, .text = NULL },
	};
	struct bg_err err = { 0 };

	test_write_file(path, text);
	assert_int_equal(specfile_apply(f->dir, f->lock, two, 2, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vm 'a' is edited twice"));
	assert_summary(path, "a:256:/images/a.ext4,b:256:/images/b.ext4,c:256:/images/c.ext4");

	test_write_file(path, twice);
	assert_int_equal(specfile_apply(f->dir, f->lock, two, 1, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "defined more than once"));
	{
		_cleanup_free_ char *now = slurp(path);

		assert_string_equal(now, twice);
	}
}

/* Replacing keeps '---' markers, a '...' end and the file's mode; removing all removes it. */
static void test_splice_details(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = path_in(f, "f.yaml");
	_cleanup_free_ char *a = vm_doc("a", 256), *b = vm_doc("b", 256);
	_cleanup_free_ char *b2 = vm_doc("b", 1024), *a2 = vm_doc("a", 1024);
	_cleanup_free_ char *b2_body = specfile_doc_body(b2, strlen(b2));
	_cleanup_free_ char *a2_body = specfile_doc_body(a2, strlen(a2));
	_cleanup_free_ char *text = xasprintf("---\n%s...\n---\n%s", a, b);
	struct specfile_edit e[2] = { { .name = "a", .file = path, .text = a2_body },
				      { .name = "b", .file = path, .text = b2_body } };
	struct bg_err err = { 0 };
	struct stat st;

	test_write_file(path, text);
	assert_int_equal(chmod(path, 0600), 0);
	if (specfile_apply(f->dir, f->lock, e, 2, &err) < 0)
		fail_msg("%s", err.msg);
	{
		_cleanup_free_ char *now = slurp(path);
		_cleanup_free_ char *want = xasprintf("---\n%s...\n---\n%s", a2_body, b2_body);

		assert_string_equal(now, want);
	}
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	/* Remove both: only the markers would be left, so the file goes. */
	e[0].text = e[1].text = NULL;
	assert_int_equal(specfile_apply(f->dir, f->lock, e, 2, &err), 0);
	assert_false(fs_exists(path));
}

/* New VMs: a new file, created exclusively; the text must be the validated spec. */
static void test_create(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = path_in(f, "n.yaml");
	_cleanup_free_ char *n = vm_doc("n", 256), *other = vm_doc("other", 256);
	_cleanup_free_ char *body = specfile_doc_body(n, strlen(n));
	struct specfile_edit e = { .name = "n", .file = path, .text = body, .create = true };
	char h[SPEC_HASH_LEN + 1];
	struct bg_err err = { 0 };
	struct stat st;

	assert_int_equal(specfile_apply(f->dir, f->lock, &e, 1, &err), 0);
	assert_summary(path, "n:256:/images/n.ext4");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	/* Never over an existing file. */
	assert_int_equal(specfile_apply(f->dir, f->lock, &e, 1, &err), -EEXIST);
	assert_int_equal(unlink(path), 0);

	/* The hash the caller validated must match what is written. */
	memset(h, '0', SPEC_HASH_LEN);
	h[SPEC_HASH_LEN] = '\0';
	e.hash = h;
	assert_int_equal(specfile_apply(f->dir, f->lock, &e, 1, &err), -EAGAIN);
	assert_false(fs_exists(path));
	/* A text of another VM is refused. */
	e.hash = NULL;
	e.text = other;
	assert_int_equal(specfile_apply(f->dir, f->lock, &e, 1, &err), -EINVAL);
	assert_false(fs_exists(path));
	/* An exclusive create that loses a race: the file appeared after the check. */
	{
		struct target t;

		target_one(&t, path, &e);
		t.create = true;
		e.text = body;
		assert_int_equal(prepare_create(&t, &err), 0);
		test_write_file(path, "# mine\n");
		assert_int_equal(commit(&t, &err), -EAGAIN);
		assert_non_null(strstr(err.msg, "not overwriting it"));
		target_release(&t);
		{
			_cleanup_free_ char *now = slurp(path);

			assert_string_equal(now, "# mine\n");
		}
	}
}

/* verify() refuses a result that lost or changed a VM it should have kept. */
static void test_verify(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = path_in(f, "abc.yaml");
	_cleanup_free_ char *text = three();
	_cleanup_free_ char *a = vm_doc("a", 256), *b = vm_doc("b", 256), *c = vm_doc("c", 999);
	struct specfile_edit del = { .name = "b", .file = path, .text = NULL };
	const struct specfile_edit *ep = &del;
	const char *no_hash = NULL;
	struct target t = { .shown = "abc.yaml",
			    .root_fd = -1,
			    .spec_dir = "/nonexistent",
			    .edits = &ep,
			    .hashes = &no_hash,
			    .n_edits = 1 };
	struct spec_set before;
	struct bg_err err = { 0 };

	(void)state;
	spec_set_init(&before);
	assert_int_equal(spec_parse_buffer(&before, "abc.yaml", text, strlen(text)), 0);
	t.out = xasprintf("%s---\n%s", a, c); /* c changed */
	t.out_len = strlen(t.out);
	assert_int_equal(verify(&t, &before, &err), -EIO);
	assert_non_null(strstr(err.msg, "would change vm 'c'"));
	free(t.out);
	t.out = xasprintf("%s", a); /* c lost */
	t.out_len = strlen(t.out);
	assert_int_equal(verify(&t, &before, &err), -EIO);
	assert_non_null(strstr(err.msg, "would lose vm 'c'"));
	free(t.out);
	t.out = xasprintf("%s---\n%s", a, b); /* b kept */
	t.out_len = strlen(t.out);
	assert_int_equal(verify(&t, &before, &err), -EIO);
	free(t.out);
	t.out = three();
	t.out[strlen(t.out) - 2] = ':'; /* broken */
	t.out_len = strlen(t.out);
	assert_int_equal(verify(&t, &before, &err), -EIO);
	assert_non_null(strstr(err.msg, "would leave it broken"));
	free(t.out);
	spec_set_release(&before);
}

/* One editor at a time; the lock file is hidden from the spec loader. */
static void test_lock(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct spec_set set;
	int64_t t0 = now_mono_ms();
	_cleanup_free_ char *lock = path_in(f, SPECFILE_LOCK_NAME);

	/* f->lock is held: a second open file description waits, then gives up. */
	assert_int_equal(specfile_lock(f->dir, 300, &err), -EWOULDBLOCK);
	assert_true(now_mono_ms() - t0 >= 300);
	assert_non_null(strstr(err.msg, "another banger"));
	assert_true(fs_exists(lock));
	spec_set_init(&set);
	assert_int_equal(spec_load_path(&set, f->dir), 0);
	assert_int_equal(set.n_diags, 0);
	spec_set_release(&set);
	/* Without the lock, nothing is written. */
	assert_int_equal(specfile_apply(".", -1, NULL, 0, &err), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_edit_after_concurrent_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_before_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeated_edits_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_splice_details, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
