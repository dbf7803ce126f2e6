/*
 * cmd_ssh.c - banger ssh NAME [-l USER] [--wait DURATION] [-- CMD ARGS...]
 *
 * Looks the VM up in the state database (read-only), connects to its IP as
 * the spec's ssh.user (or -l USER) with banger's client key, and checks/pins
 * the host key under the IP and "<name>.vm" in banger's known_hosts
 * (reconciler/guest/ssh.c). With a command, each argument reaches the guest
 * as one word and banger exits with the command's status (255 when banger
 * itself fails, as OpenSSH does); without one, an interactive shell on a PTY.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/paths.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/guest/ssh.h"
#include "reconciler/store.h"
#include "reconciler/vm.h"
#include "spec/spec.h"

#define SSH_CONNECT_TIMEOUT_MS 10000
/* Like OpenSSH: banger's own failure is 255, so it never reads as the remote command's status. */
#define SSH_EXIT_ERROR 255
#define SSH_WAIT_RETRY_MS 500

static void ssh_usage(FILE *f)
{
	fprintf(f, "Usage: banger ssh NAME [-l USER] [--wait DURATION] [-- CMD ARGS...]\n\n"
		   "Log in to a VM with banger's key, checking its host key against banger's\n"
		   "known_hosts (pinned on first use; a changed key is refused as a possible\n"
		   "MITM). With CMD, run it (each argument is passed as one word, no shell\n"
		   "expansion; use 'sh -c ...' for shell syntax) and exit with its status;\n"
		   "otherwise open an interactive shell.\n\n"
		   "Options:\n"
		   "  -l, --user USER      remote user (default: the spec's ssh.user, root)\n"
		   "  -w, --wait DURATION  retry until the VM's SSH answers, up to DURATION\n"
		   "                       (e.g. 30s, 2m)\n"
		   "  -h, --help           this help\n");
}

/* "web-1" and "web-1.vm" both name the VM web-1. Owned. */
static char *vm_name_of(const char *arg)
{
	size_t n = strlen(arg);

	if (n > 3 && strcmp(arg + n - 3, ".vm") == 0)
		return xstrndup(arg, n - 3);
	return xstrdup(arg);
}

/* The VM's record; *ret must be released by the caller on success. */
static int lookup_vm(const char *state_dir, const char *name, struct vm_record *ret,
		     struct bg_err *err)
{
	_cleanup_free_ char *db = paths_db(state_dir);
	_cleanup_(store_freep) struct store *s = NULL;
	int r;

	r = store_open(db, STORE_READ_ONLY, &s, err);
	if (r < 0)
		return r;
	r = store_vm_get_by_name(s, name, ret, err);
	if (r == -ENOENT)
		return bg_errorf(err, ENOENT, "no VM named '%s'", name);
	if (r < 0)
		return r;
	if (!ret->ip || !*ret->ip) {
		vm_record_release(ret);
		return bg_errorf(err, EADDRNOTAVAIL, "VM '%s' has no IP address yet", name);
	}
	return 0;
}

/* The spec's ssh.user from the record's last applied spec; NULL if unknown. Owned. */
static char *spec_ssh_user(const struct vm_record *rec)
{
	struct vm_spec *spec = NULL;
	char *user = NULL;

	if (rec->spec_json && spec_from_json(rec->spec_json, &spec, NULL) == 0 && spec->ssh_user)
		user = xstrdup(spec->ssh_user);
	vm_spec_free(spec);
	return user;
}

/* Worth another try while waiting for a VM to come up? */
static bool retryable(int r)
{
	switch (-r) {
	case ENOENT:
	case EADDRNOTAVAIL:
	case ECONNREFUSED:
	case ECONNRESET:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EPROTO:
		return true;
	default:
		return false;
	}
}

int cmd_ssh(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "user", required_argument, NULL, 'l' },
		{ "wait", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_free_ char *name = NULL, *kh = NULL, *key = NULL, *pin_name = NULL;
	_cleanup_free_ char *spec_user = NULL;
	struct vm_record rec = { 0 };
	struct bg_err err = { 0 };
	const char *arg_user = NULL;
	const char *pins[2];
	struct ssh_target t;
	int64_t wait_ms = 0, deadline;
	int c, r, status = -1;

	while ((c = getopt_long(argc, argv, "hl:w:", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			arg_user = optarg;
			break;
		case 'w':
			if (parse_duration_ms(optarg, &wait_ms) < 0 || wait_ms < 0) {
				cli_error("ssh: invalid duration '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'h':
			ssh_usage(stdout);
			return CLI_EXIT_OK;
		default:
			ssh_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc || (arg_user && !*arg_user)) {
		ssh_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	name = vm_name_of(argv[optind]);
	kh = paths_known_hosts(ctx->state_dir);
	key = paths_client_key(ctx->state_dir);
	pin_name = xasprintf("%s.vm", name);
	deadline = now_mono_ms() + wait_ms;
	for (;;) {
		int64_t left;

		r = lookup_vm(ctx->state_dir, name, &rec, &err);
		if (r == 0) {
			free(spec_user);
			spec_user = arg_user ? NULL : spec_ssh_user(&rec);
			pins[0] = rec.ip;
			pins[1] = pin_name;
			t = (struct ssh_target){ .host = rec.ip,
						 .port = 22,
						 .user = arg_user    ? arg_user
							 : spec_user ? spec_user
								     : "root",
						 .known_hosts = kh,
						 .pin_names = pins,
						 .n_pin_names = 2,
						 .identity = key,
						 .connect_timeout_ms = SSH_CONNECT_TIMEOUT_MS };
			if (wait_ms == 0)
				break;
			left = deadline - now_mono_ms();
			if (left < SSH_CONNECT_TIMEOUT_MS)
				t.connect_timeout_ms = left > 1000 ? (int)left : 1000;
			r = ssh_probe(&t, &err);
			if (r == 0)
				break;
			vm_record_release(&rec);
		}
		if (wait_ms == 0 || !retryable(r) || now_mono_ms() >= deadline) {
			cli_error("ssh: %s", err.msg);
			return SSH_EXIT_ERROR;
		}
		bg_err_clear(&err);
		sleep_ms(SSH_WAIT_RETRY_MS);
	}
	if (optind + 1 < argc)
		r = ssh_exec(&t, (const char *const *)argv + optind + 1, &status, &err);
	else
		r = ssh_shell(&t, &status, &err);
	vm_record_release(&rec);
	if (r < 0) {
		cli_error("ssh: %s", err.msg);
		return SSH_EXIT_ERROR;
	}
	return status >= 0 && status <= 255 ? status : SSH_EXIT_ERROR;
}
