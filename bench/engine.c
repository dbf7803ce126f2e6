/*
 * engine.c - the environment the engine benchmarks share (see engine.h).
 */
#include "bench/engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/host/host.h"

#define ENG_SUBNET "172.28.10.1/24"
#define ENG_BASE_SUBNET "172.28.11.1/24"
/*
 * The image bangerd copies per VM: an empty ext4 without a journal (sparse:
 * about 230 KiB of data), so the copy and its fsync, the same in both
 * variants, stay small next to the control plane being measured.
 */
#define ENG_IMAGE_MIB 16

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR, closedir)

int64_t eng_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void eng_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void eng_die(struct eng *e, const char *what, const char *why)
{
	fprintf(stderr, "bench: %s: %s\n", what, why);
	e->failed = true;
	(void)eng_teardown(e);
	exit(1);
}

static int eng_run(const char *const argv[], char **ret_out)
{
	struct bg_err err = { 0 };
	int r = proc_run(argv, 30000, ret_out, &err);

	if (r < 0 && !ret_out)
		fprintf(stderr, "bench: %s: %s\n", argv[0], err.msg);
	return r;
}

static void eng_write_random(struct eng *e, const char *path, size_t size)
{
	_cleanup_free_ char *data = xmalloc(size);
	struct bg_err err = { 0 };
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (char)x;
	}
	if (fs_write_atomic(path, data, size, 0644, &err) < 0)
		eng_die(e, path, err.msg);
}

static void eng_make_image(struct eng *e)
{
	const char *mke2fs[] = { "mke2fs", "-q",	   "-F", "-t", "ext4",
				 "-O",	   "^has_journal", NULL, NULL };
	int fd;

	e->kernel = fs_path_join(e->img, "vmlinux");
	e->image = fs_path_join(e->img, "rootfs.ext4");
	mke2fs[7] = e->image;
	eng_write_random(e, e->kernel, 1 << 20);
	fd = open(e->image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)ENG_IMAGE_MIB << 20) < 0)
		eng_die(e, e->image, strerror(errno));
	close(fd);
	if (eng_run(mke2fs, NULL) < 0)
		eng_die(e, "mke2fs", "failed");
}

