/*
 * host.h - the kernel objects banger creates for VMs, behind one table of
 * idempotent operations (struct host_ops). converge.c calls only this table;
 * unit tests substitute a fake.
 *
 * Every object is named from the VM's short id, never from its name: tap
 * "bg<id>", dm device "banger-<id>" (UUID "BANGER-<id>"), files under
 * <state>/vms/<id>/. *_ensure() creates what is missing and leaves what
 * exists; *_remove() treats "not found" as done and retries EBUSY with a
 * bounded backoff. Running an operation twice gives the same result, and a
 * remove after a half-done ensure cleans up. No operation runs a shell.
 */
#ifndef BANGER_RECONCILER_HOST_HOST_H
#define BANGER_RECONCILER_HOST_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

/* How a VM's copy-on-write root disk is made on this host. */
enum disk_mode {
	DISK_MODE_DM_SNAPSHOT, /* base loop (ro) + sparse COW loop -> dm 'snapshot' target */
	DISK_MODE_REFLINK,     /* FICLONE of the base image, grown to size */
	DISK_MODE_COPY,	       /* sparse copy (SEEK_DATA/SEEK_HOLE), grown to size */
	DISK_MODE_MAX
};

/* "dm-snapshot" | "reflink" | "copy"; NULL out of range. */
const char *disk_mode_to_string(enum disk_mode m);
int disk_mode_from_string(const char *s);

/* Daemon-wide network settings. */
struct host_net {
	const char *bridge; /* default "banger0" */
	const char *cidr;   /* bridge address and prefix, default "172.30.0.1/24" */
	bool nat;	    /* default egress of a VM whose spec does not say: nat (true) or none */
};

/* One port forward of a VM (spec.network.ports): host_ip:host_port -> the guest's guest_port. */
enum host_proto {
	HOST_PROTO_TCP,
	HOST_PROTO_UDP,
	HOST_PROTO_MAX
};

struct host_forward {
	char host_ip[16]; /* dotted IPv4; "0.0.0.0": every local address of the host */
	uint16_t host_port;
	uint16_t guest_port;
	enum host_proto proto;
};

/* A forward that another tap already holds (netrules_ensure). */
struct host_forward_conflict {
	struct host_forward fwd; /* the one that was asked for */
	char holder_tap[16];	 /* the tap whose VM holds that host address and port */
};

/* "tcp" | "udp"; NULL out of range. */
const char *host_proto_to_string(enum host_proto p);

/* What the host layer needs to know about one VM. */
struct host_vm {
	const char *id;		  /* 8 hex chars */
	const char *vm_dir;	  /* <state>/vms/<id>, exists */
	const char *rootfs_image; /* read-only base image */
	/*
	 * With rootfs_has_fd, rootfs_fd (borrowed, O_RDONLY) is that image,
	 * opened and checked by the caller (common/imgpath): rootdisk_ensure
	 * stats, copies, reflinks and loop-attaches this fd and never opens
	 * rootfs_image, which then only names it in messages.
	 */
	bool rootfs_has_fd;
	int rootfs_fd;
	uint64_t rootfs_size_mib; /* 0: the image's size */
	const char *cow_disk;	  /* per-VM file: dm COW store, or the root disk copy */
	const char *work_disk;	  /* NULL: none */
	uint64_t work_disk_mib;
	uid_t owner_uid; /* owner of the tap (the VMM's user) */
	gid_t owner_gid;
};

/* The root disk the VMM should boot from, as made by rootdisk_ensure(). */
struct host_disk {
	enum disk_mode mode;
	char path[4096];    /* /dev/mapper/banger-<id> or the cow_disk file */
	char base_loop[32]; /* dm mode only */
	char cow_loop[32];  /* dm mode only */
	char dm_name[64];   /* dm mode only */
};

/* A kernel object or file that carries banger's prefixes but belongs to no VM. */
enum host_orphan_kind {
	HOST_ORPHAN_TAP,
	HOST_ORPHAN_DM,
	HOST_ORPHAN_LOOP,
	HOST_ORPHAN_VM_DIR,
	HOST_ORPHAN_IMAGE_CACHE, /* <state>/images/: an unused <sha>.raw (with its .src),
				  * a .src without its .raw, an interrupted conversion's .tmp-* */
	HOST_ORPHAN_FILTER,	 /* a tap's anti-spoofing chain "bg<id>"; master: its bridge */
	HOST_ORPHAN_NETRULES,	 /* a tap's egress/forward chains "bg<id>-*" in table
				  * "ip banger-<bridge>"; name: the tap; master: its bridge */
	HOST_ORPHAN_KIND_MAX
};

