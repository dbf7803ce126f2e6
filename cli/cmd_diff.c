/*
 * cmd_diff.c - banger diff -f PATH|DIR|-
 *
 * A unified diff, per VM, between the spec in the spec directory and the one
 * in the input, both in canonical form (defaults filled in, keys sorted), so
 * only differences in meaning show. Exit codes follow kubectl diff: 0 no
 * differences, 1 differences, >1 error. The diff program is 'diff -u -N' or
 * $BANGER_EXTERNAL_DIFF (a program name, run with two file arguments).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"

#define EXIT_DIFFERS 1
#define EXIT_ERROR 2

static void usage(FILE *f)
{
	fprintf(f, "Usage: banger diff -f PATH|DIR|- [-f ...]\n\n"
		   "Show what 'banger apply' would change, as a unified diff of canonical specs.\n"
		   "Exit status: 0 no differences, 1 differences, 2 error.\n");
}

static int write_tmp(const char *dir, const char *name, const char *text, char **ret)
{
	char *path = xasprintf("%s/%s", dir, name);
	struct bg_err err = { 0 };

	if (fs_write_atomic(path, text, strlen(text), 0600, &err) < 0) {
		cli_error("%s", err.msg);
		free(path);
		return -EIO;
	}
	*ret = path;
	return 0;
}

static int diff_one(const char *tmpdir, const char *name, const struct vm_spec *cur,
		    const struct vm_spec *next)
{
	_cleanup_free_ char *a_text = cur ? spec_to_yaml(cur) : xstrdup("");
	_cleanup_free_ char *b_text = spec_to_yaml(next);
	_cleanup_free_ char *a = NULL, *b = NULL, *la = NULL, *lb = NULL, *out = NULL;
	const char *ext = getenv("BANGER_EXTERNAL_DIFF");
	const char *prog = ext && *ext ? ext : "diff";
	struct bg_err err = { 0 };
	int status = 0, r;

	if (strcmp(a_text, b_text) == 0)
		return 0;
	if (write_tmp(tmpdir, "live.yaml", a_text, &a) < 0 ||
	    write_tmp(tmpdir, "merged.yaml", b_text, &b) < 0)
		return -EIO;
	la = xasprintf("--label=vm/%s (spec dir)", name);
	lb = xasprintf("--label=vm/%s (input)", name);
	if (ext && *ext) {
		const char *argv[] = { ext, a, b, NULL };

		r = proc_run_status(argv, 30000, &out, &status, &err);
	} else {
		const char *argv[] = { "diff", "-u", "-N", la, lb, a, b, NULL };

		r = proc_run_status(argv, 30000, &out, &status, &err);
	}
	if (r < 0) {
		cli_error("vm '%s': %s", name, err.msg);
		return -EIO;
	}
	/* diff(1): 0 same, 1 different, anything else trouble (its message is the output). */
	if (status > 1) {
		if (out && *out)
			fputs(out, stderr);
		cli_error("vm '%s': '%s' failed with status %d", name, prog, status);
		return -EIO;
	}
	if (out)
		fputs(out, stdout);
	return status == 1 ? 1 : 0;
}

int cmd_diff(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "filename", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char **inputs = xcalloc((size_t)argc + 1, sizeof(*inputs));
	size_t n_inputs = 0;
	struct spec_set in, dir;
	_cleanup_free_ char *stdin_data = NULL;
	size_t stdin_len = 0;
	char tmpl[] = "/tmp/banger-diff.XXXXXX";
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		if (c == 'f') {
			inputs[n_inputs++] = optarg;
		} else if (c == 'h') {
			usage(stdout);
			free(inputs);
			return 0;
		} else {
			usage(stderr);
			free(inputs);
			return EXIT_ERROR;
		}
	}
	if (n_inputs == 0 || optind < argc) {
		usage(stderr);
		free(inputs);
		return EXIT_ERROR;
	}
	spec_set_init(&in);
	c = cli_load_inputs(&in, inputs, n_inputs, &stdin_data, &stdin_len);
	free(inputs);
	if (c < 0) {
		spec_set_release(&in);
		return EXIT_ERROR;
	}
	if (in.n_diags > 0) {
		cli_print_diags(&in);
		spec_set_release(&in);
		return EXIT_ERROR;
	}
	if (!mkdtemp(tmpl)) {
		cli_error("mkdtemp: %s", strerror(errno));
		spec_set_release(&in);
		return EXIT_ERROR;
	}
	cli_load_spec_dir(ctx, &dir);
	fflush(stdout);
	for (size_t i = 0; i < in.n_specs && rc != EXIT_ERROR; i++) {
		int r = diff_one(tmpl, in.specs[i]->name, spec_set_find(&dir, in.specs[i]->name),
				 in.specs[i]);

		fflush(stdout);
		if (r < 0)
			rc = EXIT_ERROR;
		else if (r > 0)
			rc = EXIT_DIFFERS;
	}
	(void)fs_remove_tree(tmpl, NULL);
	spec_set_release(&dir);
	spec_set_release(&in);
	return rc;
}
