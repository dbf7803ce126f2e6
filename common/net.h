/*
 * net.h - TCP connections with a deadline.
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

#endif
