/* The controller: the main thread's side of a run. It starts the workers, moves the run through
 * its phases (connect, ready, warm-up, measure, drains, grace) from the workers' counters, wakes
 * the workers through their eventfds, prints a progress line a second, and records the measured
 * window (struct window) for the report. */
#ifndef FLOOD_CONTROL_H
#define FLOOD_CONTROL_H

#include "procstat.h"
#include "run.h"

/* The measured window: from the start of the measured phase to the end of its drain. */
struct window {
    struct cpu_snap cpu0, cpu1; /* at its start and end; cpu0.wall_ns 0: never measured */
    double others0, others1;    /* procstat_others_cpu_s(), just outside it */
    uint64_t others0_at, others1_at;
    uint64_t t_end;
    long server_rss_start, server_rss_end; /* KiB; -1: unknown */
    long server_fds_start, server_fds_end;
};

/** Runs @run (built by setup_run) to its end: starts the worker threads, drives the phases,
 * joins the workers, and fills @win. Set-up failures and a signal during set-up end flood
 * (exit 1); a signal later ends the measurement early. */
void control_run(struct flood *run, const struct procstat *ps, struct window *win);

#endif
