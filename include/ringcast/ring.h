/*
 * The io_uring edge shared by the server loop and flood: probe the kernel, set the ring up with
 * the best flags it takes, and the provided-buffer ring for multishot recv.
 */
#ifndef RINGCAST_RING_H
#define RINGCAST_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/compat.h"

struct ring_features {
    /* required (Linux 6.0): exit 1 without them */
    bool buf_ring;       /* provided buffer rings, 5.19 */
    bool recv_multishot; /* 6.0 */
    /* optional, with fallbacks */
    bool single_issuer;    /* 6.0 */
    bool defer_taskrun;    /* 6.1 */
    bool coop_taskrun;     /* 5.19 */
    bool register_ring_fd; /* 5.18 */
    bool multishot_accept; /* 5.19 */
    bool send_zc;          /* 6.0 */
    bool zc_report_usage;  /* 6.2 */
    bool fixed_buffers;    /* registration may also fail on RLIMIT_MEMLOCK */
};

/** Whether RINGCAST_DISABLE (comma list) names @feature: the probe then reports it missing. */
bool ring_feature_disabled(const char *feature);

/**
 * Set up @ring with @entries SQEs and @cq_entries CQEs, trying SINGLE_ISSUER|DEFER_TASKRUN, then
 * COOP_TASKRUN, then plain; register the ring fd; probe opcodes and the required features.
 * Returns 0, or -errno with a message naming the missing feature and the kernel it needs in @err.
 */
int ring_setup(struct io_uring *ring, unsigned entries, unsigned cq_entries,
               struct ring_features *f, char *err, size_t errlen);

/** One line naming the features in use, for -v and the metrics labels. */
void ring_features_describe(const struct ring_features *f, char *buf, size_t len);

/* A provided-buffer ring: @count buffers of @size bytes, group @bgid. */
struct ring_bufs {
    struct io_uring_buf_ring *br;
    uint8_t *mem;
    uint32_t count, size;
    uint16_t bgid;
    uint16_t pending; /* added since the last publish */
};

/** Allocate and register. 0 or -errno. */
int ring_bufs_init(struct io_uring *ring, struct ring_bufs *b, uint16_t bgid, uint32_t count,
                   uint32_t size);
void ring_bufs_destroy(struct io_uring *ring, struct ring_bufs *b);

static inline uint8_t *ring_bufs_ptr(const struct ring_bufs *b, uint16_t bid)
{
    return b->mem + (size_t)bid * b->size;
}

/** Give buffer @bid back; visible to the kernel at the next ring_bufs_publish(). */
static inline void ring_bufs_recycle(struct ring_bufs *b, uint16_t bid)
{
    io_uring_buf_ring_add(b->br, ring_bufs_ptr(b, bid), b->size, bid,
                          io_uring_buf_ring_mask(b->count), b->pending++);
}

static inline void ring_bufs_publish(struct ring_bufs *b)
{
    if (b->pending) {
        io_uring_buf_ring_advance(b->br, b->pending);
        b->pending = 0;
    }
}

/** An SQE, submitting what is queued first when the SQ ring is full. Never NULL. */
struct io_uring_sqe *ring_get_sqe(struct io_uring *ring);

#endif
