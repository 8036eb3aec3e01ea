/* bert_impl.h: the BERT model object, internal to bert.c (activations,
 * forward, loss, backward) and bert_params.c (parameter block, construction,
 * checkpoint load and save, accessors). Not part of the runtime's API: other
 * files use bert.h.
 */
#ifndef MB_BERT_IMPL_H
#define MB_BERT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "activations.h"
#include "bert.h"
#include "token_head.h"

/* ---- parameter layout ---------------------------------------------------- */

typedef struct layer_views {
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b; /* attention.self.{query,key,value} */
    float *ao_w, *ao_b, *ln1_w, *ln1_b;       /* attention.output.dense, attention.output.LayerNorm */
    float *i_w, *i_b;                         /* intermediate.dense */
    float *o_w, *o_b, *ln2_w, *ln2_b;         /* output.dense, output.LayerNorm */
} layer_views;

typedef struct views {
    float *word, *pos, *type, *emb_ln_w, *emb_ln_b; /* bert.embeddings */
    layer_views *layer;                             /* [n_layers] */
    float *pool_w, *pool_b;                         /* bert.pooler.dense (sequence classification) */
    float *head_w, *head_b;                         /* classifier or qa_outputs */
    float *mlm_bias, *tr_w, *tr_b, *tr_ln_w, *tr_ln_b; /* cls.predictions.{bias, transform.*} */
} views;

/* ---- activations ----------------------------------------------------------- */

typedef struct layer_acts {
    float *q, *k, *v;           /* [N,D] projections */
    float *probs;               /* [B,H,T,T] softmax, before dropout */
    float *ctx;                 /* [N,D] heads merged */
    float *h1;                  /* [N,D] x + dropout(attention.output.dense(ctx)), LN1 input */
    float *ln1_mean, *ln1_rstd; /* [N] */
    float *sa;                  /* [N,D] LN1 output */
    float *ffn_h;               /* [N,F] intermediate.dense output (activation input) */
    float *h2;                  /* [N,D] sa + dropout(output.dense(act)), LN2 input */
    float *ln2_mean, *ln2_rstd; /* [N] */
    float *out;                 /* [N,D] layer output */
    uint8_t *attn_drop;         /* [B,H,T,T] keep masks (train) */
    uint8_t *drop1, *drop2;     /* [N,D] */
} layer_acts;

typedef struct enc_acts {
    mb_act_blocks blocks;        /* every buffer below lives in these (activations.h) */
    int B, T, keep, train;
    int32_t *ids, *mask, *types; /* [B,T] copies (mask all ones, types all zeros when absent) */
    float *emb_sum;              /* [N,D] word + position + token type, LN input */
    float *emb_mean, *emb_rstd;  /* [N] */
    float *emb_out;              /* [N,D] after LN and dropout */
    uint8_t *emb_drop;           /* [N,D] */
    layer_acts *layer;           /* [n_layers] (aliases of layer 0 when keep=0) */
    float *ffn_g;                /* [N,F] activation output (recomputed in backward) */
    /* backward only (keep=1) */
    float *d_res, *d_a, *d_b;    /* [N,D] */
    float *dq, *dk, *dv, *dctx;  /* [N,D] */
    float *dffn;                 /* [N,F] */
    float *scratch;
    long scratch_floats;
} enc_acts;

/* Sequence-classification and masked-LM head activations. */
typedef struct head_acts {
    size_t cap_f, cap_u8, cap_i;
    float *f;
    uint8_t *u8;
    int32_t *i32;
    /* sequence classification [B,*] */
    float *cls, *pooled, *dropped, *logits, *probs, *dlogits, *per_ex, *d_a, *d_b;
    uint8_t *drop;
    /* masked LM, n rows */
    int n;
    int32_t *rows, *labels;       /* [n] */
    float *hsel, *t, *a, *x;      /* [n,D] gathered hidden, transform dense, activation, LayerNorm output */
    float *mean, *rstd;           /* [n] */
    float *mlogits, *mprobs;      /* [n,V] (mprobs doubles as d logits after the loss) */
    float *dx, *dh;               /* [n,D] */
} head_acts;

struct mb_bert {
    mb_bert_config cfg;
    mb_bert_task task;
    float *params, *grads;
    size_t n_params;
    mb_param_info *info;
    int n_tensors;
    views p, g;
    mb_rng rng;
    int frozen;
    char *warnings;
    enc_acts keep_acts, infer_acts;
    head_acts head;
    mb_token_head tok;
    /* state of the last forward / loss */
    enc_acts *last;
    int fwd_B, fwd_T, fwd_keep, fwd_train, fwd_head, have_loss;
    const float *last_hidden;
};

#endif
