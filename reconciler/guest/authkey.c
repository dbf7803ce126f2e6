/*
 * authkey.c - the probe's user-auth keys and signer, parent side; see
 * authkey.h. SSH wire formats (RFC 4251 §5, OpenSSH PROTOCOL.key and
 * PROTOCOL.agent) are read with bounds checks: the agent and the key file
 * are trusted, the data to sign comes from the sandboxed child and is not.
 */
#include "reconciler/guest/authkey.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define KEYFILE_MAX (16 * 1024)
#define AGENT_MSG_MAX (256 * 1024)
#define AGENTC_REQUEST_IDENTITIES 11
#define AGENT_IDENTITIES_ANSWER 12
#define AGENTC_SIGN_REQUEST 13
#define AGENT_SIGN_RESPONSE 14
#define MSG_USERAUTH_REQUEST 50

static const char ed25519_name[] = "ssh-ed25519";

/* ---- wire format ------------------------------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t n;
};

static bool rd_u32(struct rd *r, uint32_t *v)
{
	if (r->n < 4)
		return false;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->n -= 4;
	return true;
}

static bool rd_u8(struct rd *r, uint8_t *v)
{
	if (r->n < 1)
		return false;
	*v = *r->p++;
	r->n--;
	return true;
}

static bool rd_str(struct rd *r, const uint8_t **s, size_t *len)
{
	uint32_t l;

	if (!rd_u32(r, &l) || l > r->n)
		return false;
	*s = r->p;
	*len = l;
	r->p += l;
	r->n -= l;
	return true;
}

static bool rd_str_is(struct rd *r, const void *want, size_t want_len)
{
	const uint8_t *s;
	size_t l;

	return rd_str(r, &s, &l) && l == want_len && memcmp(s, want, l) == 0;
}

/* ---- the list ------------------------------------------------------------------------------ */

void authkey_list_release(struct authkey_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->keys[i].blob);
	free(l->keys);
	l->keys = NULL;
	l->n = 0;
}

static void list_add(struct authkey_list *l, const uint8_t *blob, size_t len, bool agent)
{
	l->keys = xrealloc(l->keys, (l->n + 1) * sizeof(*l->keys));
	l->keys[l->n].blob = xmalloc(len ? len : 1);
	memcpy(l->keys[l->n].blob, blob, len);
	l->keys[l->n].blob_len = len;
	l->keys[l->n].agent = agent;
	l->n++;
}

int authkey_add_pubfile(struct authkey_list *l, const char *pub_path, struct bg_err *err)
{
	_cleanup_free_ char *data = NULL;
	_cleanup_free_ uint8_t *blob = NULL;
	size_t blob_len = 0;
	char *b64, *end;
	struct rd r;
	int rr;

	rr = fs_read_file(pub_path, KEYFILE_MAX, &data, NULL, err);
	if (rr < 0)
		return rr;
	if (strncmp(data, "ssh-ed25519 ", 12) != 0)
		return bg_errorf(err, EINVAL, "'%s' is not an ssh-ed25519 public key", pub_path);
	b64 = data + 12;
	end = b64 + strcspn(b64, " \t\r\n");
	if (base64_decode(b64, (size_t)(end - b64), &blob, &blob_len) < 0)
		return bg_errorf(err, EINVAL, "'%s': bad base64", pub_path);
	r = (struct rd){ blob, blob_len };
	{
		const uint8_t *k;
		size_t kl;

		if (!rd_str_is(&r, ed25519_name, strlen(ed25519_name)) || !rd_str(&r, &k, &kl) ||
		    kl != 32 || r.n != 0)
			return bg_errorf(err, EINVAL, "'%s': malformed ssh-ed25519 key", pub_path);
	}
	list_add(l, blob, blob_len, false);
	return 0;
}

/* ---- the agent ----------------------------------------------------------------------------- */

