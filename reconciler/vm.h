/*
 * vm.h - what the reconciler knows about one VM: its durable record (a row of
 * the 'vms' table) and the vocabulary shared by store, handles, plan and
 * converge. Data only; no behaviour beyond enum names and freeing.
 */
#ifndef BANGER_RECONCILER_VM_H
#define BANGER_RECONCILER_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec/spec.h"

#define VM_ID_LEN 8 /* hex chars */

/* The phase a VM is in, as shown by 'banger status' (kubectl-style names). */
enum vm_phase {
	VM_PHASE_PENDING,  /* recorded, nothing created yet */
	VM_PHASE_CREATING, /* host resources being created */
	VM_PHASE_STARTING, /* VMM launched, guest not answering SSH yet */
	VM_PHASE_RUNNING,  /* VMM alive and the guest answered */
	VM_PHASE_STOPPING,
	VM_PHASE_STOPPED,
	VM_PHASE_FAILED,   /* last converge or the VMM failed; see last_error */
	VM_PHASE_DELETING, /* tombstone: teardown in progress */
	VM_PHASE_MAX
};

/* "Pending", "Running", ...; NULL when out of range. */
const char *vm_phase_to_string(enum vm_phase p);
/* The phase, or -EINVAL. */
int vm_phase_from_string(const char *s);

/* What the OS says about a VM's VMM process (see handles.h, vm_liveness()). */
enum vm_liveness {
	VM_LIVENESS_NONE,   /* no process recorded or found */
	VM_LIVENESS_ALIVE,  /* the recorded pid runs and its start time matches */
	VM_LIVENESS_DEAD,   /* the recorded process is gone */
	VM_LIVENESS_REUSED, /* the pid runs but is another process (start time differs) */
	VM_LIVENESS_MAX
};

const char *vm_liveness_to_string(enum vm_liveness l);

/* How far a stop has gone: each stage waits for the VMM to exit until its deadline. */
enum vm_stop_stage {
	VM_STOP_NONE,
	VM_STOP_GRACEFUL, /* the guest was asked to shut down (Ctrl-Alt-Del, ACPI) */
	VM_STOP_TERM,	  /* the VMM got SIGTERM */
	VM_STOP_KILL,	  /* the VMM got SIGKILL */
};

/* One row of 'vms'. Strings are owned; NULL means unset. */
struct vm_record {
	char id[VM_ID_LEN + 1]; /* 8 hex chars; stable for the VM's life */
	char *name;		/* unique */
	char *source_file;	/* spec file the last applied spec came from */
	char *spec_json;	/* last applied canonical spec (spec_to_json) */
	char spec_hash[SPEC_HASH_LEN + 1];
	int64_t generation;	     /* bumped whenever spec_hash changes; starts at 1 */
	int64_t observed_generation; /* generation the running VM was started with */
	enum vm_phase phase;
	enum vm_desired_state desired_state;
	char *ip;	 /* guest IPv4 (leased or static) */
	char mac[18];	 /* derived from ip, "" until leased */
	uint32_t cid;	 /* vsock guest CID, >= 3, unique */
	char *vmm;	 /* driver actually used: "qemu" | "firecracker" */
	char *disk_mode; /* "dm-snapshot" | "reflink" | "copy" */
	char *vm_dir;	 /* <state>/vms/<id> */
	char *api_sock;	 /* VMM control socket (firecracker API / QMP) */
	char *console_log;
	char *cow_disk;	 /* per-VM root disk layer */
	char *work_disk; /* NULL when the spec has none */
	char *last_error;
	int restarts;	       /* times the VMM was restarted after dying */
	int failures;	       /* consecutive failures; drives the backoff */
	int64_t backoff_until; /* epoch ms; no new attempt before this; 0: none */
	int64_t running_since; /* epoch ms the VM was last seen Running; 0: not */
	int last_exit;	       /* exit status of the VMM if known, else -1 */
	char *action;	       /* converge action in progress (intent log), or NULL */
	char *step;	       /* its step in progress, or NULL */
	int64_t created_at;    /* epoch ms */
	int64_t updated_at;    /* epoch ms */
	/*
	 * Why the VM's network rules are not whole although it runs (a port
	 * forward another VM holds), or NULL. Set and cleared by the netrules
	 * step and the resync's re-check; the VM runs either way.
	 */
	char *net_error;
	/*
	 * A stop in progress (the stop-vmm step of stop, restart, delete): how
	 * far it has escalated and until when that stage waits (epoch ms). The
	 * pass that finds the VMM gone, or the deadline passed, moves it on.
	 */
	enum vm_stop_stage stop_stage;
	int64_t stop_deadline;
};

/* Free what a record owns and zero it. */
void vm_record_release(struct vm_record *rec);
/* Release and free an array of n records. */
void vm_record_array_free(struct vm_record *recs, size_t n);
/* Deep copy of src into *dst (dst is overwritten, not released). */
void vm_record_copy(struct vm_record *dst, const struct vm_record *src);

#endif
