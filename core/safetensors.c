/* safetensors.c -- tensors to and from safetensors files (lab.save, lab.load, checkpoints),
 * written through atomic_file.c so that a crash never leaves a half-written checkpoint.
 *
 * The format: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"key": "value", ...}, "name": {"dtype": "F32", "shape": [2, 3],
 *    "data_offsets": [begin, end]}, ...}
 * padded with spaces, then the tensors' raw little-endian bytes (offsets count from the end of
 * the header).  Loading reads files from anywhere, so it trusts nothing: the header is read by the
 * core's strict JSON reader (json_read.c) and then checked against the schema above (every field
 * once, every size and offset a plain non-negative integer), and the tensors must tile the data
 * exactly, as the reference implementation requires.  Any defect gives an error naming the path
 * and the header byte or the tensor, never a crash. */
#include "internal.h"
#include "atomic_file.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes tensor memory as little-endian bytes; a big-endian port needs byte swaps"
#endif

/* ---- the header ----------------------------------------------------------------------------- */

/* The dtypes a file may hold: ours are read as they are, the others widened on reading. */
typedef enum { W_NONE, W_F16, W_BF16, W_I32, W_I16, W_I8, W_U8, W_BOOL } widening;
typedef struct { const char *name; al_dtype dtype; int size; widening widen; } file_dtype;
static const file_dtype file_dtypes[] = {
    {"F32", AL_FLOAT32, 4, W_NONE}, {"F64", AL_FLOAT64, 8, W_NONE}, {"I64", AL_INT64, 8, W_NONE},
    {"F16", AL_FLOAT32, 2, W_F16}, {"BF16", AL_FLOAT32, 2, W_BF16}, {"I32", AL_INT64, 4, W_I32},
    {"I16", AL_INT64, 2, W_I16}, {"I8", AL_INT64, 1, W_I8}, {"U8", AL_INT64, 1, W_U8},
    {"BOOL", AL_INT64, 1, W_BOOL},
};
enum { N_FILE_DTYPES = sizeof file_dtypes / sizeof file_dtypes[0] };

typedef struct {
    char *name;
    int dtype, ndim;         /* dtype indexes file_dtypes; both -1 until seen */
    int64_t shape[AL_MAX_DIMS];
    uint64_t begin, end;
    bool have_offsets;
} entry;

