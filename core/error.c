/* error.c -- the error status of the C API: one message per thread, set by the failing function,
 * read by the caller (the Lua layer turns it into a Lua error).  Nothing here aborts. */
#include "internal.h"
#include <string.h>

static _Thread_local char last_error[1024];
static _Thread_local int64_t errors_raised;   /* lets a caller see that something it called failed */

int64_t al_error_count(void) { return errors_raised; }

void al_error(const char *fmt, ...) {
    errors_raised++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

const char *al_last_error(void) { return last_error[0] ? last_error : "unknown error"; }
void al_clear_error(void) { last_error[0] = 0; }
const char *al_version(void) { return AL_VERSION_STRING; }

/* Shapes are formatted into a small ring of buffers so that one message can name several. */
const char *al_shape_str(int ndim, const int64_t *shape) {
    static _Thread_local char ring[4][160];
    static _Thread_local int next;
    char *buf = ring[next++ & 3];
    size_t used = 0;
    used += (size_t)snprintf(buf, 160, "{");
    for (int i = 0; i < ndim && used < 150; i++)
        used += (size_t)snprintf(buf + used, 160 - used, i ? ",%lld" : "%lld", (long long)shape[i]);
    snprintf(buf + used, 160 - used, "}");
    return buf;
}

char *al_shape_string(const al_tensor *t, char *buf, size_t bufsize) {
    if (!buf || bufsize == 0) return buf;
    if (!t) { snprintf(buf, bufsize, "nil"); return buf; }
    snprintf(buf, bufsize, "%s", TSHAPE(t));
    return buf;
}
