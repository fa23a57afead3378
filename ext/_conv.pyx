# cython: language_level=3, cdivision=True, nonecheck=False
# (boundscheck, wraparound and initializedcheck come from setup.py, which
# turns them on for NDCONV_DEBUG=1 builds)
"""N-D convolution kernels.

Every convolution-like operation of ndconv is reduced, in Python, to one or
more *phases*: a plain strided correlation between a sub-grid of the output
and a fixed set of kernel taps.  Along axis ``a`` the phase's output cells are
``start[a] + j * step[a]`` for ``0 <= j < count[a]``, and tap ``t`` of that
axis reads input cell ``off[t] + j * in_step[a]``; cells outside the input
are zeros or, for the other padding modes, mapped back inside as numpy.pad
does.  The geometry arrives as one packed int64 vector (see ``_geom``), so
the loops below never depend on the number of axes.

Two kernels compute a phase: ``conv_gemm`` (im2col on a bounded tile of
output cells, then one GEMM per tile through BLAS, called single-threaded
from each OpenMP thread) and ``conv_direct`` (few channels: each output row
accumulates tap by tap along the contiguous last axis).  ``conv_grad_w``
computes the weight gradient of one phase into fixed per-chunk partial sums
that Python adds in chunk order.  Every work item writes its own cells, so
results do not depend on the thread count.
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "stdlib.h" nogil:
    void* aligned_alloc(size_t alignment, size_t size)
from libc.string cimport memset

from _util cimport MAXD, MODE_CONSTANT, floordiv, ceildiv, map_index, valid_range

cdef extern from "ndconv_mk.h" nogil:
    void ndconv_mk_f32(int mr, Py_ssize_t K, const float* A, Py_ssize_t lda,
                       const float** ptrs, Py_ssize_t q0, float* C, Py_ssize_t ldc,
                       int init, const float* bias)
    void ndconv_mk_f64(int mr, Py_ssize_t K, const double* A, Py_ssize_t lda,
                       const double** ptrs, Py_ssize_t q0, double* C, Py_ssize_t ldc,
                       int init, const double* bias)
    void ndconv_mks_f32(int mr, Py_ssize_t K, const float* A, Py_ssize_t lda,
                        const float** ptrs, Py_ssize_t q0, float* C, Py_ssize_t ldc,
                        int init, const float* bias)
    void ndconv_mks_f64(int mr, Py_ssize_t K, const double* A, Py_ssize_t lda,
                        const double** ptrs, Py_ssize_t q0, double* C, Py_ssize_t ldc,
                        int init, const double* bias)
    void ndconv_prefetch(const void* p, Py_ssize_t nbytes)
    void ndconv_wino_in_float(float* d, Py_ssize_t ld, const float* ev, const float* od,
                              Py_ssize_t n)
    void ndconv_wino_in_double(double* d, Py_ssize_t ld, const double* ev, const double* od,
                               Py_ssize_t n)
    void ndconv_wino_row_f32(float* d, Py_ssize_t ld, const float* x, Py_ssize_t i0,
                             Py_ssize_t size, Py_ssize_t n)
    void ndconv_wino_row_f64(double* d, Py_ssize_t ld, const double* x, Py_ssize_t i0,
                             Py_ssize_t size, Py_ssize_t n)
    void ndconv_wino_select()
    void ndconv_wino_pairs_float(float* p0, float* p1, float* p2, float* p3, Py_ssize_t n,
                                 int forward)
    void ndconv_wino_pairs_double(double* p0, double* p1, double* p2, double* p3,
                                  Py_ssize_t n, int forward)
    void ndconv_wino_bt2_float(float* d, Py_ssize_t ldk, Py_ssize_t ldt, const float* s,
                               Py_ssize_t ldr, Py_ssize_t lds, Py_ssize_t len, Py_ssize_t nt)
    void ndconv_wino_bt2_double(double* d, Py_ssize_t ldk, Py_ssize_t ldt, const double* s,
                                Py_ssize_t ldr, Py_ssize_t lds, Py_ssize_t len,
                                Py_ssize_t nt)
    void ndconv_wino_a2_float(float* d, Py_ssize_t ldk, Py_ssize_t ldt, const float* s,
                              Py_ssize_t ldr, Py_ssize_t lds, Py_ssize_t len, Py_ssize_t nt)
    void ndconv_wino_a2_double(double* d, Py_ssize_t ldk, Py_ssize_t ldt, const double* s,
                               Py_ssize_t ldr, Py_ssize_t lds, Py_ssize_t len, Py_ssize_t nt)
    int ndconv_wino_out_float(float* dst, const float* m0, const float* m1, const float* m2,
                              const float* m3, Py_ssize_t nout, float b)
    int ndconv_wino_out_double(double* dst, const double* m0, const double* m1,
                               const double* m2, const double* m3, Py_ssize_t nout, double b)
    void ndconv_transpose_f32(const float* src, Py_ssize_t lds, float* dst, Py_ssize_t ldd,
                              Py_ssize_t rows, Py_ssize_t cols, int cols_outer)
    void ndconv_transpose_f64(const double* src, Py_ssize_t lds, double* dst, Py_ssize_t ldd,
                              Py_ssize_t rows, Py_ssize_t cols, int cols_outer)
    void ndconv_deint_f32(float* d, Py_ssize_t ld, const float* src, Py_ssize_t n, Py_ssize_t s)
    void ndconv_deint_f64(double* d, Py_ssize_t ld, const double* src, Py_ssize_t n,
                          Py_ssize_t s)
    void ndconv_rk_f32(Py_ssize_t nrow, Py_ssize_t lq, const float* Y, Py_ssize_t ldyr,
                       Py_ssize_t ldyi, const float** P, Py_ssize_t ldp, float* G)
    void ndconv_rk_f64(Py_ssize_t nrow, Py_ssize_t lq, const double* Y, Py_ssize_t ldyr,
                       Py_ssize_t ldyi, const double** P, Py_ssize_t ldp, double* G)
    int NDCONV_RK_MR
    int NDCONV_RK_NK
    int ndconv_vw_f32
    int ndconv_vw_f64
    int ndconv_mr
    int ndconv_nr_f32
    int ndconv_nr_f64
    const char* ndconv_mk_select(const char* name)
    const char* ndconv_isa


def select_isa(str name='auto'):
    """Choose the micro-kernels ('auto', 'avx512', 'avx2' or 'generic');
    returns (isa, MR, NR for float32, NR for float64)."""
    cdef bytes b = name.encode()
    isa = ndconv_mk_select(b).decode()
    ndconv_wino_select()
    return isa, ndconv_mr, ndconv_nr_f32, ndconv_nr_f64


def current_isa():
    """The ISA of the micro-kernels in use: 'avx512', 'avx2' or 'generic'."""
    return ndconv_isa.decode()


def kernel_shape():
    """(MR, NR for float32, NR for float64) of the micro-kernels in use."""
    return ndconv_mr, ndconv_nr_f32, ndconv_nr_f64


select_isa('auto')


ctypedef struct Geom:
    Py_ssize_t n
    const Py_ssize_t* in_shape
    const Py_ssize_t* in_stride
    const Py_ssize_t* count
    const Py_ssize_t* start
    const Py_ssize_t* step
    const Py_ssize_t* out_stride
    const Py_ssize_t* in_step
    const Py_ssize_t* ntaps
    const Py_ssize_t* tap_base
    const Py_ssize_t* tap_off
    Py_ssize_t in_vol
    Py_ssize_t out_vol
    Py_ssize_t tv
    Py_ssize_t psub
    int mode


cdef Geom _geom(const Py_ssize_t[::1] geo, Py_ssize_t n, int mode):
    """Unpack the geometry vector built by ndconv.conv: per axis in_shape,
    in_stride, count, start, step, out_stride, in_step, ntaps, tap_base;
    then the output volume; then every axis' tap offsets."""
    cdef Geom G
    cdef Py_ssize_t a
    G.n = n
    G.in_shape = &geo[0]
    G.in_stride = &geo[n]
    G.count = &geo[2 * n]
    G.start = &geo[3 * n]
    G.step = &geo[4 * n]
    G.out_stride = &geo[5 * n]
    G.in_step = &geo[6 * n]
    G.ntaps = &geo[7 * n]
    G.tap_base = &geo[8 * n]
    G.out_vol = geo[9 * n]
    G.tap_off = &geo[9 * n + 1]
    G.in_vol = 1
    G.tv = 1
    G.psub = 1
    for a in range(n):
        G.in_vol *= G.in_shape[a]
        G.tv *= G.ntaps[a]
        G.psub *= G.count[a]
    G.mode = mode
    return G


# ---------------------------------------------------------------------------
# BLAS, row-major.  Dimensions are checked to fit an int by the caller.

cdef inline void gemm_nn(int M, int N, int K, const floating* A, int lda,
                         const floating* B, int ldb, floating* C, int ldc) noexcept nogil:
    """C(M x N) += A(M x K) @ B(K x N), all row-major."""
    cdef char tr = b'N'
    cdef floating one = 1
    if floating is float:
        sgemm(&tr, &tr, &N, &M, &K, &one, <float*>B, &ldb, <float*>A, &lda,
              &one, C, &ldc)
    else:
        dgemm(&tr, &tr, &N, &M, &K, &one, <double*>B, &ldb, <double*>A, &lda,
              &one, C, &ldc)


cdef inline void gemm_nt(int M, int N, int K, const floating* A, int lda,
                         const floating* B, int ldb, floating* C, int ldc) noexcept nogil:
    """C(M x N) += A(M x K) @ B(N x K)^T, all row-major."""
    cdef char tt = b'T'
    cdef char tn = b'N'
    cdef floating one = 1
    if floating is float:
        sgemm(&tt, &tn, &N, &M, &K, &one, <float*>B, &ldb, <float*>A, &lda,
              &one, C, &ldc)
    else:
        dgemm(&tt, &tn, &N, &M, &K, &one, <double*>B, &ldb, <double*>A, &lda,
              &one, C, &ldc)


# ---------------------------------------------------------------------------
# Helpers on runs along the last axis.

cdef inline void unravel(Py_ssize_t p, const Py_ssize_t* shape, Py_ssize_t n,
                         Py_ssize_t* j) noexcept nogil:
    cdef Py_ssize_t a
    for a in range(n - 1, -1, -1):
        j[a] = p % shape[a]
        p = p // shape[a]


cdef inline void advance(Py_ssize_t* j, const Py_ssize_t* shape, Py_ssize_t n,
                         Py_ssize_t by) noexcept nogil:
    """Move the multi-index ``j`` by ``by`` cells along the last axis (at most
    to the end of the row), carrying into the outer axes."""
    cdef Py_ssize_t a = n - 1
    j[a] += by
    while a > 0 and j[a] >= shape[a]:
        j[a] = 0
        a -= 1
        j[a] += 1


cdef inline bint outer_base_n(const Geom* G, const Py_ssize_t* j, const Py_ssize_t* tk,
                              Py_ssize_t m, Py_ssize_t* base) noexcept nogil:
    """Input offset, over the first m axes, of the row read by taps ``tk`` at
    cell ``j``; False when that row is padding of zeros."""
    cdef Py_ssize_t a, i, b = 0
    for a in range(m):
        i = G.tap_off[G.tap_base[a] + tk[a]] + j[a] * G.in_step[a]
        if i < 0 or i >= G.in_shape[a]:
            i = map_index(i, G.in_shape[a], G.mode)
            if i < 0:
                return False
        b += i * G.in_stride[a]
    base[0] = b
    return True


cdef inline bint outer_base(const Geom* G, const Py_ssize_t* j, const Py_ssize_t* tk,
                            Py_ssize_t* base) noexcept nogil:
    """outer_base_n over every axis but the last."""
    return outer_base_n(G, j, tk, G.n - 1, base)


cdef inline bint next_taps(const Geom* G, Py_ssize_t* tk) noexcept nogil:
    """Odometer over the taps of the outer axes; False after the last."""
    cdef Py_ssize_t a = G.n - 2
    while a >= 0:
        tk[a] += 1
        if tk[a] < G.ntaps[a]:
            return True
        tk[a] = 0
        a -= 1
    return False


cdef inline bint next_taps_n(const Geom* G, Py_ssize_t* tk, Py_ssize_t m) noexcept nogil:
    """Odometer over the taps of the first m axes; False after the last."""
    cdef Py_ssize_t a = m - 1
    while a >= 0:
        tk[a] += 1
        if tk[a] < G.ntaps[a]:
            return True
        tk[a] = 0
        a -= 1
    return False


cdef inline Py_ssize_t out_offset(const Geom* G, const Py_ssize_t* j) noexcept nogil:
    cdef Py_ssize_t a, o = 0
    for a in range(G.n):
        o += (G.start[a] + j[a] * G.step[a]) * G.out_stride[a]
    return o


