/* bert.c: BERT and its task heads: parameter block, checkpoint I/O, forward,
 * loss and backward on raw buffers (see bert.h). The layers are layers.c's
 * forward/backward pairs; the token-level heads (token classification,
 * question answering) are token_head.c's, shared with DistilBERT's.
 *
 * Reading order: parameter layout and views; construction, init, load, save;
 * activation layout; forward (embeddings, layers, heads); loss; backward.
 */
#include "bert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "classifier_loss.h"
#include "layers.h"
#include "model_folder.h"
#include "parallel.h"
#include "safetensors.h"
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

/* ---- parameter table ------------------------------------------------------ */

const char *mb_bert_class_name(mb_bert_task task) {
    switch (task) {
    case MB_BERT_SEQUENCE_CLASSIFICATION: return "BertForSequenceClassification";
    case MB_BERT_TOKEN_CLASSIFICATION: return "BertForTokenClassification";
    case MB_BERT_QUESTION_ANSWERING: return "BertForQuestionAnswering";
    case MB_BERT_MASKED_LM: return "BertForMaskedLM";
    }
    return "?";
}

static int head_outputs(const mb_bert *m) {
    switch (m->task) {
    case MB_BERT_QUESTION_ANSWERING: return 2;
    case MB_BERT_MASKED_LM: return m->cfg.base.vocab_size;
    default: return m->cfg.base.num_labels;
    }
}

/* Fill m->info in HF state_dict order; returns the number of floats. */
static size_t build_table(mb_bert *m) {
    const mb_distilbert_config *c = &m->cfg.base;
    int D = c->dim, F = c->hidden_dim, i = 0;
    size_t off = 0;
    char name[MB_PARAM_NAME_MAX];
    mb_param_add(m->info, &i, &off, "bert.embeddings.word_embeddings.weight", c->vocab_size, D, 0, 1);
    mb_param_add(m->info, &i, &off, "bert.embeddings.position_embeddings.weight", c->max_position_embeddings, D, 0, 1);
    mb_param_add(m->info, &i, &off, "bert.embeddings.token_type_embeddings.weight", m->cfg.type_vocab_size, D, 0, 1);
    mb_param_add(m->info, &i, &off, "bert.embeddings.LayerNorm.weight", D, 0, 2, 1);
    mb_param_add(m->info, &i, &off, "bert.embeddings.LayerNorm.bias", D, 0, 1, 1);
    static const struct { const char *suffix; int rows, cols, kind; } layer[] = {
        {"attention.self.query.weight", 'D', 'D', 0}, {"attention.self.query.bias", 'D', 0, 1},
        {"attention.self.key.weight", 'D', 'D', 0}, {"attention.self.key.bias", 'D', 0, 1},
        {"attention.self.value.weight", 'D', 'D', 0}, {"attention.self.value.bias", 'D', 0, 1},
        {"attention.output.dense.weight", 'D', 'D', 0}, {"attention.output.dense.bias", 'D', 0, 1},
        {"attention.output.LayerNorm.weight", 'D', 0, 2}, {"attention.output.LayerNorm.bias", 'D', 0, 1},
        {"intermediate.dense.weight", 'F', 'D', 0}, {"intermediate.dense.bias", 'F', 0, 1},
        {"output.dense.weight", 'D', 'F', 0}, {"output.dense.bias", 'D', 0, 1},
        {"output.LayerNorm.weight", 'D', 0, 2}, {"output.LayerNorm.bias", 'D', 0, 1}};
    for (int l = 0; l < c->n_layers; l++)
        for (size_t s = 0; s < sizeof layer / sizeof layer[0]; s++) {
            snprintf(name, sizeof name, "bert.encoder.layer.%d.%s", l, layer[s].suffix);
            int rows = layer[s].rows == 'D' ? D : F;
            int cols = layer[s].cols == 0 ? 0 : layer[s].cols == 'D' ? D : F;
            mb_param_add(m->info, &i, &off, name, rows, cols, layer[s].kind, 1);
        }
    switch (m->task) {
    case MB_BERT_SEQUENCE_CLASSIFICATION:
        mb_param_add(m->info, &i, &off, "bert.pooler.dense.weight", D, D, 0, 1);
        mb_param_add(m->info, &i, &off, "bert.pooler.dense.bias", D, 0, 1, 1);
        /* fallthrough */
    case MB_BERT_TOKEN_CLASSIFICATION:
        mb_param_add(m->info, &i, &off, "classifier.weight", c->num_labels, D, 0, 0);
        mb_param_add(m->info, &i, &off, "classifier.bias", c->num_labels, 0, 1, 0);
        break;
    case MB_BERT_QUESTION_ANSWERING:
        mb_param_add(m->info, &i, &off, "qa_outputs.weight", 2, D, 0, 0);
        mb_param_add(m->info, &i, &off, "qa_outputs.bias", 2, 0, 1, 0);
        break;
    case MB_BERT_MASKED_LM:
        mb_param_add(m->info, &i, &off, "cls.predictions.bias", c->vocab_size, 0, 1, 0);
        mb_param_add(m->info, &i, &off, "cls.predictions.transform.dense.weight", D, D, 0, 0);
        mb_param_add(m->info, &i, &off, "cls.predictions.transform.dense.bias", D, 0, 1, 0);
        mb_param_add(m->info, &i, &off, "cls.predictions.transform.LayerNorm.weight", D, 0, 2, 0);
        mb_param_add(m->info, &i, &off, "cls.predictions.transform.LayerNorm.bias", D, 0, 1, 0);
        break;
    }
    m->n_tensors = i;
    return off;
}

