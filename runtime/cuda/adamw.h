/* adamw.h: the per-element AdamW update and the clipping factor, host and device.
 *
 * torch.optim.AdamW (decoupled weight decay, bias-corrected moments) and
 * torch.nn.utils.clip_grad_norm_ exactly as the distilbert-tiny fixture
 * states them:
 *   g *= min(1, max_norm / (norm + 1e-6))
 *   p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * The fused kernel applies mb_adamw_update to every element of the trainable
 * tensors in one launch; the host test runs the same function over the CPU
 * model's gradients against the fixture's 5-step trajectory.
 */
#ifndef MB_CUDA_ADAMW_H
#define MB_CUDA_ADAMW_H

#include <math.h>

#include "hd.h"

/* Factor the gradients are multiplied by (1 when no clipping applies). */
MB_HD float mb_clip_factor(double norm, float max_norm) {
    if (!(max_norm > 0.0f)) return 1.0f;
    double c = (double)max_norm / (norm + 1e-6);
    return c < 1.0 ? (float)c : 1.0f;
}

/* bc1 = 1 - b1^t, bc2_sqrt = sqrt(1 - b2^t) (computed once per step on the host). */
MB_HD void mb_adamw_update(float *p, float *m, float *v, float g, float lr, float b1, float b2, float eps, float wd,
                           float bc1, float bc2_sqrt) {
    float pv = *p * (1.0f - lr * wd);
    float mv = b1 * *m + (1.0f - b1) * g;
    float vv = b2 * *v + (1.0f - b2) * g * g;
    *m = mv;
    *v = vv;
    *p = pv - (lr / bc1) * mv / (sqrtf(vv) / bc2_sqrt + eps);
}

#endif
