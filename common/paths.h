/*
 * paths.h - where banger keeps things.
 *
 * Spec dir (desired state): --spec-dir, else BANGER_SPEC_DIR, else
 * /etc/banger/vms.d as root, else $XDG_CONFIG_HOME/banger/vms.d.
 * State dir (db, VM files, ssh pins): --state-dir, else BANGER_STATE_DIR, else
 * /var/lib/banger as root, else $XDG_STATE_HOME/banger.
 */
#ifndef BANGER_COMMON_PATHS_H
#define BANGER_COMMON_PATHS_H

/* Resolve the spec dir. 'override' (a command-line value) wins when non-NULL. Owned. */
char *paths_spec_dir(const char *override);

/* Resolve the state dir. 'override' wins when non-NULL. Owned. */
char *paths_state_dir(const char *override);

/* <state>/banger.db */
char *paths_db(const char *state_dir);
/* <state>/vms/<id> */
char *paths_vm_dir(const char *state_dir, const char *id);
/* <state>/ssh */
char *paths_ssh_dir(const char *state_dir);
/* <state>/ssh/known_hosts */
char *paths_known_hosts(const char *state_dir);
/* <state>/ssh/id_ed25519 (the public key is this path + ".pub") */
char *paths_client_key(const char *state_dir);
/* <state>/bangerd.lock */
char *paths_daemon_lock(const char *state_dir);

/*
 * path made absolute against the current directory (lexically: nothing needs
 * to exist, symlinks are kept). Takes ownership of path; returns an owned
 * string (path itself when it was already absolute).
 */
char *paths_absolute(char *path);

#endif
