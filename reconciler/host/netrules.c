/*
 * netrules.c - per-VM egress and port forwards with libnftables (through
 * nft.c), in one table per bridge, "ip banger-<bridge>":
 *
 *   map forwards     ip daddr . meta l4proto . th dport -> jump <tap>-dnat
 *   map forwards_any meta l4proto . th dport -> jump <tap>-dnat (host ip 0.0.0.0,
 *                    matched only with 'fib daddr type local')
 *   map masq         ip saddr -> jump <tap>-masq
 *   map egress       ip saddr -> jump <tap>-egress
 *   chain prerouting  (nat, dstnat)  both forward maps: from other hosts/namespaces
 *   chain output      (nat, -100)    both forward maps: from the host itself
 *   chain postrouting (nat, srcnat)  127.0.0.0/8 leaving via the bridge is
 *                                    masqueraded (forwards of 127.0.0.1), so is
 *                                    DNATed traffic from the bridge back into it
 *                                    (one VM using another's forward), then @masq
 *   chain forward   (filter, filter) ct state established,related accept, then @egress
 *   chain input     (filter, filter) from the bridge to 127.0.0.0/8: replies only
 *                                    (route_localnet must not open the host's
 *                                    loopback to guests); to the bridge address:
 *                                    only from the bridge and lo
 *
 * A VM owns exactly three regular chains named after its tap ("bg<id>"):
 * "<tap>-dnat" (one 'dnat to ip:guest_port' rule per forward it holds),
 * "<tap>-masq" (egress nat: masquerade leaving any interface but the bridge;
 * empty for none) and "<tap>-egress" (egress none: drop what leaves for
 * another interface; new connections only, since replies were accepted
 * before; empty for nat), plus the map elements that jump to them. So
 * remove, show and gc find a VM's rules by its tap name alone.
 *
 * netrules_ensure lists the table first (JSON): a forward whose host address
 * and port another tap holds, or overlaps (0.0.0.0 and any specific address
 * of the same protocol and port), is returned as a conflict naming that tap
 * and not taken; the kernel's EEXIST on an element with another verdict is
 * the atomic backstop. Then one transaction re-creates the base objects (so
 * a flushed or deleted table is repaired by the next ensure), replaces the
 * VM's chains, deletes the elements it held and adds the ones it wants.
 * It turns on IPv4 forwarding when the VM has egress nat or a forward, and
 * route_localnet on the bridge when it has a forward of 127.0.0.1 or
 * 0.0.0.0 (the host reaching it through loopback).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

static const char *const chain_suffixes[] = { "-dnat", "-masq", "-egress" };
#define N_CHAINS (sizeof(chain_suffixes) / sizeof(chain_suffixes[0]))

enum nr_map {
	NR_MAP_FORWARDS,
	NR_MAP_FORWARDS_ANY,
	NR_MAP_MASQ,
	NR_MAP_EGRESS,
	NR_MAP_MAX
};

static const char *const map_names[NR_MAP_MAX] = { "forwards", "forwards_any", "masq", "egress" };

/* One map element as listed: its key as nft text and the tap its verdict jumps to. */
struct nr_elem {
	enum nr_map map;
	char ip[16]; /* forwards, masq, egress */
	enum host_proto proto;
	uint16_t port;
	char key[64];	 /* nft text of the key */
	char target[32]; /* the chain it jumps to */
	char holder[16]; /* the tap of that chain; "" when not a VM chain */
};

struct nr_state {
	struct nr_elem *elems;
	size_t n_elems;
	char (*chains)[64]; /* regular chains of the table */
	size_t n_chains;
};

static void nr_state_release(struct nr_state *s)
{
	free(s->elems);
	free(s->chains);
}

int host_netrules_table(const char *bridge, char ret[64], struct bg_err *err)
{
	if (!host_valid_ifname(bridge))
		return bg_errorf(err, EINVAL, "invalid bridge name '%s'", bridge ? bridge : "");
	snprintf(ret, 64, "banger-%s", bridge);
	return 0;
}

