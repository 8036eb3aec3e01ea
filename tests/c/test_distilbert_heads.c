/* test_distilbert_heads.c: DistilBertForTokenClassification and DistilBertForQuestionAnswering
 * (runtime/distilbert_heads.h) against ../shared/fixtures/distilbert-tiny-heads/... (tolerances of
 * the READMEs: outputs and gradients |got - ref| <= 1e-4 * max|ref| per tensor, analytically
 * zero gradients atol 1e-7); without the fixtures, finite differences on a tiny random model,
 * save/reload, and a checkpoint of another task getting a new head with HF's warning.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/distilbert_heads.h"
#include "harness.h"
#include "st_read.h"
#include "fixture_check.h"

static const mb_param_info *grad_at(void *model, int i, const float **grad) {
    *grad = mb_dbh_grad(model, i);
    return mb_dbh_param_info(model, i);
}

/* analytically zero: key biases; for QA the output bias and the last LayerNorm bias */
static int zero_grad_of(void *model, const char *name) {
    mb_distilbert_heads *m = model;
    char last_ln[96];
    snprintf(last_ln, sizeof last_ln, "distilbert.transformer.layer.%d.output_layer_norm.bias",
             mb_distilbert_get_config(mb_dbh_encoder(m))->n_layers - 1);
    return strstr(name, "k_lin.bias") != NULL ||
           (mb_dbh_get_task(m) == MB_DBH_QUESTION_ANSWERING &&
            (strcmp(name, "qa_outputs.bias") == 0 || strcmp(name, last_ln) == 0));
}

static double check_grads(fx_case *c, mb_distilbert_heads *m) {
    return check_grads_fx(c, m, mb_dbh_num_tensors(m), grad_at, zero_grad_of);
}

TEST(fixture_parity) {
    static const struct { const char *dir; mb_dbh_task task; } heads[] = {
        {"fixtures/distilbert-tiny-heads/token-classification", MB_DBH_TOKEN_CLASSIFICATION},
        {"fixtures/distilbert-tiny-heads/question-answering", MB_DBH_QUESTION_ANSWERING}};
    char dir[1024];
    if (!fixture(heads[0].dir, dir, sizeof dir)) SKIP("needs ../shared/fixtures/distilbert-tiny-heads");
    for (int h = 0; h < 2; h++) {
        if (!fixture(heads[h].dir, dir, sizeof dir)) continue;
        fx_case c;
        CHECK(open_case(&c, dir) == 0, "cannot read %s", dir);
        mb_error err;
        mb_distilbert_heads *m = mb_dbh_load(dir, heads[h].task, NULL, &err);
        CHECK(m != NULL, "%s", err.msg);
        if (!m) continue;
        CHECK(strcmp(mb_dbh_warnings(m), "") == 0, "%s", mb_dbh_warnings(m));
        printf("%s (%s):\n", heads[h].dir + 9, mb_dbh_class_name(heads[h].task));
        double worst = 0, loss = NAN;
        mb_dbh_zero_grad(m);
        CHECK(mb_dbh_forward(m, c.ids, c.mask, c.B, c.T, 0, 1, &err) == MB_OK, "%s", err.msg);
        check_out(&c, "last_hidden_state", mb_dbh_last_hidden(m), (size_t)c.B * c.T * 64, &worst);
        if (heads[h].task == MB_DBH_TOKEN_CLASSIFICATION) {
            check_out(&c, "logits", mb_dbh_logits(m), (size_t)c.B * c.T * 9, &worst);
            const int32_t *labels = st_get(&c.cases, "labels", "I32", NULL);
            CHECK(mb_dbh_loss(m, labels, NULL, c.B, c.T, &loss, NULL, &err) == MB_OK, "%s", err.msg);
        } else {
            check_out(&c, "start_logits", mb_dbh_start_logits(m), (size_t)c.B * c.T, &worst);
            check_out(&c, "end_logits", mb_dbh_end_logits(m), (size_t)c.B * c.T, &worst);
            const int32_t *sp = st_get(&c.cases, "start_positions", "I32", NULL);
            const int32_t *ep = st_get(&c.cases, "end_positions", "I32", NULL);
            CHECK(mb_dbh_loss(m, sp, ep, c.B, c.T, &loss, NULL, &err) == MB_OK, "%s", err.msg);
        }
        float lossf = (float)loss;
        check_out(&c, "loss", &lossf, 1, &worst);
        CHECK(mb_dbh_backward(m, &err) == MB_OK, "%s", err.msg);
        check_grads(&c, m);
        mb_dbh_free(m);
        st_close(&c.cases);
    }
}

