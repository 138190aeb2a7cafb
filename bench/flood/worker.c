/* The worker's event loop: see worker.h. */
#include "worker.h"

#include "conn.h"
#include "pub.h"
#include "sub.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WAIT_NS (50 * 1000000ULL)   /* the loop looks at its deadlines at least this often */
#define SPIN_CHECK_NS (20 * 1000000ULL) /* how often spin_allowed looks at the run-queue wait */

/* Churn: every tick closes one slot's connection and opens a new one. */
static void churn_tick(struct worker *w, uint64_t now)
{
    if (!w->nchurns || w->phase != PH_MEASURE || now < w->next_churn)
        return;
    double period = 1e9 * (double)w->run->nworkers / w->o->churn;
    while (now >= w->next_churn) {
        w->next_churn += (uint64_t)period;
        struct conn *c = w->churns[w->churn_ops_local++ % (uint64_t)w->nchurns];
        if (LD(c->state) == CS_CONNECTING)
            continue; /* still connecting: skip this turn */
        if (LD(c->state) == CS_OPEN) {
            close(c->fd);
            c->fd = -1;
            conn_set_state(c, CS_IDLE);
        }
        conn_open(c);
    }
}

static void on_recv_cqe(struct conn *c, const struct io_uring_cqe *cqe, bool trunc, uint64_t now)
{
    struct worker *w = c->w;
    struct ring_bufs *b = trunc ? &w->tbufs : &w->pbufs;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    int res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (res > 0 && c->fd >= 0 && LD(c->state) != CS_DEAD) {
            const char *data = (const char *)ring_bufs_ptr(b, bid);
            size_t n = (size_t)res;
            if (c->recv_msg && (n = sub_unpack(c, data, res, &data)) == 0)
                res = 0; /* the end of the stream: only the recvmsg header came */
            else if (c->tls)
                tls_recv(c, data, n, now);
            else if (c->role == ROLE_PUB)
                pub_data(c, data, n);
            else
                sub_data(c, data, n, now);
        }
        ring_bufs_recycle(b, bid);
    }
    if (more)
        return;
    c->recv_armed = false;
    if (c->fd < 0 || LD(c->state) == CS_DEAD)
        return;
    if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
        conn_failed_res(c, res);
        return;
    }
    if (c->role == ROLE_PUB || conn_wants_recv(c))
        conn_recv_arm(c);
}

/* Entry actions of the phase the controller just announced. */
static void worker_enter(struct worker *w, enum phase ph, uint64_t now)
{
    const struct flood_opts *o = w->o;
    w->phase = ph;
    w->phase_start = LD(w->run->ctl.phase_start);
    switch (ph) {
    case PH_PREP_WARMUP:
        sub_stop_parsing(w);
        w->next_lazy = now;
        sub_set_base(w);
        sub_set_lowat(w, o->rcvlowat);
        break;
    case PH_WARMUP:
    case PH_MEASURE:
        w->phase_end = LD(w->run->ctl.phase_end);
        pub_reset_phase(w, w->phase_start);
        w->next_churn = now;
        break;
    case PH_WARM_DRAIN:
    case PH_DRAIN:
        sub_set_lowat(w, 1);
        for (long i = 0; *w->run->stop && i < w->npubs; i++) {
            w->pubs[i]->pub->gen_done = true;
            pub_update_done(w->pubs[i]);
        }
        break;
    case PH_PREP_MEASURE:
        sub_set_base(w);
        sub_set_lowat(w, o->rcvlowat);
        hist_reset(&w->lat);
        hist_reset(&w->drv);
        hist_reset(&w->plag);
        ST(w->spin_ns, 0);
        break;
    default:
        break;
    }
}

/* CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns. The kernel's receive timestamps (SO_TIMESTAMPNS)
 * are CLOCK_REALTIME, flood's clock is CLOCK_MONOTONIC: a realtime reading is bracketed by two
 * monotonic ones and the tightest of a few tries is kept (tens of ns of error with the vDSO). */
