/* distilbert.h: DistilBERT for sequence classification on the CPU (OpenBLAS).
 *
 * The model is Hugging Face's DistilBertForSequenceClassification:
 * embeddings (word + learned positions, LayerNorm eps 1e-12, dropout), n_layers
 * post-LayerNorm blocks (multi-head self-attention with the padding mask,
 * FFN with erf GELU or ReLU), and the head ([CLS] -> pre_classifier -> ReLU ->
 * dropout(seq_classif_dropout) -> classifier).
 *
 * Memory (DESIGN.md section 2, after llm.c):
 *  - one parameter block with named views in Hugging Face order and names
 *    (encoder tensors distilbert.* first, then the head); gradients live in a
 *    block of the same layout. An optimizer steps over the block through
 *    mb_distilbert_params/_grads and the per-tensor mb_param_info (name,
 *    offset, size, no_decay for biases and LayerNorm weights, trainable).
 *  - activations are allocated per shape class (batch x length, kept for
 *    backward or not) and grow only when a larger batch arrives: steady-state
 *    steps allocate nothing. A forward that will not be followed by backward
 *    (inference, or the encoder when it is frozen) reuses one layer's buffers.
 *
 * Sequence of a training step:  forward(keep=1) -> loss -> backward; grads are
 * accumulated (+=) as in PyTorch: call zero_grad between steps.
 * Train-mode dropout draws from the model's RNG (mb_distilbert_rng), so the
 * trainer can save and restore its state with a checkpoint.
 *
 * Limits: this is the CPU model (runtime/cuda.h moves it to a GPU); batch and sequence length are free up to
 * max_position_embeddings; single-label (cross-entropy, labels -100 ignored),
 * multi-label (BCE with logits) and regression (MSE) losses as in HF.
 */
#ifndef MB_DISTILBERT_H
#define MB_DISTILBERT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "param_info.h"
#include "rng.h"

typedef struct mb_distilbert mb_distilbert;

typedef struct mb_distilbert_load_opts {
    int num_labels;               /* 0: from config.json */
    const char *const *id2label;  /* num_labels names, or NULL */
    uint64_t seed;                /* for a freshly initialised head */
} mb_distilbert_load_opts;

/* Random init as HF _init_weights: Linear/Embedding N(0, initializer_range),
   biases 0, the padding row 0, LayerNorm 1/0 (sinusoidal positions if set). */
mb_distilbert *mb_distilbert_new(const mb_distilbert_config *cfg, uint64_t seed, mb_error *err);
/* A Hugging Face directory: config.json + model.safetensors (F32/F16/BF16).
   A base model (no pre_classifier/classifier) gets a new head and a warning. */
mb_distilbert *mb_distilbert_load(const char *dir, const mb_distilbert_load_opts *opts, mb_error *err);
void mb_distilbert_free(mb_distilbert *m); /* NULL is fine */
/* config.json + model.safetensors (F32) that transformers loads. Creates dir. */
mb_status mb_distilbert_save(const mb_distilbert *m, const char *dir, mb_error *err);

const mb_distilbert_config *mb_distilbert_get_config(const mb_distilbert *m);
/* Warnings from load (new head, unused tensors), "" when none. */
const char *mb_distilbert_warnings(const mb_distilbert *m);
mb_rng *mb_distilbert_rng(mb_distilbert *m);

/* ---- the parameter block ------------------------------------------------ */
float *mb_distilbert_params(mb_distilbert *m);
float *mb_distilbert_grads(mb_distilbert *m);
size_t mb_distilbert_num_params(const mb_distilbert *m);
int mb_distilbert_num_tensors(const mb_distilbert *m);
const mb_param_info *mb_distilbert_param_info(const mb_distilbert *m, int i);
int mb_distilbert_find_param(const mb_distilbert *m, const char *name); /* -1 if absent */
/* 0 for encoder tensors while frozen, and for fixed sinusoidal positions. */
int mb_distilbert_trainable(const mb_distilbert *m, int i);
void mb_distilbert_zero_grad(mb_distilbert *m);
void mb_distilbert_freeze_encoder(mb_distilbert *m, int frozen);
int mb_distilbert_encoder_frozen(const mb_distilbert *m);

/* Precision of the CPU matrix products: "fp32" (the default) or "bf16"
   (runtime/bf16.h: bf16 operands, fp32 accumulation; weights converted once
   per optimizer step). Where this process has no bf16 kernel, "bf16" keeps
   fp32 and *notice (may be NULL) gets a one-line reason; else *notice = NULL.
   MB_ERR_ARG for any other name. */
