/* learners.c: Lua bindings of the classical learners (core.learners).
 *
 *   core.learners.csr_from_docs(docs, ncols, binary)  -> moonbert.CSR   (docs: list of lists of 0-based column ids)
 *   core.learners.csr(nrows, ncols, indptr, indices, data) -> moonbert.CSR (0-based values, scipy layout)
 *   core.learners.logreg_fit(X, y, {C=, max_iter=, tol=, ftol=, fit_intercept=, precondition=})
 *                                                      -> moonbert.LogisticRegression
 *   core.learners.column_stats(X)                     -> mean, std, min, max (float32 tensors [d])
 *   core.learners.affine_columns(X, shift, scale)     -> (X - shift) * scale, a new tensor
 *   core.learners.sample_classes(seed, n, probs)      -> int32 tensor [n] of 0-based class indices
 *   core.learners.gaussian_classes(counts, d, sep, seed) -> X, y (synthetic features for benchmarks)
 * X is a float32 tensor [n, d] or a moonbert.CSR. Labels are a Lua table of integers or an
 * int32 tensor; the model keeps scikit-learn's classes_ (sorted distinct labels) and predicts
 * label values. The user-facing classes are in bindings/moonbert/learners.lua.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "luamb.h"
#include "../runtime/logreg.h"
#include "../runtime/metrics.h"
#include "../runtime/rng.h"
#include "../runtime/sparse.h"
#include "../runtime/synthetic.h"

#define CSR_MT "moonbert.CSR"
#define LOGREG_MT "moonbert.LogisticRegression"

/* ---- shared argument helpers ------------------------------------------------ */

/* The contiguous tensor of dtype at arg (a tensor or a Lua table), pushed on the
   stack so that the collector owns it whatever happens next. */
static mb_tensor *push_contiguous(lua_State *L, int arg, mb_dtype dtype) {
    mb_tensor *t = mb_lua_totensor(L, arg, dtype);
    mb_error err;
    mb_lua_pushtensor(L, t, NULL);
    if (!mb_tensor_is_contiguous(t)) {
        mb_tensor *c = mb_tensor_contiguous(t, &err);
        if (!c) mb_lua_argraise(L, arg, &err);
        lua_pop(L, 1);
        mb_lua_pushtensor(L, c, NULL);
        t = c;
    }
    return t;
}

/* Labels at arg as a 1-D int32 array (pushes one value). */
static const int32_t *push_labels(lua_State *L, int arg, int64_t *n) {
    mb_tensor *t = push_contiguous(L, arg, MB_INT32);
    if (t->ndim > 1) luaL_argerror(L, arg, "labels must be a list or a 1-D int32 tensor");
    *n = mb_tensor_numel(t);
    return mb_tensor_i32(t);
}

typedef struct csr_box {
    mb_csr *m;
} csr_box;

static mb_csr *check_csr(lua_State *L, int arg) {
    csr_box *b = luaL_checkudata(L, arg, CSR_MT);
    if (!b->m) luaL_argerror(L, arg, "CSR matrix is freed");
    return b->m;
}

static void push_csr(lua_State *L, mb_csr *m, mb_error *err) {
    if (!m) mb_lua_raise(L, err);
    csr_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->m = m;
    luaL_setmetatable(L, CSR_MT);
    size_t kb = mb_csr_nbytes(m) / 1024;
    if (kb) lua_gc(L, LUA_GCSTEP, (int)(kb > INT32_MAX ? INT32_MAX : kb));
}

/* X at arg: a float32 [n, d] tensor or a CSR matrix (pushes one value). */
static void push_design(lua_State *L, int arg, mb_design *X) {
    memset(X, 0, sizeof *X);
    csr_box *b = luaL_testudata(L, arg, CSR_MT);
    if (b) {
        if (!b->m) luaL_argerror(L, arg, "CSR matrix is freed");
        X->csr = b->m;
        X->n = b->m->nrows;
        X->d = b->m->ncols;
        lua_pushvalue(L, arg);
        return;
    }
    if (!mb_lua_testtensor(L, arg))
        luaL_argerror(L, arg, lua_pushfstring(L, "float32 tensor [n, d] or moonbert.CSR expected, got %s",
                                              luaL_typename(L, arg)));
    mb_tensor *t = mb_lua_checktensor(L, arg);
    if (t->ndim != 2) luaL_argerror(L, arg, "X must be a 2-D tensor [n, d]");
    t = push_contiguous(L, arg, MB_FLOAT32);
    X->dense = mb_tensor_f32(t);
    X->n = t->shape[0];
    X->d = t->shape[1];
}

