/*
 * Framing: frame_scan, frame_wire_len and the partial-frame assembler, for line and len32.
 * Every parser input is placed right before a PROT_NONE page, so reading past it faults.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ringcast/alloc.h"
#include "ringcast/frame.h"

#define ARENA_BYTES (256u << 10)
#include "guard_page.h"

/* ---- helpers ------------------------------------------------------------------------------- */

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

static void scan(enum framing f, const void *p, size_t len, uint64_t max_frame,
                 struct frame_scan *out)
{
    memset(out, 0xa5, sizeof(*out));
    frame_scan(f, guarded(p, len), len, max_frame, out);
}

static void expect_scan(enum framing f, const void *p, size_t len, uint64_t max_frame,
                        size_t complete, size_t nframes, bool too_long)
{
    struct frame_scan s;
    scan(f, p, len, max_frame, &s);
    if (s.complete != complete || s.nframes != nframes || s.too_long != too_long)
        fail_msg("frame_scan(%s, len %zu, max %llu) = {%zu, %zu, %d}, want {%zu, %zu, %d}",
                 opts_framing_name(f), len, (unsigned long long)max_frame, s.complete, s.nframes,
                 (int)s.too_long, complete, nframes, (int)too_long);
}

static enum frame_feed feed(struct frame_partial *fp, enum framing f, uint64_t max_frame,
                            const void *p, size_t len, size_t *used, int64_t *grown)
{
    *used = 0xdead;
    *grown = 0xdead;
    return frame_partial_feed(fp, f, max_frame, guarded(p, len), len, used, grown);
}

/* Append a len32 frame of @n payload bytes (filled from @payload, or a pattern) to @out. */
static size_t put_len32(uint8_t *out, uint32_t n, const void *payload)
{
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++)
        out[4 + i] = payload ? ((const uint8_t *)payload)[i] : (uint8_t)(i * 7 + 3);
    return 4 + (size_t)n;
}

/*
 * A receiver that works like the server's: whole frames straight from each buffer with
 * frame_scan, the rest through the partial assembler. Output is the concatenation of the frames
 * it emitted, and their lengths; memory accounting is checked on every feed.
 */
struct rx {
    enum framing f;
    uint64_t max_frame;
    struct frame_partial fp;
    bool in_partial;
    int64_t accounted; /* sum of grown */
    uint8_t out[4096];
    size_t out_len;
    size_t lens[256];
    size_t nframes;
    bool too_long;
};

static void rx_emit(struct rx *r, const uint8_t *p, size_t len)
{
    assert_true(r->out_len + len <= sizeof(r->out));
    assert_true(r->nframes < sizeof(r->lens) / sizeof(r->lens[0]));
    memcpy(r->out + r->out_len, p, len);
    r->out_len += len;
    r->lens[r->nframes++] = len;
}

static void rx_push(struct rx *r, const uint8_t *data, size_t len)
{
    const uint8_t *p = guarded(data, len);
    size_t pos = 0;
    while (pos < len && !r->too_long) {
        if (r->in_partial) {
            size_t used;
            int64_t grown;
            enum frame_feed fr =
                frame_partial_feed(&r->fp, r->f, r->max_frame, p + pos, len - pos, &used, &grown);
            r->accounted += grown;
            assert_int_equal(r->accounted, r->fp.cap);
            assert_true(used <= len - pos);
            if (fr == FRAME_TOO_LONG) {
                r->too_long = true;
                break;
            }
            assert_int_not_equal(fr, FRAME_NOMEM);
            pos += used;
            if (fr == FRAME_NEED_MORE) {
                assert_int_equal(pos, len);
                break;
            }
            assert_int_equal(fr, FRAME_COMPLETE);
            assert_int_equal(frame_wire_len(r->f, r->fp.buf, r->fp.len), r->fp.len);
            rx_emit(r, r->fp.buf, r->fp.len);
            r->accounted -= frame_partial_reset(&r->fp);
            assert_int_equal(r->accounted, 0);
            assert_null(r->fp.buf);
            r->in_partial = false;
            continue;
        }
        struct frame_scan s;
        frame_scan(r->f, p + pos, len - pos, r->max_frame, &s);
        assert_true(s.complete <= len - pos);
        size_t off = 0;
        for (size_t i = 0; i < s.nframes; i++) {
            size_t fl = frame_wire_len(r->f, p + pos + off, s.complete - off);
            assert_true(fl > 0 && off + fl <= s.complete);
            rx_emit(r, p + pos + off, fl);
            off += fl;
        }
        assert_int_equal(off, s.complete);
        pos += s.complete;
        if (s.too_long) {
            r->too_long = true;
            break;
        }
        if (pos < len)
            r->in_partial = true;
    }
}

