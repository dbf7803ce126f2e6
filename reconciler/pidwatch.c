/*
 * pidwatch.c - pidfds of alive VMMs in an epoll set, kept sorted; see pidwatch.h.
 */
#include "reconciler/pidwatch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/proc.h"
#include "common/xalloc.h"

struct watched {
	struct pidwatch_proc proc;
	int fd;
};

struct pidwatch {
	int ep;
	uint64_t tag;
	struct watched *w; /* sorted by (pid, start_time) */
	size_t n;
};

static int proc_cmp(const struct pidwatch_proc *a, const struct pidwatch_proc *b)
{
	if (a->pid != b->pid)
		return a->pid < b->pid ? -1 : 1;
	if (a->start_time != b->start_time)
		return a->start_time < b->start_time ? -1 : 1;
	return 0;
}

static int proc_qsort_cmp(const void *a, const void *b)
{
	return proc_cmp(a, b);
}

struct pidwatch *pidwatch_new(int ep, uint64_t tag)
{
	struct pidwatch *w = xcalloc(1, sizeof(*w));

	w->ep = ep;
	w->tag = tag;
	return w;
}

static void unwatch(struct pidwatch *w, struct watched *x)
{
	(void)epoll_ctl(w->ep, EPOLL_CTL_DEL, x->fd, NULL);
	close(x->fd);
}

void pidwatch_free(struct pidwatch *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		unwatch(w, &w->w[i]);
	free(w->w);
	free(w);
}

size_t pidwatch_count(const struct pidwatch *w)
{
	return w->n;
}

size_t pidwatch_sync(struct pidwatch *w, const struct pidwatch_proc *procs, size_t n)
{
	struct pidwatch_proc *want = xcalloc(n ? n : 1, sizeof(*want));
	struct watched *next = xcalloc(n ? n : 1, sizeof(*next));
	size_t i = 0, k = 0, m = 0;

	memcpy(want, procs, n * sizeof(*want));
	qsort(want, n, sizeof(*want), proc_qsort_cmp);
	/* One merge of two sorted lists: keep, drop or add. */
	while (i < w->n || k < n) {
		int c = i == w->n ? 1 : k == n ? -1 : proc_cmp(&w->w[i].proc, &want[k]);

		if (c < 0) {
			unwatch(w, &w->w[i++]); /* no longer alive */
		} else if (c == 0) {
			next[m++] = w->w[i++];
			k++;
		} else if (k > 0 && proc_cmp(&want[k - 1], &want[k]) == 0) {
			k++; /* listed twice: watched once */
		} else {
			struct epoll_event ev = { .events = EPOLLIN, .data.u64 = w->tag };
			int fd = proc_pidfd_open(want[k].pid, want[k].start_time, NULL);

			if (fd >= 0 && epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) == 0)
				next[m++] = (struct watched){ want[k], fd };
			else if (fd >= 0)
				close(fd);
			k++;
		}
	}
	free(w->w);
	w->w = next;
	w->n = m;
	free(want);
	return m;
}
