/* test_umap.c: UMAP, exact kNN, PCA and trustworthiness against naive
 * references and properties that must hold.
 *
 * The end-to-end test embeds 10 Gaussian clusters in 50-D (1,000 points)
 * whose top two principal directions overlap them, and checks that UMAP keeps
 * the neighbourhoods (trustworthiness) and separates the clusters in 2-D
 * better than PCA (5-NN accuracy and silhouette of the true labels).
 */
#include <stdint.h>

#include "harness.h"
#include "../../runtime/knn.h"
#include "../../runtime/pca.h"
#include "../../runtime/rng.h"
#include "../../runtime/metrics.h"
#include "../../runtime/synthetic.h"
#include "../../runtime/umap.h"

static float *random_matrix(int64_t N, int64_t D, uint64_t seed) {
    mb_rng rng;
    mb_rng_seed(&rng, seed);
    float *X = malloc((size_t)N * D * sizeof(float));
    for (int64_t i = 0; i < N * D; i++) X[i] = (float)mb_rng_normal(&rng);
    return X;
}

/* n_clusters Gaussian blobs (unit variance) around centres drawn from
   N(0, center_scale^2 I); labels [N]. */
static float *gaussian_clusters(int n_clusters, int per_cluster, int D, double center_scale, uint64_t seed, int *labels) {
    mb_rng rng;
    mb_rng_seed(&rng, seed);
    double *centres = malloc((size_t)n_clusters * D * sizeof(double));
    for (int i = 0; i < n_clusters * D; i++) centres[i] = center_scale * mb_rng_normal(&rng);
    int64_t N = (int64_t)n_clusters * per_cluster;
    float *X = malloc((size_t)N * D * sizeof(float));
    for (int64_t i = 0; i < N; i++) {
        int c = (int)(i % n_clusters);
        labels[i] = c;
        for (int d = 0; d < D; d++) X[i * D + d] = (float)(centres[c * D + d] + mb_rng_normal(&rng));
    }
    free(centres);
    return X;
}

static double naive_dist(const float *a, const float *b, int64_t D, mb_metric metric) {
    if (metric == MB_METRIC_COSINE) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t d = 0; d < D; d++) { ab += (double)a[d] * b[d]; aa += (double)a[d] * a[d]; bb += (double)b[d] * b[d]; }
        return 1.0 - ab / sqrt(aa * bb);
    }
    double s = 0;
    for (int64_t d = 0; d < D; d++) s += ((double)a[d] - b[d]) * ((double)a[d] - b[d]);
    return sqrt(s);
}

/* ---- a, b ------------------------------------------------------------- */

static double ab_cost(double a, double b, double min_dist, double spread) {
    double c = 0;
    for (int i = 0; i < 300; i++) {
        double x = 3.0 * spread * i / 299.0;
        double y = x < min_dist ? 1.0 : exp(-(x - min_dist) / spread);
        double f = 1.0 / (1.0 + a * (x > 0 ? pow(x, 2 * b) : 0));
        c += (f - y) * (f - y);
    }
    return c;
}

TEST(find_ab_matches_umap_learn) {
    double a, b;
    mb_error err;
    CHECK(mb_umap_find_ab(1.0, 0.1, &a, &b, &err) == MB_OK, "%s", err.msg);
    /* umap-learn 0.5 find_ab_params(1.0, 0.1) = (1.5769434603113077, 0.8950608779109733) */
    CHECK_NEAR(a, 1.5769434603, 1e-4);
    CHECK_NEAR(b, 0.8950608779, 1e-4);
    /* A least-squares minimum: no nearby point fits better. */
    double c0 = ab_cost(a, b, 0.1, 1.0);
    for (int da = -1; da <= 1; da++)
        for (int db = -1; db <= 1; db++)
            CHECK(ab_cost(a + 1e-3 * da, b + 1e-3 * db, 0.1, 1.0) >= c0 - 1e-15, "(%d,%d) fits better", da, db);
    CHECK(mb_umap_find_ab(1.0, 0.5, &a, &b, &err) == MB_OK, "%s", err.msg);
    c0 = ab_cost(a, b, 0.5, 1.0);
    for (int da = -1; da <= 1; da++)
        for (int db = -1; db <= 1; db++)
            CHECK(ab_cost(a + 1e-3 * da, b + 1e-3 * db, 0.5, 1.0) >= c0 - 1e-15, "min_dist 0.5: (%d,%d) fits better", da, db);
    CHECK(mb_umap_find_ab(1.0, 2.0, &a, &b, &err) == MB_ERR_ARG, "min_dist > spread must fail");
}

