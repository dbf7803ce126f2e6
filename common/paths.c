/*
 * paths.c - default and derived paths; see paths.h.
 */
#include "common/paths.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"

static char *xdg_dir(const char *env, const char *home_suffix, const char *leaf)
{
	const char *v = getenv(env);
	const char *home;

	if (v && v[0] == '/')
		return xasprintf("%s/banger%s", v, leaf);
	home = getenv("HOME");
	if (!home || !*home)
		home = "/";
	return xasprintf("%s/%s/banger%s", home, home_suffix, leaf);
}

char *paths_spec_dir(const char *override)
{
	const char *env = getenv("BANGER_SPEC_DIR");

	if (override && *override)
		return xstrdup(override);
	if (env && *env)
		return xstrdup(env);
	if (geteuid() == 0)
		return xstrdup("/etc/banger/vms.d");
	return xdg_dir("XDG_CONFIG_HOME", ".config", "/vms.d");
}

char *paths_state_dir(const char *override)
{
	const char *env = getenv("BANGER_STATE_DIR");

	if (override && *override)
		return xstrdup(override);
	if (env && *env)
		return xstrdup(env);
	if (geteuid() == 0)
		return xstrdup("/var/lib/banger");
	return xdg_dir("XDG_STATE_HOME", ".local/state", "");
}

char *paths_db(const char *state_dir)
{
	return fs_path_join(state_dir, "banger.db");
}

char *paths_vm_dir(const char *state_dir, const char *id)
{
	return xasprintf("%s/vms/%s", state_dir, id);
}

char *paths_ssh_dir(const char *state_dir)
{
	return fs_path_join(state_dir, "ssh");
}

char *paths_known_hosts(const char *state_dir)
{
	return fs_path_join(state_dir, "ssh/known_hosts");
}

char *paths_client_key(const char *state_dir)
{
	return fs_path_join(state_dir, "ssh/id_ed25519");
}

char *paths_daemon_lock(const char *state_dir)
{
	return fs_path_join(state_dir, "bangerd.lock");
}

char *paths_absolute(char *path)
{
	_cleanup_free_ char *cwd = NULL;
	char *abs;

	if (!path || path[0] == '/')
		return path;
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return path; /* no current directory: leave it; opening it will say why */
	abs = strcmp(path, ".") == 0 ? xstrdup(cwd) : fs_path_join(cwd, path);
	free(path);
	return abs;
}
