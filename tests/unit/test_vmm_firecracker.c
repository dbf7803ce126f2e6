/*
 * test_vmm_firecracker.c - the Firecracker driver against
 * tests/firecracker/firecracker-standin, which judges every request by
 * Firecracker's own swagger definition and logs its verdicts (FC_STANDIN_LOG).
 *
 * Includes the driver's .c to shorten its deadlines (fc_limits) and to reach
 * its HTTP helper for the response-cap test.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "reconciler/vmm/firecracker.c"

#include "tests/lib/testutil.h"

#define STANDIN "tests/firecracker/firecracker-standin"

struct fx {
	char *dir;
	char *standin;
	char *sock;
	char *console;
	char *log;
	char *vsock;
	char *kernel;
	char *initrd;
	char *root;
	char *work;
	char *seed;
	char id[9];
	char tap[16];
	char guest_args[256];
	struct vmm_config cfg;
};

static const char *const standin_env[] = {
	"FC_STANDIN_LOG",	"FC_STANDIN_NO_SOCKET", "FC_STANDIN_FAIL",
	"FC_STANDIN_HANG",	"FC_STANDIN_DIE_AFTER", "FC_STANDIN_IGNORE_CTRLALTDEL",
	"FC_STANDIN_CHECK_TAP",
};

static int setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	char suffix[9];

	fx->standin = realpath(STANDIN, NULL);
	if (!fx->standin) {
		fprintf(stderr, "cannot find %s (run from the repository root): %s\n", STANDIN,
			strerror(errno));
		free(fx);
		return -1;
	}
	fx->dir = test_tmpdir("bg-fc");
	fx->sock = fs_path_join(fx->dir, "api.sock");
	fx->console = fs_path_join(fx->dir, "console.log");
	fx->log = fs_path_join(fx->dir, "standin.jsonl");
	fx->vsock = fs_path_join(fx->dir, FC_VSOCK_NAME);
	fx->kernel = fs_path_join(fx->dir, "vmlinux");
	fx->initrd = fs_path_join(fx->dir, "initrd");
	fx->root = fs_path_join(fx->dir, "root.ext4");
	fx->work = fs_path_join(fx->dir, "work.ext4");
	fx->seed = fs_path_join(fx->dir, "seed.iso");
	test_write_file(fx->kernel, "not really a kernel\n");
	test_write_file(fx->initrd, "not really an initrd\n");
	test_write_file(fx->root, "");
	test_write_file(fx->work, "");
	test_write_file(fx->seed, "");
	test_unique_suffix(fx->id, 8);
	test_unique_suffix(suffix, 6);
	snprintf(fx->tap, sizeof(fx->tap), "bg%s", suffix);
	snprintf(fx->guest_args, sizeof(fx->guest_args),
		 "ip=172.16.77.2::172.16.77.1:255.255.255.0:fc-test:eth0:off banger.user=root");
	fx->cfg = (struct vmm_config){
		.id = fx->id,
		.name = "fc-test",
		.vcpus = 2,
		.memory_mib = 256,
		.kernel = fx->kernel,
		.initrd = NULL,
		.guest_args = fx->guest_args,
		.root_disk = fx->root,
		.work_disk = fx->work,
		.seed_disk = fx->seed,
		.tap = fx->tap,
		.mac = "02:fc:ac:10:4d:02",
		.cid = 1234,
		.vm_dir = fx->dir,
		.ctl_sock = fx->sock,
		.console_log = fx->console,
		.binary = fx->standin,
	};
	setenv("FC_STANDIN_LOG", fx->log, 1);
	/* Generous: other builds share these 2 cores and python starts slowly under load. */
	fc_limits.socket_ms = 15000;
	fc_limits.request_ms = 10000;
	fc_limits.probe_ms = 5000;
	fc_limits.ctrl_alt_del_ms = 5000;
	*state = fx;
	return 0;
}

/* pids of live processes with 'arg' as one of their arguments. */
static int pids_with_arg(const char *arg, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		_cleanup_free_ char *cmd = NULL;
		size_t len = 0;
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || pid == getpid())
			continue;
		if (proc_cmdline((pid_t)pid, &cmd, &len) < 0)
			continue;
		for (size_t off = 0; off < len; off += strlen(cmd + off) + 1)
			if (strcmp(cmd + off, arg) == 0) {
				if (n < max)
					out[n] = (pid_t)pid;
				n++;
				break;
			}
	}
	closedir(d);
	return n;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	pid_t pids[8];
	int n;

	/* Defensive: a failed test must not leave a stand-in behind. */
	n = pids_with_arg(fx->sock, pids, 8);
	for (int i = 0; i < n && i < 8; i++) {
		(void)kill(pids[i], SIGKILL);
		(void)waitpid(pids[i], NULL, 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(standin_env); i++)
		unsetenv(standin_env[i]);
	test_rmtree(fx->dir);
	free(fx->dir);
	free(fx->standin);
	free(fx->sock);
	free(fx->console);
	free(fx->log);
	free(fx->vsock);
	free(fx->kernel);
	free(fx->initrd);
	free(fx->root);
	free(fx->work);
	free(fx->seed);
	free(fx);
	return 0;
}

