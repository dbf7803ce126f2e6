/*
 * failpoint.c - named crash points; see failpoint.h.
 */
#include "reconciler/failpoint.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *failpoint_armed(void)
{
	static bool read;
	static const char *armed;

	if (!read) {
		const char *v = getenv("BANGER_FAILPOINT");

		armed = v && *v ? v : NULL;
		read = true;
	}
	return armed;
}

void failpoint(const char *name)
{
	const char *armed = failpoint_armed();

	if (!armed || strcmp(armed, name) != 0)
		return;
	/* One write, then die without running atexit handlers or flushing stdio. */
	{
		char msg[256];
		int n = snprintf(msg, sizeof(msg), "bangerd: failpoint '%s' hit, exiting\n", name);

		if (n > 0)
			(void)!write(STDERR_FILENO, msg, (size_t)n);
	}
	_exit(137);
}
