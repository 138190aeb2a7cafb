/*
 * Micro-benchmarks of ringcast's hot paths: frame scanning and assembly per framing, the
 * per-client cost of fanning a batch out of the broadcast log, and the send-range builder when
 * a client's own frames must be skipped. Usage: bench_micro [--json FILE] [--reps N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ringcast/bcast.h"
#include "ringcast/frame.h"

#define CHUNK (64u << 10)

struct scan_ctx {
    enum framing framing;
    uint8_t *buf;
    size_t len;
};

/* A receive buffer full of frames of @size wire bytes. */
static void fill_frames(struct scan_ctx *s, enum framing framing, size_t size)
{
    s->framing = framing;
    s->buf = malloc(CHUNK);
    size_t off = 0;
    while (off + size <= CHUNK) {
        memset(s->buf + off, 'a' + (int)(off % 26), size);
        if (framing == FRAMING_LINE) {
            s->buf[off + size - 1] = '\n';
        } else {
            uint32_t n = (uint32_t)(size - FRAME_LEN32_HEADER);
            s->buf[off] = (uint8_t)(n >> 24);
            s->buf[off + 1] = (uint8_t)(n >> 16);
            s->buf[off + 2] = (uint8_t)(n >> 8);
            s->buf[off + 3] = (uint8_t)n;
        }
        off += size;
    }
    s->len = off;
}

static uint64_t body_scan(void *ctx, uint64_t ops)
{
    struct scan_ctx *s = ctx;
    uint64_t frames = 0;
    for (uint64_t i = 0; i < ops; i++) {
        struct frame_scan r;
        frame_scan(s->framing, s->buf, s->len, 1u << 20, &r);
        frames += r.nframes;
    }
    bench_keep(frames);
    return ops * s->len;
}

/* Every frame arrives split in two pieces: the assembly path for frames spanning buffers. */
static uint64_t body_assemble(void *ctx, uint64_t ops)
{
    struct scan_ctx *s = ctx;
    size_t flen = frame_wire_len(s->framing, s->buf, s->len);
    struct frame_partial fp = {0};
    for (uint64_t i = 0; i < ops; i++) {
        const uint8_t *p = s->buf + (i * flen) % (s->len - flen + 1) / flen * flen;
        size_t used;
        int64_t grown;
        frame_partial_feed(&fp, s->framing, 1u << 20, p, flen / 2, &used, &grown);
        frame_partial_feed(&fp, s->framing, 1u << 20, p + flen / 2, flen - flen / 2, &used, &grown);
        fp.len = 0; /* consumed; the buffer is kept, as a connection keeps assembling */
    }
    frame_partial_reset(&fp);
    return ops * flen;
}

struct fan_ctx {
    struct bcast log;
    struct scan_ctx chunk;
    uint32_t clients;
    uint64_t *cursor;
    uint64_t *own_end;
};

/* One batch: append a 64 KiB chunk of frames, then every client builds its send range and
 * moves its cursor (as a completed send would). Ops = clients served. */
static uint64_t body_fanout(void *ctx, uint64_t ops)
{
    struct fan_ctx *f = ctx;
    uint64_t bytes = 0;
    for (uint64_t done = 0; done < ops;) {
        if (!bcast_fits(&f->log, f->chunk.len))
            bcast_release(&f->log, f->log.head);
        bcast_append(&f->log, 0, f->chunk.buf, f->chunk.len, 1024);
        for (uint32_t c = 1; c <= f->clients && done < ops; c++, done++) {
            uint64_t skipped = 0;
            uint64_t len = bcast_next_range(&f->log, &f->cursor[c], c, f->own_end[c], &skipped);
            uint64_t seq = bcast_seq_at(&f->log, f->cursor[c] + len);
            bench_keep(seq);
            f->cursor[c] += len;
            bytes += len;
        }
    }
    bench_keep(bytes);
    return 0; /* nothing is copied per client: GB/s would mean nothing */
}

/* A client that also publishes: its own records interleave with others', so the range
 * builder walks records. Ops = ranges built. */
static uint64_t body_skip_own(void *ctx, uint64_t ops)
{
    struct fan_ctx *f = ctx;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < ops; i++) {
        if (!bcast_fits(&f->log, 256))
            bcast_release(&f->log, f->log.head);
        uint64_t start = f->log.head;
        for (uint32_t k = 0; k < 8; k++) /* 8 publishers' appends, then ours */
            bcast_append(&f->log, 10 + k, f->chunk.buf, 64, 1);
        bcast_append(&f->log, 1, f->chunk.buf, 64, 1);
        f->own_end[1] = f->log.head;
        uint64_t cursor = start, skipped = 0;
        while (cursor < f->log.head) {
            uint64_t len = bcast_next_range(&f->log, &cursor, 1, f->own_end[1], &skipped);
            cursor += len;
            bytes += len;
        }
    }
    return bytes;
}

static void fan_init(struct fan_ctx *f, uint32_t clients)
{
    memset(f, 0, sizeof(*f));
    if (bcast_init(&f->log, 64u << 20, 1u << 16) < 0) {
        fprintf(stderr, "bench: cannot map the log\n");
        exit(1);
    }
    fill_frames(&f->chunk, FRAMING_LINE, 64);
    f->clients = clients;
    f->cursor = calloc(clients + 1, sizeof(uint64_t));
    f->own_end = calloc(clients + 1, sizeof(uint64_t));
}

int main(int argc, char **argv)
{
    const char *json = NULL;
    int reps = 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_micro [--json FILE] [--reps N]\n");
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    struct scan_ctx line64, line1k, len64, len1k;
    fill_frames(&line64, FRAMING_LINE, 64);
    fill_frames(&line1k, FRAMING_LINE, 1024);
    fill_frames(&len64, FRAMING_LEN32, 64);
    fill_frames(&len1k, FRAMING_LEN32, 1024);
    struct fan_ctx fan100, fan1000, skip;
    fan_init(&fan100, 100);
    fan_init(&fan1000, 1000);
    fan_init(&skip, 1);

    const struct bench_case cases[] = {
        {"frame_scan/line/64B (per 64K buf)", body_scan, &line64, 2000},
        {"frame_scan/line/1K (per 64K buf)", body_scan, &line1k, 2000},
        {"frame_scan/len32/64B (per 64K buf)", body_scan, &len64, 2000},
        {"frame_scan/len32/1K (per 64K buf)", body_scan, &len1k, 2000},
        {"frame_assemble/line/1K (per frame)", body_assemble, &line1k, 200000},
        {"frame_assemble/len32/1K (per frame)", body_assemble, &len1k, 200000},
        {"fanout/100 clients (per client)", body_fanout, &fan100, 200000},
        {"fanout/1000 clients (per client)", body_fanout, &fan1000, 200000},
        {"send_range/skip own (per 9 appends)", body_skip_own, &skip, 100000},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    struct bench_result results[sizeof(cases) / sizeof(cases[0])];
    for (size_t i = 0; i < n; i++) {
        bench_run(&cases[i], reps, 200, &results[i]);
        bench_print(&results[i]);
    }
    bench_json(results, n, json);
    return 0;
}
