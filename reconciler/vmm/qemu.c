/*
 * qemu.c - the qemu driver: one qemu-system-x86_64 -M microvm process per VM
 * with virtio-mmio disks and network, controlled through QMP (a JSON-lines
 * protocol on a unix socket) for probe and stop; see vmm.h and docs/qemu.md.
 *
 * Accelerator: KVM when a real test shows it works, else TCG. The test runs
 * once per process and is cached: it boots a 64 KiB firmware under
 * -accel kvm that writes to an isa-debug-exit port, so success means KVM ran
 * guest code (on a PVM host, /dev/kvm exists but QEMU aborts with "failed to
 * set MSR 0x10a"). Under TCG the guest gets tsc_early_khz=<host TSC kHz>:
 * without it the guest's TSC calibration against the emulated PIT fails at
 * random and the boot hangs (notes/GUEST.md).
 *
 * Stop: Ctrl-Alt-Del through the emulated i8042 first (the same request
 * Firecracker's SendCtrlAltDel makes; guests following docs/guest.md reboot,
 * and with reboot=t -no-reboot QEMU exits), then halfway through the grace
 * period an ACPI power button press (system_powerdown), then QMP quit,
 * SIGTERM and SIGKILL.
 */
#include "reconciler/vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/vmm/vmm_sandbox.h"

#define QEMU_DEFAULT_BINARY "qemu-system-x86_64"

#define QMP_MSG_MAX (64 * 1024) /* a QMP reply we accept (query-status is ~80 bytes) */
#ifndef QMP_START_TIMEOUT_MS
#define QMP_START_TIMEOUT_MS 15000 /* launch until QMP answers (2 busy cores, TCG) */
#endif
#define QMP_PROBE_TIMEOUT_MS 2000
#define QMP_CMD_TIMEOUT_MS 2000
#ifndef KVM_PROBE_TIMEOUT_MS
#define KVM_PROBE_TIMEOUT_MS 5000
#endif
/* How long stop() waits after QMP quit, after SIGTERM and after SIGKILL (tests shorten them). */
#ifndef STOP_TERM_WAIT_MS
#define STOP_TERM_WAIT_MS 3000
#endif
#ifndef STOP_KILL_WAIT_MS
#define STOP_KILL_WAIT_MS 5000
#endif
#define CONSOLE_TAIL_MAX 1024	/* of QEMU's own output quoted in a start error */
#define KERNEL_CMDLINE_MAX 2048 /* x86 COMMAND_LINE_SIZE, with the NUL */

/* ---- QMP client --------------------------------------------------------- */

struct qmp {
	int fd;
	int64_t deadline; /* now_mono_ms() value after which every read/write fails */
	unsigned next_id;
	struct buf in; /* received, not yet consumed */
};

static void qmp_close(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	buf_release(&q->in);
}

static int qmp_wait(struct qmp *q, short events, struct bg_err *err)
{
	for (;;) {
		struct pollfd pfd = { .fd = q->fd, .events = events };
		int64_t left = q->deadline - now_mono_ms();
		int r;

		if (left <= 0)
			return bg_errorf(err, ETIMEDOUT, "QMP: no answer in time");
		r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return bg_error(err, errno, "QMP: poll");
		if (r > 0)
			return 0;
	}
}

static int qmp_send(struct qmp *q, const char *text, struct bg_err *err)
{
	size_t len = strlen(text), done = 0;

	while (done < len) {
		ssize_t n = send(q->fd, text + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			int r = qmp_wait(q, POLLOUT, err);
			if (r < 0)
				return r;
			continue;
		}
		if (n < 0)
			return bg_error(err, errno, "QMP: send");
		done += (size_t)n;
	}
	return 0;
}

