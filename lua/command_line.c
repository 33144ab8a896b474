/* command_line.c -- the `attnlab` command line (lua/main.c's header lists the forms), parsed into a
 * `cli`; what Lua needs of it becomes the global ATTNLAB_CLI (main.c), which lua/attnlab/run.lua
 * reads. */
#include "program.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const usage_text =
    "usage:\n"
    "  attnlab run SCRIPT.lua [key=value ...] [--out DIR [--force]] [--view] [--profile] [--device cpu|cuda]\n"
    "              [--threads N]\n"
    "  attnlab SCRIPT.lua [...]        same as run\n"
    "  attnlab view RUN_DIR [--screenshot FILE.png] [--step N] [--layout L] [--diff STEP] [--layer L]\n"
    "               [--head H] [--query Q] [--log-y] [--size WxH] [--scale S] [--compare RUN_DIR|SWEEP_DIR]...\n"
    "               [--font FILE.ttf] [--follow]   (attnlab view --help describes each; for tests:\n"
    "               --events FILE, --print-layout, --bench-frames N)\n"
    "  attnlab view --compare SWEEP_DIR [...]   every point of a sweep, its curves together\n"
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

int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("attnlab: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see attnlab --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* key=value, key a config key as lua/attnlab/sweep_grid.lua valid_key has it */
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
int parse_command_line(int argc, char **argv, cli *c, int *want_help, int *want_version) {
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
