/* views_common.c -- what every view uses: panels with a title, the colour legend, the step being
 * shown, a series' values at that step (minus those at the base step in difference mode), and
 * token labels. */
#include "viewer.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

int viewer_px(const viewer_state *v, float logical) { return (int)(logical * v->scale + 0.5f); }

int64_t viewer_shown_step(const viewer_state *v) { return v->step < 0 ? v->run.latest_step : v->step; }

void viewer_panel(viewer_state *v, viewer_rect r, const char *title, viewer_rect *inner) {
    viewer_fill(&v->canvas, r, VIEWER_PANEL);
    const int pad = viewer_px(v, 6), th = viewer_text_height(VIEWER_FONT_NORMAL);
    viewer_clip(&v->canvas, r);
    viewer_text(&v->canvas, VIEWER_FONT_NORMAL, r.x + pad, r.y + pad / 2, VIEWER_FG, title);
    viewer_unclip(&v->canvas);
    *inner = (viewer_rect){r.x + pad, r.y + th + pad, r.w - 2 * pad, r.h - th - 2 * pad};
}

void viewer_note(viewer_state *v, viewer_rect r, const char *text) {
    int w = viewer_text_width(VIEWER_FONT_NORMAL, text);
    viewer_text(&v->canvas, VIEWER_FONT_NORMAL, r.x + (r.w - w) / 2, r.y + r.h / 2 - viewer_text_height(VIEWER_FONT_NORMAL) / 2,
                VIEWER_DIM, text);
}

/* A vertical colour bar in r (its left part) with the range's ends and middle labelled. */
void viewer_legend(viewer_state *v, viewer_rect r, float lo, float hi, bool diverging) {
    const int bar_w = viewer_px(v, 12), th = viewer_text_height(VIEWER_FONT_SMALL);
    viewer_rect bar = {r.x, r.y + th / 2, bar_w, r.h - th};
    if (bar.h < 4) return;
    v->legend_rect = bar;
    for (int y = 0; y < bar.h; y++) {
        float t = 1 - (float)y / (float)(bar.h - 1);
        uint32_t c = diverging ? viewer_diverging(2 * t - 1) : viewer_sequential(t);
        viewer_fill(&v->canvas, (viewer_rect){bar.x, bar.y + y, bar.w, 1}, c);
    }
    viewer_outline(&v->canvas, bar, 1, VIEWER_GRID);
    if (diverging) { float m = fmaxf(fabsf(lo), fabsf(hi)); lo = -m; hi = m; }
    for (int k = 0; k <= 4; k++) {
        char label[32];
        float val = hi - (hi - lo) * (float)k / 4;
        snprintf(label, sizeof label, "%.3g", fabsf(val) < 1e-7f * fmaxf(fabsf(hi), fabsf(lo)) ? 0.0 : (double)val);
        int y = bar.y + (bar.h - 1) * k / 4;
        viewer_fill(&v->canvas, (viewer_rect){bar.x + bar.w, y, viewer_px(v, 3), 1}, VIEWER_DIM);
        viewer_text(&v->canvas, VIEWER_FONT_SMALL, bar.x + bar.w + viewer_px(v, 5), y - th / 2, VIEWER_DIM, label);
    }
}

const float *viewer_values(viewer_state *v, viewer_series *s, int *rows, int *cols, float *buf, int bufcount) {
    int e = viewer_series_at(s, viewer_shown_step(v));
    if (e < 0) return NULL;
    const viewer_entry *en = &s->entries[e];
    if (en->dtype != AL_RECORD_FLOAT32) return NULL;
    *rows = en->ndim >= 2 ? en->shape[0] : 1;
    *cols = en->ndim >= 2 ? en->shape[1] : en->ndim == 1 ? en->shape[0] : 1;
    const float *a = viewer_series_load(&v->run, s, e);
    if (!a || v->diff_base < 0) return a;
    /* difference mode: this step minus the base step, when the base has the same shape */
    const int n = *rows * *cols;
    int eb = viewer_series_at(s, v->diff_base);
    if (eb < 0 || n > bufcount || s->entries[eb].ndim != en->ndim || s->entries[eb].shape[0] != en->shape[0] ||
        s->entries[eb].shape[1] != en->shape[1])
        return NULL;
    memcpy(buf, a, (size_t)n * sizeof *buf);
    const float *b = viewer_series_load(&v->run, s, eb);
    if (!b) return NULL;
    for (int i = 0; i < n; i++) buf[i] -= b[i];
    return buf;
}
