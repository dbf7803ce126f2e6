/*
 * cmd_gc.c - banger gc [--dry-run]: find and remove what banger leaked.
 *
 * Lists kernel objects and files that carry banger's names (taps bg<id>, dm
 * devices banger-<id>, loop devices over files in <state>/vms/, VM dirs) but
 * belong to no VM in the store, and removes them unless --dry-run. The host
 * is scanned BEFORE the store is read, so an object created by a VM that
 * bangerd records meanwhile is never taken for a leak.
 *
 * Taps and dm devices are named host-wide, and other banger instances (other
 * state dirs) make the same kind of names: only what is tied to this
 * instance is removed (a tap on no bridge or on the bridge bangerd recorded
 * in this state dir; a dm device over files of this state dir). Others are
 * listed as skipped.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "reconciler/host/host.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: banger gc [--dry-run]\n\nRemove taps, tap filters, device-mapper devices, loop "
		"devices, VM directories and base-image caches (qcow2 images converted to "
		"raw) that belong to no VM.\n");
}

/* The id inside an orphan's name: bg<id>, banger-<id>, .../vms/<id>[/...]. */
static bool orphan_has_id(const struct host_orphan *o, const char *id)
{
	return strstr(o->name, id) || strstr(o->detail, id);
}

/* Why o is left alone, on stdout with the list. */
static void print_skipped(const struct host_orphan *o, const char *bridge, const char *state_dir)
{
	const char *kind = host_orphan_kind_to_string(o->kind);

	if (o->kind == HOST_ORPHAN_TAP && bridge)
		printf("skipped %s %s: enslaved to bridge '%s', not to this instance's '%s'\n",
		       kind, o->name, o->master, bridge);
	else if (o->kind == HOST_ORPHAN_TAP)
		printf("skipped %s %s: enslaved to bridge '%s', and no bangerd has recorded "
		       "its bridge in '%s'\n",
		       kind, o->name, o->master, state_dir);
	else if (o->kind == HOST_ORPHAN_FILTER || o->kind == HOST_ORPHAN_NETRULES)
		printf("skipped %s %s: in the table of bridge '%s', not of this instance's '%s'\n",
		       kind, o->name, o->master, bridge ? bridge : "(none recorded)");
	else
		printf("skipped %s %s: nothing ties it to '%s'\n", kind, o->name, state_dir);
}

int cmd_gc(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	_cleanup_(store_freep) struct store *s = NULL;
	struct host_orphan *orphans = NULL;
	struct vm_record *recs = NULL;
	struct daemon_info info = { 0 };
	size_t n_orphans = 0, n_recs = 0, found = 0, removed = 0, skipped = 0;
	bool dry_run = false;
	struct bg_err err = { 0 };
	int c, rc = CLI_EXIT_OK;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'n') {
			dry_run = true;
		} else if (c == 'h') {
			usage(stdout);
			return CLI_EXIT_OK;
		} else {
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (host_ops_linux.gc_scan(ctx->state_dir, NULL, 0, &orphans, &n_orphans, &err) < 0) {
		cli_error("%s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (cli_store_open(ctx, &s) < 0) {
		free(orphans);
		return CLI_EXIT_FAIL;
	}
	if (s && store_vm_list(s, &recs, &n_recs, &err) < 0) {
		cli_error("%s", err.msg);
		free(orphans);
		return CLI_EXIT_FAIL;
	}
	/* The bridge this instance's taps are on; none when no bangerd ran here. */
	if (s && store_daemon_get(s, &info, NULL) < 0)
		memset(&info, 0, sizeof(info));
	for (size_t i = 0; i < n_orphans; i++) {
		const struct host_orphan *o = &orphans[i];
		bool known = false;

		for (size_t k = 0; k < n_recs && !known; k++)
			known = orphan_has_id(o, recs[k].id);
		if (known)
			continue;
		if (!host_orphan_is_ours(o, info.bridge)) {
			skipped++;
			print_skipped(o, info.bridge, ctx->state_dir);
			continue;
		}
		found++;
		printf("%s %s%s%s%s\n", host_orphan_kind_to_string(o->kind), o->name,
		       o->detail[0] ? " (" : "", o->detail, o->detail[0] ? ")" : "");
		if (dry_run)
			continue;
		bg_err_clear(&err);
		if (host_ops_linux.gc_remove(o, &err) < 0) {
			cli_error("%s", err.msg);
			rc = CLI_EXIT_FAIL;
		} else {
			removed++;
		}
	}
	if (dry_run)
		printf("%zu leaked object(s) found (dry run: nothing removed)", found);
	else
		printf("%zu leaked object(s) found, %zu removed", found, removed);
	if (skipped)
		printf("; %zu skipped (another banger instance's?)", skipped);
	printf("\n");
	daemon_info_release(&info);
	vm_record_array_free(recs, n_recs);
	free(orphans);
	return rc;
}
