/* bert.h: BERT (Hugging Face model_type "bert") with its task heads, on the CPU.
 *
 * The encoder is Hugging Face's BertModel: embeddings (word + learned
 * position + token type, LayerNorm layer_norm_eps, dropout), num_hidden_layers
 * post-LayerNorm blocks (self-attention with scores / sqrt(head size) and the
 * padding mask; attention.output dense -> dropout -> LayerNorm(x + .);
 * intermediate dense -> GELU (erf) or ReLU; output dense -> dropout ->
 * LayerNorm(. + .)) and, for sequence classification, the pooler
 * tanh(dense(h[:, 0])). One model object is one of HF's classes:
 *
 *   MB_BERT_SEQUENCE_CLASSIFICATION  BertForSequenceClassification: pooled -> dropout -> classifier
 *   MB_BERT_TOKEN_CLASSIFICATION     BertForTokenClassification: dropout(h) -> classifier, per token
 *   MB_BERT_QUESTION_ANSWERING       BertForQuestionAnswering: qa_outputs(h) -> start, end logits
 *   MB_BERT_MASKED_LM                BertForMaskedLM: cls.predictions.transform (dense, act,
 *                                    LayerNorm) + decoder TIED to the word embeddings + cls.predictions.bias
 *
 * (dropout of the classifiers: classifier_dropout, or hidden_dropout_prob when null.)
 *
 * Parameters: one block, HF state_dict order and names (bert.* first, then the
 * head); a gradient block of the same layout; mb_param_info (param_info.h).
 * freeze_encoder freezes every bert.* tensor (pooler included).
 *
 * Loading (mb_bert_load) follows transformers' rules: any BERT checkpoint
 * loads into any head (BertForPreTraining's bert-base-uncased included):
 * tensors the class does not use (cls.*, another head) are listed in a
 * warning and ignored; head tensors (and the pooler) the checkpoint lacks are
 * initialised (HF _init_weights) and listed; a base BertModel's names without
 * "bert." are accepted, and old checkpoints' LayerNorm.gamma / .beta are read as
 * .weight / .bias. A missing encoder tensor is an error.
 *
 * Activations: every layer's are kept for backward (forward with keep=1);
 * inference (keep=0) reuses one layer's buffers. Buffers grow to the largest
 * batch seen. Padded rows are computed (keys masked), as PyTorch does.
 *
 * Limits: CPU only, float32; absolute position embeddings only; hidden_act
 * gelu or relu.
 */
#ifndef MB_BERT_H
#define MB_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "param_info.h"
#include "rng.h"

typedef enum mb_bert_task {
    MB_BERT_SEQUENCE_CLASSIFICATION = 0,
    MB_BERT_TOKEN_CLASSIFICATION,
    MB_BERT_QUESTION_ANSWERING,
    MB_BERT_MASKED_LM
} mb_bert_task;

/* HF class name of a task ("BertForTokenClassification"). */
const char *mb_bert_class_name(mb_bert_task task);

/* config.json of a BERT model. The sizes live in `base` under the DistilBERT
   names that the rest of the runtime knows (dim = hidden_size, n_layers =
   num_hidden_layers, n_heads = num_attention_heads, hidden_dim =
   intermediate_size, dropout = hidden_dropout_prob, attention_dropout =
   attention_probs_dropout_prob, activation = hidden_act), with the labels,
   problem_type and the parsed JSON (kept keys survive a save). */
typedef struct mb_bert_config {
    mb_distilbert_config base;
    int type_vocab_size;      /* 2 */
    float layer_norm_eps;     /* 1e-12 */
    float classifier_dropout; /* < 0: null (hidden_dropout_prob) */
} mb_bert_config;

void mb_bert_config_defaults(mb_bert_config *cfg); /* bert-base-uncased sizes */
mb_status mb_bert_config_parse(mb_bert_config *cfg, const char *text, size_t len, const char *source, mb_error *err);
mb_status mb_bert_config_load(mb_bert_config *cfg, const char *path, mb_error *err);
mb_status mb_bert_config_copy(mb_bert_config *dst, const mb_bert_config *src, mb_error *err);
void mb_bert_config_free(mb_bert_config *cfg);
/* Serialised as HF writes it (sorted keys, indent 2), architectures [architecture]. malloc'd. */
char *mb_bert_config_to_json(const mb_bert_config *cfg, const char *architecture, mb_error *err);

typedef struct mb_bert mb_bert;

typedef struct mb_bert_load_opts {
    mb_bert_task task;
    int num_labels;              /* 0: from config.json (sequence / token classification) */
    const char *const *id2label; /* num_labels names, or NULL */
    uint64_t seed;               /* for freshly initialised tensors */
} mb_bert_load_opts;