static int agent_io(int fd, int64_t deadline, bool out, uint8_t *p, size_t n)
{
	while (n > 0) {
		struct pollfd pfd = { .fd = fd, .events = out ? POLLOUT : POLLIN };
		int64_t left = deadline - now_mono_ms();
		ssize_t k;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
		k = out ? send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
			: recv(fd, p, n, MSG_DONTWAIT);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -ECONNRESET;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* One request/answer with the agent at sock. *ret owned (type byte first). */
static int agent_call(const char *sock, int timeout_ms, const struct buf *req, uint8_t **ret,
		      size_t *ret_len, struct bg_err *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int64_t deadline = now_mono_ms() + timeout_ms;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ uint8_t *ans = NULL;
	struct buf msg;
	uint8_t hdr[4];
	uint32_t len;
	int r;

	if (strlen(sock) >= sizeof(a.sun_path))
		return bg_errorf(err, ENAMETOOLONG, "ssh agent '%s': path too long", sock);
	strcpy(a.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return bg_error(err, errno, "ssh agent: socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return bg_error(err, errno, "ssh agent '%s': connect", sock);
	buf_init(&msg);
	buf_add_be32(&msg, (uint32_t)req->len);
	buf_add(&msg, req->data, req->len);
	r = agent_io(fd, deadline, true, (uint8_t *)msg.data, msg.len);
	buf_release(&msg);
	if (r >= 0)
		r = agent_io(fd, deadline, false, hdr, 4);
	if (r < 0)
		return bg_error(err, -r, "ssh agent '%s'", sock);
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (len == 0 || len > AGENT_MSG_MAX)
		return bg_errorf(err, EPROTO, "ssh agent '%s': bad answer length %u", sock, len);
	ans = xmalloc(len);
	r = agent_io(fd, deadline, false, ans, len);
	if (r < 0)
		return bg_error(err, -r, "ssh agent '%s'", sock);
	*ret = TAKE_PTR(ans);
	*ret_len = len;
	return 0;
}

int authkey_add_agent(struct authkey_list *l, const char *sock, int timeout_ms, struct bg_err *err)
{
	_cleanup_free_ uint8_t *ans = NULL;
	struct buf req;
	size_t len = 0;
	struct rd r;
	uint8_t type;
	uint32_t n;
	int rr;

	buf_init(&req);
	buf_addch(&req, AGENTC_REQUEST_IDENTITIES);
	rr = agent_call(sock, timeout_ms, &req, &ans, &len, err);
	buf_release(&req);
	if (rr < 0)
		return rr;
	r = (struct rd){ ans, len };
	if (!rd_u8(&r, &type) || type != AGENT_IDENTITIES_ANSWER || !rd_u32(&r, &n))
		return bg_errorf(err, EPROTO, "ssh agent '%s': bad identities answer", sock);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *blob, *comment;
		size_t bl, cl;

		if (!rd_str(&r, &blob, &bl) || !rd_str(&r, &comment, &cl))
			return bg_errorf(err, EPROTO, "ssh agent '%s': truncated identities", sock);
		if (bl > 0 && bl <= AUTHKEY_BLOB_MAX)
			list_add(l, blob, bl, true);
	}
	return 0;
}

static int agent_sign(const char *sock, int timeout_ms, const struct authkey *k,
		      const uint8_t *data, size_t len, uint8_t **ret_sig, size_t *ret_len,
		      struct bg_err *err)
{
	_cleanup_free_ uint8_t *ans = NULL;
	const uint8_t *sig, *alg;
	size_t alen = 0, sl, al;
	struct buf req;
	struct rd r;
	uint8_t type;
	int rr;

	buf_init(&req);
	buf_addch(&req, AGENTC_SIGN_REQUEST);
	buf_add_str32(&req, k->blob, k->blob_len);
	buf_add_str32(&req, data, len);
	buf_add_be32(&req, 0);
	rr = agent_call(sock, timeout_ms, &req, &ans, &alen, err);
	buf_release(&req);
	if (rr < 0)
		return rr;
	r = (struct rd){ ans, alen };
	if (!rd_u8(&r, &type) || type != AGENT_SIGN_RESPONSE || !rd_str(&r, &sig, &sl))
		return bg_errorf(err, EACCES, "ssh agent '%s' refused to sign", sock);
	/* The answer is a signature blob (string algorithm, string signature): keep the latter. */
	r = (struct rd){ sig, sl };
	if (!rd_str(&r, &alg, &al) || !rd_str(&r, &sig, &sl) || sl == 0 || sl > AUTHKEY_SIG_MAX)
		return bg_errorf(err, EPROTO, "ssh agent '%s': malformed signature", sock);
	*ret_sig = xmalloc(sl);
	memcpy(*ret_sig, sig, sl);
	*ret_len = sl;
	return 0;
}

/* ---- banger's key file ------------------------------------------------------------------- */

static void wipe_free(void *p, size_t len)
{
	if (p) {
		explicit_bzero(p, len);
		free(p);
	}
}

/* Read a small file into one buffer that is never reallocated (so wiping it wipes all). */
static int read_secret(const char *path, char **ret, size_t *ret_len, struct bg_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	struct stat st;
	char *data;
	size_t got = 0;

	if (fd < 0)
		return bg_error(err, errno, "open '%s'", path);
	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "stat '%s'", path);
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > KEYFILE_MAX)
		return bg_errorf(err, EINVAL, "'%s': not a private key file", path);
	data = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			wipe_free(data, (size_t)st.st_size + 1);
			return bg_error(err, n < 0 ? errno : EIO, "read '%s'", path);
		}
		got += (size_t)n;
	}
	data[got] = '\0';
	*ret = data;
	*ret_len = got + 1;
	return 0;
}

