/*
 * converge.c - planned actions as recorded, idempotent steps; see converge.h.
 */
#include "reconciler/converge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/imgpath.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/proc.h"
#include "common/str.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/failpoint.h"
#include "reconciler/guest/hostkey.h"
#include "reconciler/guest/known_hosts.h"
#include "reconciler/guest/seed.h"

/* What a step returns when it waits for something outside (a VMM to exit). */
#define STEP_PENDING 1

enum step_id {
	S_RECORD,
	S_PREPARE,
	S_LEASE_IP,
	S_BRIDGE,
	S_TAP,
	S_ANTISPOOF,
	S_NETRULES,
	S_ROOTDISK,
	S_WORKDISK,
	S_SEED,
	S_LAUNCH,
	S_STOP_VMM,
	S_TEARDOWN,
	S_APPLY_SPEC,
	S_TOMBSTONE,
	S_REMOVE_DISKS,
	S_REMOVE_FILES,
	S_RELEASE_IP,
	S_UNPIN,
	S_FORGET,
	S_MAX
};

static const char *const step_names[S_MAX] = {
	[S_RECORD] = "record",
	[S_PREPARE] = "prepare",
	[S_LEASE_IP] = "lease-ip",
	[S_BRIDGE] = "bridge",
	[S_TAP] = "tap",
	[S_ANTISPOOF] = "antispoof",
	[S_NETRULES] = "netrules",
	[S_ROOTDISK] = "rootdisk",
	[S_WORKDISK] = "workdisk",
	[S_SEED] = "seed",
	[S_LAUNCH] = "launch",
	[S_STOP_VMM] = "stop-vmm",
	[S_TEARDOWN] = "teardown",
	[S_APPLY_SPEC] = "apply-spec",
	[S_TOMBSTONE] = "tombstone",
	[S_REMOVE_DISKS] = "remove-disks",
	[S_REMOVE_FILES] = "remove-files",
	[S_RELEASE_IP] = "release-ip",
	[S_UNPIN] = "unpin",
	[S_FORGET] = "forget",
};

#define END S_MAX

/* clang-format off */
static const enum step_id steps_create[] = { S_RECORD, S_PREPARE, S_LEASE_IP, S_BRIDGE, S_TAP,
					     S_ANTISPOOF, S_NETRULES, S_ROOTDISK, S_WORKDISK,
					     S_SEED, S_LAUNCH, END };
static const enum step_id steps_start[] = { S_PREPARE, S_LEASE_IP, S_BRIDGE, S_TAP, S_ANTISPOOF,
					    S_NETRULES, S_ROOTDISK, S_WORKDISK, S_SEED, S_LAUNCH,
					    END };
static const enum step_id steps_restart[] = { S_STOP_VMM, S_TEARDOWN, S_PREPARE, S_LEASE_IP,
					      S_BRIDGE, S_TAP, S_ANTISPOOF, S_NETRULES,
					      S_ROOTDISK, S_WORKDISK, S_SEED, S_LAUNCH, END };
/* clang-format on */
static const enum step_id steps_stop[] = { S_STOP_VMM, S_TEARDOWN, END };
static const enum step_id steps_update[] = { S_APPLY_SPEC, S_NETRULES, END };
static const enum step_id steps_demote[] = { S_TEARDOWN, END };
static const enum step_id steps_delete[] = { S_TOMBSTONE,    S_STOP_VMM,     S_TEARDOWN,
					     S_REMOVE_DISKS, S_REMOVE_FILES, S_RELEASE_IP,
					     S_UNPIN,	     S_FORGET,	     END };

static const enum step_id *const action_steps[PLAN_ACTION_MAX] = {
	[PLAN_CREATE] = steps_create, [PLAN_START] = steps_start,   [PLAN_RESTART] = steps_restart,
	[PLAN_STOP] = steps_stop,     [PLAN_UPDATE] = steps_update, [PLAN_DEMOTE] = steps_demote,
	[PLAN_DELETE] = steps_delete,
};

/* clang-format off */
const char *const converge_failpoints[] = {
	"create.record", "create.prepare", "create.lease-ip", "create.bridge", "create.tap",
	"create.antispoof", "create.netrules", "create.rootdisk", "create.workdisk", "create.seed",
	"create.launch",
	"start.prepare", "start.lease-ip", "start.bridge", "start.tap", "start.antispoof",
	"start.netrules", "start.rootdisk", "start.workdisk", "start.seed", "start.launch",
	"restart.stop-vmm.waiting", "restart.stop-vmm", "restart.teardown", "restart.prepare", "restart.lease-ip",
	"restart.bridge", "restart.tap", "restart.antispoof", "restart.netrules",
	"restart.rootdisk", "restart.workdisk", "restart.seed", "restart.launch",
	"stop.stop-vmm.waiting", "stop.stop-vmm", "stop.teardown",
	"update.apply-spec", "update.netrules",
	"demote.teardown",
	"delete.tombstone", "delete.stop-vmm.waiting", "delete.stop-vmm", "delete.teardown", "delete.remove-disks",
	"delete.remove-files", "delete.release-ip", "delete.unpin", "delete.forget",
	NULL,
};
/* clang-format on */

/* One action on one VM in flight. */
struct conv {
	struct converge_env *env;
	const struct plan_action *a;
	enum plan_action_type type; /* the action being run (RESUME mapped to its action) */
	struct vm_record rec;	    /* working copy of the row */
	bool have_rec;		    /* the row exists */
	const struct vm_spec *spec; /* the spec to converge to */
	const char *hash;	    /* its hash, NULL when it is the record's own */
	struct vm_spec *rec_spec;   /* the record's spec, parsed (owned) */
	struct host_disk disk;	    /* root disk once made */
	bool have_disk;
	char tap[16];
};

static int64_t now_ms(const struct converge_env *env)
{
	return env->now ? env->now() : now_real_ms();
}

static int save(struct conv *c, struct bg_err *err)
{
	int r = store_vm_update(c->env->store, &c->rec, err);

	if (r < 0)
		return bg_err_wrap(err, "record vm '%s'", c->rec.name);
	return 0;
}

static void set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = xstrdup_null(src);
}

static void host_vm_of(const struct conv *c, struct host_vm *hv)
{
	const struct vm_spec *s = c->spec;

	memset(hv, 0, sizeof(*hv));
	hv->id = c->rec.id;
	hv->vm_dir = c->rec.vm_dir;
	hv->rootfs_image = s ? s->rootfs_image : NULL;
	hv->rootfs_size_mib = s ? s->rootfs_size_mib : 0;
	hv->cow_disk = c->rec.cow_disk;
	hv->work_disk = c->rec.work_disk;
	hv->work_disk_mib = s ? s->work_disk_mib : 0;
	hv->owner_uid = 0;
	hv->owner_gid = 0;
}

/* The driver configuration of a recorded VM (strings borrowed from rec, spec, tap). */
static void converge_vmm_config(const struct vm_record *rec, const struct vm_spec *spec,
				const char *tap, struct vmm_config *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->id = rec->id;
	ret->name = rec->name;
	if (spec) {
		ret->vcpus = spec->vcpus;
		ret->memory_mib = spec->memory_mib;
		ret->kernel = spec->kernel_path;
		ret->initrd = spec->kernel_initrd;
	}
	ret->work_disk = spec && spec->work_disk_mib ? rec->work_disk : NULL;
	ret->tap = tap;
	ret->mac = rec->mac;
	ret->cid = rec->cid;
	ret->vm_dir = rec->vm_dir;
	ret->ctl_sock = rec->api_sock;
	ret->console_log = rec->console_log;
}

/* The binary the daemon was told to use for this driver, or NULL for its default. */
static const char *binary_of(const struct conv *c, const struct vmm_driver *drv)
{
	int kind = vmm_kind_from_string(drv->name);

	if (!c->env->binaries || kind < 0)
		return NULL;
	return c->env->binaries[kind];
}

