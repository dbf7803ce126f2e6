/*
 * daemon.c - one reconcile pass and the daemon's state between passes; see daemon.h.
 */
#include "reconciler/daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/net.h"
#include "common/paths.h"
#include "common/proc.h"
#include "common/str.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/guest/ssh.h"
#include "reconciler/plan.h"
#include "reconciler/prober.h"
#include "reconciler/vmm/vmm.h"

#ifndef BANGER_VERSION
#define BANGER_VERSION "0.1.0"
#endif

#define PROBE_CONNECT_MS 1000 /* is port 22 open yet (waits beside the loop) */
#define PROBE_SSH_MS 4000     /* the SSH handshake once it is */
#define STARTING_POLL_MS 1000 /* from one probe of a booting guest to the next */

/* ---- driver choice ------------------------------------------------------------------ */

static int driver_for(void *ctx, enum vmm_kind kind, const char *recorded,
		      const struct vmm_driver **ret, struct bg_err *err)
{
	struct daemon *d = ctx;
	struct bg_err why = { 0 };

	/* A VM keeps the driver it runs with unless its spec names another one. */
	if (recorded && (kind == VMM_AUTO || str_eq(vmm_kind_to_string(kind), recorded))) {
		const struct vmm_driver *drv = vmm_driver_by_name(recorded);

		if (drv) {
			*ret = drv;
			return 0;
		}
	}
	if (kind == VMM_AUTO)
		kind = d->cfg.vmm;
	if (kind == VMM_FIRECRACKER && d->cfg.skip_kvm_check) {
		_cleanup_free_ char *bin = proc_find_in_path(
			d->cfg.binaries[VMM_FIRECRACKER] ? d->cfg.binaries[VMM_FIRECRACKER]
							 : "firecracker");

		if (!bin)
			return bg_errorf(err, ENOENT, "firecracker binary not found");
		*ret = &vmm_driver_firecracker;
		return 0;
	}
	return vmm_select(kind, d->cfg.binaries, ret, &why, err);
}

/* ---- init / fini ---------------------------------------------------------------------- */

static void report_leaks(struct daemon *d)
{
	struct vm_record *recs = NULL;
	struct host_orphan *orphans = NULL;
	const char **ids = NULL;
	size_t n = 0, n_orphans = 0;
	struct bg_err err = { 0 };

	if (store_vm_list(d->store, &recs, &n, &err) < 0) {
		log_warn("leak check: %s, skipping", err.msg);
		return;
	}
	ids = xcalloc(n + 1, sizeof(*ids));
	for (size_t i = 0; i < n; i++)
		ids[i] = recs[i].id;
	if (d->env.host->gc_scan(d->cfg.state_dir, ids, n, &orphans, &n_orphans, &err) < 0)
		log_warn("leak check: %s, skipping", err.msg);
	for (size_t i = 0; i < n_orphans; i++) {
		/* Taps on another bridge, dm devices of another state dir: another instance's. */
		if (!host_orphan_is_ours(&orphans[i], d->cfg.bridge))
			continue;
		log_warn("leaked %s '%s'%s%s belongs to no VM; 'banger gc' removes it",
			 host_orphan_kind_to_string(orphans[i].kind), orphans[i].name,
			 orphans[i].detail[0] ? " " : "", orphans[i].detail);
	}
	free(orphans);
	free(ids);
	vm_record_array_free(recs, n);
}

/* Say which VMM 'vmm: auto' specs will get, and why Firecracker was passed over. */
static void report_vmm_choice(const struct daemon *d)
{
	const struct vmm_driver *drv = NULL;
	struct bg_err why = { 0 }, err = { 0 };

	if (d->cfg.vmm != VMM_AUTO) {
		log_notice("vmm: specs that say 'auto' use %s (--vmm)",
			   vmm_kind_to_string(d->cfg.vmm));
		return;
	}
	if (vmm_select(VMM_AUTO, d->cfg.binaries, &drv, &why, &err) < 0) {
		log_warn("vmm: no VMM can run VMs on this host: %s", err.msg);
		return;
	}
	if (why.msg[0])
		log_notice("vmm: auto picks %s (%s)", drv->name, why.msg);
	else
		log_notice("vmm: auto picks %s", drv->name);
}

/*
 * The state dir and its ssh dir hold banger's client key, every VM's host key
 * and disks: others must not read them. An existing directory keeps its group
 * bits (an admin may share it with a group) but loses any access by others
 * when they may read or write it, with a warning; group write access is worth
 * a warning too.
 */
