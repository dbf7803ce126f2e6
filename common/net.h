/*
 * net.h - TCP connections with a deadline; the host's DNS resolvers.
 */
#ifndef BANGER_COMMON_NET_H
#define BANGER_COMMON_NET_H

#include "common/err.h"

/*
 * Connect to ip:port (a numeric IPv4 or IPv6 address) within timeout_ms. Returns 0 and a
 * connected socket (non-blocking, O_CLOEXEC; the caller owns it), or -errno:
 * -EINVAL for a bad address, -ETIMEDOUT when the deadline passed, the
 * connect error otherwise (e.g. -ECONNREFUSED). Messages name ip:port.
 */
int net_connect_tcp(const char *ip, int port, int timeout_ms, int *ret_fd, struct bg_err *err);

/*
 * The IPv4 nameservers of a resolv.conf file (at most NET_MAX_NAMESERVERS,
 * in file order), leaving out loopback addresses (a local stub such as
 * systemd-resolved's 127.0.0.53 is not reachable from a guest). *ret is an
 * owned NULL-terminated array (strv_free), empty when there is none. A
 * missing file gives an empty array. Returns the count or -errno.
 */
#define NET_MAX_NAMESERVERS 3
int net_resolv_nameservers(const char *path, char ***ret, struct bg_err *err);

#endif
