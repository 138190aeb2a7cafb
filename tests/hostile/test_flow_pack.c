/*
 * The pack rule (flow.h, docs/PROTOCOL.md "Flow control"): publishers also wait while the pack's
 * pacer (the receiver nine tenths of the way down from the most advanced of the n live clients,
 * never the slowest of three or more; a pure publisher counts at the head) is more than the pack
 * window (max(--max-queue / 4, pace window)) behind the head; a holding pack whose pacer reads
 * less than 64 KiB in three 100 ms ticks is not
 * waited for until the head has moved on by twice --max-queue. Each case runs against the real
 * binary over loopback at --max-queue 4M (pack window 1 MiB), one publisher sending numbered
 * 1 KiB line frames as fast as the relay takes them:
 *
 * - uneven_majority_not_cut: one fast subscriber and four honest readers at about 2 MB/s (16 KiB
 *   every 8 ms slot by the clock, 64 KiB SO_RCVBUF), 8 MiB. With the rule, every subscriber gets
 *   every frame and nobody is cut. Before that, as a control, the same run with
 *   RINGCAST_DISABLE=pack_rule (the leader rule alone: the fast reader leads, the others fall
 *   --max-queue behind it) must cut at least one paced reader, which shows the check can fail;
 *   the control runs first so that a failing check still reports it. Its paced readers are
 *   slower (PACED_OFF_SLOT): the cut then needs no particular speed of the relay (see there), so
 *   it cannot be missed on a loaded machine.
 * - stuck_majority_does_not_stall: three subscribers that never read (4 KiB SO_RCVBUF) are most
 *   of the five receivers; one healthy subscriber must still get 16 MiB within 30 s (the pack
 *   holds for about 300 ms, then is suspended), the stuck ones are cut as slow consumers,
 *   and the relay then relays a frame to a new subscriber.
 * - one_slow_reader_never_sets_pace: two fast subscribers and one honest reader at about 1 MB/s,
 *   8 MiB: the slow one is never the pacer beside two others, so the fast ones have everything
 *   within FAST_BOUND_MS (a relay paced by the slow reader needs 6 s or more) and the slow one is
 *   cut.
 *
 * Everything runs in the test's one thread: hx_pump drives the publisher, and its tick reads the
 * subscribers in turn, at most TURN bytes each a turn, so that the test serves its sockets evenly
 * (hx_pump itself reads a peer up to 16 times before the next, and at --max-queue 4M that alone
 * let one of two fast readers get --max-queue ahead of the other and the relay cut it). Paced
 * readers read on the clock: a token bucket of a slot's bytes every PACE_SLOT_MS, catching up at
 * most PACE_BURST_SLOTS slots after a late tick, so one never reads faster than its rate on
 * average. Stuck subscribers are never touched until the verdict. Every subscriber's stream is
 * checked frame by frame (hx_check). A reader's "disconnected at" time is when it read the end of
 * its stream (EOF or reset), after what its sockets still held. Every wait is bounded in time and
 * every loop in count; the only time bounds asserted are generous upper ones.
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
#include <sys/socket.h>

#include "odd.h"

#define FRAME OD_FRAME /* 1 KiB line frames */
#define MAX_QUEUE "4M"
#define STREAM_FRAMES (8 * 1024) /* 8 MiB */
#define STUCK_FRAMES (16 * 1024) /* 16 MiB */
#define MAX_FRAMES STUCK_FRAMES
#define MAX_SUBS 4 /* of each kind */

/* Paced readers: slot bytes every PACE_SLOT_MS. */
#define PACE_SLOT_MS 8
#define PACED_ON_SLOT (16 * 1024) /* 2 MB/s */
/*
 * In the run without the pack rule, 4 KiB a slot (0.5 MB/s). A paced reader is cut once the head
 * is --max-queue past its cursor, and its cursor is at most what it read plus what its sockets
 * hold (the relay's 1 MiB send buffer and its own receive buffer take about 0.9 MiB): with 8 MiB
 * sent that leaves about 3 MiB to read, so the leader rule cuts it unless the relay takes longer
 * than about 6 s to pass 8 MiB to the fast reader. At 2 MB/s that would be 1.5 s, too close to
 * what a sanitizer build on a loaded machine may take.
 */
