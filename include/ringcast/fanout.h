/*
 * Fan-out: from the broadcast log to one send per client. Pure: no I/O; the loop turns a plan
 * into an SQE and reports the completion back.
 *
 * Each client reads the log through its cursor. At most one send is in flight per client, and it
 * covers everything pending: [cursor, head), cut before the client's own records when echo is
 * off. A client's charge is what it has not taken, in log units (see bcast.h): from its cursor to
 * the head, plus the rest of a frame kept aside by the drop policy. Past the quota (--max-queue)
 * the slow policy applies: fanout_judge returns a verdict and the loop acts on it. Bytes under
 * zero-copy sends the kernel has not released stay pinned too (fanout_pin); dropping cannot free
 * them, so a client that needs a drop while it has any is cut instead.
 */
#ifndef RINGCAST_FANOUT_H
#define RINGCAST_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ringcast/bcast.h"
#include "ringcast/opts.h"
#include "ringcast/stats.h"

/* Ranges one send may carry (stepping over the client's own records between them). */
#define FANOUT_IOV_MAX 8u
/* Zero-copy sends a client may have un-notified at once; past it, plain sends. */
#define FANOUT_ZC_MAX 4u
/*
 * A zero-copy send is at most this long, and one starts only while the oldest un-notified one is
 * less than this behind the cursor: the zero-copy pages of a client are a window near its cursor
 * while notifications keep up. FANOUT_ZC_PIN is what the log reserves for them beyond a quota.
 */
#define FANOUT_ZC_WINDOW (1u << 20)
#define FANOUT_ZC_PIN (4u * FANOUT_ZC_WINDOW)

struct fanout_client {
    /* private to fanout; the loop reads them only through the functions below */
    uint64_t cursor;           /* next log byte for this client */
    uint64_t vcursor;          /* bcast_units_at(cursor): its reach, for flow control */
    uint64_t seq;              /* frames in the log before its last fully sent frame boundary */
    uint64_t own_end;          /* end of the last log record this client appended */
    uint64_t own_ahead;        /* bytes of its own records between cursor and head */
    uint64_t inflight_start;   /* log offset the send in flight starts at (log sends) */
    uint64_t inflight_end_seq; /* seq at the end of the send in flight, if it ends on a boundary */
    uint64_t inflight_vend;    /* units at its end, when known without a search (else 0) */
    uint64_t close_at;         /* finishing: log offset where its output stops */
    uint64_t frames_dropped;
    uint64_t zc_start[FANOUT_ZC_MAX]; /* starts of un-notified zero-copy sends, oldest first */
    uint8_t *resid;                   /* drop policy: rest of a partly sent frame, kept aside */
    uint32_t resid_len, resid_off;
    uint32_t inflight_len;
    uint32_t held_out;     /* bytes taken from the log but held outside it for this client (a TLS
                              client's ciphertext not yet sent): charged to its quota */
    uint32_t self;         /* its slot: the origin of its own records */
    uint8_t inflight_nseg; /* ranges in the send in flight */
    uint8_t zc_head, zc_count;
    bool inflight : 1;       /* a send is planned or in flight */
    bool inflight_resid : 1; /* ... from resid, not the log */
    bool inflight_zc : 1;    /* ... zero-copy */
    bool inflight_part : 1;  /* ... stopping short of what was pending when planned */
    bool finishing : 1;      /* frame too long: send up to close_at, then close */
    bool zc_copied : 1;      /* notifications said the kernel copied: plain sends from now */
    bool muted : 1;          /* receives nothing (fanout_mute): its cursor means nothing */
};

struct fanout {
    struct bcast *log;
    enum framing framing;
    bool echo;
    enum slow_policy policy;
    uint64_t quota;        /* log units a client may hold */
    uint64_t keep_on_drop; /* log units of the newest frames a dropped client keeps */
    struct stats *stats;
    uint64_t *held_bytes; /* memory outside the log held for clients (resids counted here) */
};

/* One send to prepare: one buffer (send, zero-copy send) or several (sendmsg). */
struct fanout_send {
    struct iovec iov[FANOUT_IOV_MAX];
    unsigned niov;
    bool from_resid;
};

