/* viewer.c -- the attnlab viewer program (build/attnlab-view; `attnlab view` runs it).
 *
 *   attnlab-view RUN_DIR [--follow] [--layout L] [--step N] [--diff A] [--layer L --head H] [--query Q]
 *                        [--log-y] [--scale S] [--size WxH] [--font FILE.ttf] [--compare DIR]...
 *   attnlab-view --compare SWEEP_DIR [...]
 *   (--compare, repeatable, draws other runs' curves beside this run's, on the same axes: DIR is a
 *   run directory, or a sweep directory whose every point is drawn, labelled by its settings
 *   (compare.c); without RUN_DIR the first point that did not fail is the run whose maps are shown)
 *   attnlab-view RUN_DIR --screenshot FILE.png [...]   one frame, no display needed, then exit
 *   test and measurement options: --events FILE (scripted input, viewer/events.c),
 *   --bench-frames N (draw N frames, print the mean frame time), --print-layout (where the last
 *   frame put its maps, thumbnails and step bar, so tests can look at known pixels, the head
 *   scales replayed from the run's events, each curve plot's frame and y range, the run's status
 *   and a failed run's banner and error)
 *
 * It reads the run directory (records.bin and metrics.jsonl, followed while they grow), draws into
 * a memory canvas (frame.c), shows the canvas in an SDL2 window, and hands the user's keys and
 * clicks to input.c, which writes the commands for the running script as lines appended to
 * RUN_DIR/commands.  This file is the program: its command line and the window loop.  It redraws only when something changed
 * or on input, and otherwise sleeps in SDL_WaitEventTimeout, so it does not take CPU from the
 * training it watches.  Layouts: overview (default), grid, map, heads, matrices, curves, images,
 * neuron. */
#define _GNU_SOURCE
#include "viewer.h"
#include <SDL.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
typedef struct {
    const char *run_dir, *screenshot, *layout, *events, *font;
    const char *compare[VIEWER_MAX_COMPARED];   /* the --compare arguments, in order */
    int n_compare;
    long step, diff, layer, head, query, bench_frames;
    int width, height;
    float scale;
    bool log_y, print_layout;
} viewer_options;

/* monotonic seconds: the loop's clock (its polls, redraws and the scripted input's waits) */
double viewer_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the window ------------------------------------------------------------------------------ */

typedef struct { SDL_Window *window; int pixel_w, pixel_h; } viewer_window;

static bool present(viewer_state *v, viewer_window *w) {
    SDL_Surface *dst = SDL_GetWindowSurface(w->window);
    if (!dst) return false;
    if (dst->w != v->canvas.w || dst->h != v->canvas.h) {
        if (!viewer_canvas_resize(&v->canvas, dst->w, dst->h)) return false;
        viewer_render(v);
    }
    if (dst->format->format == SDL_PIXELFORMAT_ARGB8888 || dst->format->format == SDL_PIXELFORMAT_RGB888) {
        /* the canvas's own layout (X11's usual window format): rows copied as they are */
        if (SDL_MUSTLOCK(dst) && SDL_LockSurface(dst) != 0) return false;
        for (int y = 0; y < dst->h; y++)
            memcpy((char *)dst->pixels + (size_t)y * (size_t)dst->pitch, v->canvas.px + (size_t)y * (size_t)v->canvas.w,
                   (size_t)v->canvas.w * 4);
        if (SDL_MUSTLOCK(dst)) SDL_UnlockSurface(dst);
    } else {
        SDL_Surface *src = SDL_CreateRGBSurfaceWithFormatFrom(v->canvas.px, v->canvas.w, v->canvas.h, 32, v->canvas.w * 4,
                                                              SDL_PIXELFORMAT_ARGB8888);
        if (!src) return false;
        SDL_BlitSurface(src, NULL, dst, NULL);
        SDL_FreeSurface(src);
    }
    return SDL_UpdateWindowSurface(w->window) == 0;
}

