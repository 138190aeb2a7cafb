/* flood: the load driver for ringcast (and, for comparison, Redis pub/sub and NATS).
 *
 * T worker threads (--threads, worker.c), each with its own io_uring and its share of the
 * connections; the main thread is the controller (control.c), which runs the phases from the
 * workers' counters and wakes them through an eventfd each reads through its ring. A run goes
 * through these phases:
 *   connect   open every subscriber (Redis: SUBSCRIBE and wait for the confirmation; NATS:
 *             CONNECT, SUB and a PING answered by PONG), then every publisher, at most
 *             --connect-rate per second, with IORING_OP_CONNECT (conn.c);
 *   ready     publisher 0 sends readiness messages, one every 100 ms, until every subscriber has
 *             received the latest one (so every subscriber is registered by the relay, and since
 *             a relay keeps each sender's order, nothing older is still in flight);
 *   warm-up   the real load for --warmup seconds, with messages marked 'W', then a drain until
 *             every subscriber has everything (so no warm-up byte is counted later);
 *   measure   the real load with messages marked 'M' for --duration seconds or --count messages
 *             per publisher, then a drain until every subscriber has everything or nothing moved
 *             for --drain-timeout seconds. The measured window runs from the start of this phase
 *             to the end of its drain; both CPU figures cover exactly that window.
 * Subscribers (sub.c) receive with multishot recv and provided buffers. Verified subscribers
 * (--verify) parse every message and check each publisher's sequence and the content, and
 * receive with multishot recvmsg and SO_TIMESTAMPNS, so flood also reports its own share of each
 * latency sample (driver_overhead_us) and how late fixed-rate sends went out (pub_lag_us). The
 * others count bytes, reading as --read-mode says: copy (a recv into a 64 KiB buffer, the default),
 * trunc (MSG_TRUNC: the kernel discards the data and the completion's byte count is all there
 * is) or lowat (copy, with SO_RCVLOWAT). Publishers (pub.c) have one send in flight each.
 * With --tls every connection is an OpenSSL client session on memory BIOs (tls.c): the recv
 * path feeds it ciphertext and passes the plaintext on, publishers send encrypted batches.
 * The result (report.c) is JSON; see bench/README.md for the options and the keys.
 *
 * This file: the command line, signals, and the --repeat loop. */
#include "cli.h"
#include "control.h"
#include "procstat.h"
#include "report.h"
#include "run.h"
#include "setup.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

/* The one mutable global: a signal handler has nowhere else to write. The run reads it through
 * struct flood's `stop`. */
static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    if (stop_flag) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_flag = 1;
}

int main(int argc, char **argv)
{
    struct flood_opts opts;
    char err[256];
    switch (cli_parse(&opts, argc, argv, err, sizeof(err))) {
    case CLI_RUN:
        break;
    case CLI_HELP:
        fputs(cli_usage(), stdout);
        return 0;
    case CLI_VERSION:
        printf("flood %s\n", FLOOD_VERSION);
        return 0;
    case CLI_ERROR:
        fprintf(stderr, "flood: %s (see --help)\n", err);
        return 2;
    }
    const struct flood_opts *o = &opts;

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* Fixed-rate sends should not wake up 50 us late (the workers inherit it). */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    struct procstat ps;
    procstat_init(&ps, o->server_pid);
    struct results *runs = calloc((size_t)o->repeat, sizeof(*runs));
    struct hist all; /* every run's latencies, for --hist */
    if (!runs || hist_init(&all, HIST_HIGHEST) != 0)
        die("out of memory");
    FILE *out = stdout;
    if (o->json) {
        out = fopen(o->json, "w");
        if (!out)
            die("cannot write %s: %s", o->json, strerror(errno));
    }
    struct addrinfo *ai = NULL;
    struct flood run;
    struct window win;
    uint64_t lossy = 0;
    long done = 0;
    for (long i = 0; i < o->repeat; i++) {
        if (o->repeat > 1)
            fprintf(stderr, "flood: run %ld of %ld\n", i + 1, o->repeat);
        if (i > 0)
            setup_teardown(&run);
        setup_run(&run, o, &ai, &stop_flag);
        control_run(&run, &ps, &win);
        struct results *r = &runs[i];
        report_compute(&run, &win, r);
        report_summary(o, r);
        lossy += r->lost + r->duplicated + r->reordered + r->corrupt;
        hist_merge(&all, &run.lat);
        done = i + 1;
        if (stop_flag)
            break;
    }
    if (report_json(out, &run, runs, done) != 0 || (out != stdout && fclose(out) != 0))
        die("cannot write %s: %s", o->json ? o->json : "the result", strerror(errno));
    /* All runs' latencies together (--repeat): the distribution of every sample. */
    if (o->hist && report_hist(o->hist, &all) != 0)
        die("cannot write %s: %s", o->hist, strerror(errno));
    setup_teardown(&run);
    hist_free(&all);
    free(runs);
    if (ai)
        freeaddrinfo(ai);

    if (o->expect_lossless && lossy) {
        fprintf(stderr, "flood: not lossless\n");
        return 3;
    }
    return 0;
}
