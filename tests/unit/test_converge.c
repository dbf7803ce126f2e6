/*
 * test_converge.c - converge.c with a real store (temp dir), a fake host
 * layer and a fake VMM driver: the steps each action runs, the intent log
 * and resuming after a crash, failures and backoff, and that delete leaves
 * nothing (row, lease, files, pins).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/imgpath.h"
#include "common/paths.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/converge.h"
#include "reconciler/guest/known_hosts.h"
#include "reconciler/plan.h"
#include "tests/lib/fakes.h"
#include "tests/lib/testutil.h"

/* ---- fixture ------------------------------------------------------------------------- */

struct fx {
	char *dir;
	char *known_hosts;
	struct store *store;
	struct handles_cache *handles;
	struct converge_env env;
	struct vm_spec *spec;
	char hash[SPEC_HASH_LEN + 1];
};

static int64_t clock_ms; /* added to the fixed time: tests move the clock on */

static int64_t fixed_now(void)
{
	return 1700000000000LL + clock_ms;
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	_cleanup_free_ char *db = NULL;
	struct bg_err err = { 0 };

	f->dir = test_tmpdir("bg-converge");
	db = paths_db(f->dir);
	assert_int_equal(store_open(db, STORE_READ_WRITE, &f->store, &err), 0);
	f->handles = handles_cache_new();
	f->known_hosts = paths_known_hosts(f->dir);
	f->env.store = f->store;
	f->env.handles = f->handles;
	f->env.host = &fake_host;
	f->env.net.bridge = "bgtest0";
	f->env.net.cidr = "172.31.250.1/24";
	f->env.disk_mode = DISK_MODE_COPY;
	f->env.state_dir = f->dir;
	f->env.known_hosts = f->known_hosts;
	f->env.authorized_keys =
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyDummyDummyDummyDummyDummyDummyDum banger";
	f->env.stop_grace_ms = 1000;
	f->env.driver_for = fake_driver_for;
	f->env.now = fixed_now;

	f->spec = xcalloc(1, sizeof(*f->spec));
	f->spec->name = xstrdup("web");
	f->spec->state = VM_DESIRED_RUNNING;
	f->spec->vcpus = 1;
	f->spec->memory_mib = 256;
	f->spec->kernel_path = xstrdup("/k/vmlinux");
	f->spec->rootfs_image = xstrdup("/i/base.ext4");
	f->spec->work_disk_mib = 64;
	f->spec->ssh_user = xstrdup("root");
	f->spec->restart_policy = RESTART_ALWAYS;
	f->spec->source_file = xstrdup("/specs/web.yaml");
	spec_hash(f->spec, f->hash);
	fakes_reset();
	*state = f;
	return 0;
}

static void kill_all_vmms(struct fx *f)
{
	struct vm_record *recs = NULL;
	size_t n = 0;

	if (store_vm_list(f->store, &recs, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct vm_handles h;

		if (recs[i].vm_dir && handles_load(recs[i].vm_dir, &h, NULL) == 0 && vm_alive(&h)) {
			(void)proc_signal(h.pid, h.start_time, SIGKILL, NULL);
			(void)proc_wait_gone(h.pid, h.start_time, 5000);
		}
	}
	vm_record_array_free(recs, n);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	kill_all_vmms(f);
	handles_cache_free(f->handles);
	store_free(f->store);
	test_rmtree(f->dir);
	free(f->dir);
	free(f->known_hosts);
	vm_spec_free(f->spec);
	fakes_release();
	free(f);
	return 0;
}

/* Run one pass of plan + converge for the fixture's single spec (or none). */
static int pass(struct fx *f, const struct vm_spec *desired, const char *hash)
{
	struct vm_record *recs = NULL;
	size_t n = 0;
	struct plan_desired d = { desired, hash };
	struct plan_record pr[4];
	struct vm_spec *rs[4] = { 0 };
	struct plan_input in = { 0 };
	struct plan_action *acts = NULL;
	size_t n_acts = 0;
	int r = 0;

	assert_int_equal(store_vm_list(f->store, &recs, &n, NULL), 0);
	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++) {
		struct vm_handles h;

		(void)spec_from_json(recs[i].spec_json, &rs[i], NULL);
		pr[i].rec = &recs[i];
		pr[i].spec = rs[i];
		assert_int_equal(handles_get(f->handles, &recs[i], &h, NULL, NULL), 0);
		pr[i].liveness = vm_liveness(&h);
	}
	in.desired = desired ? &d : NULL;
	in.n_desired = desired ? 1 : 0;
	in.records = pr;
	in.n_records = n;
	in.now = fixed_now();
	plan(&in, &acts, &n_acts);
	for (size_t i = 0; i < n_acts; i++) {
		struct bg_err err = { 0 };

		if (converge_action(&f->env, &acts[i], &err) < 0)
			r = -1;
	}
	free(acts);
	for (size_t i = 0; i < n; i++)
		vm_spec_free(rs[i]);
	vm_record_array_free(recs, n);
	return r;
}

