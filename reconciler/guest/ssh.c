/*
 * ssh.c - SSH to guests over libssh2, the only file that includes libssh2.h.
 *
 * A connection is: non-blocking TCP connect bounded by the target's deadline,
 * an SSH handshake restricted to ssh-ed25519-first host keys (pinned types
 * first, like OpenSSH's order_hostkeyalgs()), no SHA-1 key exchange,
 * aes-ctr ciphers and hmac-sha2 MACs (RELIABILITY.md §1.5: libssh2 1.10
 * predates the Terrapin fix, so no chacha20/etm, and no cbc/sha1), then the
 * server's raw host key is checked and pinned with known_hosts_verify_pin()
 * BEFORE any authentication, then public-key auth with banger's key (the
 * user's agent as a fallback). Sessions then run non-blocking in a poll loop with
 * keep-alives and TCP_USER_TIMEOUT, so a dead guest never hangs us.
 */
#include "reconciler/guest/ssh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <libssh2.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/net.h"
#include "common/proc.h"
#include "common/str.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/guest/authkey.h"
#include "reconciler/guest/known_hosts.h"
#include "reconciler/guest/probe_sandbox.h"

#define SSH_DEFAULT_TIMEOUT_MS 10000
#define SSH_KEEPALIVE_S 15
#define SSH_TCP_USER_TIMEOUT_MS 45000
#define SSH_CLOSE_TIMEOUT_MS 5000
#define SSH_COMMAND_MAX (256 * 1024)
#define SSH_PUBKEY_MAX (16 * 1024)
#define SSH_KEYGEN_TIMEOUT_MS 60000

/* Host key algorithms libssh2 1.10 can verify, best first (no ssh-dss). */
static const char *const hostkey_algos[] = {
	"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"ssh-rsa",
};
/* No SHA-1 key exchange (libssh2 1.10 still offers group14/group1/gex-sha1). */
static const char kex[] = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"
			  "ecdh-sha2-nistp384,ecdh-sha2-nistp521,"
			  "diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,"
			  "diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";
static const char ciphers[] = "aes256-ctr,aes192-ctr,aes128-ctr";
static const char macs[] = "hmac-sha2-256,hmac-sha2-512";

struct ssh_conn {
	int fd;
	LIBSSH2_SESSION *s;
	char where[300]; /* "user@host:port" for messages */
	int64_t deadline;
};

/* ---- errors ------------------------------------------------------------------------------ */

static int libssh2_errno(int rc)
{
	switch (rc) {
	case LIBSSH2_ERROR_TIMEOUT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT:
		return ETIMEDOUT;
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_SEND:
	case LIBSSH2_ERROR_BANNER_RECV:
		return ECONNRESET;
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
	case LIBSSH2_ERROR_FILE:
	case LIBSSH2_ERROR_KEYFILE_AUTH_FAILED:
		return EACCES;
	case LIBSSH2_ERROR_ALLOC:
		return ENOMEM;
	case LIBSSH2_ERROR_KEX_FAILURE:
	case LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE:
	case LIBSSH2_ERROR_METHOD_NONE:
	case LIBSSH2_ERROR_METHOD_NOT_SUPPORTED:
	case LIBSSH2_ERROR_PROTO:
	case LIBSSH2_ERROR_BANNER_SEND:
	case LIBSSH2_ERROR_INVALID_MAC:
	case LIBSSH2_ERROR_DECRYPT:
		return EPROTO;
	default:
		return EIO;
	}
}

