#include "ringcast/alloc.h"

#include <stdlib.h>

/* Process-wide only for fault injection in tests; the server never sets it. */
static unsigned long fail_countdown;

static int should_fail(void)
{
    return fail_countdown && --fail_countdown == 0;
}

void *rc_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n);
}

void *rc_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n);
}

void *rc_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void rc_free(void *p)
{
    free(p);
}

void rc_alloc_fail_after(unsigned long nth)
{
    fail_countdown = nth;
}