static void get_rec(struct fx *f, struct vm_record *rec)
{
	assert_int_equal(store_vm_get_by_name(f->store, "web", rec, NULL), 0);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_create_runs_every_step(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	struct vm_handles h;

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(
		fake_calls.data,
		"bridge netrules-base tap antispoof netrules:none baseimg rootdisk rootfs-grow workdisk launch ");
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STARTING);
	assert_null(rec.step);
	assert_null(rec.action);
	assert_string_equal(rec.ip, "172.31.250.2");
	assert_string_equal(rec.mac, "02:bb:ac:1f:fa:02");
	assert_int_equal(rec.generation, 1);
	assert_int_equal(rec.observed_generation, 1);
	assert_string_equal(rec.vmm, "qemu");
	assert_string_equal(rec.disk_mode, "copy");
	assert_non_null(strstr(rec.api_sock, rec.id));
	/* The guest is told its address, its user and the keys (banger's first). */
	assert_non_null(
		strstr(fake_last_args, "ip=172.31.250.2::172.31.250.1:255.255.255.0:web:eth0:off"));
	assert_non_null(strstr(fake_last_args, "banger.sshkeys="));
	/* Handles were written and describe a live process. */
	assert_int_equal(handles_load(rec.vm_dir, &h, NULL), 0);
	assert_true(vm_alive(&h));
	/* A second pass does nothing. */
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(fake_calls.data, "");
	vm_record_release(&rec);
}

static void test_failure_records_error_and_backoff(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	struct vm_event *ev = NULL;
	size_t n_ev = 0;

	fake_fail_op = "rootdisk";
	assert_int_equal(pass(f, f->spec, f->hash), -1);
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_FAILED);
	assert_non_null(rec.last_error);
	assert_non_null(strstr(rec.last_error, "rootdisk"));
	assert_int_equal(rec.failures, 1);
	assert_int_equal(rec.backoff_until, fixed_now() + 1000);
	assert_null(rec.step);
	assert_int_equal(store_event_list(f->store, "web", 10, &ev, &n_ev, NULL), 0);
	assert_true(n_ev >= 1);
	assert_string_equal(ev[n_ev - 1].type, "Warning");
	vm_event_array_free(ev, n_ev);
	vm_record_release(&rec);

	/* Within the backoff nothing happens (the fixed clock has not moved). */
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(fake_calls.data, "");
}

static void test_resume_from_recorded_step(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };

	/* A crash right after "tap": the row still says create/tap. */
	fake_fail_op = "rootdisk";
	assert_int_equal(pass(f, f->spec, f->hash), -1);
	get_rec(f, &rec);
	assert_int_equal(store_vm_set_step(f->store, rec.id, "create", "rootdisk", NULL), 0);
	vm_record_release(&rec);

	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	/* Resumed at the recorded step: nothing before it ran again. */
	assert_string_equal(fake_calls.data, "baseimg rootdisk rootfs-grow workdisk launch ");
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STARTING);
	assert_null(rec.step);
	vm_record_release(&rec);
}

static void test_launch_never_starts_a_second_vmm(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	struct vm_handles h1, h2;

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	assert_int_equal(handles_load(rec.vm_dir, &h1, NULL), 0);
	/* A crash after launch but before the step was cleared: resume at launch. */
	assert_int_equal(store_vm_set_step(f->store, rec.id, "create", "launch", NULL), 0);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(fake_calls.data, ""); /* adopted, not relaunched */
	assert_int_equal(handles_load(rec.vm_dir, &h2, NULL), 0);
	assert_int_equal(h1.pid, h2.pid);
	vm_record_release(&rec);
}

static void test_reboot_change_restarts(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	struct vm_handles h1, h2;
	char hash[SPEC_HASH_LEN + 1];

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	assert_int_equal(handles_load(rec.vm_dir, &h1, NULL), 0);
	vm_record_release(&rec);

	f->spec->memory_mib = 512;
	spec_hash(f->spec, hash);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(
		fake_calls.data,
		"shutdown stop netrules-remove antispoof-remove tap-remove rootdisk-deactivate bridge netrules-base tap antispoof netrules:none baseimg rootdisk rootfs-grow workdisk launch ");
	get_rec(f, &rec);
	assert_int_equal(rec.generation, 2);
	assert_int_equal(rec.observed_generation, 2);
	assert_int_equal(handles_load(rec.vm_dir, &h2, NULL), 0);
	assert_int_not_equal(h1.pid, h2.pid);
	assert_false(proc_identity_matches(h1.pid, h1.start_time));
	/* Same address: the lease is kept across restarts. */
	assert_string_equal(rec.ip, "172.31.250.2");
	vm_record_release(&rec);

	/* A new base image replaces the root disk; the work disk stays. */
	free(f->spec->rootfs_image);
	f->spec->rootfs_image = xstrdup("/i/other.ext4");
	spec_hash(f->spec, hash);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(
		fake_calls.data,
		"shutdown stop netrules-remove antispoof-remove tap-remove rootdisk-deactivate bridge netrules-base "
		"tap antispoof netrules:none rootdisk-remove baseimg rootdisk rootfs-grow workdisk "
		"launch ");
}

/*
 * With image roots, the spec's files are opened through common/imgpath: the
 * VMM gets private copies of kernel and initrd, and a spec that points its
 * image at banger's private files fails before its old disk is touched.
 */
