/* test_tensor.c: properties of runtime/tensor.c checked against independent
 * references: naive loops in double precision (matmul, broadcasting,
 * reductions), libm (unary functions), finite differences (GELU gradient),
 * invariants (softmax rows sum to 1, views see each other's writes, storage
 * refcounts) and every error path (returns an error, never crashes).
 */
#include <stdint.h>

/* CHECK(cond) without a message expands to an empty format string. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

#include "../../runtime/parallel.h"
#include "../../runtime/tensor.h"
#include "harness.h"

static mb_rng g_rng;

static mb_tensor *randn(int ndim, const int64_t *shape) {
    mb_error err;
    mb_tensor *t = mb_tensor_randn(ndim, shape, &g_rng, 0, 1, &err);
    if (!t) fprintf(stderr, "randn: %s\n", err.msg);
    return t;
}

/* Element at a 0-based multi-index as double (through the public accessor). */
static double at(const mb_tensor *t, const int64_t *idx) {
    double v = NAN;
    mb_error err;
    if (mb_tensor_get(t, idx, &v, &err) != MB_OK) fprintf(stderr, "get: %s\n", err.msg);
    return v;
}

/* Max |a - b| over all elements of two tensors of the same shape. */
static double max_diff(const mb_tensor *a, const mb_tensor *b) {
    if (!mb_shape_equal(a, b)) return INFINITY;
    int64_t idx[4] = {0, 0, 0, 0}, n = mb_tensor_numel(a);
    double worst = 0;
    for (int64_t e = 0; e < n; e++) {
        int64_t r = e;
        for (int d = a->ndim - 1; d >= 0; d--) {
            idx[d] = r % a->shape[d];
            r /= a->shape[d];
        }
        double d = fabs(at(a, idx) - at(b, idx));
        if (d != d) return INFINITY;
        if (d > worst) worst = d;
    }
    return worst;
}

/* ---- creation --------------------------------------------------------------------- */

TEST(creation_values_and_shapes) {
    mb_error err;
    int64_t s23[] = {2, 3};
    mb_tensor *z = mb_tensor_zeros(MB_FLOAT32, 2, s23, &err);
    mb_tensor *f = mb_tensor_full(MB_INT32, 2, s23, 7, &err);
    CHECK(z && f, "%s", err.msg);
    if (!z || !f) return;
    CHECK(mb_tensor_numel(z) == 6 && z->stride[0] == 3 && z->stride[1] == 1);
    for (int i = 0; i < 6; i++) {
        CHECK(mb_tensor_f32(z)[i] == 0.0f);
        CHECK(mb_tensor_i32(f)[i] == 7);
    }
    mb_tensor *r = mb_tensor_arange(MB_FLOAT32, 1, 2, 0.25, &err);
    CHECK(r && r->ndim == 1 && r->shape[0] == 4, "arange [1,2) by 0.25 has 4 elements");
    if (r) CHECK_NEAR(mb_tensor_f32(r)[3], 1.75, 0);
    mb_tensor *down = mb_tensor_arange(MB_INT32, 5, 0, -2, &err);
    CHECK(down && down->shape[0] == 3 && mb_tensor_i32(down)[2] == 1, "5,3,1");
    mb_tensor *none = mb_tensor_arange(MB_INT32, 5, 0, 1, &err);
    CHECK(none && none->shape[0] == 0, "empty range");
    float data[] = {1, 2, 3, 4, 5, 6};
    mb_tensor *d = mb_tensor_from_data(MB_FLOAT32, 2, s23, data, &err);
    CHECK(d && mb_tensor_f32(d)[5] == 6.0f && mb_tensor_f32(d) != data, "copies");
    mb_tensor *scalar = mb_tensor_full(MB_FLOAT32, 0, NULL, 2.5, &err);
    CHECK(scalar && scalar->ndim == 0 && mb_tensor_numel(scalar) == 1 && mb_tensor_f32(scalar)[0] == 2.5f);
    int64_t s0[] = {0, 3};
    mb_tensor *empty = mb_tensor_zeros(MB_FLOAT32, 2, s0, &err);
    CHECK(empty && mb_tensor_numel(empty) == 0);
    char buf[64];
    CHECK(strcmp(mb_shape_str(2, s23, buf, sizeof buf), "[2,3]") == 0, "%s", buf);
    CHECK(strcmp(mb_shape_str(0, NULL, buf, sizeof buf), "[]") == 0, "%s", buf);
    CHECK(strcmp(mb_dtype_name(MB_INT32), "int32") == 0 && mb_dtype_size(MB_FLOAT32) == 4);
    mb_tensor_free(z);
    mb_tensor_free(f);
    mb_tensor_free(r);
    mb_tensor_free(down);
    mb_tensor_free(none);
    mb_tensor_free(d);
    mb_tensor_free(scalar);
    mb_tensor_free(empty);
    mb_tensor_free(NULL); /* allowed */
}

static int g_released;
static void count_release(void *data, size_t nbytes, void *ctx) {
    g_released++;
    CHECK(nbytes == 6 * sizeof(float) && ctx == (void *)&g_released && data != NULL);
}

TEST(wrap_releases_once_after_last_view) {
    mb_error err;
    float buf[6] = {0, 1, 2, 3, 4, 5};
    int64_t s[] = {2, 3};
    g_released = 0;
    mb_tensor *w = mb_tensor_wrap(MB_FLOAT32, 2, s, buf, count_release, &g_released, &err);
    CHECK(w && mb_tensor_f32(w) == buf, "wraps without copying");
    if (!w) return;
    mb_tensor *v = mb_tensor_transpose(w, &err);
    mb_tensor *row = mb_tensor_select(w, 0, 1, &err);
    CHECK(w->storage->refcount == 3, "refcount %d", w->storage->refcount);
    mb_tensor_free(w);
    CHECK(g_released == 0 && v->storage->refcount == 2);
    mb_tensor_free(v);
    CHECK(g_released == 0 && mb_tensor_f32(row)[0] == 3.0f);
    mb_tensor_free(row);
    CHECK(g_released == 1, "released %d times", g_released);
    /* NULL release: memory that outlives the views is left alone. */
    mb_tensor *n = mb_tensor_wrap(MB_FLOAT32, 2, s, buf, NULL, NULL, &err);
    CHECK(n != NULL);
    mb_tensor_free(n);
    CHECK(buf[5] == 5.0f);
}

