/*
 * hostkey.c - per-guest SSH host keys made before the first boot; see hostkey.h.
 */
#include "reconciler/guest/hostkey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/guest/known_hosts.h"

#define KEYGEN_TIMEOUT_MS 30000

void hostkey_release(struct hostkey *k)
{
	if (!k)
		return;
	free(k->private_key);
	free(k->public_line);
	free(k->blob);
	memset(k, 0, sizeof(*k));
}

/* Read a regular file (never through a symlink) of at most HOSTKEY_MAX bytes. */
static int read_half(const char *path, char **ret, struct bg_err *err)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "host key: '%s' is not a regular file", path);
	return fs_read_file(path, HOSTKEY_MAX, ret, NULL, err);
}

/* "ssh-ed25519 <base64> [comment]" -> wire blob. */
static int parse_public(const char *path, const char *line, struct hostkey *k, struct bg_err *err)
{
	const char *b64, *end;

	if (strncmp(line, "ssh-ed25519 ", 12) != 0)
		return bg_errorf(err, EINVAL, "host key: '%s' is not an ed25519 public key", path);
	b64 = line + 12;
	end = b64 + strcspn(b64, " \t\n");
	if (base64_decode(b64, (size_t)(end - b64), &k->blob, &k->blob_len) < 0)
		return bg_errorf(err, EINVAL, "host key: '%s' holds no valid base64 key", path);
	k->public_line = xstrndup(line, strcspn(line, "\n"));
	known_hosts_fingerprint(k->blob, k->blob_len, k->fingerprint);
	return 0;
}

static int fsync_file(const char *path, struct bg_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0 || fsync(fd) < 0)
		return bg_error(err, errno, "host key: fsync '%s'", path);
	return 0;
}

/* ssh-keygen into <dir>/.hostkey.tmp, then rename: public half first, private last. */
static int generate(const char *dir, const char *priv, const char *pub, const char *comment,
		    struct bg_err *err)
{
	_cleanup_free_ char *tmp = fs_path_join(dir, ".hostkey.tmp");
	_cleanup_free_ char *tmp_pub = xasprintf("%s.pub", tmp);
	const char *argv[] = { "ssh-keygen", "-q",    "-t", "ed25519", "-N", "",
			       "-C",	     comment, "-f", tmp,       NULL };
	int r;

	(void)unlink(tmp);
	(void)unlink(tmp_pub);
	(void)unlink(pub); /* a stray public half without its key */
	r = proc_run(argv, KEYGEN_TIMEOUT_MS, NULL, err);
	if (r < 0)
		return bg_err_wrap(err, "host key: ssh-keygen for '%s'", priv);
	if (chmod(tmp, 0600) < 0 || chmod(tmp_pub, 0600) < 0)
		return bg_error(err, errno, "host key: chmod '%s'", tmp);
	r = fsync_file(tmp, err);
	if (r >= 0)
		r = fsync_file(tmp_pub, err);
	if (r < 0)
		return r;
	if (rename(tmp_pub, pub) < 0 || rename(tmp, priv) < 0)
		return bg_error(err, errno, "host key: rename into '%s'", priv);
	return fs_fsync_parent(priv, err);
}

int hostkey_read_public(const char *dir, struct hostkey *ret, struct bg_err *err)
{
	_cleanup_free_ char *pub = xasprintf("%s/%s.pub", dir, HOSTKEY_FILE);
	_cleanup_free_ char *text = NULL;
	struct hostkey k = { 0 };
	int r;

	r = read_half(pub, &text, err);
	if (r == -ENOENT)
		return bg_error(err, ENOENT, "host key: no '%s'", pub);
	if (r < 0)
		return r;
	r = parse_public(pub, text, &k, err);
	if (r < 0) {
		hostkey_release(&k);
		return r;
	}
	*ret = k;
	return 0;
}

int hostkey_ensure(const char *dir, const char *comment, struct hostkey *ret, struct bg_err *err)
{
	_cleanup_free_ char *priv = fs_path_join(dir, HOSTKEY_FILE);
	_cleanup_free_ char *pub = xasprintf("%s.pub", priv);
	_cleanup_free_ char *priv_text = NULL;
	_cleanup_free_ char *pub_text = NULL;
	struct hostkey k = { 0 };
	bool made = false;
	int r;

	r = read_half(priv, &priv_text, err);
	if (r == 0)
		r = read_half(pub, &pub_text, err);
	if (r == -ENOENT) {
		free(priv_text);
		priv_text = NULL;
		r = generate(dir, priv, pub, comment, err);
		if (r < 0)
			return r;
		made = true;
		r = read_half(priv, &priv_text, err);
		if (r == 0)
			r = read_half(pub, &pub_text, err);
	}
	if (r == -ENOENT)
		return bg_errorf(err, ENOENT, "host key: '%s' vanished", priv);
	if (r < 0)
		return r;
	if (!strstr(priv_text, "-----BEGIN OPENSSH PRIVATE KEY-----"))
		return bg_errorf(err, EINVAL, "host key: '%s' is not an OpenSSH private key", priv);
	r = parse_public(pub, pub_text, &k, err);
	if (r < 0) {
		hostkey_release(&k);
		return r;
	}
	k.private_key = TAKE_PTR(priv_text);
	*ret = k;
	return made ? 1 : 0;
}
