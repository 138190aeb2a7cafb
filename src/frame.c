/* Frame scanning and assembly. memchr does the line work; len32 hops from header to header. */
#include "ringcast/frame.h"

#include <string.h>

#include "ringcast/alloc.h"

static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* How many bytes of p[0..len) equal c: 16 lanes at a time (SSE2 or NEON through GCC's vector
 * extension), each lane's count flushed before it can wrap. */
static size_t count_byte(const uint8_t *p, size_t len, uint8_t c)
{
    typedef uint8_t v16 __attribute__((vector_size(16)));
    size_t n = 0, i = 0;
    v16 want = (v16){0} + c;
    while (len - i >= 16) {
        v16 acc = {0};
        size_t end = i + 16 * 255 < len - 15 ? i + 16 * 255 : len - 15;
        for (; i < end; i += 16) {
            v16 chunk;
            memcpy(&chunk, p + i, 16);
            acc -= (v16)(chunk == want); /* a match is all ones, that is -1 */
        }
        for (int lane = 0; lane < 16; lane++)
            n += acc[lane];
    }
    for (; i < len; i++)
        n += p[i] == c;
    return n;
}

void frame_scan(enum framing framing, const uint8_t *p, size_t len, uint64_t max_frame,
                struct frame_scan *out)
{
    size_t off = 0, n = 0;
    out->too_long = false;
    if (framing == FRAMING_LINE) {
        /* A window of max_frame bytes from a boundary holds only frames short enough: take up
         * to its last newline, counting the others, rather than one memchr per frame (a tenth
         * of the relay's time with 64-byte frames). No newline in a full window: too long. */
        while (off < len) {
            size_t window = len - off < max_frame ? len - off : (size_t)max_frame;
            const uint8_t *last = window ? memrchr(p + off, '\n', window) : NULL;
            if (!last) {
                out->too_long = len - off > max_frame;
                break;
            }
            size_t end = (size_t)(last - p) + 1;
            n += count_byte(p + off, end - off, '\n');
            off = end;
        }
    } else {
        while (len - off >= FRAME_LEN32_HEADER) {
            uint32_t payload = be32(p + off);
            if (payload > max_frame) {
                out->too_long = true;
                break;
            }
            size_t flen = FRAME_LEN32_HEADER + (size_t)payload;
            if (len - off < flen)
                break;
            off += flen;
            n++;
        }
    }
    out->complete = off;
    out->nframes = n;
}

size_t frame_wire_len(enum framing framing, const uint8_t *p, size_t len)
{
    if (framing == FRAMING_LINE) {
        const uint8_t *nl = memchr(p, '\n', len);
        return nl ? (size_t)(nl - p) + 1 : 0;
    }
    if (len < FRAME_LEN32_HEADER)
        return 0;
    return FRAME_LEN32_HEADER + (size_t)be32(p);
}

/* Make room for @need bytes in total; grows geometrically so a slow line costs O(log n) reallocs,
 * and never beyond @limit, the longest valid frame. */
static bool partial_reserve(struct frame_partial *fp, size_t need, size_t limit, int64_t *grown)
{
    if (need <= fp->cap)
        return true;
    size_t cap = fp->cap ? fp->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > limit)
        cap = limit;
    uint8_t *buf = rc_realloc(fp->buf, cap);
    if (!buf)
        return false;
    *grown += (int64_t)cap - fp->cap;
    fp->buf = buf;
    fp->cap = (uint32_t)cap;
    return true;
}

enum frame_feed frame_partial_feed(struct frame_partial *fp, enum framing framing,
                                   uint64_t max_frame, const uint8_t *p, size_t len, size_t *used,
                                   int64_t *grown)
{
    *used = 0;
    *grown = 0;
    if (framing == FRAMING_LINE) {
        const uint8_t *nl = memchr(p, '\n', len);
        size_t take = nl ? (size_t)(nl - p) + 1 : len;
        if (fp->len + take > max_frame)
            return FRAME_TOO_LONG;
        if (!partial_reserve(fp, fp->len + take, max_frame, grown))
            return FRAME_NOMEM;
        memcpy(fp->buf + fp->len, p, take);
        fp->len += (uint32_t)take;
        *used = take;
        return nl ? FRAME_COMPLETE : FRAME_NEED_MORE;
    }

    /* len32: first complete the header, then the frame it announces. */
    size_t off = 0;
    if (fp->len < FRAME_LEN32_HEADER) {
        size_t take = FRAME_LEN32_HEADER - fp->len;
        if (take > len)
            take = len;
        if (!partial_reserve(fp, fp->len + take, FRAME_LEN32_HEADER + max_frame, grown))
            return FRAME_NOMEM;
        memcpy(fp->buf + fp->len, p, take);
        fp->len += (uint32_t)take;
        off = take;
        *used = off;
        if (fp->len < FRAME_LEN32_HEADER)
            return FRAME_NEED_MORE;
        if (be32(fp->buf) > max_frame)
            return FRAME_TOO_LONG;
    }
    size_t total = FRAME_LEN32_HEADER + (size_t)be32(fp->buf);
    size_t take = total - fp->len;
    if (take > len - off)
        take = len - off;
    int64_t more = 0;
    if (!partial_reserve(fp, fp->len + take, total, &more))
        return FRAME_NOMEM;
    *grown += more;
    memcpy(fp->buf + fp->len, p + off, take);
    fp->len += (uint32_t)take;
    *used = off + take;
    return fp->len == total ? FRAME_COMPLETE : FRAME_NEED_MORE;
}

uint32_t frame_partial_reset(struct frame_partial *fp)
{
    uint32_t cap = fp->cap;
    rc_free(fp->buf);
    fp->buf = NULL;
    fp->len = 0;
    fp->cap = 0;
    return cap;
}
