/*
 * test_host_netrules.c - per-VM egress and port forwards (netrules.c) for
 * real, with TCP and UDP traffic, inside the network namespace of
 * hosttest_sandbox() (the "host"): a bridge 172.21.N.1/24 made by net.c, a
 * namespace "guest" whose veth end is a port of the bridge with 172.21.N.10
 * (the same L3 path as a VM's tap), and a namespace "outside" joined to the
 * host by a veth pair on 172.21.M.0/24 with no route back to the guests (so
 * only masqueraded traffic gets answers), standing in for the internet.
 * Servers and clients are tests/integration/netrules-peer.py; every server
 * answers with the address it sees the client at. Each test checks
 * afterwards that no interface, namespace, table or process it made is left.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

#define MAX_SERVERS 8
#define PORT_TCP 8000 /* servers in the namespaces */
#define PORT_UDP 5353

static const char *skip_reason;
static char peer_py[4096];

struct fixture {
	char sfx[7];
	char bridge[16], cidr[32], table[64];
	char ns_guest[32], ns_out[32], ns_guest2[32];
	char veth_g[16], veth_o[16], veth_g2[16];
	unsigned int n3, m3; /* 172.21.<n3>.0/24 bridge, 172.21.<m3>.0/24 outside */
	char host_out[16], out_ip[16], bridge_ip[16];
	struct host_net net;
	char id[9], tap[16], ip[16];
	char id2[9], tap2[16], ip2[16];
	char old_forward[8];
	pid_t servers[MAX_SERVERS];
	int n_servers;
};

