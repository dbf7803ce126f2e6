/*
 * baseimg.c - the raw image a VM's root disk is made from. Distributions
 * publish qcow2 images; every disk mode wants a raw file (a loop device's
 * backing file, a FICLONE or sparse-copy source), so a qcow2 image is
 * converted once into a cache shared by every VM with the same image:
 *
 *   <state>/images/<sha256 of the qcow2 file>.raw   the raw image (0600)
 *   <state>/images/<sha256>.src                     which files hashed to it:
 *       one line per source, "v1 <dev> <ino> <size> <mtime> <ctime> <path>"
 *   <state>/images/.tmp-<random>.{qcow2,raw}        a conversion under way,
 *       flock()ed by its maker; gc removes the ones nobody holds
 *
 * The qcow2 file is first copied (and hashed while copying) into a private
 * temp file, its header is checked there, and qemu-img converts that copy:
 * the bytes checked are the bytes converted and hashed, however the
 * original changes meanwhile, and the user's path never reaches qemu-img's
 * filename parser. A backing file or an external data file is refused: it
 * would make qemu-img read another file of the host into a guest's disk.
 * The .src lines let an unchanged image skip the read and the hash.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"

#define QCOW2_MAGIC "QFI\xfb"
#define QCOW2_V2_HEADER 72
#define QCOW2_V3_MIN 80 /* up to and including the incompatible features */
#define SRC_MAX (64 * 1024)
#define SRC_KEYS_MAX 16 /* sources remembered per cache */
#define COPY_BUF (1024 * 1024)
#define CONVERT_TIMEOUT_MS 3600000

/* ---- pure helpers ------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

bool host_is_qcow2(const void *buf, size_t len)
{
	return buf && len >= 4 && memcmp(buf, QCOW2_MAGIC, 4) == 0;
}

int host_qcow2_parse(const void *buf, size_t len, struct host_qcow2_header *ret, struct bg_err *err)
{
	const uint8_t *p = buf;
	struct host_qcow2_header h = { 0 };

	if (!host_is_qcow2(buf, len))
		return bg_errorf(err, EINVAL, "not a qcow2 image");
	if (len < QCOW2_V2_HEADER)
		return bg_errorf(err, EINVAL, "truncated qcow2 header");
	h.version = be32(p + 4);
	if (h.version != 2 && h.version != 3)
		return bg_errorf(err, EINVAL, "unsupported qcow2 version %u", h.version);
	h.backing_offset = be64(p + 8);
	h.backing_size = be32(p + 16);
	h.size = be64(p + 24);
	if (h.version == 3) {
		if (len < QCOW2_V3_MIN)
			return bg_errorf(err, EINVAL, "truncated qcow2 header");
		h.incompatible = be64(p + 72);
	}
	*ret = h;
	return 0;
}

bool host_baseimg_is_sha_name(const char *name, const char *suffix)
{
	if (!name || !suffix || strlen(name) != SHA256_HEX_LEN + strlen(suffix))
		return false;
	for (int i = 0; i < SHA256_HEX_LEN; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return strcmp(name + SHA256_HEX_LEN, suffix) == 0;
}

char *host_baseimg_cache_path(const char *state_dir, const char *sha)
{
	_cleanup_free_ char *name = NULL;

	if (!state_dir || !sha)
		return NULL;
	name = xasprintf("%s.raw", sha);
	if (!host_baseimg_is_sha_name(name, ".raw"))
		return NULL;
	return xasprintf("%s/" HOST_IMAGES_DIR "/%s", state_dir, name);
}

void host_baseimg_key_of(const struct stat *st, struct host_baseimg_key *ret)
{
	ret->dev = (uint64_t)st->st_dev;
	ret->ino = (uint64_t)st->st_ino;
	ret->size = (uint64_t)st->st_size;
	ret->mtime_s = (int64_t)st->st_mtim.tv_sec;
	ret->mtime_ns = (int64_t)st->st_mtim.tv_nsec;
	ret->ctime_s = (int64_t)st->st_ctim.tv_sec;
	ret->ctime_ns = (int64_t)st->st_ctim.tv_nsec;
}

char *host_baseimg_key_line(const struct host_baseimg_key *k, const char *path)
{
	_cleanup_free_ char *shown = xstrdup(path ? path : "");

	/* One line per key whatever the path holds. */
	for (char *c = shown; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	return xasprintf("v1 %llu %llu %llu %lld %lld %lld %lld %s\n", (unsigned long long)k->dev,
			 (unsigned long long)k->ino, (unsigned long long)k->size,
			 (long long)k->mtime_s, (long long)k->mtime_ns, (long long)k->ctime_s,
			 (long long)k->ctime_ns, shown);
}

