/*
 * err.h - error values that carry a message.
 *
 * A function that can fail returns an int: >= 0 on success, -errno on failure.
 * Its last parameter is a "struct bg_err *err" (may be NULL) that receives a
 * human-readable message. Callers add context with bg_err_wrap() as the error
 * travels up, so the final message reads outermost-first:
 *
 *   vm 'web-1': start: open '/x/api.sock': No such file or directory
 */
#ifndef BANGER_COMMON_ERR_H
#define BANGER_COMMON_ERR_H

#include <stdbool.h>
#include <stddef.h>

#define BG_ERR_MSG_MAX 2048

struct bg_err {
	int code;		  /* negative errno of the first failure, 0 when clear */
	char msg[BG_ERR_MSG_MAX]; /* NUL-terminated message, "" when clear */
};

/*
 * Record a failure: the message is the formatted text followed by
 * ": strerror(errnum)". Returns -errnum (errnum may be given positive or
 * negative; 0 is treated as EIO). err may be NULL.
 */
int bg_error(struct bg_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Like bg_error() but the message is the formatted text only, for failures
 * whose errno would add nothing (validation errors, protocol errors).
 */
int bg_errorf(struct bg_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Prefix the stored message with "<formatted text>: ". Returns err->code, or
 * -EIO when err is NULL or holds no error, so it can end a failing path:
 *     return bg_err_wrap(err, "vm '%s'", name);
 */
int bg_err_wrap(struct bg_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forget a stored error. */
void bg_err_clear(struct bg_err *err);

/* The message, or "" for NULL/clear. Borrowed from err. */
const char *bg_err_msg(const struct bg_err *err);

#endif
