/*
 * Fan-out: joining, send plans (own records skipped when echo is off), send results, deliveries
 * counted from sequence numbers, the charge in log units, the slow policies (cut, drop with the
 * rest of a partly sent frame kept aside), zero-copy pins, muted (pub-only) clients, finishing, and
 * releasing a client.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/alloc.h"
#include "ringcast/bcast.h"
#include "ringcast/fanout.h"

#define LIT(s) (s), sizeof(s) - 1

/* ---- fixture ------------------------------------------------------------------------------- */

struct fx {
    struct bcast log;
    struct stats stats;
    uint64_t held;
    struct fanout fo;
};

static void fx_init(struct fx *x, uint64_t log_bytes, enum slow_policy policy, bool echo,
                    uint64_t quota, uint64_t keep_on_drop)
{
    memset(x, 0, sizeof(*x));
    assert_int_equal(bcast_init(&x->log, log_bytes, log_bytes / BCAST_REC_UNITS + 16), 0);
    x->fo = (struct fanout){
        .log = &x->log,
        .framing = FRAMING_LINE,
        .echo = echo,
        .policy = policy,
        .quota = quota,
        .keep_on_drop = keep_on_drop,
        .stats = &x->stats,
        .held_bytes = &x->held,
    };
}

static void fx_destroy(struct fx *x)
{
    bcast_destroy(&x->log);
}

/* @origin appends @len bytes of @nframes frames; @pub is its fan-out state (or NULL). */
static uint64_t publish(struct fx *x, uint32_t origin, struct fanout_client *pub, const void *p,
                        size_t len, uint32_t nframes)
{
    assert_true(bcast_fits(&x->log, len));
    uint64_t at = bcast_append(&x->log, origin, p, len, nframes);
    if (pub)
        fanout_published(&x->fo, pub, at, len);
    return at;
}

/* @n line frames of @flen bytes each ("<tag><index>..." then '\n'), appended one by one. */
static void publish_lines(struct fx *x, uint32_t origin, struct fanout_client *pub, unsigned n,
                          size_t flen, char tag)
{
    char buf[256];
    assert_true(flen >= 2 && flen <= sizeof(buf));
    for (unsigned i = 0; i < n; i++) {
        memset(buf, tag, flen - 1);
        char num[16];
        int k = snprintf(num, sizeof(num), "%u", i);
        if ((size_t)k < flen - 1)
            memcpy(buf + 1, num, (size_t)k < flen - 2 ? (size_t)k : flen - 2);
        buf[flen - 1] = '\n';
        publish(x, origin, pub, buf, flen, 1);
    }
}

static bool plan(struct fx *x, struct fanout_client *fc, uint32_t self, struct fanout_send *s)
{
    bool zc = true;
    bool ok = fanout_plan(&x->fo, fc, self, false, 0, s, &zc);
    assert_false(zc);
    return ok;
}

/* Plan and complete one send, expecting exactly @want (len bytes). */
static void send_expect(struct fx *x, struct fanout_client *fc, uint32_t self, const char *want,
                        size_t len)
{
    struct fanout_send s;
    assert_true(plan(x, fc, self, &s));
    assert_int_equal(fanout_send_len(&s), len);
    assert_memory_equal(((const uint8_t *)s.iov[0].iov_base), want, len);
    enum fanout_sent r = fanout_sent(&x->fo, fc, (int)len);
    assert_true(r == FANOUT_SENT_ALL || r == FANOUT_SENT_PART); /* PART: own frames follow */
}

/* ---- join and plan ------------------------------------------------------------------------- */

static void test_fanout_join_at_head(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1000, 500);
    publish(&x, 1, NULL, LIT("old\n"), 1);
    struct fanout_client c;
    memset(&c, 0xa5, sizeof(c)); /* join initialises everything */
    fanout_join(&x.fo, &c, 0);
    assert_int_equal(c.cursor, x.log.head);
    assert_int_equal(c.vcursor, x.log.vhead);
    assert_int_equal(c.seq, 1);
    assert_null(c.resid);
    assert_false(fanout_busy(&c));
    assert_int_equal(fanout_charge(&x.fo, &c), 0);
    assert_int_equal(fanout_owed(&x.fo, &c), 0);
    struct fanout_send s;
    assert_false(plan(&x, &c, 2, &s)); /* nothing pending: frames before the join are not its */
    assert_int_equal(x.stats.sends, 0);
    publish(&x, 1, NULL, LIT("new\n"), 1);
    send_expect(&x, &c, 2, "new\n", 4);
    assert_int_equal(x.stats.deliveries, 1);
    fx_destroy(&x);
}

static void test_fanout_plan_covers_cursor_to_head(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    publish(&x, 1, NULL, LIT("a\nbb\n"), 2);
    publish(&x, 3, NULL, LIT("ccc\n"), 1);
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_send_len(&s), 9);
    assert_int_equal(((uint64_t)((const uint8_t *)s.iov[0].iov_base - x.log.base)), 0);
    assert_false(s.from_resid);
    assert_ptr_equal(((const uint8_t *)s.iov[0].iov_base), bcast_ptr(&x.log, 0));
    assert_true(fanout_busy(&c));
    /* One send in flight at most. */
    struct fanout_send s2;
    assert_false(plan(&x, &c, 2, &s2));
    /* What comes in meanwhile waits for the next send. */
    publish(&x, 1, NULL, LIT("d\n"), 1);
    assert_int_equal(fanout_sent(&x.fo, &c, 9), FANOUT_SENT_ALL);
    assert_false(fanout_busy(&c));
    assert_int_equal(c.cursor, 9);
    assert_int_equal(x.stats.deliveries, 3);
    send_expect(&x, &c, 2, "d\n", 2);
    assert_int_equal(x.stats.deliveries, 4);
    assert_int_equal(x.stats.sends, 2);
    assert_int_equal(x.stats.bytes_out, 11);
    fx_destroy(&x);
}

