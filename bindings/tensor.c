/* tensor.c (bindings): the moonbert.Tensor userdata and core.tensor.
 *
 * A userdata "moonbert.Tensor" holds one mb_tensor* (a view with its own
 * reference on the storage). One idempotent close serves __gc, __close and
 * t:free(); a freed tensor raises "tensor is freed" wherever it is used.
 * Lua 5.4 has no API for memory held outside its heap, so pushing a tensor
 * that owns a fresh storage runs lua_gc(LUA_GCSTEP, kilobytes): the collector
 * works as if Lua had allocated those bytes, and a loop that drops big tensors
 * without :free() stays in bounded memory.
 *
 * Positions and dimensions are 1-based in Lua (t[1][1], t:sum(1), argmax
 * returns 1-based positions); negative dimensions count from the end (-1 is
 * the last). Everything with a Lua face is here so that a tensor made by any
 * binding has all its methods without requiring moonbert.tensor first;
 * bindings/moonbert/tensor.lua adds the documentation-level conveniences.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/cuda.h"
#include "../runtime/parallel.h"
#include "luamb.h"

typedef mb_lua_tensor_box tensor_box;

/* ---- argument helpers ---------------------------------------------------------- */

static void push_error(lua_State *L, mb_tensor *t, int arg, mb_error *err) {
    if (!t) mb_lua_argraise(L, arg, err);
    mb_lua_pushtensor(L, t, err);
}

static mb_dtype check_dtype_name(lua_State *L, int arg, const char *name) {
    if (strcmp(name, "float32") == 0 || strcmp(name, "float") == 0) return MB_FLOAT32;
    if (strcmp(name, "int32") == 0 || strcmp(name, "int") == 0) return MB_INT32;
    luaL_argerror(L, arg, lua_pushfstring(L, "dtype must be \"float32\" or \"int32\", got \"%s\"", name));
    return MB_FLOAT32;
}

/* dtype from an options table at arg (absent = def). */
static mb_dtype opt_dtype(lua_State *L, int arg, mb_dtype def) {
    const char *s = mb_lua_optfield_str(L, arg, "dtype", NULL);
    return s ? check_dtype_name(L, arg, s) : def;
}

/* A shape given as a table {2,3} at arg, or as integers arg, arg+1, ...
   Returns ndim; *next is the first argument after the shape. */
static int check_shape_args(lua_State *L, int arg, int64_t *shape, int *next) {
    int ndim = 0;
    if (lua_type(L, arg) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
        if (n > MB_MAX_DIMS)
            luaL_argerror(L, arg, lua_pushfstring(L, "shape has %I dimensions, at most %d are supported", n,
                                                  MB_MAX_DIMS));
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, arg, i);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok || lua_type(L, -1) != LUA_TNUMBER || v < 0)
                luaL_argerror(L, arg, lua_pushfstring(L, "shape entries must be non-negative integers, got %s at %I",
                                                      luaL_tolstring(L, -1, NULL), i));
            lua_pop(L, 1);
            shape[ndim++] = v;
        }
        *next = arg + 1;
        return ndim;
    }
    while (lua_type(L, arg + ndim) == LUA_TNUMBER) {
        if (ndim == MB_MAX_DIMS)
            luaL_argerror(L, arg + ndim, lua_pushfstring(L, "at most %d dimensions are supported", MB_MAX_DIMS));
        int ok;
        lua_Integer v = lua_tointegerx(L, arg + ndim, &ok);
        if (!ok || v < 0)
            luaL_argerror(L, arg + ndim, lua_pushfstring(L, "size must be a non-negative integer, got %s",
                                                         luaL_tolstring(L, arg + ndim, NULL)));
        shape[ndim] = v;
        ndim++;
    }
    if (ndim == 0)
        luaL_argerror(L, arg, lua_pushfstring(L, "shape (table of sizes) expected, got %s", luaL_typename(L, arg)));
    *next = arg + ndim;
    return ndim;
}

/* A 1-based (or negative, from the end) Lua dimension at arg as a 0-based one. */
static int check_dim(lua_State *L, int arg, const mb_tensor *t) {
    lua_Integer d = luaL_checkinteger(L, arg);
    if (d >= 1 && d <= t->ndim) return (int)d - 1;
    if (d < 0 && d >= -t->ndim) return (int)(t->ndim + d);
    if (t->ndim == 0) luaL_argerror(L, arg, "a 0-d tensor has no dimensions");
    return luaL_argerror(L, arg, lua_pushfstring(L, "dimension %I is out of range (1..%d, or -%d..-1 from the end)",
                                                 d, t->ndim, t->ndim));
}