TEST(creation_errors) {
    mb_error err;
    int64_t s5[] = {1, 1, 1, 1, 1}, neg[] = {2, -1}, huge[] = {1 << 30, 1 << 30, 1 << 30};
    mb_error_clear(&err);
    CHECK(!mb_tensor_zeros(MB_FLOAT32, 5, s5, &err) && err.code == MB_ERR_SHAPE, "%s", err.msg);
    CHECK(!mb_tensor_zeros(MB_FLOAT32, 2, neg, &err) && strstr(err.msg, "negative"), "%s", err.msg);
    CHECK(!mb_tensor_zeros(MB_FLOAT32, 3, huge, &err) && strstr(err.msg, "too large"), "%s", err.msg);
    CHECK(!mb_tensor_zeros((mb_dtype)7, 1, neg, &err) && err.code == MB_ERR_DTYPE, "%s", err.msg);
    CHECK(!mb_tensor_full(MB_INT32, 1, s5, 1.5, &err) && err.code == MB_ERR_DTYPE, "%s", err.msg);
    CHECK(!mb_tensor_arange(MB_FLOAT32, 0, 1, 0, &err) && strstr(err.msg, "zero"), "%s", err.msg);
    CHECK(!mb_tensor_arange(MB_FLOAT32, 0, INFINITY, 1, &err), "%s", err.msg);
    CHECK(!mb_tensor_arange(MB_INT32, 0, 1, 0.5, &err) && err.code == MB_ERR_DTYPE, "%s", err.msg);
    CHECK(!mb_tensor_from_data(MB_FLOAT32, 2, s5, NULL, &err) && strstr(err.msg, "NULL"), "%s", err.msg);
    CHECK(!mb_tensor_wrap(MB_FLOAT32, 2, s5, NULL, NULL, NULL, &err));
    CHECK(!mb_tensor_randn(1, s5, NULL, 0, 1, &err) && strstr(err.msg, "rng"), "%s", err.msg);
    CHECK(!mb_tensor_randn(1, s5, &g_rng, 0, -1, &err));
    CHECK(!mb_tensor_rand_uniform(1, s5, &g_rng, 2, 1, &err));
    CHECK(!mb_tensor_zeros(MB_FLOAT32, -1, s5, &err));
    /* NULL tensors everywhere: an error, not a crash. */
    double v;
    int64_t idx[1] = {0};
    CHECK(mb_tensor_get(NULL, idx, &v, &err) == MB_ERR_ARG);
    CHECK(mb_tensor_set(NULL, idx, 1, &err) == MB_ERR_ARG);
    CHECK(!mb_tensor_reshape(NULL, 1, s5, &err) && !mb_tensor_narrow(NULL, 0, 0, 1, &err));
    CHECK(!mb_tensor_select(NULL, 0, 0, &err) && !mb_tensor_transpose(NULL, &err));
    CHECK(!mb_tensor_view(NULL, &err) && !mb_tensor_contiguous(NULL, &err) && !mb_tensor_clone(NULL, &err));
    CHECK(!mb_tensor_to_dtype(NULL, MB_INT32, &err) && mb_tensor_copy_(NULL, NULL, &err) == MB_ERR_ARG);
    CHECK(mb_tensor_fill_(NULL, 0, &err) == MB_ERR_ARG);
    CHECK(!mb_tensor_binary(MB_ADD, NULL, NULL, &err) && !mb_tensor_binary_scalar(MB_ADD, NULL, 1, 0, &err));
    CHECK(!mb_tensor_unary(MB_EXP, NULL, &err) && !mb_tensor_matmul(NULL, NULL, 0, 0, &err));
    CHECK(!mb_tensor_reduce(MB_SUM, NULL, 0, &err) && !mb_tensor_softmax(NULL, 0, 0, &err));
    CHECK(mb_tensor_numel(NULL) == 0 && mb_tensor_nbytes(NULL) == 0);
    /* Errors with a NULL err pointer are allowed too. */
    CHECK(!mb_tensor_zeros(MB_FLOAT32, 5, s5, NULL));
}

/* ---- accessors and views ---------------------------------------------------------- */

TEST(get_set_bounds) {
    mb_error err;
    int64_t s[] = {2, 3};
    mb_tensor *t = mb_tensor_zeros(MB_INT32, 2, s, &err);
    int64_t ok[] = {1, 2}, bad[] = {1, 3}, negi[] = {-1, 0};
    double v = 0;
    CHECK(mb_tensor_set(t, ok, 9, &err) == MB_OK);
    CHECK(mb_tensor_get(t, ok, &v, &err) == MB_OK && v == 9);
    CHECK(mb_tensor_i32(t)[5] == 9);
    CHECK(mb_tensor_get(t, bad, &v, &err) == MB_ERR_RANGE && strstr(err.msg, "index 3 is out of range for dimension 1 of size 3"),
          "%s", err.msg);
    CHECK(mb_tensor_set(t, negi, 1, &err) == MB_ERR_RANGE);
    CHECK(mb_tensor_set(t, ok, 0.5, &err) == MB_ERR_DTYPE, "int32 cannot hold 0.5");
    CHECK(mb_tensor_set(t, ok, 3e9, &err) == MB_ERR_DTYPE, "int32 cannot hold 3e9");
    mb_tensor_free(t);
}