static void sh_ok(const char *cmd)
{
	if (hosttest_sh("%s", cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

static int setup(void **state)
{
	struct fixture *f;
	struct bg_err err = { 0 };
	_cleanup_free_ char *fwd = NULL;
	_cleanup_free_ char *cmd = NULL;
	unsigned int k;

	*state = NULL;
	if (skip_reason)
		return 0;
	f = xcalloc(1, sizeof(*f));
	test_unique_suffix(f->sfx, 6);
	k = (unsigned int)strtoul(f->sfx, NULL, 16) % 120;
	f->n3 = 2 * k + 2;
	f->m3 = 2 * k + 3;
	snprintf(f->bridge, sizeof(f->bridge), "bgt-nr%s", f->sfx);
	snprintf(f->cidr, sizeof(f->cidr), "172.21.%u.1/24", f->n3);
	snprintf(f->bridge_ip, sizeof(f->bridge_ip), "172.21.%u.1", f->n3);
	snprintf(f->host_out, sizeof(f->host_out), "172.21.%u.1", f->m3);
	snprintf(f->out_ip, sizeof(f->out_ip), "172.21.%u.2", f->m3);
	snprintf(f->ns_guest, sizeof(f->ns_guest), "bgt-nrg-%s", f->sfx);
	snprintf(f->ns_out, sizeof(f->ns_out), "bgt-nro-%s", f->sfx);
	snprintf(f->veth_g, sizeof(f->veth_g), "bgt-nrvg%s", f->sfx);
	snprintf(f->veth_o, sizeof(f->veth_o), "bgt-nrvo%s", f->sfx);
	snprintf(f->ns_guest2, sizeof(f->ns_guest2), "bgt-nrh-%s", f->sfx);
	snprintf(f->veth_g2, sizeof(f->veth_g2), "bgt-nrvh%s", f->sfx);
	f->net.bridge = f->bridge;
	f->net.cidr = f->cidr;
	assert_int_equal(host_netrules_table(f->bridge, f->table, NULL), 0);
	test_unique_suffix(f->id, 8);
	do
		test_unique_suffix(f->id2, 8);
	while (strcmp(f->id, f->id2) == 0);
	assert_int_equal(host_tap_name(f->id, f->tap), 0);
	assert_int_equal(host_tap_name(f->id2, f->tap2), 0);
	snprintf(f->ip, sizeof(f->ip), "172.21.%u.10", f->n3);
	snprintf(f->ip2, sizeof(f->ip2), "172.21.%u.11", f->n3);

	fwd = hosttest_sh_output("cat /proc/sys/net/ipv4/ip_forward");
	assert_non_null(fwd);
	snprintf(f->old_forward, sizeof(f->old_forward), "%c", fwd[0] == '1' ? '1' : '0');
	sh_ok("echo 0 > /proc/sys/net/ipv4/ip_forward");
	sh_ok("ip link set lo up");

	assert_int_equal(host_ops_linux.bridge_ensure(&f->net, &err), 0);
	cmd = xasprintf("set -e; ip netns add %1$s; ip netns add %2$s; "
			"ip link add %3$s type veth peer name eth0 netns %1$s; "
			"ip link set %3$s master %5$s up; "
			"ip -n %1$s link set lo up; ip -n %1$s addr add %6$s/24 dev eth0; "
			"ip -n %1$s link set eth0 up; ip -n %1$s route add default via %7$s; "
			"ip link add %4$s type veth peer name eth0 netns %2$s; "
			"ip addr add %8$s/24 dev %4$s; ip link set %4$s up; "
			"ip -n %2$s link set lo up; ip -n %2$s addr add %9$s/24 dev eth0; "
			"ip -n %2$s link set eth0 up",
			f->ns_guest, f->ns_out, f->veth_g, f->veth_o, f->bridge, f->ip,
			f->bridge_ip, f->host_out, f->out_ip);
	sh_ok(cmd);
	*state = f;
	return 0;
}

/* A second guest, namespace ns_guest2 with ip2 on the bridge: for VM-to-VM traffic. */
static void add_guest2(struct fixture *f)
{
	_cleanup_free_ char *cmd = xasprintf(
		"set -e; ip netns add %1$s; ip link add %2$s type veth peer name eth0 netns %1$s; "
		"ip link set %2$s master %3$s up; ip -n %1$s link set lo up; "
		"ip -n %1$s addr add %4$s/24 dev eth0; ip -n %1$s link set eth0 up; "
		"ip -n %1$s route add default via %5$s",
		f->ns_guest2, f->veth_g2, f->bridge, f->ip2, f->bridge_ip);

	sh_ok(cmd);
}

static void kill_servers(struct fixture *f)
{
	for (int i = 0; i < f->n_servers; i++) {
		(void)kill(f->servers[i], SIGKILL);
		(void)waitpid(f->servers[i], NULL, 0);
	}
	f->n_servers = 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int links, tables, netns;

	if (!f)
		return 0;
	kill_servers(f);
	(void)hosttest_sh("nft delete table ip %s 2>/dev/null", f->table);
	(void)hosttest_sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null; "
			  "ip netns del %s 2>/dev/null",
			  f->ns_guest, f->ns_out, f->ns_guest2);
	(void)host_link_delete(f->veth_g, NULL, NULL);
	(void)host_link_delete(f->veth_g2, NULL, NULL);
	(void)host_link_delete(f->veth_o, NULL, NULL);
	(void)host_link_delete(f->bridge, NULL, NULL);
	(void)hosttest_sh("echo %s > /proc/sys/net/ipv4/ip_forward", f->old_forward);
	links = hosttest_count_links("bgt-nr");
	tables = hosttest_sh("nft list tables ip | grep -q %s", f->table);
	netns = hosttest_sh("ip netns list | grep -q %s", f->sfx);
	free(f);
	assert_int_equal(links, 0);
	assert_int_equal(tables, 1);
	assert_int_equal(netns, 1);
	return 0;
}

/*
 * Start 'netrules-peer.py serve proto port' in namespace ns (NULL: the host)
 * as a child of this process, so it is stopped by its pid.
 */
static void serve(struct fixture *f, const char *ns, const char *proto, unsigned int port)
{
	char portstr[8];
	pid_t pid;

	assert_true(f->n_servers < MAX_SERVERS);
	snprintf(portstr, sizeof(portstr), "%u", port);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (ns)
			execlp("ip", "ip", "netns", "exec", ns, "python3", peer_py, "serve", proto,
			       portstr, (char *)NULL);
		else
			execlp("python3", "python3", peer_py, "serve", proto, portstr,
			       (char *)NULL);
		_exit(127);
	}
	f->servers[f->n_servers++] = pid;
}

/*
 * Ask the server at host:port from namespace ns (NULL: the host) for up to
 * secs seconds. The address the server saw us at (owned), NULL when no answer.
 */
static char *ask(const char *ns, const char *proto, const char *host, unsigned int port,
		 double secs)
{
	_cleanup_free_ char *pre = ns ? xasprintf("ip netns exec %s ", ns) : xstrdup("");
	char *out = hosttest_sh_output("%spython3 %s ask %s %s %u %.1f", pre, peer_py, proto, host,
				       port, secs);

	if (out) {
		out[strcspn(out, "\n")] = '\0';
		if (!*out) {
			free(out);
			out = NULL;
		}
	}
	return out;
}

/* The answer must come (within 10 s) and name 'seen'. */
static void expect_answer(const char *ns, const char *proto, const char *host, unsigned int port,
			  const char *seen)
{
	_cleanup_free_ char *a = ask(ns, proto, host, port, 10);

	if (!a)
		fail_msg("%s %s:%u from %s: no answer", proto, host, port, ns ? ns : "host");
	assert_string_equal(a, seen);
}

/* No answer within 2 s (after the path was shown to work, so this is the rule's doing). */
static void expect_silence(const char *ns, const char *proto, const char *host, unsigned int port)
{
	_cleanup_free_ char *a = ask(ns, proto, host, port, 2);

	if (a)
		fail_msg("%s %s:%u from %s: answered '%s', expected no answer", proto, host, port,
			 ns ? ns : "host", a);
}

static struct host_forward fwd_of(const char *host_ip, unsigned int host_port,
				  unsigned int guest_port, enum host_proto proto)
{
	struct host_forward f = { .host_port = (uint16_t)host_port,
				  .guest_port = (uint16_t)guest_port,
				  .proto = proto };

	snprintf(f.host_ip, sizeof(f.host_ip), "%s", host_ip);
	return f;
}

static int ensure(const struct fixture *f, const char *tap, const char *ip, bool nat,
		  const struct host_forward *fwd, size_t n, struct host_forward_conflict **ret_c,
		  size_t *ret_n)
{
	struct bg_err err = { 0 };
	struct host_forward_conflict *c = NULL;
	size_t nc = 0;
	int r;

	r = host_ops_linux.netrules_ensure(&f->net, tap, ip, nat, fwd, n, &c, &nc, &err);
	if (r < 0)
		print_message("netrules_ensure: %s\n", err.msg);
	if (ret_c) {
		*ret_c = c;
		*ret_n = nc;
	} else {
		assert_int_equal(nc, 0);
		free(c);
	}
	return r;
}

static char *table_text(const struct fixture *f)
{
	return hosttest_sh_output("nft list table ip %s 2>/dev/null", f->table);
}

static void test_egress(void **state)
{
	struct fixture *f = *state;

	if (skip_reason)
		skip();
	serve(f, f->ns_out, "tcp", PORT_TCP);
	/* The server is up: the host reaches it directly. */
	expect_answer(NULL, "tcp", f->out_ip, PORT_TCP, f->host_out);

	assert_int_equal(ensure(f, f->tap, f->ip, true, NULL, 0, NULL, NULL), 0);
	assert_int_equal(hosttest_sh("grep -qx 1 /proc/sys/net/ipv4/ip_forward"), 0);
	/* Masqueraded: the outside sees the host's address on its side, never the guest's. */
	expect_answer(f->ns_guest, "tcp", f->out_ip, PORT_TCP, f->host_out);

	assert_int_equal(ensure(f, f->tap, f->ip, false, NULL, 0, NULL, NULL), 0);
	expect_silence(f->ns_guest, "tcp", f->out_ip, PORT_TCP);
	/* Still reaches the host itself (the bridge address): only other interfaces are cut. */
	serve(f, NULL, "tcp", PORT_TCP + 1);
	expect_answer(f->ns_guest, "tcp", f->bridge_ip, PORT_TCP + 1, f->ip);

	assert_int_equal(ensure(f, f->tap, f->ip, true, NULL, 0, NULL, NULL), 0);
	expect_answer(f->ns_guest, "tcp", f->out_ip, PORT_TCP, f->host_out);
	assert_int_equal(ensure(f, f->tap, f->ip, false, NULL, 0, NULL, NULL), 0);
	expect_silence(f->ns_guest, "tcp", f->out_ip, PORT_TCP);
}

static void test_forwards(void **state)
{
	struct fixture *f = *state;
	struct host_forward fw[3];
	_cleanup_free_ char *show = NULL;
	struct bg_err err = { 0 };

	if (skip_reason)
		skip();
	serve(f, f->ns_guest, "tcp", 80);
	serve(f, f->ns_guest, "udp", PORT_UDP);
	fw[0] = fwd_of("127.0.0.1", 18080, 80, HOST_PROTO_TCP);
	fw[1] = fwd_of("0.0.0.0", 18081, 80, HOST_PROTO_TCP);
	fw[2] = fwd_of("0.0.0.0", 15353, PORT_UDP, HOST_PROTO_UDP);
	/* Egress none: forwards work anyway (their replies are established traffic). */
	assert_int_equal(ensure(f, f->tap, f->ip, false, fw, 3, NULL, NULL), 0);
	assert_int_equal(hosttest_sh("grep -qx 1 /proc/sys/net/ipv4/ip_forward"), 0);
	assert_int_equal(
		hosttest_sh("grep -qx 1 /proc/sys/net/ipv4/conf/%s/route_localnet", f->bridge), 0);

	/* From the host through loopback: masqueraded to the bridge's address. */
	expect_answer(NULL, "tcp", "127.0.0.1", 18080, f->bridge_ip);
	/* 0.0.0.0 is every local address, also from the host itself. */
	expect_answer(NULL, "tcp", "127.0.0.1", 18081, f->bridge_ip);
	/* From the outside to the host's address there: the guest sees the real client. */
	expect_answer(f->ns_out, "tcp", f->host_out, 18081, f->out_ip);
	expect_answer(f->ns_out, "udp", f->host_out, 15353, f->out_ip);
	/* 127.0.0.1 only: not reachable on the outside address. */
	expect_silence(f->ns_out, "tcp", f->host_out, 18080);
	/* Another VM through a host address (hairpin): answered, seen as the host. */
	add_guest2(f);
	expect_answer(f->ns_guest2, "tcp", f->host_out, 18081, f->bridge_ip);
	expect_answer(f->ns_guest2, "tcp", f->bridge_ip, 18081, f->bridge_ip);

	assert_int_equal(host_ops_linux.netrules_show(&f->net, f->tap, &show, &err), 0);
	assert_non_null(strstr(show, "dnat to"));
	assert_non_null(strstr(show, "18081"));
	print_message("--- nft list table ip %s ---\n", f->table);
	(void)hosttest_sh("nft list table ip %s >&2", f->table);
}

static void test_conflicts(void **state)
{
	struct fixture *f = *state;
	struct host_forward fw1[2], fw2[3];
	struct host_forward_conflict *c = NULL;
	_cleanup_free_ char *text = NULL;
	size_t nc = 0;

	if (skip_reason)
		skip();
	serve(f, f->ns_guest, "tcp", 80);
	fw1[0] = fwd_of("0.0.0.0", 18081, 80, HOST_PROTO_TCP);
	fw1[1] = fwd_of("127.0.0.1", 18082, 80, HOST_PROTO_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, true, fw1, 2, NULL, NULL), 0);
	expect_answer(f->ns_out, "tcp", f->host_out, 18081, f->out_ip);

	/* The second VM asks for an overlapping, an equal and a free forward. */
	fw2[0] = fwd_of("127.0.0.1", 18081, 80, HOST_PROTO_TCP); /* under tap's 0.0.0.0 */
	fw2[1] = fwd_of("0.0.0.0", 18082, 80, HOST_PROTO_TCP);	 /* over tap's 127.0.0.1 */
	fw2[2] = fwd_of("0.0.0.0", 18083, 80, HOST_PROTO_TCP);
	assert_int_equal(ensure(f, f->tap2, f->ip2, true, fw2, 3, &c, &nc), 0);
	assert_int_equal(nc, 2);
	assert_int_equal(c[0].fwd.host_port, 18081);
	assert_string_equal(c[0].holder_tap, f->tap);
	assert_int_equal(c[1].fwd.host_port, 18082);
	assert_string_equal(c[1].holder_tap, f->tap);
	free(c);
	/* The first VM's forwards are untouched; the free one went to the second VM. */
	expect_answer(f->ns_out, "tcp", f->host_out, 18081, f->out_ip);
	expect_answer(NULL, "tcp", "127.0.0.1", 18082, f->bridge_ip);
	text = table_text(f);
	assert_non_null(strstr(text, "tcp . 18083 : jump "));
	assert_int_equal(hosttest_sh("nft list map ip %s forwards_any | grep -q 'tcp . 18083 : "
				     "jump %s-dnat'",
				     f->table, f->tap2),
			 0);
	/* Same UDP port as a TCP one: no conflict. */
	fw2[0] = fwd_of("0.0.0.0", 18081, 80, HOST_PROTO_UDP);
	assert_int_equal(ensure(f, f->tap2, f->ip2, true, fw2, 1, &c, &nc), 0);
	assert_int_equal(nc, 0);
	assert_null(c);
	/* ... and 18083 was dropped from the second VM's list, so it is gone. */
	assert_int_equal(hosttest_sh("nft list map ip %s forwards_any | grep -q 18083", f->table),
			 1);

	/* Changing the first VM's list removes the dropped forward. */
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw1[1], 1, NULL, NULL), 0);
	expect_silence(f->ns_out, "tcp", f->host_out, 18081);
	expect_answer(NULL, "tcp", "127.0.0.1", 18082, f->bridge_ip);
	/* Now the second VM gets 18081/tcp. */
	fw2[0] = fwd_of("0.0.0.0", 18081, 80, HOST_PROTO_TCP);
	assert_int_equal(ensure(f, f->tap2, f->ip2, true, fw2, 1, NULL, NULL), 0);
	assert_int_equal(hosttest_sh("nft list map ip %s forwards_any | grep -q "
				     "'tcp . 18081 : jump %s-dnat'",
				     f->table, f->tap2),
			 0);
}

