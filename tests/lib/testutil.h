/*
 * testutil.h - helpers shared by the C tests.
 */
#ifndef BANGER_TESTS_TESTUTIL_H
#define BANGER_TESTS_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Print "SKIP: <reason>" on its own line (tests/run-tests.sh lists these) and
 * let the caller call cmocka's skip(). Use only for what truly cannot run
 * here (no device-mapper, no Firecracker, no KVM, not root).
 */
void test_skip_reason(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* mkdtemp under $TMPDIR (or /tmp) with the given prefix. Owned path. */
char *test_tmpdir(const char *prefix);

/* rm -rf a directory made by test_tmpdir(). */
void test_rmtree(const char *path);

/* Write a file (creating it 0644) with the given contents. */
void test_write_file(const char *path, const char *contents);

/* Wait until pred(arg) is true or timeout_ms passes; polls every 10 ms. */
bool test_wait_for(bool (*pred)(void *arg), void *arg, int timeout_ms);

/* A fresh random hex suffix (n chars, n <= 16) for unique kernel object names. */
void test_unique_suffix(char *buf, int n);

#endif