static int opt_dim(lua_State *L, int arg, const mb_tensor *t, int def) {
    return lua_isnoneornil(L, arg) ? def : check_dim(L, arg, t);
}

/* A 1-based position within dimension d (0-based) at arg, as 0-based. */
static int64_t check_pos(lua_State *L, int arg, const mb_tensor *t, int d) {
    int ok;
    lua_Integer i = lua_tointegerx(L, arg, &ok);
    if (!ok) {
        if (lua_type(L, arg) == LUA_TNUMBER)
            luaL_argerror(L, arg, lua_pushfstring(L, "index must be an integer, got %s", luaL_tolstring(L, arg, NULL)));
        luaL_typeerror(L, arg, "integer");
    }
    if (i < 1 || i > t->shape[d])
        luaL_argerror(L, arg, lua_pushfstring(L, "index %I is out of range for dimension %d of size %I", i, d + 1,
                                              (lua_Integer)t->shape[d]));
    return i - 1;
}

static void push_element(lua_State *L, const mb_tensor *t, int64_t off) {
    if (t->dtype == MB_FLOAT32) lua_pushnumber(L, ((const float *)t->storage->data)[off]);
    else lua_pushinteger(L, ((const int32_t *)t->storage->data)[off]);
}

static void check_value_for(lua_State *L, int arg, const mb_tensor *t, lua_Number v) {
    if (t->dtype == MB_INT32 && (v != floor(v) || v < -2147483648.0 || v > 2147483647.0))
        luaL_argerror(L, arg, lua_pushfstring(L, "int32 tensor cannot hold %f", v));
}

/* ---- creation ------------------------------------------------------------------ */

static int t_zeros(lua_State *L) {
    int64_t shape[MB_MAX_DIMS];
    int next, ndim = check_shape_args(L, 1, shape, &next);
    mb_error err;
    push_error(L, mb_tensor_zeros(opt_dtype(L, next, MB_FLOAT32), ndim, shape, &err), 1, &err);
    return 1;
}

static int t_ones(lua_State *L) {
    int64_t shape[MB_MAX_DIMS];
    int next, ndim = check_shape_args(L, 1, shape, &next);
    mb_error err;
    push_error(L, mb_tensor_full(opt_dtype(L, next, MB_FLOAT32), ndim, shape, 1.0, &err), 1, &err);
    return 1;
}

static int t_empty(lua_State *L) {
    int64_t shape[MB_MAX_DIMS];
    int next, ndim = check_shape_args(L, 1, shape, &next);
    mb_error err;
    push_error(L, mb_tensor_zeros(opt_dtype(L, next, MB_FLOAT32), ndim, shape, &err), 1, &err);
    return 1;
}

/* full(shape, value [, {dtype=}]) */
static int t_full(lua_State *L) {
    int64_t shape[MB_MAX_DIMS];
    int next, ndim = check_shape_args(L, 1, shape, &next);
    lua_Number v = luaL_checknumber(L, next);
    mb_error err;
    push_error(L, mb_tensor_full(opt_dtype(L, next + 1, MB_FLOAT32), ndim, shape, v, &err), next, &err);
    return 1;
}

/* arange(stop) | arange(start, stop [, step]) [, {dtype=}]; dtype defaults to
   int32 when every bound is an integer, as in PyTorch. */
static int t_arange(lua_State *L) {
    int nnum = 0;
    while (nnum < 3 && lua_type(L, nnum + 1) == LUA_TNUMBER) nnum++;
    if (nnum == 0) luaL_typeerror(L, 1, "number");
    lua_Number start = 0, stop, step = 1;
    if (nnum == 1) stop = lua_tonumber(L, 1);
    else {
        start = lua_tonumber(L, 1);
        stop = lua_tonumber(L, 2);
        if (nnum == 3) step = lua_tonumber(L, 3);
    }
    int all_int = 1;
    for (int i = 1; i <= nnum; i++) all_int &= lua_isinteger(L, i);
    mb_error err;
    mb_tensor *t = mb_tensor_arange(opt_dtype(L, nnum + 1, all_int ? MB_INT32 : MB_FLOAT32), start, stop, step, &err);
    push_error(L, t, 1, &err);
    return 1;
}

/* from(nested table or tensor [, {dtype=}]) */
static int t_from(lua_State *L) {
    mb_dtype dt = opt_dtype(L, 2, MB_FLOAT32);
    mb_lua_pushtensor(L, mb_lua_totensor(L, 1, dt), NULL);
    return 1;
}

