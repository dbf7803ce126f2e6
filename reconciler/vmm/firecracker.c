/*
 * firecracker.c - the Firecracker VMM driver.
 *
 * Owns everything between banger and one firecracker process: it spawns
 * `firecracker --api-sock <ctl_sock> --id <vm id>` in its own session with
 * stdout/stderr (the guest's serial console) appended to the console log,
 * waits for the API socket, then configures the VM with HTTP/1.1 requests on
 * that unix socket and starts it (PUT /logger, /metrics, /machine-config,
 * /boot-source, /drives/{id}, /network-interfaces/{id}, /vsock, then
 * /actions InstanceStart). probe() asks GET /; stop() sends SendCtrlAltDel,
 * then SIGTERM, then SIGKILL. The request bodies follow Firecracker's swagger
 * definition (tests/firecracker/firecracker-swagger.yaml); the tests check
 * them against it with tests/firecracker/firecracker-standin.
 *
 * This is the only module that includes curl/curl.h. Every request has a
 * deadline and every response body is size-capped.
 */
#include "reconciler/vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/vmm/vmm_sandbox.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON, cJSON_Delete)

#define FC_DEFAULT_BINARY "firecracker"

/* Files the driver keeps in vm_dir. */
#define FC_LOG_NAME "firecracker.log"
#define FC_METRICS_NAME "firecracker.metrics"
#define FC_VSOCK_NAME "firecracker.vsock"

/* Firecracker's own kernel arguments, before the guest contract's. reboot=k
 * makes a guest reboot (and ctrl-alt-del) end the firecracker process. */
#define FC_BOOT_ARGS "console=ttyS0 reboot=k panic=1 pci=off"

/* x86_64 CMDLINE_MAX_SIZE in Firecracker, including the NUL. */
#define FC_CMDLINE_MAX 2048

/* Firecracker answers with small JSON documents; anything bigger is refused. */
#define FC_RESPONSE_MAX (64 * 1024)

/* The KVM API version every KVM since Linux 2.6.22 reports. */
#define FC_KVM_API_VERSION 12

/*
 * Deadlines in milliseconds. Constant in the product; the unit tests include
 * this file and shorten them so that failure paths run quickly.
 */
static struct fc_limits {
	int socket_ms;	     /* after spawn, for the API socket to accept connections */
	int request_ms;	     /* one configuration request */
	int probe_ms;	     /* GET / */
	int ctrl_alt_del_ms; /* the SendCtrlAltDel request itself */
	int term_ms;	     /* after SIGTERM, before SIGKILL */
	int kill_ms;	     /* after SIGKILL */
} fc_limits = {
	.socket_ms = 5000,
	.request_ms = 5000,
	.probe_ms = 1000,
	.ctrl_alt_del_ms = 1000,
	.term_ms = 3000,
	.kill_ms = 5000,
};

/* ---- HTTP on the API socket ------------------------------------------- */

struct fc_api {
	CURL *curl;
	struct curl_slist *headers;
	const char *sock;
	char errbuf[CURL_ERROR_SIZE];
};

struct fc_response {
	struct buf body;
	bool too_big;
};

static size_t fc_write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct fc_response *resp = userdata;
	size_t n = size * nmemb;

	if (n > FC_RESPONSE_MAX || resp->body.len + n > FC_RESPONSE_MAX) {
		resp->too_big = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	buf_add(&resp->body, data, n);
	return n;
}

static void fc_api_release(struct fc_api *api)
{
	if (api->curl)
		curl_easy_cleanup(api->curl);
	curl_slist_free_all(api->headers);
	api->curl = NULL;
	api->headers = NULL;
}

static int fc_api_init(struct fc_api *api, const char *sock, struct bg_err *err)
{
	/* "Expect:" spares a 100-continue round trip on larger bodies. */
	static const char *const lines[] = { "Content-Type: application/json",
					     "Accept: application/json", "Expect:" };
	static bool global_done;
	struct sockaddr_un sa;
	struct curl_slist *h = NULL;

	memset(api, 0, sizeof(*api));
	if (strlen(sock) >= sizeof(sa.sun_path))
		return bg_errorf(err, ENAMETOOLONG, "API socket path '%s' is longer than %zu bytes",
				 sock, sizeof(sa.sun_path) - 1);
	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK)
			return bg_errorf(err, ENOMEM, "curl_global_init failed");
		global_done = true;
	}
	api->curl = curl_easy_init();
	if (!api->curl)
		return bg_errorf(err, ENOMEM, "curl_easy_init failed");
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
		struct curl_slist *n = curl_slist_append(h, lines[i]);

		if (!n) {
			curl_slist_free_all(h);
			fc_api_release(api);
			return bg_errorf(err, ENOMEM, "curl_slist_append failed");
		}
		h = n;
	}
	api->headers = h;
	api->sock = sock;
	return 0;
}

static int fc_curl_errno(CURLcode c)
{
	switch (c) {
	case CURLE_OPERATION_TIMEDOUT:
		return ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return ECONNREFUSED;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return ENOMEM;
	default:
		return EIO;
	}
}