/* Read one message (one line of JSON). Owned result. */
static int qmp_read(struct qmp *q, cJSON **ret, struct bg_err *err)
{
	for (;;) {
		char *nl = memchr(q->in.data, '\n', q->in.len);
		char chunk[4096];
		ssize_t n;
		int r;

		if (nl) {
			size_t line_len = (size_t)(nl - q->in.data);
			cJSON *msg = cJSON_ParseWithLength(q->in.data, line_len);
			size_t rest = q->in.len - line_len - 1;

			memmove(q->in.data, nl + 1, rest);
			q->in.len = rest;
			q->in.data[rest] = '\0';
			if (!msg || !cJSON_IsObject(msg)) {
				cJSON_Delete(msg);
				return bg_errorf(err, EBADMSG, "QMP: malformed message");
			}
			*ret = msg;
			return 0;
		}
		if (q->in.len >= QMP_MSG_MAX)
			return bg_errorf(err, EMSGSIZE, "QMP: message over %d bytes", QMP_MSG_MAX);
		r = qmp_wait(q, POLLIN, err);
		if (r < 0)
			return r;
		n = recv(q->fd, chunk, sizeof(chunk), 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return bg_error(err, errno, "QMP: recv");
		if (n == 0)
			return bg_errorf(err, ECONNRESET, "QMP: connection closed");
		buf_add(&q->in, chunk, (size_t)n);
	}
}

/*
 * Run one command; args (may be NULL) is consumed. Events arriving before the
 * reply are skipped. On success *ret_return (may be NULL) gets the "return"
 * member (owned); a QMP "error" reply fails with its description.
 */
static int qmp_execute(struct qmp *q, const char *cmd, cJSON *args, cJSON **ret_return,
		       struct bg_err *err)
{
	cJSON *req = cJSON_CreateObject();
	_cleanup_free_ char *text = NULL;
	unsigned id = ++q->next_id;
	int r;

	cJSON_AddStringToObject(req, "execute", cmd);
	if (args)
		cJSON_AddItemToObject(req, "arguments", args);
	cJSON_AddNumberToObject(req, "id", id);
	text = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	if (!text)
		return bg_errorf(err, ENOMEM, "QMP: cannot encode '%s'", cmd);
	{
		/* One line per message. */
		_cleanup_free_ char *line = xasprintf("%s\n", text);

		r = qmp_send(q, line, err);
		if (r < 0)
			return bg_err_wrap(err, "QMP %s", cmd);
	}
	for (;;) {
		cJSON *msg = NULL, *rid, *e;

		r = qmp_read(q, &msg, err);
		if (r < 0)
			return bg_err_wrap(err, "QMP %s", cmd);
		rid = cJSON_GetObjectItemCaseSensitive(msg, "id");
		if (cJSON_HasObjectItem(msg, "event") ||
		    (rid && (!cJSON_IsNumber(rid) || (unsigned)rid->valuedouble != id))) {
			cJSON_Delete(msg);
			continue;
		}
		e = cJSON_GetObjectItemCaseSensitive(msg, "error");
		if (e) {
			cJSON *desc = cJSON_GetObjectItemCaseSensitive(e, "desc");

			r = bg_errorf(err, EIO, "QMP %s: %s", cmd,
				      cJSON_IsString(desc) ? desc->valuestring : "error");
			cJSON_Delete(msg);
			return r;
		}
		if (!cJSON_HasObjectItem(msg, "return")) {
			cJSON_Delete(msg);
			continue;
		}
		if (ret_return)
			*ret_return = cJSON_DetachItemFromObjectCaseSensitive(msg, "return");
		cJSON_Delete(msg);
		return 0;
	}
}

/*
 * Connect to the QMP socket at path, read the greeting and leave
 * negotiation mode (qmp_capabilities). Everything, including later commands
 * on q, must finish within timeout_ms.
 */
static int qmp_open(const char *path, int timeout_ms, struct qmp *q, struct bg_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	cJSON *greeting = NULL;
	int r;

	q->fd = -1;
	q->next_id = 0;
	q->deadline = now_mono_ms() + timeout_ms;
	buf_init(&q->in);
	if (strlen(path) >= sizeof(sa.sun_path))
		return bg_errorf(err, ENAMETOOLONG, "QMP socket path '%s' is too long", path);
	memcpy(sa.sun_path, path, strlen(path));
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (q->fd < 0)
		return bg_error(err, errno, "QMP: socket");
	if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = bg_error(err, errno, "QMP: connect '%s'", path);
		qmp_close(q);
		return r;
	}
	r = qmp_read(q, &greeting, err);
	if (r < 0)
		goto fail;
	if (!cJSON_HasObjectItem(greeting, "QMP")) {
		cJSON_Delete(greeting);
		r = bg_errorf(err, EPROTO, "'%s' does not speak QMP", path);
		goto fail;
	}
	cJSON_Delete(greeting);
	r = qmp_execute(q, "qmp_capabilities", NULL, NULL, err);
	if (r < 0)
		goto fail;
	return 0;
fail:
	qmp_close(q);
	return r;
}

/* query-status -> enum vmm_guest_state. */
static int qmp_guest_state(struct qmp *q, enum vmm_guest_state *ret, struct bg_err *err)
{
	static const struct {
		const char *status;
		enum vmm_guest_state state;
	} map[] = {
		{ "running", VMM_GUEST_RUNNING },
		{ "prelaunch", VMM_GUEST_CONFIGURING },
		{ "inmigrate", VMM_GUEST_CONFIGURING },
		{ "paused", VMM_GUEST_PAUSED },
		{ "suspended", VMM_GUEST_PAUSED },
		{ "debug", VMM_GUEST_PAUSED },
		{ "io-error", VMM_GUEST_PAUSED },
		{ "watchdog", VMM_GUEST_PAUSED },
		{ "postmigrate", VMM_GUEST_PAUSED },
		{ "finish-migrate", VMM_GUEST_PAUSED },
		{ "save-vm", VMM_GUEST_PAUSED },
		{ "restore-vm", VMM_GUEST_PAUSED },
		{ "colo", VMM_GUEST_PAUSED },
		{ "shutdown", VMM_GUEST_SHUTDOWN },
		{ "guest-panicked", VMM_GUEST_SHUTDOWN },
		{ "internal-error", VMM_GUEST_SHUTDOWN },
	};
	cJSON *status_obj = NULL, *status;
	int r;

	r = qmp_execute(q, "query-status", NULL, &status_obj, err);
	if (r < 0)
		return r;
	status = cJSON_GetObjectItemCaseSensitive(status_obj, "status");
	*ret = VMM_GUEST_UNKNOWN;
	if (cJSON_IsString(status))
		for (size_t i = 0; i < ARRAY_SIZE(map); i++)
			if (strcmp(status->valuestring, map[i].status) == 0)
				*ret = map[i].state;
	cJSON_Delete(status_obj);
	return 0;
}