/* Draws n frames (and shows them, with a window) and prints the mean time of one. */
static void bench_frames(viewer_state *v, long n, viewer_window *w) {
    double t0 = viewer_now();
    for (long i = 0; i < n; i++) {
        viewer_render(v);
        if (w) present(v, w);
    }
    double ms = (viewer_now() - t0) * 1000.0 / (double)n;
    printf("frame time: %.3f ms mean over %ld frames (%.0f fps), %dx%d %s\n", ms, n, 1000.0 / ms, v->canvas.w, v->canvas.h,
           w ? "window (render + present)" : "canvas (render only)");
}

static float display_scale(void) {
    const char *env = getenv("ATTNLAB_VIEW_SCALE");
    if (env && atof(env) > 0) return (float)atof(env);
    float ddpi = 0;
    if (SDL_GetDisplayDPI(0, &ddpi, NULL, NULL) != 0 || ddpi <= 0) return 1;
    float s = (float)((int)(ddpi / 96.0f * 4 + 0.5f)) / 4;   /* quarter steps */
    return s < 1 ? 1 : s > 3 ? 3 : s;
}

static int no_display(const char *why) {
    fprintf(stderr, "attnlab view: no display here (%s): use --screenshot FILE.png for a picture of the run, or run "
                    "under xvfb-run\n", why);
    return 2;
}

