/*
 * prober.c - readiness probes beside the loop; see prober.h.
 *
 * Every VM asked for has an entry, sorted by id. An entry is IDLE (no probe
 * in flight), CONNECTING (a non-blocking socket in the epoll set),
 * CONNECTED (waiting for a worker slot) or WORKING (a worker process owns
 * the connection; its result pipe is in the epoll set). One timerfd, armed
 * for the earliest deadline, bounds all three busy states.
 */
#include "reconciler/prober.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/str.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/guest/ssh.h"
#include "reconciler/vm.h"
#include "spec/spec.h"

/* A worker gets this long beyond the handshake deadline before it is killed
 * (ssh_probe_fd() kills its own child at the deadline + 1 s). */
#define WORKER_SLACK_MS 2000

enum entry_state {
	E_IDLE,
	E_CONNECTING,
	E_CONNECTED,
	E_WORKING
};

struct entry {
	char id[VM_ID_LEN + 1];
	char *name, *ip, *user;
	enum entry_state state;
	int fd;		  /* CONNECTING, CONNECTED: the socket */
	int pipe_fd;	  /* WORKING: the worker's result */
	pid_t pid;	  /* WORKING: the worker */
	int64_t deadline; /* monotonic ms, busy states */
	int64_t last_end; /* monotonic ms the last probe ended, 0: never */
	bool has_result;
	bool seen; /* asked for since the last sweep */
	struct probe_result result;
};

struct prober {
	struct prober_config cfg;
	int ep, timer_fd;
	struct entry **entries; /* sorted by id */
	size_t n_entries;
	pid_t *workers; /* forked and not reaped yet */
	size_t n_workers;
};

/* ---- entries ---------------------------------------------------------------------- */

static size_t find_slot(const struct prober *p, const char *id, bool *found)
{
	size_t lo = 0, hi = p->n_entries;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(p->entries[mid]->id, id);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static struct entry *find(const struct prober *p, const char *id)
{
	bool found;
	size_t i = find_slot(p, id, &found);

	return found ? p->entries[i] : NULL;
}

static void set_str(char **dst, const char *src)
{
	if (str_eq(*dst, src))
		return;
	free(*dst);
	*dst = src ? xstrdup(src) : NULL;
}

/* Out of the epoll set first: a worker forked earlier may still hold a copy of the file. */
static void drop_fd(struct prober *p, int *fd)
{
	if (*fd >= 0) {
		(void)epoll_ctl(p->ep, EPOLL_CTL_DEL, *fd, NULL);
		(void)close(*fd);
	}
	*fd = -1;
}

static bool worker_outstanding(const struct prober *p, pid_t pid)
{
	for (size_t i = 0; i < p->n_workers; i++)
		if (p->workers[i] == pid)
			return true;
	return false;
}

/* Stop whatever is in flight; the entry becomes IDLE without a result. */
static void cancel(struct prober *p, struct entry *e)
{
	drop_fd(p, &e->fd);
	drop_fd(p, &e->pipe_fd);
	/* Only a worker not reaped yet: a reaped pid may belong to anyone now. */
	if (e->state == E_WORKING && worker_outstanding(p, e->pid))
		(void)kill(e->pid, SIGKILL);
	e->pid = 0;
	e->state = E_IDLE;
}

static void finish(struct prober *p, struct entry *e, enum probe_outcome o, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void finish(struct prober *p, struct entry *e, enum probe_outcome o, const char *fmt, ...)
{
	va_list ap;

	cancel(p, e);
	e->result.outcome = o;
	va_start(ap, fmt);
	vsnprintf(e->result.msg, sizeof(e->result.msg), fmt, ap);
	va_end(ap);
	e->has_result = true;
	e->last_end = now_mono_ms();
}

static void entry_free(struct prober *p, struct entry *e)
{
	cancel(p, e);
	free(e->name);
	free(e->ip);
	free(e->user);
	free(e);
}

/* ---- the two halves of a probe ------------------------------------------------------ */

static void start_connect(struct prober *p, struct entry *e)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p->cfg.port) };
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = e };
	int fd;

	if (inet_pton(AF_INET, e->ip, &sa.sin_addr) != 1) {
		finish(p, e, PROBE_NOT_READY, "'%s' is not an IPv4 address", e->ip);
		return;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		finish(p, e, PROBE_NOT_READY, "socket: %s", strerror(errno));
		return;
	}
	e->fd = fd;
	e->deadline = now_mono_ms() + p->cfg.connect_ms;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		e->state = E_CONNECTED;
		return;
	}
	if (errno != EINPROGRESS) {
		finish(p, e, PROBE_NOT_READY, "connect %s:%d: %s", e->ip, p->cfg.port,
		       strerror(errno));
		return;
	}
	if (epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		finish(p, e, PROBE_NOT_READY, "epoll_ctl: %s", strerror(errno));
		return;
	}
	e->state = E_CONNECTING;
}

