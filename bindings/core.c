/* core.c: the Lua C module moonbert.core and the glue every binding shares.
 *
 * require "moonbert.core" returns a table with one field per binding module
 * (core.tensor, core.tokenizer, ...), collected at build time from the
 * MB_LUA_MODULE(name) lines in bindings/ (see the Makefile: build/gen/modules.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "luamb.h"
#include "../runtime/config.h"
#include "../runtime/cuda.h"
#include "../runtime/parallel.h"
#include "../runtime/rng.h"

#define MB_MODULE(name) int mb_luaopen_##name(lua_State *L);
#include "modules.h"
#undef MB_MODULE

int mb_lua_raise(lua_State *L, const mb_error *err) {
    return luaL_error(L, "%s", err && err->msg[0] ? err->msg : "unknown moonbert error");
}

int mb_lua_argraise(lua_State *L, int arg, const mb_error *err) {
    return luaL_argerror(L, arg, err && err->msg[0] ? err->msg : "invalid value");
}

/* ---- tensors ------------------------------------------------------------------------ */

void mb_lua_pushtensor(lua_State *L, mb_tensor *t, const mb_error *err) {
    if (!t) {
        mb_lua_raise(L, err);
        return;
    }
    mb_lua_tensor_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->t = t;
    /* the class is registered by core.tensor, opened with moonbert.core before any call */
    luaL_setmetatable(L, MB_TENSOR_MT);
    /* Only a storage this tensor alone holds counts: views of an existing
       tensor add no memory. */
    if (t->storage->refcount == 1) {
        size_t kb = t->storage->nbytes / 1024;
        if (kb > 0) lua_gc(L, LUA_GCSTEP, (int)(kb > INT32_MAX ? INT32_MAX : kb));
    }
}

/* Tensors whose storage is on a device (t:to("cuda")) hold device memory:
   every CPU operation refuses them here, before anything reads the data. */
static mb_tensor *on_cpu(lua_State *L, int arg, mb_tensor *t) {
    if (t && t->storage->device != MB_CPU)
        luaL_argerror(L, arg, "tensor is on cuda: CPU operations need a CPU tensor (use t:cpu())");
    return t;
}

mb_tensor *mb_lua_testtensor(lua_State *L, int arg) {
    mb_lua_tensor_box *b = luaL_testudata(L, arg, MB_TENSOR_MT);
    return b ? on_cpu(L, arg, b->t) : NULL;
}

/* Any live tensor, on any device (metadata and device transfers only). */
mb_tensor *mb_lua_testtensor_anydevice(lua_State *L, int arg) {
    mb_lua_tensor_box *b = luaL_testudata(L, arg, MB_TENSOR_MT);
    return b ? b->t : NULL;
}

mb_tensor *mb_lua_checktensor_anydevice(lua_State *L, int arg) {
    mb_lua_tensor_box *b = luaL_checkudata(L, arg, MB_TENSOR_MT);
    if (!b->t) luaL_argerror(L, arg, "tensor is freed");
    return b->t;
}

mb_tensor *mb_lua_checktensor(lua_State *L, int arg) {
    return on_cpu(L, arg, mb_lua_checktensor_anydevice(L, arg));
}

mb_tensor *mb_lua_checktensor_as(lua_State *L, int arg, mb_dtype dtype, int ndim) {
    mb_tensor *t = mb_lua_checktensor(L, arg);
    if (t->dtype != dtype)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s tensor expected, got %s", mb_dtype_name(dtype),
                                              mb_dtype_name(t->dtype)));
    if (ndim >= 0 && t->ndim != ndim) {
        char b[96];
        luaL_argerror(L, arg, lua_pushfstring(L, "%d-D tensor expected, got shape %s", ndim,
                                              mb_shape_str(t->ndim, t->shape, b, sizeof b)));
    }
    return t;
}

