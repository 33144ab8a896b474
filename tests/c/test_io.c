/* test_io.c -- atomic writes, safetensors (round trip, the layout on disk, foreign dtypes, and a
 * long list of malformed files that must each give an error, then random corruptions that must
 * never crash), and PNG save/load. */
#include "check.h"
#include "internal.h"
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], path[512];

static const char *at(const char *name) {
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_bytes(const char *p, const void *data, size_t n) {
    FILE *f = fopen(p, "wb");
    if (f) { fwrite(data, 1, n, f); fclose(f); }
}

static unsigned char *read_bytes(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

static int temp_files(void) {
    int count = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) count += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return count;
}

/* A safetensors file with the given header text (unpadded) and data bytes. */
static const char *make_st(const char *name, const char *header, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len) memcpy(buf + 8 + hl, data, data_len);
    write_bytes(at(name), buf, 8 + hl + data_len);
    free(buf);
    return path;
}

#define CHECK_LOAD_FAILS(p, needle)                                                             \
    do {                                                                                        \
        al_clear_error();                                                                       \
        al_tensor_file *f_ = al_load_safetensors(p);                                            \
        if (!f_ && strstr(al_last_error(), needle) && strstr(al_last_error(), dir)) check_passed++; \
        else { check_failed++; fprintf(stderr, "%s:%d: loading %s should fail with '%s', got '%s'\n", \
                                       __FILE__, __LINE__, p, needle, f_ ? "a file" : al_last_error()); } \
        al_tensor_file_close(f_);                                                               \
    } while (0)

static void test_atomic(void) {
    CHECK(al_write_file_atomic(at("a.txt"), "hello", 5) == 0);
    size_t n = 0;
    unsigned char *b = read_bytes(path, &n);
    CHECK(b && n == 5 && !memcmp(b, "hello", 5));
    free(b);
    CHECK(al_write_file_atomic(at("a.txt"), "bye", 3) == 0); /* replaces */
    b = read_bytes(path, &n);
    CHECK(b && n == 3 && !memcmp(b, "bye", 3));
    free(b);
    CHECK(al_write_file_atomic(at("empty"), "", 0) == 0);
    /* a missing folder: the error names the path and the reason */
    al_clear_error();
    CHECK(al_write_file_atomic(at("no/such/dir/x"), "x", 1) == -1);
    CHECK(strstr(al_last_error(), path) && strstr(al_last_error(), "No such file"));
    /* the rename fails (a folder is in the way): the temporary file is removed */
    mkdir(at("taken"), 0777);
    CHECK(al_write_file_atomic(at("taken"), "x", 1) == -1);
    CHECK(strstr(al_last_error(), "taken") != NULL);
    CHECK(al_write_file_atomic(NULL, "x", 1) == -1);
    CHECK(temp_files() == 0);
}