static void fix_dir_mode(const char *dir)
{
	struct stat st;
	mode_t m;

	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	m = st.st_mode & 07777;
	/*
	 * Search alone (o+x) is what a Firecracker VM's uid needs to reach its
	 * VM dir (vmm_sandbox_traverse()): it lists and reads nothing.
	 */
	if (m & 0006) {
		if (chmod(dir, m & ~(mode_t)0007) == 0)
			log_warn("'%s' was open to others (mode %04o); now %04o: it holds private "
				 "keys and VM disks",
				 dir, (unsigned)m, (unsigned)(m & ~(mode_t)0007));
		else
			log_warn("'%s' is open to others (mode %04o) and cannot be changed: %s",
				 dir, (unsigned)m, strerror(errno));
	}
	if (m & 0020)
		log_warn("'%s' is writable by its group (mode %04o); it should be 0700 or 0750",
			 dir, (unsigned)(m & ~(mode_t)0007));
}

/*
 * With bangerd's DNS responder on port 53 the guests' nameserver is the
 * bridge address (guests' resolvers ask port 53 only; another port is for
 * tests). Else, with NAT, the guests can reach the host's resolvers: hand
 * them to the guests' network-config. A systemd-resolved stub (127.0.0.53)
 * is loopback, so its upstream list is used instead. Without NAT no resolver
 * is reachable.
 */
static void guest_nameservers(struct daemon *d)
{
	static const char *const files[] = { "/etc/resolv.conf",
					     "/run/systemd/resolve/resolv.conf" };
	struct bg_err err = { 0 };
	uint32_t gw, net;
	unsigned prefix;

	if (d->cfg.dns_port == 53 && ipam_parse_subnet(d->cfg.subnet, &gw, &net, &prefix) == 0) {
		d->env.nameservers = xcalloc(2, sizeof(char *));
		d->env.nameservers[0] = xasprintf("%u.%u.%u.%u", gw >> 24, (gw >> 16) & 0xff,
						  (gw >> 8) & 0xff, gw & 0xff);
		d->env.n_nameservers = 1;
		log_info("guest DNS: bangerd's responder on %s", d->env.nameservers[0]);
		return;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char **ns = NULL;
		int n = net_resolv_nameservers(files[i], &ns, &err);

		if (n < 0) {
			log_warn("guest DNS: %s, ignoring", err.msg);
			bg_err_clear(&err);
			continue;
		}
		if (n > 0) {
			d->env.nameservers = ns;
			d->env.n_nameservers = (size_t)n;
			log_info("guest DNS: %d nameserver(s) from %s", n, files[i]);
			return;
		}
		strv_free(ns);
	}
	log_info("guest DNS: no usable nameserver in /etc/resolv.conf");
}

/*
 * The image roots must stay clear of banger's private dirs, also once
 * symlinks in them are followed (the root is opened following them).
 */
static int check_image_dirs(const struct daemon_config *cfg, struct bg_err *err)
{
	_cleanup_free_ char *state_real = realpath(cfg->state_dir, NULL);

	for (size_t i = 0; i < cfg->n_image_dirs; i++) {
		_cleanup_free_ char *real = realpath(cfg->image_dirs[i], NULL);
		int r = imgpath_root_check(cfg->image_dirs[i], cfg->state_dir, err);

		if (r >= 0 && real && state_real && strcmp(real, cfg->image_dirs[i]) != 0)
			r = imgpath_root_check(real, state_real, err);
		if (r < 0)
			return bg_err_wrap(err, "--image-dir");
		if (!real)
			log_warn("image directory '%s': %s (specs naming files below it will fail)",
				 cfg->image_dirs[i], strerror(errno));
	}
	return 0;
}

