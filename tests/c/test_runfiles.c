/* test_runfiles.c -- the core's JSON reader (json_read.c) and the run directory's readers
 * (runfiles_read.c): documents read exactly and walked; malformed text refused with the byte, the
 * path and the reason; a JSON-lines file followed while it is written (a partial last line waits,
 * a bad line is skipped, a rewritten file starts over); metrics lines read by their grammar; and
 * random corruptions that must never crash (run under ASan for the real check). */
#include "check.h"

static char dir[256], path[512];

static const char *at(const char *name) {
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_text(const char *p, const char *mode, const char *text) {
    FILE *f = fopen(p, mode);
    if (f) { fputs(text, f); fclose(f); }
}

static al_json *parse(const char *text) { return al_json_parse(text, strlen(text), "line", NULL); }

/* ---- the reader ---------------------------------------------------------------------------------- */

static void test_values(void) {
    const char *text = "{\"step\": 12, \"loss\": -1.5e-3, \"big\": 99999999999999999999, \"name\": \"h\\u00e9\\n\\ud83d\\ude00\","
                       " \"flags\": [true, false, null, {}, []], \"nested\": {\"k\": [1, [2, 3]]}, \"min\": -9223372036854775808,"
                       " \"max\": 9223372036854775807, \"huge\": 1e400, \"zero\": -0}";
    al_json *doc = parse(text);
    CHECK(doc != NULL);
    if (!doc) return;
    CHECK(doc->type == AL_JSON_OBJECT && doc->count == 10 && doc->begin == 0 && doc->end == strlen(text));
    const al_json *step = al_json_get(doc, "step");
    CHECK(step && step->type == AL_JSON_NUMBER && step->is_integer && step->integer == 12 && step->number == 12);
    CHECK(step && !strncmp(text + step->begin, "12", step->end - step->begin) && step->end - step->begin == 2);
    const al_json *loss = al_json_get(doc, "loss");
    CHECK(loss && !loss->is_integer && loss->number == -1.5e-3);
    const al_json *big = al_json_get(doc, "big");
    CHECK(big && !big->is_integer && big->number == 1e20);   /* beyond int64: a double, not a wrapped integer */
    const al_json *name = al_json_get(doc, "name");
    CHECK(name && name->type == AL_JSON_STRING && !strcmp(name->string, "h\xc3\xa9\n\xf0\x9f\x98\x80") && name->length == 8);
    const al_json *flags = al_json_get(doc, "flags");
    CHECK(flags && flags->type == AL_JSON_ARRAY && flags->count == 5 && flags->span == 6);
    const al_json_type want[5] = {AL_JSON_TRUE, AL_JSON_FALSE, AL_JSON_NULL, AL_JSON_OBJECT, AL_JSON_ARRAY};
    int i = 0, types_ok = 0;
    for (const al_json *v = al_json_first(flags); v; v = al_json_next(flags, v), i++) types_ok += i < 5 && v->type == want[i] && !v->key;
    CHECK(i == 5 && types_ok == 5);
    CHECK(al_json_first(flags + 4) == NULL && al_json_first(flags + 5) == NULL);   /* {} and [] are empty */
    const al_json *k = al_json_get(al_json_get(doc, "nested"), "k");
    CHECK(k && k->count == 2 && k->span == 5);
    const al_json *inner = k ? al_json_next(k, al_json_first(k)) : NULL;
    CHECK(inner && inner->type == AL_JSON_ARRAY && inner->count == 2 && al_json_next(k, inner) == NULL);
    CHECK(inner && al_json_first(inner)->integer == 2 && al_json_next(inner, al_json_first(inner))->integer == 3);
    const al_json *mn = al_json_get(doc, "min"), *mx = al_json_get(doc, "max");
    CHECK(mn && mn->is_integer && mn->integer == INT64_MIN && mx && mx->is_integer && mx->integer == INT64_MAX);
    const al_json *huge = al_json_get(doc, "huge"), *zero = al_json_get(doc, "zero");
    CHECK(huge && isinf(huge->number) && zero && zero->is_integer && zero->integer == 0 && signbit(zero->number));
    /* members in order, each with its name; what is not there is NULL */
    const char *keys[] = {"step", "loss", "big", "name", "flags", "nested", "min", "max", "huge", "zero"};
    int in_order = 0;
    i = 0;
    for (const al_json *m = al_json_first(doc); m; m = al_json_next(doc, m), i++) in_order += i < 10 && !strcmp(m->key, keys[i]);
    CHECK(in_order == 10 && i == 10);
    CHECK(al_json_get(doc, "absent") == NULL && al_json_get(step, "step") == NULL && al_json_get(NULL, "x") == NULL);
    CHECK(al_json_first(step) == NULL && al_json_next(NULL, doc) == NULL);
    al_json_free(doc);

    /* a repeated name: the last one, as lua/attnlab/json.lua keeps */
    doc = parse("{\"a\": 1, \"a\": 2}");
    CHECK(doc && al_json_get(doc, "a")->integer == 2 && doc->count == 2);
    al_json_free(doc);
    /* a scalar document, blanks around it, and text that is not NUL-terminated */
    doc = parse(" \t\r\n\"x\"\n ");
    CHECK(doc && doc->type == AL_JSON_STRING && !strcmp(doc->string, "x"));
    al_json_free(doc);
    doc = al_json_parse("[1,2]]]]", 5, "line", NULL);
    CHECK(doc && doc->count == 2);
    al_json_free(doc);
    /* 64 levels are allowed */
    char deep[200] = "";
    for (int d = 0; d < AL_JSON_MAX_DEPTH; d++) strcat(deep, "[");
    for (int d = 0; d < AL_JSON_MAX_DEPTH; d++) strcat(deep, "]");
    doc = parse(deep);
    CHECK(doc && doc->span == AL_JSON_MAX_DEPTH);
    al_json_free(doc);
}

static void test_malformed(void) {
    static const struct { const char *text; const char *needle; size_t offset; const char *where; } bad[] = {
        {"", "the line ends where a value was expected", 0, ""},
        {"   ", "ends where a value", 3, ""},
        {"{\"a\": 1,}", "an object ends with ','", 8, ""},
        {"[1, 2,]", "an array ends with ','", 6, ""},
        {"{\"a\": [1, 2, x]}", "expected a value", 13, "a[2]"},
        {"{\"a\": {\"b\": tru}}", "expected a value", 12, "a.b"},
        {"{\"a\" 1}", "expected ':' after a member name", 5, "a"},
        {"{a: 1}", "expected a member name (a string)", 1, ""},
        {"{'a': 1}", "expected a member name", 1, ""},
        {"{\"a\": 1} x", "unexpected text after the line's closing '}'", 9, ""},
        {"[1] [2]", "after the line's closing ']'", 4, ""},
        {"1 2", "unexpected text after the line's value", 2, ""},
        {"{\"a\": 1", "the line ends where ',' or '}' was expected", 7, ""},
        {"[1, 2", "ends where ',' or ']'", 5, ""},
        {"{\"step\": 1, \"loss\": NaN}", "expected a value", 20, "loss"},
        {"{\"loss\": Infinity}", "expected a value", 9, "loss"},
        {"{\"loss\": -Infinity}", "a number has no digits", 10, "loss"},
        {"[01]", "leading zero", 1, "[0]"},
        {"[-]", "no digits", 2, "[0]"},
        {"[1.]", "no digits after '.'", 3, "[0]"},
        {"[1e+]", "no digits in its exponent", 4, "[0]"},
        {"[+1]", "expected a value", 1, "[0]"},
        {"[.5]", "expected a value", 1, "[0]"},
        {"// a comment\n{}", "expected a value", 0, ""},
        {"{\"a\": \"b", "a string is not closed", 8, "a"},
        {"{\"a\": \"b\nc\"}", "control character 0x0a", 8, "a"},
        {"{\"a\": \"\\x\"}", "bad escape", 7, "a"},
        {"{\"a\": \"\\u12\"}", "bad escape", 7, "a"},
        {"{\"a\": \"\\u0000\"}", "\\u0000 in a string", 13, "a"},
        {"{\"a\": \"\\udc00\"}", "unpaired surrogate", 13, "a"},
        {"{\"a\": \"\\ud800x\"}", "unpaired surrogate", 13, "a"},
        {"{\"a\": \"\xff\"}", "invalid UTF-8", 7, "a"},
        {"{\"a\": \"\xc0\x80\"}", "invalid UTF-8", 7, "a"},
        {"{\"a\": \"\xed\xa0\x80\"}", "invalid UTF-8", 7, "a"},
        {"[True]", "expected a value", 1, "[0]"},
    };
    int ok = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        al_json_error err;
        al_clear_error();
        al_json *doc = al_json_parse(bad[i].text, strlen(bad[i].text), "line", &err);
        const bool good = !doc && strstr(err.message, bad[i].needle) && err.offset == bad[i].offset &&
                          !strcmp(err.where, bad[i].where) && strstr(al_last_error(), bad[i].needle) &&
                          strstr(al_last_error(), "json: the line at byte");
        if (!good)
            fprintf(stderr, "'%s': want '%s' at byte %zu in '%s', got %s'%s' at byte %zu in '%s'\n", bad[i].text,
                    bad[i].needle, bad[i].offset, bad[i].where, doc ? "a document and " : "", err.message, err.offset, err.where);
        ok += good;
        al_json_free(doc);
    }
    CHECK(ok == (int)(sizeof bad / sizeof bad[0]));
    /* deeper than the limit, a NUL byte inside the text, and no text at all */
    char deep[200] = "";
    for (int d = 0; d <= AL_JSON_MAX_DEPTH; d++) strcat(deep, "[");
    al_json_error err;
    CHECK(!al_json_parse(deep, strlen(deep), "line", &err) && strstr(err.message, "nested deeper than 64 levels"));
    CHECK(!al_json_parse("{}\0 ", 4, "header", &err) && strstr(err.message, "unexpected text after the header's") && err.offset == 2);
    CHECK(!al_json_parse(NULL, 3, "line", &err) && strstr(al_last_error(), "no text"));
}

