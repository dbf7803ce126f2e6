/*
 * net.c - the bridge, the per-VM taps and the bridge's address, through
 * rtnetlink (libmnl; the only includer of libmnl.h) and the /dev/net/tun
 * ioctls. No 'ip' commands, no shell.
 *
 * Kernel errors keep the kernel's extended-ack text when it sends one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

/* Large enough for one dump batch (the kernel sends at most 32 KiB per recv). */
#define NL_BUF_SIZE 32768
/* One request: a header, an ifinfomsg/ifaddrmsg and a few attributes. */
#define NL_REQ_SIZE 1024

struct nl {
	struct mnl_socket *sock;
	unsigned int portid;
	unsigned int seq;
};

static void nl_close(struct nl *nl)
{
	if (nl->sock)
		mnl_socket_close(nl->sock);
	nl->sock = NULL;
}

static int nl_open(struct nl *nl, struct bg_err *err)
{
	int one = 1;

	nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl->sock)
		return bg_error(err, errno, "open rtnetlink socket");
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;
		nl_close(nl);
		return bg_error(err, e, "bind rtnetlink socket");
	}
	/* Ask for the kernel's error text, and don't echo our request back in errors. */
	(void)mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof(one));
	(void)mnl_socket_setsockopt(nl->sock, NETLINK_CAP_ACK, &one, sizeof(one));
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (unsigned int)time(NULL);
	return 0;
}

static int extack_attr_cb(const struct nlattr *attr, void *data)
{
	const char **msg = data;

	if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
	    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
		*msg = mnl_attr_get_str(attr);
	return MNL_CB_OK;
}

/* The errno (positive, 0 for an ack) and kernel message of an NLMSG_ERROR. */
static int nl_parse_error(const struct nlmsghdr *nh, const char **ret_msg)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nh);
	size_t off = sizeof(*e);

	*ret_msg = NULL;
	if (nh->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
		return EBADMSG;
	if (!(nh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len > sizeof(struct nlmsghdr)
			       ? e->msg.nlmsg_len - sizeof(struct nlmsghdr)
			       : 0;
	if ((nh->nlmsg_flags & NLM_F_ACK_TLVS) && mnl_nlmsg_size(off) < nh->nlmsg_len)
		(void)mnl_attr_parse_payload((const char *)e + MNL_ALIGN(off),
					     nh->nlmsg_len - mnl_nlmsg_size(MNL_ALIGN(off)),
					     extack_attr_cb, ret_msg);
	return -e->error;
}

/*
 * Send nlh and read the answer. For a dump (NLM_F_DUMP) cb sees every
 * message until NLMSG_DONE; otherwise NLM_F_ACK is added and cb sees the
 * reply (if any) before the ack. Kernel errors come back as -errno with
 * "<what>: <kernel message or strerror>" in err. -EAGAIN when a dump was
 * interrupted by a change (NLM_F_DUMP_INTR): run it again.
 */
static int nl_run(struct nl *nl, struct nlmsghdr *nh, int (*cb)(const struct nlmsghdr *, void *),
		  void *data, const char *what, struct bg_err *err)
{
	_cleanup_free_ char *buf = xmalloc(NL_BUF_SIZE);
	/* NLM_F_DUMP shares its bits with NLM_F_EXCL/REPLACE: only GET requests dump. */
	bool dump = (nh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP && nh->nlmsg_type % 4 == 2;
	bool intr = false;
	unsigned int seq = ++nl->seq;

	nh->nlmsg_seq = seq;
	if (!dump)
		nh->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(nl->sock, nh, nh->nlmsg_len) < 0)
		return bg_error(err, errno, "%s: netlink send", what);
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, buf, NL_BUF_SIZE);
		int len;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return bg_error(err, errno, "%s: netlink receive", what);
		}
		len = (int)n;
		for (const struct nlmsghdr *m = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(m, len);
		     m = mnl_nlmsg_next(m, &len)) {
			if (m->nlmsg_seq != seq || m->nlmsg_pid != nl->portid)
				continue; /* a stale answer to an earlier request */
			if (m->nlmsg_flags & NLM_F_DUMP_INTR)
				intr = true;
			if (m->nlmsg_type == NLMSG_DONE) {
				int done_err = 0;

				/* A dump that failed part-way says so in NLMSG_DONE. */
				if (mnl_nlmsg_get_payload_len(m) >= sizeof(int))
					memcpy(&done_err, mnl_nlmsg_get_payload(m), sizeof(int));
				if (done_err < 0)
					return bg_error(err, done_err, "%s", what);
				if (intr)
					return -EAGAIN;
				return 0;
			}
			if (m->nlmsg_type == NLMSG_ERROR) {
				const char *kmsg;
				int e = nl_parse_error(m, &kmsg);

				if (e == 0)
					return 0;
				if (kmsg && *kmsg)
					return bg_errorf(err, e, "%s: %s (%s)", what, kmsg,
							 strerror(e));
				return bg_error(err, e, "%s", what);
			}
			if (m->nlmsg_type < NLMSG_MIN_TYPE)
				continue;
			if (cb) {
				int r = cb(m, data);
				if (r < 0)
					return r;
			}
		}
	}
}

