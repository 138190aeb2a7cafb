/*
 * Flow control: the two most advanced receivers, stale leaders, and whether a publisher may append
 * (its own reach excluded, echo counting everyone, the window, appends longer than the window);
 * the pack rule (its pacer's rank and threshold, holds, the tick that suspends a stuck pack, the
 * selection).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>

#include "ringcast/flow.h"

#define PACE 1000u

/* ---- leader tracking ----------------------------------------------------------------------- */

static void test_flow_init_has_no_receiver(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    assert_false(flow_stale(&f));
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 123), 123);
    assert_int_equal(flow_leader_reach(&f, 4, 77), 77);
}

static void test_flow_advance_tracks_leader(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 1, 100);
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 500), 100);
    flow_advance(&f, 2, 50);
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 500), 100);
    flow_advance(&f, 2, 300); /* the second overtakes the first */
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 500), 300);
    assert_int_equal(flow_leader_reach(&f, 2, 500), 100); /* 2 is not its own receiver */
    assert_int_equal(flow_leader_reach(&f, 1, 500), 300);
    /* A third more advanced than both: the least advanced of the two is forgotten. */
    flow_advance(&f, 3, 400);
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 500), 400);
    assert_int_equal(flow_leader_reach(&f, 3, 500), 300);
    /* A third between the two displaces the second. */
    flow_advance(&f, 4, 350);
    assert_int_equal(flow_leader_reach(&f, 3, 500), 350);
    /* One behind both changes nothing. */
    flow_advance(&f, 5, 10);
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 500), 400);
    assert_int_equal(flow_leader_reach(&f, 3, 500), 350);
    assert_false(flow_stale(&f));
}

/* The leader moving again stays the leader, and the second moving past it swaps them. */
static void test_flow_advance_same_slot_updates(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 7, 10);
    flow_advance(&f, 8, 5);
    flow_advance(&f, 7, 20);
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 100), 20);
    assert_int_equal(flow_leader_reach(&f, 7, 100), 5);
    flow_advance(&f, 8, 30);
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 100), 30);
    assert_int_equal(flow_leader_reach(&f, 8, 100), 20);
    assert_int_equal(flow_leader_reach(&f, 7, 100), 30);
}

/* Only one receiver: for itself there is none, so its appends are not held back by anyone. */
static void test_flow_single_receiver_is_not_its_own(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 1, 0);
    assert_int_equal(flow_leader_reach(&f, 1, 5000), 5000);
    assert_true(flow_may_append(&f, 1, 5000, 10));
    /* Echo: it receives its own frames, so it counts. */
    assert_false(flow_may_append(&f, FLOW_NONE, 5000, 10));
    /* Anyone else: it is the receiver. */
    assert_false(flow_may_append(&f, 2, 5000, 10));
}

static void test_flow_forget_leader_makes_stale(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 1, 100);
    flow_advance(&f, 2, 50);
    flow_advance(&f, 3, 10);
    /* Not one of the two tracked: nothing changes. */
    flow_forget(&f, 3);
    assert_false(flow_stale(&f));
    flow_forget(&f, 9);
    assert_false(flow_stale(&f));
    flow_forget(&f, FLOW_NONE);
    assert_false(flow_stale(&f));
    /* The second one leaving: the third best is unknown. */
    flow_forget(&f, 2);
    assert_true(flow_stale(&f));
    /* The owner rebuilds from the receivers that stay. */
    flow_reset(&f);
    assert_false(flow_stale(&f));
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 700), 700);
    flow_advance(&f, 1, 100);
    flow_advance(&f, 3, 10);
    assert_int_equal(flow_leader_reach(&f, 1, 700), 10);
    /* The leader leaving makes it stale too. */
    flow_forget(&f, 1);
    assert_true(flow_stale(&f));
}

