/* cuda.c (bindings): core.cuda, the CUDA backend seen from Lua (runtime/cuda.h).
 *
 *   core.cuda.available() -> bool          core.cuda.unavailable_reason() -> string ("" when available)
 *   core.cuda.built() -> bool              core.cuda.device_name() -> name | nil, message
 *   core.cuda.memory() -> {free=, total=, allocated=, peak=} | nil, message
 *   core.cuda.reset_peak()
 *   core.cuda.model(distilbert_model, precision, dropout_seed) -> moonbert.CudaModel
 *   cm:forward(batch, {train=}) -> logits (CPU tensor [B,L])
 *   cm:loss(batch, labels, {train=}) -> loss, logits     cm:backward()   cm:zero_grad()
 *   cm:step({lr=, betas=, eps=, weight_decay=, max_grad_norm=}) -> grad_norm (before clipping)
 *   cm:train_step(batch, labels, opt) -> loss, grad_norm (zero_grad, forward, loss, backward, step)
 *   cm:download() (device params -> the host model)   cm:upload()   cm:grads() -> CPU tensor [num_params]
 *   cm:precision(), cm:bytes(), cm:steps(), cm:free()
 *
 * Also t:to("cuda") / t:to("cpu") / t:cpu() for tensors (mb_lua_tensor_to_device,
 * called from bindings/tensor.c): a device tensor is a storage whose data is
 * device memory (mb_storage.device = MB_CUDA), freed with cudaFree when its
 * last view goes. CPU operations refuse such tensors (bindings/tensor.c).
 * bindings/moonbert/cuda.lua wraps this as mb.cuda (and model:to("cuda")).
 */
#include <stdlib.h>
#include <string.h>

#include "../runtime/cuda.h"
#include "luamb.h"

#define CUDA_MODEL_MT "moonbert.CudaModel"

mb_distilbert *mb_lua_checkdistilbert(lua_State *L, int arg);            /* bindings/distilbert.c */
mb_tensor *mb_lua_checktensor_anydevice(lua_State *L, int arg);          /* bindings/tensor.c */
int mb_lua_tensor_to_device(lua_State *L, int arg, const char *device);  /* used by bindings/tensor.c */

/* ---- device queries ----------------------------------------------------------------- */

static int c_available(lua_State *L) {
    lua_pushboolean(L, mb_cuda_available());
    return 1;
}

static int c_unavailable_reason(lua_State *L) {
    lua_pushstring(L, mb_cuda_unavailable_reason());
    return 1;
}

static int c_built(lua_State *L) {
    lua_pushboolean(L, mb_cuda_built());
    return 1;
}