/* ---- exact kNN -------------------------------------------------------- */

static void check_knn_metric(mb_metric metric, int64_t N) {
    const int64_t D = 20;
    const int k = 10;
    float *X = random_matrix(N, D, 7);
    int32_t *idx = malloc(N * k * sizeof(int32_t));
    float *dist = malloc(N * k * sizeof(float));
    double *row = malloc(N * sizeof(double));
    mb_error err;
    CHECK(mb_knn_exact(X, N, D, k, metric, idx, dist, &err) == MB_OK, "%s", err.msg);
    int mismatches = 0;
    double max_err = 0;
    for (int64_t i = 0; i < N; i++) {
        CHECK(idx[i * k] == i && dist[i * k] == 0.0f, "row %lld: self first", (long long)i);
        for (int64_t j = 0; j < N; j++) row[j] = j == i ? INFINITY : naive_dist(X + i * D, X + j * D, D, metric);
        for (int q = 1; q < k; q++) {
            /* the q-th nearest by the naive distances: count what is closer */
            int32_t j = idx[i * k + q];
            int closer = 0;
            for (int64_t l = 0; l < N; l++) if (row[l] < row[j] - 1e-5) closer++;
            if (closer > q - 1) mismatches++;
            double e = fabs(row[j] - dist[i * k + q]);
            if (e > max_err) max_err = e;
            if (q > 1) CHECK(dist[i * k + q] >= dist[i * k + q - 1], "row %lld not sorted", (long long)i);
        }
    }
    CHECK(mismatches == 0, "%s: %d neighbours out of order", mb_metric_name(metric), mismatches);
    CHECK(max_err < 1e-5, "%s: distance error %g", mb_metric_name(metric), max_err);
    free(X); free(idx); free(dist); free(row);
}

/* 300 rows fit one distance tile; 2,600 rows need two tiles per side (2,048 rows and the rest),
   so the transposed updates of the off-diagonal tiles are checked too. */
TEST(knn_matches_naive_cosine) { check_knn_metric(MB_METRIC_COSINE, 300); }
TEST(knn_matches_naive_euclidean) { check_knn_metric(MB_METRIC_EUCLIDEAN, 300); }
TEST(knn_matches_naive_across_tiles) {
    check_knn_metric(MB_METRIC_COSINE, 2600);
    check_knn_metric(MB_METRIC_EUCLIDEAN, 2600);
}

TEST(knn_rejects_bad_k) {
    float X[6] = {1, 2, 3, 4, 5, 6};
    int32_t idx[12];
    float d[12];
    mb_error err;
    CHECK(mb_knn_exact(X, 3, 2, 4, MB_METRIC_EUCLIDEAN, idx, d, &err) == MB_ERR_ARG, "k > N");
    CHECK(mb_knn_exact(X, 3, 2, 3, MB_METRIC_EUCLIDEAN, idx, d, &err) == MB_OK, "%s", err.msg);
    CHECK(idx[1] == 1 && idx[2] == 2, "neighbours of row 0: %d %d", idx[1], idx[2]);
}

/* ---- fuzzy simplicial set --------------------------------------------- */

TEST(smooth_knn_dist_hits_log2_k) {
    const int64_t N = 200, D = 10;
    const int k = 15;
    float *X = random_matrix(N, D, 3);
    int32_t *idx = malloc(N * k * sizeof(int32_t));
    float *dist = malloc(N * k * sizeof(float));
    double *sig = malloc(N * sizeof(double)), *rho = malloc(N * sizeof(double));
    mb_error err;
    CHECK(mb_knn_exact(X, N, D, k, MB_METRIC_EUCLIDEAN, idx, dist, &err) == MB_OK, "%s", err.msg);
    mb_umap_smooth_knn_dist(dist, N, k, 1.0, sig, rho);
    double worst = 0;
    for (int64_t i = 0; i < N; i++) {
        CHECK(rho[i] == dist[i * k + 1], "rho is the nearest other distance");
        double s = 0;
        for (int j = 1; j < k; j++) {
            double dd = dist[i * k + j] - rho[i];
            s += dd > 0 ? exp(-dd / sig[i]) : 1.0;
        }
        if (fabs(s - log2(k)) > worst) worst = fabs(s - log2(k));
    }
    CHECK(worst < 1e-4, "sum of memberships off log2(k) by %g", worst);
    free(X); free(idx); free(dist); free(sig); free(rho);
}

