/*
 * bench_rootdisk.c - how long host_ops_linux.rootdisk_ensure() takes to make
 * a VM's root disk, per disk mode, against the size of the base image.
 *
 * The claim under test (host.h): creation time does not grow with the image
 * size in reflink (and dm-snapshot) mode, while copy mode moves every byte of
 * data. As root, in a private mount namespace, the program makes two XFS
 * filesystems on loop devices over sparse files in a temp dir, one with
 * reflink=1 and one with reflink=0, writes base images full of pseudo-random
 * data (not sparse) of each size to both, and for each size runs rounds that
 * interleave the variants (forward order on even rounds, reverse on odd),
 * each making a root disk in a fresh VM dir (timed: the ensure only) and
 * removing it again (untimed, followed by syncfs so freed blocks are settled
 * before the next sample). Caches are not dropped: the base image was just
 * written and is hot in the page cache for every variant.
 *
 *   bench_rootdisk [-r ROUNDS] [-w WARMUP] [-s MIB,MIB,...]
 *
 * Exit status: 0 all rounds succeeded and nothing leaked, 1 a failure, 2
 * usage, 77 cannot run here (not root, no mkfs.xfs).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

#define MIB (1024ULL * 1024ULL)
#define MAX_SIZES 8
#define MAX_ROUNDS 100
#define WRITE_CHUNK (4 * MIB)
#define EXIT_SKIP 77

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ---- filesystems ------------------------------------------------------------- */

enum bench_fs {
	FS_REFLINK, /* XFS, -m reflink=1 */
	FS_PLAIN,   /* XFS, -m reflink=0 */
	FS_MAX
};

struct xfs {
	bool reflink;
	char *img; /* backing file in the temp dir */
	char *mnt;
	char dev[HOST_LOOP_DEV_MAX];
	bool mounted;
};

