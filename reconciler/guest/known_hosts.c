/*
 * known_hosts.c - banger's own OpenSSH-format known_hosts: a line iterator
 * with OpenSSH's parsing rules (hostfile.c hostkeys_foreach()), the host-key
 * decision of check_hostkeys_by_key_or_type(), trust-on-first-use pinning by
 * one O_APPEND write, and removal by lock file + temp + fsync + rename.
 * libssh2's knownhost code is not used (see RELIABILITY.md §1.5 for why).
 *
 * Where we differ from OpenSSH, we are stricter:
 *  - a line that names the host (no marker) but whose key cannot be parsed
 *    makes the host CHANGED, not NEW: we never re-pin over an entry we cannot
 *    read. The exception is a last line without its newline (a torn append
 *    after a crash), which is skipped as OpenSSH would;
 *  - certificate key types and types OpenSSH 9.2 does not know in plain
 *    lines count as such unparsable entries;
 *  - ECDSA points are checked for form (uncompressed, right length), not for
 *    being on the curve (that needs libcrypto's EC code).
 */
#include "reconciler/guest/known_hosts.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define KH_HASH_MAGIC "|1|"
#define KH_MAX_QUERIES 32
#define KH_HOST_MAX 255
#define KH_SUBPATTERN_MAX 1024 /* OpenSSH match_pattern_list() sub[] */
#define KH_MARKER_LEN 32       /* OpenSSH check_markers() marker[] */
#define KH_LOCK_TIMEOUT_MS 10000
#define KH_BIGNUM_MAX 2048 /* OpenSSH SSHBUF_MAX_BIGNUM: 16384 bits */
#define KH_RSA_MIN_BITS 1024

enum kh_line_status {
	KH_LINE_COMMENT, /* blank or '#' */
	KH_LINE_VALID,
	KH_LINE_INVALID, /* skipped; see 'why' */
	KH_LINE_STATUS_MAX
};

enum kh_marker {
	KH_MARKER_NONE,
	KH_MARKER_CA,	   /* @cert-authority */
	KH_MARKER_REVOKED, /* @revoked */
	KH_MARKER_ERROR,   /* unknown or repeated marker: the line is invalid */
	KH_MARKER_MAX
};

/* A parsed public key: its plain type and canonical wire encoding. */
struct kh_key {
	char type[64];
	struct buf blob;
};

/* One line as the iterator reports it. Everything is borrowed for the callback. */
struct kh_line {
	unsigned lineno; /* 1-based */
	const char *raw; /* the line's bytes without its '\n' */
	size_t raw_len;
	bool has_newline; /* false only for a last line without '\n' */
	enum kh_line_status status;
	enum kh_marker marker;
	uint32_t match;		  /* bit i: query i matches the host field (wildcards too) */
	uint32_t exact;		  /* bit i: query i is named literally or by its hash */
	const char *why;	  /* INVALID: the reason */
	const struct kh_key *key; /* VALID: the key */
};

typedef int (*kh_line_fn)(const struct kh_line *l, void *arg);

const char *kh_verdict_to_string(enum kh_verdict v)
{
	static const char *const names[KH_VERDICT_MAX] = {
		[KH_NEW] = "new",
		[KH_OK] = "ok",
		[KH_CHANGED] = "changed",
		[KH_REVOKED] = "revoked",
	};

	if ((unsigned)v >= KH_VERDICT_MAX)
		return NULL;
	return names[v];
}

/* ---- SSH wire format ---------------------------------------------------------- */

struct wire {
	const uint8_t *p;
	size_t n;
};

static bool wire_string(struct wire *w, const uint8_t **ret, size_t *ret_len)
{
	uint32_t len;

	if (w->n < 4)
		return false;
	len = (uint32_t)w->p[0] << 24 | (uint32_t)w->p[1] << 16 | (uint32_t)w->p[2] << 8 | w->p[3];
	if (len > w->n - 4)
		return false;
	*ret = w->p + 4;
	*ret_len = len;
	w->p += 4 + len;
	w->n -= 4 + len;
	return true;
}

static bool wire_string_is(struct wire *w, const char *want)
{
	const uint8_t *s;
	size_t len;

	return wire_string(w, &s, &len) && len == strlen(want) && memcmp(s, want, len) == 0;
}

static void put_string(struct buf *b, const void *data, size_t len)
{
	uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			   (uint8_t)len };

	buf_add(b, hdr, 4);
	buf_add(b, data, len);
}

/*
 * Read an mpint as OpenSSH's sshbuf_get_bignum2() does (no negative values,
 * at most KH_BIGNUM_MAX bytes after an optional 0x00) and append its minimal
 * encoding to b. *ret_bits gets the number of significant bits.
 */
static bool wire_mpint(struct wire *w, struct buf *b, size_t *ret_bits)
{
	const uint8_t *d;
	size_t len, bits = 0;

	if (!wire_string(w, &d, &len))
		return false;
	if (len > 0 && (d[0] & 0x80))
		return false;
	if (len > KH_BIGNUM_MAX + 1 || (len == KH_BIGNUM_MAX + 1 && d[0] != 0))
		return false;
	while (len > 0 && d[0] == 0) {
		d++;
		len--;
	}
	if (len > 0) {
		bits = (len - 1) * 8;
		for (uint8_t top = d[0]; top; top >>= 1)
			bits++;
	}
	if (len > 0 && (d[0] & 0x80)) {
		uint8_t hdr[5] = { (uint8_t)((len + 1) >> 24), (uint8_t)((len + 1) >> 16),
				   (uint8_t)((len + 1) >> 8), (uint8_t)(len + 1), 0 };

		buf_add(b, hdr, 5);
		buf_add(b, d, len);
	} else {
		put_string(b, d, len);
	}
	if (ret_bits)
		*ret_bits = bits;
	return true;
}

