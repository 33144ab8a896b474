/* program.h -- what the parts of the `attnlab` program share (lua/: main.c and the files below).
 *
 *   main.c          main(): finding lua/, the Lua state with the module loaded, running a script,
 *                   a chunk, `attnlab help` or `attnlab sweep`
 *   command_line.c  the command line, parsed into a `cli`, and its usage text
 *   script_errors.c protected calls: a script's error located at the user's line, recorded in its
 *                   run directories, the other ranks ended
 *   prompt.c        the interactive prompt
 *   viewer_launch.c starting the viewer program (attnlab-view), in place or beside a run
 * The arrows go one way: main.c calls the others; prompt.c calls script_errors.c; none calls main.c except
 * for lua_dir, which main.c finds before the Lua state exists. */
#ifndef ATTNLAB_PROGRAM_H
#define ATTNLAB_PROGRAM_H

#include <limits.h>
#include <lua.h>

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

/* command_line.c */
extern const char *const usage_text;
/* One line on stderr ("attnlab: ... (see attnlab --help)"); returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Fills c (c->overrides is allocated: free it); 0, or the exit status of a usage error. */
int parse_command_line(int argc, char **argv, cli *c, int *want_help, int *want_version);

/* main.c: the lua/ folder the module was found in (canonical; empty when none) */
extern char lua_dir[PATH_MAX];

/* script_errors.c: calls the function below nargs arguments with the message handler; a failure is
 * printed as one line (status != 0).  record_failure: a script's own call, whose failure is also
 * recorded in the run directories it started (status.json) and ends the other ranks of a
 * data-parallel run. */
int call_protected_ex(lua_State *L, int nargs, int nresults, int record_failure);
int call_protected(lua_State *L, int nargs, int nresults);

/* prompt.c */
int run_prompt(lua_State *L);

/* viewer_launch.c: `attnlab view ARGS...` becomes attnlab-view ARGS... (argv[first] onwards;
 * returns only when the exec failed); ATTNLAB_CLI.open_viewer(run_dir) starts it beside a run */
int exec_viewer(int first, int argc, char **argv);
int lua_open_viewer(lua_State *L);

#endif
