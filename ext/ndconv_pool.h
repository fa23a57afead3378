/* Row kernels of the pooling family (ext/_pool.pyx).
 *
 * Each kernel runs over a block of R output rows of nq cells.  The window
 * kernels (max, average) read, for output row r2 and cell q, the taps
 *
 *     rows[r][r2 * rstep + off + q * s + t],   r < nr (C order), t0 <= t < t1
 *
 * in C order of the window (r major, t minor); every one of those cells is
 * inside the input (the caller splits off the edge cells, which get their own
 * calls with nq = 1 and a narrower [t0, t1)).  The flat index of a tap inside
 * its (n, c) volume is rbase[r] + p * rstep + off + q * s + t, with p = r2, or
 * p = (iph + r2) % iper when a run goes on through the next volumes (iper
 * rows each; their indices start again from 0).  The output
 * of row r2 is out[r2 * ostep + q].  A long window is cut into several calls
 * over parts of the rows: `first` starts from nothing, otherwise the running
 * result is read back from out (and idx); the average divides by `div` when
 * `last`.
 *
 * Max keeps the first maximum in C order: a value replaces the running one
 * when it is larger, or when it is a NaN and the running one is not, so ties
 * and later NaNs never replace.  Written branch-free (compare, then blend), it
 * gives the same bits on every ISA and with any blocking.  A window with no
 * tap gives -inf and index -1.  The average adds from 0 in tap order and
 * divides once, so its bits do not depend on the ISA either.
 *
 * Each ISA gets its own copy, compiled with a target attribute; the module is
 * built for baseline x86-64 and ndconv_pool_select picks the widest copy the
 * CPU runs (or the one asked for, to test them all).  The vector bodies are
 * written once, as macros over a small set of per-ISA primitives (P##_name):
 *   W                      lanes of a vector
 *   lm(rem)                lane masks of a block with rem outputs left
 *   ld1(p, lm, F)          p[0 .. W): stride 1
 *   ld2(p, lm, F)          p[0], p[2], ... p[2W - 2]: stride 2, one tap
 *   ld2p(p, lm, F, &e, &o) p[0], p[2], ... and p[1], p[3], ...: two taps
 *   ldg(p, s, lm)          p[0], p[s], ...: any stride (gather)
 *   st(p, v, lm, F)        store the block's lanes
 *   stn(p, v), istn, fence streaming stores of a full, aligned block; sfence
 *   gt(v, cur)             mask: v replaces cur (see above)
 *   sel(m, a, b)           m ? b : a per lane
 *   iota(s), iadd(io, b), isel, ild, ist: the int64 index vectors
 * F (a compile-time constant in the bodies) says the block has all W outputs,
 * so that no lane mask is needed; a partial block reads only its own taps.
 * The generic copy is the same bodies over one-lane "vectors".
 */
#ifndef NDCONV_POOL_H
#define NDCONV_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

typedef struct {
    const void *const *rows;   /* nr row pointers (float or double) */
    const int64_t *rbase;      /* flat index of rows[r][0]; used with idx */
    Py_ssize_t nr, t0, t1, s, off, nq, R, rstep, ostep;
    void *out;
    int64_t *idx;              /* NULL: no indices */
    int first, last;
    int nt;                    /* streaming stores allowed (where aligned) */
    Py_ssize_t iper, iph;      /* indices: rows repeat every iper rows (0: never), row 0 at phase iph */
    int has_nxt;               /* nxt is known */
    Py_ssize_t nxt;            /* offset from this run's input rows to the next run's */
    double div;                /* the average's divisor */
} ndp_args;

/* Prefetch distance of the window kernels in output rows: at least 8 KiB
 * of input ahead. */
#define NDP_PF_ROWS(rstep, size) \
    ((rstep) > 0 ? (8192 / (Py_ssize_t)(size) + (rstep) - 1) / (rstep) : 0)

/* Streaming (non-temporal) stores for full blocks, when the caller allows
 * them and every full block of the output lands on a 64-byte boundary. */
#define NDP_CAN_STREAM(a, p, size) \
    ((a)->nt && ((uintptr_t)(p) & 63) == 0 && ((a)->ostep * (Py_ssize_t)(size)) % 64 == 0)

/* Strides above this go to the generic kernels (the gathers use int32
 * offsets). */
#define NDP_MAX_GATHER_STRIDE ((Py_ssize_t)1 << 26)

/* Broadcast unpooling and max unpooling read input rows at a fixed step
 * (istep) along a run; the caller also says where the next run starts (nxt
 * from this run's first input row), and the kernels prefetch an input row
 * about 8 KiB ahead when they first read one (hardware prefetchers stop at
 * each 4 KiB page, and a run's rows span only a few pages). */

/* Broadcast unpooling of R output rows: row r2 reads input row
 * src + ((ph + r2) / kr) * istep and writes out[q] = row[q / k] for
 * q < min(L, D * k), zeros after. */
typedef struct {
    const void *src;
    Py_ssize_t istep, kr, ph, R, ostep, D, k, L;
    void *out;
    int nt;                    /* streaming stores allowed (where aligned) */
    int has_nxt;               /* nxt is known */
    Py_ssize_t nxt;            /* offset from this run's first input row to the next run's */
} ndp_bcast_args;

/* Max unpooling when every window is a disjoint block (stride == ksize, no
 * low padding) and lies inside the output: output row r2 holds, at cell q <
 * D * k, x[i] if idx[i] == ob0 + r2 * ostep + q (i = q / k) and 0 otherwise,
 * zeros after D * k.  The input rows are x + ((ph + r2) / kr) * istep (idx the
 * same).  Adds to *matched the cells written from x; when `count` is set,
 * adds to *nonneg / *bad the indices >= 0 / < -1 of each input row the first
 * time it is read ((ph + r2) % kr == 0). */
typedef struct {
    const void *x;
    const int64_t *idx;
    Py_ssize_t istep, kr, ph, R, ostep, D, k, L;
    int64_t ob0;
    void *out;
    int count;
    int nt;                    /* streaming stores allowed (where aligned) */
    int has_nxt;               /* nxt is known */
    Py_ssize_t nxt;            /* offset from this run's first input row to the next run's */
    int64_t matched, nonneg, bad;
} ndp_munpool_args;

typedef void (*ndp_fn)(const ndp_args *a);
typedef void (*ndp_row_fn)(ndp_bcast_args *a);
typedef void (*ndp_mu_fn)(ndp_munpool_args *a);

/* ------------------------------------------------------------------------
 * The window bodies.  P: primitive prefix; LM: its lane-mask type; U: the
 * number of blocks of W outputs carried through the taps at once (each is a
 * dependency chain of compares and blends or adds; several in flight hide
 * the latency); S: 1, 2 or 0 (any stride); IDX: whether indices are kept.
 * The blocks are numbered over the R rows (nb blocks a row) and taken U at
 * a time, then one at a time. */

/* Loads of one tap for a block: F (a constant) says the block is full (W
 * outputs), which needs no lane masks. */