TEST(views_share_storage) {
    mb_error err;
    int64_t s[] = {3, 4};
    mb_tensor *t = mb_tensor_arange(MB_FLOAT32, 0, 12, 1, &err);
    mb_tensor *m = mb_tensor_reshape(t, 2, s, &err);
    CHECK(m && m->storage == t->storage && t->storage->refcount == 2, "reshape of contiguous is a view");
    mb_tensor *row = mb_tensor_select(m, 0, 1, &err);         /* [4, 5, 6, 7] */
    mb_tensor *col = mb_tensor_select(m, 1, 2, &err);         /* [2, 6, 10] */
    mb_tensor *nar = mb_tensor_narrow(m, 1, 1, 2, &err);      /* [[1,2],[5,6],[9,10]] */
    mb_tensor *tr = mb_tensor_transpose(m, &err);             /* [4,3] */
    CHECK(row && col && nar && tr);
    if (!row || !col || !nar || !tr) return;
    CHECK(t->storage->refcount == 6, "refcount %d", t->storage->refcount);
    CHECK(row->ndim == 1 && row->shape[0] == 4 && col->stride[0] == 4 && nar->shape[1] == 2);
    CHECK(tr->shape[0] == 4 && tr->shape[1] == 3 && tr->stride[0] == 1 && tr->stride[1] == 4);
    CHECK(!mb_tensor_is_contiguous(tr) && !mb_tensor_is_contiguous(nar) && mb_tensor_is_contiguous(row));
    int64_t i12[] = {1, 2}, i21[] = {2, 1}, i1[] = {1}, i2[] = {2};
    CHECK(at(col, i1) == 6 && at(nar, i21) == 10 && at(tr, i21) == 6);
    /* A write through one view is seen through every other. */
    CHECK(mb_tensor_set(row, i2, 100, &err) == MB_OK);
    CHECK(at(m, i12) == 100 && at(col, i1) == 100 && at(tr, i21) == 100 && mb_tensor_f32(t)[6] == 100);
    /* Reshape of a non-contiguous view copies; contiguous of a contiguous view does not. */
    int64_t flat[] = {-1};
    mb_tensor *trf = mb_tensor_reshape(tr, 1, flat, &err);
    CHECK(trf && trf->storage != t->storage && trf->shape[0] == 12 && mb_tensor_f32(trf)[1] == 4);
    mb_tensor *c1 = mb_tensor_contiguous(row, &err), *c2 = mb_tensor_contiguous(tr, &err);
    CHECK(c1->storage == t->storage && c2->storage != t->storage && mb_tensor_is_contiguous(c2));
    mb_tensor *cl = mb_tensor_clone(m, &err);
    CHECK(cl->storage != t->storage && max_diff(cl, m) == 0);
    CHECK(t->storage->refcount == 7, "refcount %d", t->storage->refcount);
    mb_tensor *views[] = {m, row, col, nar, tr, trf, c1, c2, cl};
    for (size_t i = 0; i < sizeof views / sizeof *views; i++) mb_tensor_free(views[i]);
    CHECK(t->storage->refcount == 1, "refcount %d after freeing views", t->storage->refcount);
    mb_tensor_free(t);
}

TEST(view_errors) {
    mb_error err;
    int64_t s[] = {2, 3}, bad[] = {4, 2}, two[] = {-1, -1}, inf[] = {-1, 4};
    mb_tensor *t = mb_tensor_zeros(MB_FLOAT32, 2, s, &err);
    CHECK(!mb_tensor_reshape(t, 2, bad, &err) && strstr(err.msg, "shape [4,2] does not match [2,3]"), "%s", err.msg);
    CHECK(!mb_tensor_reshape(t, 2, two, &err) && strstr(err.msg, "only one"), "%s", err.msg);
    CHECK(!mb_tensor_reshape(t, 2, inf, &err), "6 is not a multiple of 4");
    CHECK(!mb_tensor_narrow(t, 1, 2, 2, &err) && err.code == MB_ERR_RANGE, "%s", err.msg);
    CHECK(!mb_tensor_narrow(t, 2, 0, 1, &err) && strstr(err.msg, "dimension 2 is out of range"), "%s", err.msg);
    CHECK(!mb_tensor_select(t, 0, 2, &err) && err.code == MB_ERR_RANGE, "%s", err.msg);
    CHECK(!mb_tensor_select(t, 0, -1, &err));
    mb_tensor *v = mb_tensor_select(t, 0, 0, &err);
    CHECK(!mb_tensor_transpose(v, &err) && strstr(err.msg, "at least 2"), "%s", err.msg);
    int64_t s32[] = {3, 2};
    mb_tensor *o = mb_tensor_zeros(MB_FLOAT32, 2, s32, &err);
    CHECK(mb_tensor_copy_(t, o, &err) == MB_ERR_SHAPE && strstr(err.msg, "shape [3,2] does not match [2,3]"), "%s", err.msg);
    CHECK(mb_tensor_fill_(t, 1, &err) == MB_OK && mb_tensor_f32(t)[5] == 1.0f);
    mb_tensor *it = mb_tensor_zeros(MB_INT32, 2, s, &err);
    CHECK(mb_tensor_fill_(it, 0.5, &err) == MB_ERR_DTYPE);
    mb_tensor_free(t);
    mb_tensor_free(v);
    mb_tensor_free(o);
    mb_tensor_free(it);
}

TEST(dtype_conversion) {
    mb_error err;
    float data[] = {1.9f, -1.9f, NAN, 3e9f, -3e9f, 0.0f};
    int64_t n[] = {6};
    mb_tensor *f = mb_tensor_from_data(MB_FLOAT32, 1, n, data, &err);
    mb_tensor *i = mb_tensor_to_dtype(f, MB_INT32, &err);
    int32_t want[] = {1, -1, 0, INT32_MAX, INT32_MIN, 0};
    for (int k = 0; k < 6; k++) CHECK(mb_tensor_i32(i)[k] == want[k], "[%d] %d", k, mb_tensor_i32(i)[k]);
    mb_tensor *back = mb_tensor_to_dtype(i, MB_FLOAT32, &err);
    CHECK(back->dtype == MB_FLOAT32 && mb_tensor_f32(back)[0] == 1.0f);
    mb_tensor_free(f);
    mb_tensor_free(i);
    mb_tensor_free(back);
}

/* ---- element-wise ------------------------------------------------------------------ */

/* Reference broadcast: out[idx] = a[idx mapped] op b[idx mapped], in double. */
static double ref_binop(mb_binop op, double x, double y) {
    switch (op) {
    case MB_ADD: return x + y;
    case MB_SUB: return x - y;
    case MB_MUL: return x * y;
    case MB_DIV: return x / y;
    case MB_POW: return pow(x, y);
    case MB_MAXIMUM: return x > y ? x : y;
    case MB_MINIMUM: return x < y ? x : y;
    }
    return 0;
}

static double broadcast_check(mb_binop op, const mb_tensor *a, const mb_tensor *b, const mb_tensor *out) {
    int64_t n = mb_tensor_numel(out), idx[4], ia[4], ib[4];
    double worst = 0;
    for (int64_t e = 0; e < n; e++) {
        int64_t r = e;
        for (int d = out->ndim - 1; d >= 0; d--) {
            idx[d] = r % out->shape[d];
            r /= out->shape[d];
        }
        for (int d = 0; d < a->ndim; d++) ia[d] = a->shape[d] == 1 ? 0 : idx[d + out->ndim - a->ndim];
        for (int d = 0; d < b->ndim; d++) ib[d] = b->shape[d] == 1 ? 0 : idx[d + out->ndim - b->ndim];
        double want = ref_binop(op, at(a, ia), at(b, ib)), got = at(out, idx);
        double diff = fabs(want - got) / (1 + fabs(want));
        if (diff != diff) diff = INFINITY;
        if (diff > worst) worst = diff;
    }
    return worst;
}