static int run_window(viewer_state *v, const viewer_options *o) {
    /* no X11 or Wayland display named and no driver chosen: say so before SDL probes (and prints
     * its own complaints about XDG_RUNTIME_DIR) */
    if (!getenv("DISPLAY") && !getenv("WAYLAND_DISPLAY") && !getenv("SDL_VIDEODRIVER") && !o->events)
        return no_display("neither DISPLAY nor WAYLAND_DISPLAY is set");
    if (SDL_Init(SDL_INIT_VIDEO) != 0) {
        fprintf(stderr, "attnlab view: cannot open a window: %s (use --screenshot FILE.png without a display)\n", SDL_GetError());
        return 1;
    }
    /* Without a display SDL may still "open a window" on a driver that shows nothing (offscreen,
     * dummy), and the viewer would then follow the run forever with nobody watching (and keep a
     * pipe of `attnlab run ... --view | tail` open).  Unless the user chose such a driver on
     * purpose (SDL_VIDEODRIVER, as the tests do), say so in one line and leave. */
    const char *picked = SDL_GetCurrentVideoDriver();
    if (picked && (!strcmp(picked, "offscreen") || !strcmp(picked, "dummy")) && !getenv("SDL_VIDEODRIVER") && !o->events) {
        SDL_Quit();
        return no_display("SDL found only a driver that shows nothing");
    }
    if (o->scale <= 0) v->scale = display_scale();
    viewer_font_init(v->scale, o->font);
    viewer_window w = {0};
    char title[400];
    snprintf(title, sizeof title, "attnlab view: %s", v->run.name);
    w.window = SDL_CreateWindow(title, SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED, (int)((float)o->width * v->scale),
                                (int)((float)o->height * v->scale), SDL_WINDOW_RESIZABLE | SDL_WINDOW_ALLOW_HIGHDPI);
    if (!w.window) {
        fprintf(stderr, "attnlab view: cannot open a window: %s\n", SDL_GetError());
        SDL_Quit();
        return 1;
    }
    viewer_event_script script = {.wait_step = -1};
    if (o->events && !(script.f = fopen(o->events, "r"))) {
        fprintf(stderr, "attnlab view: --events: cannot open '%s': %s\n", o->events, strerror(errno));
        SDL_DestroyWindow(w.window);
        SDL_Quit();
        return 1;
    }
    if (o->bench_frames > 0) {
        SDL_Surface *dst = SDL_GetWindowSurface(w.window);
        if (dst) viewer_canvas_resize(&v->canvas, dst->w, dst->h);
        bench_frames(v, o->bench_frames, &w);
        if (!script.f) {
            SDL_DestroyWindow(w.window);
            SDL_Quit();
            return 0;
        }
    }
    /* SDL's X11, Wayland, Windows and Cocoa drivers sleep in SDL_WaitEventTimeout; the others
     * (offscreen, KMSDRM ...) would spin on 1 ms polls there, so those sleep 15 ms between polls */
    const char *driver = SDL_GetCurrentVideoDriver();
    const bool blocking_wait = driver && (!strcmp(driver, "x11") || !strcmp(driver, "wayland") ||
                                          !strcmp(driver, "windows") || !strcmp(driver, "cocoa"));
    int status = 0;
    bool running = true, dirty = true, data_dirty = false, dragging = false;
    double last_poll = 0, last_data_draw = 0, first_frame = 0;
    while (running) {
        SDL_Event e;
        /* sleep until input, or until it is time to look at the run again */
        const int wait_ms = dirty ? 0 : script.f ? 10 : 100;
        int got;
        if (blocking_wait || wait_ms == 0) got = SDL_WaitEventTimeout(&e, wait_ms);
        else if (!(got = SDL_PollEvent(&e))) SDL_Delay(15);
        while (got) {
            switch (e.type) {
            case SDL_QUIT: running = false; break;
            case SDL_KEYDOWN: running = viewer_handle_key(v, e.key.keysym.sym, e.key.keysym.mod) && running; dirty = true; break;
            case SDL_MOUSEBUTTONDOWN: dragging = true; viewer_handle_click(v, e.button.x, e.button.y, e.button.clicks); dirty = true; break;
            case SDL_MOUSEBUTTONUP: dragging = false; break;
            case SDL_MOUSEMOTION: viewer_handle_motion(v, e.motion.x, e.motion.y, dragging); dirty = true; break;
            case SDL_WINDOWEVENT: dirty = true; break;
            default: break;
            }
            got = SDL_PollEvent(&e);
        }
        double t = viewer_now();
        if (t - last_poll >= 0.1) {
            last_poll = t;
            if (viewer_run_poll(&v->run)) data_dirty = true;
            if (v->n_compared && viewer_compare_poll(v)) data_dirty = true;
        }
        /* new records redraw at most twice a second (input at once): the training keeps the CPU */
        if (data_dirty && t - last_data_draw >= 0.5) {
            dirty = true;
            data_dirty = false;
            last_data_draw = t;
        }
        if (dirty) {
            SDL_Surface *dst = SDL_GetWindowSurface(w.window);
            if (dst && (dst->w != v->canvas.w || dst->h != v->canvas.h)) viewer_canvas_resize(&v->canvas, dst->w, dst->h);
            viewer_render(v);
            present(v, &w);
            dirty = false;
            if (first_frame == 0) first_frame = t;
        }
        /* scripted input starts once the window is up: SDL drops key events pushed while the
         * window is still being shown (seen with the offscreen driver) */
        if (script.f && running && first_frame > 0 && t - first_frame >= 0.2) {
            int rc = viewer_run_event_script(v, &script, t);
            if (rc != 0) { running = false; status = rc < 0 ? 1 : 0; }
        }
    }
    if (script.f) fclose(script.f);
    SDL_DestroyWindow(w.window);
    SDL_Quit();
    return status;
}

/* ---- the command line ------------------------------------------------------------------------ */

static const char *usage_line =
    "attnlab view RUN_DIR [--screenshot FILE.png] [--step N] [--layout overview|grid|map|heads|matrices|"
    "curves|images|neuron] [--diff STEP] [--layer L] [--head H] [--query Q] [--log-y] [--scale S] [--size WxH] "
    "[--compare RUN_DIR|SWEEP_DIR]...; or attnlab view --compare SWEEP_DIR [options]";

