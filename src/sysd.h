/* systemd integration through libsystemd: readiness and watchdog notifications, and listening
 * sockets passed in by socket activation. Every call is a no-op when not run by systemd. */
#ifndef RINGCAST_SYSD_H
#define RINGCAST_SYSD_H

#include <stddef.h>
#include <stdint.h>

struct sysd_sockets {
    int relay;   /* -1 when none was passed */
    int metrics; /* -1 when none was passed */
};

/**
 * Take the sockets systemd passed (LISTEN_FDS, named by LISTEN_FDNAMES: "relay" and "metrics";
 * a single unnamed one is the relay). Returns how many were taken, or -errno with a message in
 * @err (a passed socket that is not a listening stream socket, or an unknown name).
 */
int sysd_take_sockets(struct sysd_sockets *out, char *err, size_t errlen);

/** READY=1 with a status line. */
void sysd_ready(const char *status);
/** STATUS=... */
void sysd_status(const char *status);
/** STOPPING=1 */
void sysd_stopping(void);
/** The watchdog period in ns, or 0 when WATCHDOG_USEC is not set for us. */
uint64_t sysd_watchdog_period_ns(void);
/** WATCHDOG=1 */
void sysd_watchdog(void);

#endif
