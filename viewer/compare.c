/* compare.c -- the runs whose curves are drawn together (--compare): every --compare argument is a
 * run directory or a sweep directory, whose points (sweep.c) each become one run, labelled by its
 * settings.  The list keeps the order of the arguments and of the sweep's points; a run's slot in
 * it is its colour and its place in the legend (views_plots.c).  One run of the list is the
 * viewer's own (v->run: its maps, matrices, images and events are the ones shown): RUN_DIR when it
 * was given (its own slot first, or the slot of the sweep point it is), else the first point
 * that did not fail.
 *
 * Nothing is dropped silently: a sweep point without a run directory yet (pending, queued, killed
 * before it wrote anything) keeps its slot, marked not drawn with the status sweep.json recorded,
 * and is looked at again while the viewer runs, so a point that starts later appears; a run
 * directory named on the command line that cannot be opened is an error naming --compare and the
 * path. */
#define _GNU_SOURCE
#include "viewer.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Twelve colours that stay apart on the dark panel; slot 0 and 1 are the two of the first
 * --compare (this run blue, the other orange).  After twelve they repeat. */
static const uint32_t palette[] = {0x4FC3F7, 0xFFB74D, 0x81C784, 0xBA68C8, 0xF06292, 0x4DB6AC,
                                   0xDCE775, 0x9575CD, 0xA1887F, 0x90A4AE, 0xFFF176, 0x7986CB};
enum { PALETTE = sizeof palette / sizeof palette[0] };

uint32_t viewer_compare_colour(int slot) { return palette[(slot < 0 ? 0 : slot) % PALETTE]; }

static bool same_dir(const char *a, const char *b);

/* a new slot; a directory that already has one (a run directory that is also a sweep's point,
 * named twice) is drawn once, under its first label */
static bool add(viewer_state *v, const char *dir, const char *label, const char *sweep_status, bool from_sweep, char *err,
                size_t errsize) {
    for (int i = 0; i < v->n_compared; i++) if (same_dir(dir, v->compared[i].dir)) return true;
    if (v->n_compared == VIEWER_MAX_COMPARED) {
        snprintf(err, errsize, "--compare: more than %d runs to draw (a sweep's points count one each)", VIEWER_MAX_COMPARED);
        return false;
    }
    viewer_compared *c = &v->compared[v->n_compared++];
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(c->label, sizeof c->label, "%s", label);
    snprintf(c->sweep_status, sizeof c->sweep_status, "%s", sweep_status);
    c->from_sweep = from_sweep;
    return true;
}

/* the folder's last name ("runs/x/sweep-1/" -> "sweep-1") */
static const char *folder_name(const char *dir, char *buf, size_t size) {
    snprintf(buf, size, "%s", dir);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    const char *slash = strrchr(buf, '/');
    return slash && slash[1] ? slash + 1 : buf;
}

/* the argument dirs[i] becomes its slots: a sweep's points, or one run directory */
static bool add_argument(viewer_state *v, const char *dir, int n_sweeps, char *err, size_t errsize) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errsize, "--compare: '%s' is not a directory (expected a run directory or a sweep directory)", dir);
        return false;
    }
    if (!viewer_is_sweep_dir(dir)) return add(v, dir, "", "", false, err, errsize);
    viewer_sweep sweep;
    char why[700];
    if (!viewer_sweep_read(&sweep, dir, why, sizeof why)) {
        snprintf(err, errsize, "--compare: %s", why);
        return false;
    }
    if (sweep.n_points == 0) {
        snprintf(err, errsize, "--compare: the sweep '%s' has no points", dir);
        viewer_sweep_free(&sweep);
        return false;
    }
    bool ok = true;
    char buf[4096], label[256];
    for (int i = 0; i < sweep.n_points && ok; i++) {
        /* two sweeps may share settings: then each label says its sweep */
        if (n_sweeps > 1) snprintf(label, sizeof label, "%.60s: %.190s", folder_name(dir, buf, sizeof buf), sweep.points[i].label);
        else snprintf(label, sizeof label, "%s", sweep.points[i].label);
        ok = add(v, sweep.points[i].dir, label, sweep.points[i].status, true, err, errsize);
    }
    viewer_sweep_free(&sweep);
    return ok;
}

/* Opens slot c's run (a heap copy); for a sweep point a failure is why it is not drawn, for a run
 * directory named on the command line it is an error. */
static bool open_slot(viewer_compared *c, char *err, size_t errsize) {
    viewer_run *run = calloc(1, sizeof *run);
    char why[700];
    if (!run) { snprintf(err, errsize, "out of memory"); return false; }
    if (viewer_run_open(run, c->dir, why, sizeof why)) {
        c->run = run;
        c->why[0] = 0;
        if (!c->label[0]) snprintf(c->label, sizeof c->label, "%s", run->name);
        return true;
    }
    free(run);
    if (!c->from_sweep) {
        if (strstr(why, "is not an attnlab run directory"))
            snprintf(err, errsize, "--compare: '%s' is neither a run directory (no records.bin, metrics.jsonl or config.json) "
                                   "nor a sweep directory (no sweep.json)", c->dir);
        else
            snprintf(err, errsize, "--compare: %s", why);
        return false;
    }
    /* what the legend and the summary say of it: the status sweep.json recorded when the point
     * has no run directory (yet), "unreadable" and the reader's message when it has a broken one */
    struct stat st;
    const bool missing = stat(c->dir, &st) != 0, empty = !missing && strstr(why, "is not an attnlab run directory");
    if (missing || empty)
        snprintf(c->state, sizeof c->state, "%.15s (%s)", c->sweep_status, missing ? "no run directory" : "no run files yet");
    else snprintf(c->state, sizeof c->state, "unreadable");
    if (missing || empty) snprintf(c->why, sizeof c->why, "%s", c->state);
    else snprintf(c->why, sizeof c->why, "unreadable: %.220s", why);
    return true;
}

