/*
 * test_daemon.c - whole reconcile passes (daemon_init + daemon_pass) over a
 * real spec dir and store, with a fake host layer and a fake VMM (a real
 * process). Each test is a scenario found in review where the system used to
 * do the wrong thing: deleting VMs it should keep, restarting VMs its policy
 * says to leave alone, or waiting 30 s where it promised 1, or making a VM
 * of a spec file half-written.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/daemon.h"
#include "reconciler/watch.h"
#include "tests/lib/fakes.h"
#include "tests/lib/testutil.h"

struct fx {
	char *dir;
	char *spec_dir;
	char *state_dir;
	struct daemon d;
};

static char *yaml(const char *name, const char *state, const char *policy)
{
	return xasprintf("apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: %s\nspec:\n"
			 "  state: %s\n  kernel:\n    path: /k/vmlinux\n  rootfs:\n"
			 "    image: /i/base.ext4\n  workDisk:\n    sizeMiB: 64\n"
			 "  restartPolicy: %s\n",
			 name, state, policy);
}

static void write_spec(struct fx *f, const char *file, const char *text)
{
	_cleanup_free_ char *p = fs_path_join(f->spec_dir, file);
	const char *changed = p;

	test_write_file(p, text);
	/* What the event loop does on inotify's event: a same-size rewrite within one
	 * mtime tick is otherwise invisible to the spec cache until a full pass. */
	daemon_hint_paths(&f->d, &changed, 1, false);
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct daemon_config cfg = { 0 };
	struct bg_err err = { 0 };

	fakes_reset();
	f->dir = test_tmpdir("bg-daemon");
	f->spec_dir = fs_path_join(f->dir, "vms.d");
	f->state_dir = fs_path_join(f->dir, "state");
	assert_int_equal(fs_mkdir_p(f->spec_dir, 0755, NULL), 0);
	cfg.spec_dir = f->spec_dir;
	cfg.state_dir = f->state_dir;
	cfg.bridge = "bgtest0";
	cfg.subnet = "172.31.251.1/24";
	cfg.resync_ms = 30000;
	cfg.stop_grace_ms = 1000;
	cfg.host = &fake_host;
	if (daemon_init(&f->d, &cfg, &err) < 0)
		fail_msg("daemon_init: %s", err.msg);
	f->d.env.driver_for = fake_driver_for;
	*state = f;
	return 0;
}

static void kill_all(struct fx *f)
{
	struct vm_record *recs = NULL;
	size_t n = 0;

	if (store_vm_list(f->d.store, &recs, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct vm_handles h;

		if (handles_get(f->d.handles, &recs[i], &h, NULL, NULL) == 0 && vm_alive(&h)) {
			(void)proc_signal(h.pid, h.start_time, SIGKILL, NULL);
			(void)proc_wait_gone(h.pid, h.start_time, 5000);
		}
	}
	vm_record_array_free(recs, n);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	kill_all(f);
	daemon_fini(&f->d);
	test_rmtree(f->dir);
	free(f->dir);
	free(f->spec_dir);
	free(f->state_dir);
	fakes_release();
	free(f);
	return 0;
}

static void pass(struct fx *f)
{
	struct bg_err err = { 0 };

	if (daemon_pass(&f->d, false, &err) < 0)
		fail_msg("pass: %s", err.msg);
}

static bool get(struct fx *f, const char *name, struct vm_record *rec)
{
	return store_vm_get_by_name(f->d.store, name, rec, NULL) == 0;
}

/* Pretend the delete grace of every VM waiting for one has passed. */
static void age_absences(struct fx *f)
{
	for (size_t i = 0; i < f->d.n_absent; i++)
		f->d.absent[i].since -= DAEMON_DELETE_GRACE_MS;
}

/*
 * The host calls were only tap filters, which a Starting VM gets before each
 * readiness probe (how many depends on when its probes end).
 */
static bool only_probe_filters(const char *calls)
{
	for (const char *p = calls; *p; p += strlen("antispoof "))
		if (strncmp(p, "antispoof ", strlen("antispoof ")) != 0)
			return false;
	return true;
}

static void test_missing_spec_dir_keeps_vms(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "always");
	_cleanup_free_ char *moved = xasprintf("%s.old", f->spec_dir);
	struct vm_record rec = { 0 };

	write_spec(f, "web.yaml", y);
	pass(f);
	assert_true(get(f, "web", &rec));
	vm_record_release(&rec);
	/* A re-clone, a rename swap, a mount not there yet: no spec dir is not "no VMs". */
	assert_int_equal(rename(f->spec_dir, moved), 0);
	buf_reset(&fake_calls);
	pass(f);
	age_absences(f);
	pass(f);
	/* Nothing but the Starting VM's tap filter, re-ensured before each probe. */
	assert_true(only_probe_filters(fake_calls.data));
	assert_true(get(f, "web", &rec));
	vm_record_release(&rec);
	assert_non_null(f->d.spec_errors);
	assert_non_null(strstr(f->d.spec_errors, "cannot read the spec directory"));
	assert_int_equal(rename(moved, f->spec_dir), 0);
	pass(f);
	assert_null(f->d.spec_errors);
}

