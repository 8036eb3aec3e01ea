/* distilbert_acts.h: DistilBERT's activation planner, internal to distilbert.c (and freed by distilbert_params.c).
 *
 * Which rows a forward computes (packing right-padded batches, [CLS]-only last
 * layer), where every encoder buffer lives (one layout over activations.h's
 * blocks, growing only), and when training keeps only layer inputs and
 * recomputes the rest in backward (the activation budget). distilbert.c runs
 * the layers over these buffers. Not part of the runtime's API.
 */
#ifndef MB_DISTILBERT_ACTS_H
#define MB_DISTILBERT_ACTS_H

#include <stddef.h>
#include <stdint.h>

#include "activations.h"
#include "config.h"

typedef struct layer_acts {
    float *q, *k, *v;           /* [B,T,D] projections */
    float *probs;               /* [B,H,T,T] softmax, before dropout */
    float *ctx;                 /* [B,T,D] heads merged */
    float *h1;                  /* [B,T,D] x + out_lin(ctx), LN1 input */
    float *ln1_mean, *ln1_rstd; /* [B,T] */
    float *sa;                  /* [B,T,D] LN1 output */
    float *ffn_h;               /* [B,T,F] lin1 output (activation input) */
    float *h2;                  /* [B,T,D] sa + dropout(lin2), LN2 input */
    float *ln2_mean, *ln2_rstd; /* [B,T] */
    float *out;                 /* [B,T,D] layer output */
    uint8_t *attn_drop;         /* [B,H,T,T] keep mask (train) */
    uint8_t *ffn_drop;          /* [B,T,D] keep mask (train) */
} layer_acts;

/* Encoder activations of one shape class. keep=1 holds every layer for
   backward; keep=0 reuses one layer's buffers (inference, frozen encoder). */
typedef struct enc_acts {
    mb_act_blocks blocks;        /* every buffer below lives in these (activations.h) */
    int B, T, keep, train;
    /* Rows: a packed forward (plan_rows) computes only the real tokens of a
       right-padded batch: N rows, sequence b at rows row[b] .. row[b]+len[b]-1.
       Otherwise N = B*T (padded rows computed, keys masked, as PyTorch).
       Every [B,T,*] buffer below holds N rows. */
    int packed, N;
    /* cls_only (packed only): the caller reads [CLS] alone (classification
       head, [CLS] features), so the last layer computes keys and values for
       every row but everything else for the B [CLS] rows: 1/6 less work for
       DistilBERT's 6 layers. Its [B,T,*] buffers then hold B rows, row b for
       sequence b; its probabilities H*len[b] from qprob[b]. */
    int cls_only;
    long *qprob;                 /* [B] */
    float *cls_x, *cls_d;        /* [B,D] last layer's [CLS] input; its gradient (keep) */
    int ckpt;                    /* keep only layer inputs/outputs, recompute the rest (kept_bytes) */
    int *len;                    /* [B] */
    long *row, *prob;            /* [B] first row, first attention probability */
    size_t cap_seq;
    long n_probs;                /* sum over b of H*len[b]^2 */
    int32_t *ids, *pos;          /* [N] token id and position of each row */
    int32_t *mask;               /* [B,T] copy of the input mask */
    float *hidden;               /* [B,T,D] last hidden state, padded rows 0 (packed only) */
    float *emb_sum;              /* [B,T,D] word + position, LN input */
    float *emb_mean, *emb_rstd;  /* [B,T] */
    float *emb_out;              /* [B,T,D] after LN and dropout */
    uint8_t *emb_drop;           /* [B,T,D] */
    layer_acts *layer;           /* [n_layers] (aliases when keep=0) */
    float *ffn_g;                /* [B,T,F] activation output (recomputed in backward) */
    /* backward only (keep=1) */
    float *d_res, *d_tmp;        /* [B,T,D] residual-stream gradients */
    float *dq, *dk, *dv, *dctx;  /* [B,T,D] */
    float *dffn;                 /* [B,T,F] */
    float *recompute;            /* [B,T,D] ctx, then the layer input, recomputed in backward */
    float *scratch;              /* attention scratch */
    long scratch_floats;         /* its size (depends on the thread count) */
} enc_acts;

/* Choose the rows a forward computes (a->packed, N, len, row, prob); see distilbert_acts.c. */
mb_status mb_dbacts_plan_rows(const mb_distilbert_config *c, enc_acts *a, const int32_t *mask, int B, int T, int pack,
                              mb_error *err);
/* Whether a training forward's kept activations (plan_rows done) exceed the
   budget (MOONBERT_ACTIVATION_MB), so that it checkpoints layers instead. */
int mb_dbacts_over_budget(const mb_distilbert_config *c, const enc_acts *a);
/* Make a's blocks big enough for B x T (growing only) and lay the buffers out. */
mb_status mb_dbacts_prepare(const mb_distilbert_config *c, enc_acts *a, int B, int T, int train, mb_error *err);
/* Give a's blocks back (the other activation set of a model; see the .c). */
void mb_dbacts_release(enc_acts *a);
/* Free everything a holds. */
void mb_dbacts_free(enc_acts *a);

#endif