static int64_t clock_offset(void)
{
    int64_t best = 0, best_gap = INT64_MAX;
    for (int i = 0; i < 5; i++) {
        struct timespec a, r, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        clock_gettime(CLOCK_REALTIME, &r);
        clock_gettime(CLOCK_MONOTONIC, &b);
        int64_t ma = (int64_t)a.tv_sec * (int64_t)NS_PER_S + a.tv_nsec;
        int64_t mb = (int64_t)b.tv_sec * (int64_t)NS_PER_S + b.tv_nsec;
        int64_t rr = (int64_t)r.tv_sec * (int64_t)NS_PER_S + r.tv_nsec;
        if (mb - ma < best_gap) {
            best_gap = mb - ma;
            best = rr - (ma + (mb - ma) / 2);
        }
    }
    return best;
}

static void worker_snapshot(struct worker *w, uint64_t now)
{
    w->next_snap = now + NS_PER_S / 2;
    w->rt_off = clock_offset(); /* follows NTP's slewing of CLOCK_REALTIME */
    uint64_t lost = 0;
    for (long i = 0; i < w->nsubs; i++) {
        struct conn *c = w->subs[i];
        for (long p = 0; c->verify && p < w->o->pubs; p++)
            lost += c->tracks[p].lost;
    }
    ST(w->lost_sofar, lost);
    pthread_mutex_lock(&w->snap_mu);
    hist_reset(&w->snap);
    hist_merge(&w->snap, &w->lat);
    pthread_mutex_unlock(&w->snap_mu);
}

static void wake_arm(struct worker *w)
{
    struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
    io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof(w->efd_val), 0);
    io_uring_sqe_set_data64(sqe, OP_WAKE);
}

static uint64_t worker_deadline(struct worker *w, uint64_t now)
{
    const struct flood_opts *o = w->o;
    uint64_t deadline = now + MAX_WAIT_NS;
    if (w->next_snap < deadline)
        deadline = w->next_snap;
    if (w->nlazy && w->phase >= PH_WARMUP && w->phase != PH_HOLD) {
        if (w->lazy_cursor)
            return now; /* a round of lazy reads is half done (sub_lazy_reads) */
        if (w->next_lazy < deadline)
            deadline = w->next_lazy;
    }
    if (w->nslows && w->phase >= PH_READY)
        deadline = deadline < now + SLOW_TICK_NS ? deadline : now + SLOW_TICK_NS;
    if (w->nchurns && w->phase == PH_MEASURE && w->next_churn < deadline)
        deadline = w->next_churn;
    if (pub_phase_loaded(w) && o->rate > 0) {
        for (long i = 0; i < w->npubs; i++) {
            struct conn *c = w->pubs[i];
            struct pubstate *p = c->pub;
            if (LD(c->state) != CS_OPEN || p->inflight || p->gen_done)
                continue;
            uint64_t due = pub_next_due(c);
            if (due < deadline)
                deadline = due;
        }
    }
    if (w->phase <= PH_CONNECT_PUBS && o->connect_rate > 0)
        deadline = deadline < now + 1000000 ? deadline : now + 1000000;
    return deadline > now ? deadline : now;
}