bool host_baseimg_key_parse(const char *line, struct host_baseimg_key *ret)
{
	unsigned long long dev, ino, size;
	long long ms, mns, cs, cns;
	int end = 0;

	if (!line || strncmp(line, "v1 ", 3) != 0)
		return false;
	if (sscanf(line, "v1 %llu %llu %llu %lld %lld %lld %lld%n", &dev, &ino, &size, &ms, &mns,
		   &cs, &cns, &end) != 7 ||
	    end == 0 || (line[end] != ' ' && line[end] != '\n' && line[end] != '\0'))
		return false;
	ret->dev = dev;
	ret->ino = ino;
	ret->size = size;
	ret->mtime_s = ms;
	ret->mtime_ns = mns;
	ret->ctime_s = cs;
	ret->ctime_ns = cns;
	return true;
}

bool host_baseimg_key_equal(const struct host_baseimg_key *a, const struct host_baseimg_key *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_s == b->mtime_s && a->mtime_ns == b->mtime_ns && a->ctime_s == b->ctime_s &&
	       a->ctime_ns == b->ctime_ns;
}

/* ---- the .src index ------------------------------------------------------------ */

static bool is_regular(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The sha whose <sha>.src lists key and whose <sha>.raw exists, into ret_sha; false when none. */
static bool lookup_key(const char *images, const struct host_baseimg_key *key,
		       char ret_sha[SHA256_HEX_LEN + 1])
{
	DIR *d = opendir(images);
	struct dirent *de;
	bool found = false;

	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		_cleanup_free_ char *path = NULL, *data = NULL;
		char *save = NULL;

		if (!host_baseimg_is_sha_name(de->d_name, ".src"))
			continue;
		path = fs_path_join(images, de->d_name);
		memcpy(path + strlen(path) - 4, ".raw", 4);
		if (!is_regular(path))
			continue; /* its cache was removed: the key says nothing useful */
		memcpy(path + strlen(path) - 4, ".src", 4);
		if (fs_read_file(path, SRC_MAX, &data, NULL, NULL) < 0)
			continue;
		for (char *l = strtok_r(data, "\n", &save); l && !found;
		     l = strtok_r(NULL, "\n", &save)) {
			struct host_baseimg_key k;

			if (host_baseimg_key_parse(l, &k) && host_baseimg_key_equal(&k, key)) {
				memcpy(ret_sha, de->d_name, SHA256_HEX_LEN);
				ret_sha[SHA256_HEX_LEN] = '\0';
				found = true;
			}
		}
	}
	closedir(d);
	return found;
}

/* Add key (first) to <sha>.src, keeping the most recent other lines. */
static int record_key(const char *images, const char *sha, const struct host_baseimg_key *key,
		      const char *image, struct bg_err *err)
{
	_cleanup_free_ char *name = xasprintf("%s.src", sha);
	_cleanup_free_ char *path = fs_path_join(images, name);
	_cleanup_free_ char *old = NULL, *text = host_baseimg_key_line(key, image);
	char *save = NULL;
	int kept = 1;

	if (fs_read_file(path, SRC_MAX, &old, NULL, NULL) == 0) {
		for (char *l = strtok_r(old, "\n", &save); l && kept < SRC_KEYS_MAX;
		     l = strtok_r(NULL, "\n", &save)) {
			struct host_baseimg_key k;
			char *more;

			if (!host_baseimg_key_parse(l, &k) || host_baseimg_key_equal(&k, key))
				continue;
			more = xasprintf("%s%s\n", text, l);
			free(text);
			text = more;
			kept++;
		}
	}
	return fs_write_atomic(path, text, strlen(text), 0600, err);
}

/* ---- files ---------------------------------------------------------------------- */

/* <state>/images, made 0700 if missing; an existing one is made private. */
static int images_dir(const char *state_dir, char **ret, struct bg_err *err)
{
	_cleanup_free_ char *dir = fs_path_join(state_dir, HOST_IMAGES_DIR);
	struct stat st;
	int r;

	r = fs_mkdir_p(dir, 0700, err);
	if (r < 0)
		return r;
	if (lstat(dir, &st) < 0)
		return bg_error(err, errno, "stat '%s'", dir);
	if (!S_ISDIR(st.st_mode))
		return bg_errorf(err, ENOTDIR, "'%s' is not a directory", dir);
	if ((st.st_mode & 077) && chmod(dir, 0700) < 0)
		return bg_error(err, errno, "chmod '%s'", dir);
	*ret = TAKE_PTR(dir);
	return 0;
}

/*
 * A new temp file <images>/.tmp-<random><suffix>, 0600, that this process
 * holds an exclusive flock() on. gc removes a temp file only after taking
 * that lock itself and finding the name still on the file it locked; so
 * this checks the same after locking, and starts over if gc was quicker.
 */
