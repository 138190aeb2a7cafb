#include "conn.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "ringcast/alloc.h"

int conn_table_init(struct conn_table *t, uint32_t cap)
{
    memset(t, 0, sizeof(*t));
    /* mmap, not calloc: pages of slots never used never become resident. */
    size_t bytes = (size_t)cap * sizeof(struct conn);
    void *slots = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED)
        return -ENOMEM;
    t->slots = slots;
    t->cap = cap;
    t->free_stack = rc_malloc((size_t)cap * sizeof(uint32_t));
    t->active = rc_malloc((size_t)cap * sizeof(uint32_t));
    if (!t->free_stack || !t->active) {
        conn_table_destroy(t);
        return -ENOMEM;
    }
    /* Lowest slots on top: a small server touches few pages. */
    for (uint32_t i = 0; i < cap; i++)
        t->free_stack[i] = cap - 1 - i;
    t->free_top = cap;
    return 0;
}

void conn_table_destroy(struct conn_table *t)
{
    if (t->slots)
        munmap(t->slots, (size_t)t->cap * sizeof(struct conn));
    rc_free(t->free_stack);
    rc_free(t->active);
    memset(t, 0, sizeof(*t));
}

struct conn *conn_table_alloc(struct conn_table *t, int fd)
{
    if (t->free_top == 0)
        return NULL;
    uint32_t slot = t->free_stack[--t->free_top];
    struct conn *c = &t->slots[slot];
    uint32_t gen = (c->gen + 1) & UD_GEN_MASK;
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->slot = slot;
    c->gen = gen;
    c->state = CONN_OPEN;
    c->next_paused = c->next_doomed = c->next_rearm = c->next_reap = CONN_NONE;
    c->active_idx = t->nactive;
    t->active[t->nactive++] = slot;
    return c;
}

void conn_table_free(struct conn_table *t, struct conn *c)
{
    uint32_t last = t->active[--t->nactive];
    t->active[c->active_idx] = last;
    t->slots[last].active_idx = c->active_idx;
    c->state = CONN_FREE;
    c->fd = -1;
    c->gen = (c->gen + 1) & UD_GEN_MASK;
    t->free_stack[t->free_top++] = c->slot;
}