enum kh_keykind {
	KT_ED25519,
	KT_SK_ED25519,
	KT_ECDSA,
	KT_SK_ECDSA,
	KT_RSA,
	KT_DSA
};

static const struct kh_keytype {
	const char *name; /* as in the blob and the type field */
	enum kh_keykind kind;
	const char *curve;
	size_t point_len; /* uncompressed EC point: 0x04 || X || Y */
} kh_keytypes[] = {
	{ "ssh-ed25519", KT_ED25519, NULL, 0 },
	{ "sk-ssh-ed25519@openssh.com", KT_SK_ED25519, NULL, 0 },
	{ "ecdsa-sha2-nistp256", KT_ECDSA, "nistp256", 65 },
	{ "ecdsa-sha2-nistp384", KT_ECDSA, "nistp384", 97 },
	{ "ecdsa-sha2-nistp521", KT_ECDSA, "nistp521", 133 },
	{ "sk-ecdsa-sha2-nistp256@openssh.com", KT_SK_ECDSA, "nistp256", 65 },
	{ "ssh-rsa", KT_RSA, NULL, 0 },
	{ "ssh-dss", KT_DSA, NULL, 0 },
};

static const struct kh_keytype *keytype_find(const uint8_t *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(kh_keytypes); i++)
		if (strlen(kh_keytypes[i].name) == len &&
		    memcmp(kh_keytypes[i].name, name, len) == 0)
			return &kh_keytypes[i];
	return NULL;
}

/* Does a type field name the blob's type? OpenSSH also takes RSA signature names. */
static bool field_type_matches(const char *field, size_t field_len, const char *blob_type)
{
	if (strlen(blob_type) == field_len && memcmp(field, blob_type, field_len) == 0)
		return true;
	if (strcmp(blob_type, "ssh-rsa") == 0)
		return (field_len == 12 && memcmp(field, "rsa-sha2-256", 12) == 0) ||
		       (field_len == 12 && memcmp(field, "rsa-sha2-512", 12) == 0);
	return false;
}

static void kh_key_init(struct kh_key *k)
{
	k->type[0] = '\0';
	buf_init(&k->blob);
}

static void kh_key_release(struct kh_key *k)
{
	buf_release(&k->blob);
}

/*
 * Parse an SSH public key blob into k (canonical encoding, so equal keys
 * compare equal byte for byte). Returns NULL or why it is not a key.
 */
static const char *kh_key_parse(const uint8_t *data, size_t len, struct kh_key *k)
{
	struct wire w = { data, len };
	const struct kh_keytype *kt;
	const uint8_t *s;
	size_t slen, bits;
	struct buf *b = &k->blob;

	buf_reset(b);
	if (!wire_string(&w, &s, &slen))
		return "truncated key blob";
	kt = keytype_find(s, slen);
	if (!kt)
		return "unsupported key type in blob";
	snprintf(k->type, sizeof(k->type), "%s", kt->name);
	put_string(b, s, slen);
	switch (kt->kind) {
	case KT_ED25519:
	case KT_SK_ED25519:
		if (!wire_string(&w, &s, &slen) || slen != 32)
			return "bad ed25519 key";
		put_string(b, s, slen);
		break;
	case KT_ECDSA:
	case KT_SK_ECDSA:
		if (!wire_string_is(&w, kt->curve))
			return "ecdsa curve does not match the key type";
		put_string(b, kt->curve, strlen(kt->curve));
		if (!wire_string(&w, &s, &slen) || slen != kt->point_len || s[0] != 0x04)
			return "bad ecdsa point";
		put_string(b, s, slen);
		break;
	case KT_RSA:
		if (!wire_mpint(&w, b, NULL) || !wire_mpint(&w, b, &bits))
			return "bad rsa key";
		if (bits < KH_RSA_MIN_BITS)
			return "rsa key too small";
		break;
	case KT_DSA:
		for (int i = 0; i < 4; i++)
			if (!wire_mpint(&w, b, NULL))
				return "bad dsa key";
		break;
	}
	if (kt->kind == KT_SK_ED25519 || kt->kind == KT_SK_ECDSA) {
		if (!wire_string(&w, &s, &slen))
			return "missing security key application";
		put_string(b, s, slen);
	}
	if (w.n != 0)
		return "trailing data in key blob";
	return NULL;
}

void known_hosts_fingerprint(const uint8_t *blob, size_t len, char out[128])
{
	uint8_t md[SHA256_LEN];
	_cleanup_free_ char *b64 = NULL;
	size_t n;

	sha256(blob, len, md);
	b64 = base64_encode(md, sizeof(md));
	n = strlen(b64);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	snprintf(out, 128, "SHA256:%.*s", (int)n, b64);
}

/* ---- host names and patterns --------------------------------------------------------- */

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * A name we accept as a query and write into a line: an IP address or a DNS
 * name. Everything with meaning in the file format (',', '*', '?', '!',
 * '[', ']', '|', '#', '@', whitespace) is refused.
 */
