/*
 * seed.c - render the NoCloud seed's files (pure) and write the seed ISO.
 *
 * YAML is written by hand in a fixed shape. Every value that comes from the
 * spec or the host is a double-quoted scalar with everything outside
 * printable ASCII escaped (so a hostile key comment, user name or host name
 * cannot start a new key, a comment or a document); only the private key,
 * which banger made itself, may be a literal block.
 *
 * The facts about cloud-init this relies on (cloud-init 22.4, Debian 12):
 *  - NoCloud reads meta-data, user-data and network-config from a
 *    filesystem labelled "cidata"; network-config version 2 is netplan's
 *    format. 'gateway4' is used for the default route rather than a
 *    'routes: [{to: 0.0.0.0/0}]' entry: every renderer of that version
 *    (ENI, networkd, netplan) turns gateway4 into a plain gateway, while
 *    ENI renders extra routes as 'route add' commands that need net-tools.
 *  - cc_ssh: 'ssh_keys' {ed25519_private, ed25519_public} are written as
 *    the host key after 'ssh_deletekeys' removed the image's keys, and
 *    'ssh_genkeytypes: [ed25519]' generates none (only missing types are
 *    generated, and ed25519 was just written), so sshd serves only our key;
 *    the schema wants at least one type listed. 'disable_root: false' keeps
 *    the "please login as" prefix off root's keys.
 *  - 'ssh_pwauth' is left alone: cc_set_passwords rewrites sshd_config and
 *    RESTARTS sshd when it changes the setting, in the config stage, after
 *    sshd already answered; a guest that banger just saw answer would then
 *    refuse connections for a moment. banger's users have no password
 *    (locked) anyway; a user-data that wants it sets it itself.
 *  - 'users' without "default" creates no distro default user. The root
 *    case lists root itself (an existing user is not re-created; its keys
 *    are set and, with lock_passwd false, its password left alone), which
 *    unlike 'users: []' passes the schema check (minItems 1).
 *  - Multi-part user-data: cloud-init walks a MIME multipart/mixed message,
 *    running text/x-shellscript parts as scripts and merging the
 *    text/cloud-config parts in order. Each part is merged INTO what came
 *    before it with that part's own 'merge_how' (or Merge-Type header),
 *    else the default dict(replace)+list()+str(): a later part's key
 *    replaces an earlier one's (lists included). The dict merger's
 *    'no_replace' keeps the earlier value for a key both have, recursing
 *    into lists with 'recurse_list' (then the list merger's 'append'
 *    concatenates); its 'replace' takes the later value whole without
 *    recursing. Nested multipart parts are walked too.
 *
 * So with the spec's user-data the archive is, in this order:
 *   1. the user's part (as they wrote it; their merge_how only decides how
 *      it merges into nothing);
 *   2. banger's lists, merged with list(append)+dict(no_replace,recurse_list):
 *      'users' and 'mounts' are appended to
 *      the user's own, so their users and mounts stay and banger's user and
 *      keys are added; keys the user did not set are added as they are;
 *      nothing of the user's is replaced;
 *   3. banger's settings, merged with dict(replace)+list(replace): the host
 *      key, ssh_deletekeys, ssh_genkeytypes, disable_root (root)
 *      and the hostname replace whatever the user set, so the host key
 *      banger pinned is the one the guest serves.
 * The user's runcmd, packages, write_files and scripts are untouched by 2
 * and 3 (banger sets none of them). Had banger's part come first, the user's
 * part (default dict(replace)) would replace banger's 'users' and
 * 'ssh_keys' with theirs. Limitation: a 'users' that is not a list (a
 * string or a mapping) cannot be appended to and wins over banger's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/guest/seed.h"
#include "spec/spec.h"

#define GENISOIMAGE_TIMEOUT_MS 60000

/* ---- YAML scalars ------------------------------------------------------------------ */

/* "<indent>key: "value"\n" */
static void add_kv(struct buf *b, int indent, const char *key, const char *value)
{
	buf_addf(b, "%*s%s: ", indent, "", key);
	spec_yaml_quote(b, value);
	buf_addch(b, '\n');
}

/* "<indent>- "value"\n" */
static void add_item(struct buf *b, int indent, const char *value)
{
	buf_addf(b, "%*s- ", indent, "");
	spec_yaml_quote(b, value);
	buf_addch(b, '\n');
}