/* Echo off: a client's own records are stepped over, and never counted as delivered. */
static void test_fanout_plan_skips_own_records(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client me;
    fanout_join(&x.fo, &me, 0);
    publish(&x, 1, NULL, LIT("a1\n"), 1);
    publish(&x, 2, &me, LIT("me1\nme2\n"), 2);
    publish(&x, 1, NULL, LIT("a2\n"), 1);
    publish(&x, 2, &me, LIT("me3\n"), 1);
    assert_int_equal(fanout_owed(&x.fo, &me), 6);
    /* One send, two ranges around its own record; a short send stops inside the second. */
    struct fanout_send s;
    assert_true(plan(&x, &me, 2, &s));
    assert_int_equal(s.niov, 2);
    assert_int_equal(s.iov[0].iov_len, 3);
    assert_memory_equal(s.iov[0].iov_base, "a1\n", 3);
    assert_int_equal(s.iov[1].iov_len, 3);
    assert_memory_equal(s.iov[1].iov_base, "a2\n", 3);
    assert_int_equal(fanout_sent(&x.fo, &me, 4), FANOUT_SENT_SHORT);
    assert_int_equal(x.stats.deliveries, 1); /* a1 whole; a2 not yet */
    assert_int_equal(me.cursor, 3 + 8 + 1);
    assert_int_equal(fanout_owed(&x.fo, &me), 2);
    send_expect(&x, &me, 2, "2\n", 2);
    assert_int_equal(x.stats.deliveries, 2);
    assert_int_equal(fanout_owed(&x.fo, &me), 0);
    /* Only its own frame is left: nothing to send, but the cursor moves past it. */
    assert_false(plan(&x, &me, 2, &s));
    assert_int_equal(me.cursor, x.log.head);
    assert_int_equal(me.vcursor, x.log.vhead);
    assert_int_equal(fanout_charge(&x.fo, &me), 0);
    assert_int_equal(x.stats.deliveries, 2);
    /* A receiver that is not the origin gets everything in one send. */
    struct fanout_client other;
    memset(&other, 0, sizeof(other)); /* as if it joined at 0 */
    send_expect(&x, &other, 5, "a1\nme1\nme2\na2\nme3\n", 18);
    assert_int_equal(x.stats.deliveries, 7);
    fx_destroy(&x);
}

static void test_fanout_plan_echo_includes_own(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, true, 1 << 20, 500);
    struct fanout_client me;
    fanout_join(&x.fo, &me, 0);
    publish(&x, 1, NULL, LIT("a1\n"), 1);
    publish(&x, 2, &me, LIT("me1\n"), 1);
    publish(&x, 1, NULL, LIT("a2\n"), 1);
    assert_int_equal(fanout_owed(&x.fo, &me), 10);
    send_expect(&x, &me, 2, "a1\nme1\na2\n", 10);
    assert_int_equal(x.stats.deliveries, 3);
    fx_destroy(&x);
}

/* ---- send results -------------------------------------------------------------------------- */

static void test_fanout_sent_full_short_eagain_error(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    publish(&x, 1, NULL, LIT("hello\nworld\n"), 2);
    struct fanout_send s;

    /* EAGAIN: nothing moves; the socket is full. */
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, -EAGAIN), FANOUT_SENT_SHORT);
    assert_int_equal(c.cursor, 0);
    assert_false(fanout_busy(&c));
    assert_int_equal(x.stats.bytes_out, 0);

    /* Short: the cursor moves by what was taken, mid-frame. */
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_send_len(&s), 12);
    assert_int_equal(fanout_sent(&x.fo, &c, 3), FANOUT_SENT_SHORT);
    assert_int_equal(c.cursor, 3);
    assert_int_equal(c.vcursor, bcast_units_at(&x.log, 3));
    assert_int_equal(x.stats.deliveries, 0);
    assert_int_equal(fanout_owed(&x.fo, &c), 9);

    /* The rest. */
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(((uint64_t)((const uint8_t *)s.iov[0].iov_base - x.log.base)), 3);
    assert_int_equal(fanout_send_len(&s), 9);
    assert_memory_equal(((const uint8_t *)s.iov[0].iov_base), "lo\nworld\n", 9);
    assert_int_equal(fanout_sent(&x.fo, &c, 9), FANOUT_SENT_ALL);
    assert_int_equal(c.cursor, 12);
    assert_int_equal(x.stats.deliveries, 2);

    /* An error: the connection failed. */
    publish(&x, 1, NULL, LIT("x\n"), 1);
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, -ECONNRESET), FANOUT_SENT_ERROR);
    assert_false(fanout_busy(&c));
    assert_int_equal(c.cursor, 12);
    assert_int_equal(x.stats.sends, 4);
    assert_int_equal(x.stats.bytes_out, 12);
    fx_destroy(&x);
}

