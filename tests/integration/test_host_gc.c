/*
 * test_host_gc.c - the leak finder for real: one orphan of each kind this
 * machine can make (a tap in this test's network namespace, a loop device
 * backed by a file under a fake <state>/vms/<id>/, a vms/<id> directory;
 * device-mapper where the kernel has it) next to the same objects of a known
 * VM and look-alikes that are not banger's. gc_scan must find exactly the
 * orphans, gc_remove must remove them, and nothing else may be touched.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "reconciler/store.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

#define MIB (1024ULL * 1024ULL)

static const char *skip_reason;

static char *losetup(const char *file)
{
	char *dev = hosttest_sh_output("losetup -f --show %s", file);

	assert_non_null(dev);
	dev[strcspn(dev, "\n")] = '\0';
	assert_int_equal(strncmp(dev, "/dev/loop", 9), 0);
	return dev;
}

static bool orphan_is(const struct host_orphan *o, enum host_orphan_kind k, const char *name)
{
	return o->kind == k && strcmp(o->name, name) == 0;
}

static void test_gc(void **state)
{
	static const uint64_t data[] = { 0 };
	struct host_net net = { .bridge = NULL, .cidr = "10.77.3.1/24" };
	struct bg_err err = { 0 };
	char sfx[7], bridge[16], known[9], orphan_loop_id[9], orphan_dir_id[9], orphan_tap_id[9];
	char known_tap[16], orphan_tap[16], fake_tap[16];
	_cleanup_free_ char *state_dir = NULL, *vms = NULL;
	_cleanup_free_ char *known_dir = NULL, *known_file = NULL, *known_loop = NULL;
	_cleanup_free_ char *loop_dir = NULL, *loop_file = NULL, *orphan_loop = NULL;
	_cleanup_free_ char *orphan_dir = NULL, *outside = NULL, *outside_loop = NULL;
	_cleanup_free_ char *not_an_id = NULL;
	const char *known_ids[] = { known, "ffffffff" };
	struct host_orphan *o = NULL;
	size_t n = 0;
	int tap_at = -1, loop_at = -1, dir_loop_at = -1, dir_at = -1;

	(void)state;
	if (skip_reason)
		skip();
	test_unique_suffix(sfx, 6);
	snprintf(bridge, sizeof(bridge), "bgt%s", sfx);
	net.bridge = bridge;
	test_unique_suffix(known, 8);
	test_unique_suffix(orphan_loop_id, 8);
	test_unique_suffix(orphan_dir_id, 8);
	test_unique_suffix(orphan_tap_id, 8);
	state_dir = test_tmpdir("banger-host-gc");
	vms = xasprintf("%s/vms", state_dir);

	/* A known VM: its dir, a loop on its disk, its tap. None of it is an orphan. */
	known_dir = xasprintf("%s/%s", vms, known);
	assert_int_equal(fs_mkdir_p(known_dir, 0700, NULL), 0);
	known_file = xasprintf("%s/root.img", known_dir);
	hosttest_make_image(known_file, 4 * MIB, data, 1, 4096);
	known_loop = losetup(known_file);
	assert_int_equal(host_ops_linux.bridge_ensure(&net, &err), 0);
	assert_int_equal(host_tap_name(known, known_tap), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&net, known_tap, 0, 0, &err), 0);

	/* Orphans: a loop on a file of an unknown VM (whose dir is then an orphan too)... */
	loop_dir = xasprintf("%s/%s", vms, orphan_loop_id);
	assert_int_equal(fs_mkdir_p(loop_dir, 0700, NULL), 0);
	loop_file = xasprintf("%s/root.img", loop_dir);
	hosttest_make_image(loop_file, 4 * MIB, data, 1, 4096);
	orphan_loop = losetup(loop_file);
	/* ...a VM dir alone, and a tap. */
	orphan_dir = xasprintf("%s/%s", vms, orphan_dir_id);
	assert_int_equal(fs_mkdir_p(orphan_dir, 0700, NULL), 0);
	assert_int_equal(host_tap_name(orphan_tap_id, orphan_tap), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&net, orphan_tap, 0, 0, &err), 0);

	/* Look-alikes that are not banger's: never reported. */
	snprintf(fake_tap, sizeof(fake_tap), "bg%.6s%s", sfx, "aa");
	assert_int_equal(hosttest_sh("ip link add %s type veth peer name vp%s", fake_tap, sfx), 0);
	not_an_id = xasprintf("%s/not-an-id", vms);
	assert_int_equal(fs_mkdir_p(not_an_id, 0700, NULL), 0);
	outside = xasprintf("%s/outside.img", state_dir);
	hosttest_make_image(outside, 4 * MIB, data, 1, 4096);
	outside_loop = losetup(outside);

	assert_int_equal(host_ops_linux.gc_scan(state_dir, known_ids, 2, &o, &n, &err), 0);
	for (size_t i = 0; i < n; i++) {
		printf("orphan: %s %s %s\n", host_orphan_kind_to_string(o[i].kind), o[i].name,
		       o[i].detail);
		if (orphan_is(&o[i], HOST_ORPHAN_TAP, orphan_tap))
			tap_at = (int)i;
		else if (orphan_is(&o[i], HOST_ORPHAN_LOOP, orphan_loop))
			loop_at = (int)i;
		else if (orphan_is(&o[i], HOST_ORPHAN_VM_DIR, loop_dir))
			dir_loop_at = (int)i;
		else if (orphan_is(&o[i], HOST_ORPHAN_VM_DIR, orphan_dir))
			dir_at = (int)i;
	}
	/* Exactly these four (other tests' loops elsewhere on the host do not count). */
	assert_int_equal(n, 4);
	assert_true(tap_at >= 0 && loop_at >= 0 && dir_loop_at >= 0 && dir_at >= 0);
	assert_string_equal(o[loop_at].detail, loop_file);
	/* Removal order: loops before taps before directories. */
	assert_true(loop_at < tap_at);
	assert_true(tap_at < dir_loop_at && tap_at < dir_at);

	for (size_t i = 0; i < n; i++)
		assert_int_equal(host_ops_linux.gc_remove(&o[i], &err), 0);
	/* Removing again is fine: already gone. */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(host_ops_linux.gc_remove(&o[i], &err), 0);
	free(o);
	o = NULL;

	assert_int_equal(hosttest_count_links(orphan_tap), 0);
	assert_int_equal(hosttest_count_loops(loop_dir), 0);
	assert_false(hosttest_exists(loop_dir));
	assert_false(hosttest_exists(orphan_dir));
	assert_int_equal(host_ops_linux.gc_scan(state_dir, known_ids, 2, &o, &n, &err), 0);
	assert_int_equal(n, 0);
	free(o);
	o = NULL;

	/* The known VM and the look-alikes are untouched. */
	assert_int_equal(hosttest_count_links(known_tap), 1);
	assert_int_equal(hosttest_count_loops(known_file), 1);
	assert_int_equal(hosttest_count_loops(outside), 1);
	assert_int_equal(hosttest_count_links(fake_tap), 1);
	assert_true(hosttest_exists(known_dir));
	assert_true(hosttest_exists(not_an_id));

	/* Once the VM is forgotten, its objects are orphans too. */
	assert_int_equal(host_ops_linux.gc_scan(state_dir, NULL, 0, &o, &n, &err), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(host_ops_linux.gc_remove(&o[i], &err), 0);
	free(o);
	assert_int_equal(hosttest_count_links(known_tap), 0);
	assert_int_equal(hosttest_count_loops(known_file), 0);
	assert_false(hosttest_exists(known_dir));

	/* Clean up the rest and check nothing is left. */
	assert_int_equal(host_link_delete(fake_tap, NULL, &err), 0);
	assert_int_equal(host_link_delete(bridge, NULL, &err), 0);
	assert_int_equal(host_loop_detach(outside_loop, outside, NULL, &err), 0);
	test_rmtree(state_dir);
	assert_int_equal(hosttest_count_loops(state_dir), 0);
	assert_int_equal(hosttest_count_links("bg"), 0);
}

