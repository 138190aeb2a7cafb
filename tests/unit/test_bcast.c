/* The broadcast log: mirrored ring, space accounting, record index, skipping and frame counting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringcast/bcast.h"
#include "ringcast/frame.h"

#define LIT(s) (s), sizeof(s) - 1

static uint64_t page_size(void)
{
    return (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t nrecs(const struct bcast *b)
{
    return b->rec_head - b->rec_tail;
}

static const struct bcast_rec *rec(const struct bcast *b, uint64_t i)
{
    return &b->recs[(b->rec_tail + i) & (b->rec_cap - 1)];
}

static void append_str(struct bcast *b, uint32_t origin, const char *s, uint32_t nframes)
{
    size_t len = strlen(s);
    assert_true(bcast_fits(b, len));
    bcast_append(b, origin, s, len, nframes);
}

/* Fill @out with @n bytes of a pattern that has no '\n'. */
static void pattern(uint8_t *out, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = (uint8_t)(i * 31 + seed);
        if (out[i] == '\n')
            out[i] = 'n';
    }
}

/* ---- init, mirror, append ------------------------------------------------------------------ */

static void test_bcast_init_rounds_to_power_of_two(void **state)
{
    (void)state;
    const uint64_t page = page_size();
    static const uint64_t asks[] = {0, 1, 100, 4096, 4097, 5000, 65536, 65537, 1000000};
    for (size_t i = 0; i < sizeof(asks) / sizeof(asks[0]); i++) {
        struct bcast b;
        assert_int_equal(bcast_init(&b, asks[i], asks[i] / 64), 0);
        assert_non_null(b.base);
        assert_int_equal(b.cap & (b.cap - 1), 0);
        assert_true(b.cap >= asks[i]);
        assert_true(b.cap >= page);
        assert_true(b.cap == page || b.cap / 2 < asks[i]); /* the smallest such */
        assert_int_equal(b.rec_cap & (b.rec_cap - 1), 0);
        assert_true(b.rec_cap >= asks[i] / 64);
        assert_int_equal(b.head, 0);
        assert_int_equal(b.tail, 0);
        assert_true(bcast_fits(&b, b.cap));
        assert_false(bcast_fits(&b, b.cap + 1));
        bcast_destroy(&b);
        assert_null(b.base);
        bcast_destroy(&b); /* twice is safe */
    }
    struct bcast z;
    memset(&z, 0, sizeof(z));
    bcast_destroy(&z); /* a zeroed struct is safe */
}

static void test_bcast_mirror(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    for (uint64_t i = 0; i < b.cap; i += 97) {
        b.base[i] = (uint8_t)(i ^ 0x5a);
        assert_int_equal(b.base[i + b.cap], (uint8_t)(i ^ 0x5a));
        b.base[b.cap + i] = (uint8_t)i;
        assert_int_equal(b.base[i], (uint8_t)i);
    }
    bcast_destroy(&b);
}

static void test_bcast_append_and_ptr(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    assert_int_equal(bcast_append(&b, 1, LIT("hello\n"), 1), 0);
    assert_int_equal(bcast_append(&b, 2, LIT("world\n"), 1), 6);
    assert_int_equal(b.head, 12);
    assert_int_equal(b.tail, 0);
    assert_memory_equal(bcast_ptr(&b, 0), "hello\nworld\n", 12);
    assert_memory_equal(bcast_ptr(&b, 6), "world\n", 6);
    bcast_destroy(&b);
}

