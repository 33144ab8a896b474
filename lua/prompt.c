/* prompt.c -- the interactive prompt (`attnlab` with no arguments): Lua statements and expressions
 * with the module as `lab`, an expression's values printed, continuation lines while a chunk is
 * incomplete, Ctrl-C stopping the line that runs. */
#define _GNU_SOURCE
#include "program.h"
#include "attnlab.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include <luajit.h>

/* Ctrl-C while a line runs stops that line (as in lua.c): the signal handler only arms a hook,
 * and the hook raises the error at the next safe point. */
static lua_State *prompt_state;
static void stop_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}
static void prompt_sigint(int sig) {
    signal(sig, SIG_DFL); /* a second Ctrl-C kills */
    lua_sethook(prompt_state, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int incomplete(lua_State *L, int status) {
    if (status != LUA_ERRSYNTAX) return 0;
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    const char *tail = "'<eof>'";
    size_t tl = strlen(tail);
    return msg && len >= tl && strcmp(msg + len - tl, tail) == 0;
}

static char *read_line(const char *prompt, int tty) {
    if (tty) { fputs(prompt, stdout); fflush(stdout); }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) { free(line); return NULL; }
    if (n > 0 && line[n - 1] == '\n') line[n - 1] = 0;
    return line;
}

/* Returns its arguments.  An expression line runs as `return (...)(EXPR)` with this function as
 * the vararg: a plain `return f(x)` would be a tail call, which removes the line's own frame from
 * the stack, and errors inside f would then lose the "stdin:1:" of the line. */
static int pass_through(lua_State *L) { return lua_gettop(L); }

/* Loads `text` as the expression form, return (...)(TEXT), on success. */
static int load_expression(lua_State *L, const char *text) {
    lua_pushfstring(L, "return (...)(%s\n)", text);
    size_t len;
    const char *src = lua_tolstring(L, -1, &len);
    int status = luaL_loadbuffer(L, src, len, "=stdin");
    lua_remove(L, -2);
    return status;
}

/* Compiles one statement or expression (a line starting with '=' is always an expression; any
 * other is tried as one first, as in Lua 5.3's REPL), reading continuation lines while it is
 * incomplete.  Leaves the chunk (or an error message) on the stack and sets *is_expression when
 * the chunk expects pass_through as its argument; returns the load status or -1 at EOF. */
static int read_chunk(lua_State *L, int tty, int *is_expression) {
    *is_expression = 0;
    char *line = read_line("> ", tty);
    if (!line) return -1;
    int forced = line[0] == '=';
    lua_pushstring(L, forced ? line + 1 : line);
    free(line);
    if (!forced && load_expression(L, lua_tostring(L, -1)) == 0) {
        lua_remove(L, -2);
        *is_expression = 1;
        return 0;
    }
    if (!forced) lua_pop(L, 1);
    for (;;) {
        const char *text = lua_tostring(L, -1);
        const char *src = forced ? lua_pushfstring(L, "return %s", text) : text;
        int status = luaL_loadbuffer(L, src, strlen(src), "=stdin");
        if (forced) lua_remove(L, -2);
        if (!incomplete(L, status)) {
            if (forced && status == 0) {
                lua_pop(L, 1);
                status = load_expression(L, text);
                *is_expression = status == 0;
            }
            lua_remove(L, -2);
            return status;
        }
        lua_pop(L, 1);
        char *more = read_line(">> ", tty);
        if (!more) { lua_pop(L, 1); return -1; }
        lua_pushfstring(L, "%s\n%s", text, more);
        lua_remove(L, -2);
        free(more);
    }
}

int run_prompt(lua_State *L) {
    int tty = isatty(0);
    if (tty) printf("attnlab %s (%s) -- the module is `lab`; Ctrl-D quits\n", al_version(), LUAJIT_VERSION);
    prompt_state = L;
    for (;;) {
        int top = lua_gettop(L);
        int is_expression;
        int status = read_chunk(L, tty, &is_expression);
        if (status == -1) break;
        if (status != 0) {
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
            lua_settop(L, top);
            continue;
        }
        if (is_expression) lua_pushcfunction(L, pass_through);
        signal(SIGINT, prompt_sigint);
        status = call_protected(L, is_expression, LUA_MULTRET);
        signal(SIGINT, SIG_DFL);
        int nresults = lua_gettop(L) - top;
        if (status == 0 && nresults > 0) {
            lua_getglobal(L, "print");
            lua_insert(L, top + 1);
            call_protected(L, nresults, 0);
        }
        lua_settop(L, top);
        fflush(stdout);
    }
    if (tty) putchar('\n');
    return 0;
}
