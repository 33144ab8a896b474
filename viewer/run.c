/* run.c -- a run directory as the viewer sees it: an index of records.bin (headers only; payloads
 * are read when drawn, one cached per series), curves and events from metrics.jsonl, both followed
 * while the script appends to them.  Only whole records and whole lines are taken; an incomplete
 * tail is looked at again on the next poll.  A garbled records.bin stops the reading of that file
 * with a message naming the byte offset; metrics lines that do not parse are counted and skipped. */
#include "viewer.h"
#include <errno.h>
#include <fcntl.h>
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

/* "name": "..." from config.json, when there is one (a plain scan: the file is ours) */
static void read_name(viewer_run *run) {
    const char *slash = strrchr(run->dir, '/');
    snprintf(run->name, sizeof run->name, "%.200s", slash && slash[1] ? slash + 1 : run->dir);
    char path[4400];
    snprintf(path, sizeof path, "%s/config.json", run->dir);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *k = strstr(buf, "\"name\"");
    if (!k) return;
    k = strchr(k + 6, '"');
    const char *e = k ? strchr(k + 1, '"') : NULL;
    if (k && e && e - k - 1 < (long)sizeof run->name - 64) {
        char title[256];
        snprintf(title, sizeof title, "%.*s", (int)(e - k - 1), k + 1);
        snprintf(run->name, sizeof run->name, "%.120s  (%.120s)", title, slash && slash[1] ? slash + 1 : run->dir);
    }
}

bool viewer_run_open(viewer_run *run, const char *dir, char *err, size_t errsize) {
    memset(run, 0, sizeof *run);
    if (strlen(dir) >= sizeof run->dir - 32) { snprintf(err, errsize, "the path '%s' is too long", dir); return false; }
    if (!is_dir(dir)) {
        snprintf(err, errsize, "'%s' is not a directory (expected a run directory, e.g. runs/icl_regression/...)", dir);
        return false;
    }
    if (!exists_in(dir, AL_RUNLOG_FILE) && !exists_in(dir, "metrics.jsonl") && !exists_in(dir, "config.json")) {
        snprintf(err, errsize, "'%s' is not an attnlab run directory (no records.bin, metrics.jsonl or config.json)", dir);
        return false;
    }
    snprintf(run->dir, sizeof run->dir, "%s", dir);
    run->latest_step = -1;
    read_name(run);
    viewer_run_poll(run);
    if (run->error[0]) { snprintf(err, errsize, "%s", run->error); viewer_run_close(run); return false; }
    return true;
}

void viewer_run_close(viewer_run *run) {
    if (run->reader) al_runlog_reader_close(run->reader);
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

/* ---- metrics.jsonl: flat JSON objects; numbers become curve points, "event" strings markers ---- */

static const char *skip_ws(const char *p) { while (*p == ' ' || *p == '\t' || *p == '\r') p++; return p; }

/* A JSON string at p (after the quote) into out; returns the position after the closing quote. */
static const char *read_string(const char *p, char *out, size_t outsize) {
    size_t n = 0;
    while (*p && *p != '"') {
        char ch = *p++;
        if (ch == '\\' && *p) {
            ch = *p++;
            if (ch == 'n') ch = ' ';
            else if (ch == 'u') { ch = '?'; for (int i = 0; i < 4 && *p; i++) p++; }
        }
        if (n + 1 < outsize) out[n++] = ch;
    }
    out[n] = 0;
    return *p == '"' ? p + 1 : NULL;
}

/* skips a nested object or array (strings inside may hold brackets) */
static const char *skip_nested(const char *p) {
    int depth = 0;
    do {
        if (*p == '"') { char tmp[2]; p = read_string(p + 1, tmp, sizeof tmp); if (!p) return NULL; continue; }
        if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') depth--;
        else if (!*p) return NULL;
        p++;
    } while (depth > 0);
    return p;
}

static bool parse_metrics_line(viewer_run *run, const char *line) {
    const char *p = skip_ws(line);
    if (*p++ != '{') return false;
    int64_t step = -1;
    char keys[32][128], event[120] = "";
    double values[32];
    int n = 0;
    for (;;) {
        p = skip_ws(p);
        if (*p == '}') break;
        if (*p++ != '"') return false;
        char key[128];
        if (!(p = read_string(p, key, sizeof key))) return false;
        p = skip_ws(p);
        if (*p++ != ':') return false;
        p = skip_ws(p);
        if (*p == '"') {
            char text[120];
            if (!(p = read_string(p + 1, text, sizeof text))) return false;
            if (!strcmp(key, "event")) snprintf(event, sizeof event, "%s", text);
        } else if (*p == '{' || *p == '[') {
            if (!(p = skip_nested(p))) return false;
        } else {
            char *end;
            double v = strtod(p, &end);
            if (end == p) {   /* true, false, null */
                while (*p >= 'a' && *p <= 'z') p++;
            } else {
                p = end;
                if (!strcmp(key, "step")) step = (int64_t)v;
                else if (n < 32) { snprintf(keys[n], sizeof keys[n], "%s", key); values[n++] = v; }
            }
        }
        p = skip_ws(p);
        if (*p == ',') { p++; continue; }
        if (*p == '}') break;
        return false;
    }
    if (step < 0) return false;
    for (int i = 0; i < n; i++) curve_add(run, keys[i], step, values[i]);
    if (event[0] && GROW(run->events, run->cap_events, run->n_events + 1)) {
        run->events[run->n_events].step = step;
        snprintf(run->events[run->n_events].text, sizeof run->events[0].text, "%s", event);
        run->n_events++;
    }
    if (step > run->latest_step) run->latest_step = step;
    return true;
}

static bool poll_metrics(viewer_run *run) {
    char path[4400];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return false; }
    if (st.st_size < run->metrics_offset) {
        /* a resumed run rewrote the file shorter (without the steps after its checkpoint): read it
         * again from the start */
        for (int i = 0; i < run->n_curves; i++) run->curves[i].n = 0;
        run->n_events = 0;
        run->metrics_offset = 0;
    }
    if (st.st_size == run->metrics_offset) { close(fd); return false; }
    size_t want = (size_t)(st.st_size - run->metrics_offset);
    char *buf = malloc(want + 1);
    ssize_t got = buf ? pread(fd, buf, want, run->metrics_offset) : -1;
    close(fd);
    if (got <= 0) { free(buf); return false; }
    buf[got] = 0;
    bool any = false;
    char *line = buf;
    for (char *nl; (nl = memchr(line, '\n', (size_t)(buf + got - line))); line = nl + 1) {
        *nl = 0;
        if (nl > line) {
            if (parse_metrics_line(run, line)) any = true;
            else run->malformed_lines++;
        }
    }
    run->metrics_offset += line - buf;   /* an unfinished last line waits */
    free(buf);
    return any;
}

bool viewer_run_poll(viewer_run *run) {
    bool a = poll_records(run);
    bool b = poll_metrics(run);
    bool was = run->finished;
    run->finished = exists_in(run->dir, "final.safetensors");
    return a || b || was != run->finished;
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