/* Print our children (for a failure message). */
static void print_children(void)
{
	DIR *d = opendir("/proc");
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = xasprintf("/proc/%s/stat", de->d_name);
		_cleanup_free_ char *stat = NULL;
		char *p;
		int ppid;

		if (fs_read_file(path, 4096, &stat, NULL, NULL) < 0)
			continue;
		p = strrchr(stat, ')');
		if (p && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == getpid())
			fprintf(stderr, "child: %s", stat);
	}
	closedir(d);
}

/* Nothing runs, nothing is left to reap, no socket remains. */
static void assert_nothing_left(const struct fx *fx)
{
	pid_t pids[8];
	pid_t w;

	assert_int_equal(pids_with_arg(fx->sock, pids, 8), 0);
	errno = 0;
	w = waitpid(-1, NULL, WNOHANG);
	if (w != -1 || errno != ECHILD) {
		print_children();
		fail_msg("a child is left: waitpid says %d (%s)", (int)w, strerror(errno));
	}
	assert_false(fs_exists(fx->sock));
	assert_false(fs_exists(fx->vsock));
}

/* ---- the stand-in's log --------------------------------------------------- */

struct entry {
	char what[128]; /* "PUT /drives/rootfs" */
	char verdict[16];
	char fault[512];
	long status;
	long conn;
	cJSON *body;
};

struct standin_log {
	struct entry e[64];
	int n;
};

static void log_release(struct standin_log *l)
{
	for (int i = 0; i < l->n; i++)
		cJSON_Delete(l->e[i].body);
	l->n = 0;
}

static void log_read(const struct fx *fx, struct standin_log *l)
{
	_cleanup_free_ char *data = NULL;
	struct bg_err err = { 0 };
	char *save = NULL;

	memset(l, 0, sizeof(*l));
	if (!fs_exists(fx->log))
		return;
	assert_int_equal(fs_read_file(fx->log, 1 << 20, &data, NULL, &err), 0);
	for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		_cleanup_(cJSON_Deletep) cJSON *j = cJSON_Parse(line);
		const cJSON *m, *p, *v, *s, *f, *c;
		struct entry *e;

		assert_non_null(j);
		assert_true(l->n < (int)ARRAY_SIZE(l->e));
		e = &l->e[l->n++];
		m = cJSON_GetObjectItemCaseSensitive(j, "method");
		p = cJSON_GetObjectItemCaseSensitive(j, "path");
		v = cJSON_GetObjectItemCaseSensitive(j, "verdict");
		s = cJSON_GetObjectItemCaseSensitive(j, "status");
		f = cJSON_GetObjectItemCaseSensitive(j, "fault_message");
		c = cJSON_GetObjectItemCaseSensitive(j, "conn");
		assert_true(cJSON_IsString(m) && cJSON_IsString(p) && cJSON_IsString(v));
		snprintf(e->what, sizeof(e->what), "%s %s", m->valuestring, p->valuestring);
		snprintf(e->verdict, sizeof(e->verdict), "%s", v->valuestring);
		snprintf(e->fault, sizeof(e->fault), "%s", cJSON_IsString(f) ? f->valuestring : "");
		e->status = cJSON_IsNumber(s) ? (long)s->valuedouble : -1;
		e->conn = cJSON_IsNumber(c) ? (long)c->valuedouble : -1;
		e->body = cJSON_DetachItemFromObjectCaseSensitive(j, "body");
	}
}

/* The requests, in order, were exactly 'want' (NULL-terminated). */
static void assert_sequence(const struct standin_log *l, const char *const *want)
{
	int n = 0;

	for (; want[n]; n++) {
		if (n >= l->n)
			fail_msg("request %d: want '%s', the stand-in saw only %d requests", n,
				 want[n], l->n);
		if (strcmp(l->e[n].what, want[n]) != 0)
			fail_msg("request %d: want '%s', got '%s'", n, want[n], l->e[n].what);
	}
	if (l->n != n)
		fail_msg("want %d requests, the stand-in saw %d (next: '%s')", n, l->n,
			 l->e[n].what);
}

