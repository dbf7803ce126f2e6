/*
 * vmview.h - what the CLI shows about one VM: its record joined with what is
 * true now (the VMM process from handles.json, checked with vm_liveness()).
 * Used by status/get, describe and apply --wait.
 */
#ifndef BANGER_CLI_VMVIEW_H
#define BANGER_CLI_VMVIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "reconciler/handles.h"
#include "reconciler/vm.h"
#include "spec/spec.h"

struct cJSON;
struct store;

struct vm_view {
	const struct vm_record *rec; /* borrowed */
	struct vm_spec *spec;	     /* rec->spec_json parsed, owned; NULL if unparsable */
	struct vm_handles handles;
	enum vm_liveness liveness;
	bool unconfirmed;   /* recorded up, but its VMM is not running */
	double cpu_percent; /* -1: not measured */
	bool cpu_lifetime;  /* cpu_percent is the average since the VMM started, not a sample */
	uint64_t rss_bytes; /* 0: not measured */
	bool default_nat;   /* bangerd's --nat: the egress of a spec that does not say */
};

/* Fill a view of rec (handles read from its vm dir). */
void vm_view_init(struct vm_view *v, const struct vm_record *rec);
void vm_view_release(struct vm_view *v);

/*
 * Measure each running VMM's CPU% and RSS. With sample_ms > 0, CPU% over one
 * common window of sample_ms (one sleep for all n views, not one per VM;
 * describe). With sample_ms <= 0, without waiting: its average since it
 * started (utime + stime over its age) and its RSS from one read of
 * /proc/<pid>/stat each (status, which must stay fast with 1,000 VMs);
 * cpu_lifetime says so. Views whose VMM is not alive are left unmeasured.
 * Sleeps only when sampling and at least one is alive.
 */
void vm_view_measure_all(struct vm_view *views, size_t n, int sample_ms);

/* vm_view_measure_all() for one view. */
void vm_view_measure(struct vm_view *v, int sample_ms);

/* The stable JSON object for one VM (documented in README "JSON output"). Owned. */
struct cJSON *vm_view_json(const struct vm_view *v);

/* The VM's egress as applied: "nat" or "none" (the spec's, else bangerd's default). */
const char *vm_view_egress(const struct vm_view *v);

/* Its forwards, "127.0.0.1:8080->80/tcp,0.0.0.0:53->53/udp", or "-" for none. Owned. */
char *vm_view_ports(const struct vm_view *v);

/* Set default_nat of n views from the daemon row (false when there is none). */
void vm_view_set_daemon(struct vm_view *views, size_t n, struct store *s);

/* "Running", or "Running*" when unconfirmed. Owned. */
char *vm_view_phase(const struct vm_view *v);

#endif
