/*
 * hostkey.c - per-guest SSH host keys made before the first boot; see hostkey.h.
 */
#include "reconciler/guest/hostkey.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "reconciler/guest/known_hosts.h"

#define COMMENT_MAX 1024 /* bytes; the comment ends up on the .pub line */
#define CIPHER_BLOCK 8	 /* block size of the "none" cipher: the private section pads to it */
#define ARMOUR_COLS 70	 /* base64 line width of ssh-keygen's private key files */

static const char ed25519_name[] = "ssh-ed25519";
static const char key_magic[] = "openssh-key-v1";
static const char armour_begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
static const char armour_end[] = "-----END OPENSSH PRIVATE KEY-----\n";

void hostkey_release(struct hostkey *k)
{
	if (!k)
		return;
	if (k->private_key)
		explicit_bzero(k->private_key, strlen(k->private_key));
	free(k->private_key);
	free(k->public_line);
	free(k->blob);
	memset(k, 0, sizeof(*k));
}

/* Read a regular file (never through a symlink) of at most HOSTKEY_MAX bytes. */
static int read_half(const char *path, char **ret, struct bg_err *err)
{
	struct stat st;
	size_t len = 0;
	int r;

	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "host key: '%s' is not a regular file", path);
	r = fs_read_file(path, HOSTKEY_MAX, ret, &len, err);
	if (r < 0)
		return r;
	/* Text only: a NUL inside would also hide the rest of a private key from the wipe. */
	if (memchr(*ret, '\0', len)) {
		explicit_bzero(*ret, len);
		free(*ret);
		*ret = NULL;
		return bg_errorf(err, EINVAL, "host key: '%s' holds a NUL byte", path);
	}
	return 0;
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

/* ---- a new pair, written as ssh-keygen -t ed25519 -N "" would write it --------------------- */

/* The public key in SSH wire format (RFC 8709): string "ssh-ed25519", string key. */
static void put_public_blob(struct buf *b, const uint8_t pub[ED25519_PUB_LEN])
{
	buf_add_str32(b, ed25519_name, strlen(ed25519_name));
	buf_add_str32(b, pub, ED25519_PUB_LEN);
}

/* Wipe, then free, a buffer that held the private key. */
static void secret_release(struct buf *b)
{
	if (b->data)
		explicit_bzero(b->data, b->alloc);
	buf_release(b);
}

/* "ssh-ed25519 <base64 blob> <comment>\n": the .pub file. Owned. */
static char *public_line(const uint8_t pub[ED25519_PUB_LEN], const char *comment)
{
	_cleanup_buf_ struct buf blob = { 0 };
	_cleanup_free_ char *b64 = NULL;

	put_public_blob(&blob, pub);
	b64 = base64_encode(blob.data, blob.len);
	return xasprintf("%s %s %s\n", ed25519_name, b64, comment);
}

/*
 * The private key file (OpenSSH PROTOCOL.key, unencrypted): the magic
 * "openssh-key-v1\0", cipher and KDF "none" with empty KDF options, one key,
 * its public blob, then the private section: the check integer twice (it
 * tells a wrong passphrase when the section is encrypted), the key (type,
 * public key, seed || public key), the comment, and padding 1, 2, 3, ... to
 * the cipher's block size. All of it base64, in lines of 70, between armour
 * lines. Each buffer that holds the seed is reserved up front, so it is never
 * reallocated (which would leave a copy behind in freed memory), and wiped.
 * Owned, NUL-terminated, *ret_len bytes; the caller wipes it.
 */
static char *private_text(const uint8_t seed[ED25519_SEED_LEN], const uint8_t pub[ED25519_PUB_LEN],
			  uint32_t check, const char *comment, size_t *ret_len)
{
	size_t reserve = 512 + strlen(comment), b64_len, alloc;
	struct buf sec = { 0 }, raw = { 0 }, text = { 0 };
	_cleanup_buf_ struct buf blob = { 0 };
	uint8_t secret[ED25519_SEED_LEN + ED25519_PUB_LEN];
	char *b64;

	buf_grow(&sec, reserve);
	buf_grow(&raw, reserve);
	alloc = sec.alloc;
	buf_add_be32(&sec, check);
	buf_add_be32(&sec, check);
	put_public_blob(&sec, pub);
	memcpy(secret, seed, ED25519_SEED_LEN);
	memcpy(secret + ED25519_SEED_LEN, pub, ED25519_PUB_LEN);
	buf_add_str32(&sec, secret, sizeof(secret));
	explicit_bzero(secret, sizeof(secret));
	buf_add_str32(&sec, comment, strlen(comment));
	for (uint8_t i = 1; sec.len % CIPHER_BLOCK != 0; i++)
		buf_addch(&sec, (char)i);

	put_public_blob(&blob, pub);
	buf_add(&raw, key_magic, sizeof(key_magic)); /* with its NUL */
	buf_add_str32(&raw, "none", 4);		     /* cipher */
	buf_add_str32(&raw, "none", 4);		     /* KDF */
	buf_add_str32(&raw, "", 0);		     /* KDF options */
	buf_add_be32(&raw, 1);			     /* number of keys */
	buf_add_str32(&raw, blob.data, blob.len);
	buf_add_str32(&raw, sec.data, sec.len);
	assert(sec.alloc == alloc && raw.alloc == alloc);
	secret_release(&sec);

	b64 = base64_encode(raw.data, raw.len);
	b64_len = strlen(b64);
	secret_release(&raw);
	buf_grow(&text,
		 strlen(armour_begin) + b64_len + b64_len / ARMOUR_COLS + 1 + strlen(armour_end));
	alloc = text.alloc;
	buf_adds(&text, armour_begin);
	for (size_t i = 0; i < b64_len; i += ARMOUR_COLS) {
		buf_add(&text, b64 + i, b64_len - i < ARMOUR_COLS ? b64_len - i : ARMOUR_COLS);
		buf_addch(&text, '\n');
	}
	buf_adds(&text, armour_end);
	assert(text.alloc == alloc);
	explicit_bzero(b64, b64_len);
	free(b64);
	return buf_detach(&text, ret_len);
}

