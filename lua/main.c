/* main.c -- the `attnlab` program: LuaJIT with the attnlab module preloaded.
 *
 *   attnlab run SCRIPT.lua [key=value ...] [--out DIR [--force]] [--view] [--device cpu|cuda] [--threads N]
 *   attnlab SCRIPT.lua ...            same as run
 *   attnlab view RUN_DIR [--screenshot FILE.png] [--step N] [--layout L] [...]   (attnlab-view)
 *   attnlab sweep SCRIPT.lua key=a,b seed=1..8 [--local N | --slurm ...]   a grid of runs
 *                                     (lua/attnlab/sweep.lua; its arguments are passed on unparsed)
 *   attnlab -e 'lua code'             a chunk, with the module as the global `lab`
 *   attnlab help [NAME]               the entry of docs/reference.md for NAME (lab.help_text)
 *   attnlab                           an interactive prompt
 *   attnlab --help | --version
 *
 * The program links libattnlab statically and exports its symbols (-Wl,-E), so lua/attnlab finds
 * the al_* functions through ffi.C.  What the command line said reaches Lua as the global table
 * ATTNLAB_CLI, which lua/attnlab/run.lua reads (overrides, --out, device, threads).
 *
 * The viewer is a separate program, attnlab-view beside this one: viewer_launch.c starts it.
 *
 * This file is main() and the Lua state; program.h lists the other parts (the command line, the
 * error handling, the prompt, the viewer's launch).
 *
 * A script error after lab.run.start is also recorded in the run directory: script_errors.c hands the
 * message to attnlab.run's script_failed, which writes status.json {"status": "failed", ...}.
 *
 * Exit status: 0 success, 1 a script or module error, 2 a usage error (bad flag, missing
 * argument, missing script).  Every error is one line on stderr; ATTNLAB_TRACEBACK=1 adds the
 * Lua traceback after it.
 */
#define _GNU_SOURCE
#include "program.h"
#include "attnlab.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>
#include <luajit.h>

/* ---- finding lua/ ----------------------------------------------------------------------- */

static int has_module(const char *dir) {
    char path[4 * PATH_MAX];
    snprintf(path, sizeof path, "%s/attnlab/init.lua", dir);
    return access(path, R_OK) == 0;
}

/* The first of $ATTNLAB_HOME/lua, <exe dir>/lua, <exe dir>/../lua that holds attnlab/init.lua,
 * canonicalised (the error handler compares frame sources against it).  Empty when none. */
static void find_lua_dir(char *out, size_t outsize) {
    char candidates[3][PATH_MAX + 16];
    int n = 0;
    const char *home = getenv("ATTNLAB_HOME");
    if (home && *home) snprintf(candidates[n++], sizeof candidates[0], "%s/lua", home);
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(candidates[n++], sizeof candidates[0], "%s/lua", exe);
        snprintf(candidates[n++], sizeof candidates[0], "%s/../lua", exe);
    }
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        char real[PATH_MAX];
        if (has_module(candidates[i]) && realpath(candidates[i], real)) {
            snprintf(out, outsize, "%s", real);
            return;
        }
    }
}

/* found before the Lua state exists; script_errors.c tells the module's frames from the user's by it */
char lua_dir[PATH_MAX];

/* ---- the Lua state ---------------------------------------------------------------------- */

/* "123" -> 123, "true" -> true, anything else stays the string (Lua's own number syntax). */
static void push_override_value(lua_State *L, const char *v) {
    if (!strcmp(v, "true")) lua_pushboolean(L, 1);
    else if (!strcmp(v, "false")) lua_pushboolean(L, 0);
    else {
        lua_pushstring(L, v);
        if (*v && lua_isnumber(L, -1)) {
            lua_Number x = lua_tonumber(L, -1);
            lua_pop(L, 1);
            lua_pushnumber(L, x);
        }
    }
}