/** The bytes a planned send carries. */
static inline size_t fanout_send_len(const struct fanout_send *s)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->niov; i++)
        n += s->iov[i].iov_len;
    return n;
}

enum fanout_sent {
    FANOUT_SENT_ALL,   /* the socket took everything, up to what was the head: send again */
    FANOUT_SENT_PART,  /* it took everything, but more was pending when it was planned */
    FANOUT_SENT_SHORT, /* the socket is full: wait until it is writable */
    FANOUT_SENT_ERROR, /* the connection failed */
};

enum fanout_verdict {
    FANOUT_OK,
    FANOUT_DROPPED,  /* drop policy applied: the oldest frames are gone, the client stays */
    FANOUT_CUT,      /* past its quota and nothing to drop: disconnect (slow consumer) */
    FANOUT_NOMEM,    /* the drop needed memory that was refused: disconnect */
    FANOUT_FINISHED, /* finishing and all sent: write the error line and close */
};

/** A client (slot @self) joins: it gets every frame appended from now on. */
void fanout_join(const struct fanout *fo, struct fanout_client *fc, uint32_t self);

/**
 * @fc receives nothing from now on (a pub-only client): it is never planned a send nor judged
 * against its quota, and it pins, owes and is charged nothing, so its cursor (left where it
 * joined) never holds the log back. Call right after fanout_join.
 */
void fanout_mute(struct fanout_client *fc);

/** Whether @fc receives frames (it was not muted). */
static inline bool fanout_receives(const struct fanout_client *fc)
{
    return !fc->muted;
}

/** @fc (slot @self) appended [@at, @at + @len) to the log. */
void fanout_published(const struct fanout *fo, struct fanout_client *fc, uint64_t at, size_t len);

/**
 * The next send for @fc (slot @self), covering everything pending, or false when there is none
 * (or one is in flight). Marks the send in flight; fanout_sent() must follow.
 * @zc_ok says whether the loop may send this one zero-copy (*@zc is set when it should).
 */
bool fanout_plan(const struct fanout *fo, struct fanout_client *fc, uint32_t self, bool zc_ok,
                 uint64_t zc_threshold, struct fanout_send *out, bool *zc);

/** The send in flight completed with @res (bytes or -errno). Moves the cursor, counts deliveries.
 */
enum fanout_sent fanout_sent(const struct fanout *fo, struct fanout_client *fc, int res);

/** The zero-copy send just completed said a notification will follow (IORING_CQE_F_MORE). */
void fanout_zc_pending(struct fanout_client *fc, uint64_t start);

/** A zero-copy notification arrived: the oldest pinned range is free. */
void fanout_zc_notified(struct fanout_client *fc);

/** Log units @fc has not taken: what the quota is checked against. */
uint64_t fanout_charge(const struct fanout *fo, const struct fanout_client *fc);

/** Log units @fc pins, zero-copy sends included. */
uint64_t fanout_pinned(const struct fanout *fo, const struct fanout_client *fc);

/** Bytes still owed to @fc (its own frames excluded): pending output, for metrics. */
uint64_t fanout_owed(const struct fanout *fo, const struct fanout_client *fc);

/** The oldest log byte @fc pins (cursor, send in flight, zero-copy), or head for none. */
uint64_t fanout_pin(const struct fanout *fo, const struct fanout_client *fc, bool open);

/** Apply the slow policy if @fc (slot @self) is past its quota. See enum fanout_verdict. */
enum fanout_verdict fanout_judge(const struct fanout *fo, struct fanout_client *fc, uint32_t self);

/** Stop @fc after the frame it is in the middle of (frame too long, line mode). */
void fanout_finish(const struct fanout *fo, struct fanout_client *fc);

/** Whether anything of @fc is still in the kernel's hands (a send, zero-copy pages). */
static inline bool fanout_busy(const struct fanout_client *fc)
{
    return fc->inflight || fc->zc_count;
}

/**
 * Free what @fc holds outside the log, unless a send is in flight: a planned send may point into
 * the resid. Returns whether it is all freed; if not, call again once fanout_sent() was called.
 */
bool fanout_release(const struct fanout *fo, struct fanout_client *fc);

#endif