/*
 * A Running VM's tap filter is re-ensured on every full resync (so a filter
 * flushed by hand comes back), not on the passes in between; a Starting VM's
 * before each readiness probe. A failure to make it is logged, not fatal.
 */
static void test_resync_reensures_tap_filter(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "always");
	struct vm_record rec = { 0 };
	struct bg_err err = { 0 };

	write_spec(f, "web.yaml", y);
	pass(f);
	assert_non_null(strstr(fake_calls.data, "tap antispoof "));
	assert_true(get(f, "web", &rec));
	rec.phase = VM_PHASE_RUNNING;
	assert_int_equal(store_vm_update(f->d.store, &rec, NULL), 0);
	vm_record_release(&rec);
	buf_reset(&fake_calls);
	pass(f);
	assert_string_equal(fake_calls.data, "");
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	assert_string_equal(fake_calls.data, "antispoof netrules:none ");
	fake_fail_op = "antispoof";
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	assert_true(get(f, "web", &rec));
	assert_int_equal(rec.phase, VM_PHASE_RUNNING);
	vm_record_release(&rec);
}

/*
 * With the kernel's nftables generation unchanged since the last complete
 * re-ensure, a resync leaves the rules alone (nothing can have drifted);
 * any change, by anyone, or a VM short of its rules (netError) makes the
 * next resync re-ensure them all again.
 */
static void test_resync_skips_unchanged_rules(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "always");
	struct vm_record rec = { 0 };
	struct bg_err err = { 0 };

	fake_rules_gen = 7;
	write_spec(f, "web.yaml", y);
	pass(f);
	assert_true(get(f, "web", &rec));
	rec.phase = VM_PHASE_RUNNING;
	assert_int_equal(store_vm_update(f->d.store, &rec, NULL), 0);
	vm_record_release(&rec);
	buf_reset(&fake_calls);
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	assert_string_equal(fake_calls.data, "antispoof netrules:none ");
	/* Nothing changed since: the next resync looks at the generation only. */
	buf_reset(&fake_calls);
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	assert_string_equal(fake_calls.data, "");
	/* Someone changed a rule somewhere. */
	fake_rules_gen = 8;
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	assert_string_equal(fake_calls.data, "antispoof netrules:none ");
	buf_reset(&fake_calls);
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	assert_string_equal(fake_calls.data, "");
	/* A VM short of its rules is retried at every resync, generation or not. */
	assert_true(get(f, "web", &rec));
	rec.net_error = xstrdup("host port 127.0.0.1:8080/tcp is held by bg00000000");
	assert_int_equal(store_vm_update(f->d.store, &rec, NULL), 0);
	vm_record_release(&rec);
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	assert_non_null(strstr(fake_calls.data, "antispoof netrules"));
	/* A failed re-ensure records no generation: the next resync tries again. */
	assert_true(get(f, "web", &rec));
	free(rec.net_error);
	rec.net_error = NULL;
	assert_int_equal(store_vm_update(f->d.store, &rec, NULL), 0);
	vm_record_release(&rec);
	fake_rules_gen = 9;
	fake_fail_op = "antispoof";
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	fake_fail_op = NULL;
	buf_reset(&fake_calls);
	assert_int_equal(daemon_pass(&f->d, true, &err), 0);
	assert_string_equal(fake_calls.data, "antispoof netrules:none ");
}

static void test_on_failure_exit0_stays_stopped(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "on-failure");
	struct vm_record rec = { 0 };
	int status;

	fake_vmm_script = "sleep 0.3; exit 0";
	write_spec(f, "web.yaml", y);
	pass(f);
	/* The event loop reaps our VMM child and tells the daemon its status. */
	assert_true(waitpid(fake_last_pid, &status, 0) == fake_last_pid);
	daemon_reaped(&f->d, fake_last_pid, status);
	pass(f);
	assert_true(get(f, "web", &rec));
	assert_int_equal(rec.last_exit, 0);
	assert_int_equal(rec.phase, VM_PHASE_STOPPED);
	assert_int_equal(rec.restarts, 0);
	vm_record_release(&rec);
}