#define NDP_LD(P, S, F, p, s, lm) \
    ((S) == 1 ? P##_ld1(p, lm, F) : (S) == 2 ? P##_ld2(p, lm, F) : P##_ldg(p, s, lm))

/* Per-block set-up shared by the bodies: offsets and lane masks of the UU
 * blocks starting at row br2, block bi of that row; F: all of them full. */
#define NDP_BLOCKS(P, T, LM, W, UU)                                           \
    Py_ssize_t c0[UU], oo[UU], pf[UU], x0[UU];                                \
    LM lm[UU];                                                                \
    int F = 1;                                                                \
    {                                                                         \
        Py_ssize_t r2 = br2, bi2 = bi, ph2 = bph;                             \
        _Pragma("GCC unroll 8")                                               \
        for (int c = 0; c < (UU); c++) {                                      \
            Py_ssize_t q0 = bi2 * (W);                                        \
            c0[c] = r2 * a->rstep + a->off + q0 * s;                          \
            x0[c] = ph2 * a->rstep + a->off + q0 * s;                         \
            oo[c] = r2 * a->ostep + q0;                                       \
            pf[c] = c0[c] + pfo +                                             \
                (r2 + pfr >= a->R && a->has_nxt ? a->nxt - a->R * a->rstep : 0); \
            lm[c] = P##_lm(nq - q0);                                          \
            F &= nq - q0 >= (W);                                              \
            if (++bi2 == nb) {                                                \
                bi2 = 0;                                                      \
                r2++;                                                         \
                if (++ph2 == a->iper) ph2 = 0;                                \
            }                                                                 \
        }                                                                     \
        br2 = r2;                                                             \
        bi = bi2;                                                             \
        bph = ph2;                                                            \
    }                                                                         \
    (void)x0;

/* The taps of rows [r, nr) from tap t of row r on (then from t0), C order,
 * each handed to UPD(c, v, tap) for every block c.  Stride 2 loads two
 * neighbouring taps at once (even and odd lanes of the same vectors).  Each
 * row is prefetched pfo cells ahead (a few output rows further down the
 * run), and the last rows of a run prefetch the start of the next run (nxt,
 * from the caller): the hardware prefetchers alone leave a single core at
 * about half the speed on this access pattern, and short runs (the planes of
 * a 3-D volume) at a third without the look across runs. */
#define NDP_TAPS(P, T, VT, UU, S, F, UPD, X1, X2)                                   \
    for (; r < nr; r++, t = t0) {                                             \
        const T *p = rows[r];                                                 \
        const int64_t rb = a->rbase ? a->rbase[r] : 0;                        \
        (void)rb;                                                             \
        _Pragma("GCC unroll 8")                                               \
        for (int c = 0; c < (UU); c++) {                                      \
            __builtin_prefetch(p + pf[c], 0, 3);                              \
            if ((S) != 1) __builtin_prefetch(p + pf[c] + 64 / sizeof(T), 0, 3); \
        }                                                                     \
        if ((S) == 2) {                                                       \
            for (; t + 1 < t1; t += 2) {                                      \
                _Pragma("GCC unroll 8")                                       \
                for (int c = 0; c < (UU); c++) {                              \
                    VT ve, vo;                                                \
                    P##_ld2p(p + (c0[c] + t), lm[c], F, &ve, &vo);            \
                    UPD(P, X1, X2, c, ve, t);                                 \
                    UPD(P, X1, X2, c, vo, t + 1);                             \
                }                                                             \
            }                                                                 \
        }                                                                     \
        for (; t < t1; t++) {                                                 \
            _Pragma("GCC unroll 8")                                           \
            for (int c = 0; c < (UU); c++) {                                  \
                VT v = NDP_LD(P, S, F, p + (c0[c] + t), s, lm[c]);            \
                UPD(P, X1, X2, c, v, t);                                      \
            }                                                                 \
        }                                                                     \
    }

#define NDP_MAX_UPD(P, MT, IDX, c, v, tap)                                            \
    do {                                                                      \
        MT m_ = P##_gt(v, cur[c]);                                            \
        cur[c] = P##_sel(m_, cur[c], v);                                      \
        if (IDX) ci[c] = P##_isel(m_, ci[c], P##_iadd(io, rb + x0[c] + (tap))); \
    } while (0)

#define NDP_MAX_GROUP(P, T, VT, MT, IT, LM, W, UU, S, IDX, F)                 \
    {                                                                         \
        VT cur[UU];                                                           \
        IT ci[UU];                                                            \
        Py_ssize_t r = 0, t = t0;                                             \
        if (!a->first) {                                                      \
            _Pragma("GCC unroll 8")                                           \
            for (int c = 0; c < (UU); c++) {                                  \
                cur[c] = P##_ld1(out + oo[c], lm[c], F);                      \
                if (IDX) ci[c] = P##_ild(a->idx + oo[c], lm[c], F);           \
            }                                                                 \
        } else if (empty) {                                                   \
            _Pragma("GCC unroll 8")                                           \
            for (int c = 0; c < (UU); c++) {                                  \
                cur[c] = P##_set1(-INFINITY);                                 \
                ci[c] = P##_iset1(-1);                                        \
            }                                                                 \
            r = nr;                                                           \
        } else if ((S) == 2 && t0 + 1 < t1) {                                 \
            const int64_t rb = (IDX) ? a->rbase[0] : 0;                       \
            (void)rb;                                                         \
            _Pragma("GCC unroll 8")                                           \
            for (int c = 0; c < (UU); c++) {                                  \
                VT ve, vo;                                                    \
                P##_ld2p(rows[0] + (c0[c] + t0), lm[c], F, &ve, &vo);         \
                cur[c] = ve;                                                  \
                if (IDX) ci[c] = P##_iadd(io, rb + x0[c] + t0);               \
                NDP_MAX_UPD(P, MT, IDX, c, vo, t0 + 1);                       \
            }                                                                 \
            t = t0 + 2;                                                       \
        } else {                                                              \
            _Pragma("GCC unroll 8")                                           \
            for (int c = 0; c < (UU); c++) {                                  \
                cur[c] = NDP_LD(P, S, F, rows[0] + (c0[c] + t0), s, lm[c]);   \
                if (IDX) ci[c] = P##_iadd(io, a->rbase[0] + x0[c] + t0);      \
            }                                                                 \
            t = t0 + 1;                                                       \
        }                                                                     \
        NDP_TAPS(P, T, VT, UU, S, F, NDP_MAX_UPD, MT, IDX)                    \
        _Pragma("GCC unroll 8")                                               \
        for (int c = 0; c < (UU); c++) {                                      \
            if (F && ntv) P##_stn(out + oo[c], cur[c]);                       \
            else P##_st(out + oo[c], cur[c], lm[c], F);                       \
            if ((IDX) && F && nti) P##_istn(a->idx + oo[c], ci[c]);          \
            else if (IDX) P##_ist(a->idx + oo[c], ci[c], lm[c], F);           \
        }                                                                     \
    }

#define NDP_MAX_BLOCKS(P, T, VT, MT, IT, LM, W, UU, S, IDX)                   \
    {                                                                         \
        NDP_BLOCKS(P, T, LM, W, UU)                                           \
        if (F) NDP_MAX_GROUP(P, T, VT, MT, IT, LM, W, UU, S, IDX, 1)          \
        else NDP_MAX_GROUP(P, T, VT, MT, IT, LM, W, UU, S, IDX, 0)            \
    }

#define NDP_MAX_BODY(P, T, VT, MT, IT, LM, W, U, S, IDX)                      \
    do {                                                                      \
        const T *const *rows = (const T *const *)a->rows;                     \
        T *const out = (T *)a->out;                                           \
        const Py_ssize_t nr = a->nr, t0 = a->t0, t1 = a->t1, s = a->s;        \
        const Py_ssize_t nq = a->nq, nb = (nq + (W) - 1) / (W);               \
        const Py_ssize_t nblk = a->R * nb;                                    \
        const int empty = nr <= 0 || t1 <= t0;                                \
        IT io = P##_iota(s);                                                  \
        const Py_ssize_t pfr = NDP_PF_ROWS(a->rstep, sizeof(T));             \
        const Py_ssize_t pfo = pfr * a->rstep;                                \
        Py_ssize_t b = 0, br2 = 0, bi = 0, bph = a->iper > 0 ? a->iph % a->iper : 0; \
        (void)io;                                                             \
        const int ntv = NDP_CAN_STREAM(a, out, sizeof(T));                    \
        const int nti = (IDX) && NDP_CAN_STREAM(a, a->idx, 8);                \
        for (; b + (U) <= nblk; b += (U))                                     \
            NDP_MAX_BLOCKS(P, T, VT, MT, IT, LM, W, U, S, IDX)                \
        for (; b < nblk; b++)                                                 \
            NDP_MAX_BLOCKS(P, T, VT, MT, IT, LM, W, 1, S, IDX)                \
        if (ntv || nti) P##_fence();                                          \
    } while (0)

#define NDP_AVG_UPD(P, X1, X2, c, v, tap) (acc[c] = P##_add(acc[c], v))

#define NDP_AVG_GROUP(P, T, VT, LM, W, UU, S, F)                              \
    {                                                                         \
        VT acc[UU];                                                           \
        Py_ssize_t r = 0, t = t0;                                             \
        _Pragma("GCC unroll 8")                                               \
        for (int c = 0; c < (UU); c++)                                        \
            acc[c] = a->first ? P##_set1(0) : P##_ld1(out + oo[c], lm[c], F); \
        NDP_TAPS(P, T, VT, UU, S, F, NDP_AVG_UPD, _, _)                       \
        _Pragma("GCC unroll 8")                                               \
        for (int c = 0; c < (UU); c++)                                        \
        {                                                                     \
            VT res_ = a->last ? P##_div(acc[c], dv) : acc[c];                 \
            if (F && ntv) P##_stn(out + oo[c], res_);                         \
            else P##_st(out + oo[c], res_, lm[c], F);                         \
        }                                                                     \
    }

#define NDP_AVG_BLOCKS(P, T, VT, LM, W, UU, S)                                \
    {                                                                         \
        NDP_BLOCKS(P, T, LM, W, UU)                                           \
        if (F) NDP_AVG_GROUP(P, T, VT, LM, W, UU, S, 1)                       \
        else NDP_AVG_GROUP(P, T, VT, LM, W, UU, S, 0)                         \
    }

#define NDP_AVG_BODY(P, T, VT, LM, W, U, S)                                   \
    do {                                                                      \
        const T *const *rows = (const T *const *)a->rows;                     \
        T *const out = (T *)a->out;                                           \
        const Py_ssize_t nr = a->nr, t0 = a->t0, t1 = a->t1, s = a->s;        \
        const Py_ssize_t nq = a->nq, nb = (nq + (W) - 1) / (W);               \
        const Py_ssize_t nblk = a->R * nb;                                    \
        const VT dv = P##_set1((T)a->div);                                    \
        const Py_ssize_t pfr = NDP_PF_ROWS(a->rstep, sizeof(T));             \
        const Py_ssize_t pfo = pfr * a->rstep;                                \
        Py_ssize_t b = 0, br2 = 0, bi = 0, bph = a->iper > 0 ? a->iph % a->iper : 0; \
        const int ntv = NDP_CAN_STREAM(a, out, sizeof(T));                    \
        for (; b + (U) <= nblk; b += (U))                                     \
            NDP_AVG_BLOCKS(P, T, VT, LM, W, U, S)                             \
        for (; b < nblk; b++)                                                 \
            NDP_AVG_BLOCKS(P, T, VT, LM, W, 1, S)                             \
        if (ntv) P##_fence();                                                 \
    } while (0)

/* Functions of one ISA and one type: max with and without indices and the
 * average, each dispatching on the stride (1, 2, other). */
#define NDP_DEFINE_WINDOW(ATTR, SUF, P, T, VT, MT, IT, LM, W, U)              \
    ATTR static void ndp_max_##SUF(const ndp_args *a)                         \
    {                                                                         \
        if (a->idx) {                                                         \
            if (a->s == 1) NDP_MAX_BODY(P, T, VT, MT, IT, LM, W, U, 1, 1);    \
            else if (a->s == 2) NDP_MAX_BODY(P, T, VT, MT, IT, LM, W, U, 2, 1); \
            else NDP_MAX_BODY(P, T, VT, MT, IT, LM, W, U, 0, 1);              \
        } else {                                                              \
            if (a->s == 1) NDP_MAX_BODY(P, T, VT, MT, IT, LM, W, U, 1, 0);    \
            else if (a->s == 2) NDP_MAX_BODY(P, T, VT, MT, IT, LM, W, U, 2, 0); \
            else NDP_MAX_BODY(P, T, VT, MT, IT, LM, W, U, 0, 0);              \
        }                                                                     \
    }                                                                         \
    ATTR static void ndp_avg_##SUF(const ndp_args *a)                         \
    {                                                                         \
        if (a->s == 1) NDP_AVG_BODY(P, T, VT, LM, W, U, 1);                   \
        else if (a->s == 2) NDP_AVG_BODY(P, T, VT, LM, W, U, 2);              \
        else NDP_AVG_BODY(P, T, VT, LM, W, U, 0);                             \
    }

/* ---- generic: one lane, plain C ---------------------------------------- */

#define NDP_SCALAR_PRIMS(P, T)                                                \
    typedef struct { int64_t a; } P##_it;                                     \
    typedef int P##_lmt;                                                      \
    static inline P##_lmt P##_lm(Py_ssize_t rem) { (void)rem; return 1; }     \
    static inline T P##_ld1(const T *p, P##_lmt lm, int F) { (void)lm; (void)F; return *p; } \
    static inline T P##_ld2(const T *p, P##_lmt lm, int F) { (void)lm; (void)F; return *p; } \
    static inline void P##_ld2p(const T *p, P##_lmt lm, int F, T *e, T *o) { (void)lm; (void)F; *e = p[0]; *o = p[1]; } \
    static inline T P##_ldg(const T *p, Py_ssize_t s, P##_lmt lm) { (void)s; (void)lm; return *p; } \
    static inline void P##_st(T *p, T v, P##_lmt lm, int F) { (void)lm; (void)F; *p = v; } \
    static inline void P##_stn(T *p, T v) { *p = v; }                         \
    static inline void P##_istn(int64_t *p, P##_it v) { *p = v.a; }           \
    static inline void P##_fence(void) {}                                     \
    static inline T P##_set1(T v) { return v; }                               \
    static inline T P##_add(T a, T b) { return a + b; }                       \
    static inline T P##_div(T a, T b) { return a / b; }                       \
    static inline int P##_gt(T v, T cur) { return (cur == cur) & !(v <= cur); } \
    static inline T P##_sel(int m, T a, T b) { return m ? b : a; }            \
    static inline P##_it P##_iota(Py_ssize_t s) { (void)s; P##_it r = {0}; return r; } \
    static inline P##_it P##_iset1(int64_t v) { P##_it r = {v}; return r; }   \
    static inline P##_it P##_iadd(P##_it io, int64_t b) { P##_it r = {io.a + b}; return r; } \
    static inline P##_it P##_isel(int m, P##_it a, P##_it b) { return m ? b : a; } \
    static inline P##_it P##_ild(const int64_t *p, P##_lmt lm, int F) { (void)lm; (void)F; P##_it r = {*p}; return r; } \
    static inline void P##_ist(int64_t *p, P##_it v, P##_lmt lm, int F) { (void)lm; (void)F; *p = v.a; }

NDP_SCALAR_PRIMS(ndp_g32, float)
NDP_SCALAR_PRIMS(ndp_g64, double)

NDP_DEFINE_WINDOW(, f32_generic, ndp_g32, float, float, int, ndp_g32_it, ndp_g32_lmt, 1, 4)
NDP_DEFINE_WINDOW(, f64_generic, ndp_g64, double, double, int, ndp_g64_it, ndp_g64_lmt, 1, 4)

/* Broadcast and max-unpooling rows in plain C; compiled again for each ISA
 * below (GCC vectorises the k == 2 loops). */
/* Prefetch the input row fi of a run (rows at step istep from base; rows
 * past the nin of this run are the next run's, when its offset is known). */
static inline void ndp_prefetch_row(const char *base, Py_ssize_t fi, Py_ssize_t nin,
                                    Py_ssize_t istep, int has_nxt, Py_ssize_t nxt,
                                    size_t esize, size_t bytes)
{
    const char *p;
    if (fi < nin)
        p = base + fi * istep * (Py_ssize_t)esize;
    else if (has_nxt)
        p = base + (nxt + (fi - nin) * istep) * (Py_ssize_t)esize;
    else
        return;
    if (bytes > 4096)
        bytes = 4096;
    for (size_t b = 0; b < bytes; b += 64)
        __builtin_prefetch(p + b, 0, 3);
}

/* Input rows to prefetch ahead: at least 8 KiB. */
static inline Py_ssize_t NDP_PF_IN(size_t row_bytes)
{
    return (Py_ssize_t)(8192 / (row_bytes > 0 ? row_bytes : 1)) + 1;
}

#define NDP_BCAST_BODY(T, BCAST2, FENCE)                                                   \
    do {                                                                      \
        const Py_ssize_t D = a->D, k = a->k, L = a->L;                        \
        Py_ssize_t qmax = D * k < L ? D * k : L;                              \
        Py_ssize_t nfull = qmax / k;                                          \
        const Py_ssize_t nin = (a->ph + a->R - 1) / a->kr + 1;                \
        const Py_ssize_t pfi = NDP_PF_IN(D * sizeof(T));                      \
        for (Py_ssize_t r2 = 0; r2 < a->R; r2++) {                            \
            const Py_ssize_t ir = (a->ph + r2) / a->kr;                       \
            const T *restrict src = (const T *)a->src + ir * a->istep;        \
            T *restrict o = (T *)a->out + r2 * a->ostep;                      \
            if ((a->ph + r2) % a->kr == 0)                                    \
                ndp_prefetch_row((const char *)a->src, ir + pfi, nin, a->istep, a->has_nxt, \
                                 a->nxt, sizeof(T), D * sizeof(T));           \
            if (k == 1) {                                                     \
                memcpy(o, src, nfull * sizeof(T));                            \
            } else if (k == 2) {                                              \
                BCAST2(src, nfull, o, a->nt && ((uintptr_t)o & 63) == 0);     \
            } else {                                                          \
                for (Py_ssize_t i = 0; i < nfull; i++)                        \
                    for (Py_ssize_t t = 0; t < k; t++)                        \
                        o[i * k + t] = src[i];                                \
            }                                                                 \
            for (Py_ssize_t q = nfull * k; q < qmax; q++)                     \
                o[q] = src[nfull];                                            \
            for (Py_ssize_t q = qmax; q < L; q++)                             \
                o[q] = 0;                                                     \
        }                                                                     \
        if (a->nt) FENCE();                                                   \
    } while (0)

#define NDP_MUNPOOL_BODY(T, MUNPOOL2, FENCE)                                                 \
    do {                                                                      \
        const Py_ssize_t D = a->D, k = a->k, L = a->L;                        \
        int64_t matched = 0, nonneg = 0, bad = 0;                             \
        const Py_ssize_t nin = (a->ph + a->R - 1) / a->kr + 1;                \
        const Py_ssize_t pfi = NDP_PF_IN(D * (sizeof(T) + 8));                \
        for (Py_ssize_t r2 = 0; r2 < a->R; r2++) {                            \
            const Py_ssize_t ir = (a->ph + r2) / a->kr;                       \
            const T *restrict x = (const T *)a->x + ir * a->istep;            \
            const int64_t *restrict id = a->idx + ir * a->istep;              \
            T *restrict o = (T *)a->out + r2 * a->ostep;                      \
            const int64_t ob = a->ob0 + r2 * a->ostep;                        \
            if ((a->ph + r2) % a->kr == 0) {                                  \
                ndp_prefetch_row((const char *)a->x, ir + pfi, nin, a->istep, a->has_nxt, \
                                 a->nxt, sizeof(T), D * sizeof(T));           \
                ndp_prefetch_row((const char *)a->idx, ir + pfi, nin, a->istep, a->has_nxt, \
                                 a->nxt, 8, D * 8);                           \
            }                                                                 \
            if (k == 2) {                                                     \
                matched += MUNPOOL2(x, id, D, ob, o, a->nt && ((uintptr_t)o & 63) == 0); \
            } else {                                                          \
                for (Py_ssize_t i = 0; i < D; i++)                            \
                    for (Py_ssize_t t = 0; t < k; t++) {                      \
                        int64_t e = id[i] == ob + i * k + t;                  \
                        o[i * k + t] = e ? x[i] : (T)0;                       \
                        matched += e;                                         \
                    }                                                         \
            }                                                                 \
            for (Py_ssize_t q = D * k; q < L; q++)                            \
                o[q] = 0;                                                     \
            if (a->count && (a->ph + r2) % a->kr == 0) {                      \
                for (Py_ssize_t i = 0; i < D; i++) {                          \
                    nonneg += id[i] >= 0;                                     \
                    bad += id[i] < -1;                                        \
                }                                                             \
            }                                                                 \
        }                                                                     \
        a->matched += matched;                                                \
        a->nonneg += nonneg;                                                  \
        a->bad += bad;                                                        \
        if (a->nt) FENCE();                                                   \
    } while (0)

/* The k == 2 rows in plain C: o[2i] = o[2i + 1] = s[i]; and the gather of
 * max unpooling, returning the cells written from x. */
#define NDP_BCAST2_C(T)                                                       \
    static inline void ndp_bcast2_##T(const T *restrict s, Py_ssize_t n, T *restrict o, int nt) \
    {                                                                         \
        (void)nt;                                                             \
        for (Py_ssize_t i = 0; i < n; i++) {                                  \
            o[2 * i] = s[i];                                                  \
            o[2 * i + 1] = s[i];                                              \
        }                                                                     \
    }                                                                         \
    static inline int64_t ndp_munpool2_##T(const T *restrict x, const int64_t *restrict id, \
                                          Py_ssize_t n, int64_t ob, T *restrict o, int nt) \
    {                                                                         \
        int64_t matched = 0;                                                  \
        (void)nt;                                                             \
        for (Py_ssize_t i = 0; i < n; i++) {                                  \
            int64_t e0 = id[i] == ob + 2 * i;                                 \
            int64_t e1 = id[i] == ob + 2 * i + 1;                             \
            o[2 * i] = e0 ? x[i] : (T)0;                                      \
            o[2 * i + 1] = e1 ? x[i] : (T)0;                                  \
            matched += e0 + e1;                                               \
        }                                                                     \
        return matched;                                                       \
    }
