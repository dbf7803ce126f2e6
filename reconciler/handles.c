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
	struct proc_stat st;

	if (!h || h->pid <= 0)
		return VM_LIVENESS_NONE;
	/* One read of /proc/<pid>/stat answers all three: it runs, is no zombie, is ours. */
	if (proc_stat_read(h->pid, &st) < 0 || st.state == 'Z' || st.state == 'X')
		return VM_LIVENESS_DEAD;
	if (h->start_time != 0 && st.start_time == h->start_time)
		return VM_LIVENESS_ALIVE;
	/*
	 * The pid runs but is not provably ours: another start time, or no
	 * start time recorded (then it can't be trusted, so never signalled).
	 */
	return VM_LIVENESS_REUSED;
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
 * An index of /proc: every process (but us and zombies) under each name its
 * argv gives a socket. Built once per cache generation, so rediscovering many
 * VMs costs one scan of /proc, not one per VM.
 */
struct proc_entry {
	pid_t pid;
	uint64_t start;
};

struct proc_key {
	char *sock;   /* owned */
	size_t entry; /* into entries[] */
};

struct proc_index {
	struct proc_entry *entries;
	size_t n_entries;
	struct proc_key *keys;
	size_t n_keys, cap_keys, cap_entries; /* arrays grow by doubling */
};

/* A hostile argv could name thousands of "sockets"; a VMM's names a few. */
#define PROC_KEYS_PER_PROCESS 4096
/* sizeof(sun_path): no longer string is a socket path a VMM could have been given. */
#define SOCK_KEY_MAX 108

static void proc_index_free(struct proc_index *idx)
{
	if (!idx)
		return;
	for (size_t i = 0; i < idx->n_keys; i++)
		free(idx->keys[i].sock);
	free(idx->keys);
	free(idx->entries);
	free(idx);
}

static void add_key(struct proc_index *idx, const char *s, size_t len, size_t *budget)
{
	if (len == 0 || *budget == 0)
		return;
	(*budget)--;
	if (idx->n_keys == idx->cap_keys) {
		idx->cap_keys = idx->cap_keys ? 2 * idx->cap_keys : 256;
		idx->keys = xreallocarray(idx->keys, idx->cap_keys, sizeof(*idx->keys));
	}
	idx->keys[idx->n_keys].sock = xstrndup(s, len);
	idx->keys[idx->n_keys].entry = idx->n_entries - 1;
	idx->n_keys++;
}

/*
 * Every socket the argument names: the whole argument, and each part that
 * follows a ':' or '=' and ends at a ',' or the end of the argument
 * ("unix:<path>,server,nowait", "path=<path>", "--api-sock=<path>"). A path
 * inside another ("<path>.old", "/x<path>") is not named.
 */
static void add_arg_keys(struct proc_index *idx, const char *arg, size_t n, size_t *budget)
{
	/*
	 * A control socket path fits sun_path: longer keys can name nothing, so
	 * each start is scanned at most that far. Any argv (a local user's too)
	 * then costs O(length x SOCK_KEY_MAX) time and at most the budget in keys.
	 */
	if (n < SOCK_KEY_MAX)
		add_key(idx, arg, n, budget);
	for (size_t i = 1; i < n && *budget; i++) {
		if (arg[i - 1] != ':' && arg[i - 1] != '=')
			continue;
		for (size_t j = i + 1; j <= n && j - i < SOCK_KEY_MAX; j++)
			if (j == n || arg[j] == ',')
				add_key(idx, arg + i, j - i, budget);
	}
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(((const struct proc_key *)a)->sock, ((const struct proc_key *)b)->sock);
}