/* The fault_message of an error body, or a short excerpt of the body. Owned. */
static char *fc_fault_text(const char *body)
{
	_cleanup_(cJSON_Deletep) cJSON *json = NULL;
	const cJSON *fm;

	json = cJSON_Parse(body);
	fm = cJSON_GetObjectItemCaseSensitive(json, "fault_message");
	if (cJSON_IsString(fm) && fm->valuestring)
		return xstrdup(fm->valuestring);
	if (!*body)
		return xstrdup("(empty body)");
	return xasprintf("(no fault_message) %.200s", body);
}

/*
 * One request: method on path with an optional JSON body, bounded by
 * timeout_ms. A 2xx answer returns 0 and, when ret_json is non-NULL, the
 * parsed body (owned; NULL for an empty body). Anything else fails with a
 * message "<METHOD> <path>: HTTP <status>: <fault_message>" or
 * "<METHOD> <path>: <transport error>".
 */
static int fc_api_call(struct fc_api *api, const char *method, const char *path, const cJSON *body,
		       int timeout_ms, cJSON **ret_json, struct bg_err *err)
{
	_cleanup_free_ char *url = NULL, *payload = NULL;
	_cleanup_close_ int sock_fd = -1;
	struct fc_response resp = { .too_big = false };
	char sock_path[32];
	long status = 0;
	CURLcode c;
	int r = 0;

	/*
	 * The socket's directory may be writable by the VMM's uid: connect to the
	 * socket inode itself, never through a symlink planted in its place.
	 */
	r = vmm_sandbox_sock_path(api->sock, &sock_fd, sock_path);
	if (r < 0)
		return bg_errorf(err, r == -ENOENT ? ECONNREFUSED : -r,
				 "%s %s: API socket '%s': %s", method, path, api->sock,
				 strerror(-r));
	buf_init(&resp.body);
	url = xasprintf("http://localhost%s", path);
	if (body) {
		payload = cJSON_PrintUnformatted(body);
		if (!payload) {
			buf_release(&resp.body);
			return bg_errorf(err, ENOMEM, "%s %s: cannot encode the body", method,
					 path);
		}
	}
	/* reset keeps the live connection: Firecracker serves keep-alive. */
	curl_easy_reset(api->curl);
	api->errbuf[0] = '\0';
	c = curl_easy_setopt(api->curl, CURLOPT_URL, url);
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_UNIX_SOCKET_PATH, sock_path);
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_PROTOCOLS_STR, "http");
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_PROXY, "");
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_NOSIGNAL, 1L);
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_HTTPHEADER, api->headers);
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_ERRORBUFFER, api->errbuf);
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_WRITEFUNCTION, fc_write_cb);
	if (c == CURLE_OK)
		c = curl_easy_setopt(api->curl, CURLOPT_WRITEDATA, &resp);
	if (c == CURLE_OK && strcmp(method, "GET") != 0)
		c = curl_easy_setopt(api->curl, CURLOPT_CUSTOMREQUEST, method);
	if (c == CURLE_OK && payload) {
		c = curl_easy_setopt(api->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
		if (c == CURLE_OK)
			c = curl_easy_setopt(api->curl, CURLOPT_POSTFIELDS, payload);
	}
	if (c != CURLE_OK) {
		r = bg_errorf(err, EINVAL, "%s %s: curl setup: %s", method, path,
			      curl_easy_strerror(c));
		goto out;
	}
	c = curl_easy_perform(api->curl);
	if (c != CURLE_OK) {
		if (resp.too_big)
			r = bg_errorf(err, EMSGSIZE, "%s %s: response larger than %d bytes", method,
				      path, FC_RESPONSE_MAX);
		else
			r = bg_errorf(err, fc_curl_errno(c), "%s %s: %s", method, path,
				      api->errbuf[0] ? api->errbuf : curl_easy_strerror(c));
		goto out;
	}
	(void)curl_easy_getinfo(api->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		_cleanup_free_ char *fault = fc_fault_text(resp.body.data);

		r = bg_errorf(err, status == 400 ? EINVAL : EIO, "%s %s: HTTP %ld: %s", method,
			      path, status, fault);
		goto out;
	}
	if (ret_json) {
		cJSON *json = NULL;

		if (resp.body.len > 0) {
			json = cJSON_ParseWithLength(resp.body.data, resp.body.len);
			if (!json) {
				r = bg_errorf(err, EPROTO, "%s %s: HTTP %ld: the body is not JSON",
					      method, path, status);
				goto out;
			}
		}
		*ret_json = json;
	}
out:
	buf_release(&resp.body);
	return r;
}

/* PUT path with body (consumed). */
static int fc_put(struct fc_api *api, const char *path, cJSON *body, struct bg_err *err)
{
	int r;

	if (!body)
		return bg_errorf(err, ENOMEM, "PUT %s: cannot build the body", path);
	r = fc_api_call(api, "PUT", path, body, fc_limits.request_ms, NULL, err);
	cJSON_Delete(body);
	return r;
}

