/*
 * seed.h - the per-VM NoCloud seed disk: what cloud-init (and banger's
 * reference image, through banger/) reads at boot.
 *
 * seed_render() is pure: struct seed_input in, the four text files out
 * (meta-data, network-config, user-data, banger/cmdline), byte for byte the
 * same for the same input, so they are golden-file tested. seed_write_iso()
 * is the only I/O: it lays the files out in a private temp directory and
 * runs genisoimage (argv, no shell) to make the ISO 9660 image (Rock Ridge,
 * Joliet, volume id "cidata") that is attached as the VM's last disk.
 *
 * The layout and content (the seed disk contract; see docs/spec.md):
 *   meta-data        instance-id, local-hostname
 *   network-config   version 2: eth0 matched by MAC, static address, gateway,
 *                    nameservers
 *   user-data        #cloud-config: the user and exactly its keys, the host
 *                    key (ssh_keys, ssh_deletekeys, no generated keys),
 *                    the hostname, the work disk mount;
 *                    with the spec's own user-data, a MIME multipart/mixed
 *                    archive of theirs followed by banger's (see seed.c
 *                    for why that order and those merge rules)
 *   banger/cmdline   the kernel command-line contract, one line
 *   banger/ssh_host_ed25519_key[.pub]   the host key pair
 */
#ifndef BANGER_RECONCILER_GUEST_SEED_H
#define BANGER_RECONCILER_GUEST_SEED_H

#include <stddef.h>

#include "common/err.h"

#define SEED_VOLUME_ID "cidata"
#define SEED_MAX_BYTES (4 * 1024 * 1024) /* an ISO larger than this is refused */

/* Everything the seed says. All strings are borrowed, UTF-8, and required unless noted. */
struct seed_input {
	const char *instance_id;	/* "iid-banger-<vm id>" */
	const char *hostname;		/* the VM's name */
	const char *mac;		/* guest MAC "02:xx:xx:xx:xx:xx" */
	const char *ip;			/* dotted quad */
	unsigned prefix;		/* network prefix length, 1..32 */
	const char *gateway;		/* the bridge's address */
	const char *const *nameservers; /* n_nameservers dotted quads; may be NULL when 0 */
	size_t n_nameservers;
	const char *user;	      /* spec.ssh.user: "root" or another name */
	const char *authorized_keys;  /* authorized_keys text, one key per line */
	const char *host_key_private; /* OpenSSH private key text (ed25519) */
	const char *host_key_public;  /* "ssh-ed25519 AAAA... comment" */
	const char *work_disk_dev;    /* NULL, or "/dev/vdb": mounted at /mnt/work (nofail) */
	const char *user_data;	      /* the spec's user-data, or NULL */
	const char *cmdline;	      /* the guest-contract kernel arguments */
};

/* The rendered text files, each owned and NUL-terminated. */
struct seed_files {
	char *meta_data;
	char *network_config;
	char *user_data;
	char *cmdline; /* in->cmdline plus "\n" */
};

/*
 * Render the seed's files from in into *ret (owned by the caller: release
 * with seed_files_release()). Deterministic. Every string is written as a
 * double-quoted YAML scalar with escapes (the private key as a literal block
 * when it is plain printable text), so no input can leave its field.
 * Returns 0, or -EINVAL when a required field is missing, a string is not
 * UTF-8, user-data is not a kind cloud-init takes (spec_userdata_kind()), or
 * a line of cmdline holds a line break. *ret is written only on success.
 */
int seed_render(const struct seed_input *in, struct seed_files *ret, struct bg_err *err);

/* Free the files' strings and clear them. NULL and already-released are fine. */
void seed_files_release(struct seed_files *f);

/*
 * Build the seed ISO at out_path: the files of f plus banger/ssh_host_ed25519_key
 * (mode 0600 in the image) and banger/ssh_host_ed25519_key.pub, written in a
 * private temp directory next to out_path, then
 *   genisoimage -output <tmp> -volid cidata -joliet -rock <dir>
 * and the result fsynced, made 0600 and renamed over out_path (atomic: a
 * reader sees the old seed or the new one). The temp directory is removed
 * whatever happens. Fails with -EFBIG and a message when the files or the
 * image exceed SEED_MAX_BYTES, -ENOENT when genisoimage is not installed,
 * -EIO when it fails (its last output line in the message), else -errno.
 */
int seed_write_iso(const struct seed_files *f, const char *host_key_private,
		   const char *host_key_public, const char *out_path, struct bg_err *err);

#endif
