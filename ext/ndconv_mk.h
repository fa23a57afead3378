/* Register-blocked micro-kernels of the implicit-GEMM convolution.
 *
 * One call computes an MR x NR block of outputs:
 *
 *     C[i][q] (+)= sum_k A[k * lda + i] * ptrs[k][q0 + q],  i < mr, q < NR
 *
 * A holds the weights of mr output channels, one contiguous group of mr
 * values per k; ptrs[k] points at the packed input row of reduction index k
 * (one input channel and one kernel tap).  With init set, C starts from
 * bias[i] (or zero when bias is NULL) instead of its stored value.  C rows are
 * ldc apart and NR wide; the caller keeps NR - 1 readable cells after the end
 * of every packed row.
 *
 * The swapped kernels (mks_*) take the same arguments with the roles of the
 * two operands exchanged: output cells are the MR rows and output channels
 * the NR columns,
 *
 *     C[i][v] (+)= sum_k ptrs[k][q0 + i] * A[k * lda + v],  i < mr, v < NR
 *
 * and with init set C[i][v] starts from bias[v].  A row of few outputs (55,
 * say) then costs no rounding up to NR, as long as the channels fill NR.
 * Each output is still summed over k in order, starting from its bias, so
 * both orientations give the same bits.
 *
 * Each ISA gets its own copy, compiled with a target attribute, so the module
 * itself is built for baseline x86-64 and picks the widest kernel at run time.
 */
#ifndef NDCONV_MK_H
#define NDCONV_MK_H

#include <stddef.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

typedef void (*mk_f32_t)(int mr, Py_ssize_t K, const float *A, Py_ssize_t lda,
                         const float *const *ptrs, Py_ssize_t q0, float *C,
                         Py_ssize_t ldc, int init, const float *bias);
typedef void (*mk_f64_t)(int mr, Py_ssize_t K, const double *A, Py_ssize_t lda,
                         const double *const *ptrs, Py_ssize_t q0, double *C,
                         Py_ssize_t ldc, int init, const double *bias);

/* The block body for a compile-time MR; VT holds W lanes, NR = 2 * W.
 * SWAP (a constant) selects the swapped kernel. */
#define NDCONV_MK_BODY(MR, T, VT, W, LOADU, STOREU, SET1, FMADD, SWAP)        \
    do {                                                                      \
        VT c0[MR], c1[MR];                                                    \
        _Pragma("GCC unroll 16")                                              \
        for (int i = 0; i < MR; i++) {                                        \
            if (init && SWAP) {                                               \
                c0[i] = bias ? LOADU(bias) : SET1((T)0);                      \
                c1[i] = bias ? LOADU(bias + W) : SET1((T)0);                  \
            } else if (init) {                                                \
                c0[i] = SET1(bias ? bias[i] : (T)0);                          \
                c1[i] = c0[i];                                                \
            } else {                                                          \
                c0[i] = LOADU(C + i * ldc);                                   \
                c1[i] = LOADU(C + i * ldc + W);                               \
            }                                                                 \
        }                                                                     \
        for (Py_ssize_t k = 0; k < K; k++) {                                  \
            const T *p = SWAP ? A + k * lda : ptrs[k] + q0;                   \
            const T *a = SWAP ? ptrs[k] + q0 : A + k * lda;                   \
            VT b0 = LOADU(p), b1 = LOADU(p + W);                              \
            _Pragma("GCC unroll 16")                                          \
            for (int i = 0; i < MR; i++) {                                    \
                VT av = SET1(a[i]);                                           \
                c0[i] = FMADD(av, b0, c0[i]);                                 \
                c1[i] = FMADD(av, b1, c1[i]);                                 \
            }                                                                 \
        }                                                                     \
        _Pragma("GCC unroll 16")                                              \
        for (int i = 0; i < MR; i++) {                                        \
            STOREU(C + i * ldc, c0[i]);                                       \
            STOREU(C + i * ldc + W, c1[i]);                                   \
        }                                                                     \
    } while (0)

#define NDCONV_MK_CASE(MR, S, T, VT, W, LOADU, STOREU, SET1, FMADD)           \
    case MR:                                                                  \
        NDCONV_MK_BODY(MR, T, VT, W, LOADU, STOREU, SET1, FMADD, S);          \
        break;

/* The cases for MR = 1 .. 6 (or 14) of one ISA and orientation S. */
#define NDCONV_MK_SWITCH6(CASE, S)                                            \
    switch (mr) {                                                             \
        CASE(1, S) CASE(2, S) CASE(3, S) CASE(4, S) CASE(5, S) CASE(6, S)      \
    }
#define NDCONV_MK_SWITCH14(CASE, S)                                           \
    switch (mr) {                                                             \
        CASE(1, S) CASE(2, S) CASE(3, S) CASE(4, S) CASE(5, S) CASE(6, S)      \
        CASE(7, S) CASE(8, S) CASE(9, S) CASE(10, S) CASE(11, S) CASE(12, S)   \
        CASE(13, S) CASE(14, S)                                               \
    }

/* Both orientations of one ISA and type: NAME and its swapped twin. */
#define NDCONV_MK_DEFINE(TARGET, NAME, SNAME, T, SWITCH, CASE)                \
    TARGET static void NAME(int mr, Py_ssize_t K, const T *A, Py_ssize_t lda,   \
                            const T *const *ptrs, Py_ssize_t q0, T *C,        \
                            Py_ssize_t ldc, int init, const T *bias)          \
    { SWITCH(CASE, 0) }                                                       \
    TARGET static void SNAME(int mr, Py_ssize_t K, const T *A, Py_ssize_t lda,  \
                             const T *const *ptrs, Py_ssize_t q0, T *C,       \
                             Py_ssize_t ldc, int init, const T *bias)         \
    { SWITCH(CASE, 1) }

/* ---- portable C: GCC vector extensions, whatever the baseline ISA has ---- */