static void assert_all_conform(const struct standin_log *l)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->e[i].verdict, "ok") != 0)
			fail_msg("'%s' was %s by the stand-in: %s", l->e[i].what, l->e[i].verdict,
				 l->e[i].fault);
}

static const cJSON *log_body(const struct standin_log *l, const char *what)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->e[i].what, what) == 0)
			return l->e[i].body;
	fail_msg("no '%s' in the stand-in's log", what);
	return NULL;
}

static const char *body_str(const cJSON *body, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);

	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static double body_num(const cJSON *body, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);

	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

struct file_has {
	const char *path;
	const char *needle;
};

static bool file_contains(void *arg)
{
	const struct file_has *fh = arg;
	_cleanup_free_ char *data = NULL;

	if (fs_read_file(fh->path, 1 << 20, &data, NULL, NULL) < 0)
		return false;
	return strstr(data, fh->needle) != NULL;
}

static void assert_console_has(const struct fx *fx, const char *needle)
{
	struct file_has fh = { fx->console, needle };

	if (!test_wait_for(file_contains, &fh, 10000))
		fail_msg("console log has no '%s'", needle);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_start_probe_stop(void **state)
{
	static const char *const want[] = {
		"PUT /logger",
		"PUT /metrics",
		"PUT /machine-config",
		"PUT /boot-source",
		"PUT /drives/rootfs",
		"PUT /drives/work",
		"PUT /drives/seed",
		"PUT /network-interfaces/eth0",
		"PUT /vsock",
		"PUT /actions",
		NULL,
	};
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct standin_log l;
	struct bg_err err = { 0 };
	enum vmm_guest_state gs = VMM_GUEST_STATE_MAX;
	_cleanup_free_ char *marker = fs_path_join(fx->dir, "daemon-private");
	_cleanup_free_ char *want_args = NULL;
	int64_t t0;
	int leak_fd, r;

	/* An fd the "daemon" forgot to mark CLOEXEC must still not reach the VMM. */
	test_write_file(marker, "secret");
	leak_fd = open(marker, O_RDONLY);
	assert_true(leak_fd >= 0);

	t0 = now_mono_ms();
	r = vmm_driver_firecracker.start(&fx->cfg, &proc, &err);
	close(leak_fd);
	if (r < 0)
		fail_msg("start: %s", err.msg);
	printf("start() against the stand-in took %lld ms\n", (long long)(now_mono_ms() - t0));
	assert_true(proc.pid > 0);
	assert_true(proc_identity_matches(proc.pid, proc.start_time));
	assert_int_equal(getsid(proc.pid), proc.pid); /* its own session */
	{
		/* argv ends "--api-sock <sock> --id <id>" (how handles find it again). */
		_cleanup_free_ char *cmd = NULL;
		_cleanup_free_ char *tail =
			xasprintf("--api-sock%c%s%c--id%c%s", 0, fx->sock, 0, 0, fx->id);
		size_t len = 0, tail_len = strlen(fx->sock) + strlen(fx->id) + 17;

		assert_int_equal(proc_cmdline(proc.pid, &cmd, &len), 0);
		assert_true(len > tail_len + 1); /* cmdline ends with a NUL */
		assert_memory_equal(cmd + len - 1 - tail_len, tail, tail_len);
	}
	{
		_cleanup_free_ char *fddir = xasprintf("/proc/%d/fd", (int)proc.pid);
		DIR *d = opendir(fddir);
		struct dirent *de;

		assert_non_null(d);
		while ((de = readdir(d))) {
			_cleanup_free_ char *link = xasprintf("%s/%s", fddir, de->d_name);
			char target[PATH_MAX];
			ssize_t n = readlink(link, target, sizeof(target) - 1);

			if (n <= 0)
				continue;
			target[n] = '\0';
			if (strcmp(target, marker) == 0)
				fail_msg("the VMM inherited fd %s (%s)", de->d_name, target);
		}
		closedir(d);
	}

	/* Every request conformed to Firecracker's definition, in the expected order. */
	log_read(fx, &l);
	assert_sequence(&l, want);
	assert_all_conform(&l);
	for (int i = 0; i < l.n; i++) {
		assert_int_equal(l.e[i].status, 204);
		assert_int_equal(l.e[i].conn, l.e[0].conn); /* one keep-alive connection */
	}
	{
		const cJSON *m = log_body(&l, "PUT /machine-config");
		const cJSON *b = log_body(&l, "PUT /boot-source");
		const cJSON *rd = log_body(&l, "PUT /drives/rootfs");
		const cJSON *wd = log_body(&l, "PUT /drives/work");
		const cJSON *sd = log_body(&l, "PUT /drives/seed");
		const cJSON *net = log_body(&l, "PUT /network-interfaces/eth0");
		const cJSON *vs = log_body(&l, "PUT /vsock");
		const cJSON *lg = log_body(&l, "PUT /logger");

		assert_int_equal((int)body_num(m, "vcpu_count"), 2);
		assert_int_equal((int)body_num(m, "mem_size_mib"), 256);
		assert_string_equal(body_str(b, "kernel_image_path"), fx->kernel);
		assert_null(cJSON_GetObjectItemCaseSensitive(b, "initrd_path"));
		want_args = xasprintf("%s %s", FC_BOOT_ARGS, fx->guest_args);
		assert_string_equal(body_str(b, "boot_args"), want_args);
		assert_string_equal(body_str(rd, "path_on_host"), fx->root);
		assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rd, "is_root_device")));
		assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rd, "is_read_only")));
		assert_string_equal(body_str(wd, "path_on_host"), fx->work);
		assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(wd, "is_root_device")));
		assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(wd, "is_read_only")));
		assert_string_equal(body_str(sd, "path_on_host"), fx->seed);
		assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(sd, "is_root_device")));
		assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sd, "is_read_only")));
		assert_string_equal(body_str(net, "host_dev_name"), fx->tap);
		assert_string_equal(body_str(net, "guest_mac"), "02:fc:ac:10:4d:02");
		assert_int_equal((int)body_num(vs, "guest_cid"), 1234);
		assert_string_equal(body_str(vs, "uds_path"), fx->vsock);
		assert_true(fs_exists(body_str(lg, "log_path")));
	}
	log_release(&l);
	assert_console_has(fx, "banger-standin: guest running");
	assert_true(fs_exists(fx->vsock)); /* the VMM bound it */

	assert_int_equal(vmm_driver_firecracker.probe(&fx->cfg, &proc, &gs, &err), 0);
	assert_int_equal(gs, VMM_GUEST_RUNNING);

	/* stop: ctrl-alt-del ends it well within the grace period. */
	r = vmm_driver_firecracker.stop(&fx->cfg, &proc, 10000, &err);
	if (r < 0)
		fail_msg("stop: %s", err.msg);
	assert_false(proc_identity_matches(proc.pid, proc.start_time));
	assert_console_has(fx, "ctrl-alt-del: guest rebooting");
	log_read(fx, &l);
	assert_all_conform(&l);
	assert_string_equal(l.e[l.n - 1].what, "PUT /actions");
	assert_string_equal(body_str(l.e[l.n - 1].body, "action_type"), "SendCtrlAltDel");
	log_release(&l);
	assert_nothing_left(fx);

	/* Gone: probe says unknown without an error, stop is a no-op success. */
	gs = VMM_GUEST_STATE_MAX;
	assert_int_equal(vmm_driver_firecracker.probe(&fx->cfg, &proc, &gs, &err), 0);
	assert_int_equal(gs, VMM_GUEST_UNKNOWN);
	assert_int_equal(vmm_driver_firecracker.stop(&fx->cfg, &proc, 1000, &err), 0);
}

