/* viewer.c -- the attnlab viewer program (build/attnlab-view; `attnlab view` runs it).
 *
 *   attnlab-view RUN_DIR [--follow] [--layout L] [--step N] [--diff A] [--layer L --head H] [--query Q]
 *                        [--log-y] [--scale S] [--size WxH] [--font FILE.ttf] [--compare RUN_DIR2]
 *   (--compare draws a second run's curves beside this run's, on the same axes)
 *   attnlab-view RUN_DIR --screenshot FILE.png [...]   one frame, no display needed, then exit
 *   test and measurement options: --events FILE (scripted input, viewer/events.c),
 *   --bench-frames N (draw N frames, print the mean frame time), --print-layout (where the last
 *   frame put its maps, thumbnails and step bar, so tests can look at known pixels, the head
 *   scales replayed from the run's events, each curve plot's frame and y range, the run's status
 *   and a failed run's banner and error)
 *
 * It reads the run directory (records.bin and metrics.jsonl, followed while they grow), draws into
 * a memory canvas, shows the canvas in an SDL2 window, and writes the user's commands for the
 * running script as lines appended to RUN_DIR/commands.  It redraws only when something changed
 * or on input, and otherwise sleeps in SDL_WaitEventTimeout, so it does not take CPU from the
 * training it watches.  Layouts: overview (default), grid, map, heads, matrices, curves, images,
 * neuron. */
#define _GNU_SOURCE
#include "viewer.h"
#include <SDL.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *layout_names[LAYOUT_COUNT] = {"overview", "grid", "map", "heads", "matrices", "curves", "images", "neuron"};
static const char *layout_keys[LAYOUT_COUNT] = {"0", "1", "2", "3", "4", "5", "6", "7"};

typedef struct {
    const char *run_dir, *screenshot, *layout, *events, *font, *compare;
    long step, diff, layer, head, query, bench_frames;
    int width, height;
    float scale;
    bool log_y, print_layout;
} viewer_options;

static void set_status(viewer_state *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_status(viewer_state *v, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->status, sizeof v->status, fmt, ap);
    va_end(ap);
}

/* ---- commands to the script ------------------------------------------------------------------ */