/* Walk a nested table: shape from the first elements. */
static int table_shape(lua_State *L, int idx, int64_t *shape, int arg) {
    int ndim = 0;
    lua_pushvalue(L, idx);
    while (lua_type(L, -1) == LUA_TTABLE) {
        if (ndim == MB_MAX_DIMS) luaL_argerror(L, arg, "nested table is deeper than 4 levels");
        shape[ndim++] = (int64_t)lua_rawlen(L, -1);
        if (lua_rawlen(L, -1) == 0) break;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    return ndim;
}

/* Fill dst from the nested table at the top of the stack (depth d). */
static void table_fill(lua_State *L, int arg, int d, int ndim, const int64_t *shape, mb_dtype dtype, void *dst,
                       int64_t *pos, int64_t *path) {
    int64_t n = (int64_t)lua_rawlen(L, -1);
    char where[128];
    size_t wl = 0;
    where[0] = '\0';
    for (int i = 0; i < d; i++) wl += (size_t)snprintf(where + wl, sizeof where - wl, "[%lld]", (long long)path[i]);
    if (n != shape[d])
        luaL_argerror(L, arg, lua_pushfstring(L, "ragged nested table: %s has %I elements, expected %I",
                                              d ? where : "the table", (lua_Integer)n, (lua_Integer)shape[d]));
    for (int64_t i = 1; i <= n; i++) {
        path[d] = i;
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (d + 1 < ndim) {
            if (lua_type(L, -1) != LUA_TTABLE) {
                snprintf(where + wl, sizeof where - wl, "[%lld]", (long long)i);
                luaL_argerror(L, arg, lua_pushfstring(L, "expected a table at %s, got %s", where, luaL_typename(L, -1)));
            }
            table_fill(L, arg, d + 1, ndim, shape, dtype, dst, pos, path);
        } else {
            int ok;
            lua_Number v = lua_tonumberx(L, -1, &ok);
            if (!ok || lua_type(L, -1) != LUA_TNUMBER) {
                snprintf(where + wl, sizeof where - wl, "[%lld]", (long long)i);
                luaL_argerror(L, arg, lua_pushfstring(L, "expected a number at %s, got %s", where, luaL_typename(L, -1)));
            }
            if (dtype == MB_INT32) {
                if (v != floor(v) || v < -2147483648.0 || v > 2147483647.0) {
                    snprintf(where + wl, sizeof where - wl, "[%lld]", (long long)i);
                    luaL_argerror(L, arg, lua_pushfstring(L, "int32 tensor cannot hold %f at %s", v, where));
                }
                ((int32_t *)dst)[(*pos)++] = (int32_t)v;
            } else {
                ((float *)dst)[(*pos)++] = (float)v;
            }
        }
        lua_pop(L, 1);
    }
}

mb_tensor *mb_lua_totensor(lua_State *L, int arg, mb_dtype dtype) {
    mb_error err;
    mb_tensor *src = mb_lua_testtensor(L, arg);
    if (src) {
        mb_tensor *t = mb_tensor_to_dtype(src, dtype, &err);
        if (!t) mb_lua_argraise(L, arg, &err);
        return t;
    }
    if (luaL_testudata(L, arg, MB_TENSOR_MT)) luaL_argerror(L, arg, "tensor is freed");
    if (lua_type(L, arg) == LUA_TNUMBER) {
        mb_tensor *t = mb_tensor_full(dtype, 0, NULL, lua_tonumber(L, arg), &err);
        if (!t) mb_lua_argraise(L, arg, &err);
        return t;
    }
    if (lua_type(L, arg) != LUA_TTABLE)
        luaL_argerror(L, arg, lua_pushfstring(L, "table or moonbert.Tensor expected, got %s", luaL_typename(L, arg)));
    arg = lua_absindex(L, arg);
    int64_t shape[MB_MAX_DIMS];
    int ndim = table_shape(L, arg, shape, arg);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    /* Fill a scratch buffer owned by Lua (freed by the collector if a check
       raises half-way), then copy it into the tensor. */
    void *scratch = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * 4, 0);
    int64_t pos = 0, path[MB_MAX_DIMS];
    lua_pushvalue(L, arg);
    if (ndim > 0) table_fill(L, arg, 0, ndim, shape, dtype, scratch, &pos, path);
    lua_pop(L, 1);
    mb_tensor *t = mb_tensor_from_data(dtype, ndim, shape, scratch, &err);
    lua_pop(L, 1);
    if (!t) mb_lua_argraise(L, arg, &err);
    return t;
}