static void make_views(const mb_bert *m, float *base, views *v) {
    const mb_param_info *pi = m->info;
    int i = 0;
#define NEXT (base + pi[i++].offset)
    v->word = NEXT;
    v->pos = NEXT;
    v->type = NEXT;
    v->emb_ln_w = NEXT;
    v->emb_ln_b = NEXT;
    for (int l = 0; l < m->cfg.base.n_layers; l++) {
        layer_views *lv = &v->layer[l];
        lv->q_w = NEXT; lv->q_b = NEXT; lv->k_w = NEXT; lv->k_b = NEXT; lv->v_w = NEXT; lv->v_b = NEXT;
        lv->ao_w = NEXT; lv->ao_b = NEXT; lv->ln1_w = NEXT; lv->ln1_b = NEXT;
        lv->i_w = NEXT; lv->i_b = NEXT; lv->o_w = NEXT; lv->o_b = NEXT; lv->ln2_w = NEXT; lv->ln2_b = NEXT;
    }
    if (m->task == MB_BERT_SEQUENCE_CLASSIFICATION) {
        v->pool_w = NEXT;
        v->pool_b = NEXT;
    }
    if (m->task == MB_BERT_MASKED_LM) {
        v->mlm_bias = NEXT;
        v->tr_w = NEXT;
        v->tr_b = NEXT;
        v->tr_ln_w = NEXT;
        v->tr_ln_b = NEXT;
    } else {
        v->head_w = NEXT;
        v->head_b = NEXT;
    }
#undef NEXT
}

/* ---- construction ---------------------------------------------------------- */

static mb_bert *alloc_model(const mb_bert_config *cfg, mb_bert_task task, uint64_t seed, mb_error *err) {
    if ((int)task < MB_BERT_SEQUENCE_CLASSIFICATION || task > MB_BERT_MASKED_LM) {
        mb_fail(err, MB_ERR_ARG, "unknown BERT task %d", (int)task);
        return NULL;
    }
    if (mb_config_validate(&cfg->base, "config", err) != MB_OK) return NULL;
    mb_threads_init();
    mb_bert *m = calloc(1, sizeof *m);
    if (!m) goto nomem;
    if (mb_bert_config_copy(&m->cfg, cfg, err) != MB_OK) {
        free(m);
        return NULL;
    }
    m->task = task;
    int NL = cfg->base.n_layers;
    m->info = calloc((size_t)(5 + 16 * NL + 6), sizeof *m->info);
    m->p.layer = calloc((size_t)NL, sizeof(layer_views));
    m->g.layer = calloc((size_t)NL, sizeof(layer_views));
    m->keep_acts.layer = calloc((size_t)NL, sizeof(layer_acts));
    m->infer_acts.layer = calloc((size_t)NL, sizeof(layer_acts));
    if (!m->info || !m->p.layer || !m->g.layer || !m->keep_acts.layer || !m->infer_acts.layer) goto nomem;
    m->n_params = build_table(m);
    m->params = calloc(m->n_params, sizeof(float));
    m->grads = calloc(m->n_params, sizeof(float));
    if (!m->params || !m->grads) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory for %zu parameters (%.1f MB twice)", m->n_params,
                m->n_params * 4.0 / 1e6);
        mb_bert_free(m);
        return NULL;
    }
    make_views(m, m->params, &m->p);
    make_views(m, m->grads, &m->g);
    m->keep_acts.keep = 1;
    mb_rng_seed(&m->rng, seed);
    return m;
nomem:
    mb_fail(err, MB_ERR_NOMEM, "out of memory creating the model");
    mb_bert_free(m);
    return NULL;
}

/* HF BertPreTrainedModel._init_weights for tensor i (a missing one: mb_ckpt_rules.init). */
static void init_tensor(void *model, int i) {
    mb_bert *m = model;
    const mb_param_info *pi = &m->info[i];
    mb_param_init_hf(pi, m->params + pi->offset, m->cfg.base.initializer_range, m->cfg.base.pad_token_id, 0, &m->rng);
}

