/* A log-linear latency histogram in the spirit of HdrHistogram: pure (no I/O), fixed memory.
 *
 * Values are unsigned integers in any unit (flood records nanoseconds). Values below 2^(SUB+1)
 * are kept exactly; above that, every power-of-two range is split into 2^SUB equal buckets, so a
 * bucket is never wider than 1/2^SUB of the values in it (SUB = 7: at most 0.78 %). Values above
 * the highest trackable value are clamped into the last bucket (and counted in `clamped`); the
 * exact minimum and maximum are kept separately. */
#ifndef FLOOD_HIST_H
#define FLOOD_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 7

struct hist {
    uint64_t highest;  /* highest trackable value (larger ones are clamped) */
    size_t nbuckets;   /* number of buckets */
    uint64_t *counts;  /* nbuckets counters */
    uint64_t total;    /* number of recorded values */
    uint64_t min, max; /* exact extremes (min is UINT64_MAX when empty) */
    uint64_t clamped;  /* values that were above `highest` */
    long double sum;   /* for the mean */
};

/* Prepares an empty histogram able to hold values up to `highest` (at least 1). Returns 0, or -1
 * when out of memory. */
int hist_init(struct hist *h, uint64_t highest);
void hist_free(struct hist *h);
void hist_reset(struct hist *h);

void hist_record(struct hist *h, uint64_t value);
void hist_record_n(struct hist *h, uint64_t value, uint64_t n);

/* Adds every count of `src` into `dst`; both must have been initialised with the same highest
 * value. Returns 0, or -1 when they differ. */
int hist_merge(struct hist *dst, const struct hist *src);

/* The value at percentile `pct` (0..100): the highest value equivalent to the bucket that holds
 * the ceil(pct/100 * total)-th smallest value, never above the exact maximum. 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double pct);
double hist_mean(const struct hist *h);

/* Bucket arithmetic, exposed for tests: the bucket of a value, and the lowest and highest values
 * that share a bucket. */
size_t hist_bucket_of(uint64_t value);
uint64_t hist_bucket_low(size_t bucket);
uint64_t hist_bucket_high(size_t bucket);

#endif
