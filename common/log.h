/*
 * log.h - leveled logging to stderr.
 *
 * Lines carry no timestamp (journald adds one). The level is set from the
 * command line (-v raises it) or BANGER_LOG_LEVEL (err|warn|notice|info|debug
 * or 0..4). Start each line with the VM name: "vm 'web-1': ...".
 */
#ifndef BANGER_COMMON_LOG_H
#define BANGER_COMMON_LOG_H

enum log_level {
	LOG_LEVEL_ERR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_NOTICE,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_MAX
};

/* Set the threshold; messages above it are dropped. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parse "debug", "info", ..., or a digit. Returns the level or -EINVAL. */
int log_parse_level(const char *s);

/*
 * Read BANGER_LOG_LEVEL (if set and valid), then raise the level by
 * 'verbosity' steps (the count of -v flags). Default level is NOTICE.
 */
void log_setup(const char *program, int verbosity);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Log with ": strerror(-r)" appended; returns r (a negative errno). */
int log_msg_errno(enum log_level level, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#define log_err_errno(r, ...) log_msg_errno(LOG_LEVEL_ERR, r, __VA_ARGS__)
#define log_warn_errno(r, ...) log_msg_errno(LOG_LEVEL_WARN, r, __VA_ARGS__)
#define log_notice_errno(r, ...) log_msg_errno(LOG_LEVEL_NOTICE, r, __VA_ARGS__)
#define log_info_errno(r, ...) log_msg_errno(LOG_LEVEL_INFO, r, __VA_ARGS__)
#define log_debug_errno(r, ...) log_msg_errno(LOG_LEVEL_DEBUG, r, __VA_ARGS__)

#endif
