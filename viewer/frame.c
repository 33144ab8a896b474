/* frame.c -- one frame of the viewer into its canvas: the top bar (the run's name, the layout tabs,
 * what the script says it is doing), a failed run's banner, the layout's views (views_*.c), the
 * step bar and the help.  viewer_print_layout says where the last frame put its parts, so that
 * tests can look at known pixels.  It draws only: the window (viewer.c) shows the canvas, and
 * input.c acts on the rectangles it records in the state. */
#include "viewer.h"
#include <stdio.h>
#include <string.h>

const char *const viewer_layout_names[LAYOUT_COUNT] = {"overview", "grid", "map", "heads", "matrices", "curves", "images", "neuron"};
const char *const viewer_layout_keys[LAYOUT_COUNT] = {"0", "1", "2", "3", "4", "5", "6", "7"};

/* what the script said it is doing, from the last pause/resume/single-step event it logged */
const char *viewer_script_state(const viewer_state *v) {
    for (int i = v->run.n_events - 1; i >= 0; i--) {
        const al_event_kind k = v->run.events[i].kind;
        if (k == AL_EVENT_PAUSE || k == AL_EVENT_SINGLE_STEP) return "paused";
        if (k == AL_EVENT_RESUME) return "running";
    }
    return NULL;
}

/* the index of the snapshot shown (the last at or before the shown step), -1 none */
int viewer_snapshot_index(const viewer_state *v) {
    int64_t s = viewer_shown_step(v);
    int idx = -1;
    for (int i = 0; i < v->run.n_snapshots && v->run.snapshots[i] <= s; i++) idx = i;
    return idx;
}

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
    const char *state = viewer_script_state(v);
    char right[120];
    snprintf(right, sizeof right, "%s%s   ? help", state ? "script " : "", state ? state : "");
    const int right_w = viewer_text_width(VIEWER_FONT_NORMAL, right) + 2 * pad;
    /* the tabs take what is left; in a narrow window they shrink to their keys' digits */
    int tabs_w = 0;
    for (int i = 0; i < LAYOUT_COUNT; i++) {
        char label[40];
        snprintf(label, sizeof label, "%s %s", viewer_layout_keys[i], viewer_layout_names[i]);
        tabs_w += viewer_text_width(VIEWER_FONT_SMALL, label) + pad + viewer_px(v, 2);
    }
    const bool short_tabs = x + viewer_px(v, 120) + tabs_w + right_w > r.x + r.w;
    x = short_tabs ? r.x + r.w - right_w - LAYOUT_COUNT * (viewer_px(v, 24) + pad) : r.x + r.w - right_w - tabs_w;
    for (int i = 0; i < LAYOUT_COUNT; i++) {
        char label[40];
        if (short_tabs) snprintf(label, sizeof label, "%s", viewer_layout_keys[i]);
        else snprintf(label, sizeof label, "%s %s", viewer_layout_keys[i], viewer_layout_names[i]);
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
        int idx = viewer_snapshot_index(v);
        int kx = v->slider_rect.x + (n > 1 ? (idx < 0 ? 0 : idx) * (v->slider_rect.w - 1) / (n - 1) : v->slider_rect.w - 1);
        if (v->diff_base >= 0) {
            int b = 0;
            while (b < n - 1 && v->run.snapshots[b + 1] <= v->diff_base) b++;
            int bx = v->slider_rect.x + (n > 1 ? b * (v->slider_rect.w - 1) / (n - 1) : 0);
            viewer_fill(&v->canvas, (viewer_rect){bx - 1, v->slider_rect.y - 3, 3, v->slider_rect.h + 6}, 0xFF4393C3);
        }
        viewer_fill(&v->canvas, (viewer_rect){kx - viewer_px(v, 3), v->slider_rect.y - 3, viewer_px(v, 6), v->slider_rect.h + 6}, VIEWER_ACCENT);
    }
    char info[1100], note[400];
    /* sweep points that are not drawn are said here in every layout, not only beside the curves */
    const bool left_out = viewer_compare_not_drawn(v, note, sizeof note) > 0;
    if (v->run.error[0]) snprintf(info, sizeof info, "%s", v->run.error);
    else snprintf(info, sizeof info, "%d snapshots, newest step %lld%s%s%s%s%s", n, (long long)v->run.latest_step,
                  v->run.malformed_lines ? "; malformed metrics lines skipped" : "", left_out ? "; " : "", left_out ? note : "",
                  v->status[0] ? "   " : "", v->status);
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
    if (v->runs_legend.w) printf("runs_legend %d %d %d %d\n", v->runs_legend.x, v->runs_legend.y, v->runs_legend.w, v->runs_legend.h);
    for (int i = 0; i < v->n_compared; i++) {   /* slot, drawn, this run, colour, status, label */
        const viewer_compared *c = &v->compared[i];
        const char *status = c->run ? (c->run->status[0] ? c->run->status : "-")
                           : !strncmp(c->state, "unreadable", 10) ? "unreadable" : c->sweep_status;
        printf("compared %d %d %d %06x %s %s\n", i, c->run != NULL, c->run == &v->run, (unsigned)viewer_compare_colour(i), status,
               c->label);
    }
    char note[400];
    if (viewer_compare_not_drawn(v, note, sizeof note)) printf("compare_note %s\n", note);
    if (v->run.status[0]) printf("status %s %lld\n", v->run.status, (long long)v->run.status_step);
    if (v->failure_rect.w) {
        printf("failure %d %d %d %d\n", v->failure_rect.x, v->failure_rect.y, v->failure_rect.w, v->failure_rect.h);
        printf("failure_text %s\n", v->run.failure);
    }
    fflush(stdout);
}
