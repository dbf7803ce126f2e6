/*
 * cmd_describe.c - banger describe NAME: spec, status and recent events.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "cli/vmview.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "reconciler/host/host.h"
#include "common/xalloc.h"
#include "common/timeutil.h"
#include "reconciler/guest/hostkey.h"
#include "spec/spec.h"

#define EVENTS_SHOWN 20

static void usage(FILE *f)
{
	fprintf(f, "Usage: banger describe NAME\n\nShow a VM's applied spec, its status and its "
		   "recent events.\n");
}

static void field(const char *key, const char *val)
{
	printf("%-20s %s\n", key, val && *val ? val : "-");
}

/* How the guest is configured, and whether banger pinned its host key before it booted. */
static void guest_fields(const struct vm_record *rec, const struct vm_spec *spec)
{
	enum guest_config gc = spec ? spec->guest_config : GUEST_CONFIG_AUTO;
	_cleanup_free_ char *seed = rec->vm_dir ? fs_path_join(rec->vm_dir, "seed.iso") : NULL;
	_cleanup_free_ char *line = NULL;
	struct hostkey k = { 0 };

	field("Guest config:", guest_config_to_string(gc));
	field("Seed disk:", seed && fs_exists(seed) ? seed : NULL);
	if (gc == GUEST_CONFIG_CMDLINE) {
		field("Host key:", "trust on first use (guest.config: cmdline: the guest makes its "
				   "own key; banger pins what it first sees)");
		return;
	}
	if (!rec->vm_dir || hostkey_read_public(rec->vm_dir, &k, NULL) < 0) {
		field("Host key:", "not made yet");
		return;
	}
	line = xasprintf("ssh-ed25519 %s, pinned before the first boot", k.fingerprint);
	field("Host key:", line);
	hostkey_release(&k);
}

/*
 * The DNS name, egress and forwards as the spec asks, then the nftables
 * rules really in place for the VM (read from the kernel, so a flushed
 * ruleset shows as missing until the next resync puts it back).
 */
static void network_fields(struct store *s, const struct vm_record *rec, struct vm_view *v)
{
	_cleanup_free_ char *dns = rec->ip ? xasprintf("%s.vm", rec->name) : NULL;
	_cleanup_free_ char *ports = vm_view_ports(v);
	_cleanup_free_ char *rules = NULL;
	struct daemon_info info = { 0 };
	struct bg_err err = { 0 };

	vm_view_set_daemon(v, 1, s);
	field("DNS name:", dns);
	field("Egress:", vm_view_egress(v));
	field("Ports:", ports);
	field("Network error:", rec->net_error);
	if (!v->handles.tap[0] || store_daemon_get(s, &info, NULL) < 0 || !info.bridge) {
		daemon_info_release(&info);
		return;
	}
	{
		struct host_net net = { .bridge = info.bridge,
					.cidr = info.subnet,
					.nat = info.nat };

		if (host_ops_linux.netrules_show(&net, v->handles.tap, &rules, &err) < 0)
			printf("Rules in place:    cannot read them: %s\n", err.msg);
		else if (!rules || !*rules)
			printf("Rules in place:    none\n");
		else
			printf("Rules in place (nftables, table ip banger-%s):\n%s%s", info.bridge,
			       rules, rules[strlen(rules) - 1] == '\n' ? "" : "\n");
	}
	daemon_info_release(&info);
}

int cmd_describe(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	_cleanup_(store_freep) struct store *s = NULL;
	struct vm_record rec = { 0 };
	struct vm_view v;
	struct vm_event *ev = NULL;
	size_t n_ev = 0;
	struct bg_err err = { 0 };
	char buf[64], ts[40];
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return CLI_EXIT_OK;
		}
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (argc - optind != 1) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (cli_vm_get(ctx, argv[optind], &s, &rec) < 0)
		return CLI_EXIT_FAIL;
	cli_daemon_banner(s);
	vm_view_init(&v, &rec);
	vm_view_measure(&v, 200);
	{
		_cleanup_free_ char *phase = vm_view_phase(&v);

		field("Name:", rec.name);
		field("ID:", rec.id);
		field("Phase:", phase);
	}
	field("Desired state:", vm_desired_state_to_string(rec.desired_state));
	field("Spec file:", rec.source_file);
	snprintf(buf, sizeof(buf), "%lld (observed %lld)", (long long)rec.generation,
		 (long long)rec.observed_generation);
	field("Generation:", buf);
	field("VMM:", rec.vmm);
	snprintf(buf, sizeof(buf), "%d", (int)v.handles.pid);
	field("PID:", v.liveness == VM_LIVENESS_ALIVE ? buf : vm_liveness_to_string(v.liveness));
	if (v.cpu_percent >= 0) {
		snprintf(buf, sizeof(buf), "%.1f%% CPU, %llu MiB RSS", v.cpu_percent,
			 (unsigned long long)(v.rss_bytes >> 20));
		field("Usage:", buf);
	}
	field("IP:", rec.ip);
	field("MAC:", rec.mac);
	field("Tap:", v.handles.tap);
	field("Disk mode:", rec.disk_mode);
	field("Root disk:", rec.cow_disk);
	field("Work disk:", rec.work_disk);
	network_fields(s, &rec, &v);
	guest_fields(&rec, v.spec);
	field("Console log:", rec.console_log);
	snprintf(buf, sizeof(buf), "%d (consecutive failures %d)", rec.restarts, rec.failures);
	field("Restarts:", buf);
	if (rec.backoff_until > now_real_ms())
		field("Backoff until:", format_rfc3339(rec.backoff_until, ts, sizeof(ts)));
	if (rec.step) {
		snprintf(buf, sizeof(buf), "%s / %s", rec.action ? rec.action : "?", rec.step);
		field("In progress:", buf);
	}
	field("Last error:", rec.last_error);
	field("Created:", format_rfc3339(rec.created_at, ts, sizeof(ts)));
	if (v.spec) {
		_cleanup_free_ char *yaml = spec_to_yaml(v.spec);

		printf("\nSpec (as applied):\n%s", yaml);
	}
	if (store_event_list(s, rec.name, EVENTS_SHOWN, &ev, &n_ev, &err) == 0) {
		printf("\nEvents:\n");
		if (n_ev == 0)
			printf("  <none>\n");
		for (size_t i = 0; i < n_ev; i++)
			printf("  %s  %-7s  %-18s %s\n", format_rfc3339(ev[i].time, ts, sizeof(ts)),
			       ev[i].type, ev[i].reason, ev[i].message ? ev[i].message : "");
		vm_event_array_free(ev, n_ev);
	}
	vm_view_release(&v);
	vm_record_release(&rec);
	return CLI_EXIT_OK;
}
