/*
 * Ingest: received bytes to whole frames in the log. One append per buffer of whole frames,
 * frames assembled across buffers, frames too long, the flow pause with its stash and resume,
 * the make_room hook, held memory, and a closed client that must never publish again (bug 7).
 * Every input sits right before a PROT_NONE page, so reading past it faults.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ringcast/alloc.h"
#include "ringcast/bcast.h"
#include "ringcast/fanout.h"
#include "ringcast/flow.h"
#include "ringcast/ingest.h"

#include "guard_page.h"

/* ---- fixture ------------------------------------------------------------------------------- */

#define ME 2u   /* the publisher's slot */
#define PEER 9u /* a receiver's slot */
#define LIT(s) (s), sizeof(s) - 1

struct fx {
    struct bcast log;
    struct flow flow;
    struct fanout fo;
    struct ingest in;
    struct stats stats;
    uint64_t held, stash;
    struct ingest_client ic;
    struct fanout_client out;
    /* hooks */
    unsigned room_calls;
    bool room_release; /* make_room releases everything */
    size_t room_len;
    unsigned frames_calls;
    size_t frames_bytes;
    uint32_t frames_origin;
};

static bool fx_make_room(void *ctx, size_t len)
{
    struct fx *x = ctx;
    x->room_calls++;
    x->room_len = len;
    if (x->room_release)
        bcast_release(&x->log, x->log.head);
    return bcast_fits(&x->log, len);
}

static void fx_on_frames(void *ctx, uint32_t origin, const uint8_t *p, size_t len)
{
    struct fx *x = ctx;
    x->frames_calls++;
    x->frames_bytes += len;
    x->frames_origin = origin;
    /* What is reported is what the log holds. */
    assert_memory_equal(bcast_ptr(&x->log, x->log.head - len), p, len);
}

static void fx_init(struct fx *x, enum framing f, uint64_t max_frame, uint64_t log_bytes,
                    uint64_t pace, bool echo)
{
    memset(x, 0, sizeof(*x));
    assert_int_equal(bcast_init(&x->log, log_bytes, 64), 0);
    flow_init(&x->flow, pace, 0);
    x->fo = (struct fanout){
        .log = &x->log,
        .framing = f,
        .echo = echo,
        .policy = SLOW_DISCONNECT,
        .quota = 1u << 30,
        .keep_on_drop = 1u << 29,
        .stats = &x->stats,
        .held_bytes = &x->held,
    };
    x->in = (struct ingest){
        .log = &x->log,
        .flow = &x->flow,
        .fanout = &x->fo,
        .framing = f,
        .echo = echo,
        .max_frame = max_frame,
        .pace = pace,
        .race_slack = 0, /* these tests pause at the window itself */
        .stats = &x->stats,
        .held_bytes = &x->held,
        .stash_bytes = &x->stash,
        .make_room = fx_make_room,
        .on_frames = fx_on_frames,
        .ctx = x,
    };
    fanout_join(&x->fo, &x->out, 0);
}

static void fx_destroy(struct fx *x)
{
    ingest_close(&x->in, &x->ic);
    assert_int_equal(x->held, 0);
    assert_int_equal(x->stash, 0);
    bcast_destroy(&x->log);
}

static enum ingest_result feed(struct fx *x, const void *p, size_t len, size_t *used)
{
    *used = 0xdead;
    return ingest_feed(&x->in, &x->ic, ME, &x->out, guarded(p, len), len, used);
}

static void expect_feed(struct fx *x, const void *p, size_t len, enum ingest_result want,
                        size_t want_used)
{
    size_t used;
    enum ingest_result r = feed(x, p, len, &used);
    if (r != want || used != want_used)
        fail_msg("ingest_feed(%zu bytes) = %d using %zu, want %d using %zu", len, r, used, want,
                 want_used);
}

static uint64_t nrecs(const struct bcast *b)
{
    return b->rec_head - b->rec_tail;
}

static void expect_log(const struct fx *x, const void *want, size_t len, uint64_t frames)
{
    assert_int_equal(x->log.head - x->log.tail, len);
    assert_memory_equal(bcast_ptr(&x->log, x->log.tail), want, len);
    assert_int_equal(x->log.frames, frames);
}

