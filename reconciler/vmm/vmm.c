/*
 * vmm.c - what every VMM driver shares: the guest-contract kernel arguments
 * (vmm_guest_args), console log rotation and state names; see vmm.h.
 */
#include "reconciler/vmm/vmm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/xalloc.h"

/*
 * x86 COMMAND_LINE_SIZE is 2048 bytes including the NUL; the drivers add
 * their own arguments (console=, reboot=, panic=, tsc_early_khz=...), for
 * which we keep 512 bytes.
 */
#define KERNEL_CMDLINE_MAX 2048
#define DRIVER_ARGS_RESERVE 512
#define GUEST_ARGS_MAX (KERNEL_CMDLINE_MAX - DRIVER_ARGS_RESERVE - 1)

#define USER_NAME_MAX 32

const char *vmm_guest_state_to_string(enum vmm_guest_state s)
{
	static const char *const names[VMM_GUEST_STATE_MAX] = {
		[VMM_GUEST_UNKNOWN] = "unknown",   [VMM_GUEST_CONFIGURING] = "configuring",
		[VMM_GUEST_RUNNING] = "running",   [VMM_GUEST_PAUSED] = "paused",
		[VMM_GUEST_SHUTDOWN] = "shutdown",
	};

	if ((unsigned)s >= VMM_GUEST_STATE_MAX)
		return "invalid";
	return names[s];
}

static bool is_dotted_quad(const char *s)
{
	struct in_addr a;

	return s && inet_pton(AF_INET, s, &a) == 1;
}