/* ---- CSR ---------------------------------------------------------------------- */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* csr_from_docs(docs, ncols, binary): one row per document, counting repeated ids. */
static int l_csr_from_docs(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer ncols = luaL_checkinteger(L, 2);
    int binary = lua_toboolean(L, 3);
    if (ncols < 0 || ncols > INT32_MAX) luaL_argerror(L, 2, "number of columns out of range");
    int64_t nrows = (int64_t)luaL_len(L, 1), nnz_max = 0;
    for (int64_t i = 1; i <= nrows; i++) {
        if (lua_rawgeti(L, 1, i) != LUA_TTABLE)
            luaL_argerror(L, 1, lua_pushfstring(L, "document %d: list of column ids expected, got %s", (int)i,
                                                luaL_typename(L, -1)));
        nnz_max += (int64_t)lua_rawlen(L, -1);
        lua_pop(L, 1);
    }
    /* ids of all documents, sorted per row, then run-length counted */
    int32_t *ids = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)(nnz_max + 1), 0);
    int64_t *start = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(nrows + 1), 0);
    int64_t o = 0;
    for (int64_t i = 1; i <= nrows; i++) {
        start[i - 1] = o;
        lua_rawgeti(L, 1, i);
        int64_t len = (int64_t)lua_rawlen(L, -1);
        for (int64_t j = 1; j <= len; j++) {
            lua_rawgeti(L, -1, j);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok || v < 0 || v >= ncols)
                luaL_argerror(L, 1, lua_pushfstring(L, "document %d, position %d: column id in [0, %d) expected",
                                                    (int)i, (int)j, (int)ncols));
            ids[o++] = (int32_t)v;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        qsort(ids + start[i - 1], (size_t)(o - start[i - 1]), sizeof(int32_t), cmp_i32);
    }
    start[nrows] = o;
    int64_t nnz = 0;
    for (int64_t i = 0; i < nrows; i++)
        for (int64_t p = start[i]; p < start[i + 1]; p++) nnz += p == start[i] || ids[p] != ids[p - 1];
    mb_error err;
    mb_csr *m = mb_csr_new(nrows, ncols, nnz, &err);
    if (!m) return mb_lua_raise(L, &err);
    int64_t q = 0;
    for (int64_t i = 0; i < nrows; i++) {
        for (int64_t p = start[i]; p < start[i + 1]; p++) {
            if (p == start[i] || ids[p] != ids[p - 1]) {
                m->indices[q] = ids[p];
                m->data[q++] = 1.0f;
            } else if (!binary) {
                m->data[q - 1] += 1.0f;
            }
        }
        m->indptr[i + 1] = q;
    }
    push_csr(L, m, &err);
    return 1;
}

/* csr(nrows, ncols, indptr, indices, data): scipy's three arrays (0-based values). */
static int l_csr(lua_State *L) {
    lua_settop(L, 5); /* values pushed below stay above the arguments */
    lua_Integer nrows = luaL_checkinteger(L, 1), ncols = luaL_checkinteger(L, 2);
    mb_tensor *ip = push_contiguous(L, 3, MB_INT32);
    mb_tensor *ix = push_contiguous(L, 4, MB_INT32);
    mb_tensor *dv = push_contiguous(L, 5, MB_FLOAT32);
    if (mb_tensor_numel(ip) != nrows + 1)
        luaL_argerror(L, 3, lua_pushfstring(L, "indptr must have nrows + 1 = %d entries", (int)(nrows + 1)));
    if (mb_tensor_numel(ix) != mb_tensor_numel(dv)) luaL_argerror(L, 5, "data and indices differ in length");
    int64_t *indptr = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(nrows + 1), 0);
    for (int64_t i = 0; i <= nrows; i++) indptr[i] = mb_tensor_i32(ip)[i];
    if (indptr[nrows] != mb_tensor_numel(ix)) luaL_argerror(L, 3, "the last indptr must equal the number of entries");
    mb_error err;
    mb_csr *m = mb_csr_from_arrays(nrows, ncols, indptr, mb_tensor_i32(ix), mb_tensor_f32(dv), &err);
    if (!m) return mb_lua_raise(L, &err);
    push_csr(L, m, &err);
    return 1;
}

