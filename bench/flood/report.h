/* Results: the figures of a run from its counters and measured window, the summary on stderr,
 * the JSON result (with --repeat, the medians under the usual keys plus every run and the
 * spread) and the HdrHistogram text file (--hist). */
#ifndef FLOOD_REPORT_H
#define FLOOD_REPORT_H

#include "control.h"
#include "run.h"

#include <stdio.h>

enum { LAT_P50, LAT_P90, LAT_P99, LAT_P999, LAT_P9999, LAT_MAX, LAT_N };
/* The shorter distributions: driver overhead and publisher lateness. */
enum { OVH_P50, OVH_P90, OVH_P99, OVH_P999, OVH_MAX, OVH_N };

struct results {
    uint64_t slow_bytes, slow_closed, churn_connects, churn_failed;
    uint64_t sub_reads, errors, setup_corrupt;
    uint64_t published, expected, deliveries, lost, duplicated, reordered, corrupt;
    double window_s, deliveries_per_s, payload_mb_per_s, flood_cpu, server_cpu, other_cpu,
        softirqd_cpu; /* server_cpu, other_cpu < 0: unknown */
    double lat_us[LAT_N];
    uint64_t lat_samples;
    double drv_us[OVH_N], plag_us[OVH_N]; /* driver_overhead_us, pub_lag_us */
    uint64_t drv_samples, plag_samples;
    double spin_cpu; /* flood_spin_cpu: cores spent polling the ring (part of flood_cpu) */
    /* echoed in the JSON: the last run's */
    long server_rss_start, server_rss_end, server_fds_start, server_fds_end;
};

/** The figures of a finished run (its workers joined) into @r; merges the workers' latencies
 * into run->lat (driver overhead and publisher lateness into run->drv and run->plag). */
void report_compute(struct flood *run, const struct window *win, struct results *r);

/** The short summary of one run on stderr. */
void report_summary(const struct flood_opts *o, const struct results *r);

/** Writes the JSON result of @n runs (the last one @last, still built) to @f: with n > 1 the
 * medians, every run and the spread, and a line with the median on stderr. 0, or -1 when the
 * stream failed. */
int report_json(FILE *f, const struct flood *last, const struct results *runs, long n);

/** Writes @h to @path in HdrHistogram's percentile-distribution text format (µs). 0 or -1. */
int report_hist(const char *path, const struct hist *h);

#endif