TEST(fuzzy_graph_is_the_fuzzy_union) {
    const int64_t N = 80, D = 5;
    const int k = 6;
    float *X = random_matrix(N, D, 11);
    int32_t *idx = malloc(N * k * sizeof(int32_t));
    float *dist = malloc(N * k * sizeof(float));
    double *sig = malloc(N * sizeof(double)), *rho = malloc(N * sizeof(double));
    double *A = calloc(N * N, sizeof(double));
    mb_error err;
    mb_umap_graph g;
    CHECK(mb_knn_exact(X, N, D, k, MB_METRIC_EUCLIDEAN, idx, dist, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_umap_fuzzy_graph(idx, dist, N, k, 1.0, 1.0, &g, &err) == MB_OK, "%s", err.msg);
    mb_umap_smooth_knn_dist(dist, N, k, 1.0, sig, rho);
    for (int64_t i = 0; i < N; i++)
        for (int j = 1; j < k; j++) {
            double dd = dist[i * k + j] - rho[i];
            A[i * N + idx[i * k + j]] = dd <= 0 ? 1.0 : exp(-dd / sig[i]);
        }
    double max_err = 0;
    int64_t expected_nnz = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            double a = A[i * N + j], b = A[j * N + i], want = a + b - a * b;
            if (want != 0) expected_nnz++;
            double got = 0;
            for (int64_t p = g.rowptr[i]; p < g.rowptr[i + 1]; p++) if (g.col[p] == j) got = g.val[p];
            if (fabs(got - want) > max_err) max_err = fabs(got - want);
        }
    CHECK(max_err < 1e-6, "graph differs from A + A^T - A*A^T by %g", max_err);
    CHECK(g.nnz == expected_nnz, "nnz %lld vs %lld", (long long)g.nnz, (long long)expected_nnz);
    mb_umap_graph_free(&g);
    free(X); free(idx); free(dist); free(sig); free(rho); free(A);
}

/* ---- PCA -------------------------------------------------------------- */

TEST(pca_properties) {
    /* Anisotropic data: column d scaled by 1/(d+1), then mixed. */
    const int64_t N = 400, D = 12;
    const int k = 3;
    float *X = random_matrix(N, D, 5);
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) X[i * D + d] = X[i * D + d] / (float)(d + 1) + 0.3f * X[i * D + (d + 1) % D] + 2.0f;
    float *S = malloc(N * k * sizeof(float)), *C = malloc(k * D * sizeof(float)), var[3];
    mb_error err;
    CHECK(mb_pca(X, N, D, k, S, C, var, &err) == MB_OK, "%s", err.msg);
    double mean[12] = {0};
    for (int64_t i = 0; i < N; i++) for (int64_t d = 0; d < D; d++) mean[d] += X[i * D + d] / (double)N;
    for (int a = 0; a < k; a++) {
        for (int b = 0; b < k; b++) {
            double dot = 0;
            for (int64_t d = 0; d < D; d++) dot += (double)C[a * D + d] * C[b * D + d];
            CHECK_NEAR(dot, a == b ? 1.0 : 0.0, 1e-5);
        }
        double v = 0, max_score_err = 0;
        for (int64_t i = 0; i < N; i++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += (X[i * D + d] - mean[d]) * C[a * D + d];
            if (fabs(s - S[i * k + a]) > max_score_err) max_score_err = fabs(s - S[i * k + a]);
            v += s * s / (N - 1);
        }
        CHECK(max_score_err < 1e-4, "scores are the centred projections (err %g)", max_score_err);
        CHECK_NEAR(v, var[a], 1e-4 * v);
        if (a > 0) CHECK(var[a] <= var[a - 1], "variances descend");
    }
    /* The first component beats random unit directions. */
    mb_rng rng;
    mb_rng_seed(&rng, 9);
    for (int t = 0; t < 50; t++) {
        double u[12], nrm = 0, v = 0;
        for (int d = 0; d < D; d++) { u[d] = mb_rng_normal(&rng); nrm += u[d] * u[d]; }
        for (int d = 0; d < D; d++) u[d] /= sqrt(nrm);
        for (int64_t i = 0; i < N; i++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += (X[i * D + d] - mean[d]) * u[d];
            v += s * s / (N - 1);
        }
        CHECK(v <= var[0] * (1 + 1e-5), "direction %d has variance %g > %g", t, v, var[0]);
    }
    /* Wide data (D > N) takes the Gram path and must agree with the transpose-free answer. */
    const int64_t Nw = 30, Dw = 60;
    float *W = random_matrix(Nw, Dw, 12);
    float *Sw = malloc(Nw * 2 * sizeof(float)), *Cw = malloc(2 * Dw * sizeof(float));
    CHECK(mb_pca(W, Nw, Dw, 2, Sw, Cw, NULL, &err) == MB_OK, "%s", err.msg);
    double wm[60] = {0};
    for (int64_t i = 0; i < Nw; i++) for (int64_t d = 0; d < Dw; d++) wm[d] += W[i * Dw + d] / (double)Nw;
    double werr = 0;
    for (int64_t i = 0; i < Nw; i++)
        for (int c = 0; c < 2; c++) {
            double s = 0;
            for (int64_t d = 0; d < Dw; d++) s += (W[i * Dw + d] - wm[d]) * Cw[c * Dw + d];
            if (fabs(s - Sw[i * 2 + c]) > werr) werr = fabs(s - Sw[i * 2 + c]);
        }
    CHECK(werr < 1e-4, "Gram-path scores err %g", werr);
    CHECK(mb_pca(W, Nw, Dw, 31, Sw, NULL, NULL, &err) == MB_ERR_ARG, "k > min(N,D) must fail");
    free(X); free(S); free(C); free(W); free(Sw); free(Cw);
}

