"""The correlation engine behind every convolution-like function.

A correlation is split into *phases* (see ``_axis_phases``): sub-grids of the
output over which the set of kernel taps that land on input samples is
fixed.  Each phase is a plain strided correlation, computed by one of the
kernels of ``ndconv._conv``.  Transposed convolutions arrive here as
correlations with ``input_dilate = stride`` and a flipped kernel, so they too
never multiply inserted zeros.
"""

import contextlib
import itertools
import math

import numpy as np

from . import _conv
from ._threads import blas_single_thread, get_num_threads

# Bytes of im2col workspace a thread aims for (about half the L2 cache).
_COL_BYTES = 1 << 20
# Partial sums of the weight gradient are kept below this many bytes.
_PART_BYTES = 64 << 20
_INT_MAX = 2 ** 31 - 1


# ----------------------------------------------------------------------------
# The engine: a correlation, split into phases of fixed taps.

def _axis_phases(size, out, k, s, d, r, lo, mode, keep=None):
    """Phases of one axis.

    Output cell ``o`` reads the input-dilated, padded signal at
    ``u = o * s + t * d - lo`` for tap ``t``; only ``u % r == 0`` lands on a
    sample (``u // r``).  Which taps land depends on ``o`` modulo
    ``P = r / gcd(s, r)``, so each residue is a phase: cells
    ``ph + j * P``, reading input ``u // r + j * (s * P // r)``.
    Taps that never reach the input (zero padding only) are dropped, except
    those with ``keep[t]`` set (weights that are not finite: NaN * 0 is NaN).
    Returns ``[(start, count, step, in_step, taps, offsets), ...]``.
    """
    P = r // math.gcd(s, r)
    in_step = s * P // r
    phases = []
    for ph in range(min(P, out)):
        count = (out - ph + P - 1) // P
        taps, offs = [], []
        for t in range(k):
            u = ph * s + t * d - lo
            if u % r:
                continue
            off = u // r
            last = off + (count - 1) * in_step
            if mode == 0 and (last < 0 or off >= size) and not (keep and keep[t]):
                continue
            taps.append(t)
            offs.append(off)
        phases.append((ph, count, P, in_step, taps, offs))
    return phases


def _c_strides(shape):
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= s
    return strides[::-1]


def _nonfinite_taps(W):
    """Per spatial axis, which tap indices hold a weight that is not finite."""
    bad = ~np.isfinite(W)
    if not bad.any():
        return None
    n = W.ndim - 2
    return [list(bad.any(axis=tuple(i for i in range(W.ndim) if i != 2 + a)))
            for a in range(n)]


def _phases(in_shape, out_shape, ksize, stride, dilate, input_dilate, pad_lo, mode,
            keep=None):
    """The phases of the N-D correlation that have taps on every axis, each
    with its packed geometry vector; and whether some output cells belong to
    no such phase (they then hold only the bias)."""
    per_axis = [_axis_phases(*args, mode, keep[a] if keep else None) for a, args in
                enumerate(zip(in_shape, out_shape, ksize, stride, dilate, input_dilate,
                              pad_lo))]
    empty = any(not taps for axis in per_axis for *_, taps, _ in axis)
    per_axis = [[p for p in axis if p[4]] for axis in per_axis]
    in_stride = _c_strides(in_shape)
    out_stride = _c_strides(out_shape)
    out_vol = math.prod(out_shape)
    phases = []
    for combo in itertools.product(*per_axis):
        start, count, step, in_step, taps, offs = zip(*combo)
        ntaps = [len(t) for t in taps]
        base = list(itertools.accumulate([0] + ntaps[:-1]))
        geo = np.array(list(in_shape) + in_stride + list(count) + list(start)
                       + list(step) + out_stride + list(in_step) + ntaps + base
                       + [out_vol] + [o for off in offs for o in off], dtype=np.intp)
        contiguous = all(st == 1 for st in step)
        phases.append((taps, start, step, count, geo, contiguous))
    return phases, empty


