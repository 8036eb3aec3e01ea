/* tensor_math.c: arithmetic on tensors (runtime/tensor.h): element-wise binary and
 * unary operations with broadcasting, matrix products (cblas_sgemm) and reductions
 * and softmax along a dimension. Storage, creation, views and copies are tensor.c;
 * both loop the same way (tensor_impl.h; the plan is described in tensor.c).
 */
#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parallel.h"
#include "tensor.h"
#include "tensor_impl.h"

/* Two's complement wrap of an int64 into int32 (defined, unlike the plain cast). */
static inline int32_t wrap_i32(int64_t v) {
    uint32_t u = (uint32_t)(uint64_t)v;
    return u <= INT32_MAX ? (int32_t)u : (int32_t)(u - 2147483648u) + INT32_MIN;
}

/* ---- element-wise arithmetic ----------------------------------------------- */

/* Output shape of a broadcast, and each operand's strides over it (0 where broadcast). */
static mb_status broadcast_shapes(const mb_tensor *a, const mb_tensor *b, int *ndim, int64_t shape[4],
                                  int64_t sa[4], int64_t sb[4], mb_error *err) {
    int64_t as[4], ast[4], bs[4], bst[4];
    pad4(a, as, ast);
    pad4(b, bs, bst);
    for (int i = 0; i < 4; i++) {
        if (as[i] == bs[i]) {
            shape[i] = as[i];
            sa[i] = ast[i];
            sb[i] = bst[i];
        } else if (as[i] == 1) {
            shape[i] = bs[i];
            sa[i] = 0;
            sb[i] = bst[i];
        } else if (bs[i] == 1) {
            shape[i] = as[i];
            sa[i] = ast[i];
            sb[i] = 0;
        } else {
            char b1[SHAPE_BUF], b2[SHAPE_BUF];
            return mb_fail(err, MB_ERR_SHAPE,
                           "shape %s does not match %s (sizes %lld and %lld at dimension %d from the end "
                           "are neither equal nor 1)",
                           tshape(b, b1), tshape(a, b2), (long long)bs[i], (long long)as[i], 4 - i);
        }
    }
    *ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    return MB_OK;
}

static inline float f32_binop(mb_binop op, float x, float y) {
    switch (op) {
    case MB_ADD: return x + y;
    case MB_SUB: return x - y;
    case MB_MUL: return x * y;
    case MB_DIV: return x / y;
    case MB_POW: return powf(x, y);
    case MB_MAXIMUM: return (x > y || x != x) ? x : y; /* NaN propagates, as in NumPy */
    case MB_MINIMUM: return (x < y || x != x) ? x : y;
    }
    return 0;
}

static inline int32_t ipow(int64_t base, int64_t e) {
    uint64_t r = 1, b = (uint64_t)base; /* unsigned: overflow wraps, no UB */
    while (e > 0) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return wrap_i32((int64_t)r);
}

static inline int32_t i32_binop(mb_binop op, int32_t x, int32_t y) {
    switch (op) {
    case MB_ADD: return wrap_i32((int64_t)x + y);
    case MB_SUB: return wrap_i32((int64_t)x - y);
    case MB_MUL: return wrap_i32((int64_t)x * y);
    case MB_DIV: return wrap_i32((int64_t)x / y); /* y != 0 checked before; C truncates toward zero */
    case MB_POW: return ipow(x, y);
    case MB_MAXIMUM: return x > y ? x : y;
    case MB_MINIMUM: return x < y ? x : y;
    }
    return 0;
}

/* Whether an int32 tensor holds a value for which pred is true (0 or negative). */
static int i32_any(const mb_tensor *t, int negative) {
    int64_t shape[4], s[4];
    pad4(t, shape, s);
    const int32_t *base = (const int32_t *)t->storage->data + t->offset;
    int64_t rows = shape[0] * shape[1] * shape[2];
    for (int64_t r = 0; r < rows; r++) {
        const int32_t *p = base + row_offset(r, shape, s);
        for (int64_t j = 0; j < shape[3]; j++) {
            int32_t v = p[j * s[3]];
            if (negative ? v < 0 : v == 0) return 1;
        }
    }
    return 0;
}