static void test_image_confined(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *root = fs_path_join(f->dir, "images");
	_cleanup_free_ char *kernel = fs_path_join(root, "vmlinux");
	_cleanup_free_ char *image = fs_path_join(root, "base.ext4");
	const char *const roots[] = { root };
	struct imgpath_conf conf = { .roots = roots, .n_roots = 1, .state_dir = f->dir };
	_cleanup_free_ char *copy = NULL, *data = NULL;
	struct vm_record rec = { 0 };
	char hash[SPEC_HASH_LEN + 1];
	struct stat st;

	if (geteuid() != 0) {
		test_skip_reason("image files must be owned by root: run as root");
		skip();
	}
	assert_int_equal(mkdir(root, 0755), 0);
	test_write_file(kernel, "KERNEL BYTES");
	test_write_file(image, "IMAGE BYTES");
	assert_int_equal(chmod(kernel, 0644), 0);
	assert_int_equal(chmod(image, 0644), 0);
	f->env.images = &conf;
	free(f->spec->kernel_path);
	f->spec->kernel_path = xstrdup(kernel);
	free(f->spec->rootfs_image);
	f->spec->rootfs_image = xstrdup(image);
	spec_hash(f->spec, hash);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(
		fake_calls.data,
		"bridge netrules-base tap antispoof netrules:none baseimg rootdisk rootfs-grow workdisk launch ");
	get_rec(f, &rec);
	copy = fs_path_join(rec.vm_dir, "kernel");
	assert_int_equal(stat(copy, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(fs_read_file(copy, 100, &data, NULL, NULL), 0);
	assert_string_equal(data, "KERNEL BYTES");
	vm_record_release(&rec);

	/* The image now names banger's SSH key: refused, the old disk kept. */
	free(f->spec->rootfs_image);
	f->spec->rootfs_image = fs_path_join(f->dir, "ssh/id_ed25519");
	f->spec->rootfs_image_line = 8;
	f->spec->rootfs_image_col = 12;
	spec_hash(f->spec, hash);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, hash), -1);
	assert_null(strstr(fake_calls.data, "rootdisk-remove"));
	assert_null(strstr(fake_calls.data, "launch"));
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_FAILED);
	assert_non_null(strstr(rec.last_error, "/specs/web.yaml:8:12: spec.rootfs.image: '"));
	assert_non_null(strstr(rec.last_error, "is inside banger's private directory"));
	vm_record_release(&rec);
}

static void test_metadata_change_does_not_restart(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	char hash[SPEC_HASH_LEN + 1];

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	f->spec->restart_policy = RESTART_NEVER;
	spec_hash(f->spec, hash);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(fake_calls.data, "");
	get_rec(f, &rec);
	assert_int_equal(rec.generation, 2);
	assert_int_equal(rec.observed_generation, 2);
	assert_string_equal(rec.spec_hash, hash);
	vm_record_release(&rec);
}

static void test_dead_vmm_is_demoted_then_restarted(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	struct vm_handles h;

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	assert_int_equal(handles_load(rec.vm_dir, &h, NULL), 0);
	assert_int_equal(proc_signal(h.pid, h.start_time, SIGKILL, NULL), 0);
	assert_int_equal(proc_wait_gone(h.pid, h.start_time, 5000), 0);
	vm_record_release(&rec);

	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(fake_calls.data,
			    "netrules-remove antispoof-remove tap-remove rootdisk-deactivate ");
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_FAILED);
	assert_int_equal(rec.restarts, 1);
	assert_int_equal(rec.backoff_until, fixed_now() + 1000);
	vm_record_release(&rec);

	/* Once the backoff has passed, it starts again. */
	assert_int_equal(store_vm_get_by_name(f->store, "web", &rec, NULL), 0);
	rec.backoff_until = 0;
	assert_int_equal(store_vm_update(f->store, &rec, NULL), 0);
	vm_record_release(&rec);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(
		fake_calls.data,
		"bridge netrules-base tap antispoof netrules:none baseimg rootdisk rootfs-grow workdisk launch ");
}

static void test_stop_then_start(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	char hash[SPEC_HASH_LEN + 1];

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	f->spec->state = VM_DESIRED_STOPPED;
	spec_hash(f->spec, hash);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(
		fake_calls.data,
		"shutdown stop netrules-remove antispoof-remove tap-remove rootdisk-deactivate ");
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STOPPED);
	assert_int_equal(rec.desired_state, VM_DESIRED_STOPPED);
	vm_record_release(&rec);

	f->spec->state = VM_DESIRED_RUNNING;
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(
		fake_calls.data,
		"bridge netrules-base tap antispoof netrules:none baseimg rootdisk rootfs-grow workdisk launch ");
}

/*
 * A guest that ignores the graceful request: each pass only looks, the
 * stage and its deadline are in the row, and the escalation happens at the
 * recorded deadlines (SIGTERM, then SIGKILL), never inside one pass.
 */
static char hook_db[4096]; /* the fixture's database, for hooks that read it */
static unsigned hook_checks;

/* When the guest is asked to shut down, the graceful stage is on disk already. */
static void check_stage_on_disk(const char *op)
{
	struct store *ro = NULL;
	struct vm_record rec = { 0 };

	if (strcmp(op, "shutdown") != 0)
		return;
	assert_int_equal(store_open(hook_db, STORE_READ_ONLY, &ro, NULL), 0);
	assert_int_equal(store_vm_get_by_name(ro, "web", &rec, NULL), 0);
	assert_int_equal(rec.stop_stage, VM_STOP_GRACEFUL);
	hook_checks++;
	vm_record_release(&rec);
	store_free(ro);
}

