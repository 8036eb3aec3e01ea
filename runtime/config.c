/* config.c: DistilBERT config.json parsing, validation and writing (jansson). */
#include "config.h"
#include "config_impl.h"

#include "fsutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mb_config_defaults(mb_distilbert_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->vocab_size = 30522;
    cfg->max_position_embeddings = 512;
    cfg->sinusoidal_pos_embds = 0;
    cfg->n_layers = 6;
    cfg->n_heads = 12;
    cfg->dim = 768;
    cfg->hidden_dim = 3072;
    cfg->dropout = 0.1f;
    cfg->attention_dropout = 0.1f;
    cfg->activation = MB_ACT_GELU;
    cfg->initializer_range = 0.02f;
    cfg->qa_dropout = 0.1f;
    cfg->seq_classif_dropout = 0.2f;
    cfg->pad_token_id = 0;
    cfg->tie_weights = 1;
    cfg->num_labels = 0;
    cfg->id2label = NULL;
    cfg->problem_type = MB_PROBLEM_SINGLE_LABEL;
}

const char *mb_problem_type_name(mb_problem_type p) {
    switch (p) {
    case MB_PROBLEM_SINGLE_LABEL: return "single_label_classification";
    case MB_PROBLEM_MULTI_LABEL: return "multi_label_classification";
    case MB_PROBLEM_REGRESSION: return "regression";
    }
    return "?";
}

static void free_labels(mb_distilbert_config *cfg) {
    if (cfg->id2label)
        for (int i = 0; i < cfg->num_labels; i++) free(cfg->id2label[i]);
    free(cfg->id2label);
    cfg->id2label = NULL;
    cfg->num_labels = 0;
}

void mb_config_free(mb_distilbert_config *cfg) {
    if (!cfg) return;
    free_labels(cfg);
    if (cfg->json) json_decref((json_t *)cfg->json);
    cfg->json = NULL;
}

mb_status mb_config_set_labels(mb_distilbert_config *cfg, int num_labels, const char *const *names, mb_error *err) {
    if (num_labels < 1 || num_labels > MB_MAX_LABELS)
        return mb_fail(err, MB_ERR_ARG, "num_labels must be in 1..%d (got %d)", MB_MAX_LABELS, num_labels);
    char **labels = calloc((size_t)num_labels, sizeof *labels);
    if (!labels) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    for (int i = 0; i < num_labels; i++) {
        char buf[32];
        if (!names || !names[i]) snprintf(buf, sizeof buf, "LABEL_%d", i);
        labels[i] = strdup(names && names[i] ? names[i] : buf);
        if (!labels[i]) {
            for (int j = 0; j < i; j++) free(labels[j]);
            free(labels);
            return mb_fail(err, MB_ERR_NOMEM, "out of memory");
        }
    }
    free_labels(cfg);
    cfg->id2label = labels;
    cfg->num_labels = num_labels;
    return MB_OK;
}