static int c_device_name(lua_State *L) {
    char name[256];
    mb_error err;
    if (mb_cuda_device_name(name, sizeof name, &err) != MB_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    lua_pushstring(L, name);
    return 1;
}

static void setnum(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static int c_memory(lua_State *L) {
    size_t f, t;
    mb_error err;
    if (mb_cuda_memory(&f, &t, &err) != MB_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    lua_createtable(L, 0, 4);
    setnum(L, "free", (double)f);
    setnum(L, "total", (double)t);
    setnum(L, "allocated", (double)mb_cuda_allocated_bytes());
    setnum(L, "peak", (double)mb_cuda_peak_bytes());
    return 1;
}

static int c_reset_peak(lua_State *L) {
    mb_cuda_reset_peak();
    return 0;
}

/* ---- tensors across devices ----------------------------------------------------------- */

static void release_device(void *data, size_t nbytes, void *ctx) { mb_cuda_free(data); }

int mb_lua_tensor_to_device(lua_State *L, int arg, const char *device) {
    mb_tensor *t = mb_lua_checktensor_anydevice(L, arg);
    int to_cuda = strcmp(device, "cuda") == 0;
    if (!to_cuda && strcmp(device, "cpu") != 0)
        return luaL_argerror(L, arg + 1, lua_pushfstring(L, "device 'cpu' or 'cuda' expected, got '%s'", device));
    int on_cuda = t->storage->device == MB_CUDA;
    mb_error err;
    if (to_cuda == on_cuda) { /* already there: the same tensor, as torch does */
        lua_pushvalue(L, arg);
        return 1;
    }
    if (to_cuda) {
        if (!mb_cuda_available())
            return luaL_error(L, "t:to(\"cuda\"): CUDA is not available: %s", mb_cuda_unavailable_reason());
        mb_tensor *c = mb_tensor_contiguous(t, &err); /* packed on the host first */
        if (!c) return mb_lua_raise(L, &err);
        size_t nbytes = mb_tensor_nbytes(c);
        size_t used = (size_t)mb_tensor_numel(c) * mb_dtype_size(c->dtype);
        void *d = mb_cuda_malloc(used, &err);
        if (!d || mb_cuda_memcpy_h2d(d, (char *)c->storage->data + c->offset * mb_dtype_size(c->dtype), used, &err)) {
            mb_cuda_free(d);
            mb_tensor_free(c);
            return mb_lua_raise(L, &err);
        }
        (void)nbytes;
        mb_tensor *dt = mb_tensor_wrap(c->dtype, c->ndim, c->shape, d, release_device, NULL, &err);
        mb_tensor_free(c);
        if (!dt) {
            mb_cuda_free(d);
            return mb_lua_raise(L, &err);
        }
        dt->storage->device = MB_CUDA;
        mb_lua_pushtensor(L, dt, &err);
        return 1;
    }
    /* cuda -> cpu: device tensors are made contiguous, so one copy suffices. */
    if (!mb_tensor_is_contiguous(t))
        return luaL_error(L, "t:cpu(): a non-contiguous device tensor cannot be copied (not supported)");
    mb_tensor *h = mb_tensor_empty(t->dtype, t->ndim, t->shape, &err);
    if (!h) return mb_lua_raise(L, &err);
    size_t es = mb_dtype_size(t->dtype);
    if (mb_cuda_memcpy_d2h(h->storage->data, (char *)t->storage->data + t->offset * es,
                           (size_t)mb_tensor_numel(t) * es, &err) != MB_OK) {
        mb_tensor_free(h);
        return mb_lua_raise(L, &err);
    }
    mb_lua_pushtensor(L, h, &err);
    return 1;
}

/* ---- the device model ------------------------------------------------------------------ */

typedef struct cuda_model_box {
    mb_cuda_model *cm; /* NULL once freed */
    mb_distilbert *host;
} cuda_model_box;

static cuda_model_box *check_cm(lua_State *L, int arg) {
    cuda_model_box *b = luaL_checkudata(L, arg, CUDA_MODEL_MT);
    if (!b->cm) luaL_argerror(L, arg, "CUDA model is freed");
    return b;
}

static int cm_close(lua_State *L) {
    cuda_model_box *b = luaL_checkudata(L, 1, CUDA_MODEL_MT);
    if (b->cm) {
        mb_cuda_model_free(b->cm);
        b->cm = NULL;
    }
    return 0;
}

/* core.cuda.model(model, precision, seed): the model's blocks on the device.
   The Lua model is kept as the user value, so the host model outlives it. */
static int c_model(lua_State *L) {
    mb_distilbert *m = mb_lua_checkdistilbert(L, 1);
    const char *pname = luaL_optstring(L, 2, mb_cuda_precision_name(MB_CUDA_DEFAULT_PRECISION));
    int prec = mb_cuda_precision_parse(pname);
    if (prec < 0) return luaL_argerror(L, 2, lua_pushfstring(L, "precision 'fp32', 'tf32' or 'bf16' expected, got '%s'", pname));
    uint64_t seed = (uint64_t)luaL_optinteger(L, 3, 42);
    cuda_model_box *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->cm = NULL;
    b->host = m;
    luaL_setmetatable(L, CUDA_MODEL_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    mb_error err;
    b->cm = mb_cuda_model_new(m, (mb_cuda_precision)prec, seed, &err);
    if (!b->cm) return mb_lua_raise(L, &err);
    return 1;
}

/* A contiguous int32 tensor from a tensor or nested table at idx, pushed (Lua owns it). */
static mb_tensor *push_i32(lua_State *L, int idx, int arg, const char *what) {
    mb_error err;
    mb_tensor *t = mb_lua_totensor(L, idx, MB_INT32);
    mb_tensor *c = mb_tensor_contiguous(t, &err);
    mb_tensor_free(t);
    mb_lua_pushtensor(L, c, &err);
    if (c->ndim == 1 && strcmp(what, "labels") != 0) {
        int64_t shape[2] = {1, c->shape[0]};
        mb_tensor *r = mb_tensor_reshape(c, 2, shape, &err);
        mb_lua_pushtensor(L, r, &err);
        lua_remove(L, -2);
        c = r;
    }
    return c;
}

typedef struct dbatch {
    mb_tensor *ids, *mask;
    int B, T;
} dbatch;

static void get_batch(lua_State *L, int arg, dbatch *b) {
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_getfield(L, arg, "input_ids");
    if (lua_isnil(L, -1)) luaL_argerror(L, arg, "batch.input_ids is missing");
    b->ids = push_i32(L, lua_gettop(L), arg, "input_ids");
    lua_remove(L, -2);
    if (b->ids->ndim != 2) luaL_argerror(L, arg, "batch.input_ids must be 2-D [B,T]");
    b->B = (int)b->ids->shape[0];
    b->T = (int)b->ids->shape[1];
    b->mask = NULL;
    lua_getfield(L, arg, "attention_mask");
    if (!lua_isnil(L, -1)) {
        b->mask = push_i32(L, lua_gettop(L), arg, "attention_mask");
        lua_remove(L, -2);
        if (b->mask->ndim != 2 || b->mask->shape[0] != b->B || b->mask->shape[1] != b->T)
            luaL_argerror(L, arg, "batch.attention_mask must have the shape of batch.input_ids");
    } else {
        lua_pop(L, 1);
    }
}

static mb_tensor *push_logits(lua_State *L, mb_cuda_model *cm, int B, int labels) {
    int64_t shape[2] = {B, labels};
    mb_error err;
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, 2, shape, &err);
    mb_lua_pushtensor(L, t, &err);
    return t;
}

static int num_labels(cuda_model_box *b) { return mb_distilbert_get_config(b->host)->num_labels; }

static int cm_forward(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    int train = mb_lua_optfield_bool(L, 3, "train", 0);
    dbatch bt;
    get_batch(L, 2, &bt);
    mb_tensor *logits = push_logits(L, b->cm, bt.B, num_labels(b));
    mb_error err;
    if (mb_cuda_model_forward(b->cm, mb_tensor_i32(bt.ids), bt.mask ? mb_tensor_i32(bt.mask) : NULL, bt.B, bt.T, train,
                              mb_tensor_f32(logits), &err) != MB_OK)
        return mb_lua_raise(L, &err);
    return 1;
}

/* forward + loss on the device; pushes loss and logits (nil when want_logits
   is 0: a training step reads back the losses only). */
static int do_loss(lua_State *L, cuda_model_box *b, int train, int want_logits) {
    dbatch bt;
    get_batch(L, 2, &bt);
    if (lua_isnoneornil(L, 3)) return luaL_argerror(L, 3, "labels expected (int32 tensor [B] or a list of ids)");
    mb_tensor *labels = push_i32(L, 3, 3, "labels");
    if (mb_tensor_numel(labels) != bt.B)
        return luaL_argerror(L, 3, lua_pushfstring(L, "%d labels expected for a batch of %d, got %d", bt.B, bt.B,
                                                   (int)mb_tensor_numel(labels)));
    mb_tensor *logits = NULL;
    if (want_logits) logits = push_logits(L, b->cm, bt.B, num_labels(b));
    else lua_pushnil(L);
    mb_error err;
    double loss;
    if (mb_cuda_model_forward(b->cm, mb_tensor_i32(bt.ids), bt.mask ? mb_tensor_i32(bt.mask) : NULL, bt.B, bt.T, train,
                              logits ? mb_tensor_f32(logits) : NULL, &err) != MB_OK ||
        mb_cuda_model_loss(b->cm, mb_tensor_i32(labels), bt.B, &loss, NULL, &err) != MB_OK)
        return mb_lua_raise(L, &err);
    lua_pushnumber(L, loss);
    lua_insert(L, -2);
    return 2;
}

static int cm_loss(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    return do_loss(L, b, mb_lua_optfield_bool(L, 4, "train", 0), 1);
}

static int cm_backward(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    mb_error err;
    if (mb_cuda_model_backward(b->cm, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static int cm_zero_grad(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    mb_error err;
    if (mb_cuda_model_zero_grad(b->cm, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static void get_adamw(lua_State *L, int arg, mb_cuda_adamw *o) {
    if (!lua_isnoneornil(L, arg)) luaL_checktype(L, arg, LUA_TTABLE);
    o->lr = (float)mb_lua_optfield_num(L, arg, "lr", 5e-5);
    o->eps = (float)mb_lua_optfield_num(L, arg, "eps", 1e-8);
    o->weight_decay = (float)mb_lua_optfield_num(L, arg, "weight_decay", 0.01);
    o->max_grad_norm = (float)mb_lua_optfield_num(L, arg, "max_grad_norm", 1.0);
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    if (lua_istable(L, arg)) {
        lua_getfield(L, arg, "betas");
        if (lua_istable(L, -1)) {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            o->beta1 = (float)luaL_optnumber(L, -2, 0.9);
            o->beta2 = (float)luaL_optnumber(L, -1, 0.999);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    if (!(o->lr >= 0) || !(o->eps > 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        luaL_argerror(L, arg, "AdamW options: lr >= 0, eps > 0 and betas in [0, 1) expected");
}

static int cm_step(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    mb_cuda_adamw o;
    get_adamw(L, 2, &o);
    double gn;
    mb_error err;
    if (mb_cuda_model_step(b->cm, &o, &gn, &err) != MB_OK) return mb_lua_raise(L, &err);
    lua_pushnumber(L, gn);
    return 1;
}

/* train_step(batch, labels, opt): one whole step; only the batch goes in and
   the loss and gradient norm come out. */
static int cm_train_step(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    mb_cuda_adamw o;
    get_adamw(L, 4, &o);
    mb_error err;
    if (mb_cuda_model_zero_grad(b->cm, &err) != MB_OK) return mb_lua_raise(L, &err);
    lua_settop(L, 3);
    int train = 1;
    do_loss(L, b, train, 0);
    double loss = lua_tonumber(L, -2), gn;
    if (mb_cuda_model_backward(b->cm, &err) != MB_OK || mb_cuda_model_step(b->cm, &o, &gn, &err) != MB_OK)
        return mb_lua_raise(L, &err);
    lua_pushnumber(L, loss);
    lua_pushnumber(L, gn);
    return 2;
}

static int cm_download(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    mb_error err;
    if (mb_cuda_model_download_params(b->cm, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static int cm_upload(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    mb_error err;
    if (mb_cuda_model_upload_params(b->cm, &err) != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

static int cm_grads(lua_State *L) {
    cuda_model_box *b = check_cm(L, 1);
    int64_t n = (int64_t)mb_distilbert_num_params(b->host);
    mb_error err;
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, 1, &n, &err);
    mb_lua_pushtensor(L, t, &err);
    if (mb_cuda_model_download_grads(b->cm, mb_tensor_f32(t), &err) != MB_OK) return mb_lua_raise(L, &err);
    return 1;
}

static int cm_precision(lua_State *L) {
    lua_pushstring(L, mb_cuda_precision_name(mb_cuda_model_precision(check_cm(L, 1)->cm)));
    return 1;
}

static int cm_bytes(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mb_cuda_model_bytes(check_cm(L, 1)->cm));
    return 1;
}

static int cm_steps(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mb_cuda_model_steps(check_cm(L, 1)->cm));
    return 1;
}

static int cm_tostring(lua_State *L) {
    cuda_model_box *b = luaL_checkudata(L, 1, CUDA_MODEL_MT);
    if (!b->cm) lua_pushstring(L, "moonbert.CudaModel (freed)");
    else
        lua_pushfstring(L, "moonbert.CudaModel (%s, %f MB on the device, %d steps)",
                        mb_cuda_precision_name(mb_cuda_model_precision(b->cm)), mb_cuda_model_bytes(b->cm) / 1e6,
                        (int)mb_cuda_model_steps(b->cm));
    return 1;
}

MB_LUA_MODULE(cuda) {
    static const luaL_Reg methods[] = {
        {"forward", cm_forward}, {"loss", cm_loss}, {"backward", cm_backward}, {"zero_grad", cm_zero_grad},
        {"step", cm_step}, {"train_step", cm_train_step}, {"download", cm_download}, {"upload", cm_upload},
        {"grads", cm_grads}, {"precision", cm_precision}, {"bytes", cm_bytes}, {"steps", cm_steps},
        {"free", cm_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", cm_close}, {"__close", cm_close}, {"__tostring", cm_tostring}, {NULL, NULL}};
    mb_lua_newclass(L, CUDA_MODEL_MT, methods, meta);
    static const luaL_Reg fns[] = {{"available", c_available}, {"unavailable_reason", c_unavailable_reason},
                                   {"built", c_built}, {"device_name", c_device_name}, {"memory", c_memory},
                                   {"reset_peak", c_reset_peak}, {"model", c_model}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