static void rx_finish(struct rx *r)
{
    r->accounted -= frame_partial_reset(&r->fp);
    assert_int_equal(r->accounted, 0);
}

/* Lengths of the frames in a stream that is known to be well formed. */
static size_t split_frames(enum framing f, const uint8_t *p, size_t len, size_t *lens)
{
    size_t n = 0, off = 0;
    while (off < len) {
        size_t fl = frame_wire_len(f, p + off, len - off);
        assert_true(fl > 0);
        lens[n++] = fl;
        off += fl;
    }
    assert_int_equal(off, len);
    return n;
}

/* Deliver @stream cut at @cuts (ascending, each in [0, len]) and check it comes out whole. */
static void check_delivery(enum framing f, const uint8_t *stream, size_t len, const size_t *cuts,
                           size_t ncuts)
{
    static struct rx r;
    memset(&r, 0, sizeof(r));
    r.f = f;
    r.max_frame = 1024;
    size_t prev = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        rx_push(&r, stream + prev, next - prev);
        prev = next;
    }
    assert_false(r.too_long);
    assert_false(r.in_partial);
    assert_int_equal(r.fp.len, 0);
    size_t want[256];
    size_t nwant = split_frames(f, stream, len, want);
    if (r.out_len != len || memcmp(r.out, stream, len) != 0 || r.nframes != nwant ||
        memcmp(r.lens, want, nwant * sizeof(want[0])) != 0)
        fail_msg("%s stream of %zu bytes cut at %zu/%zu: got %zu bytes in %zu frames",
                 opts_framing_name(f), len, ncuts > 0 ? cuts[0] : 0, ncuts > 1 ? cuts[1] : 0,
                 r.out_len, r.nframes);
    rx_finish(&r);
}

/* Every way to cut @stream into two and into three buffers (empty ones included). */
static void check_all_splits(enum framing f, const uint8_t *stream, size_t len)
{
    check_delivery(f, stream, len, NULL, 0);
    for (size_t i = 0; i <= len; i++) {
        check_delivery(f, stream, len, &i, 1);
        for (size_t j = i; j <= len; j++) {
            size_t cuts[2] = {i, j};
            check_delivery(f, stream, len, cuts, 2);
        }
    }
}

/* ---- frame_scan: line ---------------------------------------------------------------------- */

static void test_frame_line_scan_basic(void **state)
{
    (void)state;
    expect_scan(FRAMING_LINE, LIT(""), 100, 0, 0, false);
    expect_scan(FRAMING_LINE, LIT("hello\n"), 100, 6, 1, false);
    expect_scan(FRAMING_LINE, LIT("hello"), 100, 0, 0, false);
    expect_scan(FRAMING_LINE, LIT("a\nbb\nccc\n"), 100, 9, 3, false);
    expect_scan(FRAMING_LINE, LIT("a\nbb\ncc"), 100, 5, 2, false);
    /* The empty line is a frame of its own. */
    expect_scan(FRAMING_LINE, LIT("\n"), 100, 1, 1, false);
    expect_scan(FRAMING_LINE, LIT("\n\n\n"), 100, 3, 3, false);
    /* \r, NUL and 0xff are ordinary bytes. */
    expect_scan(FRAMING_LINE, LIT("a\r\n\0\n\xff\xfe\n\r"), 100, 8, 3, false);
}

