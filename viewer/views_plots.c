/* views_plots.c -- weight matrices, scalar curves and images.
 *   matrices: one row per published name, one column per head; a diverging scale shared by all
 *             (so heads compare), with its legend; the value under the mouse.
 *   curves:   one plot per scalar (metrics.jsonl and lab.viz.scalar), raw values faint and the
 *             TensorBoard EMA (debiased) drawn over them, log y on request, the baselines
 *             (lab.viz.reference) as dashed lines, the script's events (ablate, pause ...) as
 *             vertical marks, and the shown step as a line; with --compare every compared run's
 *             curve of the same name on the same axes, in its slot's colour, and above the plots
 *             a legend of the runs (labels, a failed or interrupted run's state, the sweep points
 *             not drawn and why).
 *   images:   each image at the shown step, its attention heatmap laid over it, its points joined
 *             in order and numbered. */
#include "viewer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_MATRIX = 1 << 20, MAX_NAMES = 16, MAX_PLOTS = VIEWER_MAX_PLOTS };
static float diff_buf[MAX_MATRIX];

void viewer_draw_matrices(viewer_state *v, viewer_rect r) {
    viewer_rect in;
    viewer_panel(v, r, v->diff_base >= 0 ? "weight matrices (difference)" : "weight matrices", &in);
    /* rows: one per (name, layer); columns: heads */
    const char *names[MAX_NAMES];
    int layers[MAX_NAMES];
    int n_names = 0, max_head = 0;
    float range = 0;
    for (int i = 0; i < v->run.n_series; i++) {
        viewer_series *s = &v->run.series[i];
        if (s->kind != AL_RECORD_MATRIX) continue;
        int k = 0;
        while (k < n_names && (strcmp(names[k], s->name) || layers[k] != s->layer)) k++;
        if (k == n_names && n_names < MAX_NAMES) { names[n_names] = s->name; layers[n_names++] = s->layer; }
        if (s->head > max_head) max_head = s->head;
        int rows, cols;
        const float *m = viewer_values(v, s, &rows, &cols, diff_buf, MAX_MATRIX);
        for (int j = 0; m && j < rows * cols; j++) range = fmaxf(range, fabsf(m[j]));
    }
    if (n_names == 0) { viewer_note(v, in, "no weight matrices published (lab.viz.matrix)"); return; }
    if (range <= 0) range = 1;
    const int th = viewer_text_height(VIEWER_FONT_SMALL), pad = viewer_px(v, 6), legend_w = viewer_px(v, 64);
    const int ncols = max_head > 0 ? max_head : 1;
    const int cw = (in.w - legend_w) / ncols, ch = in.h / n_names;
    char info[300] = "";
    for (int k = 0; k < n_names; k++) {
        for (int h = max_head > 0 ? 1 : 0; h <= max_head; h++) {
            viewer_series *s = NULL;
            for (int i = 0; i < v->run.n_series && !s; i++) {
                viewer_series *t = &v->run.series[i];
                if (t->kind == AL_RECORD_MATRIX && t->head == h && t->layer == layers[k] && !strcmp(t->name, names[k])) s = t;
            }
            if (!s) continue;
            viewer_rect cell = {in.x + (h > 0 ? h - 1 : 0) * cw, in.y + k * ch, cw - pad, ch - pad};
            char title[300], layer[24] = "", head[24] = "";
            if (layers[k] > 0) snprintf(layer, sizeof layer, " L%d", layers[k]);
            if (h > 0) snprintf(head, sizeof head, " h%d", h);
            snprintf(title, sizeof title, "%.200s%s%s", names[k], layer, head);
            viewer_clip(&v->canvas, cell);
            viewer_text(&v->canvas, VIEWER_FONT_SMALL, cell.x, cell.y, VIEWER_DIM, title);
            viewer_unclip(&v->canvas);
            int rows, cols;
            const float *m = viewer_values(v, s, &rows, &cols, diff_buf, MAX_MATRIX);
            if (!m) continue;
            /* cells at most 40 px: a vector stays a strip of squares, not a banner */
            float px = fminf(fminf((float)cell.w / (float)cols, (float)(cell.h - th - pad / 2) / (float)rows), (float)viewer_px(v, 40));
            if (px < 0.5f) continue;
            viewer_rect mr = {cell.x, cell.y + th + pad / 2, (int)(px * (float)cols), (int)(px * (float)rows)};
            viewer_heatmap(&v->canvas, mr, m, rows, cols, -range, range, true, false);
            viewer_outline(&v->canvas, (viewer_rect){mr.x - 1, mr.y - 1, mr.w + 2, mr.h + 2}, 1, VIEWER_GRID);
            if (viewer_inside(mr, v->hover_x, v->hover_y)) {
                int i = (int)((float)(v->hover_y - mr.y) / px), j = (int)((float)(v->hover_x - mr.x) / px);
                if (i >= rows) i = rows - 1;
                if (j >= cols) j = cols - 1;
                snprintf(info, sizeof info, "%.200s [%d, %d] = %.4g", title, i + 1, j + 1, (double)m[(size_t)i * (size_t)cols + (size_t)j]);
            }
        }
    }
    viewer_legend(v, (viewer_rect){in.x + in.w - legend_w + pad, in.y, legend_w - pad, in.h - th - pad}, -range, range, true);
    if (info[0]) viewer_text(&v->canvas, VIEWER_FONT_SMALL, in.x, in.y + in.h - th, VIEWER_FG, info);
}