mb_tensor *mb_tensor_binary(mb_binop op, const mb_tensor *a, const mb_tensor *b, mb_error *err) {
    if (!a || !b) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if ((unsigned)op > MB_MINIMUM) {
        mb_fail(err, MB_ERR_ARG, "unknown binary operation %d", (int)op);
        return NULL;
    }
    int ndim;
    int64_t shape[4], sa[4], sb[4];
    if (broadcast_shapes(a, b, &ndim, shape, sa, sb, err)) return NULL;
    mb_dtype out_dtype = (a->dtype == MB_INT32 && b->dtype == MB_INT32) ? MB_INT32 : MB_FLOAT32;
    if (out_dtype == MB_INT32) {
        if (op == MB_DIV && i32_any(b, 0)) {
            mb_fail(err, MB_ERR_NUMERIC, "integer division by zero");
            return NULL;
        }
        if (op == MB_POW && i32_any(b, 1)) {
            mb_fail(err, MB_ERR_NUMERIC, "int32 tensors cannot be raised to negative powers (use :float() first)");
            return NULL;
        }
    }
    /* Mixed dtypes: convert the int32 side to float32 once. */
    mb_tensor *ca = NULL, *cb = NULL;
    if (out_dtype == MB_FLOAT32 && a->dtype != MB_FLOAT32 && !(a = ca = mb_tensor_to_dtype(a, MB_FLOAT32, err)))
        return NULL;
    if (out_dtype == MB_FLOAT32 && b->dtype != MB_FLOAT32 && !(b = cb = mb_tensor_to_dtype(b, MB_FLOAT32, err))) {
        mb_tensor_free(ca);
        return NULL;
    }
    /* Strides of converted copies are contiguous; recompute. */
    if (ca || cb) broadcast_shapes(a, b, &ndim, shape, sa, sb, err);
    int64_t out_shape[MB_MAX_DIMS];
    for (int i = 0; i < ndim; i++) out_shape[i] = shape[4 - ndim + i];
    mb_tensor *out = mb_tensor_empty(out_dtype, ndim, out_shape, err);
    if (out) {
        int64_t st[3][4], dummy[4];
        pad4(out, dummy, st[0]);
        memcpy(st[1], sa, sizeof st[1]);
        memcpy(st[2], sb, sizeof st[2]);
        loop_plan p;
        plan_loop(&p, shape, 3, st);
        const int64_t *so = st[0], *sa_ = st[1], *sb_ = st[2];
        int64_t sa3 = sa_[3], sb3 = sb_[3];
        assert(so[3] == 1 || p.n3 <= 1); /* out is contiguous */
        if (out_dtype == MB_FLOAT32) {
            const float *pa = mb_tensor_f32(a), *pb = mb_tensor_f32(b);
            float *po = mb_tensor_f32(out);
#pragma omp parallel for num_threads(mb_threads()) if (p.parallel)
            for (int64_t k = 0; k < p.pieces; k++) {
                int64_t j0, j1, r = piece(&p, k, &j0, &j1);
                const float *ra = pa + row_offset(r, p.shape, sa_), *rb = pb + row_offset(r, p.shape, sb_);
                float *ro = po + row_offset(r, p.shape, so);
/* One loop per stride pattern (both unit, scalar on one side, general) and
   per operation, so that the compiler vectorises the common cases. */
#define MB_BINLOOP(EXPR)                                                                    \
    do {                                                                                    \
        if (sa3 == 1 && sb3 == 1)                                                           \
            for (int64_t j = j0; j < j1; j++) { float x = ra[j], y = rb[j]; ro[j] = (EXPR); } \
        else if (sa3 == 1 && sb3 == 0) {                                                    \
            float y = rb[0];                                                                \
            for (int64_t j = j0; j < j1; j++) { float x = ra[j]; ro[j] = (EXPR); }          \
        } else if (sa3 == 0 && sb3 == 1) {                                                  \
            float x = ra[0];                                                                \
            for (int64_t j = j0; j < j1; j++) { float y = rb[j]; ro[j] = (EXPR); }          \
        } else                                                                              \
            for (int64_t j = j0; j < j1; j++) {                                             \
                float x = ra[j * sa3], y = rb[j * sb3];                                     \
                ro[j] = (EXPR);                                                             \
            }                                                                               \
    } while (0)
                switch (op) {
                case MB_ADD: MB_BINLOOP(x + y); break;
                case MB_SUB: MB_BINLOOP(x - y); break;
                case MB_MUL: MB_BINLOOP(x * y); break;
                case MB_DIV: MB_BINLOOP(x / y); break;
                default: MB_BINLOOP(f32_binop(op, x, y));
                }
#undef MB_BINLOOP
            }
        } else {
            const int32_t *pa = mb_tensor_i32(a), *pb = mb_tensor_i32(b);
            int32_t *po = mb_tensor_i32(out);
#pragma omp parallel for num_threads(mb_threads()) if (p.parallel)
            for (int64_t k = 0; k < p.pieces; k++) {
                int64_t j0, j1, r = piece(&p, k, &j0, &j1);
                const int32_t *ra = pa + row_offset(r, p.shape, sa_), *rb = pb + row_offset(r, p.shape, sb_);
                int32_t *ro = po + row_offset(r, p.shape, so);
                for (int64_t j = j0; j < j1; j++) ro[j] = i32_binop(op, ra[j * sa3], rb[j * sb3]);
            }
        }
    }
    mb_tensor_free(ca);
    mb_tensor_free(cb);
    return out;
}

