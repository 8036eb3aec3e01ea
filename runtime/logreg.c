/* logreg.c: logistic regression by L-BFGS over dense or CSR features (see logreg.h).
 *
 * Reading order: per-row loss, the dense and sparse accumulation kernels, the
 * threaded objective, the change of variables used while fitting, fit, predict.
 *
 * Why own kernels rather than sgemm for the dense products: with 6 classes the
 * products are [n,768]x[768,6], memory-bound, and the gradient must be summed
 * in float64 (a float32 sum over 16,000 rows is noisier than tol = 1e-4); the
 * fused pass reads each row of X once per evaluation (logits, loss and gradient
 * while the row is in cache) and converts float32 to float64 in registers,
 * where sgemm would need a float64 copy of X (2x the memory) and two passes.
 * Threads split the rows (OpenMP, mb_threads()) with per-thread gradient sums
 * reduced in a fixed order, so results do not depend on scheduling.
 */
#include "logreg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "parallel.h"

/* Rows per scheduling chunk of the threaded loops. */
#define ROW_CHUNK 64

mb_logreg_options mb_logreg_defaults(void) {
    mb_logreg_options o = {1.0, 100, 1e-4, 0.0, 1, 1};
    return o;
}

/* ---- one row ------------------------------------------------------------ */

/* z: [P] logits of the parameter rows (P = 1 for binary: class 1 against a zero
   logit for class 0). Returns the row's loss logsumexp - z_y and writes
   e = p - onehot(y) per parameter row; proba (if not NULL) gets all K probabilities. */
static double row_loss(const double *z, int P, int binary, int y, double *e, double *proba) {
    if (binary) {
        double z1 = z[0];
        double lse = fmax(z1, 0.0) + log1p(exp(-fabs(z1)));
        double p1 = z1 >= 0 ? 1.0 / (1.0 + exp(-z1)) : exp(z1) / (1.0 + exp(z1));
        if (e) e[0] = p1 - (y == 1);
        if (proba) {
            proba[0] = 1.0 - p1;
            proba[1] = p1;
        }
        return y < 0 ? 0.0 : lse - (y == 1 ? z1 : 0.0);
    }
    double m = z[0];
    for (int k = 1; k < P; k++) m = z[k] > m ? z[k] : m;
    double s = 0;
    for (int k = 0; k < P; k++) s += exp(z[k] - m);
    double lse = m + log(s);
    for (int k = 0; k < P; k++) {
        double p = exp(z[k] - lse);
        if (e) e[k] = p - (k == y);
        if (proba) proba[k] = p;
    }
    return y < 0 ? 0.0 : lse - z[y];
}

/* ---- kernels ------------------------------------------------------------ */
/* gW[k, j] += sum_r E[r, k] x[r, j] over the rows of one chunk, by tiles of 8
   columns: three classes' partial sums stay in registers across the rows, so
   gW is read and written once per chunk instead of once per row. */
