/* optim.c: AdamW, SGD, gradient clipping and learning-rate schedules.
 *
 * The elementwise updates follow PyTorch 1.13's single-tensor code paths
 * (torch/optim/adamw.py, sgd.py) operation by operation in float32, with the
 * scalar coefficients (bias corrections, step size) computed in double as
 * Python does, so that trajectories match a PyTorch run to rounding.
 */
#include "optim.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

int mb_param_decays(const char *name) {
    if (!name) return 1;
    size_t n = strlen(name);
    if (n >= 4 && strcmp(name + n - 4, "bias") == 0) return 0;
    if (strstr(name, "LayerNorm") || strstr(name, "layer_norm")) return 0;
    return 1;
}

mb_optim_config mb_adamw_defaults(void) {
    mb_optim_config c = {0};
    c.kind = MB_OPTIM_ADAMW;
    c.lr = 1e-3;
    c.weight_decay = 0.01;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    return c;
}

mb_optim_config mb_sgd_defaults(void) {
    mb_optim_config c = {0};
    c.kind = MB_OPTIM_SGD;
    c.lr = 1e-3;
    return c;
}

static mb_status check_config(const mb_optim_config *c, mb_error *err) {
    if (!(c->lr >= 0) || !isfinite(c->lr)) return mb_fail(err, MB_ERR_ARG, "lr must be a finite number >= 0 (got %g)", c->lr);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return mb_fail(err, MB_ERR_ARG, "weight_decay must be a finite number >= 0 (got %g)", c->weight_decay);
    if (c->kind == MB_OPTIM_ADAMW) {
        if (!(c->beta1 >= 0 && c->beta1 < 1)) return mb_fail(err, MB_ERR_ARG, "betas[1] must be in [0, 1) (got %g)", c->beta1);
        if (!(c->beta2 >= 0 && c->beta2 < 1)) return mb_fail(err, MB_ERR_ARG, "betas[2] must be in [0, 1) (got %g)", c->beta2);
        if (!(c->eps >= 0)) return mb_fail(err, MB_ERR_ARG, "eps must be >= 0 (got %g)", c->eps);
    } else if (c->kind == MB_OPTIM_SGD) {
        if (!(c->momentum >= 0)) return mb_fail(err, MB_ERR_ARG, "momentum must be >= 0 (got %g)", c->momentum);
        if (!(c->dampening >= 0)) return mb_fail(err, MB_ERR_ARG, "dampening must be >= 0 (got %g)", c->dampening);
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return mb_fail(err, MB_ERR_ARG, "nesterov momentum requires momentum > 0 and dampening 0");
    } else {
        return mb_fail(err, MB_ERR_ARG, "unknown optimizer kind %d", (int)c->kind);
    }
    return MB_OK;
}

mb_optim *mb_optim_new(const mb_param_ref *params, int nparams, const mb_optim_config *cfg, mb_error *err) {
    if (nparams < 0 || (nparams > 0 && !params)) {
        mb_fail(err, MB_ERR_ARG, "parameter list is missing");
        return NULL;
    }
    if (check_config(cfg, err)) return NULL;
    int64_t total = 0;
    for (int i = 0; i < nparams; i++) {
        const mb_param_ref *p = &params[i];
        if (p->numel < 0) {
            mb_fail(err, MB_ERR_ARG, "parameter %d: negative size %lld", i + 1, (long long)p->numel);
            return NULL;
        }
        if (p->frozen) continue;
        if (p->numel > 0 && (!p->value || !p->grad)) {
            mb_fail(err, MB_ERR_ARG, "parameter %d: %s buffer is missing", i + 1, p->value ? "grad" : "value");
            return NULL;
        }
        total += p->numel;
    }
    mb_optim *opt = calloc(1, sizeof *opt);
    if (!opt) goto nomem;
    opt->cfg = *cfg;
    opt->nparams = nparams;
    opt->state_numel = total;
    opt->params = malloc((size_t)(nparams ? nparams : 1) * sizeof *opt->params);
    opt->state_offset = malloc((size_t)(nparams ? nparams : 1) * sizeof *opt->state_offset);
    if (!opt->params || !opt->state_offset) goto nomem;
    if (nparams) memcpy(opt->params, params, (size_t)nparams * sizeof *params);
    int64_t off = 0;
    for (int i = 0; i < nparams; i++) {
        opt->state_offset[i] = params[i].frozen ? -1 : off;
        if (!params[i].frozen) off += params[i].numel;
    }
    int need_m = cfg->kind == MB_OPTIM_ADAMW || cfg->momentum > 0;
    if (need_m) {
        opt->m = calloc((size_t)(total ? total : 1), sizeof(float));
        if (!opt->m) goto nomem;
    }
    if (cfg->kind == MB_OPTIM_ADAMW) {
        opt->v = calloc((size_t)(total ? total : 1), sizeof(float));
        if (!opt->v) goto nomem;
    }
    return opt;
nomem:
    mb_optim_free(opt);
    mb_fail(err, MB_ERR_NOMEM, "optimizer state: out of memory (%lld trainable values)", (long long)total);
    return NULL;
}

