/* distilbert_mlm.c (bindings): the moonbert.DistilBertMLM userdata and core.distilbert_mlm.
 *
 *   core.distilbert_mlm.load(dir, seed) -> model;  core.distilbert_mlm.new(config_json, source, seed)
 *   model:forward(batch, {positions=, train=}) -> logits [B,T,V], or [n,V] at the 0-based
 *       flat positions b*T+t listed
 *   model:loss(batch, labels [B,T] (-100 = not predicted), {train=, logits=bool})
 *       -> loss, n_masked[, logits [n,V] in row-major order of the predicted positions]
 *   model:backward(), model:parameters(), model:zero_grad(), model:num_parameters(),
 *   model:save(dir), model:config_json(), model:warnings(), model:rng_state(),
 *   model:set_rng_state(s), model:seed(n), model:free(),
 *   model:to("cuda" | "cpu", {precision=, seed=}), model:device(), model:precision()
 *
 * One model object, two backends, as bindings/distilbert.c: after
 * model:to("cuda") the userdata also holds the device half (runtime/cuda.h's
 * mb_cuda_mlm: the encoder's blocks and the head's) and every method runs
 * there; logits and losses come back as CPU tensors, parameter views are
 * device tensors holding the device half (a reference count), so nothing
 * dangles after model:to("cpu"), model:free() or garbage collection.
 *
 * bindings/moonbert/distilbert.lua wraps it as mb.distilbert.load_masked_lm / new_masked_lm.
 * Parameter views keep the model alive (luamb.h: mb_lua_shared), as in
 * bindings/distilbert.c. The tied projector has no entry of its own:
 * distilbert.embeddings.word_embeddings.weight is listed once.
 */
#include <stdlib.h>
#include <string.h>

#include "../runtime/cuda.h"
#include "../runtime/distilbert_mlm.h"
#include "luamb.h"

#define MLM_MT "moonbert.DistilBertMLM"

typedef mb_lua_model mlm_handle; /* host: mb_distilbert_mlm; device half: mb_cuda_mlm */

static void free_device_half(void *c) { mb_cuda_mlm_free(c); }
static void free_host(void *m) { mb_mlm_free(m); }

/* The userdata and every host parameter view share the model (luamb.h: mb_lua_shared). */
static void push_model(lua_State *L, mb_distilbert_mlm *m) {
    mb_lua_pushmodel(L, MLM_MT, m, free_host, mb_mlm_num_params(m) * 2 * sizeof(float));
}

static mb_lua_shared *check_ref(lua_State *L, int arg) { return mb_lua_checkshared(L, arg, MLM_MT); }
static mlm_handle *check_handle(lua_State *L, int arg) { return mb_lua_checkmodel(L, arg, MLM_MT); }
/* The host model (config, parameter table, flags: valid on either device). */
static mb_distilbert_mlm *check_mlm(lua_State *L, int arg) { return check_handle(L, arg)->host; }
/* The device half, or NULL when the model is on the CPU. */
static mb_cuda_mlm *device_of(const mlm_handle *h) { return mb_lua_model_device(h); }

static int model_close(lua_State *L) {
    mb_lua_closeshared(L, 1, MLM_MT);
    return 0;
}

static int mlm_load(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    lua_Integer seed = luaL_optinteger(L, 2, 42);
    mb_error err;
    mb_distilbert_mlm *m = mb_mlm_load(dir, (uint64_t)seed, &err);
    if (!m) return mb_lua_raise(L, &err);
    push_model(L, m);
    return 1;
}

static int mlm_new(lua_State *L) {
    lua_Integer seed = luaL_optinteger(L, 3, 42);
    mb_distilbert_config cfg;
    mb_lua_checkconfig(L, 1, &cfg);
    mb_error err;
    mb_distilbert_mlm *m = mb_mlm_new(&cfg, (uint64_t)seed, &err);
    mb_config_free(&cfg);
    if (!m) return mb_lua_raise(L, &err);
    push_model(L, m);
    return 1;
}

static void push_f32(lua_State *L, int ndim, const int64_t *shape, const float *src) {
    mb_error err;
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, ndim, shape, &err);
    if (!t) mb_lua_raise(L, &err);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    memcpy(mb_tensor_f32(t), src, sizeof(float) * (size_t)n);
    mb_lua_pushtensor(L, t, &err);
}