/* ---- links ------------------------------------------------------------------- */

static int attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	/* tb has room for type 0..max; the caller sizes it. Unknown types are ignored. */
	tb[type] = attr;
	return MNL_CB_OK;
}

struct attr_table {
	const struct nlattr **tb;
	int max;
};

static int attr_table_cb(const struct nlattr *attr, void *data)
{
	struct attr_table *t = data;

	if (mnl_attr_get_type(attr) > t->max)
		return MNL_CB_OK;
	return attr_cb(attr, t->tb);
}

static void parse_tun_data(const struct nlattr *data, struct host_link *l)
{
	const struct nlattr *tb[IFLA_TUN_MAX + 1] = { 0 };
	struct attr_table t = { tb, IFLA_TUN_MAX };

	(void)mnl_attr_parse_nested(data, attr_table_cb, &t);
	if (tb[IFLA_TUN_TYPE] && mnl_attr_validate(tb[IFLA_TUN_TYPE], MNL_TYPE_U8) == 0)
		l->is_tap = mnl_attr_get_u8(tb[IFLA_TUN_TYPE]) == (IFF_TAP & 0xff);
	if (tb[IFLA_TUN_OWNER] && mnl_attr_validate(tb[IFLA_TUN_OWNER], MNL_TYPE_U32) == 0)
		l->owner = (uid_t)mnl_attr_get_u32(tb[IFLA_TUN_OWNER]);
	if (tb[IFLA_TUN_GROUP] && mnl_attr_validate(tb[IFLA_TUN_GROUP], MNL_TYPE_U32) == 0)
		l->group = (gid_t)mnl_attr_get_u32(tb[IFLA_TUN_GROUP]);
	if (tb[IFLA_TUN_PERSIST] && mnl_attr_validate(tb[IFLA_TUN_PERSIST], MNL_TYPE_U8) == 0)
		l->persist = mnl_attr_get_u8(tb[IFLA_TUN_PERSIST]) != 0;
	l->has_owner = true;
}

static int parse_link(const struct nlmsghdr *nh, struct host_link *ret)
{
	const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nh);
	const struct nlattr *tb[IFLA_MAX + 1] = { 0 };
	struct attr_table t = { tb, IFLA_MAX };

	if (nh->nlmsg_type != RTM_NEWLINK || nh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifm)))
		return -EBADMSG;
	memset(ret, 0, sizeof(*ret));
	ret->owner = (uid_t)-1;
	ret->group = (gid_t)-1;
	ret->index = ifm->ifi_index;
	ret->flags = ifm->ifi_flags;
	if (mnl_attr_parse(nh, sizeof(*ifm), attr_table_cb, &t) < 0)
		return -EBADMSG;
	if (tb[IFLA_IFNAME] && mnl_attr_validate(tb[IFLA_IFNAME], MNL_TYPE_NUL_STRING) == 0)
		snprintf(ret->name, sizeof(ret->name), "%s", mnl_attr_get_str(tb[IFLA_IFNAME]));
	if (tb[IFLA_MASTER] && mnl_attr_validate(tb[IFLA_MASTER], MNL_TYPE_U32) == 0)
		ret->master = (int)mnl_attr_get_u32(tb[IFLA_MASTER]);
	if (tb[IFLA_LINKINFO]) {
		const struct nlattr *li[IFLA_INFO_MAX + 1] = { 0 };
		struct attr_table lt = { li, IFLA_INFO_MAX };

		(void)mnl_attr_parse_nested(tb[IFLA_LINKINFO], attr_table_cb, &lt);
		if (li[IFLA_INFO_KIND] &&
		    mnl_attr_validate(li[IFLA_INFO_KIND], MNL_TYPE_NUL_STRING) == 0)
			snprintf(ret->kind, sizeof(ret->kind), "%s",
				 mnl_attr_get_str(li[IFLA_INFO_KIND]));
		if (strcmp(ret->kind, "tun") == 0 && li[IFLA_INFO_DATA])
			parse_tun_data(li[IFLA_INFO_DATA], ret);
	}
	return 0;
}

