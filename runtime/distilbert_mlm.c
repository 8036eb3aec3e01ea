/* distilbert_mlm.c: DistilBertForMaskedLM = the encoder of distilbert.c plus
 * HF's masked-LM head with the projector tied to the word embeddings (see
 * distilbert_mlm.h).
 *
 * Reading order: the head's parameter table; construction, load, save;
 * forward at selected rows; loss; backward (head, then the encoder through
 * mb_distilbert_backward_hidden).
 */
#include "distilbert_mlm.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "layers.h"
#include "model_folder.h"
#include "parallel.h"
#include "safetensors.h"

#define LN_EPS 1e-12f

enum { TW, TB, LNW, LNB, PB }; /* the head's tensors, HF order */

typedef struct head_views {
    float *tw, *tb, *lnw, *lnb, *pb; /* vocab_transform, vocab_layer_norm, vocab_projector.bias */
} head_views;

struct mb_distilbert_mlm {
    mb_task_params tp; /* the encoder's tensors (its classification head left out), then the head's block */
    mb_param_info info[MB_MLM_HEAD_TENSORS];
    head_views p, g;
    char *warnings;
    /* activations of the last forward, for n rows (capacity cap_rows) */
    size_t cap_rows, cap_hidden;
    float *f;             /* one block for the per-row buffers below */
    int32_t *rows;        /* [n] flat b*T+t */
    int32_t *labels;      /* [n] */
    float *h;             /* [n,D] gathered hidden states */
    float *t, *a, *x;     /* [n,D] transform output, activation output, LN output */
    float *mean, *rstd;   /* [n] */
    float *dx, *dt;       /* [n,D] */
    float *logits, *dlogits; /* [n,V] */
    float *d_hidden;      /* [B,T,D] */
    int n, B, T, keep, have_loss;
};

/* ---- parameters ------------------------------------------------------------ */

static void build_head(mb_distilbert_mlm *m, const mb_distilbert *enc) {
    const mb_distilbert_config *c = mb_distilbert_get_config(enc);
    int D = c->dim, V = c->vocab_size;
    struct { const char *name; int rows, cols; mb_param_kind kind; } spec[MB_MLM_HEAD_TENSORS] = {
        {"vocab_transform.weight", D, D, MB_PARAM_WEIGHT}, {"vocab_transform.bias", D, 0, MB_PARAM_BIAS},
        {"vocab_layer_norm.weight", D, 0, MB_PARAM_NORM}, {"vocab_layer_norm.bias", D, 0, MB_PARAM_BIAS},
        {"vocab_projector.bias", V, 0, MB_PARAM_BIAS}};
    size_t off = 0;
    for (int i = 0; i < MB_MLM_HEAD_TENSORS;)
        mb_param_add(m->info, &i, &off, spec[i].name, spec[i].rows, spec[i].cols, spec[i].kind, 0);
}

static void head_views_of(const mb_distilbert_mlm *m, float *base, head_views *v) {
    v->tw = base + m->info[TW].offset;
    v->tb = base + m->info[TB].offset;
    v->lnw = base + m->info[LNW].offset;
    v->lnb = base + m->info[LNB].offset;
    v->pb = base + m->info[PB].offset;
}

/* HF _init_weights: Linear N(0, initializer_range), bias 0, LayerNorm 1/0. */
static void init_head_tensor(void *model, int i) {
    mb_distilbert_mlm *m = model;
    const mb_distilbert_config *c = mb_distilbert_get_config(m->tp.enc);
    mb_param_init_hf(&m->info[i], m->tp.params + m->info[i].offset, c->initializer_range, c->pad_token_id, 0,
                     mb_distilbert_rng(m->tp.enc));
}

/* Wrap enc (taking it over) and allocate the head's block. */
static mb_distilbert_mlm *wrap(mb_distilbert *enc, mb_error *err) {
    if (!enc) return NULL;
    mb_distilbert_mlm *m = calloc(1, sizeof *m);
    if (!m) {
        mb_distilbert_free(enc);
        mb_fail(err, MB_ERR_NOMEM, "out of memory creating the masked-LM model");
        return NULL;
    }
    build_head(m, enc);
    if (mb_task_params_alloc(&m->tp, enc, m->info, MB_MLM_HEAD_TENSORS, err) != MB_OK) {
        mb_mlm_free(m);
        return NULL;
    }
    head_views_of(m, m->tp.params, &m->p);
    head_views_of(m, m->tp.grads, &m->g);
    return m;
}