typedef float ndconv_v4f __attribute__((vector_size(16), aligned(4)));
typedef double ndconv_v2d __attribute__((vector_size(16), aligned(8)));

static inline ndconv_v4f ndconv_ld4f(const float *p) { ndconv_v4f v; __builtin_memcpy(&v, p, 16); return v; }
static inline void ndconv_st4f(float *p, ndconv_v4f v) { __builtin_memcpy(p, &v, 16); }
static inline ndconv_v4f ndconv_set4f(float a) { ndconv_v4f v = {a, a, a, a}; return v; }
static inline ndconv_v4f ndconv_fma4f(ndconv_v4f a, ndconv_v4f b, ndconv_v4f c) { return c + a * b; }
static inline ndconv_v2d ndconv_ld2d(const double *p) { ndconv_v2d v; __builtin_memcpy(&v, p, 16); return v; }
static inline void ndconv_st2d(double *p, ndconv_v2d v) { __builtin_memcpy(p, &v, 16); }
static inline ndconv_v2d ndconv_set2d(double a) { ndconv_v2d v = {a, a}; return v; }
static inline ndconv_v2d ndconv_fma2d(ndconv_v2d a, ndconv_v2d b, ndconv_v2d c) { return c + a * b; }

#define NDCONV_GENERIC_F(MR, S) NDCONV_MK_CASE(MR, S, float, ndconv_v4f, 4, ndconv_ld4f, ndconv_st4f, ndconv_set4f, ndconv_fma4f)
#define NDCONV_GENERIC_D(MR, S) NDCONV_MK_CASE(MR, S, double, ndconv_v2d, 2, ndconv_ld2d, ndconv_st2d, ndconv_set2d, ndconv_fma2d)

NDCONV_MK_DEFINE(, mk_f32_generic, mks_f32_generic, float, NDCONV_MK_SWITCH6, NDCONV_GENERIC_F)
NDCONV_MK_DEFINE(, mk_f64_generic, mks_f64_generic, double, NDCONV_MK_SWITCH6, NDCONV_GENERIC_D)

#define NDCONV_MR_GENERIC 6
#define NDCONV_NR_F32_GENERIC 8
#define NDCONV_NR_F64_GENERIC 4

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(NDCONV_NO_SIMD)
#define NDCONV_X86 1
#include <immintrin.h>

/* ---- AVX2 + FMA: 16 registers, MR <= 6 with two vectors a row ---- */

#define NDCONV_AVX2_F(MR, S) NDCONV_MK_CASE(MR, S, float, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps)
#define NDCONV_AVX2_D(MR, S) NDCONV_MK_CASE(MR, S, double, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_fmadd_pd)
#define NDCONV_AVX2_TARGET __attribute__((target("avx2,fma")))

NDCONV_MK_DEFINE(NDCONV_AVX2_TARGET, mk_f32_avx2, mks_f32_avx2, float, NDCONV_MK_SWITCH6, NDCONV_AVX2_F)
NDCONV_MK_DEFINE(NDCONV_AVX2_TARGET, mk_f64_avx2, mks_f64_avx2, double, NDCONV_MK_SWITCH6, NDCONV_AVX2_D)

/* ---- AVX-512: 32 registers, MR <= 14 with two vectors a row ---- */

#define NDCONV_512_F(MR, S) NDCONV_MK_CASE(MR, S, float, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps)
#define NDCONV_512_D(MR, S) NDCONV_MK_CASE(MR, S, double, __m512d, 8, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd)
#define NDCONV_512_TARGET __attribute__((target("avx512f,fma")))

NDCONV_MK_DEFINE(NDCONV_512_TARGET, mk_f32_avx512, mks_f32_avx512, float, NDCONV_MK_SWITCH14, NDCONV_512_F)
NDCONV_MK_DEFINE(NDCONV_512_TARGET, mk_f64_avx512, mks_f64_avx512, double, NDCONV_MK_SWITCH14, NDCONV_512_D)
#endif


/* ---- Reduction kernels for the weight gradient ----
 *
 *     G[i * RK_NK + kk] = sum_{r < nrow} sum_{q < lq} Y[r * ldyr + i * ldyi + q]
 *                                                   * P[r * ldp + kk][q]
 *
 * for i < RK_MR and kk < RK_NK (the caller pads blocks with zero rows).  Y
 * rows must be readable (and zero) up to the next multiple of the vector
 * width; P rows are read only below lq (the tail is a masked load).
 */
typedef void (*rk_f32_t)(Py_ssize_t nrow, Py_ssize_t lq, const float *Y, Py_ssize_t ldyr,
                         Py_ssize_t ldyi, const float *const *P, Py_ssize_t ldp, float *G);
typedef void (*rk_f64_t)(Py_ssize_t nrow, Py_ssize_t lq, const double *Y, Py_ssize_t ldyr,
                         Py_ssize_t ldyi, const double *const *P, Py_ssize_t ldp, double *G);

#define NDCONV_RK_MR 4
#define NDCONV_RK_NK 6

