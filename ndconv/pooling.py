"""Pooling and unpooling for any number of spatial axes.

Each function normalises its arguments with ``ndconv._args``, allocates the
result and calls one kernel of ``ndconv._pool`` with C-contiguous buffers
and a packed geometry vector (``in_shape``, ``out_shape``, ``ksize``,
``stride``, ``pad_lo``, ``n + 1`` ints each: a leading axis of size 1 gives
the kernels at least two axes, so that they always walk rows in runs).  The
kernels trust what they get: every check happens here.
"""

import math

import numpy as np

from . import _args as A
from . import _pool
from ._threads import get_num_threads

__all__ = ['unpooling_nd', 'max_pooling_nd', 'max_unpooling_nd',
           'average_pooling_nd']

# Cells read and written per work item of the row kernels (about 512 KiB of
# float32): fixed by the shapes, never by the thread count (the results
# would not change anyway: each item writes its own cells).
_ITEM_CELLS = 1 << 17
# Every index the kernels form stays far from the int64 limit.
_INDEX_LIMIT = 1 << 62


# ----------------------------------------------------------------------------
# Argument helpers shared by the four functions.

def _window_args(x, ksize, stride, pad, strings):
    """x checked, n, ksize, stride (default ksize) and the pad spec."""
    x = A.spatial_input(x)
    n = x.ndim - 2
    ksize = A.int_tuple(ksize, n, 'ksize')
    stride = ksize if stride is None else A.int_tuple(stride, n, 'stride')
    pads = A.pad_spec(pad, n, strings)
    return x, n, ksize, stride, pads


def _geometry(in_shape, out_shape, ksize, stride, pads):
    """The packed geometry vector, with a leading axis of size 1, refusing
    sizes whose index arithmetic could leave int64; n + 1 is its number of
    axes."""
    for i, (D, O, k, s, (lo, hi)) in enumerate(
            zip(in_shape, out_shape, ksize, stride, pads)):
        if D + O + k + lo + hi + s * (D + O + 1) >= _INDEX_LIMIT:
            raise ValueError('axis %d: ksize %d, stride %d, pad %r with sizes %d '
                             'and %d are too large for 64-bit index arithmetic'
                             % (i, k, s, (lo, hi), D, O))
    return np.array([1] + list(in_shape) + [1] + list(out_shape) + [1] + list(ksize)
                    + [1] + list(stride) + [0] + [lo for lo, _ in pads], dtype=np.intp)