/* ---- trustworthiness -------------------------------------------------- */

/* sklearn's definition written out with full sorts. */
static double naive_trustworthiness(const float *X, const float *Y, int64_t N, int64_t D, int64_t DY, int k) {
    double total = 0;
    double *dx = malloc(N * sizeof(double)), *dy = malloc(N * sizeof(double));
    int64_t *order = malloc(N * sizeof(int64_t)), *rank = malloc(N * sizeof(int64_t)), *ordy = malloc(N * sizeof(int64_t));
    for (int64_t i = 0; i < N; i++) {
        for (int64_t j = 0; j < N; j++) {
            dx[j] = j == i ? INFINITY : naive_dist(X + i * D, X + j * D, D, MB_METRIC_EUCLIDEAN);
            dy[j] = j == i ? INFINITY : naive_dist(Y + i * DY, Y + j * DY, DY, MB_METRIC_EUCLIDEAN);
            order[j] = ordy[j] = j;
        }
        /* insertion sorts by distance */
        for (int64_t a = 1; a < N; a++)
            for (int64_t b = a; b > 0 && dx[order[b]] < dx[order[b - 1]]; b--) { int64_t t = order[b]; order[b] = order[b - 1]; order[b - 1] = t; }
        for (int64_t a = 1; a < N; a++)
            for (int64_t b = a; b > 0 && dy[ordy[b]] < dy[ordy[b - 1]]; b--) { int64_t t = ordy[b]; ordy[b] = ordy[b - 1]; ordy[b - 1] = t; }
        for (int64_t r = 0; r < N; r++) rank[order[r]] = r + 1;
        for (int q = 0; q < k; q++) {
            int64_t rr = rank[ordy[q]] - k;
            if (rr > 0) total += (double)rr;
        }
    }
    free(dx); free(dy); free(order); free(rank); free(ordy);
    return 1.0 - total * (2.0 / ((double)N * k * (2.0 * N - 3.0 * k - 1.0)));
}

