/*
 * timeutil.h - clocks and durations.
 */
#ifndef BANGER_COMMON_TIMEUTIL_H
#define BANGER_COMMON_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds: for deadlines inside one process. */
int64_t now_mono_ms(void);

/* CLOCK_REALTIME in milliseconds since the epoch: for timestamps stored on disk. */
int64_t now_real_ms(void);

/*
 * Parse a duration: an integer with an optional unit ms, s, m, h ("1m30s" and
 * "90" (seconds) both work). Returns 0 and milliseconds, or -EINVAL.
 */
int parse_duration_ms(const char *s, int64_t *ret_ms);

/* Format an age like kubectl: 45s, 12m, 3h, 2d. Writes into buf. */
const char *format_age(int64_t ms, char *buf, size_t size);

/* Format an RFC 3339 UTC timestamp from epoch milliseconds. */
const char *format_rfc3339(int64_t epoch_ms, char *buf, size_t size);

/* Sleep for ms milliseconds (restarted on EINTR). */
void sleep_ms(int64_t ms);

#endif
