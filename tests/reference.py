"""Slow, obviously correct NumPy references for the convolution family.

Nothing here imports ndconv: every rule of API.md (pad forms, output sizes,
``'same'`` padding, ``cover_all``, ``input_dilate``) is written again from the
contract, as plainly as possible, so the tests judge ndconv against an
independent implementation.  Everything is computed in float64.

- `conv_nd_ref` materialises the input dilation (zeros inserted), pads with
  ``numpy.pad`` and loops over the kernel offsets, one strided slab per
  offset and an einsum over the channels of each group.
- `deconv_nd_ref` is a scatter-add loop over the input cells:
  ``y[p * s + t * d - lo] += W[..., t] * x[..., p]`` into an output of the
  requested size (contributions past either end are dropped).
- `conv_grad_w_ref` loops over the output cells and adds the outer product
  of the output gradient with the input window under that cell.
"""

import itertools

import numpy as np


# ----------------------------------------------------------------------------
# Argument forms.

def ntuple(value, n):
    """An int or a sequence of ``n`` ints, as a tuple of ``n`` Python ints."""
    if isinstance(value, (tuple, list, np.ndarray)):
        out = tuple(int(v) for v in value)
        if len(out) != n:
            raise ValueError('expected %d values, got %r' % (n, value))
        return out
    return (int(value),) * n


def pad_pairs(pad, n):
    """An int, ``n`` ints or ``n`` (lo, hi) pairs, as ``n`` (lo, hi) pairs."""
    if isinstance(pad, (tuple, list)):
        if len(pad) != n:
            raise ValueError('expected %d pad entries, got %r' % (n, pad))
        pairs = []
        for item in pad:
            if isinstance(item, (tuple, list)):
                lo, hi = item
                pairs.append((int(lo), int(hi)))
            else:
                pairs.append((int(item), int(item)))
        return tuple(pairs)
    return ((int(pad), int(pad)),) * n


def extent(k, d):
    """Span of ``k`` kernel taps ``d`` apart."""
    return (k - 1) * d + 1


def dilated_size(D, r):
    """Length of an axis of ``D`` samples with ``r - 1`` zeros between them."""
    return (D - 1) * r + 1


# ----------------------------------------------------------------------------
# Output sizes, straight from the formulas of API.md.

