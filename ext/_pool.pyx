# cython: language_level=3, cdivision=True, nonecheck=False
# (boundscheck, wraparound and initializedcheck come from setup.py, which
# turns them on for NDCONV_DEBUG=1 builds)
"""N-D pooling and unpooling kernels.

The wrappers in ``ndconv.pooling`` check every argument and hand these
kernels C-contiguous buffers and one packed geometry vector of ``5 * n``
ints: ``in_shape``, ``out_shape``, ``ksize``, ``stride``, ``pad_lo``, with
``n >= 2`` (a 1-D pooling arrives with a leading axis of size 1).  Along
each axis, output cell ``o`` of a pooling reads input cells
``o * stride + t - pad_lo`` for taps ``0 <= t < ksize``; unpooling is the
adjoint, so output cell ``o`` of an unpooling gathers every input ``i`` with
``i * stride <= o + pad_lo < i * stride + ksize``.

Work is cut into fixed items: a run of output *rows* (every axis but the
last, which is contiguous), counted over all the ``(n, c)`` volumes, or a
whole volume for the general ``max_unpool``.  Each item writes its own cells
only, and each output cell is computed in a fixed order (window taps in C
order), so the results do not depend on the thread count or on which thread
runs an item.  No code path depends on the number of axes: outer axes are
walked with an odometer, the last two by plain loops.

The hot loops are the row kernels of ``ndconv_pool.h`` (one copy per ISA,
chosen at run time).  A window kernel call covers a *run* of output rows
along the second-last axis, where the windows' input rows move by a fixed
step, and the cells of the last axis whose windows lie inside the input
(edge cells get calls of their own); so the per-row bookkeeping here is paid
once per run, not once per row or per cell.  Every call is told where the
next run starts, so that its last rows prefetch the next run's first.

Results of 4 MiB or more come from the results allocator of
``ndconv_pool.h`` (``_empty``): 2 MiB-aligned mappings on huge pages, a freed
one kept for the next result of its size.  Being 64-byte aligned, big
results are written with streaming stores (``_stream_bytes``).
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.string cimport memset, memcpy
from libc.stdint cimport int64_t, uint8_t

from cpython.pycapsule cimport PyCapsule_New
cimport numpy as cnp
import numpy as np

from _util cimport MAXD, floordiv, ceildiv, valid_range

cnp.import_array()


cdef extern from "ndconv_pool.h" nogil:
    ctypedef struct ndp_args:
        const void** rows
        const int64_t* rbase
        Py_ssize_t nr, t0, t1, s, off, nq, R, rstep, ostep
        void* out
        int64_t* idx
        int first, last
        int nt
        Py_ssize_t iper, iph
        int has_nxt
        Py_ssize_t nxt
        double div
    ctypedef struct ndp_bcast_args:
        const void* src
        Py_ssize_t istep, kr, ph, R, ostep, D, k, L
        void* out
        int nt
        int has_nxt
        Py_ssize_t nxt
    ctypedef struct ndp_munpool_args:
        const void* x
        const int64_t* idx
        Py_ssize_t istep, kr, ph, R, ostep, D, k, L
        int64_t ob0
        void* out
        int count
        int nt
        int has_nxt
        Py_ssize_t nxt
        int64_t matched, nonneg, bad
    ctypedef void (*ndp_fn)(const ndp_args* a) noexcept nogil
    ctypedef void (*ndp_row_fn)(ndp_bcast_args* a) noexcept nogil
    ctypedef void (*ndp_mu_fn)(ndp_munpool_args* a) noexcept nogil
    ndp_fn ndp_max_f32, ndp_max_f64, ndp_avg_f32, ndp_avg_f64
    void ndp_max_f32_generic(const ndp_args* a)
    void ndp_max_f64_generic(const ndp_args* a)
    void ndp_avg_f32_generic(const ndp_args* a)
    void ndp_avg_f64_generic(const ndp_args* a)
    ndp_row_fn ndp_bcast_f32, ndp_bcast_f64
    ndp_mu_fn ndp_munpool_f32, ndp_munpool_f64
    Py_ssize_t NDP_MAX_GATHER_STRIDE
    const char* ndp_isa
    const char* ndconv_pool_select(const char* name)
    ctypedef struct ndp_mem_handler:
        pass
    ndp_mem_handler ndp_results_handler
    size_t NDP_BIG
    void ndp_release_kept()
    int ndp_nkept_blocks()

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)


def _select_isa(str name='auto'):
    """Choose the row kernels ('auto', 'avx512', 'avx2' or 'generic': the
    widest this CPU runs, no wider than asked); returns the ISA chosen."""
    b = name.encode()
    return ndconv_pool_select(b).decode()


def _isa():
    """The ISA of the row kernels in use."""
    return ndp_isa.decode()


_select_isa('auto')


# ---------------------------------------------------------------------------
# Results: big ones from the allocator of ndconv_pool.h (2 MiB aligned, huge
# pages, the mapping of a freed result kept for the next one of its size).

cdef object _results_handler = PyCapsule_New(<void*>&ndp_results_handler, "mem_handler", NULL)

_BIG_RESULT = NDP_BIG


def _empty(shape, dtype, zero=False):
    """numpy.empty(shape, dtype) (numpy.zeros with ``zero``), from the
    results allocator."""
    old = PyDataMem_SetHandler(_results_handler)
    try:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    finally:
        PyDataMem_SetHandler(old)


def _kept_blocks():
    """How many freed results' mappings are kept for reuse."""
    return ndp_nkept_blocks()


