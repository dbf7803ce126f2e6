/*
 * host-internal.h - what the files of reconciler/host/ share with each other
 * and with their tests: name rules, the EBUSY backoff, and the building
 * blocks behind struct host_ops (netlink links, loop devices, dm devices,
 * the nftables ruleset). Nothing outside reconciler/host/ and tests/ includes
 * this; converge.c uses host.h only.
 */
#ifndef BANGER_RECONCILER_HOST_HOST_INTERNAL_H
#define BANGER_RECONCILER_HOST_HOST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/err.h"
#include "reconciler/host/host.h"

/* ---- names (host.c) --------------------------------------------------------- */

#define HOST_ID_LEN 8 /* hex chars of a VM id */
#define HOST_TAP_PREFIX "bg"
#define HOST_DM_PREFIX "banger-"
#define HOST_DM_UUID_PREFIX "BANGER-"
#define HOST_DM_BASE_SUFFIX "-base"
#define HOST_LOOP_DEV_MAX 32 /* "/dev/loop<N>" */

/* true for exactly 8 lowercase hex chars. */
bool host_valid_id(const char *id);

/*
 * true for a name we accept for a network interface we create or touch:
 * 1..15 chars (IFNAMSIZ - 1) of [A-Za-z0-9_.-], not starting with '-' or
 * '.', not "." or "..". Stricter than the kernel's dev_valid_name() so the
 * name is safe in an nftables ruleset, a path and an argv.
 */
bool host_valid_ifname(const char *name);

/* true for "bg" + 8 lowercase hex chars; the id (borrowed from name) in *ret_id if non-NULL. */
bool host_parse_tap_name(const char *name, const char **ret_id);

/* "bg<id>"; -EINVAL when id is not valid. */
int host_tap_name(const char *id, char ret[16]);

/*
 * dm names for a VM: the device the VMM boots from is "banger-<id>" (UUID
 * "BANGER-<id>"); when the root disk is larger than the image, its origin is
 * "banger-<id>-base" (UUID "BANGER-<id>-base"): the image's loop padded with a
 * 'zero' target. ret_* may be NULL. -EINVAL when id is not valid.
 */
int host_dm_names(const char *id, char ret_name[64], char ret_uuid[64], char ret_base_name[64],
		  char ret_base_uuid[64]);

/*
 * The VM id a dm device belongs to, from its name ("banger-<id>" or
 * "banger-<id>-base") or, failing that, its UUID ("BANGER-<id>..."). uuid
 * may be NULL. false when it carries none of banger's prefixes.
 */
bool host_dm_parse_id(const char *name, const char *uuid, char ret_id[HOST_ID_LEN + 1]);

/* ---- EBUSY backoff (host.c) ------------------------------------------------- */

struct host_retry {
	int tries;    /* attempts in all, >= 1 */
	int first_ms; /* first wait */
	int max_ms;   /* waits double up to this */
};

/* 20 tries, 50 ms doubling to 500 ms: about 8.8 s in all. */
#define HOST_RETRY_DEFAULT                                 \
	{                                                  \
		.tries = 20, .first_ms = 50, .max_ms = 500 \
	}

/*
 * Wait before attempt number 'attempt' + 1 (attempt counts from 0). Returns
 * false without waiting when the attempts are used up. r may be NULL
 * (HOST_RETRY_DEFAULT).
 */
bool host_retry_wait(const struct host_retry *r, int attempt);

/*
 * Absolute path of a tool (nft, mke2fs): PATH first, then /usr/sbin and
 * /sbin, which a daemon's PATH may lack. Owned; NULL when not found.
 */
char *host_find_tool(const char *name);

/* ---- network (net.c) -------------------------------------------------------- */

/* What net.c sees of an interface. */
struct host_link {
	int index;
	unsigned int flags; /* IFF_* */
	int master;	    /* ifindex of the master, 0: none */
	char name[16];
	char kind[32];	/* IFLA_INFO_KIND: "bridge", "tun", ... or "" */
	bool is_tap;	/* kind "tun" and IFLA_TUN_TYPE is a tap */
	bool has_owner; /* owner/group below are known */
	uid_t owner;	/* (uid_t)-1: none */
	gid_t group;	/* (gid_t)-1: none */
	bool persist;
};

/* The interface 'name' in this network namespace: 0, -ENODEV when missing, -errno. */
int host_link_get(const char *name, struct host_link *ret, struct bg_err *err);

/* Call cb for every interface; a negative return from cb stops and is returned. */
int host_link_foreach(int (*cb)(const struct host_link *l, void *userdata), void *userdata,
		      struct bg_err *err);

