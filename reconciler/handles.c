/*
 * handles.c - a VM's kernel objects as they are now: the handle cache,
 * <vm dir>/handles.json (cJSON, atomic, 0600), rediscovery from /proc and
 * /sys, and vm_liveness(), the only liveness test; see handles.h.
 *
 * handles.json is a cache, never the truth: a file that does not parse or
 * holds out-of-range values is reported as corrupt and rebuilt from the OS.
 */
#include "reconciler/handles.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/xalloc.h"

#define HANDLES_FILE "handles.json"
#define HANDLES_FORMAT_VERSION 1
#define HANDLES_FILE_MAX (64 * 1024)
/* Linux PID_MAX_LIMIT (4M, include/linux/threads.h). */
#define HANDLES_PID_MAX (4 * 1024 * 1024)
/* A sysfs attribute we read (backing_file, dm/name) is at most a page. */
#define SYSFS_ATTR_MAX 4096
#define DELETED_SUFFIX " (deleted)"
/* Integers JSON (a double) carries exactly: 2^53. */
#define HANDLES_JSON_INT_MAX 9007199254740992ULL

/* Root of the sysfs view rediscovery reads; tests point it at a fake tree. */
static const char *sysfs_root = "/sys";

static void closedirp(DIR **d)
{
	if (*d)
		(void)closedir(*d);
}

void handles_tap_name(const char *id, char ret[16])
{
	snprintf(ret, 16, "bg%.8s", id);
}

void handles_dm_name(const char *id, char ret[64])
{
	snprintf(ret, 64, "banger-%.8s", id);
}

void handles_dm_uuid(const char *id, char ret[64])
{
	snprintf(ret, 64, "BANGER-%.8s", id);
}

/* ---- liveness ----------------------------------------------------------------------- */

enum vm_liveness vm_liveness(const struct vm_handles *h)
{
	if (!h || h->pid <= 0)
		return VM_LIVENESS_NONE;
	if (h->start_time != 0 && proc_identity_matches(h->pid, h->start_time))
		return VM_LIVENESS_ALIVE;
	/*
	 * The pid runs but is not provably ours: another start time, or no
	 * start time recorded (then it can't be trusted, so never signalled).
	 */
	if (proc_identity_matches(h->pid, 0))
		return VM_LIVENESS_REUSED;
	return VM_LIVENESS_DEAD;
}

bool vm_alive(const struct vm_handles *h)
{
	return vm_liveness(h) == VM_LIVENESS_ALIVE;
}

/* ---- handles.json -------------------------------------------------------------------- */

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* "" or "/dev/loop<N>". */
static bool valid_loop(const char *s)
{
	return !*s || (strncmp(s, "/dev/loop", 9) == 0 && all_digits(s + 9));
}

/* The names we create: "bg" / "banger-" followed by letters, digits and '-'. */
static bool valid_name(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);

	if (!*s)
		return true;
	if (strncmp(s, prefix, n) != 0 || !s[n])
		return false;
	for (s += n; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-')
			return false;
	return true;
}

/* Check that handles hold only what banger itself could have put there. */
static int check_handles(const struct vm_handles *h, struct bg_err *err)
{
	if (h->pid < 0 || h->pid > HANDLES_PID_MAX)
		return bg_errorf(err, EBADMSG, "pid %d out of range", (int)h->pid);
	if (h->pid == 0 && h->start_time != 0)
		return bg_errorf(err, EBADMSG, "start_time without a pid");
	if (h->pid != 0 && h->start_time == 0)
		return bg_errorf(err, EBADMSG, "pid %d without a start_time", (int)h->pid);
	if (h->start_time > HANDLES_JSON_INT_MAX)
		return bg_errorf(err, EBADMSG, "start_time out of range");
	if (memchr(h->tap, '\0', sizeof(h->tap)) == NULL || !valid_name(h->tap, "bg"))
		return bg_errorf(err, EBADMSG, "invalid tap name");
	if (memchr(h->base_loop, '\0', sizeof(h->base_loop)) == NULL || !valid_loop(h->base_loop))
		return bg_errorf(err, EBADMSG, "invalid base_loop '%s'", h->base_loop);
	if (memchr(h->cow_loop, '\0', sizeof(h->cow_loop)) == NULL || !valid_loop(h->cow_loop))
		return bg_errorf(err, EBADMSG, "invalid cow_loop '%s'", h->cow_loop);
	if (memchr(h->dm_name, '\0', sizeof(h->dm_name)) == NULL ||
	    !valid_name(h->dm_name, "banger-"))
		return bg_errorf(err, EBADMSG, "invalid dm_name '%s'", h->dm_name);
	if (memchr(h->dm_dev, '\0', sizeof(h->dm_dev)) == NULL)
		return bg_errorf(err, EBADMSG, "invalid dm_dev");
	if (h->dm_dev[0] && (strncmp(h->dm_dev, "/dev/mapper/", 12) != 0 ||
			     strcmp(h->dm_dev + 12, h->dm_name) != 0))
		return bg_errorf(err, EBADMSG, "dm_dev '%s' does not match dm_name '%s'", h->dm_dev,
				 h->dm_name);
	return 0;
}