static void test_minimal_config(void **state)
{
	static const char *const want[] = {
		"PUT /logger",
		"PUT /metrics",
		"PUT /machine-config",
		"PUT /boot-source",
		"PUT /drives/rootfs",
		"PUT /actions",
		NULL,
	};
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct standin_log l;
	struct bg_err err = { 0 };

	fx->cfg.work_disk = NULL;
	fx->cfg.seed_disk = NULL;
	fx->cfg.tap = NULL;
	fx->cfg.cid = 0;
	fx->cfg.initrd = fx->initrd;
	fx->cfg.guest_args = NULL;
	if (vmm_driver_firecracker.start(&fx->cfg, &proc, &err) < 0)
		fail_msg("start: %s", err.msg);
	log_read(fx, &l);
	assert_sequence(&l, want);
	assert_all_conform(&l);
	assert_string_equal(body_str(log_body(&l, "PUT /boot-source"), "initrd_path"), fx->initrd);
	assert_string_equal(body_str(log_body(&l, "PUT /boot-source"), "boot_args"), FC_BOOT_ARGS);
	log_release(&l);
	assert_int_equal(vmm_driver_firecracker.stop(&fx->cfg, &proc, 10000, &err), 0);
	assert_nothing_left(fx);
}

/* Sockets left by an earlier run would make Firecracker fail to bind. */
static void test_stale_sockets_replaced(void **state)
{
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };

	test_write_file(fx->sock, "stale");
	test_write_file(fx->vsock, "stale");
	if (vmm_driver_firecracker.start(&fx->cfg, &proc, &err) < 0)
		fail_msg("start: %s", err.msg);
	assert_int_equal(vmm_driver_firecracker.stop(&fx->cfg, &proc, 10000, &err), 0);
	assert_nothing_left(fx);
}