static bool kh_host_valid(const char *h)
{
	size_t n = h ? strlen(h) : 0;

	if (n == 0 || n > KH_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == ':'))
			return false;
	}
	return h[0] != '-';
}

/* The name OpenSSH looks up (put_host_port()): "host" for port 22 (or 0), else "[host]:port". */
static int kh_query_name(const char *host, int port, char **ret, struct bg_err *err)
{
	char *q;

	if (!kh_host_valid(host))
		return bg_errorf(err, EINVAL, "known_hosts: invalid host name '%s'",
				 host ? host : "(null)");
	if (port < 0 || port > 65535)
		return bg_errorf(err, EINVAL, "known_hosts: invalid port %d", port);
	if (port == 0 || port == 22)
		q = xstrdup(host);
	else
		q = xasprintf("[%s]:%d", host, port);
	for (char *p = q; *p; p++)
		*p = ascii_lower(*p);
	*ret = q;
	return 0;
}

/* Glob match with '*' and '?' (OpenSSH match_pattern()), pattern compared lowercased. */
static bool wild_match(const char *s, size_t sn, const char *p, size_t pn)
{
	size_t si = 0, pi = 0, star = (size_t)-1, mark = 0;

	while (si < sn) {
		if (pi < pn && p[pi] == '*') {
			star = pi++;
			mark = si;
		} else if (pi < pn && (p[pi] == '?' || ascii_lower(p[pi]) == s[si])) {
			si++;
			pi++;
		} else if (star != (size_t)-1) {
			pi = star + 1;
			si = ++mark;
		} else {
			return false;
		}
	}
	while (pi < pn && p[pi] == '*')
		pi++;
	return pi == pn;
}

/*
 * OpenSSH match_pattern_list(): 1 when a pattern matches, -1 when a negated
 * one does (that rejects the line), 0 otherwise. A subpattern of 1023 chars
 * or more makes the whole list fail, as there.
 */
static int match_pattern_list(const char *s, size_t sn, const char *pat, size_t pn, bool *ret_exact)
{
	bool positive = false, exact = false;
	size_t i = 0;

	while (i < pn) {
		bool neg = false;
		size_t start;

		if (pat[i] == '!') {
			neg = true;
			i++;
		}
		start = i;
		while (i < pn && pat[i] != ',')
			i++;
		if (i - start >= KH_SUBPATTERN_MAX - 1)
			return 0;
		if (wild_match(s, sn, pat + start, i - start)) {
			if (neg)
				return -1;
			positive = true;
			if (!memchr(pat + start, '*', i - start) &&
			    !memchr(pat + start, '?', i - start))
				exact = true;
		}
		if (i < pn)
			i++; /* the comma */
	}
	*ret_exact = exact;
	return positive ? 1 : 0;
}

/*
 * Does the hashed field "|1|base64(salt)|base64(HMAC-SHA1(salt, q))" name q?
 * -EINVAL for a malformed hash (OpenSSH extract_salt() rules: 20-byte salt).
 */
static int match_hashed(const char *field, size_t flen, const char *q)
{
	const size_t magic = strlen(KH_HASH_MAGIC);
	const char *salt_b64, *bar;
	_cleanup_free_ uint8_t *salt = NULL;
	_cleanup_free_ char *salt_enc = NULL, *mac_enc = NULL;
	uint8_t mac[SHA1_LEN];
	size_t salt_len, b64len;

	if (flen < magic || memcmp(field, KH_HASH_MAGIC, magic) != 0)
		return -EINVAL;
	salt_b64 = field + magic;
	bar = memchr(salt_b64, '|', flen - magic);
	if (!bar)
		return -EINVAL;
	b64len = (size_t)(bar - salt_b64);
	if (b64len == 0 || b64len > 1024)
		return -EINVAL;
	if (base64_decode(salt_b64, b64len, &salt, &salt_len) < 0 || salt_len != SHA1_LEN)
		return -EINVAL;
	hmac_sha1(salt, salt_len, q, strlen(q), mac);
	salt_enc = base64_encode(salt, salt_len);
	mac_enc = base64_encode(mac, sizeof(mac));
	return flen == magic + strlen(salt_enc) + 1 + strlen(mac_enc) &&
	       memcmp(salt_b64, salt_enc, strlen(salt_enc)) == 0 &&
	       salt_b64[strlen(salt_enc)] == '|' &&
	       memcmp(salt_b64 + strlen(salt_enc) + 1, mac_enc, strlen(mac_enc)) == 0;
}

/* ---- the line iterator ------------------------------------------------------------------- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* OpenSSH check_markers(): a marker ends at the first ' ' of the line, else the first '\t'. */
static enum kh_marker parse_marker(const char *line, size_t len, size_t *pos)
{
	enum kh_marker m = KH_MARKER_NONE;
	size_t p = *pos;

	while (p < len && line[p] == '@') {
		const char *sp;
		size_t mlen;

		if (m != KH_MARKER_NONE)
			return KH_MARKER_ERROR;
		sp = memchr(line + p, ' ', len - p);
		if (!sp)
			sp = memchr(line + p, '\t', len - p);
		if (!sp)
			return KH_MARKER_ERROR;
		mlen = (size_t)(sp - (line + p));
		if (mlen <= 1 || mlen >= KH_MARKER_LEN)
			return KH_MARKER_ERROR;
		if (mlen == 15 && memcmp(line + p, "@cert-authority", 15) == 0)
			m = KH_MARKER_CA;
		else if (mlen == 8 && memcmp(line + p, "@revoked", 8) == 0)
			m = KH_MARKER_REVOKED;
		else
			return KH_MARKER_ERROR;
		p += mlen;
		while (p < len && is_blank(line[p]))
			p++;
	}
	*pos = p;
	return m;
}

