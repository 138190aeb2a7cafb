/* Hostage tests' shared driver: see hostage.h. */
#include "hostage.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

/* The poll loop runs about once per read or per millisecond: this is far above any real run. */
#define MAX_ROUNDS 50000000L
/* Longest poll wait, so a late offender step or a cut-off is noticed promptly. */
#define MAX_WAIT_US 20000

/*
 * Everything is static: a failing check leaves hg_run by longjmp, and nothing may leak then (the
 * sanitizer build runs these tests too).
 */
static uint8_t stream[(size_t)HG_FULL_FRAMES * HG_FRAME];
static bool stream_built;
static int64_t sent_at[HG_FULL_FRAMES];         /* -1 until the publisher's socket took the frame */
static int32_t lat_us[HG_SUBS][HG_FULL_FRAMES]; /* -1 until received */
static int64_t samples[(size_t)HG_SUBS * HG_FULL_FRAMES];
static uint8_t scratch[256 * 1024];
static uint8_t offender_scratch[64 * 1024];

int64_t hg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Frame k is the line "h<k, 8 digits> <filler>\n" of exactly HG_FRAME bytes. */
static void stream_build(void)
{
    if (stream_built)
        return;
    for (uint32_t k = 0; k < HG_FULL_FRAMES; k++)
        rc_make_line((char *)stream + (size_t)k * HG_FRAME, HG_FRAME, "h", k);
    stream_built = true;
}

long hg_offender_read(int fd, size_t cap)
{
    if (cap > sizeof(offender_scratch))
        cap = sizeof(offender_scratch);
    return (long)rc_recv_now(fd, offender_scratch, cap);
}

/* Fails the test, showing where subscriber i's bytes first differ from the stream. */
static void report_mismatch(int i, int fd, size_t got, const uint8_t *in, size_t n)
{
    size_t d = 0;
    while (d < n && in[d] == stream[got + d])
        d++;
    size_t at = got + d;
    size_t show = n - d < 24 ? n - d : 24;
    fail_msg("healthy subscriber %d (port %d): byte %zu (frame %zu, offset %zu) differs: got "
             "\"%.*s\", want \"%.*s\"",
             i, rc_port_of(fd), at, at / HG_FRAME, at % HG_FRAME, (int)show, (const char *)in + d,
             (int)show, (const char *)stream + at);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0 < q <= 1) of n sorted samples. */
