/*
 * test_host_baseimg.c - qcow2 base images for real: images made here with
 * mke2fs -d and qemu-img, resolved through host_ops_linux.baseimg_resolve
 * into the raw cache under a temp state dir, and the cache's part of gc. A
 * loop device (for "a running dm-snapshot VM uses it") is found by its
 * backing file and detached before the test ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "reconciler/host/host-internal.h"
#include "reconciler/host/host.h"
#include "tests/lib/hosttest.h"
#include "tests/lib/testutil.h"

static const char *skip_reason;

struct fixture {
	char *dir;    /* temp dir */
	char *state;  /* <dir>/state */
	char *images; /* <dir>/state/images */
	char *raw;    /* <dir>/src.raw: a 16 MiB ext4 with /hello */
	char *qcow2;  /* <dir>/src.qcow2: the same as qcow2 */
};

static int setup(void **state)
{
	struct fixture *f;

	*state = NULL;
	if (skip_reason)
		return 0;
	f = xcalloc(1, sizeof(*f));
	f->dir = test_tmpdir("banger-baseimg");
	f->state = xasprintf("%s/state", f->dir);
	f->images = xasprintf("%s/images", f->state);
	f->raw = xasprintf("%s/src.raw", f->dir);
	f->qcow2 = xasprintf("%s/src.qcow2", f->dir);
	assert_int_equal(fs_mkdir_p(f->state, 0700, NULL), 0);
	assert_int_equal(hosttest_sh("mkdir %s/tree && echo hello > %s/tree/hello && "
				     "mke2fs -q -F -t ext4 -d %s/tree %s 16M && "
				     "qemu-img convert -f raw -O qcow2 %s %s",
				     f->dir, f->dir, f->dir, f->raw, f->raw, f->qcow2),
			 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int loops;

	if (!f)
		return 0;
	loops = hosttest_count_loops(f->dir);
	if (loops > 0)
		(void)hosttest_sh("losetup -l -O NAME,BACK-FILE -n | grep ' %s' | awk '{print $1}' "
				  "| xargs -r -n1 losetup -d",
				  f->dir);
	test_rmtree(f->dir);
	free(f->dir);
	free(f->state);
	free(f->images);
	free(f->raw);
	free(f->qcow2);
	free(f);
	assert_int_equal(loops, 0);
	return 0;
}

/* sha256 of a file's content, 64 hex chars (owned). */
static char *file_sha(const char *path)
{
	char *out = hosttest_sh_output("sha256sum < %s | cut -c1-64", path);

	assert_non_null(out);
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(strlen(out), 64);
	return out;
}

/* Entries of the images dir whose name starts with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
	_cleanup_free_ char *n =
		hosttest_sh_output("ls -A %s 2>/dev/null | grep -c '^%s' || true", dir, prefix);

	return n ? atoi(n) : -1;
}

static void test_raw_is_itself(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	char path[4096];

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->raw, -1, path, &err), 0);
	assert_string_equal(path, f->raw);
	/* Nothing is made for a raw image. */
	assert_false(hosttest_exists(f->images));
	/* Bad input. */
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, "rel.img", -1, path, &err),
			 -EINVAL);
	assert_int_equal(host_ops_linux.baseimg_resolve("", f->qcow2, -1, path, &err), -EINVAL);
	assert_int_equal(host_ops_linux.baseimg_resolve("no/such/state", f->qcow2, -1, path, &err),
			 -ENOENT);
	assert_int_equal(
		host_ops_linux.baseimg_resolve(f->state, "/nonexistent/x.qcow2", -1, path, &err),
		-ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/x.qcow2"));
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->dir, -1, path, &err), -EINVAL);
}

