/* runlog.c -- the run record stream: what a script publishes for the viewer (attention maps,
 * weight matrices, scalars, images, tokens, points), appended to RUN_DIR/records.bin.
 *
 * The file is a plain sequence of records, nothing before the first.  Each record is a 64-byte
 * little-endian header, the name, then the payload:
 *
 *   offset size  field
 *        0    4  magic "ALR1"
 *        4    4  u32 total length of the record in bytes (header + name + payload)
 *        8    2  u16 kind: 1 attention, 2 matrix, 3 scalar, 4 image, 5 tokens, 6 points,
 *                          7 heat (an attention heatmap laid over the image of the same name),
 *                          8 reference (a horizontal line on a curve; name "curve:label"),
 *                          9 query, 10 key (the q and k vectors, (N, d) and (M, d), behind the
 *                          attention map of the same name, layer and head)
 *       10    2  u16 dtype: 0 float32 payload, 1 UTF-8 text payload
 *       12    2  u16 ndim, 0..4
 *       14    2  u16 name length in bytes (1..255, no NUL)
 *       16    8  i64 step
 *       24    8  f64 wall-clock time, seconds since the Unix epoch
 *       32   16  u32[4] shape (unused dimensions 0)
 *       48    4  i32 layer, 1-based (0: none)
 *       52    4  i32 head, 1-based (0: none)
 *       56    8  reserved, zero
 *       64    .  name, then the payload: prod(shape) float32 values in row-major order, or text
 *
 * Text payloads (tokens) are the tokens separated by '\n'; a tokens record of shape (n) labels
 * both axes, one of shape (nq, nk) holds the nq query tokens and then the nk key tokens.
 *
 * Each record leaves in ONE write() on a descriptor opened with O_APPEND, so a reader running at
 * the same time sees whole records and at most one incomplete record at the end, which it must
 * treat as "not there yet" (runlog_read.c).  The writer knows nothing of Lua or of the viewer. */
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct al_runlog {
    int fd;
    char path[4096];
    int64_t records, bytes;
};

static void put_u16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }

al_runlog *al_runlog_open(const char *dir) {
    if (!dir || !*dir) { al_error("runlog_open: the run directory is missing"); return NULL; }
    al_runlog *log = calloc(1, sizeof *log);
    if (!log) { al_error("runlog_open: out of memory"); return NULL; }
    int n = snprintf(log->path, sizeof log->path, "%s/%s", dir, AL_RUNLOG_FILE);
    if (n < 0 || (size_t)n >= sizeof log->path) {
        free(log);
        al_error("runlog_open: the path '%s' is too long", dir);
        return NULL;
    }
    log->fd = open(log->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log->fd < 0) {
        al_error("runlog_open: cannot open '%s': %s", log->path, strerror(errno));
        free(log);
        return NULL;
    }
    return log;
}

void al_runlog_close(al_runlog *log) {
    if (!log) return;
    close(log->fd);
    free(log);
}

int64_t al_runlog_count(const al_runlog *log) { return log ? log->records : 0; }

/* Builds the record in memory and appends it with one write(); a short write (disk full) is an
 * error, and what did reach the file is an incomplete tail that readers skip. */
