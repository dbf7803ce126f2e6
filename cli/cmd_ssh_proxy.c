/*
 * cmd_ssh_proxy.c - banger ssh-proxy NAME[.vm]
 *
 * OpenSSH's ProxyCommand for the managed "Host *.vm" block: resolve the VM
 * name to its IP through the state database (read-only) and relay stdin and
 * stdout to <ip>:22, like `nc`, with poll(). Host keys are checked by ssh
 * itself against banger's known_hosts (UserKnownHostsFile in the block).
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/net.h"
#include "common/err.h"
#include "common/paths.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/store.h"
#include "reconciler/vm.h"

#define PROXY_CONNECT_TIMEOUT_MS 10000
#define PROXY_BUF 65536
#define PROXY_NAME_MAX 63

static void proxy_usage(FILE *f)
{
	fprintf(f, "Usage: banger ssh-proxy NAME[.vm]\n\n"
		   "Connect stdin/stdout to port 22 of the VM NAME (for OpenSSH's ProxyCommand;\n"
		   "see 'banger ssh-config').\n");
}

/* RFC 1123 label, as VM names are: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63. */
static bool label_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > PROXY_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* "Web-1.VM" -> "web-1"; NULL when what is left is not a VM name. Owned. */
static char *proxy_vm_name(const char *arg)
{
	char *name = xstrdup(arg);
	size_t n;

	for (char *p = name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	n = strlen(name);
	if (n > 3 && strcmp(name + n - 3, ".vm") == 0)
		name[n - 3] = '\0';
	if (!label_valid(name)) {
		free(name);
		return NULL;
	}
	return name;
}

static int connect_ip(const char *ip, int port, int *ret_fd, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	int r, one = 1;
	unsigned user_timeout = 45000;

	r = net_connect_tcp(ip, port, PROXY_CONNECT_TIMEOUT_MS, &fd, err);
	if (r < 0)
		return r;
	/* a dead VM ends the relay instead of hanging it */
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Relay until the VM closes its side. stdin EOF half-closes the socket so
 * the server sees it; stdout is written in full before reading more.
 */
static int relay(int sock, struct bg_err *err)
{
	_cleanup_free_ char *up = xmalloc(PROXY_BUF), *down = xmalloc(PROXY_BUF);
	size_t up_len = 0, up_off = 0;
	bool in_eof = false, shut = false;

	for (;;) {
		struct pollfd fds[2];
		int nfds = 0, in_idx = -1, r;

		fds[nfds].fd = sock;
		fds[nfds].events = POLLIN | (up_off < up_len ? POLLOUT : 0);
		nfds++;
		if (!in_eof && up_off == up_len) {
			in_idx = nfds;
			fds[nfds].fd = STDIN_FILENO;
			fds[nfds++].events = POLLIN;
		}
		r = poll(fds, (nfds_t)nfds, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return bg_error(err, errno, "poll");
		}
		if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(sock, down, PROXY_BUF, 0);

			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				n = -2;
			if (n == -1)
				return bg_error(err, errno, "read from the VM");
			if (n == 0)
				return 0; /* the VM closed the connection */
			if (n > 0 && (r = write_all(STDOUT_FILENO, down, (size_t)n)) < 0)
				return bg_error(err, -r, "write to stdout");
		}
		if ((fds[0].revents & POLLOUT) && up_off < up_len) {
			ssize_t n = send(sock, up + up_off, up_len - up_off, MSG_NOSIGNAL);

			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return bg_error(err, errno, "write to the VM");
			if (n > 0)
				up_off += (size_t)n;
		}
		if (in_idx >= 0 && fds[in_idx].revents) {
			ssize_t n = read(STDIN_FILENO, up, PROXY_BUF);

			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n <= 0) {
				in_eof = true;
			} else {
				up_len = (size_t)n;
				up_off = 0;
			}
		}
		if (in_eof && up_off == up_len && !shut) {
			(void)shutdown(sock, SHUT_WR);
			shut = true;
		}
	}
}

int cmd_ssh_proxy(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_free_ char *name = NULL, *db = NULL;
	_cleanup_(store_freep) struct store *s = NULL;
	_cleanup_close_ int sock = -1;
	struct vm_record rec = { 0 };
	struct bg_err err = { 0 };
	int c, r;

	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			proxy_usage(stdout);
			return CLI_EXIT_OK;
		default:
			proxy_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		proxy_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	name = proxy_vm_name(argv[optind]);
	if (!name) {
		cli_error("ssh-proxy: '%s' is not a VM name (NAME or NAME.vm)", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	db = paths_db(ctx->state_dir);
	r = store_open(db, STORE_READ_ONLY, &s, &err);
	if (r == 0)
		r = store_vm_get_by_name(s, name, &rec, &err);
	if (r == -ENOENT && s)
		bg_errorf(&err, ENOENT, "no VM named '%s'", name);
	if (r == 0 && (!rec.ip || !*rec.ip))
		r = bg_errorf(&err, EADDRNOTAVAIL, "VM '%s' has no IP address yet", name);
	if (r == 0)
		r = connect_ip(rec.ip, 22, &sock, &err);
	vm_record_release(&rec);
	store_free(TAKE_PTR(s));
	if (r == 0)
		r = relay(sock, &err);
	if (r < 0) {
		cli_error("ssh-proxy: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}
