/* viewer.h -- the attnlab viewer's shared types: the canvas it draws into, the run it reads, the
 * view state.  The viewer knows the run directory's files (docs/run-directory.md), read by the core's
 * readers, never Lua or the tape.
 *
 *   canvas.c   pixels, rectangles, lines, colour maps, legends
 *   font.c     text (stb_truetype with DejaVu Sans; stb_easy_font when no TTF is found)
 *   run.c      a run directory: the record index, curves and events from metrics.jsonl, followed
 *              as they grow, and which heads the script scaled when
 *   sweep.c    a sweep directory: its points' run directories and labels, from sweep.json
 *   compare.c  the runs whose curves are drawn together (--compare), their colours
 *   views_attention.c   the layers x heads grid, one map large, the head view
 *   views_plots.c       weight matrices, curves, images
 *   frame.c    one frame: the top bar, the layout's views, the step bar, the help; where it put them
 *   input.c    keys and clicks: steps, layouts, heads, PNG and CSV, commands to the script
 *   events.c   scripted input for the tests (--events FILE)
 *   viewer.c   the program: the command line, the window loop, --screenshot
 * The arrows go one way: viewer.c calls frame.c, input.c and events.c; input.c and events.c call
 * frame.c; frame.c calls the views, which call canvas.c, font.c and run.c; viewer.c opens the
 * compared runs through compare.c, which calls sweep.c and run.c. */
#ifndef ATTNLAB_VIEWER_H
#define ATTNLAB_VIEWER_H

#include "attnlab.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

/* ---- canvas (canvas.c) -------------------------------------------------------------------- */
typedef struct { int x, y, w, h; } viewer_rect;
typedef struct {
    int w, h;
    uint32_t *px;       /* 0xAARRGGBB, row-major, w*h */
    viewer_rect clip;   /* drawing outside it is dropped */
} viewer_canvas;

enum { VIEWER_BG = 0xFF16181D, VIEWER_PANEL = 0xFF20232A, VIEWER_FG = 0xFFE6E6E6,
       VIEWER_DIM = 0xFF8A8F98, VIEWER_ACCENT = 0xFFFFB020, VIEWER_GRID = 0xFF343842,
       VIEWER_MASKED = 0xFF2A2D33, VIEWER_BAD = 0xFFFF5555, VIEWER_FAILURE = 0xFF7A1F1F };

bool viewer_canvas_resize(viewer_canvas *c, int w, int h);
void viewer_canvas_free(viewer_canvas *c);
void viewer_clip(viewer_canvas *c, viewer_rect r);   /* intersected with the canvas */
void viewer_unclip(viewer_canvas *c);
void viewer_fill(viewer_canvas *c, viewer_rect r, uint32_t argb);
void viewer_blend(viewer_canvas *c, int x, int y, uint32_t rgb, float alpha);
void viewer_outline(viewer_canvas *c, viewer_rect r, int thickness, uint32_t argb);
void viewer_line(viewer_canvas *c, float x0, float y0, float x1, float y1, uint32_t rgb, float alpha, int thickness);
void viewer_dashed_hline(viewer_canvas *c, int x0, int x1, int y, uint32_t argb, int dash);
void viewer_disc(viewer_canvas *c, float cx, float cy, float r, uint32_t rgb, float alpha);
bool viewer_inside(viewer_rect r, int x, int y);
uint32_t viewer_sequential(float t);          /* t in [0, 1] -> a viridis-like colour */
uint32_t viewer_diverging(float t);           /* t in [-1, 1] -> blue, white, red */
uint32_t viewer_head_colour(int head);        /* one hue per head (1-based) */
/* Draws a w x h grid of values (row-major, stride = w) stretched into r, nearest sample.
 * diverging: values / range in [-1, 1]; else (v - lo) / (hi - lo) sequential. */
void viewer_heatmap(viewer_canvas *c, viewer_rect r, const float *v, int rows, int cols, float lo, float hi,
                    bool diverging, bool grey_causal);
int viewer_write_png(const viewer_canvas *c, const char *path, char *err, size_t errsize);

