"""ndconv on Dask arrays: the same functions, lazily, chunk by chunk.

Each function here takes a ``dask.array.Array`` laid out as
``(N, C, D1, ..., Dn)``, chunked along any axes, and returns a lazy
``dask.array.Array`` equal to what the in-memory function of ndconv gives
for the computed input (up to the rounding of a different summation
blocking in the convolutions; bitwise in the pooling family).  Nothing is
computed until you call ``.compute()``, ``.store()`` or similar, and each
task holds only one output chunk and the input region it reads, so volumes
larger than memory, or than one worker's memory in a ``distributed``
cluster, go through.

How it works: every output chunk reads a box of the input (its receptive
field).  For each spatial axis the output is cut into chunks that follow
the input's chunks, each output chunk's input box is computed from the
geometry (stride, padding, dilation, input dilation, kernel size), the
input is regrouped so that each box is one chunk (the halo is copied from
the neighbouring chunks, as ``map_overlap`` does), and the in-memory
function of ndconv runs on each box with the padding that puts its output
exactly on the chunk.  Strides, dilations, ``cover_all``, asymmetric and
string pads, ``outsize`` and transposed convolutions are all handled; any
chunking gives the same result, so there is no need to align chunks to
strides.

Batch chunks are processed independently.  The convolutions mix channels,
so their channel axis is merged into one chunk; the pooling family keeps
the channel chunks.  Weights and biases are NumPy arrays (a Dask array is
computed first): they are small and travel with every task.

Needs ``dask[array]`` (and ``distributed`` for a cluster):
``pip install "ndconv[dask]"``.
"""

import functools
import math
import operator

import dask.array as da
import numpy as np

from . import _args as A
from . import conv as _conv_mod

__all__ = [
    'convolution_nd', 'deconvolution_nd', 'max_pooling_nd',
    'average_pooling_nd', 'unpooling_nd', 'max_unpooling_nd',
]


def _pooling():
    from . import pooling
    return pooling


# ----------------------------------------------------------------------------
# Arguments.

def _cdiv(a, b):
    return -(-a // b)


def _as_dask(x, name='x'):
    if not isinstance(x, da.Array):
        if isinstance(x, np.ndarray):
            x = da.from_array(x)
        else:
            x = da.asarray(x)
    if x.ndim < 3:
        raise ValueError('%s must have at least 3 dimensions (N, C, D1, ..., Dn), '
                         'got shape %s' % (name, x.shape))
    for sizes in x.chunks:
        if any(isinstance(c, float) and math.isnan(c) for c in sizes):
            raise ValueError('%s has unknown chunk sizes; call '
                             '%s.compute_chunk_sizes() first' % (name, name))
    return x


def _small(a):
    """A weight or bias: NumPy, or computed when it is a Dask array."""
    if isinstance(a, da.Array):
        return a.compute()
    return a


def _empty_like_input(x, dtype=None):
    """A batch-0 stand-in of ``x`` for a probe call of the in-memory function:
    it validates every argument and gives the result's shape and dtype
    without computing anything."""
    return np.empty((0,) + tuple(x.shape[1:]), x.dtype if dtype is None else dtype)


def _meta(ndim, dtype):
    return np.empty((0,) * ndim, dtype)


# ----------------------------------------------------------------------------
# Geometry of one axis.
#
# "Conv form": input sample p sits at position q = p * r + lo of the padded,
# input-dilated signal; output o reads positions [o * S, o * S + dk - 1].
# Convolutions, transposed convolutions (S = 1, r = stride, lo = dk - 1 - pad)
# and pooling are all of this form.
#
# "Frame form" (unpooling): input p spreads over outputs
# [p * s - lo, p * s - lo + k - 1].

def _out_blocks(in_chunks, size, boundary):
    """Cut ``size`` outputs into chunks at the images of the input's chunk
    boundaries (``boundary(b)`` maps an input boundary to an output index)."""
    bounds = [0]
    b = 0
    for c in in_chunks[:-1]:
        b += c
        ob = min(max(boundary(b), 0), size)
        if ob > bounds[-1]:
            bounds.append(ob)
    if bounds[-1] < size:
        bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:]))


