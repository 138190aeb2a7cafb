/* Log-linear histogram: see hist.h. */
#include "hist.h"

#include <stdlib.h>
#include <string.h>

#define SUB_COUNT ((uint64_t)1 << HIST_SUB_BITS)

size_t hist_bucket_of(uint64_t value)
{
    if (value < 2 * SUB_COUNT)
        return (size_t)value;
    unsigned msb = 63u - (unsigned)__builtin_clzll(value);
    unsigned e = msb - HIST_SUB_BITS;
    return (size_t)((uint64_t)e * SUB_COUNT + (value >> e));
}

uint64_t hist_bucket_low(size_t bucket)
{
    if (bucket < 2 * SUB_COUNT)
        return bucket;
    uint64_t e = (bucket >> HIST_SUB_BITS) - 1;
    uint64_t q = bucket - e * SUB_COUNT;
    return q << e;
}

uint64_t hist_bucket_high(size_t bucket)
{
    if (bucket < 2 * SUB_COUNT)
        return bucket;
    uint64_t e = (bucket >> HIST_SUB_BITS) - 1;
    return hist_bucket_low(bucket) + (((uint64_t)1 << e) - 1);
}

int hist_init(struct hist *h, uint64_t highest)
{
    memset(h, 0, sizeof(*h));
    if (highest < 1)
        highest = 1;
    h->highest = highest;
    h->nbuckets = hist_bucket_of(highest) + 1;
    h->counts = calloc(h->nbuckets, sizeof(*h->counts));
    if (!h->counts)
        return -1;
    h->min = UINT64_MAX;
    return 0;
}

void hist_free(struct hist *h)
{
    free(h->counts);
    h->counts = NULL;
    h->nbuckets = 0;
}

void hist_reset(struct hist *h)
{
    if (h->counts)
        memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->clamped = 0;
    h->sum = 0;
}

void hist_record_n(struct hist *h, uint64_t value, uint64_t n)
{
    if (n == 0)
        return;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
    h->sum += (long double)value * (long double)n;
    h->total += n;
    uint64_t v = value;
    if (v > h->highest) {
        v = h->highest;
        h->clamped += n;
    }
    h->counts[hist_bucket_of(v)] += n;
}

void hist_record(struct hist *h, uint64_t value)
{
    hist_record_n(h, value, 1);
}

int hist_merge(struct hist *dst, const struct hist *src)
{
    if (dst->highest != src->highest || dst->nbuckets != src->nbuckets)
        return -1;
    for (size_t i = 0; i < src->nbuckets; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    dst->clamped += src->clamped;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

uint64_t hist_percentile(const struct hist *h, double pct)
{
    if (h->total == 0)
        return 0;
    if (pct <= 0)
        return h->min;
    if (pct >= 100)
        return h->max;
    /* The ceiling of pct% of the count, computed so that the binary error of pct (99.9 is a
     * little above 99.9) cannot push an exact rank to the next one. */
    long double want = (long double)pct / 100.0L * (long double)h->total;
    uint64_t rank = (uint64_t)(want - 1e-9L * (long double)h->total);
    if ((long double)rank + 1e-9L * (long double)h->total < want)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    if (h->total == 0)
        return 0;
    return (double)(h->sum / (long double)h->total);
}
