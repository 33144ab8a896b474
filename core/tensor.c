/* tensor.c -- storage, tensor lifetime, shapes and broadcasting, creation, element access.
 * Views live in ops/view.c; the graph in autograd.c. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int64_t live_tensors;

size_t al_dtype_size(al_dtype dtype) { return dtype == AL_BFLOAT16 ? 2 : dtype == AL_FLOAT32 ? 4 : 8; }
bool al_is_float(al_dtype dtype) { return dtype == AL_FLOAT32 || dtype == AL_FLOAT64; }
bool al_is_floating_point(al_dtype dtype) { return al_is_float(dtype) || dtype == AL_BFLOAT16; }
const char *al_dtype_name(al_dtype dtype) {
    switch (dtype) {
    case AL_FLOAT32: return "float32";
    case AL_FLOAT64: return "float64";
    case AL_INT64: return "int64";
    case AL_BFLOAT16: return "bfloat16";
    }
    return "?";
}

/* ---- lifetime --------------------------------------------------------------------------- */

static al_storage *storage_new(size_t nbytes, al_device device) {
    al_storage *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (device == AL_CUDA) {
        s->data = al_cuda_alloc(nbytes);
        s->release = al_cuda_free;
    } else {
        s->data = al_alloc(nbytes);
        s->release = al_free;
    }
    if (!s->data) { free(s); return NULL; }
    s->nbytes = nbytes;
    s->refcount = 1;
    s->device = device;
    return s;
}

static void storage_release(al_storage *s) {
    if (s && --s->refcount == 0) {
        s->release(s->data, s->nbytes);
        free(s);
    }
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

int64_t al_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* Sizes beyond this are refused before any allocation: 2^40 elements is more than any machine
 * here holds, and the limit keeps the products below from overflowing. */
static const int64_t max_elements = (int64_t)1 << 40;

bool al_check_shape(const char *fn, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > AL_MAX_DIMS) {
        al_error("%s: %d dimensions given, at most %d are supported", fn, ndim, AL_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) {
        al_error("%s: shape is missing", fn);
        return false;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            al_error("%s: negative size %lld in dimension %d of shape %s", fn, (long long)shape[i],
                     i + 1, al_shape_str(ndim, shape));
            return false;
        }
        if (shape[i] > max_elements || (shape[i] && n > max_elements / shape[i])) {
            al_error("%s: shape %s is too large (more than 2^40 elements)", fn,
                     al_shape_str(ndim, shape));
            return false;
        }
        n *= shape[i];
    }
    return true;
}

/* t (zeroed, its storage set) made a contiguous view of the whole storage, counted as live */
static al_tensor *contiguous_view(al_tensor *t, int ndim, const int64_t *shape, al_dtype dtype) {
    t->refcount = 1;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    contiguous_strides(ndim, shape, t->strides);
    t->dtype = dtype;
    live_tensors++;
    return t;
}

al_tensor *al_new_tensor(int ndim, const int64_t *shape, al_dtype dtype) {
    return al_new_tensor_on(ndim, shape, dtype, AL_CPU);
}

