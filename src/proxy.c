/* The PROXY protocol header, versions 1 and 2 (see proxy.h). */
#include "ringcast/proxy.h"

#include <arpa/inet.h>
#include <string.h>

static const uint8_t v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

enum { V2_FIXED = 16 }; /* signature, version and command, family, length */

/* Whether @p[0..@n) agrees with @sig as far as both go. */
static bool agrees(const uint8_t *p, size_t n, const uint8_t *sig, size_t sig_len)
{
    return !memcmp(p, sig, n < sig_len ? n : sig_len);
}

static enum proxy_result invalid(const char **why, const char *reason)
{
    *why = reason;
    return PROXY_INVALID;
}

/* ===== version 1: one line of text ===== */

enum token { TOK_V4, TOK_V6, TOK_PORT };

/* A token being read: an address or a port, judged byte by byte where its syntax allows. */
struct tok {
    size_t start, len;
    unsigned value;  /* IPv4: the octet so far; port: the number so far */
    unsigned digits; /* in the current octet or the port */
    unsigned dots;
};

static bool hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One more byte @c inside a token of @kind (not its delimiter): false when no valid token goes
 * on this way. */
static bool tok_step(struct tok *t, enum token kind, uint8_t c)
{
    t->len++;
    bool digit = c >= '0' && c <= '9';
    switch (kind) {
    case TOK_V4:
        if (c == '.') {
            if (t->digits == 0 || t->dots == 3)
                return false;
            t->dots++;
            t->digits = 0;
            t->value = 0;
            return true;
        }
        /* No leading zeros: "01" could be read as octal. */
        if (!digit || (t->digits && t->value == 0))
            return false;
        t->value = t->value * 10 + (unsigned)(c - '0');
        t->digits++;
        return t->value <= 255;
    case TOK_V6:
        return (hex(c) || c == ':' || c == '.') && t->len < INET6_ADDRSTRLEN;
    case TOK_PORT:
        if (!digit || (t->digits && t->value == 0))
            return false;
        t->value = t->value * 10 + (unsigned)(c - '0');
        t->digits++;
        return t->value <= 65535;
    }
    return false;
}

/* The token ended (its delimiter came): whether it is whole; an address is parsed into @addr. */
static bool tok_end(const struct tok *t, enum token kind, const uint8_t *p, void *addr)
{
    if (t->len == 0)
        return false;
    if (kind == TOK_PORT)
        return true;
    if (kind == TOK_V4 && (t->dots != 3 || t->digits == 0))
        return false;
    char s[INET6_ADDRSTRLEN];
    memcpy(s, p + t->start, t->len); /* tok_step kept it shorter than s */
    s[t->len] = '\0';
    return inet_pton(kind == TOK_V4 ? AF_INET : AF_INET6, s, addr) == 1;
}

/* "PROXY UNKNOWN" was read up to @i: a space and anything but CR and LF, or nothing, then CRLF. */
static enum proxy_result v1_unknown(const uint8_t *p, size_t n, size_t i, struct proxy_header *out,
                                    const char **why)
{
    if (i < n && p[i] != ' ' && p[i] != '\r' && p[i] != '\n')
        return invalid(why, "v1: bad protocol"); /* a lone LF is a bad line end, below */
    for (; i < n; i++) {
        if (p[i] == '\n')
            return invalid(why, "v1: bad line end");
        if (p[i] != '\r')
            continue;
        if (i + 1 == n)
            break;
        if (p[i + 1] != '\n')
            return invalid(why, "v1: bad line end");
        memset(out, 0, sizeof(*out));
        out->len = i + 2;
        out->local = true;
        out->version = 1;
        return PROXY_OK;
    }
    return PROXY_NEED_MORE;
}

/* @p[0..@n) agrees with "PROXY " (the caller checked its first byte); at most PROXY_V1_MAX of
 * the caller's bytes are looked at. */
static enum proxy_result parse_v1(const uint8_t *p, size_t n, struct proxy_header *out,
                                  const char **why)
{
    static const char *const protos[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
    if (!agrees(p, n, v1_sig, sizeof(v1_sig)))
        return invalid(why, "bad signature");
    if (n <= sizeof(v1_sig))
        return PROXY_NEED_MORE;
    size_t i = sizeof(v1_sig), rest = n - i;
    int proto = -1;
    bool partial = false;
    for (int k = 0; k < 3; k++) {
        size_t w = strlen(protos[k]);
        if (!agrees(p + i, rest, (const uint8_t *)protos[k], w))
            continue;
        if (rest < w)
            partial = true;
        else
            proto = k;
    }
    if (proto < 0)
        return partial ? PROXY_NEED_MORE : invalid(why, "v1: bad protocol");
    i += strlen(protos[proto]);
    if (proto == 2)
        return v1_unknown(p, n, i, out, why);

    /* SRC ' ' DST ' ' SPORT ' ' DPORT '\r' '\n' */
    enum token fam = proto == 0 ? TOK_V4 : TOK_V6;
    const enum token kinds[4] = {fam, fam, TOK_PORT, TOK_PORT};
    const uint8_t delims[4] = {' ', ' ', ' ', '\r'};
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } src, dst; /* dst is parsed to be checked; the relay has no use for it */
    void *addrs[4] = {&src, &dst, NULL, NULL};
    unsigned sport = 0;
    for (int f = 0; f < 4; f++) {
        const char *bad = kinds[f] == TOK_PORT ? "v1: bad port" : "v1: bad address";
        struct tok t = {.start = i};
        for (;; i++) {
            if (i == n)
                return PROXY_NEED_MORE;
            if (p[i] == delims[f])
                break;
            if (!tok_step(&t, kinds[f], p[i]))
                return invalid(why, bad);
        }
        if (!tok_end(&t, kinds[f], p, addrs[f]))
            return invalid(why, bad);
        if (f == 2)
            sport = t.value;
        i++;
    }
    if (i == n)
        return PROXY_NEED_MORE;
    if (p[i] != '\n')
        return invalid(why, "v1: bad line end");
    memset(out, 0, sizeof(*out));
    out->len = i + 1;
    out->version = 1;
    if (fam == TOK_V4) {
        out->src.v4.sin_family = AF_INET;
        out->src.v4.sin_port = htons((uint16_t)sport);
        out->src.v4.sin_addr = src.v4;
    } else {
        out->src.v6.sin6_family = AF_INET6;
        out->src.v6.sin6_port = htons((uint16_t)sport);
        out->src.v6.sin6_addr = src.v6;
    }
    return PROXY_OK;
}

