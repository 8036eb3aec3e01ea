/* tokenizer_load.c: reading a Hugging Face tokenizer directory into an mb_tokenizer.
 *
 * tokenizer.json is preferred (model WordPiece, normalizer BertNormalizer,
 * pre_tokenizer BertPreTokenizer, post_processor TemplateProcessing or
 * BertProcessing, decoder WordPiece); without it vocab.txt (one token per line,
 * id = line number) with the options of tokenizer_config.json
 * (do_lower_case, strip_accents, tokenize_chinese_chars) and the special tokens
 * of special_tokens_map.json. tokenizer_config.json also gives model_max_length,
 * config.json the model type (DistilBERT takes no token_type_ids) and
 * max_position_embeddings. Other tokenizer types (BPE, Unigram) are refused with
 * a message naming what was found.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer_impl.h"

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The JSON file dir/name, NULL when absent (*st = MB_OK) or malformed (*st set, err filled). */
static json_t *read_json(const char *dir, const char *name, mb_status *st, mb_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *st = MB_OK;
    if (!file_exists(path)) return NULL;
    json_error_t je;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!j) {
        *st = mb_fail(err, MB_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
        return NULL;
    }
    return j;
}

/* A special token given as "[UNK]" or {"content": "[UNK]", ...}. */
static const char *token_string(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int json_flag(json_t *obj, const char *key, int def) {
    json_t *v = json_object_get(obj, key);
    if (json_is_boolean(v)) return json_is_true(v);
    return def;
}

static mb_status add_added(mb_tokenizer *tok, const char *content, size_t len, int32_t id, int special,
                           mb_error *err) {
    if (!len) return MB_OK;
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == len && memcmp(tok->added[i].content, content, len) == 0) return MB_OK;
    mb_added_token *a = realloc(tok->added, (size_t)(tok->n_added + 1) * sizeof *a);
    if (!a) return mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory");
    tok->added = a;
    char *c = malloc(len + 1);
    if (!c) return mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(c, content, len);
    c[len] = '\0';
    a[tok->n_added++] = (mb_added_token){c, len, id, special};
    return MB_OK;
}

typedef struct names {
    char unk[128], pad[128], cls[128], sep[128], mask[128];
} names;

static void set_name(char *dst, json_t *v) {
    const char *s = token_string(v);
    if (s) snprintf(dst, 128, "%s", s);
}

static void read_special_names(json_t *j, names *nm) {
    if (!j) return;
    set_name(nm->unk, json_object_get(j, "unk_token"));
    set_name(nm->pad, json_object_get(j, "pad_token"));
    set_name(nm->cls, json_object_get(j, "cls_token"));
    set_name(nm->sep, json_object_get(j, "sep_token"));
    set_name(nm->mask, json_object_get(j, "mask_token"));
}