mb_bert *mb_bert_new(const mb_bert_config *cfg, mb_bert_task task, uint64_t seed, mb_error *err) {
    mb_bert *m = alloc_model(cfg, task, seed, err);
    if (!m) return NULL;
    for (int i = 0; i < m->n_tensors; i++) init_tensor(m, i);
    return m;
}

static void free_acts(enc_acts *a) {
    mb_act_blocks_release(&a->blocks);
    free(a->layer);
}

void mb_bert_free(mb_bert *m) {
    if (!m) return;
    mb_bert_config_free(&m->cfg);
    free(m->params);
    free(m->grads);
    free(m->info);
    free(m->p.layer);
    free(m->g.layer);
    free_acts(&m->keep_acts);
    free_acts(&m->infer_acts);
    free(m->head.f);
    free(m->head.u8);
    free(m->head.i32);
    mb_token_head_free(&m->tok);
    free(m->warnings);
    free(m);
}

/* ---- load ------------------------------------------------------------------ */

/* Checkpoint tensors that transformers ignores without a word: the position
   ids buffer of old checkpoints, and the masked-LM decoder tied to the
   embeddings (weight) and to cls.predictions.bias (bias). */
static int silently_ignored(const mb_bert *m, const char *name) {
    if (strstr(name, "embeddings.position_ids")) return 1;
    if (m->task == MB_BERT_MASKED_LM &&
        (strcmp(name, "cls.predictions.decoder.weight") == 0 || strcmp(name, "cls.predictions.decoder.bias") == 0))
        return 1;
    return 0;
}

static const mb_ckpt_rules load_rules = {
    .family = "BERT", .base_prefix = "bert.", .legacy_layernorm = 1, .optional = "bert.pooler.", .init = init_tensor,
    .head_hint = " (num_labels differs from the checkpoint's classifier?)"};

mb_bert *mb_bert_load(const char *dir, const mb_bert_load_opts *opts, mb_error *err) {
    mb_bert_load_opts defaults = {MB_BERT_SEQUENCE_CLASSIFICATION, 0, NULL, 42};
    if (!opts) opts = &defaults;
    char path[4096];
    mb_bert_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (mb_bert_config_load(&cfg, path, err) != MB_OK) return NULL;
    if (mb_config_override_labels(&cfg.base, opts->num_labels, opts->id2label, err) != MB_OK) {
        mb_bert_config_free(&cfg);
        return NULL;
    }
    mb_bert *m = alloc_model(&cfg, opts->task, opts->seed, err);
    mb_bert_config_free(&cfg);
    if (!m) return NULL;
    const char *cls = mb_bert_class_name(m->task);
    mb_safetensors *st = mb_model_folder_open(dir, path, sizeof path, err);
    if (!st) {
        mb_bert_free(m);
        return NULL;
    }
    char *used = calloc((size_t)st->n_tensors + 1, 1);
    mb_name_list missing = {0}, unused = {0};
    mb_status rc = used ? MB_OK : mb_fail(err, MB_ERR_NOMEM, "out of memory");
    if (rc == MB_OK) rc = mb_params_read(st, path, &load_rules, m, m->info, m->n_tensors, m->params, used, &missing, err);
    if (rc == MB_OK) {
        for (int j = 0; j < st->n_tensors; j++)
            if (!used[j] && !silently_ignored(m, st->tensors[j].name)) mb_name_list_add(&unused, st->tensors[j].name);
        if (unused.n)
            mb_warnings_append(&m->warnings, "Some weights of the model checkpoint at %s were not used when "
                               "initializing %s: [%s]\n- This IS expected if you are initializing %s from the "
                               "checkpoint of a model trained on another task or with another architecture (e.g. "
                               "initializing a BertForSequenceClassification model from a BertForPreTraining model).\n"
                               "- This IS NOT expected if you are initializing %s from the checkpoint of a model that "
                               "you expect to be exactly identical.", dir, cls, unused.s, cls, cls);
        if (missing.n) mb_warn_newly_initialized(&m->warnings, cls, dir, missing.s);
    }
    mb_name_list_free(&missing);
    mb_name_list_free(&unused);
    free(used);
    mb_safetensors_close(st);
    if (rc == MB_OK) return m;
    mb_bert_free(m);
    return NULL;
}

/* ---- save ------------------------------------------------------------------ */

static const mb_param_info *param_at(const void *model, int i, const float **data) {
    const mb_bert *m = model;
    *data = m->params + m->info[i].offset;
    return &m->info[i];
}

