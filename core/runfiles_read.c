/* runfiles_read.c -- reading the JSON files of a run directory, by the grammar that
 * docs/run-directory.md states (records.bin has its own reader, runlog_read.c):
 *
 *   - whole files (config.json, status.json, summary.json): the writer renames a finished temporary
 *     file into place, so a reader sees the old file or the new one, never half of one;
 *   - metrics.jsonl, followed while the run appends to it: whole lines only; the last line may lack
 *     its newline while the writer is in mid-line (it is read again later, never half parsed); a line
 *     that is not JSON is reported and skipped, and does not stop the lines after it; a file
 *     replaced or cut shorter (a resumed run drops the lines after its checkpoint) starts over;
 *   - a metrics line by its grammar: a step, and numbers or one event with its fields.
 *
 * The JSON itself is json_read.c's. */
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bigger than any run file has a reason to be: a file (or one line) over it is refused rather than
 * read into memory. */
enum { MAX_JSON_FILE = 64 << 20 };

/* ---- a whole file ---------------------------------------------------------------------------- */

al_json *al_json_read_file(const char *path) {
    const char *fn = "json_read_file";
    if (!path || !*path) { al_error("%s: the path is missing", fn); return NULL; }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { al_error("%s: cannot open '%s': %s", fn, path, strerror(errno)); return NULL; }
    struct stat st;
    char *text = NULL;
    al_json *doc = NULL;
    size_t got = 0;
    if (fstat(fd, &st) != 0) al_error("%s: cannot stat '%s': %s", fn, path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) al_error("%s: '%s' is not a regular file", fn, path);
    else if (st.st_size > MAX_JSON_FILE) al_error("%s: '%s' is over %d MiB", fn, path, MAX_JSON_FILE >> 20);
    else if (!(text = malloc((size_t)st.st_size + 1))) al_error("%s: '%s': out of memory", fn, path);
    else {
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        al_json_error err;
        if (got < (size_t)st.st_size) al_error("%s: cannot read '%s': %s", fn, path, errno ? strerror(errno) : "it got shorter");
        else if (!(doc = al_json_parse(text, got, "file", &err)))
            al_error("%s: '%s' is not JSON at byte %zu%s%s%s: %s", fn, path, err.offset, err.where[0] ? " (in " : "",
                     err.where, err.where[0] ? ")" : "", err.message);
    }
    free(text);
    close(fd);
    return doc;
}

/* ---- a JSON-lines file, followed -------------------------------------------------------------- */

struct al_jsonl_reader {
    char path[4096];
    int fd;                 /* -1 until the file exists (and after a restart) */
    dev_t dev;
    ino_t ino;              /* which file fd is: a rename puts another one at the path */
    int64_t offset;         /* the file offset of buf[0] */
    char *buf;
    size_t start, n, cap;   /* buf[start, n): read and not yet handed out */
    int64_t line;           /* lines handed out so far (blank ones included) */
};

al_jsonl_reader *al_jsonl_open(const char *path) {
    if (!path || !*path) { al_error("jsonl_open: the path is missing"); return NULL; }
    al_jsonl_reader *r = calloc(1, sizeof *r);
    if (!r) { al_error("jsonl_open: out of memory"); return NULL; }
    if (snprintf(r->path, sizeof r->path, "%s", path) >= (int)sizeof r->path) {
        free(r);
        al_error("jsonl_open: the path '%.200s...' is too long", path);
        return NULL;
    }
    r->fd = -1;
    return r;
}

void al_jsonl_close(al_jsonl_reader *r) {
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    free(r->buf);
    free(r);
}

int64_t al_jsonl_line_number(const al_jsonl_reader *r) { return r ? r->line : 0; }

static void forget(al_jsonl_reader *r) {
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->offset = 0;
    r->start = r->n = 0;
    r->line = 0;
}

/* Reads what was appended since the last call into buf.  1 when the caller must start over (the
 * file was replaced, cut or removed), 0 otherwise, -1 on an error. */
static int read_more(al_jsonl_reader *r) {
    struct stat at_path, st;
    const bool there = stat(r->path, &at_path) == 0;
    if (r->fd >= 0) {
        if (!there || at_path.st_dev != r->dev || at_path.st_ino != r->ino || fstat(r->fd, &st) != 0 ||
            st.st_size < r->offset + (int64_t)r->n) {
            const bool had_read = r->offset + (int64_t)r->n > 0;
            forget(r);
            if (had_read) return 1;
        }
    }
    if (r->fd < 0) {
        if (!there) return 0;   /* not written yet */
        r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            if (errno == ENOENT) return 0;
            al_error("jsonl_next: cannot open '%s': %s", r->path, strerror(errno));
            return -1;
        }
        if (fstat(r->fd, &st) != 0) {
            al_error("jsonl_next: cannot stat '%s': %s", r->path, strerror(errno));
            return -1;
        }
        r->dev = st.st_dev;
        r->ino = st.st_ino;
    }
    const int64_t have = r->offset + (int64_t)r->n;
    if (st.st_size <= have) return 0;
    if (r->start > 0) {   /* drop what was handed out */
        memmove(r->buf, r->buf + r->start, r->n - r->start);
        r->offset += (int64_t)r->start;
        r->n -= r->start;
        r->start = 0;
    }
    size_t want = (size_t)(st.st_size - have);
    if (r->n + want > MAX_JSON_FILE) want = MAX_JSON_FILE - r->n;
    if (want == 0) {
        al_error("jsonl_next: '%s': line %lld is over %d MiB", r->path, (long long)r->line + 1, MAX_JSON_FILE >> 20);
        return -1;
    }
    if (r->n + want + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->n + want + 1) cap *= 2;
        char *b = realloc(r->buf, cap);
        if (!b) { al_error("jsonl_next: '%s': out of memory", r->path); return -1; }
        r->buf = b;
        r->cap = cap;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = pread(r->fd, r->buf + r->n + got, want - got, (off_t)(have + (int64_t)got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { al_error("jsonl_next: cannot read '%s': %s", r->path, strerror(errno)); return -1; }
        if (k == 0) break;
        got += (size_t)k;
    }
    r->n += got;
    return 0;
}