static void test_stop_escalates_at_recorded_deadlines(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	char hash[SPEC_HASH_LEN + 1];
	pid_t pid;
	int status;

	fake_vmm_script = "trap '' TERM; exec sleep 600"; /* deaf to the request and to SIGTERM */
	fake_vmm_ignores_shutdown = true;
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	pid = fake_last_pid;
	f->spec->state = VM_DESIRED_STOPPED;
	spec_hash(f->spec, hash);
	buf_reset(&fake_calls);
	{
		_cleanup_free_ char *db = paths_db(f->dir);

		snprintf(hook_db, sizeof(hook_db), "%s", db);
	}
	hook_checks = 0;
	fake_call_hook = check_stage_on_disk;
	assert_int_equal(pass(f, f->spec, hash), 0);
	fake_call_hook = NULL;
	assert_int_equal(hook_checks, 1);
	assert_string_equal(fake_calls.data, "shutdown ");
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STOPPING);
	assert_string_equal(rec.action, "stop");
	assert_string_equal(rec.step, "stop-vmm");
	assert_int_equal(rec.stop_stage, VM_STOP_GRACEFUL);
	assert_int_equal(rec.stop_deadline, fixed_now() + f->env.stop_grace_ms);
	vm_record_release(&rec);

	/* Before the deadline a pass changes nothing. */
	buf_reset(&fake_calls);
	clock_ms += f->env.stop_grace_ms - 1;
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(fake_calls.data, "");
	get_rec(f, &rec);
	assert_int_equal(rec.stop_stage, VM_STOP_GRACEFUL);
	vm_record_release(&rec);
	assert_true(proc_identity_matches(pid, 0));

	/* At the deadline: SIGTERM, which this VMM ignores. */
	clock_ms += 1;
	assert_int_equal(pass(f, f->spec, hash), 0);
	get_rec(f, &rec);
	assert_int_equal(rec.stop_stage, VM_STOP_TERM);
	assert_int_equal(rec.stop_deadline, fixed_now() + 3000);
	vm_record_release(&rec);
	assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* still there */

	/* Then SIGKILL; the loop reaps it and the next pass finishes the stop. */
	clock_ms += 3000;
	assert_int_equal(pass(f, f->spec, hash), 0);
	get_rec(f, &rec);
	assert_int_equal(rec.stop_stage, VM_STOP_KILL);
	vm_record_release(&rec);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, hash), 0);
	/* stop() of the dead VMM reaps it if it is ours and removes its sockets. */
	assert_string_equal(
		fake_calls.data,
		"stop netrules-remove antispoof-remove tap-remove rootdisk-deactivate ");
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STOPPED);
	assert_int_equal(rec.stop_stage, VM_STOP_NONE);
	assert_int_equal(rec.stop_deadline, 0);
	assert_null(rec.step);
	vm_record_release(&rec);
	clock_ms = 0;
}

static void test_delete_leaves_nothing(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	struct vm_handles h;
	struct ip_lease *leases = NULL;
	size_t n_leases = 0;
	_cleanup_free_ char *kh = NULL;
	_cleanup_free_ char *vm_dir = NULL;
	const char *key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
	_cleanup_free_ char *lines = NULL;

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	vm_dir = xstrdup(rec.vm_dir);
	assert_int_equal(handles_load(rec.vm_dir, &h, NULL), 0);
	/* Pins for the VM (IP and name) and for another host. */
	lines = xasprintf("172.31.250.2 ssh-ed25519 %s\nweb.vm ssh-ed25519 %s\n"
			  "other.vm ssh-ed25519 %s\n",
			  key, key, key);
	{
		_cleanup_free_ char *ssh_dir = paths_ssh_dir(f->dir);

		assert_int_equal(fs_mkdir_p(ssh_dir, 0700, NULL), 0);
	}
	assert_int_equal(fs_write_atomic(f->known_hosts, lines, strlen(lines), 0600, NULL), 0);
	vm_record_release(&rec);

	buf_reset(&fake_calls);
	assert_int_equal(pass(f, NULL, NULL), 0);
	assert_string_equal(
		fake_calls.data,
		"shutdown stop netrules-remove antispoof-remove tap-remove rootdisk-deactivate rootdisk-remove workdisk-remove ");
	assert_int_equal(store_vm_get_by_name(f->store, "web", &rec, NULL), -ENOENT);
	assert_false(proc_identity_matches(h.pid, h.start_time));
	assert_false(fs_exists(vm_dir));
	assert_int_equal(store_ip_list(f->store, &leases, &n_leases, NULL), 0);
	assert_int_equal(n_leases, 0);
	free(leases);
	assert_int_equal(fs_read_file(f->known_hosts, 65536, &kh, NULL, NULL), 0);
	assert_null(strstr(kh, "172.31.250.2"));
	assert_null(strstr(kh, "web.vm"));
	assert_non_null(strstr(kh, "other.vm"));
}

static void test_delete_resumes_after_crash(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	/* Crashed mid-delete: tombstoned, at "remove-files". Even with the spec back, the
	 * delete finishes first. */
	rec.phase = VM_PHASE_DELETING;
	assert_int_equal(store_vm_update(f->store, &rec, NULL), 0);
	assert_int_equal(store_vm_set_step(f->store, rec.id, "delete", "remove-files", NULL), 0);
	vm_record_release(&rec);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_int_equal(store_vm_get_by_name(f->store, "web", &rec, NULL), -ENOENT);
	/* ... and the next pass creates it anew. */
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STARTING);
	vm_record_release(&rec);
}