mb_status mb_config_override_labels(mb_distilbert_config *cfg, int num_labels, const char *const *id2label,
                                    mb_error *err) {
    if (num_labels <= 0 && !id2label) return MB_OK;
    int n = num_labels > 0 ? num_labels : cfg->num_labels;
    if (mb_config_set_labels(cfg, n, id2label, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
    if (n == 1 && !cfg->problem_type_set) cfg->problem_type = MB_PROBLEM_REGRESSION;
    else if (n > 1 && cfg->problem_type == MB_PROBLEM_REGRESSION && !cfg->problem_type_set)
        cfg->problem_type = MB_PROBLEM_SINGLE_LABEL;
    return MB_OK;
}

mb_status mb_config_copy(mb_distilbert_config *dst, const mb_distilbert_config *src, mb_error *err) {
    *dst = *src;
    dst->id2label = NULL;
    dst->num_labels = 0;
    dst->json = src->json ? json_deep_copy((json_t *)src->json) : NULL;
    if (src->num_labels > 0 &&
        mb_config_set_labels(dst, src->num_labels, (const char *const *)src->id2label, err) != MB_OK) {
        if (dst->json) json_decref((json_t *)dst->json);
        dst->json = NULL;
        return err ? err->code : MB_ERR_NOMEM;
    }
    return MB_OK;
}

mb_status mb_config_validate(const mb_distilbert_config *c, const char *src, mb_error *err) {
    struct { const char *key; int v; } pos[] = {
        {"vocab_size", c->vocab_size}, {"dim", c->dim}, {"n_layers", c->n_layers},
        {"n_heads", c->n_heads}, {"hidden_dim", c->hidden_dim},
        {"max_position_embeddings", c->max_position_embeddings}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v < 1) return mb_fail(err, MB_ERR_FORMAT, "%s: %s must be positive (got %d)", src, pos[i].key, pos[i].v);
    if (c->dim % c->n_heads != 0)
        return mb_fail(err, MB_ERR_FORMAT, "%s: n_heads (%d) does not divide dim (%d)", src, c->n_heads, c->dim);
    /* Keep every buffer size within what size_t and int indexing handle comfortably. */
    if ((long long)c->vocab_size * c->dim > (1LL << 31) || (long long)c->dim * c->hidden_dim > (1LL << 31) ||
        c->max_position_embeddings > 65536 || c->n_layers > 1024 || c->dim > 65536)
        return mb_fail(err, MB_ERR_FORMAT, "%s: sizes are too large (vocab_size*dim and dim*hidden_dim must stay below 2^31, "
                       "max_position_embeddings <= 65536, n_layers <= 1024)", src);
    struct { const char *key; float v; } prob[] = {
        {"dropout", c->dropout}, {"attention_dropout", c->attention_dropout},
        {"seq_classif_dropout", c->seq_classif_dropout}, {"qa_dropout", c->qa_dropout}};
    for (size_t i = 0; i < sizeof prob / sizeof prob[0]; i++)
        if (!(prob[i].v >= 0.0f && prob[i].v < 1.0f))
            return mb_fail(err, MB_ERR_FORMAT, "%s: %s must be in [0, 1) (got %g)", src, prob[i].key, prob[i].v);
    if (!(c->initializer_range >= 0.0f && c->initializer_range < 10.0f))
        return mb_fail(err, MB_ERR_FORMAT, "%s: initializer_range must be in [0, 10) (got %g)", src, c->initializer_range);
    if (c->pad_token_id < 0 || c->pad_token_id >= c->vocab_size)
        return mb_fail(err, MB_ERR_FORMAT, "%s: pad_token_id (%d) is outside the vocabulary (0..%d)", src,
                       c->pad_token_id, c->vocab_size - 1);
    if (c->num_labels < 1 || c->num_labels > MB_MAX_LABELS)
        return mb_fail(err, MB_ERR_FORMAT, "%s: num_labels must be in 1..%d (got %d)", src, MB_MAX_LABELS, c->num_labels);
    return MB_OK;
}

mb_status mb_config_check_ids(const mb_distilbert_config *c, const int32_t *ids, int B, int T, mb_error *err) {
    if (B < 1 || T < 1) return mb_fail(err, MB_ERR_SHAPE, "batch is empty (%d x %d)", B, T);
    if (T > c->max_position_embeddings)
        return mb_fail(err, MB_ERR_SHAPE,
                       "sequence length %d is longer than max_position_embeddings (%d): truncate the input "
                       "(tokenizer max_length)", T, c->max_position_embeddings);
    for (long i = 0; i < (long)B * T; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return mb_fail(err, MB_ERR_RANGE, "input_ids[%ld][%ld] = %d is outside the vocabulary (0..%d)",
                           i / T + 1, i % T + 1, ids[i], c->vocab_size - 1);
    return MB_OK;
}

/* ---- parsing ------------------------------------------------------------ */

json_t *mb_config_json_open(const char *text, size_t len, const char *src, const char *model_type, mb_error *err) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        mb_fail(err, MB_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", src, jerr.text, jerr.line,
                jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        mb_fail(err, MB_ERR_FORMAT, "%s: not a JSON object", src);
        json_decref(root);
        return NULL;
    }
    json_t *mt = json_object_get(root, "model_type");
    if (mt && !(json_is_string(mt) && strcmp(json_string_value(mt), model_type) == 0)) {
        mb_fail(err, MB_ERR_FORMAT, "%s: model_type is %s, expected \"%s\"", src,
                json_is_string(mt) ? json_string_value(mt) : "not a string", model_type);
        json_decref(root);
        return NULL;
    }
    return root;
}

mb_status mb_config_json_int(json_t *root, const char *key, int required, int *out, const char *src, mb_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return required ? mb_fail(err, MB_ERR_FORMAT, "%s: missing key '%s'", src, key) : MB_OK;
    if (!json_is_integer(v)) return mb_fail(err, MB_ERR_FORMAT, "%s: '%s' must be an integer", src, key);
    json_int_t x = json_integer_value(v);
    if (x < -(1LL << 30) || x > (1LL << 30))
        return mb_fail(err, MB_ERR_FORMAT, "%s: '%s' (%lld) is out of range", src, key, (long long)x);
    *out = (int)x;
    return MB_OK;
}

mb_status mb_config_json_float(json_t *root, const char *key, float *out, const char *src, mb_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return MB_OK;
    if (!json_is_number(v)) return mb_fail(err, MB_ERR_FORMAT, "%s: '%s' must be a number", src, key);
    *out = (float)json_number_value(v);
    return MB_OK;
}

static mb_status get_bool(json_t *root, const char *key, int *out, const char *src, mb_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return MB_OK;
    if (!json_is_boolean(v)) return mb_fail(err, MB_ERR_FORMAT, "%s: '%s' must be true or false", src, key);
    *out = json_is_true(v);
    return MB_OK;
}

/* id2label {"0": "sadness", ...}: keys must be exactly 0..n-1. label2id, when
   present, must be its inverse. */
static mb_status parse_labels(mb_distilbert_config *cfg, json_t *root, const char *src, mb_error *err) {
    json_t *id2 = json_object_get(root, "id2label");
    json_t *l2i = json_object_get(root, "label2id");
    json_t *nl = json_object_get(root, "num_labels");
    if (!id2 || json_is_null(id2)) {
        int n = 2;
        if (nl && json_is_integer(nl)) n = (int)json_integer_value(nl);
        else if (l2i && json_is_object(l2i) && json_object_size(l2i) > 0) n = (int)json_object_size(l2i);
        if (n < 1 || n > MB_MAX_LABELS)
            return mb_fail(err, MB_ERR_FORMAT, "%s: num_labels must be in 1..%d (got %d)", src, MB_MAX_LABELS, n);
        if (mb_config_set_labels(cfg, n, NULL, err) != MB_OK) return err ? err->code : MB_ERR_NOMEM;
        if (l2i && json_is_object(l2i) && json_object_size(l2i) == (size_t)n) {
            const char *name;
            json_t *idv;
            json_object_foreach(l2i, name, idv) {
                if (!json_is_integer(idv) || json_integer_value(idv) < 0 || json_integer_value(idv) >= n)
                    return mb_fail(err, MB_ERR_FORMAT, "%s: label2id['%s'] must be an integer in 0..%d", src, name, n - 1);
                char *dup = strdup(name);
                if (!dup) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
                free(cfg->id2label[json_integer_value(idv)]);
                cfg->id2label[json_integer_value(idv)] = dup;
            }
        }
        return MB_OK;
    }
    if (!json_is_object(id2)) return mb_fail(err, MB_ERR_FORMAT, "%s: 'id2label' must be an object", src);
    size_t n = json_object_size(id2);
    if (n < 1 || n > MB_MAX_LABELS)
        return mb_fail(err, MB_ERR_FORMAT, "%s: id2label must have 1..%d entries (got %zu)", src, MB_MAX_LABELS, n);
    const char **names = calloc(n, sizeof *names);
    if (!names) return mb_fail(err, MB_ERR_NOMEM, "out of memory");
    const char *key;
    json_t *v;
    mb_status rc = MB_OK;
    json_object_foreach(id2, key, v) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (*key == '\0' || *end != '\0' || errno || id < 0 || (size_t)id >= n) {
            rc = mb_fail(err, MB_ERR_FORMAT, "%s: id2label key '%s' is not an id in 0..%zu", src, key, n - 1);
            goto out;
        }
        if (!json_is_string(v)) {
            rc = mb_fail(err, MB_ERR_FORMAT, "%s: id2label['%s'] must be a string", src, key);
            goto out;
        }
        if (names[id]) {
            rc = mb_fail(err, MB_ERR_FORMAT, "%s: id2label has id %ld twice", src, id);
            goto out;
        }
        names[id] = json_string_value(v);
    }
    if (l2i && !json_is_null(l2i)) {
        if (!json_is_object(l2i)) {
            rc = mb_fail(err, MB_ERR_FORMAT, "%s: 'label2id' must be an object", src);
            goto out;
        }
        json_object_foreach(l2i, key, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || (size_t)json_integer_value(v) >= n ||
                strcmp(names[json_integer_value(v)], key) != 0) {
                rc = mb_fail(err, MB_ERR_FORMAT, "%s: label2id['%s'] disagrees with id2label", src, key);
                goto out;
            }
        }
    }
    rc = mb_config_set_labels(cfg, (int)n, names, err);
out:
    free(names);
    return rc;
}