#define PACED_OFF_SLOT (4 * 1024)
#define SLOW_SLOT (8 * 1024) /* 1 MB/s: one_slow_reader_never_sets_pace */
#define PACED_RCVBUF (64 * 1024)
/*
 * The fast subscribers too have a fixed receive buffer (128 KiB in effect): with buffers the
 * kernel grows differently (up to tcp_rmem's 6 MiB), two readers served alike could still be
 * MiBs apart in the log, and --max-queue here is only 4 MiB.
 */
#define FAST_RCVBUF (64 * 1024)
/* After a late tick a paced reader catches up at most this many slots (64 ms). */
#define PACE_BURST_SLOTS 8
#define STUCK_RCVBUF 4096

#define RUN_MS 60000       /* uneven_majority_not_cut, one_slow_reader_never_sets_pace */
#define STUCK_RUN_MS 30000 /* stuck_majority_does_not_stall */
#define STALL_MS 15000
/*
 * one_slow_reader_never_sets_pace: the fast subscribers have all 8 MiB within this long. A relay
 * paced by the 1 MB/s reader holds the head within the pack window (1 MiB) of it, so the fast
 * ones would wait about (8 MiB - 1 MiB - its buffers) / 1 MB/s, 6 s or more. Unpaced, 8 MiB
 * takes well under a second even under the sanitizers.
 */
#define FAST_BOUND_MS 4000

/* The publisher's stream: frames 'P' #0.. of FRAME bytes. */
static uint8_t stream[(size_t)MAX_FRAMES * FRAME];
static bool stream_built;

/* Who takes part in a run. */
struct cast {
    const char *what;       /* for messages */
    const char *const *env; /* the server's extra environment, NULL-terminated, or NULL */
    uint32_t frames;        /* the publisher's */
    int fast;               /* subscribers reading as fast as they can */
    int paced;              /* subscribers reading slot bytes every PACE_SLOT_MS */
    size_t slot;            /* their bytes per slot */
    int stuck;              /* subscribers that never read */
    bool stop_at_cut;       /* the run ends when a paced subscriber is cut */
    int run_ms;             /* the run gives up after this long */
};

enum kind { FAST, PACED, STUCK };
static const char *const kind_name[] = {"fast", "paced", "stuck"};

struct reader {
    enum kind kind;
    int fd, port;
    struct hx_check check;
    int64_t slot;    /* PACED: the last slot credited */
    size_t budget;   /* PACED: bytes it may read now */
    bool cut;        /* the server closed or reset it */
    int64_t done_ms; /* from t0: when it had everything, or was cut; 0: not yet */
};

#define MAX_READERS (3 * MAX_SUBS)

struct scene {
    const struct cast *cast;
    struct rc_server *s;
    int mport, idle_fds;
    size_t mark;        /* the log before the first subscriber connected */
    struct hx_peer pub; /* the one peer hx_pump drives */
    struct reader r[MAX_READERS];
    int nr;
    int64_t t0_ms, sent_ms; /* sent_ms: when the publisher's socket took its last byte (from t0) */
    int cuts[3];            /* readers of each kind cut so far */
};

static void build_stream(void)
{
    if (stream_built)
        return;
    for (uint32_t k = 0; k < MAX_FRAMES; k++)
        hx_frame_line(stream + (size_t)k * FRAME, FRAME, 'P', k);
    stream_built = true;
}

/*
 * The readers' side, between rounds of the pump (bounded work): the paced ones are credited
 * their slots, then every reader that may read takes at most TURN bytes in turn, round after
 * round until none gets anything, so that this one thread serves its sockets evenly.
 */
