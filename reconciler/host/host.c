/*
 * host.c - the host_ops_linux table, the enum names of host.h, and the rules
 * every host file shares: which names banger creates (all derived from the
 * VM id) and how EBUSY is retried.
 */
#include "reconciler/host/host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

static const char *const disk_mode_names[DISK_MODE_MAX] = {
	[DISK_MODE_DM_SNAPSHOT] = "dm-snapshot",
	[DISK_MODE_REFLINK] = "reflink",
	[DISK_MODE_COPY] = "copy",
};

static const char *const host_proto_names[HOST_PROTO_MAX] = { "tcp", "udp" };

const char *host_proto_to_string(enum host_proto p)
{
	if ((int)p < 0 || p >= HOST_PROTO_MAX)
		return NULL;
	return host_proto_names[p];
}

const char *disk_mode_to_string(enum disk_mode m)
{
	if ((int)m < 0 || m >= DISK_MODE_MAX)
		return NULL;
	return disk_mode_names[m];
}

int disk_mode_from_string(const char *s)
{
	if (!s)
		return -EINVAL;
	for (int i = 0; i < DISK_MODE_MAX; i++)
		if (strcmp(s, disk_mode_names[i]) == 0)
			return i;
	return -EINVAL;
}

static const char *const orphan_kind_names[HOST_ORPHAN_KIND_MAX] = {
	[HOST_ORPHAN_TAP] = "tap",
	[HOST_ORPHAN_DM] = "dm",
	[HOST_ORPHAN_LOOP] = "loop",
	[HOST_ORPHAN_VM_DIR] = "vm-dir",
	[HOST_ORPHAN_IMAGE_CACHE] = "image-cache",
	[HOST_ORPHAN_FILTER] = "filter",
	[HOST_ORPHAN_NETRULES] = "netrules",
};

const char *host_orphan_kind_to_string(enum host_orphan_kind k)
{
	if ((int)k < 0 || k >= HOST_ORPHAN_KIND_MAX)
		return NULL;
	return orphan_kind_names[k];
}

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* true when s starts with 8 lowercase hex chars. */
static bool has_id_prefix(const char *s)
{
	for (int i = 0; i < HOST_ID_LEN; i++)
		if (!is_lower_hex(s[i]))
			return false;
	return true;
}

bool host_valid_id(const char *id)
{
	return id && has_id_prefix(id) && id[HOST_ID_LEN] == '\0';
}

bool host_valid_ifname(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strlen(name);
	if (n == 0 || n > 15 || name[0] == '-' || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

bool host_parse_tap_name(const char *name, const char **ret_id)
{
	size_t plen = strlen(HOST_TAP_PREFIX);

	if (!name || strncmp(name, HOST_TAP_PREFIX, plen) != 0 || !host_valid_id(name + plen))
		return false;
	if (ret_id)
		*ret_id = name + plen;
	return true;
}

int host_tap_name(const char *id, char ret[16])
{
	if (!host_valid_id(id))
		return -EINVAL;
	snprintf(ret, 16, HOST_TAP_PREFIX "%s", id);
	return 0;
}

int host_dm_names(const char *id, char ret_name[64], char ret_uuid[64], char ret_base_name[64],
		  char ret_base_uuid[64])
{
	if (!host_valid_id(id))
		return -EINVAL;
	if (ret_name)
		snprintf(ret_name, 64, HOST_DM_PREFIX "%s", id);
	if (ret_uuid)
		snprintf(ret_uuid, 64, HOST_DM_UUID_PREFIX "%s", id);
	if (ret_base_name)
		snprintf(ret_base_name, 64, HOST_DM_PREFIX "%s" HOST_DM_BASE_SUFFIX, id);
	if (ret_base_uuid)
		snprintf(ret_base_uuid, 64, HOST_DM_UUID_PREFIX "%s" HOST_DM_BASE_SUFFIX, id);
	return 0;
}

/* s is "<id>" or "<id>-base". */
static bool id_with_suffix(const char *s)
{
	if (!has_id_prefix(s))
		return false;
	return s[HOST_ID_LEN] == '\0' || strcmp(s + HOST_ID_LEN, HOST_DM_BASE_SUFFIX) == 0;
}

bool host_dm_parse_id(const char *name, const char *uuid, char ret_id[HOST_ID_LEN + 1])
{
	const char *src = NULL;

	if (name && strncmp(name, HOST_DM_PREFIX, strlen(HOST_DM_PREFIX)) == 0 &&
	    id_with_suffix(name + strlen(HOST_DM_PREFIX)))
		src = name + strlen(HOST_DM_PREFIX);
	else if (uuid && strncmp(uuid, HOST_DM_UUID_PREFIX, strlen(HOST_DM_UUID_PREFIX)) == 0 &&
		 has_id_prefix(uuid + strlen(HOST_DM_UUID_PREFIX)))
		src = uuid + strlen(HOST_DM_UUID_PREFIX);
	if (!src)
		return false;
	memcpy(ret_id, src, HOST_ID_LEN);
	ret_id[HOST_ID_LEN] = '\0';
	return true;
}

bool host_retry_wait(const struct host_retry *r, int attempt)
{
	static const struct host_retry def = HOST_RETRY_DEFAULT;
	int64_t wait;

	if (!r)
		r = &def;
	if (attempt + 1 >= r->tries)
		return false;
	wait = r->first_ms;
	for (int i = 0; i < attempt && wait < r->max_ms; i++)
		wait *= 2;
	if (wait > r->max_ms)
		wait = r->max_ms;
	sleep_ms(wait);
	return true;
}

char *host_find_tool(const char *name)
{
	static const char *const dirs[] = { "/usr/sbin", "/sbin", "/usr/bin", "/bin" };
	char *p = proc_find_in_path(name);

	for (size_t i = 0; !p && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		p = xasprintf("%s/%s", dirs[i], name);
		if (access(p, X_OK) != 0) {
			free(p);
			p = NULL;
		}
	}
	return p;
}

const struct host_ops host_ops_linux = {
	.bridge_ensure = host_net_bridge_ensure,
	.tap_ensure = host_net_tap_ensure,
	.tap_remove = host_net_tap_remove,
	.antispoof_ensure = host_antispoof_ensure,
	.antispoof_remove = host_antispoof_remove,
	.netrules_base_ensure = host_netrules_base_ensure,
	.netrules_ensure = host_netrules_ensure,
	.netrules_remove = host_netrules_remove,
	.netrules_show = host_netrules_show,
	.rules_generation = host_nft_generation,
	.disk_mode_detect = host_disk_mode_detect,
	.rootdisk_ensure = host_rootdisk_ensure,
	.rootdisk_deactivate = host_rootdisk_deactivate,
	.rootdisk_remove = host_rootdisk_remove,
	.workdisk_ensure = host_workdisk_ensure,
	.workdisk_remove = host_workdisk_remove,
	.baseimg_resolve = host_baseimg_resolve,
	.rootfs_grow = host_rootfs_grow,
	.gc_scan = host_gc_scan,
	.gc_remove = host_gc_remove,
};
