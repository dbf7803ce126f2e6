/*
 * testutil.c - helpers shared by the C tests; see testutil.h.
 */
#include "tests/lib/testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

void test_skip_reason(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	printf("SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

char *test_tmpdir(const char *prefix)
{
	const char *base = getenv("TMPDIR");
	char *path = xasprintf("%s/%s.XXXXXX", base && *base ? base : "/tmp", prefix);

	if (!mkdtemp(path)) {
		perror("mkdtemp");
		abort();
	}
	return path;
}

void test_rmtree(const char *path)
{
	struct bg_err err = { 0 };

	if (fs_remove_tree(path, &err) < 0)
		fprintf(stderr, "test_rmtree: %s\n", err.msg);
}

void test_write_file(const char *path, const char *contents)
{
	FILE *f = fopen(path, "we");

	if (!f) {
		perror(path);
		abort();
	}
	fputs(contents, f);
	fclose(f);
}

bool test_wait_for(bool (*pred)(void *arg), void *arg, int timeout_ms)
{
	int64_t deadline = now_mono_ms() + timeout_ms;

	for (;;) {
		if (pred(arg))
			return true;
		if (now_mono_ms() >= deadline)
			return false;
		sleep_ms(10);
	}
}

void test_unique_suffix(char *buf, int n)
{
	uint8_t raw[8];
	char hex[2 * sizeof(raw) + 1];

	if (n > 16)
		n = 16;
	if (random_bytes(raw, sizeof(raw)) < 0)
		abort();
	hex_encode(raw, sizeof(raw), hex);
	memcpy(buf, hex, (size_t)n);
	buf[n] = '\0';
}
