/* Slow consumers: a stuck reader under both --slow-policy values; the fast reader loses nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

/* Big enough that the stuck reader's socket buffers (a few MiB on loopback) overflow many times. */
#define STREAM_MAX (48u * 1024 * 1024)
#define STUCK_RCVBUF 4096
/*
 * The publisher keeps at most WINDOW bytes beyond what the fast reader has received, so the fast
 * reader's backlog in the server can never come near --max-queue (QUEUE), however the server
 * batches its work: only the stuck reader can pass it.
 */
#define WINDOW (256 * 1024)
#define QUEUE "1M"

static size_t frame_len(uint32_t seq)
{
    return 200 + (seq * 37) % 1800;
}

struct stream {
    char *sent; /* everything the publisher sent, in order */
    size_t len; /* bytes generated */
    size_t off; /* bytes the publisher's socket took */
    uint32_t seq;
    char *got; /* what the fast reader received */
    size_t got_len;
};

static void stream_init(struct stream *st)
{
    memset(st, 0, sizeof(*st));
    st->sent = malloc(STREAM_MAX);
    st->got = malloc(STREAM_MAX);
    assert_non_null(st->sent);
    assert_non_null(st->got);
}

static void stream_free(struct stream *st)
{
    free(st->sent);
    free(st->got);
}

/*
 * Publishes numbered frames from pub while fast reads them, until stop() says so (checked about
 * every 64 KiB) or limit bytes were sent; then lets fast catch up with everything sent. Fails the
 * test if fast does not get every byte in order.
 */
static void pump(struct rc_server *s, int pub, int fast, struct stream *st, size_t limit,
                 bool (*stop)(struct rc_server *, void *), void *arg)
{
    bool stopping = false;
    size_t checked = 0;
    int64_t deadline = rc_now_ms() + 60000;
    while (rc_now_ms() < deadline) {
        if (!stopping && st->len - st->off < 256 * 1024) {
            while (st->len - st->off < 512 * 1024 && st->len + 2048 <= limit) {
                st->len += rc_make_line(st->sent + st->len, frame_len(st->seq), "f", st->seq);
                st->seq++;
            }
        }
        if (!stopping && (st->off >= checked + 65536 || st->len + 2048 > limit)) {
            checked = st->off;
            if (stop(s, arg) || st->len + 2048 > limit)
                stopping = true;
        }
        if (stopping && st->off == st->len && st->got_len == st->len)
            break;
        struct pollfd p[2] = {
            {.fd = pub,
             .events = st->off < st->len && st->off - st->got_len < WINDOW ? POLLOUT : 0},
            {.fd = fast, .events = POLLIN},
        };
        poll(p, 2, 50);
        if (p[0].revents & POLLOUT) {
            size_t room = WINDOW - (st->off - st->got_len);
            size_t len = st->len - st->off < room ? st->len - st->off : room;
            st->off += rc_send_some(pub, st->sent + st->off, len);
        }
        if (p[1].revents) {
            ssize_t n = rc_recv_now(fast, st->got + st->got_len, STREAM_MAX - st->got_len);
            if (n < 0)
                fail_msg("the fast reader was disconnected after %zu bytes", st->got_len);
            st->got_len += (size_t)n;
        }
    }
    if (st->got_len != st->len || st->off != st->len)
        fail_msg("publisher sent %zu of %zu bytes, fast reader got %zu", st->off, st->len,
                 st->got_len);
    if (memcmp(st->got, st->sent, st->len) != 0)
        fail_msg("the fast reader's bytes differ from what was published");
}

struct watch {
    size_t mark;
    char needle[96];
};

static bool seen_line(struct rc_server *s, void *arg)
{
    struct watch *w = arg;
    return rc_log_count(s, w->mark, w->needle) > 0;
}

static bool never(struct rc_server *s, void *arg)
{
    return false;
}

/*
 * A publisher streams to a fast reader and to a reader that never reads, until the server logs
 * the stuck one's slow-consumer disconnect (bounded by STREAM_MAX bytes).
 */
static void pump_until_stuck_cut(struct rc_server *s, int *pub_out, int *fast_out, int *stuck,
                                 struct stream *st)
{
    int pub = *pub_out = rc_connect(s), fast = *fast_out = rc_connect(s);
    *stuck = rc_connect_buf(s, STUCK_RCVBUF);
    struct watch w = {.mark = rc_log_mark(s)};
    rc_needle(w.needle, sizeof(w.needle), rc_port_of(*stuck), "disconnected (slow consumer).");
    stream_init(st);
    pump(s, pub, fast, st, STREAM_MAX, seen_line, &w);
    if (!seen_line(s, &w)) {
        rc_dump(s);
        fail_msg("the stuck reader was not disconnected after %zu bytes", st->len);
    }
}

/*
 * --slow-policy disconnect: a reader that never reads is disconnected once its backlog passes
 * --max-queue; the fast reader gets every frame; the stuck reader's bytes are a prefix of the
 * stream (never reordered or skipped).
 */
