/* input.c -- what the user's keys and clicks do: move through the recorded steps, choose a layout,
 * a layer and a head, hide heads, save a PNG or a CSV of the shown map, and send commands to the
 * running script (pause, single step, ablate or scale a head) as lines appended to RUN_DIR/commands
 * (docs/run-directory.md has their grammar; lua/attnlab/run_commands.lua applies them).  The
 * window loop (viewer.c) calls it with each SDL event; what is where on screen comes from the last
 * frame (frame.c). */
#define _GNU_SOURCE
#include "viewer.h"
#include <SDL.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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


/* ---- steps ----------------------------------------------------------------------------------- */

static void go_to_snapshot(viewer_state *v, int idx) {
    if (v->run.n_snapshots == 0) return;
    if (idx >= v->run.n_snapshots - 1) { v->step = -1; return; }   /* the newest: follow it live */
    if (idx < 0) idx = 0;
    v->step = v->run.snapshots[idx];
}

/* ---- keys and the mouse ---------------------------------------------------------------------- */

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
    snprintf(path, sizeof path, "%s/view-%s-step%lld.png", v->run.dir, viewer_layout_names[v->layout], (long long)viewer_shown_step(v));
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

bool viewer_handle_key(viewer_state *v, int key, unsigned mod) {
    viewer_collect_rows(v);   /* records may have arrived since the last frame (and moved the series) */
    const char *text = SDL_GetKeyName(key);
    if (v->help && key != SDLK_q) { v->help = false; return true; }   /* any key closes the help first */
    switch (key) {
    case SDLK_q: case SDLK_ESCAPE: return false;
    case SDLK_SPACE: {   /* the opposite of what the script last said it was doing */
        const char *state = viewer_script_state(v);
        send_command(v, state && !strcmp(state, "paused") ? "resume" : "pause");
        break;
    }
    case SDLK_n: case SDLK_PERIOD: send_command(v, "step"); break;
    case SDLK_LEFT: go_to_snapshot(v, viewer_snapshot_index(v) - 1); break;
    case SDLK_RIGHT: go_to_snapshot(v, viewer_snapshot_index(v) + 1); break;
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
            if (text && !strcmp(text, viewer_layout_keys[i])) v->layout = (viewer_layout)i;
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

void viewer_handle_click(viewer_state *v, int x, int y, int clicks) {
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

void viewer_handle_motion(viewer_state *v, int x, int y, bool dragging) {
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
