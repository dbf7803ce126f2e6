/*
 * sshfix.c - SSH for many fake guests at once (bench_p3): one listener on
 * port 22 of every address of its network namespace, and per connection an
 * OpenSSH 'sshd -i' (inetd mode) serving the host key of the guest whose
 * address was dialled.
 *
 *   sshfix --keys DIR --authorized FILE [--sshd PATH] [--port PORT]
 *
 * DIR holds one entry per guest address, named by the address ("172.28.20.5")
 * and pointing at that VM's host key (banger's <vm dir>/ssh_host_ed25519_key);
 * the bench adds them as banger leases addresses. A connection to an address
 * without an entry is closed at once, which a readiness probe sees as "not
 * ready yet", as it would a guest still booting. FILE is the authorized_keys
 * (banger's client public key). Children are reaped by the kernel (SIGCHLD
 * ignored); SIGTERM ends the listener, not the sessions in flight.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct sshfix {
	const char *keys;
	const char *authorized;
	const char *sshd;
	int port;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sshfix --keys DIR --authorized FILE [--sshd PATH] [--port PORT]\n");
}

static int parse_args(int argc, char **argv, struct sshfix *s)
{
	static const struct option opts[] = {
		{ "keys", required_argument, NULL, 'k' },
		{ "authorized", required_argument, NULL, 'a' },
		{ "sshd", required_argument, NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			s->keys = optarg;
			break;
		case 'a':
			s->authorized = optarg;
			break;
		case 's':
			s->sshd = optarg;
			break;
		case 'p':
			s->port = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (!s->keys || !s->authorized || s->port <= 0 || s->port > 65535 || s->sshd[0] != '/')
		return -1;
	return 0;
}

static int listen_any(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1, fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The key entry for the address this connection was made to; 0 when there is one. */
static int key_for(const struct sshfix *s, int fd, char *path, size_t size)
{
	struct sockaddr_in local;
	socklen_t len = sizeof(local);
	char ip[INET_ADDRSTRLEN];

	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0 ||
	    !inet_ntop(AF_INET, &local.sin_addr, ip, sizeof(ip)))
		return -1;
	if ((size_t)snprintf(path, size, "%s/%s", s->keys, ip) >= size)
		return -1;
	return access(path, R_OK);
}

/* In the child: the connection becomes sshd's stdin and stdout. */
static void run_sshd(const struct sshfix *s, int fd, const char *key)
{
	char hostkey[PATH_MAX + 16], authorized[PATH_MAX + 32];
	const char *argv[] = { s->sshd, "-i",
			       "-f",	"/dev/null",
			       "-o",	hostkey,
			       "-o",	authorized,
			       "-o",	"StrictModes=no",
			       "-o",	"UsePAM=no",
			       "-o",	"PermitRootLogin=prohibit-password",
			       "-o",	"LogLevel=ERROR",
			       NULL };

	snprintf(hostkey, sizeof(hostkey), "HostKey=%s", key);
	snprintf(authorized, sizeof(authorized), "AuthorizedKeysFile=%s", s->authorized);
	if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
		_exit(127);
	signal(SIGCHLD, SIG_DFL);
	execv(s->sshd, (char *const *)argv);
	_exit(127);
}

int main(int argc, char **argv)
{
	struct sshfix s = { .sshd = "/usr/sbin/sshd", .port = 22 };
	char key[PATH_MAX];
	int lfd;

	if (parse_args(argc, argv, &s) < 0) {
		usage(stderr);
		return 2;
	}
	/* Sessions are short (a probe, a 'true'): let the kernel reap them. */
	signal(SIGCHLD, SIG_IGN);
	lfd = listen_any(s.port);
	if (lfd < 0) {
		fprintf(stderr, "sshfix: listen on port %d: %s\n", s.port, strerror(errno));
		return 1;
	}
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			fprintf(stderr, "sshfix: accept: %s\n", strerror(errno));
			return 1;
		}
		if (key_for(&s, fd, key, sizeof(key)) == 0 && fork() == 0)
			run_sshd(&s, fd, key);
		close(fd);
	}
}