#define GRAD_TILE 8
static inline __attribute__((always_inline)) void dense_grad_tiles(const float *X, int64_t d, int64_t r0, int64_t r1,
                                                                   const double *E, int P, double *gW) {
    int64_t nr = r1 - r0, j0 = 0;
    for (; j0 + GRAD_TILE <= d; j0 += GRAD_TILE) {
        int k = 0;
        for (; k + 3 <= P; k += 3) {
            double *g0 = gW + (int64_t)k * d + j0, *g1 = g0 + d, *g2 = g1 + d;
            double a0[GRAD_TILE], a1[GRAD_TILE], a2[GRAD_TILE];
            for (int t = 0; t < GRAD_TILE; t++) { a0[t] = g0[t]; a1[t] = g1[t]; a2[t] = g2[t]; }
            for (int64_t r = 0; r < nr; r++) {
                const float *x = X + (r0 + r) * d + j0;
                double e0 = E[r * P + k], e1 = E[r * P + k + 1], e2 = E[r * P + k + 2];
#pragma omp simd
                for (int t = 0; t < GRAD_TILE; t++) {
                    double xv = (double)x[t];
                    a0[t] += e0 * xv;
                    a1[t] += e1 * xv;
                    a2[t] += e2 * xv;
                }
            }
            for (int t = 0; t < GRAD_TILE; t++) { g0[t] = a0[t]; g1[t] = a1[t]; g2[t] = a2[t]; }
        }
        for (; k < P; k++) {
            double *g0 = gW + (int64_t)k * d + j0, a0[GRAD_TILE];
            for (int t = 0; t < GRAD_TILE; t++) a0[t] = g0[t];
            for (int64_t r = 0; r < nr; r++) {
                const float *x = X + (r0 + r) * d + j0;
                double e0 = E[r * P + k];
#pragma omp simd
                for (int t = 0; t < GRAD_TILE; t++) a0[t] += e0 * (double)x[t];
            }
            for (int t = 0; t < GRAD_TILE; t++) g0[t] = a0[t];
        }
    }
    for (; j0 < d; j0++) /* the last d % 8 columns */
        for (int k = 0; k < P; k++) {
            double s = 0;
            for (int64_t r = 0; r < nr; r++) s += E[r * P + k] * (double)X[(r0 + r) * d + j0];
            gW[(int64_t)k * d + j0] += s;
        }
}

/* Dense rows [r0, r1): logits z = W x + b in float64 from float32 x, the loss,
   and (when gW) the gradient gW += e x^T, gb += e. W: [P, d]; scratch: 2P + K
   doubles. These loops are the whole cost of a fit: the body is compiled for
   AVX-512, AVX2+FMA and the baseline, and dense_rows picks one at run time. */
static inline __attribute__((always_inline)) double
dense_rows_body(const float *X, int64_t d, int64_t r0, int64_t r1, const int32_t *y, const double *W, const double *b,
                int P, int binary, double *gW, double *gb, float *proba, int K, double *scratch) {
    double *z = scratch, *e = z + P, *pr = e + P, *E = pr + K; /* E: [ROW_CHUNK, P] residuals */
    double f = 0;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = X + r * d;
        /* four classes per pass: x is loaded once and the four sums are
           independent dependency chains (one reduction chain would be
           latency-bound) */
        int k = 0;
        for (; k + 4 <= P; k += 4) {
            const double *w0 = W + (int64_t)k * d, *w1 = w0 + d, *w2 = w1 + d, *w3 = w2 + d;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
            for (int64_t j = 0; j < d; j++) {
                double xj = (double)x[j];
                s0 += xj * w0[j];
                s1 += xj * w1[j];
                s2 += xj * w2[j];
                s3 += xj * w3[j];
            }
            z[k] = s0 + b[k];
            z[k + 1] = s1 + b[k + 1];
            z[k + 2] = s2 + b[k + 2];
            z[k + 3] = s3 + b[k + 3];
        }
        if (k + 2 <= P) {
            const double *w0 = W + (int64_t)k * d, *w1 = w0 + d;
            double s0 = 0, s1 = 0;
#pragma omp simd reduction(+ : s0, s1)
            for (int64_t j = 0; j < d; j++) {
                double xj = (double)x[j];
                s0 += xj * w0[j];
                s1 += xj * w1[j];
            }
            z[k] = s0 + b[k];
            z[k + 1] = s1 + b[k + 1];
            k += 2;
        }
        if (k < P) {
            const double *w0 = W + (int64_t)k * d;
            double s0 = 0;
#pragma omp simd reduction(+ : s0)
            for (int64_t j = 0; j < d; j++) s0 += (double)x[j] * w0[j];
            z[k] = s0 + b[k];
        }
        f += row_loss(z, P, binary, y ? y[r] : -1, gW ? e : NULL, proba ? pr : NULL);
        if (proba)
            for (int k = 0; k < K; k++) proba[r * K + k] = (float)pr[k];
        if (!gW) continue;
        for (k = 0; k < P; k++) {
            E[(r - r0) * P + k] = e[k];
            gb[k] += e[k];
        }
    }
    if (gW) dense_grad_tiles(X, d, r0, r1, E, P, gW);
    return f;
}

