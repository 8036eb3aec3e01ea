/* distilbert.c: DistilBertForSequenceClassification's forward, loss and
 * backward on raw buffers (see distilbert.h). The model object and its
 * parameter block (table, views, construction, load, save, accessors) are
 * distilbert_params.c's, over distilbert_impl.h; the activation planner is
 * distilbert_acts.c's.
 *
 * Reading order: the head's buffers; forward; precision; loss; backward.
 */
#include "distilbert_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "classifier_loss.h"
#include "layers.h"
#include "parallel.h"

#define LN_EPS 1e-12f

static mb_status prepare_head(mb_distilbert *m, int B, mb_error *err) {
    head_acts *h = &m->head;
    size_t D = (size_t)m->cfg.dim, L = (size_t)m->cfg.num_labels;
    size_t need_f = (size_t)B * (6 * D + 3 * L + 1) + 64, need_u = (size_t)B * D;
    h->f = mb_grow(h->f, &h->cap_f, need_f * sizeof(float));
    h->u8 = mb_grow(h->u8, &h->cap_u8, need_u);
    if (!h->f || !h->u8) return mb_fail(err, MB_ERR_NOMEM, "out of memory for the head at batch %d", B);
    float *p = h->f;
    h->cls = p; p += B * D;
    h->pre = p; p += B * D;
    h->act = p; p += B * D;
    h->dropped = p; p += B * D;
    h->d_a = p; p += B * D;
    h->d_b = p; p += B * D;
    h->logits = p; p += B * L;
    h->probs = p; p += B * L;
    h->dlogits = p; p += B * L;
    h->per_ex = p;
    h->drop = h->u8;
    return MB_OK;
}

/* ---- forward (activation buffers: distilbert_acts.c) ------------------------- */

/* Keep masks are drawn for the padded shape; a packed forward moves the rows
   (or probability blocks) of real tokens to the front, in row order (each
   destination is at or before its source, so in place is safe). */
static void compact_rows(const enc_acts *a, uint8_t *mask, int B, int T, int D) {
    if (!a->packed) return;
    for (int b = 0; b < B; b++)
        memmove(mask + a->row[b] * D, mask + (long)b * T * D, (size_t)a->len[b] * D);
}

static void compact_probs(const enc_acts *a, uint8_t *mask, int B, int T, int H) {
    if (!a->packed) return;
    for (int b = 0; b < B; b++) {
        long n = a->len[b];
        for (int h = 0; h < H; h++)
            for (long i = 0; i < n; i++)
                memmove(mask + a->prob[b] + h * n * n + i * n, mask + (((long)b * H + h) * T + i) * T, (size_t)n);
    }
}

static void act_forward(const mb_distilbert *m, float *out, const float *inp, long n) {
    if (m->cfg.activation == MB_ACT_RELU) relu_forward(out, inp, n);
    else gelu_forward(out, inp, n);
}

/* h2 = lin2(act(lin1(sa))) on the first `rows` rows (bias of lin2 and the
   residual come in the LayerNorm sweep that follows). */
static void ffn_forward(mb_distilbert *m, enc_acts *a, layer_acts *la, const layer_views *w, int rows) {
    const int D = m->cfg.dim, F = m->cfg.hidden_dim;
    if (m->cfg.activation == MB_ACT_GELU) {
        linear_forward(la->ffn_h, la->sa, w->ff1_w, NULL, rows, D, F);
        bias_gelu_forward(la->ffn_h, a->ffn_g, w->ff1_b, rows, F);
    } else {
        linear_forward(la->ffn_h, la->sa, w->ff1_w, w->ff1_b, rows, D, F);
        act_forward(m, a->ffn_g, la->ffn_h, (long)rows * F);
    }
    linear_forward(la->h2, a->ffn_g, w->ff2_w, NULL, rows, F, D);
}

/* The last block when only [CLS] is read (a->cls_only): q, attention,
   out_lin, LayerNorms and FFN on the B [CLS] rows (a->cls_x, gathered from x),
   k and v on every row of x. Dropout masks are drawn for the padded shape as
   in layer_forward (the RNG stream is the same) and the [CLS] parts kept. */
