/* flood's messages and the wire formats that carry them. Pure: no I/O.
 *
 * Every message is a payload of exactly `size` bytes. It starts with a 33-byte printable header
 *
 *     "Tpppp ssssssssss tttttttttttt cc "     e.g. "M0000 000000002a 00001a2b3c4d 9f "
 *
 * T is 'M' (measured) or 'W' (readiness / warm-up, never counted), pppp the publisher id (hex),
 * s.. the publisher's sequence number (hex), t.. the send timestamp (ns, hex) and cc a check
 * (hex: a position-weighted sum of the header bytes mod 251, which catches every one-byte
 * change). A printable filler follows whose starting offset in a fixed 64-character cycle is a
 * hash of the fields, so the filler is a function of the header and any changed byte there is
 * caught too. In line mode the last payload byte is '\n' (and no other byte is).
 *
 * Wire formats:
 *   line   publisher and subscriber see the payload itself (a line frame);
 *   len32  a 4-byte big-endian length then the payload (the length excludes the header);
 *   redis  publishers send PUBLISH <channel> <payload> as RESP, subscribers receive
 *          *3 $7 message $n <channel> $size <payload> as RESP;
 *   nats   publishers send PUB <channel> <size>\r\n<payload>\r\n, subscribers (sid 1) receive
 *          MSG <channel> 1 <size>\r\n<payload>\r\n; the server's other lines (INFO, PING,
 *          PONG, +OK, -ERR) are control lines, which msg_next() reports with *payload NULL. */
#ifndef FLOOD_MSG_H
#define FLOOD_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum proto { PROTO_LINE, PROTO_LEN32, PROTO_REDIS, PROTO_NATS };

#define MSG_HDR_LEN 33
#define MSG_MAX_PUBS 0xffffu
#define MSG_MAX_SEQ ((uint64_t)1 << 40)
#define MSG_MAX_TS ((uint64_t)1 << 48)
#define MSG_MAX_SIZE (16u << 20)
#define MSG_MAX_CHANNEL 200

struct msgfmt {
    enum proto proto;
    size_t size;       /* payload bytes */
    size_t filler_len; /* filler bytes after the header (excluding a line's '\n') */
    char *pattern;     /* filler_len + 64 bytes of the filler cycle */
    char channel[MSG_MAX_CHANNEL + 1];
    size_t chan_len;
    char pub_prefix[256]; /* what a publisher writes before the payload */
    size_t pub_prefix_len;
    char sub_prefix[256]; /* what a subscriber receives before the payload (redis: up to '$') */
    size_t sub_prefix_len;
    size_t pub_suffix_len; /* what follows the payload ("\r\n" for redis) */
    size_t wire_pub;       /* bytes a publisher writes per message */
    size_t wire_sub;       /* bytes a subscriber receives per message */
    char subscribe[512];   /* redis: the SUBSCRIBE command */
    size_t subscribe_len;
    char subscribed[512]; /* redis: the confirmation a subscriber waits for */
    size_t subscribed_len;
    char hello[256]; /* nats: what a publisher sends first (CONNECT) */
    size_t hello_len;
};

struct msg_info {
    char type;
    unsigned pub;
    uint64_t seq;
    uint64_t ts;
};

const char *proto_name(enum proto p);
/* The smallest valid --size for a protocol. */
size_t msg_min_size(enum proto p);

/* Returns 0, or -1 (size out of range, channel too long, out of memory). */
int msgfmt_init(struct msgfmt *f, enum proto p, size_t size, const char *channel);
void msgfmt_free(struct msgfmt *f);

/* Writes one message as a publisher sends it: exactly f->wire_pub bytes at out. */
void msg_encode(const struct msgfmt *f, char *out, char type, unsigned pub, uint64_t seq,
                uint64_t ts);

/* Checks one received payload. Returns 0 and fills *info when it is intact, -1 when corrupt. */
int msg_check(const struct msgfmt *f, const char *payload, size_t len, struct msg_info *info);

/* Finds the next delivered message in a subscriber's stream buf[0..len). Returns the number of
 * bytes it takes (and sets *payload / *plen; plen may differ from f->size when the stream is
 * corrupt), 0 when more bytes are needed, or -1 when the stream cannot be resynchronised.
 * nats: a control line sets *payload to NULL and *plen to one of the MSG_CTL_* values. */
enum { MSG_CTL_OTHER, MSG_CTL_PING, MSG_CTL_PONG, MSG_CTL_ERR };
ssize_t msg_next(const struct msgfmt *f, const char *buf, size_t len, const char **payload,
                 size_t *plen);

#endif
