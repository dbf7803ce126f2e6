/*
 * test_vmm_qemu.c - reconciler/vmm/qemu.c without QEMU: the QMP client and
 * the stop sequence against a fake QMP server (a forked child on a unix
 * socket in a temp dir), the command line it builds, the host TSC rate.
 * Booting real guests is tests/integration/test_qemu_boot.c.
 */
#define STOP_TERM_WAIT_MS 300
#define STOP_KILL_WAIT_MS 2000
#define QMP_START_TIMEOUT_MS 1000
#define KVM_PROBE_TIMEOUT_MS 1000
#include "reconciler/vmm/qemu.c"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/fs.h"
#include "tests/lib/testutil.h"

enum fake_mode {
	FAKE_OK,	/* answers; exits on send-key (a guest that reboots) and on quit */
	FAKE_POWERDOWN, /* ignores Ctrl-Alt-Del, exits on system_powerdown */
	FAKE_QUIT_ONLY, /* exits only on quit */
	FAKE_STUBBORN,	/* answers everything, never exits, ignores SIGTERM */
	FAKE_ERROR,	/* every command after the handshake fails */
	FAKE_HUGE,	/* greets with a message over the size cap */
	FAKE_SILENT,	/* accepts, never says anything */
	FAKE_NOT_QMP,	/* greets with something else */
};

struct fake {
	char *dir;
	char *sock;
	pid_t pid;
};

static void fake_send(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fake_send(int fd, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	(void)!write(fd, line, (size_t)n);
}

/* Serve one client; returns true when the fake should exit (a VM that is gone). */
static bool fake_session(int fd, enum fake_mode mode)
{
	char buf[8192];
	size_t len = 0;

	if (mode == FAKE_SILENT) {
		pause();
		return false;
	}
	if (mode == FAKE_NOT_QMP) {
		fake_send(fd, "{\"hello\": 1}\r\n");
		return false;
	}
	if (mode == FAKE_HUGE) {
		static char big[QMP_MSG_MAX + 100];

		memset(big, 'x', sizeof(big));
		(void)!write(fd, big, sizeof(big));
		return false;
	}
	fake_send(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		char *nl;

		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			cJSON *req = cJSON_ParseWithLength(buf, (size_t)(nl - buf));
			cJSON *exe = cJSON_GetObjectItemCaseSensitive(req, "execute");
			cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
			const char *cmd = cJSON_IsString(exe) ? exe->valuestring : "";
			int idn = cJSON_IsNumber(id) ? id->valueint : -1;
			bool exit_now = false;

			if (strcmp(cmd, "qmp_capabilities") == 0) {
				fake_send(fd, "{\"return\": {}, \"id\": %d}\r\n", idn);
			} else if (mode == FAKE_ERROR) {
				fake_send(fd,
					  "{\"error\": {\"class\": \"GenericError\", \"desc\": "
					  "\"boom\"}, \"id\": %d}\r\n",
					  idn);
			} else if (strcmp(cmd, "query-status") == 0) {
				/* An event and a stale reply first: both must be skipped. */
				fake_send(fd, "{\"event\": \"RESUME\", \"timestamp\": {}}\r\n");
				fake_send(fd,
					  "{\"return\": {\"status\": \"paused\"}, \"id\": %d}\r\n",
					  idn + 1000);
				fake_send(
					fd,
					"{\"return\": {\"status\": \"running\", \"running\": true}, "
					"\"id\": %d}\r\n",
					idn);
			} else {
				fake_send(fd, "{\"return\": {}, \"id\": %d}\r\n", idn);
				if (strcmp(cmd, "send-key") == 0)
					exit_now = mode == FAKE_OK;
				else if (strcmp(cmd, "system_powerdown") == 0)
					exit_now = mode == FAKE_POWERDOWN;
				else if (strcmp(cmd, "quit") == 0)
					exit_now = mode != FAKE_STUBBORN;
			}
			cJSON_Delete(req);
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
			if (exit_now)
				return true;
		}
	}
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int lfd;

	f->dir = test_tmpdir("bg-qmp");
	f->sock = fs_path_join(f->dir, "qmp.sock");
	memcpy(sa.sun_path, f->sock, strlen(f->sock));
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	f->pid = fork();
	assert_true(f->pid >= 0);
	if (f->pid == 0) {
		if (mode == FAKE_STUBBORN)
			signal(SIGTERM, SIG_IGN);
		for (;;) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd < 0)
				_exit(1);
			if (fake_session(fd, mode))
				_exit(0);
			close(fd);
		}
	}
	close(lfd);
}