static void test_repair(void **state)
{
	struct fixture *f = *state;
	struct host_forward fw = fwd_of("0.0.0.0", 18081, 80, HOST_PROTO_TCP);

	if (skip_reason)
		skip();
	serve(f, f->ns_guest, "tcp", 80);
	serve(f, f->ns_out, "tcp", PORT_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), 0);
	expect_answer(f->ns_out, "tcp", f->host_out, 18081, f->out_ip);
	expect_answer(f->ns_guest, "tcp", f->out_ip, PORT_TCP, f->host_out);

	/* The whole table deleted: both directions stop, ensure brings them back. */
	assert_int_equal(hosttest_sh("nft delete table ip %s", f->table), 0);
	expect_silence(f->ns_out, "tcp", f->host_out, 18081);
	expect_silence(f->ns_guest, "tcp", f->out_ip, PORT_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), 0);
	expect_answer(f->ns_out, "tcp", f->host_out, 18081, f->out_ip);
	expect_answer(f->ns_guest, "tcp", f->out_ip, PORT_TCP, f->host_out);

	/* One chain flushed, one element deleted. */
	assert_int_equal(hosttest_sh("nft flush chain ip %s %s-dnat", f->table, f->tap), 0);
	expect_silence(f->ns_out, "tcp", f->host_out, 18081);
	assert_int_equal(hosttest_sh("nft delete element ip %s masq { %s }", f->table, f->ip), 0);
	expect_silence(f->ns_guest, "tcp", f->out_ip, PORT_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), 0);
	expect_answer(f->ns_out, "tcp", f->host_out, 18081, f->out_ip);
	expect_answer(f->ns_guest, "tcp", f->out_ip, PORT_TCP, f->host_out);

	/* This namespace is the sandbox's own: flushing every table is safe here. */
	assert_int_equal(hosttest_sh("nft flush ruleset"), 0);
	expect_silence(f->ns_out, "tcp", f->host_out, 18081);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), 0);
	expect_answer(f->ns_out, "tcp", f->host_out, 18081, f->out_ip);

	/* Twice in a row: the same ruleset. */
	{
		_cleanup_free_ char *t1 = table_text(f), *t2 = NULL;

		assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), 0);
		t2 = table_text(f);
		assert_string_equal(t1, t2);
	}
}

