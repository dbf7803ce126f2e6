/*
 * fakefc.c - a fast fake Firecracker for the engine benchmarks.
 *
 * One process per VM and no guest: it serves the part of Firecracker's HTTP/1.1
 * API that banger's driver (reconciler/vmm/firecracker.c) uses, on the unix
 * socket given by --api-sock, so bangerd drives it exactly as it drives the
 * real binary (same argv, same sandbox uid and seccomp deny-list). It keeps no
 * threads and no heap: one poll() loop over the listening socket, a few
 * connections and a signalfd.
 *
 *   fakefc --api-sock PATH [--id ID] [other Firecracker options are ignored]
 *
 * - PUT of any configuration path before the start: 204; after it: 400, as
 *   Firecracker refuses pre-boot configuration on a running microVM.
 * - PATCH of anything: 204.
 * - GET /: 200 with the instance info ({"id", "state", "vmm_version",
 *   "app_name"}), state "Not started" then "Running". GET /version and
 *   GET /machine-config answer too; other GETs are 400.
 * - PUT /actions InstanceStart: state Running; when FAKEFC_NOTIFY names a
 *   unix datagram socket, sends it one datagram
 *   "start <id, or the socket path without --id> <CLOCK_MONOTONIC ns>",
 *   the time taken when the request was read, before the answer.
 * - PUT /actions SendCtrlAltDel on a running microVM: 204, then exits 0, as
 *   Firecracker does when the guest reboots with reboot=k. Before the start:
 *   400. FlushMetrics: 204.
 * - SIGTERM or SIGINT: exits 0.
 *
 * It writes nothing to the logger or metrics files it is given. Request bodies
 * are not validated against Firecracker's swagger definition: the Python
 * stand-in (tests/firecracker/firecracker-standin) is the conformance check.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Concurrent API connections served; the driver uses one at a time. */
#define FAKEFC_MAX_CONNS 8
/* A request's head and body; the driver's largest (boot-source) is ~1 KiB. */
#define FAKEFC_REQ_MAX (16 * 1024)

struct fakefc_conn {
	int fd; /* -1: free slot */
	size_t len;
	char buf[FAKEFC_REQ_MAX];
};

struct fakefc {
	const char *sock_path;
	const char *id; /* NULL: none given */
	bool running;
	bool exit_now;
	int notify_fd; /* -1: no FAKEFC_NOTIFY */
	struct sockaddr_un notify_addr;
	struct fakefc_conn conns[FAKEFC_MAX_CONNS];
};

static struct fakefc fc; /* one instance per process; static keeps the stack small */

static int64_t fakefc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Write all of buf (the answer is small; a blocking peer socket takes it at once). */
static void fakefc_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			(void)poll(&p, 1, 1000);
			continue;
		}
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

static void fakefc_respond(int fd, int status, const char *body)
{
	const char *reason = status == 200   ? "OK"
			     : status == 204 ? "No Content"
			     : status == 404 ? "Not Found"
					     : "Bad Request";
	char out[1024];
	int n;

	if (status == 204)
		n = snprintf(out, sizeof(out), "HTTP/1.1 204 %s\r\nServer: fakefc\r\n\r\n", reason);
	else
		n = snprintf(
			out, sizeof(out),
			"HTTP/1.1 %d %s\r\nServer: fakefc\r\nContent-Type: application/json\r\n"
			"Content-Length: %zu\r\n\r\n%s",
			status, reason, strlen(body), body);
	if (n > 0 && (size_t)n < sizeof(out))
		fakefc_write_all(fd, out, (size_t)n);
}

static void fakefc_fault(int fd, int status, const char *msg)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"fault_message\":\"%s\"}", msg);
	fakefc_respond(fd, status, body);
}

/* The datagram that says InstanceStart was received, with the time it was read. */
static void fakefc_notify_start(int64_t t_ns)
{
	char msg[256];
	int n;

	if (fc.notify_fd < 0)
		return;
	n = snprintf(msg, sizeof(msg), "start %s %lld", fc.id ? fc.id : fc.sock_path,
		     (long long)t_ns);
	if (n > 0 && (size_t)n < sizeof(msg))
		(void)sendto(fc.notify_fd, msg, (size_t)n, 0, (struct sockaddr *)&fc.notify_addr,
			     sizeof(fc.notify_addr));
}

