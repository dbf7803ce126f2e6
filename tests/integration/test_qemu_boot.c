/*
 * test_qemu_boot.c - reconciler/vmm/qemu.c against real QEMU guests: boot the
 * reference image (make image) through vmm_driver_qemu on a tap in a network
 * namespace of our own, log in with OpenSSH using a key passed on the kernel
 * command line, stop it, and boot the same disk again to check that the
 * guest's host key persisted. Needs root.
 *
 * BANGER_QEMU_BOOTS (default 5) sets how many boots of the disk to run;
 * BANGER_IMAGE_DIR (default build/image) where the image is.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/vmm/vmm.h"
#include "tests/lib/testutil.h"

#define SSH_DEADLINE_MS 180000 /* TCG on two cores shared with other builds */
#define STOP_GRACE_MS 20000
#define MAX_BOOTS 20

struct env {
	char sfx[9];
	char bridge[16];
	char tap[16];
	char ip[16];
	char gw[16];
	char mac[18];
	char *image_dir;
	char *kernel;
	char *initrd;
	char *kernel_release;
	char *dir;    /* test temp dir */
	char *key;    /* private key */
	char *pubkey; /* its authorized_keys line */
	char *known_hosts;
	char *disk; /* copy of rootfs.ext4 */
	char *work; /* work disk */
	char *sock;
	char *console;
	char *guest_args;
	const char *skip;
};

static struct env E;

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR, closedir)

static int run(const char *const argv[], char **ret_out)
{
	struct bg_err err = { 0 };
	int r = proc_run(argv, 60000, ret_out, &err);

	if (r < 0)
		fprintf(stderr, "run %s: %s\n", argv[0], err.msg);
	return r;
}

#define RUN(...) run((const char *const[]){ __VA_ARGS__, NULL }, NULL)

/* In our namespace (/sys/class/net would show the host's: sysfs was mounted there). */
static bool link_exists(const char *name)
{
	return if_nametoindex(name) != 0;
}

static char *read_trimmed(const char *path)
{
	char *data = NULL;
	struct bg_err err = { 0 };
	size_t n;

	if (fs_read_file(path, 1 << 20, &data, &n, &err) < 0)
		return NULL;
	while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == ' '))
		data[--n] = '\0';
	return data;
}

static void print_console_tail(void)
{
	_cleanup_free_ char *log = NULL;
	struct bg_err err = { 0 };
	size_t n;

	if (fs_read_file(E.console, 8 << 20, &log, &n, &err) < 0)
		return;
	fprintf(stderr, "---- console log tail ----\n%s\n--------\n",
		n > 3000 ? log + n - 3000 : log);
}

