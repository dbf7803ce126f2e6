/*
 * engine.h - what the engine benchmarks (bench_p1, bench_p2) share: a bench
 * environment of their own (a temp dir with a spec dir, a state dir and tiny
 * image files; bangerd's bridge on 172.28.10.0/24 and the baseline's on
 * 172.28.11.0/24, both named "bgb<6 hex>"), one bangerd driving the fake
 * Firecracker (fakefc), the baseline program, the datagrams fakefc sends on
 * InstanceStart, and a teardown that removes everything and says what leaked.
 */
#ifndef BANGER_BENCH_ENGINE_H
#define BANGER_BENCH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct eng {
	char sfx[7];	   /* random, in every name */
	char bridge[16];   /* bangerd's: bgb<sfx> */
	char bbridge[16];  /* the baseline's: bgb<sfx>b */
	char id_prefix[5]; /* the baseline's VM ids: b<3 hex of sfx> */
	char *bin_dir;	   /* where fakefc and baseline are (this program's dir) */
	char *bangerd, *banger, *fakefc, *baseline;
	char *work, *img, *kernel, *image, *specs, *staging, *state, *base, *log;
	char *notify_path;
	int notify_fd;
	pid_t daemon_pid;
	bool failed; /* keep the work dir for inspection */
};

/* Nanoseconds of CLOCK_MONOTONIC (the clock fakefc's datagrams use). */
int64_t eng_now_ns(void);

/*
 * Make the environment (exits 77 when not root, 1 on failure). argv0 locates
 * the binaries: fakefc and baseline beside it, bangerd and banger one dir up.
 */
void eng_setup(struct eng *e, const char *argv0);

/* Start bangerd on the environment and wait until it is ready. */
int eng_daemon_start(struct eng *e);

/* The text of a VM spec named 'name' for the bench's image, with the fake VMM. */
char *eng_spec_text(const struct eng *e, const char *name);

/* Write the spec of 'name' into the staging dir (same filesystem as the spec dir). */
int eng_spec_stage(const struct eng *e, const char *name);

/* rename() the staged spec of 'name' into the spec dir. */
int eng_spec_publish(const struct eng *e, const char *name);

/* unlink() the spec of 'name' from the spec dir. */
int eng_spec_remove(const struct eng *e, const char *name);

/*
 * One InstanceStart report: waits at most timeout_ms. Returns 1 with the id
 * (up to 63 chars) and time, 0 on timeout.
 */
int eng_recv_start(struct eng *e, int timeout_ms, char ret_id[64], int64_t *ret_ns);

/* Drop the reports already queued. */
void eng_drain(struct eng *e);

/* Live fakefc processes serving a socket under the bench's work dir. */
unsigned eng_fakefc_count(const struct eng *e);

/* Ports (taps) of a bridge; 0 when the bridge is gone. */
unsigned eng_bridge_ports(const char *bridge);

/* Entries under <state>/vms. */
unsigned eng_vm_dirs(const struct eng *e);

/* VMs in 'banger status -o json' (-1 when it failed). */
int eng_status_count(const struct eng *e);

/*
 * Wait until bangerd has nothing left (no fakefc, no tap on its bridge, no VM
 * dir, no VM row), at most timeout_ms. Returns 0 with *ret_ns the time seen,
 * -ETIMEDOUT otherwise.
 */
int eng_wait_daemon_empty(struct eng *e, int timeout_ms, int64_t *ret_ns);

/*
 * Run the baseline: n VMs with 'jobs' workers, create, or delete when 'del'.
 * Returns its pid (waited by eng_baseline_wait), or -1.
 */
pid_t eng_baseline_spawn(struct eng *e, unsigned n, unsigned jobs, bool del);
int eng_baseline_wait(pid_t pid);

/* When the last baseline run entered main() (CLOCK_MONOTONIC ns; 0 when unknown). */
int64_t eng_baseline_t0(const struct eng *e);

/* Nothing of the baseline is left (no fakefc, no tap on its bridge, no VM dir). */
bool eng_baseline_empty(const struct eng *e);

/* Reap children that became ours (orphaned fakefc processes: we are a subreaper). */
void eng_reap(void);

/*
 * Remove everything: specs, VMs (through bangerd, bounded), bangerd, stray
 * fakefc processes of the work dir, bridges, nftables tables, the work dir.
 * Returns 0 when nothing leaked; prints what did, and bangerd's log path when
 * anything failed.
 */
int eng_teardown(struct eng *e);

/* Sorted copy statistics of v[n] (ms). */
struct eng_stats {
	double median, p90, min, max;
};
void eng_stats(const double *v, size_t n, struct eng_stats *ret);

#endif