TEST(broadcasting_matches_reference) {
    mb_error err;
    struct { int na; int64_t a[4]; int nb; int64_t b[4]; int nout; int64_t out[4]; } cases[] = {
        {2, {2, 3}, 2, {2, 3}, 2, {2, 3}},
        {2, {2, 3}, 1, {3}, 2, {2, 3}},
        {2, {2, 1}, 2, {1, 3}, 2, {2, 3}},
        {3, {4, 1, 3}, 2, {2, 1}, 3, {4, 2, 3}},
        {1, {5}, 4, {2, 3, 1, 1}, 4, {2, 3, 1, 5}},
        {0, {0}, 2, {3, 2}, 2, {3, 2}},
        {2, {300, 200}, 1, {200}, 2, {300, 200}}, /* above MB_PAR_MIN: the threaded path */
        {1, {100000}, 0, {0}, 1, {100000}},       /* one long run split across threads */
        {2, {3, 40000}, 2, {3, 40000}, 2, {3, 40000}},
        {2, {50000, 1}, 1, {1}, 2, {50000, 1}},
        {4, {2, 1, 3, 4}, 4, {1, 5, 3, 1}, 4, {2, 5, 3, 4}},
    };
    mb_binop ops[] = {MB_ADD, MB_SUB, MB_MUL, MB_DIV, MB_MAXIMUM, MB_MINIMUM};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        mb_tensor *a = randn(cases[c].na, cases[c].a), *b = randn(cases[c].nb, cases[c].b);
        for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
            mb_tensor *out = mb_tensor_binary(ops[o], a, b, &err);
            CHECK(out, "case %zu op %zu: %s", c, o, out ? "" : err.msg);
            if (!out) continue;
            CHECK(out->ndim == cases[c].nout && memcmp(out->shape, cases[c].out, sizeof(int64_t) * out->ndim) == 0,
                  "case %zu shape", c);
            double d = broadcast_check(ops[o], a, b, out);
            CHECK(d < 1e-6, "case %zu op %zu: rel diff %g", c, o, d);
            mb_tensor_free(out);
        }
        /* Also on narrowed views (dims that must not be merged) and a transposed operand. */
        if (a->ndim >= 1 && a->shape[a->ndim - 1] > 2) {
            int last = a->ndim - 1;
            mb_tensor *na = mb_tensor_narrow(a, last, 1, a->shape[last] - 2, &err);
            mb_tensor *nb = mb_tensor_clone(na, &err);
            mb_tensor *sum = mb_tensor_binary(MB_ADD, na, na, &err), *twice = mb_tensor_binary_scalar(MB_MUL, nb, 2, 0, &err);
            CHECK(sum && twice && max_diff(sum, twice) < 1e-6, "case %zu: narrowed operand", c);
            mb_tensor *ex = mb_tensor_unary(MB_EXP, na, &err), *ex2 = mb_tensor_unary(MB_EXP, nb, &err);
            CHECK(ex && ex2 && max_diff(ex, ex2) == 0, "case %zu: unary on a narrowed view", c);
            mb_tensor *all[] = {na, nb, sum, twice, ex, ex2};
            for (size_t i = 0; i < 6; i++) mb_tensor_free(all[i]);
        }
        if (a->ndim == 2) {
            mb_tensor *at_ = mb_tensor_transpose(a, &err);
            mb_tensor *ones = mb_tensor_full(MB_FLOAT32, 1, &at_->shape[1], 1, &err);
            mb_tensor *out = mb_tensor_binary(MB_MUL, at_, ones, &err);
            CHECK(out && max_diff(out, at_) == 0, "strided operand");
            mb_tensor_free(out);
            mb_tensor_free(ones);
            mb_tensor_free(at_);
        }
        mb_tensor_free(a);
        mb_tensor_free(b);
    }
    int64_t s23[] = {2, 3}, s4[] = {4};
    mb_tensor *a = mb_tensor_zeros(MB_FLOAT32, 2, s23, &err), *b = mb_tensor_zeros(MB_FLOAT32, 1, s4, &err);
    CHECK(!mb_tensor_binary(MB_ADD, a, b, &err) && err.code == MB_ERR_SHAPE &&
              strstr(err.msg, "shape [4] does not match [2,3]"), "%s", err.msg);
    CHECK(!mb_tensor_binary((mb_binop)99, a, a, &err));
    mb_tensor_free(a);
    mb_tensor_free(b);
}

TEST(scalar_and_int_arithmetic) {
    mb_error err;
    int32_t xs[] = {7, -7, 2, 0}, ys[] = {2, 2, 3, 5};
    int64_t n[] = {4};
    mb_tensor *x = mb_tensor_from_data(MB_INT32, 1, n, xs, &err), *y = mb_tensor_from_data(MB_INT32, 1, n, ys, &err);
    mb_tensor *q = mb_tensor_binary(MB_DIV, x, y, &err);
    CHECK(q->dtype == MB_INT32 && mb_tensor_i32(q)[0] == 3 && mb_tensor_i32(q)[1] == -3, "truncates toward zero");
    mb_tensor *p = mb_tensor_binary(MB_POW, y, y, &err);
    CHECK(p->dtype == MB_INT32 && mb_tensor_i32(p)[2] == 27 && mb_tensor_i32(p)[3] == 3125);
    CHECK(!mb_tensor_binary(MB_DIV, y, x, &err) && strstr(err.msg, "division by zero"), "%s", err.msg);
    mb_tensor *neg = mb_tensor_binary_scalar(MB_SUB, x, 0, 1, &err);
    CHECK(!mb_tensor_binary(MB_POW, y, neg, &err) && strstr(err.msg, "negative"), "%s", err.msg);
    mb_tensor *s1 = mb_tensor_binary_scalar(MB_SUB, x, 10, 1, &err); /* 10 - x */
    CHECK(s1->dtype == MB_INT32 && mb_tensor_i32(s1)[0] == 3 && mb_tensor_i32(s1)[1] == 17);
    mb_tensor *s2 = mb_tensor_binary_scalar(MB_DIV, x, 2, 0, &err);
    CHECK(s2->dtype == MB_INT32 && mb_tensor_i32(s2)[0] == 3);
    mb_tensor *s3 = mb_tensor_binary_scalar(MB_MUL, x, 0.5, 0, &err); /* non-integral: float */
    CHECK(s3->dtype == MB_FLOAT32 && mb_tensor_f32(s3)[0] == 3.5f);
    mb_tensor *f = mb_tensor_unary(MB_EXP, y, &err);
    mb_tensor *mixed = mb_tensor_binary(MB_ADD, x, f, &err);
    CHECK(mixed->dtype == MB_FLOAT32 && fabs(mb_tensor_f32(mixed)[0] - (7 + exp(2))) < 1e-4);
    int32_t big[] = {INT32_MAX};
    int64_t one[] = {1};
    mb_tensor *bt = mb_tensor_from_data(MB_INT32, 1, one, big, &err);
    mb_tensor *wrapped = mb_tensor_binary_scalar(MB_ADD, bt, 1, 0, &err);
    CHECK(mb_tensor_i32(wrapped)[0] == INT32_MIN, "int32 overflow wraps");
    mb_tensor *all[] = {x, y, q, p, neg, s1, s2, s3, f, mixed, bt, wrapped};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) mb_tensor_free(all[i]);
}