static int setup(void **state)
{
	const char *boots = getenv("BANGER_IMAGE_DIR");
	_cleanup_free_ char *qemu = proc_find_in_path("qemu-system-x86_64");
	_cleanup_free_ char *rootfs = NULL;
	_cleanup_free_ char *pub_path = NULL;
	_cleanup_free_ char *cidr = NULL;
	struct bg_err err = { 0 };
	unsigned x;

	(void)state;
	memset(&E, 0, sizeof(E));
	if (geteuid() != 0) {
		E.skip = "needs root (network namespace, tap, bridge)";
		return 0;
	}
	if (!qemu) {
		E.skip = "qemu-system-x86_64 is not installed";
		return 0;
	}
	E.image_dir = xstrdup(boots && *boots ? boots : "build/image");
	E.kernel = fs_path_join(E.image_dir, "vmlinux");
	E.initrd = fs_path_join(E.image_dir, "initrd.gz");
	rootfs = fs_path_join(E.image_dir, "rootfs.ext4");
	{
		_cleanup_free_ char *rel = fs_path_join(E.image_dir, "kernel-release");

		E.kernel_release = read_trimmed(rel);
	}
	if (!fs_exists(E.kernel) || !fs_exists(E.initrd) || !fs_exists(rootfs) ||
	    !E.kernel_release) {
		fprintf(stderr, "no guest image in '%s': run 'make image' first\n", E.image_dir);
		return -1;
	}

	/* Our own network namespace: nothing we create can touch the host's interfaces. */
	if (unshare(CLONE_NEWNET) < 0) {
		perror("unshare(CLONE_NEWNET)");
		return -1;
	}
	test_unique_suffix(E.sfx, 8);
	snprintf(E.bridge, sizeof(E.bridge), "bgtbr%.6s", E.sfx);
	snprintf(E.tap, sizeof(E.tap), "bgttap%.6s", E.sfx);
	x = (unsigned)strtoul(E.sfx + 6, NULL, 16) % 250 + 1;
	snprintf(E.gw, sizeof(E.gw), "172.29.%u.1", x);
	snprintf(E.ip, sizeof(E.ip), "172.29.%u.2", x);
	snprintf(E.mac, sizeof(E.mac), "52:54:00:%.2s:%.2s:%.2s", E.sfx, E.sfx + 2, E.sfx + 4);
	cidr = xasprintf("%s/24", E.gw);
	if (RUN("ip", "link", "set", "lo", "up") < 0 ||
	    RUN("ip", "link", "add", E.bridge, "type", "bridge") < 0 ||
	    RUN("ip", "addr", "add", cidr, "dev", E.bridge) < 0 ||
	    RUN("ip", "link", "set", E.bridge, "up") < 0 ||
	    RUN("ip", "tuntap", "add", "dev", E.tap, "mode", "tap") < 0 ||
	    RUN("ip", "link", "set", E.tap, "master", E.bridge) < 0 ||
	    RUN("ip", "link", "set", E.tap, "up") < 0)
		return -1;

	E.dir = test_tmpdir("bg-qemu");
	E.key = fs_path_join(E.dir, "id_ed25519");
	pub_path = xasprintf("%s.pub", E.key);
	E.known_hosts = fs_path_join(E.dir, "known_hosts");
	E.disk = fs_path_join(E.dir, "root.ext4");
	E.work = fs_path_join(E.dir, "work.ext4");
	E.sock = fs_path_join(E.dir, "qmp.sock");
	E.console = fs_path_join(E.dir, "console.log");
	if (RUN("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banger-test", "-f", E.key) <
		    0 ||
	    RUN("cp", "--sparse=always", rootfs, E.disk) < 0 ||
	    RUN("truncate", "-s", "64M", E.work) < 0 ||
	    RUN("mkfs.ext4", "-q", "-F", "-L", "work", E.work) < 0)
		return -1;
	E.pubkey = read_trimmed(pub_path);
	if (!E.pubkey)
		return -1;
	{
		_cleanup_free_ char *keys = xasprintf("%s\n", E.pubkey);

		if (vmm_guest_args(E.ip, E.gw, "255.255.255.0", "bgtest", "root", keys, NULL,
				   &E.guest_args, &err) < 0) {
			fprintf(stderr, "vmm_guest_args: %s\n", err.msg);
			return -1;
		}
	}
	return 0;
}

/* Every qemu process whose command line mentions our temp dir. */
static int count_our_qemus(void)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int n = 0;

	if (!E.dir)
		return 0;
	d = opendir("/proc");
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		_cleanup_free_ char *cmd = NULL;
		size_t len;
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0)
			continue;
		if (proc_cmdline((pid_t)pid, &cmd, &len) < 0 || len == 0)
			continue;
		if (!strstr(cmd, "qemu"))
			continue;
		for (size_t i = 0; i + 1 < len; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		if (strstr(cmd, E.dir) && proc_identity_matches((pid_t)pid, 0))
			n++;
	}
	return n;
}

