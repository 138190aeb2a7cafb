/* The controller: see control.h. */
#include "control.h"

#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_TICK_NS (1000000ULL) /* the controller looks at the workers this often */
#define READY_ROUND_NS (100 * 1000000ULL)
#define READY_TIMEOUT_NS (10 * NS_PER_S)
#define CONNECT_TIMEOUT_NS (10 * NS_PER_S)
#define GRACE_NS (100 * 1000000ULL) /* after the window, still count what arrives this long */

struct controller {
    struct flood *run;
    const struct flood_opts *o;
    const struct procstat *ps;
    struct window *win;
    uint64_t phase_start, phase_end;
    uint64_t connect_progress_at, ready_round_at;
    long connect_seen;
    uint64_t drain_seen_rx, drain_seen_tx, drain_progress_at;
    uint64_t warm_published;
    /* the progress line */
    uint64_t next_progress, last_progress_rx, last_progress_at;
    struct hist prog_hist;
};

static void wake(const struct worker *w)
{
    uint64_t one = 1;
    if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        die("eventfd write: %s", strerror(errno));
}

static void announce(struct controller *k, enum phase ph, uint64_t now)
{
    struct ctl *ctl = &k->run->ctl;
    k->phase_start = now;
    k->drain_progress_at = now;
    ST(ctl->phase, (int)ph);
    ST(ctl->phase_start, now);
    ST(ctl->phase_end, k->phase_end);
    atomic_fetch_add_explicit(&ctl->gen, 1, memory_order_release);
    for (long i = 0; i < k->run->nworkers; i++)
        wake(&k->run->workers[i]);
}

static bool all_acked(const struct flood *run)
{
    unsigned gen = LD(run->ctl.gen);
    for (long i = 0; i < run->nworkers; i++)
        if (atomic_load_explicit(&run->workers[i].acked, memory_order_acquire) != gen)
            return false;
    return true;
}

static uint64_t sum_rx(const struct flood *run)
{
    uint64_t t = 0;
    for (long i = 0; i < run->nworkers; i++)
        t += LD(run->workers[i].rx_total);
    return t;
}

/* The sum over the workers of one of their _Atomic long counters. */
static long sum_long(const struct flood *run, size_t off)
{
    long t = 0;
    for (long i = 0; i < run->nworkers; i++)
        t += atomic_load_explicit((_Atomic long *)((char *)&run->workers[i] + off),
                                  memory_order_relaxed);
    return t;
}

static bool pubs_done(const struct flood *run)
{
    for (long i = 0; i < run->o->pubs; i++) {
        struct conn *c = run_pub(run, i);
        if (LD(c->state) == CS_OPEN && !LD(c->pub->done))
            return false;
    }
    return true;
}

static uint64_t pub_written_total(const struct flood *run)
{
    uint64_t t = 0;
    for (long i = 0; i < run->o->pubs; i++)
        t += LD(run_pub(run, i)->pub->phase_written);
    return t;
}

static uint64_t phase_published(const struct flood *run)
{
    uint64_t total = 0;
    for (long i = 0; i < run->o->pubs; i++)
        total += LD(run_pub(run, i)->pub->phase_written) / run->fmt.wire_pub;
    return total;
}

static bool subs_ready(const struct flood *run)
{
    uint64_t want = LD(run_pub(run, 0)->pub->ready_sent);
    if (want == 0)
        return false;
    for (long i = 0; i < run->o->subs; i++) {
        struct conn *c = &run->conns[i];
        if (LD(c->state) == CS_OPEN && LD(c->ready_seq) != want)
            return false;
    }
    return true;
}

/* Whether subscriber c has everything of the phase: `msgs` messages in all. A verified subscriber
 * in the measurement must also have the last message of every publisher (so a duplicate does not
 * make up for a message still in flight). */