/* `attnlab view --help`: the usage, on stdout */
static const char *help_text =
    "usage: attnlab view RUN_DIR [options]   (a run, finished or still running, followed as it grows)\n"
    "       attnlab view --compare SWEEP_DIR [options]   (every point of a sweep, its curves together)\n"
    "  --screenshot FILE.png   render one frame to a PNG without a display, then exit\n"
    "  --step N                show each series' latest record at or before step N\n"
    "  --layout L              overview (default), grid, map, heads, matrices, curves, images, neuron\n"
    "  --diff STEP             difference mode: the shown step minus STEP\n"
    "  --layer L, --head H     the layer and head first shown (1-based)\n"
    "  --query Q               the query of the neuron view (1-based)\n"
    "  --log-y                 curves on a log y axis\n"
    "  --scale S               UI scale, 0.5 to 4 (default: the display's DPI / 96, or ATTNLAB_VIEW_SCALE)\n"
    "  --size WxH              window or screenshot size (default 1280x800)\n"
    "  --compare DIR           draw another run's curves beside this run's, on the same axes, each run in\n"
    "                          its own colour; repeatable.  DIR may be a sweep directory (attnlab sweep):\n"
    "                          every point is drawn, labelled by the settings that vary (lr=0.01 seed=2),\n"
    "                          failed points marked, points with no run directory yet listed as not drawn.\n"
    "                          Sweeps and run directories mix.  Whose maps are shown: RUN_DIR's (it may\n"
    "                          be one of the sweep's points), else the first point that did not fail\n"
    "  --font FILE.ttf         the UI font (default DejaVu Sans)\n"
    "  --follow                accepted and ignored (the viewer always follows the run)\n"
    "  for tests: --events FILE (scripted input), --print-layout, --bench-frames N (viewer/viewer.c)\n"
    "  -h, --help              this text\n"
    "Keys in the window: ? lists them.  More: docs/viewer.md.\n";

static int usage(const char *fmt, const char *arg) {
    fputs("attnlab view: ", stderr);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (usage: %s; attnlab view --help)\n", usage_line);
    return 2;
}

static bool parse_long(const char *s, long *out) {
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (!*s || *end || errno || n < 0) return false;
    *out = n;
    return true;
}

static int parse_options(int argc, char **argv, viewer_options *o) {
    memset(o, 0, sizeof *o);
    o->step = o->diff = o->layer = o->head = o->query = -1;
    o->width = 1280;
    o->height = 800;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a[0] != '-') {
            if (o->run_dir) return usage("unexpected argument '%s'", a);
            o->run_dir = a;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help_text, stdout);
            return -1;
        } else if (!strcmp(a, "--follow")) {
            /* always on: kept so that `--view` and scripts may say it */
        } else if (!strcmp(a, "--log-y")) {
            o->log_y = true;
        } else if (!strcmp(a, "--print-layout")) {
            o->print_layout = true;
        } else if (!has_value) {
            return usage("%s needs a value", a);
        } else if (!strcmp(a, "--screenshot")) o->screenshot = argv[++i];
        else if (!strcmp(a, "--layout")) o->layout = argv[++i];
        else if (!strcmp(a, "--events")) o->events = argv[++i];
        else if (!strcmp(a, "--font")) o->font = argv[++i];
        else if (!strcmp(a, "--compare")) {
            if (o->n_compare == VIEWER_MAX_COMPARED) return usage("more than %s --compare arguments", "64");
            o->compare[o->n_compare++] = argv[++i];
        }
        else if (!strcmp(a, "--scale")) {
            o->scale = (float)atof(argv[++i]);
            if (o->scale < 0.5f || o->scale > 4) return usage("--scale must be between 0.5 and 4, not '%s'", argv[i]);
        } else if (!strcmp(a, "--size")) {
            if (sscanf(argv[++i], "%dx%d", &o->width, &o->height) != 2 || o->width < 200 || o->height < 150 ||
                o->width > 8192 || o->height > 8192)
                return usage("--size must be WIDTHxHEIGHT (200x150 .. 8192x8192), not '%s'", argv[i]);
        } else {
            long *target = !strcmp(a, "--step") ? &o->step : !strcmp(a, "--diff") ? &o->diff : !strcmp(a, "--layer") ? &o->layer
                         : !strcmp(a, "--head") ? &o->head : !strcmp(a, "--query") ? &o->query
                         : !strcmp(a, "--bench-frames") ? &o->bench_frames : NULL;
            if (!target) return usage("unknown option '%s'", a);
            if (!parse_long(argv[++i], target)) return usage("%s needs a non-negative integer", a);
        }
    }
    if (!o->run_dir && o->n_compare == 0) return usage("%s", "which run directory?");
    return 0;
}