void mb_optim_free(mb_optim *opt) {
    if (!opt) return;
    free(opt->params);
    free(opt->state_offset);
    free(opt->m);
    free(opt->v);
    free(opt);
}

/* p, g, m, v: [n]. Mirrors torch.optim.adamw._single_tensor_adamw. */
/* one_m_b1, one_m_b2 are 1 - beta computed in double as Python does: 1.0f - 0.999f
   would be off by 1.3e-5 relative (cancellation), which shows in trajectories. */
typedef struct {
    float decay, beta1, beta2, one_m_b1, one_m_b2, step_size, bc2_sqrt, eps;
} adamw_coefs;

/* One thread's span, vectorised: AVX-512 does 16 elements per instruction.
   sqrt and division are correctly rounded in every lane, and -std=c11 keeps
   contraction off, so each lane computes exactly what the scalar loop (and
   PyTorch's per-op float32 code) computes. The Makefile builds this file with
   -fno-math-errno so that sqrtf becomes vsqrtps instead of a call guarded for
   negative inputs (vi >= 0 here). */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void adamw_span(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, long lo,
                       long hi, const adamw_coefs *c) {
    const float decay = c->decay, beta1 = c->beta1, beta2 = c->beta2, one_m_b1 = c->one_m_b1,
                one_m_b2 = c->one_m_b2, step_size = c->step_size, bc2_sqrt = c->bc2_sqrt, eps = c->eps;
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        float gi = g[i];
        float pi = p[i] * decay;
        float mi = m[i] * beta1 + gi * one_m_b1;
        float vi = v[i] * beta2 + gi * gi * one_m_b2;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi - step_size * (mi / denom);
    }
}

static void adamw_update(float *p, const float *g, float *m, float *v, long n, const adamw_coefs *c) {
    PAR_SPANS(n, adamw_span(p, g, m, v, lo, hi, c));
}

/* Mirrors torch.optim.sgd._single_tensor_sgd; buf is NULL without momentum. */
static void sgd_update(float *restrict p, const float *restrict g, float *restrict buf, int64_t n, float lr, float wd,
                       float momentum, float one_m_dampening, int nesterov, int first) {
#pragma omp parallel for num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        if (buf) {
            float b = first ? d : buf[i] * momentum + one_m_dampening * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] = p[i] - lr * d;
    }
}

mb_status mb_optim_step(mb_optim *opt, double lr, mb_error *err) {
    if (!opt) return mb_fail(err, MB_ERR_STATE, "optimizer is freed");
    if (!isfinite(lr) || lr < 0) return mb_fail(err, MB_ERR_ARG, "lr must be a finite number >= 0 (got %g)", lr);
    const mb_optim_config *c = &opt->cfg;
    opt->step++;
    if (c->kind == MB_OPTIM_ADAMW) {
        double t = (double)opt->step;
        double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
        float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
        for (int i = 0; i < opt->nparams; i++) {
            const mb_param_ref *p = &opt->params[i];
            if (p->frozen || p->numel == 0) continue;
            double wd = p->weight_decay ? c->weight_decay : 0.0;
            int64_t o = opt->state_offset[i];
            adamw_coefs k = {(float)(1.0 - lr * wd), (float)c->beta1, (float)c->beta2, (float)(1.0 - c->beta1),
                             (float)(1.0 - c->beta2), step_size, bc2_sqrt, (float)c->eps};
            adamw_update(p->value, p->grad, opt->m + o, opt->v + o, p->numel, &k);
        }
    } else {
        int first = !opt->momentum_started;
        for (int i = 0; i < opt->nparams; i++) {
            const mb_param_ref *p = &opt->params[i];
            if (p->frozen || p->numel == 0) continue;
            float wd = p->weight_decay ? (float)c->weight_decay : 0.0f;
            float *buf = c->momentum > 0 ? opt->m + opt->state_offset[i] : NULL;
            sgd_update(p->value, p->grad, buf, p->numel, (float)lr, wd, (float)c->momentum, (float)(1.0 - c->dampening),
                       c->nesterov, first);
        }
        if (c->momentum > 0) opt->momentum_started = 1;
    }
    return MB_OK;
}