def _release_kept():
    """Unmap the kept mappings."""
    ndp_release_kept()


# Window rows handed to one kernel call; a longer window takes several.
cdef enum:
    CH = 64

# Unpoolings whose result has at least this many bytes write it with
# streaming stores (where 64-byte aligned, as big results are): the output
# is most of their traffic, and a normal store first reads each line in.
# Smaller results stay in the cache for whatever reads them next.
cdef Py_ssize_t STREAM_BYTES = 16 << 20
# Pooling results of at least this many bytes: they come 64-byte aligned
# from the results allocator, and streaming stores spare the read of each
# line the output takes (and the eviction of input lines for it).
cdef Py_ssize_t WINDOW_STREAM_BYTES = 4 << 20


def _stream_bytes(window=None, unpool=None):
    """The result sizes from which pooling (window) and unpooling results are
    written with streaming stores; sets them when given (tests use 0 to
    reach those paths on small arrays).  Returns the previous values."""
    global WINDOW_STREAM_BYTES, STREAM_BYTES
    old = (WINDOW_STREAM_BYTES, STREAM_BYTES)
    if window is not None:
        WINDOW_STREAM_BYTES = window
    if unpool is not None:
        STREAM_BYTES = unpool
    return old


ctypedef struct Geom:
    Py_ssize_t n
    const Py_ssize_t* in_shape
    const Py_ssize_t* out_shape
    const Py_ssize_t* ksize
    const Py_ssize_t* stride
    const Py_ssize_t* pad_lo
    Py_ssize_t in_stride[MAXD]
    Py_ssize_t in_vol
    Py_ssize_t out_vol
    Py_ssize_t rows          # output rows per volume (out_vol / out_shape[-1])
    Py_ssize_t kvol          # prod(ksize)
    # Pooling: output cells whose windows lie inside the input, on the last
    # axis [qa, qb) and on the second-last [ia, ib).
    Py_ssize_t qa, qb, ia, ib
    # The input rows of all output rows, over all volumes, are one evenly
    # spaced run (one volume's rows on the second-last axis only, none of
    # them at an edge, and the next volume right after): pooling (lin) and
    # broadcast unpooling (ulin) then take a work item in one kernel call.
    bint lin, ulin


cdef Geom _geom(const Py_ssize_t[::1] geo, Py_ssize_t n):
    cdef Geom G
    cdef Py_ssize_t a, acc = 1
    G.n = n
    G.in_shape = &geo[0]
    G.out_shape = &geo[n]
    G.ksize = &geo[2 * n]
    G.stride = &geo[3 * n]
    G.pad_lo = &geo[4 * n]
    for a in range(n - 1, -1, -1):
        G.in_stride[a] = acc
        acc *= G.in_shape[a]
    G.in_vol = acc
    G.out_vol = 1
    G.kvol = 1
    for a in range(n):
        G.out_vol *= G.out_shape[a]
        G.kvol *= G.ksize[a]
    G.rows = G.out_vol // G.out_shape[n - 1] if G.out_shape[n - 1] else 0
    # output cells whose windows lie inside the input, on the last two axes
    valid_range(-G.pad_lo[n - 1], G.stride[n - 1], G.in_shape[n - 1] - G.ksize[n - 1] + 1,
                G.out_shape[n - 1], &G.qa, &G.qb)
    valid_range(-G.pad_lo[n - 2], G.stride[n - 2], G.in_shape[n - 2] - G.ksize[n - 2] + 1,
                G.out_shape[n - 2], &G.ia, &G.ib)
    cdef Py_ssize_t a2 = n - 2
    cdef bint flat = True
    for a in range(a2):
        flat = flat and G.out_shape[a] == 1 and G.in_shape[a] == 1
    G.lin = (flat and G.ia == 0 and G.ib == G.out_shape[a2]
             and G.out_shape[a2] * G.stride[a2] * G.in_stride[a2] == G.in_vol)
    G.ulin = (flat and G.ksize[n - 1] == G.stride[n - 1] and G.pad_lo[n - 1] == 0
              and G.ksize[a2] == G.stride[a2] and G.pad_lo[a2] == 0
              and G.out_shape[a2] == G.in_shape[a2] * G.ksize[a2])
    return G


# ---------------------------------------------------------------------------
# Small helpers.

cdef inline void unravel_row(Py_ssize_t r, const Geom* G, Py_ssize_t* j) noexcept nogil:
    """Outer multi-index j[0 .. n-2] of output row r (C order)."""
    cdef Py_ssize_t a = G.n - 2
    while a >= 0:
        j[a] = r % G.out_shape[a]
        r = r // G.out_shape[a]
        a -= 1