/* Deliveries: frames whose last byte the socket took, from sequence numbers, once each. */
static void test_fanout_deliveries_counted_from_seq(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    publish(&x, 1, NULL, LIT("a\nb\nc\n"), 3);
    publish(&x, 3, NULL, LIT("d\ne\n"), 2);
    struct fanout_send s;
    /* Short sends count nothing, even past frame ends... */
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 5), FANOUT_SENT_SHORT);
    assert_int_equal(x.stats.deliveries, 0);
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 2), FANOUT_SENT_SHORT);
    assert_int_equal(x.stats.deliveries, 0);
    /* ...the send that reaches a boundary counts all of them, as one batch. */
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 3), FANOUT_SENT_ALL);
    assert_int_equal(x.stats.deliveries, 5);
    assert_int_equal(x.stats.batch_sends, 1);
    assert_int_equal(x.stats.batch_frames, 5);
    assert_int_equal(x.stats.batch_count_le[3], 1); /* 5 frames: the "<= 8" bucket */
    /* An empty send result counts nothing more. */
    publish(&x, 1, NULL, LIT("f\n"), 1);
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 2), FANOUT_SENT_ALL);
    assert_int_equal(x.stats.deliveries, 6);
    assert_int_equal(c.seq, x.log.frames);
    fx_destroy(&x);
}

/* ---- the charge ---------------------------------------------------------------------------- */

/* A client that leaves after short sends: the frames its socket took whole were delivered (the
 * soak found frames_delivered_total missing them for every client cut or reset mid-backlog). */
static void test_fanout_release_counts_frames_taken_whole(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    publish(&x, 1, NULL, LIT("a\nb\nc\n"), 3);
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 5), FANOUT_SENT_SHORT); /* "a\nb\nc": two whole */
    assert_int_equal(x.stats.deliveries, 0);
    assert_true(fanout_release(&x.fo, &c));
    assert_int_equal(x.stats.deliveries, 2);
    assert_true(fanout_release(&x.fo, &c)); /* again: nothing counted twice */
    assert_int_equal(x.stats.deliveries, 2);
    fx_destroy(&x);
}

static void test_fanout_charge_in_log_units(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    publish(&x, 1, NULL, LIT("aaaa\n"), 1);
    assert_int_equal(fanout_charge(&x.fo, &c), 5 + BCAST_REC_UNITS);
    publish(&x, 1, NULL, LIT("bb\n"), 1); /* merges: bytes only */
    assert_int_equal(fanout_charge(&x.fo, &c), 8 + BCAST_REC_UNITS);
    publish(&x, 3, NULL, LIT("c\n"), 1); /* a new record */
    assert_int_equal(fanout_charge(&x.fo, &c), 10 + 2 * BCAST_REC_UNITS);
    assert_int_equal(fanout_pinned(&x.fo, &c), fanout_charge(&x.fo, &c));
    /* Past the start of a record, its weight is taken. */
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 1), FANOUT_SENT_SHORT);
    assert_int_equal(fanout_charge(&x.fo, &c), 9 + BCAST_REC_UNITS);
    /* At the start of the next record, not yet. */
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 7), FANOUT_SENT_SHORT);
    assert_int_equal(c.cursor, 8);
    assert_int_equal(fanout_charge(&x.fo, &c), 2 + BCAST_REC_UNITS);
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 2), FANOUT_SENT_ALL);
    assert_int_equal(fanout_charge(&x.fo, &c), 0);
    /* Own records weigh too until they are stepped over. */
    struct fanout_client me;
    memset(&me, 0, sizeof(me));
    me.cursor = x.log.head;
    me.vcursor = x.log.vhead;
    me.seq = x.log.frames;
    publish(&x, 2, &me, LIT("mine\n"), 1);
    assert_int_equal(fanout_charge(&x.fo, &me), 5 + BCAST_REC_UNITS);
    assert_int_equal(fanout_owed(&x.fo, &me), 0);
    assert_false(plan(&x, &me, 2, &s));
    assert_int_equal(fanout_charge(&x.fo, &me), 0);
    fx_destroy(&x);
}

/* ---- slow policies ------------------------------------------------------------------------- */

static void test_fanout_judge_disconnect_cuts_past_quota(void **state)
{
    (void)state;
    struct fx x;
    const uint64_t quota = 10 + BCAST_REC_UNITS;
    fx_init(&x, 1, SLOW_DISCONNECT, false, quota, 5);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    publish(&x, 1, NULL, LIT("123456789\n"), 1);
    assert_int_equal(fanout_charge(&x.fo, &c), quota);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK); /* at the quota is fine */
    publish(&x, 1, NULL, LIT("\n"), 1);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_CUT);
    /* Cut whether or not a send is in flight; nothing is dropped. */
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_CUT);
    assert_int_equal(x.stats.frames_dropped, 0);
    assert_int_equal(c.cursor, 0);
    assert_int_equal(fanout_sent(&x.fo, &c, 11), FANOUT_SENT_ALL);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK);
    fx_destroy(&x);
}

/* Ten frames of ten bytes ("f0.......\n" ...), one record from origin 1: [0, 100). */
static void ten_frames(struct fx *x, char tag)
{
    publish_lines(x, 1, NULL, 10, 10, tag);
}

/*
 * Drop: whole frames only. The frame the client is in the middle of is finished from a copy
 * (resid) sent before anything else, then it resumes keep_on_drop bytes before the head.
 */