al_tensor *al_new_tensor_on(int ndim, const int64_t *shape, al_dtype dtype, al_device device) {
    if (!al_check_shape("tensor", ndim, shape)) return NULL;
    if (device == AL_CUDA && !al_cuda_available()) {
        al_error("tensor: no CUDA device (%s)", al_cuda_unavailable_reason());
        return NULL;
    }
    if (dtype != AL_FLOAT32 && dtype != AL_FLOAT64 && dtype != AL_INT64 && dtype != AL_BFLOAT16) {
        al_error("tensor: unknown dtype %d", (int)dtype);
        return NULL;
    }
    /* No CPU kernel reads bfloat16, so no CPU tensor holds it: the one place that makes storage
     * refuses, and every CPU op is safe from it without a check of its own. */
    if (dtype == AL_BFLOAT16 && device != AL_CUDA) {
        al_error("tensor: bfloat16 tensors live on the CUDA device only (make them there with to(\"bfloat16\") "
                 "of a CUDA tensor); %s asked for on the CPU", al_shape_str(ndim, shape));
        return NULL;
    }
    int64_t n = al_shape_numel(ndim, shape);
    al_tensor *t = calloc(1, sizeof *t);
    if (!t) { al_error("tensor: out of memory"); return NULL; }
    t->storage = storage_new((size_t)n * al_dtype_size(dtype), device);
    if (!t->storage) {
        free(t);
        if (device == AL_CUDA) return NULL;   /* the CUDA allocator said why */
        al_error("tensor: cannot allocate %s of %s (%.1f MiB): %.1f MiB in use, limit %.1f MiB "
                 "(lab.set_memory_limit)", al_shape_str(ndim, shape), al_dtype_name(dtype),
                 (double)n * (double)al_dtype_size(dtype) / 1048576.0, (double)al_bytes_in_use() / 1048576.0,
                 (double)al_get_memory_limit() / 1048576.0);
        return NULL;
    }
    return contiguous_view(t, ndim, shape, dtype);
}

al_tensor *al_new_like(const al_tensor *t) { return al_new_tensor_on(t->ndim, t->shape, t->dtype, t->storage->device); }

static void unmap_pages(void *data, size_t nbytes) { munmap(data, nbytes ? nbytes : 1); }

al_tensor *al_unreadable_device_tensor(int ndim, const int64_t *shape, al_dtype dtype) {
    if (!al_check_shape("unreadable_device_tensor", ndim, shape)) return NULL;
    al_tensor *t = calloc(1, sizeof *t);
    al_storage *s = calloc(1, sizeof *s);
    size_t nbytes = (size_t)al_shape_numel(ndim, shape) * al_dtype_size(dtype);
    void *pages = mmap(NULL, nbytes ? nbytes : 1, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!t || !s || pages == MAP_FAILED) {
        free(t); free(s);
        if (pages != MAP_FAILED) munmap(pages, nbytes ? nbytes : 1);
        al_error("unreadable_device_tensor: cannot map %zu bytes", nbytes);
        return NULL;
    }
    *s = (al_storage){.data = pages, .nbytes = nbytes, .refcount = 1, .device = AL_CUDA, .release = unmap_pages};
    t->storage = s;
    return contiguous_view(t, ndim, shape, dtype);
}

bool al_refuse_bfloat16(const char *fn, const al_tensor *a, const al_tensor *b, const al_tensor *c) {
    const al_tensor *args[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        if (args[i] && args[i]->dtype == AL_BFLOAT16) {
            al_error("%s: no kernel for bfloat16 (%s); bfloat16 is taken by attention ('softmax', "
                     "'sliding_window') and to(); convert with to(\"float32\") first", fn, TSHAPE(args[i]));
            return true;
        }
    }
    return false;
}

bool al_same_device(const char *fn, const al_tensor *a, const al_tensor *b, const al_tensor *c) {
    return al_same_device_any_dtype(fn, a, b, c) && !al_refuse_bfloat16(fn, a, b, c);
}

bool al_same_device_any_dtype(const char *fn, const al_tensor *a, const al_tensor *b, const al_tensor *c) {
    const al_tensor *args[3] = {a, b, c};
    const al_tensor *first = NULL;
    for (int i = 0; i < 3; i++) {
        if (!args[i]) continue;
        if (!first) { first = args[i]; continue; }
        if (args[i]->storage->device != first->storage->device) {
            al_error("%s: tensor arguments on two devices (%s on %s, %s on %s); move one with :to()", fn,
                     TSHAPE(first), first->storage->device == AL_CPU ? "cpu" : "cuda", TSHAPE(args[i]),
                     args[i]->storage->device == AL_CPU ? "cpu" : "cuda");
            return false;
        }
    }
    return true;
}

