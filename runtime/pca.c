/* pca.c: PCA through LAPACK dsyevr on the covariance or Gram matrix (see pca.h). */
#include "pca.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

/* LAPACK (Fortran calling convention; the trailing lengths are the hidden
   string-length arguments gfortran passes). OpenBLAS exports it. */
void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a,
             const int *lda, const double *vl, const double *vu, const int *il, const int *iu,
             const double *abstol, int *m, double *w, double *z, const int *ldz, int *isuppz,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t,
             size_t, size_t);

mb_status mb_symmetric_eigen_top(double *A, int n, int k, double *w, double *Z, mb_error *err) {
    if (n < 1 || k < 1 || k > n) return mb_fail(err, MB_ERR_ARG, "eigen: need 1 <= k (%d) <= n (%d)", k, n);
    /* A is symmetric, so row-major is column-major; dsyevr returns ascending
       eigenvalues il..iu and column-major eigenvectors z [n, k]. */
    int il = n - k + 1, iu = n, m = 0, info = 0, lwork = -1, liwork = -1, iwq = 0;
    double vl = 0, vu = 0, abstol = 0, wq = 0;
    double *z = malloc((size_t)n * (size_t)k * sizeof(double));
    double *wv = malloc((size_t)n * sizeof(double));
    int *isuppz = malloc((size_t)2 * (size_t)k * sizeof(int));
    if (!z || !wv || !isuppz) {
        free(z); free(wv); free(isuppz);
        return mb_fail(err, MB_ERR_NOMEM, "eigen: cannot allocate for n=%d", n);
    }
    dsyevr_("V", "I", "U", &n, A, &n, &vl, &vu, &il, &iu, &abstol, &m, wv, z, &n, isuppz, &wq, &lwork,
            &iwq, &liwork, &info, 1, 1, 1);
    lwork = (int)wq;
    liwork = iwq;
    double *work = malloc((size_t)lwork * sizeof(double));
    int *iwork = malloc((size_t)liwork * sizeof(int));
    if (!work || !iwork) {
        free(z); free(wv); free(isuppz); free(work); free(iwork);
        return mb_fail(err, MB_ERR_NOMEM, "eigen: cannot allocate LAPACK workspace");
    }
    dsyevr_("V", "I", "U", &n, A, &n, &vl, &vu, &il, &iu, &abstol, &m, wv, z, &n, isuppz, work, &lwork,
            iwork, &liwork, &info, 1, 1, 1);
    mb_status st = MB_OK;
    if (info != 0 || m != k) {
        st = mb_fail(err, MB_ERR_NUMERIC, "eigen: LAPACK dsyevr failed (info %d, %d of %d eigenvalues)", info, m, k);
    } else {
        for (int c = 0; c < k; c++) { /* descending order */
            int src = k - 1 - c;
            w[c] = wv[src];
            for (int i = 0; i < n; i++) Z[(size_t)i * k + c] = z[(size_t)src * n + i];
        }
    }
    free(z); free(wv); free(isuppz); free(work); free(iwork);
    return st;
}

mb_status mb_pca(const float *X, int64_t N, int64_t D, int k, float *scores, float *components,
                 float *explained_variance, mb_error *err) {
    if (N < 1 || D < 1) return mb_fail(err, MB_ERR_SHAPE, "pca: need a non-empty [N,D] matrix, got [%lld,%lld]", (long long)N, (long long)D);
    int64_t small = N < D ? N : D;
    if (k < 1 || k > small)
        return mb_fail(err, MB_ERR_ARG, "pca: k (%d) must be between 1 and min(N, D) = %lld", k, (long long)small);
    if (small > MB_PCA_MAX_DENSE)
        return mb_fail(err, MB_ERR_UNSUPPORTED, "pca: min(N, D) = %lld is above %d, the largest dense eigenproblem this PCA solves",
                       (long long)small, MB_PCA_MAX_DENSE);
    mb_threads_init();
    float *Xc = malloc((size_t)N * (size_t)D * sizeof(float));
    double *mean = calloc((size_t)D, sizeof(double));
    float *C = malloc((size_t)small * (size_t)small * sizeof(float));
    double *A = malloc((size_t)small * (size_t)small * sizeof(double));
    double *w = malloc((size_t)k * sizeof(double));
    double *Z = malloc((size_t)small * (size_t)k * sizeof(double));
    mb_status st = MB_OK;
    if (!Xc || !mean || !C || !A || !w || !Z) {
        st = mb_fail(err, MB_ERR_NOMEM, "pca: cannot allocate for [%lld,%lld]", (long long)N, (long long)D);
        goto done;
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) mean[d] += X[i * D + d];
    for (int64_t d = 0; d < D; d++) mean[d] /= (double)N;
#pragma omp parallel for num_threads(mb_threads()) if (N * D > MB_PAR_MIN)
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) Xc[i * D + d] = (float)(X[i * D + d] - mean[d]);
    /* The smaller of Xc^T Xc [D,D] and Xc Xc^T [N,N]; both have the same nonzero spectrum. */
    int use_cov = D <= N;
    if (use_cov)
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)D, (int)N, 1.0f, Xc, (int)D, 0.0f, C, (int)D);
    else
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)N, (int)D, 1.0f, Xc, (int)D, 0.0f, C, (int)N);
    for (int64_t r = 0; r < small; r++)
        for (int64_t c = 0; c < small; c++) {
            float v = c >= r ? C[r * small + c] : C[c * small + r];
            A[r * small + c] = v;
        }
    st = mb_symmetric_eigen_top(A, (int)small, k, w, Z, err);
    if (st != MB_OK) goto done;
    double denom = N > 1 ? (double)(N - 1) : 1.0;
    for (int c = 0; c < k; c++) {
        double lam = w[c] > 0 ? w[c] : 0;
        /* The loading vector v [D] of component c. */
        double *v = malloc((size_t)D * sizeof(double));
        if (!v) { st = mb_fail(err, MB_ERR_NOMEM, "pca: out of memory"); goto done; }
        if (use_cov) {
            for (int64_t d = 0; d < D; d++) v[d] = Z[d * k + c];
        } else {
            /* v = Xc^T u / sqrt(lambda) */
            double s = lam > 0 ? 1.0 / sqrt(lam) : 0.0;
            for (int64_t d = 0; d < D; d++) v[d] = 0;
            for (int64_t i = 0; i < N; i++) {
                double u = Z[i * k + c] * s;
                for (int64_t d = 0; d < D; d++) v[d] += u * Xc[i * D + d];
            }
        }
        int64_t arg = 0;
        for (int64_t d = 1; d < D; d++) if (fabs(v[d]) > fabs(v[arg])) arg = d;
        double sign = v[arg] < 0 ? -1.0 : 1.0;
        for (int64_t d = 0; d < D; d++) v[d] *= sign;
        if (components)
            for (int64_t d = 0; d < D; d++) components[(int64_t)c * D + d] = (float)v[d];
        if (explained_variance) explained_variance[c] = (float)(lam / denom);
#pragma omp parallel for num_threads(mb_threads()) if (N * D > MB_PAR_MIN)
        for (int64_t i = 0; i < N; i++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += (double)Xc[i * D + d] * v[d];
            scores[i * k + c] = (float)s;
        }
        free(v);
    }
done:
    free(Xc); free(mean); free(C); free(A); free(w); free(Z);
    return st;
}
