/* Building a run: see setup.h. */
#include "setup.h"

#include "tls.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        die("out of memory");
    return p;
}

static void setup_worker(struct flood *run, struct worker *w, long t)
{
    const struct flood_opts *o = run->o;
    w->run = run;
    w->o = o;
    w->id = (int)t;
    w->subs = xcalloc((size_t)(o->subs / run->nworkers + 1), sizeof(*w->subs));
    w->pubs = xcalloc((size_t)(o->pubs / run->nworkers + 1), sizeof(*w->pubs));
    w->slows = xcalloc((size_t)(run->nslow / run->nworkers + 1), sizeof(*w->slows));
    w->churns = xcalloc((size_t)(run->nchurn / run->nworkers + 1), sizeof(*w->churns));
    w->trash = malloc(BIG_READ);
    w->scratch_cap = 2 * PARSE_BUF;
    w->scratch = malloc(w->scratch_cap);
    if (!w->trash || !w->scratch || hist_init(&w->lat, HIST_HIGHEST) != 0 ||
        hist_init(&w->snap, HIST_HIGHEST) != 0 || hist_init(&w->drv, HIST_HIGHEST) != 0 ||
        hist_init(&w->plag, HIST_HIGHEST) != 0)
        die("out of memory");
    w->schedstat_fd = -1; /* opened by the thread itself (worker.c) */
    pthread_mutex_init(&w->snap_mu, NULL);
    w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->efd < 0)
        die("eventfd: %s", strerror(errno));
}

/* Connection i goes to worker i % T, so each worker gets its share of every role. */
static void assign_conns(struct flood *run)
{
    const struct flood_opts *o = run->o;
    for (long i = 0; i < run->nconns; i++) {
        struct conn *c = &run->conns[i];
        struct worker *w = &run->workers[i % run->nworkers];
        c->fd = -1;
        c->w = w;
        if (i < o->subs) {
            c->role = ROLE_SUB;
            c->idx = (uint32_t)i;
            c->parse = true;
            w->subs[w->nsubs++] = c;
        } else if (i < o->subs + o->pubs) {
            c->role = ROLE_PUB;
            c->idx = (uint32_t)(i - o->subs);
            w->pubs[w->npubs++] = c;
        } else if (i < o->subs + o->pubs + run->nslow) {
            c->role = ROLE_SLOW;
            c->idx = (uint32_t)(i - o->subs - o->pubs);
            w->slows[w->nslows++] = c;
        } else {
            c->role = ROLE_CHURN;
            c->idx = (uint32_t)(i - o->subs - o->pubs - run->nslow);
            w->churns[w->nchurns++] = c;
        }
    }
    /* Verified subscribers are spread evenly over the connection order, since a relay may
     * serve its clients in that order. */
    for (long k = 0; k < o->verify; k++) {
        long i = (2 * k + 1) * o->subs / (2 * o->verify);
        struct conn *c = &run->conns[i];
        c->verify = true;
        c->tracks = xcalloc((size_t)o->pubs + 1, sizeof(*c->tracks));
        c->nexts = xcalloc((size_t)o->pubs + 1, sizeof(*c->nexts));
        for (long p = 0; p < o->pubs; p++)
            seq_init(&c->tracks[p]);
    }
    for (long i = 0; o->read_interval_us > 0 && i < o->subs; i++) {
        run->conns[i].lazy = !run->conns[i].verify;
        run->conns[i].w->nlazy += run->conns[i].lazy;
    }
    size_t outcap = PUB_BATCH > run->fmt.wire_pub ? PUB_BATCH : run->fmt.wire_pub;
    for (long i = 0; i < o->pubs; i++) {
        struct conn *c = run_pub(run, i);
        c->pub = xcalloc(1, sizeof(*c->pub));
        if (!(c->pub->out = malloc(outcap)))
            die("out of memory");
    }
}

void setup_run(struct flood *run, const struct flood_opts *o, struct addrinfo **ai,
               const volatile sig_atomic_t *stop)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    memset(run, 0, sizeof(*run));
    run->o = o;
    run->stop = stop;
    run->nslow = o->slow_subs;
    run->nworkers = o->threads;
    run->nchurn = o->churn > 0 ? 16 * run->nworkers : 0;
    run->nconns = o->subs + o->pubs + run->nslow + run->nchurn;
    if ((rlim_t)run->nconns + 16 + 4 * (rlim_t)run->nworkers > rl.rlim_cur)
        die("%ld connections need about %ld file descriptors, but RLIMIT_NOFILE is %llu (raise "
            "it with ulimit -n)",
            run->nconns, run->nconns + 16, (unsigned long long)rl.rlim_cur);

    if (msgfmt_init(&run->fmt, o->proto, o->size, o->channel) != 0)
        die("out of memory");
    if (hist_init(&run->lat, HIST_HIGHEST) != 0 || hist_init(&run->drv, HIST_HIGHEST) != 0 ||
        hist_init(&run->plag, HIST_HIGHEST) != 0)
        die("out of memory");
    run->tls = tls_client_new(o);
    pthread_mutex_init(&run->errs.mu, NULL);
    atomic_init(&run->ctl.phase, PH_CONNECT_SUBS);
    run->conns = xcalloc((size_t)run->nconns + 1, sizeof(*run->conns));
    run->workers = xcalloc((size_t)run->nworkers, sizeof(*run->workers));
    for (long t = 0; t < run->nworkers; t++)
        setup_worker(run, &run->workers[t], t);
    assign_conns(run);

    if (!*ai) {
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        char port[16];
        snprintf(port, sizeof(port), "%d", o->port);
        int rc = getaddrinfo(o->host, port, &hints, ai);
        if (rc != 0)
            die("cannot resolve '%s': %s", o->host, gai_strerror(rc));
    }
    run->ai = *ai;
}

void setup_teardown(struct flood *run)
{
    const struct flood_opts *o = run->o;
    for (long i = 0; i < run->nconns; i++) {
        struct conn *c = &run->conns[i];
        if (c->fd >= 0)
            close(c->fd);
        tls_conn_free(c);
        free(c->carry);
        for (long p = 0; c->tracks && p < o->pubs; p++)
            seq_free(&c->tracks[p]);
        free(c->tracks);
        free((void *)c->nexts);
        if (c->pub)
            free(c->pub->out);
        free(c->pub);
    }
    for (long t = 0; t < run->nworkers; t++) {
        struct worker *w = &run->workers[t];
        ring_bufs_destroy(&w->ring, &w->pbufs);
        ring_bufs_destroy(&w->ring, &w->tbufs);
        io_uring_queue_exit(&w->ring);
        close(w->efd);
        free(w->subs);
        free(w->pubs);
        free(w->slows);
        free(w->churns);
        free(w->trash);
        free(w->scratch);
        hist_free(&w->lat);
        hist_free(&w->snap);
        hist_free(&w->drv);
        hist_free(&w->plag);
        pthread_mutex_destroy(&w->snap_mu);
    }
    for (int i = 0; i < run->errs.n; i++)
        free(run->errs.msgs[i]);
    free(run->workers);
    free(run->conns);
    hist_free(&run->lat);
    hist_free(&run->drv);
    hist_free(&run->plag);
    tls_client_free(run->tls);
    msgfmt_free(&run->fmt);
    pthread_mutex_destroy(&run->errs.mu);
    memset(run, 0, sizeof(*run));
}