static void cls_layer_forward(mb_distilbert *m, enc_acts *a, int l, const float *x, const attn_seqs *seqs,
                              float p_attn, float p_ffn, int draw) {
    const mb_distilbert_config *c = &m->cfg;
    const int B = a->B, T = a->T, D = c->dim, H = c->n_heads, N = a->N;
    const layer_views *w = &m->p.layer[l];
    layer_acts *la = &a->layer[l];
    for (int b = 0; b < B; b++) memcpy(a->cls_x + (long)b * D, x + a->row[b] * D, D * sizeof(float));
    linear_forward(la->q, a->cls_x, w->q_w, w->q_b, B, D, D);
    linear_forward(la->k, x, w->k_w, w->k_b, N, D, D);
    linear_forward(la->v, x, w->v_w, w->v_b, N, D, D);
    if (p_attn > 0.0f && draw) { /* keep row 0 of each head's [T,T] block */
        dropout_mask(la->attn_drop, (long)B * H * T * T, p_attn, &m->rng);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                memmove(la->attn_drop + a->qprob[b] + (long)h * a->len[b], la->attn_drop + ((long)b * H + h) * T * T,
                        (size_t)a->len[b]);
    }
    attention_cls_forward(la->ctx, la->probs, la->q, la->k, la->v, seqs, a->qprob, la->attn_drop, p_attn, D, H);
    linear_forward(la->h1, la->ctx, w->o_w, NULL, B, D, D);
    add_layernorm_forward(la->h1, la->sa, la->ln1_mean, la->ln1_rstd, a->cls_x, w->o_b, NULL, 0.0f, w->sa_ln_w,
                          w->sa_ln_b, B, D, LN_EPS);
    ffn_forward(m, a, la, w, B);
    if (p_ffn > 0.0f && draw) { /* keep position 0 of each sequence */
        dropout_mask(la->ffn_drop, (long)B * T * D, p_ffn, &m->rng);
        for (int b = 0; b < B; b++) memmove(la->ffn_drop + (long)b * D, la->ffn_drop + (long)b * T * D, (size_t)D);
    }
    add_layernorm_forward(la->h2, la->out, la->ln2_mean, la->ln2_rstd, la->sa, w->ff2_b,
                          p_ffn > 0.0f ? la->ffn_drop : NULL, p_ffn, w->out_ln_w, w->out_ln_b, B, D, LN_EPS);
}

/* One transformer block on x [N,D] into a->layer[l] (its buffers may be
   shared, see layout_enc). draw: draw the dropout masks (forward) or reuse
   the kept ones (recomputation in backward). attn_out: NULL or [B,H,T,T]
   for output_attentions (padded path only). */
static void layer_forward(mb_distilbert *m, enc_acts *a, int l, const float *x, const attn_seqs *seqs, float p_attn,
                          float p_ffn, int draw, float *attn_out) {
    const mb_distilbert_config *c = &m->cfg;
    const int B = a->B, T = a->T, D = c->dim, H = c->n_heads, N = a->N;
    const long BTD = (long)B * T * D;
    const layer_views *w = &m->p.layer[l];
    layer_acts *la = &a->layer[l];
    /* x = LN(x + out_lin(attention(q, k, v))) */
    linear_forward(la->q, x, w->q_w, w->q_b, N, D, D);
    linear_forward(la->k, x, w->k_w, w->k_b, N, D, D);
    linear_forward(la->v, x, w->v_w, w->v_b, N, D, D);
    if (p_attn > 0.0f && draw) {
        dropout_mask(la->attn_drop, (long)B * H * T * T, p_attn, &m->rng);
        compact_probs(a, la->attn_drop, B, T, H);
    }
    attention_forward_seqs(la->ctx, la->probs, la->q, la->k, la->v, seqs, la->attn_drop, p_attn, D, H, a->scratch);
    if (attn_out) {
        long n = (long)B * H * T * T;
        if (p_attn > 0.0f) dropout_apply(attn_out, la->probs, la->attn_drop, p_attn, n);
        else memcpy(attn_out, la->probs, n * sizeof(float));
    }
    /* biases, dropout and residuals are added in the LayerNorm's sweep and
       the GELU's (bias_gelu_forward, add_layernorm_forward), not by
       separate passes over memory */
    linear_forward(la->h1, la->ctx, w->o_w, NULL, N, D, D);
    add_layernorm_forward(la->h1, la->sa, la->ln1_mean, la->ln1_rstd, x, w->o_b, NULL, 0.0f, w->sa_ln_w,
                          w->sa_ln_b, N, D, LN_EPS);
    /* x = LN(sa + dropout(lin2(act(lin1(sa))))) */
    ffn_forward(m, a, la, w, N);
    if (p_ffn > 0.0f && draw) {
        dropout_mask(la->ffn_drop, BTD, p_ffn, &m->rng);
        compact_rows(a, la->ffn_drop, B, T, D);
    }
    add_layernorm_forward(la->h2, la->out, la->ln2_mean, la->ln2_rstd, la->sa, w->ff2_b,
                          p_ffn > 0.0f ? la->ffn_drop : NULL, p_ffn, w->out_ln_w, w->out_ln_b, N, D, LN_EPS);
}

