/* The arming state of one connection's multishot recv. See recvctl.h. */
#include "ringcast/recvctl.h"

enum recvctl_action recvctl_want(struct recvctl *r, bool want)
{
    r->want = want;
    if (want)
        return r->armed ? RECVCTL_NONE : RECVCTL_ARM; /* armed: its end re-arms, see below */
    if (r->armed && !r->cancelling) {
        r->cancelling = true;
        return RECVCTL_CANCEL;
    }
    return RECVCTL_NONE;
}

enum recvctl_action recvctl_completion(struct recvctl *r, bool more)
{
    if (more)
        return RECVCTL_NONE;
    /* The recv is over, however it ended: a cancellation still on its way finds nothing. */
    r->armed = false;
    r->cancelling = false;
    return r->want ? RECVCTL_ARM : RECVCTL_NONE;
}

void recvctl_armed(struct recvctl *r)
{
    r->armed = true;
    r->cancelling = false;
}
