/* distilbert_acts.c: DistilBERT's activation planner (distilbert_acts.h): the rows a
 * forward computes, the layout of every encoder buffer, and the activation budget.
 */
#include "distilbert_acts.h"

#include <stdlib.h>

#include "layers.h"

/* Assign (or count, when the blocks are NULL) the encoder buffers for B x T. */
static void layout_enc(const mb_distilbert_config *c, enc_acts *a, int B, int T, mb_bump *fb, mb_bump *ub, mb_bump *ib) {
    size_t BT = (size_t)B * T, D = (size_t)c->dim, F = (size_t)c->hidden_dim, H = (size_t)c->n_heads;
    size_t N = (size_t)a->N;
    /* float buffers hold N rows; the dropout masks are drawn for the padded
       shape (the RNG stream does not depend on packing) and compacted */
    size_t BTD = N * D * 4, BTF = N * F * 4, BHTT = (size_t)B * H * T * T, BTs = N * 4;
    size_t probs_bytes = (size_t)a->n_probs * 4;
    int train = a->train, keep = a->keep;
    a->ids = mb_bump_take(ib, BT * 4);
    a->pos = mb_bump_take(ib, BT * 4);
    a->mask = mb_bump_take(ib, BT * 4);
    a->hidden = a->packed ? mb_bump_take(fb, BT * D * 4) : NULL;
    a->emb_sum = mb_bump_take(fb, BTD);
    a->emb_mean = mb_bump_take(fb, BTs);
    a->emb_rstd = mb_bump_take(fb, BTs);
    a->emb_out = mb_bump_take(fb, BTD);
    a->emb_drop = train ? mb_bump_take(ub, BT * D) : NULL;
    a->ffn_g = mb_bump_take(fb, BTF);
    a->cls_x = mb_bump_take(fb, (size_t)B * D * 4);
    a->cls_d = keep ? mb_bump_take(fb, (size_t)B * D * 4) : NULL;
    /* Layer outputs, and (keep) ctx and sa, are not kept per layer: backward
       recomputes them (LayerNorm from its kept input and statistics, ctx from
       the kept probabilities and v), bit for bit. That is 3 of 12 [N,D]-sized
       buffers per layer; dq, dctx and dffn share buffers free at their time. */
    float *out_pingpong[2], *shared = NULL;
    out_pingpong[0] = mb_bump_take(fb, BTD);
    out_pingpong[1] = mb_bump_take(fb, BTD);
    if (keep) shared = mb_bump_take(fb, BTD); /* forward: ctx, then sa; backward: sa, then dctx */
    for (int l = 0; l < c->n_layers; l++) {
        layer_acts *la = &a->layer[l];
        if (!keep && l > 0) {
            *la = a->layer[0];
            la->out = out_pingpong[l % 2];
            continue;
        }
        if (a->ckpt && l > 0) { /* one set of buffers; per layer only its output and masks */
            *la = a->layer[0];
            la->out = mb_bump_take(fb, BTD);
            la->attn_drop = train ? mb_bump_take(ub, BHTT) : NULL;
            la->ffn_drop = train ? mb_bump_take(ub, BT * D) : NULL;
            continue;
        }
        la->q = mb_bump_take(fb, BTD);
        la->k = mb_bump_take(fb, BTD);
        la->v = mb_bump_take(fb, BTD);
        la->probs = mb_bump_take(fb, probs_bytes);
        la->ctx = keep ? shared : mb_bump_take(fb, BTD);
        la->h1 = mb_bump_take(fb, BTD);
        la->ln1_mean = mb_bump_take(fb, BTs);
        la->ln1_rstd = mb_bump_take(fb, BTs);
        la->sa = keep ? shared : mb_bump_take(fb, BTD);
        la->ffn_h = mb_bump_take(fb, BTF);
        la->h2 = mb_bump_take(fb, BTD);
        la->ln2_mean = mb_bump_take(fb, BTs);
        la->ln2_rstd = mb_bump_take(fb, BTs);
        la->out = a->ckpt ? mb_bump_take(fb, BTD) : out_pingpong[l % 2];
        la->attn_drop = train ? mb_bump_take(ub, BHTT) : NULL;
        la->ffn_drop = train ? mb_bump_take(ub, BT * D) : NULL;
    }
    if (keep) {
        a->d_res = mb_bump_take(fb, BTD);
        a->d_tmp = mb_bump_take(fb, BTD);
        a->dq = a->d_tmp; /* d_tmp is free from LN1 backward to the next LN2 backward */
        a->dk = mb_bump_take(fb, BTD);
        a->dv = mb_bump_take(fb, BTD);
        a->dctx = shared;
        a->dffn = a->ffn_g; /* lin2's weight gradient is taken before its input gradient */
        a->recompute = out_pingpong[c->n_layers % 2]; /* not the final output */
    } else {
        a->d_res = a->d_tmp = a->dq = a->dk = a->dv = a->dctx = a->dffn = a->recompute = NULL;
    }
    a->scratch_floats = attention_scratch_floats(T); /* T bounds every len[b] */
    a->scratch = mb_bump_take(fb, (size_t)a->scratch_floats * 4);
}