/* A range that crosses the end of the ring is contiguous through the mirror. */
static void test_bcast_append_across_wrap(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    const uint64_t cap = b.cap;
    uint8_t *data = malloc(cap);
    assert_non_null(data);
    pattern(data, cap, 1);
    uint64_t first = cap - 100;
    assert_true(bcast_fits(&b, first));
    bcast_append(&b, 1, data, first, 1);
    bcast_release(&b, first);
    assert_true(bcast_fits(&b, cap));
    pattern(data, cap, 2);
    /* The append wraps: 100 bytes at the end, the rest at the start. */
    assert_int_equal(bcast_append(&b, 2, data, cap, 1), first);
    assert_false(bcast_fits(&b, 1));
    assert_memory_equal(bcast_ptr(&b, first), data, cap);
    assert_memory_equal(bcast_ptr(&b, first + 100), data + 100, cap - 100);
    assert_memory_equal(b.base, data + 100, 10); /* really wrapped */
    bcast_release(&b, first + cap);
    /* And again, with many small appends straddling the end. */
    for (int round = 0; round < 5; round++) {
        for (unsigned i = 0; i < 7; i++) {
            pattern(data, 1000, round * 16 + i);
            assert_true(bcast_fits(&b, 1000));
            uint64_t at = bcast_append(&b, i % 3, data, 1000, 1);
            assert_memory_equal(bcast_ptr(&b, at), data, 1000);
            if (b.head - b.tail > cap / 2)
                bcast_release(&b, b.head - 1000);
        }
    }
    free(data);
    bcast_destroy(&b);
}

/* ---- fits / release ------------------------------------------------------------------------ */

static void test_bcast_fits_and_release(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 64), 0);
    const uint64_t q = b.cap / 4;
    uint8_t *data = malloc(q);
    assert_non_null(data);
    pattern(data, q, 3);
    /* Four records of cap/4 (alternating origins: no merging). */
    for (uint32_t i = 0; i < 4; i++) {
        assert_true(bcast_fits(&b, q));
        assert_false(bcast_fits(&b, b.cap - i * q + 1));
        bcast_append(&b, i % 2, data, q, 1);
    }
    assert_false(bcast_fits(&b, 1));
    assert_true(bcast_fits(&b, 0));
    /* Releasing the first record frees exactly its bytes. */
    bcast_release(&b, q);
    assert_int_equal(b.tail, q);
    assert_int_equal(nrecs(&b), 3);
    assert_true(bcast_fits(&b, q));
    assert_false(bcast_fits(&b, q + 1));
    /* A tail inside a record keeps the record's start (it must stay parseable). */
    bcast_release(&b, q + q / 2);
    assert_int_equal(b.tail, q + q / 2);
    assert_int_equal(nrecs(&b), 3);
    assert_true(bcast_fits(&b, q));
    assert_false(bcast_fits(&b, q + 1));
    /* Releasing backwards is ignored. */
    bcast_release(&b, q);
    assert_int_equal(b.tail, q + q / 2);
    /* Everything. */
    bcast_release(&b, b.head);
    assert_int_equal(nrecs(&b), 0);
    assert_true(bcast_fits(&b, b.cap));
    assert_false(bcast_fits(&b, b.cap + 1));
    free(data);
    bcast_destroy(&b);
}

/* The record index has a capacity too. */
static void test_bcast_fits_record_index_full(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    assert_int_equal(b.rec_cap, 16);
    for (uint32_t i = 0; i < 16; i++) {
        assert_true(bcast_fits(&b, 2));
        bcast_append(&b, i % 2, LIT("x\n"), 1);
    }
    assert_int_equal(nrecs(&b), 16);
    assert_false(bcast_fits(&b, 2));
    bcast_release(&b, 2);
    assert_true(bcast_fits(&b, 2));
    bcast_destroy(&b);
}

/* ---- records ------------------------------------------------------------------------------- */

