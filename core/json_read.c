/* json_read.c -- the one JSON reader of the C side: the safetensors header (safetensors.c) and every
 * JSON file of a run directory (runfiles_read.c: config.json, status.json, summary.json, metrics.jsonl's
 * lines).  Lua has its own codec, lua/attnlab/json.lua; the two agree on RFC 8259.
 *
 * It reads files from anywhere, so it trusts nothing: strict RFC 8259 (no comments, no trailing
 * commas, no NaN, no leading zeros, nothing but whitespace after the value), strings checked to be
 * UTF-8 without control characters, escapes decoded (surrogate pairs included), nesting at most
 * AL_JSON_MAX_DEPTH deep, and no recursion: the open objects and arrays live on a fixed stack.
 * Every defect is an error naming the byte, the path to it ("a.shape[1]") and what was wrong.
 * \u0000 is refused, because the decoded strings are C strings.
 *
 * The result is one block of memory: the values in document order (a container is followed by
 * everything it holds, so a walk is pointer arithmetic), then their decoded strings.  Two passes
 * over the text make that possible without reallocating: the first checks it and counts values and
 * string bytes, the second fills the block. */
#include "internal.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int al_utf8_length(const unsigned char *p, size_t avail) {
    unsigned c = p[0];
    int n = c < 0x80 ? 1 : c < 0xC2 ? 0 : c <= 0xDF ? 2 : c <= 0xEF ? 3 : c <= 0xF4 ? 4 : 0;
    if (n == 0 || (size_t)n > avail) return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) ||  /* overlong; surrogates */
        (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))    /* overlong; > U+10FFFF */
        return 0;
    return n;
}

/* an open object or array, and where in it the reader is (for the error's path) */
typedef struct {
    int index;                 /* the container's value */
    int count;                 /* elements or members begun so far */
    int item;                  /* an array: the index of the element being read */
    bool object;
    bool has_key;              /* an object: a member name has been read */
    bool between;              /* its last item is complete and the next not begun */
    size_t key_begin, key_len; /* ... its raw text, without the quotes */
} open_container;

typedef struct {
    const char *s;
    size_t len, pos;
    const char *what;          /* "header", "line", "file": the text's name in messages */
    al_json *values;           /* NULL on the counting pass */
    char *strings;
    int n_values;
    size_t n_string_bytes;
    open_container stack[AL_JSON_MAX_DEPTH];
    int depth;
    al_json_error *err;
} parser;

/* Fills the error: the byte, the path of open containers ("a.shape[1]") and the message. */
static bool fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(parser *p, const char *fmt, ...) {
    al_json_error *e = p->err;
    e->offset = p->pos < p->len ? p->pos : p->len;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    size_t n = 0;
    e->where[0] = 0;
    for (int d = 0; d < p->depth && n < sizeof e->where; d++) {
        const open_container *c = &p->stack[d];
        int k;
        if (c->between) break;
        if (c->object && c->has_key)
            k = snprintf(e->where + n, sizeof e->where - n, "%s%.*s", n ? "." : "",
                         (int)(c->key_len < 40 ? c->key_len : 40), p->s + c->key_begin);
        else if (!c->object)
            k = snprintf(e->where + n, sizeof e->where - n, "[%d]", c->item);
        else break;
        if (k < 0) break;
        n += (size_t)k;
    }
    return false;
}

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The next non-blank character, left unconsumed; 0 at the end of the text (see at_end: a NUL byte
 * inside the text is not its end). */
static char peek(parser *p) {
    while (p->pos < p->len && is_blank(p->s[p->pos])) p->pos++;
    return p->pos < p->len ? p->s[p->pos] : 0;
}

static bool at_end(const parser *p) { return p->pos >= p->len; }

