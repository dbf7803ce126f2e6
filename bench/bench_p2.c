/*
 * bench_p2.c - P2 of issue 12: N specs (default 200) at once until all N VMMs
 * have received InstanceStart, then all N removed until nothing is left;
 * bangerd vs the bare baseline.
 *
 * Variants, one after the other per round (order rotated each round):
 * - bangerd: the N specs are written to a staging dir on the same filesystem
 *   first, then rename()d into the spec dir one after the other in a tight
 *   loop. Create = from just before the first rename() to the latest time in
 *   the N InstanceStart datagrams. Delete = from just before the first of N
 *   unlink()s of the spec files to the first check that finds nothing left:
 *   no fakefc of the bench, no tap on the bridge, no VM dir and no VM row in
 *   'banger status -o json' (polled every 20 ms, cheapest check first; `banger status` runs only once the rest is gone).
 *   bangerd deletes a VM only after its spec has stayed gone for 2 s: that
 *   delay is part of the product's delete and so of this figure.
 * - baseline-seq: bench/baseline -n N (one process, one VM after the other);
 *   create from just before fork() to the latest datagram, delete = baseline
 *   -x -n N until it exits and nothing of it is left.
 * - baseline-par: the same with -j <nproc> workers.
 *
 * The table also gives the time to the first and to the (N/2)-th InstanceStart.
 *
 *   bench_p2 [-n N] [-r ROUNDS]     (as root; exit 77 otherwise)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/engine.h"
#include "common/cleanup.h"
#include "common/xalloc.h"

#define P2_VARIANTS 3

static const char *const p2_names[P2_VARIANTS] = { "bangerd", "baseline-seq", "baseline-par" };

struct p2_sample {
	double first_s, half_s; /* to the first and the (N/2)-th InstanceStart */
	double create_s, delete_s;
};

static int p2_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Wait for n InstanceStart reports; the latest time in them into *ret_last,
 * and into ret (when not NULL) the first and the (n/2)-th, in seconds from t0.
 */
static int p2_wait_starts(struct eng *e, unsigned n, int timeout_ms, int64_t t0,
			  struct p2_sample *ret, int64_t *ret_last)
{
	_cleanup_free_ int64_t *times = xcalloc(n, sizeof(*times));
	int64_t last = 0;
	unsigned got = 0;
	char id[64];
	int64_t t;

	while (got < n) {
		if (eng_recv_start(e, timeout_ms, id, &t) != 1) {
			fprintf(stderr, "bench_p2: %u of %u InstanceStarts within %d ms\n", got, n,
				timeout_ms);
			return -ETIMEDOUT;
		}
		times[got++] = t;
		if (t > last)
			last = t;
	}
	qsort(times, n, sizeof(*times), p2_cmp_i64);
	ret->first_s = (double)(times[0] - t0) / 1e9;
	ret->half_s = (double)(times[(n - 1) / 2] - t0) / 1e9;
	*ret_last = last;
	return 0;
}

static int p2_daemon(struct eng *e, unsigned round, unsigned n, struct p2_sample *ret)
{
	int64_t t0, last, gone;
	char name[64];

	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "p2-%u-%u", round, i);
		if (eng_spec_stage(e, name) < 0)
			return -EIO;
	}
	eng_drain(e);
	t0 = eng_now_ns();
	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "p2-%u-%u", round, i);
		if (eng_spec_publish(e, name) < 0)
			return -EIO;
	}
	if (p2_wait_starts(e, n, 120000, t0, ret, &last) < 0)
		return -ETIMEDOUT;
	ret->create_s = (double)(last - t0) / 1e9;
	t0 = eng_now_ns();
	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "p2-%u-%u", round, i);
		(void)eng_spec_remove(e, name);
	}
	if (eng_wait_daemon_empty(e, 900000, &gone) < 0) {
		fprintf(stderr,
			"bench_p2: bangerd: VMs left 900 s after their specs were removed\n");
		return -ETIMEDOUT;
	}
	ret->delete_s = (double)(gone - t0) / 1e9;
	return 0;
}

static int p2_baseline(struct eng *e, unsigned n, unsigned jobs, struct p2_sample *ret)
{
	int64_t t0, last;
	pid_t pid;
	int r;

	eng_drain(e);
	t0 = eng_now_ns();
	pid = eng_baseline_spawn(e, n, jobs, false);
	if (pid < 0)
		return -errno;
	r = p2_wait_starts(e, n, 120000, t0, ret, &last);
	if (eng_baseline_wait(pid) < 0 || r < 0) {
		fprintf(stderr, "bench_p2: baseline (-j %u) failed\n", jobs);
		return r < 0 ? r : -EIO;
	}
	ret->create_s = (double)(last - t0) / 1e9;
	t0 = eng_now_ns();
	r = eng_baseline_wait(eng_baseline_spawn(e, n, jobs, true));
	if (r < 0 || !eng_baseline_empty(e)) {
		fprintf(stderr, "bench_p2: baseline (-j %u): its VMs were not all removed\n", jobs);
		return -EIO;
	}
	ret->delete_s = (double)(eng_now_ns() - t0) / 1e9;
	return 0;
}