TEST(trustworthiness_matches_sklearn_definition) {
    const int64_t N = 60, D = 8;
    float *X = random_matrix(N, D, 21);
    float *Y = random_matrix(N, 2, 22);
    /* Y partly informative: the first two coordinates of X plus noise. */
    for (int64_t i = 0; i < N; i++) for (int d = 0; d < 2; d++) Y[i * 2 + d] = X[i * D + d] + 0.5f * Y[i * 2 + d];
    double t, want = naive_trustworthiness(X, Y, N, D, 2, 5);
    mb_error err;
    CHECK(mb_trustworthiness(X, N, D, Y, 2, 5, MB_METRIC_EUCLIDEAN, &t, &err) == MB_OK, "%s", err.msg);
    CHECK_NEAR(t, want, 1e-12);
    CHECK(t > 0.3 && t < 1.0, "t = %g", t);
    CHECK(mb_trustworthiness(X, N, D, X, D, 5, MB_METRIC_EUCLIDEAN, &t, &err) == MB_OK, "%s", err.msg);
    CHECK_NEAR(t, 1.0, 1e-12);
    CHECK(mb_trustworthiness(X, N, D, Y, 2, 30, MB_METRIC_EUCLIDEAN, &t, &err) == MB_ERR_ARG, "k >= N/2 must fail");
    free(X); free(Y);
}

/* ---- separation scores for the end-to-end test ------------------------- */

/* Leave-one-out 5-NN majority vote accuracy in the embedding. */
static double knn_accuracy(const float *Y, int64_t N, int dim, const int *labels, int n_classes) {
    const int k = 6;
    int32_t *idx = malloc(N * k * sizeof(int32_t));
    float *d = malloc(N * k * sizeof(float));
    mb_knn_exact(Y, N, dim, k, MB_METRIC_EUCLIDEAN, idx, d, NULL);
    int correct = 0, votes[64];
    for (int64_t i = 0; i < N; i++) {
        memset(votes, 0, sizeof votes);
        for (int q = 1; q < k; q++) votes[labels[idx[i * k + q]]]++;
        int best = 0;
        for (int c = 1; c < n_classes; c++) if (votes[c] > votes[best]) best = c;
        correct += best == labels[i];
    }
    free(idx); free(d);
    return (double)correct / (double)N;
}

/* Mean silhouette of the true labels (euclidean). */
static double silhouette(const float *Y, int64_t N, int dim, const int *labels, int n_classes) {
    double total = 0, sum[64];
    int64_t count[64] = {0};
    for (int64_t i = 0; i < N; i++) count[labels[i]]++;
    for (int64_t i = 0; i < N; i++) {
        memset(sum, 0, sizeof sum);
        for (int64_t j = 0; j < N; j++) if (j != i) sum[labels[j]] += naive_dist(Y + i * dim, Y + j * dim, dim, MB_METRIC_EUCLIDEAN);
        double a = sum[labels[i]] / (double)(count[labels[i]] - 1), b = INFINITY;
        for (int c = 0; c < n_classes; c++) if (c != labels[i] && sum[c] / count[c] < b) b = sum[c] / count[c];
        total += (b - a) / (a > b ? a : b);
    }
    return total / (double)N;
}

