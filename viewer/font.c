/* font.c -- text for the viewer.  DejaVu Sans (Debian's fonts-dejavu-core) rasterised by
 * stb_truetype (compiled in Debian's libstb) at three pixel sizes scaled by the UI scale, so text
 * is sharp at 1x and on HiDPI screens.  Glyphs are rasterised on first use and kept.  When no TTF
 * can be read, stb_easy_font's built-in strokes are drawn instead (blocky but legible), so the
 * viewer never fails for want of a font. */
#include "viewer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stb/stb_truetype.h>
#include <stb/stb_easy_font.h>

enum { GLYPHS = 0x500 };   /* Latin, Greek and the few symbols below: U+0000 .. U+04FF, plus a map */

typedef struct { unsigned char *bitmap; int w, h, xoff, yoff, advance; bool done; } glyph;

static struct {
    bool ttf;
    unsigned char *data;
    stbtt_fontinfo info;
    float px[VIEWER_FONT_SIZES], scale_of[VIEWER_FONT_SIZES];
    int ascent[VIEWER_FONT_SIZES], line[VIEWER_FONT_SIZES];
    glyph glyphs[VIEWER_FONT_SIZES][GLYPHS];
    glyph extra[VIEWER_FONT_SIZES][8];
    float fallback_zoom[VIEWER_FONT_SIZES];
    char name[300];
} font;

/* symbols outside the table that the views use */
static const int extra_codepoints[8] = {0x2192, 0x2212, 0x2190, 0x2191, 0x2193, 0x2026, 0x25B6, 0x23F8};

static const char *default_fonts[] = {
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
};

static unsigned char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

bool viewer_font_init(float scale, const char *ttf_path) {
    viewer_font_free();
    const float base[VIEWER_FONT_SIZES] = {11, 13, 16};
    for (int s = 0; s < VIEWER_FONT_SIZES; s++) {
        font.px[s] = base[s] * scale;
        font.fallback_zoom[s] = base[s] * scale / 10.0f;   /* easy_font's cap height is ~7 of a 10 px line */
    }
    const char *env = getenv("ATTNLAB_VIEW_FONT");
    const char *candidates[5] = {ttf_path, env, default_fonts[0], default_fonts[1], default_fonts[2]};
    for (int i = 0; i < 5 && !font.ttf; i++) {
        if (!candidates[i] || !*candidates[i]) continue;
        font.data = read_all(candidates[i]);
        if (font.data && stbtt_InitFont(&font.info, font.data, stbtt_GetFontOffsetForIndex(font.data, 0))) {
            font.ttf = true;
            snprintf(font.name, sizeof font.name, "%s", candidates[i]);
        } else {
            free(font.data);
            font.data = NULL;
        }
    }
    if (!font.ttf) {
        snprintf(font.name, sizeof font.name, "built-in bitmap font (stb_easy_font)");
        return false;
    }
    for (int s = 0; s < VIEWER_FONT_SIZES; s++) {
        int ascent, descent, gap;
        font.scale_of[s] = stbtt_ScaleForPixelHeight(&font.info, font.px[s]);
        stbtt_GetFontVMetrics(&font.info, &ascent, &descent, &gap);
        font.ascent[s] = (int)(ascent * font.scale_of[s] + 0.5f);
        font.line[s] = (int)((ascent - descent + gap) * font.scale_of[s] + 0.5f);
    }
    return true;
}

void viewer_font_free(void) {
    for (int s = 0; s < VIEWER_FONT_SIZES; s++) {
        for (int i = 0; i < GLYPHS; i++) stbtt_FreeBitmap(font.glyphs[s][i].bitmap, NULL);
        for (int i = 0; i < 8; i++) stbtt_FreeBitmap(font.extra[s][i].bitmap, NULL);
    }
    free(font.data);
    memset(&font, 0, sizeof font);
}

const char *viewer_font_name(void) { return font.name; }

/* Next code point of a UTF-8 string (invalid bytes read as '?'). */
static int next_codepoint(const unsigned char **p) {
    const unsigned char *s = *p;
    int c = s[0], n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
    if (n < 0) { *p = s + 1; return '?'; }
    int cp = n == 0 ? c : c & (0x3F >> n);
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xC0) != 0x80) { *p = s + i; return '?'; }
        cp = cp << 6 | (s[i] & 0x3F);
    }
    *p = s + n + 1;
    return cp;
}