bool al_require_cpu(const char *fn, const al_tensor *a, const al_tensor *b, const al_tensor *c) {
    const al_tensor *args[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        if (args[i] && args[i]->storage->device != AL_CPU) {
            al_error("%s: a tensor argument of shape %s is on cuda, and %s has no CUDA kernel yet; "
                     "move it with :to(\"cpu\")", fn, TSHAPE(args[i]), fn);
            return false;
        }
    }
    return true;
}

/* Fills order[] with t's dimensions by decreasing stride and says whether t covers a dense block
 * of numel elements (a permutation of a contiguous layout, as after permute or transpose). */
static bool dense_order(const al_tensor *t, int *order) {
    for (int i = 0; i < t->ndim; i++) order[i] = i;
    for (int i = 1; i < t->ndim; i++)   /* insertion sort: ndim <= 8 */
        for (int j = i; j > 0 && t->strides[order[j]] > t->strides[order[j - 1]]; j--) {
            int tmp = order[j]; order[j] = order[j - 1]; order[j - 1] = tmp;
        }
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        int d = order[i];
        if (t->shape[d] != 1 && t->strides[d] != expect) return false;
        expect *= t->shape[d];
    }
    return true;
}

bool al_is_dense(const al_tensor *t) {
    int order[AL_MAX_DIMS];
    return dense_order(t, order);
}

/* A new tensor with t's memory layout when t is dense, else contiguous.  Gradients made this way
 * travel back through a permute as contiguous tensors, so the reshape before it needs no copy. */
al_tensor *al_new_like_layout(const al_tensor *t) {
    int order[AL_MAX_DIMS];
    if (!dense_order(t, order)) return al_new_like(t);
    al_tensor *out = al_new_like(t);
    if (!out) return NULL;
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        out->strides[order[i]] = expect;
        expect *= t->shape[order[i]];
    }
    return out;
}

al_tensor *al_view_of(const al_tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                      int64_t offset) {
    al_tensor *v = calloc(1, sizeof *v);
    if (!v) { al_error("view: out of memory"); return NULL; }
    v->refcount = 1;
    v->ndim = ndim;
    if (ndim) {
        memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
        memcpy(v->strides, strides, sizeof(int64_t) * (size_t)ndim);
    }
    v->offset = offset;
    v->dtype = t->dtype;
    v->storage = t->storage;
    v->storage->refcount++;
    live_tensors++;
    return v;
}

al_tensor *al_alias(const al_tensor *t) { return al_view_of(t, t->ndim, t->shape, t->strides, t->offset); }

al_tensor *al_retain(al_tensor *t) {
    if (t) t->refcount++;
    return t;
}

void al_release(al_tensor *t) {
    if (!t || --t->refcount > 0) return;
    storage_release(t->storage);
    al_release(t->grad);
    if (t->grad_fn) al_node_release(t->grad_fn);
    live_tensors--;
    free(t);
}

int64_t al_live_tensors(void) { return live_tensors; }

/* ---- introspection ------------------------------------------------------------------------ */

int al_ndim(const al_tensor *t) { return t ? t->ndim : -1; }
int al_normalize_dim(const char *fn, int dim, int ndim) {
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim) {
        al_error("%s: dimension %d is out of range for a %d-d tensor", fn,
                 dim < 0 ? dim : dim + 1, ndim);
        return -1;
    }
    return d;
}
int64_t al_size(const al_tensor *t, int dim) {
    int d = t ? al_normalize_dim("size", dim, t->ndim) : -1;
    return d < 0 ? -1 : t->shape[d];
}
int64_t al_stride(const al_tensor *t, int dim) {
    int d = t ? al_normalize_dim("stride", dim, t->ndim) : -1;
    return d < 0 ? -1 : t->strides[d];
}
int64_t al_numel(const al_tensor *t) { return t ? al_shape_numel(t->ndim, t->shape) : 0; }
al_dtype al_dtype_of(const al_tensor *t) { return t->dtype; }
al_device al_device_of(const al_tensor *t) { return t->storage->device; }
void *al_data(const al_tensor *t) {
    if (!t || !al_require_cpu("data", t, NULL, NULL)) return NULL;   /* a device address is no use to the host */
    return al_ptr(t);
}