/* An XFS of size bytes on a loop over a sparse file, mounted at mnt (in our namespace). */
static int xfs_setup(struct xfs *x, const char *mkfs, uint64_t size, struct bg_err *err)
{
	const char *argv[] = { mkfs,   "-q", "-m", x->reflink ? "reflink=1" : "reflink=0",
			       x->img, NULL };
	_cleanup_close_ int fd = open(x->img, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	_cleanup_close_ int loop_fd = -1;
	int r;

	if (fd < 0)
		return bg_error(err, errno, "create '%s'", x->img);
	if (ftruncate(fd, (off_t)size) < 0)
		return bg_error(err, errno, "size '%s'", x->img);
	r = proc_run(argv, 120000, NULL, err);
	if (r < 0)
		return bg_err_wrap(err, "mkfs.xfs '%s'", x->img);
	if (mkdir(x->mnt, 0700) < 0)
		return bg_error(err, errno, "mkdir '%s'", x->mnt);
	loop_fd = host_loop_attach(x->img, false, x->dev, err);
	if (loop_fd < 0)
		return loop_fd;
	if (mount(x->dev, x->mnt, "xfs", 0, NULL) < 0)
		return bg_error(err, errno, "mount %s on '%s'", x->dev, x->mnt);
	/* The mount holds the loop now; it detaches itself (AUTOCLEAR) at umount. */
	x->mounted = true;
	return 0;
}

static bool loop_gone(void *arg)
{
	char backing[4096];

	return host_loop_backing(arg, backing, sizeof(backing)) == -ENXIO;
}

/* Unmount, wait for the loop to go, remove the mount point and the backing file. */
static int xfs_teardown(struct xfs *x, struct bg_err *err)
{
	int r = 0;

	if (!x->img)
		return 0;
	if (x->mounted) {
		if (umount2(x->mnt, 0) < 0)
			return bg_error(err, errno, "umount '%s'", x->mnt);
		x->mounted = false;
		if (!test_wait_for(loop_gone, x->dev, 10000))
			r = bg_errorf(err, EBUSY, "%s still attached after umount", x->dev);
	}
	if (rmdir(x->mnt) < 0 && errno != ENOENT && r == 0)
		r = bg_error(err, errno, "rmdir '%s'", x->mnt);
	if (unlink(x->img) < 0 && errno != ENOENT && r == 0)
		r = bg_error(err, errno, "unlink '%s'", x->img);
	return r;
}

static int syncfs_path(const char *path, struct bg_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return bg_error(err, errno, "open '%s'", path);
	if (syncfs(fd) < 0)
		return bg_error(err, errno, "syncfs '%s'", path);
	return 0;
}

/* ---- base images ------------------------------------------------------------- */

/* xorshift64*: cheap pseudo-random bytes, so the images hold data, not zeros. */
static void fill_random(uint64_t *words, size_t n, uint64_t *state)
{
	uint64_t x = *state;

	for (size_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		words[i] = x * 0x2545F4914F6CDD1DULL;
	}
	*state = x;
}

/* Write the same bytes of pseudo-random data to each path, then fsync them. */
static int write_base(char *const paths[], int n_paths, uint64_t bytes, uint64_t seed,
		      struct bg_err *err)
{
	_cleanup_free_ uint64_t *buf = xmalloc(WRITE_CHUNK);
	int fds[FS_MAX] = { -1, -1 };
	uint64_t state = seed | 1;
	int r = 0;

	for (int i = 0; i < n_paths; i++) {
		fds[i] = open(paths[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fds[i] < 0) {
			r = bg_error(err, errno, "create '%s'", paths[i]);
			goto out;
		}
	}
	for (uint64_t off = 0; off < bytes; off += WRITE_CHUNK) {
		size_t len = bytes - off < WRITE_CHUNK ? (size_t)(bytes - off) : WRITE_CHUNK;

		fill_random(buf, len / sizeof(uint64_t), &state);
		for (int i = 0; i < n_paths; i++) {
			for (size_t done = 0; done < len;) {
				ssize_t w = pwrite(fds[i], (char *)buf + done, len - done,
						   (off_t)(off + done));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0) {
					r = bg_error(err, w < 0 ? errno : EIO, "write '%s'",
						     paths[i]);
					goto out;
				}
				done += (size_t)w;
			}
		}
	}
	for (int i = 0; i < n_paths; i++)
		if (fsync(fds[i]) < 0) {
			r = bg_error(err, errno, "fsync '%s'", paths[i]);
			goto out;
		}
out:
	for (int i = 0; i < n_paths; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return r;
}

/*
 * Bytes in path's extents, how many of them are shared with another file, and
 * the number of extents (FIEMAP). ret_count may be NULL.
 */
static int extents_shared(const char *path, uint64_t *ret_total, uint64_t *ret_shared,
			  uint64_t *ret_count, struct bg_err *err)
{
	enum {
		N_EXT = 256
	};
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ struct fiemap *fm =
		xcalloc(1, sizeof(*fm) + N_EXT * sizeof(struct fiemap_extent));
	uint64_t total = 0, shared = 0, count = 0, start = 0;
	bool last = false;

	if (fd < 0)
		return bg_error(err, errno, "open '%s'", path);
	while (!last) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = start;
		fm->fm_length = FIEMAP_MAX_OFFSET - start;
		fm->fm_flags = FIEMAP_FLAG_SYNC;
		fm->fm_extent_count = N_EXT;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0)
			return bg_error(err, errno, "FIEMAP '%s'", path);
		if (fm->fm_mapped_extents == 0)
			break;
		for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &fm->fm_extents[i];

			total += e->fe_length;
			count++;
			if (e->fe_flags & FIEMAP_EXTENT_SHARED)
				shared += e->fe_length;
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				last = true;
			start = e->fe_logical + e->fe_length;
		}
	}
	*ret_total = total;
	*ret_shared = shared;
	if (ret_count)
		*ret_count = count;
	return 0;
}

/* ---- variants and rounds ------------------------------------------------------- */

struct variant {
	const char *name;
	enum disk_mode mode;
	enum bench_fs fs;
	const char *what;
};

static const struct variant variants_all[] = {
	{ "reflink", DISK_MODE_REFLINK, FS_REFLINK, "DISK_MODE_REFLINK on XFS reflink=1" },
	{ "copy", DISK_MODE_COPY, FS_PLAIN, "DISK_MODE_COPY on XFS reflink=0 (the baseline)" },
	{ "copy-on-reflink-fs", DISK_MODE_COPY, FS_REFLINK,
	  "DISK_MODE_COPY on XFS reflink=1 (copy_file_range may clone)" },
	{ "dm-snapshot", DISK_MODE_DM_SNAPSHOT, FS_PLAIN,
	  "DISK_MODE_DM_SNAPSHOT, image and COW file on XFS reflink=0" },
};
#define N_VARIANTS_ALL (sizeof(variants_all) / sizeof(variants_all[0]))

