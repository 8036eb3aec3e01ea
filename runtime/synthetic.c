/* synthetic.c: see synthetic.h. */
#include "synthetic.h"

#include <math.h>
#include <stdlib.h>

#include "rng.h"

mb_status mb_make_blobs(int64_t N, int64_t D, int n_clusters, double center_scale, double cluster_std,
                        uint64_t seed, float *X, int32_t *labels, mb_error *err) {
    if (N < 1 || D < 1) return mb_fail(err, MB_ERR_ARG, "make_blobs: need n >= 1 and d >= 1, got %lld, %lld", (long long)N, (long long)D);
    if (n_clusters < 1 || n_clusters > N) return mb_fail(err, MB_ERR_ARG, "make_blobs: centers (%d) must be between 1 and n (%lld)", n_clusters, (long long)N);
    if (!(center_scale >= 0) || !(cluster_std >= 0)) return mb_fail(err, MB_ERR_ARG, "make_blobs: center_box and cluster_std must be >= 0");
    double *centres = malloc((size_t)n_clusters * (size_t)D * sizeof(double));
    if (!centres) return mb_fail(err, MB_ERR_NOMEM, "make_blobs: out of memory");
    mb_rng rng;
    mb_rng_seed(&rng, seed);
    for (int64_t i = 0; i < (int64_t)n_clusters * D; i++) centres[i] = center_scale * mb_rng_normal(&rng);
    for (int64_t i = 0; i < N; i++) {
        int c = (int)(i % n_clusters);
        if (labels) labels[i] = c;
        for (int64_t d = 0; d < D; d++) X[i * D + d] = (float)(centres[c * D + d] + cluster_std * mb_rng_normal(&rng));
    }
    free(centres);
    return MB_OK;
}

mb_status mb_gaussian_classes(const int32_t *counts, int64_t K, int64_t d, double sep, uint64_t seed, float *X,
                              int32_t *y, mb_error *err) {
    if (K < 1 || d < 1) return mb_fail(err, MB_ERR_ARG, "at least one class and one feature expected");
    int64_t n = 0;
    for (int64_t k = 0; k < K; k++) {
        if (counts[k] < 0) return mb_fail(err, MB_ERR_ARG, "class counts must be >= 0");
        n += counts[k];
    }
    double *means = malloc(sizeof(double) * (size_t)(K * d + 2 * d));
    int64_t *order = malloc(sizeof(int64_t) * (size_t)(n + 1));
    int64_t *label = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!means || !order || !label) {
        free(means); free(order); free(label);
        return mb_fail(err, MB_ERR_NOMEM, "gaussian_classes: out of memory");
    }
    mb_rng rng;
    mb_rng_seed(&rng, seed);
    double *scale = means + K * d, *offset = scale + d;
    for (int64_t i = 0; i < K * d; i++) means[i] = sep * mb_rng_normal(&rng);
    for (int64_t j = 0; j < d; j++) scale[j] = exp(0.3 * mb_rng_normal(&rng));
    for (int64_t j = 0; j < d; j++) offset[j] = 0.5 * mb_rng_normal(&rng);
    int64_t o = 0;
    for (int64_t k = 0; k < K; k++)
        for (int32_t i = 0; i < counts[k]; i++) label[o++] = k;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    mb_rng_shuffle_i64(&rng, order, n);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = label[order[i]];
        y[i] = (int32_t)k;
        for (int64_t j = 0; j < d; j++)
            X[i * d + j] = (float)(offset[j] + (means[k * d + j] + mb_rng_normal(&rng)) * scale[j]);
    }
    free(means); free(order); free(label);
    return MB_OK;
}
