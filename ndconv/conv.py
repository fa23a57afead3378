"""Convolution, transposed convolution and the weight gradient, for any n."""

import itertools
import math

import numpy as np

from . import _args as A
from . import _conv
from ._threads import blas_single_thread, get_num_threads

# Bytes of im2col workspace a thread aims for (about half the L2 cache).
_COL_BYTES = 1 << 20
# Partial sums of the weight gradient are kept below this many bytes.
_PART_BYTES = 64 << 20
_INT_MAX = 2 ** 31 - 1


# ----------------------------------------------------------------------------
# The engine: a correlation, split into phases of fixed taps.

def _axis_phases(size, out, k, s, d, r, lo, mode):
    """Phases of one axis.

    Output cell ``o`` reads the input-dilated, padded signal at
    ``u = o * s + t * d - lo`` for tap ``t``; only ``u % r == 0`` lands on a
    sample (``u // r``).  Which taps land depends on ``o`` modulo
    ``P = r / gcd(s, r)``, so each residue is a phase: cells
    ``ph + j * P``, reading input ``u // r + j * (s * P // r)``.
    Taps that never reach the input (zero padding only) are dropped.
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
            if mode == 0 and (last < 0 or off >= size):
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


def _phases(in_shape, out_shape, ksize, stride, dilate, input_dilate, pad_lo, mode):
    """Every phase of the N-D correlation, with its packed geometry vector."""
    per_axis = [_axis_phases(*args, mode) for args in zip(
        in_shape, out_shape, ksize, stride, dilate, input_dilate, pad_lo)]
    n = len(in_shape)
    in_stride = _c_strides(in_shape)
    out_stride = _c_strides(out_shape)
    out_vol = math.prod(out_shape)
    for combo in itertools.product(*per_axis):
        start, count, step, in_step, taps, offs = zip(*combo)
        ntaps = [len(t) for t in taps]
        base = list(itertools.accumulate([0] + ntaps[:-1]))
        geo = np.array(list(in_shape) + in_stride + list(count) + list(start)
                       + list(step) + out_stride + list(in_step) + ntaps + base
                       + [out_vol] + [o for off in offs for o in off], dtype=np.intp)
        contiguous = all(st == 1 for st in step)
        yield taps, start, step, count, geo, contiguous
    del n


def _gemm_tile(kw, tv, cig, psub, itemsize):
    """Tile width (output cells) and channel chunk for the im2col buffer."""
    tile = _COL_BYTES // max(kw * itemsize, 1)
    tile = max(64, min(2048, tile)) // 16 * 16
    tile = min(tile, psub)
    cchunk = cig
    if cig * tv * tile * itemsize > 4 * _COL_BYTES:
        cchunk = max(1, 4 * _COL_BYTES // (tv * tile * itemsize))
    return tile, cchunk


def _use_direct(cig, cog, tv, kw, itemsize):
    if cog * cig <= 4 or cog <= 1:
        return True
    # GEMM dimensions must fit an int, and one channel's columns must stay small.
    return kw > _INT_MAX or tv * 64 * itemsize > (64 << 20)


def _correlate(x, Wc, b, res, stride, dilate, input_dilate, pad_lo, mode, groups):
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
    nthreads = get_num_threads()
    itemsize = res.dtype.itemsize
    with blas_single_thread():
        for taps, start, step, count, geo, contiguous in _phases(
                in_shape, out_shape, ksize, stride, dilate, input_dilate, pad_lo, mode):
            tv = math.prod(len(t) for t in taps)
            if tv == 0:
                cells = (slice(None), slice(None)) + tuple(
                    slice(s0, None, st) for s0, st in zip(start, step))
                res[cells] = 0 if b is None else b.reshape((1, C_out) + (1,) * n)
                continue
            kw = cig * tv
            wsub = np.ascontiguousarray(
                Wc[np.ix_(range(C_out), range(cig), *taps)]).reshape(-1)
            psub = math.prod(count)
            if _use_direct(cig, cog, tv, kw, itemsize):
                rows = psub // count[-1]
                per_item = max(1, rows * N * groups // (16 * nthreads) // max(N * groups, 1))
                ok = _conv.conv_direct(xf, wsub, bias, of, geo, n, N, C_in, C_out,
                                       groups, mode, per_item, nthreads)
            else:
                tile, cchunk = _gemm_tile(kw, tv, cig, psub, itemsize)
                ok = _conv.conv_gemm(xf, wsub, bias, of, geo, n, N, C_in, C_out,
                                     groups, mode, tile, cchunk,
                                     contiguous and res[0, 0].size <= _INT_MAX,
                                     nthreads)
            if not ok:
                raise MemoryError('ndconv could not allocate its per-thread workspace')
    return res


def _correlate_grad_w(x, gy, ksize, stride, dilate, input_dilate, pad_lo, groups):
    """Gradient of sum(correlate(x, W) * gy) with respect to W."""
    N, C_in = x.shape[:2]
    C_out = gy.shape[1]
    n = x.ndim - 2
    cig, cog = C_in // groups, C_out // groups
    gW = np.zeros((C_out, cig) + tuple(ksize), gy.dtype)
    if x.size == 0 or gy.size == 0 or gW.size == 0:
        return gW
    itemsize = gy.dtype.itemsize
    nthreads = get_num_threads()
    xf, gyf = x.reshape(-1), gy.reshape(-1)
    with blas_single_thread():
        for taps, start, step, count, geo, contiguous in _phases(
                x.shape[2:], gy.shape[2:], ksize, stride, dilate, input_dilate,
                pad_lo, 0):
            tv = math.prod(len(t) for t in taps)
            if tv == 0:
                continue
            kw = cig * tv
            psub = math.prod(count)
            tile, cchunk = _gemm_tile(kw, tv, cig, psub, itemsize)
            nitems = N * groups * (-(-psub // tile))
            # Fixed by the shapes alone, never by the thread count.
            nparts = max(1, min(nitems, 16, _PART_BYTES // (C_out * kw * itemsize)))
            parts = np.zeros((nparts, C_out, kw), gy.dtype)
            ok = _conv.conv_grad_w(xf, gyf, parts.reshape(-1), geo, n, N, C_in,
                                   C_out, groups, 0, tile, cchunk, nparts,
                                   contiguous and gy[0, 0].size <= _INT_MAX, nthreads)
            if not ok:
                raise MemoryError('ndconv could not allocate its per-thread workspace')
            gsub = np.add.reduce(parts, axis=0)
            gW[np.ix_(range(C_out), range(cig), *taps)] += gsub.reshape(
                (C_out, cig) + tuple(len(t) for t in taps))
    return gW


# ----------------------------------------------------------------------------
# Shared argument handling of the three functions.

def _weights(x, W, name='W'):
    W = A.float_array(W, name)
    if W.ndim != x.ndim:
        raise ValueError('%s must have %d dimensions (out channels, in channels, '
                         'then %d kernel axes) to match x of shape %s; got shape %s'
                         % (name, x.ndim, x.ndim - 2, x.shape, W.shape))
    for i, k in enumerate(W.shape[2:]):
        if k < 1:
            raise ValueError('%s has an empty kernel axis %d (shape %s)' % (name, i, W.shape))
    return W


def _bias(b, c_out):
    if b is None:
        return None
    b = A.float_array(b, 'b')
    if b.shape != (c_out,):
        raise ValueError('b must have shape (%d,) (one value per output channel), '
                         'got %s' % (c_out, b.shape))
    return b


def _finish(res, out, rt):
    """Cast a float32 result computed for float16 back; fill ``out``."""
    if out is not None:
        if res is not out:
            out[...] = res
        return out
    return res if res.dtype == rt else res.astype(rt)


def _result(shape, rt, ct, out, inputs):
    out = A.check_out(out, shape, rt, inputs)
    A.check_size(shape, ct.itemsize)
    res = out if (out is not None and rt == ct) else np.empty(shape, ct)
    return out, res


# ----------------------------------------------------------------------------
# Public functions.

def convolution_nd(x, W, b=None, stride=1, pad=0, cover_all=False, dilate=1,
                   groups=1, *, input_dilate=1, pad_mode='constant', out=None):
    """N-dimensional convolution (cross-correlation, no kernel flip).

    Parameters
    ----------
    x : ndarray, shape (N, C_in, D1, ..., Dn)
        Input, float16, float32 or float64.
    W : ndarray, shape (C_out, C_in // groups, k1, ..., kn)
        Filters.
    b : ndarray, shape (C_out,), optional
        Bias.
    stride, dilate : int or sequence of n ints
        An int applies to every axis.  ``dilate`` spaces the kernel taps.
    pad : int, sequence of n ints, sequence of n (lo, hi) pairs, or 'valid', 'same', 'full'
        Padding on each side.  A string fixes the output size and ``cover_all``
        is then ignored.
    cover_all : bool
        Add outputs on the high side so every input cell is covered.
    groups : int
        Number of channel groups; it divides ``C_in`` and ``C_out``.
    input_dilate : int or sequence of n ints, keyword-only
        Insert ``input_dilate - 1`` zeros between input samples (a fractional
        stride).
    pad_mode : {'constant', 'reflect', 'edge', 'wrap'}, keyword-only
        What the padding holds, as in ``numpy.pad``.  Modes other than
        'constant' need ``input_dilate == 1``.
    out : ndarray, optional, keyword-only
        C-contiguous array of the result's shape and dtype to fill.

    Returns
    -------
    y : ndarray, shape (N, C_out, O1, ..., On)

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value; the message names the
        parameter.

    Notes
    -----
    With ``D' = (D - 1) * input_dilate + 1`` and ``dk = (k - 1) * dilate + 1``,
    each output size is ``(D' + lo + hi - dk) // stride + 1``, or
    ``(D' + lo + hi - dk + stride - 1) // stride + 1`` with ``cover_all``.

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import convolution_nd
    >>> x = np.arange(5.0).reshape(1, 1, 5)
    >>> convolution_nd(x, np.ones((1, 1, 2)))
    array([[[1., 3., 5., 7.]]])
    """
    x = A.spatial_input(x)
    n = x.ndim - 2
    W = _weights(x, W)
    N, C_in = x.shape[:2]
    C_out = W.shape[0]
    ksize = W.shape[2:]
    g = A.groups_arg(groups, C_in, C_out)
    if W.shape[1] * g != C_in:
        raise ValueError('W has %d input channels per group but x has %d channels '
                         'and groups=%d (expected W.shape[1] == %d)'
                         % (W.shape[1], C_in, g, C_in // g))
    b = _bias(b, C_out)
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    input_dilate = A.int_tuple(input_dilate, n, 'input_dilate')
    cover_all = A.as_bool(cover_all, 'cover_all')
    mode = A.pad_mode_code(pad_mode)
    if mode and any(r > 1 for r in input_dilate):
        raise ValueError("pad_mode=%r needs input_dilate=1 on every axis, got %s"
                         % (pad_mode, input_dilate))
    pads = A.pad_spec(pad, n, ('valid', 'same', 'full'))
    if isinstance(pads, str):
        pads = A.string_pads(pads, x.shape[2:], ksize, stride, dilate, input_dilate)
        cover_all = False
    out_sp = A.conv_out_shape(x.shape[2:], ksize, stride, pads, cover_all, dilate,
                              input_dilate)
    rt, ct = A.result_dtype(x, W, b)
    out, res = _result((N, C_out) + out_sp, rt, ct, out, (x, W, b))
    _correlate(A.as_compute(x, ct), A.as_compute(W, ct),
               None if b is None else A.as_compute(b, ct), res, stride, dilate,
               input_dilate, [lo for lo, _ in pads], mode, g)
    return _finish(res, out, rt)


def deconvolution_nd(x, W, b=None, stride=1, pad=0, outsize=None, dilate=1,
                     groups=1, *, out=None):
    """N-dimensional transposed convolution, the adjoint of `convolution_nd`.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, D1, ..., Dn)
    W : ndarray, shape (C_in, C_out // groups, k1, ..., kn)
    b : ndarray, shape (C_out,), optional
    stride, dilate : int or sequence of n ints
        An int applies to every axis.
    pad : int, sequence of n ints, sequence of n (lo, hi) pairs, or 'valid', 'same'
        The padding of the convolution this is the adjoint of.  ``'same'``
        gives ``D * stride`` outputs.
    outsize : sequence of n ints, optional
        The wanted output size, any size the convolution maps back to ``D``
        (with or without ``cover_all``): from ``stride - 1`` below the default
        to ``stride - 1`` above it.
    groups : int
    out : ndarray, optional, keyword-only

    Returns
    -------
    y : ndarray, shape (N, C_out, O1, ..., On)

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value; an unreachable ``outsize``
        names the valid range.

    Notes
    -----
    Default output size per axis: ``stride * (D - 1) + dk - lo - hi`` with
    ``dk = (k - 1) * dilate + 1``.  For the same ``W``, ``stride``, ``pad``,
    ``dilate`` and ``groups``,
    ``sum(convolution_nd(a, W) * y) == sum(a * deconvolution_nd(y, W, outsize=a.shape[2:]))``.

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import deconvolution_nd
    >>> x = np.array([[[[0., 1.], [2., 3.]]]])
    >>> deconvolution_nd(x, x)[0, 0]
    array([[ 0.,  0.,  1.],
           [ 0.,  4.,  6.],
           [ 4., 12.,  9.]])
    """
    x = A.spatial_input(x)
    n = x.ndim - 2
    W = _weights(x, W)
    N, C_in = x.shape[:2]
    if W.shape[0] != C_in:
        raise ValueError('W must have shape (C_in, C_out // groups, k...) with '
                         'C_in = %d (the channels of x), got W.shape[0] = %d'
                         % (C_in, W.shape[0]))
    g = A.as_int(groups, 'groups')
    if g < 1:
        raise ValueError('groups must be a positive int, got %d' % g)
    if C_in % g:
        raise ValueError('groups=%d does not divide the %d input channels' % (g, C_in))
    C_out = W.shape[1] * g
    ksize = W.shape[2:]
    b = _bias(b, C_out)
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    outsize = A.optional_sizes(outsize, n)
    pads = A.pad_spec(pad, n, ('valid', 'same'))
    fixed = None
    if isinstance(pads, str):
        if pads == 'same':
            fixed = tuple(D * s for D, s in zip(x.shape[2:], stride))
        pads = A.deconv_string_pads(pads, ksize, stride, dilate)
    out_sp = A.transposed_out_shape(x.shape[2:], ksize, stride, pads, dilate,
                                    outsize, fixed=fixed)
    rt, ct = A.result_dtype(x, W, b)
    out, res = _result((N, C_out) + out_sp, rt, ct, out, (x, W, b))
    cig, cog = C_in // g, W.shape[1]
    Wc = A.as_compute(W, ct).reshape((g, cig, cog) + ksize).swapaxes(1, 2)
    Wc = Wc.reshape((C_out, cig) + ksize)[(slice(None),) * 2 + (slice(None, None, -1),) * n]
    lo2 = [A.extent(k, d) - 1 - lo for k, d, (lo, _) in zip(ksize, dilate, pads)]
    _correlate(A.as_compute(x, ct), Wc, None if b is None else A.as_compute(b, ct),
               res, (1,) * n, dilate, stride, lo2, 0, g)
    return _finish(res, out, rt)


def convolution_nd_grad_W(x, gy, ksize, stride=1, pad=0, cover_all=False,
                          dilate=1, groups=1, *, input_dilate=1):
    """Gradient of ``sum(convolution_nd(x, W, ...) * gy)`` with respect to W.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, D1, ..., Dn)
    gy : ndarray, shape (N, C_out, O1, ..., On)
        The output gradient; its spatial shape must be the convolution's.
    ksize : int or sequence of n ints
        Kernel size; an int applies to every axis.
    stride, pad, cover_all, dilate, groups, input_dilate
        As in `convolution_nd` (zero padding).

    Returns
    -------
    gW : ndarray, shape (C_out, C_in // groups, k1, ..., kn)

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import convolution_nd_grad_W
    >>> x = np.arange(4.0).reshape(1, 1, 4)
    >>> convolution_nd_grad_W(x, np.ones((1, 1, 3)), 2)
    array([[[3., 6.]]])
    """
    x = A.spatial_input(x)
    n = x.ndim - 2
    gy = A.float_array(gy, 'gy', ndim=x.ndim)
    N, C_in = x.shape[:2]
    C_out = gy.shape[1]
    if gy.shape[0] != N:
        raise ValueError('gy must have the batch size of x (%d), got shape %s'
                         % (N, gy.shape))
    ksize = A.int_tuple(ksize, n, 'ksize')
    g = A.groups_arg(groups, C_in, C_out)
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    input_dilate = A.int_tuple(input_dilate, n, 'input_dilate')
    cover_all = A.as_bool(cover_all, 'cover_all')
    pads = A.pad_spec(pad, n, ('valid', 'same', 'full'))
    if isinstance(pads, str):
        pads = A.string_pads(pads, x.shape[2:], ksize, stride, dilate, input_dilate)
        cover_all = False
    out_sp = A.conv_out_shape(x.shape[2:], ksize, stride, pads, cover_all, dilate,
                              input_dilate)
    if gy.shape[2:] != out_sp:
        raise ValueError('gy must have spatial shape %s (the convolution output), '
                         'got %s' % (out_sp, gy.shape[2:]))
    rt, ct = A.result_dtype(x, gy)
    A.check_size((C_out, C_in // g) + ksize, ct.itemsize, 'weight gradient')
    gW = _correlate_grad_w(A.as_compute(x, ct), A.as_compute(gy, ct), ksize, stride,
                           dilate, input_dilate, [lo for lo, _ in pads], g)
    return gW.astype(rt, copy=False)


# ----------------------------------------------------------------------------
# Size helpers.

def _sizes_arg(size):
    if not A._is_sequence(size):
        raise TypeError('size must be a sequence of ints (one per spatial axis), got %r'
                        % (size,))
    return A.int_tuple(size, len(size), 'size')


def conv_outsize(size, ksize, stride=1, pad=0, cover_all=False, dilate=1,
                 input_dilate=1):
    """Output spatial shape of `convolution_nd` for an input of spatial shape ``size``.

    Examples
    --------
    >>> from ndconv import conv_outsize
    >>> conv_outsize((100, 100), 4, stride=(2, 1), pad=((1, 1), (2, 2)), input_dilate=(1, 2))
    (50, 200)
    """
    size = _sizes_arg(size)
    n = len(size)
    ksize = A.int_tuple(ksize, n, 'ksize')
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    input_dilate = A.int_tuple(input_dilate, n, 'input_dilate')
    cover_all = A.as_bool(cover_all, 'cover_all')
    pads = A.pad_spec(pad, n, ('valid', 'same', 'full'))
    if isinstance(pads, str):
        pads = A.string_pads(pads, size, ksize, stride, dilate, input_dilate)
        cover_all = False
    return A.conv_out_shape(size, ksize, stride, pads, cover_all, dilate, input_dilate)


def deconv_outsize(size, ksize, stride=1, pad=0, dilate=1):
    """Default output spatial shape of `deconvolution_nd`.

    Examples
    --------
    >>> from ndconv import deconv_outsize
    >>> deconv_outsize((55, 55), 11, stride=4)
    (227, 227)
    """
    size = _sizes_arg(size)
    n = len(size)
    ksize = A.int_tuple(ksize, n, 'ksize')
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    pads = A.pad_spec(pad, n, ('valid', 'same'))
    fixed = None
    if isinstance(pads, str):
        if pads == 'same':
            fixed = tuple(D * s for D, s in zip(size, stride))
        pads = A.deconv_string_pads(pads, ksize, stride, dilate)
    return A.transposed_out_shape(size, ksize, stride, pads, dilate, None, fixed=fixed)
