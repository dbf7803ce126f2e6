/*
 * bench_status.c - how long `banger status` takes with many VMs, a new
 * binary against an old one, run alternately in one run.
 *
 * The claim under test (README, status): status answers at once with 1,000
 * VMs: one read transaction for the list, one read of /proc/<pid>/stat per
 * running VMM, no sampling window. The baseline is a banger binary built
 * from an earlier commit (which slept 200 ms to sample CPU).
 *
 * The program makes a temp state dir with N VM rows through the store API
 * (Running, each with a VM dir and a handles.json naming this very process,
 * which is alive, so every VM is a running VM to status), a fresh daemon row
 * (no banner), then runs each variant R times, alternating the binaries
 * (forward order on even rounds, reverse on odd), stdout to /dev/null, and
 * reports the median and spread of the wall time and of the child's CPU time
 * (user + system, from wait4).
 *
 *   bench_status [-n VMS] [-r ROUNDS] [-o FORMAT,...] NEW_BANGER OLD_BANGER
 *   bench_status [-n VMS] -p DIR    only make the state dir DIR (for a profiler)
 *
 * Exit status: 0 every run exited 0, 1 a failure, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/paths.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/handles.h"
#include "reconciler/store.h"
#include "tests/lib/testutil.h"

#define MAX_FORMATS 4

struct sample {
	double wall_ms;
	double cpu_ms;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median, min and max of n values (sorted in place). */
static void stats(double *v, size_t n, double *ret_med, double *ret_min, double *ret_max)
{
	qsort(v, n, sizeof(*v), cmp_double);
	*ret_med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	*ret_min = v[0];
	*ret_max = v[n - 1];
}

/* N Running VMs whose handles name this process, and a daemon row that is fresh. */
static int populate(const char *state_dir, int n)
{
	_cleanup_free_ char *db = paths_db(state_dir);
	_cleanup_(store_freep) struct store *s = NULL;
	struct vm_handles h = { .pid = getpid() };
	struct daemon_info info = { 0 };
	struct bg_err err = { 0 };

	if (proc_start_time(h.pid, &h.start_time, &err) < 0 ||
	    store_open(db, STORE_READ_WRITE, &s, &err) < 0)
		goto fail;
	for (int i = 0; i < n; i++) {
		struct vm_record rec = { 0 };
		int r;

		rec.name = xasprintf("vm-%04d", i);
		rec.phase = VM_PHASE_RUNNING;
		rec.desired_state = VM_DESIRED_RUNNING;
		rec.generation = 1;
		rec.observed_generation = 1;
		rec.last_exit = -1;
		rec.vmm = xstrdup("firecracker");
		rec.disk_mode = xstrdup("reflink");
		r = store_vm_insert(s, &rec, &err);
		if (r >= 0) {
			rec.vm_dir = paths_vm_dir(state_dir, rec.id);
			rec.ip = xasprintf("172.31.%d.%d", 10 + i / 250, 2 + i % 250);
			rec.running_since = now_real_ms();
			r = fs_mkdir_p(rec.vm_dir, 0700, &err);
		}
		if (r >= 0)
			r = handles_save(rec.vm_dir, &h, &err);
		if (r >= 0)
			r = store_vm_update(s, &rec, &err);
		vm_record_release(&rec);
		if (r < 0)
			goto fail;
	}
	info.pid = (int)getpid();
	info.version = (char *)"bench";
	info.started_at = now_real_ms();
	info.heartbeat = info.started_at;
	info.last_resync = info.started_at;
	info.resync_ms = 3600 * 1000;
	if (store_daemon_put(s, &info, &err) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "bench_status: populate: %s\n", err.msg);
	return -1;
}