static mb_status load_tokenizer_json(mb_tokenizer *tok, json_t *j, const char *path, names *nm, mb_error *err) {
    json_t *model = json_object_get(j, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(model) || !json_is_object(vocab))
        return mb_fail(err, MB_ERR_FORMAT, "%s: no model.vocab object", path);
    if (type && strcmp(type, "WordPiece") != 0)
        return mb_fail(err, MB_ERR_UNSUPPORTED, "%s: model type %s is not supported (only WordPiece)", path, type);
    if (!type && json_object_get(model, "merges"))
        return mb_fail(err, MB_ERR_UNSUPPORTED, "%s: a BPE model is not supported (only WordPiece)", path);
    const char *key;
    json_t *val;
    /* Ids number the tokens: a real file's ids are below the count of its vocab entries and
     * added tokens. A larger id would leave holes (a 400-byte file with one id of 10^8 would
     * size every id table for 10^8), and a cast of one past 2^31 would wrap onto another id. */
    json_int_t id_end = (json_int_t)json_object_size(vocab) + (json_int_t)json_array_size(json_object_get(j, "added_tokens"));
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val)) return mb_fail(err, MB_ERR_FORMAT, "%s: vocab entry '%s' is not an integer id", path, key);
        if (json_integer_value(val) < 0 || json_integer_value(val) >= id_end)
            return mb_fail(err, MB_ERR_FORMAT, "%s: vocab entry '%s': id %" JSON_INTEGER_FORMAT " outside 0 .. %" JSON_INTEGER_FORMAT
                           " (ids number the vocabulary's and added_tokens' entries)", path, key, json_integer_value(val), id_end - 1);
        if (mb_tokenizer_put(tok, key, strlen(key), (int32_t)json_integer_value(val), err))
            return mb_error_prefix(err, "%s: vocab entry '%s': ", path, key);
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk) snprintf(nm->unk, sizeof nm->unk, "%s", unk);
    json_t *prefix = json_object_get(model, "continuing_subword_prefix");
    if (json_is_string(prefix)) {
        const char *p = json_string_value(prefix);
        if (strlen(p) >= sizeof tok->prefix) return mb_fail(err, MB_ERR_FORMAT, "%s: continuing_subword_prefix too long", path);
        snprintf(tok->prefix, sizeof tok->prefix, "%s", p);
    }
    json_t *mic = json_object_get(model, "max_input_chars_per_word");
    if (json_is_integer(mic)) {
        if (json_integer_value(mic) < 1 || json_integer_value(mic) > INT32_MAX)
            return mb_fail(err, MB_ERR_FORMAT, "%s: model.max_input_chars_per_word must be a positive integer", path);
        tok->max_input_chars_per_word = (int32_t)json_integer_value(mic);
    }

    json_t *norm = json_object_get(j, "normalizer");
    if (json_is_object(norm)) {
        const char *nt = json_string_value(json_object_get(norm, "type"));
        if (!nt || strcmp(nt, "BertNormalizer") != 0)
            return mb_fail(err, MB_ERR_UNSUPPORTED, "%s: normalizer %s is not supported (only BertNormalizer)", path,
                           nt ? nt : "?");
        tok->norm.clean_text = json_flag(norm, "clean_text", 1);
        tok->norm.handle_chinese_chars = json_flag(norm, "handle_chinese_chars", 1);
        tok->norm.lowercase = json_flag(norm, "lowercase", 1);
        /* strip_accents: null means "as lowercase" (BertNormalizer's rule) */
        tok->norm.strip_accents = json_flag(norm, "strip_accents", tok->norm.lowercase);
    } else {
        tok->norm = (mb_normalizer_options){0, 0, 0, 0};
    }
    json_t *pre = json_object_get(j, "pre_tokenizer");
    const char *pt = json_string_value(json_object_get(pre, "type"));
    if (!pt || strcmp(pt, "BertPreTokenizer") != 0)
        return mb_fail(err, MB_ERR_UNSUPPORTED, "%s: pre_tokenizer %s is not supported (only BertPreTokenizer)", path,
                       pt ? pt : "null");

    json_t *post = json_object_get(j, "post_processor");
    const char *ppt = json_string_value(json_object_get(post, "type"));
    if (ppt && strcmp(ppt, "TemplateProcessing") == 0) {
        /* BERT's template: [CLS] $A [SEP] (and $B [SEP]); take the first and last special token. */
        json_t *single = json_object_get(post, "single");
        size_t n = json_array_size(single);
        const char *first = NULL, *last = NULL;
        for (size_t i = 0; i < n; i++) {
            json_t *st = json_object_get(json_array_get(single, i), "SpecialToken");
            if (!st) continue;
            const char *id = json_string_value(json_object_get(st, "id"));
            if (!first) {
                if (i != 0) break;
                first = id;
            } else {
                last = id;
            }
        }
        if (!first || !last || n != 3)
            return mb_fail(err, MB_ERR_UNSUPPORTED, "%s: only the BERT template [CLS] $A [SEP] is supported", path);
        json_t *sp = json_object_get(post, "special_tokens");
        json_t *ci = json_object_get(json_object_get(sp, first), "tokens");
        json_t *si = json_object_get(json_object_get(sp, last), "tokens");
        snprintf(nm->cls, sizeof nm->cls, "%s", json_string_value(json_array_get(ci, 0)) ? json_string_value(json_array_get(ci, 0)) : first);
        snprintf(nm->sep, sizeof nm->sep, "%s", json_string_value(json_array_get(si, 0)) ? json_string_value(json_array_get(si, 0)) : last);
    } else if (ppt && strcmp(ppt, "BertProcessing") == 0) {
        const char *c = json_string_value(json_array_get(json_object_get(post, "cls"), 0));
        const char *s = json_string_value(json_array_get(json_object_get(post, "sep"), 0));
        if (c) snprintf(nm->cls, sizeof nm->cls, "%s", c);
        if (s) snprintf(nm->sep, sizeof nm->sep, "%s", s);
    } else if (ppt) {
        return mb_fail(err, MB_ERR_UNSUPPORTED,
                       "%s: post_processor %s is not supported (TemplateProcessing or BertProcessing)", path, ppt);
    }

    json_t *dec = json_object_get(j, "decoder");
    if (json_is_object(dec)) {
        const char *dp = json_string_value(json_object_get(dec, "prefix"));
        (void)dp; /* the model's prefix is used for decoding too */
        tok->decoder_cleanup = json_flag(dec, "cleanup", 1);
    }

    json_t *added = json_object_get(j, "added_tokens");
    size_t i;
    json_array_foreach(added, i, val) {
        const char *content = json_string_value(json_object_get(val, "content"));
        json_t *idv = json_object_get(val, "id");
        if (!content || !json_is_integer(idv)) return mb_fail(err, MB_ERR_FORMAT, "%s: added_tokens[%zu] lacks content or id", path, i);
        if (json_integer_value(idv) < 0 || json_integer_value(idv) >= id_end)
            return mb_fail(err, MB_ERR_FORMAT, "%s: added_tokens[%zu] ('%s'): id %" JSON_INTEGER_FORMAT " outside 0 .. %" JSON_INTEGER_FORMAT,
                           path, i, content, json_integer_value(idv), id_end - 1);
        int32_t id = (int32_t)json_integer_value(idv);
        if (!mb_tokenizer_id_to_token(tok, id, NULL) && mb_tokenizer_put(tok, content, strlen(content), id, err))
            return mb_error_prefix(err, "%s: added token '%s': ", path, content);
        if (add_added(tok, content, strlen(content), id, json_flag(val, "special", 0), err)) return err->code;
    }
    return MB_OK;
}

