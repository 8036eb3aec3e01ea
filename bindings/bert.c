/* bert.c (bindings): core.bert, the moonbert.Bert userdata (BERT with any of its four heads,
 * runtime/bert.h) and moonbert.DistilBertHeads (DistilBERT token classification and question
 * answering, runtime/distilbert_heads.h). Both present the same raw methods, which
 * bindings/moonbert/bert.lua turns into the model methods users call:
 *
 *   core.bert.load(dir, task, num_labels, {names}, seed) / core.bert.new(config_json, source, task, seed)
 *   core.bert.load_distilbert(dir, task, num_labels, {names}, seed) / new_distilbert(json, source, task, seed)
 *   m:_forward(ids, mask|nil, types|nil, train, keep [, positions]) -> {last_hidden_state=, logits=, ...}
 *   m:_loss(ids, mask|nil, types|nil, labels, labels2|nil, targets|nil, train) -> loss, outputs, per_example
 *   m:_features(ids, mask|nil, types|nil) -> [B,dim] ([CLS] hidden states, eval mode)
 *   m:backward(), m:zero_grad(), m:parameters(), m:num_parameters([trainable]), m:freeze_encoder(bool),
 *   m:encoder_frozen(), m:save(dir), m:config_json(), m:warnings(), m:task(), m:model_type(),
 *   m:rng_state(), m:set_rng_state(s), m:seed(n), m:flops(B, T, backward), m:free()
 *
 * ids, mask, types are contiguous int32 [B,T] tensors (the Lua side converts batches); labels
 * int32 (QA: start positions [B], labels2 end positions [B]); targets float32 (multi-label,
 * regression). Tasks are HF's pipeline names: "text-classification", "token-classification",
 * "question-answering", "fill-mask".
 */
#include <stdlib.h>
#include <string.h>

#include "../runtime/bert.h"
#include "../runtime/distilbert_heads.h"
#include "luamb.h"

#define BERT_MT "moonbert.Bert"
#define DBH_MT "moonbert.DistilBertHeads"

static const char *const TASKS[] = {"text-classification", "token-classification", "question-answering", "fill-mask",
                                    NULL};

/* ---- one view over the two model kinds ---------------------------------------- */

typedef struct model_ref {
    mb_lua_shared *ref;
    mb_bert *bert; /* or */
    mb_distilbert_heads *dbh;
} model_ref;

static model_ref check_model(lua_State *L, int arg) {
    model_ref r = {0};
    if (luaL_testudata(L, arg, DBH_MT)) {
        r.ref = mb_lua_checkshared(L, arg, DBH_MT);
        r.dbh = r.ref->obj;
    } else {
        r.ref = mb_lua_checkshared(L, arg, BERT_MT);
        r.bert = r.ref->obj;
    }
    return r;
}

static const mb_distilbert_config *base_config(model_ref r) {
    return r.bert ? &mb_bert_get_config(r.bert)->base : mb_distilbert_get_config(mb_dbh_encoder(r.dbh));
}

static int task_index(model_ref r) {
    if (r.bert) return (int)mb_bert_get_task(r.bert);
    return mb_dbh_get_task(r.dbh) == MB_DBH_QUESTION_ANSWERING ? 2 : 1;
}

static int num_tensors(model_ref r) { return r.bert ? mb_bert_num_tensors(r.bert) : mb_dbh_num_tensors(r.dbh); }
static const mb_param_info *param_info(model_ref r, int i) {
    return r.bert ? mb_bert_param_info(r.bert, i) : mb_dbh_param_info(r.dbh, i);
}
static float *param_ptr(model_ref r, int i) {
    return r.bert ? mb_bert_params(r.bert) + mb_bert_param_info(r.bert, i)->offset : mb_dbh_param(r.dbh, i);
}
static float *grad_ptr(model_ref r, int i) {
    return r.bert ? mb_bert_grads(r.bert) + mb_bert_param_info(r.bert, i)->offset : mb_dbh_grad(r.dbh, i);
}
static int trainable(model_ref r, int i) {
    if (r.bert) return mb_bert_trainable(r.bert, i);
    return !(param_info(r, i)->encoder && mb_distilbert_encoder_frozen(mb_dbh_encoder(r.dbh)));
}
static mb_rng *model_rng(model_ref r) {
    return r.bert ? mb_bert_rng(r.bert) : mb_distilbert_rng(mb_dbh_encoder(r.dbh));
}