/* Delete interface 'name' (RTM_DELLINK): missing is success; EBUSY retried with r. */
int host_link_delete(const char *name, const struct host_retry *r, struct bg_err *err);

/*
 * Parse "a.b.c.d/len" (len 1..30). ret_addr is the address in network byte
 * order, ret_network the address with host bits cleared. -EINVAL otherwise.
 */
int host_parse_cidr(const char *cidr, uint32_t *ret_addr, uint32_t *ret_network,
		    unsigned int *ret_prefix, struct bg_err *err);

/* Locally administered MAC for a bridge, stable for its name (02:62:67:xx:xx:xx). */
void host_bridge_mac(const char *bridge, uint8_t ret[6]);

int host_net_bridge_ensure(const struct host_net *net, struct bg_err *err);
int host_net_tap_ensure(const struct host_net *net, const char *name, uid_t uid, gid_t gid,
			struct bg_err *err);
int host_net_tap_remove(const char *name, struct bg_err *err);

/* ---- egress and port forwards (netrules.c) -------------------------------- */

/* The nftables table of a bridge's per-VM egress and forwards: "banger-<bridge>" (family ip). */
int host_netrules_table(const char *bridge, char ret[64], struct bg_err *err);

int host_netrules_base_ensure(const struct host_net *net, struct bg_err *err);
int host_netrules_ensure(const struct host_net *net, const char *tap, const char *ip,
			 bool egress_nat, const struct host_forward *fwd, size_t n_fwd,
			 struct host_forward_conflict **ret_conflicts, size_t *ret_n_conflicts,
			 struct bg_err *err);
int host_netrules_remove(const struct host_net *net, const char *tap, struct bg_err *err);
int host_netrules_show(const struct host_net *net, const char *tap, char **ret, struct bg_err *err);

/*
 * Call cb once for every VM that has chains ("<tap>-dnat", "-masq",
 * "-egress") in a table "banger-<bridge>" of family ip in this network
 * namespace. A negative return from cb stops and is returned.
 */
int host_netrules_foreach(int (*cb)(const char *bridge, const char *tap, void *userdata),
			  void *userdata, struct bg_err *err);

/* ---- libnftables (nft.c) -------------------------------------------------- */

/*
 * Run cmds (nft syntax) as one transaction, in the libnftables context this
 * process keeps (made on first use); with json the output is JSON. *ret_out (may be NULL) gets the output
 * (owned). -ENOTSUP when the kernel has no nf_tables, -ENOENT when the error
 * says an object does not exist, -EEXIST when one exists (e.g. a map element
 * with another verdict), -EIO otherwise; err has libnftables' first error line.
 */
int host_nft_run(const char *cmds, bool json, char **ret_out, struct bg_err *err);

/* The kernel's nftables generation (host_ops.rules_generation). */
int host_nft_generation(uint32_t *ret, struct bg_err *err);

/*
 * Call cb(bridge, chain, userdata) for every chain of every table
 * "banger-<bridge>" of nftables family 'family' ("ip", "bridge") whose
 * bridge is a valid interface name; nothing (0) where the kernel has no
 * nf_tables. Stops at, and returns, cb's first negative value.
 */
int host_nft_foreach_chain(const char *family,
			   int (*cb)(const char *bridge, const char *chain, void *userdata),
			   void *userdata, struct bg_err *err);

/* ---- anti-spoofing (antispoof.c) ------------------------------------------- */

/* The nftables table of a bridge's tap filters: "banger-<bridge>" (family bridge). */
int host_antispoof_table(const char *bridge, char ret[64], struct bg_err *err);

/*
 * The nftables commands antispoof_ensure() runs as one transaction: table
 * bridge banger-<bridge> with map @taps and base chain prerouting (made if
 * missing, the base chain's rules replaced), chain <tap> replaced with rules
 * that let only 'mac' send, and only ARP for mac/ip or IPv4 from ip, the map
 * element <tap> -> jump <tap> and <tap> in set @ports (dropped when its
 * chain lets a frame through without a verdict). Owned string; -EINVAL for a bad name or
 * address.
 */
int host_antispoof_ruleset(const char *bridge, const char *tap, const char *mac, const char *ip,
			   char **ret, struct bg_err *err);

int host_antispoof_ensure(const struct host_net *net, const char *tap, const char *mac,
			  const char *ip, struct bg_err *err);
int host_antispoof_remove(const struct host_net *net, const char *tap, struct bg_err *err);

/*
 * Call cb for every tap filter chain ("bg<id>" in a table "banger-<bridge>"
 * of family bridge) in this network namespace. A negative return from cb
 * stops and is returned.
 */
int host_antispoof_foreach(int (*cb)(const char *bridge, const char *tap, void *userdata),
			   void *userdata, struct bg_err *err);

