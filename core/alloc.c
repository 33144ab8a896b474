/* alloc.c -- the caching allocator behind every tensor storage.
 *
 * Training loops allocate the same few sizes every step.  Freed blocks are kept on per-size free
 * lists and handed out again, so a step costs no malloc/free and no page faults (mmap'd blocks that
 * are unmapped and mapped again fault on every page, ~3 GB/s in this VM).  The cache is bounded:
 * past `cache_limit` bytes, freed blocks go back to the system. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cached_block { struct cached_block *next; } cached_block;
typedef struct { size_t nbytes; cached_block *head; } size_bin;

enum { N_BINS = 256 };
static size_bin bins[N_BINS];
static int64_t bytes_live, bytes_cached, bytes_peak, bytes_since_take;
static const int64_t cache_limit = (int64_t)1 << 30;

/* Tensors may hold at most this much memory in all: 80% of the machine's RAM unless set.  Past it an
 * allocation fails with a clear error instead of the kernel's OOM killer ending the process (Linux
 * overcommits, so a huge malloc "succeeds" and the crash comes at first touch). */
static int64_t memory_limit;

void al_set_memory_limit(int64_t bytes) { memory_limit = bytes; }
int64_t al_get_memory_limit(void) {
    if (memory_limit <= 0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
        memory_limit = pages > 0 && page > 0 ? (int64_t)pages * page / 10 * 8 : (int64_t)1 << 34;
    }
    return memory_limit;
}

/* Sizes are rounded up so that nearby sizes share a bin: to 64 bytes below 4 KiB, then to an
 * eighth of the next power of two. */
static size_t round_size(size_t n) {
    if (n <= 4096) return (n + 63) & ~(size_t)63;
    size_t p = 4096;
    while (p < n) p <<= 1;
    size_t step = p / 8;
    return (n + step - 1) / step * step;
}

static size_bin *find_bin(size_t nbytes, bool create) {
    size_t h = (nbytes / 64) * 2654435761u;
    for (int probe = 0; probe < N_BINS; probe++) {
        size_bin *b = &bins[(h + (size_t)probe) % N_BINS];
        if (b->nbytes == nbytes) return b;
        if (b->nbytes == 0) {
            if (!create) return NULL;
            b->nbytes = nbytes;
            return b;
        }
    }
    return NULL;
}

void *al_alloc(size_t nbytes) {
    size_t n = round_size(nbytes ? nbytes : 1);
    size_bin *b = find_bin(n, false);
    void *p = NULL;
    if (b && b->head) {
        p = b->head;
        b->head = b->head->next;
        bytes_cached -= (int64_t)n;
        bytes_since_take += (int64_t)n;
    } else {
        if (bytes_live + (int64_t)n > al_get_memory_limit()) return NULL;
        p = aligned_alloc(64, n);
        if (!p) {
            al_trim_cache();
            p = aligned_alloc(64, n);
        }
        if (!p) return NULL;
        bytes_since_take += (int64_t)n;
    }
    bytes_live += (int64_t)n;
    if (bytes_live + bytes_cached > bytes_peak) bytes_peak = bytes_live + bytes_cached;
    return p;
}

void al_free(void *p, size_t nbytes) {
    if (!p) return;
    size_t n = round_size(nbytes ? nbytes : 1);
    bytes_live -= (int64_t)n;
    size_bin *b = bytes_cached + (int64_t)n <= cache_limit ? find_bin(n, true) : NULL;
    if (!b) { free(p); return; }
    cached_block *blk = p;
    blk->next = b->head;
    b->head = blk;
    bytes_cached += (int64_t)n;
}

void al_trim_cache(void) {
    for (int i = 0; i < N_BINS; i++) {
        while (bins[i].head) {
            cached_block *blk = bins[i].head;
            bins[i].head = blk->next;
            free(blk);
        }
    }
    bytes_cached = 0;
}

int64_t al_bytes_in_use(void) { return bytes_live + bytes_cached; }
int64_t al_bytes_peak(void) { return bytes_peak; }
void al_reset_peak(void) {
    al_trim_cache();
    bytes_peak = bytes_live;
}
int64_t al_take_allocation_count(void) {
    int64_t n = bytes_since_take;
    bytes_since_take = 0;
    return n;
}