#define DENSE_ROWS_ARGS                                                                                       \
    const float *X, int64_t d, int64_t r0, int64_t r1, const int32_t *y, const double *W, const double *b, int P,  \
        int binary, double *gW, double *gb, float *proba, int K, double *scratch
#define DENSE_ROWS_CALL dense_rows_body(X, d, r0, r1, y, W, b, P, binary, gW, gb, proba, K, scratch)
__attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"), optimize("fp-contract=fast"))) static double dense_rows_avx512(DENSE_ROWS_ARGS) {
    return DENSE_ROWS_CALL;
}
__attribute__((target("avx2,fma"), optimize("fp-contract=fast"))) static double dense_rows_avx2(DENSE_ROWS_ARGS) { return DENSE_ROWS_CALL; }
static double dense_rows_generic(DENSE_ROWS_ARGS) { return DENSE_ROWS_CALL; }

static double dense_rows(DENSE_ROWS_ARGS) {
    static int level = -1; /* races only write the same value */
    if (level < 0) {
        __builtin_cpu_init();
        level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512vl")
                    ? 2
                    : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
    }
    if (level == 2) return dense_rows_avx512(X, d, r0, r1, y, W, b, P, binary, gW, gb, proba, K, scratch);
    if (level == 1) return dense_rows_avx2(X, d, r0, r1, y, W, b, P, binary, gW, gb, proba, K, scratch);
    return dense_rows_generic(X, d, r0, r1, y, W, b, P, binary, gW, gb, proba, K, scratch);
}

/* CSR rows [r0, r1). WT: [d, P] (feature-major so a row touches P adjacent
   values per entry); gWT: [d, P] accumulated the same way. */
static double sparse_rows(const mb_csr *X, int64_t r0, int64_t r1, const int32_t *y, const double *WT,
                          const double *b, int P, int binary, double *gWT, double *gb, float *proba, int K,
                          double *scratch) {
    double *z = scratch, *e = z + P, *pr = e + P;
    double f = 0;
    for (int64_t r = r0; r < r1; r++) {
        for (int k = 0; k < P; k++) z[k] = b[k];
        for (int64_t p = X->indptr[r]; p < X->indptr[r + 1]; p++) {
            const double *w = WT + (int64_t)X->indices[p] * P;
            double v = X->data[p];
            for (int k = 0; k < P; k++) z[k] += v * w[k];
        }
        f += row_loss(z, P, binary, y ? y[r] : -1, gWT ? e : NULL, proba ? pr : NULL);
        if (proba)
            for (int k = 0; k < K; k++) proba[r * K + k] = (float)pr[k];
        if (!gWT) continue;
        for (int64_t p = X->indptr[r]; p < X->indptr[r + 1]; p++) {
            double *g = gWT + (int64_t)X->indices[p] * P;
            double v = X->data[p];
            for (int k = 0; k < P; k++) g[k] += v * e[k];
        }
        for (int k = 0; k < P; k++) gb[k] += e[k];
    }
    return f;
}

/* ---- the threaded objective ------------------------------------------- */

typedef struct objective {
    const mb_design *X;
    const int32_t *y;
    int P, K, binary;
    int nthreads;
    double *WT;   /* sparse: [d, P] scratch */
    double *part; /* per thread: [P*d + P] gradient partial sums */
    double *scratch; /* per thread: [2P + K + ROW_CHUNK*P] logits, residuals, probabilities, chunk residuals */
} objective;

