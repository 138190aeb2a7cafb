/* The one allocation indirection: tests can make allocations fail to exercise the error paths. */
#ifndef RINGCAST_ALLOC_H
#define RINGCAST_ALLOC_H

#include <stddef.h>

/** Like malloc/realloc/calloc/free. Returns NULL when out of memory or when a test asks. */
void *rc_malloc(size_t n);
void *rc_realloc(void *p, size_t n);
void *rc_calloc(size_t n, size_t size);
void rc_free(void *p);

/** Tests: make the @nth next allocation (1 = the next one) fail; 0 disables. */
void rc_alloc_fail_after(unsigned long nth);

#endif