static int tmp_create(const char *images, const char *suffix, char **ret_path, struct bg_err *err)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		_cleanup_free_ char *path = NULL;
		_cleanup_close_ int fd = -1;
		uint8_t rnd[8];
		char hex[17];
		struct stat a, b;
		int r;

		r = random_bytes(rnd, sizeof(rnd));
		if (r < 0)
			return bg_error(err, r, "random name");
		hex_encode(rnd, sizeof(rnd), hex);
		path = xasprintf("%s/" HOST_IMAGES_TMP_PREFIX "%s%s", images, hex, suffix);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return bg_error(err, errno, "create '%s'", path);
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			(void)unlink(path);
			return bg_error(err, errno, "lock '%s'", path);
		}
		if (fstat(fd, &a) < 0 || lstat(path, &b) < 0 || a.st_ino != b.st_ino ||
		    a.st_dev != b.st_dev)
			continue; /* removed by gc between open and flock */
		*ret_path = TAKE_PTR(path);
		return TAKE_FD(fd);
	}
	return bg_errorf(err, EEXIST, "cannot make a temp file in '%s'", images);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Copy src to dst (zero runs left as holes), hashing every byte read. */
static int copy_hash(int src, int dst, const char *image, char ret_sha[SHA256_HEX_LEN + 1],
		     struct bg_err *err)
{
	_cleanup_free_ uint8_t *buf = xmalloc(COPY_BUF);
	struct sha256_stream *h = sha256_stream_new();
	uint8_t md[SHA256_LEN];
	off_t off = 0;
	int r = 0;

	for (;;) {
		ssize_t n = pread(src, buf, COPY_BUF, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = bg_error(err, errno, "read '%s'", image);
			goto out;
		}
		if (n == 0)
			break;
		sha256_stream_update(h, buf, (size_t)n);
		for (ssize_t done = 0; !all_zero(buf, (size_t)n) && done < n;) {
			ssize_t w = pwrite(dst, buf + done, (size_t)(n - done), off + done);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				r = bg_error(err, errno, "write a copy of '%s'", image);
				goto out;
			}
			done += w;
		}
		off += n;
	}
	if (ftruncate(dst, off) < 0) {
		r = bg_error(err, errno, "size a copy of '%s'", image);
		goto out;
	}
	sha256_stream_finish(h, md);
	h = NULL;
	hex_encode(md, sizeof(md), ret_sha);
out:
	sha256_stream_free(h);
	return r;
}

/*
 * Refuse what would make qemu-img read other files: a backing file (named
 * in the message, read from fd) or an external data file.
 */
