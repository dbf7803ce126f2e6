/*
 * cmd_validate.c - banger validate -f PATH|DIR|- [-f ...]: check spec files
 * without applying them.
 *
 * Loads every path like the daemon loads its spec directory (same parser,
 * same rules, names unique across all paths) and prints every diagnostic as
 * "FILE:LINE:COL: message" on stderr, so editors and CI can jump to it.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "spec/spec.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: banger validate -f PATH [-f PATH...]\n\n"
		"Check VM spec files without applying them. PATH is a YAML file, a\n"
		"directory (read recursively: *.yaml and *.yml) or - for stdin.\n"
		"Errors are printed as FILE:LINE:COLUMN: message.\n\n"
		"Options:\n"
		"  -f, --filename PATH   file, directory or - to check (repeatable)\n"
		"  --image-dir DIR       also check that images, kernels and initrds are\n"
		"                        below DIR (bangerd's --image-dir; repeatable)\n"
		"  -h, --help            this help\n\n"
		"Exit status: 0 when every spec is valid, 1 when any is not, 2 on usage errors.\n");
}

int cmd_validate(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option options[] = {
		{ "filename", required_argument, NULL, 'f' },
		{ "image-dir", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_free_ char **paths = NULL;
	_cleanup_free_ char **image_dirs = NULL;
	size_t n_image_dirs = 0;
	_cleanup_free_ char *stdin_data = NULL;
	size_t stdin_len = 0;
	struct spec_set set;
	size_t n_paths = 0;
	int c, r;

	while ((c = getopt_long(argc, argv, "f:h", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			paths = xreallocarray(paths, n_paths + 1, sizeof(*paths));
			paths[n_paths++] = optarg;
			break;
		case 'I':
			image_dirs =
				xreallocarray(image_dirs, n_image_dirs + 1, sizeof(*image_dirs));
			image_dirs[n_image_dirs++] = optarg;
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_error("validate: unexpected argument '%s' (use -f PATH)", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (n_paths == 0) {
		cli_error("validate: -f PATH is required (a file, a directory, or - for stdin)");
		return CLI_EXIT_USAGE;
	}

	spec_set_init(&set);
	r = cli_load_inputs(&set, paths, n_paths, &stdin_data, &stdin_len);
	if (r < 0) {
		spec_set_release(&set);
		return r == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
	}
	if (set.n_diags > 0) {
		for (size_t i = 0; i < set.n_diags; i++) {
			_cleanup_free_ char *line = spec_diag_format(&set.diags[i]);

			fprintf(stderr, "%s\n", line);
		}
		spec_set_release(&set);
		return CLI_EXIT_FAIL;
	}
	r = cli_check_image_paths(&set, image_dirs, n_image_dirs, ctx->state_dir);
	if (r != 0) {
		spec_set_release(&set);
		return r < 0 ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
	}
	printf("%zu VM%s valid%s", set.n_specs, set.n_specs == 1 ? "" : "s",
	       set.n_specs ? ": " : "");
	for (size_t i = 0; i < set.n_specs; i++)
		printf("%s%s", i ? ", " : "", set.specs[i]->name);
	printf("\n");
	spec_set_release(&set);
	return CLI_EXIT_OK;
}
