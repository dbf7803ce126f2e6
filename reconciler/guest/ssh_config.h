/*
 * ssh_config.h - the managed "Host *.vm" block that points OpenSSH at
 * banger's known_hosts, key and ssh-proxy (DESIGN.md §6), and the Include
 * line that puts it at the top of ~/.ssh/config.
 *
 * Both live between marker comments so rewriting is idempotent and leaves
 * everything else in the file byte for byte. Files are replaced atomically
 * (temp + fsync + rename + dir fsync) keeping their mode and owner. When a
 * path can't be resolved or written safely into ssh_config, nothing is
 * written and the call fails (fail closed): a block pointing at the wrong
 * known_hosts would silently disable banger's pins.
 */
#ifndef BANGER_RECONCILER_GUEST_SSH_CONFIG_H
#define BANGER_RECONCILER_GUEST_SSH_CONFIG_H

#include <stddef.h>

#include "common/err.h"

#define SSH_CONFIG_BEGIN "# BEGIN banger managed block"
#define SSH_CONFIG_END "# END banger managed block"

/*
 * The managed block (both marker lines included, '\n'-terminated) for the
 * state dir and the banger binary, both absolute:
 *
 *   Host *.vm
 *       UserKnownHostsFile "<state>/ssh/known_hosts"
 *       StrictHostKeyChecking accept-new
 *       HashKnownHosts no
 *       UpdateHostKeys no
 *       User root
 *       IdentityFile "<state>/ssh/id_ed25519"
 *       ProxyCommand '<banger>' --state-dir '<state>' ssh-proxy %n
 *
 * '%' in paths is doubled (ssh_config expands % tokens there). Paths that
 * are relative or contain a quote, backslash or control character are
 * refused with -EINVAL. *ret is owned.
 */
int ssh_config_render(const char *state_dir, const char *banger_path, char **ret,
		      struct bg_err *err);

/*
 * Pure text edit: 'text' (len bytes, may be empty) with its managed block
 * replaced by 'block', or with 'block' inserted at the top when it has none
 * (so it wins over any later "Host *": ssh_config uses the first value it
 * sees). A stray BEGIN without END is replaced through the end of the text.
 * Returns an owned string.
 */
char *ssh_config_splice(const char *text, size_t len, const char *block);

/*
 * Write the managed block into banger's own file <state>/ssh/ssh_config,
 * creating <state>/ssh (0700) if needed. The state dir must be absolute and
 * creatable; it is canonicalised (realpath) before rendering. *ret_path
 * (may be NULL) receives the file's path (owned).
 */
int ssh_config_write(const char *state_dir, const char *banger_path, char **ret_path,
		     struct bg_err *err);

/*
 * Put a managed block with `Include "<include_path>"` at the top of
 * user_config (normally ~/.ssh/config), or update it in place. Creates the
 * directory (0700) and file (0600) when missing. Refuses (-EPERM) a
 * symlinked directory or file and ones owned by another user. Returns 1 when
 * the file changed, 0 when it already had exactly this block.
 */
int ssh_config_install_include(const char *user_config, const char *include_path,
			       struct bg_err *err);

#endif
