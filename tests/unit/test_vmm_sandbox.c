/*
 * test_vmm_sandbox.c - reconciler/vmm/vmm_sandbox.c: the --vmm-uids range,
 * per-VM uid allocation and its record on the VM dir, sealed kernel copies;
 * and the confinement proc_spawn() applies (ids, kept fds, no_new_privs,
 * seccomp, namespaces), checked in /proc of a real child.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
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
#include "reconciler/vmm/vmm_sandbox.h"
#include "tests/lib/testutil.h"

static void expect_parse(const char *s, int want, uid_t first, uid_t count)
{
	struct bg_err err = { 0 };
	uid_t f = 123, c = 456;

	assert_int_equal(vmm_sandbox_parse_uids(s, &f, &c, &err), want);
	if (want == 0) {
		assert_int_equal(f, first);
		assert_int_equal(c, count);
	} else {
		assert_non_null(strstr(err.msg, "--vmm-uids"));
	}
}

static void test_parse_uids(void **state)
{
	(void)state;
	expect_parse(VMM_SANDBOX_DEFAULT_UIDS, 0, 1879048192, 65536);
	expect_parse("100000:1", 0, 100000, 1);
	expect_parse("off", 0, 0, 0);
	expect_parse("4294967294:1", 0, 4294967294U, 1); /* the last uid that is not -1 */
	expect_parse("4294967294:2", -EINVAL, 0, 0);	 /* would hold (uid_t)-1 */
	expect_parse("4294967295:1", -EINVAL, 0, 0);
	expect_parse("0:10", -EINVAL, 0, 0);	   /* root */
	expect_parse("65000:1000", -EINVAL, 0, 0); /* nobody */
	expect_parse("65534:1", -EINVAL, 0, 0);
	expect_parse("65535:10", 0, 65535, 10);
	expect_parse("100:0", -EINVAL, 0, 0);
	expect_parse("100", -EINVAL, 0, 0);
	expect_parse(":5", -EINVAL, 0, 0);
	expect_parse("5:", -EINVAL, 0, 0);
	expect_parse("-5:10", -EINVAL, 0, 0);
	expect_parse("5:+10", -EINVAL, 0, 0);
	expect_parse("5:10:3", -EINVAL, 0, 0);
	expect_parse("99999999999:1", -EINVAL, 0, 0);
	expect_parse("", -EINVAL, 0, 0);
	expect_parse(NULL, -EINVAL, 0, 0);
}

static char *mkvm(const char *vms, const char *id, mode_t mode)
{
	char *dir = fs_path_join(vms, id);

	assert_int_equal(mkdir(dir, mode), 0);
	assert_int_equal(chmod(dir, mode), 0);
	return dir;
}

static void expect_record(const char *dir, uid_t uid)
{
	struct stat st;

	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_gid, uid);
	assert_int_equal(st.st_mode & 07777, 0700);
}

static void test_allocate(void **state)
{
	_cleanup_free_ char *tmp = test_tmpdir("bg-sandbox");
	_cleanup_free_ char *vms = fs_path_join(tmp, "vms");
	_cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
	struct vmm_sandbox sb;
	struct bg_err err = { 0 };
	uid_t uid;

	(void)state;
	if (geteuid() != 0) {
		test_skip_reason("recording the uid as a group (chown) needs root");
		skip();
	}
	assert_int_equal(mkdir(vms, 0700), 0);
	vmm_sandbox_init(&sb, 200000, 3);
	assert_true(vmm_sandbox_enabled(&sb));

	/* The lowest free uid, recorded as the group of the 0700 dir (a 0755 one is fixed). */
	a = mkvm(vms, "aaaaaaaa", 0755);
	assert_int_equal(vmm_sandbox_uid(&sb, a, &uid, &err), 0);
	assert_int_equal(uid, 200000);
	expect_record(a, 200000);
	/* Asked again: the same uid. */
	assert_int_equal(vmm_sandbox_uid(&sb, a, &uid, &err), 0);
	assert_int_equal(uid, 200000);

	b = mkvm(vms, "bbbbbbbb", 0700);
	assert_int_equal(vmm_sandbox_uid(&sb, b, &uid, &err), 0);
	assert_int_equal(uid, 200001);
	c = mkvm(vms, "cccccccc", 0700);
	assert_int_equal(vmm_sandbox_uid(&sb, c, &uid, &err), 0);
	assert_int_equal(uid, 200002);

	/* The range is used up: a clear error, nothing recorded. */
	d = mkvm(vms, "dddddddd", 0700);
	assert_int_equal(vmm_sandbox_uid(&sb, d, &uid, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "200000:3"));
	expect_record(d, 0);

	/* A deleted VM's dir frees its uid for the next VM. */
	assert_int_equal(rmdir(b), 0);
	assert_int_equal(vmm_sandbox_uid(&sb, d, &uid, &err), 0);
	assert_int_equal(uid, 200001);

	/* A group outside the range (an admin's) is not a record: a uid is allocated. */
	e = mkvm(vms, "eeeeeeee", 0700);
	assert_int_equal(chown(e, 0, 100), 0);
	assert_int_equal(rmdir(c), 0);
	assert_int_equal(vmm_sandbox_uid(&sb, e, &uid, &err), 0);
	assert_int_equal(uid, 200002);
	expect_record(e, 200002);

	/* Off: no uid. */
	vmm_sandbox_init(&sb, 0, 0);
	assert_false(vmm_sandbox_enabled(&sb));
	assert_int_equal(vmm_sandbox_uid(&sb, a, &uid, &err), -EINVAL);
	test_rmtree(tmp);
}