/* A schema error at value v: its byte, and the reason. */
static bool bad(al_json_error *err, const al_json *v, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool bad(al_json_error *err, const al_json *v, const char *fmt, ...) {
    err->offset = v->begin;
    err->where[0] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

/* A non-negative integer without sign, fraction or exponent, at most 2^62. */
static bool header_uint(const char *text, const al_json *v, uint64_t *out, const char *what, al_json_error *err) {
    const uint64_t limit = (uint64_t)1 << 62;
    if (v->type == AL_JSON_NUMBER && (v->is_integer ? v->integer > (int64_t)limit : v->number > (double)limit))
        return bad(err, v, "%s is too large", what);
    if (v->type != AL_JSON_NUMBER || !v->is_integer || v->integer < 0 || text[v->begin] == '-')
        return bad(err, v, "%s must be a non-negative integer (no sign, fraction or exponent)", what);
    *out = (uint64_t)v->integer;
    return true;
}

/* {"key": "value", ...}: the only shape "__metadata__" may have. */
static bool metadata_ok(const al_json *m, al_json_error *err) {
    if (m->type != AL_JSON_OBJECT) return bad(err, m, "expected '{' to open __metadata__");
    for (const al_json *v = al_json_first(m); v; v = al_json_next(m, v))
        if (v->type != AL_JSON_STRING) return bad(err, v, "metadata values must be strings");
    return true;
}

/* {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, each field once, in any order. */
static bool parse_entry(const char *text, const al_json *d, entry *e, al_json_error *err) {
    e->dtype = e->ndim = -1;
    if (d->type != AL_JSON_OBJECT) return bad(err, d, "tensor '%.60s': expected '{' to open its description", e->name);
    for (const al_json *m = al_json_first(d); m; m = al_json_next(d, m)) {
        if (!strcmp(m->key, "dtype") && e->dtype < 0) {
            if (m->type != AL_JSON_STRING) return bad(err, m, "tensor '%.60s': dtype must be a string", e->name);
            for (int i = 0; i < N_FILE_DTYPES; i++)
                if (!strcmp(m->string, file_dtypes[i].name)) e->dtype = i;
            if (e->dtype < 0)
                return bad(err, m, "tensor '%.60s' has dtype '%.20s', which attnlab cannot read", e->name, m->string);
        } else if (!strcmp(m->key, "shape") && e->ndim < 0) {
            if (m->type != AL_JSON_ARRAY) return bad(err, m, "tensor '%.60s': shape must be an array of sizes", e->name);
            e->ndim = 0;
            for (const al_json *x = al_json_first(m); x; x = al_json_next(m, x)) {
                uint64_t v = 0;
                if (e->ndim == AL_MAX_DIMS) return bad(err, x, "tensor '%.60s' has over %d dimensions", e->name, AL_MAX_DIMS);
                if (!header_uint(text, x, &v, "a size in a shape", err)) return false;
                e->shape[e->ndim++] = (int64_t)v;
            }
        } else if (!strcmp(m->key, "data_offsets") && !e->have_offsets) {
            if (m->type != AL_JSON_ARRAY || m->count != 2)
                return bad(err, m, "tensor '%.60s': data_offsets must hold two offsets [begin, end]", e->name);
            const al_json *first = al_json_first(m);
            if (!header_uint(text, first, &e->begin, "a data offset", err) ||
                !header_uint(text, al_json_next(m, first), &e->end, "a data offset", err)) return false;
            e->have_offsets = true;
        } else {
            bool known = !strcmp(m->key, "dtype") || !strcmp(m->key, "shape") || !strcmp(m->key, "data_offsets");
            return bad(err, m, "tensor '%.60s': %s field '%.40s'", e->name, known ? "repeated" : "unknown", m->key);
        }
    }
    if (e->dtype < 0 || e->ndim < 0 || !e->have_offsets)
        return bad(err, d, "tensor '%.60s' has no %s", e->name,
                   e->dtype < 0 ? "dtype" : e->ndim < 0 ? "shape" : "data_offsets");
    return true;
}

typedef struct { entry *e; int n; char *metadata; } header;

static void header_free(header *h) {
    for (int i = 0; i < h->n; i++) free(h->e[i].name);
    free(h->e);
    free(h->metadata);
}

/* The header's JSON (json_read.c), then its schema: an object of tensor descriptions and at most
 * one "__metadata__", kept as its raw text. */
static bool parse_header(const char *text, size_t len, header *h, al_json_error *err) {
    al_json *doc = al_json_parse(text, len, "header", err);
    if (!doc) return false;
    bool ok = doc->type == AL_JSON_OBJECT || bad(err, doc, "expected '{' at the start of the header");
    if (ok && !(h->e = calloc((size_t)doc->count + 1, sizeof *h->e))) ok = bad(err, doc, "out of memory");
    for (const al_json *m = ok ? al_json_first(doc) : NULL; m && ok; m = al_json_next(doc, m)) {
        if (!strcmp(m->key, "__metadata__")) {
            if (h->metadata) ok = bad(err, m, "__metadata__ appears twice");
            else if ((ok = metadata_ok(m, err)) && !(h->metadata = strndup(text + m->begin, m->end - m->begin)))
                ok = bad(err, m, "out of memory");
        } else {
            entry *e = &h->e[h->n++];
            if (!(e->name = strdup(m->key))) ok = bad(err, m, "out of memory");
            else ok = parse_entry(text, m, e, err);
        }
    }
    al_json_free(doc);
    return ok;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}
static int by_offsets(const void *a, const void *b) {
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    return x->begin != y->begin ? (x->begin < y->begin ? -1 : 1) : (x->end > y->end) - (x->end < y->end);
}

/* Every tensor's bytes match its shape and dtype, names are unique, and the tensors tile the
 * data_len bytes of data exactly (no overlap, no gap, nothing left over). */
static bool check_layout(const char *path, header *h, uint64_t data_len) {
    const char *fn = "load_safetensors";
    const uint64_t max_numel = (uint64_t)1 << 40;
    for (int i = 0; i < h->n; i++) {
        entry *e = &h->e[i];
        uint64_t numel = 1, dim;
        for (int d = 0; d < e->ndim; d++, numel *= dim)
            if ((dim = (uint64_t)e->shape[d]) > max_numel || (dim && numel > max_numel / dim)) {
                al_error("%s: '%s': tensor '%.60s' has over 2^40 elements", fn, path, e->name);
                return false;
            }
        const uint64_t nbytes = numel * (uint64_t)file_dtypes[e->dtype].size;
        if (e->end < e->begin || e->end - e->begin != nbytes) {
            al_error("%s: '%s': tensor '%.60s' has data_offsets [%llu, %llu] but shape %s of %s takes %llu "
                     "bytes", fn, path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                     al_shape_str(e->ndim, e->shape), file_dtypes[e->dtype].name, (unsigned long long)nbytes);
            return false;
        }
        if (e->end > data_len) {
            al_error("%s: '%s': tensor '%.60s' ends at data byte %llu but the file has %llu bytes of data "
                     "(truncated?)", fn, path, e->name, (unsigned long long)e->end,
                     (unsigned long long)data_len);
            return false;
        }
    }
    entry **order = malloc(sizeof *order * (size_t)h->n + 1);
    if (!order) { al_error("%s: '%s': out of memory", fn, path); return false; }
    bool ok = true;
    for (int i = 0; i < h->n; i++) order[i] = &h->e[i];
    qsort(order, (size_t)h->n, sizeof *order, by_name);
    for (int i = 1; i < h->n && ok; i++)
        if (!(ok = strcmp(order[i - 1]->name, order[i]->name) != 0))
            al_error("%s: '%s': tensor name '%.60s' appears twice", fn, path, order[i]->name);
    qsort(order, (size_t)h->n, sizeof *order, by_offsets);
    uint64_t at = 0;
    for (int i = 0; i < h->n && ok; at = order[i++]->end) {
        if (order[i]->begin < at)
            al_error("%s: '%s': tensors '%.60s' and '%.60s' overlap", fn, path, order[i - 1]->name,
                     order[i]->name);
        else if (order[i]->begin > at)
            al_error("%s: '%s': %llu unused bytes of data before tensor '%.60s'", fn, path,
                     (unsigned long long)(order[i]->begin - at), order[i]->name);
        ok = order[i]->begin == at;
    }
    if (ok && at != data_len) {
        al_error("%s: '%s': %llu bytes of data after the last tensor", fn, path,
                 (unsigned long long)(data_len - at));
        ok = false;
    }
    free(order);
    return ok;
}

/* ---- loading -------------------------------------------------------------------------------- */

struct al_tensor_file { int n; char **names; al_tensor **tensors; char *metadata; };

/* Reads exactly n bytes at offset; -1 with errno set (0 when the file is shorter). */
static int read_at(int fd, void *buf, size_t n, uint64_t offset) {
    for (char *p = buf; n > 0;) {
        ssize_t r = pread(fd, p, n < ((size_t)1 << 30) ? n : ((size_t)1 << 30), (off_t)offset);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { if (r == 0) errno = 0; return -1; }
        p += r;
        n -= (size_t)r;
        offset += (uint64_t)r;
    }
    return 0;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    float f = (float)man * 0x1p-24f; /* subnormal */
    if (exp == 0x1F) bits = sign | 0x7F800000u | (man << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);
    else { memcpy(&bits, &f, 4); bits |= sign; }
    memcpy(&f, &bits, 4);
    return f;
}

/* Widens n stored values into float32 (F16, BF16) or int64 (the integer types) at dst. */
static void widen(widening kind, const unsigned char *src, void *dst, int64_t n) {
    float *f = dst;
    int64_t *q = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t u16; uint32_t u32; int16_t i16; int32_t i32;
        switch (kind) {
        case W_F16: memcpy(&u16, src + 2 * i, 2); f[i] = half_to_float(u16); break;
        case W_BF16: memcpy(&u16, src + 2 * i, 2); u32 = (uint32_t)u16 << 16; memcpy(&f[i], &u32, 4); break;
        case W_I32: memcpy(&i32, src + 4 * i, 4); q[i] = i32; break;
        case W_I16: memcpy(&i16, src + 2 * i, 2); q[i] = i16; break;
        case W_I8: q[i] = (int8_t)src[i]; break;
        case W_U8: q[i] = src[i]; break;
        case W_BOOL: q[i] = src[i] != 0; break;
        case W_NONE: break;
        }
    }
}

static al_tensor *read_tensor(const char *path, int fd, const entry *e, uint64_t data_start) {
    const file_dtype *type = &file_dtypes[e->dtype];
    al_tensor *t = al_new_tensor(e->ndim, e->shape, type->dtype);
    if (!t) return NULL;
    const size_t nbytes = (size_t)(e->end - e->begin);
    void *buf = type->widen == W_NONE ? al_ptr(t) : malloc(nbytes + 1);
    if (!buf || read_at(fd, buf, nbytes, data_start + e->begin) < 0) {
        al_error("load_safetensors: '%s': cannot read tensor '%.60s': %s", path, e->name,
                 !buf ? "out of memory" : errno ? strerror(errno) : "the file is shorter than its header says");
        al_release(t);
        t = NULL;
    } else if (type->widen != W_NONE) widen(type->widen, buf, al_ptr(t), al_numel(t));
    if (type->widen != W_NONE) free(buf);
    return t;
}

al_tensor_file *al_load_safetensors(const char *path) {
    const char *fn = "load_safetensors";
    if (!path || !*path) { al_error("%s: path is missing", fn); return NULL; }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { al_error("%s: cannot open '%s': %s", fn, path, strerror(errno)); return NULL; }
#define FAIL(...) do { al_error(__VA_ARGS__); goto done; } while (0)
    struct stat st;
    unsigned char len8[8];
    uint64_t n = 0, size = 0;
    char *text = NULL;
    header h = {0};
    al_tensor_file *f = NULL;
    if (fstat(fd, &st) < 0) FAIL("%s: cannot stat '%s': %s", fn, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) FAIL("%s: '%s' is not a regular file", fn, path);
    if ((size = (uint64_t)st.st_size) < 8 || read_at(fd, len8, 8, 0) < 0)
        FAIL("%s: '%s' is %llu bytes long, too short for a safetensors file", fn, path,
             (unsigned long long)size);
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n < 2 || n > size - 8 || n > ((uint64_t)100 << 20))
        FAIL("%s: '%s': the header length %llu is impossible in a file of %llu bytes (%s)", fn, path,
             (unsigned long long)n, (unsigned long long)size, n < 2 ? "too small" : n > size - 8
             ? "truncated, or not a safetensors file" : "over the 100 MiB limit");
    if (!(text = malloc((size_t)n)) || read_at(fd, text, (size_t)n, 8) < 0)
        FAIL("%s: cannot read the header of '%s': %s", fn, path, text ? strerror(errno) : "out of memory");
    al_json_error err;
    if (!parse_header(text, (size_t)n, &h, &err))
        FAIL("%s: '%s': bad header at byte %zu%s%s%s: %s", fn, path, 8 + (size_t)err.offset,
             err.where[0] ? " (in " : "", err.where, err.where[0] ? ")" : "", err.message);
    if (!check_layout(path, &h, size - 8 - n)) goto done;
    if (!(f = calloc(1, sizeof *f)) || !(f->names = calloc((size_t)h.n + 1, sizeof(char *))) ||
        !(f->tensors = calloc((size_t)h.n + 1, sizeof(al_tensor *)))) {
        al_tensor_file_close(f);
        f = NULL;
        FAIL("%s: '%s': out of memory", fn, path);
    }
    for (; f->n < h.n; f->n++) {
        if (!(f->tensors[f->n] = read_tensor(path, fd, &h.e[f->n], 8 + n))) {
            al_tensor_file_close(f);
            f = NULL;
            goto done;
        }
        f->names[f->n] = h.e[f->n].name;
        h.e[f->n].name = NULL;
    }
    f->metadata = h.metadata;
    h.metadata = NULL;
#undef FAIL
done:
    header_free(&h);
    free(text);
    close(fd);
    return f;
}