/* ---- curves ---------------------------------------------------------------------------------- */

static double to_y(const viewer_state *v, double val) { return v->log_y ? log10(val > 1e-30 ? val : 1e-30) : val; }

/* A plot's frame: its pixel rectangle and the data range it shows. */
typedef struct { viewer_rect p; int64_t x0, x1; double lo, hi; } plot_frame;

static int px_x(const plot_frame *f, int64_t step) {
    return f->p.x + (int)((double)(step - f->x0) * (f->p.w - 1) / (double)(f->x1 - f->x0));
}
static int px_y(const plot_frame *f, double y) { return f->p.y + (int)((f->hi - y) * (f->p.h - 1) / (f->hi - f->lo)); }

static void extend(const viewer_state *v, const viewer_curve *c, plot_frame *f) {
    if (!c || c->n == 0) return;
    if (c->steps[0] < f->x0) f->x0 = c->steps[0];
    if (c->steps[c->n - 1] > f->x1) f->x1 = c->steps[c->n - 1];
    for (int i = 0; i < c->n; i++) {
        if (v->log_y && c->values[i] <= 0) continue;
        double y = to_y(v, c->values[i]);
        if (isfinite(y)) { f->lo = fmin(f->lo, y); f->hi = fmax(f->hi, y); }
    }
}

/* One curve: per pixel column the range of its raw points (faint; raw 0: not drawn), then the
 * EMA, debiased as TensorBoard's, in `colour`. */
static void plot_curve(viewer_state *v, const viewer_curve *c, const plot_frame *f, uint32_t raw, uint32_t colour) {
    int col_lo = 0, col_hi = 0, col = -1;
    for (int i = 0; raw && i <= c->n; i++) {
        int x = i < c->n ? px_x(f, c->steps[i]) : -2;
        if (x != col && col >= 0) viewer_fill(&v->canvas, (viewer_rect){col, col_hi, 1, col_lo - col_hi + 1}, raw);
        if (i == c->n) break;
        if (!isfinite(c->values[i]) || (v->log_y && c->values[i] <= 0)) continue;
        int y = px_y(f, to_y(v, c->values[i]));
        if (x != col) { col = x; col_lo = col_hi = y; }
        else { if (y > col_lo) col_lo = y; if (y < col_hi) col_hi = y; }
    }
    double ema = 0, weight = 0;
    float px_prev = -1, py_prev = -1;
    for (int i = 0; i < c->n; i++) {
        if (!isfinite(c->values[i]) || (v->log_y && c->values[i] <= 0)) continue;
        ema = ema * v->smoothing + (1 - v->smoothing) * to_y(v, c->values[i]);
        weight = weight * v->smoothing + (1 - v->smoothing);
        float px = (float)px_x(f, c->steps[i]), py = (float)px_y(f, ema / weight);
        if (px_prev >= 0 && (px - px_prev >= 1 || i == c->n - 1))
            viewer_line(&v->canvas, px_prev, py_prev, px, py, colour, 1, viewer_px(v, 1.5f));
        if (px_prev < 0 || px - px_prev >= 1) { px_prev = px; py_prev = py; }
    }
}