static int hex4(const char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A string at its opening quote: checked, and decoded into out (when not NULL) with a NUL after
 * it.  Its decoded length in *n_out. */
static bool read_string(parser *p, char *out, size_t *n_out) {
    p->pos++; /* the opening quote */
    size_t n = 0;
    for (;;) {
        if (p->pos >= p->len) return fail(p, "a string is not closed");
        const unsigned char c = (unsigned char)p->s[p->pos];
        char u[4];
        int k = 0;
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) return fail(p, "control character 0x%02x in a string", c);
        if (c != '\\') { /* raw text: copied as it is, once known to be UTF-8 */
            if (!(k = al_utf8_length((const unsigned char *)p->s + p->pos, p->len - p->pos)))
                return fail(p, "invalid UTF-8 in a string");
            if (out) memcpy(out + n, p->s + p->pos, (size_t)k);
            n += (size_t)k;
            p->pos += (size_t)k;
            continue;
        }
        const char e = p->pos + 1 < p->len ? p->s[p->pos + 1] : 0;
        const char *simple = e ? strchr("\"\\/bfnrt", e) : NULL;
        int cp = -1;
        if (simple) { u[0] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"]; k = 1; p->pos += 2; }
        else if (e == 'u' && p->pos + 6 <= p->len && (cp = hex4(p->s + p->pos + 2)) >= 0) {
            p->pos += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
                int lo = p->pos + 6 <= p->len && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u'
                             ? hex4(p->s + p->pos + 2) : -1;
                cp = lo >= 0xDC00 && lo <= 0xDFFF ? 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00) : -1;
                p->pos += cp >= 0 ? 6 : 0;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) cp = -1;
            if (cp <= 0) return fail(p, cp ? "unpaired surrogate in a string" : "\\u0000 in a string");
            k = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            for (int i = k - 1; i > 0; i--, cp >>= 6) u[i] = (char)(0x80 | (cp & 0x3F));
            u[0] = (char)(k == 1 ? cp : (k == 2 ? 0xC0 : k == 3 ? 0xE0 : 0xF0) | cp);
        } else return fail(p, "bad escape in a string");
        if (out) memcpy(out + n, u, (size_t)k);
        n += (size_t)k;
    }
    if (out) out[n] = 0;
    *n_out = n;
    return true;
}

/* A string into the string area (the second pass) or only counted (the first); NULL on an error,
 * and on the first pass, where there is nowhere to put it ("" then, so *ok says which). */
static const char *keep_string(parser *p, size_t *n, bool *ok) {
    char *out = p->values ? p->strings + p->n_string_bytes : NULL;
    *ok = read_string(p, out, n);
    if (*ok) p->n_string_bytes += *n + 1;
    return out;
}

/* A member name, at the quote that opens it, then the ':' after it. */
static bool read_key(parser *p, open_container *o, const char **key) {
    if (at_end(p)) return fail(p, "the %s ends where a member name was expected", p->what);
    if (peek(p) != '"') return fail(p, "expected a member name (a string)");
    const size_t begin = p->pos;
    size_t n;
    bool ok;
    *key = keep_string(p, &n, &ok);
    if (!ok) return false;
    o->has_key = true;
    o->between = false;
    o->key_begin = begin + 1;
    o->key_len = p->pos - begin - 2;
    if (peek(p) == ':' && !at_end(p)) { p->pos++; return true; }
    return at_end(p) ? fail(p, "the %s ends where ':' after a member name was expected", p->what)
                     : fail(p, "expected ':' after a member name");
}

/* A number by RFC 8259's grammar; its value by strtod, and an exact int64 when it has neither
 * fraction nor exponent and fits.  v is NULL on the counting pass. */
