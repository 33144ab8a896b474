/* run.c -- a run directory as the viewer sees it: an index of records.bin (headers only; payloads
 * are read when drawn, one cached per series), curves and events from metrics.jsonl, both followed
 * while the script appends to them, and the name in config.json.  Every file is read by the core's
 * readers (runlog_read.c, runfiles_read.c) by the grammar docs/run-directory.md states; nothing here
 * scans text.  Only whole records and whole lines are taken; an incomplete tail is looked at again
 * on the next poll.  A garbled records.bin stops the reading of that file with a message naming the
 * byte offset; metrics lines that break the grammar are counted and skipped. */
#include "viewer.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* grows *p (of *cap elements of size sz) to hold at least n; false when out of memory */
static bool grow(void **p, int *cap, int n, size_t sz) {
    if (n <= *cap) return true;
    int c = *cap ? *cap * 2 : 16;
    while (c < n) c *= 2;
    void *q = realloc(*p, (size_t)c * sz);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}
#define GROW(arr, cap, n) grow((void **)&(arr), &(cap), (n), sizeof *(arr))

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists_in(const char *dir, const char *file) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

/* "name" from config.json when it has one, beside the folder's name; else the folder's name */
static void read_name(viewer_run *run) {
    const char *slash = strrchr(run->dir, '/');
    const char *folder = slash && slash[1] ? slash + 1 : run->dir;
    snprintf(run->name, sizeof run->name, "%.200s", folder);
    char path[4400];
    snprintf(path, sizeof path, "%s/config.json", run->dir);
    if (access(path, F_OK) != 0) return;
    al_json *config = al_json_read_file(path);
    const al_json *name = al_json_get(config, "name");
    if (name && name->type == AL_JSON_STRING)
        snprintf(run->name, sizeof run->name, "%.120s  (%.120s)", name->string, folder);
    al_json_free(config);
}

bool viewer_run_open(viewer_run *run, const char *dir, char *err, size_t errsize) {
    memset(run, 0, sizeof *run);
    if (strlen(dir) >= sizeof run->dir - 32) { snprintf(err, errsize, "the path '%s' is too long", dir); return false; }
    if (!is_dir(dir)) {
        snprintf(err, errsize, "'%s' is not a directory (expected a run directory, e.g. runs/icl_regression/...)", dir);
        return false;
    }
    if (exists_in(dir, "sweep.json") && !exists_in(dir, "config.json")) {
        snprintf(err, errsize, "'%s' is a sweep directory, not a run directory: attnlab view --compare '%s' draws its points' "
                               "curves together", dir, dir);
        return false;
    }
    if (!exists_in(dir, AL_RUNLOG_FILE) && !exists_in(dir, "metrics.jsonl") && !exists_in(dir, "config.json")) {
        snprintf(err, errsize, "'%s' is not an attnlab run directory (no records.bin, metrics.jsonl or config.json)", dir);
        return false;
    }
    snprintf(run->dir, sizeof run->dir, "%s", dir);
    run->latest_step = -1;
    char metrics[4400];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    if (!(run->metrics = al_jsonl_open(metrics))) { snprintf(err, errsize, "%s", al_last_error()); return false; }
    run->status_step = -1;
    read_name(run);
    viewer_run_poll(run);
    if (run->error[0]) { snprintf(err, errsize, "%s", run->error); viewer_run_close(run); return false; }
    return true;
}

void viewer_run_close(viewer_run *run) {
    if (run->reader) al_runlog_reader_close(run->reader);
    al_jsonl_close(run->metrics);
    for (int i = 0; i < run->n_series; i++) { free(run->series[i].entries); free(run->series[i].cache); }
    for (int i = 0; i < run->n_curves; i++) { free(run->curves[i].steps); free(run->curves[i].values); }
    free(run->series);
    free(run->snapshots);
    free(run->curves);
    free(run->events);
    memset(run, 0, sizeof *run);
}

viewer_series *viewer_run_find(viewer_run *run, int kind, const char *name, int layer, int head) {
    for (int i = 0; i < run->n_series; i++) {
        viewer_series *s = &run->series[i];
        if (s->kind == kind && s->layer == layer && s->head == head && !strcmp(s->name, name)) return s;
    }
    return NULL;
}