static void free_bert(void *m) { mb_bert_free(m); }
static void free_dbh(void *m) { mb_dbh_free(m); }

static int model_close(lua_State *L) {
    mb_lua_closeshared(L, 1, luaL_testudata(L, 1, DBH_MT) ? DBH_MT : BERT_MT);
    return 0;
}

/* ---- constructors ----------------------------------------------------------------- */

/* {names} at arg (or nil) -> a NULL-terminated array kept alive by the table. */
static const char **check_names(lua_State *L, int arg, int *num_labels) {
    if (lua_isnoneornil(L, arg)) return NULL;
    luaL_checktype(L, arg, LUA_TTABLE);
    int n = (int)lua_rawlen(L, arg);
    if (n < 1 || n > MB_MAX_LABELS) luaL_argerror(L, arg, "id2label must list 1..4096 names");
    if (*num_labels && *num_labels != n)
        luaL_argerror(L, arg, lua_pushfstring(L, "id2label has %d names but num_labels is %d", n, *num_labels));
    const char **names = lua_newuserdatauv(L, sizeof(char *) * (size_t)n, 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, arg, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, arg, lua_pushfstring(L, "id2label entry %d is not a string", i + 1));
        names[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    *num_labels = n;
    return names;
}

static void push_bert(lua_State *L, mb_bert *m) {
    mb_lua_pushshared(L, BERT_MT, m, free_bert, mb_bert_num_params(m) * 2 * sizeof(float));
}

static void push_dbh(lua_State *L, mb_distilbert_heads *m) {
    mb_lua_pushshared(L, DBH_MT, m, free_dbh, mb_dbh_num_params(m) * 2 * sizeof(float));
}

static int b_load(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    int task = luaL_checkoption(L, 2, NULL, TASKS);
    int num_labels = (int)luaL_optinteger(L, 3, 0);
    const char **names = check_names(L, 4, &num_labels);
    mb_bert_load_opts o = {(mb_bert_task)task, num_labels, names, (uint64_t)luaL_optinteger(L, 5, 42)};
    mb_error err;
    mb_bert *m = mb_bert_load(dir, &o, &err);
    if (!m) return mb_lua_raise(L, &err);
    push_bert(L, m);
    return 1;
}

static int b_new(lua_State *L) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *source = luaL_optstring(L, 2, "config");
    int task = luaL_checkoption(L, 3, NULL, TASKS);
    mb_bert_config cfg;
    mb_error err;
    if (mb_bert_config_parse(&cfg, text, len, source, &err) != MB_OK) return mb_lua_argraise(L, 1, &err);
    mb_bert *m = mb_bert_new(&cfg, (mb_bert_task)task, (uint64_t)luaL_optinteger(L, 4, 42), &err);
    mb_bert_config_free(&cfg);
    if (!m) return mb_lua_raise(L, &err);
    push_bert(L, m);
    return 1;
}

static mb_dbh_task dbh_task(lua_State *L, int arg) {
    int t = luaL_checkoption(L, arg, NULL, TASKS);
    if (t != 1 && t != 2)
        luaL_argerror(L, arg, "DistilBERT heads are token-classification and question-answering");
    return t == 2 ? MB_DBH_QUESTION_ANSWERING : MB_DBH_TOKEN_CLASSIFICATION;
}

static int b_load_distilbert(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    mb_dbh_task task = dbh_task(L, 2);
    int num_labels = (int)luaL_optinteger(L, 3, 0);
    const char **names = check_names(L, 4, &num_labels);
    mb_distilbert_load_opts o = {num_labels, names, (uint64_t)luaL_optinteger(L, 5, 42)};
    mb_error err;
    mb_distilbert_heads *m = mb_dbh_load(dir, task, &o, &err);
    if (!m) return mb_lua_raise(L, &err);
    push_dbh(L, m);
    return 1;
}

static int b_new_distilbert(lua_State *L) {
    mb_dbh_task task = dbh_task(L, 3);
    mb_distilbert_config cfg;
    mb_lua_checkconfig(L, 1, &cfg);
    mb_error err;
    mb_distilbert_heads *m = mb_dbh_new(&cfg, task, (uint64_t)luaL_optinteger(L, 4, 42), &err);
    mb_config_free(&cfg);
    if (!m) return mb_lua_raise(L, &err);
    push_dbh(L, m);
    return 1;
}

