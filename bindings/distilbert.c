/* distilbert.c (bindings): the moonbert.DistilBert userdata and core.distilbert.
 *
 *   core.distilbert.load(dir, num_labels, {id2label names 0-based in a list}, seed) -> model
 *   core.distilbert.new(config_json_text, source_name, seed) -> model
 *   model:forward(batch, {train=, output_hidden_states=, output_attentions=})
 *   model:features(batch), model:loss(batch, labels, {train=}), model:backward(),
 *   model:parameters(), model:parameter_block(), model:zero_grad(), model:num_parameters(),
 *   model:freeze_encoder(bool), model:save(dir), model:config_json(), model:warnings(),
 *   model:rng_state(), model:set_rng_state(s), model:free(),
 *   model:set_precision("fp32"|"bf16") -> nil or the fallback notice (the CPU's products)
 *   model:to("cuda" | "cpu", {precision=, seed=}), model:device(), model:precision()
 *
 * bindings/moonbert/distilbert.lua wraps this for users (mb.distilbert).
 * One model object, two backends: the userdata holds the host model and,
 * after model:to("cuda"), its device half (runtime/cuda.h's mb_cuda_model);
 * every method runs where the parameters live, and what Lua reads back
 * (losses, logits, hidden states, features) is a CPU tensor. Parameter and
 * gradient tensors are views onto the blocks of the device the model is on:
 * host views hold the model, device views hold the device half (a reference
 * count each), so neither dangles after model:to("cpu"), model:free() or
 * garbage collection; the memory goes with the last holder.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/cuda.h"
#include "../runtime/distilbert.h"
#include "luamb.h"

#define MODEL_MT "moonbert.DistilBert"

typedef mb_lua_model model_handle; /* host: mb_distilbert; device half: mb_cuda_model */

static void free_device_half(void *cm) { mb_cuda_model_free(cm); }
static void free_host(void *m) { mb_distilbert_free(m); }

/* The userdata and every host parameter view share the model (luamb.h: mb_lua_shared). */
static void push_model(lua_State *L, mb_distilbert *m) {
    mb_lua_pushmodel(L, MODEL_MT, m, free_host, mb_distilbert_num_params(m) * 2 * sizeof(float));
}

static mb_lua_shared *check_ref(lua_State *L, int arg) { return mb_lua_checkshared(L, arg, MODEL_MT); }
static model_handle *check_handle(lua_State *L, int arg) { return mb_lua_checkmodel(L, arg, MODEL_MT); }
/* The host model (config, parameter table, flags: valid on either device). */
static mb_distilbert *mb_lua_checkdistilbert(lua_State *L, int arg) { return check_handle(L, arg)->host; }
/* The device half, or NULL when the model is on the CPU. */
static mb_cuda_model *device_of(const model_handle *h) { return mb_lua_model_device(h); }

static int model_close(lua_State *L) {
    mb_lua_closeshared(L, 1, MODEL_MT);
    return 0;
}

/* ---- constructors ---------------------------------------------------------------- */

static int db_load(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    int num_labels = (int)luaL_optinteger(L, 2, 0);
    lua_Integer seed = luaL_optinteger(L, 4, 42);
    const char **names = NULL;
    int n_names = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        n_names = (int)lua_rawlen(L, 3);
        if (n_names < 1 || n_names > MB_MAX_LABELS) return luaL_argerror(L, 3, "id2label must list 1..4096 names");
        if (num_labels && num_labels != n_names)
            return luaL_argerror(L, 3, lua_pushfstring(L, "id2label has %d names but num_labels is %d", n_names,
                                                      num_labels));
        names = lua_newuserdatauv(L, sizeof(char *) * (size_t)n_names, 0);
        for (int i = 0; i < n_names; i++) {
            lua_rawgeti(L, 3, i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_argerror(L, 3, lua_pushfstring(L, "id2label entry %d is not a string", i + 1));
            names[i] = lua_tostring(L, -1); /* kept alive by the table */
            lua_pop(L, 1);
        }
        num_labels = n_names;
    }
    mb_distilbert_load_opts o = {num_labels, names, (uint64_t)seed};
    mb_error err;
    mb_distilbert *m = mb_distilbert_load(dir, &o, &err);
    if (!m) return mb_lua_raise(L, &err);
    push_model(L, m);
    return 1;
}