static void test_frame_line_scan_max_frame(void **state)
{
    (void)state;
    /* max_frame 8 counts the '\n': 7 bytes + '\n' pass, 8 bytes + '\n' are too long. */
    expect_scan(FRAMING_LINE, LIT("1234567\n"), 8, 8, 1, false);
    expect_scan(FRAMING_LINE, LIT("12345678\n"), 8, 0, 0, true);
    expect_scan(FRAMING_LINE, LIT("ab\n12345678\nxy\n"), 8, 3, 1, true);
    expect_scan(FRAMING_LINE, LIT("1234567\n1234567\n"), 8, 16, 2, false);
    /* Too long already before its '\n' arrives. */
    expect_scan(FRAMING_LINE, LIT("123456789"), 8, 0, 0, true);
    expect_scan(FRAMING_LINE, LIT("ab\n123456789"), 8, 3, 1, true);
    /* An incomplete line that may still end in time is not too long. */
    expect_scan(FRAMING_LINE, LIT("1234567"), 8, 0, 0, false);
    /* max_frame 1: only empty lines. */
    expect_scan(FRAMING_LINE, LIT("\n\n"), 1, 2, 2, false);
    expect_scan(FRAMING_LINE, LIT("\na\n"), 1, 1, 1, true);
}

/* A long buffer of whole lines and a tail, all the way to the guard page. */
static void test_frame_line_scan_long(void **state)
{
    (void)state;
    static uint8_t buf[ARENA_BYTES];
    size_t len = sizeof(buf), nl = 0, last_nl = 0;
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i % 251);
        if (i % 1000 == 999) {
            buf[i] = '\n';
            nl++;
            last_nl = i + 1;
        } else if (buf[i] == '\n') {
            buf[i] = '\r';
        }
    }
    expect_scan(FRAMING_LINE, buf, len, 1000, last_nl, nl, false);
    expect_scan(FRAMING_LINE, buf, len, 999, 0, 0, true);
}

/*
 * When the buffer cannot hold a frame longer than max_frame, lines are found by counting, not one
 * memchr per frame: the same answer as the frame-by-frame scan for every length and newline
 * density, including more newlines than a 16-lane counter holds (255 per lane) before a flush.
 */
static void test_frame_line_scan_counting_matches_reference(void **state)
{
    (void)state;
    static uint8_t buf[ARENA_BYTES];
    uint32_t rng = 12345;
    for (int density = 1; density <= 64; density *= 4) {
        for (size_t len = 0; len < 700; len += 1 + len / 50) {
            size_t nl = 0, last = 0;
            for (size_t i = 0; i < len; i++) {
                rng = rng * 1103515245u + 12345u;
                bool is_nl = (rng >> 16) % 64 < (uint32_t)density;
                buf[i] = is_nl ? '\n' : (uint8_t)('a' + (rng >> 20) % 26);
                if (is_nl) {
                    nl++;
                    last = i + 1;
                }
            }
            expect_scan(FRAMING_LINE, buf, len, len, last, nl, false);
            expect_scan(FRAMING_LINE, buf, len, 1u << 20, last, nl, false);
        }
    }
    /* Only newlines: 64 Ki empty lines, every lane counting past 255. */
    memset(buf, '\n', 65536);
    expect_scan(FRAMING_LINE, buf, 65536, 1u << 20, 65536, 65536, false);
    buf[65535] = 'x';
    expect_scan(FRAMING_LINE, buf, 65536, 65536, 65535, 65535, false);
}

/* ---- frame_scan: len32 --------------------------------------------------------------------- */

static void test_frame_len32_scan_basic(void **state)
{
    (void)state;
    uint8_t b[64] = {0};
    size_t n = 0;
    expect_scan(FRAMING_LEN32, b, 0, 100, 0, 0, false);
    /* An incomplete header is no frame yet, and not an error. */
    for (size_t i = 1; i < 4; i++)
        expect_scan(FRAMING_LEN32, "\0\0\0\5", i, 100, 0, 0, false);

    n = put_len32(b, 5, "a\nb\r\0");
    expect_scan(FRAMING_LEN32, b, n, 100, 9, 1, false);
    expect_scan(FRAMING_LEN32, b, n - 1, 100, 0, 0, false);
    /* N = 0 is a frame of just its header; several coalesce. */
    n += put_len32(b + n, 0, NULL);
    n += put_len32(b + n, 0, NULL);
    n += put_len32(b + n, 3, "\xff\xff\xff");
    expect_scan(FRAMING_LEN32, b, n, 100, n, 4, false);
    expect_scan(FRAMING_LEN32, b, n - 1, 100, n - 7, 3, false);
    expect_scan(FRAMING_LEN32, b, 4, 0, 0, 0, true);      /* N=5 > max 0 */
    expect_scan(FRAMING_LEN32, b + 9, 4, 0, 4, 1, false); /* N=0 <= max 0 */
}

