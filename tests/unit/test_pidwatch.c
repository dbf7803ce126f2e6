/*
 * test_pidwatch.c - pidwatch.h with real processes: far more VMMs than the
 * old fixed cap of 256 are all watched, the death of any one of them (the
 * last added too) wakes the epoll set within a second, a process whose start
 * time does not match is never watched, and a sync closes the pidfds of
 * processes no longer listed.
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/pidwatch.h"

#define N_PROCS 600
#define TAG 77

static size_t open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	size_t n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static pid_t spawn_sleeper(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

static void test_many_watched_and_each_death_wakes(void **state)
{
	struct pidwatch_proc *procs = xcalloc(N_PROCS, sizeof(*procs));
	struct pidwatch_proc *again = xcalloc(N_PROCS + 1, sizeof(*again));
	struct epoll_event ev;
	struct pidwatch *w;
	size_t fds0;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int victim = N_PROCS - 1;

	(void)state;
	assert_true(ep >= 0);
	fds0 = open_fds();
	for (int i = 0; i < N_PROCS; i++) {
		procs[i].pid = spawn_sleeper();
		assert_int_equal(proc_start_time(procs[i].pid, &procs[i].start_time, NULL), 0);
	}
	w = pidwatch_new(ep, TAG);
	assert_int_equal(pidwatch_sync(w, procs, N_PROCS), N_PROCS);
	/* The same VMMs in another order, one listed twice: the same watches, once each. */
	for (int i = 0; i < N_PROCS; i++)
		again[i] = procs[N_PROCS - 1 - i];
	again[N_PROCS] = procs[3];
	assert_int_equal(pidwatch_sync(w, again, N_PROCS + 1), N_PROCS);
	assert_int_equal(open_fds(), fds0 + N_PROCS);
	assert_int_equal(epoll_wait(ep, &ev, 1, 0), 0);

	/* The last one (past any fixed cap) dies: the set wakes within a second. */
	kill(procs[victim].pid, SIGKILL);
	assert_int_equal(epoll_wait(ep, &ev, 1, 1000), 1);
	assert_int_equal(ev.data.u64, TAG);
	assert_int_equal(waitpid(procs[victim].pid, NULL, 0), procs[victim].pid);

	/* The pass no longer lists it: its pidfd is closed, the set is quiet again. */
	assert_int_equal(pidwatch_sync(w, procs, N_PROCS - 1), N_PROCS - 1);
	assert_int_equal(open_fds(), fds0 + N_PROCS - 1);
	assert_int_equal(epoll_wait(ep, &ev, 1, 0), 0);

	/* A recycled identity: same pid, another start time, is not that VMM. */
	procs[0].start_time += 1;
	assert_int_equal(pidwatch_sync(w, procs, 1), 0);
	assert_int_equal(open_fds(), fds0);

	pidwatch_free(w);
	for (int i = 0; i < N_PROCS - 1; i++) {
		kill(procs[i].pid, SIGKILL);
		assert_int_equal(waitpid(procs[i].pid, NULL, 0), procs[i].pid);
	}
	assert_int_equal(open_fds(), fds0);
	close(ep);
	free(procs);
	free(again);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_watched_and_each_death_wakes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