/* ---- host facts ----------------------------------------------------------- */

static char *qemu_binary(const char *binary)
{
	return proc_find_in_path(binary && *binary ? binary : QEMU_DEFAULT_BINARY);
}

/*
 * The host TSC frequency in kHz for tsc_early_khz=: bogomips * 500 from the
 * first CPU in /proc/cpuinfo (the kernel computes bogomips from the TSC as
 * 2 * tsc_khz / 1000). 0 when unknown.
 */
static unsigned long host_tsc_khz(void)
{
	_cleanup_close_ int fd = open("/proc/cpuinfo", O_RDONLY | O_CLOEXEC);
	char buf[16384];
	size_t len = 0;
	char *p;
	double bogomips;

	if (fd < 0)
		return 0;
	/* The first CPU's block is enough; /proc/cpuinfo can be megabytes. */
	while (len < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	p = strstr(buf, "\nbogomips");
	if (!p)
		return 0;
	p = strchr(p, ':');
	if (!p)
		return 0;
	bogomips = strtod(p + 1, NULL);
	if (!(bogomips > 0 && bogomips < 1e7))
		return 0;
	return (unsigned long)(bogomips * 500.0);
}

/* Copy src into dst[size], cut short if needed (for messages). */
static void copy_trunc(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int memfd_with(const char *name, const void *data, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (len && pwrite(fd, data, len, 0) != (ssize_t)len) {
		int e = errno ? errno : EIO;
		close(fd);
		return -e;
	}
	return fd;
}

/* The first non-empty line of the output in fd (a memfd), for messages. */
static void first_line(int fd, char *out, size_t size)
{
	char buf[1024];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	char *p = buf, *nl;

	out[0] = '\0';
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (*p == '\n')
		p++;
	nl = strchr(p, '\n');
	if (nl)
		*nl = '\0';
	copy_trunc(out, size, p);
}

/*
 * Can 'binary' run a microvm guest under KVM? Boot, under -accel kvm, a
 * 64 KiB firmware whose reset vector writes 1 to an isa-debug-exit port: QEMU
 * then exits with status (1 << 1) | 1 = 3. Anything else (an abort, an
 * error, a hang until the timeout) means no; 'why' gets QEMU's message.
 */
static bool kvm_probe(const char *binary, char *why, size_t why_size)
{
	/* Real mode at 0xffff0: mov al, 1; out 0xf4, al; hlt; jmp to the hlt. */
	static const unsigned char reset[] = { 0xb0, 0x01, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd };
	const char *const argv[] = {
		binary,
		"-M",
		"microvm",
		"-accel",
		"kvm",
		"-cpu",
		"host",
		"-m",
		"16",
		"-smp",
		"1",
		"-nodefaults",
		"-no-user-config",
		"-display",
		"none",
		"-no-reboot",
		"-bios",
		"/dev/stdin",
		"-device",
		"isa-debug-exit,iobase=0xf4,iosize=0x04",
		NULL,
	};
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	_cleanup_free_ unsigned char *bios = NULL;
	_cleanup_close_ int bios_fd = -1;
	_cleanup_close_ int out_fd = -1;
	_cleanup_close_ int pidfd = -1;
	struct bg_err err = { 0 };
	int status = 0, r;
	pid_t pid;

	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		snprintf(why, why_size, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	bios = xmalloc(65536);
	memset(bios, 0xf4, 65536); /* hlt everywhere else */
	memcpy(bios + 65536 - 16, reset, sizeof(reset));
	bios_fd = memfd_with("kvm-probe-bios", bios, 65536);
	out_fd = memfd_with("kvm-probe-out", NULL, 0);
	if (bios_fd < 0 || out_fd < 0) {
		snprintf(why, why_size, "memfd_create: %s", strerror(errno));
		return false;
	}
	opts.stdin_fd = bios_fd;
	opts.stdout_fd = opts.stderr_fd = out_fd;
	r = proc_spawn(argv, &opts, &pid, &err);
	if (r < 0) {
		copy_trunc(why, why_size, err.msg);
		return false;
	}
	pidfd = proc_pidfd_open(pid, 0, NULL);
	if (pidfd >= 0) {
		struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
		int64_t deadline = now_mono_ms() + KVM_PROBE_TIMEOUT_MS;

		for (;;) {
			int64_t left = deadline - now_mono_ms();

			if (left <= 0) {
				/* Our unreaped child: its pid cannot be reused yet. */
				(void)proc_signal(pid, 0, SIGKILL, NULL);
				break;
			}
			r = poll(&pfd, 1, (int)left);
			if (r > 0 || (r < 0 && errno != EINTR))
				break;
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		return true;
	first_line(out_fd, why, why_size);
	if (!why[0]) {
		if (WIFSIGNALED(status))
			snprintf(why, why_size, "test VM killed by signal %d (timeout %d ms?)",
				 WTERMSIG(status), KVM_PROBE_TIMEOUT_MS);
		else
			snprintf(why, why_size, "test VM exited with status %d",
				 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	return false;
}

/*
 * Cached answer of kvm_probe() for one binary. The daemon asks on every
 * start; the test costs a QEMU launch, and KVM does not come and go.
 */
static struct {
	bool done;
	bool usable;
	char binary[PATH_MAX];
	char why[256];
} kvm_cache;

static bool kvm_usable(const char *binary, const char **ret_why)
{
	if (!kvm_cache.done || strcmp(kvm_cache.binary, binary) != 0) {
		snprintf(kvm_cache.binary, sizeof(kvm_cache.binary), "%s", binary);
		kvm_cache.why[0] = '\0';
		kvm_cache.usable = kvm_probe(binary, kvm_cache.why, sizeof(kvm_cache.why));
		kvm_cache.done = true;
	}
	if (ret_why)
		*ret_why = kvm_cache.why;
	return kvm_cache.usable;
}

/* ---- driver ----------------------------------------------------------------- */

/*
 * On false, why says what is missing. On true, why (when non-NULL) carries no
 * error (code 0) but its message says which accelerator VMs will get.
 */
static bool qemu_available(const char *binary, struct bg_err *why)
{
	_cleanup_free_ char *path = qemu_binary(binary);
	const char *kvm_why = NULL;

	if (!path) {
		bg_errorf(why, ENOENT, "'%s' not found%s",
			  binary && *binary ? binary : QEMU_DEFAULT_BINARY,
			  binary && strchr(binary, '/') ? "" : " in PATH");
		return false;
	}
	if (!why)
		return true;
	bg_err_clear(why);
	if (kvm_usable(path, &kvm_why))
		snprintf(why->msg, sizeof(why->msg), "%s with KVM", path);
	else
		snprintf(why->msg, sizeof(why->msg),
			 "%s with TCG (software emulation; KVM unusable: %s)", path, kvm_why);
	return true;
}

/* What QEMU printed into the console log since offset 'from' (last line), for errors. */
static void console_tail(const char *log, off_t from, char *out, size_t size)
{
	_cleanup_close_ int fd = open(log, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char buf[CONSOLE_TAIL_MAX + 1];
	struct stat st;
	off_t at;
	ssize_t n;
	char *p, *end;

	out[0] = '\0';
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= from)
		return;
	at = st.st_size - CONSOLE_TAIL_MAX > from ? st.st_size - CONSOLE_TAIL_MAX : from;
	n = pread(fd, buf, CONSOLE_TAIL_MAX, at);
	if (n <= 0)
		return;
	buf[n] = '\0';
	end = buf + n;
	while (end > buf && (end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	p = strrchr(buf, '\n');
	copy_trunc(out, size, p ? p + 1 : buf);
}

/* Value for a QEMU option list: ',' is the separator, so double it. */
static void add_opt_value(struct buf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == ',')
			buf_addch(b, ',');
		buf_addch(b, *v);
	}
}

static int check_cfg(const struct vmm_config *cfg, struct bg_err *err)
{
	const struct {
		const char *what;
		const char *value;
	} required[] = {
		{ "kernel", cfg->kernel },
		{ "root disk", cfg->root_disk },
		{ "tap", cfg->tap },
		{ "mac", cfg->mac },
		{ "control socket", cfg->ctl_sock },
		{ "console log", cfg->console_log },
	};

	for (size_t i = 0; i < ARRAY_SIZE(required); i++)
		if (!required[i].value || !*required[i].value)
			return bg_errorf(err, EINVAL, "qemu: no %s given", required[i].what);
	if (strlen(cfg->ctl_sock) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return bg_errorf(err, ENAMETOOLONG, "qemu: control socket path '%s' is too long",
				 cfg->ctl_sock);
	for (const char *p = cfg->ctl_sock; *p; p++)
		if (*p == ',')
			return bg_errorf(err, EINVAL, "qemu: control socket path '%s' contains ','",
					 cfg->ctl_sock);
	return 0;
}

/*
 * What a sandboxed QEMU gets instead of paths: it opens nothing itself. -1:
 * none. Disks and the console go through fd sets (-add-fd, /dev/fdset/N),
 * the kernel and initrd are sealed memfd copies read through /proc/self/fd/N.
 */
struct qemu_fds {
	int console, kernel, initrd, root, work, seed, tap, qmp;
	int root_ro, work_ro;	 /* read-only twins: QEMU opens a disk read-only first */
	bool root_blk, work_blk; /* a block device (dm-snapshot): QEMU's host_device driver */
};

/* "file=/dev/fdset/N", or for a block device the driver QEMU cannot guess from that name. */
static void add_fdset_file(struct buf *b, int set, bool blk)
{
	if (blk)
		buf_addf(b, "file.driver=host_device,file.filename=/dev/fdset/%d", set);
	else
		buf_addf(b, "file=/dev/fdset/%d", set);
}

/* Fd set numbers: the (first) fd's own number, unique and easy to follow in ps. */
static void add_fdset(const char ***argvp, size_t *n, char ***stringsp, size_t *ns, int set, int fd,
		      const char *opaque)
{
	(*argvp)[(*n)++] = "-add-fd";
	(*stringsp)[*ns] = opaque ? xasprintf("fd=%d,set=%d,opaque=%s", fd, set, opaque)
				  : xasprintf("fd=%d,set=%d", fd, set);
	(*argvp)[(*n)++] = (*stringsp)[(*ns)++];
}

/* argv for one VM; every string lives in 'strings' (freed by the caller). */
static void build_argv(const struct vmm_config *cfg, const char *binary, bool kvm,
		       const char *append, const struct qemu_fds *fds, const char ***ret_argv,
		       char ***ret_strings)
{
	const char **argv = xcalloc(96, sizeof(*argv));
	char **strings = xcalloc(32, sizeof(*strings));
	size_t n = 0, ns = 0;
	struct buf b;

#define ARG(s) (argv[n++] = (s))
#define OWNED(s) (strings[ns++] = (s))
	ARG(binary);
	ARG("-name");
	ARG(OWNED(xasprintf("banger-%s", cfg->id ? cfg->id : "vm")));
	ARG("-M");
	ARG("microvm");
	ARG("-accel");
	ARG(kvm ? "kvm" : "tcg");
	ARG("-cpu");
	ARG(kvm ? "host" : "max");
	ARG("-m");
	ARG(OWNED(xasprintf("%u", cfg->memory_mib ? cfg->memory_mib : 256)));
	ARG("-smp");
	ARG(OWNED(xasprintf("%u", cfg->vcpus ? cfg->vcpus : 1)));
	ARG("-nodefaults");
	ARG("-no-user-config");
	ARG("-display");
	ARG("none");
	ARG("-no-reboot");
	if (fds) {
		/* QEMU's own seccomp filter, on top of the daemon's deny-list. */
		ARG("-sandbox");
		ARG("on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
		/* The root disk's set carries the QMP path: rediscovery finds it in argv. */
		add_fdset(&argv, &n, &strings, &ns, fds->root, fds->root, cfg->ctl_sock);
		add_fdset(&argv, &n, &strings, &ns, fds->root, fds->root_ro, NULL);
		if (fds->work >= 0) {
			add_fdset(&argv, &n, &strings, &ns, fds->work, fds->work, NULL);
			add_fdset(&argv, &n, &strings, &ns, fds->work, fds->work_ro, NULL);
		}
		if (fds->seed >= 0)
			add_fdset(&argv, &n, &strings, &ns, fds->seed, fds->seed, NULL);
		add_fdset(&argv, &n, &strings, &ns, fds->console, fds->console, NULL);
	}

	/* Serial console appended to the log; QEMU's stdout/stderr go there too. */
	buf_init(&b);
	buf_adds(&b, "file,id=con,append=on,path=");
	if (fds)
		buf_addf(&b, "/dev/fdset/%d", fds->console);
	else
		add_opt_value(&b, cfg->console_log);
	ARG("-chardev");
	ARG(OWNED(buf_detach(&b, NULL)));
	ARG("-serial");
	ARG("chardev:con");

	ARG("-kernel");
	ARG(fds ? OWNED(xasprintf("/proc/self/fd/%d", fds->kernel)) : cfg->kernel);
	if (cfg->initrd && *cfg->initrd) {
		ARG("-initrd");
		ARG(fds ? OWNED(xasprintf("/proc/self/fd/%d", fds->initrd)) : cfg->initrd);
	}
	ARG("-append");
	ARG(append);

	/* Root disk first (/dev/vda), work disk second (/dev/vdb), seed last. */
	buf_adds(&b, "id=root,format=raw,if=none,discard=unmap,");
	if (fds) {
		add_fdset_file(&b, fds->root, fds->root_blk);
	} else {
		buf_adds(&b, "file=");
		add_opt_value(&b, cfg->root_disk);
	}
	ARG("-drive");
	ARG(OWNED(buf_detach(&b, NULL)));
	ARG("-device");
	ARG("virtio-blk-device,drive=root");
	if (cfg->work_disk && *cfg->work_disk) {
		buf_adds(&b, "id=work,format=raw,if=none,discard=unmap,");
		if (fds) {
			add_fdset_file(&b, fds->work, fds->work_blk);
		} else {
			buf_adds(&b, "file=");
			add_opt_value(&b, cfg->work_disk);
		}
		ARG("-drive");
		ARG(OWNED(buf_detach(&b, NULL)));
		ARG("-device");
		ARG("virtio-blk-device,drive=work");
	}
	if (cfg->seed_disk && *cfg->seed_disk) {
		/* The NoCloud seed last, read-only: the guest finds it by its label. */
		buf_adds(&b, "id=seed,format=raw,if=none,readonly=on,file=");
		if (fds)
			buf_addf(&b, "/dev/fdset/%d", fds->seed);
		else
			add_opt_value(&b, cfg->seed_disk);
		ARG("-drive");
		ARG(OWNED(buf_detach(&b, NULL)));
		ARG("-device");
		ARG("virtio-blk-device,drive=seed");
	}

	if (fds) {
		buf_addf(&b, "tap,id=net0,fd=%d", fds->tap);
	} else {
		buf_adds(&b, "tap,id=net0,script=no,downscript=no,ifname=");
		add_opt_value(&b, cfg->tap);
	}
	ARG("-netdev");
	ARG(OWNED(buf_detach(&b, NULL)));
	buf_adds(&b, "virtio-net-device,netdev=net0,mac=");
	add_opt_value(&b, cfg->mac);
	ARG("-device");
	ARG(OWNED(buf_detach(&b, NULL)));

	/* A keyboard controller, so stop() can send Ctrl-Alt-Del as Firecracker does. */
	ARG("-device");
	ARG("i8042");

	if (fds) {
		/* The daemon's listening socket (its path is in the root disk's fd set). */
		ARG("-chardev");
		ARG(OWNED(xasprintf("socket,id=qmp,fd=%d,server=on,wait=off", fds->qmp)));
		ARG("-mon");
		ARG("chardev=qmp,mode=control");
	} else {
		/* The socket path in this exact form lets the daemon find the process again. */
		ARG("-qmp");
		ARG(OWNED(xasprintf("unix:%s,server=on,wait=off", cfg->ctl_sock)));
	}
	ARG(NULL);
#undef ARG
#undef OWNED
	buf_release(&b);
	*ret_argv = argv;
	*ret_strings = strings;
}

/* For a child we launched and have not reaped: its pid cannot have been reused. */
static void kill_and_reap(pid_t pid, uint64_t start_time)
{
	if (proc_signal(pid, start_time, SIGKILL, NULL) < 0)
		(void)kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* A listening unix socket at path (replacing none: the caller removed a stale one). */
static int qmp_listen(const char *path, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return bg_error(err, errno, "qemu: socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return bg_error(err, errno, "qemu: bind '%s'", path);
	if (chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		int e = errno;

		(void)unlink(path);
		return bg_error(err, e, "qemu: listen on '%s'", path);
	}
	return TAKE_FD(fd);
}

static void qemu_fds_close(struct qemu_fds *f)
{
	int *all[] = { &f->kernel, &f->initrd, &f->root,    &f->work,	&f->seed,
		       &f->tap,	   &f->qmp,    &f->root_ro, &f->work_ro };

	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		if (*all[i] >= 0) {
			close(*all[i]);
			*all[i] = -1;
		}
}

static bool is_blk(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISBLK(st.st_mode);
}

/* The file behind fd again, read-only (the same file, whatever its path says now). */
static int reopen_ro(int fd, const char *what, struct bg_err *err)
{
	char path[64];
	int ro;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		return bg_error(err, errno, "reopen '%s' read-only", what);
	return ro;
}

/* Open everything a sandboxed QEMU needs (console: the caller's log fd). */
static int qemu_fds_open(const struct vmm_config *cfg, int log_fd, struct qemu_fds *f,
			 struct bg_err *err)
{
	int r;

	*f = (struct qemu_fds){ log_fd, -1, -1, -1, -1, -1, -1, -1, -1, -1, false, false };
	/* Opened now, from whatever path the spec resolves to at this launch. */
	if ((r = f->kernel = vmm_sandbox_memfd_copy(cfg->kernel, err)) < 0)
		goto fail;
	if (cfg->initrd && *cfg->initrd &&
	    (r = f->initrd = vmm_sandbox_memfd_copy(cfg->initrd, err)) < 0)
		goto fail;
	f->root = open(cfg->root_disk, O_RDWR | O_CLOEXEC);
	if (f->root < 0) {
		r = bg_error(err, errno, "open root disk '%s'", cfg->root_disk);
		goto fail;
	}
	if ((r = f->root_ro = reopen_ro(f->root, cfg->root_disk, err)) < 0)
		goto fail;
	f->root_blk = is_blk(f->root);
	if (cfg->work_disk && *cfg->work_disk) {
		f->work = open(cfg->work_disk, O_RDWR | O_CLOEXEC);
		if (f->work < 0) {
			r = bg_error(err, errno, "open work disk '%s'", cfg->work_disk);
			goto fail;
		}
		if ((r = f->work_ro = reopen_ro(f->work, cfg->work_disk, err)) < 0)
			goto fail;
		f->work_blk = is_blk(f->work);
	}
	if (cfg->seed_disk && *cfg->seed_disk) {
		f->seed = open(cfg->seed_disk, O_RDONLY | O_CLOEXEC);
		if (f->seed < 0) {
			r = bg_error(err, errno, "open seed '%s'", cfg->seed_disk);
			goto fail;
		}
	}
	if ((r = f->tap = vmm_sandbox_tap_open(cfg->tap, err)) < 0)
		goto fail;
	if ((r = f->qmp = qmp_listen(cfg->ctl_sock, err)) < 0)
		goto fail;
	return 0;
fail:
	qemu_fds_close(f);
	return bg_err_wrap(err, "qemu sandbox");
}

static int qemu_start(const struct vmm_config *cfg, struct vmm_process *ret, struct bg_err *err)
{
	struct qemu_fds fds = {
		.kernel = -1,
		.initrd = -1,
		.root = -1,
		.work = -1,
		.seed = -1,
		.tap = -1,
		.qmp = -1,
		.root_ro = -1,
		.work_ro = -1,
	};
	bool sandboxed = vmm_sandbox_enabled(cfg->sandbox);
	uid_t vmm_uid = 0;
	_cleanup_free_ char *binary = NULL;
	_cleanup_free_ const char **argv = NULL;
	_cleanup_strv_free_ char **strings = NULL;
	_cleanup_close_ int log_fd = -1;
	_cleanup_buf_ struct buf append = { 0 };
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	struct stat st;
	off_t log_start = 0;
	uint64_t start_time = 0;
	int64_t deadline;
	bool kvm;
	pid_t pid;
	int r;

	r = check_cfg(cfg, err);
	if (r < 0)
		return r;
	binary = qemu_binary(cfg->binary);
	if (!binary)
		return bg_errorf(err, ENOENT, "qemu: '%s' not found",
				 cfg->binary ? cfg->binary : QEMU_DEFAULT_BINARY);
	kvm = kvm_usable(binary, NULL);

	/* Our own kernel arguments first: the guest's (and the user's) come last and win. */
	buf_init(&append);
	buf_adds(&append, "console=ttyS0 reboot=t panic=-1");
	if (!kvm) {
		unsigned long khz = host_tsc_khz();

		if (khz)
			buf_addf(&append, " tsc_early_khz=%lu", khz);
	}
	if (cfg->guest_args && *cfg->guest_args)
		buf_addf(&append, " %s", cfg->guest_args);
	if (append.len >= KERNEL_CMDLINE_MAX)
		return bg_errorf(err, E2BIG, "qemu: kernel command line is %zu bytes, over %d",
				 append.len, KERNEL_CMDLINE_MAX - 1);

	log_fd = open(cfg->console_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		      0640);
	if (log_fd < 0)
		return bg_error(err, errno, "qemu: open console log '%s'", cfg->console_log);
	if (fstat(log_fd, &st) == 0)
		log_start = st.st_size;
	/* A socket left by an earlier run would answer nothing (or be someone else's). */
	if (unlink(cfg->ctl_sock) < 0 && errno != ENOENT)
		return bg_error(err, errno, "qemu: remove stale '%s'", cfg->ctl_sock);

	if (sandboxed) {
		r = vmm_sandbox_uid(cfg->sandbox, cfg->vm_dir, &vmm_uid, err);
		if (r < 0)
			return bg_err_wrap(err, "qemu");
		r = qemu_fds_open(cfg, log_fd, &fds, err);
		if (r < 0)
			return r;
	}
	build_argv(cfg, binary, kvm, append.data, sandboxed ? &fds : NULL, &argv, &strings);
	opts.new_session = true;
	opts.stdout_fd = opts.stderr_fd = log_fd;
	if (sandboxed) {
		int keep[] = { fds.console, fds.kernel, fds.initrd, fds.root,	 fds.work,
			       fds.seed,    fds.tap,	fds.qmp,    fds.root_ro, fds.work_ro };
		int kept[ARRAY_SIZE(keep)];
		size_t nk = 0;

		for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
			if (keep[i] >= 0)
				kept[nk++] = keep[i];
		/* No network of its own: the tap fd is its only link. */
		vmm_sandbox_spawn_opts(cfg->sandbox, vmm_uid,
				       CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET |
					       CLONE_NEWPID,
				       &opts);
		opts.keep_fds = kept;
		opts.n_keep_fds = nk;
		r = proc_spawn(argv, &opts, &pid, err);
		qemu_fds_close(&fds);
	} else {
		r = proc_spawn(argv, &opts, &pid, err);
	}
	if (r < 0) {
		if (sandboxed)
			(void)unlink(cfg->ctl_sock);
		return bg_err_wrap(err, "qemu: launch");
	}
	(void)proc_start_time(pid, &start_time, NULL);

	/* Wait for QMP and check the guest runs; never for the guest to boot. */
	deadline = now_mono_ms() + QMP_START_TIMEOUT_MS;
	for (;;) {
		struct bg_err qerr = { 0 };
		enum vmm_guest_state state;
		int64_t left = deadline - now_mono_ms();
		struct qmp q;
		int status;
		char tail[512];

		if (waitpid(pid, &status, WNOHANG) == pid) {
			console_tail(cfg->console_log, log_start, tail, sizeof(tail));
			(void)unlink(cfg->ctl_sock);
			return bg_errorf(err, EIO, "qemu exited at launch (%s %d)%s%s",
					 WIFEXITED(status) ? "status" : "signal",
					 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
					 tail[0] ? ": " : "", tail);
		}
		/* One attempt: at most 2 s, never past the deadline. */
		if (left > 2000)
			left = 2000;
		if (qmp_open(cfg->ctl_sock, left > 0 ? (int)left : 1, &q, &qerr) == 0) {
			r = qmp_guest_state(&q, &state, &qerr);
			qmp_close(&q);
			if (r == 0 && state == VMM_GUEST_RUNNING)
				break;
			if (r == 0)
				(void)bg_errorf(&qerr, EIO, "guest is '%s', not running",
						vmm_guest_state_to_string(state));
		}
		if (now_mono_ms() >= deadline) {
			kill_and_reap(pid, start_time);
			console_tail(cfg->console_log, log_start, tail, sizeof(tail));
			(void)unlink(cfg->ctl_sock);
			return bg_errorf(err, ETIMEDOUT, "qemu: no working QMP after %d ms: %s%s%s",
					 QMP_START_TIMEOUT_MS, qerr.msg, tail[0] ? "; qemu: " : "",
					 tail);
		}
		sleep_ms(20);
	}
	ret->pid = pid;
	ret->start_time = start_time;
	return 0;
}

static int qemu_probe(const struct vmm_config *cfg, const struct vmm_process *proc,
		      enum vmm_guest_state *ret, struct bg_err *err)
{
	struct qmp q;
	int r;

	if (proc && proc->pid > 0 && !proc_identity_matches(proc->pid, proc->start_time)) {
		*ret = VMM_GUEST_SHUTDOWN;
		return 0;
	}
	r = qmp_open(cfg->ctl_sock, QMP_PROBE_TIMEOUT_MS, &q, err);
	if (r < 0)
		return r;
	r = qmp_guest_state(&q, ret, err);
	qmp_close(&q);
	return r;
}

/* Send one QMP command; failures only matter to the caller's next step. */
static int qmp_oneshot(const char *sock, const char *cmd, cJSON *args)
{
	struct qmp q;
	int r;

	r = qmp_open(sock, QMP_CMD_TIMEOUT_MS, &q, NULL);
	if (r < 0) {
		cJSON_Delete(args);
		return r;
	}
	r = qmp_execute(&q, cmd, args, NULL, NULL);
	qmp_close(&q);
	return r;
}

static cJSON *ctrl_alt_del_keys(void)
{
	static const char *const keys[] = { "ctrl", "alt", "delete" };
	cJSON *args = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(args, "keys");

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		cJSON *k = cJSON_CreateObject();

		cJSON_AddStringToObject(k, "type", "qcode");
		cJSON_AddStringToObject(k, "data", keys[i]);
		cJSON_AddItemToArray(list, k);
	}
	return args;
}

/*
 * Reap pid if it is our exited child with this start time (a zombie keeps
 * its /proc/<pid>/stat); anything else is left alone.
 */
static void reap_if_ours(pid_t pid, uint64_t start_time)
{
	uint64_t now_st;

	if (pid > 0 && proc_start_time(pid, &now_st, NULL) == 0 &&
	    (start_time == 0 || now_st == start_time))
		(void)waitpid(pid, NULL, WNOHANG);
}

/* Both of stop()'s polite requests at once: whichever the guest heeds first ends it. */
static int qemu_shutdown(const struct vmm_config *cfg, const struct vmm_process *proc,
			 struct bg_err *err)
{
	int r;

	if (!proc || proc->pid <= 0 || !cfg->ctl_sock)
		return bg_errorf(err, EINVAL, "qemu: no process to shut down");
	r = qmp_oneshot(cfg->ctl_sock, "send-key", ctrl_alt_del_keys());
	if (qmp_oneshot(cfg->ctl_sock, "system_powerdown", NULL) < 0 && r < 0)
		return bg_errorf(err, -r, "qemu: QMP at '%s' refused send-key and system_powerdown",
				 cfg->ctl_sock);
	return 0;
}

static int qemu_stop(const struct vmm_config *cfg, const struct vmm_process *proc, int grace_ms,
		     struct bg_err *err)
{
	pid_t pid = proc->pid;
	uint64_t st = proc->start_time;
	int64_t start = now_mono_ms();

	if (pid <= 0)
		goto gone;
	if (!proc_identity_matches(pid, st)) {
		reap_if_ours(pid, st);
		goto gone;
	}
	if (grace_ms > 0) {
		int64_t left;

		/* Ctrl-Alt-Del: the guest contract's fast, clean reboot (QEMU then exits). */
		(void)qmp_oneshot(cfg->ctl_sock, "send-key", ctrl_alt_del_keys());
		if (proc_wait_gone(pid, st, grace_ms / 2) == 0)
			goto gone;
		/* ACPI power button, for guests that ignore Ctrl-Alt-Del. */
		(void)qmp_oneshot(cfg->ctl_sock, "system_powerdown", NULL);
		left = start + grace_ms - now_mono_ms();
		if (proc_wait_gone(pid, st, left > 0 ? (int)left : 0) == 0)
			goto gone;
	}
	if (qmp_oneshot(cfg->ctl_sock, "quit", NULL) == 0 &&
	    proc_wait_gone(pid, st, STOP_TERM_WAIT_MS) == 0)
		goto gone;
	if (proc_signal(pid, st, SIGTERM, NULL) == 0 &&
	    proc_wait_gone(pid, st, STOP_TERM_WAIT_MS) == 0)
		goto gone;
	if (proc_signal(pid, st, SIGKILL, NULL) == 0 &&
	    proc_wait_gone(pid, st, STOP_KILL_WAIT_MS) == 0)
		goto gone;
	if (proc_identity_matches(pid, st))
		return bg_errorf(err, ETIMEDOUT, "qemu (pid %d) survived SIGKILL", (int)pid);
	reap_if_ours(pid, st);
gone:
	/* QEMU removes its socket on a clean exit, not when killed. */
	(void)unlink(cfg->ctl_sock);
	return 0;
}

const struct vmm_driver vmm_driver_qemu = {
	.name = "qemu",
	.available = qemu_available,
	.start = qemu_start,
	.probe = qemu_probe,
	.shutdown = qemu_shutdown,
	.stop = qemu_stop,
};