static void set_field_string(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* ATTNLAB_CLI = {script=, overrides={}, raw_overrides={}, out=, force=, view=, device=, threads=,
 *                lua_dir=, program=, stderr_tty=}  (raw_overrides keeps the text, for string-typed keys) */
static void push_cli_table(lua_State *L, const cli *c) {
    lua_newtable(L);
    set_field_string(L, "script", c->script);
    lua_newtable(L);
    lua_newtable(L);
    for (int i = 0; i < c->n_overrides; i++) {
        const char *kv = c->overrides[i], *eq = strchr(kv, '=');
        lua_pushlstring(L, kv, (size_t)(eq - kv));
        lua_pushvalue(L, -1);
        push_override_value(L, eq + 1);
        lua_settable(L, -5);
        lua_pushstring(L, eq + 1);
        lua_settable(L, -3);
    }
    lua_setfield(L, -3, "raw_overrides");
    lua_setfield(L, -2, "overrides");
    set_field_string(L, "out", c->out);
    lua_pushboolean(L, c->force);
    lua_setfield(L, -2, "force");
    lua_pushboolean(L, c->view);
    lua_setfield(L, -2, "view");
    lua_pushcfunction(L, lua_open_viewer);
    lua_setfield(L, -2, "open_viewer");
    set_field_string(L, "device", c->device);
    if (c->threads > 0) {
        lua_pushinteger(L, c->threads);
        lua_setfield(L, -2, "threads");
    }
    set_field_string(L, "lua_dir", lua_dir[0] ? lua_dir : NULL);
    /* the program itself, for what starts more of it (attnlab.sweep runs each point as a child) */
    char program[PATH_MAX];
    if (realpath("/proc/self/exe", program)) set_field_string(L, "program", program);
    lua_pushboolean(L, isatty(2));
    lua_setfield(L, -2, "stderr_tty");
}

/* arg as lua.c builds it: arg[0] the script, arg[1..] what follows, arg[-k..-1] what precedes. */
static void push_arg_table(lua_State *L, int argc, char **argv, int script_index) {
    lua_createtable(L, argc - script_index, script_index + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script_index);
    }
}

static int set_package_path(lua_State *L) {
    if (!lua_dir[0]) return 0;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    return 0;
}

/* lab = require "attnlab" */
static int load_module(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushstring(L, "attnlab");
    if (call_protected(L, 1, 1) != 0) return -1;
    lua_setglobal(L, "lab");
    /* help(x): the reference entry for x, in scripts, -e chunks and the prompt (a script's own
     * global of that name wins, as it is set later) */
    lua_getglobal(L, "lab");
    lua_getfield(L, -1, "help");
    lua_setglobal(L, "help");
    lua_pop(L, 1);
    return 0;
}

/* `attnlab help [NAME]`: prints the entry on stdout, or the reason there is none on stderr (status 1). */
static int print_help_entry(lua_State *L, const char *name) {
    lua_getglobal(L, "lab");
    lua_getfield(L, -1, "help_text");
    lua_remove(L, -2);
    if (name) lua_pushstring(L, name);
    else lua_pushnil(L);
    if (call_protected(L, 1, 2) != 0) return EXIT_SCRIPT_ERROR;
    int status = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
        puts(lua_tostring(L, -2));
    } else {
        fprintf(stderr, "attnlab: %s\n", lua_tostring(L, -1) ? lua_tostring(L, -1) : "help: no entry");
        status = EXIT_SCRIPT_ERROR;
    }
    lua_pop(L, 2);
    return status;
}

/* ---- main ------------------------------------------------------------------------------- */

static int run_script(lua_State *L, const cli *c, int argc, char **argv) {
    struct stat st;
    errno = 0;
    if (stat(c->script, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "attnlab: cannot open script '%s': %s\n", c->script,
                errno ? strerror(errno) : "not a regular file");
        return EXIT_USAGE;
    }
    push_arg_table(L, argc, argv, c->script_index);
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, c->script) != 0) {
        fprintf(stderr, "attnlab: %s\n", lua_tostring(L, -1));
        return EXIT_SCRIPT_ERROR;
    }
    /* the script gets the arguments after it as `...`, like lua.c */
    int nargs = argc - c->script_index - 1;
    if (c->profile) {   /* attnlab.profile.script(chunk, ...) runs the chunk under the profiler */
        lua_getglobal(L, "require");
        lua_pushstring(L, "attnlab.profile");
        if (lua_pcall(L, 1, 1, 0) != 0) {
            fprintf(stderr, "attnlab: --profile: %s\n", lua_tostring(L, -1));
            return EXIT_SCRIPT_ERROR;
        }
        lua_getfield(L, -1, "script");
        lua_remove(L, -2);
        lua_insert(L, -2);
        nargs++;
    }
    for (int i = c->script_index + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    return call_protected_ex(L, nargs, 0, 1) ? EXIT_SCRIPT_ERROR : 0;
}

/* `attnlab sweep ARGS...`: require("attnlab.sweep").main({ARGS...}) returns the exit status. */
static int run_sweep(lua_State *L, int first, int argc, char **argv) {
    lua_getglobal(L, "require");
    lua_pushstring(L, "attnlab.sweep");
    if (call_protected(L, 1, 1) != 0) return EXIT_SCRIPT_ERROR;
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    lua_createtable(L, argc - first, 0);
    for (int i = first; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - first + 1);
    }
    if (call_protected(L, 1, 1) != 0) return EXIT_SCRIPT_ERROR;
    int status = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : EXIT_SCRIPT_ERROR;
    lua_pop(L, 1);
    return status;
}