#define TURN (64 * 1024)
#define MAX_TURNS 256
static void readers_tick(void *arg)
{
    struct scene *sc = arg;
    static uint8_t buf[TURN];
    int64_t now = rc_now_ms() - sc->t0_ms;
    int64_t slot = now / PACE_SLOT_MS;
    size_t burst = PACE_BURST_SLOTS * sc->cast->slot;
    for (int i = 0; i < sc->nr; i++) {
        struct reader *r = &sc->r[i];
        if (r->kind != PACED || slot <= r->slot)
            continue;
        int64_t n = slot - r->slot < PACE_BURST_SLOTS ? slot - r->slot : PACE_BURST_SLOTS;
        r->budget += (size_t)n * sc->cast->slot;
        if (r->budget > burst)
            r->budget = burst;
        r->slot = slot;
    }
    for (int turn = 0; turn < MAX_TURNS; turn++) {
        bool moved = false;
        for (int i = 0; i < sc->nr; i++) {
            struct reader *r = &sc->r[i];
            if (r->kind == STUCK || r->cut || r->done_ms || r->check.err[0])
                continue;
            size_t want = r->kind == PACED && r->budget < TURN ? r->budget : TURN;
            if (!want)
                continue;
            ssize_t got = recv(r->fd, buf, want, MSG_DONTWAIT);
            if (got > 0) {
                moved = true;
                if (r->kind == PACED)
                    r->budget -= (size_t)got;
                hx_check_feed(&r->check, buf, (size_t)got); /* an error ends the run */
                if (hx_check_complete(&r->check))
                    r->done_ms = now;
            } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                r->cut = true;
                r->done_ms = now;
                sc->cuts[r->kind]++;
            }
        }
        if (!moved)
            break;
    }
}

static bool scene_done(void *arg)
{
    struct scene *sc = arg;
    if (sc->pub.closed)
        return true;
    if (!sc->sent_ms && sc->pub.out_done == sc->pub.out_len)
        sc->sent_ms = rc_now_ms() - sc->t0_ms;
    bool all = sc->sent_ms != 0;
    for (int i = 0; i < sc->nr; i++) {
        const struct reader *r = &sc->r[i];
        if (r->kind == STUCK)
            continue;
        if (r->check.err[0] || (r->cut && (r->kind == FAST || sc->cast->stop_at_cut)))
            return true;
        all = all && r->done_ms;
    }
    return all;
}

/* Adds a reader of this kind, connected (and registered) now. */
static struct reader *add_reader(struct scene *sc, enum kind kind, int rcvbuf)
{
    assert_true(sc->nr < MAX_READERS);
    struct reader *r = &sc->r[sc->nr++];
    r->kind = kind;
    r->fd = rc_connect_buf(sc->s, rcvbuf);
    r->port = rc_port_of(r->fd);
    od_check_init(&r->check, false);
    r->check.want['P'] = sc->cast->frames;
    return r;
}

/*
 * Starts a server (--max-queue 4M, /metrics, the cast's environment), connects the cast (every
 * subscriber registered before the publisher's first frame) and drives it until the cast's end
 * or its time-out. Returns what hx_pump said; fails at once on a wrong byte or a dead server.
 */
static bool scene_run(struct scene *sc, const struct cast *cast, const char **why)
{
    build_stream();
    for (int i = 0; i < MAX_READERS; i++) /* an earlier run's buffers, before the memset */
        hx_check_free(&sc->r[i].check);
    memset(sc, 0, sizeof(*sc));
    sc->cast = cast;
    assert_true(cast->fast <= MAX_SUBS && cast->paced <= MAX_SUBS && cast->stuck <= MAX_SUBS);
    assert_true(cast->frames <= MAX_FRAMES);
    sc->s = hx_start_metrics_env(&sc->mport, cast->env, "--max-queue", MAX_QUEUE, NULL);
    sc->idle_fds = rc_fd_count(sc->s);
    sc->mark = rc_log_mark(sc->s);
    for (int i = 0; i < cast->stuck; i++)
        add_reader(sc, STUCK, STUCK_RCVBUF); /* never read until the verdict */
    for (int i = 0; i < cast->paced; i++)
        add_reader(sc, PACED, PACED_RCVBUF)->budget = cast->slot; /* slot 0 */
    for (int i = 0; i < cast->fast; i++)
        add_reader(sc, FAST, FAST_RCVBUF);
    /* The publisher reads too (nothing comes: it is the only one), so a cut shows. */
    sc->pub = (struct hx_peer){.fd = rc_connect(sc->s),
                               .out = stream,
                               .out_len = (size_t)cast->frames * FRAME,
                               .read = true};
    sc->t0_ms = rc_now_ms();
    struct hx_pump_opts po = {.done = scene_done,
                              .tick = readers_tick,
                              .arg = sc,
                              .timeout_ms = cast->run_ms,
                              .stall_ms = STALL_MS};
    bool ok = hx_pump(sc->s, &sc->pub, 1, &po, why);
    hx_expect_alive(sc->s, cast->what);
    for (int i = 0; i < sc->nr; i++) {
        if (sc->r[i].check.err[0]) {
            char got[512];
            hx_check_describe(&sc->r[i].check, got, sizeof(got));
            fail_msg("%s: %s subscriber (port %d) got a wrong frame: %s", cast->what,
                     kind_name[sc->r[i].kind], sc->r[i].port, got);
        }
    }
    return ok;
}

