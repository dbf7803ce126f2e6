/*
 * test_known_hosts.c - reconciler/guest/known_hosts.c: a table of
 * known_hosts files x queries covering RELIABILITY.md §1, each checked
 * against our expected verdict AND against OpenSSH's own parser
 * (`ssh-keygen -l -F host -f file` must report exactly the lines we consider
 * valid matches); pinning (one O_APPEND line that ssh-keygen finds),
 * "possible MITM" errors, removal (byte for byte, compared with
 * `ssh-keygen -R`), and removal racing with appends from other processes.
 *
 * The module's .c is included to reach the line iterator.
 */
#include "reconciler/guest/known_hosts.c"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "common/proc.h"
#include "tests/lib/testutil.h"

#define DATA_DIR "tests/unit/data/known_hosts"

/* The five test keys: A, B ed25519; C ecdsa-p256; D rsa-2048; E ecdsa-p384. */
static char *key_line[5]; /* "type base64" */
static char *key_b64[5];
static uint8_t *key_blob[5];
static size_t key_blob_len[5];

static char *tmpdir;
static bool have_ssh_keygen;

static int key_index(char c)
{
	assert_true(c >= 'A' && c <= 'E');
	return c - 'A';
}

static void write_bytes(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static char *read_all(const char *path, size_t *ret_len)
{
	char *data = NULL;
	size_t len = 0;
	struct bg_err err = { 0 };

	assert_int_equal(fs_read_file(path, KH_FILE_MAX, &data, &len, &err), 0);
	if (ret_len)
		*ret_len = len;
	return data;
}

/* "|1|salt|hmac" for name with a fixed salt, the way OpenSSH hashes. */
static char *hash_name(const char *name)
{
	uint8_t salt[SHA1_LEN], mac[SHA1_LEN];
	_cleanup_free_ char *s = NULL, *m = NULL;

	for (size_t i = 0; i < sizeof(salt); i++)
		salt[i] = (uint8_t)(0x5a + i * 7);
	hmac_sha1(salt, sizeof(salt), name, strlen(name), mac);
	s = base64_encode(salt, sizeof(salt));
	m = base64_encode(mac, sizeof(mac));
	return xasprintf("|1|%s|%s", s, m);
}

/*
 * Expand a fixture template: {A}..{E} -> "type base64", {A64} -> base64 only,
 * {AX} -> base64 of A's blob with two bytes appended, {H:name} -> hashed name,
 * {LONG:n} -> n 'x' characters, {NUL} -> a NUL byte.
 */
static char *expand(const char *t, size_t *ret_len)
{
	struct buf b;

	buf_init(&b);
	while (*t) {
		const char *end;

		if (*t != '{') {
			buf_addch(&b, *t++);
			continue;
		}
		end = strchr(t, '}');
		assert_non_null(end);
		if (end - t == 2) {
			buf_adds(&b, key_line[key_index(t[1])]);
		} else if (end - t == 4 && memcmp(t + 2, "64", 2) == 0) {
			buf_adds(&b, key_b64[key_index(t[1])]);
		} else if (end - t == 3 && t[2] == 'X') {
			int k = key_index(t[1]);
			_cleanup_free_ uint8_t *x = xmalloc(key_blob_len[k] + 2);
			_cleanup_free_ char *e = NULL;

			memcpy(x, key_blob[k], key_blob_len[k]);
			x[key_blob_len[k]] = 'x';
			x[key_blob_len[k] + 1] = 'x';
			e = base64_encode(x, key_blob_len[k] + 2);
			buf_adds(&b, e);
		} else if (strncmp(t, "{H:", 3) == 0) {
			_cleanup_free_ char *name = xstrndup(t + 3, (size_t)(end - t - 3));
			_cleanup_free_ char *h = hash_name(name);

			buf_adds(&b, h);
		} else if (strncmp(t, "{LONG:", 6) == 0) {
			long n = strtol(t + 6, NULL, 10);

			for (long i = 0; i < n; i++)
				buf_addch(&b, 'x');
		} else if (strncmp(t, "{NUL}", 5) == 0) {
			buf_add(&b, "", 1);
		} else {
			fail_msg("bad template at '%s'", t);
		}
		t = end + 1;
	}
	return buf_detach(&b, ret_len);
}

static int group_setup(void **state)
{
	char *path;

	(void)state;
	for (int i = 0; i < 5; i++) {
		char *data, *sp, *nl;

		path = xasprintf(DATA_DIR "/key_%c.pub", 'a' + i);
		data = read_all(path, NULL);
		free(path);
		nl = strchr(data, '\n');
		if (nl)
			*nl = '\0';
		key_line[i] = data;
		sp = strchr(data, ' ');
		assert_non_null(sp);
		key_b64[i] = xstrdup(sp + 1);
		assert_int_equal(base64_decode(key_b64[i], strlen(key_b64[i]), &key_blob[i],
					       &key_blob_len[i]),
				 0);
	}
	tmpdir = test_tmpdir("bg-kh");
	path = proc_find_in_path("ssh-keygen");
	have_ssh_keygen = path != NULL;
	free(path);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 5; i++) {
		free(key_line[i]);
		free(key_b64[i]);
		free(key_blob[i]);
	}
	test_rmtree(tmpdir);
	free(tmpdir);
	return 0;
}

/* ---- the oracle: OpenSSH's parser --------------------------------------------------- */