TEST(unary_matches_libm) {
    mb_error err;
    int64_t n[] = {2001};
    mb_tensor *x = mb_tensor_arange(MB_FLOAT32, -10, 10.005, 0.01, &err);
    CHECK(x && x->shape[0] == n[0], "%lld", x ? (long long)x->shape[0] : -1LL);
    mb_unop ops[] = {MB_NEG, MB_EXP, MB_TANH, MB_RELU, MB_GELU, MB_ABS, MB_SIGMOID};
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
        mb_tensor *y = mb_tensor_unary(ops[o], x, &err);
        double worst = 0;
        for (int64_t i = 0; i < n[0]; i++) {
            double v = mb_tensor_f32(x)[i], want = 0;
            switch (ops[o]) {
            case MB_NEG: want = -v; break;
            case MB_EXP: want = exp(v); break;
            case MB_TANH: want = tanh(v); break;
            case MB_RELU: want = v > 0 ? v : 0; break;
            case MB_GELU: want = 0.5 * v * (1 + erf(v / sqrt(2.0))); break;
            case MB_ABS: want = fabs(v); break;
            case MB_SIGMOID: want = 1 / (1 + exp(-v)); break;
            default: break;
            }
            double d = fabs(mb_tensor_f32(y)[i] - want) / (1 + fabs(want));
            if (d > worst) worst = d;
        }
        CHECK(worst < 2e-6, "op %d: rel err %g", (int)ops[o], worst);
        mb_tensor_free(y);
    }
    mb_tensor *ab = mb_tensor_unary(MB_ABS, x, &err);
    mb_tensor *pos = mb_tensor_binary_scalar(MB_ADD, ab, 0.5, 0, &err);
    mb_tensor_free(ab);
    mb_tensor *lg = mb_tensor_unary(MB_LOG, pos, &err), *sq = mb_tensor_unary(MB_SQRT, pos, &err);
    for (int64_t i = 0; i < n[0]; i++) {
        double v = mb_tensor_f32(pos)[i];
        CHECK(fabs(mb_tensor_f32(lg)[i] - log(v)) < 1e-5 && fabs(mb_tensor_f32(sq)[i] - sqrt(v)) < 1e-5);
    }
    CHECK(!mb_tensor_unary((mb_unop)99, x, &err));
    CHECK(mb_gelu(0) == 0 && fabsf(mb_gelu(3) - 2.99595f) < 1e-4);
    mb_tensor_free(x);
    mb_tensor_free(lg);
    mb_tensor_free(sq);
    mb_tensor_free(pos);
}

TEST(gelu_grad_matches_finite_differences) {
    double worst = 0;
    for (double x = -6; x <= 6; x += 0.05) {
        double h = 1e-3;
        double fd = ((double)mb_gelu((float)(x + h)) - (double)mb_gelu((float)(x - h))) / (2 * h);
        double exact = 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-x * x / 2) / sqrt(2 * M_PI);
        double d1 = fabs(mb_gelu_grad((float)x) - exact), d2 = fabs(fd - exact);
        if (d1 > worst) worst = d1;
        CHECK(d2 < 5e-3, "finite difference at %g: %g vs %g", x, fd, exact);
    }
    CHECK(worst < 1e-6, "gelu_grad vs analytic: %g", worst);
}

/* ---- matmul ----------------------------------------------------------------------- */

/* Naive product of the (already transposed) last two dims of a and b, for
   2-D operands, vectors, and batches, via the public accessor. */
static double matmul_check(const mb_tensor *a, const mb_tensor *b, int ta, int tb, const mb_tensor *out) {
    mb_error err;
    mb_tensor *A = ta ? mb_tensor_transpose(a, &err) : mb_tensor_view(a, &err);
    mb_tensor *B = tb ? mb_tensor_transpose(b, &err) : mb_tensor_view(b, &err);
    int av = A->ndim == 1, bv = B->ndim == 1;
    int64_t m = av ? 1 : A->shape[A->ndim - 2], k = A->shape[A->ndim - 1];
    int64_t n = bv ? 1 : B->shape[B->ndim - 1];
    int abd = av ? 0 : A->ndim - 2, bbd = bv ? 0 : B->ndim - 2;
    int obd = out->ndim - (av ? 0 : 1) - (bv ? 0 : 1);
    int64_t nbatch = 1;
    for (int d = 0; d < obd; d++) nbatch *= out->shape[d];
    double worst = 0;
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t bidx[2] = {0, 0}, r = bi;
        for (int d = obd - 1; d >= 0; d--) {
            bidx[d] = r % out->shape[d];
            r /= out->shape[d];
        }
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0, mag = 0;
                for (int64_t p = 0; p < k; p++) {
                    int64_t ia[4], ib[4];
                    int na = 0, nb = 0;
                    for (int d = 0; d < abd; d++) ia[na++] = A->shape[d] == 1 ? 0 : bidx[d + obd - abd];
                    if (!av) ia[na++] = i;
                    ia[na++] = p;
                    for (int d = 0; d < bbd; d++) ib[nb++] = B->shape[d] == 1 ? 0 : bidx[d + obd - bbd];
                    ib[nb++] = p;
                    if (!bv) ib[nb++] = j;
                    double x = at(A, ia) * at(B, ib);
                    acc += x;
                    mag += fabs(x);
                }
                int64_t io[4];
                int no = 0;
                for (int d = 0; d < obd; d++) io[no++] = bidx[d];
                if (!av) io[no++] = i;
                if (!bv) io[no++] = j;
                double d = fabs(at(out, io) - acc) / (1 + mag);
                if (d != d) d = INFINITY;
                if (d > worst) worst = d;
            }
    }
    mb_tensor_free(A);
    mb_tensor_free(B);
    return worst;
}