/* The module's generator, used when no seed is given: seeded with 0 at load
   (reproducible by default) and by manual_seed(). */
static mb_rng g_rng;
static int g_rng_ready;

static mb_rng *default_rng(void) {
    if (!g_rng_ready) {
        mb_rng_seed(&g_rng, 0);
        g_rng_ready = 1;
    }
    return &g_rng;
}

static int t_manual_seed(lua_State *L) {
    mb_rng_seed(&g_rng, (uint64_t)luaL_checkinteger(L, 1));
    g_rng_ready = 1;
    return 0;
}

/* rand(shape [, {seed=, low=0, high=1}]) / randn(shape [, {seed=, mean=0, std=1}]) */
static int rand_common(lua_State *L, int normal) {
    int64_t shape[MB_MAX_DIMS];
    int next, ndim = check_shape_args(L, 1, shape, &next);
    if (!lua_isnoneornil(L, next)) luaL_checktype(L, next, LUA_TTABLE);
    mb_rng local, *rng = default_rng();
    int has_seed = 0;
    if (lua_type(L, next) == LUA_TTABLE) {
        lua_getfield(L, next, "seed");
        has_seed = !lua_isnil(L, -1);
        lua_pop(L, 1);
    }
    if (has_seed) {
        mb_rng_seed(&local, (uint64_t)mb_lua_optfield_int(L, next, "seed", 0));
        rng = &local;
    }
    mb_error err;
    mb_tensor *t;
    if (normal)
        t = mb_tensor_randn(ndim, shape, rng, (float)mb_lua_optfield_num(L, next, "mean", 0),
                            (float)mb_lua_optfield_num(L, next, "std", 1), &err);
    else
        t = mb_tensor_rand_uniform(ndim, shape, rng, (float)mb_lua_optfield_num(L, next, "low", 0),
                                   (float)mb_lua_optfield_num(L, next, "high", 1), &err);
    push_error(L, t, next, &err);
    return 1;
}

static int t_rand(lua_State *L) { return rand_common(L, 0); }
static int t_randn(lua_State *L) { return rand_common(L, 1); }

/* live() -> storages alive in the process, bytes they hold. */
static int t_live(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mb_tensor_live_storages());
    lua_pushinteger(L, (lua_Integer)mb_tensor_live_bytes());
    return 2;
}

static int t_is_tensor(lua_State *L) {
    lua_pushboolean(L, luaL_testudata(L, 1, MB_TENSOR_MT) != NULL);
    return 1;
}

/* bench_sgemm(m, n, k, reps) -> mean seconds, best seconds per product.
   Timed in C so the figures are the BLAS, not Lua. */
static int t_bench_sgemm(lua_State *L) {
    lua_Integer m = luaL_checkinteger(L, 1), n = luaL_checkinteger(L, 2), k = luaL_checkinteger(L, 3);
    lua_Integer reps = luaL_optinteger(L, 4, 3);
    if (m < 1 || n < 1 || k < 1 || m > 65536 || n > 65536 || k > 65536) luaL_argerror(L, 1, "sizes must be 1..65536");
    if (reps < 1) luaL_argerror(L, 4, "reps must be >= 1");
    double mean, best;
    mb_error err;
    if (mb_sgemm_bench((int)m, (int)n, (int)k, (int64_t)reps, &mean, &best, &err) != MB_OK)
        return luaL_error(L, "%s", err.msg);
    lua_pushnumber(L, mean);
    lua_pushnumber(L, best);
    return 2;
}

/* ---- methods: inspection ----------------------------------------------------------- */

static int m_free(lua_State *L) {
    tensor_box *b = luaL_checkudata(L, 1, MB_TENSOR_MT);
    if (b->t) {
        mb_tensor_free(b->t);
        b->t = NULL;
    }
    return 0;
}

static int m_is_freed(lua_State *L) {
    tensor_box *b = luaL_checkudata(L, 1, MB_TENSOR_MT);
    lua_pushboolean(L, b->t == NULL);
    return 1;
}

static int m_shape(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor_anydevice(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* size() = shape table; size(dim) = that dimension's size. */
static int m_size(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor_anydevice(L, 1);
    if (lua_isnoneornil(L, 2)) return m_shape(L);
    lua_pushinteger(L, t->shape[check_dim(L, 2, t)]);
    return 1;
}

static int m_dtype(lua_State *L) {
    lua_pushstring(L, mb_dtype_name(mb_lua_checktensor_anydevice(L, 1)->dtype));
    return 1;
}

static int m_dim(lua_State *L) {
    lua_pushinteger(L, mb_lua_checktensor_anydevice(L, 1)->ndim);
    return 1;
}

static int m_numel(lua_State *L) {
    lua_pushinteger(L, mb_tensor_numel(mb_lua_checktensor_anydevice(L, 1)));
    return 1;
}

static int m_nbytes(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)mb_tensor_nbytes(mb_lua_checktensor_anydevice(L, 1)));
    return 1;
}