static void test_flow_reset_forgets_everyone(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 1, 100);
    flow_advance(&f, 2, 200);
    flow_forget(&f, 2);
    flow_reset(&f);
    assert_false(flow_stale(&f));
    assert_int_equal(flow_leader_reach(&f, FLOW_NONE, 5000), 5000);
    assert_true(flow_may_append(&f, 1, 5000, PACE));
    /* The pace survives a reset. */
    flow_advance(&f, 3, 5000 - PACE);
    assert_true(flow_may_append(&f, 1, 5000, 0));
    assert_false(flow_may_append(&f, 1, 5000, 1));
}

/* Ties keep the incumbent: a receiver joining level with the leaders displaces neither. */
static void test_flow_ties_keep_incumbent(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 1, 100);
    flow_advance(&f, 2, 100);
    assert_int_equal(f.top[0].slot, 1);
    assert_int_equal(f.top[1].slot, 2);
    /* A third at the same reach: not tracked, so its leaving is no rebuild. */
    flow_advance(&f, 3, 100);
    assert_int_equal(f.top[0].slot, 1);
    assert_int_equal(f.top[1].slot, 2);
    flow_forget(&f, 3);
    assert_false(flow_stale(&f));
    /* The second drawing level with the first does not swap them... */
    flow_advance(&f, 1, 150);
    flow_advance(&f, 2, 150);
    assert_int_equal(f.top[0].slot, 1);
    assert_int_equal(f.top[1].slot, 2);
    /* ...one step past it does. */
    flow_advance(&f, 2, 151);
    assert_int_equal(f.top[0].slot, 2);
    assert_int_equal(f.top[1].slot, 1);
}

/* ---- may_append ---------------------------------------------------------------------------- */

static void test_flow_no_receiver_always_appends(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    assert_true(flow_may_append(&f, 1, 0, 1));
    assert_true(flow_may_append(&f, 1, 1u << 30, PACE));
    assert_true(flow_may_append(&f, FLOW_NONE, 1u << 30, 100 * PACE));
    assert_true(flow_may_append(&f, 1, UINT64_MAX / 2, UINT64_MAX / 4));
}

static void test_flow_may_append_window(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 2, 10000);
    /* Caught up: a whole window may go. */
    assert_true(flow_may_append(&f, 1, 10000, PACE));
    assert_true(flow_may_append(&f, 1, 10000, 1));
    assert_true(flow_may_append(&f, 1, 10000, 0));
    /* Lagging by 400: 600 more is the limit. */
    assert_true(flow_may_append(&f, 1, 10400, 600));
    assert_false(flow_may_append(&f, 1, 10400, 601));
    /* Lagging by the whole window: nothing but an empty append. */
    assert_true(flow_may_append(&f, 1, 10000 + PACE, 0));
    assert_false(flow_may_append(&f, 1, 10000 + PACE, 1));
    /* Lagging past it. */
    assert_false(flow_may_append(&f, 1, 10000 + 5 * PACE, 1));
}

/* The publisher is not its own receiver; FLOW_NONE (echo) counts everyone. */
static void test_flow_may_append_excludes_origin(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 1, 10000); /* the publisher itself is caught up */
    flow_advance(&f, 2, 8000);  /* its only receiver lags two windows */
    assert_false(flow_may_append(&f, 1, 10000, 1));
    assert_true(flow_may_append(&f, FLOW_NONE, 10000, PACE)); /* echo: 1 receives it too */
    assert_true(flow_may_append(&f, 2, 10000, PACE));         /* 2 publishing: 1 receives */
    assert_true(flow_may_append(&f, 3, 10000, PACE));         /* anyone else: 1 leads */
    /* The receiver catches up to within the window. */
    flow_advance(&f, 2, 9500);
    assert_true(flow_may_append(&f, 1, 10000, 500));
    assert_false(flow_may_append(&f, 1, 10000, 501));
}

/* An append longer than the window goes only when the leader is caught up, never stalls for good.
 */
