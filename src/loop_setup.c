/* Creating and destroying a loop: the ring, the buffers, the log, the pure modules, the listeners
 * (listen.c opens the relay's); /metrics. */
#include "loop_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringcast/alloc.h"
#include "ringcast/frame.h"
#include "ringcast/metrics.h"
#include "ringcast/netaddr.h"
#include "say.h"
#include "sysd.h"

/* /metrics: the counters plus gauges gathered now. O(clients), once per scrape. */
static int render_metrics(void *ctx, struct metrics_buf *out)
{
    struct loop *l = ctx;
    uint64_t pending = 0, max_backlog = 0, waiting = 0;
    struct metrics_listener listeners[LISTENERS_MAX];
    for (uint32_t i = 0; i < l->conns.nactive; i++) {
        const struct conn *c = &l->conns.slots[l->conns.active[i]];
        if (!conn_live(c))
            continue;
        uint64_t p = fanout_owed(&l->fanout, &c->out);
        pending += p;
        if (p > max_backlog)
            max_backlog = p;
        waiting += c->poll_armed;
    }
    struct metrics_snapshot m = {
        .stats = &l->stats,
        .version = RINGCAST_VERSION,
        .features = l->features,
        .uptime_seconds = (double)(loop_clock_ns() - l->start_ns) / NSEC,
        .clients = l->nopen,
        .pending_bytes = pending,
        .max_backlog_bytes = max_backlog,
        .clients_waiting_writable = waiting,
        .partial_bytes = l->held_bytes,
        .log_capacity_bytes = l->log.cap,
        .auth_tokens = l->tokens.n,
        .tls_on = l->tls_on,
        .tls_not_after = l->tls.not_after,
        .listeners = listeners,
    };
    m.nlisteners = listen_metrics(l, listeners);
    return metrics_render(&m, out);
}

/* The relay listeners (listen.c) and the metrics one: passed in by systemd, or bound here. */
static int open_listeners(struct loop *l, int relay_fd, int metrics_fd, union netaddr *bound,
                          char *err, size_t errlen)
{
    const struct opts *o = l->o;
    int ret = listen_open_all(l, relay_fd, err, errlen);
    if (ret < 0) {
        if (metrics_fd >= 0)
            close(metrics_fd);
        return ret;
    }
    socklen_t blen = sizeof(*bound);
    getsockname(l->listeners[0].fd, &bound->sa, &blen);

    if (metrics_fd < 0 && o->metrics[0]) {
        union netaddr addr;
        socklen_t alen;
        netaddr_parse_hostport(o->metrics, &addr, &alen); /* validated by opts */
        /* The system's backlog (0), not a small one: the endpoint serves 16 at once and closes
         * the rest at once, which a burst of scrapers only sees if the kernel takes their SYNs
         * (with 64, a burst of 100 had some wait 1-2 s for a retransmit). */
        ret = listen_socket(&addr, alen, 0, &metrics_fd, err, errlen);
        if (ret < 0)
            return ret;
    }
    if (metrics_fd >= 0) {
        ret = httpd_init(&l->httpd, &l->ring, metrics_fd, render_metrics, l);
        if (ret < 0) {
            snprintf(err, errlen, "metrics: cannot set up receive buffers: %s", strerror(-ret));
            return ret;
        }
        l->httpd_on = true;
    }
    return 0;
}

/*
 * How far past the pace window the receive buffer that finds a publisher over it may go into
 * the log (the next ones wait aside): one buffer, never so far that the leading reader would be
 * past its quota. Kept small: every reader behind the leader is that much further behind.
 */
static uint64_t race_slack_for(uint64_t quota, uint64_t pace)
{
    uint64_t buffer = RECV_BUF_SIZE + 2 * BCAST_REC_UNITS;
    uint64_t room = quota > pace ? quota - pace : 0;
    return buffer < room ? buffer : room;
}

