/*
 * test_imgpath.c - common/imgpath: the lexical rules for spec-named image
 * files, and imgpath_open_at against real hostile files (symlinks out,
 * FIFOs, device nodes, wrong owner or mode, other roots).
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
#include <signal.h>
#include <sys/prctl.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/imgpath.h"
#include "tests/lib/testutil.h"

static const char *const roots[] = { "/srv/img", "/var/lib/banger/images" };
static const struct imgpath_conf conf = {
	.roots = roots,
	.n_roots = 2,
	.state_dir = "/var/lib/banger",
};

static void expect_refused(const char *path, const char *needle)
{
	struct bg_err err = { 0 };

	assert_int_equal(imgpath_check(&conf, path, &err), -EINVAL);
	if (!strstr(err.msg, needle))
		fail_msg("'%s': message '%s' lacks '%s'", path, err.msg, needle);
}

static void test_lexical(void **state)
{
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(imgpath_check(&conf, "/srv/img/a.ext4", &err), 0);
	assert_int_equal(imgpath_check(&conf, "/srv/img/sub/vmlinux", &err), 0);
	/* An image root inside the state dir is fine. */
	assert_int_equal(imgpath_check(&conf, "/var/lib/banger/images/x.raw", &err), 0);

	expect_refused("srv/img/a", "absolute");
	expect_refused("", "absolute");
	expect_refused("/", "below an image directory");
	expect_refused("/srv/img/../../etc/shadow", "'..'");
	expect_refused("/srv/img/./a", "'.'");
	expect_refused("/srv/img//a", "'//'");
	expect_refused("/srv/img/a/", "end in '/'");
	expect_refused("/srv/img", "not below an image directory");
	expect_refused("/srv/imgx/a", "not below an image directory");
	expect_refused("/etc/shadow", "not below an image directory (--image-dir: /srv/img, "
				      "/var/lib/banger/images)");
	expect_refused("/var/lib/banger/ssh/id_ed25519", "banger's private directory");
	expect_refused("/var/lib/banger/vms/0123abcd/root.cow", "banger's private directory");
	expect_refused("/var/lib/banger/vms", "banger's private directory");
	expect_refused("/var/lib/banger/banger.db", "not below an image directory");
}

static void test_root_check(void **state)
{
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(imgpath_root_check("/var/lib/banger/images", "/var/lib/banger", &err), 0);
	assert_int_equal(imgpath_root_check("/srv/img", NULL, &err), 0);
	assert_int_equal(imgpath_root_check("/", "/var/lib/banger", &err), -EINVAL);
	assert_int_equal(imgpath_root_check("rel", NULL, &err), -EINVAL);
	assert_int_equal(imgpath_root_check("/srv/../etc", NULL, &err), -EINVAL);
	assert_int_equal(imgpath_root_check("/var/lib/banger/ssh", "/var/lib/banger", &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "private"));
	assert_int_equal(imgpath_root_check("/var/lib/banger/vms/x", "/var/lib/banger", &err),
			 -EINVAL);
	/* A root above the state dir is fine: the path rule keeps vms/ and ssh/ out. */
	assert_int_equal(imgpath_root_check("/var/lib", "/var/lib/banger", &err), 0);
}

struct tree {
	char *top;  /* temp dir */
	char *root; /* top/images: the image root */
	char *state;
};

static int tree_setup(void **state)
{
	struct tree *t = calloc(1, sizeof(*t));
	_cleanup_free_ char *p = NULL;

	t->top = test_tmpdir("imgpath");
	t->root = fs_path_join(t->top, "images");
	t->state = fs_path_join(t->top, "state");
	assert_int_equal(mkdir(t->root, 0755), 0);
	assert_int_equal(mkdir(t->state, 0700), 0);
	p = fs_path_join(t->root, "good.ext4");
	test_write_file(p, "GOOD IMAGE BYTES");
	assert_int_equal(chmod(p, 0644), 0);
	*state = t;
	return 0;
}

static int tree_teardown(void **state)
{
	struct tree *t = *state;

	test_rmtree(t->top);
	free(t->top);
	free(t->root);
	free(t->state);
	free(t);
	return 0;
}