void mb_optim_zero_grad(mb_optim *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->nparams; i++)
        if (!opt->params[i].frozen && opt->params[i].numel > 0)
            memset(opt->params[i].grad, 0, (size_t)opt->params[i].numel * sizeof(float));
}

mb_status mb_clip_grad_norm(const mb_param_ref *params, int nparams, double max_norm, double *total_norm,
                            mb_error *err) {
    if (nparams > 0 && !params) return mb_fail(err, MB_ERR_ARG, "parameter list is missing");
    if (isnan(max_norm)) return mb_fail(err, MB_ERR_ARG, "max_norm must be a number (got nan)");
    double sq = 0.0;
    for (int i = 0; i < nparams; i++) {
        const mb_param_ref *p = &params[i];
        if (p->frozen || p->numel == 0) continue;
        if (!p->grad) return mb_fail(err, MB_ERR_ARG, "parameter %d: grad buffer is missing", i + 1);
        const float *g = p->grad;
        int64_t n = p->numel;
        double s = 0.0;
#pragma omp parallel for simd num_threads(mb_threads()) if (n > MB_PAR_MIN) reduction(+ : s) schedule(static)
        for (int64_t j = 0; j < n; j++) s += (double)g[j] * (double)g[j];
        sq += s;
    }
    double norm = sqrt(sq);
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm) || !(max_norm > 0) || isinf(max_norm)) return MB_OK;
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1, computed in float32. */
    float coef = (float)(max_norm / (norm + 1e-6));
    if (coef >= 1.0f) return MB_OK; /* multiplying by 1 changes nothing */
    for (int i = 0; i < nparams; i++) {
        const mb_param_ref *p = &params[i];
        if (p->frozen || p->numel == 0) continue;
        float *g = p->grad;
        int64_t n = p->numel;
#pragma omp parallel for simd num_threads(mb_threads()) if (n > MB_PAR_MIN) schedule(static)
        for (int64_t j = 0; j < n; j++) g[j] *= coef;
    }
    return MB_OK;
}

int64_t mb_schedule_warmup_from_ratio(int64_t total_steps, double warmup_ratio) {
    if (!(warmup_ratio > 0) || total_steps <= 0) return 0;
    return (int64_t)ceil((double)total_steps * warmup_ratio);
}

mb_status mb_schedule_check(const mb_schedule *s, mb_error *err) {
    if (s->warmup_steps < 0) return mb_fail(err, MB_ERR_ARG, "warmup_steps must be >= 0 (got %lld)", (long long)s->warmup_steps);
    if (s->kind == MB_SCHEDULE_LINEAR || s->kind == MB_SCHEDULE_COSINE) {
        if (s->total_steps <= 0)
            return mb_fail(err, MB_ERR_ARG, "total_steps must be > 0 for a %s schedule (got %lld)",
                           s->kind == MB_SCHEDULE_LINEAR ? "linear" : "cosine", (long long)s->total_steps);
    } else if (s->kind != MB_SCHEDULE_CONSTANT) {
        return mb_fail(err, MB_ERR_ARG, "unknown schedule kind %d", (int)s->kind);
    }
    if (s->kind == MB_SCHEDULE_COSINE && !(s->num_cycles > 0))
        return mb_fail(err, MB_ERR_ARG, "num_cycles must be > 0 (got %g)", s->num_cycles);
    return MB_OK;
}

double mb_schedule_factor(const mb_schedule *s, int64_t step) {
    double w = (double)s->warmup_steps, t = (double)step;
    if (step < s->warmup_steps) return t / (w > 1 ? w : 1);
    switch (s->kind) {
    case MB_SCHEDULE_CONSTANT: return 1.0;
    case MB_SCHEDULE_LINEAR: {
        double span = (double)(s->total_steps - s->warmup_steps);
        double f = (double)(s->total_steps - step) / (span > 1 ? span : 1);
        return f > 0 ? f : 0.0;
    }
    case MB_SCHEDULE_COSINE: {
        double span = (double)(s->total_steps - s->warmup_steps);
        double progress = (t - w) / (span > 1 ? span : 1);
        double f = 0.5 * (1.0 + cos(M_PI * s->num_cycles * 2.0 * progress));
        return f > 0 ? f : 0.0;
    }
    }
    return 1.0;
}