static int64_t percentile(const int64_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/*
 * Fills the latency figures: every (subscriber, frame) pair whose frame was sent; a frame not
 * received by end_us counts as received then (a lower bound, flagged).
 */
static void latency_figures(size_t frames, int64_t end_us, struct hg_result *res)
{
    size_t n = 0;
    for (int i = 0; i < HG_SUBS; i++) {
        for (size_t k = 0; k < frames; k++) {
            if (sent_at[k] < 0)
                continue;
            if (lat_us[i][k] >= 0) {
                samples[n++] = lat_us[i][k];
            } else {
                samples[n++] = end_us - sent_at[k];
                res->latency_partial = true;
            }
        }
    }
    qsort(samples, n, sizeof(samples[0]), cmp64);
    res->p50_us = percentile(samples, n, 0.50);
    res->p99_us = percentile(samples, n, 0.99);
    res->max_us = n ? samples[n - 1] : 0;
}

/* Reads what subscriber i has, checks it against the stream and records frame latencies. */
static void sub_read(int i, int fd, size_t *got, size_t total, int64_t *done_at)
{
    ssize_t n = rc_recv_now(fd, scratch, sizeof(scratch));
    if (n == 0)
        return;
    if (n < 0)
        fail_msg("healthy subscriber %d (port %d) was disconnected after %zu of %zu bytes", i,
                 rc_port_of(fd), *got, total);
    if (*got + (size_t)n > total)
        fail_msg("healthy subscriber %d (port %d) received %zu bytes, more than the %zu sent", i,
                 rc_port_of(fd), *got + (size_t)n, total);
    if (memcmp(scratch, stream + *got, (size_t)n) != 0)
        report_mismatch(i, fd, *got, scratch, (size_t)n);
    int64_t now = hg_now_us();
    for (size_t k = *got / HG_FRAME; (k + 1) * HG_FRAME <= *got + (size_t)n; k++)
        lat_us[i][k] = (int32_t)(now - sent_at[k]);
    *got += (size_t)n;
    if (*got == total)
        *done_at = now;
}

void hg_run(enum hg_mode mode, const struct hg_offender *off, int64_t cutoff_ms,
            struct hg_result *res)
{
    stream_build();
    const size_t frames = mode == HG_FULL_SPEED ? HG_FULL_FRAMES : HG_RATE_FRAMES;
    const size_t total = frames * HG_FRAME;
    const int64_t period_us = 1000000 / HG_RATE;
    memset(res, 0, sizeof(*res));
    res->total = total;
    for (size_t k = 0; k < frames; k++)
        sent_at[k] = -1;
    for (int i = 0; i < HG_SUBS; i++)
        for (size_t k = 0; k < frames; k++)
            lat_us[i][k] = -1;

    struct rc_server *s = rc_start(NULL);
    int subs[HG_SUBS];
    size_t got[HG_SUBS] = {0};
    int64_t done_at[HG_SUBS] = {0};
    rc_connect_many(s, subs, HG_SUBS);
    int pub = rc_connect(s);
    int64_t off_next = INT64_MAX;
    if (off) {
        off->ops->start(off->state, s, hg_now_us());
        off_next = 0;
    }

    const int64_t t0 = hg_now_us();
    const int64_t cut = t0 + cutoff_ms * 1000;
    if (mode == HG_FIXED_RATE) {
        for (size_t k = 0; k < frames; k++)
            sent_at[k] = t0 + (int64_t)k * period_us; /* intended send times */
    }
    size_t sent = 0;
    int done = 0;
    int64_t now = t0;
    struct pollfd pfd[1 + HG_SUBS];
    for (long round = 0; round < MAX_ROUNDS && done < HG_SUBS; round++) {
        now = hg_now_us();
        if (now >= cut)
            break;
        if (off && now >= off_next)
            off_next = off->ops->step(off->state, s, now);

        /* The publisher: everything at full speed; at a fixed rate, every frame now due. */
        size_t due = total;
        int64_t next_due = INT64_MAX;
        if (mode == HG_FIXED_RATE) {
            size_t k = (size_t)((now - t0) / period_us) + 1;
            due = (k < frames ? k : frames) * HG_FRAME;
            if (k < frames)
                next_due = t0 + (int64_t)k * period_us;
        }
        if (sent < due) {
            size_t n = rc_send_some(pub, stream + sent, due - sent);
            if (mode == HG_FULL_SPEED) {
                int64_t at = hg_now_us();
                for (size_t k = sent / HG_FRAME; (k + 1) * HG_FRAME <= sent + n; k++)
                    sent_at[k] = at;
            }
            sent += n;
        }

        pfd[0] = (struct pollfd){.fd = pub, .events = sent < due ? POLLOUT : 0};
        for (int i = 0; i < HG_SUBS; i++)
            pfd[1 + i] = (struct pollfd){.fd = subs[i], .events = POLLIN};
        int64_t wake = min64(min64(cut, off_next), min64(next_due, now + MAX_WAIT_US));
        int64_t wait_us = max64(0, wake - hg_now_us());
        struct timespec ts = {.tv_sec = wait_us / 1000000, .tv_nsec = (wait_us % 1000000) * 1000};
        if (ppoll(pfd, 1 + HG_SUBS, &ts, NULL) <= 0)
            continue;
        for (int i = 0; i < HG_SUBS; i++) {
            if (!pfd[1 + i].revents)
                continue;
            bool was_done = got[i] == total;
            sub_read(i, subs[i], &got[i], total, &done_at[i]);
            if (!was_done && got[i] == total)
                done++;
        }
    }
    now = hg_now_us();

    res->complete = done == HG_SUBS;
    res->min_got = total;
    int64_t last = t0;
    for (int i = 0; i < HG_SUBS; i++) {
        if (got[i] < res->min_got)
            res->min_got = got[i];
        last = max64(last, done_at[i]);
    }
    res->elapsed_us = (res->complete ? last : now) - t0;
    latency_figures(frames, now, res);
    if (off)
        off->ops->stop(off->state, res->offender, sizeof(res->offender));

    /* Nothing more than the stream may arrive (the relay sends nothing of its own). */
    if (res->complete) {
        for (int i = 0; i < HG_SUBS; i++)
            sub_read(i, subs[i], &got[i], total, &done_at[i]);
    }
    if (!rc_alive(s)) {
        rc_dump(s);
        fail_msg("the server died during the run");
    }
    for (int i = 0; i < HG_SUBS; i++)
        rc_close(subs[i]);
    rc_close(pub);

    /* Stopped now rather than at teardown, so idle servers do not pile up; same check. */
    rc_signal(s, SIGTERM);
    int st = rc_wait_exit(s, 15000);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("the server did not exit 0 within 15 s of SIGTERM after the run (status 0x%x)",
                 st);
    }
}

static void print_run(const char *what, const char *mode, const char *phase,
                      const struct hg_result *r)
{
    print_message("hostage %s, %s, %s: %s in %.3f s (%zu of %zu bytes at the least advanced "
                  "healthy subscriber); latency p50 %.2f ms, p99 %s%.2f ms, max %.2f ms%s%s\n",
                  what, mode, phase, r->complete ? "delivered" : "NOT delivered",
                  (double)r->elapsed_us / 1e6, r->min_got, r->total, (double)r->p50_us / 1e3,
                  r->latency_partial ? ">= " : "", (double)r->p99_us / 1e3, (double)r->max_us / 1e3,
                  r->offender[0] ? "; offender: " : "", r->offender);
}