/* The driver this VM runs (or will run) with. */
static int driver_of(struct conv *c, const struct vmm_driver **ret, struct bg_err *err)
{
	const struct vm_spec *s = c->spec ? c->spec : c->rec_spec;
	enum vmm_kind kind = s ? s->vmm : VMM_AUTO;

	return c->env->driver_for(c->env->driver_ctx, kind, c->rec.vmm, ret, err);
}

/* The driver the VM's VMM was started with: stops and probes must use it, even
 * when the spec now names another VMM. */
static int driver_recorded(struct conv *c, const struct vmm_driver **ret, struct bg_err *err)
{
	return c->env->driver_for(c->env->driver_ctx, VMM_AUTO, c->rec.vmm, ret, err);
}

/* Remove the known_hosts pins of an address and/or of <name>.vm. */
static int unpin(struct conv *c, const char *ip, bool name_too, struct bg_err *err)
{
	_cleanup_free_ char *dns = xasprintf("%s.vm", c->rec.name);
	const char *hosts[2];
	size_t n = 0;
	int r;

	if (!c->env->known_hosts)
		return 0;
	if (ip)
		hosts[n++] = ip;
	if (name_too)
		hosts[n++] = dns;
	if (n == 0)
		return 0;
	r = known_hosts_remove(c->env->known_hosts, hosts, n, 22, err);
	return r < 0 ? r : 0;
}

/* ---- steps ------------------------------------------------------------------------- */

/* Copy the target spec into the row: the last-applied spec and its generation. */
static void apply_spec(struct conv *c)
{
	_cleanup_free_ char *json = NULL;

	if (!c->spec || !c->hash)
		return;
	if (strcmp(c->rec.spec_hash, c->hash) != 0) {
		json = spec_to_json(c->spec);
		set_str(&c->rec.spec_json, json);
		snprintf(c->rec.spec_hash, sizeof(c->rec.spec_hash), "%s", c->hash);
		c->rec.generation++;
	}
	c->rec.desired_state = c->spec->state;
	set_str(&c->rec.source_file, c->spec->source_file);
}

static int step_record(struct conv *c, struct bg_err *err)
{
	_cleanup_free_ char *json = NULL;
	int r;

	if (c->have_rec)
		return 0;
	memset(&c->rec, 0, sizeof(c->rec));
	c->rec.name = xstrdup(c->spec->name);
	json = spec_to_json(c->spec);
	c->rec.spec_json = TAKE_PTR(json);
	snprintf(c->rec.spec_hash, sizeof(c->rec.spec_hash), "%s", c->hash);
	c->rec.generation = 1;
	c->rec.observed_generation = 0;
	c->rec.phase = VM_PHASE_PENDING;
	c->rec.desired_state = c->spec->state;
	c->rec.source_file = xstrdup_null(c->spec->source_file);
	c->rec.last_exit = -1;
	c->rec.action = xstrdup("create");
	c->rec.step = xstrdup("record");
	r = store_vm_insert(c->env->store, &c->rec, err);
	if (r < 0)
		return bg_err_wrap(err, "record new vm '%s'", c->spec->name);
	c->have_rec = true;
	return 0;
}

static int check_sock_path(const char *path, struct bg_err *err)
{
	struct sockaddr_un sa;

	if (strlen(path) >= sizeof(sa.sun_path))
		return bg_errorf(err, ENAMETOOLONG,
				 "control socket path '%s' is longer than %zu bytes; use a shorter "
				 "--state-dir",
				 path, sizeof(sa.sun_path) - 1);
	return 0;
}

static int step_prepare(struct conv *c, struct bg_err *err)
{
	const struct vmm_driver *drv;
	int r;

	apply_spec(c);
	if (!c->rec.vm_dir)
		c->rec.vm_dir = paths_vm_dir(c->env->state_dir, c->rec.id);
	r = fs_mkdir_p(c->rec.vm_dir, 0700, err);
	if (r < 0)
		return r;
	r = driver_of(c, &drv, err);
	if (r < 0)
		return r;
	if (!c->rec.vmm || strcmp(c->rec.vmm, drv->name) != 0) {
		set_str(&c->rec.vmm, drv->name);
		free(c->rec.api_sock);
		/*
		 * Firecracker binds its sockets itself, as the VM's VMM uid: in a
		 * directory of their own (see firecracker.c fc_confine).
		 */
		c->rec.api_sock = xasprintf("%s/%s.sock", c->rec.vm_dir,
					    strcmp(drv->name, "qemu") == 0 ? "qmp" : "fc/api");
	}
	r = check_sock_path(c->rec.api_sock, err);
	if (r < 0)
		return r;
	if (!c->rec.console_log)
		c->rec.console_log = fs_path_join(c->rec.vm_dir, "console.log");
	if (!c->rec.disk_mode)
		c->rec.disk_mode = xstrdup(disk_mode_to_string(c->env->disk_mode));
	if (!c->rec.cow_disk)
		c->rec.cow_disk = fs_path_join(c->rec.vm_dir, "root.img");
	if (c->spec->work_disk_mib && !c->rec.work_disk)
		c->rec.work_disk = fs_path_join(c->rec.vm_dir, "work.ext4");
	return save(c, err);
}

static int step_lease_ip(struct conv *c, struct bg_err *err)
{
	char ip[16];
	int r;

	r = store_ip_lease(c->env->store, c->env->net.cidr, c->rec.id, c->spec->ip, ip, err);
	if (r < 0)
		return r;
	if (!c->rec.ip || strcmp(c->rec.ip, ip) != 0) {
		/* The old address may go to another VM: its pin must not outlive the move. */
		r = unpin(c, c->rec.ip, false, err);
		if (r < 0)
			return r;
		set_str(&c->rec.ip, ip);
		r = ipam_mac_from_ip(ip, c->rec.mac);
		if (r < 0)
			return bg_error(err, r, "derive MAC from '%s'", ip);
	}
	return save(c, err);
}

/* The nftables base of egress and forwards is made by step 'netrules' (converge_netrules). */
/*
 * The bridge, and banger's table of it (its input chain guards the bridge
 * address and the host's loopback from the first VM on; each VM's
 * netrules_ensure re-makes it too, so a flushed table is repaired per VM).
 */
static int step_bridge(struct conv *c, struct bg_err *err)
{
	int r = c->env->host->bridge_ensure(&c->env->net, err);

	return r < 0 ? r : c->env->host->netrules_base_ensure(&c->env->net, err);
}

static int step_tap(struct conv *c, struct bg_err *err)
{
	return c->env->host->tap_ensure(&c->env->net, c->tap, 0, 0, err);
}

/* The tap may only carry the VM's own MAC and address: before the guest runs. */
static int step_antispoof(struct conv *c, struct bg_err *err)
{
	return c->env->host->antispoof_ensure(&c->env->net, c->tap, c->rec.mac, c->rec.ip, err);
}

/* Is ip (dotted) inside the bridge's subnet? */
static bool in_bridge_subnet(const struct converge_env *env, const char *ip)
{
	uint32_t network, a;
	unsigned prefix;
	struct in_addr in;

	if (ipam_parse_subnet(env->net.cidr, NULL, &network, &prefix) < 0 ||
	    inet_pton(AF_INET, ip, &in) != 1)
		return false;
	a = ntohl(in.s_addr);
	return prefix && ((a ^ network) >> (32 - prefix)) == 0;
}

/*
 * The VM's egress and port forwards as its spec says (egress unset: the
 * daemon's --nat). A forward that cannot be taken is not a failure: the VM
 * runs without it and rec->net_error says why. That is a host port another
 * VM holds (named), which every resync tries again, so the forward follows
 * once the holder lets it go; or a host address in the guests' own subnet
 * (a guest's, or the gateway's: not the host's to forward). Sets
 * *ret_changed when net_error changed (with an event); the caller records
 * the row.
 */
