/* classifier_loss.h: the sequence-classification loss of transformers'
 * *ForSequenceClassification models, by problem_type, shared by DistilBERT
 * (distilbert.h) and BERT (bert.h):
 *   single-label: cross-entropy over labels[B] (-100 ignored; mean over the
 *                 labels counted), softmax into probs;
 *   multi-label:  BCE with logits over targets[B*L];
 *   regression:   MSE over targets[B*L]; both averaged over B*L.
 */
#ifndef MB_CLASSIFIER_LOSS_H
#define MB_CLASSIFIER_LOSS_H

#include <stdint.h>

#include "config.h"
#include "error.h"

/* logits [B,L]; per_ex [B] gets each example's loss (its row mean for the
   float targets), dlogits [B,L] d loss / d logits (single-label: only when
   the loss is finite), probs [B,L] scratch; *loss the mean. Errors: missing
   or out-of-range labels, every label ignored, missing targets. A non-finite
   *loss is returned as MB_OK: the model says where it came from. */
mb_status mb_classifier_loss(mb_problem_type problem, const float *logits, const int32_t *labels,
                             const float *targets, int B, int L, float *per_ex, float *probs, float *dlogits,
                             double *loss, mb_error *err);

#endif