/* ---- request bodies (Firecracker swagger definitions) ------------------- */

static cJSON *fc_obj(void)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		abort(); /* OOM: as xmalloc */
	return o;
}

static void fc_add_str(cJSON *o, const char *key, const char *val)
{
	if (!cJSON_AddStringToObject(o, key, val))
		abort();
}

static void fc_add_num(cJSON *o, const char *key, double val)
{
	if (!cJSON_AddNumberToObject(o, key, val))
		abort();
}

static void fc_add_bool(cJSON *o, const char *key, bool val)
{
	if (!cJSON_AddBoolToObject(o, key, val))
		abort();
}

/* Logger: log_path, level, show_level, show_log_origin (all optional). */
static cJSON *fc_body_logger(const char *log_path)
{
	cJSON *o = fc_obj();

	fc_add_str(o, "log_path", log_path);
	fc_add_str(o, "level", "Info");
	fc_add_bool(o, "show_level", true);
	fc_add_bool(o, "show_log_origin", false);
	return o;
}

/* Metrics: metrics_path (required). */
static cJSON *fc_body_metrics(const char *metrics_path)
{
	cJSON *o = fc_obj();

	fc_add_str(o, "metrics_path", metrics_path);
	return o;
}

/* MachineConfiguration: vcpu_count (1..32), mem_size_mib (both required). */
static cJSON *fc_body_machine(unsigned vcpus, unsigned memory_mib)
{
	cJSON *o = fc_obj();

	fc_add_num(o, "vcpu_count", vcpus);
	fc_add_num(o, "mem_size_mib", memory_mib);
	return o;
}

/* BootSource: kernel_image_path (required), initrd_path, boot_args. */
static cJSON *fc_body_boot(const char *kernel, const char *initrd, const char *boot_args)
{
	cJSON *o = fc_obj();

	fc_add_str(o, "kernel_image_path", kernel);
	if (initrd)
		fc_add_str(o, "initrd_path", initrd);
	fc_add_str(o, "boot_args", boot_args);
	return o;
}

/* Drive: drive_id, is_root_device (required); path_on_host, is_read_only (virtio-block). */
static cJSON *fc_body_drive(const char *id, const char *path, bool root, bool read_only)
{
	cJSON *o = fc_obj();

	fc_add_str(o, "drive_id", id);
	fc_add_str(o, "path_on_host", path);
	fc_add_bool(o, "is_root_device", root);
	fc_add_bool(o, "is_read_only", read_only);
	return o;
}

/* NetworkInterface: iface_id, host_dev_name (required), guest_mac. */
static cJSON *fc_body_net(const char *iface, const char *tap, const char *mac)
{
	cJSON *o = fc_obj();

	fc_add_str(o, "iface_id", iface);
	fc_add_str(o, "host_dev_name", tap);
	if (mac)
		fc_add_str(o, "guest_mac", mac);
	return o;
}

/* Vsock: guest_cid (>= 3), uds_path (both required). */
static cJSON *fc_body_vsock(uint32_t cid, const char *uds_path)
{
	cJSON *o = fc_obj();

	fc_add_num(o, "guest_cid", cid);
	fc_add_str(o, "uds_path", uds_path);
	return o;
}

/* InstanceActionInfo: action_type (InstanceStart | SendCtrlAltDel | FlushMetrics). */
static cJSON *fc_body_action(const char *action)
{
	cJSON *o = fc_obj();

	fc_add_str(o, "action_type", action);
	return o;
}

/* ---- process and files ------------------------------------------------ */

/* The binary to run: owned path, or NULL with 'why' set. */
static char *fc_find_binary(const char *binary, struct bg_err *why)
{
	const char *name = binary && *binary ? binary : FC_DEFAULT_BINARY;
	char *path = proc_find_in_path(name);
	struct stat st;

	if (!path) {
		if (!strchr(name, '/'))
			bg_errorf(why, ENOENT, "firecracker binary '%s' not found in PATH", name);
		else if (access(name, F_OK) < 0)
			bg_error(why, errno, "firecracker binary '%s'", name);
		else
			bg_errorf(why, EACCES, "firecracker binary '%s' is not executable", name);
		return NULL;
	}
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		bg_errorf(why, EACCES, "firecracker binary '%s' is not a regular file", path);
		free(path);
		return NULL;
	}
	return path;
}

static int fc_unlink(const char *path, struct bg_err *err)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return bg_error(err, errno, "remove '%s'", path);
	return 0;
}

/*
 * Create an empty log or metrics file: Firecracker releases before 1.14 open
 * them without O_CREAT, and all of them write from offset 0 without
 * truncating, so a file kept from an earlier run would keep a stale tail.
 */
static int fc_create_empty(const char *path, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
	if (fd < 0)
		return bg_error(err, errno, "create '%s'", path);
	return 0;
}

