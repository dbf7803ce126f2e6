/*
 * test_prober.c - prober.h against real sockets on 127.0.0.1 and real worker
 * processes: many guests that accept TCP but never speak SSH are probed at
 * once (the batch ends within about one handshake deadline, not one per
 * guest), a closed port is NOT_READY at once, each probe keeps to its own
 * deadline, results wait until taken, a swept VM's worker is killed, and
 * worker pids are the prober's to reap, never the VMM bookkeeping's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/prober.h"
#include "tests/lib/testutil.h"

#define SSH_MS 600
#define N_SILENT 20

struct fx {
	char *dir;
	char *known_hosts;
	int listen_fd; /* accepts, never answers */
	int port;
	struct prober *p;
};

static int listen_any(int *ret_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 128), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*ret_port = ntohs(sa.sin_port);
	return fd;
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct prober_config cfg = { 0 };
	struct bg_err err = { 0 };

	f->dir = test_tmpdir("prober");
	f->known_hosts = fs_path_join(f->dir, "known_hosts");
	test_write_file(f->known_hosts, "");
	f->listen_fd = listen_any(&f->port);
	cfg.known_hosts = f->known_hosts;
	cfg.port = f->port;
	cfg.connect_ms = 1000;
	cfg.ssh_ms = SSH_MS;
	cfg.interval_ms = 5000;
	assert_int_equal(prober_new(&cfg, &f->p, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	prober_free(f->p);
	close(f->listen_fd);
	test_rmtree(f->dir);
	free(f->known_hosts);
	free(f->dir);
	free(f);
	return 0;
}

/* Reap what has exited, as the loop does on SIGCHLD; count workers the prober claimed. */
static size_t reap(struct prober *p, size_t *not_workers)
{
	size_t n = 0;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (prober_reaped(p, pid, status))
			n++;
		else
			(*not_workers)++;
	}
	return n;
}

/* Run the prober's side of the loop until every id has a result or the deadline. */
static size_t collect(struct fx *f, char ids[][16], size_t n, struct probe_result *res,
		      int timeout_ms)
{
	int64_t deadline = now_mono_ms() + timeout_ms;
	bool *done = xcalloc(n, sizeof(*done));
	size_t got = 0, stray = 0;

	while (got < n && now_mono_ms() < deadline) {
		struct pollfd pfd = { .fd = prober_fd(f->p), .events = POLLIN };

		(void)poll(&pfd, 1, 50);
		(void)prober_dispatch(f->p);
		for (size_t i = 0; i < n; i++)
			if (!done[i] && prober_take(f->p, ids[i], &res[i]))
				done[i] = true, got++;
		(void)reap(f->p, &stray);
	}
	assert_int_equal(stray, 0);
	free(done);
	return got;
}

static void test_silent_guests_probed_at_once(void **state)
{
	struct fx *f = *state;
	char ids[N_SILENT][16];
	struct probe_result res[N_SILENT];
	int64_t t0, took;

	t0 = now_mono_ms();
	for (size_t i = 0; i < N_SILENT; i++) {
		struct probe_request req = { ids[i], ids[i], "127.0.0.1", "root" };

		snprintf(ids[i], sizeof(ids[i]), "%08zx", i);
		assert_int_equal(prober_due(f->p, ids[i]), 0);
		assert_int_equal(prober_want(f->p, &req), 0);
		assert_int_equal(prober_due(f->p, ids[i]), -1); /* in flight */
	}
	assert_int_equal(prober_in_flight(f->p), N_SILENT);
	assert_int_equal(collect(f, ids, N_SILENT, res, 20000), N_SILENT);
	took = now_mono_ms() - t0;
	for (size_t i = 0; i < N_SILENT; i++)
		assert_int_equal(res[i].outcome, PROBE_NOT_READY);
	/*
	 * One at a time they would take N_SILENT x SSH_MS = 12 s; with at most
	 * PROBER_MAX_WORKERS handshakes at a time, two rounds of deadlines.
	 */
	print_message("%d silent guests probed in %lld ms (handshake deadline %d ms)\n", N_SILENT,
		      (long long)took, SSH_MS);
	assert_true(took < 4 * SSH_MS + 1500);
	assert_int_equal(prober_in_flight(f->p), 0);
	/* Not due again before the interval (5 s). */
	assert_true(prober_due(f->p, ids[0]) > 0);
}

static void test_closed_port_not_ready_at_once(void **state)
{
	struct fx *f = *state;
	char ids[1][16] = { "0000beef" };
	struct probe_result res;
	int closed_port, fd = listen_any(&closed_port);
	struct prober_config cfg = { .known_hosts = f->known_hosts,
				     .port = closed_port,
				     .connect_ms = 1000,
				     .ssh_ms = SSH_MS,
				     .interval_ms = 100 };
	struct probe_request req = { ids[0], "x", "127.0.0.1", "root" };
	struct bg_err err = { 0 };
	int64_t t0;

	close(fd); /* nothing listens there now */
	prober_free(f->p);
	assert_int_equal(prober_new(&cfg, &f->p, &err), 0);
	t0 = now_mono_ms();
	(void)prober_want(f->p, &req);
	assert_int_equal(collect(f, ids, 1, &res, 3000), 1);
	assert_int_equal(res.outcome, PROBE_NOT_READY);
	assert_non_null(strstr(res.msg, "refused"));
	assert_true(now_mono_ms() - t0 < 500);
	/* Taken once: no second copy of the same result. */
	assert_false(prober_take(f->p, ids[0], &res));
}

struct reap_arg {
	struct prober *p;
	pid_t pid;
};

/* The worker was killed: the loop's reaping finds it, and it is the prober's. */
static bool worker_reaped(void *arg)
{
	struct reap_arg *a = arg;
	int status;

	if (waitpid(a->pid, &status, WNOHANG) != a->pid)
		return false;
	assert_true(prober_reaped(a->p, a->pid, status));
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	return true;
}

static void test_sweep_cancels_and_kills_worker(void **state)
{
	struct fx *f = *state;
	struct probe_request req = { "0000cafe", "y", "127.0.0.1", "root" };
	int64_t deadline = now_mono_ms() + 3000;
	pid_t child = 0;

	(void)prober_want(f->p, &req);
	/* Wait for the worker: the accepted connection is handed to a process of ours. */
	while (now_mono_ms() < deadline && !child) {
		char path[64];
		FILE *fp;

		(void)prober_dispatch(f->p);
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)getpid(),
			 (int)getpid());
		fp = fopen(path, "r");
		if (fp) {
			int pid;

			if (fscanf(fp, "%d", &pid) == 1)
				child = pid;
			fclose(fp);
		}
		if (!child)
			usleep(10000);
	}
	assert_true(child > 0);
	assert_int_equal(prober_in_flight(f->p), 1);
	/* The end of the pass that asked for it keeps it ... */
	prober_sweep(f->p);
	assert_int_equal(prober_in_flight(f->p), 1);
	/* ... a pass that did not ask any more (the VM is not Starting now) cancels it. */
	prober_sweep(f->p);
	assert_int_equal(prober_in_flight(f->p), 0);
	{
		struct reap_arg a = { f->p, child };

		assert_true(test_wait_for(worker_reaped, &a, 2000));
	}
	/* A later ask is a fresh entry: due at once. */
	assert_int_equal(prober_due(f->p, "0000cafe"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_silent_guests_probed_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_port_not_ready_at_once, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sweep_cancels_and_kills_worker, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
