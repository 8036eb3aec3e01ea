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
 * pointers into the tensors. The user-facing surface is moonbert/optim.lua.
 */
#include <math.h>
#include <string.h>

#include "luamb.h"
#include "../runtime/optim.h"

#define OPTIM_MT "moonbert.Optimizer"

typedef struct optim_box {
    mb_optim *opt;
} optim_box;

/* Read the params list at arg into a userdata array of refs (pushed). */
static mb_param_ref *push_refs(lua_State *L, int arg, int *count) {
    luaL_checktype(L, arg, LUA_TTABLE);
    int n = (int)luaL_len(L, arg);
    mb_param_ref *refs = lua_newuserdatauv(L, sizeof(mb_param_ref) * (size_t)(n ? n : 1), 0);
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
        mb_tensor *v = mb_lua_testtensor(L, -1);
        if (!v || v->dtype != MB_FLOAT32 || !mb_tensor_is_contiguous(v))
            luaL_argerror(L, arg, lua_pushfstring(L, "parameter %d (%s): value must be a contiguous float32 tensor", i + 1,
                                                  name));
        lua_getfield(L, e, "grad");
        mb_tensor *g = mb_lua_testtensor(L, -1);
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

static mb_optim *check_optim(lua_State *L, int arg) {
    optim_box *b = luaL_checkudata(L, arg, OPTIM_MT);
    if (!b->opt) luaL_argerror(L, arg, "optimizer is freed");
    return b->opt;
}

static int l_new(lua_State *L) {
    lua_settop(L, 3); /* values pushed below stay above the arguments */
    static const char *const kinds[] = {"adamw", "sgd", NULL};
    int kind = luaL_checkoption(L, 1, NULL, kinds);
    int n;
    mb_param_ref *refs = push_refs(L, 2, &n);
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
    luaL_setmetatable(L, OPTIM_MT);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 1); /* the tensors must outlive the raw pointers */
    mb_error err;
    b->opt = mb_optim_new(refs, n, &c, &err);
    if (!b->opt) return mb_lua_argraise(L, 3, &err);
    return 1;
}

static int m_step(lua_State *L) {
    mb_optim *o = check_optim(L, 1);
    double lr = luaL_optnumber(L, 2, o->cfg.lr);
    mb_error err;
    if (mb_optim_step(o, lr, &err)) return mb_lua_argraise(L, 2, &err);
    return 0;
}

static int m_zero_grad(lua_State *L) {
    mb_optim_zero_grad(check_optim(L, 1));
    return 0;
}

static int m_steps(lua_State *L) {
    lua_pushinteger(L, check_optim(L, 1)->step);
    return 1;
}

static int m_state_numel(lua_State *L) {
    lua_pushinteger(L, check_optim(L, 1)->state_numel);
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

static int m_state(lua_State *L) {
    mb_optim *o = check_optim(L, 1);
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

static int m_set_state(lua_State *L) {
    mb_optim *o = check_optim(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *kind = o->cfg.kind == MB_OPTIM_ADAMW ? "adamw" : "sgd";
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
    b->opt = NULL;
    return 0;
}

static int l_clip_grad_norm(lua_State *L) {
    lua_settop(L, 2); /* values pushed below stay above the arguments */
    int n;
    mb_param_ref *refs = push_refs(L, 1, &n);
    double max_norm = luaL_checknumber(L, 2);
    double norm;
    mb_error err;
    if (mb_clip_grad_norm(refs, n, max_norm, &norm, &err)) return mb_lua_argraise(L, 2, &err);
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
                                       {"free", m_close}, {NULL, NULL}};
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
