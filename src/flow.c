/* Flow control: publishers follow the leading receiver. See flow.h for the rule and its reasons. */
#include "ringcast/flow.h"

void flow_init(struct flow *f, uint64_t pace)
{
    f->pace = pace;
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
    uint64_t reach = flow_leader_reach(f, origin, vhead);
    uint64_t need = units < f->pace ? units : f->pace;
    uint64_t lag = vhead > reach ? vhead - reach : 0;
    return lag + need <= f->pace;
}