static void apply_options(viewer_state *v, const viewer_options *o) {
    v->layout = LAYOUT_OVERVIEW;
    for (int i = 0; o->layout && i < LAYOUT_COUNT; i++) if (!strcmp(o->layout, viewer_layout_names[i])) v->layout = (viewer_layout)i;
    v->step = o->step;
    v->diff_base = o->diff;
    v->log_y = o->log_y;
    v->smoothing = 0.6f;
    v->focus_token = -1;
    v->scale = o->scale > 0 ? o->scale : 1;
    v->head = o->head > 0 ? (int)o->head : 1;
    v->neuron_query = o->query > 0 ? (int)o->query - 1 : 0;
    viewer_collect_rows(v);
    for (int r = 0; o->layer > 0 && r < v->n_rows; r++) if (v->rows[r].layer == o->layer) { v->row = r; break; }
}

int main(int argc, char **argv) {
    viewer_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;   /* -1: --help, printed */
    if (o.layout) {
        bool known = false;
        for (int i = 0; i < LAYOUT_COUNT; i++) known |= !strcmp(o.layout, viewer_layout_names[i]);
        if (!known) return usage("unknown layout '%s'", o.layout);
    }
    static viewer_state v;
    char err[900];
    if (o.n_compare == 0 && !viewer_run_open(&v.run, o.run_dir, err, sizeof err)) {
        fprintf(stderr, "attnlab view: %s\n", err);
        return 1;
    }
    if (o.n_compare > 0) {
        if (!viewer_compare_open(&v, o.run_dir, o.compare, o.n_compare, err, sizeof err)) {
            fprintf(stderr, "attnlab view: %s\n", err);
            viewer_compare_close(&v);
            if (v.run.dir[0]) viewer_run_close(&v.run);
            return 1;
        }
        /* said on stderr too, not only drawn: a point left out is never silent */
        char note[400];
        if (viewer_compare_not_drawn(&v, note, sizeof note)) fprintf(stderr, "attnlab view: note: %s\n", note);
    }
    apply_options(&v, &o);
    if (o.step >= 0 && v.run.n_snapshots > 0 && o.step < v.run.snapshots[0])
        fprintf(stderr, "attnlab view: note: no snapshot at or before step %ld (the first is at step %lld)\n", o.step,
                (long long)v.run.snapshots[0]);
    if (o.screenshot) {
        /* no display: the canvas alone */
        viewer_font_init(v.scale, o.font);
        if (!viewer_canvas_resize(&v.canvas, (int)((float)o.width * v.scale), (int)((float)o.height * v.scale))) {
            fprintf(stderr, "attnlab view: out of memory for a %dx%d frame\n", o.width, o.height);
            return 1;
        }
        viewer_render(&v);
        if (o.print_layout) viewer_print_layout(&v);
        if (o.bench_frames > 0) bench_frames(&v, o.bench_frames, NULL);
        if (o.screenshot && viewer_write_png(&v.canvas, o.screenshot, err, sizeof err) != 0) {
            fprintf(stderr, "attnlab view: %s\n", err);
            rc = 1;
        }
    } else {
        rc = run_window(&v, &o);
    }
    viewer_canvas_free(&v.canvas);
    viewer_font_free();
    viewer_compare_close(&v);
    viewer_run_close(&v.run);
    return rc;
}