static int db_new(lua_State *L) {
    lua_Integer seed = luaL_optinteger(L, 3, 42);
    mb_distilbert_config cfg;
    mb_lua_checkconfig(L, 1, &cfg);
    mb_error err;
    mb_distilbert *m = mb_distilbert_new(&cfg, (uint64_t)seed, &err);
    mb_config_free(&cfg);
    if (!m) return mb_lua_raise(L, &err);
    push_model(L, m);
    return 1;
}

static const int32_t *mask_ptr(const mb_lua_batch *b) { return b->mask ? mb_tensor_i32(b->mask) : NULL; }

static mb_tensor *new_f32(lua_State *L, int ndim, const int64_t *shape, const float *src) {
    mb_error err;
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, ndim, shape, &err);
    if (!t) mb_lua_raise(L, &err);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (src) memcpy(mb_tensor_f32(t), src, sizeof(float) * (size_t)n);
    return t;
}

/* ---- forward, features, loss, backward ------------------------------------------ */

static int m_forward(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_distilbert *m = h->host;
    mb_cuda_model *cm = device_of(h);
    int train = mb_lua_optfield_bool(L, 3, "train", 0);
    int want_hidden = mb_lua_optfield_bool(L, 3, "output_hidden_states", 0);
    int want_att = mb_lua_optfield_bool(L, 3, "output_attentions", 0);
    mb_lua_batch b;
    mb_lua_checkbatch(L, 2, &b);
    const mb_distilbert_config *c = mb_distilbert_get_config(m);
    int NL = c->n_layers;
    mb_error err;
    lua_newtable(L); /* result */
    int res = lua_gettop(L);
    float *hs_ptr[1025], *att_ptr[1025];
    mb_forward_opts o = {.train = train, .keep = 0};
    if (want_hidden) {
        lua_createtable(L, NL + 1, 0);
        int64_t shape[3] = {b.B, b.T, c->dim};
        for (int l = 0; l <= NL; l++) {
            mb_tensor *t = mb_tensor_empty(MB_FLOAT32, 3, shape, &err);
            if (!t) {
                return mb_lua_raise(L, &err);
            }
            hs_ptr[l] = mb_tensor_f32(t);
            mb_lua_pushtensor(L, t, &err);
            lua_rawseti(L, -2, l + 1);
        }
        lua_setfield(L, res, "hidden_states");
        o.hidden_states = hs_ptr;
    }
    if (want_att) {
        lua_createtable(L, NL, 0);
        int64_t shape[4] = {b.B, c->n_heads, b.T, b.T};
        for (int l = 0; l < NL; l++) {
            mb_tensor *t = mb_tensor_empty(MB_FLOAT32, 4, shape, &err);
            if (!t) {
                return mb_lua_raise(L, &err);
            }
            att_ptr[l] = mb_tensor_f32(t);
            mb_lua_pushtensor(L, t, &err);
            lua_rawseti(L, -2, l + 1);
        }
        lua_setfield(L, res, "attentions");
        o.attentions = att_ptr;
    }
    int B = b.B, T = b.T;
    int64_t ls[2] = {B, c->num_labels}, hs[3] = {B, T, c->dim};
    if (cm) { /* on the device: the outputs are copied into new CPU tensors */
        mb_tensor *logits = new_f32(L, 2, ls, NULL);
        mb_lua_pushtensor(L, logits, NULL);
        lua_setfield(L, res, "logits");
        mb_tensor *last = NULL;
        if (!want_hidden) {
            last = new_f32(L, 3, hs, NULL);
            mb_lua_pushtensor(L, last, NULL);
            lua_setfield(L, res, "last_hidden_state");
        }
        if (mb_cuda_model_forward(cm, mb_tensor_i32(b.ids), mask_ptr(&b), B, T, train, mb_tensor_f32(logits), &err) ||
            mb_cuda_model_outputs(cm, last ? mb_tensor_f32(last) : NULL, NULL, want_hidden ? hs_ptr : NULL,
                                  want_att ? att_ptr : NULL, &err))
            return mb_lua_raise(L, &err);
    } else {
        mb_status rc = mb_distilbert_forward(m, mb_tensor_i32(b.ids), mask_ptr(&b), B, T, &o, &err);
        if (rc != MB_OK) return mb_lua_raise(L, &err);
        mb_lua_pushtensor(L, new_f32(L, 2, ls, mb_distilbert_logits(m)), NULL);
        lua_setfield(L, res, "logits");
        if (!want_hidden) {
            mb_lua_pushtensor(L, new_f32(L, 3, hs, mb_distilbert_last_hidden(m)), NULL);
            lua_setfield(L, res, "last_hidden_state");
        }
    }
    if (want_hidden) {
        lua_getfield(L, res, "hidden_states");
        lua_rawgeti(L, -1, NL + 1);
        lua_setfield(L, res, "last_hidden_state");
        lua_pop(L, 1);
    }
    return 1;
}