mb_tensor *mb_tensor_binary_scalar(mb_binop op, const mb_tensor *a, double s, int scalar_first, mb_error *err) {
    if (!a) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    /* An integral scalar keeps an int32 tensor int32; any other scalar makes float32. */
    int integral = s == floor(s) && s >= -2147483648.0 && s <= 2147483647.0;
    mb_dtype sd = (a->dtype == MB_INT32 && integral) ? MB_INT32 : MB_FLOAT32;
    mb_tensor *st = mb_tensor_full(sd, 0, NULL, s, err);
    if (!st) return NULL;
    mb_tensor *r = scalar_first ? mb_tensor_binary(op, st, a, err) : mb_tensor_binary(op, a, st, err);
    mb_tensor_free(st);
    return r;
}

float mb_gelu(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }

float mb_gelu_grad(float x) {
    /* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
    float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
    float pdf = expf(-0.5f * x * x) * 0.3989422804014327f; /* 1/sqrt(2 pi) */
    return cdf + x * pdf;
}

static inline float f32_unop(mb_unop op, float x) {
    switch (op) {
    case MB_NEG: return -x;
    case MB_EXP: return expf(x);
    case MB_LOG: return logf(x);
    case MB_TANH: return tanhf(x);
    case MB_RELU: return x > 0 ? x : 0.0f;
    case MB_GELU: return mb_gelu(x);
    case MB_SQRT: return sqrtf(x);
    case MB_ABS: return fabsf(x);
    case MB_SIGMOID: {
        /* Two forms so that exp never overflows. */
        if (x >= 0) return 1.0f / (1.0f + expf(-x));
        float e = expf(x);
        return e / (1.0f + e);
    }
    }
    return 0;
}

mb_tensor *mb_tensor_unary(mb_unop op, const mb_tensor *a, mb_error *err) {
    if (!a) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if ((unsigned)op > MB_SIGMOID) {
        mb_fail(err, MB_ERR_ARG, "unknown unary operation %d", (int)op);
        return NULL;
    }
    mb_tensor *ca = NULL;
    if (a->dtype != MB_FLOAT32 && !(a = ca = mb_tensor_to_dtype(a, MB_FLOAT32, err))) return NULL;
    mb_tensor *out = mb_tensor_empty(MB_FLOAT32, a->ndim, a->shape, err);
    if (out) {
        int64_t shape[4], st[2][4];
        pad4(out, shape, st[0]);
        pad4(a, shape, st[1]);
        loop_plan p;
        plan_loop(&p, shape, 2, st);
        const int64_t *so = st[0], *s = st[1];
        int64_t s3 = s[3];
        const float *pa = mb_tensor_f32(a);
        float *po = mb_tensor_f32(out);
#pragma omp parallel for num_threads(mb_threads()) if (p.parallel)
        for (int64_t k = 0; k < p.pieces; k++) {
            int64_t j0, j1, r = piece(&p, k, &j0, &j1);
            const float *ra = pa + row_offset(r, p.shape, s);
            float *ro = po + row_offset(r, p.shape, so);
            for (int64_t j = j0; j < j1; j++) ro[j] = f32_unop(op, ra[j * s3]);
        }
    }
    mb_tensor_free(ca);
    return out;
}