static void fake_finish(struct fake *f)
{
	if (f->pid > 0 && waitpid(f->pid, NULL, WNOHANG) == 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
	}
	test_rmtree(f->dir);
	free(f->dir);
	free(f->sock);
}

static void config_for(struct vmm_config *cfg, const struct fake *f)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ctl_sock = f->sock;
}

static void test_qmp_status(void **state)
{
	struct fake f;
	struct vmm_config cfg;
	struct vmm_process proc = { 0 };
	enum vmm_guest_state st = VMM_GUEST_UNKNOWN;
	struct bg_err err = { 0 };

	(void)state;
	fake_start(&f, FAKE_OK);
	config_for(&cfg, &f);
	proc.pid = f.pid;
	assert_int_equal(proc_start_time(f.pid, &proc.start_time, NULL), 0);
	assert_int_equal(vmm_driver_qemu.probe(&cfg, &proc, &st, &err), 0);
	assert_int_equal(st, VMM_GUEST_RUNNING);
	/* Without a process identity it asks QMP all the same. */
	assert_int_equal(vmm_driver_qemu.probe(&cfg, NULL, &st, &err), 0);
	assert_int_equal(st, VMM_GUEST_RUNNING);
	fake_finish(&f);
}

static void test_qmp_failures(void **state)
{
	static const struct {
		enum fake_mode mode;
		int code;
		const char *text;
	} cases[] = {
		{ FAKE_ERROR, -EIO, "QMP query-status: boom" },
		{ FAKE_HUGE, -EMSGSIZE, "over" },
		{ FAKE_SILENT, -ETIMEDOUT, "no answer in time" },
		{ FAKE_NOT_QMP, -EPROTO, "does not speak QMP" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct fake f;
		struct vmm_config cfg;
		enum vmm_guest_state st = VMM_GUEST_UNKNOWN;
		struct bg_err err = { 0 };
		int64_t t0;

		fake_start(&f, cases[i].mode);
		config_for(&cfg, &f);
		t0 = now_mono_ms();
		assert_int_equal(vmm_driver_qemu.probe(&cfg, NULL, &st, &err), cases[i].code);
		/* Bounded by the probe timeout, whatever the server does. */
		assert_true(now_mono_ms() - t0 < QMP_PROBE_TIMEOUT_MS + 1000);
		if (!strstr(err.msg, cases[i].text))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].text);
		fake_finish(&f);
	}
}