mb_status mb_bert_save(const mb_bert *m, const char *dir, mb_error *err) {
    char *json = mb_bert_config_to_json(&m->cfg, mb_bert_class_name(m->task), err);
    if (!json) return err ? err->code : MB_ERR_NOMEM;
    mb_status rc = mb_model_folder_save_json(dir, json, m, m->n_tensors, param_at, err);
    free(json);
    return rc;
}

/* ---- accessors ------------------------------------------------------------ */

const mb_bert_config *mb_bert_get_config(const mb_bert *m) { return &m->cfg; }
mb_bert_task mb_bert_get_task(const mb_bert *m) { return m->task; }
const char *mb_bert_warnings(const mb_bert *m) { return m->warnings ? m->warnings : ""; }
mb_rng *mb_bert_rng(mb_bert *m) { return &m->rng; }
float *mb_bert_params(mb_bert *m) { return m->params; }
float *mb_bert_grads(mb_bert *m) { return m->grads; }
size_t mb_bert_num_params(const mb_bert *m) { return m->n_params; }
int mb_bert_num_tensors(const mb_bert *m) { return m->n_tensors; }
const mb_param_info *mb_bert_param_info(const mb_bert *m, int i) {
    return i >= 0 && i < m->n_tensors ? &m->info[i] : NULL;
}
int mb_bert_find_param(const mb_bert *m, const char *name) { return mb_param_find(m->info, m->n_tensors, name); }
int mb_bert_trainable(const mb_bert *m, int i) {
    if (i < 0 || i >= m->n_tensors) return 0;
    return !(m->info[i].encoder && m->frozen);
}
void mb_bert_zero_grad(mb_bert *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }
void mb_bert_freeze_encoder(mb_bert *m, int frozen) {
    m->frozen = frozen != 0;
    m->have_loss = 0;
}
int mb_bert_encoder_frozen(const mb_bert *m) { return m->frozen; }
const float *mb_bert_last_hidden(const mb_bert *m) { return m->last_hidden; }
const float *mb_bert_pooled(const mb_bert *m) {
    return m->fwd_head && m->task == MB_BERT_SEQUENCE_CLASSIFICATION ? m->head.pooled : NULL;
}
const float *mb_bert_logits(const mb_bert *m) {
    if (!m->fwd_head) return NULL;
    switch (m->task) {
    case MB_BERT_SEQUENCE_CLASSIFICATION: return m->head.logits;
    case MB_BERT_MASKED_LM: return m->head.mlogits;
    default: return m->tok.logits;
    }
}
const float *mb_bert_start_logits(const mb_bert *m) {
    return m->fwd_head && m->task == MB_BERT_QUESTION_ANSWERING ? mb_token_head_start(&m->tok) : NULL;
}
const float *mb_bert_end_logits(const mb_bert *m) {
    return m->fwd_head && m->task == MB_BERT_QUESTION_ANSWERING ? mb_token_head_end(&m->tok) : NULL;
}
int mb_bert_num_rows(const mb_bert *m) { return m->fwd_head && m->task == MB_BERT_MASKED_LM ? m->head.n : 0; }
const int32_t *mb_bert_rows(const mb_bert *m) { return m->task == MB_BERT_MASKED_LM ? m->head.rows : NULL; }
int mb_bert_num_outputs(const mb_bert *m) { return head_outputs(m); }

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
    const mb_distilbert_config *c = &m->cfg.base;
    if (B < 1 || T < 1) return mb_fail(err, MB_ERR_SHAPE, "batch is empty (%d x %d)", B, T);
    if (T > c->max_position_embeddings)
        return mb_fail(err, MB_ERR_SHAPE,
                       "sequence length %d is longer than max_position_embeddings (%d): truncate the input "
                       "(tokenizer max_length)", T, c->max_position_embeddings);
    for (long i = 0; i < (long)B * T; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return mb_fail(err, MB_ERR_RANGE, "input_ids[%ld][%ld] = %d is outside the vocabulary (0..%d)", i / T + 1,
                           i % T + 1, ids[i], c->vocab_size - 1);
        if (types && (types[i] < 0 || types[i] >= m->cfg.type_vocab_size))
            return mb_fail(err, MB_ERR_RANGE, "token_type_ids[%ld][%ld] = %d is outside 0..%d (type_vocab_size %d)",
                           i / T + 1, i % T + 1, types[i], m->cfg.type_vocab_size - 1, m->cfg.type_vocab_size);
    }
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
    double D = c->dim, F = c->hidden_dim, BT = (double)B * T, O = head_outputs(m);
    double enc = c->n_layers * (2.0 * BT * (4 * D * D + 2 * D * F) + 4.0 * B * T * T * D);
    double head = m->task == MB_BERT_SEQUENCE_CLASSIFICATION ? 2.0 * B * (D * D + D * O) : 2.0 * BT * D * O;
    double fwd = enc + head;
    return backward ? 3.0 * fwd : fwd;
}