static mb_status forward_impl(mb_distilbert *m, const int32_t *ids, const int32_t *mask, int B, int T,
                              const mb_forward_opts *opts, mb_error *err) {
    mb_forward_opts none = {0};
    if (!opts) opts = &none;
    const mb_distilbert_config *c = &m->cfg;
    m->have_loss = 0;
    m->fwd_head = 0;
    m->last_hidden = NULL;
    if (mb_config_check_ids(&m->cfg, ids, B, T, err) != MB_OK) return err ? err->code : MB_ERR_ARG;
    int keep_enc = opts->keep && !m->frozen;
    enc_acts *a = keep_enc ? &m->keep_acts : &m->infer_acts;
    mb_dbacts_release(a == &m->keep_acts ? &m->infer_acts : &m->keep_acts);
    /* Padded rows are left out where the caller cannot see them: training
       (keep) and [CLS] features; a plain forward returns every row. */
    int pack = (opts->keep || opts->encoder_only) && !opts->hidden_states && !opts->attentions && !opts->padded_rows;
    if (mb_dbacts_plan_rows(c, a, mask, B, T, pack, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    /* the classification head and [CLS] features read position 0 alone; the
       masked-LM head (encoder_only without cls_only) reads every row */
    a->cls_only = a->packed && (!opts->encoder_only || opts->cls_only);
    a->ckpt = a->keep && mb_dbacts_over_budget(c, a);
    if (mb_dbacts_prepare(c, a, B, T, opts->train, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    if (!opts->encoder_only && prepare_head(m, B, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    m->last = a;
    const int D = c->dim, BT = B * T, N = a->N;
    const long BTD = (long)BT * D, ND = (long)N * D;
    const int train = opts->train;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < a->len[b]; t++) {
            a->ids[a->row[b] + t] = ids[(long)b * T + t];
            a->pos[a->row[b] + t] = t;
        }
    if (mask) memcpy(a->mask, mask, sizeof(int32_t) * BT);
    else for (int i = 0; i < BT; i++) a->mask[i] = 1;
    attn_seqs seqs = {.B = B, .max_len = T, .len = a->len, .row = a->row, .prob = a->prob,
                      .key_mask = a->packed ? NULL : a->mask, .mask_T = T};

    /* embeddings: LN(word + position), dropout */
    embedding_forward_rows(a->emb_sum, a->ids, a->pos, m->p.word, m->p.pos, N, D);
    layernorm_forward(a->emb_out, a->emb_mean, a->emb_rstd, a->emb_sum, m->p.emb_ln_w, m->p.emb_ln_b, N, D, LN_EPS);
    if (train && c->dropout > 0.0f) {
        dropout_mask(a->emb_drop, BTD, c->dropout, &m->rng);
        compact_rows(a, a->emb_drop, B, T, D);
        dropout_apply(a->emb_out, a->emb_out, a->emb_drop, c->dropout, ND);
    }
    if (opts->hidden_states) memcpy(opts->hidden_states[0], a->emb_out, BTD * sizeof(float));

    const float *x = a->emb_out;
    float p_attn = train ? c->attention_dropout : 0.0f, p_ffn = train ? c->dropout : 0.0f;
    for (int l = 0; l < c->n_layers; l++) {
        if (a->cls_only && l == c->n_layers - 1) cls_layer_forward(m, a, l, x, &seqs, p_attn, p_ffn, 1);
        else layer_forward(m, a, l, x, &seqs, p_attn, p_ffn, 1, opts->attentions ? opts->attentions[l] : NULL);
        if (opts->hidden_states) memcpy(opts->hidden_states[l + 1], a->layer[l].out, BTD * sizeof(float));
        x = a->layer[l].out;
    }
    if (a->packed) {
        /* the [B,T,D] view callers expect; padded rows were not computed */
        memset(a->hidden, 0, BTD * sizeof(float));
        for (int b = 0; b < B; b++) /* [CLS] only: row b is sequence b's position 0 */
            memcpy(a->hidden + (long)b * T * D, x + (a->cls_only ? b : a->row[b]) * D,
                   (size_t)(a->cls_only ? 1 : a->len[b]) * D * sizeof(float));
        m->last_hidden = a->hidden;
    } else {
        m->last_hidden = x;
    }
    m->fwd_B = B;
    m->fwd_T = T;
    m->fwd_keep = opts->keep;
    m->fwd_train = train;
    if (opts->encoder_only) return MB_OK;

    /* head: [CLS] -> pre_classifier -> ReLU -> dropout -> classifier */
    head_acts *h = &m->head;
    const int L = c->num_labels;
    for (int b = 0; b < B; b++)
        memcpy(h->cls + (long)b * D, x + (a->cls_only ? b : a->row[b]) * D, D * sizeof(float));
    linear_forward(h->pre, h->cls, m->p.pre_w, m->p.pre_b, B, D, D);
    relu_forward(h->act, h->pre, (long)B * D);
    if (train && c->seq_classif_dropout > 0.0f) {
        dropout_mask(h->drop, (long)B * D, c->seq_classif_dropout, &m->rng);
        dropout_apply(h->dropped, h->act, h->drop, c->seq_classif_dropout, (long)B * D);
    } else {
        memcpy(h->dropped, h->act, (size_t)B * D * sizeof(float));
    }
    linear_forward(h->logits, h->dropped, m->p.cls_w, m->p.cls_b, B, D, L);
    m->fwd_head = 1;
    return MB_OK;
}

/* ---- precision ------------------------------------------------------------- */

mb_status mb_distilbert_set_precision(mb_distilbert *m, const char *name, const char **notice, mb_error *err) {
    if (notice) *notice = NULL;
    if (!name || (strcmp(name, "fp32") && strcmp(name, "bf16")))
        return mb_fail(err, MB_ERR_ARG, "precision 'fp32' or 'bf16' expected, got '%s'", name ? name : "(null)");
    m->bf16 = 0;
    if (!strcmp(name, "bf16")) {
        const char *why;
        if (mb_bf16_kernel_get(&why) == MB_BF16_NONE) {
            if (notice) *notice = why;
        } else {
            m->bf16 = 1;
            m->w16.stale = 1;
        }
    }
    if (!m->bf16) mb_bf16_weights_free(&m->w16);
    return MB_OK;
}

const char *mb_distilbert_precision(const mb_distilbert *m) { return m->bf16 ? "bf16" : "fp32"; }

/* The bf16 weight table for a forward or backward: the layers and the head
   (the embeddings are gathered, not multiplied), converted when stale. */
static mb_status bf16_enter(mb_distilbert *m, mb_error *err) {
    if (!m->bf16) return MB_OK;
    const float *base = m->cfg.n_layers > 0 ? m->p.layer[0].q_w : m->p.pre_w;
    size_t n = (size_t)(m->params + m->n_params - base);
    if (mb_bf16_weights_sync(&m->w16, base, n, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    mb_bf16_begin(&m->w16);
    return MB_OK;
}

mb_status mb_distilbert_forward(mb_distilbert *m, const int32_t *ids, const int32_t *mask, int B, int T,
                                const mb_forward_opts *opts, mb_error *err) {
    if (bf16_enter(m, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    mb_status rc = forward_impl(m, ids, mask, B, T, opts, err);
    mb_bf16_end();
    return rc;
}

mb_status mb_distilbert_features(mb_distilbert *m, const int32_t *ids, const int32_t *mask, int B, int T,
                                 float *out, mb_error *err) {
    mb_forward_opts o = {.train = 0, .keep = 0, .encoder_only = 1, .cls_only = 1};
    int frozen = m->frozen;
    mb_status rc = mb_distilbert_forward(m, ids, mask, B, T, &o, err);
    m->frozen = frozen;
    if (rc != MB_OK) return rc;
    const int D = m->cfg.dim;
    for (int b = 0; b < B; b++) memcpy(out + (long)b * D, m->last_hidden + (long)b * T * D, D * sizeof(float));
    return MB_OK;
}

/* ---- loss ------------------------------------------------------------------ */

static int first_nonfinite(const float *x, size_t n, size_t *at) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            *at = i;
            return 1;
        }
    return 0;
}

/* Name the first place a non-finite value appears, in forward order. */
static mb_status report_nonfinite(mb_distilbert *m, double loss, mb_error *err) {
    const char *what = isnan(loss) ? "NaN" : "Inf";
    size_t at;
    for (int i = 0; i < m->n_tensors; i++)
        if (first_nonfinite(m->params + m->info[i].offset, m->info[i].numel, &at))
            return mb_fail(err, MB_ERR_NUMERIC, "loss is %s: parameter '%s' holds a non-finite value at element %zu "
                           "(diverged? lower the learning rate)", what, m->info[i].name, at);
    enc_acts *a = m->last;
    size_t BTD = a ? (size_t)a->N * m->cfg.dim : 0;
    if (a && first_nonfinite(a->emb_out, BTD, &at))
        return mb_fail(err, MB_ERR_NUMERIC, "loss is %s: the embeddings output is not finite", what);
    if (a && a->keep) /* out = LN2(h2): finite exactly where h2 is (outputs are not kept) */
        for (int l = 0; l < m->cfg.n_layers; l++)
            if (first_nonfinite(a->ckpt ? a->layer[l].out : a->layer[l].h2,
                                a->cls_only && l == m->cfg.n_layers - 1 ? (size_t)a->B * m->cfg.dim : BTD, &at))
                return mb_fail(err, MB_ERR_NUMERIC, "loss is %s: the output of distilbert.transformer.layer.%d is "
                               "not finite", what, l);
    if (first_nonfinite(m->head.logits, (size_t)m->fwd_B * m->cfg.num_labels, &at))
        return mb_fail(err, MB_ERR_NUMERIC, "loss is %s: logits are not finite (row %zu)", what,
                       at / m->cfg.num_labels + 1);
    return mb_fail(err, MB_ERR_NUMERIC, "loss is %s: the labels or targets are not finite", what);
}

mb_status mb_distilbert_loss(mb_distilbert *m, const int32_t *labels, const float *targets, int B, double *loss,
                             float *per_example, mb_error *err) {
    if (!m->fwd_head) return mb_fail(err, MB_ERR_STATE, "loss needs a forward pass with the head first");
    if (B != m->fwd_B)
        return mb_fail(err, MB_ERR_SHAPE, "%d labels for a batch of %d", B, m->fwd_B);
    head_acts *h = &m->head;
    double mean = 0.0;
    mb_status rc = mb_classifier_loss(m->cfg.problem_type, h->logits, labels, targets, B, m->cfg.num_labels, h->per_ex,
                                      h->probs, h->dlogits, &mean, err);
    if (rc != MB_OK) return rc;
    if (per_example) memcpy(per_example, h->per_ex, sizeof(float) * B);
    *loss = mean;
    if (!isfinite(mean)) return report_nonfinite(m, mean, err);
    m->have_loss = 1;
    return MB_OK;
}

/* ---- backward ------------------------------------------------------------- */

/* Backward from d out (a->d_res, first `rows` rows) through LN2, dropout and
   the FFN to d sa in a->d_tmp (the residual included); sa is recomputed from
   LN1's kept input and statistics, the activation from lin1's output. */
static void ffn_backward(mb_distilbert *m, enc_acts *a, int l, int rows, float p_ffn) {
    const int D = m->cfg.dim, F = m->cfg.hidden_dim;
    const layer_views *w = &m->p.layer[l];
    layer_views *g = &m->g.layer[l];
    layer_acts *la = &a->layer[l];
    layernorm_backward(a->d_tmp, g->out_ln_w, g->out_ln_b, a->d_res, la->h2, w->out_ln_w, la->ln2_mean,
                       la->ln2_rstd, rows, D);
    /* h2 = sa + dropout(lin2(act(lin1(sa)))) */
    const float *d_ffn_out = a->d_tmp;
    if (p_ffn > 0.0f) {
        dropout_apply(a->d_res, a->d_tmp, la->ffn_drop, p_ffn, (long)rows * D);
        d_ffn_out = a->d_res;
    }
    act_forward(m, a->ffn_g, la->ffn_h, (long)rows * F); /* recomputed, not kept */
    linear_backward(NULL, g->ff2_w, g->ff2_b, d_ffn_out, a->ffn_g, w->ff2_w, rows, F, D, 0);
    linear_backward(a->dffn, NULL, NULL, d_ffn_out, NULL, w->ff2_w, rows, F, D, 0); /* over ffn_g */
    if (m->cfg.activation == MB_ACT_RELU) relu_backward(a->dffn, la->ffn_h, a->dffn, (long)rows * F);
    else gelu_backward(a->dffn, la->ffn_h, a->dffn, (long)rows * F);
    layernorm_recompute(la->sa, la->h1, la->ln1_mean, la->ln1_rstd, w->sa_ln_w, w->sa_ln_b, rows, D);
    linear_backward(a->d_tmp, g->ff1_w, g->ff1_b, a->dffn, la->sa, w->ff1_w, rows, D, F, 1); /* d sa */
}

/* The layer's input x [N,D] in backward: the embeddings, the previous
   layer's kept output (checkpointing), or its output recomputed from the
   kept LayerNorm input and statistics into a->recompute. */
static const float *layer_input(mb_distilbert *m, enc_acts *a, int l) {
    if (l == 0) return a->emb_out;
    if (a->ckpt) return a->layer[l - 1].out;
    const layer_acts *pa = &a->layer[l - 1];
    const layer_views *pw = &m->p.layer[l - 1];
    layernorm_recompute(a->recompute, pa->h2, pa->ln2_mean, pa->ln2_rstd, pw->out_ln_w, pw->out_ln_b, a->N,
                        m->cfg.dim);
    return a->recompute;
}

/* Backward of cls_layer_forward: d_res holds d out for the B [CLS] rows on
   entry and d x for all N rows on exit. */
static void cls_layer_backward(mb_distilbert *m, enc_acts *a, int l, const attn_seqs *seqs, float p_attn,
                               float p_ffn) {
    const mb_distilbert_config *c = &m->cfg;
    const int B = a->B, D = c->dim, H = c->n_heads, N = a->N;
    const layer_views *w = &m->p.layer[l];
    layer_views *g = &m->g.layer[l];
    layer_acts *la = &a->layer[l];
    if (a->ckpt) cls_layer_forward(m, a, l, l == 0 ? a->emb_out : a->layer[l - 1].out, seqs, p_attn, p_ffn, 0);
    ffn_backward(m, a, l, B, p_ffn);
    /* d h1 into cls_d: the [CLS] rows' residual gradient, added to d x at the end */
    layernorm_backward(a->cls_d, g->sa_ln_w, g->sa_ln_b, a->d_tmp, la->h1, w->sa_ln_w, la->ln1_mean, la->ln1_rstd,
                       B, D);
    attention_cls_context(a->recompute, la->probs, la->v, seqs, a->qprob, la->attn_drop, p_attn, D, H);
    linear_backward(a->dctx, g->o_w, g->o_b, a->cls_d, a->recompute, w->o_w, B, D, D, 0);
    attention_cls_backward(a->dq, a->dk, a->dv, a->dctx, la->probs, la->q, la->k, la->v, seqs, a->qprob,
                           la->attn_drop, p_attn, D, H);
    const float *x = layer_input(m, a, l);
    linear_backward(a->cls_d, g->q_w, g->q_b, a->dq, a->cls_x, w->q_w, B, D, D, 1);
    linear_backward(a->d_res, g->k_w, g->k_b, a->dk, x, w->k_w, N, D, D, 0);
    linear_backward(a->d_res, g->v_w, g->v_b, a->dv, x, w->v_w, N, D, D, 1);
    for (int b = 0; b < B; b++) {
        float *dr = a->d_res + a->row[b] * D;
        const float *dc = a->cls_d + (long)b * D;
        for (int d = 0; d < D; d++) dr[d] += dc[d];
    }
}

static mb_status backward_impl(mb_distilbert *m, mb_error *err);

mb_status mb_distilbert_backward(mb_distilbert *m, mb_error *err) {
    if (bf16_enter(m, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    mb_status rc = backward_impl(m, err);
    mb_bf16_end();
    /* an optimizer step follows: convert again at the next forward (the head alone when the encoder is frozen) */
    size_t from = m->frozen && m->w16.copy ? (size_t)(m->p.pre_w - m->w16.base) : 0;
    if (!m->w16.stale || from < m->w16.stale_from) m->w16.stale_from = from;
    m->w16.stale = 1;
    return rc;
}

static mb_status backward_impl(mb_distilbert *m, mb_error *err) {
    if (!m->have_loss) return mb_fail(err, MB_ERR_STATE, "backward needs forward and loss first");
    if (!m->fwd_keep)
        return mb_fail(err, MB_ERR_STATE, "backward needs a forward that kept its activations (loss, not forward)");
    if (!m->frozen && attention_scratch_floats(m->fwd_T) > m->keep_acts.scratch_floats)
        return mb_fail(err, MB_ERR_STATE, "the thread count grew between forward and backward: run forward again");
    m->have_loss = 0; /* the gradient of this loss is taken once */
    const mb_distilbert_config *c = &m->cfg;
    const int B = m->fwd_B, T = m->fwd_T, D = c->dim, H = c->n_heads, L = c->num_labels;
    enc_acts *a = &m->keep_acts;
    const int N = a->N; /* rows computed by the forward (plan_rows) */
    const long ND = (long)N * D;
    const int train = m->fwd_train;
    head_acts *h = &m->head;
    if (m->d_hidden_in) { /* another head (masked LM) supplies d last_hidden [B,T,D]: the computed rows */
        for (int b = 0; b < B; b++)
            memcpy(a->d_res + a->row[b] * D, m->d_hidden_in + (long)b * T * D, (size_t)a->len[b] * D * sizeof(float));
        goto encoder;
    }

    /* head */
    linear_backward(h->d_a, m->g.cls_w, m->g.cls_b, h->dlogits, h->dropped, m->p.cls_w, B, D, L, 0);
    if (train && c->seq_classif_dropout > 0.0f) dropout_apply(h->d_a, h->d_a, h->drop, c->seq_classif_dropout, (long)B * D);
    relu_backward(h->d_a, h->act, h->d_a, (long)B * D);
    if (m->frozen) {
        linear_backward(NULL, m->g.pre_w, m->g.pre_b, h->d_a, h->cls, m->p.pre_w, B, D, D, 0);
        return MB_OK;
    }
    linear_backward(h->d_b, m->g.pre_w, m->g.pre_b, h->d_a, h->cls, m->p.pre_w, B, D, D, 0);

    /* the head reads position 0 only (with cls_only the last layer's rows are the B positions 0) */
    if (a->cls_only) {
        memcpy(a->d_res, h->d_b, (size_t)B * D * sizeof(float));
    } else {
        memset(a->d_res, 0, ND * sizeof(float));
        for (int b = 0; b < B; b++) memcpy(a->d_res + a->row[b] * D, h->d_b + (long)b * D, D * sizeof(float));
    }
encoder:;
    attn_seqs seqs = {.B = B, .max_len = T, .len = a->len, .row = a->row, .prob = a->prob,
                      .key_mask = a->packed ? NULL : a->mask, .mask_T = T};

    float p_attn = train ? c->attention_dropout : 0.0f, p_ffn = train ? c->dropout : 0.0f;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const layer_views *w = &m->p.layer[l];
        layer_views *g = &m->g.layer[l];
        layer_acts *la = &a->layer[l];
        if (a->cls_only && l == c->n_layers - 1) {
            cls_layer_backward(m, a, l, &seqs, p_attn, p_ffn);
            continue;
        }
        if (a->ckpt) /* the layer's activations again, from its kept input and dropout masks */
            layer_forward(m, a, l, l == 0 ? a->emb_out : a->layer[l - 1].out, &seqs, p_attn, p_ffn, 0, NULL);
        /* out = LN2(h2): d_tmp = d h2 */
        ffn_backward(m, a, l, N, p_ffn);
        /* sa = LN1(h1): d_res = d h1 */
        layernorm_backward(a->d_res, g->sa_ln_w, g->sa_ln_b, a->d_tmp, la->h1, w->sa_ln_w, la->ln1_mean,
                           la->ln1_rstd, N, D);
        /* h1 = x + out_lin(attention(q(x), k(x), v(x))): d_res accumulates d x */
        attention_context_seqs(a->recompute, la->probs, la->v, &seqs, la->attn_drop, p_attn, D, H, a->scratch);
        linear_backward(a->dctx, g->o_w, g->o_b, a->d_res, a->recompute, w->o_w, N, D, D, 0);
        attention_backward_seqs(a->dq, a->dk, a->dv, a->dctx, la->probs, la->q, la->k, la->v, &seqs, la->attn_drop,
                                p_attn, D, H, a->scratch);
        /* the layer input: the embeddings, or the previous layer's output again */
        const float *x = layer_input(m, a, l);
        linear_backward(a->d_res, g->q_w, g->q_b, a->dq, x, w->q_w, N, D, D, 1);
        linear_backward(a->d_res, g->k_w, g->k_b, a->dk, x, w->k_w, N, D, D, 1);
        linear_backward(a->d_res, g->v_w, g->v_b, a->dv, x, w->v_w, N, D, D, 1);
    }
    /* emb_out = dropout(LN(word + position)) */
    if (train && c->dropout > 0.0f) dropout_apply(a->d_res, a->d_res, a->emb_drop, c->dropout, ND);
    layernorm_backward(a->d_tmp, m->g.emb_ln_w, m->g.emb_ln_b, a->d_res, a->emb_sum, m->p.emb_ln_w, a->emb_mean,
                       a->emb_rstd, N, D);
    embedding_backward_rows(m->g.word, c->sinusoidal_pos_embds ? NULL : m->g.pos, a->d_tmp, a->ids, a->pos, N, D,
                            c->pad_token_id);
    return MB_OK;
}

mb_status mb_distilbert_backward_hidden(mb_distilbert *m, const float *d_hidden, mb_error *err) {
    if (!m->last_hidden || m->fwd_head)
        return mb_fail(err, MB_ERR_STATE, "backward_hidden needs an encoder-only forward first");
    if (m->frozen) return MB_OK; /* nothing below the hidden state trains */
    m->have_loss = 1;
    m->d_hidden_in = d_hidden;
    mb_status rc = mb_distilbert_backward(m, err);
    m->d_hidden_in = NULL;
    m->have_loss = 0;
    return rc;
}

/* ---- cost model ------------------------------------------------------------- */

double mb_distilbert_flops(const mb_distilbert *m, int B, int T, int backward, int frozen) {
    const mb_distilbert_config *c = &m->cfg;
    double D = c->dim, F = c->hidden_dim, L = c->num_labels, BT = (double)B * T;
    double enc = c->n_layers * (2.0 * BT * (4 * D * D + 2 * D * F) + 4.0 * B * T * T * D);
    double head = 2.0 * B * (D * D + D * L);
    double fwd = enc + head;
    if (!backward) return fwd;
    if (frozen) return fwd + 2.0 * head;
    return 3.0 * fwd;
}