struct sample {
	double ms;
	double shared_pct; /* < 0: not a file */
	uint64_t extents;  /* the disk file's extents */
};

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/*
 * Make one root disk of variant v from image (image_bytes long) in a fresh
 * VM dir under mnt, time the ensure, check it, and remove it again. With
 * verify, the disk's contents are compared with the image.
 */
static int one_round(const struct variant *v, const char *mnt, const char *image,
		     uint64_t image_bytes, bool verify, struct sample *ret, struct bg_err *err)
{
	_cleanup_free_ char *vm_dir = NULL, *cow = NULL;
	struct host_disk disk;
	struct timespec t0, t1;
	struct host_vm vm;
	struct stat st;
	char id[9];
	int r, r2;

	test_unique_suffix(id, 8);
	vm_dir = xasprintf("%s/vms/%s", mnt, id);
	cow = xasprintf("%s/root.img", vm_dir);
	r = fs_mkdir_p(vm_dir, 0700, err);
	if (r < 0)
		return r;
	vm = (struct host_vm){
		.id = id,
		.vm_dir = vm_dir,
		.rootfs_image = image,
		.rootfs_size_mib = 0,
		.cow_disk = cow,
	};
	ret->shared_pct = -1;
	ret->extents = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = host_ops_linux.rootdisk_ensure(&vm, v->mode, &disk, err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ret->ms = elapsed_ms(&t0, &t1);
	if (r < 0)
		goto out;

	if (disk.mode != v->mode) {
		r = bg_errorf(err, EINVAL, "%s: asked for %s, got %s", v->name,
			      disk_mode_to_string(v->mode), disk_mode_to_string(disk.mode));
		goto out;
	}
	if (v->mode != DISK_MODE_DM_SNAPSHOT) {
		uint64_t total = 0, shared = 0;

		if (stat(disk.path, &st) < 0 || (uint64_t)st.st_size != image_bytes) {
			r = bg_errorf(err, EINVAL, "%s: '%s' is not %llu bytes", v->name, disk.path,
				      (unsigned long long)image_bytes);
			goto out;
		}
		r = extents_shared(disk.path, &total, &shared, &ret->extents, err);
		if (r < 0)
			goto out;
		ret->shared_pct = total ? 100.0 * (double)shared / (double)total : 0;
	}
	if (verify && !hosttest_files_equal(image, disk.path, image_bytes)) {
		r = bg_errorf(err, EIO, "%s: '%s' differs from the image", v->name, disk.path);
		goto out;
	}
out:
	r2 = host_ops_linux.rootdisk_remove(&vm, r < 0 ? NULL : err);
	if (r >= 0 && r2 < 0)
		r = r2;
	if (rmdir(vm_dir) < 0 && r >= 0)
		r = bg_error(err, errno, "rmdir '%s'", vm_dir);
	/* Let the filesystem finish freeing what was removed before the next sample. */
	r2 = syncfs_path(mnt, r < 0 ? NULL : err);
	if (r >= 0 && r2 < 0)
		r = r2;
	return r;
}

/* ---- statistics and output ------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct stats {
	double median, min, max, shared_pct;
	uint64_t extents; /* the most of any round */
};

static struct stats summarize(const struct sample *s, int n)
{
	double v[MAX_ROUNDS];
	struct stats st = { .shared_pct = s[0].shared_pct };

	for (int i = 0; i < n; i++) {
		v[i] = s[i].ms;
		if (s[i].extents > st.extents)
			st.extents = s[i].extents;
		if (s[i].shared_pct < st.shared_pct)
			st.shared_pct = s[i].shared_pct; /* the least shared round */
	}
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	st.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	st.min = v[0];
	st.max = v[n - 1];
	return st;
}

