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
 * The viewer is a separate program, attnlab-view beside this one (or $ATTNLAB_VIEWER): `attnlab
 * view ...` becomes it (exec, all arguments passed on), and `attnlab run --view` starts it as a
 * child in its own process group once run.lua knows the run directory (ATTNLAB_CLI.open_viewer), so
 * the training never waits on drawing, closing the window leaves the training running, and Ctrl-C
 * on the training leaves the window open on the finished record.
 *
 * A script error after lab.run.start is also recorded in the run directory: run_script hands the
 * message to attnlab.run's script_failed, which writes status.json {"status": "failed", ...}.
 *
 * Exit status: 0 success, 1 a script or module error, 2 a usage error (bad flag, missing
 * argument, missing script).  Every error is one line on stderr; ATTNLAB_TRACEBACK=1 adds the
 * Lua traceback after it.
 */
#define _GNU_SOURCE
#include "attnlab.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>
#include <luajit.h>

enum { EXIT_SCRIPT_ERROR = 1, EXIT_USAGE = 2 };
typedef enum { MODE_NONE, MODE_RUN, MODE_VIEW, MODE_EVAL, MODE_HELP, MODE_SWEEP } cli_mode;

/* Everything the command line said, as parsed; pointers point into argv. */
typedef struct cli {
    cli_mode mode;
    const char *script;      /* run */
    int script_index;        /* argv index of the script, for the `arg` table */
    const char *code;        /* -e */
    const char *run_dir;     /* view */
    const char *help_name;   /* help NAME (NULL: the index) */
    int sweep_index;         /* sweep: argv index of the word `sweep`; what follows is attnlab.sweep's */
    const char *screenshot;  /* view --screenshot */
    long view_step;          /* view --step, -1 when absent */
    const char *out;         /* run --out */
    int force;               /* run --force: --out DIR may hold a run, whose files are deleted */
    int profile;             /* run --profile: the op profiler's table at the end (lab.profile) */
    int view;                /* run --view */
    const char *device;      /* "cpu" (default) or "cuda" */
    int threads;             /* 0 when absent */
    int n_overrides;
    const char **overrides;  /* "key=value" strings */
} cli;

static const char *usage_text =
    "usage:\n"
    "  attnlab run SCRIPT.lua [key=value ...] [--out DIR [--force]] [--view] [--profile] [--device cpu|cuda]\n"
    "              [--threads N]\n"
    "  attnlab SCRIPT.lua [...]        same as run\n"
    "  attnlab view RUN_DIR [--screenshot FILE.png] [--step N] [--layout L] [--diff STEP] [--layer L]\n"
    "               [--head H] [--query Q] [--log-y] [--size WxH] [--scale S] [--compare RUN_DIR2]\n"
    "               [--font FILE.ttf] [--follow]   (attnlab view --help describes each; for tests:\n"
    "               --events FILE, --print-layout, --bench-frames N)\n"
    "  attnlab sweep SCRIPT.lua key=a,b,c seed=1..8 [--zip] [--out DIR] [--local N | --slurm [sbatch options]]\n"
    "  attnlab sweep --resume DIR | --collect DIR | --status DIR\n"
    "                                  a grid of runs, one run directory per point (attnlab sweep --help;\n"
    "                                  docs/sweeps.md)\n"
    "  attnlab help [NAME]             the reference entry for NAME, e.g. attnlab help nn.TransformerBlock\n"
    "                                  (docs/reference.md; help(NAME) or help(value) in scripts and the prompt)\n"
    "  attnlab -e 'lua code'           run a chunk with the module loaded as `lab`\n"
    "  attnlab                         interactive prompt with the module loaded as `lab`\n"
    "  attnlab --help | -h | --version | -v\n"
    "\n"
    "key=value overrides a key of the script's config (numbers, true/false and strings);\n"
    "resume=RUN_DIR/checkpoint.safetensors continues an interrupted or killed run in place\n"
    "(checkpoints are written on Ctrl-C and every checkpoint_every=MINUTES, default 10, 0 = off).\n"
    "--out DIR refuses a directory that already holds a run; --force deletes that run's files and\n"
    "starts afresh there.\n"
    "--profile times every op forward and backward while the script runs and prints the table\n"
    "(calls, total and self time, GFLOP/s) at the end, also into RUN_DIR/profile.txt.\n"
    "Environment: ATTNLAB_HOME (where lua/ lives), ATTNLAB_TRACEBACK=1 (tracebacks on errors).\n";