static int write_record(al_runlog *log, const char *fn, int kind, int dtype, const char *name, int64_t step,
                        int layer, int head, int ndim, const int64_t *shape, const void *payload,
                        size_t payload_bytes) {
    if (!log) { al_error("%s: the record stream is not open", fn); return -1; }
    if (kind < AL_RECORD_ATTENTION || kind > AL_RECORD_LAST_KIND) { al_error("%s: unknown record kind %d", fn, kind); return -1; }
    size_t name_len = name ? strlen(name) : 0;
    if (name_len == 0 || name_len > AL_RECORD_NAME_MAX) {
        al_error("%s: the name must be 1..%d bytes (got %zu)", fn, AL_RECORD_NAME_MAX, name_len);
        return -1;
    }
    if (ndim < 0 || ndim > 4) { al_error("%s: '%s' has %d dimensions (records hold 0..4)", fn, name, ndim); return -1; }
    if (layer < 0 || head < 0) { al_error("%s: '%s': layer and head are 1-based (0: none)", fn, name); return -1; }
    size_t total = AL_RECORD_HEADER_BYTES + name_len + payload_bytes;
    if (total > AL_RECORD_MAX_BYTES) {
        al_error("%s: '%s' would make a record of %zu bytes (at most %d)", fn, name, total, AL_RECORD_MAX_BYTES);
        return -1;
    }
    unsigned char *buf = malloc(total);
    if (!buf) { al_error("%s: out of memory for a record of %zu bytes", fn, total); return -1; }
    memset(buf, 0, AL_RECORD_HEADER_BYTES);
    memcpy(buf, AL_RECORD_MAGIC, 4);
    put_u32(buf + 4, (uint32_t)total);
    put_u16(buf + 8, (unsigned)kind);
    put_u16(buf + 10, (unsigned)dtype);
    put_u16(buf + 12, (unsigned)ndim);
    put_u16(buf + 14, (unsigned)name_len);
    put_u64(buf + 16, (uint64_t)step);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    uint64_t bits;
    memcpy(&bits, &now, 8);
    put_u64(buf + 24, bits);
    for (int i = 0; i < ndim; i++) put_u32(buf + 32 + 4 * i, (uint32_t)shape[i]);
    put_u32(buf + 48, (uint32_t)layer);
    put_u32(buf + 52, (uint32_t)head);
    memcpy(buf + AL_RECORD_HEADER_BYTES, name, name_len);
    /* float32 payloads are written little-endian; this core only runs on little-endian hosts */
    if (payload_bytes) memcpy(buf + AL_RECORD_HEADER_BYTES + name_len, payload, payload_bytes);
    ssize_t w;
    do w = write(log->fd, buf, total); while (w < 0 && errno == EINTR);
    free(buf);
    if (w != (ssize_t)total) {
        al_error("%s: writing '%s' to '%s' failed: %s", fn, name, log->path,
                 w < 0 ? strerror(errno) : "short write (disk full?)");
        return -1;
    }
    log->records++;
    log->bytes += (int64_t)total;
    return 0;
}

int al_runlog_write(al_runlog *log, int kind, const char *name, int64_t step, int layer, int head,
                    const al_tensor *t) {
    const char *fn = "runlog_write";
    if (!t) { al_error("%s: '%s': the tensor is missing", fn, name ? name : "?"); return -1; }
    if (kind == AL_RECORD_TOKENS) { al_error("%s: tokens are text (al_runlog_write_text)", fn); return -1; }
    if (t->ndim > 4) {
        al_error("%s: '%s' has shape %s; records hold at most 4 dimensions", fn, name ? name : "?", TSHAPE(t));
        return -1;
    }
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] > UINT32_MAX) { al_error("%s: '%s' shape %s is too large", fn, name ? name : "?", TSHAPE(t)); return -1; }
    /* a float32 contiguous copy on the host only when the view is not one already (a map on the
     * GPU is copied back here, when it is published, and only then) */
    al_tensor *host = al_to_cpu_nograd(t);
    if (!host) return -1;
    al_tensor *f = host->dtype == AL_FLOAT32 ? al_retain(host) : al_to_dtype_nograd(host, AL_FLOAT32);
    al_release(host);
    if (!f) return -1;
    al_tensor *c = al_contiguous_nograd(f);
    al_release(f);
    if (!c) return -1;
    int rc = write_record(log, fn, kind, AL_RECORD_FLOAT32, name, step, layer, head, t->ndim, t->shape, al_ptr(c),
                          (size_t)al_numel(c) * sizeof(float));
    al_release(c);
    return rc;
}

int al_runlog_write_floats(al_runlog *log, int kind, const char *name, int64_t step, int layer, int head,
                           int ndim, const int64_t *shape, const float *values) {
    int64_t n = 1;
    for (int i = 0; i < ndim && i < 4; i++) {
        if (shape[i] < 0 || shape[i] > UINT32_MAX) { al_error("runlog_write_floats: bad size %lld", (long long)shape[i]); return -1; }
        n *= shape[i];
    }
    if (n > 0 && !values) { al_error("runlog_write_floats: '%s': no values", name ? name : "?"); return -1; }
    return write_record(log, "runlog_write_floats", kind, AL_RECORD_FLOAT32, name, step, layer, head, ndim, shape,
                        values, (size_t)n * sizeof(float));
}

int al_runlog_write_text(al_runlog *log, int kind, const char *name, int64_t step, int ndim, const int64_t *shape,
                         const char *text, size_t n) {
    if (!text && n) { al_error("runlog_write_text: '%s': no text", name ? name : "?"); return -1; }
    return write_record(log, "runlog_write_text", kind, AL_RECORD_TEXT, name, step, 0, 0, ndim, shape, text, n);
}

int64_t al_file_size(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0) return -1;
    return (int64_t)st.st_size;
}