/* The tap whose chain 'chain' is ("bg<id>-dnat" -> "bg<id>"), false when none of ours. */
static bool chain_tap(const char *chain, char ret[16])
{
	const char *dash = strchr(chain, '-');
	char tap[16];

	if (!dash || (size_t)(dash - chain) >= sizeof(tap))
		return false;
	memcpy(tap, chain, (size_t)(dash - chain));
	tap[dash - chain] = '\0';
	if (!host_parse_tap_name(tap, NULL))
		return false;
	for (size_t i = 0; i < N_CHAINS; i++)
		if (strcmp(dash, chain_suffixes[i]) == 0) {
			snprintf(ret, 16, "%s", tap);
			return true;
		}
	return false;
}

static bool parse_ipv4(const char *s, struct in_addr *ret)
{
	return s && strlen(s) < 16 && inet_pton(AF_INET, s, ret) == 1;
}

static bool parse_proto(const cJSON *j, enum host_proto *ret)
{
	if (cJSON_IsString(j) && strcmp(j->valuestring, "tcp") == 0)
		*ret = HOST_PROTO_TCP;
	else if (cJSON_IsString(j) && strcmp(j->valuestring, "udp") == 0)
		*ret = HOST_PROTO_UDP;
	else if (cJSON_IsNumber(j) && j->valueint == 6)
		*ret = HOST_PROTO_TCP;
	else if (cJSON_IsNumber(j) && j->valueint == 17)
		*ret = HOST_PROTO_UDP;
	else
		return false;
	return true;
}

static bool parse_port(const cJSON *j, uint16_t *ret)
{
	if (!cJSON_IsNumber(j) || j->valuedouble < 1 || j->valuedouble > 65535)
		return false;
	*ret = (uint16_t)j->valueint;
	return true;
}

/* One element [key, verdict] of map m into *e; false when it is not one we can read. */
static bool parse_elem(enum nr_map m, const cJSON *pair, struct nr_elem *e)
{
	const cJSON *key = cJSON_GetArrayItem(pair, 0);
	const cJSON *verdict = cJSON_GetArrayItem(pair, 1);
	const cJSON *jump = cJSON_GetObjectItemCaseSensitive(verdict, "jump");
	const cJSON *target = cJSON_GetObjectItemCaseSensitive(jump, "target");
	const cJSON *concat = cJSON_GetObjectItemCaseSensitive(key, "concat");
	struct in_addr a;

	memset(e, 0, sizeof(*e));
	e->map = m;
	if (!cJSON_IsString(target) || strlen(target->valuestring) >= sizeof(e->target))
		return false;
	snprintf(e->target, sizeof(e->target), "%s", target->valuestring);
	if (!chain_tap(e->target, e->holder))
		e->holder[0] = '\0';
	switch (m) {
	case NR_MAP_FORWARDS:
		if (cJSON_GetArraySize(concat) != 3 ||
		    !cJSON_IsString(cJSON_GetArrayItem(concat, 0)) ||
		    !parse_ipv4(cJSON_GetArrayItem(concat, 0)->valuestring, &a) ||
		    !parse_proto(cJSON_GetArrayItem(concat, 1), &e->proto) ||
		    !parse_port(cJSON_GetArrayItem(concat, 2), &e->port))
			return false;
		inet_ntop(AF_INET, &a, e->ip, sizeof(e->ip));
		snprintf(e->key, sizeof(e->key), "%s . %s . %u", e->ip,
			 host_proto_to_string(e->proto), e->port);
		return true;
	case NR_MAP_FORWARDS_ANY:
		if (cJSON_GetArraySize(concat) != 2 ||
		    !parse_proto(cJSON_GetArrayItem(concat, 0), &e->proto) ||
		    !parse_port(cJSON_GetArrayItem(concat, 1), &e->port))
			return false;
		snprintf(e->ip, sizeof(e->ip), "0.0.0.0");
		snprintf(e->key, sizeof(e->key), "%s . %u", host_proto_to_string(e->proto),
			 e->port);
		return true;
	case NR_MAP_MASQ:
	case NR_MAP_EGRESS:
		if (!cJSON_IsString(key) || !parse_ipv4(key->valuestring, &a))
			return false;
		inet_ntop(AF_INET, &a, e->ip, sizeof(e->ip));
		snprintf(e->key, sizeof(e->key), "%s", e->ip);
		return true;
	case NR_MAP_MAX:
		break;
	}
	return false;
}