int daemon_init(struct daemon *d, const struct daemon_config *cfg, struct bg_err *err)
{
	_cleanup_free_ char *db = NULL, *ssh_dir = NULL;
	int r;

	memset(d, 0, sizeof(*d));
	d->cfg = *cfg;
	if (!d->cfg.host)
		d->cfg.host = &host_ops_linux;
	d->started_at = now_real_ms();

	r = fs_mkdir_p(cfg->state_dir, 0700, err);
	if (r < 0)
		return bg_err_wrap(err, "state directory");
	ssh_dir = paths_ssh_dir(cfg->state_dir);
	r = fs_mkdir_p(ssh_dir, 0700, err);
	if (r < 0)
		return r;
	fix_dir_mode(cfg->state_dir);
	fix_dir_mode(ssh_dir);
	r = check_image_dirs(cfg, err);
	if (r < 0)
		return r;
	db = paths_db(cfg->state_dir);
	r = store_open(db, STORE_READ_WRITE, &d->store, err);
	if (r < 0)
		return r;
	d->handles = handles_cache_new();
	d->specs = spec_cache_new(cfg->spec_dir);
	{
		uid_t first, count;

		r = vmm_sandbox_parse_uids(cfg->vmm_uids ? cfg->vmm_uids : VMM_SANDBOX_DEFAULT_UIDS,
					   &first, &count, err);
		if (r < 0)
			return r;
		vmm_sandbox_init(&d->sandbox, first, count);
		handles_cache_set_vmm_uids(d->handles, first, count);
	}
	{
		/* Rediscovery adopts only processes running these binaries. */
		_cleanup_free_ char *fc = proc_find_in_path(cfg->binaries[VMM_FIRECRACKER]
								    ? cfg->binaries[VMM_FIRECRACKER]
								    : "firecracker");
		_cleanup_free_ char *qemu = proc_find_in_path(
			cfg->binaries[VMM_QEMU] ? cfg->binaries[VMM_QEMU] : "qemu-system-x86_64");

		handles_cache_set_vmm_binary(d->handles, "firecracker", fc);
		handles_cache_set_vmm_binary(d->handles, "qemu", qemu);
	}
	d->known_hosts = paths_known_hosts(cfg->state_dir);
	d->client_key = paths_client_key(cfg->state_dir);
	r = ssh_client_key_ensure(d->client_key, &d->client_pubkey, err);
	if (r < 0)
		return bg_err_wrap(err, "banger's SSH key");
	r = d->cfg.host->disk_mode_detect(cfg->state_dir, &d->disk_mode, err);
	if (r < 0)
		return bg_err_wrap(err, "detect disk mode");
	log_info("root disks: %s", disk_mode_to_string(d->disk_mode));

	d->env.store = d->store;
	d->env.handles = d->handles;
	d->env.host = d->cfg.host;
	d->env.net.bridge = cfg->bridge;
	d->env.net.cidr = cfg->subnet;
	d->env.net.nat = cfg->nat;
	d->env.disk_mode = d->disk_mode;
	d->env.state_dir = cfg->state_dir;
	d->env.known_hosts = d->known_hosts;
	d->env.authorized_keys = d->client_pubkey;
	d->env.stop_grace_ms = cfg->stop_grace_ms;
	d->env.binaries = d->cfg.binaries;
	d->env.sandbox = &d->sandbox;
	if (cfg->n_image_dirs) {
		d->images.roots = cfg->image_dirs;
		d->images.n_roots = cfg->n_image_dirs;
		d->images.state_dir = cfg->state_dir;
		d->env.images = &d->images;
	}
	d->env.driver_for = driver_for;
	d->env.driver_ctx = d;
	if (cfg->nat || cfg->dns_port == 53)
		guest_nameservers(d);

	{
		struct prober_config pc = {
			.known_hosts = d->known_hosts,
			.identity = d->client_key,
			.port = 22,
			.connect_ms = PROBE_CONNECT_MS,
			.ssh_ms = PROBE_SSH_MS,
			.interval_ms = STARTING_POLL_MS,
		};

		r = prober_new(&pc, &d->prober, err);
		if (r < 0)
			return r;
	}
	report_vmm_choice(d);
	report_leaks(d);
	return 0;
}

void daemon_fini(struct daemon *d)
{
	prober_free(d->prober);
	handles_cache_free(d->handles);
	spec_cache_free(d->specs);
	if (d->store)
		store_free(d->store);
	free(d->known_hosts);
	free(d->client_key);
	free(d->client_pubkey);
	strv_free(d->env.nameservers);
	free(d->spec_errors);
	free(d->alive);
	free(d->seen);
	for (size_t i = 0; i < d->n_absent; i++)
		free(d->absent[i].name);
	free(d->absent);
	memset(d, 0, sizeof(*d));
}

void daemon_hint_paths(struct daemon *d, const char *const *paths, size_t n, bool all)
{
	spec_cache_hint(d->specs, paths, n, all);
}

void daemon_set_writing(struct daemon *d, bool (*writing)(void *ctx, const char *path), void *ctx)
{
	spec_cache_set_writing(d->specs, writing, ctx);
}

bool daemon_reaped(struct daemon *d, pid_t pid, int wait_status)
{
	if (d->prober && prober_reaped(d->prober, pid, wait_status))
		return false;

	int status = WIFEXITED(wait_status)	? WEXITSTATUS(wait_status)
		     : WIFSIGNALED(wait_status) ? 128 + WTERMSIG(wait_status)
						: -1;

	if (d->n_reaped == ARRAY_SIZE(d->reaped)) {
		memmove(d->reaped, d->reaped + 1, sizeof(d->reaped) - sizeof(d->reaped[0]));
		d->n_reaped--;
	}
	d->reaped[d->n_reaped].pid = pid;
	d->reaped[d->n_reaped].status = status;
	d->n_reaped++;
	log_info("VMM pid %d exited with status %d", (int)pid, status);
	return true;
}