/* ---- inputs and outputs ---------------------------------------------------------- */

typedef struct inputs {
    const int32_t *ids, *mask, *types;
    int B, T;
} inputs;

static const int32_t *opt_matrix(lua_State *L, int arg, const char *what, int B, int T) {
    if (lua_isnoneornil(L, arg)) return NULL;
    mb_tensor *t = mb_lua_checktensor_as(L, arg, MB_INT32, 2);
    if (!mb_tensor_is_contiguous(t)) luaL_argerror(L, arg, "contiguous tensor expected");
    if (B >= 0 && (t->shape[0] != B || t->shape[1] != T)) {
        char a[64], b[64];
        int64_t want[2] = {B, T};
        luaL_argerror(L, arg, lua_pushfstring(L, "%s has shape %s but input_ids has %s", what,
                                              mb_shape_str(2, t->shape, a, sizeof a), mb_shape_str(2, want, b, sizeof b)));
    }
    return mb_tensor_i32(t);
}

static inputs check_inputs(lua_State *L, int arg) {
    inputs in;
    mb_tensor *ids = mb_lua_checktensor_as(L, arg, MB_INT32, 2);
    if (!mb_tensor_is_contiguous(ids)) luaL_argerror(L, arg, "contiguous tensor expected");
    in.ids = mb_tensor_i32(ids);
    in.B = (int)ids->shape[0];
    in.T = (int)ids->shape[1];
    in.mask = opt_matrix(L, arg + 1, "attention_mask", in.B, in.T);
    in.types = opt_matrix(L, arg + 2, "token_type_ids", in.B, in.T);
    return in;
}

static void push_f32(lua_State *L, int ndim, const int64_t *shape, const float *src) {
    mb_error err;
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, ndim, shape, &err);
    if (!t) mb_lua_raise(L, &err);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (src) memcpy(mb_tensor_f32(t), src, sizeof(float) * (size_t)n);
    mb_lua_pushtensor(L, t, &err);
}

/* The results of the last forward as a table (the head's outputs in HF's names). */
static void push_outputs(lua_State *L, model_ref r, int B, int T) {
    const mb_distilbert_config *c = base_config(r);
    int task = task_index(r);
    lua_newtable(L);
    int64_t hs[3] = {B, T, c->dim};
    push_f32(L, 3, hs, r.bert ? mb_bert_last_hidden(r.bert) : mb_dbh_last_hidden(r.dbh));
    lua_setfield(L, -2, "last_hidden_state");
    if (task == 2) {
        int64_t s[2] = {B, T};
        push_f32(L, 2, s, r.bert ? mb_bert_start_logits(r.bert) : mb_dbh_start_logits(r.dbh));
        lua_setfield(L, -2, "start_logits");
        push_f32(L, 2, s, r.bert ? mb_bert_end_logits(r.bert) : mb_dbh_end_logits(r.dbh));
        lua_setfield(L, -2, "end_logits");
    } else if (task == 1) {
        int64_t s[3] = {B, T, r.bert ? mb_bert_num_outputs(r.bert) : mb_dbh_num_outputs(r.dbh)};
        push_f32(L, 3, s, r.bert ? mb_bert_logits(r.bert) : mb_dbh_logits(r.dbh));
        lua_setfield(L, -2, "logits");
    } else if (task == 0) {
        int64_t s[2] = {B, c->num_labels};
        push_f32(L, 2, s, mb_bert_logits(r.bert));
        lua_setfield(L, -2, "logits");
        int64_t ps[2] = {B, c->dim};
        push_f32(L, 2, ps, mb_bert_pooled(r.bert));
        lua_setfield(L, -2, "pooler_output");
    } else {
        int n = mb_bert_num_rows(r.bert);
        int64_t s[2] = {n, c->vocab_size};
        push_f32(L, 2, s, mb_bert_logits(r.bert));
        lua_setfield(L, -2, "logits");
        const int32_t *rows = mb_bert_rows(r.bert);
        lua_createtable(L, n, 0);
        for (int i = 0; i < n; i++) {
            lua_pushinteger(L, rows[i] + 1); /* 1-based flat position b*T+t+1 */
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "positions");
    }
}