static int open_in(struct tree *t, const char *name, struct bg_err *err)
{
	const char *const r[] = { t->root };
	struct imgpath_conf c = { .roots = r, .n_roots = 1, .state_dir = t->state };
	_cleanup_free_ char *p = fs_path_join(t->root, name);

	return imgpath_open_at(&c, p, NULL, err);
}

static void expect_open_fails(struct tree *t, const char *name, int code, const char *needle)
{
	struct bg_err err = { 0 };
	int fd = open_in(t, name, &err);

	if (fd >= 0)
		close(fd);
	assert_int_equal(fd, code);
	if (!strstr(err.msg, needle))
		fail_msg("'%s': message '%s' lacks '%s'", name, err.msg, needle);
}

static void test_open_good(void **state)
{
	struct tree *t = *state;
	struct bg_err err = { 0 };
	char buf[64] = { 0 };
	_cleanup_close_ int fd = open_in(t, "good.ext4", &err);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, sizeof(buf) - 1, 0), 16);
	assert_string_equal(buf, "GOOD IMAGE BYTES");
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static void test_open_hostile(void **state)
{
	struct tree *t = *state;
	_cleanup_free_ char *link = fs_path_join(t->root, "shadow.ext4");
	_cleanup_free_ char *dirlink = fs_path_join(t->root, "etc");
	_cleanup_free_ char *fifo = fs_path_join(t->root, "fifo.ext4");
	_cleanup_free_ char *dev = fs_path_join(t->root, "null.ext4");
	_cleanup_free_ char *ww = fs_path_join(t->root, "ww.ext4");
	_cleanup_free_ char *other = fs_path_join(t->root, "other.ext4");
	_cleanup_free_ char *inner = fs_path_join(t->root, "good-link.ext4");

	assert_int_equal(symlink("/etc/shadow", link), 0);
	expect_open_fails(t, "shadow.ext4", -ELOOP, "symlink");
	/* A symlink to a good file inside the root is refused as well. */
	assert_int_equal(symlink("good.ext4", inner), 0);
	expect_open_fails(t, "good-link.ext4", -ELOOP, "symlink");
	/* A symlinked directory on the way. */
	assert_int_equal(symlink("/etc", dirlink), 0);
	expect_open_fails(t, "etc/shadow", -ELOOP, "symlink");

	assert_int_equal(mkfifo(fifo, 0600), 0);
	expect_open_fails(t, "fifo.ext4", -EINVAL, "a FIFO");
	expect_open_fails(t, "nope.ext4", -ENOENT, "No such file");

	test_write_file(ww, "x");
	assert_int_equal(chmod(ww, 0666), 0);
	expect_open_fails(t, "ww.ext4", -EPERM, "group or world writable");

	if (geteuid() != 0) {
		test_skip_reason("not root: device node and owner cases need mknod/chown");
		return;
	}
	assert_int_equal(mknod(dev, S_IFCHR | 0600, makedev(1, 3)), 0);
	expect_open_fails(t, "null.ext4", -EINVAL, "a character device");
	test_write_file(other, "x");
	assert_int_equal(chmod(other, 0644), 0);
	assert_int_equal(chown(other, 65534, 65534), 0);
	expect_open_fails(t, "other.ext4", -EPERM, "owned by root");
}

/*
 * A symlink race: a child keeps swapping (renameat2 RENAME_EXCHANGE) the
 * checked name between a good image and a symlink to a secret outside the
 * root, and a directory on the way between a real one and a symlink out.
 * Every open either fails or reads the good bytes, never the secret.
 */
