/*
 * cmd_logs.c - banger logs NAME [-f] [--tail N]: the VM's console log.
 *
 * With -f, follows the file as it grows; bangerd rotates it by copy-truncate,
 * so a shrinking file means "start again from the top".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "common/cleanup.h"
#include "common/timeutil.h"

#define FOLLOW_POLL_MS 200

static void usage(FILE *f)
{
	fprintf(f, "Usage: banger logs NAME [-f|--follow] [--tail N]\n\n"
		   "Print the VM's serial console log.\n");
}

static int copy_out(int fd)
{
	char buf[65536];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return (int)n;
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return -EIO;
	}
}

/* Seek fd to the start of the last n lines (n == 0: to the end, so nothing is printed). */
static void seek_tail(int fd, long n)
{
	char buf[4096];
	off_t end = lseek(fd, 0, SEEK_END), pos = end;
	long lines = 0;

	if (end <= 0 || n == 0)
		return;
	while (pos > 0) {
		size_t chunk = pos > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)pos;
		ssize_t got;

		pos -= (off_t)chunk;
		got = pread(fd, buf, chunk, pos);
		if (got <= 0)
			break;
		for (ssize_t i = got; i-- > 0;) {
			/* The newline ending the last line does not start a line. */
			if (buf[i] == '\n' && pos + i != end - 1 && ++lines == n) {
				(void)lseek(fd, pos + i + 1, SEEK_SET);
				return;
			}
		}
	}
	(void)lseek(fd, 0, SEEK_SET);
}

int cmd_logs(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "tail", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	_cleanup_(store_freep) struct store *s = NULL;
	struct vm_record rec = { 0 };
	_cleanup_close_ int fd = -1;
	bool follow = false;
	long tail = -1;
	int c;

	while ((c = getopt_long(argc, argv, "ft:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			follow = true;
			break;
		case 't': {
			char *end;

			tail = strtol(optarg, &end, 10);
			if (*end || tail < 0) {
				cli_error("invalid --tail '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		}
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (cli_vm_get(ctx, argv[optind], &s, &rec) < 0)
		return CLI_EXIT_FAIL;
	if (!rec.console_log) {
		cli_error("vm '%s' has no console log yet", rec.name);
		vm_record_release(&rec);
		return CLI_EXIT_FAIL;
	}
	fd = open(rec.console_log, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("open '%s': %s", rec.console_log, strerror(errno));
		vm_record_release(&rec);
		return CLI_EXIT_FAIL;
	}
	vm_record_release(&rec);
	if (tail >= 0)
		seek_tail(fd, tail);
	if (copy_out(fd) < 0)
		return CLI_EXIT_FAIL;
	fflush(stdout);
	while (follow) {
		struct stat st;
		off_t pos = lseek(fd, 0, SEEK_CUR);

		sleep_ms(FOLLOW_POLL_MS);
		if (fstat(fd, &st) == 0 && st.st_size < pos)
			(void)lseek(fd, 0, SEEK_SET); /* rotated: copy-truncated */
		if (copy_out(fd) < 0)
			return CLI_EXIT_FAIL;
		if (fflush(stdout) != 0)
			return CLI_EXIT_OK; /* reader went away */
	}
	return CLI_EXIT_OK;
}
