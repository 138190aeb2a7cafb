/*
 * Fuzz target "framing": a stream cut into receive buffers at points the input chooses goes
 * through ingest (frame_scan for whole frames in a buffer, frame_partial_feed for a frame that
 * spans buffers) into the broadcast log; the frames the log gets must be exactly those of a
 * one-shot scan of the whole stream, in both framings, with --max-frame chosen by the input.
 *
 * Input: [flags] [max_frame: 2 bytes LE] [n] [n cut lengths] [stream...]
 *   flags bit 0: len32 (else line)
 *         bits 1-2: max_frame scale: 0: 1 + v, 1: (1 + v) << 8, 2: 1 GiB (the largest allowed),
 *                   3: 1 + v % 16 (tiny)
 *         bit 3: cut lengths are (1 + c) * 16 bytes (else 1 + c)
 *         bit 4: make the k-th allocation fail (k: the low byte of max_frame's field)
 * The stream is fed in buffers of the cut lengths, cycling, each a separate allocation of
 * exactly its length (ASan sees any read past it).
 *
 * Checked against two references, frame_scan over the whole stream and a byte-by-byte scanner
 * written here: the same frames, byte for byte; "too long" exactly when the reference says so
 * (only after every frame before it); the incomplete tail held in the partial buffer, no more
 * memory held than the longest frame, all of it accounted in held_bytes, and nothing once closed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/alloc.h"
#include "ringcast/bcast.h"
#include "ringcast/fanout.h"
#include "ringcast/flow.h"
#include "ringcast/frame.h"
#include "ringcast/ingest.h"
#include "ringcast/stats.h"

#define LOG_BYTES (1u << 20) /* holds any input: nobody reads, so everything is reclaimable */
#define MAX_STREAM (LOG_BYTES / 2)

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_framing: check failed: %s: ", #cond);                            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Frames as (offset in the stream, wire length). */
struct frames {
    size_t n, cap;
    size_t *off, *len;
};

static void frames_add(struct frames *f, size_t off, size_t len)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->off = realloc(f->off, f->cap * sizeof(*f->off));
        f->len = realloc(f->len, f->cap * sizeof(*f->len));
        if (!f->off || !f->len)
            abort();
    }
    f->off[f->n] = off;
    f->len[f->n] = len;
    f->n++;
}

static void frames_free(struct frames *f)
{
    free(f->off);
    free(f->len);
}

/* The reference: byte by byte, as the protocol describes it. Returns whether the frame after
 * the whole ones is too long (already, or certainly once complete). */
static bool naive_scan(enum framing framing, const uint8_t *p, size_t len, uint64_t max_frame,
                       struct frames *out)
{
    size_t start = 0;
    if (framing == FRAMING_LINE) {
        for (size_t i = 0; i < len; i++) {
            if (i + 1 - start > max_frame)
                return true; /* the line already has more than max_frame bytes */
            if (p[i] == '\n') {
                frames_add(out, start, i + 1 - start);
                start = i + 1;
            }
        }
        return false;
    }
    while (len - start >= 4) {
        uint64_t n = (uint64_t)p[start] << 24 | (uint64_t)p[start + 1] << 16 |
                     (uint64_t)p[start + 2] << 8 | p[start + 3];
        if (n > max_frame)
            return true;
        if (len - start - 4 < n)
            break;
        frames_add(out, start, 4 + n);
        start += 4 + n;
    }
    return false;
}

/* What the log got, through ingest's on_frames hook. */
struct run {
    enum framing framing;
    const uint8_t *stream; /* to check the bytes against */
    size_t appended;       /* stream bytes the log got so far */
    struct frames got;
};

static void on_frames(void *ctx, uint32_t origin, const uint8_t *p, size_t len)
{
    struct run *r = ctx;
    CHECK(origin == 0, "origin %u", origin);
    CHECK(len > 0, "an empty append");
    /* Appended in stream order, exactly the bytes sent. */
    CHECK(memcmp(p, r->stream + r->appended, len) == 0, "the log got other bytes at %zu",
          r->appended);
    for (size_t off = 0; off < len;) {
        size_t fl = frame_wire_len(r->framing, p + off, len - off);
        CHECK(fl > 0 && off + fl <= len, "an append that is not whole frames (%zu of %zu)", off,
              len);
        frames_add(&r->got, r->appended + off, fl);
        off += fl;
    }
    r->appended += len;
}

static struct bcast *log_for_make_room;

/* Nobody reads: everything before the head can go. */
static bool make_room(void *ctx, size_t len)
{
    (void)ctx;
    bcast_release(log_for_make_room, log_for_make_room->head);
    return bcast_fits(log_for_make_room, len);
}