static int m_forward(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    mb_distilbert_mlm *m = h->host;
    mb_cuda_mlm *c = device_of(h);
    int train = mb_lua_optfield_bool(L, 3, "train", 0);
    mb_lua_batch b;
    mb_lua_checkbatch(L, 2, &b);
    mb_tensor *pos = NULL;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "positions");
        if (!lua_isnil(L, -1)) {
            mb_error e2;
            pos = mb_lua_totensor(L, lua_gettop(L), MB_INT32);
            mb_lua_pushtensor(L, pos, &e2);
        }
    }
    mb_error err;
    int n = pos ? (int)mb_tensor_numel(pos) : 0;
    int V = mb_distilbert_get_config(mb_mlm_encoder(m))->vocab_size;
    int64_t s2[2] = {n, V}, s3[3] = {b.B, b.T, V};
    if (c) { /* on the device: the logits are copied into a new CPU tensor */
        mb_tensor *out = pos ? mb_tensor_empty(MB_FLOAT32, 2, s2, &err) : mb_tensor_empty(MB_FLOAT32, 3, s3, &err);
        if (!out) return mb_lua_raise(L, &err);
        mb_lua_pushtensor(L, out, &err);
        if (mb_cuda_mlm_forward(c, mb_tensor_i32(b.ids), b.mask ? mb_tensor_i32(b.mask) : NULL, b.B, b.T,
                                pos ? mb_tensor_i32(pos) : NULL, n, train, mb_tensor_f32(out), &err) != MB_OK)
            return mb_lua_raise(L, &err);
        return 1;
    }
    if (mb_mlm_forward(m, mb_tensor_i32(b.ids), b.mask ? mb_tensor_i32(b.mask) : NULL, b.B, b.T,
                       pos ? mb_tensor_i32(pos) : NULL, n, train, 0, &err) != MB_OK)
        return mb_lua_raise(L, &err);
    if (pos) push_f32(L, 2, s2, mb_mlm_logits(m));
    else push_f32(L, 3, s3, mb_mlm_logits(m));
    return 1;
}

static int m_loss(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    mb_distilbert_mlm *m = h->host;
    mb_cuda_mlm *c = device_of(h);
    int train = mb_lua_optfield_bool(L, 4, "train", 0);
    int want_logits = mb_lua_optfield_bool(L, 4, "logits", 0);
    mb_lua_batch b;
    mb_lua_checkbatch(L, 2, &b);
    mb_tensor *labels = mb_lua_checkids(L, 3, 3, "labels", 1);
    if (labels->shape[0] != b.B || labels->shape[1] != b.T)
        return luaL_argerror(L, 3, lua_pushfstring(L, "labels must be [%d,%d] like input_ids", b.B, b.T));
    mb_error err;
    double loss;
    int n;
    const int32_t *mask = b.mask ? mb_tensor_i32(b.mask) : NULL;
    int64_t V = mb_distilbert_get_config(mb_mlm_encoder(m))->vocab_size;
    if (c) {
        mb_tensor *out = NULL;
        if (want_logits) { /* room for every label that is not -100 */
            const int32_t *y = mb_tensor_i32(labels);
            int64_t count = 0;
            for (int64_t i = 0; i < (int64_t)b.B * b.T; i++) count += y[i] != -100;
            int64_t shape[2] = {count, V};
            if (!(out = mb_tensor_empty(MB_FLOAT32, 2, shape, &err))) return mb_lua_raise(L, &err);
            mb_lua_pushtensor(L, out, &err);
        }
        if (mb_cuda_mlm_loss(c, mb_tensor_i32(b.ids), mask, mb_tensor_i32(labels), b.B, b.T, train, &loss, &n,
                             out ? mb_tensor_f32(out) : NULL, &err) != MB_OK)
            return mb_lua_raise(L, &err);
        lua_pushnumber(L, loss);
        lua_pushinteger(L, n);
        if (!want_logits) return 2;
        lua_pushvalue(L, -3);
        return 3;
    }
    if (mb_mlm_loss(m, mb_tensor_i32(b.ids), mask, mb_tensor_i32(labels), b.B, b.T, train, &loss, &n, &err) != MB_OK)
        return mb_lua_raise(L, &err);
    lua_pushnumber(L, loss);
    lua_pushinteger(L, n);
    if (!want_logits) return 2;
    int64_t shape[2] = {n, V};
    push_f32(L, 2, shape, mb_mlm_logits(m));
    return 3;
}

