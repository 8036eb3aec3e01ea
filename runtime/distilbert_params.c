/* distilbert_params.c: DistilBERT's parameter block: the table in Hugging
 * Face order and its views, construction and initialisation, loading and
 * saving a checkpoint folder (model_folder.h), and the accessors (see
 * distilbert.h). Forward, loss and backward are distilbert.c's.
 */
#include "distilbert_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_folder.h"
#include "parallel.h"
#include "safetensors.h"

/* ---- parameter table ------------------------------------------------------ */

typedef struct tensor_spec {
    const char *suffix;
    int rows, cols; /* cols 0: 1-D */
    mb_param_kind kind;
} tensor_spec;

/* Fill m->info in HF order; returns the number of floats. */
static size_t build_table(mb_distilbert *m) {
    const mb_distilbert_config *c = &m->cfg;
    int D = c->dim, F = c->hidden_dim, L = c->num_labels, i = 0;
    size_t off = 0;
    char name[MB_PARAM_NAME_MAX];
    mb_param_add(m->info, &i, &off, "distilbert.embeddings.word_embeddings.weight", c->vocab_size, D, 0, 1);
    mb_param_add(m->info, &i, &off, "distilbert.embeddings.position_embeddings.weight", c->max_position_embeddings, D, 0, 1);
    mb_param_add(m->info, &i, &off, "distilbert.embeddings.LayerNorm.weight", D, 0, 2, 1);
    mb_param_add(m->info, &i, &off, "distilbert.embeddings.LayerNorm.bias", D, 0, 1, 1);
    const tensor_spec layer[] = {
        {"attention.q_lin.weight", D, D, 0}, {"attention.q_lin.bias", D, 0, 1},
        {"attention.k_lin.weight", D, D, 0}, {"attention.k_lin.bias", D, 0, 1},
        {"attention.v_lin.weight", D, D, 0}, {"attention.v_lin.bias", D, 0, 1},
        {"attention.out_lin.weight", D, D, 0}, {"attention.out_lin.bias", D, 0, 1},
        {"sa_layer_norm.weight", D, 0, 2}, {"sa_layer_norm.bias", D, 0, 1},
        {"ffn.lin1.weight", F, D, 0}, {"ffn.lin1.bias", F, 0, 1},
        {"ffn.lin2.weight", D, F, 0}, {"ffn.lin2.bias", D, 0, 1},
        {"output_layer_norm.weight", D, 0, 2}, {"output_layer_norm.bias", D, 0, 1}};
    for (int l = 0; l < c->n_layers; l++)
        for (size_t s = 0; s < sizeof layer / sizeof layer[0]; s++) {
            snprintf(name, sizeof name, "distilbert.transformer.layer.%d.%s", l, layer[s].suffix);
            mb_param_add(m->info, &i, &off, name, layer[s].rows, layer[s].cols, layer[s].kind, 1);
        }
    m->n_encoder_tensors = i;
    mb_param_add(m->info, &i, &off, "pre_classifier.weight", D, D, 0, 0);
    mb_param_add(m->info, &i, &off, "pre_classifier.bias", D, 0, 1, 0);
    mb_param_add(m->info, &i, &off, "classifier.weight", L, D, 0, 0);
    mb_param_add(m->info, &i, &off, "classifier.bias", L, 0, 1, 0);
    m->n_tensors = i;
    return off;
}

static void make_views(const mb_distilbert *m, float *base, views *v) {
    const mb_param_info *pi = m->info;
    int i = 0;
#define NEXT (base + pi[i++].offset)
    v->word = NEXT;
    v->pos = NEXT;
    v->emb_ln_w = NEXT;
    v->emb_ln_b = NEXT;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_views *lv = &v->layer[l];
        lv->q_w = NEXT; lv->q_b = NEXT; lv->k_w = NEXT; lv->k_b = NEXT;
        lv->v_w = NEXT; lv->v_b = NEXT; lv->o_w = NEXT; lv->o_b = NEXT;
        lv->sa_ln_w = NEXT; lv->sa_ln_b = NEXT;
        lv->ff1_w = NEXT; lv->ff1_b = NEXT; lv->ff2_w = NEXT; lv->ff2_b = NEXT;
        lv->out_ln_w = NEXT; lv->out_ln_b = NEXT;
    }
    v->pre_w = NEXT;
    v->pre_b = NEXT;
    v->cls_w = NEXT;
    v->cls_b = NEXT;
#undef NEXT
}

/* ---- construction ---------------------------------------------------------- */

