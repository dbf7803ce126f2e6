/*
 * validate.c - the schema of the spec language and the rules for every field.
 *
 * Owns the field table (which keys exist where, their types, which are
 * required), the resolution of plain scalars, and struct spec_builder, which
 * both front ends (YAML events in spec.c, cJSON in json.c) feed. All value
 * checks live here so YAML and JSON input obey identical rules.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/imgpath.h"
#include "common/xalloc.h"
#include "spec/internal.h"

struct field_info {
	const char *key;
	const char *path;
	enum spec_field parent;
	enum spec_field_type type;
	bool required;
};

static const struct field_info fields[SPEC_F_MAX] = {
	[SPEC_F_ROOT] = { "", "", SPEC_F_ROOT, SPEC_FT_MAP, true },
	[SPEC_F_API_VERSION] = { "apiVersion", "apiVersion", SPEC_F_ROOT, SPEC_FT_STRING, true },
	[SPEC_F_KIND] = { "kind", "kind", SPEC_F_ROOT, SPEC_FT_STRING, true },
	[SPEC_F_METADATA] = { "metadata", "metadata", SPEC_F_ROOT, SPEC_FT_MAP, true },
	[SPEC_F_NAME] = { "name", "metadata.name", SPEC_F_METADATA, SPEC_FT_STRING, true },
	[SPEC_F_LABELS] = { "labels", "metadata.labels", SPEC_F_METADATA, SPEC_FT_STRMAP, false },
	[SPEC_F_SPEC] = { "spec", "spec", SPEC_F_ROOT, SPEC_FT_MAP, true },
	[SPEC_F_STATE] = { "state", "spec.state", SPEC_F_SPEC, SPEC_FT_ENUM, false },
	[SPEC_F_VMM] = { "vmm", "spec.vmm", SPEC_F_SPEC, SPEC_FT_ENUM, false },
	[SPEC_F_VCPUS] = { "vcpus", "spec.vcpus", SPEC_F_SPEC, SPEC_FT_INT, false },
	[SPEC_F_MEMORY] = { "memoryMiB", "spec.memoryMiB", SPEC_F_SPEC, SPEC_FT_INT, false },
	[SPEC_F_KERNEL] = { "kernel", "spec.kernel", SPEC_F_SPEC, SPEC_FT_MAP, true },
	[SPEC_F_KERNEL_PATH] = { "path", "spec.kernel.path", SPEC_F_KERNEL, SPEC_FT_STRING, true },
	[SPEC_F_KERNEL_INITRD] = { "initrd", "spec.kernel.initrd", SPEC_F_KERNEL, SPEC_FT_STRING,
				   false },
	[SPEC_F_KERNEL_ARGS] = { "args", "spec.kernel.args", SPEC_F_KERNEL, SPEC_FT_STRING, false },
	[SPEC_F_ROOTFS] = { "rootfs", "spec.rootfs", SPEC_F_SPEC, SPEC_FT_MAP, true },
	[SPEC_F_ROOTFS_IMAGE] = { "image", "spec.rootfs.image", SPEC_F_ROOTFS, SPEC_FT_STRING,
				  true },
	[SPEC_F_ROOTFS_SIZE] = { "sizeMiB", "spec.rootfs.sizeMiB", SPEC_F_ROOTFS, SPEC_FT_INT,
				 false },
	[SPEC_F_WORK_DISK] = { "workDisk", "spec.workDisk", SPEC_F_SPEC, SPEC_FT_MAP, false },
	[SPEC_F_WORK_DISK_SIZE] = { "sizeMiB", "spec.workDisk.sizeMiB", SPEC_F_WORK_DISK,
				    SPEC_FT_INT, true },
	[SPEC_F_NETWORK] = { "network", "spec.network", SPEC_F_SPEC, SPEC_FT_MAP, false },
	[SPEC_F_NETWORK_IP] = { "ip", "spec.network.ip", SPEC_F_NETWORK, SPEC_FT_STRING, false },
	[SPEC_F_NETWORK_EGRESS] = { "egress", "spec.network.egress", SPEC_F_NETWORK, SPEC_FT_ENUM,
				    false },
	[SPEC_F_NETWORK_PORTS] = { "ports", "spec.network.ports", SPEC_F_NETWORK, SPEC_FT_MAPSEQ,
				   false },
	[SPEC_F_PORT_HOST_PORT] = { "hostPort", "spec.network.ports[].hostPort",
				    SPEC_F_NETWORK_PORTS, SPEC_FT_INT, true },
	[SPEC_F_PORT_GUEST_PORT] = { "guestPort", "spec.network.ports[].guestPort",
				     SPEC_F_NETWORK_PORTS, SPEC_FT_INT, true },
	[SPEC_F_PORT_PROTOCOL] = { "protocol", "spec.network.ports[].protocol",
				   SPEC_F_NETWORK_PORTS, SPEC_FT_ENUM, false },
	[SPEC_F_PORT_HOST_IP] = { "hostIP", "spec.network.ports[].hostIP", SPEC_F_NETWORK_PORTS,
				  SPEC_FT_STRING, false },
	[SPEC_F_SSH] = { "ssh", "spec.ssh", SPEC_F_SPEC, SPEC_FT_MAP, false },
	[SPEC_F_SSH_USER] = { "user", "spec.ssh.user", SPEC_F_SSH, SPEC_FT_STRING, false },
	[SPEC_F_SSH_KEYS] = { "authorizedKeys", "spec.ssh.authorizedKeys", SPEC_F_SSH,
			      SPEC_FT_STRSEQ, false },
	[SPEC_F_GUEST] = { "guest", "spec.guest", SPEC_F_SPEC, SPEC_FT_MAP, false },
	[SPEC_F_GUEST_CONFIG] = { "config", "spec.guest.config", SPEC_F_GUEST, SPEC_FT_ENUM,
				  false },
	[SPEC_F_CLOUDINIT] = { "cloudInit", "spec.cloudInit", SPEC_F_SPEC, SPEC_FT_MAP, false },
	[SPEC_F_CLOUDINIT_USER_DATA] = { "userData", "spec.cloudInit.userData", SPEC_F_CLOUDINIT,
					 SPEC_FT_STRING, false },
	[SPEC_F_CLOUDINIT_USER_DATA_FILE] = { "userDataFile", "spec.cloudInit.userDataFile",
					      SPEC_F_CLOUDINIT, SPEC_FT_STRING, false },
	[SPEC_F_RESTART] = { "restartPolicy", "spec.restartPolicy", SPEC_F_SPEC, SPEC_FT_ENUM,
			     false },
};

enum spec_field_type spec_field_type(enum spec_field f)
{
	return fields[f].type;
}

const char *spec_field_key(enum spec_field f)
{
	return fields[f].key;
}

const char *spec_field_path(enum spec_field f)
{
	return fields[f].path;
}

const char *spec_kind_name(enum spec_kind k)
{
	static const char *const names[SPEC_KIND_MAX] = {
		[SPEC_KIND_NULL] = "null",	     [SPEC_KIND_BOOL] = "a boolean",
		[SPEC_KIND_INT] = "an integer",	     [SPEC_KIND_FLOAT] = "a number",
		[SPEC_KIND_STRING] = "a string",     [SPEC_KIND_MAPPING] = "a mapping",
		[SPEC_KIND_SEQUENCE] = "a sequence",
	};

	return k < SPEC_KIND_MAX ? names[k] : "an unknown value";
}

static bool is_collection(enum spec_field_type t)
{
	return t == SPEC_FT_MAP || t == SPEC_FT_STRMAP || t == SPEC_FT_STRSEQ ||
	       t == SPEC_FT_MAPSEQ;
}

/* A field of an element of a sequence of mappings (a spec.network.ports entry)? */
static bool in_element(enum spec_field f)
{
	return f != SPEC_F_ROOT && fields[fields[f].parent].type == SPEC_FT_MAPSEQ;
}

