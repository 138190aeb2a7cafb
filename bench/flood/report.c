/* Results and their output: see report.h. */
#include "report.h"

#include "json.h"
#include "tls.h"

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void report_compute(struct flood *run, const struct window *win, struct results *r)
{
    const struct flood_opts *o = run->o;
    const size_t wire_sub = run->fmt.wire_sub;
    memset(r, 0, sizeof(*r));
    double spin_s = 0; /* time the workers polled the ring in the window */
    for (long i = 0; i < run->nworkers; i++) {
        struct worker *w = &run->workers[i];
        r->sub_reads += LD(w->sub_reads);
        r->churn_connects += LD(w->churn_ops);
        r->churn_failed += LD(w->churn_fail);
        hist_merge(&run->lat, &w->lat);
        hist_merge(&run->drv, &w->drv);
        hist_merge(&run->plag, &w->plag);
        spin_s += (double)LD(w->spin_ns) / 1e9;
    }
    for (long i = 0; i < run->nslow; i++) {
        struct conn *c = &run->conns[o->subs + o->pubs + i];
        r->slow_bytes += LD(c->rx) - c->base;
        r->slow_closed += c->slow_closed;
    }
    r->errors = LD(run->errs.count);
    r->setup_corrupt = LD(run->setup_corrupt);
    uint64_t *per_pub = calloc((size_t)o->pubs + 1, sizeof(*per_pub));
    if (!per_pub)
        die("out of memory");
    bool measured = win->cpu0.wall_ns != 0 && o->pubs > 0;
    for (long i = 0; measured && i < o->pubs; i++) {
        per_pub[i] = LD(run_pub(run, i)->pub->phase_written) / run->fmt.wire_pub;
        r->published += per_pub[i];
    }
    r->expected = r->published * (uint64_t)o->subs;
    for (long i = 0; measured && i < o->subs; i++) {
        struct conn *c = &run->conns[i];
        if (c->verify) {
            r->deliveries += c->m_valid;
            r->corrupt += c->corrupt;
            for (long p = 0; p < o->pubs; p++) {
                r->lost += seq_lost_final(&c->tracks[p], per_pub[p]);
                r->duplicated += c->tracks[p].duplicated;
                r->reordered += c->tracks[p].reordered;
            }
        } else {
            uint64_t bytes = LD(c->rx) - c->base;
            uint64_t d = bytes / wire_sub;
            /* A partial message at the end is corruption, unless the connection was cut (then
             * the message is simply lost). */
            if (bytes % wire_sub && LD(c->state) != CS_DEAD)
                r->corrupt++;
            r->deliveries += d;
            if (d < r->published)
                r->lost += r->published - d;
            else
                r->duplicated += d - r->published;
        }
    }
    free(per_pub);
    r->window_s = win->cpu0.wall_ns ? (double)ns_since(win->t_end, win->cpu0.wall_ns) / 1e9 : 0;
    r->server_cpu = -1;
    r->other_cpu = -1;
    if (r->window_s > 0) {
        r->deliveries_per_s = (double)r->deliveries / r->window_s;
        r->payload_mb_per_s = r->deliveries_per_s * (double)o->size / 1e6;
        double wall = (double)ns_since(win->cpu1.wall_ns, win->cpu0.wall_ns) / 1e9;
        r->flood_cpu = (win->cpu1.self_s - win->cpu0.self_s) / wall;
        r->spin_cpu = spin_s / wall;
        if (win->cpu0.server_s >= 0 && win->cpu1.server_s >= 0)
            r->server_cpu = (win->cpu1.server_s - win->cpu0.server_s) / wall;
        double others_wall = (double)ns_since(win->others1_at, win->others0_at) / 1e9;
        if (win->others0 >= 0 && win->others1 >= 0)
            r->other_cpu = (win->others1 - win->others0) / others_wall;
        r->softirqd_cpu = (win->cpu1.softirqd_s - win->cpu0.softirqd_s) / wall;
    }
    static const double pcts[LAT_N] = {50, 90, 99, 99.9, 99.99, 100};
    r->lat_samples = run->lat.total;
    for (int i = 0; i < LAT_N; i++)
        r->lat_us[i] = (double)hist_percentile(&run->lat, pcts[i]) / 1e3;
    static const double opcts[OVH_N] = {50, 90, 99, 99.9, 100};
    r->drv_samples = run->drv.total;
    r->plag_samples = run->plag.total;
    for (int i = 0; i < OVH_N; i++) {
        r->drv_us[i] = (double)hist_percentile(&run->drv, opcts[i]) / 1e3;
        r->plag_us[i] = (double)hist_percentile(&run->plag, opcts[i]) / 1e3;
    }
    r->server_rss_start = win->server_rss_start;
    r->server_rss_end = win->server_rss_end;
    r->server_fds_start = win->server_fds_start;
    r->server_fds_end = win->server_fds_end;
}

