/*
 * spec.h - the VM spec language: YAML documents -> struct vm_spec.
 *
 * spec/ owns parsing (libyaml's event API; the only includer of yaml.h),
 * validation with FILE:LINE:COLUMN diagnostics, defaults, the canonical JSON
 * form (cJSON, fixed key order) and its SHA-256 hash, and loading a spec
 * directory. It does no I/O beyond reading the files it is asked to load.
 *
 *   apiVersion: banger/v1
 *   kind: VM
 *   metadata: {name: web-1, labels: {team: infra}}
 *   spec:
 *     state: running            running | stopped            (default running)
 *     vmm: auto                 auto | firecracker | qemu    (default auto)
 *     vcpus: 1                  1..32; firecracker: 1 or even (default 1)
 *     memoryMiB: 256            64..65536                    (default 256)
 *     kernel: {path: /abs, initrd: /abs, args: "..."}       path required
 *     rootfs: {image: /abs, sizeMiB: 2048}                   image required
 *     workDisk: {sizeMiB: 512}                               optional
 *     network:                                               optional
 *       ip: 172.30.0.10          static IPv4                  (default: leased)
 *       egress: nat              nat | none                   (default: bangerd --nat)
 *       ports:                   host -> guest forwards, at most 64
 *       - {hostPort: 8080, guestPort: 80, protocol: tcp, hostIP: 127.0.0.1}
 *                                protocol tcp | udp (default tcp); hostIP default
 *                                127.0.0.1, 0.0.0.0 for every address of the host
 *     ssh: {user: root, authorizedKeys: ["ssh-ed25519 AAAA... c"]}
 *     guest: {config: auto}     auto | cloudinit | cmdline   (default auto)
 *     cloudInit: {userData: "#cloud-config ..."}  or {userDataFile: rel/path}
 *     restartPolicy: always     always | on-failure | never  (default always)
 */
#ifndef BANGER_SPEC_SPEC_H
#define BANGER_SPEC_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define SPEC_API_VERSION "banger/v1"
#define SPEC_KIND "VM"
#define SPEC_NAME_MAX 63
#define SPEC_FILE_MAX (1024 * 1024) /* bytes */
#define SPEC_DEPTH_MAX 32
#define SPEC_HASH_LEN 64	       /* hex chars of SHA-256 */
#define SPEC_USERDATA_MAX (256 * 1024) /* bytes of spec.cloudInit user-data */

/*
 * Bounds of one spec directory walk (spec_load_path() on a directory). A
 * directory deeper than SPEC_DIR_DEPTH_MAX is an error for that directory;
 * past any other bound (all walk-wide) the whole spec directory is an error
 * and the walk stops (no VM is then changed: a half-read tree is not "those
 * VMs are gone"). Each error names the path and the limit.
 */
#define SPEC_DIR_DEPTH_MAX 8		      /* levels of subdirectories below the top */
#define SPEC_DIR_DIRS_MAX 1024		      /* directories in the tree */
#define SPEC_DIR_ENTRIES_MAX 65536	      /* directory entries in the tree */
#define SPEC_DIR_FILES_MAX 4096		      /* spec files read */
#define SPEC_DIR_BYTES_MAX (64 * 1024 * 1024) /* bytes of spec files read */

enum vm_desired_state {
	VM_DESIRED_RUNNING,
	VM_DESIRED_STOPPED,
	VM_DESIRED_MAX
};

enum vmm_kind {
	VMM_AUTO,
	VMM_FIRECRACKER,
	VMM_QEMU,
	VMM_KIND_MAX
};

enum restart_policy {
	RESTART_ALWAYS,
	RESTART_ON_FAILURE,
	RESTART_NEVER,
	RESTART_POLICY_MAX
};

/*
 * How the guest learns its configuration (network, user, keys, host key):
 *  - auto: banger attaches the NoCloud seed disk AND passes the kernel
 *    command-line contract (ip=, banger.*), so cloud images (cloud-init) and
 *    the reference image (rcS reads the command line) both work;
 *  - cloudinit: the seed only, no banger.* or ip= kernel arguments;
 *  - cmdline: no seed, the kernel arguments only; the guest makes its own host
 *    key, which banger then trusts on first use.
 */
enum guest_config {
	GUEST_CONFIG_AUTO,
	GUEST_CONFIG_CLOUDINIT,
	GUEST_CONFIG_CMDLINE,
	GUEST_CONFIG_MAX
};

/* spec.network.egress; DEFAULT when the spec does not say (the daemon's --nat decides). */
enum spec_egress {
	SPEC_EGRESS_DEFAULT,
	SPEC_EGRESS_NAT,
	SPEC_EGRESS_NONE,
	SPEC_EGRESS_MAX
};