/* a curve of one run as drawn: the curve and its colour */
typedef struct { viewer_curve *curve; uint32_t colour; } drawn_curve;

/* the faint colour of the raw points: colour 40% over the panel */
static uint32_t faint(uint32_t colour) {
    uint32_t out = 0xFF000000u;
    for (int shift = 0; shift <= 16; shift += 8) {
        const int a = (int)((colour >> shift) & 0xFF), b = (int)((VIEWER_PANEL >> shift) & 0xFF);
        out |= (uint32_t)(b + (a - b) * 2 / 5) << shift;
    }
    return out;
}

/* The plot of one name.  c: this run's curve (or NULL); others: the compared runs' curves of that
 * name (n_others of them, 0 without --compare). */
static void draw_curve(viewer_state *v, const char *name, viewer_curve *c, const drawn_curve *others, int n_others, viewer_rect r) {
    viewer_rect in;
    char title[200];
    snprintf(title, sizeof title, "%s%s%s", name, v->log_y ? "  (log y)" : "", v->smoothing > 0 ? "  smoothed" : "");
    viewer_panel(v, r, title, &in);
    const int th = viewer_text_height(VIEWER_FONT_SMALL), axis_w = viewer_px(v, 52);
    plot_frame f = {{in.x + axis_w, in.y, in.w - axis_w - viewer_px(v, 90), in.h - th - viewer_px(v, 4)}, INT64_MAX, INT64_MIN,
                    INFINITY, -INFINITY};
    const viewer_rect p = f.p;
    if (p.w < 10 || p.h < 10) return;
    extend(v, c, &f);
    for (int i = 0; i < n_others; i++) extend(v, others[i].curve, &f);
    if (f.x0 > f.x1) return;
    if (f.x1 <= f.x0) f.x1 = f.x0 + 1;
    /* the baselines of this curve: "curve:label" reference records */
    size_t nlen = strlen(name);
    for (int i = 0; i < v->run.n_series; i++) {
        viewer_series *s = &v->run.series[i];
        if (s->kind != AL_RECORD_REFERENCE || strncmp(s->name, name, nlen) || s->name[nlen] != ':') continue;
        const float *val = viewer_series_load(&v->run, s, s->n - 1);
        if (val && isfinite(*val) && (!v->log_y || *val > 0)) { f.lo = fmin(f.lo, to_y(v, *val)); f.hi = fmax(f.hi, to_y(v, *val)); }
    }
    if (!(f.hi >= f.lo)) return;
    /* a curve that never goes below 0 (a loss, an accuracy, a norm) gets an axis that does not
     * either: the margins (and a flat curve's half-unit of room) stop at 0 */
    const bool nonnegative = !v->log_y && f.lo >= 0;
    if (f.hi - f.lo < 1e-12) { f.hi += 0.5; f.lo -= 0.5; }
    const double margin = (f.hi - f.lo) * 0.05;
    f.lo -= margin;
    f.hi += margin;
    if (nonnegative && f.lo < 0) f.lo = 0;
    if (v->n_plots < VIEWER_MAX_PLOTS) {
        viewer_plot *rec = &v->plots[v->n_plots++];
        snprintf(rec->name, sizeof rec->name, "%s", name);
        rec->p = p;
        rec->x0 = f.x0;
        rec->x1 = f.x1;
        rec->lo = f.lo;
        rec->hi = f.hi;
    }
    viewer_outline(&v->canvas, p, 1, VIEWER_GRID);
    for (int k = 0; k <= 4; k++) {
        double y = f.hi - (f.hi - f.lo) * k / 4;
        char label[32];
        snprintf(label, sizeof label, "%.3g", v->log_y ? pow(10, y) : y);
        int py = px_y(&f, y);
        viewer_fill(&v->canvas, (viewer_rect){p.x, py, p.w, 1}, VIEWER_GRID);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, p.x - viewer_text_width(VIEWER_FONT_SMALL, label) - viewer_px(v, 4), py - th / 2, VIEWER_DIM, label);
    }
    for (int k = 0; k <= 4; k++) {
        int64_t s = f.x0 + (f.x1 - f.x0) * k / 4;
        char label[32];
        snprintf(label, sizeof label, "%lld", (long long)s);
        int w = viewer_text_width(VIEWER_FONT_SMALL, label), px = px_x(&f, s) - w / 2;
        if (px + w > p.x + p.w) px = p.x + p.w - w;
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, px, p.y + p.h + viewer_px(v, 2), VIEWER_DIM, label);
    }
    viewer_clip(&v->canvas, p);
    /* events from the script (ablate, pause ...) */
    for (int i = 0; i < v->run.n_events; i++) {
        int64_t s = v->run.events[i].step;
        if (s < f.x0 || s > f.x1) continue;
        viewer_fill(&v->canvas, (viewer_rect){px_x(&f, s), p.y, 1, p.h}, VIEWER_BAD);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, px_x(&f, s) + viewer_px(v, 3), p.y + viewer_px(v, 2) + (i % 3) * th, VIEWER_BAD,
                    v->run.events[i].text);
    }
    /* the raw points' bands only while they cannot cover each other (two runs at most); this run
     * last, on top */
    const bool raw = n_others <= 1;
    const uint32_t own = viewer_compare_colour(v->n_compared ? v->own_slot : 0);
    for (int i = 0; i < n_others; i++)
        if (others[i].curve) plot_curve(v, others[i].curve, &f, raw ? faint(others[i].colour) : 0, others[i].colour);
    if (c) plot_curve(v, c, &f, raw ? faint(own) : 0, own);
    int64_t shown = viewer_shown_step(v);
    if (shown >= f.x0 && shown <= f.x1) viewer_fill(&v->canvas, (viewer_rect){px_x(&f, shown), p.y, 1, p.h}, VIEWER_ACCENT);
    viewer_unclip(&v->canvas);
    for (int i = 0; i < v->run.n_series; i++) {
        viewer_series *s = &v->run.series[i];
        if (s->kind != AL_RECORD_REFERENCE || strncmp(s->name, name, nlen) || s->name[nlen] != ':') continue;
        const float *val = viewer_series_load(&v->run, s, s->n - 1);
        if (!val || !isfinite(*val) || (v->log_y && *val <= 0)) continue;
        int py = px_y(&f, to_y(v, *val));
        viewer_dashed_hline(&v->canvas, p.x, p.x + p.w, py, 0xFFC8C8C8, viewer_px(v, 4));
        char label[300];
        snprintf(label, sizeof label, "%s %.3g", s->name + nlen + 1, (double)*val);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, p.x + p.w + viewer_px(v, 4), py - th / 2, 0xFFC8C8C8, label);
    }
    if (c && viewer_inside(p, v->hover_x, v->hover_y)) {
        int64_t s = f.x0 + (int64_t)((double)(v->hover_x - p.x) * (double)(f.x1 - f.x0) / (p.w - 1));
        int lo_i = 0, hi_i = c->n - 1;
        while (lo_i < hi_i) { int mid = (lo_i + hi_i) / 2; if (c->steps[mid] < s) lo_i = mid + 1; else hi_i = mid; }
        char label[160];
        snprintf(label, sizeof label, "step %lld: %.5g", (long long)c->steps[lo_i], c->values[lo_i]);
        viewer_fill(&v->canvas, (viewer_rect){v->hover_x, p.y, 1, p.h}, 0xFF9E9E9E);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, p.x + viewer_px(v, 4), p.y + p.h - th - viewer_px(v, 2), VIEWER_FG, label);
    }
}