/* Allocate the blocks for cfg (copied). */
static mb_distilbert *alloc_model(const mb_distilbert_config *cfg, uint64_t seed, mb_error *err) {
    if (mb_config_validate(cfg, "config", err) != MB_OK) return NULL;
    mb_threads_init();
    mb_distilbert *m = calloc(1, sizeof *m);
    if (!m) goto nomem;
    if (mb_config_copy(&m->cfg, cfg, err) != MB_OK) {
        free(m);
        return NULL;
    }
    int n = 4 + 16 * cfg->n_layers + 4;
    m->info = calloc((size_t)n, sizeof *m->info);
    m->p.layer = calloc((size_t)cfg->n_layers, sizeof(layer_views));
    m->g.layer = calloc((size_t)cfg->n_layers, sizeof(layer_views));
    m->keep_acts.layer = calloc((size_t)cfg->n_layers, sizeof(layer_acts));
    m->infer_acts.layer = calloc((size_t)cfg->n_layers, sizeof(layer_acts));
    if (!m->info || !m->p.layer || !m->g.layer || !m->keep_acts.layer || !m->infer_acts.layer) goto nomem;
    m->n_params = build_table(m);
    if (mb_param_blocks_alloc(m->n_params, &m->params, &m->grads, err) != MB_OK) {
        mb_distilbert_free(m);
        return NULL;
    }
    make_views(m, m->params, &m->p);
    make_views(m, m->grads, &m->g);
    m->keep_acts.keep = 1;
    m->infer_acts.keep = 0;
    mb_rng_seed(&m->rng, seed);
    return m;
nomem:
    mb_fail(err, MB_ERR_NOMEM, "out of memory creating the model");
    mb_distilbert_free(m);
    return NULL;
}

/* HF _init_weights for tensor i (a missing one: mb_ckpt_rules.init). */
static void init_tensor(void *model, int i) {
    mb_distilbert *m = model;
    const mb_param_info *pi = &m->info[i];
    mb_param_init_hf(pi, m->params + pi->offset, m->cfg.initializer_range, m->cfg.pad_token_id,
                     m->cfg.sinusoidal_pos_embds, &m->rng);
}

mb_distilbert *mb_distilbert_new(const mb_distilbert_config *cfg, uint64_t seed, mb_error *err) {
    mb_distilbert *m = alloc_model(cfg, seed, err);
    if (!m) return NULL;
    for (int i = 0; i < m->n_tensors; i++) init_tensor(m, i);
    return m;
}

void mb_distilbert_free(mb_distilbert *m) {
    if (!m) return;
    mb_config_free(&m->cfg);
    free(m->params);
    free(m->grads);
    free(m->info);
    free(m->p.layer);
    free(m->g.layer);
    mb_dbacts_free(&m->keep_acts);
    mb_dbacts_free(&m->infer_acts);
    free(m->head.f);
    free(m->head.u8);
    free(m->head.labels);
    free(m->warnings);
    mb_bf16_weights_free(&m->w16);
    free(m);
}

/* ---- load ------------------------------------------------------------------ */

static const mb_ckpt_rules load_rules = {
    .family = "DistilBERT", .base_prefix = "distilbert.", .init = init_tensor,
    .head_hint = " (num_labels differs from the checkpoint's classifier?)"};

mb_distilbert *mb_distilbert_load(const char *dir, const mb_distilbert_load_opts *opts, mb_error *err) {
    mb_distilbert_load_opts defaults = {0, NULL, 42};
    if (!opts) opts = &defaults;
    char path[4096];
    mb_distilbert_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (mb_config_load(&cfg, path, err) != MB_OK) return NULL;
    if (mb_config_override_labels(&cfg, opts->num_labels, opts->id2label, err) != MB_OK) {
        mb_config_free(&cfg);
        return NULL;
    }
    mb_distilbert *m = alloc_model(&cfg, opts->seed, err);
    mb_config_free(&cfg);
    if (!m) return NULL;
    mb_safetensors *st = mb_model_folder_open(dir, path, sizeof path, err);
    if (!st) {
        mb_distilbert_free(m);
        return NULL;
    }
    char *used = calloc((size_t)st->n_tensors + 1, 1);
    mb_name_list missing = {0}, unused = {0};
    int mlm = 0;
    mb_status rc = used ? MB_OK : mb_fail(err, MB_ERR_NOMEM, "out of memory");
    if (rc == MB_OK) rc = mb_params_read(st, path, &load_rules, m, m->info, m->n_tensors, m->params, used, &missing, err);
    if (rc == MB_OK) {
        if (missing.n) mb_warn_newly_initialized(&m->warnings, "DistilBertForSequenceClassification", dir, missing.s);
        for (int j = 0; j < st->n_tensors; j++) {
            if (used[j]) continue;
            const char *nm = st->tensors[j].name;
            if (strncmp(nm, "vocab_", 6) == 0 || strncmp(nm, "distilbert.vocab_", 17) == 0) mlm = 1;
            mb_name_list_add(&unused, nm);
        }
        if (unused.n)
            mb_warnings_append(&m->warnings, "Some weights of the model checkpoint at %s were not used when initializing "
                               "DistilBertForSequenceClassification: [%s]%s", dir, unused.s,
                               mlm ? "\n(the masked-LM head vocab_transform/vocab_layer_norm/vocab_projector is not "
                                     "used for classification: expected when loading a pretrained checkpoint)" : "");
    }
    mb_name_list_free(&missing);
    mb_name_list_free(&unused);
    free(used);
    mb_safetensors_close(st);
    if (rc == MB_OK) return m;
    mb_distilbert_free(m);
    return NULL;
}