cdef inline void copy_run(floating* dst, const floating* row, Py_ssize_t i0,
                          Py_ssize_t s, Py_ssize_t size, Py_ssize_t run,
                          int mode) noexcept nogil:
    """dst[q] = padded row[i0 + q * s] for q < run."""
    cdef Py_ssize_t q, qlo, qhi, i
    cdef const floating* src
    valid_range(i0, s, size, run, &qlo, &qhi)
    if mode == MODE_CONSTANT:
        for q in range(qlo):
            dst[q] = 0
        for q in range(qhi, run):
            dst[q] = 0
    else:
        for q in range(qlo):
            dst[q] = row[map_index(i0 + q * s, size, mode)]
        for q in range(qhi, run):
            dst[q] = row[map_index(i0 + q * s, size, mode)]
    if qhi > qlo:
        src = row + i0 + qlo * s
        if s == 1:
            memcpy(dst + qlo, src, (qhi - qlo) * sizeof(floating))
        else:
            for q in range(qhi - qlo):
                dst[qlo + q] = src[q * s]


cdef inline floating padded_cell(const floating* row, Py_ssize_t i, Py_ssize_t size,
                                 int mode) noexcept nogil:
    if 0 <= i < size:
        return row[i]
    i = map_index(i, size, mode)
    return row[i] if i >= 0 else 0


cdef inline void transpose(const floating* src, Py_ssize_t lds, floating* dst,
                           Py_ssize_t ldd, Py_ssize_t rows, Py_ssize_t cols,
                           bint cols_outer) noexcept nogil:
    """dst[j * ldd + i] = src[i * lds + j] (ndconv_transpose of the dtype)."""
    if floating is float:
        ndconv_transpose_f32(src, lds, dst, ldd, rows, cols, cols_outer)
    else:
        ndconv_transpose_f64(src, lds, dst, ldd, rows, cols, cols_outer)


cdef inline void stage_cl(floating* dst, floating* row, const floating* xc,
                          Py_ssize_t in_vol, Py_ssize_t cig, Py_ssize_t i0, Py_ssize_t s,
                          Py_ssize_t size, Py_ssize_t lr, int mode) noexcept nogil:
    """Channels-last staging of an input row: dst[q * cig + c] = padded
    cell i0 + q * s (as copy_run) of the row at xc + c * in_vol, for q < lr
    and c < cig; zeros where xc is NULL (a row of padding).  row is cig * lr
    scratch: each channel's run is copied there, then transposed in register
    tiles."""
    cdef Py_ssize_t c
    if xc == NULL:
        memset(dst, 0, lr * cig * sizeof(floating))
        return
    for c in range(cig):
        copy_run(row + c * lr, xc + c * in_vol, i0, s, size, lr, mode)
    transpose(row, lr, dst, cig, cig, lr, False)


cdef inline void copy_slots(floating* d, Py_ssize_t ld, const floating* row,
                            Py_ssize_t i0, Py_ssize_t s, Py_ssize_t size, Py_ssize_t run,
                            int mode) noexcept nogil:
    """copy_run of all s residues of stride s in one pass: d[r * ld + q] =
    padded row[i0 + s * q + r] for r < s, q < run."""
    cdef Py_ssize_t q, qlo, qhi, r
    valid_range(i0, s, size - (s - 1), run, &qlo, &qhi)   # all s cells inside
    for q in range(qlo):
        for r in range(s):
            d[r * ld + q] = padded_cell(row, i0 + s * q + r, size, mode)
    if qhi > qlo:
        if floating is float:
            ndconv_deint_f32(d + qlo, ld, row + i0 + s * qlo, qhi - qlo, s)
        else:
            ndconv_deint_f64(d + qlo, ld, row + i0 + s * qlo, qhi - qlo, s)
    for q in range(qhi, run):
        for r in range(s):
            d[r * ld + q] = padded_cell(row, i0 + s * q + r, size, mode)


cdef inline void axpy_run(floating* acc, floating wv, const floating* row,
                          Py_ssize_t i0, Py_ssize_t s, Py_ssize_t size,
                          Py_ssize_t run, int mode) noexcept nogil:
    """acc[q] += wv * padded row[i0 + q * s] for q < run."""
    cdef Py_ssize_t q, qlo, qhi, m
    cdef const floating* src
    valid_range(i0, s, size, run, &qlo, &qhi)
    if mode != MODE_CONSTANT:
        for q in range(qlo):
            acc[q] += wv * row[map_index(i0 + q * s, size, mode)]
        for q in range(qhi, run):
            acc[q] += wv * row[map_index(i0 + q * s, size, mode)]
    m = qhi - qlo
    if m > 0:
        src = row + i0 + qlo * s
        acc = acc + qlo
        if s == 1:
            for q in range(m):
                acc[q] += wv * src[q]
        else:
            for q in range(m):
                acc[q] += wv * src[q * s]


# ---------------------------------------------------------------------------
# im2col on a tile, and the scatter of a tile back to the output.

cdef void build_col(const Geom* G, const floating* xg, Py_ssize_t c0, Py_ssize_t c1,
                    Py_ssize_t p0, Py_ssize_t p1, floating* col) noexcept nogil:
    """col[(c - c0) * tv + t, q] for the tile of sub-grid cells [p0, p1):
    channel c of the group block ``xg``, tap combination t (C order)."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t tk[MAXD]
    cdef Py_ssize_t T = p1 - p0, p = p0, q = 0, run, row, c, tl, base, a
    cdef Py_ssize_t last = G.n - 1
    cdef Py_ssize_t nl = G.ntaps[last], bl = G.tap_base[last]
    cdef Py_ssize_t sl = G.in_step[last], Dl = G.in_shape[last]
    cdef const floating* xc
    cdef floating* dst
    cdef bint ok
    unravel(p0, G.count, G.n, j)
    while p < p1:
        run = G.count[last] - j[last]
        if run > p1 - p:
            run = p1 - p
        row = 0
        for c in range(c0, c1):
            xc = xg + c * G.in_vol
            for a in range(last):
                tk[a] = 0
            while True:
                ok = outer_base(G, j, tk, &base)
                for tl in range(nl):
                    dst = col + row * T + q
                    if ok:
                        copy_run(dst, xc + base, G.tap_off[bl + tl] + j[last] * sl,
                                 sl, Dl, run, G.mode)
                    else:
                        for a in range(run):
                            dst[a] = 0
                    row += 1
                if not next_taps(G, tk):
                    break
        q += run
        p += run
        advance(j, G.count, G.n, run)


cdef void move_tile(const Geom* G, floating* tmp, Py_ssize_t rows, Py_ssize_t p0,
                    Py_ssize_t p1, floating* outg, bint to_out) noexcept nogil:
    """Copy between tmp[r, q] (rows x (p1 - p0)) and the output cells of the
    tile of sub-grid cells [p0, p1): into the output when to_out, else out of
    it."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t T = p1 - p0, p = p0, q = 0, run, r, k, o, st
    cdef Py_ssize_t last = G.n - 1
    cdef floating* t
    cdef floating* c
    unravel(p0, G.count, G.n, j)
    st = G.step[last]
    while p < p1:
        run = G.count[last] - j[last]
        if run > p1 - p:
            run = p1 - p
        o = out_offset(G, j)
        for r in range(rows):
            t = tmp + r * T + q
            c = outg + r * G.out_vol + o
            if to_out:
                for k in range(run):
                    c[k * st] = t[k]
            else:
                for k in range(run):
                    t[k] = c[k * st]
        q += run
        p += run
        advance(j, G.count, G.n, run)


# ---------------------------------------------------------------------------
# Kernels.