static int reaped_status(const struct daemon *d, pid_t pid)
{
	for (size_t i = d->n_reaped; i-- > 0;)
		if (d->reaped[i].pid == pid)
			return d->reaped[i].status;
	return -1;
}

/* ---- spec errors ------------------------------------------------------------------------ */

/* Report spec diagnostics: logged and recorded as events only when they change. */
static char *spec_errors_text(const struct spec_set *set)
{
	struct buf b;

	if (set->n_diags == 0)
		return NULL;
	buf_init(&b);
	for (size_t i = 0; i < set->n_diags; i++) {
		_cleanup_free_ char *line = spec_diag_format(&set->diags[i]);

		buf_addf(&b, "%s%s", i ? "\n" : "", line);
	}
	return buf_detach(&b, NULL);
}

static void report_spec_errors(struct daemon *d, const struct spec_set *set)
{
	_cleanup_free_ char *text = spec_errors_text(set);
	struct bg_err err = { 0 };

	if (str_eq(text, d->spec_errors))
		return;
	for (size_t i = 0; i < set->n_diags; i++) {
		_cleanup_free_ char *line = spec_diag_format(&set->diags[i]);

		log_warn("%s", line);
		(void)store_event_add(d->store, NULL, "Warning", "SpecError", line, &err);
	}
	if (!text && d->spec_errors) {
		log_notice("spec errors resolved");
		(void)store_event_add(d->store, NULL, "Normal", "SpecErrorsResolved",
				      "all spec files load again", &err);
	}
	free(d->spec_errors);
	d->spec_errors = TAKE_PTR(text);
}

/* ---- observing guests ----------------------------------------------------------------- */

static void wake_at(struct daemon *d, int64_t when)
{
	if (when > 0 && (d->next_wakeup == 0 || when < d->next_wakeup))
		d->next_wakeup = when;
}

/*
 * What the last readiness probe of a Starting VM found (prober.h): a guest
 * answering SSH with banger's key makes it Running; a changed host key is
 * recorded once. The probe only reported; this pass writes.
 */
static void apply_probe(struct daemon *d, struct vm_record *rec, const struct probe_result *res)
{
	struct bg_err err = { 0 };
	_cleanup_free_ char *msg = NULL;

	if (res->outcome == PROBE_KEY_REJECTED) {
		if (str_eq(rec->last_error, res->msg))
			return;
		log_err("vm '%s': %s", rec->name, res->msg);
		free(rec->last_error);
		rec->last_error = xstrdup(res->msg);
		(void)store_vm_update(d->store, rec, NULL);
		(void)store_event_add(d->store, rec->name, "Warning", "HostKeyChanged", res->msg,
				      NULL);
		return;
	}
	if (res->outcome != PROBE_READY) {
		log_debug("vm '%s': SSH not ready: %s", rec->name, res->msg);
		return;
	}
	rec->phase = VM_PHASE_RUNNING;
	rec->running_since = now_real_ms();
	free(rec->last_error);
	rec->last_error = NULL;
	if (store_vm_update(d->store, rec, &err) < 0) {
		log_warn("vm '%s': %s", rec->name, err.msg);
		return;
	}
	msg = xasprintf("guest answers SSH at %s", rec->ip);
	log_notice("vm '%s': Running (%s)", rec->name, msg);
	(void)store_event_add(d->store, rec->name, "Normal", "Ready", msg, NULL);
}

/*
 * The VM's tap filter, re-ensured on every full resync and before each
 * readiness probe: the probe then only reaches an address that no other
 * guest can claim. false (logged) when it cannot be made.
 */
static bool guard(struct daemon *d, const struct vm_record *rec)
{
	struct bg_err err = { 0 };

	if (converge_guard(&d->env, rec, &err) < 0) {
		log_warn("%s (a Starting VM is not probed without it)", err.msg);
		return false;
	}
	return true;
}

static int vmm_id_cmp(const void *a, const void *b)
{
	return strcmp(((const struct daemon_vmm *)a)->id, ((const struct daemon_vmm *)b)->id);
}

/*
 * Is the VM's VMM alive? Then the loop watches its pidfd (d->alive). A VMM
 * this pass saw alive at its start, on a VM it did nothing to, is taken as
 * still alive without reading /proc again (one read per VM per pass, not
 * two): had it died since, its pidfd wakes the next pass.
 */