/* Decode the base64 key token, dropping the whitespace OpenSSH's b64_pton() skips ('\r'...). */
static int decode_blob(const char *tok, size_t len, uint8_t **ret, size_t *ret_len)
{
	_cleanup_free_ char *clean = xmalloc(len + 1);
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		if (tok[i] != '\r' && tok[i] != '\v' && tok[i] != '\f')
			clean[n++] = tok[i];
	if (n == 0)
		return -EINVAL;
	return base64_decode(clean, n, ret, ret_len);
}

/*
 * Fill l (raw, lineno, has_newline set by the caller) by parsing it against
 * the queries. key is where a VALID line's key goes.
 */
static void parse_line(struct kh_line *l, struct kh_key *key, char *const *queries, size_t nq)
{
	const char *nul = memchr(l->raw, '\0', l->raw_len);
	size_t len = nul ? (size_t)(nul - l->raw) : l->raw_len; /* OpenSSH stops at a NUL */
	const char *s = l->raw;
	size_t p = 0, host_start, host_len, type_start, type_len, blob_start;
	_cleanup_free_ uint8_t *blob = NULL;
	size_t blob_len;
	bool hashed;

	l->status = KH_LINE_INVALID;
	l->marker = KH_MARKER_NONE;
	l->match = l->exact = 0;
	l->why = NULL;
	l->key = NULL;

	while (p < len && is_blank(s[p]))
		p++;
	if (p == len || s[p] == '#') {
		l->status = KH_LINE_COMMENT;
		return;
	}
	l->marker = parse_marker(s, len, &p);
	if (l->marker == KH_MARKER_ERROR) {
		l->why = "invalid marker";
		return;
	}
	host_start = p;
	while (p < len && !is_blank(s[p]))
		p++;
	host_len = p - host_start;
	hashed = host_len > 0 && s[host_start] == '|';
	for (size_t i = 0; i < nq; i++) {
		bool exact = false;
		int r;

		if (hashed)
			r = match_hashed(s + host_start, host_len, queries[i]);
		else
			r = match_pattern_list(queries[i], strlen(queries[i]), s + host_start,
					       host_len, &exact);
		if (r == -EINVAL) {
			l->match = l->exact = 0;
			l->why = "bad host hash";
			return;
		}
		if (r == 1) {
			l->match |= 1u << i;
			if (hashed || exact)
				l->exact |= 1u << i;
		}
	}
	if (l->raw_len > KH_LINE_MAX) {
		l->why = "line too long";
		return;
	}
	while (p < len && is_blank(s[p]))
		p++;
	if (p == len || s[p] == '#') {
		l->why = "truncated before key type";
		return;
	}
	type_start = p;
	while (p < len && !is_blank(s[p]))
		p++;
	type_len = p - type_start;
	while (p < len && is_blank(s[p]))
		p++;
	if (p == len) {
		l->why = "missing key";
		return;
	}
	blob_start = p;
	while (p < len && !is_blank(s[p]))
		p++;
	if (decode_blob(s + blob_start, p - blob_start, &blob, &blob_len) < 0) {
		l->why = "bad base64 key";
		return;
	}
	l->why = kh_key_parse(blob, blob_len, key);
	if (l->why)
		return;
	if (!field_type_matches(s + type_start, type_len, key->type)) {
		l->why = "key type field does not match the key";
		return;
	}
	l->status = KH_LINE_VALID;
	l->key = key;
}

/*
 * Call fn for every line of data (OpenSSH hostkeys_foreach() style), with the
 * host field matched against queries (lowercased lookup names, at most
 * KH_MAX_QUERIES). Stops early when fn returns non-zero and returns that.
 */
static int kh_foreach(const char *data, size_t len, char *const *queries, size_t nq, kh_line_fn fn,
		      void *arg)
{
	struct kh_key key;
	size_t off = 0;
	unsigned lineno = 0;
	int r = 0;

	if (nq > KH_MAX_QUERIES)
		return -E2BIG;
	kh_key_init(&key);
	while (off < len) {
		const char *nl = memchr(data + off, '\n', len - off);
		struct kh_line l = { 0 };

		l.lineno = ++lineno;
		l.raw = data + off;
		l.raw_len = nl ? (size_t)(nl - (data + off)) : len - off;
		l.has_newline = nl != NULL;
		off += l.raw_len + (nl ? 1 : 0);
		parse_line(&l, &key, queries, nq);
		r = fn(&l, arg);
		if (r != 0)
			break;
	}
	kh_key_release(&key);
	return r;
}

/* ---- the host-key decision ------------------------------------------------------------- */

/* What the lines say about one query name (first line of each kind). */
struct kh_query_state {
	unsigned ok_line;      /* a plain line with the offered key */
	unsigned revoked_line; /* an @revoked line with the offered key */
	unsigned changed_line; /* a plain line with another key */
	char changed_type[64];
	char changed_fp[128];
	unsigned bad_line; /* an unparsable plain line naming the host */
	const char *bad_why;
};

struct check_ctx {
	const char *path; /* for messages */
	const struct kh_key *offered;
	char *const *queries;
	size_t nq;
	struct kh_query_state st[KH_MAX_QUERIES];
};

