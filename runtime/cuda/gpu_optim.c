/* gpu_optim.c: AdamW and gradient clipping over device parameters (mb_cuda_optim in runtime/cuda.h).
 *
 * The device half of mb.optim: bindings/optim.c hands the same mb_param_ref
 * list it would give runtime/optim.c, with device pointers. The trainable
 * refs become a table of (value, grad, state offset, numel, weight decay):
 * the values and gradients may lie in any number of device blocks (the
 * masked-LM model has two: the encoder's and its head's), and the moments
 * are two device buffers laid out exactly as runtime/optim.c lays them out
 * (trainable refs in list order), so an optimizer.safetensors is the same
 * file on either device and the state moves with one copy each way. One
 * fused kernel launch per step (kernels.cu, adamw.h).
 *
 * Work goes to the legacy default stream, which is ordered with the model's
 * (blocking) stream: a step sees the gradients of the backward before it.
 * Nothing here allocates after construction; clipping keeps its scratch in
 * statics that only grow (one process, one device; Lua calls it from one thread).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "kernels.h"

struct mb_cuda_optim {
    mb_optim_config cfg;
    int64_t step, state_numel;
    int n;                   /* trainable refs (the table's length) */
    float *m, *v;            /* device [state_numel], runtime/optim.c's layout */
    mb_k_tensor *h_table;    /* host copy of the table [n] */
    mb_k_tensor *d_table;    /* device [n] */
    size_t max_numel;
};

/* The trainable refs of p as a table (state offsets in list order). wd: the
   decay of refs that take it. */
static mb_status ref_table(const mb_param_ref *p, int np, double wd, mb_k_tensor *tab, int *count, size_t *state_numel,
                           size_t *max_numel, mb_error *err) {
    if (np > 0 && !p) return mb_fail(err, MB_ERR_ARG, "parameter list is missing");
    int n = 0;
    size_t at = 0, mx = 0;
    for (int i = 0; i < np; i++) {
        if (p[i].frozen || p[i].numel <= 0) continue;
        if (!p[i].value || !p[i].grad)
            return mb_fail(err, MB_ERR_ARG, "parameter %d: %s buffer is missing", i + 1, p[i].value ? "grad" : "value");
        /* field by field: the padding stays as calloc left it, so a clip table compares with memcmp */
        tab[n].value = p[i].value;
        tab[n].grad = p[i].grad;
        tab[n].state = at;
        tab[n].numel = (size_t)p[i].numel;
        tab[n].weight_decay = p[i].weight_decay ? (float)wd : 0.0f;
        at += (size_t)p[i].numel;
        if ((size_t)p[i].numel > mx) mx = (size_t)p[i].numel;
        n++;
    }
    *count = n;
    *state_numel = at;
    *max_numel = mx;
    return MB_OK;
}

void mb_cuda_optim_free(mb_cuda_optim *o) {
    if (!o) return;
    if (o->m || o->v) cudaDeviceSynchronize(); /* no kernel may still write them */
    mb_cuda_free(o->m);
    mb_cuda_free(o->v);
    mb_cuda_free(o->d_table);
    free(o->h_table);
    free(o);
}

