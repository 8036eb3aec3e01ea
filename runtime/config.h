/* config.h: the DistilBERT configuration (Hugging Face config.json).
 *
 * Every DistilBERT key is read: vocab_size, max_position_embeddings,
 * sinusoidal_pos_embds, n_layers, n_heads, dim, hidden_dim, dropout,
 * attention_dropout, activation ("gelu" or "relu"), initializer_range,
 * qa_dropout, seq_classif_dropout, pad_token_id, tie_weights_, id2label,
 * label2id, problem_type. The architecture keys (vocab_size, dim, n_layers,
 * n_heads, hidden_dim, max_position_embeddings) are required; the others take
 * the Hugging Face defaults. num_labels is the size of id2label (2 when absent,
 * as in transformers). The parsed JSON is kept so that keys we do not
 * interpret (transformers_version, architectures, ...) survive a save.
 *
 * Errors name the file and key: "config.json: n_heads (5) does not divide dim (64)".
 */
#ifndef MB_CONFIG_H
#define MB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define MB_MAX_LABELS 4096

typedef enum mb_problem_type {
    MB_PROBLEM_SINGLE_LABEL = 0, /* cross-entropy over int labels (HF default for int labels) */
    MB_PROBLEM_MULTI_LABEL,      /* BCE with logits over float targets [B,num_labels] */
    MB_PROBLEM_REGRESSION        /* MSE over float targets */
} mb_problem_type;

typedef enum mb_activation { MB_ACT_GELU = 0, MB_ACT_RELU } mb_activation;

typedef struct mb_distilbert_config {
    int vocab_size;
    int max_position_embeddings;
    int sinusoidal_pos_embds;
    int n_layers;
    int n_heads;
    int dim;
    int hidden_dim;
    float dropout;
    float attention_dropout;
    mb_activation activation;
    float initializer_range;
    float qa_dropout;
    float seq_classif_dropout;
    int pad_token_id;
    int tie_weights;
    int num_labels;
    char **id2label;          /* num_labels strings, owned */
    mb_problem_type problem_type;
    int problem_type_set;     /* 0: not in the file (HF infers it) */
    void *json;               /* json_t* of the whole file (or NULL), owned */
} mb_distilbert_config;

/* Defaults of transformers.DistilBertConfig() (distilbert-base-uncased sizes). */
void mb_config_defaults(mb_distilbert_config *cfg);

/* Parse config.json text; `source` names it in messages ("config.json"). */
mb_status mb_config_parse(mb_distilbert_config *cfg, const char *text, size_t len, const char *source,
                          mb_error *err);
mb_status mb_config_load(mb_distilbert_config *cfg, const char *path, mb_error *err);
/* Check sizes (positive, n_heads divides dim, dropouts in [0,1), pad id in
   the vocabulary, label names); called by parse and by model constructors. */
mb_status mb_config_validate(const mb_distilbert_config *cfg, const char *source, mb_error *err);

/* A batch's input_ids [B,T] against the sizes: not empty, T within
   max_position_embeddings, every id in the vocabulary (messages 1-based). */
mb_status mb_config_check_ids(const mb_distilbert_config *cfg, const int32_t *ids, int B, int T, mb_error *err);

/* Replace the labels: names may be NULL (LABEL_0, ...). */
mb_status mb_config_set_labels(mb_distilbert_config *cfg, int num_labels, const char *const *names, mb_error *err);
/* A loader's num_labels / id2label over the file's (0 and NULL: keep them);
   problem_type follows the count as in transformers unless the file sets it. */
mb_status mb_config_override_labels(mb_distilbert_config *cfg, int num_labels, const char *const *id2label,
                                    mb_error *err);
mb_status mb_config_copy(mb_distilbert_config *dst, const mb_distilbert_config *src, mb_error *err);
void mb_config_free(mb_distilbert_config *cfg);

/* Serialise as Hugging Face writes it (sorted keys, indent 2), including the
   keys kept from the file; architectures is set to `architecture` when given.
   Returns a malloc'd string. */
char *mb_config_to_json(const mb_distilbert_config *cfg, const char *architecture, mb_error *err);
mb_status mb_config_save(const mb_distilbert_config *cfg, const char *path, const char *architecture,
                         mb_error *err);

const char *mb_problem_type_name(mb_problem_type p);

#endif