cdef inline bint tap_range(Py_ssize_t o, Py_ssize_t k, Py_ssize_t s, Py_ssize_t lo,
                           Py_ssize_t size, Py_ssize_t* t0, Py_ssize_t* t1) noexcept nogil:
    """Taps [t0, t1) of output cell o that land inside the input; False
    when none does."""
    cdef Py_ssize_t p = o * s - lo
    cdef Py_ssize_t a = -p if p < 0 else 0
    cdef Py_ssize_t b = size - p
    if b > k:
        b = k
    t0[0] = a
    t1[0] = b
    return b > a


cdef inline bint next_tap(Py_ssize_t* tk, const Py_ssize_t* t0, const Py_ssize_t* t1,
                          Py_ssize_t n_outer) noexcept nogil:
    """Odometer over the outer taps, each in [t0, t1); False after the last."""
    cdef Py_ssize_t a = n_outer - 1
    while a >= 0:
        tk[a] += 1
        if tk[a] < t1[a]:
            return True
        tk[a] = t0[a]
        a -= 1
    return False


# ---------------------------------------------------------------------------
# Max and average pooling: window kernels over runs of rows.

ctypedef struct Job:
    ndp_fn fn
    bint is_avg
    bint count_pad
    int nt


cdef inline void last_axis_calls(const Geom* G, const Job* J, ndp_args* A,
                                 floating* orow, int64_t* irow,
                                 Py_ssize_t outer_cnt) noexcept nogil:
    """One kernel call per edge cell of the last axis and one for the
    interior, for the rows and runs set in A."""
    cdef Py_ssize_t last = G.n - 1
    cdef Py_ssize_t L = G.out_shape[last], s = G.stride[last], k = G.ksize[last]
    cdef Py_ssize_t lo = G.pad_lo[last], D = G.in_shape[last]
    cdef Py_ssize_t q, t0, t1
    A.s = s
    A.ostep = L
    for q in range(L):
        if q == G.qa and G.qb > G.qa:
            A.t0 = 0
            A.t1 = k
            A.off = q * s - lo
            A.nq = G.qb - G.qa
            A.out = orow + q
            A.idx = irow + q if irow != NULL else NULL
            A.div = <double>(G.kvol if J.count_pad else outer_cnt * k)
            J.fn(A)
        if G.qa <= q < G.qb:
            continue
        t0 = lo - q * s
        if t0 < 0:
            t0 = 0
        t1 = D + lo - q * s
        if t1 > k:
            t1 = k
        if t1 < t0:
            t1 = t0
        A.t0 = t0
        A.t1 = t1
        A.off = q * s - lo
        A.nq = 1
        A.out = orow + q
        A.idx = irow + q if irow != NULL else NULL
        A.div = <double>(G.kvol if J.count_pad else outer_cnt * (t1 - t0))
        J.fn(A)


cdef void window_run(const Geom* G, const Job* J, const floating* xv, floating* orow,
                     int64_t* irow, const Py_ssize_t* j, const Py_ssize_t* t0,
                     const Py_ssize_t* t1, bint ok, Py_ssize_t R,
                     Py_ssize_t nxt, Py_ssize_t iper) noexcept nogil:
    """R output rows from outer index j on (advancing along axis n-2), whose
    windows take the outer taps [t0[a], t1[a]) on each axis a < n-1 (none
    when not ok).  nxt: how far the next run's input rows are from this
    run's (a prefetch hint).  iper: 0, or the rows of a volume when the run
    goes on through the next volumes (G.lin)."""
    cdef const void* rows[CH]
    cdef int64_t rbase[CH]
    cdef Py_ssize_t tk[MAXD]
    cdef ndp_args A
    cdef Py_ssize_t n1 = G.n - 1, a, cnt = 0, total = 1
    cdef int64_t off
    cdef bint more
    A.R = R
    A.rstep = G.stride[n1 - 1] * G.in_stride[n1 - 1]
    A.has_nxt = 1
    A.nxt = nxt
    A.nt = J.nt
    A.iper = iper
    A.iph = j[n1 - 1] if iper else 0
    A.rows = rows
    A.rbase = rbase
    A.first = 1
    if not ok:
        A.nr = 0
        A.last = 1
        last_axis_calls(G, J, &A, orow, irow, 0)
        return
    for a in range(n1):
        tk[a] = t0[a]
        total *= t1[a] - t0[a]
    while True:
        off = 0
        for a in range(n1):
            off += (j[a] * G.stride[a] + tk[a] - G.pad_lo[a]) * G.in_stride[a]
        rows[cnt] = xv + off
        rbase[cnt] = off - A.iph * A.rstep
        cnt += 1
        more = next_tap(tk, t0, t1, n1)
        if cnt == CH or not more:
            A.nr = cnt
            A.last = not more
            last_axis_calls(G, J, &A, orow, irow, total)
            A.first = 0
            cnt = 0
        if not more:
            break


