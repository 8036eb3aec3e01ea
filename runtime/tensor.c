/* tensor.c: n-dimensional float32/int32 arrays over reference-counted storage.
 *
 * Implements runtime/tensor.h: storage, creation, inspection, views, copies and
 * fills; arithmetic, matrix products and reductions are tensor_math.c. Every loop
 * that touches elements (here and there, tensor_impl.h) goes through
 * the same shape: the (up to 4) dimensions are padded on the left to exactly
 * 4 with size 1, dims contiguous in every operand are merged, the outer ones
 * are flattened into "rows" and the last is the inner loop; rows (or row
 * segments) run in parallel with OpenMP above MB_PAR_MIN elements. That
 * handles any strides (views, broadcasts with stride 0) with one code path.
 *
 * Limits: element operations run on the CPU (a storage on a device, from
 * mb_tensor_to in runtime/cuda.h, is only moved and copied); float32 and int32; at most 4 dimensions; matrix products
 * are float32 only (cblas_sgemm). Reductions and softmax make a contiguous
 * copy of a strided input first. int32 arithmetic wraps on overflow as two's
 * complement (like NumPy), division by zero is an error, and float -> int32
 * conversion truncates toward zero, saturates at the int32 range and maps
 * NaN to 0 (C leaves those cases undefined).
 */
#include "tensor.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "tensor_impl.h"

/* ---- small helpers --------------------------------------------------------- */

const char *mb_dtype_name(mb_dtype dtype) {
    switch (dtype) {
    case MB_FLOAT32: return "float32";
    case MB_INT32: return "int32";
    }
    return "unknown";
}

size_t mb_dtype_size(mb_dtype dtype) {
    (void)dtype;
    return 4; /* both float32 and int32 */
}

static int dtype_valid(mb_dtype dtype) { return dtype == MB_FLOAT32 || dtype == MB_INT32; }

const char *mb_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    if (!buf || n == 0) return "";
    size_t len = 0;
    len += (size_t)snprintf(buf + len, len < n ? n - len : 0, "[");
    for (int i = 0; i < ndim; i++)
        len += (size_t)snprintf(buf + len, len < n ? n - len : 0, "%s%lld", i ? "," : "",
                                (long long)shape[i]);
    snprintf(buf + (len < n ? len : n - 1), len < n ? n - len : 1, "]");
    return buf;
}

static mb_status check_shape(int ndim, const int64_t *shape, int64_t *numel, mb_error *err) {
    if (ndim < 0 || ndim > MB_MAX_DIMS)
        return mb_fail(err, MB_ERR_SHAPE, "a tensor has 0 to %d dimensions, got %d", MB_MAX_DIMS, ndim);
    if (ndim > 0 && !shape) return mb_fail(err, MB_ERR_ARG, "shape is NULL");
    int64_t n = 1;
    /* 2^40 elements (4 TiB) is far beyond any machine this runs on and keeps
       every index computation well inside int64. */
    const int64_t limit = (int64_t)1 << 40;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return mb_fail(err, MB_ERR_SHAPE, "size %lld of dimension %d is negative", (long long)shape[i], i);
        if (shape[i] > 0 && n > limit / shape[i]) {
            char b[SHAPE_BUF];
            return mb_fail(err, MB_ERR_SHAPE, "shape %s is too large", mb_shape_str(ndim, shape, b, sizeof b));
        }
        n *= shape[i];
    }
    if (numel) *numel = n;
    return MB_OK;
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

/* float -> int32 without undefined behaviour (see the header comment). */
static inline int32_t f2i_sat(double v) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    return (int32_t)v;
}

/* ---- storage ------------------------------------------------------------- */

/* Process-wide counts of live storages, for leak checks (atomic: views may be
   freed from worker threads of other parts). */
static int64_t g_live_storages, g_live_bytes;

int64_t mb_tensor_live_storages(void) { return __atomic_load_n(&g_live_storages, __ATOMIC_RELAXED); }
int64_t mb_tensor_live_bytes(void) { return __atomic_load_n(&g_live_bytes, __ATOMIC_RELAXED); }