/* Line numbers `ssh-keygen -l -F query -f path` reports as found (parsed keys only). */
static size_t oracle_lines(const char *path, const char *query, unsigned *lines, size_t cap)
{
	const char *argv[] = { "ssh-keygen", "-l", "-F", query, "-f", path, NULL };
	_cleanup_free_ char *out = NULL;
	struct bg_err err = { 0 };
	size_t n = 0;
	int r;

	r = proc_run(argv, 30000, &out, &err);
	if (r == -EIO && out && !strstr(out, "found: line"))
		return 0; /* exit 1: not found */
	assert_int_equal(r, 0);
	for (const char *p = out; (p = strstr(p, "found: line ")); p++) {
		assert_true(n < cap);
		lines[n++] = (unsigned)strtoul(p + 12, NULL, 10);
	}
	return n;
}

struct our_lines {
	unsigned lines[64];
	size_t n;
};

static int collect_valid_match(const struct kh_line *l, void *arg)
{
	struct our_lines *o = arg;

	if (l->status == KH_LINE_VALID && l->match) {
		assert_true(o->n < ARRAY_SIZE(o->lines));
		o->lines[o->n++] = l->lineno;
	}
	return 0;
}

/* Our valid lines for query must be exactly the ones ssh-keygen finds. */
static void assert_agrees_with_openssh(const char *path, const char *data, size_t len,
				       const char *host, int port)
{
	_cleanup_free_ char *q = NULL;
	struct our_lines ours = { .n = 0 };
	unsigned theirs[64];
	size_t n;

	if (!have_ssh_keygen)
		return;
	assert_int_equal(kh_query_name(host, port, &q, NULL), 0);
	assert_int_equal(kh_foreach(data, len, &q, 1, collect_valid_match, &ours), 0);
	n = oracle_lines(path, q, theirs, ARRAY_SIZE(theirs));
	if (n != ours.n)
		fail_msg("%s: query '%s': ssh-keygen finds %zu lines, we find %zu", path, q, n,
			 ours.n);
	for (size_t i = 0; i < n; i++)
		if (theirs[i] != ours.lines[i])
			fail_msg("%s: query '%s': ssh-keygen line %u, ours %u", path, q, theirs[i],
				 ours.lines[i]);
}

/* `ssh-keygen -l -F` prints fp for one of the lines it finds for host. */
static void assert_ssh_keygen_prints(const char *path, const char *host, int port, const char *fp)
{
	_cleanup_free_ char *q = NULL, *out = NULL;

	if (!have_ssh_keygen)
		return;
	assert_int_equal(kh_query_name(host, port, &q, NULL), 0);
	{
		const char *argv[] = { "ssh-keygen", "-l", "-F", q, "-f", path, NULL };

		assert_int_equal(proc_run(argv, 30000, &out, NULL), 0);
	}
	if (!strstr(out, fp))
		fail_msg("%s: '%s': ssh-keygen does not print %s:\n%s", path, q, fp, out);
}

/* ---- the table ----------------------------------------------------------------------- */

struct kh_query_case {
	const char *host;
	int port;
	char key; /* 'A'..'E' */
	enum kh_verdict want;
	unsigned line; /* expected kh_match.line (0: NEW) */
	bool stricter; /* we deliberately refuse where OpenSSH would skip: no oracle */
};

#define Q(h, p, k, v, l)                                                                \
	{                                                                               \
		.host = h, .port = p, .key = k, .want = v, .line = l, .stricter = false \
	}
#define QS(h, p, k, v, l)                                                              \
	{                                                                              \
		.host = h, .port = p, .key = k, .want = v, .line = l, .stricter = true \
	}

struct kh_fixture {
	const char *name;
	const char *tmpl;
	struct kh_query_case q[8];
};

