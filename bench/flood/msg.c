/* flood's messages and wire formats: see msg.h. */
#include "msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hexdig[] = "0123456789abcdef";
static const char cycle[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Field offsets inside the header. */
enum { OFF_PUB = 1, OFF_SEQ = 6, OFF_TS = 17, OFF_CHECK = 30 };

const char *proto_name(enum proto p)
{
    switch (p) {
    case PROTO_LINE:
        return "line";
    case PROTO_LEN32:
        return "len32";
    case PROTO_REDIS:
        return "redis";
    case PROTO_NATS:
        return "nats";
    }
    return "?";
}

size_t msg_min_size(enum proto p)
{
    return p == PROTO_LINE ? MSG_HDR_LEN + 1 : MSG_HDR_LEN;
}

int msgfmt_init(struct msgfmt *f, enum proto p, size_t size, const char *channel)
{
    memset(f, 0, sizeof(*f));
    if (size < msg_min_size(p) || size > MSG_MAX_SIZE)
        return -1;
    size_t cl = strlen(channel);
    if (cl == 0 || cl > MSG_MAX_CHANNEL)
        return -1;
    f->proto = p;
    f->size = size;
    f->filler_len = size - MSG_HDR_LEN - (p == PROTO_LINE ? 1 : 0);
    memcpy(f->channel, channel, cl + 1);
    f->chan_len = cl;
    f->pattern = malloc(f->filler_len + 64);
    if (!f->pattern)
        return -1;
    for (size_t i = 0; i < f->filler_len + 64; i++)
        f->pattern[i] = cycle[i % 64];

    switch (p) {
    case PROTO_LINE:
        f->wire_pub = f->wire_sub = size;
        break;
    case PROTO_LEN32:
        f->pub_prefix[0] = (char)(size >> 24);
        f->pub_prefix[1] = (char)(size >> 16);
        f->pub_prefix[2] = (char)(size >> 8);
        f->pub_prefix[3] = (char)size;
        f->pub_prefix_len = 4;
        memcpy(f->sub_prefix, f->pub_prefix, 4);
        f->sub_prefix_len = 4;
        f->wire_pub = f->wire_sub = size + 4;
        break;
    case PROTO_REDIS: {
        int n = snprintf(f->pub_prefix, sizeof(f->pub_prefix),
                         "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%zu\r\n", cl, channel, size);
        f->pub_prefix_len = (size_t)n;
        f->pub_suffix_len = 2;
        /* The subscriber's prefix stops at the '$' of the payload length, which is parsed. */
        n = snprintf(f->sub_prefix, sizeof(f->sub_prefix), "*3\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n$",
                     cl, channel);
        f->sub_prefix_len = (size_t)n;
        int digits = snprintf(NULL, 0, "%zu", size);
        f->wire_pub = f->pub_prefix_len + size + 2;
        f->wire_sub = f->sub_prefix_len + (size_t)digits + 2 + size + 2;
        n = snprintf(f->subscribe, sizeof(f->subscribe), "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n",
                     cl, channel);
        f->subscribe_len = (size_t)n;
        n = snprintf(f->subscribed, sizeof(f->subscribed),
                     "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n", cl, channel);
        f->subscribed_len = (size_t)n;
        break;
    }
    case PROTO_NATS: {
        static const char connect[] = "CONNECT {\"verbose\":false,\"pedantic\":false,"
                                      "\"name\":\"flood\"}\r\n";
        int n = snprintf(f->pub_prefix, sizeof(f->pub_prefix), "PUB %s %zu\r\n", channel, size);
        f->pub_prefix_len = (size_t)n;
        f->pub_suffix_len = 2;
        n = snprintf(f->sub_prefix, sizeof(f->sub_prefix), "MSG %s 1 %zu\r\n", channel, size);
        f->sub_prefix_len = (size_t)n;
        f->wire_pub = f->pub_prefix_len + size + 2;
        f->wire_sub = f->sub_prefix_len + size + 2;
        n = snprintf(f->subscribe, sizeof(f->subscribe), "%sSUB %s 1\r\nPING\r\n", connect,
                     channel);
        f->subscribe_len = (size_t)n;
        memcpy(f->hello, connect, sizeof(connect));
        f->hello_len = sizeof(connect) - 1;
        break;
    }
    }
    return 0;
}

void msgfmt_free(struct msgfmt *f)
{
    free(f->pattern);
    f->pattern = NULL;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t msg_hash(char type, unsigned pub, uint64_t seq, uint64_t ts)
{
    uint64_t a = ((uint64_t)(unsigned char)type << 56) ^ ((uint64_t)pub << 40) ^ seq;
    return mix64(a ^ mix64(ts + 0x9e3779b97f4a7c15ULL));
}

/*
 * The check field: a position-weighted sum of the header bytes before it, mod 251 (a prime).
 * A single changed byte changes the sum by w * d with 0 < w, |d| < 251, never a multiple of
 * 251: every one-byte change of the header is caught, not just most of them.
 */
static unsigned header_check(const char *hdr)
{
    unsigned sum = 0;
    for (int i = 0; i < OFF_CHECK - 1; i++)
        sum += (unsigned)(i + 1) * (unsigned char)hdr[i];
    return sum % 251;
}

static void put_hex(char *out, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = hexdig[v & 15];
        v >>= 4;
    }
}

static int get_hex(const char *in, int digits, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < digits; i++) {
        unsigned char ch = (unsigned char)in[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            d = ch - 'a' + 10;
        else
            return -1;
        v = (v << 4) | d;
    }
    *out = v;
    return 0;
}

void msg_encode(const struct msgfmt *f, char *out, char type, unsigned pub, uint64_t seq,
                uint64_t ts)
{
    memcpy(out, f->pub_prefix, f->pub_prefix_len);
    char *p = out + f->pub_prefix_len;
    uint64_t h = msg_hash(type, pub, seq, ts);
    p[0] = type;
    put_hex(p + OFF_PUB, pub, 4);
    p[OFF_SEQ - 1] = ' ';
    put_hex(p + OFF_SEQ, seq, 10);
    p[OFF_TS - 1] = ' ';
    put_hex(p + OFF_TS, ts, 12);
    p[OFF_CHECK - 1] = ' ';
    put_hex(p + OFF_CHECK, header_check(p), 2);
    p[MSG_HDR_LEN - 1] = ' ';
    memcpy(p + MSG_HDR_LEN, f->pattern + (h & 63), f->filler_len);
    p += MSG_HDR_LEN + f->filler_len;
    if (f->proto == PROTO_LINE) {
        *p = '\n';
    } else if (f->proto == PROTO_REDIS || f->proto == PROTO_NATS) {
        p[0] = '\r';
        p[1] = '\n';
    }
}

int msg_check(const struct msgfmt *f, const char *payload, size_t len, struct msg_info *info)
{
    if (len != f->size)
        return -1;
    char type = payload[0];
    if (type != 'M' && type != 'W')
        return -1;
    uint64_t pub, seq, ts, check;
    if (get_hex(payload + OFF_PUB, 4, &pub) || get_hex(payload + OFF_SEQ, 10, &seq) ||
        get_hex(payload + OFF_TS, 12, &ts) || get_hex(payload + OFF_CHECK, 2, &check))
        return -1;
    if (payload[OFF_SEQ - 1] != ' ' || payload[OFF_TS - 1] != ' ' ||
        payload[OFF_CHECK - 1] != ' ' || payload[MSG_HDR_LEN - 1] != ' ')
        return -1;
    if (header_check(payload) != check)
        return -1;
    uint64_t h = msg_hash(type, (unsigned)pub, seq, ts);
    if (memcmp(payload + MSG_HDR_LEN, f->pattern + (h & 63), f->filler_len) != 0)
        return -1;
    if (f->proto == PROTO_LINE && payload[len - 1] != '\n')
        return -1;
    info->type = type;
    info->pub = (unsigned)pub;
    info->seq = seq;
    info->ts = ts;
    return 0;
}

/* nats: MSG <subject> <sid> [reply-to] <size>\r\n<payload>\r\n, or a control line. */
static ssize_t nats_next(const struct msgfmt *f, const char *buf, size_t len, const char **payload,
                         size_t *plen)
{
    /* The common case: exactly the expected MSG line. */
    size_t pl = f->sub_prefix_len;
    if (len >= pl && memcmp(buf, f->sub_prefix, pl) == 0) {
        if (len < pl + f->size + 2)
            return 0;
        if (buf[pl + f->size] != '\r' || buf[pl + f->size + 1] != '\n')
            return -1;
        *payload = buf + pl;
        *plen = f->size;
        return (ssize_t)(pl + f->size + 2);
    }
    size_t limit = 64 * 1024;
    size_t scan = len < limit ? len : limit;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl)
        return len >= limit ? -1 : 0;
    size_t line = (size_t)(nl - buf) + 1;
    if (line >= 4 && !memcmp(buf, "MSG ", 4)) {
        /* Another subject, sid or size: the size is the last field of the line. */
        size_t end = line - 1;
        if (end > 0 && buf[end - 1] == '\r')
            end--;
        size_t i = end, n = 0, mul = 1;
        while (i > 4 && buf[i - 1] >= '0' && buf[i - 1] <= '9' && end - i < 9) {
            n += (size_t)(buf[i - 1] - '0') * mul;
            mul *= 10;
            i--;
        }
        if (i == end || n > 16 * f->size + 4096)
            return -1;
        if (len < line + n + 2)
            return 0;
        *payload = buf + line;
        *plen = n;
        return (ssize_t)(line + n + 2);
    }
    *payload = NULL;
    if (line >= 4 && !memcmp(buf, "PING", 4))
        *plen = MSG_CTL_PING;
    else if (line >= 4 && !memcmp(buf, "PONG", 4))
        *plen = MSG_CTL_PONG;
    else if (line >= 4 && !memcmp(buf, "-ERR", 4))
        *plen = MSG_CTL_ERR;
    else if ((line >= 4 && !memcmp(buf, "INFO", 4)) || (line >= 3 && !memcmp(buf, "+OK", 3)))
        *plen = MSG_CTL_OTHER;
    else
        return -1;
    return (ssize_t)line;
}