/* Printable ASCII lines only, none blank or starting with a space: safe as a literal block. */
static bool literal_ok(const char *s)
{
	bool line_start = true;

	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n') {
			if (line_start)
				return false;
			line_start = true;
			continue;
		}
		if (c < 0x20 || c > 0x7e || (line_start && c == ' '))
			return false;
		line_start = false;
	}
	return true;
}

/* key: |  (text indented by indent + 2), or a quoted scalar when the text is not plain. */
static void add_block(struct buf *b, int indent, const char *key, const char *text)
{
	size_t len = strlen(text);

	if (!literal_ok(text)) {
		add_kv(b, indent, key, text);
		return;
	}
	/* Clip ('|') keeps one final newline, strip ('|-') none. */
	buf_addf(b, "%*s%s: |%s\n", indent, "", key, text[len - 1] == '\n' ? "" : "-");
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		buf_addf(b, "%*s%.*s\n", indent + 2, "", (int)n, p);
		p += n + (nl ? 1 : 0);
	}
}

/* ---- the files ------------------------------------------------------------------- */

static char *render_meta_data(const struct seed_input *in)
{
	struct buf b;

	buf_init(&b);
	add_kv(&b, 0, "instance-id", in->instance_id);
	add_kv(&b, 0, "local-hostname", in->hostname);
	return buf_detach(&b, NULL);
}

static char *render_network_config(const struct seed_input *in)
{
	_cleanup_free_ char *cidr = xasprintf("%s/%u", in->ip, in->prefix);
	struct buf b;

	buf_init(&b);
	buf_adds(&b, "version: 2\nethernets:\n  eth0:\n    match:\n");
	add_kv(&b, 6, "macaddress", in->mac);
	add_kv(&b, 4, "set-name", "eth0");
	buf_adds(&b, "    dhcp4: false\n    addresses:\n");
	add_item(&b, 6, cidr);
	add_kv(&b, 4, "gateway4", in->gateway);
	if (in->n_nameservers) {
		buf_adds(&b, "    nameservers:\n      addresses:\n");
		for (size_t i = 0; i < in->n_nameservers; i++)
			add_item(&b, 8, in->nameservers[i]);
	}
	return buf_detach(&b, NULL);
}

static bool is_root(const struct seed_input *in)
{
	return strcmp(in->user, "root") == 0;
}

/* Each non-blank line of the authorized_keys text as a list item (CR and blanks dropped). */
static void add_keys(struct buf *b, int indent, const char *keys)
{
	for (const char *p = keys; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		size_t lead = strspn(p, " \t");
		_cleanup_free_ char *line = NULL;
		size_t l;

		/* Surrounding blanks and a CR from a CRLF text are not part of the key. */
		line = xstrndup(p + (lead < n ? lead : n), lead < n ? n - lead : 0);
		l = strlen(line);
		while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
			line[--l] = '\0';
		if (l > 0)
			add_item(b, indent, line);
		p += n + (nl ? 1 : 0);
	}
}

/* Whether the authorized_keys text has any key line. */
static bool has_keys(const char *keys)
{
	for (; *keys; keys++)
		if (*keys != '\n' && *keys != '\r' && *keys != ' ' && *keys != '\t')
			return true;
	return false;
}

/* The list-valued part: users and their keys, mounts. */
static void add_accounts(struct buf *b, const struct seed_input *in)
{
	/* No distro default user: only this user logs in, with exactly these keys. */
	buf_adds(b, "users:\n");
	buf_addf(b, "  - name: ");
	spec_yaml_quote(b, in->user);
	buf_addch(b, '\n');
	if (is_root(in)) {
		buf_adds(b, "    lock_passwd: false\n");
	} else {
		add_kv(b, 4, "shell", "/bin/sh");
		add_kv(b, 4, "sudo", "ALL=(ALL) NOPASSWD:ALL");
		buf_adds(b, "    lock_passwd: true\n");
	}
	{
		if (has_keys(in->authorized_keys)) {
			buf_adds(b, "    ssh_authorized_keys:\n");
			add_keys(b, 6, in->authorized_keys);
		} else {
			buf_adds(b, "    ssh_authorized_keys: []\n");
		}
	}
	if (in->work_disk_dev) {
		buf_adds(b, "mounts:\n  - [");
		spec_yaml_quote(b, in->work_disk_dev);
		buf_adds(b, ", \"/mnt/work\", \"auto\", \"defaults,nofail\", \"0\", \"2\"]\n");
	}
}

