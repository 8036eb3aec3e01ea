/* test_bert.c: BERT (runtime/bert.h) against the PyTorch fixtures and HF's loading rules.
 *
 * Parity (../shared/fixtures/bert-tiny, bert-tiny-heads/..., tolerances of their READMEs):
 * every output and every gradient |got - ref| <= 1e-4 * max|ref| per tensor (analytically
 * zero gradients, the attention key biases: atol 1e-7); bert-tiny's 5-step AdamW trajectory
 * (clip 1.0, lr 1e-3 linear to 0, wd 0.01 but biases and LayerNorm weights) traj.* relative
 * 1e-4, after5.* atol 1e-4. The worst errors are printed per fixture.
 * Without the fixtures: finite differences on a tiny random model for every head (train-mode
 * dropout off), save/reload, LayerNorm.gamma/beta and prefix-less names, unused/missing lists.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/bert.h"
#include "../../runtime/optim.h"
#include "../../runtime/safetensors.h"
#include "harness.h"
#include "st_read.h"
#include "fixture_check.h"

static const mb_param_info *grad_at(void *model, int i, const float **grad) {
    const mb_param_info *pi = mb_bert_param_info(model, i);
    *grad = mb_bert_grads(model) + pi->offset;
    return pi;
}

/* analytically zero: the key biases (softmax shift), and in question answering
   qa_outputs.bias and the last LayerNorm bias (each softmax over positions
   shifts all of its logits alike) */
static int zero_grad_of(void *model, const char *name) {
    mb_bert *m = model;
    if (strstr(name, "attention.self.key.bias")) return 1;
    if (mb_bert_get_task(m) != MB_BERT_QUESTION_ANSWERING) return 0;
    char last[96];
    snprintf(last, sizeof last, "bert.encoder.layer.%d.output.LayerNorm.bias", mb_bert_get_config(m)->base.n_layers - 1);
    return strcmp(name, "qa_outputs.bias") == 0 || strcmp(name, last) == 0;
}

/* every grad.<name> of the fixture; returns the worst relative error */
static double check_grads(fx_case *c, mb_bert *m) {
    return check_grads_fx(c, m, mb_bert_num_tensors(m), grad_at, zero_grad_of);
}

static mb_bert *load_task(const char *dir, mb_bert_task task) {
    mb_bert_load_opts o = {task, 0, NULL, 42};
    mb_error err;
    mb_bert *m = mb_bert_load(dir, &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) CHECK(strcmp(mb_bert_warnings(m), "") == 0, "unexpected warnings: %s", mb_bert_warnings(m));
    return m;
}

/* ---- parity ----------------------------------------------------------------- */