static void test_slow_disconnect(void **state)
{
    struct rc_server *s =
        rc_start("--max-queue", QUEUE, "--max-frame", "4K", "--slow-policy", "disconnect", NULL);
    int pub, fast, stuck;
    struct stream st;
    pump_until_stuck_cut(s, &pub, &fast, &stuck, &st);

    /* What the stuck reader got before the close is a byte prefix of the stream. */
    size_t n = rc_recv_until_eof(stuck, st.got, STREAM_MAX, RC_IO_MS);
    assert_true(n != (size_t)-1);
    assert_true(n <= st.len);
    if (memcmp(st.got, st.sent, n) != 0)
        fail_msg("the stuck reader's %zu bytes are not a prefix of the stream", n);

    /* Everyone else carries on. */
    rc_send_str(pub, "after\n");
    rc_expect_str(fast, "after\n");
    stream_free(&st);
}

/*
 * --slow-policy drop: the stuck reader is not disconnected; when it finally reads, it gets whole
 * frames only, in order (a subsequence of the stream), ending with the newest; some were dropped.
 * The fast reader loses nothing.
 */
static void test_slow_drop(void **state)
{
    struct rc_server *s =
        rc_start("--max-queue", QUEUE, "--max-frame", "4K", "--slow-policy", "drop", NULL);
    int pub = rc_connect(s), fast = rc_connect(s);
    int stuck = rc_connect_buf(s, STUCK_RCVBUF);
    size_t mark = rc_log_mark(s);

    struct stream st;
    stream_init(&st);
    pump(s, pub, fast, &st, 32u * 1024 * 1024, never, NULL);
    uint32_t last = st.seq - 1;

    /* Now the stuck reader reads until it has the newest frame (bounded in bytes and time). */
    char *in = malloc(STREAM_MAX);
    size_t in_len = 0, pos = 0;
    uint32_t frames = 0;
    int64_t next = -1; /* lowest sequence number still allowed */
    bool have_last = false;
    char want[4096];
    int64_t deadline = rc_now_ms() + RC_IO_MS;
    while (!have_last && rc_now_ms() < deadline && in_len < STREAM_MAX) {
        struct pollfd p = {.fd = stuck, .events = POLLIN};
        poll(&p, 1, 100);
        ssize_t n = rc_recv_now(stuck, in + in_len, STREAM_MAX - in_len);
        if (n < 0) {
            rc_dump(s);
            fail_msg("the stuck reader was disconnected under --slow-policy drop");
        }
        in_len += (size_t)n;
        /* Check every complete frame: "f<seq> <filler>\n", exactly as generated. */
        for (;;) {
            char *nl = memchr(in + pos, '\n', in_len - pos);
            if (!nl)
                break;
            size_t flen = (size_t)(nl - (in + pos)) + 1;
            unsigned seq;
            if (sscanf(in + pos, "f%8u ", &seq) != 1)
                fail_msg("stuck reader: not a frame start at byte %zu: %.16s", pos, in + pos);
            if (seq > last || (int64_t)seq < next)
                fail_msg("stuck reader: frame %u after %lld (out of order or unknown)", seq,
                         (long long)next - 1);
            rc_make_line(want, frame_len(seq), "f", seq);
            if (flen != frame_len(seq) || memcmp(want, in + pos, flen) != 0)
                fail_msg("stuck reader: frame %u is not whole or not intact (%zu bytes)", seq,
                         flen);
            next = (int64_t)seq + 1;
            frames++;
            have_last = seq == last;
            pos += flen;
        }
    }
    if (!have_last) {
        rc_dump(s);
        rc_dump_sockets(s);
        fail_msg("the stuck reader got %u frames (%zu bytes) but not the newest, %u", frames,
                 in_len, last);
    }
    assert_int_equal(pos, in_len); /* nothing after the newest frame */
    if (frames >= st.seq)
        fail_msg("no frame was dropped (%u of %u delivered): the test proves nothing", frames,
                 st.seq);

    /* Not disconnected, and it keeps receiving. */
    char needle[64];
    rc_needle(needle, sizeof(needle), rc_port_of(stuck), "disconnected");
    assert_int_equal(rc_log_count(s, mark, needle), 0);
    rc_send_str(pub, "after\n");
    rc_expect_str(fast, "after\n");
    rc_expect_str(stuck, "after\n");
    free(in);
    stream_free(&st);
}

/* The default policy is disconnect, and a stuck reader under the default 32 MiB queue goes too. */
static void test_slow_default_policy(void **state)
{
    struct rc_server *s = rc_start("--max-frame", "4K", NULL);
    int pub, fast, stuck;
    struct stream st;
    pump_until_stuck_cut(s, &pub, &fast, &stuck, &st);
    stream_free(&st);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_slow_disconnect, rc_teardown),
        cmocka_unit_test_teardown(test_slow_drop, rc_teardown),
        cmocka_unit_test_teardown(test_slow_default_policy, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
