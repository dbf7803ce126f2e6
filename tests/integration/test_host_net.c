/*
 * test_host_net.c - bridge, taps and NAT for real, inside a network namespace
 * this test creates (the host's interfaces are never touched). Each test
 * checks afterwards that no interface it made is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

static const char *skip_reason;

struct fixture {
	char bridge[16];
	char cidr[32];
	char subnet[32];
	struct host_net net;
};

static void random_tap(char ret[16])
{
	char id[9];

	test_unique_suffix(id, 8);
	assert_int_equal(host_tap_name(id, ret), 0);
}

static int setup(void **state)
{
	struct fixture *f;
	char sfx[7];
	unsigned int a, b;

	*state = NULL;
	if (skip_reason)
		return 0;
	f = calloc(1, sizeof(*f));
	test_unique_suffix(sfx, 6);
	snprintf(f->bridge, sizeof(f->bridge), "bgt%s", sfx);
	a = (unsigned int)strtoul(sfx, NULL, 16);
	b = (a >> 8) & 0xff;
	a &= 0xff;
	snprintf(f->cidr, sizeof(f->cidr), "10.%u.%u.1/24", 100 + a % 100, b);
	snprintf(f->subnet, sizeof(f->subnet), "10.%u.%u.0/24", 100 + a % 100, b);
	f->net.bridge = f->bridge;
	f->net.cidr = f->cidr;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f) {
		struct bg_err err = { 0 };
		int left;

		assert_int_equal(host_link_delete(f->bridge, NULL, &err), 0);
		/* Nothing of ours is left: no bridge, no tap. Clean up after a failed test first. */
		left = hosttest_count_links("bg");
		if (left > 0)
			(void)hosttest_sh("for l in $(ls /sys/class/net | grep ^bg); do "
					  "ip link del $l; done");
		free(f);
		assert_int_equal(left, 0);
	}
	return 0;
}

static bool link_is_up(const char *name)
{
	struct host_link l;

	return host_link_get(name, &l, NULL) == 0 && (l.flags & IFF_UP);
}

static int addr_count(const char *dev, const char *cidr)
{
	_cleanup_free_ char *out =
		hosttest_sh_output("ip -o -4 addr show dev %s | grep -c ' %s '", dev, cidr);

	return out ? atoi(out) : -1;
}

static void test_bridge_ensure(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_link l1, l2;
	uint8_t mac[6];
	char macstr[32];

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	assert_int_equal(host_link_get(f->bridge, &l1, &err), 0);
	assert_string_equal(l1.kind, "bridge");
	assert_true(l1.flags & IFF_UP);
	assert_int_equal(addr_count(f->bridge, f->cidr), 1);
	host_bridge_mac(f->bridge, mac);
	snprintf(macstr, sizeof(macstr), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2],
		 mac[3], mac[4], mac[5]);
	assert_int_equal(
		hosttest_sh("ip -o link show dev %s | grep -q 'link/ether %s'", f->bridge, macstr),
		0);

	/* Twice: nothing changes. */
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	assert_int_equal(host_link_get(f->bridge, &l2, &err), 0);
	assert_int_equal(l1.index, l2.index);
	assert_int_equal(addr_count(f->bridge, f->cidr), 1);

	/* Address lost and link down: ensure repairs both. */
	assert_int_equal(
		hosttest_sh("ip addr flush dev %s && ip link set %s down", f->bridge, f->bridge),
		0);
	assert_int_equal(addr_count(f->bridge, f->cidr), 0);
	assert_false(link_is_up(f->bridge));
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	assert_int_equal(addr_count(f->bridge, f->cidr), 1);
	assert_true(link_is_up(f->bridge));

	/* Same address with a wrong prefix: replaced. */
	assert_int_equal(hosttest_sh("ip addr flush dev %s && ip addr add %.*s/16 dev %s",
				     f->bridge, (int)(strchr(f->cidr, '/') - f->cidr), f->cidr,
				     f->bridge),
			 0);
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	assert_int_equal(addr_count(f->bridge, f->cidr), 1);
	assert_int_equal(hosttest_sh("ip -o -4 addr show dev %s | grep -q '/16'", f->bridge), 1);
}

static void test_bridge_refuses(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_net net = f->net;

	if (skip_reason)
		skip();
	/* An interface with the bridge's name that is not a bridge is not ours. */
	assert_int_equal(
		hosttest_sh("ip link add %s type veth peer name %sp", f->bridge, f->bridge), 0);
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "not a bridge"));
	assert_int_equal(hosttest_sh("ip link del %s", f->bridge), 0);

	net.bridge = "bad;name";
	assert_int_equal(host_ops_linux.bridge_ensure(&net, &err), -EINVAL);
	net.bridge = "averyveryverylongname";
	assert_int_equal(host_ops_linux.bridge_ensure(&net, &err), -EINVAL);
	net.bridge = f->bridge;
	net.cidr = "10.0.0.0/24";
	assert_int_equal(host_ops_linux.bridge_ensure(&net, &err), -EINVAL);
	assert_int_equal(hosttest_count_links(f->bridge), 0);
}