static void test_fanout_judge_drop_whole_frames(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DROP, false, 100, 20);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    ten_frames(&x, 'a'); /* [0, 100): 164 units */
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 15), FANOUT_SENT_SHORT); /* mid frame [10, 20) */
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK);         /* 85 units */
    ten_frames(&x, 'b');                                             /* [100, 200) */
    assert_true(fanout_charge(&x.fo, &c) > 100);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_DROPPED);
    /* The rest of frame [10, 20) aside, counted in held memory; frames [20, 180) dropped. */
    assert_non_null(c.resid);
    assert_int_equal(c.resid_len - c.resid_off, 5);
    assert_int_equal(x.held, 5);
    assert_memory_equal(c.resid, bcast_ptr(&x.log, 15), 5);
    assert_int_equal(c.cursor, 180);
    assert_int_equal(c.vcursor, bcast_units_at(&x.log, 180));
    assert_int_equal(c.frames_dropped, 16);
    assert_int_equal(x.stats.frames_dropped, 16);
    assert_int_equal(fanout_charge(&x.fo, &c), 20 + 5);
    assert_int_equal(fanout_owed(&x.fo, &c), 25);
    /* The rest first. */
    assert_true(plan(&x, &c, 2, &s));
    assert_true(s.from_resid);
    assert_int_equal(fanout_send_len(&s), 5);
    assert_memory_equal(((const uint8_t *)s.iov[0].iov_base), bcast_ptr(&x.log, 15), 5);
    assert_int_equal(fanout_sent(&x.fo, &c, 2), FANOUT_SENT_SHORT);
    assert_int_equal(x.held, 5);
    assert_true(plan(&x, &c, 2, &s));
    assert_true(s.from_resid);
    assert_int_equal(fanout_send_len(&s), 3);
    assert_int_equal(fanout_sent(&x.fo, &c, 3), FANOUT_SENT_PART); /* the log has more */
    assert_null(c.resid);
    assert_int_equal(x.held, 0);
    /* Then the newest frames, whole. */
    assert_true(plan(&x, &c, 2, &s));
    assert_false(s.from_resid);
    assert_int_equal(((uint64_t)((const uint8_t *)s.iov[0].iov_base - x.log.base)), 180);
    assert_int_equal(fanout_send_len(&s), 20);
    assert_memory_equal(((const uint8_t *)s.iov[0].iov_base), "b8bbbbbbb\nb9bbbbbbb\n", 20);
    assert_int_equal(fanout_sent(&x.fo, &c, 20), FANOUT_SENT_ALL);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK);
    assert_int_equal(fanout_charge(&x.fo, &c), 0);
    fx_destroy(&x);
}

/* A client on a frame boundary keeps nothing aside. */
static void test_fanout_judge_drop_at_boundary(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DROP, false, 100, 30);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    ten_frames(&x, 'a');
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_DROPPED);
    assert_null(c.resid);
    assert_int_equal(x.held, 0);
    assert_int_equal(c.cursor, 70);
    assert_int_equal(c.frames_dropped, 7);
    assert_int_equal(c.seq, 7);
    /* keep_on_drop not on a boundary: rounded to the next frame end. */
    ten_frames(&x, 'b');
    ten_frames(&x, 'c');
    x.fo.keep_on_drop = 25;
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_DROPPED);
    assert_int_equal(c.cursor, 280);
    assert_int_equal(c.frames_dropped, 7 + 21);
    send_expect(&x, &c, 2, "c8ccccccc\nc9ccccccc\n", 20);
    assert_int_equal(x.stats.deliveries, 2);
    fx_destroy(&x);
}

/* A send in flight keeps its bytes: the drop waits until it completes. */
static void test_fanout_judge_drop_waits_for_send_in_flight(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DROP, false, 100, 20);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    ten_frames(&x, 'a');
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK);
    assert_int_equal(c.cursor, 0);
    assert_int_equal(fanout_sent(&x.fo, &c, -EAGAIN), FANOUT_SENT_SHORT);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_DROPPED);
    assert_int_equal(c.cursor, 80);
    fx_destroy(&x);
}

/* Echo off: the client's own frames in the dropped range are not counted as dropped. */
static void test_fanout_judge_drop_skips_own_in_count(void **state)
{
    (void)state;
    struct fx x;
    /* Quota and keep in log units: 130 bytes in 4 records weigh 386 units; keeping 84 of
     * them resumes at offset 110, in the third record. */
    fx_init(&x, 1, SLOW_DROP, false, 300, 84);
    struct fanout_client me;
    fanout_join(&x.fo, &me, 0);
    publish_lines(&x, 1, NULL, 4, 10, 'a'); /* [0, 40) */
    publish_lines(&x, 2, &me, 4, 10, 'm');  /* [40, 80) its own */
    publish_lines(&x, 1, NULL, 4, 10, 'b'); /* [80, 120) */
    publish_lines(&x, 2, &me, 1, 10, 'n');  /* [120, 130) its own */
    assert_int_equal(fanout_judge(&x.fo, &me, 2), FANOUT_DROPPED);
    assert_int_equal(me.cursor, 110);
    assert_int_equal(me.frames_dropped, 7); /* 4 a + 3 b */
    assert_int_equal(fanout_owed(&x.fo, &me), 10);
    send_expect(&x, &me, 2, "b3bbbbbbb\n", 10);
    struct fanout_send s;
    assert_false(plan(&x, &me, 2, &s)); /* only its own left */
    assert_int_equal(me.cursor, 130);
    assert_int_equal(fanout_owed(&x.fo, &me), 0);
    fx_destroy(&x);
}

/*
 * The drop must leave the client within its quota, so it is not judged again at once and pins
 * no more than the log is sized for ("up to its quota when it is judged", loop_setup.c). The
 * quota is in log units but keep_on_drop is in bytes: with tiny frames from interleaved origins,
 * each a record of 2 + BCAST_REC_UNITS units, keep_on_drop bytes weigh 33 times as much.
 */
