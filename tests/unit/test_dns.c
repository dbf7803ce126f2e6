/*
 * test_dns.c - bangerd's DNS responder: the answer table (A, case, NODATA,
 * NXDOMAIN, PTR, refusals), hostile input, and the server over loopback
 * sockets against a fake upstream on 127.0.0.1 (a resolv.conf in a temp dir
 * names it; the upstream port is the test-only override): forwarding with id
 * mapping, SERVFAIL from a silent upstream within the deadline, the in-flight
 * bound, truncation over UDP and the full answer over TCP.
 *
 * The test builds and reads messages with ldns, like the module.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/dns/dns-internal.h"
#include "reconciler/store.h"
#include "tests/lib/testutil.h"

#define BIG_COUNT 60 /* A records in big.example.: far over 512 bytes */

static const struct dns_name names[] = {
	{ "web-1", "172.22.0.10" },
	{ "DB", "172.22.0.11" },
	{ "bad name", "172.22.0.12" }, /* skipped */
	{ "noip", "not-an-ip" },       /* skipped */
};

/* ---- message helpers -------------------------------------------------------------- */

static uint8_t *query_wire(const char *name, ldns_rr_type type, uint16_t id, uint16_t edns,
			   size_t *ret_len)
{
	ldns_pkt *p = NULL;
	uint8_t *w = NULL;

	assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, id);
	if (edns)
		ldns_pkt_set_edns_udp_size(p, edns);
	assert_int_equal(ldns_pkt2wire(&w, p, ret_len), LDNS_STATUS_OK);
	ldns_pkt_free(p);
	return w;
}

static ldns_pkt *parse(const uint8_t *w, size_t len)
{
	ldns_pkt *p = NULL;

	assert_int_equal(ldns_wire2pkt(&p, w, len), LDNS_STATUS_OK);
	return p;
}

/* The first answer's address as text, or "" when there is none. */
static const char *first_a(const ldns_pkt *p, char buf[INET_ADDRSTRLEN])
{
	const ldns_rr_list *an = ldns_pkt_answer(p);
	const ldns_rdf *rd;

	buf[0] = '\0';
	if (!an || !ldns_rr_list_rr_count(an))
		return buf;
	rd = ldns_rr_rdf(ldns_rr_list_rr(an, 0), 0);
	assert_non_null(inet_ntop(AF_INET, ldns_rdf_data(rd), buf, INET_ADDRSTRLEN));
	return buf;
}

static struct dns_table table(void)
{
	struct dns_table t = { 0 };
	uint32_t gw, net;
	unsigned prefix;

	assert_int_equal(ipam_parse_subnet("172.22.0.1/24", &gw, &net, &prefix), 0);
	t.mask = ~(uint32_t)0 << (32 - prefix);
	t.network = net & t.mask;
	dns_table_set(&t, names, ARRAY_SIZE(names));
	return t;
}

/* Ask the table; returns the reply parsed (owned), or NULL when it forwards or drops. */
static ldns_pkt *ask(const struct dns_table *t, const char *name, ldns_rr_type type,
		     enum dns_action want)
{
	struct dns_result res;
	size_t len;
	_cleanup_free_ uint8_t *q = query_wire(name, type, 0x4242, 0, &len);
	ldns_pkt *p = NULL;

	dns_answer(t, q, len, false, 0x9999, &res);
	assert_int_equal(res.action, want);
	if (res.action == DNS_REPLY) {
		p = parse(res.msg, res.len);
		assert_int_equal(ldns_pkt_id(p), 0x4242);
		assert_true(ldns_pkt_qr(p));
	}
	if (res.action == DNS_FORWARD) {
		ldns_pkt *f = parse(res.msg, res.len);

		assert_int_equal(ldns_pkt_id(f), 0x9999);
		assert_int_equal(res.client_id, 0x4242);
		ldns_pkt_free(f);
	}
	free(res.msg);
	return p;
}

/* ---- the answer table ------------------------------------------------------------- */

