/*
 * buf.h - a growable byte buffer that is always NUL-terminated.
 *
 * struct buf is embedded: buf_init()/buf_release(). buf_detach() hands the
 * bytes to the caller (free() them) and leaves the buffer empty.
 */
#ifndef BANGER_COMMON_BUF_H
#define BANGER_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data; /* NUL-terminated; never NULL after buf_init() */
	size_t len; /* bytes before the terminating NUL */
	size_t alloc;
};

void buf_init(struct buf *b);
void buf_release(struct buf *b);
void buf_reset(struct buf *b);
void buf_grow(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_adds(struct buf *b, const char *s);
void buf_addch(struct buf *b, char c);
/* A uint32 in network byte order (big-endian). */
void buf_add_be32(struct buf *b, uint32_t v);
/* len as buf_add_be32(), then the bytes: an SSH "string" (RFC 4251 §5). */
void buf_add_str32(struct buf *b, const void *data, size_t len);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vaddf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Owned by the caller; the buffer is empty afterwards. */
char *buf_detach(struct buf *b, size_t *ret_len);

static inline void buf_releasep(struct buf *b)
{
	buf_release(b);
}
#define _cleanup_buf_ __attribute__((cleanup(buf_releasep)))

#endif