static int netrules_sync(struct converge_env *env, struct vm_record *rec,
			 const struct vm_spec *spec, bool *ret_changed, struct bg_err *err)
{
	_cleanup_free_ struct host_forward *fwd = NULL;
	_cleanup_free_ struct host_forward_conflict *conflicts = NULL;
	_cleanup_buf_ struct buf msg = { 0 };
	size_t n_conflicts = 0, n_fwd = 0, n_ports = spec ? spec->n_ports : 0;
	bool nat = env->net.nat;
	char tap[16];
	int r;

	*ret_changed = false;
	if (!rec->ip)
		return bg_errorf(err, EINVAL, "vm '%s': no address recorded", rec->name);
	if (spec && spec->egress != SPEC_EGRESS_DEFAULT)
		nat = spec->egress == SPEC_EGRESS_NAT;
	buf_init(&msg);
	fwd = xcalloc(n_ports ? n_ports : 1, sizeof(*fwd));
	for (size_t i = 0; i < n_ports; i++) {
		const struct spec_port *p = &spec->ports[i];

		if (in_bridge_subnet(env, p->host_ip)) {
			buf_addf(&msg,
				 "%shost port %s:%u/%s: %s is in the guests' subnet %s, not an "
				 "address of the host",
				 msg.len ? "; " : "", p->host_ip, p->host_port,
				 spec_proto_to_string(p->protocol), p->host_ip, env->net.cidr);
			continue;
		}
		(void)str_copy(fwd[n_fwd].host_ip, sizeof(fwd[n_fwd].host_ip), p->host_ip);
		fwd[n_fwd].host_port = p->host_port;
		fwd[n_fwd].guest_port = p->guest_port;
		fwd[n_fwd].proto = p->protocol == SPEC_PROTO_UDP ? HOST_PROTO_UDP : HOST_PROTO_TCP;
		n_fwd++;
	}
	handles_tap_name(rec->id, tap);
	r = env->host->netrules_ensure(&env->net, tap, rec->ip, nat, fwd, n_fwd, &conflicts,
				       &n_conflicts, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_conflicts; i++) {
		const struct host_forward *f = &conflicts[i].fwd;
		struct vm_record holder = { 0 };
		const char *who = conflicts[i].holder_tap;

		/* The tap is "bg<id>": name the VM when this store knows it. */
		if (strncmp(who, "bg", 2) == 0 &&
		    store_vm_get(env->store, who + 2, &holder, NULL) == 0)
			who = holder.name;
		buf_addf(&msg, "%shost port %s:%u/%s is already forwarded to %s '%s'",
			 msg.len ? "; " : "", f->host_ip, f->host_port,
			 host_proto_to_string(f->proto),
			 who == conflicts[i].holder_tap ? "tap" : "vm", who);
		vm_record_release(&holder);
	}
	if (!str_eq(rec->net_error, msg.len ? msg.data : NULL)) {
		free(rec->net_error);
		rec->net_error = msg.len ? xstrdup(msg.data) : NULL;
		*ret_changed = true;
		(void)store_event_add(env->store, rec->name, msg.len ? "Warning" : "Normal",
				      msg.len ? "PortConflict" : "PortsForwarded",
				      msg.len ? msg.data : "every port forward is in place", NULL);
	}
	return 0;
}

/* Egress and forwards, once the tap and its filter are there (and live, on an update). */
static int step_netrules(struct conv *c, struct bg_err *err)
{
	const struct vm_spec *spec = c->spec ? c->spec : c->rec_spec;
	bool changed;
	int r;

	/*
	 * An update of a VM that does not run: its rules come with its next
	 * start. One that changed neither egress nor forwards touches nothing
	 * (a resumed one redoes them: the record already has the new spec).
	 */
	if (c->type == PLAN_UPDATE &&
	    ((c->rec.phase != VM_PHASE_STARTING && c->rec.phase != VM_PHASE_RUNNING) ||
	     (c->a->type != PLAN_RESUME && c->spec && c->rec_spec &&
	      c->spec->egress == c->rec_spec->egress && spec_ports_equal(c->spec, c->rec_spec))))
		return 0;
	r = netrules_sync(c->env, &c->rec, spec, &changed, err);
	if (r < 0 && c->type == PLAN_UPDATE) {
		/*
		 * The VM runs on either way: a failure to change its rules live is
		 * its network's error, not the VM's (no Failed phase, no backoff);
		 * every resync tries again and clears it.
		 */
		_cleanup_free_ char *msg = xasprintf("network rules: %s", err->msg);

		(void)store_event_add(c->env->store, c->rec.name, "Warning", "NetworkRulesFailed",
				      msg, NULL);
		set_str(&c->rec.net_error, msg);
		bg_err_clear(err);
		return save(c, err);
	}
	if (r < 0)
		return r;
	return changed ? save(c, err) : 0;
}

/*
 * What the VM's root disk was made from, as recorded next to it: the raw
 * image the host layer used (root.base: the spec's image, or the raw cache of
 * a qcow2 one; gc keeps caches named there) and the spec's image path
 * (root.image). VMs made before root.image existed only have root.base, which
 * was then the spec's path too. Owned strings, NULL when not recorded.
 */
static void rootdisk_recorded(const struct conv *c, char **ret_base, char **ret_image)
{
	_cleanup_free_ char *base_m = fs_path_join(c->rec.vm_dir, "root.base");
	_cleanup_free_ char *image_m = fs_path_join(c->rec.vm_dir, "root.image");
	char *base = NULL, *image = NULL;

	if (fs_read_file(base_m, 8192, &base, NULL, NULL) < 0)
		base = NULL;
	if (fs_read_file(image_m, 8192, &image, NULL, NULL) < 0)
		image = base ? xstrdup(base) : NULL;
	*ret_base = base;
	*ret_image = image;
}

/*
 * Open the spec's file 'path' for 'field' through the image roots; -1 in
 * ret_fd (and 0) when the daemon has none configured (unit tests).
 */
static int open_image(struct conv *c, const char *field, const char *path, unsigned line,
		      unsigned col, int *ret_fd, struct bg_err *err)
{
	const struct vm_spec *s = c->spec;
	int fd;

	*ret_fd = -1;
	if (!c->env->images)
		return 0;
	fd = imgpath_open_at(c->env->images, path, NULL, err);
	if (fd < 0) {
		/* Where the spec says it, when the spec came from a file. */
		if (s->source_file && line)
			return bg_err_wrap(err, "%s:%u:%u: spec.%s", s->source_file, line, col,
					   field);
		return bg_err_wrap(err, "spec.%s", field);
	}
	*ret_fd = fd;
	return 0;
}

/*
 * The root disk. When the spec names another image than the disk was made
 * from, the old copy-on-write layer is meaningless and is removed first (the
 * work disk is kept). A qcow2 image is resolved to its raw cache once, when
 * the disk is made; later starts keep the recorded base, so a dm snapshot
 * always sits on the origin it was made over. A root disk larger than the
 * image gets its ext filesystem grown to fill it before the guest first sees
 * it (a partitioned image is left to cloud-init's growpart in the guest).
 */