static bool fc_socket_accepts(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1, sock_fd = -1;
	char sock_path[32];

	/* As fc_api_call: never through a symlink. */
	if (vmm_sandbox_sock_path(path, &sock_fd, sock_path) < 0)
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

/* The last non-empty line of a file's last 4 KiB, into buf ("" when none). */
static const char *fc_last_line(const char *path, char *line, size_t size)
{
	_cleanup_close_ int fd = -1;
	char tail[4096];
	ssize_t n;
	off_t end;
	char *p, *start;

	line[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return line;
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return line;
	n = pread(fd, tail, sizeof(tail) - 1,
		  end > (off_t)sizeof(tail) - 1 ? end - ((off_t)sizeof(tail) - 1) : 0);
	if (n <= 0)
		return line;
	tail[n] = '\0';
	p = tail + n;
	while (p > tail && (p[-1] == '\n' || p[-1] == '\r' || p[-1] == ' '))
		*--p = '\0';
	start = strrchr(tail, '\n');
	start = start ? start + 1 : tail;
	/* Truncate, and keep terminal control sequences out of error messages. */
	n = (ssize_t)strnlen(start, size - 1);
	for (ssize_t i = 0; i < n; i++)
		line[i] = (unsigned char)start[i] < 0x20 || start[i] == 0x7f ? '?' : start[i];
	line[n] = '\0';
	return line;
}

/* Our child exited on its own: reap it and say how. Returns true when it did. */
static bool fc_child_exited(pid_t pid, int wait_ms, char *how, size_t size)
{
	int64_t deadline = now_mono_ms() + wait_ms;
	int status;

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid) {
			if (WIFEXITED(status))
				snprintf(how, size, "exited with status %d", WEXITSTATUS(status));
			else if (WIFSIGNALED(status))
				snprintf(how, size, "was killed by signal %d", WTERMSIG(status));
			else
				snprintf(how, size, "ended");
			return true;
		}
		if (w < 0 && errno != EINTR)
			return false;
		if (now_mono_ms() >= deadline)
			return false;
		sleep_ms(10);
	}
}

/*
 * Reap pid when it is our child, waiting at most timeout_ms. A killed
 * multi-threaded process (firecracker has API and vCPU threads) shows its main
 * thread as a zombie before the other threads are gone, and only then can it
 * be reaped; waiting here means the process's fds (tap, disks) are closed when
 * stop() returns. Not our child: nothing to do.
 */
static int fc_reap(pid_t pid, int timeout_ms)
{
	int64_t deadline = now_mono_ms() + timeout_ms;

	for (;;) {
		pid_t w = waitpid(pid, NULL, WNOHANG);

		if (w == pid || (w < 0 && errno == ECHILD))
			return 0;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (now_mono_ms() >= deadline)
			return -ETIMEDOUT;
		sleep_ms(10);
	}
}

/* Kill (identity checked) and reap a child we launched; bounded. */
static void fc_kill_and_reap(pid_t pid, uint64_t start_time)
{
	(void)proc_signal(pid, start_time, SIGKILL, NULL);
	(void)proc_wait_gone(pid, start_time, fc_limits.kill_ms);
	(void)fc_reap(pid, fc_limits.kill_ms);
}

/* The directory of the API socket (owned): where Firecracker binds its sockets. */
static char *fc_sock_dir(const char *ctl_sock)
{
	const char *slash = strrchr(ctl_sock, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == ctl_sock)
		return xstrdup("/");
	return xstrndup(ctl_sock, (size_t)(slash - ctl_sock));
}

/* The vsock's unix socket, next to the API socket (owned). */
static char *fc_vsock_path(const char *ctl_sock)
{
	_cleanup_free_ char *dir = fc_sock_dir(ctl_sock);

	return fs_path_join(dir, FC_VSOCK_NAME);
}

static void fc_remove_sockets(const struct vmm_config *cfg)
{
	_cleanup_free_ char *vsock = fc_vsock_path(cfg->ctl_sock);

	/* unlink() never follows a symlink the VMM uid may have put there. */
	(void)fc_unlink(cfg->ctl_sock, NULL);
	(void)fc_unlink(vsock, NULL);
}

/*
 * Wait until the API socket accepts a connection, for at most timeout_ms,
 * polling after 1, 2, 4, 8 ms and then every 10 ms: Firecracker binds it a
 * few ms after exec, and a fixed 10 ms poll cost 5 ms on average of every
 * VM's start (bench/README.md, P1). Stops early when the child exits (and
 * reaps it: *ret_reaped is set).
 */
static int fc_wait_socket(const struct vmm_config *cfg, pid_t pid, int timeout_ms, bool *ret_reaped,
			  struct bg_err *err)
{
	int64_t deadline = now_mono_ms() + timeout_ms;
	char how[64], line[256];
	int pause_ms = 1;