def _conv_axis(D, O, S, dk, r, lo, in_chunks):
    """Per output chunk: (o0, o1), the input region (p0, p1) and the local
    pads (lo_b, hi_b, empty) that make the in-memory call on x[p0:p1] give
    exactly outputs o0..o1-1.  ``empty``: the chunk reads only padding."""
    # Input sample b owns the outputs within half a sample spacing of the
    # middle of those that read it.
    blocks = _out_blocks(in_chunks, O,
                         lambda b: _cdiv(2 * (b * r + lo) - (dk + r - 2), 2 * S))
    plan = []
    for o0, o1 in blocks:
        qa = o0 * S
        qb = (o1 - 1) * S + dk - 1
        p0 = max(0, _cdiv(qa - lo, r))
        p1 = min(D, (qb - lo) // r + 1)
        if p0 < p1:
            plan.append(((o0, o1), (p0, p1),
                         (p0 * r + lo - qa, qb - ((p1 - 1) * r + lo), False)))
        else:
            c = min(max(p0, 0), D - 1)
            plan.append(((o0, o1), (c, c + 1), (0, qb - qa, True)))
    return plan


def _frame_axis(D, O, s, k, lo, in_chunks):
    """Per output chunk: (o0, o1), the input region (p0, p1) whose windows
    cover the chunk, and (crop, empty): the in-memory call on x[p0:p1] with
    no padding gives outputs from p0 * s - lo on, so the chunk starts at
    ``crop`` in it."""
    blocks = _out_blocks(in_chunks, O, lambda b: _cdiv(2 * (b * s - lo) + k - s, 2))
    plan = []
    for o0, o1 in blocks:
        p0 = max(0, min(_cdiv(o0 + lo - k + 1, s), (o0 + lo) // s))
        p1 = min(D, (o1 - 1 + lo) // s + 1)
        if p0 < p1:
            plan.append(((o0, o1), (p0, p1), (o0 - (p0 * s - lo), False)))
        else:
            c = min(max(p0, 0), D - 1)
            plan.append(((o0, o1), (c, c + 1), (0, True)))
    return plan


# ----------------------------------------------------------------------------
# Graph building.

def _regroup(x, axis, regions):
    """``x`` with the given (overlapping) regions of ``axis`` laid side by
    side, one chunk each."""
    bounds = np.cumsum((0,) + x.chunks[axis])
    if all(p0 == bounds[i] and p1 == bounds[i + 1] for i, (p0, p1) in enumerate(regions)) \
            and len(regions) == len(x.chunks[axis]):
        return x
    lead = (slice(None),) * axis
    pieces = [x[lead + (slice(p0, p1),)] for p0, p1 in regions]
    y = pieces[0] if len(pieces) == 1 else da.concatenate(pieces, axis=axis)
    return y.rechunk({axis: tuple(p1 - p0 for p0, p1 in regions)})


def _regroup_all(x, plans):
    for i, plan in enumerate(plans):
        x = _regroup(x, 2 + i, [p[1] for p in plan])
    return x


def _out_chunks(lead, plans):
    return tuple(lead) + tuple(tuple(o1 - o0 for (o0, o1), _, _ in plan) for plan in plans)


def _local(plans, block_id):
    """The per-axis local parameters of one output block."""
    return [plan[i][2] for plan, i in zip(plans, block_id[2:])]


def _prepad(x, pads, O, S, dk, mode):
    """Pad the spatial axes of ``x`` lazily with ``numpy.pad``'s ``mode``
    (reflect, edge, wrap), as wide as the convolution reads (cover_all
    cells included)."""
    for i, ((lo, hi), o, s, k) in enumerate(zip(pads, O, S, dk)):
        axis = 2 + i
        D = x.shape[axis]
        need = max((o - 1) * s + k - D - lo, 0)
        if lo == 0 and need == 0:
            continue
        idx = np.pad(np.arange(D), (lo, max(hi, need)), mode=mode)[:lo + D + need]
        lead = (slice(None),) * axis
        parts = []
        if lo:
            parts.append(x[lead + (idx[:lo],)])
        parts.append(x)
        if need:
            parts.append(x[lead + (idx[lo + D:],)])
        chunks = list(x.chunks[axis])
        chunks[0] += lo
        chunks[-1] += need
        x = da.concatenate(parts, axis=axis).rechunk({axis: tuple(chunks)})
    return x


# ----------------------------------------------------------------------------
# Block functions (module level so that they pickle for distributed).

def _conv_block(xb, W, b, stride, dilate, input_dilate, groups, plans, method='auto',
                block_id=None):
    local = _local(plans, block_id)
    if any(empty for _, _, empty in local):
        xb = np.zeros(xb.shape, xb.dtype)
    pads = tuple((lo, hi) for lo, hi, _ in local)
    return _conv_mod.convolution_nd(xb, W, b, stride, pads, False, dilate, groups,
                                    input_dilate=input_dilate, method=method)


def _global_indices(idx, region_shape, origin, full_shape):
    """Flat indices into a region (-1 kept) as flat indices into the volume."""
    valid = idx >= 0
    local = idx[valid]
    coords = np.unravel_index(local, region_shape)
    flat = np.zeros(local.shape, np.int64)
    for c, p0, D in zip(coords, origin, full_shape):
        flat = flat * D + (c + p0)
    res = np.full(idx.shape, -1, np.int64)
    res[valid] = flat
    return res


def _pool_block(xb, kind, ksize, stride, pad_value, fill, plans, regions, full_shape,
                return_indices, block_id=None):
    local = _local(plans, block_id)
    out_shape = xb.shape[:2] + tuple(
        plan[i][0][1] - plan[i][0][0] for plan, i in zip(plans, block_id[2:]))
    if any(empty for _, _, empty in local):
        value, index = fill
        y = np.full(out_shape, value)
        return (y, np.full(out_shape, index, np.int64)) if return_indices else y
    pads = tuple((lo, hi) for lo, hi, _ in local)
    pooling = _pooling()
    if kind == 'average':
        return pooling.average_pooling_nd(xb, ksize, stride, pads, pad_value=pad_value)
    res = pooling.max_pooling_nd(xb, ksize, stride, pads, cover_all=False,
                                 return_indices=return_indices)
    if not return_indices:
        return res
    y, idx = res
    origin = [reg[i][0] for reg, i in zip(regions, block_id[2:])]
    return y, _global_indices(idx, xb.shape[2:], origin, full_shape)


def _crop_frame(frame, crops, out_shape):
    """Outputs ``crop..crop + L`` of each spatial axis of ``frame``; cells past
    its end are zeros."""
    if all(c + L <= F for c, L, F in zip(crops, out_shape[2:], frame.shape[2:])):
        return np.ascontiguousarray(frame[(Ellipsis,) + tuple(
            slice(c, c + L) for c, L in zip(crops, out_shape[2:]))])
    res = np.zeros(out_shape, frame.dtype)
    src, dst = [], []
    for c, L, F in zip(crops, out_shape[2:], frame.shape[2:]):
        m = max(min(L, F - c), 0)
        src.append(slice(c, c + m))
        dst.append(slice(0, m))
    res[(Ellipsis,) + tuple(dst)] = frame[(Ellipsis,) + tuple(src)]
    return res


def _unpool_block(xb, ksize, stride, dtype, plans, block_id=None):
    local = _local(plans, block_id)
    out_shape = xb.shape[:2] + tuple(
        plan[i][0][1] - plan[i][0][0] for plan, i in zip(plans, block_id[2:]))
    if any(empty for _, empty in local):
        return np.zeros(out_shape, dtype)
    frame = _pooling().unpooling_nd(xb, ksize, stride, 0, cover_all=False)
    return _crop_frame(frame, [c for c, _ in local], out_shape)


def _max_unpool_block(xb, ib, ksize, stride, pads, full_shape, dtype, plans, regions,
                      block_id=None):
    local = _local(plans, block_id)
    out_shape = xb.shape[:2] + tuple(
        plan[i][0][1] - plan[i][0][0] for plan, i in zip(plans, block_id[2:]))
    if any(empty for _, empty in local):
        return np.zeros(out_shape, dtype)
    n = len(ksize)
    ib = np.asarray(ib)
    volume = math.prod(full_shape)
    bad = (ib < -1) | (ib >= volume)
    if bad.any():
        bad = ib[bad].ravel()[0]
        raise ValueError('indices holds %d, outside the output volume of shape %s '
                         '(valid: -1 to %d)' % (bad, tuple(full_shape), volume - 1))
    valid = ib >= 0
    coords = np.unravel_index(ib[valid], full_shape)
    # Position of each valid element along each spatial axis of the region.
    pos = np.nonzero(valid)[2:]
    origin = [reg[i][0] for reg, i in zip(regions, block_id[2:])]
    frame_shape = [s * (m - 1) + k for s, m, k in zip(stride, xb.shape[2:], ksize)]
    flat = np.zeros(coords[0].shape, np.int64)
    for a in range(n):
        rel = coords[a] - ((origin[a] + pos[a]) * stride[a] - pads[a][0])
        if rel.size and (rel.min() < 0 or rel.max() >= ksize[a]):
            raise ValueError(
                'ndconv.dask.max_unpooling_nd needs every index inside the '
                'pooling window of its element (as max_pooling_nd gives them); '
                'an index on spatial axis %d lies outside its window' % a)
        flat = flat * frame_shape[a] + (pos[a] * stride[a] + rel)
    il = np.full(ib.shape, -1, np.int64)
    il[valid] = flat
    frame = _pooling().max_unpooling_nd(xb, il, ksize, stride, 0)
    return _crop_frame(frame, [c for c, _ in local], out_shape)


# ----------------------------------------------------------------------------
# Public functions.

def convolution_nd(x, W, b=None, stride=1, pad=0, cover_all=False, dilate=1,
                   groups=1, *, input_dilate=1, pad_mode='constant', method='auto'):
    """`ndconv.convolution_nd` on a Dask array, lazily.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C_in, D1, ..., Dn)
        Chunked along any axes; the channel axis is merged into one chunk.
        A NumPy array is wrapped in one chunk.
    W, b, stride, pad, cover_all, dilate, groups, input_dilate, pad_mode, method
        As in `ndconv.convolution_nd` (``W`` and ``b`` are NumPy arrays).

    Returns
    -------
    y : dask.array.Array, shape (N, C_out, O1, ..., On)
        Lazy; its spatial chunks follow the input's.

    Raises
    ------
    TypeError, ValueError
        At once, for the same arguments as `ndconv.convolution_nd`.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import ndconv, ndconv.dask
    >>> x = np.arange(64.0).reshape(1, 1, 8, 8)
    >>> W = np.ones((1, 1, 3, 3))
    >>> y = ndconv.dask.convolution_nd(da.from_array(x, chunks=4), W, pad=1, stride=2)
    >>> y.shape, y.chunks[2:]
    ((1, 1, 4, 4), ((2, 2), (2, 2)))
    >>> np.array_equal(y.compute(), ndconv.convolution_nd(x, W, pad=1, stride=2))
    True
    """
    x = _as_dask(x)
    W = _small(W)
    b = _small(b)
    probe = _conv_mod.convolution_nd(
        _empty_like_input(x), W, b, stride, pad, cover_all, dilate, groups,
        input_dilate=input_dilate, pad_mode=pad_mode, method=method)
    n = x.ndim - 2
    W = np.asarray(W)
    ksize = W.shape[2:]
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    input_dilate = A.int_tuple(input_dilate, n, 'input_dilate')
    pads = A.pad_spec(pad, n, ('valid', 'same', 'full'))
    if isinstance(pads, str):
        pads = A.string_pads(pads, x.shape[2:], ksize, stride, dilate, input_dilate)
    O = probe.shape[2:]
    dk = [A.extent(k, d) for k, d in zip(ksize, dilate)]
    x = x.rechunk({1: -1})
    if pad_mode != 'constant':
        x = _prepad(x, pads, O, stride, dk, pad_mode)
        pads = ((0, 0),) * n
    plans = [_conv_axis(x.shape[2 + i], O[i], stride[i], dk[i], input_dilate[i],
                        pads[i][0], x.chunks[2 + i]) for i in range(n)]
    xr = _regroup_all(x, plans)
    fn = functools.partial(_conv_block, W=W, b=b, stride=stride, dilate=dilate,
                           input_dilate=input_dilate, groups=groups, plans=plans,
                           method=method)
    return da.map_blocks(fn, xr, chunks=_out_chunks((x.chunks[0], (probe.shape[1],)), plans),
                         dtype=probe.dtype, meta=_meta(x.ndim, probe.dtype))


def deconvolution_nd(x, W, b=None, stride=1, pad=0, outsize=None, dilate=1, groups=1,
                     *, method='auto'):
    """`ndconv.deconvolution_nd` (transposed convolution) on a Dask array, lazily.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C_in, D1, ..., Dn)
        Chunked along any axes; the channel axis is merged into one chunk.
    W, b, stride, pad, outsize, dilate, groups, method
        As in `ndconv.deconvolution_nd`.

    Returns
    -------
    y : dask.array.Array, shape (N, C_out, O1, ..., On)
        Lazy; its spatial chunks are about ``stride`` times the input's.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import ndconv, ndconv.dask
    >>> x = np.arange(36.0).reshape(1, 1, 6, 6)
    >>> W = ndconv.linear_upsampling_kernel(2, 2, 1, dtype=np.float64)
    >>> y = ndconv.dask.deconvolution_nd(da.from_array(x, chunks=3), W, stride=2, pad=1)
    >>> y.shape, y.chunks[2:]
    ((1, 1, 12, 12), ((6, 6), (6, 6)))
    >>> np.allclose(y.compute(), ndconv.deconvolution_nd(x, W, stride=2, pad=1))
    True
    """
    x = _as_dask(x)
    W = _small(W)
    b = _small(b)
    probe = _conv_mod.deconvolution_nd(_empty_like_input(x), W, b, stride, pad,
                                       outsize, dilate, groups, method=method)
    n = x.ndim - 2
    W = np.asarray(W)
    C_in, cog = W.shape[:2]
    ksize = W.shape[2:]
    g = int(groups)
    cig = C_in // g
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    pads = A.pad_spec(pad, n, ('valid', 'same'))
    if isinstance(pads, str):
        pads = A.deconv_string_pads(pads, ksize, stride, dilate)
    # The adjoint as a correlation: the input dilated by the stride, the
    # kernel flipped, in and out channels swapped within each group.
    Wc = W.reshape((g, cig, cog) + ksize).swapaxes(1, 2).reshape((g * cog, cig) + ksize)
    Wc = np.ascontiguousarray(Wc[(slice(None),) * 2 + (slice(None, None, -1),) * n])
    O = probe.shape[2:]
    dk = [A.extent(k, d) for k, d in zip(ksize, dilate)]
    x = x.rechunk({1: -1})
    plans = [_conv_axis(x.shape[2 + i], O[i], 1, dk[i], stride[i], dk[i] - 1 - pads[i][0],
                        x.chunks[2 + i]) for i in range(n)]
    xr = _regroup_all(x, plans)
    fn = functools.partial(_conv_block, W=Wc, b=b, stride=1, dilate=dilate,
                           input_dilate=stride, groups=g, plans=plans, method=method)
    return da.map_blocks(fn, xr, chunks=_out_chunks((x.chunks[0], (probe.shape[1],)), plans),
                         dtype=probe.dtype, meta=_meta(x.ndim, probe.dtype))


def _pool_geometry(x, ksize, stride, pad, strings):
    n = x.ndim - 2
    ksize = A.int_tuple(ksize, n, 'ksize')
    stride = ksize if stride is None else A.int_tuple(stride, n, 'stride')
    pads = A.pad_spec(pad, n, strings)
    if isinstance(pads, str):
        pads = A.string_pads(pads, x.shape[2:], ksize, stride, (1,) * n, (1,) * n)
    return ksize, stride, pads


def _pool(kind, x, ksize, stride, pad, cover_all, pad_value, return_indices):
    pooling = _pooling()
    x = _as_dask(x)
    n = x.ndim - 2
    if kind == 'max':
        probe = pooling.max_pooling_nd(_empty_like_input(x), ksize, stride, pad,
                                       cover_all, return_indices=False)
    else:
        probe = pooling.average_pooling_nd(_empty_like_input(x), ksize, stride, pad,
                                           pad_value=pad_value)
    ksize, stride, pads = _pool_geometry(x, ksize, stride, pad, ('valid', 'same'))
    O = probe.shape[2:]
    plans = [_conv_axis(x.shape[2 + i], O[i], stride[i], ksize[i], 1, pads[i][0],
                        x.chunks[2 + i]) for i in range(n)]
    fill = None
    if any(p[2][2] for plan in plans for p in plan):
        # What the in-memory function gives for a window of padding only.
        one = np.zeros((1, 1, 1), probe.dtype)
        if kind == 'max':
            v, i = pooling.max_pooling_nd(one, 1, 1, ((0, 1),), cover_all=False,
                                          return_indices=True)
            fill = (v[0, 0, 1], int(i[0, 0, 1]))
        else:
            v = pooling.average_pooling_nd(one, 1, 1, ((0, 1),), pad_value=pad_value)
            fill = (v[0, 0, 1], -1)
    xr = _regroup_all(x, plans)
    fn = functools.partial(_pool_block, kind=kind, ksize=ksize, stride=stride,
                           pad_value=pad_value, fill=fill, plans=plans,
                           regions=[[p[1] for p in plan] for plan in plans],
                           full_shape=tuple(x.shape[2:]),
                           return_indices=return_indices)
    chunks = _out_chunks(x.chunks[:2], plans)
    meta = _meta(x.ndim, probe.dtype)
    if not return_indices:
        return da.map_blocks(fn, xr, chunks=chunks, dtype=probe.dtype, meta=meta)
    pair = da.map_blocks(fn, xr, chunks=chunks, dtype=probe.dtype, meta=meta)
    y = pair.map_blocks(operator.itemgetter(0), dtype=probe.dtype, meta=meta)
    idx = pair.map_blocks(operator.itemgetter(1), dtype=np.int64,
                          meta=_meta(x.ndim, np.int64))
    return y, idx


def max_pooling_nd(x, ksize, stride=None, pad=0, cover_all=True, return_indices=False):
    """`ndconv.max_pooling_nd` on a Dask array, lazily.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C, D1, ..., Dn)
        Chunked along any axes (batch and channel chunks are kept).
    ksize, stride, pad, cover_all, return_indices
        As in `ndconv.max_pooling_nd`.

    Returns
    -------
    y : dask.array.Array
    indices : dask.array.Array of int64, only with ``return_indices=True``
        Flat indices into each ``(n, c)`` input volume, as in memory.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import ndconv, ndconv.dask
    >>> x = np.random.default_rng(0).random((1, 2, 9, 9))
    >>> y, i = ndconv.dask.max_pooling_nd(da.from_array(x, chunks=4), 3, 2, 1,
    ...                                   return_indices=True)
    >>> y0, i0 = ndconv.max_pooling_nd(x, 3, 2, 1, return_indices=True)
    >>> np.array_equal(y.compute(), y0), np.array_equal(i.compute(), i0)
    (True, True)
    """
    return _pool('max', x, ksize, stride, pad, cover_all, 0, return_indices)


def average_pooling_nd(x, ksize, stride=None, pad=0, pad_value=0):
    """`ndconv.average_pooling_nd` on a Dask array, lazily.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C, D1, ..., Dn)
    ksize, stride, pad, pad_value
        As in `ndconv.average_pooling_nd`.

    Returns
    -------
    y : dask.array.Array

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import ndconv, ndconv.dask
    >>> x = np.arange(36.0).reshape(1, 1, 6, 6)
    >>> y = ndconv.dask.average_pooling_nd(da.from_array(x, chunks=3), 2)
    >>> y.compute()[0, 0]
    array([[ 3.5,  5.5,  7.5],
           [15.5, 17.5, 19.5],
           [27.5, 29.5, 31.5]])
    """
    return _pool('average', x, ksize, stride, pad, False, pad_value, False)


def unpooling_nd(x, ksize, stride=None, pad=0, outsize=None, cover_all=True):
    """`ndconv.unpooling_nd` on a Dask array, lazily.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C, D1, ..., Dn)
    ksize, stride, pad, outsize, cover_all
        As in `ndconv.unpooling_nd`.

    Returns
    -------
    y : dask.array.Array

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import ndconv, ndconv.dask
    >>> x = np.arange(4.0).reshape(1, 1, 4)
    >>> ndconv.dask.unpooling_nd(da.from_array(x, chunks=2), 2, cover_all=False).compute()
    array([[[0., 0., 1., 1., 2., 2., 3., 3.]]])
    """
    pooling = _pooling()
    x = _as_dask(x)
    n = x.ndim - 2
    probe = pooling.unpooling_nd(_empty_like_input(x), ksize, stride, pad, outsize,
                                 cover_all)
    ksize = A.int_tuple(ksize, n, 'ksize')
    stride = ksize if stride is None else A.int_tuple(stride, n, 'stride')
    pads = A.pad_spec(pad, n)
    O = probe.shape[2:]
    plans = [_frame_axis(x.shape[2 + i], O[i], stride[i], ksize[i], pads[i][0],
                         x.chunks[2 + i]) for i in range(n)]
    xr = _regroup_all(x, plans)
    fn = functools.partial(_unpool_block, ksize=ksize, stride=stride, dtype=probe.dtype,
                           plans=plans)
    return da.map_blocks(fn, xr, chunks=_out_chunks(x.chunks[:2], plans),
                         dtype=probe.dtype, meta=_meta(x.ndim, probe.dtype))


def max_unpooling_nd(x, indices, ksize, stride=None, pad=0, outsize=None):
    """`ndconv.max_unpooling_nd` on Dask arrays, lazily.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C, D1, ..., Dn)
    indices : dask.array.Array of int64, the shape of ``x``
        As ``max_pooling_nd(..., return_indices=True)`` gives them (rechunked
        like ``x``).  Each index must lie inside the pooling window of its
        element (a ``ValueError`` at compute time otherwise): that is what
        lets each output chunk read only its neighbourhood.
    ksize, stride, pad, outsize
        As in `ndconv.max_unpooling_nd`.

    Returns
    -------
    y : dask.array.Array

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import ndconv, ndconv.dask
    >>> x = da.from_array(np.random.default_rng(0).random((1, 1, 8, 8)), chunks=4)
    >>> y, i = ndconv.dask.max_pooling_nd(x, 2, return_indices=True)
    >>> z = ndconv.dask.max_unpooling_nd(y, i, 2)
    >>> z.shape, bool((z == x).sum() == 16)
    ((1, 1, 8, 8), True)
    """
    pooling = _pooling()
    x = _as_dask(x)
    indices = _as_dask(indices, 'indices')
    n = x.ndim - 2
    probe = pooling.max_unpooling_nd(
        _empty_like_input(x), _empty_like_input(indices), ksize, stride, pad, outsize)
    if indices.shape != x.shape:
        raise ValueError('indices must have the shape of x %s, got %s'
                         % (x.shape, indices.shape))
    ksize = A.int_tuple(ksize, n, 'ksize')
    stride = ksize if stride is None else A.int_tuple(stride, n, 'stride')
    pads = A.pad_spec(pad, n)
    O = probe.shape[2:]
    indices = indices.rechunk(x.chunks)
    plans = [_frame_axis(x.shape[2 + i], O[i], stride[i], ksize[i], pads[i][0],
                         x.chunks[2 + i]) for i in range(n)]
    regions = [[p[1] for p in plan] for plan in plans]
    xr = _regroup_all(x, plans)
    ir = _regroup_all(indices, plans)
    fn = functools.partial(_max_unpool_block, ksize=ksize, stride=stride, pads=pads,
                           full_shape=tuple(O), dtype=probe.dtype, plans=plans,
                           regions=regions)
    return da.map_blocks(fn, xr, ir, chunks=_out_chunks(x.chunks[:2], plans),
                         dtype=probe.dtype, meta=_meta(x.ndim, probe.dtype))