static void connect_done(struct prober *p, struct entry *e)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr) {
		finish(p, e, PROBE_NOT_READY, "connect %s:%d: %s", e->ip, p->cfg.port,
		       strerror(soerr));
		return;
	}
	(void)epoll_ctl(p->ep, EPOLL_CTL_DEL, e->fd, NULL);
	e->state = E_CONNECTED;
	/* All workers may be busy with guests that never answer: wait out one round. */
	e->deadline = now_mono_ms() + 2 * (int64_t)p->cfg.ssh_ms + WORKER_SLACK_MS;
}

/*
 * In the worker: keep stdio, the guest connection and the result pipe, and
 * nothing else of the daemon's (other guests' sockets and pipes, epoll sets,
 * pidfds, the daemon's lock), and die with the daemon.
 */
static void worker_isolate(int fd, int out, pid_t parent)
{
	int lo = fd < out ? fd : out, hi = fd < out ? out : fd;

	if (lo > 3)
		(void)close_range(3, (unsigned)lo - 1, 0);
	if (hi > lo + 1)
		(void)close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	(void)close_range((unsigned)hi + 1, ~0U, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
		_exit(1);
}

/* The worker process: one handshake, one result record, exit. Never returns. */
static void worker_run(const struct prober *p, const struct entry *e, int fd, int out)
{
	char dns[SPEC_NAME_MAX + 4];
	const char *pins[] = { e->ip, dns };
	struct ssh_target t = {
		.host = e->ip,
		.port = p->cfg.port,
		.user = e->user ? e->user : "root",
		.known_hosts = p->cfg.known_hosts,
		.pin_names = pins,
		.n_pin_names = 2,
		.identity = p->cfg.identity,
		.connect_timeout_ms = p->cfg.ssh_ms,
	};
	struct probe_result res = { .outcome = PROBE_READY };
	struct bg_err err = { 0 };
	int r;

	snprintf(dns, sizeof(dns), "%s.vm", e->name ? e->name : "");
	r = ssh_probe_fd(&t, fd, &err);
	if (r < 0) {
		res.outcome = r == -EKEYREJECTED ? PROBE_KEY_REJECTED : PROBE_NOT_READY;
		/* Cut at the record's size: the daemon logs it, nothing parses it. */
		memcpy(res.msg, err.msg, sizeof(res.msg) - 1);
	}
	_exit(write(out, &res, sizeof(res)) == (ssize_t)sizeof(res) ? 0 : 1);
}

static void start_worker(struct prober *p, struct entry *e)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = e };
	pid_t parent = getpid(), pid;
	int pfd[2];
	int fl = fcntl(e->fd, F_GETFL);

	/* The handshake (libssh2 in a jailed child) runs on a blocking socket. */
	if (fl >= 0)
		(void)fcntl(e->fd, F_SETFL, fl & ~O_NONBLOCK);
	if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0) {
		finish(p, e, PROBE_NOT_READY, "pipe: %s", strerror(errno));
		return;
	}
	pid = fork();
	if (pid < 0) {
		(void)close(pfd[0]);
		(void)close(pfd[1]);
		finish(p, e, PROBE_NOT_READY, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		worker_isolate(e->fd, pfd[1], parent);
		worker_run(p, e, e->fd, pfd[1]);
	}
	(void)close(pfd[1]);
	drop_fd(p, &e->fd); /* the worker owns the connection now */
	p->workers = xreallocarray(p->workers, p->n_workers + 1, sizeof(*p->workers));
	p->workers[p->n_workers++] = pid;
	e->pid = pid;
	e->pipe_fd = pfd[0];
	e->state = E_WORKING;
	e->deadline = now_mono_ms() + p->cfg.ssh_ms + WORKER_SLACK_MS;
	if (epoll_ctl(p->ep, EPOLL_CTL_ADD, e->pipe_fd, &ev) < 0)
		finish(p, e, PROBE_NOT_READY, "epoll_ctl: %s", strerror(errno));
}

