/*
 * Open connections per peer address, for --max-clients-per-ip. Pure: no I/O, and no allocation
 * after peercount_init.
 *
 * A fixed open-addressing table (linear probing, backward-shift deletion: no tombstones), sized
 * at init for the most connections that can be counted at once, so memory is bounded whatever
 * peers do; an address's entry goes when its count returns to 0. Addresses are hashed with
 * SipHash-2-4 under a key the caller draws at random, so a remote peer cannot choose addresses
 * that collide in the table (which would make every lookup walk one long cluster).
 *
 * IPv4 addresses are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d), so a client reaching a
 * dual-stack listener counts as the IPv4 address it is. IPv6 addresses count whole (no prefix
 * grouping), and the scope id of a link-local address is ignored.
 */
#ifndef RINGCAST_PEERCOUNT_H
#define RINGCAST_PEERCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/netaddr.h"

/* An address as the table keys it: 16 bytes, IPv4 mapped into IPv6. */
struct peercount_key {
    uint8_t b[16];
};

/* One slot: free when count is 0. */
struct peercount_slot {
    struct peercount_key key;
    uint32_t hash;  /* low bits: the home slot; kept so deletion never hashes again */
    uint32_t count; /* open connections from key */
};

struct peercount {
    /* read-only */
    uint32_t entries;     /* addresses with a count > 0 */
    uint32_t max_entries; /* the most addresses it holds (peercount_init's @max_conns) */
    /* private */
    struct peercount_slot *slots;
    uint32_t mask;   /* slots - 1; slots is a power of two, more than max_entries * 3 / 2 */
    uint8_t key[16]; /* SipHash key */
};

/**
 * Size @p for @max_conns connections counted at once (at most that many addresses, so a table
 * whose caller counts only connections it holds can never be full), hashing under the 16-byte
 * @key (random, drawn by the caller). Returns 0 or -ENOMEM (@p is then safe to destroy).
 */
int peercount_init(struct peercount *p, uint32_t max_conns, const uint8_t key[16]);

/** Free the table; safe on a zeroed or partly initialised @p, and twice. */
void peercount_destroy(struct peercount *p);

/**
 * The key for @a: true for AF_INET and AF_INET6 (an IPv4-mapped IPv6 address gives the same key
 * as the IPv4 one); false for anything else (AF_UNSPEC: the address is unknown).
 */
bool peercount_key_of(const union netaddr *a, struct peercount_key *out);

/** Open connections counted for @k (0 when it has no entry). */
uint32_t peercount_get(const struct peercount *p, const struct peercount_key *k);

/**
 * Count one more connection from @k. Returns the new count, or -ENOSPC when @k has no entry and
 * max_entries addresses already have one (the table is left unchanged).
 */
int64_t peercount_add(struct peercount *p, const struct peercount_key *k);

/**
 * One connection from @k is gone: its count goes down, and its entry goes at 0. Returns the new
 * count, or -ENOENT when @k has no entry (a caller's bug: nothing is changed).
 */
int64_t peercount_remove(struct peercount *p, const struct peercount_key *k);

#endif
