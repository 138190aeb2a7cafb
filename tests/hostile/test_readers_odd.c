/*
 * Issue 8, readers: clients that leave or read oddly, beside healthy load (odd.h runs each case
 * as a (baseline, with the offender) pair and checks both sides, the counters, the descriptor
 * count and a fresh pair afterwards).
 *
 * - half_close: a subscriber with a backlog at the relay half-closes (shutdown SHUT_WR) and keeps
 *   reading. PROTOCOL.md says "EOF from a client means it is gone", the relay does so and
 *   tests/integration/test_broadcast.c (half_close_is_gone) checks it: the half-closer is
 *   disconnected as eof and what it gets before its EOF is whole frames in order (at most the
 *   last one cut).
 * - reset_mid_send: a subscriber that never reads resets (SO_LINGER 0) while the relay holds a
 *   backlog of over 512 KiB for it: cut as reset, nothing of it left behind.
 * - tiny_mss_subscriber / tiny_mss_publisher: TCP_MAXSEG 536 set before connect (the MSS it
 *   announces): the subscriber must get everything, the publisher's 1500-byte frames (written in
 *   777-byte pieces) must all arrive whole; neither is disconnected.
 * - vanish_*: a publisher sends 64 frames and part of a 65th (checked to be held by the relay),
 *   then, while the healthy stream flows, leaves with a FIN or a reset: nobody ever sees a byte of
 *   the unfinished frame, and the frames of the healthy publisher around it stay intact.
 */
#include "odd.h"

#define TINY_MSS 536
#define STUCK_RCVBUF 4096
#define BIG_BACKLOG (512 * 1024)
#define SCRAPE_EVERY_MS 50

static const struct od_config line_cfg = {.args = NULL, .len32 = false};
static const char *const len32_args[] = {"--framing", "len32", NULL};
static const struct od_config len32_cfg = {.args = len32_args, .len32 = true};

/* ------------------------------------------------------------------ half-close */

struct half {
    size_t idx;
    bool shut;
    double backlog; /* max_client_backlog_bytes when it half-closed */
    int64_t next_scrape;
    struct hx_check check; /* what it receives */
};

static void half_start(struct od_scene *sc)
{
    struct half *h = sc->off->state;
    *h = (struct half){0};
    od_check_init(&h->check, sc->cfg->len32);
    h->check.want['P'] = OD_FRAMES;
    /* A small receive buffer and no reading until it half-closes: the relay has a backlog. */
    int fd = rc_connect_buf(sc->s, 8192);
    sc->off_port = rc_port_of(fd);
    sc->off_conns = 1;
    h->idx = od_add_peer(sc, (struct hx_peer){.fd = fd, .check = &h->check});
}

/* Half the stream delivered and a backlog at the relay: it half-closes, then reads. */
static void half_tick(struct od_scene *sc)
{
    struct half *h = sc->off->state;
    int64_t now = rc_now_ms();
    if (h->shut || od_healthy_frames(sc) < OD_FRAMES / 2 || now < h->next_scrape)
        return;
    struct od_counts c;
    od_counts(sc->s, sc->mport, &c);
    h->next_scrape = now + SCRAPE_EVERY_MS;
    if (c.max_backlog < BIG_BACKLOG && od_healthy_frames(sc) < OD_FRAMES)
        return;
    h->backlog = c.max_backlog;
    struct hx_peer *p = &sc->peers[h->idx];
    assert_int_equal(shutdown(p->fd, SHUT_WR), 0);
    h->shut = true;
    p->read = true;
}

static bool half_done(struct od_scene *sc)
{
    struct half *h = sc->off->state;
    if (h->check.err[0])
        return true;
    char line[256];
    return h->shut && sc->peers[h->idx].closed && od_off_gone(sc, line, sizeof(line));
}

/*
 * Breaks on: a relay that ignores the EOF (never logged as gone: the run times out), counts it
 * as another reason, sends it a
 * damaged or reordered frame, or keeps its backlog (pending_output_bytes stays above 0).
 */
