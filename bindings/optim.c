/* optim.c: Lua bindings of the optimizers (core.optim).
 *
 *   core.optim.new(kind, params, opts)     -> moonbert.Optimizer  (kind "adamw" or "sgd")
 *       params: list of {name=, value=tensor, grad=tensor, weight_decay=bool, frozen=bool}
 *       (requires_grad=false counts as frozen); opts: lr, weight_decay, beta1, beta2, eps,
 *       momentum, dampening, nesterov
 *   opt:step(lr)  opt:zero_grad()  opt:steps()  opt:state_numel()
 *   opt:state() -> {kind=, step=, momentum_started=, m=tensor, v=tensor|nil} (copies, for checkpoints)
 *   opt:set_state(t)  restores what state() returned (same kind and state size)
 *   core.optim.clip_grad_norm(params, max_norm) -> total norm before clipping
 *   core.optim.schedule_factor(kind, warmup_steps, total_steps, step, num_cycles) -> multiplier
 *   core.optim.decays(name) -> whether Hugging Face's Trainer would apply weight decay to it
 * The optimizer keeps the params list alive (uservalue) because it holds raw
 * pointers into the tensors. The update runs where the parameters live: a list
 * of CPU tensors gets runtime/optim.c, a list of device tensors (the
 * parameters of a model after model:to("cuda")) gets runtime/cuda.h's
 * mb_cuda_optim and mb_cuda_clip_grad_norm, with the same options, defaults
 * and state layout (a checkpoint is the same file either way). A list must not
 * mix devices. The user-facing surface is moonbert/optim.lua.
 */
#include <math.h>
#include <string.h>

#include "luamb.h"
#include "../runtime/cuda.h"
#include "../runtime/optim.h"

#define OPTIM_MT "moonbert.Optimizer"

/* One of the two is set while the optimizer is alive. */
typedef struct optim_box {
    mb_optim *opt;
    mb_cuda_optim *dev;
} optim_box;

/* The device of the tensor at idx (any device), or -1 when it is not a tensor. */
static int tensor_device(lua_State *L, int idx) {
    mb_tensor *t = mb_lua_testtensor_anydevice(L, idx);
    return t ? (int)t->storage->device : -1;
}

/* Read the params list at arg into a userdata array of refs (pushed); *device
   is where their values live (all on one device). */
static mb_param_ref *push_refs(lua_State *L, int arg, int *count, mb_device *device) {
    luaL_checktype(L, arg, LUA_TTABLE);
    int n = (int)luaL_len(L, arg);
    mb_param_ref *refs = lua_newuserdatauv(L, sizeof(mb_param_ref) * (size_t)(n ? n : 1), 0);
    *device = MB_CPU;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, arg, i + 1);
        int e = lua_gettop(L);
        if (!lua_istable(L, e))
            luaL_argerror(L, arg, lua_pushfstring(L, "parameter %d: {value=tensor, grad=tensor} expected, got %s", i + 1,
                                                  luaL_typename(L, e)));
        lua_getfield(L, e, "name");
        const char *name = lua_isstring(L, -1) ? lua_tostring(L, -1) : "?";
        lua_getfield(L, e, "frozen");
        int frozen = lua_toboolean(L, -1);
        lua_getfield(L, e, "requires_grad");
        if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) frozen = 1;
        lua_getfield(L, e, "weight_decay");
        int wd = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
        lua_getfield(L, e, "value");
        int dev = tensor_device(L, -1);
        if (i == 0 && dev >= 0) *device = (mb_device)dev;
        if (dev >= 0 && dev != (int)*device)
            luaL_argerror(L, arg, lua_pushfstring(L, "parameter %d (%s) is on %s, parameter 1 on %s: one optimizer "
                                                     "steps parameters of one device", i + 1, name,
                                                  dev == MB_CUDA ? "cuda" : "cpu", *device == MB_CUDA ? "cuda" : "cpu"));
        mb_tensor *v = mb_lua_testtensor_anydevice(L, -1);
        if (!v || v->dtype != MB_FLOAT32 || !mb_tensor_is_contiguous(v))
            luaL_argerror(L, arg, lua_pushfstring(L, "parameter %d (%s): value must be a contiguous float32 tensor", i + 1,
                                                  name));
        lua_getfield(L, e, "grad");
        if (!frozen && tensor_device(L, -1) >= 0 && tensor_device(L, -1) != (int)*device)
            luaL_argerror(L, arg, lua_pushfstring(L, "parameter %d (%s): grad and value are on different devices", i + 1,
                                                  name));
        mb_tensor *g = mb_lua_testtensor_anydevice(L, -1);
        if (!frozen && (!g || g->dtype != MB_FLOAT32 || !mb_tensor_is_contiguous(g) ||
                        mb_tensor_numel(g) != mb_tensor_numel(v)))
            luaL_argerror(L, arg, lua_pushfstring(L, "parameter %d (%s): grad must be a contiguous float32 tensor of "
                                                     "the value's size",
                                                  i + 1, name));
        refs[i].value = mb_tensor_f32(v);
        refs[i].grad = g ? mb_tensor_f32(g) : NULL;
        refs[i].numel = mb_tensor_numel(v);
        refs[i].weight_decay = wd;
        refs[i].frozen = frozen;
        lua_settop(L, e - 1);
    }
    *count = n;
    return refs;
}