static void test_flow_long_append_needs_caught_up_leader(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, 0);
    flow_advance(&f, 2, 5000);
    assert_true(flow_may_append(&f, 1, 5000, 10 * PACE));
    assert_true(flow_may_append(&f, 1, 5000, PACE + 1));
    assert_false(flow_may_append(&f, 1, 5001, PACE + 1));
    assert_false(flow_may_append(&f, 1, 5001, 10 * PACE));
    assert_false(flow_may_append(&f, FLOW_NONE, 5001, 10 * PACE));
    /* Its own lag does not matter. */
    flow_advance(&f, 1, 0);
    assert_true(flow_may_append(&f, 1, 5000, 10 * PACE));
    assert_false(flow_may_append(&f, FLOW_NONE, 5001, 10 * PACE));
    assert_true(flow_may_append(&f, FLOW_NONE, 5000, 10 * PACE));
    /* A reach past the head (cannot happen) counts as no lag, not a negative one. */
    assert_true(flow_may_append(&f, FLOW_NONE, 4000, PACE));
    assert_true(flow_may_append(&f, FLOW_NONE, 4000, 10 * PACE));
}

/* A zero window: only a caught-up leader lets anything through, and then anything goes. */
static void test_flow_zero_pace(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, 0, 0);
    assert_true(flow_may_append(&f, 1, 100, 50));
    flow_advance(&f, 2, 100);
    assert_true(flow_may_append(&f, 1, 100, 50));
    assert_false(flow_may_append(&f, 1, 101, 50));
    assert_false(flow_may_append(&f, 1, 101, 0));
    flow_advance(&f, 2, 101);
    assert_true(flow_may_append(&f, 1, 101, 1u << 20));
}

/* Randomized: the two tracked receivers are always the true best two (no forgets). */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

#define NRECV 8

static void test_flow_random_against_model(void **state)
{
    (void)state;
    rng_state = 0x853c49e6748fea9bull;
    for (int round = 0; round < 200; round++) {
        struct flow f;
        flow_init(&f, PACE, 0);
        uint64_t reach[NRECV];
        bool in[NRECV] = {false};
        uint64_t vhead = 0;
        for (int step = 0; step < 200; step++) {
            uint32_t s = (uint32_t)(rnd() % NRECV);
            switch (rnd() % 4) {
            case 0: /* join at head, or advance */
                if (!in[s]) {
                    in[s] = true;
                    reach[s] = vhead;
                } else {
                    reach[s] += rnd() % (vhead - reach[s] + 1);
                }
                flow_advance(&f, s, reach[s]);
                break;
            case 1: /* leave: the loop rebuilds when told to */
                if (!in[s])
                    break;
                in[s] = false;
                flow_forget(&f, s);
                if (flow_stale(&f)) {
                    flow_reset(&f);
                    for (uint32_t i = 0; i < NRECV; i++)
                        if (in[i])
                            flow_advance(&f, i, reach[i]);
                }
                break;
            default:
                vhead += rnd() % 300;
                break;
            }
            /* Model: for each origin, the best reach among the others. */
            for (uint32_t o = 0; o <= NRECV; o++) {
                uint32_t origin = o == NRECV ? FLOW_NONE : o;
                bool any = false;
                uint64_t best = 0;
                for (uint32_t i = 0; i < NRECV; i++) {
                    if (!in[i] || i == origin)
                        continue;
                    if (!any || reach[i] > best)
                        best = reach[i];
                    any = true;
                }
                uint64_t want = any ? best : vhead;
                uint64_t got = flow_leader_reach(&f, origin, vhead);
                if (got != want)
                    fail_msg("round %d step %d: leader for %u is %llu, want %llu", round, step,
                             origin, (unsigned long long)got, (unsigned long long)want);
                uint64_t units = rnd() % (2 * PACE);
                uint64_t need = units < PACE ? units : PACE;
                bool may = vhead - want + need <= PACE;
                assert_int_equal(flow_may_append(&f, origin, vhead, units), may);
            }
        }
    }
}

/* ---- the pack rule ------------------------------------------------------------------------- */

#define PACK 4000u

/* The pacer is nine tenths of the way down and never the slowest of three or more: the pack is
 * within the window iff rank + 1 receivers are. */
