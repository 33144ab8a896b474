/* profile.c -- the op profiler behind lab.profile: per op name, how often each node's backward
 * ran, how long it took and how many floating-point operations its products did.
 *
 * The forward half lives in Lua (lua/attnlab/profile.lua), which times each call into the core at
 * the FFI boundary; a backward runs inside one al_backward call, so its nodes are timed here.  The
 * names are the nodes' own (static strings), so the table is a short list searched by pointer: a
 * transformer step has a dozen distinct ops. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

int al_profiling = 0;
double al_profile_flops = 0;

typedef struct {
    const char *name;
    int64_t calls;
    double seconds, flops;
} profile_entry;

static profile_entry *entries;
static int n_entries, cap_entries;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void al_profile_enable(int on) { al_profiling = on != 0; }

double al_profile_take_flops(void) {
    double f = al_profile_flops;
    al_profile_flops = 0;
    return f;
}

void al_profile_reset(void) {
    n_entries = 0;
    al_profile_flops = 0;
}

static profile_entry *entry_for(const char *name) {
    for (int i = 0; i < n_entries; i++)
        if (entries[i].name == name || strcmp(entries[i].name, name) == 0) return &entries[i];
    if (n_entries == cap_entries) {
        int cap = cap_entries ? 2 * cap_entries : 32;
        profile_entry *grown = realloc(entries, sizeof *grown * (size_t)cap);
        if (!grown) return NULL;   /* the timing is lost, the backward is not */
        entries = grown;
        cap_entries = cap;
    }
    entries[n_entries] = (profile_entry){.name = name};
    return &entries[n_entries++];
}

void al_profile_backward(al_node *node) {
    if (!al_profiling) { node->backward(node, node->grad_accum); return; }
    const double flops_before = al_profile_take_flops(), t0 = now_seconds();
    node->backward(node, node->grad_accum);
    const double seconds = now_seconds() - t0, flops = al_profile_take_flops();
    al_profile_flops = flops_before;   /* a forward op's count is not the backward's */
    profile_entry *e = entry_for(node->name);
    if (e) { e->calls++; e->seconds += seconds; e->flops += flops; }
}

int al_profile_backward_count(void) { return n_entries; }

int al_profile_backward_entry(int i, const char **name, int64_t *calls, double *seconds, double *flops) {
    if (i < 0 || i >= n_entries) { al_error("profile: no backward entry %d (there are %d)", i, n_entries); return -1; }
    *name = entries[i].name;
    *calls = entries[i].calls;
    *seconds = entries[i].seconds;
    *flops = entries[i].flops;
    return 0;
}