	for (;;) {
		if (fc_socket_accepts(cfg->ctl_sock))
			return 0;
		if (fc_child_exited(pid, 0, how, sizeof(how))) {
			*ret_reaped = true;
			fc_last_line(cfg->console_log, line, sizeof(line));
			return bg_errorf(err, ESRCH,
					 "firecracker %s before its API socket '%s' appeared%s%s",
					 how, cfg->ctl_sock, *line ? ": " : "", line);
		}
		if (now_mono_ms() >= deadline)
			return bg_errorf(err, ETIMEDOUT,
					 "API socket '%s' did not accept connections within %d ms",
					 cfg->ctl_sock, timeout_ms);
		sleep_ms(pause_ms);
		pause_ms = pause_ms * 2 > 10 ? 10 : pause_ms * 2;
	}
}

/* ---- the driver ------------------------------------------------------- */

static int fc_check_config(const struct vmm_config *cfg, struct bg_err *err)
{
	struct sockaddr_un sa;
	const struct {
		const char *name, *value;
	} required[] = {
		{ "ctl_sock", cfg->ctl_sock },	     { "vm_dir", cfg->vm_dir },
		{ "console_log", cfg->console_log }, { "kernel", cfg->kernel },
		{ "root_disk", cfg->root_disk },
	};

	for (size_t i = 0; i < ARRAY_SIZE(required); i++)
		if (!required[i].value || !*required[i].value)
			return bg_errorf(err, EINVAL, "firecracker: no %s given", required[i].name);
	if (cfg->vcpus < 1 || cfg->memory_mib < 1)
		return bg_errorf(err, EINVAL, "firecracker: vcpus and memory must be positive");
	if (strlen(cfg->ctl_sock) >= sizeof(sa.sun_path))
		return bg_errorf(err, ENAMETOOLONG, "API socket path '%s' is longer than %zu bytes",
				 cfg->ctl_sock, sizeof(sa.sun_path) - 1);
	if (cfg->tap && !*cfg->tap)
		return bg_errorf(err, EINVAL, "firecracker: empty tap name");
	return 0;
}

/* Send the whole configuration, then InstanceStart. */
static int fc_configure(const struct vmm_config *cfg, const char *kernel, const char *initrd,
			const char *log_path, const char *metrics_path, const char *vsock_path,
			const char *boot_args, struct bg_err *err)
{
	struct fc_api api;
	int r;

	r = fc_api_init(&api, cfg->ctl_sock, err);
	if (r < 0)
		return r;
	r = fc_put(&api, "/logger", fc_body_logger(log_path), err);
	if (r >= 0)
		r = fc_put(&api, "/metrics", fc_body_metrics(metrics_path), err);
	if (r >= 0)
		r = fc_put(&api, "/machine-config", fc_body_machine(cfg->vcpus, cfg->memory_mib),
			   err);
	if (r >= 0)
		r = fc_put(&api, "/boot-source", fc_body_boot(kernel, initrd, boot_args), err);
	if (r >= 0)
		r = fc_put(&api, "/drives/rootfs",
			   fc_body_drive("rootfs", cfg->root_disk, true, false), err);
	if (r >= 0 && cfg->work_disk)
		r = fc_put(&api, "/drives/work",
			   fc_body_drive("work", cfg->work_disk, false, false), err);
	if (r >= 0 && cfg->seed_disk)
		r = fc_put(&api, "/drives/seed", fc_body_drive("seed", cfg->seed_disk, false, true),
			   err);
	if (r >= 0 && cfg->tap)
		r = fc_put(&api, "/network-interfaces/eth0",
			   fc_body_net("eth0", cfg->tap, cfg->mac), err);
	if (r >= 0 && cfg->cid != 0)
		r = fc_put(&api, "/vsock", fc_body_vsock(cfg->cid, vsock_path), err);
	if (r >= 0)
		r = fc_put(&api, "/actions", fc_body_action("InstanceStart"), err);
	fc_api_release(&api);
	return r;
}

/*
 * What a confined Firecracker gets: what Firecracker's jailer would set up,
 * minus the chroot. It runs as the VM's uid and opens its files by path, so:
 * the VM dir becomes searchable by that uid (0710 root:<uid>); the sockets go
 * to a directory of their own (root:<uid> 0770, the only place it may
 * create anything); the log, metrics and disks are granted to its group
 * (root:<uid>, 0660; the seed 0640), so it can neither replace them nor
 * change their mode; the tap is owned by the uid (Firecracker attaches by
 * name); the kernel and initrd are sealed memfd copies it reads through
 * /proc/self/fd/N (*ret_kernel_fd, *ret_initrd_fd; -1 when none).
 */
static int fc_confine(const struct vmm_config *cfg, uid_t uid, const char *log_path,
		      const char *metrics_path, int *ret_kernel_fd, int *ret_initrd_fd,
		      struct bg_err *err)
{
	_cleanup_free_ char *sock_dir = fc_sock_dir(cfg->ctl_sock);
	_cleanup_close_ int kernel_fd = -1, initrd_fd = -1;
	const struct {
		const char *path;
		mode_t mode;
	} files[] = {
		{ log_path, 0660 },	  { metrics_path, 0660 },   { cfg->root_disk, 0660 },
		{ cfg->work_disk, 0660 }, { cfg->seed_disk, 0640 },
	};
	int r;

