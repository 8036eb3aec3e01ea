/* safetensors.c (bindings): core.safetensors.load / save over runtime/safetensors.
 *
 *   local tensors, metadata = core.safetensors.load(path)   -- {name = tensor}, {key = "value"}
 *   core.safetensors.save(path, {name = tensor, ...} [, {key = "value"}])
 *
 * Float tensors (F32, F16, BF16, F64) load as float32, integer and BOOL ones
 * as int32 (values outside int32 are an error). Saving writes float32 and
 * int32 tensors, names in sorted order so the bytes depend only on content.
 */
#include <stdlib.h>
#include <string.h>

#include "../runtime/safetensors.h"
#include "luamb.h"

static int st_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    mb_error err;
    mb_safetensors *st = mb_safetensors_open(path, &err);
    if (!st) return mb_lua_raise(L, &err);
    lua_createtable(L, 0, st->n_tensors);
    for (int i = 0; i < st->n_tensors; i++) {
        const mb_st_tensor *t = &st->tensors[i];
        if (t->ndim > MB_MAX_DIMS) {
            mb_fail(&err, MB_ERR_SHAPE, "%s: tensor '%s' has %d dimensions (moonbert tensors hold at most %d)", path,
                    t->name, t->ndim, MB_MAX_DIMS);
            mb_safetensors_close(st);
            return mb_lua_raise(L, &err);
        }
        int is_float = mb_st_dtype_is_float(t->dtype);
        mb_tensor *out = mb_tensor_empty(is_float ? MB_FLOAT32 : MB_INT32, t->ndim, t->shape, &err);
        if (!out) {
            mb_safetensors_close(st);
            return mb_lua_raise(L, &err);
        }
        mb_status rc = is_float ? mb_safetensors_read_f32(t, mb_tensor_f32(out), &err)
                                : mb_safetensors_read_i32(t, mb_tensor_i32(out), &err);
        if (rc != MB_OK) {
            mb_tensor_free(out);
            mb_safetensors_close(st);
            mb_error_prefix(&err, "%s: ", path);
            return mb_lua_raise(L, &err);
        }
        mb_lua_pushtensor(L, out, &err);
        lua_setfield(L, -2, t->name);
    }
    lua_createtable(L, 0, st->n_meta);
    for (int i = 0; i < st->n_meta; i++) {
        lua_pushstring(L, st->meta[i].value);
        lua_setfield(L, -2, st->meta[i].key);
    }
    mb_safetensors_close(st);
    return 2;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int st_save(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    /* collect names (string keys only) */
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_argerror(L, 2, lua_pushfstring(L, "tensor names must be strings (got a %s key)",
                                                       luaL_typename(L, -2)));
        if (!mb_lua_testtensor(L, -1))
            return luaL_argerror(L, 2, lua_pushfstring(L, "'%s' is not a live moonbert.Tensor (got %s)",
                                                       lua_tostring(L, -2), luaL_typename(L, -1)));
        n++;
        lua_pop(L, 1);
    }
    /* scratch lives in a userdata so an error anywhere below frees it */
    size_t bytes = (size_t)(n ? n : 1) * (sizeof(const char *) + sizeof(mb_st_entry) + sizeof(mb_tensor *));
    char *scratch = lua_newuserdatauv(L, bytes, 0); /* index 4 */
    memset(scratch, 0, bytes);
    const char **names = (const char **)scratch;
    mb_st_entry *e = (mb_st_entry *)(names + (n ? n : 1));
    mb_tensor **held = (mb_tensor **)(e + (n ? n : 1));
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        names[k++] = lua_tostring(L, -2); /* the table keeps the key alive */
        lua_pop(L, 1);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    mb_error err;
    mb_status rc = MB_OK;
    for (int i = 0; i < n && rc == MB_OK; i++) {
        lua_getfield(L, 2, names[i]);
        mb_tensor *t = mb_lua_testtensor(L, -1);
        held[i] = mb_tensor_contiguous(t, &err);
        lua_pop(L, 1);
        if (!held[i]) {
            rc = err.code;
            break;
        }
        e[i].name = names[i];
        e[i].dtype = t->dtype == MB_FLOAT32 ? MB_ST_F32 : MB_ST_I32;
        e[i].ndim = held[i]->ndim;
        e[i].shape = held[i]->shape;
        e[i].data = held[i]->dtype == MB_FLOAT32 ? (void *)mb_tensor_f32(held[i]) : (void *)mb_tensor_i32(held[i]);
    }
    int n_meta = 0;
    mb_st_meta *meta = NULL;
    if (rc == MB_OK && lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            n_meta++;
            lua_pop(L, 1);
        }
        meta = lua_newuserdatauv(L, sizeof *meta * (size_t)(n_meta ? n_meta : 1), 0); /* index 5 */
        int j = 0;
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
                for (int i = 0; i < n; i++) mb_tensor_free(held[i]);
                return luaL_argerror(L, 3, "metadata must map strings to strings");
            }
            meta[j].key = (char *)lua_tostring(L, -2);
            meta[j].value = (char *)lua_tostring(L, -1);
            j++;
            lua_pop(L, 1);
        }
    }
    if (rc == MB_OK) rc = mb_safetensors_write(path, e, n, meta, n_meta, &err);
    for (int i = 0; i < n; i++) mb_tensor_free(held[i]);
    if (rc != MB_OK) return mb_lua_raise(L, &err);
    return 0;
}

MB_LUA_MODULE(safetensors) {
    static const luaL_Reg fns[] = {{"load", st_load}, {"save", st_save}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