void report_summary(const struct flood_opts *o, const struct results *r)
{
    char rate[32];
    run_fmt_rate(rate, sizeof(rate), r->deliveries_per_s);
    fprintf(stderr,
            "flood: --- %s, %ld subs (%ld verified), %ld pubs, %zu B, rate %g, %s reads ---\n"
            "flood: window %.2f s, published %" PRIu64 ", deliveries %" PRIu64 " of %" PRIu64
            " (%s/s, %.1f MB/s)\n"
            "flood: lost %" PRIu64 ", duplicated %" PRIu64 ", reordered %" PRIu64
            ", corrupt %" PRIu64 ", errors %" PRIu64 "\n",
            proto_name(o->proto), o->subs, o->verify, o->pubs, o->size, o->rate,
            cli_read_mode_name(o->read_mode), r->window_s, r->published, r->deliveries, r->expected,
            rate, r->payload_mb_per_s, r->lost, r->duplicated, r->reordered, r->corrupt, r->errors);
    if (r->lat_samples)
        fprintf(stderr,
                "flood: latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  p99.99 %.1f  max "
                "%.1f  (%" PRIu64 " samples)\n",
                r->lat_us[LAT_P50], r->lat_us[LAT_P90], r->lat_us[LAT_P99], r->lat_us[LAT_P999],
                r->lat_us[LAT_P9999], r->lat_us[LAT_MAX], r->lat_samples);
    if (r->drv_samples)
        fprintf(stderr,
                "flood: driver overhead us: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f; publisher "
                "lateness us: p50 %.1f  p99 %.1f  max %.1f\n",
                r->drv_us[OVH_P50], r->drv_us[OVH_P99], r->drv_us[OVH_P999], r->drv_us[OVH_MAX],
                r->plag_us[OVH_P50], r->plag_us[OVH_P99], r->plag_us[OVH_MAX]);
    if (o->slow_subs)
        fprintf(stderr,
                "flood: slow subscribers: %ld at %g B/s received %" PRIu64 " bytes, %" PRIu64
                " disconnected by the relay\n",
                o->slow_subs, o->slow_rate, r->slow_bytes, r->slow_closed);
    if (o->churn > 0)
        fprintf(stderr, "flood: churn: %" PRIu64 " connects (%" PRIu64 " failed) at %g/s\n",
                r->churn_connects, r->churn_failed, o->churn);
    if (r->server_cpu >= 0)
        fprintf(stderr, "flood: cpu: flood %.2f cores, server %.2f cores\n", r->flood_cpu,
                r->server_cpu);
    else
        fprintf(stderr, "flood: cpu: flood %.2f cores\n", r->flood_cpu);
}

/* ---- --repeat: the figures summarised over runs ---- */

/* The figures a repetition summarises (in the JSON's "runs" and "spread", in this order). */
enum figure {
    FIG_PUBLISHED,
    FIG_EXPECTED,
    FIG_DELIVERIES,
    FIG_LOST,
    FIG_DUPLICATED,
    FIG_REORDERED,
    FIG_CORRUPT,
    FIG_ERRORS,
    FIG_WINDOW_S,
    FIG_DELIVERIES_PER_S,
    FIG_PAYLOAD_MB_PER_S,
    FIG_FLOOD_CPU,
    FIG_SERVER_CPU,
    FIG_OTHER_CPU,
    FIG_SOFTIRQD_CPU,
    FIG_P50,
    FIG_P90,
    FIG_P99,
    FIG_P999,
    FIG_P9999,
    FIG_MAX,
    FIG_DRV_P50,
    FIG_DRV_P99,
    FIG_DRV_P999,
    FIG_DRV_MAX,
    FIG_PLAG_P99,
    FIG_SPIN_CPU,
    NFIG
};