int al_is_contiguous(const al_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

bool al_shape_equal(int na, const int64_t *a, int nb, const int64_t *b) {
    if (na != nb) return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return false;
    return true;
}

bool al_broadcast_shapes(const char *fn, int na, const int64_t *a, int nb, const int64_t *b,
                         int *nout, int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t sa = i < n - na ? 1 : a[i - (n - na)];
        int64_t sb = i < n - nb ? 1 : b[i - (n - nb)];
        if (sa != sb && sa != 1 && sb != 1) {
            al_error("%s: shapes %s and %s do not broadcast (dimension %d: %lld vs %lld)", fn,
                     al_shape_str(na, a), al_shape_str(nb, b), i + 1, (long long)sa, (long long)sb);
            return false;
        }
        out[i] = sa == 1 ? sb : sa;
    }
    *nout = n;
    return true;
}

void al_broadcast_strides(const al_tensor *t, int ndim, const int64_t *shape, int64_t *strides) {
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        if (i < lead) strides[i] = 0;
        else strides[i] = (t->shape[i - lead] == 1 && shape[i] != 1) ? 0 : t->strides[i - lead];
    }
}

/* ---- creation ------------------------------------------------------------------------------ */

al_tensor *al_empty(int ndim, const int64_t *shape, al_dtype dtype) {
    if (!al_check_shape("empty", ndim, shape)) return NULL;
    return al_new_tensor(ndim, shape, dtype);
}

al_tensor *al_full_on(int ndim, const int64_t *shape, double value, al_dtype dtype, al_device device) {
    al_tensor *t = al_new_tensor_on(ndim, shape, dtype, device);
    if (t && al_fill_(t, value) < 0) { al_release(t); return NULL; }
    return t;
}

al_tensor *al_full(int ndim, const int64_t *shape, double value, al_dtype dtype) {
    if (!al_check_shape("full", ndim, shape)) return NULL;
    return al_full_on(ndim, shape, value, dtype, AL_CPU);
}

al_tensor *al_from_buffer(int ndim, const int64_t *shape, al_dtype dtype, const void *src) {
    if (!al_check_shape("tensor", ndim, shape)) return NULL;
    al_tensor *t = al_new_tensor(ndim, shape, dtype);
    if (t && src) memcpy(al_ptr(t), src, (size_t)al_numel(t) * al_dtype_size(dtype));
    return t;
}

al_tensor *al_arange(double start, double end, double step, al_dtype dtype) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step)) {
        al_error("arange: start %g, end %g and step %g do not define a range", start, end, step);
        return NULL;
    }
    double count = ceil((end - start) / step);
    if (count < 0) count = 0;
    if (count > (double)max_elements) {
        al_error("arange: %g elements is too many", count);
        return NULL;
    }
    int64_t n = (int64_t)count;
    al_tensor *t = al_new_tensor(1, &n, dtype);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) {
        double v = start + (double)i * step;
        if (dtype == AL_FLOAT32) ((float *)al_ptr(t))[i] = (float)v;
        else if (dtype == AL_FLOAT64) ((double *)al_ptr(t))[i] = v;
        else ((int64_t *)al_ptr(t))[i] = (int64_t)v;
    }
    return t;
}

al_tensor *al_eye(int64_t n, al_dtype dtype) {
    int64_t shape[2] = {n, n};
    if (!al_check_shape("eye", 2, shape)) return NULL;
    al_tensor *t = al_full(2, shape, 0, dtype);
    if (!t) return NULL;
    int64_t idx[2];
    for (int64_t i = 0; i < n; i++) {
        idx[0] = idx[1] = i;
        al_set(t, idx, 1);
    }
    return t;
}

/* ---- element access ------------------------------------------------------------------------- */