static int link_get_cb(const struct nlmsghdr *nh, void *data)
{
	return parse_link(nh, data) < 0 ? -EBADMSG : 0;
}

/* The interface by name: 0, -ENODEV (err untouched) when missing, -errno. */
static int nl_link_get(struct nl *nl, const char *name, struct host_link *ret, struct bg_err *err)
{
	char buf[NL_REQ_SIZE] __attribute__((aligned(8)));
	struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;
	struct bg_err tmp = { 0 };
	int r;

	nh->nlmsg_type = RTM_GETLINK;
	nh->nlmsg_flags = NLM_F_REQUEST;
	ifm = mnl_nlmsg_put_extra_header(nh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nh, IFLA_IFNAME, name);
	ret->index = 0;
	r = nl_run(nl, nh, link_get_cb, ret, "get link", &tmp);
	if (r == -ENODEV)
		return -ENODEV;
	if (r < 0) {
		if (err)
			*err = tmp;
		return bg_err_wrap(err, "interface '%s'", name);
	}
	if (ret->index == 0)
		return bg_errorf(err, EBADMSG, "interface '%s': no answer from the kernel", name);
	return 0;
}

int host_link_get(const char *name, struct host_link *ret, struct bg_err *err)
{
	_cleanup_(nl_close) struct nl nl = { 0 };
	int r;

	r = nl_open(&nl, err);
	if (r < 0)
		return r;
	return nl_link_get(&nl, name, ret, err);
}

struct link_list {
	struct host_link *v;
	size_t n;
};

static int link_dump_cb(const struct nlmsghdr *nh, void *data)
{
	struct link_list *list = data;
	struct host_link l;

	if (parse_link(nh, &l) < 0)
		return 0;
	list->v = xreallocarray(list->v, list->n + 1, sizeof(*list->v));
	list->v[list->n++] = l;
	return 0;
}

int host_link_foreach(int (*cb)(const struct host_link *l, void *userdata), void *userdata,
		      struct bg_err *err)
{
	_cleanup_(nl_close) struct nl nl = { 0 };
	struct link_list list = { 0 };
	int r;

	r = nl_open(&nl, err);
	if (r < 0)
		return r;
	for (int attempt = 0;; attempt++) {
		char buf[NL_REQ_SIZE] __attribute__((aligned(8)));
		struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
		struct ifinfomsg *ifm;

		nh->nlmsg_type = RTM_GETLINK;
		nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		ifm = mnl_nlmsg_put_extra_header(nh, sizeof(*ifm));
		ifm->ifi_family = AF_UNSPEC;
		free(list.v);
		list.v = NULL;
		list.n = 0;
		r = nl_run(&nl, nh, link_dump_cb, &list, "list links", err);
		if (r != -EAGAIN || attempt >= 5)
			break;
	}
	if (r == -EAGAIN)
		r = bg_errorf(err, EAGAIN, "list links: interfaces kept changing during the dump");
	for (size_t i = 0; r >= 0 && i < list.n; i++)
		r = cb(&list.v[i], userdata);
	free(list.v);
	return r < 0 ? r : 0;
}