static bool read_number(parser *p, al_json *v) {
    const size_t begin = p->pos;
    size_t i = begin;
    const char *s = p->s;
    if (i < p->len && s[i] == '-') i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9') { p->pos = i; return fail(p, "a number has no digits"); }
    if (s[i] == '0' && i + 1 < p->len && s[i + 1] >= '0' && s[i + 1] <= '9') {
        p->pos = i;
        return fail(p, "a number has a leading zero");
    }
    while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    const size_t int_end = i;
    if (i < p->len && s[i] == '.') {
        if (++i >= p->len || s[i] < '0' || s[i] > '9') { p->pos = i; return fail(p, "a number has no digits after '.'"); }
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        if (++i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') { p->pos = i; return fail(p, "a number has no digits in its exponent"); }
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    p->pos = i;
    if (!v) return true;
    /* strtod needs a NUL after the number, which the text may not have */
    char small[64], *buf = i - begin < sizeof small ? small : malloc(i - begin + 1);
    if (!buf) return fail(p, "out of memory");
    memcpy(buf, s + begin, i - begin);
    buf[i - begin] = 0;
    v->number = strtod(buf, NULL);   /* beyond the double range: +-inf, as C and Lua read it */
    if (buf != small) free(buf);
    if (i == int_end) { /* digits only: exact when it fits */
        const bool negative = s[begin] == '-';
        const uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        uint64_t u = 0;
        bool fits = true;
        for (size_t j = begin + negative; j < i && fits; j++) {
            const unsigned d = (unsigned)(s[j] - '0');
            if (u > (limit - d) / 10) fits = false;
            else u = u * 10 + d;
        }
        if (fits) {
            v->is_integer = 1;
            v->integer = negative ? (int64_t)(0 - u) : (int64_t)u;
        }
    }
    return true;
}

/* A new value at p->pos, counted in its container; NULL on the counting pass. */
static al_json *new_value(parser *p, al_json_type type, const char *key) {
    const int index = p->n_values++;
    if (p->depth) {
        p->stack[p->depth - 1].count++;
        p->stack[p->depth - 1].between = false;
    }
    if (!p->values) return NULL;
    al_json *v = &p->values[index];
    memset(v, 0, sizeof *v);
    v->type = type;
    v->key = key;
    v->begin = p->pos;
    v->span = 1;
    return v;
}

/* The whole text: one value, then nothing but blanks. */
static bool parse(parser *p) {
    const char *key = NULL;  /* in an object, the name of the member whose value comes next */
    char root = 0;           /* the root value's first character */
    for (;;) {
        /* a value */
        const char c = peek(p);
        if (!root) root = c;
        if (at_end(p)) return fail(p, "the %s ends where a value was expected", p->what);
        al_json *v = NULL;
        if (c == '{' || c == '[') {
            if (p->depth == AL_JSON_MAX_DEPTH) return fail(p, "nested deeper than %d levels", AL_JSON_MAX_DEPTH);
            new_value(p, c == '{' ? AL_JSON_OBJECT : AL_JSON_ARRAY, key);
            p->stack[p->depth++] = (open_container){.index = p->n_values - 1, .object = c == '{'};
            p->pos++;
            const char close = c == '{' ? '}' : ']';
            if (peek(p) != close || at_end(p)) {   /* not empty: its first member or element */
                if (c == '{' && !read_key(p, &p->stack[p->depth - 1], &key)) return false;
                if (c == '[') key = NULL;
                continue;
            }
        } else if (c == '"') {
            v = new_value(p, AL_JSON_STRING, key);
            size_t n = 0;
            bool ok;
            const char *text = keep_string(p, &n, &ok);
            if (!ok) return false;
            if (v) { v->string = text; v->length = n; }
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            v = new_value(p, AL_JSON_NUMBER, key);
            if (!read_number(p, v)) return false;
        } else {
            static const struct { const char *word; al_json_type type; } words[] = {
                {"true", AL_JSON_TRUE}, {"false", AL_JSON_FALSE}, {"null", AL_JSON_NULL}};
            int w = 0;
            while (w < 3 && !(p->len - p->pos >= strlen(words[w].word) &&
                              !memcmp(p->s + p->pos, words[w].word, strlen(words[w].word)))) w++;
            if (w == 3) return fail(p, "expected a value (an object, array, string, number, true, false or null)");
            v = new_value(p, words[w].type, key);
            p->pos += strlen(words[w].word);
        }
        if (v) v->end = p->pos;
        /* after a value: close what ends here, then the next member or element */
        for (;;) {
            if (p->depth == 0) {
                if (peek(p), at_end(p)) return true;
                if (root == '{' || root == '[')
                    return fail(p, "unexpected text after the %s's closing '%c'", p->what, root == '{' ? '}' : ']');
                return fail(p, "unexpected text after the %s's value", p->what);
            }
            open_container *o = &p->stack[p->depth - 1];
            o->between = true;
            const char close = o->object ? '}' : ']';
            const char next = peek(p);
            if (at_end(p)) return fail(p, "the %s ends where ',' or '%c' was expected", p->what, close);
            if (next == close) {
                p->pos++;
                if (p->values) {
                    al_json *container = &p->values[o->index];
                    container->count = o->count;
                    container->span = p->n_values - o->index;
                    container->end = p->pos;
                }
                p->depth--;
                continue;
            }
            if (next != ',') return fail(p, "expected ',' or '%c'", close);
            p->pos++;
            if (o->object) {
                if (peek(p) == '}' && !at_end(p)) return fail(p, "an object ends with ',' (expected a member name, a string)");
                if (!read_key(p, o, &key)) return false;
            } else {
                if (peek(p) == ']' && !at_end(p)) return fail(p, "an array ends with ','");
                o->between = false;
                o->item = o->count;
                key = NULL;
            }
            break;
        }
    }
}

al_json *al_json_parse(const char *text, size_t len, const char *what, al_json_error *err) {
    al_json_error local;
    if (!err) err = &local;
    memset(err, 0, sizeof *err);
    if (!what) what = "text";
    if (!text && len) {
        snprintf(err->message, sizeof err->message, "no text");
        al_error("json: no text");
        return NULL;
    }
    if (len > (size_t)INT_MAX) {   /* every value takes a byte at least, so the counts stay ints */
        snprintf(err->message, sizeof err->message, "over 2 GiB of text");
        al_error("json: the %s is over 2 GiB", what);
        return NULL;
    }
    parser p = {.s = text ? text : "", .len = len, .what = what, .err = err};
    if (!parse(&p)) {
        al_error("json: the %s at byte %zu%s%s%s: %s", what, err->offset, err->where[0] ? " (in " : "",
                 err->where, err->where[0] ? ")" : "", err->message);
        return NULL;
    }
    const size_t values_bytes = sizeof(al_json) * (size_t)p.n_values;
    al_json *block = malloc(values_bytes + p.n_string_bytes + 1);
    if (!block) {
        snprintf(err->message, sizeof err->message, "out of memory for %d values", p.n_values);
        al_error("json: the %s: %s", what, err->message);
        return NULL;
    }
    parser fill = {.s = p.s, .len = len, .what = what, .err = err, .values = block,
                   .strings = (char *)block + values_bytes};
    if (!parse(&fill)) { /* cannot happen: the text was checked; but never hand out half a document */
        free(block);
        al_error("json: the %s changed while it was read", what);
        return NULL;
    }
    return block;
}

void al_json_free(al_json *doc) { free(doc); }

const al_json *al_json_first(const al_json *container) {
    if (!container || (container->type != AL_JSON_OBJECT && container->type != AL_JSON_ARRAY)) return NULL;
    return container->count > 0 ? container + 1 : NULL;
}

const al_json *al_json_next(const al_json *container, const al_json *item) {
    if (!container || !item) return NULL;
    const al_json *after = item + item->span;
    return after < container + container->span ? after : NULL;
}

/* the last member of that name, as Lua's json.decode keeps the last one */
const al_json *al_json_get(const al_json *object, const char *key) {
    if (!object || object->type != AL_JSON_OBJECT || !key) return NULL;
    const al_json *found = NULL;
    for (const al_json *m = al_json_first(object); m; m = al_json_next(object, m))
        if (!strcmp(m->key, key)) found = m;
    return found;
}
