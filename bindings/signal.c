/* signal.c: core.signal, the flag behind graceful preemption (SLURM's SIGTERM,
 * Ctrl-C) in mb.trainer.fit.
 *
 *   watch()    catch SIGTERM and SIGINT: the first sets a flag that the trainer
 *              reads between steps; a second one while the flag is set ends the
 *              process at once (default action: killed by that signal)
 *   pending()  -> "SIGTERM" | "SIGINT" | nil, and the signal number
 *   clear()    forget a caught signal
 *   unwatch()  put back the handlers that were there before watch()
 *   pid()      this process's id (for tests that signal themselves or a child)
 *   kill(pid, "SIGTERM" | "SIGINT" | "SIGKILL") -> true | nil, message
 *
 * The handler only stores the number (async-signal-safe); all work happens in Lua.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "luamb.h"

static volatile sig_atomic_t pending_signal;
static struct sigaction saved_term, saved_int;
static int watching;

static void on_signal(int sig) {
    if (pending_signal) {
        /* the second signal: stop now, as if nobody had caught it */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    pending_signal = sig;
}

static int l_watch(lua_State *L) {
    if (!watching) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        if (sigaction(SIGTERM, &sa, &saved_term) != 0 || sigaction(SIGINT, &sa, &saved_int) != 0)
            return luaL_error(L, "signal.watch: %s", strerror(errno));
        watching = 1;
    }
    return 0;
}

static int l_unwatch(lua_State *L) {
    (void)L;
    if (watching) {
        sigaction(SIGTERM, &saved_term, NULL);
        sigaction(SIGINT, &saved_int, NULL);
        watching = 0;
    }
    return 0;
}

static const char *signal_name(int sig) {
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGKILL: return "SIGKILL";
    default: return NULL;
    }
}

static int l_pending(lua_State *L) {
    int sig = pending_signal;
    if (!sig) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, signal_name(sig) ? signal_name(sig) : "signal");
    lua_pushinteger(L, sig);
    return 2;
}

static int l_clear(lua_State *L) {
    (void)L;
    pending_signal = 0;
    return 0;
}

static int l_pid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_kill(lua_State *L) {
    lua_Integer pid = luaL_checkinteger(L, 1);
    static const char *const names[] = {"SIGTERM", "SIGINT", "SIGKILL", NULL};
    static const int sigs[] = {SIGTERM, SIGINT, SIGKILL};
    int which = luaL_checkoption(L, 2, "SIGTERM", names);
    if (pid <= 0) return luaL_argerror(L, 1, "a process id > 0 expected");
    if (kill((pid_t)pid, sigs[which]) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "kill %d: %s", (int)pid, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

MB_LUA_MODULE(signal) {
    static const luaL_Reg fns[] = {
        {"watch", l_watch}, {"unwatch", l_unwatch}, {"pending", l_pending}, {"clear", l_clear},
        {"pid", l_pid},     {"kill", l_kill},       {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
