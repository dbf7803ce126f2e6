/*
 * notify.h - the systemd notification protocol (sd_notify) without libsystemd:
 * one datagram to the unix socket named by $NOTIFY_SOCKET.
 */
#ifndef BANGER_RECONCILER_NOTIFY_H
#define BANGER_RECONCILER_NOTIFY_H

/*
 * Send "READY=1", "STATUS=...", "STOPPING=1"... Does nothing (returns 0)
 * when NOTIFY_SOCKET is unset. Returns 0 or -errno.
 */
int notify_send(const char *msg);

#endif
