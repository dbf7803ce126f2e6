/*
 * server.c - the DNS responder's sockets and its forwarder, driven from one
 * epoll fd that bangerd's loop watches. See dns.h.
 *
 * UDP queries are answered from the one UDP socket; TCP clients (at most
 * DNS_MAX_TCP_CLIENTS, one query at a time each, idle ones closed) get
 * length-prefixed replies. A forwarded query keeps the client's message and
 * goes upstream under a fresh random id: a UDP client's query over UDP (a
 * truncated upstream answer reaches the client with TC, and the client asks
 * again over TCP), a TCP client's query over a TCP connection of its own.
 * Each try has a deadline (a timerfd armed for the earliest); after one try
 * per upstream the client gets SERVFAIL. At most max_inflight forwards wait
 * at once; past that the client gets REFUSED.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/dns/dns-internal.h"

#define TCP_IDLE_MS 10000 /* a TCP client that sends no complete query for this long is closed */
#define UDP_BATCH 64	  /* datagrams read per socket per dispatch: the loop stays fair */
#define EPOLL_BATCH 64

enum tag {
	TAG_UDP = 1,
	TAG_TCP_LISTEN,
	TAG_TIMER,
	TAG_UPSTREAM_UDP,
	TAG_CLIENT, /* + slot << 8 */
	TAG_FWD_TCP /* + slot << 8 */
};

struct tcp_client {
	int fd; /* -1: free slot */
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_len, out_off;
	bool waiting;	  /* a forward is answering its query */
	bool kick;	  /* its forward ended: look at its next query (end of dispatch) */
	int64_t deadline; /* monotonic ms: closed if idle until then */
	uint32_t events;  /* what epoll watches now */
};

struct fwd {
	bool used;
	uint16_t id;	/* ours, upstream */
	uint8_t *query; /* as the client sent it */
	size_t qlen;
	uint8_t *msg; /* as sent upstream (our id) */
	size_t msg_len;
	size_t limit;		  /* the client's reply size */
	unsigned tries;		  /* upstreams tried so far */
	int64_t deadline;	  /* of this try */
	int client;		  /* TCP client slot, or -1 for a UDP client */
	struct sockaddr_in6 from; /* the UDP client */
	socklen_t from_len;
	/* A TCP client's query goes upstream over TCP. */
	int tfd;
	uint8_t *tbuf; /* the length-prefixed query out, then the reply in */
	size_t tlen, toff;
	bool treading;
};

struct dns_server {
	int ep, udp, tcp, timer, up_udp;
	uint16_t port;
	size_t max_inflight;
	int timeout_ms;
	struct dns_table table;
	struct dns_upstreams up;
	struct tcp_client clients[DNS_MAX_TCP_CLIENTS];
	struct fwd *fwds;
	size_t n_inflight;
	int64_t armed; /* the timer's deadline, 0: disarmed */
	bool kicked;   /* some client's kick is set */
};

/* ---- small helpers ---------------------------------------------------------------- */

static int ep_set(struct dns_server *s, int op, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	return epoll_ctl(s->ep, op, fd, &ev) < 0 ? -errno : 0;
}

static uint16_t fresh_id(const struct dns_server *s)
{
	for (;;) {
		uint16_t id;
		bool taken = false;

		if (random_bytes(&id, sizeof(id)) < 0)
			id = (uint16_t)(now_mono_ms() ^ (int64_t)rand());
		for (size_t i = 0; i < s->max_inflight && !taken; i++)
			taken = s->fwds[i].used && s->fwds[i].id == id;
		if (!taken)
			return id;
	}
}

static void udp_send(struct dns_server *s, const void *msg, size_t len,
		     const struct sockaddr_in6 *to, socklen_t to_len)
{
	if (sendto(s->udp, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)to,
		   to_len) < 0)
		log_debug("dns: udp reply: %s", strerror(errno));
}

/* ---- TCP clients ------------------------------------------------------------------ */