/* ---- text (font.c) ------------------------------------------------------------------------ */
enum { VIEWER_FONT_SMALL, VIEWER_FONT_NORMAL, VIEWER_FONT_LARGE, VIEWER_FONT_SIZES };
bool viewer_font_init(float scale, const char *ttf_path);  /* false: the bitmap fallback is used */
void viewer_font_free(void);
const char *viewer_font_name(void);
int viewer_text(viewer_canvas *c, int size, int x, int y, uint32_t rgb, const char *utf8); /* y = top; returns width */
int viewer_text_width(int size, const char *utf8);
int viewer_text_height(int size);
/* Text rotated 90 degrees counter-clockwise (for column labels), reading bottom to top from (x, y). */
void viewer_text_vertical(viewer_canvas *c, int size, int x, int y, uint32_t rgb, const char *utf8);

/* ---- a run (run.c) ------------------------------------------------------------------------ */
typedef struct {
    int64_t step, payload_offset, payload_bytes;
    int shape[4];
    int ndim, dtype;
} viewer_entry;

typedef struct {            /* the records of one (kind, name, layer, head), in step order */
    int kind, layer, head;
    char name[256];
    viewer_entry *entries;
    int n, cap;
    int cached;             /* index of the entry in cache, -1 none */
    int entropy_entry;      /* the entry whose mean row entropy is in `entropy` (+1; 0 none) */
    double entropy;
    void *cache;
    size_t cache_bytes;
} viewer_series;

typedef struct { int64_t *steps; double *values; int n, cap; char name[128]; } viewer_curve;
/* an event of metrics.jsonl: what the viewer acts on is its kind and fields; text is for people */
typedef struct {
    int64_t step;
    al_event_kind kind;
    int layer, head;        /* ablate, scale, restore: the head, 1-based ... */
    float scale;            /* ... and its output scale from this step on */
    char name[32];          /* the "event" field as written */
    char text[120];
} viewer_event;

typedef struct {
    char dir[4096];
    al_runlog_reader *reader;
    viewer_series *series;
    int n_series, cap_series;
    int64_t *snapshots;     /* distinct steps of attention/matrix/image records, ascending */
    int n_snapshots, cap_snapshots;
    viewer_curve *curves;
    int n_curves, cap_curves;
    viewer_event *events;
    int n_events, cap_events;
    al_jsonl_reader *metrics;   /* metrics.jsonl, followed */
    int64_t latest_step;    /* the newest step seen anywhere */
    int malformed_lines;
    bool finished;          /* the script called run:finish (final.safetensors exists) */
    /* status.json (lua/attnlab/run.lua): "running", "finished", "interrupted" or "failed" ("" when
     * absent), the step it names (-1 none) and, for a failed run, the error the script raised,
     * shown across the window */
    char status[16];
    int64_t status_step;
    char failure[600];
    int64_t status_stamp;   /* status.json's mtime and size when last read, so that it is read on change */
    char error[600];        /* a garbled record stream: reading stopped, shown in the status bar */
    char name[256];         /* the experiment's name from config.json, else the folder's */
} viewer_run;

/* Opens a run directory; false with a one-line message in err when it is not one. */
bool viewer_run_open(viewer_run *run, const char *dir, char *err, size_t errsize);
void viewer_run_close(viewer_run *run);
/* Reads what was appended since the last call; true when anything new arrived. */
bool viewer_run_poll(viewer_run *run);
/* The entry of s at or before step (the latest when step < 0); -1 when none. */
int viewer_series_at(const viewer_series *s, int64_t step);
/* Its payload (float32 values or text bytes), cached per series; NULL with run->error on failure. */
const void *viewer_series_load(viewer_run *run, viewer_series *s, int entry);
viewer_series *viewer_run_find(viewer_run *run, int kind, const char *name, int layer, int head);
viewer_curve *viewer_run_curve(viewer_run *run, const char *name);

/* ---- a sweep directory (sweep.c) ----------------------------------------------------------- */
typedef struct {
    int index;              /* 1-based, as sweep.json numbers it */
    char dir[4400];         /* its run directory: the sweep directory / the point's "dir" */
    char label[200];        /* the settings of the axes that vary, "lr=0.01 seed=2" */
    char status[16];        /* as sweep.json last recorded it: pending, finished, failed ... */
} viewer_sweep_point;
typedef struct {
    char dir[4096], experiment[128];
    viewer_sweep_point *points;
    int n_points;
} viewer_sweep;
bool viewer_is_sweep_dir(const char *dir);   /* it holds sweep.json */
/* Reads DIR/sweep.json; false with a one-line message naming the file when it is not a manifest. */
bool viewer_sweep_read(viewer_sweep *sweep, const char *dir, char *err, size_t errsize);
void viewer_sweep_free(viewer_sweep *sweep);

