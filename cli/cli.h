/*
 * cli.h - the banger command line: a command table (cli/main.c) and one
 * cmd_<verb>.c per verb, each parsing its own options with getopt_long and
 * answering --help.
 *
 * Exit codes: 0 ok, 1 failed, 2 usage. Messages go to stderr prefixed
 * "banger: ". Output formats follow kubectl (-o table|wide|json|yaml).
 */
#ifndef BANGER_CLI_CLI_H
#define BANGER_CLI_CLI_H

#include <stdbool.h>

enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,
	CLI_EXIT_USAGE = 2,
};

/* Global settings, parsed by main before the verb runs. */
struct cli_ctx {
	const char *spec_dir;  /* resolved (flag, env or default) */
	const char *state_dir; /* resolved */
	int verbosity;	       /* count of -v */
	bool color;	       /* stdout is a TTY and NO_COLOR is unset */
};

struct cli_command {
	const char *name;
	int (*run)(const struct cli_ctx *ctx, int argc, char **argv);
	const char *summary;
};

/* Print "banger: <msg>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Verbs. argv[0] is the verb name; getopt state is reset before each call. */
int cmd_validate(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_apply(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_delete(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_status(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_describe(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_diff(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_logs(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_gc(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_doctor(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_ssh_config(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_ssh(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_ssh_proxy(const struct cli_ctx *ctx, int argc, char **argv);

#endif