/* Fail with "<what> (<where>): <libssh2's own message>". */
static int ssh_fail(const struct ssh_conn *c, int rc, struct bg_err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int ssh_fail(const struct ssh_conn *c, int rc, struct bg_err *err, const char *fmt, ...)
{
	char what[512];
	char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (c->s)
		libssh2_session_last_error(c->s, &msg, NULL, 0);
	if (rc == 0 && c->s)
		rc = libssh2_session_last_errno(c->s);
	return bg_errorf(err, libssh2_errno(rc), "ssh %s: %s: %s", c->where, what,
			 msg && *msg ? msg : "unknown libssh2 error");
}

/* ---- connecting ---------------------------------------------------------------------------- */

static int remaining_ms(const struct ssh_conn *c)
{
	int64_t left = c->deadline - now_mono_ms();

	return left > 0 ? (int)left : 0;
}

/* Unacknowledged data (our keep-alives) fails the socket instead of hanging. */
static void tcp_tune(int fd)
{
	int one = 1;
	unsigned user_timeout = SSH_TCP_USER_TIMEOUT_MS;
	int idle = SSH_KEEPALIVE_S, intvl = 5, cnt = 3;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int tcp_connect(struct ssh_conn *c, const char *host, int port, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	int r;

	r = net_connect_tcp(host, port, remaining_ms(c), &fd, err);
	if (r < 0)
		return bg_err_wrap(err, "ssh %s", c->where);
	tcp_tune(fd);
	c->fd = TAKE_FD(fd);
	return 0;
}

/* "pinned types first, then the rest" (OpenSSH order_hostkeyalgs()). */
static char *hostkey_pref(const struct ssh_target *t, const char *const *pins, size_t n_pins)
{
	_cleanup_strv_free_ char **pinned = NULL;
	bool used[ARRAY_SIZE(hostkey_algos)] = { false };
	struct buf b;

	buf_init(&b);
	if (known_hosts_pinned_types(t->known_hosts, pins, n_pins, t->port, &pinned, NULL) > 0) {
		for (char **p = pinned; *p; p++)
			for (size_t i = 0; i < ARRAY_SIZE(hostkey_algos); i++)
				if (!used[i] && strcmp(*p, hostkey_algos[i]) == 0) {
					buf_addf(&b, "%s%s", b.len ? "," : "", hostkey_algos[i]);
					used[i] = true;
				}
	}
	for (size_t i = 0; i < ARRAY_SIZE(hostkey_algos); i++)
		if (!used[i])
			buf_addf(&b, "%s%s", b.len ? "," : "", hostkey_algos[i]);
	return buf_detach(&b, NULL);
}

static int auth_agent(struct ssh_conn *c, const char *user)
{
	LIBSSH2_AGENT *agent = libssh2_agent_init(c->s);
	struct libssh2_agent_publickey *id = NULL, *prev = NULL;
	int r = LIBSSH2_ERROR_AUTHENTICATION_FAILED;

	if (!agent)
		return LIBSSH2_ERROR_ALLOC;
	if (libssh2_agent_connect(agent) == 0 && libssh2_agent_list_identities(agent) == 0) {
		while (libssh2_agent_get_identity(agent, &id, prev) == 0) {
			libssh2_session_set_timeout(c->s, remaining_ms(c) ?: 1);
			r = libssh2_agent_userauth(agent, user, id);
			if (r == 0)
				break;
			prev = id;
		}
		libssh2_agent_disconnect(agent);
	}
	libssh2_agent_free(agent);
	return r;
}

static void ssh_close(struct ssh_conn *c)
{
	if (c->s) {
		libssh2_session_set_blocking(c->s, 1);
		libssh2_session_set_timeout(c->s, 1000);
		(void)libssh2_session_disconnect(c->s, "banger: bye");
		libssh2_session_free(c->s);
		c->s = NULL;
	}
	if (c->fd >= 0) {
		(void)close(c->fd);
		c->fd = -1;
	}
}

static int ssh_lib_init(struct bg_err *err)
{
	static bool initialised;
	int rc;

	if (initialised)
		return 0;
	rc = libssh2_init(0);
	if (rc != 0)
		return bg_errorf(err, EIO, "ssh: libssh2_init failed (%d)", rc);
	initialised = true;
	return 0;
}

/* Connect, check/pin the host key, authenticate. On failure c is closed. */
static int ssh_open(const struct ssh_target *t, struct ssh_conn *c, struct bg_err *err)
{
	const char *const *pins = t->pin_names;
	size_t n_pins = t->n_pin_names;
	const char *hostkey;
	_cleanup_free_ char *pref = NULL;
	size_t key_len = 0;
	int key_type = 0, rc, r;
	int port = t->port > 0 ? t->port : 22;

	c->fd = -1;
	c->s = NULL;
	c->deadline = now_mono_ms() +
		      (t->connect_timeout_ms > 0 ? t->connect_timeout_ms : SSH_DEFAULT_TIMEOUT_MS);
	snprintf(c->where, sizeof(c->where), "%s@%s:%d", t->user ? t->user : "?",
		 t->host ? t->host : "?", port);
	if (!t->host || !t->user || !*t->user || !t->known_hosts || port > 65535)
		return bg_errorf(err, EINVAL, "ssh %s: incomplete target", c->where);
	if (n_pins == 0) {
		pins = &t->host;
		n_pins = 1;
	}
	r = ssh_lib_init(err);
	if (r < 0)
		return r;
	r = tcp_connect(c, t->host, port, err);
	if (r < 0)
		return r;
	c->s = libssh2_session_init();
	if (!c->s) {
		ssh_close(c);
		return bg_errorf(err, ENOMEM, "ssh %s: libssh2_session_init failed", c->where);
	}
	libssh2_session_set_blocking(c->s, 1);
	{
		struct ssh_target tt = *t;

		tt.port = port;
		pref = hostkey_pref(&tt, pins, n_pins);
	}
	if ((rc = libssh2_session_method_pref(c->s, LIBSSH2_METHOD_KEX, kex)) != 0 ||
	    (rc = libssh2_session_method_pref(c->s, LIBSSH2_METHOD_HOSTKEY, pref)) != 0 ||
	    (rc = libssh2_session_method_pref(c->s, LIBSSH2_METHOD_CRYPT_CS, ciphers)) != 0 ||
	    (rc = libssh2_session_method_pref(c->s, LIBSSH2_METHOD_CRYPT_SC, ciphers)) != 0 ||
	    (rc = libssh2_session_method_pref(c->s, LIBSSH2_METHOD_MAC_CS, macs)) != 0 ||
	    (rc = libssh2_session_method_pref(c->s, LIBSSH2_METHOD_MAC_SC, macs)) != 0) {
		r = ssh_fail(c, rc, err, "setting algorithm preferences");
		goto fail;
	}
	libssh2_session_set_timeout(c->s, remaining_ms(c) ?: 1);
	rc = libssh2_session_handshake(c->s, c->fd);
	if (rc != 0) {
		r = ssh_fail(c, rc, err, "handshake");
		goto fail;
	}
	hostkey = libssh2_session_hostkey(c->s, &key_len, &key_type);
	if (!hostkey || key_len == 0) {
		r = ssh_fail(c, 0, err, "no host key");
		goto fail;
	}
	/* The pin check comes before we send anything that identifies us. */
	r = known_hosts_verify_pin(t->known_hosts, pins, n_pins, port, (const uint8_t *)hostkey,
				   key_len, err);
	if (r < 0) {
		bg_err_wrap(err, "ssh %s", c->where);
		goto fail;
	}
	rc = LIBSSH2_ERROR_AUTHENTICATION_FAILED;
	if (t->identity) {
		libssh2_session_set_timeout(c->s, remaining_ms(c) ?: 1);
		rc = libssh2_userauth_publickey_fromfile(c->s, t->user, NULL, t->identity, "");
		if (rc != 0)
			log_debug("ssh %s: key '%s' refused (%d), trying the agent", c->where,
				  t->identity, rc);
	}
	if (rc != 0 && rc != LIBSSH2_ERROR_TIMEOUT && getenv("SSH_AUTH_SOCK")) {
		int arc = auth_agent(c, t->user);

		if (arc == 0)
			rc = 0;
	}
	if (rc != 0) {
		r = ssh_fail(c, rc, err, "public key authentication with '%s'",
			     t->identity ? t->identity : "the agent");
		goto fail;
	}
	libssh2_keepalive_config(c->s, 1, SSH_KEEPALIVE_S);
	return 0;
fail:
	ssh_close(c);
	return r;
}

/* ---- the sandboxed readiness probe ----------------------------------------------------- */

/*
 * ssh_probe() talks to guests that may be hostile, so libssh2 runs in a
 * child jailed by probe_sandbox_enter() (nobody, no new privileges, a seccomp
 * allow-list) over the TCP socket the parent connected. The child asks the
 * parent, over a SOCK_SEQPACKET socketpair, to check the host key against
 * the pins and to sign the user-auth request: banger's private key is read
 * by the parent only after the fork and never enters the child. The child is
 * killed at the deadline (+ PROBE_GRACE_MS) and always reaped.
 */

#define PROBE_GRACE_MS 1000
#define PROBE_MSG_MAX (64 * 1024)
#define PROBE_TEXT_MAX 512

enum probe_msg {
	PROBE_HOSTKEY = 1, /* child: raw host key blob */
	PROBE_VERDICT,	   /* parent: a = 1 pinned/matched, 0 refused */
	PROBE_SIGN,	   /* child: a = key index, data to sign */
	PROBE_SIG,	   /* parent: b = 0 and the signature blob, or b = -1 */
	PROBE_RESULT,	   /* child: a = enum probe_stage reached, b = libssh2 rc, text */
};

enum probe_stage {
	PROBE_STAGE_SETUP,
	PROBE_STAGE_HANDSHAKE,
	PROBE_STAGE_AUTH,
	PROBE_STAGE_DONE,
	PROBE_STAGE_MAX,
};

struct probe_hdr {
	uint32_t type;
	int32_t a;
	int32_t b;
	uint32_t len;
};

static int probe_send(int fd, uint32_t type, int32_t a, int32_t b, const void *p, size_t len)
{
	struct probe_hdr h = { .type = type, .a = a, .b = b, .len = (uint32_t)len };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (len > PROBE_MSG_MAX)
		return -EMSGSIZE;
	while (sendmsg(fd, &m, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* One whole message into h and buf (PROBE_MSG_MAX bytes). -ECONNRESET when the peer is gone. */
static int probe_recv(int fd, struct probe_hdr *h, uint8_t *buf)
{
	struct iovec iov[2] = { { h, sizeof(*h) }, { buf, PROBE_MSG_MAX } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	while ((n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC)) < 0)
		if (errno != EINTR)
			return -errno;
	if (n == 0)
		return -ECONNRESET;
	if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof(*h) ||
	    h->len != (size_t)n - sizeof(*h))
		return -EPROTO;
	return 0;
}

/* ---- child side (jailed; everything it reads from the guest is hostile) ---- */

struct probe_child {
	int fd;	 /* TCP socket to the guest */
	int ctl; /* our end of the socketpair */
	const struct ssh_target *t;
	const char *pref; /* host key algorithm preference */
	const struct authkey_list *keys;
	const struct probe_sandbox_ids *ids;
	int64_t deadline;
	pid_t parent;
};

struct probe_sign_ctx {
	int ctl;
	int32_t key;
};

static LIBSSH2_USERAUTH_PUBLICKEY_SIGN_FUNC(probe_sign_cb)
{
	struct probe_sign_ctx *sc = *abstract;
	struct probe_hdr h;
	uint8_t *buf = malloc(PROBE_MSG_MAX);
	int r = -1;

	(void)session;
	if (!buf)
		return -1;
	if (probe_send(sc->ctl, PROBE_SIGN, sc->key, 0, data, data_len) == 0 &&
	    probe_recv(sc->ctl, &h, buf) == 0 && h.type == PROBE_SIG && h.b == 0 && h.len > 0) {
		/* libssh2 frees it with its allocator: the default one is malloc/free */
		*sig = malloc(h.len);
		if (*sig) {
			memcpy(*sig, buf, h.len);
			*sig_len = h.len;
			r = 0;
		}
	}
	free(buf);
	return r;
}

static void close_all_but(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;

	if (lo > 0)
		(void)close_range(0, (unsigned)lo - 1, 0);
	if (hi > lo + 1)
		(void)close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	(void)close_range((unsigned)hi + 1, ~0U, 0);
}

static int child_remaining(const struct probe_child *pc)
{
	int64_t left = pc->deadline - now_mono_ms();

	return left > 0 ? (int)left : 1;
}

static void child_result(const struct probe_child *pc, LIBSSH2_SESSION *s, enum probe_stage st,
			 int rc, const char *what)
{
	char text[PROBE_TEXT_MAX];
	char *msg = NULL;

	if (s) {
		libssh2_session_last_error(s, &msg, NULL, 0);
		if (rc == 0)
			rc = libssh2_session_last_errno(s);
	}
	snprintf(text, sizeof(text), "%s: %s", what, msg && *msg ? msg : "unknown libssh2 error");
	(void)probe_send(pc->ctl, PROBE_RESULT, (int32_t)st, rc, text, strlen(text));
}

static __attribute__((noreturn)) void probe_child_run(const struct probe_child *pc)
{
	const struct ssh_target *t = pc->t;
	bool hang = str_eq(getenv("BANGER_FAILPOINT"), "ssh.probe.child-hang");
	struct bg_err e = { 0 };
	LIBSSH2_SESSION *s;
	const char *hostkey;
	char what[PROBE_TEXT_MAX];
	uint8_t warm[16];
	struct probe_hdr h;
	uint8_t *buf;
	size_t key_len = 0;
	int key_type = 0, rc;

	/* Die with bangerd; if it is already gone, do not run orphaned. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != pc->parent)
		_exit(1);
	close_all_but(pc->fd, pc->ctl);
	/* Seed libcrypto's generator and allocate while files and memory are still open to us. */
	(void)random_bytes(warm, sizeof(warm));
	buf = malloc(PROBE_MSG_MAX);
	s = libssh2_session_init();
	if (!buf || !s) {
		(void)probe_send(pc->ctl, PROBE_RESULT, PROBE_STAGE_SETUP, -ENOMEM, "out of memory",
				 13);
		_exit(1);
	}
	if (probe_sandbox_enter(pc->ids, &e) < 0) {
		(void)probe_send(pc->ctl, PROBE_RESULT, PROBE_STAGE_SETUP, e.code, e.msg,
				 strlen(e.msg));
		_exit(1);
	}
	libssh2_session_set_blocking(s, 1);
	if ((rc = libssh2_session_method_pref(s, LIBSSH2_METHOD_KEX, kex)) != 0 ||
	    (rc = libssh2_session_method_pref(s, LIBSSH2_METHOD_HOSTKEY, pc->pref)) != 0 ||
	    (rc = libssh2_session_method_pref(s, LIBSSH2_METHOD_CRYPT_CS, ciphers)) != 0 ||
	    (rc = libssh2_session_method_pref(s, LIBSSH2_METHOD_CRYPT_SC, ciphers)) != 0 ||
	    (rc = libssh2_session_method_pref(s, LIBSSH2_METHOD_MAC_CS, macs)) != 0 ||
	    (rc = libssh2_session_method_pref(s, LIBSSH2_METHOD_MAC_SC, macs)) != 0) {
		child_result(pc, s, PROBE_STAGE_HANDSHAKE, rc, "setting algorithm preferences");
		_exit(1);
	}
	libssh2_session_set_timeout(s, child_remaining(pc));
	rc = libssh2_session_handshake(s, pc->fd);
	if (rc != 0) {
		child_result(pc, s, PROBE_STAGE_HANDSHAKE, rc, "handshake");
		_exit(1);
	}
	hostkey = libssh2_session_hostkey(s, &key_len, &key_type);
	if (!hostkey || key_len == 0 || key_len > PROBE_MSG_MAX) {
		child_result(pc, s, PROBE_STAGE_HANDSHAKE, 0, "no host key");
		_exit(1);
	}
	/* The parent checks the pins before we send anything that identifies us. */
	if (probe_send(pc->ctl, PROBE_HOSTKEY, key_type, 0, hostkey, key_len) < 0 ||
	    probe_recv(pc->ctl, &h, buf) < 0 || h.type != PROBE_VERDICT || h.a != 1)
		_exit(1);
	rc = LIBSSH2_ERROR_AUTHENTICATION_FAILED;
	for (size_t i = 0; i < pc->keys->n; i++) {
		struct probe_sign_ctx sc = { .ctl = pc->ctl, .key = (int32_t)i };
		void *abstract = &sc;

		libssh2_session_set_timeout(s, child_remaining(pc));
		rc = libssh2_userauth_publickey(s, t->user, pc->keys->keys[i].blob,
						pc->keys->keys[i].blob_len, probe_sign_cb,
						&abstract);
		if (rc == 0 || rc == LIBSSH2_ERROR_TIMEOUT)
			break;
	}
	if (rc != 0) {
		snprintf(what, sizeof(what), "public key authentication with '%s'",
			 t->identity ? t->identity : "the agent");
		if (pc->keys->n == 0) {
			snprintf(what + strlen(what), sizeof(what) - strlen(what),
				 ": no usable public key");
			(void)probe_send(pc->ctl, PROBE_RESULT, PROBE_STAGE_AUTH, rc, what,
					 strlen(what));
		} else {
			child_result(pc, s, PROBE_STAGE_AUTH, rc, what);
		}
		_exit(1);
	}
	if (hang) /* failpoint: a child that never finishes, for the deadline path */
		for (;;)
			(void)poll(NULL, 0, -1);
	libssh2_session_set_timeout(s, 1000);
	(void)libssh2_session_disconnect(s, "banger: bye");
	(void)probe_send(pc->ctl, PROBE_RESULT, PROBE_STAGE_DONE, 0, NULL, 0);
	_exit(0);
}

/* ---- parent side ---- */

struct probe_parent {
	const struct ssh_target *t;
	const char *where;
	const char *const *pins;
	size_t n_pins;
	int port;
	const struct authkey_list *keys;
	const char *agent_sock;
	int64_t deadline; /* the child is killed at deadline + PROBE_GRACE_MS */
	int ctl;
};

static const char *const stage_names[PROBE_STAGE_MAX] = {
	[PROBE_STAGE_SETUP] = "sandbox setup",
	[PROBE_STAGE_HANDSHAKE] = "handshake",
	[PROBE_STAGE_AUTH] = "public key authentication",
	[PROBE_STAGE_DONE] = "disconnect",
};

/* The child's text is untrusted: printable ASCII only, bounded. */
static void sanitize_text(char *dst, const uint8_t *src, size_t len)
{
	size_t n = len < PROBE_TEXT_MAX - 1 ? len : PROBE_TEXT_MAX - 1;

	for (size_t i = 0; i < n; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
	dst[n] = '\0';
}

static int probe_sign_for_child(const struct probe_parent *pp, const struct probe_hdr *h,
				const uint8_t *data, int *n_signed)
{
	_cleanup_free_ uint8_t *sig = NULL;
	const struct authkey *k;
	struct bg_err e = { 0 };
	size_t sig_len = 0;
	int64_t left = pp->deadline - now_mono_ms();

	if (h->a < 0 || (size_t)h->a >= pp->keys->n || *n_signed >= (int)pp->keys->n) {
		log_debug("ssh %s: probe child asked for a signature out of turn", pp->where);
		return probe_send(pp->ctl, PROBE_SIG, 0, -1, NULL, 0);
	}
	k = &pp->keys->keys[h->a];
	/* Only a user-auth request for this user and key: the child is no signing oracle. */
	if (!authkey_userauth_data_ok(data, h->len, pp->t->user, k->blob, k->blob_len)) {
		log_debug("ssh %s: probe child asked to sign something else", pp->where);
		return probe_send(pp->ctl, PROBE_SIG, 0, -1, NULL, 0);
	}
	(*n_signed)++;
	if (authkey_sign(k, pp->t->identity, pp->agent_sock, left > 0 ? (int)left : 1, data, h->len,
			 &sig, &sig_len, &e) < 0) {
		log_debug("ssh %s: signing failed: %s", pp->where, e.msg);
		return probe_send(pp->ctl, PROBE_SIG, 0, -1, NULL, 0);
	}
	return probe_send(pp->ctl, PROBE_SIG, 0, 0, sig, sig_len);
}

/* Serve the child until it reports or the deadline passes. */
static int probe_serve(const struct probe_parent *pp, struct bg_err *err)
{
	_cleanup_free_ uint8_t *buf = xmalloc(PROBE_MSG_MAX + 1);
	enum probe_stage stage = PROBE_STAGE_HANDSHAKE;
	bool verified = false;
	int n_signed = 0, r;

	for (;;) {
		int64_t left = pp->deadline + PROBE_GRACE_MS - now_mono_ms();
		struct pollfd pfd = { .fd = pp->ctl, .events = POLLIN };
		char text[PROBE_TEXT_MAX];
		struct probe_hdr h;

		if (left <= 0 || (r = poll(&pfd, 1, (int)left)) == 0)
			return bg_errorf(err, ETIMEDOUT,
					 "ssh %s: %s: no answer within the deadline "
					 "(probe child killed)",
					 pp->where, stage_names[stage]);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return bg_error(err, errno, "ssh %s: poll", pp->where);
		}
		r = probe_recv(pp->ctl, &h, buf);
		if (r == -ECONNRESET)
			return bg_errorf(err, ECONNRESET, "ssh %s: %s: the probe child died",
					 pp->where, stage_names[stage]);
		if (r < 0)
			return bg_error(err, -r, "ssh %s: %s: probe child", pp->where,
					stage_names[stage]);
		switch (h.type) {
		case PROBE_HOSTKEY:
			if (verified)
				return bg_errorf(err, EPROTO,
						 "ssh %s: probe child sent two host keys",
						 pp->where);
			r = known_hosts_verify_pin(pp->t->known_hosts, pp->pins, pp->n_pins,
						   pp->port, buf, h.len, err);
			(void)probe_send(pp->ctl, PROBE_VERDICT, r < 0 ? 0 : 1, 0, NULL, 0);
			if (r < 0)
				return bg_err_wrap(err, "ssh %s", pp->where);
			verified = true;
			stage = PROBE_STAGE_AUTH;
			break;
		case PROBE_SIGN:
			if (!verified)
				return bg_errorf(
					err, EPROTO,
					"ssh %s: probe child asked to sign before the host "
					"key check",
					pp->where);
			r = probe_sign_for_child(pp, &h, buf, &n_signed);
			if (r < 0)
				return bg_error(err, -r, "ssh %s: probe child", pp->where);
			break;
		case PROBE_RESULT:
			if (h.a == PROBE_STAGE_DONE && h.b == 0 && verified)
				return 0;
			sanitize_text(text, buf, h.len);
			if (h.a == PROBE_STAGE_SETUP)
				return bg_errorf(err, h.b < 0 ? -h.b : EIO, "ssh %s: %s", pp->where,
						 text);
			return bg_errorf(err, libssh2_errno(h.b), "ssh %s: %s", pp->where, text);
		default:
			return bg_errorf(err, EPROTO, "ssh %s: probe child sent message type %u",
					 pp->where, h.type);
		}
	}
}

static void probe_keys(const struct ssh_target *t, const char *where, int timeout_ms,
		       struct authkey_list *keys)
{
	const char *sock = getenv("SSH_AUTH_SOCK");
	struct bg_err e = { 0 };

	if (t->identity) {
		_cleanup_free_ char *pub = xasprintf("%s.pub", t->identity);

		if (authkey_add_pubfile(keys, pub, &e) < 0)
			log_debug("ssh %s: key '%s' not usable: %s", where, t->identity, e.msg);
	}
	bg_err_clear(&e);
	if (sock && *sock && authkey_add_agent(keys, sock, timeout_ms, &e) < 0)
		log_debug("ssh %s: agent not usable: %s", where, e.msg);
}

int ssh_probe(const struct ssh_target *t, struct bg_err *err)
{
	return ssh_probe_fd(t, -1, err);
}

int ssh_probe_fd(const struct ssh_target *t, int fd, struct bg_err *err)
{
	struct authkey_list keys = { 0 };
	struct probe_sandbox_ids ids;
	_cleanup_free_ char *pref = NULL;
	struct ssh_conn c = { .fd = -1 };
	const char *const *pins = t->pin_names;
	size_t n_pins = t->n_pin_names;
	int port = t->port > 0 ? t->port : 22;
	int sp[2] = { -1, -1 }, r, status;
	pid_t pid;

	c.deadline = now_mono_ms() +
		     (t->connect_timeout_ms > 0 ? t->connect_timeout_ms : SSH_DEFAULT_TIMEOUT_MS);
	snprintf(c.where, sizeof(c.where), "%s@%s:%d", t->user ? t->user : "?",
		 t->host ? t->host : "?", port);
	c.fd = fd; /* ours from here on, whatever happens */
	if (!t->host || !t->user || !*t->user || !t->known_hosts || port > 65535) {
		r = bg_errorf(err, EINVAL, "ssh %s: incomplete target", c.where);
		goto out;
	}
	if (n_pins == 0) {
		pins = &t->host;
		n_pins = 1;
	}
	r = ssh_lib_init(err);
	if (r < 0)
		goto out;
	r = probe_sandbox_ids(&ids, err);
	if (r < 0)
		goto out;
	if (c.fd < 0)
		r = tcp_connect(&c, t->host, port, err);
	else
		tcp_tune(c.fd);
	if (r < 0)
		goto out;
	{
		struct ssh_target tt = *t;

		tt.port = port;
		pref = hostkey_pref(&tt, pins, n_pins);
	}
	probe_keys(t, c.where, remaining_ms(&c) ?: 1, &keys);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		r = bg_error(err, errno, "ssh %s: socketpair", c.where);
		goto out;
	}
	{
		struct probe_child pc = { .fd = c.fd,
					  .ctl = sp[1],
					  .t = t,
					  .pref = pref,
					  .keys = &keys,
					  .ids = &ids,
					  .deadline = c.deadline,
					  .parent = getpid() };

		pid = fork();
		if (pid < 0) {
			r = bg_error(err, errno, "ssh %s: fork", c.where);
			goto out;
		}
		if (pid == 0)
			probe_child_run(&pc);
	}
	/* The child owns the guest connection now. */
	(void)close(sp[1]);
	sp[1] = -1;
	(void)close(c.fd);
	c.fd = -1;
	{
		struct probe_parent pp = { .t = t,
					   .where = c.where,
					   .pins = pins,
					   .n_pins = n_pins,
					   .port = port,
					   .keys = &keys,
					   .agent_sock = getenv("SSH_AUTH_SOCK"),
					   .deadline = c.deadline,
					   .ctl = sp[0] };

		r = probe_serve(&pp, err);
	}
	/* Done or out of time, the child goes: it is ours and unreaped, so the pid is too. */
	(void)kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
out:
	if (sp[0] >= 0)
		(void)close(sp[0]);
	if (sp[1] >= 0)
		(void)close(sp[1]);
	if (c.fd >= 0)
		(void)close(c.fd);
	authkey_list_release(&keys);
	return r;
}

/* ---- sessions -------------------------------------------------------------------------------- */

/* Quote one word for a POSIX shell: as is when harmless, else '...' with ' as '\''. */
static void shell_quote(struct buf *b, const char *s)
{
	bool plain = *s != '\0';

	for (const char *p = s; *p && plain; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || strchr("_-./:@%+,", *p);
	if (plain) {
		buf_adds(b, s);
		return;
	}
	buf_addch(b, '\'');
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			buf_adds(b, "'\\''");
		else
			buf_addch(b, *p);
	}
	buf_addch(b, '\'');
}

static int write_all_fd(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			(void)poll(&pfd, 1, 1000);
			continue;
		}
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Wait for the socket in whatever direction libssh2 is blocked on. */
static int wait_socket(struct ssh_conn *c, int timeout_ms)
{
	int dir = libssh2_session_block_directions(c->s);
	struct pollfd p = { .fd = c->fd, .events = 0 };

	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		p.events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		p.events |= POLLOUT;
	if (!p.events)
		p.events = POLLIN;
	return poll(&p, 1, timeout_ms);
}

struct pump {
	LIBSSH2_CHANNEL *ch;
	int in_fd; /* forwarded to the channel; -1: none */
	bool in_eof;
	bool eof_sent;
	char in[16384];
	size_t in_len, in_off;
	int sig_fd; /* signalfd (SIGWINCH resize; TERM/HUP/INT end); -1: none */
	int tty_fd; /* where the window size comes from; -1: no pty */
	bool resize_pending;
};

/* Copy one stream of the channel to fd until it would block. 1 at EOF of the stream. */
static int drain(struct ssh_conn *c, struct pump *p, int stream, int fd, struct bg_err *err)
{
	char buf[32768];

	for (;;) {
		ssize_t n = libssh2_channel_read_ex(p->ch, stream, buf, sizeof(buf));
		int r;

		if (n == LIBSSH2_ERROR_EAGAIN)
			return 0;
		if (n < 0)
			return ssh_fail(c, (int)n, err, "read");
		if (n == 0)
			return 1;
		r = write_all_fd(fd, buf, (size_t)n);
		if (r < 0)
			return bg_error(err, -r, "ssh %s: write output", c->where);
	}
}

static void window_size(int fd, struct winsize *ws)
{
	memset(ws, 0, sizeof(*ws));
	if (fd < 0 || ioctl(fd, TIOCGWINSZ, ws) < 0 || ws->ws_col == 0 || ws->ws_row == 0) {
		ws->ws_col = 80;
		ws->ws_row = 24;
	}
}

/*
 * Move bytes between the channel and our fds until the remote side closes
 * its output. Returns 0, or -errno (connection lost, signal, ...).
 */
static int pump_run(struct ssh_conn *c, struct pump *p, struct bg_err *err)
{
	bool out_eof = false, err_eof = false;
	int r;

	libssh2_session_set_blocking(c->s, 0);
	for (;;) {
		struct pollfd fds[3];
		int nfds = 0, next = 0, in_idx = -1, sig_idx = -1;
		ssize_t w;

		if (!out_eof && (r = drain(c, p, 0, STDOUT_FILENO, err)) != 0) {
			if (r < 0)
				return r;
			out_eof = true;
		}
		if (!err_eof &&
		    (r = drain(c, p, SSH_EXTENDED_DATA_STDERR, STDERR_FILENO, err)) != 0) {
			if (r < 0)
				return r;
			err_eof = true;
		}
		if (libssh2_channel_eof(p->ch) && (out_eof || err_eof)) {
			/* one last drain of both streams, then we are done */
			if ((r = drain(c, p, 0, STDOUT_FILENO, err)) < 0 ||
			    (r = drain(c, p, SSH_EXTENDED_DATA_STDERR, STDERR_FILENO, err)) < 0)
				return r;
			return 0;
		}
		/* A resize that arrived with keystrokes goes out before them. */
		if (p->resize_pending) {
			struct winsize ws;
			int e;

			window_size(p->tty_fd, &ws);
			e = libssh2_channel_request_pty_size_ex(p->ch, ws.ws_col, ws.ws_row,
								ws.ws_xpixel, ws.ws_ypixel);
			if (e != LIBSSH2_ERROR_EAGAIN)
				p->resize_pending = false;
		}
		if (p->in_off < p->in_len) {
			w = libssh2_channel_write(p->ch, p->in + p->in_off, p->in_len - p->in_off);
			if (w < 0 && w != LIBSSH2_ERROR_EAGAIN)
				return ssh_fail(c, (int)w, err, "write");
			if (w > 0)
				p->in_off += (size_t)w;
		}
		if (p->in_off == p->in_len && p->in_eof && !p->eof_sent) {
			int e = libssh2_channel_send_eof(p->ch);

			if (e == 0)
				p->eof_sent = true;
			else if (e != LIBSSH2_ERROR_EAGAIN)
				p->eof_sent = true; /* the remote may have closed already */
		}
		r = libssh2_keepalive_send(c->s, &next);
		if (r != 0 && r != LIBSSH2_ERROR_EAGAIN)
			return ssh_fail(c, r, err, "keep-alive");

		fds[nfds].fd = c->fd;
		fds[nfds].events = POLLIN;
		if (libssh2_session_block_directions(c->s) & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			fds[nfds].events |= POLLOUT;
		nfds++;
		if (p->in_fd >= 0 && !p->in_eof && p->in_off == p->in_len) {
			in_idx = nfds;
			fds[nfds].fd = p->in_fd;
			fds[nfds++].events = POLLIN;
		}
		if (p->sig_fd >= 0) {
			sig_idx = nfds;
			fds[nfds].fd = p->sig_fd;
			fds[nfds++].events = POLLIN;
		}
		/* Pending stdin bytes are retried as the window opens: poll briefly. */
		r = poll(fds, (nfds_t)nfds,
			 p->in_off < p->in_len ? 50 : (next > 0 ? next * 1000 : 1000));
		if (r < 0 && errno != EINTR)
			return bg_error(err, errno, "ssh %s: poll", c->where);
		if (r <= 0)
			continue;
		if (fds[0].revents & (POLLERR | POLLNVAL))
			return bg_errorf(err, ECONNRESET, "ssh %s: connection lost", c->where);
		if (in_idx >= 0 && fds[in_idx].revents) {
			ssize_t n = read(p->in_fd, p->in, sizeof(p->in));

			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				p->in_eof = true;
			} else {
				p->in_len = (size_t)n;
				p->in_off = 0;
			}
		}
		if (sig_idx >= 0 && (fds[sig_idx].revents & POLLIN)) {
			struct signalfd_siginfo si;

			while (read(p->sig_fd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGWINCH)
					p->resize_pending = true;
				else
					return bg_errorf(err, EINTR,
							 "ssh %s: interrupted by signal %u",
							 c->where, si.ssi_signo);
			}
		}
	}
}

/* Close the channel and collect the remote exit status (128 + signal when killed). */
static int channel_finish(struct ssh_conn *c, LIBSSH2_CHANNEL *ch, int *ret_status,
			  struct bg_err *err)
{
	int64_t deadline = now_mono_ms() + SSH_CLOSE_TIMEOUT_MS;
	char *sig = NULL;
	size_t sig_len = 0;
	int rc;

	libssh2_session_set_blocking(c->s, 0);
	while ((rc = libssh2_channel_close(ch)) == LIBSSH2_ERROR_EAGAIN && now_mono_ms() < deadline)
		(void)wait_socket(c, 100);
	while ((rc = libssh2_channel_wait_closed(ch)) == LIBSSH2_ERROR_EAGAIN &&
	       now_mono_ms() < deadline)
		(void)wait_socket(c, 100);
	if (libssh2_channel_get_exit_signal(ch, &sig, &sig_len, NULL, NULL, NULL, NULL) == 0 &&
	    sig) {
		static const struct {
			const char *name;
			int num;
		} sigs[] = { { "HUP", 1 },   { "INT", 2 },   { "QUIT", 3 },  { "ILL", 4 },
			     { "ABRT", 6 },  { "FPE", 8 },   { "KILL", 9 },  { "SEGV", 11 },
			     { "PIPE", 13 }, { "ALRM", 14 }, { "TERM", 15 }, { "USR1", 10 },
			     { "USR2", 12 } };
		int num = 127; /* unknown signal */

		for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
			if (strcmp(sig, sigs[i].name) == 0)
				num = sigs[i].num;
		log_debug("ssh %s: remote command killed by SIG%s", c->where, sig);
		free(sig);
		*ret_status = 128 + num;
		return 0;
	}
	free(sig);
	*ret_status = libssh2_channel_get_exit_status(ch);
	(void)err;
	return 0;
}

/* Open a session channel on c (blocking, bounded by c's deadline). */
static int channel_open(struct ssh_conn *c, LIBSSH2_CHANNEL **ret, struct bg_err *err)
{
	LIBSSH2_CHANNEL *ch;

	c->deadline = now_mono_ms() + SSH_DEFAULT_TIMEOUT_MS;
	libssh2_session_set_blocking(c->s, 1);
	libssh2_session_set_timeout(c->s, remaining_ms(c) ?: 1);
	ch = libssh2_channel_open_session(c->s);
	if (!ch)
		return ssh_fail(c, 0, err, "open session channel");
	*ret = ch;
	return 0;
}

int ssh_exec(const struct ssh_target *t, const char *const *argv, int *ret_status,
	     struct bg_err *err)
{
	struct ssh_conn c;
	LIBSSH2_CHANNEL *ch = NULL;
	_cleanup_free_ struct pump *p = NULL;
	struct buf cmd;
	int r, rc, status = -1;

	if (!argv || !argv[0])
		return bg_errorf(err, EINVAL, "ssh: no command to run");
	buf_init(&cmd);
	for (size_t i = 0; argv[i]; i++) {
		if (i > 0)
			buf_addch(&cmd, ' ');
		shell_quote(&cmd, argv[i]);
	}
	if (cmd.len > SSH_COMMAND_MAX) {
		buf_release(&cmd);
		return bg_errorf(err, E2BIG, "ssh: command longer than %d bytes", SSH_COMMAND_MAX);
	}
	r = ssh_open(t, &c, err);
	if (r < 0) {
		buf_release(&cmd);
		return r;
	}
	r = channel_open(&c, &ch, err);
	if (r < 0)
		goto out;
	rc = libssh2_channel_exec(ch, cmd.data);
	if (rc != 0) {
		r = ssh_fail(&c, rc, err, "exec");
		goto out;
	}
	p = xcalloc(1, sizeof(*p));
	p->ch = ch;
	p->in_fd = STDIN_FILENO;
	p->sig_fd = -1;
	p->tty_fd = -1;
	r = pump_run(&c, p, err);
	if (r < 0)
		goto out;
	r = channel_finish(&c, ch, &status, err);
	if (r == 0 && ret_status)
		*ret_status = status;
out:
	if (ch)
		libssh2_channel_free(ch);
	ssh_close(&c);
	buf_release(&cmd);
	return r;
}

int ssh_shell(const struct ssh_target *t, int *ret_status, struct bg_err *err)
{
	struct ssh_conn c;
	LIBSSH2_CHANNEL *ch = NULL;
	_cleanup_free_ struct pump *p = NULL;
	struct termios saved;
	bool raw = false, masked = false;
	sigset_t set, old;
	int r, rc, status = -1;
	bool tty = isatty(STDIN_FILENO);

	r = ssh_open(t, &c, err);
	if (r < 0)
		return r;
	p = xcalloc(1, sizeof(*p));
	p->in_fd = STDIN_FILENO;
	p->sig_fd = -1;
	p->tty_fd = tty ? STDIN_FILENO : -1;
	r = channel_open(&c, &ch, err);
	if (r < 0)
		goto out;
	p->ch = ch;
	if (tty) {
		const char *term = getenv("TERM");
		struct winsize ws;

		if (!term || !*term)
			term = "xterm";
		window_size(STDIN_FILENO, &ws);
		rc = libssh2_channel_request_pty_ex(ch, term, (unsigned)strlen(term), NULL, 0,
						    ws.ws_col, ws.ws_row, ws.ws_xpixel,
						    ws.ws_ypixel);
		if (rc != 0) {
			r = ssh_fail(&c, rc, err, "request a pty");
			goto out;
		}
	}
	rc = libssh2_channel_shell(ch);
	if (rc != 0) {
		r = ssh_fail(&c, rc, err, "start a shell");
		goto out;
	}
	/* Resize and termination arrive through a signalfd; the mask is restored below. */
	sigemptyset(&set);
	sigaddset(&set, SIGWINCH);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (!tty)
		sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, &old) < 0) {
		r = bg_error(err, errno, "ssh: sigprocmask");
		goto out;
	}
	masked = true;
	p->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (p->sig_fd < 0) {
		r = bg_error(err, errno, "ssh: signalfd");
		goto out;
	}
	if (tty) {
		struct termios t_raw;

		if (tcgetattr(STDIN_FILENO, &saved) < 0) {
			r = bg_error(err, errno, "ssh: tcgetattr");
			goto out;
		}
		t_raw = saved;
		cfmakeraw(&t_raw);
		if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t_raw) < 0) {
			r = bg_error(err, errno, "ssh: tcsetattr");
			goto out;
		}
		raw = true;
	}
	r = pump_run(&c, p, err);
	if (r < 0)
		goto out;
	r = channel_finish(&c, ch, &status, err);
	if (r == 0 && ret_status)
		*ret_status = status;
