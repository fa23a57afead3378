"""The ndconv benchmark suite: ndconv against its peers, side by side.

One command runs it (``python benchmarks/run.py``, see ``benchmarks/README.md``);
from Python, `run` returns one dict per (case, implementation), `machine`
returns the header facts, and `format_header` / `format_table` render them.

For every case the inputs are fixed and seeded.  Each implementation (ndconv
and every installed peer: PyTorch CPU, scipy.ndimage, scipy.signal's FFT
convolutions, a NumPy reference) is called once and its output checked
against ndconv's *before* anything is timed; a peer that disagrees is
reported and not timed.  After one more warm-up call each, the
implementations are timed interleaved (ndconv, peer 1, peer 2, ndconv, ...)
``repeat`` times and the median is reported, with

* GFLOP/s for convolutions: ``2 * MACs / time``, where MACs counts only the
  multiply-adds of a weight with a real input sample (products with padding
  or with the zeros of ``input_dilate`` / a transposed convolution's stride
  are not counted, so every implementation is credited with the same work);
* GB/s for pooling: bytes of the inputs read plus bytes of the outputs
  written, once each;
* the ratio of the time to the fastest agreeing peer's time (below 1: faster
  than every peer), and the geometric mean of ndconv's ratios;
* optionally (``memory=``) the peak extra memory of one call, measured in a
  fresh subprocess after the inputs are allocated;
* with more than one thread, ndconv's speed-up: ndconv is also timed at 1
  thread, as one more function of the same interleaved loop (not a peer);
* with `machine`'s facts, the percent of this machine's limit: the rate over
  the NumPy float32 GEMM GFLOP/s (convolutions) or copy GB/s (pooling), both
  timed in the same run the way the calls are;
* after the table, which cases miss the performance targets
  (`format_targets`).

Nothing heavy is imported with this module: PyTorch and SciPy are imported
inside the peers that use them, and a peer that cannot be imported is
skipped.
"""

import contextlib
import fnmatch
import gc
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import zlib

import numpy as np

__all__ = ['CASES', 'case_names', 'run', 'machine', 'format_header',
           'format_table', 'format_targets', 'limit_fraction', 'geomean_ratio',
           'main']

_MIB = float(1 << 20)


# ----------------------------------------------------------------------------
# Small helpers.

def _pkg():
    """The ndconv package (imported here, not at module import)."""
    import importlib
    return importlib.import_module(__package__ or 'ndconv')