#define NDCONV_RK_BODY(T, VT, W, LOADU, TAILLOAD, ZERO, FMADD, HSUM)            \
    do {                                                                      \
        VT acc[NDCONV_RK_MR][NDCONV_RK_NK];                                   \
        _Pragma("GCC unroll 8")                                               \
        for (int i = 0; i < NDCONV_RK_MR; i++)                                \
            _Pragma("GCC unroll 8")                                           \
            for (int kk = 0; kk < NDCONV_RK_NK; kk++)                         \
                acc[i][kk] = ZERO;                                            \
        for (Py_ssize_t r = 0; r < nrow; r++) {                               \
            const T *y = Y + r * ldyr;                                        \
            const T *const *p = P + r * ldp;                                  \
            Py_ssize_t q = 0;                                                 \
            for (; q + W <= lq; q += W) {                                     \
                VT yv[NDCONV_RK_MR];                                          \
                _Pragma("GCC unroll 8")                                       \
                for (int i = 0; i < NDCONV_RK_MR; i++)                        \
                    yv[i] = LOADU(y + i * ldyi + q);                          \
                _Pragma("GCC unroll 8")                                       \
                for (int kk = 0; kk < NDCONV_RK_NK; kk++) {                   \
                    VT b = LOADU(p[kk] + q);                                  \
                    _Pragma("GCC unroll 8")                                   \
                    for (int i = 0; i < NDCONV_RK_MR; i++)                    \
                        acc[i][kk] = FMADD(yv[i], b, acc[i][kk]);             \
                }                                                             \
            }                                                                 \
            if (q < lq) {                                                     \
                Py_ssize_t rem = lq - q;                                      \
                VT yv[NDCONV_RK_MR];                                          \
                _Pragma("GCC unroll 8")                                       \
                for (int i = 0; i < NDCONV_RK_MR; i++)                        \
                    yv[i] = LOADU(y + i * ldyi + q);                          \
                _Pragma("GCC unroll 8")                                       \
                for (int kk = 0; kk < NDCONV_RK_NK; kk++) {                   \
                    VT b = TAILLOAD(p[kk] + q, rem);                          \
                    _Pragma("GCC unroll 8")                                   \
                    for (int i = 0; i < NDCONV_RK_MR; i++)                    \
                        acc[i][kk] = FMADD(yv[i], b, acc[i][kk]);             \
                }                                                             \
            }                                                                 \
        }                                                                     \
        _Pragma("GCC unroll 8")                                               \
        for (int i = 0; i < NDCONV_RK_MR; i++)                                \
            _Pragma("GCC unroll 8")                                           \
            for (int kk = 0; kk < NDCONV_RK_NK; kk++)                         \
                G[i * NDCONV_RK_NK + kk] = HSUM(acc[i][kk]);                  \
    } while (0)

static inline ndconv_v4f ndconv_tail4f(const float *p, Py_ssize_t rem)
{
    ndconv_v4f v = {0, 0, 0, 0};
    for (Py_ssize_t i = 0; i < rem && i < 4; i++) v[i] = p[i];
    return v;
}
static inline ndconv_v2d ndconv_tail2d(const double *p, Py_ssize_t rem)
{
    ndconv_v2d v = {0, 0};
    for (Py_ssize_t i = 0; i < rem && i < 2; i++) v[i] = p[i];
    return v;
}
static inline float ndconv_hsum4f(ndconv_v4f v) { return (v[0] + v[1]) + (v[2] + v[3]); }
static inline double ndconv_hsum2d(ndconv_v2d v) { return v[0] + v[1]; }

static void rk_f32_generic(Py_ssize_t nrow, Py_ssize_t lq, const float *Y, Py_ssize_t ldyr,
                           Py_ssize_t ldyi, const float *const *P, Py_ssize_t ldp, float *G)
{
    const ndconv_v4f zero = {0, 0, 0, 0};
    NDCONV_RK_BODY(float, ndconv_v4f, 4, ndconv_ld4f, ndconv_tail4f, zero, ndconv_fma4f, ndconv_hsum4f);
}

static void rk_f64_generic(Py_ssize_t nrow, Py_ssize_t lq, const double *Y, Py_ssize_t ldyr,
                           Py_ssize_t ldyi, const double *const *P, Py_ssize_t ldp, double *G)
{
    const ndconv_v2d zero = {0, 0};
    NDCONV_RK_BODY(double, ndconv_v2d, 2, ndconv_ld2d, ndconv_tail2d, zero, ndconv_fma2d, ndconv_hsum2d);
}

#ifdef NDCONV_X86
__attribute__((target("avx2,fma")))
static inline __m256i ndconv_mask8(Py_ssize_t rem)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
__attribute__((target("avx2,fma")))
static inline __m256 ndconv_tail8f(const float *p, Py_ssize_t rem) { return _mm256_maskload_ps(p, ndconv_mask8(rem)); }
__attribute__((target("avx2,fma")))
static inline __m256d ndconv_tail4d(const double *p, Py_ssize_t rem)
{
    __m256i m = _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)rem), _mm256_setr_epi64x(0, 1, 2, 3));
    return _mm256_maskload_pd(p, m);
}
__attribute__((target("avx2,fma")))
static inline float ndconv_hsum8f(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}
__attribute__((target("avx2,fma")))
static inline double ndconv_hsum4d(__m256d v)
{
    __m128d a = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    a = _mm_add_sd(a, _mm_unpackhi_pd(a, a));
    return _mm_cvtsd_f64(a);
}

__attribute__((target("avx2,fma")))
static void rk_f32_avx2(Py_ssize_t nrow, Py_ssize_t lq, const float *Y, Py_ssize_t ldyr,
                        Py_ssize_t ldyi, const float *const *P, Py_ssize_t ldp, float *G)
{
    NDCONV_RK_BODY(float, __m256, 8, _mm256_loadu_ps, ndconv_tail8f, _mm256_setzero_ps(),
                   _mm256_fmadd_ps, ndconv_hsum8f);
}

__attribute__((target("avx2,fma")))
static void rk_f64_avx2(Py_ssize_t nrow, Py_ssize_t lq, const double *Y, Py_ssize_t ldyr,
                        Py_ssize_t ldyi, const double *const *P, Py_ssize_t ldp, double *G)
{
    NDCONV_RK_BODY(double, __m256d, 4, _mm256_loadu_pd, ndconv_tail4d, _mm256_setzero_pd(),
                   _mm256_fmadd_pd, ndconv_hsum4d);
}