static int json_uint(const cJSON *root, const char *key, uint64_t max, uint64_t *ret,
		     struct bg_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	double d;

	*ret = 0;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v))
		return bg_errorf(err, EBADMSG, "'%s' is not a number", key);
	d = v->valuedouble;
	/* Integral, non-negative, exactly representable (< 2^53) and within range. */
	if (!(d >= 0) || d > (double)HANDLES_JSON_INT_MAX || d != (double)(uint64_t)d ||
	    (uint64_t)d > max)
		return bg_errorf(err, EBADMSG, "'%s' is out of range", key);
	*ret = (uint64_t)d;
	return 0;
}

static int json_str(const cJSON *root, const char *key, char *buf, size_t size, struct bg_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	size_t n;

	buf[0] = '\0';
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v) || !v->valuestring)
		return bg_errorf(err, EBADMSG, "'%s' is not a string", key);
	n = strlen(v->valuestring);
	if (n >= size)
		return bg_errorf(err, EBADMSG, "'%s' is too long", key);
	memcpy(buf, v->valuestring, n + 1);
	return 0;
}

int handles_parse(const char *data, size_t len, struct vm_handles *ret, struct bg_err *err)
{
	_cleanup_free_ char *copy = NULL;
	struct vm_handles h = { 0 };
	uint64_t pid, start, version;
	cJSON *root;
	int r;

	if (len > HANDLES_FILE_MAX)
		return bg_errorf(err, EBADMSG, "too large (%zu bytes)", len);
	if (memchr(data, '\0', len))
		return bg_errorf(err, EBADMSG, "NUL byte in JSON");
	copy = xstrndup(data, len);
	/* len + 1 takes the NUL in: cJSON then rejects anything after the value. */
	root = cJSON_ParseWithLengthOpts(copy, len + 1, NULL, true);
	if (!root)
		return bg_errorf(err, EBADMSG, "not valid JSON");
	if (!cJSON_IsObject(root)) {
		r = bg_errorf(err, EBADMSG, "not a JSON object");
		goto out;
	}
	r = json_uint(root, "version", UINT32_MAX, &version, err);
	if (r < 0)
		goto out;
	if (version != HANDLES_FORMAT_VERSION) {
		r = bg_errorf(err, EBADMSG, "unknown format version %" PRIu64, version);
		goto out;
	}
	if ((r = json_uint(root, "pid", HANDLES_PID_MAX, &pid, err)) < 0 ||
	    (r = json_uint(root, "start_time", UINT64_MAX, &start, err)) < 0 ||
	    (r = json_str(root, "tap", h.tap, sizeof(h.tap), err)) < 0 ||
	    (r = json_str(root, "base_loop", h.base_loop, sizeof(h.base_loop), err)) < 0 ||
	    (r = json_str(root, "cow_loop", h.cow_loop, sizeof(h.cow_loop), err)) < 0 ||
	    (r = json_str(root, "dm_name", h.dm_name, sizeof(h.dm_name), err)) < 0 ||
	    (r = json_str(root, "dm_dev", h.dm_dev, sizeof(h.dm_dev), err)) < 0)
		goto out;
	h.pid = (pid_t)pid;
	h.start_time = start;
	r = check_handles(&h, err);
	if (r < 0)
		goto out;
	*ret = h;
out:
	cJSON_Delete(root);
	return r;
}

static char *handles_path(const char *vm_dir)
{
	return fs_path_join(vm_dir, HANDLES_FILE);
}

