/* Per-stream sequence accounting: see seq.h. */
#include "seq.h"

#include <stdlib.h>
#include <string.h>

void seq_init(struct seqtrack *t)
{
    memset(t, 0, sizeof(*t));
}

void seq_free(struct seqtrack *t)
{
    free(t->gaps);
    memset(t, 0, sizeof(*t));
}

static void forget_oldest(struct seqtrack *t, size_t n)
{
    memmove(t->gaps, t->gaps + n, (t->ngaps - n) * sizeof(*t->gaps));
    t->ngaps -= n;
    t->forgotten += n;
}

static int insert_at(struct seqtrack *t, size_t i, uint64_t lo, uint64_t hi)
{
    if (t->ngaps == t->cap) {
        if (t->cap >= SEQ_MAX_GAPS) {
            size_t drop = t->ngaps / 2;
            if (i < drop)
                return 0; /* the new range itself is among the oldest: forget it */
            forget_oldest(t, drop);
            i -= drop;
        } else {
            size_t ncap = t->cap ? t->cap * 2 : 16;
            struct seq_range *g = realloc(t->gaps, ncap * sizeof(*g));
            if (!g) {
                t->forgotten++;
                return -1;
            }
            t->gaps = g;
            t->cap = ncap;
        }
    }
    memmove(t->gaps + i + 1, t->gaps + i, (t->ngaps - i) * sizeof(*t->gaps));
    t->gaps[i].lo = lo;
    t->gaps[i].hi = hi;
    t->ngaps++;
    return 0;
}

/* Index of the range holding s, or -1. */
static ptrdiff_t find_gap(const struct seqtrack *t, uint64_t s)
{
    size_t lo = 0, hi = t->ngaps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->gaps[mid].hi < s)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->ngaps && t->gaps[lo].lo <= s && s <= t->gaps[lo].hi)
        return (ptrdiff_t)lo;
    return -1;
}

int seq_record(struct seqtrack *t, uint64_t s)
{
    t->received++;
    if (s == t->next) {
        t->next++;
        return 0;
    }
    if (s > t->next) {
        t->lost += s - t->next;
        int rc = insert_at(t, t->ngaps, t->next, s - 1);
        t->next = s + 1;
        return rc;
    }
    ptrdiff_t gi = find_gap(t, s);
    if (gi < 0) {
        t->duplicated++;
        return 0;
    }
    size_t i = (size_t)gi;
    t->lost--;
    t->reordered++;
    struct seq_range *g = &t->gaps[i];
    if (g->lo == g->hi) {
        memmove(t->gaps + i, t->gaps + i + 1, (t->ngaps - i - 1) * sizeof(*t->gaps));
        t->ngaps--;
    } else if (s == g->lo) {
        g->lo++;
    } else if (s == g->hi) {
        g->hi--;
    } else {
        uint64_t hi = g->hi;
        g->hi = s - 1;
        return insert_at(t, i + 1, s + 1, hi);
    }
    return 0;
}

uint64_t seq_lost_final(const struct seqtrack *t, uint64_t published)
{
    uint64_t lost = t->lost;
    if (published > t->next)
        lost += published - t->next;
    return lost;
}