/* The readers of one kind, in one line: how far each got and when, for messages and the report. */
static void scene_summary(const struct scene *sc, char *buf, size_t cap)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, cap - off, "publisher sent %zu of %zu bytes%s%lld ms",
                            sc->pub.out_done, sc->pub.out_len, sc->sent_ms ? " by " : ", ",
                            (long long)(sc->sent_ms ? sc->sent_ms : rc_now_ms() - sc->t0_ms));
    for (int i = 0; i < sc->nr && off < cap; i++) {
        const struct reader *r = &sc->r[i];
        if (r->kind == STUCK)
            continue;
        off += (size_t)snprintf(buf + off, cap - off, "; %s %d: %u/%u frames", kind_name[r->kind],
                                i, r->check.got['P'], sc->cast->frames);
        if (off < cap && r->done_ms)
            off += (size_t)snprintf(buf + off, cap - off, ", %s at %lld ms",
                                    r->cut ? "disconnected" : "done", (long long)r->done_ms);
    }
}

/* The latest time a reader of this kind had everything (INT64_MAX when one did not). */
static int64_t kind_done_ms(const struct scene *sc, enum kind kind)
{
    int64_t last = 0;
    for (int i = 0; i < sc->nr; i++) {
        const struct reader *r = &sc->r[i];
        if (r->kind != kind)
            continue;
        if (r->cut || !r->done_ms)
            return INT64_MAX;
        if (r->done_ms > last)
            last = r->done_ms;
    }
    return last;
}

/* Waits (bounded) for reader r's disconnect line and fails unless it says slow consumer. */
static void expect_cut_slow(struct scene *sc, const struct reader *r)
{
    char needle[64], line[256] = "";
    rc_needle(needle, sizeof(needle), r->port, "disconnected");
    if (!rc_log_wait(sc->s, sc->mark, needle, RC_WAIT_MS)) {
        rc_dump(sc->s);
        fail_msg("%s: the %s subscriber on port %d was never logged as disconnected, want \"... "
                 "disconnected (slow consumer).\"",
                 sc->cast->what, kind_name[r->kind], r->port);
    }
    hx_gone(sc->s, sc->mark, r->port, line, sizeof(line));
    if (!strstr(line, " disconnected (slow consumer)."))
        fail_msg("%s: the %s subscriber on port %d: \"%s\", want \"... disconnected (slow "
                 "consumer).\"",
                 sc->cast->what, kind_name[r->kind], r->port, line);
}

/* The disconnects the server counted, with the clients of the run still connected. */
static void expect_slow_cuts(struct scene *sc, double want)
{
    struct od_counts c;
    od_counts(sc->s, sc->mport, &c);
    char disc[256];
    od_describe_disc(&c, disc, sizeof(disc));
    double slow = c.disc[od_reason_index("slow_consumer")];
    if (slow != want || c.disc_total != want)
        fail_msg("%s: disconnects_total %s; want slow_consumer=%.0f and nothing else",
                 sc->cast->what, disc, want);
}

/* Fails unless the publisher and every fast subscriber are still connected. */
static void expect_healthy_connected(struct scene *sc, const char *sum)
{
    if (sc->pub.closed) {
        rc_dump(sc->s);
        fail_msg("%s: the publisher was disconnected (%s)", sc->cast->what, sum);
    }
    if (sc->cuts[FAST]) {
        rc_dump(sc->s);
        fail_msg("%s: %d fast subscriber(s) disconnected; want none (%s)", sc->cast->what,
                 sc->cuts[FAST], sum);
    }
}

/* Closes every client of the run, then the end-of-run checks (odd.h) and SIGTERM. */
static void scene_finish(struct scene *sc)
{
    rc_close(sc->pub.fd);
    for (int i = 0; i < sc->nr; i++)
        rc_close(sc->r[i].fd);
    od_finish(sc->s, sc->mport, sc->idle_fds, false, sc->cast->what);
}

/* One scene at a time; od_teardown() frees its checkers' buffers (od_check_init). */
static struct scene scene;