NDP_BCAST2_C(float)
NDP_BCAST2_C(double)
static inline void ndp_nofence(void) {}

#define NDP_DEFINE_ROWS(ATTR, SUF, B32, B64, M32, M64, FENCE)                 \
    ATTR static void ndp_bcast_f32_##SUF(ndp_bcast_args *a) { NDP_BCAST_BODY(float, B32, FENCE); } \
    ATTR static void ndp_bcast_f64_##SUF(ndp_bcast_args *a) { NDP_BCAST_BODY(double, B64, FENCE); } \
    ATTR static void ndp_munpool_f32_##SUF(ndp_munpool_args *a) { NDP_MUNPOOL_BODY(float, M32, FENCE); } \
    ATTR static void ndp_munpool_f64_##SUF(ndp_munpool_args *a) { NDP_MUNPOOL_BODY(double, M64, FENCE); }

NDP_DEFINE_ROWS(, generic, ndp_bcast2_float, ndp_bcast2_double, ndp_munpool2_float,
                ndp_munpool2_double, ndp_nofence)

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(NDCONV_NO_SIMD)
#define NDP_X86 1
#include <immintrin.h>

/* ---- AVX2 ---------------------------------------------------------------- */

#define NDP_AVX2 __attribute__((target("avx2")))

/* lanes [0, n) of 8 (n clamped to [0, 8]) as a vector mask */
NDP_AVX2 static inline __m256i ndp_y_lanes32(Py_ssize_t n)
{
    if (n < 0) n = 0;
    if (n > 8) n = 8;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* lanes [0, n) of 4 int64 */
NDP_AVX2 static inline __m256i ndp_y_lanes64(Py_ssize_t n)
{
    if (n < 0) n = 0;
    if (n > 4) n = 4;
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

typedef struct { __m256i a, b; } ndp_y32_it;
typedef Py_ssize_t ndp_y32_lmt;     /* the outputs left from the block on */
static inline Py_ssize_t ndp_y32_lm(Py_ssize_t rem) { return rem; }
NDP_AVX2 static inline __m256 ndp_y32_ld1(const float *p, Py_ssize_t rem, int F)
{ return F || rem >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, ndp_y_lanes32(rem)); }
/* even lanes (0, 2, ...) of u:v and odd lanes */
NDP_AVX2 static inline __m256 ndp_y32_even(__m256 u, __m256 v)
{ return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(u, v, 0x88)), 0xD8)); }
NDP_AVX2 static inline __m256 ndp_y32_odd(__m256 u, __m256 v)
{ return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(u, v, 0xDD)), 0xD8)); }
NDP_AVX2 static inline __m256 ndp_y32_ld2(const float *p, Py_ssize_t rem, int F)
{
    (void)F;
    if (rem > 8)
        return ndp_y32_even(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8));
    Py_ssize_t n = 2 * rem - 1;    /* lanes [0, 2 rem - 1) */
    return ndp_y32_even(_mm256_maskload_ps(p, ndp_y_lanes32(n)),
                        _mm256_maskload_ps(p + 8, ndp_y_lanes32(n - 8)));
}
NDP_AVX2 static inline void ndp_y32_ld2p(const float *p, Py_ssize_t rem, int F, __m256 *e, __m256 *o)
{
    __m256 u, v;
    if (F || rem >= 8) {
        u = _mm256_loadu_ps(p);
        v = _mm256_loadu_ps(p + 8);
    } else {
        u = _mm256_maskload_ps(p, ndp_y_lanes32(2 * rem));
        v = _mm256_maskload_ps(p + 8, ndp_y_lanes32(2 * rem - 8));
    }
    *e = ndp_y32_even(u, v);
    *o = ndp_y32_odd(u, v);
}
NDP_AVX2 static inline __m256 ndp_y32_ldg(const float *p, Py_ssize_t s, Py_ssize_t rem)
{
    __m256i vi = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)s));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, vi,
                                    _mm256_castsi256_ps(ndp_y_lanes32(rem)), 4);
}
NDP_AVX2 static inline void ndp_y32_stn(float *p, __m256 v) { _mm256_stream_ps(p, v); }
NDP_AVX2 static inline void ndp_y32_istn(int64_t *p, ndp_y32_it v)
{ _mm256_stream_si256((__m256i *)p, v.a); _mm256_stream_si256((__m256i *)(p + 4), v.b); }
NDP_AVX2 static inline void ndp_y32_fence(void) { _mm_sfence(); }
NDP_AVX2 static inline void ndp_y32_st(float *p, __m256 v, Py_ssize_t rem, int F)
{ if (F || rem >= 8) _mm256_storeu_ps(p, v); else _mm256_maskstore_ps(p, ndp_y_lanes32(rem), v); }
NDP_AVX2 static inline __m256 ndp_y32_set1(float v) { return _mm256_set1_ps(v); }
NDP_AVX2 static inline __m256 ndp_y32_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
NDP_AVX2 static inline __m256 ndp_y32_div(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
NDP_AVX2 static inline __m256 ndp_y32_gt(__m256 v, __m256 cur)
{ return _mm256_and_ps(_mm256_cmp_ps(v, cur, _CMP_NLE_UQ), _mm256_cmp_ps(cur, cur, _CMP_ORD_Q)); }
NDP_AVX2 static inline __m256 ndp_y32_sel(__m256 m, __m256 a, __m256 b) { return _mm256_blendv_ps(a, b, m); }
NDP_AVX2 static inline ndp_y32_it ndp_y32_iota(Py_ssize_t s)
{ ndp_y32_it r = {_mm256_setr_epi64x(0, s, 2 * s, 3 * s), _mm256_setr_epi64x(4 * s, 5 * s, 6 * s, 7 * s)}; return r; }
NDP_AVX2 static inline ndp_y32_it ndp_y32_iset1(int64_t v)
{ ndp_y32_it r = {_mm256_set1_epi64x(v), _mm256_set1_epi64x(v)}; return r; }
NDP_AVX2 static inline ndp_y32_it ndp_y32_iadd(ndp_y32_it io, int64_t b)
{ __m256i bb = _mm256_set1_epi64x(b); ndp_y32_it r = {_mm256_add_epi64(io.a, bb), _mm256_add_epi64(io.b, bb)}; return r; }
NDP_AVX2 static inline ndp_y32_it ndp_y32_isel(__m256 m, ndp_y32_it a, ndp_y32_it b)
{
    __m256i mi = _mm256_castps_si256(m);
    __m256d ml = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(mi)));
    __m256d mh = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(mi, 1)));
    ndp_y32_it r = {
        _mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(a.a), _mm256_castsi256_pd(b.a), ml)),
        _mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(a.b), _mm256_castsi256_pd(b.b), mh))};
    return r;
}
NDP_AVX2 static inline ndp_y32_it ndp_y32_ild(const int64_t *p, Py_ssize_t rem, int F)
{
    ndp_y32_it r;
    if (F || rem >= 8) {
        r.a = _mm256_loadu_si256((const __m256i *)p);
        r.b = _mm256_loadu_si256((const __m256i *)(p + 4));
    } else {
        r.a = _mm256_maskload_epi64((const long long *)p, ndp_y_lanes64(rem));
        r.b = _mm256_maskload_epi64((const long long *)(p + 4), ndp_y_lanes64(rem - 4));
    }
    return r;
}
NDP_AVX2 static inline void ndp_y32_ist(int64_t *p, ndp_y32_it v, Py_ssize_t rem, int F)
{
    if (F || rem >= 8) {
        _mm256_storeu_si256((__m256i *)p, v.a);
        _mm256_storeu_si256((__m256i *)(p + 4), v.b);
    } else {
        _mm256_maskstore_epi64((long long *)p, ndp_y_lanes64(rem), v.a);
        _mm256_maskstore_epi64((long long *)(p + 4), ndp_y_lanes64(rem - 4), v.b);
    }
}

