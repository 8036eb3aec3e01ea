/* fuzz_sweep_spec.c: libFuzzer target for the sweep spec loader
 * (bindings/moonbert/sweep.lua, sweep.load_spec_text) run in an embedded Lua 5.4.
 *
 * The loader is Lua, and the system's Lua library carries no coverage
 * instrumentation, so coverage comes from a line hook: every (chunk, line) the
 * loader's Lua code runs on the main thread bumps a libFuzzer extra counter. The
 * spec itself runs in a coroutine with the loader's own count hook (the sandbox
 * limits), which replaces ours there.
 *
 * Checks: a spec is accepted as a table with a script and exactly one of grid
 * and random, or refused with a "sweep spec ..." message; never a crash, never a
 * hang past libFuzzer's timeout; afterwards the host state is as before (the same
 * global names, os and io present, strings' methods the real string table). The
 * allocator refuses past 512 MiB so that a runaway spec is a Lua memory error,
 * not a dead fuzzer.
 *   make fuzz && nice build-fuzz/fuzz_sweep_spec -runs=10000000 fuzz/corpus/fuzz_sweep_spec
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_COUNTERS (1 << 14)
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t lua_line_counters[LINE_COUNTERS];

static lua_State *L;
static int n_globals;
static size_t heap_used;
static const size_t HEAP_LIMIT = (size_t)512 << 20;

static void require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_sweep_spec: invariant broken: %s\n", what);
        abort();
    }
}

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        free(ptr);
        heap_used -= osize;
        return NULL;
    }
    if (nsize > osize && heap_used + (nsize - osize) > HEAP_LIMIT) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) heap_used = heap_used - osize + nsize;
    return p;
}

static void line_hook(lua_State *S, lua_Debug *ar) {
    if (!lua_getinfo(S, "S", ar)) return;
    uintptr_t h = (uintptr_t)ar->source * 2654435761u ^ (uintptr_t)ar->currentline * 40503u;
    lua_line_counters[(h ^ (h >> 15)) & (LINE_COUNTERS - 1)]++;
}

static int count_globals(void) {
    int n = 0;
    lua_pushglobaltable(L);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        n++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    /* bindings/ relative to this binary (build-fuzz/fuzz_sweep_spec), else to the current folder */
    char self[PATH_MAX], code[PATH_MAX + 64];
    if (!realpath((*argv)[0], self)) snprintf(self, sizeof self, "build-fuzz/fuzz_sweep_spec");
    (void)argc;
    snprintf(code, sizeof code, "package.path = '%s/../bindings/?.lua;bindings/?.lua;' .. package.path", dirname(self));
    L = lua_newstate(limited_alloc, NULL);
    require(L != NULL, "lua_newstate");
    luaL_openlibs(L);
    if (luaL_dostring(L, code) || luaL_dostring(L, "sweep_load = require('moonbert.sweep').load_spec_text")) {
        fprintf(stderr, "fuzz_sweep_spec: %s\n", lua_tostring(L, -1));
        abort();
    }
    n_globals = count_globals();
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_settop(L, 0);
    lua_getglobal(L, "sweep_load");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushliteral(L, "fuzz.lua");
    if (lua_pcall(L, 2, 1, 0) == LUA_OK) {
        require(lua_type(L, 1) == LUA_TTABLE, "an accepted spec is not a table");
        lua_getfield(L, 1, "script");
        require(lua_type(L, -1) == LUA_TSTRING, "an accepted spec has no script");
        lua_getfield(L, 1, "grid");
        lua_getfield(L, 1, "random");
        require(lua_isnil(L, -1) != lua_isnil(L, -2), "an accepted spec needs exactly one of grid and random");
    } else {
        require(lua_type(L, 1) == LUA_TSTRING, "a refusal that is not a message");
        const char *msg = lua_tostring(L, 1);
        /* a memory error may come from outside the sandbox's checks (the allocator's limit) */
        require(strncmp(msg, "sweep spec ", 11) == 0 || strcmp(msg, "not enough memory") == 0,
                "a refusal that does not name the spec");
    }
    lua_settop(L, 0);
    require(count_globals() == n_globals, "the spec changed the global names");
    lua_getglobal(L, "os");
    lua_getglobal(L, "io");
    require(lua_istable(L, -1) && lua_istable(L, -2), "the spec removed os or io");
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_getfield(L, -1, "__index");
    lua_getglobal(L, "string");
    require(lua_rawequal(L, -1, -2), "strings' methods were left swapped");
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