/* One line on stderr and the usage exit status. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("attnlab: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see attnlab --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* ---- command line ----------------------------------------------------------------------- */

static int is_override(const char *s) {
    const char *eq = strchr(s, '=');
    if (!eq || eq == s) return 0;
    for (const char *p = s; p < eq; p++)
        if (!(*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (p > s && *p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

/* Flags take their value as the next argument or after '=' (--out=DIR).  Returns 0 or the exit
 * status of a usage error. */
static int parse_command_line(int argc, char **argv, cli *c, int *want_help, int *want_version) {
    memset(c, 0, sizeof *c);
    c->device = "cpu";
    c->view_step = -1;
    c->overrides = calloc((size_t)argc + 1, sizeof *c->overrides);
    int flags_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!flags_done && a[0] == '-' && a[1]) {
            if (strcmp(a, "--") == 0) { flags_done = 1; continue; }
            char name[64];
            const char *value = NULL;
            const char *eq = strchr(a, '=');
            size_t len = eq && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
            if (len >= sizeof name) len = sizeof name - 1;
            memcpy(name, a, len);
            name[len] = 0;
            if (eq && a[1] == '-') value = eq + 1;
            int takes_value = !strcmp(name, "--out") || !strcmp(name, "--device") ||
                              !strcmp(name, "--threads") || !strcmp(name, "--screenshot") ||
                              !strcmp(name, "--step") || !strcmp(name, "-e");
            if (takes_value && !value) {
                if (i + 1 >= argc) return usage_error("%s needs a value", name);
                value = argv[++i];
            } else if (!takes_value && value) {
                return usage_error("%s takes no value", name);
            }
            if (!strcmp(name, "--help") || !strcmp(name, "-h")) *want_help = 1;
            else if (!strcmp(name, "--version") || !strcmp(name, "-v")) *want_version = 1;
            else if (!strcmp(name, "--view")) c->view = 1;
            else if (!strcmp(name, "--force")) c->force = 1;
            else if (!strcmp(name, "--profile")) c->profile = 1;
            else if (!strcmp(name, "--out")) {
                if (!*value) return usage_error("--out needs a directory");
                c->out = value;
            } else if (!strcmp(name, "--device")) {
                if (strcmp(value, "cpu") && strcmp(value, "cuda"))
                    return usage_error("--device must be cpu or cuda, not '%s'", value);
                c->device = value;
            } else if (!strcmp(name, "--threads")) {
                char *end;
                long n = strtol(value, &end, 10);
                if (*end || end == value || n < 1 || n > 4096)
                    return usage_error("--threads must be a positive integer, not '%s'", value);
                c->threads = (int)n;
            } else if (!strcmp(name, "--screenshot")) c->screenshot = value;
            else if (!strcmp(name, "--step")) {
                char *end;
                long n = strtol(value, &end, 10);
                if (*end || end == value || n < 0)
                    return usage_error("--step must be a step number, not '%s'", value);
                c->view_step = n;
            } else if (!strcmp(name, "-e")) {
                if (c->mode != MODE_NONE && c->mode != MODE_EVAL)
                    return usage_error("-e cannot be combined with a script or `view`");
                c->mode = MODE_EVAL;
                c->code = value;
            } else {
                return usage_error("unknown flag '%s'", a);
            }
            continue;
        }
        /* a positional argument: the subcommand, the script or run dir, or an override */
        if (c->mode == MODE_NONE) {
            if (!strcmp(a, "run")) c->mode = MODE_RUN;
            else if (!strcmp(a, "view")) c->mode = MODE_VIEW;
            else if (!strcmp(a, "help")) c->mode = MODE_HELP;
            else if (!strcmp(a, "sweep")) {
                /* the sweep parses its own arguments (attnlab.sweep_cli): stop here */
                c->mode = MODE_SWEEP;
                c->sweep_index = i;
                break;
            }
            else { c->mode = MODE_RUN; c->script = a; c->script_index = i; }
        } else if (c->mode == MODE_RUN && !c->script) {
            c->script = a;
            c->script_index = i;
        } else if (c->mode == MODE_VIEW && !c->run_dir) {
            c->run_dir = a;
        } else if (c->mode == MODE_HELP && !c->help_name) {
            c->help_name = a;
        } else if (c->mode == MODE_RUN && is_override(a)) {
            c->overrides[c->n_overrides++] = a;
        } else if (c->mode == MODE_RUN) {
            return usage_error("unexpected argument '%s' (config overrides are key=value)", a);
        } else {
            return usage_error("unexpected argument '%s'", a);
        }
    }
    if (*want_help || *want_version) return 0;
    if (c->mode == MODE_SWEEP && (c->out || c->view || c->force || c->profile || c->threads || c->code ||
                                  strcmp(c->device, "cpu")))
        return usage_error("the flags of `attnlab sweep` go after the word sweep (attnlab sweep --help)");
    if (c->mode == MODE_RUN && !c->script) return usage_error("run: which script? (attnlab run SCRIPT.lua)");
    if (c->mode == MODE_VIEW && !c->run_dir) return usage_error("view: which run directory?");
    if (c->mode != MODE_RUN && (c->out || c->view || c->force || c->profile))
        return usage_error("%s applies to `attnlab run` only",
                           c->out ? "--out" : c->view ? "--view" : c->force ? "--force" : "--profile");
    if (c->mode != MODE_VIEW && (c->screenshot || c->view_step >= 0))
        return usage_error("%s applies to `attnlab view` only", c->screenshot ? "--screenshot" : "--step");
    return 0;
}

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
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            char real[PATH_MAX];
            struct stat st;
            /* second pass: a lua/ without init.lua still serves attnlab.run and friends */
            int ok = pass == 0 ? has_module(candidates[i])
                               : stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode);
            if (ok && realpath(candidates[i], real)) {
                snprintf(out, outsize, "%s", real);
                return;
            }
        }
    }
}