/*
 * The ed25519 seed of an unencrypted "openssh-key-v1" file whose public key is
 * pub (32 bytes). The caller wipes seed.
 */
static int keyfile_seed(const char *path, const uint8_t *pub, uint8_t seed[ED25519_SEED_LEN],
			struct bg_err *err)
{
	static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
	static const char end[] = "-----END OPENSSH PRIVATE KEY-----";
	static const char magic[] = "openssh-key-v1"; /* and its NUL */
	char *text = NULL, *b64 = NULL, *s, *e;
	uint8_t *raw = NULL;
	size_t text_len = 0, b64_len = 0, raw_len = 0;
	int r = -EINVAL;

	r = read_secret(path, &text, &text_len, err);
	if (r < 0)
		return r;
	r = -EINVAL;
	s = strstr(text, begin);
	e = s ? strstr(s, end) : NULL;
	if (!s || !e) {
		bg_errorf(err, EINVAL, "'%s' is not an OpenSSH private key", path);
		goto out;
	}
	s += strlen(begin);
	b64 = xmalloc((size_t)(e - s) + 1);
	for (; s < e; s++)
		if (*s != '\n' && *s != '\r' && *s != ' ' && *s != '\t')
			b64[b64_len++] = *s;
	if (base64_decode(b64, b64_len, &raw, &raw_len) < 0) {
		bg_errorf(err, EINVAL, "'%s': bad base64", path);
		goto out;
	}
	{
		struct rd rd = { raw, raw_len }, priv;
		const uint8_t *p, *k;
		size_t pl, kl;
		uint32_t n, c1, c2;

		if (raw_len < sizeof(magic) || memcmp(raw, magic, sizeof(magic)) != 0) {
			bg_errorf(err, EINVAL, "'%s' is not an OpenSSH private key", path);
			goto out;
		}
		rd.p += sizeof(magic);
		rd.n -= sizeof(magic);
		if (!rd_str_is(&rd, "none", 4) || !rd_str_is(&rd, "none", 4) ||
		    !rd_str(&rd, &p, &pl) || !rd_u32(&rd, &n) || n != 1 || !rd_str(&rd, &p, &pl) ||
		    !rd_str(&rd, &p, &pl)) {
			bg_errorf(err, EINVAL, "'%s': encrypted or not one key", path);
			goto out;
		}
		priv = (struct rd){ p, pl };
		if (!rd_u32(&priv, &c1) || !rd_u32(&priv, &c2) || c1 != c2 ||
		    !rd_str_is(&priv, ed25519_name, strlen(ed25519_name)) ||
		    !rd_str(&priv, &p, &pl) || pl != 32 || !rd_str(&priv, &k, &kl) || kl != 64 ||
		    memcmp(p, pub, 32) != 0 || memcmp(k + 32, pub, 32) != 0) {
			bg_errorf(err, EINVAL, "'%s': not the ed25519 key of its .pub", path);
			goto out;
		}
		memcpy(seed, k, ED25519_SEED_LEN);
		r = 0;
	}
out:
	wipe_free(raw, raw_len);
	wipe_free(b64, b64_len);
	wipe_free(text, text_len);
	return r;
}

