/* interrupt.c -- Ctrl-C (and SIGTERM) as a polite request.
 *
 * A long training loop should stop at a step boundary and write a checkpoint, not die in the
 * middle of an update.  So while interrupts are caught, SIGINT and SIGTERM only raise a flag; the Lua
 * run loop polls al_interrupted() once per step and does the orderly shutdown itself.  SIGTERM is
 * what Slurm (scancel, the time limit) and `kill` send before SIGKILL, so a run on a cluster keeps
 * the steps since its last periodic checkpoint too.  Nothing here calls
 * into Lua: the handler touches one sig_atomic_t and, at most, async-signal-safe syscalls.
 *
 * A second Ctrl-C while the first is still pending means "stop now": the handler restores the
 * default action and re-raises, so the process dies the usual way (status 130 in a shell) even if
 * the orderly path is stuck (say, in a step that takes minutes).
 */
#include "attnlab.h"
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t interrupted_flag;   /* 0, or the signal that asked */
static const int caught_signals[] = {SIGINT, SIGTERM};
enum { N_CAUGHT = sizeof caught_signals / sizeof caught_signals[0] };
static struct sigaction previous_action[N_CAUGHT];
static int catching;

static void on_signal(int sig) {
    if (interrupted_flag) {
        /* Second press: give the signal its default meaning and deliver it again.  It stays blocked
         * until this handler returns (no SA_NODEFER), then terminates the process. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        raise(sig);
        return;
    }
    interrupted_flag = sig;
}

/* on = 1: catch SIGINT and SIGTERM from now on (and forget an earlier, already handled interrupt);
 * on = 0: give back whatever actions were installed before (the defaults, usually). */
void al_catch_interrupts(int on) {
    if (on) {
        interrupted_flag = 0;
        if (catching) return;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART; /* a blocking read or write resumes; the loop polls the flag */
        for (int i = 0; i < N_CAUGHT; i++) sigaction(caught_signals[i], &sa, &previous_action[i]);
        catching = 1;
    } else if (catching) {
        for (int i = 0; i < N_CAUGHT; i++) sigaction(caught_signals[i], &previous_action[i], NULL);
        catching = 0;
    }
}

/* The signal number (SIGINT or SIGTERM) once one arrived while caught, else 0; it stays until the
 * next al_catch_interrupts(1). */
int al_interrupted(void) { return interrupted_flag; }
