/*
 * Whether a connection's multishot recv should be armed, cancelled or left alone. Pure: the
 * loop asks, then does what it is told. Kept apart because every way it went wrong was a race:
 * a multishot recv stays outstanding until its last completion (one without IORING_CQE_F_MORE),
 * whether it ended by itself (ENOBUFS, a full CQ), by a cancellation, or both at once, and a
 * connection that pauses and resumes in between must still end up reading.
 */
#ifndef RINGCAST_RECVCTL_H
#define RINGCAST_RECVCTL_H

#include <stdbool.h>

enum recvctl_action {
    RECVCTL_NONE,
    RECVCTL_ARM,    /* prepare a multishot recv, then call recvctl_armed() */
    RECVCTL_CANCEL, /* cancel the outstanding one */
};

struct recvctl {
    bool want;       /* the loop wants this connection's bytes */
    bool armed;      /* a recv is outstanding: its last completion has not come */
    bool cancelling; /* a cancellation for it is on its way */
};

/** The loop wants reading on (@want) or off. */
enum recvctl_action recvctl_want(struct recvctl *r, bool want);

/** A recv completion came; @more is IORING_CQE_F_MORE. */
enum recvctl_action recvctl_completion(struct recvctl *r, bool more);

/** The loop prepared the recv asked for. */
void recvctl_armed(struct recvctl *r);

#endif