static void test_resumed_stop_with_running_spec_restarts(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };

	/* Running, then "stop" crashed mid-way; meanwhile the spec says running again. */
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	assert_int_equal(store_vm_set_step(f->store, rec.id, "stop", "stop-vmm", NULL), 0);
	vm_record_release(&rec);
	assert_int_equal(pass(f, f->spec, f->hash), 0); /* the resumed stop */
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STOPPED);
	assert_int_equal(rec.desired_state, VM_DESIRED_STOPPED);
	vm_record_release(&rec);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0); /* ... and it starts again */
	assert_string_equal(
		fake_calls.data,
		"bridge netrules-base tap antispoof netrules:none baseimg rootdisk rootfs-grow workdisk launch ");
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STARTING);
	vm_record_release(&rec);
}

static void test_failed_demote_is_retried_as_demote(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	struct vm_handles h;
	char hash[SPEC_HASH_LEN + 1];

	f->spec->restart_policy = RESTART_NEVER;
	spec_hash(f->spec, hash);
	assert_int_equal(pass(f, f->spec, hash), 0);
	get_rec(f, &rec);
	assert_int_equal(handles_load(rec.vm_dir, &h, NULL), 0);
	assert_int_equal(proc_signal(h.pid, h.start_time, SIGKILL, NULL), 0);
	assert_int_equal(proc_wait_gone(h.pid, h.start_time, 5000), 0);
	vm_record_release(&rec);
	fake_fail_op = "tap-remove";
	assert_int_equal(pass(f, f->spec, hash), -1);
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STARTING); /* not Failed: no restart under 'never' */
	rec.backoff_until = 0;
	assert_int_equal(store_vm_update(f->store, &rec, NULL), 0);
	vm_record_release(&rec);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(
		fake_calls.data,
		"netrules-remove antispoof-remove tap-remove rootdisk-deactivate "); /* demoted, not launched */
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STOPPED);
	vm_record_release(&rec);
}

/* A guest that reads no seed makes its own key: a new disk means a new key, so the pins go. */
static void test_new_image_clears_pins(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *ssh_dir = paths_ssh_dir(f->dir);
	_cleanup_free_ char *kh = NULL;
	const char *key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
	_cleanup_free_ char *lines = NULL;
	char hash[SPEC_HASH_LEN + 1];

	f->spec->guest_config = GUEST_CONFIG_CMDLINE;
	spec_hash(f->spec, f->hash);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(fake_last_seed, ""); /* no seed, no key made by banger */
	assert_false(fs_exists(f->known_hosts));
	assert_int_equal(fs_mkdir_p(ssh_dir, 0700, NULL), 0);
	lines = xasprintf("172.31.250.2 ssh-ed25519 %s\nweb.vm ssh-ed25519 %s\n", key, key);
	assert_int_equal(fs_write_atomic(f->known_hosts, lines, strlen(lines), 0600, NULL), 0);
	/* Same image, other change: the guest keeps its disk and key, the pins stay. */
	f->spec->memory_mib = 384;
	spec_hash(f->spec, hash);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_int_equal(fs_read_file(f->known_hosts, 65536, &kh, NULL, NULL), 0);
	assert_non_null(strstr(kh, "web.vm"));
	free(kh);
	kh = NULL;
	/* A new base image: a fresh disk, a fresh host key, so the pins go. */
	free(f->spec->rootfs_image);
	f->spec->rootfs_image = xstrdup("/i/other.ext4");
	spec_hash(f->spec, hash);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_int_equal(fs_read_file(f->known_hosts, 65536, &kh, NULL, NULL), 0);
	assert_null(strstr(kh, "web.vm"));
	assert_null(strstr(kh, "172.31.250.2"));
}

/* The public key banger made for the VM, as "ssh-ed25519 BASE64". Owned. */
static char *made_key(const struct vm_record *rec)
{
	_cleanup_free_ char *pub = xasprintf("%s/ssh_host_ed25519_key.pub", rec->vm_dir);
	char *data = NULL, *sp;

	assert_int_equal(fs_read_file(pub, 4096, &data, NULL, NULL), 0);
	sp = strchr(data, ' ');
	assert_non_null(sp);
	sp = strchr(sp + 1, ' ');
	if (sp)
		*sp = '\0';
	return data;
}

static bool has_event(struct fx *f, const char *reason)
{
	struct vm_event *ev = NULL;
	size_t n = 0;
	bool found = false;

	assert_int_equal(store_event_list(f->store, "web", 0, &ev, &n, NULL), 0);
	for (size_t i = 0; i < n; i++)
		found = found || strcmp(ev[i].reason, reason) == 0;
	vm_event_array_free(ev, n);
	return found;
}