static void *element_ptr(const char *fn, const al_tensor *t, const int64_t *idx) {
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (idx[i] < 0 || idx[i] >= t->shape[i]) {
            al_error("%s: index %lld is out of range for dimension %d of size %lld (shape %s)", fn,
                     (long long)idx[i] + 1, i + 1, (long long)t->shape[i], TSHAPE(t));
            return NULL;
        }
        off += idx[i] * t->strides[i];
    }
    return (char *)t->storage->data + (size_t)off * al_dtype_size(t->dtype);
}

/* Values handed to Lua carry only the canonical NaN: LuaJIT stores its non-number values in NaN
 * payloads, so a NaN with another payload (from lab.empty or a loaded file) would read back as
 * false, nil or a bogus pointer (a crash). */
static double load_as_double(const void *p, al_dtype dtype) {
    double v;
    switch (dtype) {
    case AL_FLOAT32: v = *(const float *)p; break;
    case AL_FLOAT64: v = *(const double *)p; break;
    case AL_BFLOAT16: {   /* a bfloat16 is the top half of the float32 with the same value */
        uint16_t half;
        memcpy(&half, p, 2);
        uint32_t bits = (uint32_t)half << 16;
        float f;
        memcpy(&f, &bits, 4);
        v = f;
        break;
    }
    default: return (double)*(const int64_t *)p;
    }
    return v == v ? v : NAN;
}

int al_get(const al_tensor *t, const int64_t *idx, double *out) {
    if (!t) { al_error("get: tensor is missing"); return -1; }
    void *p = element_ptr("get", t, idx);
    if (!p) return -1;
    if (t->storage->device != AL_CPU) {   /* p is a device address: fetch the one element */
        double element;
        if (al_cuda_memcpy("get", &element, AL_CPU, p, t->storage->device, al_dtype_size(t->dtype)) < 0) return -1;
        *out = load_as_double(&element, t->dtype);
        return 0;
    }
    *out = load_as_double(p, t->dtype);
    return 0;
}

int al_set(al_tensor *t, const int64_t *idx, double value) {
    AL_REQUIRE_CPU("set", t, NULL, NULL, -1);
    if (!t) { al_error("set: tensor is missing"); return -1; }
    void *p = element_ptr("set", t, idx);
    if (!p) return -1;
    if (t->dtype == AL_FLOAT32) *(float *)p = (float)value;
    else if (t->dtype == AL_FLOAT64) *(double *)p = value;
    else *(int64_t *)p = (int64_t)value;
    return 0;
}

double al_item(const al_tensor *t) {
    if (!t) { al_error("item: tensor is missing"); return NAN; }
    if (al_numel(t) != 1) {
        al_error("item: tensor of shape %s has %lld elements, not 1", TSHAPE(t), (long long)al_numel(t));
        return NAN;
    }
    /* the one element, from the device when it is there (bfloat16, which lives there only, as float32) */
    al_tensor *wide = t->dtype == AL_BFLOAT16 ? al_to_dtype_nograd(t, AL_FLOAT32) : al_retain((al_tensor *)t);
    al_tensor *host = wide ? al_to_cpu_nograd(wide) : NULL;
    al_release(wide);
    if (!host) return NAN;
    double v = load_as_double(al_ptr(host), host->dtype);
    al_release(host);
    return v;
}

int al_copy_to_doubles(const al_tensor *t, double *dst, int64_t n) {
    if (!t || !dst) { al_error("totable: tensor is missing"); return -1; }
    if (n != al_numel(t)) {
        al_error("totable: buffer of %lld for %lld elements", (long long)n, (long long)al_numel(t));
        return -1;
    }
    al_tensor *wide = t->dtype == AL_BFLOAT16 ? al_to_dtype_nograd(t, AL_FLOAT32) : al_retain((al_tensor *)t);
    al_tensor *host = wide ? al_to_cpu_nograd(wide) : NULL;
    al_tensor *c = host ? al_to_dtype_nograd(host, AL_FLOAT64) : NULL;
    al_release(wide);
    al_release(host);
    if (!c) return -1;
    memcpy(dst, al_ptr(c), (size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) if (dst[i] != dst[i]) dst[i] = NAN;   /* canonical NaN only (see above) */
    al_release(c);
    return 0;
}
