/* canvas.c -- the viewer draws into a plain 0xAARRGGBB framebuffer in memory, so that a frame is the
 * same pixels whether it goes to a window, to a PNG with no display (--screenshot), or to a test.
 * Primitives clip to the canvas's clip rectangle; colour maps are piecewise linear. */
#include "viewer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool viewer_canvas_resize(viewer_canvas *c, int w, int h) {
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    if (c->px && c->w == w && c->h == h) return true;
    uint32_t *px = realloc(c->px, (size_t)w * (size_t)h * sizeof *px);
    if (!px) return false;
    c->px = px;
    c->w = w;
    c->h = h;
    viewer_unclip(c);
    return true;
}

void viewer_canvas_free(viewer_canvas *c) {
    free(c->px);
    memset(c, 0, sizeof *c);
}

void viewer_unclip(viewer_canvas *c) { c->clip = (viewer_rect){0, 0, c->w, c->h}; }

void viewer_clip(viewer_canvas *c, viewer_rect r) {
    int x0 = r.x > 0 ? r.x : 0, y0 = r.y > 0 ? r.y : 0;
    int x1 = r.x + r.w < c->w ? r.x + r.w : c->w, y1 = r.y + r.h < c->h ? r.y + r.h : c->h;
    c->clip = (viewer_rect){x0, y0, x1 > x0 ? x1 - x0 : 0, y1 > y0 ? y1 - y0 : 0};
}

bool viewer_inside(viewer_rect r, int x, int y) { return x >= r.x && y >= r.y && x < r.x + r.w && y < r.y + r.h; }

void viewer_fill(viewer_canvas *c, viewer_rect r, uint32_t argb) {
    const viewer_rect k = c->clip;
    int x0 = r.x > k.x ? r.x : k.x, y0 = r.y > k.y ? r.y : k.y;
    int x1 = r.x + r.w < k.x + k.w ? r.x + r.w : k.x + k.w;
    int y1 = r.y + r.h < k.y + k.h ? r.y + r.h : k.y + k.h;
    for (int y = y0; y < y1; y++) {
        uint32_t *row = c->px + (size_t)y * (size_t)c->w;
        for (int x = x0; x < x1; x++) row[x] = argb;
    }
}

void viewer_blend(viewer_canvas *c, int x, int y, uint32_t rgb, float alpha) {
    if (!viewer_inside(c->clip, x, y) || !(alpha > 0)) return;   /* NaN too */
    if (alpha > 1) alpha = 1;
    uint32_t *p = c->px + (size_t)y * (size_t)c->w + x;
    const uint32_t d = *p;
    const int a = (int)(alpha * 256);
    int r = (int)((d >> 16) & 255), g = (int)((d >> 8) & 255), b = (int)(d & 255);
    r += ((int)((rgb >> 16) & 255) - r) * a >> 8;
    g += ((int)((rgb >> 8) & 255) - g) * a >> 8;
    b += ((int)(rgb & 255) - b) * a >> 8;
    *p = 0xFF000000u | (uint32_t)r << 16 | (uint32_t)g << 8 | (uint32_t)b;
}

void viewer_outline(viewer_canvas *c, viewer_rect r, int t, uint32_t argb) {
    viewer_fill(c, (viewer_rect){r.x, r.y, r.w, t}, argb);
    viewer_fill(c, (viewer_rect){r.x, r.y + r.h - t, r.w, t}, argb);
    viewer_fill(c, (viewer_rect){r.x, r.y, t, r.h}, argb);
    viewer_fill(c, (viewer_rect){r.x + r.w - t, r.y, t, r.h}, argb);
}

/* Xiaolin Wu's line, thickened by parallel copies: smooth edges at 1x without a rasteriser. */
void viewer_line(viewer_canvas *c, float x0, float y0, float x1, float y1, uint32_t rgb, float alpha, int thickness) {
    const bool steep = fabsf(y1 - y0) > fabsf(x1 - x0);
    if (steep) { float t = x0; x0 = y0; y0 = t; t = x1; x1 = y1; y1 = t; }
    if (x0 > x1) { float t = x0; x0 = x1; x1 = t; t = y0; y0 = y1; y1 = t; }
    const float dx = x1 - x0, gradient = dx == 0 ? 1 : (y1 - y0) / dx;
    const float half = (float)(thickness - 1) * 0.5f;
    for (int xi = (int)floorf(x0 + 0.5f); xi <= (int)floorf(x1 + 0.5f); xi++) {
        const float y = y0 + gradient * ((float)xi - x0) - half;
        const int yi = (int)floorf(y);
        const float frac = y - (float)yi;
        for (int k = 0; k <= thickness; k++) {
            const float cover = k == 0 ? 1 - frac : k == thickness ? frac : 1;
            if (steep) viewer_blend(c, yi + k, xi, rgb, alpha * cover);
            else viewer_blend(c, xi, yi + k, rgb, alpha * cover);
        }
    }
}

void viewer_dashed_hline(viewer_canvas *c, int x0, int x1, int y, uint32_t argb, int dash) {
    if (dash < 1) dash = 1;
    for (int x = x0; x < x1; x += 2 * dash) viewer_fill(c, (viewer_rect){x, y, x + dash < x1 ? dash : x1 - x, 1}, argb);
}