int handles_load(const char *vm_dir, struct vm_handles *ret, struct bg_err *err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r;

	if (!vm_dir)
		return bg_errorf(err, EINVAL, "no VM directory");
	path = handles_path(vm_dir);
	r = fs_read_file(path, HANDLES_FILE_MAX, &data, &len, err);
	if (r == -EFBIG)
		return bg_errorf(err, EBADMSG, "'%s': larger than %d bytes", path,
				 HANDLES_FILE_MAX);
	if (r < 0)
		return r;
	r = handles_parse(data, len, ret, err);
	if (r < 0)
		return bg_err_wrap(err, "'%s'", path);
	return 0;
}

int handles_save(const char *vm_dir, const struct vm_handles *h, struct bg_err *err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *text = NULL;
	cJSON *root;
	int r;

	if (!vm_dir || !h)
		return bg_errorf(err, EINVAL, "handles_save: invalid arguments");
	r = check_handles(h, err);
	if (r < 0)
		return bg_err_wrap(err, "refusing to save handles");
	path = handles_path(vm_dir);
	root = cJSON_CreateObject();
	if (!root)
		abort(); /* out of memory, as xmalloc() */
	cJSON_AddNumberToObject(root, "version", HANDLES_FORMAT_VERSION);
	cJSON_AddNumberToObject(root, "pid", h->pid);
	cJSON_AddNumberToObject(root, "start_time", (double)h->start_time);
	cJSON_AddStringToObject(root, "tap", h->tap);
	cJSON_AddStringToObject(root, "base_loop", h->base_loop);
	cJSON_AddStringToObject(root, "cow_loop", h->cow_loop);
	cJSON_AddStringToObject(root, "dm_name", h->dm_name);
	cJSON_AddStringToObject(root, "dm_dev", h->dm_dev);
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		abort();
	{
		/* A trailing newline for people who cat the file. */
		char *t = xasprintf("%s\n", text);

		free(text);
		text = t;
	}
	return fs_write_atomic(path, text, strlen(text), 0600, err);
}

int handles_remove(const char *vm_dir, struct bg_err *err)
{
	_cleanup_free_ char *path = NULL;

	if (!vm_dir)
		return 0;
	path = handles_path(vm_dir);
	if (unlink(path) < 0) {
		if (errno == ENOENT)
			return 0;
		return bg_error(err, errno, "remove '%s'", path);
	}
	return fs_fsync_parent(path, err);
}

/* ---- rediscovery -------------------------------------------------------------------- */

/*
 * Does argument 'arg' name the socket 'sock'? Either it is the path, or it
 * contains it delimited on the left by ':' or '=' and on the right by ',' or
 * the end ("unix:<path>,server,nowait", "path=<path>", "--api-sock=<path>").
 */
static bool arg_names_socket(const char *arg, const char *sock, size_t sock_len)
{
	const char *p = arg;

	if (strcmp(arg, sock) == 0)
		return true;
	while ((p = strstr(p, sock))) {
		char before = p == arg ? '\0' : p[-1];
		char after = p[sock_len];

		if ((before == ':' || before == '=') && (after == '\0' || after == ','))
			return true;
		p++;
	}
	return false;
}

static bool cmdline_names_socket(const char *cmd, size_t len, const char *sock)
{
	size_t sock_len = strlen(sock);

	for (size_t off = 0; off < len;) {
		const char *arg = cmd + off;
		size_t n = strnlen(arg, len - off);

		if (n >= sock_len && arg[n] == '\0' && arg_names_socket(arg, sock, sock_len))
			return true;
		off += n + 1;
	}
	return false;
}

static bool parse_pid(const char *s, pid_t *ret)
{
	char *end;
	long v;

	if (!all_digits(s))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v <= 0 || v > HANDLES_PID_MAX)
		return false;
	*ret = (pid_t)v;
	return true;
}

/* The real and effective uid of pid, from /proc/<pid>/status. */
static int status_uids(pid_t pid, uid_t *ret_ruid, uid_t *ret_euid)
{
	_cleanup_free_ char *data = NULL;
	char path[64];
	const char *p;
	unsigned long r, e;
	size_t len;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (fs_read_file(path, 16 * 1024, &data, &len, NULL) < 0)
		return -ENOENT;
	p = strstr(data, "\nUid:");
	if (!p || sscanf(p + 5, "%lu %lu", &r, &e) != 2)
		return -EBADMSG;
	*ret_ruid = (uid_t)r;
	*ret_euid = (uid_t)e;
	return 0;
}