/* ---- options tables ------------------------------------------------------------------- */

lua_Integer mb_lua_optfield_int(lua_State *L, int arg, const char *key, lua_Integer def) {
    if (lua_type(L, arg) != LUA_TTABLE) return def;
    lua_getfield(L, arg, key);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok) {
            lua_pop(L, 1);
            return luaL_argerror(L, arg, lua_pushfstring(L, "field '%s' must be an integer", key));
        }
    }
    lua_pop(L, 1);
    return v;
}

lua_Number mb_lua_optfield_num(lua_State *L, int arg, const char *key, lua_Number def) {
    if (lua_type(L, arg) != LUA_TTABLE) return def;
    lua_getfield(L, arg, key);
    lua_Number v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tonumberx(L, -1, &ok);
        if (!ok) {
            lua_pop(L, 1);
            return luaL_argerror(L, arg, lua_pushfstring(L, "field '%s' must be a number", key));
        }
    }
    lua_pop(L, 1);
    return v;
}

int mb_lua_optfield_bool(lua_State *L, int arg, const char *key, int def) {
    if (lua_type(L, arg) != LUA_TTABLE) return def;
    lua_getfield(L, arg, key);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

const char *mb_lua_optfield_str(lua_State *L, int arg, const char *key, const char *def) {
    if (lua_type(L, arg) != LUA_TTABLE) return def;
    lua_getfield(L, arg, key);
    const char *v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            luaL_argerror(L, arg, lua_pushfstring(L, "field '%s' must be a string", key));
            return NULL;
        }
        v = lua_tostring(L, -1); /* the table keeps the string alive */
    }
    lua_pop(L, 1);
    return v;
}

typedef struct shared_box {
    mb_lua_shared *s; /* NULL once closed */
} shared_box;

static void shared_release(mb_lua_shared *s) {
    if (--s->refs == 0) {
        s->free_obj(s->obj);
        free(s);
    }
}

static void view_release(void *data, size_t nbytes, void *ctx) { shared_release(ctx); }

void mb_lua_pushshared(lua_State *L, const char *mt, void *obj, void (*free_obj)(void *), size_t gc_bytes) {
    shared_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->s = NULL;
    luaL_setmetatable(L, mt);
    mb_lua_shared *s = malloc(sizeof *s);
    if (!s) {
        free_obj(obj);
        luaL_error(L, "out of memory");
        return;
    }
    *s = (mb_lua_shared){obj, free_obj, 1};
    b->s = s;
    size_t kb = gc_bytes / 1024;
    if (kb > 0) lua_gc(L, LUA_GCSTEP, (int)(kb > 1000000 ? 1000000 : kb));
}

mb_lua_shared *mb_lua_shared_or_null(lua_State *L, int arg, const char *mt) {
    return ((shared_box *)luaL_checkudata(L, arg, mt))->s;
}

mb_lua_shared *mb_lua_checkshared(lua_State *L, int arg, const char *mt) {
    mb_lua_shared *s = mb_lua_shared_or_null(L, arg, mt);
    if (!s) luaL_argerror(L, arg, "model is freed");
    return s;
}

void mb_lua_closeshared(lua_State *L, int arg, const char *mt) {
    shared_box *b = luaL_checkudata(L, arg, mt);
    if (b->s) {
        shared_release(b->s);
        b->s = NULL;
    }
}

mb_lua_shared *mb_lua_newshared(void *obj, void (*free_obj)(void *)) {
    mb_lua_shared *s = malloc(sizeof *s);
    if (s) *s = (mb_lua_shared){obj, free_obj, 1};
    return s;
}

void mb_lua_releaseshared(mb_lua_shared *s) {
    if (s) shared_release(s);
}

static void free_model(void *p) {
    mb_lua_model *h = p;
    mb_lua_releaseshared(h->dev);
    h->free_host(h->host);
    free(h);
}