static int proc_index_build(struct proc_index **ret, struct bg_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct proc_index *idx;
	struct dirent *de;
	pid_t self = getpid();

	d = opendir("/proc");
	if (!d)
		return bg_error(err, errno, "open '/proc'");
	idx = xcalloc(1, sizeof(*idx));
	while ((de = readdir(d))) {
		_cleanup_free_ char *cmd = NULL;
		size_t budget = PROC_KEYS_PER_PROCESS;
		struct proc_stat st;
		size_t len;
		pid_t pid;

		if (!parse_pid(de->d_name, &pid) || pid == self)
			continue;
		if (proc_stat_read(pid, &st) < 0 || st.state == 'Z' || st.state == 'X')
			continue;
		if (proc_cmdline(pid, &cmd, &len) < 0 || len == 0)
			continue;
		if (idx->n_entries == idx->cap_entries) {
			idx->cap_entries = idx->cap_entries ? 2 * idx->cap_entries : 256;
			idx->entries = xreallocarray(idx->entries, idx->cap_entries,
						     sizeof(*idx->entries));
		}
		idx->entries[idx->n_entries++] = (struct proc_entry){ pid, st.start_time };
		for (size_t off = 0; off < len;) {
			size_t n = strnlen(cmd + off, len - off);

			if (off + n < len) /* a complete, NUL-terminated argument */
				add_arg_keys(idx, cmd + off, n, &budget);
			off += n + 1;
		}
	}
	if (idx->n_keys)
		qsort(idx->keys, idx->n_keys, sizeof(*idx->keys), cmp_key);
	*ret = idx;
	return 0;
}

/*
 * The oldest live process of the index whose argv names the socket, run by
 * root or the VM's VMM uid, executing the configured binary, started at
 * expected_start if set and not before not_before. Each candidate is checked
 * again now (the index may be a pass old): still the same process, no zombie.
 */