typedef struct { __m256i a; } ndp_y64_it;
typedef Py_ssize_t ndp_y64_lmt;
static inline Py_ssize_t ndp_y64_lm(Py_ssize_t rem) { return rem; }
NDP_AVX2 static inline __m256d ndp_y64_ld1(const double *p, Py_ssize_t rem, int F)
{ return F || rem >= 4 ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, ndp_y_lanes64(rem)); }
NDP_AVX2 static inline __m256d ndp_y64_ld2(const double *p, Py_ssize_t rem, int F)
{
    __m256d u, v;
    (void)F;
    if (rem > 4) {
        u = _mm256_loadu_pd(p);
        v = _mm256_loadu_pd(p + 4);
    } else {
        Py_ssize_t n = 2 * rem - 1;
        u = _mm256_maskload_pd(p, ndp_y_lanes64(n));
        v = _mm256_maskload_pd(p + 4, ndp_y_lanes64(n - 4));
    }
    return _mm256_permute4x64_pd(_mm256_unpacklo_pd(u, v), 0xD8);  /* u0 v0 u2 v2 -> u0 u2 v0 v2 */
}
NDP_AVX2 static inline void ndp_y64_ld2p(const double *p, Py_ssize_t rem, int F, __m256d *e, __m256d *o)
{
    __m256d u, v;
    if (F || rem >= 4) {
        u = _mm256_loadu_pd(p);
        v = _mm256_loadu_pd(p + 4);
    } else {
        u = _mm256_maskload_pd(p, ndp_y_lanes64(2 * rem));
        v = _mm256_maskload_pd(p + 4, ndp_y_lanes64(2 * rem - 4));
    }
    *e = _mm256_permute4x64_pd(_mm256_unpacklo_pd(u, v), 0xD8);
    *o = _mm256_permute4x64_pd(_mm256_unpackhi_pd(u, v), 0xD8);
}
NDP_AVX2 static inline __m256d ndp_y64_ldg(const double *p, Py_ssize_t s, Py_ssize_t rem)
{
    __m128i vi = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32((int)s));
    return _mm256_mask_i32gather_pd(_mm256_setzero_pd(), p, vi,
                                    _mm256_castsi256_pd(ndp_y_lanes64(rem)), 8);
}
NDP_AVX2 static inline void ndp_y64_stn(double *p, __m256d v) { _mm256_stream_pd(p, v); }
NDP_AVX2 static inline void ndp_y64_istn(int64_t *p, ndp_y64_it v) { _mm256_stream_si256((__m256i *)p, v.a); }
NDP_AVX2 static inline void ndp_y64_fence(void) { _mm_sfence(); }
NDP_AVX2 static inline void ndp_y64_st(double *p, __m256d v, Py_ssize_t rem, int F)
{ if (F || rem >= 4) _mm256_storeu_pd(p, v); else _mm256_maskstore_pd(p, ndp_y_lanes64(rem), v); }
NDP_AVX2 static inline __m256d ndp_y64_set1(double v) { return _mm256_set1_pd(v); }
NDP_AVX2 static inline __m256d ndp_y64_add(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
NDP_AVX2 static inline __m256d ndp_y64_div(__m256d a, __m256d b) { return _mm256_div_pd(a, b); }
NDP_AVX2 static inline __m256d ndp_y64_gt(__m256d v, __m256d cur)
{ return _mm256_and_pd(_mm256_cmp_pd(v, cur, _CMP_NLE_UQ), _mm256_cmp_pd(cur, cur, _CMP_ORD_Q)); }
NDP_AVX2 static inline __m256d ndp_y64_sel(__m256d m, __m256d a, __m256d b) { return _mm256_blendv_pd(a, b, m); }
NDP_AVX2 static inline ndp_y64_it ndp_y64_iota(Py_ssize_t s)
{ ndp_y64_it r = {_mm256_setr_epi64x(0, s, 2 * s, 3 * s)}; return r; }
NDP_AVX2 static inline ndp_y64_it ndp_y64_iset1(int64_t v) { ndp_y64_it r = {_mm256_set1_epi64x(v)}; return r; }
NDP_AVX2 static inline ndp_y64_it ndp_y64_iadd(ndp_y64_it io, int64_t b)
{ ndp_y64_it r = {_mm256_add_epi64(io.a, _mm256_set1_epi64x(b))}; return r; }
NDP_AVX2 static inline ndp_y64_it ndp_y64_isel(__m256d m, ndp_y64_it a, ndp_y64_it b)
{
    ndp_y64_it r = {_mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(a.a), _mm256_castsi256_pd(b.a), m))};
    return r;
}
NDP_AVX2 static inline ndp_y64_it ndp_y64_ild(const int64_t *p, Py_ssize_t rem, int F)
{
    ndp_y64_it r = {F || rem >= 4 ? _mm256_loadu_si256((const __m256i *)p)
                             : _mm256_maskload_epi64((const long long *)p, ndp_y_lanes64(rem))};
    return r;
}
NDP_AVX2 static inline void ndp_y64_ist(int64_t *p, ndp_y64_it v, Py_ssize_t rem, int F)
{
    if (F || rem >= 4) _mm256_storeu_si256((__m256i *)p, v.a);
    else _mm256_maskstore_epi64((long long *)p, ndp_y_lanes64(rem), v.a);
}

