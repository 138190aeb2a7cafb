/*
 * Repeated AUTH failures from one address, slowed: a growing delay before the close. Pure, and a
 * fixed-size table (no state per failed client): a set-associative cache of addresses, keyed by
 * SipHash under a random key so a peer cannot choose addresses that evict one another; when a
 * set is full the address whose last failure is oldest gives way.
 *
 * The n-th failure (n >= 2) within AUTHPENALTY_MEMORY_NS of the previous one from the same
 * address waits min(AUTHPENALTY_BASE_NS * 2^(n-2), AUTHPENALTY_CAP_NS); the first waits nothing,
 * so an honest typo costs nothing. A delayed client keeps its connection slot (and its place in
 * --max-clients-per-ip) while it waits: that, not the delay alone, bounds how fast one address
 * can guess.
 */
#ifndef RINGCAST_AUTHPENALTY_H
#define RINGCAST_AUTHPENALTY_H

#include <stdint.h>

#include "ringcast/peercount.h" /* struct peercount_key: an address, IPv4 mapped */

#define AUTHPENALTY_SLOTS 1024u
#define AUTHPENALTY_WAYS 4u
#define AUTHPENALTY_BASE_NS (250ull * 1000 * 1000)
#define AUTHPENALTY_CAP_NS (4000ull * 1000 * 1000)
#define AUTHPENALTY_MEMORY_NS (60ull * 1000 * 1000 * 1000)

struct authpenalty_slot {
    struct peercount_key key;
    uint64_t last_ns;  /* its last failure; 0: free */
    uint32_t failures; /* in a row, each within AUTHPENALTY_MEMORY_NS of the one before */
};

struct authpenalty {
    struct authpenalty_slot *slots; /* AUTHPENALTY_SLOTS */
    uint8_t key[16];
};

/** Allocate the table; hashing under the 16-byte random @key. 0 or -ENOMEM. */
int authpenalty_init(struct authpenalty *p, const uint8_t key[16]);
/** Free it; safe on a zeroed @p and twice. */
void authpenalty_destroy(struct authpenalty *p);
/** Count a failure from @k at @now_ns (> 0); returns how long to wait before closing, in ns. */
uint64_t authpenalty_fail(struct authpenalty *p, const struct peercount_key *k, uint64_t now_ns);
/** The wait for the @n-th failure in a row. */
uint64_t authpenalty_delay(uint32_t n);

#endif