enum spec_proto {
	SPEC_PROTO_TCP,
	SPEC_PROTO_UDP,
	SPEC_PROTO_MAX
};

#define SPEC_PORTS_MAX 64

/* One spec.network.ports entry. */
struct spec_port {
	char host_ip[16]; /* dotted IPv4: 127.0.0.1 by default; 0.0.0.0: every host address */
	uint16_t host_port;
	uint16_t guest_port;
	enum spec_proto protocol;
};

/* "running", "auto", "on-failure", "cloudinit", ...; NULL for out-of-range values. */
const char *vm_desired_state_to_string(enum vm_desired_state s);
const char *vmm_kind_to_string(enum vmm_kind k);
const char *restart_policy_to_string(enum restart_policy p);
const char *guest_config_to_string(enum guest_config c);
const char *spec_egress_to_string(enum spec_egress e); /* NULL for DEFAULT too */
const char *spec_proto_to_string(enum spec_proto p);
/* The enum value, or -EINVAL. */
int vm_desired_state_from_string(const char *s);
int vmm_kind_from_string(const char *s);
int restart_policy_from_string(const char *s);
int guest_config_from_string(const char *s);
int spec_egress_from_string(const char *s); /* "nat" | "none" */
int spec_proto_from_string(const char *s);

struct spec_label {
	char *key;
	char *value;
};

struct vm_spec {
	char *name;		   /* RFC 1123 label, <= 63 chars */
	struct spec_label *labels; /* sorted by key, keys unique */
	size_t n_labels;
	enum vm_desired_state state;
	enum vmm_kind vmm;
	unsigned vcpus;
	unsigned memory_mib;
	char *kernel_path;	  /* absolute */
	char *kernel_initrd;	  /* absolute, or NULL */
	char *kernel_args;	  /* extra kernel arguments, or NULL */
	char *rootfs_image;	  /* absolute; read-only base shared by VMs */
	uint64_t rootfs_size_mib; /* capacity of the COW disk; 0: the image's size */
	uint64_t work_disk_mib;	  /* 0: no work disk */
	char *ip;		  /* static IPv4, or NULL to lease one */
	enum spec_egress egress;  /* spec.network.egress */
	struct spec_port *ports;  /* spec.network.ports, n_ports of them, in spec order */
	size_t n_ports;
	char *ssh_user;	 /* never NULL after parsing ("root" by default) */
	char **ssh_keys; /* authorized_keys lines, n_ssh_keys of them */
	size_t n_ssh_keys;
	enum restart_policy restart_policy;
	enum guest_config guest_config; /* spec.guest.config */
	/*
	 * spec.cloudInit: the user-data text (#cloud-config, a #! script or a
	 * MIME multi-part archive; at most SPEC_USERDATA_MAX bytes, UTF-8, no NUL),
	 * or NULL when none. From userData, or read from userDataFile when the
	 * spec file was loaded (the file name is then kept for display). Part of
	 * the canonical form, so editing the file changes the hash.
	 */
	char *cloudinit_user_data;
	char *cloudinit_user_data_file; /* as written in the spec (relative), or NULL */

	/*
	 * Provenance; not part of the canonical form or the hash.
	 * [source_start, source_end) are byte offsets of the document in the
	 * file, from libyaml's DOCUMENT-START and DOCUMENT-END marks: the range
	 * starts at the '---' marker when there is one (else at the document's
	 * first token, after any leading comments) and ends after an explicit
	 * '...', else where the next document's '---' starts (or at the end of
	 * the file). Consecutive documents' ranges are therefore adjacent, and
	 * comments after a document belong to its range. A leading UTF-8 BOM
	 * is counted in the offsets.
	 */
	char *source_file;    /* the file the document came from, or NULL */
	unsigned source_line; /* line of the document's start, 1-based */
	size_t source_start;  /* byte range of the document's text in the file, */
	size_t source_end;    /* so 'banger apply' can replace it in place */
	unsigned name_line;   /* where metadata.name's value is, 1-based; */
	unsigned name_col;    /* 0 when unknown (parsed from JSON) */
	/* Where the values of kernel.path, kernel.initrd and rootfs.image are
	 * (same convention), for spec_check_image_paths(). */
	unsigned kernel_path_line, kernel_path_col;
	unsigned kernel_initrd_line, kernel_initrd_col;
	unsigned rootfs_image_line, rootfs_image_col;
	/* spec_hash() of this spec when a spec_cache (spec/cache.h) filled it in, else "". */
	char hash[SPEC_HASH_LEN + 1];
};

struct imgpath_conf;

/*
 * The image files 'spec' names (rootfs.image, kernel.path, kernel.initrd)
 * against the image roots in 'conf' (common/imgpath's lexical rules, no
 * file is opened). NULL when all pass; else an owned string with one line
 * per bad field, "FILE:LINE:COL: spec.rootfs.image: <rule>" (FILE and the
 * position as far as known), each ending in '\n'.
 */
