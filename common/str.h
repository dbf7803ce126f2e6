/*
 * str.h - small string helpers.
 */
#ifndef BANGER_COMMON_STR_H
#define BANGER_COMMON_STR_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Copy src (NULL counts as "") into dst of 'size' bytes, always
 * NUL-terminating. Returns 0, or -E2BIG when src was truncated.
 */
int str_copy(char *dst, size_t size, const char *src);

/* NULL-safe equality: two NULLs are equal. */
bool str_eq(const char *a, const char *b);

#endif