void mb_lua_pushmodel(lua_State *L, const char *mt, void *host, void (*free_host)(void *), size_t gc_bytes) {
    mb_lua_model *h = malloc(sizeof *h);
    if (!h) {
        free_host(host);
        luaL_error(L, "out of memory");
        return;
    }
    *h = (mb_lua_model){host, free_host, NULL};
    mb_lua_pushshared(L, mt, h, free_model, gc_bytes);
}

mb_lua_model *mb_lua_checkmodel(lua_State *L, int arg, const char *mt) { return mb_lua_checkshared(L, arg, mt)->obj; }

void *mb_lua_model_device(const mb_lua_model *h) { return h->dev ? h->dev->obj : NULL; }

void mb_lua_pushparam(lua_State *L, mb_lua_shared *owner, const mb_param_info *pi, float *value, float *grad,
                      int trainable, mb_device device) {
    lua_createtable(L, 0, 7);
    lua_pushstring(L, pi->name);
    lua_setfield(L, -2, "name");
    mb_lua_pushview_on(L, owner, value, pi->ndim, pi->shape, device);
    lua_setfield(L, -2, "value");
    mb_lua_pushview_on(L, owner, grad, pi->ndim, pi->shape, device);
    lua_setfield(L, -2, "grad");
    lua_pushboolean(L, pi->no_decay);
    lua_setfield(L, -2, "no_decay");
    lua_pushboolean(L, trainable);
    lua_setfield(L, -2, "trainable");
    lua_pushboolean(L, pi->encoder);
    lua_setfield(L, -2, "encoder");
}

void mb_lua_pushview_on(lua_State *L, mb_lua_shared *s, float *data, int ndim, const int64_t *shape,
                        mb_device device) {
    mb_error err;
    mb_tensor *t = mb_tensor_wrap(MB_FLOAT32, ndim, shape, data, view_release, s, &err);
    if (!t) mb_lua_raise(L, &err);
    t->storage->device = device;
    s->refs++;
    mb_lua_pushtensor(L, t, &err);
}

void mb_lua_pushview(lua_State *L, mb_lua_shared *s, float *data, int ndim, const int64_t *shape) {
    mb_lua_pushview_on(L, s, data, ndim, shape, MB_CPU);
}

mb_tensor *mb_lua_checkids(lua_State *L, int idx, int arg, const char *what, int required) {
    if (lua_isnoneornil(L, idx)) {
        if (required) luaL_argerror(L, arg, lua_pushfstring(L, "%s is missing", what));
        lua_pushnil(L);
        return NULL;
    }
    mb_error err;
    mb_tensor *t = mb_lua_testtensor(L, idx), *c = NULL;
    if (t) {
        if (t->dtype != MB_INT32)
            luaL_argerror(L, arg, lua_pushfstring(L, "%s must be an int32 tensor (got %s)", what, mb_dtype_name(t->dtype)));
        c = mb_tensor_contiguous(t, &err);
        if (!c) mb_lua_argraise(L, arg, &err);
    } else if (lua_istable(L, idx)) {
        c = mb_lua_totensor(L, idx, MB_INT32);
    } else {
        luaL_argerror(L, arg, lua_pushfstring(L, "%s must be an int32 tensor [B,T] or a nested table (got %s)", what,
                                              luaL_typename(L, idx)));
    }
    mb_lua_pushtensor(L, c, &err);
    if (c->ndim == 1) { /* one sequence */
        int64_t shape[2] = {1, c->shape[0]};
        c = mb_tensor_reshape(c, 2, shape, &err);
        mb_lua_pushtensor(L, c, &err);
        lua_remove(L, -2);
    }
    if (c->ndim != 2) luaL_argerror(L, arg, lua_pushfstring(L, "%s must be 2-D [B,T]", what));
    return c;
}