/* Point the pure modules at the loop's log, flow and counters. */
static void wire_modules(struct loop *l, uint64_t quota, uint64_t pace)
{
    const struct opts *o = l->o;
    /* The pack window: a quarter of the quota, so that readers behind the pack's pacer have
     * three quarters of it to spread over; never tighter than the pace window. */
    uint64_t pack = quota / 4 > pace ? quota / 4 : pace;
    if (ring_feature_disabled("pack_rule")) /* RINGCAST_DISABLE=pack_rule: for comparisons */
        pack = 0;
    flow_init(&l->flow, pace, pack);
    l->fanout = (struct fanout){
        .log = &l->log,
        .framing = o->framing,
        .echo = o->echo,
        .policy = o->slow_policy,
        .quota = quota,
        .keep_on_drop = o->max_queue / 2,
        .stats = &l->stats,
        .held_bytes = &l->held_bytes,
    };
    l->ingest = (struct ingest){
        .log = &l->log,
        .flow = &l->flow,
        .fanout = &l->fanout,
        .framing = o->framing,
        .echo = o->echo,
        .max_frame = o->max_frame,
        .pace = pace,
        .race_slack = race_slack_for(quota, pace),
        .stats = &l->stats,
        .held_bytes = &l->held_bytes,
        .stash_bytes = &l->stash_bytes,
        .make_room = loop_make_room,
        .on_frames = loop_on_frames,
        .ctx = l,
    };
}

/* The clients the descriptor limit leaves room for (process_setup raised it already), besides
 * FD_RESERVE and one descriptor per extra listener (@extra). */
static uint32_t fit_descriptor_limit(uint32_t want, unsigned extra)
{
    struct rlimit rl;
    rlim_t reserve = FD_RESERVE + extra;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return want;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)want + reserve)
        return want;
    uint32_t fit = rl.rlim_cur > reserve + 1 ? (uint32_t)(rl.rlim_cur - reserve) : 1;
    say_warn("--max-clients %u does not fit the descriptor limit (%llu): using %u", want,
             (unsigned long long)rl.rlim_cur, fit);
    return fit;
}

/* The quota in log units: --max-queue, and room for one more frame's header. */
static uint64_t quota_for(const struct opts *o)
{
    return o->max_queue + FRAME_LEN32_HEADER;
}

/*
 * The log holds what any client may pin: up to its quota when it is judged, plus what one batch
 * of completions appends before the next judgement (every receive buffer, each a record), plus
 * two of the longest frames, plus what zero-copy sends may pin beyond a cursor. In log units, so
 * the index (one record per BCAST_REC_UNITS) can never run out before the bytes do. See
 * docs/PROTOCOL.md, "Memory".
 */
static uint64_t log_units_for(const struct opts *o)
{
    uint64_t frame = o->max_frame + FRAME_LEN32_HEADER + BCAST_REC_UNITS;
    uint64_t batch = (uint64_t)RECV_BUF_COUNT * (RECV_BUF_SIZE + 2 * BCAST_REC_UNITS);
    /* The oldest record is kept whole for parsing: up to one record before the oldest pin. */
    uint64_t record = BCAST_REC_MAX_LEN;
    return quota_for(o) + 2 * frame + batch + record + (o->zerocopy == ZC_OFF ? 0 : FANOUT_ZC_PIN);
}