/*
 * The field's path for a message: with the element's index inside a
 * sequence of mappings ("spec.network.ports[2].hostPort"). Valid until the
 * next call.
 */
static const char *path_of(struct spec_builder *b, enum spec_field f)
{
	if (!in_element(f))
		return fields[f].path;
	snprintf(b->path_buf, sizeof(b->path_buf), "%s[%zu].%s", fields[fields[f].parent].path,
		 b->elem_index, fields[f].key);
	return b->path_buf;
}

static const char *type_expects(enum spec_field_type t)
{
	switch (t) {
	case SPEC_FT_MAP:
	case SPEC_FT_STRMAP:
		return "a mapping";
	case SPEC_FT_STRSEQ:
	case SPEC_FT_MAPSEQ:
		return "a sequence";
	case SPEC_FT_INT:
		return "an integer";
	default:
		return "a string";
	}
}

/* ---- scalars ------------------------------------------------------------ */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || is_digit(c);
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool span_all(const char *s, size_t len, bool (*pred)(char c))
{
	for (size_t i = 0; i < len; i++)
		if (!pred(s[i]))
			return false;
	return true;
}

static bool is_hex_digit(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_oct_digit(char c)
{
	return c >= '0' && c <= '7';
}

static bool text_is(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

static bool text_is_any(const char *s, size_t len, const char *const *lits)
{
	for (; *lits; lits++)
		if (text_is(s, len, *lits))
			return true;
	return false;
}

static bool is_float(const char *s, size_t len)
{
	static const char *const special[] = { ".inf",	".Inf",	 ".INF",  "+.inf", "+.Inf",
					       "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
					       ".NaN",	".NAN",	 NULL };
	size_t i = 0, mant = 0;

	if (text_is_any(s, len, special))
		return true;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	while (i < len && is_digit(s[i])) {
		i++;
		mant++;
	}
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && is_digit(s[i])) {
			i++;
			mant++;
		}
	}
	if (mant == 0)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		size_t exp = 0;

		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		while (i < len && is_digit(s[i])) {
			i++;
			exp++;
		}
		if (exp == 0)
			return false;
	}
	return i == len;
}

static bool is_int(const char *s, size_t len)
{
	size_t i = 0;

	if (len > 2 && s[0] == '0' && s[1] == 'x')
		return span_all(s + 2, len - 2, is_hex_digit);
	if (len > 2 && s[0] == '0' && s[1] == 'o')
		return span_all(s + 2, len - 2, is_oct_digit);
	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	return i < len && span_all(s + i, len - i, is_digit);
}

enum spec_kind spec_resolve_plain(const char *s, size_t len)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
	static const char *const bools[] = {
		"true", "True", "TRUE", "false", "False", "FALSE", NULL
	};

	if (text_is_any(s, len, nulls))
		return SPEC_KIND_NULL;
	if (text_is_any(s, len, bools))
		return SPEC_KIND_BOOL;
	if (is_int(s, len))
		return SPEC_KIND_INT;
	if (is_float(s, len))
		return SPEC_KIND_FLOAT;
	return SPEC_KIND_STRING;
}

/* An integer as resolved by spec_resolve_plain(); false when it overflows int64. */
static bool parse_int(const char *s, size_t len, int64_t *ret)
{
	uint64_t v = 0, limit = (uint64_t)INT64_MAX;
	unsigned base = 10;
	bool neg = false;
	size_t i = 0;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
		base = s[1] == 'x' ? 16 : 8;
		i = 2;
	} else if (len > 0 && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i = 1;
		if (neg)
			limit++;
	}
	for (; i < len; i++) {
		char c = s[i];
		unsigned d = is_digit(c) ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);

		if (v > (limit - d) / base)
			return false;
		v = v * base + d;
	}
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

