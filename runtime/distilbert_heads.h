/* distilbert_heads.h: DistilBertForTokenClassification and
 * DistilBertForQuestionAnswering on the CPU: the encoder of distilbert.h plus
 * the token-level head of token_head.h.
 *
 *   token classification: logits[B,T,num_labels] = classifier(dropout(h)), dropout = config dropout
 *   question answering:   start, end [B,T] = qa_outputs(dropout(h)), dropout = qa_dropout
 *
 * Losses as HF: cross-entropy over tokens whose label is not -100; for QA the
 * mean of the start and end cross-entropies, positions clamped to [0, T] and
 * T ignored. The encoder computes the padded rows too (as PyTorch), since
 * the QA softmax runs over every position.
 *
 * Parameters: the encoder's tensors (views into the wrapped mb_distilbert's
 * block; its sequence-classification head is never used nor saved), then the
 * head's two tensors (classifier.* or qa_outputs.*) in a block of their own,
 * as distilbert_mlm.h. Checkpoints are HF's; a checkpoint without the head
 * (a base model, another task) gets a new head, listed in a warning.
 */
#ifndef MB_DISTILBERT_HEADS_H
#define MB_DISTILBERT_HEADS_H

#include "distilbert.h"

typedef enum mb_dbh_task { MB_DBH_TOKEN_CLASSIFICATION = 0, MB_DBH_QUESTION_ANSWERING } mb_dbh_task;

typedef struct mb_distilbert_heads mb_distilbert_heads;

const char *mb_dbh_class_name(mb_dbh_task task); /* "DistilBertForTokenClassification" */

mb_distilbert_heads *mb_dbh_new(const mb_distilbert_config *cfg, mb_dbh_task task, uint64_t seed, mb_error *err);
/* opts: num_labels / id2label (token classification), seed. */
mb_distilbert_heads *mb_dbh_load(const char *dir, mb_dbh_task task, const mb_distilbert_load_opts *opts,
                                 mb_error *err);
mb_status mb_dbh_save(const mb_distilbert_heads *m, const char *dir, mb_error *err);
void mb_dbh_free(mb_distilbert_heads *m); /* NULL is fine */

mb_distilbert *mb_dbh_encoder(mb_distilbert_heads *m);
mb_dbh_task mb_dbh_get_task(const mb_distilbert_heads *m);
const char *mb_dbh_warnings(const mb_distilbert_heads *m);
int mb_dbh_num_outputs(const mb_distilbert_heads *m); /* num_labels, or 2 */

/* Parameters: encoder tensors (0 .. n_enc-1) then the head's two. */
int mb_dbh_num_tensors(const mb_distilbert_heads *m);
const mb_param_info *mb_dbh_param_info(const mb_distilbert_heads *m, int i); /* offsets within its own block */
float *mb_dbh_param(mb_distilbert_heads *m, int i);
float *mb_dbh_grad(mb_distilbert_heads *m, int i);
int mb_dbh_find_param(const mb_distilbert_heads *m, const char *name);
size_t mb_dbh_num_params(const mb_distilbert_heads *m);
void mb_dbh_zero_grad(mb_distilbert_heads *m);

/* Forward: keep=1 for a loss and backward. */
mb_status mb_dbh_forward(mb_distilbert_heads *m, const int32_t *ids, const int32_t *mask, int B, int T, int train,
                         int keep, mb_error *err);
const float *mb_dbh_logits(const mb_distilbert_heads *m); /* [B*T, outputs] */
const float *mb_dbh_start_logits(const mb_distilbert_heads *m); /* QA [B,T] */
const float *mb_dbh_end_logits(const mb_distilbert_heads *m);   /* QA [B,T] */
const float *mb_dbh_last_hidden(const mb_distilbert_heads *m);  /* [B,T,dim] */
/* Token classification: labels[B*T]; QA: labels = start[B], labels2 = end[B].
   per_example (may be NULL): [B*T] per token, or [B] for QA. */
mb_status mb_dbh_loss(mb_distilbert_heads *m, const int32_t *labels, const int32_t *labels2, int B, int T,
                      double *loss, float *per_example, mb_error *err);
mb_status mb_dbh_backward(mb_distilbert_heads *m, mb_error *err);

#endif