/* held_bytes is exactly what the client holds outside the log. */
static void expect_held(const struct fx *x)
{
    assert_int_equal(x->held, ingest_held(&x->ic));
    assert_int_equal(x->stash, ingest_stashed(&x->ic));
}

/* ---- whole frames -------------------------------------------------------------------------- */

static void test_ingest_whole_frames_one_append(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 100, 1, 1u << 20, false);
    expect_feed(&x, LIT("a\nbb\nccc\n"), INGEST_DONE, 9);
    expect_log(&x, "a\nbb\nccc\n", 9, 3);
    assert_int_equal(nrecs(&x.log), 1);
    assert_int_equal(x.log.recs[0].origin, ME);
    assert_int_equal(x.log.recs[0].nframes, 3);
    assert_int_equal(x.frames_calls, 1);
    assert_int_equal(x.frames_bytes, 9);
    assert_int_equal(x.frames_origin, ME);
    assert_int_equal(x.stats.frames_in, 3);
    assert_int_equal(x.stats.bytes_in, 9);
    assert_int_equal(x.room_calls, 0);
    /* The publisher's fan-out state knows its own frames. */
    assert_int_equal(x.out.own_end, 9);
    assert_int_equal(fanout_owed(&x.fo, &x.out), 0);
    assert_int_equal(x.held, 0);
    assert_false(ingest_mid_frame(&x.ic));
    assert_false(ingest_waiting(&x.ic));
    /* An empty buffer does nothing. */
    expect_feed(&x, "", 0, INGEST_DONE, 0);
    assert_int_equal(x.frames_calls, 1);
    fx_destroy(&x);
}

static void test_ingest_whole_frames_len32(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LEN32, 100, 1, 1u << 20, false);
    static const uint8_t in[] = {0, 0, 0, 2, 'h', 'i', 0, 0, 0, 0, 0, 0, 0, 1, '\n'};
    expect_feed(&x, in, sizeof(in), INGEST_DONE, sizeof(in));
    expect_log(&x, in, sizeof(in), 3);
    assert_int_equal(x.frames_calls, 1);
    fx_destroy(&x);
}

/* ---- frames across buffers ----------------------------------------------------------------- */

static void test_ingest_frame_split_across_feeds(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 100, 1, 1u << 20, false);
    expect_feed(&x, LIT("a\nbb"), INGEST_DONE, 4);
    expect_log(&x, "a\n", 2, 1);
    assert_true(ingest_mid_frame(&x.ic));
    assert_false(ingest_waiting(&x.ic));
    assert_true(x.held > 0);
    expect_held(&x);
    expect_feed(&x, LIT("b"), INGEST_DONE, 1);
    expect_log(&x, "a\n", 2, 1);
    /* The frame ends: one append of it alone, then the rest as usual. */
    expect_feed(&x, LIT("b\ncc\ndd"), INGEST_DONE, 7);
    expect_log(&x, "a\nbbbb\ncc\n", 10, 3);
    assert_int_equal(x.frames_calls, 3);
    assert_true(ingest_mid_frame(&x.ic));
    expect_held(&x);
    expect_feed(&x, LIT("\n"), INGEST_DONE, 1);
    expect_log(&x, "a\nbbbb\ncc\ndd\n", 13, 4);
    assert_false(ingest_mid_frame(&x.ic));
    assert_int_equal(x.held, 0);
    assert_int_equal(x.stats.frames_in, 4);
    assert_int_equal(x.stats.bytes_in, 13);
    fx_destroy(&x);
}

/* len32: the header itself split, then the payload over three buffers. */
static void test_ingest_frame_split_len32(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LEN32, 100, 1, 1u << 20, false);
    static const uint8_t frame[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    static const uint8_t cuts[] = {1, 3, 6, 9};
    size_t at = 0;
    for (size_t i = 0; i < sizeof(cuts); i++) {
        expect_feed(&x, frame + at, cuts[i] - at, INGEST_DONE, cuts[i] - at);
        at = cuts[i];
        expect_held(&x);
        if (at < sizeof(frame))
            assert_int_equal(x.log.head, 0);
    }
    expect_log(&x, frame, sizeof(frame), 1);
    assert_int_equal(x.held, 0);
    fx_destroy(&x);
}

