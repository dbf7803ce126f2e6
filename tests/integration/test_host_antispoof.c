/*
 * test_host_antispoof.c - the per-tap anti-spoofing filter for real, inside a
 * network namespace this test creates: a bridge (172.20.x.1/24) and taps
 * made by net.c, the filter made by antispoof.c with libnftables, and frames
 * written into a tap as a guest would send them. A counting table on the
 * bridge's local input hook shows which frames got through. Each test checks
 * afterwards that no interface, chain or table it made is left.
 */
#include <arpa/inet.h>
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
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

static const char *skip_reason;

struct fixture {
	char bridge[16];
	char cidr[32];
	unsigned int net3; /* 172.20.<net3>.0/24 */
	struct host_net net;
	char id[9], tap[16], mac[18], ip[16];
	char id2[9], tap2[16], mac2[18], ip2[16];
	char table[64];
	int tap_fd;
};

static void parse_mac(const char *s, uint8_t ret[6])
{
	unsigned int b[6];

	assert_int_equal(sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]),
			 6);
	for (int i = 0; i < 6; i++)
		ret[i] = (uint8_t)b[i];
}

static int setup(void **state)
{
	struct fixture *f;
	struct bg_err err = { 0 };
	char sfx[7];

	*state = NULL;
	if (skip_reason)
		return 0;
	f = xcalloc(1, sizeof(*f));
	f->tap_fd = -1;
	test_unique_suffix(sfx, 6);
	snprintf(f->bridge, sizeof(f->bridge), "bgas%s", sfx);
	f->net3 = (unsigned int)strtoul(sfx, NULL, 16) % 250 + 1;
	snprintf(f->cidr, sizeof(f->cidr), "172.20.%u.1/24", f->net3);
	f->net.bridge = f->bridge;
	f->net.cidr = f->cidr;
	test_unique_suffix(f->id, 8);
	test_unique_suffix(f->id2, 8);
	assert_int_equal(host_tap_name(f->id, f->tap), 0);
	assert_int_equal(host_tap_name(f->id2, f->tap2), 0);
	snprintf(f->ip, sizeof(f->ip), "172.20.%u.10", f->net3);
	snprintf(f->ip2, sizeof(f->ip2), "172.20.%u.11", f->net3);
	snprintf(f->mac, sizeof(f->mac), "02:bb:ac:14:%02x:0a", f->net3);
	snprintf(f->mac2, sizeof(f->mac2), "02:bb:ac:14:%02x:0b", f->net3);
	assert_int_equal(host_antispoof_table(f->bridge, f->table, NULL), 0);
	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, f->tap, 0, 0, &err), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&f->net, f->tap2, 0, 0, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int left;

	if (!f)
		return 0;
	if (f->tap_fd >= 0)
		close(f->tap_fd);
	(void)hosttest_sh("nft delete table bridge %s 2>/dev/null; "
			  "nft delete table bridge count-%s 2>/dev/null",
			  f->table, f->bridge);
	(void)host_link_delete(f->tap, NULL, NULL);
	(void)host_link_delete(f->tap2, NULL, NULL);
	(void)host_link_delete(f->bridge, NULL, NULL);
	left = hosttest_count_links("bg");
	assert_int_equal(hosttest_sh("nft list tables bridge | grep -q %s", f->bridge), 1);
	free(f);
	assert_int_equal(left, 0);
	return 0;
}

/* The rules of a tap's chain as nft prints them; NULL when the chain is missing. */
static char *chain_text(const struct fixture *f, const char *tap)
{
	char *out = hosttest_sh_output("nft list chain bridge %s %s 2>/dev/null", f->table, tap);

	if (out && !*out) {
		free(out);
		out = NULL;
	}
	return out;
}

static int element_count(const struct fixture *f, const char *tap)
{
	_cleanup_free_ char *out = hosttest_sh_output(
		"nft list map bridge %s taps 2>/dev/null | grep -o '\"%s\" : jump' | wc -l",
		f->table, tap);

	return out ? atoi(out) : -1;
}