/* ===== version 2: binary ===== */

/* The address block a PROXY command's family/protocol byte needs, or -1 for a byte the spec does
 * not define. */
static int v2_block(uint8_t fam)
{
    switch (fam) {
    case 0x00: /* UNSPEC */
        return 0;
    case 0x11: /* TCP over IPv4 */
    case 0x12: /* UDP over IPv4 */
        return 2 * 4 + 2 * 2;
    case 0x21: /* TCP over IPv6 */
    case 0x22: /* UDP over IPv6 */
        return 2 * 16 + 2 * 2;
    case 0x31: /* UNIX stream */
    case 0x32: /* UNIX datagram */
        return 2 * 108;
    }
    return -1;
}

static enum proxy_result parse_v2(const uint8_t *p, size_t len, struct proxy_header *out,
                                  const char **why)
{
    if (!agrees(p, len, v2_sig, sizeof(v2_sig)))
        return invalid(why, "bad signature");
    if (len <= sizeof(v2_sig))
        return PROXY_NEED_MORE;
    uint8_t ver = p[12] >> 4, cmd = p[12] & 0x0f;
    if (ver != 2)
        return invalid(why, "v2: bad version");
    if (cmd > 1)
        return invalid(why, "v2: bad command");
    if (len < 14)
        return PROXY_NEED_MORE;
    /* LOCAL: "discard the protocol block including the family which is ignored". */
    int need = cmd == 1 ? v2_block(p[13]) : 0;
    if (need < 0)
        return invalid(why, "v2: bad family");
    if (len < V2_FIXED)
        return PROXY_NEED_MORE;
    size_t block = (size_t)p[14] << 8 | p[15];
    if (V2_FIXED + block > PROXY_HEADER_MAX)
        return invalid(why, "too long");
    if (block < (size_t)need)
        return invalid(why, "v2: address block too short");
    if (len < V2_FIXED + block)
        return PROXY_NEED_MORE;
    /* Whole: the addresses are read, whatever follows them (TLVs) is only skipped. */
    memset(out, 0, sizeof(*out));
    out->len = V2_FIXED + block;
    out->version = 2;
    const uint8_t *a = p + V2_FIXED;
    if (cmd == 1 && p[13] == 0x11) {
        out->src.v4.sin_family = AF_INET;
        memcpy(&out->src.v4.sin_addr, a, 4);
        memcpy(&out->src.v4.sin_port, a + 8, 2); /* both in network order */
    } else if (cmd == 1 && p[13] == 0x21) {
        out->src.v6.sin6_family = AF_INET6;
        memcpy(&out->src.v6.sin6_addr, a, 16);
        memcpy(&out->src.v6.sin6_port, a + 32, 2);
    } else {
        out->local = true;
    }
    return PROXY_OK;
}

/* ===== both ===== */

static enum proxy_result parse(const uint8_t *p, size_t len, struct proxy_header *out,
                               const char **why)
{
    if (len == 0)
        return PROXY_NEED_MORE;
    if (p[0] == v1_sig[0]) {
        /* Past PROXY_V1_MAX bytes without a whole line the verdict is known. */
        enum proxy_result r = parse_v1(p, len < PROXY_V1_MAX ? len : PROXY_V1_MAX, out, why);
        return r == PROXY_NEED_MORE && len >= PROXY_V1_MAX ? invalid(why, "too long") : r;
    }
    if (p[0] == v2_sig[0])
        return parse_v2(p, len, out, why);
    return invalid(why, "bad signature");
}

enum proxy_result proxy_parse(const uint8_t *p, size_t len, struct proxy_header *out)
{
    const char *why;
    return parse(p, len, out, &why);
}

const char *proxy_reason(const uint8_t *p, size_t len)
{
    struct proxy_header h;
    const char *why = NULL;
    return parse(p, len, &h, &why) == PROXY_INVALID ? why : NULL;
}