static void test_roundtrip(void) {
    al_tensor *f32 = al_arange(0, 6, 1, AL_FLOAT32), *m = al_reshape(f32, 2, (int64_t[]){2, 3});
    al_tensor *mt = al_transpose(m, 0, 1); /* (3, 2), not contiguous */
    al_tensor *scalar = al_full(0, NULL, -2.5, AL_FLOAT64);
    al_tensor *ints = al_arange(-3, 3, 2, AL_INT64);
    al_tensor *none = al_empty(2, (int64_t[]){0, 5}, AL_FLOAT32);
    al_tensor *big = al_arange(0, 1000, 0.5, AL_FLOAT64);
    const char *names[] = {"layer.0/w", "q\"uo\\te\n", "\xc3\xbcn\xc3\xaf", "empty", "int", "big"};
    al_tensor *ts[] = {mt, scalar, m, none, ints, big};
    const char *meta = "{\"step\": \"10\", \"note\": \"a \\\"quoted\\\" \\u00e9\"}";
    CHECK(al_save_safetensors(at("rt.safetensors"), 6, names, ts, meta) == 0);
    CHECK(temp_files() == 0);

    size_t n = 0;
    unsigned char *raw = read_bytes(path, &n);
    uint64_t hl = 0;
    for (int i = 7; raw && i >= 0; i--) hl = hl << 8 | raw[i];
    CHECK(raw && hl % 8 == 0 && raw[8] == '{' && n == 8 + hl + 4 * 6 + 8 + 4 * 6 + 0 + 8 * 3 + 8 * 2000);
    CHECK(raw && (raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}'));
    free(raw);

    al_tensor_file *f = al_load_safetensors(path);
    CHECK(f && al_tensor_file_count(f) == 6);
    if (!f) return;
    CHECK(!strcmp(al_tensor_file_metadata(f), meta));
    for (int i = 0; i < 6; i++) {
        CHECK(!strcmp(al_tensor_file_name(f, i), names[i]));
        al_tensor *t = al_tensor_file_tensor(f, i);
        CHECK(t && al_dtype_of(t) == al_dtype_of(ts[i]) && al_ndim(t) == al_ndim(ts[i]));
        bool same_shape = t != NULL, same_values = t != NULL;
        for (int d = 0; t && d < al_ndim(t); d++) same_shape = same_shape && al_size(t, d) == al_size(ts[i], d);
        int64_t cnt = al_numel(ts[i]);
        double *x = malloc(sizeof(double) * (size_t)cnt + 8), *y = malloc(sizeof(double) * (size_t)cnt + 8);
        if (t && same_shape) {
            al_copy_to_doubles(t, x, cnt);
            al_copy_to_doubles(ts[i], y, cnt);
            same_values = !memcmp(x, y, sizeof(double) * (size_t)cnt);
        }
        CHECK(same_shape && same_values);
        free(x); free(y);
        al_release(t);
    }
    CHECK(al_tensor_file_name(f, 6) == NULL && strstr(al_last_error(), "out of range"));
    CHECK(al_tensor_file_tensor(f, -1) == NULL);
    al_tensor_file_close(f);

    /* no tensors, no metadata */
    CHECK(al_save_safetensors(at("none.safetensors"), 0, NULL, NULL, NULL) == 0);
    f = al_load_safetensors(path);
    CHECK(f && al_tensor_file_count(f) == 0 && al_tensor_file_metadata(f) == NULL);
    al_tensor_file_close(f);

    /* what save refuses */
    al_tensor *two[2] = {scalar, ints};
    CHECK(al_save_safetensors(at("bad.safetensors"), 2, (const char *[]){"a", "a"}, two, NULL) == -1 &&
          strstr(al_last_error(), "name"));
    CHECK(al_save_safetensors(path, 1, (const char *[]){"__metadata__"}, two, NULL) == -1);
    CHECK(al_save_safetensors(path, 1, (const char *[]){"\xff"}, two, NULL) == -1);
    CHECK(al_save_safetensors(path, 1, (const char *[]){"a"}, (al_tensor *[]){NULL}, NULL) == -1);
    CHECK(al_save_safetensors(path, 1, (const char *[]){"a"}, two, "{\"a\": 1}") == -1 &&
          strstr(al_last_error(), "metadata"));
    CHECK(al_save_safetensors(path, 1, (const char *[]){"a"}, two, "{\"a\": \"b\"} x") == -1);
    CHECK(al_save_safetensors(path, 1, (const char *[]){"a"}, two, "[]") == -1);
    CHECK(access(path, F_OK) != 0 && temp_files() == 0);
    al_release(f32); al_release(m); al_release(mt); al_release(scalar); al_release(ints);
    al_release(none); al_release(big);
}

static void test_foreign_dtypes(void) {
    unsigned char data[64];
    const uint16_t h[5] = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001}; /* 1, -2, 0.5, 65504, 2^-24 */
    const uint16_t bf[2] = {0x3F80, 0xC040};                        /* 1, -3 */
    const int32_t i32[2] = {-5, 7};
    const uint8_t u8[3] = {0, 200, 255};
    memcpy(data, h, 10);
    memcpy(data + 10, bf, 4);
    memcpy(data + 14, i32, 8);
    memcpy(data + 22, u8, 3);
    data[25] = 2; /* a BOOL stored as 2 still reads as 1 */
    make_st("foreign.safetensors",
            "{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
            "\"bf\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[10,14]},"
            "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[14,22]},"
            "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[22,25]},"
            "\"b\":{\"shape\":[],\"data_offsets\":[25,26],\"dtype\":\"BOOL\"}}", data, 26);
    al_tensor_file *f = al_load_safetensors(path);
    CHECK(f && al_tensor_file_count(f) == 5);
    if (!f) { fprintf(stderr, "%s\n", al_last_error()); return; }
    const double want[5][5] = {{1, -2, 0.5, 65504, 0x1p-24}, {1, -3}, {-5, 7}, {0, 200, 255}, {1}};
    const int counts[5] = {5, 2, 2, 3, 1};
    for (int i = 0; i < 5; i++) {
        al_tensor *t = al_tensor_file_tensor(f, i);
        double v[5];
        CHECK(al_numel(t) == counts[i] && al_dtype_of(t) == (i < 2 ? AL_FLOAT32 : AL_INT64));
        al_copy_to_doubles(t, v, counts[i]);
        for (int k = 0; k < counts[i]; k++) CHECK(v[k] == want[i][k]);
        al_release(t);
    }
    al_tensor_file_close(f);
}