static void count_storage(const mb_storage *s, int sign) {
    __atomic_add_fetch(&g_live_storages, sign, __ATOMIC_RELAXED);
    __atomic_add_fetch(&g_live_bytes, sign * (int64_t)s->nbytes, __ATOMIC_RELAXED);
}

static void release_nothing(void *data, size_t nbytes, void *ctx) {
    (void)data;
    (void)nbytes;
    (void)ctx;
}

/* Plain malloc/calloc on purpose: aligned_alloc's over-allocation leaves holes
   that a same-size request no longer fits, and a loop of big temporaries then
   grows the heap without bound (seen with glibc). malloc's 16 bytes suffice
   for the vector loops and OpenBLAS. calloc gives zeroed pages for free. */
static mb_storage *storage_alloc(size_t nbytes, int zero, mb_error *err) {
    mb_storage *s = malloc(sizeof *s);
    size_t alloc = nbytes ? nbytes : 1;
    void *data = s ? (zero ? calloc(1, alloc) : malloc(alloc)) : NULL;
    if (!s || !data) {
        free(s);
        free(data);
        mb_fail(err, MB_ERR_NOMEM, "out of memory allocating %zu bytes for a tensor", nbytes);
        return NULL;
    }
    s->data = data;
    s->nbytes = nbytes;
    s->refcount = 1;
    s->device = MB_CPU;
    s->release = NULL;
    s->release_ctx = NULL;
    count_storage(s, 1);
    return s;
}

static void storage_retain(mb_storage *s) { __atomic_add_fetch(&s->refcount, 1, __ATOMIC_RELAXED); }

static void storage_release(mb_storage *s) {
    if (!s) return;
    if (__atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
    count_storage(s, -1);
    if (s->release) s->release(s->data, s->nbytes, s->release_ctx);
    else free(s->data);
    free(s);
}

/* A tensor header over s, taking a new reference on s. */
static mb_tensor *tensor_header(mb_storage *s, mb_dtype dtype, int64_t offset, int ndim,
                                const int64_t *shape, const int64_t *stride, mb_error *err) {
    mb_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory allocating a tensor header");
        return NULL;
    }
    storage_retain(s);
    t->storage = s;
    t->offset = offset;
    t->ndim = ndim;
    t->dtype = dtype;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
    }
    return t;
}

/* ---- creation ------------------------------------------------------------- */

static mb_tensor *tensor_new(mb_dtype dtype, int ndim, const int64_t *shape, int zero, mb_error *err) {
    int64_t n;
    if (!dtype_valid(dtype)) {
        mb_fail(err, MB_ERR_DTYPE, "unknown dtype %d", (int)dtype);
        return NULL;
    }
    if (check_shape(ndim, shape, &n, err)) return NULL;
    mb_storage *s = storage_alloc((size_t)n * mb_dtype_size(dtype), zero, err);
    if (!s) return NULL;
    int64_t stride[MB_MAX_DIMS];
    contiguous_strides(ndim, shape, stride);
    mb_tensor *t = tensor_header(s, dtype, 0, ndim, shape, stride, err);
    storage_release(s); /* the header holds the only reference now (or none on failure) */
    return t;
}

mb_tensor *mb_tensor_empty(mb_dtype dtype, int ndim, const int64_t *shape, mb_error *err) {
    return tensor_new(dtype, ndim, shape, 0, err);
}

mb_tensor *mb_tensor_zeros(mb_dtype dtype, int ndim, const int64_t *shape, mb_error *err) {
    return tensor_new(dtype, ndim, shape, 1, err);
}

static mb_status check_int_value(double v, mb_error *err) {
    if (!(v == floor(v)) || v < -2147483648.0 || v > 2147483647.0)
        return mb_fail(err, MB_ERR_DTYPE, "value %g is not an int32", v);
    return MB_OK;
}

mb_tensor *mb_tensor_full(mb_dtype dtype, int ndim, const int64_t *shape, double value, mb_error *err) {
    if (dtype == MB_INT32 && check_int_value(value, err)) return NULL;
    mb_tensor *t = mb_tensor_empty(dtype, ndim, shape, err);
    if (t && mb_tensor_fill_(t, value, err)) {
        mb_tensor_free(t);
        return NULL;
    }
    return t;
}