/*
 * Is pid allowed to be the VMM? Run by root or by the VM's own VMM uid (real
 * and effective), and (when known) executing the configured binary. A local
 * user can name any socket in a command line, but can neither take another
 * uid nor run a root-owned binary as root.
 */
static bool vmm_candidate(pid_t pid, const struct handles_probe *p, const struct stat *exe)
{
	_cleanup_free_ char *real = NULL;
	char path[64], link[PATH_MAX];
	struct stat st;
	uid_t ruid, euid;
	ssize_t n;

	if (status_uids(pid, &ruid, &euid) < 0 || ruid != euid)
		return false;
	if (euid != 0 && (p->vmm_uid == 0 || euid != p->vmm_uid))
		return false;
	if (!exe)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	if (stat(path, &st) == 0 && st.st_dev == exe->st_dev && st.st_ino == exe->st_ino)
		return true;
	/*
	 * The binary was replaced since (a package upgrade): the old VMM runs the
	 * deleted file, at the path only root could write.
	 */
	n = readlink(path, link, sizeof(link) - 1);
	real = p->vmm_binary ? realpath(p->vmm_binary, NULL) : NULL;
	if (n <= 0 || !real)
		return false;
	link[n] = '\0';
	return strncmp(link, real, strlen(real)) == 0 &&
	       strcmp(link + strlen(real), DELETED_SUFFIX) == 0;
}

/*
 * The configured VMM binary to compare /proc/<pid>/exe with, into *ret_st;
 * false when there is none to compare: not given, or an interpreter script
 * ("#!", the test stand-ins and wrappers), whose process runs the interpreter
 * or whatever the script execs, never the script itself.
 */
static bool vmm_exe(const char *binary, struct stat *ret_st)
{
	_cleanup_close_ int fd = -1;
	char magic[2];

	if (!binary || !*binary)
		return false;
	fd = open(binary, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, ret_st) < 0)
		return false;
	if (pread(fd, magic, 2, 0) == 2 && magic[0] == '#' && magic[1] == '!') {
		log_debug("VMM binary '%s' is a script: rediscovery checks uid and start time, "
			  "not the executable",
			  binary);
		return false;
	}
	return true;
}

/*
 * The oldest live process whose argv names the socket, run by root or the
 * VM's VMM uid, executing the configured binary, started at expected_start
 * if set and not before not_before.
 */
static int find_vmm(const struct handles_probe *p, pid_t *ret_pid, uint64_t *ret_start,
		    struct bg_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	struct stat exe_st;
	const struct stat *exe = vmm_exe(p->vmm_binary, &exe_st) ? &exe_st : NULL;
	pid_t self = getpid(), best = 0;
	uint64_t best_start = 0;

	d = opendir("/proc");
	if (!d)
		return bg_error(err, errno, "open '/proc'");
	while ((de = readdir(d))) {
		_cleanup_free_ char *cmd = NULL;
		uint64_t start, start2;
		size_t len;
		pid_t pid;

		if (!parse_pid(de->d_name, &pid) || pid == self)
			continue;
		/* Start time before and after the checks: all reads are about one process. */
		if (proc_start_time(pid, &start, NULL) < 0)
			continue;
		if (p->expected_start && start != p->expected_start)
			continue;
		if (start < p->not_before)
			continue;
		if (proc_cmdline(pid, &cmd, &len) < 0 || len == 0)
			continue;
		if (!cmdline_names_socket(cmd, len, p->ctl_sock))
			continue;
		if (!vmm_candidate(pid, p, exe)) {
			log_debug("pid %d names '%s' but is not its VMM (uid or executable), "
				  "ignoring",
				  (int)pid, p->ctl_sock);
			continue;
		}
		if (proc_start_time(pid, &start2, NULL) < 0 || start2 != start)
			continue;
		if (!proc_identity_matches(pid, start))
			continue; /* a zombie: its VMM is gone */
		if (!best || start < best_start) {
			best = pid;
			best_start = start;
		}
	}
	*ret_pid = best;
	*ret_start = best_start;
	return 0;
}

/* Read a sysfs attribute, strip the trailing newline. -ENOENT etc. when missing. */
static int read_attr(const char *path, char **ret)
{
	char *data = NULL;
	size_t len;
	int r;

	r = fs_read_file(path, SYSFS_ATTR_MAX, &data, &len, NULL);
	if (r < 0)
		return r;
	while (len > 0 && data[len - 1] == '\n')
		data[--len] = '\0';
	*ret = data;
	return 0;
}