mb_distilbert_mlm *mb_mlm_new(const mb_distilbert_config *cfg, uint64_t seed, mb_error *err) {
    mb_distilbert_mlm *m = wrap(mb_distilbert_new(cfg, seed, err), err);
    if (!m) return NULL;
    for (int i = 0; i < MB_MLM_HEAD_TENSORS; i++) init_head_tensor(m, i);
    return m;
}

void mb_mlm_free(mb_distilbert_mlm *m) {
    if (!m) return;
    mb_task_params_free(&m->tp);
    free(m->warnings);
    free(m->f);
    free(m->d_hidden);
    free(m);
}

/* The head's tensors in a checkpoint (the encoder's loader reads the rest). */
static const mb_ckpt_rules head_rules = {.family = "DistilBERT", .init = init_head_tensor, .head_hint = ""};

mb_distilbert_mlm *mb_mlm_load(const char *dir, uint64_t seed, mb_error *err) {
    mb_distilbert_load_opts o = {0, NULL, seed};
    /* The encoder's loader handles prefixes, dtypes and shapes; its warnings
       are about the classification head, which this model does not use. */
    mb_distilbert_mlm *m = wrap(mb_distilbert_load(dir, &o, err), err);
    if (!m) return NULL;
    char path[4096];
    mb_safetensors *st = mb_model_folder_open(dir, path, sizeof path, err);
    mb_name_list missing = {0};
    mb_status rc = st ? mb_params_read(st, path, &head_rules, m, m->info, MB_MLM_HEAD_TENSORS, m->tp.params, NULL,
                                       &missing, err)
                      : MB_ERR_IO;
    mb_safetensors_close(st);
    if (rc == MB_OK && missing.n) mb_warn_newly_initialized(&m->warnings, "DistilBertForMaskedLM", dir, missing.s);
    mb_name_list_free(&missing);
    if (rc == MB_OK) return m;
    mb_mlm_free(m);
    return NULL;
}

static const mb_param_info *param_at(const void *model, int i, const float **data) {
    mb_distilbert_mlm *m = (mb_distilbert_mlm *)model; /* mb_mlm_param does not write */
    *data = mb_mlm_param(m, i);
    return mb_mlm_param_info(m, i);
}

mb_status mb_mlm_save(const mb_distilbert_mlm *m, const char *dir, mb_error *err) {
    return mb_model_folder_save(dir, mb_distilbert_get_config(m->tp.enc), "DistilBertForMaskedLM", m,
                                mb_mlm_num_tensors(m), param_at, err);
}

/* ---- accessors ------------------------------------------------------------- */

mb_distilbert *mb_mlm_encoder(mb_distilbert_mlm *m) { return m->tp.enc; }
const char *mb_mlm_warnings(const mb_distilbert_mlm *m) { return m->warnings ? m->warnings : ""; }
int mb_mlm_num_tensors(const mb_distilbert_mlm *m) { return mb_task_num_tensors(&m->tp); }
float *mb_mlm_head_params(mb_distilbert_mlm *m) { return m->tp.params; }
float *mb_mlm_head_grads(mb_distilbert_mlm *m) { return m->tp.grads; }
size_t mb_mlm_head_numel(const mb_distilbert_mlm *m) { return m->tp.numel; }
const mb_param_info *mb_mlm_param_info(const mb_distilbert_mlm *m, int i) { return mb_task_param_info(&m->tp, i); }
float *mb_mlm_param(mb_distilbert_mlm *m, int i) { return mb_task_param(&m->tp, i); }
float *mb_mlm_grad(mb_distilbert_mlm *m, int i) { return mb_task_grad(&m->tp, i); }
int mb_mlm_find_param(const mb_distilbert_mlm *m, const char *name) { return mb_task_find_param(&m->tp, name); }
size_t mb_mlm_num_params(const mb_distilbert_mlm *m) { return mb_task_num_params(&m->tp); }
void mb_mlm_zero_grad(mb_distilbert_mlm *m) { mb_task_zero_grad(&m->tp); }
const float *mb_mlm_logits(const mb_distilbert_mlm *m) { return m->n ? m->logits : NULL; }
int mb_mlm_num_rows(const mb_distilbert_mlm *m) { return m->n; }
const int32_t *mb_mlm_rows(const mb_distilbert_mlm *m) { return m->rows; }