__attribute__((target("avx512f,fma")))
static inline __m512 ndconv_tail16f(const float *p, Py_ssize_t rem)
{
    return _mm512_maskz_loadu_ps((__mmask16)((1u << rem) - 1u), p);
}
__attribute__((target("avx512f,fma")))
static inline __m512d ndconv_tail8d(const double *p, Py_ssize_t rem)
{
    return _mm512_maskz_loadu_pd((__mmask8)((1u << rem) - 1u), p);
}

__attribute__((target("avx512f,fma")))
static void rk_f32_avx512(Py_ssize_t nrow, Py_ssize_t lq, const float *Y, Py_ssize_t ldyr,
                          Py_ssize_t ldyi, const float *const *P, Py_ssize_t ldp, float *G)
{
    NDCONV_RK_BODY(float, __m512, 16, _mm512_loadu_ps, ndconv_tail16f, _mm512_setzero_ps(),
                   _mm512_fmadd_ps, _mm512_reduce_add_ps);
}

__attribute__((target("avx512f,fma")))
static void rk_f64_avx512(Py_ssize_t nrow, Py_ssize_t lq, const double *Y, Py_ssize_t ldyr,
                          Py_ssize_t ldyi, const double *const *P, Py_ssize_t ldp, double *G)
{
    NDCONV_RK_BODY(double, __m512d, 8, _mm512_loadu_pd, ndconv_tail8d, _mm512_setzero_pd(),
                   _mm512_fmadd_pd, _mm512_reduce_add_pd);
}
#endif

static rk_f32_t ndconv_rk_f32 = rk_f32_generic;
static rk_f64_t ndconv_rk_f64 = rk_f64_generic;
static int ndconv_vw_f32 = 4;     /* vector width of the reduction kernels */
static int ndconv_vw_f64 = 2;

/* The selected kernels and their block sizes. */
static mk_f32_t ndconv_mk_f32 = mk_f32_generic;
static mk_f64_t ndconv_mk_f64 = mk_f64_generic;
static mk_f32_t ndconv_mks_f32 = mks_f32_generic;
static mk_f64_t ndconv_mks_f64 = mks_f64_generic;
static int ndconv_mr = NDCONV_MR_GENERIC;
static int ndconv_nr_f32 = NDCONV_NR_F32_GENERIC;
static int ndconv_nr_f64 = NDCONV_NR_F64_GENERIC;
static const char *ndconv_isa = "generic";
static int ndconv_avx_tiles = 0;  /* transposes in 8 x 8 / 4 x 4 AVX tiles */

/* Pick the kernels for this CPU; name is "auto", "avx512", "avx2" or
 * "generic".  Returns the name of the ISA chosen. */
static const char *ndconv_mk_select(const char *name)
{
    int want512 = 1, want2 = 1;
    if (name[0] == 'g') want512 = want2 = 0;
    else if (name[0] == 'a' && name[1] == 'v' && name[3] == '2') want512 = 0;
    ndconv_mk_f32 = mk_f32_generic;
    ndconv_mk_f64 = mk_f64_generic;
    ndconv_mks_f32 = mks_f32_generic;
    ndconv_mks_f64 = mks_f64_generic;
    ndconv_mr = NDCONV_MR_GENERIC;
    ndconv_nr_f32 = NDCONV_NR_F32_GENERIC;
    ndconv_nr_f64 = NDCONV_NR_F64_GENERIC;
    ndconv_isa = "generic";
    ndconv_rk_f32 = rk_f32_generic;
    ndconv_rk_f64 = rk_f64_generic;
    ndconv_vw_f32 = 4;
    ndconv_vw_f64 = 2;
    ndconv_avx_tiles = 0;
#ifdef NDCONV_X86
    __builtin_cpu_init();
    if (want512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) {
        ndconv_mk_f32 = mk_f32_avx512;
        ndconv_mk_f64 = mk_f64_avx512;
        ndconv_mks_f32 = mks_f32_avx512;
        ndconv_mks_f64 = mks_f64_avx512;
        ndconv_mr = 14;
        ndconv_nr_f32 = 32;
        ndconv_nr_f64 = 16;
        ndconv_isa = "avx512";
        ndconv_rk_f32 = rk_f32_avx512;
        ndconv_rk_f64 = rk_f64_avx512;
        ndconv_vw_f32 = 16;
        ndconv_vw_f64 = 8;
        ndconv_avx_tiles = 1;
    } else if (want2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        ndconv_mk_f32 = mk_f32_avx2;
        ndconv_mk_f64 = mk_f64_avx2;
        ndconv_mks_f32 = mks_f32_avx2;
        ndconv_mks_f64 = mks_f64_avx2;
        ndconv_mr = 6;
        ndconv_nr_f32 = 16;
        ndconv_nr_f64 = 8;
        ndconv_isa = "avx2";
        ndconv_rk_f32 = rk_f32_avx2;
        ndconv_rk_f64 = rk_f64_avx2;
        ndconv_vw_f32 = 8;
        ndconv_vw_f64 = 4;
        ndconv_avx_tiles = 1;
    }
#endif
    return ndconv_isa;
}

/* De-interleave a row into its s residues: d[r * ld + m] = src[s * m + r]
 * for r < s, m < n, in one pass over src (the packing of strided
 * convolutions); SSE2 shuffles for s = 2 and 4. */
