/*
 * err.c - error values with messages; see err.h.
 */
#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int normalise(int errnum)
{
	if (errnum < 0)
		errnum = -errnum;
	return errnum == 0 ? EIO : errnum;
}

static int record(struct bg_err *err, int errnum, bool with_strerror, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

static int record(struct bg_err *err, int errnum, bool with_strerror, const char *fmt, va_list ap)
{
	int n;

	errnum = normalise(errnum);
	if (!err)
		return -errnum;
	err->code = -errnum;
	n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (with_strerror && n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(errnum));
	return -errnum;
}

int bg_error(struct bg_err *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = record(err, errnum, true, fmt, ap);
	va_end(ap);
	return r;
}

int bg_errorf(struct bg_err *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = record(err, errnum, false, fmt, ap);
	va_end(ap);
	return r;
}

/* Copy as much of src as fits at dst[*off], keeping room for the NUL. */
static void append(char *dst, size_t size, size_t *off, const char *src)
{
	size_t n = strlen(src);

	if (*off + 1 >= size)
		return;
	if (n > size - 1 - *off)
		n = size - 1 - *off;
	memcpy(dst + *off, src, n);
	*off += n;
	dst[*off] = '\0';
}

int bg_err_wrap(struct bg_err *err, const char *fmt, ...)
{
	char prefix[BG_ERR_MSG_MAX];
	char old[BG_ERR_MSG_MAX];
	size_t off = 0;
	va_list ap;

	if (!err)
		return -EIO;
	if (err->code == 0)
		err->code = -EIO;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	err->msg[0] = '\0';
	append(err->msg, sizeof(err->msg), &off, prefix);
	if (old[0]) {
		append(err->msg, sizeof(err->msg), &off, ": ");
		append(err->msg, sizeof(err->msg), &off, old);
	}
	return err->code;
}

void bg_err_clear(struct bg_err *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

const char *bg_err_msg(const struct bg_err *err)
{
	return err ? err->msg : "";
}