int al_tensor_file_count(const al_tensor_file *f) {
    if (!f) { al_error("tensor_file_count: file is missing (closed?)"); return -1; }
    return f->n;
}

static bool file_index(const char *fn, const al_tensor_file *f, int i) {
    if (!f) { al_error("%s: file is missing (closed?)", fn); return false; }
    if (i >= 0 && i < f->n) return true;
    al_error("%s: index %d is out of range for a file of %d tensors", fn, i, f->n);
    return false;
}

const char *al_tensor_file_name(const al_tensor_file *f, int i) {
    return file_index("tensor_file_name", f, i) ? f->names[i] : NULL;
}

/* A tensor object of its own on the file's storage: requires_grad and .grad stay the caller's. */
al_tensor *al_tensor_file_tensor(const al_tensor_file *f, int i) {
    return file_index("tensor_file_tensor", f, i) ? al_alias(f->tensors[i]) : NULL;
}

const char *al_tensor_file_metadata(const al_tensor_file *f) { return f ? f->metadata : NULL; }

void al_tensor_file_close(al_tensor_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) { free(f->names[i]); al_release(f->tensors[i]); }
    free(f->names);
    free(f->tensors);
    free(f->metadata);
    free(f);
}

/* ---- saving --------------------------------------------------------------------------------- */

