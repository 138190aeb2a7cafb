/* Signals, the 100 ms tick (timeouts, stats, systemd), and the drain on SIGINT/SIGTERM. */
#include "loop_int.h"

#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "say.h"
#include "sysd.h"

static void arm_signal_read(struct loop *l)
{
    struct io_uring_sqe *sqe = loop_sqe(l, OP_SIGNAL, NULL);
    io_uring_prep_read(sqe, l->signal_fd, &l->siginfo, sizeof(l->siginfo), 0);
}

static void arm_tick(struct loop *l)
{
    struct io_uring_sqe *sqe = loop_sqe(l, OP_TICK, NULL);
    io_uring_prep_timeout(sqe, &l->tick_ts, 0, 0);
}

void lifecycle_arm(struct loop *l)
{
    arm_signal_read(l);
    arm_tick(l);
}

/*
 * Shutting down and all of @c's output is in its socket. Closing now could lose it (an orphaned
 * socket whose peer reads slowly can be reset), so send FIN after the data and close once the
 * peer has acknowledged everything (checked here and on every tick) or the drain time is up.
 */
void lifecycle_drain_done(struct loop *l, struct conn *c)
{
    if (!c->drained) {
        c->drained = true;
        shutdown(c->fd, SHUT_WR);
    }
    if (net_unacked(c->fd) == 0)
        loop_doom(l, c, DISC_SHUTDOWN);
}

static void start_drain(struct loop *l)
{
    l->draining = true;
    sysd_stopping();
    if (l->httpd_on)
        httpd_set_healthy(&l->httpd, false);
    l->drain_deadline_ns = l->now_ns + (uint64_t)(l->o->drain_timeout * NSEC);
    /* Pending accepts keep their sockets alive until cancelled; the fds can go now. */
    listen_close_all(l);
    say_event("Shutting down: flushing %u client(s).", l->nopen);
    for (uint32_t i = l->conns.nactive; i-- > 0;) {
        struct conn *c = &l->conns.slots[l->conns.active[i]];
        if (!conn_live(c))
            continue;
        /* Frames not complete or not yet in the log were never accepted: they go. */
        loop_stop_reading(l, c);
        ingest_close(&l->ingest, &c->in);
        loop_try_send(l, c); /* ends the drain of those with nothing left to send */
    }
}

/* End of the drain (timeout or second signal): whatever is still queued is lost. */
static void stop_now(struct loop *l)
{
    uint64_t bytes = 0;
    uint32_t clients = 0;
    for (uint32_t i = l->conns.nactive; i-- > 0;) {
        struct conn *c = &l->conns.slots[l->conns.active[i]];
        if (!conn_live(c))
            continue;
        uint64_t pending = fanout_owed(&l->fanout, &c->out) + net_unacked(c->fd);
        if (pending) {
            bytes += pending;
            clients++;
        }
        loop_doom(l, c, DISC_SHUTDOWN);
    }
    if (bytes)
        say_warn("shutdown: %llu byte(s) queued for %u client(s) were not delivered",
                 (unsigned long long)bytes, clients);
    /* Completions for the cancellations come quickly; do not wait forever for them. */
    if (!l->hard_deadline_ns)
        l->hard_deadline_ns = l->now_ns + 2 * NSEC;
}

/* SIGHUP: what was read from files at start, read again; each keeps the old on failure. */
static void reload(struct loop *l)
{
    if (l->auth_on)
        auth_reload(l);
    if (l->tls_on)
        tls_reload(l);
    if (!l->auth_on && !l->tls_on)
        say_event("SIGHUP: nothing to reload.");
}

void lifecycle_on_signal(struct loop *l, int res)
{
    if (res == (int)sizeof(l->siginfo)) {
        /* A reload, never a stop (nor a second signal cutting a drain short). */
        if (l->siginfo.ssi_signo == SIGHUP)
            reload(l);
        else if (!l->draining)
            start_drain(l);
        else
            stop_now(l);
    }
    arm_signal_read(l);
}

static void print_stats(struct loop *l, double secs)
{
    const struct stats *s = &l->stats, *p = &l->stats_prev;
    say_always("stats: clients=%u frames_in/s=%.0f deliveries/s=%.0f bytes_out/s=%.0f "
               "drops=%llu slow_disconnects=%llu",
               l->nopen, (double)(s->frames_in - p->frames_in) / secs,
               (double)(s->deliveries - p->deliveries) / secs,
               (double)(s->bytes_out - p->bytes_out) / secs, (unsigned long long)s->frames_dropped,
               (unsigned long long)s->disconnects[DISC_SLOW_CONSUMER]);
    l->stats_prev = l->stats;
}

/* Per-connection timers: an incomplete frame past --frame-timeout, a finished drain. */
static void check_conns(struct loop *l)
{
    uint64_t limit = (uint64_t)(l->o->frame_timeout * NSEC);
    for (uint32_t i = l->conns.nactive; i-- > 0;) {
        struct conn *c = &l->conns.slots[l->conns.active[i]];
        if (!conn_live(c))
            continue;
        if (unlikely(conn_gated(c))) /* its deadline, or its delayed close; drained as others */
            gate_tick(l, c);
        if (!conn_live(c))
            continue;
        if (limit && c->partial_since_ns && l->now_ns - c->partial_since_ns >= limit)
            loop_doom(l, c, DISC_PARTIAL_TIMEOUT);
        else if (l->draining && c->drained)
            lifecycle_drain_done(l, c);
    }
}

static void tell_systemd(struct loop *l)
{
    if (l->watchdog_ns && l->now_ns >= l->next_watchdog_ns) {
        sysd_watchdog();
        l->next_watchdog_ns = l->now_ns + l->watchdog_ns / 2;
    }
    if (l->now_ns >= l->next_status_ns && l->nopen != l->status_clients) {
        char status[64];
        snprintf(status, sizeof(status), "%u client(s)", l->nopen);
        sysd_status(status);
        l->status_clients = l->nopen;
        l->next_status_ns = l->now_ns + NSEC;
    }
}

void lifecycle_on_tick(struct loop *l)
{
    const struct opts *o = l->o;
    check_conns(l);
    loop_pack_tick(l);
    if (o->stats_interval > 0 && l->now_ns >= l->next_stats_ns) {
        print_stats(l, o->stats_interval);
        l->next_stats_ns += (uint64_t)(o->stats_interval * NSEC);
        if (l->next_stats_ns < l->now_ns)
            l->next_stats_ns = l->now_ns + (uint64_t)(o->stats_interval * NSEC);
    }
    accept_log_rejects(l, false);
    /* A multishot accept keeps the descriptor limit it was armed with; an operator who changes
     * it (prlimit) expects it to apply, so re-arm with the new one. */
    rlim_t fd_limit = accept_fd_limit_now();
    if (fd_limit != l->fd_limit_seen) {
        say_warn("descriptor limit changed to %llu", (unsigned long long)fd_limit);
        l->fd_limit_seen = fd_limit;
    }
    accept_fd_limit_changed(l, fd_limit);
    if (l->draining && l->now_ns >= l->drain_deadline_ns && !l->hard_deadline_ns)
        stop_now(l);
    if (l->hard_deadline_ns && l->now_ns >= l->hard_deadline_ns)
        l->done = true;
    if (l->httpd_on)
        httpd_tick(&l->httpd, l->now_ns);
    tell_systemd(l);
    arm_tick(l);
}
