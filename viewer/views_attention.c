/* views_attention.c -- attention maps three ways, as BertViz and CircuitsVis show them:
 *   the grid: one thumbnail per (layer, head), rows = layers (one per published name and layer);
 *   the map: the focused head large, query tokens down the side, key tokens along the top, the
 *            value under the mouse, a causal mask greyed;
 *   the head view: query and key tokens in two columns joined by lines whose opacity is the
 *            weight, one colour per head, hover a query token to see only its lines;
 *   the neuron view (BertViz's): for one query, its vector q, each key's k, the products q*k
 *            element by element, the dot products q.k and the weights the map holds, so one
 *            sees why a weight is large (needs the script to publish q and k).
 * Sequential colours run from 0 to the map's largest weight (auto range, written on the legend);
 * in difference mode the colours diverge around 0 with a symmetric range. */
#include "viewer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_TOKENS = 512, MAX_MAP = 1 << 20 };
static float diff_buf[MAX_MAP];

void viewer_collect_rows(viewer_state *v) {
    v->n_rows = 0;
    for (int i = 0; i < v->run.n_series; i++) {
        viewer_series *s = &v->run.series[i];
        if (s->kind != AL_RECORD_ATTENTION || s->head < 1 || s->head > VIEWER_MAX_HEADS) continue;
        int r = 0;
        while (r < v->n_rows && !(v->rows[r].layer == s->layer && !strcmp(v->rows[r].name, s->name))) r++;
        if (r == v->n_rows) {
            if (r == VIEWER_MAX_ROWS) continue;
            memset(&v->rows[r], 0, sizeof v->rows[r]);
            snprintf(v->rows[r].name, sizeof v->rows[r].name, "%s", s->name);
            v->rows[r].layer = s->layer;
            v->n_rows++;
        }
        v->rows[r].heads[s->head] = s;
        if (s->head > v->rows[r].n_heads) v->rows[r].n_heads = s->head;
    }
    /* layers in order, then names: the grid reads top to bottom like the model */
    for (int i = 1; i < v->n_rows; i++)
        for (int j = i; j > 0; j--) {
            viewer_attention_row *a = &v->rows[j - 1], *b = &v->rows[j];
            if (a->layer < b->layer || (a->layer == b->layer && strcmp(a->name, b->name) <= 0)) break;
            viewer_attention_row t = *a; *a = *b; *b = t;
        }
    if (v->row >= v->n_rows) v->row = v->n_rows ? v->n_rows - 1 : 0;
    if (v->n_rows && (v->head < 1 || v->head > v->rows[v->row].n_heads)) v->head = 1;
}