static void test_probe_without_socket(void **state)
{
	struct vmm_config cfg = { .ctl_sock = "/nonexistent/banger/qmp.sock" };
	enum vmm_guest_state st;
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(vmm_driver_qemu.probe(&cfg, NULL, &st, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/banger/qmp.sock"));
}

/* stop() walks Ctrl-Alt-Del, power button, quit, SIGTERM, SIGKILL until the process is gone. */
static void test_stop_sequence(void **state)
{
	static const struct {
		enum fake_mode mode;
		int grace_ms;
		int min_ms, max_ms; /* how long stop() may take */
	} cases[] = {
		{ FAKE_OK, 2000, 0, 900 },	     /* Ctrl-Alt-Del */
		{ FAKE_POWERDOWN, 1000, 450, 1400 }, /* power button at grace/2 */
		{ FAKE_QUIT_ONLY, 400, 350, 1500 },  /* QMP quit after the grace */
		{ FAKE_STUBBORN, 200, 450, 3500 },   /* quit and SIGTERM ignored: SIGKILL */
		{ FAKE_OK, 0, 0, 900 },		     /* no grace: straight to quit */
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct fake f;
		struct vmm_config cfg;
		struct vmm_process proc = { 0 };
		struct bg_err err = { 0 };
		int64_t t0, took;

		fake_start(&f, cases[i].mode);
		config_for(&cfg, &f);
		proc.pid = f.pid;
		assert_int_equal(proc_start_time(f.pid, &proc.start_time, NULL), 0);
		t0 = now_mono_ms();
		assert_int_equal(vmm_driver_qemu.stop(&cfg, &proc, cases[i].grace_ms, &err), 0);
		took = now_mono_ms() - t0;
		if (took < cases[i].min_ms || took > cases[i].max_ms)
			fail_msg("case %zu: stop took %lld ms, expected %d..%d", i, (long long)took,
				 cases[i].min_ms, cases[i].max_ms);
		/* Gone and reaped (it was our child), socket removed. */
		assert_int_equal(kill(f.pid, 0), -1);
		assert_int_equal(errno, ESRCH);
		assert_false(fs_exists(f.sock));
		/* Stopping again, or probing, finds it gone. */
		assert_int_equal(vmm_driver_qemu.stop(&cfg, &proc, 1000, &err), 0);
		f.pid = 0;
		fake_finish(&f);
	}
}

/* A process whose start time does not match is never signalled. */
static void test_stop_wrong_identity(void **state)
{
	struct fake f;
	struct vmm_config cfg;
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };
	enum vmm_guest_state st;

	(void)state;
	fake_start(&f, FAKE_STUBBORN);
	config_for(&cfg, &f);
	proc.pid = f.pid;
	assert_int_equal(proc_start_time(f.pid, &proc.start_time, NULL), 0);
	proc.start_time += 12345;
	assert_int_equal(vmm_driver_qemu.stop(&cfg, &proc, 200, &err), 0);
	assert_int_equal(kill(f.pid, 0), 0); /* still alive */
	assert_int_equal(vmm_driver_qemu.probe(&cfg, &proc, &st, &err), 0);
	assert_int_equal(st, VMM_GUEST_SHUTDOWN);
	fake_finish(&f);
}

static const char *argv_after(const char **argv, const char *opt, int nth)
{
	for (int i = 0; argv[i]; i++)
		if (strcmp(argv[i], opt) == 0 && nth-- == 0)
			return argv[i + 1];
	return NULL;
}

static bool has_arg(const char **argv, const char *arg)
{
	for (int i = 0; argv[i]; i++)
		if (strcmp(argv[i], arg) == 0)
			return true;
	return false;
}

static void test_argv(void **state)
{
	struct vmm_config cfg = {
		.id = "0a1b2c3d",
		.name = "web-1",
		.vcpus = 2,
		.memory_mib = 512,
		.kernel = "/img/vmlinux",
		.initrd = "/img/initrd.gz",
		.root_disk = "/vms/0a1b2c3d/root,cow",
		.work_disk = "/vms/0a1b2c3d/work.ext4",
		.seed_disk = "/vms/0a1b2c3d/seed.iso",
		.tap = "bg0a1b2c3d",
		.mac = "52:54:00:00:00:05",
		.ctl_sock = "/vms/0a1b2c3d/qmp.sock",
		.console_log = "/vms/0a1b2c3d/console.log",
	};
	_cleanup_free_ const char **argv = NULL;
	_cleanup_strv_free_ char **strings = NULL;
	_cleanup_free_ const char **argv_kvm = NULL;
	_cleanup_strv_free_ char **strings_kvm = NULL;

	(void)state;
	build_argv(&cfg, "/usr/bin/qemu-system-x86_64", false, "console=ttyS0 x=1", NULL, &argv,
		   &strings);
	assert_string_equal(argv[0], "/usr/bin/qemu-system-x86_64");
	assert_string_equal(argv_after(argv, "-M", 0), "microvm");
	assert_string_equal(argv_after(argv, "-accel", 0), "tcg");
	assert_string_equal(argv_after(argv, "-cpu", 0), "max");
	assert_string_equal(argv_after(argv, "-m", 0), "512");
	assert_string_equal(argv_after(argv, "-smp", 0), "2");
	assert_string_equal(argv_after(argv, "-kernel", 0), "/img/vmlinux");
	assert_string_equal(argv_after(argv, "-initrd", 0), "/img/initrd.gz");
	assert_string_equal(argv_after(argv, "-append", 0), "console=ttyS0 x=1");
	assert_string_equal(argv_after(argv, "-chardev", 0),
			    "file,id=con,append=on,path=/vms/0a1b2c3d/console.log");
	/* Root first, work second; a ',' in a path is doubled for QEMU's option parser. */
	assert_string_equal(
		argv_after(argv, "-drive", 0),
		"id=root,format=raw,if=none,discard=unmap,file=/vms/0a1b2c3d/root,,cow");
	assert_string_equal(
		argv_after(argv, "-drive", 1),
		"id=work,format=raw,if=none,discard=unmap,file=/vms/0a1b2c3d/work.ext4");
	assert_string_equal(argv_after(argv, "-device", 0), "virtio-blk-device,drive=root");
	assert_string_equal(argv_after(argv, "-device", 1), "virtio-blk-device,drive=work");
	/* The seed last and read-only. */
	assert_string_equal(argv_after(argv, "-drive", 2),
			    "id=seed,format=raw,if=none,readonly=on,file=/vms/0a1b2c3d/seed.iso");
	assert_string_equal(argv_after(argv, "-device", 2), "virtio-blk-device,drive=seed");
	assert_string_equal(argv_after(argv, "-netdev", 0),
			    "tap,id=net0,script=no,downscript=no,ifname=bg0a1b2c3d");
	assert_string_equal(argv_after(argv, "-device", 3),
			    "virtio-net-device,netdev=net0,mac=52:54:00:00:00:05");
	assert_string_equal(argv_after(argv, "-device", 4), "i8042");
	assert_string_equal(argv_after(argv, "-qmp", 0),
			    "unix:/vms/0a1b2c3d/qmp.sock,server=on,wait=off");
	assert_true(has_arg(argv, "-no-reboot"));
	assert_true(has_arg(argv, "-nodefaults"));

	cfg.work_disk = NULL;
	cfg.seed_disk = NULL;
	cfg.initrd = NULL;
	build_argv(&cfg, "qemu", true, "a", NULL, &argv_kvm, &strings_kvm);
	assert_string_equal(argv_after(argv_kvm, "-accel", 0), "kvm");
	assert_string_equal(argv_after(argv_kvm, "-cpu", 0), "host");
	assert_null(argv_after(argv_kvm, "-initrd", 0));
	assert_null(argv_after(argv_kvm, "-drive", 1));
	assert_string_equal(argv_after(argv_kvm, "-device", 1),
			    "virtio-net-device,netdev=net0,mac=52:54:00:00:00:05");
}

/* Sandboxed: QEMU opens nothing by path; everything is an fd the daemon opened. */
static void test_argv_sandboxed(void **state)
{
	struct vmm_config cfg = {
		.id = "0a1b2c3d",
		.kernel = "/img/vmlinux",
		.initrd = "/img/initrd.gz",
		.root_disk = "/vms/0a1b2c3d/root.img",
		.work_disk = "/vms/0a1b2c3d/work.ext4",
		.seed_disk = "/vms/0a1b2c3d/seed.iso",
		.tap = "bg0a1b2c3d",
		.mac = "52:54:00:00:00:05",
		.ctl_sock = "/vms/0a1b2c3d/qmp.sock",
		.console_log = "/vms/0a1b2c3d/console.log",
	};
	struct qemu_fds fds = { .console = 3,
				.kernel = 4,
				.initrd = 5,
				.root = 6,
				.work = 7,
				.seed = 8,
				.tap = 9,
				.qmp = 10,
				.root_ro = 11,
				.work_ro = 12 };
	_cleanup_free_ const char **argv = NULL;
	_cleanup_strv_free_ char **strings = NULL;

	(void)state;
	build_argv(&cfg, "qemu", false, "a", &fds, &argv, &strings);
	assert_string_equal(
		argv_after(argv, "-sandbox", 0),
		"on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	/* The root disk's set names the QMP socket, for rediscovery. */
	assert_string_equal(argv_after(argv, "-add-fd", 0),
			    "fd=6,set=6,opaque=/vms/0a1b2c3d/qmp.sock");
	assert_string_equal(argv_after(argv, "-add-fd", 1), "fd=11,set=6");
	assert_string_equal(argv_after(argv, "-add-fd", 2), "fd=7,set=7");
	assert_string_equal(argv_after(argv, "-add-fd", 3), "fd=12,set=7");
	assert_string_equal(argv_after(argv, "-add-fd", 4), "fd=8,set=8");
	assert_string_equal(argv_after(argv, "-add-fd", 5), "fd=3,set=3");
	assert_string_equal(argv_after(argv, "-kernel", 0), "/proc/self/fd/4");
	assert_string_equal(argv_after(argv, "-initrd", 0), "/proc/self/fd/5");
	assert_string_equal(argv_after(argv, "-chardev", 0),
			    "file,id=con,append=on,path=/dev/fdset/3");
	assert_string_equal(argv_after(argv, "-drive", 0),
			    "id=root,format=raw,if=none,discard=unmap,file=/dev/fdset/6");
	assert_string_equal(argv_after(argv, "-drive", 1),
			    "id=work,format=raw,if=none,discard=unmap,file=/dev/fdset/7");
	assert_string_equal(argv_after(argv, "-drive", 2),
			    "id=seed,format=raw,if=none,readonly=on,file=/dev/fdset/8");
	assert_string_equal(argv_after(argv, "-netdev", 0), "tap,id=net0,fd=9");
	assert_string_equal(argv_after(argv, "-chardev", 1),
			    "socket,id=qmp,fd=10,server=on,wait=off");
	assert_string_equal(argv_after(argv, "-mon", 0), "chardev=qmp,mode=control");
	assert_null(argv_after(argv, "-qmp", 0));
	/* A block device (dm-snapshot): QEMU cannot tell from /dev/fdset/N, so it is told. */
	{
		_cleanup_free_ const char **argv_blk = NULL;
		_cleanup_strv_free_ char **strings_blk = NULL;

		fds.root_blk = true;
		build_argv(&cfg, "qemu", false, "a", &fds, &argv_blk, &strings_blk);
		assert_string_equal(argv_after(argv_blk, "-drive", 0),
				    "id=root,format=raw,if=none,discard=unmap,"
				    "file.driver=host_device,file.filename=/dev/fdset/6");
		assert_string_equal(argv_after(argv_blk, "-drive", 1),
				    "id=work,format=raw,if=none,discard=unmap,file=/dev/fdset/7");
	}
	for (size_t i = 0; argv[i]; i++) {
		assert_null(strstr(argv[i], "/img/"));
		assert_null(strstr(argv[i], "ifname"));
	}
}

static void test_start_rejects_bad_config(void **state)
{
	struct vmm_config cfg = {
		.kernel = "/k",
		.root_disk = "/r",
		.tap = "t",
		.mac = "52:54:00:00:00:01",
		.ctl_sock = "/tmp/a,b.sock",
		.console_log = "/tmp/c.log",
	};
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(vmm_driver_qemu.start(&cfg, &proc, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "','"));
	cfg.ctl_sock = "/tmp/q.sock";
	cfg.tap = NULL;
	assert_int_equal(vmm_driver_qemu.start(&cfg, &proc, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "tap"));
	cfg.tap = "t";
	cfg.binary = "/nonexistent/qemu-system-x86_64";
	assert_int_equal(vmm_driver_qemu.start(&cfg, &proc, &err), -ENOENT);
	assert_int_equal(proc.pid, 0);
}

/* Every descendant of ours still running whose command line contains s. */
static int count_procs_with(const char *s)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		_cleanup_free_ char *cmd = NULL;
		size_t len;
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || proc_cmdline((pid_t)pid, &cmd, &len) < 0)
			continue;
		for (size_t i = 0; i + 1 < len; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		if (len && strstr(cmd, s) && proc_identity_matches((pid_t)pid, 0))
			n++;
	}
	closedir(d);
	return n;
}