static int map_index(const char *name)
{
	for (int i = 0; i < NR_MAP_MAX; i++)
		if (strcmp(name, map_names[i]) == 0)
			return i;
	return -1;
}

/* What table 'table' holds now: its VM chains and map elements. A missing table is empty. */
static int nr_state_read(const char *table, struct nr_state *ret, struct bg_err *err)
{
	_cleanup_free_ char *cmd = NULL, *out = NULL;
	cJSON *root, *items, *it;
	int r;

	memset(ret, 0, sizeof(*ret));
	cmd = xasprintf("list table ip %s\n", table);
	r = host_nft_run(cmd, true, &out, err);
	if (r == -ENOENT) {
		bg_err_clear(err);
		return 0;
	}
	if (r < 0)
		return r;
	root = cJSON_Parse(out);
	if (!root)
		return bg_errorf(err, EBADMSG, "nftables: unreadable JSON listing of '%s'", table);
	items = cJSON_GetObjectItemCaseSensitive(root, "nftables");
	cJSON_ArrayForEach(it, items)
	{
		const cJSON *chain = cJSON_GetObjectItemCaseSensitive(it, "chain");
		const cJSON *map = cJSON_GetObjectItemCaseSensitive(it, "map");
		const cJSON *name, *elems, *pair;
		int m;

		if (chain) {
			name = cJSON_GetObjectItemCaseSensitive(chain, "name");
			if (!cJSON_IsString(name) || strlen(name->valuestring) >= 64)
				continue;
			ret->chains =
				xreallocarray(ret->chains, ret->n_chains + 1, sizeof(*ret->chains));
			snprintf(ret->chains[ret->n_chains++], 64, "%s", name->valuestring);
			continue;
		}
		name = cJSON_GetObjectItemCaseSensitive(map, "name");
		if (!cJSON_IsString(name) || (m = map_index(name->valuestring)) < 0)
			continue;
		elems = cJSON_GetObjectItemCaseSensitive(map, "elem");
		cJSON_ArrayForEach(pair, elems)
		{
			struct nr_elem e;

			if (!parse_elem((enum nr_map)m, pair, &e))
				continue;
			ret->elems =
				xreallocarray(ret->elems, ret->n_elems + 1, sizeof(*ret->elems));
			ret->elems[ret->n_elems++] = e;
		}
	}
	cJSON_Delete(root);
	return 0;
}

static bool has_chain(const struct nr_state *s, const char *name)
{
	for (size_t i = 0; i < s->n_chains; i++)
		if (strcmp(s->chains[i], name) == 0)
			return true;
	return false;
}

