/* test_logreg.c: L-BFGS, CSR and logistic regression.
 *
 * References: the scikit-learn fixture ../shared/fixtures/logreg (exact optimum
 * *_opt of sklearn's objective), an independent naive float64 implementation of
 * that objective and its gradient written here, and the Rosenbrock function for
 * the bare L-BFGS.
 */
#include <stdint.h>

#include "../../runtime/lbfgs.h"
#include "../../runtime/logreg.h"
#include "../../runtime/rng.h"
#include "../../runtime/sparse.h"
#include "harness.h"
#include "st_read.h"

/* ---- L-BFGS on its own ------------------------------------------------- */

static double rosenbrock(void *ctx, const double *x, double *g) {
    int n = *(int *)ctx;
    double f = 0;
    memset(g, 0, sizeof(double) * n);
    for (int i = 0; i + 1 < n; i++) {
        double a = x[i + 1] - x[i] * x[i], b = 1 - x[i];
        f += 100 * a * a + b * b;
        g[i] += -400 * x[i] * a - 2 * b;
        g[i + 1] += 200 * a;
    }
    return f;
}

TEST(lbfgs_minimises_rosenbrock) {
    int n = 10;
    double x[10];
    for (int i = 0; i < n; i++) x[i] = i % 2 ? 1.2 : -1.2;
    mb_lbfgs_options o = mb_lbfgs_defaults();
    o.max_iter = 500;
    o.gtol = 1e-8;
    mb_lbfgs_result r;
    mb_error err;
    CHECK(mb_lbfgs_minimize(n, x, rosenbrock, NULL, &n, &o, &r, &err) == MB_OK, "%s", err.msg);
    CHECK(r.stop == MB_LBFGS_CONVERGED_GTOL, "stop: %s after %d iterations", mb_lbfgs_stop_name(r.stop), r.n_iter);
    for (int i = 0; i < n; i++) CHECK_NEAR(x[i], 1.0, 1e-6);
    o.max_iter = 5;
    for (int i = 0; i < n; i++) x[i] = -1.2;
    CHECK(mb_lbfgs_minimize(n, x, rosenbrock, NULL, &n, &o, &r, &err) == MB_OK, "%s", err.msg);
    CHECK(r.stop == MB_LBFGS_MAX_ITER && r.n_iter == 5, "stop %d after %d", r.stop, r.n_iter);
}

/* ---- an independent reference of sklearn's objective -------------------- */

/* J and its gradient (float64, naive loops). K >= 3 multinomial; K == 2 binary
   with one row. gW: [P, d], gb: [P]. */
static double naive_objective(const float *X, const int32_t *y, int64_t n, int64_t d, int K, const float *W,
                              const float *b, double C, double *gW, double *gb) {
    int P = K == 2 ? 1 : K;
    double f = 0, z[16], p[16];
    memset(gW, 0, sizeof(double) * P * d);
    memset(gb, 0, sizeof(double) * P);
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < P; k++) {
            z[k] = b[k];
            for (int64_t j = 0; j < d; j++) z[k] += (double)X[i * d + j] * W[k * d + j];
        }
        if (K == 2) {
            double p1 = 1 / (1 + exp(-z[0]));
            f += log(1 + exp(z[0])) - (y[i] == 1 ? z[0] : 0);
            p[0] = p1 - (y[i] == 1);
        } else {
            double s = 0;
            for (int k = 0; k < K; k++) s += exp(z[k]);
            f += log(s) - z[y[i]];
            for (int k = 0; k < K; k++) p[k] = exp(z[k]) / s - (k == y[i]);
        }
        for (int k = 0; k < P; k++) {
            for (int64_t j = 0; j < d; j++) gW[k * d + j] += p[k] * X[i * d + j];
            gb[k] += p[k];
        }
    }
    for (int64_t i = 0; i < P * d; i++) {
        f += 0.5 / C * (double)W[i] * W[i];
        gW[i] += W[i] / C;
    }
    return f;
}

/* ---- the fixture -------------------------------------------------------- */

typedef struct fixture {
    st_file data, res;
    const float *Xtr, *Xva, *coef_opt, *icpt_opt, *proba_opt, *objective_opt, *coef_sk;
    const int32_t *ytr, *yva, *n_iter_sk;
    int64_t ntr, nva, d;
} fixture;