static int teardown(void **state)
{
	int leaked = 0;

	(void)state;
	if (E.skip)
		return 0;
	if (count_our_qemus() != 0) {
		fprintf(stderr, "leak: a qemu process is still running\n");
		leaked = 1;
	}
	if (E.tap[0] && link_exists(E.tap))
		(void)RUN("ip", "link", "del", E.tap);
	if (E.bridge[0] && link_exists(E.bridge))
		(void)RUN("ip", "link", "del", E.bridge);
	if ((E.tap[0] && link_exists(E.tap)) || (E.bridge[0] && link_exists(E.bridge))) {
		fprintf(stderr, "leak: tap or bridge still present\n");
		leaked = 1;
	}
	if (E.dir) {
		test_rmtree(E.dir);
		if (fs_exists(E.dir)) {
			fprintf(stderr, "leak: temp dir '%s'\n", E.dir);
			leaked = 1;
		}
	}
	free(E.image_dir);
	free(E.kernel);
	free(E.initrd);
	free(E.kernel_release);
	free(E.dir);
	free(E.key);
	free(E.pubkey);
	free(E.known_hosts);
	free(E.disk);
	free(E.work);
	free(E.sock);
	free(E.console);
	free(E.guest_args);
	return leaked ? -1 : 0;
}

static void config(struct vmm_config *cfg, bool with_work)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->id = E.sfx;
	cfg->name = "bgtest";
	cfg->vcpus = 1;
	cfg->memory_mib = 256;
	cfg->kernel = E.kernel;
	cfg->initrd = E.initrd;
	cfg->guest_args = E.guest_args;
	cfg->root_disk = E.disk;
	cfg->work_disk = with_work ? E.work : NULL;
	cfg->tap = E.tap;
	cfg->mac = E.mac;
	cfg->vm_dir = E.dir;
	cfg->ctl_sock = E.sock;
	cfg->console_log = E.console;
}

static bool port22_open(void *arg)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(22) };
	_cleanup_close_ int fd = -1;
	struct pollfd pfd;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	(void)arg;
	inet_pton(AF_INET, E.ip, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return true;
	if (errno != EINPROGRESS) {
		sleep_ms(200); /* EHOSTUNREACH comes at once while ARP fails */
		return false;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
	if (poll(&pfd, 1, 500) != 1)
		return false;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
		sleep_ms(200);
		return false;
	}
	return true;
}

/* ssh root@guest CMD through OpenSSH with our key and known_hosts only. */
static int ssh(const char *strict, const char *cmd, char **ret_out)
{
	_cleanup_free_ char *kh = xasprintf("UserKnownHostsFile=%s", E.known_hosts);
	_cleanup_free_ char *sh = xasprintf("StrictHostKeyChecking=%s", strict);
	_cleanup_free_ char *dest = xasprintf("root@%s", E.ip);
	const char *const argv[] = {
		"ssh",
		"-F",
		"/dev/null",
		"-i",
		E.key,
		"-o",
		kh,
		"-o",
		sh,
		"-o",
		"GlobalKnownHostsFile=/dev/null",
		"-o",
		"HashKnownHosts=no",
		"-o",
		"BatchMode=yes",
		"-o",
		"IdentitiesOnly=yes",
		"-o",
		"ConnectTimeout=10",
		"-o",
		"LogLevel=ERROR",
		dest,
		cmd,
		NULL,
	};
	struct bg_err err = { 0 };
	int r = proc_run(argv, 60000, ret_out, &err);

	if (r < 0)
		fprintf(stderr, "ssh: %s\n", err.msg);
	return r;
}

/* Does pid hold an fd on path? */
static bool has_fd_to(pid_t pid, const char *path)
{
	_cleanup_free_ char *dir = xasprintf("/proc/%d/fd", (int)pid);
	_cleanup_(closedirp) DIR *d = opendir(dir);
	struct dirent *de;
	bool found = false;

	assert_non_null(d);
	while ((de = readdir(d))) {
		char link[PATH_MAX];
		_cleanup_free_ char *fd_path = NULL;
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		fd_path = fs_path_join(dir, de->d_name);
		n = readlink(fd_path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, path) == 0)
			found = true;
	}
	return found;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* A launch that cannot work fails in start() and leaves nothing behind. */