static void test_seed_pins_before_launch(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	_cleanup_free_ char *key = NULL;
	_cleanup_free_ char *line = NULL;
	_cleanup_free_ char *kh = NULL;
	_cleanup_free_ char *iso = NULL;
	_cleanup_free_ char *meta = NULL;
	_cleanup_free_ char *want_iid = NULL;
	char hash[SPEC_HASH_LEN + 1];
	struct stat st1, st2;

	/* A TOFU pin of another key from before: replaced, not kept beside ours. */
	assert_int_equal(fs_mkdir_p(f->dir, 0700, NULL), 0);
	{
		_cleanup_free_ char *ssh_dir = paths_ssh_dir(f->dir);
		const char *old =
			"web.vm ssh-ed25519 "
			"AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";

		assert_int_equal(fs_mkdir_p(ssh_dir, 0700, NULL), 0);
		assert_int_equal(fs_write_atomic(f->known_hosts, old, strlen(old), 0600, NULL), 0);
	}
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	key = made_key(&rec);
	iso = xasprintf("%s/seed.iso", rec.vm_dir);
	/* Pinned for the address and the name, nothing else left for them. */
	line = xasprintf("172.31.250.2,web.vm %s\n", key);
	assert_int_equal(fs_read_file(f->known_hosts, 65536, &kh, NULL, NULL), 0);
	assert_string_equal(kh, line);
	assert_true(has_event(f, "HostKeyPinned"));
	/* The VMM got the seed and, in auto mode, the kernel command-line contract too. */
	assert_string_equal(fake_last_seed, iso);
	assert_non_null(strstr(fake_last_args, "ip=172.31.250.2::172.31.250.1"));
	assert_int_equal(stat(iso, &st1), 0);
	assert_int_equal(st1.st_mode & 07777, 0600);
	{
		const char *argv[] = { "isoinfo", "-i", iso, "-R", "-x", "/meta-data", NULL };

		assert_int_equal(proc_run(argv, 10000, &meta, NULL), 0);
		want_iid = xasprintf("iid-banger-%s", rec.id);
		assert_non_null(strstr(meta, want_iid));
	}
	vm_record_release(&rec);

	/* A restart keeps the key, the pin and the very same seed file. */
	f->spec->memory_mib = 384;
	spec_hash(f->spec, hash);
	assert_int_equal(pass(f, f->spec, hash), 0);
	get_rec(f, &rec);
	{
		_cleanup_free_ char *key2 = made_key(&rec);
		_cleanup_free_ char *kh2 = NULL;

		assert_string_equal(key, key2);
		assert_int_equal(fs_read_file(f->known_hosts, 65536, &kh2, NULL, NULL), 0);
		assert_string_equal(kh2, line);
	}
	assert_int_equal(stat(iso, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);
	vm_record_release(&rec);

	/* cloudinit: the seed alone tells the guest; the kernel gets the root disk only. */
	f->spec->guest_config = GUEST_CONFIG_CLOUDINIT;
	spec_hash(f->spec, hash);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(fake_last_args, "root=/dev/vda rw");
	assert_string_equal(fake_last_seed, iso);

	/* cmdline: no seed at all (the old one is removed); the pin banger made stays. */
	f->spec->guest_config = GUEST_CONFIG_CMDLINE;
	spec_hash(f->spec, hash);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(fake_last_seed, "");
	assert_false(fs_exists(iso));
	assert_non_null(strstr(fake_last_args, "ip=172.31.250.2"));
}

/* A re-created VM is a new instance: a new id, instance-id and host key, its pins replaced. */
static void test_recreate_new_identity(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	_cleanup_free_ char *id1 = NULL;
	_cleanup_free_ char *key1 = NULL;
	_cleanup_free_ char *key2 = NULL;
	_cleanup_free_ char *kh = NULL;
	_cleanup_free_ char *line = NULL;

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	id1 = xstrdup(rec.id);
	key1 = made_key(&rec);
	vm_record_release(&rec);
	assert_int_equal(pass(f, NULL, NULL), 0); /* deleted */
	assert_int_equal(fs_read_file(f->known_hosts, 65536, &kh, NULL, NULL), 0);
	assert_string_equal(kh, "");
	free(kh);
	kh = NULL;
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	assert_string_not_equal(rec.id, id1);
	key2 = made_key(&rec);
	assert_string_not_equal(key1, key2);
	line = xasprintf("%s,web.vm %s\n", rec.ip, key2);
	assert_int_equal(fs_read_file(f->known_hosts, 65536, &kh, NULL, NULL), 0);
	assert_string_equal(kh, line);
	{
		_cleanup_free_ char *iso = xasprintf("%s/seed.iso", rec.vm_dir);
		_cleanup_free_ char *meta = NULL;
		_cleanup_free_ char *want = xasprintf("iid-banger-%s", rec.id);
		const char *argv[] = { "isoinfo", "-i", iso, "-R", "-x", "/meta-data", NULL };

		assert_int_equal(proc_run(argv, 10000, &meta, NULL), 0);
		assert_non_null(strstr(meta, want));
	}
	vm_record_release(&rec);
}

/* The seed step has its own failure: a bad user-data fails the VM, nothing launches. */
static void test_seed_failure_fails_the_vm(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };

	f->spec->cloudinit_user_data = xstrdup("just text, not cloud-config");
	spec_hash(f->spec, f->hash);
	assert_int_equal(pass(f, f->spec, f->hash), -1);
	assert_null(strstr(fake_calls.data, "launch"));
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_FAILED);
	assert_non_null(strstr(rec.last_error, "seed"));
	vm_record_release(&rec);
}