mb_tensor *mb_tensor_arange(mb_dtype dtype, double start, double stop, double step, mb_error *err) {
    if (!isfinite(start) || !isfinite(stop) || !isfinite(step)) {
        mb_fail(err, MB_ERR_ARG, "arange needs finite start, stop and step (got %g, %g, %g)", start, stop, step);
        return NULL;
    }
    if (step == 0) {
        mb_fail(err, MB_ERR_ARG, "arange step must not be zero");
        return NULL;
    }
    if (dtype == MB_INT32 && (check_int_value(start, err) || check_int_value(step, err))) return NULL;
    double count = ceil((stop - start) / step);
    if (count < 0) count = 0;
    if (count > (double)((int64_t)1 << 40)) {
        mb_fail(err, MB_ERR_ARG, "arange(%g, %g, %g) has too many elements", start, stop, step);
        return NULL;
    }
    int64_t n = (int64_t)count;
    if (dtype == MB_INT32 && n > 0 && check_int_value(start + (double)(n - 1) * step, err)) return NULL;
    mb_tensor *t = mb_tensor_empty(dtype, 1, &n, err);
    if (!t) return NULL;
    if (dtype == MB_FLOAT32) {
        float *p = mb_tensor_f32(t);
        for (int64_t i = 0; i < n; i++) p[i] = (float)(start + (double)i * step);
    } else {
        int32_t *p = mb_tensor_i32(t);
        for (int64_t i = 0; i < n; i++) p[i] = (int32_t)(start + (double)i * step);
    }
    return t;
}

mb_tensor *mb_tensor_from_data(mb_dtype dtype, int ndim, const int64_t *shape, const void *data, mb_error *err) {
    mb_tensor *t = mb_tensor_empty(dtype, ndim, shape, err);
    if (!t) return NULL;
    if (t->storage->nbytes > 0) {
        if (!data) {
            mb_tensor_free(t);
            mb_fail(err, MB_ERR_ARG, "data is NULL");
            return NULL;
        }
        memcpy(t->storage->data, data, t->storage->nbytes);
    }
    return t;
}

mb_tensor *mb_tensor_wrap(mb_dtype dtype, int ndim, const int64_t *shape, void *data,
                          void (*release)(void *, size_t, void *), void *ctx, mb_error *err) {
    int64_t n;
    if (!dtype_valid(dtype)) {
        mb_fail(err, MB_ERR_DTYPE, "unknown dtype %d", (int)dtype);
        return NULL;
    }
    if (check_shape(ndim, shape, &n, err)) return NULL;
    if (!data && n > 0) {
        mb_fail(err, MB_ERR_ARG, "data is NULL");
        return NULL;
    }
    mb_storage *s = malloc(sizeof *s);
    if (!s) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory allocating a tensor storage");
        return NULL;
    }
    s->data = data;
    s->nbytes = (size_t)n * mb_dtype_size(dtype);
    s->refcount = 1;
    s->device = MB_CPU;
    s->release = release ? release : release_nothing;
    s->release_ctx = ctx;
    count_storage(s, 1);
    int64_t stride[MB_MAX_DIMS];
    contiguous_strides(ndim, shape, stride);
    mb_tensor *t = tensor_header(s, dtype, 0, ndim, shape, stride, err);
    if (!t) s->release = release_nothing; /* the caller still owns data on failure */
    storage_release(s);
    return t;
}

mb_tensor *mb_tensor_rand_uniform(int ndim, const int64_t *shape, mb_rng *rng, float lo, float hi, mb_error *err) {
    if (!rng) {
        mb_fail(err, MB_ERR_ARG, "rng is NULL");
        return NULL;
    }
    if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi)) {
        mb_fail(err, MB_ERR_ARG, "uniform range [%g, %g) is not a finite interval with low <= high", lo, hi);
        return NULL;
    }
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, ndim, shape, err);
    if (!t) return NULL;
    float *p = mb_tensor_f32(t);
    int64_t n = mb_tensor_numel(t);
    /* Sequential on purpose: the stream must not depend on the thread count. */
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * mb_rng_uniform_f32(rng);
    return t;
}

