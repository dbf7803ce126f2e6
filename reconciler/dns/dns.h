/*
 * dns.h - bangerd's DNS responder on the bridge address: A and PTR for
 * '<name>.vm' from an answer table bangerd replaces after every pass, every
 * other name forwarded to the host's resolvers.
 *
 * The server never blocks: it owns one epoll fd (its UDP and TCP sockets, TCP
 * client connections, the upstream sockets and a timerfd for forward
 * deadlines) that the daemon's loop watches; dns_server_dispatch() then does
 * whatever is ready. DNS messages are parsed and built with ldns, which only
 * this module includes.
 */
#ifndef BANGER_RECONCILER_DNS_DNS_H
#define BANGER_RECONCILER_DNS_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define DNS_DEFAULT_PORT 53
#define DNS_DEFAULT_RESOLV "/etc/resolv.conf"
#define DNS_TTL 5		    /* seconds, for every local answer */
#define DNS_FORWARD_TIMEOUT_MS 3000 /* per upstream try */
#define DNS_MAX_INFLIGHT 512	    /* forwarded queries waiting for an upstream */
#define DNS_MAX_TCP_CLIENTS 64

struct dns_config {
	const char *listen_ip;	 /* dotted quad: the bridge address */
	uint16_t port;		 /* 53 unless testing */
	uint32_t subnet;	 /* the bridge network (host order): PTR answers inside it */
	unsigned subnet_prefix;	 /* its prefix length; 0: no PTR answers */
	const char *resolv_conf; /* upstreams (its IPv4 nameservers); NULL: DNS_DEFAULT_RESOLV */
	uint16_t upstream_port;	 /* 0: 53. For tests: resolv.conf cannot name a port */
	int timeout_ms;		 /* per upstream try; 0: DNS_FORWARD_TIMEOUT_MS */
	unsigned max_inflight;	 /* 0: DNS_MAX_INFLIGHT */
};

/* One answer-table entry: '<name>.vm' has address ipv4. */
struct dns_name {
	const char *name;
	const char *ipv4; /* dotted quad */
};

struct dns_server;

/*
 * Bind UDP and TCP on cfg->listen_ip:cfg->port (IP_FREEBIND: the address may
 * not exist yet; the bridge appears with the first VM) and set up the epoll
 * fd. cfg strings are copied. *ret is owned (dns_server_free). Returns 0 or
 * -errno (e.g. -EADDRINUSE) with a message in err.
 */
int dns_server_new(const struct dns_config *cfg, struct dns_server **ret, struct bg_err *err);

/* Close every socket; forwarded queries still in flight are dropped. NULL is a no-op. */
void dns_server_free(struct dns_server *s);

/* The epoll fd to watch for EPOLLIN; then call dns_server_dispatch(). */
int dns_server_fd(const struct dns_server *s);

/* Handle everything that is ready now, without blocking. Never fails: bad input is dropped. */
void dns_server_dispatch(struct dns_server *s);

/*
 * Replace the answer table with n entries (copied; entries with a bad
 * address or name are skipped). Later queries see the new table.
 */
void dns_server_set_names(struct dns_server *s, const struct dns_name *names, size_t n);

/* The port actually bound (cfg->port, or the kernel's choice when it was 0). */
uint16_t dns_server_port(const struct dns_server *s);

/* ---- systemd-resolved (resolved.c) ------------------------------------------------- */

/* Does systemd-resolved run here (/run/systemd/resolve exists, resolvectl is in PATH)? */
bool dns_resolved_present(void);

/*
 * Have resolved send '*.vm' to ip over the link 'bridge' (resolvectl dns and
 * domain '~vm'; the link must exist). Blocks for at most a few seconds.
 * Returns 0 or -errno with resolvectl's message.
 */
int dns_resolved_set(const char *bridge, const char *ip, struct bg_err *err);

/* Undo dns_resolved_set (resolvectl revert). Returns 0 or -errno. */
int dns_resolved_revert(const char *bridge, struct bg_err *err);

#endif