static void test_unconfigured_vmm_is_replaced(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	struct vm_handles h1, h2;

	assert_int_equal(pass(f, f->spec, f->hash), 0);
	get_rec(f, &rec);
	assert_int_equal(handles_load(rec.vm_dir, &h1, NULL), 0);
	/* A crash after spawning, before the VMM was told to boot. */
	assert_int_equal(store_vm_set_step(f->store, rec.id, "create", "launch", NULL), 0);
	fake_probe_says = VMM_GUEST_CONFIGURING;
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, f->hash), 0);
	assert_string_equal(fake_calls.data, "stop baseimg rootdisk rootfs-grow launch ");
	assert_int_equal(handles_load(rec.vm_dir, &h2, NULL), 0);
	assert_int_not_equal(h1.pid, h2.pid);
	assert_false(proc_identity_matches(h1.pid, h1.start_time));
	vm_record_release(&rec);
}

/*
 * Egress and forwards: a create applies them; a forward another VM holds is
 * recorded (net_error, a PortConflict event) and the VM still launches; a
 * live change of the forwards is an update that re-applies them without a
 * restart; once the port is free, the next resync's re-check clears the error.
 */
static void test_forwards_conflict_and_live_update(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	char hash[SPEC_HASH_LEN + 1];
	struct vm_event *ev = NULL;
	size_t n_ev = 0;
	bool conflict_event = false;

	f->spec->egress = SPEC_EGRESS_NAT;
	f->spec->n_ports = 1;
	f->spec->ports = xcalloc(1, sizeof(*f->spec->ports));
	f->spec->ports[0] = (struct spec_port){ .host_ip = "127.0.0.1",
						.host_port = 8080,
						.guest_port = 80,
						.protocol = SPEC_PROTO_TCP };
	spec_hash(f->spec, hash);
	fake_netrules_holder = "bg0badc0de";
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_non_null(strstr(fake_calls.data, "netrules:nat:tcp/8080>80 "));
	assert_non_null(strstr(fake_calls.data, " launch "));
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STARTING);
	assert_non_null(rec.net_error);
	assert_string_equal(rec.net_error, "host port 127.0.0.1:8080/tcp is already forwarded to "
					   "tap 'bg0badc0de'");
	assert_int_equal(store_event_list(f->store, "web", 20, &ev, &n_ev, NULL), 0);
	for (size_t i = 0; i < n_ev; i++)
		conflict_event |= strcmp(ev[i].reason, "PortConflict") == 0;
	vm_event_array_free(ev, n_ev);
	assert_true(conflict_event);
	vm_record_release(&rec);

	/* Another guest port, live: an update, not a restart, and now nothing conflicts. */
	fake_netrules_holder = NULL;
	f->spec->ports[0].guest_port = 8000;
	spec_hash(f->spec, hash);
	buf_reset(&fake_calls);
	assert_int_equal(pass(f, f->spec, hash), 0);
	assert_string_equal(fake_calls.data, "netrules:nat:tcp/8080>8000 ");
	get_rec(f, &rec);
	assert_null(rec.net_error);
	assert_int_equal(rec.generation, 2);
	vm_record_release(&rec);

	/* The host layer fails a live change: the VM is not Failed, its netError says why. */
	f->spec->ports[0].guest_port = 8001;
	spec_hash(f->spec, hash);
	fake_fail_op = "netrules:nat:tcp/8080>8001";
	assert_int_equal(pass(f, f->spec, hash), 0);
	get_rec(f, &rec);
	assert_int_equal(rec.phase, VM_PHASE_STARTING);
	assert_int_equal(rec.failures, 0);
	assert_int_equal(rec.generation, 3);
	assert_non_null(rec.net_error);
	assert_non_null(strstr(rec.net_error,
			       "network rules: netrules:nat:tcp/8080>8001 failed (injected)"));
	vm_record_release(&rec);
}

/* A host address inside the guests' subnet is not forwarded: the VM says why and runs. */
static void test_forward_from_guest_subnet_refused(void **state)
{
	struct fx *f = *state;
	struct vm_record rec = { 0 };
	char hash[SPEC_HASH_LEN + 1];

	f->spec->n_ports = 2;
	f->spec->ports = xcalloc(2, sizeof(*f->spec->ports));
	f->spec->ports[0] = (struct spec_port){ .host_ip = "172.31.250.7",
						.host_port = 8080,
						.guest_port = 80,
						.protocol = SPEC_PROTO_TCP };
	f->spec->ports[1] = (struct spec_port){ .host_ip = "127.0.0.1",
						.host_port = 8081,
						.guest_port = 81,
						.protocol = SPEC_PROTO_UDP };
	spec_hash(f->spec, hash);
	assert_int_equal(pass(f, f->spec, hash), 0);
	/* Only the good forward reaches the host layer. */
	assert_non_null(strstr(fake_calls.data, "netrules:none:udp/8081>81 "));
	assert_non_null(strstr(fake_calls.data, " launch "));
	get_rec(f, &rec);
	assert_non_null(rec.net_error);
	assert_non_null(strstr(rec.net_error, "host port 172.31.250.7:8080/tcp: 172.31.250.7 is in "
					      "the guests' subnet"));
	vm_record_release(&rec);
}

/* ---- group commit (converge_batch) --------------------------------------------------- */