static bool key_equal(const struct kh_key *a, const struct kh_key *b)
{
	return strcmp(a->type, b->type) == 0 && a->blob.len == b->blob.len &&
	       memcmp(a->blob.data, b->blob.data, a->blob.len) == 0;
}

static int check_line(const struct kh_line *l, void *arg)
{
	struct check_ctx *c = arg;

	if (l->status == KH_LINE_COMMENT)
		return 0;
	if (l->status == KH_LINE_INVALID) {
		/*
		 * OpenSSH skips invalid lines. We do too, except a plain line that
		 * names the host: it may be the pin itself, so the host is not
		 * "new". A last line without its newline is a torn append.
		 */
		if (!l->match || l->marker != KH_MARKER_NONE || !l->has_newline) {
			log_debug("known_hosts %s:%u: skipping invalid line (%s)", c->path,
				  l->lineno, l->why);
			return 0;
		}
		for (size_t i = 0; i < c->nq; i++) {
			if (!(l->match & (1u << i)) || c->st[i].bad_line)
				continue;
			c->st[i].bad_line = l->lineno;
			c->st[i].bad_why = l->why;
			log_warn("known_hosts %s:%u: invalid line for '%s' (%s), not trusting it",
				 c->path, l->lineno, c->queries[i], l->why);
		}
		return 0;
	}
	for (size_t i = 0; i < c->nq; i++) {
		struct kh_query_state *st = &c->st[i];
		bool same;

		if (!(l->match & (1u << i)))
			continue;
		same = key_equal(l->key, c->offered);
		switch (l->marker) {
		case KH_MARKER_CA: /* only validates certificates, never a plain key */
			break;
		case KH_MARKER_REVOKED:
			if (same && !st->revoked_line)
				st->revoked_line = l->lineno;
			break;
		case KH_MARKER_NONE:
			if (same) {
				if (!st->ok_line)
					st->ok_line = l->lineno;
			} else if (!st->changed_line) {
				st->changed_line = l->lineno;
				snprintf(st->changed_type, sizeof(st->changed_type), "%s",
					 l->key->type);
				known_hosts_fingerprint((const uint8_t *)l->key->blob.data,
							l->key->blob.len, st->changed_fp);
			}
			break;
		default:
			break;
		}
	}
	return 0;
}

/* check_hostkeys_by_key_or_type(): REVOKED beats OK beats CHANGED beats NEW. */
static enum kh_verdict state_verdict(const struct kh_query_state *st, const struct kh_key *offered,
				     struct kh_match *m)
{
	memset(m, 0, sizeof(*m));
	if (st->revoked_line) {
		m->line = st->revoked_line;
		known_hosts_fingerprint((const uint8_t *)offered->blob.data, offered->blob.len,
					m->pinned_fp);
		snprintf(m->pinned_type, sizeof(m->pinned_type), "%s", offered->type);
		return KH_REVOKED;
	}
	if (st->ok_line) {
		m->line = st->ok_line;
		return KH_OK;
	}
	if (st->changed_line) {
		m->line = st->changed_line;
		memcpy(m->pinned_fp, st->changed_fp, sizeof(m->pinned_fp));
		memcpy(m->pinned_type, st->changed_type, sizeof(m->pinned_type));
		return KH_CHANGED;
	}
	if (st->bad_line) {
		m->line = st->bad_line; /* pinned_fp stays "": the entry can't be read */
		snprintf(m->pinned_type, sizeof(m->pinned_type), "unparsable (%s)", st->bad_why);
		return KH_CHANGED;
	}
	return KH_NEW;
}

static void queries_free(char **q, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(q[i]);
}

static int queries_make(const char *const *hosts, size_t n, int port, char **q, struct bg_err *err)
{
	if (n == 0 || n > KH_MAX_QUERIES)
		return bg_errorf(err, EINVAL, "known_hosts: between 1 and %d host names needed",
				 KH_MAX_QUERIES);
	for (size_t i = 0; i < n; i++) {
		int r = kh_query_name(hosts[i], port, &q[i], err);

		if (r < 0) {
			queries_free(q, i);
			return r;
		}
	}
	return 0;
}

static int offered_parse(const uint8_t *blob, size_t len, struct kh_key *k, struct bg_err *err)
{
	const char *why = kh_key_parse(blob, len, k);

	if (why)
		return bg_errorf(err, EINVAL, "server host key is not a usable SSH public key: %s",
				 why);
	return 0;
}

/*
 * Read the whole file (at most KH_FILE_MAX). Returns 0 with the data, 1 when
 * the file does not exist, or -errno: a file we can't read is never "new".
 */
static int kh_read(const char *path, char **ret, size_t *ret_len, struct bg_err *err)
{
	struct bg_err e = { 0 };
	int r;

	r = fs_read_file(path, KH_FILE_MAX, ret, ret_len, &e);
	if (r == -ENOENT)
		return 1;
	if (r < 0)
		return bg_errorf(err, r, "known_hosts: %s", e.msg);
	return 0;
}

static int kh_check_data(const char *path, const char *data, size_t len, char *const *queries,
			 size_t nq, const struct kh_key *offered, struct check_ctx *c)
{
	memset(c, 0, sizeof(*c));
	c->path = path;
	c->offered = offered;
	c->queries = queries;
	c->nq = nq;
	return kh_foreach(data, len, queries, nq, check_line, c);
}

