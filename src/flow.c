/* Flow control: publishers follow the leading receiver. See flow.h for the rule and its reasons. */
#include "ringcast/flow.h"

void flow_init(struct flow *f, uint64_t pace, uint64_t pack_window)
{
    *f = (struct flow){.pace = pace, .pack_window = pack_window, .pack_suspend = 8 * pack_window};
    flow_reset(f);
}

void flow_reset(struct flow *f)
{
    f->top[0] = f->top[1] = (struct flow_lead){.slot = FLOW_NONE, .reach = 0};
    f->stale = false;
}

void flow_advance(struct flow *f, uint32_t slot, uint64_t reach)
{
    struct flow_lead *t = f->top;
    if (t[0].slot == slot) {
        t[0].reach = reach;
        return;
    }
    if (t[1].slot == slot) {
        t[1].reach = reach;
    } else if (t[1].slot == FLOW_NONE || reach > t[1].reach) {
        /* Ties keep the incumbent: a client joining at the head of a caught-up relay does not
         * displace a leader, so connect/close churn rarely forces a rebuild. */
        t[1] = (struct flow_lead){.slot = slot, .reach = reach};
    } else {
        return;
    }
    if (t[0].slot == FLOW_NONE || t[1].reach > t[0].reach) {
        struct flow_lead tmp = t[0];
        t[0] = t[1];
        t[1] = tmp;
    }
}

void flow_forget(struct flow *f, uint32_t slot)
{
    if (slot == FLOW_NONE)
        return;
    if (f->top[0].slot == slot || f->top[1].slot == slot)
        f->stale = true; /* the third best is unknown: the owner rebuilds */
}

uint64_t flow_leader_reach(const struct flow *f, uint32_t origin, uint64_t vhead)
{
    const struct flow_lead *lead = &f->top[0];
    if (origin != FLOW_NONE && lead->slot == origin)
        lead = &f->top[1];
    return lead->slot == FLOW_NONE ? vhead : lead->reach;
}

bool flow_may_append(const struct flow *f, uint32_t origin, uint64_t vhead, uint64_t units)
{
    if (flow_pack_holds(f, vhead))
        return false;
    uint64_t reach = flow_leader_reach(f, origin, vhead);
    uint64_t need = units < f->pace ? units : f->pace;
    uint64_t lag = vhead > reach ? vhead - reach : 0;
    return lag + need <= f->pace;
}

void flow_pack_count(struct flow *f, uint32_t within, uint32_t receivers)
{
    /* The pacer, the rank-th most advanced, is within iff that many and one more are. */
    f->pack_behind = f->pack_window && receivers > 0 && within < flow_pack_rank(receivers) + 1;
}

static void swap_u64(uint64_t *a, uint64_t *b)
{
    uint64_t t = *a;
    *a = *b;
    *b = t;
}

uint64_t flow_pack_pacer(uint64_t *reach, size_t n)
{
    /* Quickselect for the k-th largest with a three-way partition (many receivers share the head's
     * position): O(n) on average, once per tick at most. */
    size_t k = flow_pack_rank(n), lo = 0, hi = n; /* the answer is in [lo, hi) */
    for (;;) {
        uint64_t pivot = reach[lo + (hi - lo) / 2];
        /* [lo, gt) > pivot, [gt, i) == pivot, [lt, hi) < pivot */
        size_t gt = lo, i = lo, lt = hi;
        while (i < lt) {
            if (reach[i] > pivot)
                swap_u64(&reach[i++], &reach[gt++]);
            else if (reach[i] < pivot)
                swap_u64(&reach[i], &reach[--lt]);
            else
                i++;
        }
        if (k < gt)
            hi = gt;
        else if (k >= lt)
            lo = lt;
        else
            return pivot;
    }
}

void flow_pack_tick(struct flow *f, uint64_t pacer, uint64_t vhead)
{
    if (!flow_pack_holds(f, vhead)) {
        f->pack_marked = false;
        return;
    }
    if (!f->pack_marked ||
        (pacer > f->pack_mark && pacer - f->pack_mark >= FLOW_PACK_MIN_PROGRESS)) {
        f->pack_mark = pacer; /* it started holding, or it moves: a new window */
        f->pack_marked = true;
        f->pack_still_ticks = 0;
        return;
    }
    if (pacer < f->pack_mark)
        f->pack_mark = pacer; /* receivers left: measure from here, the window goes on */
    if (++f->pack_still_ticks >= FLOW_PACK_STALL_TICKS) {
        /* Most receivers are stuck: stop waiting for them until the head has gone far enough
         * past them that the slow policy has met them. */
        f->pack_off_until = vhead + f->pack_suspend;
        f->pack_marked = false;
    }
}