static void test_bcast_record_merging(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1 << 20, 64), 0);
    append_str(&b, 7, "a\n", 1);
    append_str(&b, 7, "b\nc\n", 2);
    assert_int_equal(nrecs(&b), 1);
    assert_int_equal(rec(&b, 0)->off, 0);
    assert_int_equal(rec(&b, 0)->len, 6);
    assert_int_equal(rec(&b, 0)->origin, 7);
    assert_int_equal(rec(&b, 0)->nframes, 3);
    append_str(&b, 8, "d\n", 1);
    append_str(&b, 7, "e\n", 1);
    assert_int_equal(nrecs(&b), 3);
    assert_int_equal(rec(&b, 1)->off, 6);
    assert_int_equal(rec(&b, 1)->origin, 8);
    assert_int_equal(rec(&b, 2)->off, 8);
    assert_int_equal(rec(&b, 2)->nframes, 1);

    /* Merging stops at BCAST_REC_MAX_LEN. */
    bcast_release(&b, b.head);
    static uint8_t big[BCAST_REC_MAX_LEN];
    pattern(big, sizeof(big), 4);
    uint64_t start = b.head;
    bcast_append(&b, 9, big, BCAST_REC_MAX_LEN - 10, 1);
    bcast_append(&b, 9, big, 10, 1);
    assert_int_equal(nrecs(&b), 1);
    assert_int_equal(rec(&b, 0)->len, BCAST_REC_MAX_LEN);
    assert_int_equal(rec(&b, 0)->nframes, 2);
    bcast_append(&b, 9, big, 1, 1);
    assert_int_equal(nrecs(&b), 2);
    assert_int_equal(rec(&b, 1)->off, start + BCAST_REC_MAX_LEN);
    assert_int_equal(rec(&b, 1)->len, 1);

    /* After everything is released, a new append starts a new record. */
    bcast_release(&b, b.head);
    assert_int_equal(nrecs(&b), 0);
    append_str(&b, 9, "f\n", 1);
    assert_int_equal(nrecs(&b), 1);
    assert_int_equal(rec(&b, 0)->off, b.head - 2);
    assert_int_equal(rec(&b, 0)->nframes, 1);
    bcast_destroy(&b);
}

/* ---- next_range ---------------------------------------------------------------------------- */

/* A(1): [0,10)  B(2): [10,30)  C(1): [30,35)  D(3): [35,42) */
static void make_abcd(struct bcast *b)
{
    assert_int_equal(bcast_init(b, 1, 16), 0);
    append_str(b, 1, "aaaaaaaaa\n", 1);
    append_str(b, 2, "bbbbbbbbbbbbbbbbbbb\n", 1);
    append_str(b, 1, "cccc\n", 1);
    append_str(b, 3, "dddddd\n", 1);
    assert_int_equal(b->head, 42);
    assert_int_equal(nrecs(b), 4);
}

static void expect_range(const struct bcast *b, uint64_t cursor, uint32_t origin, uint64_t own_end,
                         uint64_t want_len, uint64_t want_cursor, uint64_t want_skipped)
{
    uint64_t c = cursor, skipped = 1000;
    uint64_t len = bcast_next_range(b, &c, origin, own_end, &skipped);
    if (len != want_len || c != want_cursor || skipped != 1000 + want_skipped)
        fail_msg("next_range(cursor %llu, origin %u, own_end %llu) = %llu at %llu skipping %llu;"
                 " want %llu at %llu skipping %llu",
                 (unsigned long long)cursor, origin, (unsigned long long)own_end,
                 (unsigned long long)len, (unsigned long long)c,
                 (unsigned long long)(skipped - 1000), (unsigned long long)want_len,
                 (unsigned long long)want_cursor, (unsigned long long)want_skipped);
}

static void test_bcast_next_range_no_origin(void **state)
{
    (void)state;
    struct bcast b;
    make_abcd(&b);
    expect_range(&b, 0, BCAST_NO_ORIGIN, 42, 42, 0, 0);
    expect_range(&b, 17, BCAST_NO_ORIGIN, 42, 25, 17, 0);
    expect_range(&b, 42, BCAST_NO_ORIGIN, 42, 0, 42, 0);
    /* An origin with no records in the log. */
    expect_range(&b, 0, 4, 0, 42, 0, 0);
    bcast_destroy(&b);
}

