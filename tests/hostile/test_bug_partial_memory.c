/*
 * Bug 8: --max-partial-memory under --slow-policy drop. When the drop policy discards a stuck
 * reader's backlog in the middle of a frame already partly sent to it, the relay keeps the rest
 * of that frame aside (so the reader only ever sees whole frames), and counts it as
 * partial-frame memory. The old relay counted those remainders but never enforced the limit when
 * they were made (84,480 B against a 65,536 B limit in the issue); and when enforcement did run,
 * on some publisher's incomplete frame growing, it chose its victim among the publishers only:
 * an innocent publisher, whose small frames merely straddled two receive buffers, was cut while
 * the stuck readers kept the memory.
 *
 * The test: six readers that never read (tiny SO_RCVBUF) fall behind a publisher of 60 KiB
 * frames, sent one at a time; then an innocent publisher sends 100-byte frames in 200 KiB writes
 * (so they straddle receive buffers). Throughout, the gauge ringcast_partial_frame_bytes, sampled
 * every 50 ms, must stay within the limit; the innocent publisher must never be disconnected; a
 * healthy subscriber must get every frame of both publishers, in order. The stuck readers may be
 * disconnected (they hold the memory) or not.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostile.h"

#define LIMIT 131072 /* --max-partial-memory 128K */
#define STUCK 6
#define STUCK_RCVBUF 4096
#define BIG_FRAME (60 * 1024)
#define BIG_FRAMES 160 /* 9.4 MiB: past the stuck readers' sockets and their quota */
#define SMALL_FRAME 100
#define SMALL_FRAMES 4096
#define SMALL_WRITE (2000 * SMALL_FRAME) /* 200 KB: several receive buffers, frames straddle */
#define SAMPLE_MS 50
#define RUN_MS 60000
#define STALL_MS 15000

enum { BIG, SMALL, HEALTHY, FIRST_STUCK };

struct scene {
    struct rc_server *s;
    int mport;
    struct hx_peer peers[FIRST_STUCK + STUCK];
    struct hx_check check;
    uint32_t big_released; /* big frames handed to the publisher so far */
    uint32_t small_want;   /* small frames the healthy subscriber must have for this phase */
    int64_t next_sample;
    double max_gauge;
    int samples;
};

static void sample(struct scene *sc)
{
    double v = hx_scrape(sc->s, sc->mport, "ringcast_partial_frame_bytes");
    sc->samples++;
    if (v > sc->max_gauge)
        sc->max_gauge = v;
    sc->next_sample = rc_now_ms() + SAMPLE_MS;
}

/* Samples the gauge when due; releases the next big frame once the previous one was delivered. */
static void tick(void *arg)
{
    struct scene *sc = arg;
    if (rc_now_ms() >= sc->next_sample)
        sample(sc);
    struct hx_peer *big = &sc->peers[BIG];
    if (sc->big_released < sc->check.want['G'] && sc->check.got['G'] == sc->big_released) {
        sc->big_released++;
        big->out_len += BIG_FRAME; /* one frame at a time: it arrives whole */
    }
}

static bool done(void *arg)
{
    struct scene *sc = arg;
    if (sc->check.err[0] || sc->peers[HEALTHY].closed || sc->peers[SMALL].closed)
        return true;
    return sc->check.got['G'] == sc->check.want['G'] && sc->check.got['I'] == sc->small_want;
}

static void run_phase(struct scene *sc, const char *phase)
{
    struct hx_pump_opts po = {
        .done = done, .tick = tick, .arg = sc, .timeout_ms = RUN_MS, .stall_ms = STALL_MS};
    const char *why;
    bool ok = hx_pump(sc->s, sc->peers, FIRST_STUCK + STUCK, &po, &why);
    char got[512];
    hx_check_describe(&sc->check, got, sizeof(got));
    if (sc->check.err[0])
        fail_msg("%s: the healthy subscriber got a wrong frame: %s", phase, sc->check.err);
    if (sc->peers[HEALTHY].closed)
        fail_msg("%s: the healthy subscriber was disconnected; it had %s", phase, got);
    if (!ok && !sc->peers[SMALL].closed) {
        rc_dump(sc->s);
        fail_msg("%s: %s; the healthy subscriber has %s", phase,
                 strcmp(why, "stall") ? why : "nothing moved for 15 s", got);
    }
    sample(sc);
}

