/* check.h -- the C unit tests' few macros.  Each test file is one program; it prints one line per
 * failed check and ends with "N passed, N failed, 0 skipped; N compare numbers" (the line
 * tests/run_all.sh reads; "compare numbers" counts the passed CHECK_NEARs), exiting 1 on any failure. */
#ifndef ATTNLAB_CHECK_H
#define ATTNLAB_CHECK_H
#include "attnlab.h"
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_passed, check_failed, check_numeric;   /* numeric: passed CHECK_NEARs */

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (cond) check_passed++;                                                            \
        else { check_failed++; fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); } \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                \
    do {                                                                                     \
        double check_a_ = (a), check_b_ = (b);                                               \
        if (fabs(check_a_ - check_b_) <= (tol)) { check_passed++; check_numeric++; }         \
        else { check_failed++; fprintf(stderr, "%s:%d: %s = %.9g, expected %s = %.9g (tol %g)\n", \
                                       __FILE__, __LINE__, #a, check_a_, #b, check_b_, (double)(tol)); } \
    } while (0)

/* An op that must fail with a message containing `needle`. */
#define CHECK_FAILS(expr, needle)                                                            \
    do {                                                                                     \
        al_clear_error();                                                                    \
        al_tensor *check_t_ = (expr);                                                        \
        if (!check_t_ && strstr(al_last_error(), needle)) check_passed++;                    \
        else { check_failed++; fprintf(stderr, "%s:%d: %s should fail with '%s', got %s '%s'\n", \
                                       __FILE__, __LINE__, #expr, needle, check_t_ ? "a tensor and" : "", \
                                       al_last_error()); al_release(check_t_); }             \
    } while (0)

/* A fresh folder for a test's files, $TMPDIR/attnlab_<name>.XXXXXX, into dir (n bytes). */
static inline bool check_make_tmpdir(char *dir, size_t n, const char *name) {
    snprintf(dir, n, "%s/attnlab_%s.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", name);
    if (mkdtemp(dir)) return true;
    perror("mkdtemp");
    return false;
}

/* Removes that folder and what it holds (files, and empty folders in it). */
static inline void check_remove_tmpdir(const char *dir) {
    DIR *d = opendir(dir);
    char p[4400];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static int check_report(const char *name) {
    printf("%s: %d passed, %d failed, 0 skipped; %d compare numbers\n", name, check_passed, check_failed, check_numeric);
    return check_failed ? 1 : 0;
}
#endif