static int csr_close(lua_State *L) {
    csr_box *b = luaL_checkudata(L, 1, CSR_MT);
    mb_csr_free(b->m);
    b->m = NULL;
    return 0;
}

static int csr_shape(lua_State *L) {
    mb_csr *m = check_csr(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, m->nrows);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, m->ncols);
    lua_rawseti(L, -2, 2);
    return 1;
}

static int csr_nnz(lua_State *L) {
    lua_pushinteger(L, check_csr(L, 1)->nnz);
    return 1;
}

static int csr_nbytes(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mb_csr_nbytes(check_csr(L, 1)));
    return 1;
}

static int csr_to_dense(lua_State *L) {
    mb_csr *m = check_csr(L, 1);
    int64_t shape[2] = {m->nrows, m->ncols};
    mb_error err;
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, 2, shape, &err);
    if (t) mb_csr_to_dense(m, mb_tensor_f32(t));
    mb_lua_pushtensor(L, t, &err);
    return 1;
}

/* m:rows(list of 1-based row positions) -> new CSR */
static int csr_rows(lua_State *L) {
    lua_settop(L, 2); /* values pushed below stay above the arguments */
    mb_csr *m = check_csr(L, 1);
    mb_tensor *r = push_contiguous(L, 2, MB_INT32);
    int64_t n = mb_tensor_numel(r);
    int64_t *rows = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(n + 1), 0);
    for (int64_t i = 0; i < n; i++) rows[i] = (int64_t)mb_tensor_i32(r)[i] - 1;
    mb_error err;
    mb_csr *out = mb_csr_select_rows(m, rows, n, &err);
    if (!out) mb_lua_argraise(L, 2, &err);
    push_csr(L, out, &err);
    return 1;
}

/* m:column_counts() -> int32 tensor [ncols]: rows in which each column is non-zero (document frequency). */
static int csr_column_counts(lua_State *L) {
    mb_csr *m = check_csr(L, 1);
    int64_t shape[1] = {m->ncols};
    mb_error err;
    mb_tensor *t = mb_tensor_zeros(MB_INT32, 1, shape, &err);
    if (t) {
        int32_t *c = mb_tensor_i32(t);
        for (int64_t p = 0; p < m->nnz; p++) c[m->indices[p]] += m->data[p] != 0;
    }
    mb_lua_pushtensor(L, t, &err);
    return 1;
}

/* m:scale_columns(scale [ncols] tensor or table, l2_normalize) in place; returns m. */
static int csr_scale_columns(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    mb_csr *m = check_csr(L, 1);
    mb_tensor *s = push_contiguous(L, 2, MB_FLOAT32);
    if (mb_tensor_numel(s) != m->ncols)
        luaL_argerror(L, 2, lua_pushfstring(L, "%d column scales expected", (int)m->ncols));
    double *sc = lua_newuserdatauv(L, sizeof(double) * (size_t)(m->ncols + 1), 0);
    for (int64_t j = 0; j < m->ncols; j++) sc[j] = mb_tensor_f32(s)[j];
    mb_csr_scale_columns_(m, sc, lua_toboolean(L, 3));
    lua_pushvalue(L, 1);
    return 1;
}

