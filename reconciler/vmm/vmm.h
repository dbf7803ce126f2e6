/*
 * vmm.h - the VMM driver interface (firecracker, qemu) and driver selection.
 *
 * A driver launches a VMM in its own session (setsid) with stdout/stderr and
 * the serial console appended to the VM's console log, no daemon fds (all
 * O_CLOEXEC / closed), so the VM outlives the daemon. start() only launches
 * and configures: it never waits for the guest to boot. Later passes probe.
 *
 * What every guest is told, whichever VMM (the guest contract, see README):
 *   ip=<ip>::<gw>:<mask>:<hostname>:eth0:off     its network
 *   banger.sshkeys=<base64 of authorized_keys>    keys allowed to log in as ssh.user
 *   banger.user=<user>                            that user
 * plus root=/dev/vda rw (the root disk is the first virtio block device; the
 * work disk, when present, the second: /dev/vdb; the read-only NoCloud seed,
 * when present, the last one). With spec.guest.config 'cloudinit' only
 * root=/dev/vda rw is passed and the guest reads the rest from the seed.
 */
#ifndef BANGER_RECONCILER_VMM_VMM_H
#define BANGER_RECONCILER_VMM_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "spec/spec.h"

struct vmm_sandbox;

/* Everything a driver needs to boot one VM. All strings are borrowed. */
struct vmm_config {
	const char *id;	  /* VM id (8 hex) */
	const char *name; /* VM name (hostname) */
	unsigned vcpus;
	unsigned memory_mib;
	const char *kernel;	/* vmlinux (uncompressed ELF) */
	const char *initrd;	/* NULL: none */
	const char *guest_args; /* the guest-contract arguments (vmm_guest_args()) plus the
				 * user's kernel.args; the driver adds its own (console...) */
	const char *root_disk;	/* block device or file: /dev/vda in the guest */
	const char *work_disk;	/* NULL: none; /dev/vdb in the guest */
	const char *seed_disk;	/* NULL: none; the NoCloud seed (ISO 9660 'cidata'), attached
				 * read-only as the last virtio disk: /dev/vdb, or /dev/vdc
				 * after a work disk */
	const char *tap;	/* host tap device */
	const char *mac;	/* guest MAC */
	uint32_t cid;		/* vsock guest CID (firecracker) */
	const char *vm_dir;	/* the driver may keep files here (logs, metrics, vsock) */
	const char *ctl_sock;	/* control socket: firecracker API / qemu QMP */
	const char *console_log;
	const char *binary;		   /* VMM binary; NULL: the driver's default name in PATH */
	const struct vmm_sandbox *sandbox; /* NULL or off: the VMM runs as root, unconfined
					    * (see vmm_sandbox.h) */
};

/* What start() returns: the identity of the launched VMM process. */
struct vmm_process {
	pid_t pid;
	uint64_t start_time;
};

/* What the VMM says about the guest. */
enum vmm_guest_state {
	VMM_GUEST_UNKNOWN,     /* the VMM did not answer */
	VMM_GUEST_CONFIGURING, /* launched, not started yet */
	VMM_GUEST_RUNNING,
	VMM_GUEST_PAUSED,
	VMM_GUEST_SHUTDOWN, /* the guest is gone, the process may linger */
	VMM_GUEST_STATE_MAX
};

const char *vmm_guest_state_to_string(enum vmm_guest_state s);

struct vmm_driver {
	const char *name; /* "firecracker" | "qemu" */

	/*
	 * Can this host run VMs with this driver? binary may be NULL (default).
	 * On false, 'why' says what is missing (binary not found, KVM unusable...).
	 */
	bool (*available)(const char *binary, struct bg_err *why);

	/* Launch and configure; returns once the guest has been told to start. On
	 * failure nothing is left running. */
	int (*start)(const struct vmm_config *cfg, struct vmm_process *ret, struct bg_err *err);

	/* Ask the running VMM about the guest (bounded by a short timeout). */
	int (*probe)(const struct vmm_config *cfg, const struct vmm_process *proc,
		     enum vmm_guest_state *ret, struct bg_err *err);

	/*
	 * Ask the guest to shut down (Firecracker: Ctrl-Alt-Del; QEMU: Ctrl-Alt-Del
	 * and the ACPI power button) and return without waiting for it: the
	 * daemon's stop is a state machine that escalates at its own deadlines
	 * (converge.c). One bounded request on the control socket; a refusal is
	 * an error (the caller goes on to SIGTERM).
	 */
	int (*shutdown)(const struct vmm_config *cfg, const struct vmm_process *proc,
			struct bg_err *err);

	/*
	 * Stop: ask the guest to shut down and wait up to grace_ms, then SIGTERM,
	 * then SIGKILL. Signals only go to proc if its start time matches. Reaps
	 * the process when it is our child. A process already gone is success.
	 */
	int (*stop)(const struct vmm_config *cfg, const struct vmm_process *proc, int grace_ms,
		    struct bg_err *err);
};

extern const struct vmm_driver vmm_driver_firecracker;
extern const struct vmm_driver vmm_driver_qemu;

/*
 * Pick the driver for a spec's vmm field. VMM_AUTO is firecracker when its
 * binary is found and KVM works, else qemu; 'why' (may be NULL) receives the
 * reason firecracker was passed over. An explicit kind that is not
 * available fails with its reason. binaries[k] overrides the binary of kind
 * k (may be NULL).
 */
int vmm_select(enum vmm_kind kind, const char *const binaries[VMM_KIND_MAX],
	       const struct vmm_driver **ret, struct bg_err *why, struct bg_err *err);

/* The driver by name ("qemu", "firecracker"), or NULL. */
const struct vmm_driver *vmm_driver_by_name(const char *name);

/*
 * Build the guest-contract kernel arguments (see the top of this file)
 * followed by extra_args (may be NULL). ip/gateway/netmask are dotted quads.
 * authorized_keys is the text of an authorized_keys file. Fails with
 * -E2BIG when the result would not fit a kernel command line with room for
 * the driver's own arguments. Owned result.
 */
int vmm_guest_args(const char *ip, const char *gateway, const char *netmask, const char *hostname,
		   const char *user, const char *authorized_keys, const char *extra_args,
		   char **ret, struct bg_err *err);

/*
 * vmm_guest_args() with the guest's nameserver (a dotted quad, or NULL for
 * none) in the ip= field's DNS slot: ip=<ip>::<gw>:<mask>:<host>:eth0:off:<dns>.
 */
int vmm_guest_args_dns(const char *ip, const char *gateway, const char *netmask, const char *dns,
		       const char *hostname, const char *user, const char *authorized_keys,
		       const char *extra_args, char **ret, struct bg_err *err);

/*
 * The kernel arguments of a guest configured from its seed alone
 * (spec.guest.config 'cloudinit'): "root=/dev/vda rw" followed by
 * extra_args (may be NULL). Owned result; -EINVAL for control characters.
 */
int vmm_guest_root_args(const char *extra_args, char **ret, struct bg_err *err);

/*
 * Keep a console log under max_bytes by copy-truncate: when larger, its
 * content moves to <path>.1 (replacing the older one) and the file is
 * truncated in place (the VMM appends with O_APPEND and keeps writing).
 * Returns 1 when it rotated, 0 when the log is missing or small enough,
 * -errno on failure (a symlink or a non-regular file is refused).
 */
int vmm_console_rotate(const char *path, uint64_t max_bytes, struct bg_err *err);

#define VMM_CONSOLE_MAX_BYTES (4 * 1024 * 1024)

#endif