TEST(another_tasks_checkpoint_gets_a_new_head) {
    char dir[1024];
    if (!fixture("fixtures/distilbert-tiny", dir, sizeof dir)) SKIP("needs ../shared/fixtures/distilbert-tiny");
    mb_error err;
    mb_distilbert_load_opts o = {5, NULL, 3};
    mb_distilbert_heads *m = mb_dbh_load(dir, MB_DBH_TOKEN_CLASSIFICATION, &o, &err);
    /* distilbert-tiny's classifier is [6,64]: asking for 5 labels is a shape error naming it */
    CHECK(m == NULL && strstr(err.msg, "classifier") != NULL, "%s", m ? "loaded" : err.msg);
    mb_dbh_free(m);
    m = mb_dbh_load(dir, MB_DBH_QUESTION_ANSWERING, NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) {
        CHECK(strstr(mb_dbh_warnings(m), "DistilBertForQuestionAnswering were not initialized") != NULL, "%s",
              mb_dbh_warnings(m));
        CHECK(strstr(mb_dbh_warnings(m), "['qa_outputs.weight', 'qa_outputs.bias']") != NULL, "%s",
              mb_dbh_warnings(m));
        CHECK(mb_dbh_num_outputs(m) == 2, "outputs");
    }
    mb_dbh_free(m);
}

