/*
 * baseline.c - the bare baseline of the engine benchmarks (bench_p1, bench_p2):
 * the kernel work and VMM calls bangerd does to bring up one VM, and nothing
 * else. No spec, no store, no planner, no host key, seed, anti-spoofing or
 * NAT rules: per VM it makes the tap and attaches it to the bridge
 * (host_ops_linux.tap_ensure), makes the root disk from the image in the
 * disk mode bangerd would pick for the same directory
 * (host_ops_linux.disk_mode_detect, rootdisk_ensure), spawns the VMM and
 * configures and starts it with banger's own Firecracker driver
 * (vmm_driver_firecracker.start: the same requests, then InstanceStart), and
 * writes the VMM's pid to <dir>/<id>/pid. It stops there and leaves the VMM
 * running; the VMM is run as root, unconfined (no sandbox uid, no memfd copy
 * of the kernel, no seccomp).
 *
 *   baseline -d DIR -b BRIDGE -p IDPREFIX -k KERNEL -i IMAGE -f FAKEFC
 *            [-n N] [-j JOBS] [-x] [-v] [-T FILE]
 *
 * VM i (0 <= i < N < 65536) has id IDPREFIX (4 hex digits) followed by i in
 * 4 hex digits, its files in DIR/<id>/ and tap "bg<id>" (banger's tap names). -j JOBS forks that many workers that take every JOBS-th VM.
 * -x deletes instead: SIGTERM to the pid in DIR/<id>/pid, wait until it is
 * gone, remove the tap and the root disk and DIR/<id>. Exits 0 when every VM
 * was done. -v prints each VM's steps (tap, root disk, VMM start) in ms. -T FILE
 * writes the CLOCK_MONOTONIC ns at which main() was entered to FILE.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/host/host.h"
#include "reconciler/vmm/vmm.h"

struct baseline_opts {
	const char *dir, *bridge, *id_prefix, *kernel, *image, *fakefc;
	unsigned n, jobs;
	bool delete;
	bool verbose; /* -v: each VM's steps in ms on stderr */
};

static double baseline_ms_since(int64_t *t)
{
	struct timespec ts;
	int64_t now;
	double ms;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	ms = (double)(now - *t) / 1000.0;
	*t = now;
	return ms;
}

/* One VM's names, derived from its index. */
struct baseline_vm {
	char id[9];
	char tap[16];
	char *vm_dir, *cow_disk, *pid_file;
};

static void baseline_vm_init(const struct baseline_opts *o, unsigned i, struct baseline_vm *v)
{
	snprintf(v->id, sizeof(v->id), "%.4s%04x", o->id_prefix, i & 0xffff);
	snprintf(v->tap, sizeof(v->tap), "bg%s", v->id);
	v->vm_dir = fs_path_join(o->dir, v->id);
	v->cow_disk = fs_path_join(v->vm_dir, "root.img");
	v->pid_file = fs_path_join(v->vm_dir, "pid");
}

static void baseline_vm_release(struct baseline_vm *v)
{
	free(v->vm_dir);
	free(v->cow_disk);
	free(v->pid_file);
}

static void baseline_host_vm(const struct baseline_opts *o, const struct baseline_vm *v,
			     struct host_vm *hv)
{
	memset(hv, 0, sizeof(*hv));
	hv->id = v->id;
	hv->vm_dir = v->vm_dir;
	hv->rootfs_image = o->image;
	hv->cow_disk = v->cow_disk;
}

static int baseline_create(const struct baseline_opts *o, enum disk_mode mode, unsigned i,
			   struct bg_err *err)
{
	struct host_net net = { .bridge = o->bridge };
	_cleanup_free_ char *sock_dir = NULL, *sock = NULL, *console = NULL, *pid_s = NULL;
	struct baseline_vm v;
	struct host_disk disk;
	struct host_vm hv;
	struct vmm_config cfg;
	struct vmm_process proc;
	int64_t t = 0;
	double ms_tap = 0, ms_disk = 0, ms_vmm = 0;
	int r;

	baseline_vm_init(o, i, &v);
	sock_dir = fs_path_join(v.vm_dir, "fc");
	sock = fs_path_join(sock_dir, "api.sock");
	console = fs_path_join(v.vm_dir, "console.log");
	if (mkdir(v.vm_dir, 0700) < 0 && errno != EEXIST) {
		r = bg_error(err, errno, "mkdir '%s'", v.vm_dir);
		goto out;
	}
	(void)baseline_ms_since(&t);
	r = host_ops_linux.tap_ensure(&net, v.tap, 0, 0, err);
	if (r < 0)
		goto out;
	ms_tap = baseline_ms_since(&t);
	baseline_host_vm(o, &v, &hv);
	r = host_ops_linux.rootdisk_ensure(&hv, mode, &disk, err);
	if (r < 0)
		goto out;
	ms_disk = baseline_ms_since(&t);
	memset(&cfg, 0, sizeof(cfg));
	cfg.id = v.id;
	cfg.name = v.id;
	cfg.vcpus = 1;
	cfg.memory_mib = 256;
	cfg.kernel = o->kernel;
	cfg.guest_args = "ip=172.28.11.2::172.28.11.1:255.255.255.0:baseline:eth0:off";
	cfg.root_disk = disk.path;
	cfg.tap = v.tap;
	cfg.mac = "02:00:ac:1c:0b:02";
	cfg.cid = 3 + i;
	cfg.vm_dir = v.vm_dir;
	cfg.ctl_sock = sock;
	cfg.console_log = console;
	cfg.binary = o->fakefc;
	r = vmm_driver_firecracker.start(&cfg, &proc, err);
	if (r < 0)
		goto out;
	ms_vmm = baseline_ms_since(&t);
	if (o->verbose)
		fprintf(stderr,
			"baseline: vm %s: tap %.2f ms, root disk %.2f ms (%s), vmm start %.2f ms\n",
			v.id, ms_tap, ms_disk, disk_mode_to_string(disk.mode), ms_vmm);
	pid_s = xasprintf("%d %llu\n", (int)proc.pid, (unsigned long long)proc.start_time);
	r = fs_write_atomic(v.pid_file, pid_s, strlen(pid_s), 0600, err);
out:
	baseline_vm_release(&v);
	return r;
}

