/*
 * timeutil.c - clocks and durations; see timeutil.h.
 */
#include "common/timeutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

int64_t now_real_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int parse_duration_ms(const char *s, int64_t *ret_ms)
{
	int64_t total = 0;
	bool any = false;

	if (!s || !*s)
		return -EINVAL;
	while (*s) {
		int64_t v = 0, mult;
		const char *start = s;

		while (isdigit((unsigned char)*s)) {
			if (v > (INT64_MAX - 9) / 10)
				return -EINVAL;
			v = v * 10 + (*s - '0');
			s++;
		}
		if (s == start)
			return -EINVAL;
		if (strncmp(s, "ms", 2) == 0) {
			mult = 1;
			s += 2;
		} else if (*s == 's') {
			mult = 1000;
			s++;
		} else if (*s == 'm') {
			mult = 60 * 1000;
			s++;
		} else if (*s == 'h') {
			mult = 3600 * 1000;
			s++;
		} else if (*s == '\0' && !any) {
			mult = 1000;
		} else {
			return -EINVAL;
		}
		if (v > INT64_MAX / mult || total > INT64_MAX - v * mult)
			return -EINVAL;
		total += v * mult;
		any = true;
	}
	*ret_ms = total;
	return 0;
}

const char *format_age(int64_t ms, char *buf, size_t size)
{
	int64_t s = ms / 1000;

	if (ms < 0)
		snprintf(buf, size, "<unknown>");
	else if (s < 120)
		snprintf(buf, size, "%llds", (long long)s);
	else if (s < 2 * 3600)
		snprintf(buf, size, "%lldm", (long long)(s / 60));
	else if (s < 2 * 86400)
		snprintf(buf, size, "%lldh", (long long)(s / 3600));
	else
		snprintf(buf, size, "%lldd", (long long)(s / 86400));
	return buf;
}

const char *format_rfc3339(int64_t epoch_ms, char *buf, size_t size)
{
	time_t t = (time_t)(epoch_ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