static bool watch_alive(struct daemon *d, const struct vm_record *rec)
{
	struct daemon_vmm key, *seen = NULL, *a = &d->alive[d->n_alive];
	struct vm_handles h;
	struct bg_err err = { 0 };

	memcpy(key.id, rec->id, sizeof(key.id));
	if (d->n_seen)
		seen = bsearch(&key, d->seen, d->n_seen, sizeof(*d->seen), vmm_id_cmp);
	if (seen) {
		*a = *seen;
	} else {
		if (handles_get(d->handles, rec, &h, NULL, &err) < 0 || !vm_alive(&h))
			return false;
		memcpy(a->id, rec->id, sizeof(rec->id));
		a->pid = h.pid;
		a->start_time = h.start_time;
	}
	d->n_alive++;
	return true;
}

/* What the pass saw alive at its start, minus the VMs it acted on (sorted by id). */
static void keep_seen(struct daemon *d, const struct plan_record *prs, size_t n,
		      const struct vm_handles *hs, const struct plan_action *acts, size_t n_acts)
{
	bool *acted = xcalloc(n + 1, sizeof(*acted));

	for (size_t k = 0; k < n_acts; k++)
		if (acts[k].type != PLAN_NONE && acts[k].record)
			acted[acts[k].record - prs] = true;
	free(d->seen);
	d->seen = xcalloc(n + 1, sizeof(*d->seen));
	d->n_seen = 0;
	for (size_t i = 0; i < n; i++) {
		if (prs[i].liveness != VM_LIVENESS_ALIVE || acted[i])
			continue;
		memcpy(d->seen[d->n_seen].id, prs[i].rec->id, sizeof(d->seen[0].id));
		d->seen[d->n_seen].pid = hs[i].pid;
		d->seen[d->n_seen].start_time = hs[i].start_time;
		d->n_seen++;
	}
	free(acted);
	qsort(d->seen, d->n_seen, sizeof(*d->seen), vmm_id_cmp);
}

static void forget_seen(struct daemon *d)
{
	free(d->seen);
	d->seen = NULL;
	d->n_seen = 0;
}

/*
 * A Starting VM: take its last probe's result, and ask for the next probe
 * when one is due (its tap filter first, so the probe only reaches an
 * address no other guest can claim). The probe runs beside the loop; its
 * result wakes the loop.
 */
static void observe_starting(struct daemon *d, struct vm_record *rec)
{
	_cleanup_(vm_spec_freep) struct vm_spec *spec = NULL;
	struct probe_result res;
	int64_t due;

	if (!d->prober || !rec->ip)
		return;
	if (prober_take(d->prober, rec->id, &res)) {
		apply_probe(d, rec, &res);
		if (rec->phase != VM_PHASE_STARTING)
			return;
	}
	due = prober_due(d->prober, rec->id);
	if (due == 0) {
		struct probe_request req = { rec->id, rec->name, rec->ip, "root" };

		(void)spec_from_json(rec->spec_json, &spec, NULL);
		if (spec && spec->ssh_user)
			req.user = spec->ssh_user;
		if (!guard(d, rec)) {
			wake_at(d, now_real_ms() + STARTING_POLL_MS);
			return;
		}
		due = prober_want(d->prober, &req);
	}
	if (due > 0)
		wake_at(d, now_real_ms() + due);
}

/*
 * Must this resync re-ensure every Running VM's tap filter and rules? Not
 * when the kernel's nftables generation is the one read right after the
 * last complete re-ensure (no rule of anyone's changed since: nothing can
 * have drifted) and no Running VM is short of its rules (netError: a
 * forward held by another VM, a change the host refused), which only a
 * re-ensure can fix. Each re-ensure is one libnftables run that grows with
 * the ruleset, so doing them all at every resync costs O(N^2).
 */
static bool rules_recheck_needed(struct daemon *d, const struct vm_record *recs, size_t n)
{
	uint32_t gen;

	if (!d->rules_gen_known || !d->cfg.host->rules_generation)
		return true;
	for (size_t i = 0; i < n; i++)
		if (recs[i].phase == VM_PHASE_RUNNING && recs[i].net_error)
			return true;
	if (d->cfg.host->rules_generation(&gen, NULL) < 0)
		return true;
	return gen != d->rules_gen;
}

/* After a complete re-ensure: the generation it left (a failure leaves none). */
static void rules_rechecked(struct daemon *d, bool ok)
{
	d->rules_gen_known = ok && d->cfg.host->rules_generation &&
			     d->cfg.host->rules_generation(&d->rules_gen, NULL) == 0;
}