/* Choose the rows a forward computes (a->packed, N, len, row, prob). A batch
   is packed when the caller needs no padded row (pack) and every mask row is
   1...1 0...0 with at least one 1 (right padding, what the tokenizer makes).
   Padded rows never influence the real ones (their keys are masked) and the
   head reads row 0, so loss and gradients are the same either way; only
   the padded rows of the hidden states differ (0 when packed). */
mb_status mb_dbacts_plan_rows(const mb_distilbert_config *c, enc_acts *a, const int32_t *mask, int B, int T, int pack,
                              mb_error *err) {
    if ((size_t)B > a->cap_seq) {
        free(a->len);
        free(a->row);
        a->len = malloc(sizeof(int) * (size_t)B);
        a->row = malloc(sizeof(long) * 3 * (size_t)B);
        a->cap_seq = a->len && a->row ? (size_t)B : 0;
        if (!a->cap_seq) return mb_fail(err, MB_ERR_NOMEM, "out of memory for a batch of %d", B);
    }
    a->prob = a->row + B;
    a->qprob = a->row + 2 * (long)B;
    int packed = pack && mask != NULL;
    for (int b = 0; b < B && packed; b++) {
        const int32_t *mr = mask + (long)b * T;
        int len = 0;
        while (len < T && mr[len] != 0) len++;
        for (int t = len; t < T && packed; t++) packed = mr[t] == 0;
        packed = packed && len > 0;
        a->len[b] = len;
    }
    a->packed = packed;
    long N = 0, np = 0;
    for (int b = 0; b < B; b++) {
        if (!packed) a->len[b] = T;
        a->row[b] = N;
        a->prob[b] = np;
        a->qprob[b] = (long)c->n_heads * N;
        N += a->len[b];
        np += (long)c->n_heads * a->len[b] * a->len[b];
    }
    a->N = (int)N;
    a->n_probs = np;
    return MB_OK;
}

/* Bytes of activations a training forward keeps for all layers (plan_rows done). */
static double kept_bytes(const mb_distilbert_config *c, const enc_acts *a) {
    double per_layer = (5.0 * c->dim + c->hidden_dim) * a->N + (double)a->n_probs;
    return 4.0 * c->n_layers * per_layer;
}

/* Above this many bytes of kept activations a training forward keeps only
   each layer's input and recomputes the layer in backward (one more forward:
   +1/3 of the step's flops, on the few longest batches). MOONBERT_ACTIVATION_MB
   sets it (default 320 MB: a full-size batch-64 fine-tune step stays under
   1.5 GB with AdamW; 0 checkpoints always). */
static double activation_budget(void) {
    const char *e = getenv("MOONBERT_ACTIVATION_MB");
    double mb = e && *e ? atof(e) : 320.0;
    return mb * 1e6;
}

int mb_dbacts_over_budget(const mb_distilbert_config *c, const enc_acts *a) {
    return kept_bytes(c, a) > activation_budget();
}

typedef struct enc_layout {
    const mb_distilbert_config *c;
    enc_acts *a;
    int B, T;
} enc_layout;

static void layout_enc_cb(void *ctx, mb_bump *f, mb_bump *u8, mb_bump *i32) {
    enc_layout *L = ctx;
    layout_enc(L->c, L->a, L->B, L->T, f, u8, i32);
}

mb_status mb_dbacts_prepare(const mb_distilbert_config *c, enc_acts *a, int B, int T, int train, mb_error *err) {
    a->train = train;
    enc_layout L = {c, a, B, T};
    mb_status st = mb_act_blocks_prepare(&a->blocks, layout_enc_cb, &L, B, T, err);
    if (st != MB_OK) return st;
    a->B = B;
    a->T = T;
    return MB_OK;
}

/* One activation set resident at a time: the forward that switches between
   training (keep_acts) and features or evaluation (infer_acts) gives the
   other set's blocks back (each up to ~300 MB at batch 64; a later forward
   allocates them again). A pending backward needs no guard: every forward
   ends the last one's loss. */
void mb_dbacts_release(enc_acts *a) { mb_act_blocks_release(&a->blocks); }

void mb_dbacts_free(enc_acts *a) {
    free(a->len);
    free(a->row);
    mb_act_blocks_release(&a->blocks);
    free(a->layer);
}