/* One line appended with one write() on O_APPEND: the script never reads half a command. */
static void send_command(viewer_state *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_command(viewer_state *v, const char *fmt, ...) {
    char line[200], path[4200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line - 1) return;
    line[n++] = '\n';
    snprintf(path, sizeof path, "%s/commands", v->run.dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n) set_status(v, "cannot write '%s': %s", path, strerror(errno));
    else set_status(v, "sent: %.*s", n - 1, line);
    if (fd >= 0) close(fd);
}

/* what the script said it is doing, from the last pause/resume/single-step event it logged */
static const char *script_state(const viewer_state *v) {
    for (int i = v->run.n_events - 1; i >= 0; i--) {
        const al_event_kind k = v->run.events[i].kind;
        if (k == AL_EVENT_PAUSE || k == AL_EVENT_SINGLE_STEP) return "paused";
        if (k == AL_EVENT_RESUME) return "running";
    }
    return NULL;
}

/* ---- steps ----------------------------------------------------------------------------------- */

static int snapshot_index(const viewer_state *v) {
    int64_t s = viewer_shown_step(v);
    int idx = -1;
    for (int i = 0; i < v->run.n_snapshots && v->run.snapshots[i] <= s; i++) idx = i;
    return idx;
}

static void go_to_snapshot(viewer_state *v, int idx) {
    if (v->run.n_snapshots == 0) return;
    if (idx >= v->run.n_snapshots - 1) { v->step = -1; return; }   /* the newest: follow it live */
    if (idx < 0) idx = 0;
    v->step = v->run.snapshots[idx];
}

/* ---- drawing the frame ----------------------------------------------------------------------- */

static const char *help_lines[][2] = {   /* key, what it does */
    {"space", "pause / resume the training"},
    {"n or .", "run a single training step (then pause)"},
    {"left/right", "step back / forward through the recorded history"},
    {"home/end", "first recorded step / follow the newest"},
    {"d", "difference mode: the shown step minus this one (d again: off)"},
    {"up/down", "choose the layer (grid row)"},
    {"tab, h/l", "choose the head (shift-tab, h: previous)"},
    {"a", "ablate the chosen head (again: restore it)"},
    {"+ / -", "scale the chosen head's output by 2 / by 1/2"},
    {"r", "restore every head"},
    {"0 .. 7", "overview, grid, map, heads, matrices, curves, images, neuron"},
    {"pgup/pgdn", "the neuron view's query"},
    {"f", "attention colours over 0 .. 1, or 0 .. each map's largest"},
    {"g", "log y axis on curves"},
    {"[ / ]", "less / more curve smoothing"},
    {"s", "save a PNG of the view (in the run directory)"},
    {"c", "save the chosen map as CSV (in the run directory)"},
    {"mouse", "click a thumbnail to enlarge it (click again: back),"},
    {"", "hover for values, click a head's colour to hide it,"},
    {"", "double-click it to show that head alone (again: all),"},
    {"", "click or drag the step bar"},
    {"?", "this help"},
    {"q, escape", "quit (the training goes on)"},
};

static void draw_help(viewer_state *v) {
    const int n = (int)(sizeof help_lines / sizeof *help_lines), th = viewer_text_height(VIEWER_FONT_NORMAL);
    const int pad = viewer_px(v, 16);
    int kw = 0, w = 0;
    for (int i = 0; i < n; i++) {
        int a = viewer_text_width(VIEWER_FONT_NORMAL, help_lines[i][0]), b = viewer_text_width(VIEWER_FONT_NORMAL, help_lines[i][1]);
        if (a > kw) kw = a;
        if (b > w) w = b;
    }
    w += kw + pad;
    viewer_rect r = {(v->canvas.w - w) / 2 - pad, (v->canvas.h - n * th) / 2 - pad - th, w + 2 * pad, n * th + 2 * pad + th};
    viewer_fill(&v->canvas, r, 0xFF0E1014);
    viewer_outline(&v->canvas, r, viewer_px(v, 2), VIEWER_ACCENT);
    viewer_text(&v->canvas, VIEWER_FONT_NORMAL, r.x + pad, r.y + pad / 2, VIEWER_ACCENT, "keys");
    for (int i = 0; i < n; i++) {
        const int y = r.y + pad / 2 + (i + 1) * th;
        viewer_text(&v->canvas, VIEWER_FONT_NORMAL, r.x + pad, y, VIEWER_ACCENT, help_lines[i][0]);
        viewer_text(&v->canvas, VIEWER_FONT_NORMAL, r.x + 2 * pad + kw, y, VIEWER_FG, help_lines[i][1]);
    }
}

static void draw_top_bar(viewer_state *v, viewer_rect r) {
    viewer_fill(&v->canvas, r, 0xFF0E1014);
    const int pad = viewer_px(v, 8), th = viewer_text_height(VIEWER_FONT_NORMAL), y = r.y + (r.h - th) / 2;
    int x = r.x + pad;
    x += viewer_text(&v->canvas, VIEWER_FONT_NORMAL, x, y, VIEWER_ACCENT, "attnlab") + pad;
    const int title_x = x;
    const char *state = script_state(v);
    char right[120];
    snprintf(right, sizeof right, "%s%s   ? help", state ? "script " : "", state ? state : "");
    const int right_w = viewer_text_width(VIEWER_FONT_NORMAL, right) + 2 * pad;
    /* the tabs take what is left; in a narrow window they shrink to their keys' digits */
    int tabs_w = 0;
    for (int i = 0; i < LAYOUT_COUNT; i++) {
        char label[40];
        snprintf(label, sizeof label, "%s %s", layout_keys[i], layout_names[i]);
        tabs_w += viewer_text_width(VIEWER_FONT_SMALL, label) + pad + viewer_px(v, 2);
    }
    const bool short_tabs = x + viewer_px(v, 120) + tabs_w + right_w > r.x + r.w;
    x = short_tabs ? r.x + r.w - right_w - LAYOUT_COUNT * (viewer_px(v, 24) + pad) : r.x + r.w - right_w - tabs_w;
    for (int i = 0; i < LAYOUT_COUNT; i++) {
        char label[40];
        if (short_tabs) snprintf(label, sizeof label, "%s", layout_keys[i]);
        else snprintf(label, sizeof label, "%s %s", layout_keys[i], layout_names[i]);
        int w = viewer_text_width(VIEWER_FONT_SMALL, label) + pad;
        v->tabs[i] = (viewer_rect){x, r.y + viewer_px(v, 3), w, r.h - viewer_px(v, 6)};
        if ((int)v->layout == i) viewer_fill(&v->canvas, v->tabs[i], VIEWER_GRID);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, x + pad / 2, r.y + (r.h - viewer_text_height(VIEWER_FONT_SMALL)) / 2,
                    (int)v->layout == i ? VIEWER_ACCENT : VIEWER_DIM, label);
        x += w + viewer_px(v, 2);
    }
    /* the run's name in the room left between the logo and the tabs */
    viewer_clip(&v->canvas, (viewer_rect){title_x, r.y, v->tabs[0].x - title_x - pad, r.h});
    viewer_text(&v->canvas, VIEWER_FONT_NORMAL, title_x, y, VIEWER_FG, v->run.name);
    viewer_unclip(&v->canvas);
    viewer_text(&v->canvas, VIEWER_FONT_NORMAL, r.x + r.w - viewer_text_width(VIEWER_FONT_NORMAL, right) - pad, y,
                state && !strcmp(state, "paused") ? VIEWER_BAD : VIEWER_DIM, right);
}