/* ---- the runs drawn together (compare.c) ------------------------------------------------------ */
enum { VIEWER_MAX_COMPARED = 64 };
typedef struct {            /* one slot: a run directory, or a sweep's point */
    viewer_run *run;        /* NULL: not drawn (a point with no run directory yet, or a broken one) */
    char dir[4400];
    char label[256];        /* the legend's name for it: a point's settings, else the run's name */
    char sweep_status[16];  /* a sweep point: its status in sweep.json; "" otherwise */
    char state[48];         /* not drawn: "pending (no run directory)", "unreadable" ... */
    char why[260];          /* not drawn: the state, or the reader's message */
    bool from_sweep;
} viewer_compared;

/* ---- the view state (set up in viewer.c) -------------------------------------------------- */
typedef enum { LAYOUT_OVERVIEW, LAYOUT_GRID, LAYOUT_MAP, LAYOUT_HEADS, LAYOUT_MATRICES, LAYOUT_CURVES,
               LAYOUT_IMAGES, LAYOUT_NEURON, LAYOUT_COUNT } viewer_layout;

enum { VIEWER_MAX_ROWS = 32, VIEWER_MAX_HEADS = 32, VIEWER_MAX_PLOTS = 4 };

typedef struct {            /* a curve plot as drawn: its frame and the data range it shows */
    char name[128];
    viewer_rect p;
    int64_t x0, x1;
    double lo, hi;          /* the y axis (log10 of the values with --log-y) */
} viewer_plot;

/* run.c: every head's output scale as of step, replayed from the run's head events' fields */
void viewer_run_head_scales(const viewer_run *run, int64_t step, float scale[VIEWER_MAX_ROWS + 1][VIEWER_MAX_HEADS + 1]);

typedef struct {            /* a row of the attention grid: one (name, layer) */
    char name[256];
    int layer;
    viewer_series *heads[VIEWER_MAX_HEADS + 1];   /* 1-based */
    int n_heads;
} viewer_attention_row;

typedef struct {
    viewer_run run;
    /* --compare: every run whose curves are drawn, in legend (and colour) order; slot own_slot is
     * this run (compared[own_slot].run == &run).  n_compared is 0 without --compare. */
    viewer_compared *compared;
    int n_compared, own_slot;
    double compare_retried;     /* when the points not drawn were last looked at again */
    viewer_canvas canvas;
    float scale;            /* UI scale (HiDPI) */
    viewer_layout layout;
    int64_t step;           /* the step shown; < 0 follows the newest */
    int64_t diff_base;      /* difference mode: the step subtracted; < 0 off */
    int row, head;          /* focused attention row (0-based) and head (1-based) */
    bool head_hidden[VIEWER_MAX_HEADS + 1];
    int hover_x, hover_y;   /* mouse, canvas pixels */
    int focus_token;        /* head view: query token under the mouse, -1 none */
    bool log_y;
    bool fixed_range;       /* attention colours over [0, 1] rather than [0, the map's largest] */
    float smoothing;        /* EMA weight, 0 .. 0.99 */
    bool help;
    /* each head's output scale as the script reported applying it (its events) up to the shown
     * step, by layer and head; render() recomputes it */
    float head_scale[VIEWER_MAX_ROWS + 1][VIEWER_MAX_HEADS + 1];
    char status[300];       /* the last message (a saved PNG, a sent command) */
    viewer_attention_row rows[VIEWER_MAX_ROWS];
    int n_rows;
    /* where things were drawn in the last frame, for the mouse */
    viewer_rect grid_cells[VIEWER_MAX_ROWS][VIEWER_MAX_HEADS + 1];
    viewer_rect image_rect;  /* the first image drawn, and its zoom (canvas pixels per image pixel) */
    float image_zoom;
    viewer_rect map_rect, legend_rect, slider_rect, tabs[LAYOUT_COUNT], head_boxes[VIEWER_MAX_HEADS + 1];
    viewer_rect failure_rect;        /* the failed run's banner (0 wide when the run did not fail) */
    viewer_rect runs_legend;         /* the compared runs' legend above the curves (0 wide: none) */
    viewer_plot plots[VIEWER_MAX_PLOTS];   /* each curve plot of the last frame */
    int n_plots;
    int map_rows, map_cols;
    float head_token_y[2][512]; int head_tokens[2]; float head_col_x[2];
    viewer_rect head_view_rect;
    int neuron_query;               /* the neuron view's query (0-based) */
    viewer_rect neuron_queries;     /* where its query list was drawn, one row per query */
    int neuron_query_rows, neuron_row_h;
    int neuron_x, neuron_y, neuron_cell, neuron_dim;   /* its table: origin, cell size, d */
} viewer_state;