static int step_rootdisk(struct conv *c, struct bg_err *err)
{
	_cleanup_free_ char *base_m = fs_path_join(c->rec.vm_dir, "root.base");
	_cleanup_free_ char *image_m = fs_path_join(c->rec.vm_dir, "root.image");
	_cleanup_free_ char *old_base = NULL;
	_cleanup_free_ char *old_image = NULL;
	_cleanup_close_ int image_fd = -1;
	char base[4096];
	struct host_vm hv;
	int mode, r;

	mode = disk_mode_from_string(c->rec.disk_mode);
	if (mode < 0)
		return bg_errorf(err, EINVAL, "unknown disk mode '%s'", c->rec.disk_mode);
	host_vm_of(c, &hv);
	rootdisk_recorded(c, &old_base, &old_image);
	/*
	 * The spec's image is opened (and checked) before anything is done with
	 * it, even before an old disk is replaced for it, unless the disk stays
	 * on its recorded base and that base is a converted cache of banger's own.
	 */
	if (!old_base || !old_image || strcmp(old_image, c->spec->rootfs_image) != 0 ||
	    strcmp(old_base, c->spec->rootfs_image) == 0 || !fs_exists(old_base)) {
		r = open_image(c, "rootfs.image", c->spec->rootfs_image, c->spec->rootfs_image_line,
			       c->spec->rootfs_image_col, &image_fd, err);
		if (r < 0)
			return r;
	}
	if (old_image && strcmp(old_image, c->spec->rootfs_image) != 0) {
		hv.rootfs_image = old_base;
		r = c->env->host->rootdisk_remove(&hv, err);
		if (r < 0)
			return bg_err_wrap(err, "replace root disk made from '%s'", old_image);
		/* A fresh root disk: forget the old pins (the seed step pins again). */
		r = unpin(c, c->rec.ip, true, err);
		if (r < 0)
			return r;
		free(old_base);
		old_base = NULL;
		host_vm_of(c, &hv);
	}
	if (old_base && fs_exists(old_base)) {
		(void)str_copy(base, sizeof(base), old_base);
	} else {
		r = c->env->host->baseimg_resolve(c->env->state_dir, c->spec->rootfs_image,
						  image_fd, base, err);
		if (r < 0)
			return r;
	}
	hv.rootfs_image = base;
	if (image_fd >= 0 && strcmp(base, c->spec->rootfs_image) == 0) {
		/* A raw image: the disk is made from the checked fd, never the path. */
		hv.rootfs_has_fd = true;
		hv.rootfs_fd = image_fd;
	}
	r = c->env->host->rootdisk_ensure(&hv, (enum disk_mode)mode, &c->disk, err);
	if (r < 0)
		return r;
	c->have_disk = true;
	r = fs_write_atomic(image_m, c->spec->rootfs_image, strlen(c->spec->rootfs_image), 0600,
			    err);
	if (r >= 0)
		r = fs_write_atomic(base_m, base, strlen(base), 0600, err);
	if (r < 0)
		return r;
	r = c->env->host->rootfs_grow(c->disk.path, err);
	if (r < 0)
		return bg_err_wrap(err, "grow the root filesystem");
	if (r > 0)
		log_info("vm '%s': root filesystem grown to fill its disk", c->rec.name);
	return 0;
}

static int step_workdisk(struct conv *c, struct bg_err *err)
{
	struct host_vm hv;

	if (!c->spec->work_disk_mib)
		return 0;
	host_vm_of(c, &hv);
	return c->env->host->workdisk_ensure(&hv, err);
}

/* The bridge's address (the guests' gateway), netmask and prefix. */
static int guest_subnet(const struct conv *c, char gw_s[16], char mask_s[16], unsigned *ret_prefix,
			struct bg_err *err)
{
	uint32_t gw, network;
	unsigned prefix;
	struct in_addr a;
	int r;

	r = ipam_parse_subnet(c->env->net.cidr, &gw, &network, &prefix);
	if (r < 0)
		return bg_error(err, r, "bridge subnet '%s'", c->env->net.cidr);
	a.s_addr = htonl(gw);
	inet_ntop(AF_INET, &a, gw_s, 16);
	a.s_addr = htonl(prefix ? 0xffffffffU << (32 - prefix) : 0);
	inet_ntop(AF_INET, &a, mask_s, 16);
	if (ret_prefix)
		*ret_prefix = prefix;
	return 0;
}

/* banger's key and the spec's, as the text of an authorized_keys file. Owned. */
static char *guest_authorized_keys(const struct conv *c)
{
	struct buf keys;

	buf_init(&keys);
	if (c->env->authorized_keys)
		buf_addf(&keys, "%s\n", c->env->authorized_keys);
	for (size_t i = 0; i < c->spec->n_ssh_keys; i++)
		buf_addf(&keys, "%s\n", c->spec->ssh_keys[i]);
	return buf_detach(&keys, NULL);
}

/*
 * The guest-contract kernel arguments (extra: the spec's kernel.args, or
 * NULL for the copy on the seed). A guest configured from its seed alone gets
 * only the root disk and the user's arguments.
 */
static int guest_args(struct conv *c, const char *extra, char **ret, struct bg_err *err)
{
	_cleanup_free_ char *keys = NULL;
	char gw_s[16], mask_s[16];
	int r;

	r = guest_subnet(c, gw_s, mask_s, NULL, err);
	if (r < 0)
		return r;
	keys = guest_authorized_keys(c);
	return vmm_guest_args_dns(c->rec.ip, gw_s, mask_s,
				  c->env->n_nameservers ? c->env->nameservers[0] : NULL,
				  c->rec.name, c->spec->ssh_user, keys, extra, ret, err);
}

/* The VM's seed disk, or NULL when its guest reads none (guest.config: cmdline). Owned. */
static char *seed_path(const struct conv *c)
{
	if (c->spec->guest_config == GUEST_CONFIG_CMDLINE || !c->rec.vm_dir)
		return NULL;
	return fs_path_join(c->rec.vm_dir, "seed.iso");
}

/*
 * The guest's identity before it first boots: its SSH host key (made once per
 * VM, kept in its directory), pinned in banger's known_hosts for its address
 * and <name>.vm before any VMM runs, and the NoCloud seed that hands the key,
 * the network, the login keys and the user's user-data to the guest. The seed
 * is rewritten only when what it holds changed (a new spec generation, a
 * moved address), so a restart boots from the same bytes.
 */
/* Make (once) the VM's host key and pin it for its address and <name>.vm. */
static int pin_host_key(struct conv *c, struct hostkey *key, struct bg_err *err)
{
	_cleanup_free_ char *comment = xasprintf("banger-vm-%s", c->rec.name);
	_cleanup_free_ char *dns = xasprintf("%s.vm", c->rec.name);
	const char *pins[2] = { c->rec.ip, dns };
	_cleanup_free_ char *msg = NULL;
	int made, r;

	made = hostkey_ensure(c->rec.vm_dir, comment, key, err);
	if (made < 0)
		return made;
	if (c->env->known_hosts) {
		r = known_hosts_set_pin(c->env->known_hosts, pins, 2, 22, key->blob, key->blob_len,
					err);
		if (r < 0)
			return r;
	}
	if (made) {
		msg = xasprintf("ssh-ed25519 %s pinned for %s and %s before the first boot",
				key->fingerprint, c->rec.ip, dns);
		log_info("vm '%s': host key %s", c->rec.name, msg);
		(void)store_event_add(c->env->store, c->rec.name, "Normal", "HostKeyPinned", msg,
				      NULL);
	}
	return 0;
}

/* The seed's files for this VM and its key. */
static int render_seed(struct conv *c, const struct hostkey *key, struct seed_files *ret,
		       struct bg_err *err)
{
	_cleanup_free_ char *iid = xasprintf("iid-banger-%s", c->rec.id);
	_cleanup_free_ char *keys = guest_authorized_keys(c);
	_cleanup_free_ char *cmdline = NULL;
	char gw_s[16], mask_s[16];
	unsigned prefix;
	struct seed_input in;
	int r;

	r = guest_subnet(c, gw_s, mask_s, &prefix, err);
	if (r < 0)
		return r;
	r = guest_args(c, NULL, &cmdline, err);
	if (r < 0)
		return r;
	in = (struct seed_input){
		.instance_id = iid,
		.hostname = c->rec.name,
		.mac = c->rec.mac,
		.ip = c->rec.ip,
		.prefix = prefix,
		.gateway = gw_s,
		.nameservers = (const char *const *)c->env->nameservers,
		.n_nameservers = c->env->n_nameservers,
		.user = c->spec->ssh_user,
		.authorized_keys = keys,
		.host_key_private = key->private_key,
		.host_key_public = key->public_line,
		.work_disk_dev = c->spec->work_disk_mib ? "/dev/vdb" : NULL,
		.user_data = c->spec->cloudinit_user_data,
		.cmdline = cmdline,
	};
	return seed_render(&in, ret, err);
}

