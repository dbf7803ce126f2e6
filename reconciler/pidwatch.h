/*
 * pidwatch.h - a pidfd in an epoll set for every alive VMM, however many.
 *
 * A VMM that ends makes its pidfd readable, which wakes bangerd's loop at
 * once, also for a VMM adopted from an earlier daemon (not our child, so no
 * SIGCHLD). The set is kept sorted by (pid, start time): bringing it in line
 * with the list of alive VMMs after a pass is one sort and one merge,
 * O(n log n), with no cap on n but the fd limit (bangerd raises its soft
 * RLIMIT_NOFILE to the hard one).
 */
#ifndef BANGER_RECONCILER_PIDWATCH_H
#define BANGER_RECONCILER_PIDWATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A process by its identity: pid and start time (clock ticks after boot, /proc/PID/stat). */
struct pidwatch_proc {
	pid_t pid;
	uint64_t start_time;
};

struct pidwatch;

/*
 * An empty set whose pidfds go into epoll set 'ep', each with
 * epoll_data.u64 = tag (the caller's "a VMM ended" tag). Never NULL.
 */
struct pidwatch *pidwatch_new(int ep, uint64_t tag);
/* Close every pidfd (removing it from the epoll set) and free. NULL is fine. */
void pidwatch_free(struct pidwatch *w);

/*
 * Watch exactly procs[n] (any order; duplicates count once): pidfds of
 * processes no longer listed are closed, listed ones not yet watched get
 * one (a process that is gone, or whose start time differs, gets none: it
 * is not that VMM). Returns how many are watched; one that cannot get a
 * pidfd (the fd limit) is left out, and the next sync tries again.
 */
size_t pidwatch_sync(struct pidwatch *w, const struct pidwatch_proc *procs, size_t n);

/* How many processes are watched. */
size_t pidwatch_count(const struct pidwatch *w);

#endif
