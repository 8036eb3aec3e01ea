/* distilbert_heads.c: DistilBERT's token-classification and question-answering
 * models = distilbert.c's encoder + token_head.c (see distilbert_heads.h).
 */
#include "distilbert_heads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_folder.h"
#include "safetensors.h"
#include "token_head.h"

struct mb_distilbert_heads {
    mb_task_params tp;        /* the encoder's tensors, then the head's block */
    mb_dbh_task task;
    int L;                    /* head outputs */
    mb_param_info info[2];    /* weight [L,D], bias [L] */
    char *warnings;
    mb_token_head head;
    float *d_hidden;          /* [B,T,D] */
    size_t cap_hidden;
    int fwd_B, fwd_T, fwd_keep, have_fwd;
};

const char *mb_dbh_class_name(mb_dbh_task task) {
    return task == MB_DBH_QUESTION_ANSWERING ? "DistilBertForQuestionAnswering" : "DistilBertForTokenClassification";
}

/* HF _init_weights: Linear N(0, initializer_range), bias 0. */
static void init_head(void *model, int i) {
    mb_distilbert_heads *m = model;
    const mb_distilbert_config *c = mb_distilbert_get_config(m->tp.enc);
    mb_param_init_hf(&m->info[i], m->tp.params + m->info[i].offset, c->initializer_range, c->pad_token_id, 0,
                     mb_distilbert_rng(m->tp.enc));
}

