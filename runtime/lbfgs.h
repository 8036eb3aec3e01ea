/* lbfgs.h: unconstrained L-BFGS minimisation in float64.
 *
 * Nocedal & Wright, Numerical Optimization (2nd ed.): the two-loop recursion
 * (Alg. 7.4) with H0 = (s'y / y'y) I and a line search for the strong Wolfe
 * conditions (Alg. 3.5 bracketing + 3.6 zoom with safeguarded cubic
 * interpolation), c1 = 1e-4, c2 = 0.9. The first step has length 1/||g||,
 * as in scipy's L-BFGS-B.
 *
 * Stopping rule (checked after every accepted step, and at the start):
 *   converged   when criterion(x, g) <= gtol, where the criterion defaults to
 *               max_i |g_i| (scipy's pgtol test without bounds); callers may
 *               supply their own (logistic regression measures the gradient
 *               in the original parameters while optimising rescaled ones);
 *   converged   when ftol > 0 and (f_prev - f) / max(|f_prev|, |f|, 1) <= ftol
 *               (scipy's factr test; 0 turns it off);
 *   max_iter    when max_iter iterations were taken;
 *   stalled     when the line search finds no decrease (rounding level).
 * Limits: no bounds (this is L-BFGS, not L-BFGS-B); memory m <= 64.
 */
#ifndef MB_LBFGS_H
#define MB_LBFGS_H

#include "error.h"

/* Objective: returns f(x) and writes its gradient to g (both length n). A
   non-finite return is treated as "too far" by the line search. */
typedef double (*mb_lbfgs_eval)(void *ctx, const double *x, double *g);
/* Optional convergence measure; NULL means max|g|. */
typedef double (*mb_lbfgs_criterion)(void *ctx, const double *x, const double *g);

typedef struct mb_lbfgs_options {
    int memory;      /* correction pairs kept, default 10 (scipy maxcor) */
    int max_iter;    /* default 100 */
    double gtol;     /* default 1e-5 */
    double ftol;     /* default 0 (off) */
    int max_linesearch; /* function evaluations per line search, default 20 (scipy maxls) */
} mb_lbfgs_options;

typedef enum mb_lbfgs_stop {
    MB_LBFGS_CONVERGED_GTOL = 0,
    MB_LBFGS_CONVERGED_FTOL = 1,
    MB_LBFGS_MAX_ITER = 2,
    MB_LBFGS_STALLED = 3
} mb_lbfgs_stop;

typedef struct mb_lbfgs_result {
    mb_lbfgs_stop stop;
    int n_iter;        /* accepted steps */
    int n_eval;        /* objective evaluations */
    double f;          /* at the returned x */
    double criterion;  /* the stopping measure at the returned x */
} mb_lbfgs_result;

mb_lbfgs_options mb_lbfgs_defaults(void);
const char *mb_lbfgs_stop_name(mb_lbfgs_stop stop);

/* Minimise from x (length n, overwritten by the solution). Fails only on bad
   options, out of memory, or a non-finite objective at the start. */
mb_status mb_lbfgs_minimize(int n, double *x, mb_lbfgs_eval eval, mb_lbfgs_criterion criterion, void *ctx,
                            const mb_lbfgs_options *opts, mb_lbfgs_result *result, mb_error *err);

#endif