/* Write the seed ISO unless the one there was made from exactly these files (seed.sha256). */
static int write_seed(struct conv *c, const char *iso, const struct seed_files *f,
		      const struct hostkey *key, struct bg_err *err)
{
	_cleanup_free_ char *stamp = fs_path_join(c->rec.vm_dir, "seed.sha256");
	_cleanup_free_ char *old = NULL;
	char digest[SHA256_HEX_LEN + 1];
	struct buf all;
	int r;

	buf_init(&all);
	buf_addf(&all, "%s%c%s%c%s%c%s%c%s", f->meta_data, 0, f->network_config, 0, f->user_data, 0,
		 f->cmdline, 0, key->private_key);
	sha256_hex(all.data, all.len, digest);
	buf_release(&all);
	if (fs_exists(iso) && fs_read_file(stamp, 128, &old, NULL, NULL) == 0 &&
	    strcmp(old, digest) == 0)
		return 0;
	r = seed_write_iso(f, key->private_key, key->public_line, iso, err);
	if (r < 0)
		return r;
	return fs_write_atomic(stamp, digest, strlen(digest), 0600, err);
}

static int step_seed(struct conv *c, struct bg_err *err)
{
	_cleanup_free_ char *iso = seed_path(c);
	struct hostkey key = { 0 };
	struct seed_files files = { 0 };
	int r;

	if (!iso) {
		/* No seed: the guest makes its own key, trusted on first use. */
		_cleanup_free_ char *old =
			c->rec.vm_dir ? fs_path_join(c->rec.vm_dir, "seed.iso") : NULL;

		if (old && unlink(old) < 0 && errno != ENOENT)
			return bg_error(err, errno, "remove '%s'", old);
		return 0;
	}
	r = pin_host_key(c, &key, err);
	if (r >= 0)
		r = render_seed(c, &key, &files, err);
	if (r >= 0)
		r = write_seed(c, iso, &files, &key, err);
	seed_files_release(&files);
	hostkey_release(&key);
	return r;
}

/*
 * An alive VMM found at launch: adopt it (returns 0) unless its driver says
 * the guest was never started, in which case stop it (returns 1: launch anew).
 */
static int adopt_or_replace(struct conv *c, const struct vm_handles *h, struct bg_err *err)
{
	const struct vmm_driver *drv;
	struct vmm_config cfg;
	struct vmm_process proc = { .pid = h->pid, .start_time = h->start_time };
	enum vmm_guest_state gs = VMM_GUEST_UNKNOWN;
	struct bg_err perr = { 0 };
	int r;

	r = driver_recorded(c, &drv, err);
	if (r < 0)
		return r;
	converge_vmm_config(&c->rec, c->spec, c->tap, &cfg);
	cfg.binary = binary_of(c, drv);
	if (drv->probe(&cfg, &proc, &gs, &perr) == 0 && gs == VMM_GUEST_CONFIGURING) {
		log_notice("vm '%s': VMM pid %d was never told to boot; replacing it", c->rec.name,
			   (int)h->pid);
		r = drv->stop(&cfg, &proc, 0, err);
		if (r < 0)
			return bg_err_wrap(err, "stop unconfigured %s pid %d", drv->name,
					   (int)h->pid);
		return 1;
	}
	c->rec.phase = c->rec.phase == VM_PHASE_RUNNING ? VM_PHASE_RUNNING : VM_PHASE_STARTING;
	c->rec.observed_generation = c->rec.generation;
	return save(c, err);
}

/*
 * The VMM's copy of the spec's kernel or initrd ('field', at 'path'): read
 * from the checked fd into <vm_dir>/<name> (0600), so the VMM never opens a
 * path a spec author chose. NULL path: NULL. No image roots (unit tests):
 * the path itself.
 */
static int stage_boot_file(struct conv *c, const char *field, const char *path, unsigned line,
			   unsigned col, const char *name, char **ret, struct bg_err *err)
{
	_cleanup_free_ char *dst = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	*ret = NULL;
	if (!path)
		return 0;
	if (!c->env->images) {
		*ret = xstrdup(path);
		return 0;
	}
	r = open_image(c, field, path, line, col, &fd, err);
	if (r < 0)
		return r;
	dst = fs_path_join(c->rec.vm_dir, name);
	r = imgpath_copy_fd(fd, dst, err);
	if (r < 0)
		return bg_err_wrap(err, "spec.%s", field);
	*ret = TAKE_PTR(dst);
	return 0;
}

static int step_launch(struct conv *c, struct bg_err *err)
{
	_cleanup_free_ char *kernel = NULL, *initrd = NULL;
	_cleanup_free_ char *args = NULL;
	_cleanup_free_ char *seed = NULL;
	const struct vmm_driver *drv;
	struct vmm_config cfg;
	struct vmm_process proc = { 0 };
	struct vm_handles h;
	int r;

	if (c->spec->state == VM_DESIRED_STOPPED) {
		/* Created stopped: everything is ready, nothing runs. */
		c->rec.phase = VM_PHASE_STOPPED;
		return save(c, err);
	}
	r = handles_get(c->env->handles, &c->rec, &h, NULL, err);
	if (r < 0)
		return r;
	if (vm_alive(&h)) {
		/*
		 * Launched before a crash, or adopted: never start a second VMM. One
		 * that never got to boot its guest (a crash between spawning and
		 * configuring it) is replaced instead of being waited on forever.
		 */
		r = adopt_or_replace(c, &h, err);
		if (r <= 0)
			return r;
	}
	if (!c->have_disk) {
		/* Resumed at this step: the disk exists; ensure is idempotent and says where. */
		r = step_rootdisk(c, err);
		if (r < 0)
			return r;
	}
	r = driver_of(c, &drv, err);
	if (r < 0)
		return r;
	if (c->spec->guest_config == GUEST_CONFIG_CLOUDINIT)
		r = vmm_guest_root_args(c->spec->kernel_args, &args, err);
	else
		r = guest_args(c, c->spec->kernel_args, &args, err);
	if (r < 0)
		return r;
	r = stage_boot_file(c, "kernel.path", c->spec->kernel_path, c->spec->kernel_path_line,
			    c->spec->kernel_path_col, "kernel", &kernel, err);
	if (r >= 0)
		r = stage_boot_file(c, "kernel.initrd", c->spec->kernel_initrd,
				    c->spec->kernel_initrd_line, c->spec->kernel_initrd_col,
				    "initrd", &initrd, err);
	if (r < 0)
		return r;
	seed = seed_path(c);
	converge_vmm_config(&c->rec, c->spec, c->tap, &cfg);
	cfg.kernel = kernel;
	cfg.initrd = initrd;
	cfg.guest_args = args;
	cfg.seed_disk = seed;
	cfg.root_disk = c->disk.path;
	cfg.binary = binary_of(c, drv);
	cfg.sandbox = c->env->sandbox;
	r = drv->start(&cfg, &proc, err);
	if (r < 0)
		return bg_err_wrap(err, "start %s", drv->name);

	memset(&h, 0, sizeof(h));
	h.pid = proc.pid;
	h.start_time = proc.start_time;
	(void)str_copy(h.tap, sizeof(h.tap), c->tap);
	(void)str_copy(h.base_loop, sizeof(h.base_loop), c->disk.base_loop);
	(void)str_copy(h.cow_loop, sizeof(h.cow_loop), c->disk.cow_loop);
	(void)str_copy(h.dm_name, sizeof(h.dm_name), c->disk.dm_name);
	if (c->disk.mode == DISK_MODE_DM_SNAPSHOT)
		(void)str_copy(h.dm_dev, sizeof(h.dm_dev), c->disk.path);
	r = handles_put(c->env->handles, &c->rec, &h, err);
	if (r < 0)
		return r;
	c->rec.phase = VM_PHASE_STARTING;
	c->rec.observed_generation = c->rec.generation;
	c->rec.running_since = 0;
	c->rec.last_exit = -1;
	set_str(&c->rec.last_error, NULL);
	return save(c, err);
}

/*
 * The stop is a state machine whose stage and deadline live in the row
 * (vm.h, enum vm_stop_stage): the graceful request, then SIGTERM, then
 * SIGKILL, each waiting until its deadline for the VMM to exit. A step that
 * has to wait returns STEP_PENDING: the action stays recorded at this step,
 * the pass moves on, and the VMM's pidfd or the deadline brings the VM back
 * (plan: RESUME). A daemon restarted meanwhile keeps the recorded deadline.
 */
