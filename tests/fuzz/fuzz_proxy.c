/*
 * Fuzz target "proxy": the PROXY protocol header parser (src/proxy.c), the first bytes a client of
 * a `proxy` listener sends.
 *
 * Input: the bytes, as they came (no mode byte: the two signatures tell the versions apart).
 *
 * Checked:
 *   - against a reference written here from the spec, which judges a whole line (v1: up to the
 *     first CR or LF, split at single spaces, addresses and ports read by hand, not by the
 *     parser's code) or a whole binary header (v2): OK with the same length, version, `local`
 *     and source address, or INVALID; where the input stops short of a whole header the
 *     reference only knows a few refusals (a byte off the signature, a lone CR or LF, 107 bytes
 *     without a line end, a v2 length past PROXY_HEADER_MAX) and otherwise allows NEED_MORE or
 *     INVALID;
 *   - every prefix either needs more or already has the whole input's verdict, with the same
 *     header on OK (a verdict never changes as bytes arrive, which the loop relies on when a
 *     header comes in pieces); nothing needs more at PROXY_HEADER_MAX bytes or more; an OK header
 *     is never longer than the input; proxy_reason is a string exactly when the verdict is
 *     INVALID.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/proxy.h"

enum ref { REF_OK, REF_INVALID, REF_UNDECIDED /* NEED_MORE or INVALID */ };

struct want {
    size_t len;
    bool local;
    int family;
    uint8_t addr[16];
    uint16_t port; /* host order */
    uint8_t version;
};

/* A decimal number of 1..@digits digits, no leading zero, at most @max. */
static bool ref_number(const uint8_t *s, size_t n, size_t digits, unsigned max, unsigned *v)
{
    if (n == 0 || n > digits || (n > 1 && s[0] == '0'))
        return false;
    unsigned x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (unsigned)(s[i] - '0');
    }
    *v = x;
    return x <= max;
}

/* Four decimal octets joined by single dots, read by hand. */
static bool ref_ipv4(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t at = 0;
    for (int k = 0; k < 4; k++) {
        size_t end = at;
        while (end < n && s[end] != '.')
            end++;
        unsigned v;
        if (!ref_number(s + at, end - at, 3, 255, &v))
            return false;
        out[k] = (uint8_t)v;
        if (k < 3 && end == n)
            return false;
        at = end + 1;
    }
    return at == n + 1;
}

static bool ref_ipv6(const uint8_t *s, size_t n, uint8_t *out)
{
    char buf[64];
    if (n >= sizeof(buf) || memchr(s, '\0', n))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, out) == 1;
}

/* The line before its CRLF, @l[0..@n), which has neither CR nor LF. */
static enum ref ref_line(const uint8_t *l, size_t n, struct want *w)
{
    if (n < 6 || memcmp(l, "PROXY ", 6))
        return REF_INVALID;
    const uint8_t *r = l + 6;
    size_t m = n - 6;
    w->version = 1;
    if (m >= 7 && !memcmp(r, "UNKNOWN", 7) && (m == 7 || r[7] == ' ')) {
        w->local = true;
        return REF_OK;
    }
    /* Exactly five fields, each separated by exactly one space. */
    const uint8_t *f[5];
    size_t fl[5], nf = 0, start = 0;
    for (size_t i = 0; i <= m; i++) {
        if (i < m && r[i] != ' ')
            continue;
        if (nf == 5 || i == start)
            return REF_INVALID;
        f[nf] = r + start;
        fl[nf++] = i - start;
        start = i + 1;
    }
    if (nf != 5 || fl[0] != 4 || (memcmp(f[0], "TCP4", 4) && memcmp(f[0], "TCP6", 4)))
        return REF_INVALID;
    bool v4 = f[0][3] == '4';
    uint8_t dst[16];
    unsigned sport, dport;
    if (v4 ? !ref_ipv4(f[1], fl[1], w->addr) || !ref_ipv4(f[2], fl[2], dst)
           : !ref_ipv6(f[1], fl[1], w->addr) || !ref_ipv6(f[2], fl[2], dst))
        return REF_INVALID;
    if (!ref_number(f[3], fl[3], 5, 65535, &sport) || !ref_number(f[4], fl[4], 5, 65535, &dport))
        return REF_INVALID;
    w->family = v4 ? AF_INET : AF_INET6;
    w->port = (uint16_t)sport;
    return REF_OK;
}

