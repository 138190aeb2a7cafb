/*
 * The broadcast log: every complete frame is stored once, back to back, in a ring of bytes, and
 * every client reads it through its own cursor (an absolute byte offset). Pure: no io_uring.
 *
 * The ring is mapped twice, back to back, so any range of at most `cap` bytes is contiguous in
 * memory: a send to a client is always one buffer, whatever the wrap.
 *
 * Beside the bytes, an index of append records says who appended which range, so a client's own
 * frames can be skipped when echo is off and frame boundaries can be found again (slow-consumer
 * drops). Appends from the same origin merge into one record up to BCAST_REC_MAX_LEN bytes.
 *
 * Log units: what a reader pins is measured in units, one per byte plus BCAST_REC_UNITS per
 * record. Tiny frames from interleaved origins use a record each, so a reader that holds many of
 * them holds index space as well as bytes; counting both in one measure lets one quota bound both,
 * and an index of (units / BCAST_REC_UNITS) records can never run out before the bytes do.
 *
 *   tail                         cursor(c)                          head
 *    |<-- reclaimable once every cursor passed -->|<-- pending for c -->|<-- free -->
 */
#ifndef RINGCAST_BCAST_H
#define RINGCAST_BCAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/opts.h"

#define BCAST_REC_MAX_LEN (64u << 10)
#define BCAST_NO_ORIGIN UINT32_MAX
#define BCAST_REC_UNITS 64u /* what one index record weighs, in log units */

struct bcast_rec {
    uint64_t off;     /* absolute offset of the first byte */
    uint64_t seq;     /* frames appended before this record */
    uint32_t len;     /* bytes, whole frames only */
    uint32_t origin;  /* connection slot that sent them */
    uint32_t nframes; /* frames in the record */
    uint64_t units;   /* log units before this record (its own weight not included) */
};

struct bcast {
    /* read-only for users */
    uint8_t *base;   /* 2 * cap bytes mapped: base[i] and base[i + cap] are the same byte */
    uint64_t cap;    /* power of two */
    uint64_t head;   /* offset one past the newest byte */
    uint64_t tail;   /* oldest byte still kept */
    uint64_t frames; /* frames appended so far: the sequence number at head */
    uint64_t vhead;  /* log units appended so far: bytes plus BCAST_REC_UNITS per record */
    /* private */
    uint64_t mask;
    struct bcast_rec *recs;
    uint64_t rec_cap; /* power of two */
    uint64_t rec_head, rec_tail;
};

/**
 * Map a log of at least @min_bytes (rounded up to a power of two and the page size) with an
 * index of @min_records records. 0 or -errno. On error @b needs no bcast_destroy (but it is safe).
 */
int bcast_init(struct bcast *b, uint64_t min_bytes, uint64_t min_records);

/** Unmap everything. Safe on a zeroed or partly initialised struct. */
void bcast_destroy(struct bcast *b);

/** Whether @len bytes can be appended now without overwriting anything at or after tail. */
bool bcast_fits(const struct bcast *b, size_t len);

/** The log units an append of @len bytes from @origin would add (bytes, plus a new record). */
uint64_t bcast_append_units(const struct bcast *b, uint32_t origin, size_t len);

/**
 * Append @len bytes of @nframes whole frames sent by connection @origin. The caller checked
 * bcast_fits(). Returns the offset of the first byte appended. An empty append adds nothing.
 */
uint64_t bcast_append(struct bcast *b, uint32_t origin, const void *p, size_t len,
                      uint32_t nframes);

/**
 * Log units appended before offset @off (head, or a byte in [tail, head)): vhead minus this is
 * what a reader whose cursor is at @off holds. O(1) at head, else O(log records).
 */
uint64_t bcast_units_at(const struct bcast *b, uint64_t off);

/**
 * The lowest offset in [tail, head] whose units (bcast_units_at) are at least @units: where a
 * reader must be to hold at most vhead - @units. O(log records).
 */
uint64_t bcast_off_at_units(const struct bcast *b, uint64_t units);

/** Forget everything before @new_tail (tail <= new_tail <= head). */
void bcast_release(struct bcast *b, uint64_t new_tail);

/** Pointer to the byte at absolute offset @off; valid for up to cap bytes. */
static inline uint8_t *bcast_ptr(const struct bcast *b, uint64_t off)
{
    return b->base + (off & b->mask);
}

/**
 * The next range to send to the reader with cursor *@cursor. When @skip_origin is not
 * BCAST_NO_ORIGIN, records appended by that origin are skipped: *@cursor moves past any at its
 * position (their bytes are added to *@skipped) and the range ends where the next one starts.
 * @own_end is the end of the last record that origin appended (a shortcut: when it is at or
 * before the cursor there is nothing to skip). Returns the length, 0 when nothing is pending.
 */
uint64_t bcast_next_range(const struct bcast *b, uint64_t *cursor, uint32_t skip_origin,
                          uint64_t own_end, uint64_t *skipped);

/**
 * Frames appended before offset @off, which must be head or the start of a record (as the end of
 * a range from bcast_next_range is): lets a reader count the frames a send carried without
 * parsing them. O(log records).
 */
uint64_t bcast_seq_at(const struct bcast *b, uint64_t off);

/**
 * Offset of the end of the frame that contains @off (== @off when @off is a frame boundary),
 * found by parsing from the start of the record containing it. @off must be in [tail, head].
 */
uint64_t bcast_frame_end(const struct bcast *b, enum framing framing, uint64_t off);

/**
 * Frames appended before @off, which may be any frame boundary in [tail, head] (parses within
 * the record containing it; for heads and record starts prefer bcast_seq_at).
 */
uint64_t bcast_seq_at_boundary(const struct bcast *b, enum framing framing, uint64_t off);

/** Bytes in [@from, @to) appended by @origin. Walks the records in between. */
uint64_t bcast_origin_bytes(const struct bcast *b, uint64_t from, uint64_t to, uint32_t origin);

/**
 * Whole frames in [@from, @to), both frame boundaries, not counting those from @skip_origin.
 * Parses only the records cut by the range.
 */
uint64_t bcast_count_frames(const struct bcast *b, enum framing framing, uint64_t from, uint64_t to,
                            uint32_t skip_origin);

#endif