mb_status mb_config_parse(mb_distilbert_config *cfg, const char *text, size_t len, const char *src, mb_error *err) {
    mb_config_defaults(cfg);
    json_t *root = mb_config_json_open(text, len, src, "distilbert", err);
    if (!root) return err ? err->code : MB_ERR_FORMAT;
    mb_status rc = MB_OK;
    if ((rc = mb_config_json_int(root, "vocab_size", 1, &cfg->vocab_size, src, err)) ||
        (rc = mb_config_json_int(root, "max_position_embeddings", 1, &cfg->max_position_embeddings, src, err)) ||
        (rc = mb_config_json_int(root, "n_layers", 1, &cfg->n_layers, src, err)) ||
        (rc = mb_config_json_int(root, "n_heads", 1, &cfg->n_heads, src, err)) ||
        (rc = mb_config_json_int(root, "dim", 1, &cfg->dim, src, err)) ||
        (rc = mb_config_json_int(root, "hidden_dim", 1, &cfg->hidden_dim, src, err)) ||
        (rc = mb_config_json_int(root, "pad_token_id", 0, &cfg->pad_token_id, src, err)) ||
        (rc = get_bool(root, "sinusoidal_pos_embds", &cfg->sinusoidal_pos_embds, src, err)) ||
        (rc = get_bool(root, "tie_weights_", &cfg->tie_weights, src, err)) ||
        (rc = mb_config_json_float(root, "dropout", &cfg->dropout, src, err)) ||
        (rc = mb_config_json_float(root, "attention_dropout", &cfg->attention_dropout, src, err)) ||
        (rc = mb_config_json_float(root, "initializer_range", &cfg->initializer_range, src, err)) ||
        (rc = mb_config_json_float(root, "qa_dropout", &cfg->qa_dropout, src, err)) ||
        (rc = mb_config_json_float(root, "seq_classif_dropout", &cfg->seq_classif_dropout, src, err)))
        goto fail;
    json_t *act = json_object_get(root, "activation");
    if (act && !json_is_null(act)) {
        const char *a = json_is_string(act) ? json_string_value(act) : "";
        if (strcmp(a, "gelu") == 0) cfg->activation = MB_ACT_GELU;
        else if (strcmp(a, "relu") == 0) cfg->activation = MB_ACT_RELU;
        else {
            rc = mb_fail(err, MB_ERR_FORMAT, "%s: activation must be \"gelu\" or \"relu\" (got %s)", src,
                         json_is_string(act) ? a : "a non-string");
            goto fail;
        }
    }
    json_t *pt = json_object_get(root, "problem_type");
    if (pt && !json_is_null(pt)) {
        const char *p = json_is_string(pt) ? json_string_value(pt) : "";
        cfg->problem_type_set = 1;
        if (strcmp(p, "single_label_classification") == 0) cfg->problem_type = MB_PROBLEM_SINGLE_LABEL;
        else if (strcmp(p, "multi_label_classification") == 0) cfg->problem_type = MB_PROBLEM_MULTI_LABEL;
        else if (strcmp(p, "regression") == 0) cfg->problem_type = MB_PROBLEM_REGRESSION;
        else {
            rc = mb_fail(err, MB_ERR_FORMAT, "%s: problem_type must be single_label_classification, "
                         "multi_label_classification or regression", src);
            goto fail;
        }
    }
    if ((rc = parse_labels(cfg, root, src, err))) goto fail;
    if (!cfg->problem_type_set && cfg->num_labels == 1) cfg->problem_type = MB_PROBLEM_REGRESSION;
    if ((rc = mb_config_validate(cfg, src, err))) goto fail;
    cfg->json = root;
    return MB_OK;
fail:
    json_decref(root);
    free_labels(cfg);
    return rc;
}