def _rng(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def _randn(rng, shape, dtype, scale=1.0):
    a = rng.standard_normal(shape, dtype=np.float64) * scale
    return a.astype(dtype)


def _axis_taps(size, out, k, stride=1, lo=0, dilate=1, input_dilate=1):
    """(output cell, kernel tap) pairs of one axis that read a real sample."""
    last = (size - 1) * input_dilate
    n = 0
    for o in range(out):
        for t in range(k):
            u = o * stride + t * dilate - lo
            if 0 <= u <= last and u % input_dilate == 0:
                n += 1
    return n


def _conv_macs(N, cin, cout, in_sp, ksize, out_sp, stride=None, lo=None,
               dilate=None, input_dilate=None):
    """Real multiply-adds of a correlation (no padding, no inserted zeros)."""
    n = len(in_sp)
    stride = stride or (1,) * n
    lo = lo or (0,) * n
    dilate = dilate or (1,) * n
    input_dilate = input_dilate or (1,) * n
    taps = 1
    for i in range(n):
        taps *= _axis_taps(in_sp[i], out_sp[i], ksize[i], stride[i], lo[i],
                           dilate[i], input_dilate[i])
    return N * cout * cin * taps


def _deconv_macs(N, cin, cout, in_sp, ksize, out_sp, stride, lo):
    """Real multiply-adds of a transposed convolution, cropped outputs excluded."""
    # The adjoint is a correlation of the stride-dilated input with the
    # flipped kernel and padding dk - 1 - lo (same tap count when flipped).
    lo2 = tuple(k - 1 - p for k, p in zip(ksize, lo))
    return _conv_macs(N, cin, cout, in_sp, ksize, out_sp, None, lo2, None, stride)


def _tolerance(dtype, K, fft=False, size=1):
    """Relative tolerance (of max |reference|) for a reduction of length K.

    Rounding errors of a sum of K products with random signs grow like
    ``sqrt(K) * eps``; a factor 8 covers different summation orders.  FFT
    methods spread errors over the whole transform: ``log2(size)`` more.
    """
    eps = float(np.finfo(dtype).eps)
    tol = 8.0 * eps * math.sqrt(max(K, 1))
    if fft:
        tol *= max(1.0, math.log2(max(size, 2)))
    return tol


def _as_numpy(a):
    if isinstance(a, (tuple, list)):
        return tuple(_as_numpy(b) for b in a)
    if hasattr(a, 'detach') and hasattr(a, 'numpy'):     # a torch.Tensor
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _compare(ref, got, tol):
    """(ok, max relative error, message).  Floats: max |got - ref| <= tol *
    max |ref|; integers (indices): exact."""
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = got if isinstance(got, tuple) else (got,)
    if len(ref) != len(got):
        return False, math.inf, 'returned %d arrays, ndconv %d' % (len(got), len(ref))
    worst = 0.0
    for i, (r, g) in enumerate(zip(ref, got)):
        if g.size != r.size:
            return False, math.inf, 'output %d has shape %s, ndconv %s' % (i, g.shape, r.shape)
        g = g.reshape(r.shape)
        if r.dtype.kind in 'iu' or g.dtype.kind in 'iu':
            bad = int(np.count_nonzero(r != g))
            if bad:
                return False, math.inf, '%d of %d indices differ' % (bad, r.size)
            continue
        if r.size == 0:
            continue
        r64 = r.astype(np.float64)
        scale = float(np.max(np.abs(r64)))
        err = float(np.max(np.abs(g.astype(np.float64) - r64)))
        if not (np.isfinite(err) and np.isfinite(scale)):
            return False, math.inf, 'non-finite values'
        rel = err / scale if scale > 0 else err
        worst = max(worst, rel)
        if rel > tol:
            return False, worst, 'max error %.3g of max |y| > tolerance %.3g' % (rel, tol)
    return True, worst, ''


# ----------------------------------------------------------------------------
# NumPy references: im2col + GEMM on chunks of output rows (the column buffer
# stays near 32 MiB whatever the volume), col2im for the transposed case,
# reshape tricks for pooling.

_CHUNK_BYTES = 32 << 20


def _dilate_input(x, input_dilate):
    if all(r == 1 for r in input_dilate):
        return x
    sp = tuple((d - 1) * r + 1 for d, r in zip(x.shape[2:], input_dilate))
    xd = np.zeros(x.shape[:2] + sp, x.dtype)
    xd[(Ellipsis,) + tuple(slice(None, None, r) for r in input_dilate)] = x
    return xd


def _im2col_chunks(x, ksize, stride, pads, input_dilate=None):
    """Yield ``(b, p0, p1, col)`` with ``col`` of shape ``(C * K, p1 - p0)``:
    the patches of output positions ``p0:p1`` (C order) of batch item ``b``."""
    n = x.ndim - 2
    if input_dilate is not None:
        x = _dilate_input(x, input_dilate)
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    N, C = x.shape[:2]
    out_sp = tuple((xp.shape[2 + i] - ksize[i]) // stride[i] + 1 for i in range(n))
    K = C * math.prod(ksize)
    win = np.lib.stride_tricks.sliding_window_view(xp, tuple(ksize), axis=tuple(range(2, 2 + n)))
    win = win[(slice(None),) * 2 + tuple(slice(None, (o - 1) * s + 1, s)
                                          for o, s in zip(out_sp, stride))]
    # (N, C, O1..On, k1..kn) -> (N, C, k1..kn, O1..On)
    win = win.transpose((0, 1) + tuple(range(2 + n, 2 + 2 * n)) + tuple(range(2, 2 + n)))
    rest = math.prod(out_sp[1:])
    rows = max(1, min(out_sp[0], _CHUNK_BYTES // max(1, K * rest * x.itemsize)))
    buf = np.empty(K * rows * rest, x.dtype)
    for b in range(N):
        for o0 in range(0, out_sp[0], rows):
            o1 = min(out_sp[0], o0 + rows)
            col = buf[:K * (o1 - o0) * rest].reshape((C,) + tuple(ksize) + (o1 - o0,) + out_sp[1:])
            np.copyto(col, win[(b,) + (slice(None),) * (1 + n) + (slice(o0, o1),)])
            yield b, o0 * rest, o1 * rest, col.reshape(K, -1)


def np_correlate(x, W, stride, pads, input_dilate=None):
    """NumPy reference of `convolution_nd` (groups=1, dilate=1)."""
    n = x.ndim - 2
    xs = x.shape[2:] if input_dilate is None else tuple(
        (d - 1) * r + 1 for d, r in zip(x.shape[2:], input_dilate))
    out_sp = tuple((xs[i] + pads[i][0] + pads[i][1] - W.shape[2 + i]) // stride[i] + 1
                   for i in range(n))
    cout = W.shape[0]
    W2 = W.reshape(cout, -1)
    y = np.empty((x.shape[0], cout) + out_sp, x.dtype)
    yv = y.reshape(x.shape[0], cout, -1)
    for b, p0, p1, col in _im2col_chunks(x, W.shape[2:], stride, pads, input_dilate):
        yv[b, :, p0:p1] = W2 @ col
    return y


def np_grad_w(x, gy, ksize, stride, pads):
    """NumPy reference of `convolution_nd_grad_W` (groups=1, dilate=1)."""
    cout = gy.shape[1]
    gyv = gy.reshape(gy.shape[0], cout, -1)
    gW = np.zeros((cout, x.shape[1] * math.prod(ksize)), x.dtype)
    for b, p0, p1, col in _im2col_chunks(x, ksize, stride, pads):
        gW += gyv[b, :, p0:p1] @ col.T
    return gW.reshape((cout, x.shape[1]) + tuple(ksize))


def np_deconvolve(x, W, stride, pads):
    """NumPy reference of `deconvolution_nd` (groups=1, dilate=1): one GEMM
    ``W^T x`` per chunk of input rows, then col2im, one strided slab add per
    kernel offset (Chainer's method), then the padding is cropped."""
    N, cin = x.shape[:2]
    cout, ksize = W.shape[1], W.shape[2:]
    K = math.prod(ksize)
    in_sp = x.shape[2:]
    full = tuple(s * (d - 1) + k for s, d, k in zip(stride, in_sp, ksize))
    yf = np.zeros((N, cout) + full, x.dtype)
    Wt = W.reshape(cin, cout * K).T
    rest = math.prod(in_sp[1:])
    rows = max(1, min(in_sp[0], _CHUNK_BYTES // max(1, cout * K * rest * x.itemsize)))
    offsets = list(np.ndindex(*ksize))
    for b in range(N):
        xb = x[b].reshape(cin, -1)
        for d0 in range(0, in_sp[0], rows):
            d1 = min(in_sp[0], d0 + rows)
            col = (Wt @ xb[:, d0 * rest:d1 * rest]).reshape(
                (cout, K, d1 - d0) + in_sp[1:])
            for j, off in enumerate(offsets):
                first = (off[0] + stride[0] * d0,) + off[1:]
                sl = tuple(slice(f, f + s * (m - 1) + 1, s) for f, s, m in
                           zip(first, stride, (d1 - d0,) + in_sp[1:]))
                yf[(b, slice(None)) + sl] += col[:, j]
    crop = tuple(slice(lo, f - hi) for (lo, hi), f in zip(pads, full))
    return np.ascontiguousarray(yf[(slice(None), slice(None)) + crop])


def _blocks(x, ksize):
    """View (N, C, O1, k1, O2, k2, ...) of x, for pooling with stride == ksize."""
    shape = x.shape[:2]
    for d, k in zip(x.shape[2:], ksize):
        shape += (d // k, k)
    return x.reshape(shape)


def np_unpool(x, ksize):
    """stride == ksize unpooling: one broadcast copy into the blocks of y."""
    y = np.empty(x.shape[:2] + tuple(d * k for d, k in zip(x.shape[2:], ksize)), x.dtype)
    _blocks(y, ksize)[...] = x.reshape(x.shape[:2] + sum(((d, 1) for d in x.shape[2:]), ()))
    return y


def np_max_pool(x, ksize):
    """Values and flat indices (PyTorch's convention) of stride == ksize pooling."""
    n = x.ndim - 2
    N, C = x.shape[:2]
    out_sp = tuple(d // k for d, k in zip(x.shape[2:], ksize))
    perm = (0, 1) + tuple(range(2, 2 + 2 * n, 2)) + tuple(range(3, 3 + 2 * n, 2))
    win = np.ascontiguousarray(_blocks(x, ksize).transpose(perm)).reshape(
        (N, C) + out_sp + (-1,))
    a = win.argmax(axis=-1)
    y = np.take_along_axis(win, a[..., None], axis=-1)[..., 0]
    j = np.unravel_index(a, ksize)
    idx = np.zeros(a.shape, np.int64)
    for i in range(n):
        o = np.arange(out_sp[i]).reshape((-1,) + (1,) * (n - 1 - i))
        idx = idx * x.shape[2 + i] + (o * ksize[i] + j[i])
    return y, idx


def np_max_unpool(y, idx, out_sp):
    N, C = y.shape[:2]
    out = np.zeros((N * C, math.prod(out_sp)), y.dtype)
    np.put_along_axis(out, idx.reshape(N * C, -1), y.reshape(N * C, -1), axis=1)
    return out.reshape((N, C) + tuple(out_sp))


def np_avg_pool(x, ksize):
    n = x.ndim - 2
    return _blocks(x, ksize).mean(axis=tuple(range(3, 3 + 2 * n, 2)), dtype=x.dtype)


# ----------------------------------------------------------------------------
# Peers.  Each factory returns the callable to time; ImportError means "not
# installed".  Thread counts are set by `run` (torch, BLAS) or here (scipy.fft).

_STATE = {'threads': 1}


def _torch():
    import torch
    return torch, torch.nn.functional


def _t(a):
    import torch
    return torch.from_numpy(a)


def _torch_conv(x, W, stride, padding, dilate_in=None):
    torch, F = _torch()
    n = x.ndim - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    tx, tW = _t(x), _t(W)
    stride, padding = tuple(stride), tuple(padding)
    if dilate_in is None or all(r == 1 for r in dilate_in):
        return lambda: conv(tx, tW, stride=stride, padding=padding)
    sp = tuple((d - 1) * r + 1 for d, r in zip(x.shape[2:], dilate_in))
    sl = (Ellipsis,) + tuple(slice(None, None, r) for r in dilate_in)

    def f():
        xu = tx.new_zeros(tuple(x.shape[:2]) + sp)
        xu[sl] = tx
        return conv(xu, tW, stride=stride, padding=padding)
    return f


def _torch_deconv(x, W, stride, padding):
    torch, F = _torch()
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[x.ndim - 2]
    tx, tW = _t(x), _t(W)
    return lambda: conv(tx, tW, stride=tuple(stride), padding=tuple(padding))


def _torch_conv4d(x, W, pad):
    """4 spatial axes as a sum over the first kernel axis of 3-D convolutions:
    each of the k1 taps is one conv3d over all output planes at once (the
    planes moved into the batch axis)."""
    torch, F = _torch()
    tx, tW = _t(x), _t(W)
    N, C = x.shape[:2]
    k1 = W.shape[2]
    O1 = x.shape[2] + 2 * pad - k1 + 1

    def f():
        xp = F.pad(tx, (0, 0, 0, 0, 0, 0, pad, pad))
        y = None
        for a in range(k1):
            xa = xp[:, :, a:a + O1].transpose(1, 2).reshape((N * O1, C) + x.shape[3:])
            ya = F.conv3d(xa, tW[:, :, a], padding=pad)
            y = ya if y is None else y.add_(ya)
        y = y.reshape((N, O1) + tuple(y.shape[1:]))
        return y.transpose(1, 2).contiguous()
    return f


def _torch_grad_w(x, gy, W_shape, stride, padding):
    torch, F = _torch()
    fn = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight,
          3: torch.nn.grad.conv3d_weight}[x.ndim - 2]
    tx, tgy = _t(x), _t(gy)
    return lambda: fn(tx, W_shape, tgy, stride=tuple(stride), padding=tuple(padding))


def _ndimage(x, W):
    from scipy import ndimage
    x0, W0 = x[0, 0], W[0, 0]
    return lambda: ndimage.correlate(x0, W0, mode='constant', cval=0.0)


def _scipy_fft(name, x, W):
    """scipy.signal.fftconvolve / oaconvolve: they convolve, so the kernel is
    flipped; mode 'same' with an odd kernel is a correlation padded by
    (k - 1) // 2 on each side."""
    import scipy.fft
    import scipy.signal
    fn = getattr(scipy.signal, name)
    x0 = x[0, 0]
    Wf = np.ascontiguousarray(W[0, 0][(slice(None, None, -1),) * (x.ndim - 2)])
    threads = _STATE['threads']

    def f():
        with scipy.fft.set_workers(threads):
            return fn(x0, Wf, mode='same')
    return f


def _torch_unpool(x, k):
    torch, F = _torch()
    tx = _t(x)
    return lambda: F.interpolate(tx, scale_factor=k, mode='nearest')


def _torch_max_pool(x, k):
    torch, F = _torch()
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[x.ndim - 2]
    tx = _t(x)
    return lambda: fn(tx, k, return_indices=True)


def _torch_max_unpool(y, idx, k):
    torch, F = _torch()
    fn = {1: F.max_unpool1d, 2: F.max_unpool2d, 3: F.max_unpool3d}[y.ndim - 2]
    ty, ti = _t(y), _t(idx)
    return lambda: fn(ty, ti, k)


def _torch_avg_pool(x, k):
    torch, F = _torch()
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[x.ndim - 2]
    tx = _t(x)
    return lambda: fn(tx, k)


# ----------------------------------------------------------------------------
# Cases.  A builder takes (quick, dtype) and returns a dict:
#   impls: [(name, factory)], ndconv first; factory() -> callable
#   work, unit: flop count (2 * MACs) and 'GFLOP/s', or bytes and 'GB/s'
#   tol: relative tolerance; shape: a short description of the sizes
#   tols: optional {impl: tolerance} overrides (FFT peers)
#   channels: (input channels, output channels) of a convolution case: with
#     both >= 16 it is GEMM-shaped (held to a fraction of the GEMM rate)

class Case:
    def __init__(self, name, title, kind, build, dtype=np.float32, needs=None):
        self.name, self.title, self.kind = name, title, kind
        self.build_fn, self.dtype, self.needs = build, np.dtype(dtype), needs

    def build(self, quick=False):
        return self.build_fn(self.name, quick, self.dtype)

    def __repr__(self):
        return 'Case(%r)' % self.name


def _conv_case(full, small, stride, pad, one_channel_peers=False):
    """Builder of a plain convolution case (groups=1, dilate=1, zero pad);
    ``full`` and ``small`` (for --quick) are ``(x shape, C_out, k)``."""
    def build(name, quick, dtype):
        nd = _pkg()
        shape_x, cout, k = small if quick else full
        n = len(shape_x) - 2
        rng = _rng(name)
        ks = (k,) * n
        st = (stride,) * n
        pads = ((pad, pad),) * n
        cin = shape_x[1]
        K = cin * math.prod(ks)
        x = _randn(rng, shape_x, dtype)
        W = _randn(rng, (cout, cin) + ks, dtype, 1 / math.sqrt(K))
        out_sp = nd.conv_outsize(shape_x[2:], ks, st, pad)
        impls = [('ndconv', lambda: (lambda: nd.convolution_nd(x, W, stride=st, pad=pad))),
                 ('torch', lambda: _torch_conv(x, W, st, (pad,) * n))]
        tols = {}
        if one_channel_peers:
            impls += [('scipy.ndimage', lambda: _ndimage(x, W)),
                      ('scipy.fftconvolve', lambda: _scipy_fft('fftconvolve', x, W)),
                      ('scipy.oaconvolve', lambda: _scipy_fft('oaconvolve', x, W))]
            fft_tol = _tolerance(dtype, K, fft=True, size=x.size)
            tols = {'scipy.fftconvolve': fft_tol, 'scipy.oaconvolve': fft_tol}
        impls.append(('numpy', lambda: (lambda: np_correlate(x, W, st, pads))))
        macs = _conv_macs(shape_x[0], cin, cout, shape_x[2:], ks, out_sp, st, (pad,) * n)
        return dict(impls=impls, work=2 * macs, unit='GFLOP/s',
                    tol=_tolerance(dtype, K), tols=tols, channels=(cin, cout),
                    shape='%s * %s -> %s' % (_fmt(shape_x), _fmt((cout, cin) + ks),
                                             _fmt((shape_x[0], cout) + out_sp)))
    return build


def _fmt(shape):
    return 'x'.join(str(s) for s in shape)


def _build_conv4d(name, quick, dtype):
    nd = _pkg()
    shape_x, cout, k, pad = ((1, 2, 4, 4, 4, 4), 3, 3, 1) if quick else \
        ((1, 4, 16, 16, 16, 16), 8, 3, 1)
    rng = _rng(name)
    cin, ks = shape_x[1], (k,) * 4
    K = cin * math.prod(ks)
    x = _randn(rng, shape_x, dtype)
    W = _randn(rng, (cout, cin) + ks, dtype, 1 / math.sqrt(K))
    out_sp = nd.conv_outsize(shape_x[2:], ks, 1, pad)
    macs = _conv_macs(shape_x[0], cin, cout, shape_x[2:], ks, out_sp, None, (pad,) * 4)
    impls = [('ndconv', lambda: (lambda: nd.convolution_nd(x, W, pad=pad))),
             ('torch', lambda: _torch_conv4d(x, W, pad)),
             ('numpy', lambda: (lambda: np_correlate(x, W, (1,) * 4, ((pad, pad),) * 4)))]
    return dict(impls=impls, work=2 * macs, unit='GFLOP/s', tol=_tolerance(dtype, K),
                channels=(cin, cout),
                shape='%s * %s -> %s' % (_fmt(shape_x), _fmt(W.shape),
                                         _fmt((shape_x[0], cout) + out_sp)))


def _build_deconv(full, small):
    def build(name, quick, dtype):
        nd = _pkg()
        shape_x, cout, k, stride, pad = small if quick else full
        n = len(shape_x) - 2
        rng = _rng(name)
        cin = shape_x[1]
        ks, st = (k,) * n, (stride,) * n
        x = _randn(rng, shape_x, dtype)
        # Each output sums about cin * prod(k / stride) products.
        K = max(1, cin * math.prod(ks) // math.prod(st))
        W = _randn(rng, (cin, cout) + ks, dtype, 1 / math.sqrt(K))
        out_sp = nd.deconv_outsize(shape_x[2:], ks, st, pad)
        macs = _deconv_macs(shape_x[0], cin, cout, shape_x[2:], ks, out_sp, st, (pad,) * n)
        impls = [('ndconv', lambda: (lambda: nd.deconvolution_nd(x, W, stride=st, pad=pad))),
                 ('torch', lambda: _torch_deconv(x, W, st, (pad,) * n)),
                 ('numpy', lambda: (lambda: np_deconvolve(x, W, st, ((pad, pad),) * n)))]
        return dict(impls=impls, work=2 * macs, unit='GFLOP/s', tol=_tolerance(dtype, K),
                    channels=(cin, cout),
                    shape='%s * %s -> %s' % (_fmt(shape_x), _fmt(W.shape),
                                             _fmt((shape_x[0], cout) + out_sp)))
    return build


def _build_alexnet_deconv(name, quick, dtype):
    # The transpose of the 8x3x227x227 * 96x3x11x11 / 4 convolution: its
    # 8x96x55x55 result back to 227x227.
    return _build_deconv(((8, 96, 55, 55), 3, 11, 4, 0),
                         ((2, 8, 6, 6), 3, 5, 2, 0))(name, quick, dtype)


def _build_grad_w(name, quick, dtype):
    nd = _pkg()
    shape_x, cout, k, pad = ((1, 4, 6, 6, 6), 4, 3, 1) if quick else \
        ((2, 32, 32, 32, 32), 32, 3, 1)
    n = len(shape_x) - 2
    rng = _rng(name)
    cin, ks = shape_x[1], (k,) * n
    out_sp = nd.conv_outsize(shape_x[2:], ks, 1, pad)
    x = _randn(rng, shape_x, dtype)
    gy = _randn(rng, (shape_x[0], cout) + out_sp, dtype)
    K = shape_x[0] * math.prod(out_sp)
    macs = _conv_macs(shape_x[0], cin, cout, shape_x[2:], ks, out_sp, None, (pad,) * n)
    impls = [('ndconv', lambda: (lambda: nd.convolution_nd_grad_W(x, gy, ks, pad=pad))),
             ('torch', lambda: _torch_grad_w(x, gy, (cout, cin) + ks, (1,) * n, (pad,) * n)),
             ('numpy', lambda: (lambda: np_grad_w(x, gy, ks, (1,) * n, ((pad, pad),) * n)))]
    return dict(impls=impls, work=2 * macs, unit='GFLOP/s', tol=_tolerance(dtype, K),
                channels=(cin, cout),
                shape='x %s, gy %s -> %s' % (_fmt(shape_x), _fmt(gy.shape),
                                             _fmt((cout, cin) + ks)))


def _build_reshape(name, quick, dtype):
    """(100, 100) -> (50, 200) in one call: stride 2 on the first axis,
    input_dilate 2 on the second."""
    nd = _pkg()
    shape_x, c = ((1, 2, 10, 10), 2) if quick else ((8, 16, 100, 100), 16)
    rng = _rng(name)
    ks, st, idl, pads = (4, 4), (2, 1), (1, 2), ((1, 1), (2, 2))
    x = _randn(rng, shape_x, dtype)
    W = _randn(rng, (c, shape_x[1]) + ks, dtype, 1 / math.sqrt(shape_x[1] * 8))
    out_sp = nd.conv_outsize(shape_x[2:], ks, st, pads, input_dilate=idl)
    macs = _conv_macs(shape_x[0], shape_x[1], c, shape_x[2:], ks, out_sp, st,
                      (1, 2), None, idl)
    kw = dict(stride=st, pad=pads, input_dilate=idl)
    impls = [('ndconv', lambda: (lambda: nd.convolution_nd(x, W, **kw))),
             ('torch', lambda: _torch_conv(x, W, st, (1, 2), idl)),
             ('numpy', lambda: (lambda: np_correlate(x, W, st, pads, idl)))]
    return dict(impls=impls, work=2 * macs, unit='GFLOP/s',
                tol=_tolerance(dtype, shape_x[1] * 16), channels=(shape_x[1], c),
                shape='%s * %s -> %s' % (_fmt(shape_x), _fmt(W.shape),
                                         _fmt((shape_x[0], c) + out_sp)))


_POOL_FULL = (2, 16, 64, 64, 64)
_POOL_QUICK = (1, 2, 8, 8, 8)


def _pool_input(name, quick, dtype, half=False):
    shape = _POOL_QUICK if quick else _POOL_FULL
    if half:
        shape = shape[:2] + tuple(d // 2 for d in shape[2:])
    return _randn(_rng(name), shape, dtype)


def _build_unpool(name, quick, dtype):
    nd = _pkg()
    x = _pool_input(name, quick, dtype, half=True)
    k = 2
    n = x.ndim - 2
    impls = [('ndconv', lambda: (lambda: nd.unpooling_nd(x, k, cover_all=False))),
             ('torch', lambda: _torch_unpool(x, k)),
             ('numpy', lambda: (lambda: np_unpool(x, (k,) * n)))]
    out = x.shape[:2] + tuple(d * k for d in x.shape[2:])
    return dict(impls=impls, work=x.nbytes * (1 + k ** n), unit='GB/s', tol=0.0,
                shape='%s -> %s, ksize %d' % (_fmt(x.shape), _fmt(out), k))


def _build_max_pool(name, quick, dtype):
    nd = _pkg()
    x = _pool_input(name, quick, dtype)
    k = 2
    n = x.ndim - 2
    out_n = x.size // k ** n
    impls = [('ndconv', lambda: (lambda: nd.max_pooling_nd(x, k, return_indices=True))),
             ('torch', lambda: _torch_max_pool(x, k)),
             ('numpy', lambda: (lambda: np_max_pool(x, (k,) * n)))]
    return dict(impls=impls, work=x.nbytes + out_n * (x.itemsize + 8), unit='GB/s',
                tol=0.0, shape='%s -> %s + int64 indices, ksize %d'
                % (_fmt(x.shape), _fmt(x.shape[:2] + tuple(d // k for d in x.shape[2:])), k))


def _build_max_unpool(name, quick, dtype):
    nd = _pkg()
    x = _pool_input(name, quick, dtype)
    k = 2
    n = x.ndim - 2
    y, idx = np_max_pool(x, (k,) * n)      # the inputs, from the NumPy reference
    del x
    out_sp = tuple(d * k for d in y.shape[2:])
    impls = [('ndconv', lambda: (lambda: nd.max_unpooling_nd(y, idx, k))),
             ('torch', lambda: _torch_max_unpool(y, idx, k)),
             ('numpy', lambda: (lambda: np_max_unpool(y, idx, out_sp)))]
    return dict(impls=impls, work=y.nbytes + idx.nbytes + y.nbytes * k ** n,
                unit='GB/s', tol=0.0, shape='%s + indices -> %s, ksize %d'
                % (_fmt(y.shape), _fmt(y.shape[:2] + out_sp), k))


def _build_avg_pool(name, quick, dtype):
    nd = _pkg()
    x = _pool_input(name, quick, dtype)
    k = 2
    n = x.ndim - 2
    impls = [('ndconv', lambda: (lambda: nd.average_pooling_nd(x, k))),
             ('torch', lambda: _torch_avg_pool(x, k)),
             ('numpy', lambda: (lambda: np_avg_pool(x, (k,) * n)))]
    return dict(impls=impls, work=x.nbytes * (1 + 1 / k ** n), unit='GB/s',
                tol=_tolerance(dtype, k ** n), shape='%s -> %s, ksize %d'
                % (_fmt(x.shape), _fmt(x.shape[:2] + tuple(d // k for d in x.shape[2:])), k))


# (x shape, C_out, k) of the convolution cases, full size and --quick.
_ONE_K3 = (((1, 1, 128, 128, 128), 1, 3), ((1, 1, 10, 10, 10), 1, 3))
_C32 = (((2, 32, 32, 32, 32), 32, 3), ((1, 4, 6, 6, 6), 4, 3))

CASES = [
    Case('conv3d_1ch_k3', 'one-channel 128^3 volume, 3^3 kernel, pad 1', 'conv',
         _conv_case(*_ONE_K3, 1, 1, True)),
    Case('conv3d_32ch', 'batch 2, 32->32 channels, 32^3, 3^3, pad 1', 'conv',
         _conv_case(*_C32, 1, 1)),
    Case('deconv3d_32to16', '32->16 channels transposed, k 4, stride 2, pad 1, 32^3 -> 64^3',
         'conv', _build_deconv(((2, 32, 32, 32, 32), 16, 4, 2, 1),
                               ((1, 4, 5, 5, 5), 3, 4, 2, 1))),
    Case('conv2d_alexnet', '8x3x227x227, 96 filters 11x11, stride 4', 'conv',
         _conv_case(((8, 3, 227, 227), 96, 11), ((2, 3, 27, 27), 4, 11), 4, 0)),
    Case('deconv2d_alexnet', 'transpose of conv2d_alexnet: 8x96x55x55 -> 227x227', 'conv',
         _build_alexnet_deconv),
    Case('conv3d_1ch_k7', 'one-channel 96^3 volume, 7^3 kernel, pad 3', 'conv',
         _conv_case(((1, 1, 96, 96, 96), 1, 7), ((1, 1, 12, 12, 12), 1, 7), 1, 3, True)),
    Case('conv3d_stride2', '16->32 channels, 64^3 -> 32^3, k 3, stride 2, pad 1', 'conv',
         _conv_case(((2, 16, 64, 64, 64), 32, 3), ((1, 2, 8, 8, 8), 4, 3), 2, 1)),
    Case('conv4d', '4 spatial axes: 1x4x16^4, 8 out channels, 3^4, pad 1', 'conv',
         _build_conv4d),
    Case('grad_w_32ch', 'weight gradient of conv3d_32ch', 'conv', _build_grad_w),
    Case('reshape_2d', '(100,100) -> (50,200) in one call, 16->16 channels, batch 8',
         'conv', _build_reshape),
    Case('conv3d_32ch_f64', 'conv3d_32ch in float64', 'conv',
         _conv_case(*_C32, 1, 1), dtype=np.float64),
    Case('conv3d_1ch_k3_f64', 'conv3d_1ch_k3 in float64', 'conv',
         _conv_case(*_ONE_K3, 1, 1, True), dtype=np.float64),
    Case('unpool3d_k2', 'unpooling_nd ksize 2 (cover_all=False): 2x16x32^3 -> 64^3', 'pool',
         _build_unpool, needs='unpooling_nd'),
    Case('max_pool3d_k2', 'max_pooling_nd ksize 2 with indices, 2x16x64^3', 'pool',
         _build_max_pool, needs='max_pooling_nd'),
    Case('max_unpool3d_k2', 'max_unpooling_nd ksize 2: 2x16x32^3 -> 64^3', 'pool',
         _build_max_unpool, needs='max_unpooling_nd'),
    Case('avg_pool3d_k2', 'average_pooling_nd ksize 2, 2x16x64^3', 'pool',
         _build_avg_pool, needs='average_pooling_nd'),
]

def case_names():
    return [c.name for c in CASES]


def _select(patterns):
    """Cases matching any of the comma-separated patterns: a case's exact
    name selects that case only, a shell glob matches names, anything else
    matches as a substring."""
    if patterns is None:
        return list(CASES)
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(',') if p.strip()]
    names = set(case_names())
    out = []
    for c in CASES:
        for p in patterns:
            p = p.strip()
            if p in names:
                hit = c.name == p
            elif any(ch in p for ch in '*?['):
                hit = fnmatch.fnmatchcase(c.name, p)
            else:
                hit = p in c.name
            if hit:
                out.append(c)
                break
    if not out:
        raise ValueError('no case matches %r; the cases are: %s'
                         % (patterns, ', '.join(case_names())))
    return out


def _build(case, quick):
    return case.build(quick)


# ----------------------------------------------------------------------------
# Threads.

@contextlib.contextmanager
def _threads(n):
    """ndconv, PyTorch (when imported), NumPy/SciPy BLAS (threadpoolctl) and
    scipy.fft (in the peers) all get ``n`` threads; restored afterwards."""
    nd = _pkg()
    saved_nd = nd.get_num_threads()
    _STATE['threads'] = n
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
            stack.enter_context(threadpool_limits(limits=n))
            _STATE['blas'] = n
        except ImportError:
            _STATE['blas'] = None
        nd.set_num_threads(n)
        try:
            yield
        finally:
            nd.set_num_threads(saved_nd)
            torch = sys.modules.get('torch')
            if torch is not None and _STATE.get('torch_saved'):
                torch.set_num_threads(_STATE.pop('torch_saved'))


def _torch_threads(n):
    torch = sys.modules.get('torch')
    if torch is not None and torch.get_num_threads() != n:
        _STATE.setdefault('torch_saved', torch.get_num_threads())
        torch.set_num_threads(n)


def _at_one_thread(fn):
    """``fn`` run with ndconv at 1 thread (for the speed-up); ndconv's thread
    count is restored when the call returns, so the other timed calls keep
    the run's count."""
    nd = _pkg()

    def f():
        saved = nd.get_num_threads()
        nd.set_num_threads(1)
        try:
            return fn()
        finally:
            nd.set_num_threads(saved)
    return f


def _impl_threads(name, n):
    if name == 'scipy.ndimage':
        return 1
    if name == 'numpy' and _STATE.get('blas') is None:
        return None
    return n


# ----------------------------------------------------------------------------
# Timing and memory.

# Pause before each timed call: OpenBLAS and OpenMP pools keep spinning for
# up to ~0.1 s after a call, and would otherwise be timed against whichever
# implementation runs next on the same two cores.
SETTLE = 0.15
# With prime (the default; --cold turns it off), each timed call follows
# untimed calls of the same implementation, at least one and at least PRIME
# seconds of them.  After the pause an idle core can take milliseconds to
# wake, in steps of the kernel's 4 ms tick on the machine this suite was
# written on (a 0.15 ms two-thread call took 1.9, 5.8 or 9.8 ms after a 0.15 s
# sleep, for ndconv's OpenMP team and PyTorch's alike), and the next few calls
# still ran slower than in a loop; the primer calls pay that, and the timed
# call finds its library's threads running, as in any loop of calls.
PRIME = 0.02


def _time_interleaved(fns, repeat, settle=SETTLE, prime=True):
    """Times (s) of each callable, timed in turn: a, b, c, a, b, c, ...
    Every call starts ``settle`` seconds after the previous one ended, right
    after untimed calls of the same callable with ``prime`` (see PRIME).
    The collector is off while timing (results are freed by reference
    counting as each call returns)."""
    times = [[] for _ in fns]
    for f in fns:                      # warm-up
        f()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for i, f in enumerate(fns):
                if settle:
                    time.sleep(settle)
                    if prime:
                        end = time.perf_counter() + PRIME
                        f()
                        while time.perf_counter() < end:
                            f()
                t0 = time.perf_counter()
                f()
                times[i].append(time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return times


def _status_kib(field):
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _memory_here(name, impl, threads, quick):
    """Run in a fresh process: peak extra KiB of one call of ``impl`` on case
    ``name``, the inputs already allocated.

    Linux's per-process peak (VmHWM) is reset to the current resident size
    just before the call (``/proc/self/clear_refs``), so the allocations made
    while building the inputs do not hide the call's own peak.  ``ru_maxrss``
    cannot be reset, and after ``exec`` it even starts from the parent's peak,
    so it is only the fallback (a lower bound) where /proc is missing.
    """
    import resource
    case = next(c for c in CASES if c.name == name)
    nd = _pkg()
    nd.set_num_threads(threads)
    _STATE['threads'] = threads
    # One call on the tiny sizes first: libraries and thread pools load now,
    # not during the measured call.
    small = _build(case, True)
    fn = dict(small['impls'])[impl]()
    _torch_threads(threads)
    fn()
    del fn, small
    spec = _build(case, quick)
    fn = dict(spec['impls'])[impl]()
    gc.collect()
    method = 'VmHWM'
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        before = _status_kib('VmRSS')
    except OSError:
        before = None
    if before is None:
        method = 'ru_maxrss'
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = fn()
    if method == 'VmHWM':
        after = _status_kib('VmHWM')
    else:
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    return {'extra_kib': max(0, after - before), 'method': method}


def _measure_memory(name, impl, threads, quick, timeout=900):
    """Peak extra MiB of one call, in a fresh ``python -c`` subprocess."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(_pkg().__file__)))
    env = dict(os.environ)
    env['PYTHONPATH'] = root + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    code = ('import json, sys; from %s import bench; '
            'print("@@" + json.dumps(bench._memory_here(%r, %r, %d, %r)))'
            % (__package__ or 'ndconv', name, impl, threads, quick))
    try:
        p = subprocess.run([sys.executable, '-c', code], env=env, cwd=root,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, 'memory run timed out'
    for line in p.stdout.splitlines():
        if line.startswith('@@'):
            r = json.loads(line[2:])
            return r['extra_kib'] / 1024.0, r['method']
    err = (p.stderr.strip().splitlines() or ['exit status %d' % p.returncode])[-1]
    return None, 'memory run failed: %s' % err


# ----------------------------------------------------------------------------
# The run.

def _row(case, spec, impl, **kw):
    row = dict(case=case.name, title=case.title, kind=case.kind,
               dtype=case.dtype.name, shape=spec.get('shape', '') if spec else '',
               impl=impl, status='ok', note='', ms=None, times=None, rate=None,
               unit=spec['unit'] if spec else ('GFLOP/s' if case.kind == 'conv' else 'GB/s'),
               ratio=None, mem_mib=None, threads=None, max_err=None, tol=None,
               ms_1thread=None, times_1thread=None, speedup=None,
               channels=spec.get('channels') if spec else None, out_mib=None)
    row.update(kw)
    return row


def _run_case(case, threads, repeat, quick, memory, speedup=True, prime=True):
    nd = _pkg()
    if case.needs and not callable(getattr(nd, case.needs, None)):
        return [_row(case, None, 'ndconv', status='skipped',
                     note='ndconv.%s is not available yet' % case.needs)]
    try:
        spec = _build(case, quick)
    except Exception as e:          # a broken case must not stop the suite
        return [_row(case, None, 'ndconv', status='error',
                     note='building the case failed: %s: %s' % (type(e).__name__, e))]
    rows, fns = [], []
    ref = None
    for impl, factory in spec['impls']:
        tol = spec.get('tols', {}).get(impl, spec['tol'])
        row = _row(case, spec, impl, tol=tol, threads=_impl_threads(impl, threads))
        rows.append(row)
        try:
            fn = factory()
        except ImportError as e:
            row.update(status='skipped', note='not installed (%s)' % e)
            continue
        if impl == 'torch':
            _torch_threads(threads)
        try:
            out = _as_numpy(fn())
        except Exception as e:
            row.update(status='error', note='%s: %s' % (type(e).__name__, e))
            if impl == 'ndconv':
                break
            continue
        if impl == 'ndconv':
            ref = out
            row['out_mib'] = sum(a.nbytes for a in
                                 (out if isinstance(out, tuple) else (out,))) / _MIB
        else:
            ok, err, msg = _compare(ref, out, tol)
            row['max_err'] = err
            if not ok:
                row.update(status='mismatch', note='disagrees with ndconv: ' + msg)
                continue
        del out
        fns.append((row, fn))
    ref = None
    if not fns or fns[0][0]['impl'] != 'ndconv':
        for row in rows:            # ndconv failed: nothing to compare with
            if row['status'] == 'ok':
                row.update(status='skipped', note='not timed: ndconv failed')
        return rows
    # ndconv at 1 thread is one more timed function of the same loop (last);
    # it gives the speed-up only, not a row of its own nor a ratio.
    one = [_at_one_thread(fns[0][1])] if speedup and threads > 1 else []
    times = _time_interleaved([f for _, f in fns] + one, repeat, 0 if quick else SETTLE,
                              prime)
    for (row, _), t in zip(fns, times):
        ms = statistics.median(t) * 1e3
        row.update(ms=ms, times=[s * 1e3 for s in t],
                   rate=spec['work'] / (ms * 1e-3) / 1e9)
    if one:
        row, t = fns[0][0], times[-1]
        ms1 = statistics.median(t) * 1e3
        row.update(ms_1thread=ms1, times_1thread=[s * 1e3 for s in t],
                   speedup=ms1 / row['ms'])
    del fns, one
    peers = [r['ms'] for r in rows if r['impl'] != 'ndconv' and r['ms'] is not None]
    if peers:
        best = min(peers)
        for r in rows:
            if r['ms'] is not None:
                r['ratio'] = r['ms'] / best
    if memory:
        for r in rows:
            if r['status'] == 'ok' and (memory == 'all' or r['impl'] == 'ndconv'):
                mib, how = _measure_memory(case.name, r['impl'], threads, quick)
                r['mem_mib'] = mib
                if mib is None:
                    r['note'] = (r['note'] + '; ' if r['note'] else '') + how
                elif how != 'VmHWM':
                    r['note'] = (r['note'] + '; ' if r['note'] else '') + \
                        'memory from ru_maxrss (a lower bound)'
    return rows


def run(cases=None, threads=2, repeat=7, quick=False, progress=None, memory=None,
        speedup=True, cold=False):
    """Run the suite; return one dict per (case, implementation).

    Parameters
    ----------
    cases : None, str or list of str
        Patterns selecting cases by name (globs, or substrings); a string may
        hold several, comma-separated.  None: every case.
    threads : int
        Threads for ndconv and PyTorch (and BLAS through threadpoolctl,
        scipy.fft through its ``workers``).
    repeat : int
        Timed calls per implementation, at least 5; the median is reported.
    quick : bool
        Tiny sizes: the whole suite in a few seconds (a smoke test; its
        timings mean nothing).
    progress : callable, optional
        ``progress(done, total, case_name)``, called before each case
        (``done`` cases finished) and once at the end with ``case_name=None``.
    memory : None, 'ndconv' or 'all'
        Measure the peak extra memory of one call in a fresh subprocess
        (slow), for ndconv or for every implementation.
    speedup : bool
        With ``threads > 1``, also time ndconv at 1 thread in the same
        interleaved loop (ndconv's row gets ``ms_1thread`` and ``speedup``).
    cold : bool
        Time the first call after each pause, without the untimed primer
        calls (see PRIME): multi-threaded calls then include the time an
        idle core takes to wake.

    Returns
    -------
    list of dict
        Keys: ``case``, ``title``, ``kind`` ('conv' or 'pool'), ``dtype``,
        ``shape``, ``impl``, ``status`` ('ok', 'skipped', 'mismatch',
        'error'), ``note``, ``ms`` (median), ``times`` (every timed call, ms),
        ``rate`` and ``unit`` ('GFLOP/s' or 'GB/s'), ``ratio`` (time over the
        fastest agreeing peer's), ``mem_mib``, ``threads``, ``max_err`` (max
        error relative to max |ndconv|) and ``tol``; ``ms_1thread``,
        ``times_1thread`` and ``speedup`` (1-thread median over the
        ``threads`` median: ndconv's row only, None when not measured);
        ``channels`` ((in, out) of a convolution case) and ``out_mib`` (size
        of ndconv's outputs, ndconv's row).
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 5:
        raise ValueError('repeat must be an int >= 5, got %r' % (repeat,))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError('threads must be a positive int, got %r' % (threads,))
    if memory not in (None, False, True, 'ndconv', 'all'):
        raise ValueError("memory must be None, 'ndconv' or 'all', got %r" % (memory,))
    if memory is True:
        memory = 'ndconv'
    selected = _select(cases)
    rows = []
    with _threads(threads):
        for i, case in enumerate(selected):
            if progress is not None:
                progress(i, len(selected), case.name)
            if not quick:               # free the last case's arrays held in cycles
                gc.collect()
            rows.extend(_run_case(case, threads, repeat, quick, memory, speedup, not cold))
        if progress is not None:
            progress(len(selected), len(selected), None)
    return rows


def geomean_ratio(rows):
    """Geometric mean of ndconv's time over the fastest peer's, over the cases
    where both were timed (None when there are none)."""
    r = [row['ratio'] for row in rows if row['impl'] == 'ndconv' and row['ratio']]
    if not r:
        return None
    return math.exp(sum(math.log(v) for v in r) / len(r))


# ----------------------------------------------------------------------------
# This machine's limits and the header.

def _median_seconds(fn, repeat, settle, prime=True):
    """Median time (s) of ``fn``, timed as the cases' calls are: a warm-up,
    then ``repeat`` calls, each ``settle`` seconds after the last."""
    return statistics.median(_time_interleaved([fn], repeat, settle, prime)[0])


def machine(threads=2, quick=False, repeat=7, cold=False):
    """Header facts: versions, ndconv's configuration and build flags, and this
    machine's NumPy float32 GEMM GFLOP/s and copy GB/s with ``threads``,
    each the median of ``repeat`` calls timed as the cases' calls are (each
    `SETTLE` seconds after the last; no pause with ``quick``)."""
    nd = _pkg()
    info = {'threads': threads, 'python': platform.python_version(),
            'numpy': np.__version__, 'platform': platform.platform()}
    try:
        import scipy
        info['scipy'] = scipy.__version__
    except ImportError:
        info['scipy'] = None
    try:
        import torch
        info['torch'] = torch.__version__
    except ImportError:
        info['torch'] = None
    info['cpu'] = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    info['cpu'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    info['cores'] = os.cpu_count()
    info['pause'] = 'cold' if cold or quick else 'primed'
    prime = info['pause'] == 'primed'
    with _threads(threads):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            nd.show_config()
        info['config'] = [line for line in buf.getvalue().splitlines() if line]
        try:
            from . import _build_info
            info['compile_args'] = list(getattr(_build_info, 'COMPILE_ARGS', []) or [])
            info['debug_build'] = bool(getattr(_build_info, 'DEBUG', False))
        except ImportError:
            info['compile_args'] = None
            info['debug_build'] = None
        info['blas_threads'] = _STATE.get('blas')
        settle = 0 if quick else SETTLE
        info['settle'] = settle
        info['limit_repeat'] = repeat
        m = 256 if quick else 2048
        rng = np.random.default_rng(0)
        info['gemm_n'] = m
        for dt, key in ((np.float32, 'gemm_gflops'), (np.float64, 'gemm64_gflops')):
            a = rng.standard_normal((m, m)).astype(dt)
            b = rng.standard_normal((m, m)).astype(dt)
            c = np.empty((m, m), dt)
            t = _median_seconds(lambda a=a, b=b, c=c: np.dot(a, b, out=c), repeat, settle,
                                prime)
            info[key] = 2.0 * m ** 3 / t / 1e9
            del a, b, c
        count = (1 << 20) if quick else (32 << 20)          # 4 MiB or 128 MiB
        src = np.ones(count, np.float32)
        dst = np.zeros(count, np.float32)
        t = _median_seconds(lambda: np.copyto(dst, src), repeat, settle, prime)
        info['copy_mib'] = src.nbytes / _MIB
        info['copy_gbs'] = 2.0 * src.nbytes / t / 1e9
    return info


def format_header(info, quick=False, repeat=7):
    lines = ['ndconv benchmark suite%s' % (' (--quick: tiny sizes, timings meaningless)'
                                           if quick else '')]
    lines.append('threads: %d (ndconv, torch, BLAS%s; scipy.ndimage is single-threaded); '
                 'median of %d interleaved calls after a warm-up, each %.2f s after the last%s'
                 % (info['threads'], '' if info.get('blas_threads') else ' not limited: '
                    'threadpoolctl missing', repeat, 0 if quick else SETTLE,
                    ', right after %.0f ms (at least one call) of untimed calls of the same '
                    'implementation (so that no call is timed waking idle cores; --cold: '
                    'without them)' % (PRIME * 1e3)
                    if info.get('pause') == 'primed' else
                    ' (cold: no untimed call before it)' if not quick else ''))
    lines.append('machine: %s, %s cores, %s' % (info['cpu'], info['cores'], info['platform']))
    lines.append('versions: python %s, numpy %s, scipy %s, torch %s'
                 % (info['python'], info['numpy'], info['scipy'] or '-',
                    info['torch'] or 'not installed'))
    lines.append('ndconv: ' + '; '.join(info['config']))
    if info.get('compile_args') is not None:
        lines.append('compile flags: %s%s' % (' '.join(info['compile_args']),
                                              ' (DEBUG build: bounds checks on)'
                                              if info.get('debug_build') else ''))
    else:
        lines.append('compile flags: unknown (no ndconv._build_info)')
    settle = info.get('settle')
    lines.append('limits: NumPy GEMM %.1f GFLOP/s float32, %s float64 (%d^3); NumPy copy '
                 '%.1f GB/s (np.copyto of %.0f MiB, bytes read + written); %s'
                 % (info['gemm_gflops'], _num(info.get('gemm64_gflops'), '%.1f'),
                    info['gemm_n'], info['copy_gbs'], info['copy_mib'],
                    'timed like the calls: median of %d after a warm-up, each %.2f s '
                    'after the last' % (info.get('limit_repeat', repeat), settle)
                    if settle is not None else 'median'))
    lines.append('GFLOP/s = 2 * real multiply-adds / time (no padding, no inserted zeros); '
                 'GB/s = (bytes read + written) / time; ratio = time / fastest peer\'s time')
    lines.append('%% limit = rate / the GEMM GFLOP/s above of its dtype (convolutions) or '
                 '/ the copy GB/s (pooling); speed-up = ndconv\'s 1-thread median / its '
                 '%d-thread median, 1 thread timed in the same interleaved loop'
                 % info['threads'])
    return '\n'.join(lines)


def _num(v, fmt):
    return '-' if v is None else fmt % v


def limit_fraction(row, info):
    """A row's rate over this machine's limit in ``info`` (`machine`): the GEMM
    GFLOP/s of the row's dtype for a convolution, the copy GB/s for pooling.  None when the
    row was not timed or the limit is unknown."""
    if not info or row.get('rate') is None:
        return None
    if row['unit'] != 'GFLOP/s':
        limit = info.get('copy_gbs')
    elif row.get('dtype') == 'float64' and info.get('gemm64_gflops'):
        limit = info['gemm64_gflops']
    else:
        limit = info.get('gemm_gflops')
    return row['rate'] / limit if limit else None


def format_table(rows, info=None):
    """A plain aligned table of `run`'s rows, its notes, the geometric mean
    and the targets (`format_targets`).  ``info`` (`machine`'s facts) gives
    the ``% limit`` column; without it the column shows '-'."""
    head = ('case', 'dtype', 'implementation', 'thr', 'median ms', '1-thr ms', 'speed-up',
            'rate', 'unit', '% limit', 'ratio', 'peak MiB', 'max err', 'status')
    body = []
    notes = []
    last = None
    for r in rows:
        name = r['case'] if r['case'] != last else ''
        last = r['case']
        status = r['status']
        if r['note']:
            notes.append('%s / %s: %s' % (r['case'], r['impl'], r['note']))
            status += ' [%d]' % len(notes)
        own = r['impl'] == 'ndconv'           # the 1-thread columns are ndconv's
        frac = limit_fraction(r, info)
        body.append((name, r['dtype'] if name else '', r['impl'],
                     _num(r['threads'] if r['ms'] is not None else None, '%d'),
                     _num(r['ms'], '%.3f'),
                     _num(r.get('ms_1thread'), '%.3f') if own else '',
                     _num(r.get('speedup'), '%.2f') if own else '',
                     _num(r['rate'], '%.2f'), r['unit'] if r['rate'] is not None else '',
                     _num(None if frac is None else 100 * frac, '%.1f'),
                     _num(r['ratio'], '%.2f'), _num(r['mem_mib'], '%.1f'),
                     'ref' if r['impl'] == 'ndconv' and r['status'] == 'ok'
                     else _num(r['max_err'], '%.1e'), status))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    right = {3, 4, 5, 6, 7, 9, 10, 11, 12}

    def line(cells):
        return '  '.join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(head), line(['-' * w for w in widths])]
    last = None
    for r, cells in zip(rows, body):
        if last is not None and r['case'] != last:
            out.append('')
        last = r['case']
        out.append(line(cells))
    shapes = []
    seen = set()
    for r in rows:
        if r['case'] not in seen:
            seen.add(r['case'])
            shapes.append('%s: %s%s' % (r['case'], r['title'],
                                        ('; ' + r['shape']) if r['shape'] else ''))
    out.append('')
    out.append('cases:')
    out.extend('  ' + s for s in shapes)
    if notes:
        out.append('notes:')
        out.extend('  [%d] %s' % (i + 1, s) for i, s in enumerate(notes))
    g = geomean_ratio(rows)
    n = sum(1 for r in rows if r['impl'] == 'ndconv' and r['ratio'])
    out.append('')
    out.append('geometric mean of ndconv / fastest peer (time ratio, %d cases): %s'
               % (n, _num(g, '%.3f')))
    out.append('')
    out.append(format_targets(rows, info))
    return '\n'.join(out)


# The performance targets, checked by `format_targets`.
TARGET_GEMM = 0.75          # GEMM-shaped convolutions: >= 75 % of the GEMM GFLOP/s
GEMM_CHANNELS = 16          # GEMM-shaped: >= 16 input and >= 16 output channels
TARGET_COPY = 0.60          # pooling: >= 60 % of the copy GB/s
TARGET_MEM_SLACK_MIB = 16   # peak extra memory <= output size + 16 MiB
TARGET_SPEEDUP = 1.8        # n threads >= 1.8 times faster than 1 ...
TARGET_SPEEDUP_MS = 10.0    # ... on every case whose n-thread median is over 10 ms
TARGET_RATIO = 1.0          # every case at most as slow as the fastest peer
TARGET_GEOMEAN = 0.6        # and the geometric mean of the ratios <= 0.6


def _gemm_shaped(row):
    ch = row.get('channels')
    return row['kind'] == 'conv' and ch is not None and min(ch) >= GEMM_CHANNELS


def format_targets(rows, info=None):
    """One line per target: which cases (ndconv's rows) miss it in this run,
    with the number that misses.  The memory target is checked only when
    memory was measured; the limits only with ``info`` (`machine`)."""
    nd = [r for r in rows if r['impl'] == 'ndconv']
    timed = [r for r in nd if r['ms'] is not None]
    out = ['targets (this run\'s numbers, ndconv\'s rows):']

    def check(label, applies, ok, show, none='no case applies'):
        cases = [r for r in timed if applies(r)]
        if not cases:
            text = none
        else:
            missed = [r for r in cases if not ok(r)]
            if missed:
                text = 'missed by %s [%d of %d cases]' % (
                    ', '.join('%s (%s)' % (r['case'], show(r)) for r in missed),
                    len(missed), len(cases))
            else:
                text = 'met by all %d cases' % len(cases)
        out.append('  %s: %s' % (label, text))

    def pct(r):
        return '%.1f%%' % (100 * limit_fraction(r, info))

    if info and info.get('gemm_gflops'):
        check('conv with >= %d in and out channels at >= %.0f%% of GEMM (%.1f GFLOP/s'
              '%s)' % (GEMM_CHANNELS, 100 * TARGET_GEMM, info['gemm_gflops'],
                       ', float64 %.1f' % info['gemm64_gflops']
                       if info.get('gemm64_gflops') else ''),
              _gemm_shaped, lambda r: limit_fraction(r, info) >= TARGET_GEMM, pct)
    else:
        out.append('  conv at >= %.0f%% of GEMM: no machine limits given'
                   % (100 * TARGET_GEMM))
    if info and info.get('copy_gbs'):
        check('pooling at >= %.0f%% of copy (%.1f GB/s)' % (100 * TARGET_COPY,
                                                           info['copy_gbs']),
              lambda r: r['kind'] == 'pool',
              lambda r: limit_fraction(r, info) >= TARGET_COPY, pct)
    else:
        out.append('  pooling at >= %.0f%% of copy: no machine limits given'
                   % (100 * TARGET_COPY))
    if any(r.get('mem_mib') is not None for r in nd):
        check('peak extra memory <= output + %d MiB' % TARGET_MEM_SLACK_MIB,
              lambda r: r.get('mem_mib') is not None and r.get('out_mib') is not None,
              lambda r: r['mem_mib'] <= r['out_mib'] + TARGET_MEM_SLACK_MIB,
              lambda r: '%.1f MiB, output %.1f MiB' % (r['mem_mib'], r['out_mib']))
    n = max([r['threads'] for r in timed if r.get('threads')] or [0])
    label = '%s threads >= %.1fx faster than 1, cases over %g ms' % (
        n or 'n', TARGET_SPEEDUP, TARGET_SPEEDUP_MS)
    if not any(r.get('speedup') is not None for r in timed):
        out.append('  %s: not measured (a 1-thread run, or --no-speedup)' % label)
    else:
        check(label, lambda r: r.get('speedup') is not None and r['ms'] > TARGET_SPEEDUP_MS,
              lambda r: r['speedup'] >= TARGET_SPEEDUP, lambda r: '%.2fx' % r['speedup'],
              none='no case over %g ms' % TARGET_SPEEDUP_MS)
    check('ratio <= %g' % TARGET_RATIO, lambda r: r['ratio'] is not None,
          lambda r: r['ratio'] <= TARGET_RATIO, lambda r: '%.2f' % r['ratio'],
          none='no case with a timed peer')
    g = geomean_ratio(rows)
    out.append('  geometric mean <= %g: %s' % (
        TARGET_GEOMEAN, 'no case with a timed peer' if g is None else
        '%s (%.3f)' % ('met' if g <= TARGET_GEOMEAN else 'missed', g)))
    untimed = [r['case'] for r in nd if r['ms'] is None]
    if untimed:
        out.append('  not timed (in no target): %s' % ', '.join(untimed))
    return '\n'.join(out)


# ----------------------------------------------------------------------------
# Command line.

def _parser(prog=None):
    import argparse
    p = argparse.ArgumentParser(
        prog=prog, description='Time ndconv against PyTorch CPU, SciPy and NumPy '
        'references, case by case; every output is checked against ndconv\'s '
        'before timing.')
    from .cli import add_bench_arguments
    add_bench_arguments(p)
    return p


def _stderr_progress(done, total, name):
    if name is not None:
        sys.stderr.write('[%d/%d] %s\n' % (done + 1, total, name))
        sys.stderr.flush()


def main(argv=None, prog=None):
    """The command line: print the header, run, print the table."""
    p = _parser(prog)
    args = p.parse_args(argv)
    if args.list:
        for c in CASES:
            print('%-18s %s' % (c.name, c.title))
        return 0
    if args.repeat < 5:
        p.error('--repeat must be at least 5')
    if args.threads < 1:
        p.error('--threads must be at least 1')
    try:
        _select(args.cases)
    except ValueError as e:
        p.error(str(e))
    info = machine(args.threads, args.quick, args.repeat, args.cold)
    print(format_header(info, args.quick, args.repeat))
    print()
    sys.stdout.flush()
    rows = run(args.cases, args.threads, args.repeat, args.quick,
               progress=_stderr_progress, memory=args.memory, speedup=args.speedup,
               cold=args.cold)
    print(format_table(rows, info))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'machine': info, 'rows': rows}, f, indent=1)
    bad = [r for r in rows if r['status'] in ('mismatch', 'error')]
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