/* Every way to cut a stream into two buffers delivers the same frames. */
static void test_ingest_every_split(void **state)
{
    (void)state;
    static const char stream[] = "one\n\ntwo two\nthree three three\nx\n";
    const size_t len = sizeof(stream) - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        struct fx x;
        fx_init(&x, FRAMING_LINE, 100, 1, 1u << 20, false);
        expect_feed(&x, stream, cut, INGEST_DONE, cut);
        expect_feed(&x, stream + cut, len - cut, INGEST_DONE, len - cut);
        expect_log(&x, stream, len, 5);
        assert_int_equal(x.held, 0);
        fx_destroy(&x);
    }
}

/* ---- too long ------------------------------------------------------------------------------ */

static void test_ingest_too_long_line(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 8, 1, 1u << 20, false);
    /* The frames before the long one are appended; nothing after it is taken. */
    expect_feed(&x, LIT("ok\n123456789\nzz\n"), INGEST_TOO_LONG, 3);
    expect_log(&x, "ok\n", 3, 1);
    fx_destroy(&x);

    fx_init(&x, FRAMING_LINE, 8, 1, 1u << 20, false);
    expect_feed(&x, LIT("1234567\n"), INGEST_DONE, 8); /* exactly max_frame, '\n' counted */
    /* Too long found while assembling across buffers. */
    expect_feed(&x, LIT("1234"), INGEST_DONE, 4);
    expect_held(&x);
    expect_feed(&x, LIT("56789"), INGEST_TOO_LONG, 0);
    expect_log(&x, "1234567\n", 8, 1);
    expect_held(&x);
    fx_destroy(&x);

    /* No '\n' yet, but already longer than any frame may be. */
    fx_init(&x, FRAMING_LINE, 8, 1, 1u << 20, false);
    expect_feed(&x, LIT("123456789"), INGEST_TOO_LONG, 0);
    assert_int_equal(x.log.head, 0);
    fx_destroy(&x);
}

static void test_ingest_too_long_len32(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LEN32, 4, 1, 1u << 20, false);
    static const uint8_t ok_then_long[] = {0, 0, 0, 4, 'a', 'b', 'c', 'd', 0, 0, 0, 5, 'x'};
    expect_feed(&x, ok_then_long, sizeof(ok_then_long), INGEST_TOO_LONG, 8);
    expect_log(&x, ok_then_long, 8, 1);
    fx_destroy(&x);

    /* The header split across buffers: known too long once it is whole. */
    fx_init(&x, FRAMING_LEN32, 4, 1, 1u << 20, false);
    static const uint8_t hdr[] = {0x80, 0, 0, 0};
    expect_feed(&x, hdr, 2, INGEST_DONE, 2);
    expect_held(&x);
    expect_feed(&x, hdr + 2, 2, INGEST_TOO_LONG, 0); /* nothing more is taken */
    expect_held(&x);
    assert_int_equal(x.log.head, 0);
    fx_destroy(&x);
}

/* ---- flow pause, stash, resume ------------------------------------------------------------- */

/*
 * Paused by flow control at a frame boundary in the middle of a buffer: what came before is in
 * the log, the rest goes to the stash, and resume feeds it once the receiver catches up.
 */
static void test_ingest_flow_pause_stash_resume(void **state)
{
    (void)state;
    struct fx x;
    /* The first frame weighs 4 + 64 = 68 units; a window of 70 leaves room for 2 more. */
    fx_init(&x, FRAMING_LINE, 100, 1, 70, false);
    flow_advance(&x.flow, PEER, 0);
    expect_feed(&x, LIT("aa"), INGEST_DONE, 2);
    const char buf[] = "a\nbbbb\ncc";
    size_t used;
    const uint8_t *p = guarded(buf, sizeof(buf) - 1);
    assert_int_equal(ingest_feed(&x.in, &x.ic, ME, &x.out, p, sizeof(buf) - 1, &used),
                     INGEST_PAUSED);
    assert_int_equal(used, 2); /* "a\n" finished the assembled frame: a boundary */
    expect_log(&x, "aaa\n", 4, 1);
    assert_false(ingest_waiting(&x.ic));
    /* The loop keeps the rest aside and gives the buffer back. */
    assert_int_equal(ingest_stash(&x.in, &x.ic, p + used, sizeof(buf) - 1 - used), 0);
    assert_true(ingest_waiting(&x.ic));
    expect_held(&x);
    assert_true(x.stash >= 7);
    /* Still behind: paused again, nothing taken. */
    assert_int_equal(ingest_resume(&x.in, &x.ic, ME, &x.out), INGEST_PAUSED);
    expect_log(&x, "aaa\n", 4, 1);
    /* More bytes racing the pause go behind what is aside. */
    assert_int_equal(ingest_stash(&x.in, &x.ic, (const uint8_t *)"c\n", 2), 0);
    expect_held(&x);
    /* The receiver catches up. */
    flow_advance(&x.flow, PEER, x.log.vhead);
    assert_int_equal(ingest_resume(&x.in, &x.ic, ME, &x.out), INGEST_DONE);
    expect_log(&x, "aaa\nbbbb\nccc\n", 13, 3);
    assert_false(ingest_waiting(&x.ic));
    assert_int_equal(x.held, 0);
    assert_null(x.ic.stash);
    fx_destroy(&x);
}