/* token labels of a row at the shown step: pointers into a static copy of the record's text */
static int row_tokens(viewer_state *v, const char *name, const char **q, int *nq, const char **k, int *nk) {
    static char text[1 << 16];
    *nq = *nk = 0;
    viewer_series *s = viewer_run_find(&v->run, AL_RECORD_TOKENS, name, 0, 0);
    int e = viewer_series_at(s, viewer_shown_step(v));
    if (e < 0) e = viewer_series_at(s, -1);   /* tokens published after the map still label it */
    const char *t = e >= 0 ? viewer_series_load(&v->run, s, e) : NULL;
    if (!t) return 0;
    snprintf(text, sizeof text, "%s", t);
    const char *list[2 * MAX_TOKENS];
    int n = 0;
    for (char *p = text; n < 2 * MAX_TOKENS;) {
        list[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        p = nl + 1;
    }
    const viewer_entry *en = &s->entries[e];
    int a = en->ndim == 2 ? en->shape[0] : en->shape[0], b = en->ndim == 2 ? en->shape[1] : en->shape[0];
    if (a > MAX_TOKENS || b > MAX_TOKENS) return 0;
    for (int i = 0; i < a && i < n; i++) q[(*nq)++] = list[i];
    int off = en->ndim == 2 ? a : 0;
    for (int j = 0; j < b && off + j < n; j++) k[(*nk)++] = list[off + j];
    return 1;
}

/* The colour range of a map: [0, its largest weight], or [0, 1] when fixed; symmetric around 0
 * for a difference. */
static void map_range(const viewer_state *v, const float *m, int n, float *lo, float *hi) {
    float a = 0, b = 0;
    for (int i = 0; i < n; i++) { if (m[i] < a) a = m[i]; if (m[i] > b) b = m[i]; }
    if (v->diff_base >= 0) { float r = fmaxf(fabsf(a), fabsf(b)); a = -r; b = r; }
    else { a = 0; if (v->fixed_range) b = 1; }
    if (b - a < 1e-12f) b = a + 1e-12f;
    *lo = a;
    *hi = b;
}

/* What head detectors report about a map: the mean entropy of its rows (nats; log M when
 * uniform), the mean of the row maxima, and for a square map the previous-token score (the mean
 * weight on key i-1 from query i). */
typedef struct { double entropy, peak, previous; bool square; } head_stats;

static head_stats stats_of(const float *m, int rows, int cols) {
    head_stats st = {0, 0, 0, rows == cols && rows > 1};
    for (int i = 0; i < rows; i++) {
        float row_max = 0;
        for (int j = 0; j < cols; j++) {
            float p = m[(size_t)i * (size_t)cols + (size_t)j];
            if (p > 0) st.entropy -= (double)p * log((double)p);
            if (p > row_max) row_max = p;
        }
        st.peak += row_max;
        if (st.square && i > 0) st.previous += m[(size_t)i * (size_t)cols + (size_t)(i - 1)];
    }
    if (rows > 0) { st.entropy /= rows; st.peak /= rows; }
    if (st.square) st.previous /= rows - 1;
    return st;
}

/* A square map whose cells above the diagonal are all exactly 0 while some below it are not was
 * made with a causal mask (an identity map is not: nothing below its diagonal). */
static bool is_causal(const float *m, int rows, int cols) {
    if (rows != cols || rows < 2) return false;
    bool below = false;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float x = m[(size_t)i * (size_t)cols + (size_t)j];
            if (j > i && x != 0) return false;
            if (j < i && x != 0) below = true;
        }
    return below;
}

/* "L2 attn", or just "L2" when that is the name already */
static void row_label(const viewer_attention_row *row, char *out, size_t n) {
    char layer[24];
    snprintf(layer, sizeof layer, "L%d", row->layer);
    if (!strcmp(layer, row->name)) snprintf(out, n, "%s", layer);
    else snprintf(out, n, "%s %.200s", layer, row->name);
}

static bool head_ablated(const viewer_state *v, int layer, int head) {
    return layer >= 0 && layer <= VIEWER_MAX_ROWS && v->head_scale[layer][head] != 1;
}