static struct host_orphan *find_orphan(struct host_orphan *o, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(o[i].name, name) == 0)
			return &o[i];
	return NULL;
}

/* 'banger --state-dir DIR gc': its exit status, its output in *ret_out (owned). */
static int banger_gc(const char *state_dir, char **ret_out)
{
	const char *build = getenv("BUILD");
	_cleanup_free_ char *banger = xasprintf("%s/banger", build && *build ? build : "build");
	const char *argv[] = { banger, "--state-dir", state_dir, "gc", NULL };
	struct bg_err err = { 0 };
	int status = -1;

	if (proc_run_status(argv, 60000, ret_out, &status, &err) < 0)
		fail_msg("%s", err.msg);
	printf("banger gc (%s) -> %d:\n%s", state_dir, status, *ret_out);
	return status;
}

/*
 * Tap names are host-wide: another banger instance's VMs have taps 'bg<id>'
 * that this state dir does not know. gc takes a tap for its own leak only
 * when it is on no bridge or on this instance's bridge (recorded by bangerd
 * in the store); others are skipped with a note and left alone.
 */
static void test_gc_other_instance(void **state)
{
	struct host_net ours = { .cidr = "10.77.4.1/24" }, other = { .cidr = "10.77.5.1/24" };
	struct bg_err err = { 0 };
	char sfx[7], br_ours[16], br_other[16], id_ours[9], id_other[9], id_free[9];
	char tap_ours[16], tap_other[16], tap_free[16];
	_cleanup_free_ char *state_dir = NULL, *bare_dir = NULL, *db = NULL, *out = NULL;
	struct daemon_info info = { .pid = 1, .version = (char *)"test" };
	struct store *s = NULL;
	struct host_orphan *o = NULL, *x;
	size_t n = 0;

	(void)state;
	if (skip_reason)
		skip();
	test_unique_suffix(sfx, 6);
	snprintf(br_ours, sizeof(br_ours), "bgt%s", sfx);
	snprintf(br_other, sizeof(br_other), "bgo%s", sfx);
	ours.bridge = br_ours;
	other.bridge = br_other;
	test_unique_suffix(id_ours, 8);
	test_unique_suffix(id_other, 8);
	test_unique_suffix(id_free, 8);
	assert_int_equal(host_tap_name(id_ours, tap_ours), 0);
	assert_int_equal(host_tap_name(id_other, tap_other), 0);
	assert_int_equal(host_tap_name(id_free, tap_free), 0);
	assert_int_equal(host_ops_linux.bridge_ensure(&ours, &err), 0);
	assert_int_equal(host_ops_linux.bridge_ensure(&other, &err), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&ours, tap_ours, 0, 0, &err), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&other, tap_other, 0, 0, &err), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&ours, tap_free, 0, 0, &err), 0);
	assert_int_equal(hosttest_sh("ip link set %s nomaster", tap_free), 0);

	/* This instance: a state dir whose bangerd recorded bridge br_ours. */
	state_dir = test_tmpdir("banger-host-gc");
	db = fs_path_join(state_dir, "banger.db");
	assert_int_equal(store_open(db, STORE_READ_WRITE, &s, &err), 0);
	info.bridge = br_ours;
	assert_int_equal(store_daemon_put(s, &info, &err), 0);
	store_free(s);

	/* The scan says which bridge each tap is on. */
	assert_int_equal(host_ops_linux.gc_scan(state_dir, NULL, 0, &o, &n, &err), 0);
	assert_int_equal(n, 3);
	x = find_orphan(o, n, tap_ours);
	assert_non_null(x);
	assert_string_equal(x->master, br_ours);
	assert_true(host_orphan_is_ours(x, br_ours));
	assert_false(host_orphan_is_ours(x, NULL));
	x = find_orphan(o, n, tap_other);
	assert_non_null(x);
	assert_string_equal(x->master, br_other);
	assert_false(host_orphan_is_ours(x, br_ours));
	assert_false(host_orphan_is_ours(x, NULL));
	x = find_orphan(o, n, tap_free);
	assert_non_null(x);
	assert_string_equal(x->master, "");
	assert_true(host_orphan_is_ours(x, br_ours));
	assert_true(host_orphan_is_ours(x, NULL));
	/* A tap enslaved since the scan is someone's now: gc_remove leaves it. */
	assert_int_equal(hosttest_sh("ip link set %s master %s", tap_free, br_other), 0);
	assert_int_equal(host_ops_linux.gc_remove(x, &err), -EBUSY);
	assert_int_equal(hosttest_count_links(tap_free), 1);
	assert_int_equal(hosttest_sh("ip link set %s nomaster", tap_free), 0);
	free(o);
	o = NULL;

	/* banger gc removes its own two and leaves the other instance's tap. */
	assert_int_equal(banger_gc(state_dir, &out), 0);
	{
		_cleanup_free_ char *note = xasprintf("skipped tap %s: enslaved to bridge '%s', "
						      "not to this instance's '%s'\n",
						      tap_other, br_other, br_ours);
		_cleanup_free_ char *l1 = xasprintf("tap %s\n", tap_ours);
		_cleanup_free_ char *l2 = xasprintf("tap %s\n", tap_free);

		assert_non_null(strstr(out, note));
		assert_non_null(strstr(out, l1));
		assert_non_null(strstr(out, l2));
		assert_non_null(strstr(out, "2 leaked object(s) found, 2 removed; 1 skipped"));
	}
	assert_int_equal(hosttest_count_links(tap_other), 1);
	assert_int_equal(hosttest_count_links(tap_ours), 0);
	assert_int_equal(hosttest_count_links(tap_free), 0);
	free(out);
	out = NULL;

	/* Without a daemon row, only taps on no bridge count. */
	bare_dir = test_tmpdir("banger-host-gc");
	assert_int_equal(host_ops_linux.tap_ensure(&ours, tap_ours, 0, 0, &err), 0);
	assert_int_equal(banger_gc(bare_dir, &out), 0);
	assert_non_null(strstr(out, "and no bangerd has recorded its bridge"));
	assert_non_null(strstr(out, "0 leaked object(s) found, 0 removed; 2 skipped"));
	assert_int_equal(hosttest_count_links(tap_ours), 1);
	assert_int_equal(hosttest_count_links(tap_other), 1);

	/* Clean up and check nothing is left. */
	assert_int_equal(host_net_tap_remove(tap_ours, &err), 0);
	assert_int_equal(host_net_tap_remove(tap_other, &err), 0);
	assert_int_equal(host_link_delete(br_ours, NULL, &err), 0);
	assert_int_equal(host_link_delete(br_other, NULL, &err), 0);
	test_rmtree(state_dir);
	test_rmtree(bare_dir);
	assert_int_equal(hosttest_count_links("bg"), 0);
}