struct host_orphan {
	enum host_orphan_kind kind;
	char name[4096];   /* tap name, dm name, /dev/loopN (+ backing file), dir or file path */
	char detail[4096]; /* e.g. the loop's backing file; may be "" */
	/*
	 * Tap names are host-wide and every banger instance (state dir) makes
	 * "bg<id>" taps and "banger-<id>" dm devices: an id unknown to this
	 * state dir may be another instance's running VM. gc_scan says what it
	 * saw; host_orphan_is_ours() decides.
	 */
	char master[16]; /* HOST_ORPHAN_TAP: the bridge it is enslaved to, "" when none;
			  * HOST_ORPHAN_FILTER, _NETRULES: the bridge whose table holds it */
	bool unowned;	 /* HOST_ORPHAN_DM: nothing ties it to this state dir (no loop
			  * under it is over a file in <state>/vms/, no <state>/vms/<id>) */
};

const char *host_orphan_kind_to_string(enum host_orphan_kind k);

/*
 * Whether gc may take o for a leak of the banger instance whose bridge is
 * 'bridge' (daemon_info.bridge; NULL when no bangerd has recorded one): a
 * tap only when it is enslaved to no bridge or to that one, a dm device only
 * when it is not 'unowned', a filter or netrules only when they are in that bridge's table. Loops, VM dirs and image caches are found under
 * the state dir, so they are always this instance's.
 */
bool host_orphan_is_ours(const struct host_orphan *o, const char *bridge);

struct host_ops {
	/* The bridge exists, has cidr's address and is up. */
	int (*bridge_ensure)(const struct host_net *net, struct bg_err *err);
	/* Persistent tap 'name' owned by uid/gid, enslaved to the bridge, up. */
	int (*tap_ensure)(const struct host_net *net, const char *name, uid_t uid, gid_t gid,
			  struct bg_err *err);
	int (*tap_remove)(const char *name, struct bg_err *err);
	/*
	 * Anti-spoofing for tap 'tap' (nftables table "bridge banger-<bridge>",
	 * chain 'tap'): frames the guest sends through it must come from 'mac'
	 * ("02:..:..", lowercase) and be ARP for mac/ip or IPv4 from 'ip';
	 * everything else is dropped, also when the chain is flushed by hand.
	 * Ports of other bridges are never matched. One transaction;
	 * re-running it repairs a flushed or changed filter. remove deletes
	 * the tap's chain and its map and set elements; missing is done.
	 */
	int (*antispoof_ensure)(const struct host_net *net, const char *tap, const char *mac,
				const char *ip, struct bg_err *err);
	int (*antispoof_remove)(const struct host_net *net, const char *tap, struct bg_err *err);

	/*
	 * Per-VM egress and port forwards (libnftables, table "ip banger-<bridge>",
	 * everything of one VM named after its tap so it is found, repaired and
	 * removed by that name). netrules_base_ensure makes the table's sets,
	 * maps and base chains (elements are kept) and is called with the bridge.
	 * netrules_ensure makes the VM's rules match: egress_nat true masquerades
	 * traffic from 'ip' leaving other interfaces and lets it be forwarded;
	 * false drops new connections from 'ip' to other interfaces. fwd[n_fwd]
	 * are DNATed to ip:guest_port, from other hosts and from the host itself
	 * (127.0.0.1 included); forwards the VM had and fwd no longer lists are
	 * removed. A forward whose host address and port (an overlapping one:
	 * 0.0.0.0 overlaps every address) another tap holds is not taken: every
	 * other rule is still applied, the conflicts are returned in *ret_conflicts
	 * (owned, *ret_n_conflicts of them; NULL/0 when none) and the call returns
	 * 0. One transaction per call; re-running it repairs a flushed table.
	 * netrules_remove deletes all of the VM's rules; missing is done.
	 * netrules_show gives the VM's rules in place as nft text (owned; "" when
	 * none).
	 */
	int (*netrules_base_ensure)(const struct host_net *net, struct bg_err *err);
	int (*netrules_ensure)(const struct host_net *net, const char *tap, const char *ip,
			       bool egress_nat, const struct host_forward *fwd, size_t n_fwd,
			       struct host_forward_conflict **ret_conflicts,
			       size_t *ret_n_conflicts, struct bg_err *err);
	int (*netrules_remove)(const struct host_net *net, const char *tap, struct bg_err *err);
	int (*netrules_show)(const struct host_net *net, const char *tap, char **ret,
			     struct bg_err *err);