static void half_verdict(struct od_scene *sc)
{
    struct half *h = sc->off->state;
    char got[512];
    hx_check_describe(&h->check, got, sizeof(got));
    print_message("odd half-close: half-closed with a backlog of %.0f bytes at the relay; it "
                  "then received %s\n",
                  h->backlog, got);
    if (h->backlog < BIG_BACKLOG)
        fail_msg("the relay never had a backlog of %d bytes for the half-closer (%.0f): the test "
                 "did not test what it says",
                 BIG_BACKLOG, h->backlog);
    if (h->check.err[0])
        fail_msg("the half-closed reader got a wrong frame: %s", got);
    hx_check_free(&h->check);
}

static struct half half_state;
static const struct od_offender half_off = {
    .name = "a reader that half-closes (shutdown SHUT_WR) with a backlog",
    .reason = "eof",
    .log_end = " disconnected.",
    .start = half_start,
    .tick = half_tick,
    .done = half_done,
    .verdict = half_verdict,
    .state = &half_state,
};

static void test_readers_half_close(void **state)
{
    od_check(&line_cfg, &half_off);
}

/* ------------------------------------------------------------------ reset mid-send */

struct resetter {
    size_t idx;
    bool reset;
    double backlog, waiting; /* max_client_backlog_bytes, clients_waiting_writable then */
    int64_t next_scrape;
};

static void reset_start(struct od_scene *sc)
{
    struct resetter *r = sc->off->state;
    *r = (struct resetter){0};
    int fd = rc_connect_buf(sc->s, STUCK_RCVBUF);
    sc->off_port = rc_port_of(fd);
    sc->off_conns = 1;
    r->idx = od_add_peer(sc, (struct hx_peer){.fd = fd}); /* never reads */
}

/* Once three quarters are delivered and the relay says it holds a big backlog: reset. */
static void reset_tick(struct od_scene *sc)
{
    struct resetter *r = sc->off->state;
    int64_t now = rc_now_ms();
    if (r->reset || od_healthy_frames(sc) < OD_FRAMES / 4 * 3 || now < r->next_scrape)
        return;
    struct od_counts c;
    od_counts(sc->s, sc->mport, &c);
    r->next_scrape = now + SCRAPE_EVERY_MS;
    if ((c.max_backlog < BIG_BACKLOG || c.waiting < 1) && od_healthy_frames(sc) < OD_FRAMES)
        return;
    r->backlog = c.max_backlog;
    r->waiting = c.waiting;
    struct hx_peer *p = &sc->peers[r->idx];
    rc_reset(p->fd);
    p->fd = -1;
    p->closed = true; /* so the pump forgets it */
    r->reset = true;
}

/*
 * Breaks on: a relay that crashes or keeps sending to the dead socket, counts the reset as eof
 * or anything else, leaks its backlog (pending_output_bytes) or descriptor, or waits on it
 * (the healthy subscribers' bound).
 */
static void reset_verdict(struct od_scene *sc)
{
    struct resetter *r = sc->off->state;
    print_message("odd reset mid-send: reset with a backlog of %.0f bytes at the relay, %.0f "
                  "client(s) waiting for room\n",
                  r->backlog, r->waiting);
    if (r->backlog < BIG_BACKLOG || r->waiting < 1)
        fail_msg("the relay never had a backlog of %d bytes for the stuck reader (%.0f, %.0f "
                 "waiting): the test did not test what it says",
                 BIG_BACKLOG, r->backlog, r->waiting);
}

static struct resetter reset_state;
static const struct od_offender reset_off = {
    .name = "a stuck reader that resets (SO_LINGER 0) with a backlog",
    .reason = "reset",
    .log_end = " disconnected.",
    .start = reset_start,
    .tick = reset_tick,
    .verdict = reset_verdict,
    .state = &reset_state,
};

static void test_readers_reset_mid_send(void **state)
{
    od_check(&line_cfg, &reset_off);
}