def _rows_per_item(in_sp, out_sp):
    """Output rows per work item: about _ITEM_CELLS cells of input and
    output together."""
    per_row = out_sp[-1] * (1 + math.prod(in_sp) / math.prod(out_sp))
    return max(1, int(_ITEM_CELLS // per_row))


# Results of at least this many bytes come from ndconv's results allocator
# (see ext/ndconv_pool.h): a 2 MiB-aligned mapping on huge pages, and the
# mapping of a freed result kept (lazily freed: the kernel takes it back when
# it needs memory) for the next result of the same size, so that repeated
# calls do not pay the page faults of a fresh allocation, which on this
# machine cost more than writing the result.  None: always numpy.empty.
_RESULTS_ALLOCATOR_BYTES = _pool._BIG_RESULT


def _allocate(shape, dtype):
    itemsize = np.dtype(dtype).itemsize
    A.check_size(shape, itemsize)
    if (_RESULTS_ALLOCATOR_BYTES is not None
            and math.prod(shape) * itemsize >= _RESULTS_ALLOCATOR_BYTES):
        return _pool._empty(shape, dtype)
    return np.empty(shape, dtype)


def _flat(a):
    """A C-contiguous array as a flat view (no copy)."""
    return a.reshape(-1)


def _pool_pads(pads, sizes, ksize, stride, cover_all):
    """(lo, hi) pairs for a pooling pad; a string pad turns cover_all off."""
    if isinstance(pads, str):
        ones = (1,) * len(sizes)
        return A.string_pads(pads, sizes, ksize, stride, ones, ones), False
    return pads, cover_all


def _pool_out_shape(sizes, ksize, stride, pads, cover_all):
    ones = (1,) * len(sizes)
    return A.conv_out_shape(sizes, ksize, stride, pads, cover_all, ones, ones)


# ----------------------------------------------------------------------------
# Public functions.

def unpooling_nd(x, ksize, stride=None, pad=0, outsize=None, cover_all=True):
    """N-dimensional unpooling: every value spread over its window.

    Chainer's ``unpooling_nd``: each input value is copied to every cell of
    its ``ksize`` window, windows are placed every ``stride`` cells,
    overlapping windows add up and ``pad`` is cut from the edges.  It is the
    adjoint of sum pooling with the same ``ksize``, ``stride``, ``pad`` and
    ``cover_all``.

    Parameters
    ----------
    x : ndarray, shape (N, C, D1, ..., Dn)
        Input, float16, float32 or float64.
    ksize : int or sequence of n ints
        Window size; an int applies to every axis.
    stride : int or sequence of n ints, optional
        Window spacing; an int applies to every axis.  Default: ``ksize``.
    pad : int, sequence of n ints or sequence of n (lo, hi) pairs
        Cells cut from the low and high edges.
    outsize : sequence of n ints, optional
        The wanted spatial output shape: any size ``O`` that pooling with the
        same arguments (and the same ``cover_all``) maps back to ``D``.
    cover_all : bool
        Whether the pooling this inverts used ``cover_all``; when True the
        default output is ``stride - 1`` cells shorter.

    Returns
    -------
    y : ndarray, shape (N, C, O1, ..., On)
        Same dtype as ``x``.

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value; an unreachable ``outsize``
        names the valid sizes.

    Notes
    -----
    Default output size per axis: ``stride * (D - 1) + ksize - lo - hi``,
    minus ``stride - 1`` when ``cover_all``.  Output cell ``o`` holds the sum
    of the inputs ``i`` with ``i * stride <= o + lo < i * stride + ksize``.

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import unpooling_nd
    >>> x = np.array([[[1., 2., 3.]]])
    >>> unpooling_nd(x, 3, stride=2)
    array([[[1., 1., 3., 2., 5., 3.]]])
    >>> unpooling_nd(x, 3, stride=2, cover_all=False)
    array([[[1., 1., 3., 2., 5., 3., 3.]]])
    """
    x, n, ksize, stride, pads = _window_args(x, ksize, stride, pad, ())
    outsize = A.optional_sizes(outsize, n)
    cover_all = A.as_bool(cover_all, 'cover_all')
    sizes = x.shape[2:]
    default = tuple(A.deconv_axis_size(D, k, s, lo, hi) - (s - 1 if cover_all else 0)
                    for D, k, s, (lo, hi) in zip(sizes, ksize, stride, pads))
    out_sp = A.transposed_out_shape(sizes, ksize, stride, pads, (1,) * n, outsize,
                                    cover_all=(cover_all,), fixed=default)
    rt, ct = A.result_dtype(x)
    N, C = x.shape[:2]
    res = _allocate((N, C) + out_sp, ct)
    if res.size:
        geo = _geometry(sizes, out_sp, ksize, stride, pads)
        ok = _pool.unpool(_flat(A.as_compute(x, ct)), _flat(res), geo, n + 1, N * C,
                          _rows_per_item(sizes, out_sp), get_num_threads())
        if not ok:
            raise MemoryError('ndconv could not allocate its per-thread row buffer')
    return res.astype(rt, copy=False)


def max_pooling_nd(x, ksize, stride=None, pad=0, cover_all=True,
                   return_indices=False):
    """N-dimensional max pooling.

    Chainer's ``max_pooling_nd`` sizes and values.  Padding never wins the
    maximum: a window made only of padding (possible with ``cover_all`` and
    ``pad``) gives ``-inf`` (and index -1).

    Parameters
    ----------
    x : ndarray, shape (N, C, D1, ..., Dn)
        Input, float16, float32 or float64.
    ksize : int or sequence of n ints
        Window size; an int applies to every axis.
    stride : int or sequence of n ints, optional
        Window spacing; an int applies to every axis.  Default: ``ksize``.
    pad : int, sequence of n ints, sequence of n (lo, hi) pairs, or 'valid', 'same'
        Padding on each side.  ``'same'`` gives TensorFlow's
        ``ceil(D / stride)`` outputs; with a string ``cover_all`` is ignored.
    cover_all : bool
        Add outputs on the high side so that every input cell is covered.
    return_indices : bool
        Also return the position of each maximum.

    Returns
    -------
    y : ndarray, shape (N, C, O1, ..., On)
        Same dtype as ``x``.
    indices : ndarray of int64, shape (N, C, O1, ..., On)
        Only with ``return_indices``: for each output, the flat (C order)
        index of the winning cell inside its ``(n, c)`` input volume of shape
        ``(D1, ..., Dn)`` (PyTorch's convention), -1 for an all-padding
        window.

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value.

    Notes
    -----
    Output size per axis: ``(D + lo + hi - ksize) // stride + 1``, or
    ``(D + lo + hi - ksize + stride - 1) // stride + 1`` with ``cover_all``.
    Of equal maxima the first in C order of the window wins; a window that
    holds a NaN gives NaN, with the index of its first NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import max_pooling_nd
    >>> x = np.array([[[3., 1., 4., 1., 5.]]])
    >>> max_pooling_nd(x, 2)
    array([[[3., 4., 5.]]])
    >>> y, idx = max_pooling_nd(x, 2, cover_all=False, return_indices=True)
    >>> y, idx
    (array([[[3., 4.]]]), array([[[0, 2]]]))
    """
    x, n, ksize, stride, pads = _window_args(x, ksize, stride, pad, ('valid', 'same'))
    cover_all = A.as_bool(cover_all, 'cover_all')
    return_indices = A.as_bool(return_indices, 'return_indices')
    sizes = x.shape[2:]
    pads, cover_all = _pool_pads(pads, sizes, ksize, stride, cover_all)
    out_sp = _pool_out_shape(sizes, ksize, stride, pads, cover_all)
    rt, ct = A.result_dtype(x)
    N, C = x.shape[:2]
    shape = (N, C) + out_sp
    res = _allocate(shape, ct)
    idx = _allocate(shape if return_indices else (1,), np.int64)
    if res.size:
        geo = _geometry(sizes, out_sp, ksize, stride, pads)
        _pool.max_pool(_flat(A.as_compute(x, ct)), _flat(res), _flat(idx), geo, n + 1,
                       N * C, _rows_per_item(sizes, out_sp), return_indices,
                       get_num_threads())
    res = res.astype(rt, copy=False)
    return (res, idx) if return_indices else res


def max_unpooling_nd(x, indices, ksize, stride=None, pad=0, outsize=None):
    """N-dimensional max unpooling: each value put back at its index.

    The inverse of ``max_pooling_nd(..., return_indices=True)``: a zero
    output, and each value of ``x`` written at the flat index given by
    ``indices`` inside its ``(n, c)`` output volume.

    Parameters
    ----------
    x : ndarray, shape (N, C, D1, ..., Dn)
        Values, float16, float32 or float64.
    indices : integer ndarray, shape (N, C, D1, ..., Dn)
        Flat (C order) index of each value inside its output volume of shape
        ``(O1, ..., On)``, or -1 to skip the value.
    ksize : int or sequence of n ints
        Window size of the pooling; an int applies to every axis.
    stride : int or sequence of n ints, optional
        Window spacing; an int applies to every axis.  Default: ``ksize``.
    pad : int, sequence of n ints or sequence of n (lo, hi) pairs
        Padding of the pooling.
    outsize : sequence of n ints, optional
        The wanted spatial output shape, over the range `deconvolution_nd`
        accepts: from ``stride - 1`` below the default to ``stride - 1``
        above it.

    Returns
    -------
    y : ndarray, shape (N, C, O1, ..., On)
        Same dtype as ``x``.

    Raises
    ------
    TypeError
        ``indices`` is not an integer array (or ``x`` not a float array).
    ValueError
        ``indices`` does not have the shape of ``x``; an index is neither -1
        nor inside the output volume (raised before anything is written);
        an unreachable ``outsize``; other bad arguments.

    Notes
    -----
    Default output size per axis: ``stride * (D - 1) + ksize - lo - hi``.
    Where several values name the same cell the largest is kept: a NaN
    counts as larger than any number, and of equal values (such as ``-0.0``
    and ``0.0``) the first in C order of ``x`` stays.  The result is the
    same for any thread count.

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import max_unpooling_nd
    >>> x = np.array([[[3., 4.]]])
    >>> max_unpooling_nd(x, np.array([[[0, 2]]]), 2)
    array([[[3., 0., 4., 0.]]])
    """
    x, n, ksize, stride, pads = _window_args(x, ksize, stride, pad, ())
    if not isinstance(indices, np.ndarray):
        if indices is None:
            raise TypeError('indices must be an integer array, got None')
        try:
            indices = np.asarray(indices)
        except Exception as exc:
            raise TypeError('indices must be an integer array: %s' % exc) from None
    if indices.dtype.kind not in 'iu':
        raise TypeError('indices must be an integer array, got dtype %s' % indices.dtype)
    if indices.shape != x.shape:
        raise ValueError('indices must have the shape of x %s, got %s'
                         % (x.shape, indices.shape))
    outsize = A.optional_sizes(outsize, n)
    sizes = x.shape[2:]
    out_sp = A.transposed_out_shape(sizes, ksize, stride, pads, (1,) * n, outsize)
    vol = math.prod(out_sp)
    # Disjoint windows that fit in the output (the inverse of a pooling with
    # stride == ksize): one pass gathers each output cell from its window and
    # checks on the way that every index is -1 or inside its own window.  Any
    # other index (a bad one included) sends the call to the general scatter
    # below, which starts from scratch.
    blocks = all(s == k and lo == 0 and O >= D * k for D, O, k, s, (lo, _)
                 in zip(sizes, out_sp, ksize, stride, pads))
    rt, ct = A.result_dtype(x)
    N, C = x.shape[:2]
    A.check_size((N, C) + out_sp, np.dtype(ct).itemsize)   # before scanning indices
    # uint64 indices >= 2**63 would wrap to negatives in the int64 copy below
    if not blocks or indices.dtype == np.uint64:
        _check_indices(indices, vol, out_sp)
    res = _allocate((N, C) + out_sp, ct)
    if not res.size:
        return res.astype(rt, copy=False)
    xc = _flat(A.as_compute(x, ct))
    ic = _flat(np.ascontiguousarray(indices, dtype=np.int64))
    if blocks:
        geo = _geometry(sizes, out_sp, ksize, stride, pads)
        if _pool._max_unpool_blocks(xc, ic, _flat(res), geo, n + 1, N * C,
                                    _rows_per_item(sizes, out_sp), get_num_threads()):
            return res.astype(rt, copy=False)
        _check_indices(indices, vol, out_sp)
    A.check_size((get_num_threads(), (vol + 7) // 8), 1, 'workspace')
    ok = _pool.max_unpool(xc, ic, _flat(res), N * C, math.prod(sizes), vol,
                          get_num_threads())
    if not ok:
        raise MemoryError('ndconv could not allocate its per-thread workspace')
    return res.astype(rt, copy=False)


def _check_indices(indices, vol, out_sp):
    """ValueError naming the first index that is neither -1 nor in [0, vol)."""
    if indices.size:
        low, high = int(indices.min()), int(indices.max())
        if low < -1 or high >= vol:
            bad = np.flatnonzero((indices < -1) | (indices >= vol))[0]
            where = np.unravel_index(bad, indices.shape)
            raise ValueError(
                'indices[%s] = %d is outside the output volume: every index must '
                'be -1 or in [0, %d) (output spatial shape %s)'
                % (', '.join(str(int(w)) for w in where), int(indices[where]),
                   vol, out_sp))


def average_pooling_nd(x, ksize, stride=None, pad=0, pad_value=0):
    """N-dimensional average pooling.

    Parameters
    ----------
    x : ndarray, shape (N, C, D1, ..., Dn)
        Input, float16, float32 or float64.
    ksize : int or sequence of n ints
        Window size; an int applies to every axis.
    stride : int or sequence of n ints, optional
        Window spacing; an int applies to every axis.  Default: ``ksize``.
    pad : int, sequence of n ints, sequence of n (lo, hi) pairs, or 'valid', 'same'
        Padding on each side; ``'same'`` gives TensorFlow's
        ``ceil(D / stride)`` outputs.
    pad_value : 0 or None
        ``0``: padded cells count as zeros and the divisor is always
        ``prod(ksize)``.  ``None``: padded cells are left out of the mean.

    Returns
    -------
    y : ndarray, shape (N, C, O1, ..., On)
        Same dtype as ``x``.

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value (any ``pad_value`` other
        than 0 and None is a ValueError).

    Notes
    -----
    Output size per axis, as `convolution_nd` without ``cover_all``:
    ``(D + lo + hi - ksize) // stride + 1``.  With ``pad_value=None`` a
    window made only of padding (``pad >= ksize``) is ``0 / 0``, NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import average_pooling_nd
    >>> x = np.array([[[2., 4., 6., 8.]]])
    >>> average_pooling_nd(x, 2)
    array([[[3., 7.]]])
    >>> average_pooling_nd(x, 2, pad=1)
    array([[[1., 5., 4.]]])
    >>> average_pooling_nd(x, 2, pad=1, pad_value=None)
    array([[[2., 5., 8.]]])
    """
    x, n, ksize, stride, pads = _window_args(x, ksize, stride, pad, ('valid', 'same'))
    if pad_value is None:
        count_pad = False
    elif (not isinstance(pad_value, (bool, np.bool_, str, bytes))
          and isinstance(pad_value, (int, float, np.integer, np.floating))
          and pad_value == 0):
        count_pad = True
    else:
        raise ValueError('pad_value must be 0 (padding counts as zeros) or None '
                         '(padding left out of the mean), got %r' % (pad_value,))
    sizes = x.shape[2:]
    pads, _ = _pool_pads(pads, sizes, ksize, stride, False)
    out_sp = _pool_out_shape(sizes, ksize, stride, pads, False)
    rt, ct = A.result_dtype(x)
    N, C = x.shape[:2]
    res = _allocate((N, C) + out_sp, ct)
    if res.size:
        geo = _geometry(sizes, out_sp, ksize, stride, pads)
        _pool.avg_pool(_flat(A.as_compute(x, ct)), _flat(res), geo, n + 1, N * C,
                       _rows_per_item(sizes, out_sp), count_pad, get_num_threads())
    return res.astype(rt, copy=False)