static void test_uneven_majority_not_cut(void **state)
{
    (void)state;
    struct scene *sc = &scene;
    char sum[1024];
    const char *why;

    /* First the control, on the leader rule alone (slower paced readers: see PACED_OFF_SLOT):
     * the fast reader leads and the paced ones are cut, so the check below can fail. */
    static const char *const env[] = {"RINGCAST_DISABLE=pack_rule", NULL};
    const struct cast off = {.what = "uneven readers, RINGCAST_DISABLE=pack_rule",
                             .env = env,
                             .frames = STREAM_FRAMES,
                             .fast = 1,
                             .paced = 4,
                             .slot = PACED_OFF_SLOT,
                             .stop_at_cut = true,
                             .run_ms = RUN_MS};
    bool ok = scene_run(sc, &off, &why);
    int64_t took = rc_now_ms() - sc->t0_ms;
    scene_summary(sc, sum, sizeof(sum));
    print_message("%s: %s after %lld ms: %s\n", off.what, why, (long long)took, sum);
    expect_healthy_connected(sc, sum);
    if (sc->cuts[PACED] == 0) {
        rc_dump(sc->s);
        fail_msg("%s: no paced subscriber was disconnected (%s after %lld ms: %s); want the "
                 "leader rule alone to cut readers --max-queue behind the fast one, or the check "
                 "with the pack rule could not fail",
                 off.what, why, (long long)took, sum);
    }
    for (int i = 0; i < sc->nr; i++)
        if (sc->r[i].cut)
            expect_cut_slow(sc, &sc->r[i]);
    scene_finish(sc);

    /* Then with the pack rule: the paced readers set the pace, nobody is cut. */
    const struct cast on = {.what = "uneven readers, pack rule on",
                            .frames = STREAM_FRAMES,
                            .fast = 1,
                            .paced = 4,
                            .slot = PACED_ON_SLOT,
                            .stop_at_cut = true,
                            .run_ms = RUN_MS};
    ok = scene_run(sc, &on, &why);
    took = rc_now_ms() - sc->t0_ms;
    scene_summary(sc, sum, sizeof(sum));
    print_message("%s: %s after %lld ms: %s\n", on.what, why, (long long)took, sum);
    expect_healthy_connected(sc, sum);
    if (sc->cuts[PACED]) {
        rc_dump(sc->s);
        fail_msg("%s: %d of the 4 paced (2 MB/s) subscribers disconnected after %lld ms; want "
                 "every subscriber to get all %d frames and none cut (%s)",
                 on.what, sc->cuts[PACED], (long long)took, STREAM_FRAMES, sum);
    }
    if (!ok) {
        rc_dump(sc->s);
        fail_msg("%s: %s after %lld ms (limit %d ms, or nothing moving for %d ms); want every "
                 "subscriber to have all %d frames: %s",
                 on.what, why, (long long)took, RUN_MS, STALL_MS, STREAM_FRAMES, sum);
    }
    if (rc_log_count(sc->s, sc->mark, " disconnected") != 0) {
        rc_dump(sc->s);
        fail_msg("%s: the log shows a disconnect during the run (%s)", on.what, sum);
    }
    expect_slow_cuts(sc, 0);
    double stalls = hx_scrape(sc->s, sc->mport, "ringcast_publisher_stalls_total");
    print_message("%s: fast done at %lld ms, paced at %lld ms; the publisher was paused %.0f "
                  "times\n",
                  on.what, (long long)kind_done_ms(sc, FAST), (long long)kind_done_ms(sc, PACED),
                  stalls);
    scene_finish(sc);
}