static void spawn_standin(struct fx *fx, struct vmm_process *proc)
{
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	const char *argv[] = { fx->standin, "--api-sock", fx->sock, "--id", fx->id, NULL };
	struct bg_err err = { 0 };
	bool reaped = false;

	assert_int_equal(proc_spawn(argv, &opts, &proc->pid, &err), 0);
	assert_int_equal(proc_start_time(proc->pid, &proc->start_time, &err), 0);
	if (fc_wait_socket(&fx->cfg, proc->pid, 15000, &reaped, &err) < 0)
		fail_msg("%s", err.msg);
}

/* A VMM that is not started yet: probe says so; ctrl-alt-del is refused, SIGTERM ends it. */
static void test_probe_configuring_then_sigterm(void **state)
{
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct standin_log l;
	struct bg_err err = { 0 };
	enum vmm_guest_state gs = VMM_GUEST_STATE_MAX;
	int64_t t0;

	spawn_standin(fx, &proc);
	assert_int_equal(vmm_driver_firecracker.probe(&fx->cfg, &proc, &gs, &err), 0);
	assert_int_equal(gs, VMM_GUEST_CONFIGURING);

	/* An API socket that answers for another instance is not ours. */
	{
		struct vmm_config other = fx->cfg;

		other.id = "ffffffff";
		assert_int_equal(vmm_driver_firecracker.probe(&other, &proc, &gs, &err), -EPROTO);
		assert_non_null(strstr(err.msg, "answers for instance"));
	}

	t0 = now_mono_ms();
	assert_int_equal(vmm_driver_firecracker.stop(&fx->cfg, &proc, 20000, &err), 0);
	/* The refusal skips the grace period. */
	assert_true(now_mono_ms() - t0 < 10000);
	assert_false(proc_identity_matches(proc.pid, proc.start_time));
	log_read(fx, &l);
	assert_string_equal(l.e[l.n - 1].what, "PUT /actions");
	assert_string_equal(l.e[l.n - 1].verdict, "rejected");
	assert_non_null(strstr(l.e[l.n - 1].fault, "before starting the microVM"));
	log_release(&l);
	assert_nothing_left(fx);
}

/* A guest that ignores ctrl-alt-del gets the grace period, then SIGTERM. */
static void test_stop_escalates(void **state)
{
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };
	int64_t t0, took;

	setenv("FC_STANDIN_IGNORE_CTRLALTDEL", "1", 1);
	if (vmm_driver_firecracker.start(&fx->cfg, &proc, &err) < 0)
		fail_msg("start: %s", err.msg);
	t0 = now_mono_ms();
	assert_int_equal(vmm_driver_firecracker.stop(&fx->cfg, &proc, 400, &err), 0);
	took = now_mono_ms() - t0;
	assert_true(took >= 400);
	assert_true(took < 400 + fc_limits.term_ms);
	assert_console_has(fx, "ctrl-alt-del ignored");
	assert_false(proc_identity_matches(proc.pid, proc.start_time));
	assert_nothing_left(fx);
}

static void test_socket_never_appears(void **state)
{
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };
	int64_t t0;

	setenv("FC_STANDIN_NO_SOCKET", "1", 1);
	fc_limits.socket_ms = 1000;
	t0 = now_mono_ms();
	assert_int_equal(vmm_driver_firecracker.start(&fx->cfg, &proc, &err), -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 < 1000 + fc_limits.kill_ms);
	assert_non_null(strstr(err.msg, fx->sock));
	assert_non_null(strstr(err.msg, "did not accept connections within 1000 ms"));
	assert_nothing_left(fx);
}

static void test_exits_before_socket(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *fake = fs_path_join(fx->dir, "fake-firecracker");
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };

	test_write_file(fake, "#!/bin/sh\necho \"Error: unknown argument '$1'\" >&2\nexit 3\n");
	assert_int_equal(chmod(fake, 0755), 0);
	fx->cfg.binary = fake;
	assert_int_equal(vmm_driver_firecracker.start(&fx->cfg, &proc, &err), -ESRCH);
	assert_non_null(strstr(err.msg, "exited with status 3 before its API socket"));
	assert_non_null(strstr(err.msg, "Error: unknown argument '--api-sock'"));
	assert_nothing_left(fx);
}