static inline void ndconv_deint_f32(float *d, Py_ssize_t ld, const float *src, Py_ssize_t n,
                                    Py_ssize_t s)
{
    Py_ssize_t m = 0, r;
#if defined(__SSE2__)
    if (s == 2) {
        for (; m + 4 <= n; m += 4) {
            __m128 a = _mm_loadu_ps(src + 2 * m), b = _mm_loadu_ps(src + 2 * m + 4);
            _mm_storeu_ps(d + m, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
            _mm_storeu_ps(d + ld + m, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
        }
    } else if (s == 4) {
        for (; m + 4 <= n; m += 4) {
            __m128 r0 = _mm_loadu_ps(src + 4 * m), r1 = _mm_loadu_ps(src + 4 * m + 4);
            __m128 r2 = _mm_loadu_ps(src + 4 * m + 8), r3 = _mm_loadu_ps(src + 4 * m + 12);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(d + m, r0);
            _mm_storeu_ps(d + ld + m, r1);
            _mm_storeu_ps(d + 2 * ld + m, r2);
            _mm_storeu_ps(d + 3 * ld + m, r3);
        }
    }
#endif
    for (; m < n; m++)
        for (r = 0; r < s; r++)
            d[r * ld + m] = src[s * m + r];
}

static inline void ndconv_deint_f64(double *d, Py_ssize_t ld, const double *src, Py_ssize_t n,
                                    Py_ssize_t s)
{
    Py_ssize_t m = 0, r;
#if defined(__SSE2__)
    if (s == 2) {
        for (; m + 2 <= n; m += 2) {
            __m128d a = _mm_loadu_pd(src + 2 * m), b = _mm_loadu_pd(src + 2 * m + 2);
            _mm_storeu_pd(d + m, _mm_unpacklo_pd(a, b));
            _mm_storeu_pd(d + ld + m, _mm_unpackhi_pd(a, b));
        }
    }
#endif
    for (; m < n; m++)
        for (r = 0; r < s; r++)
            d[r * ld + m] = src[s * m + r];
}

/* Ask for [p, p + bytes) to be brought into the cache, a line at a time. */
static inline void ndconv_prefetch(const void *p, Py_ssize_t bytes)
{
    const char *c = (const char *)p;
    for (Py_ssize_t i = 0; i < bytes; i += 64)
        __builtin_prefetch(c + i, 0, 3);
}

/* dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: a transpose in
 * 4 x 4 (float) or 2 x 2 (double) register tiles, for the channels-last
 * staging of the weight gradient and the write-out of swapped blocks.  The
 * tiles go along the rows of src, or with cols_outer along the rows of dst
 * (which then fills a few lines at a time, the better order when dst is the
 * large, uncached side). */
#define NDCONV_TRANSPOSE_BODY(TILE, B)                                        \
    do {                                                                      \
        Py_ssize_t rb = 0, cb = 0, i, j;                                      \
        NDCONV_TILE_LOOPS(TILE, B)                                            \
        for (i = 0; i < rows; i++)                                            \
            for (j = (i < rb ? cb : 0); j < cols; j++)                        \
                dst[j * ldd + i] = src[i * lds + j];                          \
    } while (0)

/* The B x B tiles of the top-left rb x cb of src, in the order cols_outer
 * asks for. */
#define NDCONV_TILE_GRID(TILE, B)                                             \
        if (cols_outer) {                                                     \
            for (j = 0; j < cb; j += B)                                       \
                for (i = 0; i < rb; i += B)                                   \
                    TILE(src + i * lds + j, lds, dst + j * ldd + i, ldd);     \
        } else {                                                              \
            for (i = 0; i < rb; i += B)                                       \
                for (j = 0; j < cb; j += B)                                   \
                    TILE(src + i * lds + j, lds, dst + j * ldd + i, ldd);     \
        }

#if defined(__SSE2__)
#define NDCONV_TILE_LOOPS(TILE, B)                                            \
        rb = rows / B * B;                                                    \
        cb = cols / B * B;                                                    \
        NDCONV_TILE_GRID(TILE, B)

static inline void ndconv_tile4_f32(const float *s, Py_ssize_t lds, float *d, Py_ssize_t ldd)
{
    __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + lds);
    __m128 r2 = _mm_loadu_ps(s + 2 * lds), r3 = _mm_loadu_ps(s + 3 * lds);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(d, r0);
    _mm_storeu_ps(d + ldd, r1);
    _mm_storeu_ps(d + 2 * ldd, r2);
    _mm_storeu_ps(d + 3 * ldd, r3);
}

static inline void ndconv_tile2_f64(const double *s, Py_ssize_t lds, double *d, Py_ssize_t ldd)
{
    __m128d r0 = _mm_loadu_pd(s), r1 = _mm_loadu_pd(s + lds);
    _mm_storeu_pd(d, _mm_unpacklo_pd(r0, r1));
    _mm_storeu_pd(d + ldd, _mm_unpackhi_pd(r0, r1));
}
#else
#define NDCONV_TILE_LOOPS(TILE, B)
#endif

static inline void ndconv_transpose4_f32(const float *src, Py_ssize_t lds, float *dst,
                                         Py_ssize_t ldd, Py_ssize_t rows, Py_ssize_t cols,
                                         int cols_outer)
{
    NDCONV_TRANSPOSE_BODY(ndconv_tile4_f32, 4);
}

static inline void ndconv_transpose2_f64(const double *src, Py_ssize_t lds, double *dst,
                                         Py_ssize_t ldd, Py_ssize_t rows, Py_ssize_t cols,
                                         int cols_outer)
{
    NDCONV_TRANSPOSE_BODY(ndconv_tile2_f64, 2);
}

#ifdef NDCONV_X86
/* The same in AVX tiles (8 x 8 float, 4 x 4 double), for the CPUs whose
 * micro-kernels are AVX2 or AVX-512: the whole tiles only. */
__attribute__((target("avx")))
static inline void ndconv_tile8_f32(const float *s, Py_ssize_t lds, float *d, Py_ssize_t ldd)
{
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds);
    __m256 r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds);
    __m256 r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
    /* pairs of rows interleaved, then pairs of pairs, then the 128-bit halves */
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