static void test_ensure_idempotent_repair_remove(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *t1 = NULL, *t2 = NULL, *t3 = NULL;

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac, f->ip, &err), 0);
	t1 = chain_text(f, f->tap);
	assert_non_null(t1);
	assert_non_null(strstr(t1, f->mac));
	assert_non_null(strstr(t1, f->ip));
	assert_int_equal(element_count(f, f->tap), 1);

	/* Twice: the same rules, one element, one jump rule in the base chain. */
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac, f->ip, &err), 0);
	t2 = chain_text(f, f->tap);
	assert_string_equal(t1, t2);
	assert_int_equal(element_count(f, f->tap), 1);
	assert_int_equal(hosttest_sh("test $(nft list chain bridge %s prerouting | grep -c vmap) "
				     "= 1",
				     f->table),
			 0);

	/* Flushed by hand, or its element deleted: ensure puts it back. */
	assert_int_equal(hosttest_sh("nft flush chain bridge %s %s", f->table, f->tap), 0);
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac, f->ip, &err), 0);
	t3 = chain_text(f, f->tap);
	assert_string_equal(t1, t3);
	free(t3);
	assert_int_equal(hosttest_sh("nft flush ruleset bridge"), 0);
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac, f->ip, &err), 0);
	assert_int_equal(element_count(f, f->tap), 1);

	/* Remove: chain and element gone; twice is fine; another tap's filter stays. */
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap2, f->mac2, f->ip2, &err),
			 0);
	assert_int_equal(host_ops_linux.antispoof_remove(&f->net, f->tap, &err), 0);
	t3 = chain_text(f, f->tap);
	assert_null(t3);
	assert_int_equal(element_count(f, f->tap), 0);
	assert_int_equal(host_ops_linux.antispoof_remove(&f->net, f->tap, &err), 0);
	assert_int_equal(element_count(f, f->tap2), 1);
	assert_int_equal(host_ops_linux.antispoof_remove(&f->net, f->tap2, &err), 0);
	/* Without any table at all, remove is done too. */
	assert_int_equal(hosttest_sh("nft delete table bridge %s", f->table), 0);
	assert_int_equal(host_ops_linux.antispoof_remove(&f->net, f->tap, &err), 0);
	assert_int_equal(hosttest_sh("nft list table bridge %s 2>/dev/null", f->table), 1);
}

static void test_refuses_bad_input(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_net bad = f->net;

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, "eth0", f->mac, f->ip, &err),
			 -EINVAL);
	assert_int_equal(
		host_ops_linux.antispoof_ensure(&f->net, f->tap, "02:bb:00:00:00", f->ip, &err),
		-EINVAL);
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, "02:bb:00:00:00:0g\"",
							 f->ip, &err),
			 -EINVAL);
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac,
							 "1.2.3.4 } accept; #", &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "invalid IPv4 address"));
	bad.bridge = "x\" ; flush";
	assert_int_equal(host_ops_linux.antispoof_ensure(&bad, f->tap, f->mac, f->ip, &err),
			 -EINVAL);
	assert_int_equal(hosttest_sh("nft list table bridge %s 2>/dev/null", f->table), 1);
}