static glyph *get_glyph(int size, int cp) {
    glyph *g = NULL;
    if (cp >= 0 && cp < GLYPHS) g = &font.glyphs[size][cp];
    for (int i = 0; !g && i < 8; i++)
        if (extra_codepoints[i] == cp) g = &font.extra[size][i];
    if (!g) { cp = '?'; g = &font.glyphs[size]['?']; }
    if (!g->done) {
        int advance, lsb;
        stbtt_GetCodepointHMetrics(&font.info, cp, &advance, &lsb);
        g->advance = (int)(advance * font.scale_of[size] + 0.5f);
        g->bitmap = stbtt_GetCodepointBitmap(&font.info, 0, font.scale_of[size], cp, &g->w, &g->h, &g->xoff, &g->yoff);
        g->done = true;
    }
    return g;
}

/* stb_easy_font draws quads in a 10-px-line space; each is filled scaled by the zoom */
static int fallback_text(viewer_canvas *c, int size, int x, int y, uint32_t rgb, const char *text, bool draw) {
    static float quads[4 * 4 * 2000];
    char ascii[512];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p && n < sizeof ascii - 1;) {
        int cp = next_codepoint(&p);
        ascii[n++] = cp == 0x2192 ? '>' : cp == 0x2212 ? '-' : cp < 128 ? (char)cp : '?';
    }
    ascii[n] = 0;
    const float z = font.fallback_zoom[size];
    if (draw) {
        int nq = stb_easy_font_print(0, 0, ascii, NULL, quads, sizeof quads);
        for (int q = 0; q < nq; q++) {
            const float *v = quads + q * 16;   /* 4 vertices of x, y, z, colour */
            int x0 = x + (int)(v[0] * z), y0 = y + (int)(v[1] * z);
            int x1 = x + (int)(v[8] * z + 0.999f), y1 = y + (int)(v[9] * z + 0.999f);
            viewer_fill(c, (viewer_rect){x0, y0, x1 - x0 > 0 ? x1 - x0 : 1, y1 - y0 > 0 ? y1 - y0 : 1}, 0xFF000000u | rgb);
        }
    }
    return (int)((float)stb_easy_font_width(ascii) * z);
}

static int layout(viewer_canvas *c, int size, int x, int y, uint32_t rgb, const char *text, bool draw) {
    if (!text) return 0;
    if (!font.ttf) return fallback_text(c, size, x, y, rgb, text, draw);
    int pen = x;
    const int base = y + font.ascent[size];
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        glyph *g = get_glyph(size, next_codepoint(&p));
        if (draw && g->bitmap)
            for (int j = 0; j < g->h; j++)
                for (int i = 0; i < g->w; i++) {
                    unsigned a = g->bitmap[j * g->w + i];
                    if (a) viewer_blend(c, pen + g->xoff + i, base + g->yoff + j, rgb, (float)a / 255.0f);
                }
        pen += g->advance;
    }
    return pen - x;
}

int viewer_text(viewer_canvas *c, int size, int x, int y, uint32_t rgb, const char *utf8) {
    return layout(c, size, x, y, rgb & 0xFFFFFF, utf8, true);
}

int viewer_text_width(int size, const char *utf8) { return layout(NULL, size, 0, 0, 0, utf8, false); }

int viewer_text_height(int size) { return font.ttf ? font.line[size] : (int)(10 * font.fallback_zoom[size]); }

/* Draws into a scratch canvas, then copies it turned a quarter to the left. */
void viewer_text_vertical(viewer_canvas *c, int size, int x, int y, uint32_t rgb, const char *utf8) {
    int w = viewer_text_width(size, utf8), h = viewer_text_height(size);
    if (w <= 0 || h <= 0) return;
    viewer_canvas scratch = {0};
    if (!viewer_canvas_resize(&scratch, w, h)) return;
    memset(scratch.px, 0, (size_t)w * (size_t)h * sizeof *scratch.px);
    viewer_text(&scratch, size, 0, 0, 0xFFFFFF, utf8);
    for (int j = 0; j < h; j++)
        for (int i = 0; i < w; i++) {
            float a = (float)(scratch.px[j * w + i] & 255) / 255.0f;   /* white on black: any channel is the coverage */
            if (a > 0) viewer_blend(c, x + j, y - i, rgb, a);
        }
    viewer_canvas_free(&scratch);
}