static void test_qcow2_cache(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *sha = file_sha(f->qcow2);
	_cleanup_free_ char *want = xasprintf("%s/%s.raw", f->images, sha);
	_cleanup_free_ char *src = xasprintf("%s/%s.src", f->images, sha);
	_cleanup_free_ char *src1 = NULL, *src2 = NULL, *sha2 = NULL, *want2 = NULL;
	char path[4096], path2[4096];
	struct stat st1, st2;

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->qcow2, -1, path, &err), 0);
	printf("resolved %s -> %s\n", f->qcow2, path);
	assert_string_equal(path, want);
	/* The cache holds exactly the image's raw content, privately. */
	assert_int_equal(hosttest_sh("cmp %s %s", f->raw, path), 0);
	assert_int_equal(hosttest_sh("qemu-img compare -q -f raw -F qcow2 %s %s", path, f->qcow2),
			 0);
	assert_int_equal(stat(path, &st1), 0);
	assert_int_equal(st1.st_mode & 07777, 0600);
	assert_int_equal(stat(f->images, &st2), 0);
	assert_int_equal(st2.st_mode & 07777, 0700);
	/* The index names the source; no temp file is left. */
	src1 = hosttest_sh_output("cat %s", src);
	assert_non_null(src1);
	assert_non_null(strstr(src1, f->qcow2));
	assert_int_equal(count_prefixed(f->images, ".tmp-"), 0);

	/* Resolved again: the same file, not converted again (same inode and mtime). */
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->qcow2, -1, path2, &err), 0);
	assert_string_equal(path2, want);
	assert_int_equal(stat(path2, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);
	assert_int_equal(st1.st_mtim.tv_sec, st2.st_mtim.tv_sec);
	assert_int_equal(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
	src2 = hosttest_sh_output("cat %s", src);
	assert_string_equal(src1, src2);

	/* The image changes: a new cache; the old one stays (gc's business). */
	assert_int_equal(hosttest_sh("echo changed > %s/tree/hello && "
				     "mke2fs -q -F -t ext4 -d %s/tree %s 16M && "
				     "qemu-img convert -f raw -O qcow2 %s %s",
				     f->dir, f->dir, f->raw, f->raw, f->qcow2),
			 0);
	sha2 = file_sha(f->qcow2);
	want2 = xasprintf("%s/%s.raw", f->images, sha2);
	assert_string_not_equal(sha, sha2);
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->qcow2, -1, path2, &err), 0);
	assert_string_equal(path2, want2);
	assert_int_equal(hosttest_sh("cmp %s %s", f->raw, path2), 0);
	assert_true(hosttest_exists(want));
	assert_int_equal(count_prefixed(f->images, ".tmp-"), 0);

	/* A copy of the same content elsewhere shares the cache. */
	assert_int_equal(hosttest_sh("cp %s %s/copy.qcow2", f->qcow2, f->dir), 0);
	{
		_cleanup_free_ char *copy = xasprintf("%s/copy.qcow2", f->dir);

		assert_int_equal(host_ops_linux.baseimg_resolve(f->state, copy, -1, path, &err), 0);
		assert_string_equal(path, want2);
	}
	assert_int_equal(count_prefixed(f->images, ""), 4); /* two .raw, two .src */

	/* A relative state dir still gives an absolute path. */
	{
		_cleanup_free_ char *abs = realpath(want2, NULL);

		assert_int_equal(chdir(f->dir), 0);
		assert_int_equal(host_ops_linux.baseimg_resolve("state", f->qcow2, -1, path, &err),
				 0);
		assert_int_equal(chdir("/"), 0);
		assert_non_null(abs);
		assert_string_equal(path, abs);
	}
}

/*
 * The hash is looked up by stat(), not recomputed: point the index entry
 * of the image at another (made-up) cache, and resolve answers that one.
 */
static void test_hash_remembered(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *sha = file_sha(f->qcow2);
	static const char other[] =
		"0000000000000000000000000000000000000000000000000000000000000001";
	char path[4096];

	if (skip_reason)
		skip();
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->qcow2, -1, path, &err), 0);
	assert_int_equal(hosttest_sh("cd %s && mv %s.src %s.src && echo fake > %s.raw", f->images,
				     sha, other, other),
			 0);
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->qcow2, -1, path, &err), 0);
	assert_non_null(strstr(path, other));
	/* Once that cache is gone, the image is read and hashed again, and converted. */
	assert_int_equal(hosttest_sh("cd %s && rm %s.raw %s.raw", f->images, other, sha), 0);
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->qcow2, -1, path, &err), 0);
	assert_non_null(strstr(path, sha));
	assert_int_equal(hosttest_sh("cmp %s %s", f->raw, path), 0);
	/* A touched image (same content) is hashed again, and finds the same cache. */
	assert_int_equal(hosttest_sh("touch %s", f->qcow2), 0);
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->qcow2, -1, path, &err), 0);
	assert_non_null(strstr(path, sha));
	assert_int_equal(count_prefixed(f->images, ".tmp-"), 0);
}

