/*
 * bench_speccache.c - what loading the spec directory costs bangerd per pass:
 * a cold spec_load_path() + spec_set_finish() + spec_hash() of every spec (what
 * every pass did before the spec cache), against the spec cache's full load
 * (the periodic resync: every file read and hashed, none parsed again) and a
 * hinted load after one file changed (the inotify pass: one file read and
 * parsed). Each round changes one file (same size, so only the bytes differ)
 * and then runs the variants interleaved, forward on even rounds and reversed
 * on odd ones; each variant is timed in wall and CPU time. Files are in a temp
 * dir (page cache hot for every variant).
 *
 *   bench_speccache [-n FILES] [-r ROUNDS] [-o cold|full|hinted]
 *
 * -o runs that variant alone (to profile it: perf record -g bench_speccache -o full).
 *
 * Exit status: 0, 1 a failure, 2 usage. Needs no root.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "spec/cache.h"
#include "spec/spec.h"
#include "tests/lib/testutil.h"

enum variant {
	V_COLD,
	V_FULL,
	V_HINTED,
	V_MAX
};

static const char *const VARIANT_NAMES[V_MAX] = { "cold load", "cache: full", "cache: hinted" };

static double now_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static char *spec_text(unsigned i, unsigned version)
{
	return xasprintf("apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: vm-%05u\n"
			 "  labels: {team: infra, tier: web}\nspec:\n  vcpus: 2\n"
			 "  memoryMiB: %u\n  kernel: {path: /var/lib/banger/vmlinux, args: "
			 "\"console=ttyS0\"}\n  rootfs: {image: /var/lib/banger/rootfs.ext4, "
			 "sizeMiB: 4096}\n  network:\n    ports:\n    - {hostPort: %u, "
			 "guestPort: 80}\n  restartPolicy: always\n",
			 i, 256 + 256 * (version % 3), 20000 + i);
}

/* Load the dir as the variant does, with every spec's hash, as daemon_pass needs. */
static int run(enum variant v, const char *dir, struct spec_cache *c, const char *changed,
	       size_t *ret_specs)
{
	struct spec_set set;
	char hash[SPEC_HASH_LEN + 1];

	spec_set_init(&set);
	if (v == V_COLD)
		(void)spec_load_path(&set, dir);
	else
		(void)spec_cache_load(c, &changed, v == V_HINTED && changed ? 1 : 0, v == V_FULL,
				      &set);
	(void)spec_set_finish(&set);
	for (size_t i = 0; i < set.n_specs; i++)
		if (!set.specs[i]->hash[0])
			spec_hash(set.specs[i], hash);
	*ret_specs = set.n_specs;
	spec_set_release(&set);
	return 0;
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), dbl_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "files", required_argument, NULL, 'n' },
					      { "rounds", required_argument, NULL, 'r' },
					      { "only", required_argument, NULL, 'o' },
					      { "help", no_argument, NULL, 'h' },
					      { 0 } };
	unsigned n_files = 1000, rounds = 21;
	int only = -1;
	_cleanup_free_ char *dir = NULL;
	struct spec_cache *full, *hinted;
	double *wall[V_MAX], *cpu[V_MAX];
	struct utsname un;
	int opt;

	while ((opt = getopt_long(argc, argv, "n:r:o:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			only = strcmp(optarg, "cold") == 0     ? V_COLD
			       : strcmp(optarg, "full") == 0   ? V_FULL
			       : strcmp(optarg, "hinted") == 0 ? V_HINTED
							       : -2;
			if (only == -2) {
				fprintf(stderr, "bench_speccache: -o cold|full|hinted\n");
				return 2;
			}
			break;
		case 'n':
			n_files = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			rounds = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr,
				"usage: bench_speccache [-n FILES] [-r ROUNDS] [-o cold|full|hinted]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (n_files == 0 || n_files > SPEC_DIR_FILES_MAX || rounds == 0) {
		fprintf(stderr, "bench_speccache: -n 1..%d, -r 1..\n", SPEC_DIR_FILES_MAX);
		return 2;
	}
	dir = test_tmpdir("bg-bench-speccache");
	for (unsigned i = 0; i < n_files; i++) {
		_cleanup_free_ char *name = xasprintf("vm-%05u.yaml", i);
		_cleanup_free_ char *p = fs_path_join(dir, name);
		_cleanup_free_ char *text = spec_text(i, 0);

		test_write_file(p, text);
	}
	full = spec_cache_new(dir);
	hinted = spec_cache_new(dir);
	/* Warm both caches (their first load is a cold one). */
	{
		size_t n;

		run(V_FULL, dir, full, NULL, &n);
		run(V_HINTED, dir, hinted, NULL, &n);
		if (n != n_files) {
			fprintf(stderr, "bench_speccache: %zu specs loaded, %u expected\n", n,
				n_files);
			return 1;
		}
	}
	for (int v = 0; v < V_MAX; v++) {
		wall[v] = xcalloc(rounds, sizeof(double));
		cpu[v] = xcalloc(rounds, sizeof(double));
	}
	for (unsigned r = 0; r < rounds; r++) {
		unsigned which = (unsigned)rand() % n_files;
		_cleanup_free_ char *name = xasprintf("vm-%05u.yaml", which);
		_cleanup_free_ char *p = fs_path_join(dir, name);
		_cleanup_free_ char *text = spec_text(which, r + 1);

		/* One file changed since the last pass, as an inotify pass sees it. */
		test_write_file(p, text);
		for (int k = 0; k < V_MAX; k++) {
			enum variant v = r % 2 ? V_MAX - 1 - k : k;
			double w0 = now_ms(CLOCK_MONOTONIC), c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
			size_t n;

			if (only >= 0 && (int)v != only)
				continue;
			run(v, dir, v == V_FULL ? full : hinted, p, &n);
			wall[v][r] = now_ms(CLOCK_MONOTONIC) - w0;
			cpu[v][r] = now_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
			if (n != n_files) {
				fprintf(stderr, "bench_speccache: %s loaded %zu specs, not %u\n",
					VARIANT_NAMES[v], n, n_files);
				return 1;
			}
		}
	}
	uname(&un);
	printf("spec directory load, %u spec files, %u rounds, %ld CPUs, %s %s\n", n_files, rounds,
	       sysconf(_SC_NPROCESSORS_ONLN), un.sysname, un.release);
	/* CPU time is the figure to compare: wall time also counts other load on the machine. */
	printf("%-15s %12s %12s %12s\n", "variant", "wall_p50_ms", "cpu_p50_ms", "cpu vs cold");
	{
		double cold = only < 0 || only == V_COLD ? median(cpu[V_COLD], rounds) : 0;

		for (int v = 0; v < V_MAX; v++) {
			if (only >= 0 && v != only)
				continue;
			double w = median(wall[v], rounds), cp = median(cpu[v], rounds);

			if (cold > 0)
				printf("%-15s %12.3f %12.3f %11.3fx\n", VARIANT_NAMES[v], w, cp,
				       cp / cold);
			else
				printf("%-15s %12.3f %12.3f %12s\n", VARIANT_NAMES[v], w, cp, "-");
		}
	}
	printf("parses: full cache %lu, hinted cache %lu (%u files + one per round)\n",
	       spec_cache_parses(full), spec_cache_parses(hinted), n_files);
	spec_cache_free(full);
	spec_cache_free(hinted);
	for (int v = 0; v < V_MAX; v++) {
		free(wall[v]);
		free(cpu[v]);
	}
	test_rmtree(dir);
	return 0;
}