int al_jsonl_next(al_jsonl_reader *r, al_json **line) {
    if (!line) { al_error("jsonl_next: no place for the line"); return -1; }
    *line = NULL;
    if (!r) { al_error("jsonl_next: the reader is missing"); return -1; }
    bool read = false;
    for (;;) {
        char *begin = r->buf + r->start;
        char *nl = r->n > r->start ? memchr(begin, '\n', r->n - r->start) : NULL;
        if (!nl) {
            if (read) return AL_JSONL_NONE;   /* an unfinished last line waits */
            int rc = read_more(r);
            if (rc) return rc < 0 ? -1 : AL_JSONL_RESTART;
            read = true;
            continue;
        }
        const size_t len = (size_t)(nl - begin);
        r->start += len + 1;
        r->line++;
        size_t blank = 0;
        while (blank < len && (begin[blank] == ' ' || begin[blank] == '\t' || begin[blank] == '\r')) blank++;
        if (blank == len) continue;   /* an empty line says nothing */
        al_json_error err;
        if (!(*line = al_json_parse(begin, len, "line", &err))) {
            al_error("jsonl_next: '%s' line %lld is not JSON at byte %zu%s%s%s: %s", r->path, (long long)r->line,
                     err.offset, err.where[0] ? " (in " : "", err.where, err.where[0] ? ")" : "", err.message);
            return AL_JSONL_MALFORMED;
        }
        return AL_JSONL_LINE;
    }
}

/* ---- a metrics line ------------------------------------------------------------------------------ */

static const struct { const char *name; al_event_kind kind; } event_names[] = {
    {"pause", AL_EVENT_PAUSE},       {"resume", AL_EVENT_RESUME},   {"single_step", AL_EVENT_SINGLE_STEP},
    {"ablate", AL_EVENT_ABLATE},     {"scale", AL_EVENT_SCALE},     {"restore", AL_EVENT_RESTORE},
    {"restore_all", AL_EVENT_RESTORE_ALL}, {"ignored", AL_EVENT_IGNORED},
};

/* member key of line: an integer >= 1 that fits an int, into *out */
static int positive_int(const al_json *line, const char *event, const char *key, int *out) {
    const al_json *v = al_json_get(line, key);
    if (!v || v->type != AL_JSON_NUMBER || !v->is_integer || v->integer < 1 || v->integer > 1 << 30) {
        al_error("metrics_line_read: the '%s' event needs \"%s\", an integer >= 1", event, key);
        return -1;
    }
    *out = (int)v->integer;
    return 0;
}

int al_metrics_line_read(const al_json *line, al_metrics_line *out) {
    const char *fn = "metrics_line_read";
    if (!out) { al_error("%s: no place for the result", fn); return -1; }
    memset(out, 0, sizeof *out);
    if (!line || line->type != AL_JSON_OBJECT) { al_error("%s: a metrics line is a JSON object", fn); return -1; }
    const al_json *step = al_json_get(line, "step");
    if (!step || step->type != AL_JSON_NUMBER || !step->is_integer || step->integer < 0) {
        al_error("%s: a metrics line needs \"step\", an integer >= 0", fn);
        return -1;
    }
    out->step = step->integer;
    const al_json *event = al_json_get(line, "event"), *text = al_json_get(line, "text");
    if (!event) return 0;
    if (event->type != AL_JSON_STRING || event->length == 0) {
        al_error("%s: \"event\" must be a name (a non-empty string)", fn);
        return -1;
    }
    if (text && text->type != AL_JSON_STRING) { al_error("%s: \"text\" must be a string", fn); return -1; }
    out->event_name = event->string;
    out->text = text ? text->string : event->string;
    out->event = AL_EVENT_OTHER;
    for (size_t i = 0; i < sizeof event_names / sizeof event_names[0]; i++)
        if (!strcmp(event->string, event_names[i].name)) out->event = event_names[i].kind;
    if (out->event != AL_EVENT_ABLATE && out->event != AL_EVENT_SCALE && out->event != AL_EVENT_RESTORE) return 0;
    if (positive_int(line, event->string, "layer", &out->layer) < 0 ||
        positive_int(line, event->string, "head", &out->head) < 0) return -1;
    const al_json *scale = al_json_get(line, "scale");
    if (!scale || scale->type != AL_JSON_NUMBER || !isfinite(scale->number)) {
        al_error("%s: the '%s' event needs \"scale\", a finite number", fn, event->string);
        return -1;
    }
    out->scale = scale->number;
    /* the name and the scale say the same thing twice; a writer that disagrees with itself is wrong */
    if ((out->event == AL_EVENT_ABLATE && out->scale != 0) || (out->event == AL_EVENT_RESTORE && out->scale != 1)) {
        al_error("%s: the '%s' event has \"scale\" %g (ablate is 0, restore is 1)", fn, event->string, out->scale);
        return -1;
    }
    return 0;
}
