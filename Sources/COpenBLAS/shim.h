// OpenBLAS (CBLAS interface plus its thread-count control).
#include <cblas.h>

// √x as the bare IEEE operation. Swift's Float.squareRoot() and SIMD squareRoot() lower on Linux
// to sqrtf with errno handling (a branch and a libm call per lane), which keeps every loop with
// a square root scalar; this builtin carries no errno, so loops over it vectorise (sqrtps).
// Correctly rounded like sqrtf: the same bits.
static inline float streamrec_sqrtf(float x) { return __builtin_elementwise_sqrt(x); }
