/*
 * log.c - leveled logging to stderr; see log.h.
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/str.h"

static enum log_level log_level = LOG_LEVEL_NOTICE;
static const char *log_program = "banger";

static const char *const level_names[LOG_LEVEL_MAX] = {
	[LOG_LEVEL_ERR] = "err",   [LOG_LEVEL_WARN] = "warn",	[LOG_LEVEL_NOTICE] = "notice",
	[LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	log_level = level < LOG_LEVEL_MAX ? level : LOG_LEVEL_DEBUG;
}

enum log_level log_get_level(void)
{
	return log_level;
}

int log_parse_level(const char *s)
{
	if (!s || !*s)
		return -EINVAL;
	if (s[0] >= '0' && s[0] <= '4' && s[1] == '\0')
		return s[0] - '0';
	for (int i = 0; i < LOG_LEVEL_MAX; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	if (strcasecmp(s, "error") == 0)
		return LOG_LEVEL_ERR;
	if (strcasecmp(s, "warning") == 0)
		return LOG_LEVEL_WARN;
	return -EINVAL;
}

void log_setup(const char *program, int verbosity)
{
	const char *env = getenv("BANGER_LOG_LEVEL");
	int level = LOG_LEVEL_NOTICE;
	int r;

	if (program)
		log_program = program;
	if (env) {
		r = log_parse_level(env);
		if (r >= 0)
			level = r;
		else
			fprintf(stderr, "%s: invalid BANGER_LOG_LEVEL '%s', ignoring\n",
				log_program, env);
	}
	level += verbosity;
	log_set_level(level >= LOG_LEVEL_MAX ? LOG_LEVEL_DEBUG : (enum log_level)level);
}

static void vlog(int errnum, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void vlog(int errnum, const char *fmt, va_list ap)
{
	char line[4096];
	int n;

	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	if (errnum && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, ": %s", strerror(errnum));
	/* Names from the spec dir are anyone's bytes: no control character reaches the log. */
	if (str_needs_escape(line)) {
		char *safe = str_escape(line);

		fprintf(stderr, "%s: %s\n", log_program, safe);
		free(safe);
		return;
	}
	/* One write per line so concurrent writers do not interleave. */
	fprintf(stderr, "%s: %s\n", log_program, line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vlog(0, fmt, ap);
	va_end(ap);
}

int log_msg_errno(enum log_level level, int r, const char *fmt, ...)
{
	va_list ap;

	if (level > log_level)
		return r;
	va_start(ap, fmt);
	vlog(r < 0 ? -r : r, fmt, ap);
	va_end(ap);
	return r;
}