def conv_gemm(const floating[::1] x, const floating[::1] w, const floating[::1] bias,
              floating[::1] out, const Py_ssize_t[::1] geo, Py_ssize_t n,
              Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t C_out, Py_ssize_t groups,
              int mode, Py_ssize_t tile, Py_ssize_t cchunk, bint contiguous,
              int nthreads):
    """One phase by im2col tiles and GEMM.

    ``w`` is (C_out, C_in // groups * tv), rows of the packed phase kernel;
    ``contiguous`` says the phase covers the whole output in C order, so a
    tile can be written by the GEMM in place.  Returns False when a thread
    could not allocate its workspace (nothing is then complete)."""
    cdef Geom G = _geom(geo, n, mode)
    cdef Py_ssize_t cig = C_in // groups, cog = C_out // groups
    cdef Py_ssize_t kw = cig * G.tv
    cdef Py_ssize_t ntiles = (G.psub + tile - 1) // tile
    cdef Py_ssize_t nitems = N * groups * ntiles
    cdef Py_ssize_t it, b, g, tl, p0, p1, T, c0, c1, co, q, ldc
    cdef bint has_bias = bias.shape[0] > 0
    cdef int failed = 0
    cdef int* fail = &failed
    cdef floating* col
    cdef floating* tmp
    cdef floating* C
    cdef floating bv
    cdef const floating* xp = &x[0]
    cdef const floating* wp = &w[0]
    cdef floating* op = &out[0]
    if nitems == 0:
        return True
    with nogil, parallel(num_threads=nthreads):
        col = <floating*>malloc(max(cchunk * G.tv * tile, 1) * sizeof(floating))
        tmp = <floating*>malloc(max(cog * tile, 1) * sizeof(floating))
        if col == NULL or tmp == NULL:
            fail[0] = 1
        else:
            for it in prange(nitems, schedule='dynamic', chunksize=1):
                b = it // (groups * ntiles)
                g = (it // ntiles) % groups
                tl = it % ntiles
                p0 = tl * tile
                p1 = min(p0 + tile, G.psub)
                T = p1 - p0
                if contiguous:
                    C = op + (b * C_out + g * cog) * G.out_vol + p0
                    ldc = G.out_vol
                else:
                    C = tmp
                    ldc = T
                for co in range(cog):
                    bv = bias[g * cog + co] if has_bias else 0
                    for q in range(T):
                        C[co * ldc + q] = bv
                c0 = 0
                while c0 < cig:
                    c1 = min(c0 + cchunk, cig)
                    build_col(&G, xp + (b * C_in + g * cig) * G.in_vol, c0, c1,
                              p0, p1, col)
                    gemm_nn(<int>cog, <int>T, <int>((c1 - c0) * G.tv),
                            wp + g * cog * kw + c0 * G.tv, <int>kw,
                            col, <int>T, C, <int>ldc)
                    c0 = c1
                if not contiguous:
                    move_tile(&G, tmp, cog, p0, p1,
                              op + (b * C_out + g * cog) * G.out_vol, True)
        free(col)
        free(tmp)
    return failed == 0


cdef void direct_rows(const Geom* G, const floating* xg, const floating* wg,
                      const floating* bg, floating* outg, Py_ssize_t cig,
                      Py_ssize_t cog, Py_ssize_t r0, Py_ssize_t r1,
                      floating* acc) noexcept nogil:
    """Rows [r0, r1) of one (batch, group) block by direct accumulation."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t tk[MAXD]
    cdef Py_ssize_t last = G.n - 1
    cdef Py_ssize_t L = G.count[last], st = G.step[last]
    cdef Py_ssize_t nl = G.ntaps[last], bl = G.tap_base[last]
    cdef Py_ssize_t sl = G.in_step[last], Dl = G.in_shape[last]
    cdef Py_ssize_t kw = cig * G.tv
    cdef Py_ssize_t r, co, c, t, tl, a, q, o, base
    cdef const floating* xc
    cdef const floating* wr
    cdef floating* dst
    cdef floating bv
    for r in range(r0, r1):
        unravel(r * L, G.count, G.n, j)
        o = out_offset(G, j)
        for co in range(cog):
            bv = bg[co] if bg != NULL else 0
            for q in range(L):
                acc[q] = bv
            wr = wg + co * kw
            t = 0
            for c in range(cig):
                xc = xg + c * G.in_vol
                for a in range(last):
                    tk[a] = 0
                while True:
                    if outer_base(G, j, tk, &base):
                        for tl in range(nl):
                            if wr[t + tl] != 0:
                                axpy_run(acc, wr[t + tl], xc + base,
                                         G.tap_off[bl + tl], sl, Dl, L, G.mode)
                    t += nl
                    if not next_taps(G, tk):
                        break
            dst = outg + co * G.out_vol + o
            if st == 1:
                memcpy(dst, acc, L * sizeof(floating))
            else:
                for q in range(L):
                    dst[q * st] = acc[q]


def conv_direct(const floating[::1] x, const floating[::1] w, const floating[::1] bias,
                floating[::1] out, const Py_ssize_t[::1] geo, Py_ssize_t n,
                Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t C_out, Py_ssize_t groups,
                int mode, Py_ssize_t rows_per_item, int nthreads):
    """One phase by direct accumulation: for each output row (all axes but
    the last) and output channel, add every tap's contribution along the
    contiguous last axis.  For few channels."""
    cdef Geom G = _geom(geo, n, mode)
    cdef Py_ssize_t cig = C_in // groups, cog = C_out // groups
    cdef Py_ssize_t L = G.count[n - 1]
    cdef Py_ssize_t nrows = G.psub // L if L > 0 else 0
    cdef Py_ssize_t nchunks = (nrows + rows_per_item - 1) // rows_per_item
    cdef Py_ssize_t nitems = N * groups * nchunks
    cdef Py_ssize_t it, b, g, r0
    cdef int failed = 0
    cdef int* fail = &failed
    cdef floating* acc
    cdef const floating* xp = &x[0]
    cdef const floating* wp = &w[0]
    cdef const floating* bp = &bias[0] if bias.shape[0] > 0 else NULL
    cdef floating* op = &out[0]
    if nitems == 0:
        return True
    with nogil, parallel(num_threads=nthreads):
        acc = <floating*>malloc(max(L, 1) * sizeof(floating))
        if acc == NULL:
            fail[0] = 1
        else:
            for it in prange(nitems, schedule='dynamic', chunksize=1):
                b = it // (groups * nchunks)
                g = (it // nchunks) % groups
                r0 = (it % nchunks) * rows_per_item
                direct_rows(&G, xp + (b * C_in + g * cig) * G.in_vol,
                            wp + g * cog * cig * G.tv,
                            bp + g * cog if bp != NULL else NULL,
                            op + (b * C_out + g * cog) * G.out_vol,
                            cig, cog, r0, min(r0 + rows_per_item, nrows), acc)
        free(acc)
    return failed == 0


def conv_grad_w(const floating[::1] x, const floating[::1] gy, floating[::1] parts,
                const Py_ssize_t[::1] geo, Py_ssize_t n, Py_ssize_t N,
                Py_ssize_t C_in, Py_ssize_t C_out, Py_ssize_t groups, int mode,
                Py_ssize_t tile, Py_ssize_t cchunk, Py_ssize_t nparts,
                bint contiguous, int nthreads):
    """Weight gradient of one phase.

    The work items (batch, group, tile) are cut into ``nparts`` fixed runs;
    run ``k`` adds its items, in order, into ``parts[k]`` of shape
    (C_out, C_in // groups * tv), which must arrive zeroed.  The caller adds
    the parts in order, so the sum does not depend on the thread count."""
    cdef Geom G = _geom(geo, n, mode)
    cdef Py_ssize_t cig = C_in // groups, cog = C_out // groups
    cdef Py_ssize_t kw = cig * G.tv
    cdef Py_ssize_t ntiles = (G.psub + tile - 1) // tile
    cdef Py_ssize_t nitems = N * groups * ntiles
    cdef Py_ssize_t part, it, i0, i1, b, g, tl, p0, p1, T, c0, c1, lda
    cdef int failed = 0
    cdef int* fail = &failed
    cdef floating* col
    cdef floating* tmp
    cdef const floating* A
    cdef floating* acc
    cdef const floating* xp = &x[0]
    cdef const floating* gyp = &gy[0]
    cdef floating* pp = &parts[0]
    if nitems == 0 or kw == 0:
        return True
    with nogil, parallel(num_threads=nthreads):
        col = <floating*>malloc(max(cchunk * G.tv * tile, 1) * sizeof(floating))
        tmp = <floating*>malloc(max(cog * tile, 1) * sizeof(floating))
        if col == NULL or tmp == NULL:
            fail[0] = 1
        else:
            for part in prange(nparts, schedule='dynamic', chunksize=1):
                i0 = part * nitems // nparts
                i1 = (part + 1) * nitems // nparts
                acc = pp + part * C_out * kw
                for it in range(i0, i1):
                    b = it // (groups * ntiles)
                    g = (it // ntiles) % groups
                    tl = it % ntiles
                    p0 = tl * tile
                    p1 = min(p0 + tile, G.psub)
                    T = p1 - p0
                    if contiguous:
                        A = gyp + (b * C_out + g * cog) * G.out_vol + p0
                        lda = G.out_vol
                    else:
                        move_tile(&G, tmp, cog, p0, p1,
                                  <floating*>gyp + (b * C_out + g * cog) * G.out_vol, False)
                        A = tmp
                        lda = T
                    c0 = 0
                    while c0 < cig:
                        c1 = min(c0 + cchunk, cig)
                        build_col(&G, xp + (b * C_in + g * cig) * G.in_vol, c0, c1,
                                  p0, p1, col)
                        gemm_nt(<int>cog, <int>((c1 - c0) * G.tv), <int>T, A, <int>lda,
                                col, <int>T, acc + g * cog * kw + c0 * G.tv, <int>kw)
                        c0 = c1
        free(col)
        free(tmp)
    return failed == 0


# ---------------------------------------------------------------------------
# Implicit GEMM: packed input rows and a register-blocked micro-kernel.

ctypedef struct Last:
    # How the taps of the last axis read a packed row.  Input cell of tap tl
    # at output q is off[tl] + q * s = s * (a[tl] + q) + rho[tl]; the cells of
    # one residue rho form a unit-stride "slot" m -> s * (m_min + m) + rho.
    Py_ssize_t nslot
    Py_ssize_t m_min
    Py_ssize_t span           # max(a) - min(a)
    const Py_ssize_t* rho     # nslot residues
    const Py_ssize_t* slot    # per tap: its slot
    const Py_ssize_t* shift   # per tap: a[tl] - m_min


cdef inline bint plane_ring(const Geom* G, Py_ssize_t noo) noexcept nogil:
    """Whether, on 3 axes, the next plane along axis 0 reads all but one of
    this plane's noo (2 to 64) input planes: unit step along axis 0 and
    consecutive taps.  A run of planes can then keep a ring of noo packed
    (or staged) input planes and add one a plane."""
    cdef Py_ssize_t t
    if G.n != 3 or not 1 < noo <= 64 or G.in_step[0] != 1:
        return False
    for t in range(noo):
        if G.tap_off[G.tap_base[0] + t] != G.tap_off[G.tap_base[0]] + t:
            return False
    return True


cdef inline void ring_places(const Geom* G, Py_ssize_t plane, Py_ssize_t noo,
                             Py_ssize_t* where) noexcept nogil:
    """Place in the ring of each tap's input plane for plane ``plane``:
    where[t] = (input plane) mod noo."""
    cdef Py_ssize_t t, i
    for t in range(noo):
        i = plane + G.tap_off[G.tap_base[0] + t]
        where[t] = i - floordiv(i, noo) * noo


cdef inline Py_ssize_t row_offset(const Geom* G, bint ok, Py_ssize_t base,
                                  Py_ssize_t i2) noexcept nogil:
    """Offset of the input row at index i2 along axis n - 2 below ``base``
    (outer_base_n's, ``ok`` its answer), through the pad mode; -1 for a row
    of zero padding."""
    cdef Py_ssize_t ax2 = G.n - 2, D2 = G.in_shape[G.n - 2]
    if not ok:
        return -1
    if 0 <= i2 < D2:
        return base + i2 * G.in_stride[ax2]
    if G.mode != MODE_CONSTANT:
        return base + map_index(i2, D2, G.mode) * G.in_stride[ax2]
    return -1


cdef void pack_block(const Geom* G, const Last* Lt, const floating* xg,
                     Py_ssize_t c0, Py_ssize_t c1, const Py_ssize_t* j,
                     Py_ssize_t i2min, Py_ssize_t nin, Py_ssize_t qs, Py_ssize_t lr,
                     floating* pack, Py_ssize_t ls, const Py_ssize_t* where,
                     Py_ssize_t only) noexcept nogil:
    """Pack the input rows a block of output rows reads, for channels
    [c0, c1): every tap combination of the axes before n - 2 (at the
    plane's cell j), every input index i2min <= i2 < i2min + nin along axis
    n - 2, every slot of the last axis, cells [qs, qs + lr) of the slot.
    Tap combination too goes to place where[too] of the pack (too itself
    when where is NULL); with only >= 0, only that combination is packed."""
    cdef Py_ssize_t tk[MAXD]
    cdef Py_ssize_t last = G.n - 1, ax2 = G.n - 2
    cdef Py_ssize_t noo = G.tv // (G.ntaps[last] * G.ntaps[ax2])
    cdef Py_ssize_t sl = G.in_step[last], Dl = G.in_shape[last], D2 = G.in_shape[ax2]
    cdef Py_ssize_t c, a, too, ii, i2, sidx, base, base2, lo, hi
    cdef const floating* xc
    cdef floating* pr
    cdef floating* dst
    cdef bint ok
    # Every residue of the stride, in order: one de-interleaving pass a row.
    cdef bint all_slots = 1 < sl == Lt.nslot
    for sidx in range(Lt.nslot):
        all_slots = all_slots and Lt.rho[sidx] == sidx
    for c in range(c0, c1):
        xc = xg + c * G.in_vol
        for a in range(ax2):
            tk[a] = 0
        too = 0
        while True:
            if only >= 0 and too != only:
                too += 1
                if not next_taps_n(G, tk, ax2):
                    break
                continue
            ok = outer_base_n(G, j, tk, ax2, &base)
            if ok:          # the rows read below, if they lie together:
                lo = max(i2min, 0)        # ask for them now in the first channel,
                hi = min(i2min + nin, D2)     # and for the next channel's ahead
                if hi > lo and G.in_stride[ax2] == Dl:
                    if c == c0:
                        ndconv_prefetch(xc + base + lo * Dl, (hi - lo) * Dl * sizeof(floating))
                    if c + 1 < c1:
                        ndconv_prefetch(xc + G.in_vol + base + lo * Dl,
                                        (hi - lo) * Dl * sizeof(floating))
            for ii in range(nin):
                i2 = i2min + ii
                pr = pack + (((c - c0) * noo + (where[too] if where != NULL else too)) * nin
                             + ii) * Lt.nslot * ls
                base2 = row_offset(G, ok, base, i2)
                if base2 >= 0 and all_slots:
                    copy_slots(pr, ls, xc + base2, sl * (Lt.m_min + qs), sl, Dl, lr, G.mode)
                    continue
                for sidx in range(Lt.nslot):
                    dst = pr + sidx * ls
                    if base2 >= 0:
                        copy_run(dst, xc + base2, sl * (Lt.m_min + qs) + Lt.rho[sidx],
                                 sl, Dl, lr, G.mode)
                    else:
                        memset(dst, 0, lr * sizeof(floating))
            too += 1
            if not next_taps_n(G, tk, ax2):
                break


cdef inline void row_ptrs(const Geom* G, const Last* Lt, floating* pack, Py_ssize_t ls,
                          Py_ssize_t nch, Py_ssize_t nin, Py_ssize_t i2min, Py_ssize_t jrow,
                          const floating** ptrs, const Py_ssize_t* where) noexcept nogil:
    """Point every reduction index (channel, taps) of output row jrow (along
    axis n - 2) at its packed row; nch channels, in the kernel's order.
    ``where`` as in pack_block."""
    cdef Py_ssize_t last = G.n - 1, ax2 = G.n - 2
    cdef Py_ssize_t nl = G.ntaps[last], n2 = G.ntaps[ax2]
    cdef Py_ssize_t noo = G.tv // (nl * n2)
    cdef const Py_ssize_t* off2 = G.tap_off + G.tap_base[ax2]
    cdef Py_ssize_t s2 = G.in_step[ax2]
    cdef Py_ssize_t c, too, t2, tl, k = 0
    cdef floating* pr
    for c in range(nch):
        for too in range(noo):
            for t2 in range(n2):
                pr = pack + ((c * noo + (where[too] if where != NULL else too)) * nin
                             + off2[t2] + jrow * s2 - i2min) * Lt.nslot * ls
                for tl in range(nl):
                    ptrs[k] = pr + Lt.slot[tl] * ls + Lt.shift[tl]
                    k += 1


cdef inline void block_rows_in(const Geom* G, Py_ssize_t jr0, Py_ssize_t jr1,
                               Py_ssize_t* i2min, Py_ssize_t* nin) noexcept nogil:
    """Input index range along axis n - 2 read by output rows [jr0, jr1)."""
    cdef Py_ssize_t ax2 = G.n - 2, t2, lo, hi
    cdef const Py_ssize_t* off2 = G.tap_off + G.tap_base[ax2]
    lo = off2[0]
    hi = off2[0]
    for t2 in range(G.ntaps[ax2]):
        if off2[t2] < lo:
            lo = off2[t2]
        if off2[t2] > hi:
            hi = off2[t2]
    i2min[0] = lo + jr0 * G.in_step[ax2]
    nin[0] = hi + (jr1 - 1) * G.in_step[ax2] - i2min[0] + 1


cdef inline void prefetch_out_row(const Geom* G, Py_ssize_t* j, Py_ssize_t jrow,
                                  floating* outg, Py_ssize_t cog, Py_ssize_t qs,
                                  Py_ssize_t lq) noexcept nogil:
    """Ask for the output cells [qs, qs + lq) of row jrow (along axis n - 2)
    of every channel: they are about to be written, and a freshly allocated
    output is rarely in the cache.  Sets j[n - 2] to jrow."""
    cdef Py_ssize_t co, o, st = G.step[G.n - 1]
    j[G.n - 2] = jrow
    o = out_offset(G, j) + qs * st
    for co in range(cog):
        ndconv_prefetch(outg + co * G.out_vol + o, ((lq - 1) * st + 1) * sizeof(floating))


cdef void implicit_block(const Geom* G, const Last* Lt, const floating* xg,
                         const floating* wtg, const floating* bg, floating* outg,
                         Py_ssize_t cig, Py_ssize_t cog, Py_ssize_t cchunk,
                         Py_ssize_t qseg, Py_ssize_t plane, Py_ssize_t jr0,
                         Py_ssize_t jr1, floating* pack, Py_ssize_t ls,
                         const floating** ptrs, floating* acc, Py_ssize_t lp,
                         bint flat, bint swap, const Py_ssize_t* where,
                         Py_ssize_t only) noexcept nogil:
    """Output rows jr0 <= j[n-2] < jr1 of one plane (a fixed index of the axes
    before n - 2) of one (batch, group) block; n >= 2.  ``where`` and
    ``only`` go to pack_block (see conv_implicit's runs of planes).

    With ``flat`` (one slot, unit step along axis n - 2, the row in one
    segment, packed rows exactly ls = row + span apart), the rows of the
    block are one flattened run of nrow * ls cells: output (r, q) is cell
    r * ls + q, and the cells q >= row of each row are computed and dropped.
    Short rows then fill the micro-kernel's NR columns; acc is (cog, lp).

    With ``swap`` (cog a multiple of NR), the swapped micro-kernel puts the
    cells of a row on its MR rows and the output channels on its NR
    columns, so a row costs no rounding up to NR; acc is (rows, lp, cog),
    cell-major, and is transposed on the way out.

    Each row is cut into segments of at most qseg outputs; each segment is
    computed in channel chunks: the input rows the block reads are packed
    once (pack_block), then for each output row every reduction index points
    at its packed row and the micro-kernel runs over (MR channels) x (NR
    outputs) blocks, accumulating in acc (rows x cog x lp); last, acc is
    written out.  wtg is the group's packed kernel, (cig * tv, cog)."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t last = G.n - 1, ax2 = G.n - 2
    cdef Py_ssize_t L = G.count[last], st = G.step[last]
    cdef Py_ssize_t nrow = jr1 - jr0
    cdef Py_ssize_t i2min, nin, qs, lq, c0, c1, o, r, co0, mr, nblk, blk, q0, q, co
    cdef Py_ssize_t nr = ndconv_nr_f32 if floating is float else ndconv_nr_f64
    cdef Py_ssize_t mrmax = ndconv_mr
    cdef floating* dst
    cdef floating* src
    cdef floating* accr
    cdef Py_ssize_t rstep = G.in_step[ax2] * Lt.nslot * ls
    cdef Py_ssize_t ldc
    cdef bint direct
    nblk = (cog + mrmax - 1) // mrmax
    block_rows_in(G, jr0, jr1, &i2min, &nin)
    unravel(plane, G.count, G.n - 2, j)
    j[ax2] = jr0
    j[last] = 0
    qs = 0
    while qs < L:
        lq = min(qseg, L - qs)
        # One channel chunk, unit output step and whole NR blocks: the
        # micro-kernel writes the output itself, no accumulator.
        direct = cchunk >= cig and st == 1 and lq % nr == 0 and not flat and not swap
        c0 = 0
        while c0 < cig:
            c1 = min(c0 + cchunk, cig)
            pack_block(G, Lt, xg, c0, c1, j, i2min, nin, qs, lq + Lt.span, pack, ls,
                       where, only)
            # Row jr0 + r reads the packed rows of row jr0 moved by r * rstep.
            row_ptrs(G, Lt, pack, ls, c1 - c0, nin, i2min, jr0, ptrs, where)
            if swap:
                nblk = (lq + mrmax - 1) // mrmax        # cell blocks of a row
                co0 = 0
                while co0 < cog:
                    for r in range(nrow):
                        if co0 + nr >= cog and c1 == cig:   # the row is written next
                            prefetch_out_row(G, j, jr0 + r, outg, cog, qs, lq)
                        q0 = 0
                        for blk in range(nblk):
                            mr = (lq - q0 + nblk - blk - 1) // (nblk - blk)
                            if floating is float:
                                ndconv_mks_f32(<int>mr, (c1 - c0) * G.tv,
                                               wtg + c0 * G.tv * cog + co0, cog,
                                               <const float**>ptrs, q0 + r * rstep,
                                               acc + (r * lp + q0) * cog + co0, cog,
                                               c0 == 0, bg + co0 if bg != NULL else NULL)
                            else:
                                ndconv_mks_f64(<int>mr, (c1 - c0) * G.tv,
                                               wtg + c0 * G.tv * cog + co0, cog,
                                               <const double**>ptrs, q0 + r * rstep,
                                               acc + (r * lp + q0) * cog + co0, cog,
                                               c0 == 0, bg + co0 if bg != NULL else NULL)
                            q0 += mr
                    co0 += nr
                c0 = c1
                continue
            if flat:
                if c1 == cig:
                    for r in range(nrow):
                        prefetch_out_row(G, j, jr0 + r, outg, cog, qs, lq)
                co0 = 0
                for blk in range(nblk):
                    mr = (cog - co0 + nblk - blk - 1) // (nblk - blk)
                    q0 = 0
                    while q0 < nrow * ls:
                        if floating is float:
                            ndconv_mk_f32(<int>mr, (c1 - c0) * G.tv,
                                          wtg + c0 * G.tv * cog + co0, cog,
                                          <const float**>ptrs, q0, acc + co0 * lp + q0, lp,
                                          c0 == 0, bg + co0 if bg != NULL else NULL)
                        else:
                            ndconv_mk_f64(<int>mr, (c1 - c0) * G.tv,
                                          wtg + c0 * G.tv * cog + co0, cog,
                                          <const double**>ptrs, q0, acc + co0 * lp + q0, lp,
                                          c0 == 0, bg + co0 if bg != NULL else NULL)
                        q0 += nr
                    co0 += mr
                c0 = c1
                continue
            for r in range(nrow):
                if c1 == cig:
                    prefetch_out_row(G, j, jr0 + r, outg, cog, qs, lq)
                if direct:      # the micro-kernel's NR columns end inside the row
                    j[ax2] = jr0 + r
                    accr = outg + out_offset(G, j) + qs
                    ldc = G.out_vol
                else:
                    accr = acc + r * cog * lp
                    ldc = lp
                co0 = 0
                for blk in range(nblk):
                    mr = (cog - co0 + nblk - blk - 1) // (nblk - blk)
                    q0 = 0
                    while q0 < lq:
                        if floating is float:
                            ndconv_mk_f32(<int>mr, (c1 - c0) * G.tv,
                                          wtg + c0 * G.tv * cog + co0, cog,
                                          <const float**>ptrs, q0 + r * rstep,
                                          accr + co0 * ldc + q0, ldc,
                                          c0 == 0, bg + co0 if bg != NULL else NULL)
                        else:
                            ndconv_mk_f64(<int>mr, (c1 - c0) * G.tv,
                                          wtg + c0 * G.tv * cog + co0, cog,
                                          <const double**>ptrs, q0 + r * rstep,
                                          accr + co0 * ldc + q0, ldc,
                                          c0 == 0, bg + co0 if bg != NULL else NULL)
                        q0 += nr
                    co0 += mr
            c0 = c1
        j[ax2] = jr0
        if direct:
            qs += lq
            continue
        # write the segment of every row
        for r in range(nrow):
            j[ax2] = jr0 + r
            o = out_offset(G, j)
            if swap:
                src = acc + r * lp * cog
                if st == 1:
                    transpose(src, cog, outg + o + qs, G.out_vol, lq, cog, True)
                else:
                    for q in range(lq):
                        for co in range(cog):
                            outg[co * G.out_vol + o + (qs + q) * st] = src[q * cog + co]
                continue
            for co in range(cog):
                if flat:
                    src = acc + co * lp + r * ls
                else:
                    src = acc + (r * cog + co) * lp
                dst = outg + co * G.out_vol + o + qs * st
                if st == 1:
                    memcpy(dst, src, lq * sizeof(floating))
                else:
                    for q in range(lq):
                        dst[q * st] = src[q]
        j[ax2] = jr0
        qs += lq


cdef void gradw_block(const Geom* G, const Last* Lt, const floating* xg,
                      const floating* gyg, floating* gpart, Py_ssize_t cig,
                      Py_ssize_t cog, Py_ssize_t cogp, Py_ssize_t cchunk, Py_ssize_t qseg,
                      Py_ssize_t plane, Py_ssize_t jr0, Py_ssize_t jr1, floating* pack,
                      Py_ssize_t ls, const floating** ptrs, Py_ssize_t ldp,
                      const floating* zrow, floating* ybuf, Py_ssize_t lpy,
                      floating* gt) noexcept nogil:
    """Add the weight gradient of output rows [jr0, jr1) of one plane of one
    (batch, group) block into gpart, (cog, cig * tv) row-major.

    Same packing as implicit_block; the output gradient of the block is
    staged in ybuf (rows x cogp x lpy, zero beyond each segment and for the
    cogp - cog padding channels); the reduction kernel then sums, for each
    (RK_MR channels) x (RK_NK reduction indices) block, over every row and
    cell of the segment.  Reduction indices past the chunk point at zrow."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t last = G.n - 1, ax2 = G.n - 2
    cdef Py_ssize_t L = G.count[last], st = G.step[last]
    cdef Py_ssize_t nrow = jr1 - jr0
    cdef Py_ssize_t kw = cig * G.tv
    cdef Py_ssize_t i2min, nin, qs, lq, c0, c1, kc, o, r, co, q, k, k0, co0, i, kk
    cdef Py_ssize_t mrk = NDCONV_RK_MR, nk = NDCONV_RK_NK
    cdef const floating* src
    cdef floating* dst
    block_rows_in(G, jr0, jr1, &i2min, &nin)
    unravel(plane, G.count, G.n - 2, j)
    j[last] = 0
    qs = 0
    while qs < L:
        lq = min(qseg, L - qs)
        # stage the output gradient of the segment
        for r in range(nrow):
            j[ax2] = jr0 + r
            o = out_offset(G, j)
            for co in range(cog):
                src = gyg + co * G.out_vol + o + qs * st
                dst = ybuf + (r * cogp + co) * lpy
                if st == 1:
                    memcpy(dst, src, lq * sizeof(floating))
                else:
                    for q in range(lq):
                        dst[q] = src[q * st]
                for q in range(lq, lpy):
                    dst[q] = 0
        j[ax2] = jr0
        c0 = 0
        while c0 < cig:
            c1 = min(c0 + cchunk, cig)
            kc = (c1 - c0) * G.tv
            pack_block(G, Lt, xg, c0, c1, j, i2min, nin, qs, lq + Lt.span, pack, ls, NULL, -1)
            for r in range(nrow):
                row_ptrs(G, Lt, pack, ls, c1 - c0, nin, i2min, jr0 + r, ptrs + r * ldp, NULL)
                for k in range(kc, kc + nk):
                    ptrs[r * ldp + k] = zrow
            co0 = 0
            while co0 < cog:
                k0 = 0
                while k0 < kc:
                    if floating is float:
                        ndconv_rk_f32(nrow, lq, ybuf + co0 * lpy, cogp * lpy, lpy,
                                      <const float**>ptrs + k0, ldp, gt)
                    else:
                        ndconv_rk_f64(nrow, lq, ybuf + co0 * lpy, cogp * lpy, lpy,
                                      <const double**>ptrs + k0, ldp, gt)
                    for i in range(min(mrk, cog - co0)):
                        for kk in range(min(nk, kc - k0)):
                            gpart[(co0 + i) * kw + c0 * G.tv + k0 + kk] += gt[i * nk + kk]
                    k0 += nk
                co0 += mrk
            c0 = c1
        qs += lq


ctypedef struct Phase:
    Geom G
    Last Lt
    Py_ssize_t wt_off       # where the phase's packed kernel starts in wt
    Py_ssize_t cchunk, qseg, rows
    Py_ssize_t nplanes, nblocks, first   # work items: [first, first + N*groups*nplanes*nblocks)
    Py_ssize_t ls, lp
    bint flat, swap
    Py_ssize_t prun         # planes per work item (a run along axis 0, n == 3)
    Py_ssize_t nruns, noo


cdef inline Last _last(const Py_ssize_t* info, Py_ssize_t nl) noexcept nogil:
    cdef Last Lt
    Lt.nslot = info[0]
    Lt.m_min = info[1]
    Lt.span = info[2]
    Lt.rho = info + 3
    Lt.slot = info + 3 + Lt.nslot
    Lt.shift = info + 3 + Lt.nslot + nl
    return Lt


def conv_implicit(const floating[::1] x, const floating[::1] wt, const floating[::1] bias,
                  floating[::1] out, const Py_ssize_t[::1] geos,
                  const Py_ssize_t[::1] infos, const Py_ssize_t[::1] table,
                  Py_ssize_t n, Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t C_out,
                  Py_ssize_t groups, int mode, Py_ssize_t min_items, int nthreads):
    """Every phase of a correlation by implicit GEMM (n >= 2), in one
    parallel region.

    ``table`` has one row of 7 per phase: offsets of its geometry in
    ``geos``, of its last-axis layout in ``infos`` ([nslot, m_min, span,
    rho[nslot], slot[ntaps_last], shift[ntaps_last]], see Last) and of its
    packed kernel in ``wt`` ((groups, C_in // groups * tv, C_out // groups));
    then its channel chunk, row segment, row-block length (output rows
    along axis n - 2 in one work item) and whether it runs swapped blocks
    (see implicit_block; C_out // groups must then be a multiple of NR).
    Work items of all phases share one dynamic schedule; each writes its own
    output cells.  Runs of planes are shortened until a phase has min_items
    work items."""
    cdef Py_ssize_t nph = table.shape[0] // 7
    cdef Py_ssize_t cig = C_in // groups, cog = C_out // groups
    cdef Py_ssize_t nr = ndconv_nr_f32 if floating is float else ndconv_nr_f64
    cdef Py_ssize_t p, it, b, g, pl, pp, jr0, lq, nin, i2min, nitems = 0, cnt
    cdef Py_ssize_t packmax = 1, ptrmax = 1, accmax = 1, per
    cdef Py_ssize_t* where
    cdef int failed = 0
    cdef int* fail = &failed
    cdef Phase* ph
    cdef Phase* P
    cdef floating* pack
    cdef floating* acc
    cdef const floating** ptrs
    cdef const floating* xp = &x[0]
    cdef const floating* wp = &wt[0]
    cdef const floating* bp = &bias[0] if bias.shape[0] > 0 else NULL
    cdef floating* op = &out[0]
    if nph == 0:
        return True
    ph = <Phase*>malloc(nph * sizeof(Phase))
    if ph == NULL:
        return False
    for p in range(nph):
        P = &ph[p]
        P.G = _geom(geos[table[7 * p]:], n, mode)
        P.Lt = _last(&infos[table[7 * p + 1]], P.G.ntaps[n - 1])
        P.wt_off = table[7 * p + 2]
        P.cchunk = table[7 * p + 3]
        P.qseg = table[7 * p + 4]
        P.rows = table[7 * p + 5]
        cnt = P.G.count[n - 1] * P.G.count[n - 2]
        P.nplanes = P.G.psub // cnt if cnt > 0 else 0
        P.nblocks = (P.G.count[n - 2] + P.rows - 1) // P.rows
        P.noo = P.G.tv // (P.G.ntaps[n - 1] * P.G.ntaps[n - 2])
        # Runs of planes along axis 0 (n == 3, unit step, consecutive taps,
        # one channel chunk and one segment): the next plane reads all but
        # one of this plane's input planes, so the pack keeps them, at place
        # (input plane mod noo), and only the new one is packed.
        P.prun = 1
        if plane_ring(&P.G, P.noo) and P.cchunk >= cig and P.G.count[n - 1] <= P.qseg:
            P.prun = 8
            while P.prun > 1 and (N * groups * P.nblocks
                                  * ((P.nplanes + P.prun - 1) // P.prun) < min_items):
                P.prun //= 2
        P.nruns = (P.nplanes + P.prun - 1) // P.prun
        P.first = nitems
        nitems += N * groups * P.nruns * P.nblocks
        lq = min(P.qseg, P.G.count[n - 1])
        P.swap = table[7 * p + 6] != 0 and cog % nr == 0
        # Flattened rows where they waste fewer of the NR columns than
        # rounding each row up to NR does (see implicit_block).
        P.flat = (not P.swap and P.Lt.nslot == 1 and P.G.in_step[n - 2] == 1
                  and lq == P.G.count[n - 1] and P.rows > 1
                  and P.Lt.span < (lq + nr - 1) // nr * nr - lq)
        if P.flat:
            P.ls = lq + P.Lt.span
            P.lp = (P.rows * P.ls + nr - 1) // nr * nr
        elif P.swap:
            P.lp = lq
            P.ls = (lq + P.Lt.span + nr + 15) // 16 * 16
        else:
            P.lp = (lq + nr - 1) // nr * nr
            P.ls = (lq + P.Lt.span + nr + 15) // 16 * 16     # whole 64-byte lines
        block_rows_in(&P.G, 0, P.rows, &i2min, &nin)
        per = P.cchunk * (P.G.tv // (P.G.ntaps[n - 1] * P.G.ntaps[n - 2])) * nin * P.Lt.nslot * P.ls
        packmax = max(packmax, per + nr)
        ptrmax = max(ptrmax, P.cchunk * P.G.tv)
        accmax = max(accmax, (1 if P.flat else P.rows) * cog * P.lp)
    if nitems > 0:
        with nogil, parallel(num_threads=nthreads):
            pack = <floating*>aligned_alloc(64, packmax * sizeof(floating))
            if pack != NULL:
                memset(pack, 0, packmax * sizeof(floating))
            ptrs = <const floating**>malloc(ptrmax * sizeof(floating*))
            acc = <floating*>malloc(accmax * sizeof(floating))
            where = <Py_ssize_t*>malloc(64 * sizeof(Py_ssize_t))
            if pack == NULL or ptrs == NULL or acc == NULL or where == NULL:
                fail[0] = 1
            else:
                for it in prange(nitems, schedule='dynamic', chunksize=1):
                    p = 0
                    while p + 1 < nph and ph[p + 1].first <= it:
                        p = p + 1
                    P = &ph[p]
                    cnt = it - P.first
                    b = cnt // (groups * P.nruns * P.nblocks)
                    g = (cnt // (P.nruns * P.nblocks)) % groups
                    pl = (cnt // P.nblocks) % P.nruns * P.prun
                    jr0 = (cnt % P.nblocks) * P.rows
                    for pp in range(min(P.prun, P.nplanes - pl)):
                        if P.prun > 1:
                            ring_places(&P.G, pl + pp, P.noo, where)
                        implicit_block(&P.G, &P.Lt, xp + (b * C_in + g * cig) * P.G.in_vol,
                                       wp + P.wt_off + g * cig * P.G.tv * cog,
                                       bp + g * cog if bp != NULL else NULL,
                                       op + (b * C_out + g * cog) * P.G.out_vol,
                                       cig, cog, P.cchunk, P.qseg, pl + pp, jr0,
                                       min(jr0 + P.rows, P.G.count[n - 2]),
                                       pack, P.ls, ptrs, acc, P.lp, P.flat, P.swap,
                                       where if P.prun > 1 else NULL,
                                       P.noo - 1 if pp > 0 and P.prun > 1 else -1)
            free(pack)
            free(<void*>ptrs)
            free(acc)
            free(where)
    free(ph)
    return failed == 0


# ---------------------------------------------------------------------------
# Winograd F(2, 3) on every axis: a tile of 2^n outputs from 4^n inputs.
#
# Per axis, with the kernel g (3 taps) and the input d (4 cells) of a tile,
# y = A^T [(G g) * (B^T d)] gives the two outputs of the correlation:
#     B^T d = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
#     A^T m = (m0 + m1 + m2, m1 - m2 - m3)
# and G g is done once per call (wino_kernel).  On n axes the transforms act
# along each axis in turn, and the 4^n products become 4^n small GEMMs over
# the channels, one per position xi, through the implicit GEMM's
# micro-kernel: output channels on its MR rows, tiles on its NR columns.

cdef inline void wino_pairs(floating* V, Py_ssize_t P, Py_ssize_t w, Py_ssize_t ld,
                            Py_ssize_t blk, int forward, Py_ssize_t wdone) noexcept nogil:
    """One axis of the transforms over blocks of blk cells ld apart: position xi of
    the axis whose digit (weight w) is 0 and its three successors; B^T
    (forward 1), A^T (0: the two outputs in the first two blocks) or A (2:
    from the first two blocks).  Positions
    with a digit above 1 at a weight w' < wdone (axes already reduced by
    A^T) are skipped."""
    cdef Py_ssize_t xi, v
    cdef floating* p0
    cdef bint dead
    for xi in range(P):
        if (xi // w) % 4 != 0:
            continue
        dead = False
        v = 4
        while v < wdone:
            if (xi // v) % 4 > 1:
                dead = True
            v *= 4
        if dead:
            continue
        p0 = V + xi * ld
        if floating is float:
            ndconv_wino_pairs_float(p0, p0 + w * ld, p0 + 2 * w * ld, p0 + 3 * w * ld,
                                    blk, forward)
        else:
            ndconv_wino_pairs_double(p0, p0 + w * ld, p0 + 2 * w * ld, p0 + 3 * w * ld,
                                     blk, forward)


cdef inline Py_ssize_t tile_cells(Py_ssize_t e, const Py_ssize_t* tile, Py_ssize_t r,
                                  Py_ssize_t ax2, Py_ssize_t* j) noexcept nogil:
    """Cells j[a] = 2 * tile[a] + (digit a of e) of the axes a <= ax2, tile
    row r added on axis ax2; e's base-4 digits run from axis ax2 (lowest) to
    axis 0.  Returns the largest digit."""
    cdef Py_ssize_t a, d, top = 0
    for a in range(ax2, -1, -1):
        d = e % 4
        e = e // 4
        j[a] = 2 * (tile[a] + (r if a == ax2 else 0)) + d
        if d > top:
            top = d
    return top


cdef inline Py_ssize_t wino_stride(Py_ssize_t size) noexcept nogil:
    """Distance of the transform positions in the Winograd workspaces: size
    rounded up to 64 values, plus 16, so that the rows a transform reads or
    writes at once, one per position, do not all fall in one set of the L1
    cache."""
    return (size + 63) // 64 * 64 + 16


cdef inline Py_ssize_t wino_out_row(const Geom* G, const Py_ssize_t* tile, Py_ssize_t r,
                                    Py_ssize_t e, Py_ssize_t ts, Py_ssize_t* j) noexcept nogil:
    """Offset of the output row that outer position e of tile row r writes
    from tile ts on (see wino_block), or -1 where A^T drops the position or
    the row lies past the output."""
    cdef Py_ssize_t a, ax2 = G.n - 2
    if tile_cells(e, tile, r, ax2, j) > 1:
        return -1
    for a in range(ax2 + 1):
        if j[a] >= G.count[a]:
            return -1
    j[G.n - 1] = 2 * ts
    return out_offset(G, j)


cdef enum:
    WINO_PF = 16        # input channels the Winograd input transform prefetches ahead

cdef bint wino_block(const Geom* G, const floating* xg, const floating* ug,
                     const floating* bg, floating* outg, Py_ssize_t cig, Py_ssize_t cog,
                     const Py_ssize_t* tile, Py_ssize_t nrow, Py_ssize_t ts, Py_ssize_t nts,
                     Py_ssize_t Ls, Py_ssize_t Tp, floating* V, floating* M,
                     const floating** ptrs, floating* ev) noexcept nogil:
    """Outputs of nrow tile rows (along axis n - 2, from tile[n - 2]) of nts
    tiles (along the last axis, from tile ts) at the tiles tile[a] of the
    other axes, for one (batch, group) block.  Column r * Ls + t of V (4^n
    positions x cig x Tp, positions wino_stride(cig * Tp) apart) and M (4^n x
    cog x Tp, wino_stride(cog * Tp) apart) is tile (r, t); ug is the
    group's transformed kernel (4^n, cig, cog).  False when an output came
    out non-finite."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t tk[MAXD]
    cdef Py_ssize_t n = G.n, last = G.n - 1, ax2 = G.n - 2
    cdef Py_ssize_t P = 1, Pl, a, e, d, base, nbase, ci, co, r, w, xi
    cdef Py_ssize_t blk, nblk, mr, co0, q0, qend, o, nout
    cdef Py_ssize_t blkV = cig * Tp, blkM = cog * Tp
    cdef Py_ssize_t ldV = wino_stride(blkV), ldM = wino_stride(blkM)
    cdef Py_ssize_t nr = ndconv_nr_f32 if floating is float else ndconv_nr_f64
    cdef Py_ssize_t mrmax = ndconv_mr
    cdef Py_ssize_t Dl = G.in_shape[last], il = G.tap_off[G.tap_base[last]] + 2 * ts
    cdef floating* od = ev + Ls + 1
    cdef floating* dst
    cdef floating* p0
    cdef bint ok, nok, finite = True
    for a in range(n):
        P *= 4
    Pl = P // 4
    # The output rows the block will write, asked for now (the transforms
    # and GEMMs take long enough to bring them in).
    nout = min(2 * nts, G.count[last] - 2 * ts)
    for r in range(nrow):
        for e in range(Pl):
            o = wino_out_row(G, tile, r, e, ts, j)
            if o >= 0:
                for co in range(cog):
                    ndconv_prefetch(outg + co * G.out_vol + o, nout * sizeof(floating))
    # Input: B^T along the last axis from the row's two residues, ...
    for a in range(ax2 + 1):
        tk[a] = 0
    # The rows WINO_PF channels ahead are prefetched, those of the next
    # outer cells (nbase) near the end of a cell's channels.
    tile_cells(0, tile, 0, ax2, j)              # (input cells: unit steps, first taps)
    nok = outer_base_n(G, j, tk, ax2 + 1, &nbase)
    for r in range(nrow):
        for e in range(Pl):
            ok, base = nok, nbase
            nok = False
            if e + 1 < Pl or r + 1 < nrow:
                tile_cells((e + 1) % Pl, tile, r + (e + 1) // Pl, ax2, j)
                nok = outer_base_n(G, j, tk, ax2 + 1, &nbase)
            for ci in range(cig):
                dst = V + e * 4 * ldV + ci * Tp + r * Ls
                if ci + WINO_PF < cig:
                    if ok:
                        ndconv_prefetch(xg + (ci + WINO_PF) * G.in_vol + base + il,
                                        (2 * nts + 2) * sizeof(floating))
                elif nok and ci + WINO_PF - cig < cig:
                    ndconv_prefetch(xg + (ci + WINO_PF - cig) * G.in_vol + nbase + il,
                                    (2 * nts + 2) * sizeof(floating))
                if not ok:
                    for d in range(4):
                        memset(dst + d * ldV, 0, nts * sizeof(floating))
                    continue
                if G.mode == MODE_CONSTANT:
                    if floating is float:
                        ndconv_wino_row_f32(dst, ldV, xg + ci * G.in_vol + base, il, Dl, nts)
                    else:
                        ndconv_wino_row_f64(dst, ldV, xg + ci * G.in_vol + base, il, Dl, nts)
                    continue
                copy_slots(ev, Ls + 1, xg + ci * G.in_vol + base, il, 2, Dl, nts + 1, G.mode)
                if floating is float:
                    ndconv_wino_in_float(dst, ldV, ev, od, nts)
                else:
                    ndconv_wino_in_double(dst, ldV, ev, od, nts)
    # ... then along the other axes, every channel at once.
    w = 4
    for a in range(ax2, -1, -1):
        wino_pairs(V, P, w, ldV, blkV, True, 0)
        w *= 4
    # One GEMM per position, over the columns in use.
    qend = ((nrow - 1) * Ls + nts + nr - 1) // nr * nr
    nblk = (cog + mrmax - 1) // mrmax
    for xi in range(P):
        co0 = 0
        for blk in range(nblk):
            mr = (cog - co0 + nblk - blk - 1) // (nblk - blk)
            q0 = 0
            while q0 < qend:
                if floating is float:
                    ndconv_mk_f32(<int>mr, cig, ug + xi * cig * cog + co0, cog,
                                  <const float**>(ptrs + xi * cig), q0,
                                  M + xi * ldM + co0 * Tp + q0, Tp, 1, NULL)
                else:
                    ndconv_mk_f64(<int>mr, cig, ug + xi * cig * cog + co0, cog,
                                  <const double**>(ptrs + xi * cig), q0,
                                  M + xi * ldM + co0 * Tp + q0, Tp, 1, NULL)
                q0 += nr
            co0 += mr
    # Output: A^T along the other axes, then along the last axis as written.
    w = 4
    for a in range(ax2, -1, -1):
        wino_pairs(M, P, w, ldM, blkM, False, w)
        w *= 4
    for r in range(nrow):
        for e in range(Pl):
            o = wino_out_row(G, tile, r, e, ts, j)
            if o < 0:
                continue
            for co in range(cog):
                p0 = M + e * 4 * ldM + co * Tp + r * Ls
                if floating is float:
                    finite &= ndconv_wino_out_float(outg + co * G.out_vol + o, p0, p0 + ldM,
                                                    p0 + 2 * ldM, p0 + 3 * ldM, nout,
                                                    bg[co] if bg != NULL else 0)
                else:
                    finite &= ndconv_wino_out_double(outg + co * G.out_vol + o, p0, p0 + ldM,
                                                     p0 + 2 * ldM, p0 + 3 * ldM, nout,
                                                     bg[co] if bg != NULL else 0)
    return finite


ctypedef struct WinoItems:
    Py_ssize_t nt[MAXD]     # tiles per axis
    Py_ssize_t groups, nouter, nbr, nseg, R, Ls


cdef Py_ssize_t wino_items(const Geom* G, Py_ssize_t N, Py_ssize_t groups, Py_ssize_t R,
                           Py_ssize_t Ls, WinoItems* W) noexcept nogil:
    """The work items of the Winograd kernels, (batch, group, tiles of the
    outer axes, block of R tile rows, segment of Ls tiles), in that order;
    returns their number."""
    cdef Py_ssize_t a, ax2 = G.n - 2
    for a in range(G.n):
        W.nt[a] = (G.count[a] + 1) // 2
    W.nouter = 1
    for a in range(ax2):
        W.nouter *= W.nt[a]
    W.groups = groups
    W.R = R
    W.Ls = Ls
    W.nbr = (W.nt[ax2] + R - 1) // R
    W.nseg = (W.nt[G.n - 1] + Ls - 1) // Ls
    return N * groups * W.nouter * W.nbr * W.nseg


ctypedef struct WinoItem:
    Py_ssize_t b, g, ts, nrow, nts


cdef inline WinoItem wino_item(const WinoItems* W, Py_ssize_t ax2, Py_ssize_t it,
                               Py_ssize_t* tile) noexcept nogil:
    """Work item it: batch b, group g, first tiles tile[a] (a <= ax2) and ts
    (last axis), and its nrow tile rows of nts tiles.  (Returned by value:
    a variable a prange body assigns is private to its thread, one it only
    passes by address is shared.)"""
    cdef WinoItem I
    I.b = it // (W.groups * W.nouter * W.nbr * W.nseg)
    I.g = (it // (W.nouter * W.nbr * W.nseg)) % W.groups
    unravel((it // (W.nbr * W.nseg)) % W.nouter, W.nt, ax2, tile)
    tile[ax2] = (it // W.nseg) % W.nbr * W.R
    I.ts = it % W.nseg * W.Ls
    I.nrow = min(W.R, W.nt[ax2] - tile[ax2])
    I.nts = min(W.Ls, W.nt[ax2 + 1] - I.ts)
    return I


def conv_winograd(const floating[::1] x, const floating[::1] u, const floating[::1] bias,
                  floating[::1] out, const Py_ssize_t[::1] geo, Py_ssize_t n, Py_ssize_t N,
                  Py_ssize_t C_in, Py_ssize_t C_out, Py_ssize_t groups, int mode,
                  Py_ssize_t Ls, Py_ssize_t R, Py_ssize_t Tp, int nthreads):
    """A correlation with three consecutive taps on each of n (2 or 3) axes,
    unit steps, by Winograd F(2, 3) (see wino_block).  u is the transformed
    kernel, (groups, 4^n, C_in // groups, C_out // groups).  A work item is
    R tile rows along axis n - 2 of Ls tiles along the last axis, Tp >= R *
    Ls columns (a multiple of NR).

    Returns 0 when done, 1 when a thread could not allocate its workspace,
    2 when some output is not finite: the transforms mix the cells of a tile,
    so a NaN or inf reaches outputs the direct sum keeps apart (or a sum
    overflows that the direct sum does not), and the caller recomputes the
    phase another way."""
    cdef Geom G = _geom(geo, n, mode)
    cdef Py_ssize_t cig = C_in // groups, cog = C_out // groups
    cdef Py_ssize_t ax2 = n - 2
    cdef Py_ssize_t P = 1, a, k, nitems, it
    cdef Py_ssize_t ldV = wino_stride(cig * Tp), ldM = wino_stride(cog * Tp)
    cdef WinoItems W
    cdef WinoItem I
    cdef int failed = 0, nonfinite = 0
    cdef int* fail = &failed
    cdef int* nonf = &nonfinite
    cdef floating* V
    cdef floating* M
    cdef floating* ev
    cdef const floating** ptrs
    cdef Py_ssize_t* tile
    cdef const floating* xp = &x[0]
    cdef const floating* up = &u[0]
    cdef const floating* bp = &bias[0] if bias.shape[0] > 0 else NULL
    cdef floating* op = &out[0]
    if n < 2 or Ls < 1 or R < 1 or Tp < R * Ls or Tp % (ndconv_nr_f32 if floating is float
                                                          else ndconv_nr_f64):
        raise ValueError('bad Winograd blocking')
    for a in range(n):
        P *= 4
    nitems = wino_items(&G, N, groups, R, Ls, &W)
    if nitems == 0:
        return 0
    with nogil, parallel(num_threads=nthreads):
        V = <floating*>aligned_alloc(64, P * ldV * sizeof(floating))
        M = <floating*>aligned_alloc(64, P * ldM * sizeof(floating))
        ptrs = <const floating**>malloc(P * cig * sizeof(floating*))
        ev = <floating*>malloc(2 * (Ls + 1) * sizeof(floating))
        tile = <Py_ssize_t*>malloc(MAXD * sizeof(Py_ssize_t))
        if V == NULL or M == NULL or ptrs == NULL or ev == NULL or tile == NULL:
            fail[0] = 1
        else:
            memset(V, 0, P * ldV * sizeof(floating))   # columns past the tiles
            for k in range(P * cig):
                ptrs[k] = V + k // cig * ldV + k % cig * Tp
            for it in prange(nitems, schedule='dynamic', chunksize=1):
                I = wino_item(&W, ax2, it, tile)
                if not wino_block(&G, xp + (I.b * C_in + I.g * cig) * G.in_vol,
                                  up + I.g * P * cig * cog,
                                  bp + I.g * cog if bp != NULL else NULL,
                                  op + (I.b * C_out + I.g * cog) * G.out_vol, cig, cog, tile,
                                  I.nrow, I.ts, I.nts, Ls, Tp, V, M, ptrs, ev):
                    nonf[0] = 1
        free(V)
        free(M)
        free(<void*>ptrs)
        free(ev)
        free(tile)
    return 1 if failed else (2 if nonfinite else 0)


cdef inline void wino_gw_pass(bint bt, floating* d, Py_ssize_t ldk, Py_ssize_t ldt,
                              const floating* src, Py_ssize_t ldr, Py_ssize_t lds,
                              Py_ssize_t length, Py_ssize_t nt) noexcept nogil:
    """ndconv_wino_bt2 (bt) or ndconv_wino_a2 of the dtype."""
    if floating is float:
        if bt:
            ndconv_wino_bt2_float(d, ldk, ldt, src, ldr, lds, length, nt)
        else:
            ndconv_wino_a2_float(d, ldk, ldt, src, ldr, lds, length, nt)
    else:
        if bt:
            ndconv_wino_bt2_double(d, ldk, ldt, src, ldr, lds, length, nt)
        else:
            ndconv_wino_a2_double(d, ldk, ldt, src, ldr, lds, length, nt)


cdef void wino_gw_block(const Geom* G, const floating* xg, const floating* gyg,
                        floating* gpart, Py_ssize_t ldc, Py_ssize_t cig, Py_ssize_t cigp,
                        Py_ssize_t cog, const Py_ssize_t* tile, Py_ssize_t nrow,
                        Py_ssize_t ts, Py_ssize_t nts, Py_ssize_t Kmax, floating* S,
                        floating* V, floating* Sg, floating* U, floating* row,
                        const floating** ptrs) noexcept nogil:
    """Add the transformed weight gradient of the tiles of one work item (see
    conv_grad_w_winograd) into gpart: cog rows ldc apart, columns (xi, cigp).

    Tile (r, t) is column k = r * nts + t of the GEMMs: nrow tile rows along
    axis n - 2 from tile[n - 2], nts tiles along the last axis from ts, at
    the tiles tile[a] of the other axes.  Everything is channels-last, so
    every step of the transforms is a sum of channel vectors.  x: its cells
    (4^(n-2) outer positions, 2 nrow + 2 rows, 2 nts + 2 cells, cig) are
    staged in S, B^T runs in place along the outer axes, then from S into V
    along the last two axes at once, 16 positions at a time: V (16, Kmax,
    cigp).  gy: its cells
    (outer digits 0 and 1, 2 nrow rows, 2 nts cells, cog; zero past the
    output) go to Sg, then A the same way into U (16, Kmax, cog).  Then
    16 GEMMs: gy's channels on the micro-kernel's MR rows, the input's on
    its NR columns, the tiles the reduction."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t tk[MAXD]
    cdef Py_ssize_t n = G.n, last = G.n - 1, ax2 = G.n - 2
    cdef Py_ssize_t P2 = 1, a, e, w, y, r, base, nv, top, xi
    cdef Py_ssize_t K = nrow * nts, lr = 2 * nts + 2, lg = 2 * nts, ny = 2 * nrow + 2
    cdef Py_ssize_t blkS = ny * lr * cig, blkG = 2 * nrow * lg * cog
    cdef Py_ssize_t Dl = G.in_shape[last], il = G.tap_off[G.tap_base[last]] + 2 * ts
    cdef Py_ssize_t nr = ndconv_nr_f32 if floating is float else ndconv_nr_f64
    cdef Py_ssize_t mrmax = ndconv_mr
    cdef Py_ssize_t nblk = (cog + mrmax - 1) // mrmax
    cdef Py_ssize_t blk, mr, co0, ci0
    cdef Py_ssize_t KV = wino_stride(Kmax * cigp), KU = wino_stride(Kmax * cog)
    cdef floating* dst
    cdef bint ok
    for a in range(ax2):
        P2 *= 4
    for a in range(n):
        tk[a] = 0
    # x, staged channels-last (rows copied, then transposed in register tiles)
    for e in range(P2):
        top = tile_cells(4 * e, tile, 0, ax2, j)   # (the outer axes; j[ax2] set below)
        for y in range(ny):
            j[ax2] = 2 * tile[ax2] + y
            ok = outer_base_n(G, j, tk, ax2 + 1, &base)
            stage_cl(S + (e * ny + y) * lr * cig, row, xg + base if ok else NULL, G.in_vol,
                     cig, il, 1, Dl, lr, G.mode)
    w = 1
    for a in range(ax2 - 1, -1, -1):
        wino_pairs(S, P2, w, blkS, blkS, 1, 0)
        w *= 4
    # gy, the same way with A (only outer digits 0 and 1 are cells)
    for e in range(P2):
        top = tile_cells(4 * e, tile, 0, ax2, j)   # (the outer axes; j[ax2] set below)
        if top > 1:
            continue
        ok = True
        for a in range(ax2):
            ok = ok and j[a] < G.count[a]
        j[last] = 2 * ts
        for y in range(2 * nrow):
            j[ax2] = 2 * tile[ax2] + y
            dst = Sg + (e * 2 * nrow + y) * lg * cog
            nv = min(lg, G.count[last] - 2 * ts) if ok and j[ax2] < G.count[ax2] else 0
            if nv > 0:
                transpose(gyg + out_offset(G, j), G.out_vol, dst, cog, cog, nv, False)
            memset(dst + nv * cog, 0, (lg - nv) * cog * sizeof(floating))
    w = 1
    for a in range(ax2 - 1, -1, -1):
        wino_pairs(Sg, P2, w, blkG, blkG, 2, 0)
        w *= 4
    # Per outer position, the last two axes of both, then one GEMM per
    # position, the tiles the reduction.
    for e in range(P2):
        for r in range(nrow):
            wino_gw_pass(True, V + r * nts * cigp, KV, cigp,
                         S + (e * ny + 2 * r) * lr * cig, lr * cig, cig, cig, nts)
            wino_gw_pass(False, U + r * nts * cog, KU, cog,
                         Sg + (e * 2 * nrow + 2 * r) * lg * cog, lg * cog, cog, cog, nts)
        for xi in range(16):
            co0 = 0
            for blk in range(nblk):
                mr = (cog - co0 + nblk - blk - 1) // (nblk - blk)
                ci0 = 0
                while ci0 < cig:
                    if floating is float:
                        ndconv_mk_f32(<int>mr, K, U + xi * KU + co0, cog,
                                      <const float**>(ptrs + xi * Kmax), ci0,
                                      gpart + co0 * ldc + (e * 16 + xi) * cigp + ci0, ldc,
                                      0, NULL)
                    else:
                        ndconv_mk_f64(<int>mr, K, U + xi * KU + co0, cog,
                                      <const double**>(ptrs + xi * Kmax), ci0,
                                      gpart + co0 * ldc + (e * 16 + xi) * cigp + ci0, ldc,
                                      0, NULL)
                    ci0 += nr
                co0 += mr


def conv_grad_w_winograd(const floating[::1] x, const floating[::1] gy, floating[::1] parts,
                         const Py_ssize_t[::1] geo, Py_ssize_t n, Py_ssize_t N,
                         Py_ssize_t C_in, Py_ssize_t C_out, Py_ssize_t groups,
                         Py_ssize_t Ls, Py_ssize_t R, Py_ssize_t nparts, int nthreads):
    """Weight gradient of a phase with three consecutive taps on each of n
    (>= 2) axes, unit steps, zero padding, by Winograd F(3, 2): with the F(2,
    3) matrices of conv_winograd, dW = G^T [sum over tiles of (A gy) * (B^T
    x)] on every axis, tiles of 2^n output cells (see wino_gw_block).  A work
    item is R tile rows along axis n - 2 of Ls tiles along the last axis;
    the items, in order, are cut into ``nparts`` fixed runs, and run k adds
    the sums of its items into ``parts[k]``, (C_out, 4^n * cigp) with cigp =
    C_in // groups rounded up to NR (zeroed here, by the thread that fills
    it).  The caller
    adds the parts in order and applies G^T, so the result does not depend
    on the thread count.  False when a thread could not allocate its
    workspace."""
    cdef Geom G = _geom(geo, n, 0)
    cdef Py_ssize_t cig = C_in // groups, cog = C_out // groups
    cdef Py_ssize_t nr = ndconv_nr_f32 if floating is float else ndconv_nr_f64
    cdef Py_ssize_t cigp = (cig + nr - 1) // nr * nr
    cdef Py_ssize_t ax2 = n - 2
    cdef Py_ssize_t P2 = 1, a, k, nitems, it
    cdef Py_ssize_t part, i0, i1, Kmax = R * Ls, ldc
    cdef Py_ssize_t lr = 2 * Ls + 2, lg = 2 * Ls
    cdef Py_ssize_t sizeS, sizeV, sizeSg, sizeU
    cdef WinoItems W
    cdef WinoItem I
    cdef int failed = 0
    cdef int* fail = &failed
    cdef floating* S
    cdef floating* V
    cdef floating* Sg
    cdef floating* U
    cdef floating* row
    cdef const floating** ptrs
    cdef Py_ssize_t* tile
    cdef const floating* xp = &x[0]
    cdef const floating* gyp = &gy[0]
    cdef floating* pp = &parts[0]
    if n < 2 or Ls < 1 or R < 1:
        raise ValueError('bad Winograd blocking')
    for a in range(ax2):
        P2 *= 4
    ldc = 16 * P2 * cigp
    nitems = wino_items(&G, N, groups, R, Ls, &W)
    if nitems == 0:
        return True
    sizeS = P2 * (2 * R + 2) * lr * cig
    sizeV = 16 * wino_stride(Kmax * cigp)
    sizeSg = P2 * 2 * R * lg * cog
    sizeU = 16 * wino_stride(Kmax * cog)
    with nogil, parallel(num_threads=nthreads):
        S = <floating*>aligned_alloc(64, (sizeS + sizeV + sizeSg + sizeU + cig * lr + 64)
                                     * sizeof(floating))
        ptrs = <const floating**>malloc(16 * Kmax * sizeof(floating*))
        tile = <Py_ssize_t*>malloc(MAXD * sizeof(Py_ssize_t))
        if S == NULL or ptrs == NULL or tile == NULL:
            fail[0] = 1
        else:
            V = S + sizeS
            Sg = V + sizeV
            U = Sg + sizeSg
            row = U + sizeU
            memset(V, 0, sizeV * sizeof(floating))     # the columns past cig
            memset(Sg, 0, sizeSg * sizeof(floating))   # outer digits 2 and 3
            for k in range(16 * Kmax):
                ptrs[k] = V + k // Kmax * wino_stride(Kmax * cigp) + k % Kmax * cigp
            for part in prange(nparts, schedule='dynamic', chunksize=1):
                i0 = part * nitems // nparts
                i1 = (part + 1) * nitems // nparts
                memset(pp + part * C_out * ldc, 0, C_out * ldc * sizeof(floating))
                for it in range(i0, i1):
                    I = wino_item(&W, ax2, it, tile)
                    wino_gw_block(&G, xp + (I.b * C_in + I.g * cig) * G.in_vol,
                                  gyp + (I.b * C_out + I.g * cog) * G.out_vol,
                                  pp + part * C_out * ldc + I.g * cog * ldc, ldc, cig, cigp,
                                  cog, tile, I.nrow, I.ts, I.nts, Kmax, S, V, Sg, U, row, ptrs)
        free(S)
        free(<void*>ptrs)
        free(tile)
    return failed == 0


cdef double* wino_axes(double* a, double* b, Py_ssize_t n, bint kernel) noexcept nogil:
    """G (kernel: 3 -> 4 values an axis) or G^T (4 -> 3) along every axis of
    a, axis 0 first; a and b are used in turn, and the one holding the
    result is returned.  Axis k: (out^k, in, inner) -> (out^k, out, inner),
    inner = in^(n-1-k), so both sides run in order."""
    cdef Py_ssize_t nin = 3 if kernel else 4, nout = 7 - nin
    cdef Py_ssize_t k, r, i, size = 1, rest = 1
    cdef double v0, v1, v2, v3
    cdef double* s
    cdef double* d
    cdef double* swap
    for k in range(n):
        rest *= nin
    for k in range(n):
        rest = rest // nin
        for r in range(size):
            s = a + nin * r * rest
            d = b + nout * r * rest
            for i in range(rest):
                v0 = s[i]
                v1 = s[rest + i]
                v2 = s[2 * rest + i]
                if kernel:
                    d[i] = v0
                    d[rest + i] = 0.5 * (v0 + v1 + v2)
                    d[2 * rest + i] = 0.5 * (v0 - v1 + v2)
                    d[3 * rest + i] = v2
                else:
                    v3 = s[3 * rest + i]
                    d[i] = v0 + 0.5 * (v1 + v2)
                    d[rest + i] = 0.5 * (v1 - v2)
                    d[2 * rest + i] = 0.5 * (v1 + v2) + v3
        size = nout * size
        swap = a
        a = b
        b = swap
    return a


def wino_kernel(const floating[::1] w, floating[::1] u, Py_ssize_t C_out, Py_ssize_t cig,
                Py_ssize_t groups, Py_ssize_t n, int nthreads):
    """u (groups, 4^n, cig, C_out // groups) = G g G^T on every axis of each
    kernel g of w (C_out, cig, 3^n), in double: the kernel conv_winograd
    reads.  One input channel at a time, every output channel, so that u is
    written in runs."""
    cdef Py_ssize_t P = 1, Q = 1, cog = C_out // groups, co, ci, r, i, k
    cdef double* buf
    cdef double* a
    cdef double* b
    cdef double* col
    cdef int failed = 0
    cdef int* fail = &failed
    for k in range(n):
        P *= 4
        Q *= 3
    with nogil, parallel(num_threads=nthreads):
        buf = <double*>malloc((2 + C_out) * P * sizeof(double))
        if buf == NULL:
            fail[0] = 1
        else:
            col = buf + 2 * P
            for ci in prange(cig, schedule='static'):
                for co in range(C_out):
                    a = buf
                    b = buf + P
                    for r in range(Q):
                        a[r] = w[(co * cig + ci) * Q + r]
                    a = wino_axes(a, b, n, True)
                    for r in range(P):
                        col[r * C_out + co] = a[r]
                for k in range(groups):
                    for r in range(P):
                        for i in range(cog):
                            u[((k * P + r) * cig + ci) * cog + i] = (
                                <floating>col[r * C_out + k * cog + i])
        free(buf)
    if failed:
        raise MemoryError('ndconv could not allocate its per-thread workspace')


def wino_gw_finish(const floating[::1] parts, floating[::1] out, Py_ssize_t nparts,
                   Py_ssize_t C_out, Py_ssize_t cig, Py_ssize_t cigp, Py_ssize_t n,
                   int nthreads):
    """out (C_out, cig, 3^n) = G^T on every axis of the sum of the parts of
    conv_grad_w_winograd, (nparts, C_out, 4^n, cigp)[..., :cig], added in
    order; in double.  Returns False when some output is not finite."""
    cdef Py_ssize_t P = 1, Q = 1, co, ci, p, xi, r, k
    cdef double* buf
    cdef double* sums
    cdef double* a
    cdef double* b
    cdef int nonfinite = 0, failed = 0
    cdef int* nonf = &nonfinite
    cdef int* fail = &failed
    cdef floating v
    for k in range(n):
        P *= 4
        Q *= 3
    with nogil, parallel(num_threads=nthreads):
        buf = <double*>malloc((2 + cigp) * P * sizeof(double))
        if buf == NULL:
            fail[0] = 1
        else:
            sums = buf + 2 * P
            for co in prange(C_out, schedule='static'):
                # The parts of this row, added in order, read in runs.
                for xi in range(P * cigp):
                    sums[xi] = parts[co * P * cigp + xi]
                for p in range(1, nparts):
                    for xi in range(P * cigp):
                        sums[xi] = sums[xi] + parts[(p * C_out + co) * P * cigp + xi]
                for ci in range(cig):
                    a = buf
                    b = buf + P
                    for xi in range(P):
                        a[xi] = sums[xi * cigp + ci]
                    a = wino_axes(a, b, n, False)
                    for r in range(Q):
                        v = <floating>a[r]
                        out[(co * cig + ci) * Q + r] = v
                        if v - v != 0:
                            nonf[0] = 1
        free(buf)
    if failed:
        raise MemoryError('ndconv could not allocate its per-thread workspace')
    return nonfinite == 0


def conv_grad_w_implicit(const floating[::1] x, const floating[::1] gy, floating[::1] parts,
                         const Py_ssize_t[::1] geo, const Py_ssize_t[::1] lastinfo,
                         Py_ssize_t n, Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t C_out,
                         Py_ssize_t groups, int mode, Py_ssize_t cchunk, Py_ssize_t qseg,
                         Py_ssize_t rows, Py_ssize_t nparts, int nthreads):
    """Weight gradient of one phase from packed rows (n >= 2).

    The work items (batch, group, plane, row block), in that order, are cut
    into ``nparts`` fixed runs; run k adds its items, in order, into
    ``parts[k]``, (C_out, C_in // groups * tv), which must arrive zeroed.
    The caller adds the parts in order: the sum does not depend on the
    thread count."""
    cdef Geom G = _geom(geo, n, mode)
    cdef Last Lt
    cdef Py_ssize_t cig = C_in // groups, cog = C_out // groups
    cdef Py_ssize_t kw = cig * G.tv
    cdef Py_ssize_t last = n - 1, ax2 = n - 2
    cdef Py_ssize_t L = G.count[last], nl = G.ntaps[last]
    cdef Py_ssize_t nplanes = G.psub // (L * G.count[ax2]) if L * G.count[ax2] > 0 else 0
    cdef Py_ssize_t nblocks = (G.count[ax2] + rows - 1) // rows
    cdef Py_ssize_t nitems = N * groups * nplanes * nblocks
    cdef Py_ssize_t vw = ndconv_vw_f32 if floating is float else ndconv_vw_f64
    cdef Py_ssize_t mrk = NDCONV_RK_MR, nk = NDCONV_RK_NK
    cdef Py_ssize_t cogp = (cog + mrk - 1) // mrk * mrk
    cdef Py_ssize_t part, it, i0, i1, b, g, pl, jr0, ls, lq, lpy, nin, omin, packsize, ldp
    cdef int failed = 0
    cdef int* fail = &failed
    cdef floating* pack
    cdef floating* ybuf
    cdef floating* zrow
    cdef floating* gt
    cdef const floating** ptrs
    cdef const floating* xp = &x[0]
    cdef const floating* gyp = &gy[0]
    cdef floating* pp = &parts[0]
    Lt = _last(&lastinfo[0], nl)
    if nitems == 0 or kw == 0:
        return True
    block_rows_in(&G, 0, rows, &omin, &nin)
    lq = min(qseg, L)
    lpy = (lq + vw - 1) // vw * vw
    ls = (lq + Lt.span + vw + 15) // 16 * 16
    packsize = cchunk * (G.tv // (nl * G.ntaps[ax2])) * nin * Lt.nslot * ls
    ldp = cchunk * G.tv + nk
    zrow = <floating*>calloc(ls, sizeof(floating))
    if zrow == NULL:
        return False
    with nogil, parallel(num_threads=nthreads):
        pack = <floating*>aligned_alloc(64, packsize * sizeof(floating))
        if pack != NULL:
            memset(pack, 0, packsize * sizeof(floating))
        ptrs = <const floating**>malloc(rows * ldp * sizeof(floating*))
        ybuf = <floating*>calloc(rows * cogp * lpy, sizeof(floating))
        gt = <floating*>malloc(mrk * nk * sizeof(floating))
        if pack == NULL or ptrs == NULL or ybuf == NULL or gt == NULL:
            fail[0] = 1
        else:
            for part in prange(nparts, schedule='dynamic', chunksize=1):
                i0 = part * nitems // nparts
                i1 = (part + 1) * nitems // nparts
                for it in range(i0, i1):
                    b = it // (groups * nplanes * nblocks)
                    g = (it // (nplanes * nblocks)) % groups
                    pl = (it // nblocks) % nplanes
                    jr0 = (it % nblocks) * rows
                    gradw_block(&G, &Lt, xp + (b * C_in + g * cig) * G.in_vol,
                                gyp + (b * C_out + g * cog) * G.out_vol,
                                pp + part * C_out * kw + g * cog * kw,
                                cig, cog, cogp, cchunk, qseg, pl, jr0,
                                min(jr0 + rows, G.count[ax2]), pack, ls, ptrs, ldp,
                                zrow, ybuf, lpy, gt)
        free(pack)
        free(<void*>ptrs)
        free(ybuf)
        free(gt)
    free(zrow)
    return failed == 0


cdef void gradw_block_cl(const Geom* G, const Last* Lt, const floating* xg,
                         const floating* gyg, floating* gpart, Py_ssize_t ldc,
                         Py_ssize_t cig, Py_ssize_t cigp, Py_ssize_t cog, Py_ssize_t qseg,
                         Py_ssize_t plane, Py_ssize_t jr0, Py_ssize_t jr1,
                         floating* stage, Py_ssize_t stsize, floating* row, floating* ybuf,
                         const floating** ptrs, const Py_ssize_t* where,
                         Py_ssize_t only) noexcept nogil:
    """Add the weight gradient of output rows [jr0, jr1) of one plane of one
    (batch, group) block into gpart: cog rows ldc apart, columns (tap, cigp).

    The roles of the forward micro-kernel are swapped: output cells are the
    reduction, the channels of the output gradient are its MR rows, input
    channels its NR columns.  Both operands are staged channels-last: ybuf
    (cell, cog) and, for one tap combination of the outer axes at a time, the
    input rows in stage (row, slot, cell, cig), so every tap of the last two
    axes finds the NR channels of a cell contiguous (each channel's row is
    copied into ``row``, cig x (segment + span), then transposed in register
    tiles).  Reads run up to cigp - cig cells past a staged row (stage has
    that slack); the columns past cig of each tap are garbage the caller
    drops.

    Tap combination too is staged at stage + place * stsize, place =
    where[too] (0 when where is NULL); with only >= 0 only that combination
    is staged, the others being left from the previous plane (see
    conv_grad_w_cl's runs of planes)."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t tk[MAXD]
    cdef Py_ssize_t last = G.n - 1, ax2 = G.n - 2
    cdef Py_ssize_t L = G.count[last], st = G.step[last]
    cdef Py_ssize_t nrow = jr1 - jr0
    cdef Py_ssize_t nl = G.ntaps[last], n2 = G.ntaps[ax2]
    cdef Py_ssize_t sl = G.in_step[last], Dl = G.in_shape[last]
    cdef const Py_ssize_t* off2 = G.tap_off + G.tap_base[ax2]
    cdef Py_ssize_t s2 = G.in_step[ax2]
    cdef Py_ssize_t nr = ndconv_nr_f32 if floating is float else ndconv_nr_f64
    cdef Py_ssize_t mrmax = ndconv_mr
    cdef Py_ssize_t nblk = (cog + mrmax - 1) // mrmax
    cdef Py_ssize_t i2min, nin, qs, lq, lr, K, r, q, co, a, ii, i2, sidx, o
    cdef Py_ssize_t base, base2, too, t2, tl, tap, blk, mr, co0, ci0
    cdef const floating* src
    cdef floating* dst
    cdef floating* place
    cdef bint ok
    block_rows_in(G, jr0, jr1, &i2min, &nin)
    unravel(plane, G.count, ax2, j)
    j[last] = 0
    qs = 0
    while qs < L:
        lq = min(qseg, L - qs)
        lr = lq + Lt.span
        K = nrow * lq
        for r in range(nrow):
            j[ax2] = jr0 + r
            o = out_offset(G, j) + qs * st
            if st == 1:
                transpose(gyg + o, G.out_vol, ybuf + r * lq * cog, cog, cog, lq, False)
                continue
            for co in range(cog):
                src = gyg + co * G.out_vol + o
                dst = ybuf + r * lq * cog + co
                for q in range(lq):
                    dst[q * cog] = src[q * st]
        j[ax2] = jr0
        for a in range(ax2):
            tk[a] = 0
        too = 0
        while True:
            place = stage + (where[too] * stsize if where != NULL else 0)
            ok = outer_base_n(G, j, tk, ax2, &base)
            for ii in range(nin if only < 0 or only == too else 0):
                i2 = i2min + ii
                base2 = row_offset(G, ok, base, i2)
                for sidx in range(Lt.nslot):
                    stage_cl(place + (ii * Lt.nslot + sidx) * lr * cig, row,
                             xg + base2 if base2 >= 0 else NULL, G.in_vol, cig,
                             sl * (Lt.m_min + qs) + Lt.rho[sidx], sl, Dl, lr, G.mode)
            for t2 in range(n2):
                for tl in range(nl):
                    tap = (too * n2 + t2) * nl + tl
                    for r in range(nrow):
                        ii = off2[t2] + (jr0 + r) * s2 - i2min
                        src = place + ((ii * Lt.nslot + Lt.slot[tl]) * lr + Lt.shift[tl]) * cig
                        for q in range(lq):
                            ptrs[r * lq + q] = src + q * cig
                    co0 = 0
                    for blk in range(nblk):
                        mr = (cog - co0 + nblk - blk - 1) // (nblk - blk)
                        ci0 = 0
                        while ci0 < cig:
                            if floating is float:
                                ndconv_mk_f32(<int>mr, K, ybuf + co0, cog, <const float**>ptrs,
                                              ci0, gpart + co0 * ldc + tap * cigp + ci0, ldc,
                                              0, NULL)
                            else:
                                ndconv_mk_f64(<int>mr, K, ybuf + co0, cog, <const double**>ptrs,
                                              ci0, gpart + co0 * ldc + tap * cigp + ci0, ldc,
                                              0, NULL)
                            ci0 += nr
                        co0 += mr
            too += 1
            if not next_taps_n(G, tk, ax2):
                break
        qs += lq


def conv_grad_w_cl(const floating[::1] x, const floating[::1] gy, floating[::1] parts,
                   const Py_ssize_t[::1] geo, const Py_ssize_t[::1] lastinfo,
                   Py_ssize_t n, Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t C_out,
                   Py_ssize_t groups, int mode, Py_ssize_t qseg, Py_ssize_t rows,
                   Py_ssize_t nparts, int nthreads):
    """Weight gradient of one phase, channels-last (n >= 2; see gradw_block_cl).

    Work items and their cut into ``nparts`` fixed runs are those of
    conv_grad_w_implicit; ``parts`` is (nparts, C_out, tv * cigp), cigp =
    C_in // groups rounded up to the micro-kernel's NR, and must arrive
    zeroed.  The caller adds the parts in order and drops the padding
    columns, so the sum does not depend on the thread count."""
    cdef Geom G = _geom(geo, n, mode)
    cdef Last Lt
    cdef Py_ssize_t cig = C_in // groups, cog = C_out // groups
    cdef Py_ssize_t nr = ndconv_nr_f32 if floating is float else ndconv_nr_f64
    cdef Py_ssize_t cigp = (cig + nr - 1) // nr * nr
    cdef Py_ssize_t ldc = G.tv * cigp
    cdef Py_ssize_t last = n - 1, ax2 = n - 2
    cdef Py_ssize_t L = G.count[last], nl = G.ntaps[last]
    cdef Py_ssize_t nplanes = G.psub // (L * G.count[ax2]) if L * G.count[ax2] > 0 else 0
    cdef Py_ssize_t nblocks = (G.count[ax2] + rows - 1) // rows
    cdef Py_ssize_t nitems = N * groups * nplanes * nblocks
    cdef Py_ssize_t part, it, i0, i1, b, g, pl, jr0, lq, lr, nin, omin, stsize, prev
    cdef Py_ssize_t noo = G.tv // (G.ntaps[last] * G.ntaps[ax2]), nstage = 1
    cdef int failed = 0
    cdef int* fail = &failed
    cdef floating* stage
    cdef floating* row
    cdef floating* ybuf
    cdef const floating** ptrs
    cdef Py_ssize_t* where
    cdef const floating* xp = &x[0]
    cdef const floating* gyp = &gy[0]
    cdef floating* pp = &parts[0]
    Lt = _last(&lastinfo[0], nl)
    if nitems == 0 or G.tv == 0:
        return True
    block_rows_in(&G, 0, rows, &omin, &nin)
    lq = min(qseg, L)
    lr = lq + Lt.span
    stsize = (nin * Lt.nslot * lr * cig + cigp + 15) // 16 * 16
    # Runs of planes (n == 3, unit step along axis 0, consecutive taps, whole
    # planes in one segment): consecutive items of a part are consecutive
    # planes, and the next plane reads all but one of this plane's input
    # planes.  Each tap combination's stage then sits at (input plane mod
    # noo), and only the new input plane is staged.
    if (plane_ring(&G, noo) and nblocks == 1 and lq == L
            and noo * stsize * sizeof(floating) <= (1 << 20)):
        nstage = noo
    with nogil, parallel(num_threads=nthreads):
        stage = <floating*>aligned_alloc(64, nstage * stsize * sizeof(floating))
        if stage != NULL:
            memset(stage, 0, nstage * stsize * sizeof(floating))
        row = <floating*>malloc(cig * lr * sizeof(floating))
        ybuf = <floating*>malloc(rows * lq * cog * sizeof(floating))
        ptrs = <const floating**>malloc(rows * lq * sizeof(floating*))
        where = <Py_ssize_t*>malloc(64 * sizeof(Py_ssize_t))
        if stage == NULL or row == NULL or ybuf == NULL or ptrs == NULL or where == NULL:
            fail[0] = 1
        else:
            for part in prange(nparts, schedule='dynamic', chunksize=1):
                i0 = part * nitems // nparts
                i1 = (part + 1) * nitems // nparts
                prev = -2
                for it in range(i0, i1):
                    b = it // (groups * nplanes * nblocks)
                    g = (it // (nplanes * nblocks)) % groups
                    pl = (it // nblocks) % nplanes
                    jr0 = (it % nblocks) * rows
                    if nstage > 1:
                        ring_places(&G, pl, noo, where)
                    gradw_block_cl(&G, &Lt, xp + (b * C_in + g * cig) * G.in_vol,
                                   gyp + (b * C_out + g * cog) * G.out_vol,
                                   pp + part * C_out * ldc + g * cog * ldc, ldc,
                                   cig, cigp, cog, qseg, pl, jr0,
                                   min(jr0 + rows, G.count[ax2]), stage, stsize, row,
                                   ybuf, ptrs, where if nstage > 1 else NULL,
                                   noo - 1 if nstage > 1 and pl == prev + 1 else -1)
                    prev = pl
        free(stage)
        free(row)
        free(ybuf)
        free(<void*>ptrs)
        free(where)
    return failed == 0