/* The table, its maps and base chains, (re)made so that applying them twice is a no-op. */
static void add_base(struct buf *b, const char *table, const char *bridge, const char *subnet,
		     const char *own)
{
	static const char *const fwd_rules[] = {
		"ip daddr . meta l4proto . th dport vmap @forwards",
		"fib daddr type local meta l4proto . th dport vmap @forwards_any",
	};

	buf_addf(b, "add table ip %s\n", table);
	buf_addf(b,
		 "add map ip %s forwards { type ipv4_addr . inet_proto . inet_service : "
		 "verdict; }\n",
		 table);
	buf_addf(b, "add map ip %s forwards_any { type inet_proto . inet_service : verdict; }\n",
		 table);
	buf_addf(b, "add map ip %s masq { type ipv4_addr : verdict; }\n", table);
	buf_addf(b, "add map ip %s egress { type ipv4_addr : verdict; }\n", table);
	buf_addf(b,
		 "add chain ip %s prerouting { type nat hook prerouting priority dstnat; "
		 "policy accept; }\n",
		 table);
	buf_addf(b,
		 "add chain ip %s output { type nat hook output priority -100; policy accept; }\n",
		 table);
	buf_addf(b,
		 "add chain ip %s postrouting { type nat hook postrouting priority srcnat; "
		 "policy accept; }\n",
		 table);
	buf_addf(b,
		 "add chain ip %s forward { type filter hook forward priority filter; "
		 "policy accept; }\n",
		 table);
	buf_addf(b,
		 "add chain ip %s input { type filter hook input priority filter; "
		 "policy accept; }\n",
		 table);
	buf_addf(b, "flush chain ip %s prerouting\n", table);
	buf_addf(b, "flush chain ip %s output\n", table);
	for (size_t i = 0; i < 2; i++) {
		buf_addf(b, "add rule ip %s prerouting %s\n", table, fwd_rules[i]);
		buf_addf(b, "add rule ip %s output %s\n", table, fwd_rules[i]);
	}
	buf_addf(b, "flush chain ip %s postrouting\n", table);
	buf_addf(b, "add rule ip %s postrouting ip saddr 127.0.0.0/8 oifname \"%s\" masquerade\n",
		 table, bridge);
	/* Hairpin: a VM reaching another VM's forward through a host address. */
	buf_addf(b,
		 "add rule ip %s postrouting ip saddr %s oifname \"%s\" ct status dnat "
		 "masquerade\n",
		 table, subnet, bridge);
	buf_addf(b, "add rule ip %s postrouting ip saddr vmap @masq\n", table);
	buf_addf(b, "flush chain ip %s forward\n", table);
	buf_addf(b, "add rule ip %s forward ct state established,related accept\n", table);
	buf_addf(b, "add rule ip %s forward ip saddr vmap @egress\n", table);
	buf_addf(b, "flush chain ip %s input\n", table);
	/*
	 * route_localnet on the bridge (for forwards of 127.0.0.1) must not let a
	 * guest reach the host's loopback services: only replies come in to
	 * 127.0.0.0/8 from the bridge. And the bridge address (the gateway,
	 * bangerd's DNS) answers the guests and the host, not other networks.
	 */
	buf_addf(b,
		 "add rule ip %s input iifname \"%s\" ip daddr 127.0.0.0/8 ct direction original "
		 "drop\n",
		 table, bridge);
	buf_addf(b, "add rule ip %s input ip daddr %s iifname != { \"%s\", \"lo\" } drop\n", table,
		 own, bridge);
}

/* Two forwards overlap: same protocol and port, and one address is 0.0.0.0 or both are equal. */
static bool overlaps(const char *ip_a, enum host_proto pa, uint16_t port_a, const char *ip_b,
		     enum host_proto pb, uint16_t port_b)
{
	if (pa != pb || port_a != port_b)
		return false;
	return strcmp(ip_a, "0.0.0.0") == 0 || strcmp(ip_b, "0.0.0.0") == 0 ||
	       strcmp(ip_a, ip_b) == 0;
}

static bool is_loopback_or_any(const char *ip)
{
	return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "0.0.0.0") == 0;
}

static int check_forward(const struct host_forward *f, struct bg_err *err)
{
	struct in_addr a;

	if (memchr(f->host_ip, '\0', sizeof(f->host_ip)) == NULL || !parse_ipv4(f->host_ip, &a))
		return bg_errorf(err, EINVAL, "invalid host address '%.15s' of a forward",
				 f->host_ip);
	if ((int)f->proto < 0 || f->proto >= HOST_PROTO_MAX)
		return bg_errorf(err, EINVAL, "forward %s:%u: invalid protocol %d", f->host_ip,
				 f->host_port, (int)f->proto);
	if (f->host_port == 0 || f->guest_port == 0)
		return bg_errorf(err, EINVAL, "forward %s:%u -> %u: ports must be 1..65535",
				 f->host_ip, f->host_port, f->guest_port);
	/* inet_pton took it, so it is canonical dotted decimal with no other characters. */
	return 0;
}

/* "a.b.c.0/len" of the bridge's cidr into ret (INET_ADDRSTRLEN + 3). */
/* The bridge's subnet ("172.30.0.0/24") and its own address ("172.30.0.1"). */
static int bridge_subnet(const struct host_net *net, char ret[32], char ret_addr[16],
			 struct bg_err *err)
{
	char addr[INET_ADDRSTRLEN];
	uint32_t network, own;
	unsigned int prefix;
	int r;

	r = host_parse_cidr(net->cidr, &own, &network, &prefix, err);
	if (r < 0)
		return r;
	inet_ntop(AF_INET, &network, addr, sizeof(addr));
	snprintf(ret, 32, "%s/%u", addr, prefix);
	inet_ntop(AF_INET, &own, ret_addr, 16);
	return 0;
}