static int objective_init(objective *o, const mb_design *X, const int32_t *y, int K, int want_grad, mb_error *err) {
    memset(o, 0, sizeof *o);
    o->X = X;
    o->y = y;
    o->K = K;
    o->binary = K == 2;
    o->P = o->binary ? 1 : K;
    double work = (double)X->n * (double)(X->csr ? (X->csr->nnz / (X->n ? X->n : 1) + 1) : X->d) * o->P;
    o->nthreads = work > 2e5 && X->n >= 2 * ROW_CHUNK ? mb_threads() : 1;
    size_t gsize = (size_t)o->P * (size_t)X->d + (size_t)o->P;
    if (X->csr) {
        o->WT = malloc(sizeof(double) * ((size_t)o->P * (size_t)X->d + 1));
        if (!o->WT) goto nomem;
    }
    o->scratch = malloc(sizeof(double) * (size_t)((2 + ROW_CHUNK) * o->P + K) * (size_t)o->nthreads);
    if (!o->scratch) goto nomem;
    if (want_grad) {
        o->part = malloc(sizeof(double) * gsize * (size_t)o->nthreads);
        if (!o->part) goto nomem;
    }
    return 0;
nomem:
    free(o->WT);
    free(o->part);
    free(o->scratch);
    mb_fail(err, MB_ERR_NOMEM, "logistic regression: out of memory for the gradient (%lld features, %d threads)",
            (long long)X->d, o->nthreads);
    return -1;
}

static void objective_free(objective *o) {
    free(o->scratch);
    free(o->WT);
    free(o->part);
}

/* Data term of J at (W [P,d], b [P]) and, when gW, its gradient; proba (n x K)
   optional. Regularisation is added by the caller. */
static double data_term(objective *o, const double *W, const double *b, double *gW, double *gb, float *proba) {
    const mb_design *X = o->X;
    int P = o->P;
    int64_t d = X->d, n = X->n;
    size_t gsize = (size_t)P * (size_t)d + (size_t)P;
    if (X->csr)
        for (int64_t j = 0; j < d; j++)
            for (int k = 0; k < P; k++) o->WT[j * P + k] = W[(int64_t)k * d + j];
    double f = 0;
    int want = gW != NULL;
#pragma omp parallel num_threads(o->nthreads) reduction(+ : f)
    {
        int t = omp_get_thread_num();
        double *g = want ? o->part + gsize * (size_t)t : NULL;
        double *scratch = o->scratch + (size_t)((2 + ROW_CHUNK) * P + o->K) * (size_t)t;
        if (g) memset(g, 0, sizeof(double) * gsize);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < (n + ROW_CHUNK - 1) / ROW_CHUNK; c++) {
            int64_t r0 = c * ROW_CHUNK, r1 = r0 + ROW_CHUNK < n ? r0 + ROW_CHUNK : n;
            if (X->csr)
                f += sparse_rows(X->csr, r0, r1, o->y, o->WT, b, P, o->binary, g, g ? g + (size_t)P * d : NULL, proba,
                                 o->K, scratch);
            else
                f += dense_rows(X->dense, d, r0, r1, o->y, W, b, P, o->binary, g, g ? g + (size_t)P * d : NULL, proba,
                                o->K, scratch);
        }
    }
    if (!want) return f;
    /* reduce the per-thread partial sums (always in thread order: deterministic) */
    memset(gW, 0, sizeof(double) * (size_t)P * d);
    memset(gb, 0, sizeof(double) * P);
    for (int t = 0; t < o->nthreads; t++) {
        const double *g = o->part + gsize * (size_t)t;
        if (X->csr) {
            for (int64_t j = 0; j < d; j++)
                for (int k = 0; k < P; k++) gW[(int64_t)k * d + j] += g[j * P + k];
        } else {
            for (size_t i = 0; i < (size_t)P * d; i++) gW[i] += g[i];
        }
        for (int k = 0; k < P; k++) gb[k] += g[(size_t)P * d + k];
    }
    return f;
}

/* ---- fitting: J in standardised coordinates ----------------------------- */
/* theta = [V (P x d), c (P)] with W = V / s (per feature) and b = c - W mu:
   the logits W x + b = V (x - mu)/s + c are those of standardised features,
   which L-BFGS handles far better than raw uncentred ones. s = 1, mu = 0 turns
   it off (sparse input, or precondition = 0). */