static int m_features(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_distilbert *m = h->host;
    mb_cuda_model *cm = device_of(h);
    mb_lua_batch b;
    mb_lua_checkbatch(L, 2, &b);
    int64_t shape[2] = {b.B, mb_distilbert_get_config(m)->dim};
    mb_error err;
    mb_tensor *out = mb_tensor_empty(MB_FLOAT32, 2, shape, &err);
    if (!out) {
        return mb_lua_raise(L, &err);
    }
    mb_status rc = cm ? mb_cuda_model_forward(cm, mb_tensor_i32(b.ids), mask_ptr(&b), b.B, b.T, 0, NULL, &err) ||
                             mb_cuda_model_outputs(cm, NULL, mb_tensor_f32(out), NULL, NULL, &err)
                      : mb_distilbert_features(m, mb_tensor_i32(b.ids), mask_ptr(&b), b.B, b.T, mb_tensor_f32(out), &err);
    if (rc != MB_OK) {
        mb_tensor_free(out);
        return mb_lua_raise(L, &err);
    }
    mb_lua_pushtensor(L, out, &err);
    return 1;
}

static int m_loss(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_distilbert *m = h->host;
    mb_cuda_model *cm = device_of(h);
    const mb_distilbert_config *c = mb_distilbert_get_config(m);
    int train = mb_lua_optfield_bool(L, 4, "train", 0);
    int single = c->problem_type == MB_PROBLEM_SINGLE_LABEL;
    if (lua_isnoneornil(L, 3)) return luaL_argerror(L, 3, "labels expected (int32 tensor [B] or a list of ids)");
    mb_tensor *labels = mb_lua_totensor(L, 3, single ? MB_INT32 : MB_FLOAT32);
    mb_error err;
    mb_tensor *lc = mb_tensor_contiguous(labels, &err);
    mb_tensor_free(labels);
    if (!lc) return mb_lua_argraise(L, 3, &err);
    /* keep lc owned by Lua so that a raised error frees it */
    mb_lua_pushtensor(L, lc, &err);
    mb_lua_batch b;
    mb_lua_checkbatch(L, 2, &b);
    int64_t want = single ? b.B : (int64_t)b.B * c->num_labels;
    if (mb_tensor_numel(lc) != want) {
        int B = b.B;
        return luaL_argerror(L, 3, lua_pushfstring(L, "%d labels expected for a batch of %d, got %d", (int)want, B,
                                                   (int)mb_tensor_numel(lc)));
    }
    int B = b.B;
    double loss;
    int64_t ps[1] = {B}, ls[2] = {B, c->num_labels};
    /* results owned by Lua before anything can fail */
    mb_tensor *per = new_f32(L, 1, ps, NULL);
    mb_lua_pushtensor(L, per, NULL);
    mb_tensor *logits = new_f32(L, 2, ls, NULL);
    mb_lua_pushtensor(L, logits, NULL);
    mb_status rc;
    if (cm) { /* the device model is single-label (model:to checks) */
        rc = mb_cuda_model_forward(cm, mb_tensor_i32(b.ids), mask_ptr(&b), B, b.T, train, mb_tensor_f32(logits), &err) ||
             mb_cuda_model_loss(cm, mb_tensor_i32(lc), B, &loss, mb_tensor_f32(per), &err);
    } else {
        mb_forward_opts o = {.train = train, .keep = 1};
        rc = mb_distilbert_forward(m, mb_tensor_i32(b.ids), mask_ptr(&b), B, b.T, &o, &err) ||
             mb_distilbert_loss(m, single ? mb_tensor_i32(lc) : NULL, single ? NULL : mb_tensor_f32(lc), B, &loss,
                                mb_tensor_f32(per), &err);
        if (rc == MB_OK) memcpy(mb_tensor_f32(logits), mb_distilbert_logits(m), sizeof(float) * (size_t)B * c->num_labels);
    }
    if (rc != MB_OK) return mb_lua_raise(L, &err);
    int top = lua_gettop(L);
    lua_pushnumber(L, loss);
    lua_pushvalue(L, top);     /* logits */
    lua_pushvalue(L, top - 1); /* per-example losses */
    return 3;
}