void viewer_draw_grid(viewer_state *v, viewer_rect r) {
    viewer_rect in;
    viewer_panel(v, r, v->diff_base >= 0 ? "attention: layers x heads (difference)" : "attention: layers x heads", &in);
    memset(v->grid_cells, 0, sizeof v->grid_cells);
    if (v->n_rows == 0) { viewer_note(v, in, "no attention maps published (lab.viz.attention)"); return; }
    int max_heads = 1;
    for (int i = 0; i < v->n_rows; i++) if (v->rows[i].n_heads > max_heads) max_heads = v->rows[i].n_heads;
    const int th = viewer_text_height(VIEWER_FONT_SMALL), gap = viewer_px(v, 4);
    int label_w = 0;
    for (int i = 0; i < v->n_rows; i++) {
        char label[300];
        row_label(&v->rows[i], label, sizeof label);
        int w = viewer_text_width(VIEWER_FONT_SMALL, label);
        if (w > label_w) label_w = w;
    }
    label_w = label_w < in.w / 4 ? label_w + gap : in.w / 4;
    int cell = (in.w - label_w) / max_heads;
    int cell_h = (in.h - th - gap) / v->n_rows;
    if (cell_h < cell) cell = cell_h;
    if (cell < 4) return;
    for (int h = 1; h <= max_heads; h++) {
        char label[16];
        snprintf(label, sizeof label, "H%d", h);
        int w = viewer_text_width(VIEWER_FONT_SMALL, label);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, in.x + label_w + (h - 1) * cell + (cell - w) / 2, in.y,
                    h == v->head ? VIEWER_ACCENT : VIEWER_DIM, label);
    }
    for (int i = 0; i < v->n_rows; i++) {
        viewer_attention_row *row = &v->rows[i];
        const int y = in.y + th + gap + i * cell;
        char label[300];
        row_label(row, label, sizeof label);
        viewer_clip(&v->canvas, (viewer_rect){in.x, y, label_w - gap, cell});
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, in.x, y + (cell - th) / 2, i == v->row ? VIEWER_ACCENT : VIEWER_DIM, label);
        viewer_unclip(&v->canvas);
        for (int h = 1; h <= row->n_heads; h++) {
            viewer_rect c = {in.x + label_w + (h - 1) * cell + gap / 2, y + gap / 2, cell - gap, cell - gap};
            v->grid_cells[i][h] = c;
            int rows = 0, cols = 0;
            const float *m = row->heads[h] ? viewer_values(v, row->heads[h], &rows, &cols, diff_buf, MAX_MAP) : NULL;
            if (!m) { viewer_fill(&v->canvas, c, VIEWER_MASKED); continue; }
            float lo, hi;
            map_range(v, m, rows * cols, &lo, &hi);
            viewer_heatmap(&v->canvas, c, m, rows, cols, lo, hi, v->diff_base >= 0, v->diff_base < 0 && is_causal(m, rows, cols));
            if (v->diff_base < 0 && c.h >= 5 * th) {   /* the head's entropy, on a dark strip */
                char entropy[32];
                /* once per record: the logs of an 8 x 8 grid of 128 x 128 maps would cost 10 ms a frame */
                viewer_series *hs = row->heads[h];
                const int e = viewer_series_at(hs, viewer_shown_step(v)) + 1;
                if (hs->entropy_entry != e) { hs->entropy = stats_of(m, rows, cols).entropy; hs->entropy_entry = e; }
                snprintf(entropy, sizeof entropy, "H %.2f", hs->entropy);
                int lw = viewer_text_width(VIEWER_FONT_SMALL, entropy);
                viewer_fill(&v->canvas, (viewer_rect){c.x, c.y + c.h - th, lw + gap, th}, 0xFF0E1014);
                viewer_text(&v->canvas, VIEWER_FONT_SMALL, c.x + gap / 2, c.y + c.h - th, VIEWER_FG, entropy);
            }
            if (head_ablated(v, row->layer, h)) {
                viewer_outline(&v->canvas, c, viewer_px(v, 2), VIEWER_BAD);
                char s[32];
                snprintf(s, sizeof s, "x%g", (double)v->head_scale[row->layer][h]);
                viewer_text(&v->canvas, VIEWER_FONT_SMALL, c.x + gap, c.y + gap, 0xFFFFFF, s);
            }
            if (i == v->row && h == v->head)
                viewer_outline(&v->canvas, (viewer_rect){c.x - gap / 2, c.y - gap / 2, cell, cell}, viewer_px(v, 2), VIEWER_ACCENT);
        }
    }
}

