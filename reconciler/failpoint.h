/*
 * failpoint.h - named crash points for the crash-consistency tests.
 *
 * BANGER_FAILPOINT=<name> makes the daemon _exit(137) right after the step of
 * that name (as if it had been killed with SIGKILL: no cleanup, no flush).
 * Every converge step has a name "<action>.<step>"; 'bangerd
 * --list-failpoints' prints them all.
 */
#ifndef BANGER_RECONCILER_FAILPOINT_H
#define BANGER_RECONCILER_FAILPOINT_H

/* _exit(137) if BANGER_FAILPOINT names this point. */
void failpoint(const char *name);

/* The value of BANGER_FAILPOINT read at first use, or NULL. */
const char *failpoint_armed(void);

#endif
