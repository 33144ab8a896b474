/* sweep.c -- a sweep directory (docs/sweeps.md) as the viewer sees it: its manifest, sweep.json,
 * read by the core's JSON reader, gives every point's run directory and a label made of the
 * settings of the axes that vary ("lr=0.01 seed=2"; the directory's name is for file systems, the
 * label is for people).  The status sweep.json recorded for each point is kept too: the viewer
 * shows a point that has no run directory by it (pending, queued, killed ...).  Only the fields the
 * viewer needs are read; the rest of the manifest is lua/attnlab/sweep_manifest.lua's business. */
#include "viewer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const SWEEP_FORMAT = "attnlab-sweep-1";

bool viewer_is_sweep_dir(const char *dir) {
    char path[4400];
    snprintf(path, sizeof path, "%s/sweep.json", dir);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* value as label text: sweep.json keeps values as typed (strings); a number is taken as well */
static void value_text(const al_json *value, char *out, size_t outsize) {
    if (value && value->type == AL_JSON_STRING) snprintf(out, outsize, "%s", value->string);
    else if (value && value->type == AL_JSON_NUMBER) snprintf(out, outsize, "%.10g", value->number);
    else snprintf(out, outsize, "?");
}

/* appends text to label (of size bytes), a space before it when label is not empty; cut to fit */
static void append(char *label, size_t size, const char *text) {
    size_t n = strlen(label);
    if (n && n + 1 < size) label[n++] = ' ';
    for (; *text && n + 1 < size; text++) label[n++] = *text;
    label[n] = 0;
}

static void label_add(char *label, size_t size, const char *key, const char *value) {
    char piece[300];
    snprintf(piece, sizeof piece, "%.90s=%.200s", key, value);
    append(label, size, piece);
}

/* The label of point p: the settings of the varying axes (keys[0..n_keys)), in axis order; with no
 * axis that varies (a sweep of one point), every setting the point has. */
static void point_label(const al_json *p, const char *const *keys, int n_keys, char *label, size_t size) {
    label[0] = 0;
    const al_json *overrides = al_json_get(p, "overrides");
    char value[200];
    for (int k = 0; k < n_keys; k++) {
        value_text(al_json_get(overrides, keys[k]), value, sizeof value);
        label_add(label, size, keys[k], value);
    }
    if (n_keys > 0) return;
    const al_json *args = al_json_get(p, "args");
    for (const al_json *a = al_json_first(args); a; a = al_json_next(args, a)) {
        if (a->type != AL_JSON_STRING) continue;
        append(label, size, a->string);
    }
}

/* a point's "dir" must stay inside the sweep directory: a relative path with no ".." part */
static bool inside(const char *rel) {
    if (!*rel || rel[0] == '/') return false;
    for (const char *s = rel; *s;) {
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len == 2 && s[0] == '.' && s[1] == '.') return false;
        s += len + (end ? 1 : 0);
    }
    return true;
}

bool viewer_sweep_read(viewer_sweep *sweep, const char *dir, char *err, size_t errsize) {
    memset(sweep, 0, sizeof *sweep);
    snprintf(sweep->dir, sizeof sweep->dir, "%s", dir);
    size_t len = strlen(sweep->dir);
    while (len > 1 && sweep->dir[len - 1] == '/') sweep->dir[--len] = 0;
    char path[4400];
    snprintf(path, sizeof path, "%s/sweep.json", sweep->dir);
    al_json *doc = al_json_read_file(path);
    if (!doc) { snprintf(err, errsize, "%s", al_last_error()); return false; }
    bool ok = false;
    const al_json *format = al_json_get(doc, "format"), *points = al_json_get(doc, "points"), *axes = al_json_get(doc, "axes");
    const al_json *experiment = al_json_get(doc, "experiment");
    const char *varying[64];
    int n_varying = 0;
    if (!format || format->type != AL_JSON_STRING || strcmp(format->string, SWEEP_FORMAT)) {
        snprintf(err, errsize, "'%s' is not a sweep manifest (its \"format\" is not \"%s\")", path, SWEEP_FORMAT);
        goto done;
    }
    if (!points || points->type != AL_JSON_ARRAY) { snprintf(err, errsize, "'%s' has no \"points\" list", path); goto done; }
    if (experiment && experiment->type == AL_JSON_STRING) snprintf(sweep->experiment, sizeof sweep->experiment, "%s", experiment->string);
    /* the axes that vary: more than one value, not a --set */
    for (const al_json *a = al_json_first(axes); a && n_varying < 64; a = al_json_next(axes, a)) {
        const al_json *key = al_json_get(a, "key"), *values = al_json_get(a, "values"), *fixed = al_json_get(a, "fixed");
        if (key && key->type == AL_JSON_STRING && values && values->type == AL_JSON_ARRAY && values->count > 1 &&
            !(fixed && fixed->type == AL_JSON_TRUE))
            varying[n_varying++] = key->string;
    }
    sweep->points = calloc((size_t)(points->count > 0 ? points->count : 1), sizeof *sweep->points);
    if (!sweep->points) { snprintf(err, errsize, "'%s': out of memory", path); goto done; }
    int i = 0;
    for (const al_json *p = al_json_first(points); p; p = al_json_next(points, p), i++) {
        const al_json *pdir = al_json_get(p, "dir"), *index = al_json_get(p, "index"), *status = al_json_get(p, "status");
        if (!pdir || pdir->type != AL_JSON_STRING || !inside(pdir->string)) {
            snprintf(err, errsize, "'%s': point %d has no \"dir\" inside the sweep directory", path, i + 1);
            goto done;
        }
        viewer_sweep_point *sp = &sweep->points[sweep->n_points++];
        sp->index = index && index->type == AL_JSON_NUMBER && index->is_integer ? (int)index->integer : i + 1;
        snprintf(sp->dir, sizeof sp->dir, "%s/%s", sweep->dir, pdir->string);
        snprintf(sp->status, sizeof sp->status, "%s", status && status->type == AL_JSON_STRING ? status->string : "unknown");
        point_label(p, varying, n_varying, sp->label, sizeof sp->label);
        if (!sp->label[0]) snprintf(sp->label, sizeof sp->label, "point %d", sp->index);
    }
    ok = true;
done:
    al_json_free(doc);
    if (!ok) viewer_sweep_free(sweep);
    return ok;
}

void viewer_sweep_free(viewer_sweep *sweep) {
    free(sweep->points);
    sweep->points = NULL;
    sweep->n_points = 0;
}
