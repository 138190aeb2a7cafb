/* Open connections per peer address: a keyed, fixed-size, linear-probing hash table. */
#include "ringcast/peercount.h"

#include <errno.h>
#include <string.h>

#include "ringcast/alloc.h"
#include "ringcast/siphash.h"

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
    memcpy(p->key, key, sizeof(p->key));
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
    return (uint32_t)siphash24(p->key, k->b, sizeof(k->b));
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