static void worker_done(struct prober *p, struct entry *e)
{
	struct probe_result res;
	ssize_t n = read(e->pipe_fd, &res, sizeof(res));

	if (n < 0 && errno == EAGAIN)
		return;
	if (n != (ssize_t)sizeof(res)) {
		finish(p, e, PROBE_NOT_READY, "the probe worker ended without a result");
		return;
	}
	res.msg[sizeof(res.msg) - 1] = '\0';
	/* The worker has written its last byte and exits; the loop reaps it. */
	e->state = E_IDLE;
	e->pid = 0;
	finish(p, e, res.outcome, "%s", res.msg);
}

/* ---- the loop's side ------------------------------------------------------------------ */

static size_t busy_workers(const struct prober *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n_entries; i++)
		n += p->entries[i]->state == E_WORKING;
	return n;
}

static void check_deadlines(struct prober *p, int64_t now)
{
	for (size_t i = 0; i < p->n_entries; i++) {
		struct entry *e = p->entries[i];

		if (e->state == E_IDLE || now < e->deadline)
			continue;
		if (e->state == E_CONNECTING)
			finish(p, e, PROBE_NOT_READY, "port %d: no answer within %d ms",
			       p->cfg.port, p->cfg.connect_ms);
		else if (e->state == E_CONNECTED)
			finish(p, e, PROBE_NOT_READY, "no probe worker free within %d ms",
			       2 * p->cfg.ssh_ms + WORKER_SLACK_MS);
		else
			finish(p, e, PROBE_NOT_READY, "SSH handshake: no answer within %d ms",
			       p->cfg.ssh_ms);
	}
}

static void start_workers(struct prober *p)
{
	size_t busy = busy_workers(p);

	for (size_t i = 0; i < p->n_entries && busy < PROBER_MAX_WORKERS; i++) {
		if (p->entries[i]->state != E_CONNECTED)
			continue;
		start_worker(p, p->entries[i]);
		busy += p->entries[i]->state == E_WORKING;
	}
}

static void arm(struct prober *p, int64_t now)
{
	struct itimerspec its = { 0 };
	int64_t first = 0;

	for (size_t i = 0; i < p->n_entries; i++) {
		const struct entry *e = p->entries[i];

		if (e->state != E_IDLE && (first == 0 || e->deadline < first))
			first = e->deadline;
	}
	if (first) {
		int64_t left = first > now ? first - now : 1;

		its.it_value.tv_sec = left / 1000;
		its.it_value.tv_nsec = (left % 1000) * 1000000;
	}
	(void)timerfd_settime(p->timer_fd, 0, &its, NULL);
}

/* A result a pass must act on: Ready, or a changed key. "Not yet" waits for the next due pass. */
static bool any_news(const struct prober *p)
{
	for (size_t i = 0; i < p->n_entries; i++)
		if (p->entries[i]->has_result && p->entries[i]->result.outcome != PROBE_NOT_READY)
			return true;
	return false;
}

int64_t prober_next_due(const struct prober *p)
{
	int64_t now = now_mono_ms(), best = -1;

	for (size_t i = 0; i < p->n_entries; i++) {
		const struct entry *e = p->entries[i];
		int64_t due;

		if (e->state != E_IDLE || !e->last_end)
			continue;
		due = e->last_end + p->cfg.interval_ms - now;
		if (due < 0)
			due = 0;
		if (best < 0 || due < best)
			best = due;
	}
	return best;
}

bool prober_dispatch(struct prober *p)
{
	struct epoll_event evs[64];
	int n;

	n = epoll_wait(p->ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 0);
	for (int i = 0; i < n; i++) {
		struct entry *e = evs[i].data.ptr;

		if (!e) {
			uint64_t ticks;

			(void)!read(p->timer_fd, &ticks, sizeof(ticks));
		} else if (e->state == E_CONNECTING) {
			connect_done(p, e);
		} else if (e->state == E_WORKING) {
			worker_done(p, e);
		}
	}
	check_deadlines(p, now_mono_ms());
	start_workers(p);
	arm(p, now_mono_ms());
	return any_news(p);
}