static void test_fanout_drop_leaves_charge_within_quota(void **state)
{
    (void)state;
    struct fx x;
    const uint64_t max_queue = 1000;
    /* The loop's wiring: quota max_queue + 4, keep max_queue / 2. */
    fx_init(&x, 1 << 16, SLOW_DROP, false, max_queue + 4, max_queue / 2);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    for (unsigned i = 0; i < 400; i++)
        publish(&x, 1 + i % 2, NULL, LIT("x\n"), 1); /* 800 bytes, 400 records */
    assert_true(fanout_charge(&x.fo, &c) > x.fo.quota);
    assert_int_equal(fanout_judge(&x.fo, &c, 3), FANOUT_DROPPED);
    assert_true(c.frames_dropped > 0);
    if (fanout_charge(&x.fo, &c) > x.fo.quota)
        fail_msg("after the drop the client still holds %llu log units, quota %llu "
                 "(%llu bytes, %llu frames kept)",
                 (unsigned long long)fanout_charge(&x.fo, &c), (unsigned long long)x.fo.quota,
                 (unsigned long long)(x.log.head - c.cursor),
                 (unsigned long long)(x.log.frames - c.seq));
    fx_destroy(&x);
}

/*
 * Same cause, worse effect: a client over its quota by fewer than keep_on_drop bytes is "dropped"
 * with nothing dropped, and stays over its quota however often it is judged.
 */
static void test_fanout_drop_over_quota_drops_something(void **state)
{
    (void)state;
    struct fx x;
    const uint64_t max_queue = 1000;
    fx_init(&x, 1 << 16, SLOW_DROP, false, max_queue + 4, max_queue / 2);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    for (unsigned i = 0; i < 16; i++)
        publish(&x, 1 + i % 2, NULL, LIT("x\n"), 1); /* 32 bytes, 16 * 66 = 1056 units */
    assert_true(fanout_charge(&x.fo, &c) > x.fo.quota);
    for (int round = 0; round < 3; round++) {
        enum fanout_verdict v = fanout_judge(&x.fo, &c, 3);
        assert_int_equal(v, round == 0 ? FANOUT_DROPPED : FANOUT_OK); /* within quota after */
        if (fanout_charge(&x.fo, &c) > x.fo.quota)
            fail_msg("judge %d: DROPPED with %llu frames dropped, still %llu units over a quota "
                     "of %llu",
                     round, (unsigned long long)c.frames_dropped,
                     (unsigned long long)fanout_charge(&x.fo, &c), (unsigned long long)x.fo.quota);
    }
    fx_destroy(&x);
}

/*
 * Deliveries after a drop: frames a short send delivered whole before the drop were taken by the
 * socket and must be counted, like any other ("frames whose last byte a receiver's socket took").
 */
static void test_fanout_drop_counts_frames_sent_before(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DROP, false, 100, 20);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    ten_frames(&x, 'a');
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 15), FANOUT_SENT_SHORT); /* frame 0 whole, 1 half */
    ten_frames(&x, 'b');
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_DROPPED);
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, (int)fanout_send_len(&s)),
                     FANOUT_SENT_PART); /* rest of frame 1; the log has more */
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, (int)fanout_send_len(&s)),
                     FANOUT_SENT_ALL); /* frames 18, 19 */
    /* Received whole: frames 0, 1, 18 and 19; 16 dropped. */
    assert_int_equal(c.frames_dropped, 16);
    assert_int_equal(x.stats.deliveries, 4);
    fx_destroy(&x);
}

/* A drop with the rest of a frame aside keeps fewer of the newest frames when it must: the client
 * ends within its quota even when keep_on_drop and that rest together exceed it (fuzz_fanout:
 * crash-drop-leaves-partial-frame-over-quota). */
static void test_fanout_drop_with_frame_aside_ends_within_quota(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DROP, false, 22, 20);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    ten_frames(&x, 'a');
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 15), FANOUT_SENT_SHORT); /* mid frame [10, 20) */
    ten_frames(&x, 'b');
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_DROPPED);
    assert_int_equal(c.resid_len - c.resid_off, 5);
    assert_true(fanout_charge(&x.fo, &c) <= 22);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK);
    assert_true(fanout_release(&x.fo, &c));
    assert_int_equal(x.held, 0);
    fx_destroy(&x);
}

static void test_fanout_drop_nomem(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DROP, false, 100, 20);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    ten_frames(&x, 'a');
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 15), FANOUT_SENT_SHORT);
    ten_frames(&x, 'b');
    rc_alloc_fail_after(1);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_NOMEM);
    rc_alloc_fail_after(0);
    assert_null(c.resid);
    assert_int_equal(x.held, 0);
    assert_true(fanout_release(&x.fo, &c));
    fx_destroy(&x);
}

/* ---- zero-copy pins ------------------------------------------------------------------------ */

static bool plan_zc(struct fx *x, struct fanout_client *fc, uint32_t self, uint64_t threshold,
                    struct fanout_send *s, bool *zc)
{
    return fanout_plan(&x->fo, fc, self, true, threshold, s, zc);
}