/*
 * The backing file of loop device 'name' ("loop3"), " (deleted)" removed
 * (*ret_deleted tells). -ENOENT when it is not attached.
 */
static int loop_backing_file(const char *name, char **ret, bool *ret_deleted)
{
	_cleanup_free_ char *path = xasprintf("%s/block/%s/loop/backing_file", sysfs_root, name);
	char *data = NULL;
	size_t len, sl = strlen(DELETED_SUFFIX);
	int r;

	r = read_attr(path, &data);
	if (r < 0)
		return r;
	len = strlen(data);
	*ret_deleted = len > sl && strcmp(data + len - sl, DELETED_SUFFIX) == 0;
	if (*ret_deleted)
		data[len - sl] = '\0';
	if (!*data) {
		free(data);
		return -ENOENT;
	}
	*ret = data;
	return 0;
}

/* Do two paths name one file? The kernel reports the resolved path. */
static bool same_file(const char *backing, const char *want, const char *want_real)
{
	return strcmp(backing, want) == 0 || (want_real && strcmp(backing, want_real) == 0);
}

/* Numeric suffix of "loop12" / "dm-3", for a stable order; -1 when not of that form. */
static long dev_number(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(name, prefix, n) != 0 || !all_digits(name + n) || strlen(name + n) > 9)
		return -1;
	return strtol(name + n, NULL, 10);
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

/* Numbers of /sys/block/<prefix>N devices, sorted. Owned array. */
static long *list_block(const char *prefix, size_t *ret_n)
{
	_cleanup_free_ char *dir = xasprintf("%s/block", sysfs_root);
	_cleanup_(closedirp) DIR *d = opendir(dir);
	struct dirent *de;
	long *nums = NULL;
	size_t n = 0;

	while (d && (de = readdir(d))) {
		long num = dev_number(de->d_name, prefix);

		if (num < 0)
			continue;
		nums = xreallocarray(nums, n + 1, sizeof(*nums));
		nums[n++] = num;
	}
	if (n)
		qsort(nums, n, sizeof(*nums), cmp_long);
	*ret_n = n;
	return nums;
}

/* The lowest-numbered loop device backed by 'file' into ret ("/dev/loopN"), or "". */
static void find_loop(const char *file, char ret[32])
{
	_cleanup_free_ char *real = realpath(file, NULL);
	_cleanup_free_ long *nums = NULL;
	size_t n;

	ret[0] = '\0';
	nums = list_block("loop", &n);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *backing = NULL;
		char name[32];
		bool deleted;

		snprintf(name, sizeof(name), "loop%ld", nums[i]);
		if (loop_backing_file(name, &backing, &deleted) < 0)
			continue;
		/* A deleted backing file is still ours: the loop must still be detached. */
		if (same_file(backing, file, real)) {
			snprintf(ret, 32, "/dev/%.20s", name);
			return;
		}
	}
}

/*
 * The dm device named dm_name: fill dm_name/dm_dev, and attribute the loop
 * devices it sits on: the one backed by cow_disk is the COW loop, another
 * is the base (preferring one backed by rootfs_image).
 */
static void find_dm(const struct handles_probe *p, const char *dm_name, struct vm_handles *h)
{
	_cleanup_free_ long *nums = NULL;
	_cleanup_free_ char *cow_real = p->cow_disk ? realpath(p->cow_disk, NULL) : NULL;
	_cleanup_free_ char *base_real = p->rootfs_image ? realpath(p->rootfs_image, NULL) : NULL;
	size_t n;

	nums = list_block("dm-", &n);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *name_path = NULL, *name = NULL, *slaves = NULL;
		_cleanup_(closedirp) DIR *d = NULL;
		struct dirent *de;
		char other[32] = "";

		name_path = xasprintf("%s/block/dm-%ld/dm/name", sysfs_root, nums[i]);
		if (read_attr(name_path, &name) < 0 || strcmp(name, dm_name) != 0)
			continue;
		snprintf(h->dm_name, sizeof(h->dm_name), "%s", dm_name);
		snprintf(h->dm_dev, sizeof(h->dm_dev), "/dev/mapper/%s", dm_name);
		slaves = xasprintf("%s/block/dm-%ld/slaves", sysfs_root, nums[i]);
		d = opendir(slaves);
		while (d && (de = readdir(d))) {
			_cleanup_free_ char *backing = NULL;
			bool deleted;

			if (dev_number(de->d_name, "loop") < 0)
				continue;
			if (loop_backing_file(de->d_name, &backing, &deleted) < 0)
				continue;
			if (p->cow_disk && same_file(backing, p->cow_disk, cow_real)) {
				if (!h->cow_loop[0])
					snprintf(h->cow_loop, sizeof(h->cow_loop), "/dev/%.20s",
						 de->d_name);
			} else if (p->rootfs_image &&
				   same_file(backing, p->rootfs_image, base_real)) {
				snprintf(h->base_loop, sizeof(h->base_loop), "/dev/%.20s",
					 de->d_name);
			} else if (!other[0]) {
				snprintf(other, sizeof(other), "/dev/%.20s", de->d_name);
			}
		}
		if (!h->base_loop[0] && other[0])
			memcpy(h->base_loop, other, sizeof(other));
		return;
	}
}