static viewer_curve *find_curve(viewer_run *run, const char *name) {
    for (int i = 0; run && i < run->n_curves; i++)
        if (run->curves[i].n > 0 && !strcmp(run->curves[i].name, name)) return &run->curves[i];
    return NULL;
}

/* what the legend says of a drawn run beside its label: how it ended when it did not finish */
static void run_state(const viewer_compared *c, char *out, size_t size, uint32_t *colour) {
    const viewer_run *run = c->run;
    out[0] = 0;
    *colour = VIEWER_DIM;
    char at[40] = "";
    if (run->status_step >= 0) snprintf(at, sizeof at, " at step %lld", (long long)run->status_step);
    if (!strcmp(run->status, "failed")) { snprintf(out, size, "failed%s", at); *colour = VIEWER_BAD; }
    else if (!strcmp(run->status, "interrupted")) snprintf(out, size, "interrupted%s", at);
    /* a point whose process died without a word: its status.json still says running */
    else if (!strcmp(run->status, "running") && !strcmp(c->sweep_status, "killed")) { snprintf(out, size, "killed"); *colour = VIEWER_BAD; }
    else if (!strcmp(run->status, "running")) snprintf(out, size, "running");
}

/* The legend of the compared runs across the top of r, items flowing into lines: a colour swatch,
 * the label and, after it, a state (failed at step N, running ...); a sweep point not drawn has an
 * empty swatch and its reason.  What does not fit in a third of r's height is counted ("+3 more").
 * Laid out once to know its height (the panel under it), then drawn.  Returns the height. */
