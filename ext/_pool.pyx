# cython: language_level=3
# cython: boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""N-D pooling and unpooling kernels.

The wrappers in ``ndconv.pooling`` check every argument and hand these
kernels C-contiguous buffers and one packed geometry vector of ``5 * n``
ints: ``in_shape``, ``out_shape``, ``ksize``, ``stride``, ``pad_lo``.  Along
each axis, output cell ``o`` of a pooling reads input cells
``o * stride + t - pad_lo`` for taps ``0 <= t < ksize``; unpooling is the
adjoint, so output cell ``o`` of an unpooling gathers every input ``i`` with
``i * stride <= o + pad_lo < i * stride + ksize``.

Work is cut into fixed items: a run of output *rows* (every axis but the
last, which is contiguous) of one ``(n, c)`` volume, or a whole volume for
``max_unpool``.  Each item writes its own cells only, and each output cell is
computed in a fixed order (window taps in C order), so the results do not
depend on the thread count or on which thread runs an item.  No code path
depends on the number of axes: outer axes are walked with an odometer, the
last one by a plain loop.
"""

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.string cimport memset, memcpy
from libc.stdint cimport int64_t, uint8_t
from libc.math cimport INFINITY

from _util cimport MAXD, floordiv, ceildiv


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
    for a in range(n):
        G.out_vol *= G.out_shape[a]
    G.rows = G.out_vol // G.out_shape[n - 1]
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


cdef inline void cell_range(Py_ssize_t i0, Py_ssize_t s, Py_ssize_t size,
                            Py_ssize_t count, Py_ssize_t* q0, Py_ssize_t* q1) noexcept nogil:
    """Output cells q in [0, count) with 0 <= i0 + q * s < size form [q0, q1)."""
    cdef Py_ssize_t lo = ceildiv(-i0, s)
    cdef Py_ssize_t hi = floordiv(size - 1 - i0, s) + 1
    if lo < 0:
        lo = 0
    if hi > count:
        hi = count
    if hi < lo:
        hi = lo
    q0[0] = lo
    q1[0] = hi


cdef inline Py_ssize_t outer_base(const Geom* G, const Py_ssize_t* j,
                                  const Py_ssize_t* tk) noexcept nogil:
    """Input offset of the row read by outer taps tk at outer output cell j."""
    cdef Py_ssize_t a, b = 0
    for a in range(G.n - 1):
        b += (j[a] * G.stride[a] + tk[a] - G.pad_lo[a]) * G.in_stride[a]
    return b


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


cdef inline bint outer_taps(const Geom* G, const Py_ssize_t* j, Py_ssize_t* t0,
                            Py_ssize_t* t1, Py_ssize_t* tk,
                            Py_ssize_t* count) noexcept nogil:
    """Valid outer tap ranges of the row at j; tk set to the first tap and
    count to the number of outer tap combinations.  False when the row's
    windows hold no input cell on some outer axis."""
    cdef Py_ssize_t a, c = 1
    for a in range(G.n - 1):
        if not tap_range(j[a], G.ksize[a], G.stride[a], G.pad_lo[a],
                         G.in_shape[a], &t0[a], &t1[a]):
            count[0] = 0
            return False
        tk[a] = t0[a]
        c *= t1[a] - t0[a]
    count[0] = c
    return True


# ---------------------------------------------------------------------------
# Max pooling.

cdef void max_rows(const Geom* G, const floating* xv, floating* ov, int64_t* iv,
                   Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Rows [r0, r1) of one volume.  ``iv`` is NULL when no index is wanted.

    A window's taps are visited in C order; a value replaces the running
    maximum when it is larger, or when it is the first NaN, so the first of
    equal maxima and the first NaN win.  Padding is never visited: an
    all-padding window keeps -inf and index -1."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t t0[MAXD]
    cdef Py_ssize_t t1[MAXD]
    cdef Py_ssize_t tk[MAXD]
    cdef Py_ssize_t last = G.n - 1
    cdef Py_ssize_t L = G.out_shape[last], s = G.stride[last]
    cdef Py_ssize_t k = G.ksize[last], lo = G.pad_lo[last], D = G.in_shape[last]
    cdef Py_ssize_t r, q, q0, q1, t, tl0, tl1, i, base, cnt
    cdef floating* orow
    cdef int64_t* irow
    cdef const floating* row
    cdef floating v, cur
    # Last-axis taps that reach the input for some output cell.
    tl0 = lo - (L - 1) * s
    if tl0 < 0:
        tl0 = 0
    tl1 = D + lo
    if tl1 > k:
        tl1 = k
    for r in range(r0, r1):
        orow = ov + r * L
        for q in range(L):
            orow[q] = -INFINITY
        irow = NULL
        if iv != NULL:
            irow = iv + r * L
            for q in range(L):
                irow[q] = -1
        unravel_row(r, G, j)
        if not outer_taps(G, j, t0, t1, tk, &cnt):
            continue
        while True:
            base = outer_base(G, j, tk)
            row = xv + base
            for t in range(tl0, tl1):
                cell_range(t - lo, s, D, L, &q0, &q1)
                i = q0 * s + t - lo
                if irow == NULL:
                    for q in range(q0, q1):
                        v = row[i]
                        cur = orow[q]
                        if cur == cur and not (v <= cur):
                            orow[q] = v
                        i += s
                else:
                    for q in range(q0, q1):
                        v = row[i]
                        cur = orow[q]
                        if irow[q] < 0 or (cur == cur and not (v <= cur)):
                            orow[q] = v
                            irow[q] = base + i
                        i += s
            if not next_tap(tk, t0, t1, last):
                break


def max_pool(const floating[::1] x, floating[::1] out, int64_t[::1] indices,
             const Py_ssize_t[::1] geo, Py_ssize_t n, Py_ssize_t nvol,
             Py_ssize_t rows_per_item, bint with_indices, int nthreads):
    """Max pooling of ``nvol`` volumes; ``indices`` (flat, inside each input
    volume) is written only when ``with_indices``."""
    cdef Geom G = _geom(geo, n)
    cdef Py_ssize_t nchunks = (G.rows + rows_per_item - 1) // rows_per_item
    cdef Py_ssize_t nitems = nvol * nchunks
    cdef Py_ssize_t it, v, r0, r1
    cdef const floating* xp = &x[0]
    cdef floating* op = &out[0]
    cdef int64_t* ip = &indices[0] if with_indices else NULL
    if nitems == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        for it in prange(nitems, schedule='dynamic', chunksize=1):
            v = it // nchunks
            r0 = (it % nchunks) * rows_per_item
            r1 = min(r0 + rows_per_item, G.rows)
            max_rows(&G, xp + v * G.in_vol, op + v * G.out_vol,
                     ip + v * G.out_vol if ip != NULL else NULL, r0, r1)


# ---------------------------------------------------------------------------
# Average pooling.

cdef void avg_rows(const Geom* G, const floating* xv, floating* ov,
                   bint count_pad, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Rows [r0, r1) of one volume: the sum of the window's input cells (taps
    in C order) divided by prod(ksize) (``count_pad``) or by the number of
    input cells in the window (0 / 0 = NaN for an all-padding window)."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t t0[MAXD]
    cdef Py_ssize_t t1[MAXD]
    cdef Py_ssize_t tk[MAXD]
    cdef Py_ssize_t last = G.n - 1
    cdef Py_ssize_t L = G.out_shape[last], s = G.stride[last]
    cdef Py_ssize_t k = G.ksize[last], lo = G.pad_lo[last], D = G.in_shape[last]
    cdef Py_ssize_t r, q, q0, q1, t, tl0, tl1, i, cnt, c, a, b
    cdef floating* orow
    cdef const floating* row
    cdef floating div
    cdef bint any_cell
    cdef Py_ssize_t kvol = 1
    for a in range(G.n):
        kvol *= G.ksize[a]
    tl0 = lo - (L - 1) * s
    if tl0 < 0:
        tl0 = 0
    tl1 = D + lo
    if tl1 > k:
        tl1 = k
    for r in range(r0, r1):
        orow = ov + r * L
        for q in range(L):
            orow[q] = 0
        unravel_row(r, G, j)
        any_cell = outer_taps(G, j, t0, t1, tk, &cnt)
        while any_cell:
            row = xv + outer_base(G, j, tk)
            for t in range(tl0, tl1):
                cell_range(t - lo, s, D, L, &q0, &q1)
                i = q0 * s + t - lo
                if s == 1:
                    for q in range(q0, q1):
                        orow[q] += row[q - q0 + i]
                else:
                    for q in range(q0, q1):
                        orow[q] += row[i]
                        i += s
            if not next_tap(tk, t0, t1, last):
                break
        if count_pad:
            div = <floating>kvol
            for q in range(L):
                orow[q] = orow[q] / div
        else:
            for q in range(L):
                # input cells of the window on the last axis
                a = q * s - lo
                b = a + k
                if a < 0:
                    a = 0
                if b > D:
                    b = D
                c = b - a if b > a else 0
                orow[q] = orow[q] / <floating>(cnt * c)


def avg_pool(const floating[::1] x, floating[::1] out, const Py_ssize_t[::1] geo,
             Py_ssize_t n, Py_ssize_t nvol, Py_ssize_t rows_per_item,
             bint count_pad, int nthreads):
    """Average pooling of ``nvol`` volumes."""
    cdef Geom G = _geom(geo, n)
    cdef Py_ssize_t nchunks = (G.rows + rows_per_item - 1) // rows_per_item
    cdef Py_ssize_t nitems = nvol * nchunks
    cdef Py_ssize_t it, v, r0, r1
    cdef const floating* xp = &x[0]
    cdef floating* op = &out[0]
    if nitems == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        for it in prange(nitems, schedule='dynamic', chunksize=1):
            v = it // nchunks
            r0 = (it % nchunks) * rows_per_item
            r1 = min(r0 + rows_per_item, G.rows)
            avg_rows(&G, xp + v * G.in_vol, op + v * G.out_vol, count_pad, r0, r1)


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


cdef void unpool_rows(const Geom* G, const floating* xv, floating* ov,
                      Py_ssize_t r0, Py_ssize_t r1, floating* acc) noexcept nogil:
    """Rows [r0, r1) of one output volume.  Each output cell is the sum of
    the inputs whose windows cover it: the input rows covering the output
    row are added (in C order) into ``acc`` (one input row long), then each
    cell of the last axis adds its covering inputs in increasing order."""
    cdef Py_ssize_t j[MAXD]
    cdef Py_ssize_t i0[MAXD]
    cdef Py_ssize_t i1[MAXD]
    cdef Py_ssize_t ik[MAXD]
    cdef Py_ssize_t last = G.n - 1
    cdef Py_ssize_t L = G.out_shape[last], s = G.stride[last]
    cdef Py_ssize_t k = G.ksize[last], lo = G.pad_lo[last], D = G.in_shape[last]
    cdef Py_ssize_t r, q, a, i, t, u, m, ia, ib, base, nrows
    cdef bint broadcast = (k == s and lo == 0)
    cdef bint overlap = k > s
    cdef bint first
    cdef floating* orow
    cdef const floating* src
    cdef const floating* row
    cdef floating v
    for r in range(r0, r1):
        orow = ov + r * L
        unravel_row(r, G, j)
        nrows = 1
        for a in range(last):
            if not cover_range(j[a], G.ksize[a], G.stride[a], G.pad_lo[a],
                               G.in_shape[a], &i0[a], &i1[a]):
                nrows = 0
                break
            ik[a] = i0[a]
            nrows *= i1[a] - i0[a]
        if nrows == 0:
            for q in range(L):
                orow[q] = 0
            continue
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
        if broadcast:
            # stride == ksize, no low padding: each input fills k cells.
            q = 0
            i = 0
            while i < D and q < L:
                v = src[i]
                t = 0
                while t < k and q < L:
                    orow[q] = v
                    q += 1
                    t += 1
                i += 1
            while q < L:
                orow[q] = 0
                q += 1
        else:
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


def unpool(const floating[::1] x, floating[::1] out, const Py_ssize_t[::1] geo,
           Py_ssize_t n, Py_ssize_t nvol, Py_ssize_t rows_per_item, int nthreads):
    """Unpooling of ``nvol`` volumes; ``geo`` holds the *input* shape of the
    unpooling as in_shape and its output shape as out_shape.  Returns False
    when a thread could not allocate its row buffer."""
    cdef Geom G = _geom(geo, n)
    cdef Py_ssize_t nchunks = (G.rows + rows_per_item - 1) // rows_per_item
    cdef Py_ssize_t nitems = nvol * nchunks
    cdef Py_ssize_t D = G.in_shape[n - 1]
    cdef Py_ssize_t it, v, r0, r1
    cdef int failed = 0
    cdef int* fail = &failed
    cdef floating* acc = NULL
    cdef const floating* xp = &x[0]
    cdef floating* op = &out[0]
    if nitems == 0:
        return True
    with nogil, parallel(num_threads=nthreads):
        acc = <floating*>malloc(D * sizeof(floating))
        # Every thread enters the work-sharing loop, allocation or not.
        for it in prange(nitems, schedule='dynamic', chunksize=1):
            if acc == NULL:
                fail[0] = 1
            else:
                v = it // nchunks
                r0 = (it % nchunks) * rows_per_item
                r1 = min(r0 + rows_per_item, G.rows)
                unpool_rows(&G, xp + v * G.in_vol, op + v * G.out_vol, r0, r1, acc)
        free(acc)
    return failed == 0


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