static void test_gc_finds_orphan_filters(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *dir = test_tmpdir("bg-antispoof-gc");
	const char *known[] = { f->id };
	struct host_orphan *v = NULL;
	size_t n = 0;
	int found = -1;

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac, f->ip, &err), 0);
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap2, f->mac2, f->ip2, &err),
			 0);
	assert_int_equal(host_ops_linux.gc_scan(dir, known, 1, &v, &n, &err), 0);
	for (size_t i = 0; i < n; i++) {
		if (v[i].kind != HOST_ORPHAN_FILTER)
			continue;
		assert_string_not_equal(v[i].name, f->tap); /* a known VM's filter is kept */
		if (strcmp(v[i].name, f->tap2) == 0)
			found = (int)i;
	}
	assert_true(found >= 0);
	assert_string_equal(v[found].master, f->bridge);
	assert_true(host_orphan_is_ours(&v[found], f->bridge));
	assert_false(host_orphan_is_ours(&v[found], "banger0"));
	assert_false(host_orphan_is_ours(&v[found], NULL));
	assert_int_equal(host_ops_linux.gc_remove(&v[found], &err), 0);
	assert_int_equal(element_count(f, f->tap2), 0);
	assert_int_equal(element_count(f, f->tap), 1);
	free(v);
	test_rmtree(dir);
}

/* ---- real frames ---------------------------------------------------------------- */

/* Attach to the tap as its VMM would: frames written here enter the bridge from it. */
static int open_tap(const char *name)
{
	struct ifreq ifr = { 0 };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	return fd;
}