/* A frame assembled across buffers that the flow refuses waits, whole, for the resume. */
static void test_ingest_flow_pause_assembled_frame(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 100, 1, 100, false);
    flow_advance(&x.flow, PEER, 0);
    expect_feed(&x, LIT("x\n"), INGEST_DONE, 2); /* 66 units */
    expect_feed(&x, LIT("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"), INGEST_DONE, 40);
    expect_feed(&x, LIT("\nz\n"), INGEST_PAUSED, 1);
    assert_true(ingest_waiting(&x.ic));
    assert_false(ingest_mid_frame(&x.ic)); /* whole: no frame timeout */
    expect_held(&x);
    assert_int_equal(ingest_stash(&x.in, &x.ic, (const uint8_t *)"z\n", 2), 0);
    flow_advance(&x.flow, PEER, x.log.vhead);
    assert_int_equal(ingest_resume(&x.in, &x.ic, ME, &x.out), INGEST_DONE);
    expect_log(&x, "x\nyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\nz\n", 45, 3);
    assert_int_equal(x.held, 0);
    fx_destroy(&x);
}

/* Echo: the publisher receives its own frames, so its own lag counts. */
static void test_ingest_flow_echo_counts_publisher(void **state)
{
    (void)state;
    for (int echo = 0; echo < 2; echo++) {
        struct fx x;
        fx_init(&x, FRAMING_LINE, 100, 1, 100, echo);
        flow_advance(&x.flow, ME, 0); /* the publisher is the only receiver */
        expect_feed(&x, LIT("first\n"), INGEST_DONE, 6);
        /* 70 units behind now: a 40-byte frame is too much for a receiver, not for no one. */
        expect_feed(&x, LIT("ffffffffffffffffffffffffffffffffffffff\n"),
                    echo ? INGEST_PAUSED : INGEST_DONE, echo ? 0 : 39);
        fx_destroy(&x);
    }
}

/* No receiver at all: frames are consumed, never paused. */
static void test_ingest_no_receiver_never_pauses(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 100, 1, 10, false);
    for (int i = 0; i < 100; i++)
        expect_feed(&x, LIT("no one listens\n"), INGEST_DONE, 15);
    assert_int_equal(x.log.frames, 100);
    fx_destroy(&x);
}

/* ---- a full log ---------------------------------------------------------------------------- */

static void test_ingest_make_room(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 4096, 1, 1u << 30, false);
    const uint64_t cap = x.log.cap;
    static uint8_t line[2048];
    memset(line, 'l', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\n';
    for (uint64_t i = 0; i < cap / sizeof(line); i++)
        expect_feed(&x, line, sizeof(line), INGEST_DONE, sizeof(line));
    assert_int_equal(x.room_calls, 0);
    assert_false(bcast_fits(&x.log, 1));
    /* Full, and make_room cannot help: paused, nothing taken. */
    expect_feed(&x, line, sizeof(line), INGEST_PAUSED, 0);
    assert_int_equal(x.room_calls, 1);
    assert_int_equal(x.room_len, sizeof(line));
    assert_int_equal(x.log.head, cap);
    /* It releases what nobody reads: the append goes through. */
    x.room_release = true;
    expect_feed(&x, line, sizeof(line), INGEST_DONE, sizeof(line));
    assert_int_equal(x.room_calls, 2);
    assert_int_equal(x.log.head, cap + sizeof(line));
    /* Without the hook a full log pauses the publisher. */
    while (bcast_fits(&x.log, sizeof(line)))
        expect_feed(&x, line, sizeof(line), INGEST_DONE, sizeof(line));
    x.in.make_room = NULL;
    expect_feed(&x, line, sizeof(line), INGEST_PAUSED, 0);
    fx_destroy(&x);
}