/* A word of the ip= field: no separator (':'), no whitespace or control characters. */
static bool is_ip_field(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (*s == ':' || (unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

/* The guest's useradd rule: [a-z_][a-z0-9_-]*, at most 32 characters. */
static bool is_user_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > USER_NAME_MAX)
		return false;
	if (!(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z')))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(s[i] == '_' || s[i] == '-' || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

static bool has_control_chars(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < ' ' || *s == 0x7f)
			return true;
	return false;
}

int vmm_guest_args(const char *ip, const char *gateway, const char *netmask, const char *hostname,
		   const char *user, const char *authorized_keys, const char *extra_args,
		   char **ret, struct bg_err *err)
{
	return vmm_guest_args_dns(ip, gateway, netmask, NULL, hostname, user, authorized_keys,
				  extra_args, ret, err);
}

int vmm_guest_args_dns(const char *ip, const char *gateway, const char *netmask, const char *dns,
		       const char *hostname, const char *user, const char *authorized_keys,
		       const char *extra_args, char **ret, struct bg_err *err)
{
	_cleanup_buf_ struct buf b = { 0 };
	_cleanup_free_ char *keys64 = NULL;
	size_t keys_len = authorized_keys ? strlen(authorized_keys) : 0;
	size_t keys64_len, extra_len, total;

	if (!is_dotted_quad(ip))
		return bg_errorf(err, EINVAL, "guest ip '%s' is not an IPv4 address", ip ? ip : "");
	if (!is_dotted_quad(gateway))
		return bg_errorf(err, EINVAL, "gateway '%s' is not an IPv4 address",
				 gateway ? gateway : "");
	if (!is_dotted_quad(netmask))
		return bg_errorf(err, EINVAL, "netmask '%s' is not an IPv4 address",
				 netmask ? netmask : "");
	if (dns && !is_dotted_quad(dns))
		return bg_errorf(err, EINVAL, "nameserver '%s' is not an IPv4 address", dns);
	if (!is_ip_field(hostname))
		return bg_errorf(err, EINVAL,
				 "hostname '%s' cannot go in ip=", hostname ? hostname : "");
	if (!user || !*user)
		user = "root";
	if (!is_user_name(user))
		return bg_errorf(err, EINVAL, "ssh user '%s' is not a valid user name", user);
	if (extra_args && has_control_chars(extra_args))
		return bg_errorf(err, EINVAL, "kernel arguments contain control characters");

	buf_init(&b);
	buf_addf(&b, "root=/dev/vda rw ip=%s::%s:%s:%s:eth0:off%s%s banger.user=%s", ip, gateway,
		 netmask, hostname, dns ? ":" : "", dns ? dns : "", user);
	/* Check the size before encoding anything: the keys come from users. */
	keys64_len = keys_len ? strlen(" banger.sshkeys=") + 4 * ((keys_len + 2) / 3) : 0;
	extra_len = extra_args && *extra_args ? 1 + strlen(extra_args) : 0;
	total = b.len + keys64_len + extra_len;
	if (total > GUEST_ARGS_MAX)
		return bg_errorf(
			err, E2BIG,
			"kernel command line too long: the guest arguments need %zu bytes "
			"(SSH keys %zu, kernel arguments %zu) but at most %d fit (x86 allows "
			"%d, %d are kept for the VMM's own arguments); use fewer or shorter "
			"SSH keys (ed25519) or kernel arguments",
			total, keys64_len, extra_len, GUEST_ARGS_MAX, KERNEL_CMDLINE_MAX,
			DRIVER_ARGS_RESERVE);
	if (keys_len) {
		keys64 = base64_encode(authorized_keys, keys_len);
		buf_addf(&b, " banger.sshkeys=%s", keys64);
	}
	if (extra_len)
		buf_addf(&b, " %s", extra_args);
	*ret = buf_detach(&b, NULL);
	return 0;
}

int vmm_guest_root_args(const char *extra_args, char **ret, struct bg_err *err)
{
	if (extra_args && has_control_chars(extra_args))
		return bg_errorf(err, EINVAL, "kernel arguments contain control characters");
	if (extra_args && strlen(extra_args) > GUEST_ARGS_MAX - 16)
		return bg_errorf(err, E2BIG, "kernel arguments are %zu bytes; at most %d fit",
				 strlen(extra_args), GUEST_ARGS_MAX - 16);
	*ret = extra_args && *extra_args ? xasprintf("root=/dev/vda rw %s", extra_args)
					 : xstrdup("root=/dev/vda rw");
	return 0;
}

/* Copy [0, len) of in_fd into out_fd. */
static int copy_range(int in_fd, int out_fd, off_t len)
{
	off_t in_off = 0;

	while (in_off < len) {
		ssize_t n =
			copy_file_range(in_fd, &in_off, out_fd, NULL, (size_t)(len - in_off), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 &&
		    (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
			/* Fall back to read/write from where we are. */
			char chunk[65536];

			while (in_off < len) {
				size_t want = sizeof(chunk);
				ssize_t r, w, done = 0;

				if ((off_t)want > len - in_off)
					want = (size_t)(len - in_off);
				r = pread(in_fd, chunk, want, in_off);
				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0)
					return r < 0 ? -errno
						     : 0; /* shrank under us: keep what we have */
				while (done < r) {
					w = write(out_fd, chunk + done, (size_t)(r - done));
					if (w < 0 && errno == EINTR)
						continue;
					if (w < 0)
						return -errno;
					done += w;
				}
				in_off += r;
			}
			return 0;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* the file shrank under us */
	}
	return 0;
}

int vmm_console_rotate(const char *path, uint64_t max_bytes, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_close_ int out = -1;
	_cleanup_free_ char *old = NULL;
	_cleanup_free_ char *tmp = NULL;
	struct stat st;
	int r;

	/* The usual answer, small enough, from one lstat (the daemon asks every pass for
	 * every running VM); anything else is looked at through the opened file. */
	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= max_bytes)
		return 0;
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return bg_error(err, errno, "open console log '%s'", path);
	}
	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "stat '%s'", path);
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "console log '%s' is not a regular file", path);
	if ((uint64_t)st.st_size <= max_bytes)
		return 0;

	old = xasprintf("%s.1", path);
	tmp = xasprintf("%s.1.tmp", path);
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, st.st_mode & 0777);
	if (out < 0)
		return bg_error(err, errno, "create '%s'", tmp);
	r = copy_range(fd, out, st.st_size);
	if (r < 0) {
		(void)unlink(tmp);
		return bg_error(err, r, "copy '%s' to '%s'", path, tmp);
	}
	if (rename(tmp, old) < 0) {
		r = -errno;
		(void)unlink(tmp);
		return bg_error(err, r, "rename '%s' to '%s'", tmp, old);
	}
	/*
	 * Copy-truncate: the VMM holds the log open with O_APPEND, so after the
	 * truncation its next write lands at the new end (offset 0). What it
	 * wrote between the copy and here is lost, as with logrotate's copytruncate.
	 */
	if (ftruncate(fd, 0) < 0)
		return bg_error(err, errno, "truncate '%s'", path);
	return 1;
}
