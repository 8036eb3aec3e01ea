/* bf16.c: bfloat16 matrix products on the CPU (see bf16.h).
 *
 * Reading order: conversion; scratch buffers; the emulated kernel; the
 * oneDNN kernel (a primitive cache keyed by shape); kernel choice;
 * weight table and the linear layer products.
 */
#include "bf16.h"

#include <cblas.h>
#include <cpuid.h>
#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

/* ---- conversion ------------------------------------------------------------ */

void mb_f32_to_bf16_n(uint16_t *dst, const float *src, long n) {
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
    for (long i = 0; i < n; i++) dst[i] = mb_f32_to_bf16(src[i]);
}

/* ---- scratch ----------------------------------------------------------------- */

typedef struct scratch {
    void *p;
    size_t cap;
} scratch;

enum { S_IN, S_DOUT, S_W, S_EMU_A, S_EMU_B, S_COUNT };
static scratch g_scratch[S_COUNT];

/* At least bytes in scratch slot i (grown, never shrunk); NULL when out of memory. */
static void *grow(int i, size_t bytes) {
    scratch *s = &g_scratch[i];
    if (bytes > s->cap) {
        void *p = realloc(s->p, bytes);
        if (!p) return NULL;
        s->p = p;
        s->cap = bytes;
    }
    return s->p;
}

/* ---- the emulated kernel --------------------------------------------------- */

/* dst[r,c] = float(src[r,c]) for an r x c matrix with leading dimension ld. */
static void widen(float *dst, const uint16_t *src, int r, int c, int ld) {
    long n = (long)r * c;
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) dst[(long)i * c + j] = mb_bf16_bits_to_f32(src[(long)i * ld + j]);
}

static mb_status gemm_emulated(int ta, int tb, int m, int n, int k, float alpha, const uint16_t *A, int lda,
                               const uint16_t *B, int ldb, float beta, float *C, int ldc, mb_error *err) {
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    float *a = grow(S_EMU_A, sizeof(float) * (size_t)ar * ac), *b = grow(S_EMU_B, sizeof(float) * (size_t)br * bc);
    if (!a || !b) return mb_fail(err, MB_ERR_NOMEM, "bf16 product: out of memory for %d x %d x %d", m, n, k);
    widen(a, A, ar, ac, lda);
    widen(b, B, br, bc, ldb);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, ac,
                b, bc, beta, C, ldc);
    return MB_OK;
}

/* ---- the oneDNN kernel ----------------------------------------------------- */

/* One matmul primitive per shape (the products of a model take a few dozen
   shapes; rows vary with the batch's token count): created on first use. */
typedef struct prim_key {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
} prim_key;
typedef struct prim_entry {
    prim_key key;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} prim_entry;

#define PRIM_CACHE 512
static prim_entry g_prims[PRIM_CACHE];
static int g_nprims;
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;

static void prims_clear(void) {
    for (int i = 0; i < g_nprims; i++) {
        dnnl_primitive_destroy(g_prims[i].prim);
        dnnl_memory_destroy(g_prims[i].a);
        dnnl_memory_destroy(g_prims[i].b);
        dnnl_memory_destroy(g_prims[i].c);
    }
    g_nprims = 0;
}

/* A [rows, cols] bf16 or fp32 matrix; transposed: stored [cols, rows]. */
static dnnl_status_t matrix_md(dnnl_memory_desc_t *md, int rows, int cols, int ld, int trans, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols}, strides = {trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

static dnnl_status_t prim_create(const prim_key *key, prim_entry *e) {
    dnnl_status_t s;
    if (!g_engine) {
        if ((s = dnnl_engine_create(&g_engine, dnnl_cpu, 0)) != dnnl_success) return s;
        if ((s = dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags)) != dnnl_success) return s;
    }
    dnnl_memory_desc_t a, b, c;
    if ((s = matrix_md(&a, key->m, key->k, key->lda, key->ta, dnnl_bf16)) != dnnl_success) return s;
    if ((s = matrix_md(&b, key->k, key->n, key->ldb, key->tb, dnnl_bf16)) != dnnl_success) return s;
    if ((s = matrix_md(&c, key->m, key->n, key->ldc, 0, dnnl_f32)) != dnnl_success) return s;
    dnnl_matmul_desc_t desc;
    if ((s = dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c)) != dnnl_success) return s;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if ((s = dnnl_primitive_attr_create(&attr)) != dnnl_success) return s;
    if (key->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &key->alpha);
    if (s == dnnl_success && key->beta != 0.0f) {
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, key->beta);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &desc, attr, g_engine, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&e->prim, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return s;
    e->key = *key;
    e->a = e->b = e->c = NULL;
    if ((s = dnnl_memory_create(&e->a, &a, g_engine, DNNL_MEMORY_NONE)) == dnnl_success &&
        (s = dnnl_memory_create(&e->b, &b, g_engine, DNNL_MEMORY_NONE)) == dnnl_success &&
        (s = dnnl_memory_create(&e->c, &c, g_engine, DNNL_MEMORY_NONE)) == dnnl_success)
        return dnnl_success;
    dnnl_primitive_destroy(e->prim);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    return s;
}