static void test_a_records(void **state)
{
	struct dns_table t = table();
	char ip[INET_ADDRSTRLEN];
	ldns_pkt *p;

	(void)state;
	assert_int_equal(t.n, 2);
	p = ask(&t, "web-1.vm.", LDNS_RR_TYPE_A, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_true(ldns_pkt_aa(p));
	assert_string_equal(first_a(p, ip), "172.22.0.10");
	assert_int_equal(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0)), DNS_TTL);
	ldns_pkt_free(p);
	/* Case-insensitive both ways: the table had "DB". */
	p = ask(&t, "WeB-1.Vm", LDNS_RR_TYPE_A, DNS_REPLY);
	assert_string_equal(first_a(p, ip), "172.22.0.10");
	ldns_pkt_free(p);
	p = ask(&t, "db.vm", LDNS_RR_TYPE_A, DNS_REPLY);
	assert_string_equal(first_a(p, ip), "172.22.0.11");
	ldns_pkt_free(p);
	/* A new table replaces the old one. */
	dns_table_set(&t, names + 1, 1);
	p = ask(&t, "web-1.vm", LDNS_RR_TYPE_A, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	ldns_pkt_free(p);
	dns_table_release(&t);
}

static void test_nodata_nxdomain(void **state)
{
	struct dns_table t = table();
	ldns_pkt *p;

	(void)state;
	p = ask(&t, "web-1.vm", LDNS_RR_TYPE_AAAA, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_int_equal(ldns_pkt_nscount(p), 1); /* the SOA, for negative caching */
	ldns_pkt_free(p);
	p = ask(&t, "web-1.vm", LDNS_RR_TYPE_MX, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	ldns_pkt_free(p);
	p = ask(&t, "nope.vm", LDNS_RR_TYPE_A, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	ldns_pkt_free(p);
	p = ask(&t, "www.web-1.vm", LDNS_RR_TYPE_A, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	ldns_pkt_free(p);
	p = ask(&t, "vm", LDNS_RR_TYPE_A, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	ldns_pkt_free(p);
	/* Not under vm.: forwarded (the name merely ends in "vm"). */
	assert_null(ask(&t, "web-1.xvm", LDNS_RR_TYPE_A, DNS_FORWARD));
	assert_null(ask(&t, "example.com", LDNS_RR_TYPE_A, DNS_FORWARD));
	dns_table_release(&t);
}

static void test_ptr(void **state)
{
	struct dns_table t = table();
	ldns_pkt *p;
	char *s;

	(void)state;
	p = ask(&t, "10.0.22.172.in-addr.arpa", LDNS_RR_TYPE_PTR, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	s = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 0));
	assert_string_equal(s, "web-1.vm.");
	free(s);
	ldns_pkt_free(p);
	/* In the subnet without a VM: NXDOMAIN; outside it: forwarded. */
	p = ask(&t, "99.0.22.172.in-addr.arpa", LDNS_RR_TYPE_PTR, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	ldns_pkt_free(p);
	assert_null(ask(&t, "8.8.8.8.in-addr.arpa", LDNS_RR_TYPE_PTR, DNS_FORWARD));
	assert_null(ask(&t, "10.1.22.172.in-addr.arpa", LDNS_RR_TYPE_PTR, DNS_FORWARD));
	assert_null(ask(&t, "0010.0.22.172.in-addr.arpa", LDNS_RR_TYPE_PTR, DNS_FORWARD));
	dns_table_release(&t);
}

static void test_refused(void **state)
{
	struct dns_table t = table();
	struct dns_result res;
	ldns_pkt *p, *r;
	uint8_t *w = NULL;
	size_t len;

	(void)state;
	p = ask(&t, "web-1.vm", LDNS_RR_TYPE_AXFR, DNS_REPLY);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
	ldns_pkt_free(p);
	/* Not a standard query (NOTIFY), another class (CH), a response, two questions. */
	for (int k = 0; k < 4; k++) {
		assert_int_equal(ldns_pkt_query_new_frm_str(
					 &p, "web-1.vm", LDNS_RR_TYPE_A,
					 k == 1 ? LDNS_RR_CLASS_CH : LDNS_RR_CLASS_IN, LDNS_RD),
				 LDNS_STATUS_OK);
		if (k == 0)
			ldns_pkt_set_opcode(p, LDNS_PACKET_NOTIFY);
		if (k == 2)
			ldns_pkt_set_qr(p, true);
		if (k == 3)
			ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION,
					 ldns_rr_clone(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
		assert_int_equal(ldns_pkt2wire(&w, p, &len), LDNS_STATUS_OK);
		dns_answer(&t, w, len, false, 1, &res);
		if (k == 2) {
			assert_int_equal(res.action, DNS_DROP);
		} else {
			assert_int_equal(res.action, DNS_REPLY);
			r = parse(res.msg, res.len);
			assert_int_equal(ldns_pkt_get_rcode(r),
					 k == 3 ? LDNS_RCODE_FORMERR : LDNS_RCODE_REFUSED);
			assert_int_equal(ldns_pkt_ancount(r), 0);
			ldns_pkt_free(r);
		}
		free(res.msg);
		free(w);
		ldns_pkt_free(p);
	}
	dns_table_release(&t);
}

/* Hostile input: garbage, a compression loop, a name of 200 labels; never a crash. */
static void test_hostile(void **state)
{
	struct dns_table t = table();
	struct dns_result res;
	/* Header: id, RD, 1 question; the name is a pointer to itself (offset 12). */
	static const uint8_t loop[] = { 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0,	  0,	0,
					0,    0,    0,	  0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01 };
	/* Two pointers to each other. */
	static const uint8_t loop2[] = { 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0,	   0,
					 0,    0,    0,	   0,	 0x01, 'a',  0xc0, 0x10,
					 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01 };
	uint8_t many[12 + 2 * 200 + 1 + 4] = { 0x12, 0x34, 0x01, 0x00, 0x00, 0x01 };
	uint8_t junk[512];
	size_t n = 12;

	(void)state;
	log_set_level(LOG_LEVEL_ERR);
	for (int i = 0; i < 200; i++) {
		many[n++] = 1;
		many[n++] = 'a';
	}
	many[n++] = 0;
	many[n++] = 0;
	many[n++] = 1;
	many[n++] = 0;
	many[n++] = 1;
	dns_answer(&t, loop, sizeof(loop), false, 1, &res);
	assert_int_equal(res.action, DNS_DROP);
	dns_answer(&t, loop2, sizeof(loop2), false, 1, &res);
	assert_int_equal(res.action, DNS_DROP);
	dns_answer(&t, many, n, false, 1, &res);
	assert_int_equal(res.action, DNS_DROP); /* a name over 255 bytes */
	dns_answer(&t, loop, 5, false, 1, &res);
	assert_int_equal(res.action, DNS_DROP);
	dns_answer(&t, loop, 0, false, 1, &res);
	assert_int_equal(res.action, DNS_DROP);
	srand(1);
	for (int k = 0; k < 2000; k++) {
		size_t len = (size_t)(rand() % (int)sizeof(junk));

		for (size_t i = 0; i < len; i++)
			junk[i] = (uint8_t)rand();
		if (len > 5)
			junk[2] &= 0x7f; /* mostly "queries" */
		dns_answer(&t, junk, len, k & 1, 1, &res);
		assert_true(res.action < DNS_ACTION_MAX);
		free(res.msg);
	}
	dns_table_release(&t);
}

/* ---- the server, against a fake upstream ------------------------------------------- */

struct fake {
	int udp, tcp;
	int conn; /* an accepted TCP connection whose query has not come yet, or -1 */
	uint16_t port;
	uint16_t seen_ids[16];
	size_t n_seen;
};

struct fx {
	char *dir;
	struct fake up;
	struct dns_server *s;
};

/* The fake upstream's reply to q: A 192.0.2.1 for any name; BIG_COUNT As for big.example. */
static uint8_t *fake_reply(struct fake *f, const uint8_t *q, size_t len, size_t *ret_len)
{
	ldns_pkt *p = NULL, *r;
	const ldns_rr *qr;
	uint8_t *w = NULL;
	char *name;
	bool big;

	if (ldns_wire2pkt(&p, q, len) != LDNS_STATUS_OK)
		return NULL;
	qr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
	name = ldns_rdf2str(ldns_rr_owner(qr));
	if (f->n_seen < ARRAY_SIZE(f->seen_ids))
		f->seen_ids[f->n_seen++] = ldns_pkt_id(p);
	if (strcmp(name, "silent.example.") == 0) {
		free(name);
		ldns_pkt_free(p);
		return NULL;
	}
	big = strcmp(name, "big.example.") == 0;
	r = ldns_pkt_new();
	ldns_pkt_set_id(r, ldns_pkt_id(p));
	ldns_pkt_set_qr(r, true);
	ldns_pkt_set_rd(r, true);
	ldns_pkt_set_ra(r, true);
	ldns_pkt_push_rr(r, LDNS_SECTION_QUESTION, ldns_rr_clone(qr));
	for (int i = 0; i < (big ? BIG_COUNT : 1); i++) {
		char *s = xasprintf("%s 60 IN A 192.0.2.%d", name, i + 1);
		ldns_rr *a = NULL;

		assert_int_equal(ldns_rr_new_frm_str(&a, s, 0, NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, a);
		free(s);
	}
	assert_int_equal(ldns_pkt2wire(&w, r, ret_len), LDNS_STATUS_OK);
	ldns_pkt_free(r);
	ldns_pkt_free(p);
	free(name);
	return w;
}

/* Answer whatever the fake upstream has received (UDP, and TCP one connection at a time). */
static void fake_serve(struct fake *f)
{
	uint8_t buf[4096];
	struct sockaddr_in from;
	socklen_t flen = sizeof(from);
	ssize_t n;
	int c;

	while ((n = recvfrom(f->udp, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from,
			     &flen)) > 0) {
		size_t len;
		_cleanup_free_ uint8_t *r = fake_reply(f, buf, (size_t)n, &len);

		if (r)
			assert_true(sendto(f->udp, r, len, 0, (struct sockaddr *)&from, flen) > 0);
		flen = sizeof(from);
	}
	if (f->conn < 0)
		f->conn = accept4(f->tcp, NULL, NULL, SOCK_CLOEXEC);
	c = f->conn;
	if (c >= 0 && poll(&(struct pollfd){ .fd = c, .events = POLLIN }, 1, 0) == 1) {
		uint8_t hdr[2];
		size_t len, qlen;
		_cleanup_free_ uint8_t *r = NULL;

		assert_int_equal(recv(c, hdr, 2, MSG_WAITALL), 2);
		qlen = ((size_t)hdr[0] << 8) | hdr[1];
		assert_int_equal(recv(c, buf, qlen, MSG_WAITALL), (ssize_t)qlen);
		r = fake_reply(f, buf, qlen, &len);
		if (r) {
			hdr[0] = (uint8_t)(len >> 8);
			hdr[1] = (uint8_t)len;
			assert_int_equal(send(c, hdr, 2, 0), 2);
			assert_int_equal(send(c, r, len, 0), (ssize_t)len);
		}
		close(c);
		f->conn = -1;
	}
}

static int fake_open(struct fake *f)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);

	memset(f, 0, sizeof(*f));
	f->conn = -1;
	f->udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	f->tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(f->udp >= 0 && f->tcp >= 0);
	assert_int_equal(bind(f->udp, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(f->udp, (struct sockaddr *)&a, &alen), 0);
	if (bind(f->tcp, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -errno; /* the port is taken for TCP: the caller tries again */
	assert_int_equal(listen(f->tcp, 8), 0);
	f->port = ntohs(a.sin_port);
	return 0;
}

static int setup_server(void **state, unsigned max_inflight, bool with_upstream)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	_cleanup_free_ char *resolv = NULL, *conf = NULL;
	struct dns_config cfg = {
		.listen_ip = "127.0.0.1",
		.port = 0,
		.subnet = 0xac160000, /* 172.22.0.0/24 */
		.subnet_prefix = 24,
		.timeout_ms = 300,
		.max_inflight = max_inflight,
	};

	for (int k = 0; k < 10 && fake_open(&f->up) < 0; k++) {
		close(f->up.udp);
		close(f->up.tcp);
	}
	assert_int_not_equal(f->up.port, 0);
	f->dir = test_tmpdir("bg-dns");
	resolv = xasprintf("%s/resolv.conf", f->dir);
	conf = with_upstream ? xstrdup("# test\nsearch example\nnameserver 127.0.0.1\n"
				       "nameserver ::1\nnameserver garbage\n")
			     : xstrdup("# nothing\n");
	test_write_file(resolv, conf);
	cfg.resolv_conf = resolv;
	cfg.upstream_port = f->up.port;
	assert_int_equal(dns_server_new(&cfg, &f->s, NULL), 0);
	dns_server_set_names(f->s, names, ARRAY_SIZE(names));
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_server(state, 0, true);
}

static int setup_small(void **state)
{
	return setup_server(state, 2, true);
}

static int setup_none(void **state)
{
	return setup_server(state, 0, false);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	dns_server_free(f->s);
	close(f->up.udp);
	close(f->up.tcp);
	if (f->up.conn >= 0)
		close(f->up.conn);
	test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Run the server and the fake upstream until fd is readable or timeout_ms passes. */
static bool pump_until(struct fx *f, int fd, int timeout_ms)
{
	int64_t end = now_mono_ms() + timeout_ms;

	while (now_mono_ms() < end) {
		struct pollfd p[4] = {
			{ .fd = dns_server_fd(f->s), .events = POLLIN },
			{ .fd = f->up.udp, .events = POLLIN },
			{ .fd = f->up.tcp, .events = POLLIN },
			{ .fd = fd, .events = POLLIN },
		};

		if (poll(p, 4, 20) < 0)
			return false;
		if (p[3].revents)
			return true;
		dns_server_dispatch(f->s);
		fake_serve(&f->up);
	}
	return false;
}

static int client_socket(struct fx *f, int type)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(dns_server_port(f->s)),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (type == SOCK_STREAM) {
		/* The server accepts from its epoll fd: connect() completes in the kernel. */
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	} else {
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	}
	return fd;
}

/* One query over UDP; returns the reply parsed, or NULL on timeout. */
static ldns_pkt *udp_ask(struct fx *f, int fd, const char *name, ldns_rr_type type, uint16_t id,
			 int timeout_ms)
{
	size_t len;
	_cleanup_free_ uint8_t *q = query_wire(name, type, id, 0, &len);
	uint8_t buf[4096];
	ssize_t n;

	assert_int_equal(send(fd, q, len, 0), (ssize_t)len);
	if (!pump_until(f, fd, timeout_ms))
		return NULL;
	n = recv(fd, buf, sizeof(buf), 0);
	assert_true(n > 0);
	return parse(buf, (size_t)n);
}

static ldns_pkt *tcp_ask(struct fx *f, int fd, const char *name, ldns_rr_type type, uint16_t id)
{
	size_t len, got = 0, want = 0;
	_cleanup_free_ uint8_t *q = query_wire(name, type, id, 0, &len);
	_cleanup_free_ uint8_t *buf = xmalloc(65537);
	uint8_t hdr[2] = { (uint8_t)(len >> 8), (uint8_t)len };

	assert_int_equal(send(fd, hdr, 2, 0), 2);
	assert_int_equal(send(fd, q, len, 0), (ssize_t)len);
	for (;;) {
		ssize_t n;

		assert_true(pump_until(f, fd, 3000));
		n = recv(fd, buf + got, 65537 - got, MSG_DONTWAIT);
		assert_true(n > 0);
		got += (size_t)n;
		if (got >= 2)
			want = ((size_t)buf[0] << 8) | buf[1];
		if (got >= 2 && got >= 2 + want)
			break;
	}
	return parse(buf + 2, want);
}

static void test_local_udp_tcp(void **state)
{
	struct fx *f = *state;
	char ip[INET_ADDRSTRLEN];
	_cleanup_close_ int u = client_socket(f, SOCK_DGRAM);
	_cleanup_close_ int t = client_socket(f, SOCK_STREAM);
	ldns_pkt *p;

	p = udp_ask(f, u, "WEB-1.vm", LDNS_RR_TYPE_A, 7, 2000);
	assert_non_null(p);
	assert_string_equal(first_a(p, ip), "172.22.0.10");
	ldns_pkt_free(p);
	/* Two queries on one TCP connection. */
	p = tcp_ask(f, t, "db.vm", LDNS_RR_TYPE_A, 8);
	assert_string_equal(first_a(p, ip), "172.22.0.11");
	ldns_pkt_free(p);
	p = tcp_ask(f, t, "gone.vm", LDNS_RR_TYPE_A, 9);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	ldns_pkt_free(p);
	assert_int_equal(f->up.n_seen, 0); /* nothing local went upstream */
}

static void test_forward_ids(void **state)
{
	struct fx *f = *state;
	char ip[INET_ADDRSTRLEN];
	_cleanup_close_ int a = client_socket(f, SOCK_DGRAM);
	_cleanup_close_ int b = client_socket(f, SOCK_DGRAM);
	size_t len;
	_cleanup_free_ uint8_t *qa = query_wire("a.example", LDNS_RR_TYPE_A, 0x1111, 0, &len);
	_cleanup_free_ uint8_t *qb = query_wire("b.example", LDNS_RR_TYPE_A, 0x1111, 0, &len);
	uint8_t buf[4096];
	ldns_pkt *p;
	ssize_t n;
	char *s;

	/* Two clients use the same id at once: each gets its own answer, under its id. */
	assert_true(send(a, qa, len, 0) > 0);
	assert_true(send(b, qb, len, 0) > 0);
	assert_true(pump_until(f, a, 3000));
	n = recv(a, buf, sizeof(buf), 0);
	p = parse(buf, (size_t)n);
	assert_int_equal(ldns_pkt_id(p), 0x1111);
	s = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(p), 0)));
	assert_string_equal(s, "a.example.");
	free(s);
	assert_string_equal(first_a(p, ip), "192.0.2.1");
	ldns_pkt_free(p);
	assert_true(pump_until(f, b, 3000));
	n = recv(b, buf, sizeof(buf), 0);
	p = parse(buf, (size_t)n);
	assert_int_equal(ldns_pkt_id(p), 0x1111);
	s = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(p), 0)));
	assert_string_equal(s, "b.example.");
	free(s);
	ldns_pkt_free(p);
	/* The upstream saw two different ids of ours. */
	assert_int_equal(f->up.n_seen, 2);
	assert_int_not_equal(f->up.seen_ids[0], f->up.seen_ids[1]);
}

/* A response sent to the server is never answered (no loops between responders). */
static void test_response_dropped(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int c = client_socket(f, SOCK_DGRAM);
	ldns_pkt *p = NULL;
	uint8_t *w = NULL;
	size_t len;

	assert_int_equal(ldns_pkt_query_new_frm_str(&p, "web-1.vm", LDNS_RR_TYPE_A,
						    LDNS_RR_CLASS_IN, LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_qr(p, true);
	assert_int_equal(ldns_pkt2wire(&w, p, &len), LDNS_STATUS_OK);
	assert_true(send(c, w, len, 0) > 0);
	assert_false(pump_until(f, c, 100));
	assert_int_equal(f->up.n_seen, 0);
	free(w);
	ldns_pkt_free(p);
}

static void test_silent_upstream(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int c = client_socket(f, SOCK_DGRAM);
	int64_t t0 = now_mono_ms(), took;
	ldns_pkt *p = udp_ask(f, c, "silent.example", LDNS_RR_TYPE_A, 77, 3000);

	took = now_mono_ms() - t0;
	assert_non_null(p);
	assert_int_equal(ldns_pkt_id(p), 77);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	/* One upstream, one try of timeout_ms (300). */
	assert_true(took >= 250);
	assert_true(took < 2000);
	ldns_pkt_free(p);
	/* Over TCP the upstream closes without answering: SERVFAIL, and the connection lives on. */
	{
		_cleanup_close_ int t = client_socket(f, SOCK_STREAM);
		char ip[INET_ADDRSTRLEN];

		p = tcp_ask(f, t, "silent.example", LDNS_RR_TYPE_A, 78);
		assert_int_equal(ldns_pkt_id(p), 78);
		assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
		ldns_pkt_free(p);
		p = tcp_ask(f, t, "web-1.vm", LDNS_RR_TYPE_A, 79);
		assert_string_equal(first_a(p, ip), "172.22.0.10");
		ldns_pkt_free(p);
	}
}

static void test_inflight_bound(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int a = client_socket(f, SOCK_DGRAM);
	_cleanup_close_ int b = client_socket(f, SOCK_DGRAM);
	_cleanup_close_ int c = client_socket(f, SOCK_DGRAM);
	size_t len;
	_cleanup_free_ uint8_t *q = query_wire("silent.example", LDNS_RR_TYPE_A, 1, 0, &len);
	int64_t t0 = now_mono_ms();
	ldns_pkt *p;

	/* Two forwards fill the bound (max_inflight 2); the third is refused at once. */
	assert_true(send(a, q, len, 0) > 0);
	assert_true(send(b, q, len, 0) > 0);
	assert_false(pump_until(f, a, 50));
	p = udp_ask(f, c, "silent.example", LDNS_RR_TYPE_A, 3, 1000);
	assert_non_null(p);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
	assert_true(now_mono_ms() - t0 < 250);
	ldns_pkt_free(p);
	/* Local names are still answered while the forwarder is full. */
	p = udp_ask(f, c, "web-1.vm", LDNS_RR_TYPE_A, 4, 1000);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	ldns_pkt_free(p);
}

static void test_truncation_then_tcp(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int u = client_socket(f, SOCK_DGRAM);
	_cleanup_close_ int t = client_socket(f, SOCK_STREAM);
	ldns_pkt *p = udp_ask(f, u, "big.example", LDNS_RR_TYPE_A, 21, 3000);

	/* Over UDP without EDNS: at most 512 bytes, so TC and no records. */
	assert_non_null(p);
	assert_int_equal(ldns_pkt_id(p), 21);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 0);
	ldns_pkt_free(p);
	/* The same question over TCP: everything. */
	p = tcp_ask(f, t, "big.example", LDNS_RR_TYPE_A, 22);
	assert_int_equal(ldns_pkt_id(p), 22);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), BIG_COUNT);
	ldns_pkt_free(p);
}

