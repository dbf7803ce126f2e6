/*
 * cmd_delete.c - banger delete NAME... | -f PATH [--wait [--timeout 5m]]
 *
 * Remove VMs' documents from the spec directory (the file itself when it held
 * only that VM); bangerd then tears the VMs down and removes their pins.
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
	fprintf(f, "Usage: banger delete NAME... | -f PATH|DIR|- [--wait [--timeout 5m]]\n\n"
		   "Remove VMs from the spec directory; bangerd stops them and removes their\n"
		   "disks, tap, address lease and known_hosts pins. --wait follows until they\n"
		   "are gone.\n");
}

/* Add name to names unless it is there already (a VM is deleted once). */
static void add_name(const char **names, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(names[i], name) == 0)
			return;
	names[(*n)++] = name;
}

int cmd_delete(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "filename", required_argument, NULL, 'f' },
		{ "wait", no_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char **inputs = xcalloc((size_t)argc + 1, sizeof(*inputs));
	const char **names = NULL;
	size_t n_inputs = 0, n_names = 0;
	bool wait = false;
	int64_t timeout_ms = DEFAULT_TIMEOUT_MS;
	struct spec_set in, dir;
	_cleanup_free_ char *stdin_data = NULL;
	size_t stdin_len = 0;
	struct specfile_edit *edits = NULL;
	struct wait_target *targets = NULL;
	bool *found = NULL;
	size_t n_edits = 0;
	int lock_fd = -1;
	struct bg_err err = { 0 };
	int c, rc = CLI_EXIT_OK;

	spec_set_init(&in);
	spec_set_init(&dir);
	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			inputs[n_inputs++] = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 't':
			if (parse_duration_ms(optarg, &timeout_ms) < 0 || timeout_ms <= 0) {
				cli_error("invalid --timeout '%s'", optarg);
				rc = CLI_EXIT_USAGE;
				goto out;
			}
			break;
		case 'h':
			usage(stdout);
			goto out;
		default:
			usage(stderr);
			rc = CLI_EXIT_USAGE;
			goto out;
		}
	}
	if (n_inputs > 0) {
		int r = cli_load_inputs(&in, inputs, n_inputs, &stdin_data, &stdin_len);

		if (r < 0) {
			rc = r == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
			goto out;
		}
		if (in.n_diags > 0) {
			cli_print_diags(&in);
			rc = CLI_EXIT_FAIL;
			goto out;
		}
	}
	/* One slot per name given, however many documents each -f file holds. */
	names = xcalloc((size_t)(argc - optind) + in.n_specs + 1, sizeof(*names));
	for (int i = optind; i < argc; i++)
		add_name(names, &n_names, argv[i]);
	for (size_t i = 0; i < in.n_specs; i++)
		add_name(names, &n_names, in.specs[i]->name);
	if (n_names == 0) {
		cli_error("delete needs VM names or -f PATH");
		usage(stderr);
		rc = CLI_EXIT_USAGE;
		goto out;
	}

	/* Held from before the spec dir is read until the edits are written. */
	if (fs_exists(ctx->spec_dir)) {
		lock_fd = specfile_lock(ctx->spec_dir, SPECFILE_LOCK_TIMEOUT_MS, &err);
		if (lock_fd < 0) {
			cli_error("%s", err.msg);
			rc = CLI_EXIT_FAIL;
			goto out;
		}
	}
	spec_set_release(&dir);
	cli_load_spec_dir(ctx, &dir);
	edits = xcalloc(n_names, sizeof(*edits));
	targets = xcalloc(n_names, sizeof(*targets));
	found = xcalloc(n_names, sizeof(*found));
	for (size_t i = 0; i < n_names; i++) {
		const struct vm_spec *cur = spec_set_find(&dir, names[i]);

		targets[i].name = names[i];
		targets[i].goal = WAIT_GONE;
		if (spec_set_name_failed(&dir, names[i])) {
			cli_error("vm '%s' is defined in a spec file that fails to load; fix or "
				  "remove that file",
				  names[i]);
			rc = CLI_EXIT_FAIL;
			continue;
		}
		if (!cur) {
			cli_error("vm '%s' not found in '%s'", names[i], ctx->spec_dir);
			rc = CLI_EXIT_FAIL;
			continue;
		}
		edits[n_edits].name = names[i];
		edits[n_edits].file = cur->source_file;
		edits[n_edits].text = NULL;
		n_edits++;
		found[i] = true;
	}
	if (n_edits > 0 && specfile_apply(ctx->spec_dir, lock_fd, edits, n_edits, &err) < 0) {
		cli_error("%s", err.msg);
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	if (lock_fd >= 0) {
		(void)close(lock_fd); /* written: let the next banger in while we --wait */
		lock_fd = -1;
	}
	for (size_t i = 0; i < n_names; i++)
		if (found[i])
			printf("vm/%s deleted\n", names[i]);
	fflush(stdout);
	if (wait && rc == CLI_EXIT_OK)
		rc = cli_wait(ctx, targets, n_names, timeout_ms);
out:
	if (lock_fd >= 0)
		(void)close(lock_fd);
	free(found);
	free(targets);
	free(edits);
	spec_set_release(&dir);
	spec_set_release(&in);
	free(names);
	free(inputs);
	return rc;
}
