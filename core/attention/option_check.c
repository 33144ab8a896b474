/* option_check.c -- a call's variant options checked against the variant's descriptor, the one
 * place that does it for every variant:
 *   - each given name must be one of the variant's options: an option of another variant is an
 *     error naming the variants that take it (a silently ignored option is a wrong experiment), and
 *     a name no variant knows is an error listing the variant's own;
 *   - each value must be of the option's kind and in its range ("opts.window must be an integer
 *     >= 1 (got 1.5)"), the entries of a per-axis table one per axis of the variant's grid;
 *   - a required option must be given.
 * The checked values land in the variant's options struct at each option's offset, after the
 * defaults, so a variant reads plain typed fields and never a caller's value. */
#include "attention_internal.h"
#include <math.h>
#include <string.h>

static const attention_option *find_option(const attention_variant *var, const char *name) {
    for (const attention_option *o = var->options; o && o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

const char *attention_option_kind_name(attention_option_kind kind) {
    switch (kind) {
    case OPTION_INTEGER: return "integer";
    case OPTION_NUMBER: return "number";
    case OPTION_TENSOR: return "tensor";
    case OPTION_CHOICE: return "choice";
    case OPTION_AXES: return "per-axis integer";
    case OPTION_GRID: return "grid";
    case OPTION_AXIS_FLAGS: return "per-axis booleans";
    }
    return "?";
}

/* ">= 1", "> 0", ">= -1 and <= 30" */
static void describe_range(const attention_option *o, char *buf, size_t size) {
    int n = snprintf(buf, size, "%s %g", o->above_least ? ">" : ">=", o->least);
    if (o->most != 0 && n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, " and <= %g", o->most);
}

void attention_option_expects(const attention_option *o, char *buf, size_t size) {
    char range[64];
    describe_range(o, range, sizeof range);
    switch (o->kind) {
    case OPTION_INTEGER: snprintf(buf, size, "an integer %s", range); return;
    case OPTION_NUMBER: snprintf(buf, size, "a finite number %s", range); return;
    case OPTION_TENSOR: snprintf(buf, size, "a tensor"); return;
    case OPTION_AXES: snprintf(buf, size, "an integer %s or a table of one per grid axis", range); return;
    case OPTION_GRID: snprintf(buf, size, "a table of 1 to %d axis lengths {H, W}", ATTENTION_MAX_AXES); return;
    case OPTION_AXIS_FLAGS: snprintf(buf, size, "a table of booleans, one per grid axis"); return;
    case OPTION_CHOICE: break;
    }
    /* 'auto', 'dense' or 'tiled' */
    size_t used = 0;
    buf[0] = 0;
    const char *w = o->choices;
    while (w && *w && used + 1 < size) {
        const size_t len = strcspn(w, " ");
        const char *next = w[len] ? w + len + 1 : w + len;
        const char *sep = used == 0 ? "" : (*next ? ", " : " or ");
        int n = snprintf(buf + used, size - used, "%s'%.*s'", sep, (int)len, w);
        if (n < 0) break;
        used += (size_t)n;
        w = next;
    }
}

/* How the caller wrote v, for messages: its own spelling when it gave one. */
static const char *spell(const al_value *v, char *buf, size_t size) {
    if (v->spelling) return v->spelling;
    switch (v->type) {
    case AL_VALUE_NUMBER: snprintf(buf, size, "%g", v->number); break;
    case AL_VALUE_BOOLEAN: snprintf(buf, size, "%s", v->number != 0 ? "true" : "false"); break;
    case AL_VALUE_STRING: snprintf(buf, size, "%s", v->string ? v->string : "NULL"); break;
    case AL_VALUE_TENSOR: snprintf(buf, size, "a tensor %s", v->tensor ? TSHAPE(v->tensor) : "NULL"); break;
    case AL_VALUE_LIST: snprintf(buf, size, "a table of %d entries", v->count); break;
    default: snprintf(buf, size, "a value of another type"); break;
    }
    return buf;
}

/* "attention: opts.NAME[INDEX] must be EXPECTS (got VALUE)" */
static bool refuse(const attention_option *o, int index, const char *expects, const al_value *v) {
    char at[16] = "", got[96];
    if (index > 0) snprintf(at, sizeof at, "[%d]", index);
    al_error("attention: opts.%s%s must be %s (got %s)", o->name, at, expects, spell(v, got, sizeof got));
    return false;
}

static bool integer_in_range(const al_value *v, double least, double most, int64_t *out) {
    if (v->type != AL_VALUE_NUMBER) return false;
    const double x = v->number;
    if (x != floor(x) || fabs(x) >= 9007199254740992.0 || x < least || (most != 0 && x > most)) return false;
    *out = (int64_t)x;
    return true;
}

/* A table of one entry per axis: count checked against the grid (grid_axes 0: none given). */
static bool per_axis_table(const attention_option *o, const al_value *v, int grid_axes, const char *grid_name,
                           attention_axes *out) {
    if (v->count != grid_axes || grid_axes == 0) {
        char grid[32] = "not given";
        if (grid_axes) snprintf(grid, sizeof grid, "of %d axes", grid_axes);
        al_error("attention: opts.%s as a table%s needs opts.%s with as many axes (got %d entries, grid %s)", o->name,
                 o->kind == OPTION_AXIS_FLAGS ? " (one boolean per axis)" : "", grid_name, v->count, grid);
        return false;
    }
    char expects[64], range[48];
    describe_range(o, range, sizeof range);
    snprintf(expects, sizeof expects, "an integer %s", range);
    out->count = v->count;
    for (int a = 0; a < v->count; a++) {
        const al_value *e = &v->items[a];
        if (o->kind == OPTION_AXIS_FLAGS) {
            if (e->type != AL_VALUE_BOOLEAN) return refuse(o, a + 1, "true or false", e);
            out->value[a] = e->number != 0;
        } else if (!integer_in_range(e, o->least, o->most, &out->value[a])) {
            return refuse(o, a + 1, expects, e);
        }
    }
    return true;
}

/* One given value into the struct at o->offset; grid_axes: the axes of the variant's grid. */
static bool read_value(const attention_option *o, const al_value *v, int grid_axes, const char *grid_name,
                       char *block) {
    char expects[160];
    attention_option_expects(o, expects, sizeof expects);
    void *at = block + o->offset;
    switch (o->kind) {
    case OPTION_INTEGER: {
        int64_t x;
        if (!integer_in_range(v, o->least, o->most, &x)) return refuse(o, 0, expects, v);
        memcpy(at, &x, sizeof x);
        return true;
    }
    case OPTION_NUMBER: {
        const double x = v->number;
        if (v->type != AL_VALUE_NUMBER || !isfinite(x) || x < o->least || (o->above_least && x == o->least) ||
            (o->most != 0 && x > o->most))
            return refuse(o, 0, expects, v);
        memcpy(at, &x, sizeof x);
        return true;
    }
    case OPTION_TENSOR:
        if (v->type != AL_VALUE_TENSOR || !v->tensor) return refuse(o, 0, expects, v);
        memcpy(at, &v->tensor, sizeof v->tensor);
        return true;
    case OPTION_CHOICE: {
        if (v->type != AL_VALUE_STRING || !v->string) return refuse(o, 0, expects, v);
        int index = 0;
        for (const char *w = o->choices; w && *w; index++) {
            const size_t len = strcspn(w, " ");
            if (len == strlen(v->string) && strncmp(w, v->string, len) == 0) {
                memcpy(at, &index, sizeof index);
                return true;
            }
            w += len + (w[len] ? 1 : 0);
        }
        return refuse(o, 0, expects, v);
    }
    case OPTION_AXES: {
        attention_axes axes = {0};
        if (v->type == AL_VALUE_LIST) {
            if (!per_axis_table(o, v, grid_axes, grid_name, &axes)) return false;
        } else {
            int64_t x;
            if (!integer_in_range(v, o->least, o->most, &x)) return refuse(o, 0, expects, v);
            for (int a = 0; a < ATTENTION_MAX_AXES; a++) axes.value[a] = x;
        }
        memcpy(at, &axes, sizeof axes);
        return true;
    }
    case OPTION_AXIS_FLAGS: {
        attention_axes flags = {0};
        if (v->type != AL_VALUE_LIST) return refuse(o, 0, expects, v);
        if (!per_axis_table(o, v, grid_axes, grid_name, &flags)) return false;
        memcpy(at, &flags, sizeof flags);
        return true;
    }
    case OPTION_GRID: {
        attention_axes grid = {0};
        if (v->type != AL_VALUE_LIST || v->count < 1 || v->count > ATTENTION_MAX_AXES) return refuse(o, 0, expects, v);
        grid.count = v->count;
        for (int a = 0; a < v->count; a++)
            if (!integer_in_range(&v->items[a], 1, 0, &grid.value[a])) return refuse(o, a + 1, "an integer >= 1", &v->items[a]);
        memcpy(at, &grid, sizeof grid);
        return true;
    }
    }
    return false;
}

/* An option var does not take: either another variant's (named) or no variant's. */
static bool refuse_foreign(const attention_variant *var, const char *name) {
    char owners[256] = "";
    const attention_option *theirs = NULL;
    for (int i = 0; i < attention_catalogue_size(); i++) {
        const attention_option *o = find_option(attention_catalogue(i), name);
        if (!o) continue;
        theirs = o;
        strncat(owners, owners[0] ? " " : "", sizeof owners - strlen(owners) - 1);
        strncat(owners, attention_catalogue(i)->name, sizeof owners - strlen(owners) - 1);
    }
    if (theirs) {
        al_error("attention: %s%s is an option of the variant(s) %s, not of '%s'", name,
                 theirs->kind == OPTION_AXIS_FLAGS ? " as a table (one boolean per axis)" : "", owners, var->name);
        return false;
    }
    char own[256] = "";
    for (const attention_option *o = var->options; o && o->name; o++) {
        strncat(own, own[0] ? ", " : "", sizeof own - strlen(own) - 1);
        strncat(own, o->name, sizeof own - strlen(own) - 1);
    }
    if (own[0]) al_error("attention: unknown option '%s' (the options of variant '%s': %s)", name, var->name, own);
    else al_error("attention: unknown option '%s' (variant '%s' has no options of its own)", name, var->name);
    return false;
}

bool attention_read_options(const attention_variant *var, const al_attention_opts *opts, void *block) {
    const int n = opts ? opts->n_options : 0;
    if (n < 0 || (n > 0 && !opts->options)) {
        al_error("attention: n_options %d without an options array", n);
        return false;
    }
    /* every name first: an option of another variant is the error to report, whatever its value */
    for (int i = 0; i < n; i++) {
        const char *name = opts->options[i].name;
        if (!name) { al_error("attention: option %d has no name", i + 1); return false; }
        if (!find_option(var, name)) return refuse_foreign(var, name);
        for (int j = 0; j < i; j++)
            if (strcmp(opts->options[j].name, name) == 0) {
                al_error("attention: option '%s' given twice", name);
                return false;
            }
    }
    for (const attention_option *o = var->options; o && o->name; o++) {
        void *at = (char *)block + o->offset;
        if (o->kind == OPTION_INTEGER) { int64_t x = (int64_t)o->fallback; memcpy(at, &x, sizeof x); }
        if (o->kind == OPTION_NUMBER) memcpy(at, &o->fallback, sizeof o->fallback);
        if (o->kind == OPTION_AXES) {
            attention_axes axes = {0};
            for (int a = 0; a < ATTENTION_MAX_AXES; a++) axes.value[a] = (int64_t)o->fallback;
            memcpy(at, &axes, sizeof axes);
        }
    }
    /* the grid before the per-axis options, which are checked against its axes */
    int grid_axes = 0;
    const char *grid_name = "grid";
    for (int i = 0; i < n; i++) {
        const attention_option *o = find_option(var, opts->options[i].name);
        if (o->kind != OPTION_GRID) continue;
        if (!read_value(o, &opts->options[i].value, 0, o->name, block)) return false;
        grid_axes = opts->options[i].value.count;
        grid_name = o->name;
    }
    for (int i = 0; i < n; i++) {
        const attention_option *o = find_option(var, opts->options[i].name);
        if (o->kind != OPTION_GRID && !read_value(o, &opts->options[i].value, grid_axes, grid_name, block)) return false;
    }
    for (const attention_option *o = var->options; o && o->name; o++) {
        if (!o->required) continue;
        bool given = false;
        for (int i = 0; i < n && !given; i++) given = strcmp(opts->options[i].name, o->name) == 0;
        if (!given) {
            char expects[160];
            attention_option_expects(o, expects, sizeof expects);
            al_error("attention: variant '%s' needs opts.%s: %s (%s)", var->name, o->name, expects, o->summary);
            return false;
        }
    }
    return true;
}