static void test_fault_message_surfaced(void **state)
{
	static const char *const want[] = {
		"PUT /logger",	    "PUT /metrics",	  "PUT /machine-config",
		"PUT /boot-source", "PUT /drives/rootfs", NULL,
	};
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct standin_log l;
	struct bg_err err = { 0 };

	setenv("FC_STANDIN_FAIL", "PUT /drives/rootfs", 1);
	assert_int_equal(vmm_driver_firecracker.start(&fx->cfg, &proc, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "PUT /drives/rootfs: HTTP 400: standin: injected failure "
					"for PUT /drives/rootfs"));
	log_read(fx, &l);
	assert_sequence(&l, want); /* nothing after the failure, no InstanceStart */
	log_release(&l);
	assert_nothing_left(fx);
}

/* A rejection by the stand-in's own checks (not injected) reads the same way. */
static void test_rejection_surfaced(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *missing = fs_path_join(fx->dir, "no-such-vmlinux");
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };

	fx->cfg.kernel = missing;
	assert_int_equal(vmm_driver_firecracker.start(&fx->cfg, &proc, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "PUT /boot-source: HTTP 400: Boot source error: The kernel "
					"file cannot be opened"));
	assert_nothing_left(fx);
}

static void test_dies_mid_config(void **state)
{
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };
	int r;

	setenv("FC_STANDIN_DIE_AFTER", "3", 1);
	r = vmm_driver_firecracker.start(&fx->cfg, &proc, &err);
	assert_true(r == -ECONNREFUSED || r == -ECONNRESET);
	assert_non_null(strstr(err.msg, "firecracker exited with status 1 during configuration"));
	assert_non_null(strstr(err.msg, "PUT /boot-source: "));
	assert_nothing_left(fx);
}

static void test_hanging_endpoint_times_out(void **state)
{
	struct fx *fx = *state;
	struct vmm_process proc = { 0 };
	struct standin_log l;
	struct bg_err err = { 0 };
	int64_t t0;

	setenv("FC_STANDIN_HANG", "PUT /machine-config", 1);
	fc_limits.request_ms = 1000;
	t0 = now_mono_ms();
	assert_int_equal(vmm_driver_firecracker.start(&fx->cfg, &proc, &err), -ETIMEDOUT);
	assert_true(now_mono_ms() - t0 < 15000 + 1000 + fc_limits.kill_ms);
	assert_non_null(strstr(err.msg, "PUT /machine-config: "));
	assert_non_null(strstr(err.msg, "imed out"));
	log_read(fx, &l);
	assert_string_equal(l.e[l.n - 1].what, "PUT /machine-config");
	assert_string_equal(l.e[l.n - 1].verdict, "hung");
	log_release(&l);
	assert_nothing_left(fx);
}

static void test_missing_binary(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *missing = fs_path_join(fx->dir, "no-firecracker");
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };

	fx->cfg.binary = missing;
	assert_int_equal(vmm_driver_firecracker.start(&fx->cfg, &proc, &err), -ENOENT);
	assert_non_null(strstr(err.msg, missing));
	assert_false(fs_exists(fx->console)); /* nothing was even prepared */
	assert_nothing_left(fx);
}

/* A fake API server on a unix socket that answers one request with 'reply' (len bytes). */
static pid_t fake_server(const char *sock, const char *reply, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pid_t pid;

	assert_true(fd >= 0);
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		char req[4096];
		size_t off = 0;

		if (c < 0)
			_exit(1);
		(void)!read(c, req, sizeof(req));
		while (off < len) {
			ssize_t n = write(c, reply + off, len - off);

			if (n <= 0)
				break;
			off += (size_t)n;
		}
		close(c);
		_exit(0);
	}
	close(fd);
	return pid;
}

static void fake_call(const char *sock, const char *reply, size_t len, int *ret_r,
		      struct bg_err *err)
{
	struct fc_api api;
	_cleanup_(cJSON_Deletep) cJSON *json = NULL;
	pid_t pid = fake_server(sock, reply, len);

	assert_int_equal(fc_api_init(&api, sock, err), 0);
	*ret_r = fc_api_call(&api, "GET", "/", NULL, 5000, &json, err);
	fc_api_release(&api);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(unlink(sock), 0);
}

/* A listening unix socket at path (non-blocking, to check nothing connected). */
static int listen_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

/*
 * The socket directory of a confined VMM is writable by its uid: a symlink
 * planted in place of the API socket must never lead root's requests (probe,
 * stop, configuration) to the socket it points at.
 */