char *spec_check_image_paths(const struct vm_spec *spec, const struct imgpath_conf *conf);

/* Free a spec and everything it owns. NULL is fine. */
void vm_spec_free(struct vm_spec *spec);
static inline void vm_spec_freep(struct vm_spec **p)
{
	if (*p)
		vm_spec_free(*p);
}

/* Deep copy. Owned. */
struct vm_spec *vm_spec_dup(const struct vm_spec *spec);

/*
 * The canonical JSON form: defaults filled in, fixed key order, compact.
 * Two specs that mean the same thing give the same bytes whatever their key
 * order, comments or quoting in YAML. Provenance is left out. Owned string.
 */
char *spec_to_json(const struct vm_spec *spec);

/* SHA-256 of spec_to_json() as 64 hex chars plus NUL. */
void spec_hash(const struct vm_spec *spec, char out[SPEC_HASH_LEN + 1]);

/*
 * Parse a canonical JSON spec (as stored by the reconciler) back into a spec,
 * validating it with the same rules as YAML. Returns 0 or -EINVAL.
 */
int spec_from_json(const char *json, struct vm_spec **ret, struct bg_err *err);

/* How two versions of one VM's spec differ. */
enum spec_change {
	SPEC_SAME,   /* nothing that matters changed (the desired state is compared apart) */
	SPEC_UPDATE, /* labels, restartPolicy, the name of a userDataFile whose content
		      * is unchanged, network.egress and network.ports (host rules);
		      * applied without a reboot */
	SPEC_REBOOT, /* anything the guest sees at boot: vcpus, memory, kernel, disks,
			 * network, ssh, vmm, guest.config, user-data; needs a restart */
	SPEC_CHANGE_MAX
};

/* Compare old and new, ignoring 'state' and provenance. */
enum spec_change spec_compare(const struct vm_spec *old_spec, const struct vm_spec *new_spec);
/* Same spec.network.ports, in the same order. */
bool spec_ports_equal(const struct vm_spec *a, const struct vm_spec *b);

/* ---- loading ------------------------------------------------------------- */

/* One diagnostic: "file:line:col: msg". line/col are 1-based; 0 when unknown. */
struct spec_diag {
	char *file;
	unsigned line;
	unsigned col;
	char *msg;
};

/* Where a name was defined: the position of its metadata.name value. */
struct spec_def {
	char *name;
	char *file;
	unsigned line;
	unsigned col;
};

/*
 * The result of loading one or more files. A file with any error contributes
 * no specs at all (a half-valid file never changes its VMs); the names it
 * defines, as far as they could be read, go to failed_names so the
 * reconciler keeps those VMs' last good spec. A name defined twice is an
 * error naming both places; it is listed in failed_names too and neither
 * definition is used.
 */
struct spec_set {
	struct vm_spec **specs; /* sorted by name, names unique */
	size_t n_specs;
	struct spec_diag *diags; /* in load order */
	size_t n_diags;
	char **failed_files; /* files that had errors */
	size_t n_failed_files;
	char **failed_names; /* sorted, unique */
	size_t n_failed_names;
	struct spec_def *failed_defs; /* where each failed name was defined, in load */
	size_t n_failed_defs;	      /* order, so a clash can name both places */
};

void spec_set_init(struct spec_set *set);
void spec_set_release(struct spec_set *set);

/*
 * Parse one YAML stream (one or more '---' documents) from memory. 'file' is
 * the name used in diagnostics and provenance; a spec.cloudInit.userDataFile
 * in it is read relative to the directory of 'file' ("." when it has no
 * '/', as for "<stdin>") and must stay inside that directory. Returns the number of errors
 * this call added (0 when the buffer was valid). Diagnostics of one stream
 * come sorted by position; after SPEC_ERRORS_MAX (100) errors the file is
 * given up with a last "too many errors" diagnostic.
 */
int spec_parse_buffer(struct spec_set *set, const char *file, const char *data, size_t len);

/*
 * spec_parse_buffer() for a file inside a spec directory 'base_dir' that the
 * caller opened as base_fd (borrowed): a userDataFile is read beneath base_fd
 * from rel_dir, the file's directory relative to it ("" for the top), so no
 * path is resolved again.
 */
int spec_parse_buffer_at(struct spec_set *set, const char *file, const char *data, size_t len,
			 const char *base_dir, int base_fd, const char *rel_dir);

