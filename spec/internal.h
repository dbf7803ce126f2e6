/*
 * internal.h - what the spec/ front ends share (not a public API).
 *
 * The YAML front end (spec.c, libyaml events) and the JSON front end
 * (json.c, cJSON) walk the same schema table and feed one struct
 * spec_builder, which type-checks and validates every value, fills in
 * defaults and reports errors through a callback. So a field has exactly one
 * set of rules whichever syntax it arrived in.
 */
#ifndef BANGER_SPEC_INTERNAL_H
#define BANGER_SPEC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec/spec.h"

/* Limits not in spec.h. */
#define SPEC_PATH_MAX 4095	  /* bytes of a path */
#define SPEC_ARGS_MAX 1024	  /* bytes of kernel.args */
#define SPEC_USER_MAX 32	  /* bytes of ssh.user */
#define SPEC_KEY_MAX 16384	  /* bytes of one authorizedKeys entry */
#define SPEC_SIZE_MIB_MAX 1048576 /* rootfs.sizeMiB, workDisk.sizeMiB */
#define SPEC_ERRORS_MAX 100	  /* diagnostics per stream before giving up */

/* A position in the input, 1-based; line 0 when unknown (JSON). */
struct spec_loc {
	unsigned line;
	unsigned col;
};

/* Every field of the language, parents before children. */
enum spec_field {
	SPEC_F_ROOT,
	SPEC_F_API_VERSION,
	SPEC_F_KIND,
	SPEC_F_METADATA,
	SPEC_F_NAME,
	SPEC_F_LABELS,
	SPEC_F_SPEC,
	SPEC_F_STATE,
	SPEC_F_VMM,
	SPEC_F_VCPUS,
	SPEC_F_MEMORY,
	SPEC_F_KERNEL,
	SPEC_F_KERNEL_PATH,
	SPEC_F_KERNEL_INITRD,
	SPEC_F_KERNEL_ARGS,
	SPEC_F_ROOTFS,
	SPEC_F_ROOTFS_IMAGE,
	SPEC_F_ROOTFS_SIZE,
	SPEC_F_WORK_DISK,
	SPEC_F_WORK_DISK_SIZE,
	SPEC_F_NETWORK,
	SPEC_F_NETWORK_IP,
	SPEC_F_NETWORK_EGRESS,
	SPEC_F_NETWORK_PORTS,
	SPEC_F_PORT_HOST_PORT,
	SPEC_F_PORT_GUEST_PORT,
	SPEC_F_PORT_PROTOCOL,
	SPEC_F_PORT_HOST_IP,
	SPEC_F_SSH,
	SPEC_F_SSH_USER,
	SPEC_F_SSH_KEYS,
	SPEC_F_GUEST,
	SPEC_F_GUEST_CONFIG,
	SPEC_F_CLOUDINIT,
	SPEC_F_CLOUDINIT_USER_DATA,
	SPEC_F_CLOUDINIT_USER_DATA_FILE,
	SPEC_F_RESTART,
	SPEC_F_MAX
};

enum spec_field_type {
	SPEC_FT_MAP,	/* a mapping of known fields */
	SPEC_FT_STRING, /* a string */
	SPEC_FT_INT,	/* an integer */
	SPEC_FT_ENUM,	/* one of a fixed set of strings */
	SPEC_FT_STRMAP, /* a mapping of free-form string keys to strings (labels) */
	SPEC_FT_STRSEQ, /* a sequence of strings (authorizedKeys) */
	SPEC_FT_MAPSEQ, /* a sequence of mappings of known fields (network.ports) */
	SPEC_FT_MAX
};

/* What a value turned out to be. Plain YAML scalars resolve like YAML 1.2's core schema. */
enum spec_kind {
	SPEC_KIND_NULL,
	SPEC_KIND_BOOL,
	SPEC_KIND_INT,
	SPEC_KIND_FLOAT,
	SPEC_KIND_STRING,
	SPEC_KIND_MAPPING,
	SPEC_KIND_SEQUENCE,
	SPEC_KIND_MAX
};

