/*
 * cmd_status.c - banger status|get [NAME...] [-o table|wide|json|yaml]
 *
 * What is true now: each VM's recorded phase checked against its VMM process
 * (a phase the process no longer backs is marked '*'), a banner when bangerd
 * is not running, and the spec errors bangerd last saw.
 */
#include <cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "cli/vmview.h"
#include "common/cleanup.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

static void usage(FILE *f, const char *verb)
{
	fprintf(f,
		"Usage: banger %s [NAME...] [-o table|wide|json|yaml]\n\n"
		"Show VMs as bangerd last observed them, checked against their processes.\n"
		"A phase marked '*' is recorded but not backed by a running VMM (bangerd will\n"
		"notice on its next pass). -o wide adds vcpus, memory, AVGCPU%% (the VMM's CPU\n"
		"averaged over its life, not a recent sample: see 'banger describe'), RSS, disk\n"
		"mode, tap, id, the DNS name, egress and port forwards.\n",
		verb);
}

static bool wanted(const char *name, char **names, int n)
{
	if (n == 0)
		return true;
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

static void print_table(struct vm_view *views, size_t n, bool wide)
{
	static const char *const cols[] = { "NAME", "PHASE", "DESIRED", "IP",
					    "VMM",  "PID",   "AGE",	"RESTARTS" };
	static const char *const wide_cols[] = { "VCPUS", "MEMORY", "AVGCPU%", "RSS",	 "DISK",
						 "TAP",	  "ID",	    "DNS",     "EGRESS", "PORTS" };
	size_t nc = ARRAY_SIZE(cols) + (wide ? ARRAY_SIZE(wide_cols) : 0) + 1;
	struct cli_table t;
	const char *hdr[ARRAY_SIZE(cols) + ARRAY_SIZE(wide_cols) + 1];
	bool any_unconfirmed = false;
	size_t h = 0;

	cli_table_init(&t, nc);
	for (size_t i = 0; i < ARRAY_SIZE(cols); i++)
		hdr[h++] = cols[i];
	for (size_t i = 0; wide && i < ARRAY_SIZE(wide_cols); i++)
		hdr[h++] = wide_cols[i];
	hdr[h++] = "ERROR"; /* last, so a long message does not push columns around */
	cli_table_add(&t, hdr);
	for (size_t i = 0; i < n; i++) {
		const struct vm_view *v = &views[i];
		const struct vm_record *rec = v->rec;
		_cleanup_free_ char *phase = vm_view_phase(v);
		char pid[16], age[16], restarts[16], vcpus[16], mem[24], cpu[24], rss[32];
		char err[72];
		const char *row[ARRAY_SIZE(cols) + ARRAY_SIZE(wide_cols) + 1];
		/* A failed action first; else what keeps its network from being whole. */
		const char *why = rec->last_error ? rec->last_error : rec->net_error;
		_cleanup_free_ char *dns = rec->ip ? xasprintf("%s.vm", rec->name) : xstrdup("-");
		_cleanup_free_ char *ports = vm_view_ports(v);
		size_t k = 0;

		any_unconfirmed |= v->unconfirmed;
		snprintf(pid, sizeof(pid), "%d", (int)v->handles.pid);
		format_age(now_real_ms() - rec->created_at, age, sizeof(age));
		snprintf(restarts, sizeof(restarts), "%d", rec->restarts);
		snprintf(err, sizeof(err), "%.60s%s", why ? why : "",
			 why && strlen(why) > 60 ? "..." : "");
		row[k++] = rec->name;
		row[k++] = phase;
		row[k++] = vm_desired_state_to_string(rec->desired_state);
		row[k++] = rec->ip ? rec->ip : "-";
		row[k++] = rec->vmm ? rec->vmm : "-";
		row[k++] = v->liveness == VM_LIVENESS_ALIVE ? pid : "-";
		row[k++] = age;
		row[k++] = restarts;
		if (wide) {
			snprintf(vcpus, sizeof(vcpus), "%u", v->spec ? v->spec->vcpus : 0);
			snprintf(mem, sizeof(mem), "%uMi", v->spec ? v->spec->memory_mib : 0);
			if (v->cpu_percent >= 0)
				snprintf(cpu, sizeof(cpu), "%.1f", v->cpu_percent);
			else
				snprintf(cpu, sizeof(cpu), "-");
			if (v->rss_bytes)
				snprintf(rss, sizeof(rss), "%lluMi",
					 (unsigned long long)(v->rss_bytes >> 20));
			else
				snprintf(rss, sizeof(rss), "-");
			row[k++] = vcpus;
			row[k++] = mem;
			row[k++] = cpu;
			row[k++] = rss;
			row[k++] = rec->disk_mode ? rec->disk_mode : "-";
			row[k++] = v->handles.tap[0] ? v->handles.tap : "-";
			row[k++] = rec->id;
			row[k++] = dns;
			row[k++] = vm_view_egress(v);
			row[k++] = ports;
		}
		row[k++] = err[0] ? err : "-";
		cli_table_add(&t, row);
	}
	if (n == 0)
		printf("No VMs.\n");
	else
		cli_table_print(stdout, &t);
	cli_table_release(&t);
	if (any_unconfirmed)
		printf("* recorded as up, but its VMM process is not running\n");
}

static void print_spec_errors(struct store *s)
{
	struct daemon_info info = { 0 };

	if (!s || store_daemon_get(s, &info, NULL) < 0)
		return;
	if (info.spec_errors && *info.spec_errors)
		fprintf(stderr,
			"\nSpec errors (these files are not applied; their VMs keep their "
			"last good spec):\n%s\n",
			info.spec_errors);
	daemon_info_release(&info);
}

static int run(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	enum cli_output out = CLI_OUTPUT_TABLE;
	_cleanup_(store_freep) struct store *s = NULL;
	struct vm_record *recs = NULL;
	struct vm_view *views = NULL;
	size_t n = 0, nv = 0;
	struct bg_err err = { 0 };
	int c, r, rc = CLI_EXIT_OK;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			r = cli_output_parse(optarg);
			if (r < 0) {
				cli_error("unknown output format '%s' (table, wide, json, yaml)",
					  optarg);
				return CLI_EXIT_USAGE;
			}
			out = (enum cli_output)r;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return CLI_EXIT_OK;
		default:
			usage(stderr, argv[0]);
			return CLI_EXIT_USAGE;
		}
	}
	if (cli_store_open(ctx, &s) < 0)
		return CLI_EXIT_FAIL;
	/* One snapshot for the list and the daemon row (banner, NAT default, spec errors). */
	if (s && (store_read_begin(s, &err) < 0 || store_vm_list(s, &recs, &n, &err) < 0)) {
		cli_error("%s", err.msg);
		return CLI_EXIT_FAIL;
	}
	cli_daemon_banner(s);
	views = xcalloc(n + 1, sizeof(*views));
	for (size_t i = 0; i < n; i++) {
		if (!wanted(recs[i].name, argv + optind, argc - optind))
			continue;
		vm_view_init(&views[nv], &recs[i]);
		nv++;
	}
	for (int i = optind; i < argc; i++) {
		bool found = false;

		for (size_t k = 0; k < nv; k++)
			found |= strcmp(views[k].rec->name, argv[i]) == 0;
		if (!found) {
			cli_error("vm '%s' not found", argv[i]);
			rc = CLI_EXIT_FAIL;
		}
	}
	vm_view_set_daemon(views, nv, s);
	/*
	 * CPU% as averaged over each VMM's life, read with its RSS from the
	 * /proc/<pid>/stat read: no sampling window, so 1,000 VMs cost 1,000
	 * reads and no sleep. describe samples one VM for a recent figure.
	 */
	if (out == CLI_OUTPUT_WIDE || out == CLI_OUTPUT_JSON || out == CLI_OUTPUT_YAML)
		vm_view_measure_all(views, nv, 0);

	if (out == CLI_OUTPUT_JSON || out == CLI_OUTPUT_YAML) {
		cJSON *doc;

		/* One object for one named VM, a list otherwise (kubectl-style). */
		if (argc - optind == 1 && nv == 1) {
			doc = vm_view_json(&views[0]);
		} else {
			cJSON *items;

			doc = cJSON_CreateObject();
			cJSON_AddStringToObject(doc, "apiVersion", "banger/v1");
			cJSON_AddStringToObject(doc, "kind", "VMList");
			items = cJSON_AddArrayToObject(doc, "items");
			for (size_t i = 0; i < nv; i++)
				cJSON_AddItemToArray(items, vm_view_json(&views[i]));
		}
		if (out == CLI_OUTPUT_JSON)
			cli_print_json(stdout, doc);
		else
			cli_print_yaml(stdout, doc);
		cJSON_Delete(doc);
	} else {
		print_table(views, nv, out == CLI_OUTPUT_WIDE);
		print_spec_errors(s);
	}
	if (s)
		store_read_end(s);
	for (size_t i = 0; i < nv; i++)
		vm_view_release(&views[i]);
	free(views);
	vm_record_array_free(recs, n);
	return rc;
}

int cmd_status(const struct cli_ctx *ctx, int argc, char **argv)
{
	return run(ctx, argc, argv);
}
