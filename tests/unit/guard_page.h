/*
 * Parser inputs placed so that their last byte is the last readable one, right before a
 * PROT_NONE page: a parser that reads one byte past its input faults. For cmocka unit tests:
 * arena_setup / arena_teardown as the group's set-up and teardown, guarded() per input.
 * Define ARENA_BYTES (the longest input) before including it; 64 KiB, a receive buffer, if not.
 */
#ifndef RINGCAST_TEST_GUARD_PAGE_H
#define RINGCAST_TEST_GUARD_PAGE_H

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef ARENA_BYTES
#define ARENA_BYTES (64u << 10)
#endif

static uint8_t *arena; /* ARENA_BYTES readable, then one PROT_NONE page */
static size_t arena_map;

static int arena_setup(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    arena_map = ARENA_BYTES + page;
    void *m = mmap(NULL, arena_map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    arena = m;
    return mprotect(arena + ARENA_BYTES, page, PROT_NONE);
}

static int arena_teardown(void **state)
{
    (void)state;
    munmap(arena, arena_map);
    return 0;
}

/* A copy of @p[0..@len) whose last byte is the last readable one. */
static const uint8_t *guarded(const void *p, size_t len)
{
    assert_true(len <= ARENA_BYTES);
    uint8_t *dst = arena + ARENA_BYTES - len;
    if (len)
        memcpy(dst, p, len);
    return dst;
}

#endif
