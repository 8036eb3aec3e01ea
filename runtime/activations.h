/* activations.h: the blocks a model's activations live in, laid out in two passes.
 *
 * A model lists its buffers in a layout function that takes each one from three
 * bumps (floats, byte dropout masks, int32 ids). The first pass runs on NULL bases
 * and only counts; the blocks then grow (never shrink) to fit, and the second pass
 * places the buffers, each on a 64-byte boundary. A step of a shape seen before
 * allocates nothing (DESIGN.md section 2). Used by distilbert_acts.c and bert.c.
 */
#ifndef MB_ACTIVATIONS_H
#define MB_ACTIVATIONS_H

#include <stddef.h>

#include "error.h"

/* Counts when base is NULL. */
typedef struct mb_bump {
    char *base;
    size_t used;
} mb_bump;

/* bytes from b at the next cache line (NULL while counting). */
static inline void *mb_bump_take(mb_bump *b, size_t bytes) {
    size_t at = (b->used + 63) & ~(size_t)63;
    b->used = at + bytes;
    return b->base ? b->base + at : NULL;
}

typedef struct mb_act_blocks {
    void *f, *u8, *i32;
    size_t cap_f, cap_u8, cap_i; /* bytes */
} mb_act_blocks;

/* Takes every buffer of ctx from f (float), u8 (masks) and i32. */
typedef void (*mb_act_layout)(void *ctx, mb_bump *f, mb_bump *u8, mb_bump *i32);

/* Lay ctx's buffers out in b's blocks, grown to fit. B and T only name the
   batch in the out-of-memory message. */
mb_status mb_act_blocks_prepare(mb_act_blocks *b, mb_act_layout layout, void *ctx, int B, int T, mb_error *err);

/* Give the blocks back (a later prepare allocates them again). */
void mb_act_blocks_release(mb_act_blocks *b);

/* A buffer of at least need bytes: p itself when *cap suffices, else p freed and a
   new one (old contents lost; NULL with *cap 0 when out of memory). Growing only. */
void *mb_grow(void *p, size_t *cap, size_t need);

#endif
