/* blocks.cpp -- how an emulated launch runs (emulated_device.h): its blocks one after another, each
 * block's threads as fibers switched cooperatively, so a thread runs until it waits at
 * a barrier (__syncthreads, or a warp shuffle) or returns.  The scheduler goes round the waiting
 * threads until every one has returned; a round in which no barrier completed and no thread
 * returned is a deadlock (threads at different barriers, or some returned while others wait), and
 * stops the program with the lines the threads wait at, as does any misuse that a GPU would turn
 * into a hang or wrong numbers.  Everything here runs on the thread that launched. */
#include "cuda_runtime.h"
#include <map>
#include <vector>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

enum {
    MAX_THREADS = 1024,                 /* per block, as on every GPU since 2010 */
    WARP = 32,
    STACK_BYTES = 256 * 1024,           /* a fiber's stack; an inaccessible page lies below it */
    DEFAULT_DYNAMIC_SHARED = 48 * 1024, /* more needs cudaFuncSetAttribute */
    MAX_DYNAMIC_SHARED = 227 * 1024,    /* an H100's most per block */
};
static const size_t PAGE = 4096;

struct barrier;
struct fiber {
    void *sp;               /* its saved stack pointer while it is switched out */
    uint3 index;
    unsigned linear;        /* x + y blockDim.x + z blockDim.x blockDim.y: its warp is linear / 32 */
    bool returned;
    long shuffles;          /* how many it has done: the lanes of a shuffle must agree */
    barrier *waiting;       /* the barrier it waits at (not run until that completes), and since when */
    unsigned long waiting_generation;
    const char *wait_file;  /* where, for the deadlock report */
    int wait_line;
    char *stack;
    void *asan_fake_stack;
};

/* A barrier for `expected` threads, identified by the line they call it from. */
struct barrier {
    unsigned arrived;
    unsigned long generation;
    const char *file;
    int line;
    long shuffle;   /* warp barriers: the shuffle's number in the lanes' sequence */
};

static fiber fibers[MAX_THREADS];
static fiber *current;
static void *scheduler_sp;
static long progress;                   /* barriers completed and threads returned so far */
static barrier block_barrier, warp_barriers[MAX_THREADS / WARP];
static unsigned char exchange[MAX_THREADS][8];   /* the shuffles' values, by thread */
static const emulated_launch_config *launch;     /* the launch being run, NULL between launches */
static void (*kernel_body)(void *);
static void *kernel_context;
static unsigned threads_per_block;
static char *dynamic_shared_end;        /* the guard page after the dynamic shared buffer */
static size_t dynamic_shared_bytes;
static std::map<const void *, int> max_dynamic_shared;   /* cudaFuncSetAttribute's, by kernel */

const uint3 *emulated_thread_index;
uint3 emulated_block_index;
dim3 emulated_block_dim, emulated_grid_dim;

/* the static __shared__ arrays of the kernels reached so far (emulated_device.h) */
struct shared_array { void *p; size_t bytes; };
static std::vector<shared_array> static_shared;

/* Stops the program: a GPU would hang here, or compute garbage without a word. */
static void __attribute__((noreturn, format(printf, 1, 2))) stop(const char *format, ...) {
    fflush(stdout);
    fprintf(stderr, "emulated CUDA: kernel %s, block (%u, %u, %u)", launch ? launch->name : "(none)",
            emulated_block_index.x, emulated_block_index.y, emulated_block_index.z);
    if (current) fprintf(stderr, ", thread (%u, %u, %u)", current->index.x, current->index.y, current->index.z);
    fprintf(stderr, ": ");
    va_list ap;
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    _exit(70);
}

/* ---- fibers ----------------------------------------------------------------------------------
 * A switch saves the callee-saved registers and the floating-point control words on the stack it
 * leaves and restores them from the one it enters: a function call's worth of work, where
 * swapcontext would also make two system calls for the signal mask (which made the tests ten
 * times slower). */

extern "C" void emulated_switch(void **save_sp, void *next_sp);
#if defined(__x86_64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".type emulated_switch, @function\n"
        "emulated_switch:\n"
        "    pushq %rbp\n    pushq %rbx\n    pushq %r12\n    pushq %r13\n    pushq %r14\n    pushq %r15\n"
        "    subq $8, %rsp\n    stmxcsr (%rsp)\n    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n    fldcw 4(%rsp)\n    addq $8, %rsp\n"
        "    popq %r15\n    popq %r14\n    popq %r13\n    popq %r12\n    popq %rbx\n    popq %rbp\n"
        "    ret\n");