mb_cuda_optim *mb_cuda_optim_new(const mb_param_ref *params, int nparams, const mb_optim_config *cfg,
                                 mb_error *err) {
    if (mb_cuda_require(err) != MB_OK) return NULL;
    if (cfg->kind != MB_OPTIM_ADAMW) {
        mb_fail(err, MB_ERR_UNSUPPORTED, "only AdamW runs on the device (SGD is CPU only)");
        return NULL;
    }
    if (!(cfg->lr >= 0) || !isfinite(cfg->lr) || !(cfg->weight_decay >= 0) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) ||
        !(cfg->beta2 >= 0 && cfg->beta2 < 1) || !(cfg->eps >= 0)) {
        mb_fail(err, MB_ERR_ARG, "AdamW needs lr >= 0, weight_decay >= 0, betas in [0, 1) and eps >= 0");
        return NULL;
    }
    mb_cuda_optim *o = calloc(1, sizeof *o);
    if (!o || !(o->h_table = calloc((size_t)(nparams > 0 ? nparams : 1), sizeof *o->h_table))) {
        free(o);
        mb_fail(err, MB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->cfg = *cfg;
    size_t state;
    if (ref_table(params, nparams, cfg->weight_decay, o->h_table, &o->n, &state, &o->max_numel, err) != MB_OK)
        goto fail;
    o->state_numel = (int64_t)state;
    size_t bytes = (state ? state : 1) * sizeof(float);
    if (!(o->m = mb_cuda_malloc(bytes, err)) || !(o->v = mb_cuda_malloc(bytes, err)) ||
        !(o->d_table = mb_cuda_malloc((size_t)(o->n ? o->n : 1) * sizeof(mb_k_tensor), err)))
        goto fail;
    cudaError_t e;
    if ((e = cudaMemsetAsync(o->m, 0, bytes, 0)) != cudaSuccess || (e = cudaMemsetAsync(o->v, 0, bytes, 0)) != cudaSuccess) {
        mb_cuda_status(e, "cudaMemsetAsync (AdamW moments)", err);
        goto fail;
    }
    if (mb_cuda_memcpy_h2d(o->d_table, o->h_table, (size_t)o->n * sizeof(mb_k_tensor), err) != MB_OK) goto fail;
    return o;
fail:
    mb_cuda_optim_free(o);
    return NULL;
}

int64_t mb_cuda_optim_steps(const mb_cuda_optim *o) { return o->step; }
int64_t mb_cuda_optim_state_numel(const mb_cuda_optim *o) { return o->state_numel; }
const mb_optim_config *mb_cuda_optim_config(const mb_cuda_optim *o) { return &o->cfg; }

mb_status mb_cuda_optim_step(mb_cuda_optim *o, double lr, mb_error *err) {
    if (!isfinite(lr) || lr < 0) return mb_fail(err, MB_ERR_ARG, "lr must be a finite number >= 0 (got %g)", lr);
    const mb_optim_config *c = &o->cfg;
    o->step++;
    /* bias corrections in double, as runtime/optim.c computes them */
    double t = (double)o->step;
    float bc1 = (float)(1.0 - pow(c->beta1, t)), bc2s = (float)sqrt(1.0 - pow(c->beta2, t));
    CU_CHECK(mb_k_adamw(o->m, o->v, o->d_table, o->n, o->max_numel, (float)lr, (float)c->beta1, (float)c->beta2,
                        (float)c->eps, bc1, bc2s, 1.0f, 0));
    return MB_OK;
}

mb_status mb_cuda_optim_zero_grad(mb_cuda_optim *o, mb_error *err) {
    for (int i = 0; i < o->n; i++)
        CU_CHECK(cudaMemsetAsync(o->h_table[i].grad, 0, o->h_table[i].numel * sizeof(float), 0));
    return MB_OK;
}

/* The moments are in the CPU layout already: one copy each. */
mb_status mb_cuda_optim_get_state(mb_cuda_optim *o, float *m, float *v, int64_t *step, mb_error *err) {
    size_t bytes = (size_t)o->state_numel * sizeof(float);
    if (mb_cuda_memcpy_d2h(m, o->m, bytes, err) || mb_cuda_memcpy_d2h(v, o->v, bytes, err)) return err->code;
    *step = o->step;
    return MB_OK;
}

mb_status mb_cuda_optim_set_state(mb_cuda_optim *o, const float *m, const float *v, int64_t step, mb_error *err) {
    if (step < 0) return mb_fail(err, MB_ERR_ARG, "step must be >= 0 (got %lld)", (long long)step);
    size_t bytes = (size_t)o->state_numel * sizeof(float);
    if (mb_cuda_memcpy_h2d(o->m, m, bytes, err) || mb_cuda_memcpy_h2d(o->v, v, bytes, err)) return err->code;
    o->step = step;
    return MB_OK;
}

/* ---- clipping ------------------------------------------------------------------------------ */

static struct {
    mb_k_tensor *h, *d, *h_dev; /* h_dev: what d holds */
    int cap, n_dev;
    double *d_norm, *d_partial;
} clip_scratch;

void mb_cuda_release_scratch(void) {
    if (clip_scratch.d_norm) cudaDeviceSynchronize();
    mb_cuda_free(clip_scratch.d);
    mb_cuda_free(clip_scratch.d_partial);
    mb_cuda_free(clip_scratch.d_norm);
    free(clip_scratch.h);
    free(clip_scratch.h_dev);
    memset(&clip_scratch, 0, sizeof clip_scratch);
}

static mb_status clip_reserve(int n, mb_error *err) {
    if (n <= clip_scratch.cap) return MB_OK;
    cudaDeviceSynchronize();
    mb_cuda_free(clip_scratch.d);
    mb_cuda_free(clip_scratch.d_partial);
    free(clip_scratch.h);
    free(clip_scratch.h_dev);
    clip_scratch.h = NULL;
    clip_scratch.d = NULL;
    clip_scratch.d_partial = NULL;
    clip_scratch.h_dev = NULL;
    clip_scratch.cap = 0;
    clip_scratch.n_dev = -1;
    if (!clip_scratch.d_norm && !(clip_scratch.d_norm = mb_cuda_malloc(sizeof(double), err))) return err->code;
    clip_scratch.h = calloc((size_t)n, sizeof(mb_k_tensor));
    clip_scratch.h_dev = calloc((size_t)n, sizeof(mb_k_tensor));
    if (!clip_scratch.h || !clip_scratch.h_dev) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    if (!(clip_scratch.d = mb_cuda_malloc((size_t)n * sizeof(mb_k_tensor), err)) ||
        !(clip_scratch.d_partial = mb_cuda_malloc((size_t)n * MB_K_NORM_BLOCKS * sizeof(double), err)))
        return err->code;
    clip_scratch.cap = n;
    return MB_OK;
}

mb_status mb_cuda_clip_grad_norm(const mb_param_ref *params, int nparams, double max_norm, double *total_norm,
                                 mb_error *err) {
    if (mb_cuda_require(err) != MB_OK) return err->code;
    if (isnan(max_norm)) return mb_fail(err, MB_ERR_ARG, "max_norm must be a number (got nan)");
    if (clip_reserve(nparams > 0 ? nparams : 1, err) != MB_OK) return err->code;
    int n;
    size_t state, max_numel;
    if (ref_table(params, nparams, 0.0, clip_scratch.h, &n, &state, &max_numel, err) != MB_OK) return err->code;
    /* the table goes to the device only when it changes (a training loop passes the same list) */
    if (n != clip_scratch.n_dev || memcmp(clip_scratch.h, clip_scratch.h_dev, (size_t)n * sizeof(mb_k_tensor)) != 0) {
        if (mb_cuda_memcpy_h2d(clip_scratch.d, clip_scratch.h, (size_t)n * sizeof(mb_k_tensor), err) != MB_OK)
            return err->code;
        memcpy(clip_scratch.h_dev, clip_scratch.h, (size_t)n * sizeof(mb_k_tensor));
        clip_scratch.n_dev = n;
    }
    double sumsq = 0.0;
    CU_CHECK(mb_k_grad_sumsq(clip_scratch.d_norm, clip_scratch.d_partial, clip_scratch.d, n, 0));
    if (mb_cuda_memcpy_d2h(&sumsq, clip_scratch.d_norm, sizeof(double), err) != MB_OK) return err->code;
    double norm = sqrt(sumsq);
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm) || !(max_norm > 0) || isinf(max_norm)) return MB_OK;
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1, in float32 (as runtime/optim.c) */
    float coef = (float)(max_norm / (norm + 1e-6));
    if (coef >= 1.0f) return MB_OK;
    CU_CHECK(mb_k_scale_tensors(clip_scratch.d, n, max_numel, coef, 0));
    return MB_OK;
}
