/* checkpoint.c: core.checkpoint, the C half of moonbert.checkpoint (the sha256
 * manifest of runtime/manifest.c and durable writes of runtime/fsutil.c).
 *
 *   write_manifest(dir, {files...}) -> true | nil, message   hash the files, write dir/manifest.sha256
 *   verify(dir)                     -> true | nil, message   every listed file present and unchanged
 *   parse_manifest(text)            -> {{path=, sha256=}...} | nil, message
 *   fsync(path)                     -> true | nil, message   a file or a folder
 *   write_file(path, s)             -> true | nil, message   temp file, fsync, rename, fsync of the folder
 *
 * Failures of the file system are expected (a full disk): they come back as
 * nil, message naming the file and the cause; misuse raises.
 */
#include <string.h>

#include "../runtime/fsutil.h"
#include "../runtime/manifest.h"
#include "luamb.h"

static int push_status(lua_State *L, mb_status st, const mb_error *err) {
    if (st == MB_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err->msg);
    return 2;
}

static int l_write_manifest(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    if (n < 1 || n > MB_MANIFEST_MAX_FILES)
        return luaL_argerror(L, 2, lua_pushfstring(L, "1 to %d file names expected", MB_MANIFEST_MAX_FILES));
    const char **files = lua_newuserdatauv(L, (size_t)n * sizeof *files, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 2, i);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 2, "file names must be strings");
        files[i - 1] = lua_tostring(L, -1); /* kept alive by the table */
        lua_pop(L, 1);
    }
    mb_error err = {0};
    return push_status(L, mb_manifest_write(dir, files, (int)n, &err), &err);
}

static int l_verify(lua_State *L) {
    mb_error err = {0};
    return push_status(L, mb_manifest_verify(luaL_checkstring(L, 1), &err), &err);
}

static int l_parse_manifest(lua_State *L) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    mb_manifest m;
    mb_error err = {0};
    if (mb_manifest_parse(&m, text, len, luaL_optstring(L, 2, MB_MANIFEST_NAME), &err) != MB_OK)
        return push_status(L, err.code, &err);
    lua_createtable(L, (int)m.n, 0);
    for (int64_t i = 0; i < m.n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, m.entries[i].path);
        lua_setfield(L, -2, "path");
        lua_pushstring(L, m.entries[i].hex);
        lua_setfield(L, -2, "sha256");
        lua_rawseti(L, -2, i + 1);
    }
    mb_manifest_free(&m);
    return 1;
}

static int l_fsync(lua_State *L) {
    mb_error err = {0};
    return push_status(L, mb_fsync_path(luaL_checkstring(L, 1), &err), &err);
}

static int l_write_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    mb_error err = {0};
    return push_status(L, mb_write_file_durable(path, s, len, &err), &err);
}

MB_LUA_MODULE(checkpoint) {
    static const luaL_Reg fns[] = {
        {"write_manifest", l_write_manifest},
        {"verify", l_verify},
        {"parse_manifest", l_parse_manifest},
        {"fsync", l_fsync},
        {"write_file", l_write_file},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_pushstring(L, MB_MANIFEST_NAME);
    lua_setfield(L, -2, "MANIFEST");
    return 1;
}
