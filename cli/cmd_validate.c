/*
 * cmd_validate.c - banger validate -f PATH|DIR|-  (placeholder until spec/ lands)
 */
#include "cli/cli.h"

int cmd_validate(const struct cli_ctx *ctx, int argc, char **argv)
{
	(void)ctx;
	(void)argc;
	(void)argv;
	cli_error("validate: the spec parser is not built yet");
	return CLI_EXIT_FAIL;
}
