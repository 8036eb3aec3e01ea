/* token_head.h: a linear head on every token's hidden state, with the two
 * losses Hugging Face puts on it.
 *
 *   logits[N,L] = linear(dropout(hidden[N,D]))      (N = B*T rows)
 *
 *  - token classification (BertForTokenClassification,
 *    DistilBertForTokenClassification): L = num_labels, cross-entropy over the
 *    rows whose label is not -100, averaged over them;
 *  - question answering (BertForQuestionAnswering, DistilBertForQuestionAnswering):
 *    L = 2, start_logits[b,t] = logits[b*T+t, 0], end_logits[b,t] = logits[b*T+t, 1];
 *    loss = (CE(start_logits, start) + CE(end_logits, end)) / 2 with positions
 *    clamped to [0, T] and T ignored (a span outside the window).
 *
 * The weights are not the head's: the model passes views into its parameter
 * block (w[L,D], b[L]) and gradient block. The head owns its activations,
 * grown to the largest batch seen. Dropout draws from the model's RNG.
 */
#ifndef MB_TOKEN_HEAD_H
#define MB_TOKEN_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"

typedef struct mb_token_head {
    size_t cap_f, cap_u8, cap_i; /* bytes (activations.h mb_grow) */
    float *f;
    uint8_t *u8;
    int32_t *i32;
    int N, D, L, B, T, train, have_loss;
    float p;
    const float *hidden; /* [N,D] the forward's input (the model's, kept by it) */
    float *dropped;      /* [N,D] dropout(hidden) (== hidden when no dropout) */
    uint8_t *drop;       /* [N,D] keep mask */
    float *logits;       /* [N,L] */
    float *probs;        /* [N,L] softmax (token) or [2,B,T] (QA: start rows, then end rows) */
    float *dlogits;      /* [N,L] */
    float *start, *end;  /* [B,T] QA split of the logits */
    float *per_row;      /* [N] token CE per row, or [2B] QA */
    int32_t *labels;     /* [N] (token) or [2B] (QA: clamped, T -> -100) */
} mb_token_head;

void mb_token_head_free(mb_token_head *h); /* the buffers; h itself is the caller's */

/* logits = linear(dropout(hidden)) on N = B*T rows; dropout p applies when train. */
mb_status mb_token_head_forward(mb_token_head *h, const float *hidden, int B, int T, int D, int L, const float *w,
                                const float *b, float p, int train, mb_rng *rng, mb_error *err);
/* QA logits split into start/end [B,T] (valid after a forward with L == 2). */
const float *mb_token_head_start(const mb_token_head *h);
const float *mb_token_head_end(const mb_token_head *h);

/* Token classification loss of the last forward: labels[N] in 0..L-1 or -100. */
mb_status mb_token_head_loss(mb_token_head *h, const int32_t *labels, double *loss, int *count, mb_error *err);
/* Question-answering loss of the last forward (L == 2): start, end [B]. */
mb_status mb_token_head_qa_loss(mb_token_head *h, const int32_t *start, const int32_t *end, double *loss,
                                mb_error *err);
/* Gradients of the last loss: gw[L,D], gb[L] accumulated (+=); d_hidden[N,D]
   written (may be NULL: a frozen encoder). */
mb_status mb_token_head_backward(mb_token_head *h, const float *w, float *gw, float *gb, float *d_hidden,
                                 mb_error *err);

#endif
