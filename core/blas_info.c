/* blas_info.c -- which of OpenBLAS's kernels runs the matrix products, and whether this CPU has
 * faster ones that the kernel choice leaves unused.
 *
 * Debian's OpenBLAS carries a kernel per CPU family (DYNAMIC_ARCH) and picks one when it loads,
 * unless OPENBLAS_CORETYPE names one.  An environment that pins an AVX2 kernel (Haswell, Zen) on an
 * AVX-512 CPU leaves much of the products' speed unused: on the project's 2-core Zen 5 machine the
 * products of a transformer step ran at 200-210 GFLOP/s with Haswell's kernels and 340-380 with the
 * AVX-512 ones (bench/RESULTS.md).  attnlab does not override a variable the user or the machine
 * set (the kernels sum in different orders, so the choice is part of what makes a run repeat to the
 * last digit); it says which kernel runs, in `attnlab --version` and in each run's config.json, and
 * what would be faster.
 *
 * What it does instead: nn.Linear's products, most of a transformer step, run on attnlab's own
 * AVX-512 product (ops/sgemm_avx512.c) when the CPU has AVX-512 and OpenBLAS's kernel does not use
 * it; with OpenBLAS's AVX-512 kernels in use they stay with OpenBLAS, which is as fast there.
 * ATTNLAB_SGEMM=openblas or =attnlab forces either (for comparisons); any other value is an error
 * the program reports when it starts. */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char *openblas_get_corename(void);

const char *al_blas_kernel(void) { return openblas_get_corename(); }

static bool kernel_uses_avx512(const char *name) {
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++)
        if (strcmp(name, avx512[i]) == 0) return true;
    return false;
}

static bool cpu_has_avx512(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

/* ATTNLAB_SGEMM: 0 auto, 1 openblas, 2 attnlab, -1 not a valid value */
static int sgemm_setting(void) {
    const char *v = getenv("ATTNLAB_SGEMM");
    if (!v || !*v || strcmp(v, "auto") == 0) return 0;
    if (strcmp(v, "openblas") == 0) return 1;
    if (strcmp(v, "attnlab") == 0) return 2;
    return -1;
}

const char *al_linear_kernel(void) {
    const int setting = sgemm_setting();
    if (setting < 0) {
        al_error("ATTNLAB_SGEMM=%s: the products of nn.Linear run on 'openblas', 'attnlab' (its own AVX-512 "
                 "kernel) or 'auto' (attnlab's where OpenBLAS's kernel leaves AVX-512 unused)", getenv("ATTNLAB_SGEMM"));
        return NULL;
    }
    if (setting == 2 && !al_sgemm_own_available()) {
        al_error("ATTNLAB_SGEMM=attnlab: this build has no AVX-512 product (it was compiled for a CPU without AVX-512)");
        return NULL;
    }
    const bool own = setting == 2 || (setting == 0 && al_sgemm_own_available() && cpu_has_avx512() &&
                                      !kernel_uses_avx512(al_blas_kernel()));
    return own ? "attnlab-avx512" : "openblas";
}

bool al_linear_uses_own_sgemm(void) {
    static int decided = -1;   /* the environment is read once */
    if (decided < 0) {
        const char *k = al_linear_kernel();
        decided = k && strcmp(k, "attnlab-avx512") == 0;
    }
    return decided == 1;
}

const char *al_blas_advice(void) {
    static char advice[320];
    const char *kernel = al_blas_kernel(), *pinned = getenv("OPENBLAS_CORETYPE");
    if (!cpu_has_avx512() || kernel_uses_avx512(kernel)) return NULL;
    if (al_linear_uses_own_sgemm())
        snprintf(advice, sizeof advice,
                 "OpenBLAS runs its %s kernels on a CPU with AVX-512%s; nn.Linear's products run on attnlab's own "
                 "AVX-512 kernel instead, the other products on OpenBLAS's",
                 kernel, pinned && *pinned ? " (OPENBLAS_CORETYPE is set)" : "");
    else if (pinned && *pinned)
        snprintf(advice, sizeof advice,
                 "OPENBLAS_CORETYPE=%s holds OpenBLAS to its %s kernels on a CPU with AVX-512; without it "
                 "(or with OPENBLAS_CORETYPE=SkylakeX) the matrix products may run faster: `make bench` measures both",
                 pinned, kernel);
    else
        snprintf(advice, sizeof advice,
                 "OpenBLAS chose its %s kernels on a CPU with AVX-512; OPENBLAS_CORETYPE=SkylakeX may run the "
                 "matrix products faster: `make bench` measures both",
                 kernel);
    return advice;
}