/* The settings that must be banger's: host key, logins, hostname. */
static void add_settings(struct buf *b, const struct seed_input *in)
{
	add_kv(b, 0, "hostname", in->hostname);
	if (is_root(in))
		buf_adds(b, "disable_root: false\n");
	buf_adds(b, "ssh_deletekeys: true\nssh_genkeytypes: [ed25519]\nssh_keys:\n");
	add_block(b, 2, "ed25519_private", in->host_key_private);
	add_kv(b, 2, "ed25519_public", in->host_key_public);
}

static const char banger_header[] = "#cloud-config\n"
				    "# Written by banger for this VM; changes are lost when it "
				    "restarts.\n";

/* banger's whole configuration as one cloud-config (no user-data of the spec's). */
static char *render_plain_user_data(const struct seed_input *in)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, banger_header);
	add_settings(&b, in);
	add_accounts(&b, in);
	return buf_detach(&b, NULL);
}

/* Part 2: appended to the user's lists, never replacing what they set. */
static char *render_accounts_part(const struct seed_input *in)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, banger_header);
	buf_adds(&b, "merge_how:\n"
		     "  - name: list\n    settings: [append]\n"
		     "  - name: dict\n    settings: [no_replace, recurse_list]\n");
	add_accounts(&b, in);
	return buf_detach(&b, NULL);
}

/* Part 3: replaces whatever the user set for these keys. */
static char *render_settings_part(const struct seed_input *in)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, banger_header);
	buf_adds(&b, "merge_how:\n"
		     "  - name: list\n    settings: [replace]\n"
		     "  - name: dict\n    settings: [replace]\n");
	add_settings(&b, in);
	return buf_detach(&b, NULL);
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/*
 * One MIME part with its headers. Non-ASCII text goes base64 encoded:
 * cloud-init parses the archive as a str, and Python's email decodes a
 * non-ASCII 8bit payload through raw-unicode-escape, which is not UTF-8.
 */
static void add_part(struct buf *b, const char *boundary, const char *type, const char *filename,
		     const char *text)
{
	buf_addf(b, "--%s\n", boundary);
	buf_addf(b, "Content-Type: %s; charset=\"utf-8\"\n", type);
	buf_adds(b, "MIME-Version: 1.0\n");
	buf_addf(b, "Content-Disposition: attachment; filename=\"%s\"\n", filename);
	if (is_ascii(text)) {
		buf_addf(b, "Content-Transfer-Encoding: 7bit\n\n%s\n", text);
		return;
	}
	{
		_cleanup_free_ char *enc = base64_encode(text, strlen(text));
		size_t n = strlen(enc);

		buf_adds(b, "Content-Transfer-Encoding: base64\n\n");
		for (size_t i = 0; i < n; i += 76)
			buf_addf(b, "%.*s\n", (int)(n - i < 76 ? n - i : 76), enc + i);
	}
}

/*
 * A boundary found in none of the parts: "banger-" and 24 hex chars of a
 * SHA-256 over the parts (and a counter, on the unlikely collision), so the
 * same parts always give the same archive.
 */
static char *pick_boundary(const char *const *parts, size_t n)
{
	struct buf all;
	char hex[SHA256_HEX_LEN + 1];

	buf_init(&all);
	for (size_t i = 0; i < n; i++) {
		buf_adds(&all, parts[i]);
		buf_addch(&all, '\0');
	}
	sha256_hex(all.data, all.len, hex);
	buf_release(&all);
	for (unsigned tries = 0;; tries++) {
		char *boundary = xasprintf("banger-%.24s", hex);
		bool clash = false;

		for (size_t i = 0; i < n && !clash; i++)
			clash = strstr(parts[i], boundary) != NULL;
		if (!clash)
			return boundary;
		free(boundary);
		{
			_cleanup_free_ char *again = xasprintf("%s/%u", hex, tries);

			sha256_hex(again, strlen(again), hex);
		}
	}
}

