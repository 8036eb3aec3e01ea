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
#include "../runtime/param_info.h"
#include "../runtime/tensor.h"

#define MB_LUA_MODULE(name) int mb_luaopen_##name(lua_State *L)

#define MB_TENSOR_MT "moonbert.Tensor"

/* Raise err as a Lua error (never returns). */
int mb_lua_raise(lua_State *L, const mb_error *err);
/* Raise err as "bad argument #arg to 'fn' (msg)" (never returns). */
int mb_lua_argraise(lua_State *L, int arg, const mb_error *err);

/* The userdata behind a moonbert.Tensor: one view (NULL once freed). */
typedef struct mb_lua_tensor_box {
    mb_tensor *t;
} mb_lua_tensor_box;

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

/* Shared objects: a C object (a model) held by its Lua userdata and by every
   tensor view onto its memory (parameters, gradients), freed when the last
   holder lets go; so a view never dangles after model:free(). The userdata
   is a box around the handle, emptied by close. */
typedef struct mb_lua_shared {
    void *obj;
    void (*free_obj)(void *obj);
    int refs;
} mb_lua_shared;

/* Push a userdata of type mt owning obj; frees obj and raises on out of
   memory. gc_bytes tells the collector how much C memory it holds. */
void mb_lua_pushshared(lua_State *L, const char *mt, void *obj, void (*free_obj)(void *), size_t gc_bytes);
/* The live handle at arg, else "bad argument (model is freed)" or a type error. */
mb_lua_shared *mb_lua_checkshared(lua_State *L, int arg, const char *mt);
/* The handle at arg, NULL once closed (for __tostring). */
mb_lua_shared *mb_lua_shared_or_null(lua_State *L, int arg, const char *mt);
/* Release the userdata's hold (idempotent): __gc, __close and :free(). */
void mb_lua_closeshared(lua_State *L, int arg, const char *mt);
/* Push a float32 view onto memory owned by s (holds s until the view dies). */
void mb_lua_pushview(lua_State *L, mb_lua_shared *s, float *data, int ndim, const int64_t *shape);
/* The same onto memory on `device` (the view's storage says so; CPU
   operations refuse it, t:cpu() copies it). */
void mb_lua_pushview_on(lua_State *L, mb_lua_shared *s, float *data, int ndim, const int64_t *shape,
                        mb_device device);
/* A shared object without a Lua box (one reference, the caller's), such as a
   model's device half: held by the model and by every device view, so that
   model:to("cpu") or model:free() never leaves a view dangling. NULL on out
   of memory (obj is then not freed). */
mb_lua_shared *mb_lua_newshared(void *obj, void (*free_obj)(void *));
void mb_lua_releaseshared(mb_lua_shared *s); /* NULL is fine */

/* A model object (mb.distilbert, mb.distilbert masked LM): the host model,
   and its device half while on the GPU (a shared object of its own: device
   parameter views hold it). The userdata holds it as a shared object. */
typedef struct mb_lua_model {
    void *host;
    void (*free_host)(void *host);
    mb_lua_shared *dev; /* obj: the device half; NULL on the CPU */
} mb_lua_model;
/* Push a userdata of type mt holding host (mb_lua_pushshared); frees host and
   raises on out of memory. */
void mb_lua_pushmodel(lua_State *L, const char *mt, void *host, void (*free_host)(void *), size_t gc_bytes);
/* The live model at arg (mb_lua_checkshared's errors). */
mb_lua_model *mb_lua_checkmodel(lua_State *L, int arg, const char *mt);
/* The device half, or NULL when the model is on the CPU. */
void *mb_lua_model_device(const mb_lua_model *h);

/* Push one entry of model:parameters(): {name=, value=, grad=, no_decay=,
   trainable=, encoder=}, value and grad views onto owner's memory on device. */
void mb_lua_pushparam(lua_State *L, mb_lua_shared *owner, const mb_param_info *pi, float *value, float *grad,
                      int trainable, mb_device device);

/* Any live tensor, on any device (metadata, device copies); the test form
   returns NULL for a non-tensor. mb_lua_checktensor/testtensor refuse device
   tensors with "tensor is on cuda: CPU operations need a CPU tensor". */
mb_tensor *mb_lua_checktensor_anydevice(lua_State *L, int arg);
mb_tensor *mb_lua_testtensor_anydevice(lua_State *L, int arg);

/* An int32 [B,T] (a 1-D one is one sequence) from the tensor or nested table
   at idx, pushed on the stack (Lua owns it; a later error frees it); errors
   name argument arg and `what`. Absent (nil): an error when required, else
   nil is pushed and NULL returned. */
mb_tensor *mb_lua_checkids(lua_State *L, int idx, int arg, const char *what, int required);

/* The batch {input_ids=, attention_mask=} at arg, as every model binding
   reads it: contiguous int32 [B,T] tensors (mask NULL when absent) with the
   same shape. Pushes two values (ids, mask or nil) that keep them alive. */
typedef struct mb_lua_batch {
    mb_tensor *ids, *mask;
    int B, T;
} mb_lua_batch;
void mb_lua_checkbatch(lua_State *L, int arg, mb_lua_batch *b);

/* Parse the config JSON text at arg (its source name at arg+1, default
   "config") into cfg, or raise; the caller frees it with mb_config_free. */
struct mb_distilbert_config;
void mb_lua_checkconfig(lua_State *L, int arg, struct mb_distilbert_config *cfg);

/* A model's dropout RNG as a Lua string (byte for byte), and back. */
struct mb_rng;
void mb_lua_push_rng_state(lua_State *L, const struct mb_rng *rng);
void mb_lua_check_rng_state(lua_State *L, int arg, struct mb_rng *rng);
/* A model's dropout generators (model:rng_state, set_rng_state, seed): the
   host RNG's bytes, then with a device half (dev, NULL on the CPU) the Philox
   key and counter offset (16 bytes), so that a checkpoint resumes the masks
   exactly on the device it was made on; a host-only state restores the host
   RNG alone. */
struct mb_cuda_model;
void mb_lua_push_dropout_state(lua_State *L, const struct mb_rng *rng, const struct mb_cuda_model *dev);
void mb_lua_check_dropout_state(lua_State *L, int arg, struct mb_rng *rng, struct mb_cuda_model *dev);
void mb_lua_seed_dropout(struct mb_rng *rng, struct mb_cuda_model *dev, uint64_t seed);

/* Register a userdata type: metatable name, methods (may be NULL), metamethods. */
void mb_lua_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta);

#endif