/* ------------------------------------------------------------------ tiny MSS */

#define MSS_FRAME 1500 /* spans three 536-byte segments */
#define MSS_FRAMES 700 /* about 1 MiB */
#define MSS_CHUNK 777  /* its writes end inside frames */

struct tiny {
    size_t idx;
    int mss; /* what the connection settled on */
    struct hx_check check;
};

static uint8_t mss_stream[(size_t)MSS_FRAME * MSS_FRAMES];

/* Connects with TCP_MAXSEG TINY_MSS and checks the connection really uses it. */
static int tiny_connect(struct od_scene *sc, struct tiny *t)
{
    int fd = od_connect_opts(sc->s, TINY_MSS, 0);
    t->mss = od_mss_of(fd);
    if (t->mss <= 0 || t->mss > TINY_MSS)
        fail_msg("TCP_MAXSEG %d set before connect, but the connection's MSS is %d: the test "
                 "would not test a tiny MSS",
                 TINY_MSS, t->mss);
    sc->off_port = rc_port_of(fd);
    sc->off_conns = 1;
    return fd;
}

static void tiny_sub_start(struct od_scene *sc)
{
    struct tiny *t = sc->off->state;
    *t = (struct tiny){0};
    od_check_init(&t->check, sc->cfg->len32);
    t->check.want['P'] = OD_FRAMES;
    int fd = tiny_connect(sc, t);
    t->idx = od_add_peer(sc, (struct hx_peer){.fd = fd, .read = true, .check = &t->check});
}

static bool tiny_sub_done(struct od_scene *sc)
{
    struct tiny *t = sc->off->state;
    return t->check.err[0] || sc->peers[t->idx].closed || hx_check_complete(&t->check);
}

/* Breaks on: frames damaged or reordered in small segments, the reader cut or left behind. */
static void tiny_sub_verdict(struct od_scene *sc)
{
    struct tiny *t = sc->off->state;
    char got[512];
    hx_check_describe(&t->check, got, sizeof(got));
    print_message("odd tiny MSS subscriber: MSS %d; it received %s\n", t->mss, got);
    if (!hx_check_complete(&t->check))
        fail_msg("the subscriber with MSS %d did not get every frame intact: %s", t->mss, got);
    hx_check_free(&t->check);
}

static struct tiny tiny_state;
static const struct od_offender tiny_sub_off = {
    .name = "a subscriber with TCP_MAXSEG 536",
    .start = tiny_sub_start,
    .done = tiny_sub_done,
    .verdict = tiny_sub_verdict,
    .state = &tiny_state,
};

static void test_readers_tiny_mss_subscriber(void **state)
{
    od_check(&line_cfg, &tiny_sub_off);
}

static void tiny_pub_start(struct od_scene *sc)
{
    struct tiny *t = sc->off->state;
    *t = (struct tiny){0};
    for (uint32_t k = 0; k < MSS_FRAMES; k++)
        od_frame(mss_stream + (size_t)k * MSS_FRAME, sc->cfg->len32, MSS_FRAME, 'M', k);
    int fd = tiny_connect(sc, t);
    /* It reads (and drops) the healthy stream, as a publisher that is also a receiver. */
    t->idx = od_add_peer(sc, (struct hx_peer){.fd = fd,
                                              .out = mss_stream,
                                              .out_len = sizeof(mss_stream),
                                              .chunk = MSS_CHUNK,
                                              .read = true});
    sc->want['M'] = MSS_FRAMES;
    sc->off_frames = MSS_FRAMES;
    sc->off_bytes = sizeof(mss_stream);
}

static bool tiny_pub_done(struct od_scene *sc)
{
    struct tiny *t = sc->off->state;
    struct hx_peer *p = &sc->peers[t->idx];
    return p->closed || p->out_done == p->out_len;
}

/* The healthy subscribers' checks and the counters do the rest: a frame assembled wrongly from
 * small segments fails them. */