void mb_lua_checkbatch(lua_State *L, int arg, mb_lua_batch *b) {
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_getfield(L, arg, "input_ids");
    b->ids = mb_lua_checkids(L, lua_gettop(L), arg, "batch.input_ids", 1);
    lua_remove(L, -2);
    b->B = (int)b->ids->shape[0];
    b->T = (int)b->ids->shape[1];
    lua_getfield(L, arg, "attention_mask");
    b->mask = mb_lua_checkids(L, lua_gettop(L), arg, "batch.attention_mask", 0);
    lua_remove(L, -2);
    if (b->mask && (b->mask->shape[0] != b->B || b->mask->shape[1] != b->T)) {
        char s1[64], s2[64];
        luaL_argerror(L, arg, lua_pushfstring(L, "batch.attention_mask has shape %s but batch.input_ids has %s",
                                              mb_shape_str(2, b->mask->shape, s1, sizeof s1),
                                              mb_shape_str(2, b->ids->shape, s2, sizeof s2)));
    }
}

void mb_lua_checkconfig(lua_State *L, int arg, mb_distilbert_config *cfg) {
    size_t len;
    const char *json = luaL_checklstring(L, arg, &len);
    const char *source = luaL_optstring(L, arg + 1, "config");
    mb_error err;
    if (mb_config_parse(cfg, json, len, source, &err) != MB_OK) mb_lua_raise(L, &err);
}

void mb_lua_push_rng_state(lua_State *L, const mb_rng *rng) { lua_pushlstring(L, (const char *)rng, sizeof *rng); }

void mb_lua_check_rng_state(lua_State *L, int arg, mb_rng *rng) {
    size_t len;
    const char *s = luaL_checklstring(L, arg, &len);
    if (len != sizeof *rng)
        luaL_argerror(L, arg, lua_pushfstring(L, "RNG state of %d bytes expected (from rng_state()), got %d",
                                              (int)sizeof *rng, (int)len));
    memcpy(rng, s, sizeof *rng);
}

void mb_lua_push_dropout_state(lua_State *L, const mb_rng *rng, const mb_cuda_model *dev) {
    mb_lua_push_rng_state(L, rng);
    if (dev) {
        uint64_t d[2];
        mb_cuda_model_get_dropout(dev, &d[0], &d[1]);
        lua_pushlstring(L, (const char *)d, sizeof d);
        lua_concat(L, 2);
    }
}

void mb_lua_check_dropout_state(lua_State *L, int arg, mb_rng *rng, mb_cuda_model *dev) {
    size_t len, host = sizeof(mb_rng);
    const char *s = luaL_checklstring(L, arg, &len);
    if (len == host + 2 * sizeof(uint64_t)) { /* made on the device */
        if (dev) {
            uint64_t d[2];
            memcpy(d, s + host, sizeof d);
            mb_cuda_model_set_dropout(dev, d[0], d[1]);
        }
        lua_pushlstring(L, s, host);
        lua_replace(L, arg);
    }
    mb_lua_check_rng_state(L, arg, rng);
}

void mb_lua_seed_dropout(mb_rng *rng, mb_cuda_model *dev, uint64_t seed) {
    mb_rng_seed(rng, seed);
    if (dev) mb_cuda_model_set_dropout(dev, seed, 0);
}

void mb_lua_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta) {
    if (!luaL_newmetatable(L, name)) {
        lua_pop(L, 1);
        return;
    }
    if (meta) luaL_setfuncs(L, meta, 0);
    if (methods) {
        lua_getfield(L, -1, "__index");
        int has_index = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!has_index) {
            lua_newtable(L);
            luaL_setfuncs(L, methods, 0);
            lua_setfield(L, -2, "__index");
        }
    }
    lua_pop(L, 1);
}

static int core_set_threads(lua_State *L) {
    mb_set_threads((int)luaL_checkinteger(L, 1));
    return 0;
}

static int core_threads(lua_State *L) {
    lua_pushinteger(L, mb_threads());
    return 1;
}

int luaopen_moonbert_core(lua_State *L) {
    mb_threads_init();
    lua_newtable(L);
#define MB_MODULE(name)                                                          \
    lua_pushcfunction(L, mb_luaopen_##name);                                     \
    lua_call(L, 0, 1);                                                           \
    lua_setfield(L, -2, #name);
#include "modules.h"
#undef MB_MODULE
    lua_pushcfunction(L, core_set_threads);
    lua_setfield(L, -2, "set_threads");
    lua_pushcfunction(L, core_threads);
    lua_setfield(L, -2, "threads");
    return 1;
}