/* m:keep_columns(mask tensor/table of 0/1 [ncols]) -> new CSR without the entries of masked-out columns. */
static int csr_keep_columns(lua_State *L) {
    lua_settop(L, 2); /* values pushed below stay above the arguments */
    mb_csr *m = check_csr(L, 1);
    mb_tensor *k = push_contiguous(L, 2, MB_INT32);
    if (mb_tensor_numel(k) != m->ncols) luaL_argerror(L, 2, "one flag per column expected");
    const int32_t *keep = mb_tensor_i32(k);
    int64_t nnz = 0;
    for (int64_t p = 0; p < m->nnz; p++) nnz += keep[m->indices[p]] != 0;
    mb_error err;
    mb_csr *out = mb_csr_new(m->nrows, m->ncols, nnz, &err);
    if (!out) return mb_lua_raise(L, &err);
    int64_t q = 0;
    for (int64_t i = 0; i < m->nrows; i++) {
        for (int64_t p = m->indptr[i]; p < m->indptr[i + 1]; p++)
            if (keep[m->indices[p]]) {
                out->indices[q] = m->indices[p];
                out->data[q++] = m->data[p];
            }
        out->indptr[i + 1] = q;
    }
    push_csr(L, out, &err);
    return 1;
}

/* m:row(i) -> {col_id = value} for 1-based row i (0-based column ids as keys). */
static int csr_row(lua_State *L) {
    mb_csr *m = check_csr(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    if (i < 1 || i > m->nrows) luaL_argerror(L, 2, lua_pushfstring(L, "row in [1, %d] expected", (int)m->nrows));
    lua_newtable(L);
    for (int64_t p = m->indptr[i - 1]; p < m->indptr[i]; p++) {
        lua_pushnumber(L, m->data[p]);
        lua_rawseti(L, -2, m->indices[p]);
    }
    return 1;
}

static int csr_tostring(lua_State *L) {
    csr_box *b = luaL_checkudata(L, 1, CSR_MT);
    if (!b->m) lua_pushliteral(L, "moonbert.CSR (freed)");
    else
        lua_pushfstring(L, "moonbert.CSR [%d x %d], %d stored values, %d KB", (int)b->m->nrows, (int)b->m->ncols,
                        (int)b->m->nnz, (int)(mb_csr_nbytes(b->m) / 1024));
    return 1;
}

/* ---- logistic regression ------------------------------------------------------ */

typedef struct logreg_box {
    mb_logreg *m;
    int32_t *classes; /* [n_classes] label values */
} logreg_box;

static logreg_box *check_logreg(lua_State *L, int arg) {
    logreg_box *b = luaL_checkudata(L, arg, LOGREG_MT);
    if (!b->m) luaL_argerror(L, arg, "the model is freed");
    return b;
}

/* logreg_fit(X, y, opts) */
static int l_logreg_fit(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    mb_design X;
    push_design(L, 1, &X);
    int64_t n;
    const int32_t *y = push_labels(L, 2, &n);
    if (n != X.n)
        luaL_argerror(L, 2, lua_pushfstring(L, "%d labels for %d rows of X", (int)n, (int)X.n));
    mb_logreg_options o = mb_logreg_defaults();
    o.C = mb_lua_optfield_num(L, 3, "C", o.C);
    o.max_iter = (int)mb_lua_optfield_int(L, 3, "max_iter", o.max_iter);
    o.tol = mb_lua_optfield_num(L, 3, "tol", o.tol);
    o.ftol = mb_lua_optfield_num(L, 3, "ftol", o.ftol);
    o.fit_intercept = mb_lua_optfield_bool(L, 3, "fit_intercept", 1);
    o.precondition = mb_lua_optfield_bool(L, 3, "precondition", 1);
    mb_error err;
    int32_t *classes;
    int K;
    if (mb_unique_labels(y, NULL, n, &classes, &K, &err)) return mb_lua_argraise(L, 2, &err);
    logreg_box *b = lua_newuserdatauv(L, sizeof *b, 0); /* owns classes from here on */
    b->m = NULL;
    b->classes = classes;
    luaL_setmetatable(L, LOGREG_MT);
    int box = lua_gettop(L);
    /* labels -> class indices (binary search in the sorted classes) */
    int32_t *yi = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)(n + 1), 0);
    for (int64_t i = 0; i < n; i++) {
        int lo = 0, hi = K - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (classes[mid] < y[i]) lo = mid + 1;
            else hi = mid;
        }
        yi[i] = lo;
    }
    b->m = mb_logreg_fit(&X, yi, K, &o, &err);
    if (!b->m) return mb_lua_raise(L, &err);
    lua_pushvalue(L, box);
    return 1;
}

