/*
 * upstream.c - the forwarder's upstream list: the IPv4 nameservers of a
 * resolv.conf file, re-read whenever the file changes (its stat is checked
 * before each forward, which costs one stat()). See dns-internal.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "reconciler/dns/dns-internal.h"

#define RESOLV_MAX (64 * 1024)

/* Has the file changed since the last look (or appeared, or gone)? */
static bool changed(struct dns_upstreams *u, const struct stat *st, bool exists)
{
	if (!u->loaded || exists != u->existed)
		return true;
	if (!exists)
		return false;
	return st->st_dev != u->st.st_dev || st->st_ino != u->st.st_ino ||
	       st->st_size != u->st.st_size || st->st_mtim.tv_sec != u->st.st_mtim.tv_sec ||
	       st->st_mtim.tv_nsec != u->st.st_mtim.tv_nsec ||
	       st->st_ctim.tv_sec != u->st.st_ctim.tv_sec ||
	       st->st_ctim.tv_nsec != u->st.st_ctim.tv_nsec;
}

static void parse(struct dns_upstreams *u, char *data)
{
	char *save = NULL;

	u->n = 0;
	for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *word, *addr, *lsave = NULL;
		struct in_addr a;

		word = strtok_r(line, " \t\r", &lsave);
		if (!word || strcmp(word, "nameserver") != 0)
			continue;
		addr = strtok_r(NULL, " \t\r", &lsave);
		if (!addr || inet_pton(AF_INET, addr, &a) != 1)
			continue; /* IPv6 upstreams are not used (yet) */
		/* Never forward to ourselves: that would be a loop. */
		if (a.s_addr == u->self.sin_addr.s_addr && u->port == ntohs(u->self.sin_port))
			continue;
		if (u->n >= DNS_MAX_UPSTREAMS)
			break;
		u->addr[u->n] = (struct sockaddr_in){ .sin_family = AF_INET,
						      .sin_port = htons(u->port),
						      .sin_addr = a };
		u->n++;
	}
}

void dns_upstreams_refresh(struct dns_upstreams *u)
{
	struct stat st;
	bool exists = stat(u->path, &st) == 0;
	_cleanup_free_ char *data = NULL;
	size_t len;

	if (!changed(u, &st, exists))
		return;
	u->loaded = true;
	u->existed = exists;
	u->n = 0;
	if (exists)
		u->st = st;
	if (!exists || fs_read_file(u->path, RESOLV_MAX, &data, &len, NULL) < 0) {
		log_debug("dns: no upstreams ('%s' unreadable)", u->path);
		return;
	}
	parse(u, data);
	log_debug("dns: %zu upstream(s) from '%s'", u->n, u->path);
}

bool dns_upstreams_has(const struct dns_upstreams *u, const struct sockaddr_in *a)
{
	for (size_t i = 0; i < u->n; i++)
		if (u->addr[i].sin_addr.s_addr == a->sin_addr.s_addr &&
		    u->addr[i].sin_port == a->sin_port)
			return true;
	return false;
}