static void observe(struct daemon *d, bool full)
{
	struct vm_record *recs = NULL;
	size_t n = 0;
	struct bg_err err = { 0 };
	int64_t now = now_real_ms();
	bool recheck = false, recheck_ok = true;

	free(d->alive);
	d->alive = NULL;
	d->n_alive = 0;
	if (store_vm_list(d->store, &recs, &n, &err) < 0) {
		log_warn("observe: %s", err.msg);
		return;
	}
	d->alive = xcalloc(n ? n : 1, sizeof(*d->alive));
	recheck = full && rules_recheck_needed(d, recs, n);
	for (size_t i = 0; i < n; i++) {
		struct vm_record *rec = &recs[i];

		/* A failure or a demote set a backoff: look again when it ends. */
		if (rec->backoff_until > now && rec->phase != VM_PHASE_STARTING &&
		    rec->phase != VM_PHASE_RUNNING)
			wake_at(d, rec->backoff_until);
		/* A stop waits for its VMM's exit (pidfd) or its deadline. */
		if (rec->stop_stage != VM_STOP_NONE) {
			/* Past it and still waiting (the action failed early): retry, not spin. */
			wake_at(d, rec->stop_deadline > now ? rec->stop_deadline
							    : now + STARTING_POLL_MS);
			(void)watch_alive(d, rec);
			continue;
		}
		if (rec->phase != VM_PHASE_STARTING && rec->phase != VM_PHASE_RUNNING)
			continue;
		if (!watch_alive(d, rec))
			continue;
		if (rec->console_log &&
		    vmm_console_rotate(rec->console_log, VMM_CONSOLE_MAX_BYTES, &err) < 0) {
			log_debug("vm '%s': %s", rec->name, err.msg);
			bg_err_clear(&err);
		}
		if (rec->phase == VM_PHASE_STARTING) {
			observe_starting(d, rec);
			continue;
		}
		if (recheck) {
			recheck_ok &= guard(d, rec);
			if (converge_netrules(&d->env, rec, &err) < 0) {
				log_warn("%s", err.msg);
				bg_err_clear(&err);
				recheck_ok = false;
			}
		}
		/* A stable run forgives earlier failures. */
		if (rec->failures > 0 && rec->running_since &&
		    now - rec->running_since >= PLAN_STABLE_RUN_MS) {
			rec->failures = 0;
			rec->backoff_until = 0;
			(void)store_vm_update(d->store, rec, NULL);
		} else if (rec->failures > 0 && rec->running_since) {
			wake_at(d, rec->running_since + PLAN_STABLE_RUN_MS);
		}
	}
	vm_record_array_free(recs, n);
	if (recheck)
		rules_rechecked(d, recheck_ok);
	if (d->prober)
		prober_sweep(d->prober);
}

/* ---- guards ---------------------------------------------------------------------------- */

/*
 * May a VM whose spec is gone be deleted now? Only after the spec has stayed
 * gone for DAEMON_DELETE_GRACE_MS; until then the pass schedules a look again.
 * (prune_absent() forgets VMs whose spec came back.)
 */
static bool delete_grace_passed(struct daemon *d, const char *name, int64_t now)
{
	for (size_t i = 0; i < d->n_absent; i++) {
		if (strcmp(d->absent[i].name, name) != 0)
			continue;
		if (now - d->absent[i].since >= DAEMON_DELETE_GRACE_MS)
			return true;
		wake_at(d, d->absent[i].since + DAEMON_DELETE_GRACE_MS);
		return false;
	}
	d->absent = xreallocarray(d->absent, d->n_absent + 1, sizeof(*d->absent));
	d->absent[d->n_absent].name = xstrdup(name);
	d->absent[d->n_absent].since = now;
	d->n_absent++;
	log_info("vm '%s': its spec is gone; deleting it if it stays gone for %d ms", name,
		 DAEMON_DELETE_GRACE_MS);
	wake_at(d, now + DAEMON_DELETE_GRACE_MS);
	return false;
}

/* Forget absence records of names that are not waiting for a delete any more. */
static void prune_absent(struct daemon *d, const struct plan_action *acts, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < d->n_absent; i++) {
		bool pending = false;

		for (size_t a = 0; a < n && !pending; a++)
			pending = acts[a].type == PLAN_DELETE &&
				  acts[a].reason == PLAN_R_SPEC_REMOVED &&
				  strcmp(acts[a].name, d->absent[i].name) == 0;
		if (pending)
			d->absent[k++] = d->absent[i];
		else
			free(d->absent[i].name);
	}
	d->n_absent = k;
}