static int m_is_contiguous(lua_State *L) {
    lua_pushboolean(L, mb_tensor_is_contiguous(mb_lua_checktensor_anydevice(L, 1)));
    return 1;
}

/* Storage offset of position (i, j, ...) given at args first.. (1-based). */
static int64_t check_index_args(lua_State *L, const mb_tensor *t, int first) {
    int given = lua_gettop(L) - first + 1;
    if (given < t->ndim)
        luaL_argerror(L, first + (given > 0 ? given : 0),
                      lua_pushfstring(L, "%d indices expected for a %d-D tensor, got %d", t->ndim, t->ndim,
                                      given > 0 ? given : 0));
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) off += check_pos(L, first + d, t, d) * t->stride[d];
    return off;
}

static int m_get(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    int top = lua_gettop(L);
    if (top - 1 > t->ndim)
        luaL_argerror(L, t->ndim + 2,
                      lua_pushfstring(L, "%d indices expected for a %d-D tensor, got %d", t->ndim, t->ndim, top - 1));
    push_element(L, t, check_index_args(L, t, 2));
    return 1;
}

/* set(i, j, ..., value) */
static int m_set(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    int top = lua_gettop(L);
    if (top != t->ndim + 2)
        return luaL_error(L, "set expects %d indices and a value for a %d-D tensor, got %d arguments", t->ndim,
                          t->ndim, top - 1);
    lua_Number v = luaL_checknumber(L, top);
    check_value_for(L, top, t, v);
    lua_settop(L, top - 1);
    int64_t off = check_index_args(L, t, 2);
    if (t->dtype == MB_FLOAT32) ((float *)t->storage->data)[off] = (float)v;
    else ((int32_t *)t->storage->data)[off] = (int32_t)v;
    return 0;
}

static int m_item(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    if (mb_tensor_numel(t) != 1) {
        char b[96];
        return luaL_argerror(L, 1, lua_pushfstring(L, "item needs a tensor of one element, got shape %s",
                                                    mb_shape_str(t->ndim, t->shape, b, sizeof b)));
    }
    int64_t off = t->offset;
    push_element(L, t, off);
    return 1;
}

static void push_table_rec(lua_State *L, const mb_tensor *t, int d, int64_t off) {
    if (d == t->ndim) {
        push_element(L, t, off);
        return;
    }
    luaL_checkstack(L, 4, "tensor too deep");
    lua_createtable(L, (int)t->shape[d], 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        push_table_rec(L, t, d + 1, off + i * t->stride[d]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static int m_totable(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    push_table_rec(L, t, 0, t->offset);
    return 1;
}

/* ---- methods: views and copies --------------------------------------------------------- */

/* reshape{2,3} or reshape(2,3); -1 infers one size. */
static int m_reshape(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    int64_t shape[MB_MAX_DIMS];
    int ndim = 0;
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
        if (n > MB_MAX_DIMS) luaL_argerror(L, 2, "at most 4 dimensions are supported");
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, 2, i);
            int ok;
            shape[ndim++] = lua_tointegerx(L, -1, &ok);
            if (!ok || lua_type(L, -1) != LUA_TNUMBER)
                luaL_argerror(L, 2, lua_pushfstring(L, "shape entries must be integers, got %s at %I",
                                                    luaL_typename(L, -1), i));
            lua_pop(L, 1);
        }
    } else {
        int top = lua_gettop(L);
        if (top < 2) luaL_argerror(L, 2, "shape (table of sizes) expected, got no value");
        if (top - 1 > MB_MAX_DIMS) luaL_argerror(L, MB_MAX_DIMS + 2, "at most 4 dimensions are supported");
        for (int i = 2; i <= top; i++) shape[ndim++] = luaL_checkinteger(L, i);
    }
    mb_error err;
    push_error(L, mb_tensor_reshape(t, ndim, shape, &err), 2, &err);
    return 1;
}