ssize_t msg_next(const struct msgfmt *f, const char *buf, size_t len, const char **payload,
                 size_t *plen)
{
    switch (f->proto) {
    case PROTO_LINE: {
        /* A line that goes on far past the expected size is hopeless: give up. */
        size_t limit = 16 * f->size + 4096;
        size_t scan = len < limit ? len : limit;
        const char *nl = memchr(buf, '\n', scan);
        if (!nl)
            return len >= limit ? -1 : 0;
        *payload = buf;
        *plen = (size_t)(nl - buf) + 1;
        return (ssize_t)*plen;
    }
    case PROTO_LEN32: {
        if (len < 4)
            return 0;
        const unsigned char *u = (const unsigned char *)buf;
        uint32_t n = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
        if (n > 16 * f->size + 4096)
            return -1;
        if (len < 4 + (size_t)n)
            return 0;
        *payload = buf + 4;
        *plen = n;
        return (ssize_t)(4 + (size_t)n);
    }
    case PROTO_REDIS: {
        size_t pl = f->sub_prefix_len;
        size_t cmp = len < pl ? len : pl;
        if (memcmp(buf, f->sub_prefix, cmp) != 0)
            return -1;
        if (len < pl)
            return 0;
        size_t i = pl, n = 0;
        for (;; i++) {
            if (i >= len)
                return 0;
            if (buf[i] < '0' || buf[i] > '9')
                break;
            n = n * 10 + (size_t)(buf[i] - '0');
            if (i - pl > 9 || n > 16 * f->size + 4096)
                return -1;
        }
        if (i == pl)
            return -1;
        if (len < i + 2)
            return 0;
        if (buf[i] != '\r' || buf[i + 1] != '\n')
            return -1;
        size_t start = i + 2;
        if (len < start + n + 2)
            return 0;
        if (buf[start + n] != '\r' || buf[start + n + 1] != '\n')
            return -1;
        *payload = buf + start;
        *plen = n;
        return (ssize_t)(start + n + 2);
    }
    case PROTO_NATS:
        return nats_next(f, buf, len, payload, plen);
    }
    return -1;
}