static void test_no_upstream(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int c = client_socket(f, SOCK_DGRAM);
	ldns_pkt *p = udp_ask(f, c, "example.com", LDNS_RR_TYPE_A, 1, 1000);

	assert_non_null(p);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	ldns_pkt_free(p);
}

static void test_server_garbage(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int u = client_socket(f, SOCK_DGRAM);
	_cleanup_close_ int t = client_socket(f, SOCK_STREAM);
	static const uint8_t junk[] = { 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	uint8_t hdr[2] = { 0, sizeof(junk) };
	char c;
	ldns_pkt *p;

	/* Garbage over UDP: dropped, and the server keeps answering. */
	assert_true(send(u, junk, sizeof(junk), 0) > 0);
	assert_false(pump_until(f, u, 50));
	p = udp_ask(f, u, "web-1.vm", LDNS_RR_TYPE_A, 3, 1000);
	assert_non_null(p);
	ldns_pkt_free(p);
	/* Garbage over TCP: the connection is closed. */
	assert_int_equal(send(t, hdr, 2, 0), 2);
	assert_int_equal(send(t, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	assert_true(pump_until(f, t, 1000));
	assert_int_equal(recv(t, &c, 1, 0), 0);
}

/*
 * A TCP client's forwards that fail at once (an unreachable upstream), several
 * queued in one write: each gets SERVFAIL, in order, and the server lives on
 * (it used to answer the same queued query again from inside its own
 * failure, until the stack ran out).
 */
static void test_tcp_forward_fails_at_once(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int c = client_socket(f, SOCK_STREAM);
	_cleanup_free_ char *path = xasprintf("%s/resolv.conf", f->dir);
	struct buf out;
	ldns_pkt *p;
	char ip[INET_ADDRSTRLEN];
	size_t got = 0;
	_cleanup_free_ uint8_t *buf = xmalloc(65537);

	/* An upstream no TCP connect can reach: connect() fails at once (ENETUNREACH). */
	test_write_file(path, "nameserver 255.255.255.255\n");
	buf_init(&out);
	for (uint16_t id = 1; id <= 3; id++) {
		size_t len;
		_cleanup_free_ uint8_t *q = query_wire("example.com", LDNS_RR_TYPE_A, id, 0, &len);
		uint8_t hdr[2] = { (uint8_t)(len >> 8), (uint8_t)len };

		buf_add(&out, hdr, 2);
		buf_add(&out, q, len);
	}
	assert_int_equal(send(c, out.data, out.len, 0), (ssize_t)out.len);
	buf_release(&out);
	for (uint16_t id = 1; id <= 3; id++) {
		size_t want;

		for (;;) {
			ssize_t n;

			if (got >= 2 && got >= 2 + (((size_t)buf[0] << 8) | buf[1]))
				break;
			assert_true(pump_until(f, c, 3000));
			n = recv(c, buf + got, 65537 - got, MSG_DONTWAIT);
			assert_true(n > 0);
			got += (size_t)n;
		}
		want = ((size_t)buf[0] << 8) | buf[1];
		p = parse(buf + 2, want);
		assert_int_equal(ldns_pkt_id(p), id);
		assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
		ldns_pkt_free(p);
		memmove(buf, buf + 2 + want, got - 2 - want);
		got -= 2 + want;
	}
	/* Still serving, on the same connection. */
	p = tcp_ask(f, c, "web-1.vm", LDNS_RR_TYPE_A, 9);
	assert_string_equal(first_a(p, ip), "172.22.0.10");
	ldns_pkt_free(p);
}

/* resolv.conf: IPv4 nameservers only, at most three, never ourselves; re-read on change. */
static void test_upstreams(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-dns-up");
	_cleanup_free_ char *path = xasprintf("%s/resolv.conf", dir);
	struct dns_upstreams u = { .path = path, .port = 53 };

	(void)state;
	u.self.sin_family = AF_INET;
	u.self.sin_port = htons(53);
	assert_int_equal(inet_pton(AF_INET, "172.22.0.1", &u.self.sin_addr), 1);
	dns_upstreams_refresh(&u);
	assert_int_equal(u.n, 0); /* missing file: none */
	test_write_file(path, "nameserver 172.22.0.1\nnameserver fe80::1\n"
			      "  nameserver\t10.0.0.2 # comment\nnameserverx 10.0.0.9\n"
			      "nameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver 10.0.0.5\n");
	dns_upstreams_refresh(&u);
	assert_int_equal(u.n, 3);
	assert_int_equal(ntohl(u.addr[0].sin_addr.s_addr), 0x0a000002);
	assert_int_equal(ntohl(u.addr[2].sin_addr.s_addr), 0x0a000004);
	assert_int_equal(ntohs(u.addr[0].sin_port), 53);
	assert_true(dns_upstreams_has(&u, &u.addr[1]));
	assert_false(dns_upstreams_has(&u, &u.self));
	/* Changed (another size): read again. */
	test_write_file(path, "nameserver 192.0.2.53\n");
	dns_upstreams_refresh(&u);
	assert_int_equal(u.n, 1);
	assert_int_equal(ntohl(u.addr[0].sin_addr.s_addr), 0xc0000235);
	/* Our own address on another port is a fine upstream (a test's port 53 elsewhere). */
	u.self.sin_port = htons(5353);
	u.loaded = false;
	test_write_file(path, "nameserver 172.22.0.1\n");
	dns_upstreams_refresh(&u);
	assert_int_equal(u.n, 1);
	test_rmtree(dir);
}

/* An empty resolv.conf gives SERVFAIL; once it names the upstream, forwarding works. */
static void test_resolv_reread(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int c = client_socket(f, SOCK_DGRAM);
	_cleanup_free_ char *path = xasprintf("%s/resolv.conf", f->dir);
	char ip[INET_ADDRSTRLEN];
	ldns_pkt *p = udp_ask(f, c, "example.com", LDNS_RR_TYPE_A, 1, 1000);

	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	ldns_pkt_free(p);
	test_write_file(path, "nameserver 127.0.0.1\n");
	p = udp_ask(f, c, "example.com", LDNS_RR_TYPE_A, 2, 2000);
	assert_non_null(p);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_string_equal(first_a(p, ip), "192.0.2.1");
	ldns_pkt_free(p);
}

/* The resolvectl calls, by argv, against a stand-in resolvectl first in PATH. */
static void test_resolvectl_argv(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-dns-rctl");
	_cleanup_free_ char *bin = xasprintf("%s/resolvectl", dir);
	_cleanup_free_ char *log = xasprintf("%s/calls", dir);
	_cleanup_free_ char *script =
		xasprintf("#!/bin/sh\necho \"$*\" >>'%s'\n[ \"$2\" != fail ]\n", log);
	_cleanup_free_ char *old_path = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	_cleanup_free_ char *path = xasprintf("%s:%s", dir, old_path);
	_cleanup_free_ char *calls = NULL;
	struct bg_err err = { 0 };

	(void)state;
	test_write_file(bin, script);
	assert_int_equal(chmod(bin, 0755), 0);
	setenv("PATH", path, 1);
	assert_int_equal(dns_resolved_set("bgbr0", "172.22.0.1", &err), 0);
	assert_int_equal(dns_resolved_revert("bgbr0", &err), 0);
	/* A failing resolvectl is an error with context. */
	assert_true(dns_resolved_set("fail", "172.22.0.1", &err) < 0);
	assert_non_null(strstr(err.msg, "resolvectl"));
	setenv("PATH", old_path, 1);
	assert_int_equal(fs_read_file(log, 4096, &calls, NULL, NULL), 0);
	assert_string_equal(calls, "dns bgbr0 172.22.0.1\ndomain bgbr0 ~vm\nrevert bgbr0\n"
				   "dns fail 172.22.0.1\n");
	test_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_records),
		cmocka_unit_test(test_nodata_nxdomain),
		cmocka_unit_test(test_ptr),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test_setup_teardown(test_local_udp_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forward_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_response_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_upstream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_bound, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_truncation_then_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_upstream, setup_none, teardown),
		cmocka_unit_test(test_upstreams),
		cmocka_unit_test(test_resolvectl_argv),
		cmocka_unit_test_setup_teardown(test_resolv_reread, setup_none, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_forward_fails_at_once, setup_none,
						teardown),
		cmocka_unit_test_setup_teardown(test_server_garbage, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