static uint64_t max_frame_of(uint8_t flags, uint16_t v)
{
    switch ((flags >> 1) & 3) {
    case 0:
        return 1 + (uint64_t)v;
    case 1:
        return (1 + (uint64_t)v) << 8;
    case 2:
        return 1ull << 30;
    default:
        return 1 + v % 16;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t flags = data[0];
    uint16_t mfv = (uint16_t)(data[1] | data[2] << 8);
    size_t ncuts = data[3];
    if (size < 4 + ncuts)
        return 0;
    const uint8_t *cuts = data + 4;
    const uint8_t *stream = data + 4 + ncuts;
    size_t len = size - 4 - ncuts;
    if (len > MAX_STREAM)
        return 0;
    enum framing framing = flags & 1 ? FRAMING_LEN32 : FRAMING_LINE;
    uint64_t max_frame = max_frame_of(flags, mfv);
    bool fail_alloc = flags & 0x10;

    /* The references. */
    struct frames ref = {0};
    bool ref_too_long = naive_scan(framing, stream, len, max_frame, &ref);
    struct frame_scan s;
    frame_scan(framing, stream, len, max_frame, &s);
    size_t ref_complete = ref.n ? ref.off[ref.n - 1] + ref.len[ref.n - 1] : 0;
    CHECK(s.complete == ref_complete && s.nframes == ref.n && s.too_long == ref_too_long,
          "frame_scan: %zu bytes, %zu frames, too long %d; reference %zu, %zu, %d", s.complete,
          s.nframes, s.too_long, ref_complete, ref.n, ref_too_long);
    for (size_t i = 0; i < ref.n; i++)
        CHECK(frame_wire_len(framing, stream + ref.off[i], len - ref.off[i]) == ref.len[i],
              "frame_wire_len of frame %zu", i);

    /* The relay's path: no receivers, so flow control never pauses and the log never fills. */
    struct bcast log;
    CHECK(bcast_init(&log, LOG_BYTES, LOG_BYTES / 64) == 0, "bcast_init");
    log_for_make_room = &log;
    struct flow flow;
    flow_init(&flow, 1u << 20, 0);
    struct stats stats = {0};
    uint64_t held = 0, stash = 0;
    struct fanout fo = {
        .log = &log, .framing = framing, .quota = UINT64_MAX, .stats = &stats, .held_bytes = &held};
    struct run run = {.framing = framing, .stream = stream};
    struct ingest in = {
        .log = &log,
        .flow = &flow,
        .fanout = &fo,
        .framing = framing,
        .max_frame = max_frame,
        .pace = 1u << 20,
        .race_slack = 0,
        .stats = &stats,
        .held_bytes = &held,
        .stash_bytes = &stash,
        .make_room = make_room,
        .on_frames = on_frames,
        .ctx = &run,
    };
    struct ingest_client ic = {0};
    struct fanout_client out;
    fanout_join(&fo, &out, 0);
    if (fail_alloc)
        rc_alloc_fail_after(1 + (mfv & 0xff) % 8);

    enum ingest_result last = INGEST_DONE;
    size_t pos = 0, k = 0;
    while (pos < len) {
        size_t n = len - pos;
        if (ncuts) {
            size_t c = (size_t)cuts[k++ % ncuts] + 1;
            if (flags & 0x08)
                c *= 16;
            if (c < n)
                n = c;
        }
        uint8_t *buf = malloc(n);
        CHECK(buf != NULL, "malloc");
        memcpy(buf, stream + pos, n);
        size_t used = 0;
        last = ingest_feed(&in, &ic, 0, &out, buf, n, &used);
        free(buf);
        CHECK(used <= n, "used %zu of %zu", used, n);
        CHECK(held == ingest_held(&ic), "held_bytes %llu, partial holds %llu",
              (unsigned long long)held, (unsigned long long)ingest_held(&ic));
        CHECK(ingest_held(&ic) <= max_frame + FRAME_LEN32_HEADER,
              "a partial of %llu bytes for max_frame %llu", (unsigned long long)ingest_held(&ic),
              (unsigned long long)max_frame);
        CHECK(ic.partial.len <= ic.partial.cap, "partial len %u cap %u", ic.partial.len,
              ic.partial.cap);
        if (last != INGEST_DONE)
            break;
        CHECK(used == n, "DONE but took %zu of %zu", used, n);
        pos += n;
    }
    rc_alloc_fail_after(0);

    /* Whatever stopped it, the log got a prefix of the reference's frames, in order. */
    CHECK(run.got.n <= ref.n, "%zu frames, the reference has %zu", run.got.n, ref.n);
    for (size_t i = 0; i < run.got.n; i++)
        CHECK(run.got.off[i] == ref.off[i] && run.got.len[i] == ref.len[i],
              "frame %zu: at %zu, %zu bytes; the reference's at %zu, %zu bytes", i, run.got.off[i],
              run.got.len[i], ref.off[i], ref.len[i]);
    CHECK(stats.frames_in == run.got.n && stats.bytes_in == run.appended, "stats %llu frames",
          (unsigned long long)stats.frames_in);
    switch (last) {
    case INGEST_DONE:
        /* Everything was fed: every whole frame is in, the rest is held. */
        CHECK(!ref_too_long, "the reference found a frame too long, the relay did not");
        CHECK(run.got.n == ref.n, "%zu frames, the reference has %zu", run.got.n, ref.n);
        CHECK(ic.partial.len == len - ref_complete, "partial holds %u bytes, the tail is %zu",
              ic.partial.len, len - ref_complete);
        CHECK(!ingest_waiting(&ic), "a frame is waiting with nobody to wait for");
        if (ic.partial.len)
            CHECK(memcmp(ic.partial.buf, stream + ref_complete, ic.partial.len) == 0,
                  "the partial holds other bytes");
        break;
    case INGEST_TOO_LONG:
        CHECK(ref_too_long, "too long after %zu frames; the reference found none", run.got.n);
        CHECK(run.got.n == ref.n, "too long after %zu frames, the reference after %zu", run.got.n,
              ref.n);
        break;
    case INGEST_NOMEM:
        CHECK(fail_alloc, "out of memory without a failed allocation");
        break;
    default:
        CHECK(false, "ingest result %d with no receivers", (int)last);
    }
    ingest_close(&in, &ic);
    CHECK(held == 0 && stash == 0, "held %llu stash %llu after close", (unsigned long long)held,
          (unsigned long long)stash);
    size_t used = 1;
    CHECK(ingest_feed(&in, &ic, 0, &out, stream, len, &used) == INGEST_CLOSED && used == 0,
          "a closed client took input");
    CHECK(fanout_release(&fo, &out), "fanout_release");
    bcast_destroy(&log);
    frames_free(&ref);
    frames_free(&run.got);
    return 0;
}