static void draw_step_bar(viewer_state *v, viewer_rect r) {
    viewer_fill(&v->canvas, r, 0xFF0E1014);
    const int pad = viewer_px(v, 8), th = viewer_text_height(VIEWER_FONT_NORMAL);
    char label[200];
    int64_t shown = viewer_shown_step(v);
    if (v->diff_base >= 0)
        snprintf(label, sizeof label, "step %lld minus step %lld", (long long)shown, (long long)v->diff_base);
    else
        snprintf(label, sizeof label, "step %lld%s", (long long)shown,
                 v->step >= 0 ? "" : !strcmp(v->run.status, "failed") ? " (the last; run failed)"
                 : !strcmp(v->run.status, "interrupted") ? " (the last; run interrupted)"
                 : v->run.finished ? " (the last; run finished)" : " (newest, live)");
    int lw = viewer_text(&v->canvas, VIEWER_FONT_NORMAL, r.x + pad, r.y + viewer_px(v, 4), VIEWER_FG, label);
    const int sx = r.x + pad + (lw > viewer_px(v, 230) ? lw : viewer_px(v, 230)) + pad;
    v->slider_rect = (viewer_rect){sx, r.y + viewer_px(v, 6), r.x + r.w - sx - pad, viewer_px(v, 12)};
    viewer_fill(&v->canvas, v->slider_rect, VIEWER_GRID);
    const int n = v->run.n_snapshots;
    if (n > 0) {
        int idx = snapshot_index(v);
        int kx = v->slider_rect.x + (n > 1 ? (idx < 0 ? 0 : idx) * (v->slider_rect.w - 1) / (n - 1) : v->slider_rect.w - 1);
        if (v->diff_base >= 0) {
            int b = 0;
            while (b < n - 1 && v->run.snapshots[b + 1] <= v->diff_base) b++;
            int bx = v->slider_rect.x + (n > 1 ? b * (v->slider_rect.w - 1) / (n - 1) : 0);
            viewer_fill(&v->canvas, (viewer_rect){bx - 1, v->slider_rect.y - 3, 3, v->slider_rect.h + 6}, 0xFF4393C3);
        }
        viewer_fill(&v->canvas, (viewer_rect){kx - viewer_px(v, 3), v->slider_rect.y - 3, viewer_px(v, 6), v->slider_rect.h + 6}, VIEWER_ACCENT);
    }
    char info[600];
    if (v->run.error[0]) snprintf(info, sizeof info, "%s", v->run.error);
    else snprintf(info, sizeof info, "%d snapshots, newest step %lld%s%s%s", n, (long long)v->run.latest_step,
                  v->run.malformed_lines ? "; malformed metrics lines skipped" : "", v->status[0] ? "   " : "", v->status);
    viewer_clip(&v->canvas, r);
    viewer_text(&v->canvas, VIEWER_FONT_SMALL, r.x + pad, r.y + r.h - th + viewer_px(v, 1), v->run.error[0] ? VIEWER_BAD : VIEWER_DIM, info);
    viewer_unclip(&v->canvas);
}