mb_tensor *mb_tensor_randn(int ndim, const int64_t *shape, mb_rng *rng, float mean, float std, mb_error *err) {
    if (!rng) {
        mb_fail(err, MB_ERR_ARG, "rng is NULL");
        return NULL;
    }
    if (!isfinite(mean) || !isfinite(std) || std < 0) {
        mb_fail(err, MB_ERR_ARG, "normal needs a finite mean and std >= 0 (got %g, %g)", mean, std);
        return NULL;
    }
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, ndim, shape, err);
    if (!t) return NULL;
    float *p = mb_tensor_f32(t);
    int64_t n = mb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(mean + std * mb_rng_normal(rng));
    return t;
}

void mb_tensor_free(mb_tensor *t) {
    if (!t) return;
    storage_release(t->storage);
    free(t);
}

/* ---- inspection ------------------------------------------------------------ */

int64_t mb_tensor_numel(const mb_tensor *t) {
    if (!t) return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int mb_tensor_is_contiguous(const mb_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 0) return 1;
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

float *mb_tensor_f32(const mb_tensor *t) {
    return t ? (float *)t->storage->data + t->offset : NULL;
}

int32_t *mb_tensor_i32(const mb_tensor *t) {
    return t ? (int32_t *)t->storage->data + t->offset : NULL;
}

int mb_shape_equal(const mb_tensor *a, const mb_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static mb_status element_offset(const mb_tensor *t, const int64_t *idx, int64_t *off, mb_error *err) {
    int64_t o = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (idx[i] < 0 || idx[i] >= t->shape[i])
            return mb_fail(err, MB_ERR_RANGE, "index %lld is out of range for dimension %d of size %lld",
                           (long long)idx[i], i, (long long)t->shape[i]);
        o += idx[i] * t->stride[i];
    }
    *off = o;
    return MB_OK;
}

mb_status mb_tensor_get(const mb_tensor *t, const int64_t *idx, double *out, mb_error *err) {
    int64_t o;
    if (!t) return mb_fail(err, MB_ERR_ARG, "tensor is NULL");
    if (t->ndim > 0 && !idx) return mb_fail(err, MB_ERR_ARG, "index is NULL");
    if (element_offset(t, idx, &o, err)) return err ? err->code : MB_ERR_RANGE;
    *out = t->dtype == MB_FLOAT32 ? (double)((float *)t->storage->data)[o] : (double)((int32_t *)t->storage->data)[o];
    return MB_OK;
}

mb_status mb_tensor_set(mb_tensor *t, const int64_t *idx, double value, mb_error *err) {
    int64_t o;
    if (!t) return mb_fail(err, MB_ERR_ARG, "tensor is NULL");
    if (t->ndim > 0 && !idx) return mb_fail(err, MB_ERR_ARG, "index is NULL");
    if (element_offset(t, idx, &o, err)) return err ? err->code : MB_ERR_RANGE;
    if (t->dtype == MB_FLOAT32) ((float *)t->storage->data)[o] = (float)value;
    else {
        mb_status st = check_int_value(value, err);
        if (st) return st;
        ((int32_t *)t->storage->data)[o] = (int32_t)value;
    }
    return MB_OK;
}

size_t mb_tensor_nbytes(const mb_tensor *t) { return t ? t->storage->nbytes : 0; }

/* ---- views ------------------------------------------------------------- */

mb_tensor *mb_tensor_view(const mb_tensor *t, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    return tensor_header(t->storage, t->dtype, t->offset, t->ndim, t->shape, t->stride, err);
}

mb_tensor *mb_tensor_reshape(const mb_tensor *t, int ndim, const int64_t *shape, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if (ndim < 0 || ndim > MB_MAX_DIMS) {
        mb_fail(err, MB_ERR_SHAPE, "a tensor has 0 to %d dimensions, got %d", MB_MAX_DIMS, ndim);
        return NULL;
    }
    int64_t want[MB_MAX_DIMS], known = 1, n = mb_tensor_numel(t);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        want[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) {
                mb_fail(err, MB_ERR_SHAPE, "only one dimension of a reshape can be -1");
                return NULL;
            }
            infer = i;
        } else if (shape[i] < 0) {
            mb_fail(err, MB_ERR_SHAPE, "size %lld of dimension %d is negative", (long long)shape[i], i);
            return NULL;
        } else {
            known *= shape[i];
        }
    }
    char b1[SHAPE_BUF], b2[SHAPE_BUF];
    if (infer >= 0) {
        if (known == 0 || n % known != 0) {
            mb_fail(err, MB_ERR_SHAPE, "shape %s does not match %s (%lld elements)",
                    mb_shape_str(ndim, shape, b1, sizeof b1), tshape(t, b2), (long long)n);
            return NULL;
        }
        want[infer] = n / known;
        known = n;
    }
    if (known != n) {
        mb_fail(err, MB_ERR_SHAPE, "shape %s does not match %s (%lld elements)",
                mb_shape_str(ndim, shape, b1, sizeof b1), tshape(t, b2), (long long)n);
        return NULL;
    }
    mb_tensor *src = mb_tensor_contiguous(t, err);
    if (!src) return NULL;
    int64_t stride[MB_MAX_DIMS];
    contiguous_strides(ndim, want, stride);
    mb_tensor *r = tensor_header(src->storage, src->dtype, src->offset, ndim, want, stride, err);
    mb_tensor_free(src);
    return r;
}

