/*
 * Frame boundaries for the two framings, and the per-connection assembler for a frame that spans
 * receive buffers. Pure: no I/O, and only frame_partial_* allocate (through alloc.h).
 *
 * line:  every byte up to and including '\n'; max_frame counts the '\n'.
 * len32: a 4-byte big-endian length N, then N bytes; max_frame bounds N. Relayed with the header.
 */
#ifndef RINGCAST_FRAME_H
#define RINGCAST_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/opts.h"

#define FRAME_LEN32_HEADER 4u

struct frame_scan {
    size_t complete; /* bytes of whole frames at the start of the input */
    size_t nframes;  /* how many whole frames they are */
    bool too_long;   /* the frame after them is (or will be) longer than max_frame */
};

/**
 * Scan @p[0..@len), which starts at a frame boundary, for whole frames. Stops at the first
 * incomplete frame, or at the first frame that exceeds @max_frame (then too_long is set and
 * complete covers only the frames before it). Never allocates.
 */
void frame_scan(enum framing framing, const uint8_t *p, size_t len, uint64_t max_frame,
                struct frame_scan *out);

/**
 * The wire length of the frame that starts at @p, if @len bytes are enough to tell it,
 * else 0. For len32 that is known from the header alone.
 */
size_t frame_wire_len(enum framing framing, const uint8_t *p, size_t len);

/* An incomplete frame held for one connection between receive buffers. */
struct frame_partial {
    uint8_t *buf; /* NULL when nothing is held */
    uint32_t len; /* bytes held */
    uint32_t cap; /* bytes allocated: what counts against --max-partial-memory */
};

enum frame_feed {
    FRAME_NEED_MORE, /* all input consumed, the frame is still incomplete */
    FRAME_COMPLETE,  /* the frame in partial->buf[0..len) is whole; *used bytes were taken */
    FRAME_TOO_LONG,  /* the frame exceeds max_frame */
    FRAME_NOMEM,     /* allocation failed */
};

/**
 * Add the head of @p[0..@len) to the partial frame held in @fp (which may be empty: then @p
 * starts a frame). Takes at most the bytes up to the end of the frame; *@used says how many.
 * *@grown is set to the change in fp->cap (memory accounting). On FRAME_COMPLETE the caller
 * consumes the frame and calls frame_partial_reset().
 */
enum frame_feed frame_partial_feed(struct frame_partial *fp, enum framing framing,
                                   uint64_t max_frame, const uint8_t *p, size_t len, size_t *used,
                                   int64_t *grown);

/** Free what @fp holds; returns the bytes released (its cap). Safe on an empty partial. */
uint32_t frame_partial_reset(struct frame_partial *fp);

#endif