static void test_socket_symlink_refused(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *target = fs_path_join(fx->dir, "root-only.sock");
	_cleanup_close_ int lfd = -1, cfd = -1;
	enum vmm_guest_state gs = VMM_GUEST_STATE_MAX;
	struct vmm_process proc = { .pid = getpid() };
	struct bg_err err = { 0 };
	char path[32];
	int fd = -1;
	int r;

	lfd = listen_at(target);
	assert_int_equal(symlink(target, fx->sock), 0);
	assert_int_equal(vmm_sandbox_sock_path(fx->sock, &fd, path), -ELOOP);
	assert_false(fc_socket_accepts(fx->sock));
	/* A live VMM (this process stands for it) that cannot be asked: an error. */
	assert_true(proc_start_time(proc.pid, &proc.start_time, NULL) >= 0);
	r = vmm_driver_firecracker.probe(&fx->cfg, &proc, &gs, &err);
	assert_true(r < 0);
	assert_non_null(strstr(err.msg, "API socket"));
	/* Nothing ever reached the target. */
	assert_int_equal(accept(lfd, NULL, NULL), -1);
	assert_int_equal(errno, EAGAIN);
	/* The target itself works, through the same path as every request. */
	assert_int_equal(vmm_sandbox_sock_path(target, &fd, path), 0);
	close(fd);
	assert_true(fc_socket_accepts(target));
	cfd = accept(lfd, NULL, NULL);
	assert_true(cfd >= 0);
	/* A regular file in its place is not a socket either. */
	assert_int_equal(unlink(fx->sock), 0);
	test_write_file(fx->sock, "");
	assert_int_equal(vmm_sandbox_sock_path(fx->sock, &fd, path), -ENOTSOCK);
	assert_int_equal(unlink(fx->sock), 0);
	assert_int_equal(unlink(target), 0);
}

/* The sockets live next to the API socket: its directory is made and cleaned. */
static void test_socket_dir(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *sub = fs_path_join(fx->dir, "fc");
	_cleanup_free_ char *sock = fs_path_join(sub, "api.sock");
	_cleanup_free_ char *vsock = fs_path_join(sub, FC_VSOCK_NAME);
	_cleanup_free_ char *d = NULL, *v = NULL;
	struct vmm_process proc = { 0 };
	struct standin_log l;
	struct bg_err err = { 0 };

	d = fc_sock_dir("/s/vms/x/fc/api.sock");
	assert_string_equal(d, "/s/vms/x/fc");
	v = fc_vsock_path("/s/vms/x/fc/api.sock");
	assert_string_equal(v, "/s/vms/x/fc/" FC_VSOCK_NAME);

	fx->cfg.ctl_sock = sock;
	if (vmm_driver_firecracker.start(&fx->cfg, &proc, &err) < 0)
		fail_msg("start: %s", err.msg);
	assert_true(fs_exists(sock));
	assert_true(fs_exists(vsock));
	log_read(fx, &l);
	assert_string_equal(body_str(log_body(&l, "PUT /vsock"), "uds_path"), vsock);
	log_release(&l);
	assert_int_equal(vmm_driver_firecracker.stop(&fx->cfg, &proc, 10000, &err), 0);
	assert_false(fs_exists(sock));
	assert_false(fs_exists(vsock));
	fx->cfg.ctl_sock = fx->sock;
	assert_nothing_left(fx);
}

/* A field of /proc/<pid>/status as a number ("Uid" gives the real uid). */
static long status_num(pid_t pid, const char *field)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/status", (int)pid);
	_cleanup_free_ char *data = NULL, *key = xasprintf("\n%s:", field);
	const char *p;

	assert_int_equal(fs_read_file(path, 16384, &data, NULL, NULL), 0);
	p = strstr(data, key);
	assert_non_null(p);
	return strtol(p + strlen(key), NULL, 10);
}

/*
 * A VM made before the socket directory existed (its API socket right in its
 * VM dir, where its uid may not create anything) keeps running as root, with
 * the rest of the confinement: no_new_privs, seccomp.
 */
static void test_old_layout_stays_root(void **state)
{
	struct fx *fx = *state;
	struct vmm_sandbox sb;
	struct vmm_process proc = { 0 };
	struct bg_err err = { 0 };
	struct stat st;

	if (geteuid() != 0) {
		test_skip_reason("namespaces need root");
		skip();
	}
	vmm_sandbox_init(&sb, 200000, 4);
	fx->cfg.sandbox = &sb;
	if (vmm_driver_firecracker.start(&fx->cfg, &proc, &err) < 0)
		fail_msg("start: %s", err.msg);
	assert_int_equal(status_num(proc.pid, "Uid"), 0);
	assert_int_equal(status_num(proc.pid, "NoNewPrivs"), 1);
	assert_int_equal(status_num(proc.pid, "Seccomp"), 2);
	/* Nothing was handed to a uid. */
	assert_int_equal(stat(fx->dir, &st), 0);
	assert_int_equal(st.st_gid, 0);
	assert_int_equal(stat(fx->work, &st), 0);
	assert_int_equal(st.st_gid, 0);
	assert_int_equal(vmm_driver_firecracker.stop(&fx->cfg, &proc, 10000, &err), 0);
	fx->cfg.sandbox = NULL;
	assert_nothing_left(fx);
}

