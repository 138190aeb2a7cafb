/* A fixed-size table of addresses with recent AUTH failures (see authpenalty.h). */
#include "ringcast/authpenalty.h"

#include <errno.h>
#include <string.h>

#include "ringcast/alloc.h"
#include "ringcast/siphash.h"

int authpenalty_init(struct authpenalty *p, const uint8_t key[16])
{
    memcpy(p->key, key, sizeof(p->key));
    p->slots = rc_calloc(AUTHPENALTY_SLOTS, sizeof(*p->slots));
    return p->slots ? 0 : -ENOMEM;
}

void authpenalty_destroy(struct authpenalty *p)
{
    rc_free(p->slots);
    p->slots = NULL;
}

uint64_t authpenalty_delay(uint32_t n)
{
    if (n < 2)
        return 0;
    uint64_t d = AUTHPENALTY_BASE_NS; /* doubles until the cap: a few steps, whatever n is */
    for (uint32_t i = 2; i < n && d < AUTHPENALTY_CAP_NS; i++)
        d *= 2;
    return d < AUTHPENALTY_CAP_NS ? d : AUTHPENALTY_CAP_NS;
}

uint64_t authpenalty_fail(struct authpenalty *p, const struct peercount_key *k, uint64_t now_ns)
{
    const uint32_t sets = AUTHPENALTY_SLOTS / AUTHPENALTY_WAYS;
    uint32_t set = (uint32_t)siphash24(p->key, k->b, sizeof(k->b)) & (sets - 1);
    struct authpenalty_slot *ways = &p->slots[set * AUTHPENALTY_WAYS], *e = NULL;
    for (uint32_t w = 0; w < AUTHPENALTY_WAYS && !e; w++)
        if (ways[w].last_ns && !memcmp(&ways[w].key, k, sizeof(*k)))
            e = &ways[w];
    if (e && now_ns - e->last_ns > AUTHPENALTY_MEMORY_NS)
        e->failures = 0; /* long ago: a new start */
    if (!e) {
        e = &ways[0]; /* a free way, else the one that failed longest ago */
        for (uint32_t w = 1; w < AUTHPENALTY_WAYS; w++)
            if (ways[w].last_ns < e->last_ns)
                e = &ways[w];
        e->key = *k;
        e->failures = 0;
    }
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->last_ns = now_ns;
    return authpenalty_delay(e->failures);
}
