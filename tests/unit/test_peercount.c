/*
 * Connections per peer address: SipHash against its reference vectors, keys (IPv4, IPv6, mapped
 * IPv4), counting and removal, a full table, backward-shift deletion in forced collision chains
 * (also across the end of the table), allocation failure, and a randomised model against a plain
 * array.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/alloc.h"
#include "ringcast/peercount.h"
#include "ringcast/siphash.h"

static const uint8_t key_a[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t key_b[16] = {0x5a, 0x11, 0x07, 0xc3, 0x9e, 0x42, 0x01, 0x88,
                                  0x3d, 0xf0, 0x6b, 0x27, 0x90, 0x0e, 0xaa, 0x51};

static union netaddr v4(const char *s)
{
    union netaddr a;
    memset(&a, 0, sizeof(a));
    a.v4.sin_family = AF_INET;
    a.v4.sin_port = htons(4242);
    assert_int_equal(inet_pton(AF_INET, s, &a.v4.sin_addr), 1);
    return a;
}

static union netaddr v6(const char *s)
{
    union netaddr a;
    memset(&a, 0, sizeof(a));
    a.v6.sin6_family = AF_INET6;
    a.v6.sin6_port = htons(4343);
    assert_int_equal(inet_pton(AF_INET6, s, &a.v6.sin6_addr), 1);
    return a;
}

static struct peercount_key key_of(union netaddr a)
{
    struct peercount_key k;
    assert_true(peercount_key_of(&a, &k));
    return k;
}

/* 10.x.y.z from a number: distinct addresses to fill tables with. */
static struct peercount_key nth_v4(uint32_t n)
{
    char s[32];
    snprintf(s, sizeof(s), "10.%u.%u.%u", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    return key_of(v4(s));
}

static uint32_t home_of(const struct peercount *p, const uint8_t key[16],
                        const struct peercount_key *k)
{
    return (uint32_t)siphash24(key, k->b, sizeof(k->b)) & p->mask;
}

/* The table's invariants: entries counted right, each hash is its key's, and each entry is
 * reachable from its home slot without crossing a free one (what backward shift must keep). */
static void check_table(const struct peercount *p, const uint8_t key[16])
{
    uint32_t n = 0;
    for (uint32_t i = 0; i <= p->mask; i++) {
        const struct peercount_slot *s = &p->slots[i];
        if (!s->count) {
            static const struct peercount_slot zero;
            assert_memory_equal(s, &zero, sizeof(zero)); /* nothing left behind */
            continue;
        }
        n++;
        assert_int_equal(s->hash, (uint32_t)siphash24(key, s->key.b, sizeof(s->key.b)));
        for (uint32_t j = s->hash & p->mask; j != i; j = (j + 1) & p->mask)
            if (!p->slots[j].count)
                fail_msg("entry in slot %u (home %u) is cut off by free slot %u", i,
                         s->hash & p->mask, j);
        assert_int_equal(peercount_get(p, &s->key), s->count);
    }
    assert_int_equal(n, p->entries);
    assert_true(p->entries <= p->max_entries);
    /* Load at most 2/3, and one free slot at least. */
    assert_true((uint64_t)p->max_entries * 3 / 2 < (uint64_t)p->mask + 1);
}

/* ---- SipHash ------------------------------------------------------------------------------- */

static void test_peercount_siphash_vectors(void **state)
{
    (void)state;
    uint8_t msg[16];
    for (int i = 0; i < 16; i++)
        msg[i] = (uint8_t)i;
    /* The reference implementation's vectors (key 00..0f, message 00..len-1); the 15-byte one is
     * the paper's appendix A; the 16-byte one (the length the table hashes) from OpenSSL 3.0. */
    assert_true(siphash24(key_a, msg, 0) == 0x726fdb47dd0e0e31ull);
    assert_true(siphash24(key_a, msg, 1) == 0x74f839c593dc67fdull);
    assert_true(siphash24(key_a, msg, 8) == 0x93f5f5799a932462ull);
    assert_true(siphash24(key_a, msg, 15) == 0xa129ca6149be45e5ull);
    assert_true(siphash24(key_a, msg, 16) == 0x3f2acc7f57c29bdbull);
}

/* The key changes where addresses land: a peer that does not know it cannot aim collisions. */
static void test_peercount_key_moves_homes(void **state)
{
    (void)state;
    struct peercount pa, pb;
    assert_int_equal(peercount_init(&pa, 1000, key_a), 0);
    assert_int_equal(peercount_init(&pb, 1000, key_b), 0);
    assert_int_equal(pa.mask, pb.mask);
    int same = 0;
    for (uint32_t n = 0; n < 256; n++) {
        struct peercount_key k = nth_v4(n);
        same += home_of(&pa, key_a, &k) == home_of(&pb, key_b, &k);
    }
    assert_true(same < 16); /* about 256 / 2048 expected by chance */
    peercount_destroy(&pa);
    peercount_destroy(&pb);
}

/* ---- keys ---------------------------------------------------------------------------------- */

static void test_peercount_keys(void **state)
{
    (void)state;
    struct peercount_key a = key_of(v4("127.0.0.1")), m = key_of(v6("::ffff:127.0.0.1"));
    struct peercount_key b = key_of(v4("127.0.0.2")), l6 = key_of(v6("::1"));
    struct peercount_key g6 = key_of(v6("2001:db8::7f00:1"));
    /* A mapped IPv4 address is the IPv4 address; the port plays no part. */
    assert_memory_equal(&a, &m, sizeof(a));
    union netaddr other_port = v4("127.0.0.1");
    other_port.v4.sin_port = htons(1);
    struct peercount_key a2 = key_of(other_port);
    assert_memory_equal(&a, &a2, sizeof(a));
    assert_memory_not_equal(&a, &b, sizeof(a));
    assert_memory_not_equal(&a, &l6, sizeof(a));
    assert_memory_not_equal(&a, &g6, sizeof(a));
    /* Neither an unknown address nor another family has a key. */
    union netaddr u;
    memset(&u, 0, sizeof(u));
    struct peercount_key k;
    u.sa.sa_family = AF_UNSPEC;
    assert_false(peercount_key_of(&u, &k));
    u.sa.sa_family = AF_UNIX;
    assert_false(peercount_key_of(&u, &k));
}

/* ---- counting ------------------------------------------------------------------------------ */

static void test_peercount_counts_ipv4_ipv6_mapped(void **state)
{
    (void)state;
    struct peercount p;
    assert_int_equal(peercount_init(&p, 16, key_a), 0);
    struct peercount_key a = key_of(v4("127.0.0.1")), m = key_of(v6("::ffff:127.0.0.1"));
    struct peercount_key l6 = key_of(v6("::1")), g6 = key_of(v6("2001:db8::1"));
    assert_int_equal(peercount_get(&p, &a), 0);
    assert_int_equal(peercount_add(&p, &a), 1);
    assert_int_equal(peercount_add(&p, &m), 2); /* the same address through a dual-stack socket */
    assert_int_equal(peercount_add(&p, &l6), 1);
    assert_int_equal(peercount_add(&p, &g6), 1);
    assert_int_equal(peercount_add(&p, &g6), 2);
    assert_int_equal(p.entries, 3);
    assert_int_equal(peercount_get(&p, &m), 2);
    check_table(&p, key_a);

    assert_int_equal(peercount_remove(&p, &a), 1);
    assert_int_equal(peercount_remove(&p, &m), 0);
    assert_int_equal(p.entries, 2);
    assert_int_equal(peercount_get(&p, &a), 0);
    /* Removing what has no entry changes nothing. */
    assert_int_equal(peercount_remove(&p, &a), -ENOENT);
    assert_int_equal(p.entries, 2);
    assert_int_equal(peercount_remove(&p, &l6), 0);
    assert_int_equal(peercount_remove(&p, &g6), 1);
    assert_int_equal(peercount_remove(&p, &g6), 0);
    assert_int_equal(p.entries, 0);
    check_table(&p, key_a);
    peercount_destroy(&p);
    peercount_destroy(&p); /* twice is harmless */
}

/* max_entries addresses have entries: a new address is refused, known ones still count. */
static void test_peercount_full_table(void **state)
{
    (void)state;
    struct peercount p;
    const uint32_t max = 5;
    assert_int_equal(peercount_init(&p, max, key_a), 0);
    for (uint32_t n = 0; n < max; n++) {
        struct peercount_key k = nth_v4(n);
        assert_int_equal(peercount_add(&p, &k), 1);
    }
    struct peercount_key extra = nth_v4(max), first = nth_v4(0);
    assert_int_equal(peercount_add(&p, &extra), -ENOSPC);
    assert_int_equal(peercount_get(&p, &extra), 0);
    assert_int_equal(p.entries, max);
    assert_int_equal(peercount_add(&p, &first), 2);
    check_table(&p, key_a);
    /* An address whose count reaches 0 makes room. */
    struct peercount_key last = nth_v4(max - 1);
    assert_int_equal(peercount_remove(&p, &last), 0);
    assert_int_equal(peercount_add(&p, &extra), 1);
    assert_int_equal(peercount_add(&p, &last), -ENOSPC);
    check_table(&p, key_a);
    peercount_destroy(&p);
}

/* A zero-sized table holds nothing and refuses cleanly; an unset one too. */
static void test_peercount_empty_and_unset(void **state)
{
    (void)state;
    struct peercount p;
    assert_int_equal(peercount_init(&p, 0, key_a), 0);
    struct peercount_key k = nth_v4(1);
    assert_int_equal(peercount_add(&p, &k), -ENOSPC);
    assert_int_equal(peercount_get(&p, &k), 0);
    assert_int_equal(peercount_remove(&p, &k), -ENOENT);
    peercount_destroy(&p);
    struct peercount z = {0};
    assert_int_equal(peercount_get(&z, &k), 0);
    assert_int_equal(peercount_add(&z, &k), -ENOSPC);
    assert_int_equal(peercount_remove(&z, &k), -ENOENT);
    peercount_destroy(&z);
}

static void test_peercount_alloc_failure(void **state)
{
    (void)state;
    struct peercount p;
    rc_alloc_fail_after(1);
    assert_int_equal(peercount_init(&p, 100, key_a), -ENOMEM);
    rc_alloc_fail_after(0);
    peercount_destroy(&p);
}

/* ---- deletion: backward shift -------------------------------------------------------------- */

/* Up to @n distinct addresses whose home slot is @home, searched among 10.0.0.0/8. */
static uint32_t find_homed(const struct peercount *p, uint32_t home, struct peercount_key *out,
                           uint32_t n, uint32_t skip)
{
    uint32_t found = 0;
    for (uint32_t i = skip; i < (1u << 22) && found < n; i++) {
        struct peercount_key k = nth_v4(i);
        if (home_of(p, key_a, &k) == home)
            out[found++] = k;
    }
    return found;
}

/*
 * Entries A, B, C share home h (slots h, h+1, h+2) and D has home h+1 (pushed to h+3). Removing
 * A must move B to h, C to h+1 and D to h+2; every key stays reachable, and no slot is left
 * marked. With h at the last slot the chain wraps to slot 0.
 */
static void backward_shift_case(uint32_t h_from_end)
{
    struct peercount p;
    assert_int_equal(peercount_init(&p, 10, key_a), 0); /* 16 slots */
    uint32_t cap = p.mask + 1, h = cap - 1 - h_from_end;
    struct peercount_key same[3], next[1];
    assert_int_equal(find_homed(&p, h, same, 3, 0), 3);
    assert_int_equal(find_homed(&p, (h + 1) & p.mask, next, 1, 0), 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(peercount_add(&p, &same[i]), 1);
    assert_int_equal(peercount_add(&p, &next[0]), 1);
    assert_int_equal(peercount_add(&p, &next[0]), 2);
    assert_memory_equal(&p.slots[(h + 3) & p.mask].key, &next[0], sizeof(next[0]));
    check_table(&p, key_a);

    assert_int_equal(peercount_remove(&p, &same[0]), 0);
    assert_memory_equal(&p.slots[h].key, &same[1], sizeof(same[1]));
    assert_memory_equal(&p.slots[(h + 1) & p.mask].key, &same[2], sizeof(same[2]));
    assert_memory_equal(&p.slots[(h + 2) & p.mask].key, &next[0], sizeof(next[0]));
    assert_int_equal(p.slots[(h + 3) & p.mask].count, 0);
    assert_int_equal(peercount_get(&p, &next[0]), 2);
    check_table(&p, key_a);

    /* Removing from the middle: C's slot empties, D (home h+1) moves back into it. */
    assert_int_equal(peercount_remove(&p, &same[2]), 0);
    assert_memory_equal(&p.slots[(h + 1) & p.mask].key, &next[0], sizeof(next[0]));
    check_table(&p, key_a);
    assert_int_equal(peercount_remove(&p, &next[0]), 1);
    assert_int_equal(peercount_remove(&p, &next[0]), 0);
    assert_int_equal(peercount_remove(&p, &same[1]), 0);
    assert_int_equal(p.entries, 0);
    check_table(&p, key_a); /* every slot is zero again */
    peercount_destroy(&p);
}

static void test_peercount_backward_shift(void **state)
{
    (void)state;
    backward_shift_case(8);
}

static void test_peercount_backward_shift_wraps(void **state)
{
    (void)state;
    backward_shift_case(0); /* home = the last slot */
    backward_shift_case(1);
}

/* An entry whose home is after the hole must stay where it is. */
static void test_peercount_shift_keeps_entries_home(void **state)
{
    (void)state;
    struct peercount p;
    assert_int_equal(peercount_init(&p, 10, key_a), 0);
    struct peercount_key a[1], b[1];
    assert_int_equal(find_homed(&p, 3, a, 1, 0), 1);
    assert_int_equal(find_homed(&p, 4, b, 1, 0), 1);
    assert_int_equal(peercount_add(&p, &a[0]), 1);
    assert_int_equal(peercount_add(&p, &b[0]), 1);
    assert_int_equal(peercount_remove(&p, &a[0]), 0);
    assert_memory_equal(&p.slots[4].key, &b[0], sizeof(b[0]));
    assert_int_equal(p.slots[3].count, 0);
    check_table(&p, key_a);
    peercount_destroy(&p);
}

/* Churn on a small, crowded table: nothing silts up (no tombstones to run out of). */
static void test_peercount_churn_leaves_nothing(void **state)
{
    (void)state;
    struct peercount p;
    assert_int_equal(peercount_init(&p, 8, key_a), 0);
    for (uint32_t round = 0; round < 2000; round++) {
        for (uint32_t i = 0; i < 8; i++) {
            struct peercount_key k = nth_v4(round * 8 + i);
            assert_int_equal(peercount_add(&p, &k), 1);
        }
        check_table(&p, key_a);
        for (uint32_t i = 0; i < 8; i++) {
            struct peercount_key k = nth_v4(round * 8 + (i * 5 + round) % 8);
            assert_int_equal(peercount_remove(&p, &k), 0);
        }
        assert_int_equal(p.entries, 0);
    }
    check_table(&p, key_a);
    peercount_destroy(&p);
}

/* ---- randomised model ---------------------------------------------------------------------- */

static uint64_t rng;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define POOL 48

/* The reference: a count per pool address, and how many are non-zero. */
struct model {
    uint32_t count[POOL];
    uint32_t entries;
};

/*
 * Random adds and removes over a pool of IPv4, IPv6 and mapped-IPv4 addresses (each mapped one
 * the same address as an IPv4 one, presented either way at random), on a table that fills up:
 * every return value, every count and the invariants must match the model.
 */
static void model_run(uint64_t seed, uint32_t max, uint32_t ops)
{
    rng = seed;
    struct peercount p;
    assert_int_equal(peercount_init(&p, max, key_b), 0);
    union netaddr pool[POOL], alias[POOL];
    for (int i = 0; i < POOL; i++) {
        char s[64];
        switch (i % 3) {
        case 0:
            snprintf(s, sizeof(s), "192.0.2.%d", i);
            pool[i] = v4(s);
            snprintf(s, sizeof(s), "::ffff:192.0.2.%d", i);
            alias[i] = v6(s);
            break;
        case 1:
            snprintf(s, sizeof(s), "2001:db8::%x", i);
            pool[i] = alias[i] = v6(s);
            break;
        default:
            snprintf(s, sizeof(s), "fe80::%x:1", i);
            pool[i] = alias[i] = v6(s);
            alias[i].v6.sin6_scope_id = 2; /* ignored */
            break;
        }
    }
    struct model m = {0};
    for (uint32_t op = 0; op < ops; op++) {
        uint64_t r = next_rand();
        int i = (int)(r % POOL);
        struct peercount_key k = key_of((r >> 8) & 1 ? alias[i] : pool[i]);
        /* Adds slightly more often than removes, so the table reaches full and stays near it. */
        bool add = (r >> 9) % 100 < 55;
        if (add) {
            int64_t got = peercount_add(&p, &k);
            if (m.count[i] == 0 && m.entries == max) {
                assert_int_equal(got, -ENOSPC);
            } else {
                m.entries += m.count[i] == 0;
                assert_int_equal(got, ++m.count[i]);
            }
        } else {
            int64_t got = peercount_remove(&p, &k);
            if (m.count[i] == 0) {
                assert_int_equal(got, -ENOENT);
            } else {
                assert_int_equal(got, --m.count[i]);
                m.entries -= m.count[i] == 0;
            }
        }
        assert_int_equal(p.entries, m.entries);
        if (op % 64 == 0 || op + 1 == ops) {
            for (int j = 0; j < POOL; j++) {
                struct peercount_key kj = key_of(pool[j]), ka = key_of(alias[j]);
                assert_int_equal(peercount_get(&p, &kj), m.count[j]);
                assert_int_equal(peercount_get(&p, &ka), m.count[j]);
            }
            check_table(&p, key_b);
        }
    }
    /* Everything removed: the table is empty again. */
    for (int j = 0; j < POOL; j++) {
        struct peercount_key kj = key_of(pool[j]);
        while (m.count[j]) {
            assert_int_equal(peercount_remove(&p, &kj), --m.count[j]);
        }
    }
    assert_int_equal(p.entries, 0);
    check_table(&p, key_b);
    peercount_destroy(&p);
}

static void test_peercount_model_small_full(void **state)
{
    (void)state;
    model_run(0x9e3779b97f4a7c15ull, 12, 200000); /* 32 slots, often full */
}

static void test_peercount_model_roomy(void **state)
{
    (void)state;
    model_run(0x2545f4914f6cdd1dull, 40, 200000);
}

static void test_peercount_model_tiny(void **state)
{
    (void)state;
    model_run(0xd1b54a32d192ed03ull, 1, 50000); /* 8 slots, one address at a time */
    model_run(0xa0761d6478bd642full, 5, 100000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peercount_siphash_vectors),
        cmocka_unit_test(test_peercount_key_moves_homes),
        cmocka_unit_test(test_peercount_keys),
        cmocka_unit_test(test_peercount_counts_ipv4_ipv6_mapped),
        cmocka_unit_test(test_peercount_full_table),
        cmocka_unit_test(test_peercount_empty_and_unset),
        cmocka_unit_test(test_peercount_alloc_failure),
        cmocka_unit_test(test_peercount_backward_shift),
        cmocka_unit_test(test_peercount_backward_shift_wraps),
        cmocka_unit_test(test_peercount_shift_keeps_entries_home),
        cmocka_unit_test(test_peercount_churn_leaves_nothing),
        cmocka_unit_test(test_peercount_model_small_full),
        cmocka_unit_test(test_peercount_model_roomy),
        cmocka_unit_test(test_peercount_model_tiny),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
