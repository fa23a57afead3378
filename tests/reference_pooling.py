"""Slow, obviously correct NumPy references for the pooling family.

Plain loops over output cells and window taps; every function takes already
normalised per-axis tuples (``ksize``, ``stride``) and ``(lo, hi)`` pad
pairs, works in float64 and never imports ndconv.
"""

import itertools

import numpy as np


# ----------------------------------------------------------------------------
# Sizes, one axis at a time.

def pool_size(D, k, s, lo, hi, cover_all):
    """Chainer's get_conv_outsize with asymmetric padding."""
    span = D + lo + hi - k
    if cover_all:
        span += s - 1
    return span // s + 1


def unpool_size(D, k, s, lo, hi, cover_all):
    """Chainer's get_deconv_outsize with asymmetric padding."""
    size = s * (D - 1) + k - lo - hi
    if cover_all:
        size -= s - 1
    return size


def tf_same_pads(D, k, s):
    """TensorFlow's 'same': ceil(D / s) outputs, the odd cell on the high side."""
    out = -(-D // s)
    total = max((out - 1) * s + k - D, 0)
    return (total // 2, total - total // 2)


def _window_cells(o, sizes, ksize, stride, pads):
    """Flat (C order) input indices of the window of output cell ``o`` that
    fall inside the input, in C order of the window."""
    cells = []
    for t in itertools.product(*[range(k) for k in ksize]):
        i = tuple(oa * s + ta - lo for oa, s, ta, (lo, _)
                  in zip(o, stride, t, pads))
        if all(0 <= ia < D for ia, D in zip(i, sizes)):
            cells.append(int(np.ravel_multi_index(i, sizes)))
    return cells


# ----------------------------------------------------------------------------
# Pooling.

def max_pool(x, ksize, stride, pads, cover_all):
    """Max pooling: returns (values, flat indices), -inf / -1 for a window
    of padding only; first maximum in C order wins, a NaN beats everything
    and the first NaN wins."""
    x = np.asarray(x, np.float64)
    N, C = x.shape[:2]
    sizes = x.shape[2:]
    out = tuple(pool_size(D, k, s, lo, hi, cover_all)
                for D, k, s, (lo, hi) in zip(sizes, ksize, stride, pads))
    flat = x.reshape(N * C, -1)
    y = np.empty((N * C,) + out)
    idx = np.empty((N * C,) + out, np.int64)
    for o in itertools.product(*[range(m) for m in out]):
        cells = _window_cells(o, sizes, ksize, stride, pads)
        for r in range(N * C):
            best, where = -np.inf, -1
            for c in cells:
                v = flat[r, c]
                if where < 0:
                    best, where = v, c
                elif np.isnan(best):
                    break
                elif np.isnan(v) or v > best:
                    best, where = v, c
            y[(r,) + o] = best
            idx[(r,) + o] = where
    return y.reshape((N, C) + out), idx.reshape((N, C) + out)


def avg_pool(x, ksize, stride, pads, count_pad):
    """Average pooling without cover_all; the divisor is prod(ksize)
    (``count_pad``) or the number of input cells in the window."""
    x = np.asarray(x, np.float64)
    N, C = x.shape[:2]
    sizes = x.shape[2:]
    out = tuple(pool_size(D, k, s, lo, hi, False)
                for D, k, s, (lo, hi) in zip(sizes, ksize, stride, pads))
    flat = x.reshape(N * C, -1)
    y = np.empty((N * C,) + out)
    with np.errstate(invalid='ignore', divide='ignore'):
        for o in itertools.product(*[range(m) for m in out]):
            cells = _window_cells(o, sizes, ksize, stride, pads)
            total = flat[:, cells].sum(axis=1)
            div = float(np.prod(ksize)) if count_pad else float(len(cells))
            y[(slice(None),) + o] = total / div
    return y.reshape((N, C) + out)


def sum_pool(x, ksize, stride, pads, cover_all):
    """Sum of the input cells of each window (padding counts as zero)."""
    x = np.asarray(x, np.float64)
    N, C = x.shape[:2]
    sizes = x.shape[2:]
    out = tuple(pool_size(D, k, s, lo, hi, cover_all)
                for D, k, s, (lo, hi) in zip(sizes, ksize, stride, pads))
    flat = x.reshape(N * C, -1)
    y = np.zeros((N * C,) + out)
    for o in itertools.product(*[range(m) for m in out]):
        cells = _window_cells(o, sizes, ksize, stride, pads)
        y[(slice(None),) + o] = flat[:, cells].sum(axis=1)
    return y.reshape((N, C) + out)


# ----------------------------------------------------------------------------
# Unpooling.

def unpool(x, ksize, stride, pads, outsize):
    """Chainer's unpooling: each input adds itself to its whole window of the
    unpadded full signal, which is then cut from ``lo`` to ``lo + outsize``
    (zeros past its end)."""
    x = np.asarray(x, np.float64)
    N, C = x.shape[:2]
    sizes = x.shape[2:]
    n = len(sizes)
    full = tuple(max(s * (D - 1) + k, lo + O) for D, k, s, (lo, _), O
                 in zip(sizes, ksize, stride, pads, outsize))
    buf = np.zeros((N, C) + full)
    for i in itertools.product(*[range(D) for D in sizes]):
        window = tuple(slice(ia * s, ia * s + k) for ia, s, k in zip(i, stride, ksize))
        value = x[(slice(None), slice(None)) + i].reshape((N, C) + (1,) * n)
        buf[(slice(None), slice(None)) + window] += value
    cut = tuple(slice(lo, lo + O) for (lo, _), O in zip(pads, outsize))
    return buf[(slice(None), slice(None)) + cut]


def max_unpool(x, indices, outsize):
    """Each value written at its flat index in a zero output, in C order of
    ``x``; a cell named again keeps the larger value (a NaN beats numbers,
    the first of equals stays); -1 is skipped."""
    x = np.asarray(x, np.float64)
    N, C = x.shape[:2]
    vol = int(np.prod(outsize))
    xs = x.reshape(N * C, -1)
    ids = np.asarray(indices).reshape(N * C, -1)
    y = np.zeros((N * C, vol))
    for r in range(N * C):
        written = set()
        for v, i in zip(xs[r], ids[r]):
            i = int(i)
            if i == -1:
                continue
            if i not in written:
                written.add(i)
                y[r, i] = v
            elif not np.isnan(y[r, i]) and (np.isnan(v) or v > y[r, i]):
                y[r, i] = v
    return y.reshape((N, C) + tuple(outsize))


# ----------------------------------------------------------------------------
# Upsampling.

def linear_profile(factor):
    """FCN's upsample_filt: size 2f - f % 2, centre (size - 1) / 2."""
    size = 2 * factor - factor % 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    return np.array([1 - abs(t - centre) / factor for t in range(size)])