/* narrow(dim, start, length): positions start..start+length-1 (1-based). */
static int m_narrow(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    int d = check_dim(L, 2, t);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    if (start < 1 || start > t->shape[d] + 1)
        luaL_argerror(L, 3, lua_pushfstring(L, "start %I is out of range for dimension %d of size %I", start, d + 1,
                                            (lua_Integer)t->shape[d]));
    if (len < 0 || start - 1 + len > t->shape[d])
        luaL_argerror(L, 4, lua_pushfstring(L, "length %I from %I runs past dimension %d of size %I", len,
                                            start, d + 1, (lua_Integer)t->shape[d]));
    mb_error err;
    push_error(L, mb_tensor_narrow(t, d, start - 1, len, &err), 2, &err);
    return 1;
}

static int m_select(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    int d = check_dim(L, 2, t);
    int64_t i = check_pos(L, 3, t, d);
    mb_error err;
    push_error(L, mb_tensor_select(t, d, i, &err), 3, &err);
    return 1;
}

static int m_transpose(lua_State *L) {
    mb_error err;
    push_error(L, mb_tensor_transpose(mb_lua_checktensor(L, 1), &err), 1, &err);
    return 1;
}

static int m_contiguous(lua_State *L) {
    mb_error err;
    push_error(L, mb_tensor_contiguous(mb_lua_checktensor(L, 1), &err), 1, &err);
    return 1;
}

static int m_clone(lua_State *L) {
    mb_error err;
    push_error(L, mb_tensor_clone(mb_lua_checktensor(L, 1), &err), 1, &err);
    return 1;
}

static int m_float(lua_State *L) {
    mb_error err;
    push_error(L, mb_tensor_to_dtype(mb_lua_checktensor(L, 1), MB_FLOAT32, &err), 1, &err);
    return 1;
}

static int m_int(lua_State *L) {
    mb_error err;
    push_error(L, mb_tensor_to_dtype(mb_lua_checktensor(L, 1), MB_INT32, &err), 1, &err);
    return 1;
}

/* t:to("cuda"|"cpu") and t:cpu(): the tensor at arg on device (itself when already there, as
   torch does); the runtime moves it (mb_tensor_to, runtime/cuda.h). */
static int to_device(lua_State *L, int arg, const char *device) {
    mb_tensor *t = mb_lua_checktensor_anydevice(L, arg);
    int to_cuda = strcmp(device, "cuda") == 0;
    if (!to_cuda && strcmp(device, "cpu") != 0)
        return luaL_argerror(L, arg + 1, lua_pushfstring(L, "device 'cpu' or 'cuda' expected, got '%s'", device));
    if ((t->storage->device == MB_CUDA) == to_cuda) {
        lua_pushvalue(L, arg);
        return 1;
    }
    mb_error err;
    mb_tensor *r = mb_tensor_to(t, to_cuda ? MB_CUDA : MB_CPU, &err);
    if (!r) return luaL_error(L, "t:%s: %s", to_cuda ? "to(\"cuda\")" : "cpu()", err.msg);
    mb_lua_pushtensor(L, r, &err);
    return 1;
}

static int m_to(lua_State *L) {
    const char *name = luaL_checkstring(L, 2);
    if (strcmp(name, "cuda") == 0 || strcmp(name, "cpu") == 0) return to_device(L, 1, name);
    mb_tensor *t = mb_lua_checktensor(L, 1);
    mb_dtype dt = check_dtype_name(L, 2, luaL_checkstring(L, 2));
    mb_error err;
    push_error(L, mb_tensor_to_dtype(t, dt, &err), 2, &err);
    return 1;
}

static int m_cpu(lua_State *L) { return to_device(L, 1, "cpu"); }

static int m_device(lua_State *L) {
    lua_pushstring(L, mb_lua_checktensor_anydevice(L, 1)->storage->device == MB_CPU ? "cpu" : "cuda");
    return 1;
}

/* fill(value): in place, returns the tensor. */
static int m_fill(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    lua_Number v = luaL_checknumber(L, 2);
    check_value_for(L, 2, t, v);
    mb_error err;
    if (mb_tensor_fill_(t, v, &err)) mb_lua_argraise(L, 2, &err);
    lua_settop(L, 1);
    return 1;
}

/* copy(src): in place from a tensor of the same shape; returns the tensor. */
static int m_copy(lua_State *L) {
    mb_tensor *td = mb_lua_checktensor_anydevice(L, 1), *sd = mb_lua_checktensor_anydevice(L, 2);
    if (td->storage->device != MB_CPU || sd->storage->device != MB_CPU) { /* across devices: runtime/cuda.h */
        mb_error err;
        if (mb_tensor_copy_device(td, sd, &err) != MB_OK) mb_lua_argraise(L, 2, &err);
        lua_settop(L, 1);
        return 1;
    }
    mb_tensor *t = mb_lua_checktensor(L, 1);
    mb_tensor *s = mb_lua_checktensor(L, 2);
    mb_error err;
    if (mb_tensor_copy_(t, s, &err)) mb_lua_argraise(L, 2, &err);
    lua_settop(L, 1);
    return 1;
}