mb_bert *mb_bert_new(const mb_bert_config *cfg, mb_bert_task task, uint64_t seed, mb_error *err);
mb_bert *mb_bert_load(const char *dir, const mb_bert_load_opts *opts, mb_error *err);
void mb_bert_free(mb_bert *m); /* NULL is fine */
/* config.json (architectures = the task's class) + model.safetensors (F32; the
   tied decoder weight is not written, as save_pretrained). Creates dir. */
mb_status mb_bert_save(const mb_bert *m, const char *dir, mb_error *err);

const mb_bert_config *mb_bert_get_config(const mb_bert *m);
mb_bert_task mb_bert_get_task(const mb_bert *m);
const char *mb_bert_warnings(const mb_bert *m); /* "" when none */
mb_rng *mb_bert_rng(mb_bert *m);

/* ---- the parameter block ------------------------------------------------ */
float *mb_bert_params(mb_bert *m);
float *mb_bert_grads(mb_bert *m);
size_t mb_bert_num_params(const mb_bert *m);
int mb_bert_num_tensors(const mb_bert *m);
const mb_param_info *mb_bert_param_info(const mb_bert *m, int i);
int mb_bert_find_param(const mb_bert *m, const char *name); /* -1 if absent */
int mb_bert_trainable(const mb_bert *m, int i);
void mb_bert_zero_grad(mb_bert *m);
void mb_bert_freeze_encoder(mb_bert *m, int frozen);
int mb_bert_encoder_frozen(const mb_bert *m);

/* ---- forward / loss / backward ------------------------------------------ */
typedef struct mb_bert_forward_opts {
    int train;           /* dropout on */
    int keep;            /* keep activations for backward */
    int encoder_only;    /* last hidden state only (features) */
    /* masked LM: logits only at these flat b*T+t positions (n_positions of
       them); NULL: every position */
    const int32_t *positions;
    int n_positions;
} mb_bert_forward_opts;

/* ids, mask, token_type_ids: int32 [B,T] row-major; mask and token types may
   be NULL (all ones, all zeros). Checks ids, token types and T. */
mb_status mb_bert_forward(mb_bert *m, const int32_t *ids, const int32_t *mask, const int32_t *type_ids, int B,
                          int T, const mb_bert_forward_opts *opts, mb_error *err);
/* Results of the last forward (valid until the next):
   last hidden state [B,T,dim]; pooled [B,dim] (sequence classification);
   logits: [B,num_labels] (sequence), [B,T,num_labels] (token), [B*T,2]
   interleaved (QA; see start/end), [n,vocab] (masked LM, n = mb_bert_num_rows). */
const float *mb_bert_last_hidden(const mb_bert *m);
const float *mb_bert_pooled(const mb_bert *m);
const float *mb_bert_logits(const mb_bert *m);
const float *mb_bert_start_logits(const mb_bert *m); /* QA [B,T] */
const float *mb_bert_end_logits(const mb_bert *m);   /* QA [B,T] */
int mb_bert_num_rows(const mb_bert *m);              /* masked LM: rows of logits */
const int32_t *mb_bert_rows(const mb_bert *m);       /* masked LM: flat b*T+t of each row */
/* Outputs per example (sequence) or per token (token, masked LM) of the head. */
int mb_bert_num_outputs(const mb_bert *m);

/* Loss of the last forward (forward with keep=1 first; B and T must match).
 *   sequence:  labels[B] (or targets[B*num_labels] for multi-label / regression), per_example[B]
 *   token:     labels[B*T], -100 ignored
 *   QA:        labels = start_positions[B], labels2 = end_positions[B]
 *   masked LM: labels[B*T] (-100 ignored); the forward must have computed
 *              logits at every labelled position (use mb_bert_mlm_loss)
 * per_example may be NULL. */
mb_status mb_bert_loss(mb_bert *m, const int32_t *labels, const int32_t *labels2, const float *targets, int B,
                       int T, double *loss, float *per_example, mb_error *err);
/* Masked LM: forward at the labelled positions, then the loss; *n_masked gets their number. */
mb_status mb_bert_mlm_loss(mb_bert *m, const int32_t *ids, const int32_t *mask, const int32_t *type_ids,
                           const int32_t *labels, int B, int T, int train, double *loss, int *n_masked,
                           mb_error *err);
/* d loss / d params accumulated (+=) into the gradient block. */
mb_status mb_bert_backward(mb_bert *m, mb_error *err);

/* Floating-point operations of one forward (backward: x3 in all). */
double mb_bert_flops(const mb_bert *m, int B, int T, int backward);

#endif