static void test_moved_then_broken_keeps_vm(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "always");
	_cleanup_free_ char *bad = xasprintf("\t%s", y); /* an error before any name is read */
	_cleanup_free_ char *a = fs_path_join(f->spec_dir, "a.yaml");
	_cleanup_free_ char *b = fs_path_join(f->spec_dir, "b.yaml");
	struct vm_record rec = { 0 };

	write_spec(f, "a.yaml", y);
	pass(f);
	/* Moved unchanged (same hash, no action) ... */
	write_spec(f, "b.yaml", y);
	assert_int_equal(unlink(a), 0);
	pass(f);
	assert_true(get(f, "web", &rec));
	assert_string_equal(rec.source_file, b);
	vm_record_release(&rec);
	/* ... then its new file breaks: the VM keeps its last good spec. */
	write_spec(f, "b.yaml", bad);
	buf_reset(&fake_calls);
	pass(f);
	age_absences(f);
	pass(f);
	assert_null(strstr(fake_calls.data, "remove"));
	assert_true(get(f, "web", &rec));
	vm_record_release(&rec);
}

static void test_truncated_file_waits_out_the_grace(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "always");
	struct vm_record rec = { 0 };

	write_spec(f, "web.yaml", y);
	pass(f);
	/* A pass lands between an in-place writer's O_TRUNC and its write(). */
	write_spec(f, "web.yaml", "");
	buf_reset(&fake_calls);
	pass(f);
	assert_true(only_probe_filters(fake_calls.data)); /* nothing else happened */
	assert_true(get(f, "web", &rec));
	vm_record_release(&rec);
	assert_true(f->d.next_wakeup > 0); /* it looks again when the grace ends */
	/* The writer finishes: nothing happened, nothing is pending. */
	write_spec(f, "web.yaml", y);
	pass(f);
	assert_true(only_probe_filters(fake_calls.data));
	assert_int_equal(f->d.n_absent, 0);
	/* A spec that stays gone past the grace is a delete. */
	write_spec(f, "web.yaml", "");
	pass(f);
	assert_true(get(f, "web", &rec));
	vm_record_release(&rec);
	age_absences(f);
	pass(f);
	assert_false(get(f, "web", &rec));
	assert_non_null(strstr(fake_calls.data, "rootdisk-remove"));
}

static void test_resume_stop_with_running_spec(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *run = yaml("web", "running", "always");
	struct vm_record rec = { 0 };

	write_spec(f, "web.yaml", run);
	pass(f);
	assert_true(get(f, "web", &rec));
	/* The daemon died during a stop; the user set 'running' again meanwhile. */
	kill_all(f);
	rec.phase = VM_PHASE_STOPPING;
	rec.action = xstrdup("stop");
	rec.step = xstrdup("teardown");
	assert_int_equal(store_vm_update(f->d.store, &rec, NULL), 0);
	vm_record_release(&rec);
	for (int i = 0; i < 3; i++)
		pass(f);
	assert_true(get(f, "web", &rec));
	assert_int_equal(rec.phase, VM_PHASE_STARTING);
	vm_record_release(&rec);
}

static void test_resume_demote_never_stays_stopped(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "never");
	struct vm_record rec = { 0 };

	write_spec(f, "web.yaml", y);
	pass(f);
	kill_all(f);
	assert_true(get(f, "web", &rec));
	rec.action = xstrdup("demote");
	rec.step = xstrdup("teardown");
	assert_int_equal(store_vm_update(f->d.store, &rec, NULL), 0);
	vm_record_release(&rec);
	pass(f);
	pass(f);
	assert_true(get(f, "web", &rec));
	assert_int_equal(rec.phase, VM_PHASE_STOPPED);
	assert_int_equal(rec.restarts, 0);
	vm_record_release(&rec);
}

static void test_demote_wakes_at_backoff(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "always");
	struct vm_record rec = { 0 };

	write_spec(f, "web.yaml", y);
	pass(f);
	kill_all(f);
	pass(f);
	assert_true(get(f, "web", &rec));
	assert_int_equal(rec.phase, VM_PHASE_FAILED);
	/* The restart is due when the 1 s backoff ends, not at the 30 s resync. */
	assert_true(f->d.next_wakeup > 0);
	assert_true(f->d.next_wakeup <= rec.backoff_until);
	vm_record_release(&rec);
}

static void test_failed_demote_never_relaunches(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "never");
	struct vm_record rec = { 0 };

	write_spec(f, "web.yaml", y);
	pass(f);
	kill_all(f);
	fake_fail_op = "tap-remove";
	pass(f); /* the demote's teardown fails */
	assert_true(get(f, "web", &rec));
	rec.backoff_until = 0;
	assert_int_equal(store_vm_update(f->d.store, &rec, NULL), 0);
	vm_record_release(&rec);
	buf_reset(&fake_calls);
	pass(f);
	assert_null(strstr(fake_calls.data, "launch"));
	assert_true(get(f, "web", &rec));
	assert_int_equal(rec.phase, VM_PHASE_STOPPED);
	vm_record_release(&rec);
}

