/*
 * str.c - small string helpers; see str.h.
 */
#include "common/str.h"

#include <errno.h>
#include <string.h>

int str_copy(char *dst, size_t size, const char *src)
{
	size_t n;

	if (size == 0)
		return -E2BIG;
	if (!src)
		src = "";
	n = strlen(src);
	if (n >= size) {
		memcpy(dst, src, size - 1);
		dst[size - 1] = '\0';
		return -E2BIG;
	}
	memcpy(dst, src, n + 1);
	return 0;
}

bool str_starts_with(const char *s, const char *prefix)
{
	return s && prefix && strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_ends_with(const char *s, const char *suffix)
{
	size_t ls, lf;

	if (!s || !suffix)
		return false;
	ls = strlen(s);
	lf = strlen(suffix);
	return ls >= lf && memcmp(s + ls - lf, suffix, lf) == 0;
}

bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}
