/* Second-order-section IIR filtering in place, two channels at a time.
 *
 * The arithmetic is that of scipy's `_sosfilt` kernel (scipy/signal/_sosfilt.pyx), operation for
 * operation, so the results are the same bit for bit (tested against it; compiled with
 * -ffp-contract=off so no multiply-add is fused). What differs is how the loop runs: scipy's
 * kernel filters one channel after the other and keeps the state in memory, so every sample waits
 * for the previous one's store (about 7 ns a sample here). Here the state stays in registers and
 * the two channels of a stereo block are filtered in the same loop, so their recursions overlap
 * (about 3 ns a sample for two sections). calmplace loads this file's functions with ctypes
 * (calmplace.kernels); without it, it uses scipy's kernel, with the same numbers.
 *
 * Layout, as scipy's kernel: sos (n_sections, 6) rows b0 b1 b2 a0 a1 a2 with a0 == 1 (not read);
 * x (n_channels, n) C-contiguous, filtered in place; zi (n_channels, n_sections, 2), the state
 * before x on entry and after it on return.
 */
#include <stddef.h>

/* one section, direct form II transposed, written as scipy's Cython source is */
#define SECTION(T, q, z0, z1, xc)                                   \
    do {                                                            \
        T xn_ = (q)[0] * (xc) + (z0);                               \
        (z0) = (q)[1] * (xc) - (q)[4] * xn_ + (z1);                 \
        (z1) = (q)[2] * (xc) - (q)[5] * xn_;                        \
        (xc) = xn_;                                                 \
    } while (0)

/* a pair of channels through S sections, the state in local arrays the compiler keeps in
 * registers (S is a constant in each instance) */
#define PAIR(T, S)                                                                      \
    static void T##_pair_##S(const T *sos, T *xa, T *xb, ptrdiff_t n, T *za, T *zb) {   \
        T q[S][6], a[S][2], b[S][2];                                                    \
        _Pragma("GCC unroll 4")                                                         \
        for (int s = 0; s < S; s++) {                                                   \
            for (int k = 0; k < 6; k++) q[s][k] = sos[6 * s + k];                       \
            a[s][0] = za[2 * s]; a[s][1] = za[2 * s + 1];                               \
            b[s][0] = zb[2 * s]; b[s][1] = zb[2 * s + 1];                               \
        }                                                                               \
        for (ptrdiff_t i = 0; i < n; i++) {                                             \
            T u = xa[i], v = xb[i];                                                     \
            _Pragma("GCC unroll 4")                                                     \
            for (int s = 0; s < S; s++) {                                               \
                SECTION(T, q[s], a[s][0], a[s][1], u);                                  \
                SECTION(T, q[s], b[s][0], b[s][1], v);                                  \
            }                                                                           \
            xa[i] = u; xb[i] = v;                                                       \
        }                                                                               \
        _Pragma("GCC unroll 4")                                                         \
        for (int s = 0; s < S; s++) {                                                   \
            za[2 * s] = a[s][0]; za[2 * s + 1] = a[s][1];                               \
            zb[2 * s] = b[s][0]; zb[2 * s + 1] = b[s][1];                               \
        }                                                                               \
    }

/* one channel (a mono signal, or the odd one out) through S sections, likewise */
#define ONE(T, S)                                                                       \
    static void T##_one_##S(const T *sos, T *x, ptrdiff_t n, T *z) {                    \
        T q[S][6], a[S][2];                                                             \
        _Pragma("GCC unroll 4")                                                         \
        for (int s = 0; s < S; s++) {                                                   \
            for (int k = 0; k < 6; k++) q[s][k] = sos[6 * s + k];                       \
            a[s][0] = z[2 * s]; a[s][1] = z[2 * s + 1];                                 \
        }                                                                               \
        for (ptrdiff_t i = 0; i < n; i++) {                                             \
            T u = x[i];                                                                 \
            _Pragma("GCC unroll 4")                                                     \
            for (int s = 0; s < S; s++) SECTION(T, q[s], a[s][0], a[s][1], u);          \
            x[i] = u;                                                                   \
        }                                                                               \
        _Pragma("GCC unroll 4")                                                         \
        for (int s = 0; s < S; s++) { z[2 * s] = a[s][0]; z[2 * s + 1] = a[s][1]; }     \
    }

/* one channel through any number of sections, the state in memory */
#define SINGLE(T)                                                                              \
    static void T##_single(const T *sos, ptrdiff_t n_sections, T *x, ptrdiff_t n, T *z) {      \
        for (ptrdiff_t i = 0; i < n; i++) {                                                    \
            T u = x[i];                                                                        \
            for (ptrdiff_t s = 0; s < n_sections; s++)                                         \
                SECTION(T, sos + 6 * s, z[2 * s], z[2 * s + 1], u);                            \
            x[i] = u;                                                                          \
        }                                                                                      \
    }

#define FILTER(T, NAME)                                                                        \
    PAIR(T, 1)                                                                                 \
    PAIR(T, 2)                                                                                 \
    PAIR(T, 3)                                                                                 \
    PAIR(T, 4)                                                                                 \
    ONE(T, 1)                                                                                  \
    ONE(T, 2)                                                                                  \
    ONE(T, 3)                                                                                  \
    ONE(T, 4)                                                                                  \
    SINGLE(T)                                                                                  \
    void NAME(const T *sos, ptrdiff_t n_sections, T *x, ptrdiff_t n_channels, ptrdiff_t n,     \
              T *zi) {                                                                         \
        ptrdiff_t c = 0, step = 2 * n_sections;                                                \
        if (n_sections >= 1 && n_sections <= 4) {                                              \
            for (; c + 1 < n_channels; c += 2) {                                               \
                T *xa = x + c * n, *xb = xa + n, *za = zi + c * step, *zb = za + step;         \
                switch (n_sections) {                                                          \
                case 1: T##_pair_1(sos, xa, xb, n, za, zb); break;                             \
                case 2: T##_pair_2(sos, xa, xb, n, za, zb); break;                             \
                case 3: T##_pair_3(sos, xa, xb, n, za, zb); break;                             \
                default: T##_pair_4(sos, xa, xb, n, za, zb); break;                            \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (; c < n_channels; c++) {                                                          \
            T *xc = x + c * n, *zc = zi + c * step;                                            \
            switch (n_sections) {                                                              \
            case 1: T##_one_1(sos, xc, n, zc); break;                                          \
            case 2: T##_one_2(sos, xc, n, zc); break;                                          \
            case 3: T##_one_3(sos, xc, n, zc); break;                                          \
            case 4: T##_one_4(sos, xc, n, zc); break;                                          \
            default: T##_single(sos, n_sections, xc, n, zc); break;                            \
            }                                                                                  \
        }                                                                                      \
    }

FILTER(float, calmplace_sos_float32)
FILTER(double, calmplace_sos_float64)
