/* tensor.h: n-dimensional arrays for the runtime and the Lua surface.
 *
 * float32 and int32, up to 4 dimensions, row-major. A tensor is a view
 * (offset, shape, strides) onto a reference-counted storage; reshape of a
 * contiguous tensor, narrow, select and transpose share the storage. Every
 * tensor knows its device (mb_storage.device): the operations here run on the
 * CPU; a storage on a GPU is made, moved and copied by mb_tensor_to and
 * mb_tensor_copy_device (runtime/cuda.h). Hot paths (the model, the learners)
 * work on raw float pointers obtained with mb_tensor_f32() from contiguous
 * tensors; this API is for the edges and for Lua. tensor.c implements
 * storage, creation, views and copies; tensor_math.c arithmetic, matrix
 * products and reductions.
 *
 * Ownership: a function returning mb_tensor* gives the caller one tensor to
 * release with mb_tensor_free(). NULL means failure, described in err.
 */
#ifndef MB_TENSOR_H
#define MB_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"

#define MB_MAX_DIMS 4

typedef enum mb_dtype { MB_FLOAT32 = 0, MB_INT32 = 1 } mb_dtype;
typedef enum mb_device { MB_CPU = 0, MB_CUDA = 1 } mb_device;

typedef struct mb_storage {
    void *data;
    size_t nbytes;
    int refcount;
    mb_device device;
    /* Frees data when the last reference goes (free() when NULL); lets a
       storage wrap an mmap'd file or memory owned by another object. */
    void (*release)(void *data, size_t nbytes, void *ctx);
    void *release_ctx;
} mb_storage;

typedef struct mb_tensor {
    mb_storage *storage;
    int64_t offset; /* in elements */
    int ndim;       /* 0 (scalar) .. MB_MAX_DIMS */
    int64_t shape[MB_MAX_DIMS];
    int64_t stride[MB_MAX_DIMS]; /* in elements */
    mb_dtype dtype;
} mb_tensor;

const char *mb_dtype_name(mb_dtype dtype);
size_t mb_dtype_size(mb_dtype dtype);

/* ---- creation ---------------------------------------------------------- */
mb_tensor *mb_tensor_empty(mb_dtype dtype, int ndim, const int64_t *shape, mb_error *err);
mb_tensor *mb_tensor_zeros(mb_dtype dtype, int ndim, const int64_t *shape, mb_error *err);
mb_tensor *mb_tensor_full(mb_dtype dtype, int ndim, const int64_t *shape, double value, mb_error *err);
/* 1-D [start, stop) by step. */
mb_tensor *mb_tensor_arange(mb_dtype dtype, double start, double stop, double step, mb_error *err);
/* Copies n = prod(shape) elements of dtype from data. */
mb_tensor *mb_tensor_from_data(mb_dtype dtype, int ndim, const int64_t *shape, const void *data, mb_error *err);
/* Wraps memory without copying; release(data, nbytes, ctx) runs when the last
   view goes (release may be NULL for memory that outlives every view). */
mb_tensor *mb_tensor_wrap(mb_dtype dtype, int ndim, const int64_t *shape, void *data,
                          void (*release)(void *, size_t, void *), void *ctx, mb_error *err);
mb_tensor *mb_tensor_rand_uniform(int ndim, const int64_t *shape, mb_rng *rng, float lo, float hi, mb_error *err);
mb_tensor *mb_tensor_randn(int ndim, const int64_t *shape, mb_rng *rng, float mean, float std, mb_error *err);

void mb_tensor_free(mb_tensor *t); /* NULL is fine */

/* ---- inspection -------------------------------------------------------- */
int64_t mb_tensor_numel(const mb_tensor *t);
int mb_tensor_is_contiguous(const mb_tensor *t);
/* Base pointer of the view (storage data + offset). Only meaningful for the
   matching dtype; use with contiguous tensors for flat indexing. */
float *mb_tensor_f32(const mb_tensor *t);
int32_t *mb_tensor_i32(const mb_tensor *t);
/* "[2,3]" into buf. */
const char *mb_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
int mb_shape_equal(const mb_tensor *a, const mb_tensor *b);
/* Element at 0-based index idx[ndim] as double; bounds are checked. */
mb_status mb_tensor_get(const mb_tensor *t, const int64_t *idx, double *out, mb_error *err);
mb_status mb_tensor_set(mb_tensor *t, const int64_t *idx, double value, mb_error *err);
/* Bytes held by the storage (for telling Lua's collector). */
size_t mb_tensor_nbytes(const mb_tensor *t);
/* Storages alive in this process and the bytes they hold (leak checks, memory reports). */
int64_t mb_tensor_live_storages(void);
int64_t mb_tensor_live_bytes(void);

/* ---- views (share storage) --------------------------------------------- */
/* One dimension of shape may be -1 (inferred). Needs a contiguous input; use
   mb_tensor_contiguous first otherwise (reshape does that and copies). */