/*
 * A "QEMU" that never opens its QMP socket: start() gives up after its
 * deadline, kills and reaps it, and leaves no socket.
 */
static void test_start_timeout_cleans_up(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-qemu-start");
	_cleanup_free_ char *fake = fs_path_join(dir, "fake-qemu");
	_cleanup_free_ char *sock = fs_path_join(dir, "qmp.sock");
	_cleanup_free_ char *log = fs_path_join(dir, "console.log");
	_cleanup_free_ char *logged = NULL;
	struct vmm_config cfg = {
		.id = "deadbeef",
		.kernel = "/k",
		.root_disk = "/r",
		.tap = "t",
		.mac = "52:54:00:00:00:01",
		.ctl_sock = sock,
		.console_log = log,
		.binary = fake,
	};
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };
	int64_t t0;

	(void)state;
	/* Fails the KVM test at once; otherwise says hello on stderr and hangs. */
	test_write_file(fake, "#!/bin/sh\n"
			      "case \"$*\" in *isa-debug-exit*) exit 1 ;; esac\n"
			      "echo 'fake qemu: started' >&2\n"
			      "exec sleep 30\n");
	assert_int_equal(chmod(fake, 0755), 0);
	test_write_file(sock, "stale"); /* removed before the launch */
	t0 = now_mono_ms();
	assert_int_equal(vmm_driver_qemu.start(&cfg, &proc, &err), -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 < QMP_START_TIMEOUT_MS + 1500);
	assert_non_null(strstr(err.msg, "no working QMP"));
	assert_non_null(strstr(err.msg, "fake qemu: started")); /* its output, quoted */
	assert_int_equal(proc.pid, 0);
	assert_false(fs_exists(sock));
	assert_int_equal(count_procs_with(fake), 0);
	/* QEMU's stdout/stderr went to the console log. */
	assert_int_equal(fs_read_file(log, 4096, &logged, NULL, &err), 0);
	assert_non_null(strstr(logged, "fake qemu: started"));
	test_rmtree(dir);
}