enum { SAVED_WORDS = 7 };   /* the six registers and the control words, below the return address */
#else
#error "the CUDA emulation switches threads on x86-64 only (the Makefile builds it only there)"
#endif

#if defined(__SANITIZE_ADDRESS__)   /* AddressSanitizer must be told which stack runs */
static const void *scheduler_stack;
static size_t scheduler_stack_bytes;
#define SWITCHING_TO(fake_save, bottom, size) __sanitizer_start_switch_fiber(fake_save, bottom, size)
#define SWITCHED(fake, bottom_out, size_out) __sanitizer_finish_switch_fiber(fake, bottom_out, size_out)
#else
#define SWITCHING_TO(fake_save, bottom, size) ((void)0)
#define SWITCHED(fake, bottom_out, size_out) ((void)0)
#endif

/* from the scheduler into fiber f, until it waits or returns */
static void run(fiber &f) {
    current = &f;
    emulated_thread_index = &f.index;
    void *fake = NULL;
    SWITCHING_TO(&fake, f.stack, STACK_BYTES);
    emulated_switch(&scheduler_sp, f.sp);
    SWITCHED(fake, NULL, NULL);
    (void)fake;
    current = NULL;
}

/* from the running fiber back to the scheduler (for good when it has returned) */
static void yield(void) {
    fiber *self = current;
    SWITCHING_TO(self->returned ? NULL : &self->asan_fake_stack, scheduler_stack, scheduler_stack_bytes);
    emulated_switch(&self->sp, scheduler_sp);
    SWITCHED(self->asan_fake_stack, NULL, NULL);
}

static void __attribute__((noreturn)) thread_start(void) {
    SWITCHED(NULL, &scheduler_stack, &scheduler_stack_bytes);
    kernel_body(kernel_context);
    current->returned = true;
    progress++;
    yield();
    abort();   /* never resumed */
}

/* A fresh fiber's stack as emulated_switch leaves one: entered, it "returns" into thread_start
 * with the stack aligned as after a call. */
static void *initial_sp(char *stack) {
    uintptr_t top = ((uintptr_t)stack + STACK_BYTES) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = NULL;                        /* thread_start's own return address: never used */
    *--sp = (void *)thread_start;        /* where the switch's ret goes */
    for (int i = 0; i < SAVED_WORDS; i++) *--sp = NULL;
    uint32_t control[2] = {0, 0};        /* this thread's MXCSR and x87 control word */
    __asm__ volatile("stmxcsr %0\n fnstcw %1" : "=m"(control[0]), "=m"(control[1]));
    memcpy(sp, control, sizeof control);
    return sp;
}