out:
	/* Every path out restores the terminal and the signal mask. */
	if (raw)
		(void)tcsetattr(STDIN_FILENO, TCSADRAIN, &saved);
	if (p && p->sig_fd >= 0)
		(void)close(p->sig_fd);
	if (masked)
		(void)sigprocmask(SIG_SETMASK, &old, NULL);
	if (ch)
		libssh2_channel_free(ch);
	ssh_close(&c);
	return r;
}

/* ---- banger's client key --------------------------------------------------------------- */

static int read_pubkey(const char *pub, char **ret, struct bg_err *err)
{
	_cleanup_free_ char *data = NULL;
	char *nl;
	int r;

	r = fs_read_file(pub, SSH_PUBKEY_MAX, &data, NULL, err);
	if (r < 0)
		return r;
	nl = strchr(data, '\n');
	if (nl)
		*nl = '\0';
	if (strncmp(data, "ssh-", 4) != 0 && strncmp(data, "ecdsa-", 6) != 0)
		return bg_errorf(err, EINVAL, "ssh: '%s' is not a public key", pub);
	*ret = TAKE_PTR(data);
	return 0;
}

int ssh_client_key_ensure(const char *key_path, char **ret_pubkey, struct bg_err *err)
{
	_cleanup_free_ char *copy = xstrdup(key_path);
	_cleanup_free_ char *pub = xasprintf("%s.pub", key_path);
	_cleanup_free_ char *lock_path = xasprintf("%s.lock", key_path);
	_cleanup_close_ int lock = -1;
	const char *dir = dirname(copy);
	int64_t deadline = now_mono_ms() + SSH_KEYGEN_TIMEOUT_MS;
	struct stat st;
	int r;

	if (stat(dir, &st) < 0) {
		if (errno != ENOENT)
			return bg_error(err, errno, "ssh: stat '%s'", dir);
		r = fs_mkdir_p(dir, 0700, err);
		if (r < 0)
			return r;
	}
	/* One generator at a time (the daemon and a CLI may race on first use). */
	lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (lock < 0)
		return bg_error(err, errno, "ssh: open '%s'", lock_path);
	while (flock(lock, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return bg_error(err, errno, "ssh: lock '%s'", lock_path);
		if (now_mono_ms() >= deadline)
			return bg_errorf(err, ETIMEDOUT, "ssh: '%s' stays locked", lock_path);
		sleep_ms(10);
	}
	if (lstat(key_path, &st) == 0) {
		if (!S_ISREG(st.st_mode))
			return bg_errorf(err, EINVAL, "ssh: '%s' is not a regular file", key_path);
		if (!fs_exists(pub)) {
			/* recreate a lost public half from the private key */
			const char *argv[] = { "ssh-keygen", "-y", "-f", key_path, NULL };
			_cleanup_free_ char *out = NULL;

			r = proc_run(argv, SSH_KEYGEN_TIMEOUT_MS, &out, err);
			if (r < 0)
				return bg_err_wrap(err, "ssh: derive '%s'", pub);
			r = fs_write_atomic(pub, out, strlen(out), 0644, err);
			if (r < 0)
				return r;
		}
	} else if (errno == ENOENT) {
		const char *argv[] = { "ssh-keygen", "-t", "ed25519", "-N", "",	 "-C",
				       "banger",     "-f", key_path,  "-q", NULL };

		(void)unlink(pub); /* a stray public half without its key */
		r = proc_run(argv, SSH_KEYGEN_TIMEOUT_MS, NULL, err);
		if (r < 0)
			return bg_err_wrap(err, "ssh: generate '%s'", key_path);
		if (chmod(key_path, 0600) < 0)
			return bg_error(err, errno, "ssh: chmod '%s'", key_path);
		r = fs_fsync_parent(key_path, err);
		if (r < 0)
			return r;
	} else {
		return bg_error(err, errno, "ssh: stat '%s'", key_path);
	}
	if (ret_pubkey)
		return read_pubkey(pub, ret_pubkey, err);
	return 0;
}
