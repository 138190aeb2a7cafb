/*
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that a proxy puts
 * before a client's first byte on a listener flagged `proxy`. Pure: no I/O, no allocation. What
 * the loop does with a verdict (skipping the header, taking its address, closing on INVALID or at
 * --auth-timeout) is the loop's.
 *
 * Strict, as the spec asks of a receiver ("any sequence which does not exactly match the
 * protocol must be discarded"):
 *   v1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` with single spaces, addresses of the family
 *       named (inet_pton's syntax, IPv4 without leading zeros), ports 0..65535 in decimal without
 *       leading zeros, the whole line at most 107 bytes; or `PROXY UNKNOWN` then `\r\n`, or a
 *       space and anything without CR or LF up to the `\r\n` (ignored). A lone CR or LF is invalid.
 *   v2: the 12-byte signature, version 2, command LOCAL or PROXY; for PROXY, a family/protocol
 *       byte the spec defines (0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32) and an address block at
 *       least as long as that family's; TLVs after the addresses are skipped by the length field,
 *       never read. LOCAL ignores the family byte and the block, as the spec says.
 * A verdict never changes as bytes arrive: INVALID comes at the first byte that no valid header
 * could have there (an address or a port is judged at the byte that ends it), and a prefix of a
 * valid header is NEED_MORE.
 */
#ifndef RINGCAST_PROXY_H
#define RINGCAST_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/netaddr.h"

#define PROXY_HEADER_MAX 1024u /* the longest header accepted (v2 with TLVs); longer is invalid */
#define PROXY_V1_MAX 107u      /* the longest v1 line, CRLF included (the spec's worst case) */

enum proxy_result {
    PROXY_NEED_MORE, /* a prefix of a valid header: wait for more bytes */
    PROXY_OK,        /* a whole header: *out is set */
    PROXY_INVALID,   /* no valid header starts with these bytes: close (proxy_reason says why) */
};

struct proxy_header {
    size_t len; /* bytes of the header on the wire (what the caller skips) */
    bool local; /* LOCAL (v2) or UNKNOWN (v1) or an unsupported family (v2 AF_UNIX/UNSPEC, UDP):
                   keep the socket's address */
    union netaddr src; /* the client's address and port when !local (zeroed when local) */
    uint8_t version;   /* 1 or 2 */
};

/**
 * Look at the first @len bytes a client sent, @p[0..@len). PROXY_NEED_MORE until the header is
 * whole (never with @len >= PROXY_HEADER_MAX); PROXY_INVALID as early as the bytes allow (e.g. at
 * the first byte that cannot start either signature); PROXY_OK with *@out set (and only then
 * written): out->len bytes of @p are the header, the rest is the client's.
 */
enum proxy_result proxy_parse(const uint8_t *p, size_t len, struct proxy_header *out);

/**
 * For logs: why proxy_parse(@p, @len) is PROXY_INVALID, a short static string ("bad signature",
 * "v1: bad address", "v2: bad version", "too long"...); NULL when it is not INVALID. Stateless:
 * call it with the bytes that were refused.
 */
const char *proxy_reason(const uint8_t *p, size_t len);

#endif
