/*
 * test_handles_loop.c (root) - handles_rediscover() against real kernel
 * objects: a loop device on a sparse temp file (found by its backing file,
 * also after the file was unlinked, and gone after detaching), a tap named
 * bg<id> inside a network namespace the test creates, a dm device on a loop
 * where device-mapper exists, and a stand-in VMM process. Everything is
 * removed in teardown and checked for leaks.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/handles.h"
#include "tests/lib/testutil.h"

#define TOOL_TIMEOUT_MS 30000

static char self_exe[PATH_MAX];

struct fixture {
	char id[VM_ID_LEN + 1];
	char *dir;
	char *img;     /* the sparse file behind the loop device */
	char loop[32]; /* "/dev/loopN" while attached */
	char dm[64];   /* dm name while it exists */
	pid_t vmm;     /* stand-in VMM while running */
};

static int run(const char *const argv[], char **ret_out)
{
	struct bg_err err = { 0 };
	int r = proc_run(argv, TOOL_TIMEOUT_MS, ret_out, &err);

	if (r < 0)
		print_error("%s: %s\n", argv[0], err.msg);
	return r;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	int fd;

	test_unique_suffix(f->id, VM_ID_LEN);
	f->dir = test_tmpdir("bg-handles-loop");
	f->img = xasprintf("%s/cow-%s.img", f->dir, f->id);
	fd = open(f->img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 * 1024 * 1024), 0); /* sparse */
	close(fd);
	*state = f;
	return 0;
}

/* Is any loop device still backed by a file whose path contains 'needle'? */
static bool loop_with(const char *needle)
{
	const char *argv[] = { "losetup",  "--list",	     "--noheadings",
			       "--output", "NAME,BACK-FILE", NULL };
	_cleanup_free_ char *out = NULL;

	assert_int_equal(run(argv, &out), 0);
	return out && strstr(out, needle);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->vmm > 0) {
		kill(f->vmm, SIGKILL);
		(void)waitpid(f->vmm, NULL, 0);
	}
	if (f->dm[0]) {
		const char *argv[] = { "dmsetup", "remove", "--retry", f->dm, NULL };

		(void)run(argv, NULL);
	}
	if (f->loop[0]) {
		const char *argv[] = { "losetup", "--detach", f->loop, NULL };

		(void)run(argv, NULL);
	}
	/* Nothing of ours is left attached. */
	assert_false(loop_with(f->id));
	test_rmtree(f->dir);
	free(f->dir);
	free(f->img);
	free(f);
	return 0;
}

static void attach_loop(struct fixture *f, bool read_only)
{
	const char *argv[] = { "losetup", "--find", "--show", read_only ? "--read-only" : "--",
			       f->img,	  NULL };
	_cleanup_free_ char *out = NULL;

	assert_int_equal(run(argv, &out), 0);
	out[strcspn(out, "\n")] = '\0';
	assert_true(strncmp(out, "/dev/loop", 9) == 0);
	snprintf(f->loop, sizeof(f->loop), "%s", out);
}

struct gone_arg {
	const char *loop;
};

/* The kernel dropped the loop's backing file (detach is asynchronous when busy). */
static bool loop_detached(void *arg)
{
	struct gone_arg *g = arg;
	_cleanup_free_ char *path =
		xasprintf("/sys/block/%s/loop/backing_file", g->loop + strlen("/dev/"));

	return !fs_exists(path);
}

static void rediscover(const struct fixture *f, const char *cow, const char *base, const char *sock,
		       struct vm_handles *ret)
{
	struct handles_probe p = {
		.id = f->id, .ctl_sock = sock, .cow_disk = cow, .rootfs_image = base
	};
	struct bg_err err = { 0 };

	if (handles_rediscover(&p, ret, &err) < 0)
		fail_msg("rediscover: %s", err.msg);
}

struct vmm_wait {
	const struct fixture *f;
	const char *sock;
	struct vm_handles *h;
};

static bool vmm_found(void *arg)
{
	struct vmm_wait *v = arg;

	rediscover(v->f, v->f->img, NULL, v->sock, v->h);
	return v->h->pid != 0;
}