static void fakefc_action(int fd, const char *body, int64_t t_ns)
{
	if (strstr(body, "\"InstanceStart\"")) {
		if (fc.running) {
			fakefc_fault(fd, 400, "The microVM is already running.");
			return;
		}
		fc.running = true;
		fakefc_notify_start(t_ns);
		fakefc_respond(fd, 204, "");
	} else if (strstr(body, "\"SendCtrlAltDel\"")) {
		if (!fc.running) {
			fakefc_fault(fd, 400, "The microVM is not running.");
			return;
		}
		/* The guest "reboots": with reboot=k, Firecracker then exits. */
		fakefc_respond(fd, 204, "");
		fc.exit_now = true;
	} else if (strstr(body, "\"FlushMetrics\"")) {
		fakefc_respond(fd, 204, "");
	} else {
		fakefc_fault(fd, 400, "Unknown action_type.");
	}
}

static void fakefc_get(int fd, const char *path)
{
	char body[512];

	if (strcmp(path, "/") == 0) {
		snprintf(body, sizeof(body),
			 "{\"id\":\"%s\",\"state\":\"%s\",\"vmm_version\":\"1.10.0-fakefc\","
			 "\"app_name\":\"Firecracker\"}",
			 fc.id ? fc.id : "anonymous-instance",
			 fc.running ? "Running" : "Not started");
		fakefc_respond(fd, 200, body);
	} else if (strcmp(path, "/version") == 0) {
		fakefc_respond(fd, 200, "{\"firecracker_version\":\"1.10.0-fakefc\"}");
	} else if (strcmp(path, "/machine-config") == 0) {
		fakefc_respond(fd, 200, "{\"vcpu_count\":1,\"mem_size_mib\":128,\"smt\":false}");
	} else {
		fakefc_fault(fd, 400, "Invalid request method and/or path.");
	}
}

/* Serve one complete request: head (NUL-terminated request line etc.) and body. */
static void fakefc_serve(int fd, const char *method, const char *path, const char *body,
			 int64_t t_ns)
{
	if (strcmp(method, "GET") == 0)
		fakefc_get(fd, path);
	else if (strcmp(method, "PUT") == 0 && strcmp(path, "/actions") == 0)
		fakefc_action(fd, body, t_ns);
	else if (strcmp(method, "PUT") == 0 && fc.running)
		fakefc_fault(
			fd, 400,
			"The requested operation is not supported after starting the microVM.");
	else if (strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0)
		fakefc_respond(fd, 204, "");
	else
		fakefc_fault(fd, 400, "Invalid request method and/or path.");
}

/* Content-Length of a request head (0 when absent); -1 when it is not a number. */
static long fakefc_content_length(const char *head)
{
	const char *p = head;

	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, "Content-Length:", 15) == 0) {
			char *end;
			long v = strtol(p + 15, &end, 10);

			return end == p + 15 || v < 0 ? -1 : v;
		}
	}
	return 0;
}

/*
 * Serve every complete request in the connection's buffer; keep a partial one.
 * Returns false when the connection must be closed (malformed or too big).
 */
static bool fakefc_drain(struct fakefc_conn *c)
{
	for (;;) {
		char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
		char method[16], path[256];
		size_t head_len, total;
		long clen;
		char save;

		if (!end)
			return c->len < sizeof(c->buf) - 1;
		head_len = (size_t)(end - c->buf) + 4;
		*end = '\0';
		clen = fakefc_content_length(c->buf);
		if (clen < 0 || (size_t)clen > sizeof(c->buf) - 1 - head_len)
			return false;
		total = head_len + (size_t)clen;
		if (c->len < total) {
			*end = '\r';
			return c->len < sizeof(c->buf) - 1;
		}
		if (sscanf(c->buf, "%15s %255s", method, path) != 2)
			return false;
		save = c->buf[total];
		c->buf[total] = '\0';
		fakefc_serve(c->fd, method, path, c->buf + head_len, fakefc_now_ns());
		c->buf[total] = save;
		memmove(c->buf, c->buf + total, c->len - total);
		c->len -= total;
		if (fc.exit_now)
			return true;
	}
}

