/*
 * SipHash-2-4: a keyed hash for tables whose keys a remote peer chooses (peercount) and for
 * comparing secrets without leaking where they differ (auth). Pure.
 */
#ifndef RINGCAST_SIPHASH_H
#define RINGCAST_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/** SipHash-2-4 of @len bytes at @data under the 16-byte @key. */
uint64_t siphash24(const uint8_t key[16], const void *data, size_t len);

#endif
