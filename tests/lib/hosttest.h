/*
 * hosttest.h - helpers for the tests of reconciler/host/: a private network
 * and mount namespace, shell commands for setting up and checking (tests may
 * use 'ip', 'losetup', 'nft'), and counters for leak checks.
 */
#ifndef BANGER_TESTS_HOSTTEST_H
#define BANGER_TESTS_HOSTTEST_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Move this process into a new network namespace and a new mount namespace
 * (with / made private), so the host's interfaces and mounts are never
 * touched. Returns false with *ret_reason set when that cannot be done
 * (not root).
 */
bool hosttest_sandbox(const char **ret_reason);

/* Run a shell command (formatted); its exit status, or -1. Output goes to stderr. */
int hosttest_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Run a shell command and return its stdout (owned, NUL-terminated), or NULL. */
char *hosttest_sh_output(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Number of open fds of this process. */
int hosttest_count_fds(void);

/* Loop devices whose backing file starts with prefix. */
int hosttest_count_loops(const char *prefix);

/* Network interfaces in this namespace whose name starts with prefix. */
int hosttest_count_links(const char *prefix);

/* Files, directories and other entries below dir (not counting dir). */
int hosttest_count_entries(const char *dir);

/* Make a sparse file of size bytes and write len bytes of pattern byte at each offset. */
void hosttest_make_image(const char *path, uint64_t size, const uint64_t *offsets, int n_offsets,
			 uint64_t len);

/* true when the first n bytes of a and b are equal. */
bool hosttest_files_equal(const char *a, const char *b, uint64_t n);

/* true when path exists (lstat). */
bool hosttest_exists(const char *path);

#endif