typedef struct fit_ctx {
    objective obj;
    double invC;
    int fit_intercept;
    double *mu, *s;        /* [d] */
    double *W, *b, *gW, *gb; /* original-space parameters and gradient */
} fit_ctx;

static void theta_to_params(fit_ctx *c, const double *theta) {
    int P = c->obj.P;
    int64_t d = c->obj.X->d;
    for (int k = 0; k < P; k++) {
        double shift = 0;
        for (int64_t j = 0; j < d; j++) {
            double w = theta[(int64_t)k * d + j] / c->s[j];
            c->W[(int64_t)k * d + j] = w;
            shift += w * c->mu[j];
        }
        c->b[k] = c->fit_intercept ? theta[(int64_t)P * d + k] - shift : 0.0;
    }
}

static double fit_eval(void *ctx, const double *theta, double *g) {
    fit_ctx *c = ctx;
    int P = c->obj.P;
    int64_t d = c->obj.X->d;
    theta_to_params(c, theta);
    double f = data_term(&c->obj, c->W, c->b, c->gW, c->gb, NULL);
    double reg = 0;
    for (int64_t i = 0; i < (int64_t)P * d; i++) {
        reg += c->W[i] * c->W[i];
        c->gW[i] += c->W[i] * c->invC;
    }
    f += 0.5 * c->invC * reg;
    /* chain rule: dJ/dV = (dJ/dW - dJ/db mu) / s, dJ/dc = dJ/db */
    for (int k = 0; k < P; k++)
        for (int64_t j = 0; j < d; j++)
            g[(int64_t)k * d + j] = (c->gW[(int64_t)k * d + j] - (c->fit_intercept ? c->gb[k] * c->mu[j] : 0)) / c->s[j];
    if (c->fit_intercept)
        for (int k = 0; k < P; k++) g[(int64_t)P * d + k] = c->gb[k];
    return f;
}

/* max |dJ/dW|, |dJ/db| in the original parameters, recovered from the
   standardised gradient: dJ/dW = dJ/dV s + dJ/db mu. */
static double fit_criterion(void *ctx, const double *theta, const double *g) {
    fit_ctx *c = ctx;
    int P = c->obj.P;
    int64_t d = c->obj.X->d;
    double m = 0;
    for (int k = 0; k < P; k++) {
        double gb = c->fit_intercept ? g[(int64_t)P * d + k] : 0;
        for (int64_t j = 0; j < d; j++) m = fmax(m, fabs(g[(int64_t)k * d + j] * c->s[j] + gb * c->mu[j]));
        m = fmax(m, fabs(gb));
    }
    return m;
}

static mb_status check_design(const mb_design *X, const char *what, mb_error *err) {
    if (!X || (!X->dense == !X->csr)) return mb_fail(err, MB_ERR_ARG, "%s: X must be a dense matrix or a CSR matrix", what);
    if (X->n < 0 || X->d < 0) return mb_fail(err, MB_ERR_SHAPE, "%s: bad shape of X", what);
    if (X->csr && (X->csr->nrows != X->n || X->csr->ncols != X->d))
        return mb_fail(err, MB_ERR_SHAPE, "%s: CSR shape does not match", what);
    return MB_OK;
}