/* RTM_NEWLINK on an existing link: bring it up and/or set its master (master < 0: leave). */
static int nl_link_set(struct nl *nl, const struct host_link *l, bool up, int master,
		       struct bg_err *err)
{
	char buf[NL_REQ_SIZE] __attribute__((aligned(8)));
	struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nh->nlmsg_type = RTM_NEWLINK;
	nh->nlmsg_flags = NLM_F_REQUEST;
	ifm = mnl_nlmsg_put_extra_header(nh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = l->index;
	if (up) {
		ifm->ifi_flags = IFF_UP;
		ifm->ifi_change = IFF_UP;
	}
	if (master >= 0)
		mnl_attr_put_u32(nh, IFLA_MASTER, (uint32_t)master);
	return nl_run(nl, nh, NULL, NULL, "set link", err) < 0
		       ? bg_err_wrap(err, "interface '%s'", l->name)
		       : 0;
}

static int nl_link_del(struct nl *nl, int index, const char *name, struct bg_err *err)
{
	char buf[NL_REQ_SIZE] __attribute__((aligned(8)));
	struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;
	struct bg_err tmp = { 0 };
	int r;

	nh->nlmsg_type = RTM_DELLINK;
	nh->nlmsg_flags = NLM_F_REQUEST;
	ifm = mnl_nlmsg_put_extra_header(nh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = index;
	r = nl_run(nl, nh, NULL, NULL, "delete link", &tmp);
	if (r == -ENODEV)
		return 0;
	if (r < 0) {
		if (err)
			*err = tmp;
		return bg_err_wrap(err, "interface '%s'", name);
	}
	return 0;
}

int host_link_delete(const char *name, const struct host_retry *retry, struct bg_err *err)
{
	_cleanup_(nl_close) struct nl nl = { 0 };
	int r;

	if (!host_valid_ifname(name))
		return bg_errorf(err, EINVAL, "invalid interface name '%s'", name ? name : "");
	r = nl_open(&nl, err);
	if (r < 0)
		return r;
	for (int attempt = 0;; attempt++) {
		struct host_link l;

		r = nl_link_get(&nl, name, &l, err);
		if (r == -ENODEV)
			return 0;
		if (r < 0)
			return r;
		r = nl_link_del(&nl, l.index, name, err);
		if (r != -EBUSY)
			break;
		if (!host_retry_wait(retry, attempt))
			return bg_err_wrap(err, "still busy after %d tries", attempt + 1);
	}
	if (r < 0)
		return r;
	/* Deletion is synchronous under RTNL; check so a failure is never silent. */
	{
		struct host_link l;
		r = nl_link_get(&nl, name, &l, err);
		if (r == 0)
			return bg_errorf(err, EBUSY, "interface '%s' still exists after deletion",
					 name);
		return r == -ENODEV ? 0 : r;
	}
}

/* ---- addresses ---------------------------------------------------------------- */

int host_parse_cidr(const char *cidr, uint32_t *ret_addr, uint32_t *ret_network,
		    unsigned int *ret_prefix, struct bg_err *err)
{
	char ip[INET_ADDRSTRLEN];
	const char *slash;
	struct in_addr a;
	unsigned long prefix;
	char *end;
	uint32_t mask;

	if (!cidr)
		return bg_errorf(err, EINVAL, "missing bridge address");
	slash = strchr(cidr, '/');
	if (!slash || (size_t)(slash - cidr) >= sizeof(ip) || !slash[1])
		return bg_errorf(err, EINVAL, "invalid address '%s': want a.b.c.d/prefix", cidr);
	memcpy(ip, cidr, (size_t)(slash - cidr));
	ip[slash - cidr] = '\0';
	if (inet_pton(AF_INET, ip, &a) != 1)
		return bg_errorf(err, EINVAL, "invalid address '%s': want a.b.c.d/prefix", cidr);
	errno = 0;
	prefix = strtoul(slash + 1, &end, 10);
	if (errno || *end || slash[1] < '0' || slash[1] > '9' || prefix < 1 || prefix > 30)
		return bg_errorf(err, EINVAL, "invalid address '%s': prefix must be 1..30", cidr);
	mask = htonl(~(uint32_t)0 << (32 - prefix));
	if ((a.s_addr & ~mask) == 0 || (a.s_addr | mask) == 0xffffffffu)
		return bg_errorf(err, EINVAL,
				 "invalid address '%s': the network or broadcast address", cidr);
	if (ret_addr)
		*ret_addr = a.s_addr;
	if (ret_network)
		*ret_network = a.s_addr & mask;
	if (ret_prefix)
		*ret_prefix = (unsigned int)prefix;
	return 0;
}

void host_bridge_mac(const char *bridge, uint8_t ret[6])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const char *p = bridge; *p; p++) {
		h ^= (uint8_t)*p;
		h *= 16777619u;
	}
	ret[0] = 0x02; /* locally administered, unicast */
	ret[1] = 'b';
	ret[2] = 'g';
	ret[3] = (uint8_t)(h >> 16);
	ret[4] = (uint8_t)(h >> 8);
	ret[5] = (uint8_t)h;
}