/*
 * The kernel's nftables generation: the same number while nothing changes,
 * a new one after any commit (banger's own ensure, or a rule changed by
 * hand), which is what lets a resync skip re-ensuring unchanged rules.
 */
static void test_generation(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	uint32_t g1, g2, g3, g4;

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.rules_generation(&g1, &err), 0);
	assert_int_equal(host_ops_linux.rules_generation(&g2, &err), 0);
	assert_int_equal(g1, g2);
	assert_int_equal(ensure(f, f->tap, f->ip, true, NULL, 0, NULL, NULL), 0);
	assert_int_equal(host_ops_linux.rules_generation(&g3, &err), 0);
	assert_int_not_equal(g3, g2);
	/* Anyone's change counts (a table of someone else's here; an empty flush is none). */
	assert_int_equal(hosttest_sh("nft add table ip %s-other", f->table), 0);
	assert_int_equal(host_ops_linux.rules_generation(&g4, &err), 0);
	assert_int_not_equal(g4, g3);
	assert_int_equal(hosttest_sh("nft delete table ip %s-other", f->table), 0);
}

/*
 * Netfilter netlink sockets of this process; *no_cloexec counts those a child
 * would get; pattern (may be NULL) gets "socket:\[INODE\]|..." for grep -E.
 */
static int netfilter_sockets(int *no_cloexec, char *pattern, size_t size)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	*no_cloexec = 0;
	if (pattern)
		pattern[0] = '\0';
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name), domain = 0, proto = 0;
		socklen_t len = sizeof(int);
		struct stat st;

		if (fd < 3 || fd == dirfd(d) ||
		    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
		    domain != AF_NETLINK)
			continue;
		len = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) < 0 ||
		    proto != NETLINK_NETFILTER)
			continue;
		n++;
		if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
			(*no_cloexec)++;
		if (pattern && fstat(fd, &st) == 0) {
			size_t used = strlen(pattern);

			snprintf(pattern + used, size - used, "%ssocket:\\[%lu\\]", used ? "|" : "",
				 (unsigned long)st.st_ino);
		}
	}
	closedir(d);
	return n;
}