NDP_DEFINE_WINDOW(NDP_AVX2, f32_avx2, ndp_y32, float, __m256, __m256, ndp_y32_it, ndp_y32_lmt, 8, 3)
NDP_DEFINE_WINDOW(NDP_AVX2, f64_avx2, ndp_y64, double, __m256d, __m256d, ndp_y64_it, ndp_y64_lmt, 4, 4)
/* k == 2 rows: each value (and index) expanded to two lanes; streaming
 * stores when allowed and aligned (the results allocator aligns big results
 * to 64 bytes). */
NDP_AVX2 static void ndp_y_bcast2_f32(const float *s, Py_ssize_t n, float *o, int nt)
{
    const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(s + i);
        __m256 a = _mm256_permutevar8x32_ps(v, lo), b = _mm256_permutevar8x32_ps(v, hi);
        if (nt) {
            _mm256_stream_ps(o + 2 * i, a);
            _mm256_stream_ps(o + 2 * i + 8, b);
        } else {
            _mm256_storeu_ps(o + 2 * i, a);
            _mm256_storeu_ps(o + 2 * i + 8, b);
        }
    }
    ndp_bcast2_float(s + i, n - i, o + 2 * i, 0);
}
NDP_AVX2 static void ndp_y_bcast2_f64(const double *s, Py_ssize_t n, double *o, int nt)
{
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_loadu_pd(s + i);
        __m256d a = _mm256_permute4x64_pd(v, 0x50), b = _mm256_permute4x64_pd(v, 0xFA);
        if (nt) {
            _mm256_stream_pd(o + 2 * i, a);
            _mm256_stream_pd(o + 2 * i + 4, b);
        } else {
            _mm256_storeu_pd(o + 2 * i, a);
            _mm256_storeu_pd(o + 2 * i + 4, b);
        }
    }
    ndp_bcast2_double(s + i, n - i, o + 2 * i, 0);
}
/* 4 indices -> 8 cells: the lane masks of the cells they name */
NDP_AVX2 static inline __m256i ndp_y_hits(__m256i id, __m256i tlo, __m256i thi)
{
    __m256i mlo = _mm256_cmpeq_epi64(_mm256_permute4x64_epi64(id, 0x50), tlo);
    __m256i mhi = _mm256_cmpeq_epi64(_mm256_permute4x64_epi64(id, 0xFA), thi);
    /* 64-bit lanes -> 32-bit lanes, in order */
    const __m256i pk = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    return _mm256_permute2x128_si256(_mm256_permutevar8x32_epi32(mlo, pk),
                                     _mm256_permutevar8x32_epi32(mhi, pk), 0x20);
}
NDP_AVX2 static int64_t ndp_y_munpool2_f32(const float *x, const int64_t *id, Py_ssize_t n, int64_t ob,
                                           float *o, int nt)
{
    const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    __m256i tlo = _mm256_add_epi64(_mm256_set1_epi64x(ob), _mm256_setr_epi64x(0, 1, 2, 3));
    __m256i thi = _mm256_add_epi64(tlo, _mm256_set1_epi64x(4));
    const __m256i step = _mm256_set1_epi64x(8);
    int64_t matched = 0;
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256 v = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(x + i)), lo);
        __m256i m = ndp_y_hits(_mm256_loadu_si256((const __m256i *)(id + i)), tlo, thi);
        __m256 r = _mm256_and_ps(v, _mm256_castsi256_ps(m));
        matched += __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(m)));
        if (nt)
            _mm256_stream_ps(o + 2 * i, r);
        else
            _mm256_storeu_ps(o + 2 * i, r);
        tlo = _mm256_add_epi64(tlo, step);
        thi = _mm256_add_epi64(thi, step);
    }
    return matched + ndp_munpool2_float(x + i, id + i, n - i, ob + 2 * i, o + 2 * i, 0);
}
NDP_AVX2 static int64_t ndp_y_munpool2_f64(const double *x, const int64_t *id, Py_ssize_t n, int64_t ob,
                                           double *o, int nt)
{
    __m256i tlo = _mm256_add_epi64(_mm256_set1_epi64x(ob), _mm256_setr_epi64x(0, 1, 2, 3));
    __m256i thi = _mm256_add_epi64(tlo, _mm256_set1_epi64x(4));
    const __m256i step = _mm256_set1_epi64x(8);
    int64_t matched = 0;
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_loadu_pd(x + i);
        __m256i ids = _mm256_loadu_si256((const __m256i *)(id + i));
        __m256i mlo = _mm256_cmpeq_epi64(_mm256_permute4x64_epi64(ids, 0x50), tlo);
        __m256i mhi = _mm256_cmpeq_epi64(_mm256_permute4x64_epi64(ids, 0xFA), thi);
        __m256d a = _mm256_and_pd(_mm256_permute4x64_pd(v, 0x50), _mm256_castsi256_pd(mlo));
        __m256d b = _mm256_and_pd(_mm256_permute4x64_pd(v, 0xFA), _mm256_castsi256_pd(mhi));
        matched += __builtin_popcount((unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(mlo)))
                 + __builtin_popcount((unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(mhi)));
        if (nt) {
            _mm256_stream_pd(o + 2 * i, a);
            _mm256_stream_pd(o + 2 * i + 4, b);
        } else {
            _mm256_storeu_pd(o + 2 * i, a);
            _mm256_storeu_pd(o + 2 * i + 4, b);
        }
        tlo = _mm256_add_epi64(tlo, step);
        thi = _mm256_add_epi64(thi, step);
    }
    return matched + ndp_munpool2_double(x + i, id + i, n - i, ob + 2 * i, o + 2 * i, 0);
}
NDP_AVX2 static void ndp_y_fence(void) { _mm_sfence(); }