static void test_start_failure_cleans_up(void **state)
{
	struct vmm_config cfg;
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };
	_cleanup_free_ char *missing = NULL;

	(void)state;
	if (E.skip) {
		test_skip_reason("%s", E.skip);
		skip();
	}
	missing = fs_path_join(E.dir, "no-such-vmlinux");
	config(&cfg, false);
	cfg.kernel = missing;
	assert_true(vmm_driver_qemu.start(&cfg, &proc, &err) < 0);
	printf("start with a missing kernel: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "no-such-vmlinux"));
	assert_int_equal(count_our_qemus(), 0);
	assert_false(fs_exists(E.sock));
	/* Stopping something that is gone is fine. */
	proc.pid = 0;
	assert_int_equal(vmm_driver_qemu.stop(&cfg, &proc, 1000, &err), 0);
}

static void test_boot_ssh_stop(void **state)
{
	const char *nboots_env = getenv("BANGER_QEMU_BOOTS");
	int nboots = nboots_env ? atoi(nboots_env) : 5;
	int64_t boot_ms[MAX_BOOTS], stop_ms[MAX_BOOTS];
	_cleanup_free_ char *first_kh = NULL;
	struct bg_err err = { 0 };
	_cleanup_free_ char *marker = fs_path_join(E.dir, "marker");
	int passed = 0;

	(void)state;
	if (E.skip) {
		test_skip_reason("%s", E.skip);
		skip();
	}
	if (nboots < 2)
		nboots = 2;
	if (nboots > MAX_BOOTS)
		nboots = MAX_BOOTS;

	{
		struct bg_err why = { 0 };

		assert_true(vmm_driver_qemu.available(NULL, &why));
		printf("qemu driver: %s\n", why.msg);
	}

	for (int boot = 0; boot < nboots; boot++) {
		struct vmm_config cfg;
		struct vmm_process proc = { 0 };
		enum vmm_guest_state st;
		_cleanup_free_ char *out = NULL;
		_cleanup_free_ char *expect = NULL;
		_cleanup_free_ char *kh = NULL;
		_cleanup_free_ char *fsck_out = NULL;
		int64_t t0, t_launched, t_ssh, t_stop;
		bool ok = false;
		int marker_fd, r;

		/* Work disk on the first boots, none on the last: /mnt/work follows it. */
		bool with_work = boot < nboots - 1;

		config(&cfg, with_work);
		/* An fd of ours without O_CLOEXEC: it must not reach QEMU. */
		marker_fd = open(marker, O_WRONLY | O_CREAT, 0600);
		assert_true(marker_fd >= 0);
		assert_true(has_fd_to(getpid(), marker)); /* the check can see a leak */
		t0 = now_mono_ms();
		r = vmm_driver_qemu.start(&cfg, &proc, &err);
		if (r < 0)
			fprintf(stderr, "start: %s\n", err.msg);
		assert_int_equal(r, 0);
		t_launched = now_mono_ms();
		assert_true(proc.pid > 0);
		assert_true(proc_identity_matches(proc.pid, proc.start_time));
		assert_false(has_fd_to(proc.pid, marker));
		close(marker_fd);
		/* Its own session, so it outlives the daemon's. */
		assert_int_equal(getsid(proc.pid), proc.pid);
		assert_int_equal(vmm_driver_qemu.probe(&cfg, &proc, &st, &err), 0);
		assert_int_equal(st, VMM_GUEST_RUNNING);

		/* Port 22 answers, then a real login (retried while dropbear settles). */
		if (!test_wait_for(port22_open, NULL, SSH_DEADLINE_MS))
			print_console_tail();
		else
			while (now_mono_ms() - t0 < SSH_DEADLINE_MS) {
				free(out);
				out = NULL;
				if (ssh(boot == 0 ? "accept-new" : "yes",
					"uname -r; hostname; grep ' /mnt/work ' /proc/mounts || "
					"echo no-work",
					&out) == 0) {
					ok = true;
					break;
				}
				sleep_ms(500);
			}
		t_ssh = now_mono_ms();
		if (!ok)
			print_console_tail();
		assert_true(ok);
		boot_ms[boot] = t_ssh - t0;

		expect = xasprintf("%s\nbgtest\n", E.kernel_release);
		printf("boot %d: launch %lld ms, ssh after %lld ms: %s", boot + 1,
		       (long long)(t_launched - t0), (long long)boot_ms[boot], out);
		assert_memory_equal(out, expect, strlen(expect));
		if (with_work)
			assert_non_null(strstr(out, "/dev/vdb /mnt/work ext4 rw"));
		else
			assert_non_null(strstr(out, "no-work"));

		/* Same host key every boot of this disk: ssh ran with StrictHostKeyChecking=yes
		 * after the first, and known_hosts has not changed. */
		kh = read_trimmed(E.known_hosts);
		assert_non_null(kh);
		assert_non_null(strstr(kh, "ssh-ed25519 "));
		if (boot == 0)
			first_kh = xstrdup(kh);
		else
			assert_string_equal(kh, first_kh);

		assert_int_equal(vmm_driver_qemu.probe(&cfg, &proc, &st, &err), 0);
		assert_int_equal(st, VMM_GUEST_RUNNING);

		t_stop = now_mono_ms();
		r = vmm_driver_qemu.stop(&cfg, &proc, STOP_GRACE_MS, &err);
		if (r < 0)
			fprintf(stderr, "stop: %s\n", err.msg);
		assert_int_equal(r, 0);
		stop_ms[boot] = now_mono_ms() - t_stop;
		printf("boot %d: stopped in %lld ms\n", boot + 1, (long long)stop_ms[boot]);
		/* Graceful: well inside the grace period, so not by quit/SIGTERM. */
		assert_true(stop_ms[boot] < STOP_GRACE_MS / 2);

		/* Gone and reaped (our child: kill() finds no zombie), nothing left over. */
		assert_false(proc_identity_matches(proc.pid, 0));
		assert_int_equal(kill(proc.pid, 0), -1);
		assert_int_equal(errno, ESRCH);
		assert_int_equal(count_our_qemus(), 0);
		assert_false(fs_exists(E.sock));
		assert_true(link_exists(E.tap)); /* the tap is the caller's, untouched */
		assert_int_equal(vmm_driver_qemu.probe(&cfg, &proc, &st, &err), 0);
		assert_int_equal(st, VMM_GUEST_SHUTDOWN);
		/* A second stop of the same process is a no-op success. */
		assert_int_equal(vmm_driver_qemu.stop(&cfg, &proc, 1000, &err), 0);

		/* The guest unmounted cleanly: no journal to replay. */
		r = run((const char *const[]){ "e2fsck", "-fn", E.disk, NULL }, &fsck_out);
		assert_int_equal(r, 0);
		passed++;
	}

	qsort(boot_ms, (size_t)nboots, sizeof(boot_ms[0]), cmp_i64);
	qsort(stop_ms, (size_t)nboots, sizeof(stop_ms[0]), cmp_i64);
	printf("qemu boots: %d/%d passed; boot-to-SSH median %lld ms (min %lld, max %lld); "
	       "stop median %lld ms\n",
	       passed, nboots, (long long)boot_ms[nboots / 2], (long long)boot_ms[0],
	       (long long)boot_ms[nboots - 1], (long long)stop_ms[nboots / 2]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_failure_cleans_up),
		cmocka_unit_test(test_boot_ssh_stop),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, setup, teardown);
}
