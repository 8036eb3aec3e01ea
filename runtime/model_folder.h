/* model_folder.h: the Hugging Face model-folder pieces that the sequence
 * classification model (distilbert.h) and the masked-LM model
 * (distilbert_mlm.h) share: checking and reading one checkpoint tensor into a
 * parameter, and writing config.json + model.safetensors.
 */
#ifndef MB_MODEL_FOLDER_H
#define MB_MODEL_FOLDER_H

#include "config.h"
#include "param_info.h"
#include "safetensors.h"

/* Read tensor t of the file at path into dst after checking it against pi:
   same shape (hint, which may be "", is appended to a mismatch message) and a
   float dtype (F32, F16 or BF16, converted to F32). */
mb_status mb_param_read(const char *path, const mb_st_tensor *t, const mb_param_info *pi, float *dst,
                        const char *hint, mb_error *err);

/* Tensor i of a model being saved: its name and shape, and *data its values. */
typedef const mb_param_info *(*mb_param_at)(const void *model, int i, const float **data);

/* Create dir, then write dir/config.json (architectures [architecture]) and
   dir/model.safetensors holding tensors 0..n-1 of model as F32, with the
   "format": "pt" metadata that transformers requires. cfg NULL: the caller
   writes config.json (another model type: bert.h). */
mb_status mb_model_folder_save(const char *dir, const mb_distilbert_config *cfg, const char *architecture,
                               const void *model, int n, mb_param_at at, mb_error *err);

#endif