/* Each file is wrong in one way; each must give an error that names the path. */
static void test_malformed(void) {
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    const float two[2] = {1, 2};
    make_st("good.safetensors", good, two, 8);
    al_tensor_file *f = al_load_safetensors(path);
    CHECK(f != NULL);
    al_tensor_file_close(f);

    CHECK_LOAD_FAILS(make_st("trunc.safetensors", good, two, 7), "truncated");
    CHECK_LOAD_FAILS(make_st("extra.safetensors", good, "123456789", 9), "after the last tensor");
    write_bytes(at("short.safetensors"), "\x05\0\0", 3);
    CHECK_LOAD_FAILS(path, "too short");
    write_bytes(at("hugelen.safetensors"), "\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10);
    CHECK_LOAD_FAILS(path, "header length");
    write_bytes(at("zerolen.safetensors"), "\0\0\0\0\0\0\0\0{}", 10);
    CHECK_LOAD_FAILS(path, "header length");
    write_bytes(at("empty.safetensors"), "", 0);
    CHECK_LOAD_FAILS(path, "too short");
    CHECK_LOAD_FAILS(at("missing.safetensors"), "No such file");
    CHECK_LOAD_FAILS(dir, "not a regular file");

    static const struct { const char *header; const char *needle; } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", "header ends"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", "after the header"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", "string"},
        {"[\"a\"]", "expected '{'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}", "data_offsets [0, 80]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[20],\"data_offsets\":[0,80]}}", "truncated"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "data_offsets [8, 0]"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", "dtype 'Q4'"},
        {"{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", "string"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "no dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "no shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", "no data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "repeated"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", "unknown field"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", "leading zero"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}}", "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", "two offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}}", "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", "dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576,2],\"data_offsets\":[0,8]}}", "2^40"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "unused bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "appears twice"},
        {"{\"__metadata__\":{\"k\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "strings"},
        {"{\"__metadata__\":{},\"__metadata__\":{},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "twice"},
        {"{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "UTF-8"},
        {"{\"a\xc0\x80\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "UTF-8"},
        {"{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "u0000"},
        {"{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "surrogate"},
        {"{\"a\\x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "escape"},
        {"{\"a\\u12\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "escape"},
        {"{\"a\n\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "control character"},
        {"{\"a", "not closed"},
        {"{\"a\":", "header ends"},
    };
    char name[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        CHECK_LOAD_FAILS(make_st(name, bad[i].header, two, 8), bad[i].needle);
    }
    /* a NUL byte where padding belongs */
    char nul_header[80];
    size_t hl = strlen(good);
    memcpy(nul_header, good, hl);
    nul_header[hl] = 0;
    unsigned char file[8 + 80 + 8] = {(unsigned char)(hl + 1)};
    memcpy(file + 8, nul_header, hl + 1);
    memcpy(file + 8 + hl + 1, two, 8);
    write_bytes(at("nul.safetensors"), file, 8 + hl + 1 + 8);
    CHECK_LOAD_FAILS(path, "after the header");
    /* escapes decode: a name with \u00e9 and a surrogate pair */
    make_st("esc.safetensors", "{\"\\u00e9\\ud83d\\ude00\\t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ", two, 8);
    f = al_load_safetensors(path);
    CHECK(f && !strcmp(al_tensor_file_name(f, 0), "\xc3\xa9\xf0\x9f\x98\x80\t"));
    al_tensor_file_close(f);
}

/* Random corruptions and truncations of a valid file: each load either succeeds or fails with a
 * message; none may crash (run this under ASan for the real check). */
static void test_corruptions(void) {
    al_tensor *a = al_arange(0, 12, 1, AL_FLOAT32), *b = al_full(0, NULL, 3, AL_INT64);
    al_tensor *ts[2] = {a, b};
    al_save_safetensors(at("base.safetensors"), 2, (const char *[]){"alpha", "beta"}, ts, "{\"k\":\"v\"}");
    size_t n = 0;
    unsigned char *base = read_bytes(path, &n), *copy = malloc(n + 1);
    srand(12345);
    int loaded = 0, failed = 0;
    for (int iter = 0; base && iter < 3000; iter++) {
        memcpy(copy, base, n);
        size_t len = n;
        int kind = rand() % 3;
        if (kind == 0) copy[rand() % n] = (unsigned char)rand();
        else if (kind == 1) copy[8 + rand() % (n - 8)] = "{}[]:,\"\\0123456789 e-"[rand() % 21];
        else len = (size_t)rand() % n;
        if (kind != 2 && rand() % 4 == 0) copy[rand() % 8] = (unsigned char)rand();
        write_bytes(at("fuzz.safetensors"), copy, len);
        al_clear_error();
        al_tensor_file *f = al_load_safetensors(path);
        if (f) {
            loaded++;
            for (int i = 0; i < al_tensor_file_count(f); i++) al_release(al_tensor_file_tensor(f, i));
        } else failed += strstr(al_last_error(), "load_safetensors") != NULL;
        al_tensor_file_close(f);
    }
    CHECK(loaded + failed == 3000 && failed > 1000);
    free(base);
    free(copy);
    al_release(a); al_release(b);
}

static void test_png(void) {
    const int64_t shapes[4][3] = {{5, 7, 3}, {4, 9, 4}, {3, 2, 1}, {6, 5, 2}};
    al_seed(1);
    for (int k = 0; k < 4; k++) {
        al_tensor *img = al_rand(3, shapes[k], k % 2 ? AL_FLOAT64 : AL_FLOAT32);
        CHECK(al_image_save_png(at("img.png"), img) == 0);
        al_tensor *back = al_image_load(path);
        CHECK(back && al_ndim(back) == 3 && al_dtype_of(back) == AL_FLOAT32);
        bool close = back != NULL;
        for (int d = 0; close && d < 3; d++) close = al_size(back, d) == shapes[k][d];
        int64_t cnt = al_numel(img);
        double *x = malloc(sizeof(double) * (size_t)cnt), *y = malloc(sizeof(double) * (size_t)cnt);
        if (close) { al_copy_to_doubles(img, x, cnt); al_copy_to_doubles(back, y, cnt); }
        for (int64_t i = 0; close && i < cnt; i++) close = fabs(x[i] - y[i]) <= 0.5 / 255 + 1e-6;
        CHECK(close);
        free(x); free(y);
        al_release(img); al_release(back);
    }
    /* (H, W) is grey; values outside [0, 1] are clamped */
    al_tensor *grey = al_arange(-1, 2, 0.25, AL_FLOAT32), *g2 = al_reshape(grey, 2, (int64_t[]){3, 4});
    CHECK(al_image_save_png(at("grey.png"), g2) == 0);
    al_tensor *back = al_image_load(path);
    CHECK(back && al_ndim(back) == 3 && al_size(back, 2) == 1 && al_numel(back) == 12);
    double v[12] = {0};
    if (back) al_copy_to_doubles(back, v, 12);
    CHECK(v[0] == 0 && v[4] == 0 && fabs(v[6] - 0.5) <= 0.5 / 255 + 1e-6 && v[8] == 1 && v[11] == 1);
    al_release(grey); al_release(g2); al_release(back);
    /* errors */
    al_tensor *five = al_full(3, (int64_t[]){2, 2, 5}, 0, AL_FLOAT32), *flat = al_full(1, (int64_t[]){4}, 0, AL_FLOAT32);
    al_tensor *zero = al_full(2, (int64_t[]){0, 4}, 0, AL_FLOAT32);
    CHECK(al_image_save_png(at("x.png"), five) == -1 && strstr(al_last_error(), "{2,2,5}"));
    CHECK(al_image_save_png(at("x.png"), flat) == -1 && strstr(al_last_error(), "{4}"));
    CHECK(al_image_save_png(at("x.png"), zero) == -1);
    al_tensor *ok = al_full(2, (int64_t[]){2, 2}, 0.5, AL_FLOAT32);
    CHECK(al_image_save_png(at("no/dir/x.png"), ok) == -1 && strstr(al_last_error(), "no/dir/x.png"));
    al_release(ok);
    CHECK_FAILS(al_image_load(at("missing.png")), "No such file");
    CHECK_FAILS(al_image_load(at("a.txt")), "cannot decode");
    CHECK(temp_files() == 0);
    al_release(five); al_release(flat); al_release(zero);
}

int main(void) {
    if (!check_make_tmpdir(dir, sizeof dir, "test_io")) return 1;
    test_atomic();
    test_roundtrip();
    test_foreign_dtypes();
    test_malformed();
    test_corruptions();
    test_png();
    CHECK(al_live_tensors() == 0);
    check_remove_tmpdir(dir);
    return check_report("test_io");
}