/* ---- methods: arithmetic ---------------------------------------------------------------- */

/* a op b where either side may be a number (binary metamethods and methods). */
static int arith(lua_State *L, mb_binop op) {
    mb_tensor *a = mb_lua_testtensor(L, 1), *b = mb_lua_testtensor(L, 2);
    mb_error err;
    mb_tensor *r = NULL;
    int bad = 0;
    if (a && b) r = mb_tensor_binary(op, a, b, &err), bad = 2;
    else if (a && lua_type(L, 2) == LUA_TNUMBER) r = mb_tensor_binary_scalar(op, a, lua_tonumber(L, 2), 0, &err), bad = 2;
    else if (b && lua_type(L, 1) == LUA_TNUMBER) r = mb_tensor_binary_scalar(op, b, lua_tonumber(L, 1), 1, &err), bad = 1;
    else {
        /* Say which operand is wrong: a freed tensor, or neither a tensor nor a number. */
        for (int i = 1; i <= 2; i++) {
            if (luaL_testudata(L, i, MB_TENSOR_MT) && !mb_lua_testtensor(L, i)) luaL_argerror(L, i, "tensor is freed");
        }
        int i = (a || lua_type(L, 1) == LUA_TNUMBER) ? 2 : 1;
        return luaL_argerror(L, i, lua_pushfstring(L, "moonbert.Tensor or number expected, got %s", luaL_typename(L, i)));
    }
    push_error(L, r, bad, &err);
    return 1;
}

static int m_add(lua_State *L) { return arith(L, MB_ADD); }
static int m_sub(lua_State *L) { return arith(L, MB_SUB); }
static int m_mul(lua_State *L) { return arith(L, MB_MUL); }
static int m_div(lua_State *L) { return arith(L, MB_DIV); }
static int m_pow(lua_State *L) { return arith(L, MB_POW); }
static int m_maximum(lua_State *L) { return arith(L, MB_MAXIMUM); }
static int m_minimum(lua_State *L) { return arith(L, MB_MINIMUM); }

static int unary(lua_State *L, mb_unop op) {
    mb_error err;
    push_error(L, mb_tensor_unary(op, mb_lua_checktensor(L, 1), &err), 1, &err);
    return 1;
}

/* -t keeps int32 tensors int32 (0 - t); the runtime's unary ops are float32. */
static int m_neg(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    if (t->dtype == MB_INT32) {
        mb_error err;
        push_error(L, mb_tensor_binary_scalar(MB_SUB, t, 0, 1, &err), 1, &err);
        return 1;
    }
    return unary(L, MB_NEG);
}
static int m_exp(lua_State *L) { return unary(L, MB_EXP); }
static int m_log(lua_State *L) { return unary(L, MB_LOG); }
static int m_tanh(lua_State *L) { return unary(L, MB_TANH); }
static int m_relu(lua_State *L) { return unary(L, MB_RELU); }
static int m_gelu(lua_State *L) { return unary(L, MB_GELU); }
static int m_sqrt(lua_State *L) { return unary(L, MB_SQRT); }
static int m_abs(lua_State *L) { return unary(L, MB_ABS); }
static int m_sigmoid(lua_State *L) { return unary(L, MB_SIGMOID); }

/* matmul(u [, {trans_a=, trans_b=}]) */
static int m_matmul(lua_State *L) {
    mb_tensor *a = mb_lua_checktensor(L, 1), *b = mb_lua_checktensor(L, 2);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    int ta = mb_lua_optfield_bool(L, 3, "trans_a", 0), tb = mb_lua_optfield_bool(L, 3, "trans_b", 0);
    mb_error err;
    mb_tensor *r = mb_tensor_matmul(a, b, ta, tb, &err);
    if (!r) mb_lua_argraise(L, err.code == MB_ERR_DTYPE && a->dtype != MB_FLOAT32 ? 1 : 2, &err);
    mb_lua_pushtensor(L, r, &err);
    return 1;
}

/* ---- methods: reductions ------------------------------------------------------------------ */

/* With a dim: a tensor without that dim. Without: a Lua number. Positions
   from argmax/argmin are 1-based (flat positions when no dim is given). */