#define STOP_TERM_WAIT_MS 3000 /* after SIGTERM, before SIGKILL */
#define STOP_KILL_WAIT_MS 2000 /* after SIGKILL, before giving up */

/*
 * Record the stage and its deadline, and commit them at once (ending the
 * batch's group early, converge_batch): the request or signal that follows
 * must find them on disk, or a daemon restarted in between would start the
 * stop over with a new deadline. Stops are rare; one more sync is cheap.
 */
static int set_stop_stage(struct conv *c, enum vm_stop_stage stage, int64_t wait_ms,
			  struct bg_err *err)
{
	int r;

	c->rec.stop_stage = stage;
	c->rec.stop_deadline = stage == VM_STOP_NONE ? 0 : now_ms(c->env) + wait_ms;
	r = save(c, err);
	if (r >= 0)
		r = store_group_checkpoint(c->env->store, err);
	return r;
}

/*
 * Send the signal of the next stage. The stage is recorded first: a crash in
 * between leaves a stage whose signal was never sent, and the stop goes on
 * to the next one at its deadline (it ends the VMM either way).
 */
static int stop_escalate(struct conv *c, const struct vm_handles *h, struct bg_err *err)
{
	bool term = c->rec.stop_stage < VM_STOP_TERM;
	int sig = term ? SIGTERM : SIGKILL;
	struct bg_err serr = { 0 };
	int r;

	r = set_stop_stage(c, term ? VM_STOP_TERM : VM_STOP_KILL,
			   term ? STOP_TERM_WAIT_MS : STOP_KILL_WAIT_MS, err);
	if (r < 0)
		return r;
	log_notice("vm '%s': VMM pid %d still runs; sending %s", c->rec.name, (int)h->pid,
		   term ? "SIGTERM" : "SIGKILL");
	r = proc_signal(h->pid, h->start_time, sig, &serr);
	if (r < 0 && r != -ESRCH)
		return bg_errorf(err, -r, "%s", serr.msg);
	return STEP_PENDING;
}

/* The VMM exited during the stop: reap it if it is ours and remove its sockets. */
static int stop_gone(struct conv *c, const struct vmm_driver *drv, const struct vmm_config *cfg,
		     const struct vmm_process *proc, struct bg_err *err)
{
	struct bg_err serr = { 0 };

	if (proc->pid > 0 && drv->stop(cfg, proc, 0, &serr) < 0)
		log_warn("vm '%s': %s", c->rec.name, serr.msg);
	return set_stop_stage(c, VM_STOP_NONE, 0, err);
}

static int step_stop_vmm(struct conv *c, struct bg_err *err)
{
	const struct vmm_driver *drv;
	struct vm_handles h;
	struct vmm_config cfg;
	struct vmm_process proc;
	struct bg_err serr = { 0 };
	int r;

	r = handles_get(c->env->handles, &c->rec, &h, NULL, err);
	if (r < 0)
		return r;
	r = driver_recorded(c, &drv, err);
	if (r < 0)
		return r;
	converge_vmm_config(&c->rec, c->rec_spec, c->tap, &cfg);
	cfg.binary = binary_of(c, drv);
	proc.pid = h.pid;
	proc.start_time = h.start_time;
	if (!vm_alive(&h))
		return c->rec.stop_stage == VM_STOP_NONE ? 0 : stop_gone(c, drv, &cfg, &proc, err);
	if (c->rec.stop_stage != VM_STOP_NONE) {
		if (now_ms(c->env) < c->rec.stop_deadline)
			return STEP_PENDING;
		if (c->rec.stop_stage == VM_STOP_KILL)
			return bg_errorf(err, ETIMEDOUT, "%s pid %d is still there after SIGKILL",
					 drv->name, (int)h.pid);
		return stop_escalate(c, &h, err);
	}
	if (c->rec.phase != VM_PHASE_DELETING)
		c->rec.phase = VM_PHASE_STOPPING;
	if (c->env->stop_grace_ms <= 0 || !drv->shutdown)
		return stop_escalate(c, &h, err);
	r = set_stop_stage(c, VM_STOP_GRACEFUL, c->env->stop_grace_ms, err);
	if (r < 0)
		return r;
	if (drv->shutdown(&cfg, &proc, &serr) < 0) {
		/* Not started yet, no keyboard, no socket: straight to SIGTERM. */
		log_info("vm '%s': %s", c->rec.name, serr.msg);
		return stop_escalate(c, &h, err);
	}
	log_info("vm '%s': asked the guest to shut down; waiting up to %d ms", c->rec.name,
		 c->env->stop_grace_ms);
	/* A VMM that is gone already saves a pass. */
	if (!proc_identity_matches(h.pid, h.start_time))
		return stop_gone(c, drv, &cfg, &proc, err);
	return STEP_PENDING;
}

static int step_teardown(struct conv *c, struct bg_err *err)
{
	struct host_vm hv;
	struct vm_handles h;
	int r;

	/* Never tear down under a running VMM (a demote only happens when it is gone). */
	r = handles_get(c->env->handles, &c->rec, &h, NULL, err);
	if (r < 0)
		return r;
	if (vm_alive(&h))
		return bg_errorf(err, EBUSY, "VMM pid %d is still running", (int)h.pid);
	r = c->env->host->netrules_remove(&c->env->net, c->tap, err);
	if (r < 0)
		return r;
	if (c->rec.net_error) {
		set_str(&c->rec.net_error, NULL); /* a stopped VM holds no port */
		r = save(c, err);
		if (r < 0)
			return r;
	}
	r = c->env->host->antispoof_remove(&c->env->net, c->tap, err);
	if (r < 0)
		return r;
	r = c->env->host->tap_remove(c->tap, err);
	if (r < 0)
		return r;
	if (c->rec.vm_dir && c->rec.cow_disk) {
		_cleanup_free_ char *base = NULL;
		_cleanup_free_ char *image = NULL;

		host_vm_of(c, &hv);
		rootdisk_recorded(c, &base, &image);
		if (base)
			hv.rootfs_image = base;
		if (!hv.rootfs_image && c->rec_spec)
			hv.rootfs_image = c->rec_spec->rootfs_image;
		r = c->env->host->rootdisk_deactivate(&hv, err);
		if (r < 0)
			return r;
	}
	return handles_forget(c->env->handles, &c->rec, err);
}

static int step_apply_spec(struct conv *c, struct bg_err *err)
{
	apply_spec(c);
	if (c->rec.phase == VM_PHASE_STARTING || c->rec.phase == VM_PHASE_RUNNING)
		c->rec.observed_generation = c->rec.generation;
	return save(c, err);
}

static int step_tombstone(struct conv *c, struct bg_err *err)
{
	c->rec.phase = VM_PHASE_DELETING;
	return save(c, err);
}

