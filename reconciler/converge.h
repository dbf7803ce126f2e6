/*
 * converge.h - carry out planned actions as sequences of idempotent steps.
 *
 * converge.c is the only orchestrator: it is the one place that calls the
 * store, the handle cache, the host layer (through struct host_ops), the VMM
 * drivers and known_hosts. Each action is a fixed list of named steps; before
 * a step touches the kernel, "<action>/<step>" is written to the VM's row (the
 * intent log), so a crash mid-action is resumed by the next pass from that
 * step. Steps are idempotent (*_ensure / *_remove), so re-running one is
 * always safe. The actions of one pass share their intent-log writes: one
 * commit per round of steps, not one per VM per step (converge_batch). There is no hand-written rollback: a failed action marks the
 * VM Failed with its error and a backoff, and a later pass converges again.
 *
 * Steps by action (failpoint names are "<action>.<step>"):
 *   create   record prepare lease-ip bridge tap antispoof netrules rootdisk workdisk seed
 *            launch
 *   start    prepare lease-ip bridge tap antispoof netrules rootdisk workdisk seed launch
 *   restart  stop-vmm teardown prepare lease-ip bridge tap antispoof netrules rootdisk
 *            workdisk seed launch
 *   stop     stop-vmm teardown
 *   update   apply-spec netrules (netrules only while the VM runs)
 *   demote   teardown
 *   delete   tombstone stop-vmm teardown remove-disks remove-files release-ip unpin forget
 */
#ifndef BANGER_RECONCILER_CONVERGE_H
#define BANGER_RECONCILER_CONVERGE_H

#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "reconciler/handles.h"
#include "reconciler/host/host.h"
#include "reconciler/plan.h"
#include "reconciler/store.h"
#include "reconciler/vmm/vmm.h"

struct imgpath_conf;

struct converge_env {
	struct store *store;
	struct handles_cache *handles;
	const struct host_ops *host;
	struct host_net net;	  /* bridge, its CIDR, NAT */
	enum disk_mode disk_mode; /* how new VMs get their root disk */
	const char *state_dir;
	const char *known_hosts;     /* pins are removed from here on delete */
	const char *authorized_keys; /* banger's public key line(s), given to every guest */
	char **nameservers;	     /* the guests' DNS servers (network-config), may be NULL */
	size_t n_nameservers;
	int stop_grace_ms;		   /* graceful shutdown deadline before SIGTERM */
	const char *const *binaries;	   /* [enum vmm_kind]: VMM binary overrides, may be NULL */
	const struct vmm_sandbox *sandbox; /* VMM confinement (vmm_sandbox.h); NULL: none */
	/*
	 * Where spec-named files (rootfs.image, kernel.path, kernel.initrd) may
	 * be (common/imgpath): each is opened through it and used by fd; the
	 * kernel and initrd are copied into <vm_dir>/kernel and <vm_dir>/initrd
	 * (0600) and the VMM is given the copies. NULL only for unit tests with
	 * a fake host, where the paths are used as they are.
	 */
	const struct imgpath_conf *images;

	/*
	 * Choose the driver for a VM: 'kind' from its spec, 'recorded' the driver
	 * it already uses (NULL for none). Tests substitute fakes.
	 */
	int (*driver_for)(void *ctx, enum vmm_kind kind, const char *recorded,
			  const struct vmm_driver **ret, struct bg_err *err);
	void *driver_ctx;

	/* Epoch milliseconds; NULL: the real clock. */
	int64_t (*now)(void);
};

/*
 * Run one planned action. PLAN_NONE does nothing. On failure the VM's row
 * records it (phase Failed — Deleting stays Deleting — last_error, failures,
 * backoff_until, the step cleared) and a Warning event is added; the error
 * is returned too. Success adds a Normal event.
 */
int converge_action(struct converge_env *env, const struct plan_action *a, struct bg_err *err);

/* At most this many actions share a batch's rounds (converge_batch). */
#define CONVERGE_BATCH_MAX 32

/*
 * Run n actions of one pass together, as converge_action() runs one, in
 * lockstep rounds, CONVERGE_BATCH_MAX actions at a time: every action's next
 * intent is written, the round is committed (one sync for all,
 * store_group_begin), then every action runs that step; a step's own writes
 * are made durable by the next round's commit, before that action's next
 * step (a stop's stage is committed at once, before its signal). An action
 * stops at its last step, at a step that waits (a stop) or at a failure; the
 * others go on. A commit that fails ends the batch: every action whose end
 * was not yet committed fails with it, and the next pass resumes from the
 * log. errs[k] gets action k's error (cleared on success). Returns the
 * number of actions that failed.
 */
size_t converge_batch(struct converge_env *env, const struct plan_action *const *acts, size_t n,
		      struct bg_err *errs);

/*
 * Re-ensure what keeps a running VM's neighbours safe from it, outside any
 * action: its tap's anti-spoofing filter (antispoof_ensure with its
 * recorded MAC and address), so a filter flushed by hand is back by the next
 * resync, and the readiness probe only talks to an address no other guest
 * can claim. Touches no record. -errno with err set.
 */
int converge_guard(struct converge_env *env, const struct vm_record *rec, struct bg_err *err);

/*
 * Re-ensure a running VM's egress and port forwards from its recorded spec
 * (netrules_ensure), on every full resync: flushed rules come back, and a
 * forward another VM held is taken once it is free. Updates rec->net_error
 * and writes the row only when it changes (with an event). A recorded spec
 * that does not parse leaves the rules as they are. -errno with err set.
 */
int converge_netrules(struct converge_env *env, struct vm_record *rec, struct bg_err *err);

/* Every failpoint name, NULL-terminated. */
extern const char *const converge_failpoints[];

#endif