/* A failed run (status.json says so): one line across the window with the step and the error the
 * script raised, so that a run that stopped is never mistaken for one still training. */
static void draw_failure(viewer_state *v, viewer_rect r) {
    viewer_fill(&v->canvas, r, VIEWER_FAILURE);
    const int pad = viewer_px(v, 8), th = viewer_text_height(VIEWER_FONT_NORMAL);
    char line[800];
    if (v->run.status_step >= 0)
        snprintf(line, sizeof line, "run failed at step %lld: %s", (long long)v->run.status_step, v->run.failure);
    else
        snprintf(line, sizeof line, "run failed: %s", v->run.failure);
    viewer_clip(&v->canvas, r);
    viewer_text(&v->canvas, VIEWER_FONT_NORMAL, r.x + pad, r.y + (r.h - th) / 2, VIEWER_FG, line);
    viewer_unclip(&v->canvas);
    v->failure_rect = r;
}

void viewer_render(viewer_state *v) {
    viewer_collect_rows(v);
    viewer_run_head_scales(&v->run, viewer_shown_step(v), v->head_scale);
    viewer_fill(&v->canvas, (viewer_rect){0, 0, v->canvas.w, v->canvas.h}, VIEWER_BG);
    const int top = viewer_px(v, 30), bottom = viewer_px(v, 44), gap = viewer_px(v, 6);
    const int banner = !strcmp(v->run.status, "failed") ? viewer_px(v, 26) : 0;
    draw_top_bar(v, (viewer_rect){0, 0, v->canvas.w, top});
    v->failure_rect = (viewer_rect){0, 0, 0, 0};
    v->n_plots = 0;
    if (banner) draw_failure(v, (viewer_rect){0, top, v->canvas.w, banner});
    viewer_rect m = {gap, top + banner + gap, v->canvas.w - 2 * gap, v->canvas.h - top - banner - bottom - 2 * gap};
    const int hw = (m.w - gap) / 2, hh = (m.h - gap) / 2;
    viewer_rect q[4] = {{m.x, m.y, hw, hh}, {m.x + hw + gap, m.y, m.w - hw - gap, hh},
                        {m.x, m.y + hh + gap, hw, m.h - hh - gap}, {m.x + hw + gap, m.y + hh + gap, m.w - hw - gap, m.h - hh - gap}};
    memset(v->grid_cells, 0, sizeof v->grid_cells);
    v->map_rect = v->head_view_rect = v->legend_rect = v->image_rect = (viewer_rect){0, 0, 0, 0};
    v->neuron_query_rows = v->neuron_cell = 0;
    switch (v->layout) {
    case LAYOUT_OVERVIEW: {
        bool images = false;
        for (int i = 0; i < v->run.n_series; i++) if (v->run.series[i].kind == AL_RECORD_IMAGE) images = true;
        viewer_draw_grid(v, q[0]);
        viewer_draw_matrices(v, q[1]);
        viewer_draw_curves(v, q[2]);
        if (images) viewer_draw_images(v, q[3]);
        else viewer_draw_heads(v, q[3]);
        break;
    }
    case LAYOUT_GRID: viewer_draw_grid(v, m); break;
    case LAYOUT_MAP: viewer_draw_map(v, m); break;
    case LAYOUT_HEADS: viewer_draw_heads(v, m); break;
    case LAYOUT_MATRICES: viewer_draw_matrices(v, m); break;
    case LAYOUT_CURVES: viewer_draw_curves(v, m); break;
    case LAYOUT_IMAGES: viewer_draw_images(v, m); break;
    case LAYOUT_NEURON: viewer_draw_neuron(v, m); break;
    default: break;
    }
    draw_step_bar(v, (viewer_rect){0, v->canvas.h - bottom, v->canvas.w, bottom});
    if (v->help) draw_help(v);
}