/*
 * The libnftables context is kept for the process (nft.c: closing a socket
 * that committed waits out an RCU grace period), so many calls leave one
 * socket for it and one for the generation probe, and a child never gets
 * them.
 */
static void test_context_kept(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	uint32_t g;
	int n1, n2, leaky;
	char pattern[512];

	if (skip_reason)
		skip();
	assert_int_equal(ensure(f, f->tap, f->ip, true, NULL, 0, NULL, NULL), 0);
	assert_int_equal(host_ops_linux.rules_generation(&g, &err), 0);
	n1 = netfilter_sockets(&leaky, NULL, 0);
	assert_in_range(n1, 1, 2);
	assert_int_equal(leaky, 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(ensure(f, f->tap2, f->ip2, i % 2, NULL, 0, NULL, NULL), 0);
		assert_int_equal(host_ops_linux.rules_generation(&g, &err), 0);
	}
	n2 = netfilter_sockets(&leaky, pattern, sizeof(pattern));
	assert_int_equal(n2, n1);
	assert_int_equal(leaky, 0);
	/* What a child sees after exec (system(): inherits all but close-on-exec fds):
	 * none of those sockets. */
	assert_true(pattern[0]);
	assert_int_equal(hosttest_sh("! ls -l /proc/$$/fd | grep -qE '%s'", pattern), 0);
}