NDP_DEFINE_ROWS(NDP_AVX2, avx2, ndp_y_bcast2_f32, ndp_y_bcast2_f64, ndp_y_munpool2_f32,
                ndp_y_munpool2_f64, ndp_y_fence)

/* ---- AVX-512 --------------------------------------------------------------- */

#define NDP_512 __attribute__((target("avx512f")))

static inline __mmask16 ndp_z_m16(Py_ssize_t n)
{ return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1); }
static inline __mmask8 ndp_z_m8(Py_ssize_t n)
{ return n >= 8 ? (__mmask8)0xFF : n <= 0 ? (__mmask8)0 : (__mmask8)((1u << n) - 1); }

/* Lane masks of a block: m1 for its outputs (min(rem, W) lanes); sa / sb for
 * the two vectors of a one-tap stride-2 load (lanes [0, 2 rem - 1), or all
 * when rem > W: the lane past the last tap lies before the next output's
 * tap); pa / pb for a two-tap load (lanes [0, 2 rem)). */
typedef struct { __mmask16 m1, sa, sb, pa, pb; } ndp_z32_lmt;
static inline ndp_z32_lmt ndp_z32_lm(Py_ssize_t rem)
{
    ndp_z32_lmt m;
    m.m1 = ndp_z_m16(rem);
    m.sa = rem > 16 ? (__mmask16)0xFFFF : ndp_z_m16(2 * rem - 1);
    m.sb = rem > 16 ? (__mmask16)0xFFFF : ndp_z_m16(2 * rem - 17);
    m.pa = ndp_z_m16(2 * rem);
    m.pb = ndp_z_m16(2 * rem - 16);
    return m;
}
typedef struct { __m512i a, b; } ndp_z32_it;
NDP_512 static inline __m512 ndp_z32_ld1(const float *p, ndp_z32_lmt m, int F)
{ return F ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m.m1, p); }
NDP_512 static inline __m512 ndp_z32_ld2(const float *p, ndp_z32_lmt m, int F)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    (void)F;
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(m.sa, p), ev,
                                  _mm512_maskz_loadu_ps(m.sb, p + 16));
}
NDP_512 static inline void ndp_z32_ld2p(const float *p, ndp_z32_lmt m, int F, __m512 *e, __m512 *o)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 u = F ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m.pa, p);
    __m512 v = F ? _mm512_loadu_ps(p + 16) : _mm512_maskz_loadu_ps(m.pb, p + 16);
    *e = _mm512_permutex2var_ps(u, ev, v);
    *o = _mm512_permutex2var_ps(u, od, v);
}
NDP_512 static inline __m512 ndp_z32_ldg(const float *p, Py_ssize_t s, ndp_z32_lmt m)
{
    __m512i vi = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                    _mm512_set1_epi32((int)s));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m.m1, vi, p, 4);
}
NDP_512 static inline void ndp_z32_stn(float *p, __m512 v) { _mm512_stream_ps(p, v); }
NDP_512 static inline void ndp_z32_istn(int64_t *p, ndp_z32_it v)
{ _mm512_stream_si512((__m512i *)p, v.a); _mm512_stream_si512((__m512i *)(p + 8), v.b); }
NDP_512 static inline void ndp_z32_fence(void) { _mm_sfence(); }
NDP_512 static inline void ndp_z32_st(float *p, __m512 v, ndp_z32_lmt m, int F)
{ if (F) _mm512_storeu_ps(p, v); else _mm512_mask_storeu_ps(p, m.m1, v); }
NDP_512 static inline __m512 ndp_z32_set1(float v) { return _mm512_set1_ps(v); }
NDP_512 static inline __m512 ndp_z32_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
NDP_512 static inline __m512 ndp_z32_div(__m512 a, __m512 b) { return _mm512_div_ps(a, b); }
NDP_512 static inline __mmask16 ndp_z32_gt(__m512 v, __m512 cur)
{ return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(cur, cur, _CMP_ORD_Q), v, cur, _CMP_NLE_UQ); }
NDP_512 static inline __m512 ndp_z32_sel(__mmask16 m, __m512 a, __m512 b) { return _mm512_mask_mov_ps(a, m, b); }
NDP_512 static inline ndp_z32_it ndp_z32_iota(Py_ssize_t s)
{
    ndp_z32_it r = {_mm512_setr_epi64(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s),
                    _mm512_setr_epi64(8 * s, 9 * s, 10 * s, 11 * s, 12 * s, 13 * s, 14 * s, 15 * s)};
    return r;
}
NDP_512 static inline ndp_z32_it ndp_z32_iset1(int64_t v)
{ ndp_z32_it r = {_mm512_set1_epi64(v), _mm512_set1_epi64(v)}; return r; }
NDP_512 static inline ndp_z32_it ndp_z32_iadd(ndp_z32_it io, int64_t b)
{ __m512i bb = _mm512_set1_epi64(b); ndp_z32_it r = {_mm512_add_epi64(io.a, bb), _mm512_add_epi64(io.b, bb)}; return r; }
NDP_512 static inline ndp_z32_it ndp_z32_isel(__mmask16 m, ndp_z32_it a, ndp_z32_it b)
{
    ndp_z32_it r = {_mm512_mask_mov_epi64(a.a, (__mmask8)m, b.a),
                    _mm512_mask_mov_epi64(a.b, (__mmask8)(m >> 8), b.b)};
    return r;
}
NDP_512 static inline ndp_z32_it ndp_z32_ild(const int64_t *p, ndp_z32_lmt m, int F)
{
    ndp_z32_it r = {_mm512_maskz_loadu_epi64(F ? 0xFF : (__mmask8)m.m1, p),
                    _mm512_maskz_loadu_epi64(F ? 0xFF : (__mmask8)(m.m1 >> 8), p + 8)};
    return r;
}
NDP_512 static inline void ndp_z32_ist(int64_t *p, ndp_z32_it v, ndp_z32_lmt m, int F)
{
    if (F) {
        _mm512_storeu_si512(p, v.a);
        _mm512_storeu_si512(p + 8, v.b);
    } else {
        _mm512_mask_storeu_epi64(p, (__mmask8)m.m1, v.a);
        _mm512_mask_storeu_epi64(p + 8, (__mmask8)(m.m1 >> 8), v.b);
    }
}