static char *render_mime_user_data(const struct seed_input *in)
{
	_cleanup_free_ char *accounts = render_accounts_part(in);
	_cleanup_free_ char *settings = render_settings_part(in);
	_cleanup_free_ char *boundary = NULL;
	const char *parts[] = { in->user_data, accounts, settings };
	struct buf b;

	boundary = pick_boundary(parts, ARRAY_SIZE(parts));
	buf_init(&b);
	buf_addf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\nMIME-Version: 1.0\n\n",
		 boundary);
	switch (spec_userdata_kind(in->user_data, strlen(in->user_data))) {
	case SPEC_USERDATA_CLOUD_CONFIG:
		add_part(&b, boundary, "text/cloud-config", "user-data.cfg", in->user_data);
		break;
	case SPEC_USERDATA_SCRIPT:
		add_part(&b, boundary, "text/x-shellscript", "user-script", in->user_data);
		break;
	default:
		/* Their archive is a MIME entity already: its headers become the part's. */
		buf_addf(&b, "--%s\n%s\n", boundary, in->user_data);
		break;
	}
	add_part(&b, boundary, "text/cloud-config", "banger-accounts.cfg", accounts);
	add_part(&b, boundary, "text/cloud-config", "banger-settings.cfg", settings);
	buf_addf(&b, "--%s--\n", boundary);
	return buf_detach(&b, NULL);
}