static int check_args(const struct host_net *net, const char *tap, const char *ip,
		      char ret_table[64], struct bg_err *err)
{
	struct in_addr a;
	int r;

	if (!net)
		return bg_errorf(err, EINVAL, "no network settings");
	r = host_netrules_table(net->bridge, ret_table, err);
	if (r < 0)
		return r;
	if (!host_parse_tap_name(tap, NULL))
		return bg_errorf(err, EINVAL, "invalid tap name '%s'", tap ? tap : "");
	if (ip && (!parse_ipv4(ip, &a) || a.s_addr == 0))
		return bg_errorf(err, EINVAL, "invalid IPv4 address '%s'", ip);
	return 0;
}

/* Write "1" to a sysctl file unless it says 1 already. */
static int sysctl_on(const char *path, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	char c = 0;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return bg_error(err, errno, "open %s", path);
	if (read(fd, &c, 1) == 1 && c == '1')
		return 0;
	if (pwrite(fd, "1\n", 2, 0) != 2)
		return bg_error(err, errno, "enable %s", path);
	return 0;
}

/* Delete every element that jumps to one of tap's chains, and (when ip) masq/egress of ip. */
static void delete_elems(struct buf *b, const char *table, const struct nr_state *s,
			 const char *tap, const char *ip)
{
	for (size_t i = 0; i < s->n_elems; i++) {
		const struct nr_elem *e = &s->elems[i];
		bool mine = strcmp(e->holder, tap) == 0;
		bool stale_ip = ip && (e->map == NR_MAP_MASQ || e->map == NR_MAP_EGRESS) &&
				strcmp(e->ip, ip) == 0;

		if (mine || stale_ip)
			buf_addf(b, "delete element ip %s %s { %s }\n", table, map_names[e->map],
				 e->key);
	}
}

int host_netrules_base_ensure(const struct host_net *net, struct bg_err *err)
{
	_cleanup_buf_ struct buf b = { 0 };
	char table[64], subnet[32], own[16];
	int r;

	if (!net)
		return bg_errorf(err, EINVAL, "netrules: no network settings");
	r = host_netrules_table(net->bridge, table, err);
	if (r >= 0)
		r = bridge_subnet(net, subnet, own, err);
	if (r < 0)
		return bg_err_wrap(err, "netrules");
	buf_init(&b);
	add_base(&b, table, net->bridge, subnet, own);
	r = host_nft_run(b.data, false, NULL, err);
	if (r < 0)
		return bg_err_wrap(err, "netrules base of bridge '%s'", net->bridge);
	return 0;
}

int host_netrules_ensure(const struct host_net *net, const char *tap, const char *ip,
			 bool egress_nat, const struct host_forward *fwd, size_t n_fwd,
			 struct host_forward_conflict **ret_conflicts, size_t *ret_n_conflicts,
			 struct bg_err *err)
{
	_cleanup_buf_ struct buf b = { 0 };
	_cleanup_free_ struct host_forward_conflict *conf = NULL;
	_cleanup_free_ bool *taken = NULL;
	struct nr_state s = { 0 };
	size_t n_conf = 0, n_taken = 0;
	bool localnet = false;
	char table[64], subnet[32], own[16];
	int r;

	if (!ip)
		return bg_errorf(err, EINVAL, "netrules: no IPv4 address");
	r = check_args(net, tap, ip, table, err);
	if (r >= 0)
		r = bridge_subnet(net, subnet, own, err);
	if (r < 0)
		return bg_err_wrap(err, "netrules");
	if (n_fwd && !fwd)
		return bg_errorf(err, EINVAL, "netrules: no forwards");
	for (size_t i = 0; i < n_fwd; i++) {
		r = check_forward(&fwd[i], err);
		if (r < 0)
			return bg_err_wrap(err, "netrules of tap '%s'", tap);
		for (size_t j = 0; j < i; j++)
			if (overlaps(fwd[i].host_ip, fwd[i].proto, fwd[i].host_port, fwd[j].host_ip,
				     fwd[j].proto, fwd[j].host_port))
				return bg_errorf(err, EINVAL,
						 "netrules of tap '%s': forwards %s:%u/%s and "
						 "%s:%u/%s overlap",
						 tap, fwd[j].host_ip, fwd[j].host_port,
						 host_proto_to_string(fwd[j].proto), fwd[i].host_ip,
						 fwd[i].host_port,
						 host_proto_to_string(fwd[i].proto));
	}
	r = nr_state_read(table, &s, err);
	if (r < 0)
		return bg_err_wrap(err, "netrules of tap '%s'", tap);

