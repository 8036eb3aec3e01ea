/* bert_config.c: BERT config.json (model_type "bert") parsing and writing.
 *
 * The sizes are checked under their BERT names, then handed to config.c's
 * parser under the DistilBERT names it knows, so that the labels (id2label,
 * label2id, num_labels) and problem_type follow exactly one set of rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"
#include "config_impl.h"
#include "textdata.h"

void mb_bert_config_defaults(mb_bert_config *cfg) {
    mb_config_defaults(&cfg->base);
    cfg->base.n_layers = 12;
    cfg->base.seq_classif_dropout = 0.1f;
    cfg->type_vocab_size = 2;
    cfg->layer_norm_eps = 1e-12f;
    cfg->classifier_dropout = -1.0f;
}

void mb_bert_config_free(mb_bert_config *cfg) {
    if (cfg) mb_config_free(&cfg->base);
}

mb_status mb_bert_config_copy(mb_bert_config *dst, const mb_bert_config *src, mb_error *err) {
    *dst = *src;
    return mb_config_copy(&dst->base, &src->base, err);
}

static mb_status check_sizes(const mb_bert_config *c, const char *src, mb_error *err) {
    const mb_distilbert_config *b = &c->base;
    struct { const char *key; int v; } pos[] = {
        {"vocab_size", b->vocab_size}, {"hidden_size", b->dim}, {"num_hidden_layers", b->n_layers},
        {"num_attention_heads", b->n_heads}, {"intermediate_size", b->hidden_dim},
        {"max_position_embeddings", b->max_position_embeddings}, {"type_vocab_size", c->type_vocab_size}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v < 1) return mb_fail(err, MB_ERR_FORMAT, "%s: %s must be positive (got %d)", src, pos[i].key, pos[i].v);
    if (b->dim % b->n_heads != 0)
        return mb_fail(err, MB_ERR_FORMAT, "%s: num_attention_heads (%d) does not divide hidden_size (%d)", src,
                       b->n_heads, b->dim);
    if (c->type_vocab_size > 65536)
        return mb_fail(err, MB_ERR_FORMAT, "%s: type_vocab_size (%d) is too large", src, c->type_vocab_size);
    struct { const char *key; float v; } prob[] = {
        {"hidden_dropout_prob", b->dropout}, {"attention_probs_dropout_prob", b->attention_dropout}};
    for (size_t i = 0; i < 2; i++)
        if (!(prob[i].v >= 0.0f && prob[i].v < 1.0f))
            return mb_fail(err, MB_ERR_FORMAT, "%s: %s must be in [0, 1) (got %g)", src, prob[i].key, prob[i].v);
    if (c->classifier_dropout >= 1.0f)
        return mb_fail(err, MB_ERR_FORMAT, "%s: classifier_dropout must be in [0, 1) (got %g)", src,
                       c->classifier_dropout);
    if (!(c->layer_norm_eps > 0.0f && c->layer_norm_eps < 1.0f))
        return mb_fail(err, MB_ERR_FORMAT, "%s: layer_norm_eps must be in (0, 1) (got %g)", src, c->layer_norm_eps);
    return MB_OK;
}

mb_status mb_bert_config_parse(mb_bert_config *cfg, const char *text, size_t len, const char *src, mb_error *err) {
    mb_bert_config_defaults(cfg);
    json_t *root = mb_config_json_open(text, len, src, "bert", err);
    if (!root) return err ? err->code : MB_ERR_FORMAT;
    mb_status rc = MB_OK;
    json_t *tr = NULL;
    mb_distilbert_config *b = &cfg->base;
    if ((rc = mb_config_json_int(root, "vocab_size", 1, &b->vocab_size, src, err)) ||
        (rc = mb_config_json_int(root, "hidden_size", 1, &b->dim, src, err)) ||
        (rc = mb_config_json_int(root, "num_hidden_layers", 1, &b->n_layers, src, err)) ||
        (rc = mb_config_json_int(root, "num_attention_heads", 1, &b->n_heads, src, err)) ||
        (rc = mb_config_json_int(root, "intermediate_size", 1, &b->hidden_dim, src, err)) ||
        (rc = mb_config_json_int(root, "max_position_embeddings", 0, &b->max_position_embeddings, src, err)) ||
        (rc = mb_config_json_int(root, "type_vocab_size", 0, &cfg->type_vocab_size, src, err)) ||
        (rc = mb_config_json_int(root, "pad_token_id", 0, &b->pad_token_id, src, err)) ||
        (rc = mb_config_json_float(root, "hidden_dropout_prob", &b->dropout, src, err)) ||
        (rc = mb_config_json_float(root, "attention_probs_dropout_prob", &b->attention_dropout, src, err)) ||
        (rc = mb_config_json_float(root, "initializer_range", &b->initializer_range, src, err)) ||
        (rc = mb_config_json_float(root, "layer_norm_eps", &cfg->layer_norm_eps, src, err)) ||
        (rc = mb_config_json_float(root, "classifier_dropout", &cfg->classifier_dropout, src, err)))
        goto out;
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act)) {
        const char *a = json_is_string(act) ? json_string_value(act) : "";
        if (strcmp(a, "gelu") == 0) b->activation = MB_ACT_GELU;
        else if (strcmp(a, "relu") == 0) b->activation = MB_ACT_RELU;
        else {
            rc = mb_fail(err, MB_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (gelu or relu)", src, a);
            goto out;
        }
    }
    json_t *pet = json_object_get(root, "position_embedding_type");
    if (pet && json_is_string(pet) && strcmp(json_string_value(pet), "absolute") != 0) {
        rc = mb_fail(err, MB_ERR_UNSUPPORTED, "%s: position_embedding_type \"%s\" is not supported (absolute only)",
                     src, json_string_value(pet));
        goto out;
    }
    if ((rc = check_sizes(cfg, src, err))) goto out;
    /* labels and problem_type through config.c, under the DistilBERT names */
    tr = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f}", "vocab_size", b->vocab_size, "dim", b->dim,
                   "n_layers", b->n_layers, "n_heads", b->n_heads, "hidden_dim", b->hidden_dim,
                   "max_position_embeddings", b->max_position_embeddings, "pad_token_id", b->pad_token_id,
                   "dropout", (double)b->dropout, "attention_dropout", (double)b->attention_dropout,
                   "initializer_range", (double)b->initializer_range);
    if (!tr) {
        rc = mb_fail(err, MB_ERR_NOMEM, "out of memory");
        goto out;
    }
    const char *keep[] = {"id2label", "label2id", "num_labels", "problem_type"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        json_t *v = json_object_get(root, keep[i]);
        if (v) json_object_set(tr, keep[i], v);
    }
    char *t = json_dumps(tr, 0);
    if (!t) {
        rc = mb_fail(err, MB_ERR_NOMEM, "out of memory");
        goto out;
    }
    mb_bert_config saved = *cfg;
    rc = mb_config_parse(b, t, strlen(t), src, err);
    free(t);
    if (rc) goto out;
    /* mb_config_parse reset the fields it does not read from tr */
    b->activation = saved.base.activation;
    b->seq_classif_dropout = saved.base.seq_classif_dropout;
    json_decref((json_t *)b->json);
    b->json = root;
    root = NULL;