static void test_unparsable_stored_spec_no_loop(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *y = yaml("web", "running", "always");
	struct vm_record rec = { 0 };
	int launches = 0;

	write_spec(f, "web.yaml", y);
	pass(f);
	assert_true(get(f, "web", &rec));
	free(rec.spec_json);
	rec.spec_json = xstrdup("{\"apiVersion\":\"banger/v1\"}");
	assert_int_equal(store_vm_update(f->d.store, &rec, NULL), 0);
	vm_record_release(&rec);
	buf_reset(&fake_calls);
	for (int i = 0; i < 4; i++)
		pass(f);
	for (const char *p = fake_calls.data; (p = strstr(p, "launch")); p++)
		launches++;
	assert_int_equal(launches, 0);
}

/* As bangerd's event loop hands the watch's set of files being written to the passes. */
static bool watch_writing(void *ctx, const char *path)
{
	return spec_watch_is_writing(ctx, path, now_mono_ms());
}

/* Drain the watch as the event loop does: true (and the paths hinted) on a change. */
static bool watch_take(struct fx *f, struct spec_watch *w)
{
	size_t n = 0;
	bool all = false;
	char **paths;

	if (!spec_watch_drain(w))
		return false;
	paths = spec_watch_take_paths(w, &n, &all);
	daemon_hint_paths(&f->d, (const char *const *)paths, n, all);
	spec_watch_paths_free(paths, n);
	return true;
}

/* Open 'file' in the spec dir for writing (O_TRUNC, as '>') and write 'text' without closing. */
static int write_part(struct fx *f, const char *file, const char *text, size_t len)
{
	_cleanup_free_ char *p = fs_path_join(f->spec_dir, file);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	return fd;
}

/*
 * A pass that runs for another reason (a timer, a VMM exit) while '>' rewrites
 * a spec and another is written new: neither half-written file is acted on
 * (the half of each is a valid but different spec); once closed, each is, once.
 */
static void test_half_written_spec_waits_for_close(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *web = yaml("web", "running", "on-failure");
	_cleanup_free_ char *db = yaml("db", "running", "always");
	size_t web_half = strstr(web, "  restartPolicy") - web; /* then 'always' */
	size_t db_half = strstr(db, "  workDisk") - db;		/* then no work disk */
	struct spec_watch *w = NULL;
	struct vm_record rec = { 0 };
	struct spec_set cold;
	char hash[SPEC_HASH_LEN + 1];
	int64_t gen;
	int fd_web, fd_db;

	assert_int_equal(spec_watch_new(f->spec_dir, &w, NULL), 0);
	daemon_set_writing(&f->d, watch_writing, w);
	write_spec(f, "web.yaml", web);
	assert_true(watch_take(f, w));
	pass(f);
	assert_true(get(f, "web", &rec));
	gen = rec.generation;
	memcpy(hash, rec.spec_hash, sizeof(hash));
	vm_record_release(&rec);

	fd_web = write_part(f, "web.yaml", web, web_half);
	fd_db = write_part(f, "db.yaml", db, db_half);
	/* (What the files say now: two valid specs, web's changed.) */
	spec_set_init(&cold);
	(void)spec_load_path(&cold, f->spec_dir);
	assert_int_equal(spec_set_finish(&cold), 0);
	assert_int_equal(cold.n_specs, 2);
	spec_set_release(&cold);
	assert_false(watch_take(f, w)); /* no change yet: no pass of its own */
	pass(f);
	assert_false(get(f, "db", &rec));
	assert_true(get(f, "web", &rec));
	assert_int_equal(rec.generation, gen);
	assert_string_equal(rec.spec_hash, hash);
	vm_record_release(&rec);
	assert_int_equal(f->d.n_absent, 0);

	/* The writers finish and close: each file is a change, read whole. */
	assert_int_equal(write(fd_web, web + web_half, strlen(web) - web_half),
			 (ssize_t)(strlen(web) - web_half));
	assert_int_equal(write(fd_db, db + db_half, strlen(db) - db_half),
			 (ssize_t)(strlen(db) - db_half));
	close(fd_web);
	close(fd_db);
	assert_true(watch_take(f, w));
	pass(f);
	assert_true(get(f, "db", &rec));
	vm_record_release(&rec);
	assert_true(get(f, "web", &rec));
	assert_int_equal(rec.generation, gen); /* the same spec as before the write */
	assert_string_equal(rec.spec_hash, hash);
	vm_record_release(&rec);
	daemon_set_writing(&f->d, NULL, NULL);
	spec_watch_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_missing_spec_dir_keeps_vms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resync_reensures_tap_filter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resync_skips_unchanged_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_on_failure_exit0_stays_stopped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_moved_then_broken_keeps_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_file_waits_out_the_grace, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resume_stop_with_running_spec, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resume_demote_never_stays_stopped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_demote_wakes_at_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_demote_never_relaunches, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_half_written_spec_waits_for_close, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unparsable_stored_spec_no_loop, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
