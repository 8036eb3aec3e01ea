/* lbfgs.c: L-BFGS with a strong-Wolfe line search (see lbfgs.h). */
#include "lbfgs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mb_lbfgs_options mb_lbfgs_defaults(void) {
    mb_lbfgs_options o = {10, 100, 1e-5, 0.0, 20};
    return o;
}

const char *mb_lbfgs_stop_name(mb_lbfgs_stop stop) {
    switch (stop) {
    case MB_LBFGS_CONVERGED_GTOL: return "converged (gradient)";
    case MB_LBFGS_CONVERGED_FTOL: return "converged (relative decrease)";
    case MB_LBFGS_MAX_ITER: return "max_iter reached";
    case MB_LBFGS_STALLED: return "line search stalled";
    }
    return "?";
}

/* simd reductions: the two-loop recursion is ~4m dot/axpy passes over n
   values per iteration, a real cost next to a sparse objective. */
static double dot(int n, const double *a, const double *b) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(int n, double a, const double *x, double *y) {
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static double max_abs(int n, const double *a) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double v = fabs(a[i]);
        if (v > m || isnan(v)) m = v;
    }
    return m;
}

/* Minimiser of the cubic through (a, fa, da) and (b, fb, db); NAN if none. */
static double cubic_min(double a, double fa, double da, double b, double fb, double db) {
    double d1 = da + db - 3 * (fa - fb) / (a - b);
    double disc = d1 * d1 - da * db;
    if (!(disc >= 0)) return NAN;
    double d2 = copysign(sqrt(disc), b - a);
    double t = b - (b - a) * (db + d2 - d1) / (db - da + 2 * d2);
    return isfinite(t) ? t : NAN;
}

typedef struct ls_point {
    double a, f, d; /* step, value, directional derivative */
} ls_point;

typedef struct ls_ctx {
    int n;
    const double *x0, *dir;
    double *x, *g; /* trial point and its gradient */
    mb_lbfgs_eval eval;
    void *ctx;
    int evals;
} ls_ctx;

static ls_point ls_eval(ls_ctx *c, double a) {
    for (int i = 0; i < c->n; i++) c->x[i] = c->x0[i] + a * c->dir[i];
    double f = c->eval(c->ctx, c->x, c->g);
    c->evals++;
    ls_point p = {a, f, dot(c->n, c->g, c->dir)};
    if (!isfinite(p.f) || !isfinite(p.d)) p.f = INFINITY;
    return p;
}

/* Strong-Wolfe line search. On success the trial buffers hold the accepted
   point and its gradient; returns 1. Returns 0 when no point with a
   sufficient decrease was found (buffers then hold x0 + best*dir if best
   decreased f at all, signalled by *decreased). */
static int line_search(ls_ctx *c, double f0, double d0, double a_init, int max_evals, ls_point *out, int *decreased) {
    const double c1 = 1e-4, c2 = 0.9;
    ls_point prev = {0, f0, d0}, best = prev, lo, hi;
    double a = a_init;
    *decreased = 0;
    int zoom = 0;
    lo = hi = prev;
    while (c->evals < max_evals) {
        ls_point p = ls_eval(c, a);
        if (p.f < best.f) best = p;
        if (p.f > f0 + c1 * a * d0 || (prev.a > 0 && p.f >= prev.f)) {
            lo = prev; hi = p; zoom = 1;
            break;
        }
        if (fabs(p.d) <= -c2 * d0) { *out = p; return 1; }
        if (p.d >= 0) {
            lo = p; hi = prev; zoom = 1;
            break;
        }
        prev = p;
        a *= 4; /* still descending: extrapolate (scipy's dcsrch allows up to 4x) */
    }
    while (zoom && c->evals < max_evals) {
        double lo_a = fmin(lo.a, hi.a), hi_a = fmax(lo.a, hi.a), width = hi_a - lo_a;
        if (width <= 1e-15 * hi_a) break;
        double t = isfinite(hi.f) ? cubic_min(lo.a, lo.f, lo.d, hi.a, hi.f, hi.d) : NAN;
        if (!(t >= lo_a + 0.1 * width && t <= hi_a - 0.1 * width)) t = 0.5 * (lo.a + hi.a);
        ls_point p = ls_eval(c, t);
        if (p.f < best.f) best = p;
        if (p.f > f0 + c1 * t * d0 || p.f >= lo.f) {
            hi = p;
        } else {
            if (fabs(p.d) <= -c2 * d0) { *out = p; return 1; }
            if (p.d * (hi.a - lo.a) >= 0) hi = lo;
            lo = p;
        }
    }
    /* No strong-Wolfe point within the budget: take the best decrease found
       (re-evaluated so that the trial buffers hold it). */
    if (best.a > 0 && best.f < f0) {
        *out = ls_eval(c, best.a);
        *decreased = 1;
        return best.f <= f0 + c1 * best.a * d0;
    }
    return 0;
}