__attribute__((target("avx")))
static inline void ndconv_tile4_f64(const double *s, Py_ssize_t lds, double *d, Py_ssize_t ldd)
{
    __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + lds);
    __m256d r2 = _mm256_loadu_pd(s + 2 * lds), r3 = _mm256_loadu_pd(s + 3 * lds);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(d, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(d + ldd, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(d + 2 * ldd, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(d + 3 * ldd, _mm256_permute2f128_pd(t1, t3, 0x31));
}

#define NDCONV_AVX_TILES(NAME, T, TILE, B)                                     \
    __attribute__((target("avx")))                                            \
    static void NAME(const T *src, Py_ssize_t lds, T *dst, Py_ssize_t ldd,     \
                     Py_ssize_t rows, Py_ssize_t cols, int cols_outer)         \
    {                                                                         \
        Py_ssize_t i, j, rb = rows / B * B, cb = cols / B * B;                \
        NDCONV_TILE_GRID(TILE, B)                                             \
    }
NDCONV_AVX_TILES(ndconv_tiles8_f32, float, ndconv_tile8_f32, 8)
NDCONV_AVX_TILES(ndconv_tiles4_f64, double, ndconv_tile4_f64, 4)
#undef NDCONV_AVX_TILES
#endif

/* The whole AVX tiles, then the rest (a band of columns on the right and
 * one of rows below) in the smaller tiles. */
#ifdef NDCONV_X86
#define NDCONV_TRANSPOSE_WIDE(AVX, REST, B)                                   \
    if (ndconv_avx_tiles && rows >= B && cols >= B) {                         \
        Py_ssize_t rb = rows / B * B, cb = cols / B * B;                      \
        AVX(src, lds, dst, ldd, rb, cb, cols_outer);                          \
        REST(src + cb, lds, dst + cb * ldd, ldd, rows, cols - cb, cols_outer); \
        REST(src + rb * lds, lds, dst + rb, ldd, rows - rb, cb, cols_outer);   \
        return;                                                               \
    }
#else
#define NDCONV_TRANSPOSE_WIDE(AVX, REST, B)
#endif

static inline void ndconv_transpose_f32(const float *src, Py_ssize_t lds, float *dst,
                                        Py_ssize_t ldd, Py_ssize_t rows, Py_ssize_t cols,
                                        int cols_outer)
{
    NDCONV_TRANSPOSE_WIDE(ndconv_tiles8_f32, ndconv_transpose4_f32, 8)
    ndconv_transpose4_f32(src, lds, dst, ldd, rows, cols, cols_outer);
}

static inline void ndconv_transpose_f64(const double *src, Py_ssize_t lds, double *dst,
                                        Py_ssize_t ldd, Py_ssize_t rows, Py_ssize_t cols,
                                        int cols_outer)
{
    NDCONV_TRANSPOSE_WIDE(ndconv_tiles4_f64, ndconv_transpose2_f64, 4)
    ndconv_transpose2_f64(src, lds, dst, ldd, rows, cols, cols_outer);
}
#undef NDCONV_TRANSPOSE_WIDE
#undef NDCONV_TILE_LOOPS
#undef NDCONV_TILE_GRID

/* The row loops of the Winograd transforms, cloned for AVX-512, AVX2 and
 * the baseline (the resolver picks one when the module loads). */
#if defined(NDCONV_X86) && defined(__linux__) && !defined(__clang__)
#define NDCONV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NDCONV_CLONES
#endif

/* B^T along the last axis: the four rows d + k * ld from the two residues
 * ev, od (n + 1 cells each) of the input row. */
#define NDCONV_WINO_IN(T)                                                     \
    NDCONV_CLONES static void ndconv_wino_in_##T(T *restrict d, Py_ssize_t ld,  \
                                                 const T *restrict ev,        \
                                                 const T *restrict od,        \
                                                 Py_ssize_t n)                \
    {                                                                         \
        for (Py_ssize_t t = 0; t < n; t++) {                                  \
            d[t] = ev[t] - ev[t + 1];                                         \
            d[ld + t] = od[t] + ev[t + 1];                                    \
            d[2 * ld + t] = ev[t + 1] - od[t];                                \
            d[3 * ld + t] = od[t] - od[t + 1];                                \
        }                                                                     \
    }

/* One axis of the transforms on four blocks of n cells, in place: B^T
 * (forward = 1), A^T into the first two blocks (0), or A from the first two
 * blocks into all four (2: the weight gradient's transform of gy). */
#define NDCONV_WINO_PAIRS(T)                                                  \
    NDCONV_CLONES static void ndconv_wino_pairs_##T(T *restrict p0, T *restrict p1, \
                                                    T *restrict p2, T *restrict p3, \
                                                    Py_ssize_t n, int forward) \
    {                                                                         \
        if (forward == 2) {                                                   \
            for (Py_ssize_t i = 0; i < n; i++) {                              \
                T v0 = p0[i], v1 = p1[i];                                     \
                p1[i] = v0 + v1;                                              \
                p2[i] = v0 - v1;                                              \
                p3[i] = -v1;                                                  \
            }                                                                 \
        } else if (forward) {                                                 \
            for (Py_ssize_t i = 0; i < n; i++) {                              \
                T v0 = p0[i], v1 = p1[i], v2 = p2[i], v3 = p3[i];             \
                p0[i] = v0 - v2;                                              \
                p1[i] = v1 + v2;                                              \
                p2[i] = v2 - v1;                                              \
                p3[i] = v1 - v3;                                              \
            }                                                                 \
        } else {                                                              \
            for (Py_ssize_t i = 0; i < n; i++) {                              \
                T v1 = p1[i], v2 = p2[i];                                     \
                p0[i] = p0[i] + v1 + v2;                                      \
                p1[i] = v1 - v2 - p3[i];                                      \
            }                                                                 \
        }                                                                     \
    }

/* B^T along the last axis straight from an input row of size cells that is
 * zero outside: tile t reads cells i0 + 2t .. i0 + 2t + 3. */
