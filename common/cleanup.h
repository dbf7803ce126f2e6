/*
 * cleanup.h - scope-bound cleanup (GNU C cleanup attribute) and ownership helpers.
 *
 *   _cleanup_free_ char *s = NULL;        free(s) at scope exit
 *   _cleanup_close_ int fd = -1;          close(fd) when fd >= 0
 *   _cleanup_fclose_ FILE *f = NULL;      fclose(f) when non-NULL
 *   _cleanup_(foo_freep) struct foo *x;   foo_freep(&x)
 *   *ret = TAKE_PTR(p);                   hand over ownership, p becomes NULL
 *   *ret_fd = TAKE_FD(fd);                hand over an fd, fd becomes -1
 */
#ifndef BANGER_COMMON_CLEANUP_H
#define BANGER_COMMON_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		(void)close(*fd);
		errno = saved;
	}
}

static inline void fclosep(FILE **f)
{
	if (*f)
		(void)fclose(*f);
}

/* Free a NULL-terminated array of strings and the array itself. */
static inline void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static inline void strv_freep(char ***v)
{
	strv_free(*v);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* Define "static inline void name##p(type **p)" that calls func(*p) when non-NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func) \
	static inline void func##p(type **p)    \
	{                                       \
		if (*p)                         \
			func(*p);               \
	}

#define TAKE_PTR(p)                        \
	({                                 \
		__typeof__(p) _ptr_ = (p); \
		(p) = NULL;                \
		_ptr_;                     \
	})

#define TAKE_FD(fd)              \
	({                       \
		int _fd_ = (fd); \
		(fd) = -1;       \
		_fd_;            \
	})

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