struct addr_scan {
	int index;
	uint32_t want;
	unsigned int want_prefix;
	bool exact;	   /* want/want_prefix present */
	bool other_prefix; /* want present with another prefix */
	unsigned int found_prefix;
};

static int addr_dump_cb(const struct nlmsghdr *nh, void *data)
{
	struct addr_scan *s = data;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nh);
	const struct nlattr *tb[IFA_MAX + 1] = { 0 };
	struct attr_table t = { tb, IFA_MAX };
	const struct nlattr *a;
	uint32_t addr;

	if (nh->nlmsg_type != RTM_NEWADDR || nh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifa)))
		return 0;
	if (ifa->ifa_family != AF_INET || (int)ifa->ifa_index != s->index)
		return 0;
	if (mnl_attr_parse(nh, sizeof(*ifa), attr_table_cb, &t) < 0)
		return 0;
	a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!a || mnl_attr_get_payload_len(a) != sizeof(addr))
		return 0;
	memcpy(&addr, mnl_attr_get_payload(a), sizeof(addr));
	if (addr != s->want)
		return 0;
	if (ifa->ifa_prefixlen == s->want_prefix) {
		s->exact = true;
	} else {
		s->other_prefix = true;
		s->found_prefix = ifa->ifa_prefixlen;
	}
	return 0;
}

static int nl_addr_scan(struct nl *nl, struct addr_scan *s, struct bg_err *err)
{
	int r = 0;

	for (int attempt = 0; attempt < 5; attempt++) {
		char buf[NL_REQ_SIZE] __attribute__((aligned(8)));
		struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
		struct ifaddrmsg *ifa;

		nh->nlmsg_type = RTM_GETADDR;
		nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		ifa = mnl_nlmsg_put_extra_header(nh, sizeof(*ifa));
		ifa->ifa_family = AF_INET;
		s->exact = s->other_prefix = false;
		r = nl_run(nl, nh, addr_dump_cb, s, "list addresses", err);
		if (r != -EAGAIN)
			return r;
	}
	return bg_errorf(err, EAGAIN, "list addresses: addresses kept changing during the dump");
}

/* RTM_NEWADDR or RTM_DELADDR of addr/prefix on index. */
static int nl_addr_change(struct nl *nl, int type, int index, uint32_t addr, unsigned int prefix,
			  struct bg_err *err)
{
	char buf[NL_REQ_SIZE] __attribute__((aligned(8)));
	struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;
	uint32_t mask = htonl(~(uint32_t)0 << (32 - prefix));
	uint32_t brd = addr | ~mask;

	nh->nlmsg_type = (uint16_t)type;
	nh->nlmsg_flags = NLM_F_REQUEST;
	if (type == RTM_NEWADDR)
		nh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	ifa = mnl_nlmsg_put_extra_header(nh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned int)index;
	mnl_attr_put(nh, IFA_LOCAL, sizeof(addr), &addr);
	mnl_attr_put(nh, IFA_ADDRESS, sizeof(addr), &addr);
	if (type == RTM_NEWADDR)
		mnl_attr_put(nh, IFA_BROADCAST, sizeof(brd), &brd);
	return nl_run(nl, nh, NULL, NULL, type == RTM_NEWADDR ? "add address" : "delete address",
		      err);
}