static int fixture_open(fixture *fx) {
    char a[512], b[512];
    const char *pd = harness_shared("fixtures/logreg/data.safetensors", a, sizeof a);
    const char *pr = harness_shared("fixtures/logreg/results.safetensors", b, sizeof b);
    if (!pd || !pr || st_open(&fx->data, pd) || st_open(&fx->res, pr)) return -1;
    int64_t n;
    fx->Xtr = st_get(&fx->data, "X_train", "F32", &n);
    fx->ytr = st_get(&fx->data, "y_train", "I32", &fx->ntr);
    fx->d = n / fx->ntr;
    fx->Xva = st_get(&fx->data, "X_val", "F32", &n);
    fx->yva = st_get(&fx->data, "y_val", "I32", &fx->nva);
    fx->coef_opt = st_get(&fx->res, "coef_opt", "F32", NULL);
    fx->coef_sk = st_get(&fx->res, "coef", "F32", NULL);
    fx->icpt_opt = st_get(&fx->res, "intercept_opt", "F32", NULL);
    fx->proba_opt = st_get(&fx->res, "proba_val_opt", "F32", NULL);
    fx->objective_opt = st_get(&fx->res, "objective_opt", "F32", NULL);
    fx->n_iter_sk = st_get(&fx->res, "n_iter", "I32", NULL);
    return fx->Xtr && fx->ytr && fx->Xva && fx->coef_opt && fx->icpt_opt && fx->proba_opt && fx->objective_opt ? 0 : -1;
}

static void fixture_close(fixture *fx) {
    st_close(&fx->data);
    st_close(&fx->res);
}

static mb_csr *dense_to_csr(const float *X, int64_t n, int64_t d) {
    int64_t nnz = 0;
    for (int64_t i = 0; i < n * d; i++) nnz += X[i] != 0;
    mb_csr *m = mb_csr_new(n, d, nnz, NULL);
    int64_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++)
            if (X[i * d + j] != 0) {
                m->indices[o] = (int32_t)j;
                m->data[o++] = X[i * d + j];
            }
        m->indptr[i + 1] = o;
    }
    return m;
}

