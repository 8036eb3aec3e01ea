/* main.c: the moonbert command-line host.
 *
 * A small Lua 5.4 host, in the manner of lua.c: it sets the module paths so
 * that require "moonbert" finds bindings/ and build/lib/, preloads `mb`, and
 * then either runs a script (`moonbert run SCRIPT args...`, `arg` as lua5.4
 * gives it), starts the REPL (`moonbert repl`, GNU readline with history), or
 * hands every other subcommand to the Lua dispatcher moonbert.cli.
 *
 * Layout it relies on: the binary is <root>/<build>/bin/moonbert, Lua sources
 * are in <root>/bindings, the C module in <root>/<build>/lib. MOONBERT_HOME
 * overrides <root>. Installed (`make install PREFIX=P`): P/bin/moonbert,
 * P/share/moonbert/lua/moonbert/, P/lib/moonbert/core.so.
 */
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static lua_State *g_L;

/* ---- paths --------------------------------------------------------------- */

static void dirname_inplace(char *p) {
    char *s = strrchr(p, '/');
    if (s && s != p) *s = '\0';
    else if (s) s[1] = '\0';
}

static void set_paths(lua_State *L) {
    char exe[PATH_MAX], build[PATH_MAX], root[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) n = 0;
    exe[n] = '\0';
    snprintf(build, sizeof build, "%s", exe);
    dirname_inplace(build); /* .../build/bin */
    dirname_inplace(build); /* .../build */
    snprintf(root, sizeof root, "%s", build);
    dirname_inplace(root);
    const char *home = getenv("MOONBERT_HOME");
    if (home && *home) snprintf(root, sizeof root, "%s", home);

    /* Installed by `make install PREFIX=P`: P/bin/moonbert, the .lua files in P/share/moonbert/lua/moonbert/,
       P/lib/moonbert/core.so. (build is then P, the folder above bin/.) */
    char lua_dir[PATH_MAX + 32], probe[PATH_MAX + 64];
    snprintf(lua_dir, sizeof lua_dir, "%s/bindings", root);
    snprintf(probe, sizeof probe, "%s/share/moonbert/lua/moonbert/init.lua", build);
    if (!(home && *home) && access(probe, R_OK) == 0) {
        snprintf(lua_dir, sizeof lua_dir, "%s/share/moonbert/lua", build);
        snprintf(root, sizeof root, "%s/share/moonbert", build);
    }

    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_dir, lua_dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pushfstring(L, "%s/lib/?.so;", build);
    lua_getfield(L, -2, "cpath");
    lua_concat(L, 2);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_pushstring(L, root);
    lua_setglobal(L, "MOONBERT_ROOT");
}

/* ---- running code with tracebacks ----------------------------------------- */

/* MOONBERT_DEBUG=1: tracebacks for user errors too. */
static int debug_on(void) {
    const char *d = getenv("MOONBERT_DEBUG");
    return d && *d && strcmp(d, "0") != 0;
}

/* A user's mistake raised by moonbert.args (fail / usage_error): a table with `message` and
   `fail` or `usage_error` set. Returns 1 (fail) or 2 (usage) for such an error at index i, else 0. */
static int user_error_kind(lua_State *L, int i) {
    if (lua_type(L, i) != LUA_TTABLE) return 0;
    i = lua_absindex(L, i);
    lua_getfield(L, i, "usage_error");
    int usage = lua_toboolean(L, -1);
    lua_getfield(L, i, "fail");
    int fail = lua_toboolean(L, -1);
    int msg = lua_getfield(L, i, "message") == LUA_TSTRING;
    lua_pop(L, 3);
    if (!msg) return 0;
    return usage ? 2 : fail ? 1 : 0;
}