/* One run of 'banger status -o format' with BANGER_STATE_DIR set; -1 on failure. */
static int run_once(const char *banger, const char *format, struct sample *ret)
{
	struct timespec t0, t1;
	struct rusage ru;
	int status;
	pid_t pid;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(127);
		execl(banger, banger, "status", "-o", format, (char *)NULL);
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) != pid)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bench_status: %s status -o %s failed (status %d)\n", banger,
			format, status);
		return -1;
	}
	ret->wall_ms =
		(double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	ret->cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
		      (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: bench_status [-n VMS] [-r ROUNDS] [-o FORMAT,...] NEW_BANGER "
		   "OLD_BANGER\n"
		   "       bench_status [-n VMS] -p DIR\n");
}

int main(int argc, char **argv)
{
	int n_vms = 1000, rounds = 11, c, rc = 1;
	_cleanup_free_ char *formats_arg = xstrdup("json,table");
	const char *formats[MAX_FORMATS];
	size_t n_formats = 0;
	const char *bins[2], *populate_only = NULL;
	char *dir = NULL, *tok, *save = NULL;
	double *wall[MAX_FORMATS][2], *cpu[MAX_FORMATS][2];

	while ((c = getopt(argc, argv, "n:r:o:p:h")) != -1) {
		switch (c) {
		case 'p':
			populate_only = optarg;
			break;
		case 'n':
			n_vms = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'o':
			free(formats_arg);
			formats_arg = xstrdup(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (populate_only)
		return fs_mkdir_p(populate_only, 0700, NULL) < 0 ||
		       populate(populate_only, n_vms) < 0;
	if (argc - optind != 2 || n_vms < 1 || rounds < 1) {
		usage(stderr);
		return 2;
	}
	bins[0] = argv[optind];
	bins[1] = argv[optind + 1];
	for (tok = strtok_r(formats_arg, ",", &save); tok && n_formats < MAX_FORMATS;
	     tok = strtok_r(NULL, ",", &save))
		formats[n_formats++] = tok;

	dir = test_tmpdir("bg-bench-status");
	if (setenv("BANGER_STATE_DIR", dir, 1) < 0 || populate(dir, n_vms) < 0)
		goto out;
	for (size_t f = 0; f < n_formats; f++)
		for (int b = 0; b < 2; b++) {
			wall[f][b] = xcalloc((size_t)rounds, sizeof(double));
			cpu[f][b] = xcalloc((size_t)rounds, sizeof(double));
		}
	/* One warm-up run of each (page cache, the binaries), not counted. */
	for (size_t f = 0; f < n_formats; f++)
		for (int b = 0; b < 2; b++) {
			struct sample smp;

			if (run_once(bins[b], formats[f], &smp) < 0)
				goto out;
		}
	for (int r = 0; r < rounds; r++)
		for (size_t f = 0; f < n_formats; f++)
			for (int k = 0; k < 2; k++) {
				int b = r % 2 ? 1 - k : k;
				struct sample smp;

				if (run_once(bins[b], formats[f], &smp) < 0)
					goto out;
				wall[f][b][r] = smp.wall_ms;
				cpu[f][b][r] = smp.cpu_ms;
			}
	printf("banger status with %d Running VMs, %d rounds (medians, [min..max])\n", n_vms,
	       rounds);
	printf("%-8s %-5s %26s %26s\n", "format", "which", "wall ms", "CPU ms");
	for (size_t f = 0; f < n_formats; f++) {
		double med_wall[2];

		for (int b = 0; b < 2; b++) {
			double med, lo, hi, cmed, clo, chi;

			stats(wall[f][b], (size_t)rounds, &med, &lo, &hi);
			stats(cpu[f][b], (size_t)rounds, &cmed, &clo, &chi);
			med_wall[b] = med;
			printf("%-8s %-5s %8.1f [%6.1f..%6.1f] %8.1f [%6.1f..%6.1f]\n", formats[f],
			       b ? "old" : "new", med, lo, hi, cmed, clo, chi);
		}
		printf("%-8s ratio new/old (wall): %.2f\n", formats[f], med_wall[0] / med_wall[1]);
	}
	rc = 0;
out:
	if (dir) {
		test_rmtree(dir);
		free(dir);
	}
	return rc;
}
