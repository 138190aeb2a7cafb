/* The broadcast log: a mirrored ring of frame bytes plus an index of who appended what. */
#include "ringcast/bcast.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ringcast/frame.h"

static uint64_t round_pow2(uint64_t v)
{
    uint64_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static inline struct bcast_rec *rec_at(const struct bcast *b, uint64_t i)
{
    return &b->recs[i & (b->rec_cap - 1)];
}

int bcast_init(struct bcast *b, uint64_t min_bytes, uint64_t min_records)
{
    memset(b, 0, sizeof(*b));
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    b->cap = round_pow2(min_bytes < page ? page : min_bytes);
    b->mask = b->cap - 1;
    b->rec_cap = round_pow2(min_records < 16 ? 16 : min_records);

    /* Reserve 2*cap of address space, then map the same memfd pages into both halves. */
    int fd = memfd_create("ringcast-log", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int err = 0;
    if (ftruncate(fd, (off_t)b->cap) < 0) {
        err = -errno;
        goto err_fd;
    }
    void *area = mmap(NULL, 2 * b->cap, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        err = -errno;
        goto err_fd;
    }
    b->base = area;
    for (int half = 0; half < 2; half++) {
        void *want = b->base + half * b->cap;
        void *got = mmap(want, b->cap, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
        if (got != want) {
            err = -errno;
            goto err_map;
        }
    }
    close(fd);

    /* Anonymous mapping: index pages cost memory only once used. */
    void *recs = mmap(NULL, b->rec_cap * sizeof(struct bcast_rec), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (recs == MAP_FAILED) {
        err = -errno;
        bcast_destroy(b);
        return err;
    }
    b->recs = recs;
    return 0;

err_map:
    munmap(b->base, 2 * b->cap);
    b->base = NULL;
err_fd:
    close(fd);
    return err;
}

void bcast_destroy(struct bcast *b)
{
    if (b->base)
        munmap(b->base, 2 * b->cap);
    if (b->recs)
        munmap(b->recs, b->rec_cap * sizeof(struct bcast_rec));
    memset(b, 0, sizeof(*b));
}

/* The oldest byte that must stay intact: the start of the oldest record, so a record can always
 * be parsed from its beginning even when the tail has moved into it. */
static uint64_t keep_from(const struct bcast *b)
{
    if (b->rec_tail < b->rec_head) {
        uint64_t first = rec_at(b, b->rec_tail)->off;
        return first < b->tail ? first : b->tail;
    }
    return b->tail;
}

bool bcast_fits(const struct bcast *b, size_t len)
{
    return b->head + len - keep_from(b) <= b->cap && b->rec_head - b->rec_tail < b->rec_cap;
}

/* The record an append from @origin of @len bytes would extend, or NULL for a new one. */
static struct bcast_rec *mergeable(const struct bcast *b, uint32_t origin, size_t len)
{
    if (b->rec_head == b->rec_tail)
        return NULL;
    struct bcast_rec *last = rec_at(b, b->rec_head - 1);
    if (last->origin == origin && last->off + last->len == b->head &&
        last->len + len <= BCAST_REC_MAX_LEN)
        return last;
    return NULL;
}

uint64_t bcast_append_units(const struct bcast *b, uint32_t origin, size_t len)
{
    return len + (mergeable(b, origin, len) ? 0 : BCAST_REC_UNITS);
}

uint64_t bcast_append(struct bcast *b, uint32_t origin, const void *p, size_t len, uint32_t nframes)
{
    uint64_t at = b->head;
    if (len == 0) /* nothing to store, and no record: a record always holds a frame */
        return at;
    memcpy(bcast_ptr(b, at), p, len);

    struct bcast_rec *last = mergeable(b, origin, len);
    if (last) {
        last->len += (uint32_t)len;
        last->nframes += nframes;
    } else {
        struct bcast_rec *r = rec_at(b, b->rec_head++);
        r->off = at;
        r->seq = b->frames;
        r->len = (uint32_t)len;
        r->origin = origin;
        r->nframes = nframes;
        r->units = b->vhead;
        b->vhead += BCAST_REC_UNITS;
    }
    b->head += len;
    b->vhead += len;
    b->frames += nframes;
    return at;
}

void bcast_release(struct bcast *b, uint64_t new_tail)
{
    if (new_tail <= b->tail)
        return;
    b->tail = new_tail;
    while (b->rec_tail < b->rec_head) {
        const struct bcast_rec *r = rec_at(b, b->rec_tail);
        if (r->off + r->len > new_tail)
            break;
        b->rec_tail++;
    }
}

/* Index of the record containing @off (the last one starting at or before it). */
static uint64_t find_rec(const struct bcast *b, uint64_t off)
{
    uint64_t lo = b->rec_tail, hi = b->rec_head; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (rec_at(b, mid)->off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

uint64_t bcast_next_range(const struct bcast *b, uint64_t *cursor, uint32_t skip_origin,
                          uint64_t own_end, uint64_t *skipped)
{
    uint64_t start = *cursor, end = b->head;
    if (start >= end)
        return 0;
    if (skip_origin == BCAST_NO_ORIGIN || own_end <= start)
        return end - start;
    for (uint64_t i = find_rec(b, start); i < b->rec_head; i++) {
        const struct bcast_rec *r = rec_at(b, i);
        if (r->origin != skip_origin)
            continue;
        if (r->off <= start) {
            if (r->off + r->len > start) {
                *skipped += r->off + r->len - start;
                start = r->off + r->len;
            }
            continue;
        }
        end = r->off;
        break;
    }
    *cursor = start;
    return end - start;
}

uint64_t bcast_units_at(const struct bcast *b, uint64_t off)
{
    if (off >= b->head || b->rec_tail == b->rec_head)
        return b->vhead;
    const struct bcast_rec *r = rec_at(b, find_rec(b, off));
    /* A reader at the very start of a record has not taken its weight yet. */
    return off <= r->off ? r->units : r->units + BCAST_REC_UNITS + (off - r->off);
}

uint64_t bcast_off_at_units(const struct bcast *b, uint64_t units)
{
    if (units >= b->vhead || b->rec_tail == b->rec_head)
        return b->head;
    /* The last record that starts at or below @units (or the first one). */
    uint64_t lo = b->rec_tail, hi = b->rec_head;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (rec_at(b, mid)->units <= units)
            lo = mid;
        else
            hi = mid;
    }
    const struct bcast_rec *r = rec_at(b, lo);
    if (units <= r->units)
        return r->off;
    uint64_t into = units - r->units; /* past its start: its weight, then its bytes */
    if (into <= BCAST_REC_UNITS)
        return r->off + (into ? 1 : 0);
    uint64_t off = r->off + (into - BCAST_REC_UNITS);
    return off < r->off + r->len ? off : r->off + r->len;
}

uint64_t bcast_seq_at(const struct bcast *b, uint64_t off)
{
    if (off >= b->head || b->rec_tail == b->rec_head)
        return b->frames;
    return rec_at(b, find_rec(b, off))->seq;
}

/* Hop frame by frame from the boundary @pos to the first boundary at or after @target. */
static uint64_t hop_frames(const struct bcast *b, enum framing framing, uint64_t pos,
                           uint64_t target, uint64_t *count)
{
    uint64_t n = 0;
    while (pos < target) {
        size_t flen = frame_wire_len(framing, bcast_ptr(b, pos), b->head - pos);
        if (flen == 0) /* cannot happen: the log holds whole frames only */
            return b->head;
        pos += flen;
        n++;
    }
    if (count)
        *count = n;
    return pos;
}

uint64_t bcast_frame_end(const struct bcast *b, enum framing framing, uint64_t off)
{
    if (off >= b->head || b->rec_tail == b->rec_head)
        return off;
    const struct bcast_rec *r = rec_at(b, find_rec(b, off));
    return hop_frames(b, framing, r->off, off, NULL);
}

uint64_t bcast_count_frames(const struct bcast *b, enum framing framing, uint64_t from, uint64_t to,
                            uint32_t skip_origin)
{
    uint64_t total = 0;
    if (from >= to || b->rec_tail == b->rec_head)
        return 0;
    for (uint64_t i = find_rec(b, from); i < b->rec_head; i++) {
        const struct bcast_rec *r = rec_at(b, i);
        uint64_t rend = r->off + r->len;
        if (r->off >= to)
            break;
        if (r->origin == skip_origin || rend <= from)
            continue;
        if (r->off >= from && rend <= to) {
            total += r->nframes;
        } else {
            uint64_t a = r->off > from ? r->off : from;
            uint64_t z = rend < to ? rend : to, n = 0;
            hop_frames(b, framing, a, z, &n);
            total += n;
        }
    }
    return total;
}

uint64_t bcast_seq_at_boundary(const struct bcast *b, enum framing framing, uint64_t off)
{
    if (off >= b->head || b->rec_tail == b->rec_head)
        return b->frames;
    const struct bcast_rec *r = rec_at(b, find_rec(b, off));
    uint64_t n = 0;
    hop_frames(b, framing, r->off, off, &n);
    return r->seq + n;
}

uint64_t bcast_origin_bytes(const struct bcast *b, uint64_t from, uint64_t to, uint32_t origin)
{
    uint64_t total = 0;
    if (from >= to || b->rec_tail == b->rec_head)
        return 0;
    for (uint64_t i = find_rec(b, from); i < b->rec_head; i++) {
        const struct bcast_rec *r = rec_at(b, i);
        if (r->off >= to)
            break;
        if (r->origin != origin)
            continue;
        uint64_t a = r->off > from ? r->off : from;
        uint64_t z = r->off + r->len < to ? r->off + r->len : to;
        if (z > a)
            total += z - a;
    }
    return total;
}