static mb_status gemm_onednn(int ta, int tb, int m, int n, int k, float alpha, const uint16_t *A, int lda,
                             const uint16_t *B, int ldb, float beta, float *C, int ldc, mb_error *err) {
    prim_key key = {ta, tb, m, n, k, lda, ldb, ldc, alpha, beta};
    prim_entry *e = NULL;
    for (int i = 0; i < g_nprims && !e; i++)
        if (!memcmp(&g_prims[i].key, &key, sizeof key)) e = &g_prims[i];
    if (!e) {
        if (g_nprims == PRIM_CACHE) prims_clear();
        dnnl_status_t s = prim_create(&key, &g_prims[g_nprims]);
        if (s != dnnl_success)
            return mb_fail(err, MB_ERR_UNSUPPORTED, "oneDNN has no bf16 matmul for %d x %d x %d here (status %d)", m,
                           n, k, (int)s);
        e = &g_prims[g_nprims++];
    }
    dnnl_memory_set_data_handle(e->a, (void *)A);
    dnnl_memory_set_data_handle(e->b, (void *)B);
    dnnl_memory_set_data_handle(e->c, C);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    if (dnnl_primitive_execute(e->prim, g_stream, 3, args) != dnnl_success || dnnl_stream_wait(g_stream) != dnnl_success)
        return mb_fail(err, MB_ERR_UNSUPPORTED, "oneDNN bf16 matmul %d x %d x %d failed", m, n, k);
    return MB_OK;
}

/* ---- kernel choice ------------------------------------------------------------ */

int mb_bf16_cpu_has(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1u; /* CPUID.(EAX=7,ECX=1):EAX[5] AVX512_BF16 */
}

const char *mb_bf16_kernel_name(mb_bf16_kernel k) {
    return k == MB_BF16_ONEDNN ? "onednn" : k == MB_BF16_EMULATED ? "emulated" : "none";
}

/* oneDNN against the emulated kernel on small products of every transposition. */
static int onednn_selfcheck(const char **why) {
    enum { M = 37, N = 29, K = 53 };
    uint16_t A[M * K], B[K * N];
    float c1[M * N], c2[M * N];
    for (int i = 0; i < M * K; i++) A[i] = mb_f32_to_bf16(sinf(0.37f * i));
    for (int i = 0; i < K * N; i++) B[i] = mb_f32_to_bf16(cosf(0.11f * i));
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        for (int i = 0; i < M * N; i++) c1[i] = c2[i] = 0.5f;
        if (gemm_onednn(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 1.0f, c1, N, NULL) != MB_OK) {
            *why = "oneDNN has no bf16 matmul for this CPU";
            return 0;
        }
        gemm_emulated(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 1.0f, c2, N, NULL);
        for (int i = 0; i < M * N; i++)
            if (fabsf(c1[i] - c2[i]) > 1e-4f * (1.0f + fabsf(c2[i]))) {
                *why = "oneDNN's bf16 matmul disagrees with the reference product on this CPU";
                return 0;
            }
    }
    return 1;
}

static mb_bf16_kernel g_kernel = (mb_bf16_kernel)-1;
static const char *g_why = "";

/* env: MOONBERT_BF16's value or NULL ("auto"). */
static void choose(const char *env) {
    if (env && !strcmp(env, "emulate")) {
        g_kernel = MB_BF16_EMULATED;
    } else if (env && (!strcmp(env, "off") || !strcmp(env, "none"))) {
        g_kernel = MB_BF16_NONE;
        g_why = "MOONBERT_BF16=off";
    } else if (!mb_bf16_cpu_has()) {
        g_kernel = MB_BF16_NONE;
        g_why = "this CPU has no AVX-512 BF16";
    } else {
        g_kernel = onednn_selfcheck(&g_why) ? MB_BF16_ONEDNN : MB_BF16_NONE;
    }
}

mb_status mb_bf16_kernel_set(const char *name, mb_error *err) {
    if (!name || (strcmp(name, "auto") && strcmp(name, "emulate") && strcmp(name, "off")))
        return mb_fail(err, MB_ERR_ARG, "bf16 kernel 'auto', 'emulate' or 'off' expected, got '%s'",
                       name ? name : "(null)");
    choose(strcmp(name, "auto") ? name : NULL);
    return MB_OK;
}

mb_bf16_kernel mb_bf16_kernel_get(const char **why) {
    if ((int)g_kernel < 0) choose(getenv("MOONBERT_BF16"));
    if (why) *why = g_kernel == MB_BF16_NONE ? g_why : "";
    return g_kernel;
}

