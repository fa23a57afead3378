# Small inline helpers shared by the kernels (no runtime module behind it).


cdef extern from "ndconv_omp.h" nogil:
    int NDCONV_HAVE_OPENMP
    int omp_get_max_threads()
    void omp_set_num_threads(int n)
    int omp_get_thread_num()
    int omp_get_num_procs()

# Largest number of spatial axes a kernel handles (NumPy allows 64 dims).
cdef enum:
    MAXD = 64

# Padding modes, in the order of ndconv._args.PAD_MODES.
cdef enum:
    MODE_CONSTANT = 0
    MODE_REFLECT = 1
    MODE_EDGE = 2
    MODE_WRAP = 3


cdef inline Py_ssize_t floordiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Floor of a / b for b > 0 and any a (both operands of // kept >= 0, so
    C and Python division agree)."""
    if a >= 0:
        return a // b
    return -((-a + b - 1) // b)


cdef inline Py_ssize_t ceildiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return -floordiv(-a, b)


cdef inline Py_ssize_t map_index(Py_ssize_t i, Py_ssize_t size, int mode) noexcept nogil:
    """numpy.pad's index mapping for a cell outside [0, size); -1 for zeros."""
    cdef Py_ssize_t period
    if 0 <= i < size:
        return i
    if mode == MODE_CONSTANT:
        return -1
    if mode == MODE_EDGE:
        return 0 if i < 0 else size - 1
    if mode == MODE_WRAP:
        return i - floordiv(i, size) * size
    # reflect (no edge repeat), periodic with period 2 * (size - 1)
    if size == 1:
        return 0
    period = 2 * (size - 1)
    i = i - floordiv(i, period) * period
    return period - i if i >= size else i


cdef inline void valid_range(Py_ssize_t i0, Py_ssize_t s, Py_ssize_t size,
                             Py_ssize_t run, Py_ssize_t* qlo, Py_ssize_t* qhi) noexcept nogil:
    """Cells q in [0, run) with 0 <= i0 + q * s < size form [qlo, qhi)."""
    cdef Py_ssize_t lo, hi
    if s == 1:                  # no division on the common path
        lo = -i0
        hi = size - i0
    else:
        lo = ceildiv(-i0, s)
        hi = floordiv(size - 1 - i0, s) + 1
    if lo < 0:
        lo = 0
    if lo > run:
        lo = run
    if hi > run:
        hi = run
    if hi < lo:
        hi = lo
    qlo[0] = lo
    qhi[0] = hi