static optim_box *check_box(lua_State *L, int arg) {
    optim_box *b = luaL_checkudata(L, arg, OPTIM_MT);
    if (!b->opt && !b->dev) luaL_argerror(L, arg, "optimizer is freed");
    return b;
}

static int l_new(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    static const char *const kinds[] = {"adamw", "sgd", NULL};
    int kind = luaL_checkoption(L, 1, NULL, kinds);
    int n;
    mb_device device;
    mb_param_ref *refs = push_refs(L, 2, &n, &device);
    mb_optim_config c = kind == 0 ? mb_adamw_defaults() : mb_sgd_defaults();
    c.lr = mb_lua_optfield_num(L, 3, "lr", c.lr);
    c.weight_decay = mb_lua_optfield_num(L, 3, "weight_decay", c.weight_decay);
    c.beta1 = mb_lua_optfield_num(L, 3, "beta1", c.beta1);
    c.beta2 = mb_lua_optfield_num(L, 3, "beta2", c.beta2);
    c.eps = mb_lua_optfield_num(L, 3, "eps", c.eps);
    c.momentum = mb_lua_optfield_num(L, 3, "momentum", c.momentum);
    c.dampening = mb_lua_optfield_num(L, 3, "dampening", c.dampening);
    c.nesterov = mb_lua_optfield_bool(L, 3, "nesterov", 0);
    optim_box *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->opt = NULL;
    b->dev = NULL;
    luaL_setmetatable(L, OPTIM_MT);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 1); /* the tensors must outlive the raw pointers */
    mb_error err;
    if (device == MB_CUDA) {
        b->dev = mb_cuda_optim_new(refs, n, &c, &err);
        if (!b->dev) return mb_lua_argraise(L, 3, &err);
    } else {
        b->opt = mb_optim_new(refs, n, &c, &err);
        if (!b->opt) return mb_lua_argraise(L, 3, &err);
    }
    return 1;
}

static int m_step(lua_State *L) {
    optim_box *b = check_box(L, 1);
    mb_error err;
    if (b->dev) {
        double lr = luaL_optnumber(L, 2, mb_cuda_optim_config(b->dev)->lr);
        if (mb_cuda_optim_step(b->dev, lr, &err)) return mb_lua_argraise(L, 2, &err);
        return 0;
    }
    double lr = luaL_optnumber(L, 2, b->opt->cfg.lr);
    if (mb_optim_step(b->opt, lr, &err)) return mb_lua_argraise(L, 2, &err);
    return 0;
}

static int m_zero_grad(lua_State *L) {
    optim_box *b = check_box(L, 1);
    mb_error err;
    if (b->dev && mb_cuda_optim_zero_grad(b->dev, &err)) return mb_lua_raise(L, &err);
    if (b->opt) mb_optim_zero_grad(b->opt);
    return 0;
}

static int m_steps(lua_State *L) {
    optim_box *b = check_box(L, 1);
    lua_pushinteger(L, b->dev ? mb_cuda_optim_steps(b->dev) : b->opt->step);
    return 1;
}

static int m_state_numel(lua_State *L) {
    optim_box *b = check_box(L, 1);
    lua_pushinteger(L, b->dev ? mb_cuda_optim_state_numel(b->dev) : b->opt->state_numel);
    return 1;
}

static int m_device(lua_State *L) {
    lua_pushstring(L, check_box(L, 1)->dev ? "cuda" : "cpu");
    return 1;
}

