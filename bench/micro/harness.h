/*
 * A small benchmark harness of our own: each case runs a body over a batch of operations,
 * warms up, repeats, and reports the median and spread in ns per operation and GB/s.
 */
#ifndef RINGCAST_BENCH_HARNESS_H
#define RINGCAST_BENCH_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* One timed run: perform @ops operations, return the bytes they processed (0 if not relevant). */
typedef uint64_t (*bench_body_fn)(void *ctx, uint64_t ops);

struct bench_case {
    const char *name;
    bench_body_fn body;
    void *ctx;
    uint64_t ops; /* operations per repetition */
};

struct bench_result {
    const char *name;
    double ns_per_op_median, ns_per_op_min, ns_per_op_max;
    double gb_per_s_median;
    int reps;
};

/** Warm up for @warmup_ms, then run @reps repetitions. */
void bench_run(const struct bench_case *c, int reps, int warmup_ms, struct bench_result *out);

/** One human line on stderr. */
void bench_print(const struct bench_result *r);

/** Results as one JSON object ({"benchmarks": [...]}) on @f. */
void bench_json(const struct bench_result *r, size_t n, const char *path);

/** Keep the compiler from optimising a value away. */
static inline void bench_keep(uint64_t v)
{
    __asm__ volatile("" : : "r"(v) : "memory");
}

#endif
