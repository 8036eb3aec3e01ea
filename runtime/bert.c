/* bert.c: BERT and its task heads: activations, forward, loss and backward
 * on raw buffers (see bert.h). The layers are layers.c's forward/backward
 * pairs; the token-level heads (token classification, question answering)
 * are token_head.c's, shared with DistilBERT's. The model object and its
 * parameter block (table, views, construction, load, save, accessors) are
 * bert_params.c's, over bert_impl.h.
 *
 * Reading order: activation layout; forward (embeddings, layers, heads);
 * loss; backward.
 */
#include "bert_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classifier_loss.h"
#include "layers.h"
#include "parallel.h"

/* ---- activation layout ------------------------------------------------------ */

static void layout_enc(const mb_bert_config *cfg, enc_acts *a, int B, int T, mb_bump *fb, mb_bump *ub, mb_bump *ib) {
    const mb_distilbert_config *c = &cfg->base;
    size_t N = (size_t)B * T, D = (size_t)c->dim, F = (size_t)c->hidden_dim, H = (size_t)c->n_heads;
    size_t ND = N * D * 4, NF = N * F * 4, Ns = N * 4, BHTT = (size_t)B * H * T * T;
    int train = a->train, keep = a->keep;
    a->ids = mb_bump_take(ib, N * 4);
    a->mask = mb_bump_take(ib, N * 4);
    a->types = mb_bump_take(ib, N * 4);
    a->emb_sum = mb_bump_take(fb, ND);
    a->emb_mean = mb_bump_take(fb, Ns);
    a->emb_rstd = mb_bump_take(fb, Ns);
    a->emb_out = mb_bump_take(fb, ND);
    a->emb_drop = train ? mb_bump_take(ub, N * D) : NULL;
    a->ffn_g = mb_bump_take(fb, NF);
    float *pingpong[2] = {NULL, NULL};
    if (!keep) {
        pingpong[0] = mb_bump_take(fb, ND);
        pingpong[1] = mb_bump_take(fb, ND);
    }
    for (int l = 0; l < c->n_layers; l++) {
        layer_acts *la = &a->layer[l];
        if (!keep && l > 0) { /* inference: one layer's buffers, outputs alternate */
            *la = a->layer[0];
            la->out = pingpong[l % 2];
            continue;
        }
        la->q = mb_bump_take(fb, ND);
        la->k = mb_bump_take(fb, ND);
        la->v = mb_bump_take(fb, ND);
        la->probs = mb_bump_take(fb, BHTT * 4);
        la->ctx = mb_bump_take(fb, ND);
        la->h1 = mb_bump_take(fb, ND);
        la->ln1_mean = mb_bump_take(fb, Ns);
        la->ln1_rstd = mb_bump_take(fb, Ns);
        la->sa = mb_bump_take(fb, ND);
        la->ffn_h = mb_bump_take(fb, NF);
        la->h2 = mb_bump_take(fb, ND);
        la->ln2_mean = mb_bump_take(fb, Ns);
        la->ln2_rstd = mb_bump_take(fb, Ns);
        la->out = keep ? mb_bump_take(fb, ND) : pingpong[0];
        la->attn_drop = train ? mb_bump_take(ub, BHTT) : NULL;
        la->drop1 = train ? mb_bump_take(ub, N * D) : NULL;
        la->drop2 = train ? mb_bump_take(ub, N * D) : NULL;
    }
    if (keep) {
        a->d_res = mb_bump_take(fb, ND);
        a->d_a = mb_bump_take(fb, ND);
        a->d_b = mb_bump_take(fb, ND);
        a->dq = mb_bump_take(fb, ND);
        a->dk = mb_bump_take(fb, ND);
        a->dv = mb_bump_take(fb, ND);
        a->dctx = mb_bump_take(fb, ND);
        a->dffn = mb_bump_take(fb, NF);
    } else {
        a->d_res = a->d_a = a->d_b = a->dq = a->dk = a->dv = a->dctx = a->dffn = NULL;
    }
    a->scratch_floats = attention_scratch_floats(T);
    a->scratch = mb_bump_take(fb, (size_t)a->scratch_floats * 4);
}

typedef struct enc_layout {
    const mb_bert_config *c;
    enc_acts *a;
    int B, T;
} enc_layout;