static void check_matmul(int na, const int64_t *as, int nb, const int64_t *bs, int ta, int tb, int nout,
                         const int64_t *os, const char *what) {
    mb_error err;
    mb_tensor *a = randn(na, as), *b = randn(nb, bs);
    mb_tensor *out = mb_tensor_matmul(a, b, ta, tb, &err);
    CHECK(out, "%s: %s", what, out ? "" : err.msg);
    if (out) {
        CHECK(out->ndim == nout && memcmp(out->shape, os, sizeof(int64_t) * (size_t)nout) == 0, "%s: shape", what);
        double d = matmul_check(a, b, ta, tb, out);
        CHECK(d < 1e-5, "%s: rel err %g", what, d);
    }
    mb_tensor_free(a);
    mb_tensor_free(b);
    mb_tensor_free(out);
}

TEST(matmul_matches_naive) {
    int64_t s11[] = {1, 1}, s34[] = {3, 4}, s45[] = {4, 5}, s4[] = {4}, s3[] = {3}, s5[] = {5};
    int64_t s35[] = {3, 5}, s54[] = {5, 4}, s43[] = {4, 3}, s1[] = {1};
    check_matmul(2, s11, 2, s11, 0, 0, 2, s11, "1x1");
    check_matmul(2, s34, 2, s45, 0, 0, 2, s35, "3x4 @ 4x5");
    check_matmul(1, s4, 2, s45, 0, 0, 1, s5, "vector @ matrix");
    check_matmul(2, s34, 1, s4, 0, 0, 1, s3, "matrix @ vector");
    int64_t none[1] = {0};
    check_matmul(1, s4, 1, s4, 0, 0, 0, none, "dot");
    check_matmul(1, s1, 1, s1, 0, 0, 0, none, "1-element dot");
    check_matmul(2, s43, 2, s45, 1, 0, 2, s35, "trans_a");
    check_matmul(2, s34, 2, s54, 0, 1, 2, s35, "trans_b");
    check_matmul(2, s43, 2, s54, 1, 1, 2, s35, "trans_a trans_b");
    /* Random non-square shapes, incl. sizes 1. */
    for (int r = 0; r < 25; r++) {
        int64_t m = 1 + (int64_t)mb_rng_below(&g_rng, 40), k = 1 + (int64_t)mb_rng_below(&g_rng, 40),
                n = 1 + (int64_t)mb_rng_below(&g_rng, 40);
        int ta = r & 1, tb = (r >> 1) & 1;
        int64_t as[] = {ta ? k : m, ta ? m : k}, bs[] = {tb ? n : k, tb ? k : n}, os[] = {m, n};
        char what[64];
        snprintf(what, sizeof what, "random %lldx%lldx%lld ta=%d tb=%d", (long long)m, (long long)k, (long long)n, ta, tb);
        check_matmul(2, as, 2, bs, ta, tb, 2, os, what);
    }
    /* Batched: 3-D x 3-D, 4-D x 4-D, 3-D x 2-D (shared), broadcast batch dims, 4-D with trans_b. */
    int64_t b234[] = {2, 3, 4}, b245[] = {2, 4, 5}, b235[] = {2, 3, 5};
    check_matmul(3, b234, 3, b245, 0, 0, 3, b235, "batched 3-D");
    check_matmul(3, b234, 2, s45, 0, 0, 3, b235, "3-D @ shared 2-D");
    check_matmul(2, s34, 3, b245, 0, 0, 3, b235, "2-D @ 3-D");
    int64_t q[] = {2, 3, 6, 8}, k4[] = {2, 3, 7, 8}, o4[] = {2, 3, 6, 7};
    check_matmul(4, q, 4, k4, 0, 1, 4, o4, "attention scores Q K^T");
    int64_t q1[] = {2, 1, 6, 8}, k1[] = {1, 3, 8, 7};
    check_matmul(4, q1, 4, k1, 0, 0, 4, o4, "broadcast batch dims");
    int64_t v3[] = {2, 4, 3}, o3[] = {2, 4};
    check_matmul(3, v3, 1, s3, 0, 0, 2, o3, "batched matrix @ vector");
}

TEST(matmul_on_views) {
    mb_error err;
    int64_t big[] = {10, 12};
    mb_tensor *x = randn(2, big);
    /* A narrowed block (leading dimension 12 > columns), its transpose, a
       column-strided view that needs packing, and a select from a batch. */
    mb_tensor *blk = mb_tensor_narrow(x, 1, 2, 7, &err);      /* [10,7], ld 12 */
    mb_tensor *blk2 = mb_tensor_narrow(blk, 0, 3, 7, &err);   /* [7,7] */
    mb_tensor *t = mb_tensor_transpose(blk, &err);            /* [7,10] transposed view */
    int64_t packs = mb_tensor_matmul_packs();
    mb_tensor *p1 = mb_tensor_matmul(blk, t, 0, 0, &err);     /* [10,10] */
    CHECK(p1 && matmul_check(blk, t, 0, 0, p1) < 1e-5);
    mb_tensor *p2 = mb_tensor_matmul(t, blk2, 1, 0, &err);    /* (t^T = blk)[10,7] @ [7,7] */
    CHECK(p2 && matmul_check(t, blk2, 1, 0, p2) < 1e-5);
    mb_tensor *p2b = mb_tensor_matmul(t, blk, 1, 1, &err);     /* both transposed: [10,7] @ [7,10] */
    CHECK(p2b && matmul_check(t, blk, 1, 1, p2b) < 1e-5);
    CHECK(mb_tensor_matmul_packs() == packs, "transposed and narrowed views are read in place (%lld copies)",
          (long long)(mb_tensor_matmul_packs() - packs));
    int64_t s3[] = {4, 6, 9};
    mb_tensor *c = randn(3, s3);
    mb_tensor *every_other = mb_tensor_select(c, 2, 3, &err); /* [4,6], last-dim stride 9 */
    int64_t s65[] = {6, 5};
    mb_tensor *w = randn(2, s65);
    mb_tensor *p3 = mb_tensor_matmul(every_other, w, 0, 0, &err);
    CHECK(p3 && matmul_check(every_other, w, 0, 0, p3) < 1e-5, "packed strided operand");
    CHECK(mb_tensor_matmul_packs() == packs + 1, "a last-dim stride of 9 needs one packed copy");
    mb_tensor *tr3 = mb_tensor_transpose(c, &err); /* [4,9,6] batched transposed view */
    mb_tensor *p4 = mb_tensor_matmul(tr3, w, 0, 0, &err);
    CHECK(p4 && matmul_check(tr3, w, 0, 0, p4) < 1e-5, "batched transposed view");
    CHECK(mb_tensor_matmul_packs() == packs + 1, "batched transposed views are read in place");
    mb_tensor *all[] = {x, blk, blk2, t, p1, p2, p2b, c, every_other, w, p3, tr3, p4};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) mb_tensor_free(all[i]);
}