mb_status mb_config_load(mb_distilbert_config *cfg, const char *path, mb_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return mb_fail(err, MB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > (64u << 20)) {
                fclose(f);
                free(buf);
                return mb_fail(err, MB_ERR_FORMAT, "%s: larger than 64 MB, not a config file", path);
            }
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                fclose(f);
                free(buf);
                return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return mb_fail(err, MB_ERR_IO, "%s: read error", path);
    }
    mb_status rc = mb_config_parse(cfg, buf ? buf : "", len, path, err);
    free(buf);
    return rc;
}

/* ---- writing ------------------------------------------------------------ */

char *mb_config_to_json(const mb_distilbert_config *c, const char *architecture, mb_error *err) {
    json_t *root = c->json ? json_deep_copy((json_t *)c->json) : json_object();
    if (!root) {
        mb_fail(err, MB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    json_object_del(root, "num_labels"); /* HF derives it from id2label */
    json_object_set_new(root, "model_type", json_string("distilbert"));
    json_object_set_new(root, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(root, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(root, "sinusoidal_pos_embds", json_boolean(c->sinusoidal_pos_embds));
    json_object_set_new(root, "n_layers", json_integer(c->n_layers));
    json_object_set_new(root, "n_heads", json_integer(c->n_heads));
    json_object_set_new(root, "dim", json_integer(c->dim));
    json_object_set_new(root, "hidden_dim", json_integer(c->hidden_dim));
    json_object_set_new(root, "dropout", mb_config_json_real(c->dropout));
    json_object_set_new(root, "attention_dropout", mb_config_json_real(c->attention_dropout));
    json_object_set_new(root, "activation", json_string(c->activation == MB_ACT_RELU ? "relu" : "gelu"));
    json_object_set_new(root, "initializer_range", mb_config_json_real(c->initializer_range));
    json_object_set_new(root, "qa_dropout", mb_config_json_real(c->qa_dropout));
    json_object_set_new(root, "seq_classif_dropout", mb_config_json_real(c->seq_classif_dropout));
    json_object_set_new(root, "pad_token_id", json_integer(c->pad_token_id));
    json_object_set_new(root, "tie_weights_", json_boolean(c->tie_weights));
    return mb_config_json_finish(root, c, architecture, err);
}

json_t *mb_config_json_real(float x) {
    char buf[64];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if ((float)strtod(buf, NULL) == x) break;
    }
    return json_real(strtod(buf, NULL));
}

char *mb_config_json_finish(json_t *root, const mb_distilbert_config *c, const char *architecture, mb_error *err) {
    if (c->problem_type_set || c->problem_type != MB_PROBLEM_SINGLE_LABEL || json_object_get(root, "problem_type"))
        json_object_set_new(root, "problem_type", json_string(mb_problem_type_name(c->problem_type)));
    json_t *id2 = json_object(), *l2i = json_object();
    for (int i = 0; i < c->num_labels; i++) {
        char key[32];
        snprintf(key, sizeof key, "%d", i);
        json_object_set_new(id2, key, json_string(c->id2label[i]));
        json_object_set_new(l2i, c->id2label[i], json_integer(i));
    }
    json_object_set_new(root, "id2label", id2);
    json_object_set_new(root, "label2id", l2i);
    if (architecture) json_object_set_new(root, "architectures", json_pack("[s]", architecture));
    json_object_set_new(root, "torch_dtype", json_string("float32")); /* we write F32 weights */
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!s) mb_fail(err, MB_ERR_NOMEM, "cannot encode config");
    return s;
}

mb_status mb_config_save(const mb_distilbert_config *c, const char *path, const char *architecture, mb_error *err) {
    char *s = mb_config_to_json(c, architecture, err);
    if (!s) return err ? err->code : MB_ERR_NOMEM;
    size_t n = strlen(s);
    s[n] = '\n'; /* the file ends in a newline: it takes the NUL's place, n + 1 bytes are written */
    /* a temporary file renamed over config.json: a full disk leaves the old file whole */
    mb_status st = mb_write_file_durable(path, s, n + 1, err);
    free(s);
    return st;
}