static mb_logreg *fit_design(const mb_design *X, const int32_t *y, int n_classes, const mb_logreg_options *opts_in,
                             mb_error *err) {
    mb_logreg_options o = opts_in ? *opts_in : mb_logreg_defaults();
    if (check_design(X, "fit", err)) return NULL;
    if (!(o.C > 0) || !isfinite(o.C)) { mb_fail(err, MB_ERR_ARG, "C must be a positive number (got %g)", o.C); return NULL; }
    if (o.max_iter < 0) { mb_fail(err, MB_ERR_ARG, "max_iter must be >= 0 (got %d)", o.max_iter); return NULL; }
    if (!(o.tol >= 0)) { mb_fail(err, MB_ERR_ARG, "tol must be >= 0 (got %g)", o.tol); return NULL; }
    if (n_classes < 2) {
        mb_fail(err, MB_ERR_ARG, "logistic regression needs samples of at least 2 classes in the data, but the data "
                                 "contains only one class");
        return NULL;
    }
    if (X->n < 1) { mb_fail(err, MB_ERR_SHAPE, "fit: X has no rows"); return NULL; }
    for (int64_t i = 0; i < X->n; i++)
        if (y[i] < 0 || y[i] >= n_classes) {
            mb_fail(err, MB_ERR_RANGE, "fit: label %d at row %lld is outside [0, %d)", y[i], (long long)i + 1, n_classes);
            return NULL;
        }
    if (X->dense)
        for (int64_t i = 0; i < X->n * X->d; i++)
            if (!isfinite(X->dense[i])) {
                mb_fail(err, MB_ERR_NUMERIC, "fit: X has a non-finite value at row %lld", (long long)(i / X->d) + 1);
                return NULL;
            }

    int64_t d = X->d;
    mb_logreg *m = calloc(1, sizeof *m);
    fit_ctx c;
    memset(&c, 0, sizeof c);
    double *theta = NULL;
    if (!m) goto nomem;
    if (objective_init(&c.obj, X, y, n_classes, 1, err)) {
        free(m);
        return NULL;
    }
    int P = c.obj.P;
    size_t nw = (size_t)P * (size_t)d;
    m->n_classes = n_classes;
    m->n_rows = P;
    m->n_features = d;
    m->coef = malloc(sizeof(float) * (nw ? nw : 1));
    m->intercept = malloc(sizeof(float) * P);
    c.mu = calloc((size_t)d + 1, sizeof(double));
    c.s = malloc(sizeof(double) * ((size_t)d + 1));
    c.W = malloc(sizeof(double) * (nw + 1));
    c.gW = malloc(sizeof(double) * (nw + 1));
    c.b = calloc((size_t)P, sizeof(double));
    c.gb = calloc((size_t)P, sizeof(double));
    int ntheta = (int)(nw + (o.fit_intercept ? P : 0));
    theta = calloc((size_t)ntheta + 1, sizeof(double));
    if (!m->coef || !m->intercept || !c.mu || !c.s || !c.W || !c.gW || !c.b || !c.gb || !theta) goto nomem;
    c.invC = 1.0 / o.C;
    c.fit_intercept = o.fit_intercept;
    for (int64_t j = 0; j < d; j++) c.s[j] = 1.0;
    if (X->dense && o.precondition) {
        /* per-feature mean and standard deviation (two-pass, float64) */
        for (int64_t i = 0; i < X->n; i++)
            for (int64_t j = 0; j < d; j++) c.mu[j] += X->dense[i * d + j];
        for (int64_t j = 0; j < d; j++) c.mu[j] /= (double)X->n;
        double *var = calloc((size_t)d + 1, sizeof(double));
        if (!var) goto nomem;
        for (int64_t i = 0; i < X->n; i++)
            for (int64_t j = 0; j < d; j++) {
                double t = X->dense[i * d + j] - c.mu[j];
                var[j] += t * t;
            }
        for (int64_t j = 0; j < d; j++) {
            double sd = sqrt(var[j] / (double)X->n);
            c.s[j] = sd > 1e-12 * (1.0 + fabs(c.mu[j])) ? sd : 1.0;
        }
        free(var);
        if (!o.fit_intercept) memset(c.mu, 0, sizeof(double) * (size_t)d); /* centring needs an intercept */
    }

    mb_lbfgs_options lo = mb_lbfgs_defaults();
    lo.max_iter = o.max_iter;
    lo.gtol = o.tol;
    lo.ftol = o.ftol;
    mb_lbfgs_result r;
    if (mb_lbfgs_minimize(ntheta, theta, fit_eval, fit_criterion, &c, &lo, &r, err)) {
        mb_error_prefix(err, "logistic regression fit: ");
        goto fail;
    }
    theta_to_params(&c, theta);
    for (size_t i = 0; i < nw; i++) m->coef[i] = (float)c.W[i];
    for (int k = 0; k < P; k++) m->intercept[k] = (float)c.b[k];
    m->n_iter = r.n_iter;
    m->n_eval = r.n_eval;
    m->stop = r.stop;
    m->converged = r.stop == MB_LBFGS_CONVERGED_GTOL || r.stop == MB_LBFGS_CONVERGED_FTOL;
    m->objective = r.f;
    m->grad_max = r.criterion;
    objective_free(&c.obj);
    free(c.mu); free(c.s); free(c.W); free(c.gW); free(c.b); free(c.gb); free(theta);
    return m;
nomem:
    mb_fail(err, MB_ERR_NOMEM, "logistic regression fit: out of memory (%lld features)", (long long)d);
fail:
    objective_free(&c.obj);
    free(c.mu); free(c.s); free(c.W); free(c.gW); free(c.b); free(c.gb); free(theta);
    mb_logreg_free(m);
    return NULL;
}

