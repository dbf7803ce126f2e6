/*
 * xalloc.h - allocation that never returns NULL.
 *
 * Out of memory aborts the process, as in git, crun and redis: the daemon runs
 * under a supervisor and its state is durable, so a restart is the recovery.
 */
#ifndef BANGER_COMMON_XALLOC_H
#define BANGER_COMMON_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
/* Grow an array of n elements of 'size' bytes; aborts on overflow. */
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
/* xstrdup(s) or NULL when s is NULL. */
char *xstrdup_null(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
