/* Open connections per peer address: a keyed, fixed-size, linear-probing hash table. */
#include "ringcast/peercount.h"

#include <errno.h>
#include <string.h>

#include "ringcast/alloc.h"

/* ===== SipHash-2-4 (Aumasson and Bernstein), as in the reference implementation ===== */

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t rotl(uint64_t x, int b)
{
    return x << b | x >> (64 - b);
}

struct sip {
    uint64_t v0, v1, v2, v3;
};

static void sip_round(struct sip *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static void sip_block(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

static uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    struct sip s = {
        .v0 = 0x736f6d6570736575ull ^ k0,
        .v1 = 0x646f72616e646f6dull ^ k1,
        .v2 = 0x6c7967656e657261ull ^ k0,
        .v3 = 0x7465646279746573ull ^ k1,
    };
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8)
        sip_block(&s, le64(in + i));
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        last |= (uint64_t)in[whole + i] << (8 * i);
    sip_block(&s, last);
    s.v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t peercount_siphash(const uint8_t key[16], const void *data, size_t len)
{
    return siphash(le64(key), le64(key + 8), data, len);
}

/* ===== the table ===== */

int peercount_init(struct peercount *p, uint32_t max_conns, const uint8_t key[16])
{
    memset(p, 0, sizeof(*p));
    /* Load at most 2/3: probes stay short, and one slot at least is always free, so every
     * probe ends. */
    uint64_t want = (uint64_t)max_conns * 3 / 2 + 1, cap = 8;
    while (cap < want)
        cap <<= 1;
    p->slots = rc_calloc(cap, sizeof(*p->slots));
    if (!p->slots)
        return -ENOMEM;
    p->mask = (uint32_t)(cap - 1);
    p->max_entries = max_conns;
    p->k0 = le64(key);
    p->k1 = le64(key + 8);
    return 0;
}

void peercount_destroy(struct peercount *p)
{
    rc_free(p->slots);
    memset(p, 0, sizeof(*p));
}

bool peercount_key_of(const union netaddr *a, struct peercount_key *out)
{
    memset(out, 0, sizeof(*out));
    switch (a->sa.sa_family) {
    case AF_INET:
        out->b[10] = out->b[11] = 0xff;
        memcpy(&out->b[12], &a->v4.sin_addr, 4);
        return true;
    case AF_INET6:
        memcpy(out->b, &a->v6.sin6_addr, 16);
        return true;
    default:
        return false;
    }
}

static uint32_t hash_of(const struct peercount *p, const struct peercount_key *k)
{
    return (uint32_t)siphash(p->k0, p->k1, k->b, sizeof(k->b));
}

/* @k's slot when it has one (*found), else the free slot that ends its probe. */
static uint32_t probe(const struct peercount *p, const struct peercount_key *k, uint32_t h,
                      bool *found)
{
    for (uint32_t i = h & p->mask;; i = (i + 1) & p->mask) {
        const struct peercount_slot *s = &p->slots[i];
        if (!s->count) {
            *found = false;
            return i;
        }
        if (s->hash == h && !memcmp(&s->key, k, sizeof(*k))) {
            *found = true;
            return i;
        }
    }
}

uint32_t peercount_get(const struct peercount *p, const struct peercount_key *k)
{
    if (!p->slots)
        return 0;
    bool found;
    uint32_t i = probe(p, k, hash_of(p, k), &found);
    return found ? p->slots[i].count : 0;
}

int64_t peercount_add(struct peercount *p, const struct peercount_key *k)
{
    if (!p->slots)
        return -ENOSPC;
    uint32_t h = hash_of(p, k);
    bool found;
    uint32_t i = probe(p, k, h, &found);
    struct peercount_slot *s = &p->slots[i];
    if (found)
        return ++s->count;
    if (p->entries >= p->max_entries)
        return -ENOSPC;
    s->key = *k;
    s->hash = h;
    s->count = 1;
    p->entries++;
    return 1;
}

int64_t peercount_remove(struct peercount *p, const struct peercount_key *k)
{
    if (!p->slots)
        return -ENOENT;
    bool found;
    uint32_t i = probe(p, k, hash_of(p, k), &found);
    if (!found)
        return -ENOENT;
    if (--p->slots[i].count)
        return p->slots[i].count;
    /* Backward shift instead of a tombstone: each later entry of the cluster whose probe passes
     * the hole moves into it, so the table never silts up with dead slots under churn. */
    for (uint32_t j = (i + 1) & p->mask; p->slots[j].count; j = (j + 1) & p->mask) {
        uint32_t home = p->slots[j].hash & p->mask;
        /* It stays only when its home lies after the hole, in (i, j]. */
        if (((j - home) & p->mask) >= ((j - i) & p->mask)) {
            p->slots[i] = p->slots[j];
            i = j;
        }
    }
    memset(&p->slots[i], 0, sizeof(p->slots[i]));
    p->entries--;
    return 0;
}