static void layout_enc_cb(void *ctx, mb_bump *f, mb_bump *u8, mb_bump *i32) {
    enc_layout *L = ctx;
    layout_enc(L->c, L->a, L->B, L->T, f, u8, i32);
}

static mb_status prepare_enc(const mb_bert_config *c, enc_acts *a, int B, int T, int train, mb_error *err) {
    a->train = train;
    enc_layout L = {c, a, B, T};
    mb_status st = mb_act_blocks_prepare(&a->blocks, layout_enc_cb, &L, B, T, err);
    if (st != MB_OK) return st;
    a->B = B;
    a->T = T;
    return MB_OK;
}

/* Sequence head buffers for B examples, masked-LM buffers for n rows. */
static mb_status prepare_head(mb_bert *m, int B, int n, mb_error *err) {
    head_acts *h = &m->head;
    size_t D = (size_t)m->cfg.base.dim, L = (size_t)m->cfg.base.num_labels, V = (size_t)m->cfg.base.vocab_size;
    size_t need_f, need_u = 1, need_i = 1;
    if (m->task == MB_BERT_SEQUENCE_CLASSIFICATION) {
        need_f = (size_t)B * (5 * D + 3 * L + 1) + 64;
        need_u = (size_t)B * D;
    } else {
        need_f = (size_t)n * (6 * D + 2 + 2 * V) + 64;
        need_i = 2 * (size_t)n + 2;
    }
    h->f = mb_grow(h->f, &h->cap_f, need_f * sizeof(float));
    h->u8 = mb_grow(h->u8, &h->cap_u8, need_u);
    h->i32 = mb_grow(h->i32, &h->cap_i, need_i * sizeof(int32_t));
    if (!h->f || !h->u8 || !h->i32) return mb_fail(err, MB_ERR_NOMEM, "out of memory for the head");
    float *p = h->f;
    if (m->task == MB_BERT_SEQUENCE_CLASSIFICATION) {
        h->cls = p; p += B * D;
        h->pooled = p; p += B * D;
        h->dropped = p; p += B * D;
        h->d_a = p; p += B * D;
        h->d_b = p; p += B * D;
        h->logits = p; p += B * L;
        h->probs = p; p += B * L;
        h->dlogits = p; p += B * L;
        h->per_ex = p;
        h->drop = h->u8;
    } else {
        h->hsel = p; p += n * D;
        h->t = p; p += n * D;
        h->a = p; p += n * D;
        h->x = p; p += n * D;
        h->dx = p; p += n * D;
        h->dh = p; p += n * D;
        h->mean = p; p += n;
        h->rstd = p; p += n;
        h->mlogits = p; p += n * V;
        h->mprobs = p;
        h->rows = h->i32;
        h->labels = h->i32 + n;
        h->n = n;
    }
    return MB_OK;
}

/* ---- forward ---------------------------------------------------------------- */

static mb_status check_inputs(const mb_bert *m, const int32_t *ids, const int32_t *types, int B, int T,
                              mb_error *err) {
    if (mb_config_check_ids(&m->cfg.base, ids, B, T, err) != MB_OK) return err ? err->code : MB_ERR_RANGE;
    for (long i = 0; types && i < (long)B * T; i++)
        if (types[i] < 0 || types[i] >= m->cfg.type_vocab_size)
            return mb_fail(err, MB_ERR_RANGE, "token_type_ids[%ld][%ld] = %d is outside 0..%d (type_vocab_size %d)",
                           i / T + 1, i % T + 1, types[i], m->cfg.type_vocab_size - 1, m->cfg.type_vocab_size);
    return MB_OK;
}

static void act_forward(const mb_bert *m, float *out, const float *inp, long n) {
    if (m->cfg.base.activation == MB_ACT_RELU) relu_forward(out, inp, n);
    else gelu_forward(out, inp, n);
}

/* h += bias, then out = act(h) */
static void bias_act_forward(const mb_bert *m, float *h, float *out, const float *bias, int N, int C) {
    if (m->cfg.base.activation == MB_ACT_GELU) {
        bias_gelu_forward(h, out, bias, N, C);
        return;
    }
    for (long r = 0; r < N; r++)
        for (int c = 0; c < C; c++) h[r * C + c] += bias[c];
    relu_forward(out, h, (long)N * C);
}

