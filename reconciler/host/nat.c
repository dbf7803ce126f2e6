/*
 * nat.c - guest NAT with nftables: one table per bridge, "ip banger-<bridge>",
 * that masquerades the bridge's subnet on its way out of other interfaces.
 * The ruleset goes to 'nft -f -' on stdin (argv, never a shell); it first
 * creates and deletes the table so that applying it replaces the table in
 * one transaction, and removal is one 'delete table'.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

#define NFT_TIMEOUT_MS 30000
#define NFT_OUTPUT_CAP 8192

int host_nat_table_name(const char *bridge, char ret[64], struct bg_err *err)
{
	if (!host_valid_ifname(bridge))
		return bg_errorf(err, EINVAL, "invalid bridge name '%s'", bridge ? bridge : "");
	snprintf(ret, 64, "banger-%s", bridge);
	return 0;
}

int host_nat_ruleset(const struct host_net *net, char **ret, struct bg_err *err)
{
	_cleanup_buf_ struct buf b = { 0 };
	char table[64], netstr[INET_ADDRSTRLEN];
	uint32_t network;
	unsigned int prefix;
	int r;

	r = host_nat_table_name(net->bridge, table, err);
	if (r < 0)
		return r;
	r = host_parse_cidr(net->cidr, NULL, &network, &prefix, err);
	if (r < 0)
		return r;
	inet_ntop(AF_INET, &network, netstr, sizeof(netstr));
	buf_init(&b);
	/* 'table' alone creates it if missing, so the delete never fails. */
	buf_addf(&b, "table ip %s\n", table);
	buf_addf(&b, "delete table ip %s\n", table);
	buf_addf(&b, "table ip %s {\n", table);
	buf_addf(&b, "\tchain postrouting {\n");
	buf_addf(&b, "\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
	buf_addf(&b, "\t\tip saddr %s/%u oifname != \"%s\" masquerade\n", netstr, prefix,
		 net->bridge);
	buf_addf(&b, "\t}\n");
	buf_addf(&b, "}\n");
	*ret = buf_detach(&b, NULL);
	return 0;
}

/* The line of nft's output that says what failed, else its first line. */
static void nft_summary(char *out, char *ret, size_t size)
{
	char *line = strstr(out, "Error:");
	char *nl;

	if (!line)
		line = out;
	nl = strchr(line, '\n');
	if (nl)
		*nl = '\0';
	snprintf(ret, size, "%s", line);
}

/* Read what the child wrote into the memfd, at most NFT_OUTPUT_CAP bytes. */
static char *read_output(int fd)
{
	char *out = xmalloc(NFT_OUTPUT_CAP + 1);
	ssize_t n = pread(fd, out, NFT_OUTPUT_CAP, 0);

	out[n > 0 ? n : 0] = '\0';
	return out;
}

/* Run 'nft -f -' with 'input' on stdin. */
static int nft_apply(const char *nft, const char *input, struct bg_err *err)
{
	const char *argv[] = { nft, "-f", "-", NULL };
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	_cleanup_close_ int in = -1, out = -1, pidfd = -1;
	_cleanup_free_ char *output = NULL;
	size_t len = strlen(input);
	char summary[512];
	pid_t pid;
	int status, r;

	in = memfd_create("banger-nft-in", MFD_CLOEXEC);
	out = memfd_create("banger-nft-out", MFD_CLOEXEC);
	if (in < 0 || out < 0)
		return bg_error(err, errno, "memfd_create");
	if (write(in, input, len) != (ssize_t)len)
		return bg_error(err, errno, "write nft ruleset");
	if (lseek(in, 0, SEEK_SET) < 0)
		return bg_error(err, errno, "seek nft ruleset");
	opts.stdin_fd = in;
	opts.stdout_fd = opts.stderr_fd = out;
	r = proc_spawn(argv, &opts, &pid, err);
	if (r < 0)
		return r;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd >= 0) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };

		do
			r = poll(&p, 1, NFT_TIMEOUT_MS);
		while (r < 0 && errno == EINTR);
		if (r == 0)
			(void)kill(pid, SIGKILL);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return bg_error(err, errno, "wait for nft");
	if (pidfd >= 0 && r == 0)
		return bg_errorf(err, ETIMEDOUT, "nft timed out after %d ms", NFT_TIMEOUT_MS);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	output = read_output(out);
	nft_summary(output, summary, sizeof(summary));
	if (WIFSIGNALED(status))
		return bg_errorf(err, EIO, "nft killed by signal %d: %s", WTERMSIG(status),
				 summary);
	return bg_errorf(err, EIO, "nft exited with status %d: %s", WEXITSTATUS(status), summary);
}

/* Forwarding in this network namespace: NAT is no use without it. */
static int enable_forwarding(struct bg_err *err)
{
	static const char path[] = "/proc/sys/net/ipv4/ip_forward";
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

int host_nat_ensure(const struct host_net *net, struct bg_err *err)
{
	_cleanup_free_ char *ruleset = NULL;
	_cleanup_free_ char *nft = NULL;
	int r;

	if (!net)
		return bg_errorf(err, EINVAL, "nat: no network settings");
	if (!net->nat)
		return host_nat_remove(net, err);
	r = host_nat_ruleset(net, &ruleset, err);
	if (r < 0)
		return bg_err_wrap(err, "nat");
	nft = host_find_tool("nft");
	if (!nft)
		return bg_errorf(err, ENOENT,
				 "nat: the 'nft' program (Debian package nftables) is "
				 "not installed");
	r = nft_apply(nft, ruleset, err);
	if (r < 0)
		return bg_err_wrap(err, "nat for bridge '%s'", net->bridge);
	r = enable_forwarding(err);
	if (r < 0)
		return bg_err_wrap(err, "nat for bridge '%s'", net->bridge);
	return 0;
}

int host_nat_remove(const struct host_net *net, struct bg_err *err)
{
	_cleanup_free_ char *ruleset = NULL;
	_cleanup_free_ char *nft = NULL;
	char table[64];
	int r;

	if (!net)
		return bg_errorf(err, EINVAL, "nat: no network settings");
	r = host_nat_table_name(net->bridge, table, err);
	if (r < 0)
		return bg_err_wrap(err, "nat");
	nft = host_find_tool("nft");
	if (!nft)
		return 0; /* without nft there is no table of ours to remove */
	ruleset = xasprintf("table ip %s\ndelete table ip %s\n", table, table);
	r = nft_apply(nft, ruleset, err);
	if (r < 0)
		return bg_err_wrap(err, "remove nat for bridge '%s'", net->bridge);
	return 0;
}
