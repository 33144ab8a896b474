/* image.c -- images in and out: float32 (H, W, C) tensors with values in [0, 1].
 *
 * Decoding and encoding are stb_image's and stb_image_write's, from Debian's libstb (compiled
 * there, so link with -lstb; no STB_*_IMPLEMENTATION here).  Loading reads anything stb_image
 * reads (PNG, JPEG, BMP, GIF, ...; 16-bit PNGs keep their precision).  Saving writes PNG, encoded
 * in memory and then written with al_write_file_atomic, so a figure is never left half-written. */
#include "internal.h"
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

al_tensor *al_image_load(const char *path) {
    if (!path || !*path) { al_error("image_load: path is missing"); return NULL; }
    FILE *fp = fopen(path, "rb");
    if (!fp) { al_error("image_load: cannot open '%s': %s", path, strerror(errno)); return NULL; }
    int w = 0, h = 0, c = 0;
    const bool wide = stbi_is_16_bit_from_file(fp); /* leaves the file position where it was */
    void *px = wide ? (void *)stbi_load_from_file_16(fp, &w, &h, &c, 0)
                    : (void *)stbi_load_from_file(fp, &w, &h, &c, 0);
    fclose(fp);
    if (!px) {
        const char *why = stbi_failure_reason();
        al_error("image_load: cannot decode '%s': %s", path, why ? why : "unknown image format");
        return NULL;
    }
    int64_t shape[3] = {h, w, c};
    al_tensor *t = al_new_tensor(3, shape, AL_FLOAT32);
    if (t) {
        float *o = al_ptr(t);
        const int64_t n = al_numel(t);
        if (wide) for (int64_t i = 0; i < n; i++) o[i] = (float)((const uint16_t *)px)[i] / 65535.0f;
        else for (int64_t i = 0; i < n; i++) o[i] = (float)((const uint8_t *)px)[i] / 255.0f;
    }
    stbi_image_free(px);
    return t;
}

typedef struct { unsigned char *data; size_t len, cap; bool oom; } png_buffer;

/* stb_image_write hands the encoded PNG over in pieces. */
static void png_append(void *ctx, void *data, int size) {
    png_buffer *b = ctx;
    if (b->oom || size <= 0) return;
    if (b->len + (size_t)size > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + (size_t)size) cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) { b->oom = true; return; }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

/* (H, W) is grey; (H, W, C) has C = 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA) channels.
 * Values are clamped to [0, 1] (NaN counts as 0) and rounded to 8 bits. */
int al_image_save_png(const char *path, const al_tensor *t) {
    if (!path || !*path) { al_error("image_save_png: path is missing"); return -1; }
    if (!t) { al_error("image_save_png: argument 't' is missing (nil)"); return -1; }
    const int64_t h = t->ndim >= 2 ? t->shape[0] : 0, w = t->ndim >= 2 ? t->shape[1] : 0;
    const int64_t c = t->ndim == 3 ? t->shape[2] : 1;
    if (t->ndim < 2 || t->ndim > 3 || c < 1 || c > 4 || h < 1 || w < 1) {
        al_error("image_save_png: '%s': shape %s is not (H, W) or (H, W, C) with C in 1..4 and H, W >= 1",
                 path, TSHAPE(t));
        return -1;
    }
    if (h > INT_MAX || w * c > INT_MAX / 2) {
        al_error("image_save_png: '%s': an image of shape %s is too large for PNG", path, TSHAPE(t));
        return -1;
    }
    al_tensor *host = al_to_cpu_nograd(t);   /* an image on the GPU comes to the host first */
    if (!host) return -1;
    al_tensor *d = al_to_dtype_nograd(host, AL_FLOAT64);
    al_release(host);
    const int64_t n = h * w * c;
    unsigned char *px = d ? malloc((size_t)n) : NULL;
    if (!px) {
        al_release(d);
        al_error("image_save_png: '%s': out of memory for an image of shape %s", path, TSHAPE(t));
        return -1;
    }
    const double *v = al_ptr(d);
    for (int64_t i = 0; i < n; i++) {
        double x = v[i] > 0 ? (v[i] < 1 ? v[i] : 1) : 0;
        px[i] = (unsigned char)(x * 255.0 + 0.5);
    }
    al_release(d);
    int rc = al_png_write(path, px, (int)w, (int)h, (int)c);
    free(px);
    return rc;
}

int al_png_write(const char *path, const unsigned char *pixels, int w, int h, int c) {
    if (!path || !*path || !pixels || w < 1 || h < 1 || c < 1 || c > 4) {
        al_error("png_write: '%s': needs a path and %dx%d pixels of 1..4 channels", path ? path : "", w, h);
        return -1;
    }
    png_buffer out = {0};
    int ok = stbi_write_png_to_func(png_append, &out, w, h, c, pixels, w * c);
    int rc = -1;
    if (!ok || out.oom)
        al_error("png_write: '%s': PNG encoding failed%s", path, out.oom ? " (out of memory)" : "");
    else rc = al_write_file_atomic(path, out.data, out.len);
    free(out.data);
    return rc;
}
