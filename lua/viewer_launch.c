/* viewer_launch.c -- the viewer is its own program, attnlab-view beside this one (or
 * $ATTNLAB_VIEWER): `attnlab view ...` becomes it (exec, all arguments passed on), and `attnlab run
 * --view` starts it as a child in its own process group once run.lua knows the run directory
 * (ATTNLAB_CLI.open_viewer), so the training never waits on drawing, closing the window leaves the
 * training running, and Ctrl-C on the training leaves the window open on the finished record. */
#define _GNU_SOURCE
#include "program.h"
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>

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
int exec_viewer(int first, int argc, char **argv) {
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
int lua_open_viewer(lua_State *L) {
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