/* Random bytes put into, and cuts of, valid lines: each parse either succeeds or fails with a
 * message, and a success walks cleanly. */
static void test_corruptions(void) {
    const char *base = "{\"step\":3,\"event\":\"ablate\",\"layer\":1,\"head\":2,\"scale\":0,\"text\":\"ablate \\u00e9 layer\","
                       "\"x\":[1.5e3,-2,{\"y\":[true,null]}]}";
    const size_t n = strlen(base);
    char copy[256];
    srand(4321);
    int parsed = 0, refused = 0;
    for (int iter = 0; iter < 5000; iter++) {
        memcpy(copy, base, n);
        size_t len = n;
        int kind = rand() % 3;
        if (kind == 0) copy[rand() % n] = (char)rand();
        else if (kind == 1) copy[rand() % n] = "{}[]:,\"\\0123456789 e-.tfnu"[rand() % 26];
        else len = (size_t)rand() % n;
        al_json_error err;
        al_json *doc = al_json_parse(copy, len, "line", &err);
        if (doc) {
            int walked = 0;
            for (const al_json *m = al_json_first(doc); m; m = al_json_next(doc, m)) walked++;
            parsed += walked == doc->count;
            al_metrics_line line;
            al_metrics_line_read(doc, &line);   /* may refuse; must not crash */
        } else refused += err.message[0] != 0;
        al_json_free(doc);
    }
    CHECK(parsed + refused == 5000 && refused > 2500);
}

