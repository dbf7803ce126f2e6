/*
 * bench_handles.c - what a daemon pass pays for handles with N Running VMs,
 * the handle cache against the way a pass looked them up before, alternating
 * in one run.
 *
 * The claims under test (handles.h): a cached VM costs one read of
 * /proc/<pid>/stat per pass and no handles.json read; a VM created by the
 * daemon after its first pass costs no scan of /proc; N VMs rediscovered in
 * one generation cost one scan.
 *
 * Variants, each timed in CPU time of this process per whole pass over N VMs:
 *  - pass/old: what daemon_pass did per VM: handles_load() of handles.json
 *    (the pid before death), handles_get() (one stat read for a live cached
 *    entry), vm_liveness() (another);
 *  - pass/new: handles_cache_peek() and handles_observe() (one stat read);
 *  - create/old: a VM the cache does not know, as every new VM was looked up
 *    before: handles_rediscover() (a scan of /proc per VM), for 50 VMs;
 *  - create/new: handles_observe() of 50 unknown VMs on a warm cache;
 *  - cold/new: a restarted daemon's first pass (cold cache, every VM
 *    rediscovered): N VMs, one scan of /proc.
 * Every VM's handles name this process (alive). Rounds alternate the order.
 *
 *   bench_handles [-n VMS] [-r ROUNDS]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/handles.h"
#include "tests/lib/testutil.h"

#define N_CREATE 50

enum variant {
	PASS_OLD,
	PASS_NEW,
	CREATE_OLD,
	CREATE_NEW,
	COLD_NEW,
	VARIANT_MAX
};

static const char *const variant_names[VARIANT_MAX] = { "pass/old", "pass/new", "create/old",
							"create/new", "cold/new" };

static double cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void make_recs(const char *dir, struct vm_record *recs, int n, int base,
		      const struct vm_handles *h)
{
	for (int i = 0; i < n; i++) {
		struct vm_record *rec = &recs[i];
		struct bg_err err = { 0 };

		memset(rec, 0, sizeof(*rec));
		snprintf(rec->id, sizeof(rec->id), "%08x", (unsigned)(base + i + 1));
		rec->name = xasprintf("vm-%d", base + i);
		rec->vm_dir = xasprintf("%s/%s", dir, rec->id);
		rec->api_sock = xasprintf("%s/%s/api.sock", dir, rec->id);
		rec->cow_disk = xasprintf("%s/%s/cow.img", dir, rec->id);
		rec->vmm = xstrdup("firecracker");
		if (fs_mkdir_p(rec->vm_dir, 0700, &err) < 0 ||
		    (h && handles_save(rec->vm_dir, h, &err) < 0)) {
			fprintf(stderr, "bench_handles: %s\n", err.msg);
			exit(1);
		}
	}
}

static double run(enum variant v, struct handles_cache *c, struct vm_record *recs, int n,
		  struct vm_record *fresh)
{
	double t0 = cpu_ms();
	struct bg_err err = { 0 };
	struct vm_handles h, last;
	enum vm_liveness l;
	struct handles_cache *cold;

	switch (v) {
	case PASS_OLD:
		for (int i = 0; i < n; i++) {
			(void)handles_load(recs[i].vm_dir, &last, NULL);
			(void)handles_get(c, &recs[i], &h, NULL, &err);
			l = vm_liveness(&h);
		}
		break;
	case PASS_NEW:
		handles_cache_begin_pass(c);
		for (int i = 0; i < n; i++) {
			(void)handles_cache_peek(c, recs[i].id, &last);
			(void)handles_observe(c, &recs[i], &h, &l, NULL, &err);
		}
		break;
	case CREATE_OLD:
		for (int i = 0; i < N_CREATE; i++) {
			struct handles_probe p = { .id = fresh[i].id,
						   .ctl_sock = fresh[i].api_sock,
						   .cow_disk = fresh[i].cow_disk };

			(void)handles_rediscover(&p, &h, &err);
		}
		break;
	case CREATE_NEW:
		/* A warm cache that has not seen them: the daemon made them since. */
		cold = handles_cache_new();
		handles_cache_set_warm(cold);
		t0 = cpu_ms();
		for (int i = 0; i < N_CREATE; i++)
			(void)handles_observe(cold, &fresh[i], &h, &l, NULL, &err);
		t0 -= cpu_ms();
		handles_cache_free(cold);
		return -t0;
	case COLD_NEW:
		cold = handles_cache_new();
		t0 = cpu_ms();
		for (int i = 0; i < n; i++)
			(void)handles_observe(cold, &recs[i], &h, &l, NULL, &err);
		t0 -= cpu_ms();
		handles_cache_free(cold);
		return -t0;
	default:
		break;
	}
	(void)l;
	return cpu_ms() - t0;
}

int main(int argc, char **argv)
{
	int n = 1000, rounds = 11, c;
	struct vm_handles h = { .pid = getpid() };
	struct vm_record *recs, fresh[N_CREATE];
	struct handles_cache *cache = handles_cache_new();
	struct bg_err err = { 0 };
	double *t[VARIANT_MAX];
	char *dir;

	while ((c = getopt(argc, argv, "n:r:h")) != -1) {
		switch (c) {
		case 'n':
			n = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		default:
			fprintf(stderr, "Usage: bench_handles [-n VMS] [-r ROUNDS]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (n < 1 || rounds < 1)
		return 2;
	if (proc_start_time(h.pid, &h.start_time, &err) < 0) {
		fprintf(stderr, "bench_handles: %s\n", err.msg);
		return 1;
	}
	dir = test_tmpdir("bg-bench-handles");
	recs = xcalloc((size_t)n, sizeof(*recs));
	make_recs(dir, recs, n, 0, &h);
	make_recs(dir, fresh, N_CREATE, n, NULL);
	for (int i = 0; i < n; i++)
		if (handles_put(cache, &recs[i], &h, &err) < 0) {
			fprintf(stderr, "bench_handles: %s\n", err.msg);
			return 1;
		}
	handles_cache_set_warm(cache);
	for (int v = 0; v < VARIANT_MAX; v++)
		t[v] = xcalloc((size_t)rounds, sizeof(double));
	for (int r = 0; r < rounds; r++)
		for (int k = 0; k < VARIANT_MAX; k++) {
			int v = r % 2 ? VARIANT_MAX - 1 - k : k;

			t[v][r] = run((enum variant)v, cache, recs, n, fresh);
		}
	printf("handles per pass with %d Running VMs (%d new for create), %d rounds: CPU ms, "
	       "median [min..max]\n",
	       n, N_CREATE, rounds);
	for (int v = 0; v < VARIANT_MAX; v++) {
		qsort(t[v], (size_t)rounds, sizeof(double), cmp_double);
		printf("%-11s %8.2f [%7.2f..%7.2f]\n", variant_names[v], t[v][rounds / 2], t[v][0],
		       t[v][rounds - 1]);
	}
	printf("pass new/old: %.2f; create new/old: %.4f\n",
	       t[PASS_NEW][rounds / 2] / t[PASS_OLD][rounds / 2],
	       t[CREATE_NEW][rounds / 2] / t[CREATE_OLD][rounds / 2]);
	for (int i = 0; i < n; i++)
		vm_record_release(&recs[i]);
	for (int i = 0; i < N_CREATE; i++)
		vm_record_release(&fresh[i]);
	free(recs);
	handles_cache_free(cache);
	test_rmtree(dir);
	free(dir);
	return 0;
}