static void client_close(struct dns_server *s, int i)
{
	struct tcp_client *c = &s->clients[i];

	if (c->fd < 0)
		return;
	/* A forward still answering it now has nobody to answer. */
	for (size_t k = 0; k < s->max_inflight; k++)
		if (s->fwds[k].used && s->fwds[k].client == i)
			s->fwds[k].client = -2;
	close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* Watch for input only when the client can send its next query, for output while a reply waits. */
static void client_update(struct dns_server *s, int i)
{
	struct tcp_client *c = &s->clients[i];
	uint32_t ev = 0;

	if (c->out_off < c->out_len)
		ev |= EPOLLOUT;
	else if (!c->waiting)
		ev |= EPOLLIN;
	if (ev != c->events) {
		(void)ep_set(s, EPOLL_CTL_MOD, c->fd, ev, TAG_CLIENT + ((uint64_t)i << 8));
		c->events = ev;
	}
}

static void client_reply(struct dns_server *s, int i, const uint8_t *msg, size_t len)
{
	struct tcp_client *c = &s->clients[i];
	ssize_t n;

	free(c->out);
	c->out = xmalloc(len + 2);
	c->out[0] = (uint8_t)(len >> 8);
	c->out[1] = (uint8_t)len;
	memcpy(c->out + 2, msg, len);
	c->out_len = len + 2;
	c->out_off = 0;
	c->waiting = false;
	c->deadline = now_mono_ms() + TCP_IDLE_MS;
	n = send(c->fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
		client_close(s, i);
		return;
	}
	if (n > 0)
		c->out_off = (size_t)n;
}

static void handle_query(struct dns_server *s, const uint8_t *q, size_t len, int client,
			 const struct sockaddr_in6 *from, socklen_t from_len);

/* Answer the complete queries in the client's buffer, one at a time. */
static void client_process(struct dns_server *s, int i)
{
	struct tcp_client *c = &s->clients[i];

	while (c->fd >= 0 && !c->waiting && c->out_off >= c->out_len && c->in_len >= 2) {
		size_t mlen = ((size_t)c->in[0] << 8) | c->in[1];
		_cleanup_free_ uint8_t *q = NULL;

		if (c->in_len < 2 + mlen)
			break;
		/* Taken out of the buffer before it is answered: an answer may come at once. */
		q = xmalloc(mlen ? mlen : 1);
		memcpy(q, c->in + 2, mlen);
		memmove(c->in, c->in + 2 + mlen, c->in_len - 2 - mlen);
		c->in_len -= 2 + mlen;
		handle_query(s, q, mlen, i, NULL, 0);
		if (c->fd < 0)
			return;
	}
	if (c->fd >= 0)
		client_update(s, i);
}

static void client_event(struct dns_server *s, int i, uint32_t events)
{
	struct tcp_client *c = &s->clients[i];

	if (c->fd < 0)
		return;
	if (events & EPOLLOUT && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return client_close(s, i);
		if (n > 0)
			c->out_off += (size_t)n;
	}
	if (events & EPOLLIN && !c->waiting && c->out_off >= c->out_len) {
		ssize_t n;

		if (c->in_cap - c->in_len < 4096) {
			/* Never more than one maximal message plus its length. */
			size_t cap = c->in_cap ? c->in_cap * 2 : 4096;

			if (cap > 2 + DNS_MSG_MAX + 4096)
				cap = 2 + DNS_MSG_MAX + 4096;
			if (cap <= c->in_len)
				return client_close(s, i);
			c->in = xrealloc(c->in, cap);
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			return client_close(s, i);
		if (n > 0)
			c->in_len += (size_t)n;
	} else if (events & (EPOLLHUP | EPOLLERR)) {
		return client_close(s, i);
	}
	client_process(s, i);
}

static void tcp_accept(struct dns_server *s)
{
	for (int k = 0; k < 16; k++) {
		int fd = accept4(s->tcp, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int i;

		if (fd < 0)
			return;
		for (i = 0; i < DNS_MAX_TCP_CLIENTS && s->clients[i].fd >= 0; i++)
			;
		if (i == DNS_MAX_TCP_CLIENTS) {
			log_debug("dns: too many TCP clients, closing a new one");
			close(fd);
			continue;
		}
		s->clients[i].fd = fd;
		s->clients[i].deadline = now_mono_ms() + TCP_IDLE_MS;
		s->clients[i].events = EPOLLIN;
		if (ep_set(s, EPOLL_CTL_ADD, fd, EPOLLIN, TAG_CLIENT + ((uint64_t)i << 8)) < 0)
			client_close(s, i);
	}
}

/* ---- the forwarder ---------------------------------------------------------------- */

static void deliver(struct dns_server *s, struct fwd *f, const uint8_t *msg, size_t len)
{
	if (f->client >= 0)
		client_reply(s, f->client, msg, len);
	else if (f->client == -1)
		udp_send(s, msg, len, &f->from, f->from_len);
	/* -2: the TCP client went away */
}

static void fwd_free(struct dns_server *s, struct fwd *f)
{
	int client = f->client;

	if (f->tfd >= 0)
		close(f->tfd); /* also leaves the epoll set */
	free(f->query);
	free(f->msg);
	free(f->tbuf);
	memset(f, 0, sizeof(*f));
	f->tfd = -1;
	s->n_inflight--;
	/*
	 * The client may send its next query now. Not from here: a forward can
	 * fail while its query is being handled, and answering the next one
	 * from inside that would recurse once per queued query.
	 */
	if (client >= 0 && s->clients[client].fd >= 0) {
		s->clients[client].kick = true;
		s->kicked = true;
	}
}

/* Clients whose forward ended look at their next query; until none is left to look at. */
static void process_kicked(struct dns_server *s)
{
	while (s->kicked) {
		s->kicked = false;
		for (int i = 0; i < DNS_MAX_TCP_CLIENTS; i++) {
			if (!s->clients[i].kick)
				continue;
			s->clients[i].kick = false;
			if (s->clients[i].fd >= 0)
				client_process(s, i);
		}
	}
}

static void fwd_fail(struct dns_server *s, struct fwd *f, enum dns_rcode rcode)
{
	_cleanup_free_ uint8_t *r = NULL;
	size_t len;

	if (dns_error_reply(f->query, f->qlen, rcode, &r, &len) >= 0)
		deliver(s, f, r, len);
	else if (f->client >= 0)
		client_close(s, f->client);
	fwd_free(s, f);
}

/* Send f's query to its next upstream. Returns 0, or -1 when every upstream was tried. */
static int fwd_try(struct dns_server *s, struct fwd *f)
{
	const struct sockaddr_in *to;
	size_t slot = (size_t)(f - s->fwds);

	if (f->tfd >= 0) {
		close(f->tfd);
		f->tfd = -1;
	}
	while (f->tries < s->up.n) {
		to = &s->up.addr[f->tries++];
		f->deadline = now_mono_ms() + s->timeout_ms;
		if (f->client == -1) {
			if (sendto(s->up_udp, f->msg, f->msg_len, MSG_DONTWAIT | MSG_NOSIGNAL,
				   (const struct sockaddr *)to, sizeof(*to)) >= 0)
				return 0;
			log_debug("dns: forward to %s: %s", inet_ntoa(to->sin_addr),
				  strerror(errno));
			continue;
		}
		f->tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (f->tfd < 0)
			return -1;
		if ((connect(f->tfd, (const struct sockaddr *)to, sizeof(*to)) < 0 &&
		     errno != EINPROGRESS) ||
		    ep_set(s, EPOLL_CTL_ADD, f->tfd, EPOLLOUT,
			   TAG_FWD_TCP + ((uint64_t)slot << 8)) < 0) {
			log_debug("dns: forward over TCP to %s: %s", inet_ntoa(to->sin_addr),
				  strerror(errno));
			close(f->tfd);
			f->tfd = -1;
			continue;
		}
		free(f->tbuf);
		f->tbuf = xmalloc(f->msg_len + 2);
		f->tbuf[0] = (uint8_t)(f->msg_len >> 8);
		f->tbuf[1] = (uint8_t)f->msg_len;
		memcpy(f->tbuf + 2, f->msg, f->msg_len);
		f->tlen = f->msg_len + 2;
		f->toff = 0;
		f->treading = false;
		return 0;
	}
	return -1;
}

static void fwd_start(struct dns_server *s, const uint8_t *q, size_t len, int client,
		      const struct sockaddr_in6 *from, socklen_t from_len,
		      const struct dns_result *res)
{
	struct fwd *f = NULL;

	for (size_t i = 0; i < s->max_inflight && !f; i++)
		if (!s->fwds[i].used)
			f = &s->fwds[i];
	if (!f)
		return; /* cannot happen: checked by the caller */
	f->used = true;
	f->id = (uint16_t)(((unsigned)res->msg[0] << 8) | res->msg[1]);
	f->query = xmalloc(len);
	memcpy(f->query, q, len);
	f->qlen = len;
	f->msg = xmalloc(res->len);
	memcpy(f->msg, res->msg, res->len);
	f->msg_len = res->len;
	f->limit = res->limit;
	f->client = client;
	f->tfd = -1;
	if (from) {
		f->from = *from;
		f->from_len = from_len;
	}
	s->n_inflight++;
	if (client >= 0)
		s->clients[client].waiting = true;
	if (fwd_try(s, f) < 0)
		fwd_fail(s, f, DNS_RCODE_SERVFAIL);
}

static void handle_query(struct dns_server *s, const uint8_t *q, size_t len, int client,
			 const struct sockaddr_in6 *from, socklen_t from_len)
{
	struct dns_result res;

	dns_answer(&s->table, q, len, client >= 0, fresh_id(s), &res);
	if (res.action == DNS_FORWARD) {
		dns_upstreams_refresh(&s->up);
		if (s->n_inflight < s->max_inflight && s->up.n) {
			fwd_start(s, q, len, client, from, from_len, &res);
			free(res.msg);
			return;
		}
		log_debug("dns: %s", s->up.n ? "too many queries in flight, refusing"
					     : "no upstream nameserver");
		free(res.msg);
		if (dns_error_reply(q, len, s->up.n ? DNS_RCODE_REFUSED : DNS_RCODE_SERVFAIL,
				    &res.msg, &res.len) < 0)
			res.msg = NULL;
		res.action = res.msg ? DNS_REPLY : DNS_DROP;
	}
	if (res.action == DNS_REPLY) {
		if (client >= 0)
			client_reply(s, client, res.msg, res.len);
		else
			udp_send(s, res.msg, res.len, from, from_len);
	} else if (client >= 0) {
		client_close(s, client); /* a TCP client sending garbage is done */
	}
	free(res.msg);
}

static struct fwd *fwd_by_id(struct dns_server *s, uint16_t id, bool udp)
{
	for (size_t i = 0; i < s->max_inflight; i++)
		if (s->fwds[i].used && s->fwds[i].id == id && (s->fwds[i].client == -1) == udp)
			return &s->fwds[i];
	return NULL;
}

static void fwd_answered(struct dns_server *s, struct fwd *f, const uint8_t *r, size_t len)
{
	_cleanup_free_ uint8_t *out = NULL;
	size_t out_len;

	if (dns_upstream_reply(f->query, f->qlen, f->id, r, len, f->limit, &out, &out_len) < 0) {
		log_debug("dns: ignoring an upstream reply that does not match its query");
		if (f->tfd >= 0 && fwd_try(s, f) < 0) /* a TCP upstream said nonsense */
			fwd_fail(s, f, DNS_RCODE_SERVFAIL);
		return;
	}
	deliver(s, f, out, out_len);
	fwd_free(s, f);
}

static void upstream_udp_event(struct dns_server *s)
{
	uint8_t buf[DNS_MSG_MAX];

	for (int k = 0; k < UDP_BATCH; k++) {
		struct sockaddr_in from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(s->up_udp, buf, sizeof(buf), MSG_DONTWAIT,
				     (struct sockaddr *)&from, &flen);
		struct fwd *f;

		if (n < 0)
			return;
		if (n < 2 || flen != sizeof(from) || from.sin_family != AF_INET ||
		    !dns_upstreams_has(&s->up, &from))
			continue;
		f = fwd_by_id(s, (uint16_t)(((unsigned)buf[0] << 8) | buf[1]), true);
		if (f)
			fwd_answered(s, f, buf, (size_t)n);
	}
}

static void fwd_tcp_event(struct dns_server *s, size_t slot, uint32_t events)
{
	struct fwd *f;
	ssize_t n;

	if (slot >= s->max_inflight)
		return;
	f = &s->fwds[slot];
	if (!f->used || f->tfd < 0)
		return;
	if (!f->treading) {
		n = send(f->tfd, f->tbuf + f->toff, f->tlen - f->toff, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			goto next;
		if (n > 0)
			f->toff += (size_t)n;
		if (f->toff < f->tlen)
			return;
		/* Sent: now read the length-prefixed reply into tbuf. */
		free(f->tbuf);
		f->tbuf = xmalloc(2 + DNS_MSG_MAX);
		f->tlen = f->toff = 0;
		f->treading = true;
		(void)ep_set(s, EPOLL_CTL_MOD, f->tfd, EPOLLIN,
			     TAG_FWD_TCP + ((uint64_t)slot << 8));
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	n = recv(f->tfd, f->tbuf + f->toff, 2 + DNS_MSG_MAX - f->toff, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0)
		goto next;
	f->toff += (size_t)n;
	if (f->toff >= 2) {
		size_t want = ((size_t)f->tbuf[0] << 8) | f->tbuf[1];

		if (f->toff >= 2 + want)
			return fwd_answered(s, f, f->tbuf + 2, want);
	}
	return;
next:
	if (fwd_try(s, f) < 0)
		fwd_fail(s, f, DNS_RCODE_SERVFAIL);
}

/* ---- deadlines -------------------------------------------------------------------- */

static void expire(struct dns_server *s)
{
	int64_t now = now_mono_ms();

	for (size_t i = 0; i < s->max_inflight; i++) {
		struct fwd *f = &s->fwds[i];

		if (!f->used || f->deadline > now)
			continue;
		log_debug("dns: upstream try %u timed out", f->tries);
		if (fwd_try(s, f) < 0)
			fwd_fail(s, f, DNS_RCODE_SERVFAIL);
	}
	for (int i = 0; i < DNS_MAX_TCP_CLIENTS; i++)
		if (s->clients[i].fd >= 0 && !s->clients[i].waiting &&
		    s->clients[i].deadline <= now)
			client_close(s, i);
}

static void arm(struct dns_server *s)
{
	int64_t next = 0;
	struct itimerspec its = { 0 };

	for (size_t i = 0; i < s->max_inflight; i++)
		if (s->fwds[i].used && (!next || s->fwds[i].deadline < next))
			next = s->fwds[i].deadline;
	for (int i = 0; i < DNS_MAX_TCP_CLIENTS; i++)
		if (s->clients[i].fd >= 0 && !s->clients[i].waiting &&
		    (!next || s->clients[i].deadline < next))
			next = s->clients[i].deadline;
	if (next == s->armed)
		return;
	s->armed = next;
	if (next) {
		its.it_value.tv_sec = next / 1000;
		its.it_value.tv_nsec = (next % 1000) * 1000000;
	}
	(void)timerfd_settime(s->timer, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- the public side -------------------------------------------------------------- */

static void udp_event(struct dns_server *s)
{
	uint8_t buf[DNS_UDP_MAX];

	for (int k = 0; k < UDP_BATCH; k++) {
		struct sockaddr_in6 from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(s->udp, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC,
				     (struct sockaddr *)&from, &flen);

		if (n < 0)
			return;
		if ((size_t)n > sizeof(buf))
			continue; /* bigger than any query we take */
		handle_query(s, buf, (size_t)n, -1, &from, flen);
	}
}

void dns_server_dispatch(struct dns_server *s)
{
	struct epoll_event evs[EPOLL_BATCH];
	int n = epoll_wait(s->ep, evs, EPOLL_BATCH, 0);

	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;

		switch (tag & 0xff) {
		case TAG_UDP:
			udp_event(s);
			break;
		case TAG_TCP_LISTEN:
			tcp_accept(s);
			break;
		case TAG_TIMER: {
			uint64_t ticks;

			(void)!read(s->timer, &ticks, sizeof(ticks));
			s->armed = -1; /* fired: arm() must set it again */
			break;
		}
		case TAG_UPSTREAM_UDP:
			upstream_udp_event(s);
			break;
		case TAG_CLIENT:
			if ((tag >> 8) < DNS_MAX_TCP_CLIENTS)
				client_event(s, (int)(tag >> 8), evs[i].events);
			break;
		case TAG_FWD_TCP:
			fwd_tcp_event(s, (size_t)(tag >> 8), evs[i].events);
			break;
		}
	}
	expire(s);
	process_kicked(s);
	arm(s);
}

static int bind_socket(int type, const struct sockaddr_in *a, struct bg_err *err)
{
	_cleanup_close_ int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return bg_error(err, errno, "dns: socket");
	/* The bridge, and so its address, appears only with the first VM. */
	if (setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof(one)) < 0)
		return bg_error(err, errno, "dns: IP_FREEBIND");
	if (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return bg_error(err, errno, "dns: SO_REUSEADDR");
	if (bind(fd, (const struct sockaddr *)a, sizeof(*a)) < 0)
		return bg_error(err, errno, "dns: bind %s %s:%u",
				type == SOCK_STREAM ? "tcp" : "udp", inet_ntoa(a->sin_addr),
				(unsigned)ntohs(a->sin_port));
	if (type == SOCK_STREAM && listen(fd, 64) < 0)
		return bg_error(err, errno, "dns: listen");
	return TAKE_FD(fd);
}

int dns_server_new(const struct dns_config *cfg, struct dns_server **ret, struct bg_err *err)
{
	struct dns_server *s = xcalloc(1, sizeof(*s));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(cfg->port) };
	socklen_t alen = sizeof(a);
	int r;

	s->ep = s->udp = s->tcp = s->timer = s->up_udp = -1;
	for (int i = 0; i < DNS_MAX_TCP_CLIENTS; i++)
		s->clients[i].fd = -1;
	s->max_inflight = cfg->max_inflight ? cfg->max_inflight : DNS_MAX_INFLIGHT;
	s->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : DNS_FORWARD_TIMEOUT_MS;
	s->fwds = xcalloc(s->max_inflight, sizeof(*s->fwds));
	for (size_t i = 0; i < s->max_inflight; i++)
		s->fwds[i].tfd = -1;
	s->up.path = xstrdup(cfg->resolv_conf ? cfg->resolv_conf : DNS_DEFAULT_RESOLV);
	s->up.port = cfg->upstream_port ? cfg->upstream_port : 53;
	if (!cfg->listen_ip || inet_pton(AF_INET, cfg->listen_ip, &a.sin_addr) != 1) {
		r = bg_errorf(err, EINVAL, "dns: listen address '%s' is not an IPv4 address",
			      cfg->listen_ip ? cfg->listen_ip : "");
		goto fail;
	}
	if (cfg->subnet_prefix > 0 && cfg->subnet_prefix <= 32) {
		s->table.mask = ~(uint32_t)0 << (32 - cfg->subnet_prefix);
		s->table.network = cfg->subnet & s->table.mask;
	}
	r = s->udp = bind_socket(SOCK_DGRAM, &a, err);
	if (r < 0)
		goto fail;
	/* Port 0 (tests): TCP takes the port the kernel gave UDP. */
	if (getsockname(s->udp, (struct sockaddr *)&a, &alen) < 0) {
		r = bg_error(err, errno, "dns: getsockname");
		goto fail;
	}
	s->port = ntohs(a.sin_port);
	s->up.self = a;
	r = s->tcp = bind_socket(SOCK_STREAM, &a, err);
	if (r < 0)
		goto fail;
	s->up_udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	s->timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->up_udp < 0 || s->timer < 0 || s->ep < 0) {
		r = bg_error(err, errno, "dns: setup");
		goto fail;
	}
	if ((r = ep_set(s, EPOLL_CTL_ADD, s->udp, EPOLLIN, TAG_UDP)) < 0 ||
	    (r = ep_set(s, EPOLL_CTL_ADD, s->tcp, EPOLLIN, TAG_TCP_LISTEN)) < 0 ||
	    (r = ep_set(s, EPOLL_CTL_ADD, s->timer, EPOLLIN, TAG_TIMER)) < 0 ||
	    (r = ep_set(s, EPOLL_CTL_ADD, s->up_udp, EPOLLIN, TAG_UPSTREAM_UDP)) < 0) {
		r = bg_error(err, -r, "dns: epoll_ctl");
		goto fail;
	}
	dns_table_set(&s->table, NULL, 0);
	*ret = s;
	return 0;
fail:
	dns_server_free(s);
	return r;
}

void dns_server_free(struct dns_server *s)
{
	if (!s)
		return;
	for (int i = 0; i < DNS_MAX_TCP_CLIENTS; i++)
		client_close(s, i);
	for (size_t i = 0; i < s->max_inflight; i++)
		if (s->fwds[i].used)
			fwd_free(s, &s->fwds[i]);
	free(s->fwds);
	dns_table_release(&s->table);
	free(s->up.path);
	if (s->up_udp >= 0)
		close(s->up_udp);
	if (s->timer >= 0)
		close(s->timer);
	if (s->tcp >= 0)
		close(s->tcp);
	if (s->udp >= 0)
		close(s->udp);
	if (s->ep >= 0)
		close(s->ep);
	free(s);
}

int dns_server_fd(const struct dns_server *s)
{
	return s->ep;
}

uint16_t dns_server_port(const struct dns_server *s)
{
	return s->port;
}

void dns_server_set_names(struct dns_server *s, const struct dns_name *names, size_t n)
{
	dns_table_set(&s->table, names, n);
}