/* One query against file contents; 'path' only names them in messages. */
static int check_one(const char *path, const char *data, size_t data_len, const char *host,
		     int port, const uint8_t *blob, size_t len, struct kh_match *ret_match,
		     struct bg_err *err)
{
	_cleanup_free_ char *q = NULL;
	_cleanup_free_ struct check_ctx *c = NULL;
	struct kh_key offered;
	struct kh_match m;
	int r;

	r = kh_query_name(host, port, &q, err);
	if (r < 0)
		return r;
	kh_key_init(&offered);
	r = offered_parse(blob, len, &offered, err);
	if (r == 0) {
		c = xmalloc(sizeof(*c));
		r = kh_check_data(path, data, data_len, &q, 1, &offered, c);
		if (r < 0)
			r = bg_errorf(err, r, "known_hosts: '%s': parse failed", path);
	}
	if (r == 0) {
		r = (int)state_verdict(&c->st[0], &offered, &m);
		if (ret_match)
			*ret_match = m;
	}
	kh_key_release(&offered);
	return r;
}

int known_hosts_check_buffer(const char *data, size_t data_len, const char *host, int port,
			     const uint8_t *blob, size_t len, struct kh_match *ret_match,
			     struct bg_err *err)
{
	return check_one("(buffer)", data, data_len, host, port, blob, len, ret_match, err);
}

int known_hosts_check(const char *path, const char *host, int port, const uint8_t *blob, size_t len,
		      struct kh_match *ret_match, struct bg_err *err)
{
	_cleanup_free_ char *data = NULL;
	size_t data_len = 0;
	int r;

	r = kh_read(path, &data, &data_len, err);
	if (r < 0)
		return r;
	return check_one(path, r == 1 ? "" : data, r == 1 ? 0 : data_len, host, port, blob, len,
			 ret_match, err);
}

/* ---- writing ------------------------------------------------------------------------ */

/*
 * Take the separate, never-renamed lock file "<path>.lock" (O_CLOEXEC, so no
 * child inherits it) with flock op, waiting at most KH_LOCK_TIMEOUT_MS.
 * Returns the fd holding the lock.
 */
static int kh_lock(const char *path, int op, struct bg_err *err)
{
	_cleanup_free_ char *lpath = xasprintf("%s.lock", path);
	_cleanup_close_ int fd = -1;
	int64_t deadline = now_mono_ms() + KH_LOCK_TIMEOUT_MS;

	fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0)
		return bg_error(err, errno, "known_hosts: open lock '%s'", lpath);
	for (;;) {
		if (flock(fd, op | LOCK_NB) == 0)
			return TAKE_FD(fd);
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK)
			return bg_error(err, errno, "known_hosts: lock '%s'", lpath);
		if (now_mono_ms() >= deadline)
			return bg_errorf(err, ETIMEDOUT,
					 "known_hosts: '%s' is still locked after %d ms", lpath,
					 KH_LOCK_TIMEOUT_MS);
		sleep_ms(5);
	}
}

/* Create the file's directory (0700) when it is missing; an existing one is left alone. */
static int kh_ensure_dir(const char *path, struct bg_err *err)
{
	_cleanup_free_ char *copy = xstrdup(path);
	const char *dir = dirname(copy);
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return bg_errorf(err, ENOTDIR, "known_hosts: '%s' is not a directory", dir);
		return 0;
	}
	if (errno != ENOENT)
		return bg_error(err, errno, "known_hosts: stat '%s'", dir);
	return fs_mkdir_p(dir, 0700, err);
}

/*
 * Append one complete line with a single O_APPEND write (after a '\n' when
 * the file does not end with one, like OpenSSH add_host_to_hostfile()), then
 * fsync. The file is created 0600. Call with the lock held.
 */
