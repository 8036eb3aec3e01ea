/* cuda.c (bindings): core.cuda, the CUDA backend seen from Lua (runtime/cuda.h).
 *
 *   core.cuda.available() -> bool          core.cuda.unavailable_reason() -> string ("" when available)
 *   core.cuda.built() -> bool              core.cuda.device_name() -> name | nil, message
 *   core.cuda.memory() -> {free=, total=, allocated=, peak=} | nil, message
 *   core.cuda.reset_peak()
 *   core.cuda.precisions() -> {"fp32", "tf32", "bf16"}, the default
 *
 * Tensors move with t:to("cuda") / t:cpu() and dst:copy(src) (bindings/tensor.c over
 * runtime/cuda.h's mb_tensor_to): a device tensor is a storage whose data is
 * device memory (mb_storage.device = MB_CUDA), freed with cudaFree when its
 * last view goes. CPU operations refuse such tensors (bindings/core.c).
 * Models move with model:to("cuda") (bindings/distilbert.c); the optimizer
 * runs where their parameters live (bindings/optim.c).
 * bindings/moonbert/cuda.lua wraps this as mb.cuda.
 */

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

MB_LUA_MODULE(cuda) {
    static const luaL_Reg fns[] = {{"available", c_available}, {"unavailable_reason", c_unavailable_reason},
                                   {"built", c_built}, {"device_name", c_device_name}, {"memory", c_memory},
                                   {"reset_peak", c_reset_peak}, {"precisions", c_precisions}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