/* Create path holding data: 0600, exclusive, never through a symlink, fsynced. */
static int write_new(const char *path, const char *data, size_t len, struct bg_err *err)
{
	_cleanup_close_ int fd =
		open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);

	if (fd < 0)
		return bg_error(err, errno, "host key: create '%s'", path);
	/* Exactly 0600, whatever the umask took away. */
	if (fchmod(fd, 0600) < 0)
		return bg_error(err, errno, "host key: chmod '%s'", path);
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return bg_error(err, errno, "host key: write '%s'", path);
		data += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0)
		return bg_error(err, errno, "host key: fsync '%s'", path);
	return 0;
}

/*
 * A new pair in libcrypto (no ssh-keygen child on every create), written to
 * <dir>/.hostkey.tmp{,.pub}, then renamed: public half first, private last.
 */
static int generate(const char *dir, const char *priv, const char *pub, const char *comment,
		    struct bg_err *err)
{
	_cleanup_free_ char *tmp = fs_path_join(dir, ".hostkey.tmp");
	_cleanup_free_ char *tmp_pub = xasprintf("%s.pub", tmp);
	_cleanup_free_ char *line = NULL;
	uint8_t seed[ED25519_SEED_LEN], pubkey[ED25519_PUB_LEN];
	char *text;
	size_t text_len = 0;
	uint32_t check;
	int r;

	/* The comment ends the .pub line: a line break in it would forge another line. */
	if (strlen(comment) > COMMENT_MAX || comment[strcspn(comment, "\r\n")] != '\0')
		return bg_errorf(err, EINVAL,
				 "host key: comment for '%s' is too long or spans lines", priv);
	r = random_bytes(&check, sizeof(check));
	if (r < 0)
		return bg_error(err, -r, "host key: random check integer");
	r = ed25519_keygen(seed, pubkey);
	if (r < 0)
		return bg_error(err, -r, "host key: ed25519 key generation for '%s'", priv);
	text = private_text(seed, pubkey, check, comment, &text_len);
	explicit_bzero(seed, sizeof(seed));
	line = public_line(pubkey, comment);

	(void)unlink(tmp);
	(void)unlink(tmp_pub);
	(void)unlink(pub); /* a stray public half without its key */
	r = write_new(tmp, text, text_len, err);
	if (r >= 0)
		r = write_new(tmp_pub, line, strlen(line), err);
	if (r >= 0 && (rename(tmp_pub, pub) < 0 || rename(tmp, priv) < 0))
		r = bg_error(err, errno, "host key: rename into '%s'", priv);
	if (r >= 0)
		r = fs_fsync_parent(priv, err);
	if (r < 0) {
		(void)unlink(tmp);
		(void)unlink(tmp_pub);
	}
	explicit_bzero(text, text_len);
	free(text);
	return r;
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

/* Free a string that may hold a private key, wiped first. */
static void wipe_strp(char **p)
{
	if (*p)
		explicit_bzero(*p, strlen(*p));
	free(*p);
	*p = NULL;
}

int hostkey_ensure(const char *dir, const char *comment, struct hostkey *ret, struct bg_err *err)
{
	_cleanup_free_ char *priv = fs_path_join(dir, HOSTKEY_FILE);
	_cleanup_free_ char *pub = xasprintf("%s.pub", priv);
	char *priv_text __attribute__((cleanup(wipe_strp))) = NULL;
	_cleanup_free_ char *pub_text = NULL;
	struct hostkey k = { 0 };
	bool made = false;
	int r;

	r = read_half(priv, &priv_text, err);
	if (r == 0)
		r = read_half(pub, &pub_text, err);
	if (r == -ENOENT) {
		wipe_strp(&priv_text);
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