/* Stop the VMM (SIGTERM, identity checked), then remove the tap, the disk, the dir. */
static int baseline_delete(const struct baseline_opts *o, unsigned i, struct bg_err *err)
{
	_cleanup_free_ char *text = NULL;
	struct baseline_vm v;
	struct host_vm hv;
	unsigned long long start = 0;
	int pid = 0, r;

	baseline_vm_init(o, i, &v);
	r = fs_read_file(v.pid_file, 4096, &text, NULL, NULL);
	if (r >= 0 && sscanf(text, "%d %llu", &pid, &start) == 2 && pid > 0) {
		(void)proc_signal(pid, start, SIGTERM, NULL);
		if (proc_wait_gone(pid, start, 5000) < 0) {
			r = bg_errorf(err, ETIMEDOUT, "vm %s: pid %d did not exit", v.id, pid);
			goto out;
		}
		/* Our child when this process made it (-n with -x in one run): reap it. */
		(void)waitpid(pid, NULL, WNOHANG);
	}
	r = host_ops_linux.tap_remove(v.tap, err);
	baseline_host_vm(o, &v, &hv);
	if (r >= 0)
		r = host_ops_linux.rootdisk_remove(&hv, err);
	if (r >= 0)
		r = fs_remove_tree(v.vm_dir, err);
out:
	baseline_vm_release(&v);
	return r;
}

/* Every jobs-th VM from 'first'. Returns the number that failed. */
static unsigned baseline_worker(const struct baseline_opts *o, unsigned first)
{
	enum disk_mode mode = DISK_MODE_COPY;
	unsigned failed = 0;
	struct bg_err err = { 0 };

	if (!o->delete &&host_ops_linux.disk_mode_detect(o->dir, &mode, &err) < 0) {
		fprintf(stderr, "baseline: disk mode: %s\n", err.msg);
		return o->n;
	}
	for (unsigned i = first; i < o->n; i += o->jobs) {
		int r = o->delete ? baseline_delete(o, i, &err) : baseline_create(o, mode, i, &err);

		if (r < 0) {
			fprintf(stderr, "baseline: vm %u: %s\n", i, err.msg);
			failed++;
		}
	}
	return failed;
}

static int baseline_run(const struct baseline_opts *o)
{
	unsigned failed = 0;
	pid_t *pids;

	if (o->jobs <= 1)
		return baseline_worker(o, 0) ? 1 : 0;
	pids = xcalloc(o->jobs, sizeof(*pids));
	for (unsigned w = 0; w < o->jobs; w++) {
		pids[w] = fork();
		if (pids[w] == 0)
			_exit(baseline_worker(o, w) ? 1 : 0);
		if (pids[w] < 0) {
			perror("baseline: fork");
			failed++;
		}
	}
	for (unsigned w = 0; w < o->jobs; w++) {
		int status;

		if (pids[w] > 0 &&
		    (waitpid(pids[w], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)))
			failed++;
	}
	free(pids);
	return failed ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: baseline -d DIR -b BRIDGE -p IDPREFIX -k KERNEL -i IMAGE -f FAKEFC "
		   "[-n N] [-j JOBS] [-x] [-v] [-T FILE]\n");
}

/* -T: when main() was entered, for a bench to tell exec and loading from the work. */
static int baseline_write_t0(const char *path, const struct timespec *ts)
{
	_cleanup_free_ char *text =
		xasprintf("%lld\n", (long long)ts->tv_sec * 1000000000 + ts->tv_nsec);

	return fs_write_atomic(path, text, strlen(text), 0644, NULL);
}

int main(int argc, char **argv)
{
	struct baseline_opts o = { .n = 1, .jobs = 1 };
	const char *t0_path = NULL;
	struct timespec t0;
	int c;

	clock_gettime(CLOCK_MONOTONIC, &t0);

	while ((c = getopt(argc, argv, "d:b:p:k:i:f:n:j:T:xvh")) != -1) {
		switch (c) {
		case 'd':
			o.dir = optarg;
			break;
		case 'b':
			o.bridge = optarg;
			break;
		case 'p':
			o.id_prefix = optarg;
			break;
		case 'k':
			o.kernel = optarg;
			break;
		case 'i':
			o.image = optarg;
			break;
		case 'f':
			o.fakefc = optarg;
			break;
		case 'n':
			o.n = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'j':
			o.jobs = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'x':
			o.delete = true;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'T':
			t0_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.dir || !o.bridge || !o.id_prefix || strlen(o.id_prefix) != 4 || o.n > 0x10000 ||
	    !o.kernel || !o.image || !o.fakefc || o.jobs == 0) {
		usage(stderr);
		return 2;
	}
	if (t0_path && baseline_write_t0(t0_path, &t0) < 0) {
		fprintf(stderr, "baseline: cannot write %s\n", t0_path);
		return 1;
	}
	return baseline_run(&o);
}