static int file_sign(const char *identity, const struct authkey *k, const uint8_t *data, size_t len,
		     uint8_t **ret_sig, size_t *ret_len, struct bg_err *err)
{
	uint8_t seed[ED25519_SEED_LEN], sig[ED25519_SIG_LEN];
	struct rd rd = { k->blob, k->blob_len };
	const uint8_t *pub;
	size_t pl;
	int r;

	if (!identity)
		return bg_errorf(err, EINVAL, "no identity file to sign with");
	if (!rd_str_is(&rd, ed25519_name, strlen(ed25519_name)) || !rd_str(&rd, &pub, &pl) ||
	    pl != 32)
		return bg_errorf(err, EINVAL, "'%s': not an ssh-ed25519 key", identity);
	r = keyfile_seed(identity, pub, seed, err);
	if (r < 0)
		return r;
	r = ed25519_sign(seed, data, len, sig);
	explicit_bzero(seed, sizeof(seed));
	if (r < 0)
		return bg_error(err, -r, "'%s': ed25519 signature failed", identity);
	*ret_sig = xmalloc(sizeof(sig));
	memcpy(*ret_sig, sig, sizeof(sig));
	*ret_len = sizeof(sig);
	return 0;
}

/* ---- signing ----------------------------------------------------------------------------- */

bool authkey_userauth_data_ok(const uint8_t *data, size_t len, const char *user,
			      const uint8_t *blob, size_t blob_len)
{
	struct rd r = { data, len }, kr = { blob, blob_len };
	const uint8_t *sid, *alg, *kalg;
	size_t sl, al, kal;
	uint8_t type, has_sig;

	if (!rd_str(&kr, &kalg, &kal))
		return false;
	return rd_str(&r, &sid, &sl) && sl > 0 && sl <= 64 && rd_u8(&r, &type) &&
	       type == MSG_USERAUTH_REQUEST && rd_str_is(&r, user, strlen(user)) &&
	       rd_str_is(&r, "ssh-connection", 14) && rd_str_is(&r, "publickey", 9) &&
	       rd_u8(&r, &has_sig) && has_sig == 1 && rd_str(&r, &alg, &al) && al == kal &&
	       memcmp(alg, kalg, al) == 0 && rd_str_is(&r, blob, blob_len) && r.n == 0;
}

int authkey_sign(const struct authkey *k, const char *identity, const char *agent_sock,
		 int timeout_ms, const uint8_t *data, size_t len, uint8_t **ret_sig,
		 size_t *ret_len, struct bg_err *err)
{
	if (k->agent) {
		if (!agent_sock)
			return bg_errorf(err, EINVAL, "no ssh agent to sign with");
		return agent_sign(agent_sock, timeout_ms, k, data, len, ret_sig, ret_len, err);
	}
	return file_sign(identity, k, data, len, ret_sig, ret_len, err);
}