/* ---- errors ----------------------------------------------------------------------------- */

static char lua_dir[PATH_MAX];

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
static int call_protected_ex(lua_State *L, int nargs, int nresults, int record_failure) {
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

static int call_protected(lua_State *L, int nargs, int nresults) {
    return call_protected_ex(L, nargs, nresults, 0);
}

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

/* ---- the viewer ------------------------------------------------------------------------- */

extern char **environ;

/* $ATTNLAB_VIEWER, else attnlab-view in the folder of the running program (symlinks resolved). */
static void viewer_path(char *out, size_t outsize) {
    const char *env = getenv("ATTNLAB_VIEWER");
    if (env && *env) { snprintf(out, outsize, "%s", env); return; }
    char exe[PATH_MAX];
    if (!realpath("/proc/self/exe", exe)) { snprintf(out, outsize, "attnlab-view"); return; }
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(out, outsize, "%s/attnlab-view", exe);
}

/* `attnlab view ARGS...` is `attnlab-view ARGS...` (argv[first] onwards); returns only when the
 * exec failed. */
static int exec_viewer(int first, int argc, char **argv) {
    char path[PATH_MAX + 32];
    viewer_path(path, sizeof path);
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) return EXIT_SCRIPT_ERROR;
    args[0] = path;
    for (int i = first; i < argc; i++) args[i - first + 1] = argv[i];
    execv(path, args);
    fprintf(stderr, "attnlab: view: cannot start the viewer '%s': %s (run `make`)\n", path, strerror(errno));
    free(args);
    return EXIT_SCRIPT_ERROR;
}

/* ATTNLAB_CLI.open_viewer(run_dir) -> true, or nil and a message.  posix_spawn, not fork: this
 * process has OpenMP and BLAS threads, and a forked copy of it must not run any of their code. */
static int lua_open_viewer(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    char path[PATH_MAX + 32];
    viewer_path(path, sizeof path);
    char *args[] = {path, (char *)dir, "--follow", NULL};
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);   /* its own group: Ctrl-C on the training does not close it */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    pid_t pid;
    int rc = posix_spawn(&pid, path, NULL, &attr, args, environ);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot start the viewer '%s': %s", path, strerror(rc));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
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

/* ---- the prompt ------------------------------------------------------------------------- */

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

static int run_prompt(lua_State *L) {
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
    if (want_version) { printf("attnlab %s (%s)\n", al_version(), LUAJIT_VERSION); return 0; }
    if (c.mode == MODE_VIEW) {   /* flags came before `view` (main() handles `attnlab view ...`) */
        int first = 1;
        while (first < argc && strcmp(argv[first], "view")) first++;
        return exec_viewer(first + 1, argc, argv);
    }
    if (c.device && !strcmp(c.device, "cuda") && !al_cuda_available()) {
        fprintf(stderr, "attnlab: --device cuda: this build has no CUDA backend (it is not written yet: "
                        "attnlab runs on the CPU only for now)\n");
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
