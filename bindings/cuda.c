/* cuda.c (bindings): core.cuda, the CUDA backend seen from Lua (runtime/cuda.h).
 *
 *   core.cuda.available() -> bool          core.cuda.unavailable_reason() -> string ("" when available)
 *   core.cuda.built() -> bool              core.cuda.device_name() -> name | nil, message
 *   core.cuda.memory() -> {free=, total=, allocated=, peak=} | nil, message
 *   core.cuda.reset_peak()
 *   core.cuda.precisions() -> {"fp32", "tf32", "bf16"}, the default
 *
 * Also t:to("cuda") / t:to("cpu") / t:cpu() and dst:copy(src) across devices
 * for tensors (mb_lua_tensor_to_device, mb_lua_tensor_copy_device in luamb.h,
 * called from bindings/tensor.c): a device tensor is a storage whose data is
 * device memory (mb_storage.device = MB_CUDA), freed with cudaFree when its
 * last view goes. CPU operations refuse such tensors (bindings/tensor.c).
 * Models move with model:to("cuda") (bindings/distilbert.c); the optimizer
 * runs where their parameters live (bindings/optim.c).
 * bindings/moonbert/cuda.lua wraps this as mb.cuda.
 */
#include <stdlib.h>
#include <string.h>

#include "../runtime/cuda.h"
#include "luamb.h"


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

/* core.cuda.precisions() -> {"fp32", "tf32", "bf16"}, default */
static int c_precisions(lua_State *L) {
    lua_createtable(L, 3, 0);
    for (int p = MB_CUDA_FP32; p <= MB_CUDA_BF16; p++) {
        lua_pushstring(L, mb_cuda_precision_name((mb_cuda_precision)p));
        lua_rawseti(L, -2, p + 1);
    }
    lua_pushstring(L, mb_cuda_precision_name(MB_CUDA_DEFAULT_PRECISION));
    return 2;
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

void mb_lua_tensor_copy_device(lua_State *L, mb_tensor *dst, const mb_tensor *src) {
    if (dst->dtype != src->dtype || mb_tensor_numel(dst) != mb_tensor_numel(src) || !mb_tensor_is_contiguous(dst) ||
        !mb_tensor_is_contiguous(src)) {
        char a[64], b[64];
        luaL_argerror(L, 2, lua_pushfstring(L, "a copy across devices needs contiguous tensors of one dtype and size "
                                               "(%s %s into %s %s)", mb_dtype_name(src->dtype),
                                            mb_shape_str(src->ndim, src->shape, a, sizeof a), mb_dtype_name(dst->dtype),
                                            mb_shape_str(dst->ndim, dst->shape, b, sizeof b)));
    }
    size_t es = mb_dtype_size(dst->dtype), n = (size_t)mb_tensor_numel(dst) * es;
    void *d = (char *)dst->storage->data + dst->offset * es;
    const void *s = (const char *)src->storage->data + src->offset * es;
    int dd = dst->storage->device == MB_CUDA, sd = src->storage->device == MB_CUDA;
    mb_error err;
    mb_status rc = dd && sd ? mb_cuda_memcpy_d2d(d, s, n, &err)
                   : dd     ? mb_cuda_memcpy_h2d(d, s, n, &err)
                            : mb_cuda_memcpy_d2h(d, s, n, &err);
    if (rc != MB_OK) mb_lua_raise(L, &err);
}

MB_LUA_MODULE(cuda) {
    static const luaL_Reg fns[] = {{"available", c_available}, {"unavailable_reason", c_unavailable_reason},
                                   {"built", c_built}, {"device_name", c_device_name}, {"memory", c_memory},
                                   {"reset_peak", c_reset_peak}, {"precisions", c_precisions}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