static int reduce(lua_State *L, mb_reduce op) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    int all = lua_isnoneornil(L, 2);
    int d = all ? MB_DIM_ALL : check_dim(L, 2, t);
    mb_error err;
    mb_tensor *r = mb_tensor_reduce(op, t, d, &err);
    if (!r) mb_lua_argraise(L, all ? 1 : 2, &err);
    int arg = op == MB_ARGMAX || op == MB_ARGMIN;
    if (all) {
        double v = r->dtype == MB_FLOAT32 ? (double)mb_tensor_f32(r)[0] : (double)mb_tensor_i32(r)[0];
        mb_dtype dt = r->dtype;
        mb_tensor_free(r);
        if (arg) lua_pushinteger(L, (lua_Integer)v + 1);
        else if (dt == MB_INT32) lua_pushinteger(L, (lua_Integer)v);
        else lua_pushnumber(L, v);
        return 1;
    }
    if (arg) {
        int32_t *p = mb_tensor_i32(r);
        for (int64_t i = 0, n = mb_tensor_numel(r); i < n; i++) p[i] += 1;
    }
    mb_lua_pushtensor(L, r, &err);
    return 1;
}

static int m_sum(lua_State *L) { return reduce(L, MB_SUM); }
static int m_mean(lua_State *L) { return reduce(L, MB_MEAN); }
static int m_max(lua_State *L) { return reduce(L, MB_MAX); }
static int m_min(lua_State *L) { return reduce(L, MB_MIN); }
static int m_argmax(lua_State *L) { return reduce(L, MB_ARGMAX); }
static int m_argmin(lua_State *L) { return reduce(L, MB_ARGMIN); }

static int softmax_common(lua_State *L, int log) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    if (t->ndim == 0) luaL_argerror(L, 1, "softmax needs at least 1 dimension, got a 0-d tensor");
    int d = opt_dim(L, 2, t, t->ndim - 1);
    mb_error err;
    push_error(L, mb_tensor_softmax(t, d, log, &err), 2, &err);
    return 1;
}

static int m_softmax(lua_State *L) { return softmax_common(L, 0); }
static int m_log_softmax(lua_State *L) { return softmax_common(L, 1); }

/* ---- metamethods --------------------------------------------------------------------------- */