/* ---- forward ------------------------------------------------------------------ */

static mb_status prepare_rows(mb_distilbert_mlm *m, int n, int B, int T, mb_error *err) {
    const mb_distilbert_config *c = mb_distilbert_get_config(m->tp.enc);
    size_t D = (size_t)c->dim, V = (size_t)c->vocab_size;
    if ((size_t)n > m->cap_rows) {
        /* per row: rows, labels (as floats' room), 6 x D, mean, rstd, 2 x V */
        size_t per = 2 + 6 * D + 2 + 2 * V;
        free(m->f);
        m->f = malloc((size_t)n * per * sizeof(float));
        m->cap_rows = m->f ? (size_t)n : 0;
        if (!m->f) return mb_fail(err, MB_ERR_NOMEM, "out of memory for masked-LM logits at %d rows (%.0f MB)", n,
                                  (double)n * per * 4 / 1e6);
    }
    size_t N = m->cap_rows;
    float *p = m->f;
    m->logits = p; p += N * V; /* the big ones first: aligned as malloc's block */
    m->dlogits = p; p += N * V;
    m->h = p; p += N * D;
    m->t = p; p += N * D;
    m->a = p; p += N * D;
    m->x = p; p += N * D;
    m->dx = p; p += N * D;
    m->dt = p; p += N * D;
    m->mean = p; p += N;
    m->rstd = p; p += N;
    m->rows = (int32_t *)p; p += N;
    m->labels = (int32_t *)p;
    size_t need = (size_t)B * T * D;
    if (need > m->cap_hidden) {
        free(m->d_hidden);
        m->d_hidden = malloc(need * sizeof(float));
        m->cap_hidden = m->d_hidden ? need : 0;
        if (!m->d_hidden) return mb_fail(err, MB_ERR_NOMEM, "out of memory for d hidden at %d x %d", B, T);
    }
    return MB_OK;
}