void viewer_draw_map(viewer_state *v, viewer_rect r) {
    viewer_rect in;
    char title[400];
    viewer_attention_row *row = v->n_rows ? &v->rows[v->row] : NULL;
    viewer_series *s = row && v->head <= row->n_heads ? row->heads[v->head] : NULL;
    snprintf(title, sizeof title, "attention map: %s, layer %d, head %d%s", row ? row->name : "-", row ? row->layer : 0,
             v->head, v->diff_base >= 0 ? " (difference)" : "");
    viewer_panel(v, r, title, &in);
    v->map_rect = (viewer_rect){0, 0, 0, 0};
    int rows = 0, cols = 0;
    const float *m = s ? viewer_values(v, s, &rows, &cols, diff_buf, MAX_MAP) : NULL;
    if (!m) { viewer_note(v, in, row ? "no map at this step" : "no attention maps published (lab.viz.attention)"); return; }
    const char *q[MAX_TOKENS], *k[MAX_TOKENS];
    int nq = 0, nk = 0;
    row_tokens(v, row->name, q, &nq, k, &nk);
    if (nq != rows) nq = 0;
    if (nk != cols) nk = 0;
    const int th = viewer_text_height(VIEWER_FONT_SMALL), pad = viewer_px(v, 4);
    int left = 0, top = 0;
    for (int i = 0; i < nq; i++) { int w = viewer_text_width(VIEWER_FONT_SMALL, q[i]); if (w > left) left = w; }
    for (int j = 0; j < nk; j++) { int w = viewer_text_width(VIEWER_FONT_SMALL, k[j]); if (w > top) top = w; }
    left = (left < in.w / 5 ? left : in.w / 5) + pad;
    top = (top < in.h / 5 ? top : in.h / 5) + pad;
    const int legend_w = viewer_px(v, 64), info_h = th + pad;
    int aw = in.w - left - legend_w, ah = in.h - top - info_h;
    /* cells square when they fit, so a diagonal looks like one */
    float cell = fminf((float)aw / (float)cols, (float)ah / (float)rows);
    if (cell < 0.2f) return;
    int mw = (int)(cell * (float)cols), mh = (int)(cell * (float)rows);
    viewer_rect mr = {in.x + left, in.y + top, mw, mh};
    v->map_rect = mr;
    v->map_rows = rows;
    v->map_cols = cols;
    float lo, hi;
    map_range(v, m, rows * cols, &lo, &hi);
    viewer_heatmap(&v->canvas, mr, m, rows, cols, lo, hi, v->diff_base >= 0, v->diff_base < 0 && is_causal(m, rows, cols));
    /* a legend at least 120 px tall, even beside a one-row map */
    const int legend_h = mr.h > viewer_px(v, 120) ? mr.h : (viewer_px(v, 120) < in.h - top - info_h ? viewer_px(v, 120) : in.h - top - info_h);
    viewer_legend(v, (viewer_rect){mr.x + mr.w + pad * 2, mr.y, legend_w - pad * 2, legend_h}, lo, hi, v->diff_base >= 0);
    /* labels, every k-th when the cells are smaller than the text */
    int every = cell >= (float)th ? 1 : (int)ceilf((float)th / cell);
    for (int i = 0; i < nq; i += every) {
        int w = viewer_text_width(VIEWER_FONT_SMALL, q[i]);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, mr.x - pad - w, mr.y + (int)(((float)i + 0.5f) * cell) - th / 2, VIEWER_DIM, q[i]);
    }
    for (int j = 0; j < nk; j += every)
        viewer_text_vertical(&v->canvas, VIEWER_FONT_SMALL, mr.x + (int)(((float)j + 0.5f) * cell) - th / 2, mr.y - pad, VIEWER_DIM, k[j]);
    char info[512];
    if (viewer_inside(mr, v->hover_x, v->hover_y)) {
        int i = (int)((float)(v->hover_y - mr.y) / cell), j = (int)((float)(v->hover_x - mr.x) / cell);
        if (i >= rows) i = rows - 1;
        if (j >= cols) j = cols - 1;
        viewer_outline(&v->canvas, (viewer_rect){mr.x + (int)((float)j * cell), mr.y + (int)((float)i * cell),
                                                 (int)cell > 2 ? (int)cell : 3, (int)cell > 2 ? (int)cell : 3}, 1, 0xFFFFFFFF);
        snprintf(info, sizeof info, "layer %d head %d  query %d%s%s%s \xe2\x86\x92 key %d%s%s%s  %s %.4g", row->layer, v->head,
                 i + 1, nq ? " '" : "", nq ? q[i] : "", nq ? "'" : "", j + 1, nk ? " '" : "", nk ? k[j] : "", nk ? "'" : "",
                 v->diff_base >= 0 ? "change" : "weight", (double)m[(size_t)i * (size_t)cols + (size_t)j]);
    } else {
        char summary[160] = "";
        if (v->diff_base < 0) {
            head_stats st = stats_of(m, rows, cols);
            int n = snprintf(summary, sizeof summary, "entropy %.3g nats (uniform %.3g), mean max %.3g", st.entropy,
                             log((double)cols), st.peak);
            if (st.square) snprintf(summary + n, sizeof summary - (size_t)n, ", previous-token %.3g", st.previous);
            strncat(summary, "; ", sizeof summary - strlen(summary) - 1);
        }
        snprintf(info, sizeof info, "%d %s x %d %s, colours %.3g .. %.3g; %shover for values; c saves it as CSV",
                 rows, rows == 1 ? "query" : "queries", cols, cols == 1 ? "key" : "keys", (double)lo, (double)hi, summary);
    }
    viewer_text(&v->canvas, VIEWER_FONT_SMALL, in.x, in.y + in.h - th, VIEWER_FG, info);
}

