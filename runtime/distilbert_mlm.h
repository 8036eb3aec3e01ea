/* distilbert_mlm.h: DistilBertForMaskedLM on the CPU: the encoder of
 * distilbert.h plus Hugging Face's masked-LM head.
 *
 *   x      = vocab_layer_norm(GELU_erf(vocab_transform(hidden)))   (LN eps 1e-12)
 *   logits = x @ word_embeddings^T + vocab_projector.bias
 *
 * vocab_projector.weight is TIED to distilbert.embeddings.word_embeddings.weight:
 * there is one matrix, its gradient is the embedding lookup part plus the
 * projector part (every row, [PAD] included). Checkpoints are HF's: a saved
 * model.safetensors holds the distilbert.* tensors and the head's
 * vocab_transform.{weight,bias}, vocab_layer_norm.{weight,bias},
 * vocab_projector.bias, and no vocab_projector.weight (as save_pretrained).
 *
 * Parameters: the encoder's tensors (views into the wrapped mb_distilbert's
 * block; its classification head exists there but is never used nor saved)
 * followed by the head's five tensors in a block of their own.
 *
 * Cost: the projector is a [N, dim] x [dim, vocab] product. Training computes
 * logits only at the N positions whose label is not -100 (about 15% of the
 * tokens); inference can ask for every position or a list of positions.
 * Buffers grow to the largest N seen and are reused.
 *
 * The device half (runtime/cuda.h's mb_cuda_mlm, runtime/cuda/gpu_mlm.c)
 * mirrors this file on device copies of both blocks.
 *
 * Limits: F32 on the CPU. A frozen encoder (mb_distilbert_freeze_encoder on
 * mb_mlm_encoder) trains the head's own tensors only: the tied matrix is an
 * encoder tensor and stays fixed with it.
 */
#ifndef MB_DISTILBERT_MLM_H
#define MB_DISTILBERT_MLM_H

#include "distilbert.h"

#define MB_MLM_HEAD_TENSORS 5

typedef struct mb_distilbert_mlm mb_distilbert_mlm;

/* Random init as HF (the encoder as mb_distilbert_new, the head: Linear
   N(0, initializer_range), biases 0, LayerNorm 1/0). */
mb_distilbert_mlm *mb_mlm_new(const mb_distilbert_config *cfg, uint64_t seed, mb_error *err);
/* A HF masked-LM directory (config.json + model.safetensors). A checkpoint
   without the head (a base or classification model) gets a new head and a
   warning (mb_mlm_warnings). */
mb_distilbert_mlm *mb_mlm_load(const char *dir, uint64_t seed, mb_error *err);
/* config.json (architectures DistilBertForMaskedLM) + model.safetensors, no
   vocab_projector.weight. Creates dir. */
mb_status mb_mlm_save(const mb_distilbert_mlm *m, const char *dir, mb_error *err);
void mb_mlm_free(mb_distilbert_mlm *m); /* NULL is fine */

mb_distilbert *mb_mlm_encoder(mb_distilbert_mlm *m);
const char *mb_mlm_warnings(const mb_distilbert_mlm *m);

/* Parameters: encoder tensors (0 .. n_enc-1) then the head's. Values and
   gradients of tensor i: */
int mb_mlm_num_tensors(const mb_distilbert_mlm *m);
const mb_param_info *mb_mlm_param_info(const mb_distilbert_mlm *m, int i); /* offsets within its own block */
float *mb_mlm_param(mb_distilbert_mlm *m, int i);
float *mb_mlm_grad(mb_distilbert_mlm *m, int i);
int mb_mlm_find_param(const mb_distilbert_mlm *m, const char *name); /* -1 if absent */
/* The head's own block (its five tensors, in order; offsets as mb_mlm_param_info's): */
float *mb_mlm_head_params(mb_distilbert_mlm *m);
float *mb_mlm_head_grads(mb_distilbert_mlm *m);
size_t mb_mlm_head_numel(const mb_distilbert_mlm *m);
size_t mb_mlm_num_params(const mb_distilbert_mlm *m);
void mb_mlm_zero_grad(mb_distilbert_mlm *m);

/* Forward at selected positions. positions: n_pos flat indices b*T+t into
   [B,T], or NULL for every position (n_pos ignored). keep=1 keeps what
   backward needs. Logits [n, vocab] in mb_mlm_logits. */
mb_status mb_mlm_forward(mb_distilbert_mlm *m, const int32_t *ids, const int32_t *mask, int B, int T,
                         const int32_t *positions, int n_pos, int train, int keep, mb_error *err);
/* Forward (train or eval, keep=1) at the positions whose label is not -100,
   then the mean cross-entropy over them (HF CrossEntropyLoss, ignore_index
   -100). *n_masked gets their number. An error when every label is -100. */
mb_status mb_mlm_loss(mb_distilbert_mlm *m, const int32_t *ids, const int32_t *mask, const int32_t *labels, int B,
                      int T, int train, double *loss, int *n_masked, mb_error *err);
/* Gradients of the last loss, accumulated (+=) into every tensor. */
mb_status mb_mlm_backward(mb_distilbert_mlm *m, mb_error *err);

const float *mb_mlm_logits(const mb_distilbert_mlm *m); /* [n, vocab] of the last forward */
int mb_mlm_num_rows(const mb_distilbert_mlm *m);
const int32_t *mb_mlm_rows(const mb_distilbert_mlm *m); /* flat b*T+t of each logits row */

#endif