static void test_bcast_next_range_skips_own(void **state)
{
    (void)state;
    struct bcast b;
    make_abcd(&b);
    /* Reader 2: stops before its own B, then skips it. */
    expect_range(&b, 0, 2, 30, 10, 0, 0);
    expect_range(&b, 4, 2, 30, 6, 4, 0);
    expect_range(&b, 10, 2, 30, 12, 30, 20);
    expect_range(&b, 30, 2, 30, 12, 30, 0); /* fast path: own_end <= cursor */
    /* Reader 1: skips A at the cursor, stops before C; then skips C. */
    expect_range(&b, 0, 1, 35, 20, 10, 10);
    expect_range(&b, 10, 1, 35, 20, 10, 0);
    expect_range(&b, 25, 1, 35, 5, 25, 0);
    expect_range(&b, 30, 1, 35, 7, 35, 5);
    /* A cursor inside an own record skips only the rest of it. */
    expect_range(&b, 3, 1, 35, 20, 10, 7);
    expect_range(&b, 33, 1, 35, 7, 35, 2);
    /* Reader 3: everything up to its own D, which ends the log. */
    expect_range(&b, 0, 3, 42, 35, 0, 0);
    expect_range(&b, 35, 3, 42, 0, 42, 7);
    expect_range(&b, 40, 3, 42, 0, 42, 2);
    expect_range(&b, 42, 3, 42, 0, 42, 0);
    bcast_destroy(&b);
}

/* own_end at or before the cursor is a promise that nothing is to be skipped: it is trusted. */
static void test_bcast_next_range_fast_path(void **state)
{
    (void)state;
    struct bcast b;
    make_abcd(&b);
    expect_range(&b, 0, 1, 0, 42, 0, 0);
    expect_range(&b, 10, 2, 10, 32, 10, 0);
    bcast_destroy(&b);
}

/* Adjacent own records (the first one full) are skipped together. */
static void test_bcast_next_range_adjacent_own_records(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1 << 20, 64), 0);
    static uint8_t big[BCAST_REC_MAX_LEN];
    pattern(big, sizeof(big), 5);
    append_str(&b, 2, "x\n", 1);
    bcast_append(&b, 1, big, BCAST_REC_MAX_LEN, 1);
    bcast_append(&b, 1, big, 100, 1);
    append_str(&b, 2, "y\n", 1);
    bcast_append(&b, 1, big, 50, 1);
    assert_int_equal(nrecs(&b), 5);
    uint64_t own_end = b.head;
    expect_range(&b, 0, 1, own_end, 2, 0, 0);
    expect_range(&b, 2, 1, own_end, 2, 2 + BCAST_REC_MAX_LEN + 100, BCAST_REC_MAX_LEN + 100);
    expect_range(&b, 2 + BCAST_REC_MAX_LEN + 102, 1, own_end, 0, b.head, 50);
    bcast_destroy(&b);
}

/* ---- frame_end / count_frames -------------------------------------------------------------- */

static void test_bcast_frame_end_line(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    append_str(&b, 1, "ab\ncd\n", 2); /* [0,6) */
    append_str(&b, 2, "efg\n", 1);    /* [6,10) */
    append_str(&b, 1, "\n\n", 2);     /* [10,12) */
    static const uint64_t want[] = {0, 3, 3, 3, 6, 6, 6, 10, 10, 10, 10, 11, 12};
    for (uint64_t off = 0; off <= 12; off++)
        assert_int_equal(bcast_frame_end(&b, FRAMING_LINE, off), want[off]);
    /* With the tail inside the first record, it is still parsed from that record's start. */
    bcast_release(&b, 4);
    assert_int_equal(bcast_frame_end(&b, FRAMING_LINE, 4), 6);
    assert_int_equal(bcast_frame_end(&b, FRAMING_LINE, 5), 6);
    bcast_destroy(&b);
}