static void test_http_client_edges(void **state)
{
	struct fx *fx = *state;
	struct bg_err err = { 0 };
	struct buf big;
	int r;

	/* A response beyond the cap is refused, not buffered. */
	buf_init(&big);
	buf_addf(&big,
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		 "Content-Length: %d\r\n\r\n",
		 FC_RESPONSE_MAX + 4096);
	for (int i = 0; i < FC_RESPONSE_MAX + 4096; i++)
		buf_addch(&big, 'a');
	fake_call(fx->sock, big.data, big.len, &r, &err);
	buf_release(&big);
	assert_int_equal(r, -EMSGSIZE);
	assert_non_null(strstr(err.msg, "GET /: response larger than"));

	/* An error without a fault_message still says what came back. */
	{
		static const char reply[] = "HTTP/1.1 500 Internal Server Error\r\n"
					    "Content-Length: 5\r\n\r\noops!";

		fake_call(fx->sock, reply, sizeof(reply) - 1, &r, &err);
		assert_int_equal(r, -EIO);
		assert_string_equal(err.msg, "GET /: HTTP 500: (no fault_message) oops!");
	}
	/* A 2xx that is not JSON is a protocol error. */
	{
		static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{x!";

		fake_call(fx->sock, reply, sizeof(reply) - 1, &r, &err);
		assert_int_equal(r, -EPROTO);
	}
	/* Nobody listening. */
	{
		struct fc_api api;

		assert_int_equal(fc_api_init(&api, fx->sock, &err), 0);
		r = fc_api_call(&api, "GET", "/", NULL, 1000, NULL, &err);
		fc_api_release(&api);
		assert_int_equal(r, -ECONNREFUSED);
		assert_non_null(strstr(err.msg, "GET /: "));
	}
}

/* Our own, independent look at /dev/kvm. */
static bool kvm_opens(void)
{
	_cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	_cleanup_close_ int vm = -1;

	if (fd < 0 || ioctl(fd, KVM_GET_API_VERSION, 0) != 12)
		return false;
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	return vm >= 0;
}

static void test_available(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *missing = fs_path_join(fx->dir, "no-firecracker");
	_cleanup_free_ char *plain = fs_path_join(fx->dir, "not-executable");
	_cleanup_free_ char *old_path = xstrdup_null(getenv("PATH"));
	struct bg_err why = { 0 };
	bool ok;

	assert_false(vmm_driver_firecracker.available(missing, &why));
	assert_non_null(strstr(why.msg, missing));
	assert_non_null(strstr(why.msg, "No such file or directory"));

	test_write_file(plain, "#!/bin/sh\n");
	assert_int_equal(chmod(plain, 0644), 0);
	bg_err_clear(&why);
	assert_false(vmm_driver_firecracker.available(plain, &why));
	assert_non_null(strstr(why.msg, "is not executable"));

	bg_err_clear(&why);
	assert_false(vmm_driver_firecracker.available(fx->dir, &why));
	assert_non_null(strstr(why.msg, "not a regular file"));

	/* The default name, looked up in a PATH that has no firecracker. */
	setenv("PATH", fx->dir, 1);
	bg_err_clear(&why);
	ok = vmm_driver_firecracker.available(NULL, &why);
	if (old_path)
		setenv("PATH", old_path, 1);
	else
		unsetenv("PATH");
	assert_false(ok);
	assert_string_equal(why.msg, "firecracker binary 'firecracker' not found in PATH");

	/* With a binary present, KVM decides. */
	bg_err_clear(&why);
	ok = vmm_driver_firecracker.available(fx->standin, &why);
	if (!kvm_opens()) {
		assert_false(ok);
		assert_non_null(strstr(why.msg, "KVM unusable"));
	} else if (!ok) {
		assert_non_null(strstr(why.msg, "KVM unusable: KVM_CAP_"));
	}
	printf("available(stand-in) = %s%s%s\n", ok ? "true" : "false", ok ? "" : ": ",
	       ok ? "" : why.msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_start_probe_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_minimal_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_sockets_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe_configuring_then_sigterm, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stop_escalates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_never_appears, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exits_before_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_message_surfaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejection_surfaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dies_mid_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hanging_endpoint_times_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_binary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_client_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_available, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_symlink_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_layout_stays_root, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