static int step_remove_disks(struct conv *c, struct bg_err *err)
{
	_cleanup_free_ char *base = NULL;
	_cleanup_free_ char *image = NULL;
	struct host_vm hv;
	int r;

	if (!c->rec.vm_dir)
		return 0;
	host_vm_of(c, &hv);
	rootdisk_recorded(c, &base, &image);
	if (base)
		hv.rootfs_image = base;
	if (!hv.rootfs_image && c->rec_spec)
		hv.rootfs_image = c->rec_spec->rootfs_image;
	if (!hv.work_disk_mib && c->rec_spec)
		hv.work_disk_mib = c->rec_spec->work_disk_mib;
	if (c->rec.cow_disk) {
		r = c->env->host->rootdisk_remove(&hv, err);
		if (r < 0)
			return r;
	}
	if (c->rec.work_disk) {
		r = c->env->host->workdisk_remove(&hv, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int step_remove_files(struct conv *c, struct bg_err *err)
{
	_cleanup_free_ char *dir = NULL;

	/* Even a row that never got its paths owns <state>/vms/<id>. */
	dir = c->rec.vm_dir ? xstrdup(c->rec.vm_dir) : paths_vm_dir(c->env->state_dir, c->rec.id);
	return fs_remove_tree(dir, err);
}

static int step_release_ip(struct conv *c, struct bg_err *err)
{
	return store_ip_release(c->env->store, c->rec.id, err);
}

static int step_unpin(struct conv *c, struct bg_err *err)
{
	return unpin(c, c->rec.ip, true, err);
}

static int step_forget(struct conv *c, struct bg_err *err)
{
	int r = store_vm_delete(c->env->store, c->rec.id, err);

	if (r < 0)
		return r;
	c->have_rec = false;
	return 0;
}

typedef int (*step_fn)(struct conv *c, struct bg_err *err);

static const step_fn step_fns[S_MAX] = {
	[S_RECORD] = step_record,
	[S_PREPARE] = step_prepare,
	[S_LEASE_IP] = step_lease_ip,
	[S_BRIDGE] = step_bridge,
	[S_TAP] = step_tap,
	[S_ANTISPOOF] = step_antispoof,
	[S_NETRULES] = step_netrules,
	[S_ROOTDISK] = step_rootdisk,
	[S_WORKDISK] = step_workdisk,
	[S_SEED] = step_seed,
	[S_LAUNCH] = step_launch,
	[S_STOP_VMM] = step_stop_vmm,
	[S_TEARDOWN] = step_teardown,
	[S_APPLY_SPEC] = step_apply_spec,
	[S_TOMBSTONE] = step_tombstone,
	[S_REMOVE_DISKS] = step_remove_disks,
	[S_REMOVE_FILES] = step_remove_files,
	[S_RELEASE_IP] = step_release_ip,
	[S_UNPIN] = step_unpin,
	[S_FORGET] = step_forget,
};

/* ---- running an action ------------------------------------------------------------- */

static int set_step(struct conv *c, const char *step, struct bg_err *err)
{
	const char *action = step ? plan_action_to_string(c->type) : NULL;
	int r;

	/* A stop resumed pass after pass while it waits: the log already says so. */
	if (c->have_rec && str_eq(c->rec.action, action) && str_eq(c->rec.step, step))
		return 0;
	set_str(&c->rec.action, action);
	set_str(&c->rec.step, step);
	r = store_vm_set_step(c->env->store, c->rec.id, action, step, err);
	if (r < 0)
		return bg_err_wrap(err, "record step '%s' of vm '%s'", step ? step : "-",
				   c->rec.name);
	return 0;
}

static size_t first_step(const enum step_id *steps, const char *recorded)
{
	if (!recorded)
		return 0;
	for (size_t i = 0; steps[i] != END; i++)
		if (strcmp(step_names[steps[i]], recorded) == 0)
			return i;
	return 0; /* an unknown step: redo the whole action; steps are idempotent */
}

/* Record a failed action: Failed (Deleting stays Deleting), error, backoff. */
static void record_failure(struct conv *c, const char *step, const struct bg_err *cause)
{
	struct bg_err err = { 0 };
	_cleanup_free_ char *msg = NULL;
	int64_t now = now_ms(c->env);

	msg = xasprintf("%s %s: %s", plan_action_to_string(c->type), step, cause->msg);
	if (!c->have_rec) {
		(void)store_event_add(c->env->store, c->spec ? c->spec->name : NULL, "Warning",
				      "CreateFailed", msg, &err);
		return;
	}
	/* A failed delete stays a tombstone; a failed demote keeps the phase that made it
	 * a demote, so it is retried as one (a restart is the policy's call, not the
	 * failure's). Everything else is Failed. */
	if (c->rec.phase != VM_PHASE_DELETING && c->type != PLAN_DEMOTE)
		c->rec.phase = VM_PHASE_FAILED;
	set_str(&c->rec.last_error, msg);
	c->rec.stop_stage = VM_STOP_NONE; /* a failed stop starts over */
	c->rec.stop_deadline = 0;
	c->rec.failures++;
	c->rec.backoff_until = now + plan_backoff_ms(c->rec.failures);
	set_str(&c->rec.action, NULL);
	set_str(&c->rec.step, NULL);
	if (store_vm_update(c->env->store, &c->rec, &err) < 0)
		log_warn("vm '%s': could not record failure: %s, ignoring", c->rec.name, err.msg);
	bg_err_clear(&err);
	(void)store_event_add(c->env->store, c->rec.name, "Warning", "Failed", msg, &err);
}

static const char *done_reason(enum plan_action_type t)
{
	switch (t) {
	case PLAN_CREATE:
		return "Created";
	case PLAN_START:
		return "Started";
	case PLAN_RESTART:
		return "Restarted";
	case PLAN_STOP:
		return "Stopped";
	case PLAN_UPDATE:
		return "Updated";
	case PLAN_DEMOTE:
		return "Demoted";
	case PLAN_DELETE:
		return "Deleted";
	default:
		return "Converged";
	}
}

/* A one-line summary of a finished action for the events table. */
static char *done_message(const struct conv *c)
{
	switch (c->type) {
	case PLAN_CREATE:
	case PLAN_START:
	case PLAN_RESTART:
		if (c->rec.phase == VM_PHASE_STOPPED)
			return xasprintf("%s (stopped)", done_reason(c->type));
		return xasprintf("%s with %s, ip %s", done_reason(c->type),
				 c->rec.vmm ? c->rec.vmm : "?", c->rec.ip ? c->rec.ip : "?");
	case PLAN_DEMOTE:
		return xasprintf("VMM process %s; %s",
				 c->a->reason == PLAN_R_PID_REUSED
					 ? "is gone (its pid belongs to another process now)"
					 : "died",
				 c->rec.phase == VM_PHASE_FAILED ? "restarting after the backoff"
								 : "not restarted (restartPolicy)");
	default:
		return xstrdup(done_reason(c->type));
	}
}

/* Bookkeeping that ends an action successfully. */
static int finish(struct conv *c, struct bg_err *err)
{
	struct bg_err ev_err = { 0 };
	_cleanup_free_ char *msg = NULL;
	const char *name = c->rec.name ? c->rec.name : c->a->name;
	int r;

	if (c->type == PLAN_DEMOTE) {
		c->rec.phase =
			c->a->demote_to == VM_PHASE_STOPPED ? VM_PHASE_STOPPED : VM_PHASE_FAILED;
		if (c->rec.phase == VM_PHASE_FAILED) {
			c->rec.failures++;
			c->rec.restarts++;
			c->rec.backoff_until = now_ms(c->env) + plan_backoff_ms(c->rec.failures);
		}
		c->rec.running_since = 0;
	}
	if (c->type == PLAN_STOP) {
		c->rec.phase = VM_PHASE_STOPPED;
		c->rec.running_since = 0;
		/*
		 * Record the state actually reached. A stop resumed after a crash may
		 * find the spec says running again: then the spec is not applied, and
		 * the next pass starts the VM (it was stopped on purpose, not by policy).
		 */
		if (c->spec && c->spec->state == VM_DESIRED_STOPPED)
			apply_spec(c);
		c->rec.desired_state = VM_DESIRED_STOPPED;
	}
	msg = done_message(c);
	if (c->type == PLAN_DEMOTE)
		set_str(&c->rec.last_error, msg);
	if (c->have_rec) {
		set_str(&c->rec.action, NULL);
		set_str(&c->rec.step, NULL);
		r = save(c, err);
		if (r < 0)
			return r;
	}
	(void)store_event_add(c->env->store, name, c->type == PLAN_DEMOTE ? "Warning" : "Normal",
			      c->type == PLAN_DEMOTE ? plan_reason_to_string(c->a->reason)
						     : done_reason(c->type),
			      msg, &ev_err);
	return 0;
}

/* One action of a batch in flight: its working state and where it is. */
struct run {
	struct conv c;
	const enum step_id *steps;
	size_t i;	  /* the step to run next */
	bool active;	  /* still has steps to run in this pass */
	unsigned end_seq; /* store_group_seq() when it stopped: its end is on disk once past */
	int r;		  /* its result */
	struct bg_err *err;
};

/* Set up one action (what converge_action() did before its steps). */
static int run_init(struct run *u, struct converge_env *env, const struct plan_action *a)
{
	struct conv *c = &u->c;
	const char *resume_step = NULL;

	*c = (struct conv){ .env = env, .a = a };
	c->type = a->type == PLAN_RESUME ? a->resume : a->type;
	if ((unsigned)c->type >= PLAN_ACTION_MAX || !action_steps[c->type])
		return bg_errorf(u->err, EINVAL, "vm '%s': cannot run action '%s'", a->name,
				 plan_action_to_string(c->type));
	u->steps = action_steps[c->type];
	c->spec = a->spec;
	c->hash = a->hash;
	if (a->record) {
		vm_record_copy(&c->rec, a->record->rec);
		c->have_rec = true;
		if (c->rec.spec_json)
			(void)spec_from_json(c->rec.spec_json, &c->rec_spec, NULL);
		if (a->type == PLAN_RESUME)
			resume_step = a->record->rec->step;
		if (!c->spec)
			c->spec = c->rec_spec;
	}
	if (!c->spec && c->type != PLAN_DELETE && c->type != PLAN_DEMOTE)
		return bg_errorf(u->err, EINVAL, "vm '%s': no spec to %s", a->name,
				 plan_action_to_string(c->type));
	if (c->have_rec)
		handles_tap_name(c->rec.id, c->tap);

	if (a->type == PLAN_RESUME && c->rec.stop_stage != VM_STOP_NONE)
		log_debug("vm '%s': %s: waiting for the VMM to exit", a->name,
			  plan_action_to_string(c->type));
	else if (a->type == PLAN_RESUME)
		log_notice("vm '%s': resuming '%s' at step '%s' after a crash", a->name,
			   plan_action_to_string(c->type), resume_step ? resume_step : "?");
	else
		log_info("vm '%s': %s (%s)", a->name, plan_action_to_string(c->type),
			 plan_reason_to_string(a->reason));
	u->i = first_step(u->steps, resume_step);
	u->active = true;
	return 0;
}

/* The intent log: the next step is recorded before it touches anything. The row
 * for a new VM is made by its first step, with the step in it. */
static void run_intent(struct run *u)
{
	const char *name = step_names[u->steps[u->i]];

	if (u->steps[u->i] == S_RECORD)
		return;
	/* Not recorded: the step is not run, and the VM is left as it is (the next
	 * pass plans it again); only a step that ran and failed marks it Failed. */
	u->r = set_step(&u->c, name, u->err);
	if (u->r < 0)
		u->active = false;
}

/* Run the step whose intent is on disk; the last one finishes the action. */
static void run_step(struct run *u)
{
	struct conv *c = &u->c;
	enum step_id step = u->steps[u->i];
	const char *name = step_names[step];
	char fp[64];
	int r;

	log_debug("vm '%s': %s: step '%s'", c->a->name, plan_action_to_string(c->type), name);
	r = step_fns[step](c, u->err);
	if (r == STEP_PENDING) {
		/* Waiting for something outside: a later pass resumes this step. */
		snprintf(fp, sizeof(fp), "%s.%s.waiting", plan_action_to_string(c->type), name);
		failpoint(fp);
		u->r = 0;
		u->active = false;
		u->end_seq = store_group_seq(c->env->store);
		return;
	}
	if (r < 0) {
		bg_err_wrap(u->err, "vm '%s': %s: %s", c->a->name, plan_action_to_string(c->type),
			    name);
		record_failure(c, name, u->err);
		u->r = r;
		u->active = false;
		return;
	}
	if (step == S_RECORD)
		handles_tap_name(c->rec.id, c->tap);
	snprintf(fp, sizeof(fp), "%s.%s", plan_action_to_string(c->type), name);
	failpoint(fp);
	if (u->steps[++u->i] == END) {
		u->r = finish(c, u->err);
		u->active = false;
		u->end_seq = store_group_seq(c->env->store);
	}
}

/*
 * Actions run in lockstep rounds (converge.h): the intents of every action's
 * next step, then one commit, then the steps. A step's own writes (what it
 * made, a finished action's row and event) join the next round's intents, so
 * each round costs one sync for all actions and every step still starts with
 * its intent, and everything its action did before, on disk.
 */
static void run_batch(struct converge_env *env, struct run *runs, size_t n)
{
	struct bg_err gerr = { 0 };
	bool any = false;
	int r;

	for (size_t k = 0; k < n; k++)
		any = any || runs[k].active;
	if (!any)
		return;
	r = store_group_begin(env->store, &gerr);
	while (r >= 0 && any) {
		for (size_t k = 0; k < n; k++)
			if (runs[k].active)
				run_intent(&runs[k]);
		r = store_group_commit(env->store, &gerr);
		if (r < 0)
			break;
		r = store_group_begin(env->store, &gerr);
		if (r < 0)
			break;
		any = false;
		for (size_t k = 0; k < n; k++) {
			if (!runs[k].active)
				continue;
			run_step(&runs[k]);
			any = any || runs[k].active;
		}
	}
	if (r >= 0)
		r = store_group_commit(env->store, &gerr);
	if (r >= 0)
		return;
	/* Nothing of this round reached the disk: no step runs without its intent.
	 * What was done is found again by the next pass, as after a crash. */
	store_group_abort(env->store);
	for (size_t k = 0; k < n; k++) {
		struct run *u = &runs[k];

		/* Failed already, or ended and committed since (a later round's commit or a
		 * stop's checkpoint): not this failure's. */
		if (!u->steps || u->r < 0 ||
		    (!u->active && store_group_seq(env->store) != u->end_seq))
			continue;
		u->r = bg_errorf(u->err, gerr.code,
				 "vm '%s': %s: %s; the next pass resumes from the log",
				 u->c.a->name, plan_action_to_string(u->c.type), gerr.msg);
		u->active = false;
	}
}

size_t converge_batch(struct converge_env *env, const struct plan_action *const *acts, size_t n,
		      struct bg_err *errs)
{
	size_t failed = 0;

	/* Bounded batches: one slow step holds back at most this many other VMs. */
	for (size_t at = 0; at < n; at += CONVERGE_BATCH_MAX) {
		size_t m = n - at < CONVERGE_BATCH_MAX ? n - at : CONVERGE_BATCH_MAX;
		struct run *runs = xcalloc(m, sizeof(*runs));

		for (size_t k = 0; k < m; k++) {
			runs[k].err = &errs[at + k];
			bg_err_clear(runs[k].err);
			if (acts[at + k]->type != PLAN_NONE)
				runs[k].r = run_init(&runs[k], env, acts[at + k]);
		}
		run_batch(env, runs, m);
		for (size_t k = 0; k < m; k++) {
			if (runs[k].r < 0)
				failed++;
			else
				bg_err_clear(runs[k].err);
			vm_spec_free(runs[k].c.rec_spec);
			vm_record_release(&runs[k].c.rec);
		}
		free(runs);
	}
	return failed;
}

int converge_action(struct converge_env *env, const struct plan_action *a, struct bg_err *err)
{
	struct bg_err local = { 0 };

	if (!err)
		err = &local;
	if (converge_batch(env, &a, 1, err) == 0)
		return 0;
	return err->code ? err->code : -EIO;
}

int converge_guard(struct converge_env *env, const struct vm_record *rec, struct bg_err *err)
{
	char tap[16];
	int r;

	if (!rec->ip || !rec->mac[0])
		return bg_errorf(err, EINVAL, "vm '%s': no address recorded", rec->name);
	handles_tap_name(rec->id, tap);
	r = env->host->antispoof_ensure(&env->net, tap, rec->mac, rec->ip, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s'", rec->name);
	return 0;
}

int converge_netrules(struct converge_env *env, struct vm_record *rec, struct bg_err *err)
{
	_cleanup_(vm_spec_freep) struct vm_spec *spec = NULL;
	bool changed = false;
	int r;

	/* Without its spec the VM's rules are left as they are, not reset to defaults. */
	r = spec_from_json(rec->spec_json, &spec, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s': recorded spec", rec->name);
	r = netrules_sync(env, rec, spec, &changed, err);
	if (r >= 0 && changed)
		r = store_vm_update(env->store, rec, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s'", rec->name);
	return 0;
}