static void tiny_pub_verdict(struct od_scene *sc)
{
    struct tiny *t = sc->off->state;
    struct hx_peer *p = &sc->peers[t->idx];
    print_message("odd tiny MSS publisher: MSS %d; sent %zu of %zu bytes\n", t->mss, p->out_done,
                  p->out_len);
    if (p->closed || p->out_done != p->out_len)
        fail_msg("the publisher with MSS %d could not send everything (%zu of %zu bytes)", t->mss,
                 p->out_done, p->out_len);
}

static const struct od_offender tiny_pub_line_off = {
    .name = "a publisher with TCP_MAXSEG 536 (line)",
    .start = tiny_pub_start,
    .done = tiny_pub_done,
    .verdict = tiny_pub_verdict,
    .state = &tiny_state,
};

static const struct od_offender tiny_pub_len32_off = {
    .name = "a publisher with TCP_MAXSEG 536 (len32)",
    .start = tiny_pub_start,
    .done = tiny_pub_done,
    .verdict = tiny_pub_verdict,
    .state = &tiny_state,
};

static void test_readers_tiny_mss_publisher_line(void **state)
{
    od_check(&line_cfg, &tiny_pub_line_off);
}

static void test_readers_tiny_mss_publisher_len32(void **state)
{
    od_check(&len32_cfg, &tiny_pub_len32_off);
}

/* ------------------------------------------------------------------ vanishing mid-frame */

#define VANISH_FRAME 1000
#define VANISH_FRAMES 64

struct vanish {
    size_t cut_at; /* bytes of frame VANISH_FRAMES it sends */
    bool rst;      /* leaves with a reset; else with a FIN (shutdown), reading until the end */
    size_t idx;
    bool gone;
    double held; /* partial_frame_bytes while only its unfinished frame was incomplete */
};

static uint8_t vanish_buf[(size_t)VANISH_FRAME * (VANISH_FRAMES + 1)];

/*
 * Sends the complete frames and the start of the next one before the healthy stream starts, and
 * waits (bounded) until the relay has taken them all: its frames are counted and it holds the
 * unfinished one (the only incomplete frame at that moment).
 */
static void vanish_start(struct od_scene *sc)
{
    struct vanish *v = sc->off->state;
    v->gone = false;
    v->held = 0;
    for (uint32_t k = 0; k <= VANISH_FRAMES; k++)
        od_frame(vanish_buf + (size_t)k * VANISH_FRAME, sc->cfg->len32, VANISH_FRAME, 'V', k);
    int fd = rc_connect(sc->s);
    sc->off_port = rc_port_of(fd);
    sc->off_conns = 1;
    sc->want['V'] = VANISH_FRAMES;
    sc->off_frames = VANISH_FRAMES;
    sc->off_bytes = (uint64_t)VANISH_FRAMES * VANISH_FRAME;
    rc_send(fd, vanish_buf, (size_t)VANISH_FRAMES * VANISH_FRAME + v->cut_at);
    v->idx = od_add_peer(sc, (struct hx_peer){.fd = fd, .read = true});
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    struct od_counts c;
    for (int i = 0; i < 10000; i++) {
        od_counts(sc->s, sc->mport, &c);
        if ((c.frames_in == VANISH_FRAMES && c.partial > 0) || rc_now_ms() >= deadline)
            break;
        od_nap(20);
    }
    if (c.frames_in != VANISH_FRAMES || c.partial <= 0)
        fail_msg("after %d frames and %zu bytes of the next, the relay counts %.0f frames and "
                 "holds %.0f bytes of incomplete frames",
                 VANISH_FRAMES, v->cut_at, c.frames_in, c.partial);
    v->held = c.partial;
}

/* Half the healthy stream delivered: it leaves, mid-stream. */
static void vanish_tick(struct od_scene *sc)
{
    struct vanish *v = sc->off->state;
    if (v->gone || od_healthy_frames(sc) < OD_FRAMES / 2)
        return;
    struct hx_peer *p = &sc->peers[v->idx];
    if (v->rst) {
        rc_reset(p->fd);
        p->fd = -1;
        p->closed = true;
    } else {
        assert_int_equal(shutdown(p->fd, SHUT_WR), 0);
    }
    v->gone = true;
}