/* ---- memory -------------------------------------------------------------------------------- */

static void test_ingest_held_bytes_back_to_zero(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 1000, 1, 64, false);
    flow_advance(&x.flow, PEER, 0);
    /* In the log, but 70 units now lag: reading stops. */
    expect_feed(&x, LIT("first\n"), INGEST_PAUSED, 6);
    /* Bytes that raced the pause wait aside (the loop stashes them). */
    assert_int_equal(ingest_stash(&x.in, &x.ic, (const uint8_t *)"half a frame\nrest of", 20), 0);
    assert_int_equal(ingest_stash(&x.in, &x.ic, (const uint8_t *)" it", 3), 0);
    expect_held(&x);
    assert_true(x.stash >= 23);
    /* Caught up: the stash goes in (13 bytes merged into its record: within the window, so
     * reading goes on) and is freed. */
    flow_advance(&x.flow, PEER, x.log.vhead);
    assert_int_equal(ingest_resume(&x.in, &x.ic, ME, &x.out), INGEST_DONE);
    expect_log(&x, "first\nhalf a frame\n", 19, 2);
    assert_false(ingest_waiting(&x.ic));
    assert_true(ingest_mid_frame(&x.ic)); /* "rest of it" assembling */
    assert_null(x.ic.stash);
    assert_true(x.held > 0);
    expect_held(&x);
    /* What it holds goes on close. */
    ingest_close(&x.in, &x.ic);
    assert_int_equal(x.held, 0);
    assert_int_equal(ingest_held(&x.ic), 0);
    assert_null(x.ic.partial.buf);
    assert_null(x.ic.stash);
    fx_destroy(&x);
}

static void test_ingest_nomem(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 1000, 1, 1u << 20, false);
    rc_alloc_fail_after(1);
    expect_feed(&x, LIT("ok\npartial"), INGEST_NOMEM, 3);
    rc_alloc_fail_after(0);
    expect_log(&x, "ok\n", 3, 1);
    assert_int_equal(x.held, 0);
    rc_alloc_fail_after(1);
    assert_int_equal(ingest_stash(&x.in, &x.ic, (const uint8_t *)"abc", 3), -ENOMEM);
    rc_alloc_fail_after(0);
    assert_int_equal(x.held, 0);
    assert_false(ingest_waiting(&x.ic));
    fx_destroy(&x);
}

/* ---- closed clients (bug 7) ---------------------------------------------------------------- */

struct snap {
    uint64_t head, vhead, frames, recs, frames_in;
    unsigned calls;
};

static struct snap snap(const struct fx *x)
{
    return (struct snap){x->log.head,    x->log.vhead,       x->log.frames,
                         nrecs(&x->log), x->stats.frames_in, x->frames_calls};
}

static void expect_unchanged(const struct fx *x, const struct snap *s)
{
    struct snap now = snap(x);
    assert_int_equal(now.head, s->head);
    assert_int_equal(now.vhead, s->vhead);
    assert_int_equal(now.frames, s->frames);
    assert_int_equal(now.recs, s->recs);
    assert_int_equal(now.frames_in, s->frames_in);
    assert_int_equal(now.calls, s->calls);
}

/*
 * Bug 7: a frame assembled across buffers, whole but waiting for the flow, must not reach the
 * log after its sender was closed: not from a later feed, not from a resume.
 */
