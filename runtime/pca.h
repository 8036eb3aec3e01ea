/* pca.h: principal component analysis of float32 rows, and the dense
 * symmetric eigensolver it rests on.
 *
 * PCA centres X [N,D] and takes the top k eigenvectors of the smaller of the
 * covariance (D x D) and the Gram matrix (N x N) with LAPACK dsyevr from
 * OpenBLAS: exact, O(N D min(N,D)) for the product plus O(min(N,D)^3) for
 * the eigenproblem, so it needs min(N, D) <= MB_PCA_MAX_DENSE (an error says
 * so otherwise). Scores match scikit-learn's PCA(n_components=k).fit_transform
 * up to the sign of each component; the sign here is fixed so that each
 * component's largest loading (by absolute value) is positive.
 */
#ifndef MB_PCA_H
#define MB_PCA_H

#include <stdint.h>

#include "error.h"

#define MB_PCA_MAX_DENSE 8192

/* scores [N,k] (required); components [k,D] and explained_variance [k]
 * (variance of each score, ddof 1) may be NULL. Needs 1 <= k <= min(N, D). */
mb_status mb_pca(const float *X, int64_t N, int64_t D, int k, float *scores, float *components,
                 float *explained_variance, mb_error *err);

/* The k largest eigenvalues (descending, w[k]) and eigenvectors (columns of
 * Z [n,k], row-major) of the symmetric matrix A [n,n] (row-major, doubles;
 * destroyed). */
mb_status mb_symmetric_eigen_top(double *A, int n, int k, double *w, double *Z, mb_error *err);

#endif
