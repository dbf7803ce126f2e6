/*
 * nft.c - the libnftables plumbing every nftables user of reconciler/host/
 * shares (antispoof.c, netrules.c), and the only includer of
 * nftables/libnftables.h: commands in nft syntax run as one transaction per
 * call, in one libnftables context the process keeps (its output and errors
 * go to buffers), a netlink probe before that context is made (libnftables
 * exit()s the process without nf_tables), and the first line of
 * libnftables' error text as the error message.
 *
 * Why one context and not one per call: closing a netfilter netlink socket
 * while the release of a committed change is pending (any socket: the kernel
 * flushes that work on every such close) waits for an RCU grace period, 10-20
 * ms on the bench machine (bench/README.md, "profiled, then two fixes"). A
 * context per call paid that after every change, three times per VM created. The context and the generation probe's socket
 * live as long as the process; both sockets are close-on-exec, so children
 * never inherit them.
 */
#include <arpa/inet.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <nftables/libnftables.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

#define NFT_ERROR_MAX 512

static struct nft_ctx *shared_ctx; /* see the top of this file */
static int gen_fd = -1;		   /* the generation probe's socket */
static uint32_t gen_seq;

/*
 * libnftables opens its netlink socket without close-on-exec and does not
 * hand it out: mark every netfilter netlink socket of this process
 * close-on-exec (the generation probe's already is).
 */
static void netfilter_sockets_cloexec(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name), domain = 0, proto = 0;
		socklen_t len = sizeof(int);

		if (fd < 3 || fd == dirfd(d) ||
		    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
		    domain != AF_NETLINK)
			continue;
		len = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 &&
		    proto == NETLINK_NETFILTER)
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	closedir(d);
}

/* The process's libnftables context, made on first use. */
static int ctx_get(struct nft_ctx **ret, struct bg_err *err)
{
	int probe;

	*ret = shared_ctx;
	if (shared_ctx)
		return 0;
	/*
	 * libnftables exit()s the whole process when it cannot open its netlink
	 * socket (a kernel without nf_tables): look first, and fail as an error.
	 */
	probe = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (probe < 0)
		return bg_errorf(err, ENOTSUP, "nftables: no netfilter netlink in this kernel: %s",
				 strerror(errno));
	close(probe);
	shared_ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (shared_ctx &&
	    (nft_ctx_buffer_output(shared_ctx) < 0 || nft_ctx_buffer_error(shared_ctx) < 0)) {
		nft_ctx_free(shared_ctx);
		shared_ctx = NULL;
	}
	if (!shared_ctx)
		return bg_errorf(err, ENOMEM, "nftables: cannot make a context");
	netfilter_sockets_cloexec();
	*ret = shared_ctx;
	return 0;
}

/* The first line of libnftables' error text that says what failed. */
static void error_summary(struct nft_ctx *ctx, char ret[NFT_ERROR_MAX])
{
	const char *msg = nft_ctx_get_error_buffer(ctx);
	const char *line = msg ? strstr(msg, "Error:") : NULL;
	size_t n;

	if (!line)
		line = msg && *msg ? msg : "unknown error";
	n = strcspn(line, "\n");
	snprintf(ret, NFT_ERROR_MAX, "%.*s", (int)n, line);
}

int host_nft_run(const char *cmds, bool json, char **ret_out, struct bg_err *err)
{
	struct nft_ctx *ctx;
	char summary[NFT_ERROR_MAX];
	const char *out;
	int r;

	r = ctx_get(&ctx, err);
	if (r < 0)
		return r;
	nft_ctx_output_set_flags(ctx, json ? NFT_CTX_OUTPUT_JSON : 0);
	r = nft_run_cmd_from_buffer(ctx, cmds);
	/* Reading a buffer also empties it for the next call: read both, always. */
	error_summary(ctx, summary);
	out = nft_ctx_get_output_buffer(ctx);
	if (r != 0) {
		if (strstr(summary, "No such file or directory"))
			return bg_errorf(err, ENOENT, "nftables: %s", summary);
		if (strstr(summary, "File exists"))
			return bg_errorf(err, EEXIST, "nftables: %s", summary);
		return bg_errorf(err, EIO, "nftables: %s", summary);
	}
	if (ret_out)
		*ret_out = xstrdup(out ? out : "");
	return 0;
}

