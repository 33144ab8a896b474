/* runlog_read.c -- reading the run record stream (format: runlog.c) while it may still grow.
 *
 * The reader walks records.bin from the start with pread(), one header at a time.  It never
 * trusts a length before checking it: a record whose header is garbled (bad magic, unknown kind,
 * a length that disagrees with its shape) is an error naming the file and the byte offset; a
 * record that is not complete yet (the writer is between write() calls, or a crash cut the tail)
 * is "nothing new", and the next call looks again from the same offset. */
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct al_runlog_reader {
    int fd;
    int64_t offset;      /* where the next record starts */
    char path[4096];
};

static unsigned get_u16(const unsigned char *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

al_runlog_reader *al_runlog_reader_open(const char *path) {
    if (!path || !*path) { al_error("runlog_reader_open: the path is missing"); return NULL; }
    al_runlog_reader *r = calloc(1, sizeof *r);
    if (!r) { al_error("runlog_reader_open: out of memory"); return NULL; }
    snprintf(r->path, sizeof r->path, "%s", path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        al_error("runlog_reader_open: cannot open '%s': %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    return r;
}

void al_runlog_reader_close(al_runlog_reader *r) {
    if (!r) return;
    close(r->fd);
    free(r);
}

int64_t al_runlog_reader_offset(const al_runlog_reader *r) { return r ? r->offset : 0; }

/* Reads exactly n bytes at off; returns the number read (less at the end of the file), -1 on error. */
static ssize_t read_at(int fd, void *dst, size_t n, int64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (char *)dst + got, n - got, (off_t)(off + (int64_t)got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

static int garbled(const al_runlog_reader *r, const char *why) {
    al_error("runlog: '%s' is garbled at byte %lld: %s", r->path, (long long)r->offset, why);
    return -1;
}

int al_runlog_next(al_runlog_reader *r, al_record_info *info) {
    if (!r || !info) { al_error("runlog_next: the reader or the record is missing"); return -1; }
    unsigned char h[AL_RECORD_HEADER_BYTES + AL_RECORD_NAME_MAX];
    ssize_t got = read_at(r->fd, h, AL_RECORD_HEADER_BYTES, r->offset);
    if (got < 0) { al_error("runlog: reading '%s': %s", r->path, strerror(errno)); return -1; }
    /* a partial header is a record being written (or a cut tail): not there yet, unless even its
     * first bytes are not the magic */
    if (got < 4) return 0;
    if (memcmp(h, AL_RECORD_MAGIC, 4) != 0) return garbled(r, "no record magic (not an attnlab record stream?)");
    if (got < AL_RECORD_HEADER_BYTES) return 0;
    memset(info, 0, sizeof *info);
    uint32_t total = get_u32(h + 4);
    info->kind = (int)get_u16(h + 8);
    info->dtype = (int)get_u16(h + 10);
    info->ndim = (int)get_u16(h + 12);
    unsigned name_len = get_u16(h + 14);
    info->step = (int64_t)get_u64(h + 16);
    uint64_t bits = get_u64(h + 24);
    memcpy(&info->time, &bits, 8);
    info->layer = (int32_t)get_u32(h + 48);
    info->head = (int32_t)get_u32(h + 52);
    if (info->kind < AL_RECORD_ATTENTION || info->kind > AL_RECORD_LAST_KIND) return garbled(r, "unknown record kind");
    if (info->dtype != AL_RECORD_FLOAT32 && info->dtype != AL_RECORD_TEXT) return garbled(r, "unknown payload type");
    if (info->ndim > 4) return garbled(r, "more than 4 dimensions");
    if (name_len == 0 || name_len > AL_RECORD_NAME_MAX) return garbled(r, "bad name length");
    if (total < AL_RECORD_HEADER_BYTES + name_len || total > AL_RECORD_MAX_BYTES) return garbled(r, "bad record length");
    uint64_t numel = 1;
    for (int i = 0; i < 4; i++) {
        info->shape[i] = i < info->ndim ? (int64_t)get_u32(h + 32 + 4 * i) : 0;
        if (i < info->ndim) numel *= (uint64_t)info->shape[i];
        if (numel > AL_RECORD_MAX_BYTES) return garbled(r, "shape too large");
    }
    info->numel = (int64_t)numel;
    info->payload_bytes = (int64_t)total - AL_RECORD_HEADER_BYTES - name_len;
    if (info->dtype == AL_RECORD_FLOAT32 && (uint64_t)info->payload_bytes != numel * 4)
        return garbled(r, "payload length disagrees with the shape");
    got = read_at(r->fd, h + AL_RECORD_HEADER_BYTES, name_len, r->offset + AL_RECORD_HEADER_BYTES);
    if (got < 0) { al_error("runlog: reading '%s': %s", r->path, strerror(errno)); return -1; }
    if ((unsigned)got < name_len) return 0;
    memcpy(info->name, h + AL_RECORD_HEADER_BYTES, name_len);
    info->name[name_len] = 0;
    if (memchr(info->name, 0, name_len)) return garbled(r, "NUL in a record name");
    /* whole record present?  one byte probe at its last position */
    unsigned char last;
    got = read_at(r->fd, &last, 1, r->offset + (int64_t)total - 1);
    if (got < 0) { al_error("runlog: reading '%s': %s", r->path, strerror(errno)); return -1; }
    if (got < 1) return 0;
    info->offset = r->offset;
    info->payload_offset = r->offset + AL_RECORD_HEADER_BYTES + name_len;
    r->offset += total;
    return 1;
}

int al_runlog_read_payload(al_runlog_reader *r, const al_record_info *info, void *dst, size_t n) {
    if (!r || !info || (!dst && n)) { al_error("runlog_read_payload: missing argument"); return -1; }
    if ((int64_t)n < info->payload_bytes) {
        al_error("runlog_read_payload: '%s' needs %lld bytes, the buffer has %zu", info->name,
                 (long long)info->payload_bytes, n);
        return -1;
    }
    ssize_t got = read_at(r->fd, dst, (size_t)info->payload_bytes, info->payload_offset);
    if (got != (ssize_t)info->payload_bytes) {
        al_error("runlog: '%s' ends inside the record '%s' at byte %lld", r->path, info->name, (long long)info->offset);
        return -1;
    }
    return 0;
}
