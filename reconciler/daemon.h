/*
 * daemon.h - one reconcile pass of bangerd and the state it keeps between
 * passes.
 *
 * A pass: load the spec dir -> read the records -> observe handles (liveness,
 * exit statuses the daemon reaped) -> plan() -> converge each action ->
 * observe guests (Starting -> Running once SSH answers; failure counts reset
 * after a stable run; console logs rotated) -> write the heartbeat, spec
 * errors and events. The event loop (main.c) decides when to run a pass.
 */
#ifndef BANGER_RECONCILER_DAEMON_H
#define BANGER_RECONCILER_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/imgpath.h"
#include "reconciler/converge.h"
#include "reconciler/handles.h"
#include "reconciler/host/host.h"
#include "reconciler/prober.h"
#include "reconciler/store.h"
#include "reconciler/vmm/vmm_sandbox.h"
#include "spec/cache.h"
#include "spec/spec.h"

#define DAEMON_DEFAULT_BRIDGE "banger0"
#define DAEMON_DEFAULT_SUBNET "172.30.0.1/24"
#define DAEMON_DEFAULT_RESYNC_MS (30 * 1000)
#define DAEMON_DEFAULT_STOP_GRACE_MS (10 * 1000)
/*
 * A VM whose spec disappeared is deleted only once the spec has stayed gone
 * this long, over at least two passes: an editor's save (rename dance) or a
 * truncating copy never deletes a VM.
 */
#define DAEMON_DELETE_GRACE_MS 2000

struct daemon_config {
	const char *spec_dir;
	const char *state_dir;
	const char *bridge;
	const char *subnet; /* bridge address/prefix, e.g. 172.30.0.1/24 */
	int64_t resync_ms;
	enum vmm_kind vmm;		    /* used for specs that say 'auto' */
	const char *binaries[VMM_KIND_MAX]; /* --firecracker PATH, --qemu PATH */
	bool skip_kvm_check;  /* accept a firecracker binary without KVM (the stand-in) */
	const char *vmm_uids; /* --vmm-uids START:COUNT|off; NULL: VMM_SANDBOX_DEFAULT_UIDS */
	bool nat;
	uint16_t dns_port; /* the DNS responder's port on the bridge address, 0: off */
	int stop_grace_ms;
	/*
	 * --image-dir: the only directories spec-named images, kernels and
	 * initrds may be below (common/imgpath). None: no confinement, for unit
	 * tests with a fake host only; bangerd always passes at least
	 * IMGPATH_DEFAULT_ROOT.
	 */
	const char *const *image_dirs;
	size_t n_image_dirs;
	const struct host_ops *host; /* NULL: host_ops_linux */
};

/* An alive VMM the event loop may watch with a pidfd. */
struct daemon_vmm {
	char id[VM_ID_LEN + 1];
	pid_t pid;
	uint64_t start_time;
};

struct daemon {
	struct daemon_config cfg;
	struct store *store;
	struct handles_cache *handles;
	struct prober *prober;	  /* readiness probes beside the loop */
	struct spec_cache *specs; /* the spec dir's files, parsed once while unchanged */
	struct converge_env env;
	struct vmm_sandbox sandbox; /* VMM uids and confinement (env.sandbox) */
	struct imgpath_conf images; /* from cfg.image_dirs and state_dir */
	char *known_hosts;
	char *client_key;
	char *client_pubkey;
	enum disk_mode disk_mode;
	int64_t started_at;
	int64_t last_resync;
	char *spec_errors; /* the last reported spec errors, to report changes once */
	struct {
		pid_t pid;
		int status; /* exit code, or 128 + signal */
	} reaped[64];
	size_t n_reaped;
	int64_t next_wakeup;	  /* epoch ms of the earliest requeue, 0: none */
	struct daemon_vmm *alive; /* VMMs alive after the last pass */
	size_t n_alive;
	struct daemon_vmm *seen; /* alive when this pass began, no action since; by id */
	size_t n_seen;
	struct {
		char *name;
		int64_t since; /* epoch ms the spec was first seen gone */
	} * absent;	       /* VMs whose spec is gone, waiting out the delete grace */
	size_t n_absent;
	/* The nftables generation after the last complete re-ensure of every VM's rules. */
	uint32_t rules_gen;
	bool rules_gen_known;
};

/*
 * Open the store, create the state layout (0700), make sure banger's SSH key
 * exists, detect the disk mode and report leaked objects (not removed here:
 * 'banger gc' does that). cfg strings must outlive the daemon.
 */
int daemon_init(struct daemon *d, const struct daemon_config *cfg, struct bg_err *err);
void daemon_fini(struct daemon *d);

/*
 * Run one pass. 'full' marks a periodic resync (recorded as last_resync).
 * Errors of single VMs are recorded on those VMs and never stop the pass;
 * the return value reports only failures of the pass itself (store errors).
 */
int daemon_pass(struct daemon *d, bool full, struct bg_err *err);

/*
 * Paths in the spec dir that inotify named since the last pass (borrowed;
 * 'all': anything may have changed): the next pass reads only those files
 * again (and any whose inode, size or mtime changed); a full pass reads all.
 */
void daemon_hint_paths(struct daemon *d, const char *const *paths, size_t n, bool all);

/*
 * Which spec files are being written (spec_cache_set_writing(): the passes
 * keep to such a file's last complete content, or skip a new one), e.g.
 * spec_watch_is_writing() behind a wrapper; NULL: none. ctx is borrowed until
 * this is called again or the daemon is finished.
 */
void daemon_set_writing(struct daemon *d, bool (*writing)(void *ctx, const char *path), void *ctx);

/*
 * Remember the wait status of a VMM child the event loop reaped. false when
 * pid was not a VMM but one of the prober's workers (prober.h).
 */
bool daemon_reaped(struct daemon *d, pid_t pid, int wait_status);

#endif