static void test_fanout_zc_plan_and_pins(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    struct fanout_send s;
    bool zc;
    /* Below the threshold: a plain send. */
    publish(&x, 1, NULL, LIT("a\n"), 1);
    assert_true(plan_zc(&x, &c, 2, 3, &s, &zc));
    assert_false(zc);
    assert_int_equal(fanout_sent(&x.fo, &c, 2), FANOUT_SENT_ALL);
    assert_int_equal(x.stats.zc_sends, 0);
    /* Up to FANOUT_ZC_MAX un-notified zero-copy sends, each pinning where it started. */
    uint64_t starts[FANOUT_ZC_MAX];
    for (unsigned i = 0; i < FANOUT_ZC_MAX; i++) {
        publish(&x, 1, NULL, LIT("bbb\n"), 1);
        assert_true(plan_zc(&x, &c, 2, 0, &s, &zc));
        assert_true(zc);
        starts[i] = ((uint64_t)((const uint8_t *)s.iov[0].iov_base - x.log.base));
        assert_int_equal(fanout_sent(&x.fo, &c, 4), FANOUT_SENT_ALL);
        fanout_zc_pending(&c, starts[i]);
        assert_true(fanout_busy(&c)); /* the kernel holds pages */
        assert_int_equal(fanout_pin(&x.fo, &c, true), starts[0]);
        assert_int_equal(fanout_pin(&x.fo, &c, false), starts[0]);
    }
    assert_int_equal(x.stats.zc_sends, FANOUT_ZC_MAX);
    assert_int_equal(c.cursor, x.log.head);
    assert_int_equal(fanout_charge(&x.fo, &c), 0);
    assert_int_equal(fanout_pinned(&x.fo, &c), x.log.vhead - bcast_units_at(&x.log, starts[0]));
    /* The next send is a plain one. */
    publish(&x, 1, NULL, LIT("c\n"), 1);
    assert_true(plan_zc(&x, &c, 2, 0, &s, &zc));
    assert_false(zc);
    assert_int_equal(fanout_sent(&x.fo, &c, 2), FANOUT_SENT_ALL);
    /* Notifications free the oldest first. */
    for (unsigned i = 1; i < FANOUT_ZC_MAX; i++) {
        fanout_zc_notified(&c);
        assert_int_equal(fanout_pin(&x.fo, &c, true), starts[i]);
    }
    fanout_zc_notified(&c);
    assert_false(fanout_busy(&c));
    assert_int_equal(fanout_pin(&x.fo, &c, true), c.cursor);
    assert_int_equal(fanout_pin(&x.fo, &c, false), x.log.head);
    fanout_zc_notified(&c); /* a stray one is ignored */
    assert_int_equal(c.zc_count, 0);
    fx_destroy(&x);
}

/* Once the kernel said it copied, `auto` (threshold > 0) stops asking; `on` (0) does not. */
static void test_fanout_zc_copied_falls_back(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    c.zc_copied = true;
    struct fanout_send s;
    bool zc;
    publish(&x, 1, NULL, LIT("aaaa\n"), 1);
    assert_true(plan_zc(&x, &c, 2, 1, &s, &zc));
    assert_false(zc);
    assert_int_equal(fanout_sent(&x.fo, &c, 5), FANOUT_SENT_ALL);
    publish(&x, 1, NULL, LIT("aaaa\n"), 1);
    assert_true(plan_zc(&x, &c, 2, 0, &s, &zc));
    assert_true(zc);
    assert_int_equal(fanout_sent(&x.fo, &c, 5), FANOUT_SENT_ALL);
    fx_destroy(&x);
}

/* A zero-copy send is at most FANOUT_ZC_WINDOW long, and frames are counted at a boundary. */
static void test_fanout_zc_window(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 4u << 20, SLOW_DISCONNECT, false, 64u << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    static char big[60000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\n';
    unsigned n = 0;
    while (x.log.head < FANOUT_ZC_WINDOW + FANOUT_ZC_WINDOW / 2) {
        publish(&x, 1, NULL, big, sizeof(big), 1);
        n++;
    }
    struct fanout_send s;
    bool zc;
    assert_true(plan_zc(&x, &c, 2, 0, &s, &zc));
    assert_true(zc);
    assert_int_equal(fanout_send_len(&s), FANOUT_ZC_WINDOW);
    assert_int_equal(fanout_sent(&x.fo, &c, (int)fanout_send_len(&s)), FANOUT_SENT_PART);
    fanout_zc_pending(&c, ((uint64_t)((const uint8_t *)s.iov[0].iov_base - x.log.base)));
    assert_int_equal(x.stats.deliveries, 0); /* not on a boundary: counted later */
    /* The oldest pin is FANOUT_ZC_WINDOW behind: no more zero-copy until it is notified. */
    assert_true(plan_zc(&x, &c, 2, 0, &s, &zc));
    assert_false(zc);
    assert_int_equal(fanout_sent(&x.fo, &c, (int)fanout_send_len(&s)), FANOUT_SENT_ALL);
    assert_int_equal(x.stats.deliveries, n);
    fx_destroy(&x);
}

/*
 * Bug 3: zero-copy pages cannot be dropped. A client that needs a drop while the kernel holds
 * zero-copy pages of its is cut instead (the reset of its socket frees them); one that keeps
 * reading is never cut for pages the kernel holds a while (the log reserves room for them).
 */
static void zc_pin_scenario(enum slow_policy policy, bool reader_keeps_up)
{
    struct fx x;
    const uint64_t quota = 4096;
    fx_init(&x, 8u << 20, policy, false, quota, quota / 2);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    struct fanout_send s;
    bool zc;
    publish(&x, 1, NULL, LIT("first\n"), 1);
    assert_true(plan_zc(&x, &c, 2, 0, &s, &zc));
    assert_true(zc);
    assert_int_equal(fanout_sent(&x.fo, &c, (int)fanout_send_len(&s)), FANOUT_SENT_ALL);
    fanout_zc_pending(
        &c, ((uint64_t)((const uint8_t *)s.iov[0].iov_base - x.log.base))); /* not notified yet */
    static char big[32768];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\n';
    for (unsigned i = 0; i < 4; i++) {
        publish(&x, 1 + i % 2, NULL, big, sizeof(big), 1);
        if (reader_keeps_up) { /* plain sends: its socket takes them */
            assert_true(plan(&x, &c, 2, &s));
            assert_int_equal(fanout_sent(&x.fo, &c, (int)fanout_send_len(&s)), FANOUT_SENT_ALL);
        }
    }
    assert_true(fanout_pinned(&x.fo, &c) > quota);
    assert_int_equal(fanout_pin(&x.fo, &c, true), 0); /* the log keeps the pages */
    if (reader_keeps_up) {
        assert_true(fanout_charge(&x.fo, &c) <= quota);
        assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK);
    } else {
        assert_true(fanout_charge(&x.fo, &c) > quota);
        assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_CUT); /* a drop could not free them */
        /* Once the kernel let go, the drop policy can drop again. */
        fanout_zc_notified(&c);
        assert_int_equal(fanout_judge(&x.fo, &c, 2),
                         policy == SLOW_DROP ? FANOUT_DROPPED : FANOUT_CUT);
    }
    fanout_release(&x.fo, &c);
    assert_int_equal(x.held, 0);
    fx_destroy(&x);
}