/* The parity figures: probabilities, coefficients, centred intercepts, predictions. */
static void compare_to_opt(const fixture *fx, const mb_logreg *m, const mb_design *Xva, const char *label) {
    int K = 6;
    int64_t d = fx->d;
    float *proba = malloc(sizeof(float) * fx->nva * K);
    int32_t *pred = malloc(sizeof(int32_t) * fx->nva);
    mb_error err;
    CHECK(mb_logreg_predict_proba(m, Xva, proba, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_logreg_predict(m, Xva, pred, &err) == MB_OK, "%s", err.msg);
    double pmax = 0, cmax = 0, cscale = 0, imax = 0, ma = 0, mb = 0;
    for (int64_t i = 0; i < fx->nva * K; i++) pmax = fmax(pmax, fabs(proba[i] - fx->proba_opt[i]));
    for (int64_t i = 0; i < K * d; i++) {
        cmax = fmax(cmax, fabs(m->coef[i] - fx->coef_opt[i]));
        cscale = fmax(cscale, fabs(fx->coef_opt[i]));
    }
    for (int k = 0; k < K; k++) { ma += m->intercept[k] / K; mb += fx->icpt_opt[k] / K; }
    for (int k = 0; k < K; k++) imax = fmax(imax, fabs((m->intercept[k] - ma) - (fx->icpt_opt[k] - mb)));
    int mismatches = 0;
    for (int64_t i = 0; i < fx->nva; i++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (fx->proba_opt[i * K + k] > fx->proba_opt[i * K + best]) best = k;
        mismatches += pred[i] != best;
    }
    CHECK(pmax <= 1e-4, "%s: max|proba - proba_val_opt| = %.3g", label, pmax);
    CHECK(cmax / cscale <= 1e-3, "%s: coef rel err %.3g", label, cmax / cscale);
    CHECK(imax / cscale <= 1e-3, "%s: centred intercept rel err %.3g", label, imax / cscale);
    CHECK(mismatches == 0, "%s: %d predictions differ from argmax(proba_val_opt)", label, mismatches);
    fprintf(stderr, "  %s: %d iterations (%d evals, %s), objective %.6f (opt %.6f), max|grad| %.2g; "
                    "max|proba err| %.2e, coef rel err %.2e, centred intercept rel err %.2e, %d pred mismatches\n",
            label, m->n_iter, m->n_eval, mb_lbfgs_stop_name(m->stop), m->objective, fx->objective_opt[0], m->grad_max,
            pmax, cmax / cscale, imax / cscale, mismatches);
    free(proba);
    free(pred);
}

TEST(logreg_reaches_the_exact_optimum_dense) {
    fixture fx;
    if (fixture_open(&fx)) SKIP("../shared/fixtures/logreg is absent");
    mb_logreg_options o = mb_logreg_defaults();
    o.max_iter = 3000;
    mb_design Xtr = {fx.ntr, fx.d, fx.Xtr, NULL}, Xva = {fx.nva, fx.d, fx.Xva, NULL};
    mb_error err;
    mb_logreg *m = mb_logreg_fit(&Xtr, fx.ytr, 6, &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) {
        CHECK(m->converged && m->grad_max <= o.tol, "converged %d, max|grad| %g", m->converged, m->grad_max);
        CHECK(m->n_rows == 6 && m->n_features == fx.d, "coef shape");
        compare_to_opt(&fx, m, &Xva, "dense");
        /* the naive objective at our coefficients is the optimum's, and its
           gradient is small (float32 rounding of coef limits it) */
        double *gW = malloc(sizeof(double) * 6 * fx.d), gb[6];
        double f = naive_objective(fx.Xtr, fx.ytr, fx.ntr, fx.d, 6, m->coef, m->intercept, 1.0, gW, gb);
        CHECK(fabs(f - fx.objective_opt[0]) <= 1e-6 * fx.objective_opt[0], "naive J %.9g vs objective_opt %.9g", f,
              (double)fx.objective_opt[0]);
        double f2, g2;
        CHECK(mb_logreg_objective(m, &Xtr, fx.ytr, 1.0, &f2, &g2, &err) == MB_OK, "%s", err.msg);
        CHECK(fabs(f - f2) <= 1e-9 * f, "runtime J %.12g vs naive %.12g", f2, f);
        double gmax = 0;
        for (int64_t i = 0; i < 6 * fx.d; i++) gmax = fmax(gmax, fabs(gW[i]));
        for (int k = 0; k < 6; k++) gmax = fmax(gmax, fabs(gb[k]));
        CHECK(fabs(gmax - g2) <= 1e-6 * fmax(gmax, 1e-3), "runtime max|grad| %.9g vs naive %.9g", g2, gmax);
        free(gW);
    }
    mb_logreg_free(m);
    /* without the change of variables: same optimum, more iterations */
    o.precondition = 0;
    m = mb_logreg_fit(&Xtr, fx.ytr, 6, &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) compare_to_opt(&fx, m, &Xva, "dense, no preconditioning");
    mb_logreg_free(m);
    fixture_close(&fx);
}

TEST(logreg_sparse_input_matches_dense) {
    fixture fx;
    if (fixture_open(&fx)) SKIP("../shared/fixtures/logreg is absent");
    mb_csr *tr = dense_to_csr(fx.Xtr, fx.ntr, fx.d), *va = dense_to_csr(fx.Xva, fx.nva, fx.d);
    mb_error err;
    CHECK(mb_csr_validate(tr, &err) == MB_OK, "%s", err.msg);
    mb_logreg_options o = mb_logreg_defaults();
    o.max_iter = 3000;
    mb_design Xtr = {fx.ntr, fx.d, NULL, tr}, Xva = {fx.nva, fx.d, NULL, va};
    mb_logreg *m = mb_logreg_fit(&Xtr, fx.ytr, 6, &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) compare_to_opt(&fx, m, &Xva, "csr");
    mb_logreg_free(m);
    mb_csr_free(tr);
    mb_csr_free(va);
    fixture_close(&fx);
}

/* Binary problems use one weight row (sklearn's coef_ shape (1, d)); checked by
   the naive binary objective's gradient at the solution. Sparse data with many
   zeros and ten empty columns, so that CSR and dense paths are compared on a
   real sparse matrix, including the CSR fit's skipping of empty columns. */
TEST(logreg_binary_sparse_and_dense_agree) {
    int64_t n = 300, d = 40;
    float *X = calloc(n * d, sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    mb_rng rng;
    mb_rng_seed(&rng, 3);
    for (int64_t i = 0; i < n; i++) {
        y[i] = mb_rng_uniform(&rng) < 0.4;
        for (int64_t j = 0; j < d; j++)
            if (j < 30 && mb_rng_uniform(&rng) < 0.2) X[i * d + j] = (float)(mb_rng_below(&rng, 3) + 1 + (y[i] && j < 5));
    }
    mb_logreg_options o = mb_logreg_defaults();
    o.C = 0.5;
    o.tol = 1e-6;
    o.max_iter = 1000;
    mb_error err;
    mb_design Xd = {n, d, X, NULL};
    mb_csr *csr = dense_to_csr(X, n, d);
    mb_design Xs = {n, d, NULL, csr};
    mb_logreg *md = mb_logreg_fit(&Xd, y, 2, &o, &err), *ms = mb_logreg_fit(&Xs, y, 2, &o, &err);
    CHECK(md && ms, "%s", err.msg);
    if (md && ms) {
        CHECK(md->n_rows == 1 && md->converged && ms->converged, "rows %d, converged %d %d", md->n_rows, md->converged,
              ms->converged);
        double worst = 0;
        for (int64_t j = 0; j < d; j++) worst = fmax(worst, fabs(md->coef[j] - ms->coef[j]));
        CHECK(worst <= 1e-5, "dense vs csr coef differ by %.3g", worst);
        /* columns 30..39 are empty: the CSR fit skips them and their weights are exactly 0 */
        for (int64_t j = 30; j < d; j++) CHECK(ms->coef[j] == 0.0f && fabs(md->coef[j]) < 1e-9, "empty column %lld", (long long)j);
        CHECK(ms->n_features == d, "n_features %lld", (long long)ms->n_features);
        double gW[40], gb[1];
        naive_objective(X, y, n, d, 2, md->coef, md->intercept, o.C, gW, gb);
        double g = fabs(gb[0]);
        for (int64_t j = 0; j < d; j++) g = fmax(g, fabs(gW[j]));
        CHECK(g <= 1e-4, "naive binary gradient at the solution: %.3g", g);
        float proba[600];
        mb_design X2 = {2, d, X, NULL};
        CHECK(mb_logreg_predict_proba(md, &X2, proba, &err) == MB_OK, "%s", err.msg);
        CHECK_NEAR(proba[0] + proba[1], 1.0, 1e-6);
    }
    mb_logreg_free(md);
    mb_logreg_free(ms);
    mb_csr_free(csr);
    free(X);
    free(y);
}

TEST(logreg_max_iter_is_reported) {
    fixture fx;
    if (fixture_open(&fx)) SKIP("../shared/fixtures/logreg is absent");
    mb_logreg_options o = mb_logreg_defaults();
    o.max_iter = 3;
    o.precondition = 0;
    mb_design Xtr = {fx.ntr, fx.d, fx.Xtr, NULL};
    mb_error err;
    mb_logreg *m = mb_logreg_fit(&Xtr, fx.ytr, 6, &o, &err);
    CHECK(m && !m->converged && m->n_iter == 3 && m->stop == MB_LBFGS_MAX_ITER, "not reported as max_iter");
    mb_logreg_free(m);
    fixture_close(&fx);
}

TEST(logreg_rejects_bad_input) {
    float X[4] = {1, 2, 3, 4};
    int32_t y[2] = {0, 7};
    mb_design D = {2, 2, X, NULL};
    mb_error err;
    CHECK(mb_logreg_fit(&D, y, 3, NULL, &err) == NULL && strstr(err.msg, "label 7"), "%s", err.msg);
    y[1] = 0;
    CHECK(mb_logreg_fit(&D, y, 1, NULL, &err) == NULL && strstr(err.msg, "one class"), "%s", err.msg);
    mb_logreg_options o = mb_logreg_defaults();
    o.C = 0;
    y[1] = 1;
    CHECK(mb_logreg_fit(&D, y, 2, &o, &err) == NULL && strstr(err.msg, "C must"), "%s", err.msg);
    mb_logreg *m = mb_logreg_fit(&D, y, 2, NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    mb_design D3 = {1, 3, X, NULL};
    float p[4];
    CHECK(mb_logreg_predict_proba(m, &D3, p, &err) != MB_OK && strstr(err.msg, "3 features"), "%s", err.msg);
    mb_logreg_free(m);
    int64_t indptr[3] = {0, 2, 1};
    int32_t idx[2] = {0, 1};
    float v[2] = {1, 1};
    CHECK(mb_csr_from_arrays(2, 2, indptr, idx, v, &err) == NULL, "bad indptr accepted");
    int64_t indptr2[3] = {0, 1, 2};
    int32_t idx2[2] = {0, 5};
    CHECK(mb_csr_from_arrays(2, 2, indptr2, idx2, v, &err) == NULL && strstr(err.msg, "column id 5"), "%s", err.msg);
}

int main(void) {
    RUN(lbfgs_minimises_rosenbrock);
    RUN(logreg_reaches_the_exact_optimum_dense);
    RUN(logreg_sparse_input_matches_dense);
    RUN(logreg_binary_sparse_and_dense_agree);
    RUN(logreg_max_iter_is_reported);
    RUN(logreg_rejects_bad_input);
    return harness_end();
}