static int m_backward(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    mb_cuda_mlm *c = device_of(h);
    mb_error err;
    if ((c ? mb_cuda_mlm_backward(c, &err) : mb_mlm_backward(h->host, &err)) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

/* {{name=, value=, grad=, no_decay=, trainable=, encoder=}, ...}: the encoder's tensors, then the head's */
/* Views onto the blocks where the parameters live: the encoder's block and the head's. */
typedef struct blocks {
    mb_lua_shared *owner;
    float *enc_params, *enc_grads, *head_params, *head_grads;
    mb_device device;
} blocks;

static blocks blocks_of(lua_State *L, int arg) {
    mb_lua_shared *r = check_ref(L, arg);
    mlm_handle *h = r->obj;
    mb_cuda_mlm *c = device_of(h);
    if (c) {
        mb_cuda_model *e = mb_cuda_mlm_encoder(c);
        return (blocks){h->dev, mb_cuda_model_params(e), mb_cuda_model_grads(e), mb_cuda_mlm_head_params(c),
                        mb_cuda_mlm_head_grads(c), MB_CUDA};
    }
    mb_distilbert *enc = mb_mlm_encoder(h->host);
    return (blocks){r, mb_distilbert_params(enc), mb_distilbert_grads(enc), mb_mlm_head_params(h->host),
                    mb_mlm_head_grads(h->host), MB_CPU};
}

static int m_parameters(lua_State *L) {
    blocks bl = blocks_of(L, 1);
    mb_distilbert_mlm *m = check_mlm(L, 1);
    mb_distilbert *enc = mb_mlm_encoder(m);
    int n = mb_mlm_num_tensors(m);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const mb_param_info *pi = mb_mlm_param_info(m, i);
        float *pb = pi->encoder ? bl.enc_params : bl.head_params, *gb = pi->encoder ? bl.enc_grads : bl.head_grads;
        mb_lua_pushparam(L, bl.owner, pi, pb + pi->offset, gb + pi->offset, pi->encoder ? mb_distilbert_trainable(enc, i) : 1,
                         bl.device);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int m_zero_grad(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    mb_cuda_mlm *c = device_of(h);
    mb_error err;
    if (c && mb_cuda_mlm_zero_grad(c, &err) != MB_OK) return mb_lua_raise(L, &err);
    if (!c) mb_mlm_zero_grad(h->host);
    return 0;
}

static int m_num_parameters(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mb_mlm_num_params(check_mlm(L, 1)));
    return 1;
}

/* On the device the host blocks are refreshed first: the same files either way. */
static int m_save(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    mb_cuda_mlm *c = device_of(h);
    mb_error err;
    if (c && mb_cuda_mlm_download_params(c, &err) != MB_OK) return mb_lua_raise(L, &err);
    if (mb_mlm_save(h->host, dir, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static int m_config_json(lua_State *L) {
    mb_distilbert_mlm *m = check_mlm(L, 1);
    mb_error err;
    char *s = mb_config_to_json(mb_distilbert_get_config(mb_mlm_encoder(m)), "DistilBertForMaskedLM", &err);
    if (!s) return mb_lua_raise(L, &err);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static int m_warnings(lua_State *L) {
    lua_pushstring(L, mb_mlm_warnings(check_mlm(L, 1)));
    return 1;
}

/* The dropout generators as one string: the host RNG's bytes, then on the
   device the Philox key and counter offset (16 bytes), as bindings/distilbert.c. */
static int m_rng_state(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    mb_cuda_mlm *c = device_of(h);
    mb_lua_push_dropout_state(L, mb_distilbert_rng(mb_mlm_encoder(h->host)), c ? mb_cuda_mlm_encoder(c) : NULL);
    return 1;
}

static int m_set_rng_state(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    mb_cuda_mlm *c = device_of(h);
    mb_lua_check_dropout_state(L, 2, mb_distilbert_rng(mb_mlm_encoder(h->host)), c ? mb_cuda_mlm_encoder(c) : NULL);
    return 0;
}

static int m_seed(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    mb_cuda_mlm *c = device_of(h);
    mb_lua_seed_dropout(mb_distilbert_rng(mb_mlm_encoder(h->host)), c ? mb_cuda_mlm_encoder(c) : NULL,
                        (uint64_t)luaL_checkinteger(L, 2));
    return 0;
}

/* Leave the device: parameters and gradients back into the host blocks, the
   device half released (freed once no device view holds it). */
static mb_status to_cpu(mlm_handle *h, mb_error *err) {
    mb_cuda_mlm *c = device_of(h);
    if (!c) return MB_OK;
    if (mb_cuda_mlm_download_params(c, err) || mb_cuda_mlm_download_grads(c, err)) return err->code;
    mb_lua_releaseshared(h->dev);
    h->dev = NULL;
    return MB_OK;
}

/* model:to("cuda" | "cpu", {precision=, seed=}) -> model: on the device fp32,
   tf32 (default) or bf16; the CPU's masked-LM model is fp32 only. Moving to
   the device with another precision re-creates the device half. */
static int m_to(lua_State *L) {
    mlm_handle *h = check_handle(L, 1);
    static const char *const devices[] = {"cpu", "cuda", NULL};
    int to_cuda = luaL_checkoption(L, 2, NULL, devices);
    const char *pname = mb_lua_optfield_str(L, 3, "precision", NULL);
    mb_error err;
    if (!to_cuda) {
        if (pname && strcmp(pname, "fp32") != 0)
            return luaL_argerror(L, 3,
                                 lua_pushfstring(L, "precision '%s' is not available on the CPU (fp32 only)", pname));
        if (to_cpu(h, &err) != MB_OK) return mb_lua_raise(L, &err);
        lua_settop(L, 1);
        return 1;
    }
    int prec = pname ? mb_cuda_precision_parse(pname) : (int)MB_CUDA_DEFAULT_PRECISION;
    if (prec < 0)
        return luaL_argerror(L, 3, lua_pushfstring(L, "precision 'fp32', 'tf32' or 'bf16' expected, got '%s'", pname));
    mb_cuda_mlm *c = device_of(h);
    if (c && (int)mb_cuda_model_precision(mb_cuda_mlm_encoder(c)) == prec) {
        lua_settop(L, 1);
        return 1;
    }
    uint64_t seed = 42, offset = 0;
    if (c) mb_cuda_model_get_dropout(mb_cuda_mlm_encoder(c), &seed, &offset);
    seed = (uint64_t)mb_lua_optfield_int(L, 3, "seed", (lua_Integer)seed);
    if (!mb_cuda_available())
        return luaL_error(L, "model:to(\"cuda\"): CUDA is not available: %s", mb_cuda_unavailable_reason());
    if (to_cpu(h, &err) != MB_OK) return mb_lua_raise(L, &err);
    c = mb_cuda_mlm_new(h->host, (mb_cuda_precision)prec, seed, &err); /* uploads gradients too */
    if (!c) return mb_lua_raise(L, &err);
    mb_cuda_model_set_dropout(mb_cuda_mlm_encoder(c), seed, offset);
    if (!(h->dev = mb_lua_newshared(c, free_device_half))) {
        mb_cuda_mlm_free(c);
        return luaL_error(L, "out of memory");
    }
    lua_settop(L, 1);
    return 1;
}

static int m_device(lua_State *L) {
    lua_pushstring(L, device_of(check_handle(L, 1)) ? "cuda" : "cpu");
    return 1;
}

static int m_precision(lua_State *L) {
    mb_cuda_mlm *c = device_of(check_handle(L, 1));
    lua_pushstring(L, c ? mb_cuda_precision_name(mb_cuda_model_precision(mb_cuda_mlm_encoder(c))) : "fp32");
    return 1;
}

static int m_tostring(lua_State *L) {
    mb_lua_shared *r = mb_lua_shared_or_null(L, 1, MLM_MT);
    if (!r) {
        lua_pushstring(L, "moonbert.DistilBertMLM (freed)");
        return 1;
    }
    mlm_handle *h = r->obj;
    mb_distilbert_mlm *m = h->host;
    mb_cuda_mlm *dev = device_of(h);
    const mb_distilbert_config *c = mb_distilbert_get_config(mb_mlm_encoder(m));
    lua_pushfstring(L, "moonbert.DistilBertMLM (dim %d, %d layers, %d heads, vocab %d, %f M parameters, %s%s)", c->dim,
                    c->n_layers, c->n_heads, c->vocab_size, (double)mb_mlm_num_params(m) / 1e6, dev ? "cuda " : "cpu",
                    dev ? mb_cuda_precision_name(mb_cuda_model_precision(mb_cuda_mlm_encoder(dev))) : "");
    return 1;
}

/* ---- the masking collator's kernel ---------------------------------------------------------- */

/* core.distilbert_mlm.rng_seed(seed) -> state string (an mb_rng, byte for byte) */
static int mlm_rng_seed(lua_State *L) {
    mb_rng rng;
    mb_rng_seed(&rng, (uint64_t)luaL_checkinteger(L, 1));
    lua_pushlstring(L, (const char *)&rng, sizeof rng);
    return 1;
}

/* core.distilbert_mlm.mask_tokens(ids [B,T], attention_mask [B,T] or nil, special_ids {..},
 *   mask_id, vocab_size, mlm_probability, rng_state) -> input_ids, labels, n_masked, rng_state
 * As transformers' DataCollatorForLanguageModeling: every token that is not padding
 * (attention_mask 0) and not special is chosen with probability p; chosen tokens become
 * [MASK] with probability 0.8, a uniform random id with 0.1 (as torch.randint(vocab)),
 * else stay; labels hold the original id at chosen positions and -100 elsewhere. */
static int mlm_mask_tokens(lua_State *L) {
    mb_tensor *ids = mb_lua_checkids(L, 1, 1, "input_ids", 1);
    mb_tensor *mask = mb_lua_checkids(L, 2, 2, "attention_mask", 0);
    luaL_checktype(L, 3, LUA_TTABLE);
    int mask_id = (int)luaL_checkinteger(L, 4);
    lua_Integer V = luaL_checkinteger(L, 5);
    double p = luaL_checknumber(L, 6);
    size_t len;
    const char *state = luaL_checklstring(L, 7, &len);
    mb_rng rng;
    if (len != sizeof rng) return luaL_argerror(L, 7, "RNG state from rng_seed expected");
    if (V < 1) return luaL_argerror(L, 5, "vocab_size must be positive");
    if (!(p >= 0.0 && p <= 1.0)) return luaL_argerror(L, 6, "mlm_probability must be in [0, 1]");
    if (mask && (mask->shape[0] != ids->shape[0] || mask->shape[1] != ids->shape[1]))
        return luaL_argerror(L, 2, "attention_mask and input_ids differ in shape");
    memcpy(&rng, state, sizeof rng);
    int n_special = (int)lua_rawlen(L, 3);
    int32_t special[64];
    if (n_special > 64) return luaL_argerror(L, 3, "at most 64 special ids");
    for (int i = 0; i < n_special; i++) {
        lua_rawgeti(L, 3, i + 1);
        special[i] = (int32_t)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    mb_error err;
    mb_tensor *out = mb_tensor_clone(ids, &err);
    mb_lua_pushtensor(L, out, &err);
    mb_tensor *labels = mb_tensor_full(MB_INT32, 2, ids->shape, -100, &err);
    mb_lua_pushtensor(L, labels, &err);
    int32_t *x = mb_tensor_i32(out), *y = mb_tensor_i32(labels);
    const int32_t *am = mask ? mb_tensor_i32(mask) : NULL;
    int64_t n = mb_tensor_numel(ids), n_masked = 0;
    for (int64_t i = 0; i < n; i++) {
        if (am && am[i] == 0) continue;
        int is_special = 0;
        for (int k = 0; k < n_special; k++) is_special |= x[i] == special[k];
        if (is_special) continue;
        if (mb_rng_uniform(&rng) >= p) continue;
        y[i] = x[i];
        n_masked++;
        double u = mb_rng_uniform(&rng);
        if (u < 0.8) x[i] = mask_id;
        else if (u < 0.9) x[i] = (int32_t)mb_rng_below(&rng, (uint64_t)V);
    }
    lua_pushinteger(L, (lua_Integer)n_masked);
    lua_pushlstring(L, (const char *)&rng, sizeof rng);
    return 4;
}

MB_LUA_MODULE(distilbert_mlm) {
    static const luaL_Reg methods[] = {
        {"forward", m_forward}, {"loss", m_loss}, {"backward", m_backward}, {"parameters", m_parameters},
        {"zero_grad", m_zero_grad}, {"num_parameters", m_num_parameters}, {"save", m_save},
        {"config_json", m_config_json}, {"warnings", m_warnings}, {"rng_state", m_rng_state},
        {"set_rng_state", m_set_rng_state}, {"seed", m_seed}, {"to", m_to}, {"device", m_device},
        {"precision", m_precision},
        {"free", model_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", model_close}, {"__close", model_close}, {"__tostring", m_tostring}, {NULL, NULL}};
    mb_lua_newclass(L, MLM_MT, methods, meta);
    static const luaL_Reg fns[] = {{"load", mlm_load}, {"new", mlm_new}, {"rng_seed", mlm_rng_seed},
                                     {"mask_tokens", mlm_mask_tokens}, {NULL, NULL}};
    luaL_newlib(L, fns);
    luaL_getmetatable(L, MLM_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "methods");
    lua_pop(L, 1);
    return 1;
}