#define U64(f, name) [f] = {#name, offsetof(struct results, name), true}
#define DBL(f, name) [f] = {#name, offsetof(struct results, name), false}
#define LAT(f, name, i)                                                                            \
    [f] = {#name, offsetof(struct results, lat_us) + (i) * sizeof(double), false}
#define OVH(f, name, field, i)                                                                     \
    [f] = {#name, offsetof(struct results, field) + (i) * sizeof(double), false}
static const struct {
    const char *name;
    size_t off;
    bool u64;
} figures[NFIG] = {
    U64(FIG_PUBLISHED, published),
    U64(FIG_EXPECTED, expected),
    U64(FIG_DELIVERIES, deliveries),
    U64(FIG_LOST, lost),
    U64(FIG_DUPLICATED, duplicated),
    U64(FIG_REORDERED, reordered),
    U64(FIG_CORRUPT, corrupt),
    U64(FIG_ERRORS, errors),
    DBL(FIG_WINDOW_S, window_s),
    DBL(FIG_DELIVERIES_PER_S, deliveries_per_s),
    DBL(FIG_PAYLOAD_MB_PER_S, payload_mb_per_s),
    DBL(FIG_FLOOD_CPU, flood_cpu),
    DBL(FIG_SERVER_CPU, server_cpu),
    DBL(FIG_OTHER_CPU, other_cpu),
    DBL(FIG_SOFTIRQD_CPU, softirqd_cpu),
    LAT(FIG_P50, p50, LAT_P50),
    LAT(FIG_P90, p90, LAT_P90),
    LAT(FIG_P99, p99, LAT_P99),
    LAT(FIG_P999, p999, LAT_P999),
    LAT(FIG_P9999, p9999, LAT_P9999),
    LAT(FIG_MAX, max, LAT_MAX),
    OVH(FIG_DRV_P50, driver_overhead_p50, drv_us, OVH_P50),
    OVH(FIG_DRV_P99, driver_overhead_p99, drv_us, OVH_P99),
    OVH(FIG_DRV_P999, driver_overhead_p999, drv_us, OVH_P999),
    OVH(FIG_DRV_MAX, driver_overhead_max, drv_us, OVH_MAX),
    OVH(FIG_PLAG_P99, pub_lag_p99, plag_us, OVH_P99),
    [FIG_SPIN_CPU] = {"flood_spin_cpu", offsetof(struct results, spin_cpu), false},
};

static double fig_get(const struct results *r, enum figure k)
{
    const char *p = (const char *)r + figures[k].off;
    if (figures[k].u64) {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return (double)v;
    }
    double v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static void fig_set(struct results *r, enum figure k, double v)
{
    char *p = (char *)r + figures[k].off;
    if (figures[k].u64) {
        uint64_t u = (uint64_t)(v + 0.5);
        memcpy(p, &u, sizeof(u));
    } else {
        memcpy(p, &v, sizeof(v));
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* med gets the median of every figure over the runs (the rest from the last run); lo/hi the
 * extremes. */
static void summarise(const struct results *runs, long n, struct results *med, double *lo,
                      double *hi)
{
    double *v = malloc((size_t)n * sizeof(*v));
    if (!v)
        die("out of memory");
    *med = runs[n - 1];
    for (int k = 0; k < NFIG; k++) {
        for (long i = 0; i < n; i++)
            v[i] = fig_get(&runs[i], (enum figure)k);
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        fig_set(med, (enum figure)k, n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
        lo[k] = v[0];
        hi[k] = v[n - 1];
    }
    free(v);
}

/* ---- the JSON result ---- */

static void json_config(struct json *j, const struct flood_opts *o)
{
    json_begin_object(j, "config", false);
    json_string(j, "proto", proto_name(o->proto));
    json_string(j, "host", o->host);
    json_i64(j, "port", o->port);
    json_i64(j, "subs", o->subs);
    json_i64(j, "pubs", o->pubs);
    json_u64(j, "size", o->size);
    json_general(j, "rate", o->rate, 6);
    if (o->count_mode) {
        json_null(j, "duration");
        json_u64(j, "count", o->count);
    } else {
        json_general(j, "duration", o->duration, 6);
        json_null(j, "count");
    }
    json_general(j, "warmup", o->warmup, 6);
    json_i64(j, "verify", o->verify);
    json_general(j, "connect_rate", o->connect_rate, 6);
    json_i64(j, "threads", o->threads);
    json_general(j, "drain_timeout", o->drain_timeout, 6);
    json_string(j, "read_mode", cli_read_mode_name(o->read_mode));
    json_u64(j, "rcvlowat", o->rcvlowat);
    json_u64(j, "rcvbuf", o->rcvbuf);
    json_general(j, "read_interval_us", o->read_interval_us, 6);
    json_general(j, "spin_us", o->spin_us, 6);
    /* copy_reads: byte counters copy (--read-mode copy or lowat), kept for older readers */
    json_bool(j, "copy_reads", o->read_mode != READ_TRUNC);
    json_bool(j, "expect_lossless", o->expect_lossless);
    json_i64(j, "slow_subs", o->slow_subs);
    json_general(j, "slow_rate", o->slow_rate, 6);
    json_general(j, "churn", o->churn, 6);
    json_i64(j, "repeat", o->repeat);
    json_string(j, "channel", o->channel);
    json_bool(j, "tls", o->tls);
    json_bool(j, "tls_insecure", o->tls_insecure);
    json_string(j, "tls_ca", o->tls_ca);
    json_string(j, "tls_servername", o->tls_servername);
    json_bool(j, "auth", o->auth != NULL); /* never the token */
    if (o->server_pid)
        json_i64(j, "server_pid", o->server_pid);
    else
        json_null(j, "server_pid");
    json_string(j, "json", o->json);
    json_end_object(j);
}

static void json_cpu(struct json *j, const char *key, double v)
{
    if (v >= 0)
        json_fixed(j, key, v, 4);
    else
        json_null(j, key);
}

/* driver_overhead_us, pub_lag_us: {"p50", "p90", "p99", "p999", "max", "samples"}, the
 * percentiles null without samples. */
static void json_small_hist(struct json *j, const char *key, const double *us, uint64_t samples)
{
    static const char *const names[OVH_N] = {"p50", "p90", "p99", "p999", "max"};
    json_begin_object(j, key, false);
    for (int i = 0; i < OVH_N; i++) {
        if (samples)
            json_fixed(j, names[i], us[i], 1);
        else
            json_null(j, names[i]);
    }
    json_u64(j, "samples", samples);
    json_end_object(j);
}

static void json_results(struct json *j, const struct flood *run, const struct results *r)
{
    const struct flood_opts *o = run->o;
    json_config(j, o);
    json_string(j, "read_mode", cli_read_mode_name(o->read_mode));
    json_bool(j, "tls", o->tls);
    json_string(j, "tls_cipher", tls_cipher(run->tls));
    json_begin_object(j, "wire_size", false);
    json_u64(j, "publish", run->fmt.wire_pub);
    json_u64(j, "deliver", run->fmt.wire_sub);
    json_end_object(j);
    json_fixed(j, "window_s", r->window_s, 6);
    json_u64(j, "published", r->published);
    json_u64(j, "expected_deliveries", r->expected);
    json_u64(j, "deliveries", r->deliveries);
    json_fixed(j, "deliveries_per_s", r->deliveries_per_s, 1);
    json_fixed(j, "payload_mb_per_s", r->payload_mb_per_s, 3);
    json_u64(j, "lost", r->lost);
    json_u64(j, "duplicated", r->duplicated);
    json_u64(j, "reordered", r->reordered);
    json_u64(j, "corrupt", r->corrupt);
    static const char *const names[LAT_N] = {"p50", "p90", "p99", "p999", "p9999", "max"};
    json_begin_object(j, "latency_us", false);
    for (int i = 0; i < LAT_N; i++) {
        if (r->lat_samples)
            json_fixed(j, names[i], r->lat_us[i], 1);
        else
            json_null(j, names[i]);
    }
    json_u64(j, "samples", r->lat_samples);
    json_end_object(j);
    json_small_hist(j, "driver_overhead_us", r->drv_us, r->drv_samples);
    json_small_hist(j, "pub_lag_us", r->plag_us, r->plag_samples);
    json_u64(j, "errors", r->errors);
    json_begin_array(j, "error_messages", false);
    for (int i = 0; i < run->errs.n; i++)
        json_string(j, NULL, run->errs.msgs[i]);
    json_end_array(j);
    json_u64(j, "setup_corrupt", r->setup_corrupt);
    json_u64(j, "sub_reads", r->sub_reads);
    if (o->slow_subs) {
        json_begin_object(j, "slow_subs", false);
        json_i64(j, "count", o->slow_subs);
        json_general(j, "rate_bytes_per_s", o->slow_rate, 6);
        json_u64(j, "bytes", r->slow_bytes);
        json_u64(j, "disconnected", r->slow_closed);
        json_end_object(j);
    } else {
        json_null(j, "slow_subs");
    }
    if (o->churn > 0) {
        json_begin_object(j, "churn", false);
        json_general(j, "rate", o->churn, 6);
        json_u64(j, "connects", r->churn_connects);
        json_u64(j, "failed", r->churn_failed);
        json_end_object(j);
    } else {
        json_null(j, "churn");
    }
    json_fixed(j, "flood_cpu", r->flood_cpu, 4);
    json_fixed(j, "flood_spin_cpu", r->spin_cpu, 4);
    json_cpu(j, "server_cpu", r->server_cpu);
    json_cpu(j, "other_cpu", r->other_cpu);
    json_fixed(j, "softirqd_cpu", r->softirqd_cpu, 4);
    if (o->server_pid) {
        json_begin_object(j, "server_rss_kb", false);
        json_i64(j, "start", r->server_rss_start);
        json_i64(j, "end", r->server_rss_end);
        json_end_object(j);
        json_begin_object(j, "server_fds", false);
        json_i64(j, "start", r->server_fds_start);
        json_i64(j, "end", r->server_fds_end);
        json_end_object(j);
    } else {
        json_null(j, "server_rss_kb");
        json_null(j, "server_fds");
    }
}

int report_json(FILE *f, const struct flood *last, const struct results *runs, long n)
{
    struct json j;
    json_init(&j, f);
    json_begin_object(&j, NULL, true);
    if (n == 1) {
        json_results(&j, last, &runs[0]);
    } else {
        /* The medians under the usual keys, then every run and the spread. */
        struct results med;
        double lo[NFIG], hi[NFIG];
        summarise(runs, n, &med, lo, hi);
        json_results(&j, last, &med);
        json_begin_array(&j, "runs", true);
        for (long i = 0; i < n; i++) {
            json_begin_object(&j, NULL, false);
            for (int k = 0; k < NFIG; k++)
                json_general(&j, figures[k].name, fig_get(&runs[i], (enum figure)k), 6);
            json_end_object(&j);
        }
        json_end_array(&j);
        json_begin_object(&j, "spread", false);
        for (int k = 0; k < NFIG; k++) {
            json_begin_object(&j, figures[k].name, false);
            json_general(&j, "min", lo[k], 6);
            json_general(&j, "max", hi[k], 6);
            json_end_object(&j);
        }
        json_end_object(&j);
        fprintf(stderr,
                "flood: median of %ld runs: %.0f deliveries/s (%.0f to %.0f), p99 %.1f us, "
                "driver overhead p99 %.1f us\n",
                n, med.deliveries_per_s, lo[FIG_DELIVERIES_PER_S], hi[FIG_DELIVERIES_PER_S],
                med.lat_us[LAT_P99], med.drv_us[OVH_P99]);
    }
    json_end_object(&j);
    return json_end(&j);
}

/* The percentile distribution as HdrHistogram's outputPercentileDistribution prints it (5 ticks
 * per half distance, values in microseconds), so its plotting tools read it. */
int report_hist(const char *path, const struct hist *h)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const double scale = 1e3;
    fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    uint64_t cum = 0;
    size_t last = 0;
    double level = 0;
    for (size_t b = 0; h->total && b < h->nbuckets; b++) {
        if (!h->counts[b])
            continue;
        last = b;
        cum += h->counts[b];
        double here = 100.0 * (double)cum / (double)h->total;
        uint64_t v = hist_bucket_high(b);
        if (v > h->max)
            v = h->max;
        while (here >= level && level < 100) {
            fprintf(f, "%12.3f %2.12f %10" PRIu64 " %14.2f\n", (double)v / scale, level / 100, cum,
                    1 / (1 - level / 100));
            double ticks = 5 * pow(2, floor(log2(100 / (100 - level))) + 1);
            level += 100 / ticks;
            if (cum == h->total)
                break;
        }
    }
    double mean = 0, var = 0;
    if (h->total) {
        fprintf(f, "%12.3f %2.12f %10" PRIu64 "\n", (double)h->max / scale, 1.0, h->total);
        mean = hist_mean(h) / scale;
        for (size_t b = 0; b <= last; b++) {
            if (!h->counts[b])
                continue;
            double mid = ((double)hist_bucket_low(b) + (double)hist_bucket_high(b)) / 2 / scale;
            var += (double)h->counts[b] * (mid - mean) * (mid - mean);
        }
        var /= (double)h->total;
    }
    fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", mean, sqrt(var));
    fprintf(f, "#[Max     = %12.3f, Total count    = %12" PRIu64 "]\n",
            (double)(h->total ? h->max : 0) / scale, h->total);
    fprintf(f, "#[Buckets = %12zu, SubBuckets     = %12d]\n", h->nbuckets, 2 << HIST_SUB_BITS);
    return fclose(f) == 0 ? 0 : -1;
}
