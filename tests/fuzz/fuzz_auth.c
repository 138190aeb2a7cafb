/*
 * Fuzz target "auth": the two parsers that read what others wrote, the AUTH frame (a client's
 * first bytes) and the auth file.
 *
 * Input: [mode] [bytes...]
 *   mode % 3 == 0: the bytes are an auth file. Parsed, every token must be found at its own
 *                  index, have 1..AUTH_TOKEN_MAX printable bytes and a role, remap onto its own
 *                  set as the identity; an error names a line and leaves the set untouched.
 *   mode % 3 == 1 or 2: the bytes are a client's first bytes, line or len32 framing. The verdict
 *                  is checked against a reference written here from the protocol text, and for
 *                  every prefix: a prefix either needs more or already has the whole input's
 *                  verdict (a decision never changes as bytes arrive, which the gate relies on
 *                  when it assembles a split frame), and nothing needs more past AUTH_FRAME_MAX.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/auth.h"

static bool printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f)
            return false;
    return n > 0 && n <= AUTH_TOKEN_MAX;
}

/* The protocol, written plainly: what the whole input is. */
static enum auth_frame reference(enum framing f, const uint8_t *p, size_t len, size_t *flen,
                                 size_t *tok_at, size_t *tok_len)
{
    static const char word[] = "AUTH ";
    size_t start, end;
    if (f == FRAMING_LINE) {
        size_t nl = 0;
        while (nl < len && p[nl] != '\n')
            nl++;
        for (size_t i = 0; i < 5 && i < len; i++)
            if (p[i] != (uint8_t)word[i])
                return AUTH_FRAME_NOT_AUTH;
        if (nl < 5 && nl < len)
            return AUTH_FRAME_NOT_AUTH; /* a newline where the word is */
        if (nl == len || nl >= 5 + AUTH_TOKEN_MAX + 2)
            return nl >= 5 + AUTH_TOKEN_MAX + 2 ? AUTH_FRAME_MALFORMED : AUTH_FRAME_NEED_MORE;
        *flen = nl + 1;
        start = 5;
        end = nl > 5 && p[nl - 1] == '\r' ? nl - 1 : nl;
    } else {
        if (len < 4)
            return AUTH_FRAME_NEED_MORE;
        uint64_t n = (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
        for (size_t i = 0; i < 5 && i < n && 4 + i < len; i++)
            if (p[4 + i] != (uint8_t)word[i])
                return AUTH_FRAME_NOT_AUTH;
        if (n < 5)
            return AUTH_FRAME_NOT_AUTH;
        if (len < 9)
            return AUTH_FRAME_NEED_MORE;
        if (n == 5 || n > 5 + AUTH_TOKEN_MAX)
            return AUTH_FRAME_MALFORMED;
        if (len < 4 + n)
            return AUTH_FRAME_NEED_MORE;
        *flen = 4 + (size_t)n;
        start = 9;
        end = 4 + (size_t)n;
    }
    *tok_at = start;
    *tok_len = end - start;
    return printable(p + start, end - start) ? AUTH_FRAME_OK : AUTH_FRAME_MALFORMED;
}

static void check_frame(enum framing f, const uint8_t *p, size_t len)
{
    size_t rflen = 0, rtok = 0, rtlen = 0;
    enum auth_frame want = reference(f, p, len, &rflen, &rtok, &rtlen);
    size_t flen = 0, tlen = 0;
    const uint8_t *tok = NULL;
    enum auth_frame got = auth_frame_parse(f, p, len, &flen, &tok, &tlen);
    if (got != want)
        abort();
    if (got == AUTH_FRAME_OK && (flen != rflen || tok != p + rtok || tlen != rtlen))
        abort();
    if (got == AUTH_FRAME_NEED_MORE && len >= AUTH_FRAME_MAX)
        abort();
    for (size_t k = 0; k < len && k <= AUTH_FRAME_MAX + 8; k++) {
        size_t kflen = 0, ktlen = 0;
        const uint8_t *ktok = NULL;
        enum auth_frame r = auth_frame_parse(f, p, k, &kflen, &ktok, &ktlen);
        if (r == AUTH_FRAME_NEED_MORE)
            continue;
        if (r != got || (r == AUTH_FRAME_OK && (kflen != flen || ktok != tok || ktlen != tlen)))
            abort();
    }
}

static void check_file(const uint8_t *p, size_t len)
{
    struct auth_tokens t = {0}, same = {0};
    memset(t.key, 0x5a, sizeof(t.key));
    char err[160] = "";
    int ret = auth_tokens_parse(&t, (const char *)p, len, err, sizeof(err));
    if (ret < 0) {
        if (t.v || t.n || (ret == -EINVAL && !strstr(err, "line ")))
            abort();
        return;
    }
    if (t.n > AUTH_TOKENS_MAX)
        abort();
    for (uint32_t i = 0; i < t.n; i++) {
        if (!printable(t.v[i].bytes, t.v[i].len) || t.v[i].role > ROLE_SUB)
            abort();
        if (auth_tokens_find(&t, t.v[i].bytes, t.v[i].len) != (int32_t)i)
            abort();
    }
    memcpy(same.key, t.key, sizeof(t.key));
    if (auth_tokens_parse(&same, (const char *)p, len, err, sizeof(err)) < 0 || same.n != t.n)
        abort();
    int32_t *map = malloc((t.n ? t.n : 1) * sizeof(*map));
    if (!map)
        abort();
    auth_tokens_remap(&t, &same, map);
    for (uint32_t i = 0; i < t.n; i++)
        if (map[i] != (int32_t)i)
            abort();
    free(map);
    auth_tokens_clear(&t);
    auth_tokens_clear(&same);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        check_file(data + 1, size - 1);
        break;
    case 1:
        check_frame(FRAMING_LINE, data + 1, size - 1);
        break;
    default:
        check_frame(FRAMING_LEN32, data + 1, size - 1);
        break;
    }
    return 0;
}