mb_status mb_mlm_forward(mb_distilbert_mlm *m, const int32_t *ids, const int32_t *mask, int B, int T,
                         const int32_t *positions, int n_pos, int train, int keep, mb_error *err) {
    m->have_loss = 0;
    m->n = 0;
    const mb_distilbert_config *c = mb_distilbert_get_config(m->tp.enc);
    const int D = c->dim, V = c->vocab_size;
    if (B < 1 || T < 1) return mb_fail(err, MB_ERR_SHAPE, "batch is empty (%d x %d)", B, T);
    int n = positions ? n_pos : B * T;
    if (n < 1) return mb_fail(err, MB_ERR_ARG, "no positions to predict");
    if (positions)
        for (int i = 0; i < n; i++)
            if (positions[i] < 0 || positions[i] >= B * T)
                return mb_fail(err, MB_ERR_RANGE, "position %d is %d, outside the batch's %d x %d tokens", i + 1,
                               positions[i], B, T);
    mb_forward_opts o = {.train = train, .keep = keep, .encoder_only = 1};
    if (mb_distilbert_forward(m->tp.enc, ids, mask, B, T, &o, err) != MB_OK) return err ? err->code : MB_ERR_ARG;
    if (prepare_rows(m, n, B, T, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    const float *hidden = mb_distilbert_last_hidden(m->tp.enc);
    for (int i = 0; i < n; i++) {
        m->rows[i] = positions ? positions[i] : i;
        memcpy(m->h + (size_t)i * D, hidden + (size_t)m->rows[i] * D, D * sizeof(float));
    }
    /* x = LN(act(vocab_transform(h))); logits = x W_word^T + b (HF uses config.activation here too) */
    linear_forward(m->t, m->h, m->p.tw, m->p.tb, n, D, D);
    if (c->activation == MB_ACT_RELU) relu_forward(m->a, m->t, (long)n * D);
    else gelu_forward(m->a, m->t, (long)n * D);
    layernorm_forward(m->x, m->mean, m->rstd, m->a, m->p.lnw, m->p.lnb, n, D, LN_EPS);
    const float *word = mb_mlm_param(m, 0);
    linear_forward(m->logits, m->x, word, m->p.pb, n, D, V);
    m->n = n;
    m->B = B;
    m->T = T;
    m->keep = keep;
    return MB_OK;
}

/* ---- loss ---------------------------------------------------------------------- */

mb_status mb_mlm_loss(mb_distilbert_mlm *m, const int32_t *ids, const int32_t *mask, const int32_t *labels, int B,
                      int T, int train, double *loss, int *n_masked, mb_error *err) {
    const int V = mb_distilbert_get_config(m->tp.enc)->vocab_size;
    if (B < 1 || T < 1) return mb_fail(err, MB_ERR_SHAPE, "batch is empty (%d x %d)", B, T);
    int n = 0;
    for (long i = 0; i < (long)B * T; i++) {
        if (labels[i] == -100) continue;
        if (labels[i] < 0 || labels[i] >= V)
            return mb_fail(err, MB_ERR_RANGE, "labels[%ld][%ld] = %d is outside the vocabulary (0..%d) and not -100",
                           i / T + 1, i % T + 1, labels[i], V - 1);
        n++;
    }
    if (n == 0) return mb_fail(err, MB_ERR_ARG, "every label is -100 (no masked token): the loss is undefined");
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    if (!pos) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    for (long i = 0, k = 0; i < (long)B * T; i++)
        if (labels[i] != -100) pos[k++] = (int32_t)i;
    mb_status rc = mb_mlm_forward(m, ids, mask, B, T, pos, n, train, 1, err);
    free(pos);
    if (rc != MB_OK) return rc;
    for (int i = 0; i < n; i++) m->labels[i] = labels[m->rows[i]];
    /* softmax cross-entropy per row, d logits = (p - onehot) / n */
    double total = 0.0;
    const float scale = 1.0f / (float)n;
#pragma omp parallel for num_threads(mb_threads()) reduction(+ : total) schedule(static)
    for (int r = 0; r < n; r++) {
        const float *z = m->logits + (size_t)r * V;
        float *d = m->dlogits + (size_t)r * V;
        float mx = z[0];
        for (int j = 1; j < V; j++) if (z[j] > mx) mx = z[j];
        double s = 0.0; /* float exponentials (one per logit), summed in double */
        for (int j = 0; j < V; j++) {
            d[j] = expf(z[j] - mx);
            s += d[j];
        }
        const float k = (float)(scale / s);
        for (int j = 0; j < V; j++) d[j] *= k;
        d[m->labels[r]] -= scale;
        total += mx + log(s) - z[m->labels[r]];
    }
    double mean = total / n;
    *loss = mean;
    if (n_masked) *n_masked = n;
    if (!isfinite(mean))
        return mb_fail(err, MB_ERR_NUMERIC, "masked-LM loss is %s (diverged? lower the learning rate)",
                       isnan(mean) ? "NaN" : "Inf");
    m->have_loss = 1;
    return MB_OK;
}

/* ---- backward --------------------------------------------------------------------- */

mb_status mb_mlm_backward(mb_distilbert_mlm *m, mb_error *err) {
    if (!m->have_loss || !m->keep) return mb_fail(err, MB_ERR_STATE, "backward needs mb_mlm_loss first");
    m->have_loss = 0;
    const mb_distilbert_config *c = mb_distilbert_get_config(m->tp.enc);
    const int D = c->dim, V = c->vocab_size, n = m->n;
    /* logits = x W^T + b: the tied projector part of d W goes into the word embeddings' gradient */
    linear_backward(m->dx, mb_mlm_grad(m, 0), m->g.pb, m->dlogits, m->x, mb_mlm_param(m, 0), n, D, V, 0);
    layernorm_backward(m->dt, m->g.lnw, m->g.lnb, m->dx, m->a, m->p.lnw, m->mean, m->rstd, n, D);
    if (c->activation == MB_ACT_RELU) relu_backward(m->dt, m->a, m->dt, (long)n * D);
    else gelu_backward(m->dt, m->t, m->dt, (long)n * D);
    linear_backward(m->dx, m->g.tw, m->g.tb, m->dt, m->h, m->p.tw, n, D, D, 0);
    size_t BTD = (size_t)m->B * m->T * D;
    memset(m->d_hidden, 0, BTD * sizeof(float));
    for (int i = 0; i < n; i++) /* rows are distinct positions */
        memcpy(m->d_hidden + (size_t)m->rows[i] * D, m->dx + (size_t)i * D, D * sizeof(float));
    return mb_distilbert_backward_hidden(m->tp.enc, m->d_hidden, err);
}