static void layer_forward(mb_bert *m, enc_acts *a, int l, const float *x, float p_attn, float p_hid) {
    const mb_distilbert_config *c = &m->cfg.base;
    const int B = a->B, T = a->T, D = c->dim, F = c->hidden_dim, H = c->n_heads, N = B * T;
    const float eps = m->cfg.layer_norm_eps;
    const layer_views *w = &m->p.layer[l];
    layer_acts *la = &a->layer[l];
    linear_forward(la->q, x, w->q_w, w->q_b, N, D, D);
    linear_forward(la->k, x, w->k_w, w->k_b, N, D, D);
    linear_forward(la->v, x, w->v_w, w->v_b, N, D, D);
    if (p_attn > 0.0f) dropout_mask(la->attn_drop, (long)B * H * T * T, p_attn, &m->rng);
    attention_forward(la->ctx, la->probs, la->q, la->k, la->v, a->mask, p_attn > 0.0f ? la->attn_drop : NULL, p_attn,
                      B, T, D, H, a->scratch);
    linear_forward(la->h1, la->ctx, w->ao_w, NULL, N, D, D);
    if (p_hid > 0.0f) dropout_mask(la->drop1, (long)N * D, p_hid, &m->rng);
    add_layernorm_forward(la->h1, la->sa, la->ln1_mean, la->ln1_rstd, x, w->ao_b, p_hid > 0.0f ? la->drop1 : NULL,
                          p_hid, w->ln1_w, w->ln1_b, N, D, eps);
    linear_forward(la->ffn_h, la->sa, w->i_w, NULL, N, D, F);
    bias_act_forward(m, la->ffn_h, a->ffn_g, w->i_b, N, F);
    linear_forward(la->h2, a->ffn_g, w->o_w, NULL, N, F, D);
    if (p_hid > 0.0f) dropout_mask(la->drop2, (long)N * D, p_hid, &m->rng);
    add_layernorm_forward(la->h2, la->out, la->ln2_mean, la->ln2_rstd, la->sa, w->o_b,
                          p_hid > 0.0f ? la->drop2 : NULL, p_hid, w->ln2_w, w->ln2_b, N, D, eps);
}

static float classifier_dropout(const mb_bert *m) {
    return m->cfg.classifier_dropout >= 0.0f ? m->cfg.classifier_dropout : m->cfg.base.dropout;
}