static int draw_run_legend(viewer_state *v, viewer_rect r) {
    const int th = viewer_text_height(VIEWER_FONT_SMALL), pad = viewer_px(v, 6), sw = viewer_px(v, 14), lh = th + viewer_px(v, 3);
    const int max_lines = r.h / 3 / lh > 1 ? r.h / 3 / lh : 1;
    int line = 0, shown = 0;
    for (int pass = 0; pass < 2; pass++) {
        const bool draw = pass == 1;
        if (draw) {
            v->runs_legend = (viewer_rect){r.x, r.y, r.w, pad + (line + 1) * lh};
            viewer_fill(&v->canvas, v->runs_legend, VIEWER_PANEL);
        }
        int x = r.x + pad;
        line = shown = 0;
        for (int i = 0; i < v->n_compared; i++) {
            const viewer_compared *c = &v->compared[i];
            char state[300];
            uint32_t state_colour = VIEWER_DIM;
            if (c->run) run_state(c, state, sizeof state, &state_colour);
            else snprintf(state, sizeof state, "not drawn: %s", c->why);
            const int lw = viewer_text_width(VIEWER_FONT_SMALL, c->label);
            const int w = sw + pad / 2 + lw + (state[0] ? pad / 2 + viewer_text_width(VIEWER_FONT_SMALL, state) : 0) + 2 * pad;
            if (x > r.x + pad && x + w > r.x + r.w) { x = r.x + pad; line++; }
            if (line >= max_lines) { line = max_lines - 1; break; }
            if (draw) {
                const int y = r.y + pad / 2 + line * lh;
                const uint32_t colour = viewer_compare_colour(i);
                viewer_rect swatch = {x, y + th / 2 - viewer_px(v, 2), sw, viewer_px(v, 4)};
                if (c->run) viewer_fill(&v->canvas, swatch, 0xFF000000u | colour);
                else viewer_outline(&v->canvas, (viewer_rect){swatch.x, swatch.y - 1, swatch.w, swatch.h + 2}, 1, VIEWER_DIM);
                viewer_clip(&v->canvas, v->runs_legend);
                int tx = x + sw + pad / 2;
                tx += viewer_text(&v->canvas, VIEWER_FONT_SMALL, tx, y, c->run ? VIEWER_FG : VIEWER_DIM, c->label);
                if (state[0]) viewer_text(&v->canvas, VIEWER_FONT_SMALL, tx + pad / 2, y, state_colour, state);
                viewer_unclip(&v->canvas);
            }
            x += w;
            shown++;
        }
    }
    if (shown < v->n_compared) {
        char more[64];
        snprintf(more, sizeof more, "+%d more", v->n_compared - shown);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, r.x + r.w - viewer_text_width(VIEWER_FONT_SMALL, more) - pad,
                    r.y + pad / 2 + line * lh, VIEWER_ACCENT, more);
    }
    return v->runs_legend.h;
}

