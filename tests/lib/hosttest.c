/*
 * hosttest.c - helpers for the tests of reconciler/host/; see hosttest.h.
 */
#include "tests/lib/hosttest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/xalloc.h"

bool hosttest_sandbox(const char **ret_reason)
{
	if (geteuid() != 0) {
		*ret_reason = "needs root (network namespace, taps, loop devices)";
		return false;
	}
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
		*ret_reason = "unshare(CLONE_NEWNET|CLONE_NEWNS) failed";
		return false;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		*ret_reason = "cannot make / private in the new mount namespace";
		return false;
	}
	/* A sysfs of the new network namespace, so /sys/class/net shows our interfaces. */
	if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		*ret_reason = "cannot mount sysfs in the new namespaces";
		return false;
	}
	/* Commands run by the tests find ip, nft, losetup and mkfs in /usr/sbin. */
	{
		const char *path = getenv("PATH");
		char *p = xasprintf("%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
		setenv("PATH", p, 1);
		free(p);
	}
	return true;
}

static char *vformat(const char *fmt, va_list ap)
{
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	return s;
}

int hosttest_sh(const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	int st;

	va_start(ap, fmt);
	cmd = vformat(fmt, ap);
	va_end(ap);
	fflush(stdout);
	st = system(cmd);
	free(cmd);
	if (st < 0 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

char *hosttest_sh_output(const char *fmt, ...)
{
	va_list ap;
	char *cmd, *out = NULL;
	size_t len = 0, cap = 0;
	FILE *f;
	int c;

	va_start(ap, fmt);
	cmd = vformat(fmt, ap);
	va_end(ap);
	f = popen(cmd, "re");
	free(cmd);
	if (!f)
		return NULL;
	while ((c = fgetc(f)) != EOF) {
		if (len + 2 > cap) {
			cap = cap ? cap * 2 : 256;
			out = xrealloc(out, cap);
		}
		out[len++] = (char)c;
	}
	if (!out)
		out = xstrdup("");
	else
		out[len] = '\0';
	pclose(f);
	return out;
}

int hosttest_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

int hosttest_count_loops(const char *prefix)
{
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		char path[512], buf[4096];
		int fd;
		ssize_t len;

		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		if (strncmp(buf, prefix, strlen(prefix)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

int hosttest_count_links(const char *prefix)
{
	struct if_nameindex *ifs = if_nameindex(), *i;
	int n = 0;

	if (!ifs)
		return -1;
	for (i = ifs; i->if_index; i++)
		if (strncmp(i->if_name, prefix, strlen(prefix)) == 0)
			n++;
	if_freenameindex(ifs);
	return n;
}

int hosttest_count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d))) {
		char *p;
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		n++;
		p = xasprintf("%s/%s", dir, de->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			n += hosttest_count_entries(p);
		free(p);
	}
	closedir(d);
	return n;
}

void hosttest_make_image(const char *path, uint64_t size, const uint64_t *offsets, int n_offsets,
			 uint64_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char *buf;

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		abort();
	buf = xmalloc(len);
	for (int i = 0; i < n_offsets; i++) {
		for (uint64_t j = 0; j < len; j++)
			buf[j] = (char)(0x41 + ((j * 7 + (uint64_t)i) % 50));
		if (pwrite(fd, buf, len, (off_t)offsets[i]) != (ssize_t)len)
			abort();
	}
	free(buf);
	fsync(fd);
	close(fd);
}

bool hosttest_files_equal(const char *a, const char *b, uint64_t n)
{
	int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
	static char ba[1 << 16], bb[1 << 16];
	bool eq = fa >= 0 && fb >= 0;
	uint64_t off = 0;

	while (eq && off < n) {
		size_t want = n - off < sizeof(ba) ? (size_t)(n - off) : sizeof(ba);
		ssize_t ra = pread(fa, ba, want, (off_t)off), rb = pread(fb, bb, want, (off_t)off);

		if (ra != (ssize_t)want || rb != (ssize_t)want || memcmp(ba, bb, want) != 0)
			eq = false;
		off += want;
	}
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return eq;
}

bool hosttest_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}