static void test_ingest_bug7_assembled_frame_not_published_after_close(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LINE, 100, 1, 70, false);
    flow_advance(&x.flow, PEER, 0);
    expect_feed(&x, LIT("first\n"), INGEST_DONE, 6);
    expect_feed(&x, LIT("assembled"), INGEST_DONE, 9);
    expect_feed(&x, LIT(" frame\nmore\n"), INGEST_PAUSED, 7);
    assert_true(x.ic.partial_complete);
    assert_int_equal(ingest_stash(&x.in, &x.ic, (const uint8_t *)"more\n", 5), 0);
    struct snap before = snap(&x);
    ingest_close(&x.in, &x.ic);
    assert_int_equal(x.held, 0);
    assert_false(ingest_waiting(&x.ic));
    /* The receiver catches up: nothing may come of the closed client now. */
    flow_advance(&x.flow, PEER, x.log.vhead);
    assert_int_equal(ingest_resume(&x.in, &x.ic, ME, &x.out), INGEST_CLOSED);
    expect_unchanged(&x, &before);
    size_t used;
    assert_int_equal(feed(&x, LIT("late\n"), &used), INGEST_CLOSED);
    assert_int_equal(used, 0);
    expect_unchanged(&x, &before);
    assert_int_equal(x.held, 0);
    expect_log(&x, "first\n", 6, 1);
    fx_destroy(&x);
}

/* Bug 7: an incomplete frame, closed, then the rest of it arrives (a recv raced the close). */
static void test_ingest_bug7_rest_of_frame_after_close(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, FRAMING_LEN32, 100, 1, 1u << 20, false);
    static const uint8_t frame[] = {0, 0, 0, 3, 'a', 'b', 'c'};
    expect_feed(&x, frame, 5, INGEST_DONE, 5);
    struct snap before = snap(&x);
    ingest_close(&x.in, &x.ic);
    assert_int_equal(x.held, 0);
    assert_false(ingest_mid_frame(&x.ic));
    size_t used;
    assert_int_equal(feed(&x, frame + 5, 2, &used), INGEST_CLOSED);
    assert_int_equal(used, 0);
    assert_int_equal(ingest_resume(&x.in, &x.ic, ME, &x.out), INGEST_CLOSED);
    expect_unchanged(&x, &before);
    assert_int_equal(x.log.head, 0);
    /* Closing twice is harmless. */
    ingest_close(&x.in, &x.ic);
    assert_int_equal(x.held, 0);
    fx_destroy(&x);
}

/* Bug 7: an empty append (what a closed client's frame used to become) adds no record. */
static void test_ingest_bug7_empty_append_adds_no_record(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    bcast_append(&b, 1, "a\n", 2, 1);
    uint64_t vhead = b.vhead, recs = nrecs(&b);
    assert_int_equal(bcast_append(&b, 2, NULL, 0, 0), 2);
    assert_int_equal(bcast_append(&b, 1, "", 0, 0), 2);
    assert_int_equal(b.head, 2);
    assert_int_equal(b.vhead, vhead);
    assert_int_equal(b.frames, 1);
    assert_int_equal(nrecs(&b), recs);
    assert_int_equal(bcast_append_units(&b, 1, 0), 0); /* merges with 1's record */
    bcast_release(&b, 2);
    assert_int_equal(bcast_append(&b, 3, NULL, 0, 0), 2);
    assert_int_equal(nrecs(&b), 0);
    assert_int_equal(b.vhead, vhead);
    bcast_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest_whole_frames_one_append),
        cmocka_unit_test(test_ingest_whole_frames_len32),
        cmocka_unit_test(test_ingest_frame_split_across_feeds),
        cmocka_unit_test(test_ingest_frame_split_len32),
        cmocka_unit_test(test_ingest_every_split),
        cmocka_unit_test(test_ingest_too_long_line),
        cmocka_unit_test(test_ingest_too_long_len32),
        cmocka_unit_test(test_ingest_flow_pause_stash_resume),
        cmocka_unit_test(test_ingest_flow_pause_assembled_frame),
        cmocka_unit_test(test_ingest_flow_echo_counts_publisher),
        cmocka_unit_test(test_ingest_no_receiver_never_pauses),
        cmocka_unit_test(test_ingest_make_room),
        cmocka_unit_test(test_ingest_held_bytes_back_to_zero),
        cmocka_unit_test(test_ingest_nomem),
        cmocka_unit_test(test_ingest_bug7_assembled_frame_not_published_after_close),
        cmocka_unit_test(test_ingest_bug7_rest_of_frame_after_close),
        cmocka_unit_test(test_ingest_bug7_empty_append_adds_no_record),
    };
    return cmocka_run_group_tests(tests, arena_setup, arena_teardown);
}