viewer_curve *viewer_run_curve(viewer_run *run, const char *name) {
    for (int i = 0; i < run->n_curves; i++)
        if (!strcmp(run->curves[i].name, name)) return &run->curves[i];
    if (!GROW(run->curves, run->cap_curves, run->n_curves + 1)) return NULL;
    viewer_curve *c = &run->curves[run->n_curves++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

static void curve_add(viewer_run *run, const char *name, int64_t step, double value) {
    viewer_curve *c = viewer_run_curve(run, name);
    if (!c) return;
    if (c->n == c->cap) {   /* two arrays of one capacity */
        int cap = c->cap ? c->cap * 2 : 256;
        int64_t *steps = realloc(c->steps, (size_t)cap * sizeof *steps);
        if (!steps) return;
        c->steps = steps;
        double *values = realloc(c->values, (size_t)cap * sizeof *values);
        if (!values) return;
        c->values = values;
        c->cap = cap;
    }
    c->steps[c->n] = step;
    c->values[c->n++] = value;
}

/* keeps the distinct snapshot steps sorted (records arrive in step order, almost always) */
static void add_snapshot(viewer_run *run, int64_t step) {
    int n = run->n_snapshots;
    if (n && run->snapshots[n - 1] == step) return;
    int at = n;
    while (at > 0 && run->snapshots[at - 1] > step) at--;
    if (at > 0 && run->snapshots[at - 1] == step) return;
    if (!GROW(run->snapshots, run->cap_snapshots, n + 1)) return;
    memmove(run->snapshots + at + 1, run->snapshots + at, (size_t)(n - at) * sizeof *run->snapshots);
    run->snapshots[at] = step;
    run->n_snapshots++;
}

static bool add_record(viewer_run *run, const al_record_info *info) {
    viewer_series *s = viewer_run_find(run, info->kind, info->name, info->layer, info->head);
    if (!s) {
        if (!GROW(run->series, run->cap_series, run->n_series + 1)) return false;
        s = &run->series[run->n_series++];
        memset(s, 0, sizeof *s);
        s->kind = info->kind;
        s->layer = info->layer;
        s->head = info->head;
        s->cached = -1;
        snprintf(s->name, sizeof s->name, "%s", info->name);
    }
    if (!GROW(s->entries, s->cap, s->n + 1)) return false;
    viewer_entry *e = &s->entries[s->n++];
    e->step = info->step;
    e->payload_offset = info->payload_offset;
    e->payload_bytes = info->payload_bytes;
    e->ndim = info->ndim;
    e->dtype = info->dtype;
    for (int i = 0; i < 4; i++) e->shape[i] = (int)info->shape[i];
    if (info->step > run->latest_step) run->latest_step = info->step;
    if (info->kind == AL_RECORD_ATTENTION || info->kind == AL_RECORD_MATRIX || info->kind == AL_RECORD_IMAGE)
        add_snapshot(run, info->step);
    if (info->kind == AL_RECORD_SCALAR && info->dtype == AL_RECORD_FLOAT32) {
        float v;
        /* a scalar record is a point of the curve of its name */
        if (al_runlog_read_payload(run->reader, info, &v, sizeof v) == 0) curve_add(run, info->name, info->step, v);
    }
    return true;
}

static bool poll_records(viewer_run *run) {
    if (run->error[0]) return false;
    if (!run->reader) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", run->dir, AL_RUNLOG_FILE);
        if (access(path, F_OK) != 0) return false;   /* not written yet: the script has not published */
        run->reader = al_runlog_reader_open(path);
        if (!run->reader) { snprintf(run->error, sizeof run->error, "%s", al_last_error()); return false; }
    }
    bool any = false;
    al_record_info info;
    int rc;
    while ((rc = al_runlog_next(run->reader, &info)) == 1) {
        if (!add_record(run, &info)) { snprintf(run->error, sizeof run->error, "out of memory indexing records"); return any; }
        any = true;
    }
    if (rc < 0) snprintf(run->error, sizeof run->error, "%s", al_last_error());
    return any;
}

/* ---- metrics.jsonl: numbers become curve points, events markers (and head scales) ---------------- */

static bool add_event(viewer_run *run, const al_metrics_line *m) {
    if (!GROW(run->events, run->cap_events, run->n_events + 1)) return false;
    viewer_event *e = &run->events[run->n_events++];
    e->step = m->step;
    e->kind = m->event;
    e->layer = m->layer;
    e->head = m->head;
    e->scale = (float)m->scale;
    snprintf(e->name, sizeof e->name, "%s", m->event_name);
    snprintf(e->text, sizeof e->text, "%s", m->text);
    return true;
}

/* One line by the grammar (al_metrics_line_read): false when it breaks it. */
static bool add_metrics_line(viewer_run *run, const al_json *line) {
    al_metrics_line m;
    if (al_metrics_line_read(line, &m) != 0) return false;
    if (m.event != AL_EVENT_NONE) {
        if (!add_event(run, &m)) return false;
    } else {
        for (const al_json *v = al_json_first(line); v; v = al_json_next(line, v)) {
            if (!strcmp(v->key, "step")) continue;
            /* null is how json.lua writes a NaN or an infinity: a point the curve does not draw */
            if (v->type == AL_JSON_NUMBER || v->type == AL_JSON_NULL)
                curve_add(run, v->key, m.step, v->type == AL_JSON_NUMBER ? v->number : NAN);
        }
    }
    if (m.step > run->latest_step) run->latest_step = m.step;
    return true;
}

static bool poll_metrics(viewer_run *run) {
    bool any = false;
    al_json *line;
    int rc;
    while ((rc = al_jsonl_next(run->metrics, &line)) > 0) {
        if (rc == AL_JSONL_RESTART) {
            /* a resumed run rewrote the file without the steps after its checkpoint: read it again */
            for (int i = 0; i < run->n_curves; i++) run->curves[i].n = 0;
            run->n_events = 0;
            any = true;
        } else if (rc == AL_JSONL_LINE && add_metrics_line(run, line)) any = true;
        else run->malformed_lines++;
        al_json_free(line);
    }
    return any;
}

/* The scale of every head as of step, replayed from the ablate/scale/restore events' fields. */
void viewer_run_head_scales(const viewer_run *run, int64_t step, float scale[VIEWER_MAX_ROWS + 1][VIEWER_MAX_HEADS + 1]) {
    for (int l = 0; l <= VIEWER_MAX_ROWS; l++) for (int h = 0; h <= VIEWER_MAX_HEADS; h++) scale[l][h] = 1;
    for (int i = 0; i < run->n_events && run->events[i].step <= step; i++) {
        const viewer_event *e = &run->events[i];
        if (e->kind == AL_EVENT_RESTORE_ALL)
            for (int l = 0; l <= VIEWER_MAX_ROWS; l++) for (int h = 0; h <= VIEWER_MAX_HEADS; h++) scale[l][h] = 1;
        else if ((e->kind == AL_EVENT_ABLATE || e->kind == AL_EVENT_SCALE || e->kind == AL_EVENT_RESTORE) &&
                 e->layer <= VIEWER_MAX_ROWS && e->head <= VIEWER_MAX_HEADS)
            scale[e->layer][e->head] = e->scale;
    }
}

/* ---- status.json (docs/run-directory.md): "status", "step" and, for a failed run, "error" ---- */

/* Reads status.json again when it changed (its mtime or size); true when what the viewer shows of
 * it changed.  A status.json that is not JSON (never seen: it is replaced whole) counts as absent. */
static bool poll_status(viewer_run *run) {
    char path[4400];
    snprintf(path, sizeof path, "%s/status.json", run->dir);
    struct stat st;
    char status[sizeof run->status] = "", failure[sizeof run->failure] = "";
    int64_t step = -1, stamp = 0;
    if (stat(path, &st) == 0) {
        stamp = (int64_t)st.st_mtim.tv_sec * 1000000007LL + (int64_t)st.st_mtim.tv_nsec + (int64_t)st.st_size * 31;
        if (stamp == run->status_stamp) return false;
        al_json *doc = al_json_read_file(path);
        const al_json *s = al_json_get(doc, "status"), *e = al_json_get(doc, "error"), *n = al_json_get(doc, "step");
        if (s && s->type == AL_JSON_STRING) snprintf(status, sizeof status, "%s", s->string);
        if (e && e->type == AL_JSON_STRING) snprintf(failure, sizeof failure, "%s", e->string);
        else if (!strcmp(status, "failed")) snprintf(failure, sizeof failure, "(status.json gives no error)");
        if (n && n->type == AL_JSON_NUMBER && n->is_integer) step = n->integer;
        al_json_free(doc);
    } else if (run->status_stamp == 0 && !run->status[0]) {
        return false;
    }
    /* the message on one line: a traceback's newlines become spaces */
    for (char *c = failure; *c; c++) if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
    bool changed = strcmp(status, run->status) || strcmp(failure, run->failure) || step != run->status_step;
    snprintf(run->status, sizeof run->status, "%s", status);
    snprintf(run->failure, sizeof run->failure, "%s", failure);
    run->status_step = step;
    run->status_stamp = stamp;
    return changed;
}

bool viewer_run_poll(viewer_run *run) {
    bool a = poll_records(run);
    bool b = poll_metrics(run);
    bool c = poll_status(run);
    bool was = run->finished;
    run->finished = exists_in(run->dir, "final.safetensors");
    return a || b || c || was != run->finished;
}

int viewer_series_at(const viewer_series *s, int64_t step) {
    if (!s || s->n == 0) return -1;
    if (step < 0) return s->n - 1;
    int lo = 0, hi = s->n - 1, best = -1;   /* entries are in step order */
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (s->entries[mid].step <= step) { best = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return best;
}

const void *viewer_series_load(viewer_run *run, viewer_series *s, int entry) {
    if (!s || entry < 0 || entry >= s->n) return NULL;
    if (s->cached == entry) return s->cache;
    const viewer_entry *e = &s->entries[entry];
    size_t bytes = (size_t)e->payload_bytes + 1;   /* +1: text payloads get a NUL */
    if (bytes > s->cache_bytes) {
        void *p = realloc(s->cache, bytes);
        if (!p) return NULL;
        s->cache = p;
        s->cache_bytes = bytes;
    }
    al_record_info info = {0};
    info.payload_offset = e->payload_offset;
    info.payload_bytes = e->payload_bytes;
    snprintf(info.name, sizeof info.name, "%s", s->name);
    if (!run->reader || al_runlog_read_payload(run->reader, &info, s->cache, s->cache_bytes) != 0) {
        snprintf(run->error, sizeof run->error, "%s", al_last_error());
        s->cached = -1;
        return NULL;
    }
    ((char *)s->cache)[e->payload_bytes] = 0;
    s->cached = entry;
    return s->cache;
}
