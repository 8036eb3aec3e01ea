/* tensor_impl.h: internals shared by tensor.c (storage, creation, views, copies) and
 * tensor_math.c (element-wise arithmetic, matrix products, reductions): the one loop
 * shape every element loop uses (see tensor.c's header comment) and the messages' helpers.
 * Not part of the runtime's API.
 */
#ifndef MB_TENSOR_IMPL_H
#define MB_TENSOR_IMPL_H

#include <stdint.h>
#include <string.h>

#include "parallel.h"
#include "tensor.h"

/* Shape string of a tensor into a caller buffer (message building). */
#define SHAPE_BUF 96
static inline const char *tshape(const mb_tensor *t, char *buf) {
    return mb_shape_str(t->ndim, t->shape, buf, SHAPE_BUF);
}

/* Dims and strides padded on the left to 4 (size 1, stride 0). */
static inline void pad4(const mb_tensor *t, int64_t shape[4], int64_t stride[4]) {
    int pad = 4 - t->ndim;
    for (int i = 0; i < 4; i++) {
        if (i < pad) {
            shape[i] = 1;
            stride[i] = 0;
        } else {
            shape[i] = t->shape[i - pad];
            stride[i] = t->stride[i - pad];
        }
    }
}

/* Offset of row r (flattened dims 0..2 of a padded shape) under strides s. */
static inline int64_t row_offset(int64_t r, const int64_t shape[4], const int64_t s[4]) {
    int64_t i2 = r % shape[2];
    int64_t q = r / shape[2];
    int64_t i1 = q % shape[1];
    int64_t i0 = q / shape[1];
    return i0 * s[0] + i1 * s[1] + i2 * s[2];
}

/* How an element loop over a padded 4-D shape is run. Adjacent dims that are
   contiguous in every operand are merged first (a contiguous [64,768] tensor
   becomes one run of 49152), then the work is cut into pieces: whole rows, or
   row segments when there are too few rows to keep every thread busy. */
typedef struct loop_plan {
    int64_t shape[4];
    int64_t rows, n3;    /* rows = shape[0]*shape[1]*shape[2], n3 = inner length */
    int64_t splits;      /* pieces per row */
    int64_t pieces;      /* rows * splits */
    int parallel;        /* worth forking threads */
} loop_plan;

/* Merge dims in place for nops operands' strides st[op][4] over shape. */
static inline void coalesce(int64_t shape[4], int nops, int64_t st[][4]) {
    int64_t ns[4] = {1, 1, 1, shape[3]}, nst[3][4] = {{0}};
    for (int op = 0; op < nops; op++) nst[op][3] = st[op][3];
    int k = 3;
    for (int i = 2; i >= 0; i--) {
        if (shape[i] == 1) continue; /* a size-1 dim has no extent: drop it */
        if (ns[k] == 1) {            /* the current dim is size 1: take this one's place */
            ns[k] = shape[i];
            for (int op = 0; op < nops; op++) nst[op][k] = st[op][i];
            continue;
        }
        int mergeable = 1;
        for (int op = 0; op < nops; op++)
            if (st[op][i] != nst[op][k] * ns[k]) mergeable = 0;
        if (mergeable) {
            ns[k] *= shape[i];
        } else {
            k--;
            ns[k] = shape[i];
            for (int op = 0; op < nops; op++) nst[op][k] = st[op][i];
        }
    }
    for (int i = 0; i < 4; i++) {
        shape[i] = ns[i];
        for (int op = 0; op < nops; op++) st[op][i] = i < k ? 0 : nst[op][i];
    }
}

static inline void plan_loop(loop_plan *p, const int64_t shape[4], int nops, int64_t st[][4]) {
    memcpy(p->shape, shape, sizeof p->shape);
    coalesce(p->shape, nops, st);
    p->rows = p->shape[0] * p->shape[1] * p->shape[2];
    p->n3 = p->shape[3];
    int64_t total = p->rows * p->n3;
    p->parallel = total > MB_PAR_MIN && mb_threads() > 1;
    p->splits = 1;
    if (p->parallel && p->rows < 4 * (int64_t)mb_threads()) {
        /* Segments of at least 4096 elements, about 4 pieces per thread. */
        int64_t want = (4 * (int64_t)mb_threads() + p->rows - 1) / p->rows, most = p->n3 / 4096;
        p->splits = want < most ? want : (most > 0 ? most : 1);
    }
    p->pieces = p->rows * p->splits;
}

/* Row and inner range [*j0, *j1) of piece k. */
static inline int64_t piece(const loop_plan *p, int64_t k, int64_t *j0, int64_t *j1) {
    int64_t r = k / p->splits, c = k % p->splits;
    *j0 = p->n3 * c / p->splits;
    *j1 = p->n3 * (c + 1) / p->splits;
    return r;
}

/* dim counted from the end when negative; an error names the shape. */
static inline mb_status norm_dim(const mb_tensor *t, int *dim, mb_error *err) {
    int d = *dim;
    if (d < 0) d += t->ndim;
    if (d < 0 || d >= t->ndim) {
        char b[SHAPE_BUF];
        return mb_fail(err, MB_ERR_RANGE, "dimension %d is out of range for a tensor of shape %s", *dim, tshape(t, b));
    }
    *dim = d;
    return MB_OK;
}

#endif