/* ---- loop devices (loop.c) -------------------------------------------------- */

/*
 * Attach 'path' to a free loop device (LOOP_CTL_GET_FREE + LOOP_CONFIGURE)
 * with LO_FLAGS_AUTOCLEAR, plus LO_FLAGS_READ_ONLY when read_only. Returns an
 * fd (O_CLOEXEC) open on the loop device: the loop detaches itself when the
 * last opener closes, so keep the fd until something else (a dm table, a
 * mount) holds the device. ret_dev gets "/dev/loopN".
 */
int host_loop_attach(const char *path, bool read_only, char ret_dev[HOST_LOOP_DEV_MAX],
		     struct bg_err *err);
/*
 * host_loop_attach() of an already open file: LOOP_CONFIGURE takes 'file_fd'
 * itself (borrowed; the loop keeps its own reference), so the loop is over
 * exactly the file the caller checked, whatever 'name' (for lo_file_name and
 * messages) now points to. read_only needs no more than an O_RDONLY fd.
 */
int host_loop_attach_fd(int file_fd, const char *name, bool read_only,
			char ret_dev[HOST_LOOP_DEV_MAX], struct bg_err *err);

/*
 * Call cb for every attached loop device with its "/dev/loopN" and backing
 * file (from /sys/block/loopN/loop/backing_file, a trailing " (deleted)"
 * kept). A negative return from cb stops and is returned.
 */
int host_loop_foreach(int (*cb)(const char *dev, const char *backing, void *userdata),
		      void *userdata, struct bg_err *err);

/*
 * The loop devices whose backing file is 'path' (compared after resolving
 * both). Owned array of "/dev/loopN" strings in *ret (strv, NULL-terminated);
 * ret_n may be NULL.
 */
int host_loop_find(const char *path, char ***ret, size_t *ret_n, struct bg_err *err);

/* The backing file of "/dev/loopN" into ret (size bytes): 0, -ENXIO when detached. */
int host_loop_backing(const char *dev, char *ret, size_t size);

/*
 * Detach "/dev/loopN" with LOOP_CLR_FD and check in sysfs that it is gone.
 * A loop that someone holds open only gets AUTOCLEAR: that is retried with r
 * and then fails with -EBUSY. When expect_backing is non-NULL, a loop now
 * backed by another file (reused after we looked) is left alone and counts
 * as detached. Already detached or missing is success.
 */
int host_loop_detach(const char *dev, const char *expect_backing, const struct host_retry *r,
		     struct bg_err *err);

/* ---- disks (overlay.c) ------------------------------------------------------ */

/*
 * The dm table line of the snapshot the VM boots from:
 * "0 <sectors> snapshot <origin> <cow> P 8" (persistent, 8-sector chunks).
 */
int host_dm_snapshot_table(uint64_t sectors, const char *origin, const char *cow, char *ret,
			   size_t size, struct bg_err *err);

/*
 * The two lines of the padded origin used when the root disk is larger than
 * the image: "0 <image_sectors> linear <base_loop> 0" and
 * "<image_sectors> <size_sectors - image_sectors> zero".
 */
int host_dm_base_table(uint64_t image_sectors, uint64_t size_sectors, const char *base_loop,
		       char ret_linear[256], char ret_zero[256], struct bg_err *err);

/*
 * Size of the root disk in bytes for an image of image_bytes and a wanted
 * size (0: the image's size). -EINVAL naming both sizes when size_mib is
 * smaller than the image.
 */
int host_rootdisk_size(uint64_t image_bytes, uint64_t size_mib, const char *image,
		       uint64_t *ret_bytes, struct bg_err *err);

/* Size of a sparse COW store able to hold every chunk of a disk of disk_bytes. */
uint64_t host_cow_store_size(uint64_t disk_bytes);

/* true when /dev/mapper/control opens and answers a version ioctl. */
bool host_dm_available(void);

/* Call cb with the name and UUID ("" when none) of every dm device. */
int host_dm_foreach(int (*cb)(const char *name, const char *uuid, void *userdata), void *userdata,
		    struct bg_err *err);

/* Remove dm device 'name': missing is success, EBUSY retried with r. */
int host_dm_remove(const char *name, const struct host_retry *r, struct bg_err *err);

/*
 * Copy src to a new file dst_fd: FICLONE when 'reflink', else a sparse copy
 * that copies only the data ranges (SEEK_DATA/SEEK_HOLE). *ret_cloned says
 * whether FICLONE worked. With reflink, EXDEV/EOPNOTSUPP/EINVAL from FICLONE
 * fall back to the copy.
 */
int host_copy_file(int src_fd, int dst_fd, bool reflink, bool *ret_cloned, struct bg_err *err);