static void test_stuck_majority_does_not_stall(void **state)
{
    (void)state;
    struct scene *sc = &scene;
    char sum[1024];
    const char *why;
    const struct cast cast = {.what = "stuck majority",
                              .frames = STUCK_FRAMES,
                              .fast = 1,
                              .stuck = 3,
                              .run_ms = STUCK_RUN_MS};
    bool ok = scene_run(sc, &cast, &why);
    int64_t took = rc_now_ms() - sc->t0_ms;
    scene_summary(sc, sum, sizeof(sum));
    print_message("%s: %s after %lld ms: %s\n", cast.what, why, (long long)took, sum);
    expect_healthy_connected(sc, sum);
    if (!ok) {
        rc_dump(sc->s);
        rc_dump_sockets(sc->s);
        fail_msg("%s: %s after %lld ms; want the healthy subscriber to have all %d frames within "
                 "%d ms beside 3 subscribers that never read (%s)",
                 cast.what, strcmp(why, "stall") ? why : "nothing moved for 15 s", (long long)took,
                 STUCK_FRAMES, STUCK_RUN_MS, sum);
    }

    /* The stuck ones were cut as slow consumers: logged, counted, and their sockets end (EOF or
     * reset) after an intact beginning of the stream. */
    static uint8_t held[8u << 20];
    struct reader *healthy = NULL;
    for (int i = 0; i < sc->nr; i++) {
        struct reader *r = &sc->r[i];
        if (r->kind != STUCK) {
            healthy = r;
            continue;
        }
        expect_cut_slow(sc, r);
        size_t n = rc_recv_until_eof(r->fd, held, sizeof(held), RC_IO_MS);
        if (n == (size_t)-1)
            fail_msg("%s: the stuck subscriber on port %d was logged as cut, but its socket did "
                     "not end within %d ms",
                     cast.what, r->port, RC_IO_MS);
        if (!hx_check_feed(&r->check, held, n < sizeof(held) ? n : sizeof(held)))
            fail_msg("%s: the stuck subscriber on port %d received a wrong stream before its "
                     "cut: %s",
                     cast.what, r->port, r->check.err);
        print_message("%s: the stuck subscriber on port %d received %zu bytes (%u whole frames) "
                      "before its cut\n",
                      cast.what, r->port, n, r->check.got['P']);
    }
    expect_slow_cuts(sc, cast.stuck);

    /* The relay goes on: a new subscriber gets the publisher's next frame, and so does the
     * healthy one. */
    int fresh = rc_connect(sc->s);
    uint8_t f[64];
    size_t n = hx_frame_line(f, sizeof(f), 'Z', 0);
    rc_send(sc->pub.fd, f, n);
    rc_expect(fresh, f, n);
    rc_expect(healthy->fd, f, n);
    rc_close(fresh);
    print_message("%s: the healthy subscriber had all %d frames at %lld ms\n", cast.what,
                  STUCK_FRAMES, (long long)kind_done_ms(sc, FAST));
    scene_finish(sc);
}

static void test_one_slow_reader_never_sets_pace(void **state)
{
    (void)state;
    struct scene *sc = &scene;
    char sum[1024];
    const char *why;
    const struct cast cast = {.what = "one slow reader",
                              .frames = STREAM_FRAMES,
                              .fast = 2,
                              .paced = 1,
                              .slot = SLOW_SLOT,
                              .run_ms = RUN_MS};
    bool ok = scene_run(sc, &cast, &why);
    int64_t took = rc_now_ms() - sc->t0_ms;
    scene_summary(sc, sum, sizeof(sum));
    print_message("%s: %s after %lld ms: %s\n", cast.what, why, (long long)took, sum);
    expect_healthy_connected(sc, sum);
    if (!ok) {
        rc_dump(sc->s);
        fail_msg("%s: %s after %lld ms (limit %d ms); want both fast subscribers to have all %d "
                 "frames and the slow one to be cut or done: %s",
                 cast.what, why, (long long)took, RUN_MS, STREAM_FRAMES, sum);
    }
    int64_t fast = kind_done_ms(sc, FAST);
    if (fast > FAST_BOUND_MS)
        fail_msg("%s: the fast subscribers had all %d frames after %lld ms, want at most %d ms: "
                 "the 1 MB/s reader set the pace (%s)",
                 cast.what, STREAM_FRAMES, (long long)fast, FAST_BOUND_MS, sum);
    if (sc->cuts[PACED] != 1) {
        rc_dump(sc->s);
        fail_msg("%s: the 1 MB/s reader was not disconnected, want it cut as a slow consumer "
                 "once --max-queue behind (%s)",
                 cast.what, sum);
    }
    for (int i = 0; i < sc->nr; i++)
        if (sc->r[i].kind == PACED)
            expect_cut_slow(sc, &sc->r[i]);
    expect_slow_cuts(sc, 1);
    print_message("%s: fast done at %lld ms\n", cast.what, (long long)fast);
    scene_finish(sc);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_uneven_majority_not_cut, od_teardown),
        cmocka_unit_test_teardown(test_stuck_majority_does_not_stall, od_teardown),
        cmocka_unit_test_teardown(test_one_slow_reader_never_sets_pace, od_teardown),
    };
    return hg_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