out:
    json_decref(tr);
    json_decref(root);
    return rc;
}

mb_status mb_bert_config_load(mb_bert_config *cfg, const char *path, mb_error *err) {
    size_t len;
    char *text = NULL;
    if (mb_read_file(path, &text, &len, err) != MB_OK) return err ? err->code : MB_ERR_IO;
    mb_status rc = mb_bert_config_parse(cfg, text, len, path, err);
    free(text);
    return rc;
}

char *mb_bert_config_to_json(const mb_bert_config *cfg, const char *architecture, mb_error *err) {
    const mb_distilbert_config *c = &cfg->base;
    json_t *root = c->json ? json_deep_copy((json_t *)c->json) : json_object();
    if (!root) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    json_object_del(root, "num_labels"); /* HF derives it from id2label */
    json_object_set_new(root, "model_type", json_string("bert"));
    json_object_set_new(root, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(root, "hidden_size", json_integer(c->dim));
    json_object_set_new(root, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(root, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(root, "intermediate_size", json_integer(c->hidden_dim));
    json_object_set_new(root, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(root, "type_vocab_size", json_integer(cfg->type_vocab_size));
    json_object_set_new(root, "hidden_act", json_string(c->activation == MB_ACT_RELU ? "relu" : "gelu"));
    json_object_set_new(root, "hidden_dropout_prob", mb_config_json_real(c->dropout));
    json_object_set_new(root, "attention_probs_dropout_prob", mb_config_json_real(c->attention_dropout));
    json_object_set_new(root, "initializer_range", mb_config_json_real(c->initializer_range));
    json_object_set_new(root, "layer_norm_eps", mb_config_json_real(cfg->layer_norm_eps));
    json_object_set_new(root, "classifier_dropout",
                        cfg->classifier_dropout < 0 ? json_null() : mb_config_json_real(cfg->classifier_dropout));
    json_object_set_new(root, "pad_token_id", json_integer(c->pad_token_id));
    json_object_set_new(root, "position_embedding_type", json_string("absolute"));
    return mb_config_json_finish(root, c, architecture, err);
}
