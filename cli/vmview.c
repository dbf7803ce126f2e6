/*
 * vmview.c - one VM as the CLI shows it; see vmview.h.
 */
#include "cli/vmview.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/store.h"

void vm_view_init(struct vm_view *v, const struct vm_record *rec)
{
	memset(v, 0, sizeof(*v));
	v->rec = rec;
	v->cpu_percent = -1;
	if (rec->spec_json)
		(void)spec_from_json(rec->spec_json, &v->spec, NULL);
	if (rec->vm_dir && handles_load(rec->vm_dir, &v->handles, NULL) < 0)
		memset(&v->handles, 0, sizeof(v->handles));
	v->liveness = vm_liveness(&v->handles);
	v->unconfirmed = (rec->phase == VM_PHASE_STARTING || rec->phase == VM_PHASE_RUNNING) &&
			 v->liveness != VM_LIVENESS_ALIVE;
}

void vm_view_release(struct vm_view *v)
{
	vm_spec_free(v->spec);
	memset(v, 0, sizeof(*v));
}

/* utime + stime of pid in clock ticks, or -1. */
static long long cpu_ticks(pid_t pid)
{
	struct proc_stat st;

	return proc_stat_read(pid, &st) < 0 ? -1 : (long long)(st.utime + st.stime);
}