static void set_ip_checksum(uint8_t *h)
{
	uint32_t sum = 0;

	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)(h[i] << 8 | h[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	h[10] = (uint8_t)(sum >> 8);
	h[11] = (uint8_t)(sum & 0xff);
}

/* A broadcast frame: IPv4/UDP (type 0x0800), ARP (0x0806) or IPv6 (0x86dd). */
static void send_frame(int fd, const char *src_mac, uint16_t type, const char *src_ip)
{
	uint8_t fr[64] = { 0 };
	uint8_t *p = fr + 14;
	uint32_t a = 0;

	memset(fr, 0xff, 6);
	parse_mac(src_mac, fr + 6);
	fr[12] = type >> 8;
	fr[13] = type & 0xff;
	if (src_ip)
		assert_int_equal(inet_pton(AF_INET, src_ip, &a), 1);
	if (type == 0x0800) {
		p[0] = 0x45;
		p[3] = 28;
		p[8] = 64;
		p[9] = 17;
		memcpy(p + 12, &a, 4);
		memset(p + 16, 0xff, 4);
		p[20] = 0x30, p[21] = 0x39, p[22] = 0x30, p[23] = 0x39, p[25] = 8;
		set_ip_checksum(p); /* br_netfilter, when loaded, drops bad headers */
	} else if (type == 0x0806) {
		p[1] = 1;		  /* htype ethernet */
		p[2] = 0x08, p[3] = 0x00; /* ptype ip */
		p[4] = 6, p[5] = 4, p[7] = 1;
		parse_mac(src_mac, p + 8);
		memcpy(p + 14, &a, 4);
		memcpy(p + 24, &a, 4); /* a gratuitous ARP: who has my (claimed) address */
	} else {
		p[0] = 0x60;
		p[6] = 59; /* no next header */
		p[7] = 255;
	}
	assert_int_equal(write(fd, fr, sizeof(fr)), (ssize_t)sizeof(fr));
}

/* Packets the bridge delivered locally from the tap with this match ("ip saddr X", ...). */
static long arrived(const struct fixture *f, const char *match)
{
	_cleanup_free_ char *out =
		hosttest_sh_output("nft list chain bridge count-%s in | grep -F '%s counter' | "
				   "sed -n 's/.*packets \\([0-9]*\\).*/\\1/p'",
				   f->bridge, match);

	return out && *out ? atol(out) : -1;
}

static void send_all(struct fixture *f, const char *spoof_mac, const char *spoof_ip)
{
	send_frame(f->tap_fd, f->mac, 0x0800, f->ip);	 /* the VM's own: passes */
	send_frame(f->tap_fd, f->mac, 0x0800, spoof_ip); /* another source address */
	send_frame(f->tap_fd, spoof_mac, 0x0800, f->ip); /* another MAC */
	send_frame(f->tap_fd, f->mac, 0x0806, spoof_ip); /* ARP claiming another address */
	send_frame(f->tap_fd, f->mac, 0x86dd, NULL);	 /* IPv6 */
	send_frame(f->tap_fd, f->mac, 0x0806, f->ip);	 /* ARP for its own: passes */
}

/* (Re)make the counting table with fresh counters on the bridge's local input. */
static void reset_counters(const struct fixture *f, const char *spoof_mac, const char *spoof_ip)
{
	assert_int_equal(hosttest_sh("nft -f - <<'EOF'\n"
				     "table bridge count-%s\n"
				     "delete table bridge count-%s\n"
				     "table bridge count-%s {\n"
				     "  chain in {\n"
				     "    type filter hook input priority 0; policy accept;\n"
				     "    ip saddr %s counter\n"
				     "    ip saddr %s counter\n"
				     "    ether saddr %s counter\n"
				     "    arp saddr ip %s counter\n"
				     "    arp saddr ip %s counter\n"
				     "    ether type ip6 counter\n"
				     "  }\n"
				     "}\n"
				     "EOF",
				     f->bridge, f->bridge, f->bridge, f->ip, spoof_ip, spoof_mac,
				     spoof_ip, f->ip),
			 0);
}

static void test_spoofed_frames_dropped(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	char spoof_ip[16], spoof_mac[18], m_ip[64], m_mac[64], m_arp[64], m_own_arp[64];
	char m_own_ip[64];

	if (skip_reason)
		skip();
	/* The neighbour's address and a made-up MAC. */
	snprintf(spoof_ip, sizeof(spoof_ip), "%s", f->ip2);
	snprintf(spoof_mac, sizeof(spoof_mac), "%s", f->mac2);
	snprintf(m_ip, sizeof(m_ip), "ip saddr %s", spoof_ip);
	snprintf(m_mac, sizeof(m_mac), "ether saddr %s", spoof_mac);
	snprintf(m_arp, sizeof(m_arp), "arp saddr ip %s", spoof_ip);
	snprintf(m_own_arp, sizeof(m_own_arp), "arp saddr ip %s", f->ip);
	snprintf(m_own_ip, sizeof(m_own_ip), "ip saddr %s", f->ip);
	reset_counters(f, spoof_mac, spoof_ip);
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac, f->ip, &err), 0);
	f->tap_fd = open_tap(f->tap);
	/* The port forwards once the tap has a carrier: resend until the VM's own ARP arrives. */
	for (int i = 0; i < 100 && arrived(f, m_own_arp) < 1; i++) {
		if (i % 10 == 0)
			send_all(f, spoof_mac, spoof_ip);
		usleep(20000);
	}
	assert_true(arrived(f, m_own_arp) >= 1);
	assert_true(arrived(f, m_own_ip) >= 1);
	assert_int_equal(arrived(f, m_ip), 0);
	assert_int_equal(arrived(f, m_mac), 0);
	assert_int_equal(arrived(f, m_arp), 0);
	assert_int_equal(arrived(f, "ether type ip6"), 0);

	/* Its chain flushed by hand: the port is dropped whole (fails closed). */
	reset_counters(f, spoof_mac, spoof_ip);
	assert_int_equal(hosttest_sh("nft flush chain bridge %s %s", f->table, f->tap), 0);
	send_all(f, spoof_mac, spoof_ip);
	usleep(100000); /* nothing can be waited for: nothing must arrive */
	assert_int_equal(arrived(f, m_own_arp), 0);
	assert_int_equal(arrived(f, m_ip), 0);

	/* Control: without banger's table the same frames do arrive. */
	assert_int_equal(hosttest_sh("nft delete table bridge %s", f->table), 0);
	send_all(f, spoof_mac, spoof_ip);
	for (int i = 0; i < 200 && arrived(f, "ether type ip6") < 1; i++)
		usleep(10000);
	assert_true(arrived(f, m_ip) >= 1);
	assert_true(arrived(f, m_mac) >= 1);
	assert_true(arrived(f, m_arp) >= 1);
	assert_true(arrived(f, "ether type ip6") >= 1);

	/* Repaired by ensure: dropped again, the VM's own frames pass. */
	reset_counters(f, spoof_mac, spoof_ip);
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac, f->ip, &err), 0);
	send_all(f, spoof_mac, spoof_ip);
	for (int i = 0; i < 200 && arrived(f, m_own_arp) < 1; i++)
		usleep(10000);
	assert_true(arrived(f, m_own_arp) >= 1);
	assert_true(arrived(f, m_own_ip) >= 1);
	assert_int_equal(arrived(f, m_ip), 0);
	assert_int_equal(arrived(f, m_mac), 0);
	assert_int_equal(arrived(f, m_arp), 0);
	assert_int_equal(arrived(f, "ether type ip6"), 0);

	/* Its map element deleted by hand: the port is still known, and dropped. */
	reset_counters(f, spoof_mac, spoof_ip);
	assert_int_equal(
		hosttest_sh("nft delete element bridge %s taps { '\"%s\"' }", f->table, f->tap), 0);
	send_all(f, spoof_mac, spoof_ip);
	usleep(100000); /* nothing can be waited for: nothing must arrive */
	assert_int_equal(arrived(f, m_own_arp), 0);
	assert_int_equal(arrived(f, m_own_ip), 0);
	assert_int_equal(host_ops_linux.antispoof_remove(&f->net, f->tap, &err), 0);
}