static void worker_setup(struct worker *w)
{
    char err[256];
    unsigned entries = 1024, cq = 16384;
    int ret = ring_setup(&w->ring, entries, cq, &w->feat, err, sizeof(err));
    if (ret < 0)
        die("%s", err);
    long nsock = w->nsubs + w->npubs + w->nslows;
    /* Enough buffers that a socket with much pending cannot take them all and leave the others
     * without (ENOBUFS): subscribers that copy what they read must be served evenly, or the
     * driver itself makes some of them slow. 64 KiB each, as an ordinary program's read buffer:
     * with 16 KiB the driver spent 4x the completions per byte once the relay filled its
     * sockets, fell behind and stayed behind (shape 9 at a third of its speed in some runs). */
    uint32_t nb = 64, per_sock = w->o->read_mode != READ_TRUNC ? 4 : 1;
    while (nb < (uint32_t)nsock * per_sock && nb < 16384)
        nb <<= 1;
    if ((ret = ring_bufs_init(&w->ring, &w->pbufs, 0, nb, PARSE_BUF)) < 0 ||
        (ret = ring_bufs_init(&w->ring, &w->tbufs, 1, nb, BIG_READ)) < 0)
        die("cannot set up the provided buffers (%u of %u KiB): %s", nb, BIG_READ / 1024,
            strerror(-ret));
    /* No name, no data iovec (the buffer is a provided one): room for one SCM_TIMESTAMPNS. */
    w->rx_msg.msg_controllen = CMSG_SPACE(sizeof(struct timespec));
    w->rt_off = clock_offset();
    w->schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    wake_arm(w);
    w->connect_start = now_ns();
    w->next_snap = w->connect_start + NS_PER_S / 2;
}

/* Dispatches one batch of completions; one cq_advance for all. */
static void worker_reap(struct worker *w, uint64_t now)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&w->ring, head, cqe)
    {
        seen++;
        uint64_t data = cqe->user_data;
        enum op op = (enum op)(data & OP_MASK);
        struct conn *c = (struct conn *)(uintptr_t)(data & ~(uint64_t)OP_MASK);
        switch (op) {
        case OP_CONNECT:
            if (LD(c->state) == CS_CONNECTING)
                conn_on_connect_cqe(c, cqe->res, now);
            break;
        case OP_RECV_P:
        case OP_RECV_T:
            /* Each arrival is timed when its completion is handled, not once per batch: the
             * handling of the completions before it is the driver's delay too. */
            on_recv_cqe(c, cqe, op == OP_RECV_T, now_ns());
            break;
        case OP_SEND:
            pub_on_send_cqe(c, cqe->res, now);
            break;
        case OP_LAZY:
            sub_on_lazy_cqe(c, cqe);
            break;
        case OP_WAKE:
            wake_arm(w);
            break;
        default:
            break;
        }
    }
    io_uring_cq_advance(&w->ring, seen);
    ring_bufs_publish(&w->pbufs);
    ring_bufs_publish(&w->tbufs);
}

/* ---- --spin-us: polling the ring instead of sleeping at fixed rates ---- */

/* The time this thread has spent runnable but waiting for a CPU, in ns (the second figure of
 * /proc/thread-self/schedstat), or 0 when the kernel does not say. */
static uint64_t runq_wait_ns(int fd)
{
    char buf[96];
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;
    if (n <= 0)
        return 0;
    buf[n] = 0;
    unsigned long long run, wait;
    return sscanf(buf, "%llu %llu", &run, &wait) == 2 ? wait : 0;
}

/* Whether the loop may poll instead of sleeping now. On a machine where other work wants this
 * CPU, a polling thread is preempted (by the fair share of the other work's cgroup, whatever its
 * nice value) for whole time slices, milliseconds that land in the latency figures; sleeping
 * costs only the wake-up. So every 20 ms the thread's run-queue wait is looked at, and when it
 * waited for more than a quarter of that window polling is off for a second. Contention waits
 * about half of every window; a lone kworker, ksoftirqd or flood's own controller thread can
 * hold the CPU for a millisecond or so now and then, and turning polling off for a second over
 * that (an earlier 1 ms threshold did) put a second of wake-ups into a 10 s window and doubled
 * the driver's p99. */
static bool spin_allowed(struct worker *w, uint64_t now)
{
    if (now >= w->spin_check_at) {
        uint64_t waited = runq_wait_ns(w->schedstat_fd);
        if (w->spin_check_at && waited - w->spin_waited > SPIN_CHECK_NS / 4)
            w->spin_off_until = now + NS_PER_S;
        w->spin_waited = waited;
        w->spin_check_at = now + SPIN_CHECK_NS;
    }
    return now >= w->spin_off_until;
}