static void check_tap(const char *tap, const char *bridge, unsigned int uid, unsigned int gid)
{
	struct host_link t, br;
	struct bg_err err = { 0 };

	assert_int_equal(host_link_get(tap, &t, &err), 0);
	assert_int_equal(host_link_get(bridge, &br, &err), 0);
	assert_true(t.is_tap);
	assert_true(t.persist);
	assert_int_equal(t.master, br.index);
	assert_true(t.flags & IFF_UP);
	assert_int_equal(t.owner, uid);
	assert_int_equal(t.group, gid);
	/* The same facts as the kernel shows them to everyone else. */
	assert_int_equal(hosttest_sh("test \"$(cat /sys/class/net/%s/owner)\" = %u", tap, uid), 0);
	assert_int_equal(hosttest_sh("test \"$(cat /sys/class/net/%s/group)\" = %u", tap, gid), 0);
	assert_int_equal(
		hosttest_sh("test \"$(basename $(readlink /sys/class/net/%s/master))\" = %s", tap,
			    bridge),
		0);
	assert_int_equal(hosttest_sh("ip -d link show %s | grep -q 'tun type tap'", tap), 0);
}

static void test_tap_ensure_remove(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_link t1, t2;
	char tap[16];

	if (skip_reason)
		skip();
	random_tap(tap);
	/* No bridge yet: a clear error, nothing created. */
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, tap, 1234, 5678, &err), -ENODEV);
	assert_non_null(strstr(err.msg, f->bridge));
	assert_int_equal(hosttest_count_links(tap), 0);

	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, tap, 1234, 5678, &err), 0);
	check_tap(tap, f->bridge, 1234, 5678);
	assert_int_equal(host_link_get(tap, &t1, &err), 0);

	/* Twice: the same tap. */
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, tap, 1234, 5678, &err), 0);
	assert_int_equal(host_link_get(tap, &t2, &err), 0);
	assert_int_equal(t1.index, t2.index);

	/* Down and out of the bridge: repaired. Another owner: changed. */
	assert_int_equal(hosttest_sh("ip link set %s nomaster && ip link set %s down", tap, tap),
			 0);
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, tap, 4321, 8765, &err), 0);
	check_tap(tap, f->bridge, 4321, 8765);
	assert_int_equal(host_link_get(tap, &t2, &err), 0);
	assert_int_equal(t1.index, t2.index);

	/* Remove twice. */
	assert_int_equal(host_ops_linux.tap_remove(tap, &err), 0);
	assert_int_equal(hosttest_count_links(tap), 0);
	assert_int_equal(host_ops_linux.tap_remove(tap, &err), 0);
}

static void test_tap_half_done(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	char tap[16], tap2[16];

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	/* A tap made but never enslaved nor brought up (a crash mid-ensure). */
	random_tap(tap);
	assert_int_equal(hosttest_sh("ip tuntap add %s mode tap", tap), 0);
	assert_int_equal(host_ops_linux.tap_remove(tap, &err), 0);
	assert_int_equal(hosttest_count_links(tap), 0);

	random_tap(tap2);
	assert_int_equal(hosttest_sh("ip tuntap add %s mode tap", tap2), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, tap2, 0, 0, &err), 0);
	check_tap(tap2, f->bridge, 0, 0);
	assert_int_equal(host_ops_linux.tap_remove(tap2, &err), 0);
	assert_int_equal(hosttest_count_links(tap2), 0);
}

static void test_tap_in_use(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_close_ int fd = -1;
	struct ifreq ifr;
	struct host_link t;
	char tap[16];

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	random_tap(tap);
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, tap, 1000, 1000, &err), 0);
	/* A VMM holds the tap open. */
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	/* ensure still succeeds and still fixes the link, even with another owner asked. */
	assert_int_equal(hosttest_sh("ip link set %s nomaster", tap), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, tap, 2000, 2000, &err), 0);
	assert_int_equal(host_link_get(tap, &t, &err), 0);
	assert_true(t.master > 0);
	assert_int_equal(t.owner, 1000);
	/* remove works while it is held. */
	assert_int_equal(host_ops_linux.tap_remove(tap, &err), 0);
	assert_int_equal(hosttest_count_links(tap), 0);
}

static void test_tap_refuses(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	static const char *const bad[] = { "eth0",	    "bg1234567", "bgXYZXYZXY", "bg1234567;",
					   "../bg12345678", "",		 "bg12345678a" };
	char tap[16];

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(host_ops_linux.tap_ensure(&f->net, bad[i], 0, 0, &err), -EINVAL);
		assert_int_equal(host_ops_linux.tap_remove(bad[i], &err), -EINVAL);
	}
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, NULL, 0, 0, &err), -EINVAL);
	/* A tap-like name on something that is not a tap: neither used nor deleted. */
	random_tap(tap);
	assert_int_equal(hosttest_sh("ip link add %s type veth peer name vp%s", tap, tap + 2), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, tap, 0, 0, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "not a tap"));
	assert_int_equal(host_ops_linux.tap_remove(tap, &err), -EEXIST);
	assert_int_equal(hosttest_count_links(tap), 1);
	assert_int_equal(hosttest_sh("ip link del %s", tap), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bridge_ensure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_ensure_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_half_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_refuses, setup, teardown),
	};

	if (!hosttest_sandbox(&skip_reason))
		test_skip_reason("%s", skip_reason);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
