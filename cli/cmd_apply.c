/*
 * cmd_apply.c - banger apply -f PATH|DIR|- [--dry-run] [--wait [--timeout 5m]]
 *
 * Validate every document, then write each into the spec directory: a VM
 * already defined in a file there is updated in place in that file (other
 * documents untouched); a new VM gets <spec dir>/<name>.yaml. Files are
 * replaced atomically. Nothing is written when any input is invalid.
 * Prints kubectl-style "vm/NAME created|configured|unchanged".
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/specfile.h"
#include "cli/util.h"
#include "cli/wait.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define DEFAULT_TIMEOUT_MS (5 * 60 * 1000)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: banger apply -f PATH|DIR|- [-f ...] [--dry-run] [--wait [--timeout 5m]]\n\n"
		"Validate VM specs and write them into the spec directory, where bangerd\n"
		"picks them up. --wait follows each VM until it is Running (its guest\n"
		"answers SSH) or Stopped as its spec says, or fails. --image-dir DIR\n"
		"(repeatable, bangerd's --image-dir) refuses specs whose image, kernel or\n"
		"initrd is not below one of them, before anything is written.\n");
}

/* The text of a document: from the stdin buffer or its file. Owned, or NULL. */
static char *doc_text(const struct vm_spec *s, const char *stdin_data, size_t stdin_len)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;

	if (s->source_file && strcmp(s->source_file, "<stdin>") == 0) {
		if (!stdin_data || s->source_end > stdin_len)
			return NULL;
		return specfile_doc_body(stdin_data + s->source_start,
					 s->source_end - s->source_start);
	}
	if (fs_read_file(s->source_file, SPEC_FILE_MAX, &data, &len, NULL) < 0 ||
	    s->source_end > len || s->source_start > s->source_end)
		return NULL;
	return specfile_doc_body(data + s->source_start, s->source_end - s->source_start);
}

/*
 * For --wait: each VM's failure count BEFORE its spec is written (-1: no
 * record), so an old failure is not taken for the new spec's.
 */
/*
 * A userDataFile is read relative to the spec file that names it. Applied,
 * the document lands in the spec directory: the same name must resolve there
 * too, to the same content, or bangerd would see another spec than the one
 * validated here.
 */
static int check_user_data_file(const char *spec_dir, const struct vm_spec *s, const char *target,
				const char *text, const char *want_hash)
{
	_cleanup_close_ int dir_fd = specfile_dir_open(spec_dir, -1, NULL);
	struct spec_set there;
	char h[SPEC_HASH_LEN + 1];
	int r = 0;

	spec_set_init(&there);
	/* Read beneath the spec dir's fd, as the edit itself will be. */
	if (dir_fd >= 0)
		(void)specfile_parse_at(dir_fd, spec_dir, &there, target, text, strlen(text));
	else
		(void)spec_parse_buffer(&there, target, text, strlen(text));
	if (there.n_diags > 0) {
		_cleanup_free_ char *why = spec_diag_format(&there.diags[0]);

		cli_error("vm '%s': cloudInit.userDataFile '%s' does not resolve from '%s' (%s); "
			  "put the file in the spec directory beside it, or use userData",
			  s->name, s->cloudinit_user_data_file, target, why);
		r = -EINVAL;
	} else if (there.n_specs == 1) {
		spec_hash(there.specs[0], h);
		if (strcmp(h, want_hash) != 0) {
			cli_error("vm '%s': cloudInit.userDataFile '%s' names another file in the "
				  "spec directory (different content) than beside '%s'",
				  s->name, s->cloudinit_user_data_file, s->source_file);
			r = -EINVAL;
		}
	}
	spec_set_release(&there);
	return r;
}

static int read_failures(const struct cli_ctx *ctx, struct wait_target *targets, size_t n)
{
	_cleanup_(store_freep) struct store *s = NULL;

	if (cli_store_open(ctx, &s) < 0)
		return -EIO;
	for (size_t i = 0; i < n; i++) {
		struct vm_record rec = { 0 };
		struct bg_err err = { 0 };
		int r;

		targets[i].failures_before = -1;
		if (!s)
			continue;
		r = store_vm_get_by_name(s, targets[i].name, &rec, &err);
		if (r == -ENOENT)
			continue;
		if (r < 0) {
			cli_error("vm '%s': %s", targets[i].name, err.msg);
			return r;
		}
		targets[i].failures_before = rec.failures;
		vm_record_release(&rec);
	}
	return 0;
}

