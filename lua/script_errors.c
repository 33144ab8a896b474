/* script_errors.c -- how a Lua error reaches the user: one line naming the user's own line (not a
 * line of the attnlab module), the traceback only with ATTNLAB_TRACEBACK=1; a script's error is also
 * recorded in the run directories it started (status.json, through attnlab.run) and ends the other
 * ranks of a data-parallel run (attnlab.dist). */
#define _GNU_SOURCE
#include "program.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>

static int is_library_source(const char *source) {
    size_t n = strlen(lua_dir);
    return n && source[0] == '@' && strncmp(source + 1, lua_dir, n) == 0 && source[1 + n] == '/';
}

/* Does `path` (a "file:line:" prefix of a message, as Lua abbreviates it) name a library file? */
static int is_library_path(const char *path, size_t len) {
    size_t n = strlen(lua_dir);
    if (n && len > n && strncmp(path, lua_dir, n) == 0 && path[n] == '/') return 1;
    /* long paths are shortened to "...tail"; the module's files all live in .../attnlab/ */
    return len > 3 && strncmp(path, "...", 3) == 0 && memmem(path, len, "/attnlab/", 9) != NULL;
}

/* Message handler for lua_pcall.  Users want the line of THEIR script, so a message located in
 * the attnlab module (or not located at all) is re-located to the innermost frame of user code.
 * The result is one line, plus the traceback when ATTNLAB_TRACEBACK=1. */
static int message_handler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
        else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    char where[PATH_MAX + 32] = "";
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0 && strcmp(ar.what, "C") != 0 && !is_library_source(ar.source)) {
            snprintf(where, sizeof where, "%s:%d: ", ar.short_src, ar.currentline);
            break;
        }
    }
    /* split an existing "path:line: " prefix off the message */
    const char *body = msg, *colon = strchr(msg, ':');
    int located = 0;
    if (colon && colon > msg) {
        const char *p = colon + 1;
        while (*p >= '0' && *p <= '9') p++;
        if (p > colon + 1 && p[0] == ':' && p[1] == ' ') {
            located = 1;
            /* re-locate only when a user frame exists; else the library's line beats nothing */
            if (where[0] && is_library_path(msg, (size_t)(colon - msg))) body = p + 2, located = 0;
        }
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (!located) luaL_addstring(&b, where);
    /* one line: a multi-line message is joined with "; " (the traceback carries the rest) */
    char last = 0;
    for (const char *p = body; *p; p++) {
        if (*p == '\n') {
            while (p[1] == '\n' || p[1] == '\t' || p[1] == ' ') p++;
            if (p[1]) luaL_addstring(&b, last == ':' || last == ';' ? " " : "; ");
            last = ' ';
        } else {
            luaL_addchar(&b, *p);
            last = *p;
        }
    }
    luaL_pushresult(&b);
    const char *tb = getenv("ATTNLAB_TRACEBACK");
    if (tb && strcmp(tb, "0") != 0 && *tb) {
        luaL_traceback(L, L, lua_tostring(L, -1), 1);
    }
    return 1;
}

/* Pushes package.loaded[module][name] when the script loaded that module and it has such a
 * function, and returns 1; else pushes nothing and returns 0.  For the calls after a script error
 * into modules that may or may not be there. */
static int push_loaded_function(lua_State *L, const char *module, const char *name) {
    int top = lua_gettop(L);
    lua_getglobal(L, "package");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "loaded");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, module);
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, name);
                if (lua_isfunction(L, -1)) {
                    lua_replace(L, top + 1);
                    lua_settop(L, top + 1);
                    return 1;
                }
            }
        }
    }
    lua_settop(L, top);
    return 0;
}

/* The script failed: attnlab.run (when the script loaded it) records the error in the directory
 * of each run it started and did not finish (status.json).  The message's first line only (the
 * rest is the traceback).  An error of its own is dropped: the script's error is the one to report. */
static void record_run_failure(lua_State *L, const char *msg) {
    if (!push_loaded_function(L, "attnlab.run", "script_failed")) return;
    lua_pushlstring(L, msg, strcspn(msg, "\n"));
    if (lua_pcall(L, 1, 0, 0) != 0) lua_pop(L, 1);
}

/* The script failed on one rank of a data-parallel run (attnlab.dist loaded): end every rank now,
 * since the others would wait forever in their next all-reduce.  A no-op on one process. */
static void abort_other_ranks(lua_State *L) {
    if (!push_loaded_function(L, "attnlab.dist", "abort")) return;
    lua_pushinteger(L, 1);
    if (lua_pcall(L, 1, 0, 0) != 0) lua_pop(L, 1);
}

/* Calls the function below `nargs` arguments with the message handler; prints a failure (and with
 * record_failure, records it in the script's run directories first). */
int call_protected_ex(lua_State *L, int nargs, int nresults, int record_failure) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, message_handler);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (status != 0) {
        if (record_failure && lua_tostring(L, -1)) record_run_failure(L, lua_tostring(L, -1));
        fflush(stdout);
        fprintf(stderr, "attnlab: %s\n", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        fflush(stderr);
        lua_pop(L, 1);
        if (record_failure) abort_other_ranks(L);
    }
    return status;
}

int call_protected(lua_State *L, int nargs, int nresults) {
    return call_protected_ex(L, nargs, nresults, 0);
}