static void test_remove_and_gc(void **state)
{
	struct fixture *f = *state;
	struct host_forward fw = fwd_of("0.0.0.0", 18081, 80, HOST_PROTO_TCP);
	struct host_forward fw2 = fwd_of("127.0.0.1", 18082, 80, HOST_PROTO_UDP);
	_cleanup_free_ char *dir = test_tmpdir("bg-netrules-gc");
	_cleanup_free_ char *text = NULL, *show = NULL;
	const char *known[] = { f->id };
	struct host_orphan *v = NULL;
	struct bg_err err = { 0 };
	size_t n = 0;
	int found = -1;

	if (skip_reason)
		skip();
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), 0);
	assert_int_equal(ensure(f, f->tap2, f->ip2, false, &fw2, 1, NULL, NULL), 0);
	assert_int_equal(host_ops_linux.netrules_remove(&f->net, f->tap, &err), 0);
	text = table_text(f);
	assert_non_null(text);
	assert_null(strstr(text, f->tap));
	assert_null(strstr(text, f->ip));
	assert_non_null(strstr(text, f->tap2));
	assert_int_equal(host_ops_linux.netrules_remove(&f->net, f->tap, &err), 0);
	assert_int_equal(host_ops_linux.netrules_show(&f->net, f->tap, &show, &err), 0);
	assert_string_equal(show, "");

	/* tap2 is unknown to this state dir: gc finds its chains, once, and removes them. */
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), 0);
	assert_int_equal(host_ops_linux.gc_scan(dir, known, 1, &v, &n, &err), 0);
	for (size_t i = 0; i < n; i++) {
		if (v[i].kind != HOST_ORPHAN_NETRULES)
			continue;
		assert_string_not_equal(v[i].name, f->tap);
		assert_int_equal(found, -1);
		if (strcmp(v[i].name, f->tap2) == 0)
			found = (int)i;
	}
	assert_true(found >= 0);
	assert_string_equal(v[found].master, f->bridge);
	assert_string_equal(host_orphan_kind_to_string(v[found].kind), "netrules");
	assert_true(host_orphan_is_ours(&v[found], f->bridge));
	assert_false(host_orphan_is_ours(&v[found], "banger0"));
	assert_int_equal(host_ops_linux.gc_remove(&v[found], &err), 0);
	free(v);
	free(text);
	text = table_text(f);
	assert_null(strstr(text, f->tap2));
	assert_non_null(strstr(text, f->tap));
	test_rmtree(dir);
}

