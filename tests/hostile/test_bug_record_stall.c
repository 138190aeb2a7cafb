/*
 * Bug 2: a permanent stall through the broadcast log's record index. At default options the log
 * keeps one index record per run of bytes from one publisher, and the index has a fixed number of
 * slots (65,536 at the defaults). Publishers whose tiny frames interleave fill a record per frame;
 * a reader that stopped reading holds the oldest of them, and its backlog (a few hundred KiB) is
 * far under --max-queue (8 MiB), so the slow policy never frees the index: nothing is appended
 * any more, and nobody gets anything until the stuck reader leaves.
 *
 * The test: a reader that never reads (tiny SO_RCVBUF) is left behind by 6 MiB of frames from a
 * bulk publisher (its socket takes a few MiB, the rest stays pending for it); then four
 * publishers send 50,000 two-byte frames each ("X\n"), one frame per write, taking turns, each
 * at most two frames ahead of what has been delivered (so the relay reads them one by one). A
 * healthy subscriber must get every frame of every publisher, in each publisher's order, with no
 * 15-second standstill and within 60 s, while the stuck reader stays connected (the relay may cut
 * it under the slow policy).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostile.h"

#define PUBS 4
#define FRAMES 50000 /* per publisher: 200,000 in all, three times the index */
/*
 * First a bulk publisher sends 6 MiB of the same frames in large writes: the stuck reader's socket
 * (a few MiB on loopback) fills up, and the rest stays pending for it, under --max-queue.
 */
#define BULK (3u << 20)
#define NPUB (PUBS + 1) /* the bulk publisher is number PUBS */
/*
 * Each publisher has at most this many frames sent and not yet at the healthy subscriber, so that
 * the relay reads them nearly one by one (a receive taking many frames at once makes one index
 * record of them all).
 */
#define WINDOW 2
#define STUCK_RCVBUF 4096
#define RUN_MS 60000
/* Nothing moving for this long is a stall no correct relay has, even under the sanitizers. */
#define STALL_MS 15000

/*
 * Frame k of publisher p is the two bytes "X\n" with X = '!' + 16 p + k % 16 (at most 'p'): the
 * publisher and (modulo 16) the position show in every frame, so a lost, duplicated or reordered
 * frame shows.
 */
static uint8_t frame_byte(int p, uint32_t k)
{
    return (uint8_t)('!' + 16 * p + (int)(k % 16));
}

struct tiny_check {
    uint32_t want[NPUB];
    uint32_t got[NPUB];
    uint64_t bytes;
    bool odd; /* the last byte seen was a frame's first */
    char err[160];
};

static bool tiny_feed(struct tiny_check *c, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && !c->err[0]; i++, c->bytes++) {
        if (c->odd) {
            if (p[i] != '\n')
                snprintf(c->err, sizeof(c->err), "byte %llu: 0x%02x where a frame's '\\n' was due",
                         (unsigned long long)c->bytes, p[i]);
            c->odd = false;
            continue;
        }
        int pub = (p[i] - '!') / 16;
        if (p[i] < '!' || pub >= NPUB) {
            snprintf(c->err, sizeof(c->err), "byte %llu: 0x%02x is no frame of ours",
                     (unsigned long long)c->bytes, p[i]);
        } else if (c->got[pub] >= c->want[pub]) {
            snprintf(c->err, sizeof(c->err), "publisher %d: more than its %u frames", pub,
                     c->want[pub]);
        } else if (p[i] != frame_byte(pub, c->got[pub])) {
            snprintf(c->err, sizeof(c->err),
                     "publisher %d: frame %u is 0x%02x, want 0x%02x (lost, duplicated or "
                     "reordered frames)",
                     pub, c->got[pub], p[i], frame_byte(pub, c->got[pub]));
        }
        if (!c->err[0])
            c->got[pub]++;
        c->odd = true;
    }
    return !c->err[0];
}

struct scene {
    struct hx_peer peers[NPUB + 2]; /* publishers, the bulk publisher, healthy, stuck */
    struct tiny_check check;
};

static bool feed(void *arg, const uint8_t *p, size_t n)
{
    return tiny_feed(arg, p, n);
}

/* Lets each interleaving publisher send up to WINDOW frames beyond what has been delivered. */
static void tick(void *arg)
{
    struct scene *sc = arg;
    for (int p = 0; p < PUBS; p++) {
        uint32_t allowed = sc->check.got[p] + WINDOW;
        if (allowed > sc->check.want[p])
            allowed = sc->check.want[p];
        if (2 * (size_t)allowed > sc->peers[p].out_len)
            sc->peers[p].out_len = 2 * (size_t)allowed;
    }
}