int64_t prober_want(struct prober *p, const struct probe_request *req)
{
	bool found;
	size_t i = find_slot(p, req->id, &found);
	struct entry *e;
	int64_t now = now_mono_ms();

	if (!found) {
		e = xcalloc(1, sizeof(*e));
		snprintf(e->id, sizeof(e->id), "%s", req->id);
		e->fd = e->pipe_fd = -1;
		p->entries = xreallocarray(p->entries, p->n_entries + 1, sizeof(*p->entries));
		memmove(p->entries + i + 1, p->entries + i,
			(p->n_entries - i) * sizeof(*p->entries));
		p->entries[i] = e;
		p->n_entries++;
	}
	e = p->entries[i];
	e->seen = true;
	if (e->state != E_IDLE)
		return 0;
	if (e->last_end && now - e->last_end < p->cfg.interval_ms)
		return p->cfg.interval_ms - (now - e->last_end);
	set_str(&e->name, req->name);
	set_str(&e->ip, req->ip);
	set_str(&e->user, req->user);
	start_connect(p, e);
	if (e->state == E_CONNECTED)
		start_workers(p);
	arm(p, now);
	/* A connect that failed at once has its result in now: the next pass takes it. */
	return e->state == E_IDLE ? p->cfg.interval_ms : 0;
}

int64_t prober_due(struct prober *p, const char *id)
{
	struct entry *e = find(p, id);
	int64_t since;

	if (!e)
		return 0;
	e->seen = true;
	if (e->state != E_IDLE)
		return -1;
	since = now_mono_ms() - e->last_end;
	if (!e->last_end || since >= p->cfg.interval_ms)
		return 0;
	return p->cfg.interval_ms - since;
}

bool prober_take(struct prober *p, const char *id, struct probe_result *ret)
{
	struct entry *e = find(p, id);

	if (!e || !e->has_result)
		return false;
	*ret = e->result;
	e->has_result = false;
	return true;
}

void prober_sweep(struct prober *p)
{
	size_t k = 0;

	for (size_t i = 0; i < p->n_entries; i++) {
		struct entry *e = p->entries[i];

		if (!e->seen) {
			entry_free(p, e);
			continue;
		}
		e->seen = false;
		p->entries[k++] = e;
	}
	p->n_entries = k;
	arm(p, now_mono_ms());
}

bool prober_reaped(struct prober *p, pid_t pid, int wait_status)
{
	for (size_t i = 0; i < p->n_workers; i++) {
		if (p->workers[i] != pid)
			continue;
		p->workers[i] = p->workers[--p->n_workers];
		if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0)
			log_debug("probe worker %d ended with wait status %#x", (int)pid,
				  (unsigned)wait_status);
		return true;
	}
	return false;
}

size_t prober_in_flight(const struct prober *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n_entries; i++)
		n += p->entries[i]->state != E_IDLE;
	return n;
}

int prober_fd(const struct prober *p)
{
	return p->ep;
}

int prober_new(const struct prober_config *cfg, struct prober **ret, struct bg_err *err)
{
	struct prober *p = xcalloc(1, sizeof(*p));
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	p->cfg = *cfg;
	p->cfg.known_hosts = xstrdup(cfg->known_hosts);
	p->cfg.identity = cfg->identity ? xstrdup(cfg->identity) : NULL;
	if (p->cfg.port <= 0)
		p->cfg.port = 22;
	p->ep = epoll_create1(EPOLL_CLOEXEC);
	p->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (p->ep < 0 || p->timer_fd < 0 || epoll_ctl(p->ep, EPOLL_CTL_ADD, p->timer_fd, &ev) < 0) {
		int e = errno;

		prober_free(p);
		return bg_error(err, e, "prober setup");
	}
	*ret = p;
	return 0;
}

void prober_free(struct prober *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_entries; i++)
		entry_free(p, p->entries[i]);
	free(p->entries);
	/* Killed above or finishing on their own: wait for them, they are ours. */
	for (size_t i = 0; i < p->n_workers; i++) {
		(void)kill(p->workers[i], SIGKILL);
		while (waitpid(p->workers[i], NULL, 0) < 0 && errno == EINTR)
			;
	}
	free(p->workers);
	if (p->timer_fd >= 0)
		close(p->timer_fd);
	if (p->ep >= 0)
		close(p->ep);
	free((char *)p->cfg.known_hosts);
	free((char *)p->cfg.identity);
	free(p);
}