static bool sub_has(const struct flood *run, const struct conn *c, uint64_t msgs, bool measured)
{
    if (LD(c->state) != CS_OPEN)
        return true;
    if (LD(c->rx) - c->base < msgs * run->fmt.wire_sub)
        return false;
    if (measured && c->verify) {
        for (long p = 0; p < run->o->pubs; p++)
            if (LD(c->nexts[p]) < LD(run_pub(run, p)->pub->phase_written) / run->fmt.wire_pub)
                return false;
    }
    return true;
}

static long subs_short(const struct flood *run, uint64_t msgs, bool measured)
{
    long n = 0;
    for (long i = 0; i < run->o->subs; i++)
        if (!sub_has(run, &run->conns[i], msgs, measured))
            n++;
    return n;
}

static void drain_note_progress(struct controller *k, uint64_t now)
{
    uint64_t rx = sum_rx(k->run), tx = pub_written_total(k->run);
    if (rx != k->drain_seen_rx || tx != k->drain_seen_tx) {
        k->drain_seen_rx = rx;
        k->drain_seen_tx = tx;
        k->drain_progress_at = now;
    }
}

static void start_measure(struct controller *k, uint64_t now)
{
    /* The scan of /proc takes a while: do it before the window starts, not inside it. */
    k->win->others0 = procstat_others_cpu_s(k->ps);
    k->win->others0_at = now_ns();
    announce(k, PH_PREP_MEASURE, now);
}

static void finish(struct controller *k, uint64_t now)
{
    struct window *win = k->win;
    win->t_end = now;
    procstat_cpu(k->ps, &win->cpu1, now);
    win->others1 = procstat_others_cpu_s(k->ps);
    win->others1_at = now_ns();
    win->server_rss_end = procstat_server_rss_kb(k->ps);
    win->server_fds_end = procstat_server_fds(k->ps);
    if (k->o->pubs > 0 && k->o->subs > 0) {
        k->phase_end = now + GRACE_NS;
        announce(k, PH_GRACE, now);
    } else {
        announce(k, PH_DONE, now);
    }
}

static void advance_connect(struct controller *k, enum phase ph, uint64_t now)
{
    const struct flood_opts *o = k->o;
    struct flood *run = k->run;
    long connected = sum_long(run, offsetof(struct worker, connected));
    long subs_open = sum_long(run, offsetof(struct worker, subs_open));
    if (connected + subs_open != k->connect_seen) {
        k->connect_seen = connected + subs_open;
        k->connect_progress_at = now;
    }
    if (ph == PH_CONNECT_SUBS && subs_open == o->subs && connected >= o->subs + run->nslow) {
        announce(k, PH_CONNECT_PUBS, now);
    } else if (ph == PH_CONNECT_PUBS && connected == o->subs + o->pubs + run->nslow) {
        if (o->pubs == 0) {
            k->win->others0 = procstat_others_cpu_s(k->ps);
            k->win->others0_at = now = now_ns();
            k->phase_end = now + (uint64_t)(o->duration * 1e9);
            procstat_cpu(k->ps, &k->win->cpu0, now);
            announce(k, PH_HOLD, now);
        } else if (o->subs == 0) {
            announce(k, PH_PREP_WARMUP, now);
        } else {
            ST(run->ctl.ready_round, 1);
            k->ready_round_at = now;
            announce(k, PH_READY, now);
        }
    } else if (ns_since(now, k->connect_progress_at) > CONNECT_TIMEOUT_NS) {
        die("timed out: %ld of %ld connections established, %ld of %ld subscribers ready "
            "after %.0f s without progress%s",
            connected, o->subs + o->pubs + run->nslow, subs_open, o->subs, CONNECT_TIMEOUT_NS / 1e9,
            o->tls ? " (with --tls: no handshake answered; is it a TLS port?)" : "");
    }
}