int cmd_apply(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "filename", required_argument, NULL, 'f' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "wait", no_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "image-dir", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char **inputs = xcalloc((size_t)argc + 1, sizeof(*inputs));
	_cleanup_free_ char **image_dirs = xcalloc((size_t)argc + 1, sizeof(*image_dirs));
	size_t n_inputs = 0, n_image_dirs = 0;
	bool dry_run = false, wait = false;
	int64_t timeout_ms = DEFAULT_TIMEOUT_MS;
	struct spec_set in, dir;
	_cleanup_free_ char *stdin_data = NULL;
	size_t stdin_len = 0;
	struct specfile_edit *edits = NULL;
	char **texts = NULL, **paths = NULL;
	const char **verdict = NULL;
	struct wait_target *targets = NULL;
	size_t n_edits = 0;
	struct bg_err err = { 0 };
	int lock_fd = -1;
	int c, r, rc = CLI_EXIT_OK;

	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			inputs[n_inputs++] = optarg;
			break;
		case 'n':
			dry_run = true;
			break;
		case 'I':
			image_dirs[n_image_dirs++] = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 't':
			if (parse_duration_ms(optarg, &timeout_ms) < 0 || timeout_ms <= 0) {
				cli_error("invalid --timeout '%s' (e.g. 90s, 5m)", optarg);
				free(inputs);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			free(inputs);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			free(inputs);
			return CLI_EXIT_USAGE;
		}
	}
	if (n_inputs == 0 || optind < argc) {
		cli_error(n_inputs == 0 ? "apply needs -f PATH" : "unexpected argument '%s'",
			  optind < argc ? argv[optind] : "");
		usage(stderr);
		free(inputs);
		return CLI_EXIT_USAGE;
	}

	spec_set_init(&in);
	r = cli_load_inputs(&in, inputs, n_inputs, &stdin_data, &stdin_len);
	if (r < 0) {
		rc = r == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
		goto out_in;
	}
	if (in.n_diags > 0) {
		cli_print_diags(&in);
		cli_error("nothing applied: %zu error(s)", in.n_diags);
		rc = CLI_EXIT_FAIL;
		goto out_in;
	}
	r = cli_check_image_paths(&in, image_dirs, n_image_dirs, ctx->state_dir);
	if (r != 0) {
		if (r > 0)
			cli_error("nothing applied: %d error(s)", r);
		rc = r < 0 ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
		goto out_in;
	}
	if (in.n_specs == 0) {
		cli_error("no VM specs found in the input");
		rc = CLI_EXIT_FAIL;
		goto out_in;
	}
	if (!dry_run) {
		/* Held from before the spec dir is read until the edits are written. */
		if (fs_mkdir_p(ctx->spec_dir, 0755, &err) < 0 ||
		    (lock_fd = specfile_lock(ctx->spec_dir, SPECFILE_LOCK_TIMEOUT_MS, &err)) < 0) {
			cli_error("%s", err.msg);
			rc = CLI_EXIT_FAIL;
			goto out_in;
		}
	}
	cli_load_spec_dir(ctx, &dir);

	edits = xcalloc(in.n_specs, sizeof(*edits));
	texts = xcalloc(in.n_specs, sizeof(*texts));
	paths = xcalloc(in.n_specs, sizeof(*paths));
	verdict = xcalloc(in.n_specs, sizeof(*verdict));
	targets = xcalloc(in.n_specs, sizeof(*targets));
	for (size_t i = 0; i < in.n_specs; i++) {
		const struct vm_spec *s = in.specs[i];
		const struct vm_spec *cur = spec_set_find(&dir, s->name);
		char h_new[SPEC_HASH_LEN + 1], h_cur[SPEC_HASH_LEN + 1];

		targets[i].name = s->name;
		targets[i].goal = WAIT_APPLIED;
		targets[i].state = s->state;
		spec_hash(s, h_new);
		memcpy(targets[i].hash, h_new, sizeof(h_new));
		if (spec_set_name_failed(&dir, s->name)) {
			cli_error(
				"vm '%s' is defined in a spec file that fails to load (see 'banger "
				"validate -f %s'); fix that file first",
				s->name, ctx->spec_dir);
			rc = CLI_EXIT_FAIL;
			continue;
		}
		if (cur) {
			spec_hash(cur, h_cur);
			if (strcmp(h_cur, h_new) == 0) {
				verdict[i] = "unchanged";
				continue;
			}
		}
		texts[i] = doc_text(s, stdin_data, stdin_len);
		if (!texts[i]) {
			cli_error("vm '%s': could not read its document back from '%s'", s->name,
				  s->source_file);
			rc = CLI_EXIT_FAIL;
			continue;
		}
		edits[n_edits].name = s->name;
		edits[n_edits].hash = targets[i].hash;
		if (cur) {
			edits[n_edits].file = cur->source_file;
			verdict[i] = "configured";
		} else {
			paths[i] = xasprintf("%s/%s.yaml", ctx->spec_dir, s->name);
			if (fs_exists(paths[i])) {
				/* A <name>.yaml that defines no valid VM of that name. */
				cli_error(
					"'%s' exists but does not define vm '%s'; not overwriting it",
					paths[i], s->name);
				rc = CLI_EXIT_FAIL;
				continue;
			}
			edits[n_edits].file = paths[i];
			edits[n_edits].create = true;
			verdict[i] = "created";
		}
		if (s->cloudinit_user_data_file &&
		    check_user_data_file(ctx->spec_dir, s, edits[n_edits].file, texts[i], h_new) <
			    0) {
			rc = CLI_EXIT_FAIL;
			continue;
		}
		edits[n_edits].text = texts[i];
		n_edits++;
	}
	if (rc == CLI_EXIT_OK && wait && !dry_run && read_failures(ctx, targets, in.n_specs) < 0)
		rc = CLI_EXIT_FAIL;
	if (rc != CLI_EXIT_OK) {
		cli_error("nothing applied");
		goto out;
	}
	if (!dry_run && specfile_apply(ctx->spec_dir, lock_fd, edits, n_edits, &err) < 0) {
		cli_error("%s", err.msg);
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	if (lock_fd >= 0) {
		(void)close(lock_fd); /* written: let the next banger in while we --wait */
		lock_fd = -1;
	}
	for (size_t i = 0; i < in.n_specs; i++)
		printf("vm/%s %s%s\n", in.specs[i]->name, verdict[i], dry_run ? " (dry run)" : "");
	fflush(stdout);
	if (wait && !dry_run)
		rc = cli_wait(ctx, targets, in.n_specs, timeout_ms);
out:
	for (size_t i = 0; i < in.n_specs; i++) {
		free(texts[i]);
		free(paths[i]);
	}
	free(targets);
	free(verdict);
	free(paths);
	free(texts);
	free(edits);
	spec_set_release(&dir);
out_in:
	if (lock_fd >= 0)
		(void)close(lock_fd);
	spec_set_release(&in);
	free(inputs);
	return rc;
}
