/* model_folder.h: the Hugging Face model-folder pieces that every model
 * (distilbert.h, distilbert_heads.h, distilbert_mlm.h, bert.h) shares: reading
 * a checkpoint's tensors into a parameter table (name fallbacks, shape and
 * dtype checks, initialising what is missing), the load warnings in
 * transformers' words, and writing config.json + model.safetensors.
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

/* A growing ", "-separated list of quoted tensor names ('a', 'b'), for warnings. */
typedef struct mb_name_list {
    char *s;
    size_t len, cap;
    int n;
} mb_name_list;
void mb_name_list_add(mb_name_list *l, const char *name);
const char *mb_name_list_str(const mb_name_list *l); /* "" when empty */
void mb_name_list_free(mb_name_list *l);

/* The warnings text of a model being built (*warnings NULL or malloc'd):
   append a line (printf-style); append transformers' "Some weights of ARCH
   were not initialized from the model checkpoint at DIR and are newly
   initialized: [MISSING]" with its advice to train. */
void mb_warnings_append(char **warnings, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mb_warn_newly_initialized(char **warnings, const char *architecture, const char *dir, const char *missing);

/* dir/model.safetensors opened; path (size cap) gets its name for messages. */
mb_safetensors *mb_model_folder_open(const char *dir, char *path, size_t cap, mb_error *err);

/* How a model finds and fills its tensors in a checkpoint. */
typedef struct mb_ckpt_rules {
    const char *family;      /* "DistilBERT": named when a required tensor is missing */
    const char *base_prefix; /* "distilbert.": a base model's checkpoint names encoder tensors without it (NULL: none) */
    int legacy_layernorm;    /* also look for old LayerNorm.gamma / .beta names */
    const char *optional;    /* encoder tensors whose name holds this may be missing too (NULL: none) */
    const char *head_hint;   /* appended to a head tensor's shape mismatch ("" for none) */
    void (*init)(void *model, int i); /* initialise tensor i, which the checkpoint lacks */
} mb_ckpt_rules;

/* Read tensors 0..n-1 (info, into params + info[i].offset) from st, the file
   at path. A missing encoder tensor (pi->encoder and not optional) is an
   error; any other missing one is initialised with rules->init(model, i) and
   its name added to missing. used (NULL, or st->n_tensors flags) marks the
   checkpoint tensors read. */
mb_status mb_params_read(const mb_safetensors *st, const char *path, const mb_ckpt_rules *rules, void *model,
                         const mb_param_info *info, int n, float *params, char *used, mb_name_list *missing,
                         mb_error *err);

/* Tensor i of a model being saved: its name and shape, and *data its values. */
typedef const mb_param_info *(*mb_param_at)(const void *model, int i, const float **data);

/* Create dir, then write dir/config.json (architectures [architecture]) and
   dir/model.safetensors holding tensors 0..n-1 of model as F32, with the
   "format": "pt" metadata that transformers requires. */
mb_status mb_model_folder_save(const char *dir, const mb_distilbert_config *cfg, const char *architecture,
                               const void *model, int n, mb_param_at at, mb_error *err);
/* The same with config.json's text given (another model type: bert.h); the
   file ends in a newline and is replaced whole. */
mb_status mb_model_folder_save_json(const char *dir, const char *config_json, const void *model, int n,
                                    mb_param_at at, mb_error *err);

#endif