static void advance_ready(struct controller *k, uint64_t now)
{
    const struct flood_opts *o = k->o;
    struct flood *run = k->run;
    if (subs_ready(run)) {
        announce(k, PH_PREP_WARMUP, now);
    } else if (ns_since(now, k->phase_start) > READY_TIMEOUT_NS) {
        long none = 0;
        for (long i = 0; i < o->subs; i++)
            if (LD(run->conns[i].ready_seq) == 0)
                none++;
        die("subscribers not receiving: after %.0f s, %ld of %ld have received nothing and "
            "%ld not the latest readiness message",
            READY_TIMEOUT_NS / 1e9, none, o->subs, o->subs - none);
    } else if (ns_since(now, k->ready_round_at) >= READY_ROUND_NS) {
        k->ready_round_at = now;
        ST(run->ctl.ready_round, LD(run->ctl.ready_round) + 1);
        wake(run_pub(run, 0)->w);
    }
}

static void advance(struct controller *k, uint64_t now)
{
    const struct flood_opts *o = k->o;
    struct flood *run = k->run;
    bool stop = *run->stop;
    if (!all_acked(run))
        return;
    enum phase ph = run_phase(run);
    uint64_t drain_timeout = (uint64_t)(o->drain_timeout * 1e9);
    switch (ph) {
    case PH_CONNECT_SUBS:
    case PH_CONNECT_PUBS:
        advance_connect(k, ph, now);
        break;
    case PH_READY:
        advance_ready(k, now);
        break;
    case PH_PREP_WARMUP:
        if (o->warmup <= 0) {
            start_measure(k, now);
        } else {
            k->phase_end = now + (uint64_t)(o->warmup * 1e9);
            announce(k, PH_WARMUP, now);
        }
        break;
    case PH_WARMUP:
        if (pubs_done(run)) {
            k->warm_published = phase_published(run);
            k->drain_seen_rx = sum_rx(run);
            announce(k, PH_WARM_DRAIN, now);
        }
        break;
    case PH_WARM_DRAIN:
        drain_note_progress(k, now);
        if (subs_short(run, k->warm_published, false) == 0) {
            start_measure(k, now);
        } else if (ns_since(now, k->drain_progress_at) > drain_timeout) {
            run_error(run,
                      "warm-up did not drain: %ld subscribers short after %.1f s without "
                      "progress; measuring anyway",
                      subs_short(run, k->warm_published, false), o->drain_timeout);
            start_measure(k, now);
        }
        break;
    case PH_PREP_MEASURE:
        now = now_ns();
        k->phase_end = o->count_mode ? UINT64_MAX : now + (uint64_t)(o->duration * 1e9);
        k->last_progress_rx = sum_rx(run);
        k->last_progress_at = now;
        procstat_cpu(k->ps, &k->win->cpu0, now);
        announce(k, PH_MEASURE, now);
        break;
    case PH_MEASURE:
        if (stop || now >= k->phase_end || pubs_done(run)) {
            k->drain_seen_rx = sum_rx(run);
            k->drain_seen_tx = pub_written_total(run);
            announce(k, PH_DRAIN, now);
        }
        break;
    case PH_DRAIN:
        drain_note_progress(k, now);
        if (pubs_done(run) && subs_short(run, phase_published(run), true) == 0) {
            finish(k, now);
        } else if (ns_since(now, k->drain_progress_at) > drain_timeout) {
            if (!pubs_done(run))
                run_error(run, "publishers could not write everything: stalled for %.1f s",
                          o->drain_timeout);
            else
                run_error(run, "%ld subscribers still short after %.1f s without progress",
                          subs_short(run, phase_published(run), true), o->drain_timeout);
            finish(k, now);
        }
        break;
    case PH_HOLD:
        if (stop || now >= k->phase_end)
            finish(k, now);
        break;
    case PH_GRACE:
        if (stop || now >= k->phase_end)
            announce(k, PH_DONE, now);
        break;
    case PH_DONE:
        break;
    }
}

/* How long the controller may sleep: briefly where a phase ends on a condition, longer while
 * the load runs for a fixed time. */
static uint64_t controller_nap(const struct controller *k, uint64_t now)
{
    enum phase ph = run_phase(k->run);
    uint64_t nap = CONTROL_TICK_NS;
    if ((ph == PH_MEASURE && !k->o->count_mode) || ph == PH_HOLD) {
        nap = 20 * CONTROL_TICK_NS;
        if (k->phase_end > now && k->phase_end - now < nap)
            nap = k->phase_end - now;
    }
    if (k->next_progress > now && k->next_progress - now < nap)
        nap = k->next_progress - now;
    return nap;
}

