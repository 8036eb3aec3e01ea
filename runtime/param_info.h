/* param_info.h: one tensor of a model's parameter block (DESIGN.md section 2).
 *
 * Every model keeps its parameters in one contiguous float block with named
 * views in the Hugging Face order; mb_param_info describes one view. Models
 * (distilbert.h, bert.h, distilbert_mlm.h, distilbert_heads.h) list them, and
 * model_folder.h reads and writes checkpoints from them, so the type sits
 * below both. param_info.c builds a table and initialises a tensor the way
 * every model does.
 */
#ifndef MB_PARAM_INFO_H
#define MB_PARAM_INFO_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"

#define MB_PARAM_NAME_MAX 96

typedef struct mb_param_info {
    char name[MB_PARAM_NAME_MAX]; /* Hugging Face state_dict name */
    size_t offset;                /* in floats, from the block base */
    size_t numel;
    int ndim;                     /* 1 or 2 */
    int64_t shape[2];
    int no_decay;                 /* biases and LayerNorm weights: no weight decay */
    int encoder;                  /* part of distilbert.* (frozen by freeze_encoder) */
} mb_param_info;

/* What a tensor is, for weight decay and initialisation. */
typedef enum mb_param_kind { MB_PARAM_WEIGHT = 0, MB_PARAM_BIAS, MB_PARAM_NORM } mb_param_kind;

/* Append tensor name [rows, cols] (cols 0: 1-D) to a table: info[*idx] is
   filled at float offset *off, and both advance. Biases and LayerNorm weights
   get no_decay. */
void mb_param_add(mb_param_info *info, int *idx, size_t *off, const char *name, int rows, int cols,
                  mb_param_kind kind, int encoder);

/* A parameter block and its gradient block of n floats each, zeroed; on
   failure both are NULL and err says how much was asked for. */
mb_status mb_param_blocks_alloc(size_t n, float **params, float **grads, mb_error *err);

/* Index of the tensor called name among info[0..n-1], -1 if absent. */
int mb_param_find(const mb_param_info *info, int n, const char *name);

/* Hugging Face _init_weights for one tensor w: biases 0, LayerNorm weights 1,
   sinusoidal position tables (when sinusoidal) sin/cos, every other weight
   N(0, sd) drawn from rng, with the pad_id row of the word embeddings 0. */
void mb_param_init_hf(const mb_param_info *pi, float *w, float sd, int pad_id, int sinusoidal, mb_rng *rng);

#endif