static void test_refused(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *overlay = xasprintf("%s/overlay.qcow2", f->dir);
	_cleanup_free_ char *datafile = xasprintf("%s/ext.qcow2", f->dir);
	_cleanup_free_ char *broken = xasprintf("%s/broken.qcow2", f->dir);
	char path[4096];

	if (skip_reason)
		skip();
	/* A backing file: refused, naming it, before anything is read or made. */
	assert_int_equal(
		hosttest_sh("qemu-img create -q -f qcow2 -b %s -F qcow2 %s", f->qcow2, overlay), 0);
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, overlay, -1, path, &err),
			 -EINVAL);
	printf("backing file: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "backing file"));
	assert_non_null(strstr(err.msg, f->qcow2));
	assert_non_null(strstr(err.msg, overlay));
	/* An external data file: refused too. */
	assert_int_equal(hosttest_sh("qemu-img create -q -f qcow2 -o data_file=%s/ext.data %s 16M",
				     f->dir, datafile),
			 0);
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, datafile, -1, path, &err),
			 -EINVAL);
	printf("data file: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "external data file"));
	/* A qcow2 whose L1 table offset is invalid: qemu-img fails; no cache, no temp file. */
	assert_int_equal(hosttest_sh("cp %s %s && printf '\\0\\0\\0\\0\\0\\0\\0\\7' | "
				     "dd of=%s bs=1 seek=40 conv=notrunc 2>/dev/null",
				     f->qcow2, broken, broken),
			 0);
	assert_true(host_ops_linux.baseimg_resolve(f->state, broken, -1, path, &err) < 0);
	printf("broken: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "qemu-img"));
	assert_int_equal(count_prefixed(f->images, ""), 0);
	/* A file with the magic and nothing else. */
	test_write_file(broken, "QFI\xfb");
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, broken, -1, path, &err), -EINVAL);
	assert_int_equal(count_prefixed(f->images, ""), 0);
}

static struct host_orphan *find(struct host_orphan *o, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(o[i].name, name) == 0)
			return &o[i];
	return NULL;
}