static void test_bad_input(void **state)
{
	struct fixture *f = *state;
	struct host_net bad = f->net;
	struct bg_err err = { 0 };
	struct host_forward fw;
	struct host_forward two[2];

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.netrules_ensure(&f->net, "bg1;drop", f->ip, true, NULL, 0,
							NULL, NULL, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "invalid tap name"));
	assert_int_equal(host_ops_linux.netrules_ensure(&f->net, f->tap, "1.2.3.4 drop", true, NULL,
							0, NULL, NULL, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "invalid IPv4 address"));
	fw = fwd_of("127.0.0.1", 0, 80, HOST_PROTO_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), -EINVAL);
	fw = fwd_of("127.0.0.1", 80, 0, HOST_PROTO_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), -EINVAL);
	fw = fwd_of("127.0.0.1", 80, 80, HOST_PROTO_MAX);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), -EINVAL);
	fw = fwd_of("127.1", 80, 80, HOST_PROTO_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), -EINVAL);
	fw = fwd_of("1.2.3.4 }", 80, 80, HOST_PROTO_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, true, &fw, 1, NULL, NULL), -EINVAL);
	two[0] = fwd_of("0.0.0.0", 80, 80, HOST_PROTO_TCP);
	two[1] = fwd_of("127.0.0.1", 80, 81, HOST_PROTO_TCP);
	assert_int_equal(host_ops_linux.netrules_ensure(&f->net, f->tap, f->ip, true, two, 2, NULL,
							NULL, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "overlap"));
	bad.bridge = "x\" ; flush";
	assert_int_equal(host_ops_linux.netrules_base_ensure(&bad, &err), -EINVAL);
	assert_int_equal(host_ops_linux.netrules_remove(&bad, f->tap, &err), -EINVAL);
	assert_int_equal(host_ops_linux.netrules_remove(&f->net, "eth0", &err), -EINVAL);
	/* Nothing was made. */
	assert_int_equal(hosttest_sh("test -z \"$(nft list ruleset)\""), 0);
	/* Base alone: the table with empty maps, twice. */
	assert_int_equal(host_ops_linux.netrules_base_ensure(&f->net, &err), 0);
	assert_int_equal(host_ops_linux.netrules_base_ensure(&f->net, &err), 0);
	assert_int_equal(
		hosttest_sh("nft list table ip %s | grep -c 'vmap @masq' | grep -qx 1", f->table),
		0);
}

/* The table nat.c made before netrules.c (subnet-wide masquerade) is taken over, not kept. */
/*
 * Packets that got past banger's input chain to the host: counters in a
 * table of the test's own, hooked after it (priority 10), in the rule
 * whose comment is 'what'.
 */
static long delivered(const struct fixture *f, const char *what)
{
	_cleanup_free_ char *out =
		hosttest_sh_output("nft list chain ip bgt-count-%s in | grep -F 'comment \"%s\"' | "
				   "sed -n 's/.*packets \\([0-9]*\\).*/\\1/p'",
				   f->sfx, what);

	assert_non_null(out);
	return strtol(out, NULL, 10);
}