TEST(bert_tiny_sequence_classification_parity) {
    char dir[1024];
    if (!fixture("fixtures/bert-tiny", dir, sizeof dir)) SKIP("needs ../shared/fixtures/bert-tiny");
    fx_case c;
    CHECK(open_case(&c, dir) == 0, "cannot read cases");
    mb_bert *m = load_task(dir, MB_BERT_SEQUENCE_CLASSIFICATION);
    if (!m) return;
    const int32_t *labels = st_get(&c.cases, "labels", "I32", NULL);
    mb_error err;
    mb_bert_forward_opts o = {.keep = 1};
    CHECK(mb_bert_forward(m, c.ids, c.mask, c.types, c.B, c.T, &o, &err) == MB_OK, "%s", err.msg);
    double worst = 0, loss;
    float per[16];
    printf("bert-tiny (BertForSequenceClassification):\n");
    check_out(&c, "last_hidden_state", mb_bert_last_hidden(m), (size_t)c.B * c.T * 64, &worst);
    check_out(&c, "pooled", mb_bert_pooled(m), (size_t)c.B * 64, &worst);
    check_out(&c, "logits", mb_bert_logits(m), (size_t)c.B * 6, &worst);
    mb_bert_zero_grad(m);
    CHECK(mb_bert_loss(m, labels, NULL, NULL, c.B, c.T, &loss, per, &err) == MB_OK, "%s", err.msg);
    float lossf = (float)loss;
    check_out(&c, "loss", &lossf, 1, &worst);
    check_out(&c, "per_example_loss", per, (size_t)c.B, &worst);
    CHECK(mb_bert_backward(m, &err) == MB_OK, "%s", err.msg);
    check_grads(&c, m);

    /* the 5-step trajectory: HF Trainer semantics with dropout off */
    int nt = mb_bert_num_tensors(m);
    mb_param_ref *refs = calloc((size_t)nt, sizeof *refs);
    for (int i = 0; i < nt; i++) {
        const mb_param_info *pi = mb_bert_param_info(m, i);
        refs[i] = (mb_param_ref){mb_bert_params(m) + pi->offset, mb_bert_grads(m) + pi->offset, (int64_t)pi->numel,
                                 !pi->no_decay, 0};
    }
    mb_optim_config oc = mb_adamw_defaults();
    oc.weight_decay = 0.01;
    mb_optim *opt = mb_optim_new(refs, nt, &oc, &err);
    CHECK(opt != NULL, "%s", err.msg);
    float traj_loss[5], traj_norm[5];
    for (int k = 0; k < 5 && opt; k++) {
        mb_bert_zero_grad(m);
        CHECK(mb_bert_forward(m, c.ids, c.mask, c.types, c.B, c.T, &o, &err) == MB_OK, "%s", err.msg);
        CHECK(mb_bert_loss(m, labels, NULL, NULL, c.B, c.T, &loss, NULL, &err) == MB_OK, "%s", err.msg);
        CHECK(mb_bert_backward(m, &err) == MB_OK, "%s", err.msg);
        double norm;
        CHECK(mb_clip_grad_norm(refs, nt, 1.0, &norm, &err) == MB_OK, "%s", err.msg);
        CHECK(mb_optim_step(opt, 1e-3 * (1.0 - k / 5.0), &err) == MB_OK, "%s", err.msg);
        traj_loss[k] = (float)loss;
        traj_norm[k] = (float)norm;
    }
    check_out(&c, "traj.loss", traj_loss, 5, &worst);
    check_out(&c, "traj.grad_norm", traj_norm, 5, &worst);
    double worst_after = 0;
    for (int i = 0; i < nt; i++) {
        const mb_param_info *pi = mb_bert_param_info(m, i);
        char key[160];
        snprintf(key, sizeof key, "after5.%s", pi->name);
        const float *ref = ref_f32(&c, key, NULL);
        if (!ref) continue;
        double abs_e;
        rel_err(mb_bert_params(m) + pi->offset, ref, pi->numel, &abs_e);
        CHECK(abs_e <= 1e-4, "%s: abs error %.3g", key, abs_e);
        worst_after = fmax(worst_after, abs_e);
    }
    printf("  after5.*             abs %.2e\n", worst_after);
    mb_optim_free(opt);
    free(refs);
    mb_bert_free(m);
    st_close(&c.cases);
}

TEST(bert_tiny_heads_parity) {
    static const struct { const char *dir; mb_bert_task task; } heads[] = {
        {"fixtures/bert-tiny-heads/token-classification", MB_BERT_TOKEN_CLASSIFICATION},
        {"fixtures/bert-tiny-heads/question-answering", MB_BERT_QUESTION_ANSWERING},
        {"fixtures/bert-tiny-heads/masked-lm", MB_BERT_MASKED_LM}};
    char dir[1024];
    if (!fixture(heads[0].dir, dir, sizeof dir)) SKIP("needs ../shared/fixtures/bert-tiny-heads");
    for (int h = 0; h < 3; h++) {
        if (!fixture(heads[h].dir, dir, sizeof dir)) continue;
        fx_case c;
        CHECK(open_case(&c, dir) == 0, "cannot read %s", dir);
        mb_bert *m = load_task(dir, heads[h].task);
        if (!m) continue;
        printf("%s (%s):\n", heads[h].dir + 9, mb_bert_class_name(heads[h].task));
        mb_error err;
        double worst = 0, loss = NAN;
        mb_bert_zero_grad(m);
        if (heads[h].task == MB_BERT_MASKED_LM) {
            const int32_t *labels = st_get(&c.cases, "labels", "I32", NULL);
            int n;
            CHECK(mb_bert_mlm_loss(m, c.ids, c.mask, c.types, labels, c.B, c.T, 0, &loss, &n, &err) == MB_OK, "%s",
                  err.msg);
            check_out(&c, "last_hidden_state", mb_bert_last_hidden(m), (size_t)c.B * c.T * 64, &worst);
            check_out(&c, "masked_logits", mb_bert_logits(m), (size_t)n * 30522, &worst);
        } else {
            mb_bert_forward_opts o = {.keep = 1};
            CHECK(mb_bert_forward(m, c.ids, c.mask, c.types, c.B, c.T, &o, &err) == MB_OK, "%s", err.msg);
            check_out(&c, "last_hidden_state", mb_bert_last_hidden(m), (size_t)c.B * c.T * 64, &worst);
            if (heads[h].task == MB_BERT_TOKEN_CLASSIFICATION) {
                check_out(&c, "logits", mb_bert_logits(m), (size_t)c.B * c.T * 9, &worst);
                const int32_t *labels = st_get(&c.cases, "labels", "I32", NULL);
                CHECK(mb_bert_loss(m, labels, NULL, NULL, c.B, c.T, &loss, NULL, &err) == MB_OK, "%s", err.msg);
            } else {
                check_out(&c, "start_logits", mb_bert_start_logits(m), (size_t)c.B * c.T, &worst);
                check_out(&c, "end_logits", mb_bert_end_logits(m), (size_t)c.B * c.T, &worst);
                const int32_t *sp = st_get(&c.cases, "start_positions", "I32", NULL);
                const int32_t *ep = st_get(&c.cases, "end_positions", "I32", NULL);
                CHECK(mb_bert_loss(m, sp, ep, NULL, c.B, c.T, &loss, NULL, &err) == MB_OK, "%s", err.msg);
            }
        }
        float lossf = (float)loss;
        check_out(&c, "loss", &lossf, 1, &worst);
        CHECK(mb_bert_backward(m, &err) == MB_OK, "%s", err.msg);
        check_grads(&c, m);
        mb_bert_free(m);
        st_close(&c.cases);
    }
}

