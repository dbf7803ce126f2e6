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

/*
 * s made safe to show on a terminal or in a log (file names from a spec dir
 * are anyone's bytes): C0 controls, DEL and invalid UTF-8 bytes become
 * "\xHH" ("\n", "\t", "\r" for those three), and C1 controls, U+2028,
 * U+2029, U+FEFF and the bidirectional overrides (U+202A-U+202E,
 * U+2066-U+2069) become "\u{XXXX}"; a backslash becomes "\\". Everything
 * else (printable ASCII, other UTF-8) is kept. NULL counts as "". Owned.
 */
char *str_escape(const char *s);

/* true when str_escape(s) would change more than backslashes: s holds something unsafe. */
bool str_needs_escape(const char *s);

#endif
