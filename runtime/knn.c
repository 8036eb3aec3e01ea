/* knn.c: exact nearest neighbours by blocked sgemm (see knn.h). */
#include "knn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

mb_status mb_metric_from_name(const char *name, mb_metric *out, mb_error *err) {
    if (name && strcmp(name, "cosine") == 0) *out = MB_METRIC_COSINE;
    else if (name && strcmp(name, "euclidean") == 0) *out = MB_METRIC_EUCLIDEAN;
    else return mb_fail(err, MB_ERR_ARG, "metric must be 'cosine' or 'euclidean', got '%s'", name ? name : "(null)");
    return MB_OK;
}

const char *mb_metric_name(mb_metric metric) {
    return metric == MB_METRIC_COSINE ? "cosine" : "euclidean";
}

mb_status mb_check_finite(const float *X, int64_t N, int64_t D, mb_error *err) {
    int64_t n = N * D;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(X[i]))
            return mb_fail(err, MB_ERR_NUMERIC, "input has a non-finite value (%g) at row %lld, column %lld (0-based)",
                           (double)X[i], (long long)(i / D), (long long)(i % D));
    return MB_OK;
}

mb_status mb_distance_ctx_init(mb_distance_ctx *ctx, const float *X, int64_t N, int64_t D,
                               mb_metric metric, mb_error *err) {
    memset(ctx, 0, sizeof *ctx);
    ctx->N = N;
    ctx->D = D;
    ctx->metric = metric;
    ctx->X = X;
    if (metric == MB_METRIC_COSINE) {
        ctx->owned = malloc((size_t)N * (size_t)D * sizeof(float));
        if (!ctx->owned) return mb_fail(err, MB_ERR_NOMEM, "knn: cannot allocate %lld x %lld floats", (long long)N, (long long)D);
#pragma omp parallel for num_threads(mb_threads()) if (N * D > MB_PAR_MIN)
        for (int64_t i = 0; i < N; i++) {
            const float *x = X + i * D;
            float *y = ctx->owned + i * D;
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += (double)x[d] * x[d];
            /* A zero row stays zero: its dot product with anything is 0, distance 1. */
            float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
            for (int64_t d = 0; d < D; d++) y[d] = x[d] * inv;
        }
        ctx->X = ctx->owned;
    } else {
        ctx->sqnorm = malloc((size_t)N * sizeof(float));
        if (!ctx->sqnorm) return mb_fail(err, MB_ERR_NOMEM, "knn: cannot allocate %lld floats", (long long)N);
#pragma omp parallel for num_threads(mb_threads()) if (N * D > MB_PAR_MIN)
        for (int64_t i = 0; i < N; i++) {
            const float *x = X + i * D;
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += (double)x[d] * x[d];
            ctx->sqnorm[i] = (float)s;
        }
    }
    return MB_OK;
}

void mb_distance_ctx_free(mb_distance_ctx *ctx) {
    if (!ctx) return;
    free(ctx->owned);
    free(ctx->sqnorm);
    ctx->owned = NULL;
    ctx->sqnorm = NULL;
}

/* out [rows, cols]: distances from rows row0.. to rows col0.. (ld = cols). */
static void distance_tile(const mb_distance_ctx *ctx, int64_t row0, int64_t rows, int64_t col0, int64_t cols, float *out) {
    const int64_t D = ctx->D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)cols, (int)D, 1.0f,
                ctx->X + row0 * D, (int)D, ctx->X + col0 * D, (int)D, 0.0f, out, (int)cols);
    if (ctx->metric == MB_METRIC_COSINE) {
#pragma omp parallel for num_threads(mb_threads()) if (rows * cols > MB_PAR_MIN)
        for (int64_t r = 0; r < rows; r++) {
            float *o = out + r * cols;
            for (int64_t j = 0; j < cols; j++) {
                float d = 1.0f - o[j];
                o[j] = d > 0.0f ? d : 0.0f; /* rounding can make near-duplicates negative */
            }
        }
    } else {
        const float *sq = ctx->sqnorm;
#pragma omp parallel for num_threads(mb_threads()) if (rows * cols > MB_PAR_MIN)
        for (int64_t r = 0; r < rows; r++) {
            float *o = out + r * cols;
            float si = sq[row0 + r];
            for (int64_t j = 0; j < cols; j++) {
                float d2 = si + sq[col0 + j] - 2.0f * o[j];
                o[j] = d2 > 0.0f ? sqrtf(d2) : 0.0f;
            }
        }
    }
}

void mb_distance_block(const mb_distance_ctx *ctx, int64_t row0, int64_t rows, float *out) {
    distance_tile(ctx, row0, rows, 0, ctx->N, out);
}

/* (d, i) ordering: by distance, ties by the smaller index. */
static inline int before(float da, int32_t ia, float db, int32_t ib) {
    return da < db || (da == db && ia < ib);
}

/* Max-heap of m (distance, index) pairs: the root is the worst kept neighbour. */
static void heap_sift_down(float *hd, int32_t *hi, int m, int pos) {
    for (;;) {
        int l = 2 * pos + 1, r = l + 1, top = pos;
        if (l < m && before(hd[top], hi[top], hd[l], hi[l])) top = l;
        if (r < m && before(hd[top], hi[top], hd[r], hi[r])) top = r;
        if (top == pos) return;
        float td = hd[pos]; hd[pos] = hd[top]; hd[top] = td;
        int32_t ti = hi[pos]; hi[pos] = hi[top]; hi[top] = ti;
        pos = top;
    }
}