/* ---- input ----------------------------------------------------------------------------------- */

static int chosen_layer(const viewer_state *v) { return v->n_rows ? v->rows[v->row].layer : 0; }

static void set_head_scale(viewer_state *v, float s) {
    int layer = chosen_layer(v);
    if (layer < 1 || layer > VIEWER_MAX_ROWS || v->head < 1) { set_status(v, "no head chosen (the grid has no maps)"); return; }
    if (s == 0) send_command(v, "ablate %d %d", layer, v->head);
    else if (s == 1) send_command(v, "restore %d %d", layer, v->head);
    else send_command(v, "scale %d %d %g", layer, v->head, (double)s);
}

static void save_png(viewer_state *v) {
    char path[4300], err[300];
    snprintf(path, sizeof path, "%s/view-%s-step%lld.png", v->run.dir, layout_names[v->layout], (long long)viewer_shown_step(v));
    if (viewer_write_png(&v->canvas, path, err, sizeof err) == 0) set_status(v, "saved %s", path);
    else set_status(v, "%s", err);
}

/* The focused map (as shown: in difference mode, the difference) as CSV, one row per query. */
static void save_csv(viewer_state *v) {
    viewer_attention_row *row = v->n_rows ? &v->rows[v->row] : NULL;
    viewer_series *s = row && v->head <= row->n_heads ? row->heads[v->head] : NULL;
    static float buf[1 << 20];
    int rows = 0, cols = 0;
    const float *m = s ? viewer_values(v, s, &rows, &cols, buf, 1 << 20) : NULL;
    if (!m) { set_status(v, "no map to save at this step"); return; }
    char path[4400], tmp[4500], safe[64];
    size_t n = 0;
    for (const char *p = row->name; *p && n < sizeof safe - 1; p++) safe[n++] = (*p == '/' || *p == ' ') ? '_' : *p;
    safe[n] = 0;
    snprintf(path, sizeof path, "%s/%s-L%d-H%d-step%lld%s.csv", v->run.dir, safe, row->layer, v->head,
             (long long)viewer_shown_step(v), v->diff_base >= 0 ? "-diff" : "");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    bool ok = f != NULL;
    for (int i = 0; ok && i < rows; i++)
        for (int j = 0; j < cols; j++) ok = fprintf(f, j + 1 < cols ? "%.9g," : "%.9g\n", (double)m[(size_t)i * (size_t)cols + (size_t)j]) > 0;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) == 0) set_status(v, "saved %s", path);
    else { unlink(tmp); set_status(v, "cannot write '%s': %s", path, strerror(errno)); }
}

