/*
 * hostkey.h - the SSH host key banger makes for each guest.
 *
 * Before a VM first boots, banger generates an ed25519 host key pair in the
 * VM's directory (0600, removed with the directory on delete), hands the
 * private key to the guest on its seed disk and pins the public key in
 * banger's known_hosts. The guest then serves a key banger already trusts,
 * so the first SSH connection is verified like every later one (no
 * trust-on-first-use window). The key lives as long as the VM: a re-created
 * VM (a new id, a new directory) gets a new one.
 *
 * Keys are made in-process with libcrypto (no ssh-keygen child on the
 * create path) and written in the files ssh-keygen -t ed25519 -N "" writes:
 * an unencrypted "openssh-key-v1" private key and an "ssh-ed25519" public
 * line. Both halves go to temporary names (0600, fsynced) and are renamed
 * into place, public half first, so a crash leaves either a whole pair or a
 * pair that is made again.
 */
#ifndef BANGER_RECONCILER_GUEST_HOSTKEY_H
#define BANGER_RECONCILER_GUEST_HOSTKEY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define HOSTKEY_FILE "ssh_host_ed25519_key"
#define HOSTKEY_MAX (16 * 1024) /* bytes read from either half */

struct hostkey {
	char *private_key; /* OpenSSH private key text */
	char *public_line; /* "ssh-ed25519 AAAA... comment", no newline */
	uint8_t *blob;	   /* the public key in SSH wire format */
	size_t blob_len;
	char fingerprint[128]; /* "SHA256:..." */
};

/*
 * Load <dir>/ssh_host_ed25519_key{,.pub}, generating the pair first when
 * either half is missing (comment goes into the public line). dir must
 * exist. *ret is filled on success (hostkey_release). Returns 1 when a new
 * pair was generated, 0 when an existing one was loaded, -errno on failure
 * (a half that is not a regular file or not an ed25519 key is an error, not
 * replaced; so is a comment longer than 1024 bytes or with a line break).
 */
int hostkey_ensure(const char *dir, const char *comment, struct hostkey *ret, struct bg_err *err);

/*
 * Load only the public half of <dir>/ssh_host_ed25519_key.pub (for display:
 * private_key stays NULL). -ENOENT when banger made no key for this VM.
 */
int hostkey_read_public(const char *dir, struct hostkey *ret, struct bg_err *err);

/* Wipe the private key and free what hostkey_ensure() filled in; the struct may be reused. */
void hostkey_release(struct hostkey *k);

#endif
