/*
 * util.h - helpers shared by the CLI verbs: the read-only store, the spec
 * directory, the daemon's liveness, tables and JSON/YAML output.
 */
#ifndef BANGER_CLI_UTIL_H
#define BANGER_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/cli.h"
#include "reconciler/store.h"
#include "spec/spec.h"

struct cJSON;

/*
 * Open banger.db read-only. When it does not exist yet, *ret is NULL and 0 is
 * returned (no daemon has ever run here: an empty state, not an error).
 * Other failures print an error and return -errno.
 */
int cli_store_open(const struct cli_ctx *ctx, struct store **ret);

/*
 * Open the store read-only and read the VM named 'name' into *ret (owned:
 * vm_record_release). On success *ret_store is the open store (owned). On
 * failure prints the error ("vm 'x' not found", or what the store said) and
 * returns -errno.
 */
int cli_vm_get(const struct cli_ctx *ctx, const char *name, struct store **ret_store,
	       struct vm_record *ret);

/* Whether the daemon's heartbeat is recent. *ret_age_ms gets its age (-1: never ran). */
bool cli_daemon_fresh(const struct daemon_info *info, int64_t *ret_age_ms);

/* Print a banner on stderr when the daemon is down or its heartbeat is stale. */
void cli_daemon_banner(struct store *s);

/* Load the spec directory (all diagnostics kept in the set). */
void cli_load_spec_dir(const struct cli_ctx *ctx, struct spec_set *set);

/* Output formats of -o. */
enum cli_output {
	CLI_OUTPUT_TABLE,
	CLI_OUTPUT_WIDE,
	CLI_OUTPUT_JSON,
	CLI_OUTPUT_YAML,
	CLI_OUTPUT_MAX
};

/* Parse -o's argument. -EINVAL for anything else. */
int cli_output_parse(const char *s);

/* Print a cJSON value as pretty JSON or as YAML to f, with a trailing newline. */
void cli_print_json(FILE *f, const struct cJSON *v);
void cli_print_yaml(FILE *f, const struct cJSON *v);

/*
 * A simple aligned table: add rows of n_cols strings (copied), then print.
 * Column widths fit the longest cell; the last column is not padded.
 */
struct cli_table {
	size_t n_cols;
	char **cells; /* row-major */
	size_t n_rows;
};

void cli_table_init(struct cli_table *t, size_t n_cols);
void cli_table_add(struct cli_table *t, const char *const *cells);
void cli_table_print(FILE *f, const struct cli_table *t);
void cli_table_release(struct cli_table *t);

/*
 * Read the whole input named by -f ("-" is stdin, read from fd 0) into memory
 * (capped at SPEC_FILE_MAX; larger is -EFBIG). Owned buffer.
 */
int cli_read_input(const char *path, char **ret, size_t *ret_len, struct bg_err *err);

/*
 * Load -f inputs: files, directories or "-", then spec_set_finish().
 * Diagnostics go into the set. For "-", the text is kept in *ret_stdin
 * (owned) so documents can be copied from it. "-" given more than once is a
 * usage error (-EINVAL); stdin that cannot be read whole (e.g. over 1 MiB)
 * fails with its -errno. Either is printed, and then nothing is parsed at all.
 */
int cli_load_inputs(struct spec_set *set, char *const *paths, size_t n, char **ret_stdin,
		    size_t *ret_stdin_len);

/* Print every diagnostic of the set to stderr as FILE:LINE:COL: msg. */
void cli_print_diags(const struct spec_set *set);

/*
 * --image-dir: check every spec's rootfs.image, kernel.path and
 * kernel.initrd against the image dirs 'dirs' (the daemon's --image-dir)
 * and state_dir, printing each bad one as FILE:LINE:COL: field: rule.
 * n == 0 checks nothing. Returns the number of errors, or -EINVAL (printed)
 * when a dir itself is not a valid image dir.
 */
int cli_check_image_paths(const struct spec_set *set, char *const *dirs, size_t n,
			  const char *state_dir);

#endif