/* ---- matrix products --------------------------------------------------------- */

void mb_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    mb_threads_init();
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

mb_status mb_sgemm_bench(int m, int n, int k, int64_t reps, double *mean_s, double *best_s, mb_error *err) {
    size_t na = (size_t)m * (size_t)k, nb = (size_t)k * (size_t)n, nc = (size_t)m * (size_t)n;
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4);
    if (!A || !B || !C) {
        free(A);
        free(B);
        free(C);
        return mb_fail(err, MB_ERR_NOMEM, "bench_sgemm: out of memory");
    }
    mb_rng rng;
    mb_rng_seed(&rng, 1);
    for (size_t i = 0; i < na; i++) A[i] = mb_rng_uniform_f32(&rng) - 0.5f;
    for (size_t i = 0; i < nb; i++) B[i] = mb_rng_uniform_f32(&rng) - 0.5f;
    mb_sgemm(0, 0, m, n, k, 1.0f, A, k, B, n, 0.0f, C, n); /* warm-up */
    double total = 0, best = INFINITY;
    for (int64_t r = 0; r < reps; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        mb_sgemm(0, 0, m, n, k, 1.0f, A, k, B, n, 0.0f, C, n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        total += s;
        if (s < best) best = s;
    }
    free(A);
    free(B);
    free(C);
    *mean_s = total / (double)reps;
    *best_s = best;
    return MB_OK;
}

/* How a strided r x c matrix can be handed to sgemm without a copy: as a
   row-major matrix (trans 0) with leading dimension ld, or as the transpose
   of a row-major c x r matrix (trans 1). Returns 0 when neither fits. */
static int gemm_layout(int64_t r, int64_t c, int64_t sr, int64_t sc, int *trans, int64_t *ld) {
    int64_t cc = c > 1 ? c : 1, rr = r > 1 ? r : 1;
    if ((c <= 1 || sc == 1) && (r <= 1 || sr >= cc)) {
        *trans = 0;
        *ld = r <= 1 ? cc : sr;
        return 1;
    }
    if ((r <= 1 || sr == 1) && (c <= 1 || sc >= rr)) {
        *trans = 1;
        *ld = c <= 1 ? rr : sc;
        return 1;
    }
    return 0;
}

static int64_t g_matmul_packs;

int64_t mb_tensor_matmul_packs(void) { return __atomic_load_n(&g_matmul_packs, __ATOMIC_RELAXED); }