static void test_gc_refuses(void **state)
{
	struct bg_err err = { 0 };
	struct host_orphan o;
	struct host_orphan *v = NULL;
	size_t n = 7;

	(void)state;
	if (skip_reason)
		skip();
	/* Objects that do not carry banger's names are refused, not removed. */
	memset(&o, 0, sizeof(o));
	o.kind = HOST_ORPHAN_TAP;
	snprintf(o.name, sizeof(o.name), "eth0");
	assert_int_equal(host_ops_linux.gc_remove(&o, &err), -EINVAL);
	o.kind = HOST_ORPHAN_DM;
	snprintf(o.name, sizeof(o.name), "vg0-root");
	assert_int_equal(host_ops_linux.gc_remove(&o, &err), -EINVAL);
	o.kind = HOST_ORPHAN_VM_DIR;
	snprintf(o.name, sizeof(o.name), "/etc");
	assert_int_equal(host_ops_linux.gc_remove(&o, &err), -EINVAL);
	snprintf(o.name, sizeof(o.name), "/var/lib/banger/vms/../../x");
	assert_int_equal(host_ops_linux.gc_remove(&o, &err), -EINVAL);
	o.kind = HOST_ORPHAN_LOOP;
	snprintf(o.name, sizeof(o.name), "/dev/sda");
	snprintf(o.detail, sizeof(o.detail), "/x");
	assert_int_equal(host_ops_linux.gc_remove(&o, &err), -EINVAL);
	o.kind = HOST_ORPHAN_KIND_MAX;
	assert_int_equal(host_ops_linux.gc_remove(&o, &err), -EINVAL);
	/* A state dir that does not exist: an error, nothing returned. */
	assert_true(host_ops_linux.gc_scan("/nonexistent/state", NULL, 0, &v, &n, &err) < 0);
	assert_null(v);
	assert_int_equal(n, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gc),
		cmocka_unit_test(test_gc_other_instance),
		cmocka_unit_test(test_gc_refuses),
	};

	if (!hosttest_sandbox(&skip_reason))
		test_skip_reason("%s", skip_reason);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
