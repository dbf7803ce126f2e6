/*
 * ssh.h - SSH to guests over libssh2 (the only includer of libssh2.h), with
 * the host key checked against banger's known_hosts before authenticating.
 */
#ifndef BANGER_RECONCILER_GUEST_SSH_H
#define BANGER_RECONCILER_GUEST_SSH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

struct ssh_target {
	const char *host; /* IPv4 address to connect to */
	int port;	  /* 22 by default */
	const char *user;
	const char *known_hosts;      /* banger's known_hosts path */
	const char *const *pin_names; /* names to check/pin the key under: IP and <name>.vm */
	size_t n_pin_names;
	const char *identity;	/* private key path (banger's own ed25519 key) */
	int connect_timeout_ms; /* TCP connect + handshake deadline */
};

/*
 * Connect, verify/pin the host key (ssh-ed25519 preferred), authenticate,
 * then disconnect: "does the guest's SSH answer for us". -EKEYREJECTED with
 * "possible MITM" on a changed key. We connect; libssh2 runs in a forked
 * child jailed by probe_sandbox.h, which asks us to check the host key and
 * to sign the user-auth (banger's key from t->identity, whose ".pub" names
 * it, or the SSH_AUTH_SOCK agent's keys); the child never sees a private
 * key and is killed and reaped at the deadline (+1 s). The failpoint
 * BANGER_FAILPOINT=ssh.probe.child-hang holds the child after user-auth.
 */
int ssh_probe(const struct ssh_target *t, struct bg_err *err);
/*
 * ssh_probe() over fd, a TCP connection to t->host already made (the daemon
 * connects without blocking, prober.h); fd is closed in every case. fd < 0:
 * connect here, as ssh_probe() does.
 */
int ssh_probe_fd(const struct ssh_target *t, int fd, struct bg_err *err);

/*
 * Run argv (quoted safely for the remote shell) and stream its stdout and
 * stderr to ours. *ret_status receives the remote exit status.
 */
int ssh_exec(const struct ssh_target *t, const char *const *argv, int *ret_status,
	     struct bg_err *err);

/* Interactive shell on a PTY (raw mode, window size and resize, terminal restored). */
int ssh_shell(const struct ssh_target *t, int *ret_status, struct bg_err *err);

/*
 * Make sure banger's client key pair exists at key_path (+ ".pub"), creating
 * an ed25519 pair on first use (dir 0700, private key 0600). *ret_pubkey
 * (may be NULL) receives the public key line (owned).
 */
int ssh_client_key_ensure(const char *key_path, char **ret_pubkey, struct bg_err *err);

#endif