/* One plot per scalar name of this run, then of the compared runs' that this one lacks; with
 * --compare the runs' legend above them. */
void viewer_draw_curves(viewer_state *v, viewer_rect r) {
    const char *names[MAX_PLOTS];
    int n = 0;
    v->runs_legend = (viewer_rect){0, 0, 0, 0};
    for (int k = -1; k < v->n_compared; k++) {
        const viewer_run *run = k < 0 ? &v->run : v->compared[k].run;
        for (int i = 0; run && i < run->n_curves && n < MAX_PLOTS; i++) {
            const viewer_curve *c = &run->curves[i];
            bool seen = c->n == 0;
            for (int j = 0; j < n && !seen; j++) seen = !strcmp(names[j], c->name);
            if (!seen) names[n++] = c->name;
        }
    }
    if (v->n_compared > 0) {
        const int used = draw_run_legend(v, r) + viewer_px(v, 4);
        r.y += used;
        r.h -= used;
    }
    if (n == 0) {
        viewer_rect in;
        viewer_panel(v, r, "curves", &in);
        viewer_note(v, in, "no scalars yet (run:log or lab.viz.scalar)");
        return;
    }
    const int gap = viewer_px(v, 4), h = (r.h - gap * (n - 1)) / n;
    drawn_curve others[VIEWER_MAX_COMPARED];
    for (int i = 0; i < n; i++) {
        int n_others = 0;
        for (int k = 0; k < v->n_compared; k++) {
            viewer_run *run = v->compared[k].run;
            if (!run || run == &v->run) continue;
            others[n_others++] = (drawn_curve){find_curve(run, names[i]), viewer_compare_colour(k)};
        }
        draw_curve(v, names[i], find_curve(&v->run, names[i]), others, n_others, (viewer_rect){r.x, r.y + i * (h + gap), r.w, h});
    }
}

/* ---- images ---------------------------------------------------------------------------------- */

