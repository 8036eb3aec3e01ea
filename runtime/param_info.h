/* param_info.h: one tensor of a model's parameter block (DESIGN.md section 2).
 *
 * Every model keeps its parameters in one contiguous float block with named
 * views in the Hugging Face order; mb_param_info describes one view. Models
 * (distilbert.h, bert.h, distilbert_mlm.h, distilbert_heads.h) list them, and
 * model_folder.h reads and writes checkpoints from them, so the type sits
 * below both.
 */
#ifndef MB_PARAM_INFO_H
#define MB_PARAM_INFO_H

#include <stddef.h>
#include <stdint.h>

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

#endif
