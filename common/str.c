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

bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}