/* ---- bridge ------------------------------------------------------------------- */

static int nl_bridge_create(struct nl *nl, const char *name, struct bg_err *err)
{
	char buf[NL_REQ_SIZE] __attribute__((aligned(8)));
	struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;
	struct nlattr *nest;
	uint8_t mac[6];

	nh->nlmsg_type = RTM_NEWLINK;
	nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
	ifm = mnl_nlmsg_put_extra_header(nh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nh, IFLA_IFNAME, name);
	/*
	 * A fixed address: otherwise the bridge takes the lowest address of its
	 * ports, which changes as taps come and go and breaks guests' ARP caches.
	 */
	host_bridge_mac(name, mac);
	mnl_attr_put(nh, IFLA_ADDRESS, sizeof(mac), mac);
	nest = mnl_attr_nest_start(nh, IFLA_LINKINFO);
	mnl_attr_put_strz(nh, IFLA_INFO_KIND, "bridge");
	mnl_attr_nest_end(nh, nest);
	return nl_run(nl, nh, NULL, NULL, "create bridge", err);
}

int host_net_bridge_ensure(const struct host_net *net, struct bg_err *err)
{
	_cleanup_(nl_close) struct nl nl = { 0 };
	struct host_link br;
	struct addr_scan scan = { 0 };
	uint32_t addr;
	unsigned int prefix;
	int r;

	if (!net || !host_valid_ifname(net->bridge))
		return bg_errorf(err, EINVAL, "invalid bridge name '%s'",
				 net && net->bridge ? net->bridge : "");
	r = host_parse_cidr(net->cidr, &addr, NULL, &prefix, err);
	if (r < 0)
		return bg_err_wrap(err, "bridge '%s'", net->bridge);
	r = nl_open(&nl, err);
	if (r < 0)
		return r;
	r = nl_link_get(&nl, net->bridge, &br, err);
	if (r == -ENODEV) {
		r = nl_bridge_create(&nl, net->bridge, err);
		if (r < 0 && r != -EEXIST)
			return bg_err_wrap(err, "bridge '%s'", net->bridge);
		r = nl_link_get(&nl, net->bridge, &br, err);
	}
	if (r < 0)
		return r;
	if (strcmp(br.kind, "bridge") != 0)
		return bg_errorf(
			err, EEXIST,
			"interface '%s' exists and is not a bridge (kind '%s'); refusing to "
			"use it",
			net->bridge, br.kind);

	scan.index = br.index;
	scan.want = addr;
	scan.want_prefix = prefix;
	r = nl_addr_scan(&nl, &scan, err);
	if (r < 0)
		return bg_err_wrap(err, "bridge '%s'", net->bridge);
	if (!scan.exact) {
		if (scan.other_prefix) {
			/* Same address with another prefix: routes would be wrong; replace it. */
			r = nl_addr_change(&nl, RTM_DELADDR, br.index, addr, scan.found_prefix,
					   err);
			if (r < 0 && r != -EADDRNOTAVAIL)
				return bg_err_wrap(err, "bridge '%s'", net->bridge);
		}
		r = nl_addr_change(&nl, RTM_NEWADDR, br.index, addr, prefix, err);
		if (r < 0 && r != -EEXIST)
			return bg_err_wrap(err, "bridge '%s': address %s", net->bridge, net->cidr);
	}
	if (!(br.flags & IFF_UP)) {
		r = nl_link_set(&nl, &br, true, -1, err);
		if (r < 0)
			return bg_err_wrap(err, "bridge up");
	}
	return 0;
}

/* ---- taps --------------------------------------------------------------------- */

/*
 * Open /dev/net/tun and attach to (or create) tap 'name'. An existing
 * single-queue tap that a VMM holds gives -EBUSY (err untouched).
 */