mb_tensor *mb_tensor_matmul(const mb_tensor *a0, const mb_tensor *b0, int trans_a, int trans_b, mb_error *err) {
    if (!a0 || !b0) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    char b1[SHAPE_BUF], b2[SHAPE_BUF];
    if (a0->dtype != MB_FLOAT32 || b0->dtype != MB_FLOAT32) {
        mb_fail(err, MB_ERR_DTYPE, "matmul needs float32 tensors, got %s and %s", mb_dtype_name(a0->dtype),
                mb_dtype_name(b0->dtype));
        return NULL;
    }
    if (a0->ndim < 1 || b0->ndim < 1) {
        mb_fail(err, MB_ERR_SHAPE, "matmul needs tensors of 1 to 4 dimensions, got shapes %s and %s",
                tshape(a0, b1), tshape(b0, b2));
        return NULL;
    }
    /* Work on header copies: vectors promoted to matrices, transposes applied. */
    mb_tensor a = *a0, b = *b0;
    int a_vec = a.ndim == 1, b_vec = b.ndim == 1;
    if (a_vec) { /* [k] -> [1,k] */
        a.shape[1] = a.shape[0];
        a.stride[1] = a.stride[0];
        a.shape[0] = 1;
        a.stride[0] = a.shape[1];
        a.ndim = 2;
    } else if (trans_a) {
        int i = a.ndim - 2, j = a.ndim - 1;
        int64_t t = a.shape[i]; a.shape[i] = a.shape[j]; a.shape[j] = t;
        t = a.stride[i]; a.stride[i] = a.stride[j]; a.stride[j] = t;
    }
    if (b_vec) { /* [k] -> [k,1] */
        b.shape[1] = 1;
        b.stride[1] = 1;
        b.ndim = 2;
    } else if (trans_b) {
        int i = b.ndim - 2, j = b.ndim - 1;
        int64_t t = b.shape[i]; b.shape[i] = b.shape[j]; b.shape[j] = t;
        t = b.stride[i]; b.stride[i] = b.stride[j]; b.stride[j] = t;
    }
    int64_t m = a.shape[a.ndim - 2], k = a.shape[a.ndim - 1];
    int64_t k2 = b.shape[b.ndim - 2], n = b.shape[b.ndim - 1];
    if (k != k2) {
        mb_fail(err, MB_ERR_SHAPE, "shape %s does not match %s (inner dimensions %lld and %lld differ%s)",
                tshape(b0, b1), tshape(a0, b2), (long long)k2, (long long)k,
                (trans_a || trans_b) ? " after transposing" : "");
        return NULL;
    }
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX) {
        mb_fail(err, MB_ERR_SHAPE, "matmul dimensions exceed the BLAS int range");
        return NULL;
    }
    /* Batch dims (at most 2 each), broadcast as in NumPy. */
    int abd = a.ndim - 2, bbd = b.ndim - 2, nbd = abd > bbd ? abd : bbd;
    int64_t bshape[2] = {1, 1}, sa[2] = {0, 0}, sb[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        int ia = i - (2 - abd), ib = i - (2 - bbd); /* index into a/b batch dims, <0 = padded */
        int64_t as = ia >= 0 ? a.shape[ia] : 1, bs = ib >= 0 ? b.shape[ib] : 1;
        int64_t ast = ia >= 0 ? a.stride[ia] : 0, bst = ib >= 0 ? b.stride[ib] : 0;
        if (as == bs || bs == 1) {
            bshape[i] = as;
            sa[i] = ast;
            sb[i] = bs == 1 ? 0 : bst;
        } else if (as == 1) {
            bshape[i] = bs;
            sa[i] = 0;
            sb[i] = bst;
        } else {
            mb_fail(err, MB_ERR_SHAPE, "shape %s does not match %s (batch sizes %lld and %lld differ)",
                    tshape(b0, b1), tshape(a0, b2), (long long)bs, (long long)as);
            return NULL;
        }
    }
    /* Output: batch + [m, n], minus the dims that came from vectors. */
    int64_t oshape[MB_MAX_DIMS];
    int ond = 0;
    for (int i = 2 - nbd; i < 2; i++) oshape[ond++] = bshape[i];
    if (!a_vec) oshape[ond++] = m;
    if (!b_vec) oshape[ond++] = n;
    mb_tensor *out = mb_tensor_empty(MB_FLOAT32, ond, oshape, err);
    if (!out) return NULL;
    float *po = mb_tensor_f32(out);
    if (m == 0 || n == 0) return out;
    if (k == 0) {
        memset(po, 0, (size_t)(m * n * bshape[0] * bshape[1]) * sizeof(float));
        return out;
    }
    /* Operands sgemm cannot read in place (arbitrary strides) are packed once. */
    mb_tensor *pa = NULL, *pb = NULL;
    int ta, tb;
    int64_t lda, ldb;
    const mb_tensor *A = &a, *B = &b;
    if (!gemm_layout(m, k, a.stride[a.ndim - 2], a.stride[a.ndim - 1], &ta, &lda)) {
        if (!(pa = mb_tensor_clone(&a, err))) goto fail;
        __atomic_add_fetch(&g_matmul_packs, 1, __ATOMIC_RELAXED);
        A = pa;
        /* clone packs [.., m, k] row-major; batch strides change accordingly. */
        for (int i = 0; i < 2; i++) {
            int ia = i - (2 - abd);
            if (ia >= 0 && sa[i] != 0) sa[i] = pa->stride[ia];
        }
        ta = 0;
        lda = k;
    }
    if (!gemm_layout(k, n, b.stride[b.ndim - 2], b.stride[b.ndim - 1], &tb, &ldb)) {
        if (!(pb = mb_tensor_clone(&b, err))) goto fail;
        __atomic_add_fetch(&g_matmul_packs, 1, __ATOMIC_RELAXED);
        B = pb;
        for (int i = 0; i < 2; i++) {
            int ib = i - (2 - bbd);
            if (ib >= 0 && sb[i] != 0) sb[i] = pb->stride[ib];
        }
        tb = 0;
        ldb = n;
    }
    if (lda > INT_MAX || ldb > INT_MAX) {
        mb_fail(err, MB_ERR_SHAPE, "matmul strides exceed the BLAS int range");
        goto fail;
    }
    const float *baseA = mb_tensor_f32(A), *baseB = mb_tensor_f32(B);
    int64_t batch = 0;
    for (int64_t i0 = 0; i0 < bshape[0]; i0++)
        for (int64_t i1 = 0; i1 < bshape[1]; i1++, batch++)
            mb_sgemm(ta, tb, (int)m, (int)n, (int)k, 1.0f, baseA + i0 * sa[0] + i1 * sa[1], (int)lda,
                     baseB + i0 * sb[0] + i1 * sb[1], (int)ldb, 0.0f, po + batch * m * n, (int)n);
    mb_tensor_free(pa);
    mb_tensor_free(pb);
    return out;