TEST(umap_separates_clusters_better_than_pca) {
    const int n_clusters = 10, per = 100, D = 50;
    const int64_t N = n_clusters * per;
    int *labels = malloc(N * sizeof(int));
    /* Centre spread 1 per axis: centres ~10 apart, points ~10 from each other:
       separable by neighbours in 50-D, overlapping in any 2-D projection. */
    float *X = gaussian_clusters(n_clusters, per, D, 1.0, 2024, labels);
    float *Yu = malloc(N * 2 * sizeof(float)), *Yp = malloc(N * 2 * sizeof(float));
    mb_umap_options o;
    mb_umap_default_options(&o);
    o.metric = MB_METRIC_EUCLIDEAN;
    o.verbose = 0;
    mb_umap_info info;
    mb_error err;
    CHECK(mb_umap_fit_transform(X, N, D, &o, Yu, &info, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_pca(X, N, D, 2, Yp, NULL, NULL, &err) == MB_OK, "%s", err.msg);
    double tu, tp;
    CHECK(mb_trustworthiness(X, N, D, Yu, 2, 5, MB_METRIC_EUCLIDEAN, &tu, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_trustworthiness(X, N, D, Yp, 2, 5, MB_METRIC_EUCLIDEAN, &tp, &err) == MB_OK, "%s", err.msg);
    double au = knn_accuracy(Yu, N, 2, labels, n_clusters), ap = knn_accuracy(Yp, N, 2, labels, n_clusters);
    double su = silhouette(Yu, N, 2, labels, n_clusters), sp = silhouette(Yp, N, 2, labels, n_clusters);
    double ax = knn_accuracy(X, N, D, labels, n_clusters);
    fprintf(stderr,
            "clusters: UMAP trust %.4f, 5-NN acc %.4f, silhouette %.4f | PCA trust %.4f, acc %.4f, silhouette %.4f | "
            "50-D acc %.4f | %d graph components, init %s, %.2f s\n",
            tu, au, su, tp, ap, sp, ax, info.graph_components, mb_umap_init_name(info.init_used), info.seconds_total);
    /* Random within-cluster neighbours would still score ~0.95 (mean rank ~50
       of 1000); 0.9 fails as soon as clusters mix. */
    CHECK(tu > 0.9, "UMAP trustworthiness %g", tu);
    CHECK(tu > tp, "UMAP trust %g vs PCA %g", tu, tp);
    CHECK(ax > 0.99, "clusters should be separable in 50-D (acc %g)", ax);
    CHECK(au > 0.97, "UMAP 5-NN accuracy %g", au);
    CHECK(au > ap + 0.2, "UMAP accuracy %g vs PCA %g", au, ap);
    CHECK(su > 0.5 && su > sp + 0.3, "silhouette UMAP %g vs PCA %g", su, sp);
    CHECK(info.n_epochs == 500, "n_epochs %d", info.n_epochs);
    CHECK(info.a > 1.57 && info.a < 1.58, "a %g", info.a);
    free(labels); free(X); free(Yu); free(Yp);
}

TEST(umap_is_deterministic_for_a_seed) {
    const int64_t N = 300, D = 16;
    int *labels = malloc(N * sizeof(int));
    float *X = gaussian_clusters(3, 100, D, 2.0, 77, labels);
    float *Y1 = malloc(N * 2 * sizeof(float)), *Y2 = malloc(N * 2 * sizeof(float)), *Y3 = malloc(N * 2 * sizeof(float));
    mb_umap_options o;
    mb_umap_default_options(&o);
    o.verbose = 0;
    o.n_epochs = 100;
    mb_error err;
    CHECK(mb_umap_fit_transform(X, N, D, &o, Y1, NULL, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_umap_fit_transform(X, N, D, &o, Y2, NULL, &err) == MB_OK, "%s", err.msg);
    o.seed = 43;
    CHECK(mb_umap_fit_transform(X, N, D, &o, Y3, NULL, &err) == MB_OK, "%s", err.msg);
    CHECK(memcmp(Y1, Y2, N * 2 * sizeof(float)) == 0, "same seed, different embedding");
    CHECK(memcmp(Y1, Y3, N * 2 * sizeof(float)) != 0, "different seeds, same embedding");
    /* Every init path runs and gives finite output. */
    for (int init = 0; init < 3; init++) {
        mb_umap_info info;
        o.init = (mb_umap_init)init;
        CHECK(mb_umap_fit_transform(X, N, D, &o, Y3, &info, &err) == MB_OK, "%s", err.msg);
        CHECK(info.init_used == o.init, "init %s used %s", mb_umap_init_name(o.init), mb_umap_init_name(info.init_used));
        double t;
        CHECK(mb_trustworthiness(X, N, D, Y3, 2, 5, MB_METRIC_COSINE, &t, &err) == MB_OK, "%s", err.msg);
        CHECK(t > 0.85, "init %s: trustworthiness %g", mb_umap_init_name(o.init), t);
    }
    free(labels); free(X); free(Y1); free(Y2); free(Y3);
}

TEST(umap_spectral_on_a_connected_manifold) {
    /* A noisy circle in 3-D: one component, spectral init should unroll it. */
    const int64_t N = 400;
    float *X = malloc(N * 3 * sizeof(float)), *Y = malloc(N * 2 * sizeof(float));
    mb_rng rng;
    mb_rng_seed(&rng, 5);
    for (int64_t i = 0; i < N; i++) {
        double t = 2 * M_PI * i / N;
        X[i * 3] = (float)(cos(t) + 0.01 * mb_rng_normal(&rng));
        X[i * 3 + 1] = (float)(sin(t) + 0.01 * mb_rng_normal(&rng));
        X[i * 3 + 2] = (float)(0.01 * mb_rng_normal(&rng));
    }
    mb_umap_options o;
    mb_umap_default_options(&o);
    o.metric = MB_METRIC_EUCLIDEAN;
    o.verbose = 0;
    o.n_epochs = 200;
    mb_umap_info info;
    mb_error err;
    CHECK(mb_umap_fit_transform(X, N, 3, &o, Y, &info, &err) == MB_OK, "%s", err.msg);
    CHECK(info.graph_components == 1, "components %d", info.graph_components);
    CHECK(info.init_used == MB_UMAP_INIT_SPECTRAL, "fell back to %s", mb_umap_init_name(info.init_used));
    CHECK(info.spectral_residual < 1e-4, "spectral residual %g", info.spectral_residual);
    double t;
    CHECK(mb_trustworthiness(X, N, 3, Y, 2, 5, MB_METRIC_EUCLIDEAN, &t, &err) == MB_OK, "%s", err.msg);
    CHECK(t > 0.97, "circle trustworthiness %g", t);
    free(X); free(Y);
}

/* Far-apart clusters give a disconnected graph: umap-learn's multi-component
   layout (meta-embedding of the components) must keep them apart. */
static void check_disconnected(int n_clusters) {
    const int per = 60, D = 20;
    const int64_t N = (int64_t)n_clusters * per;
    int *labels = malloc(N * sizeof(int));
    float *X = gaussian_clusters(n_clusters, per, D, 20.0, 99, labels);
    float *Y = malloc(N * 2 * sizeof(float));
    mb_umap_options o;
    mb_umap_default_options(&o);
    o.metric = MB_METRIC_EUCLIDEAN;
    o.verbose = 0;
    o.n_epochs = 200;
    mb_umap_info info;
    mb_error err;
    CHECK(mb_umap_fit_transform(X, N, D, &o, Y, &info, &err) == MB_OK, "%s", err.msg);
    CHECK(info.graph_components == n_clusters, "%d clusters: %d components", n_clusters, info.graph_components);
    CHECK(info.init_used == MB_UMAP_INIT_SPECTRAL, "fell back to %s", mb_umap_init_name(info.init_used));
    double acc = knn_accuracy(Y, N, 2, labels, n_clusters), sil = silhouette(Y, N, 2, labels, n_clusters);
    CHECK(acc > 0.99, "%d clusters: 5-NN accuracy %g", n_clusters, acc);
    CHECK(sil > 0.5, "%d clusters: silhouette %g", n_clusters, sil);
    free(labels); free(X); free(Y);
}

TEST(umap_disconnected_few_components) { check_disconnected(3); }
TEST(umap_disconnected_many_components) { check_disconnected(8); }

TEST(umap_rejects_bad_input) {
    float X[40];
    for (int i = 0; i < 40; i++) X[i] = (float)i;
    float Y[20];
    mb_umap_options o;
    mb_umap_default_options(&o);
    mb_error err;
    o.n_neighbors = 10;
    CHECK(mb_umap_fit_transform(X, 10, 4, &o, Y, NULL, &err) == MB_ERR_ARG, "n_neighbors >= N");
    CHECK(strstr(err.msg, "n_neighbors (10)") != NULL, "%s", err.msg);
    o.n_neighbors = 3;
    X[13] = NAN;
    CHECK(mb_umap_fit_transform(X, 10, 4, &o, Y, NULL, &err) == MB_ERR_NUMERIC, "NaN input");
    CHECK(strstr(err.msg, "row 3") != NULL, "%s", err.msg);
    X[13] = 1;
    o.min_dist = 2;
    CHECK(mb_umap_fit_transform(X, 10, 4, &o, Y, NULL, &err) == MB_ERR_ARG, "min_dist > spread");
}

int main(void) {
    RUN(find_ab_matches_umap_learn);
    RUN(knn_matches_naive_cosine);
    RUN(knn_matches_naive_euclidean);
    RUN(knn_matches_naive_across_tiles);
    RUN(knn_rejects_bad_k);
    RUN(smooth_knn_dist_hits_log2_k);
    RUN(fuzzy_graph_is_the_fuzzy_union);
    RUN(pca_properties);
    RUN(trustworthiness_matches_sklearn_definition);
    RUN(umap_separates_clusters_better_than_pca);
    RUN(umap_is_deterministic_for_a_seed);
    RUN(umap_spectral_on_a_connected_manifold);
    RUN(umap_disconnected_few_components);
    RUN(umap_disconnected_many_components);
    RUN(umap_rejects_bad_input);
    return harness_end();
}