/* Appends a printf-style note to the summary of the attempts. */
static void note(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

void hg_check_full_speed(const struct hg_offender *off)
{
    const char *name = off->ops->name;
    char summary[512] = "";
    int64_t best_us = INT64_MAX; /* the fastest baseline so far: load only ever slows a run */
    for (int attempt = 1; attempt <= HG_ATTEMPTS; attempt++) {
        struct hg_result base, with;
        hg_run(HG_FULL_SPEED, NULL, 60000, &base);
        print_run(name, "full speed", "without", &base);
        if (!base.complete)
            fail_msg("without any offender the healthy subscribers got only %zu of %zu bytes in "
                     "%.1f s: the relay or the machine is too slow for this test to mean anything",
                     base.min_got, base.total, (double)base.elapsed_us / 1e6);
        best_us = min64(best_us, base.elapsed_us);
        const double best_s = (double)best_us / 1e6;

        const int64_t bound_us = max64(HG_FULL_FLOOR_MS * 1000LL, HG_FACTOR * best_us);
        const double bound_s = (double)bound_us / 1e6;
        /* Past the bound the attempt has failed: run a little longer only to show how badly. */
        const int64_t cutoff_ms = max64(bound_us / 1000 + 2000, min64(3 * bound_us / 1000, 20000));
        hg_run(HG_FULL_SPEED, off, cutoff_ms, &with);
        print_run(name, "full speed", "with", &with);
        print_message("hostage %s, full speed, attempt %d: bound max(%d ms, %d x %.3f s) = %.3f "
                      "s\n",
                      name, attempt, HG_FULL_FLOOR_MS, HG_FACTOR, best_s, bound_s);
        if (with.complete && with.elapsed_us <= bound_us)
            return;
        if (with.complete)
            note(summary, sizeof(summary), "; %.3f s against %.3f s (bound %.3f s)",
                 (double)with.elapsed_us / 1e6, best_s, bound_s);
        else
            note(summary, sizeof(summary),
                 "; %zu of %zu bytes in %.3f s against all in %.3f s (bound %.3f s)", with.min_got,
                 with.total, (double)with.elapsed_us / 1e6, best_s, bound_s);
    }
    fail_msg("with %s, the healthy subscribers are slowed in every attempt (with it; fastest "
             "without it)%s: the offender holds them hostage",
             name, summary);
}

void hg_check_fixed_rate(const struct hg_offender *off)
{
    const char *name = off->ops->name;
    const int64_t schedule_ms = (int64_t)HG_RATE_FRAMES * 1000 / HG_RATE;
    char summary[512] = "";
    int64_t best_us = INT64_MAX; /* the lowest baseline p99 so far: load only ever raises it */
    for (int attempt = 1; attempt <= HG_ATTEMPTS; attempt++) {
        struct hg_result base, with;
        hg_run(HG_FIXED_RATE, NULL, schedule_ms + 20000, &base);
        print_run(name, "fixed rate", "without", &base);
        if (!base.complete)
            fail_msg("without any offender the healthy subscribers got only %zu of %zu bytes: the "
                     "relay or the machine is too slow for this test to mean anything",
                     base.min_got, base.total);
        best_us = min64(best_us, base.p99_us);
        const double best_ms = (double)best_us / 1e3;

        const int64_t bound_us = max64(HG_RATE_FLOOR_MS * 1000LL, HG_FACTOR * best_us);
        const double bound_ms = (double)bound_us / 1e3;
        const int64_t cutoff_ms = schedule_ms + max64(5000, 2 * bound_us / 1000);
        hg_run(HG_FIXED_RATE, off, cutoff_ms, &with);
        print_run(name, "fixed rate", "with", &with);
        print_message("hostage %s, fixed rate, attempt %d: p99 bound max(%d ms, %d x %.2f ms) = "
                      "%.2f ms\n",
                      name, attempt, HG_RATE_FLOOR_MS, HG_FACTOR, best_ms, bound_ms);
        if (with.complete && with.p99_us <= bound_us)
            return;
        if (with.complete)
            note(summary, sizeof(summary), "; p99 %.2f ms against %.2f ms (bound %.2f ms)",
                 (double)with.p99_us / 1e3, best_ms, bound_ms);
        else
            note(summary, sizeof(summary),
                 "; %zu of %zu bytes %.1f s after the schedule ended, p99 >= %.2f ms against "
                 "%.2f ms (bound %.2f ms)",
                 with.min_got, with.total, (double)(cutoff_ms - schedule_ms) / 1e3,
                 (double)with.p99_us / 1e3, best_ms, bound_ms);
    }
    fail_msg("with %s, the healthy subscribers' latency is raised in every attempt (with it; "
             "lowest without it)%s: the offender holds them hostage",
             name, summary);
}

int hg_main(int argc, char **argv, const struct CMUnitTest *tests, size_t n)
{
    int rc = rc_init();
    if (rc)
        return rc;
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const char *name = strrchr(argv[0], '/');
    return _cmocka_run_group_tests(name ? name + 1 : argv[0], tests, n, NULL, NULL);
}