/* ---- files --------------------------------------------------------------------------------------- */

static void test_read_file(void) {
    write_text(at("config.json"), "w", "{\n  \"name\": \"icl_regression\",\n  \"config\": {\"d\": 5}\n}\n");
    al_json *doc = al_json_read_file(path);
    CHECK(doc && !strcmp(al_json_get(doc, "name")->string, "icl_regression") && al_json_get(al_json_get(doc, "config"), "d")->integer == 5);
    al_json_free(doc);
    write_text(at("bad.json"), "w", "{\n  \"name\": \"x\",\n}\n");
    al_clear_error();
    CHECK(!al_json_read_file(path) && strstr(al_last_error(), "json_read_file: '") && strstr(al_last_error(), "bad.json' is not JSON at byte 17") &&
          strstr(al_last_error(), "an object ends with ','"));
    CHECK(!al_json_read_file(at("missing.json")) && strstr(al_last_error(), "cannot open") && strstr(al_last_error(), "missing.json"));
    CHECK(!al_json_read_file(dir) && strstr(al_last_error(), "not a regular file"));
    write_text(at("empty.json"), "w", "");
    CHECK(!al_json_read_file(path) && strstr(al_last_error(), "the file ends where a value was expected"));
}

static void test_follow(void) {
    const char *p = at("metrics.jsonl");
    al_jsonl_reader *r = al_jsonl_open(p);
    al_json *line = NULL;
    CHECK(r && al_jsonl_next(r, &line) == AL_JSONL_NONE && !line);   /* not written yet */
    write_text(p, "w", "{\"step\":1,\"loss\":2}\n{\"step\":2,");
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_LINE && line && al_json_get(line, "loss")->integer == 2 && al_jsonl_line_number(r) == 1);
    al_json_free(line);
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_NONE && !line);   /* the writer is in mid-line */
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_NONE);
    write_text(p, "a", "\"loss\":1.5}\n\n   \nnot json\n{\"step\":3,\"loss\":1}");
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_LINE && line && al_json_get(line, "loss")->number == 1.5 && al_jsonl_line_number(r) == 2);
    al_json_free(line);
    al_clear_error();
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_MALFORMED && !line && al_jsonl_line_number(r) == 5 &&
          strstr(al_last_error(), "metrics.jsonl' line 5 is not JSON at byte 0"));   /* blank lines pass by */
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_NONE);   /* the last line has no newline yet */
    write_text(p, "a", "\n");
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_LINE && line && al_json_get(line, "step")->integer == 3);
    al_json_free(line);
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_NONE);

    /* a resumed run writes the file anew (temporary file, rename), without the lines after its
     * checkpoint: the reader starts over, even when the new file is as long as the old */
    char fresh[600];
    snprintf(fresh, sizeof fresh, "%s", at("metrics.new"));
    write_text(fresh, "w", "{\"step\":1,\"loss\":9}\n{\"step\":2,\"loss\":8}\n{\"step\":3,\"loss\":7}\n{\"step\":4,\"loss\":6}\n");
    CHECK(rename(fresh, at("metrics.jsonl")) == 0);
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_RESTART && !line);
    int lines = 0, nine = 0;
    while (al_jsonl_next(r, &line) == AL_JSONL_LINE) {
        nine += lines == 0 && al_json_get(line, "loss")->integer == 9;
        lines++;
        al_json_free(line);
    }
    CHECK(lines == 4 && nine == 1 && al_jsonl_line_number(r) == 4);
    /* cut shorter in place */
    CHECK(truncate(p, 20) == 0);
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_RESTART);
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_LINE && al_json_get(line, "loss")->integer == 9);
    al_json_free(line);
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_NONE);
    /* removed (a --force run deleted it): start over; then nothing until it is written again */
    unlink(p);
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_RESTART);
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_NONE);
    write_text(p, "w", "{\"step\":7}\n");
    CHECK(al_jsonl_next(r, &line) == AL_JSONL_LINE && al_json_get(line, "step")->integer == 7);
    al_json_free(line);
    al_jsonl_close(r);
    CHECK(!al_jsonl_open("") && strstr(al_last_error(), "jsonl_open: the path is missing"));
    CHECK(al_jsonl_next(NULL, &line) == -1 && !line);
}

