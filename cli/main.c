/*
 * main.c - banger's entry point: global options, then dispatch to a verb.
 *
 * Global options may appear before or after the verb:
 *   --spec-dir DIR   (BANGER_SPEC_DIR)    where desired-state YAML lives
 *   --state-dir DIR  (BANGER_STATE_DIR)   where bangerd keeps banger.db, VM files, pins
 *   -v, --verbose    more logging (BANGER_LOG_LEVEL)
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/str.h"

#ifndef BANGER_VERSION
#define BANGER_VERSION "0.1.0"
#endif

static const struct cli_command commands[] = {
	{ "apply", cmd_apply, "write VM specs into the spec directory" },
	{ "delete", cmd_delete, "remove VMs from the spec directory" },
	{ "status", cmd_status, "show VMs and what is true now" },
	{ "get", cmd_status, "same as status" },
	{ "describe", cmd_describe, "show one VM's spec, status and events" },
	{ "diff", cmd_diff, "show what apply would change" },
	{ "logs", cmd_logs, "print a VM's console log" },
	{ "validate", cmd_validate, "check spec files without applying them" },
	{ "gc", cmd_gc, "find and remove leaked taps, disks and directories" },
	{ "doctor", cmd_doctor, "check what this host can do" },
	{ "ssh", cmd_ssh, "log in to a VM or run a command on it (host key pinned)" },
	{ "ssh-config", cmd_ssh_config, "write OpenSSH's 'Host *.vm' block for banger's VMs" },
	{ "ssh-proxy", cmd_ssh_proxy, "relay stdin/stdout to a VM's port 22 (ssh ProxyCommand)" },
};

void cli_error(const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL, *safe = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	/* File names from the spec dir are anyone's bytes: shown escaped. */
	if (msg && str_needs_escape(msg))
		safe = str_escape(msg);
	fprintf(stderr, "banger: %s\n", safe ? safe : msg ? msg : "(out of memory)");
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: banger [--spec-dir DIR] [--state-dir DIR] [-v] COMMAND [ARGS...]\n\n"
		   "Run Firecracker microVMs from declarative spec files.\n\nCommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nGlobal options (before or after the command):\n"
		   "  --spec-dir DIR    spec directory (env BANGER_SPEC_DIR)\n"
		   "  --state-dir DIR   state directory (env BANGER_STATE_DIR)\n"
		   "  -v, --verbose     more logging; repeat for more (env BANGER_LOG_LEVEL)\n"
		   "  -h, --help        this help; 'banger COMMAND --help' for a command\n"
		   "  --version         print the version\n");
}

/*
 * Take the global options out of argv wherever they are (up to a "--"),
 * leaving the verb and its own arguments in order. Returns the new argc or
 * -1 on a usage error.
 */
static int take_globals(int argc, char **argv, const char **spec_dir, const char **state_dir,
			int *verbosity)
{
	int out = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		const char *name = NULL;

		if (strcmp(a, "--") == 0) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		if (strncmp(a, "--spec-dir", 10) == 0 && (a[10] == '\0' || a[10] == '=')) {
			slot = spec_dir;
			name = "--spec-dir";
		} else if (strncmp(a, "--state-dir", 11) == 0 && (a[11] == '\0' || a[11] == '=')) {
			slot = state_dir;
			name = "--state-dir";
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			(*verbosity)++;
			continue;
		} else if (strcmp(a, "-vv") == 0) {
			*verbosity += 2;
			continue;
		}
		if (!slot) {
			argv[out++] = argv[i];
			continue;
		}
		if (strchr(a, '=')) {
			*slot = strchr(a, '=') + 1;
		} else if (i + 1 < argc) {
			*slot = argv[++i];
		} else {
			cli_error("option '%s' needs a value", name);
			return -1;
		}
		if (!**slot) {
			cli_error("option '%s' needs a non-empty value", name);
			return -1;
		}
	}
	argv[out] = NULL;
	return out;
}

int main(int argc, char **argv)
{
	const char *spec_flag = NULL, *state_flag = NULL;
	_cleanup_free_ char *spec_dir = NULL, *state_dir = NULL;
	struct cli_ctx ctx = { 0 };
	const char *verb;
	const char *no_color;

	argc = take_globals(argc, argv, &spec_flag, &state_flag, &ctx.verbosity);
	if (argc < 0)
		return CLI_EXIT_USAGE;
	log_setup("banger", ctx.verbosity);
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	verb = argv[1];
	if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "help") == 0) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(verb, "--version") == 0 || strcmp(verb, "version") == 0) {
		printf("banger %s\n", BANGER_VERSION);
		return CLI_EXIT_OK;
	}
	spec_dir = paths_spec_dir(spec_flag);
	state_dir = paths_state_dir(state_flag);
	ctx.spec_dir = spec_dir;
	ctx.state_dir = state_dir;
	no_color = getenv("NO_COLOR");
	ctx.color = isatty(STDOUT_FILENO) && !(no_color && *no_color);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(commands[i].name, verb) != 0)
			continue;
		optind = 0; /* full getopt reset for the verb */
		return commands[i].run(&ctx, argc - 1, argv + 1);
	}
	cli_error("unknown command '%s' (see 'banger --help')", verb);
	return CLI_EXIT_USAGE;
}