/* ---- loading rules ------------------------------------------------------------ */

static int tensor_equal(mb_bert *a, mb_bert *b, const char *name) {
    int i = mb_bert_find_param(a, name), j = mb_bert_find_param(b, name);
    if (i < 0 || j < 0) return 0;
    return memcmp(mb_bert_params(a) + mb_bert_param_info(a, i)->offset,
                  mb_bert_params(b) + mb_bert_param_info(b, j)->offset, mb_bert_param_info(a, i)->numel * 4) == 0;
}

TEST(pretraining_checkpoint_loads_into_every_head) {
    char dir[1024];
    if (!fixture("fixtures/bert-tiny-heads/masked-lm", dir, sizeof dir)) SKIP("needs ../shared/fixtures/bert-tiny-heads");
    mb_error err;
    /* a masked-LM checkpoint into sequence classification: cls.* unused, pooler + classifier new */
    mb_bert_load_opts o = {MB_BERT_SEQUENCE_CLASSIFICATION, 3, NULL, 7};
    mb_bert *m = mb_bert_load(dir, &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    mb_bert_load_opts om = {MB_BERT_MASKED_LM, 0, NULL, 7};
    mb_bert *ref = mb_bert_load(dir, &om, &err);
    CHECK(ref != NULL, "%s", err.msg);
    if (m && ref) {
        const char *w = mb_bert_warnings(m);
        CHECK(strstr(w, "were not used when initializing BertForSequenceClassification") != NULL, "%s", w);
        CHECK(strstr(w, "'cls.predictions.transform.dense.weight'") != NULL, "%s", w);
        CHECK(strstr(w, "newly initialized: ['bert.pooler.dense.weight', 'bert.pooler.dense.bias', "
                        "'classifier.weight', 'classifier.bias']") != NULL, "%s", w);
        CHECK(tensor_equal(m, ref, "bert.encoder.layer.1.output.dense.weight"), "encoder not loaded");
        CHECK(mb_bert_get_config(m)->base.num_labels == 3, "num_labels");
        int pb = mb_bert_find_param(m, "bert.pooler.dense.bias");
        CHECK(mb_bert_params(m)[mb_bert_param_info(m, pb)->offset] == 0.0f, "pooler bias initialised to 0");
    }
    mb_bert_free(m);
    /* and into question answering: qa_outputs new */
    o.task = MB_BERT_QUESTION_ANSWERING;
    m = mb_bert_load(dir, &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) CHECK(strstr(mb_bert_warnings(m), "newly initialized: ['qa_outputs.weight', 'qa_outputs.bias']"), "%s",
                 mb_bert_warnings(m));
    mb_bert_free(m);
    mb_bert_free(ref);
}

static mb_bert *tiny(mb_bert_task task, uint64_t seed) {
    mb_bert_config cfg;
    mb_bert_config_defaults(&cfg);
    cfg.base.vocab_size = 40;
    cfg.base.dim = 16;
    cfg.base.n_layers = 2;
    cfg.base.n_heads = 4;
    cfg.base.hidden_dim = 24;
    cfg.base.max_position_embeddings = 12;
    cfg.base.initializer_range = 0.3f;
    cfg.type_vocab_size = 2;
    mb_error err;
    mb_config_set_labels(&cfg.base, 3, NULL, &err);
    mb_bert *m = mb_bert_new(&cfg, task, seed, &err);
    mb_bert_config_free(&cfg);
    CHECK(m != NULL, "%s", err.msg);
    if (m) /* non-trivial LayerNorms and biases */
        for (int i = 0; i < mb_bert_num_tensors(m); i++) {
            const mb_param_info *pi = mb_bert_param_info(m, i);
            if (pi->ndim == 1)
                for (size_t k = 0; k < pi->numel; k++) mb_bert_params(m)[pi->offset + k] += 0.1f * (float)((int)((k * 7 + (size_t)i) % 5) - 2);
        }
    return m;
}

TEST(gamma_beta_and_prefixless_names) {
    mb_bert *m = tiny(MB_BERT_TOKEN_CLASSIFICATION, 3);
    if (!m) return;
    char dir[] = "/tmp/test_bert_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    mb_error err;
    CHECK(mb_bert_save(m, dir, &err) == MB_OK, "%s", err.msg);
    /* rewrite the weights as an old base checkpoint: no "bert." prefix, LayerNorm.gamma/beta, position_ids */
    int nt = mb_bert_num_tensors(m);
    mb_st_entry *e = calloc((size_t)nt + 1, sizeof *e);
    char (*names)[160] = calloc((size_t)nt, 160);
    int n = 0;
    for (int i = 0; i < nt; i++) {
        const mb_param_info *pi = mb_bert_param_info(m, i);
        if (!pi->encoder) continue;
        snprintf(names[n], 160, "%s", pi->name + 5);
        char *ln = strstr(names[n], "LayerNorm.");
        if (ln) strcpy(ln + 10, strcmp(ln + 10, "weight") == 0 ? "gamma" : "beta");
        e[n] = (mb_st_entry){names[n], MB_ST_F32, pi->ndim, pi->shape, mb_bert_params(m) + pi->offset};
        n++;
    }
    static float posids[12];
    int64_t pshape[1] = {12};
    e[n++] = (mb_st_entry){"embeddings.position_ids", MB_ST_F32, 1, pshape, posids};
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(mb_safetensors_write(path, e, n, NULL, 0, &err) == MB_OK, "%s", err.msg);
    mb_bert_load_opts o = {MB_BERT_TOKEN_CLASSIFICATION, 0, NULL, 1};
    mb_bert *r = mb_bert_load(dir, &o, &err);
    CHECK(r != NULL, "%s", err.msg);
    if (r) {
        const char *w = mb_bert_warnings(r);
        CHECK(strstr(w, "not used") == NULL, "position_ids must be ignored silently: %s", w);
        CHECK(strstr(w, "newly initialized: ['classifier.weight', 'classifier.bias']") != NULL, "%s", w);
        CHECK(tensor_equal(m, r, "bert.embeddings.LayerNorm.weight"), "gamma not read");
        CHECK(tensor_equal(m, r, "bert.encoder.layer.1.output.LayerNorm.bias"), "beta not read");
        CHECK(tensor_equal(m, r, "bert.encoder.layer.0.attention.self.query.weight"), "prefix-less name not read");
        mb_bert_free(r);
    }
    /* a missing encoder tensor is an error naming it */
    n = 0;
    e[n++] = (mb_st_entry){"embeddings.word_embeddings.weight", MB_ST_F32, 2, mb_bert_param_info(m, 0)->shape,
                           mb_bert_params(m)};
    CHECK(mb_safetensors_write(path, e, n, NULL, 0, &err) == MB_OK, "%s", err.msg);
    CHECK(mb_bert_load(dir, &o, &err) == NULL, "loaded a checkpoint without its encoder");
    CHECK(strstr(err.msg, "bert.embeddings.position_embeddings.weight") != NULL, "%s", err.msg);
    free(names);
    free(e);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    CHECK(system(path) == 0, "rm");
    mb_bert_free(m);
}

/* ---- finite differences on every head ------------------------------------------ */

enum { B = 2, T = 6 };
static const int32_t IDS[B * T] = {1, 5, 9, 2, 7, 2, 1, 33, 2, 0, 0, 0};
static const int32_t MASK[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
static const int32_t TYPES[B * T] = {0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0};
static const int32_t TOKEN_LABELS[B * T] = {-100, 2, 0, -100, 1, -100, -100, 1, -100, -100, -100, -100};
static const int32_t MLM_LABELS[B * T] = {-100, 6, -100, -100, 30, -100, -100, 33, -100, -100, -100, -100};
static const int32_t SEQ_LABELS[B] = {2, 0}, START[B] = {1, 8}, END[B] = {2, 0};

static double loss_of(mb_bert *m) {
    mb_error err;
    double loss = NAN;
    mb_bert_task t = mb_bert_get_task(m);
    if (t == MB_BERT_MASKED_LM) {
        if (mb_bert_mlm_loss(m, IDS, MASK, TYPES, MLM_LABELS, B, T, 0, &loss, NULL, &err) != MB_OK) return NAN;
        return loss;
    }
    mb_bert_forward_opts o = {.keep = 1};
    if (mb_bert_forward(m, IDS, MASK, TYPES, B, T, &o, &err) != MB_OK) return NAN;
    const int32_t *l1 = t == MB_BERT_SEQUENCE_CLASSIFICATION ? SEQ_LABELS
                        : t == MB_BERT_TOKEN_CLASSIFICATION  ? TOKEN_LABELS
                                                             : START;
    if (mb_bert_loss(m, l1, t == MB_BERT_QUESTION_ANSWERING ? END : NULL, NULL, B, T, &loss, NULL, &err) != MB_OK)
        return NAN;
    return loss;
}

TEST(finite_difference_gradients_every_head) {
    for (int task = 0; task < 4; task++) {
        mb_bert *m = tiny((mb_bert_task)task, 11 + task);
        if (!m) return;
        mb_error err;
        mb_bert_zero_grad(m);
        double l0 = loss_of(m);
        CHECK(isfinite(l0), "%s: loss %g", mb_bert_class_name(task), l0);
        CHECK(mb_bert_backward(m, &err) == MB_OK, "%s", err.msg);
        int nt = mb_bert_num_tensors(m), bad = 0, checked = 0;
        float *g = malloc(mb_bert_num_params(m) * sizeof(float));
        memcpy(g, mb_bert_grads(m), mb_bert_num_params(m) * sizeof(float));
        mb_rng rng;
        mb_rng_seed(&rng, 5);
        double worst = 0;
        for (int i = 0; i < nt; i++) {
            const mb_param_info *pi = mb_bert_param_info(m, i);
            if (strstr(pi->name, "key.bias")) continue; /* analytically 0 */
            for (int s = 0; s < 4; s++) {
                size_t k = mb_rng_below(&rng, pi->numel);
                /* the [PAD] row: nn.Embedding(padding_idx) gives it no lookup gradient */
                if (strstr(pi->name, "word_embeddings") && k < (size_t)pi->shape[1]) k += (size_t)pi->shape[1];
                k += pi->offset;
                float *p = mb_bert_params(m) + k, old = *p;
                double h = 1e-2 * fmax(1.0, fabs(old));
                *p = (float)(old + h);
                double lp = loss_of(m);
                *p = (float)(old - h);
                double lm = loss_of(m);
                *p = old;
                double fd = (lp - lm) / (2 * h), diff = fabs(fd - g[k]);
                worst = fmax(worst, diff / (fabs(fd) + 1e-3));
                if (diff > 2e-3 + 2e-2 * fabs(fd)) {
                    fprintf(stderr, "FD %s %s[%zu]: fd %.6g analytic %.6g\n", mb_bert_class_name(task), pi->name,
                            k - pi->offset, fd, g[k]);
                    bad++;
                }
                checked++;
            }
        }
        /* the token-type rows: type 1 appears, so its gradient is not zero */
        int ti = mb_bert_find_param(m, "bert.embeddings.token_type_embeddings.weight");
        double t1 = 0;
        for (int k = 0; k < 16; k++) t1 += fabs(g[mb_bert_param_info(m, ti)->offset + 16 + k]);
        CHECK(t1 > 0, "no gradient on token type 1");
        printf("FD %-30s %d samples, %d outside tolerance, worst rel %.3g\n", mb_bert_class_name(task), checked, bad,
               worst);
        CHECK(bad == 0, "%s: %d of %d samples disagree", mb_bert_class_name(task), bad, checked);
        free(g);
        mb_bert_free(m);
    }
}

TEST(save_and_reload_every_head) {
    for (int task = 0; task < 4; task++) {
        mb_bert *m = tiny((mb_bert_task)task, 21 + task);
        if (!m) return;
        char dir[] = "/tmp/test_bert_XXXXXX";
        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        mb_error err;
        CHECK(mb_bert_save(m, dir, &err) == MB_OK, "%s", err.msg);
        mb_bert_load_opts o = {(mb_bert_task)task, 0, NULL, 1};
        mb_bert *r = mb_bert_load(dir, &o, &err);
        CHECK(r != NULL, "%s", err.msg);
        if (r) {
            CHECK(strcmp(mb_bert_warnings(r), "") == 0, "%s", mb_bert_warnings(r));
            CHECK(mb_bert_num_params(r) == mb_bert_num_params(m), "sizes");
            CHECK(memcmp(mb_bert_params(r), mb_bert_params(m), mb_bert_num_params(m) * 4) == 0, "values");
            CHECK(loss_of(r) == loss_of(m), "loss differs after reload");
            char *js = mb_bert_config_to_json(mb_bert_get_config(r), mb_bert_class_name(task), &err);
            CHECK(js && strstr(js, "\"hidden_size\": 16") && strstr(js, "\"model_type\": \"bert\"") &&
                      strstr(js, mb_bert_class_name(task)),
                  "%s", js ? js : err.msg);
            free(js);
            mb_bert_free(r);
        }
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0, "rm");
        mb_bert_free(m);
    }
}

TEST(errors) {
    mb_bert *m = tiny(MB_BERT_TOKEN_CLASSIFICATION, 1);
    if (!m) return;
    mb_error err;
    int32_t types[B * T];
    memcpy(types, TYPES, sizeof types);
    types[3] = 2;
    CHECK(mb_bert_forward(m, IDS, MASK, types, B, T, NULL, &err) == MB_ERR_RANGE, "type 2 accepted");
    CHECK(strstr(err.msg, "token_type_ids[1][4]") != NULL, "%s", err.msg);
    CHECK(mb_bert_backward(m, &err) == MB_ERR_STATE, "backward before loss");
    CHECK(mb_bert_forward(m, IDS, MASK, TYPES, B, T, NULL, &err) == MB_OK, "%s", err.msg);
    int32_t bad[B * T];
    memcpy(bad, TOKEN_LABELS, sizeof bad);
    bad[1] = 3;
    double loss;
    CHECK(mb_bert_loss(m, bad, NULL, NULL, B, T, &loss, NULL, &err) == MB_ERR_RANGE, "label 3 accepted");
    mb_bert_config cfg;
    const char *bad_cfg = "{\"model_type\": \"bert\", \"vocab_size\": 10, \"hidden_size\": 10, \"num_hidden_layers\": 1,"
                          " \"num_attention_heads\": 3, \"intermediate_size\": 8}";
    CHECK(mb_bert_config_parse(&cfg, bad_cfg, strlen(bad_cfg), "config.json", &err) == MB_ERR_FORMAT, "accepted");
    CHECK(strstr(err.msg, "num_attention_heads (3) does not divide hidden_size (10)") != NULL, "%s", err.msg);
    const char *dcfg = "{\"model_type\": \"distilbert\"}";
    CHECK(mb_bert_config_parse(&cfg, dcfg, strlen(dcfg), "config.json", &err) == MB_ERR_FORMAT, "accepted");
    char missing[600];
    CHECK(mb_bert_load(harness_missing("bert", missing, sizeof missing), NULL, &err) == NULL, "loaded nothing");
    mb_bert_free(m);
}

int main(void) {
    RUN(bert_tiny_sequence_classification_parity);
    RUN(bert_tiny_heads_parity);
    RUN(pretraining_checkpoint_loads_into_every_head);
    RUN(gamma_beta_and_prefixless_names);
    RUN(finite_difference_gradients_every_head);
    RUN(save_and_reload_every_head);
    RUN(errors);
    return harness_end();
}