static int tun_attach(const char *name, int *ret_fd, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	struct ifreq ifr;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return bg_error(err, errno, "open /dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		if (errno == EBUSY)
			return -EBUSY;
		return bg_error(err, errno, "tap '%s': TUNSETIFF", name);
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int tun_configure(int fd, const char *name, uid_t uid, gid_t gid, struct bg_err *err)
{
	if (ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0)
		return bg_error(err, errno, "tap '%s': TUNSETOWNER %u", name, (unsigned int)uid);
	if (ioctl(fd, TUNSETGROUP, (unsigned long)gid) < 0)
		return bg_error(err, errno, "tap '%s': TUNSETGROUP %u", name, (unsigned int)gid);
	if (ioctl(fd, TUNSETPERSIST, 1UL) < 0)
		return bg_error(err, errno, "tap '%s': TUNSETPERSIST", name);
	return 0;
}

int host_net_tap_ensure(const struct host_net *net, const char *name, uid_t uid, gid_t gid,
			struct bg_err *err)
{
	_cleanup_(nl_close) struct nl nl = { 0 };
	struct host_link br, tap = { 0 };
	bool fix_master, fix_up;
	int r;

	if (!host_parse_tap_name(name, NULL))
		return bg_errorf(err, EINVAL, "invalid tap name '%s': want bg<8 hex chars>",
				 name ? name : "");
	if (!net || !host_valid_ifname(net->bridge))
		return bg_errorf(err, EINVAL, "invalid bridge name '%s'",
				 net && net->bridge ? net->bridge : "");
	r = nl_open(&nl, err);
	if (r < 0)
		return r;
	r = nl_link_get(&nl, net->bridge, &br, err);
	if (r == -ENODEV)
		return bg_errorf(err, ENODEV, "tap '%s': bridge '%s' does not exist", name,
				 net->bridge);
	if (r < 0)
		return r;
	if (strcmp(br.kind, "bridge") != 0)
		return bg_errorf(err, EEXIST, "tap '%s': '%s' is not a bridge", name, net->bridge);

	r = nl_link_get(&nl, name, &tap, err);
	if (r < 0 && r != -ENODEV)
		return r;
	if (r == 0 && !tap.is_tap)
		return bg_errorf(err, EEXIST,
				 "interface '%s' exists and is not a tap (kind '%s'); refusing to "
				 "touch it",
				 name, tap.kind);
	if (r == -ENODEV || !tap.persist || !tap.has_owner || tap.owner != uid ||
	    tap.group != gid) {
		_cleanup_close_ int fd = -1;

		r = tun_attach(name, &fd, err);
		if (r == -EBUSY && tap.index > 0) {
			/*
			 * A VMM holds the tap: it is in use as it is, and its owner
			 * only matters to the next open. Leave it.
			 */
		} else if (r < 0) {
			return r == -EBUSY ? bg_errorf(err, EBUSY, "tap '%s' is busy", name) : r;
		} else {
			r = tun_configure(fd, name, uid, gid, err);
			if (r < 0)
				return r;
		}
		r = nl_link_get(&nl, name, &tap, err);
		if (r == -ENODEV)
			return bg_errorf(err, ENODEV, "tap '%s' vanished after creation", name);
		if (r < 0)
			return r;
	}
	fix_master = tap.master != br.index;
	fix_up = !(tap.flags & IFF_UP);
	if (fix_master || fix_up) {
		r = nl_link_set(&nl, &tap, fix_up, fix_master ? br.index : -1, err);
		if (r < 0)
			return bg_err_wrap(err, "attach to bridge '%s'", net->bridge);
	}
	return 0;
}

int host_net_tap_remove(const char *name, struct bg_err *err)
{
	struct host_link tap;
	int r;

	if (!host_parse_tap_name(name, NULL))
		return bg_errorf(err, EINVAL, "invalid tap name '%s': want bg<8 hex chars>",
				 name ? name : "");
	r = host_link_get(name, &tap, err);
	if (r == -ENODEV)
		return 0;
	if (r < 0)
		return r;
	if (!tap.is_tap)
		return bg_errorf(err, EEXIST,
				 "interface '%s' is not a tap (kind '%s'); refusing to delete it",
				 name, tap.kind);
	return host_link_delete(name, NULL, err);
}