/* ---- forward, loss, backward -------------------------------------------------------- */

static int m_forward(lua_State *L) {
    model_ref r = check_model(L, 1);
    inputs in = check_inputs(L, 2);
    int train = lua_toboolean(L, 5), keep = lua_toboolean(L, 6);
    mb_error err;
    mb_status rc;
    if (r.bert) {
        mb_bert_forward_opts o = {.train = train, .keep = keep};
        if (!lua_isnoneornil(L, 7)) {
            mb_tensor *pos = mb_lua_checktensor_as(L, 7, MB_INT32, 1);
            if (!mb_tensor_is_contiguous(pos)) luaL_argerror(L, 7, "contiguous tensor expected");
            o.positions = mb_tensor_i32(pos);
            o.n_positions = (int)pos->shape[0];
        }
        rc = mb_bert_forward(r.bert, in.ids, in.mask, in.types, in.B, in.T, &o, &err);
    } else {
        rc = mb_dbh_forward(r.dbh, in.ids, in.mask, in.B, in.T, train, keep, &err);
    }
    if (rc != MB_OK) return mb_lua_raise(L, &err);
    push_outputs(L, r, in.B, in.T);
    return 1;
}

static int m_loss(lua_State *L) {
    model_ref r = check_model(L, 1);
    inputs in = check_inputs(L, 2);
    int task = task_index(r);
    const int32_t *labels = NULL, *labels2 = NULL;
    const float *targets = NULL;
    if (!lua_isnoneornil(L, 5)) {
        mb_tensor *t = mb_lua_checktensor_as(L, 5, MB_INT32, -1);
        if (!mb_tensor_is_contiguous(t)) luaL_argerror(L, 5, "contiguous tensor expected");
        labels = mb_tensor_i32(t);
        int64_t want = task == 0 || task == 2 ? in.B : (int64_t)in.B * in.T;
        if (mb_tensor_numel(t) != want)
            return luaL_argerror(L, 5, lua_pushfstring(L, "%d labels expected for a batch of %d x %d, got %d", (int)want,
                                                       in.B, in.T, (int)mb_tensor_numel(t)));
    }
    if (!lua_isnoneornil(L, 6)) {
        mb_tensor *t = mb_lua_checktensor_as(L, 6, MB_INT32, 1);
        if (!mb_tensor_is_contiguous(t) || t->shape[0] != in.B)
            return luaL_argerror(L, 6, lua_pushfstring(L, "end positions: %d expected", in.B));
        labels2 = mb_tensor_i32(t);
    }
    if (!lua_isnoneornil(L, 7)) {
        mb_tensor *t = mb_lua_checktensor_as(L, 7, MB_FLOAT32, -1);
        if (!mb_tensor_is_contiguous(t)) luaL_argerror(L, 7, "contiguous tensor expected");
        if (mb_tensor_numel(t) != (int64_t)in.B * base_config(r)->num_labels)
            return luaL_argerror(L, 7, "targets must be [B, num_labels]");
        targets = mb_tensor_f32(t);
    }
    int train = lua_toboolean(L, 8);
    mb_error err;
    mb_status rc;
    double loss = 0;
    int per_n = task == 1 ? in.B * in.T : in.B;
    float *per = malloc(sizeof(float) * (size_t)per_n);
    if (!per) return luaL_error(L, "out of memory");
    for (int i = 0; i < per_n; i++) per[i] = 0.0f;
    if (r.bert && task == 3) {
        if (!labels) {
            free(per);
            return luaL_argerror(L, 5, "masked-LM labels [B,T] expected");
        }
        rc = mb_bert_mlm_loss(r.bert, in.ids, in.mask, in.types, labels, in.B, in.T, train, &loss, NULL, &err);
    } else if (r.bert) {
        mb_bert_forward_opts o = {.train = train, .keep = 1};
        rc = mb_bert_forward(r.bert, in.ids, in.mask, in.types, in.B, in.T, &o, &err);
        if (rc == MB_OK) rc = mb_bert_loss(r.bert, labels, labels2, targets, in.B, in.T, &loss, per, &err);
    } else {
        rc = mb_dbh_forward(r.dbh, in.ids, in.mask, in.B, in.T, train, 1, &err);
        if (rc == MB_OK) rc = mb_dbh_loss(r.dbh, labels, labels2, in.B, in.T, &loss, per, &err);
    }
    if (rc != MB_OK) {
        free(per);
        return mb_lua_raise(L, &err);
    }
    lua_pushnumber(L, loss);
    push_outputs(L, r, in.B, in.T);
    int64_t ps[2] = {in.B, in.T};
    push_f32(L, task == 1 ? 2 : 1, ps, per);
    free(per);
    return 3;
}