/* Copies of the moments (not views: a checkpoint must not dangle if the
   optimizer is freed while it is being written). */
static void push_state_copy(lua_State *L, const float *src, int64_t n) {
    mb_error err;
    int64_t shape[1] = {n};
    mb_tensor *t = mb_tensor_empty(MB_FLOAT32, 1, shape, &err);
    if (t && n > 0) memcpy(mb_tensor_f32(t), src, (size_t)n * sizeof(float));
    mb_lua_pushtensor(L, t, &err);
}

/* The device optimizer's state, copied into two new CPU tensors. */
static int device_state(lua_State *L, mb_cuda_optim *o) {
    int64_t n[1] = {mb_cuda_optim_state_numel(o)}, step;
    mb_error err;
    lua_createtable(L, 0, 5);
    mb_tensor *m = mb_tensor_empty(MB_FLOAT32, 1, n, &err);
    mb_lua_pushtensor(L, m, &err);
    lua_setfield(L, -2, "m");
    mb_tensor *v = mb_tensor_empty(MB_FLOAT32, 1, n, &err);
    mb_lua_pushtensor(L, v, &err);
    lua_setfield(L, -2, "v");
    if (mb_cuda_optim_get_state(o, mb_tensor_f32(m), mb_tensor_f32(v), &step, &err)) return mb_lua_raise(L, &err);
    lua_pushstring(L, "adamw");
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, step);
    lua_setfield(L, -2, "step");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "momentum_started");
    return 1;
}

static int m_state(lua_State *L) {
    optim_box *b = check_box(L, 1);
    if (b->dev) return device_state(L, b->dev);
    mb_optim *o = b->opt;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, o->cfg.kind == MB_OPTIM_ADAMW ? "adamw" : "sgd");
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, o->step);
    lua_setfield(L, -2, "step");
    lua_pushboolean(L, o->momentum_started);
    lua_setfield(L, -2, "momentum_started");
    if (o->m) {
        push_state_copy(L, o->m, o->state_numel);
        lua_setfield(L, -2, "m");
    }
    if (o->v) {
        push_state_copy(L, o->v, o->state_numel);
        lua_setfield(L, -2, "v");
    }
    return 1;
}

static void restore_moment(lua_State *L, mb_optim *o, const char *field, float *dst) {
    lua_getfield(L, 2, field);
    mb_tensor *t = mb_lua_testtensor(L, -1);
    if (!dst) {
        lua_pop(L, 1);
        return;
    }
    if (!t || t->dtype != MB_FLOAT32 || !mb_tensor_is_contiguous(t) || mb_tensor_numel(t) != o->state_numel)
        luaL_argerror(L, 2, lua_pushfstring(L, "field '%s' must be a contiguous float32 tensor of %d elements "
                                               "(the optimizer's state size)",
                                            field, (int)o->state_numel));
    if (o->state_numel > 0) memcpy(dst, mb_tensor_f32(t), (size_t)o->state_numel * sizeof(float));
    lua_pop(L, 1);
}

static void device_set_state(lua_State *L, mb_cuda_optim *o, lua_Integer step) {
    int64_t n = mb_cuda_optim_state_numel(o);
    lua_getfield(L, 2, "m");
    lua_getfield(L, 2, "v");
    mb_tensor *tm = mb_lua_testtensor(L, -2), *tv = mb_lua_testtensor(L, -1);
    if (!tm || !tv || tm->dtype != MB_FLOAT32 || tv->dtype != MB_FLOAT32 || !mb_tensor_is_contiguous(tm) ||
        !mb_tensor_is_contiguous(tv) || mb_tensor_numel(tm) != n || mb_tensor_numel(tv) != n)
        luaL_argerror(L, 2, lua_pushfstring(L, "fields 'm' and 'v' must be float32 tensors of %d elements "
                                               "(the optimizer's state size)", (int)n));
    mb_error err;
    if (mb_cuda_optim_set_state(o, mb_tensor_f32(tm), mb_tensor_f32(tv), step, &err)) mb_lua_raise(L, &err);
    lua_pop(L, 2);
}

