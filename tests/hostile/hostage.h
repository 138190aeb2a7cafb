/*
 * Hostage tests: one misbehaving reader (the offender) must not slow the healthy ones.
 *
 * DESIGN.md principle 4: a publisher is read while at least one receiver of its frames keeps up,
 * so a client that stops, trickles, reads slowly or reconnects falls behind and meets the slow
 * policy (--max-queue) instead of pacing everyone. Each test program drives one offender through
 * the two checks below. Each compares a pair of runs, each on a fresh server at default options:
 * without the offender (the baseline), then with it. The bounds are relative to the baseline (the
 * sanitizer build is several times slower) with an absolute floor for timer noise; a check fails
 * when HG_ATTEMPTS runs with the offender in a row break its bound (see HG_ATTEMPTS).
 *
 * - Full speed: one publisher sends HG_FULL_FRAMES frames of HG_FRAME bytes (6 MiB, under the
 *   default 8 MiB --max-queue, so no correct relay has a reason to cut a healthy subscriber) as
 *   fast as the relay takes them. Asserts elapsed(with) <= max(HG_FULL_FLOOR_MS, HG_FACTOR x
 *   elapsed(without)), elapsed being the time from the first send to the last byte at the last
 *   healthy subscriber.
 * - Fixed rate: HG_RATE frames/s of HG_FRAME bytes for HG_RATE_FRAMES frames (5 s). Latency is
 *   measured per frame and per healthy subscriber from the frame's intended send time (its
 *   sequence number times the period: a stalled publisher counts, no coordinated omission) to
 *   the moment the subscriber has read its last byte. Asserts p99(with) <= max(HG_RATE_FLOOR_MS,
 *   HG_FACTOR x p99(without)).
 *
 * In both, HG_SUBS healthy subscribers read everything as fast as they can and must receive every
 * frame, in order, byte-exact, and nothing else; the server must stay alive. Nothing is asserted
 * about the offender: it may be disconnected (--slow-policy disconnect) or simply left behind.
 * Everything runs in the test's one thread, on poll() over all sockets; the offender is stepped
 * from the same loop at the times it asks for.
 */
#ifndef RINGCAST_TEST_HOSTAGE_H
#define RINGCAST_TEST_HOSTAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

struct CMUnitTest;

#define HG_SUBS 20
#define HG_FRAME 1024
#define HG_FULL_FRAMES 6144 /* 6 MiB */
#define HG_RATE 1000        /* frames per second */
#define HG_RATE_FRAMES 5000 /* 5 s */

/* With the offender, a figure may be at most HG_FACTOR times the baseline, or the floor. */
#define HG_FACTOR 5
#define HG_FULL_FLOOR_MS 1000
#define HG_RATE_FLOOR_MS 150
/*
 * A hostage effect shows in every measurement, a burst of load from elsewhere on the machine (the
 * other tests run in parallel) in some. So each check measures up to HG_ATTEMPTS (baseline, with
 * offender) pairs, stops at the first run with the offender within the bound, and fails when none
 * is. The bound uses the best baseline so far (load only ever makes a run slower), so a slow
 * baseline cannot loosen it.
 */
#define HG_ATTEMPTS 3

/* One misbehaving client (or a succession of them). The same state serves every run. */
struct hg_offender_ops {
    const char *name;
    /*
     * Resets the state and connects the offender to s before the publisher starts (now_us:
     * hg_now_us()); called once per run with the offender. Clients made through the harness are
     * tracked, so whatever the offender leaves open is closed at teardown.
     */
    void (*start)(void *state, struct rc_server *s, int64_t now_us);
    /*
     * Does the offender's I/O due at now_us, without blocking; returns the hg_now_us() time at
     * which it next wants to run (INT64_MAX: never). Called at least that often, possibly more.
     */
    int64_t (*step)(void *state, struct rc_server *s, int64_t now_us);
    /* Closes what it still holds. Writes one line about what it did into buf (for the report). */
    void (*stop)(void *state, char *buf, size_t cap);
};

struct hg_offender {
    const struct hg_offender_ops *ops;
    void *state;
};

/* The figures of one measured run. */
struct hg_result {
    bool complete;        /* every healthy subscriber got every frame before the cut-off */
    size_t min_got;       /* bytes received by the least advanced healthy subscriber */
    size_t total;         /* bytes each healthy subscriber should receive */
    int64_t elapsed_us;   /* first send to the last byte at the last subscriber (or the cut-off) */
    int64_t p50_us;       /* latency percentiles over every (subscriber, frame) pair */
    int64_t p99_us;       /* (fixed rate: from the intended send time; full speed: from the */
    int64_t max_us;       /*  moment the publisher's socket took the frame's last byte) */
    bool latency_partial; /* frames not delivered by the cut-off were counted at the cut-off, so
                             the percentiles are lower bounds */
    char offender[160];   /* what the offender did (its stop() line), empty without one */
};

enum hg_mode { HG_FULL_SPEED, HG_FIXED_RATE };

/* Monotonic microseconds. */
int64_t hg_now_us(void);

/*
 * One measured run on a fresh server at default options: HG_SUBS healthy subscribers, one
 * publisher and, when off is not NULL, the offender (connected before the first frame). Fails the
 * test at once when a healthy subscriber receives a wrong or extra byte or is disconnected, or the
 * server dies. Stops at cutoff_ms after the first send if the stream has not been delivered by
 * then (the result then says complete = false). Closes every client it made, then stops the server
 * and fails the test unless it exits 0 (the check rc_teardown makes).
 */
void hg_run(enum hg_mode mode, const struct hg_offender *off, int64_t cutoff_ms,
            struct hg_result *res);

/* The full-speed check described above: up to HG_ATTEMPTS (baseline, with offender) pairs. */
void hg_check_full_speed(const struct hg_offender *off);

/* The fixed-rate check described above: up to HG_ATTEMPTS (baseline, with offender) pairs. */
void hg_check_fixed_rate(const struct hg_offender *off);

/*
 * Reads up to cap bytes from an offender's socket without waiting, into a scratch buffer.
 * Returns the bytes read (0 when none are ready), or -1 when the server closed or reset it.
 */
long hg_offender_read(int fd, size_t cap);

/*
 * main() for a hostage program: rc_init(), then the cases. An optional argument is a cmocka test
 * filter (a name or a pattern with * and ?), so one mode can be run alone.
 */
int hg_main(int argc, char **argv, const struct CMUnitTest *tests, size_t n);

#endif