struct loop *loop_create(const struct opts *o, const struct loop_sockets *passed,
                         union netaddr *bound, char *err, size_t errlen)
{
    struct loop *l = rc_calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        if (passed->relay >= 0)
            close(passed->relay);
        if (passed->metrics >= 0)
            close(passed->metrics);
        return NULL;
    }
    l->o = o;
    for (uint32_t i = 0; i < LISTENERS_MAX; i++)
        l->listeners[i].fd = -1;
    l->listeners[0].fd = passed->relay; /* owned from now on, even on failure */
    l->signal_fd = l->spare_fd = -1;
    int metrics_fd = passed->metrics;
    l->paused.head = l->paused.tail = l->doomed.head = l->doomed.tail = CONN_NONE;
    l->rearm.head = l->rearm.tail = l->reap.head = l->reap.tail = CONN_NONE;
    l->tick_ts.tv_nsec = (long long)TICK_NS;
    uint64_t quota = quota_for(o);
    wire_modules(l, quota, o->pace_window);
    l->now_ns = loop_clock_ns();

    int ret = ring_setup(&l->ring, SQ_ENTRIES, CQ_ENTRIES, &l->feat, err, errlen);
    if (ret < 0)
        goto err;
    l->ring_ready = true;
    if (o->zerocopy == ZC_ON && !l->feat.send_zc) {
        snprintf(err, errlen,
                 "--zerocopy on needs IORING_OP_SEND_ZC (Linux 6.0), which this kernel lacks");
        goto err;
    }

    ret = ring_bufs_init(&l->ring, &l->bufs, RECV_BGID, RECV_BUF_COUNT, RECV_BUF_SIZE);
    if (ret < 0) {
        snprintf(err, errlen, "cannot set up receive buffers: %s", strerror(-ret));
        goto err;
    }
    uint64_t log_units = log_units_for(o);
    ret = bcast_init(&l->log, log_units, log_units / BCAST_REC_UNITS + 1);
    if (ret < 0) {
        snprintf(err, errlen, "cannot map the broadcast log (%llu bytes): %s",
                 (unsigned long long)log_units, strerror(-ret));
        goto err;
    }

    uint32_t max_clients = fit_descriptor_limit(o->max_clients, o->nlisten);
    l->fd_limit_seen = accept_fd_limit_now();
    if (conn_table_init(&l->conns, max_clients) < 0 ||
        !(l->pack_scratch = rc_calloc(max_clients, sizeof(*l->pack_scratch)))) {
        snprintf(err, errlen, "out of memory for %u client slots", max_clients);
        goto err;
    }
    if (accept_setup(l, err, errlen) < 0 || auth_setup(l, err, errlen) < 0 ||
        tls_setup(l, err, errlen) < 0)
        goto err;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    l->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (l->signal_fd < 0) {
        snprintf(err, errlen, "signalfd: %s", strerror(errno));
        goto err;
    }

    l->start_ns = l->now_ns;
    ring_features_describe(&l->feat, l->features, sizeof(l->features));
    ret = open_listeners(l, l->listeners[0].fd, metrics_fd, bound, err, errlen);
    metrics_fd = -1; /* the listeners own it now */
    if (ret < 0)
        goto err;
    listen_say_started(l);
    char addr[NETADDR_STRLEN];
    if (l->httpd_on) {
        union netaddr maddr;
        socklen_t mlen = sizeof(maddr);
        getsockname(l->httpd.listen_fd, &maddr.sa, &mlen);
        say_always("Metrics at: http://%s/metrics", netaddr_format(&maddr, addr, sizeof(addr)));
    }
    if (l->tls_on) { /* after the start lines, which come first */
        char probe[200];
        tls_ktls_probe(probe, sizeof(probe));
        say_event("%s", probe);
    }
    l->watchdog_ns = sysd_watchdog_period_ns();
    if (say_verbosity() == VERB_VERBOSE) {
        say_event("io_uring features: %s; log %llu MiB; max clients %u", l->features,
                  (unsigned long long)(l->log.cap >> 20), max_clients);
    }
    return l;
err:
    if (metrics_fd >= 0)
        close(metrics_fd);
    loop_destroy(l);
    return NULL;
}

void loop_destroy(struct loop *l)
{
    if (!l)
        return;
    for (uint32_t i = 0; l->conns.slots && i < l->conns.nactive; i++) {
        struct conn *c = &l->conns.slots[l->conns.active[i]];
        if (!c->fd_closed)
            close(c->fd);
        ingest_close(&l->ingest, &c->in);
        gate_release(c);
        if (c->tls)
            c->tls->sending = false; /* the ring goes below */
        tls_conn_release(l, c);
        c->out.inflight = false; /* the ring goes below: nothing is in flight any more */
        fanout_release(&l->fanout, &c->out);
    }
    conn_table_destroy(&l->conns);
    rc_free(l->pack_scratch);
    peercount_destroy(&l->peers);
    auth_destroy(l);
    tls_destroy(l);
    if (l->ring_ready) {
        httpd_destroy(&l->httpd);
        ring_bufs_destroy(&l->ring, &l->bufs);
        io_uring_queue_exit(&l->ring);
    }
    bcast_destroy(&l->log);
    for (uint32_t i = 0; i < LISTENERS_MAX; i++)
        if (l->listeners[i].fd >= 0)
            close(l->listeners[i].fd);
    if (l->signal_fd >= 0)
        close(l->signal_fd);
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    rc_free(l);
}