def conv_same_pair(D, k, s, d, r):
    """TensorFlow's 'same': ceil(D'/s) outputs, the odd cell on the high side."""
    Dd = dilated_size(D, r)
    o = (Dd + s - 1) // s
    total = max((o - 1) * s + extent(k, d) - Dd, 0)
    return (total // 2, total - total // 2)


def conv_pads(pad, in_shape, ksize, stride=1, dilate=1, input_dilate=1):
    """``((lo, hi), ...)`` and whether ``pad`` was a string (cover_all then off)."""
    n = len(in_shape)
    ksize, stride = ntuple(ksize, n), ntuple(stride, n)
    dilate, input_dilate = ntuple(dilate, n), ntuple(input_dilate, n)
    if isinstance(pad, str):
        if pad == 'valid':
            pairs = ((0, 0),) * n
        elif pad == 'full':
            pairs = tuple((extent(k, d) - 1, extent(k, d) - 1)
                          for k, d in zip(ksize, dilate))
        elif pad == 'same':
            pairs = tuple(conv_same_pair(*a) for a in
                          zip(in_shape, ksize, stride, dilate, input_dilate))
        else:
            raise ValueError(pad)
        return pairs, True
    return pad_pairs(pad, n), False


def conv_axis_out(D, k, s, lo, hi, cover_all=False, d=1, r=1):
    span = dilated_size(D, r) + lo + hi - extent(k, d)
    if cover_all:
        return (span + s - 1) // s + 1
    return span // s + 1


def conv_out_shape(in_shape, ksize, stride=1, pad=0, cover_all=False, dilate=1,
                   input_dilate=1):
    n = len(in_shape)
    pairs, is_str = conv_pads(pad, in_shape, ksize, stride, dilate, input_dilate)
    if is_str:
        cover_all = False
    return tuple(conv_axis_out(D, k, s, lo, hi, cover_all, d, r) for
                 D, k, s, (lo, hi), d, r in
                 zip(in_shape, ntuple(ksize, n), ntuple(stride, n), pairs,
                     ntuple(dilate, n), ntuple(input_dilate, n)))


def deconv_pads(pad, ksize, stride=1, dilate=1):
    """``(lo, hi)`` pairs of a transposed convolution's pad, and whether it
    was ``'same'`` (which fixes the output at ``D * stride``)."""
    n = len(ksize)
    stride, dilate = ntuple(stride, n), ntuple(dilate, n)
    if pad == 'valid':
        return ((0, 0),) * n, False
    if pad == 'same':
        pairs = []
        for k, s, d in zip(ksize, stride, dilate):
            total = max(extent(k, d) - s, 0)
            pairs.append((total // 2, total - total // 2))
        return tuple(pairs), True
    if isinstance(pad, str):
        raise ValueError(pad)
    return pad_pairs(pad, n), False


def deconv_axis_out(D, k, s, lo, hi, d=1):
    return s * (D - 1) + extent(k, d) - lo - hi


def deconv_out_shape(in_shape, ksize, stride=1, pad=0, dilate=1):
    """Default output shape of the transposed convolution."""
    n = len(in_shape)
    ksize, stride, dilate = ntuple(ksize, n), ntuple(stride, n), ntuple(dilate, n)
    pairs, same = deconv_pads(pad, ksize, stride, dilate)
    if same:
        return tuple(D * s for D, s in zip(in_shape, stride))
    return tuple(deconv_axis_out(D, k, s, lo, hi, d) for D, k, s, (lo, hi), d
                 in zip(in_shape, ksize, stride, pairs, dilate))


def deconv_outsize_range(D, k, s, lo, hi, d=1):
    """Every output size O (one axis) that a convolution, with or without
    cover_all, maps back to D: ``[default - s + 1, default + s - 1]``, at
    least 1."""
    default = deconv_axis_out(D, k, s, lo, hi, d)
    return max(default - s + 1, 1), default + s - 1


# ----------------------------------------------------------------------------
# Input preparation.

def dilate_input(x, input_dilate):
    """Insert ``r - 1`` zeros between neighbouring samples on each spatial axis."""
    n = x.ndim - 2
    r = ntuple(input_dilate, n)
    shape = x.shape[:2] + tuple(dilated_size(D, ri) for D, ri in zip(x.shape[2:], r))
    xd = np.zeros(shape, x.dtype)
    xd[(slice(None), slice(None)) + tuple(slice(None, None, ri) for ri in r)] = x
    return xd


def padded_input(x, in_shape_out, ksize, stride, pairs, dilate, input_dilate,
                 pad_mode='constant'):
    """The dilated input padded with ``numpy.pad``; the high side grows by
    whatever extra cells the output shape ``in_shape_out`` needs (cover_all),
    in the same ``numpy.pad`` call so they are padding like any other."""
    xd = dilate_input(x, input_dilate)
    widths = [(0, 0), (0, 0)]
    for a, (O, k, s, (lo, hi), d) in enumerate(
            zip(in_shape_out, ksize, stride, pairs, dilate)):
        have = xd.shape[2 + a] + lo + hi
        need = (O - 1) * s + extent(k, d)
        widths.append((lo, hi + max(need - have, 0)))
    if pad_mode == 'constant':
        return np.pad(xd, widths, mode='constant')
    return np.pad(xd, widths, mode=pad_mode)


# ----------------------------------------------------------------------------
# References.

def conv_nd_ref(x, W, b=None, stride=1, pads=0, dilate=1, input_dilate=1,
                pad_mode='constant', cover_all=False, groups=1):
    """Convolution (cross-correlation) of x (N, C_in, D...) with
    W (C_out, C_in // groups, k...), in float64."""
    x = np.asarray(x, np.float64)
    W = np.asarray(W, np.float64)
    n = x.ndim - 2
    N, C_in = x.shape[:2]
    C_out = W.shape[0]
    ksize = W.shape[2:]
    stride, dilate = ntuple(stride, n), ntuple(dilate, n)
    input_dilate = ntuple(input_dilate, n)
    pairs, is_str = conv_pads(pads, x.shape[2:], ksize, stride, dilate, input_dilate)
    if is_str:
        cover_all = False
    out_shape = tuple(conv_axis_out(D, k, s, lo, hi, cover_all, d, r) for
                      D, k, s, (lo, hi), d, r in
                      zip(x.shape[2:], ksize, stride, pairs, dilate, input_dilate))
    assert min(out_shape) >= 1, out_shape
    xp = padded_input(x, out_shape, ksize, stride, pairs, dilate, input_dilate,
                      pad_mode)
    cig, cog = C_in // groups, C_out // groups
    y = np.zeros((N, C_out) + out_shape)
    for t in itertools.product(*[range(k) for k in ksize]):
        slab = xp[(slice(None), slice(None)) + tuple(
            slice(ti * d, ti * d + (O - 1) * s + 1, s)
            for ti, d, O, s in zip(t, dilate, out_shape, stride))]
        assert slab.shape[2:] == out_shape
        for g in range(groups):
            w = W[(slice(g * cog, (g + 1) * cog), slice(None)) + t]
            y[:, g * cog:(g + 1) * cog] += np.einsum(
                'nc...,oc->no...', slab[:, g * cig:(g + 1) * cig], w)
    if b is not None:
        y += np.asarray(b, np.float64).reshape((1, C_out) + (1,) * n)
    return y


def deconv_nd_ref(x, W, b=None, stride=1, pads=0, outsize=None, dilate=1, groups=1):
    """Transposed convolution of x (N, C_in, D...) with W (C_in, C_out //
    groups, k...), in float64, as a scatter-add over the input cells."""
    x = np.asarray(x, np.float64)
    W = np.asarray(W, np.float64)
    n = x.ndim - 2
    N, C_in = x.shape[:2]
    ksize = W.shape[2:]
    cig, cog = C_in // groups, W.shape[1]
    C_out = cog * groups
    stride, dilate = ntuple(stride, n), ntuple(dilate, n)
    pairs, same = deconv_pads(pads, ksize, stride, dilate)
    if outsize is None:
        outsize = deconv_out_shape(x.shape[2:], ksize, stride, pads, dilate)
    outsize = tuple(int(o) for o in outsize)
    y = np.zeros((N, C_out) + outsize)
    for p in np.ndindex(*x.shape[2:]):
        where, keep = [], []
        for a in range(n):
            pos = p[a] * stride[a] + np.arange(ksize[a]) * dilate[a] - pairs[a][0]
            ok = (pos >= 0) & (pos < outsize[a])
            where.append(pos[ok])
            keep.append(np.nonzero(ok)[0])
        if any(len(w) == 0 for w in where):
            continue
        for g in range(groups):
            xv = x[(slice(None), slice(g * cig, (g + 1) * cig)) + p]      # (N, cig)
            Wg = W[g * cig:(g + 1) * cig][(slice(None), slice(None)) + np.ix_(*keep)]
            contrib = np.tensordot(xv, Wg, axes=(1, 0))                  # (N, cog, k...)
            idx = (slice(None), slice(g * cog, (g + 1) * cog)) + np.ix_(*where)
            y[idx] += contrib
    if b is not None:
        y += np.asarray(b, np.float64).reshape((1, C_out) + (1,) * n)
    return y


def conv_grad_w_ref(x, gy, ksize, stride=1, pads=0, cover_all=False, dilate=1,
                    groups=1, input_dilate=1):
    """Gradient of sum(conv(x, W) * gy) with respect to W, in float64, as a
    loop over the output cells (outer product of gy with the input window)."""
    x = np.asarray(x, np.float64)
    gy = np.asarray(gy, np.float64)
    n = x.ndim - 2
    N, C_in = x.shape[:2]
    C_out = gy.shape[1]
    ksize, stride = ntuple(ksize, n), ntuple(stride, n)
    dilate, input_dilate = ntuple(dilate, n), ntuple(input_dilate, n)
    pairs, is_str = conv_pads(pads, x.shape[2:], ksize, stride, dilate, input_dilate)
    out_shape = gy.shape[2:]
    xp = padded_input(x, out_shape, ksize, stride, pairs, dilate, input_dilate)
    cig, cog = C_in // groups, C_out // groups
    gW = np.zeros((C_out, cig) + ksize)
    for o in np.ndindex(*out_shape):
        window = xp[(slice(None), slice(None)) + tuple(
            slice(oi * s, oi * s + extent(k, d), d)
            for oi, s, k, d in zip(o, stride, ksize, dilate))]
        for g in range(groups):
            gW[g * cog:(g + 1) * cog] += np.einsum(
                'no,nc...->oc...', gy[(slice(None), slice(g * cog, (g + 1) * cog)) + o],
                window[:, g * cig:(g + 1) * cig])
    return gW
