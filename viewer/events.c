/* events.c -- scripted input for tests (`attnlab-view RUN_DIR --events FILE`): the lines of a file
 * become SDL events pushed with SDL_PushEvent into the viewer's own event loop, so a test drives
 * exactly the code a user's keys and clicks drive, and can wait for the running script's answer.
 * The window loop (viewer.c) calls it between frames; it draws through frame.c for screenshot and
 * print_layout, and calls nothing in viewer.c (the loop hands it the time).
 *
 * One command a line (# starts a comment):
 *   key NAME             a key press and release (SDL key names: space, a, Left, 2, ? ...)
 *   click X Y            move there, press and release the left button (canvas pixels)
 *   dclick X Y           the same twice, the second as a double click
 *   move X Y             move the mouse
 *   wait MS              let the loop run (follow the run, redraw) for MS milliseconds
 *   wait_step N [S]      until the run's newest step is >= N (fail after S seconds, default 60)
 *   wait_event NAME [S]  until the script logged an event of that name (its "event" field)
 *   screenshot FILE      write the current frame
 *   print_layout         print where the frame's maps, thumbnails and step bar are (stdout)
 *   quit */
#include "viewer.h"
#include <SDL.h>
#include <stdio.h>
#include <string.h>

static void push_key(SDL_Keycode key) {
    SDL_Event e = {0};
    e.type = SDL_KEYDOWN;
    e.key.keysym.sym = key;
    e.key.state = SDL_PRESSED;
    SDL_PushEvent(&e);
    e.type = SDL_KEYUP;
    e.key.state = SDL_RELEASED;
    SDL_PushEvent(&e);
}

static void push_mouse(Uint32 type, int x, int y, int clicks) {
    SDL_Event e = {0};
    e.type = type;
    if (type == SDL_MOUSEMOTION) { e.motion.x = x; e.motion.y = y; }
    else { e.button.x = x; e.button.y = y; e.button.button = SDL_BUTTON_LEFT; e.button.clicks = (Uint8)clicks; }
    SDL_PushEvent(&e);
}

static void push_click(int x, int y, int clicks) {
    push_mouse(SDL_MOUSEMOTION, x, y, 0);
    push_mouse(SDL_MOUSEBUTTONDOWN, x, y, clicks);
    push_mouse(SDL_MOUSEBUTTONUP, x, y, clicks);
}

static bool event_has(const viewer_run *run, const char *name) {
    for (int i = 0; i < run->n_events; i++) if (!strcmp(run->events[i].name, name)) return true;
    return false;
}

/* Runs script lines until one has to wait (t: the loop's clock, viewer_now); returns 0 to go on, 1
 * when done (quit), -1 on failure. */
int viewer_run_event_script(viewer_state *v, viewer_event_script *s, double t) {
    if (s->wait_until > t) return 0;
    if (s->wait_step >= 0 || s->wait_event[0]) {
        bool done = s->wait_step >= 0 ? v->run.latest_step >= s->wait_step : event_has(&v->run, s->wait_event);
        if (!done && t > s->deadline) {
            fprintf(stderr, "attnlab view: --events line %d: timed out waiting\n", s->line);
            return -1;
        }
        if (!done) return 0;
        s->wait_step = -1;
        s->wait_event[0] = 0;
    }
    char line[512];
    while (fgets(line, sizeof line, s->f)) {
        s->line++;
        char cmd[32] = "", arg[400] = "";
        double secs = 60;
        int x = 0, y = 0;
        if (sscanf(line, "%31s", cmd) != 1 || cmd[0] == '#') continue;
        if (!strcmp(cmd, "key") && sscanf(line, "%*s %399s", arg) == 1) {
            SDL_Keycode k = SDL_GetKeyFromName(arg);
            if (k == SDLK_UNKNOWN) { fprintf(stderr, "attnlab view: --events line %d: unknown key '%s'\n", s->line, arg); return -1; }
            push_key(k);
            return 0;   /* handled before the next line */
        } else if (!strcmp(cmd, "click") && sscanf(line, "%*s %d %d", &x, &y) == 2) {
            push_click(x, y, 1);
            return 0;
        } else if (!strcmp(cmd, "dclick") && sscanf(line, "%*s %d %d", &x, &y) == 2) {
            push_click(x, y, 1);
            push_click(x, y, 2);
            return 0;
        } else if (!strcmp(cmd, "move") && sscanf(line, "%*s %d %d", &x, &y) == 2) {
            push_mouse(SDL_MOUSEMOTION, x, y, 0);
            return 0;
        } else if (!strcmp(cmd, "wait") && sscanf(line, "%*s %d", &x) == 1) {
            s->wait_until = t + x / 1000.0;
            return 0;
        } else if (!strcmp(cmd, "wait_step") && sscanf(line, "%*s %d %lf", &x, &secs) >= 1) {
            s->wait_step = x;
            s->deadline = t + secs;
            return 0;
        } else if (!strcmp(cmd, "wait_event") && sscanf(line, "%*s %119s %lf", s->wait_event, &secs) >= 1) {
            s->deadline = t + secs;
            return 0;
        } else if (!strcmp(cmd, "screenshot") && sscanf(line, "%*s %399s", arg) == 1) {
            char err[300];
            viewer_render(v);
            if (viewer_write_png(&v->canvas, arg, err, sizeof err) != 0) { fprintf(stderr, "attnlab view: %s\n", err); return -1; }
        } else if (!strcmp(cmd, "print_layout")) {
            viewer_render(v);
            viewer_print_layout(v);
        } else if (!strcmp(cmd, "quit")) {
            return 1;
        } else {
            fprintf(stderr, "attnlab view: --events line %d: cannot read '%s'\n", s->line, strtok(line, "\n"));
            return -1;
        }
    }
    return 1;
}