static void test_bcast_frame_end_len32(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    /* [0,4) N=0, [4,11) N=3, then from another origin [11,16) N=1 */
    bcast_append(&b, 1, "\0\0\0\0\0\0\0\3\n\n\n", 11, 2);
    bcast_append(&b, 2, "\0\0\0\1\n", 5, 1);
    static const uint64_t want[] = {0, 4, 4, 4, 4, 11, 11, 11, 11, 11, 11, 11, 16, 16, 16, 16, 16};
    for (uint64_t off = 0; off <= 16; off++)
        assert_int_equal(bcast_frame_end(&b, FRAMING_LEN32, off), want[off]);
    bcast_destroy(&b);
}

static void test_bcast_count_frames(void **state)
{
    (void)state;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    append_str(&b, 1, "a\nbb\nccc\n", 3); /* [0,9): boundaries 0 2 5 9 */
    append_str(&b, 2, "d\nee\n", 2);      /* [9,14): 9 11 14 */
    append_str(&b, 1, "f\ng\n", 2);       /* [14,18): 14 16 18 */
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 0, 18, BCAST_NO_ORIGIN), 7);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 0, 18, 1), 2);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 0, 18, 2), 5);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 0, 18, 3), 7);
    /* Partial records at both ends. */
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 2, 16, BCAST_NO_ORIGIN), 5);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 2, 16, 2), 3);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 2, 16, 1), 2);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 11, 16, 1), 1);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 11, 16, 2), 1);
    /* Within one record. */
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 2, 5, BCAST_NO_ORIGIN), 1);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 2, 9, BCAST_NO_ORIGIN), 2);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 2, 9, 1), 0);
    /* Exactly record boundaries. */
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 9, 14, BCAST_NO_ORIGIN), 2);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 9, 14, 2), 0);
    /* Empty ranges. */
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 5, 5, BCAST_NO_ORIGIN), 0);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 18, 18, BCAST_NO_ORIGIN), 0);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LINE, 9, 5, BCAST_NO_ORIGIN), 0);
    bcast_destroy(&b);

    /* len32, with N = 0 frames in it. */
    assert_int_equal(bcast_init(&b, 1, 16), 0);
    bcast_append(&b, 1, "\0\0\0\0\0\0\0\2xy\0\0\0\0", 14, 3); /* 0 4 10 14 */
    bcast_append(&b, 2, "\0\0\0\1z\0\0\0\0", 9, 2);           /* 14 19 23 */
    assert_int_equal(bcast_count_frames(&b, FRAMING_LEN32, 0, 23, BCAST_NO_ORIGIN), 5);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LEN32, 4, 19, BCAST_NO_ORIGIN), 3);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LEN32, 4, 19, 1), 1);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LEN32, 4, 19, 2), 2);
    assert_int_equal(bcast_count_frames(&b, FRAMING_LEN32, 10, 23, 2), 1);
    bcast_destroy(&b);
}

/* ---- randomized against a model ------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint64_t rnd_below(uint64_t n)
{
    return rnd() % n;
}

/* The model: every byte ever appended, and every frame (start offset and origin). */
struct model {
    uint8_t *bytes;
    uint64_t len, bytes_cap;
    uint64_t *fstart;
    uint32_t *forigin;
    uint64_t nf, f_cap;
};

static void model_add_frame(struct model *m, const uint8_t *p, size_t len, uint32_t origin)
{
    if (m->len + len > m->bytes_cap) {
        m->bytes_cap = (m->len + len) * 2;
        m->bytes = realloc(m->bytes, m->bytes_cap);
        assert_non_null(m->bytes);
    }
    if (m->nf == m->f_cap) {
        m->f_cap = m->f_cap ? m->f_cap * 2 : 1024;
        m->fstart = realloc(m->fstart, m->f_cap * sizeof(*m->fstart));
        m->forigin = realloc(m->forigin, m->f_cap * sizeof(*m->forigin));
        assert_non_null(m->fstart);
        assert_non_null(m->forigin);
    }
    m->fstart[m->nf] = m->len;
    m->forigin[m->nf] = origin;
    m->nf++;
    memcpy(m->bytes + m->len, p, len);
    m->len += len;
}