static int logreg_close(lua_State *L) {
    logreg_box *b = luaL_checkudata(L, 1, LOGREG_MT);
    mb_logreg_free(b->m);
    free(b->classes);
    b->m = NULL;
    b->classes = NULL;
    return 0;
}

static mb_tensor *new_f32(lua_State *L, int ndim, const int64_t *shape, const float *src) {
    mb_error err;
    mb_tensor *t = mb_tensor_from_data(MB_FLOAT32, ndim, shape, src, &err);
    if (!t) mb_lua_raise(L, &err);
    return t;
}

static int logreg_predict_proba(lua_State *L) {
    lua_settop(L, 2); /* values pushed below stay above the arguments */
    logreg_box *b = check_logreg(L, 1);
    mb_design X;
    push_design(L, 2, &X);
    int64_t shape[2] = {X.n, b->m->n_classes};
    mb_error err;
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, 2, shape, &err);
    if (!t) return mb_lua_raise(L, &err);
    mb_lua_pushtensor(L, t, NULL);
    if (mb_logreg_predict_proba(b->m, &X, mb_tensor_f32(t), &err)) return mb_lua_argraise(L, 2, &err);
    return 1;
}

static int logreg_predict(lua_State *L) {
    lua_settop(L, 2); /* values pushed below stay above the arguments */
    logreg_box *b = check_logreg(L, 1);
    mb_design X;
    push_design(L, 2, &X);
    int64_t shape[1] = {X.n};
    mb_error err;
    mb_tensor *t = mb_tensor_empty(MB_INT32, 1, shape, &err);
    if (!t) return mb_lua_raise(L, &err);
    mb_lua_pushtensor(L, t, NULL);
    int32_t *p = mb_tensor_i32(t);
    if (mb_logreg_predict(b->m, &X, p, &err)) return mb_lua_argraise(L, 2, &err);
    for (int64_t i = 0; i < X.n; i++) p[i] = b->classes[p[i]];
    return 1;
}

/* m:objective(X, y, C) -> J, max|grad J| at the fitted coefficients */
static int logreg_objective(lua_State *L) {
    lua_settop(L, 4); /* values pushed below stay above the arguments */
    logreg_box *b = check_logreg(L, 1);
    mb_design X;
    push_design(L, 2, &X);
    int64_t n;
    const int32_t *y = push_labels(L, 3, &n);
    if (n != X.n) luaL_argerror(L, 3, "one label per row of X expected");
    int K = b->m->n_classes;
    int32_t *yi = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)(n + 1), 0);
    for (int64_t i = 0; i < n; i++) {
        yi[i] = -1;
        for (int k = 0; k < K; k++)
            if (b->classes[k] == y[i]) yi[i] = k;
        if (yi[i] < 0) luaL_argerror(L, 3, lua_pushfstring(L, "label %d was not seen in fit", (int)y[i]));
    }
    double f, g;
    mb_error err;
    if (mb_logreg_objective(b->m, &X, yi, luaL_optnumber(L, 4, 1.0), &f, &g, &err)) return mb_lua_raise(L, &err);
    lua_pushnumber(L, f);
    lua_pushnumber(L, g);
    return 2;
}

/* m:info() -> {coef=, intercept=, classes=, n_iter=, n_eval=, converged=, stop=, objective=, grad_max=} */
static int logreg_info(lua_State *L) {
    logreg_box *b = check_logreg(L, 1);
    mb_logreg *m = b->m;
    lua_newtable(L);
    int64_t cs[2] = {m->n_rows, m->n_features}, is[1] = {m->n_rows};
    mb_lua_pushtensor(L, new_f32(L, 2, cs, m->coef), NULL);
    lua_setfield(L, -2, "coef");
    mb_lua_pushtensor(L, new_f32(L, 1, is, m->intercept), NULL);
    lua_setfield(L, -2, "intercept");
    lua_createtable(L, m->n_classes, 0);
    for (int k = 0; k < m->n_classes; k++) {
        lua_pushinteger(L, b->classes[k]);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "classes");
    lua_pushinteger(L, m->n_iter);
    lua_setfield(L, -2, "n_iter");
    lua_pushinteger(L, m->n_eval);
    lua_setfield(L, -2, "n_eval");
    lua_pushboolean(L, m->converged);
    lua_setfield(L, -2, "converged");
    lua_pushstring(L, mb_lbfgs_stop_name(m->stop));
    lua_setfield(L, -2, "stop");
    lua_pushnumber(L, m->objective);
    lua_setfield(L, -2, "objective");
    lua_pushnumber(L, m->grad_max);
    lua_setfield(L, -2, "grad_max");
    return 1;
}

