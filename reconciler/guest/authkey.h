/*
 * authkey.h - the SSH user-auth keys of the sandboxed readiness probe, held
 * by the parent (bangerd) only: public key blobs to offer (banger's key from
 * its .pub file, the user's agent identities), and signatures over the
 * probe's user-auth request, made with banger's ed25519 key (read from disk
 * at signing time and wiped after) or by the agent. The probe child sees
 * public blobs and finished signatures, never a private key.
 */
#ifndef BANGER_RECONCILER_GUEST_AUTHKEY_H
#define BANGER_RECONCILER_GUEST_AUTHKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define AUTHKEY_BLOB_MAX 8192
#define AUTHKEY_SIG_MAX 8192

struct authkey {
	uint8_t *blob; /* SSH wire-format public key ("ssh-ed25519", key) */
	size_t blob_len;
	bool agent; /* signed by the agent; else by the identity file */
};

struct authkey_list {
	struct authkey *keys;
	size_t n;
};

void authkey_list_release(struct authkey_list *l);

/*
 * Append the public key of an "ssh-ed25519 BASE64 comment" file (the .pub
 * next to the identity). Returns 0, or -errno (missing file, not ed25519).
 */
int authkey_add_pubfile(struct authkey_list *l, const char *pub_path, struct bg_err *err);

/* Append the agent's identities (SSH_AUTH_SOCK path). Returns 0 or -errno. */
int authkey_add_agent(struct authkey_list *l, const char *sock, int timeout_ms, struct bg_err *err);

/*
 * Whether data is exactly what an SSH client signs for a public-key user-auth
 * of user with blob (RFC 4252 §7: string session id, byte 50, string user,
 * "ssh-connection", "publickey", TRUE, string algorithm, string blob). The
 * parent signs nothing else for the probe child.
 */
bool authkey_userauth_data_ok(const uint8_t *data, size_t len, const char *user,
			      const uint8_t *blob, size_t blob_len);

/*
 * Sign data with key k: the raw signature (the last field of an SSH
 * signature blob, which libssh2 wraps with the algorithm name itself) in
 * *ret_sig (owned, *ret_len bytes). Identity keys are read from identity
 * (unencrypted OpenSSH ed25519 private key file, whose public half must be
 * k's blob) and wiped before returning. Returns 0 or -errno.
 */
int authkey_sign(const struct authkey *k, const char *identity, const char *agent_sock,
		 int timeout_ms, const uint8_t *data, size_t len, uint8_t **ret_sig,
		 size_t *ret_len, struct bg_err *err);

#endif