	taken = xcalloc(n_fwd ? n_fwd : 1, sizeof(*taken));
	for (size_t i = 0; i < n_fwd; i++) {
		const char *holder = NULL;

		for (size_t j = 0; j < s.n_elems && !holder; j++) {
			const struct nr_elem *e = &s.elems[j];

			if ((e->map == NR_MAP_FORWARDS || e->map == NR_MAP_FORWARDS_ANY) &&
			    strcmp(e->holder, tap) != 0 &&
			    overlaps(e->ip, e->proto, e->port, fwd[i].host_ip, fwd[i].proto,
				     fwd[i].host_port))
				holder = e->holder[0] ? e->holder : e->target;
		}
		if (holder) {
			conf = xreallocarray(conf, n_conf + 1, sizeof(*conf));
			memset(&conf[n_conf], 0, sizeof(*conf));
			conf[n_conf].fwd = fwd[i];
			snprintf(conf[n_conf].holder_tap, sizeof(conf[n_conf].holder_tap), "%.15s",
				 holder);
			n_conf++;
			continue;
		}
		taken[i] = true;
		n_taken++;
		localnet = localnet || is_loopback_or_any(fwd[i].host_ip);
	}

	buf_init(&b);
	add_base(&b, table, net->bridge, subnet, own);
	for (size_t i = 0; i < N_CHAINS; i++) {
		buf_addf(&b, "add chain ip %s %s%s\n", table, tap, chain_suffixes[i]);
		buf_addf(&b, "flush chain ip %s %s%s\n", table, tap, chain_suffixes[i]);
	}
	delete_elems(&b, table, &s, tap, ip);
	/* No two forwards of this VM overlap (checked above), so rule order does not matter. */
	for (size_t i = 0; i < n_fwd; i++) {
		const struct host_forward *f = &fwd[i];
		const char *proto = host_proto_to_string(f->proto);

		if (!taken[i])
			continue;
		if (strcmp(f->host_ip, "0.0.0.0") == 0) {
			buf_addf(&b,
				 "add rule ip %s %s-dnat fib daddr type local meta l4proto %s "
				 "th dport %u dnat to %s:%u\n",
				 table, tap, proto, f->host_port, ip, f->guest_port);
			buf_addf(&b, "add element ip %s forwards_any { %s . %u : jump %s-dnat }\n",
				 table, proto, f->host_port, tap);
		} else {
			buf_addf(&b,
				 "add rule ip %s %s-dnat ip daddr %s meta l4proto %s th dport %u "
				 "dnat to %s:%u\n",
				 table, tap, f->host_ip, proto, f->host_port, ip, f->guest_port);
			buf_addf(&b, "add element ip %s forwards { %s . %s . %u : jump %s-dnat }\n",
				 table, f->host_ip, proto, f->host_port, tap);
		}
	}
	if (egress_nat)
		buf_addf(&b, "add rule ip %s %s-masq oifname != \"%s\" masquerade\n", table, tap,
			 net->bridge);
	else
		buf_addf(&b, "add rule ip %s %s-egress oifname != \"%s\" drop\n", table, tap,
			 net->bridge);
	buf_addf(&b, "add element ip %s masq { %s : jump %s-masq }\n", table, ip, tap);
	buf_addf(&b, "add element ip %s egress { %s : jump %s-egress }\n", table, ip, tap);
	nr_state_release(&s);

	r = host_nft_run(b.data, false, NULL, err);
	if (r < 0)
		return bg_err_wrap(err, "netrules of tap '%s' on bridge '%s'", tap, net->bridge);
	if (egress_nat || n_taken) {
		r = sysctl_on("/proc/sys/net/ipv4/ip_forward", err);
		if (r < 0)
			return bg_err_wrap(err, "netrules of tap '%s'", tap);
	}
	if (localnet) {
		_cleanup_free_ char *path =
			xasprintf("/proc/sys/net/ipv4/conf/%s/route_localnet", net->bridge);

		r = sysctl_on(path, err);
		if (r < 0)
			return bg_err_wrap(err, "netrules of tap '%s'", tap);
	}
	if (ret_conflicts && ret_n_conflicts) {
		*ret_conflicts = n_conf ? TAKE_PTR(conf) : NULL;
		*ret_n_conflicts = n_conf;
	}
	return 0;
}

