/* atomic_file.h -- a file written in pieces and put in place only when complete (atomic_file.c):
 *   al_atomic_file af;
 *   if (al_atomic_open(&af, "save", path) < 0 || al_atomic_write(&af, data, n) < 0) return -1;
 *   return al_atomic_commit(&af);
 * Each call returns 0, or -1 with the error set (naming fn, the path and errno's text) and the
 * temporary file removed; al_atomic_fail does that for a failure of the caller's own, and
 * al_atomic_abort removes the file for a failure whose error is set already. */
#ifndef ATTNLAB_ATOMIC_FILE_H
#define ATTNLAB_ATOMIC_FILE_H
#include <stddef.h>

typedef struct { const char *fn, *path; char *tmp; int fd; } al_atomic_file;

int al_atomic_open(al_atomic_file *af, const char *fn, const char *path);
int al_atomic_write(al_atomic_file *af, const void *data, size_t n);
int al_atomic_commit(al_atomic_file *af);
int al_atomic_fail(al_atomic_file *af, const char *what);
int al_atomic_abort(al_atomic_file *af);

#endif
