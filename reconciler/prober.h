/*
 * prober.h - readiness probes beside the loop: the pass never waits on a guest.
 *
 * A probe of a Starting VM has two halves:
 * - the TCP connect to its port 22 is a non-blocking socket in the prober's
 *   own epoll set, so any number of guests are connected to at once, each
 *   with its own deadline;
 * - once connected, the SSH handshake (ssh_probe_fd(), which blocks and forks
 *   its own jailed libssh2 child) runs in a worker process forked for that
 *   probe, at most PROBER_MAX_WORKERS at a time. The worker writes one result
 *   record to a pipe and exits; a worker past its deadline is killed.
 * The prober writes nothing durable: a result is an input of the next pass,
 * which is what records a VM Running (daemon.c). The loop puts prober_fd()
 * in its epoll set and calls prober_dispatch() when it is readable.
 *
 * Workers are children of the daemon: the loop's SIGCHLD reaping hands their
 * pids to prober_reaped() first, so they are never taken for VMMs.
 */
#ifndef BANGER_RECONCILER_PROBER_H
#define BANGER_RECONCILER_PROBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define PROBER_MAX_WORKERS 16

enum probe_outcome {
	PROBE_READY,	    /* the guest answered SSH with banger's key */
	PROBE_NOT_READY,    /* port closed, timed out, handshake or auth failed */
	PROBE_KEY_REJECTED, /* the host key is not the pinned one: possible MITM */
};

struct probe_result {
	enum probe_outcome outcome;
	char msg[256]; /* why, for NOT_READY and KEY_REJECTED */
};

struct prober_config {
	const char *known_hosts; /* banger's known_hosts */
	const char *identity;	 /* banger's client key */
	int port;		 /* 22; tests use another */
	int connect_ms;		 /* TCP connect deadline */
	int ssh_ms;		 /* handshake deadline once connected */
	int interval_ms;	 /* from the end of one probe of a VM to its next */
};

/* What to probe: copied, so it need not outlive the call. */
struct probe_request {
	const char *id;	  /* VM id */
	const char *name; /* VM name: its host key is pinned as <name>.vm too */
	const char *ip;
	const char *user;
};

struct prober;

/* cfg strings are copied. Returns 0 or -errno. */
int prober_new(const struct prober_config *cfg, struct prober **ret, struct bg_err *err);
/* Close everything and kill (SIGKILL) and reap the workers still running. NULL is fine. */
void prober_free(struct prober *p);
int prober_fd(const struct prober *p);

/*
 * Handle finished connects, worker results and deadlines. Returns true when
 * a result a pass must act on is waiting (Ready, a changed key): the loop
 * then runs a pass. "Not ready yet" results wait for the pass that starts
 * the next probe (prober_next_due()), so N booting guests do not make N
 * passes a second.
 */
bool prober_dispatch(struct prober *p);

/* ms until the earliest next probe of an idle VM is due (0: now), -1: none. */
int64_t prober_next_due(const struct prober *p);

/*
 * Ask for req->id to be probed. Starts a probe when none is in flight and
 * interval_ms has passed since the last one ended. Returns 0 when a probe is
 * in flight (its result wakes the loop), else the ms until the next one is
 * due. The VM stays known to the prober until prober_sweep().
 */
int64_t prober_want(struct prober *p, const struct probe_request *req);

/*
 * Is a probe of id due: -1 in flight, 0 due now (or never probed), else the
 * ms until it is. Keeps id known until the next prober_sweep().
 */
int64_t prober_due(struct prober *p, const char *id);

/* Take the result of req's last probe, if one came in since the last take. */
bool prober_take(struct prober *p, const char *id, struct probe_result *ret);

/*
 * Forget every VM not asked about (prober_due(), prober_want()) since the last sweep
 * (it is not Starting any more): its probe, if in flight, is cancelled.
 */
void prober_sweep(struct prober *p);

/* pid was reaped by the loop: true when it was one of the prober's workers. */
bool prober_reaped(struct prober *p, pid_t pid, int wait_status);

/* Probes in flight, for logs and tests. */
size_t prober_in_flight(const struct prober *p);

#endif