static char *new_stack(void) {
    char *p = (char *)mmap(NULL, STACK_BYTES + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
    if (p == MAP_FAILED) stop("no memory for a thread's stack");
    mprotect(p, PAGE, PROT_NONE);   /* an overflow faults (the stack grows down) */
    return p + PAGE;
}

/* ---- barriers ---------------------------------------------------------------------------------- */

/* The current thread waits at b (called from file:line) until `expected` threads are there. */
static void arrive(barrier &b, unsigned expected, const char *file, int line, const char *what) {
    if (b.arrived == 0) {
        b.file = file;
        b.line = line;
    } else if (b.line != line || strcmp(b.file, file) != 0) {
        stop("%s at %s:%d while others of its %s wait at %s:%d (divergent code)", what, file, line,
             &b == &block_barrier ? "block" : "warp", b.file, b.line);
    }
    if (++b.arrived == expected) {
        b.arrived = 0;
        b.generation++;
        progress++;
        return;
    }
    current->waiting = &b;
    current->waiting_generation = b.generation;
    current->wait_file = file;
    current->wait_line = line;
    yield();   /* the scheduler resumes it once b's generation has moved on */
    current->waiting = NULL;
}

void emulated_syncthreads(const char *file, int line) {
    arrive(block_barrier, threads_per_block, file, line, "__syncthreads");
}

unsigned emulated_lane(void) { return current->linear % WARP; }

void emulated_warp_exchange(unsigned mask, const void *value, size_t size, unsigned source, void *result,
                            const char *file, int line) {
    if (mask != 0xffffffffu) stop("shuffle at %s:%d with mask %#x: only whole warps are emulated", file, line, mask);
    const unsigned warp = current->linear / WARP;
    if ((warp + 1) * WARP > threads_per_block)
        stop("shuffle at %s:%d names all 32 lanes, but the block's last warp has %u", file, line,
             threads_per_block - warp * WARP);
    barrier &b = warp_barriers[warp];
    const long number = ++current->shuffles;
    if (b.arrived == 0) b.shuffle = number;
    else if (b.shuffle != number)
        stop("shuffle number %ld at %s:%d while other lanes of its warp are at their number %ld (a lane skipped or "
             "repeated one)", number, file, line, b.shuffle);
    memcpy(exchange[current->linear], value, size);
    arrive(b, WARP, file, line, "shuffle");
    memcpy(result, exchange[warp * WARP + source], size);
    arrive(b, WARP, file, line, "shuffle");   /* nobody overwrites a value before every lane has read */
}

/* A warp-wide operation (__syncwarp, the tensor-core tile functions of mma.h) reached by the running
 * lane at file:line: it waits there until its 32 lanes have all reached it (the same line, the same
 * number of warp operations before it, as with a shuffle). */
void emulated_warp_meet(const char *file, int line) {
    const int none = 0;
    int ignored;
    emulated_warp_exchange(0xffffffffu, &none, sizeof none, emulated_lane(), &ignored, file, line);
}

/* A misuse that a GPU would answer with garbage or a fault (mma.h's alignment rules): stops the program. */
void emulated_misuse(const char *file, int line, const char *what) { stop("%s at %s:%d", what, file, line); }

/* ---- shared memory ------------------------------------------------------------------------------ */

void *emulated_dynamic_shared(void) { return dynamic_shared_end - dynamic_shared_bytes; }

/* The dynamic buffer ends at an inaccessible page, so that an access past its size faults; its
 * start is 128-byte aligned (the size rounds up to 128), as the __align__(128) of the kernels that
 * lay tensor-core tiles in it asks. */
static void place_dynamic_shared(size_t bytes) {
    static char *region;
    if (!region) {
        region = (char *)mmap(NULL, MAX_DYNAMIC_SHARED + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED) stop("no memory for shared memory");
        dynamic_shared_end = region + MAX_DYNAMIC_SHARED;
        mprotect(dynamic_shared_end, PAGE, PROT_NONE);
    }
    dynamic_shared_bytes = (bytes + 127) / 128 * 128;
}

bool emulated_static_shared(void *p, size_t bytes) {
    static_shared.push_back(shared_array{p, bytes});
    memset(p, 0xff, bytes);
    return true;
}

/* Garbage at the start of every block, as on a GPU (0xff bytes: NaN in float32 and float64). */
static void poison_shared(void) {
    memset(dynamic_shared_end - dynamic_shared_bytes, 0xff, dynamic_shared_bytes);
    for (const shared_array &a : static_shared) memset(a.p, 0xff, a.bytes);
}

/* A fault inside a kernel: say where it was before dying. */
static void on_fault(int sig, siginfo_t *info, void *) {
    const char *p = (const char *)info->si_addr;
    if (!launch) {   /* not the emulation's: the default action */
        signal(sig, SIG_DFL);
        return;
    }
    if (p >= dynamic_shared_end && p < dynamic_shared_end + PAGE)
        stop("access past the end of the launch's %zu bytes of dynamic shared memory", launch->dynamic_shared);
    if (current && p >= current->stack - PAGE && p < current->stack)
        stop("the thread overflowed its %d KiB emulated stack", STACK_BYTES / 1024);
    stop("invalid memory access at %p", info->si_addr);
}

static void catch_faults(void) {
    static bool done;
    if (done) return;
    done = true;
    static char alternate[64 * 1024];   /* a fault on an overflowed stack needs another one */
    stack_t ss = {};
    ss.ss_sp = alternate;
    ss.ss_size = sizeof alternate;
    sigaltstack(&ss, NULL);
    struct sigaction sa = {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

/* ---- launches ----------------------------------------------------------------------------------- */

cudaError_t emulated_set_max_dynamic_shared(const void *kernel, int bytes) {
    if (bytes < 0 || bytes > MAX_DYNAMIC_SHARED)
        return emulated_failure(cudaErrorInvalidValue, "cudaFuncSetAttribute: %d bytes of dynamic shared memory (at most %d)",
                                bytes, MAX_DYNAMIC_SHARED);
    max_dynamic_shared[kernel] = bytes;
    return cudaSuccess;
}

/* The launch's geometry against the GPU's limits; false with the launch error recorded. */
static bool launchable(const emulated_launch_config &c) {
    const dim3 &g = c.grid, &b = c.block;
    if (g.x < 1 || g.x > 0x7fffffffu || g.y < 1 || g.y > 65535 || g.z < 1 || g.z > 65535) {
        emulated_failure(cudaErrorInvalidConfiguration, "launch of %s: grid (%u, %u, %u) out of bounds", c.name, g.x, g.y, g.z);
        return false;
    }
    if (b.x < 1 || b.y < 1 || b.z < 1 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
        (unsigned long long)b.x * b.y * b.z > MAX_THREADS) {
        emulated_failure(cudaErrorInvalidConfiguration, "launch of %s: block (%u, %u, %u) out of bounds", c.name, b.x, b.y, b.z);
        return false;
    }
    auto allowed = max_dynamic_shared.find(c.kernel);
    const size_t limit = allowed == max_dynamic_shared.end() ? (size_t)DEFAULT_DYNAMIC_SHARED : (size_t)allowed->second;
    if (c.dynamic_shared > limit) {
        emulated_failure(cudaErrorInvalidValue, "launch of %s: %zu bytes of dynamic shared memory, %zu allowed%s", c.name,
                         c.dynamic_shared, limit, allowed == max_dynamic_shared.end() ? " without cudaFuncSetAttribute" : "");
        return false;
    }
    return true;
}

/* One block: every thread from the start of the kernel until all have returned. */
static void run_block(bool reverse) {
    const unsigned n = threads_per_block;
    poison_shared();
    block_barrier = barrier{};
    for (unsigned w = 0; w < (n + WARP - 1) / WARP; w++) warp_barriers[w] = barrier{};
    for (unsigned t = 0; t < n; t++) {
        fiber &f = fibers[t];
        if (!f.stack) f.stack = new_stack();
        f.linear = t;
        f.index = uint3{t % emulated_block_dim.x, t / emulated_block_dim.x % emulated_block_dim.y,
                        t / (emulated_block_dim.x * emulated_block_dim.y)};
        f.returned = false;
        f.shuffles = 0;
        f.waiting = NULL;
        f.wait_file = NULL;
        f.sp = initial_sp(f.stack);
    }
    for (;;) {
        const long before = progress;
        bool all_returned = true;
        for (unsigned k = 0; k < n; k++) {
            fiber &f = fibers[reverse ? n - 1 - k : k];
            if (f.returned) continue;
            all_returned = false;
            if (f.waiting && f.waiting->generation == f.waiting_generation) continue;
            run(f);
        }
        if (all_returned) return;
        if (progress == before) {   /* nobody can move: say who waits where */
            std::map<std::pair<const char *, int>, unsigned> waiting;
            unsigned returned = 0;
            for (unsigned t = 0; t < n; t++) {
                if (fibers[t].returned) returned++;
                else waiting[{fibers[t].wait_file, fibers[t].wait_line}]++;
            }
            fflush(stdout);
            fprintf(stderr, "emulated CUDA: kernel %s, block (%u, %u, %u) deadlocks:", launch->name, emulated_block_index.x,
                    emulated_block_index.y, emulated_block_index.z);
            for (auto &w : waiting) fprintf(stderr, " %u threads wait at %s:%d;", w.second, w.first.first, w.first.second);
            fprintf(stderr, " %u have returned\n", returned);
            _exit(70);
        }
    }
}

void emulated_run(const emulated_launch_config &config, void (*body)(void *), void *context) {
    if (launch) stop("a launch from inside a kernel (not emulated)");
    if (!launchable(config)) return;
    catch_faults();
    launch = &config;
    kernel_body = body;
    kernel_context = context;
    emulated_grid_dim = config.grid;
    emulated_block_dim = config.block;
    threads_per_block = config.block.x * config.block.y * config.block.z;
    place_dynamic_shared(config.dynamic_shared);
    unsigned long long block_number = 0;
    for (unsigned z = 0; z < config.grid.z; z++)
        for (unsigned y = 0; y < config.grid.y; y++)
            for (unsigned x = 0; x < config.grid.x; x++) {
                emulated_block_index = uint3{x, y, z};
                run_block(block_number++ % 2 == 1);   /* odd blocks: threads in reverse order */
            }
    launch = NULL;
}