static void test_available(void **state)
{
	struct bg_err why = { 0 };

	(void)state;
	assert_false(vmm_driver_qemu.available("/nonexistent/qemu", &why));
	assert_non_null(strstr(why.msg, "/nonexistent/qemu"));
	assert_false(vmm_driver_qemu.available("no-such-qemu-binary", &why));
	assert_non_null(strstr(why.msg, "in PATH"));
	/*
	 * A binary that is no QEMU runs the KVM test and fails it: available
	 * (the binary exists), with TCG and the reason.
	 */
	assert_true(vmm_driver_qemu.available("/bin/true", &why));
	assert_int_equal(why.code, 0);
	assert_non_null(strstr(why.msg, "TCG"));
}

static void test_tsc_khz(void **state)
{
	unsigned long khz = host_tsc_khz();

	(void)state;
	/* Any x86 host from the last 20 years: between 500 MHz and 10 GHz. */
	assert_true(khz > 500000 && khz < 10000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qmp_status),
		cmocka_unit_test(test_qmp_failures),
		cmocka_unit_test(test_probe_without_socket),
		cmocka_unit_test(test_stop_sequence),
		cmocka_unit_test(test_stop_wrong_identity),
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_argv_sandboxed),
		cmocka_unit_test(test_start_rejects_bad_config),
		cmocka_unit_test(test_start_timeout_cleans_up),
		cmocka_unit_test(test_available),
		cmocka_unit_test(test_tsc_khz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