static void fakefc_conn_close(struct fakefc_conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static void fakefc_conn_read(struct fakefc_conn *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, MSG_DONTWAIT);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		fakefc_conn_close(c);
		return;
	}
	c->len += (size_t)n;
	if (!fakefc_drain(c))
		fakefc_conn_close(c);
}

static void fakefc_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (size_t i = 0; i < FAKEFC_MAX_CONNS; i++)
		if (fc.conns[i].fd < 0) {
			fc.conns[i].fd = fd;
			fc.conns[i].len = 0;
			return;
		}
	close(fd); /* all slots busy: the client retries */
}

static int fakefc_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "fakefc: socket path too long: %s\n", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		/* As Firecracker: an existing socket file is an error, not replaced. */
		fprintf(stderr, "fakefc: cannot serve on %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void fakefc_notify_init(void)
{
	const char *path = getenv("FAKEFC_NOTIFY");

	fc.notify_fd = -1;
	if (!path || !*path || strlen(path) >= sizeof(fc.notify_addr.sun_path))
		return;
	fc.notify_addr.sun_family = AF_UNIX;
	memcpy(fc.notify_addr.sun_path, path, strlen(path) + 1);
	fc.notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	/*
	 * A unix datagram queue holds only net.unix.max_dgram_qlen (10) messages:
	 * when 200 VMs start at once the send waits for the reader rather than
	 * drop the report, but never for long. The time in it was taken before.
	 */
	if (fc.notify_fd >= 0) {
		struct timeval tv = { .tv_sec = 2 };

		(void)setsockopt(fc.notify_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
}

static int fakefc_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static int fakefc_parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--api-sock") == 0 && i + 1 < argc)
			fc.sock_path = argv[++i];
		else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc)
			fc.id = argv[++i];
		else if (strcmp(argv[i], "--version") == 0) {
			printf("Firecracker v1.10.0-fakefc\n");
			exit(0);
		}
	}
	if (!fc.sock_path) {
		fprintf(stderr, "usage: fakefc --api-sock PATH [--id ID]\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct pollfd pfd[2 + FAKEFC_MAX_CONNS];
	int lfd, sfd;

	if (fakefc_parse_args(argc, argv) < 0)
		return 2;
	for (size_t i = 0; i < FAKEFC_MAX_CONNS; i++)
		fc.conns[i].fd = -1;
	fakefc_notify_init();
	sfd = fakefc_signals();
	if (sfd < 0) {
		fprintf(stderr, "fakefc: signalfd: %s\n", strerror(errno));
		return 1;
	}
	lfd = fakefc_listen(fc.sock_path);
	if (lfd < 0)
		return 1;
	while (!fc.exit_now) {
		size_t n = 2;

		pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (size_t i = 0; i < FAKEFC_MAX_CONNS; i++)
			if (fc.conns[i].fd >= 0)
				pfd[n++] =
					(struct pollfd){ .fd = fc.conns[i].fd, .events = POLLIN };
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "fakefc: poll: %s\n", strerror(errno));
			return 1;
		}
		if (pfd[0].revents)
			return 0; /* SIGTERM/SIGINT */
		/* Serve the connections polled above before accepting new ones. */
		for (size_t i = 2; i < n && !fc.exit_now; i++) {
			if (!pfd[i].revents)
				continue;
			for (size_t j = 0; j < FAKEFC_MAX_CONNS; j++)
				if (fc.conns[j].fd == pfd[i].fd) {
					fakefc_conn_read(&fc.conns[j]);
					break;
				}
		}
		if (pfd[1].revents && !fc.exit_now)
			fakefc_accept(lfd);
	}
	return 0;
}