int host_netrules_remove(const struct host_net *net, const char *tap, struct bg_err *err)
{
	_cleanup_buf_ struct buf b = { 0 };
	struct nr_state s = { 0 };
	char table[64];
	bool any = false;
	int r;

	r = check_args(net, tap, NULL, table, err);
	if (r < 0)
		return bg_err_wrap(err, "netrules");
	r = nr_state_read(table, &s, err);
	if (r < 0)
		return bg_err_wrap(err, "remove netrules of tap '%s'", tap);
	buf_init(&b);
	delete_elems(&b, table, &s, tap, NULL);
	any = b.len > 0;
	for (size_t i = 0; i < N_CHAINS; i++) {
		_cleanup_free_ char *name = xasprintf("%s%s", tap, chain_suffixes[i]);

		if (!has_chain(&s, name))
			continue;
		buf_addf(&b, "flush chain ip %s %s\n", table, name);
		buf_addf(&b, "delete chain ip %s %s\n", table, name);
		any = true;
	}
	nr_state_release(&s);
	if (!any)
		return 0;
	r = host_nft_run(b.data, false, NULL, err);
	if (r < 0)
		return bg_err_wrap(err, "remove netrules of tap '%s' on bridge '%s'", tap,
				   net->bridge);
	return 0;
}

int host_netrules_show(const struct host_net *net, const char *tap, char **ret, struct bg_err *err)
{
	_cleanup_buf_ struct buf b = { 0 };
	char table[64];
	int r;

	r = check_args(net, tap, NULL, table, err);
	if (r < 0)
		return bg_err_wrap(err, "netrules");
	buf_init(&b);
	for (size_t i = 0; i < N_CHAINS; i++) {
		_cleanup_free_ char *cmd =
			xasprintf("list chain ip %s %s%s\n", table, tap, chain_suffixes[i]);
		_cleanup_free_ char *out = NULL;

		r = host_nft_run(cmd, false, &out, err);
		if (r == -ENOENT || r == -ENOTSUP) {
			bg_err_clear(err);
			continue;
		}
		if (r < 0)
			return bg_err_wrap(err, "show netrules of tap '%s'", tap);
		buf_addf(&b, "%s", out);
	}
	*ret = buf_detach(&b, NULL);
	return 0;
}

/* Whether "<bridge>/<tap>" is in (*seen)[n]; adds it when not. */
static bool seen_add(char (**seen)[80], size_t *n, const char *table, const char *tap)
{
	char key[80];

	snprintf(key, sizeof(key), "%s/%s", table, tap);
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*seen)[i], key) == 0)
			return true;
	*seen = xreallocarray(*seen, *n + 1, sizeof(**seen));
	memcpy((*seen)[(*n)++], key, sizeof(key));
	return false;
}

struct foreach_ctx {
	int (*cb)(const char *bridge, const char *tap, void *userdata);
	void *userdata;
	char (*seen)[80]; /* "<bridge>/<tap>" already reported */
	size_t n_seen;
};

/* A VM has up to three chains "<tap>-..." in its bridge's table: report the tap once. */
static int foreach_vm_chain(const char *bridge, const char *chain, void *userdata)
{
	struct foreach_ctx *f = userdata;
	char tap[16];

	if (!chain_tap(chain, tap) || strlen(bridge) >= 64 ||
	    seen_add(&f->seen, &f->n_seen, bridge, tap))
		return 0;
	return f->cb(bridge, tap, f->userdata);
}

int host_netrules_foreach(int (*cb)(const char *bridge, const char *tap, void *userdata),
			  void *userdata, struct bg_err *err)
{
	struct foreach_ctx f = { .cb = cb, .userdata = userdata };
	int r = host_nft_foreach_chain("ip", foreach_vm_chain, &f, err);

	free(f.seen);
	return r;
}