/* Take over enc and allocate the head's block. */
static mb_distilbert_heads *wrap(mb_distilbert *enc, mb_dbh_task task, mb_error *err) {
    if (!enc) return NULL;
    mb_distilbert_heads *m = calloc(1, sizeof *m);
    if (!m) {
        mb_distilbert_free(enc);
        mb_fail(err, MB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->tp.enc = enc;
    m->task = task;
    const mb_distilbert_config *c = mb_distilbert_get_config(enc);
    m->L = task == MB_DBH_QUESTION_ANSWERING ? 2 : c->num_labels;
    const char *prefix = task == MB_DBH_QUESTION_ANSWERING ? "qa_outputs" : "classifier";
    int i = 0;
    size_t off = 0;
    char name[MB_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    mb_param_add(m->info, &i, &off, name, m->L, c->dim, MB_PARAM_WEIGHT, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    mb_param_add(m->info, &i, &off, name, m->L, 0, MB_PARAM_BIAS, 0);
    if (mb_task_params_alloc(&m->tp, enc, m->info, 2, err) != MB_OK) {
        mb_dbh_free(m);
        return NULL;
    }
    return m;
}

mb_distilbert_heads *mb_dbh_new(const mb_distilbert_config *cfg, mb_dbh_task task, uint64_t seed, mb_error *err) {
    mb_distilbert_heads *m = wrap(mb_distilbert_new(cfg, seed, err), task, err);
    if (!m) return NULL;
    init_head(m, 0);
    init_head(m, 1);
    return m;
}

void mb_dbh_free(mb_distilbert_heads *m) {
    if (!m) return;
    mb_task_params_free(&m->tp);
    free(m->warnings);
    free(m->d_hidden);
    mb_token_head_free(&m->head);
    free(m);
}

/* The head's tensors in a checkpoint (the encoder's loader reads the rest). */
static const mb_ckpt_rules head_rules = {
    .family = "DistilBERT", .init = init_head, .head_hint = " (num_labels differs from the checkpoint's classifier?)"};

mb_distilbert_heads *mb_dbh_load(const char *dir, mb_dbh_task task, const mb_distilbert_load_opts *opts,
                                 mb_error *err) {
    mb_distilbert_load_opts o = {0, NULL, 42};
    if (opts) o = *opts;
    /* The encoder's loader handles prefixes, dtypes and shapes; its warnings
       are about the sequence-classification head, which is not used here. */
    mb_distilbert_heads *m = wrap(mb_distilbert_load(dir, &o, err), task, err);
    if (!m) return NULL;
    char path[4096];
    mb_safetensors *st = mb_model_folder_open(dir, path, sizeof path, err);
    mb_name_list missing = {0};
    mb_status rc = st ? mb_params_read(st, path, &head_rules, m, m->info, 2, m->tp.params, NULL, &missing, err)
                      : MB_ERR_IO;
    mb_safetensors_close(st);
    if (rc == MB_OK && missing.n)
        mb_warn_newly_initialized(&m->warnings, mb_dbh_class_name(task), dir, missing.s);
    mb_name_list_free(&missing);
    if (rc == MB_OK) return m;
    mb_dbh_free(m);
    return NULL;
}

static const mb_param_info *param_at(const void *model, int i, const float **data) {
    mb_distilbert_heads *m = (mb_distilbert_heads *)model; /* mb_dbh_param does not write */
    *data = mb_dbh_param(m, i);
    return mb_dbh_param_info(m, i);
}

mb_status mb_dbh_save(const mb_distilbert_heads *m, const char *dir, mb_error *err) {
    return mb_model_folder_save(dir, mb_distilbert_get_config(m->tp.enc), mb_dbh_class_name(m->task), m,
                                mb_dbh_num_tensors(m), param_at, err);
}

/* ---- accessors -------------------------------------------------------------- */

mb_distilbert *mb_dbh_encoder(mb_distilbert_heads *m) { return m->tp.enc; }
mb_dbh_task mb_dbh_get_task(const mb_distilbert_heads *m) { return m->task; }
const char *mb_dbh_warnings(const mb_distilbert_heads *m) { return m->warnings ? m->warnings : ""; }
int mb_dbh_num_outputs(const mb_distilbert_heads *m) { return m->L; }
int mb_dbh_num_tensors(const mb_distilbert_heads *m) { return mb_task_num_tensors(&m->tp); }
const mb_param_info *mb_dbh_param_info(const mb_distilbert_heads *m, int i) { return mb_task_param_info(&m->tp, i); }
float *mb_dbh_param(mb_distilbert_heads *m, int i) { return mb_task_param(&m->tp, i); }
float *mb_dbh_grad(mb_distilbert_heads *m, int i) { return mb_task_grad(&m->tp, i); }
int mb_dbh_find_param(const mb_distilbert_heads *m, const char *name) { return mb_task_find_param(&m->tp, name); }
size_t mb_dbh_num_params(const mb_distilbert_heads *m) { return mb_task_num_params(&m->tp); }
void mb_dbh_zero_grad(mb_distilbert_heads *m) { mb_task_zero_grad(&m->tp); }
const float *mb_dbh_logits(const mb_distilbert_heads *m) { return m->have_fwd ? m->head.logits : NULL; }
const float *mb_dbh_start_logits(const mb_distilbert_heads *m) {
    return m->have_fwd ? mb_token_head_start(&m->head) : NULL;
}
const float *mb_dbh_end_logits(const mb_distilbert_heads *m) {
    return m->have_fwd ? mb_token_head_end(&m->head) : NULL;
}
const float *mb_dbh_last_hidden(const mb_distilbert_heads *m) { return mb_distilbert_last_hidden(m->tp.enc); }

/* ---- forward, loss, backward ------------------------------------------------------ */

mb_status mb_dbh_forward(mb_distilbert_heads *m, const int32_t *ids, const int32_t *mask, int B, int T, int train,
                         int keep, mb_error *err) {
    m->have_fwd = 0;
    const mb_distilbert_config *c = mb_distilbert_get_config(m->tp.enc);
    mb_forward_opts o = {.train = train, .keep = keep, .encoder_only = 1, .padded_rows = 1};
    if (mb_distilbert_forward(m->tp.enc, ids, mask, B, T, &o, err) != MB_OK) return err ? err->code : MB_ERR_ARG;
    float p = m->task == MB_DBH_QUESTION_ANSWERING ? c->qa_dropout : c->dropout;
    mb_status rc = mb_token_head_forward(&m->head, mb_distilbert_last_hidden(m->tp.enc), B, T, c->dim, m->L,
                                         m->tp.params + m->info[0].offset, m->tp.params + m->info[1].offset, p, train,
                                         mb_distilbert_rng(m->tp.enc), err);
    if (rc != MB_OK) return rc;
    m->fwd_B = B;
    m->fwd_T = T;
    m->fwd_keep = keep;
    m->have_fwd = 1;
    return MB_OK;
}

mb_status mb_dbh_loss(mb_distilbert_heads *m, const int32_t *labels, const int32_t *labels2, int B, int T,
                      double *loss, float *per_example, mb_error *err) {
    if (!m->have_fwd) return mb_fail(err, MB_ERR_STATE, "loss needs a forward pass first");
    if (B != m->fwd_B || T != m->fwd_T)
        return mb_fail(err, MB_ERR_SHAPE, "labels for a batch of %d x %d, but the forward had %d x %d", B, T,
                       m->fwd_B, m->fwd_T);
    mb_status rc;
    if (m->task == MB_DBH_QUESTION_ANSWERING) {
        if (!labels || !labels2) return mb_fail(err, MB_ERR_ARG, "question answering needs start and end positions");
        rc = mb_token_head_qa_loss(&m->head, labels, labels2, loss, err);
        if (rc == MB_OK && per_example)
            for (int b = 0; b < B; b++) per_example[b] = 0.5f * (m->head.per_row[b] + m->head.per_row[B + b]);
    } else {
        if (!labels) return mb_fail(err, MB_ERR_ARG, "token classification needs labels [B,T]");
        rc = mb_token_head_loss(&m->head, labels, loss, NULL, err);
        if (rc == MB_OK && per_example) memcpy(per_example, m->head.per_row, sizeof(float) * B * T);
    }
    return rc;
}

mb_status mb_dbh_backward(mb_distilbert_heads *m, mb_error *err) {
    if (!m->fwd_keep) return mb_fail(err, MB_ERR_STATE, "backward needs a forward that kept its activations (keep=1)");
    const int D = mb_distilbert_get_config(m->tp.enc)->dim;
    int frozen = mb_distilbert_encoder_frozen(m->tp.enc);
    size_t need = (size_t)m->fwd_B * m->fwd_T * D;
    if (!frozen && need > m->cap_hidden) {
        free(m->d_hidden);
        m->d_hidden = malloc(need * sizeof(float));
        m->cap_hidden = m->d_hidden ? need : 0;
        if (!m->d_hidden) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    }
    mb_status rc = mb_token_head_backward(&m->head, m->tp.params + m->info[0].offset, m->tp.grads + m->info[0].offset,
                                          m->tp.grads + m->info[1].offset, frozen ? NULL : m->d_hidden, err);
    if (rc != MB_OK || frozen) return rc;
    return mb_distilbert_backward_hidden(m->tp.enc, m->d_hidden, err);
}