static int p2_variant(struct eng *e, int v, unsigned round, unsigned n, unsigned jobs,
		      struct p2_sample *ret)
{
	switch (v) {
	case 0:
		return p2_daemon(e, round, n, ret);
	case 1:
		return p2_baseline(e, n, 1, ret);
	default:
		return p2_baseline(e, n, jobs, ret);
	}
}

int main(int argc, char **argv)
{
	unsigned n = 200, rounds = 1, jobs;
	_cleanup_free_ struct p2_sample *s = NULL;
	double med_c[P2_VARIANTS], med_d[P2_VARIANTS];
	unsigned done = 0;
	struct eng e;
	int c, r = 0;

	while ((c = getopt(argc, argv, "n:r:h")) != -1) {
		switch (c) {
		case 'n':
			n = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			rounds = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(c == 'h' ? stdout : stderr, "usage: bench_p2 [-n N] [-r ROUNDS]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (n == 0 || n > 0x10000 || rounds == 0) {
		fprintf(stderr, "bench_p2: -n 1..65536, -r >= 1\n");
		return 2;
	}
	jobs = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (jobs < 2)
		jobs = 2;
	eng_setup(&e, argv[0]);
	if (eng_daemon_start(&e) < 0) {
		fprintf(stderr, "bench_p2: bangerd did not start\n");
		e.failed = true;
		(void)eng_teardown(&e);
		return 1;
	}
	s = xcalloc((size_t)rounds * P2_VARIANTS, sizeof(*s));
	printf("bench_p2: %u specs at once -> %u InstanceStarts, then all removed -> nothing left; "
	       "%u round(s), baseline-par -j %u, bridge %s, work dir %s\n",
	       n, n, rounds, jobs, e.bridge, e.work);
	for (unsigned i = 0; i < rounds && r == 0; i++) {
		for (int k = 0; k < P2_VARIANTS && r == 0; k++) {
			int v = (k + (int)i) % P2_VARIANTS;
			struct p2_sample *x = &s[i * P2_VARIANTS + v];

			r = p2_variant(&e, v, i, n, jobs, x);
			if (r == 0)
				fprintf(stderr,
					"round %u: %-12s first start %.2f s, half %.2f s, all %.2f s; "
					"delete %.2f s\n",
					i, p2_names[v], x->first_s, x->half_s, x->create_s,
					x->delete_s);
		}
		if (r == 0)
			done++;
	}
	if (r < 0)
		e.failed = true;
	if (done > 0) {
		printf("%-13s %4s %8s %8s %10s %8s %10s %8s\n", "variant", "n", "first_s", "half_s",
		       "create_s", "VMs/s", "delete_s", "VMs/s");
		for (int v = 0; v < P2_VARIANTS; v++) {
			_cleanup_free_ double *cs = xcalloc(done, sizeof(double));
			_cleanup_free_ double *ds = xcalloc(done, sizeof(double));
			_cleanup_free_ double *fs = xcalloc(done, sizeof(double));
			_cleanup_free_ double *hs = xcalloc(done, sizeof(double));
			struct eng_stats sc, sd, sf, sh;

			for (unsigned i = 0; i < done; i++) {
				cs[i] = s[i * P2_VARIANTS + v].create_s;
				ds[i] = s[i * P2_VARIANTS + v].delete_s;
				fs[i] = s[i * P2_VARIANTS + v].first_s;
				hs[i] = s[i * P2_VARIANTS + v].half_s;
			}
			eng_stats(fs, done, &sf);
			eng_stats(hs, done, &sh);
			eng_stats(cs, done, &sc);
			eng_stats(ds, done, &sd);
			med_c[v] = sc.median;
			med_d[v] = sd.median;
			printf("%-13s %4u %8.2f %8.2f %10.2f %8.1f %10.2f %8.1f\n", p2_names[v], n,
			       sf.median, sh.median, sc.median, sc.median > 0 ? n / sc.median : 0,
			       sd.median, sd.median > 0 ? n / sd.median : 0);
		}
		printf("(medians over %u round(s))\n", done);
		printf("ratio of medians, bangerd / baseline-seq: create %.2f, delete %.2f; "
		       "bangerd / baseline-par: create %.2f, delete %.2f\n",
		       med_c[1] > 0 ? med_c[0] / med_c[1] : 0,
		       med_d[1] > 0 ? med_d[0] / med_d[1] : 0,
		       med_c[2] > 0 ? med_c[0] / med_c[2] : 0,
		       med_d[2] > 0 ? med_d[0] / med_d[2] : 0);
		printf("[target: bangerd >= 100 VMs/s created on 2 cores, deletes as fast]\n");
	}
	if (eng_teardown(&e) < 0)
		r = -1;
	return r < 0 ? 1 : 0;
}