static void test_fanout_bug3_zc_pin_cut_under_drop(void **state)
{
    (void)state;
    zc_pin_scenario(SLOW_DROP, false);
}

static void test_fanout_bug3_zc_pin_cut_reader_keeps_up(void **state)
{
    (void)state;
    zc_pin_scenario(SLOW_DROP, true);
    zc_pin_scenario(SLOW_DISCONNECT, true);
}

static void test_fanout_bug3_zc_pin_cut_under_disconnect(void **state)
{
    (void)state;
    zc_pin_scenario(SLOW_DISCONNECT, false);
}

/* ---- pins of open and closing clients ------------------------------------------------------ */

static void test_fanout_pin_open_and_closing(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DROP, false, 100, 20);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    ten_frames(&x, 'a');
    /* Open: its cursor. Closing with nothing in flight: nothing. */
    assert_int_equal(fanout_pin(&x.fo, &c, true), 0);
    assert_int_equal(fanout_pin(&x.fo, &c, false), x.log.head);
    /* Closing with a log send in flight: where the send starts. */
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 15), FANOUT_SENT_SHORT);
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_pin(&x.fo, &c, false), 15);
    assert_int_equal(fanout_pin(&x.fo, &c, true), 15);
    assert_int_equal(fanout_sent(&x.fo, &c, -EAGAIN), FANOUT_SENT_SHORT);
    /* A send from the resid pins nothing of the log. */
    ten_frames(&x, 'b');
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_DROPPED);
    assert_true(plan(&x, &c, 2, &s));
    assert_true(s.from_resid);
    assert_int_equal(fanout_pin(&x.fo, &c, false), x.log.head);
    assert_int_equal(fanout_pin(&x.fo, &c, true), 180);
    assert_int_equal(fanout_sent(&x.fo, &c, (int)fanout_send_len(&s)), FANOUT_SENT_PART);
    assert_true(fanout_release(&x.fo, &c));
    fx_destroy(&x);
}

/*
 * Bug 4: under the drop policy a send planned from the resid is in flight when the connection
 * is closed. Releasing must wait: the kernel still reads ((const uint8_t *)s.iov[0].iov_base).
 * After fanout_sent it frees.
 */
static void bug4_scenario(int res)
{
    struct fx x;
    fx_init(&x, 1, SLOW_DROP, false, 100, 20);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    ten_frames(&x, 'a');
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 15), FANOUT_SENT_SHORT);
    ten_frames(&x, 'b');
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_DROPPED);
    assert_true(plan(&x, &c, 2, &s));
    assert_true(s.from_resid);
    assert_int_equal(fanout_send_len(&s), 5);
    char want[5];
    memcpy(want, bcast_ptr(&x.log, 15), sizeof(want));
    assert_memory_equal(((const uint8_t *)s.iov[0].iov_base), want, 5);
    /* The connection closes while the send is in flight. */
    assert_false(fanout_release(&x.fo, &c));
    assert_true(fanout_busy(&c));
    assert_non_null(c.resid);
    assert_int_equal(x.held, 5);
    assert_memory_equal(((const uint8_t *)s.iov[0].iov_base), want,
                        5);                  /* still the kernel's to read: ASan sees a free here */
    assert_false(fanout_release(&x.fo, &c)); /* asked again: still not */
    assert_memory_equal(((const uint8_t *)s.iov[0].iov_base), want, 5);
    fanout_sent(&x.fo, &c, res);
    assert_true(fanout_release(&x.fo, &c));
    assert_null(c.resid);
    assert_int_equal(x.held, 0);
    assert_int_equal(c.resid_len, 0);
    assert_int_equal(c.resid_off, 0);
    assert_true(fanout_release(&x.fo, &c)); /* twice is fine */
    fx_destroy(&x);
}

static void test_fanout_bug4_release_waits_for_resid_send(void **state)
{
    (void)state;
    bug4_scenario(2);
}

static void test_fanout_bug4_release_after_resid_send_failed(void **state)
{
    (void)state;
    bug4_scenario(-ECONNRESET);
    bug4_scenario(-ECANCELED);
}

static void test_fanout_bug4_release_after_resid_send_complete(void **state)
{
    (void)state;
    bug4_scenario(5);
}

/* ---- muted (pub-only) clients --------------------------------------------------------------- */

/*
 * A muted client (a pub-only one) is never planned a send nor judged, owes and pins nothing
 * however far the log runs past where it joined (so the log can be released up to the head
 * whatever its cursor), publishes like any other, and counts no delivery when it leaves.
 */