static bool handle_key(viewer_state *v, SDL_Keycode key, Uint16 mod) {
    viewer_collect_rows(v);   /* records may have arrived since the last frame (and moved the series) */
    const char *text = SDL_GetKeyName(key);
    if (v->help && key != SDLK_q) { v->help = false; return true; }   /* any key closes the help first */
    switch (key) {
    case SDLK_q: case SDLK_ESCAPE: return false;
    case SDLK_SPACE: {   /* the opposite of what the script last said it was doing */
        const char *state = script_state(v);
        send_command(v, state && !strcmp(state, "paused") ? "resume" : "pause");
        break;
    }
    case SDLK_n: case SDLK_PERIOD: send_command(v, "step"); break;
    case SDLK_LEFT: go_to_snapshot(v, snapshot_index(v) - 1); break;
    case SDLK_RIGHT: go_to_snapshot(v, snapshot_index(v) + 1); break;
    case SDLK_HOME: go_to_snapshot(v, 0); break;
    case SDLK_END: v->step = -1; break;
    case SDLK_d:
        v->diff_base = v->diff_base >= 0 ? -1 : viewer_shown_step(v);
        set_status(v, v->diff_base >= 0 ? "difference mode: scrub to another step" : "difference mode off");
        break;
    case SDLK_UP: if (v->row > 0) v->row--; break;
    case SDLK_DOWN: if (v->row + 1 < v->n_rows) v->row++; break;
    case SDLK_TAB: case SDLK_l: case SDLK_h: {
        int n = v->n_rows ? v->rows[v->row].n_heads : 1;
        bool back = key == SDLK_h || (key == SDLK_TAB && (mod & KMOD_SHIFT));
        v->head = back ? (v->head > 1 ? v->head - 1 : n) : (v->head < n ? v->head + 1 : 1);
        break;
    }
    case SDLK_a: {
        int layer = chosen_layer(v);
        bool off = layer >= 1 && layer <= VIEWER_MAX_ROWS && v->head >= 1 && v->head_scale[layer][v->head] == 0;
        set_head_scale(v, off ? 1 : 0);
        break;
    }
    case SDLK_PLUS: case SDLK_EQUALS: case SDLK_KP_PLUS: case SDLK_MINUS: case SDLK_KP_MINUS: {
        int layer = chosen_layer(v);
        if (layer >= 1 && layer <= VIEWER_MAX_ROWS && v->head >= 1) {
            float s = v->head_scale[layer][v->head];
            set_head_scale(v, (key == SDLK_MINUS || key == SDLK_KP_MINUS) ? s / 2 : (s == 0 ? 1 : s * 2));
        }
        break;
    }
    case SDLK_r: send_command(v, "restore"); break;
    case SDLK_g: v->log_y = !v->log_y; break;
    case SDLK_PAGEUP: if (v->neuron_query > 0) v->neuron_query--; break;
    case SDLK_PAGEDOWN: v->neuron_query++; break;   /* clamped to the map when drawn */
    case SDLK_f: v->fixed_range = !v->fixed_range; set_status(v, v->fixed_range ? "attention colours over 0 .. 1" : "attention colours over 0 .. each map's largest"); break;
    case SDLK_LEFTBRACKET: v->smoothing = v->smoothing > 0.1f ? v->smoothing - 0.1f : 0; break;
    case SDLK_RIGHTBRACKET: v->smoothing = v->smoothing < 0.89f ? v->smoothing + 0.1f : 0.99f; break;
    case SDLK_s: save_png(v); break;
    case SDLK_c: save_csv(v); break;
    case SDLK_QUESTION: case SDLK_SLASH: v->help = true; break;
    default:
        for (int i = 0; i < LAYOUT_COUNT; i++)
            if (text && !strcmp(text, layout_keys[i])) v->layout = (viewer_layout)i;
        break;
    }
    return true;
}

static void slider_to(viewer_state *v, int x) {
    const int n = v->run.n_snapshots;
    if (n == 0 || v->slider_rect.w < 2) return;
    int idx = (int)((float)(x - v->slider_rect.x) * (float)(n - 1) / (float)(v->slider_rect.w - 1) + 0.5f);
    go_to_snapshot(v, idx < 0 ? 0 : idx);
}

static void handle_click(viewer_state *v, int x, int y, int clicks) {
    viewer_collect_rows(v);
    for (int i = 0; i < LAYOUT_COUNT; i++)
        if (viewer_inside(v->tabs[i], x, y)) { v->layout = (viewer_layout)i; return; }
    if (viewer_inside((viewer_rect){v->slider_rect.x - 4, v->slider_rect.y - 6, v->slider_rect.w + 8, v->slider_rect.h + 12}, x, y)) {
        slider_to(v, x);
        return;
    }
    for (int r = 0; r < v->n_rows; r++)
        for (int h = 1; h <= v->rows[r].n_heads; h++)
            if (viewer_inside(v->grid_cells[r][h], x, y)) {   /* a thumbnail: focus it, enlarged */
                v->row = r;
                v->head = h;
                v->layout = LAYOUT_MAP;
                return;
            }
    if (v->layout == LAYOUT_MAP && viewer_inside(v->map_rect, x, y)) { v->layout = LAYOUT_GRID; return; }
    if (v->neuron_query_rows && viewer_inside(v->neuron_queries, x, y)) {
        int q = (y - v->neuron_queries.y) / (v->neuron_row_h > 0 ? v->neuron_row_h : 1);
        if (q < v->neuron_query_rows) v->neuron_query = q;
        return;
    }
    for (int h = 1; h <= VIEWER_MAX_HEADS; h++) {
        if (!viewer_inside(v->head_boxes[h], x, y)) continue;
        if (clicks < 2) { v->head_hidden[h] = !v->head_hidden[h]; return; }
        /* double-click: this head alone, or all heads when it is alone already (as BertViz) */
        bool alone = true;
        for (int k = 1; k <= VIEWER_MAX_HEADS; k++) if (k != h && v->head_boxes[k].w && !v->head_hidden[k]) alone = false;
        for (int k = 1; k <= VIEWER_MAX_HEADS; k++) v->head_hidden[k] = !alone && k != h;
        return;
    }
}