static void test_flow_pack_count_pacer_threshold(void **state)
{
    (void)state;
    static const struct {
        uint32_t n, rank;
    } ranks[] = {{1, 0}, {2, 0}, {3, 1}, {4, 2}, {5, 3}, {11, 9}, {21, 18}, {101, 90}, {1001, 900}};
    struct flow f;
    flow_init(&f, PACE, PACK);
    for (size_t i = 0; i < sizeof(ranks) / sizeof(ranks[0]); i++) {
        uint32_t n = ranks[i].n, need = ranks[i].rank + 1;
        assert_int_equal(flow_pack_rank(n), ranks[i].rank);
        flow_pack_count(&f, need, n);
        if (flow_pack_holds(&f, 10 * PACK))
            fail_msg("%u of %u within: the pack should not hold", need, n);
        flow_pack_count(&f, need - 1, n);
        if (!flow_pack_holds(&f, 10 * PACK))
            fail_msg("%u of %u within: the pack should hold", need - 1, n);
    }
    /* One receiver behind among three or more never holds; it takes a tenth of them. */
    for (uint32_t n = 3; n < 200; n++) {
        flow_pack_count(&f, n - 1, n);
        assert_false(flow_pack_holds(&f, 10 * PACK));
    }
    flow_pack_count(&f, 0, 0); /* no receiver: frames are consumed, never waited on */
    assert_false(flow_pack_holds(&f, 10 * PACK));
    assert_int_equal(flow_pack_floor(&f, 10 * PACK), 9 * PACK);
    assert_int_equal(flow_pack_floor(&f, PACK / 2), 0);
}

/* A holding pack stops appends even when the leader is caught up; a zero window is no rule. */
static void test_flow_pack_holds_appends(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, PACK);
    flow_advance(&f, 2, 5000);
    assert_true(flow_may_append(&f, 1, 5000, 10 * PACE));
    flow_pack_count(&f, 1, 3);
    assert_false(flow_may_append(&f, 1, 5000, 10 * PACE));
    assert_false(flow_may_append(&f, FLOW_NONE, 5000, 0));
    flow_pack_count(&f, 2, 3);
    assert_true(flow_may_append(&f, 1, 5000, 10 * PACE));

    flow_init(&f, PACE, 0);
    flow_advance(&f, 2, 5000);
    flow_pack_count(&f, 0, 3);
    assert_false(flow_pack_holds(&f, 5000));
    assert_true(flow_may_append(&f, 1, 5000, 10 * PACE));
}

/* A pack that moves is waited for; one that stops (less than the minimum for STALL_TICKS holding
 * ticks in a row) is suspended until the head has moved on by eight pack windows. */
static void test_flow_pack_tick_suspends_stuck_pack(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, PACK);
    uint64_t vhead = 100000, pacer = 50000;
    flow_pack_count(&f, 0, 5);
    flow_pack_tick(&f, pacer, vhead); /* first tick that sees it hold: a mark */
    /* A reader behind a full socket moves in steps: still for a few ticks, then a step. */
    for (int step = 0; step < 5; step++) {
        for (unsigned t = 0; t + 1 < FLOW_PACK_STALL_TICKS; t++)
            flow_pack_tick(&f, pacer + FLOW_PACK_MIN_PROGRESS - 1, vhead);
        assert_true(flow_pack_holds(&f, vhead));
        pacer += FLOW_PACK_MIN_PROGRESS;
        flow_pack_tick(&f, pacer, vhead);
        assert_true(flow_pack_holds(&f, vhead));
    }
    /* Then it stops: suspended at the STALL_TICKS-th still tick, not before. */
    for (unsigned t = 0; t + 1 < FLOW_PACK_STALL_TICKS; t++)
        flow_pack_tick(&f, pacer, vhead);
    assert_true(flow_pack_holds(&f, vhead));
    flow_pack_tick(&f, pacer, vhead);
    assert_false(flow_pack_holds(&f, vhead));
    assert_true(flow_may_append(&f, FLOW_NONE, vhead, PACE));
    /* Suspended while the head moves on, whatever the counts say... */
    flow_pack_count(&f, 0, 5);
    assert_false(flow_pack_holds(&f, vhead + 8 * PACK - 1));
    flow_pack_tick(&f, pacer, vhead + 8 * PACK - 1);
    assert_false(flow_pack_holds(&f, vhead + 8 * PACK - 1));
    /* ... and back once it has. */
    assert_true(flow_pack_holds(&f, vhead + 8 * PACK));
}