/* The spec directory itself must be readable: an unreadable or missing one is not
 * "no VMs wanted" (that would delete them all) but an error that stops the pass. */
static int check_spec_dir(struct daemon *d, struct spec_set *set)
{
	DIR *dir = opendir(d->cfg.spec_dir);
	int e;

	if (dir) {
		closedir(dir);
		return 0;
	}
	e = errno;
	set->diags = xreallocarray(set->diags, set->n_diags + 1, sizeof(*set->diags));
	set->diags[set->n_diags].file = xstrdup(d->cfg.spec_dir);
	set->diags[set->n_diags].line = 0;
	set->diags[set->n_diags].col = 0;
	set->diags[set->n_diags].msg =
		xasprintf("cannot read the spec directory: %s; no VM is changed until it can be "
			  "read again",
			  strerror(e));
	set->n_diags++;
	return -e;
}

/* A VM whose document moved to another file keeps its record pointing at the new file,
 * so a later failure of that file is attributed to it (even when nothing else changed). */
static void follow_moves(struct daemon *d, struct vm_record *recs, size_t n,
			 const struct spec_set *set)
{
	for (size_t i = 0; i < n; i++) {
		const struct vm_spec *s = spec_set_find(set, recs[i].name);
		struct bg_err err = { 0 };

		if (!s || !s->source_file || str_eq(s->source_file, recs[i].source_file) ||
		    recs[i].phase == VM_PHASE_DELETING)
			continue;
		free(recs[i].source_file);
		recs[i].source_file = xstrdup(s->source_file);
		if (store_vm_update(d->store, &recs[i], &err) < 0)
			log_warn("vm '%s': record its spec file: %s", recs[i].name, err.msg);
	}
}

/* ---- the pass ---------------------------------------------------------------------------- */

static void heartbeat(struct daemon *d, bool full)
{
	struct daemon_info info = {
		.pid = (int)getpid(),
		.version = (char *)BANGER_VERSION,
		.spec_dir = (char *)d->cfg.spec_dir,
		.bridge = (char *)d->cfg.bridge,
		.subnet = (char *)d->cfg.subnet,
		.disk_mode = (char *)disk_mode_to_string(d->disk_mode),
		.started_at = d->started_at,
		.heartbeat = now_real_ms(),
		.resync_ms = d->cfg.resync_ms,
		.spec_errors = d->spec_errors,
		.nat = d->cfg.nat,
	};
	struct bg_err err = { 0 };

	if (full)
		d->last_resync = info.heartbeat;
	info.last_resync = d->last_resync;
	if (store_daemon_put(d->store, &info, &err) < 0)
		log_warn("heartbeat: %s", err.msg);
}

static bool is_delete(const struct plan_action *a)
{
	return a->type == PLAN_DELETE || (a->type == PLAN_RESUME && a->resume == PLAN_DELETE);
}

/*
 * Converge the planned actions: the deletes (new or resumed) as batches
 * first, so that the addresses, names and host ports they free are usable by
 * the rest, then the rest (converge_batch: one intent-log commit per round
 * of steps).
 */
static void run_actions(struct daemon *d, const struct plan_action *acts, size_t n, int64_t now)
{
	const struct plan_action **todo = xcalloc(n + 1, sizeof(*todo));
	struct bg_err *errs = xcalloc(n + 1, sizeof(*errs));
	size_t m = 0, deletes = 0;

	for (size_t i = 0; i < n; i++)
		if (acts[i].type == PLAN_NONE)
			wake_at(d, acts[i].retry_at);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			if (acts[i].type == PLAN_NONE || is_delete(&acts[i]) != (pass == 0))
				continue;
			if (acts[i].type == PLAN_DELETE && acts[i].reason == PLAN_R_SPEC_REMOVED &&
			    !delete_grace_passed(d, acts[i].name, now))
				continue;
			todo[m++] = &acts[i];
		}
		if (pass == 0)
			deletes = m;
	}
	(void)converge_batch(&d->env, todo, deletes, errs);
	(void)converge_batch(&d->env, todo + deletes, m - deletes, errs + deletes);
	for (size_t i = 0; i < m; i++)
		if (errs[i].code)
			log_err("%s", errs[i].msg);
	free(errs);
	free(todo);
}

