/*
 * test_cmd_validate.c - 'banger validate': exit codes, the summary on
 * stdout, and diagnostics on stderr as exactly "FILE:LINE:COL: msg".
 *
 * Runs cmd_validate() in-process with stdout/stderr redirected to files.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "tests/lib/testutil.h"

/* cli/main.c is not linked into tests. */
void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("banger: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct run {
	int rc;
	char *out;
	char *err;
};

static char *slurp(const char *path)
{
	struct bg_err err = { 0 };
	char *data = NULL;

	if (fs_read_file(path, 1 << 20, &data, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	return data;
}

/* Run 'validate ARGS...' (NULL-terminated) with stdin from stdin_text (or /dev/null). */
static struct run run_validate(const char *stdin_text, ...)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-validate");
	_cleanup_free_ char *out_path = fs_path_join(dir, "out");
	_cleanup_free_ char *err_path = fs_path_join(dir, "err");
	_cleanup_free_ char *in_path = fs_path_join(dir, "in");
	struct cli_ctx ctx = { .spec_dir = "/nonexistent", .state_dir = "/nonexistent" };
	char *argv[16] = { (char *)"validate" };
	int argc = 1, saved[3], fd;
	struct run r;
	va_list ap;

	va_start(ap, stdin_text);
	for (const char *a; (a = va_arg(ap, const char *));)
		argv[argc++] = (char *)a;
	va_end(ap);
	test_write_file(in_path, stdin_text ? stdin_text : "");

	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 3; i++)
		saved[i] = dup(i);
	fd = open(in_path, O_RDONLY | O_CLOEXEC);
	dup2(fd, 0);
	close(fd);
	fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	dup2(fd, 1);
	close(fd);
	fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	dup2(fd, 2);
	close(fd);

	optind = 0;
	r.rc = cmd_validate(&ctx, argc, argv);

	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 3; i++) {
		dup2(saved[i], i);
		close(saved[i]);
	}
	r.out = slurp(out_path);
	r.err = slurp(err_path);
	test_rmtree(dir);
	return r;
}

static void run_release(struct run *r)
{
	free(r->out);
	free(r->err);
}

static void test_valid(void **state)
{
	struct run r;

	(void)state;
	r = run_validate(NULL, "-f", "examples/hello.yaml", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "1 VM valid: hello\n");
	assert_string_equal(r.err, "");
	run_release(&r);

	r = run_validate(NULL, "-f", "examples/", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "6 VMs valid: batch-1, db-1, debian, hello, web, web-1\n");
	run_release(&r);

	r = run_validate(NULL, "--filename", "examples/fleet.yaml",
			 "--filename=examples/hello.yaml", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "4 VMs valid: batch-1, db-1, hello, web-1\n");
	run_release(&r);
}

static void test_invalid(void **state)
{
	struct run r;

	(void)state;
	r = run_validate(NULL, "-f", "tests/unit/data/spec/three-errors.yaml", "-f",
			 "examples/hello.yaml", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.out, "");
	assert_string_equal(
		r.err,
		"tests/unit/data/spec/three-errors.yaml:6:10: spec.vcpus: must be between 1 and "
		"32, got 40\n"
		"tests/unit/data/spec/three-errors.yaml:8:18: spec.kernel.path: must be an absolute "
		"path, got 'vmlinux'\n"
		"tests/unit/data/spec/three-errors.yaml:10:18: spec.restartPolicy: must be one of "
		"always, on-failure, never; got 'sometimes'\n");
	run_release(&r);

	/* The same file twice defines every name twice. */
	r = run_validate(NULL, "-f", "examples/hello.yaml", "-f", "examples/hello.yaml", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "examples/hello.yaml:6:9: vm 'hello' is also defined at "
				   "examples/hello.yaml:6:9\n");
	run_release(&r);

	r = run_validate(NULL, "-f", "/nonexistent/x.yaml", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "/nonexistent/x.yaml: cannot read: No such file or directory\n");
	run_release(&r);
}

static void test_stdin(void **state)
{
	struct run r;

	(void)state;
	r = run_validate("apiVersion: banger/v1\nkind: VM\nmetadata: {name: s}\n"
			 "spec: {kernel: {path: /k}, rootfs: {image: /i}}\n",
			 "-f", "-", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "1 VM valid: s\n");
	run_release(&r);

	r = run_validate("kind: VM\n", "-f", "-", NULL);
	assert_int_equal(r.rc, 1);
	assert_non_null(strstr(r.err, "<stdin>:1:1: missing required field 'apiVersion'\n"));
	run_release(&r);
}

/* --image-dir: each spec-named file outside the image dirs is an error at its value. */
static void test_image_dirs(void **state)
{
	static const char bad[] = "apiVersion: banger/v1\nkind: VM\nmetadata: {name: s}\n"
				  "spec:\n"
				  "  kernel: {path: /etc/shadow, initrd: /img/../etc/x}\n"
				  "  rootfs:\n"
				  "    image: /nonexistent/ssh/id_ed25519\n";
	struct run r;

	(void)state;
	r = run_validate(bad, "-f", "-", "--image-dir", "/img", "--image-dir", "/nonexistent",
			 NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.out, "");
	assert_string_equal(
		r.err,
		"<stdin>:5:18: spec.kernel.path: '/etc/shadow' is not below an image directory "
		"(--image-dir: /img, /nonexistent)\n"
		"<stdin>:5:39: spec.kernel.initrd: '/img/../etc/x': the path must not contain '.' "
		"or '..' components\n"
		"<stdin>:7:12: spec.rootfs.image: '/nonexistent/ssh/id_ed25519' is inside banger's "
		"private directory '/nonexistent/ssh'\n");
	run_release(&r);

	/* Without --image-dir nothing is checked; with good dirs the examples pass. */
	r = run_validate(bad, "-f", "-", NULL);
	assert_int_equal(r.rc, 0);
	run_release(&r);
	r = run_validate(NULL, "-f", "examples/", "--image-dir", "/var/lib/banger/images", NULL);
	assert_int_equal(r.rc, 0);
	run_release(&r);
	r = run_validate(NULL, "-f", "examples/", "--image-dir", "/srv/images", NULL);
	assert_int_equal(r.rc, 1);
	assert_non_null(strstr(r.err,
			       "examples/hello.yaml:11:11: spec.kernel.path: "
			       "'/var/lib/banger/images/banger-base/vmlinux' is not below an "
			       "image directory (--image-dir: /srv/images)\n"));
	run_release(&r);

	/* An image dir inside the state dir's private dirs is a usage error. */
	r = run_validate(NULL, "-f", "examples/", "--image-dir", "/nonexistent/vms", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "--image-dir: image directory '/nonexistent/vms' must not be "
				      "inside '/nonexistent/vms'"));
	run_release(&r);
}

static void test_usage(void **state)
{
	struct run r;

	(void)state;
	r = run_validate(NULL, NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "banger: validate: -f PATH is required"));
	run_release(&r);

	r = run_validate(NULL, "examples/", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "unexpected argument 'examples/'"));
	run_release(&r);

	r = run_validate(NULL, "--bogus", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "Usage: banger validate"));
	run_release(&r);

	r = run_validate(NULL, "-f", NULL);
	assert_int_equal(r.rc, 2);
	run_release(&r);

	r = run_validate(NULL, "--help", NULL);
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "Usage: banger validate -f PATH"));
	assert_string_equal(r.err, "");
	run_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid), cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_stdin), cmocka_unit_test(test_image_dirs),
		cmocka_unit_test(test_usage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