	/*
	 * The kernel's nftables generation in this network namespace: it moves
	 * on with every committed ruleset change, by anyone. Equal values mean
	 * no rule, chain, set or table changed in between, so a resync need not
	 * re-ensure the VMs' filters and rules. May be NULL (then always
	 * re-ensure).
	 */
	int (*rules_generation)(uint32_t *ret, struct bg_err *err);

	/* Which disk mode this host supports best for files under state_dir. */
	int (*disk_mode_detect)(const char *state_dir, enum disk_mode *ret, struct bg_err *err);
	/* Make (or find) the VM's root disk in 'mode'. Creation time does not grow with
	 * the image size in dm and reflink modes. In reflink mode ret->mode says
	 * DISK_MODE_COPY when FICLONE could not be used (e.g. the image is on
	 * another filesystem) and the file was copied instead. */
	int (*rootdisk_ensure)(const struct host_vm *vm, enum disk_mode mode, struct host_disk *ret,
			       struct bg_err *err);
	/* Deactivate the root disk (dm device, loops) but keep the COW file: for stop/restart. */
	int (*rootdisk_deactivate)(const struct host_vm *vm, struct bg_err *err);
	/* Deactivate and delete the COW file: for delete. */
	int (*rootdisk_remove)(const struct host_vm *vm, struct bg_err *err);
	/*
	 * A sparse ext4 file of work_disk_mib, formatted on first create, kept
	 * otherwise. A larger work_disk_mib grows the file and its ext
	 * filesystem (e2fsck -fy, resize2fs); a smaller one is refused with
	 * -EINVAL and changes nothing. Only while no VMM has the disk open.
	 */
	int (*workdisk_ensure)(const struct host_vm *vm, struct bg_err *err);
	int (*workdisk_remove)(const struct host_vm *vm, struct bg_err *err);

	/*
	 * The raw image a VM's root disk is made from, for the spec's rootfs
	 * image (an absolute path) into ret_path. A raw image (anything that
	 * does not start with the qcow2 magic "QFI\xfb") is its own answer. A
	 * qcow2 image is converted once, with 'qemu-img convert -f qcow2 -O raw',
	 * to the cache <state_dir>/images/<sha256 of the qcow2 file>.raw and
	 * that path is returned; every VM whose image has the same content
	 * shares it. The hash is remembered in <sha>.src by the image's (st_dev,
	 * st_ino, st_size, st_mtim, st_ctim), so an unchanged image costs a
	 * stat and a directory read, not a read of the file. A qcow2 with a
	 * backing file or an external data file (either could reach other files
	 * of the host) is refused with -EINVAL. Nothing partial is ever left
	 * under the cache's name. May take as long as the conversion (tens of
	 * seconds for a cloud image) when the cache is missing. image_fd >= 0:
	 * the image opened and checked by the caller (borrowed), read instead of
	 * opening 'image', which then only names it.
	 */
	int (*baseimg_resolve)(const char *state_dir, const char *image, int image_fd,
			       char ret_path[4096], struct bg_err *err);
	/*
	 * Grow the ext2/3/4 filesystem that fills the root disk 'path' (the
	 * host_disk.path of rootdisk_ensure: a file, or /dev/mapper/banger-<id>)
	 * to the disk's size: 'e2fsck -fy' then 'resize2fs'. Returns 1 when it
	 * grew it, 0 when there was nothing to do: the disk does not start with
	 * an ext superblock (a partitioned image: growpart in the guest does
	 * that), or the filesystem is within 1 MiB of the disk's size. That
	 * check reads one superblock and runs nothing. Only while no VMM has the
	 * disk open.
	 */
	int (*rootfs_grow)(const char *path, struct bg_err *err);

	/*
	 * Find objects with banger's names under state_dir / on this host whose id
	 * is not in known_ids. Returns an owned array (free()), in an order that
	 * is safe to remove one by one: dm devices, loops, taps, tap filters, netrules, directories,
	 * image caches (which are unused whatever known_ids says: no
	 * <state>/vms/<dir>/root.base names them and no loop device is over them).
	 */
	int (*gc_scan)(const char *state_dir, const char *const *known_ids, size_t n_known,
		       struct host_orphan **ret, size_t *ret_n, struct bg_err *err);
	/* Remove one orphan found by gc_scan. */
	int (*gc_remove)(const struct host_orphan *o, struct bg_err *err);
};

/* The real implementation (netlink, loop ioctls, libdevmapper, FICLONE...). */
extern const struct host_ops host_ops_linux;

#endif
