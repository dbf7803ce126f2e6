/*
 * test_handles.c - reconciler/handles.c: handles.json round trip and
 * corruption, liveness by pid + start time, rediscovery of a real process by
 * its control socket argument, loops and dm devices in a fake sysfs tree,
 * and the cache.
 *
 * Includes handles.c to point sysfs_root at a fake tree. The test binary
 * re-executes itself as a stand-in VMM: "test_handles --sleeper ARGS..."
 * sleeps until killed, with ARGS in its /proc/<pid>/cmdline.
 */
#include <errno.h>
#include <fcntl.h>
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

#include "reconciler/handles.c"

#include "common/timeutil.h"
#include "tests/lib/testutil.h"

#define ID "0123abcd"

static char self_exe[PATH_MAX];

struct fixture {
	char *dir;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->dir = test_tmpdir("bg-handles");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	sysfs_root = "/sys";
	test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* ---- a stand-in VMM --------------------------------------------------------------------- */

struct cmdline_wait {
	pid_t pid;
	const char *needle;
};

/* The child has exec'd: its cmdline holds the needle (not the parent's copy). */
static bool cmdline_has(void *arg)
{
	struct cmdline_wait *w = arg;
	_cleanup_free_ char *cmd = NULL;
	size_t len;

	if (proc_cmdline(w->pid, &cmd, &len) < 0)
		return false;
	for (size_t off = 0; off < len; off += strlen(cmd + off) + 1)
		if (strcmp(cmd + off, w->needle) == 0)
			return true;
	return false;
}

/* Start "self --sleeper a1 a2 ..." and wait until it runs with that argv. */
static pid_t spawn_sleeper(const char *a1, const char *a2)
{
	const char *argv[] = { self_exe, "--sleeper", a1, a2, NULL };
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	struct bg_err err = { 0 };
	struct cmdline_wait w;
	pid_t pid;

	if (proc_spawn(argv, &opts, &pid, &err) < 0)
		fail_msg("spawn: %s", err.msg);
	w = (struct cmdline_wait){ pid, "--sleeper" };
	assert_true(test_wait_for(cmdline_has, &w, 10000));
	return pid;
}

static void stop_sleeper(pid_t pid)
{
	int status;

	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
}

static uint64_t start_of(pid_t pid)
{
	uint64_t st = 0;

	assert_int_equal(proc_start_time(pid, &st, NULL), 0);
	return st;
}

/* ---- names, file ---------------------------------------------------------------------------- */

static void test_names(void **state)
{
	char tap[16], dm[64], uuid[64];

	(void)state;
	handles_tap_name(ID, tap);
	handles_dm_name(ID, dm);
	handles_dm_uuid(ID, uuid);
	assert_string_equal(tap, "bg0123abcd");
	assert_true(strlen(tap) < 16); /* IFNAMSIZ */
	assert_string_equal(dm, "banger-0123abcd");
	assert_string_equal(uuid, "BANGER-0123abcd");
}

static void sample(struct vm_handles *h)
{
	memset(h, 0, sizeof(*h));
	h->pid = 4321;
	h->start_time = 987654321;
	handles_tap_name(ID, h->tap);
	strcpy(h->base_loop, "/dev/loop3");
	strcpy(h->cow_loop, "/dev/loop12");
	handles_dm_name(ID, h->dm_name);
	snprintf(h->dm_dev, sizeof(h->dm_dev), "/dev/mapper/%s", h->dm_name);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = fs_path_join(f->dir, "handles.json");
	struct vm_handles h, got;
	struct bg_err err = { 0 };
	struct stat st;

	sample(&h);
	assert_int_equal(handles_load(f->dir, &got, &err), -ENOENT);
	assert_int_equal(handles_save(f->dir, &h, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	memset(&got, 0x55, sizeof(got));
	assert_int_equal(handles_load(f->dir, &got, &err), 0);
	assert_int_equal(got.pid, h.pid);
	assert_int_equal(got.start_time, h.start_time);
	assert_string_equal(got.tap, h.tap);
	assert_string_equal(got.base_loop, h.base_loop);
	assert_string_equal(got.cow_loop, h.cow_loop);
	assert_string_equal(got.dm_name, h.dm_name);
	assert_string_equal(got.dm_dev, h.dm_dev);

	/* Empty handles round-trip too. */
	memset(&h, 0, sizeof(h));
	assert_int_equal(handles_save(f->dir, &h, &err), 0);
	assert_int_equal(handles_load(f->dir, &got, &err), 0);
	assert_int_equal(got.pid, 0);
	assert_string_equal(got.tap, "");

	/* Refuses to write what it would refuse to read. */
	h.pid = 5;
	assert_int_equal(handles_save(f->dir, &h, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "without a start_time"));

	assert_int_equal(handles_remove(f->dir, &err), 0);
	assert_false(fs_exists(path));
	assert_int_equal(handles_remove(f->dir, &err), 0);
	assert_int_equal(handles_load(f->dir, &got, &err), -ENOENT);
}

static void test_corrupt_files(void **state)
{
	static const struct {
		const char *json;
		const char *why;
	} bad[] = {
		{ "", "not valid JSON" },
		{ "not json", "not valid JSON" },
		{ "{\"version\": 1, \"pid\": 12", "not valid JSON" },
		{ "{\"version\": 1} trailing", "not valid JSON" },
		{ "[1, 2]", "not a JSON object" },
		{ "{}", "format version 0" },
		{ "{\"version\": 2}", "format version 2" },
		{ "{\"version\": \"1\"}", "'version' is not a number" },
		{ "{\"version\": 1, \"pid\": \"12\", \"start_time\": 5}", "'pid' is not a number" },
		{ "{\"version\": 1, \"pid\": -12, \"start_time\": 5}", "'pid' is out of range" },
		{ "{\"version\": 1, \"pid\": 1.5, \"start_time\": 5}", "'pid' is out of range" },
		{ "{\"version\": 1, \"pid\": 99999999, \"start_time\": 5}",
		  "'pid' is out of range" },
		{ "{\"version\": 1, \"pid\": 1e300, \"start_time\": 5}", "'pid' is out of range" },
		{ "{\"version\": 1, \"pid\": 12}", "without a start_time" },
		{ "{\"version\": 1, \"start_time\": 12}", "start_time without a pid" },
		{ "{\"version\": 1, \"pid\": 12, \"start_time\": -1}",
		  "'start_time' is out of range" },
		{ "{\"version\": 1, \"pid\": 12, \"start_time\": 1e17}",
		  "'start_time' is out of range" },
		{ "{\"version\": 1, \"tap\": 7}", "'tap' is not a string" },
		{ "{\"version\": 1, \"tap\": \"bg0123456789abcdef\"}", "'tap' is too long" },
		{ "{\"version\": 1, \"tap\": \"eth0\"}", "invalid tap name" },
		{ "{\"version\": 1, \"tap\": \"bg;rm\"}", "invalid tap name" },
		{ "{\"version\": 1, \"cow_loop\": \"/dev/sda\"}", "invalid cow_loop" },
		{ "{\"version\": 1, \"base_loop\": \"/dev/loop\"}", "invalid base_loop" },
		{ "{\"version\": 1, \"base_loop\": \"/dev/loop1/../sda\"}", "invalid base_loop" },
		{ "{\"version\": 1, \"dm_name\": \"root\"}", "invalid dm_name" },
		{ "{\"version\": 1, \"dm_name\": \"banger-x\", \"dm_dev\": \"/dev/sda\"}",
		  "does not match" },
		{ "{\"version\": 1, \"dm_dev\": \"/dev/mapper/banger-x\"}", "does not match" },
	};
	struct fixture *f = *state;
	_cleanup_free_ char *path = fs_path_join(f->dir, "handles.json");
	struct vm_handles h;
	struct bg_err err = { 0 };

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		test_write_file(path, bad[i].json);
		bg_err_clear(&err);
		if (handles_load(f->dir, &h, &err) != -EBADMSG || !strstr(err.msg, bad[i].why))
			fail_msg("'%s': got '%s', want -EBADMSG with '%s'", bad[i].json, err.msg,
				 bad[i].why);
		/* The message names the file. */
		assert_non_null(strstr(err.msg, path));
	}

	/* A NUL byte, and a file over the size cap. */
	assert_int_equal(handles_parse("{\"version\": 1}\0{}", 17, &h, &err), -EBADMSG);
	{
		size_t n = HANDLES_FILE_MAX + 10;
		char *big = xmalloc(n + 1);

		memset(big, ' ', n);
		memcpy(big, "{\"version\": 1}", 14);
		big[n] = '\0';
		test_write_file(path, big);
		free(big);
		assert_int_equal(handles_load(f->dir, &h, &err), -EBADMSG);
	}

	/* Unknown keys are fine (a newer banger may add some); null means empty. */
	{
		const char *ok = "{\"version\": 1, \"later\": [1], \"tap\": null}";

		assert_int_equal(handles_parse(ok, strlen(ok), &h, &err), 0);
		/* Not NUL-terminated input: parsed within len only. */
		assert_int_equal(handles_parse("{\"version\": 1}XYZ", 14, &h, &err), 0);
	}
	assert_string_equal(h.tap, "");
}

/* ---- liveness ----------------------------------------------------------------------------- */

static bool is_zombie(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	char path[64], buf[512], *p;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'Z';
}

static void test_liveness(void **state)
{
	struct vm_handles h = { 0 };
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(vm_liveness(&h), VM_LIVENESS_NONE);
	assert_int_equal(vm_liveness(NULL), VM_LIVENESS_NONE);
	assert_false(vm_alive(&h));

	pid = spawn_sleeper("--api-sock", "/nonexistent/liveness.sock");
	h.pid = pid;
	h.start_time = start_of(pid);
	assert_int_equal(vm_liveness(&h), VM_LIVENESS_ALIVE);
	assert_true(vm_alive(&h));

	/* Same pid, other start time: a recycled pid, never "ours". */
	h.start_time += 1;
	assert_int_equal(vm_liveness(&h), VM_LIVENESS_REUSED);
	assert_false(vm_alive(&h));
	/* No start time recorded: not provably ours either. */
	h.start_time = 0;
	assert_int_equal(vm_liveness(&h), VM_LIVENESS_REUSED);
	h.start_time = start_of(pid);

	/* Died but not reaped yet (a zombie) counts as dead. */
	kill(pid, SIGKILL);
	assert_true(test_wait_for(is_zombie, &pid, 10000));
	assert_int_equal(vm_liveness(&h), VM_LIVENESS_DEAD);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(vm_liveness(&h), VM_LIVENESS_DEAD);
	assert_false(vm_alive(&h));
}

/* ---- rediscovery of the VMM ------------------------------------------------------------------- */

static void rediscover_sock(const char *sock, uint64_t expected_start, struct vm_handles *ret)
{
	struct handles_probe p = { .id = ID, .ctl_sock = sock, .expected_start = expected_start };
	struct bg_err err = { 0 };

	if (handles_rediscover(&p, ret, &err) < 0)
		fail_msg("rediscover: %s", err.msg);
}

static void test_rediscover_vmm(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *sock = fs_path_join(f->dir, "api.sock");
	_cleanup_free_ char *qmp = fs_path_join(f->dir, "qmp.sock");
	_cleanup_free_ char *qmp_arg = xasprintf("unix:%s,server,nowait", qmp);
	_cleanup_free_ char *path_arg = fs_path_join(f->dir, "vsock.sock");
	_cleanup_free_ char *chardev = xasprintf("socket,id=c0,path=%s", path_arg);
	_cleanup_free_ char *longer = xasprintf("%s.old", sock);
	_cleanup_free_ char *prefixed = xasprintf("/x%s", sock);
	struct vm_handles h;
	pid_t fc, qemu, chr, decoy1, decoy2;

	/* Decoys first: names that merely contain the path are not the VMM. */
	decoy1 = spawn_sleeper("--api-sock", longer);
	decoy2 = spawn_sleeper("--api-sock", prefixed);
	rediscover_sock(sock, 0, &h);
	assert_int_equal(h.pid, 0);

	/* firecracker style: the path is an argument of its own. */
	fc = spawn_sleeper("--api-sock", sock);
	rediscover_sock(sock, 0, &h);
	assert_int_equal(h.pid, fc);
	assert_int_equal(h.start_time, start_of(fc));
	/* Not a VMM for another socket. */
	rediscover_sock(qmp, 0, &h);
	assert_int_equal(h.pid, 0);

	/* qemu style: -qmp unix:<path>,server,nowait, and -chardev ...,path=<path>. */
	qemu = spawn_sleeper("-qmp", qmp_arg);
	rediscover_sock(qmp, 0, &h);
	assert_int_equal(h.pid, qemu);
	chr = spawn_sleeper("-chardev", chardev);
	rediscover_sock(path_arg, 0, &h);
	assert_int_equal(h.pid, chr);

	/* expected_start: only that very process matches. */
	rediscover_sock(sock, start_of(fc), &h);
	assert_int_equal(h.pid, fc);
	rediscover_sock(sock, start_of(fc) + 12345, &h);
	assert_int_equal(h.pid, 0);

	/* Only a process executing the configured binary is the VMM. */
	{
		struct handles_probe p = { .id = ID, .ctl_sock = sock, .vmm_binary = self_exe };
		struct bg_err err = { 0 };

		assert_int_equal(handles_rediscover(&p, &h, &err), 0);
		assert_int_equal(h.pid, fc);
		p.vmm_binary = "/bin/true";
		assert_int_equal(handles_rediscover(&p, &h, &err), 0);
		assert_int_equal(h.pid, 0);
		/* Not one that started before the VM could have. */
		p.vmm_binary = NULL;
		p.not_before = start_of(fc) + 1;
		assert_int_equal(handles_rediscover(&p, &h, &err), 0);
		assert_int_equal(h.pid, 0);
	}

	/* Gone: nothing found, nothing else mistaken for it. */
	stop_sleeper(fc);
	rediscover_sock(sock, 0, &h);
	assert_int_equal(h.pid, 0);
	assert_int_equal(h.start_time, 0);

	stop_sleeper(qemu);
	stop_sleeper(chr);
	stop_sleeper(decoy1);
	stop_sleeper(decoy2);
}

/*
 * Any local user may put anything in an argv: a 120 KiB argument of ':'
 * (every position starts a "unix:<path>" candidate) must not make a /proc
 * scan quadratic or huge. Before socket keys were bounded by sun_path's size
 * this took seconds and hundreds of MiB; the real VMM is still found.
 */
static void test_rediscover_hostile_argv(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *sock = fs_path_join(f->dir, "api.sock");
	char *hostile = xmalloc(120 * 1024 + 1);
	struct vm_handles h;
	pid_t bad, fc;
	int64_t t0, took;

	memset(hostile, ':', 120 * 1024);
	hostile[120 * 1024] = '\0';
	bad = spawn_sleeper("-x", hostile);
	fc = spawn_sleeper("--api-sock", sock);
	t0 = now_mono_ms();
	rediscover_sock(sock, 0, &h);
	took = now_mono_ms() - t0;
	assert_int_equal(h.pid, fc);
	print_message("rediscovery beside a 120 KiB ':' argv: %lld ms\n", (long long)took);
	assert_true(took < 1500);
	stop_sleeper(fc);
	stop_sleeper(bad);
	free(hostile);
}

/* ---- rediscovery of loops and dm devices, in a fake sysfs ---------------------------------------- */

static void fake_attr(const char *root, const char *rel, const char *contents)
{
	_cleanup_free_ char *path = fs_path_join(root, rel);
	_cleanup_free_ char *dir = xstrdup(path);

	*strrchr(dir, '/') = '\0';
	assert_int_equal(fs_mkdir_p(dir, 0755, NULL), 0);
	test_write_file(path, contents);
}

static void test_rediscover_fake_sysfs(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *root = fs_path_join(f->dir, "sys");
	_cleanup_free_ char *cow = fs_path_join(f->dir, "cow.img");
	_cleanup_free_ char *cow_deleted = xasprintf("%s (deleted)\n", cow);
	_cleanup_free_ char *cow_via_dots = xasprintf("%s/./sys/../cow.img", f->dir);
	struct handles_probe p = { .id = ID, .cow_disk = cow, .rootfs_image = "/images/base.ext4" };
	struct bg_err err = { 0 };
	struct vm_handles h;

	test_write_file(cow, "");
	/* loop12 and loop3 both hold the COW file: the lowest number wins, deterministically. */
	fake_attr(root, "block/loop12/loop/backing_file", cow_deleted);
	fake_attr(root, "block/loop3/loop/backing_file", cow_deleted);
	fake_attr(root, "block/loop5/loop/backing_file", "/images/base.ext4\n");
	fake_attr(root, "block/loop7/loop/backing_file", "/images/other.ext4\n");
	fake_attr(root, "block/loop9/uevent", ""); /* detached: no loop/ directory */
	fake_attr(root, "block/vda/uevent", "");
	fake_attr(root, "block/dm-0/dm/name", "banger-ffffffff\n");
	fake_attr(root, "block/dm-0/slaves/loop7", "");
	fake_attr(root, "block/dm-2/dm/name", "banger-" ID "\n");
	fake_attr(root, "block/dm-2/slaves/loop3", "");
	fake_attr(root, "block/dm-2/slaves/loop5", "");
	sysfs_root = root;

	assert_int_equal(handles_rediscover(&p, &h, &err), 0);
	assert_string_equal(h.cow_loop, "/dev/loop3");
	assert_string_equal(h.base_loop, "/dev/loop5");
	assert_string_equal(h.dm_name, "banger-" ID);
	assert_string_equal(h.dm_dev, "/dev/mapper/banger-" ID);
	assert_string_equal(h.tap, "");
	assert_int_equal(h.pid, 0);

	/* A non-canonical spelling of the COW path is resolved. */
	p.cow_disk = cow_via_dots;
	assert_int_equal(handles_rediscover(&p, &h, &err), 0);
	assert_string_equal(h.cow_loop, "/dev/loop3");

	/* Without the image path, the dm device's other loop is the base. */
	p.rootfs_image = NULL;
	assert_int_equal(handles_rediscover(&p, &h, &err), 0);
	assert_string_equal(h.base_loop, "/dev/loop5");

	/* Another VM's id: its dm device and nothing of ours. */
	p.id = "ffffffff";
	p.cow_disk = "/nowhere/cow.img";
	assert_int_equal(handles_rediscover(&p, &h, &err), 0);
	assert_string_equal(h.dm_name, "banger-ffffffff");
	assert_string_equal(h.base_loop, "/dev/loop7");
	assert_string_equal(h.cow_loop, "");

	/* No dm device, no COW loop: empty, not an error. */
	p.id = "aaaaaaaa";
	assert_int_equal(handles_rediscover(&p, &h, &err), 0);
	assert_string_equal(h.dm_name, "");
	assert_string_equal(h.dm_dev, "");
	assert_string_equal(h.base_loop, "");

	p.id = "short";
	assert_int_equal(handles_rediscover(&p, &h, &err), -EINVAL);
}

/* ---- the cache ---------------------------------------------------------------------------- */

static void record_for(struct vm_record *rec, const char *vm_dir, const char *sock)
{
	memset(rec, 0, sizeof(*rec));
	memcpy(rec->id, ID, sizeof(rec->id));
	rec->name = xstrdup("web-1");
	rec->vm_dir = xstrdup(vm_dir);
	rec->api_sock = xstrdup(sock);
	rec->cow_disk = fs_path_join(vm_dir, "cow.img");
}

static void test_cache(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *sock = fs_path_join(f->dir, "api.sock");
	_cleanup_free_ char *path = fs_path_join(f->dir, "handles.json");
	struct handles_cache *c = handles_cache_new();
	struct vm_record rec;
	struct vm_handles h, got, file;
	struct bg_err err = { 0 };
	bool corrupt = true;
	pid_t vmm, other;

	record_for(&rec, f->dir, sock);
	vmm = spawn_sleeper("--api-sock", sock);

	/* Nothing cached, no file: rediscovered from the OS, and the file is written. */
	assert_int_equal(handles_get(c, &rec, &got, &corrupt, &err), 0);
	assert_false(corrupt);
	assert_int_equal(got.pid, vmm);
	assert_int_equal(got.start_time, start_of(vmm));
	assert_int_equal(handles_load(f->dir, &file, &err), 0);
	assert_int_equal(file.pid, vmm);

	/* put: cached and persisted; get returns the cache while the process lives. */
	sample(&h);
	h.pid = vmm;
	h.start_time = start_of(vmm);
	assert_int_equal(handles_put(c, &rec, &h, &err), 0);
	assert_int_equal(handles_load(f->dir, &file, &err), 0);
	assert_string_equal(file.cow_loop, "/dev/loop12");
	assert_int_equal(handles_get(c, &rec, &got, &corrupt, &err), 0);
	assert_string_equal(got.cow_loop, "/dev/loop12"); /* from the cache, not the OS */

	/* A fresh cache (daemon restart) trusts a valid file whose process is alive. */
	handles_cache_free(c);
	c = handles_cache_new();
	assert_int_equal(handles_get(c, &rec, &got, &corrupt, &err), 0);
	assert_false(corrupt);
	assert_int_equal(got.pid, vmm);
	assert_string_equal(got.cow_loop, "/dev/loop12");

	/*
	 * The process died: without a hint the cache still names it (the caller
	 * sees it DEAD); a hint makes the OS say what is left.
	 */
	stop_sleeper(vmm);
	assert_int_equal(handles_get(c, &rec, &got, &corrupt, &err), 0);
	assert_int_equal(got.pid, vmm);
	assert_int_equal(vm_liveness(&got), VM_LIVENESS_DEAD);
	handles_cache_mark_stale(c, rec.id);
	assert_int_equal(handles_get(c, &rec, &got, &corrupt, &err), 0);
	assert_false(corrupt);
	assert_int_equal(got.pid, 0);
	assert_string_equal(got.cow_loop, ""); /* no such loop really exists */
	assert_int_equal(handles_load(f->dir, &file, &err), 0);
	assert_int_equal(file.pid, 0);

	/* A file saying "no process" while the VMM runs (daemon killed between starting it
	 * and recording it): on a cache miss the OS is asked, and the VMM found. */
	other = spawn_sleeper("--api-sock", sock);
	handles_cache_free(c);
	c = handles_cache_new();
	memset(&h, 0, sizeof(h));
	assert_int_equal(handles_save(f->dir, &h, &err), 0);
	assert_int_equal(handles_get(c, &rec, &got, &corrupt, &err), 0);
	assert_false(corrupt);
	assert_int_equal(got.pid, other);
	stop_sleeper(other);

	/* A recycled pid in the file (right pid, wrong start time) is not trusted. */
	other = spawn_sleeper("--api-sock", sock);
	handles_cache_free(c);
	c = handles_cache_new();
	sample(&h);
	h.pid = other;
	h.start_time = start_of(other) + 1;
	assert_int_equal(handles_save(f->dir, &h, &err), 0);
	assert_int_equal(handles_get(c, &rec, &got, &corrupt, &err), 0);
	assert_int_equal(got.pid, other);
	assert_int_equal(got.start_time, start_of(other)); /* rediscovered, right identity */

	/* A corrupt file: reported, rebuilt from the OS, rewritten valid. */
	handles_cache_free(c);
	c = handles_cache_new();
	test_write_file(path, "{\"version\": 1, \"pid\": -3");
	assert_int_equal(handles_get(c, &rec, &got, &corrupt, &err), 0);
	assert_true(corrupt);
	assert_int_equal(got.pid, other);
	assert_int_equal(handles_load(f->dir, &file, &err), 0);
	assert_int_equal(file.pid, other);
	handles_cache_free(c);
	c = handles_cache_new();
	test_write_file(path, "{\"version\": 1, \"pid\": \"x\"}");
	assert_int_equal(handles_get(c, &rec, &got, NULL, &err), 0); /* corrupt may be NULL */
	assert_int_equal(got.pid, other);

	/* forget: cache entry and file go. */
	assert_int_equal(handles_forget(c, &rec, &err), 0);
	assert_false(fs_exists(path));
	assert_int_equal(handles_forget(c, &rec, &err), 0);

	/* Invalid handles are refused by put. */
	h.pid = -1;
	assert_int_equal(handles_put(c, &rec, &h, &err), -EBADMSG);

	stop_sleeper(other);
	handles_cache_free(c);
	handles_cache_free(NULL);
	vm_record_release(&rec);
}

/* ---- what the cache costs ------------------------------------------------------------------ */

static struct handles_cache_stats stats_of(const struct handles_cache *c)
{
	struct handles_cache_stats st;

	handles_cache_get_stats(c, &st);
	return st;
}

/* A record of id "0000000<i>" with its own dir and socket under f->dir. */
static void record_n(struct fixture *f, int i, struct vm_record *rec)
{
	_cleanup_free_ char *dir = xasprintf("%s/vm%d", f->dir, i);
	_cleanup_free_ char *sock = xasprintf("%s/vm%d.sock", f->dir, i);

	assert_int_equal(fs_mkdir_p(dir, 0700, NULL), 0);
	record_for(rec, dir, sock);
	snprintf(rec->id, sizeof(rec->id), "%08x", (unsigned)i + 1);
}

/* (a) a cached entry costs no rediscovery; (b) a hint about it forces exactly one. */
static void test_cache_hints(void **state)
{
	struct fixture *f = *state;
	struct handles_cache *c = handles_cache_new();
	struct vm_record rec;
	struct vm_handles h = { 0 }, got, last;
	struct bg_err err = { 0 };
	enum vm_liveness l;
	pid_t vmm;

	record_n(f, 0, &rec);
	vmm = spawn_sleeper("--api-sock", rec.api_sock);
	h.pid = vmm;
	h.start_time = start_of(vmm);
	assert_int_equal(handles_put(c, &rec, &h, &err), 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(handles_observe(c, &rec, &got, &l, NULL, &err), 0);
		assert_int_equal(got.pid, vmm);
		assert_int_equal(l, VM_LIVENESS_ALIVE);
	}
	assert_int_equal(stats_of(c).rediscoveries, 0);
	assert_int_equal(stats_of(c).proc_scans, 0);

	/* The resync's hint keeps a process that is still the recorded one, without a scan. */
	handles_cache_mark_all_stale(c);
	assert_int_equal(handles_observe(c, &rec, &got, &l, NULL, &err), 0);
	assert_int_equal(l, VM_LIVENESS_ALIVE);
	assert_int_equal(stats_of(c).rediscoveries, 0);

	/* A hint about this VM: one rediscovery (it finds the same VMM), then cached again. */
	handles_cache_mark_stale(c, rec.id);
	assert_int_equal(handles_observe(c, &rec, &got, &l, NULL, &err), 0);
	assert_int_equal(got.pid, vmm);
	assert_int_equal(l, VM_LIVENESS_ALIVE);
	assert_int_equal(stats_of(c).rediscoveries, 1);
	assert_int_equal(stats_of(c).proc_scans, 1);
	assert_int_equal(handles_get(c, &rec, &got, NULL, &err), 0);
	assert_int_equal(stats_of(c).rediscoveries, 1);

	/* Died: DEAD from the cache, no scan; the resync rebuilds it, peek kept the old pid. */
	stop_sleeper(vmm);
	assert_int_equal(handles_observe(c, &rec, &got, &l, NULL, &err), 0);
	assert_int_equal(l, VM_LIVENESS_DEAD);
	assert_int_equal(stats_of(c).rediscoveries, 1);
	handles_cache_mark_all_stale(c);
	assert_int_equal(handles_cache_peek(c, rec.id, &last), 0);
	assert_int_equal(last.pid, vmm);
	assert_int_equal(handles_observe(c, &rec, &got, &l, NULL, &err), 0);
	assert_int_equal(l, VM_LIVENESS_NONE);
	assert_int_equal(got.pid, 0);
	assert_int_equal(stats_of(c).rediscoveries, 2);
	assert_int_equal(handles_cache_peek(c, "ffffffff", &last), -ENOENT);

	handles_cache_free(c);
	vm_record_release(&rec);
}

/* (c) N VMs to rediscover in one generation cost one scan of /proc; a warm miss none. */
static void test_cache_one_scan(void **state)
{
	enum {
		N = 6
	};
	struct fixture *f = *state;
	struct handles_cache *c = handles_cache_new();
	struct vm_record recs[N + 1];
	pid_t pids[N];
	struct vm_handles got;
	struct bg_err err = { 0 };
	enum vm_liveness l;

	for (int i = 0; i <= N; i++)
		record_n(f, i, &recs[i]);
	for (int i = 0; i < N; i++)
		pids[i] = spawn_sleeper("--api-sock", recs[i].api_sock);

	/* The first pass of a restarted daemon: nothing cached, no files. */
	handles_cache_begin_pass(c);
	for (int i = 0; i < N; i++) {
		assert_int_equal(handles_observe(c, &recs[i], &got, &l, NULL, &err), 0);
		assert_int_equal(got.pid, pids[i]);
		assert_int_equal(got.start_time, start_of(pids[i]));
		assert_int_equal(l, VM_LIVENESS_ALIVE);
	}
	assert_int_equal(stats_of(c).rediscoveries, N);
	assert_int_equal(stats_of(c).proc_scans, 1);
	handles_cache_set_warm(c);

	/* A VM made after the first pass: no VMM until handles_put(), and no scan. */
	handles_cache_begin_pass(c);
	assert_int_equal(handles_observe(c, &recs[N], &got, &l, NULL, &err), 0);
	assert_int_equal(got.pid, 0);
	assert_int_equal(l, VM_LIVENESS_NONE);
	assert_int_equal(stats_of(c).rediscoveries, N);
	assert_int_equal(stats_of(c).proc_scans, 1);

	/* Hints about all of them in one generation: one more scan, not N. */
	for (int i = 0; i < N; i++)
		handles_cache_mark_stale(c, recs[i].id);
	for (int i = 0; i < N; i++) {
		assert_int_equal(handles_get(c, &recs[i], &got, NULL, &err), 0);
		assert_int_equal(got.pid, pids[i]);
	}
	assert_int_equal(stats_of(c).rediscoveries, 2 * N);
	assert_int_equal(stats_of(c).proc_scans, 2);

	for (int i = 0; i < N; i++)
		stop_sleeper(pids[i]);
	for (int i = 0; i <= N; i++)
		vm_record_release(&recs[i]);
	handles_cache_free(c);
}

/* (d) the cached pid now names another process: REUSED, from the entry, without a scan. */
static void test_cache_pid_reused(void **state)
{
	struct fixture *f = *state;
	struct handles_cache *c = handles_cache_new();
	struct vm_record rec;
	struct vm_handles h = { 0 }, got;
	struct bg_err err = { 0 };
	enum vm_liveness l;
	pid_t other;

	record_n(f, 0, &rec);
	/*
	 * Reusing a pid on purpose is racy; an entry recording a live pid with
	 * another start time is exactly what a reused pid looks like.
	 */
	other = spawn_sleeper("--something", "else");
	h.pid = other;
	h.start_time = start_of(other) + 7;
	assert_int_equal(handles_put(c, &rec, &h, &err), 0);
	assert_int_equal(handles_observe(c, &rec, &got, &l, NULL, &err), 0);
	assert_int_equal(l, VM_LIVENESS_REUSED);
	assert_int_equal(vm_liveness(&got), VM_LIVENESS_REUSED);
	assert_false(vm_alive(&got));
	assert_int_equal(stats_of(c).rediscoveries, 0);
	/* The resync rebuilds it: the other process does not name the socket. */
	handles_cache_mark_all_stale(c);
	assert_int_equal(handles_observe(c, &rec, &got, &l, NULL, &err), 0);
	assert_int_equal(l, VM_LIVENESS_NONE);
	assert_int_equal(got.pid, 0);
	assert_int_equal(stats_of(c).rediscoveries, 1);

	stop_sleeper(other);
	handles_cache_free(c);
	vm_record_release(&rec);
}

/* Many entries: every id found again after inserts and drops (the hash table). */
static void test_cache_many(void **state)
{
	struct fixture *f = *state;
	struct handles_cache *c = handles_cache_new();
	struct vm_record rec;
	struct vm_handles h = { 0 }, got;
	struct bg_err err = { 0 };

	record_n(f, 0, &rec);
	free(rec.vm_dir);
	rec.vm_dir = NULL; /* no files */
	for (int i = 0; i < 300; i++) {
		snprintf(rec.id, sizeof(rec.id), "%08x", (unsigned)i * 7919u);
		h.pid = i + 1;
		h.start_time = (uint64_t)i + 1;
		assert_int_equal(handles_put(c, &rec, &h, &err), 0);
	}
	for (int i = 0; i < 300; i += 3) {
		snprintf(rec.id, sizeof(rec.id), "%08x", (unsigned)i * 7919u);
		assert_int_equal(handles_forget(c, &rec, &err), 0);
	}
	for (int i = 0; i < 300; i++) {
		char id[VM_ID_LEN + 1];

		snprintf(id, sizeof(id), "%08x", (unsigned)i * 7919u);
		if (i % 3 == 0) {
			assert_int_equal(handles_cache_peek(c, id, &got), -ENOENT);
		} else {
			assert_int_equal(handles_cache_peek(c, id, &got), 0);
			assert_int_equal(got.pid, i + 1);
		}
	}
	handles_cache_free(c);
	vm_record_release(&rec);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_files, setup, teardown),
		cmocka_unit_test(test_liveness),
		cmocka_unit_test_setup_teardown(test_rediscover_vmm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rediscover_fake_sysfs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_hints, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_one_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_pid_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rediscover_hostile_argv, setup, teardown),
	};
	ssize_t n;

	if (argc > 1 && strcmp(argv[1], "--sleeper") == 0) {
		/* The stand-in VMM: sleep until killed (bounded, should the test die first). */
		alarm(120);
		for (;;)
			pause();
	}
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n < 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	self_exe[n] = '\0';
	return cmocka_run_group_tests(tests, NULL, NULL);
}
