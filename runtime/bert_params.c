/* bert_params.c: BERT's parameter block: the table in Hugging Face
 * state_dict order for each task and its views, construction and
 * initialisation, loading (transformers' rules, bert.h) and saving a
 * checkpoint folder (model_folder.h), and the accessors. Activations,
 * forward, loss and backward are bert.c's.
 */
#include "bert_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_folder.h"
#include "parallel.h"
#include "safetensors.h"

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
    if (mb_param_blocks_alloc(m->n_params, &m->params, &m->grads, err) != MB_OK) {
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