static enum ref ref_v1(const uint8_t *p, size_t len, struct want *w)
{
    size_t n = len < 6 ? len : 6;
    if (memcmp(p, "PROXY ", n))
        return REF_INVALID;
    size_t lim = len < 107 ? len : 107, e = 0;
    while (e < lim && p[e] != '\r' && p[e] != '\n')
        e++;
    if (e < lim && p[e] == '\n')
        return REF_INVALID; /* a LF without its CR */
    if (e + 1 >= lim)       /* no line end yet, or a CR last */
        return len >= 107 ? REF_INVALID : REF_UNDECIDED;
    if (p[e + 1] != '\n')
        return REF_INVALID; /* a CR without its LF */
    w->len = e + 2;
    return ref_line(p, e, w);
}

static enum ref ref_v2(const uint8_t *p, size_t len, struct want *w)
{
    static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    if (memcmp(p, sig, len < 12 ? len : 12))
        return REF_INVALID;
    if (len < 16)
        return REF_UNDECIDED;
    unsigned ver = p[12] >> 4, cmd = p[12] & 15, fam = p[13];
    size_t block = (size_t)p[14] * 256 + p[15];
    if (ver != 2 || cmd > 1 || 16 + block > PROXY_HEADER_MAX)
        return REF_INVALID;
    size_t need = 0;
    if (cmd == 1 && (fam == 0x11 || fam == 0x12))
        need = 12;
    else if (cmd == 1 && (fam == 0x21 || fam == 0x22))
        need = 36;
    else if (cmd == 1 && (fam == 0x31 || fam == 0x32))
        need = 216;
    else if (cmd == 1 && fam != 0x00)
        return REF_INVALID;
    if (block < need)
        return REF_INVALID;
    if (len < 16 + block)
        return REF_UNDECIDED;
    w->len = 16 + block;
    w->version = 2;
    w->local = !(cmd == 1 && (fam == 0x11 || fam == 0x21));
    if (w->local)
        return REF_OK;
    bool v4 = fam == 0x11;
    w->family = v4 ? AF_INET : AF_INET6;
    memcpy(w->addr, p + 16, v4 ? 4 : 16);
    const uint8_t *port = p + 16 + (v4 ? 8 : 32);
    w->port = (uint16_t)(port[0] << 8 | port[1]);
    return REF_OK;
}

static bool same(const struct proxy_header *a, const struct proxy_header *b)
{
    if (a->len != b->len || a->local != b->local || a->version != b->version)
        return false;
    return !memcmp(&a->src, &b->src, sizeof(a->src));
}

static void check_against(const struct want *w, const struct proxy_header *h)
{
    if (h->len != w->len || h->local != w->local || h->version != w->version)
        abort();
    if (w->local) {
        static const union netaddr zero;
        if (memcmp(&h->src, &zero, sizeof(zero)))
            abort();
        return;
    }
    if (h->src.sa.sa_family != w->family)
        abort();
    if (w->family == AF_INET &&
        (memcmp(&h->src.v4.sin_addr, w->addr, 4) || ntohs(h->src.v4.sin_port) != w->port))
        abort();
    if (w->family == AF_INET6 &&
        (memcmp(&h->src.v6.sin6_addr, w->addr, 16) || ntohs(h->src.v6.sin6_port) != w->port))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header h;
    memset(&h, 0, sizeof(h));
    enum proxy_result got = proxy_parse(data, size, &h);
    const char *why = proxy_reason(data, size);
    if ((got == PROXY_INVALID) != (why != NULL) || (why && !*why))
        abort();
    if (got == PROXY_NEED_MORE && size >= PROXY_HEADER_MAX)
        abort();
    if (got == PROXY_OK && (h.len == 0 || h.len > size))
        abort();

    struct want w = {0};
    enum ref want = REF_UNDECIDED;
    if (size > 0)
        want = data[0] == 'P'    ? ref_v1(data, size, &w)
               : data[0] == '\r' ? ref_v2(data, size, &w)
                                 : REF_INVALID;
    if (want == REF_OK && got != PROXY_OK)
        abort();
    if (want == REF_OK)
        check_against(&w, &h);
    if (want == REF_INVALID && got != PROXY_INVALID)
        abort();
    if (want == REF_UNDECIDED && got == PROXY_OK)
        abort();

    for (size_t k = 0; k < size && k <= PROXY_HEADER_MAX + 8; k++) {
        struct proxy_header kh;
        memset(&kh, 0, sizeof(kh));
        enum proxy_result r = proxy_parse(data, k, &kh);
        if (r == PROXY_NEED_MORE)
            continue;
        if (r != got || (r == PROXY_OK && !same(&kh, &h)))
            abort();
    }
    return 0;
}