/*
 * The bridge hook sees every bridge of the namespace: a tap named like
 * banger's on another bridge (another instance's, unknown to this table) is
 * never filtered by it.
 */
static void test_other_bridge_untouched(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct host_net other = { .bridge = NULL, .cidr = NULL };
	char bridge2[16], cidr2[32], m[64];
	long got = 0;

	if (skip_reason)
		skip();
	snprintf(bridge2, sizeof(bridge2), "%.12sx", f->bridge);
	snprintf(cidr2, sizeof(cidr2), "172.20.%u.1/24", f->net3 % 250 + 2);
	other.bridge = bridge2;
	other.cidr = cidr2;
	assert_int_equal(host_ops_linux.antispoof_ensure(&f->net, f->tap, f->mac, f->ip, &err), 0);
	assert_int_equal(host_ops_linux.bridge_ensure(&other, &err), 0);
	assert_int_equal(host_link_delete(f->tap2, NULL, &err), 0);
	assert_int_equal(host_ops_linux.tap_ensure(&other, f->tap2, 0, 0, &err), 0);
	snprintf(m, sizeof(m), "iifname \"%s\"", f->tap2);
	assert_int_equal(hosttest_sh("nft -f - <<'EOF'\n"
				     "table bridge count-%s {\n"
				     "  chain in {\n"
				     "    type filter hook input priority 0; policy accept;\n"
				     "    iifname \"%s\" counter\n"
				     "  }\n"
				     "}\n"
				     "EOF",
				     f->bridge, f->tap2),
			 0);
	f->tap_fd = open_tap(f->tap2);
	for (int i = 0; i < 100 && got < 1; i++) {
		if (i % 10 == 0)
			send_frame(f->tap_fd, f->mac2, 0x0800, f->ip); /* even a "spoofed" one */
		usleep(20000);
		got = arrived(f, m);
	}
	if (got < 1)
		(void)hosttest_sh("nft list ruleset bridge >&2; ip -d link >&2; bridge link >&2");
	assert_true(got >= 1);
	assert_int_equal(host_ops_linux.antispoof_remove(&f->net, f->tap, &err), 0);
	assert_int_equal(host_link_delete(bridge2, NULL, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ensure_idempotent_repair_remove, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refuses_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc_finds_orphan_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spoofed_frames_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_bridge_untouched, setup, teardown),
	};

	if (!hosttest_sandbox(&skip_reason))
		test_skip_reason("%s", skip_reason);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