TEST(matmul_errors) {
    mb_error err;
    int64_t s23[] = {2, 3}, s34[] = {3, 4}, s44[] = {4, 4}, b2[] = {2, 3, 3}, b3[] = {3, 3, 3};
    mb_tensor *a = mb_tensor_zeros(MB_FLOAT32, 2, s23, &err), *b = mb_tensor_zeros(MB_FLOAT32, 2, s44, &err);
    CHECK(!mb_tensor_matmul(a, b, 0, 0, &err) && err.code == MB_ERR_SHAPE &&
              strstr(err.msg, "shape [4,4] does not match [2,3]"), "%s", err.msg);
    mb_tensor *c = mb_tensor_zeros(MB_FLOAT32, 2, s34, &err);
    CHECK(!mb_tensor_matmul(a, c, 0, 1, &err) && strstr(err.msg, "after transposing"), "%s", err.msg);
    mb_tensor *ia = mb_tensor_zeros(MB_INT32, 2, s34, &err);
    CHECK(!mb_tensor_matmul(a, ia, 0, 0, &err) && err.code == MB_ERR_DTYPE && strstr(err.msg, "float32"), "%s", err.msg);
    mb_tensor *sc = mb_tensor_full(MB_FLOAT32, 0, NULL, 1, &err);
    CHECK(!mb_tensor_matmul(sc, a, 0, 0, &err) && err.code == MB_ERR_SHAPE, "%s", err.msg);
    mb_tensor *x = mb_tensor_zeros(MB_FLOAT32, 3, b2, &err), *y = mb_tensor_zeros(MB_FLOAT32, 3, b3, &err);
    CHECK(!mb_tensor_matmul(x, y, 0, 0, &err) && strstr(err.msg, "batch"), "%s", err.msg);
    /* Zero-size dimensions give zeros of the right shape. */
    int64_t s20[] = {2, 0}, s03[] = {0, 3};
    mb_tensor *z1 = mb_tensor_zeros(MB_FLOAT32, 2, s20, &err), *z2 = mb_tensor_full(MB_FLOAT32, 2, s03, 1, &err);
    mb_tensor *z = mb_tensor_matmul(z1, z2, 0, 0, &err);
    CHECK(z && z->shape[0] == 2 && z->shape[1] == 3 && mb_tensor_f32(z)[5] == 0.0f);
    mb_tensor *all[] = {a, b, c, ia, sc, x, y, z1, z2, z};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) mb_tensor_free(all[i]);
}

TEST(sgemm_alpha_beta) {
    float A[] = {1, 2, 3, 4}, B[] = {5, 6, 7, 8}, C[] = {1, 1, 1, 1};
    mb_sgemm(0, 1, 2, 2, 2, 2.0f, A, 2, B, 2, 1.0f, C, 2); /* C = 2 A B^T + C */
    CHECK(C[0] == 1 + 2 * (1 * 5 + 2 * 6) && C[3] == 1 + 2 * (3 * 7 + 4 * 8), "%g %g", C[0], C[3]);
}

/* ---- reductions and softmax ---------------------------------------------------------- */

TEST(reductions_match_naive) {
    mb_error err;
    int64_t s[] = {3, 4, 5};
    mb_tensor *x = randn(3, s);
    mb_tensor *tr = mb_tensor_transpose(x, &err); /* exercise a strided input too */
    const mb_tensor *ins[] = {x, tr};
    for (int which = 0; which < 2; which++) {
        const mb_tensor *t = ins[which];
        for (int dim = -1; dim < 3; dim++) {
            int d = dim < 0 ? dim + 3 : dim;
            mb_reduce ops[] = {MB_SUM, MB_MEAN, MB_MAX, MB_MIN, MB_ARGMAX, MB_ARGMIN};
            for (int o = 0; o < 6; o++) {
                mb_tensor *r = mb_tensor_reduce(ops[o], t, dim, &err);
                CHECK(r && r->ndim == 2, "%s", r ? "" : err.msg);
                if (!r) continue;
                CHECK(r->dtype == (o >= 4 ? MB_INT32 : MB_FLOAT32));
                int64_t idx[3], ri[2];
                double worst = 0;
                for (ri[0] = 0; ri[0] < r->shape[0]; ri[0]++)
                    for (ri[1] = 0; ri[1] < r->shape[1]; ri[1]++) {
                        double sum = 0, best_max = -INFINITY, best_min = INFINITY;
                        int64_t amax = 0, amin = 0;
                        for (int64_t i = 0; i < t->shape[d]; i++) {
                            for (int q = 0, w = 0; q < 3; q++) idx[q] = q == d ? i : ri[w++];
                            double v = at(t, idx);
                            sum += v;
                            if (v > best_max) best_max = v, amax = i;
                            if (v < best_min) best_min = v, amin = i;
                        }
                        double want = o == 0 ? sum : o == 1 ? sum / (double)t->shape[d] : o == 2 ? best_max
                                    : o == 3 ? best_min : o == 4 ? (double)amax : (double)amin;
                        double diff = fabs(at(r, ri) - want);
                        if (diff > worst) worst = diff;
                    }
                CHECK(worst < 1e-5, "view %d dim %d op %d: %g", which, dim, o, worst);
                mb_tensor_free(r);
            }
        }
    }
    mb_tensor *all = mb_tensor_reduce(MB_SUM, x, MB_DIM_ALL, &err);
    double ref = 0;
    for (int i = 0; i < 60; i++) ref += mb_tensor_f32(x)[i];
    CHECK(all && all->ndim == 0 && fabs(mb_tensor_f32(all)[0] - ref) < 1e-5);
    CHECK(!mb_tensor_reduce(MB_SUM, x, 3, &err) && err.code == MB_ERR_RANGE, "%s", err.msg);
    CHECK(!mb_tensor_reduce((mb_reduce)42, x, 0, &err));
    mb_tensor_free(all);
    mb_tensor_free(tr);
    mb_tensor_free(x);
}