static mb_status seq_head_forward(mb_bert *m, int train, mb_error *err) {
    const int B = m->fwd_B, T = m->fwd_T, D = m->cfg.base.dim, L = m->cfg.base.num_labels;
    if (prepare_head(m, B, 0, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    head_acts *h = &m->head;
    for (int b = 0; b < B; b++) memcpy(h->cls + (long)b * D, m->last_hidden + (long)b * T * D, D * sizeof(float));
    linear_forward(h->pooled, h->cls, m->p.pool_w, m->p.pool_b, B, D, D);
    for (long i = 0; i < (long)B * D; i++) h->pooled[i] = tanhf(h->pooled[i]);
    float p = train ? classifier_dropout(m) : 0.0f;
    if (p > 0.0f) {
        dropout_mask(h->drop, (long)B * D, p, &m->rng);
        dropout_apply(h->dropped, h->pooled, h->drop, p, (long)B * D);
    } else {
        memcpy(h->dropped, h->pooled, (size_t)B * D * sizeof(float));
    }
    linear_forward(h->logits, h->dropped, m->p.head_w, m->p.head_b, B, D, L);
    return MB_OK;
}

/* The masked-LM head at n rows (flat b*T+t). */
static mb_status mlm_head_forward(mb_bert *m, const int32_t *rows, int n, mb_error *err) {
    const int D = m->cfg.base.dim, V = m->cfg.base.vocab_size, BT = m->fwd_B * m->fwd_T;
    for (int i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= BT)
            return mb_fail(err, MB_ERR_RANGE, "positions[%d] = %d is outside the batch (0..%d)", i + 1, rows[i], BT - 1);
    if (prepare_head(m, m->fwd_B, n, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    head_acts *h = &m->head;
    memcpy(h->rows, rows, (size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) memcpy(h->hsel + (long)i * D, m->last_hidden + (long)rows[i] * D, D * sizeof(float));
    linear_forward(h->t, h->hsel, m->p.tr_w, NULL, n, D, D);
    bias_act_forward(m, h->t, h->a, m->p.tr_b, n, D);
    layernorm_forward(h->x, h->mean, h->rstd, h->a, m->p.tr_ln_w, m->p.tr_ln_b, n, D, m->cfg.layer_norm_eps);
    linear_forward(h->mlogits, h->x, m->p.word, m->p.mlm_bias, n, D, V);
    return MB_OK;
}

mb_status mb_bert_forward(mb_bert *m, const int32_t *ids, const int32_t *mask, const int32_t *types, int B, int T,
                          const mb_bert_forward_opts *opts, mb_error *err) {
    mb_bert_forward_opts defaults = {0};
    if (!opts) opts = &defaults;
    m->fwd_head = 0;
    m->have_loss = 0;
    m->last_hidden = NULL;
    if (check_inputs(m, ids, types, B, T, err) != MB_OK) return err ? err->code : MB_ERR_ARG;
    const mb_distilbert_config *c = &m->cfg.base;
    const int D = c->dim, N = B * T;
    int keep = opts->keep && !m->frozen; /* a frozen encoder needs nothing kept below the head */
    enc_acts *a = keep ? &m->keep_acts : &m->infer_acts;
    int train = opts->train;
    if (prepare_enc(&m->cfg, a, B, T, train, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    memcpy(a->ids, ids, (size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        a->mask[i] = mask ? mask[i] : 1;
        a->types[i] = types ? types[i] : 0;
    }
    float p_hid = train ? c->dropout : 0.0f, p_attn = train ? c->attention_dropout : 0.0f;
    /* embeddings: LN(word + position + token type), dropout */
    embedding_forward(a->emb_sum, a->ids, m->p.word, m->p.pos, B, T, D);
    for (long r = 0; r < N; r++) {
        float *o = a->emb_sum + r * D;
        const float *te = m->p.type + (long)a->types[r] * D;
        for (int d = 0; d < D; d++) o[d] += te[d];
    }
    layernorm_forward(a->emb_out, a->emb_mean, a->emb_rstd, a->emb_sum, m->p.emb_ln_w, m->p.emb_ln_b, N, D,
                      m->cfg.layer_norm_eps);
    if (p_hid > 0.0f) {
        dropout_mask(a->emb_drop, (long)N * D, p_hid, &m->rng);
        dropout_apply(a->emb_out, a->emb_out, a->emb_drop, p_hid, (long)N * D);
    }
    const float *x = a->emb_out;
    for (int l = 0; l < c->n_layers; l++) {
        layer_forward(m, a, l, x, p_attn, p_hid);
        x = a->layer[l].out;
    }
    m->last = a;
    m->last_hidden = x;
    m->fwd_B = B;
    m->fwd_T = T;
    m->fwd_keep = opts->keep;
    m->fwd_train = train;
    if (opts->encoder_only) return MB_OK;
    mb_status rc = MB_OK;
    switch (m->task) {
    case MB_BERT_SEQUENCE_CLASSIFICATION:
        rc = seq_head_forward(m, train, err);
        break;
    case MB_BERT_TOKEN_CLASSIFICATION:
        rc = mb_token_head_forward(&m->tok, x, B, T, D, c->num_labels, m->p.head_w, m->p.head_b,
                                   classifier_dropout(m), train, &m->rng, err);
        break;
    case MB_BERT_QUESTION_ANSWERING: /* no dropout before qa_outputs in BertForQuestionAnswering */
        rc = mb_token_head_forward(&m->tok, x, B, T, D, 2, m->p.head_w, m->p.head_b, 0.0f, 0, &m->rng, err);
        break;
    case MB_BERT_MASKED_LM:
        if (opts->positions) {
            rc = mlm_head_forward(m, opts->positions, opts->n_positions, err);
        } else {
            int32_t *all = malloc(sizeof(int32_t) * (size_t)N);
            if (!all) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
            for (int i = 0; i < N; i++) all[i] = i;
            rc = mlm_head_forward(m, all, N, err);
            free(all);
        }
        break;
    }
    if (rc == MB_OK) m->fwd_head = 1;
    return rc;
}

/* ---- loss ------------------------------------------------------------------ */

static mb_status mlm_loss(mb_bert *m, const int32_t *labels, int B, int T, double *loss, mb_error *err) {
    head_acts *h = &m->head;
    const int V = m->cfg.base.vocab_size;
    int labelled = 0, in_rows = 0;
    for (long i = 0; i < (long)B * T; i++) {
        if (labels[i] == -100) continue;
        if (labels[i] < 0 || labels[i] >= V)
            return mb_fail(err, MB_ERR_RANGE, "labels[%ld][%ld] = %d is outside the vocabulary (0..%d) and is not -100",
                           i / T + 1, i % T + 1, labels[i], V - 1);
        labelled++;
    }
    for (int r = 0; r < h->n; r++) {
        h->labels[r] = labels[h->rows[r]];
        if (h->labels[r] != -100) in_rows++;
    }
    if (labelled == 0) return mb_fail(err, MB_ERR_ARG, "every label is -100 (ignored): the loss is undefined");
    if (in_rows != labelled)
        return mb_fail(err, MB_ERR_STATE, "the forward computed logits at %d of the %d labelled positions "
                       "(use mb_bert_mlm_loss)", in_rows, labelled);
    int count;
    float *per_row = h->dx; /* [n] scratch: dx is written only in backward */
    crossentropy_forward(per_row, h->mprobs, h->mlogits, h->labels, h->n, V, loss, &count);
    crossentropy_backward(h->mprobs, h->mprobs, h->labels, h->n, V, 1.0f / count);
    return MB_OK;
}

mb_status mb_bert_loss(mb_bert *m, const int32_t *labels, const int32_t *labels2, const float *targets, int B, int T,
                       double *loss, float *per_example, mb_error *err) {
    if (!m->fwd_head) return mb_fail(err, MB_ERR_STATE, "loss needs a forward pass with the head first");
    if (B != m->fwd_B || T != m->fwd_T)
        return mb_fail(err, MB_ERR_SHAPE, "labels for a batch of %d x %d, but the forward had %d x %d", B, T, m->fwd_B,
                       m->fwd_T);
    mb_status rc;
    *loss = NAN;
    switch (m->task) {
    case MB_BERT_SEQUENCE_CLASSIFICATION:
        rc = mb_classifier_loss(m->cfg.base.problem_type, m->head.logits, labels, targets, B, m->cfg.base.num_labels,
                                m->head.per_ex, m->head.probs, m->head.dlogits, loss, err);
        if (rc == MB_OK && per_example) memcpy(per_example, m->head.per_ex, sizeof(float) * B);
        break;
    case MB_BERT_TOKEN_CLASSIFICATION:
        if (!labels) return mb_fail(err, MB_ERR_ARG, "token classification needs labels [B,T]");
        rc = mb_token_head_loss(&m->tok, labels, loss, NULL, err);
        if (rc == MB_OK && per_example) memcpy(per_example, m->tok.per_row, sizeof(float) * B * T);
        break;
    case MB_BERT_QUESTION_ANSWERING:
        if (!labels || !labels2) return mb_fail(err, MB_ERR_ARG, "question answering needs start and end positions");
        rc = mb_token_head_qa_loss(&m->tok, labels, labels2, loss, err);
        if (rc == MB_OK && per_example)
            for (int b = 0; b < B; b++) per_example[b] = 0.5f * (m->tok.per_row[b] + m->tok.per_row[B + b]);
        break;
    default:
        if (!labels) return mb_fail(err, MB_ERR_ARG, "the masked-LM loss needs labels [B,T]");
        rc = mlm_loss(m, labels, B, T, loss, err);
        break;
    }
    if (rc != MB_OK) return rc;
    if (!isfinite(*loss))
        return mb_fail(err, MB_ERR_NUMERIC, "loss is %s (diverged? lower the learning rate)", isnan(*loss) ? "NaN" : "Inf");
    m->have_loss = 1;
    return MB_OK;
}

mb_status mb_bert_mlm_loss(mb_bert *m, const int32_t *ids, const int32_t *mask, const int32_t *types,
                           const int32_t *labels, int B, int T, int train, double *loss, int *n_masked,
                           mb_error *err) {
    if (m->task != MB_BERT_MASKED_LM) return mb_fail(err, MB_ERR_STATE, "not a masked-LM model");
    if (B < 1 || T < 1) return mb_fail(err, MB_ERR_SHAPE, "batch is empty (%d x %d)", B, T);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!pos) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < B * T; i++)
        if (labels[i] != -100) pos[n++] = i;
    mb_bert_forward_opts o = {.train = train, .keep = 1, .positions = pos, .n_positions = n};
    mb_status rc = mb_bert_forward(m, ids, mask, types, B, T, &o, err);
    free(pos);
    if (rc == MB_OK) rc = mb_bert_loss(m, labels, NULL, NULL, B, T, loss, NULL, err);
    if (rc == MB_OK && n_masked) *n_masked = n;
    return rc;
}

/* ---- backward ------------------------------------------------------------- */

/* d_res = d last hidden state [N,D] from the head (all rows written); returns
   0 when the encoder is frozen (the head's own gradients are done). */
static int head_backward(mb_bert *m, enc_acts *a, mb_error *err) {
    const mb_distilbert_config *c = &m->cfg.base;
    const int B = m->fwd_B, T = m->fwd_T, D = c->dim, N = B * T;
    float *d_res = m->frozen ? NULL : a->d_res;
    head_acts *h = &m->head;
    switch (m->task) {
    case MB_BERT_SEQUENCE_CLASSIFICATION: {
        const int L = c->num_labels;
        linear_backward(h->d_a, m->g.head_w, m->g.head_b, h->dlogits, h->dropped, m->p.head_w, B, D, L, 0);
        if (m->frozen) return 0; /* the pooler is part of bert.* */
        float p = m->fwd_train ? classifier_dropout(m) : 0.0f;
        if (p > 0.0f) dropout_apply(h->d_a, h->d_a, h->drop, p, (long)B * D);
        for (long i = 0; i < (long)B * D; i++) h->d_a[i] *= 1.0f - h->pooled[i] * h->pooled[i];
        linear_backward(h->d_b, m->g.pool_w, m->g.pool_b, h->d_a, h->cls, m->p.pool_w, B, D, D, 0);
        memset(d_res, 0, sizeof(float) * (size_t)N * D);
        for (int b = 0; b < B; b++) memcpy(d_res + (long)b * T * D, h->d_b + (long)b * D, D * sizeof(float));
        return 1;
    }
    case MB_BERT_TOKEN_CLASSIFICATION:
    case MB_BERT_QUESTION_ANSWERING:
        mb_token_head_backward(&m->tok, m->p.head_w, m->g.head_w, m->g.head_b, d_res, err);
        return !m->frozen;
    case MB_BERT_MASKED_LM: {
        const int n = h->n, V = c->vocab_size;
        /* logits = x word^T + bias: the tied word matrix is an encoder tensor */
        linear_backward(h->dx, m->frozen ? NULL : m->g.word, m->g.mlm_bias, h->mprobs, h->x, m->p.word, n, D, V, 0);
        layernorm_backward(h->dh, m->g.tr_ln_w, m->g.tr_ln_b, h->dx, h->a, m->p.tr_ln_w, h->mean, h->rstd, n, D);
        if (c->activation == MB_ACT_RELU) relu_backward(h->dh, h->t, h->dh, (long)n * D);
        else gelu_backward(h->dh, h->t, h->dh, (long)n * D);
        linear_backward(h->dx, m->g.tr_w, m->g.tr_b, h->dh, h->hsel, m->p.tr_w, n, D, D, 0);
        if (m->frozen) return 0;
        memset(d_res, 0, sizeof(float) * (size_t)N * D);
        for (int i = 0; i < n; i++) {
            float *d = d_res + (long)h->rows[i] * D;
            const float *s = h->dx + (long)i * D;
            for (int k = 0; k < D; k++) d[k] += s[k];
        }
        return 1;
    }
    }
    return 0;
}

mb_status mb_bert_backward(mb_bert *m, mb_error *err) {
    if (!m->have_loss) return mb_fail(err, MB_ERR_STATE, "backward needs forward and loss first");
    if (!m->fwd_keep)
        return mb_fail(err, MB_ERR_STATE, "backward needs a forward that kept its activations (keep=1)");
    if (!m->frozen && attention_scratch_floats(m->fwd_T) > m->keep_acts.scratch_floats)
        return mb_fail(err, MB_ERR_STATE, "the thread count grew between forward and backward: run forward again");
    m->have_loss = 0;
    enc_acts *a = &m->keep_acts;
    if (!head_backward(m, a, err)) return MB_OK;
    const mb_distilbert_config *c = &m->cfg.base;
    const int B = m->fwd_B, T = m->fwd_T, D = c->dim, F = c->hidden_dim, H = c->n_heads, N = B * T;
    const long ND = (long)N * D;
    float p_hid = m->fwd_train ? c->dropout : 0.0f, p_attn = m->fwd_train ? c->attention_dropout : 0.0f;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const layer_views *w = &m->p.layer[l];
        layer_views *g = &m->g.layer[l];
        layer_acts *la = &a->layer[l];
        const float *x = l == 0 ? a->emb_out : a->layer[l - 1].out;
        /* out = LN2(h2), h2 = sa + dropout(output.dense(act(ffn_h))) */
        layernorm_backward(a->d_a, g->ln2_w, g->ln2_b, a->d_res, la->h2, w->ln2_w, la->ln2_mean, la->ln2_rstd, N, D);
        const float *d_lin = a->d_a;
        if (p_hid > 0.0f) {
            dropout_apply(a->d_b, a->d_a, la->drop2, p_hid, ND);
            d_lin = a->d_b;
        }
        act_forward(m, a->ffn_g, la->ffn_h, (long)N * F); /* recomputed, not kept */
        linear_backward(a->dffn, g->o_w, g->o_b, d_lin, a->ffn_g, w->o_w, N, F, D, 0);
        if (c->activation == MB_ACT_RELU) relu_backward(a->dffn, la->ffn_h, a->dffn, (long)N * F);
        else gelu_backward(a->dffn, la->ffn_h, a->dffn, (long)N * F);
        linear_backward(a->d_a, g->i_w, g->i_b, a->dffn, la->sa, w->i_w, N, D, F, 1); /* d sa, residual included */
        /* sa = LN1(h1), h1 = x + dropout(attention.output.dense(ctx)) */
        layernorm_backward(a->d_res, g->ln1_w, g->ln1_b, a->d_a, la->h1, w->ln1_w, la->ln1_mean, la->ln1_rstd, N, D);
        d_lin = a->d_res;
        if (p_hid > 0.0f) {
            dropout_apply(a->d_b, a->d_res, la->drop1, p_hid, ND);
            d_lin = a->d_b;
        }
        linear_backward(a->dctx, g->ao_w, g->ao_b, d_lin, la->ctx, w->ao_w, N, D, D, 0);
        attention_backward(a->dq, a->dk, a->dv, a->dctx, la->probs, la->q, la->k, la->v, a->mask,
                           p_attn > 0.0f ? la->attn_drop : NULL, p_attn, B, T, D, H, a->scratch);
        linear_backward(a->d_res, g->q_w, g->q_b, a->dq, x, w->q_w, N, D, D, 1);
        linear_backward(a->d_res, g->k_w, g->k_b, a->dk, x, w->k_w, N, D, D, 1);
        linear_backward(a->d_res, g->v_w, g->v_b, a->dv, x, w->v_w, N, D, D, 1);
    }
    /* emb_out = dropout(LN(word + position + token type)) */
    if (p_hid > 0.0f) dropout_apply(a->d_res, a->d_res, a->emb_drop, p_hid, ND);
    layernorm_backward(a->d_a, m->g.emb_ln_w, m->g.emb_ln_b, a->d_res, a->emb_sum, m->p.emb_ln_w, a->emb_mean,
                       a->emb_rstd, N, D);
    embedding_backward(m->g.word, m->g.pos, a->d_a, a->ids, B, T, D, c->pad_token_id);
    for (long r = 0; r < N; r++) {
        float *gt = m->g.type + (long)a->types[r] * D;
        const float *d = a->d_a + r * D;
        for (int k = 0; k < D; k++) gt[k] += d[k];
    }
    return MB_OK;
}

/* ---- cost model ------------------------------------------------------------- */

double mb_bert_flops(const mb_bert *m, int B, int T, int backward) {
    const mb_distilbert_config *c = &m->cfg.base;
    double D = c->dim, F = c->hidden_dim, BT = (double)B * T, O = mb_bert_num_outputs(m);
    double enc = c->n_layers * (2.0 * BT * (4 * D * D + 2 * D * F) + 4.0 * B * T * T * D);
    double head = m->task == MB_BERT_SEQUENCE_CLASSIFICATION ? 2.0 * B * (D * D + D * O) : 2.0 * BT * D * O;
    double fwd = enc + head;
    return backward ? 3.0 * fwd : fwd;
}