int handles_rediscover(const struct handles_probe *p, struct vm_handles *ret, struct bg_err *err)
{
	struct vm_handles h = { 0 };
	char tap[16], dm_name[64];
	int r;

	if (!p || !p->id || strlen(p->id) != VM_ID_LEN)
		return bg_errorf(err, EINVAL, "handles_rediscover: invalid VM id");
	if (p->ctl_sock && *p->ctl_sock) {
		r = find_vmm(p, &h.pid, &h.start_time, err);
		if (r < 0)
			return bg_err_wrap(err, "find the VMM of VM %s", p->id);
	}
	/* By index in our own network namespace (sysfs shows the one it was mounted in). */
	handles_tap_name(p->id, tap);
	if (if_nametoindex(tap) != 0)
		memcpy(h.tap, tap, sizeof(tap));
	if (p->cow_disk && *p->cow_disk)
		find_loop(p->cow_disk, h.cow_loop);
	handles_dm_name(p->id, dm_name);
	find_dm(p, dm_name, &h);
	*ret = h;
	return 0;
}

/* ---- the cache ---------------------------------------------------------------------- */

struct cache_entry {
	char id[VM_ID_LEN + 1];
	struct vm_handles h;
};

struct handles_cache {
	struct cache_entry *entries;
	size_t n;
	char *binaries[2];	    /* VMM binary of "firecracker", "qemu" */
	uid_t uid_first, uid_count; /* the VMM uid range; count 0: none */
};

static const char *const vmm_names[2] = { "firecracker", "qemu" };

void handles_cache_set_vmm_binary(struct handles_cache *c, const char *vmm, const char *path)
{
	for (size_t i = 0; i < 2; i++)
		if (c && vmm && strcmp(vmm, vmm_names[i]) == 0) {
			free(c->binaries[i]);
			c->binaries[i] = path ? xstrdup(path) : NULL;
		}
}

void handles_cache_set_vmm_uids(struct handles_cache *c, uid_t first, uid_t count)
{
	c->uid_first = first;
	c->uid_count = count;
}

static const char *cache_binary(const struct handles_cache *c, const char *vmm)
{
	for (size_t i = 0; i < 2; i++)
		if (vmm && strcmp(vmm, vmm_names[i]) == 0)
			return c->binaries[i];
	return NULL;
}

/*
 * Boot-relative clock ticks of an epoch-ms time, minus a minute's slack for
 * wall-clock steps; 0 when unknown (no limit).
 */
static uint64_t ticks_not_before(int64_t epoch_ms)
{
	_cleanup_free_ char *data = NULL;
	long hz = sysconf(_SC_CLK_TCK);
	unsigned long long btime;
	const char *p;
	int64_t secs;
	size_t len;

	if (epoch_ms <= 0 || hz <= 0 ||
	    fs_read_file("/proc/stat", 1024 * 1024, &data, &len, NULL) < 0)
		return 0;
	p = strstr(data, "\nbtime ");
	if (!p || sscanf(p + 7, "%llu", &btime) != 1)
		return 0;
	secs = epoch_ms / 1000 - (int64_t)btime - 60;
	return secs > 0 ? (uint64_t)secs * (uint64_t)hz : 0;
}

struct handles_cache *handles_cache_new(void)
{
	return xcalloc(1, sizeof(struct handles_cache));
}

void handles_cache_free(struct handles_cache *c)
{
	if (!c)
		return;
	free(c->entries);
	free(c->binaries[0]);
	free(c->binaries[1]);
	free(c);
}

