/*
 * Client connections: a table of slots preallocated to --max-clients, with a free list and a
 * generation per slot so a completion for a closed connection is recognised (nginx's instance
 * bit, widened). Closing is a state: the slot is freed only after its last completion.
 */
#ifndef RINGCAST_CONN_H
#define RINGCAST_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/frame.h"
#include "ringcast/netaddr.h"
#include "ringcast/stats.h"
#include "ringcast/userdata.h" /* UD_GEN_MASK: the generation travels in user_data */

#define CONN_NONE UINT32_MAX

enum conn_state { CONN_FREE, CONN_OPEN, CONN_CLOSING };

struct conn {
    /* read-only for the loop after conn_table_alloc */
    int fd;
    uint32_t slot;
    uint32_t gen;
    /* private to the loop */
    uint8_t state;             /* enum conn_state */
    uint8_t reason;            /* enum disconnect_reason once closing */
    bool recv_armed : 1;       /* multishot recv outstanding */
    bool recv_paused : 1;      /* recv cancelled on purpose: the log is full */
    bool send_inflight : 1;    /* the one send (or zc send) outstanding */
    bool poll_armed : 1;       /* waiting for POLLOUT */
    bool zc_copied : 1;        /* notifications said the kernel copied: plain sends from now */
    bool in_blocked : 1;       /* in the loop's blocked FIFO */
    bool in_partial_list : 1;  /* holds an incomplete frame */
    bool finishing : 1;        /* frame too long: finish the frame in progress, then close */
    bool fd_closed : 1;        /* fd closed early while zero-copy notifications drain */
    bool partial_complete : 1; /* partial holds a whole frame the log had no room for */
    bool inflight_resid : 1;   /* the send in flight is from resid, not the log */
    bool drained : 1;          /* shutting down: all output handed over, FIN sent */
    uint16_t zc_notifs;        /* zero-copy notifications still to come */
    uint16_t held_first;       /* recv buffers held while the log is full, oldest first */
    uint16_t held_last;
    uint32_t held_off;     /* bytes of held_first already consumed */
    uint32_t active_idx;   /* position in the table's dense active array */
    uint32_t blocked_next; /* blocked FIFO link */
    uint32_t partial_prev, partial_next;
    uint32_t inflight_len;
    uint64_t inflight_start;   /* log offset the send in flight starts at (log sends) */
    uint64_t cursor;           /* next log byte for this client */
    uint64_t seq;              /* frames in the log before its last fully sent frame boundary */
    uint64_t inflight_end_seq; /* the same at the end of the send in flight */
    uint64_t own_end;          /* end of the last log record this client appended */
    uint64_t own_ahead;        /* bytes of its own records between cursor and head */
    uint64_t zc_pin;           /* oldest log byte under an unnotified zero-copy send */
    uint64_t close_at;         /* finishing: log offset where its output stops */
    uint64_t partial_since_ns; /* when its incomplete frame started */
    uint64_t poll_since_ns;    /* when it started waiting for room in its socket */
    uint64_t acked_at_poll;    /* its peer's acknowledged bytes then */
    uint64_t frames_dropped;
    struct frame_partial partial;
    uint8_t *resid; /* drop policy: rest of a partly sent frame whose log bytes were let go */
    uint32_t resid_len, resid_off;
    union netaddr peer;
};

struct conn_table {
    struct conn *slots;
    uint32_t cap;
    uint32_t *free_stack;
    uint32_t free_top;
    uint32_t *active; /* slots in use, dense, for the per-batch flush */
    uint32_t nactive;
};

/** Preallocate @cap slots (memory is touched only as slots are used). 0 or -ENOMEM. */
int conn_table_init(struct conn_table *t, uint32_t cap);
void conn_table_destroy(struct conn_table *t);

/** A zeroed OPEN connection for @fd, or NULL when all slots are taken. */
struct conn *conn_table_alloc(struct conn_table *t, int fd);

/** Return @c's slot; its generation moves on so late completions are recognised. */
void conn_table_free(struct conn_table *t, struct conn *c);

/** The connection a completion refers to, or NULL if that slot has moved on since. */
static inline struct conn *conn_table_lookup(struct conn_table *t, uint32_t slot, uint32_t gen)
{
    if (slot >= t->cap)
        return NULL;
    struct conn *c = &t->slots[slot];
    return c->state != CONN_FREE && c->gen == gen ? c : NULL;
}

#endif