static void test_frame_len32_scan_max_frame(void **state)
{
    (void)state;
    uint8_t b[64];
    /* N == max_frame passes. */
    size_t n = put_len32(b, 16, NULL);
    expect_scan(FRAMING_LEN32, b, n, 16, 20, 1, false);
    /* N == max_frame + 1 is too long from the header alone. */
    n = put_len32(b, 17, NULL);
    expect_scan(FRAMING_LEN32, b, 4, 16, 0, 0, true);
    expect_scan(FRAMING_LEN32, b, n, 16, 0, 0, true);
    /* ... after a good frame. */
    n = put_len32(b, 2, "ok");
    put_len32(b + n, 17, NULL);
    expect_scan(FRAMING_LEN32, b, n + 4, 16, n, 1, true);
    /* Huge headers. */
    expect_scan(FRAMING_LEN32, "\xff\xff\xff\xff", 4, 1u << 20, 0, 0, true);
    expect_scan(FRAMING_LEN32, "\x80\0\0\0", 4, 1u << 30, 0, 0, true);
    expect_scan(FRAMING_LEN32, "\0\x10\0\x01", 4, 1u << 20, 0, 0, true);
    /* A huge but allowed length is just incomplete. */
    expect_scan(FRAMING_LEN32, "\xff\xff\xff\xff", 4, UINT64_MAX, 0, 0, false);
    expect_scan(FRAMING_LEN32, "\0\x10\0\0", 4, 1u << 20, 0, 0, false);
}

static void test_frame_wire_len(void **state)
{
    (void)state;
    assert_int_equal(frame_wire_len(FRAMING_LINE, guarded(LIT("abc\ndef\n")), 8), 4);
    assert_int_equal(frame_wire_len(FRAMING_LINE, guarded(LIT("\n")), 1), 1);
    assert_int_equal(frame_wire_len(FRAMING_LINE, guarded(LIT("abc")), 3), 0);
    assert_int_equal(frame_wire_len(FRAMING_LINE, guarded(LIT("")), 0), 0);
    assert_int_equal(frame_wire_len(FRAMING_LEN32, guarded("\0\0\0", 3), 3), 0);
    assert_int_equal(frame_wire_len(FRAMING_LEN32, guarded("\0\0\0\0", 4), 4), 4);
    assert_int_equal(frame_wire_len(FRAMING_LEN32, guarded("\0\0\1\2", 4), 4), 4 + 258);
    assert_int_equal(frame_wire_len(FRAMING_LEN32, guarded("\xff\xff\xff\xff", 4), 4),
                     4 + (size_t)UINT32_MAX);
}

/* ---- frame_partial_feed -------------------------------------------------------------------- */