void viewer_draw_heads(viewer_state *v, viewer_rect r) {
    viewer_rect in;
    viewer_attention_row *row = v->n_rows ? &v->rows[v->row] : NULL;
    char title[400];
    snprintf(title, sizeof title, "head view: %s, layer %d (query \xe2\x86\x92 key, opacity = weight)", row ? row->name : "-",
             row ? row->layer : 0);
    viewer_panel(v, r, title, &in);
    v->head_view_rect = in;
    v->head_tokens[0] = v->head_tokens[1] = 0;
    memset(v->head_boxes, 0, sizeof v->head_boxes);
    if (!row) { viewer_note(v, in, "no attention maps published (lab.viz.attention)"); return; }
    const int th = viewer_text_height(VIEWER_FONT_SMALL), pad = viewer_px(v, 4), box = viewer_px(v, 14);
    /* the head colour boxes: click to show or hide a head */
    int bx = in.x;
    for (int h = 1; h <= row->n_heads; h++) {
        viewer_rect b = {bx, in.y, box, box};
        v->head_boxes[h] = b;
        if (v->head_hidden[h]) viewer_outline(&v->canvas, b, viewer_px(v, 2), viewer_head_colour(h));
        else viewer_fill(&v->canvas, b, viewer_head_colour(h));
        char label[16];
        snprintf(label, sizeof label, "H%d", h);
        bx += box + pad + viewer_text(&v->canvas, VIEWER_FONT_SMALL, bx + box + pad, in.y + (box - th) / 2, VIEWER_FG, label) + 2 * pad;
    }
    viewer_rect area = {in.x, in.y + box + 2 * pad, in.w, in.h - box - 2 * pad};
    const char *q[MAX_TOKENS], *k[MAX_TOKENS];
    int nq = 0, nk = 0, rows = 0, cols = 0;
    row_tokens(v, row->name, q, &nq, k, &nk);
    /* the shape comes from the first visible head's map */
    for (int h = 1; h <= row->n_heads && !rows; h++) {
        int e = row->heads[h] ? viewer_series_at(row->heads[h], viewer_shown_step(v)) : -1;
        if (e >= 0) {
            const viewer_entry *en = &row->heads[h]->entries[e];
            rows = en->ndim >= 2 ? en->shape[0] : 1;
            cols = en->ndim >= 2 ? en->shape[1] : en->shape[0];
        }
    }
    if (!rows || rows > MAX_TOKENS || cols > MAX_TOKENS) { viewer_note(v, area, "no map at this step"); return; }
    int colw = 0;
    for (int i = 0; i < nq && nq == rows; i++) { int w = viewer_text_width(VIEWER_FONT_SMALL, q[i]); if (w > colw) colw = w; }
    for (int j = 0; j < nk && nk == cols; j++) { int w = viewer_text_width(VIEWER_FONT_SMALL, k[j]); if (w > colw) colw = w; }
    if (colw < viewer_px(v, 24)) colw = viewer_px(v, 24);
    float xl = (float)(area.x + area.w / 4 + colw), xr = (float)(area.x + 3 * area.w / 4 - colw);
    v->head_col_x[0] = xl;
    v->head_col_x[1] = xr;
    v->head_tokens[0] = rows;
    v->head_tokens[1] = cols;
    float *yl = v->head_token_y[0], *yr = v->head_token_y[1];
    for (int i = 0; i < rows; i++) yl[i] = (float)area.y + ((float)i + 0.5f) * (float)area.h / (float)(rows > cols ? rows : cols);
    for (int j = 0; j < cols; j++) yr[j] = (float)area.y + ((float)j + 0.5f) * (float)area.h / (float)(rows > cols ? rows : cols);
    /* a single query is centred against its keys, as in the regression study */
    if (rows < cols) for (int i = 0; i < rows; i++) yl[i] += (yr[cols - 1] - yl[rows - 1]) / 2;
    /* Lines fainter than a threshold are left out; the threshold rises until at most LINE_BUDGET
     * remain over all heads, so long sequences (128 x 128 x 8 heads) still draw in milliseconds. */
    enum { LINE_BUDGET = 3000 };
    float head_max[VIEWER_MAX_HEADS + 1] = {0}, threshold = 0.02f;
    for (int pass = 0; pass < 30; pass++) {
        long lines = 0;
        for (int h = 1; h <= row->n_heads; h++) {
            if (v->head_hidden[h] || !row->heads[h]) continue;
            int hr = 0, hc = 0;
            const float *m = viewer_values(v, row->heads[h], &hr, &hc, diff_buf, MAX_MAP);
            if (!m || hr != rows || hc != cols) continue;
            float mx = 0;
            for (int i = 0; i < rows * cols; i++) mx = fmaxf(mx, fabsf(m[i]));
            head_max[h] = mx;
            for (int i = 0; i < rows && mx > 0; i++) {
                if (v->focus_token >= 0 && v->focus_token != i) continue;
                for (int j = 0; j < cols; j++) lines += fabsf(m[(size_t)i * (size_t)cols + (size_t)j]) / mx >= threshold;
            }
        }
        if (lines <= LINE_BUDGET) break;
        threshold = fminf(1, threshold * 1.2f);
    }
    for (int h = 1; h <= row->n_heads; h++) {
        if (v->head_hidden[h] || !row->heads[h] || head_max[h] <= 0) continue;
        int hr = 0, hc = 0;
        const float *m = viewer_values(v, row->heads[h], &hr, &hc, diff_buf, MAX_MAP);
        if (!m || hr != rows || hc != cols) continue;
        const float mx = head_max[h];
        for (int i = 0; i < rows; i++) {
            if (v->focus_token >= 0 && v->focus_token != i) continue;
            for (int j = 0; j < cols; j++) {
                float a = fabsf(m[(size_t)i * (size_t)cols + (size_t)j]) / mx;
                if (!(a >= threshold)) continue;   /* NaN weights draw nothing */
                viewer_line(&v->canvas, xl + (float)pad, yl[i], xr - (float)pad, yr[j], viewer_head_colour(h), a * 0.9f,
                            viewer_px(v, 1.5f));
            }
        }
    }
    int every_l = (float)area.h / (float)rows >= (float)th * 0.9f ? 1 : (int)ceilf((float)th * (float)rows / (float)area.h);
    int every_r = (float)area.h / (float)cols >= (float)th * 0.9f ? 1 : (int)ceilf((float)th * (float)cols / (float)area.h);
    for (int i = 0; i < rows; i += every_l) {
        char num[16];
        snprintf(num, sizeof num, "q%d", i + 1);
        const char *label = nq == rows ? q[i] : num;
        int w = viewer_text_width(VIEWER_FONT_SMALL, label);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, (int)xl - w, (int)yl[i] - th / 2, v->focus_token == i ? VIEWER_ACCENT : VIEWER_FG, label);
    }
    for (int j = 0; j < cols; j += every_r) {
        char num[16];
        snprintf(num, sizeof num, "k%d", j + 1);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, (int)xr, (int)yr[j] - th / 2, VIEWER_FG, nk == cols ? k[j] : num);
    }
}