/* t[i]: a view of row i (ndim > 1) or the number at i (1-D); t.name: a method. */
static int mm_index(lua_State *L) {
    if (lua_type(L, 2) == LUA_TNUMBER) {
        mb_tensor *t = mb_lua_checktensor(L, 1);
        if (t->ndim == 0) return luaL_error(L, "a 0-d tensor cannot be indexed (use t:item())");
        int64_t i = check_pos(L, 2, t, 0);
        if (t->ndim == 1) {
            push_element(L, t, t->offset + i * t->stride[0]);
            return 1;
        }
        mb_error err;
        push_error(L, mb_tensor_select(t, 0, i, &err), 2, &err);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

/* t[i] = number (fills row i for ndim > 1) or tensor (copied into row i). */
static int mm_newindex(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    if (lua_type(L, 2) != LUA_TNUMBER)
        return luaL_error(L, "tensors have no assignable field '%s' (assign t[i] with a number position)",
                          luaL_tolstring(L, 2, NULL));
    if (t->ndim == 0) return luaL_error(L, "a 0-d tensor cannot be indexed (use t:fill(v))");
    int64_t i = check_pos(L, 2, t, 0);
    mb_error err;
    if (t->ndim == 1) {
        lua_Number v = luaL_checknumber(L, 3);
        check_value_for(L, 3, t, v);
        if (t->dtype == MB_FLOAT32) ((float *)t->storage->data)[t->offset + i * t->stride[0]] = (float)v;
        else ((int32_t *)t->storage->data)[t->offset + i * t->stride[0]] = (int32_t)v;
        return 0;
    }
    mb_tensor *row = mb_tensor_select(t, 0, i, &err);
    if (!row) return mb_lua_argraise(L, 2, &err);
    mb_status st;
    if (lua_type(L, 3) == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, 3);
        st = mb_tensor_fill_(row, v, &err);
    } else {
        mb_tensor *src = mb_lua_testtensor(L, 3);
        if (!src) {
            mb_tensor_free(row);
            if (luaL_testudata(L, 3, MB_TENSOR_MT)) return luaL_argerror(L, 3, "tensor is freed");
            return luaL_argerror(L, 3, lua_pushfstring(L, "number or moonbert.Tensor expected, got %s", luaL_typename(L, 3)));
        }
        st = mb_tensor_copy_(row, src, &err);
    }
    mb_tensor_free(row);
    if (st) return mb_lua_argraise(L, 3, &err);
    return 0;
}

static int mm_len(lua_State *L) {
    mb_tensor *t = mb_lua_checktensor(L, 1);
    if (t->ndim == 0) return luaL_error(L, "a 0-d tensor has no length (use t:numel())");
    lua_pushinteger(L, t->shape[0]);
    return 1;
}

/* ---- tostring, PyTorch style (runtime/tensor_format.c) ----------------------------------- */

static void put_buffer(void *B, const char *text, size_t n) { luaL_addlstring((luaL_Buffer *)B, text, n); }

static int mm_tostring(lua_State *L) {
    tensor_box *b = luaL_checkudata(L, 1, MB_TENSOR_MT);
    if (!b->t) {
        lua_pushstring(L, "tensor(<freed>)");
        return 1;
    }
    luaL_Buffer B;
    luaL_buffinit(L, &B);
    mb_tensor_format(b->t, put_buffer, &B);
    luaL_pushresult(&B);
    return 1;
}

/* ---- registration ---------------------------------------------------------------------------- */

static const luaL_Reg tensor_methods[] = {
    {"free", m_free},
    {"is_freed", m_is_freed},
    {"shape", m_shape},
    {"size", m_size},
    {"dtype", m_dtype},
    {"dim", m_dim},
    {"numel", m_numel},
    {"nbytes", m_nbytes},
    {"is_contiguous", m_is_contiguous},
    {"get", m_get},
    {"set", m_set},
    {"item", m_item},
    {"totable", m_totable},
    {"reshape", m_reshape},
    {"view", m_reshape},
    {"narrow", m_narrow},
    {"select", m_select},
    {"transpose", m_transpose},
    {"contiguous", m_contiguous},
    {"clone", m_clone},
    {"float", m_float},
    {"int", m_int},
    {"to", m_to},
    {"cpu", m_cpu},
    {"device", m_device},
    {"fill", m_fill},
    {"copy", m_copy},
    {"add", m_add},
    {"sub", m_sub},
    {"mul", m_mul},
    {"div", m_div},
    {"pow", m_pow},
    {"maximum", m_maximum},
    {"minimum", m_minimum},
    {"neg", m_neg},
    {"exp", m_exp},
    {"log", m_log},
    {"tanh", m_tanh},
    {"relu", m_relu},
    {"gelu", m_gelu},
    {"sqrt", m_sqrt},
    {"abs", m_abs},
    {"sigmoid", m_sigmoid},
    {"matmul", m_matmul},
    {"sum", m_sum},
    {"mean", m_mean},
    {"max", m_max},
    {"min", m_min},
    {"argmax", m_argmax},
    {"argmin", m_argmin},
    {"softmax", m_softmax},
    {"log_softmax", m_log_softmax},
    {NULL, NULL},
};

static const luaL_Reg tensor_meta[] = {
    {"__gc", m_free},
    {"__close", m_free},
    {"__tostring", mm_tostring},
    {"__len", mm_len},
    {"__newindex", mm_newindex},
    {"__add", m_add},
    {"__sub", m_sub},
    {"__mul", m_mul},
    {"__div", m_div},
    {"__pow", m_pow},
    {"__unm", m_neg},
    {NULL, NULL},
};

/* The metatable and its methods table (field "methods" of the metatable so
   that Lua code can add methods); created once per Lua state. */
static void ensure_metatable(lua_State *L) {
    if (!luaL_newmetatable(L, MB_TENSOR_MT)) {
        lua_pop(L, 1);
        return;
    }
    luaL_setfuncs(L, tensor_meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, tensor_methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");
    lua_pushcclosure(L, mm_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

MB_LUA_MODULE(tensor) {
    static const luaL_Reg fns[] = {
        {"zeros", t_zeros},
        {"ones", t_ones},
        {"empty", t_empty},
        {"full", t_full},
        {"arange", t_arange},
        {"from", t_from},
        {"rand", t_rand},
        {"randn", t_randn},
        {"manual_seed", t_manual_seed},
        {"is_tensor", t_is_tensor},
        {"live", t_live},
        {"bench_sgemm", t_bench_sgemm},
        {NULL, NULL},
    };
    ensure_metatable(L);
    luaL_newlib(L, fns);
    luaL_getmetatable(L, MB_TENSOR_MT);
    lua_getfield(L, -1, "methods");
    lua_setfield(L, -3, "methods");
    lua_pop(L, 1);
    return 1;
}