static void handle_motion(viewer_state *v, int x, int y, bool dragging) {
    v->hover_x = x;
    v->hover_y = y;
    if (dragging && viewer_inside((viewer_rect){v->slider_rect.x - 4, v->slider_rect.y - 20, v->slider_rect.w + 8, v->slider_rect.h + 40}, x, y))
        slider_to(v, x);
    /* head view: the query token under the mouse focuses its lines */
    v->focus_token = -1;
    if (v->head_tokens[0] > 0 && viewer_inside(v->head_view_rect, x, y) && x < v->head_col_x[0] + viewer_px(v, 8)) {
        float best = 1e9f;
        for (int i = 0; i < v->head_tokens[0]; i++) {
            float d = y > v->head_token_y[0][i] ? (float)y - v->head_token_y[0][i] : v->head_token_y[0][i] - (float)y;
            if (d < best && d < (float)viewer_text_height(VIEWER_FONT_SMALL)) { best = d; v->focus_token = i; }
        }
    }
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

void viewer_print_layout(const viewer_state *v) {
    printf("canvas %d %d\n", v->canvas.w, v->canvas.h);
    if (v->image_rect.w) printf("image %d %d %d %d %d\n", v->image_rect.x, v->image_rect.y, v->image_rect.w, v->image_rect.h,
                                (int)(v->image_zoom * 1000 + 0.5f));
    if (v->legend_rect.w) printf("legend %d %d %d %d\n", v->legend_rect.x, v->legend_rect.y, v->legend_rect.w, v->legend_rect.h);
    if (v->map_rect.w) printf("map %d %d %d %d %d %d\n", v->map_rect.x, v->map_rect.y, v->map_rect.w, v->map_rect.h, v->map_rows, v->map_cols);
    for (int r = 0; r < v->n_rows; r++)
        for (int h = 1; h <= v->rows[r].n_heads; h++) {
            viewer_rect c = v->grid_cells[r][h];
            if (c.w) printf("cell %d %d %d %d %d %d\n", v->rows[r].layer, h, c.x, c.y, c.w, c.h);
        }
    for (int h = 1; h <= VIEWER_MAX_HEADS; h++) {
        viewer_rect b = v->head_boxes[h];
        if (b.w) printf("headbox %d %d %d %d %d\n", h, b.x, b.y, b.w, b.h);
    }
    if (v->neuron_cell) printf("neuron %d %d %d %d %d\n", v->neuron_x, v->neuron_y, v->neuron_cell, v->neuron_dim, v->neuron_query);
    for (int l = 0; l <= VIEWER_MAX_ROWS; l++)   /* the heads the replayed events scaled */
        for (int h = 0; h <= VIEWER_MAX_HEADS; h++)
            if (v->head_scale[l][h] != 1) printf("headscale %d %d %g\n", l, h, (double)v->head_scale[l][h]);
    printf("slider %d %d %d %d\n", v->slider_rect.x, v->slider_rect.y, v->slider_rect.w, v->slider_rect.h);
    for (int i = 0; i < v->n_plots; i++)
        printf("plot %d %d %d %d %lld %lld %.9g %.9g %s\n", v->plots[i].p.x, v->plots[i].p.y, v->plots[i].p.w, v->plots[i].p.h,
               (long long)v->plots[i].x0, (long long)v->plots[i].x1, v->plots[i].lo, v->plots[i].hi, v->plots[i].name);
    if (v->run.status[0]) printf("status %s %lld\n", v->run.status, (long long)v->run.status_step);
    if (v->failure_rect.w) {
        printf("failure %d %d %d %d\n", v->failure_rect.x, v->failure_rect.y, v->failure_rect.w, v->failure_rect.h);
        printf("failure_text %s\n", v->run.failure);
    }
    fflush(stdout);
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
            case SDL_KEYDOWN: running = handle_key(v, e.key.keysym.sym, e.key.keysym.mod) && running; dirty = true; break;
            case SDL_MOUSEBUTTONDOWN: dragging = true; handle_click(v, e.button.x, e.button.y, e.button.clicks); dirty = true; break;
            case SDL_MOUSEBUTTONUP: dragging = false; break;
            case SDL_MOUSEMOTION: handle_motion(v, e.motion.x, e.motion.y, dragging); dirty = true; break;
            case SDL_WINDOWEVENT: dirty = true; break;
            default: break;
            }
            got = SDL_PollEvent(&e);
        }
        double t = viewer_now();
        if (t - last_poll >= 0.1) {
            last_poll = t;
            if (viewer_run_poll(&v->run)) data_dirty = true;
            if (v->compare && viewer_run_poll(v->compare)) data_dirty = true;
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
            int rc = viewer_run_event_script(v, &script);
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
    "curves|images|neuron] [--diff STEP] [--layer L] [--head H] [--query Q] [--log-y] [--scale S] [--size WxH] [--compare RUN_DIR2]";

/* `attnlab view --help`: the usage, on stdout */
static const char *help_text =
    "usage: attnlab view RUN_DIR [options]   (a run, finished or still running, followed as it grows)\n"
    "  --screenshot FILE.png   render one frame to a PNG without a display, then exit\n"
    "  --step N                show each series' latest record at or before step N\n"
    "  --layout L              overview (default), grid, map, heads, matrices, curves, images, neuron\n"
    "  --diff STEP             difference mode: the shown step minus STEP\n"
    "  --layer L, --head H     the layer and head first shown (1-based)\n"
    "  --query Q               the query of the neuron view (1-based)\n"
    "  --log-y                 curves on a log y axis\n"
    "  --scale S               UI scale, 0.5 to 4 (default: the display's DPI / 96, or ATTNLAB_VIEW_SCALE)\n"
    "  --size WxH              window or screenshot size (default 1280x800)\n"
    "  --compare RUN_DIR2      draw a second run's curves beside this run's, on the same axes\n"
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
        else if (!strcmp(a, "--compare")) o->compare = argv[++i];
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
    if (!o->run_dir) return usage("%s", "which run directory?");
    return 0;
}

static void apply_options(viewer_state *v, const viewer_options *o) {
    v->layout = LAYOUT_OVERVIEW;
    for (int i = 0; o->layout && i < LAYOUT_COUNT; i++) if (!strcmp(o->layout, layout_names[i])) v->layout = (viewer_layout)i;
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
        for (int i = 0; i < LAYOUT_COUNT; i++) known |= !strcmp(o.layout, layout_names[i]);
        if (!known) return usage("unknown layout '%s'", o.layout);
    }
    static viewer_state v;
    char err[700];
    if (!viewer_run_open(&v.run, o.run_dir, err, sizeof err)) {
        fprintf(stderr, "attnlab view: %s\n", err);
        return 1;
    }
    static viewer_run compare;
    if (o.compare) {
        if (!viewer_run_open(&compare, o.compare, err, sizeof err)) {
            fprintf(stderr, "attnlab view: --compare: %s\n", err);
            viewer_run_close(&v.run);
            return 1;
        }
        v.compare = &compare;
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
    viewer_run_close(&v.run);
    if (v.compare) viewer_run_close(v.compare);
    return rc;
}