mb_tensor *mb_tensor_narrow(const mb_tensor *t, int dim, int64_t start, int64_t length, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if (norm_dim(t, &dim, err)) return NULL;
    if (start < 0 || length < 0 || start > t->shape[dim] - length) {
        mb_fail(err, MB_ERR_RANGE, "narrow range [%lld, %lld) is out of range for dimension %d of size %lld",
                (long long)start, (long long)start + (long long)length, dim, (long long)t->shape[dim]);
        return NULL;
    }
    mb_tensor *r = mb_tensor_view(t, err);
    if (!r) return NULL;
    r->offset += start * t->stride[dim];
    r->shape[dim] = length;
    return r;
}

mb_tensor *mb_tensor_select(const mb_tensor *t, int dim, int64_t index, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if (norm_dim(t, &dim, err)) return NULL;
    if (index < 0 || index >= t->shape[dim]) {
        mb_fail(err, MB_ERR_RANGE, "index %lld is out of range for dimension %d of size %lld", (long long)index,
                dim, (long long)t->shape[dim]);
        return NULL;
    }
    mb_tensor *r = mb_tensor_view(t, err);
    if (!r) return NULL;
    r->offset += index * t->stride[dim];
    for (int i = dim; i < t->ndim - 1; i++) {
        r->shape[i] = t->shape[i + 1];
        r->stride[i] = t->stride[i + 1];
    }
    r->ndim--;
    r->shape[r->ndim] = 0;
    r->stride[r->ndim] = 0;
    return r;
}

mb_tensor *mb_tensor_transpose(const mb_tensor *t, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if (t->ndim < 2) {
        mb_fail(err, MB_ERR_SHAPE, "transpose needs at least 2 dimensions, got %d", t->ndim);
        return NULL;
    }
    mb_tensor *r = mb_tensor_view(t, err);
    if (!r) return NULL;
    int a = t->ndim - 2, b = t->ndim - 1;
    r->shape[a] = t->shape[b];
    r->shape[b] = t->shape[a];
    r->stride[a] = t->stride[b];
    r->stride[b] = t->stride[a];
    return r;
}

mb_tensor *mb_tensor_contiguous(const mb_tensor *t, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    if (mb_tensor_is_contiguous(t)) return mb_tensor_view(t, err);
    return mb_tensor_clone(t, err);
}

mb_tensor *mb_tensor_to_dtype(const mb_tensor *t, mb_dtype dtype, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    mb_tensor *r = mb_tensor_empty(dtype, t->ndim, t->shape, err);
    if (r && mb_tensor_copy_(r, t, err)) {
        mb_tensor_free(r);
        return NULL;
    }
    return r;
}