static void print_header(int rounds, int warmup, const char *tmp)
{
	_cleanup_free_ char *osr = NULL;
	char date[64], distro[128] = "unknown";
	struct utsname u;
	time_t now = time(NULL);
	struct tm tm;

	if (fs_read_file("/etc/os-release", 65536, &osr, NULL, NULL) == 0) {
		const char *p = strstr(osr, "PRETTY_NAME=\"");

		if (p) {
			p += strlen("PRETTY_NAME=\"");
			snprintf(distro, sizeof(distro), "%.*s", (int)strcspn(p, "\"\n"), p);
		}
	}
	uname(&u);
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", &tm);
	printf("bench_rootdisk: time of host_ops_linux.rootdisk_ensure() per disk mode and "
	       "base image size\n");
	printf("date:     %s\n", date);
	printf("machine:  %ld cpus, %s, kernel %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), distro,
	       u.release, u.machine);
	printf("method:   %d rounds per size (+%d warm-up, not counted, contents verified), "
	       "variants interleaved, order reversed every other round\n",
	       rounds, warmup);
	printf("caches:   not dropped; each base image is written just before its rounds and is "
	       "hot in the page cache for every variant\n");
	printf("disks:    two XFS filesystems (reflink=1, reflink=0) on loop devices over sparse "
	       "files in %s; syncfs after each removal\n",
	       tmp);
	printf("timed:    rootdisk_ensure() only (it fsyncs the new disk); rootdisk_remove() is "
	       "not timed\n");
}

static int parse_sizes(const char *s, uint64_t *sizes, int *ret_n)
{
	int n = 0;

	while (*s) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = strtoull(s, &end, 10);
		if (errno || end == s || v == 0 || v > 16384 || n == MAX_SIZES ||
		    (*end && *end != ','))
			return -EINVAL;
		sizes[n++] = v;
		s = *end ? end + 1 : end;
	}
	if (n == 0)
		return -EINVAL;
	*ret_n = n;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_rootdisk [-r ROUNDS] [-w WARMUP] [-s MIB,MIB,...]\n"
		   "  -r ROUNDS  timed rounds per size and variant (default 9, max 100)\n"
		   "  -w WARMUP  untimed rounds first, contents verified (default 1)\n"
		   "  -s SIZES   base image sizes in MiB (default 64,256,1024)\n"
		   "Runs as root; makes XFS filesystems on loop devices in a private mount "
		   "namespace.\n");
}

/* ---- main ------------------------------------------------------------------------ */

struct bench {
	char *tmp;
	struct xfs xfs[FS_MAX];
};