static void progress(struct controller *k, uint64_t now)
{
    const struct flood_opts *o = k->o;
    struct flood *run = k->run;
    /* The measured phase's stamps are taken after this tick's clock was read: ns_since keeps
     * both differences at 0 instead of wrapping. */
    double dt = (double)ns_since(now, k->last_progress_at) / 1e9;
    uint64_t rx = sum_rx(run);
    uint64_t got = rx > k->last_progress_rx ? rx - k->last_progress_rx : 0;
    double deliv = dt > 0 ? (double)got / (double)run->fmt.wire_sub / dt : 0;
    k->last_progress_rx = rx;
    k->last_progress_at = now;
    double elapsed = (double)ns_since(now, k->phase_start) / 1e9;
    char rate[32], p99[32];
    run_fmt_rate(rate, sizeof(rate), deliv);
    hist_reset(&k->prog_hist);
    uint64_t lost = 0;
    for (long i = 0; i < run->nworkers; i++) {
        struct worker *w = &run->workers[i];
        pthread_mutex_lock(&w->snap_mu);
        hist_merge(&k->prog_hist, &w->snap);
        pthread_mutex_unlock(&w->snap_mu);
        lost += LD(w->lost_sofar);
    }
    if (k->prog_hist.total && run_phase(run) >= PH_MEASURE)
        snprintf(p99, sizeof(p99), "%.1f us", (double)hist_percentile(&k->prog_hist, 99) / 1e3);
    else
        snprintf(p99, sizeof(p99), "-");
    long live = sum_long(run, offsetof(struct worker, live));
    fprintf(stderr,
            "flood: %-7s %5.1fs  conns %ld/%ld  %s deliv/s  %.1f MB/s  p99 %s  lost %" PRIu64
            "  errors %" PRIu64 "\n",
            phase_name(run_phase(run)), elapsed, live, o->subs + o->pubs + run->nslow, rate,
            deliv * (double)o->size / 1e6, p99, lost, LD(run->errs.count));
}

void control_run(struct flood *run, const struct procstat *ps, struct window *win)
{
    uint64_t now = now_ns();
    struct controller k = {.run = run, .o = run->o, .ps = ps, .win = win};
    memset(win, 0, sizeof(*win));
    if (hist_init(&k.prog_hist, HIST_HIGHEST) != 0)
        die("out of memory");
    run->epoch = now - 1;
    k.connect_progress_at = now;
    k.phase_start = now;
    k.next_progress = now + NS_PER_S;
    k.last_progress_at = now;
    win->server_rss_start = procstat_server_rss_kb(ps);
    win->server_fds_start = procstat_server_fds(ps);
    ST(run->ctl.phase, PH_CONNECT_SUBS);

    /* Workers take no signals: the main thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (long i = 0; i < run->nworkers; i++)
        if (pthread_create(&run->workers[i].thread, NULL, worker_main, &run->workers[i]) != 0)
            die("cannot start thread %ld: %s", i, strerror(errno));
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    while (run_phase(run) != PH_DONE) {
        now = now_ns();
        if (*run->stop && run_in_setup(run))
            die("interrupted during %s", phase_name(run_phase(run)));
        advance(&k, now);
        if (run_phase(run) == PH_DONE)
            break;
        if (now >= k.next_progress) {
            progress(&k, now);
            k.next_progress += NS_PER_S;
            if (k.next_progress <= now)
                k.next_progress = now + NS_PER_S;
        }
        uint64_t nap = controller_nap(&k, now);
        struct timespec ts = {(time_t)(nap / NS_PER_S), (long)(nap % NS_PER_S)};
        nanosleep(&ts, NULL);
    }
    for (long i = 0; i < run->nworkers; i++)
        pthread_join(run->workers[i].thread, NULL);
    hist_free(&k.prog_hist);
}