/*
 * Load a file, a directory, or "-" (stdin). A userDataFile is relative to the
 * directory of the spec file naming it and must resolve inside the directory
 * being loaded (for a single file, or stdin: the file's own directory, or
 * the current one), without symlinks that leave it (openat2 RESOLVE_BENEATH),
 * and be a regular file (not itself a symlink) of at most SPEC_USERDATA_MAX
 * bytes.
 *
 * A directory is a tree that cannot be left: it is opened once and every
 * entry is opened relative to that fd with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS), so a symlink inside the tree to a place inside it
 * works (Kubernetes' "..data" swap) while one that leads out of it, or an
 * absolute one, is an error for that entry ("leads outside the spec
 * directory"), never followed. Read: *.yaml and *.yml regular files,
 * skipping hidden entries (".git", "..data", ".x.swp"), editor scratch files
 * ("4913", "x~", ".#x", "#x#") and anything else. Each directory and each
 * file is visited once (by device and inode), entries in name order. The
 * SPEC_DIR_* bounds above apply. Returns the
 * number of errors added (unreadable paths count).
 * Call spec_set_finish() after the last load.
 *
 * A file that disappears between readdir and open is skipped silently. stdin
 * is named "<stdin>" in diagnostics and provenance. I/O errors and files over
 * SPEC_FILE_MAX are diagnostics without a position (line 0).
 */
int spec_load_path(struct spec_set *set, const char *path);

/*
 * Finish a set after loading: detect names defined more than once (an error
 * at each later definition: "vm 'x' is also defined at FILE:LINE:COL"), sort
 * specs and failed names. A name defined in a good file and also in a file
 * that failed to load is treated the same way (its good spec is dropped too,
 * the VM keeps its last good spec). Duplicates do not add files to
 * failed_files: other VMs in those files are still used. Returns the number
 * of errors it added.
 */
int spec_set_finish(struct spec_set *set);

/* true when 'name' is listed in set->failed_names, or 'file' in set->failed_files. */
bool spec_set_name_failed(const struct spec_set *set, const char *name);
bool spec_set_file_failed(const struct spec_set *set, const char *file);

/* The spec named 'name' in a finished set (spec_set_finish), or NULL. Borrowed
 * from the set. */
const struct vm_spec *spec_set_find(const struct spec_set *set, const char *name);

/*
 * Append str as a double-quoted YAML scalar that every YAML 1.1/1.2 reader
 * (libyaml, PyYAML) reads back byte for byte: '"' and '\\' escaped, control
 * characters, C1, U+2028/U+2029, U+FEFF, non-characters and invalid UTF-8
 * bytes as escapes. For YAML that banger writes for others (spec_to_yaml,
 * the cloud-init seed).
 */
struct buf;
void spec_yaml_quote(struct buf *b, const char *str);

/* ---- user-data ---------------------------------------------------------------- */

enum spec_userdata_kind {
	SPEC_USERDATA_CLOUD_CONFIG, /* first line "#cloud-config" */
	SPEC_USERDATA_SCRIPT,	    /* "#!" */
	SPEC_USERDATA_MIME,	    /* MIME headers: Content-Type: / MIME-Version: first */
	SPEC_USERDATA_UNKNOWN,
	SPEC_USERDATA_KIND_MAX
};

/* What kind of user-data text this is, by its start alone (no validation). */
enum spec_userdata_kind spec_userdata_kind(const char *text, size_t len);

/*
 * Validate user-data as the spec does: at most SPEC_USERDATA_MAX bytes of
 * UTF-8 without NUL, and one of
 *  - "#cloud-config" on the first line, the whole text one YAML document
 *    (libyaml) whose top level is a mapping or empty;
 *  - a script ("#!");
 *  - a MIME multi-part archive: headers first (Content-Type:/MIME-Version:),
 *    a Content-Type multipart/... with a boundary, then a blank line.
 * Returns 0, or -EINVAL with "FILE:LINE:COL: message" in err, where the
 * position inside the text (1-based) is shifted by line0/col0 (the text's
 * first character is at FILE:line0+1:col0+1; both 0 for a file of its own).
 * An error about the whole text reads "FILE: message".
 */
int spec_userdata_check(const char *text, size_t len, const char *file, unsigned line0,
			unsigned col0, struct bg_err *err);

/* Format a diagnostic as "file:line:col: msg" (or "file: msg" when line is 0). Owned. */
char *spec_diag_format(const struct spec_diag *d);

/* true when s is a valid RFC 1123 label of at most 63 chars. */
bool spec_name_valid(const char *s);

/* true when a directory entry name is one the loader would read as a spec file. */
bool spec_is_spec_filename(const char *name);

/* ---- writing ----------------------------------------------------------------- */

/*
 * Render a spec as a YAML document (apiVersion, kind, metadata, spec) with
 * defaults written out, as 'banger apply' stores it. Owned. Block style, two
 * spaces, ending in a newline, without a '---' marker (prepend one when
 * replacing a document whose range starts with '---'). Parsing the result
 * gives the same canonical JSON.
 */
char *spec_to_yaml(const struct vm_spec *spec);

#endif