static int kh_append(const char *path, const char *line, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *out = NULL;
	bool created = false;
	struct stat st;
	size_t len;
	ssize_t n;

	for (;;) {
		fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
		if (fd >= 0 || errno != ENOENT)
			break;
		fd = open(path,
			  O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
			  0600);
		if (fd >= 0) {
			created = true;
			break;
		}
		if (errno != EEXIST)
			break;
	}
	if (fd < 0)
		return bg_error(err, errno, "known_hosts: open '%s'", path);
	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "known_hosts: stat '%s'", path);
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "known_hosts: '%s' is not a regular file", path);
	out = xstrdup(line);
	if (st.st_size > 0) {
		char last = '\n';

		if (pread(fd, &last, 1, st.st_size - 1) != 1)
			return bg_error(err, errno ? errno : EIO, "known_hosts: read '%s'", path);
		if (last != '\n') {
			free(out);
			out = xasprintf("\n%s", line);
		}
	}
	len = strlen(out);
	do {
		n = write(fd, out, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return bg_error(err, errno, "known_hosts: append to '%s'", path);
	if ((size_t)n != len)
		return bg_errorf(err, EIO, "known_hosts: short append to '%s' (%zd of %zu bytes)",
				 path, n, len);
	if (fsync(fd) < 0)
		return bg_error(err, errno, "known_hosts: fsync '%s'", path);
	if (created)
		return fs_fsync_parent(path, err);
	return 0;
}

static int verdict_error(const char *path, const char *host, const char *query, enum kh_verdict v,
			 const struct kh_key *offered, const struct kh_match *m, struct bg_err *err)
{
	char fp[128];

	known_hosts_fingerprint((const uint8_t *)offered->blob.data, offered->blob.len, fp);
	if (v == KH_REVOKED)
		return bg_errorf(err, EKEYREJECTED,
				 "possible MITM: the host key of '%s' (%s %s) is marked @revoked "
				 "at %s:%u (pinned key %s)",
				 host, offered->type, fp, path, m->line, m->pinned_fp);
	if (!m->pinned_fp[0])
		return bg_errorf(err, EKEYREJECTED,
				 "possible MITM or a corrupt pin: %s:%u names '%s' but cannot be "
				 "read (%s); refusing to trust the offered %s %s. Remove that line "
				 "to pin again",
				 path, m->line, host, m->pinned_type, offered->type, fp);
	return bg_errorf(err, EKEYREJECTED,
			 "possible MITM: the host key of '%s' has changed: offered %s %s, pinned "
			 "%s %s at %s:%u. If the VM was re-created, remove the old pin with "
			 "'ssh-keygen -R %s -f %s' (or delete the VM)",
			 host, offered->type, fp, m->pinned_type, m->pinned_fp, path, m->line,
			 query, path);
}

/*
 * Check every query against the file; fail on the first CHANGED/REVOKED.
 * ret_new (may be NULL) gets a bit per query that is NEW.
 */
static int verify_all(const char *path, const char *const *hosts, char *const *queries, size_t nq,
		      const struct kh_key *offered, uint32_t *ret_new, struct bg_err *err)
{
	_cleanup_free_ char *data = NULL;
	_cleanup_free_ struct check_ctx *c = xmalloc(sizeof(*c));
	size_t len = 0;
	uint32_t new_mask = 0;
	int r;

	r = kh_read(path, &data, &len, err);
	if (r < 0)
		return r;
	if (r == 1) {
		data = xstrdup("");
		len = 0;
	}
	r = kh_check_data(path, data, len, queries, nq, offered, c);
	if (r < 0)
		return bg_errorf(err, r, "known_hosts: '%s': parse failed", path);
	for (size_t i = 0; i < nq; i++) {
		struct kh_match m;
		enum kh_verdict v = state_verdict(&c->st[i], offered, &m);

		if (v == KH_CHANGED || v == KH_REVOKED)
			return verdict_error(path, hosts[i], queries[i], v, offered, &m, err);
		if (v == KH_NEW)
			new_mask |= 1u << i;
	}
	if (ret_new)
		*ret_new = new_mask;
	return 0;
}

int known_hosts_verify_pin(const char *path, const char *const *hosts, size_t n_hosts, int port,
			   const uint8_t *blob, size_t len, struct bg_err *err)
{
	char *queries[KH_MAX_QUERIES] = { 0 };
	_cleanup_close_ int lock = -1;
	_cleanup_free_ char *b64 = NULL;
	struct kh_key offered;
	struct buf line;
	uint32_t new_mask = 0;
	int r;

	r = queries_make(hosts, n_hosts, port, queries, err);
	if (r < 0)
		return r;
	kh_key_init(&offered);
	buf_init(&line);
	r = offered_parse(blob, len, &offered, err);
	if (r < 0)
		goto out;
	/* Fast path without the lock: readers never need it (rewrites are renames). */
	r = verify_all(path, hosts, queries, n_hosts, &offered, &new_mask, err);
	if (r < 0 || new_mask == 0)
		goto out;
	/* Something is new: check again and append under the lock, so two banger
	 * processes never pin two different keys and a rewrite can't drop ours. */
	r = kh_ensure_dir(path, err);
	if (r < 0)
		goto out;
	lock = kh_lock(path, LOCK_EX, err);
	if (lock < 0) {
		r = lock;
		goto out;
	}
	r = verify_all(path, hosts, queries, n_hosts, &offered, &new_mask, err);
	if (r < 0 || new_mask == 0)
		goto out;
	for (size_t i = 0; i < n_hosts; i++) {
		if (!(new_mask & (1u << i)))
			continue;
		if (line.len > 0)
			buf_addch(&line, ',');
		buf_adds(&line, queries[i]);
	}
	b64 = base64_encode(offered.blob.data, offered.blob.len);
	buf_addf(&line, " %s %s\n", offered.type, b64);
	r = kh_append(path, line.data, err);
out:
	buf_release(&line);
	kh_key_release(&offered);
	queries_free(queries, n_hosts);
	return r < 0 ? r : 0;
}

/* ---- removal ---------------------------------------------------------------------- */

struct remove_ctx {
	struct buf out;
	int removed;
};

static int remove_line(const struct kh_line *l, void *arg)
{
	struct remove_ctx *c = arg;

	/*
	 * Remove plain lines (valid or not) that name a host literally or by
	 * hash; keep comments, markers, wildcard-only entries and everything
	 * else byte for byte.
	 */
	if (l->status != KH_LINE_COMMENT && l->marker == KH_MARKER_NONE && l->exact) {
		c->removed++;
		return 0;
	}
	buf_add(&c->out, l->raw, l->raw_len);
	if (l->has_newline)
		buf_addch(&c->out, '\n');
	return 0;
}

/* Write data to a temp file next to path with path's mode and owner, fsync, rename, fsync dir. */
static int kh_replace(const char *path, const struct stat *orig, const char *data, size_t len,
		      struct bg_err *err)
{
	int r = fs_write_atomic_owned(path, data, len, orig->st_mode & 07777, orig->st_uid,
				      orig->st_gid, err);

	return r < 0 ? bg_err_wrap(err, "known_hosts") : 0;
}

/*
 * Under the lock: drop every plain line naming one of the queries and, when
 * 'append' is not NULL, add that line at the end; write the result atomically
 * when it differs. A missing file is created (0600) only when there is a line
 * to add. Returns the number of lines removed.
 */
static int kh_rewrite(const char *path, char *const *queries, size_t nq, const char *append,
		      struct bg_err *err)
{
	_cleanup_free_ char *copy = NULL;
	_cleanup_free_ char *data = NULL;
	_cleanup_close_ int lock = -1;
	struct remove_ctx c = { .removed = 0 };
	struct stat st = { .st_mode = 0600, .st_uid = geteuid(), .st_gid = getegid() };
	size_t len = 0;
	int r;

	buf_init(&c.out);
	copy = xstrdup(path);
	if (!append && stat(dirname(copy), &st) < 0 && errno == ENOENT) {
		r = 0; /* no directory, no file, nothing pinned */
		goto out;
	}
	if (append) {
		r = kh_ensure_dir(path, err);
		if (r < 0)
			goto out;
	}
	lock = kh_lock(path, LOCK_EX, err);
	if (lock < 0) {
		r = lock;
		goto out;
	}
	/* Re-read under the lock: what we rename over must include every append. */
	r = kh_read(path, &data, &len, err);
	if (r < 0 || (r == 1 && !append)) {
		r = r == 1 ? 0 : r;
		goto out;
	}
	if (r == 1) {
		data = xstrdup("");
		len = 0;
		st.st_mode = 0600;
		st.st_uid = geteuid();
		st.st_gid = getegid();
	} else if (stat(path, &st) < 0) {
		r = bg_error(err, errno, "known_hosts: stat '%s'", path);
		goto out;
	}
	r = kh_foreach(data, len, queries, nq, remove_line, &c);
	if (r < 0) {
		r = bg_errorf(err, r, "known_hosts: '%s': parse failed", path);
		goto out;
	}
	if (append) {
		if (c.out.len > 0 && c.out.data[c.out.len - 1] != '\n')
			buf_addch(&c.out, '\n');
		buf_adds(&c.out, append);
	}
	if (c.out.len != len || memcmp(c.out.data ? c.out.data : "", data, len) != 0) {
		r = kh_replace(path, &st, c.out.data ? c.out.data : "", c.out.len, err);
		if (r < 0)
			goto out;
	}
	r = c.removed;
out:
	buf_release(&c.out);
	return r;
}

int known_hosts_remove(const char *path, const char *const *hosts, size_t n_hosts, int port,
		       struct bg_err *err)
{
	char *queries[KH_MAX_QUERIES] = { 0 };
	int r;

	r = queries_make(hosts, n_hosts, port, queries, err);
	if (r < 0)
		return r;
	r = kh_rewrite(path, queries, n_hosts, NULL, err);
	queries_free(queries, n_hosts);
	return r;
}

int known_hosts_set_pin(const char *path, const char *const *hosts, size_t n_hosts, int port,
			const uint8_t *blob, size_t len, struct bg_err *err)
{
	char *queries[KH_MAX_QUERIES] = { 0 };
	_cleanup_free_ char *b64 = NULL;
	struct kh_key key;
	struct buf line;
	int r;

	r = queries_make(hosts, n_hosts, port, queries, err);
	if (r < 0)
		return r;
	kh_key_init(&key);
	buf_init(&line);
	r = offered_parse(blob, len, &key, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n_hosts; i++) {
		if (i > 0)
			buf_addch(&line, ',');
		buf_adds(&line, queries[i]);
	}
	b64 = base64_encode(key.blob.data, key.blob.len);
	buf_addf(&line, " %s %s\n", key.type, b64);
	r = kh_rewrite(path, queries, n_hosts, line.data, err);
out:
	buf_release(&line);
	kh_key_release(&key);
	queries_free(queries, n_hosts);
	return r < 0 ? r : 0;
}

/* ---- pinned types ---------------------------------------------------------------------- */

struct types_ctx {
	char **types;
	size_t n;
};

static int types_line(const struct kh_line *l, void *arg)
{
	struct types_ctx *c = arg;

	if (l->status != KH_LINE_VALID || l->marker != KH_MARKER_NONE || !l->match)
		return 0;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->types[i], l->key->type) == 0)
			return 0;
	c->types = xreallocarray(c->types, c->n + 2, sizeof(char *));
	c->types[c->n++] = xstrdup(l->key->type);
	c->types[c->n] = NULL;
	return 0;
}

int known_hosts_pinned_types(const char *path, const char *const *hosts, size_t n_hosts, int port,
			     char ***ret_types, struct bg_err *err)
{
	char *queries[KH_MAX_QUERIES] = { 0 };
	_cleanup_free_ char *data = NULL;
	struct types_ctx c = { 0 };
	size_t len = 0;
	int r;

	r = queries_make(hosts, n_hosts, port, queries, err);
	if (r < 0)
		return r;
	c.types = xcalloc(1, sizeof(char *));
	r = kh_read(path, &data, &len, err);
	if (r == 0)
		r = kh_foreach(data, len, queries, n_hosts, types_line, &c);
	queries_free(queries, n_hosts);
	if (r < 0) {
		strv_free(c.types);
		return r;
	}
	*ret_types = c.types;
	return (int)c.n;
}