TEST(reduction_edge_cases) {
    mb_error err;
    float v[] = {1, 5, 5, -2, 5};
    int64_t n[] = {5};
    mb_tensor *t = mb_tensor_from_data(MB_FLOAT32, 1, n, v, &err);
    mb_tensor *am = mb_tensor_reduce(MB_ARGMAX, t, 0, &err);
    CHECK(mb_tensor_i32(am)[0] == 1, "first index wins ties: %d", mb_tensor_i32(am)[0]);
    int32_t iv[] = {2000000000, 2000000000, -5};
    int64_t n3[] = {3};
    mb_tensor *it = mb_tensor_from_data(MB_INT32, 1, n3, iv, &err);
    mb_tensor *mean = mb_tensor_reduce(MB_MEAN, it, 0, &err);
    CHECK(mean->dtype == MB_FLOAT32 && fabs(mb_tensor_f32(mean)[0] - (4000000000.0 - 5) / 3) < 1000,
          "int mean accumulates in 64 bits: %g", mb_tensor_f32(mean)[0]);
    mb_tensor *mx = mb_tensor_reduce(MB_MAX, it, 0, &err);
    CHECK(mx->dtype == MB_INT32 && mb_tensor_i32(mx)[0] == 2000000000);
    int64_t e[] = {3, 0};
    mb_tensor *empty = mb_tensor_zeros(MB_FLOAT32, 2, e, &err);
    CHECK(!mb_tensor_reduce(MB_MAX, empty, 1, &err) && strstr(err.msg, "empty"), "%s", err.msg);
    mb_tensor *es = mb_tensor_reduce(MB_SUM, empty, 1, &err);
    CHECK(es && es->shape[0] == 3 && mb_tensor_f32(es)[2] == 0.0f);
    float nv[] = {1, NAN, 3};
    mb_tensor *nt = mb_tensor_from_data(MB_FLOAT32, 1, n3, nv, &err);
    mb_tensor *nm = mb_tensor_reduce(MB_MAX, nt, 0, &err);
    CHECK(isnan(mb_tensor_f32(nm)[0]), "NaN propagates through max");
    mb_tensor *all[] = {t, am, it, mean, mx, empty, es, nt, nm};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) mb_tensor_free(all[i]);
}

TEST(softmax_properties) {
    mb_error err;
    int64_t s[] = {7, 13};
    mb_tensor *x = randn(2, s);
    mb_tensor *big = mb_tensor_binary_scalar(MB_MUL, x, 1000, 0, &err); /* overflow without max-shift */
    for (int dim = 0; dim < 2; dim++) {
        mb_tensor *p = mb_tensor_softmax(big, dim, 0, &err), *lp = mb_tensor_softmax(big, dim, 1, &err);
        CHECK(p && lp);
        mb_tensor *sum = mb_tensor_reduce(MB_SUM, p, dim, &err);
        for (int64_t i = 0; i < sum->shape[0]; i++) CHECK_NEAR(mb_tensor_f32(sum)[i], 1.0, 1e-5);
        mb_tensor *elp = mb_tensor_unary(MB_EXP, lp, &err);
        CHECK(max_diff(elp, p) < 1e-6, "exp(log_softmax) = softmax");
        for (int64_t i = 0; i < mb_tensor_numel(p); i++) CHECK(isfinite(mb_tensor_f32(p)[i]));
        mb_tensor_free(p);
        mb_tensor_free(lp);
        mb_tensor_free(sum);
        mb_tensor_free(elp);
    }
    /* Against a double-precision reference on a transposed view. */
    mb_tensor *tr = mb_tensor_transpose(x, &err);
    mb_tensor *p = mb_tensor_softmax(tr, -1, 0, &err);
    double worst = 0;
    for (int64_t i = 0; i < 13; i++) {
        double z = 0;
        for (int64_t j = 0; j < 7; j++) z += exp(mb_tensor_f32(x)[j * 13 + i]);
        for (int64_t j = 0; j < 7; j++) {
            double d = fabs(mb_tensor_f32(p)[i * 7 + j] - exp(mb_tensor_f32(x)[j * 13 + i]) / z);
            if (d > worst) worst = d;
        }
    }
    CHECK(worst < 1e-6, "%g", worst);
    mb_tensor *sc = mb_tensor_full(MB_FLOAT32, 0, NULL, 1, &err);
    CHECK(!mb_tensor_softmax(sc, 0, 0, &err) && !mb_tensor_softmax(x, 2, 0, &err));
    mb_tensor *all[] = {x, big, tr, p, sc};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) mb_tensor_free(all[i]);
}

/* ---- RNG ------------------------------------------------------------------------ */

TEST(random_tensors_reproducible) {
    mb_error err;
    mb_rng r1, r2, r3;
    mb_rng_seed(&r1, 42);
    mb_rng_seed(&r2, 42);
    mb_rng_seed(&r3, 43);
    int64_t s[] = {100000};
    mb_tensor *a = mb_tensor_randn(1, s, &r1, 0, 1, &err), *b = mb_tensor_randn(1, s, &r2, 0, 1, &err);
    mb_tensor *c = mb_tensor_randn(1, s, &r3, 0, 1, &err);
    CHECK(memcmp(mb_tensor_f32(a), mb_tensor_f32(b), 4 * 100000) == 0, "same seed, same numbers");
    CHECK(memcmp(mb_tensor_f32(a), mb_tensor_f32(c), 4 * 100000) != 0, "other seed, other numbers");
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        sum += mb_tensor_f32(a)[i];
        sq += (double)mb_tensor_f32(a)[i] * mb_tensor_f32(a)[i];
    }
    double mean = sum / 1e5, sd = sqrt(sq / 1e5 - mean * mean);
    CHECK(fabs(mean) < 0.02 && fabs(sd - 1) < 0.02, "mean %g std %g", mean, sd);
    mb_tensor *u = mb_tensor_rand_uniform(1, s, &r1, -2, 3, &err);
    double lo = 1e9, hi = -1e9, us = 0;
    for (int i = 0; i < 100000; i++) {
        double v = mb_tensor_f32(u)[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        us += v;
    }
    CHECK(lo >= -2 && hi < 3 && fabs(us / 1e5 - 0.5) < 0.03, "lo %g hi %g mean %g", lo, hi, us / 1e5);
    mb_tensor_free(a);
    mb_tensor_free(b);
    mb_tensor_free(c);
    mb_tensor_free(u);
}

int main(void) {
    mb_rng_seed(&g_rng, 1234);
    RUN(creation_values_and_shapes);
    RUN(wrap_releases_once_after_last_view);
    RUN(creation_errors);
    RUN(get_set_bounds);
    RUN(views_share_storage);
    RUN(view_errors);
    RUN(dtype_conversion);
    RUN(broadcasting_matches_reference);
    RUN(scalar_and_int_arithmetic);
    RUN(unary_matches_libm);
    RUN(gelu_grad_matches_finite_differences);
    RUN(matmul_matches_naive);
    RUN(matmul_on_views);
    RUN(matmul_errors);
    RUN(sgemm_alpha_beta);
    RUN(reductions_match_naive);
    RUN(reduction_edge_cases);
    RUN(softmax_properties);
    RUN(random_tensors_reproducible);
    return harness_end();
}