/* Remove whatever is left in the mounts, unmount, detach, remove the temp dir. */
static int bench_teardown(struct bench *b)
{
	struct bg_err err = { 0 };
	int r = 0;

	for (int i = 0; i < FS_MAX; i++) {
		struct xfs *x = &b->xfs[i];

		if (x->mounted) {
			_cleanup_free_ char *vms = xasprintf("%s/vms", x->mnt);
			_cleanup_free_ char *base = xasprintf("%s/base.img", x->mnt);
			int left;

			(void)fs_remove_tree(vms, NULL);
			(void)unlink(base);
			left = hosttest_count_entries(x->mnt);
			if (left != 0) {
				fprintf(stderr, "bench_rootdisk: %d entries left in '%s'\n", left,
					x->mnt);
				r = -EEXIST;
			}
		}
		if (xfs_teardown(x, &err) < 0) {
			fprintf(stderr, "bench_rootdisk: %s\n", err.msg);
			r = -EIO;
		}
	}
	if (b->tmp && fs_remove_tree(b->tmp, &err) < 0) {
		fprintf(stderr, "bench_rootdisk: %s\n", err.msg);
		r = -EIO;
	}
	return r;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rounds", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "sizes", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t sizes[MAX_SIZES] = { 64, 256, 1024 };
	int n_sizes = 3, rounds = 9, warmup = 1, c, fds_before, loops, status = 0;
	const struct variant *variants[N_VARIANTS_ALL];
	int n_variants = 0;
	struct sample(*samples)[N_VARIANTS_ALL][MAX_ROUNDS] = NULL;
	_cleanup_free_ char *mkfs = NULL;
	struct bench b = { 0 };
	struct bg_err err = { 0 };
	uint64_t base_extents[MAX_SIZES][FS_MAX] = { { 0 } };
	uint64_t max_size = 0;
	bool dm;

	while ((c = getopt_long(argc, argv, "r:w:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			rounds = atoi(optarg);
			if (rounds < 1 || rounds > MAX_ROUNDS) {
				usage(stderr);
				return 2;
			}
			break;
		case 'w':
			warmup = atoi(optarg);
			if (warmup < 0 || warmup > 10) {
				usage(stderr);
				return 2;
			}
			break;
		case 's':
			if (parse_sizes(optarg, sizes, &n_sizes) < 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (geteuid() != 0) {
		printf("bench_rootdisk: cannot run: needs root (loop devices, mounts)\n");
		return EXIT_SKIP;
	}
	mkfs = host_find_tool("mkfs.xfs");
	if (!mkfs) {
		printf("bench_rootdisk: cannot run: mkfs.xfs (xfsprogs) is not installed\n");
		return EXIT_SKIP;
	}
	/* Our own mount namespace: the mounts are invisible outside and die with us. */
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		fprintf(stderr, "bench_rootdisk: private mount namespace: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	dm = host_dm_available();
	for (size_t i = 0; i < N_VARIANTS_ALL; i++)
		if (variants_all[i].mode != DISK_MODE_DM_SNAPSHOT || dm)
			variants[n_variants++] = &variants_all[i];
	for (int i = 0; i < n_sizes; i++)
		if (sizes[i] > max_size)
			max_size = sizes[i];

	fds_before = hosttest_count_fds();
	b.tmp = test_tmpdir("banger-bench-rootdisk");
	print_header(rounds, warmup, b.tmp);
	for (int i = 0; i < n_variants; i++)
		printf("variant:  %-20s %s\n", variants[i]->name, variants[i]->what);
	if (!dm)
		printf("variant:  %-20s NOT MEASURED: no /dev/mapper/control, device-mapper is "
		       "not in this kernel\n",
		       "dm-snapshot");
	printf("\n");
	fflush(stdout);

	for (int i = 0; i < FS_MAX; i++) {
		struct xfs *x = &b.xfs[i];

		x->reflink = i == FS_REFLINK;
		x->img = xasprintf("%s/%s.xfs", b.tmp, x->reflink ? "reflink" : "plain");
		x->mnt = xasprintf("%s/%s", b.tmp, x->reflink ? "reflink" : "plain");
		/* The base, one disk made from it, and room for XFS's own metadata. */
		if (xfs_setup(x, mkfs, (2 * max_size + 512) * MIB, &err) < 0) {
			fprintf(stderr, "bench_rootdisk: %s\n", err.msg);
			status = 1;
			goto out;
		}
	}

	samples = xcalloc((size_t)n_sizes, sizeof(*samples));
	for (int si = 0; si < n_sizes && !interrupted; si++) {
		uint64_t bytes = sizes[si] * MIB;
		char *bases[FS_MAX];
		int64_t t_start = now_mono_ms();

		for (int i = 0; i < FS_MAX; i++)
			bases[i] = xasprintf("%s/base.img", b.xfs[i].mnt);
		if (write_base(bases, FS_MAX, bytes, 0x62616e676572ULL + sizes[si], &err) < 0) {
			fprintf(stderr, "bench_rootdisk: base image: %s\n", err.msg);
			status = 1;
		}
		/* A clone's cost follows the image's extents (metadata), not its bytes. */
		for (int i = 0; i < FS_MAX && status == 0; i++) {
			uint64_t total, shared;

			if (extents_shared(bases[i], &total, &shared, &base_extents[si][i], &err) <
			    0) {
				fprintf(stderr, "bench_rootdisk: base image: %s\n", err.msg);
				status = 1;
			}
		}
		for (int round = 0; status == 0 && round < warmup + rounds && !interrupted;
		     round++) {
			for (int k = 0; k < n_variants && status == 0; k++) {
				int vi = round % 2 ? n_variants - 1 - k : k;
				const struct variant *v = variants[vi];
				struct sample s;

				if (one_round(v, b.xfs[v->fs].mnt, bases[v->fs], bytes,
					      round < warmup || (warmup == 0 && round == 0), &s,
					      &err) < 0) {
					fprintf(stderr,
						"bench_rootdisk: %llu MiB, %s, round %d: %s\n",
						(unsigned long long)sizes[si], v->name, round,
						err.msg);
					status = 1;
					break;
				}
				if (round >= warmup)
					samples[si][vi][round - warmup] = s;
			}
		}
		for (int i = 0; i < FS_MAX; i++) {
			if (unlink(bases[i]) < 0) {
				fprintf(stderr, "bench_rootdisk: unlink '%s': %s\n", bases[i],
					strerror(errno));
				status = 1;
			}
			(void)syncfs_path(b.xfs[i].mnt, NULL);
			free(bases[i]);
		}
		fprintf(stderr, "bench_rootdisk: %llu MiB done in %.1f s\n",
			(unsigned long long)sizes[si], (double)(now_mono_ms() - t_start) / 1e3);
		if (status)
			break;
	}
	if (interrupted) {
		fprintf(stderr, "bench_rootdisk: interrupted\n");
		status = 1;
	}

	if (status == 0) {
		printf("%9s  %-20s %3s %11s %11s %11s %8s %8s\n", "size_MiB", "variant", "n",
		       "median_ms", "min_ms", "max_ms", "shared", "extents");
		for (int si = 0; si < n_sizes; si++) {
			for (int vi = 0; vi < n_variants; vi++) {
				struct stats st = summarize(samples[si][vi], rounds);
				char shared[16] = "n/a", extents[24] = "n/a";

				if (st.shared_pct >= 0) {
					snprintf(shared, sizeof(shared), "%.0f%%", st.shared_pct);
					snprintf(extents, sizeof(extents), "%llu",
						 (unsigned long long)st.extents);
				}
				printf("%9llu  %-20s %3d %11.2f %11.2f %11.2f %8s %8s\n",
				       (unsigned long long)sizes[si], variants[vi]->name, rounds,
				       st.median, st.min, st.max, shared, extents);
			}
		}
		printf("\nbase image extents:");
		for (int si = 0; si < n_sizes; si++)
			printf("  %llu MiB: %llu (reflink=1 fs), %llu (reflink=0 fs);",
			       (unsigned long long)sizes[si],
			       (unsigned long long)base_extents[si][FS_REFLINK],
			       (unsigned long long)base_extents[si][FS_PLAIN]);
		printf("\n");
		printf("\nratio of medians, per size (variant / reflink):\n");
		printf("%9s", "size_MiB");
		for (int vi = 1; vi < n_variants; vi++)
			printf("  %20s", variants[vi]->name);
		printf("\n");
		for (int si = 0; si < n_sizes; si++) {
			double ref = summarize(samples[si][0], rounds).median;

			printf("%9llu", (unsigned long long)sizes[si]);
			for (int vi = 1; vi < n_variants; vi++)
				printf("  %19.1fx",
				       summarize(samples[si][vi], rounds).median / ref);
			printf("\n");
		}
		printf("\ngrowth of each variant's median from %llu to %llu MiB:",
		       (unsigned long long)sizes[0], (unsigned long long)sizes[n_sizes - 1]);
		for (int vi = 0; vi < n_variants; vi++)
			printf("  %s %.1fx", variants[vi]->name,
			       summarize(samples[n_sizes - 1][vi], rounds).median /
				       summarize(samples[0][vi], rounds).median);
		printf("\n");
		if (!dm)
			printf("dm-snapshot: not measured (no /dev/mapper/control: device-mapper "
			       "is not in this kernel)\n");
	}

out:
	free(samples);
	if (bench_teardown(&b) < 0)
		status = 1;
	/* Nothing leaked: no loop on our files, no temp dir, no fd. */
	loops = hosttest_count_loops(b.tmp);
	if (loops != 0) {
		fprintf(stderr, "bench_rootdisk: %d loop devices left on '%s'\n", loops, b.tmp);
		status = 1;
	}
	if (fs_exists(b.tmp)) {
		fprintf(stderr, "bench_rootdisk: '%s' is still there\n", b.tmp);
		status = 1;
	}
	if (hosttest_count_fds() != fds_before) {
		fprintf(stderr, "bench_rootdisk: %d fds open, %d before\n", hosttest_count_fds(),
			fds_before);
		status = 1;
	}
	for (int i = 0; i < FS_MAX; i++) {
		free(b.xfs[i].img);
		free(b.xfs[i].mnt);
	}
	free(b.tmp);
	fflush(stdout);
	return status;
}