static void test_frame_line_partial_feed(void **state)
{
    (void)state;
    struct frame_partial fp = {0};
    size_t used;
    int64_t grown;
    assert_int_equal(feed(&fp, FRAMING_LINE, 100, LIT("abc"), &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(used, 3);
    assert_true(grown > 0);
    assert_int_equal(grown, fp.cap);
    assert_int_equal(fp.len, 3);
    /* Takes only up to the end of the frame. */
    assert_int_equal(feed(&fp, FRAMING_LINE, 100, LIT("de\nfg\n"), &used, &grown), FRAME_COMPLETE);
    assert_int_equal(used, 3);
    assert_int_equal(grown, 0);
    assert_int_equal(fp.len, 6);
    assert_memory_equal(fp.buf, "abcde\n", 6);
    uint32_t cap = fp.cap;
    assert_int_equal(frame_partial_reset(&fp), cap);
    assert_null(fp.buf);
    assert_int_equal(fp.len, 0);
    assert_int_equal(fp.cap, 0);
    assert_int_equal(frame_partial_reset(&fp), 0); /* safe on an empty partial */

    /* An empty partial fed just "\n". */
    assert_int_equal(feed(&fp, FRAMING_LINE, 100, LIT("\nmore"), &used, &grown), FRAME_COMPLETE);
    assert_int_equal(used, 1);
    assert_int_equal(fp.len, 1);
    assert_int_equal(fp.buf[0], '\n');
    assert_int_equal(frame_partial_reset(&fp), grown);

    /* \r, NUL and 0xff are kept. */
    assert_int_equal(feed(&fp, FRAMING_LINE, 100, LIT("\r\0"), &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(feed(&fp, FRAMING_LINE, 100, LIT("\xff\n"), &used, &grown), FRAME_COMPLETE);
    assert_memory_equal(fp.buf, "\r\0\xff\n", 4);
    frame_partial_reset(&fp);
}

static void test_frame_line_partial_max_frame(void **state)
{
    (void)state;
    struct frame_partial fp = {0};
    size_t used;
    int64_t grown;
    /* Exactly max_frame bytes with the '\n': complete. */
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("1234"), &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("567\n"), &used, &grown), FRAME_COMPLETE);
    assert_int_equal(fp.len, 8);
    assert_int_equal(fp.cap, 8); /* never more than the longest valid frame */
    frame_partial_reset(&fp);

    /* max_frame + 1 with the '\n': too long, when the '\n' arrives. */
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("1234"), &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("5678\n"), &used, &grown), FRAME_TOO_LONG);
    frame_partial_reset(&fp);

    /* Too long before the '\n': the partial already exceeds max_frame. */
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("12345678"), &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("9"), &used, &grown), FRAME_TOO_LONG);
    frame_partial_reset(&fp);
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("123456789"), &used, &grown), FRAME_TOO_LONG);
    assert_int_equal(frame_partial_reset(&fp), 0);
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("12345"), &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(feed(&fp, FRAMING_LINE, 8, LIT("6789abc"), &used, &grown), FRAME_TOO_LONG);
    frame_partial_reset(&fp);
}