mb_tensor *mb_tensor_reshape(const mb_tensor *t, int ndim, const int64_t *shape, mb_error *err);
mb_tensor *mb_tensor_narrow(const mb_tensor *t, int dim, int64_t start, int64_t length, mb_error *err);
mb_tensor *mb_tensor_select(const mb_tensor *t, int dim, int64_t index, mb_error *err);
/* Swaps the last two dimensions. */
mb_tensor *mb_tensor_transpose(const mb_tensor *t, mb_error *err);
/* A new reference to the same view. */
mb_tensor *mb_tensor_view(const mb_tensor *t, mb_error *err);
/* Same view if already contiguous (new reference), else a packed copy. */
mb_tensor *mb_tensor_contiguous(const mb_tensor *t, mb_error *err);
mb_tensor *mb_tensor_clone(const mb_tensor *t, mb_error *err);
mb_tensor *mb_tensor_to_dtype(const mb_tensor *t, mb_dtype dtype, mb_error *err);
/* Copy src into dst elementwise (same shape; dtype converts). */
mb_status mb_tensor_copy_(mb_tensor *dst, const mb_tensor *src, mb_error *err);
mb_status mb_tensor_fill_(mb_tensor *t, double value, mb_error *err);

/* ---- arithmetic -------------------------------------------------------- */
typedef enum mb_binop { MB_ADD, MB_SUB, MB_MUL, MB_DIV, MB_POW, MB_MAXIMUM, MB_MINIMUM } mb_binop;
typedef enum mb_unop { MB_NEG, MB_EXP, MB_LOG, MB_TANH, MB_RELU, MB_GELU, MB_SQRT, MB_ABS, MB_SIGMOID } mb_unop;

/* Broadcasting as in NumPy (shapes aligned on the right; sizes equal or 1).
   int32 op int32 stays int32 (DIV truncates toward zero, error on /0);
   anything with float32 gives float32. */
mb_tensor *mb_tensor_binary(mb_binop op, const mb_tensor *a, const mb_tensor *b, mb_error *err);
/* a op s, or s op a when scalar_first. */
mb_tensor *mb_tensor_binary_scalar(mb_binop op, const mb_tensor *a, double s, int scalar_first, mb_error *err);
/* Always float32. GELU is the exact erf form: x/2 (1 + erf(x/sqrt 2)). */
mb_tensor *mb_tensor_unary(mb_unop op, const mb_tensor *a, mb_error *err);

/* Matrix product of float32 tensors through cblas_sgemm.
   2-D x 2-D: [m,k] x [k,n]; 1-D operands act as a row / column vector.
   3-D/4-D: batched over the leading dimensions (must match, or one side 2-D,
   which is shared across the batch). trans_a / trans_b transpose the last
   two dimensions of that operand first (no copy). */
mb_tensor *mb_tensor_matmul(const mb_tensor *a, const mb_tensor *b, int trans_a, int trans_b, mb_error *err);
/* Operands mb_tensor_matmul had to copy so far (strides sgemm cannot read: a
   diagnostic that keeps the no-copy paths for transposed views honest). */
int64_t mb_tensor_matmul_packs(void);

/* ---- text --------------------------------------------------------------- */
/* Receives n bytes of text (not NUL-terminated). */
typedef void (*mb_text_sink)(void *ctx, const char *s, size_t n);
/* t as text, PyTorch style ("tensor([1.0000, 2.0000], shape=[2], dtype=float32)"),
   handed to put in pieces (tensor_format.c). A tensor on a GPU shows its shape only. */
void mb_tensor_format(const mb_tensor *t, mb_text_sink put, void *ctx);

/* ---- reductions (0-based dim; the dim is removed) ----------------------- */
typedef enum mb_reduce { MB_SUM, MB_MEAN, MB_MAX, MB_MIN, MB_ARGMAX, MB_ARGMIN } mb_reduce;
/* dim = -1 .. ndim-1 counts from the end; ALL reduces everything to a 0-d tensor.
   ARGMAX/ARGMIN give int32 0-based indices (first on ties). */
#define MB_DIM_ALL (-100)
mb_tensor *mb_tensor_reduce(mb_reduce op, const mb_tensor *t, int dim, mb_error *err);

/* Softmax / log-softmax along dim (numerically stable, float32 out). */
mb_tensor *mb_tensor_softmax(const mb_tensor *t, int dim, int log, mb_error *err);

/* ---- raw kernels shared by the runtime (contiguous float32) ------------ */
/* C[m,n] = alpha * op(A) op(B) + beta * C, row-major, through cblas_sgemm. */
void mb_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* Times mb_sgemm of random [m,k] x [k,n] matrices reps times after one warm-up
   product: mean and best seconds per product (sizes >= 1, reps >= 1). */
mb_status mb_sgemm_bench(int m, int n, int k, int64_t reps, double *mean_s, double *best_s, mb_error *err);
/* Exact GELU used everywhere (forward) and its derivative. */
float mb_gelu(float x);
float mb_gelu_grad(float x);

#endif