static const struct kh_fixture fixtures[] = {
	{ "basic",
	  "web.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 1), Q("web.vm", 22, 'B', KH_CHANGED, 1),
	    Q("web.vm", 22, 'C', KH_CHANGED, 1), /* another key TYPE is a change */
	    Q("web.vm", 22, 'D', KH_CHANGED, 1), Q("other.vm", 22, 'A', KH_NEW, 0),
	    Q("web", 22, 'A', KH_NEW, 0) } },
	{ "two-keys-of-two-types",
	  "web.vm {C}\nweb.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 2), Q("web.vm", 22, 'C', KH_OK, 1),
	    Q("web.vm", 22, 'B', KH_CHANGED, 1) } },
	{ "other-curve-is-a-change",
	  "web.vm {E}\n",
	  { Q("web.vm", 22, 'C', KH_CHANGED, 1), Q("web.vm", 22, 'E', KH_OK, 1) } },
	{ "revoked-only",
	  "@revoked web.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_REVOKED, 1), Q("web.vm", 22, 'B', KH_NEW, 0) } },
	{ "revoked-and-plain",
	  "web.vm {A}\n@revoked web.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_REVOKED, 2), Q("web.vm", 22, 'B', KH_CHANGED, 1) } },
	{ "revoked-wildcard",
	  "@revoked * {A}\nweb.vm {A}\n10.0.0.5 {A}\n",
	  { Q("web.vm", 22, 'A', KH_REVOKED, 1), Q("10.0.0.5", 22, 'A', KH_REVOKED, 1),
	    Q("web.vm", 22, 'B', KH_CHANGED, 2) } },
	{ "port-entry-only",
	  "[web.vm]:2222 {A}\n",
	  { Q("web.vm", 22, 'A', KH_NEW, 0), /* no fallback from host to [host]:port */
	    Q("web.vm", 2222, 'A', KH_OK, 1), Q("web.vm", 2222, 'B', KH_CHANGED, 1),
	    Q("web.vm", 2200, 'A', KH_NEW, 0) } },
	{ "plain-entry-only",
	  "web.vm {A}\n",
	  { Q("web.vm", 2222, 'A', KH_NEW, 0), /* ...nor from [host]:port to host */
	    Q("web.vm", 0, 'A', KH_OK, 1) } },
	{ "port-and-plain-disagree",
	  "[10.0.0.5]:2222 {C}\n10.0.0.5 {A}\n",
	  { Q("10.0.0.5", 2222, 'A', KH_CHANGED, 1), Q("10.0.0.5", 22, 'A', KH_OK, 2) } },
	{ "hashed-ours",
	  "{H:web.vm} {A}\n{H:[web.vm]:2222} {B}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 1), Q("web.vm", 22, 'B', KH_CHANGED, 1),
	    Q("web.vm", 2222, 'B', KH_OK, 2), Q("web.vm", 2222, 'A', KH_CHANGED, 2),
	    Q("other.vm", 22, 'A', KH_NEW, 0) } },
	{ "hashed-bad-salt-skipped",
	  "|1|AAAA|AAAA {B}\n|1|!!!!|x {B}\n|1|nohash {B}\nweb.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 4), Q("web.vm", 22, 'B', KH_CHANGED, 4) } },
	{ "negation",
	  "*.vm,!web.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_NEW, 0), Q("db.vm", 22, 'A', KH_OK, 1),
	    Q("db.vm", 22, 'B', KH_CHANGED, 1) } },
	{ "negation-first",
	  "!web.vm,*.vm {A}\nweb.vm {B}\n",
	  { Q("web.vm", 22, 'B', KH_OK, 2), Q("web.vm", 22, 'A', KH_CHANGED, 2),
	    Q("db.vm", 22, 'A', KH_OK, 1) } },
	{ "wildcards",
	  "*.vm {A}\n10.0.0.? {B}\n",
	  { Q("db.vm", 22, 'A', KH_OK, 1), Q("10.0.0.7", 22, 'B', KH_OK, 2),
	    Q("10.0.0.17", 22, 'B', KH_NEW, 0), Q("xvm", 22, 'A', KH_NEW, 0),
	    Q("a.b.vm", 22, 'B', KH_CHANGED, 1) } },
	{ "case-insensitive",
	  "WEB.VM {A}\n[DB.Vm]:2222 {B}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 1), Q("Web.Vm", 22, 'A', KH_OK, 1),
	    Q("db.vm", 2222, 'B', KH_OK, 2) } },
	{ "cert-authority-ignored",
	  "@cert-authority *.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_NEW, 0), Q("web.vm", 22, 'B', KH_NEW, 0) } },
	{ "cert-authority-and-plain",
	  "@cert-authority *.vm {B}\nweb.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 2), Q("web.vm", 22, 'B', KH_CHANGED, 2) } },
	{ "corrupt-line-before-pin",
	  "web.vm ssh-ed25519 AAAAgarbage!\nweb.vm ssh-ed25519 {AX}\nweb.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 3), Q("web.vm", 22, 'B', KH_CHANGED, 3) } },
	{ "corrupt-only-line-is-not-new",
	  "web.vm ssh-ed25519 AAAA\n",
	  { QS("web.vm", 22, 'A', KH_CHANGED, 1), Q("db.vm", 22, 'A', KH_NEW, 0) } },
	{ "bad-markers-skipped",
	  "@foo web.vm {A}\n@revoked @revoked web.vm {A}\n@revoked\tweb.vm {A}\nweb.vm {B}\n",
	  { Q("web.vm", 22, 'A', KH_CHANGED, 4), Q("web.vm", 22, 'B', KH_OK, 4) } },
	{ "type-field-disagrees-with-blob",
	  "web.vm ecdsa-sha2-nistp256 {A64}\nweb.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 2), Q("web.vm", 22, 'B', KH_CHANGED, 2) } },
	{ "type-mismatch-alone",
	  "web.vm ecdsa-sha2-nistp256 {A64}\nweb.vm ED25519 {A64}\n",
	  { QS("web.vm", 22, 'A', KH_CHANGED, 1) } },
	{ "rsa-signature-name-in-type-field",
	  "web.vm rsa-sha2-256 {D64}\n",
	  { Q("web.vm", 22, 'D', KH_OK, 1), Q("web.vm", 22, 'A', KH_CHANGED, 1) } },
	{ "5000-char-line",
	  "web.vm {A} {LONG:5000}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 1), Q("web.vm", 22, 'B', KH_CHANGED, 1) } },
	{ "over-long-line-of-another-host",
	  "db.vm {B} {LONG:70000}\nweb.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 2), QS("db.vm", 22, 'B', KH_CHANGED, 1) } },
	{ "no-trailing-newline",
	  "web.vm {A}",
	  { Q("web.vm", 22, 'A', KH_OK, 1), Q("web.vm", 22, 'B', KH_CHANGED, 1) } },
	{ "torn-last-line-skipped",
	  "web.vm {A}\ndb.vm ssh-ed25519 AAAAC3NzaC1lZDI1",
	  { Q("db.vm", 22, 'A', KH_NEW, 0), Q("web.vm", 22, 'A', KH_OK, 1) } },
	{ "crlf",
	  "\r\nweb.vm {A}\r\ndb.vm {B} a comment\r\n",
	  { Q("web.vm", 22, 'A', KH_OK, 2), Q("db.vm", 22, 'B', KH_OK, 3) } },
	{ "comments-blanks-whitespace",
	  "# web.vm {B}\n   # x\n\n \t web.vm\t{A} c\n",
	  { Q("web.vm", 22, 'A', KH_OK, 4), Q("web.vm", 22, 'B', KH_CHANGED, 4) } },
	{ "comma-list",
	  "10.0.0.5,web.vm {A}\n",
	  { Q("web.vm", 22, 'A', KH_OK, 1), Q("10.0.0.5", 22, 'A', KH_OK, 1) } },
	{ "nul-ends-the-line", "web.vm {A}{NUL}junk\n", { Q("web.vm", 22, 'A', KH_OK, 1) } },
	{ "subpattern-too-long", "{LONG:1100},web.vm {A}\n", { Q("web.vm", 22, 'A', KH_NEW, 0) } },
	{ "truncated-before-key",
	  "web.vm\nweb.vm #ssh-ed25519 {A64}\n*.db {B}\n",
	  { QS("web.vm", 22, 'A', KH_CHANGED, 1), Q("x.db", 22, 'B', KH_OK, 3) } },
	{ "ipv6",
	  "[::1]:2222 {A}\n::1 {B}\n",
	  { Q("::1", 2222, 'A', KH_OK, 1), Q("::1", 22, 'B', KH_OK, 2) } },
};

static void run_fixture(const struct kh_fixture *fx, const char *path, const char *data, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(fx->q) && fx->q[i].host; i++) {
		const struct kh_query_case *qc = &fx->q[i];
		int k = key_index(qc->key);
		struct kh_match m;
		struct bg_err err = { 0 };
		int r;

		r = known_hosts_check(path, qc->host, qc->port, key_blob[k], key_blob_len[k], &m,
				      &err);
		if (r != (int)qc->want || m.line != qc->line)
			fail_msg("fixture '%s': %s port %d key %c: got %s line %u, want %s line %u "
				 "(%s)",
				 fx->name, qc->host, qc->port, qc->key,
				 r >= 0 ? kh_verdict_to_string(r) : "error", m.line,
				 kh_verdict_to_string(qc->want), qc->line, err.msg);
		if (qc->want == KH_CHANGED && !qc->stricter) {
			/* the pinned fingerprint is what ssh-keygen -l prints for that line */
			assert_true(strncmp(m.pinned_fp, "SHA256:", 7) == 0);
			assert_true(m.pinned_type[0] != '\0');
			assert_ssh_keygen_prints(path, qc->host, qc->port, m.pinned_fp);
		}
		if (!qc->stricter)
			assert_agrees_with_openssh(path, data, len, qc->host, qc->port);
	}
}

static void test_table(void **state)
{
	(void)state;
	for (size_t f = 0; f < ARRAY_SIZE(fixtures); f++) {
		_cleanup_free_ char *path = xasprintf("%s/table-%zu", tmpdir, f);
		size_t len;
		_cleanup_free_ char *data = expand(fixtures[f].tmpl, &len);

		write_bytes(path, data, len);
		run_fixture(&fixtures[f], path, data, len);
	}
}

/* The same fixtures hashed by `ssh-keygen -H` give the same verdicts. */
static void test_table_hashed_by_ssh_keygen(void **state)
{
	size_t hashed_fixtures = 0;

	(void)state;
	if (!have_ssh_keygen) {
		test_skip_reason("ssh-keygen not installed");
		skip();
	}
	for (size_t f = 0; f < ARRAY_SIZE(fixtures); f++) {
		const struct kh_fixture *fx = &fixtures[f];
		_cleanup_free_ char *path = xasprintf("%s/hashed-%zu", tmpdir, f);
		_cleanup_free_ char *old = xasprintf("%s.old", path);
		_cleanup_free_ char *data = NULL, *hashed = NULL;
		const char *argv[] = { "ssh-keygen", "-H", "-f", path, NULL };
		struct bg_err err = { 0 };
		size_t len, hlen;
		bool simple = true;

		/* Only fixtures of plain literal names hash 1:1 (ssh-keygen keeps wildcards,
		 * markers and invalid lines as they are, or refuses the file). */
		if (strpbrk(fx->tmpl, "*?!@#\r") || strstr(fx->tmpl, "{H:") ||
		    strstr(fx->tmpl, "{LONG") || strstr(fx->tmpl, "{NUL}") ||
		    strstr(fx->tmpl, "{AX}") || strstr(fx->tmpl, "64}") ||
		    strstr(fx->tmpl, "AAAA") || strcmp(fx->name, "torn-last-line-skipped") == 0)
			simple = false;
		for (size_t i = 0; simple && i < ARRAY_SIZE(fx->q) && fx->q[i].host; i++)
			if (strchr(fx->q[i].host, ':') || fx->q[i].stricter)
				simple = false;
		if (!simple)
			continue;
		data = expand(fx->tmpl, &len);
		write_bytes(path, data, len);
		assert_int_equal(proc_run(argv, 30000, NULL, &err), 0);
		(void)unlink(old);
		hashed = read_all(path, &hlen);
		assert_int_equal(hashed[0], '|');
		hashed_fixtures++;
		for (size_t i = 0; i < ARRAY_SIZE(fx->q) && fx->q[i].host; i++) {
			const struct kh_query_case *qc = &fx->q[i];
			int k = key_index(qc->key);
			struct kh_match m;
			int r;

			r = known_hosts_check(path, qc->host, qc->port, key_blob[k],
					      key_blob_len[k], &m, &err);
			if (r != (int)qc->want)
				fail_msg("hashed fixture '%s': %s key %c: got %d want %s", fx->name,
					 qc->host, qc->key, r, kh_verdict_to_string(qc->want));
			assert_agrees_with_openssh(path, hashed, hlen, qc->host, qc->port);
		}
	}
	assert_true(hashed_fixtures >= 8);
}

/* ---- pinning ---------------------------------------------------------------------------- */

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void assert_ssh_keygen_finds(const char *path, const char *query, bool want)
{
	unsigned lines[8];

	if (!have_ssh_keygen)
		return;
	assert_int_equal(oracle_lines(path, query, lines, 8) > 0, want);
}

static void test_pin_new_then_ok_then_mitm(void **state)
{
	_cleanup_free_ char *dir = xasprintf("%s/pin/sub", tmpdir);
	_cleanup_free_ char *path = xasprintf("%s/known_hosts", dir);
	_cleanup_free_ char *data = NULL;
	const char *hosts[] = { "172.30.0.10", "web-1.vm" };
	struct bg_err err = { 0 };
	char fp_a[128], fp_b[128], fp_c[128];
	_cleanup_free_ char *where = xasprintf("%s:1", path);
	struct stat st;

	(void)state;
	assert_int_equal(
		known_hosts_verify_pin(path, hosts, 2, 22, key_blob[0], key_blob_len[0], &err), 0);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	data = read_all(path, NULL);
	assert_int_equal(count_lines(data), 1);
	{
		_cleanup_free_ char *want = xasprintf("172.30.0.10,web-1.vm %s\n", key_line[0]);

		assert_string_equal(data, want);
	}
	assert_ssh_keygen_finds(path, "172.30.0.10", true);
	assert_ssh_keygen_finds(path, "web-1.vm", true);
	assert_ssh_keygen_finds(path, "web-2.vm", false);

	/* Second time: OK, nothing appended. */
	assert_int_equal(
		known_hosts_verify_pin(path, hosts, 2, 22, key_blob[0], key_blob_len[0], &err), 0);
	free(data);
	data = read_all(path, NULL);
	assert_int_equal(count_lines(data), 1);

	/* Another key: possible MITM with both fingerprints and file:line. */
	known_hosts_fingerprint(key_blob[0], key_blob_len[0], fp_a);
	known_hosts_fingerprint(key_blob[1], key_blob_len[1], fp_b);
	known_hosts_fingerprint(key_blob[2], key_blob_len[2], fp_c);
	assert_int_equal(
		known_hosts_verify_pin(path, hosts, 2, 22, key_blob[1], key_blob_len[1], &err),
		-EKEYREJECTED);
	assert_non_null(strstr(err.msg, "possible MITM"));
	assert_non_null(strstr(err.msg, "172.30.0.10"));
	assert_non_null(strstr(err.msg, fp_a));
	assert_non_null(strstr(err.msg, fp_b));
	assert_non_null(strstr(err.msg, where));

	/* Another key type (ecdsa after an ed25519 pin) is a change too. */
	bg_err_clear(&err);
	assert_int_equal(
		known_hosts_verify_pin(path, hosts + 1, 1, 22, key_blob[2], key_blob_len[2], &err),
		-EKEYREJECTED);
	assert_non_null(strstr(err.msg, "possible MITM"));
	assert_non_null(strstr(err.msg, "web-1.vm"));
	assert_non_null(strstr(err.msg, fp_c));
	assert_non_null(strstr(err.msg, fp_a));
	free(data);
	data = read_all(path, NULL);
	assert_int_equal(count_lines(data), 1); /* nothing was pinned */
}

static void test_pin_fingerprint_matches_ssh_keygen(void **state)
{
	(void)state;
	for (int k = 0; k < 5; k++) {
		_cleanup_free_ char *pub = xasprintf(DATA_DIR "/key_%c.pub", 'a' + k);
		const char *argv[] = { "ssh-keygen", "-l", "-E", "sha256", "-f", pub, NULL };
		_cleanup_free_ char *out = NULL;
		struct bg_err err = { 0 };
		char fp[128];

		if (!have_ssh_keygen)
			skip();
		known_hosts_fingerprint(key_blob[k], key_blob_len[k], fp);
		assert_int_equal(proc_run(argv, 30000, &out, &err), 0);
		if (!strstr(out, fp))
			fail_msg("ssh-keygen says '%s', we say '%s'", out, fp);
	}
}

static void test_pin_partial_and_port(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/partial", tmpdir);
	_cleanup_free_ char *data = NULL, *want = NULL;
	const char *hosts[] = { "172.30.0.11", "db.vm" };
	struct bg_err err = { 0 };

	(void)state;
	want = xasprintf("db.vm %s\n", key_line[0]);
	write_bytes(path, want, strlen(want));
	/* db.vm is pinned, the IP is new: only the IP is appended. */
	assert_int_equal(
		known_hosts_verify_pin(path, hosts, 2, 22, key_blob[0], key_blob_len[0], &err), 0);
	/* A non-22 port pins "[host]:port", never the plain name. */
	assert_int_equal(known_hosts_verify_pin(path, hosts + 1, 1, 2222, key_blob[1],
						key_blob_len[1], &err),
			 0);
	data = read_all(path, NULL);
	free(want);
	want = xasprintf("db.vm %s\n172.30.0.11 %s\n[db.vm]:2222 %s\n", key_line[0], key_line[0],
			 key_line[1]);
	assert_string_equal(data, want);
	assert_ssh_keygen_finds(path, "[db.vm]:2222", true);
	assert_int_equal(
		known_hosts_check(path, "db.vm", 2222, key_blob[1], key_blob_len[1], NULL, &err),
		KH_OK);
	assert_int_equal(
		known_hosts_check(path, "db.vm", 22, key_blob[1], key_blob_len[1], NULL, &err),
		KH_CHANGED);
}

static void test_pin_appends_after_missing_newline(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/nonl", tmpdir);
	_cleanup_free_ char *data = NULL, *first = NULL, *want = NULL;
	const char *hosts[] = { "other.vm" };
	struct bg_err err = { 0 };

	(void)state;
	first = xasprintf("# keep me\nweb.vm %s", key_line[0]);
	write_bytes(path, first, strlen(first));
	assert_int_equal(
		known_hosts_verify_pin(path, hosts, 1, 22, key_blob[1], key_blob_len[1], &err), 0);
	data = read_all(path, NULL);
	want = xasprintf("%s\nother.vm %s\n", first, key_line[1]);
	assert_string_equal(data, want);
	assert_ssh_keygen_finds(path, "web.vm", true);
	assert_ssh_keygen_finds(path, "other.vm", true);
}

static void test_pin_revoked(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/revoked", tmpdir);
	_cleanup_free_ char *data = NULL;
	const char *hosts[] = { "web.vm" };
	struct bg_err err = { 0 };
	char fp[128];

	(void)state;
	data = xasprintf("web.vm %s\n@revoked * %s\n", key_line[0], key_line[0]);
	write_bytes(path, data, strlen(data));
	known_hosts_fingerprint(key_blob[0], key_blob_len[0], fp);
	assert_int_equal(
		known_hosts_verify_pin(path, hosts, 1, 22, key_blob[0], key_blob_len[0], &err),
		-EKEYREJECTED);
	assert_non_null(strstr(err.msg, "possible MITM"));
	assert_non_null(strstr(err.msg, "revoked"));
	assert_non_null(strstr(err.msg, fp));
}

static void test_pin_unreadable_is_not_new(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/isdir", tmpdir);
	_cleanup_free_ char *big = xasprintf("%s/big", tmpdir);
	const char *hosts[] = { "web.vm" };
	struct bg_err err = { 0 };
	int fd;

	(void)state;
	/* A path we cannot read as a file: an error, never TOFU. */
	assert_int_equal(mkdir(path, 0700), 0);
	assert_true(known_hosts_verify_pin(path, hosts, 1, 22, key_blob[0], key_blob_len[0], &err) <
		    0);
	assert_true(known_hosts_check(path, "web.vm", 22, key_blob[0], key_blob_len[0], NULL,
				      &err) < 0);
	/* Over the size cap: an error too. */
	fd = open(big, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, KH_FILE_MAX + 1), 0);
	close(fd);
	assert_int_equal(
		known_hosts_check(big, "web.vm", 22, key_blob[0], key_blob_len[0], NULL, &err),
		-EFBIG);
	assert_int_equal(
		known_hosts_verify_pin(big, hosts, 1, 22, key_blob[0], key_blob_len[0], &err),
		-EFBIG);
	unlink(big);
}

static void test_bad_inputs(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/bad", tmpdir);
	const char *bad_hosts[] = { "a b", "*.vm", "a,b", "", "!x", "[x]:22", "-x", "#x", "|1|x" };
	struct bg_err err = { 0 };
	const uint8_t junk[] = { 0, 0, 0, 3, 'f', 'o', 'o' };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad_hosts); i++)
		assert_int_equal(known_hosts_verify_pin(path, &bad_hosts[i], 1, 22, key_blob[0],
							key_blob_len[0], &err),
				 -EINVAL);
	assert_int_equal(
		known_hosts_check(path, "web.vm", 70000, key_blob[0], key_blob_len[0], NULL, &err),
		-EINVAL);
	assert_int_equal(known_hosts_check(path, "web.vm", 22, junk, sizeof(junk), NULL, &err),
			 -EINVAL);
	assert_false(fs_exists(path));
	assert_string_equal(kh_verdict_to_string(KH_CHANGED), "changed");
	assert_null(kh_verdict_to_string(KH_VERDICT_MAX));
}

static void test_pinned_types(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/types", tmpdir);
	_cleanup_free_ char *data = NULL;
	_cleanup_strv_free_ char **types = NULL;
	const char *hosts[] = { "10.0.0.9", "web.vm" };
	struct bg_err err = { 0 };

	(void)state;
	data = xasprintf("@revoked web.vm %s\nweb.vm %s\n10.0.0.9 %s\nweb.vm %s\nx.vm %s\n",
			 key_line[3], key_line[2], key_line[0], key_line[1], key_line[3]);
	write_bytes(path, data, strlen(data));
	assert_int_equal(known_hosts_pinned_types(path, hosts, 2, 22, &types, &err), 2);
	assert_string_equal(types[0], "ecdsa-sha2-nistp256");
	assert_string_equal(types[1], "ssh-ed25519");
	assert_null(types[2]);
	strv_free(TAKE_PTR(types));
	unlink(path);
	assert_int_equal(known_hosts_pinned_types(path, hosts, 2, 22, &types, &err), 0);
	assert_null(types[0]);
}

/* ---- removal ---------------------------------------------------------------------------- */

/* set_pin replaces every pin of the hosts with one line, keeps others, and is a no-op when set. */
static void test_set_pin_replaces(void **state)
{
	_cleanup_free_ char *dir = xasprintf("%s/setpin/sub", tmpdir);
	_cleanup_free_ char *path = xasprintf("%s/known_hosts", dir);
	_cleanup_free_ char *data = NULL;
	_cleanup_free_ char *want = NULL;
	_cleanup_free_ char *other = xasprintf("# keep me\n10.0.0.9 %s\n", key_line[2]);
	const char *hosts[] = { "172.30.0.10", "web-1.vm" };
	struct bg_err err = { 0 };
	struct stat st1, st2;

	(void)state;
	/* Missing file and directory: created 0700/0600 with the pin. */
	assert_int_equal(
		known_hosts_set_pin(path, hosts, 2, 22, key_blob[0], key_blob_len[0], &err), 0);
	assert_int_equal(stat(dir, &st1), 0);
	assert_int_equal(st1.st_mode & 07777, 0700);
	assert_int_equal(stat(path, &st1), 0);
	assert_int_equal(st1.st_mode & 07777, 0600);
	data = read_all(path, NULL);
	want = xasprintf("172.30.0.10,web-1.vm %s\n", key_line[0]);
	assert_string_equal(data, want);

	/* The same pin again: the file is not rewritten (same inode). */
	assert_int_equal(
		known_hosts_set_pin(path, hosts, 2, 22, key_blob[0], key_blob_len[0], &err), 0);
	assert_int_equal(stat(path, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);

	/* Another VM's pin and a comment stay; an old pin of one host (TOFU line) goes. */
	free(data);
	data = xasprintf("%s%s web-1.vm %s\n", other, want, key_line[1]);
	write_bytes(path, data, strlen(data));
	assert_int_equal(
		known_hosts_set_pin(path, hosts, 2, 22, key_blob[3], key_blob_len[3], &err), 0);
	free(data);
	data = read_all(path, NULL);
	free(want);
	want = xasprintf("%s172.30.0.10,web-1.vm %s\n", other, key_line[3]);
	assert_string_equal(data, want);

	/* Strict from then on: the old key is a possible MITM, the new one is OK. */
	assert_int_equal(
		known_hosts_verify_pin(path, hosts, 2, 22, key_blob[0], key_blob_len[0], &err),
		-EKEYREJECTED);
	assert_non_null(strstr(err.msg, "possible MITM"));
	bg_err_clear(&err);
	assert_int_equal(
		known_hosts_verify_pin(path, hosts, 2, 22, key_blob[3], key_blob_len[3], &err), 0);
	assert_ssh_keygen_finds(path, "web-1.vm", true);
	assert_ssh_keygen_finds(path, "10.0.0.9", true);

	/* Not a key: refused, file untouched. */
	assert_true(known_hosts_set_pin(path, hosts, 2, 22, (const uint8_t *)"junk", 4, &err) < 0);
	free(data);
	data = read_all(path, NULL);
	assert_string_equal(data, want);
}

static void test_remove_keeps_everything_else(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/remove", tmpdir);
	_cleanup_free_ char *in = NULL, *want = NULL, *got = NULL;
	_cleanup_free_ char *h_web = hash_name("web.vm"), *h_db = hash_name("db.vm");
	const char *hosts[] = { "172.30.0.10", "web.vm" };
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	in = xasprintf("# banger pins\n"
		       "  # indented comment\t\n"
		       "\n"
		       "172.30.0.10,web.vm %s\n"
		       "db.vm %s\r\n"
		       "@revoked web.vm %s\n"
		       "@cert-authority *.vm %s\n"
		       "%s %s\n"
		       "%s %s\n"
		       "web.vm ssh-ed25519 AAAA-broken\n"
		       "db.vm ssh-ed25519 AAAA-broken-other-host\n"
		       "*.vm %s\n"
		       "!web.vm,*.vm %s\n"
		       "[web.vm]:2222 %s\n"
		       "172.30.0.10 %s a comment\n"
		       "web.vm %s",
		       key_line[0], key_line[1], key_line[2], key_line[3], h_web, key_line[0], h_db,
		       key_line[1], key_line[0], key_line[1], key_line[2], key_line[4],
		       key_line[0]);
	want = xasprintf("# banger pins\n"
			 "  # indented comment\t\n"
			 "\n"
			 "db.vm %s\r\n"
			 "@revoked web.vm %s\n"
			 "@cert-authority *.vm %s\n"
			 "%s %s\n"
			 "db.vm ssh-ed25519 AAAA-broken-other-host\n"
			 "*.vm %s\n"
			 "!web.vm,*.vm %s\n"
			 "[web.vm]:2222 %s\n",
			 key_line[1], key_line[2], key_line[3], h_db, key_line[1], key_line[0],
			 key_line[1], key_line[2]);
	write_bytes(path, in, strlen(in));
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(known_hosts_remove(path, hosts, 2, 22, &err), 5);
	got = read_all(path, NULL);
	assert_string_equal(got, want);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	/* Again: nothing left to remove, the file is untouched. */
	assert_int_equal(known_hosts_remove(path, hosts, 2, 22, &err), 0);
	/* The port entry goes with port 2222. */
	assert_int_equal(known_hosts_remove(path, hosts + 1, 1, 2222, &err), 1);
	/* No temp files left behind, only the lock file. */
	{
		_cleanup_free_ char *lock = xasprintf("%s.lock", path);
		DIR *d = opendir(tmpdir);
		struct dirent *de;

		assert_true(fs_exists(lock));
		assert_non_null(d);
		while ((de = readdir(d)))
			assert_null(strstr(de->d_name, ".tmp."));
		closedir(d);
	}
}

/* On files ssh-keygen -R accepts, our removal gives the same bytes. */
static void test_remove_same_as_ssh_keygen_R(void **state)
{
	_cleanup_free_ char *ours = xasprintf("%s/rm-ours", tmpdir);
	_cleanup_free_ char *theirs = xasprintf("%s/rm-theirs", tmpdir);
	_cleanup_free_ char *old = xasprintf("%s.old", theirs);
	_cleanup_free_ char *in = NULL, *a = NULL, *b = NULL;
	_cleanup_free_ char *h = hash_name("web.vm");
	const char *hosts[] = { "web.vm" };
	const char *argv[] = { "ssh-keygen", "-R", "web.vm", "-f", theirs, NULL };
	struct bg_err err = { 0 };

	(void)state;
	if (!have_ssh_keygen) {
		test_skip_reason("ssh-keygen not installed");
		skip();
	}
	in = xasprintf("# comment\n\nweb.vm %s\ndb.vm,10.0.0.1 %s\n%s %s\n@revoked web.vm %s\n"
		       "10.0.0.2,web.vm %s\n[web.vm]:2222 %s\n",
		       key_line[0], key_line[1], h, key_line[2], key_line[3], key_line[4],
		       key_line[0]);
	write_bytes(ours, in, strlen(in));
	write_bytes(theirs, in, strlen(in));
	assert_int_equal(known_hosts_remove(ours, hosts, 1, 22, &err), 3);
	assert_int_equal(proc_run(argv, 30000, NULL, &err), 0);
	a = read_all(ours, NULL);
	b = read_all(theirs, NULL);
	assert_string_equal(a, b);
	unlink(old);
}

static void test_remove_missing(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/nodir/known_hosts", tmpdir);
	_cleanup_free_ char *path2 = xasprintf("%s/nofile", tmpdir);
	const char *hosts[] = { "web.vm" };
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(known_hosts_remove(path, hosts, 1, 22, &err), 0);
	assert_false(fs_exists(path));
	assert_int_equal(known_hosts_remove(path2, hosts, 1, 22, &err), 0);
	assert_false(fs_exists(path2));
}

/*
 * N processes each pin M hosts while another keeps pinning and removing a
 * victim host: every pin must survive (appends take the lock, so a rewrite
 * never drops one).
 */
#define RACE_WRITERS 6
#define RACE_PINS 25

static void test_remove_concurrent_appends(void **state)
{
	_cleanup_free_ char *path = xasprintf("%s/race", tmpdir);
	_cleanup_free_ char *data = NULL;
	pid_t pids[RACE_WRITERS + 1];
	struct bg_err err = { 0 };

	(void)state;
	for (int w = 0; w <= RACE_WRITERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] > 0)
			continue;
		for (int j = 0; j < RACE_PINS; j++) {
			char name[64];
			const char *hosts[] = { name };
			struct bg_err e = { 0 };

			if (w == RACE_WRITERS) {
				/* the remover */
				snprintf(name, sizeof(name), "victim.vm");
				if (known_hosts_verify_pin(path, hosts, 1, 22, key_blob[1],
							   key_blob_len[1], &e) < 0 ||
				    known_hosts_remove(path, hosts, 1, 22, &e) != 1) {
					fprintf(stderr, "remover: %s\n", e.msg);
					_exit(1);
				}
				continue;
			}
			snprintf(name, sizeof(name), "w%d-%d.vm", w, j);
			if (known_hosts_verify_pin(path, hosts, 1, 22, key_blob[0], key_blob_len[0],
						   &e) < 0) {
				fprintf(stderr, "writer: %s\n", e.msg);
				_exit(1);
			}
		}
		_exit(0);
	}
	for (int w = 0; w <= RACE_WRITERS; w++) {
		int status;

		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	data = read_all(path, NULL);
	assert_int_equal(count_lines(data), RACE_WRITERS * RACE_PINS);
	for (int w = 0; w < RACE_WRITERS; w++)
		for (int j = 0; j < RACE_PINS; j++) {
			char name[64];

			snprintf(name, sizeof(name), "w%d-%d.vm", w, j);
			assert_int_equal(known_hosts_check(path, name, 22, key_blob[0],
							   key_blob_len[0], NULL, &err),
					 KH_OK);
		}
	assert_int_equal(
		known_hosts_check(path, "victim.vm", 22, key_blob[1], key_blob_len[1], NULL, &err),
		KH_NEW);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_table_hashed_by_ssh_keygen),
		cmocka_unit_test(test_pin_new_then_ok_then_mitm),
		cmocka_unit_test(test_pin_fingerprint_matches_ssh_keygen),
		cmocka_unit_test(test_pin_partial_and_port),
		cmocka_unit_test(test_pin_appends_after_missing_newline),
		cmocka_unit_test(test_pin_revoked),
		cmocka_unit_test(test_pin_unreadable_is_not_new),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_pinned_types),
		cmocka_unit_test(test_set_pin_replaces),
		cmocka_unit_test(test_remove_keeps_everything_else),
		cmocka_unit_test(test_remove_same_as_ssh_keygen_R),
		cmocka_unit_test(test_remove_missing),
		cmocka_unit_test(test_remove_concurrent_appends),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