static bool utf8_valid(const char *s) {
    for (size_t i = 0, len = strlen(s), k; i < len; i += k)
        if (!(k = (size_t)al_utf8_length((const unsigned char *)s + i, len - i))) return false;
    return true;
}

int al_save_safetensors(const char *path, int n, const char *const *names, al_tensor *const *tensors,
                        const char *metadata_json) {
    const char *fn = "save_safetensors";
    if (!path || !*path) { al_error("%s: path is missing", fn); return -1; }
    if (n < 0 || (n > 0 && (!names || !tensors))) {
        al_error("%s: '%s': %d tensors but no list of names or tensors", fn, path, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *bad = !names[i] ? "has no name" : !tensors[i] ? "is missing (nil)"
                        : !utf8_valid(names[i]) ? "has a name that is not UTF-8"
                        : !strcmp(names[i], "__metadata__") ? "has the reserved name '__metadata__'" : NULL;
        for (int j = 0; j < i && !bad; j++)
            if (!strcmp(names[i], names[j])) bad = "has the name of an earlier one";
        if (bad) {
            al_error("%s: '%s': tensor %d ('%.60s') %s", fn, path, i + 1, names[i] ? names[i] : "?", bad);
            return -1;
        }
    }
    if (metadata_json) {
        al_json_error err;
        al_json *doc = al_json_parse(metadata_json, strlen(metadata_json), "metadata", &err);
        const bool ok = doc && metadata_ok(doc, &err);
        al_json_free(doc);
        if (!ok) {
            al_error("%s: '%s': metadata_json is not a JSON object of string values (byte %zu: %s)", fn,
                     path, err.offset, err.message);
            return -1;
        }
    }
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *m = open_memstream(&hdr, &hlen);
    if (!m) { al_error("%s: '%s': out of memory", fn, path); return -1; }
    fprintf(m, "{");
    if (metadata_json) fprintf(m, "\"__metadata__\":%s", metadata_json);
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const al_tensor *t = tensors[i];
        fprintf(m, i || metadata_json ? ",\"" : "\"");
        for (const unsigned char *c = (const unsigned char *)names[i]; *c; c++)
            if (*c == '"' || *c == '\\') fprintf(m, "\\%c", *c);
            else if (*c < 0x20) fprintf(m, "\\u%04x", *c);
            else fputc(*c, m);
        fprintf(m, "\":{\"dtype\":\"%s\",\"shape\":[",
                t->dtype == AL_FLOAT32 ? "F32" : t->dtype == AL_FLOAT64 ? "F64" : "I64");
        for (int d = 0; d < t->ndim; d++) fprintf(m, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        const uint64_t nbytes = (uint64_t)al_numel(t) * al_dtype_size(t->dtype);
        fprintf(m, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                (unsigned long long)(offset + nbytes));
        offset += nbytes;
    }
    fprintf(m, "}");
    fflush(m);
    fprintf(m, "%*s", (int)((8 - hlen % 8) % 8), ""); /* pad to a multiple of 8 bytes */
    const int err = ferror(m);
    if (fclose(m) || err) {
        free(hdr);
        al_error("%s: '%s': out of memory building the header", fn, path);
        return -1;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    al_atomic_file af;
    int rc = al_atomic_open(&af, fn, path);
    if (rc == 0 && (rc = al_atomic_write(&af, len8, 8)) == 0) rc = al_atomic_write(&af, hdr, hlen);
    free(hdr);
    for (int i = 0; i < n && rc == 0; i++) {
        /* a tensor on the GPU comes to the host one at a time, as it is written */
        al_tensor *host = al_to_cpu_nograd(tensors[i]);
        al_tensor *c = host ? al_contiguous_nograd(host) : NULL;
        al_release(host);
        if (!c) {
            if (tensors[i]->storage->device != AL_CPU) return al_atomic_abort(&af);   /* the copy said why */
            errno = ENOMEM;
            return al_atomic_fail(&af, "copy a tensor to");
        }
        rc = al_atomic_write(&af, al_ptr(c), (size_t)al_numel(c) * al_dtype_size(c->dtype));
        al_release(c);
    }
    return rc == 0 ? al_atomic_commit(&af) : -1;
}