bool spec_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i], n, cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (unsigned k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/*
 * User text for a message: at most 64 bytes (cut on a character boundary,
 * then "..."), control characters, quotes and backslashes escaped, inside
 * single quotes when 'quote'. Owned.
 */
static char *show_text(const char *s, size_t len, bool quote)
{
	struct buf b;
	size_t max = len > 64 ? 64 : len;
	bool utf8;

	buf_init(&b);
	while (max < len && max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	utf8 = spec_utf8_valid(s, max);
	if (quote)
		buf_addch(&b, '\'');
	for (size_t i = 0; i < max; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
			buf_addf(&b, "\\x%02x", c);
		else if (c == '\'' || c == '\\')
			buf_addf(&b, "\\%c", c);
		else
			buf_addch(&b, (char)c);
	}
	if (quote)
		buf_addch(&b, '\'');
	if (max < len)
		buf_adds(&b, "...");
	return buf_detach(&b, NULL);
}

static char *show(const char *s, size_t len)
{
	return show_text(s, len, true);
}

/* ---- checks --------------------------------------------------------------- */

bool spec_name_valid(const char *s)
{
	size_t len;

	if (!s)
		return false;
	len = strlen(s);
	if (len == 0 || len > SPEC_NAME_MAX)
		return false;
	if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* ^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$, at most 63 */
static bool label_name_valid(const char *s, size_t len)
{
	if (len == 0 || len > 63)
		return false;
	if (!is_alnum(s[0]) || !is_alnum(s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

/* A DNS subdomain: dot-separated RFC 1123 labels, at most 253 chars. */
static bool dns_subdomain_valid(const char *s, size_t len)
{
	size_t start = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.') {
			if (!is_lower_alnum(s[i]) && s[i] != '-')
				return false;
			continue;
		}
		if (i == start || i - start > 63 || s[start] == '-' || s[i - 1] == '-')
			return false;
		start = i + 1;
	}
	return true;
}

static bool label_key_valid(const char *s, size_t len)
{
	const char *slash = memchr(s, '/', len);

	if (!slash)
		return label_name_valid(s, len);
	return dns_subdomain_valid(s, (size_t)(slash - s)) &&
	       label_name_valid(slash + 1, len - (size_t)(slash - s) - 1);
}

static bool label_value_valid(const char *s, size_t len)
{
	return len == 0 || label_name_valid(s, len);
}

/* ^[a-z_][a-z0-9_-]*$, at most 32 */
static bool user_valid(const char *s, size_t len)
{
	if (len == 0 || len > SPEC_USER_MAX)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

/*
 * NULL when the text is fine, else what is wrong with it: invalid UTF-8,
 * NUL, line breaks (including U+0085, U+2028, U+2029), other C0/C1
 * control characters and DEL. A tab is allowed when allow_tab.
 */
static const char *text_problem(const char *s, size_t len, bool allow_tab)
{
	const unsigned char *u = (const unsigned char *)s;

	if (!spec_utf8_valid(s, len))
		return "must be valid UTF-8";
	for (size_t i = 0; i < len; i++) {
		if (u[i] == '\n' || u[i] == '\r' || (u[i] == 0xc2 && u[i + 1] == 0x85) ||
		    (u[i] == 0xe2 && u[i + 1] == 0x80 && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9)))
			return "must not contain a line break";
		if ((u[i] < 0x20 && !(allow_tab && u[i] == '\t')) || u[i] == 0x7f ||
		    (u[i] == 0xc2 && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f))
			return "must not contain control characters";
	}
	return NULL;
}

static bool check_text(struct spec_builder *b, enum spec_field f, const char *s, size_t len,
		       struct spec_loc loc)
{
	const char *problem = text_problem(s, len, false);

	if (problem)
		spec_builder_error(b, loc, "%s: %s", path_of(b, f), problem);
	return !problem;
}

static bool check_path(struct spec_builder *b, enum spec_field f, const char *s, size_t len,
		       struct spec_loc loc)
{
	if (!check_text(b, f, s, len, loc))
		return false;
	if (len > SPEC_PATH_MAX) {
		spec_builder_error(b, loc, "%s: must be at most %d bytes long, got %zu",
				   path_of(b, f), SPEC_PATH_MAX, len);
		return false;
	}
	if (len == 0 || s[0] != '/') {
		_cleanup_free_ char *shown = show(s, len);

		spec_builder_error(b, loc, "%s: must be an absolute path, got %s", path_of(b, f),
				   shown);
		return false;
	}
	return true;
}

static bool check_ip(struct spec_builder *b, const char *s, size_t len, struct spec_loc loc)
{
	_cleanup_free_ char *shown = show(s, len);
	char tmp[INET_ADDRSTRLEN];
	struct in_addr a;
	uint32_t h;

	if (len >= sizeof(tmp) || memchr(s, '\0', len)) {
		spec_builder_error(b, loc, "spec.network.ip: %s is not an IPv4 address", shown);
		return false;
	}
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (inet_pton(AF_INET, tmp, &a) != 1) {
		spec_builder_error(b, loc,
				   "spec.network.ip: %s is not an IPv4 address (a.b.c.d expected)",
				   shown);
		return false;
	}
	h = ntohl(a.s_addr);
	if ((h >> 24) == 0 || (h >> 24) == 127 || (h >> 28) >= 14) {
		spec_builder_error(b, loc,
				   "spec.network.ip: %s is not a usable unicast address "
				   "(0.0.0.0/8, 127.0.0.0/8, multicast and 240.0.0.0/4 are not)",
				   shown);
		return false;
	}
	return true;
}

static bool key_type_known(const char *t, size_t len)
{
	static const char *const types[] = { "ssh-ed25519",
					     "ecdsa-sha2-nistp256",
					     "ecdsa-sha2-nistp384",
					     "ecdsa-sha2-nistp521",
					     "ssh-rsa",
					     NULL };

	return text_is_any(t, len, types) || (len > 3 && memcmp(t, "sk-", 3) == 0);
}

static bool is_key_space(char c)
{
	return c == ' ' || c == '\t';
}

/* "<type> <base64> [comment]" with a known type whose blob names the same type. */
static bool check_ssh_key(struct spec_builder *b, size_t index, const char *s, size_t len,
			  struct spec_loc loc)
{
	const char *problem = text_problem(s, len, true);
	_cleanup_free_ uint8_t *blob = NULL;
	size_t i = 0, t0, tlen, d0, dlen, blob_len = 0;

	if (problem) {
		spec_builder_error(b, loc, "spec.ssh.authorizedKeys[%zu]: %s", index, problem);
		return false;
	}
	if (len > SPEC_KEY_MAX) {
		spec_builder_error(b, loc, "spec.ssh.authorizedKeys[%zu]: longer than %d bytes",
				   index, SPEC_KEY_MAX);
		return false;
	}
	while (i < len && is_key_space(s[i]))
		i++;
	t0 = i;
	while (i < len && !is_key_space(s[i]))
		i++;
	tlen = i - t0;
	while (i < len && is_key_space(s[i]))
		i++;
	d0 = i;
	while (i < len && !is_key_space(s[i]))
		i++;
	dlen = i - d0;
	if (tlen == 0 || dlen == 0) {
		spec_builder_error(b, loc,
				   "spec.ssh.authorizedKeys[%zu]: expected "
				   "'<key type> <base64 key> [comment]'",
				   index);
		return false;
	}
	if (!key_type_known(s + t0, tlen)) {
		_cleanup_free_ char *shown = show(s + t0, tlen);

		spec_builder_error(b, loc,
				   "spec.ssh.authorizedKeys[%zu]: unknown key type %s (expected "
				   "ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa or sk-*)",
				   index, shown);
		return false;
	}
	if (base64_decode(s + d0, dlen, &blob, &blob_len) < 0) {
		spec_builder_error(b, loc,
				   "spec.ssh.authorizedKeys[%zu]: key data is not valid base64",
				   index);
		return false;
	}
	if (blob_len < 4 ||
	    ((size_t)blob[0] << 24 | (size_t)blob[1] << 16 | (size_t)blob[2] << 8 | blob[3]) !=
		    tlen ||
	    blob_len - 4 < tlen || memcmp(blob + 4, s + t0, tlen) != 0) {
		_cleanup_free_ char *shown = show(s + t0, tlen);

		spec_builder_error(b, loc,
				   "spec.ssh.authorizedKeys[%zu]: key data is not a %s public key",
				   index, shown);
		return false;
	}
	return true;
}

/* ---- builder ---------------------------------------------------------------- */

void spec_builder_init(struct spec_builder *b, struct spec_loc doc_loc, spec_report_fn report,
		       void *ctx)
{
	memset(b, 0, sizeof(*b));
	b->spec = xcalloc(1, sizeof(*b->spec));
	b->spec->state = VM_DESIRED_RUNNING;
	b->spec->vmm = VMM_AUTO;
	b->spec->vcpus = 1;
	b->spec->memory_mib = 256;
	b->spec->restart_policy = RESTART_ALWAYS;
	b->report = report;
	b->ctx = ctx;
	b->doc_loc = doc_loc;
}

void spec_builder_release(struct spec_builder *b)
{
	vm_spec_free(b->spec);
	b->spec = NULL;
	free(b->label_loc);
	b->label_loc = NULL;
	free(b->port_loc);
	b->port_loc = NULL;
}

/* Report one error (file NULL: the document's own file). */
static void builder_verror(struct spec_builder *b, const char *file, struct spec_loc loc,
			   const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
static void builder_verror(struct spec_builder *b, const char *file, struct spec_loc loc,
			   const char *fmt, va_list ap)
{
	_cleanup_free_ char *msg = NULL;

	msg = xvasprintf(fmt, ap);
	b->n_errors++;
	b->report(b->ctx, file, loc, msg);
}

void spec_builder_error(struct spec_builder *b, struct spec_loc loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	builder_verror(b, NULL, loc, fmt, ap);
	va_end(ap);
}

/* An error in another file than the document's (a userDataFile). */
static void builder_error_in(struct spec_builder *b, const char *file, struct spec_loc loc,
			     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void builder_error_in(struct spec_builder *b, const char *file, struct spec_loc loc,
			     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	builder_verror(b, file, loc, fmt, ap);
	va_end(ap);
}

/* " (first at line L, column C)" or "" when the position is unknown. Static buffer of the caller. */
static const char *first_at(struct spec_loc loc, char *buf, size_t size)
{
	if (loc.line == 0)
		return "";
	snprintf(buf, size, " (first at line %u, column %u)", loc.line, loc.col);
	return buf;
}

/* Levenshtein distance of two short strings, case-insensitive; big when either is long. */
static size_t edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b), prev[32], cur[32];

	if (la >= 32 || lb >= 32)
		return 100;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + ((a[i - 1] | 0x20) != (b[j - 1] | 0x20));
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;

			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(size_t));
	}
	return prev[lb];
}

int spec_builder_key(struct spec_builder *b, enum spec_field parent, const char *key, size_t len,
		     struct spec_loc loc)
{
	_cleanup_free_ char *shown = NULL;
	const char *best = NULL;
	size_t best_d = 3;
	char where[80];

	for (int f = SPEC_F_ROOT + 1; f < SPEC_F_MAX; f++) {
		if (fields[f].parent != parent || !text_is(key, len, fields[f].key))
			continue;
		if (b->seen[f]) {
			spec_builder_error(b, loc, "duplicate key '%s'%s", path_of(b, f),
					   first_at(b->key_loc[f], where, sizeof(where)));
			/*
			 * A second scalar is still checked; a second mapping is
			 * skipped, or each of its keys would be a duplicate too.
			 */
			if (is_collection(fields[f].type))
				return -1;
			return f;
		}
		b->seen[f] = true;
		b->key_loc[f] = loc;
		return f;
	}
	for (int f = SPEC_F_ROOT + 1; f < SPEC_F_MAX; f++) {
		size_t d;

		if (fields[f].parent != parent)
			continue;
		d = edit_distance(key, len, fields[f].key);
		if (d < best_d) {
			best_d = d;
			best = fields[f].key;
		}
	}
	if (parent == SPEC_F_ROOT) {
		shown = show(key, len);
	} else {
		_cleanup_free_ char *raw = show_text(key, len, false);

		if (fields[parent].type == SPEC_FT_MAPSEQ)
			shown = xasprintf("'%s[%zu].%s'", fields[parent].path, b->elem_index, raw);
		else
			shown = xasprintf("'%s.%s'", fields[parent].path, raw);
	}
	if (best && len > 2)
		spec_builder_error(b, loc, "unknown field %s (did you mean '%s'?)", shown, best);
	else
		spec_builder_error(b, loc, "unknown field %s", shown);
	return -1;
}

static void type_error(struct spec_builder *b, enum spec_field f, enum spec_kind kind,
		       const char *text, size_t len, struct spec_loc loc)
{
	const char *expects = type_expects(fields[f].type);
	_cleanup_free_ char *shown = NULL;

	b->bad[f] = true;
	if (kind == SPEC_KIND_STRING || kind == SPEC_KIND_INT || kind == SPEC_KIND_FLOAT ||
	    kind == SPEC_KIND_BOOL)
		shown = show(text, len);
	if (kind == SPEC_KIND_STRING)
		spec_builder_error(b, loc, "%s: expected %s, got the string %s", path_of(b, f),
				   expects, shown);
	else if (shown && !strcmp(expects, "a string"))
		spec_builder_error(b, loc, "%s: expected a string, got %s %s (quote it)",
				   path_of(b, f), spec_kind_name(kind), shown);
	else if (shown)
		spec_builder_error(b, loc, "%s: expected %s, got %s %s", path_of(b, f), expects,
				   spec_kind_name(kind), shown);
	else
		spec_builder_error(b, loc, "%s: expected %s, got %s", path_of(b, f), expects,
				   spec_kind_name(kind));
}

bool spec_builder_begin(struct spec_builder *b, enum spec_field f, enum spec_kind kind,
			const char *text, size_t len, struct spec_loc loc)
{
	enum spec_field_type t = fields[f].type;
	bool ok;

	b->val_loc[f] = loc;
	if (t == SPEC_FT_MAP || t == SPEC_FT_STRMAP)
		ok = kind == SPEC_KIND_MAPPING;
	else if (t == SPEC_FT_STRSEQ || t == SPEC_FT_MAPSEQ)
		ok = kind == SPEC_KIND_SEQUENCE;
	else
		ok = false;
	if (!ok)
		type_error(b, f, kind, text, len, loc);
	return ok;
}

static void set_string(char **slot, const char *s, size_t len)
{
	free(*slot);
	*slot = xstrndup(s, len);
}

static bool check_range(struct spec_builder *b, enum spec_field f, const char *text, size_t len,
			int64_t min, int64_t max, int64_t *ret, struct spec_loc loc)
{
	int64_t v;

	if (!parse_int(text, len, &v) || v < min || v > max) {
		_cleanup_free_ char *shown = show_text(text, len, false);

		spec_builder_error(b, loc, "%s: must be between %lld and %lld, got %s",
				   path_of(b, f), (long long)min, (long long)max, shown);
		b->bad[f] = true;
		return false;
	}
	*ret = v;
	return true;
}

/* The spec.network.ports entry being built. */
static struct spec_port *cur_port(struct spec_builder *b)
{
	return &b->spec->ports[b->spec->n_ports - 1];
}

/*
 * A forward's host address: an IPv4 address of this host to listen on, or
 * 0.0.0.0 for all of them. Multicast, broadcast and class E are refused.
 */
static bool check_host_ip(struct spec_builder *b, enum spec_field f, const char *s, size_t len,
			  struct spec_loc loc, char ret[16])
{
	_cleanup_free_ char *shown = show(s, len);
	char tmp[INET_ADDRSTRLEN];
	struct in_addr a;

	if (len >= sizeof(tmp) || memchr(s, '\0', len)) {
		spec_builder_error(b, loc, "%s: %s is not an IPv4 address", path_of(b, f), shown);
		return false;
	}
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (inet_pton(AF_INET, tmp, &a) != 1) {
		spec_builder_error(b, loc, "%s: %s is not an IPv4 address (a.b.c.d expected)",
				   path_of(b, f), shown);
		return false;
	}
	if ((ntohl(a.s_addr) >> 28) >= 14) {
		spec_builder_error(b, loc,
				   "%s: %s is not a unicast address (use 0.0.0.0 for every "
				   "address of the host)",
				   path_of(b, f), shown);
		return false;
	}
	inet_ntop(AF_INET, &a, ret, 16);
	return true;
}

static void enum_error(struct spec_builder *b, enum spec_field f, const char *allowed,
		       const char *text, size_t len, struct spec_loc loc)
{
	_cleanup_free_ char *shown = show(text, len);

	b->bad[f] = true;
	spec_builder_error(b, loc, "%s: must be one of %s; got %s", path_of(b, f), allowed, shown);
}

static void set_enum(struct spec_builder *b, enum spec_field f, const char *text, size_t len,
		     struct spec_loc loc)
{
	_cleanup_free_ char *s = NULL;
	int v;

	if (memchr(text, '\0', len)) {
		enum_error(b, f, "the listed values", text, len, loc);
		return;
	}
	s = xstrndup(text, len);
	switch (f) {
	case SPEC_F_STATE:
		v = vm_desired_state_from_string(s);
		if (v < 0)
			enum_error(b, f, "running, stopped", text, len, loc);
		else
			b->spec->state = (enum vm_desired_state)v;
		break;
	case SPEC_F_VMM:
		v = vmm_kind_from_string(s);
		if (v < 0)
			enum_error(b, f, "auto, firecracker, qemu", text, len, loc);
		else
			b->spec->vmm = (enum vmm_kind)v;
		break;
	case SPEC_F_RESTART:
		v = restart_policy_from_string(s);
		if (v < 0)
			enum_error(b, f, "always, on-failure, never", text, len, loc);
		else
			b->spec->restart_policy = (enum restart_policy)v;
		break;
	case SPEC_F_NETWORK_EGRESS:
		v = spec_egress_from_string(s);
		if (v < 0)
			enum_error(b, f, "nat, none", text, len, loc);
		else
			b->spec->egress = (enum spec_egress)v;
		break;
	case SPEC_F_PORT_PROTOCOL:
		v = spec_proto_from_string(s);
		if (v < 0)
			enum_error(b, f, "tcp, udp", text, len, loc);
		else
			cur_port(b)->protocol = (enum spec_proto)v;
		break;
	case SPEC_F_GUEST_CONFIG:
		v = guest_config_from_string(s);
		if (v < 0)
			enum_error(b, f, "auto, cloudinit, cmdline", text, len, loc);
		else
			b->spec->guest_config = (enum guest_config)v;
		break;
	default:
		abort();
	}
}

static void set_int(struct spec_builder *b, enum spec_field f, const char *text, size_t len,
		    struct spec_loc loc)
{
	int64_t v;

	switch (f) {
	case SPEC_F_VCPUS:
		if (check_range(b, f, text, len, 1, 32, &v, loc))
			b->spec->vcpus = (unsigned)v;
		break;
	case SPEC_F_MEMORY:
		if (check_range(b, f, text, len, 64, 65536, &v, loc))
			b->spec->memory_mib = (unsigned)v;
		break;
	case SPEC_F_ROOTFS_SIZE:
		if (check_range(b, f, text, len, 1, SPEC_SIZE_MIB_MAX, &v, loc))
			b->spec->rootfs_size_mib = (uint64_t)v;
		break;
	case SPEC_F_WORK_DISK_SIZE:
		if (check_range(b, f, text, len, 1, SPEC_SIZE_MIB_MAX, &v, loc))
			b->spec->work_disk_mib = (uint64_t)v;
		break;
	case SPEC_F_PORT_HOST_PORT:
		if (check_range(b, f, text, len, 1, 65535, &v, loc))
			cur_port(b)->host_port = (uint16_t)v;
		break;
	case SPEC_F_PORT_GUEST_PORT:
		if (check_range(b, f, text, len, 1, 65535, &v, loc))
			cur_port(b)->guest_port = (uint16_t)v;
		break;
	default:
		abort();
	}
}

/*
 * A path inside the spec directory: relative, one line. Where it really
 * leads ('..', symlinks) is checked when it is opened (openat2 RESOLVE_BENEATH).
 */
static bool check_relative_path(struct spec_builder *b, enum spec_field f, const char *s,
				size_t len, struct spec_loc loc)
{
	_cleanup_free_ char *shown = NULL;

	if (!check_text(b, f, s, len, loc))
		return false;
	if (len > SPEC_PATH_MAX) {
		spec_builder_error(b, loc, "%s: must be at most %d bytes long, got %zu",
				   path_of(b, f), SPEC_PATH_MAX, len);
		return false;
	}
	shown = show(s, len);
	if (len == 0 || s[0] == '/') {
		spec_builder_error(b, loc,
				   "%s: must be a path relative to the spec file's directory, got "
				   "%s",
				   path_of(b, f), shown);
		return false;
	}
	return true;
}

/*
 * Check user-data text from 'what' (a field path). file: where the text is
 * when it is a file of its own (positions are then inside it), else NULL
 * (positions map into the spec: body, the first content line of a literal
 * block scalar, or the value's own position otherwise).
 */
static bool check_user_data(struct spec_builder *b, const char *what, const char *file,
			    const char *text, size_t len, struct spec_loc loc, struct spec_loc body)
{
	_cleanup_free_ char *msg = NULL;
	struct spec_loc at;

	if (len > SPEC_USERDATA_MAX) {
		spec_builder_error(b, loc, "%s: must be at most %d bytes (256 KiB), got %zu", what,
				   SPEC_USERDATA_MAX, len);
		return false;
	}
	if (spec_userdata_problem(text, len, &at, &msg) == 0)
		return true;
	if (file) {
		builder_error_in(b, file, at, "%s: %s", what, msg);
	} else if (at.line == 0 || (at.line == 1 && at.col == 1 && !body.line)) {
		/* About the whole text (or its start): the value's position says it. */
		spec_builder_error(b, loc, "%s: %s", what, msg);
	} else if (body.line) {
		/* A literal block: line k of the text is line body.line + k - 1 of the file. */
		spec_builder_error(
			b, (struct spec_loc){ body.line + at.line - 1, body.col + at.col - 1 },
			"%s: %s", what, msg);
	} else if (loc.line) {
		spec_builder_error(b, loc, "%s: at line %u, column %u of the user-data: %s", what,
				   at.line, at.col, msg);
	} else {
		spec_builder_error(b, loc, "%s: line %u, column %u: %s", what, at.line, at.col,
				   msg);
	}
	return false;
}

/* Read the userDataFile (when loading files) and check it: after every field was seen. */
static void finish_user_data(struct spec_builder *b)
{
	struct vm_spec *s = b->spec;
	enum spec_field fd = SPEC_F_CLOUDINIT_USER_DATA_FILE, fu = SPEC_F_CLOUDINIT_USER_DATA;
	_cleanup_free_ char *data = NULL, *shown = NULL;
	struct bg_err err = { 0 };
	size_t len = 0;

	if (!b->seen[fd] || b->bad[fd] || b->bad[SPEC_F_CLOUDINIT] || !s->cloudinit_user_data_file)
		return;
	if (!b->read_file) {
		/* The canonical JSON carries the content next to the name. */
		if (!b->seen[fu])
			spec_builder_error(b, b->val_loc[fd],
					   "%s: its content (userData) is missing", path_of(b, fd));
		return;
	}
	if (b->seen[fu]) {
		spec_builder_error(
			b, b->key_loc[fd],
			"spec.cloudInit: give either userData or userDataFile, not both");
		return;
	}
	if (b->read_file(b->read_ctx, s->cloudinit_user_data_file, &data, &len, &shown, &err) < 0) {
		spec_builder_error(b, b->val_loc[fd], "%s: %s", path_of(b, fd), err.msg);
		return;
	}
	if (!check_user_data(b, path_of(b, fd), shown, data, len, b->val_loc[fd],
			     (struct spec_loc){ 0, 0 }))
		return;
	free(s->cloudinit_user_data);
	s->cloudinit_user_data = TAKE_PTR(data);
}

static void set_str(struct spec_builder *b, enum spec_field f, const char *text, size_t len,
		    struct spec_loc loc)
{
	struct vm_spec *s = b->spec;
	_cleanup_free_ char *shown = NULL;

	switch (f) {
	case SPEC_F_API_VERSION:
	case SPEC_F_KIND: {
		const char *want = f == SPEC_F_KIND ? SPEC_KIND : SPEC_API_VERSION;

		if (!text_is(text, len, want)) {
			shown = show(text, len);
			spec_builder_error(b, loc, "%s: must be '%s', got %s", path_of(b, f), want,
					   shown);
		}
		break;
	}
	case SPEC_F_NAME:
		if (len > SPEC_NAME_MAX || memchr(text, '\0', len) ||
		    !spec_name_valid((shown = xstrndup(text, len)))) {
			free(shown);
			shown = show(text, len);
			spec_builder_error(b, loc,
					   "metadata.name: %s is not a valid name (at most %d "
					   "lowercase letters, digits and '-', starting and ending "
					   "with a letter or digit)",
					   shown, SPEC_NAME_MAX);
			b->bad[f] = true;
			break;
		}
		free(s->name);
		s->name = TAKE_PTR(shown);
		break;
	case SPEC_F_KERNEL_PATH:
		if (check_path(b, f, text, len, loc)) {
			set_string(&s->kernel_path, text, len);
			s->kernel_path_line = loc.line;
			s->kernel_path_col = loc.col;
		}
		break;
	case SPEC_F_KERNEL_INITRD:
		if (check_path(b, f, text, len, loc)) {
			set_string(&s->kernel_initrd, text, len);
			s->kernel_initrd_line = loc.line;
			s->kernel_initrd_col = loc.col;
		}
		break;
	case SPEC_F_ROOTFS_IMAGE:
		if (check_path(b, f, text, len, loc)) {
			set_string(&s->rootfs_image, text, len);
			s->rootfs_image_line = loc.line;
			s->rootfs_image_col = loc.col;
		}
		break;
	case SPEC_F_KERNEL_ARGS:
		if (!check_text(b, f, text, len, loc))
			break;
		if (len > SPEC_ARGS_MAX) {
			spec_builder_error(b, loc, "%s: must be at most %d bytes long, got %zu",
					   path_of(b, f), SPEC_ARGS_MAX, len);
			break;
		}
		free(s->kernel_args);
		/* "" means no extra arguments, the same as leaving it out. */
		s->kernel_args = len ? xstrndup(text, len) : NULL;
		break;
	case SPEC_F_NETWORK_IP:
		if (check_ip(b, text, len, loc))
			set_string(&s->ip, text, len);
		break;
	case SPEC_F_PORT_HOST_IP:
		if (check_host_ip(b, f, text, len, loc, cur_port(b)->host_ip))
			;
		else
			b->bad[f] = true;
		break;
	case SPEC_F_SSH_USER:
		if (!user_valid(text, len)) {
			shown = show(text, len);
			spec_builder_error(b, loc,
					   "spec.ssh.user: %s is not a valid user name (at most %d "
					   "of a-z, 0-9, '_' and '-', not starting with a digit or "
					   "'-')",
					   shown, SPEC_USER_MAX);
			break;
		}
		set_string(&s->ssh_user, text, len);
		break;
	case SPEC_F_CLOUDINIT_USER_DATA:
		if (check_user_data(b, path_of(b, f), NULL, text, len, loc, b->body_loc)) {
			set_string(&s->cloudinit_user_data, text, len);
			b->user_data_body = b->body_loc;
		} else {
			b->bad[f] = true;
		}
		break;
	case SPEC_F_CLOUDINIT_USER_DATA_FILE:
		if (check_relative_path(b, f, text, len, loc))
			set_string(&s->cloudinit_user_data_file, text, len);
		else
			b->bad[f] = true;
		break;
	default:
		abort();
	}
}

void spec_builder_scalar(struct spec_builder *b, enum spec_field f, enum spec_kind kind,
			 const char *text, size_t len, struct spec_loc loc)
{
	enum spec_field_type t = fields[f].type;

	b->val_loc[f] = loc;
	if (t == SPEC_FT_INT) {
		if (kind != SPEC_KIND_INT) {
			type_error(b, f, kind, text, len, loc);
			return;
		}
		set_int(b, f, text, len, loc);
		return;
	}
	if ((t != SPEC_FT_STRING && t != SPEC_FT_ENUM) || kind != SPEC_KIND_STRING) {
		type_error(b, f, kind, text, len, loc);
		return;
	}
	if (t == SPEC_FT_ENUM)
		set_enum(b, f, text, len, loc);
	else
		set_str(b, f, text, len, loc);
}

void spec_builder_label(struct spec_builder *b, enum spec_kind key_kind, const char *key,
			size_t key_len, struct spec_loc key_loc, enum spec_kind kind,
			const char *value, size_t len, struct spec_loc loc)
{
	struct vm_spec *s = b->spec;
	_cleanup_free_ char *shown_key = show(key, key_len);
	_cleanup_free_ char *raw_key = show_text(key, key_len, false);
	bool key_ok = key_kind != SPEC_KIND_NULL && label_key_valid(key, key_len);

	if (!key_ok)
		spec_builder_error(b, key_loc,
				   "metadata.labels: invalid key %s (at most 63 letters, digits, "
				   "'-', '_' and '.', starting and ending with a letter or digit, "
				   "optionally after a DNS subdomain and '/')",
				   shown_key);
	if (kind != SPEC_KIND_STRING) {
		_cleanup_free_ char *shown = NULL;

		if (kind == SPEC_KIND_MAPPING || kind == SPEC_KIND_SEQUENCE ||
		    kind == SPEC_KIND_NULL) {
			spec_builder_error(b, loc, "metadata.labels.%s: expected a string, got %s",
					   raw_key, spec_kind_name(kind));
		} else {
			shown = show(value, len);
			spec_builder_error(b, loc,
					   "metadata.labels.%s: expected a string, got %s %s "
					   "(quote it)",
					   raw_key, spec_kind_name(kind), shown);
		}
	} else if (!label_value_valid(value, len)) {
		_cleanup_free_ char *shown = show(value, len);

		spec_builder_error(b, loc,
				   "metadata.labels.%s: invalid value %s (empty, or at most 63 "
				   "letters, digits, '-', '_' and '.', starting and ending with a "
				   "letter or digit)",
				   raw_key, shown);
	}
	if (!key_ok)
		return;
	if (s->n_labels == b->label_alloc) {
		b->label_alloc = b->label_alloc ? 2 * b->label_alloc : 8;
		s->labels = xreallocarray(s->labels, b->label_alloc, sizeof(*s->labels));
		b->label_loc = xreallocarray(b->label_loc, b->label_alloc, sizeof(*b->label_loc));
	}
	s->labels[s->n_labels].key = xstrndup(key, key_len);
	s->labels[s->n_labels].value = kind == SPEC_KIND_STRING && label_value_valid(value, len)
					       ? xstrndup(value, len)
					       : xstrdup("");
	b->label_loc[s->n_labels] = key_loc;
	s->n_labels++;
}

bool spec_builder_elem_begin(struct spec_builder *b, enum spec_field f, size_t index,
			     enum spec_kind kind, const char *text, size_t len, struct spec_loc loc)
{
	struct vm_spec *s = b->spec;

	if (f != SPEC_F_NETWORK_PORTS)
		abort();
	b->elem_index = index;
	if (kind != SPEC_KIND_MAPPING) {
		_cleanup_free_ char *shown = NULL;

		b->bad[f] = true;
		if (kind == SPEC_KIND_STRING || kind == SPEC_KIND_INT || kind == SPEC_KIND_FLOAT ||
		    kind == SPEC_KIND_BOOL)
			shown = show(text, len);
		spec_builder_error(b, loc,
				   "%s[%zu]: expected a mapping (hostPort, guestPort, "
				   "protocol, hostIP), got %s%s%s",
				   fields[f].path, index, spec_kind_name(kind), shown ? " " : "",
				   shown ? shown : "");
		return false;
	}
	if (s->n_ports == SPEC_PORTS_MAX) {
		if (s->n_ports == index)
			spec_builder_error(b, loc, "%s: at most %d forwards, got more",
					   fields[f].path, SPEC_PORTS_MAX);
		b->bad[f] = true;
		return false;
	}
	s->ports = xreallocarray(s->ports, s->n_ports + 1, sizeof(*s->ports));
	b->port_loc = xreallocarray(b->port_loc, s->n_ports + 1, sizeof(*b->port_loc));
	s->ports[s->n_ports] =
		(struct spec_port){ .host_ip = "127.0.0.1", .protocol = SPEC_PROTO_TCP };
	b->port_loc[s->n_ports] = loc;
	s->n_ports++;
	for (int c = SPEC_F_ROOT + 1; c < SPEC_F_MAX; c++) {
		if (fields[c].parent != f)
			continue;
		b->seen[c] = false;
		b->bad[c] = false;
		b->key_loc[c] = loc;
		b->val_loc[c] = loc;
	}
	return true;
}

void spec_builder_elem_end(struct spec_builder *b, enum spec_field f)
{
	struct vm_spec *s = b->spec;
	bool bad = false;

	for (int c = SPEC_F_ROOT + 1; c < SPEC_F_MAX; c++) {
		if (fields[c].parent != f)
			continue;
		if (fields[c].required && !b->seen[c]) {
			spec_builder_error(b, b->port_loc[s->n_ports - 1],
					   "%s[%zu]: missing required field '%s'", fields[f].path,
					   b->elem_index, fields[c].key);
			bad = true;
		}
		bad = bad || b->bad[c];
	}
	/* A broken entry is not compared with the others (its error is enough). */
	if (bad)
		s->n_ports--;
}

void spec_builder_item(struct spec_builder *b, enum spec_field f, size_t index, enum spec_kind kind,
		       const char *text, size_t len, struct spec_loc loc)
{
	struct vm_spec *s = b->spec;

	if (f != SPEC_F_SSH_KEYS)
		abort();
	if (kind != SPEC_KIND_STRING) {
		if (kind == SPEC_KIND_MAPPING || kind == SPEC_KIND_SEQUENCE ||
		    kind == SPEC_KIND_NULL) {
			spec_builder_error(
				b, loc, "spec.ssh.authorizedKeys[%zu]: expected a string, got %s",
				index, spec_kind_name(kind));
		} else {
			_cleanup_free_ char *shown = show(text, len);

			spec_builder_error(
				b, loc,
				"spec.ssh.authorizedKeys[%zu]: expected a string, got %s "
				"%s (quote it)",
				index, spec_kind_name(kind), shown);
		}
		return;
	}
	if (!check_ssh_key(b, index, text, len, loc))
		return;
	s->ssh_keys = xreallocarray(s->ssh_keys, s->n_ssh_keys + 1, sizeof(*s->ssh_keys));
	s->ssh_keys[s->n_ssh_keys++] = xstrndup(text, len);
}

struct label_ref {
	struct spec_label label;
	struct spec_loc loc;
	size_t index;
};

static int label_ref_cmp(const void *a, const void *b)
{
	const struct label_ref *x = a, *y = b;
	int c = strcmp(x->label.key, y->label.key);

	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Sort labels by key and report duplicates (the later occurrence, naming the first). */
static void sort_labels(struct spec_builder *b)
{
	struct vm_spec *s = b->spec;
	_cleanup_free_ struct label_ref *refs = NULL;
	size_t n = 0;

	if (s->n_labels == 0)
		return;
	refs = xcalloc(s->n_labels, sizeof(*refs));
	for (size_t i = 0; i < s->n_labels; i++)
		refs[i] = (struct label_ref){ s->labels[i], b->label_loc[i], i };
	qsort(refs, s->n_labels, sizeof(*refs), label_ref_cmp);
	for (size_t i = 0; i < s->n_labels; i++) {
		if (n > 0 && strcmp(refs[i].label.key, s->labels[n - 1].key) == 0) {
			char where[80];

			spec_builder_error(b, refs[i].loc, "duplicate key 'metadata.labels.%s'%s",
					   refs[i].label.key,
					   first_at(b->label_loc[n - 1], where, sizeof(where)));
			free(refs[i].label.key);
			free(refs[i].label.value);
			continue;
		}
		s->labels[n] = refs[i].label;
		b->label_loc[n] = refs[i].loc;
		n++;
	}
	s->n_labels = n;
}

/* Do two forwards listen on the same host address (0.0.0.0 is every address) and port? */
static bool ports_overlap(const struct spec_port *x, const struct spec_port *y)
{
	return x->protocol == y->protocol && x->host_port == y->host_port &&
	       (strcmp(x->host_ip, y->host_ip) == 0 || strcmp(x->host_ip, "0.0.0.0") == 0 ||
		strcmp(y->host_ip, "0.0.0.0") == 0);
}

/* Forwards of one VM must not overlap each other. */
static void check_ports(struct spec_builder *b)
{
	const struct vm_spec *s = b->spec;

	for (size_t i = 0; i < s->n_ports; i++)
		for (size_t j = 0; j < i; j++) {
			const struct spec_port *x = &s->ports[i], *y = &s->ports[j];
			char where[80];

			if (!ports_overlap(x, y))
				continue;
			spec_builder_error(b, b->port_loc[i],
					   "spec.network.ports: %s:%u/%s is forwarded twice%s",
					   x->host_ip, x->host_port,
					   spec_proto_to_string(x->protocol),
					   first_at(b->port_loc[j], where, sizeof(where)));
			break;
		}
}

struct vm_spec *spec_builder_finish(struct spec_builder *b)
{
	struct vm_spec *s = b->spec;

	for (int f = SPEC_F_ROOT + 1; f < SPEC_F_MAX; f++) {
		enum spec_field p = fields[f].parent;
		struct spec_loc at = p == SPEC_F_ROOT ? b->doc_loc : b->key_loc[p];

		if (!fields[f].required || b->seen[f] || b->bad[SPEC_F_ROOT] || in_element(f))
			continue;
		if (p != SPEC_F_ROOT && (!b->seen[p] || b->bad[p]))
			continue;
		spec_builder_error(b, at, "missing required field '%s'", path_of(b, f));
	}
	if (s->vmm == VMM_FIRECRACKER && s->vcpus > 1 && s->vcpus % 2 != 0 && !b->bad[SPEC_F_VMM] &&
	    !b->bad[SPEC_F_VCPUS])
		spec_builder_error(b, b->val_loc[SPEC_F_VCPUS],
				   "spec.vcpus: must be 1 or an even number with vmm firecracker, "
				   "got %u",
				   s->vcpus);
	sort_labels(b);
	check_ports(b);
	finish_user_data(b);
	if (!s->ssh_user)
		s->ssh_user = xstrdup("root");
	/* A root that is not a mapping was reported by the front end. */
	if (b->n_errors || b->bad[SPEC_F_ROOT])
		return NULL;
	free(b->label_loc);
	b->label_loc = NULL;
	b->label_alloc = 0;
	free(b->port_loc);
	b->port_loc = NULL;
	return TAKE_PTR(b->spec);
}

const char *spec_builder_name(const struct spec_builder *b)
{
	return b->spec ? b->spec->name : NULL;
}

static void check_image_path(struct buf *out, const struct vm_spec *spec, const char *field,
			     const char *path, unsigned line, unsigned col,
			     const struct imgpath_conf *conf)
{
	struct bg_err err = { 0 };

	if (!path || imgpath_check(conf, path, &err) >= 0)
		return;
	buf_adds(out, spec->source_file ? spec->source_file : "<spec>");
	if (line)
		buf_addf(out, ":%u:%u", line, col);
	buf_addf(out, ": %s: %s\n", field, err.msg);
}

char *spec_check_image_paths(const struct vm_spec *spec, const struct imgpath_conf *conf)
{
	struct buf out;

	buf_init(&out);
	check_image_path(&out, spec, "spec.kernel.path", spec->kernel_path, spec->kernel_path_line,
			 spec->kernel_path_col, conf);
	check_image_path(&out, spec, "spec.kernel.initrd", spec->kernel_initrd,
			 spec->kernel_initrd_line, spec->kernel_initrd_col, conf);
	check_image_path(&out, spec, "spec.rootfs.image", spec->rootfs_image,
			 spec->rootfs_image_line, spec->rootfs_image_col, conf);
	if (!out.len) {
		buf_release(&out);
		return NULL;
	}
	return buf_detach(&out, NULL);
}