int host_nft_foreach_chain(const char *family,
			   int (*cb)(const char *bridge, const char *chain, void *userdata),
			   void *userdata, struct bg_err *err)
{
	_cleanup_free_ char *cmd = xasprintf("list chains %s\n", family);
	_cleanup_free_ char *out = NULL;
	cJSON *root, *items, *it;
	int r;

	r = host_nft_run(cmd, true, &out, err);
	if (r == -ENOENT || r == -ENOTSUP) {
		bg_err_clear(err);
		return 0;
	}
	if (r < 0)
		return bg_err_wrap(err, "list %s chains", family);
	root = cJSON_Parse(out);
	if (!root)
		return bg_errorf(err, EBADMSG, "nftables: unreadable JSON listing");
	items = cJSON_GetObjectItemCaseSensitive(root, "nftables");
	r = 0;
	cJSON_ArrayForEach(it, items)
	{
		const cJSON *chain = cJSON_GetObjectItemCaseSensitive(it, "chain");
		const cJSON *table = cJSON_GetObjectItemCaseSensitive(chain, "table");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(chain, "name");

		if (!cJSON_IsString(table) || !cJSON_IsString(name) ||
		    strncmp(table->valuestring, "banger-", 7) != 0 ||
		    !host_valid_ifname(table->valuestring + 7))
			continue;
		r = cb(table->valuestring + 7, name->valuestring, userdata);
		if (r < 0)
			break;
	}
	cJSON_Delete(root);
	return r;
}

/*
 * The kernel's nftables generation: a counter of this network namespace that
 * every committed ruleset change (anyone's, banger's too) moves on. One
 * NFT_MSG_GETGEN request on a netfilter netlink socket; libnftables has no
 * call for it.
 */
int host_nft_generation(uint32_t *ret, struct bg_err *err)
{
	struct {
		struct nlmsghdr nh;
		struct nfgenmsg nf;
	} req = {
		.nh = { .nlmsg_len = sizeof(req),
			.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
			.nlmsg_flags = NLM_F_REQUEST },
		.nf = { .nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0 },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	union {
		char buf[1024];
		struct nlmsghdr align;
	} u;
	struct timeval tv = { .tv_sec = 1 };
	ssize_t n;

	/* Kept open, like the libnftables context (see the top of this file). */
	if (gen_fd < 0) {
		gen_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
		if (gen_fd < 0)
			return bg_errorf(err, ENOTSUP,
					 "nftables: no netfilter netlink in this kernel: %s",
					 strerror(errno));
		(void)setsockopt(gen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	req.nh.nlmsg_seq = ++gen_seq;
	if (sendto(gen_fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return bg_error(err, errno, "nftables: ask for the generation");
	/* An answer to an earlier request that timed out, or anything not from the
	 * kernel, is read and passed over. */
	for (;;) {
		struct sockaddr_nl from;
		socklen_t len = sizeof(from);

		n = recvfrom(gen_fd, u.buf, sizeof(u.buf), 0, (struct sockaddr *)&from, &len);
		if (n < (ssize_t)sizeof(struct nlmsghdr) ||
		    (from.nl_pid == 0 && u.align.nlmsg_seq == gen_seq))
			break;
	}
	if (n < 0) {
		int e = errno;

		close(gen_fd); /* start clean next time */
		gen_fd = -1;
		return bg_error(err, e, "nftables: read the generation");
	}
	for (struct nlmsghdr *nh = &u.align; NLMSG_OK(nh, (unsigned)n); nh = NLMSG_NEXT(nh, n)) {
		size_t hdr = NLMSG_LENGTH(sizeof(struct nfgenmsg));
		struct nlattr *a;
		size_t left;

		if (nh->nlmsg_type == NLMSG_ERROR)
			break;
		if (nh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN) ||
		    nh->nlmsg_len < hdr)
			continue;
		a = (struct nlattr *)((char *)nh + NLMSG_ALIGN(hdr));
		left = nh->nlmsg_len - NLMSG_ALIGN(hdr);
		while (left >= sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= left) {
			if ((a->nla_type & NLA_TYPE_MASK) == NFTA_GEN_ID &&
			    (size_t)a->nla_len >= NLA_HDRLEN + sizeof(uint32_t)) {
				uint32_t be;

				memcpy(&be, (char *)a + NLA_HDRLEN, sizeof(be));
				*ret = ntohl(be);
				return 0;
			}
			size_t step = (size_t)NLA_ALIGN(a->nla_len);

			left -= step < left ? step : left;
			a = (struct nlattr *)((char *)a + step);
		}
	}
	return bg_errorf(err, EPROTO, "nftables: no generation in the kernel's answer");
}
