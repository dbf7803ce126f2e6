/*
 * antispoof.c - per-tap anti-spoofing on the bridge, with libnftables
 * (through nft.c). One table per bridge, "bridge
 * banger-<bridge>": a prerouting base chain sends each frame entering the
 * bridge from a port through the verdict map @taps (port name -> jump to the
 * VM's chain "bg<id>"); a frame from a port in the set @ports (every tap
 * given a filter here) that comes back from that chain, or finds no map
 * element, is dropped, so a filter flushed by hand fails closed. The hook
 * sees every bridge of the namespace (the kernel may lack 'meta ibrname'), so
 * nothing in the table matches a port it was not told about. A VM's chain accepts only frames from its MAC that
 * are ARP for its MAC and IPv4 address (or an RFC 5227 probe from 0.0.0.0) or
 * IPv4 from its address; everything else (other addresses, IPv6, VLAN tags,
 * other ethertypes) is dropped. Each change is one nftables transaction, so a
 * VM's filter is never seen half-made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

static bool valid_mac(const char *mac)
{
	if (!mac || strlen(mac) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		char c = mac[i];

		if (i % 3 == 2 ? c != ':'
			       : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
				   (c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}

int host_antispoof_table(const char *bridge, char ret[64], struct bg_err *err)
{
	if (!host_valid_ifname(bridge))
		return bg_errorf(err, EINVAL, "invalid bridge name '%s'", bridge ? bridge : "");
	snprintf(ret, 64, "banger-%s", bridge);
	return 0;
}

/* The table, the map and the base chain, (re)made so that applying them twice is a no-op. */
static void add_base(struct buf *b, const char *table)
{
	buf_addf(b, "add table bridge %s\n", table);
	buf_addf(b, "add map bridge %s taps { type ifname : verdict; }\n", table);
	buf_addf(b, "add set bridge %s ports { type ifname; }\n", table);
	buf_addf(b,
		 "add chain bridge %s prerouting { type filter hook prerouting priority -300; "
		 "policy accept; }\n",
		 table);
	buf_addf(b, "flush chain bridge %s prerouting\n", table);
	buf_addf(b, "add rule bridge %s prerouting iifname vmap @taps\n", table);
	buf_addf(b, "add rule bridge %s prerouting iifname @ports drop\n", table);
}

int host_antispoof_ruleset(const char *bridge, const char *tap, const char *mac, const char *ip,
			   char **ret, struct bg_err *err)
{
	_cleanup_buf_ struct buf b = { 0 };
	struct in_addr a;
	char table[64];
	int r;

	r = host_antispoof_table(bridge, table, err);
	if (r < 0)
		return r;
	if (!host_parse_tap_name(tap, NULL))
		return bg_errorf(err, EINVAL, "invalid tap name '%s'", tap ? tap : "");
	if (!valid_mac(mac))
		return bg_errorf(err, EINVAL, "invalid MAC address '%s'", mac ? mac : "");
	if (!ip || inet_pton(AF_INET, ip, &a) != 1 || a.s_addr == 0)
		return bg_errorf(err, EINVAL, "invalid IPv4 address '%s'", ip ? ip : "");
	buf_init(&b);
	add_base(&b, table);
	buf_addf(&b, "add chain bridge %s %s\n", table, tap);
	buf_addf(&b, "flush chain bridge %s %s\n", table, tap);
	buf_addf(&b, "add rule bridge %s %s ether saddr != %s drop\n", table, tap, mac);
	buf_addf(&b,
		 "add rule bridge %s %s ether type arp arp htype 1 arp ptype ip arp hlen 6 "
		 "arp plen 4 arp saddr ether %s arp saddr ip { %s, 0.0.0.0 } accept\n",
		 table, tap, mac, ip);
	buf_addf(&b, "add rule bridge %s %s ether type ip ip saddr %s accept\n", table, tap, ip);
	buf_addf(&b, "add rule bridge %s %s drop\n", table, tap);
	buf_addf(&b, "add element bridge %s ports { \"%s\" }\n", table, tap);
	buf_addf(&b, "add element bridge %s taps { \"%s\" : jump %s }\n", table, tap, tap);
	*ret = buf_detach(&b, NULL);
	return 0;
}

int host_antispoof_ensure(const struct host_net *net, const char *tap, const char *mac,
			  const char *ip, struct bg_err *err)
{
	_cleanup_free_ char *rules = NULL;
	int r;

	if (!net)
		return bg_errorf(err, EINVAL, "antispoof: no network settings");
	r = host_antispoof_ruleset(net->bridge, tap, mac, ip, &rules, err);
	if (r < 0)
		return bg_err_wrap(err, "antispoof");
	r = host_nft_run(rules, false, NULL, err);
	if (r < 0)
		return bg_err_wrap(err, "antispoof filter of tap '%s' on bridge '%s'", tap,
				   net->bridge);
	return 0;
}

/* Remove chain 'tap' and its map element from table 'table'; a missing one is done. */
static int remove_chain(const char *table, const char *tap, struct bg_err *err)
{
	_cleanup_free_ char *check = NULL;
	_cleanup_free_ char *cmds = NULL;
	int r;

	if (!host_parse_tap_name(tap, NULL))
		return bg_errorf(err, EINVAL, "invalid tap name '%s'", tap ? tap : "");
	check = xasprintf("list chain bridge %s %s\n", table, tap);
	r = host_nft_run(check, false, NULL, NULL);
	if (r == -ENOENT)
		return 0;
	/*
	 * The element is added first so that deleting it cannot fail (a chain
	 * left without its element by a crash, or by hand); then the chain,
	 * which no element references any more, is emptied and deleted.
	 */
	cmds = xasprintf("add map bridge %s taps { type ifname : verdict; }\n"
			 "add set bridge %s ports { type ifname; }\n"
			 "add element bridge %s taps { \"%s\" : jump %s }\n"
			 "add element bridge %s ports { \"%s\" }\n"
			 "delete element bridge %s taps { \"%s\" }\n"
			 "delete element bridge %s ports { \"%s\" }\n"
			 "flush chain bridge %s %s\n"
			 "delete chain bridge %s %s\n",
			 table, table, table, tap, tap, table, tap, table, tap, table, tap, table,
			 tap, table, tap);
	r = host_nft_run(cmds, false, NULL, err);
	if (r == -ENOENT)
		return 0; /* gone in between */
	return r;
}

int host_antispoof_remove(const struct host_net *net, const char *tap, struct bg_err *err)
{
	char table[64];
	int r;

	if (!net)
		return bg_errorf(err, EINVAL, "antispoof: no network settings");
	r = host_antispoof_table(net->bridge, table, err);
	if (r < 0)
		return bg_err_wrap(err, "antispoof");
	r = remove_chain(table, tap, err);
	if (r < 0)
		return bg_err_wrap(err, "remove antispoof filter of tap '%s'", tap);
	return 0;
}

struct foreach_ctx {
	int (*cb)(const char *bridge, const char *tap, void *userdata);
	void *userdata;
};

/* A tap's filter chain is named after the tap; the base chain is not. */
static int foreach_tap_chain(const char *bridge, const char *chain, void *userdata)
{
	const struct foreach_ctx *f = userdata;

	if (!host_parse_tap_name(chain, NULL))
		return 0;
	return f->cb(bridge, chain, f->userdata);
}

int host_antispoof_foreach(int (*cb)(const char *bridge, const char *tap, void *userdata),
			   void *userdata, struct bg_err *err)
{
	struct foreach_ctx f = { cb, userdata };

	return host_nft_foreach_chain("bridge", foreach_tap_chain, &f, err);
}
