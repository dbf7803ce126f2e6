/*
 * dns-internal.h - the pieces of the DNS module shared between answer.c (the
 * answer table and every message parsed or built, with ldns) and server.c
 * (sockets, TCP clients, the forwarder). No ldns type appears here.
 */
#ifndef BANGER_RECONCILER_DNS_DNS_INTERNAL_H
#define BANGER_RECONCILER_DNS_DNS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include "reconciler/dns/dns.h"

#define DNS_UDP_MIN 512	   /* a client without EDNS gets at most this over UDP */
#define DNS_UDP_MAX 4096   /* we never send more over UDP, whatever EDNS says */
#define DNS_EDNS_SIZE 1232 /* the UDP size we advertise */
#define DNS_NAME_MAX 63	   /* a VM name is one label */
#define DNS_MSG_MAX 65535  /* a TCP message */

enum dns_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_REFUSED = 5,
};

struct dns_entry {
	char name[DNS_NAME_MAX + 1]; /* lower case */
	uint32_t ip;		     /* host byte order */
};

/* The answer table: names sorted for bsearch, the subnet for PTR. */
struct dns_table {
	struct dns_entry *e;
	size_t n;
	uint32_t network, mask; /* host byte order */
};

/* Replace t's entries (see dns_server_set_names). */
void dns_table_set(struct dns_table *t, const struct dns_name *names, size_t n);
void dns_table_release(struct dns_table *t);

enum dns_action {
	DNS_DROP,    /* not a query, or not parseable: no reply */
	DNS_REPLY,   /* msg is the reply */
	DNS_FORWARD, /* msg is the query to send upstream, with the id asked for */
	DNS_ACTION_MAX
};

/* What to do with one query; msg is owned (free). */
struct dns_result {
	enum dns_action action;
	uint8_t *msg;
	size_t len;
	uint16_t client_id; /* the query's id */
	size_t limit;	    /* the biggest reply the client takes (UDP) */
};

/*
 * Look at one query received over UDP (tcp false) or TCP and say what to do:
 * answer from the table (A, NODATA, NXDOMAIN, PTR; truncated with TC when
 * over the client's UDP size), refuse (not a standard query, zone
 * transfers, non-IN classes), FORMERR (not one question), drop (a
 * response, unparseable), or forward: then msg is the query with its id
 * replaced by fwd_id. Never fails otherwise.
 */
void dns_answer(const struct dns_table *t, const uint8_t *q, size_t len, bool tcp, uint16_t fwd_id,
		struct dns_result *ret);

/*
 * An upstream's reply r to the query q (as the client sent it) forwarded
 * with id fwd_id: checks the id and question match, puts the client's id
 * back and truncates (TC, no records) past limit. *ret owned. Returns 0, or
 * -EBADMSG when r is not that reply (ignore it and keep waiting).
 */
int dns_upstream_reply(const uint8_t *q, size_t qlen, uint16_t fwd_id, const uint8_t *r,
		       size_t rlen, size_t limit, uint8_t **ret, size_t *ret_len);

/* A reply with no records and this rcode to query q. -EBADMSG when q does not parse. */
int dns_error_reply(const uint8_t *q, size_t qlen, enum dns_rcode rcode, uint8_t **ret,
		    size_t *ret_len);

/* ---- upstream.c --------------------------------------------------------------------- */

#define DNS_MAX_UPSTREAMS 3

/* The nameservers of a resolv.conf file, as of its last change. */
struct dns_upstreams {
	char *path;		 /* owned */
	uint16_t port;		 /* 53, or the test override */
	struct sockaddr_in self; /* our listen address: never an upstream */
	struct sockaddr_in addr[DNS_MAX_UPSTREAMS];
	size_t n;
	bool loaded, existed;
	struct stat st;
};

/* Re-read u->path if it changed since the last call (one stat otherwise). */
void dns_upstreams_refresh(struct dns_upstreams *u);

/* Is a one of the upstreams (address and port)? */
bool dns_upstreams_has(const struct dns_upstreams *u, const struct sockaddr_in *a);

#endif