static int check_qcow2(int fd, const char *image, struct bg_err *err)
{
	uint8_t hdr[HOST_QCOW2_HEADER_MAX];
	struct host_qcow2_header h;
	ssize_t n = pread(fd, hdr, sizeof(hdr), 0);
	int r;

	if (n < 0)
		return bg_error(err, errno, "read '%s'", image);
	r = host_qcow2_parse(hdr, (size_t)n, &h, err);
	if (r < 0)
		return r;
	if (h.backing_offset != 0) {
		char name[256] = "";
		size_t len = h.backing_size < sizeof(name) - 1 ? h.backing_size : sizeof(name) - 1;
		ssize_t got = pread(fd, name, len, (off_t)h.backing_offset);

		name[got > 0 ? got : 0] = '\0';
		for (char *c = name; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
		return bg_errorf(err, EINVAL,
				 "qcow2 image with a backing file ('%s'): refused, since a "
				 "backing file can reach any file on the host; make a standalone "
				 "image with 'qemu-img convert -O qcow2 <image> <new image>'",
				 name);
	}
	if (h.incompatible & HOST_QCOW2_INCOMPAT_DATA_FILE)
		return bg_errorf(err, EINVAL,
				 "qcow2 image with an external data file: refused, since it can "
				 "reach any file on the host; make a standalone image with "
				 "'qemu-img convert -O qcow2 <image> <new image>'");
	if (h.size == 0)
		return bg_errorf(err, EINVAL, "qcow2 image of size 0");
	return 0;
}

/* Convert the private qcow2 copy into the cache (via a locked temp file). */
static int convert(const char *images, const char *copy, const char *cache, struct bg_err *err)
{
	_cleanup_free_ char *qemu_img = host_find_tool("qemu-img");
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (!qemu_img)
		return bg_errorf(err, ENOENT,
				 "'qemu-img' (Debian package qemu-utils) is needed for qcow2 "
				 "images");
	fd = tmp_create(images, ".raw", &tmp, err);
	if (fd < 0)
		return fd;
	{
		/* Both paths are ours and absolute: no option or protocol prefix in them. */
		const char *argv[] = { qemu_img, "convert", "-q", "-f", "qcow2",
				       "-O",	 "raw",	    copy, tmp,	NULL };

		r = proc_run(argv, CONVERT_TIMEOUT_MS, NULL, err);
		if (r < 0) {
			r = bg_err_wrap(err, "qemu-img convert");
			goto fail;
		}
	}
	if (fchmod(fd, 0600) < 0) {
		r = bg_error(err, errno, "chmod '%s'", tmp);
		goto fail;
	}
	if (fsync(fd) < 0) {
		r = bg_error(err, errno, "fsync '%s'", tmp);
		goto fail;
	}
	if (rename(tmp, cache) < 0) {
		r = bg_error(err, errno, "rename '%s'", tmp);
		goto fail;
	}
	(void)fs_fsync_parent(cache, NULL);
	return 0;
fail:
	(void)unlink(tmp);
	return r;
}

static int set_ret(char ret_path[4096], const char *path, struct bg_err *err)
{
	if (strlen(path) >= 4096)
		return bg_errorf(err, ENAMETOOLONG, "path too long: '%s'", path);
	memcpy(ret_path, path, strlen(path) + 1);
	return 0;
}

static int resolve_qcow2(const char *state_dir, const char *image, int src, const struct stat *st,
			 char ret_path[4096], struct bg_err *err)
{
	_cleanup_free_ char *images = NULL, *copy = NULL, *cache = NULL;
	_cleanup_close_ int copy_fd = -1;
	struct host_baseimg_key key, after;
	char sha[SHA256_HEX_LEN + 1];
	struct stat st2;
	int r;

	/* A clear error before reading the whole file; the copy is checked again below. */
	r = check_qcow2(src, image, err);
	if (r < 0)
		return r;
	r = images_dir(state_dir, &images, err);
	if (r < 0)
		return r;
	host_baseimg_key_of(st, &key);
	if (lookup_key(images, &key, sha)) {
		cache = host_baseimg_cache_path(state_dir, sha);
		return set_ret(ret_path, cache, err);
	}

	copy_fd = tmp_create(images, ".qcow2", &copy, err);
	if (copy_fd < 0)
		return copy_fd;
	r = copy_hash(src, copy_fd, image, sha, err);
	if (r < 0)
		goto out;
	if (fstat(src, &st2) < 0) {
		r = bg_error(err, errno, "stat '%s'", image);
		goto out;
	}
	host_baseimg_key_of(&st2, &after);
	if (!host_baseimg_key_equal(&key, &after)) {
		r = bg_errorf(err, EAGAIN, "the image changed while it was read; try again");
		goto out;
	}
	r = check_qcow2(copy_fd, image, err);
	if (r < 0)
		goto out;
	cache = host_baseimg_cache_path(state_dir, sha);
	if (!is_regular(cache)) {
		r = convert(images, copy, cache, err);
		if (r < 0)
			goto out;
	}
	r = record_key(images, sha, &key, image, err);
	if (r < 0)
		goto out;
	r = set_ret(ret_path, cache, err);
out:
	(void)unlink(copy);
	return r;
}

int host_baseimg_resolve(const char *state_dir, const char *image, int image_fd,
			 char ret_path[4096], struct bg_err *err)
{
	_cleanup_free_ char *abs_state = NULL;
	_cleanup_close_ int fd = -1;
	uint8_t hdr[HOST_QCOW2_HEADER_MAX];
	struct stat st;
	ssize_t n;
	int r;

	if (!image || image[0] != '/')
		return bg_errorf(err, EINVAL, "rootfs image '%s': the path must be absolute",
				 image ? image : "");
	if (!state_dir || !*state_dir)
		return bg_errorf(err, EINVAL, "base image: no state directory");
	fd = image_fd >= 0 ? fcntl(image_fd, F_DUPFD_CLOEXEC, 3)
			   : open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bg_error(err, errno, "rootfs image '%s'", image);
	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "rootfs image '%s'", image);
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "rootfs image '%s' is not a regular file", image);
	n = pread(fd, hdr, sizeof(hdr), 0);
	if (n < 0)
		return bg_error(err, errno, "rootfs image '%s'", image);
	if (!host_is_qcow2(hdr, (size_t)n))
		return set_ret(ret_path, image, err);
	if (state_dir[0] != '/') {
		/* The answer is a rootfs image path, which must be absolute. */
		abs_state = realpath(state_dir, NULL);
		if (!abs_state)
			return bg_error(err, errno, "state directory '%s'", state_dir);
		state_dir = abs_state;
	}
	r = resolve_qcow2(state_dir, image, fd, &st, ret_path, err);
	if (r < 0)
		return bg_err_wrap(err, "rootfs image '%s'", image);
	return 0;
}