mb_status mb_gemm_bf16_with(mb_bf16_kernel kernel, int ta, int tb, int m, int n, int k, float alpha,
                            const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C, int ldc,
                            mb_error *err) {
    if (m <= 0 || n <= 0) return MB_OK;
    if (k <= 0) { /* C = beta C, as sgemm */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return MB_OK;
    }
    if (kernel == MB_BF16_EMULATED) return gemm_emulated(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, err);
    if (kernel == MB_BF16_ONEDNN) {
        if (!mb_bf16_cpu_has()) return mb_fail(err, MB_ERR_UNSUPPORTED, "oneDNN bf16: this CPU has no AVX-512 BF16");
        return gemm_onednn(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, err);
    }
    return mb_fail(err, MB_ERR_UNSUPPORTED, "no bf16 kernel named %d", (int)kernel);
}

void mb_gemm_bf16(int ta, int tb, int m, int n, int k, float alpha, const uint16_t *A, int lda, const uint16_t *B,
                  int ldb, float beta, float *C, int ldc) {
    mb_bf16_kernel kern = mb_bf16_kernel_get(NULL);
    if (kern != MB_BF16_ONEDNN ||
        mb_gemm_bf16_with(kern, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, NULL) != MB_OK)
        mb_gemm_bf16_with(MB_BF16_EMULATED, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

/* ---- weights and the linear layer ------------------------------------------ */

mb_status mb_bf16_weights_sync(mb_bf16_weights *w, const float *base, size_t n, mb_error *err) {
    if (w->copy && w->base == base && w->n == n) {
        if (w->stale && w->stale_from < n) mb_f32_to_bf16_n(w->copy + w->stale_from, base + w->stale_from,
                                                            (long)(n - w->stale_from));
        w->stale = 0;
        w->stale_from = 0;
        return MB_OK;
    }
    if (n > w->cap) {
        uint16_t *p = realloc(w->copy, n * sizeof(uint16_t));
        if (!p) return mb_fail(err, MB_ERR_NOMEM, "bf16 weights: out of memory (%zu values)", n);
        w->copy = p;
        w->cap = n;
    }
    mb_f32_to_bf16_n(w->copy, base, (long)n);
    w->base = base;
    w->n = n;
    w->stale = 0;
    w->stale_from = 0;
    return MB_OK;
}

void mb_bf16_weights_free(mb_bf16_weights *w) {
    free(w->copy);
    memset(w, 0, sizeof *w);
}

static const mb_bf16_weights *g_active;

void mb_bf16_begin(const mb_bf16_weights *w) { g_active = w; }
void mb_bf16_end(void) { g_active = NULL; }
int mb_bf16_active(void) { return g_active != NULL; }

/* The bf16 copy of w[rows, cols] from the active table, else converted into scratch. */
static const uint16_t *weight16(const float *w, long count) {
    const mb_bf16_weights *t = g_active;
    if (t && w >= t->base && w + count <= t->base + t->n) return t->copy + (w - t->base);
    uint16_t *s = grow(S_W, sizeof(uint16_t) * (size_t)count);
    if (s) mb_f32_to_bf16_n(s, w, count);
    return s;
}

static const uint16_t *convert(int slot, const float *x, long count) {
    uint16_t *s = grow(slot, sizeof(uint16_t) * (size_t)count);
    if (s) mb_f32_to_bf16_n(s, x, count);
    return s;
}

void mb_bf16_linear_forward(float *out, const float *inp, const float *w, int N, int IC, int OC, float beta) {
    const uint16_t *x = convert(S_IN, inp, (long)N * IC), *w16 = weight16(w, (long)OC * IC);
    if (!x || !w16) { /* out of memory for the copies: the fp32 product instead */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, beta, out, OC);
        return;
    }
    mb_gemm_bf16(0, 1, N, OC, IC, 1.0f, x, IC, w16, IC, beta, out, OC);
}

void mb_bf16_linear_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                             int IC, int OC, float beta_dinp) {
    const uint16_t *d = convert(S_DOUT, dout, (long)N * OC);
    if (dinp) {
        const uint16_t *w16 = weight16(w, (long)OC * IC);
        if (d && w16) mb_gemm_bf16(0, 0, N, IC, OC, 1.0f, d, OC, w16, IC, beta_dinp, dinp, IC);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC, beta_dinp, dinp, IC);
    }
    if (dw) {
        const uint16_t *x = convert(S_IN, inp, (long)N * IC);
        if (d && x) mb_gemm_bf16(1, 0, OC, IC, N, 1.0f, d, OC, x, IC, 1.0f, dw, IC);
        else cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    }
}

void mb_bf16_release(void) {
    for (int i = 0; i < S_COUNT; i++) {
        free(g_scratch[i].p);
        g_scratch[i].p = NULL;
        g_scratch[i].cap = 0;
    }
    prims_clear();
    if (g_stream) dnnl_stream_destroy(g_stream);
    if (g_engine) dnnl_engine_destroy(g_engine);
    g_stream = NULL;
    g_engine = NULL;
}