static mb_status load_vocab_txt(mb_tokenizer *tok, const char *dir, mb_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return mb_fail(err, MB_ERR_IO, "%s: no tokenizer.json or vocab.txt in this directory (is it a Hugging Face model folder?)",
                       dir);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int32_t id = 0;
    mb_status st = MB_OK;
    while ((n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if ((st = mb_tokenizer_put(tok, line, (size_t)n, id, err))) break;
        id++;
    }
    free(line);
    fclose(f);
    if (st) return mb_error_prefix(err, "%s: ", path);
    if (id == 0) return mb_fail(err, MB_ERR_FORMAT, "%s: the vocabulary is empty", path);
    return MB_OK;
}

mb_tokenizer *mb_tokenizer_load(const char *dir, mb_error *err) {
    if (!dir) {
        mb_fail(err, MB_ERR_ARG, "tokenizer: no directory given");
        return NULL;
    }
    struct stat sd;
    if (stat(dir, &sd) != 0 || !S_ISDIR(sd.st_mode)) {
        mb_fail(err, MB_ERR_IO, "%s: not a directory (expected a Hugging Face tokenizer folder)", dir);
        return NULL;
    }
    mb_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        mb_fail(err, MB_ERR_NOMEM, "tokenizer: out of memory");
        return NULL;
    }
    strcpy(tok->prefix, "##");
    tok->max_input_chars_per_word = 100;
    tok->decoder_cleanup = 1;
    tok->has_token_type_ids = 1;
    tok->model_max_length = 512;
    tok->norm = (mb_normalizer_options){1, 1, 1, 1};
    names nm = {"[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"};
    mb_status st;
    json_t *cfg = read_json(dir, "tokenizer_config.json", &st, err);
    json_t *stm = st ? NULL : read_json(dir, "special_tokens_map.json", &st, err);
    json_t *mcfg = st ? NULL : read_json(dir, "config.json", &st, err);
    json_t *tj = NULL;
    if (st) goto fail;
    read_special_names(cfg, &nm);
    read_special_names(stm, &nm);

    /* Options of the slow tokenizer, used with vocab.txt. */
    if (cfg) {
        tok->norm.lowercase = json_flag(cfg, "do_lower_case", 1);
        tok->norm.strip_accents = json_flag(cfg, "strip_accents", tok->norm.lowercase);
        tok->norm.handle_chinese_chars = json_flag(cfg, "tokenize_chinese_chars", 1);
    }
    json_t *mml = json_object_get(cfg, "model_max_length");
    json_t *mpe = json_object_get(mcfg, "max_position_embeddings");
    /* HF writes 1e30 for "no limit": fall back to the model's positions then. */
    if (json_is_number(mml) && json_number_value(mml) >= 2 && json_number_value(mml) <= 1e7)
        tok->model_max_length = (int32_t)json_number_value(mml);
    else if (json_is_integer(mpe) && json_integer_value(mpe) >= 2 && json_integer_value(mpe) <= 10000000)
        tok->model_max_length = (int32_t)json_integer_value(mpe);
    const char *model_type = json_string_value(json_object_get(mcfg, "model_type"));
    const char *tclass = json_string_value(json_object_get(cfg, "tokenizer_class"));
    if ((model_type && strcmp(model_type, "distilbert") == 0) || (tclass && strncmp(tclass, "DistilBert", 10) == 0))
        tok->has_token_type_ids = 0;
    json_t *names_in = json_object_get(cfg, "model_input_names");
    if (json_is_array(names_in)) {
        size_t i;
        json_t *v;
        tok->has_token_type_ids = 0;
        json_array_foreach(names_in, i, v) if (json_is_string(v) && strcmp(json_string_value(v), "token_type_ids") == 0)
            tok->has_token_type_ids = 1;
    }

    tj = read_json(dir, "tokenizer.json", &st, err);
    if (st) goto fail;
    if (tj) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if ((st = load_tokenizer_json(tok, tj, path, &nm, err))) goto fail;
    } else {
        if ((st = load_vocab_txt(tok, dir, err))) goto fail;
    }
    tok->prefix_len = strlen(tok->prefix);

    if ((st = mb_tokenizer_finish(tok, err))) goto fail;
    tok->unk_id = mb_tokenizer_token_to_id(tok, nm.unk, strlen(nm.unk));
    tok->special.unk = tok->unk_id;
    tok->special.pad = mb_tokenizer_token_to_id(tok, nm.pad, strlen(nm.pad));
    tok->special.cls = mb_tokenizer_token_to_id(tok, nm.cls, strlen(nm.cls));
    tok->special.sep = mb_tokenizer_token_to_id(tok, nm.sep, strlen(nm.sep));
    tok->special.mask = mb_tokenizer_token_to_id(tok, nm.mask, strlen(nm.mask));
    if (tok->unk_id < 0) {
        st = mb_fail(err, MB_ERR_FORMAT, "%s: the unknown token '%s' is not in the vocabulary", dir, nm.unk);
        goto fail;
    }
    if (tok->special.cls < 0 || tok->special.sep < 0) {
        st = mb_fail(err, MB_ERR_FORMAT, "%s: the template tokens '%s' and '%s' must be in the vocabulary", dir, nm.cls,
                     nm.sep);
        goto fail;
    }
    if (!tj) { /* the slow tokenizer never splits its special tokens */
        const char *sp[5] = {nm.unk, nm.pad, nm.cls, nm.sep, nm.mask};
        for (int i = 0; i < 5; i++) {
            int32_t id = mb_tokenizer_token_to_id(tok, sp[i], strlen(sp[i]));
            if (id >= 0 && (st = add_added(tok, sp[i], strlen(sp[i]), id, 1, err))) goto fail;
        }
        if ((st = mb_tokenizer_finish_added(tok, err))) goto fail;
    }
    json_decref(cfg);
    json_decref(stm);
    json_decref(mcfg);
    json_decref(tj);
    return tok;
fail:
    json_decref(cfg);
    json_decref(stm);
    json_decref(mcfg);
    json_decref(tj);
    mb_tokenizer_free(tok);
    return NULL;
}