static int msghandler(lua_State *L) {
    /* A user error keeps its table (no traceback) unless MOONBERT_DEBUG asks for one. */
    if (user_error_kind(L, 1)) {
        if (!debug_on()) return 1;
        lua_getfield(L, 1, "message");
        lua_replace(L, 1);
    }
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void lstop(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void laction(int sig) {
    signal(sig, SIG_DFL);
    lua_sethook(g_L, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int docall(lua_State *L, int narg, int nres) {
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    g_L = L;
    signal(SIGINT, laction);
    int status = lua_pcall(L, narg, nres, base);
    signal(SIGINT, SIG_DFL);
    lua_remove(L, base);
    return status;
}

static int report(lua_State *L, int status) {
    if (status != LUA_OK) {
        fprintf(stderr, "moonbert: %s\n", lua_tostring(L, -1));
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

static int preload_mb(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushstring(L, "moonbert");
    int status = docall(L, 1, 1);
    if (status != LUA_OK) return report(L, status);
    lua_setglobal(L, "mb");
    return LUA_OK;
}

/* arg table: arg[0] = script, arg[1..] = its arguments, negative = before. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
    lua_createtable(L, argc - script - 1, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int run_script(lua_State *L, int argc, char **argv, int script) {
    create_arg_table(L, argv, argc, script);
    int status = luaL_loadfile(L, strcmp(argv[script], "-") == 0 ? NULL : argv[script]);
    if (status == LUA_OK) {
        int n = argc - script - 1;
        luaL_checkstack(L, n + 3, "too many arguments to script");
        for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
        status = docall(L, n, 0);
    }
    int code = 1;
    if (status != LUA_OK) {
        /* A user error (bad data, model or option): its message alone, exit 1 (usage: 2). */
        int kind = user_error_kind(L, -1);
        if (kind) {
            code = kind;
            lua_getfield(L, -1, "message");
            lua_replace(L, -2);
        }
        /* finalizers run by lua_close (an unended store run) record why it died */
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "moonbert.script_error");
    }
    return report(L, status) == LUA_OK ? 0 : code;
}

/* ---- REPL ----------------------------------------------------------------- */

static const char *history_path(void) {
    static char path[PATH_MAX];
    const char *home = getenv("HOME");
    snprintf(path, sizeof path, "%s/.moonbert_history", home ? home : ".");
    return path;
}

static int incomplete(lua_State *L, int status) {
    if (status == LUA_ERRSYNTAX) {
        size_t lmsg;
        const char *msg = lua_tolstring(L, -1, &lmsg);
        const char *eof = "<eof>";
        size_t le = strlen(eof);
        if (lmsg >= le && strcmp(msg + lmsg - le, eof) == 0) {
            lua_pop(L, 1);
            return 1;
        }
    }
    return 0;
}

/* Print every value left on the stack with moonbert.repl's formatter. */
static void print_results(lua_State *L) {
    int n = lua_gettop(L);
    if (n == 0) return;
    lua_getglobal(L, "require");
    lua_pushstring(L, "moonbert.repl");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        lua_getglobal(L, "print");
    } else {
        lua_getfield(L, -1, "print");
        lua_remove(L, -2);
    }
    lua_insert(L, 1);
    if (docall(L, n, 0) != LUA_OK) report(L, LUA_ERRRUN);
}

/* Ctrl-C at the prompt clears the line and shows a fresh prompt, as lua5.4 and
   Python do; it does not exit. A Ctrl-C on a continuation line (">> ") also drops
   the unfinished chunk: the next line starts a new one. (Ctrl-C while a chunk
   runs is laction/lstop above: "interrupted!".) */
static volatile sig_atomic_t g_prompt_sigint;

static void prompt_sigint(int sig) {
    (void)sig;
    g_prompt_sigint = 1;
    if (write(STDOUT_FILENO, "\n", 1) < 0) { /* nothing to do */ }
    rl_on_new_line();
    rl_replace_line("", 0);
    rl_set_prompt("> ");
    rl_redisplay();
}

/* ---- tab completion: moonbert.repl.complete(word) -> list of whole words ---- */

static lua_State *g_complete_L;
static char **g_matches;
static int g_nmatches, g_imatch;

static char *match_generator(const char *text, int state) {
    (void)text;
    if (state == 0) g_imatch = 0;
    if (g_imatch < g_nmatches) return strdup(g_matches[g_imatch++]);
    return NULL;
}

static void free_matches(void) {
    for (int i = 0; i < g_nmatches; i++) free(g_matches[i]);
    free(g_matches);
    g_matches = NULL;
    g_nmatches = 0;
}

static char **complete(const char *text, int start, int end) {
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1; /* no file-name completion */
    free_matches();
    lua_State *L = g_complete_L;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "moonbert.repl");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE) {
        lua_getfield(L, -1, "complete");
        lua_pushstring(L, text);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE) {
            int n = (int)lua_rawlen(L, -1);
            g_matches = calloc((size_t)n + 1, sizeof *g_matches);
            for (int i = 1; g_matches && i <= n; i++) {
                lua_rawgeti(L, -1, i);
                const char *m = lua_tostring(L, -1);
                if (m) g_matches[g_nmatches++] = strdup(m);
                lua_pop(L, 1);
            }
        }
    }
    lua_settop(L, top);
    if (g_nmatches == 0) return NULL;
    rl_completion_append_character = '\0';
    return rl_completion_matches(text, match_generator);
}

/* One line of input without its newline (malloc'd; NULL at end of input).
   A terminal gets GNU readline with prompts and history; piped input
   (`echo '1+1' | moonbert repl`) is read plainly, with no prompts or echo,
   so that the output holds only the results. */
static int g_tty;

