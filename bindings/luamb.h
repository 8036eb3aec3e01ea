/* luamb.h: glue shared by every Lua binding of the moonbert runtime.
 *
 * All bindings build into one Lua C module, moonbert.core (build/lib/moonbert/core.so).
 * Each bindings/<name>.c defines its part with
 *     MB_LUA_MODULE(name) { ... push one table of functions ...; return 1; }
 * The build collects these into core.<name>; bindings/moonbert/<name>.lua
 * wraps it for users as mb.<name>.
 *
 * Conventions (from lauxlib/liolib/lfs): userdata types are registered with
 * luaL_newmetatable under a "moonbert.<Type>" __name; methods live in their
 * own table; one idempotent close function serves __gc and __close; expected
 * failures (a file that is missing when asked "does it exist?") return
 * nil, message; misuse raises an error naming the argument.
 */
#ifndef MB_LUAMB_H
#define MB_LUAMB_H

#include <lauxlib.h>
#include <lua.h>

#include "../runtime/error.h"
#include "../runtime/tensor.h"

#define MB_LUA_MODULE(name) int mb_luaopen_##name(lua_State *L)

#define MB_TENSOR_MT "moonbert.Tensor"

/* Raise err as a Lua error (never returns). */
int mb_lua_raise(lua_State *L, const mb_error *err);
/* Raise err as "bad argument #arg to 'fn' (msg)" (never returns). */
int mb_lua_argraise(lua_State *L, int arg, const mb_error *err);

/* Tensors. push takes ownership of t (freed by __gc/__close/:free()) and
   tells Lua's collector about its size; a NULL t raises err. */
void mb_lua_pushtensor(lua_State *L, mb_tensor *t, const mb_error *err);
/* The tensor at arg, or a Lua error "moonbert.Tensor expected" / "tensor is freed". */
mb_tensor *mb_lua_checktensor(lua_State *L, int arg);
mb_tensor *mb_lua_testtensor(lua_State *L, int arg); /* NULL if not a live tensor */
/* The tensor at arg with the given dtype and ndim (ndim < 0: any). */
mb_tensor *mb_lua_checktensor_as(lua_State *L, int arg, mb_dtype dtype, int ndim);

/* A Lua table (or nested table) of numbers, or a tensor, at arg as a new
   tensor of dtype. Used by functions that accept either. */
mb_tensor *mb_lua_totensor(lua_State *L, int arg, mb_dtype dtype);

/* Optional fields of an options table at arg (absent table or field = def). */
lua_Integer mb_lua_optfield_int(lua_State *L, int arg, const char *key, lua_Integer def);
lua_Number mb_lua_optfield_num(lua_State *L, int arg, const char *key, lua_Number def);
int mb_lua_optfield_bool(lua_State *L, int arg, const char *key, int def);
const char *mb_lua_optfield_str(lua_State *L, int arg, const char *key, const char *def);

/* Register a userdata type: metatable name, methods (may be NULL), metamethods. */
void mb_lua_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta);

#endif