/* The field's type (SPEC_FT_MAP for SPEC_F_ROOT). */
enum spec_field_type spec_field_type(enum spec_field f);
/* Its key in the parent mapping ("memoryMiB") and full path ("spec.memoryMiB"). */
const char *spec_field_key(enum spec_field f);
const char *spec_field_path(enum spec_field f);

/* "a string", "an integer", "a mapping", "null"... */
const char *spec_kind_name(enum spec_kind k);

/* Resolve a plain (unquoted) YAML scalar: null, bool, int, float or string. */
enum spec_kind spec_resolve_plain(const char *s, size_t len);

/* true when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool spec_utf8_valid(const char *s, size_t len);

/* Diagnostic sink: a message about a position in 'file' (NULL: the document's own file). */
typedef void (*spec_report_fn)(void *ctx, const char *file, struct spec_loc loc, const char *msg);

/*
 * Reads a userDataFile for the builder: 'name' as written in the spec.
 * Returns 0 with the content (owned, NUL-terminated) and the name to show in
 * diagnostics about it (owned), or -errno with a message in err (no position).
 */
typedef int (*spec_read_fn)(void *ctx, const char *name, char **ret_data, size_t *ret_len,
			    char **ret_shown, struct bg_err *err);

/*
 * Check user-data text (see spec_userdata_check()). Returns 0, or -EINVAL
 * with the message (owned) and its position inside the text (1-based; line 0
 * when it is about the whole text).
 */
int spec_userdata_problem(const char *text, size_t len, struct spec_loc *ret_loc, char **ret_msg);

/*
 * Builds one struct vm_spec from the fields of one document. The front end
 * walks the document and calls spec_builder_key() for every mapping key of a
 * known mapping, then one of _begin/_scalar/_label/_item for the value.
 */
struct spec_builder {
	struct vm_spec *spec; /* owned until spec_builder_finish() hands it over */
	unsigned n_errors;    /* errors reported for this document */
	spec_report_fn report;
	void *ctx;
	struct spec_loc doc_loc;	     /* where the document's root mapping starts */
	bool seen[SPEC_F_MAX];		     /* the key was present */
	bool bad[SPEC_F_MAX];		     /* its value had an error: skip dependent checks */
	struct spec_loc key_loc[SPEC_F_MAX]; /* first occurrence of the key */
	struct spec_loc val_loc[SPEC_F_MAX]; /* its value */
	struct spec_loc *label_loc;	     /* key positions of spec->labels, unsorted */
	size_t label_alloc;
	/*
	 * Reads userDataFile; NULL for the canonical JSON, where the content is
	 * in userData next to the file's name and no file is read.
	 */
	spec_read_fn read_file;
	void *read_ctx;
	/*
	 * Set by the YAML front end before each scalar: for a literal block
	 * scalar ('|'), the position of its first content line (column: its
	 * indentation + 1), so a line of user-data maps to a line of the file;
	 * line 0 for any other style.
	 */
	struct spec_loc body_loc;
	struct spec_loc user_data_body; /* body_loc of spec.cloudInit.userData */
	/*
	 * Inside an element of a SPEC_FT_MAPSEQ field: its index (the seen/
	 * key_loc/val_loc slots of the element's fields are reset per element),
	 * and the positions of every element, for checks across them.
	 */
	size_t elem_index;
	struct spec_loc *port_loc; /* where each spec->ports[i] starts */
	char path_buf[96];	   /* "spec.network.ports[3].hostPort" for messages */
};

void spec_builder_init(struct spec_builder *b, struct spec_loc doc_loc, spec_report_fn report,
		       void *ctx);
/* Free whatever the builder still owns. */
void spec_builder_release(struct spec_builder *b);