static void test_gc(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	_cleanup_free_ char *used = NULL, *unused = NULL, *looped = NULL, *vm_dir = NULL;
	_cleanup_free_ char *base = NULL, *stale = NULL, *held = NULL, *lone_src = NULL;
	_cleanup_free_ char *dev = NULL, *unused_src = NULL, *other = NULL;
	char path[4096], id[9];
	struct host_orphan *o = NULL;
	size_t n = 0;
	int held_fd;

	if (skip_reason)
		skip();
	/* Three caches: one a VM dir names, one nothing names, one under a loop device. */
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, f->qcow2, -1, path, &err), 0);
	used = xstrdup(path);
	test_unique_suffix(id, 8);
	vm_dir = xasprintf("%s/vms/%s", f->state, id);
	assert_int_equal(fs_mkdir_p(vm_dir, 0700, NULL), 0);
	base = xasprintf("%s/root.base", vm_dir);
	test_write_file(base, used);
	other = xasprintf("%s/other.qcow2", f->dir);
	assert_int_equal(hosttest_sh("qemu-img create -q -f qcow2 %s 8M", other), 0);
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, other, -1, path, &err), 0);
	unused = xstrdup(path);
	unused_src = xstrdup(unused);
	memcpy(unused_src + strlen(unused_src) - 4, ".src", 4);
	assert_int_equal(hosttest_sh("qemu-img create -q -f qcow2 %s 4M", other), 0);
	assert_int_equal(host_ops_linux.baseimg_resolve(f->state, other, -1, path, &err), 0);
	looped = xstrdup(path);
	dev = hosttest_sh_output("losetup -r -f --show %s", looped);
	assert_non_null(dev);
	dev[strcspn(dev, "\n")] = '\0';
	/* A temp file nobody holds (a crashed conversion), one a conversion holds now. */
	stale = xasprintf("%s/.tmp-0123456789abcdef.raw", f->images);
	test_write_file(stale, "half");
	held = xasprintf("%s/.tmp-fedcba9876543210.raw", f->images);
	test_write_file(held, "in progress");
	held_fd = open(held, O_RDONLY | O_CLOEXEC);
	assert_true(held_fd >= 0);
	assert_int_equal(flock(held_fd, LOCK_EX), 0);
	/* An index without its cache. */
	lone_src = xasprintf("%s/%064d.src", f->images, 7);
	test_write_file(lone_src, "v1 1 2 3 4 5 6 7 /x\n");

	/* The VM id is unknown (cmd_gc passes none): the VM dir is an orphan, its cache is not. */
	assert_int_equal(host_ops_linux.gc_scan(f->state, NULL, 0, &o, &n, &err), 0);
	for (size_t i = 0; i < n; i++)
		printf("orphan: %s %s (%s)\n", host_orphan_kind_to_string(o[i].kind), o[i].name,
		       o[i].detail);
	assert_int_equal(n, 4);
	assert_non_null(find(o, n, vm_dir));
	assert_non_null(find(o, n, unused));
	assert_non_null(find(o, n, stale));
	assert_non_null(find(o, n, lone_src));
	assert_int_equal(find(o, n, unused)->kind, HOST_ORPHAN_IMAGE_CACHE);
	assert_true(host_orphan_is_ours(find(o, n, unused), NULL));
	/* Caches come last, after the VM dirs. */
	assert_int_equal(o[0].kind, HOST_ORPHAN_VM_DIR);

	/* Taken into use between scan and removal: left alone. */
	{
		_cleanup_free_ char *vm2 = xasprintf("%s/vms/x-%s", f->state, id);
		_cleanup_free_ char *base2 = xasprintf("%s/root.base", vm2);

		assert_int_equal(fs_mkdir_p(vm2, 0700, NULL), 0);
		test_write_file(base2, unused);
		assert_int_equal(host_ops_linux.gc_remove(find(o, n, unused), &err), -EBUSY);
		assert_true(hosttest_exists(unused));
		test_rmtree(vm2);
	}
	/* A locked temp file is not removed even when asked. */
	{
		struct host_orphan h = { .kind = HOST_ORPHAN_IMAGE_CACHE };

		snprintf(h.name, sizeof(h.name), "%s", held);
		assert_int_equal(host_ops_linux.gc_remove(&h, &err), -EBUSY);
		snprintf(h.name, sizeof(h.name), "%s/vms", f->state);
		assert_int_equal(host_ops_linux.gc_remove(&h, &err), -EINVAL);
		snprintf(h.name, sizeof(h.name), "%s/src.raw", f->dir);
		assert_int_equal(host_ops_linux.gc_remove(&h, &err), -EINVAL);
		assert_true(hosttest_exists(h.name));
	}
	for (size_t i = 0; i < n; i++)
		assert_int_equal(host_ops_linux.gc_remove(&o[i], &err), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(host_ops_linux.gc_remove(&o[i], &err), 0);
	free(o);
	o = NULL;
	assert_false(hosttest_exists(unused));
	assert_false(hosttest_exists(unused_src));
	assert_false(hosttest_exists(stale));
	assert_false(hosttest_exists(lone_src));
	assert_false(hosttest_exists(vm_dir));
	assert_true(hosttest_exists(used));
	assert_true(hosttest_exists(looped));
	assert_true(hosttest_exists(held));

	/* The VM dir is gone now: its cache is unused. The loop still holds the other. */
	assert_int_equal(host_ops_linux.gc_scan(f->state, NULL, 0, &o, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(o[0].name, used);
	assert_int_equal(host_ops_linux.gc_remove(&o[0], &err), 0);
	free(o);
	o = NULL;
	assert_false(hosttest_exists(used));

	/* Loop detached, lock released: the rest goes. */
	assert_int_equal(host_loop_detach(dev, looped, NULL, &err), 0);
	close(held_fd);
	assert_int_equal(host_ops_linux.gc_scan(f->state, NULL, 0, &o, &n, &err), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(host_ops_linux.gc_remove(&o[i], &err), 0);
	free(o);
	assert_int_equal(count_prefixed(f->images, ""), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_raw_is_itself, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qcow2_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hash_remembered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
	};

	if (!hosttest_sandbox(&skip_reason))
		test_skip_reason("%s", skip_reason);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
