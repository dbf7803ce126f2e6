/*
 * vm.c - names of the VM vocabulary and record memory management; see vm.h.
 */
#include "reconciler/vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static const char *const phase_names[VM_PHASE_MAX] = {
	[VM_PHASE_PENDING] = "Pending",	  [VM_PHASE_CREATING] = "Creating",
	[VM_PHASE_STARTING] = "Starting", [VM_PHASE_RUNNING] = "Running",
	[VM_PHASE_STOPPING] = "Stopping", [VM_PHASE_STOPPED] = "Stopped",
	[VM_PHASE_FAILED] = "Failed",	  [VM_PHASE_DELETING] = "Deleting",
};

static const char *const liveness_names[VM_LIVENESS_MAX] = {
	[VM_LIVENESS_NONE] = "none",
	[VM_LIVENESS_ALIVE] = "alive",
	[VM_LIVENESS_DEAD] = "dead",
	[VM_LIVENESS_REUSED] = "pid-reused",
};

const char *vm_phase_to_string(enum vm_phase p)
{
	return (unsigned)p < VM_PHASE_MAX ? phase_names[p] : NULL;
}

int vm_phase_from_string(const char *s)
{
	for (int i = 0; s && i < VM_PHASE_MAX; i++)
		if (strcmp(s, phase_names[i]) == 0)
			return i;
	return -EINVAL;
}

const char *vm_liveness_to_string(enum vm_liveness l)
{
	return (unsigned)l < VM_LIVENESS_MAX ? liveness_names[l] : NULL;
}

void vm_record_release(struct vm_record *rec)
{
	if (!rec)
		return;
	free(rec->name);
	free(rec->source_file);
	free(rec->spec_json);
	free(rec->ip);
	free(rec->vmm);
	free(rec->disk_mode);
	free(rec->vm_dir);
	free(rec->api_sock);
	free(rec->console_log);
	free(rec->cow_disk);
	free(rec->work_disk);
	free(rec->last_error);
	free(rec->net_error);
	free(rec->action);
	free(rec->step);
	memset(rec, 0, sizeof(*rec));
}

void vm_record_array_free(struct vm_record *recs, size_t n)
{
	for (size_t i = 0; recs && i < n; i++)
		vm_record_release(&recs[i]);
	free(recs);
}

void vm_record_copy(struct vm_record *dst, const struct vm_record *src)
{
	*dst = *src;
	dst->name = xstrdup_null(src->name);
	dst->source_file = xstrdup_null(src->source_file);
	dst->spec_json = xstrdup_null(src->spec_json);
	dst->ip = xstrdup_null(src->ip);
	dst->vmm = xstrdup_null(src->vmm);
	dst->disk_mode = xstrdup_null(src->disk_mode);
	dst->vm_dir = xstrdup_null(src->vm_dir);
	dst->api_sock = xstrdup_null(src->api_sock);
	dst->console_log = xstrdup_null(src->console_log);
	dst->cow_disk = xstrdup_null(src->cow_disk);
	dst->work_disk = xstrdup_null(src->work_disk);
	dst->last_error = xstrdup_null(src->last_error);
	dst->net_error = xstrdup_null(src->net_error);
	dst->action = xstrdup_null(src->action);
	dst->step = xstrdup_null(src->step);
}