/* Well-formed UTF-8: no overlongs, surrogates or code points past U+10FFFF. */
static bool utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		unsigned c = *s, n, cp;

		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned k = 1; k <= n; k++) {
			if ((s[k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		s += n + 1;
	}
	return true;
}

/* Present (non-empty unless may_be_empty), UTF-8, one line when asked. */
static int check_field(const char *name, const char *s, bool one_line, bool may_be_empty,
		       struct bg_err *err)
{
	if (!s || (!*s && !may_be_empty))
		return bg_errorf(err, EINVAL, "seed: %s is missing", name);
	if (!utf8_valid(s))
		return bg_errorf(err, EINVAL, "seed: %s is not valid UTF-8", name);
	if (one_line && strpbrk(s, "\r\n"))
		return bg_errorf(err, EINVAL, "seed: %s must be one line", name);
	return 0;
}

int seed_render(const struct seed_input *in, struct seed_files *ret, struct bg_err *err)
{
	const struct {
		const char *name, *value;
		bool one_line;
	} req[] = {
		{ "instance_id", in->instance_id, true },
		{ "hostname", in->hostname, true },
		{ "mac", in->mac, true },
		{ "ip", in->ip, true },
		{ "gateway", in->gateway, true },
		{ "user", in->user, true },
		{ "authorized_keys", in->authorized_keys, false },
		{ "host_key_private", in->host_key_private, false },
		{ "host_key_public", in->host_key_public, true },
		{ "cmdline", in->cmdline, true },
	};
	struct seed_files f = { 0 };
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(req); i++) {
		r = check_field(req[i].name, req[i].value, req[i].one_line,
				req[i].value == in->authorized_keys, err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < in->n_nameservers; i++) {
		r = check_field("nameserver", in->nameservers[i], true, false, err);
		if (r < 0)
			return r;
	}
	if (in->work_disk_dev) {
		r = check_field("work_disk_dev", in->work_disk_dev, true, false, err);
		if (r < 0)
			return r;
	}
	if (in->prefix < 1 || in->prefix > 32)
		return bg_errorf(err, EINVAL, "seed: prefix %u is not 1..32", in->prefix);
	if (in->user_data) {
		size_t len = strlen(in->user_data);

		if (spec_userdata_kind(in->user_data, len) == SPEC_USERDATA_UNKNOWN)
			return bg_errorf(err, EINVAL,
					 "seed: user-data is not a cloud-config, a script or a "
					 "MIME archive");
		r = check_field("user_data", in->user_data, false, false, err);
		if (r < 0)
			return r;
	}

	f.meta_data = render_meta_data(in);
	f.network_config = render_network_config(in);
	f.user_data = in->user_data ? render_mime_user_data(in) : render_plain_user_data(in);
	f.cmdline = xasprintf("%s\n", in->cmdline);
	*ret = f;
	return 0;
}

void seed_files_release(struct seed_files *f)
{
	if (!f)
		return;
	free(f->meta_data);
	free(f->network_config);
	free(f->user_data);
	free(f->cmdline);
	memset(f, 0, sizeof(*f));
}

/* ---- the ISO ------------------------------------------------------------------------ */

/* Create dir/name exclusively with exactly 'mode' and the text. */
static int write_new(const char *dir, const char *name, const char *text, mode_t mode,
		     struct bg_err *err)
{
	_cleanup_free_ char *path = fs_path_join(dir, name);
	_cleanup_close_ int fd = -1;
	size_t len = strlen(text), done = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return bg_error(err, errno, "create '%s'", path);
	if (fchmod(fd, mode) < 0)
		return bg_error(err, errno, "chmod '%s'", path);
	while (done < len) {
		ssize_t n = write(fd, text + done, len - done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return bg_error(err, errno, "write '%s'", path);
		}
		done += (size_t)n;
	}
	return 0;
}

/* Lay out the seed's tree under root. */
static int write_tree(const char *root, const struct seed_files *f, const char *key_private,
		      const char *key_public, struct bg_err *err)
{
	_cleanup_free_ char *bdir = fs_path_join(root, "banger");
	_cleanup_free_ char *pub = NULL;
	int r;

	/* Keep the key line's end as ssh-keygen writes it: one newline. */
	pub = xasprintf("%s%s", key_public,
			*key_public && key_public[strlen(key_public) - 1] == '\n' ? "" : "\n");
	if ((r = write_new(root, "meta-data", f->meta_data, 0644, err)) < 0 ||
	    (r = write_new(root, "network-config", f->network_config, 0644, err)) < 0 ||
	    /* user-data holds the host's private key. */
	    (r = write_new(root, "user-data", f->user_data, 0600, err)) < 0)
		return r;
	if (mkdir(bdir, 0755) < 0)
		return bg_error(err, errno, "mkdir '%s'", bdir);
	if ((r = write_new(bdir, "cmdline", f->cmdline, 0644, err)) < 0 ||
	    (r = write_new(bdir, "ssh_host_ed25519_key", key_private, 0600, err)) < 0 ||
	    (r = write_new(bdir, "ssh_host_ed25519_key.pub", pub, 0644, err)) < 0)
		return r;
	return 0;
}

int seed_write_iso(const struct seed_files *f, const char *host_key_private,
		   const char *host_key_public, const char *out_path, struct bg_err *err)
{
	_cleanup_free_ char *tmpl = xasprintf("%s.tmp.XXXXXX", out_path);
	_cleanup_free_ char *root = NULL, *iso = NULL, *output = NULL;
	_cleanup_close_ int fd = -1;
	size_t total;
	struct stat st;
	int r;

	if (!f || !f->meta_data || !f->network_config || !f->user_data || !f->cmdline ||
	    !host_key_private || !host_key_public)
		return bg_errorf(err, EINVAL, "seed '%s': files missing", out_path);
	total = strlen(f->meta_data) + strlen(f->network_config) + strlen(f->user_data) +
		strlen(f->cmdline) + strlen(host_key_private) + strlen(host_key_public);
	if (total > SEED_MAX_BYTES)
		return bg_errorf(err, EFBIG, "seed '%s': %zu bytes of files, more than %d (4 MiB)",
				 out_path, total, SEED_MAX_BYTES);
	/* Private (mkdtemp: 0700), next to out_path so the rename stays on one filesystem. */
	if (!mkdtemp(tmpl))
		return bg_error(err, errno, "seed '%s': mkdtemp", out_path);
	root = fs_path_join(tmpl, "root");
	iso = fs_path_join(tmpl, "seed.iso");
	if (mkdir(root, 0755) < 0) {
		r = bg_error(err, errno, "mkdir '%s'", root);
		goto out;
	}
	r = write_tree(root, f, host_key_private, host_key_public, err);
	if (r < 0)
		goto out;
	{
		const char *argv[] = { "genisoimage", "-output", iso,  "-volid", SEED_VOLUME_ID,
				       "-joliet",     "-rock",	 root, NULL };

		r = proc_run(argv, GENISOIMAGE_TIMEOUT_MS, &output, err);
		if (r < 0) {
			bg_err_wrap(err, "seed '%s': genisoimage", out_path);
			goto out;
		}
	}
	fd = open(iso, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = bg_error(err, errno, "seed '%s': open the image", out_path);
		goto out;
	}
	if (st.st_size > SEED_MAX_BYTES) {
		r = bg_errorf(err, EFBIG,
			      "seed '%s': the image is %lld bytes, more than %d (4 MiB)", out_path,
			      (long long)st.st_size, SEED_MAX_BYTES);
		goto out;
	}
	if (fchmod(fd, 0600) < 0 || fsync(fd) < 0) {
		r = bg_error(err, errno, "seed '%s': chmod/fsync the image", out_path);
		goto out;
	}
	if (rename(iso, out_path) < 0) {
		r = bg_error(err, errno, "seed '%s': rename", out_path);
		goto out;
	}
	r = fs_fsync_parent(out_path, err);
out : {
	struct bg_err ignored = { 0 };

	(void)fs_remove_tree(tmpl, &ignored);
}
	return r;
}