typedef struct { __mmask8 m1, sa, sb, pa, pb; } ndp_z64_lmt;
static inline ndp_z64_lmt ndp_z64_lm(Py_ssize_t rem)
{
    ndp_z64_lmt m;
    m.m1 = ndp_z_m8(rem);
    m.sa = rem > 8 ? (__mmask8)0xFF : ndp_z_m8(2 * rem - 1);
    m.sb = rem > 8 ? (__mmask8)0xFF : ndp_z_m8(2 * rem - 9);
    m.pa = ndp_z_m8(2 * rem);
    m.pb = ndp_z_m8(2 * rem - 8);
    return m;
}
typedef struct { __m512i a; } ndp_z64_it;
NDP_512 static inline __m512d ndp_z64_ld1(const double *p, ndp_z64_lmt m, int F)
{ return F ? _mm512_loadu_pd(p) : _mm512_maskz_loadu_pd(m.m1, p); }
NDP_512 static inline __m512d ndp_z64_ld2(const double *p, ndp_z64_lmt m, int F)
{
    const __m512i ev = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    (void)F;
    return _mm512_permutex2var_pd(_mm512_maskz_loadu_pd(m.sa, p), ev,
                                  _mm512_maskz_loadu_pd(m.sb, p + 8));
}
NDP_512 static inline void ndp_z64_ld2p(const double *p, ndp_z64_lmt m, int F, __m512d *e, __m512d *o)
{
    const __m512i ev = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i od = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    __m512d u = F ? _mm512_loadu_pd(p) : _mm512_maskz_loadu_pd(m.pa, p);
    __m512d v = F ? _mm512_loadu_pd(p + 8) : _mm512_maskz_loadu_pd(m.pb, p + 8);
    *e = _mm512_permutex2var_pd(u, ev, v);
    *o = _mm512_permutex2var_pd(u, od, v);
}
NDP_512 static inline __m512d ndp_z64_ldg(const double *p, Py_ssize_t s, ndp_z64_lmt m)
{
    __m256i vi = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)s));
    return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), m.m1, vi, p, 8);
}
NDP_512 static inline void ndp_z64_stn(double *p, __m512d v) { _mm512_stream_pd(p, v); }
NDP_512 static inline void ndp_z64_istn(int64_t *p, ndp_z64_it v) { _mm512_stream_si512((__m512i *)p, v.a); }
NDP_512 static inline void ndp_z64_fence(void) { _mm_sfence(); }
NDP_512 static inline void ndp_z64_st(double *p, __m512d v, ndp_z64_lmt m, int F)
{ if (F) _mm512_storeu_pd(p, v); else _mm512_mask_storeu_pd(p, m.m1, v); }
NDP_512 static inline __m512d ndp_z64_set1(double v) { return _mm512_set1_pd(v); }
NDP_512 static inline __m512d ndp_z64_add(__m512d a, __m512d b) { return _mm512_add_pd(a, b); }
NDP_512 static inline __m512d ndp_z64_div(__m512d a, __m512d b) { return _mm512_div_pd(a, b); }
NDP_512 static inline __mmask8 ndp_z64_gt(__m512d v, __m512d cur)
{ return _mm512_mask_cmp_pd_mask(_mm512_cmp_pd_mask(cur, cur, _CMP_ORD_Q), v, cur, _CMP_NLE_UQ); }
NDP_512 static inline __m512d ndp_z64_sel(__mmask8 m, __m512d a, __m512d b) { return _mm512_mask_mov_pd(a, m, b); }
NDP_512 static inline ndp_z64_it ndp_z64_iota(Py_ssize_t s)
{ ndp_z64_it r = {_mm512_setr_epi64(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s)}; return r; }
NDP_512 static inline ndp_z64_it ndp_z64_iset1(int64_t v) { ndp_z64_it r = {_mm512_set1_epi64(v)}; return r; }
NDP_512 static inline ndp_z64_it ndp_z64_iadd(ndp_z64_it io, int64_t b)
{ ndp_z64_it r = {_mm512_add_epi64(io.a, _mm512_set1_epi64(b))}; return r; }
NDP_512 static inline ndp_z64_it ndp_z64_isel(__mmask8 m, ndp_z64_it a, ndp_z64_it b)
{ ndp_z64_it r = {_mm512_mask_mov_epi64(a.a, m, b.a)}; return r; }
NDP_512 static inline ndp_z64_it ndp_z64_ild(const int64_t *p, ndp_z64_lmt m, int F)
{ ndp_z64_it r = {_mm512_maskz_loadu_epi64(F ? 0xFF : m.m1, p)}; return r; }
NDP_512 static inline void ndp_z64_ist(int64_t *p, ndp_z64_it v, ndp_z64_lmt m, int F)
{ if (F) _mm512_storeu_si512(p, v.a); else _mm512_mask_storeu_epi64(p, m.m1, v.a); }

NDP_DEFINE_WINDOW(NDP_512, f32_avx512, ndp_z32, float, __m512, __mmask16, ndp_z32_it, ndp_z32_lmt, 16, 4)
NDP_DEFINE_WINDOW(NDP_512, f64_avx512, ndp_z64, double, __m512d, __mmask8, ndp_z64_it, ndp_z64_lmt, 8, 4)
/* Each of n values twice, side by side: W lanes of T a step; S and I are
 * the intrinsics' suffixes (ps/pd, epi32/epi64), IT the index type, MASK
 * the tail-mask helper. */
#define NDP_DEFINE_BCAST2(NAME, T, VT, W, S, IT, MASK)                        \
    NDP_512 static void NAME(const T *s, Py_ssize_t n, T *o, int nt)          \
    {                                                                         \
        IT il[W], ih[W];                                                      \
        for (int k = 0; k < W; k++) {                                         \
            il[k] = k / 2;                                                    \
            ih[k] = W / 2 + k / 2;                                            \
        }                                                                     \
        const __m512i lo = _mm512_loadu_si512(il), hi = _mm512_loadu_si512(ih); \
        Py_ssize_t i = 0;                                                     \
        for (; i + W <= n; i += W) {                                          \
            VT v = _mm512_loadu_##S(s + i);                                   \
            VT a = _mm512_permutexvar_##S(lo, v), b = _mm512_permutexvar_##S(hi, v); \
            if (nt) {                                                         \
                _mm512_stream_##S(o + 2 * i, a);                              \
                _mm512_stream_##S(o + 2 * i + W, b);                          \
            } else {                                                          \
                _mm512_storeu_##S(o + 2 * i, a);                              \
                _mm512_storeu_##S(o + 2 * i + W, b);                          \
            }                                                                 \
        }                                                                     \
        if (i < n) {                                                          \
            VT v = _mm512_maskz_loadu_##S(MASK(n - i), s + i);                \
            _mm512_mask_storeu_##S(o + 2 * i, MASK(2 * (n - i)), _mm512_permutexvar_##S(lo, v)); \
            _mm512_mask_storeu_##S(o + 2 * i + W, MASK(2 * (n - i) - W),      \
                                   _mm512_permutexvar_##S(hi, v));            \
        }                                                                     \
    }
NDP_DEFINE_BCAST2(ndp_z_bcast2_f32, float, __m512, 16, ps, int32_t, ndp_z_m16)
NDP_DEFINE_BCAST2(ndp_z_bcast2_f64, double, __m512d, 8, pd, int64_t, ndp_z_m8)
/* 8 values and indices -> 16 cells (f32) */
NDP_512 static int64_t ndp_z_munpool2_f32(const float *x, const int64_t *id, Py_ssize_t n, int64_t ob,
                                          float *o, int nt)
{
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i l64 = _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3), h64 = _mm512_setr_epi64(4, 4, 5, 5, 6, 6, 7, 7);
    __m512i tlo = _mm512_add_epi64(_mm512_set1_epi64(ob), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    __m512i thi = _mm512_add_epi64(tlo, _mm512_set1_epi64(8));
    const __m512i step = _mm512_set1_epi64(16);
    int64_t matched = 0;
    for (Py_ssize_t i = 0; i < n; i += 8) {
        Py_ssize_t r = n - i;
        __mmask8 mi = ndp_z_m8(r);
        __m512 v = _mm512_permutexvar_ps(lo, _mm512_castps256_ps512(
            _mm512_castps512_ps256(_mm512_maskz_loadu_ps((__mmask16)mi, x + i))));
        __m512i ids = _mm512_maskz_loadu_epi64(mi, id + i);
        __mmask16 m = (__mmask16)(_mm512_cmpeq_epi64_mask(_mm512_permutexvar_epi64(l64, ids), tlo)
                                  | ((unsigned)_mm512_cmpeq_epi64_mask(_mm512_permutexvar_epi64(h64, ids), thi) << 8));
        m &= ndp_z_m16(2 * r);
        matched += __builtin_popcount((unsigned)m);
        __m512 res = _mm512_maskz_mov_ps(m, v);
        if (r >= 8 && nt)
            _mm512_stream_ps(o + 2 * i, res);
        else if (r >= 8)
            _mm512_storeu_ps(o + 2 * i, res);
        else
            _mm512_mask_storeu_ps(o + 2 * i, ndp_z_m16(2 * r), res);
        tlo = _mm512_add_epi64(tlo, step);
        thi = _mm512_add_epi64(thi, step);
    }
    return matched;
}
/* 4 values and indices -> 8 cells (f64) */
NDP_512 static int64_t ndp_z_munpool2_f64(const double *x, const int64_t *id, Py_ssize_t n, int64_t ob,
                                          double *o, int nt)
{
    const __m512i l64 = _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3);
    __m512i t = _mm512_add_epi64(_mm512_set1_epi64(ob), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    const __m512i step = _mm512_set1_epi64(8);
    int64_t matched = 0;
    for (Py_ssize_t i = 0; i < n; i += 4) {
        Py_ssize_t r = n - i;
        __mmask8 mi = ndp_z_m8(r < 4 ? r : 4);
        __m512d v = _mm512_permutexvar_pd(l64, _mm512_maskz_loadu_pd(mi, x + i));
        __m512i ids = _mm512_permutexvar_epi64(l64, _mm512_maskz_loadu_epi64(mi, id + i));
        __mmask8 m = _mm512_cmpeq_epi64_mask(ids, t) & ndp_z_m8(2 * r);
        matched += __builtin_popcount((unsigned)m);
        __m512d res = _mm512_maskz_mov_pd(m, v);
        if (r >= 4 && nt)
            _mm512_stream_pd(o + 2 * i, res);
        else if (r >= 4)
            _mm512_storeu_pd(o + 2 * i, res);
        else
            _mm512_mask_storeu_pd(o + 2 * i, ndp_z_m8(2 * r), res);
        t = _mm512_add_epi64(t, step);
    }
    return matched;
}
NDP_512 static void ndp_z_fence(void) { _mm_sfence(); }

NDP_DEFINE_ROWS(NDP_512, avx512, ndp_z_bcast2_f32, ndp_z_bcast2_f64, ndp_z_munpool2_f32,
                ndp_z_munpool2_f64, ndp_z_fence)
#endif

/* ---- selection ------------------------------------------------------------ */