static void test_loop_by_backing_file(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *sock = fs_path_join(f->dir, "api.sock");
	_cleanup_free_ char *dotted = xasprintf("%s/./cow-%s.img", f->dir, f->id);
	const char *spawn_argv[] = { self_exe, "--sleeper", "--api-sock", sock, NULL };
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	struct vm_handles h;
	struct gone_arg g;
	struct vmm_wait v;
	uint64_t start = 0;

	/* Nothing yet. */
	rediscover(f, f->img, NULL, NULL, &h);
	assert_string_equal(h.cow_loop, "");

	attach_loop(f, false);
	rediscover(f, f->img, NULL, NULL, &h);
	assert_string_equal(h.cow_loop, f->loop);
	/* The same file named differently is the same file. */
	rediscover(f, dotted, NULL, NULL, &h);
	assert_string_equal(h.cow_loop, f->loop);

	/* With a stand-in VMM using it, all of it comes back in one probe. */
	assert_int_equal(proc_spawn(spawn_argv, &opts, &f->vmm, NULL), 0);
	v = (struct vmm_wait){ f, sock, &h };
	assert_true(test_wait_for(vmm_found, &v, 10000)); /* once the child has exec'd */
	assert_int_equal(h.pid, f->vmm);
	assert_int_equal(proc_start_time(f->vmm, &start, NULL), 0);
	assert_int_equal(h.start_time, start);
	assert_true(vm_alive(&h));
	assert_string_equal(h.cow_loop, f->loop);
	kill(f->vmm, SIGKILL);
	assert_int_equal(waitpid(f->vmm, NULL, 0), f->vmm);
	f->vmm = 0;
	assert_false(vm_alive(&h));

	/* Unlinked while attached: the kernel says "<path> (deleted)"; still ours. */
	assert_int_equal(unlink(f->img), 0);
	rediscover(f, f->img, NULL, NULL, &h);
	assert_string_equal(h.cow_loop, f->loop);

	/* Detached: gone, and rediscovery says so. */
	{
		const char *argv[] = { "losetup", "--detach", f->loop, NULL };

		assert_int_equal(run(argv, NULL), 0);
	}
	g.loop = f->loop;
	assert_true(test_wait_for(loop_detached, &g, 10000));
	f->loop[0] = '\0';
	rediscover(f, f->img, NULL, NULL, &h);
	assert_string_equal(h.cow_loop, "");
	assert_false(loop_with(f->id));
}

/* /proc/misc lists "device-mapper" when the kernel has it. */
static bool have_device_mapper(void)
{
	_cleanup_free_ char *misc = NULL;
	_cleanup_free_ char *dmsetup = NULL;

	if (fs_read_file("/proc/misc", 64 * 1024, &misc, NULL, NULL) < 0)
		return false;
	dmsetup = proc_find_in_path("dmsetup");
	return strstr(misc, "device-mapper") && fs_exists("/dev/mapper/control") && dmsetup;
}

static void test_dm_device(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *table = NULL;
	struct vm_handles h;

	if (!have_device_mapper()) {
		test_skip_reason("device-mapper is not available in this kernel (no "
				 "'device-mapper' in /proc/misc or no /dev/mapper/control)");
		skip();
	}
	attach_loop(f, true);
	handles_dm_name(f->id, f->dm);
	table = xasprintf("0 %d linear %s 0", 64 * 2048, f->loop);
	{
		const char *argv[] = { "dmsetup", "create", f->dm, "--readonly",
				       "--table", table,    NULL };

		assert_int_equal(run(argv, NULL), 0);
	}
	/* The dm device by name, and the loop under it as the base. */
	rediscover(f, "/nonexistent/cow.img", f->img, NULL, &h);
	assert_string_equal(h.dm_name, f->dm);
	assert_non_null(strstr(h.dm_dev, f->dm));
	assert_string_equal(h.base_loop, f->loop);
	assert_string_equal(h.cow_loop, "");
	{
		const char *argv[] = { "dmsetup", "remove", "--retry", f->dm, NULL };

		assert_int_equal(run(argv, NULL), 0);
	}
	f->dm[0] = '\0';
	rediscover(f, "/nonexistent/cow.img", f->img, NULL, &h);
	assert_string_equal(h.dm_name, "");
	assert_string_equal(h.base_loop, "");
}

/* A tap named bg<id> in a network namespace of our own is found by name. */
static void test_tap_in_netns(void **state)
{
	struct fixture *f = *state;
	_cleanup_close_ int host_ns = -1;
	char tap[16];
	struct vm_handles h;
	pid_t pid;
	int status;

	handles_tap_name(f->id, tap);
	assert_int_equal(if_nametoindex(tap), 0);
	host_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	assert_true(host_ns >= 0);
	assert_int_equal(unshare(CLONE_NEWNET), 0);
	{
		const char *argv[] = { "ip", "tuntap", "add", "dev", tap, "mode", "tap", NULL };

		assert_int_equal(run(argv, NULL), 0);
	}
	rediscover(f, NULL, NULL, NULL, &h);
	assert_string_equal(h.tap, tap);

	/* The host namespace does not see it (checked from a child that switches back). */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setns(host_ns, CLONE_NEWNET) < 0)
			_exit(2);
		_exit(if_nametoindex(tap) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	{
		const char *argv[] = { "ip", "link", "del", "dev", tap, NULL };

		assert_int_equal(run(argv, NULL), 0);
	}
	rediscover(f, NULL, NULL, NULL, &h);
	assert_string_equal(h.tap, "");

	/* Back to the host namespace; ours disappears with its last user. */
	assert_int_equal(setns(host_ns, CLONE_NEWNET), 0);
	assert_int_equal(if_nametoindex(tap), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loop_by_backing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dm_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_in_netns, setup, teardown),
	};
	ssize_t n;

	if (argc > 1 && strcmp(argv[1], "--sleeper") == 0) {
		/* The stand-in VMM: sleep until killed (bounded, should the test die first). */
		alarm(120);
		for (;;)
			pause();
	}
	if (geteuid() != 0) {
		test_skip_reason("not root: loop devices and network namespaces need root");
		return 77;
	}
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n < 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	self_exe[n] = '\0';
	return cmocka_run_group_tests(tests, NULL, NULL);
}
