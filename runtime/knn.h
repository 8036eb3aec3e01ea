/* knn.h: exact k nearest neighbours and pairwise distances on float32 rows.
 *
 * Brute force through cblas_sgemm, a block of query rows at a time (the
 * block's distances to every row, then a bounded heap per row), threaded by
 * OpenBLAS for the products and by OpenMP for the selection. Exact: the cost
 * is N^2 D multiply-adds (16,000 x 768: 0.4 TFLOP, a few seconds on two
 * cores), fine up to a few tens of thousands of rows; approximate search
 * (NN-descent) is left out on purpose.
 *
 * Metrics: cosine distance 1 - cos(x, y) (rows are normalised first; a zero
 * row is at distance 1 from every other row) and euclidean distance. Ties are
 * broken by the smaller index, so results are deterministic.
 */
#ifndef MB_KNN_H
#define MB_KNN_H

#include <stdint.h>

#include "error.h"

typedef enum mb_metric { MB_METRIC_EUCLIDEAN = 0, MB_METRIC_COSINE = 1 } mb_metric;

/* "euclidean" / "cosine" -> metric; MB_ERR_ARG for anything else. */
mb_status mb_metric_from_name(const char *name, mb_metric *out, mb_error *err);
const char *mb_metric_name(mb_metric metric);

/* Fails with MB_ERR_NUMERIC naming the first NaN/Inf element of X [N,D]. */
mb_status mb_check_finite(const float *X, int64_t N, int64_t D, mb_error *err);

/* The k nearest neighbours of every row of X [N,D], the row itself first
 * (index i, distance 0) as umap-learn counts it, then the k-1 nearest other
 * rows by increasing distance. indices [N,k] (0-based), distances [N,k].
 * Needs 1 <= k <= N. */
mb_status mb_knn_exact(const float *X, int64_t N, int64_t D, int k, mb_metric metric,
                       int32_t *indices, float *distances, mb_error *err);

/* A prepared data set for repeated distance blocks: rows normalised (cosine)
 * or with their squared norms (euclidean). */
typedef struct mb_distance_ctx {
    const float *X; /* [N,D], the rows used in the products (may be owned) */
    float *owned;   /* normalised copy for cosine, else NULL */
    float *sqnorm;  /* [N] squared norms for euclidean, else NULL */
    int64_t N, D;
    mb_metric metric;
} mb_distance_ctx;

mb_status mb_distance_ctx_init(mb_distance_ctx *ctx, const float *X, int64_t N, int64_t D,
                               mb_metric metric, mb_error *err);
void mb_distance_ctx_free(mb_distance_ctx *ctx);
/* out [rows, N]: distances from rows row0 .. row0+rows-1 to every row. */
void mb_distance_block(const mb_distance_ctx *ctx, int64_t row0, int64_t rows, float *out);

#endif