static ndp_fn ndp_max_f32 = ndp_max_f32_generic;
static ndp_fn ndp_max_f64 = ndp_max_f64_generic;
static ndp_fn ndp_avg_f32 = ndp_avg_f32_generic;
static ndp_fn ndp_avg_f64 = ndp_avg_f64_generic;
static ndp_row_fn ndp_bcast_f32 = ndp_bcast_f32_generic;
static ndp_row_fn ndp_bcast_f64 = ndp_bcast_f64_generic;
static ndp_mu_fn ndp_munpool_f32 = ndp_munpool_f32_generic;
static ndp_mu_fn ndp_munpool_f64 = ndp_munpool_f64_generic;
static const char *ndp_isa = "generic";

#define NDP_USE(SUF)                                                          \
    do {                                                                      \
        ndp_max_f32 = ndp_max_f32_##SUF;                                      \
        ndp_max_f64 = ndp_max_f64_##SUF;                                      \
        ndp_avg_f32 = ndp_avg_f32_##SUF;                                      \
        ndp_avg_f64 = ndp_avg_f64_##SUF;                                      \
        ndp_bcast_f32 = ndp_bcast_f32_##SUF;                                  \
        ndp_bcast_f64 = ndp_bcast_f64_##SUF;                                  \
        ndp_munpool_f32 = ndp_munpool_f32_##SUF;                              \
        ndp_munpool_f64 = ndp_munpool_f64_##SUF;                              \
        ndp_isa = #SUF;                                                       \
    } while (0)

/* Pick the kernels: name is "auto", "avx512", "avx2" or "generic" (the
 * widest one this CPU runs, no wider than asked).  Returns the ISA chosen. */
static const char *ndconv_pool_select(const char *name)
{
    int want512 = 1, want2 = 1;
    if (name[0] == 'g') want512 = want2 = 0;
    else if (strcmp(name, "avx2") == 0) want512 = 0;
    NDP_USE(generic);
#ifdef NDP_X86
    __builtin_cpu_init();
    if (want512 && __builtin_cpu_supports("avx512f"))
        NDP_USE(avx512);
    else if (want2 && __builtin_cpu_supports("avx2"))
        NDP_USE(avx2);
#endif
    return ndp_isa;
}

/* ---- results allocator ------------------------------------------------------
 *
 * A NumPy memory handler (layout of NumPy's PyDataMem_Handler, version 1) for
 * the results of the pooling family.  A result of 4 MiB or more gets a
 * mapping of its own, 2 MiB aligned and advised for huge pages, so that it is
 * faulted in 2 MiB at a time (this VM takes ~3.6 us per 4 KiB fault, and a
 * plain malloc'ed block starts and ends with up to 2 MiB of them).  When such
 * a result is freed, its mapping is kept for the next result of the same
 * size (at most NDP_KEEP of them), after madvise(MADV_FREE): the kernel may
 * take the pages back whenever it needs memory, and until it does, writing
 * the next result costs no page faults at all.  Smaller results come from
 * malloc.  Every block starts NDP_HDR bytes into its allocation, after a
 * header saying where it came from. */

#include <stdlib.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <pthread.h>
#define NDP_MMAP 1
#endif

#define NDP_BIG ((size_t)4 << 20)
#define NDP_ALIGN ((size_t)2 << 20)
#define NDP_HDR ((size_t)64)
#define NDP_KEEP 4
#define NDP_KEEP_BYTES ((size_t)1 << 30)
#define NDP_MAGIC ((size_t)0x6e64636f6e76706full)

typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} ndp_mem_allocator;

typedef struct {
    char name[127];
    uint8_t version;
    ndp_mem_allocator allocator;
} ndp_mem_handler;

/* header: magic, mapping size (0: from malloc), start of the allocation, size asked */
typedef struct { size_t magic, map; char *base; size_t size; } ndp_hdr;

#ifdef NDP_MMAP
static struct { char *base; size_t map; } ndp_kept[NDP_KEEP];
static int ndp_nkept = 0;
static pthread_mutex_t ndp_kept_lock = PTHREAD_MUTEX_INITIALIZER;
#endif

static void *ndp_mark(char *base, size_t map, size_t size)
{
    ndp_hdr *h = (ndp_hdr *)base;
    h->magic = NDP_MAGIC;
    h->map = map;
    h->base = base;
    h->size = size;
    return base + NDP_HDR;
}

/* A big block, kept or new; *fresh says whether it is all zeros. */
static void *ndp_big_block(size_t size, int *fresh)
{
#ifdef NDP_MMAP
    size_t map = (size + NDP_HDR + NDP_ALIGN - 1) & ~(NDP_ALIGN - 1);
    char *base = NULL;
    pthread_mutex_lock(&ndp_kept_lock);
    for (int i = 0; i < ndp_nkept; i++)
        if (ndp_kept[i].map == map) {
            base = ndp_kept[i].base;
            ndp_kept[i] = ndp_kept[--ndp_nkept];
            break;
        }
    pthread_mutex_unlock(&ndp_kept_lock);
    *fresh = base == NULL;
    if (base == NULL) {
        char *raw = (char *)mmap(NULL, map + NDP_ALIGN, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
            return NULL;
        base = (char *)(((uintptr_t)raw + NDP_ALIGN - 1) & ~(uintptr_t)(NDP_ALIGN - 1));
        if (base > raw)
            munmap(raw, (size_t)(base - raw));
        if (raw + map + NDP_ALIGN > base + map)
            munmap(base + map, (size_t)(raw + map + NDP_ALIGN - (base + map)));
#ifdef MADV_HUGEPAGE
        madvise(base, map, MADV_HUGEPAGE);
#endif
    }
    return ndp_mark(base, map, size);
#else
    (void)size;
    *fresh = 0;
    return NULL;
#endif
}

static void *ndp_h_malloc(void *ctx, size_t size)
{
    (void)ctx;
    if (size > SIZE_MAX - NDP_ALIGN - NDP_HDR)
        return NULL;
#ifdef NDP_MMAP
    if (size >= NDP_BIG) {
        int fresh;
        return ndp_big_block(size, &fresh);
    }
#endif
    char *p = (char *)malloc(size + NDP_HDR);
    return p ? ndp_mark(p, 0, size) : NULL;
}

static void *ndp_h_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    if (elsize && nelem > (SIZE_MAX - NDP_ALIGN - NDP_HDR) / elsize)
        return NULL;
    size_t size = nelem * elsize;
#ifdef NDP_MMAP
    if (size >= NDP_BIG) {
        int fresh;
        void *p = ndp_big_block(size, &fresh);
        if (p && !fresh)
            memset(p, 0, size);
        return p;
    }
#endif
    char *p = (char *)calloc(1, size + NDP_HDR);
    return p ? ndp_mark(p, 0, size) : NULL;
}

static void ndp_h_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    (void)size;
    if (ptr == NULL)
        return;
    ndp_hdr *h = (ndp_hdr *)((char *)ptr - NDP_HDR);
    if (h->map == 0) {
        free(h->base);
        return;
    }
#ifdef NDP_MMAP
    char *base = h->base;
    size_t map = h->map;
    if (ndp_nkept < NDP_KEEP && map <= NDP_KEEP_BYTES) {
        /* advised before it is published: nobody may be writing it then */
#ifdef MADV_FREE
        if (madvise(base, map, MADV_FREE) != 0)
#endif
            madvise(base, map, MADV_DONTNEED);
        pthread_mutex_lock(&ndp_kept_lock);
        size_t kept = map;
        for (int i = 0; i < ndp_nkept; i++)
            kept += ndp_kept[i].map;
        if (ndp_nkept < NDP_KEEP && kept <= NDP_KEEP_BYTES) {
            ndp_kept[ndp_nkept].base = base;
            ndp_kept[ndp_nkept].map = map;
            ndp_nkept++;
            base = NULL;
        }
        pthread_mutex_unlock(&ndp_kept_lock);
    }
    if (base != NULL)
        munmap(base, map);
#endif
}

static void *ndp_h_realloc(void *ctx, void *ptr, size_t new_size)
{
    if (ptr == NULL)
        return ndp_h_malloc(ctx, new_size);
    ndp_hdr *h = (ndp_hdr *)((char *)ptr - NDP_HDR);
    if (h->map == 0 && new_size < NDP_BIG) {
        if (new_size > SIZE_MAX - NDP_HDR)
            return NULL;
        char *p = (char *)realloc(h->base, new_size + NDP_HDR);
        return p ? ndp_mark(p, 0, new_size) : NULL;
    }
    void *q = ndp_h_malloc(ctx, new_size);
    if (q == NULL)
        return NULL;
    memcpy(q, ptr, h->size < new_size ? h->size : new_size);
    ndp_h_free(ctx, ptr, h->size);
    return q;
}

/* Release the kept mappings (for tests, and for whoever wants the memory). */
static void ndp_release_kept(void)
{
#ifdef NDP_MMAP
    pthread_mutex_lock(&ndp_kept_lock);
    while (ndp_nkept > 0) {
        ndp_nkept--;
        munmap(ndp_kept[ndp_nkept].base, ndp_kept[ndp_nkept].map);
    }
    pthread_mutex_unlock(&ndp_kept_lock);
#endif
}

static int ndp_nkept_blocks(void)
{
#ifdef NDP_MMAP
    return ndp_nkept;
#else
    return 0;
#endif
}

static ndp_mem_handler ndp_results_handler = {
    "ndconv_results", 1,
    {NULL, ndp_h_malloc, ndp_h_calloc, ndp_h_realloc, ndp_h_free}};

#endif
