/*
 * cmd_doctor.c - banger doctor: what this host can do, one line per check,
 * each failing check with a hint. Exit 0 when at least one VMM can run VMs.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/paths.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/daemon.h"
#include "reconciler/dns/dns.h"
#include "reconciler/host/host.h"
#include "reconciler/vmm/vmm.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: banger doctor [--firecracker PATH] [--qemu PATH]\n\n"
		   "Check what this host can do for banger.\n");
}

static void check(bool ok, const char *what, const char *detail, const char *hint)
{
	printf("[%s] %-22s %s", ok ? " ok " : "FAIL", what, detail ? detail : "");
	if (!ok && hint)
		printf("\n       hint: %s", hint);
	printf("\n");
}

static void info_line(const char *what, const char *detail)
{
	printf("[info] %-22s %s\n", what, detail);
}

static char *first_line_of(const char *const argv[])
{
	_cleanup_free_ char *out = NULL;

	if (proc_run(argv, 5000, &out, NULL) < 0 || !out)
		return NULL;
	out[strcspn(out, "\n")] = '\0';
	return xstrdup(out);
}

/* A directory that must not be writable by group or others. */
static void check_dir(const char *what, const char *path)
{
	struct stat st;
	char detail[4200];

	if (stat(path, &st) < 0) {
		snprintf(detail, sizeof(detail), "%s does not exist yet (bangerd creates it)",
			 path);
		info_line(what, detail);
		return;
	}
	snprintf(detail, sizeof(detail), "%s (mode %04o, owner uid %u)", path,
		 (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
	check(S_ISDIR(st.st_mode) && !(st.st_mode & 0022), what, detail,
	      "the state directory should not be writable by others (chmod 0700)");
}

int cmd_doctor(const struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "firecracker", required_argument, NULL, 'f' },
		{ "qemu", required_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *bins[VMM_KIND_MAX] = { 0 };
	struct bg_err why = { 0 }, err = { 0 };
	const struct vmm_driver *chosen = NULL;
	bool fc_ok, qemu_ok;
	enum disk_mode mode;
	int c, fd;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'f') {
			bins[VMM_FIRECRACKER] = optarg;
		} else if (c == 'q') {
			bins[VMM_QEMU] = optarg;
		} else if (c == 'h') {
			usage(stdout);
			return CLI_EXIT_OK;
		} else {
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}

	/* Firecracker: binary, version, KVM (its available() runs a real KVM probe). */
	{
		_cleanup_free_ char *bin = proc_find_in_path(
			bins[VMM_FIRECRACKER] ? bins[VMM_FIRECRACKER] : "firecracker");
		_cleanup_free_ char *version = NULL;

		if (bin) {
			const char *v[] = { bin, "--version", NULL };

			version = first_line_of(v);
		}
		check(bin != NULL, "firecracker binary",
		      bin ? (version ? version : bin) : "not found in PATH",
		      "install Firecracker (github.com/firecracker-microvm/firecracker releases) or "
		      "pass --firecracker PATH to bangerd");
		fc_ok = vmm_driver_firecracker.available(bins[VMM_FIRECRACKER], &why);
		check(fc_ok, "firecracker usable", fc_ok ? "yes" : why.msg,
		      "Firecracker needs a working /dev/kvm (read-write) on x86_64 or aarch64");
	}
	/* KVM as a device node, apart from whether guests can really use it. */
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	check(fd >= 0, "/dev/kvm", fd >= 0 ? "opens read-write" : strerror(errno),
	      "load kvm_intel/kvm_amd, or run on a host with nested virtualisation");
	if (fd >= 0)
		close(fd);
	/* QEMU: binary and the accelerator the driver will use (its own real probe). */
	{
		_cleanup_free_ char *bin =
			proc_find_in_path(bins[VMM_QEMU] ? bins[VMM_QEMU] : "qemu-system-x86_64");
		_cleanup_free_ char *version = NULL;

		if (bin) {
			const char *v[] = { bin, "--version", NULL };

			version = first_line_of(v);
		}
		check(bin != NULL, "qemu binary", bin ? (version ? version : bin) : "not found",
		      "apt-get install qemu-system-x86");
		bg_err_clear(&why);
		qemu_ok = vmm_driver_qemu.available(bins[VMM_QEMU], &why);
		check(qemu_ok, "qemu usable", why.msg[0] ? why.msg : (qemu_ok ? "yes" : "no"),
		      "install qemu-system-x86");
	}
	bg_err_clear(&why);
	if (vmm_select(VMM_AUTO, bins, &chosen, &why, &err) == 0) {
		char detail[BG_ERR_MSG_MAX + 64];

		snprintf(detail, sizeof(detail), "%s%s%s%s", chosen->name, why.msg[0] ? " (" : "",
			 why.msg, why.msg[0] ? ")" : "");
		info_line("vmm: auto picks", detail);
	}

	/* Host objects. */
	fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	check(fd >= 0, "device-mapper",
	      fd >= 0 ? "/dev/mapper/control opens" : "/dev/mapper/control missing or not usable",
	      "modprobe dm-mod dm-snapshot; without it root disks are full copies (reflink/copy)");
	if (fd >= 0)
		close(fd);
	bg_err_clear(&err);
	{
		_cleanup_free_ char *probe_dir = NULL;

		probe_dir = fs_exists(ctx->state_dir) ? xstrdup(ctx->state_dir) : xstrdup("/tmp");
		if (host_ops_linux.disk_mode_detect(probe_dir, &mode, &err) == 0) {
			char detail[4300];

			snprintf(detail, sizeof(detail), "%s (for files in %s)",
				 disk_mode_to_string(mode), probe_dir);
			info_line("root disk mode", detail);
			check(mode != DISK_MODE_COPY, "copy-on-write disks",
			      mode == DISK_MODE_COPY
				      ? "no dm, no reflink: each VM gets a sparse copy"
				      : "yes",
			      "put the state dir on a reflink filesystem (btrfs, xfs) or enable "
			      "device-mapper");
		} else {
			check(false, "root disk mode", err.msg, NULL);
		}
	}
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	check(fd >= 0, "tun/tap", fd >= 0 ? "/dev/net/tun opens" : strerror(errno), "modprobe tun");
	if (fd >= 0)
		close(fd);
	check(geteuid() == 0, "bridge/tap permissions",
	      geteuid() == 0 ? "running as root" : "not root: bangerd needs CAP_NET_ADMIN",
	      "run bangerd as root (see dist/bangerd.service)");
	{
		/* Tools banger runs by argv: the seed, its own SSH key, disks. */
		static const char *const tools[][3] = {
			{ "genisoimage", "seed disks", "apt-get install genisoimage" },
			{ "ssh-keygen", "banger's SSH key", "apt-get install openssh-client" },
			{ "resize2fs", "root fs growth", "apt-get install e2fsprogs" },
			{ "qemu-img", "qcow2 images", "apt-get install qemu-utils" },
		};

		for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
			_cleanup_free_ char *bin = proc_find_in_path(tools[i][0]);
			_cleanup_free_ char *missing = xasprintf("%s not found", tools[i][0]);

			check(bin != NULL, tools[i][1], bin ? bin : missing, tools[i][2]);
		}
	}
	check_dir("state dir", ctx->state_dir);
	{
		struct stat st;
		char detail[4200];

		if (stat(ctx->spec_dir, &st) == 0) {
			snprintf(detail, sizeof(detail), "%s (mode %04o)", ctx->spec_dir,
				 (unsigned)(st.st_mode & 07777));
			check(S_ISDIR(st.st_mode) && !(st.st_mode & 0002), "spec dir", detail,
			      "the spec dir must not be world-writable: anyone could define VMs");
		} else {
			snprintf(detail, sizeof(detail), "%s does not exist yet", ctx->spec_dir);
			info_line("spec dir", detail);
		}
	}
	{
		/* bangerd's DNS responder listens on the bridge address (default --subnet). */
		char ip[32];

		snprintf(ip, sizeof(ip), "%s", DAEMON_DEFAULT_SUBNET);
		ip[strcspn(ip, "/")] = '\0';
		if (dns_resolved_present()) {
			info_line("host resolves *.vm",
				  "systemd-resolved: bangerd routes ~vm to its bridge");
		} else {
			info_line("host resolves *.vm", "no systemd-resolved: not without help");
			printf("       hint: with dnsmasq: 'server=/vm/%s' in /etc/dnsmasq.d/banger.conf;\n"
			       "       or make 'nameserver %s' the first line of /etc/resolv.conf\n"
			       "       (bangerd forwards every other name); use your --subnet's address\n",
			       ip, ip);
		}
	}
	if (!fc_ok && !qemu_ok) {
		printf("\nNo VMM can run VMs on this host.\n");
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}
