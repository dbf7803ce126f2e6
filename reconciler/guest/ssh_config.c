/*
 * ssh_config.c - render banger's managed "Host *.vm" block and splice it (or
 * an Include of it) into ssh_config files idempotently and atomically; see
 * ssh_config.h.
 *
 * Quoting follows ssh_config(5) as OpenSSH 9.2 tokenises it (argv_split()):
 * paths go in double quotes, and '%' is doubled because UserKnownHostsFile,
 * IdentityFile and ProxyCommand expand % tokens. ProxyCommand is handed to
 * the user's shell as written, so its paths are single-quoted for the shell
 * (a path containing a quote is refused rather than escaped), and the only
 * token is %n, the host name as typed (OpenSSH >= 9.6, and Debian's 9.2p1
 * backport, refuse shell metacharacters in it; banger ssh-proxy validates it
 * again). No %h: after a HostName it could be anything the config says.
 */
#include "reconciler/guest/ssh_config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"

#define SSH_CONFIG_FILE_MAX (1024 * 1024)

/*
 * Can this path be written inside "..." in ssh_config and '...' for a shell?
 * '$' is refused too: ssh_config expands ${VAR} in file paths.
 */
static bool path_ok(const char *p, bool glob_too)
{
	if (!p || p[0] != '/')
		return false;
	for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
		if (*c < 0x20 || *c == 0x7f || *c == '"' || *c == '\'' || *c == '\\' || *c == '$')
			return false;
		if (glob_too && (*c == '*' || *c == '?' || *c == '['))
			return false;
	}
	return true;
}

/* Append p with '%' doubled (ssh_config % tokens). */
static void add_percent_escaped(struct buf *b, const char *p)
{
	for (; *p; p++) {
		if (*p == '%')
			buf_addch(b, '%');
		buf_addch(b, *p);
	}
}

int ssh_config_render(const char *state_dir, const char *banger_path, char **ret,
		      struct bg_err *err)
{
	struct buf b;
	size_t n;

	if (!path_ok(state_dir, false))
		return bg_errorf(err, EINVAL,
				 "ssh-config: state dir '%s' must be an absolute path without "
				 "quotes, backslashes, dollar signs or control characters",
				 state_dir ? state_dir : "(null)");
	if (!path_ok(banger_path, false))
		return bg_errorf(err, EINVAL,
				 "ssh-config: banger binary path '%s' must be absolute, without "
				 "quotes, backslashes, dollar signs or control characters",
				 banger_path ? banger_path : "(null)");
	/* "<state>/" and "<state>/ssh/..." with no double slash */
	n = strlen(state_dir);
	while (n > 1 && state_dir[n - 1] == '/')
		n--;
	{
		_cleanup_free_ char *state = xstrndup(state_dir, n);
		const char *sep = strcmp(state, "/") == 0 ? "" : "/";

		buf_init(&b);
		buf_adds(&b, SSH_CONFIG_BEGIN "\n");
		buf_adds(
			&b,
			"# Written by 'banger ssh-config'; edits inside this block are replaced.\n");
		buf_adds(&b, "Host *.vm\n");
		buf_adds(&b, "    UserKnownHostsFile \"");
		add_percent_escaped(&b, state);
		buf_addf(&b, "%sssh/known_hosts\"\n", sep);
		buf_adds(&b, "    StrictHostKeyChecking accept-new\n");
		buf_adds(&b, "    HashKnownHosts no\n");
		buf_adds(&b, "    UpdateHostKeys no\n");
		buf_adds(&b, "    User root\n");
		buf_adds(&b, "    IdentityFile \"");
		add_percent_escaped(&b, state);
		buf_addf(&b, "%sssh/id_ed25519\"\n", sep);
		buf_adds(&b, "    ProxyCommand '");
		add_percent_escaped(&b, banger_path);
		buf_adds(&b, "' --state-dir '");
		add_percent_escaped(&b, state);
		buf_adds(&b, "' ssh-proxy %n\n");
		buf_adds(&b, SSH_CONFIG_END "\n");
	}
	*ret = buf_detach(&b, NULL);
	return 0;
}

/* Is [s, e) the line 'marker' (trailing blanks and '\r' ignored)? */
static bool line_is(const char *s, const char *e, const char *marker)
{
	size_t mlen = strlen(marker);

	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	return (size_t)(e - s) == mlen && memcmp(s, marker, mlen) == 0;
}

char *ssh_config_splice(const char *text, size_t len, const char *block)
{
	const char *begin = NULL, *end = NULL;
	const char *p = text, *stop = text + len;
	struct buf b;

	while (p < stop) {
		const char *nl = memchr(p, '\n', (size_t)(stop - p));
		const char *eol = nl ? nl : stop;
		const char *next = nl ? nl + 1 : stop;

		if (!begin && line_is(p, eol, SSH_CONFIG_BEGIN)) {
			begin = p;
		} else if (begin && line_is(p, eol, SSH_CONFIG_END)) {
			end = next;
			break;
		}
		p = next;
	}
	buf_init(&b);
	if (!begin) {
		buf_adds(&b, block);
		buf_add(&b, text, len);
	} else {
		if (!end)
			end = stop;
		buf_add(&b, text, (size_t)(begin - text));
		buf_adds(&b, block);
		buf_add(&b, end, (size_t)(stop - end));
	}
	return buf_detach(&b, NULL);
}

/*
 * Replace path with data: temp in the same directory with mode/uid/gid,
 * fsync, rename, fsync the directory. The old file stays on any failure.
 */
static int replace_file(const char *path, const char *data, size_t len, mode_t mode, uid_t uid,
			gid_t gid, struct bg_err *err)
{
	return fs_write_atomic_owned(path, data, len, mode, uid, gid, err);
}