/* ---- scalers and sampling -------------------------------------------------------- */

/* column_stats(X) -> mean, std (population), min, max as float32 tensors [d] (float64 sums) */
static int l_column_stats(lua_State *L) {
    lua_settop(L, 1); /* values pushed below stay above the arguments */
    mb_tensor *t = mb_lua_checktensor(L, 1);
    if (t->ndim != 2) luaL_argerror(L, 1, "X must be a 2-D tensor [n, d]");
    t = push_contiguous(L, 1, MB_FLOAT32);
    int64_t n = t->shape[0], d = t->shape[1];
    if (n < 1) luaL_argerror(L, 1, "X has no rows");
    const float *x = mb_tensor_f32(t);
    double *acc = lua_newuserdatauv(L, sizeof(double) * (size_t)(4 * d + 1), 0);
    double *mean = acc, *var = acc + d, *mn = var + d, *mx = mn + d;
    for (int64_t j = 0; j < d; j++) {
        mean[j] = var[j] = 0;
        mn[j] = INFINITY;
        mx[j] = -INFINITY;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double v = x[i * d + j];
            mean[j] += v;
            mn[j] = v < mn[j] ? v : mn[j];
            mx[j] = v > mx[j] ? v : mx[j];
        }
    for (int64_t j = 0; j < d; j++) mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double v = x[i * d + j] - mean[j];
            var[j] += v * v;
        }
    int64_t shape[1] = {d};
    mb_error err;
    for (int s = 0; s < 4; s++) {
        mb_tensor *o = mb_tensor_empty(MB_FLOAT32, 1, shape, &err);
        if (!o) return mb_lua_raise(L, &err);
        float *p = mb_tensor_f32(o);
        for (int64_t j = 0; j < d; j++) p[j] = (float)(s == 1 ? sqrt(var[j] / (double)n) : acc[s * d + j]);
        mb_lua_pushtensor(L, o, NULL);
    }
    return 4;
}

/* affine_columns(X, shift [d], scale [d]) -> (X - shift) * scale */
static int l_affine_columns(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    mb_tensor *t = mb_lua_checktensor(L, 1);
    if (t->ndim != 2) luaL_argerror(L, 1, "X must be a 2-D tensor [n, d]");
    t = push_contiguous(L, 1, MB_FLOAT32);
    int64_t n = t->shape[0], d = t->shape[1];
    mb_tensor *sh = push_contiguous(L, 2, MB_FLOAT32), *sc = push_contiguous(L, 3, MB_FLOAT32);
    if (mb_tensor_numel(sh) != d || mb_tensor_numel(sc) != d)
        return luaL_error(L, "X has %d features, but the scaler was fitted with %d features", (int)d,
                          (int)mb_tensor_numel(sh));
    mb_error err;
    mb_tensor *o = mb_tensor_empty(MB_FLOAT32, 2, t->shape, &err);
    if (!o) return mb_lua_raise(L, &err);
    const float *x = mb_tensor_f32(t), *a = mb_tensor_f32(sh), *s = mb_tensor_f32(sc);
    float *y = mb_tensor_f32(o);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) y[i * d + j] = (x[i * d + j] - a[j]) * s[j];
    mb_lua_pushtensor(L, o, NULL);
    return 1;
}