/* CSR input often has many columns that are zero in every row (WordPiece ids
   that never occur). Their weights are exactly 0 at the optimum (the gradient
   there is W/C), so the fit runs on the used columns only and spreads the
   coefficients back: the same optimum with a smaller L-BFGS state. */
mb_logreg *mb_logreg_fit(const mb_design *X, const int32_t *y, int n_classes, const mb_logreg_options *opts,
                         mb_error *err) {
    if (check_design(X, "fit", err)) return NULL;
    if (!X->csr) return fit_design(X, y, n_classes, opts, err);
    const mb_csr *A = X->csr;
    int32_t *map = malloc(sizeof(int32_t) * ((size_t)A->ncols + 1));
    if (!map) {
        mb_fail(err, MB_ERR_NOMEM, "fit: out of memory");
        return NULL;
    }
    for (int64_t j = 0; j < A->ncols; j++) map[j] = -1;
    for (int64_t p = 0; p < A->nnz; p++) map[A->indices[p]] = 0;
    int32_t used = 0;
    for (int64_t j = 0; j < A->ncols; j++)
        if (map[j] == 0) map[j] = used++;
    if (used == A->ncols || used == 0) {
        free(map);
        return fit_design(X, y, n_classes, opts, err);
    }
    mb_csr *B = mb_csr_new(A->nrows, used, A->nnz, err);
    if (!B) {
        free(map);
        return NULL;
    }
    memcpy(B->indptr, A->indptr, sizeof(int64_t) * ((size_t)A->nrows + 1));
    memcpy(B->data, A->data, sizeof(float) * (size_t)A->nnz);
    for (int64_t p = 0; p < A->nnz; p++) B->indices[p] = map[A->indices[p]]; /* order kept: map is increasing */
    mb_design Xc = {X->n, used, NULL, B};
    mb_logreg *m = fit_design(&Xc, y, n_classes, opts, err);
    mb_csr_free(B);
    if (!m) {
        free(map);
        return NULL;
    }
    float *coef = calloc((size_t)m->n_rows * (size_t)A->ncols, sizeof(float));
    if (!coef) {
        free(map);
        mb_logreg_free(m);
        mb_fail(err, MB_ERR_NOMEM, "fit: out of memory");
        return NULL;
    }
    for (int k = 0; k < m->n_rows; k++)
        for (int64_t j = 0; j < A->ncols; j++)
            if (map[j] >= 0) coef[(int64_t)k * A->ncols + j] = m->coef[(int64_t)k * used + map[j]];
    free(m->coef);
    m->coef = coef;
    m->n_features = A->ncols;
    free(map);
    return m;
}

void mb_logreg_free(mb_logreg *m) {
    if (!m) return;
    free(m->coef);
    free(m->intercept);
    free(m);
}

