/* classifier_loss.c: see classifier_loss.h. */
#include "classifier_loss.h"

#include <math.h>

#include "layers.h"

mb_status mb_classifier_loss(mb_problem_type problem, const float *logits, const int32_t *labels,
                             const float *targets, int B, int L, float *per_ex, float *probs, float *dlogits,
                             double *loss, mb_error *err) {
    if (problem == MB_PROBLEM_SINGLE_LABEL) {
        if (!labels) return mb_fail(err, MB_ERR_DTYPE, "single-label classification needs integer labels");
        for (int b = 0; b < B; b++)
            if (labels[b] != -100 && (labels[b] < 0 || labels[b] >= L))
                return mb_fail(err, MB_ERR_RANGE, "labels[%d] = %d is outside 0..%d (num_labels %d)", b + 1, labels[b],
                               L - 1, L);
        int count;
        crossentropy_forward(per_ex, probs, logits, labels, B, L, loss, &count);
        if (count == 0) return mb_fail(err, MB_ERR_ARG, "every label is -100 (ignored): the loss is undefined");
        if (isfinite(*loss)) crossentropy_backward(dlogits, probs, labels, B, L, 1.0f / count);
        return MB_OK;
    }
    if (!targets)
        return mb_fail(err, MB_ERR_DTYPE, "%s needs float targets [%d,%d]", mb_problem_type_name(problem), B, L);
    int bce = problem == MB_PROBLEM_MULTI_LABEL;
    const long n = (long)B * L;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        double row = 0.0;
        for (int j = 0; j < L; j++) {
            long i = (long)b * L + j;
            double z = logits[i], y = targets[i];
            row += bce ? fmax(z, 0.0) - z * y + log1p(exp(-fabs(z))) : (z - y) * (z - y);
            dlogits[i] = (float)((bce ? 1.0 / (1.0 + exp(-z)) - y : 2.0 * (z - y)) / n);
        }
        per_ex[b] = (float)(row / L);
        total += row;
    }
    *loss = total / n;
    return MB_OK;
}