static void test_partial_memory_drop_remainders(void **state)
{
    struct scene *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    sc->s = hx_start_metrics(&sc->mport, "--slow-policy", "drop", "--max-queue", "256K",
                             "--max-frame", "64K", "--max-partial-memory", "128K", NULL);
    struct rc_server *s = sc->s;
    uint8_t *big = malloc((size_t)BIG_FRAMES * BIG_FRAME);
    uint8_t *small = malloc((size_t)SMALL_FRAMES * SMALL_FRAME);
    assert_non_null(big);
    assert_non_null(small);
    for (uint32_t i = 0; i < BIG_FRAMES; i++)
        hx_frame_line(big + (size_t)i * BIG_FRAME, BIG_FRAME, 'G', i);
    for (uint32_t i = 0; i < SMALL_FRAMES; i++)
        hx_frame_line(small + (size_t)i * SMALL_FRAME, SMALL_FRAME, 'I', i);
    hx_check_init(&sc->check, false);
    sc->check.want['G'] = BIG_FRAMES;
    sc->check.want['I'] = SMALL_FRAMES;

    sc->peers[HEALTHY] = (struct hx_peer){.fd = rc_connect(s), .read = true, .check = &sc->check};
    int stuck_port[STUCK];
    for (int i = 0; i < STUCK; i++) {
        sc->peers[FIRST_STUCK + i] = (struct hx_peer){.fd = rc_connect_buf(s, STUCK_RCVBUF)};
        stuck_port[i] = rc_port_of(sc->peers[FIRST_STUCK + i].fd);
    }
    /* The publishers read (and drop) each other's frames: only the stuck readers fall behind. */
    sc->peers[BIG] = (struct hx_peer){.fd = rc_connect(s), .out = big, .read = true};
    sc->peers[SMALL] = (struct hx_peer){.fd = rc_connect(s), .read = true};
    int small_port = rc_port_of(sc->peers[SMALL].fd);
    size_t mark = rc_log_mark(s);

    /* 1: the big frames, one at a time; the stuck readers' backlogs are dropped mid-frame. */
    run_phase(sc, "big frames");
    /* 2: the innocent publisher's small frames, straddling receive buffers. */
    sc->small_want = SMALL_FRAMES;
    sc->peers[SMALL].out = small;
    sc->peers[SMALL].out_len = (size_t)SMALL_FRAMES * SMALL_FRAME;
    sc->peers[SMALL].chunk = SMALL_WRITE;
    run_phase(sc, "small frames");
    hx_expect_alive(s, "during the test");

    char line[256], stuck_fate[STUCK * 64] = "";
    size_t off = 0;
    for (int i = 0; i < STUCK; i++) {
        bool gone = hx_gone(s, mark, stuck_port[i], line, sizeof(line));
        const char *why = gone ? strstr(line, "disconnected") : NULL;
        off += (size_t)snprintf(stuck_fate + off, sizeof(stuck_fate) - off, "%s%s", i ? "; " : "",
                                why ? why : "still connected");
    }
    print_message("partial_frame_bytes: max %.0f over %d samples (limit %d); stuck readers: %s\n",
                  sc->max_gauge, sc->samples, LIMIT, stuck_fate);
    if (hx_gone(s, mark, small_port, line, sizeof(line))) {
        rc_dump(s);
        fail_msg("the innocent publisher (whole 100-byte frames) was cut: \"%s\"; the gauge "
                 "peaked at %.0f (limit %d); stuck readers: %s",
                 line, sc->max_gauge, LIMIT, stuck_fate);
    }
    if (sc->max_gauge > LIMIT)
        fail_msg("ringcast_partial_frame_bytes reached %.0f, over --max-partial-memory %d; stuck "
                 "readers: %s",
                 sc->max_gauge, LIMIT, stuck_fate);
    if (!hx_check_complete(&sc->check)) {
        char got[512];
        hx_check_describe(&sc->check, got, sizeof(got));
        fail_msg("the healthy subscriber has %s", got);
    }
    hx_check_free(&sc->check);
    free(big);
    free(small);
    free(sc);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_partial_memory_drop_remainders, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