	r = vmm_sandbox_traverse(cfg->vm_dir, uid, err);
	if (r >= 0)
		r = vmm_sandbox_sock_dir(sock_dir, uid, err);
	for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(files); i++)
		if (files[i].path)
			r = vmm_sandbox_grant_file(files[i].path, uid, files[i].mode, err);
	if (r >= 0 && cfg->tap)
		r = vmm_sandbox_tap_own(cfg->tap, uid, err);
	if (r >= 0 && (r = kernel_fd = vmm_sandbox_memfd_copy(cfg->kernel, err)) >= 0 &&
	    cfg->initrd)
		r = initrd_fd = vmm_sandbox_memfd_copy(cfg->initrd, err);
	if (r < 0)
		return bg_err_wrap(err, "firecracker sandbox");
	*ret_kernel_fd = TAKE_FD(kernel_fd);
	*ret_initrd_fd = TAKE_FD(initrd_fd);
	return 0;
}

static int fc_start(const struct vmm_config *cfg, struct vmm_process *ret, struct bg_err *err)
{
	struct proc_spawn_opts opts = PROC_SPAWN_OPTS_INIT;
	_cleanup_free_ char *binary = NULL, *log_path = NULL, *metrics_path = NULL;
	_cleanup_free_ char *vsock_path = NULL, *boot_args = NULL, *sock_dir = NULL;
	_cleanup_free_ char *kernel = NULL, *initrd = NULL;
	_cleanup_close_ int console_fd = -1, kernel_fd = -1, initrd_fd = -1;
	const char *argv[6] = { NULL };
	int keep[2];
	uint64_t start_time = 0;
	bool reaped = false, own_uid = false;
	uid_t uid = 0;
	pid_t pid;
	int r;

	r = fc_check_config(cfg, err);
	if (r < 0)
		return r;
	binary = fc_find_binary(cfg->binary, err);
	if (!binary)
		return err ? err->code : -ENOENT;
	boot_args = cfg->guest_args && *cfg->guest_args
			    ? xasprintf("%s %s", FC_BOOT_ARGS, cfg->guest_args)
			    : xstrdup(FC_BOOT_ARGS);
	if (strlen(boot_args) >= FC_CMDLINE_MAX)
		return bg_errorf(err, E2BIG,
				 "kernel command line is %zu bytes, Firecracker takes %d",
				 strlen(boot_args), FC_CMDLINE_MAX - 1);
	log_path = fs_path_join(cfg->vm_dir, FC_LOG_NAME);
	metrics_path = fs_path_join(cfg->vm_dir, FC_METRICS_NAME);
	vsock_path = fc_vsock_path(cfg->ctl_sock);
	sock_dir = fc_sock_dir(cfg->ctl_sock);
	/*
	 * Its own uid needs a socket directory of its own: a VM made before
	 * banger put its API socket in one keeps running as root (confined
	 * otherwise) until it is recreated.
	 */
	own_uid = vmm_sandbox_enabled(cfg->sandbox) && strcmp(sock_dir, cfg->vm_dir) != 0;
	if (strcmp(sock_dir, cfg->vm_dir) != 0 && mkdir(sock_dir, 0700) < 0 && errno != EEXIST)
		return bg_error(err, errno, "mkdir '%s'", sock_dir);
	{
		struct sockaddr_un sa;

		if (cfg->cid != 0 && strlen(vsock_path) >= sizeof(sa.sun_path))
			return bg_errorf(err, ENAMETOOLONG,
					 "vsock socket path '%s' is longer than %zu bytes",
					 vsock_path, sizeof(sa.sun_path) - 1);
	}

	/* Firecracker refuses to bind over stale sockets from an earlier run. */
	r = fc_unlink(cfg->ctl_sock, err);
	if (r >= 0)
		r = fc_unlink(vsock_path, err);
	if (r >= 0)
		r = fc_create_empty(log_path, err);
	if (r >= 0)
		r = fc_create_empty(metrics_path, err);
	if (r < 0)
		return r;
	if (own_uid) {
		r = vmm_sandbox_uid(cfg->sandbox, cfg->vm_dir, &uid, err);
		if (r < 0)
			return bg_err_wrap(err, "firecracker");
		r = fc_confine(cfg, uid, log_path, metrics_path, &kernel_fd, &initrd_fd, err);
		if (r < 0)
			return r;
		kernel = xasprintf("/proc/self/fd/%d", kernel_fd);
		keep[0] = kernel_fd;
		opts.keep_fds = keep;
		opts.n_keep_fds = 1;
		if (initrd_fd >= 0) {
			initrd = xasprintf("/proc/self/fd/%d", initrd_fd);
			keep[opts.n_keep_fds++] = initrd_fd;
		}
	} else {
		kernel = xstrdup(cfg->kernel);
		initrd = cfg->initrd ? xstrdup(cfg->initrd) : NULL;
	}
	console_fd =
		open(cfg->console_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
	if (console_fd < 0)
		return bg_error(err, errno, "open console log '%s'", cfg->console_log);

	argv[0] = binary;
	argv[1] = "--api-sock";
	argv[2] = cfg->ctl_sock;
	if (cfg->id && *cfg->id) {
		argv[3] = "--id";
		argv[4] = cfg->id;
	}
	opts.new_session = true;
	opts.stdout_fd = console_fd;
	opts.stderr_fd = console_fd;
	if (vmm_sandbox_enabled(cfg->sandbox))
		/*
		 * Without the jailer's chroot and cgroup: its uid (fc_confine),
		 * no_new_privs, the seccomp deny-list, mount/ipc/uts namespaces. Not
		 * a network namespace (it attaches to the tap by name) nor a pid one
		 * (as pid 1 it would ignore the SIGTERM of stop()).
		 */
		vmm_sandbox_spawn_opts(cfg->sandbox, uid, CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS,
				       &opts);
	r = proc_spawn(argv, &opts, &pid, err);
	/* The child holds its own copies of the memfds: the paths stay valid there. */
	closep(&kernel_fd);
	closep(&initrd_fd);
	kernel_fd = initrd_fd = -1;
	if (r < 0)
		return r;
	r = proc_start_time(pid, &start_time, err);
	if (r >= 0)
		r = fc_wait_socket(cfg, pid, fc_limits.socket_ms, &reaped, err);
	if (r >= 0)
		r = fc_configure(cfg, kernel, initrd, log_path, metrics_path, vsock_path, boot_args,
				 err);
	if (r < 0) {
		char how[64], line[256];

		/* Say so when the VMM died under us: the console log holds its last words. */
		if (!reaped && (r == -ECONNREFUSED || r == -ECONNRESET) &&
		    fc_child_exited(pid, 500, how, sizeof(how))) {
			reaped = true;
			fc_last_line(cfg->console_log, line, sizeof(line));
			if (*line)
				bg_err_wrap(err,
					    "firecracker %s during configuration (console: '%s')",
					    how, line);
			else
				bg_err_wrap(err, "firecracker %s during configuration", how);
		}
		if (!reaped)
			fc_kill_and_reap(pid, start_time);
		fc_remove_sockets(cfg);
		return r;
	}
	ret->pid = pid;
	ret->start_time = start_time;
	return 0;
}

static int fc_probe(const struct vmm_config *cfg, const struct vmm_process *proc,
		    enum vmm_guest_state *ret, struct bg_err *err)
{
	_cleanup_(cJSON_Deletep) cJSON *info = NULL;
	struct bg_err call_err = { 0 };
	const cJSON *state, *id;
	struct fc_api api;
	int r;

	if (!cfg->ctl_sock)
		return bg_errorf(err, EINVAL, "firecracker: no ctl_sock given");
	r = fc_api_init(&api, cfg->ctl_sock, err);
	if (r < 0)
		return r;
	r = fc_api_call(&api, "GET", "/", NULL, fc_limits.probe_ms, &info, &call_err);
	fc_api_release(&api);
	if (r < 0) {
		/* No answer from a process that is gone is an answer: nothing to ask. */
		if (!proc || !proc_identity_matches(proc->pid, proc->start_time)) {
			*ret = VMM_GUEST_UNKNOWN;
			return 0;
		}
		return bg_errorf(err, -r, "%s", call_err.msg);
	}
	state = cJSON_GetObjectItemCaseSensitive(info, "state");
	id = cJSON_GetObjectItemCaseSensitive(info, "id");
	if (!cJSON_IsString(state) || !state->valuestring)
		return bg_errorf(err, EPROTO, "GET /: no InstanceInfo.state in the answer");
	if (cfg->id && *cfg->id && cJSON_IsString(id) && id->valuestring &&
	    strcmp(id->valuestring, cfg->id) != 0)
		return bg_errorf(err, EPROTO, "API socket '%s' answers for instance '%s', not '%s'",
				 cfg->ctl_sock, id->valuestring, cfg->id);
	if (strcmp(state->valuestring, "Not started") == 0)
		*ret = VMM_GUEST_CONFIGURING;
	else if (strcmp(state->valuestring, "Running") == 0)
		*ret = VMM_GUEST_RUNNING;
	else if (strcmp(state->valuestring, "Paused") == 0)
		*ret = VMM_GUEST_PAUSED;
	else
		return bg_errorf(err, EPROTO, "GET /: unknown instance state '%.64s'",
				 state->valuestring);
	return 0;
}

static int fc_shutdown(const struct vmm_config *cfg, const struct vmm_process *proc,
		       struct bg_err *err)
{
	_cleanup_(cJSON_Deletep) cJSON *body = NULL;
	struct fc_api api;
	int r;

	if (!proc || proc->pid <= 0 || !cfg->ctl_sock)
		return bg_errorf(err, EINVAL, "firecracker: no process to shut down");
	/* The guest maps ctrl-alt-del to reboot and reboot=k makes firecracker exit. */
	r = fc_api_init(&api, cfg->ctl_sock, err);
	if (r < 0)
		return r;
	body = fc_body_action("SendCtrlAltDel");
	r = fc_api_call(&api, "PUT", "/actions", body, fc_limits.ctrl_alt_del_ms, NULL, err);
	fc_api_release(&api);
	return r;
}

static int fc_stop(const struct vmm_config *cfg, const struct vmm_process *proc, int grace_ms,
		   struct bg_err *err)
{
	int64_t deadline = now_mono_ms() + (grace_ms > 0 ? grace_ms : 0);
	struct bg_err sig_err = { 0 };
	int r;

	if (!proc || proc->pid <= 0)
		return bg_errorf(err, EINVAL, "firecracker: no process to stop");
	if (!proc_identity_matches(proc->pid, proc->start_time))
		goto gone;
	if (grace_ms > 0 && cfg->ctl_sock) {
		struct fc_api api;
		int left;

		/*
		 * The guest maps ctrl-alt-del to reboot and reboot=k makes firecracker
		 * exit. A refusal (not started yet, no keyboard) goes straight to SIGTERM.
		 */
		r = fc_api_init(&api, cfg->ctl_sock, NULL);
		if (r >= 0) {
			_cleanup_(cJSON_Deletep) cJSON *body = fc_body_action("SendCtrlAltDel");

			r = fc_api_call(&api, "PUT", "/actions", body,
					grace_ms < fc_limits.ctrl_alt_del_ms
						? grace_ms
						: fc_limits.ctrl_alt_del_ms,
					NULL, NULL);
			fc_api_release(&api);
		}
		left = (int)(deadline - now_mono_ms());
		if (r >= 0 && proc_wait_gone(proc->pid, proc->start_time, left > 0 ? left : 0) == 0)
			goto gone;
	}
	r = proc_signal(proc->pid, proc->start_time, SIGTERM, &sig_err);
	if (r < 0 && r != -ESRCH)
		return bg_errorf(err, -r, "%s", sig_err.msg);
	if (proc_wait_gone(proc->pid, proc->start_time, fc_limits.term_ms) == 0)
		goto gone;
	r = proc_signal(proc->pid, proc->start_time, SIGKILL, &sig_err);
	if (r < 0 && r != -ESRCH)
		return bg_errorf(err, -r, "%s", sig_err.msg);
	if (proc_wait_gone(proc->pid, proc->start_time, fc_limits.kill_ms) < 0)
		return bg_errorf(err, ETIMEDOUT, "firecracker pid %d is still there after SIGKILL",
				 (int)proc->pid);
gone:
	r = fc_reap(proc->pid, fc_limits.kill_ms);
	if (r < 0)
		return bg_error(err, r, "reap firecracker pid %d", (int)proc->pid);
	if (cfg->ctl_sock)
		fc_remove_sockets(cfg);
	return 0;
}

/* ---- availability ------------------------------------------------------ */

static bool fc_kvm_usable(struct bg_err *why)
{
	_cleanup_close_ int kvm = -1, vm = -1;
	int version;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		bg_error(why, errno, "KVM unusable: open /dev/kvm");
		return false;
	}
	version = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (version != FC_KVM_API_VERSION) {
		if (version < 0)
			bg_error(why, errno, "KVM unusable: KVM_GET_API_VERSION");
		else
			bg_errorf(why, ENOTSUP, "KVM unusable: API version %d, expected %d",
				  version, FC_KVM_API_VERSION);
		return false;
	}
#if defined(__x86_64__)
	{
		/* The capabilities Firecracker checks at startup (arch/x86_64/kvm.rs). */
		static const struct {
			int cap;
			const char *name;
		} caps[] = {
			{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
			{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
			{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
			{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
			{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
			{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
			{ KVM_CAP_PIT_STATE2, "KVM_CAP_PIT_STATE2" },
			{ KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK" },
			{ KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS" },
			{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
			{ KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS" },
			{ KVM_CAP_XCRS, "KVM_CAP_XCRS" },
			{ KVM_CAP_XSAVE, "KVM_CAP_XSAVE" },
			{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
		};

		for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
			if (ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
				bg_errorf(why, ENOTSUP, "KVM unusable: %s is missing",
					  caps[i].name);
				return false;
			}
	}
#endif
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		bg_error(why, errno, "KVM unusable: KVM_CREATE_VM");
		return false;
	}
	/* KVM_CREATE_VM fds are O_CLOEXEC already; closed by cleanup. */
	return true;
}

static bool fc_available(const char *binary, struct bg_err *why)
{
	_cleanup_free_ char *path = fc_find_binary(binary, why);

	if (!path)
		return false;
	return fc_kvm_usable(why);
}

const struct vmm_driver vmm_driver_firecracker = {
	.name = "firecracker",
	.available = fc_available,
	.start = fc_start,
	.probe = fc_probe,
	.shutdown = fc_shutdown,
	.stop = fc_stop,
};
