/* umap.h: UMAP dimension reduction (McInnes, Healy & Melville, 2018) with
 * umap-learn's defaults, and the trustworthiness score that judges it.
 *
 * The steps follow umap-learn 0.5 (umap_.py):
 *   1. exact k nearest neighbours (knn.h; the point itself counts as one),
 *   2. smooth_knn_dist: per point rho (distance to the nearest neighbour) and
 *      sigma (binary search so that sum_j exp(-(d_ij - rho_i)/sigma_i) = log2 k),
 *   3. the fuzzy union A + A^T - A o A^T of the membership strengths,
 *   4. a, b of the curve 1 / (1 + a d^(2b)) fitted to min_dist and spread,
 *   5. initialisation: spectral (eigenvectors of the normalised graph
 *      Laplacian by Lanczos, per connected component, placed by a
 *      meta-embedding of the components as umap-learn does), PCA or random,
 *   6. SGD of the cross entropy with negative sampling, gradient clipping at
 *      4 and a linearly decaying learning rate.
 * Limits: exact kNN (quadratic in N); the layout runs on one thread, so it is
 * deterministic for a seed (the same seed, thread count and machine give
 * the same embedding, bit for bit; another OpenBLAS kernel, e.g. through
 * OPENBLAS_CORETYPE, may round the kNN products differently and so change
 * the graph slightly). A multi-threaded (Hogwild) layout is not offered
 * because it would give up that determinism. umap-learn's densMAP, supervised and transform() paths are
 * not implemented.
 */
#ifndef MB_UMAP_H
#define MB_UMAP_H

#include <stdint.h>

#include "error.h"
#include "knn.h"

typedef enum mb_umap_init { MB_UMAP_INIT_SPECTRAL = 0, MB_UMAP_INIT_PCA = 1, MB_UMAP_INIT_RANDOM = 2 } mb_umap_init;

typedef struct mb_umap_options {
    int n_neighbors;        /* 15; the point itself included, as in umap-learn */
    int n_components;       /* 2 */
    double min_dist;        /* 0.1 */
    double spread;          /* 1.0 */
    mb_metric metric;       /* cosine */
    int n_epochs;           /* <= 0: 500 when N <= 10000, else 200 */
    double learning_rate;   /* 1.0 */
    int negative_sample_rate; /* 5 */
    double repulsion_strength; /* 1.0 (gamma) */
    double local_connectivity; /* 1.0 */
    double set_op_mix_ratio;   /* 1.0: pure fuzzy union */
    mb_umap_init init;      /* spectral */
    uint64_t seed;          /* 42 */
    int verbose;            /* < 0: a few lines on stderr when it is a terminal and N >= 5000; 0 none; 1 always */
} mb_umap_options;

/* What a fit did, for benchmarks and reports. */
typedef struct mb_umap_info {
    double seconds_knn, seconds_graph, seconds_init, seconds_layout, seconds_total;
    double a, b;
    int n_epochs;
    int64_t n_edges;         /* nonzeros of the symmetric graph used by the layout */
    int graph_components;    /* connected components of that graph */
    mb_umap_init init_used;  /* spectral may fall back to PCA */
    double spectral_residual; /* largest ||M v - theta v|| of the spectral vectors (0 if unused) */
} mb_umap_info;

void mb_umap_default_options(mb_umap_options *opts);
const char *mb_umap_init_name(mb_umap_init init);
mb_status mb_umap_init_from_name(const char *name, mb_umap_init *out, mb_error *err);

/* Y [N, n_components] from X [N,D] row-major; info may be NULL. */
mb_status mb_umap_fit_transform(const float *X, int64_t N, int64_t D, const mb_umap_options *opts,
                                float *Y, mb_umap_info *info, mb_error *err);

/* ---- the steps, exposed for tests and for callers with their own kNN ---- */

/* a, b such that 1/(1 + a x^(2b)) fits 1 for x < min_dist and
   exp(-(x - min_dist)/spread) beyond, on 300 points in [0, 3 spread]
   (least squares by Levenberg-Marquardt, as scipy's curve_fit). */
mb_status mb_umap_find_ab(double spread, double min_dist, double *a, double *b, mb_error *err);

/* sigmas [N], rhos [N] from knn_dists [N,k] (each row ascending, column 0
   the point itself, as mb_knn_exact gives them). */
void mb_umap_smooth_knn_dist(const float *knn_dists, int64_t N, int k, double local_connectivity,
                             double *sigmas, double *rhos);

/* A symmetric sparse graph in CSR form. */
typedef struct mb_umap_graph {
    int64_t n, nnz;
    int64_t *rowptr; /* [n+1] */
    int32_t *col;    /* [nnz], ascending within a row */
    float *val;      /* [nnz] */
} mb_umap_graph;

/* The fuzzy simplicial set of a kNN graph: memberships
   exp(-(d - rho)/sigma), then mix * (A + A^T - A o A^T) + (1 - mix) A o A^T. */
mb_status mb_umap_fuzzy_graph(const int32_t *knn_idx, const float *knn_dists, int64_t N, int k,
                              double local_connectivity, double set_op_mix_ratio,
                              mb_umap_graph *out, mb_error *err);
void mb_umap_graph_free(mb_umap_graph *g);

#endif