static void test_open_race(void **state)
{
	struct tree *t = *state;
	_cleanup_free_ char *outside = fs_path_join(t->top, "outside");
	_cleanup_free_ char *secret = fs_path_join(outside, "x.ext4");
	_cleanup_free_ char *target = fs_path_join(t->root, "x.ext4");
	_cleanup_free_ char *alt = fs_path_join(t->root, "alt.ext4");
	_cleanup_free_ char *sub = fs_path_join(t->root, "sub");
	_cleanup_free_ char *subalt = fs_path_join(t->root, "subalt");
	_cleanup_free_ char *subfile = fs_path_join(sub, "x.ext4");
	const char *const r[] = { t->root };
	struct imgpath_conf c = { .roots = r, .n_roots = 1, .state_dir = t->state };
	int opened = 0, refused = 0;
	char leaked[16] = "";
	pid_t pid;

	assert_int_equal(mkdir(outside, 0755), 0);
	test_write_file(secret, "SECRET!");
	assert_int_equal(chmod(secret, 0644), 0);
	test_write_file(target, "GOOD");
	assert_int_equal(chmod(target, 0644), 0);
	assert_int_equal(symlink(secret, alt), 0);
	assert_int_equal(mkdir(sub, 0755), 0);
	test_write_file(subfile, "GOOD");
	assert_int_equal(chmod(subfile, 0644), 0);
	assert_int_equal(symlink(outside, subalt), 0);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Never outlive the test, whatever it does. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;) {
			(void)renameat2(AT_FDCWD, target, AT_FDCWD, alt, RENAME_EXCHANGE);
			(void)renameat2(AT_FDCWD, sub, AT_FDCWD, subalt, RENAME_EXCHANGE);
		}
	}
	for (int i = 0; i < 40000 && !leaked[0]; i++) {
		struct bg_err err = { 0 };
		char buf[16] = { 0 };
		int fd = imgpath_open_at(&c, i % 2 ? target : subfile, NULL, &err);

		if (fd < 0) {
			refused++;
			continue;
		}
		opened++;
		if (pread(fd, buf, sizeof(buf) - 1, 0) < 0 || strcmp(buf, "GOOD") != 0)
			snprintf(leaked, sizeof(leaked), "%s", buf);
		close(fd);
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	if (leaked[0])
		fail_msg("read '%s' through a swapped path", leaked);
	printf("race: %d opens read the good image, %d were refused\n", opened, refused);
	/* Both outcomes happened, or the race was not a race. */
	assert_true(opened > 0);
	assert_true(refused > 0);
}

/*
 * The state dir named through a symlink: its ssh/ is refused also under the
 * other name, below an image dir that holds the real state dir.
 */
static void test_open_private_alias(void **state)
{
	struct tree *t = *state;
	_cleanup_free_ char *ssh = fs_path_join(t->root, "state/ssh");
	_cleanup_free_ char *key = fs_path_join(ssh, "id_ed25519");
	_cleanup_free_ char *alias = fs_path_join(t->top, "alias");
	_cleanup_free_ char *alias_state = fs_path_join(alias, "state");
	const char *const r[] = { t->root };
	struct imgpath_conf c = { .roots = r, .n_roots = 1, .state_dir = alias_state };
	struct bg_err err = { 0 };
	int fd;

	assert_int_equal(fs_mkdir_p(ssh, 0700, NULL), 0);
	test_write_file(key, "PRIVATE KEY");
	assert_int_equal(symlink(t->root, alias), 0);
	/* Lexically fine: the image path does not start with the state dir's name. */
	assert_int_equal(imgpath_check(&c, key, &err), 0);
	fd = imgpath_open_at(&c, key, NULL, &err);
	if (fd >= 0)
		close(fd);
	assert_int_equal(fd, -EINVAL);
	assert_non_null(strstr(err.msg, "inside banger's private directory"));
}

static void test_copy_fd(void **state)
{
	struct tree *t = *state;
	struct bg_err err = { 0 };
	_cleanup_close_ int fd = open_in(t, "good.ext4", &err);
	_cleanup_free_ char *dst = fs_path_join(t->state, "kernel");
	_cleanup_free_ char *data = NULL;
	struct stat st;
	size_t len;

	assert_true(fd >= 0);
	assert_int_equal(imgpath_copy_fd(fd, dst, &err), 0);
	assert_int_equal(fs_read_file(dst, 1024, &data, &len, &err), 0);
	assert_int_equal(len, 16);
	assert_memory_equal(data, "GOOD IMAGE BYTES", 16);
	assert_int_equal(stat(dst, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* Again: replaces the copy. */
	assert_int_equal(imgpath_copy_fd(fd, dst, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lexical),
		cmocka_unit_test(test_root_check),
		cmocka_unit_test_setup_teardown(test_open_good, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_open_hostile, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_open_race, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_open_private_alias, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_copy_fd, tree_setup, tree_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
