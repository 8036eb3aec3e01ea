/* activations.c: see activations.h. */
#include "activations.h"

#include <stdlib.h>

void *mb_grow(void *p, size_t *cap, size_t need) {
    if (need <= *cap) return p;
    free(p);
    p = malloc(need);
    *cap = p ? need : 0;
    return p;
}

mb_status mb_act_blocks_prepare(mb_act_blocks *b, mb_act_layout layout, void *ctx, int B, int T, mb_error *err) {
    mb_bump fb = {0}, ub = {0}, ib = {0};
    layout(ctx, &fb, &ub, &ib);
    b->f = mb_grow(b->f, &b->cap_f, fb.used);
    b->u8 = mb_grow(b->u8, &b->cap_u8, ub.used);
    b->i32 = mb_grow(b->i32, &b->cap_i, ib.used);
    if ((fb.used && !b->f) || (ub.used && !b->u8) || (ib.used && !b->i32))
        return mb_fail(err, MB_ERR_NOMEM, "out of memory for activations at batch %d x length %d (%.0f MB)", B, T,
                       (fb.used + ub.used) / 1e6);
    mb_bump f2 = {b->f, 0}, u2 = {b->u8, 0}, i2 = {b->i32, 0};
    layout(ctx, &f2, &u2, &i2);
    return MB_OK;
}

void mb_act_blocks_release(mb_act_blocks *b) {
    free(b->f);
    free(b->u8);
    free(b->i32);
    *b = (mb_act_blocks){0};
}
