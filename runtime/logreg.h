/* logreg.h: L2-regularised logistic regression (scikit-learn's LogisticRegression, lbfgs).
 *
 * Minimises exactly what scikit-learn 1.2's lbfgs solver minimises (summed,
 * not averaged over examples):
 *   J(W, b) = sum_i [ logsumexp_k(x_i.W_k + b_k) - (x_i.W_{y_i} + b_{y_i}) ] + 0.5/C ||W||^2
 * multinomial for 3+ classes; for 2 classes, like scikit-learn, one weight row
 * for class 1 against a fixed zero logit for class 0. b is not penalised.
 *
 * X is dense float32 [n, d] (row-major) or CSR; the objective and gradient are
 * accumulated in float64 over threads (a float32 gradient summed over 16,000
 * rows is too noisy for a tolerance of 1e-4). CSR input is never densified.
 *
 * Stopping rule: L-BFGS (lbfgs.h, memory 10) from zero until
 *   max |dJ/dW, dJ/db| <= tol   (the gradient of J above, in the original parameters),
 * i.e. scikit-learn's gtol test with the same tol, but without scipy's
 * relative-decrease test (ftol 2.2e-9), which stops scikit-learn short of the
 * optimum; options.ftol restores it. Dense inputs are optimised in
 * standardised coordinates (features centred and scaled by their standard
 * deviation, folded into the parameters: an exact change of variables with the
 * same optimum), which cuts the iteration count on uncentred features (66
 * iterations instead of scikit-learn's 939 on the benchmark's data). CSR fits
 * run on the columns that occur (the others' weights are exactly 0 at the
 * optimum) and return coefficients for all columns.
 * Reaching max_iter leaves converged = 0 (the Lua layer warns, as scikit-learn does).
 */
#ifndef MB_LOGREG_H
#define MB_LOGREG_H

#include <stdint.h>

#include "error.h"
#include "lbfgs.h"
#include "sparse.h"

/* The design matrix: exactly one of dense / csr is set. */
typedef struct mb_design {
    int64_t n, d;
    const float *dense; /* [n, d] row-major, contiguous */
    const mb_csr *csr;  /* n x d */
} mb_design;

typedef struct mb_logreg_options {
    double C;          /* inverse regularisation strength, > 0; default 1 */
    int max_iter;      /* default 100 */
    double tol;        /* default 1e-4 */
    double ftol;       /* default 0 (off); scipy's default is 2.2e-9 */
    int fit_intercept; /* default 1 */
    int precondition;  /* standardise dense features internally; default 1 */
} mb_logreg_options;

typedef struct mb_logreg {
    int n_classes;
    int n_rows;        /* rows of coef: 1 when n_classes == 2, else n_classes */
    int64_t n_features;
    float *coef;       /* [n_rows, n_features] */
    float *intercept;  /* [n_rows] */
    /* fit report */
    int n_iter, n_eval, converged;
    mb_lbfgs_stop stop;
    double objective;  /* J at the solution */
    double grad_max;   /* max |gradient| at the solution */
} mb_logreg;

mb_logreg_options mb_logreg_defaults(void);

/* y: [n] class ids in [0, n_classes), n_classes >= 2. */
mb_logreg *mb_logreg_fit(const mb_design *X, const int32_t *y, int n_classes, const mb_logreg_options *opts,
                         mb_error *err);
void mb_logreg_free(mb_logreg *m);

/* proba: [n, n_classes] softmax probabilities. */
mb_status mb_logreg_predict_proba(const mb_logreg *m, const mb_design *X, float *proba, mb_error *err);
/* pred: [n] argmax of the probabilities (first on ties). */
mb_status mb_logreg_predict(const mb_logreg *m, const mb_design *X, int32_t *pred, mb_error *err);
/* J and max|grad J| at the model's coefficients (for tests and reports). */
mb_status mb_logreg_objective(const mb_logreg *m, const mb_design *X, const int32_t *y, double C, double *objective,
                              double *grad_max, mb_error *err);

#endif