static uint64_t rss_bytes(pid_t pid)
{
	struct proc_stat st;

	return proc_stat_read(pid, &st) < 0 ? 0 : st.rss_pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/*
 * CPU% averaged over the VMM's life and its RSS, from one read of
 * /proc/<pid>/stat: nothing to wait for, one read per running VM.
 */
static void measure_lifetime(struct vm_view *v, double now_ticks, long page)
{
	struct proc_stat st;
	double age;

	/* Another process by now (vm_liveness() was a moment ago): leave it unmeasured. */
	if (proc_stat_read(v->handles.pid, &st) < 0 || st.start_time != v->handles.start_time)
		return;
	/* Both in clock ticks since boot; younger than a tick: no meaningful average yet. */
	age = now_ticks - (double)st.start_time;
	v->cpu_percent = age >= 1 ? (double)(st.utime + st.stime) * 100.0 / age : 0;
	v->cpu_lifetime = true;
	v->rss_bytes = st.rss_pages * (uint64_t)page;
}

void vm_view_measure_all(struct vm_view *views, size_t n, int sample_ms)
{
	long long *t0;
	bool any = false;
	int64_t start = 0, took;

	if (sample_ms <= 0) {
		long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
		struct timespec ts;
		double now_ticks;

		/* CLOCK_BOOTTIME is the clock of /proc/<pid>/stat's start time. */
		if (hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
			return;
		now_ticks = ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9) * (double)hz;
		for (size_t i = 0; i < n; i++)
			if (views[i].liveness == VM_LIVENESS_ALIVE)
				measure_lifetime(&views[i], now_ticks, page);
		return;
	}
	t0 = xcalloc(n + 1, sizeof(*t0));
	for (size_t i = 0; i < n; i++) {
		t0[i] = -1;
		if (views[i].liveness != VM_LIVENESS_ALIVE)
			continue;
		if (!any)
			start = now_mono_ms();
		any = true;
		t0[i] = cpu_ticks(views[i].handles.pid);
	}
	if (!any) {
		free(t0);
		return;
	}
	sleep_ms(sample_ms);
	/* The window actually measured (reading /proc for many VMs takes time too). */
	took = now_mono_ms() - start;
	if (took < sample_ms)
		took = sample_ms;
	for (size_t i = 0; i < n; i++) {
		struct vm_view *v = &views[i];
		long long t1;

		if (v->liveness != VM_LIVENESS_ALIVE)
			continue;
		t1 = cpu_ticks(v->handles.pid);
		if (t0[i] >= 0 && t1 >= t0[i] && took > 0)
			v->cpu_percent = (double)(t1 - t0[i]) * 100.0 /
					 (double)sysconf(_SC_CLK_TCK) / ((double)took / 1000.0);
		v->rss_bytes = rss_bytes(v->handles.pid);
	}
	free(t0);
}

void vm_view_measure(struct vm_view *v, int sample_ms)
{
	vm_view_measure_all(v, 1, sample_ms);
}

const char *vm_view_egress(const struct vm_view *v)
{
	if (v->spec && v->spec->egress != SPEC_EGRESS_DEFAULT)
		return spec_egress_to_string(v->spec->egress);
	return v->default_nat ? "nat" : "none";
}

char *vm_view_ports(const struct vm_view *v)
{
	struct buf b;

	if (!v->spec || !v->spec->n_ports)
		return xstrdup("-");
	buf_init(&b);
	for (size_t i = 0; i < v->spec->n_ports; i++) {
		const struct spec_port *p = &v->spec->ports[i];

		buf_addf(&b, "%s%s:%u->%u/%s", i ? "," : "", p->host_ip, p->host_port,
			 p->guest_port, spec_proto_to_string(p->protocol));
	}
	return buf_detach(&b, NULL);
}

void vm_view_set_daemon(struct vm_view *views, size_t n, struct store *s)
{
	struct daemon_info info = { 0 };
	bool nat = false;

	if (s && store_daemon_get(s, &info, NULL) == 0) {
		nat = info.nat;
		daemon_info_release(&info);
	}
	for (size_t i = 0; i < n; i++)
		views[i].default_nat = nat;
}

char *vm_view_phase(const struct vm_view *v)
{
	return xasprintf("%s%s", vm_phase_to_string(v->rec->phase), v->unconfirmed ? "*" : "");
}

static void add_str(cJSON *o, const char *key, const char *val)
{
	if (val)
		cJSON_AddStringToObject(o, key, val);
	else
		cJSON_AddNullToObject(o, key);
}

cJSON *vm_view_json(const struct vm_view *v)
{
	const struct vm_record *rec = v->rec;
	cJSON *o = cJSON_CreateObject();
	cJSON *labels = cJSON_CreateObject();
	char ts[40];

	cJSON_AddStringToObject(o, "name", rec->name);
	cJSON_AddStringToObject(o, "id", rec->id);
	cJSON_AddStringToObject(o, "phase", vm_phase_to_string(rec->phase));
	cJSON_AddBoolToObject(o, "confirmed", !v->unconfirmed);
	cJSON_AddStringToObject(o, "desiredState", vm_desired_state_to_string(rec->desired_state));
	add_str(o, "ip", rec->ip);
	add_str(o, "mac", rec->mac[0] ? rec->mac : NULL);
	add_str(o, "vmm", rec->vmm);
	if (v->liveness == VM_LIVENESS_ALIVE)
		cJSON_AddNumberToObject(o, "pid", v->handles.pid);
	else
		cJSON_AddNullToObject(o, "pid");
	cJSON_AddNumberToObject(o, "restarts", rec->restarts);
	add_str(o, "lastError", rec->last_error);
	cJSON_AddNumberToObject(o, "generation", (double)rec->generation);
	cJSON_AddNumberToObject(o, "observedGeneration", (double)rec->observed_generation);
	add_str(o, "diskMode", rec->disk_mode);
	add_str(o, "tap", v->handles.tap[0] ? v->handles.tap : NULL);
	{
		/* The name bangerd's DNS answers for, once the VM has an address. */
		_cleanup_free_ char *dns = rec->ip ? xasprintf("%s.vm", rec->name) : NULL;
		cJSON *ports = cJSON_AddArrayToObject(o, "ports");

		add_str(o, "dnsName", dns);
		cJSON_AddStringToObject(o, "egress", vm_view_egress(v));
		for (size_t i = 0; v->spec && i < v->spec->n_ports; i++) {
			const struct spec_port *p = &v->spec->ports[i];
			cJSON *e = cJSON_CreateObject();

			cJSON_AddStringToObject(e, "hostIP", p->host_ip);
			cJSON_AddNumberToObject(e, "hostPort", p->host_port);
			cJSON_AddNumberToObject(e, "guestPort", p->guest_port);
			cJSON_AddStringToObject(e, "protocol", spec_proto_to_string(p->protocol));
			cJSON_AddItemToArray(ports, e);
		}
		add_str(o, "netError", rec->net_error);
	}
	{
		/* A stop in progress: how far it has escalated, and until when that waits. */
		static const char *const stages[] = { NULL, "graceful", "term", "kill" };
		const char *stage = (unsigned)rec->stop_stage < ARRAY_SIZE(stages)
					    ? stages[rec->stop_stage]
					    : NULL;

		add_str(o, "stopStage", stage);
		if (stage)
			cJSON_AddNumberToObject(o, "stopDeadline", (double)rec->stop_deadline);
		else
			cJSON_AddNullToObject(o, "stopDeadline");
	}
	if (v->spec) {
		cJSON_AddNumberToObject(o, "vcpus", v->spec->vcpus);
		cJSON_AddNumberToObject(o, "memoryMiB", v->spec->memory_mib);
		for (size_t i = 0; i < v->spec->n_labels; i++)
			cJSON_AddStringToObject(labels, v->spec->labels[i].key,
						v->spec->labels[i].value);
	}
	cJSON_AddItemToObject(o, "labels", labels);
	add_str(o, "specFile", rec->source_file);
	cJSON_AddStringToObject(o, "createdAt", format_rfc3339(rec->created_at, ts, sizeof(ts)));
	if (rec->running_since)
		cJSON_AddStringToObject(o, "runningSince",
					format_rfc3339(rec->running_since, ts, sizeof(ts)));
	else
		cJSON_AddNullToObject(o, "runningSince");
	if (rec->action && rec->step) {
		cJSON *s = cJSON_AddObjectToObject(o, "inProgress");

		cJSON_AddStringToObject(s, "action", rec->action);
		cJSON_AddStringToObject(s, "step", rec->step);
	} else {
		cJSON_AddNullToObject(o, "inProgress");
	}
	/* Named for what it is: a lifetime average is not a recent sample. */
	if (v->cpu_percent >= 0)
		cJSON_AddNumberToObject(o, v->cpu_lifetime ? "cpuPercentAvg" : "cpuPercent",
					(double)(int)(v->cpu_percent * 10) / 10);
	if (v->rss_bytes)
		cJSON_AddNumberToObject(o, "rssBytes", (double)v->rss_bytes);
	return o;
}