#define NDCONV_WINO_ROW(T)                                                    \
    NDCONV_CLONES static void ndconv_wino_row_any_##T(T *restrict d, Py_ssize_t ld, \
                                                  const T *restrict x,         \
                                                  Py_ssize_t i0, Py_ssize_t size, \
                                                  Py_ssize_t n)                \
    {                                                                         \
        Py_ssize_t lo = i0 >= 0 ? 0 : (-i0 + 1) / 2;                          \
        Py_ssize_t hi = size - 3 - i0 < 0 ? 0 : (size - 3 - i0) / 2 + 1;      \
        if (hi > n) hi = n;                                                   \
        if (lo > hi) lo = hi;                                                 \
        for (Py_ssize_t t = lo; t < hi; t++) {                                \
            const T *c = x + i0 + 2 * t;                                      \
            T a0 = c[0], a1 = c[1], a2 = c[2], a3 = c[3];                     \
            d[t] = a0 - a2;                                                   \
            d[ld + t] = a1 + a2;                                              \
            d[2 * ld + t] = a2 - a1;                                          \
            d[3 * ld + t] = a1 - a3;                                          \
        }                                                                     \
        for (Py_ssize_t t = 0; t < n; t++) {                                  \
            if (t == lo) t = hi;                                              \
            if (t >= n) break;                                                \
            T a[4];                                                           \
            for (int k = 0; k < 4; k++) {                                     \
                Py_ssize_t i = i0 + 2 * t + k;                                \
                a[k] = (i >= 0 && i < size) ? x[i] : (T)0;                    \
            }                                                                 \
            d[t] = a[0] - a[2];                                               \
            d[ld + t] = a[1] + a[2];                                          \
            d[2 * ld + t] = a[2] - a[1];                                      \
            d[3 * ld + t] = a[1] - a[3];                                      \
        }                                                                     \
    }

/* A^T along the last axis, with the bias, as the outputs are written:
 * dst[2t] = m0[t] + m1[t] + m2[t] + b, dst[2t + 1] = m1[t] - m2[t] - m3[t] + b
 * for the first nout (<= 2n) outputs.  Returns 0 when one of them is not
 * finite (y - y is then NaN, which compares unequal to 0). */
#define NDCONV_WINO_OUT(T)                                                    \
    NDCONV_CLONES static int ndconv_wino_out_##T(T *restrict dst, const T *restrict m0, \
                                                 const T *restrict m1,        \
                                                 const T *restrict m2,        \
                                                 const T *restrict m3,        \
                                                 Py_ssize_t nout, T b)        \
    {                                                                         \
        Py_ssize_t h = nout / 2;                                              \
        int bad = 0;                                                          \
        for (Py_ssize_t t = 0; t < h; t++) {                                  \
            T y0 = m0[t] + m1[t] + m2[t] + b, y1 = m1[t] - m2[t] - m3[t] + b; \
            dst[2 * t] = y0;                                                  \
            dst[2 * t + 1] = y1;                                              \
            bad |= (y0 - y0 != 0) | (y1 - y1 != 0);                           \
        }                                                                     \
        if (nout & 1) {                                                       \
            T y0 = m0[h] + m1[h] + m2[h] + b;                                 \
            dst[2 * h] = y0;                                                  \
            bad |= y0 - y0 != 0;                                              \
        }                                                                     \
        return !bad;                                                          \
    }

/* The weight gradient's transforms along the last two axes of channels-last
 * blocks at once, out of place: for tile t < nt, output (k1, k2) (of 4 x 4)
 * is d + (4 k1 + k2) * ldk + t * ldt, len values long, from the cells
 * s + m1 * ldr + (2t + m2) * lds: B^T on both axes reads m1, m2 < 4; A
 * (a0, a1 -> a0, a0 + a1, a0 - a1, -a1) reads m1, m2 < 2.  (GCC vectorizes
 * the channel loops only when told to.) */
#define NDCONV_WINO_GW(T)                                                     \
    NDCONV_CLONES static void ndconv_wino_bt2_##T(T *restrict d, Py_ssize_t ldk, \
                                                  Py_ssize_t ldt,             \
                                                  const T *restrict s,        \
                                                  Py_ssize_t ldr, Py_ssize_t lds, \
                                                  Py_ssize_t len, Py_ssize_t nt) \
    {                                                                         \
        for (Py_ssize_t t = 0; t < nt; t++) {                                 \
            const T *s0 = s + 2 * t * lds;                                    \
            T *d0 = d + t * ldt;                                              \
            _Pragma("omp simd")                                               \
            for (Py_ssize_t i = 0; i < len; i++) {                            \
                T u[4][4];                                                    \
                for (int m = 0; m < 4; m++) {                                 \
                    const T *c = s0 + m * ldr + i;                            \
                    T a0 = c[0], a1 = c[lds], a2 = c[2 * lds], a3 = c[3 * lds]; \
                    u[m][0] = a0 - a2;                                        \
                    u[m][1] = a1 + a2;                                        \
                    u[m][2] = a2 - a1;                                        \
                    u[m][3] = a1 - a3;                                        \
                }                                                             \
                for (int k = 0; k < 4; k++) {                                 \
                    d0[k * ldk + i] = u[0][k] - u[2][k];                      \
                    d0[(4 + k) * ldk + i] = u[1][k] + u[2][k];                \
                    d0[(8 + k) * ldk + i] = u[2][k] - u[1][k];                \
                    d0[(12 + k) * ldk + i] = u[1][k] - u[3][k];               \
                }                                                             \
            }                                                                 \
        }                                                                     \
    }                                                                         \
    NDCONV_CLONES static void ndconv_wino_a2_##T(T *restrict d, Py_ssize_t ldk, \
                                                 Py_ssize_t ldt,              \
                                                 const T *restrict s,         \
                                                 Py_ssize_t ldr, Py_ssize_t lds, \
                                                 Py_ssize_t len, Py_ssize_t nt) \
    {                                                                         \
        for (Py_ssize_t t = 0; t < nt; t++) {                                 \
            const T *s0 = s + 2 * t * lds;                                    \
            T *d0 = d + t * ldt;                                              \
            _Pragma("omp simd")                                               \
            for (Py_ssize_t i = 0; i < len; i++) {                            \
                T u[2][4];                                                    \
                for (int m = 0; m < 2; m++) {                                 \
                    T a0 = s0[m * ldr + i], a1 = s0[m * ldr + lds + i];       \
                    u[m][0] = a0;                                             \
                    u[m][1] = a0 + a1;                                        \
                    u[m][2] = a0 - a1;                                        \
                    u[m][3] = -a1;                                            \
                }                                                             \
                for (int k = 0; k < 4; k++) {                                 \
                    d0[k * ldk + i] = u[0][k];                                \
                    d0[(4 + k) * ldk + i] = u[0][k] + u[1][k];                \
                    d0[(8 + k) * ldk + i] = u[0][k] - u[1][k];                \
                    d0[(12 + k) * ldk + i] = -u[1][k];                        \
                }                                                             \
            }                                                                 \
        }                                                                     \
    }

