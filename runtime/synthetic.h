/* synthetic.h: data with known structure for tests and benchmarks, seeded
 * (runtime/rng.h): the same seed gives the same numbers on every machine.
 */
#ifndef MB_SYNTHETIC_H
#define MB_SYNTHETIC_H

#include <stdint.h>

#include "error.h"

/* scikit-learn make_blobs-like: n_clusters centres drawn from
   N(0, center_scale^2 I) in D dimensions, row i in cluster i mod n_clusters
   (labels [N], 0-based) with N(0, cluster_std^2 I) noise. X [N,D]. */
mb_status mb_make_blobs(int64_t N, int64_t D, int n_clusters, double center_scale, double cluster_std,
                        uint64_t seed, float *X, int32_t *labels, mb_error *err);

/* Gaussian classes, the synthetic "CLS features" of ../shared/peer/bench_sklearn.py
   (same recipe, this RNG): counts[k] rows of class k (K classes, n rows in all),
   class means N(0, sep^2), per-feature scale lognormal(0, 0.3), a shared offset
   N(0, 0.5^2); x = offset + (mean_y + N(0, 1)) * scale; rows shuffled. X [n,d], y [n]. */
mb_status mb_gaussian_classes(const int32_t *counts, int64_t K, int64_t d, double sep, uint64_t seed, float *X,
                              int32_t *y, mb_error *err);

#endif