/* Create dir with mode when missing; an existing directory is left as it is. */
static int dir_ensure(const char *dir, mode_t mode, struct bg_err *err)
{
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return bg_errorf(err, ENOTDIR, "'%s' is not a directory", dir);
		return 0;
	}
	if (errno != ENOENT)
		return bg_error(err, errno, "stat '%s'", dir);
	return fs_mkdir_p(dir, mode, err);
}

/*
 * Read an existing regular file for splicing. 1 when it does not exist.
 * Refuses symlinks and (when check_owner) files of another user.
 */
static int read_config(const char *path, bool check_owner, char **ret, size_t *ret_len,
		       struct stat *ret_st, struct bg_err *err)
{
	if (lstat(path, ret_st) < 0) {
		if (errno == ENOENT)
			return 1;
		return bg_error(err, errno, "stat '%s'", path);
	}
	if (S_ISLNK(ret_st->st_mode))
		return bg_errorf(err, EPERM, "'%s' is a symlink; not editing it", path);
	if (!S_ISREG(ret_st->st_mode))
		return bg_errorf(err, EINVAL, "'%s' is not a regular file", path);
	if (check_owner && ret_st->st_uid != geteuid())
		return bg_errorf(err, EPERM, "'%s' belongs to uid %u, not to us (uid %u)", path,
				 (unsigned)ret_st->st_uid, (unsigned)geteuid());
	return fs_read_file(path, SSH_CONFIG_FILE_MAX, ret, ret_len, err);
}

int ssh_config_write(const char *state_dir, const char *banger_path, char **ret_path,
		     struct bg_err *err)
{
	_cleanup_free_ char *ssh_dir = NULL, *real = NULL, *path = NULL, *block = NULL;
	_cleanup_free_ char *old = NULL, *text = NULL;
	size_t old_len = 0;
	struct stat st;
	int r;

	/* Validate before creating anything. */
	if (!path_ok(state_dir, false) || !path_ok(banger_path, false))
		return ssh_config_render(state_dir, banger_path, &block, err);
	r = dir_ensure(state_dir, 0700, err);
	if (r < 0)
		return bg_err_wrap(err, "ssh-config: state dir");
	real = realpath(state_dir, NULL);
	if (!real)
		return bg_error(err, errno, "ssh-config: resolve '%s'", state_dir);
	r = ssh_config_render(real, banger_path, &block, err);
	if (r < 0)
		return r;
	ssh_dir = fs_path_join(real, "ssh");
	r = dir_ensure(ssh_dir, 0700, err);
	if (r < 0)
		return bg_err_wrap(err, "ssh-config");
	path = fs_path_join(ssh_dir, "ssh_config");
	r = read_config(path, false, &old, &old_len, &st, err);
	if (r < 0)
		return bg_err_wrap(err, "ssh-config");
	if (r == 1) {
		st.st_mode = 0644;
		st.st_uid = geteuid();
		st.st_gid = getegid();
	}
	text = ssh_config_splice(old ? old : "", old_len, block);
	if (!old || strcmp(text, old) != 0) {
		r = replace_file(path, text, strlen(text), st.st_mode & 07777, st.st_uid, st.st_gid,
				 err);
		if (r < 0)
			return bg_err_wrap(err, "ssh-config");
	}
	if (ret_path)
		*ret_path = TAKE_PTR(path);
	return 0;
}

int ssh_config_install_include(const char *user_config, const char *include_path,
			       struct bg_err *err)
{
	_cleanup_free_ char *copy = NULL, *old = NULL, *text = NULL, *block = NULL;
	const char *dir;
	size_t old_len = 0;
	struct stat st;
	int r;

	if (!path_ok(include_path, true))
		return bg_errorf(
			err, EINVAL,
			"ssh-config: '%s' cannot be included safely (absolute path "
			"without quotes, backslashes, dollar signs, glob or control characters needed)",
			include_path ? include_path : "(null)");
	if (!user_config || user_config[0] != '/')
		return bg_errorf(err, EINVAL, "ssh-config: '%s' is not an absolute path",
				 user_config ? user_config : "(null)");
	copy = xstrdup(user_config);
	dir = dirname(copy);
	if (lstat(dir, &st) < 0) {
		if (errno != ENOENT)
			return bg_error(err, errno, "ssh-config: stat '%s'", dir);
		if (mkdir(dir, 0700) < 0)
			return bg_error(err, errno, "ssh-config: mkdir '%s'", dir);
	} else if (S_ISLNK(st.st_mode)) {
		return bg_errorf(err, EPERM, "ssh-config: '%s' is a symlink; not editing it", dir);
	} else if (!S_ISDIR(st.st_mode)) {
		return bg_errorf(err, ENOTDIR, "ssh-config: '%s' is not a directory", dir);
	} else if (st.st_uid != geteuid()) {
		return bg_errorf(err, EPERM,
				 "ssh-config: '%s' belongs to uid %u, not to us (uid %u)", dir,
				 (unsigned)st.st_uid, (unsigned)geteuid());
	}
	r = read_config(user_config, true, &old, &old_len, &st, err);
	if (r < 0)
		return bg_err_wrap(err, "ssh-config");
	if (r == 1) {
		st.st_mode = 0600;
		st.st_uid = geteuid();
		st.st_gid = getegid();
	}
	block = xasprintf(SSH_CONFIG_BEGIN "\nInclude \"%s\"\n" SSH_CONFIG_END "\n", include_path);
	text = ssh_config_splice(old ? old : "", old_len, block);
	if (old && strcmp(text, old) == 0)
		return 0;
	r = replace_file(user_config, text, strlen(text), st.st_mode & 07777, st.st_uid, st.st_gid,
			 err);
	if (r < 0)
		return bg_err_wrap(err, "ssh-config");
	return 1;
}