static struct cache_entry *cache_find(struct handles_cache *c, const char *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->entries[i].id, id) == 0)
			return &c->entries[i];
	return NULL;
}

static void cache_set(struct handles_cache *c, const char *id, const struct vm_handles *h)
{
	struct cache_entry *e = cache_find(c, id);

	if (!e) {
		c->entries = xreallocarray(c->entries, c->n + 1, sizeof(*c->entries));
		e = &c->entries[c->n++];
		snprintf(e->id, sizeof(e->id), "%s", id);
	}
	e->h = *h;
}

static void cache_drop(struct handles_cache *c, const char *id)
{
	struct cache_entry *e = cache_find(c, id);

	if (!e)
		return;
	*e = c->entries[--c->n];
}

/* Still about the same process (or about none)? */
static bool process_unchanged(const struct vm_handles *h)
{
	return h->pid == 0 || vm_alive(h);
}

int handles_get(struct handles_cache *c, const struct vm_record *rec, struct vm_handles *ret,
		bool *corrupt, struct bg_err *err)
{
	struct cache_entry *e;
	struct vm_handles h;
	struct handles_probe probe;
	struct bg_err lerr = { 0 };
	int r;

	if (corrupt)
		*corrupt = false;
	if (!c || !rec || strlen(rec->id) != VM_ID_LEN)
		return bg_errorf(err, EINVAL, "handles_get: invalid arguments");
	e = cache_find(c, rec->id);
	if (e && process_unchanged(&e->h)) {
		*ret = e->h;
		return 0;
	}
	if (rec->vm_dir) {
		/*
		 * Trust the file only for a process that is still the one it names.
		 * "No process" is not trusted on a cache miss: a daemon killed between
		 * starting a VMM and recording it left exactly that, so ask the OS.
		 */
		r = handles_load(rec->vm_dir, &h, &lerr);
		if (r >= 0 && h.pid != 0 && vm_alive(&h)) {
			cache_set(c, rec->id, &h);
			*ret = h;
			return 0;
		}
		if (r == -EBADMSG && corrupt)
			*corrupt = true;
		/* -ENOENT: never saved; other read errors: the OS decides, as below. */
	}
	probe = (struct handles_probe){
		.id = rec->id,
		.ctl_sock = rec->api_sock,
		.cow_disk = rec->cow_disk,
		.vmm_binary = cache_binary(c, rec->vmm),
		.not_before = ticks_not_before(rec->created_at),
	};
	{
		struct stat st;

		/* The VM's VMM uid is recorded as the group of its VM dir (0700 or 0710). */
		if (rec->vm_dir && stat(rec->vm_dir, &st) == 0 && S_ISDIR(st.st_mode) &&
		    st.st_gid >= c->uid_first && st.st_gid - c->uid_first < c->uid_count)
			probe.vmm_uid = (uid_t)st.st_gid;
	}
	r = handles_rediscover(&probe, &h, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s'", rec->name ? rec->name : rec->id);
	cache_set(c, rec->id, &h);
	if (rec->vm_dir && fs_exists(rec->vm_dir)) {
		/* Rewrite the cache file; the handles in memory are right even if this fails. */
		r = handles_save(rec->vm_dir, &h, &lerr);
		if (r < 0)
			log_debug("vm '%s': %s, ignoring", rec->name ? rec->name : rec->id,
				  lerr.msg);
	}
	*ret = h;
	return 0;
}

int handles_put(struct handles_cache *c, const struct vm_record *rec, const struct vm_handles *h,
		struct bg_err *err)
{
	int r;

	if (!c || !rec || !h || strlen(rec->id) != VM_ID_LEN)
		return bg_errorf(err, EINVAL, "handles_put: invalid arguments");
	r = check_handles(h, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s': refusing handles",
				   rec->name ? rec->name : rec->id);
	cache_set(c, rec->id, h);
	if (!rec->vm_dir)
		return 0;
	r = handles_save(rec->vm_dir, h, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s'", rec->name ? rec->name : rec->id);
	return 0;
}

int handles_forget(struct handles_cache *c, const struct vm_record *rec, struct bg_err *err)
{
	int r;

	if (!c || !rec)
		return bg_errorf(err, EINVAL, "handles_forget: invalid arguments");
	cache_drop(c, rec->id);
	r = handles_remove(rec->vm_dir, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s'", rec->name ? rec->name : rec->id);
	return 0;
}