static void heap_sift_up(float *hd, int32_t *hi, int pos) {
    while (pos > 0) {
        int parent = (pos - 1) / 2;
        if (!before(hd[parent], hi[parent], hd[pos], hi[pos])) return;
        float td = hd[pos]; hd[pos] = hd[parent]; hd[parent] = td;
        int32_t ti = hi[pos]; hi[pos] = hi[parent]; hi[parent] = ti;
        pos = parent;
    }
}

/* Offer (d, j) to a row's heap of at most m entries (size entries so far). */
static inline void heap_offer(float *hd, int32_t *hi, int *size, int m, float d, int32_t j) {
    if (*size < m) {
        hd[*size] = d;
        hi[*size] = j;
        heap_sift_up(hd, hi, *size);
        (*size)++;
    } else if (before(d, j, hd[0], hi[0])) {
        hd[0] = d;
        hi[0] = j;
        heap_sift_down(hd, hi, m, 0);
    }
}

/* Heap sort in place: ascending (distance, index). */
static void heap_sort(float *hd, int32_t *hi, int size) {
    for (int end = size - 1; end > 0; end--) {
        float td = hd[0]; hd[0] = hd[end]; hd[end] = td;
        int32_t ti = hi[0]; hi[0] = hi[end]; hi[end] = ti;
        heap_sift_down(hd, hi, end, 0);
    }
}

/* Exact kNN over tiles (I, J) with J >= I only: the distance matrix is
   symmetric, so each tile feeds the heaps of its rows and, transposed, those
   of its columns, halving the products. The kept set of a heap is the m
   smallest under a strict total order, so the result does not depend on
   the order of the offers (or on the thread count, up to sgemm rounding). */
mb_status mb_knn_exact(const float *X, int64_t N, int64_t D, int k, mb_metric metric,
                       int32_t *indices, float *distances, mb_error *err) {
    if (N < 1 || D < 1) return mb_fail(err, MB_ERR_SHAPE, "knn: need at least one row and one column, got [%lld,%lld]", (long long)N, (long long)D);
    if (N > INT32_MAX) return mb_fail(err, MB_ERR_SHAPE, "knn: at most %d rows", INT32_MAX);
    if (k < 1 || k > N) return mb_fail(err, MB_ERR_ARG, "knn: k (%d) must be between 1 and the number of rows (%lld)", k, (long long)N);
    mb_threads_init();
    const int m = k - 1;
    for (int64_t i = 0; i < N; i++) {
        indices[i * k] = (int32_t)i;
        distances[i * k] = 0.0f;
    }
    if (m == 0) return MB_OK;
    mb_distance_ctx ctx;
    if (mb_distance_ctx_init(&ctx, X, N, D, metric, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    const int64_t B = N < 2048 ? N : 2048;
    float *tile = malloc((size_t)B * (size_t)B * sizeof(float));
    float *tileT = malloc((size_t)B * (size_t)B * sizeof(float));
    int *size = calloc((size_t)N, sizeof(int));
    if (!tile || !tileT || !size) {
        free(tile); free(tileT); free(size);
        mb_distance_ctx_free(&ctx);
        return mb_fail(err, MB_ERR_NOMEM, "knn: cannot allocate %lld x %lld distance tiles", (long long)B, (long long)B);
    }
    for (int64_t I0 = 0; I0 < N; I0 += B) {
        int64_t nI = N - I0 < B ? N - I0 : B;
        for (int64_t J0 = I0; J0 < N; J0 += B) {
            int64_t nJ = N - J0 < B ? N - J0 : B;
            distance_tile(&ctx, I0, nI, J0, nJ, tile);
#pragma omp parallel for num_threads(mb_threads()) schedule(dynamic, 16) if (nI * nJ > MB_PAR_MIN)
            for (int64_t r = 0; r < nI; r++) {
                int64_t i = I0 + r;
                float *hd = distances + i * k + 1;
                int32_t *hi = indices + i * k + 1;
                const float *row = tile + r * nJ;
                for (int64_t c = 0; c < nJ; c++)
                    if (J0 + c != i) heap_offer(hd, hi, &size[i], m, row[c], (int32_t)(J0 + c));
            }
            if (J0 == I0) continue;
#pragma omp parallel for num_threads(mb_threads()) if (nI * nJ > MB_PAR_MIN)
            for (int64_t c = 0; c < nJ; c++)
                for (int64_t r = 0; r < nI; r++) tileT[c * nI + r] = tile[r * nJ + c];
#pragma omp parallel for num_threads(mb_threads()) schedule(dynamic, 16) if (nI * nJ > MB_PAR_MIN)
            for (int64_t c = 0; c < nJ; c++) {
                int64_t j = J0 + c;
                float *hd = distances + j * k + 1;
                int32_t *hi = indices + j * k + 1;
                const float *col = tileT + c * nI;
                for (int64_t r = 0; r < nI; r++) heap_offer(hd, hi, &size[j], m, col[r], (int32_t)(I0 + r));
            }
        }
    }
#pragma omp parallel for num_threads(mb_threads()) if (N * k > MB_PAR_MIN)
    for (int64_t i = 0; i < N; i++) heap_sort(distances + i * k + 1, indices + i * k + 1, size[i]);
    free(tile); free(tileT); free(size);
    mb_distance_ctx_free(&ctx);
    return MB_OK;
}
