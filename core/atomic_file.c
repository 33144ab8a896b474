/* atomic_file.c -- whole files written so that a crash or a full disk never leaves a half-written
 * one where a good one was: writes go to "<path>.tmp.<pid>" in the same folder, are fsync'd and
 * then renamed over the path (and the folder fsync'd, so that the rename itself lasts).  Every whole
 * file of a run directory is written this way (al_write_file_atomic, lab.write_file_atomic), and
 * so are safetensors checkpoints (safetensors.c). */
#include "internal.h"
#include "atomic_file.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int al_atomic_abort(al_atomic_file *af) {
    if (af->fd >= 0) close(af->fd);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp);
    af->fd = -1;
    af->tmp = NULL;
    return -1;
}

int al_atomic_fail(al_atomic_file *af, const char *what) {
    al_error("%s: cannot %s '%s': %s", af->fn, what, af->path, strerror(errno));
    return al_atomic_abort(af);
}

int al_atomic_open(al_atomic_file *af, const char *fn, const char *path) {
    *af = (al_atomic_file){fn, path, malloc(strlen(path) + 32), -1};
    if (!af->tmp) { errno = ENOMEM; return al_atomic_fail(af, "write"); }
    snprintf(af->tmp, strlen(path) + 32, "%s.tmp.%ld", path, (long)getpid());
    af->fd = open(af->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (af->fd < 0) { /* nothing was created, so there is nothing to remove */
        free(af->tmp);
        af->tmp = NULL;
        return al_atomic_fail(af, "create a temporary file next to");
    }
    return 0;
}

int al_atomic_write(al_atomic_file *af, const void *data, size_t n) {
    for (const char *p = data; n > 0;) {
        ssize_t w = write(af->fd, p, n < ((size_t)1 << 30) ? n : ((size_t)1 << 30));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { if (w == 0) errno = EIO; return al_atomic_fail(af, "write"); }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int al_atomic_commit(al_atomic_file *af) {
    if (fsync(af->fd) < 0) return al_atomic_fail(af, "flush (fsync)");
    int fd = af->fd;
    af->fd = -1;
    if (close(fd) < 0) return al_atomic_fail(af, "close");
    if (rename(af->tmp, af->path) < 0) return al_atomic_fail(af, "rename the temporary file onto");
    free(af->tmp);
    af->tmp = NULL;
    /* make the rename itself durable; a folder that cannot be synced is not an error */
    const char *slash = strrchr(af->path, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - af->path) + (slash == af->path) : 1,
             slash ? af->path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    return 0;
}

int al_write_file_atomic(const char *path, const void *data, size_t n) {
    if (!path || !*path) { al_error("write_file: path is missing"); return -1; }
    if (!data && n) { al_error("write_file: no data for %zu bytes of '%s'", n, path); return -1; }
    al_atomic_file af;
    if (al_atomic_open(&af, "write_file", path) < 0 || al_atomic_write(&af, data, n) < 0) return -1;
    return al_atomic_commit(&af);
}