enum { B = 2, T = 6 };
static const int32_t IDS[B * T] = {1, 5, 9, 2, 7, 2, 1, 33, 2, 0, 0, 0};
static const int32_t MASK[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
static const int32_t LABELS[B * T] = {-100, 2, 0, -100, 1, -100, -100, 1, -100, -100, -100, -100};
static const int32_t START[B] = {1, 8}, END[B] = {2, 0};

static mb_distilbert_heads *tiny(mb_dbh_task task, uint64_t seed) {
    mb_distilbert_config cfg;
    mb_config_defaults(&cfg);
    cfg.vocab_size = 40;
    cfg.dim = 16;
    cfg.n_layers = 2;
    cfg.n_heads = 4;
    cfg.hidden_dim = 24;
    cfg.max_position_embeddings = 12;
    cfg.initializer_range = 0.3f;
    mb_error err;
    mb_config_set_labels(&cfg, 3, NULL, &err);
    mb_distilbert_heads *m = mb_dbh_new(&cfg, task, seed, &err);
    mb_config_free(&cfg);
    CHECK(m != NULL, "%s", err.msg);
    if (m)
        for (int i = 0; i < mb_dbh_num_tensors(m); i++) {
            const mb_param_info *pi = mb_dbh_param_info(m, i);
            if (pi->ndim == 1)
                for (size_t k = 0; k < pi->numel; k++) mb_dbh_param(m, i)[k] += 0.1f * (float)((int)((k * 7 + (size_t)i) % 5) - 2);
        }
    return m;
}

static double loss_of(mb_distilbert_heads *m) {
    mb_error err;
    double loss = NAN;
    if (mb_dbh_forward(m, IDS, MASK, B, T, 0, 1, &err) != MB_OK) return NAN;
    int qa = mb_dbh_get_task(m) == MB_DBH_QUESTION_ANSWERING;
    if (mb_dbh_loss(m, qa ? START : LABELS, qa ? END : NULL, B, T, &loss, NULL, &err) != MB_OK) return NAN;
    return loss;
}

TEST(finite_difference_gradients) {
    for (int task = 0; task < 2; task++) {
        mb_distilbert_heads *m = tiny((mb_dbh_task)task, 5 + task);
        if (!m) return;
        mb_error err;
        mb_dbh_zero_grad(m);
        CHECK(isfinite(loss_of(m)), "loss");
        CHECK(mb_dbh_backward(m, &err) == MB_OK, "%s", err.msg);
        mb_rng rng;
        mb_rng_seed(&rng, 9);
        int bad = 0, checked = 0;
        double worst = 0;
        for (int i = 0; i < mb_dbh_num_tensors(m); i++) {
            const mb_param_info *pi = mb_dbh_param_info(m, i);
            if (strstr(pi->name, "k_lin.bias") || strstr(pi->name, "pre_classifier")) continue;
            float *g = malloc(pi->numel * sizeof(float));
            memcpy(g, mb_dbh_grad(m, i), pi->numel * sizeof(float));
            for (int s = 0; s < 4; s++) {
                size_t k = mb_rng_below(&rng, pi->numel);
                /* the [PAD] row: nn.Embedding(padding_idx) gives it no gradient, though the QA
                   softmax reads the padded positions */
                if (strstr(pi->name, "word_embeddings") && k < (size_t)pi->shape[1]) k += (size_t)pi->shape[1];
                float *p = mb_dbh_param(m, i) + k, old = *p;
                double h = 1e-2 * fmax(1.0, fabs(old));
                *p = (float)(old + h);
                double lp = loss_of(m);
                *p = (float)(old - h);
                double lm = loss_of(m);
                *p = old;
                double fd = (lp - lm) / (2 * h), diff = fabs(fd - g[k]);
                worst = fmax(worst, diff / (fabs(fd) + 1e-3));
                if (diff > 2e-3 + 2e-2 * fabs(fd)) {
                    fprintf(stderr, "FD %s[%zu]: fd %.6g analytic %.6g\n", pi->name, k, fd, g[k]);
                    bad++;
                }
                checked++;
            }
            free(g);
        }
        printf("FD %-32s %d samples, %d outside tolerance, worst rel %.3g\n", mb_dbh_class_name(task), checked, bad,
               worst);
        CHECK(bad == 0, "%d of %d samples disagree", bad, checked);
        mb_dbh_free(m);
    }
}

TEST(save_and_reload) {
    for (int task = 0; task < 2; task++) {
        mb_distilbert_heads *m = tiny((mb_dbh_task)task, 8);
        if (!m) return;
        char dir[] = "/tmp/test_dbh_XXXXXX";
        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        mb_error err;
        CHECK(mb_dbh_save(m, dir, &err) == MB_OK, "%s", err.msg);
        mb_distilbert_heads *r = mb_dbh_load(dir, (mb_dbh_task)task, NULL, &err);
        CHECK(r != NULL, "%s", err.msg);
        if (r) {
            CHECK(strcmp(mb_dbh_warnings(r), "") == 0, "%s", mb_dbh_warnings(r));
            CHECK(mb_dbh_num_tensors(r) == mb_dbh_num_tensors(m), "tensors");
            for (int i = 0; i < mb_dbh_num_tensors(m); i++)
                CHECK(memcmp(mb_dbh_param(m, i), mb_dbh_param(r, i), mb_dbh_param_info(m, i)->numel * 4) == 0, "%s",
                      mb_dbh_param_info(m, i)->name);
            CHECK(loss_of(m) == loss_of(r), "loss differs");
            mb_dbh_free(r);
        }
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0, "rm");
        mb_dbh_free(m);
    }
}

int main(void) {
    RUN(fixture_parity);
    RUN(another_tasks_checkpoint_gets_a_new_head);
    RUN(finite_difference_gradients);
    RUN(save_and_reload);
    return harness_end();
}
