/* generic/float_types.h -- includes the generic kernel file GENERIC_FILE twice, once per float
 * dtype (Torch7's THGenerateFloatTypes.h).  The includer writes
 *
 *     #define GENERIC_FILE "../generic/reduce_lines.h"
 *     #include "../generic/float_types.h"
 *
 * and gets reduce_lines.h's functions as name_float and name_double.  Inside GENERIC_FILE:
 *   real            float, then double
 *   SFX(name)       name##_float, then name##_double
 *   REAL_IS_FLOAT   defined (the file can be included for int64_t too, without it)
 *   REAL_IS_FLOAT32 defined on the float pass only (for kernels written for float alone: the
 *                   AVX-512 ones that the dense kernel calls from that pass)
 *   EXP, LOG, SQRT, TANH, POW, FABS     libm's function of the argument's type (expf or exp, ...)
 *   FAST_EXP, FAST_TANH                 the vectorisable al_expf / al_tanhf on float (internal.h;
 *                                       about one ulp), libm's on double (the gradient checks)
 * Everything defined here is undefined again at the end, GENERIC_FILE included. */
#ifndef GENERIC_FILE
#error "float_types.h: define GENERIC_FILE, the file to include per float type"
#endif

/* chosen by the argument's type, as <tgmath.h> does, so one definition serves both passes */
#define EXP(x) _Generic((x), float: expf, default: exp)(x)
#define LOG(x) _Generic((x), float: logf, default: log)(x)
#define SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)
#define TANH(x) _Generic((x), float: tanhf, default: tanh)(x)
#define POW(x, y) _Generic((x), float: powf, default: pow)((x), (y))
#define FABS(x) _Generic((x), float: fabsf, default: fabs)(x)
#define FAST_EXP(x) _Generic((x), float: al_expf, default: exp)(x)
#define FAST_TANH(x) _Generic((x), float: al_tanhf, default: tanh)(x)

#define REAL_IS_FLOAT
#define REAL_IS_FLOAT32
#define real float
#define SFX(name) name##_float
#include GENERIC_FILE
#undef real
#undef SFX
#undef REAL_IS_FLOAT32

#define real double
#define SFX(name) name##_double
#include GENERIC_FILE
#undef real
#undef SFX
#undef REAL_IS_FLOAT

#undef EXP
#undef LOG
#undef SQRT
#undef TANH
#undef POW
#undef FABS
#undef FAST_EXP
#undef FAST_TANH
#undef GENERIC_FILE
