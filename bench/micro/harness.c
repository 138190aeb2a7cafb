#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_run(const struct bench_case *c, int reps, int warmup_ms, struct bench_result *out)
{
    double end = now_ns() + warmup_ms * 1e6;
    while (now_ns() < end)
        bench_keep(c->body(c->ctx, c->ops));

    double *ns = calloc((size_t)reps, sizeof(*ns));
    double *gbs = calloc((size_t)reps, sizeof(*gbs));
    if (!ns || !gbs) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < reps; i++) {
        double t0 = now_ns();
        uint64_t bytes = c->body(c->ctx, c->ops);
        double dt = now_ns() - t0;
        ns[i] = dt / (double)c->ops;
        gbs[i] = bytes ? (double)bytes / dt : 0;
    }
    qsort(ns, (size_t)reps, sizeof(*ns), cmp_double);
    qsort(gbs, (size_t)reps, sizeof(*gbs), cmp_double);
    out->name = c->name;
    out->reps = reps;
    out->ns_per_op_median = ns[reps / 2];
    out->ns_per_op_min = ns[0];
    out->ns_per_op_max = ns[reps - 1];
    out->gb_per_s_median = gbs[reps / 2];
    free(ns);
    free(gbs);
}

void bench_print(const struct bench_result *r)
{
    fprintf(stderr, "%-34s %10.1f ns/op  [%.1f .. %.1f]", r->name, r->ns_per_op_median,
            r->ns_per_op_min, r->ns_per_op_max);
    if (r->gb_per_s_median > 0)
        fprintf(stderr, "  %7.2f GB/s", r->gb_per_s_median);
    fputc('\n', stderr);
}

void bench_json(const struct bench_result *r, size_t n, const char *path)
{
    FILE *f = path ? fopen(path, "w") : stdout;
    if (!f) {
        perror(path);
        return;
    }
    fprintf(f, "{\"benchmarks\": [\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f,
                "  {\"name\": \"%s\", \"reps\": %d, \"ns_per_op\": {\"median\": %.2f, \"min\": "
                "%.2f, \"max\": %.2f}, \"gb_per_s\": %.3f}%s\n",
                r[i].name, r[i].reps, r[i].ns_per_op_median, r[i].ns_per_op_min, r[i].ns_per_op_max,
                r[i].gb_per_s_median, i + 1 < n ? "," : "");
    fprintf(f, "]}\n");
    if (path)
        fclose(f);
}