fail:
    mb_tensor_free(pa);
    mb_tensor_free(pb);
    mb_tensor_free(out);
    return NULL;
}

/* ---- reductions and softmax ---------------------------------------------------- */

/* Sizes around dim of a contiguous tensor: outer x len x inner. */
static void split_dim(const mb_tensor *t, int dim, int64_t *outer, int64_t *len, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < dim; i++) *outer *= t->shape[i];
    for (int i = dim + 1; i < t->ndim; i++) *inner *= t->shape[i];
    *len = t->shape[dim];
}

static double load(const void *base, mb_dtype dt, int64_t i) {
    return dt == MB_FLOAT32 ? (double)((const float *)base)[i] : (double)((const int32_t *)base)[i];
}

mb_tensor *mb_tensor_reduce(mb_reduce op, const mb_tensor *t, int dim, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if ((unsigned)op > MB_ARGMIN) {
        mb_fail(err, MB_ERR_ARG, "unknown reduction %d", (int)op);
        return NULL;
    }
    mb_tensor *c = mb_tensor_contiguous(t, err);
    if (!c) return NULL;
    int64_t outer, len, inner;
    int64_t oshape[MB_MAX_DIMS];
    int ond = 0;
    if (dim == MB_DIM_ALL) {
        outer = 1;
        inner = 1;
        len = mb_tensor_numel(c);
    } else {
        if (norm_dim(c, &dim, err)) {
            mb_tensor_free(c);
            return NULL;
        }
        split_dim(c, dim, &outer, &len, &inner);
        for (int i = 0; i < c->ndim; i++)
            if (i != dim) oshape[ond++] = c->shape[i];
    }
    if (len == 0 && op != MB_SUM && op != MB_MEAN) {
        char b[SHAPE_BUF];
        mb_fail(err, MB_ERR_SHAPE, "cannot take the %s of an empty dimension (shape %s)",
                op == MB_MAX ? "max" : op == MB_MIN ? "min" : op == MB_ARGMAX ? "argmax" : "argmin", tshape(t, b));
        mb_tensor_free(c);
        return NULL;
    }
    mb_dtype odt = (op == MB_ARGMAX || op == MB_ARGMIN) ? MB_INT32
                   : op == MB_MEAN                      ? MB_FLOAT32
                                                        : c->dtype;
    mb_tensor *out = mb_tensor_empty(odt, ond, oshape, err);
    if (!out) {
        mb_tensor_free(c);
        return NULL;
    }
    const void *src = c->dtype == MB_FLOAT32 ? (const void *)mb_tensor_f32(c) : (const void *)mb_tensor_i32(c);
    mb_dtype dt = c->dtype;
    int64_t nout = outer * inner, total = nout * len;
    void *dst = out->storage->data;
#pragma omp parallel for num_threads(mb_threads()) if (total > MB_PAR_MIN && nout > 1)
    for (int64_t o = 0; o < nout; o++) {
        int64_t base = (o / inner) * len * inner + (o % inner);
        double acc = 0, best = 0;
        int64_t arg = 0;
        int64_t iacc = 0;
        for (int64_t i = 0; i < len; i++) {
            double v = load(src, dt, base + i * inner);
            switch (op) {
            case MB_SUM:
            case MB_MEAN:
                if (dt == MB_INT32) iacc += (int64_t)v;
                else acc += v;
                break;
            case MB_MAX:
            case MB_ARGMAX:
                /* First maximum wins ties; a NaN counts as the maximum (as in PyTorch). */
                if (i == 0 || (v > best && best == best) || (v != v && best == best)) {
                    best = v;
                    arg = i;
                }
                break;
            case MB_MIN:
            case MB_ARGMIN:
                if (i == 0 || (v < best && best == best) || (v != v && best == best)) {
                    best = v;
                    arg = i;
                }
                break;
            }
        }
        if (dt == MB_INT32 && (op == MB_SUM || op == MB_MEAN)) acc = (double)iacc;
        double r = op == MB_SUM      ? acc
                   : op == MB_MEAN   ? (len ? acc / (double)len : NAN)
                   : (op == MB_MAX || op == MB_MIN) ? best
                                     : (double)arg;
        if (odt == MB_FLOAT32) ((float *)dst)[o] = (float)r;
        else ((int32_t *)dst)[o] = (op == MB_SUM) ? wrap_i32(iacc) : (int32_t)r;
    }
    mb_tensor_free(c);
    return out;
}

