/* distilbert_impl.h: the DistilBERT model object, internal to distilbert.c
 * (forward, loss, backward) and distilbert_params.c (parameter block,
 * construction, checkpoint load and save, accessors). Not part of the
 * runtime's API: other files use distilbert.h.
 */
#ifndef MB_DISTILBERT_IMPL_H
#define MB_DISTILBERT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h"
#include "distilbert.h"
#include "distilbert_acts.h"

/* ---- parameter layout ---------------------------------------------------- */

/* Views into one block (params or grads), Hugging Face order. */
typedef struct layer_views {
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b; /* attention.{q,k,v,out}_lin */
    float *sa_ln_w, *sa_ln_b;                              /* sa_layer_norm */
    float *ff1_w, *ff1_b, *ff2_w, *ff2_b;                  /* ffn.lin1, ffn.lin2 */
    float *out_ln_w, *out_ln_b;                            /* output_layer_norm */
} layer_views;

typedef struct views {
    float *word, *pos, *emb_ln_w, *emb_ln_b; /* embeddings */
    layer_views *layer;                      /* [n_layers] */
    float *pre_w, *pre_b, *cls_w, *cls_b;    /* pre_classifier, classifier */
} views;

/* Head activations, sized by batch. */
typedef struct head_acts {
    size_t cap_f, cap_u8;
    float *f;
    uint8_t *u8;
    float *cls;       /* [B,D] hidden[:,0] */
    float *pre;       /* [B,D] pre_classifier output */
    float *act;       /* [B,D] ReLU output */
    float *dropped;   /* [B,D] after dropout (classifier input) */
    uint8_t *drop;    /* [B,D] */
    float *logits;    /* [B,L] */
    float *probs;     /* [B,L] softmax / sigmoid */
    float *dlogits;   /* [B,L] */
    float *per_ex;    /* [B] */
    float *d_a, *d_b; /* [B,D] */
    int32_t *labels;  /* [B] */
    size_t cap_labels;
} head_acts;

struct mb_distilbert {
    mb_distilbert_config cfg;
    float *params, *grads;
    size_t n_params;
    mb_param_info *info;
    int n_tensors, n_encoder_tensors;
    views p, g;
    mb_rng rng;
    int frozen;
    char *warnings;
    enc_acts keep_acts, infer_acts;
    head_acts head;
    /* state of the last forward/loss */
    const float *d_hidden_in; /* set by backward_hidden: d loss/d last hidden from another head */
    enc_acts *last;        /* acts used by the last forward */
    int fwd_B, fwd_T, fwd_keep, fwd_train, fwd_head, have_loss;
    const float *last_hidden;
    int bf16;              /* precision "bf16": linear products through w16 (bf16.h) */
    mb_bf16_weights w16;   /* bf16 copy of the layers and head, synced in forward when stale */
};

#endif