/* ---- save ------------------------------------------------------------------ */

static const mb_param_info *param_at(const void *model, int i, const float **data) {
    const mb_distilbert *m = model;
    *data = m->params + m->info[i].offset;
    return &m->info[i];
}

mb_status mb_distilbert_save(const mb_distilbert *m, const char *dir, mb_error *err) {
    return mb_model_folder_save(dir, &m->cfg, "DistilBertForSequenceClassification", m, m->n_tensors, param_at, err);
}

/* ---- accessors ---------------------------------------------------------- */

const mb_distilbert_config *mb_distilbert_get_config(const mb_distilbert *m) { return &m->cfg; }
const char *mb_distilbert_warnings(const mb_distilbert *m) { return m->warnings ? m->warnings : ""; }
mb_rng *mb_distilbert_rng(mb_distilbert *m) { return &m->rng; }
float *mb_distilbert_params(mb_distilbert *m) {
    m->w16.stale = 1; /* the caller may write the parameters */
    m->w16.stale_from = 0;
    return m->params;
}
float *mb_distilbert_grads(mb_distilbert *m) { return m->grads; }
size_t mb_distilbert_num_params(const mb_distilbert *m) { return m->n_params; }
int mb_distilbert_num_tensors(const mb_distilbert *m) { return m->n_tensors; }
const mb_param_info *mb_distilbert_param_info(const mb_distilbert *m, int i) {
    return i >= 0 && i < m->n_tensors ? &m->info[i] : NULL;
}
int mb_distilbert_find_param(const mb_distilbert *m, const char *name) {
    return mb_param_find(m->info, m->n_tensors, name);
}
int mb_distilbert_trainable(const mb_distilbert *m, int i) {
    if (i < 0 || i >= m->n_tensors) return 0;
    if (m->info[i].encoder && m->frozen) return 0;
    if (m->cfg.sinusoidal_pos_embds && strstr(m->info[i].name, "position_embeddings")) return 0;
    return 1;
}
void mb_distilbert_zero_grad(mb_distilbert *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }
void mb_distilbert_freeze_encoder(mb_distilbert *m, int frozen) {
    m->frozen = frozen != 0;
    m->have_loss = 0;
}
int mb_distilbert_encoder_frozen(const mb_distilbert *m) { return m->frozen; }
const float *mb_distilbert_logits(const mb_distilbert *m) { return m->fwd_head ? m->head.logits : NULL; }
const float *mb_distilbert_last_hidden(const mb_distilbert *m) { return m->last_hidden; }

/* ---- a task model over the encoder ---------------------------------------- */

mb_status mb_task_params_alloc(mb_task_params *t, mb_distilbert *enc, const mb_param_info *info, int n_head,
                               mb_error *err) {
    *t = (mb_task_params){.enc = enc, .info = info, .n_head = n_head};
    for (int i = 0; i < enc->n_tensors; i++)
        if (enc->info[i].encoder) t->n_enc = i + 1;
    for (int i = 0; i < n_head; i++) t->numel += info[i].numel;
    return mb_param_blocks_alloc(t->numel, &t->params, &t->grads, err);
}

void mb_task_params_free(mb_task_params *t) {
    mb_distilbert_free(t->enc);
    free(t->params);
    free(t->grads);
    *t = (mb_task_params){0};
}

int mb_task_num_tensors(const mb_task_params *t) { return t->n_enc + t->n_head; }
const mb_param_info *mb_task_param_info(const mb_task_params *t, int i) {
    if (i < 0 || i >= mb_task_num_tensors(t)) return NULL;
    return i < t->n_enc ? &t->enc->info[i] : &t->info[i - t->n_enc];
}
float *mb_task_param(mb_task_params *t, int i) {
    const mb_param_info *pi = mb_task_param_info(t, i);
    if (!pi) return NULL;
    return (i < t->n_enc ? mb_distilbert_params(t->enc) : t->params) + pi->offset;
}
float *mb_task_grad(mb_task_params *t, int i) {
    const mb_param_info *pi = mb_task_param_info(t, i);
    if (!pi) return NULL;
    return (i < t->n_enc ? t->enc->grads : t->grads) + pi->offset;
}
int mb_task_find_param(const mb_task_params *t, const char *name) {
    for (int i = 0; i < mb_task_num_tensors(t); i++)
        if (strcmp(mb_task_param_info(t, i)->name, name) == 0) return i;
    return -1;
}
size_t mb_task_num_params(const mb_task_params *t) {
    size_t n = 0;
    for (int i = 0; i < mb_task_num_tensors(t); i++) n += mb_task_param_info(t, i)->numel;
    return n;
}
void mb_task_zero_grad(mb_task_params *t) {
    mb_distilbert_zero_grad(t->enc);
    memset(t->grads, 0, t->numel * sizeof(float));
}