/* Report an error for this document: "<msg>" at loc. */
void spec_builder_error(struct spec_builder *b, struct spec_loc loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * A key of the mapping 'parent' (a SPEC_FT_MAP field). Returns its field, or
 * -1 after reporting an unknown field. A duplicate key is reported; for a
 * scalar field it still returns the field so the value is checked too, for a
 * collection -1 (the front end skips the value).
 */
int spec_builder_key(struct spec_builder *b, enum spec_field parent, const char *key, size_t len,
		     struct spec_loc loc);

/*
 * The value of f starts: 'kind' is what it is. Returns true when the kind
 * fits the field (a mapping for MAP and STRMAP, a sequence for STRSEQ),
 * false after reporting a type error; the front end then skips the value.
 * text/len: the value when it is a scalar (for the message), else "" and 0.
 * For scalar fields call spec_builder_scalar() instead.
 */
bool spec_builder_begin(struct spec_builder *b, enum spec_field f, enum spec_kind kind,
			const char *text, size_t len, struct spec_loc loc);

/*
 * A scalar value (or a collection where a scalar was expected, kind tells)
 * for a STRING, INT or ENUM field: type-check, validate, store.
 */
void spec_builder_scalar(struct spec_builder *b, enum spec_field f, enum spec_kind kind,
			 const char *text, size_t len, struct spec_loc loc);

/* One metadata.labels entry. */
void spec_builder_label(struct spec_builder *b, enum spec_kind key_kind, const char *key,
			size_t key_len, struct spec_loc key_loc, enum spec_kind kind,
			const char *value, size_t len, struct spec_loc loc);

/*
 * Element 'index' of a SPEC_FT_MAPSEQ field f starts: 'kind' is what it is.
 * Returns true when it is a mapping (the front end then feeds its keys with
 * parent f and calls spec_builder_elem_end()), false after reporting it.
 */
bool spec_builder_elem_begin(struct spec_builder *b, enum spec_field f, size_t index,
			     enum spec_kind kind, const char *text, size_t len,
			     struct spec_loc loc);
void spec_builder_elem_end(struct spec_builder *b, enum spec_field f);

/* Item 'index' of ssh.authorizedKeys. */
void spec_builder_item(struct spec_builder *b, enum spec_field f, size_t index, enum spec_kind kind,
		       const char *text, size_t len, struct spec_loc loc);

/*
 * Check required fields and cross-field rules, fill in defaults. Returns the
 * spec (owned) when the document had no error at all, else NULL.
 */
struct vm_spec *spec_builder_finish(struct spec_builder *b);

/* The document's metadata.name when it was read and is valid, else NULL. Borrowed. */
const char *spec_builder_name(const struct spec_builder *b);

/* ---- the directory walk's hook (spec/cache.c) -------------------------------------------- */

struct stat;

/*
 * Lets a cache stand in for reading and parsing the spec files of a directory
 * walk, while the walk itself (order, bounds, symlinks, each inode once,
 * every diagnostic of its own) stays exactly spec_load_path()'s.
 */
struct spec_walk_hook {
	void *ctx;
	/* The walk starts: 'root_fd' is the spec directory, opened (borrowed). */
	void (*begin)(void *ctx, int root_fd);
	/*
	 * A spec file at 'rel' (relative to the top) that the walk would read,
	 * as stat'ed by the walk. Returns a cached result that still stands
	 * (then *ret_len is the bytes it had), or NULL to read the file.
	 */
	const void *(*lookup)(void *ctx, const char *rel, const struct stat *st, size_t *ret_len);
	/* Add a result lookup() returned to set. Returns its number of errors. */
	int (*use)(void *ctx, const void *entry, struct spec_set *set);
	/*
	 * The file was read ('data', 'len'; 'st' from its fd): add what it holds to
	 * set as spec_parse_buffer_at(set, path, data, len, top, root_fd, rel_dir)
	 * would, except that a cloud-config (spec_userdata_kind) adds nothing.
	 * Returns the number of errors added.
	 */
	int (*parse)(void *ctx, const char *rel, const char *path, const char *rel_dir,
		     const struct stat *st, const char *data, size_t len, const char *top,
		     int root_fd, struct spec_set *set);
};

/* spec_load_path() with a hook for the spec files a directory walk finds. */
int spec_load_path_hooked(struct spec_set *set, const char *path,
			  const struct spec_walk_hook *hook);

/*
 * Append everything in src (an unfinished set: what parsing one file added) to
 * dst as if it had been parsed into dst: specs (deep copies), diagnostics,
 * failed names and their definitions, failed files (each once).
 */
void spec_set_merge(struct spec_set *dst, const struct spec_set *src);

#endif
