/* Per-stream sequence accounting (one subscriber, one publisher), as issue 3 defines it. Pure.
 *
 * With e the next expected sequence number and s the one received: s = e is in order; s > e
 * counts s - e as lost (provisionally) and expects s + 1; s < e is a duplicate if s was seen,
 * otherwise it is a reordered message that had been counted lost, so lost falls by one and
 * reordered rises by one. The missing numbers are kept as a sorted list of ranges; past
 * SEQ_MAX_GAPS ranges the oldest are forgotten (a message from them that arrives later is then
 * counted as a duplicate, and `forgotten` says how many ranges that affected). */
#ifndef FLOOD_SEQ_H
#define FLOOD_SEQ_H

#include <stddef.h>
#include <stdint.h>

#define SEQ_MAX_GAPS 65536

struct seq_range {
    uint64_t lo, hi; /* inclusive */
};

struct seqtrack {
    uint64_t next;     /* e */
    uint64_t received; /* every message recorded (duplicates included) */
    uint64_t lost;     /* provisional: gaps still open */
    uint64_t duplicated;
    uint64_t reordered;
    uint64_t forgotten; /* gap ranges dropped because of SEQ_MAX_GAPS */
    struct seq_range *gaps;
    size_t ngaps, cap;
};

void seq_init(struct seqtrack *t);
void seq_free(struct seqtrack *t);
/* Records sequence number s. Returns 0, or -1 when out of memory (the gap is then forgotten). */
int seq_record(struct seqtrack *t, uint64_t s);
/* Lost at the end of a run in which `published` messages (0..published-1) were sent: the open
 * gaps plus the missing tail. */
uint64_t seq_lost_final(const struct seqtrack *t, uint64_t published);

#endif