static void test_fanout_muted_receives_and_pins_nothing(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 100, 20);
    struct fanout_client m, r;
    fanout_join(&x.fo, &m, 3);
    fanout_mute(&m);
    fanout_join(&x.fo, &r, 4);
    assert_false(fanout_receives(&m));
    assert_true(fanout_receives(&r));
    /* Others' frames and its own, far past the quota. */
    for (int i = 0; i < 5; i++) {
        ten_frames(&x, (char)('a' + i));
        publish(&x, 3, &m, LIT("mine\n"), 1);
    }
    struct fanout_send s;
    assert_false(plan(&x, &m, 3, &s));
    assert_int_equal(x.stats.sends, 0);
    assert_int_equal(fanout_judge(&x.fo, &m, 3), FANOUT_OK);
    assert_int_equal(fanout_charge(&x.fo, &m), 0);
    assert_int_equal(fanout_pinned(&x.fo, &m), 0);
    assert_int_equal(fanout_owed(&x.fo, &m), 0);
    assert_int_equal(fanout_pin(&x.fo, &m, true), x.log.head);
    assert_int_equal(fanout_pin(&x.fo, &m, false), x.log.head);
    /* The receiver beside it is judged as ever. */
    assert_int_equal(fanout_judge(&x.fo, &r, 4), FANOUT_CUT);
    /* Nothing of the log is kept for it: all of it can go, and it leaves cleanly. */
    bcast_release(&x.log, x.log.head);
    assert_true(fanout_release(&x.fo, &m));
    assert_int_equal(x.stats.deliveries, 0);
    assert_int_equal(x.stats.frames_dropped, 0);
    fx_destroy(&x);
}

/* Frame too long from a muted client (line mode): nothing is owed to it, so it is done at once. */
static void test_fanout_muted_finishes_at_once(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client m;
    fanout_join(&x.fo, &m, 3);
    fanout_mute(&m);
    publish(&x, 1, NULL, LIT("abcdef\n"), 1);
    fanout_finish(&x.fo, &m);
    struct fanout_send s;
    assert_false(plan(&x, &m, 3, &s));
    assert_int_equal(fanout_judge(&x.fo, &m, 3), FANOUT_FINISHED);
    fx_destroy(&x);
}

/* ---- finishing ----------------------------------------------------------------------------- */

/* Frame too long (line mode): the client gets the rest of the frame it is in, then is done. */
static void test_fanout_finish_after_frame_in_progress(void **state)
{
    (void)state;
    struct fx x;
    fx_init(&x, 1, SLOW_DISCONNECT, false, 1 << 20, 500);
    struct fanout_client c;
    fanout_join(&x.fo, &c, 0);
    publish(&x, 1, NULL, LIT("abcdef\nghij\n"), 2);
    struct fanout_send s;
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_sent(&x.fo, &c, 3), FANOUT_SENT_SHORT);
    fanout_finish(&x.fo, &c);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK);
    assert_true(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_send_len(&s), 4);
    assert_memory_equal(((const uint8_t *)s.iov[0].iov_base), "def\n", 4);
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_OK);       /* in flight */
    assert_int_equal(fanout_sent(&x.fo, &c, 4), FANOUT_SENT_PART); /* it stops before "ghij" */
    assert_false(plan(&x, &c, 2, &s));
    assert_int_equal(fanout_judge(&x.fo, &c, 2), FANOUT_FINISHED);
    /* On a boundary already: finished at once. */
    struct fanout_client d;
    fanout_join(&x.fo, &d, 0);
    publish(&x, 1, NULL, LIT("more\n"), 1);
    fanout_finish(&x.fo, &d);
    assert_false(plan(&x, &d, 3, &s));
    assert_int_equal(fanout_judge(&x.fo, &d, 3), FANOUT_FINISHED);
    fx_destroy(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_join_at_head),
        cmocka_unit_test(test_fanout_plan_covers_cursor_to_head),
        cmocka_unit_test(test_fanout_plan_skips_own_records),
        cmocka_unit_test(test_fanout_plan_echo_includes_own),
        cmocka_unit_test(test_fanout_sent_full_short_eagain_error),
        cmocka_unit_test(test_fanout_deliveries_counted_from_seq),
        cmocka_unit_test(test_fanout_release_counts_frames_taken_whole),
        cmocka_unit_test(test_fanout_charge_in_log_units),
        cmocka_unit_test(test_fanout_judge_disconnect_cuts_past_quota),
        cmocka_unit_test(test_fanout_judge_drop_whole_frames),
        cmocka_unit_test(test_fanout_judge_drop_at_boundary),
        cmocka_unit_test(test_fanout_judge_drop_waits_for_send_in_flight),
        cmocka_unit_test(test_fanout_judge_drop_skips_own_in_count),
        cmocka_unit_test(test_fanout_drop_leaves_charge_within_quota),
        cmocka_unit_test(test_fanout_drop_over_quota_drops_something),
        cmocka_unit_test(test_fanout_drop_counts_frames_sent_before),
        cmocka_unit_test(test_fanout_drop_with_frame_aside_ends_within_quota),
        cmocka_unit_test(test_fanout_drop_nomem),
        cmocka_unit_test(test_fanout_zc_plan_and_pins),
        cmocka_unit_test(test_fanout_zc_copied_falls_back),
        cmocka_unit_test(test_fanout_zc_window),
        cmocka_unit_test(test_fanout_bug3_zc_pin_cut_under_drop),
        cmocka_unit_test(test_fanout_bug3_zc_pin_cut_reader_keeps_up),
        cmocka_unit_test(test_fanout_bug3_zc_pin_cut_under_disconnect),
        cmocka_unit_test(test_fanout_pin_open_and_closing),
        cmocka_unit_test(test_fanout_bug4_release_waits_for_resid_send),
        cmocka_unit_test(test_fanout_bug4_release_after_resid_send_failed),
        cmocka_unit_test(test_fanout_bug4_release_after_resid_send_complete),
        cmocka_unit_test(test_fanout_muted_receives_and_pins_nothing),
        cmocka_unit_test(test_fanout_muted_finishes_at_once),
        cmocka_unit_test(test_fanout_finish_after_frame_in_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