cdef inline Py_ssize_t row_offset(const Geom* G, Py_ssize_t r) noexcept nogil:
    """Input offset, inside the volume, of the windows of output row r (up
    to a constant): sum of j[a] * stride[a] * in_stride[a]."""
    cdef Py_ssize_t a = G.n - 2, off = 0
    while a >= 0:
        off += (r % G.out_shape[a]) * G.stride[a] * G.in_stride[a]
        r = r // G.out_shape[a]
        a -= 1
    return off


cdef void window_rows(const Geom* G, const Job* J, const floating* xv, floating* ov,
                      int64_t* iv, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Output rows [r0, r1) of one volume, in runs along axis n-2: the rows
    whose windows are inside the input on that axis in one run, the others
    one by one."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t t0[MAXD]
    cdef Py_ssize_t t1[MAXD]
    cdef Py_ssize_t a2 = G.n - 2, a
    cdef Py_ssize_t L = G.out_shape[G.n - 1], O2 = G.out_shape[a2]
    cdef Py_ssize_t r = r0, jj, jstart, jend, seg, row, here, nxt
    cdef bint okouter, ok
    while r < r1:
        unravel_row(r, G, j)
        here = row_offset(G, r)
        jstart = j[a2]
        jend = min(O2, jstart + (r1 - r))
        okouter = True
        for a in range(a2):
            if not tap_range(j[a], G.ksize[a], G.stride[a], G.pad_lo[a],
                             G.in_shape[a], &t0[a], &t1[a]):
                okouter = False
        jj = jstart
        while jj < jend:
            seg = min(G.ib, jend) if G.ia <= jj < G.ib else jj + 1
            j[a2] = jj
            ok = tap_range(jj, G.ksize[a2], G.stride[a2], G.pad_lo[a2],
                           G.in_shape[a2], &t0[a2], &t1[a2]) and okouter
            row = r + jj - jstart
            # the next run: further along this axis, or the next plane (or
            # the next volume's first)
            if seg < jend:
                nxt = (seg - jstart) * G.stride[a2] * G.in_stride[a2]
            elif r + jend - jstart < G.rows:
                nxt = row_offset(G, r + jend - jstart) - here
            else:
                nxt = G.in_vol - here
            nxt -= (jj - jstart) * G.stride[a2] * G.in_stride[a2]
            window_run(G, J, xv, ov + row * L, iv + row * L if iv != NULL else NULL,
                       j, t0, t1, ok, seg - jj, nxt, 0)
            jj = seg
        r += jend - jstart


cdef void window_item(const Geom* G, const Job* J, const floating* xp, floating* op,
                      int64_t* ip, Py_ssize_t g0, Py_ssize_t g1) noexcept nogil:
    """Rows [g0, g1) counted over all volumes."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t t0[MAXD]
    cdef Py_ssize_t t1[MAXD]
    cdef Py_ssize_t v, r0, r1, a, L = G.out_shape[G.n - 1]
    cdef bint ok = True
    if G.lin and g0 < g1:
        v = g0 // G.rows
        r0 = g0 - v * G.rows
        unravel_row(r0, G, j)
        for a in range(G.n - 1):
            if not tap_range(j[a], G.ksize[a], G.stride[a], G.pad_lo[a],
                             G.in_shape[a], &t0[a], &t1[a]):
                ok = False
        window_run(G, J, xp + v * G.in_vol, op + v * G.out_vol + r0 * L,
                   ip + v * G.out_vol + r0 * L if ip != NULL else NULL, j, t0, t1, ok,
                   g1 - g0, (g1 - g0) * G.stride[G.n - 2] * G.in_stride[G.n - 2], G.rows)
        return
    while g0 < g1:
        v = g0 // G.rows
        r0 = g0 - v * G.rows
        r1 = min(G.rows, r0 + (g1 - g0))
        window_rows(G, J, xp + v * G.in_vol, op + v * G.out_vol,
                    ip + v * G.out_vol if ip != NULL else NULL, r0, r1)
        g0 += r1 - r0


cdef inline ndp_fn pick(const Geom* G, bint is_avg, bint is_float) noexcept nogil:
    # The vector kernels gather with int32 offsets: a huge stride goes to the
    # generic ones.
    if G.stride[G.n - 1] > NDP_MAX_GATHER_STRIDE:
        if is_float:
            return ndp_avg_f32_generic if is_avg else ndp_max_f32_generic
        return ndp_avg_f64_generic if is_avg else ndp_max_f64_generic
    if is_float:
        return ndp_avg_f32 if is_avg else ndp_max_f32
    return ndp_avg_f64 if is_avg else ndp_max_f64


def max_pool(const floating[::1] x, floating[::1] out, int64_t[::1] indices,
             const Py_ssize_t[::1] geo, Py_ssize_t n, Py_ssize_t nvol,
             Py_ssize_t rows_per_item, bint with_indices, int nthreads):
    """Max pooling of ``nvol`` volumes; ``indices`` (flat, inside each input
    volume) is written only when ``with_indices``.  Of equal maxima the first
    in C order of the window wins, a NaN beats everything and the first NaN
    wins; padding never wins and an all-padding window gives -inf, index -1."""
    cdef Geom G = _geom(geo, n)
    cdef Job J
    cdef Py_ssize_t total = nvol * G.rows
    cdef Py_ssize_t nitems = (total + rows_per_item - 1) // rows_per_item
    cdef Py_ssize_t it, g0
    cdef const floating* xp = &x[0]
    cdef floating* op = &out[0]
    cdef int64_t* ip = &indices[0] if with_indices else NULL
    J.fn = pick(&G, False, floating is float)
    J.is_avg = False
    J.count_pad = False
    J.nt = nvol * G.out_vol * <Py_ssize_t>sizeof(floating) >= WINDOW_STREAM_BYTES
    if nitems == 0:
        return
    for it in prange(nitems, nogil=True, schedule='dynamic', chunksize=1,
                     num_threads=nthreads):
        g0 = it * rows_per_item
        window_item(&G, &J, xp, op, ip, g0, min(g0 + rows_per_item, total))


def avg_pool(const floating[::1] x, floating[::1] out, const Py_ssize_t[::1] geo,
             Py_ssize_t n, Py_ssize_t nvol, Py_ssize_t rows_per_item,
             bint count_pad, int nthreads):
    """Average pooling of ``nvol`` volumes: the sum of the window's input
    cells (from 0, taps in C order) divided by prod(ksize) (``count_pad``) or
    by the number of input cells in the window (0 / 0 = NaN for an
    all-padding window)."""
    cdef Geom G = _geom(geo, n)
    cdef Job J
    cdef Py_ssize_t total = nvol * G.rows
    cdef Py_ssize_t nitems = (total + rows_per_item - 1) // rows_per_item
    cdef Py_ssize_t it, g0
    cdef const floating* xp = &x[0]
    cdef floating* op = &out[0]
    J.fn = pick(&G, True, floating is float)
    J.is_avg = True
    J.count_pad = count_pad
    J.nt = nvol * G.out_vol * <Py_ssize_t>sizeof(floating) >= WINDOW_STREAM_BYTES
    if nitems == 0:
        return
    for it in prange(nitems, nogil=True, schedule='dynamic', chunksize=1,
                     num_threads=nthreads):
        g0 = it * rows_per_item
        window_item(&G, &J, xp, op, <int64_t*>NULL, g0, min(g0 + rows_per_item, total))


# ---------------------------------------------------------------------------
# Unpooling (the adjoint of sum pooling), as a gather.

cdef inline bint cover_range(Py_ssize_t o, Py_ssize_t k, Py_ssize_t s, Py_ssize_t lo,
                             Py_ssize_t size, Py_ssize_t* i0,
                             Py_ssize_t* i1) noexcept nogil:
    """Inputs [i0, i1) whose window (i * s .. i * s + k - 1) covers the full
    (unpadded) position o + lo; False when there is none."""
    cdef Py_ssize_t u = o + lo
    cdef Py_ssize_t a = ceildiv(u - k + 1, s)
    cdef Py_ssize_t b = floordiv(u, s) + 1
    if a < 0:
        a = 0
    if b > size:
        b = size
    i0[0] = a
    i1[0] = b
    return b > a


cdef inline void bcast_rows(const void* src, Py_ssize_t istep, Py_ssize_t kr,
                            Py_ssize_t ph, Py_ssize_t R, void* out, const Geom* G,
                            bint is_float, int nt, int has_nxt,
                            Py_ssize_t nxt) noexcept nogil:
    cdef ndp_bcast_args B
    cdef Py_ssize_t last = G.n - 1
    B.src = src
    B.istep = istep
    B.kr = kr
    B.ph = ph
    B.R = R
    B.ostep = G.out_shape[last]
    B.D = G.in_shape[last]
    B.k = G.ksize[last]
    B.L = G.out_shape[last]
    B.out = out
    B.nt = nt
    B.has_nxt = has_nxt
    B.nxt = nxt
    if is_float:
        ndp_bcast_f32(&B)
    else:
        ndp_bcast_f64(&B)


cdef void unpool_row(const Geom* G, const floating* xv, floating* orow,
                     const Py_ssize_t* j, floating* acc, int nt) noexcept nogil:
    """One output row at outer index j.  Each output cell is the sum of the
    inputs whose windows cover it: the input rows covering the output row are
    added (in C order) into ``acc`` (one input row long), then each cell of
    the last axis adds its covering inputs in increasing order."""
    cdef Py_ssize_t i0[MAXD]
    cdef Py_ssize_t i1[MAXD]
    cdef Py_ssize_t ik[MAXD]
    cdef Py_ssize_t last = G.n - 1
    cdef Py_ssize_t L = G.out_shape[last], s = G.stride[last]
    cdef Py_ssize_t k = G.ksize[last], lo = G.pad_lo[last], D = G.in_shape[last]
    cdef Py_ssize_t q, a, i, u, m, ia, ib, base, nrows
    cdef bint overlap = k > s
    cdef bint first
    cdef const floating* src
    cdef const floating* row
    cdef floating v
    nrows = 1
    for a in range(last):
        if not cover_range(j[a], G.ksize[a], G.stride[a], G.pad_lo[a],
                           G.in_shape[a], &i0[a], &i1[a]):
            nrows = 0
            break
        ik[a] = i0[a]
        nrows *= i1[a] - i0[a]
    if nrows == 0:
        memset(orow, 0, L * sizeof(floating))
        return
    if nrows == 1:
        base = 0
        for a in range(last):
            base += i0[a] * G.in_stride[a]
        src = xv + base
    else:
        first = True
        while True:
            base = 0
            for a in range(last):
                base += ik[a] * G.in_stride[a]
            row = xv + base
            if first:
                memcpy(acc, row, D * sizeof(floating))
                first = False
            else:
                for i in range(D):
                    acc[i] += row[i]
            if not next_tap(ik, i0, i1, last):
                break
        src = acc
    if k == s and lo == 0:
        # stride == ksize, no low padding: each input fills k cells.
        bcast_rows(src, 0, 1, 0, 1, orow, G, floating is float, nt, 0, 0)
        return
    for q in range(L):
        u = q + lo
        ib = u // s
        m = k - 1 - (u - ib * s)      # how far back the windows reach
        if m < 0:
            orow[q] = 0
            continue
        ia = ib - m // s if overlap else ib
        if ia < 0:
            ia = 0
        ib += 1
        if ib > D:
            ib = D
        v = 0
        for i in range(ia, ib):
            v = v + src[i]
        orow[q] = v


cdef inline Py_ssize_t block_base(const Geom* G, Py_ssize_t r) noexcept nogil:
    """Input offset of the first input cell covering output row r when every
    axis has stride == ksize and no low padding (a prefetch hint elsewhere):
    sum of (j[a] // ksize[a]) * in_stride[a]."""
    cdef Py_ssize_t a = G.n - 2, off = 0
    while a >= 0:
        off += ((r % G.out_shape[a]) // G.ksize[a]) * G.in_stride[a]
        r = r // G.out_shape[a]
        a -= 1
    return off


cdef inline Py_ssize_t next_base(const Geom* G, Py_ssize_t r, Py_ssize_t here) noexcept nogil:
    """block_base of row r (or of the next volume's first row) minus here."""
    if r < G.rows:
        return block_base(G, r) - here
    return G.in_vol - here


cdef void unpool_rows(const Geom* G, const floating* xv, floating* ov,
                      Py_ssize_t r0, Py_ssize_t r1, floating* acc, int nt) noexcept nogil:
    """Output rows [r0, r1) of one volume, in runs along axis n-2.  When the
    last two axes have stride == ksize and no low padding and one input row
    covers the run on the other axes, the run is one broadcast call (output
    row j reads input row j // k); otherwise row by row."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t i0, i1
    cdef Py_ssize_t last = G.n - 1, a2 = G.n - 2, a
    cdef Py_ssize_t L = G.out_shape[last], O2 = G.out_shape[a2]
    cdef Py_ssize_t k2 = G.ksize[a2], D2 = G.in_shape[a2]
    cdef Py_ssize_t r = r0, jj, jstart, jend, jcov, base, nrun
    cdef bint fast = (G.ksize[last] == G.stride[last] and G.pad_lo[last] == 0
                      and k2 == G.stride[a2] and G.pad_lo[a2] == 0)
    cdef bint single, zero
    while r < r1:
        unravel_row(r, G, j)
        jstart = j[a2]
        jend = min(O2, jstart + (r1 - r))
        nrun = jend - jstart
        single = fast
        zero = False
        base = 0
        if fast:
            for a in range(a2):
                if not cover_range(j[a], G.ksize[a], G.stride[a], G.pad_lo[a],
                                   G.in_shape[a], &i0, &i1):
                    zero = True     # no input covers the run
                    break
                if i1 - i0 != 1:
                    single = False
                base += i0 * G.in_stride[a]
        if zero:
            memset(ov + r * L, 0, nrun * L * sizeof(floating))
        elif single:
            jcov = min(jend, D2 * k2)
            if jcov > jstart:
                base += (jstart // k2) * G.in_stride[a2]
                bcast_rows(xv + base, G.in_stride[a2], k2, jstart % k2, jcov - jstart,
                           ov + r * L, G, floating is float, nt, 1,
                           next_base(G, r + nrun, base))
            else:
                jcov = jstart
            if jend > jcov:
                memset(ov + (r + jcov - jstart) * L, 0,
                       (jend - jcov) * L * sizeof(floating))
        else:
            for jj in range(jstart, jend):
                j[a2] = jj
                unpool_row(G, xv, ov + (r + jj - jstart) * L, j, acc, nt)
        r += nrun


cdef void unpool_item(const Geom* G, const floating* xp, floating* op, Py_ssize_t g0,
                      Py_ssize_t g1, floating* acc, int nt) noexcept nogil:
    """Rows [g0, g1) counted over all volumes."""
    cdef Py_ssize_t v, r0, r1, a2 = G.n - 2, k2 = G.ksize[G.n - 2], R = g1 - g0
    if G.ulin and g0 < g1:
        v = g0 // G.rows
        r0 = g0 - v * G.rows
        bcast_rows(xp + v * G.in_vol + (r0 // k2) * G.in_stride[a2], G.in_stride[a2], k2,
                   r0 % k2, R, op + v * G.out_vol + r0 * G.out_shape[G.n - 1], G,
                   floating is float, nt, 1, ((r0 % k2 + R) // k2) * G.in_stride[a2])
        return
    while g0 < g1:
        v = g0 // G.rows
        r0 = g0 - v * G.rows
        r1 = min(G.rows, r0 + (g1 - g0))
        unpool_rows(G, xp + v * G.in_vol, op + v * G.out_vol, r0, r1, acc, nt)
        g0 += r1 - r0


def unpool(const floating[::1] x, floating[::1] out, const Py_ssize_t[::1] geo,
           Py_ssize_t n, Py_ssize_t nvol, Py_ssize_t rows_per_item, int nthreads):
    """Unpooling of ``nvol`` volumes; ``geo`` holds the *input* shape of the
    unpooling as in_shape and its output shape as out_shape.  Returns False
    when a thread could not allocate its row buffer."""
    cdef Geom G = _geom(geo, n)
    cdef Py_ssize_t total = nvol * G.rows
    cdef Py_ssize_t nitems = (total + rows_per_item - 1) // rows_per_item
    cdef Py_ssize_t D = G.in_shape[n - 1]
    cdef Py_ssize_t it, g0
    cdef int failed = 0
    cdef int* fail = &failed
    cdef floating* acc = NULL
    cdef const floating* xp = &x[0]
    cdef floating* op = &out[0]
    cdef int nt = nvol * G.out_vol * <Py_ssize_t>sizeof(floating) >= STREAM_BYTES
    if nitems == 0:
        return True
    with nogil, parallel(num_threads=nthreads):
        acc = <floating*>malloc(D * sizeof(floating))
        # Every thread enters the work-sharing loop, allocation or not.
        for it in prange(nitems, schedule='dynamic', chunksize=1):
            if acc == NULL:
                fail[0] = 1
            else:
                g0 = it * rows_per_item
                unpool_item(&G, xp, op, g0, min(g0 + rows_per_item, total), acc, nt)
        free(acc)
    return failed == 0


# ---------------------------------------------------------------------------
# Max unpooling of disjoint windows, as a gather.

cdef void munpool_rows(const Geom* G, const floating* xv, const int64_t* iv,
                       floating* ov, Py_ssize_t r0, Py_ssize_t r1,
                       int64_t* counts, int nt) noexcept nogil:
    """Output rows [r0, r1) of one volume when every axis has stride ==
    ksize, no low padding and room for every window (out_shape >= in_shape *
    ksize): each output cell belongs to at most one window, and takes that
    window's value when the window's index names it, else 0.  Adds to
    counts[0] the cells so written, to counts[1] and counts[2] the indices
    >= 0 and < -1 (each input counted once)."""
    cdef Py_ssize_t j[MAXD]
    cdef ndp_munpool_args M
    cdef Py_ssize_t last = G.n - 1, a2 = G.n - 2, a
    cdef Py_ssize_t L = G.out_shape[last], O2 = G.out_shape[a2]
    cdef Py_ssize_t k2 = G.ksize[a2], D2 = G.in_shape[a2]
    cdef Py_ssize_t r = r0, jstart, jend, jcov, base, nrun
    cdef bint zero
    M.istep = G.in_stride[a2]
    M.kr = k2
    M.ostep = L
    M.D = G.in_shape[last]
    M.k = G.ksize[last]
    M.L = L
    M.matched = 0
    M.nonneg = 0
    M.bad = 0
    M.nt = nt
    while r < r1:
        unravel_row(r, G, j)
        jstart = j[a2]
        jend = min(O2, jstart + (r1 - r))
        nrun = jend - jstart
        zero = False
        base = 0
        M.count = 1
        for a in range(a2):
            if j[a] >= G.in_shape[a] * G.ksize[a]:
                zero = True
                break
            if j[a] % G.ksize[a]:
                M.count = 0
            base += (j[a] // G.ksize[a]) * G.in_stride[a]
        jcov = jstart if zero else max(jstart, min(jend, D2 * k2))
        if jcov > jstart:
            base += (jstart // k2) * G.in_stride[a2]
            M.x = xv + base
            M.idx = iv + base
            M.ph = jstart % k2
            M.R = jcov - jstart
            M.has_nxt = 1
            M.nxt = next_base(G, r + nrun, base)
            M.ob0 = r * L
            M.out = ov + r * L
            if floating is float:
                ndp_munpool_f32(&M)
            else:
                ndp_munpool_f64(&M)
        if jend > jcov:
            memset(ov + (r + jcov - jstart) * L, 0, (jend - jcov) * L * sizeof(floating))
        r += nrun
    counts[0] += M.matched
    counts[1] += M.nonneg
    counts[2] += M.bad


cdef void munpool_item(const Geom* G, const floating* xp, const int64_t* ip,
                       floating* op, Py_ssize_t g0, Py_ssize_t g1,
                       int64_t* counts, int nt) noexcept nogil:
    """Rows [g0, g1) counted over all volumes."""
    cdef Py_ssize_t v, r0, r1
    while g0 < g1:
        v = g0 // G.rows
        r0 = g0 - v * G.rows
        r1 = min(G.rows, r0 + (g1 - g0))
        munpool_rows(G, xp + v * G.in_vol, ip + v * G.in_vol, op + v * G.out_vol,
                     r0, r1, counts, nt)
        g0 += r1 - r0


def _max_unpool_blocks(const floating[::1] x, const int64_t[::1] indices,
                       floating[::1] out, const Py_ssize_t[::1] geo, Py_ssize_t n,
                       Py_ssize_t nvol, Py_ssize_t rows_per_item, int nthreads):
    """Max unpooling when every axis has stride == ksize, no low padding and
    out_shape >= in_shape * ksize (``geo`` as for ``unpool``).  Returns True
    when every index was -1 or inside its own window, which makes ``out``
    the result (no two windows share a cell); False otherwise, and ``out``
    must then be computed by ``max_unpool`` (which every bad index reaches)."""
    cdef Geom G = _geom(geo, n)
    cdef Py_ssize_t total = nvol * G.rows
    cdef Py_ssize_t nitems = (total + rows_per_item - 1) // rows_per_item
    cdef Py_ssize_t it, g0
    cdef int64_t matched = 0, nonneg = 0, bad = 0
    cdef int64_t* counts
    cdef const floating* xp = &x[0]
    cdef const int64_t* ip = &indices[0]
    cdef floating* op = &out[0]
    cdef int nt = nvol * G.out_vol * <Py_ssize_t>sizeof(floating) >= STREAM_BYTES
    if nitems == 0:
        return True
    counts = <int64_t*>malloc(3 * nitems * sizeof(int64_t))
    if counts == NULL:
        raise MemoryError()
    memset(counts, 0, 3 * nitems * sizeof(int64_t))
    for it in prange(nitems, nogil=True, schedule='dynamic', chunksize=1,
                     num_threads=nthreads):
        g0 = it * rows_per_item
        munpool_item(&G, xp, ip, op, g0, min(g0 + rows_per_item, total), counts + 3 * it, nt)
    for it in range(nitems):
        matched += counts[3 * it]
        nonneg += counts[3 * it + 1]
        bad += counts[3 * it + 2]
    free(counts)
    return matched == nonneg and bad == 0


# ---------------------------------------------------------------------------
# Max unpooling: one (n, c) volume per work item, never a shared write.

cdef void unpool_volume(const floating* xv, const int64_t* iv, floating* ov,
                        Py_ssize_t in_vol, Py_ssize_t out_vol,
                        uint8_t* seen) noexcept nogil:
    """Zero the output volume, then write each value at its index in C order
    of the input.  A cell named twice keeps the larger value (a NaN beats any
    number; of equal values the first stays); index -1 is skipped."""
    cdef Py_ssize_t j, p
    cdef int64_t idx
    cdef floating v, cur
    cdef uint8_t bit
    memset(ov, 0, out_vol * sizeof(floating))
    memset(seen, 0, (out_vol + 7) // 8)
    for j in range(in_vol):
        idx = iv[j]
        if idx < 0:
            continue
        v = xv[j]
        p = idx >> 3
        bit = <uint8_t>(1 << (idx & 7))
        if not (seen[p] & bit):
            seen[p] |= bit
            ov[idx] = v
        else:
            cur = ov[idx]
            if cur == cur and not (v <= cur):
                ov[idx] = v


def max_unpool(const floating[::1] x, const int64_t[::1] indices, floating[::1] out,
               Py_ssize_t nvol, Py_ssize_t in_vol, Py_ssize_t out_vol, int nthreads):
    """Max unpooling of ``nvol`` volumes; every index is -1 or in
    [0, out_vol) (checked by the caller).  Returns False when a thread could
    not allocate its bitmap of written cells."""
    cdef Py_ssize_t v
    cdef int failed = 0
    cdef int* fail = &failed
    cdef uint8_t* seen = NULL
    cdef const floating* xp = &x[0]
    cdef const int64_t* ip = &indices[0]
    cdef floating* op = &out[0]
    if nvol == 0:
        return True
    with nogil, parallel(num_threads=nthreads):
        seen = <uint8_t*>malloc((out_vol + 7) // 8)
        for v in prange(nvol, schedule='dynamic', chunksize=1):
            if seen == NULL:
                fail[0] = 1
            else:
                unpool_volume(xp + v * in_vol, ip + v * in_vol, op + v * out_vol,
                              in_vol, out_vol, seen)
        free(seen)
    return failed == 0
