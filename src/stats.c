#include "ringcast/stats.h"

const char *stats_reason_suffix(enum disconnect_reason r)
{
    switch (r) {
    case DISC_EOF:
    case DISC_RESET:
        return ".";
    case DISC_SLOW_CONSUMER:
        return " (slow consumer).";
    case DISC_FRAME_TOO_LONG:
        return " (frame too long).";
    case DISC_PARTIAL_TIMEOUT:
        return " (partial frame timeout).";
    case DISC_PARTIAL_MEMORY:
        return " (partial frame memory limit).";
    case DISC_NO_MEMORY:
        return " (out of memory).";
    case DISC_SHUTDOWN:
        return " (server shutdown).";
    case DISC_PROTOCOL_VIOLATION:
        /* The one violation there is so far (enum violation); a second one would carry its own
         * text from the connection. */
        return " (protocol violation: sent data on a sub-only listener).";
    case DISC_AUTH_FAILED:
        return " (auth failed)."; /* the loop names the failure: auth_failure_text */
    case DISC_TLS_FAILED:
        return " (tls)."; /* the loop names the failure: tls_failure_text */
    case DISC_PROXY_FAILED:
        return " (proxy header)."; /* the loop says what was wrong with it */
    case DISC_TOKEN_REVOKED:
        return " (token revoked).";
    case DISC__COUNT:
        break;
    }
    return ".";
}

void stats_observe_batch(struct stats *s, uint64_t frames)
{
    unsigned i = 0;
    while (i < STATS_BATCH_BUCKETS && frames > (1ull << i))
        i++;
    s->batch_count_le[i]++;
    s->batch_frames += frames;
    s->batch_sends++;
}
