/*
 * str.c - small string helpers; see str.h.
 */
#include "common/str.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/buf.h"
#include "common/xalloc.h"

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

/*
 * The length of the valid UTF-8 sequence at s (2-4) and its code point, or 0 when the
 * bytes there are not one (overlong, surrogate, past U+10FFFF, truncated).
 */
static size_t utf8_seq(const unsigned char *s, uint32_t *ret_cp)
{
	size_t n;
	uint32_t cp, min;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
		min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
		min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*ret_cp = cp;
	return n;
}

/* Code points that change how a terminal or an editor shows the text around them. */
static bool unsafe_cp(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff ||
	       (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* Walk s; with b, append the escaped text. Returns true when anything unsafe was seen. */
static bool escape_walk(const char *str, struct buf *b)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	bool unsafe = false;

	while (*s) {
		uint32_t cp = 0;
		size_t n;

		if (*s >= 0x20 && *s < 0x7f) {
			if (b && *s == '\\')
				buf_adds(b, "\\\\");
			else if (b)
				buf_addch(b, (char)*s);
			s++;
			continue;
		}
		n = *s >= 0x80 ? utf8_seq(s, &cp) : 0;
		if (n && !unsafe_cp(cp)) {
			if (b)
				buf_add(b, s, n);
			s += n;
			continue;
		}
		unsafe = true;
		if (!b) {
			s += n ? n : 1;
			continue;
		}
		if (n) {
			buf_addf(b, "\\u{%04X}", (unsigned)cp);
			s += n;
		} else if (*s == '\n') {
			buf_adds(b, "\\n");
			s++;
		} else if (*s == '\t') {
			buf_adds(b, "\\t");
			s++;
		} else if (*s == '\r') {
			buf_adds(b, "\\r");
			s++;
		} else {
			buf_addf(b, "\\x%02x", *s);
			s++;
		}
	}
	return unsafe;
}

char *str_escape(const char *s)
{
	struct buf b;

	buf_init(&b);
	(void)escape_walk(s, &b);
	return buf_detach(&b, NULL);
}

bool str_needs_escape(const char *s)
{
	return escape_walk(s, NULL);
}