/* Index of the frame containing @off (off < len). */
static uint64_t model_frame_at(const struct model *m, uint64_t off)
{
    uint64_t lo = 0, hi = m->nf;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (m->fstart[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static uint64_t model_frame_end(const struct model *m, uint64_t i)
{
    return i + 1 < m->nf ? m->fstart[i + 1] : m->len;
}

static uint32_t model_origin_at(const struct model *m, uint64_t off)
{
    return m->forigin[model_frame_at(m, off)];
}

static size_t make_frame(enum framing f, uint8_t *out, size_t payload)
{
    if (f == FRAMING_LINE) {
        pattern(out, payload, (unsigned)rnd());
        out[payload] = '\n';
        return payload + 1;
    }
    out[0] = (uint8_t)(payload >> 24);
    out[1] = (uint8_t)(payload >> 16);
    out[2] = (uint8_t)(payload >> 8);
    out[3] = (uint8_t)payload;
    for (size_t i = 0; i < payload; i++)
        out[4 + i] = (uint8_t)rnd(); /* '\n' and anything else */
    return payload + 4;
}

#define READERS 3

static void random_run(enum framing f, uint64_t seed)
{
    rng_state = seed;
    struct bcast b;
    assert_int_equal(bcast_init(&b, 1, 32), 0);
    struct model m = {0};
    uint64_t cursor[READERS] = {0}, own_end[READERS] = {0}, skipped[READERS] = {0};
    uint64_t received[READERS] = {0};
    static uint8_t batch[4096];

    for (int iter = 0; iter < 20000; iter++) {
        uint64_t op = rnd_below(10);
        if (op < 4) {
            /* A connection appends 1-4 whole frames in one go. */
            uint32_t origin = (uint32_t)rnd_below(READERS);
            uint32_t nframes = 1 + (uint32_t)rnd_below(4);
            size_t len = 0;
            uint64_t starts[4];
            for (uint32_t i = 0; i < nframes; i++) {
                starts[i] = len;
                len += make_frame(f, batch + len, rnd_below(4) == 0 ? 0 : rnd_below(300));
            }
            if (!bcast_fits(&b, len)) {
                /* Like the server under pressure: readers catch up, the log is released. */
                uint64_t keep = b.head;
                for (int r = 0; r < READERS; r++)
                    if (cursor[r] < keep)
                        keep = cursor[r];
                bcast_release(&b, keep);
                if (!bcast_fits(&b, len))
                    continue;
            }
            uint64_t at = bcast_append(&b, origin, batch, len, nframes);
            assert_int_equal(at, m.len);
            for (uint32_t i = 0; i < nframes; i++) {
                size_t end = i + 1 < nframes ? starts[i + 1] : len;
                model_add_frame(&m, batch + starts[i], end - starts[i], origin);
            }
            own_end[origin] = b.head;
            assert_int_equal(b.head, m.len);
        } else if (op < 8) {
            /* A reader takes the next range (all or part of it), as it would send it. */
            int r = (int)rnd_below(READERS);
            uint64_t c = cursor[r], sk = 0;
            uint64_t len = bcast_next_range(&b, &c, (uint32_t)r, own_end[r], &sk);
            /* Model: skip own bytes at the cursor, then up to the next own byte. */
            uint64_t mc = cursor[r];
            while (mc < m.len && model_origin_at(&m, mc) == (uint32_t)r)
                mc = model_frame_end(&m, model_frame_at(&m, mc));
            uint64_t me = mc;
            while (me < m.len && model_origin_at(&m, me) != (uint32_t)r)
                me = model_frame_end(&m, model_frame_at(&m, me));
            if (c != mc || len != me - mc || sk != mc - cursor[r])
                fail_msg("iter %d reader %d cursor %llu: got [%llu, +%llu) skipped %llu, "
                         "want [%llu, +%llu) skipped %llu",
                         iter, r, (unsigned long long)cursor[r], (unsigned long long)c,
                         (unsigned long long)len, (unsigned long long)sk, (unsigned long long)mc,
                         (unsigned long long)(me - mc), (unsigned long long)(mc - cursor[r]));
            assert_true(len <= b.cap);
            assert_memory_equal(bcast_ptr(&b, c), m.bytes + c, len);
            uint64_t take = rnd_below(3) == 0 ? len : rnd_below(len + 1);
            cursor[r] = c + take;
            skipped[r] += sk;
            received[r] += take;
        } else if (op < 9) {
            /* frame_end at a random offset in [tail, head]. */
            uint64_t off = b.tail + rnd_below(b.head - b.tail + 1);
            uint64_t want = off;
            if (off < m.len) {
                uint64_t i = model_frame_at(&m, off);
                want = m.fstart[i] == off ? off : model_frame_end(&m, i);
            }
            uint64_t got = bcast_frame_end(&b, f, off);
            if (got != want)
                fail_msg("iter %d: frame_end(%llu) = %llu, want %llu (tail %llu head %llu)", iter,
                         (unsigned long long)off, (unsigned long long)got, (unsigned long long)want,
                         (unsigned long long)b.tail, (unsigned long long)b.head);
        } else {
            /* count_frames between two random boundaries at or after the tail. */
            if (b.head == b.tail)
                continue;
            uint64_t from = bcast_frame_end(&b, f, b.tail + rnd_below(b.head - b.tail + 1));
            uint64_t to = bcast_frame_end(&b, f, from + rnd_below(b.head - from + 1));
            uint32_t skip = rnd_below(4) == 3 ? BCAST_NO_ORIGIN : (uint32_t)rnd_below(READERS);
            uint64_t want = 0;
            for (uint64_t i = from < m.len ? model_frame_at(&m, from) : m.nf;
                 i < m.nf && m.fstart[i] < to; i++)
                want += m.forigin[i] != skip;
            uint64_t got = bcast_count_frames(&b, f, from, to, skip);
            if (got != want)
                fail_msg("iter %d: count_frames(%llu, %llu, %u) = %llu, want %llu", iter,
                         (unsigned long long)from, (unsigned long long)to, skip,
                         (unsigned long long)got, (unsigned long long)want);
        }
    }
    /* The log wrapped many times over. */
    assert_true(b.head > 20 * b.cap);
    for (int r = 0; r < READERS; r++)
        assert_true(received[r] > 0 && skipped[r] > 0);
    free(m.bytes);
    free(m.fstart);
    free(m.forigin);
    bcast_destroy(&b);
}

static void test_bcast_random_line(void **state)
{
    (void)state;
    random_run(FRAMING_LINE, 0x9e3779b97f4a7c15ull);
}

static void test_bcast_random_len32(void **state)
{
    (void)state;
    random_run(FRAMING_LEN32, 0x2545f4914f6cdd1dull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bcast_init_rounds_to_power_of_two),
        cmocka_unit_test(test_bcast_mirror),
        cmocka_unit_test(test_bcast_append_and_ptr),
        cmocka_unit_test(test_bcast_append_across_wrap),
        cmocka_unit_test(test_bcast_fits_and_release),
        cmocka_unit_test(test_bcast_fits_record_index_full),
        cmocka_unit_test(test_bcast_record_merging),
        cmocka_unit_test(test_bcast_next_range_no_origin),
        cmocka_unit_test(test_bcast_next_range_skips_own),
        cmocka_unit_test(test_bcast_next_range_fast_path),
        cmocka_unit_test(test_bcast_next_range_adjacent_own_records),
        cmocka_unit_test(test_bcast_frame_end_line),
        cmocka_unit_test(test_bcast_frame_end_len32),
        cmocka_unit_test(test_bcast_count_frames),
        cmocka_unit_test(test_bcast_random_line),
        cmocka_unit_test(test_bcast_random_len32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
