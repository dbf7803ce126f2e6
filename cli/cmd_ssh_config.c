/*
 * cmd_ssh_config.c - banger ssh-config [--print | --install]
 *
 * Writes the managed "Host *.vm" block (banger's known_hosts, key and
 * ssh-proxy) into <state>/ssh/ssh_config and prints its path; --print shows
 * the block instead; --install also puts an Include of it at the top of
 * ~/.ssh/config so plain `ssh NAME.vm` works.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "reconciler/guest/ssh_config.h"

static void ssh_config_usage(FILE *f)
{
	fprintf(f, "Usage: banger ssh-config [--print | --install]\n\n"
		   "Write a managed 'Host *.vm' block for OpenSSH into <state>/ssh/ssh_config\n"
		   "and print its path. The block makes ssh check guests against banger's\n"
		   "known_hosts (StrictHostKeyChecking accept-new), log in with banger's key and\n"
		   "reach NAME.vm through 'banger ssh-proxy'.\n\n"
		   "Options:\n"
		   "  --print     print the block instead of writing it\n"
		   "  --install   also add 'Include <that file>' at the top of ~/.ssh/config\n"
		   "  -h, --help  this help\n");
}

/* The running binary, so the ProxyCommand runs this very banger. Owned. */
static char *self_path(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);

	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	return xstrdup(buf);
}

static char *user_ssh_config(void)
{
	const char *home = getenv("HOME");
	struct passwd *pw;

	if (!home || home[0] != '/') {
		pw = getpwuid(geteuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home || home[0] != '/')
		return NULL;
	return xasprintf("%s/.ssh/config", home);
}

int cmd_ssh_config(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "print", no_argument, NULL, 'p' },
		{ "install", no_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_free_ char *self = NULL, *path = NULL, *user_config = NULL;
	struct bg_err err = { 0 };
	bool print = false, install = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			print = true;
			break;
		case 'i':
			install = true;
			break;
		case 'h':
			ssh_config_usage(stdout);
			return CLI_EXIT_OK;
		default:
			ssh_config_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc || (print && install)) {
		ssh_config_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	self = self_path();
	if (!self) {
		cli_error("ssh-config: cannot find the banger binary (/proc/self/exe)");
		return CLI_EXIT_FAIL;
	}
	if (print) {
		_cleanup_free_ char *real = realpath(ctx->state_dir, NULL);
		_cleanup_free_ char *block = NULL;

		r = ssh_config_render(real ? real : ctx->state_dir, self, &block, &err);
		if (r < 0) {
			cli_error("%s", err.msg);
			return CLI_EXIT_FAIL;
		}
		fputs(block, stdout);
		return CLI_EXIT_OK;
	}
	r = ssh_config_write(ctx->state_dir, self, &path, &err);
	if (r < 0) {
		cli_error("%s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (install) {
		user_config = user_ssh_config();
		if (!user_config) {
			cli_error("ssh-config: cannot find your home directory (set HOME)");
			return CLI_EXIT_FAIL;
		}
		r = ssh_config_install_include(user_config, path, &err);
		if (r < 0) {
			cli_error("%s", err.msg);
			return CLI_EXIT_FAIL;
		}
		fprintf(stderr, "banger: %s '%s' (Include \"%s\")\n",
			r > 0 ? "updated" : "already set up:", user_config, path);
	}
	printf("%s\n", path);
	return CLI_EXIT_OK;
}