mb_status mb_lbfgs_minimize(int n, double *x, mb_lbfgs_eval eval, mb_lbfgs_criterion criterion, void *ctx,
                            const mb_lbfgs_options *opts_in, mb_lbfgs_result *result, mb_error *err) {
    mb_lbfgs_options o = opts_in ? *opts_in : mb_lbfgs_defaults();
    if (n <= 0) return mb_fail(err, MB_ERR_ARG, "lbfgs: nothing to optimise (n = %d)", n);
    if (o.memory < 1 || o.memory > 64) return mb_fail(err, MB_ERR_ARG, "lbfgs: memory must be in 1..64 (got %d)", o.memory);
    if (o.max_iter < 0) return mb_fail(err, MB_ERR_ARG, "lbfgs: max_iter must be >= 0 (got %d)", o.max_iter);
    if (!(o.gtol >= 0) || !(o.ftol >= 0)) return mb_fail(err, MB_ERR_ARG, "lbfgs: tolerances must be >= 0");
    if (o.max_linesearch < 1) o.max_linesearch = 20;
    int m = o.memory;
    size_t nn = (size_t)n;
    double *buf = malloc(sizeof(double) * nn * (5 + 2 * (size_t)m) + sizeof(double) * 2 * (size_t)m);
    if (!buf) return mb_fail(err, MB_ERR_NOMEM, "lbfgs: out of memory (%d variables, memory %d)", n, m);
    double *g = buf, *d = g + nn, *xt = d + nn, *gt = xt + nn, *x0 = gt + nn;
    double *S = x0 + nn, *Y = S + nn * m, *rho = Y + nn * m, *alpha = rho + m;
    int k = 0, head = 0, count = 0, evals = 0;
    mb_lbfgs_result r = {MB_LBFGS_MAX_ITER, 0, 0, 0, 0};

    double f = eval(ctx, x, g);
    evals++;
    if (!isfinite(f)) {
        free(buf);
        return mb_fail(err, MB_ERR_NUMERIC, "lbfgs: objective is not finite at the starting point");
    }
    double crit = criterion ? criterion(ctx, x, g) : max_abs(n, g);
    if (crit <= o.gtol) r.stop = MB_LBFGS_CONVERGED_GTOL;
    while (r.stop == MB_LBFGS_MAX_ITER && k < o.max_iter) {
        /* two-loop recursion: d = -H g */
        for (int i = 0; i < n; i++) d[i] = -g[i];
        for (int j = 0; j < count; j++) {
            int idx = (head - 1 - j + m) % m;
            alpha[idx] = rho[idx] * dot(n, S + nn * idx, d);
            axpy(n, -alpha[idx], Y + nn * idx, d);
        }
        if (count > 0) {
            int last = (head - 1 + m) % m;
            double gamma = 1.0 / (rho[last] * dot(n, Y + nn * last, Y + nn * last));
            for (int i = 0; i < n; i++) d[i] *= gamma;
        }
        for (int j = count - 1; j >= 0; j--) {
            int idx = (head - 1 - j + m) % m;
            double b = rho[idx] * dot(n, Y + nn * idx, d);
            axpy(n, alpha[idx] - b, S + nn * idx, d);
        }
        double d0 = dot(n, g, d);
        if (!(d0 < 0)) { /* not a descent direction (lost curvature): restart from steepest descent */
            count = 0;
            for (int i = 0; i < n; i++) d[i] = -g[i];
            d0 = dot(n, g, d);
            if (!(d0 < 0)) { r.stop = MB_LBFGS_STALLED; break; }
        }
        double a_init = count == 0 ? 1.0 / sqrt(dot(n, g, g)) : 1.0;
        if (count == 0 && k > 0) a_init = fmin(1.0, a_init);
        memcpy(x0, x, sizeof(double) * nn);
        ls_ctx lc = {n, x0, d, xt, gt, eval, ctx, 0};
        ls_point p;
        int decreased;
        int ok = line_search(&lc, f, d0, a_init, o.max_linesearch, &p, &decreased);
        evals += lc.evals;
        if (!ok && !decreased) {
            if (count > 0) { /* retry once along steepest descent before giving up */
                count = 0;
                head = 0;
                continue;
            }
            r.stop = MB_LBFGS_STALLED;
            break;
        }
        /* accept: s = xt - x, y = gt - g */
        double *s = S + nn * head, *y = Y + nn * head;
        for (int i = 0; i < n; i++) {
            s[i] = xt[i] - x[i];
            y[i] = gt[i] - g[i];
        }
        double sy = dot(n, s, y);
        if (sy > 1e-10 * sqrt(dot(n, y, y)) * sqrt(dot(n, s, s))) { /* keep only pairs with positive curvature */
            rho[head] = 1.0 / sy;
            head = (head + 1) % m;
            if (count < m) count++;
        }
        double f_prev = f;
        memcpy(x, xt, sizeof(double) * nn);
        memcpy(g, gt, sizeof(double) * nn);
        f = p.f;
        k++;
        crit = criterion ? criterion(ctx, x, g) : max_abs(n, g);
        if (crit <= o.gtol) r.stop = MB_LBFGS_CONVERGED_GTOL;
        else if (o.ftol > 0 && (f_prev - f) / fmax(fmax(fabs(f_prev), fabs(f)), 1.0) <= o.ftol)
            r.stop = MB_LBFGS_CONVERGED_FTOL;
        else if (!ok)
            r.stop = MB_LBFGS_STALLED;
    }
    r.n_iter = k;
    r.n_eval = evals;
    r.f = f;
    r.criterion = crit;
    if (result) *result = r;
    free(buf);
    return MB_OK;
}