static void expect_mode(const char *path, uid_t uid, gid_t gid, mode_t mode)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_uid, uid);
	assert_int_equal(st.st_gid, gid);
	assert_int_equal(st.st_mode & 07777, mode);
}

/* Files a VMM opens by path are granted to its group; root stays the owner. */
static void test_grant_file(void **state)
{
	_cleanup_free_ char *tmp = test_tmpdir("bg-sandbox");
	_cleanup_free_ char *disk = fs_path_join(tmp, "work.ext4");
	_cleanup_free_ char *theirs = fs_path_join(tmp, "theirs");
	_cleanup_free_ char *fifo = fs_path_join(tmp, "fifo");
	struct bg_err err = { 0 };

	(void)state;
	if (geteuid() != 0) {
		test_skip_reason("chown needs root");
		skip();
	}
	test_write_file(disk, "");
	assert_int_equal(chmod(disk, 0644), 0);
	assert_int_equal(vmm_sandbox_grant_file(disk, 200000, 0660, &err), 0);
	expect_mode(disk, 0, 200000, 0660);
	assert_int_equal(vmm_sandbox_grant_file(disk, 200001, 0640, &err), 0);
	expect_mode(disk, 0, 200001, 0640);
	/* Not root's: refused, left alone. */
	test_write_file(theirs, "");
	assert_int_equal(chmod(theirs, 0600), 0);
	assert_int_equal(chown(theirs, 1234, 1234), 0);
	assert_int_equal(vmm_sandbox_grant_file(theirs, 200000, 0660, &err), -EPERM);
	expect_mode(theirs, 1234, 1234, 0600);
	/* Neither a file nor a block device. */
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(vmm_sandbox_grant_file(fifo, 200000, 0660, &err), -EINVAL);
	assert_int_equal(vmm_sandbox_grant_file(tmp, 200000, 0660, &err), -EINVAL);
	test_rmtree(tmp);
}

/*
 * The VM dir becomes searchable by its uid, <state>/vms and <state> by
 * others (search only); a private directory above is named in the error.
 */