mb_status mb_distilbert_set_precision(mb_distilbert *m, const char *name, const char **notice, mb_error *err);
const char *mb_distilbert_precision(const mb_distilbert *m); /* "fp32" or "bf16": what runs */

/* ---- forward / loss / backward ------------------------------------------ */
typedef struct mb_forward_opts {
    int train;               /* dropout on */
    int keep;                /* keep activations for backward */
    float **hidden_states;   /* NULL or n_layers+1 buffers [B,T,dim]: embeddings, then each layer */
    float **attentions;      /* NULL or n_layers buffers [B,n_heads,T,T] (after dropout, as HF) */
    int encoder_only;        /* skip the head (features) */
    int cls_only;            /* with encoder_only: only [CLS] of the last hidden state is read (features) */
    int padded_rows;         /* compute the padded rows as PyTorch does (heads that read every position) */
} mb_forward_opts;

/* ids, mask: int32 [B,T] row-major. Checks ids against the vocabulary and T
   against max_position_embeddings. */
mb_status mb_distilbert_forward(mb_distilbert *m, const int32_t *ids, const int32_t *mask, int B, int T,
                                const mb_forward_opts *opts, mb_error *err);
/* Results of the last forward: logits [B,num_labels], last hidden state
   [B,T,dim] (valid until the next forward). */
const float *mb_distilbert_logits(const mb_distilbert *m);
const float *mb_distilbert_last_hidden(const mb_distilbert *m);
/* [CLS] hidden state of an eval-mode forward into out[B,dim]. */
mb_status mb_distilbert_features(mb_distilbert *m, const int32_t *ids, const int32_t *mask, int B, int T,
                                 float *out, mb_error *err);

/* Loss of the last forward (B must match). Single-label: labels_i32[B]
   (0..num_labels-1, or -100 to ignore); multi-label / regression:
   targets_f32[B*num_labels]. per_example may be NULL. A NaN or Inf loss is
   an error naming where the first non-finite value is. */
mb_status mb_distilbert_loss(mb_distilbert *m, const int32_t *labels_i32, const float *targets_f32, int B,
                             double *loss, float *per_example, mb_error *err);
/* d loss / d params accumulated into the gradient block; needs forward with
   keep=1 and loss first. */
mb_status mb_distilbert_backward(mb_distilbert *m, mb_error *err);

/* Encoder backward from d loss / d last_hidden_state [B,T,dim] supplied by
   another head (the masked-LM head, runtime/distilbert_mlm.h): needs an
   encoder_only forward with keep=1. A frozen encoder makes it a no-op. */
mb_status mb_distilbert_backward_hidden(mb_distilbert *m, const float *d_hidden, mb_error *err);

/* ---- a task model over the encoder ---------------------------------------- */
/* The parameters of a model built on this encoder with a head of its own
   (distilbert_heads.h, distilbert_mlm.h): the encoder's tensors 0..n_enc-1
   (its classification head left out), then the head's n_head tensors. */
typedef struct mb_task_params {
    mb_distilbert *enc;
    int n_enc, n_head;
    const mb_param_info *info; /* [n_head] the head's table (the caller's) */
    float *params, *grads;     /* the head's block, numel floats each */
    size_t numel;
} mb_task_params;
/* Take over enc (freed by mb_task_params_free, also after a failure) and
   allocate the head's block for the filled table info[0..n_head-1]. */
mb_status mb_task_params_alloc(mb_task_params *t, mb_distilbert *enc, const mb_param_info *info, int n_head,
                               mb_error *err);
void mb_task_params_free(mb_task_params *t); /* the encoder and the head's block */
int mb_task_num_tensors(const mb_task_params *t);
const mb_param_info *mb_task_param_info(const mb_task_params *t, int i); /* NULL out of range */
float *mb_task_param(mb_task_params *t, int i);
float *mb_task_grad(mb_task_params *t, int i);
int mb_task_find_param(const mb_task_params *t, const char *name); /* -1 if absent */
size_t mb_task_num_params(const mb_task_params *t);
void mb_task_zero_grad(mb_task_params *t);

/* Floating-point operations of one forward (and backward, ~2x) at B x T,
   for throughput figures. */
double mb_distilbert_flops(const mb_distilbert *m, int B, int T, int backward, int frozen);

#endif