static bool vanish_done(struct od_scene *sc)
{
    struct vanish *v = sc->off->state;
    char line[256];
    return v->gone && sc->peers[v->idx].closed && od_off_gone(sc, line, sizeof(line));
}

/*
 * The healthy subscribers' checks carry the verdict: a relay that relays any byte of the
 * unfinished frame (on the close, or merged into the next frame) breaks the framing of their
 * stream ('V' #64 is not wanted, or the next 'P' frame is damaged); one that drops or reorders
 * the healthy publisher's frames around it fails their order. The counters: only the 64 complete
 * frames counted, partial_frame_bytes back to 0, the right reason.
 */
static void vanish_verdict(struct od_scene *sc)
{
    struct vanish *v = sc->off->state;
    print_message("odd vanish: the relay held %.0f bytes for its unfinished frame (%zu bytes "
                  "sent) before it left with a %s\n",
                  v->held, v->cut_at, v->rst ? "reset" : "FIN");
}

static struct vanish vanish_state;

static void run_vanish(const struct od_config *cfg, const struct od_offender *off, size_t cut_at,
                       bool rst)
{
    vanish_state = (struct vanish){.cut_at = cut_at, .rst = rst};
    od_check(cfg, off);
}

/* What the four vanishing publishers share: they differ in framing, where they stop, and how. */
#define VANISH_OPS                                                                                 \
    .log_end = " disconnected.", .start = vanish_start, .tick = vanish_tick, .done = vanish_done,  \
    .verdict = vanish_verdict, .state = &vanish_state

static const struct od_offender vanish_line_fin_off = {
    .name = "a publisher that leaves (FIN) mid-frame (line)",
    .reason = "eof",
    VANISH_OPS,
};

static void test_readers_vanish_line_fin(void **state)
{
    run_vanish(&line_cfg, &vanish_line_fin_off, VANISH_FRAME / 2, false);
}

static const struct od_offender vanish_line_rst_off = {
    .name = "a publisher that resets mid-frame (line)",
    .reason = "reset",
    VANISH_OPS,
};

static void test_readers_vanish_line_rst(void **state)
{
    run_vanish(&line_cfg, &vanish_line_rst_off, VANISH_FRAME / 2, true);
}

static const struct od_offender vanish_len32_rst_off = {
    .name = "a publisher that resets mid-payload (len32)",
    .reason = "reset",
    VANISH_OPS,
};

static void test_readers_vanish_len32_rst(void **state)
{
    run_vanish(&len32_cfg, &vanish_len32_rst_off, VANISH_FRAME / 2, true);
}

static const struct od_offender vanish_len32_header_off = {
    .name = "a publisher that leaves (FIN) mid-header (len32)",
    .reason = "eof",
    VANISH_OPS,
};

static void test_readers_vanish_len32_fin_header(void **state)
{
    run_vanish(&len32_cfg, &vanish_len32_header_off, 2, false);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_readers_half_close, od_teardown),
        cmocka_unit_test_teardown(test_readers_reset_mid_send, od_teardown),
        cmocka_unit_test_teardown(test_readers_tiny_mss_subscriber, od_teardown),
        cmocka_unit_test_teardown(test_readers_tiny_mss_publisher_line, od_teardown),
        cmocka_unit_test_teardown(test_readers_tiny_mss_publisher_len32, od_teardown),
        cmocka_unit_test_teardown(test_readers_vanish_line_fin, od_teardown),
        cmocka_unit_test_teardown(test_readers_vanish_line_rst, od_teardown),
        cmocka_unit_test_teardown(test_readers_vanish_len32_rst, od_teardown),
        cmocka_unit_test_teardown(test_readers_vanish_len32_fin_header, od_teardown),
    };
    return hg_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
