/*
 * known_hosts.h - banger's own OpenSSH-format known_hosts with
 * trust-on-first-use pins.
 *
 * Our parser decides (libssh2's known-hosts code differs from OpenSSH and is
 * not used): comments and blank lines; comma-separated patterns with '*',
 * '?' and '!negation', case-insensitive; "[host]:port" for ports other than
 * 22 and plain "host" for 22, never falling back from one to the other;
 * hashed "|1|salt|hash" names; "@revoked" honoured (refused even if also
 * listed plainly); "@cert-authority" lines ignored for plain keys. A
 * malformed line is skipped with a warning and never turns a pinned host
 * into an unknown one.
 *
 * Appends are one O_APPEND write of a complete line. Rewrites (removal)
 * happen under a separate lock file (<path>.lock, flock) as temp + fsync +
 * rename + dir fsync, keeping every other line byte for byte.
 */
#ifndef BANGER_RECONCILER_GUEST_KNOWN_HOSTS_H
#define BANGER_RECONCILER_GUEST_KNOWN_HOSTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum kh_verdict {
	KH_NEW,	    /* no line for the host */
	KH_OK,	    /* the same key is pinned */
	KH_CHANGED, /* another key (of any type) is pinned */
	KH_REVOKED, /* the key is marked @revoked */
	KH_VERDICT_MAX
};

const char *kh_verdict_to_string(enum kh_verdict v);

/* Where a verdict came from (the first relevant line). */
struct kh_match {
	unsigned line;	      /* 1-based line number, 0 for NEW */
	char pinned_fp[128];  /* "SHA256:..." of the pinned key, "" for NEW/OK */
	char pinned_type[64]; /* its key type */
};

/*
 * Check 'blob' (an SSH wire-format public key, as libssh2_session_hostkey()
 * returns it) for host/port against the file at path. A missing file is
 * NEW. Returns the verdict (>= 0) or -errno when the file cannot be read.
 */
int known_hosts_check(const char *path, const char *host, int port, const uint8_t *blob, size_t len,
		      struct kh_match *ret_match, struct bg_err *err);

/*
 * Check and pin: NEW appends one line "<names> <type> <base64>" (names are
 * the hosts, comma-separated, "[h]:port" when port != 22) and succeeds; OK
 * succeeds; CHANGED and REVOKED fail with -EKEYREJECTED and a message
 * containing "possible MITM", the host, the offered and pinned SHA256
 * fingerprints, the file and line. All hosts are checked; any mismatch fails.
 * Creates the file (0600) and its directory (0700) when missing.
 */
int known_hosts_verify_pin(const char *path, const char *const *hosts, size_t n_hosts, int port,
			   const uint8_t *blob, size_t len, struct bg_err *err);

/*
 * Remove every line that matches any of hosts (on port; 22: plain names),
 * keeping comments, markers (@revoked, @cert-authority) and other hosts'
 * lines byte for byte. Missing file or no match succeeds. Returns the number
 * of lines removed.
 */
int known_hosts_remove(const char *path, const char *const *hosts, size_t n_hosts, int port,
		       struct bg_err *err);

/*
 * Pin 'blob' for hosts on port, replacing whatever was pinned for them: every
 * plain line naming one of the hosts is removed and one line
 * "<names> <type> <base64>" is appended, in one atomic rewrite under the
 * lock (the file is never seen without a pin for them). Used when banger
 * made the guest's host key itself, before the guest first boots. Nothing is
 * written when the file already holds exactly that. Creates the file (0600)
 * and its directory (0700) when missing. Returns 0 or -errno.
 */
int known_hosts_set_pin(const char *path, const char *const *hosts, size_t n_hosts, int port,
			const uint8_t *blob, size_t len, struct bg_err *err);

/* "SHA256:<base64 without padding>" of a key blob, as OpenSSH prints it. */
void known_hosts_fingerprint(const uint8_t *blob, size_t len, char out[128]);

/* Caps on what is read: the whole file and one line (longer lines are skipped). */
#define KH_FILE_MAX (16u * 1024 * 1024)
#define KH_LINE_MAX (64u * 1024)

/*
 * known_hosts_check() on file contents already in memory (data need not be
 * NUL-terminated): the same verdict, without any I/O. -EINVAL for a host
 * name that cannot appear in a known_hosts line or a blob that is not an
 * SSH public key.
 */
int known_hosts_check_buffer(const char *data, size_t data_len, const char *host, int port,
			     const uint8_t *blob, size_t len, struct kh_match *ret_match,
			     struct bg_err *err);

/*
 * The key types ("ssh-ed25519", "ecdsa-sha2-nistp256", ...) of the plain
 * (unmarked) keys pinned for any of hosts on port, in file order without
 * duplicates, so an SSH client can prefer the algorithm it already pinned
 * (as OpenSSH's order_hostkeyalgs() does). *ret_types is an owned
 * NULL-terminated array (strv_free); empty when nothing is pinned or the
 * file is missing. Returns the number of types or -errno.
 */
int known_hosts_pinned_types(const char *path, const char *const *hosts, size_t n_hosts, int port,
			     char ***ret_types, struct bg_err *err);

#endif