/* Polls the ring (submitting, and running the deferred task work that completes receives) until
 * a completion is there or @until, entering it at least once so that what this turn queued is
 * submitted even when @until has passed (a slice of lazy reads: worker_deadline is then now).
 * Returns the last io_uring_enter result. The time it polled in the measured phase and its
 * drain goes to spin_ns (flood_spin_cpu). */
static int worker_poll(struct worker *w, uint64_t until)
{
    uint64_t t0 = now_ns(), t;
    int ret;
    do {
        ret = io_uring_submit_and_get_events(&w->ring);
        if ((ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) ||
            io_uring_cq_ready(&w->ring))
            break;
        t = now_ns();
    } while (t < until);
    if (w->phase == PH_MEASURE || w->phase == PH_DRAIN)
        ADD(w->spin_ns, now_ns() - t0);
    return ret;
}

/* The wait of a loaded phase at a fixed rate: poll for up to @spin ns (the relay's deliveries of
 * what was just sent come within that), sleep until @spin before @deadline, then poll up to it
 * (a publisher is due then). On the benchmark VM a sleeping vCPU takes ~40 us to wake (the guest
 * halts, the host wakes it): that delay was in every latency sample (arrivals timed late) and in
 * every fixed-rate send (sent late). See driver_overhead_us and pub_lag_us. */
static int worker_wait_spin(struct worker *w, uint64_t now, uint64_t deadline, uint64_t spin)
{
    int ret = worker_poll(w, deadline < now + spin ? deadline : now + spin);
    if (io_uring_cq_ready(&w->ring) || (ret < 0 && ret != -EINTR && ret != -EAGAIN))
        return ret;
    now = now_ns();
    if (now >= deadline)
        return 0;
    if (deadline - now > spin) {
        uint64_t d = deadline - spin - now;
        struct __kernel_timespec ts = {.tv_sec = (long long)(d / NS_PER_S),
                                       .tv_nsec = (long long)(d % NS_PER_S)};
        struct io_uring_cqe *cqe;
        ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        if (io_uring_cq_ready(&w->ring) || (ret < 0 && ret != -ETIME && ret != -EINTR))
            return ret;
    }
    return worker_poll(w, deadline);
}

void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct ctl *ctl = &w->run->ctl;
    worker_setup(w);
    for (;;) {
        uint64_t now = now_ns();
        unsigned gen = atomic_load_explicit(&ctl->gen, memory_order_acquire);
        if (gen != w->gen) {
            w->gen = gen;
            enum phase ph = run_phase(w->run);
            if (ph == PH_DONE)
                break;
            worker_enter(w, ph, now);
            atomic_store_explicit(&w->acked, gen, memory_order_release);
        }
        if (w->phase <= PH_CONNECT_PUBS)
            conn_connect_more(w, now);
        if (w->phase == PH_READY)
            pub_ready(w, now);
        if (pub_phase_loaded(w))
            pub_service(w, now);
        sub_lazy_reads(w, now);
        if (w->nslows && w->phase >= PH_READY)
            sub_slow_reads(w, now);
        churn_tick(w, now);
        if (now >= w->next_snap)
            worker_snapshot(w, now);

        uint64_t wait = ns_since(worker_deadline(w, now), now);
        struct __kernel_timespec ts = {.tv_sec = (long long)(wait / NS_PER_S),
                                       .tv_nsec = (long long)(wait % NS_PER_S)};
        struct io_uring_cqe *cqe;
        int ret;
        if (pub_phase_loaded(w) && w->o->rate > 0 && w->o->spin_us > 0 && spin_allowed(w, now))
            ret = worker_wait_spin(w, now, now + wait, (uint64_t)(w->o->spin_us * 1e3));
        else
            ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            die("io_uring_submit_and_wait_timeout: %s", strerror(-ret));
        worker_reap(w, now_ns());
    }
    worker_snapshot(w, now_ns());
    if (w->schedstat_fd >= 0)
        close(w->schedstat_fd);
    w->schedstat_fd = -1;
    return NULL;
}