static bool same_dir(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

bool viewer_compare_open(viewer_state *v, const char *run_dir, const char *const *dirs, int n_dirs, char *err, size_t errsize) {
    v->compared = calloc(VIEWER_MAX_COMPARED, sizeof *v->compared);
    if (!v->compared) { snprintf(err, errsize, "out of memory"); return false; }
    int n_sweeps = 0;
    for (int i = 0; i < n_dirs; i++) n_sweeps += viewer_is_sweep_dir(dirs[i]);
    for (int i = 0; i < n_dirs; i++)
        if (!add_argument(v, dirs[i], n_sweeps, err, errsize)) return false;
    /* RUN_DIR: its own slot, unless it is one of the slots already (a sweep's point, named to
     * choose whose maps are shown) */
    int own = -1;
    for (int i = 0; run_dir && i < v->n_compared && own < 0; i++) if (same_dir(run_dir, v->compared[i].dir)) own = i;
    if (run_dir && own < 0) {
        if (v->n_compared == VIEWER_MAX_COMPARED) { snprintf(err, errsize, "--compare: more than %d runs to draw", VIEWER_MAX_COMPARED); return false; }
        memmove(v->compared + 1, v->compared, (size_t)v->n_compared * sizeof *v->compared);
        v->n_compared++;
        memset(&v->compared[0], 0, sizeof v->compared[0]);
        snprintf(v->compared[0].dir, sizeof v->compared[0].dir, "%s", run_dir);
        own = 0;
    }
    if (run_dir) {
        char why[700];
        if (!viewer_run_open(&v->run, run_dir, why, sizeof why)) { snprintf(err, errsize, "%s", why); return false; }
        v->compared[own].run = &v->run;
        if (!v->compared[own].label[0]) snprintf(v->compared[own].label, sizeof v->compared[own].label, "%s", v->run.name);
    }
    for (int i = 0; i < v->n_compared; i++)
        if (i != own && !open_slot(&v->compared[i], err, errsize)) return false;
    if (own < 0) {   /* no RUN_DIR: the first run that did not fail is the viewer's own, else the first */
        for (int i = 0; i < v->n_compared && own < 0; i++)
            if (v->compared[i].run && strcmp(v->compared[i].run->status, "failed")) own = i;
        for (int i = 0; i < v->n_compared && own < 0; i++) if (v->compared[i].run) own = i;
        if (own < 0) {
            char note[400];
            viewer_compare_not_drawn(v, note, sizeof note);
            snprintf(err, errsize, "--compare: nothing to draw: %s", note);
            return false;
        }
        memcpy(&v->run, v->compared[own].run, sizeof v->run);
        free(v->compared[own].run);
        v->compared[own].run = &v->run;
    }
    v->own_slot = own;
    return true;
}

bool viewer_compare_poll(viewer_state *v) {
    bool any = false;
    const double now = viewer_now();
    const bool retry = now - v->compare_retried >= 1.0;
    if (retry) v->compare_retried = now;
    char err[700];
    for (int i = 0; i < v->n_compared; i++) {
        viewer_compared *c = &v->compared[i];
        if (c->run == &v->run) continue;   /* the viewer's own run is polled by its loop */
        if (c->run) any |= viewer_run_poll(c->run);
        else if (retry && c->from_sweep && open_slot(c, err, sizeof err) && c->run) any = true;   /* a point that started since */
    }
    return any;
}

void viewer_compare_close(viewer_state *v) {
    for (int i = 0; v->compared && i < v->n_compared; i++)
        if (v->compared[i].run && v->compared[i].run != &v->run) {
            viewer_run_close(v->compared[i].run);
            free(v->compared[i].run);
        }
    free(v->compared);
    v->compared = NULL;
    v->n_compared = 0;
}

int viewer_compare_not_drawn(const viewer_state *v, char *note, size_t size) {
    int n = 0, points = 0;
    for (int i = 0; i < v->n_compared; i++) { n += v->compared[i].run == NULL; points += v->compared[i].from_sweep; }
    note[0] = 0;
    if (n == 0) return 0;
    /* by state: "2 of 6 sweep points not drawn: 1 pending (no run directory), 1 unreadable" */
    const char *seen[VIEWER_MAX_COMPARED];
    int counts[VIEWER_MAX_COMPARED], kinds = 0;
    for (int i = 0; i < v->n_compared; i++) {
        if (v->compared[i].run) continue;
        const char *s = v->compared[i].state;
        int k = 0;
        while (k < kinds && strcmp(seen[k], s)) k++;
        if (k == kinds) { seen[kinds] = s; counts[kinds++] = 0; }
        counts[k]++;
    }
    size_t len = (size_t)snprintf(note, size, "%d of %d sweep point%s not drawn:", n, points,
                                  points == 1 ? "" : "s");
    for (int k = 0; k < kinds && len < size; k++)
        len += (size_t)snprintf(note + len, size - len, "%s %d %s", k ? "," : "", counts[k], seen[k]);
    return n;
}