/* compare.c: opens the --compare arguments (run or sweep directories) and RUN_DIR (NULL: the first
 * point that did not fail becomes this run) into v; false with a message naming --compare */
bool viewer_compare_open(viewer_state *v, const char *run_dir, const char *const *dirs, int n_dirs, char *err, size_t errsize);
bool viewer_compare_poll(viewer_state *v);          /* true when a compared run changed or appeared */
void viewer_compare_close(viewer_state *v);
uint32_t viewer_compare_colour(int slot);
/* "2 of 6 sweep points not drawn: 1 pending (no run directory), ..." into note; the count (0: none) */
int viewer_compare_not_drawn(const viewer_state *v, char *note, size_t size);

/* views_attention.c */
void viewer_collect_rows(viewer_state *v);
void viewer_draw_grid(viewer_state *v, viewer_rect r);
void viewer_draw_map(viewer_state *v, viewer_rect r);
void viewer_draw_heads(viewer_state *v, viewer_rect r);
void viewer_draw_neuron(viewer_state *v, viewer_rect r);
/* views_plots.c */
void viewer_draw_matrices(viewer_state *v, viewer_rect r);
void viewer_draw_curves(viewer_state *v, viewer_rect r);
void viewer_draw_images(viewer_state *v, viewer_rect r);
/* shared by the views: a panel title, an empty-panel note, a colour legend, the shown step */
void viewer_panel(viewer_state *v, viewer_rect r, const char *title, viewer_rect *inner);
void viewer_note(viewer_state *v, viewer_rect r, const char *text);
void viewer_legend(viewer_state *v, viewer_rect r, float lo, float hi, bool diverging);
int64_t viewer_shown_step(const viewer_state *v);
int viewer_px(const viewer_state *v, float logical);   /* logical pixels -> canvas pixels */
/* the values of series s at the shown step (in difference mode: minus those at the base step);
 * NULL when it has none.  buf must hold rows*cols floats. */
const float *viewer_values(viewer_state *v, viewer_series *s, int *rows, int *cols, float *buf, int bufcount);

/* frame.c: a whole frame into v->canvas, and where its parts went (for tests) */
void viewer_render(viewer_state *v);
void viewer_print_layout(const viewer_state *v);
extern const char *const viewer_layout_names[LAYOUT_COUNT];   /* "overview", "grid", ... */
extern const char *const viewer_layout_keys[LAYOUT_COUNT];    /* the key that picks each: "0" .. "7" */
/* what the script last said it is doing ("paused", "running"), NULL before it said anything */
const char *viewer_script_state(const viewer_state *v);
int viewer_snapshot_index(const viewer_state *v);   /* the snapshot shown, -1 none */

/* input.c: one key (an SDL_Keycode and its modifiers; false: quit), click or mouse move */
bool viewer_handle_key(viewer_state *v, int key, unsigned mod);
void viewer_handle_click(viewer_state *v, int x, int y, int clicks);
void viewer_handle_motion(viewer_state *v, int x, int y, bool dragging);

/* viewer.c */
double viewer_now(void);   /* monotonic seconds */

/* events.c */
typedef struct {
    FILE *f;
    double wait_until, deadline;
    long wait_step;
    char wait_event[120];
    int line;
} viewer_event_script;
/* Runs script lines until one has to wait (now: viewer_now()): 0 to go on, 1 when done (quit), -1 on a
 * failure (said on stderr). */
int viewer_run_event_script(viewer_state *v, viewer_event_script *s, double now);

#endif
