/*
 * resolved.c - tell systemd-resolved to send '*.vm' to the responder: the
 * bridge link gets the bridge address as its DNS server and '~vm' as its
 * routing domain (resolvectl, by argv), and loses both when bangerd stops.
 * See dns.h.
 */
#include <stdlib.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proc.h"
#include "reconciler/dns/dns.h"

#define RESOLVECTL_TIMEOUT_MS 5000

bool dns_resolved_present(void)
{
	_cleanup_free_ char *bin = NULL;

	if (access("/run/systemd/resolve", F_OK) < 0)
		return false;
	bin = proc_find_in_path("resolvectl");
	return bin != NULL;
}

int dns_resolved_set(const char *bridge, const char *ip, struct bg_err *err)
{
	const char *const dns[] = { "resolvectl", "dns", bridge, ip, NULL };
	const char *const domain[] = { "resolvectl", "domain", bridge, "~vm", NULL };
	int r;

	r = proc_run(dns, RESOLVECTL_TIMEOUT_MS, NULL, err);
	if (r >= 0)
		r = proc_run(domain, RESOLVECTL_TIMEOUT_MS, NULL, err);
	return r < 0 ? bg_err_wrap(err, "resolvectl: link '%s'", bridge) : 0;
}

int dns_resolved_revert(const char *bridge, struct bg_err *err)
{
	const char *const argv[] = { "resolvectl", "revert", bridge, NULL };
	int r = proc_run(argv, RESOLVECTL_TIMEOUT_MS, NULL, err);

	return r < 0 ? bg_err_wrap(err, "resolvectl: link '%s'", bridge) : 0;
}