static void test_frame_len32_partial_feed(void **state)
{
    (void)state;
    struct frame_partial fp = {0};
    size_t used;
    int64_t grown, total = 0;
    uint8_t b[64];
    size_t n = put_len32(b, 6, "x\ny\0\xff!");
    n += put_len32(b + n, 1, "z"); /* a following frame that must not be taken */

    /* The header in pieces, then the payload. */
    assert_int_equal(feed(&fp, FRAMING_LEN32, 100, b, 2, &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(used, 2);
    total += grown;
    assert_int_equal(feed(&fp, FRAMING_LEN32, 100, b + 2, 1, &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(used, 1);
    total += grown;
    assert_int_equal(feed(&fp, FRAMING_LEN32, 100, b + 3, 3, &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(used, 3);
    total += grown;
    assert_int_equal(feed(&fp, FRAMING_LEN32, 100, b + 6, n - 6, &used, &grown), FRAME_COMPLETE);
    assert_int_equal(used, 4);
    total += grown;
    assert_int_equal(fp.len, 10);
    assert_memory_equal(fp.buf, b, 10);
    assert_int_equal(total, fp.cap);
    assert_int_equal(frame_partial_reset(&fp), total);

    /* N = 0: complete with its header, nothing more taken. */
    assert_int_equal(feed(&fp, FRAMING_LEN32, 100, "\0\0", 2, &used, &grown), FRAME_NEED_MORE);
    assert_int_equal(feed(&fp, FRAMING_LEN32, 100, "\0\0\0\0\0\1z", 7, &used, &grown),
                     FRAME_COMPLETE);
    assert_int_equal(used, 2);
    assert_int_equal(fp.len, 4);
    frame_partial_reset(&fp);
    assert_int_equal(feed(&fp, FRAMING_LEN32, 0, "\0\0\0\0\0\0", 6, &used, &grown), FRAME_COMPLETE);
    assert_int_equal(used, 4);
    frame_partial_reset(&fp);
}

static void test_frame_len32_partial_max_frame(void **state)
{
    (void)state;
    struct frame_partial fp = {0};
    size_t used;
    int64_t grown, total = 0;
    static uint8_t b[600];
    /* N == max_frame passes, and the buffer never outgrows the frame. */
    size_t n = put_len32(b, 500, NULL);
    for (size_t off = 0; off < n; off += 7) {
        size_t len = n - off < 7 ? n - off : 7;
        enum frame_feed r = feed(&fp, FRAMING_LEN32, 500, b + off, len, &used, &grown);
        total += grown;
        assert_int_equal(used, len);
        assert_int_equal(total, fp.cap);
        assert_true(fp.cap <= n);
        assert_int_equal(r, off + len == n ? FRAME_COMPLETE : FRAME_NEED_MORE);
    }
    assert_memory_equal(fp.buf, b, n);
    assert_int_equal(frame_partial_reset(&fp), total);

    /* N == max_frame + 1: too long once the header is whole, whatever its split. */
    put_len32(b, 501, NULL);
    for (size_t cut = 1; cut < 4; cut++) {
        assert_int_equal(feed(&fp, FRAMING_LEN32, 500, b, cut, &used, &grown), FRAME_NEED_MORE);
        assert_int_equal(feed(&fp, FRAMING_LEN32, 500, b + cut, 4 - cut, &used, &grown),
                         FRAME_TOO_LONG);
        frame_partial_reset(&fp);
    }
    assert_int_equal(feed(&fp, FRAMING_LEN32, 500, b, 4, &used, &grown), FRAME_TOO_LONG);
    frame_partial_reset(&fp);
    /* A bad huge header. */
    assert_int_equal(feed(&fp, FRAMING_LEN32, 1u << 20, "\xff\xff\xff\xff", 4, &used, &grown),
                     FRAME_TOO_LONG);
    frame_partial_reset(&fp);
    assert_int_equal(feed(&fp, FRAMING_LEN32, 1u << 20, "\xff\xff", 2, &used, &grown),
                     FRAME_NEED_MORE);
    assert_int_equal(feed(&fp, FRAMING_LEN32, 1u << 20, "\xff\xff\0\0", 4, &used, &grown),
                     FRAME_TOO_LONG);
    frame_partial_reset(&fp);
}

/* A slow line, one byte at a time: grows geometrically, grown sums to cap, capped at max. */
static void test_frame_partial_memory_accounting(void **state)
{
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        enum framing f = fi ? FRAMING_LEN32 : FRAMING_LINE;
        const uint64_t max_frame = 5000;
        static uint8_t b[5004];
        size_t n;
        if (f == FRAMING_LINE) {
            memset(b, 'x', 4999);
            b[4999] = '\n';
            n = 5000;
        } else {
            n = put_len32(b, 5000, NULL);
        }
        struct frame_partial fp = {0};
        int64_t total = 0;
        unsigned grows = 0;
        for (size_t i = 0; i < n; i++) {
            size_t used;
            int64_t grown;
            enum frame_feed r = feed(&fp, f, max_frame, b + i, 1, &used, &grown);
            assert_int_equal(used, 1);
            assert_true(grown >= 0);
            grows += grown > 0;
            total += grown;
            assert_int_equal(total, fp.cap);
            assert_true(fp.cap >= fp.len);
            assert_true(fp.cap <= n);
            assert_int_equal(r, i + 1 == n ? FRAME_COMPLETE : FRAME_NEED_MORE);
        }
        assert_true(grows <= 8); /* 256, 512, ..., 4096, then the clamp */
        assert_memory_equal(fp.buf, b, n);
        assert_int_equal(frame_partial_reset(&fp), total);
    }
}

static void test_frame_partial_nomem(void **state)
{
    (void)state;
    struct frame_partial fp = {0};
    size_t used;
    int64_t grown;
    for (int fi = 0; fi < 2; fi++) {
        enum framing f = fi ? FRAMING_LEN32 : FRAMING_LINE;
        /* The first allocation fails: nothing held, nothing accounted. */
        rc_alloc_fail_after(1);
        assert_int_equal(feed(&fp, f, 1000, LIT("\0\0\0\5ab\n"), &used, &grown), FRAME_NOMEM);
        rc_alloc_fail_after(0);
        assert_null(fp.buf);
        assert_int_equal(fp.cap, 0);
        assert_int_equal(grown, 0);
        assert_int_equal(frame_partial_reset(&fp), 0);
    }

    /* A line whose buffer must grow: the old buffer stays held and is freed by reset. */
    static uint8_t b[400];
    memset(b, 'y', sizeof(b));
    assert_int_equal(feed(&fp, FRAMING_LINE, 1000, b, 200, &used, &grown), FRAME_NEED_MORE);
    int64_t total = grown;
    rc_alloc_fail_after(1);
    assert_int_equal(feed(&fp, FRAMING_LINE, 1000, b, 200, &used, &grown), FRAME_NOMEM);
    rc_alloc_fail_after(0);
    total += grown;
    assert_int_equal(fp.len, 200);
    assert_int_equal(total, fp.cap);
    assert_int_equal(frame_partial_reset(&fp), total);

    /* len32: the header fits, the payload's growth fails; whatever was grown is reported. */
    size_t n = put_len32(b, 300, NULL);
    rc_alloc_fail_after(2);
    assert_int_equal(feed(&fp, FRAMING_LEN32, 1000, b, n, &used, &grown), FRAME_NOMEM);
    rc_alloc_fail_after(0);
    assert_true(used <= n);
    assert_int_equal(grown, fp.cap);
    assert_int_equal(frame_partial_reset(&fp), grown);
}

/* ---- splits -------------------------------------------------------------------------------- */

static void test_frame_line_every_split(void **state)
{
    (void)state;
    /* One frame, then several coalesced ones with every awkward byte. */
    check_all_splits(FRAMING_LINE, LIT("hello world\n"));
    check_all_splits(FRAMING_LINE, LIT("\n"));
    check_all_splits(FRAMING_LINE, LIT("ab\n\ncd\r\n\0\n\xff\xfe\x80 x\n\n"));
}

static void test_frame_len32_every_split(void **state)
{
    (void)state;
    uint8_t b[128];
    size_t n = put_len32(b, 9, "one\nframe");
    check_all_splits(FRAMING_LEN32, b, n);
    check_all_splits(FRAMING_LEN32, LIT("\0\0\0\0"));
    n += put_len32(b + n, 0, NULL);
    n += put_len32(b + n, 3, "\xff\0\n");
    n += put_len32(b + n, 0, NULL);
    n += put_len32(b + n, 1, "\r");
    n += put_len32(b + n, 12, NULL);
    check_all_splits(FRAMING_LEN32, b, n);
}

/* A frame longer than the first partial buffer (256), cut at every position. */
static void test_frame_every_split_long_frame(void **state)
{
    (void)state;
    static uint8_t b[700];
    memset(b, 'q', 599);
    b[599] = '\n';
    memcpy(b + 600, "tail\n", 5);
    for (size_t i = 0; i <= 605; i++)
        check_delivery(FRAMING_LINE, b, 605, &i, 1);
    size_t n = put_len32(b, 590, NULL);
    n += put_len32(b + n, 2, "ok");
    for (size_t i = 0; i <= n; i++)
        check_delivery(FRAMING_LEN32, b, n, &i, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_line_scan_basic),
        cmocka_unit_test(test_frame_line_scan_max_frame),
        cmocka_unit_test(test_frame_line_scan_long),
        cmocka_unit_test(test_frame_line_scan_counting_matches_reference),
        cmocka_unit_test(test_frame_len32_scan_basic),
        cmocka_unit_test(test_frame_len32_scan_max_frame),
        cmocka_unit_test(test_frame_wire_len),
        cmocka_unit_test(test_frame_line_partial_feed),
        cmocka_unit_test(test_frame_line_partial_max_frame),
        cmocka_unit_test(test_frame_len32_partial_feed),
        cmocka_unit_test(test_frame_len32_partial_max_frame),
        cmocka_unit_test(test_frame_partial_memory_accounting),
        cmocka_unit_test(test_frame_partial_nomem),
        cmocka_unit_test(test_frame_line_every_split),
        cmocka_unit_test(test_frame_len32_every_split),
        cmocka_unit_test(test_frame_every_split_long_frame),
    };
    return cmocka_run_group_tests(tests, arena_setup, arena_teardown);
}