static int m_backward(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_cuda_model *cm = device_of(h);
    mb_error err;
    if ((cm ? mb_cuda_model_backward(cm, &err) : mb_distilbert_backward(h->host, &err)) != MB_OK)
        return mb_lua_raise(L, &err);
    return 0;
}

/* ---- parameters ------------------------------------------------------------------ */

/* {{name=, value=, grad=, no_decay=, trainable=, encoder=}, ...} in HF order */
/* Views onto the blocks where the parameters live. */
typedef struct blocks {
    mb_lua_shared *owner;
    float *params, *grads;
    mb_device device;
} blocks;

static blocks blocks_of(lua_State *L, int arg) {
    mb_lua_shared *r = check_ref(L, arg);
    model_handle *h = r->obj;
    mb_cuda_model *cm = device_of(h);
    if (cm) return (blocks){h->dev, mb_cuda_model_params(cm), mb_cuda_model_grads(cm), MB_CUDA};
    return (blocks){r, mb_distilbert_params(h->host), mb_distilbert_grads(h->host), MB_CPU};
}

static int m_parameters(lua_State *L) {
    blocks bl = blocks_of(L, 1);
    mb_distilbert *m = mb_lua_checkdistilbert(L, 1);
    int n = mb_distilbert_num_tensors(m);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const mb_param_info *pi = mb_distilbert_param_info(m, i);
        mb_lua_pushparam(L, bl.owner, pi, bl.params + pi->offset, bl.grads + pi->offset, mb_distilbert_trainable(m, i),
                         bl.device);
        lua_pushinteger(L, (lua_Integer)pi->offset);
        lua_setfield(L, -2, "offset");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* The whole blocks as 1-D views: {params=, grads=, size=} */
static int m_parameter_block(lua_State *L) {
    blocks bl = blocks_of(L, 1);
    mb_distilbert *m = mb_lua_checkdistilbert(L, 1);
    int64_t n[1] = {(int64_t)mb_distilbert_num_params(m)};
    lua_createtable(L, 0, 3);
    mb_lua_pushview_on(L, bl.owner, bl.params, 1, n, bl.device);
    lua_setfield(L, -2, "params");
    mb_lua_pushview_on(L, bl.owner, bl.grads, 1, n, bl.device);
    lua_setfield(L, -2, "grads");
    lua_pushinteger(L, n[0]);
    lua_setfield(L, -2, "size");
    return 1;
}

static int m_zero_grad(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_cuda_model *cm = device_of(h);
    mb_error err;
    if (cm && mb_cuda_model_zero_grad(cm, &err) != MB_OK) return mb_lua_raise(L, &err);
    if (!cm) mb_distilbert_zero_grad(h->host);
    return 0;
}

static int m_num_parameters(lua_State *L) {
    mb_distilbert *m = mb_lua_checkdistilbert(L, 1);
    int trainable_only = lua_toboolean(L, 2);
    size_t n = 0;
    for (int i = 0; i < mb_distilbert_num_tensors(m); i++)
        if (!trainable_only || mb_distilbert_trainable(m, i)) n += mb_distilbert_param_info(m, i)->numel;
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int m_freeze_encoder(lua_State *L) {
    mb_distilbert *m = mb_lua_checkdistilbert(L, 1);
    mb_distilbert_freeze_encoder(m, lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2));
    return 0;
}

static int m_encoder_frozen(lua_State *L) {
    lua_pushboolean(L, mb_distilbert_encoder_frozen(mb_lua_checkdistilbert(L, 1)));
    return 1;
}

/* On the device the host block is refreshed first: the same files either way. */
static int m_save(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    mb_cuda_model *cm = device_of(h);
    mb_error err;
    if (cm && mb_cuda_model_download_params(cm, &err) != MB_OK) return mb_lua_raise(L, &err);
    if (mb_distilbert_save(h->host, dir, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static int m_config_json(lua_State *L) {
    mb_distilbert *m = mb_lua_checkdistilbert(L, 1);
    mb_error err;
    char *s = mb_config_to_json(mb_distilbert_get_config(m), "DistilBertForSequenceClassification", &err);
    if (!s) return mb_lua_raise(L, &err);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static int m_warnings(lua_State *L) {
    lua_pushstring(L, mb_distilbert_warnings(mb_lua_checkdistilbert(L, 1)));
    return 1;
}

/* model:set_precision("fp32" | "bf16") -> nil, or the one-line reason bf16 fell back to fp32 */
static int m_set_precision(lua_State *L) {
    mb_distilbert *m = mb_lua_checkdistilbert(L, 1);
    const char *name = luaL_checkstring(L, 2), *notice = NULL;
    mb_error err = {0};
    if (mb_distilbert_set_precision(m, name, &notice, &err) != MB_OK) return luaL_argerror(L, 2, err.msg);
    if (notice) lua_pushstring(L, notice);
    else lua_pushnil(L);
    return 1;
}


/* The dropout generators as one string: the host RNG's bytes, then on the
   device the Philox key and counter offset (16 bytes): a checkpoint resumes
   the masks exactly on the device it was made on. */
static int m_rng_state(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_lua_push_dropout_state(L, mb_distilbert_rng(h->host), device_of(h));
    return 1;
}

static int m_set_rng_state(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_lua_check_dropout_state(L, 2, mb_distilbert_rng(h->host), device_of(h));
    return 0;
}

static int m_seed(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_lua_seed_dropout(mb_distilbert_rng(h->host), device_of(h), (uint64_t)luaL_checkinteger(L, 2));
    return 0;
}

/* ---- devices ------------------------------------------------------------------------ */

/* Leave the device: parameters and gradients back into the host blocks, the
   device half released (freed once no device view holds it). */
static mb_status to_cpu(model_handle *h, mb_error *err) {
    mb_cuda_model *cm = device_of(h);
    if (!cm) return MB_OK;
    if (mb_cuda_model_download_params(cm, err) || mb_cuda_model_download_grads(cm, mb_distilbert_grads(h->host), err))
        return err->code;
    mb_lua_releaseshared(h->dev);
    h->dev = NULL;
    return MB_OK;
}

/* model:to("cuda" | "cpu", {precision=, seed=}) -> model. On the CPU fp32 or
   bf16 products (model:set_precision; distilbert.lua prints the fallback
   notice); on the device fp32, tf32 (default) or bf16. Moving to the device
   with another precision re-creates the device half. */
static int m_to(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    static const char *const devices[] = {"cpu", "cuda", NULL};
    int to_cuda = luaL_checkoption(L, 2, NULL, devices);
    const char *pname = mb_lua_optfield_str(L, 3, "precision", NULL);
    mb_error err;
    if (!to_cuda) { /* the CPU's precision: fp32 or bf16 products (mb_distilbert_set_precision) */
        const char *notice = NULL;
        if (pname && mb_distilbert_set_precision(h->host, pname, &notice, &err) != MB_OK)
            return luaL_argerror(L, 3, err.msg);
        if (to_cpu(h, &err) != MB_OK) return mb_lua_raise(L, &err);
        lua_settop(L, 1);
        return 1;
    }
    int prec = pname ? mb_cuda_precision_parse(pname) : (int)MB_CUDA_DEFAULT_PRECISION;
    if (prec < 0)
        return luaL_argerror(L, 3, lua_pushfstring(L, "precision 'fp32', 'tf32' or 'bf16' expected, got '%s'", pname));
    mb_cuda_model *cm = device_of(h);
    if (cm && (int)mb_cuda_model_precision(cm) == prec) {
        lua_settop(L, 1);
        return 1;
    }
    uint64_t seed = 42, offset = 0;
    if (cm) mb_cuda_model_get_dropout(cm, &seed, &offset);
    seed = (uint64_t)mb_lua_optfield_int(L, 3, "seed", (lua_Integer)seed);
    if (!mb_cuda_available())
        return luaL_error(L, "model:to(\"cuda\"): CUDA is not available: %s", mb_cuda_unavailable_reason());
    if (to_cpu(h, &err) != MB_OK) return mb_lua_raise(L, &err);
    cm = mb_cuda_model_new(h->host, (mb_cuda_precision)prec, seed, &err);
    if (!cm) return mb_lua_raise(L, &err);
    mb_cuda_model_set_dropout(cm, seed, offset);
    /* the host gradients go along (zero after a fresh load) */
    mb_status rc = mb_cuda_memcpy_h2d(mb_cuda_model_grads(cm), mb_distilbert_grads(h->host),
                                      mb_distilbert_num_params(h->host) * sizeof(float), &err);
    if (rc != MB_OK || !(h->dev = mb_lua_newshared(cm, free_device_half))) {
        mb_cuda_model_free(cm);
        if (rc != MB_OK) return mb_lua_raise(L, &err);
        return luaL_error(L, "out of memory");
    }
    lua_settop(L, 1);
    return 1;
}

static int m_device(lua_State *L) {
    lua_pushstring(L, device_of(check_handle(L, 1)) ? "cuda" : "cpu");
    return 1;
}

/* The precision of the products where the model is: the device half's, else the CPU's. */
static int m_precision(lua_State *L) {
    model_handle *h = check_handle(L, 1);
    mb_cuda_model *cm = device_of(h);
    lua_pushstring(L, cm ? mb_cuda_precision_name(mb_cuda_model_precision(cm)) : mb_distilbert_precision(h->host));
    return 1;
}

static int m_flops(lua_State *L) {
    mb_distilbert *m = mb_lua_checkdistilbert(L, 1);
    int B = (int)luaL_checkinteger(L, 2), T = (int)luaL_checkinteger(L, 3);
    lua_pushnumber(L, mb_distilbert_flops(m, B, T, lua_toboolean(L, 4), lua_toboolean(L, 5)));
    return 1;
}

static int m_ptr(lua_State *L) {
    lua_pushlightuserdata(L, mb_lua_checkdistilbert(L, 1));
    return 1;
}

static int m_tostring(lua_State *L) {
    mb_lua_shared *r = mb_lua_shared_or_null(L, 1, MODEL_MT);
    if (!r) {
        lua_pushstring(L, "moonbert.DistilBert (freed)");
        return 1;
    }
    model_handle *h = r->obj;
    mb_distilbert *m = h->host;
    mb_cuda_model *cm = device_of(h);
    const mb_distilbert_config *c = mb_distilbert_get_config(m);
    lua_pushfstring(L, "moonbert.DistilBert (dim %d, %d layers, %d heads, %d labels, %f M parameters%s, %s%s)", c->dim,
                    c->n_layers, c->n_heads, c->num_labels, (double)mb_distilbert_num_params(m) / 1e6,
                    mb_distilbert_encoder_frozen(m) ? ", encoder frozen" : "", cm ? "cuda " : "cpu",
                    cm ? mb_cuda_precision_name(mb_cuda_model_precision(cm)) : "");
    return 1;
}

/* Monotonic wall-clock seconds, for the benchmark. */
static int db_wall_time(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec * 1e-9);
    return 1;
}

MB_LUA_MODULE(distilbert) {
    static const luaL_Reg methods[] = {
        {"forward", m_forward}, {"features", m_features}, {"loss", m_loss}, {"backward", m_backward},
        {"parameters", m_parameters}, {"parameter_block", m_parameter_block}, {"zero_grad", m_zero_grad},
        {"num_parameters", m_num_parameters}, {"freeze_encoder", m_freeze_encoder},
        {"encoder_frozen", m_encoder_frozen}, {"save", m_save}, {"config_json", m_config_json},
        {"warnings", m_warnings}, {"rng_state", m_rng_state}, {"set_rng_state", m_set_rng_state},
        {"seed", m_seed}, {"flops", m_flops}, {"set_precision", m_set_precision}, {"ptr", m_ptr}, {"to", m_to},
        {"device", m_device}, {"precision", m_precision}, {"free", model_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", model_close}, {"__close", model_close}, {"__tostring", m_tostring}, {NULL, NULL}};
    mb_lua_newclass(L, MODEL_MT, methods, meta);
    static const luaL_Reg fns[] = {{"load", db_load}, {"new", db_new}, {"wall_time", db_wall_time}, {NULL, NULL}};
    luaL_newlib(L, fns);
    luaL_getmetatable(L, MODEL_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "methods");
    lua_pop(L, 1);
    return 1;
}