/*
 * The bridge address (the guests' gateway and DNS) takes no packets from
 * other networks: the outside, which routes the bridge's subnet through the
 * host, is cut off at banger's input chain. The control (that chain flushed)
 * shows the packets really reach the host without it. (A guest reaching the
 * host's 127.0.0.1 through the bridge is tested with a real guest in
 * tests/e2e/network.bats.)
 */
static void test_bridge_address_is_not_for_other_networks(void **state)
{
	struct fixture *f = *state;
	struct host_forward fw[1];
	_cleanup_free_ char *lan = NULL, *count = NULL, *flush = NULL, *a = NULL;
	long before;

	if (skip_reason)
		skip();
	fw[0] = fwd_of("127.0.0.1", 18080, 80, HOST_PROTO_TCP);
	assert_int_equal(ensure(f, f->tap, f->ip, false, fw, 1, NULL, NULL), 0);
	lan = xasprintf("ip -n %s route add 172.21.%u.0/24 via %s", f->ns_out, f->n3, f->host_out);
	sh_ok(lan);
	count = xasprintf("nft add table ip bgt-count-%1$s; "
			  "nft add chain ip bgt-count-%1$s in '{ type filter hook input priority "
			  "10; policy accept; }'; "
			  "nft add rule ip bgt-count-%1$s in iifname %2$s ip daddr %3$s counter "
			  "comment '\"gw\"'",
			  f->sfx, f->veth_o, f->bridge_ip);
	sh_ok(count);
	a = ask(f->ns_out, "udp", f->bridge_ip, PORT_UDP + 1, 1);
	assert_null(a);
	assert_int_equal(delivered(f, "gw"), 0);

	/* Control: without banger's input chain the packets reach the host. */
	flush = xasprintf("nft flush chain ip %s input", f->table);
	sh_ok(flush);
	a = ask(f->ns_out, "udp", f->bridge_ip, PORT_UDP + 1, 1);
	free(a);
	assert_true(delivered(f, "gw") > 0);

	/* The next ensure (a resync) closes it again: no more get through. */
	before = delivered(f, "gw");
	assert_int_equal(ensure(f, f->tap, f->ip, false, fw, 1, NULL, NULL), 0);
	a = ask(f->ns_out, "udp", f->bridge_ip, PORT_UDP + 1, 1);
	assert_null(a);
	assert_int_equal(delivered(f, "gw"), before);
	(void)hosttest_sh("nft delete table ip bgt-count-%s", f->sfx);
	/* The host's own 127.0.0.1 forward still works (its replies come in from the bridge). */
	serve(f, f->ns_guest, "tcp", 80);
	expect_answer(NULL, "tcp", "127.0.0.1", 18080, f->bridge_ip);
}

static void test_takes_over_old_nat_table(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *text = NULL;

	if (skip_reason)
		skip();
	assert_int_equal(
		hosttest_sh("printf '%%s\\n' 'table ip %s {' 'chain postrouting {' "
			    "'type nat hook postrouting priority srcnat; policy accept;' "
			    "'ip saddr 172.21.%u.0/24 oifname != \"%s\" masquerade' '}' '}' "
			    "| nft -f -",
			    f->table, f->n3, f->bridge),
		0);
	assert_int_equal(
		hosttest_sh("nft list table ip %s | grep -q 'oifname != .* masquerade'", f->table),
		0);
	assert_int_equal(host_ops_linux.netrules_base_ensure(&f->net, &err), 0);
	text = table_text(f);
	assert_non_null(strstr(text, "vmap @masq"));
	assert_null(strstr(text, "oifname != "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_egress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forwards, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_context_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_and_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge_address_is_not_for_other_networks,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_takes_over_old_nat_table, setup, teardown),
	};
	char here[] = __FILE__;

	snprintf(peer_py, sizeof(peer_py), "%s/netrules-peer.py", dirname(here));
	if (!hosttest_sandbox(&skip_reason))
		test_skip_reason("%s", skip_reason);
	else if (access(peer_py, R_OK) != 0) {
		fprintf(stderr, "%s: %s (run from the top of the source tree)\n", peer_py,
			strerror(errno));
		return 1;
	} else if (hosttest_sh("command -v python3 >/dev/null && command -v ip >/dev/null") != 0)
		test_skip_reason("%s", (skip_reason = "needs python3 and ip (iproute2)"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