/* A tick that finds the pack not holding ends the window; a pacer that went back (its
 * receivers left) is measured from, without restarting the window. */
static void test_flow_pack_tick_window(void **state)
{
    (void)state;
    struct flow f;
    flow_init(&f, PACE, PACK);
    flow_pack_count(&f, 0, 5);
    for (unsigned t = 0; t + 1 < FLOW_PACK_STALL_TICKS; t++)
        flow_pack_tick(&f, 7, 100000);
    flow_pack_count(&f, 5, 5);
    flow_pack_tick(&f, 7, 100000); /* not holding: the window ends */
    flow_pack_count(&f, 0, 5);
    for (unsigned t = 0; t < FLOW_PACK_STALL_TICKS; t++) /* a new mark, then still ticks */
        flow_pack_tick(&f, 7, 100000);
    assert_true(flow_pack_holds(&f, 100000));
    flow_pack_tick(&f, 7, 100000);
    assert_false(flow_pack_holds(&f, 100000));

    flow_init(&f, PACE, PACK);
    flow_pack_count(&f, 0, 5);
    flow_pack_tick(&f, 90000, 100000);
    for (unsigned t = 0; t + 1 < FLOW_PACK_STALL_TICKS; t++)
        flow_pack_tick(&f, 10 + t, 100000); /* went back, then crawls from there */
    assert_true(flow_pack_holds(&f, 100000));
    flow_pack_tick(&f, 10 + FLOW_PACK_MIN_PROGRESS - 1, 100000);
    assert_false(flow_pack_holds(&f, 100000));
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The pacer is the rank-th largest, for any mix of distinct and equal positions. */
static void test_flow_pack_pacer_matches_sort(void **state)
{
    (void)state;
    rng_state = 0x9e3779b97f4a7c15ull;
    uint64_t v[300], sorted[300];
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + (size_t)(rnd() % 300);
        uint64_t spread = 1 + rnd() % (round % 3 == 0 ? 3 : 1000000); /* many ties, or few */
        for (size_t i = 0; i < n; i++)
            v[i] = sorted[i] = rnd() % spread;
        qsort(sorted, n, sizeof(sorted[0]), cmp_desc);
        uint64_t got = flow_pack_pacer(v, n);
        if (got != sorted[flow_pack_rank(n)])
            fail_msg("round %d: pacer of %zu is %llu, want %llu", round, n, (unsigned long long)got,
                     (unsigned long long)sorted[flow_pack_rank(n)]);
    }
    uint64_t one = 42;
    assert_int_equal(flow_pack_pacer(&one, 1), 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_init_has_no_receiver),
        cmocka_unit_test(test_flow_advance_tracks_leader),
        cmocka_unit_test(test_flow_advance_same_slot_updates),
        cmocka_unit_test(test_flow_single_receiver_is_not_its_own),
        cmocka_unit_test(test_flow_forget_leader_makes_stale),
        cmocka_unit_test(test_flow_reset_forgets_everyone),
        cmocka_unit_test(test_flow_ties_keep_incumbent),
        cmocka_unit_test(test_flow_no_receiver_always_appends),
        cmocka_unit_test(test_flow_may_append_window),
        cmocka_unit_test(test_flow_may_append_excludes_origin),
        cmocka_unit_test(test_flow_long_append_needs_caught_up_leader),
        cmocka_unit_test(test_flow_zero_pace),
        cmocka_unit_test(test_flow_random_against_model),
        cmocka_unit_test(test_flow_pack_count_pacer_threshold),
        cmocka_unit_test(test_flow_pack_holds_appends),
        cmocka_unit_test(test_flow_pack_tick_suspends_stuck_pack),
        cmocka_unit_test(test_flow_pack_tick_window),
        cmocka_unit_test(test_flow_pack_pacer_matches_sort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
