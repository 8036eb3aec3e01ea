/* param_info.c: building a parameter table and Hugging Face's initialisation
 * of one tensor, shared by every model (see param_info.h). */
#include "param_info.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mb_param_add(mb_param_info *info, int *idx, size_t *off, const char *name, int rows, int cols,
                  mb_param_kind kind, int encoder) {
    mb_param_info *pi = &info[(*idx)++];
    snprintf(pi->name, sizeof pi->name, "%s", name);
    pi->offset = *off;
    pi->ndim = cols ? 2 : 1;
    pi->shape[0] = rows;
    pi->shape[1] = cols;
    pi->numel = (size_t)rows * (cols ? (size_t)cols : 1);
    pi->no_decay = kind != MB_PARAM_WEIGHT;
    pi->encoder = encoder;
    *off += pi->numel;
}

mb_status mb_param_blocks_alloc(size_t n, float **params, float **grads, mb_error *err) {
    *params = calloc(n, sizeof(float));
    *grads = calloc(n, sizeof(float));
    if (*params && *grads) return MB_OK;
    free(*params);
    free(*grads);
    *params = *grads = NULL;
    return mb_fail(err, MB_ERR_NOMEM, "out of memory for %zu parameters (%.1f MB twice)", n, n * 4.0 / 1e6);
}

int mb_param_find(const mb_param_info *info, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(info[i].name, name) == 0) return i;
    return -1;
}

void mb_param_init_hf(const mb_param_info *pi, float *w, float sd, int pad_id, int sinusoidal, mb_rng *rng) {
    const char *name = pi->name;
    size_t len = strlen(name);
    int is_ln = strstr(name, "LayerNorm") || strstr(name, "layer_norm");
    int is_bias = len > 5 && strcmp(name + len - 5, ".bias") == 0; /* cls.predictions.bias included */
    if (is_bias) {
        memset(w, 0, pi->numel * sizeof(float));
    } else if (is_ln) {
        for (size_t k = 0; k < pi->numel; k++) w[k] = 1.0f;
    } else if (sinusoidal && strstr(name, "position_embeddings")) {
        int P = (int)pi->shape[0], D = (int)pi->shape[1];
        for (int pos = 0; pos < P; pos++)
            for (int j = 0; j < D; j++) {
                double angle = pos / pow(10000.0, 2.0 * (j / 2) / D);
                w[(size_t)pos * D + j] = (float)((j % 2 == 0) ? sin(angle) : cos(angle));
            }
    } else {
        for (size_t k = 0; k < pi->numel; k++) w[k] = (float)(mb_rng_normal(rng) * sd);
        if (strstr(name, "word_embeddings")) memset(w + (size_t)pad_id * pi->shape[1], 0, pi->shape[1] * sizeof(float));
    }
}