static void draw_image(viewer_state *v, viewer_series *img, viewer_rect r) {
    viewer_rect in;
    viewer_panel(v, r, img->name, &in);
    int64_t step = viewer_shown_step(v);
    int e = viewer_series_at(img, step);
    const float *px = viewer_series_load(&v->run, img, e);
    if (!px) { viewer_note(v, in, "no image at this step"); return; }
    const viewer_entry *en = &img->entries[e];
    const int ih = en->shape[0], iw = en->shape[1], ch = en->ndim == 3 ? en->shape[2] : 1;
    float z = fminf((float)in.w / (float)iw, (float)in.h / (float)ih);
    viewer_rect ir = {in.x, in.y, (int)((float)iw * z), (int)((float)ih * z)};
    if (!v->image_rect.w) { v->image_rect = ir; v->image_zoom = z; }
    for (int y = 0; y < ir.h; y++)
        for (int x = 0; x < ir.w; x++) {
            int sy = (int)((float)y / z), sx = (int)((float)x / z);
            const float *p = px + ((size_t)sy * (size_t)iw + (size_t)sx) * (size_t)ch;
            float rr = p[0], gg = ch >= 3 ? p[1] : p[0], bb = ch >= 3 ? p[2] : p[0];
            uint32_t c = 0xFF000000u | (uint32_t)(fminf(fmaxf(rr, 0), 1) * 255) << 16 |
                         (uint32_t)(fminf(fmaxf(gg, 0), 1) * 255) << 8 | (uint32_t)(fminf(fmaxf(bb, 0), 1) * 255);
            viewer_fill(&v->canvas, (viewer_rect){ir.x + x, ir.y + y, 1, 1}, c);
        }
    viewer_series *heat = viewer_run_find(&v->run, AL_RECORD_HEAT, img->name, 0, 0);
    int he = viewer_series_at(heat, step);
    const float *hm = viewer_series_load(&v->run, heat, he);
    if (hm) {
        const int hh = heat->entries[he].shape[0], hw = heat->entries[he].shape[1];
        float mx = 0;
        for (int i = 0; i < hh * hw; i++) mx = fmaxf(mx, hm[i]);
        for (int y = 0; y < ir.h && mx > 0; y++)
            for (int x = 0; x < ir.w; x++) {
                float t = hm[(size_t)(y * hh / ir.h) * (size_t)hw + (size_t)(x * hw / ir.w)] / mx;
                viewer_blend(&v->canvas, ir.x + x, ir.y + y, viewer_sequential(t) & 0xFFFFFF, 0.55f * t);
            }
    }
    viewer_series *pts = viewer_run_find(&v->run, AL_RECORD_POINTS, img->name, 0, 0);
    int pe = viewer_series_at(pts, step);
    const float *pp = viewer_series_load(&v->run, pts, pe);
    if (pp) {
        const int k = pts->entries[pe].shape[0];
        for (int i = 0; i < k; i++) {
            float x = (float)ir.x + pp[2 * i] * z, y = (float)ir.y + pp[2 * i + 1] * z;
            if (i > 0) viewer_line(&v->canvas, (float)ir.x + pp[2 * i - 2] * z, (float)ir.y + pp[2 * i - 1] * z, x, y, 0xFFEB3B, 0.9f, viewer_px(v, 2));
        }
        for (int i = 0; i < k; i++) {
            float x = (float)ir.x + pp[2 * i] * z, y = (float)ir.y + pp[2 * i + 1] * z;
            viewer_disc(&v->canvas, x, y, (float)viewer_px(v, 7), 0xFFEB3B, 0.95f);
            char num[16];
            snprintf(num, sizeof num, "%d", i + 1);
            viewer_text(&v->canvas, VIEWER_FONT_SMALL, (int)x - viewer_text_width(VIEWER_FONT_SMALL, num) / 2,
                        (int)y - viewer_text_height(VIEWER_FONT_SMALL) / 2, 0x000000, num);
        }
    }
}

void viewer_draw_images(viewer_state *v, viewer_rect r) {
    viewer_series *imgs[8];
    int n = 0;
    for (int i = 0; i < v->run.n_series && n < 8; i++)
        if (v->run.series[i].kind == AL_RECORD_IMAGE) imgs[n++] = &v->run.series[i];
    if (n == 0) {
        viewer_rect in;
        viewer_panel(v, r, "images", &in);
        viewer_note(v, in, "no images published (lab.viz.image)");
        return;
    }
    const int cols = n > 1 ? 2 : 1, rows = (n + cols - 1) / cols, gap = viewer_px(v, 4);
    const int w = (r.w - gap * (cols - 1)) / cols, h = (r.h - gap * (rows - 1)) / rows;
    for (int i = 0; i < n; i++)
        draw_image(v, imgs[i], (viewer_rect){r.x + (i % cols) * (w + gap), r.y + (i / cols) * (h + gap), w, h});
}