static void eng_notify_open(struct eng *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int size = 4 << 20;

	e->notify_path = fs_path_join(e->work, "notify.sock");
	if (strlen(e->notify_path) >= sizeof(sa.sun_path))
		eng_die(e, e->notify_path, "path too long");
	memcpy(sa.sun_path, e->notify_path, strlen(e->notify_path) + 1);
	e->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (e->notify_fd < 0 || bind(e->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		eng_die(e, "notify socket", strerror(errno));
	(void)setsockopt(e->notify_fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	/* fakefc runs as the VM's own uid under bangerd. */
	if (chmod(e->notify_path, 0666) < 0)
		eng_die(e, "chmod notify socket", strerror(errno));
}

static void eng_bins(struct eng *e, const char *argv0)
{
	_cleanup_free_ char *self = realpath(argv0, NULL);
	char *slash;

	if (!self) {
		fprintf(stderr, "bench: cannot resolve %s: %s\n", argv0, strerror(errno));
		exit(1);
	}
	slash = strrchr(self, '/');
	*slash = '\0';
	e->bin_dir = xstrdup(self);
	e->fakefc = fs_path_join(e->bin_dir, "fakefc");
	e->baseline = fs_path_join(e->bin_dir, "baseline");
	e->bangerd = xasprintf("%s/../bangerd", e->bin_dir);
	e->banger = xasprintf("%s/../banger", e->bin_dir);
	{
		const char *need[] = { e->fakefc, e->baseline, e->bangerd, e->banger };

		for (size_t i = 0; i < 4; i++)
			if (access(need[i], X_OK) < 0) {
				fprintf(stderr, "bench: %s: %s (make bench-build)\n", need[i],
					strerror(errno));
				exit(1);
			}
	}
}

void eng_setup(struct eng *e, const char *argv0)
{
	struct host_net bnet = { .cidr = ENG_BASE_SUBNET };
	struct bg_err err = { 0 };
	unsigned char rnd[3];
	char tmpl[64];
	int fd;

	memset(e, 0, sizeof(*e));
	e->notify_fd = -1;
	if (geteuid() != 0) {
		fprintf(stderr, "bench: needs root (bridges, taps, nftables, a daemon); skipped\n");
		exit(77);
	}
	eng_bins(e, argv0);
	/* fakefc processes the baseline leaves (its children) become ours to reap. */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
		fprintf(stderr, "bench: /dev/urandom: %s\n", strerror(errno));
		exit(1);
	}
	close(fd);
	snprintf(e->sfx, sizeof(e->sfx), "%02x%02x%02x", rnd[0], rnd[1], rnd[2]);
	snprintf(e->bridge, sizeof(e->bridge), "bgb%s", e->sfx);
	snprintf(e->bbridge, sizeof(e->bbridge), "bgb%sb", e->sfx);
	snprintf(e->id_prefix, sizeof(e->id_prefix), "b%.3s", e->sfx);
	snprintf(tmpl, sizeof(tmpl), "/tmp/bgb-bench-%s.XXXXXX", e->sfx);
	if (!mkdtemp(tmpl)) {
		fprintf(stderr, "bench: mkdtemp: %s\n", strerror(errno));
		exit(1);
	}
	e->work = xstrdup(tmpl);
	/* The VMM uid must reach the notify socket and its own files. */
	(void)chmod(e->work, 0711);
	e->img = fs_path_join(e->work, "img");
	e->specs = fs_path_join(e->work, "specs");
	e->staging = fs_path_join(e->work, "staging");
	e->state = fs_path_join(e->work, "state");
	e->base = fs_path_join(e->work, "baseline");
	e->log = fs_path_join(e->work, "bangerd.log");
	{
		const char *dirs[] = { e->img, e->specs, e->staging, e->base };

		for (size_t i = 0; i < 4; i++)
			if (mkdir(dirs[i], 0755) < 0)
				eng_die(e, dirs[i], strerror(errno));
	}
	eng_make_image(e);
	eng_notify_open(e);
	bnet.bridge = e->bbridge;
	if (host_ops_linux.bridge_ensure(&bnet, &err) < 0)
		eng_die(e, "baseline bridge", err.msg);
	if (setenv("FAKEFC_NOTIFY", e->notify_path, 1) < 0)
		eng_die(e, "setenv", strerror(errno));
}

static bool eng_log_ready(const struct eng *e)
{
	_cleanup_free_ char *text = NULL;

	if (fs_read_file(e->log, 1 << 20, &text, NULL, NULL) < 0)
		return false;
	return strstr(text, "bangerd: ready:") != NULL;
}

int eng_daemon_start(struct eng *e)
{
	const char *argv[] = { e->bangerd,
			       "--spec-dir",
			       e->specs,
			       "--state-dir",
			       e->state,
			       "--bridge",
			       e->bridge,
			       "--subnet",
			       ENG_SUBNET,
			       "--dns-port",
			       "0",
			       "--vmm",
			       "firecracker",
			       "--firecracker",
			       e->fakefc,
			       "--skip-kvm-check",
			       "--image-dir",
			       e->img,
			       "--stop-timeout",
			       "10",
			       NULL };
	int64_t deadline = eng_now_ns() + 30 * 1000000000LL;
	int fd;

	fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	e->daemon_pid = fork();
	if (e->daemon_pid < 0) {
		close(fd);
		return -errno;
	}
	if (e->daemon_pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		dup2(null, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fd);
	while (!eng_log_ready(e)) {
		if (waitpid(e->daemon_pid, NULL, WNOHANG) == e->daemon_pid) {
			e->daemon_pid = 0;
			return -ESRCH;
		}
		if (eng_now_ns() > deadline)
			return -ETIMEDOUT;
		eng_sleep_ms(10);
	}
	return 0;
}

char *eng_spec_text(const struct eng *e, const char *name)
{
	return xasprintf("apiVersion: banger/v1\n"
			 "kind: VM\n"
			 "metadata:\n"
			 "  name: %s\n"
			 "spec:\n"
			 "  vmm: firecracker\n"
			 "  vcpus: 1\n"
			 "  memoryMiB: 256\n"
			 "  kernel:\n"
			 "    path: %s\n"
			 "  rootfs:\n"
			 "    image: %s\n",
			 name, e->kernel, e->image);
}

int eng_spec_stage(const struct eng *e, const char *name)
{
	_cleanup_free_ char *text = eng_spec_text(e, name);
	_cleanup_free_ char *file = xasprintf("%s.yaml", name);
	_cleanup_free_ char *path = fs_path_join(e->staging, file);

	return fs_write_atomic(path, text, strlen(text), 0644, NULL);
}

int eng_spec_publish(const struct eng *e, const char *name)
{
	_cleanup_free_ char *file = xasprintf("%s.yaml", name);
	_cleanup_free_ char *from = fs_path_join(e->staging, file);
	_cleanup_free_ char *to = fs_path_join(e->specs, file);

	return rename(from, to) < 0 ? -errno : 0;
}

int eng_spec_remove(const struct eng *e, const char *name)
{
	_cleanup_free_ char *file = xasprintf("%s.yaml", name);
	_cleanup_free_ char *path = fs_path_join(e->specs, file);

	return unlink(path) < 0 ? -errno : 0;
}

int eng_recv_start(struct eng *e, int timeout_ms, char ret_id[64], int64_t *ret_ns)
{
	int64_t deadline = eng_now_ns() + (int64_t)timeout_ms * 1000000;

	for (;;) {
		struct pollfd p = { .fd = e->notify_fd, .events = POLLIN };
		char msg[256];
		long long ns;
		ssize_t n = recv(e->notify_fd, msg, sizeof(msg) - 1, 0);
		int left;

		if (n > 0) {
			msg[n] = '\0';
			if (sscanf(msg, "start %63s %lld", ret_id, &ns) == 2) {
				*ret_ns = ns;
				return 1;
			}
			continue;
		}
		left = (int)((deadline - eng_now_ns()) / 1000000);
		if (left <= 0)
			return 0;
		(void)poll(&p, 1, left);
	}
}

void eng_drain(struct eng *e)
{
	char msg[256];

	while (recv(e->notify_fd, msg, sizeof(msg), 0) > 0)
		;
}

/* Does /proc/<pid>/cmdline start with fakefc and name the work dir? */
static bool eng_is_our_fakefc(const struct eng *e, const char *pid)
{
	_cleanup_free_ char *path = xasprintf("/proc/%s/cmdline", pid);
	char buf[4096];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	if (strcmp(buf, e->fakefc) != 0)
		return false;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	return strstr(buf, e->work) != NULL;
}

/* Calls fn on every live fakefc of the work dir; returns how many. */
static unsigned eng_each_fakefc(const struct eng *e, int sig)
{
	_cleanup_(closedirp) DIR *d = opendir("/proc");
	struct dirent *de;
	unsigned n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		if (!eng_is_our_fakefc(e, de->d_name))
			continue;
		if (!proc_identity_matches(atoi(de->d_name), 0))
			continue; /* a zombie: gone */
		n++;
		if (sig)
			(void)kill(atoi(de->d_name), sig);
	}
	return n;
}

unsigned eng_fakefc_count(const struct eng *e)
{
	return eng_each_fakefc(e, 0);
}

static unsigned eng_dir_entries(const char *path)
{
	_cleanup_(closedirp) DIR *d = opendir(path);
	struct dirent *de;
	unsigned n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	return n;
}

unsigned eng_bridge_ports(const char *bridge)
{
	_cleanup_free_ char *path = xasprintf("/sys/class/net/%s/brif", bridge);

	return eng_dir_entries(path);
}

unsigned eng_vm_dirs(const struct eng *e)
{
	_cleanup_free_ char *path = fs_path_join(e->state, "vms");

	return eng_dir_entries(path);
}

int eng_status_count(const struct eng *e)
{
	const char *argv[] = { e->banger, "status", "-o", "json", NULL };
	_cleanup_free_ char *out = NULL;
	int n = 0;

	/* The CLI finds the state through the environment. */
	if (setenv("BANGER_STATE_DIR", e->state, 1) < 0 ||
	    setenv("BANGER_SPEC_DIR", e->specs, 1) < 0)
		return -1;
	if (eng_run(argv, &out) < 0 || !out || !strstr(out, "\"items\""))
		return -1;
	for (const char *p = out; (p = strstr(p, "\"phase\"")) != NULL; p++)
		n++;
	return n;
}

/*
 * Cheapest first: a VM dir or a tap left ends the check before /proc is
 * scanned, and 'banger status' (which samples CPU for its table) runs only
 * once everything else is gone, so polling does not slow what it measures.
 */
static bool eng_daemon_host_empty(const struct eng *e)
{
	return eng_vm_dirs(e) == 0 && eng_bridge_ports(e->bridge) == 0 && eng_fakefc_count(e) == 0;
}

int eng_wait_daemon_empty(struct eng *e, int timeout_ms, int64_t *ret_ns)
{
	int64_t deadline = eng_now_ns() + (int64_t)timeout_ms * 1000000;

	for (;;) {
		int64_t t = eng_now_ns();

		eng_reap();
		if (eng_daemon_host_empty(e) && eng_status_count(e) == 0) {
			*ret_ns = t;
			return 0;
		}
		if (t > deadline)
			return -ETIMEDOUT;
		eng_sleep_ms(20);
	}
}

pid_t eng_baseline_spawn(struct eng *e, unsigned n, unsigned jobs, bool del)
{
	_cleanup_free_ char *t0 = fs_path_join(e->work, "baseline.t0");
	char n_s[16], j_s[16];
	const char *argv[] = { e->baseline, "-T",	t0,	  "-d",		e->base,
			       "-b",	    e->bbridge, "-p",	  e->id_prefix, "-k",
			       e->kernel,   "-i",	e->image, "-f",		e->fakefc,
			       "-n",	    n_s,	"-j",	  j_s,		del ? "-x" : NULL,
			       NULL };
	pid_t pid;

	snprintf(n_s, sizeof(n_s), "%u", n);
	snprintf(j_s, sizeof(j_s), "%u", jobs);
	pid = fork();
	if (pid == 0) {
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int eng_baseline_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int64_t eng_baseline_t0(const struct eng *e)
{
	_cleanup_free_ char *path = fs_path_join(e->work, "baseline.t0");
	_cleanup_free_ char *text = NULL;

	if (fs_read_file(path, 64, &text, NULL, NULL) < 0)
		return 0;
	return strtoll(text, NULL, 10);
}

bool eng_baseline_empty(const struct eng *e)
{
	eng_reap();
	return eng_fakefc_count(e) == 0 && eng_bridge_ports(e->bbridge) == 0 &&
	       eng_dir_entries(e->base) == 0;
}

void eng_reap(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static bool eng_link_exists(const char *name)
{
	_cleanup_free_ char *path = xasprintf("/sys/class/net/%s", name);

	return access(path, F_OK) == 0;
}

static bool eng_nft_table_exists(const char *family, const char *bridge)
{
	_cleanup_free_ char *table = xasprintf("banger-%s", bridge);
	const char *argv[] = { "nft", "list", "table", family, table, NULL };

	_cleanup_free_ char *out = NULL;

	return eng_run(argv, &out) == 0;
}

static void eng_nft_table_delete(const char *family, const char *bridge)
{
	_cleanup_free_ char *table = xasprintf("banger-%s", bridge);
	const char *argv[] = { "nft", "delete", "table", family, table, NULL };
	_cleanup_free_ char *out = NULL;

	if (eng_nft_table_exists(family, bridge))
		(void)eng_run(argv, &out);
}

/* Stop bangerd after it removed every VM (bounded); then whatever is left, by force. */
static void eng_stop_daemon(struct eng *e)
{
	_cleanup_(closedirp) DIR *d = opendir(e->specs);
	struct dirent *de;
	int64_t t;

	while (d && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			(void)unlinkat(dirfd(d), de->d_name, 0);
	if (e->daemon_pid > 0 && waitpid(e->daemon_pid, NULL, WNOHANG) == 0) {
		if (eng_wait_daemon_empty(e, 120000, &t) < 0) {
			fprintf(stderr, "bench: bangerd did not remove every VM within 120 s\n");
			e->failed = true;
		}
		(void)kill(e->daemon_pid, SIGTERM);
		if (proc_wait_gone(e->daemon_pid, 0, 10000) < 0) {
			(void)kill(e->daemon_pid, SIGKILL);
			(void)proc_wait_gone(e->daemon_pid, 0, 5000);
		}
		(void)waitpid(e->daemon_pid, NULL, 0);
	}
	e->daemon_pid = 0;
}

/* The baseline's VMs: delete through the baseline (every id it may have used). */
static void eng_clear_baseline(struct eng *e)
{
	_cleanup_(closedirp) DIR *d = opendir(e->base);
	struct dirent *de;
	unsigned max = 0;

	while (d && (de = readdir(d)) != NULL) {
		unsigned i;

		if (strlen(de->d_name) == 8 && sscanf(de->d_name + 4, "%x", &i) == 1 && i + 1 > max)
			max = i + 1;
	}
	if (max > 0)
		(void)eng_baseline_wait(eng_baseline_spawn(e, max, 1, true));
}

int eng_teardown(struct eng *e)
{
	struct host_net net = { 0 };
	struct bg_err err = { 0 };
	const char *bridges[2] = { e->bridge, e->bbridge };
	unsigned stray;
	bool leak = false;

	if (!e->work)
		return 0;
	eng_stop_daemon(e);
	eng_clear_baseline(e);
	/* Anything still serving under the work dir was started by this bench. */
	stray = eng_each_fakefc(e, SIGKILL);
	if (stray) {
		fprintf(stderr, "bench: leaked: %u fakefc processes (killed)\n", stray);
		leak = true;
	}
	for (int i = 0; i < 100 && eng_fakefc_count(e); i++) {
		eng_reap();
		eng_sleep_ms(20);
	}
	eng_reap();
	for (size_t b = 0; b < 2; b++) {
		unsigned ports = eng_bridge_ports(bridges[b]);

		if (ports) {
			fprintf(stderr, "bench: leaked: %u taps on %s\n", ports, bridges[b]);
			leak = true;
			/* Taps named bg<id> of this bench's VMs: removed by name. */
			_cleanup_free_ char *brif = xasprintf("/sys/class/net/%s/brif", bridges[b]);
			_cleanup_(closedirp) DIR *d = opendir(brif);
			struct dirent *de;

			while (d && (de = readdir(d)) != NULL)
				if (strncmp(de->d_name, "bg", 2) == 0)
					(void)host_ops_linux.tap_remove(de->d_name, NULL);
		}
		eng_nft_table_delete("ip", bridges[b]);
		eng_nft_table_delete("bridge", bridges[b]);
		if (eng_link_exists(bridges[b])) {
			const char *argv[] = { "ip", "link", "del", bridges[b], NULL };

			(void)eng_run(argv, NULL);
		}
		if (eng_link_exists(bridges[b]) || eng_nft_table_exists("ip", bridges[b]) ||
		    eng_nft_table_exists("bridge", bridges[b])) {
			fprintf(stderr, "bench: leaked: bridge %s or its nftables tables\n",
				bridges[b]);
			leak = true;
		}
	}
	(void)net;
	if (e->notify_fd >= 0)
		close(e->notify_fd);
	e->notify_fd = -1;
	if (leak || e->failed) {
		fprintf(stderr, "bench: kept %s for inspection; bangerd's log: %s\n", e->work,
			e->log);
		return -1;
	}
	if (fs_remove_tree(e->work, &err) < 0) {
		fprintf(stderr, "bench: remove %s: %s\n", e->work, err.msg);
		return -1;
	}
	return 0;
}

static int eng_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void eng_stats(const double *v, size_t n, struct eng_stats *ret)
{
	_cleanup_free_ double *s = NULL;

	memset(ret, 0, sizeof(*ret));
	if (n == 0)
		return;
	s = xmalloc(n * sizeof(*s));
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), eng_cmp_double);
	ret->median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	ret->p90 = s[(size_t)((double)(n - 1) * 0.9 + 0.5)];
	ret->min = s[0];
	ret->max = s[n - 1];
}