NDCONV_WINO_GW(float)
NDCONV_WINO_GW(double)
NDCONV_WINO_IN(float)
NDCONV_WINO_IN(double)
NDCONV_WINO_OUT(float)
NDCONV_WINO_OUT(double)
NDCONV_WINO_ROW(float)
NDCONV_WINO_ROW(double)
NDCONV_WINO_PAIRS(float)
NDCONV_WINO_PAIRS(double)

#ifdef NDCONV_X86
/* ndconv_wino_row for AVX-512: 16 (float) or 8 (double) tiles a step, the
 * cells outside the row read as zeros by masked loads (which do not fault),
 * evens and odds picked by two-source permutes. */
static inline __mmask16 ndconv_cells16(Py_ssize_t c, Py_ssize_t size)
{
    Py_ssize_t lo = -c, hi = size - c;           /* lanes k with lo <= k < hi */
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* T: float or double, W lanes; S, I: the intrinsics' suffixes (ps/pd and
 * epi32/epi64), IT the index type. */
#define NDCONV_WINO_ROW_512(NAME, T, VT, MT, W, S, I, IT)                    \
    __attribute__((target("avx512f")))                                        \
    static void NAME(T *d, Py_ssize_t ld, const T *x, Py_ssize_t i0, Py_ssize_t size, \
                     Py_ssize_t n)                                            \
    {                                                                         \
        IT ie[W], io[W];                                                      \
        for (int k = 0; k < W; k++) {                                         \
            ie[k] = 2 * k;                                                    \
            io[k] = 2 * k + 1;                                                \
        }                                                                     \
        const __m512i ev = _mm512_loadu_si512(ie), od = _mm512_loadu_si512(io); \
        for (Py_ssize_t t = 0; t < n; t += W) {                               \
            Py_ssize_t c = i0 + 2 * t;                                        \
            VT A = _mm512_maskz_loadu_##S((MT)ndconv_cells16(c, size), x + c); \
            VT B = _mm512_maskz_loadu_##S((MT)ndconv_cells16(c + W, size), x + c + W); \
            VT C = _mm512_maskz_loadu_##S((MT)(ndconv_cells16(c + 2 * W, size) & 3), \
                                          x + c + 2 * W);                     \
            VT A2 = _mm512_castsi512_##S(_mm512_alignr_##I(_mm512_cast##S##_si512(B), \
                                                           _mm512_cast##S##_si512(A), 2)); \
            VT B2 = _mm512_castsi512_##S(_mm512_alignr_##I(_mm512_cast##S##_si512(C), \
                                                           _mm512_cast##S##_si512(B), 2)); \
            VT a0 = _mm512_permutex2var_##S(A, ev, B), a1 = _mm512_permutex2var_##S(A, od, B); \
            VT a2 = _mm512_permutex2var_##S(A2, ev, B2);                      \
            VT a3 = _mm512_permutex2var_##S(A2, od, B2);                      \
            MT m = (MT)(n - t >= W ? (1u << W) - 1u : (1u << (n - t)) - 1u);  \
            _mm512_mask_storeu_##S(d + t, m, _mm512_sub_##S(a0, a2));         \
            _mm512_mask_storeu_##S(d + ld + t, m, _mm512_add_##S(a1, a2));    \
            _mm512_mask_storeu_##S(d + 2 * ld + t, m, _mm512_sub_##S(a2, a1)); \
            _mm512_mask_storeu_##S(d + 3 * ld + t, m, _mm512_sub_##S(a1, a3)); \
        }                                                                     \
    }

NDCONV_WINO_ROW_512(ndconv_wino_row_f32_avx512, float, __m512, __mmask16, 16, ps, epi32, int32_t)
NDCONV_WINO_ROW_512(ndconv_wino_row_f64_avx512, double, __m512d, __mmask8, 8, pd, epi64, int64_t)
#endif

typedef void (*wino_row_f32_t)(float *, Py_ssize_t, const float *, Py_ssize_t, Py_ssize_t,
                               Py_ssize_t);
typedef void (*wino_row_f64_t)(double *, Py_ssize_t, const double *, Py_ssize_t, Py_ssize_t,
                               Py_ssize_t);
static wino_row_f32_t ndconv_wino_row_f32 = ndconv_wino_row_any_float;
static wino_row_f64_t ndconv_wino_row_f64 = ndconv_wino_row_any_double;

/* The Winograd row kernels for the ISA ndconv_mk_select chose. */
static void ndconv_wino_select(void)
{
    ndconv_wino_row_f32 = ndconv_wino_row_any_float;
    ndconv_wino_row_f64 = ndconv_wino_row_any_double;
#ifdef NDCONV_X86
    if (ndconv_isa[0] == 'a' && ndconv_isa[3] == '5') {      /* "avx512" */
        ndconv_wino_row_f32 = ndconv_wino_row_f32_avx512;
        ndconv_wino_row_f64 = ndconv_wino_row_f64_avx512;
    }
#endif
}

#endif