/* ---- prediction --------------------------------------------------------- */

static mb_status eval_at_model(const mb_logreg *m, const mb_design *X, const int32_t *y, double C, float *proba,
                               double *objective_out, double *grad_max, mb_error *err) {
    if (!m) return mb_fail(err, MB_ERR_STATE, "the model is not fitted");
    if (check_design(X, "predict", err)) return err ? err->code : MB_ERR_ARG;
    if (X->d != m->n_features)
        return mb_fail(err, MB_ERR_SHAPE, "X has %lld features, but the model was fitted with %lld features",
                       (long long)X->d, (long long)m->n_features);
    objective o;
    if (objective_init(&o, X, y, m->n_classes, grad_max != NULL, err)) return err ? err->code : MB_ERR_NOMEM;
    int P = o.P;
    size_t nw = (size_t)P * (size_t)X->d;
    double *W = malloc(sizeof(double) * (nw + 1)), *b = malloc(sizeof(double) * P);
    double *gW = grad_max ? malloc(sizeof(double) * (nw + 1)) : NULL, *gb = grad_max ? malloc(sizeof(double) * P) : NULL;
    if (!W || !b || (grad_max && (!gW || !gb))) {
        free(W); free(b); free(gW); free(gb);
        objective_free(&o);
        return mb_fail(err, MB_ERR_NOMEM, "logistic regression: out of memory");
    }
    for (size_t i = 0; i < nw; i++) W[i] = m->coef[i];
    for (int k = 0; k < P; k++) b[k] = m->intercept[k];
    double f = data_term(&o, W, b, gW, gb, proba);
    if (objective_out) {
        double reg = 0;
        for (size_t i = 0; i < nw; i++) reg += W[i] * W[i];
        *objective_out = f + 0.5 / C * reg;
    }
    if (grad_max) {
        double mx = 0;
        for (size_t i = 0; i < nw; i++) mx = fmax(mx, fabs(gW[i] + W[i] / C));
        for (int k = 0; k < P; k++) mx = fmax(mx, fabs(gb[k]));
        *grad_max = mx;
    }
    free(W); free(b); free(gW); free(gb);
    objective_free(&o);
    return MB_OK;
}

mb_status mb_logreg_predict_proba(const mb_logreg *m, const mb_design *X, float *proba, mb_error *err) {
    return eval_at_model(m, X, NULL, 1.0, proba, NULL, NULL, err);
}

mb_status mb_logreg_predict(const mb_logreg *m, const mb_design *X, int32_t *pred, mb_error *err) {
    if (!m) return mb_fail(err, MB_ERR_STATE, "the model is not fitted");
    int K = m->n_classes;
    float *proba = malloc(sizeof(float) * (size_t)(X ? X->n : 0) * K + 1);
    if (!proba) return mb_fail(err, MB_ERR_NOMEM, "predict: out of memory");
    mb_status st = mb_logreg_predict_proba(m, X, proba, err);
    if (st == MB_OK)
        for (int64_t i = 0; i < X->n; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (proba[i * K + k] > proba[i * K + best]) best = k;
            pred[i] = best;
        }
    free(proba);
    return st;
}

mb_status mb_logreg_objective(const mb_logreg *m, const mb_design *X, const int32_t *y, double C, double *objective_out,
                              double *grad_max, mb_error *err) {
    if (!(C > 0)) return mb_fail(err, MB_ERR_ARG, "C must be positive (got %g)", C);
    if (!y) return mb_fail(err, MB_ERR_ARG, "objective: labels are missing");
    for (int64_t i = 0; m && X && i < X->n; i++)
        if (y[i] < 0 || y[i] >= m->n_classes)
            return mb_fail(err, MB_ERR_RANGE, "label %d at row %lld is outside [0, %d)", y[i], (long long)i + 1,
                           m->n_classes);
    return eval_at_model(m, X, y, C, NULL, objective_out, grad_max, err);
}