static int m_features(lua_State *L) {
    model_ref r = check_model(L, 1);
    inputs in = check_inputs(L, 2);
    int D = base_config(r)->dim;
    mb_error err;
    int64_t shape[2] = {in.B, D};
    mb_tensor *out = mb_tensor_empty(MB_FLOAT32, 2, shape, &err);
    if (!out) return mb_lua_raise(L, &err);
    mb_status rc;
    if (r.bert) {
        mb_bert_forward_opts o = {.encoder_only = 1};
        rc = mb_bert_forward(r.bert, in.ids, in.mask, in.types, in.B, in.T, &o, &err);
        if (rc == MB_OK)
            for (int b = 0; b < in.B; b++)
                memcpy(mb_tensor_f32(out) + (long)b * D, mb_bert_last_hidden(r.bert) + (long)b * in.T * D,
                       D * sizeof(float));
    } else {
        rc = mb_distilbert_features(mb_dbh_encoder(r.dbh), in.ids, in.mask, in.B, in.T, mb_tensor_f32(out), &err);
    }
    if (rc != MB_OK) {
        mb_tensor_free(out);
        return mb_lua_raise(L, &err);
    }
    mb_lua_pushtensor(L, out, &err);
    return 1;
}

static int m_backward(lua_State *L) {
    model_ref r = check_model(L, 1);
    mb_error err;
    mb_status rc = r.bert ? mb_bert_backward(r.bert, &err) : mb_dbh_backward(r.dbh, &err);
    if (rc != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

/* ---- parameters and the rest -------------------------------------------------------- */

static int m_parameters(lua_State *L) {
    model_ref r = check_model(L, 1);
    int n = num_tensors(r);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const mb_param_info *pi = param_info(r, i);
        mb_lua_pushparam(L, r.ref, pi, param_ptr(r, i), grad_ptr(r, i), trainable(r, i), MB_CPU);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int m_zero_grad(lua_State *L) {
    model_ref r = check_model(L, 1);
    if (r.bert) mb_bert_zero_grad(r.bert);
    else mb_dbh_zero_grad(r.dbh);
    return 0;
}

static int m_num_parameters(lua_State *L) {
    model_ref r = check_model(L, 1);
    int trainable_only = lua_toboolean(L, 2);
    size_t n = 0;
    for (int i = 0; i < num_tensors(r); i++)
        if (!trainable_only || trainable(r, i)) n += param_info(r, i)->numel;
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int m_freeze_encoder(lua_State *L) {
    model_ref r = check_model(L, 1);
    int frozen = lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2);
    if (r.bert) mb_bert_freeze_encoder(r.bert, frozen);
    else mb_distilbert_freeze_encoder(mb_dbh_encoder(r.dbh), frozen);
    return 0;
}

static int m_encoder_frozen(lua_State *L) {
    model_ref r = check_model(L, 1);
    lua_pushboolean(L, r.bert ? mb_bert_encoder_frozen(r.bert) : mb_distilbert_encoder_frozen(mb_dbh_encoder(r.dbh)));
    return 1;
}

static int m_save(lua_State *L) {
    model_ref r = check_model(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    mb_error err;
    mb_status rc = r.bert ? mb_bert_save(r.bert, dir, &err) : mb_dbh_save(r.dbh, dir, &err);
    if (rc != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static int m_config_json(lua_State *L) {
    model_ref r = check_model(L, 1);
    mb_error err;
    char *s = r.bert ? mb_bert_config_to_json(mb_bert_get_config(r.bert), mb_bert_class_name(mb_bert_get_task(r.bert)), &err)
                     : mb_config_to_json(mb_distilbert_get_config(mb_dbh_encoder(r.dbh)),
                                         mb_dbh_class_name(mb_dbh_get_task(r.dbh)), &err);
    if (!s) return mb_lua_raise(L, &err);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static int m_warnings(lua_State *L) {
    model_ref r = check_model(L, 1);
    lua_pushstring(L, r.bert ? mb_bert_warnings(r.bert) : mb_dbh_warnings(r.dbh));
    return 1;
}

static int m_task(lua_State *L) {
    lua_pushstring(L, TASKS[task_index(check_model(L, 1))]);
    return 1;
}

static int m_model_type(lua_State *L) {
    lua_pushstring(L, check_model(L, 1).bert ? "bert" : "distilbert");
    return 1;
}

static int m_rng_state(lua_State *L) {
    mb_lua_push_rng_state(L, model_rng(check_model(L, 1)));
    return 1;
}

static int m_set_rng_state(lua_State *L) {
    mb_lua_check_rng_state(L, 2, model_rng(check_model(L, 1)));
    return 0;
}

static int m_seed(lua_State *L) {
    mb_rng_seed(model_rng(check_model(L, 1)), (uint64_t)luaL_checkinteger(L, 2));
    return 0;
}

static int m_flops(lua_State *L) {
    model_ref r = check_model(L, 1);
    int B = (int)luaL_checkinteger(L, 2), T = (int)luaL_checkinteger(L, 3);
    int backward = lua_toboolean(L, 4);
    double f;
    if (r.bert) {
        f = mb_bert_flops(r.bert, B, T, backward);
    } else {
        const mb_distilbert_config *c = base_config(r);
        double fwd = mb_distilbert_flops(mb_dbh_encoder(r.dbh), B, T, 0, 0) + 2.0 * B * T * c->dim * mb_dbh_num_outputs(r.dbh);
        f = backward ? 3.0 * fwd : fwd;
    }
    lua_pushnumber(L, f);
    return 1;
}

static int m_tostring(lua_State *L) {
    int dbh = luaL_testudata(L, 1, DBH_MT) != NULL;
    mb_lua_shared *s = mb_lua_shared_or_null(L, 1, dbh ? DBH_MT : BERT_MT);
    if (!s) {
        lua_pushfstring(L, "%s (freed)", dbh ? DBH_MT : BERT_MT);
        return 1;
    }
    model_ref r = check_model(L, 1);
    const mb_distilbert_config *c = base_config(r);
    const char *cls = r.bert ? mb_bert_class_name(mb_bert_get_task(r.bert)) : mb_dbh_class_name(mb_dbh_get_task(r.dbh));
    size_t n = r.bert ? mb_bert_num_params(r.bert) : mb_dbh_num_params(r.dbh);
    lua_pushfstring(L, "%s %s (dim %d, %d layers, %d heads, %f M parameters)", dbh ? DBH_MT : BERT_MT, cls, c->dim,
                    c->n_layers, c->n_heads, (double)n / 1e6);
    return 1;
}

MB_LUA_MODULE(bert) {
    static const luaL_Reg methods[] = {
        {"_forward", m_forward}, {"_loss", m_loss}, {"_features", m_features}, {"backward", m_backward},
        {"parameters", m_parameters}, {"zero_grad", m_zero_grad}, {"num_parameters", m_num_parameters},
        {"freeze_encoder", m_freeze_encoder}, {"encoder_frozen", m_encoder_frozen}, {"save", m_save},
        {"config_json", m_config_json}, {"warnings", m_warnings}, {"task", m_task}, {"model_type", m_model_type},
        {"rng_state", m_rng_state}, {"set_rng_state", m_set_rng_state}, {"seed", m_seed}, {"flops", m_flops},
        {"free", model_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", model_close}, {"__close", model_close}, {"__tostring", m_tostring}, {NULL, NULL}};
    mb_lua_newclass(L, BERT_MT, methods, meta);
    mb_lua_newclass(L, DBH_MT, NULL, meta);
    /* both classes share one methods table, extended by bindings/moonbert/bert.lua */
    luaL_getmetatable(L, DBH_MT);
    luaL_getmetatable(L, BERT_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "__index");
    lua_pop(L, 2);
    static const luaL_Reg fns[] = {{"load", b_load}, {"new", b_new}, {"load_distilbert", b_load_distilbert},
                                   {"new_distilbert", b_new_distilbert}, {NULL, NULL}};
    luaL_newlib(L, fns);
    luaL_getmetatable(L, BERT_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "methods");
    lua_pop(L, 1);
    return 1;
}