/* sample_classes(seed, n, probs) -> int32 [n] of 0-based indices drawn from probs (inverse CDF) */
static int l_sample_classes(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    lua_Integer seed = luaL_checkinteger(L, 1), n = luaL_checkinteger(L, 2);
    if (n < 0) luaL_argerror(L, 2, "n must be >= 0");
    mb_tensor *p = push_contiguous(L, 3, MB_FLOAT32);
    int64_t K = mb_tensor_numel(p);
    if (K < 1) luaL_argerror(L, 3, "at least one class probability expected");
    mb_rng rng;
    mb_rng_seed(&rng, (uint64_t)seed);
    int64_t shape[1] = {n};
    mb_error err;
    mb_tensor *o = mb_tensor_empty(MB_INT32, 1, shape, &err);
    if (!o) return mb_lua_raise(L, &err);
    const float *pr = mb_tensor_f32(p);
    double total = 0;
    for (int64_t k = 0; k < K; k++) total += pr[k];
    int32_t *out = mb_tensor_i32(o);
    for (int64_t i = 0; i < n; i++) {
        double u = mb_rng_uniform(&rng) * total, c = 0;
        int64_t k = 0;
        for (; k < K - 1; k++) {
            c += pr[k];
            if (u < c) break;
        }
        out[i] = (int32_t)k;
    }
    mb_lua_pushtensor(L, o, NULL);
    return 1;
}

/* gaussian_classes(counts, d, sep, seed) -> X float32 [n, d], y int32 [n] (runtime/synthetic.h).
   Used by `moonbert bench logreg`. */
static int l_gaussian_classes(lua_State *L) {
    lua_settop(L, 4);
    mb_tensor *c = push_contiguous(L, 1, MB_INT32);
    int64_t K = mb_tensor_numel(c);
    lua_Integer d = luaL_checkinteger(L, 2);
    double sep = luaL_checknumber(L, 3);
    lua_Integer seed = luaL_optinteger(L, 4, 0);
    if (K < 1 || d < 1) luaL_argerror(L, 2, "at least one class and one feature expected");
    int64_t n = 0;
    for (int64_t k = 0; k < K; k++) {
        if (mb_tensor_i32(c)[k] < 0) luaL_argerror(L, 1, "class counts must be >= 0");
        n += mb_tensor_i32(c)[k];
    }
    int64_t xs[2] = {n, d}, ys[1] = {n};
    mb_error err;
    mb_tensor *X = mb_tensor_empty(MB_FLOAT32, 2, xs, &err);
    if (!X) return mb_lua_raise(L, &err);
    mb_lua_pushtensor(L, X, NULL);
    mb_tensor *Y = mb_tensor_empty(MB_INT32, 1, ys, &err);
    if (!Y) return mb_lua_raise(L, &err);
    mb_lua_pushtensor(L, Y, NULL);
    if (mb_gaussian_classes(mb_tensor_i32(c), K, d, sep, (uint64_t)seed, mb_tensor_f32(X), mb_tensor_i32(Y), &err) != MB_OK)
        return mb_lua_raise(L, &err);
    return 2;
}

MB_LUA_MODULE(learners) {
    static const luaL_Reg csr_methods[] = {
        {"shape", csr_shape}, {"nnz", csr_nnz}, {"nbytes", csr_nbytes}, {"to_dense", csr_to_dense},
        {"rows", csr_rows}, {"column_counts", csr_column_counts}, {"scale_columns", csr_scale_columns},
        {"keep_columns", csr_keep_columns}, {"row", csr_row}, {"free", csr_close}, {NULL, NULL}};
    static const luaL_Reg csr_meta[] = {
        {"__gc", csr_close}, {"__close", csr_close}, {"__tostring", csr_tostring}, {NULL, NULL}};
    static const luaL_Reg lr_methods[] = {{"predict_proba", logreg_predict_proba}, {"predict", logreg_predict},
                                          {"objective", logreg_objective}, {"info", logreg_info},
                                          {"free", logreg_close}, {NULL, NULL}};
    static const luaL_Reg lr_meta[] = {{"__gc", logreg_close}, {"__close", logreg_close}, {NULL, NULL}};
    mb_lua_newclass(L, CSR_MT, csr_methods, csr_meta);
    mb_lua_newclass(L, LOGREG_MT, lr_methods, lr_meta);
    static const luaL_Reg funcs[] = {{"csr_from_docs", l_csr_from_docs}, {"csr", l_csr},
                                     {"logreg_fit", l_logreg_fit}, {"column_stats", l_column_stats},
                                     {"affine_columns", l_affine_columns}, {"sample_classes", l_sample_classes},
                                     {"gaussian_classes", l_gaussian_classes},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