def _gemm_tile(kw, tv, cig, psub, itemsize):
    """Tile width (output cells) and channel chunk for the im2col buffer."""
    tile = _COL_BYTES // max(kw * itemsize, 1)
    tile = max(64, min(2048, tile)) // 16 * 16
    tile = min(tile, psub)
    cchunk = cig
    if cig * tv * tile * itemsize > 4 * _COL_BYTES:
        cchunk = max(1, 4 * _COL_BYTES // (tv * tile * itemsize))
    return tile, cchunk


# Kernel of the correlations: 'implicit' (packed rows and the micro-kernels
# of ext/ndconv_mk.h), 'gemm' (im2col tiles and BLAS), 'direct' (row by row,
# few channels; forward only), or 'auto': implicit where the micro-kernels
# have AVX2 or AVX-512, else gemm, since BLAS has kernels tuned for every CPU
# and the portable micro-kernel is only four lanes wide.
METHOD = 'auto'


def _method(method='auto'):
    """The kernel of a call: the caller's choice, else METHOD (a private
    switch the tests use), else by the micro-kernels' ISA ('winograd' runs
    the implicit GEMM on the phases Winograd does not take)."""
    if method != 'auto':
        return method
    if METHOD != 'auto':
        return METHOD
    return 'gemm' if _conv.current_isa() == 'generic' else 'winograd'


def _nr(itemsize):
    """NR, the output columns of the micro-kernels in use, for the dtype."""
    return _conv.kernel_shape()[1 if itemsize == 4 else 2]


# Winograd F(2, 3) (its matrices are in ext/_conv.pyx and ext/ndconv_mk.h).
# The workspace of a thread (transformed input and products of a work item)
# stays within _WINO_BYTES, so within the L2 cache.
_WINO_BYTES = 1536 << 10


def _wino_geometry(geo, n, taps):
    """Whether Winograd's tiles fit a phase: 2 or 3 axes, each with three
    consecutive taps read at unit steps, outputs at unit steps."""
    if n not in (2, 3) or any(len(t) != 3 for t in taps):
        return False
    g = [int(v) for v in geo]
    offs = g[9 * n + 1:]
    return not (any(g[4 * n + a] != 1 or g[6 * n + a] != 1 for a in range(n))
                or any(offs[3 * a + k] != offs[3 * a] + k
                       for a in range(n) for k in range(3)))


def _wino_plan(geo, n, taps, count, cig, cog, itemsize):
    """Blocking of a phase for conv_winograd, (Ls, R, Tp), or None where
    Winograd does not apply: see _wino_geometry, and channels enough on both
    sides for its GEMMs (shapes only)."""
    if cig < 16 or cog < 8 or not _wino_geometry(geo, n, taps):
        return None
    nr = _nr(itemsize)
    nt = [-(-c // 2) for c in count]
    Ls = min(nt[-1], 2 * nr)                  # tiles of a row segment
    R = max(1, min(nt[-2], nr // Ls))         # tile rows, so that a block fills NR
    Tp = -(-(R * Ls) // nr) * nr
    if 4 ** n * (cig + cog) * Tp * itemsize > _WINO_BYTES:
        return None
    return Ls, R, Tp


def _wino_kernel(wsub, C_out, cig, groups, n, dtype, nthreads):
    """G g G^T on every axis of the phase's kernel (C_out, cig * 3^n), as
    (groups, 4^n, cig, C_out // groups) for the micro-kernel."""
    u = np.empty(C_out * cig * 4 ** n, dtype)
    _conv.wino_kernel(np.ascontiguousarray(wsub, dtype).reshape(-1), u, C_out, cig, groups,
                      n, nthreads)
    return u


# Bytes of packed input rows a thread aims for, and the longest row segment.
_PACK_BYTES = 512 << 10
_ITEMS_PER_THREAD = 4     # work items per thread the row blocks are cut to, at least
_QSEG = 1024


def _last_axis_info(geo, n, taps, cig, tv, itemsize):
    """The packed-row layout of the last axis (see Last in ext/_conv.pyx),
    the channel chunk and the row segment length."""
    nl = len(taps[-1])
    s = int(geo[6 * n + n - 1])
    L = int(geo[3 * n - 1])
    offs = [int(o) for o in geo[len(geo) - nl:]]
    a = [o // s for o in offs]
    rho = [o - ai * s for o, ai in zip(offs, a)]
    slots = sorted(set(rho))
    m_min = min(a)
    span = max(a) - m_min
    info = np.array([len(slots), m_min, span] + slots + [slots.index(r) for r in rho]
                    + [ai - m_min for ai in a], dtype=np.intp)
    qseg = min(L, _QSEG)
    per_channel = (tv // nl) * len(slots) * (qseg + span + 32) * itemsize
    cchunk = max(1, min(cig, _PACK_BYTES // max(per_channel, 1)))
    return info, cchunk, qseg


# Below this many multiply-adds a call runs on one thread: waking a team
# costs more than it saves (results do not depend on the thread count).
_SERIAL_WORK = 1 << 18


def _threads_for(work):
    return 1 if work < _SERIAL_WORK else get_num_threads()


def _as_2d(geo, taps, count):
    """A 1-D phase as a 2-D one with a singleton first axis (one code path)."""
    g = [int(v) for v in geo]
    geo2 = np.array([1, g[0], g[0], 1, 1, g[2], 0, g[3], 1, g[4], g[5], 1, 1, g[6],
                     1, g[7], 0, 1, g[9], 0] + g[10:], dtype=np.intp)
    return geo2, ([0],) + tuple(taps), (1,) + tuple(count)


def _axis2_reach(geo, n, taps):
    """(step, tap span) along axis n - 2: output rows [r0, r0 + rows) read
    span + (rows - 1) * step + 1 input rows."""
    nl, n2 = len(taps[-1]), len(taps[-2])
    offs2 = [int(o) for o in geo[len(geo) - nl - n2:len(geo) - nl]]
    return int(geo[7 * n - 2]), max(offs2) - min(offs2)


def _blocking(geo, n, taps, count, cig, tv, itemsize):
    """Packed-row layout, channel chunk, row segment and the longest row
    block along axis n - 2 that keeps the packs within _PACK_BYTES; all
    from the shapes alone."""
    info, cchunk, qseg = _last_axis_info(geo, n, taps, cig, tv, itemsize)
    noo = tv // (len(taps[-1]) * len(taps[-2]))
    s2, span2 = _axis2_reach(geo, n, taps)
    ls = qseg + int(info[2]) + 48
    per_row_in = noo * int(info[0]) * ls * itemsize   # one channel, one input row
    rows = count[-2]
    while rows > 1 and cchunk * per_row_in * (span2 + (rows - 1) * s2 + 1) > _PACK_BYTES:
        rows = (rows + 1) // 2
    while cchunk > 1 and cchunk * per_row_in * (span2 + 1) > _PACK_BYTES:
        cchunk = (cchunk + 1) // 2
    return info, cchunk, qseg, rows


def _swapped(lq, cog, itemsize):
    """Whether conv_implicit runs a phase with swapped blocks (output cells
    on the micro-kernel's MR rows, channels on its NR columns): where the
    channels fill NR exactly and rounding each row segment of lq outputs up
    to NR would waste over a tenth of it."""
    nr = _nr(itemsize)
    return cog % nr == 0 and 10 * (-(-lq // nr) * nr - lq) > lq


def _implicit_plan(geo, n, taps, count, N, C_in, C_out, groups, tv, itemsize, nthreads):
    """Blocking of one phase for conv_implicit: (geo, info, cchunk, qseg,
    rows, n, swap).  The row block is cut for parallelism, which changes no
    result (each output is summed the same way whatever the blocking)."""
    if n == 1:
        geo, taps, count = _as_2d(geo, taps, count)
        n = 2
    planes = N * groups * math.prod(count[:-2])
    info, cchunk, qseg, rows = _blocking(geo, n, taps, count, C_in // groups, tv,
                                         itemsize)
    while rows > 1 and planes * (-(-count[-2] // rows)) < _ITEMS_PER_THREAD * nthreads:
        rows = (rows + 1) // 2
    swap = _swapped(min(qseg, count[-1]), C_out // groups, itemsize)
    return geo, info, cchunk, qseg, rows, n, swap


def _nparts(nitems, C_out, width, dtype):
    """Parts of a weight gradient (C_out, width) of nitems work items:
    shapes only, at most 16, together within _PART_BYTES."""
    return max(1, min(nitems, 16, _PART_BYTES // (C_out * width * np.dtype(dtype).itemsize)))


def _sum_of_parts(nitems, C_out, width, dtype, kernel):
    """A weight gradient summed in parts fixed by the shapes alone, never by
    the thread count: ``kernel(parts, nparts)`` fills the zeroed parts,
    (nparts, C_out, width) as one flat array, and returns False when a thread
    could not allocate its workspace; the parts are then added in order."""
    nparts = _nparts(nitems, C_out, width, dtype)
    parts = np.zeros((nparts, C_out, width), dtype)
    if not kernel(parts.reshape(-1), nparts):
        raise MemoryError('ndconv could not allocate its per-thread workspace')
    with np.errstate(invalid='ignore', over='ignore'):   # IEEE: inf - inf is NaN
        return np.add.reduce(parts, axis=0)


def _grad_w_rows(rows, planes, count):
    """Row block of a weight-gradient phase, cut until there are 16 work
    items (shapes only), and the number of work items."""
    while rows > 1 and planes * (-(-count[-2] // rows)) < 16:
        rows = (rows + 1) // 2
    return rows, planes * (-(-count[-2] // rows))


def _implicit_grad_w(xf, gyf, geo, n, taps, count, N, C_in, C_out, groups, tv,
                     itemsize, dtype, nthreads, method):
    """Weight gradient of one phase through conv_grad_w_winograd (method
    'winograd', where it applies and gives finite numbers), conv_grad_w_cl
    or conv_grad_w_implicit; returns the (C_out, C_in // groups * tv) sum.
    Row blocks and parts depend on the shapes alone, so the sum does too."""
    plan = (_wino_grad_w_plan(geo, n, taps, count, C_in // groups, C_out // groups,
                              itemsize) if method == 'winograd' else None)
    if plan is not None:
        g = _wino_grad_w(xf, gyf, geo, n, count, N, C_in, C_out, groups, dtype, nthreads,
                         *plan)
        if g is not None:
            return g
    if n == 1:
        geo, taps, count = _as_2d(geo, taps, count)
        n = 2
    planes = N * groups * math.prod(count[:-2])
    cig = C_in // groups
    cl = _grad_w_cl_plan(geo, n, taps, count, cig, C_out // groups, itemsize)
    if cl is not None:
        return _grad_w_cl(xf, gyf, geo, n, count, N, C_in, C_out, groups, tv, dtype,
                          nthreads, planes, *cl)
    info, cchunk, qseg, rows = _blocking(geo, n, taps, count, cig, tv, itemsize)
    rows, nitems = _grad_w_rows(rows, planes, count)
    return _sum_of_parts(nitems, C_out, cig * tv, dtype, lambda parts, nparts:
                         _conv.conv_grad_w_implicit(xf, gyf, parts, geo, info, n, N, C_in,
                                                    C_out, groups, 0, cchunk, qseg, rows,
                                                    nparts, nthreads))


# Bytes of channels-last input rows (one tap combination of the outer axes)
# and of staged output gradient a thread aims for (measured on the
# 32-channel 32^3 case: 64 KiB each was 5-10 % slower; both stay in L2).
_CL_STAGE_BYTES = 256 << 10
_CL_GY_BYTES = 128 << 10


def _grad_w_cl_plan(geo, n, taps, count, cig, cog, itemsize):
    """Blocking of the channels-last weight gradient (conv_grad_w_cl), or
    None where the input channels would fill too little of the micro-kernel's
    NR columns (the reduction kernel of conv_grad_w_implicit is used then).
    From the shapes and the micro-kernels alone."""
    nr = _nr(itemsize)
    cigp = -(-cig // nr) * nr
    if cig < 0.7 * cigp or cog < 4:
        return None
    info = _last_axis_info(geo, n, taps, cig, 1, itemsize)[0]
    nslot, span = int(info[0]), int(info[2])
    L = count[-1]
    per_cell = nslot * cig * itemsize
    qseg = max(16, _CL_STAGE_BYTES // (2 * per_cell) - span)
    qseg = min(L, qseg, max(16, _CL_GY_BYTES // (cog * itemsize)))
    s2, span2 = _axis2_reach(geo, n, taps)
    rows = count[-2]
    row_bytes = (qseg + span) * per_cell
    while rows > 1 and ((span2 + (rows - 1) * s2 + 1) * row_bytes > _CL_STAGE_BYTES
                        or rows * qseg * cog * itemsize > _CL_GY_BYTES):
        rows = (rows + 1) // 2
    return info, qseg, rows, cigp


def _grad_w_cl(xf, gyf, geo, n, count, N, C_in, C_out, groups, tv, dtype, nthreads,
               planes, info, qseg, rows, cigp):
    """The (C_out, C_in // groups * tv) weight gradient of one phase through
    conv_grad_w_cl; parts fixed by the shapes, added in order."""
    cig = C_in // groups
    rows, nitems = _grad_w_rows(rows, planes, count)
    g = _sum_of_parts(nitems, C_out, tv * cigp, dtype, lambda parts, nparts:
                      _conv.conv_grad_w_cl(xf, gyf, parts, geo, info, n, N, C_in, C_out,
                                           groups, 0, qseg, rows, nparts, nthreads))
    return g.reshape(C_out, tv, cigp)[:, :, :cig].transpose(0, 2, 1).reshape(C_out, cig * tv)


def _tap_index(taps):
    """Index of a kernel (C_out, C_in // groups, *ksize) picking the taps of
    a phase: slices where every axis's taps are evenly spaced, so no fancy
    indexing (whose cost per element shows on short calls)."""
    whole = (slice(None), slice(None))
    sl = []
    for t in taps:
        t = [int(v) for v in t]
        d = t[1] - t[0] if len(t) > 1 else 1
        if not t or d <= 0 or any(b - a != d for a, b in zip(t, t[1:])):
            return whole + np.ix_(*taps)
        sl.append(slice(t[0], t[-1] + 1, d))
    return whole + tuple(sl)


def _blas_hold(uses_blas):
    """Hold BLAS to one thread only where a kernel calls it: changing
    OpenBLAS's thread count wakes its workers, which then spin for a while on
    the cores the kernels want."""
    return blas_single_thread() if uses_blas else contextlib.nullcontext()


# Tiles of a work item of the Winograd weight gradient (the reduction of its
# GEMMs), and the bytes of a thread's workspace.
_WINO_GW_TILES = 128
_WINO_GW_BYTES = 2 << 20


def _wino_grad_w_plan(geo, n, taps, count, cig, cog, itemsize):
    """Blocking of a weight-gradient phase for conv_grad_w_winograd, (Ls,
    R), or None where Winograd does not apply (see _wino_geometry), where
    the input channels would fill too little of the micro-kernel's NR
    columns, or where a workspace of 8 tiles would not fit _WINO_GW_BYTES
    (shapes only)."""
    nr = _nr(itemsize)
    cigp = -(-cig // nr) * nr
    if cig < 16 or cig < 0.7 * cigp or cog < 8 or not _wino_geometry(geo, n, taps):
        return None
    nt = [-(-c // 2) for c in count]
    P2 = 4 ** (n - 2)

    def workspace(Ls, R):
        return itemsize * (P2 * (2 * R + 2) * (2 * Ls + 2) * cig
                           + 16 * R * Ls * (cigp + cog) + P2 * 4 * R * Ls * cog)
    tiles = _WINO_GW_TILES
    while True:
        Ls = min(nt[-1], tiles)
        R = max(1, min(nt[-2], tiles // Ls))
        if workspace(Ls, R) <= _WINO_GW_BYTES:
            return Ls, R
        if tiles <= 8:
            return None
        tiles //= 2


def _wino_grad_w(xf, gyf, geo, n, count, N, C_in, C_out, groups, dtype, nthreads, Ls, R):
    """The (C_out, C_in // groups * 3^n) weight gradient of a phase through
    conv_grad_w_winograd: parts fixed by the shapes, added in order, then
    G^T on every axis (wino_gw_finish); None where some of it is not finite (the
    transforms would spread a NaN or inf, or overflow where the direct sum
    does not)."""
    cig = C_in // groups
    nr = _nr(np.dtype(dtype).itemsize)
    cigp = -(-cig // nr) * nr
    nt = [-(-c // 2) for c in count]
    nitems = N * groups * math.prod(nt[:-2]) * (-(-nt[-2] // R)) * (-(-nt[-1] // Ls))
    nparts = _nparts(nitems, C_out, 4 ** n * cigp, dtype)
    parts = np.empty(nparts * C_out * 4 ** n * cigp, dtype)
    if not _conv.conv_grad_w_winograd(xf, gyf, parts, geo, n, N, C_in, C_out, groups,
                                      Ls, R, nparts, nthreads):
        raise MemoryError('ndconv could not allocate its per-thread workspace')
    g = np.empty((C_out, cig * 3 ** n), dtype)
    finite = _conv.wino_gw_finish(parts, g.reshape(-1), nparts, C_out, cig, cigp, n,
                                  nthreads)
    return g if finite else None


def _use_direct(cig, cog, tv, kw, itemsize):
    if cog * cig <= 4 or cog <= 1:
        return True
    # GEMM dimensions must fit an int, and one channel's columns must stay small.
    return kw > _INT_MAX or tv * 64 * itemsize > (64 << 20)


def correlate(x, Wc, b, res, stride, dilate, input_dilate, pad_lo, mode, groups,
              method='auto'):
    """res = correlation of x with Wc (+ b), everything C-contiguous, one dtype.

    x (N, C_in, *in_shape); Wc (C_out, C_in // groups, *ksize); res
    (N, C_out, *out_shape).  Input cell of output ``o``, tap ``t``: position
    ``o * stride + t * dilate - pad_lo`` of x dilated by ``input_dilate``.
    """
    N, C_in = x.shape[:2]
    C_out = Wc.shape[0]
    in_shape, out_shape, ksize = x.shape[2:], res.shape[2:], Wc.shape[2:]
    n = len(in_shape)
    if res.size == 0:
        return res
    cig, cog = C_in // groups, C_out // groups
    bias = (np.zeros(0, res.dtype) if b is None else b)
    if x.size == 0 or Wc.size == 0:
        res[...] = 0 if b is None else b.reshape((1, C_out) + (1,) * n)
        return res
    xf, of = x.reshape(-1), res.reshape(-1)
    nthreads = _threads_for(N * C_out * res[0, 0].size * cig * math.prod(ksize))
    itemsize = res.dtype.itemsize
    implicit = []          # (geo, info, cchunk, qseg, rows, n, wt) of every phase
    method = _method(method)
    nonfinite = _nonfinite_taps(Wc)
    phases, empty = _phases(in_shape, out_shape, ksize, stride, dilate, input_dilate,
                            pad_lo, mode, nonfinite)
    if empty:
        res[...] = 0 if b is None else b.reshape((1, C_out) + (1,) * n)
    with _blas_hold(method in ('gemm', 'direct')):
        for taps, start, step, count, geo, contiguous in phases:
            tv = math.prod(len(t) for t in taps)
            kw = cig * tv
            wsub = np.ascontiguousarray(Wc[_tap_index(taps)]).reshape(C_out, kw)
            # (a weight that is not finite would send every Winograd output
            # to NaN, and the implicit GEMM redo the call)
            plan = (_wino_plan(geo, n, taps, count, cig, cog, itemsize)
                    if method == 'winograd' and nonfinite is None else None)
            if plan is not None:
                status = _conv.conv_winograd(xf, _wino_kernel(wsub, C_out, cig, groups, n,
                                                              res.dtype, nthreads),
                                             bias, of, geo, n, N, C_in, C_out, groups, mode,
                                             *plan, nthreads)
                if status == 1:
                    raise MemoryError('ndconv could not allocate its per-thread workspace')
                if status == 0:
                    continue
                # Some output is not finite: the implicit GEMM redoes the
                # phase, with the direct sum's NaN and inf.
            if method in ('implicit', 'winograd'):
                wt = wsub.reshape(groups, cog, kw).transpose(0, 2, 1).reshape(-1)
                implicit.append(_implicit_plan(geo, n, taps, count, N, C_in, C_out, groups,
                                               tv, itemsize, nthreads) + (wt,))
                continue
            psub = math.prod(count)
            rows = psub // count[-1]
            per_item = max(1, min(rows, rows * N * groups // (8 * nthreads * N * groups) or 1))
            if method == 'direct' or _use_direct(cig, cog, tv, kw, itemsize):
                ok = _conv.conv_direct(xf, wsub.reshape(-1), bias, of, geo, n, N, C_in,
                                       C_out, groups, mode, per_item, nthreads)
            else:
                tile, cchunk = _gemm_tile(kw, tv, cig, psub, itemsize)
                ok = _conv.conv_gemm(xf, wsub.reshape(-1), bias, of, geo, n, N, C_in,
                                     C_out, groups, mode, tile, cchunk,
                                     contiguous and res[0, 0].size <= _INT_MAX,
                                     nthreads)
            if not ok:
                raise MemoryError('ndconv could not allocate its per-thread workspace')
        if implicit:
            geos, infos, wts, table = [], [], [], []
            goff = ioff = woff = 0
            for geo, info, cchunk, qseg, rows, n2, swap, wt in implicit:
                table += [goff, ioff, woff, cchunk, qseg, rows, int(swap)]
                geos.append(geo)
                infos.append(info)
                wts.append(wt)
                goff += len(geo)
                ioff += len(info)
                woff += len(wt)
            ok = _conv.conv_implicit(xf, np.concatenate(wts), bias, of,
                                     np.concatenate(geos), np.concatenate(infos),
                                     np.array(table, dtype=np.intp), max(n, 2), N, C_in,
                                     C_out, groups, mode, _ITEMS_PER_THREAD * nthreads,
                                     nthreads)
            if not ok:
                raise MemoryError('ndconv could not allocate its per-thread workspace')
    return res


def correlate_grad_w(x, gy, ksize, stride, dilate, input_dilate, pad_lo, groups,
                     method='auto'):
    """Gradient of sum(correlate(x, W) * gy) with respect to W."""
    N, C_in = x.shape[:2]
    C_out = gy.shape[1]
    n = x.ndim - 2
    cig = C_in // groups
    gW = np.zeros((C_out, cig) + tuple(ksize), gy.dtype)
    if x.size == 0 or gy.size == 0 or gW.size == 0:
        return gW
    itemsize = gy.dtype.itemsize
    nthreads = _threads_for(N * C_out * gy[0, 0].size * cig * math.prod(ksize))
    xf, gyf = x.reshape(-1), gy.reshape(-1)
    method = _method(method)
    phases, _ = _phases(x.shape[2:], gy.shape[2:], ksize, stride, dilate, input_dilate,
                        pad_lo, 0)
    with _blas_hold(method == 'gemm'):
        for taps, start, step, count, geo, contiguous in phases:
            tv = math.prod(len(t) for t in taps)
            kw = cig * tv
            if method != 'gemm':
                gsub = _implicit_grad_w(xf, gyf, geo, n, taps, count, N, C_in, C_out,
                                        groups, tv, itemsize, gy.dtype, nthreads, method)
            else:
                psub = math.prod(count)
                tile, cchunk = _gemm_tile(kw, tv, cig, psub, itemsize)
                nitems = N * groups * (-(-psub // tile))
                flat_ok = contiguous and gy[0, 0].size <= _INT_MAX
                gsub = _sum_of_parts(nitems, C_out, kw, gy.dtype, lambda parts, nparts:
                                     _conv.conv_grad_w(xf, gyf, parts, geo, n, N, C_in,
                                                       C_out, groups, 0, tile, cchunk,
                                                       nparts, flat_ok, nthreads))
            with np.errstate(invalid='ignore', over='ignore'):
                gW[_tap_index(taps)] += gsub.reshape(
                    (C_out, cig) + tuple(len(t) for t in taps))
    return gW