/* ---- the metrics grammar ------------------------------------------------------------------------- */

static void test_metrics_lines(void) {
    static const struct { const char *text; int rc; al_event_kind kind; int layer, head; double scale; const char *name, *shown; } lines[] = {
        {"{\"step\":4,\"loss\":0.5}", 0, AL_EVENT_NONE, 0, 0, 0, NULL, NULL},
        {"{\"step\":2,\"event\":\"ablate\",\"layer\":1,\"head\":2,\"scale\":0,\"text\":\"ablate layer 1 head 2\"}", 0,
         AL_EVENT_ABLATE, 1, 2, 0, "ablate", "ablate layer 1 head 2"},
        /* the fields decide: a text that says otherwise changes nothing, and the order of keys is free */
        {"{\"text\":\"ablate layer 7 head 7\",\"scale\":0,\"head\":2,\"layer\":1,\"event\":\"ablate\",\"step\":2}", 0,
         AL_EVENT_ABLATE, 1, 2, 0, "ablate", "ablate layer 7 head 7"},
        {"{\"step\":3,\"event\":\"scale\",\"layer\":2,\"head\":1,\"scale\":0.25}", 0, AL_EVENT_SCALE, 2, 1, 0.25, "scale", "scale"},
        {"{\"step\":3,\"event\":\"restore\",\"layer\":2,\"head\":1,\"scale\":1,\"text\":\"t\"}", 0, AL_EVENT_RESTORE, 2, 1, 1, "restore", "t"},
        {"{\"step\":5,\"event\":\"restore_all\",\"text\":\"restore all heads\"}", 0, AL_EVENT_RESTORE_ALL, 0, 0, 0, "restore_all", "restore all heads"},
        {"{\"step\":5,\"event\":\"pause\",\"text\":\"pause\"}", 0, AL_EVENT_PAUSE, 0, 0, 0, "pause", "pause"},
        {"{\"step\":5,\"event\":\"resume\"}", 0, AL_EVENT_RESUME, 0, 0, 0, "resume", "resume"},
        {"{\"step\":5,\"event\":\"single_step\"}", 0, AL_EVENT_SINGLE_STEP, 0, 0, 0, "single_step", "single_step"},
        {"{\"step\":5,\"event\":\"ignored\",\"command\":\"jump\",\"reason\":\"not a command\"}", 0, AL_EVENT_IGNORED, 0, 0, 0, "ignored", "ignored"},
        /* an event of the script's own, and the old text-only form of a head event: shown, no effect */
        {"{\"step\":6,\"event\":\"lr drop\",\"lr\":0.1}", 0, AL_EVENT_OTHER, 0, 0, 0, "lr drop", "lr drop"},
        {"{\"step\":6,\"event\":\"ablate layer 1 head 2\"}", 0, AL_EVENT_OTHER, 0, 0, 0, "ablate layer 1 head 2", "ablate layer 1 head 2"},
        /* broken */
        {"{\"loss\":1}", -1, 0, 0, 0, 0, "\"step\", an integer >= 0", NULL},
        {"{\"step\":-1}", -1, 0, 0, 0, 0, "\"step\", an integer >= 0", NULL},
        {"{\"step\":1.5}", -1, 0, 0, 0, 0, "\"step\", an integer >= 0", NULL},
        {"{\"step\":\"1\"}", -1, 0, 0, 0, 0, "\"step\", an integer >= 0", NULL},
        {"[1]", -1, 0, 0, 0, 0, "a metrics line is a JSON object", NULL},
        {"{\"step\":1,\"event\":3}", -1, 0, 0, 0, 0, "\"event\" must be a name", NULL},
        {"{\"step\":1,\"event\":\"\"}", -1, 0, 0, 0, 0, "\"event\" must be a name", NULL},
        {"{\"step\":1,\"event\":\"pause\",\"text\":1}", -1, 0, 0, 0, 0, "\"text\" must be a string", NULL},
        {"{\"step\":1,\"event\":\"ablate\",\"head\":2,\"scale\":0}", -1, 0, 0, 0, 0, "the 'ablate' event needs \"layer\", an integer >= 1", NULL},
        {"{\"step\":1,\"event\":\"ablate\",\"layer\":0,\"head\":2,\"scale\":0}", -1, 0, 0, 0, 0, "needs \"layer\"", NULL},
        {"{\"step\":1,\"event\":\"scale\",\"layer\":1,\"head\":1.5,\"scale\":2}", -1, 0, 0, 0, 0, "needs \"head\"", NULL},
        {"{\"step\":1,\"event\":\"scale\",\"layer\":1,\"head\":1}", -1, 0, 0, 0, 0, "the 'scale' event needs \"scale\", a finite number", NULL},
        {"{\"step\":1,\"event\":\"scale\",\"layer\":1,\"head\":1,\"scale\":null}", -1, 0, 0, 0, 0, "a finite number", NULL},
        {"{\"step\":1,\"event\":\"ablate\",\"layer\":1,\"head\":1,\"scale\":1}", -1, 0, 0, 0, 0, "ablate is 0, restore is 1", NULL},
        {"{\"step\":1,\"event\":\"restore\",\"layer\":1,\"head\":1,\"scale\":0}", -1, 0, 0, 0, 0, "ablate is 0, restore is 1", NULL},
    };
    int ok = 0;
    const int n = (int)(sizeof lines / sizeof lines[0]);
    for (int i = 0; i < n; i++) {
        al_json *doc = parse(lines[i].text);
        al_metrics_line m;
        al_clear_error();
        int rc = doc ? al_metrics_line_read(doc, &m) : -2;
        bool good;
        if (lines[i].rc < 0) good = rc == -1 && strstr(al_last_error(), "metrics_line_read: ") && strstr(al_last_error(), lines[i].name);
        else good = rc == 0 && m.event == lines[i].kind && m.layer == lines[i].layer && m.head == lines[i].head &&
                    m.scale == lines[i].scale && (lines[i].name ? m.event_name && !strcmp(m.event_name, lines[i].name) : !m.event_name) &&
                    (lines[i].shown ? m.text && !strcmp(m.text, lines[i].shown) : !m.text);
        if (!good) fprintf(stderr, "metrics line %d '%s': rc %d, %s\n", i, lines[i].text, rc, al_last_error());
        ok += good;
        al_json_free(doc);
    }
    CHECK(ok == n);
    al_json *doc = parse("{\"step\":9007199254740993,\"loss\":1}");
    al_metrics_line m;
    CHECK(doc && al_metrics_line_read(doc, &m) == 0 && m.step == 9007199254740993LL);   /* exact, not via a double */
    al_json_free(doc);
    CHECK(al_metrics_line_read(NULL, &m) == -1 && al_metrics_line_read(NULL, NULL) == -1);
}

int main(void) {
    if (!check_make_tmpdir(dir, sizeof dir, "test_runfiles")) return 1;
    test_values();
    test_malformed();
    test_corruptions();
    test_read_file();
    test_follow();
    test_metrics_lines();
    check_remove_tmpdir(dir);
    return check_report("test_runfiles");
}