mb_tensor *mb_tensor_softmax(const mb_tensor *t, int dim, int log_out, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if (t->ndim == 0) {
        mb_fail(err, MB_ERR_SHAPE, "softmax needs at least 1 dimension, got a 0-d tensor");
        return NULL;
    }
    int d = dim;
    if (norm_dim(t, &d, err)) return NULL;
    /* A float32 contiguous copy that becomes the output in place. */
    mb_tensor *out = mb_tensor_to_dtype(t, MB_FLOAT32, err);
    if (!out) return NULL;
    int64_t outer, len, inner;
    split_dim(out, d, &outer, &len, &inner);
    float *p = mb_tensor_f32(out);
    int64_t nout = outer * inner, total = nout * len;
#pragma omp parallel for num_threads(mb_threads()) if (total > MB_PAR_MIN && nout > 1)
    for (int64_t o = 0; o < nout; o++) {
        float *x = p + (o / inner) * len * inner + (o % inner);
        float mx = -INFINITY;
        for (int64_t i = 0; i < len; i++)
            if (x[i * inner] > mx) mx = x[i * inner];
        if (mx == -INFINITY) mx = 0; /* all -inf: avoid inf - inf */
        double sum = 0;
        for (int64_t i = 0; i < len; i++) sum += exp((double)x[i * inner] - mx);
        if (log_out) {
            double lse = mx + log(sum);
            for (int64_t i = 0; i < len; i++) x[i * inner] = (float)((double)x[i * inner] - lse);
        } else {
            float inv = (float)(1.0 / sum);
            for (int64_t i = 0; i < len; i++) x[i * inner] = expf(x[i * inner] - mx) * inv;
        }
    }
    return out;
}
