/*
 * bench_p1.c - P1 of issue 12: one spec file renamed into the watched spec dir
 * until its VMM has received InstanceStart, bangerd vs the bare baseline.
 *
 * Per round, in alternating order:
 * - bangerd: the spec (written beforehand to a staging dir on the same
 *   filesystem) is rename()d into the spec dir; the sample is the time from
 *   just before rename() to the CLOCK_MONOTONIC time fakefc put in its
 *   InstanceStart datagram. Then the spec is unlinked and the round waits
 *   until nothing is left (no fakefc, no tap, no VM dir, no VM row);
 * - baseline: bench/baseline for one VM; the sample is the time from just
 *   before fork() to the datagram. Then `baseline -x` removes it.
 * The row baseline-main is the same baseline run timed from the moment its
 * main() was entered (baseline -T), without its exec and dynamic loading:
 * not a variant of its own, a split of the baseline's figure.
 * Prints median, p90, min and max per variant and the ratio of the medians.
 *
 *   bench_p1 [-r ROUNDS] [-w WARMUP]     (as root; exit 77 otherwise)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/engine.h"
#include "common/cleanup.h"
#include "common/xalloc.h"

#define P1_START_TIMEOUT_MS 20000
#define P1_GONE_TIMEOUT_MS 60000

static int p1_daemon_round(struct eng *e, unsigned round, double *ret_ms)
{
	_cleanup_free_ char *name = xasprintf("p1-%u", round);
	char id[64];
	int64_t t0, t, gone;

	if (eng_spec_stage(e, name) < 0)
		return -EIO;
	eng_drain(e);
	t0 = eng_now_ns();
	if (eng_spec_publish(e, name) < 0)
		return -EIO;
	if (eng_recv_start(e, P1_START_TIMEOUT_MS, id, &t) != 1) {
		fprintf(stderr, "bench_p1: bangerd: no InstanceStart within %d ms\n",
			P1_START_TIMEOUT_MS);
		return -ETIMEDOUT;
	}
	*ret_ms = (double)(t - t0) / 1e6;
	(void)eng_spec_remove(e, name);
	if (eng_wait_daemon_empty(e, P1_GONE_TIMEOUT_MS, &gone) < 0) {
		fprintf(stderr, "bench_p1: bangerd: the VM was not gone within %d ms\n",
			P1_GONE_TIMEOUT_MS);
		return -ETIMEDOUT;
	}
	return 0;
}

static int p1_baseline_round(struct eng *e, double *ret_ms, double *ret_main_ms)
{
	char id[64];
	int64_t t0, t;
	pid_t pid;
	int r;

	eng_drain(e);
	t0 = eng_now_ns();
	pid = eng_baseline_spawn(e, 1, 1, false);
	if (pid < 0)
		return -errno;
	if (eng_recv_start(e, P1_START_TIMEOUT_MS, id, &t) != 1) {
		fprintf(stderr, "bench_p1: baseline: no InstanceStart within %d ms\n",
			P1_START_TIMEOUT_MS);
		(void)eng_baseline_wait(pid);
		return -ETIMEDOUT;
	}
	*ret_ms = (double)(t - t0) / 1e6;
	r = eng_baseline_wait(pid);
	if (r < 0) {
		fprintf(stderr, "bench_p1: baseline failed\n");
		return r;
	}
	*ret_main_ms = (double)(t - eng_baseline_t0(e)) / 1e6;
	r = eng_baseline_wait(eng_baseline_spawn(e, 1, 1, true));
	if (r < 0 || !eng_baseline_empty(e)) {
		fprintf(stderr, "bench_p1: baseline: its VM was not removed\n");
		return -EIO;
	}
	return 0;
}

static void p1_row(const char *name, const double *v, size_t n)
{
	struct eng_stats s;

	eng_stats(v, n, &s);
	printf("%-13s %4zu %10.2f %10.2f %10.2f %10.2f\n", name, n, s.median, s.p90, s.min, s.max);
}

int main(int argc, char **argv)
{
	unsigned rounds = 15, warmup = 1;
	_cleanup_free_ double *d = NULL, *b = NULL, *bm = NULL;
	struct eng_stats sd, sb, sbm;
	size_t nd = 0, nb = 0;
	struct eng e;
	int c, r = 0;

	while ((c = getopt(argc, argv, "r:w:h")) != -1) {
		switch (c) {
		case 'r':
			rounds = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'w':
			warmup = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(c == 'h' ? stdout : stderr,
				"usage: bench_p1 [-r ROUNDS] [-w WARMUP]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (rounds == 0)
		rounds = 1;
	eng_setup(&e, argv[0]);
	if (eng_daemon_start(&e) < 0) {
		fprintf(stderr, "bench_p1: bangerd did not start\n");
		e.failed = true;
		(void)eng_teardown(&e);
		return 1;
	}
	d = xcalloc(rounds, sizeof(*d));
	b = xcalloc(rounds, sizeof(*b));
	bm = xcalloc(rounds, sizeof(*bm));
	printf("bench_p1: spec renamed in -> InstanceStart; %u rounds (+%u warm-up), bridge %s, "
	       "work dir %s\n",
	       rounds, warmup, e.bridge, e.work);
	for (unsigned i = 0; i < warmup + rounds && r == 0; i++) {
		bool daemon_first = i % 2 == 0, counted = i >= warmup;
		double ms_d = 0, ms_b = 0, ms_bm = 0;

		for (int k = 0; k < 2 && r == 0; k++) {
			if ((k == 0) == daemon_first)
				r = p1_daemon_round(&e, i, &ms_d);
			else
				r = p1_baseline_round(&e, &ms_b, &ms_bm);
		}
		if (r == 0 && counted) {
			d[nd++] = ms_d;
			bm[nb] = ms_bm;
			b[nb++] = ms_b;
		}
		if (r == 0)
			fprintf(stderr, "round %u%s: bangerd %.2f ms, baseline %.2f ms\n", i,
				counted ? "" : " (warm-up)", ms_d, ms_b);
	}
	if (r < 0)
		e.failed = true;
	if (nd > 0) {
		printf("%-13s %4s %10s %10s %10s %10s\n", "variant", "n", "median_ms", "p90_ms",
		       "min_ms", "max_ms");
		p1_row("bangerd", d, nd);
		p1_row("baseline", b, nb);
		p1_row("baseline-main", bm, nb);
		eng_stats(d, nd, &sd);
		eng_stats(b, nb, &sb);
		eng_stats(bm, nb, &sbm);
		printf("ratio of medians (bangerd / baseline): %.2f   [targets: ratio <= 1.3, "
		       "bangerd p50 <= 15 ms]\n",
		       sb.median > 0 ? sd.median / sb.median : 0);
		printf("ratio of medians (bangerd / baseline-main): %.2f\n",
		       sbm.median > 0 ? sd.median / sbm.median : 0);
	}
	if (eng_teardown(&e) < 0)
		r = -1;
	return r < 0 ? 1 : 0;
}