static bool done(void *arg)
{
    struct scene *sc = arg;
    if (sc->check.err[0] || sc->peers[NPUB].closed)
        return true;
    for (int p = 0; p < NPUB; p++)
        if (sc->check.got[p] < sc->check.want[p])
            return false;
    return true;
}

static uint8_t *frames_of(int p, uint32_t n)
{
    uint8_t *d = malloc(2 * (size_t)n);
    assert_non_null(d);
    for (uint32_t k = 0; k < n; k++) {
        d[2 * k] = frame_byte(p, k);
        d[2 * k + 1] = '\n';
    }
    return d;
}

/* Drives everyone until the healthy subscriber has what check.want says; fails with a diagnosis. */
static void run_phase(struct rc_server *s, struct scene *sc, size_t mark, const char *phase)
{
    struct hx_pump_opts po = {
        .done = done, .tick = tick, .arg = sc, .timeout_ms = RUN_MS, .stall_ms = STALL_MS};
    const char *why;
    int64_t t0 = rc_now_ms();
    bool ok = hx_pump(s, sc->peers, NPUB + 2, &po, &why);
    int64_t took = rc_now_ms() - t0;
    hx_expect_alive(s, phase);
    char line[256];
    bool stuck_gone = hx_gone(s, mark, rc_port_of(sc->peers[NPUB + 1].fd), line, sizeof(line));
    if (sc->check.err[0])
        fail_msg("%s: the healthy subscriber got a wrong frame: %s", phase, sc->check.err);
    if (sc->peers[NPUB].closed)
        fail_msg("%s: the healthy subscriber was disconnected after %llu bytes", phase,
                 (unsigned long long)sc->check.bytes);
    if (!ok || !done(sc)) {
        size_t sent = 0;
        for (int p = 0; p < PUBS; p++)
            sent += sc->peers[p].out_done / 2;
        rc_dump(s);
        fail_msg("%s: %s after %lld ms: the healthy subscriber got %u + %u + %u + %u of %d x %d "
                 "interleaved frames (the publishers sent %zu) and %u of %u bulk frames; the "
                 "stuck reader %s",
                 phase, strcmp(why, "stall") ? why : "nothing moved for 15 s", (long long)took,
                 sc->check.got[0], sc->check.got[1], sc->check.got[2], sc->check.got[3], PUBS,
                 FRAMES, sent, sc->check.got[PUBS], sc->check.want[PUBS],
                 stuck_gone ? "was disconnected" : "is still connected");
    }
    print_message("%s: done in %lld ms; the stuck reader %s\n", phase, (long long)took,
                  stuck_gone ? line : "is still connected");
}

static void test_interleaved_tiny_frames_with_stuck_reader(void **state)
{
    struct rc_server *s = rc_start(NULL);
    struct scene *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    uint8_t *data[NPUB];
    for (int p = 0; p < PUBS; p++)
        data[p] = frames_of(p, FRAMES);
    data[PUBS] = frames_of(PUBS, BULK);

    int healthy = rc_connect(s);
    int stuck = rc_connect_buf(s, STUCK_RCVBUF);
    /* Publishers read (and drop) what they are sent: only the stuck reader falls behind. */
    for (int p = 0; p < NPUB; p++)
        sc->peers[p] = (struct hx_peer){.fd = rc_connect(s), .read = true};
    sc->peers[NPUB] =
        (struct hx_peer){.fd = healthy, .read = true, .on_data = feed, .data_arg = &sc->check};
    sc->peers[NPUB + 1] = (struct hx_peer){.fd = stuck};
    size_t mark = rc_log_mark(s);

    /* 1: the bulk, in large writes, fills the stuck reader's socket. */
    sc->peers[PUBS].out = data[PUBS];
    sc->peers[PUBS].out_len = 2 * (size_t)BULK;
    sc->check.want[PUBS] = BULK;
    run_phase(s, sc, mark, "bulk phase");

    /*
     * 2: one frame per write, the publishers taking turns, each at most WINDOW frames ahead of
     * the healthy subscriber (tick() raises out_len), so that their frames interleave.
     */
    for (int p = 0; p < PUBS; p++) {
        sc->peers[p].out = data[p];
        sc->peers[p].out_len = 0;
        sc->peers[p].chunk = 2;
        sc->check.want[p] = FRAMES;
    }
    run_phase(s, sc, mark, "interleaved phase");

    for (int p = 0; p < NPUB; p++)
        free(data[p]);
    free(sc);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_interleaved_tiny_frames_with_stuck_reader, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