/* The step whose intent must be on disk when the fake host is asked for op. */
static const char *step_of_op(const char *op)
{
	static const char *const map[][2] = {
		{ "bridge", "bridge" },
		{ "netrules-base", "bridge" },
		{ "tap", "tap" },
		{ "antispoof", "antispoof" },
		{ "rootdisk", "rootdisk" },
		{ "baseimg", "rootdisk" },
		{ "rootfs-grow", "rootdisk" },
		{ "workdisk", "workdisk" },
		{ "launch", "launch" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (strcmp(map[i][0], op) == 0)
			return map[i][1];
	if (strncmp(op, "netrules:", 9) == 0)
		return "netrules";
	return NULL;
}

/*
 * Another connection (what a restarted daemon would read after a crash right
 * now) must see, for every VM in flight, the intent of the step that is
 * touching the host: batches share commits, never the write-ahead order.
 */
static void check_intents_on_disk(const char *op)
{
	const char *want = step_of_op(op);
	struct store *ro = NULL;
	struct vm_record *recs = NULL;
	size_t n = 0;

	if (!want)
		return;
	assert_int_equal(store_open(hook_db, STORE_READ_ONLY, &ro, NULL), 0);
	assert_int_equal(store_vm_list(ro, &recs, &n, NULL), 0);
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++) {
		assert_non_null(recs[i].step);
		assert_string_equal(recs[i].step, want);
	}
	hook_checks++;
	vm_record_array_free(recs, n);
	store_free(ro);
}

/* Plan and converge n copies of the fixture's spec (web0..) as one batch. */
static void batch_create(struct fx *f, size_t n)
{
	struct vm_spec *specs[8];
	char hashes[8][SPEC_HASH_LEN + 1];
	struct plan_desired d[8];
	struct plan_input in = { 0 };
	struct plan_action *acts = NULL;
	const struct plan_action *todo[8];
	struct bg_err errs[8] = { 0 };
	size_t n_acts = 0;

	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		specs[i] = vm_spec_dup(f->spec);
		free(specs[i]->name);
		specs[i]->name = xasprintf("web%zu", i);
		spec_hash(specs[i], hashes[i]);
		d[i] = (struct plan_desired){ specs[i], hashes[i] };
	}
	in.desired = d;
	in.n_desired = n;
	in.now = fixed_now();
	plan(&in, &acts, &n_acts);
	assert_int_equal(n_acts, n);
	for (size_t i = 0; i < n; i++)
		todo[i] = &acts[i];
	assert_int_equal(converge_batch(&f->env, todo, n, errs), 0);
	free(acts);
	for (size_t i = 0; i < n; i++)
		vm_spec_free(specs[i]);
}

static void test_batch_keeps_intents_ahead(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *db = paths_db(f->dir);
	struct vm_record *recs = NULL;
	size_t n = 0;

	snprintf(hook_db, sizeof(hook_db), "%s", db);
	hook_checks = 0;
	fake_call_hook = check_intents_on_disk;
	batch_create(f, 6);
	fake_call_hook = NULL;
	/* bridge, netrules-base, tap, antispoof, netrules, baseimg, rootdisk, rootfs-grow,
	 * workdisk and launch, for each of the 6. */
	assert_int_equal(hook_checks, 6 * 10);
	assert_int_equal(store_vm_list(f->store, &recs, &n, NULL), 0);
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(recs[i].phase, VM_PHASE_STARTING);
		assert_null(recs[i].step);
	}
	vm_record_array_free(recs, n);
	kill_all_vmms(f);
}

/* One create or six: the same number of commits (one per round of steps). */
static void test_batch_commits_per_round(void **state)
{
	struct fx *f = *state;
	unsigned c0, one, six;
	struct vm_record *recs = NULL;
	size_t n = 0;

	c0 = store_commit_count(f->store);
	batch_create(f, 1);
	one = store_commit_count(f->store) - c0;
	kill_all_vmms(f);
	/* Remove the first VM's row so plan() sees six new specs again. */
	assert_int_equal(store_vm_list(f->store, &recs, &n, NULL), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(store_vm_delete(f->store, recs[i].id, NULL), 0);
	vm_record_array_free(recs, n);
	c0 = store_commit_count(f->store);
	batch_create(f, 6);
	six = store_commit_count(f->store) - c0;
	print_message("commits: %u for one create, %u for six\n", one, six);
	assert_true(one > 0);
	assert_int_equal(six, one);
	kill_all_vmms(f);
}

static void test_failpoint_names(void **state)
{
	size_t n = 0;

	(void)state;
	for (const char *const *p = converge_failpoints; *p; p++) {
		assert_non_null(strchr(*p, '.'));
		n++;
	}
	assert_int_equal(n, 49);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_runs_every_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_records_error_and_backoff, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resume_from_recorded_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_launch_never_starts_a_second_vmm, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reboot_change_restarts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metadata_change_does_not_restart, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dead_vmm_is_demoted_then_restarted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stop_then_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_escalates_at_recorded_deadlines, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_delete_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_resumes_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resumed_stop_with_running_spec_restarts, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_demote_is_retried_as_demote, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_new_image_clears_pins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_confined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seed_pins_before_launch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recreate_new_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seed_failure_fails_the_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unconfigured_vmm_is_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forwards_conflict_and_live_update, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_forward_from_guest_subnet_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_batch_keeps_intents_ahead, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_commits_per_round, setup, teardown),
		cmocka_unit_test(test_failpoint_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