static char *read_line(const char *prompt) {
    if (g_tty) {
        signal(SIGINT, prompt_sigint);
        char *line = readline(prompt);
        signal(SIGINT, SIG_DFL);
        return line;
    }
    size_t cap = 256, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    int c;
    while ((c = getchar()) != EOF && c != '\n') {
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        buf[len++] = (char)c;
    }
    if (c == EOF && len == 0) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static int repl(lua_State *L) {
    g_tty = isatty(STDIN_FILENO);
    if (g_tty) {
        printf("moonbert REPL (Lua 5.4). `mb` is loaded; mb.help() lists the modules. Ctrl-D exits.\n");
        using_history();
        read_history(history_path());
        rl_catch_signals = 0; /* SIGINT at the prompt is prompt_sigint's */
        g_complete_L = L;
        rl_readline_name = "moonbert";
        rl_attempted_completion_function = complete;
        /* '.' and ':' are part of a word: mb.tok<Tab>, tok:enc<Tab> */
        rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]";
    }
    char *line, *pending = NULL; /* a line typed after Ctrl-C on a continuation line */
    for (;;) {
        g_prompt_sigint = 0;
        line = pending ? pending : read_line("> ");
        pending = NULL;
        if (!line) break;
        if (!*line) {
            free(line);
            continue;
        }
        lua_settop(L, 0);
        /* First as an expression (`return ...`), then as a statement, then
           keep reading while the chunk is incomplete. */
        lua_pushfstring(L, "return %s", line);
        int status = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=stdin");
        lua_remove(L, -2);
        char *full = strdup(line);
        if (status != LUA_OK) {
            lua_pop(L, 1);
            for (;;) {
                status = luaL_loadbuffer(L, full, strlen(full), "=stdin");
                if (!incomplete(L, status)) break;
                g_prompt_sigint = 0;
                char *more = read_line(">> ");
                if (more && g_prompt_sigint) { /* Ctrl-C: the chunk is dropped, this line starts anew */
                    pending = more;
                    break;
                }
                if (!more) {
                    /* End of input inside a chunk: report it as the syntax error it is. */
                    status = luaL_loadbuffer(L, full, strlen(full), "=stdin");
                    break;
                }
                size_t nf = strlen(full) + strlen(more) + 2;
                char *joined = malloc(nf);
                snprintf(joined, nf, "%s\n%s", full, more);
                free(full);
                free(more);
                full = joined;
            }
        }
        if (pending) { /* the dropped chunk is neither run nor kept */
            lua_settop(L, 0);
            free(full);
            free(line);
            continue;
        }
        if (g_tty) { /* saved at once: a killed session keeps its history */
            add_history(full);
            if (append_history(1, history_path()) != 0) write_history(history_path());
            history_truncate_file(history_path(), 1000);
        }
        free(full);
        free(line);
        if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK) print_results(L);
        else report(L, status);
        fflush(stdout);
    }
    if (g_tty) printf("\n");
    free_matches();
    return 0;
}

/* ---- OpenBLAS kernel choice ---------------------------------------------- */

/* OpenBLAS 0.3.21 (Debian 12) does not know recent Xeons (Sapphire/Emerald
   Rapids) and falls back to its generic Prescott kernel, 4-5x slower. Its
   choice is made when the library loads (when moonbert.core is required), so
   the host names the kernel first from the CPU's features, unless the user did. */
static void choose_openblas_kernel(void) {
    const char *set = getenv("OPENBLAS_CORETYPE");
    if (set && *set) return;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        setenv("OPENBLAS_CORETYPE", "Haswell", 0);
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv) {
    choose_openblas_kernel();
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "moonbert: cannot create Lua state (out of memory)\n");
        return 1;
    }
    luaL_openlibs(L);
    set_paths(L);
    int rc;
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (cmd && strcmp(cmd, "run") == 0 && argc > 2 && strcmp(argv[2], "--help") != 0 &&
        strcmp(argv[2], "-h") != 0) {
        rc = preload_mb(L) == LUA_OK ? run_script(L, argc, argv, 2) : 1;
    } else if (cmd && strcmp(cmd, "repl") == 0 && !(argc > 2 && (strcmp(argv[2], "--help") == 0 ||
                                                                   strcmp(argv[2], "-h") == 0))) {
        rc = preload_mb(L) == LUA_OK ? repl(L) : 1;
    } else {
        /* Everything else: require("moonbert.cli").main({argv...}) -> exit code. */
        lua_getglobal(L, "require");
        lua_pushstring(L, "moonbert.cli");
        int status = docall(L, 1, 1);
        if (status == LUA_OK) {
            lua_getfield(L, -1, "main");
            lua_createtable(L, argc, 0);
            for (int i = 1; i < argc; i++) {
                lua_pushstring(L, argv[i]);
                lua_rawseti(L, -2, i);
            }
            status = docall(L, 1, 1);
        }
        if (status != LUA_OK) rc = report(L, status) ? 1 : 0;
        else rc = (int)luaL_optinteger(L, -1, 0);
    }
    fflush(stdout);
    lua_close(L);
    return rc;
}