static void test_traverse_and_sock_dir(void **state)
{
	_cleanup_free_ char *tmp = test_tmpdir("bg-sandbox");
	_cleanup_free_ char *top = fs_path_join(tmp, "top");
	_cleanup_free_ char *st = fs_path_join(top, "state");
	_cleanup_free_ char *vms = fs_path_join(st, "vms");
	_cleanup_free_ char *vm = fs_path_join(vms, "abcdef01");
	_cleanup_free_ char *fc = fs_path_join(vm, "fc");
	_cleanup_free_ char *link = fs_path_join(vm, "link");
	struct bg_err err = { 0 };

	(void)state;
	if (geteuid() != 0) {
		test_skip_reason("chown needs root");
		skip();
	}
	assert_int_equal(mkdir(top, 0700), 0);
	assert_int_equal(mkdir(st, 0700), 0);
	assert_int_equal(mkdir(vms, 0700), 0);
	assert_int_equal(mkdir(vm, 0700), 0);
	/* Only the recorded uid's VM dir is opened. */
	assert_int_equal(vmm_sandbox_traverse(vm, 200000, &err), -EPERM);
	assert_int_equal(chown(vm, 0, 200000), 0);
	assert_int_equal(vmm_sandbox_traverse(vm, 200000, &err), -EACCES);
	assert_non_null(strstr(err.msg, top));
	expect_mode(vm, 0, 200000, 0710);
	expect_mode(vms, 0, 0, 0701);
	expect_mode(st, 0, 0, 0701);
	assert_int_equal(chmod(top, 0711), 0);
	assert_int_equal(chmod(tmp, 0711), 0);
	assert_int_equal(vmm_sandbox_traverse(vm, 200000, &err), 0);
	expect_mode(top, 0, 0, 0711);

	/* The socket dir: root:<uid> 0770, made once; never through a symlink. */
	assert_int_equal(vmm_sandbox_sock_dir(fc, 200000, &err), 0);
	expect_mode(fc, 0, 200000, 0770);
	assert_int_equal(vmm_sandbox_sock_dir(fc, 200000, &err), 0);
	assert_int_equal(symlink(tmp, link), 0);
	assert_true(vmm_sandbox_sock_dir(link, 200000, &err) < 0);
	expect_mode(tmp, 0, 0, 0711);
	test_rmtree(tmp);
}

static void test_memfd_copy(void **state)
{
	_cleanup_free_ char *tmp = test_tmpdir("bg-sandbox");
	_cleanup_free_ char *file = fs_path_join(tmp, "vmlinux");
	_cleanup_free_ char *link = fs_path_join(tmp, "link");
	_cleanup_free_ char *fifo = fs_path_join(tmp, "fifo");
	struct bg_err err = { 0 };
	char buf[16] = { 0 };
	int fd;

	(void)state;
	assert_int_equal(fs_write_atomic(file, "kernel bytes", 12, 0600, &err), 0);
	fd = vmm_sandbox_memfd_copy(file, &err);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 12);
	assert_string_equal(buf, "kernel bytes");
	/* Sealed: nobody changes what the VMM reads. */
	assert_int_equal(pwrite(fd, "x", 1, 0), -1);
	assert_int_equal(ftruncate(fd, 0), -1);
	close(fd);
	/* A symlink or a FIFO is refused, without blocking. */
	assert_int_equal(symlink(file, link), 0);
	assert_int_equal(vmm_sandbox_memfd_copy(link, &err), -ELOOP);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(vmm_sandbox_memfd_copy(fifo, &err), -EINVAL);
	test_rmtree(tmp);
}

/* A line of /proc/<pid>/status ("Uid:\t1\t1..."), the text after the tab. */
static char *status_line(pid_t pid, const char *key)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/status", (int)pid);
	_cleanup_free_ char *data = NULL;
	size_t len, klen = strlen(key);
	char *p, *end;

	assert_int_equal(fs_read_file(path, 65536, &data, &len, NULL), 0);
	for (p = data; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			p += klen + 1;
			p += strspn(p, " \t");
			end = strchr(p, '\n');
			return xstrndup(p, end ? (size_t)(end - p) : strlen(p));
		}
	fail_msg("no %s in %s", key, path);
	return NULL;
}

static bool same_ns(pid_t a, pid_t b, const char *kind)
{
	char pa[64], pb[64], la[128] = "", lb[128] = "";

	snprintf(pa, sizeof(pa), "/proc/%d/ns/%s", (int)a, kind);
	snprintf(pb, sizeof(pb), "/proc/%d/ns/%s", (int)b, kind);
	assert_true(readlink(pa, la, sizeof(la) - 1) > 0);
	assert_true(readlink(pb, lb, sizeof(lb) - 1) > 0);
	return strcmp(la, lb) == 0;
}

/*
 * The child has exec'd sleep and is sleeping: its comm is "sleep" and it is
 * blocked in (clock_)nanosleep (/proc/PID/syscall's first field, x86-64
 * numbers 230 and 35). Only then has the dynamic loader closed the files it
 * opens on the way, so the fd count is the one the spawn left.
 */