static int m_set_state(lua_State *L) {
    optim_box *b = check_box(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    mb_optim *o = b->opt;
    const char *kind = b->dev || o->cfg.kind == MB_OPTIM_ADAMW ? "adamw" : "sgd";
    lua_getfield(L, 2, "kind");
    const char *got = lua_tostring(L, -1);
    if (!got || strcmp(got, kind) != 0)
        return luaL_argerror(L, 2, lua_pushfstring(L, "state of a %s optimizer expected, got %s", kind,
                                                   got ? got : luaL_typename(L, -1)));
    lua_pop(L, 1);
    lua_getfield(L, 2, "step");
    int isint;
    lua_Integer step = lua_tointegerx(L, -1, &isint);
    if (!isint || step < 0) return luaL_argerror(L, 2, "field 'step' must be a non-negative integer");
    lua_pop(L, 1);
    if (b->dev) {
        device_set_state(L, b->dev, step);
        return 0;
    }
    /* check both moments before writing either */
    lua_getfield(L, 2, "m");
    lua_getfield(L, 2, "v");
    mb_tensor *tm = mb_lua_testtensor(L, -2), *tv = mb_lua_testtensor(L, -1);
    if ((o->m && (!tm || mb_tensor_numel(tm) != o->state_numel)) ||
        (o->v && (!tv || mb_tensor_numel(tv) != o->state_numel)))
        return luaL_argerror(L, 2, lua_pushfstring(L, "fields 'm'%s must be float32 tensors of %d elements "
                                                      "(the optimizer's state size)",
                                                   o->v ? " and 'v'" : "", (int)o->state_numel));
    lua_pop(L, 2);
    restore_moment(L, o, "m", o->m);
    restore_moment(L, o, "v", o->v);
    lua_getfield(L, 2, "momentum_started");
    o->momentum_started = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o->step = step;
    return 0;
}

static int m_close(lua_State *L) {
    optim_box *b = luaL_checkudata(L, 1, OPTIM_MT);
    mb_optim_free(b->opt);
    mb_cuda_optim_free(b->dev);
    b->opt = NULL;
    b->dev = NULL;
    return 0;
}

static int l_clip_grad_norm(lua_State *L) {
    lua_settop(L, 2); /* values pushed below stay above the arguments */
    int n;
    mb_device device;
    mb_param_ref *refs = push_refs(L, 1, &n, &device);
    double max_norm = luaL_checknumber(L, 2);
    double norm;
    mb_error err;
    if ((device == MB_CUDA ? mb_cuda_clip_grad_norm(refs, n, max_norm, &norm, &err)
                           : mb_clip_grad_norm(refs, n, max_norm, &norm, &err)) != MB_OK)
        return mb_lua_argraise(L, 2, &err);
    lua_pushnumber(L, norm);
    return 1;
}

static int l_schedule_factor(lua_State *L) {
    static const char *const kinds[] = {"constant", "linear", "cosine", NULL};
    mb_schedule s;
    s.kind = (mb_schedule_kind)luaL_checkoption(L, 1, NULL, kinds);
    s.warmup_steps = luaL_checkinteger(L, 2);
    s.total_steps = luaL_optinteger(L, 3, 0);
    lua_Integer step = luaL_checkinteger(L, 4);
    s.num_cycles = luaL_optnumber(L, 5, 0.5);
    mb_error err;
    if (mb_schedule_check(&s, &err)) return mb_lua_raise(L, &err);
    lua_pushnumber(L, mb_schedule_factor(&s, step));
    return 1;
}

static int l_decays(lua_State *L) {
    lua_pushboolean(L, mb_param_decays(luaL_optstring(L, 1, NULL)));
    return 1;
}

static int l_warmup_from_ratio(lua_State *L) {
    lua_pushinteger(L, mb_schedule_warmup_from_ratio(luaL_checkinteger(L, 1), luaL_checknumber(L, 2)));
    return 1;
}

MB_LUA_MODULE(optim) {
    static const luaL_Reg methods[] = {{"step", m_step},   {"zero_grad", m_zero_grad}, {"steps", m_steps},
                                       {"state_numel", m_state_numel}, {"state", m_state}, {"set_state", m_set_state},
                                       {"device", m_device}, {"free", m_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", m_close}, {"__close", m_close}, {NULL, NULL}};
    mb_lua_newclass(L, OPTIM_MT, methods, meta);
    static const luaL_Reg funcs[] = {{"new", l_new},
                                     {"clip_grad_norm", l_clip_grad_norm},
                                     {"schedule_factor", l_schedule_factor},
                                     {"warmup_from_ratio", l_warmup_from_ratio},
                                     {"decays", l_decays},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
