/* Unit tests of flood's latency histogram (bench/flood/hist.c) against known distributions: the
 * percentiles it reports must be within 1 % of the exact ones computed from the same samples. */
#include "hist.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define HIGHEST (60ULL * 1000000000ULL) /* 60 s in ns, as flood uses it */
#define N 200000

static const double pcts[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static double uniform01(void) /* (0, 1] */
{
    return ((double)(rng() >> 11) + 1) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact percentile as hist.h defines it: the ceil(pct/100 * n)-th smallest value. */
static uint64_t exact_pct(const uint64_t *sorted, size_t n, double pct)
{
    /* The ceiling of pct% of n, where pct's binary error (99.9 is a little above 99.9) does not
     * count: 99.9 % of 1,000,000 values is rank 999,000, not 999,001. */
    double want = pct / 100.0 * (double)n;
    size_t rank = (size_t)(want - 1e-9 * (double)n);
    if ((double)rank + 1e-9 * (double)n < want)
        rank++;
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

/* Records the samples, then checks every percentile, the extremes, the count and the mean. */
static void check_distribution(uint64_t *v, size_t n, const char *name)
{
    struct hist h;
    assert_int_equal(hist_init(&h, HIGHEST), 0);
    long double sum = 0;
    for (size_t i = 0; i < n; i++) {
        hist_record(&h, v[i]);
        sum += v[i];
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    assert_int_equal(h.total, n);
    assert_int_equal(h.min, v[0]);
    assert_int_equal(h.max, v[n - 1]);
    assert_int_equal(hist_percentile(&h, 0), v[0]);
    assert_int_equal(hist_percentile(&h, 100), v[n - 1]);
    double mean = (double)(sum / n);
    assert_true(fabs(hist_mean(&h) - mean) <= mean * 1e-9);
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        uint64_t want = exact_pct(v, n, pcts[i]);
        uint64_t got = hist_percentile(&h, pcts[i]);
        double err = fabs((double)got - (double)want) / (double)want;
        if (err > 0.01) {
            print_error("%s p%g: got %llu, exact %llu (%.3f %% off)\n", name, pcts[i],
                        (unsigned long long)got, (unsigned long long)want, err * 100);
            fail();
        }
        /* The value reported is the top of the bucket holding the exact one. */
        assert_true(got >= want);
    }
    hist_free(&h);
}

static void test_uniform(void **state)
{
    (void)state;
    uint64_t *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    /* 1 us to 1 s */
    for (size_t i = 0; i < N; i++)
        v[i] = 1000 + rng() % (1000000000ULL - 1000);
    check_distribution(v, N, "uniform");
    free(v);
}

static void test_exponential(void **state)
{
    (void)state;
    uint64_t *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    /* mean 100 us, plus a 5 us floor */
    for (size_t i = 0; i < N; i++)
        v[i] = 5000 + (uint64_t)(-log(uniform01()) * 100000.0);
    check_distribution(v, N, "exponential");
    free(v);
}

/* Almost everything at 50 us, a few at 5 s: the tail percentiles must find the spike. */
/* An exact rank boundary: 99.9 % of 1,000,000 values is the 999,000th, still in the spike. */
static void test_exact_rank_boundary(void **state)
{
    (void)state;
    struct hist h;
    assert_int_equal(hist_init(&h, HIGHEST), 0);
    hist_record_n(&h, 50000, 999000);
    hist_record_n(&h, 5000000000ULL, 1000);
    assert_true(hist_percentile(&h, 99.9) < 51000);
    assert_true(hist_percentile(&h, 99.91) >= 5000000000ULL * 99 / 100);
    hist_free(&h);
}

static void test_spike(void **state)
{
    (void)state;
    struct hist h;
    assert_int_equal(hist_init(&h, HIGHEST), 0);
    /* 999,100 at 50 us, 900 at 5 s: p99.9 (rank 999,000) is still 50 us, p99.99 is 5 s. (Not
     * exactly 999,000: flood computes the rank in floating point from 99.9, a double a little
     * above 99.9, and lands one rank higher at an exact boundary.) */
    hist_record_n(&h, 50000, 999100);
    hist_record_n(&h, 5000000000ULL, 900);
    assert_int_equal(h.total, 1000000);
    uint64_t p50 = hist_percentile(&h, 50), p999 = hist_percentile(&h, 99.9);
    uint64_t p9999 = hist_percentile(&h, 99.99);
    assert_true(p50 >= 50000 && p50 <= 50500);
    assert_true(p999 >= 50000 && p999 <= 50500);
    assert_true(p9999 >= 4950000000ULL && p9999 <= 5000000000ULL);
    assert_int_equal(hist_percentile(&h, 100), 5000000000ULL);
    assert_int_equal(h.max, 5000000000ULL);
    assert_int_equal(h.min, 50000);
    double mean = (50000.0 * 999100 + 5e9 * 900) / 1e6;
    assert_true(fabs(hist_mean(&h) - mean) < 1e-6 * mean);
    hist_free(&h);
}

/* Small values are exact. */
static void test_small_values_exact(void **state)
{
    (void)state;
    struct hist h;
    assert_int_equal(hist_init(&h, HIGHEST), 0);
    for (uint64_t v = 1; v <= 256; v++)
        hist_record(&h, v);
    for (uint64_t v = 1; v <= 256; v++)
        assert_int_equal(hist_percentile(&h, (double)v / 256.0 * 100.0), v);
    hist_free(&h);
}

static void test_merge(void **state)
{
    (void)state;
    struct hist a, b, all;
    assert_int_equal(hist_init(&a, HIGHEST), 0);
    assert_int_equal(hist_init(&b, HIGHEST), 0);
    assert_int_equal(hist_init(&all, HIGHEST), 0);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = 1000 + rng() % 10000000;
        hist_record(i % 3 ? &a : &b, v);
        hist_record(&all, v);
    }
    hist_record(&b, 3); /* a new minimum on one side only */
    hist_record(&all, 3);
    assert_int_equal(hist_merge(&a, &b), 0);
    assert_int_equal(a.total, all.total);
    assert_int_equal(a.min, 3);
    assert_int_equal(a.max, all.max);
    assert_memory_equal(a.counts, all.counts, all.nbuckets * sizeof(*all.counts));
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
        assert_int_equal(hist_percentile(&a, pcts[i]), hist_percentile(&all, pcts[i]));
    assert_true(fabs(hist_mean(&a) - hist_mean(&all)) < 1e-6 * hist_mean(&all));

    /* Merging an empty histogram changes nothing. */
    struct hist empty;
    assert_int_equal(hist_init(&empty, HIGHEST), 0);
    assert_int_equal(hist_merge(&a, &empty), 0);
    assert_int_equal(a.total, all.total);
    assert_int_equal(a.min, 3);

    /* Different ranges cannot be merged. */
    struct hist other;
    assert_int_equal(hist_init(&other, 1000000), 0);
    assert_int_equal(hist_merge(&a, &other), -1);
    hist_free(&a);
    hist_free(&b);
    hist_free(&all);
    hist_free(&empty);
    hist_free(&other);
}

static void test_clamping(void **state)
{
    (void)state;
    struct hist h;
    assert_int_equal(hist_init(&h, 1000000), 0); /* 1 ms */
    for (int i = 0; i < 99; i++)
        hist_record(&h, 500);
    hist_record(&h, 90000000000ULL); /* 90 s: beyond the range */
    assert_int_equal(h.clamped, 1);
    assert_int_equal(h.total, 100);
    assert_int_equal(h.max, 90000000000ULL); /* the exact maximum is kept */
    assert_int_equal(hist_percentile(&h, 100), 90000000000ULL);
    uint64_t p99 = hist_percentile(&h, 99); /* the top of 500's bucket */
    assert_true(p99 >= 500 && p99 <= 505);
    /* The clamped value sits in the last bucket: p99.5 reports at most the highest trackable
     * value's bucket, never more than the maximum. */
    uint64_t p = hist_percentile(&h, 99.5);
    assert_true(p >= 1000000 && p <= hist_bucket_high(h.nbuckets - 1));
    /* A value far beyond UINT32 and at the very top of uint64 is still recorded. */
    hist_record(&h, UINT64_MAX);
    assert_int_equal(h.clamped, 2);
    assert_int_equal(h.max, UINT64_MAX);
    hist_free(&h);
}

static void test_empty_and_reset(void **state)
{
    (void)state;
    struct hist h;
    assert_int_equal(hist_init(&h, HIGHEST), 0);
    assert_int_equal(h.total, 0);
    assert_int_equal(hist_percentile(&h, 50), 0);
    assert_int_equal(hist_percentile(&h, 100), 0);
    assert_true(hist_mean(&h) == 0);
    hist_record(&h, 12345);
    assert_int_equal(hist_percentile(&h, 50), 12345); /* capped at the exact maximum */
    hist_record_n(&h, 777, 0);                        /* n = 0 records nothing */
    assert_int_equal(h.total, 1);
    assert_int_equal(h.min, 12345);
    hist_reset(&h);
    assert_int_equal(h.total, 0);
    assert_int_equal(h.max, 0);
    assert_int_equal(h.min, UINT64_MAX);
    assert_int_equal(hist_percentile(&h, 99), 0);
    for (size_t i = 0; i < h.nbuckets; i++)
        assert_int_equal(h.counts[i], 0);
    hist_free(&h);
}

/* Bucket arithmetic: every value lies in its bucket, buckets are contiguous and never wider than
 * 1/128 of their lowest value (above the exact range). */
static void test_buckets(void **state)
{
    (void)state;
    size_t last = hist_bucket_of(HIGHEST);
    for (size_t b = 0; b < last; b++) {
        assert_true(hist_bucket_low(b) <= hist_bucket_high(b));
        assert_int_equal(hist_bucket_high(b) + 1, hist_bucket_low(b + 1));
        assert_int_equal(hist_bucket_of(hist_bucket_low(b)), b);
        assert_int_equal(hist_bucket_of(hist_bucket_high(b)), b);
        uint64_t lo = hist_bucket_low(b), width = hist_bucket_high(b) - lo + 1;
        if (lo >= 256)
            assert_true(width * 128 <= lo);
        else
            assert_int_equal(width, 1);
    }
    for (int i = 0; i < 100000; i++) {
        uint64_t v = rng() >> (rng() % 64);
        size_t b = hist_bucket_of(v);
        assert_true(hist_bucket_low(b) <= v && v <= hist_bucket_high(b));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_exponential),
        cmocka_unit_test(test_spike),
        cmocka_unit_test(test_exact_rank_boundary),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_clamping),
        cmocka_unit_test(test_empty_and_reset),
        cmocka_unit_test(test_buckets),
    };
    return cmocka_run_group_tests_name("flood_hist", tests, NULL, NULL);
}