static bool sleep_is_sleeping(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	_cleanup_free_ char *comm_path = xasprintf("/proc/%d/comm", (int)pid);
	_cleanup_free_ char *sys_path = xasprintf("/proc/%d/syscall", (int)pid);
	_cleanup_free_ char *comm = NULL, *sys = NULL;
	size_t len;

	if (fs_read_file(comm_path, 64, &comm, &len, NULL) < 0 || strcmp(comm, "sleep\n") != 0)
		return false;
	if (fs_read_file(sys_path, 256, &sys, &len, NULL) < 0)
		return false;
	return strncmp(sys, "230 ", 4) == 0 || strncmp(sys, "35 ", 3) == 0;
}

static size_t count_fds(pid_t pid)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The child: sleep until killed, holding what it was given. */
static void test_spawn_confined(void **state)
{
	const char *argv[] = { "sleep", "60", NULL };
	struct vmm_sandbox sb;
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	struct bg_err err = { 0 };
	int keep[2], status;
	char fdpath[64];
	pid_t pid;

	(void)state;
	if (geteuid() != 0) {
		test_skip_reason("setuid and namespaces need root");
		skip();
	}
	vmm_sandbox_init(&sb, 200000, 10);
	keep[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	keep[1] = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	assert_true(keep[0] >= 3 && keep[1] >= 3);
	vmm_sandbox_spawn_opts(&sb, 200007,
			       CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET, &opts);
	opts.keep_fds = keep;
	opts.n_keep_fds = 2;
	assert_int_equal(proc_spawn(argv, &opts, &pid, &err), 0);
	/* Wait until it sleeps, past exec and the dynamic loader, before looking. */
	assert_true(test_wait_for(sleep_is_sleeping, &pid, 10000));
	{
		_cleanup_free_ char *uid = status_line(pid, "Uid");
		_cleanup_free_ char *gid = status_line(pid, "Gid");
		_cleanup_free_ char *nnp = status_line(pid, "NoNewPrivs");
		_cleanup_free_ char *sec = status_line(pid, "Seccomp");
		_cleanup_free_ char *cap = status_line(pid, "CapEff");

		assert_string_equal(uid, "200007\t200007\t200007\t200007");
		assert_string_equal(gid, "200007\t200007\t200007\t200007");
		assert_string_equal(nnp, "1");
		assert_string_equal(sec, "2");
		assert_string_equal(cap, "0000000000000000");
	}
	for (const char *const *k = (const char *const[]){ "mnt", "ipc", "uts", "net", NULL }; *k;
	     k++)
		assert_false(same_ns(pid, getpid(), *k));
	assert_true(same_ns(pid, getpid(), "pid"));
	/* The kept fds are there, under their numbers; nothing else beyond 0-2. */
	for (int i = 0; i < 2; i++) {
		snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%d", (int)pid, keep[i]);
		assert_int_equal(access(fdpath, F_OK), 0);
	}
	assert_int_equal(count_fds(pid), 5);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(keep[0]);
	close(keep[1]);
}

/* The deny-list holds: a confined child cannot mount or unshare. */
static void test_spawn_seccomp_denies(void **state)
{
	const char *argv[] = { "unshare", "--uts", "true", NULL };
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	struct bg_err err = { 0 };
	_cleanup_free_ char *out = NULL;
	int status;
	pid_t pid;

	(void)state;
	if (geteuid() != 0) {
		test_skip_reason("the test needs root: then only seccomp stops unshare");
		skip();
	}
	assert_int_equal(proc_run_status(argv, 10000, &out, &status, &err), 0);
	assert_int_equal(status, 0); /* unconfined, root may */
	opts.seccomp_deny = true;
	opts.no_new_privs = true;
	assert_int_equal(proc_spawn(argv, &opts, &pid, &err), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_not_equal(WEXITSTATUS(status), 0);
}

/* A kept fd below 3 is refused. */
static void test_spawn_keep_invalid(void **state)
{
	const char *argv[] = { "true", NULL };
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	struct bg_err err = { 0 };
	int keep[] = { 2 };
	pid_t pid;

	(void)state;
	opts.keep_fds = keep;
	opts.n_keep_fds = 1;
	assert_int_equal(proc_spawn(argv, &opts, &pid, &err), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_uids),
		cmocka_unit_test(test_allocate),
		cmocka_unit_test(test_memfd_copy),
		cmocka_unit_test(test_grant_file),
		cmocka_unit_test(test_traverse_and_sock_dir),
		cmocka_unit_test(test_spawn_confined),
		cmocka_unit_test(test_spawn_seccomp_denies),
		cmocka_unit_test(test_spawn_keep_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