void viewer_disc(viewer_canvas *c, float cx, float cy, float r, uint32_t rgb, float alpha) {
    for (int y = (int)floorf(cy - r - 1); y <= (int)ceilf(cy + r + 1); y++)
        for (int x = (int)floorf(cx - r - 1); x <= (int)ceilf(cx + r + 1); x++) {
            float d = sqrtf(((float)x + 0.5f - cx) * ((float)x + 0.5f - cx) + ((float)y + 0.5f - cy) * ((float)y + 0.5f - cy));
            float cover = r + 0.5f - d;
            if (cover > 0) viewer_blend(c, x, y, rgb, alpha * (cover > 1 ? 1 : cover));
        }
}

static uint32_t lerp_stops(const uint32_t *stops, int n, float t) {
    if (!(t >= 0)) t = 0;   /* NaN too */
    if (t > 1) t = 1;
    float pos = t * (float)(n - 1);
    int i = (int)pos;
    if (i >= n - 1) return stops[n - 1];
    float f = pos - (float)i;
    uint32_t a = stops[i], b = stops[i + 1], out = 0xFF000000u;
    for (int sh = 0; sh < 24; sh += 8) {
        float ca = (float)((a >> sh) & 255), cb = (float)((b >> sh) & 255);
        out |= (uint32_t)(ca + (cb - ca) * f + 0.5f) << sh;
    }
    return out;
}

/* viridis at nine points: perceptually even, readable for colour-blind users, dark = 0 */
uint32_t viewer_sequential(float t) {
    static const uint32_t stops[] = {0x440154, 0x472D7B, 0x3B528B, 0x2C728E, 0x21918C,
                                     0x28AE80, 0x5EC962, 0xADDC30, 0xFDE725};
    return lerp_stops(stops, 9, t);
}

/* RdBu reversed: negative blue, zero white, positive red */
uint32_t viewer_diverging(float t) {
    static const uint32_t stops[] = {0x053061, 0x2166AC, 0x4393C3, 0x92C5DE, 0xF7F7F7,
                                     0xF4A582, 0xD6604D, 0xB2182B, 0x67001F};
    return lerp_stops(stops, 9, (t + 1) * 0.5f);
}

uint32_t viewer_head_colour(int head) {
    static const uint32_t palette[] = {0xFF1F77B4, 0xFFFF7F0E, 0xFF2CA02C, 0xFFD62728, 0xFF9467BD,
                                       0xFF8C564B, 0xFFE377C2, 0xFF7F7F7F, 0xFFBCBD22, 0xFF17BECF};
    return palette[(head - 1 + 1000) % 10];
}

/* The maps are drawn through tables of the colour maps: a frame of an 8 x 8 grid of thumbnails
 * colours half a million pixels, and the piecewise-linear maps cost ten times a lookup. */
enum { LUT = 1024 };
static uint32_t sequential_lut[LUT + 1], diverging_lut[LUT + 1];

static void build_luts(void) {
    if (sequential_lut[LUT]) return;
    for (int i = 0; i <= LUT; i++) {
        sequential_lut[i] = viewer_sequential((float)i / LUT);
        diverging_lut[i] = viewer_diverging(2.0f * (float)i / LUT - 1);
    }
}

static inline int lut_index(float t) {   /* t in [0, 1]; NaN maps to 0 */
    return t > 0 ? (t < 1 ? (int)(t * LUT + 0.5f) : LUT) : 0;
}

void viewer_heatmap(viewer_canvas *c, viewer_rect r, const float *v, int rows, int cols, float lo, float hi,
                    bool diverging, bool grey_causal) {
    if (rows < 1 || cols < 1 || r.w < 1 || r.h < 1) return;
    build_luts();
    const float span = hi - lo > 1e-30f ? hi - lo : 1e-30f;
    const float range = fabsf(hi) > fabsf(lo) ? fabsf(hi) : fabsf(lo);
    const float inv_span = 1 / span, inv_range = range > 0 ? 0.5f / range : 0;
    const viewer_rect k = c->clip;
    for (int y = r.y; y < r.y + r.h; y++) {
        if (y < k.y || y >= k.y + k.h) continue;
        const int i = (int)((int64_t)(y - r.y) * rows / r.h);
        uint32_t *row = c->px + (size_t)y * (size_t)c->w;
        for (int x = r.x; x < r.x + r.w; x++) {
            if (x < k.x || x >= k.x + k.w) continue;
            const int j = (int)((int64_t)(x - r.x) * cols / r.w);
            const float val = v[(size_t)i * (size_t)cols + (size_t)j];
            if (grey_causal && j > i) row[x] = VIEWER_MASKED;
            else row[x] = diverging ? diverging_lut[lut_index(val * inv_range + 0.5f)] : sequential_lut[lut_index((val - lo) * inv_span)];
        }
    }
}

/* Through the core's PNG writer: encoded in memory, written to a temporary name and renamed, so
 * there is never half a PNG. */
int viewer_write_png(const viewer_canvas *c, const char *path, char *err, size_t errsize) {
    unsigned char *rgb = malloc((size_t)c->w * (size_t)c->h * 3);
    if (!rgb) { snprintf(err, errsize, "out of memory for a %dx%d PNG", c->w, c->h); return -1; }
    for (size_t i = 0; i < (size_t)c->w * (size_t)c->h; i++) {
        rgb[3 * i] = (unsigned char)(c->px[i] >> 16);
        rgb[3 * i + 1] = (unsigned char)(c->px[i] >> 8);
        rgb[3 * i + 2] = (unsigned char)c->px[i];
    }
    int rc = al_png_write(path, rgb, c->w, c->h, 3);
    free(rgb);
    if (rc != 0) snprintf(err, errsize, "%s", al_last_error());
    return rc;
}
