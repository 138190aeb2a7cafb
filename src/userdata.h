/*
 * What a completion is about, packed in its 64-bit user_data: the operation in the top 8 bits,
 * the slot's generation in the next 24 and the slot in the low 32. A completion whose generation
 * no longer matches its slot belongs to a connection that is gone (nginx's instance bit, wider).
 */
#ifndef RINGCAST_USERDATA_H
#define RINGCAST_USERDATA_H

#include <stdint.h>

enum ud_op {
    OP_IGNORE = 0, /* cancellations and such: nothing to do */
    OP_ACCEPT,
    OP_RECV,
    OP_SEND,
    OP_SEND_ZC,
    OP_POLL,
    OP_SIGNAL,
    OP_TICK,
    OP_HTTP_ACCEPT,
    OP_HTTP_RECV,
    OP_HTTP_SEND,
};

#define UD_GEN_MASK 0xffffffu

static inline uint64_t ud_pack(enum ud_op op, uint32_t gen, uint32_t slot)
{
    return (uint64_t)op << 56 | (uint64_t)(gen & UD_GEN_MASK) << 32 | slot;
}

static inline enum ud_op ud_op(uint64_t ud)
{
    return (enum ud_op)(ud >> 56);
}

static inline uint32_t ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & UD_GEN_MASK;
}

static inline uint32_t ud_slot(uint64_t ud)
{
    return (uint32_t)ud;
}

#endif
