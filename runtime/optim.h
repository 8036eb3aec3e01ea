/* optim.h: first-order optimizers over lists of float32 parameter buffers.
 *
 * AdamW and SGD (momentum, Nesterov) with PyTorch's update formulas, global
 * gradient-norm clipping (torch.nn.utils.clip_grad_norm_) and the Hugging Face
 * learning-rate schedules (linear / cosine / constant, with warmup).
 *
 * The optimizer steps over any list of (value, grad) float buffers: a model
 * whose parameters are views into one block passes pointers into that block,
 * so the same code serves Lua (mb.optim) and C callers. Each entry carries its
 * own weight-decay flag (Hugging Face's Trainer gives biases and LayerNorm
 * weights none) and a frozen flag. The optimizer state (moments, momentum
 * buffers) is one contiguous block laid out as the trainable parameters in
 * list order; frozen parameters get no state and are never touched.
 *
 * Limits: CPU float32 buffers; one learning rate for all groups (schedules
 * scale it); no AMSGrad, no maximize, no foreach/fused variants beyond one
 * threaded elementwise loop per parameter.
 */
#ifndef MB_OPTIM_H
#define MB_OPTIM_H

#include <stdint.h>

#include "error.h"

/* One parameter tensor as the optimizer sees it. */
typedef struct mb_param_ref {
    float *value;     /* [numel], updated in place */
    float *grad;      /* [numel], read (clip scales it in place) */
    int64_t numel;
    int weight_decay; /* 1: the optimizer's weight_decay applies; 0: none */
    int frozen;       /* 1: skipped by step and clipping, no state */
} mb_param_ref;

/* Hugging Face Trainer's default parameter groups: 0 (no weight decay) for
   names ending in "bias" and for LayerNorm weights (names containing
   "LayerNorm" or "layer_norm"), 1 otherwise. */
int mb_param_decays(const char *name);

typedef enum mb_optim_kind { MB_OPTIM_ADAMW = 0, MB_OPTIM_SGD = 1 } mb_optim_kind;

typedef struct mb_optim_config {
    mb_optim_kind kind;
    double lr;
    double weight_decay; /* AdamW: decoupled (p *= 1 - lr*wd); SGD: L2 added to the gradient */
    /* AdamW */
    double beta1, beta2, eps;
    /* SGD */
    double momentum, dampening;
    int nesterov;
} mb_optim_config;

/* PyTorch's defaults: AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01);
   SGD(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False). */
mb_optim_config mb_adamw_defaults(void);
mb_optim_config mb_sgd_defaults(void);

typedef struct mb_optim {
    mb_optim_config cfg;
    int64_t step;         /* steps taken (AdamW's t after a step) */
    int nparams;
    mb_param_ref *params; /* copied list (pointers are the caller's) */
    int64_t *state_offset;/* [nparams]: offset into the state block, -1 if frozen */
    int64_t state_numel;  /* trainable elements */
    float *m;             /* AdamW first moment / SGD momentum buffer [state_numel] */
    float *v;             /* AdamW second moment [state_numel]; NULL for SGD */
    int momentum_started; /* SGD: buffers hold a value (first step copies g) */
} mb_optim;

/* Checks the list (non-NULL buffers, numel >= 0) and the config ranges
   (lr >= 0, 0 <= beta < 1, eps >= 0, momentum >= 0, nesterov needs momentum > 0
   and dampening 0, as PyTorch requires). State starts at zero. */
mb_optim *mb_optim_new(const mb_param_ref *params, int nparams, const mb_optim_config *cfg, mb_error *err);
void mb_optim_free(mb_optim *opt);

/* One update of every non-frozen parameter with learning rate lr (the
   schedule's value for this step). Fails on a non-finite lr. */
mb_status mb_optim_step(mb_optim *opt, double lr, mb_error *err);

/* Zero the gradients of the non-frozen parameters. */
void mb_optim_zero_grad(mb_optim *opt);

/* torch.nn.utils.clip_grad_norm_(params, max_norm): the L2 norm of all the
   non-frozen gradients together (accumulated in float64) is returned in
   *total_norm (before clipping); the gradients are multiplied by
   min(1, max_norm / (norm + 1e-6)). max_norm <= 0 or infinite only measures.
   A non-finite norm is returned as is and leaves the gradients alone. */
mb_status mb_clip_grad_norm(const mb_param_ref *params, int nparams, double max_norm, double *total_norm,
                            mb_error *err);

/* ---- learning-rate schedules (Hugging Face transformers.optimization) --- */
typedef enum mb_schedule_kind {
    MB_SCHEDULE_CONSTANT = 0, /* get_constant_schedule_with_warmup */
    MB_SCHEDULE_LINEAR = 1,   /* get_linear_schedule_with_warmup */
    MB_SCHEDULE_COSINE = 2    /* get_cosine_schedule_with_warmup (num_cycles 0.5) */
} mb_schedule_kind;

typedef struct mb_schedule {
    mb_schedule_kind kind;
    int64_t warmup_steps;
    int64_t total_steps; /* needed by linear and cosine */
    double num_cycles;   /* cosine; 0.5 = half a cosine down to 0 */
} mb_schedule;

/* Warmup steps from a ratio of the total, as the Trainer does: ceil(total * ratio). */
int64_t mb_schedule_warmup_from_ratio(int64_t total_steps, double warmup_ratio);
mb_status mb_schedule_check(const mb_schedule *s, mb_error *err);
/* The multiplier of the base learning rate for the step with 0-based index
   `step` (LambdaLR semantics: the first step uses factor(0)). */
double mb_schedule_factor(const mb_schedule *s, int64_t step);

#endif