/* ---- the neuron view ---------------------------------------------------------------------- */

void viewer_draw_neuron(viewer_state *v, viewer_rect r) {
    viewer_rect in;
    viewer_attention_row *row = v->n_rows ? &v->rows[v->row] : NULL;
    char title[400];
    snprintf(title, sizeof title, "neuron view: %s, layer %d, head %d (click a query; page up/down)", row ? row->name : "-",
             row ? row->layer : 0, v->head);
    viewer_panel(v, r, title, &in);
    v->neuron_query_rows = v->neuron_cell = 0;
    viewer_series *ms = row && v->head <= row->n_heads ? row->heads[v->head] : NULL;
    viewer_series *qs = ms ? viewer_run_find(&v->run, AL_RECORD_QUERY, row->name, row->layer, v->head) : NULL;
    viewer_series *ks = ms ? viewer_run_find(&v->run, AL_RECORD_KEY, row->name, row->layer, v->head) : NULL;
    if (!qs || !ks) { viewer_note(v, in, "no q and k published (lab.viz.attention(name, map, {q = q, k = k}))"); return; }
    const int64_t step = viewer_shown_step(v);
    const int em = viewer_series_at(ms, step), eq = viewer_series_at(qs, step), ek = viewer_series_at(ks, step);
    if (em < 0 || eq < 0 || ek < 0) { viewer_note(v, in, "no q and k at this step"); return; }
    const viewer_entry *me = &ms->entries[em], *qe = &qs->entries[eq], *ke = &ks->entries[ek];
    const int rows = me->ndim == 2 ? me->shape[0] : 1, cols = me->ndim == 2 ? me->shape[1] : me->shape[0];
    const int d = qe->ndim == 2 ? qe->shape[1] : 0;
    if (qe->ndim != 2 || ke->ndim != 2 || qe->shape[0] != rows || ke->shape[0] != cols || ke->shape[1] != d || d < 1 ||
        rows < 1 || cols < 1 || (size_t)rows * (size_t)cols > (size_t)MAX_MAP) {
        viewer_note(v, in, "q, k and the map do not agree in shape at this step");
        return;
    }
    /* three payloads: the map is copied out, as each series keeps one record in its cache */
    const float *mp = viewer_series_load(&v->run, ms, em);
    if (!mp) return;
    memcpy(diff_buf, mp, (size_t)rows * (size_t)cols * sizeof *diff_buf);
    const float *q = viewer_series_load(&v->run, qs, eq), *k = viewer_series_load(&v->run, ks, ek);
    if (!q || !k) return;
    if (v->neuron_query >= rows) v->neuron_query = rows - 1;
    if (v->neuron_query < 0) v->neuron_query = 0;
    const int i = v->neuron_query;
    const char *qt[MAX_TOKENS], *kt[MAX_TOKENS];
    int nq = 0, nk = 0;
    row_tokens(v, row->name, qt, &nq, kt, &nk);
    const int th = viewer_text_height(VIEWER_FONT_SMALL), pad = viewer_px(v, 6);
    /* the query list, left */
    int list_w = viewer_px(v, 40);
    for (int a = 0; a < rows && nq == rows; a++) { int w = viewer_text_width(VIEWER_FONT_SMALL, qt[a]); if (w + pad > list_w) list_w = w + pad; }
    const int row_h = th + viewer_px(v, 2);
    v->neuron_queries = (viewer_rect){in.x, in.y + th + pad, list_w, in.h - th - pad};
    v->neuron_query_rows = rows;
    v->neuron_row_h = row_h;
    viewer_text(&v->canvas, VIEWER_FONT_SMALL, in.x, in.y, VIEWER_DIM, "queries");
    for (int a = 0; a < rows && (a + 1) * row_h <= v->neuron_queries.h; a++) {
        char num[16];
        snprintf(num, sizeof num, "q%d", a + 1);
        int y = v->neuron_queries.y + a * row_h;
        if (a == i) viewer_fill(&v->canvas, (viewer_rect){in.x, y, list_w - pad / 2, row_h}, VIEWER_GRID);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, in.x + 2, y + 1, a == i ? VIEWER_ACCENT : VIEWER_FG, nq == rows ? qt[a] : num);
    }
    /* the table: a row for q_i, then one per key: k_j | q_i * k_j | q.k | the weight */
    float vr = 0, pr = 0, wmax = 0;
    for (int c = 0; c < d; c++) vr = fmaxf(vr, fabsf(q[(size_t)i * (size_t)d + (size_t)c]));
    for (int j = 0; j < cols; j++)
        for (int c = 0; c < d; c++) {
            float kv = k[(size_t)j * (size_t)d + (size_t)c];
            vr = fmaxf(vr, fabsf(kv));
            pr = fmaxf(pr, fabsf(kv * q[(size_t)i * (size_t)d + (size_t)c]));
        }
    for (int j = 0; j < cols; j++) wmax = fmaxf(wmax, diff_buf[(size_t)i * (size_t)cols + (size_t)j]);
    const int x0 = in.x + list_w + pad + viewer_px(v, 40), text_w = viewer_px(v, 150);
    int cell = (in.x + in.w - x0 - text_w) / (2 * d + 2);
    const int cell_h = (in.h - 2 * th) / (cols + 1);
    if (cell_h < cell) cell = cell_h;
    if (cell > viewer_px(v, 28)) cell = viewer_px(v, 28);
    if (cell < 2) { viewer_note(v, in, "too many keys or dimensions to draw here"); return; }
    const int y0 = in.y + th + pad;
    v->neuron_x = x0;
    v->neuron_y = y0;
    v->neuron_cell = cell;
    v->neuron_dim = d;
    const int xp = x0 + (d + 1) * cell, xt = xp + d * cell + pad;
    viewer_text(&v->canvas, VIEWER_FONT_SMALL, x0, in.y, VIEWER_DIM, "k (q on top)");
    viewer_text(&v->canvas, VIEWER_FONT_SMALL, xp, in.y, VIEWER_DIM, "q * k");
    viewer_text(&v->canvas, VIEWER_FONT_SMALL, xt, in.y, VIEWER_DIM, "q.k   weight");
    const float *qi = q + (size_t)i * (size_t)d;
    viewer_heatmap(&v->canvas, (viewer_rect){x0, y0, d * cell, cell}, qi, 1, d, -vr, vr, true, false);
    viewer_text(&v->canvas, VIEWER_FONT_SMALL, x0 - viewer_px(v, 36), y0 + (cell - th) / 2, VIEWER_ACCENT, "q");
    float prod[4096];
    for (int j = 0; j < cols; j++) {
        const int y = y0 + (j + 1) * cell;
        const float *kj = k + (size_t)j * (size_t)d;
        double dot = 0;
        for (int c = 0; c < d && c < 4096; c++) { prod[c] = qi[c] * kj[c]; dot += prod[c]; }
        viewer_heatmap(&v->canvas, (viewer_rect){x0, y, d * cell, cell}, kj, 1, d, -vr, vr, true, false);
        if (d <= 4096) viewer_heatmap(&v->canvas, (viewer_rect){xp, y, d * cell, cell}, prod, 1, d, -pr, pr, true, false);
        char label[64];
        snprintf(label, sizeof label, "%.3g", dot);
        if (cell >= th * 0.8f) {
            char num[16];
            snprintf(num, sizeof num, "k%d", j + 1);
            const char *name = nk == cols ? kt[j] : num;
            viewer_text(&v->canvas, VIEWER_FONT_SMALL, x0 - viewer_text_width(VIEWER_FONT_SMALL, name) - pad, y + (cell - th) / 2, VIEWER_DIM, name);
            viewer_text(&v->canvas, VIEWER_FONT_SMALL, xt, y + (cell - th) / 2, VIEWER_FG, label);
        }
        const float w = diff_buf[(size_t)i * (size_t)cols + (size_t)j];
        const int bar_x = xt + viewer_px(v, 50), bar_w = in.x + in.w - bar_x;
        if (bar_w > 0 && wmax > 0)
            viewer_fill(&v->canvas, (viewer_rect){bar_x, y + 1, (int)((float)bar_w * w / wmax), cell > 2 ? cell - 2 : 1}, viewer_sequential(w / wmax));
    }
}