int daemon_pass(struct daemon *d, bool full, struct bg_err *err)
{
	struct spec_set set;
	struct vm_record *recs = NULL;
	size_t n_recs = 0;
	struct plan_desired *desired = NULL;
	char(*hashes)[SPEC_HASH_LEN + 1] = NULL;
	struct plan_record *prs = NULL;
	struct vm_handles *hs = NULL;
	struct vm_spec **rec_specs = NULL;
	struct plan_action *acts = NULL;
	size_t n_acts = 0;
	struct plan_input in = { 0 };
	int64_t now = now_real_ms();
	int r;

	d->next_wakeup = 0;
	forget_seen(d);
	spec_set_init(&set);
	if (check_spec_dir(d, &set) < 0) {
		report_spec_errors(d, &set);
		observe(d, full);
		heartbeat(d, full);
		r = 0;
		goto out;
	}
	(void)spec_cache_load(d->specs, NULL, 0, full, &set);
	(void)spec_set_finish(&set);
	report_spec_errors(d, &set);

	r = store_vm_list(d->store, &recs, &n_recs, err);
	if (r < 0)
		goto out;
	follow_moves(d, recs, n_recs, &set);

	desired = xcalloc(set.n_specs + 1, sizeof(*desired));
	hashes = xcalloc(set.n_specs + 1, sizeof(*hashes));
	for (size_t i = 0; i < set.n_specs; i++) {
		if (set.specs[i]->hash[0]) /* the spec cache hashed it when it parsed it */
			memcpy(hashes[i], set.specs[i]->hash, sizeof(hashes[i]));
		else
			spec_hash(set.specs[i], hashes[i]);
		desired[i].spec = set.specs[i];
		desired[i].hash = hashes[i];
	}
	prs = xcalloc(n_recs + 1, sizeof(*prs));
	hs = xcalloc(n_recs + 1, sizeof(*hs));
	rec_specs = xcalloc(n_recs + 1, sizeof(*rec_specs));
	/* Handles are asked of the OS only where hinted (handles.h); a resync is a hint. */
	handles_cache_begin_pass(d->handles);
	if (full)
		handles_cache_mark_all_stale(d->handles);
	for (size_t i = 0; i < n_recs; i++) {
		struct vm_handles h, last = { 0 };
		bool corrupt = false;
		struct bg_err herr = { 0 };

		/* The pid the VMM had, before rediscovery can replace a dead one with none. */
		if (handles_cache_peek(d->handles, recs[i].id, &last) < 0)
			memset(&last, 0, sizeof(last));
		if (recs[i].spec_json)
			(void)spec_from_json(recs[i].spec_json, &rec_specs[i], NULL);
		prs[i].rec = &recs[i];
		prs[i].spec = rec_specs[i];
		/* One read of /proc/<pid>/stat gives the handles' liveness too. */
		if (handles_observe(d->handles, &recs[i], &h, &prs[i].liveness, &corrupt, &herr) <
		    0) {
			log_warn("vm '%s': handles: %s", recs[i].name, herr.msg);
			memset(&h, 0, sizeof(h));
			prs[i].liveness = VM_LIVENESS_NONE;
		}
		hs[i] = h;
		if (corrupt)
			log_warn("vm '%s': handles.json was corrupt; rebuilt from the system",
				 recs[i].name);
		/* The daemon reaped this VMM: its exit status decides on-failure restarts. */
		if (prs[i].liveness != VM_LIVENESS_ALIVE && (h.pid || last.pid)) {
			int status = reaped_status(d, h.pid ? h.pid : last.pid);

			if (status < 0 && last.pid && last.pid != h.pid)
				status = reaped_status(d, last.pid);
			if (status >= 0)
				recs[i].last_exit = status;
		}
	}
	/* Every VM has been looked up: a VM unknown from now on is one this daemon made. */
	handles_cache_set_warm(d->handles);
	in.desired = desired;
	in.n_desired = set.n_specs;
	in.broken_names = (const char *const *)set.failed_names;
	in.n_broken_names = set.n_failed_names;
	in.broken_files = (const char *const *)set.failed_files;
	in.n_broken_files = set.n_failed_files;
	in.records = prs;
	in.n_records = n_recs;
	in.now = now;
	plan(&in, &acts, &n_acts);

	prune_absent(d, acts, n_acts);
	keep_seen(d, prs, n_recs, hs, acts, n_acts);
	run_actions(d, acts, n_acts, now);
	observe(d, full);
	forget_seen(d);
	heartbeat(d, full);
	r = 0;
out:
	free(acts);
	for (size_t i = 0; i < n_recs; i++)
		vm_spec_free(rec_specs ? rec_specs[i] : NULL);
	free(rec_specs);
	free(prs);
	free(hs);
	free(hashes);
	free(desired);
	vm_record_array_free(recs, n_recs);
	spec_set_release(&set);
	return r;
}