mb_tensor *mb_tensor_clone(const mb_tensor *t, mb_error *err) {
    if (!t) {
        mb_fail(err, MB_ERR_ARG, "tensor is NULL");
        return NULL;
    }
    return mb_tensor_to_dtype(t, t->dtype, err);
}

mb_status mb_tensor_copy_(mb_tensor *dst, const mb_tensor *src, mb_error *err) {
    if (!dst || !src) return mb_fail(err, MB_ERR_ARG, "tensor is NULL");
    if (!mb_shape_equal(dst, src)) {
        char b1[SHAPE_BUF], b2[SHAPE_BUF];
        return mb_fail(err, MB_ERR_SHAPE, "shape %s does not match %s", tshape(src, b1), tshape(dst, b2));
    }
    int64_t shape[4], st[2][4];
    pad4(dst, shape, st[0]);
    pad4(src, shape, st[1]);
    loop_plan p;
    plan_loop(&p, shape, 2, st);
    const int64_t *sd = st[0], *ss = st[1];
    void *dbase = dst->storage->data, *sbase = src->storage->data;
    int64_t doff = dst->offset, soff = src->offset, d3 = sd[3], s3 = ss[3];
    mb_dtype dt = dst->dtype, sdt = src->dtype;
#pragma omp parallel for num_threads(mb_threads()) if (p.parallel)
    for (int64_t k = 0; k < p.pieces; k++) {
        int64_t j0, j1, r = piece(&p, k, &j0, &j1);
        int64_t od = doff + row_offset(r, p.shape, sd), os = soff + row_offset(r, p.shape, ss);
        if (dt == sdt && d3 == 1 && s3 == 1) {
            memmove((char *)dbase + 4 * (od + j0), (const char *)sbase + 4 * (os + j0), (size_t)(j1 - j0) * 4);
        } else if (dt == MB_FLOAT32 && sdt == MB_FLOAT32) {
            float *d = (float *)dbase + od;
            const float *s = (const float *)sbase + os;
            for (int64_t j = j0; j < j1; j++) d[j * d3] = s[j * s3];
        } else if (dt == MB_INT32 && sdt == MB_INT32) {
            int32_t *d = (int32_t *)dbase + od;
            const int32_t *s = (const int32_t *)sbase + os;
            for (int64_t j = j0; j < j1; j++) d[j * d3] = s[j * s3];
        } else if (dt == MB_FLOAT32) {
            float *d = (float *)dbase + od;
            const int32_t *s = (const int32_t *)sbase + os;
            for (int64_t j = j0; j < j1; j++) d[j * d3] = (float)s[j * s3];
        } else {
            int32_t *d = (int32_t *)dbase + od;
            const float *s = (const float *)sbase + os;
            for (int64_t j = j0; j < j1; j++) d[j * d3] = f2i_sat(s[j * s3]);
        }
    }
    return MB_OK;
}

mb_status mb_tensor_fill_(mb_tensor *t, double value, mb_error *err) {
    if (!t) return mb_fail(err, MB_ERR_ARG, "tensor is NULL");
    if (t->dtype == MB_INT32) {
        mb_status st = check_int_value(value, err);
        if (st) return st;
    }
    int64_t shape[4], st[1][4];
    pad4(t, shape, st[0]);
    loop_plan p;
    plan_loop(&p, shape, 1, st);
    const int64_t *s = st[0];
    void *base = t->storage->data;
    int64_t off = t->offset, s3 = s[3];
    float fv = (float)value;
    int32_t iv = t->dtype == MB_INT32 ? (int32_t)value : 0;
    mb_dtype dt = t->dtype;
#pragma omp parallel for num_threads(mb_threads()) if (p.parallel)
    for (int64_t k = 0; k < p.pieces; k++) {
        int64_t j0, j1, r = piece(&p, k, &j0, &j1);
        int64_t o = off + row_offset(r, p.shape, s);
        if (dt == MB_FLOAT32)
            for (int64_t j = j0; j < j1; j++) ((float *)base)[o + j * s3] = fv;
        else
            for (int64_t j = j0; j < j1; j++) ((int32_t *)base)[o + j * s3] = iv;
    }
    return MB_OK;
}
