/*
 * net.c - TCP connections with a deadline; see net.h.
 */
#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

int net_connect_tcp(const char *ip, int port, int timeout_ms, int *ret_fd, struct bg_err *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	int64_t deadline = now_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	_cleanup_close_ int fd = -1;
	char portstr[16];
	int soerr = 0, r;
	socklen_t sl = sizeof(soerr);

	snprintf(portstr, sizeof(portstr), "%d", port);
	r = ip ? getaddrinfo(ip, portstr, &hints, &ai) : EAI_NONAME;
	if (r != 0)
		return bg_errorf(err, EINVAL, "'%s' is not an IP address (%s)", ip ? ip : "",
				 gai_strerror(r));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = bg_error(err, errno, "socket");
		freeaddrinfo(ai);
		return r;
	}
	r = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (r < 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (errno != EINPROGRESS)
			return bg_error(err, errno, "connect %s:%d", ip, port);
		for (;;) {
			int64_t left = deadline - now_mono_ms();

			if (left <= 0)
				return bg_errorf(err, ETIMEDOUT, "connect %s:%d: timed out", ip,
						 port);
			r = poll(&p, 1, (int)left);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return bg_error(err, errno, "poll");
			if (r > 0)
				break;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return bg_error(err, errno, "connect %s:%d", ip, port);
		if (soerr)
			return bg_error(err, soerr, "connect %s:%d", ip, port);
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int net_resolv_nameservers(const char *path, char ***ret, struct bg_err *err)
{
	_cleanup_free_ char *data = NULL;
	char **out = xcalloc(NET_MAX_NAMESERVERS + 1, sizeof(*out));
	size_t n = 0;
	char *line, *save = NULL;
	int r;

	r = fs_read_file(path, 64 * 1024, &data, NULL, err);
	if (r == -ENOENT) {
		bg_err_clear(err);
		*ret = out;
		return 0;
	}
	if (r < 0) {
		free(out);
		return r;
	}
	for (line = strtok_r(data, "\n", &save); line && n < NET_MAX_NAMESERVERS;
	     line = strtok_r(NULL, "\n", &save)) {
		char addr[64];
		struct in_addr a;

		if (sscanf(line, " nameserver %63s", addr) != 1)
			continue;
		if (inet_pton(AF_INET, addr, &a) != 1 || (ntohl(a.s_addr) >> 24) == 127)
			continue;
		out[n++] = xstrdup(addr);
	}
	*ret = out;
	return (int)n;
}