static void find_vmm(const struct proc_index *idx, const struct handles_probe *p, pid_t *ret_pid,
		     uint64_t *ret_start)
{
	struct stat exe_st;
	const struct stat *exe = vmm_exe(p->vmm_binary, &exe_st) ? &exe_st : NULL;
	struct proc_key want = { .sock = (char *)p->ctl_sock };
	const struct proc_key *k;
	pid_t best = 0;
	uint64_t best_start = 0;
	size_t lo = 0, hi = idx->n_keys;

	/* The first key equal to the socket (lower bound). */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cmp_key(&idx->keys[mid], &want) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (k = idx->keys + lo; k < idx->keys + idx->n_keys && cmp_key(k, &want) == 0; k++) {
		const struct proc_entry *e = &idx->entries[k->entry];

		if (p->expected_start && e->start != p->expected_start)
			continue;
		if (e->start < p->not_before)
			continue;
		if (!vmm_candidate(e->pid, p, exe)) {
			log_debug("pid %d names '%s' but is not its VMM (uid or executable), "
				  "ignoring",
				  (int)e->pid, p->ctl_sock);
			continue;
		}
		/* After the checks: they were all about this very process, and it lives. */
		if (!proc_identity_matches(e->pid, e->start))
			continue;
		if (!best || e->start < best_start) {
			best = e->pid;
			best_start = e->start;
		}
	}
	*ret_pid = best;
	*ret_start = best_start;
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

/* handles_rediscover() against an index of /proc (built now when NULL). */
static int rediscover_with(const struct proc_index *idx, const struct handles_probe *p,
			   struct vm_handles *ret, struct bg_err *err)
{
	struct proc_index *own = NULL;
	struct vm_handles h = { 0 };
	char tap[16], dm_name[64];
	int r;

	if (!p || !p->id || strlen(p->id) != VM_ID_LEN)
		return bg_errorf(err, EINVAL, "handles_rediscover: invalid VM id");
	if (p->ctl_sock && *p->ctl_sock) {
		if (!idx) {
			r = proc_index_build(&own, err);
			if (r < 0)
				return bg_err_wrap(err, "find the VMM of VM %s", p->id);
			idx = own;
		}
		find_vmm(idx, p, &h.pid, &h.start_time);
		proc_index_free(own);
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

int handles_rediscover(const struct handles_probe *p, struct vm_handles *ret, struct bg_err *err)
{
	return rediscover_with(NULL, p, ret, err);
}

/* ---- the cache ---------------------------------------------------------------------- */

struct cache_entry {
	char id[VM_ID_LEN + 1];
	struct vm_handles h;
	bool stale;   /* something said it changed: rebuild it from the OS */
	bool suspect; /* the resync: rebuild it unless its process is still the recorded one */
};

struct handles_cache {
	struct cache_entry *entries;
	size_t n;
	size_t *slots;		  /* open addressing over entries[]: index + 1, 0 free */
	size_t n_slots;		  /* a power of two, at least twice n */
	bool warm;		  /* every VM that existed at the first pass has an entry */
	struct proc_index *index; /* /proc of this generation, built on first need */
	struct handles_cache_stats stats;
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
	proc_index_free(c->index);
	free(c->slots);
	free(c->entries);
	free(c->binaries[0]);
	free(c->binaries[1]);
	free(c);
}

/* FNV-1a of the id: ids are random hex, any mix will do. */
static size_t id_hash(const char *id)
{
	uint32_t h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h;
}

static void cache_rehash(struct handles_cache *c)
{
	size_t want = 16;

	while (want < 2 * (c->n + 1))
		want *= 2;
	free(c->slots);
	c->slots = xcalloc(want, sizeof(*c->slots));
	c->n_slots = want;
	for (size_t i = 0; i < c->n; i++) {
		size_t s = id_hash(c->entries[i].id) & (want - 1);

		while (c->slots[s])
			s = (s + 1) & (want - 1);
		c->slots[s] = i + 1;
	}
}

static struct cache_entry *cache_find(struct handles_cache *c, const char *id)
{
	if (!c->n_slots)
		return NULL;
	for (size_t s = id_hash(id) & (c->n_slots - 1); c->slots[s]; s = (s + 1) & (c->n_slots - 1))
		if (strcmp(c->entries[c->slots[s] - 1].id, id) == 0)
			return &c->entries[c->slots[s] - 1];
	return NULL;
}

static struct cache_entry *cache_set(struct handles_cache *c, const char *id,
				     const struct vm_handles *h)
{
	struct cache_entry *e = cache_find(c, id);

	if (!e) {
		c->entries = xreallocarray(c->entries, c->n + 1, sizeof(*c->entries));
		e = &c->entries[c->n++];
		memset(e, 0, sizeof(*e));
		snprintf(e->id, sizeof(e->id), "%s", id);
		/* Slots hold indexes, not pointers: entries[] moving does not matter. */
		if (2 * c->n > c->n_slots) {
			cache_rehash(c);
		} else {
			size_t s = id_hash(id) & (c->n_slots - 1);

			while (c->slots[s])
				s = (s + 1) & (c->n_slots - 1);
			c->slots[s] = c->n;
		}
	}
	e->h = *h;
	e->stale = false;
	e->suspect = false;
	return e;
}

static void cache_drop(struct handles_cache *c, const char *id)
{
	struct cache_entry *e = cache_find(c, id);

	if (!e)
		return;
	*e = c->entries[--c->n];
	cache_rehash(c); /* rare (a VM torn down): rebuilding keeps the probing simple */
}

/* The /proc index of this generation, built on first need. */
static int cache_index(struct handles_cache *c, const struct proc_index **ret, struct bg_err *err)
{
	int r;

	if (!c->index) {
		r = proc_index_build(&c->index, err);
		if (r < 0)
			return r;
		c->stats.proc_scans++;
	}
	*ret = c->index;
	return 0;
}

void handles_cache_begin_pass(struct handles_cache *c)
{
	proc_index_free(c->index);
	c->index = NULL;
}

void handles_cache_mark_stale(struct handles_cache *c, const char *id)
{
	static const struct vm_handles none;
	struct cache_entry *e;

	if (!c || !id || strlen(id) != VM_ID_LEN)
		return;
	/* Unknown yet: an entry that is nothing but the hint, so the OS is asked. */
	e = cache_find(c, id);
	if (!e)
		e = cache_set(c, id, &none);
	e->stale = true;
	handles_cache_begin_pass(c); /* processes came or went since the index was made */
}

void handles_cache_mark_all_stale(struct handles_cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		c->entries[i].suspect = true;
	handles_cache_begin_pass(c);
}

void handles_cache_set_warm(struct handles_cache *c)
{
	c->warm = true;
}

int handles_cache_peek(struct handles_cache *c, const char *id, struct vm_handles *ret)
{
	struct cache_entry *e = c && id ? cache_find(c, id) : NULL;

	if (!e)
		return -ENOENT;
	*ret = e->h;
	return 0;
}

void handles_cache_get_stats(const struct handles_cache *c, struct handles_cache_stats *ret)
{
	*ret = c->stats;
}

/*
 * Ask the OS (the /proc index of this generation, sysfs), cache the answer
 * stale-free and rewrite handles.json. On failure the entry stays (or
 * becomes) stale, so the next look asks again.
 */
static int cache_rediscover(struct handles_cache *c, const struct vm_record *rec,
			    struct vm_handles *ret, struct bg_err *err)
{
	static const struct vm_handles none;
	const struct proc_index *idx = NULL;
	struct handles_probe probe;
	struct bg_err lerr = { 0 };
	struct vm_handles h;
	int r;

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
	c->stats.rediscoveries++;
	r = probe.ctl_sock && *probe.ctl_sock ? cache_index(c, &idx, err) : 0;
	if (r >= 0)
		r = rediscover_with(idx, &probe, &h, err);
	if (r < 0) {
		if (!cache_find(c, rec->id))
			cache_set(c, rec->id, &none);
		cache_find(c, rec->id)->stale = true;
		return bg_err_wrap(err, "vm '%s'", rec->name ? rec->name : rec->id);
	}
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

int handles_observe(struct handles_cache *c, const struct vm_record *rec, struct vm_handles *ret,
		    enum vm_liveness *ret_liveness, bool *corrupt, struct bg_err *err)
{
	static const struct vm_handles none;
	struct cache_entry *e;
	struct vm_handles h;
	enum vm_liveness l;
	int r;

	if (corrupt)
		*corrupt = false;
	if (!c || !rec || strlen(rec->id) != VM_ID_LEN)
		return bg_errorf(err, EINVAL, "handles_get: invalid arguments");
	e = cache_find(c, rec->id);
	if (e) {
		/* One read of /proc/<pid>/stat: the recorded process, as it is now. */
		l = vm_liveness(&e->h);
		/*
		 * Without a hint the entry is the truth, even about a process that
		 * died (DEAD) or whose pid another took (REUSED): nothing else can
		 * have started this VM's VMM. After the resync's hint only a process
		 * that is still the recorded one is kept (rebuilding 1,000 running
		 * VMs from sysfs would cost O(N^2)); a hint about this VM rebuilds it.
		 */
		if (!e->stale && (!e->suspect || l == VM_LIVENESS_ALIVE)) {
			e->suspect = false;
			*ret = e->h;
			goto done;
		}
	} else if (c->warm) {
		/*
		 * Created after the first pass, so by this daemon (only bangerd makes
		 * VM rows), which records its VMM with handles_put() when it launches
		 * it: until then it has none, and /proc need not be asked.
		 */
		e = cache_set(c, rec->id, &none);
		*ret = e->h;
		l = VM_LIVENESS_NONE;
		goto done;
	} else if (rec->vm_dir) {
		struct bg_err lerr = { 0 };

		/*
		 * A cold cache (the daemon just started): trust the file only for a
		 * process that is still the one it names. "No process" is not trusted:
		 * a daemon killed between starting a VMM and recording it left exactly
		 * that, so ask the OS.
		 */
		r = handles_load(rec->vm_dir, &h, &lerr);
		if (r >= 0 && h.pid != 0 && vm_alive(&h)) {
			cache_set(c, rec->id, &h);
			*ret = h;
			l = VM_LIVENESS_ALIVE;
			goto done;
		}
		if (r == -EBADMSG && corrupt)
			*corrupt = true;
		/* -ENOENT: never saved; other read errors: the OS decides, as below. */
	}
	r = cache_rediscover(c, rec, ret, err);
	if (r < 0)
		return r;
	/* Just found alive (find_vmm checked), or none at all. */
	l = ret->pid ? VM_LIVENESS_ALIVE : VM_LIVENESS_NONE;
done:
	if (ret_liveness)
		*ret_liveness = l;
	return 0;
}

int handles_get(struct handles_cache *c, const struct vm_record *rec, struct vm_handles *ret,
		bool *corrupt, struct bg_err *err)
{
	return handles_observe(c, rec, ret, NULL, corrupt, err);
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
