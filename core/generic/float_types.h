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
 *   EXP, LOG, SQRT, TANH, POW, FABS     libm's functions of that type
 *   FAST_EXP, FAST_TANH                 the vectorisable al_expf / al_tanhf for float (internal.h;
 *                                       about one ulp), libm's for double (the gradient checks)
 * Everything defined here is undefined again at the end, GENERIC_FILE included. */
#ifndef GENERIC_FILE
#error "float_types.h: define GENERIC_FILE, the file to include per float type"
#endif

#define REAL_IS_FLOAT
#define real float
#define SFX(name) name##_float
#define EXP expf
#define LOG logf
#define SQRT sqrtf
#define TANH tanhf
#define POW powf
#define FABS fabsf
#define FAST_EXP al_expf
#define FAST_TANH al_tanhf
#include GENERIC_FILE
#undef real
#undef SFX
#undef EXP
#undef LOG
#undef SQRT
#undef TANH
#undef POW
#undef FABS
#undef FAST_EXP
#undef FAST_TANH

#define real double
#define SFX(name) name##_double
#define EXP exp
#define LOG log
#define SQRT sqrt
#define TANH tanh
#define POW pow
#define FABS fabs
#define FAST_EXP exp
#define FAST_TANH tanh
#include GENERIC_FILE
#undef real
#undef SFX
#undef EXP
#undef LOG
#undef SQRT
#undef TANH
#undef POW
#undef FABS
#undef FAST_EXP
#undef FAST_TANH
#undef REAL_IS_FLOAT
#undef GENERIC_FILE