int host_disk_mode_detect(const char *state_dir, enum disk_mode *ret, struct bg_err *err);
int host_rootdisk_ensure(const struct host_vm *vm, enum disk_mode mode, struct host_disk *ret,
			 struct bg_err *err);
int host_rootdisk_deactivate(const struct host_vm *vm, struct bg_err *err);
int host_rootdisk_remove(const struct host_vm *vm, struct bg_err *err);

/* ---- work disks (workdisk.c) ------------------------------------------------ */

int host_workdisk_ensure(const struct host_vm *vm, struct bg_err *err);
int host_workdisk_remove(const struct host_vm *vm, struct bg_err *err);

/* ---- ext filesystems (extfs.c) ---------------------------------------------- */

#define HOST_EXT_SB_OFFSET 1024 /* where the superblock starts */
#define HOST_EXT_SB_SIZE 1024

/*
 * The size in bytes of the ext2/3/4 filesystem whose superblock (the 1024
 * bytes at HOST_EXT_SB_OFFSET of the disk) is sb: blocks count (with the
 * high half when the 64bit feature is on) times block size. -EINVAL when sb
 * is not an ext superblock (magic 0xEF53 at 56) or is implausible.
 */
int host_ext_fs_bytes(const uint8_t sb[HOST_EXT_SB_SIZE], uint64_t *ret_bytes);

/*
 * Grow the ext filesystem that starts at byte 0 of 'path' (a regular file
 * or a block device) to the size of the file or device when it is smaller
 * by more than 1 MiB: e2fsck -fy (exit status up to 3 accepted), then
 * resize2fs. 1 when grown, 0 when nothing was to be done (no process run),
 * -errno with the tool's output in err otherwise.
 */
int host_ext_grow(const char *path, struct bg_err *err);

int host_rootfs_grow(const char *path, struct bg_err *err);

/* ---- base images (baseimg.c) ------------------------------------------------ */

#define HOST_IMAGES_DIR "images"       /* under the state dir */
#define HOST_IMAGES_TMP_PREFIX ".tmp-" /* temp files of a conversion, flock()ed while used */
#define HOST_QCOW2_HEADER_MAX 512      /* what is read of an image to tell its format */

/* What banger reads of a qcow2 header (all fields big endian on disk). */
struct host_qcow2_header {
	uint32_t version;	 /* 2 or 3 */
	uint64_t backing_offset; /* 0: no backing file */
	uint32_t backing_size;
	uint64_t size;	       /* virtual disk size in bytes */
	uint64_t incompatible; /* v3 incompatible feature bits, 0 for v2 */
};

#define HOST_QCOW2_INCOMPAT_DATA_FILE (1ULL << 2) /* an external data file */

/* true when buf (len bytes from offset 0 of a file) starts with the qcow2 magic "QFI\xfb". */
bool host_is_qcow2(const void *buf, size_t len);

/* Parse a qcow2 header from the first len bytes of an image. -EINVAL when it is not one. */
int host_qcow2_parse(const void *buf, size_t len, struct host_qcow2_header *ret,
		     struct bg_err *err);

/* "<state_dir>/images/<sha>.raw" (owned); NULL when sha is not 64 lowercase hex chars. */
char *host_baseimg_cache_path(const char *state_dir, const char *sha);

/* true for "<64 lowercase hex>" + suffix exactly (e.g. ".raw", ".src"). */
bool host_baseimg_is_sha_name(const char *name, const char *suffix);

/* Identity of an image file's content as far as stat() can tell. */
struct host_baseimg_key {
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
};

void host_baseimg_key_of(const struct stat *st, struct host_baseimg_key *ret);

/*
 * One line of a <sha>.src file: "v1 <dev> <ino> <size> <mtime s> <mtime ns>
 * <ctime s> <ctime ns> <path>\n". The path is for people reading it; only
 * the numbers are compared. Owned.
 */
char *host_baseimg_key_line(const struct host_baseimg_key *k, const char *path);

/* Parse such a line (without or with its newline); false when it is not one. */
bool host_baseimg_key_parse(const char *line, struct host_baseimg_key *ret);

bool host_baseimg_key_equal(const struct host_baseimg_key *a, const struct host_baseimg_key *b);

int host_baseimg_resolve(const char *state_dir, const char *image, int image_fd,
			 char ret_path[4096], struct bg_err *err);

/* ---- leak finder (gc.c) ----------------------------------------------------- */

int host_gc_scan(const char *state_dir, const char *const *known_ids, size_t n_known,
		 struct host_orphan **ret, size_t *ret_n, struct bg_err *err);
int host_gc_remove(const struct host_orphan *o, struct bg_err *err);

#endif