static int attnlab_main(int argc, char **argv, cli *cp) {
    cli c;
    int want_help = 0, want_version = 0;
    int status = parse_command_line(argc, argv, &c, &want_help, &want_version);
    *cp = c;
    if (status) return status;
    if (want_help) { fputs(usage_text, stdout); return 0; }
    if (want_version) {
        const char *advice = al_blas_advice();
        const char *linear = al_linear_kernel();
        if (!linear) { fprintf(stderr, "attnlab: %s\n", al_last_error()); return EXIT_USAGE; }
        printf("attnlab %s (%s; OpenBLAS kernel %s; nn.Linear's products: %s)\n", al_version(), LUAJIT_VERSION,
               al_blas_kernel(), linear);
        if (advice) printf("note: %s\n", advice);
        return 0;
    }
    if (c.mode == MODE_VIEW) {   /* flags came before `view` (main() handles `attnlab view ...`) */
        int first = 1;
        while (first < argc && strcmp(argv[first], "view")) first++;
        return exec_viewer(first + 1, argc, argv);
    }
    if (c.device && !strcmp(c.device, "cuda") && !al_cuda_available()) {
        fprintf(stderr, "attnlab: --device cuda: %s\n", al_cuda_unavailable_reason());
        return EXIT_USAGE;
    }
    if (!al_linear_kernel()) {   /* a value of ATTNLAB_SGEMM it does not take: said before anything runs */
        fprintf(stderr, "attnlab: %s\n", al_last_error());
        return EXIT_USAGE;
    }
    /* before the module loads, so that anything it sets up sees the right thread count */
    if (c.threads > 0) al_set_num_threads(c.threads);

    find_lua_dir(lua_dir, sizeof lua_dir);
    lua_State *L = luaL_newstate();
    if (!L) { fputs("attnlab: cannot create the Lua state (out of memory)\n", stderr); return 1; }
    luaL_openlibs(L);
    set_package_path(L);
    push_cli_table(L, &c);
    lua_setglobal(L, "ATTNLAB_CLI");
    if (load_module(L) != 0) {
        if (!lua_dir[0])
            fputs("attnlab: (no lua/attnlab/init.lua found under $ATTNLAB_HOME/lua, or lua/ or ../lua "
                  "beside the program)\n", stderr);
        lua_close(L);
        return EXIT_SCRIPT_ERROR;
    }

    if (c.mode == MODE_RUN) status = run_script(L, &c, argc, argv);
    else if (c.mode == MODE_SWEEP) status = run_sweep(L, c.sweep_index + 1, argc, argv);
    else if (c.mode == MODE_HELP) status = print_help_entry(L, c.help_name);
    else if (c.mode == MODE_EVAL) {
        push_arg_table(L, argc, argv, 0);
        lua_setglobal(L, "arg");
        if (luaL_loadbuffer(L, c.code, strlen(c.code), "=(command line)") != 0) {
            fprintf(stderr, "attnlab: %s\n", lua_tostring(L, -1));
            status = EXIT_SCRIPT_ERROR;
        } else {
            status = call_protected_ex(L, 0, 0, 1) ? EXIT_SCRIPT_ERROR : 0;
        }
    } else {
        status = run_prompt(L);
    }
    fflush(stdout);
    lua_close(L);
    return status;
}

/* libgomp reads its spin settings once, when it is loaded, i.e. before main().  Its default (spin
 * for ~300,000 iterations before sleeping) is ruinous on a 2-vCPU VM: a worker spinning between the
 * hundreds of small parallel regions of a training step made the step 5x slower than one thread
 * (bench/RESULTS.md).  So, unless the user chose a policy, set a short spin and start again. */
static void tame_openmp_spinning(char **argv) {
    if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY") || getenv("ATTNLAB_NO_REEXEC")) return;
    setenv("GOMP_SPINCOUNT", "1000", 1);
    setenv("ATTNLAB_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* if exec fails, carry on with the default spinning: slower, not wrong */
}

int main(int argc, char **argv) {
    /* the viewer takes its own options (--layout, --size ...): hand them over unparsed */
    if (argc >= 2 && !strcmp(argv[1], "view")) return exec_viewer(2, argc, argv);
    tame_openmp_spinning(argv);
    cli c;
    int status = attnlab_main(argc, argv, &c);
    free(c.overrides);
    return status;
}

