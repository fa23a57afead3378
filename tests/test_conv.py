"""convolution_nd, deconvolution_nd and convolution_nd_grad_W against the
NumPy references of tests/reference.py, the adjoint identity, the cases of the
issue, dtypes, memory layouts, out=, thread counts and (where installed)
PyTorch."""

import concurrent.futures
import contextlib
import itertools
import zlib

import numpy as np
import pytest

import ndconv
import reference as R

DTYPES = [np.float32, np.float64]
CONV_PADS = ['int', 'axis', 'pairs', 'valid', 'same', 'full']
DECONV_PADS = ['int', 'axis', 'pairs', 'valid', 'same']
PATHS = ['direct', 'gemm']
MAX_SIDE = {1: 12, 2: 7, 3: 5, 4: 4, 5: 3}
MAX_K = {1: 4, 2: 3, 3: 3, 4: 2, 5: 2}


# ----------------------------------------------------------------------------
# Random parameter draws.

def _int(rng, v):
    """``v`` as a Python int or, now and then, a NumPy integer."""
    return np.int64(v) if rng.random() < 0.25 else int(v)


def _param(rng, n, lo, hi):
    """An int (every axis) or a tuple/list of ``n`` ints, in ``[lo, hi]``."""
    if rng.random() < 0.3:
        return _int(rng, rng.integers(lo, hi + 1))
    vals = tuple(_int(rng, v) for v in rng.integers(lo, hi + 1, n))
    return list(vals) if rng.random() < 0.2 else vals


def _pad(rng, form, n, hi):
    if form == 'int':
        return _int(rng, rng.integers(0, hi + 1))
    if form == 'axis':
        return tuple(_int(rng, v) for v in rng.integers(0, hi + 1, n))
    if form == 'pairs':
        return tuple((_int(rng, a), _int(rng, b)) for a, b in rng.integers(0, hi + 1, (n, 2)))
    return form


def _channels(rng, path):
    """(groups, in channels per group, out channels per group) for a path:
    'direct' keeps cig * cog <= 4, 'gemm' takes cig >= 3 and cog >= 2."""
    g = int(rng.integers(1, 3))
    if path == 'direct':
        cig, cog = [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 2), (1, 4),
                    (4, 1)][rng.integers(8)]
    else:
        cig, cog = int(rng.integers(3, 6)), int(rng.integers(2, 5))
    return g, cig, cog


def _rand(rng, shape, dtype=np.float64):
    return rng.uniform(-1, 1, shape).astype(dtype)


def draw_conv(rng, n, pad_form, path, pad_mode='constant', max_pad=3):
    """A convolution case whose output is not empty."""
    while True:
        g, cig, cog = _channels(rng, path)
        c = dict(N=int(rng.integers(1, 3)), g=g, cig=cig, cog=cog,
                 D=tuple(int(v) for v in rng.integers(1, MAX_SIDE[n] + 1, n)),
                 k=tuple(int(v) for v in rng.integers(1, MAX_K[n] + 1, n)),
                 stride=_param(rng, n, 1, 3), dilate=_param(rng, n, 1, 2),
                 input_dilate=1, pad=_pad(rng, pad_form, n, max_pad),
                 cover_all=bool(rng.random() < 0.5), pad_mode=pad_mode,
                 bias=bool(rng.random() < 0.5))
        if pad_mode == 'constant' and rng.random() < 0.5:
            c['input_dilate'] = _param(rng, n, 1, 3)
        out = R.conv_out_shape(c['D'], c['k'], c['stride'], c['pad'], c['cover_all'],
                               c['dilate'], c['input_dilate'])
        if min(out) >= 1:
            c['out'] = out
            return c


def conv_arrays(rng, c, dtype):
    x = _rand(rng, (c['N'], c['g'] * c['cig']) + c['D'], dtype)
    W = _rand(rng, (c['g'] * c['cog'], c['cig']) + c['k'], dtype)
    b = _rand(rng, (c['g'] * c['cog'],), dtype) if c['bias'] else None
    return x, W, b


def run_conv(c, x, W, b, **kw):
    return ndconv.convolution_nd(x, W, b, c['stride'], c['pad'], c['cover_all'],
                                 c['dilate'], c['g'], input_dilate=c['input_dilate'],
                                 pad_mode=c['pad_mode'], **kw)


def ref_conv(c, x, W, b):
    return R.conv_nd_ref(x, W, b, c['stride'], c['pad'], c['dilate'], c['input_dilate'],
                         c['pad_mode'], c['cover_all'], c['g'])


def draw_deconv(rng, n, pad_form, path, max_side=None):
    """A transposed convolution case with a legal output size (``outsize`` is
    None or drawn over the whole accepted range)."""
    max_side = max_side or MAX_SIDE[n]
    while True:
        g, cig, cog = _channels(rng, path)
        D = tuple(int(v) for v in rng.integers(1, max_side + 1, n))
        k = tuple(int(v) for v in rng.integers(1, MAX_K[n] + 2, n))
        c = dict(N=int(rng.integers(1, 3)), g=g, cig=cig, cog=cog, D=D, k=k,
                 stride=_param(rng, n, 1, 3), dilate=_param(rng, n, 1, 2),
                 pad=_pad(rng, pad_form, n, 2), outsize=None,
                 bias=bool(rng.random() < 0.5))
        pairs, same = R.deconv_pads(c['pad'], k, c['stride'], c['dilate'])
        ranges = [R.deconv_outsize_range(*a) for a in zip(
            D, k, R.ntuple(c['stride'], n), *zip(*pairs), R.ntuple(c['dilate'], n))]
        if any(lo > hi for lo, hi in ranges):
            continue
        default = R.deconv_out_shape(D, k, c['stride'], c['pad'], c['dilate'])
        if not same and (min(default) < 1 or rng.random() < 0.5):
            c['outsize'] = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in ranges)
        c['out'] = default if c['outsize'] is None else c['outsize']
        return c


def deconv_arrays(rng, c, dtype):
    x = _rand(rng, (c['N'], c['g'] * c['cig']) + c['D'], dtype)
    W = _rand(rng, (c['g'] * c['cig'], c['cog']) + c['k'], dtype)
    b = _rand(rng, (c['g'] * c['cog'],), dtype) if c['bias'] else None
    return x, W, b


def run_deconv(c, x, W, b, **kw):
    return ndconv.deconvolution_nd(x, W, b, c['stride'], c['pad'], c['outsize'],
                                   c['dilate'], c['g'], **kw)


def ref_deconv(c, x, W, b):
    return R.deconv_nd_ref(x, W, b, c['stride'], c['pad'], c['outsize'], c['dilate'],
                           c['g'])


# ----------------------------------------------------------------------------
# Convolution against the reference.

@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('pad_form', CONV_PADS)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('n', [1, 2, 3, 4])
def test_conv_matches_reference(n, dtype, pad_form, path, rng, close):
    for _ in range(2):
        c = draw_conv(rng, n, pad_form, path)
        x, W, b = conv_arrays(rng, c, dtype)
        y = run_conv(c, x, W, b)
        assert y.dtype == dtype
        close(y, ref_conv(c, x, W, b))


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('n', [1, 2, 3])
@pytest.mark.parametrize('mode', ['constant', 'reflect', 'edge', 'wrap'])
def test_conv_pad_modes(mode, n, dtype, path, rng, close):
    """Every pad_mode, pads up to wider than the input, with cover_all."""
    for form in ('pairs', 'int', 'same', 'full'):
        c = draw_conv(rng, n, form, path, pad_mode=mode, max_pad=2 * MAX_SIDE[n] + 1)
        x, W, b = conv_arrays(rng, c, dtype)
        close(run_conv(c, x, W, b), ref_conv(c, x, W, b))


@pytest.mark.parametrize('mode', ['constant', 'reflect', 'edge', 'wrap'])
def test_conv_pad_wider_than_input(mode, close):
    x = np.array([[[1.0, -2.0, 4.0]]])
    W = np.array([[[1.0, 10.0, 100.0]]])
    for pad in (((7, 5),), ((0, 9),), ((4, 0),)):
        for cover_all, stride in ((False, 1), (True, 2), (True, 4)):
            got = ndconv.convolution_nd(x, W, None, stride, pad, cover_all, pad_mode=mode)
            close(got, R.conv_nd_ref(x, W, None, stride, pad, pad_mode=mode,
                                     cover_all=cover_all))
    # a singleton axis, padded on both sides (numpy repeats the sample)
    x1 = np.array([[[[3.0], [5.0]]]])
    W1 = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    got = ndconv.convolution_nd(x1, W1, pad=((1, 2), (3, 2)), pad_mode=mode)
    close(got, R.conv_nd_ref(x1, W1, pads=((1, 2), (3, 2)), pad_mode=mode))


def test_conv_cover_all_pads_with_mode(close):
    """The extra high-side cells of cover_all are padding in the mode given."""
    x = np.arange(1.0, 8.0).reshape(1, 1, 7)
    W = np.ones((1, 1, 3))
    for mode in ('reflect', 'edge', 'wrap'):
        got = ndconv.convolution_nd(x, W, stride=3, cover_all=True, pad_mode=mode)
        # positions 0..8: the input, then 2 padding cells in the mode
        full = np.pad(x[0, 0], (0, 2), mode=mode)
        assert got.shape == (1, 1, 3)
        close(got[0, 0], [full[0:3].sum(), full[3:6].sum(), full[6:9].sum()])


@pytest.mark.parametrize('n', [5, 6])
def test_conv_high_dimensions(n, rng, close):
    D, k = (3, 4, 2, 3, 3, 2)[:n], (2, 1, 2, 2, 1, 2)[:n]
    x = _rand(rng, (2, 4) + D)
    W = _rand(rng, (6, 2) + k)
    b = _rand(rng, (6,))
    pad = tuple((i % 2, (i + 1) % 2) for i in range(n))
    stride = tuple(1 + i % 2 for i in range(n))
    y = ndconv.convolution_nd(x, W, b, stride, pad, True, 1, 2)
    close(y, R.conv_nd_ref(x, W, b, stride, pad, cover_all=True, groups=2))
    back = ndconv.deconvolution_nd(y, W, None, stride, pad, D, groups=2)
    close(back, R.deconv_nd_ref(y, W, None, stride, pad, D, groups=2))


def test_conv_asymmetric_pad_one_axis(close):
    x = np.arange(6.0).reshape(1, 1, 6)
    W = np.array([[[1.0, 2.0]]])
    got = ndconv.convolution_nd(x, W, pad=((1, 2),))
    assert got.shape == (1, 1, 8)
    close(got, R.conv_nd_ref(x, W, pads=((1, 2),)))


# ----------------------------------------------------------------------------
# Every kernel (see the kernel_variant fixture) at the sizes where tiling,
# channel chunking, row segments and register-block remainders start.

BIG_CASES = {
    # an output of several tiles (2500 and 8000 cells)
    'multitile_2d': dict(x=(2, 6, 50, 50), W=(4, 6, 3, 3), pad=1, stride=1),
    'multitile_3d': dict(x=(1, 4, 20, 20, 20), W=(3, 4, 3, 3, 3), pad=1, stride=1),
    # 324 cells in tiles of 64: tiles start inside a row, next to the padding
    'tile_midrow': dict(x=(1, 32, 18, 18), W=(3, 32, 11, 11), pad=5, stride=1),
    'strided_2d': dict(x=(1, 5, 97, 61), W=(6, 5, 4, 3), pad=((2, 0), (1, 3)),
                       stride=(1, 2)),
    # the channel sum split into chunks (large C_in, big kernels)
    'kchunk_2d': dict(x=(1, 160, 18, 18), W=(3, 160, 11, 11), pad=0, stride=1),
    'kchunk_3d': dict(x=(1, 48, 10, 10, 10), W=(2, 48, 7, 7, 7), pad=0, stride=1),
    'kchunk_groups': dict(x=(1, 192, 18, 18), W=(4, 96, 11, 11), pad=0, stride=1,
                          groups=2),
    # long rows (split into segments) with many channels
    'long_rows': dict(x=(1, 12, 3, 1100), W=(15, 12, 2, 3), pad=((0, 1), (1, 1)),
                      stride=(1, 1)),
    'long_rows_strided': dict(x=(1, 7, 2, 2300), W=(9, 7, 1, 5), pad=(0, 2),
                              stride=(1, 2)),
    # few channels: one channel on a big volume; one output, many inputs
    'direct_1ch_2d': dict(x=(2, 1, 60, 70), W=(2, 1, 5, 5), pad=2, stride=1),
    'direct_1ch_3d': dict(x=(1, 1, 24, 24, 24), W=(1, 1, 7, 7, 7), pad=3, stride=1),
    'direct_cout1': dict(x=(2, 16, 30, 30), W=(1, 16, 3, 3), pad=1, stride=2),
}

_CACHE = {}


def _cached(key, make):
    """Inputs and references shared by the kernel variants of one case."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _big_conv(name, dtype):
    def make():
        c = BIG_CASES[name]
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        x = _rand(rng, c['x'], dtype)
        W = _rand(rng, c['W'], dtype)
        b = _rand(rng, (c['W'][0],), dtype)
        ref = R.conv_nd_ref(x, W, b, c['stride'], c['pad'], groups=c.get('groups', 1))
        return x, W, b, ref
    return _cached((name, np.dtype(dtype).name, 'conv'), make)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', sorted(BIG_CASES))
def test_conv_big_shapes(name, dtype, kernel_variant, close):
    c = BIG_CASES[name]
    x, W, b, ref = _big_conv(name, dtype)
    got = ndconv.convolution_nd(x, W, b, c['stride'], c['pad'], groups=c.get('groups', 1))
    close(got, ref)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('L', [1, 7, 8, 15, 16, 17, 31, 33, 64, 1023, 1025, 1100])
def test_conv_edge_sizes(L, dtype, kernel_variant, close):
    """Output channels around the register blocks (6, 14) and row lengths
    around the vector widths and the row segment."""
    def make():
        rng = np.random.default_rng(L)
        out = []
        for cog, cig, k, s, pad in ((1, 1, 3, 1, 1), (5, 3, 2, 1, 0), (6, 2, 3, 2, 2),
                                    (7, 4, 1, 1, 0), (13, 2, 4, 3, (1, 2)),
                                    (14, 1, 3, 1, (2, 0)), (15, 5, 3, 2, 1),
                                    (29, 2, 2, 1, (0, 1))):
            if L + sum(R.pad_pairs([pad], 1)[0]) < k:
                continue
            x = _rand(rng, (2, cig, L), dtype)
            W = _rand(rng, (cog, cig, k), dtype)
            b = _rand(rng, (cog,), dtype)
            out.append((x, W, b, s, [pad], R.conv_nd_ref(x, W, b, s, [pad])))
        return out
    for x, W, b, s, pad, ref in _cached((L, np.dtype(dtype).name, 'edge'), make):
        close(ndconv.convolution_nd(x, W, b, s, pad), ref)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('n', [1, 2, 3])
def test_conv_random_sweep_variants(n, dtype, kernel_variant, close):
    """Random cases (every pad form, groups, dilation, input dilation, pad
    modes) through each kernel variant."""
    def make():
        rng = np.random.default_rng(100 * n + DTYPES.index(dtype))
        out = []
        for i in range(12):
            mode = ('constant', 'reflect', 'edge', 'wrap')[i % 4]
            c = draw_conv(rng, n, CONV_PADS[i % 6], PATHS[i % 2], pad_mode=mode)
            x, W, b = conv_arrays(rng, c, dtype)
            out.append((c, x, W, b, ref_conv(c, x, W, b)))
            d = draw_deconv(rng, n, DECONV_PADS[i % 5], PATHS[(i // 2) % 2])
            xd, Wd, bd = deconv_arrays(rng, d, dtype)
            out.append((d, xd, Wd, bd, ref_deconv(d, xd, Wd, bd)))
        return out
    for c, x, W, b, ref in _cached((n, np.dtype(dtype).name, 'sweep'), make):
        if 'pad_mode' in c:
            close(run_conv(c, x, W, b), ref)
        else:
            close(run_deconv(c, x, W, b), ref)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', ['kchunk_2d', 'kchunk_3d', 'multitile_2d',
                                  'tile_midrow', 'long_rows', 'direct_1ch_2d'])
def test_grad_w_big_shapes(name, dtype, rng, close):
    c = BIG_CASES[name]
    x = _rand(rng, c['x'], dtype)
    ksize = c['W'][2:]
    out = R.conv_out_shape(c['x'][2:], ksize, c['stride'], c['pad'])
    gy = _rand(rng, (c['x'][0], c['W'][0]) + out, dtype)
    got = ndconv.convolution_nd_grad_W(x, gy, ksize, c['stride'], c['pad'])
    assert got.dtype == dtype
    # the loop reference over thousands of cells is slow: check through the
    # identity <gW, V> = <conv(x, V), gy> for two random V, and against the
    # reference where the output is small
    if np.prod(out) <= 400:
        close(got, R.conv_grad_w_ref(x, gy, ksize, c['stride'], c['pad']))
    for _ in range(2):
        V = _rand(rng, c['W'])
        lhs = np.sum(got.astype(np.float64) * V)
        rhs = np.sum(R.conv_nd_ref(x, V, None, c['stride'], c['pad']) * gy)
        close(np.array(lhs), np.array(rhs), dtype)


DECONV_BIG = {
    # 18 x 18 outputs from 160 channels and 11 x 11 kernels
    'kchunk': ((1, 160, 8, 8), (160, 3, 11, 11), 1, 0),
    'multitile': ((2, 6, 25, 30), (6, 4, 4, 3), (2, 2), ((1, 2), (0, 1))),
    'long_rows': ((1, 9, 2, 700), (9, 16, 2, 4), (1, 2), ((0, 1), (1, 2))),
    'direct': ((1, 1, 30, 40), (1, 2, 5, 3), (2, 3), 1),
}


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('case', sorted(DECONV_BIG))
def test_deconv_big_shapes(case, dtype, kernel_variant, close):
    xs, Ws, stride, pad = DECONV_BIG[case]

    def make():
        rng = np.random.default_rng(len(case) + 7 * DTYPES.index(dtype))
        x = _rand(rng, xs, dtype)
        W = _rand(rng, Ws, dtype)
        b = _rand(rng, (Ws[1],), dtype)
        return x, W, b, R.deconv_nd_ref(x, W, b, stride, pad)
    x, W, b, ref = _cached((case, np.dtype(dtype).name, 'deconv'), make)
    close(ndconv.deconvolution_nd(x, W, b, stride, pad), ref)


# ----------------------------------------------------------------------------
# Transposed convolution against the reference.

@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('pad_form', DECONV_PADS)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('n', [1, 2, 3, 4])
def test_deconv_matches_reference(n, dtype, pad_form, path, rng, close):
    for _ in range(2):
        c = draw_deconv(rng, n, pad_form, path)
        x, W, b = deconv_arrays(rng, c, dtype)
        y = run_deconv(c, x, W, b)
        assert y.dtype == dtype
        assert y.shape[2:] == c['out']
        close(y, ref_deconv(c, x, W, b))


@pytest.mark.parametrize('s', [1, 2, 3, 4])
@pytest.mark.parametrize('k,d,pad', [(1, 1, 0), (3, 1, 0), (3, 1, 1), (4, 2, (2, 1)),
                                     (5, 1, (0, 3)), (2, 3, (1, 0)), (11, 1, 3)])
def test_deconv_outsize_whole_range(k, d, pad, s, rng, close):
    """Every output size Chainer accepts works and is right; one past either
    end is a ValueError that names the range."""
    for D in (1, 2, 5):
        pairs = R.pad_pairs([pad], 1)
        lo, hi = R.deconv_outsize_range(D, k, s, *pairs[0], d)
        x = _rand(rng, (2, 3, D))
        W = _rand(rng, (3, 2, k))
        for O in range(lo, hi + 1):
            got = ndconv.deconvolution_nd(x, W, None, s, [pad], (O,), d)
            assert got.shape == (2, 2, O)
            close(got, R.deconv_nd_ref(x, W, None, s, [pad], (O,), d))
        bad = [hi + 1] + ([lo - 1] if lo > 1 else [])
        for O in bad:
            with pytest.raises(ValueError, match=r'outsize.*\b%d\b.*\b%d\b' % (lo, hi)):
                ndconv.deconvolution_nd(x, W, None, s, [pad], (O,), d)


def test_deconv_outsize_2d_mixed(rng, close):
    x = _rand(rng, (1, 2, 3, 4))
    W = _rand(rng, (2, 3, 3, 2))
    stride, pad = (3, 2), ((1, 0), (0, 1))
    r0 = R.deconv_outsize_range(3, 3, 3, 1, 0)
    r1 = R.deconv_outsize_range(4, 2, 2, 0, 1)
    for O in itertools.product(range(r0[0], r0[1] + 1), range(r1[0], r1[1] + 1)):
        got = ndconv.deconvolution_nd(x, W, None, stride, pad, O)
        close(got, R.deconv_nd_ref(x, W, None, stride, pad, O))
    with pytest.raises(ValueError, match=r'outsize\[1\]'):
        ndconv.deconvolution_nd(x, W, None, stride, pad, (r0[0], r1[1] + 1))


@pytest.mark.parametrize('n', [1, 2, 3])
def test_deconv_same_is_d_times_stride(n, rng, close):
    for _ in range(6):
        D = tuple(int(v) for v in rng.integers(1, 6, n))
        k = tuple(int(v) for v in rng.integers(1, 6, n))
        s = tuple(int(v) for v in rng.integers(1, 5, n))
        d = tuple(int(v) for v in rng.integers(1, 3, n))
        x = _rand(rng, (1, 2) + D)
        W = _rand(rng, (2, 3) + k)
        got = ndconv.deconvolution_nd(x, W, None, s, 'same', None, d)
        assert got.shape[2:] == tuple(a * b for a, b in zip(D, s))
        close(got, R.deconv_nd_ref(x, W, None, s, 'same', None, d))


# ----------------------------------------------------------------------------
# The adjoint identity.

def _adjoint_case(rng, n):
    while True:
        g = int(rng.integers(1, 4))
        D = tuple(int(v) for v in rng.integers(1, MAX_SIDE[n] + 1, n))
        k = tuple(int(v) for v in rng.integers(1, MAX_K[n] + 2, n))
        s = tuple(int(v) for v in rng.integers(1, 4, n))
        d = tuple(int(v) for v in rng.integers(1, 3, n))
        pads = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (n, 2)))
        ranges = [R.deconv_outsize_range(*a) for a in zip(D, k, s, *zip(*pads), d)]
        if all(lo <= hi for lo, hi in ranges):
            return g, D, k, s, d, pads, ranges


def _conv_for(O, D, k, s, d, pads):
    """Pads and cover_all of a convolution of size-O inputs giving D outputs:
    cover_all when every axis is at or below the default size, else the
    cover_all cells of the low axes written as extra high padding."""
    default = [R.deconv_axis_out(*a) for a in zip(D, k, s, *zip(*pads), d)]
    if all(o <= df for o, df in zip(O, default)):
        return pads, True
    new = []
    for o, Di, ki, si, di, (lo, hi) in zip(O, D, k, s, d, pads):
        extra = max((Di - 1) * si + R.extent(ki, di) - (o + lo + hi), 0)
        new.append((lo, hi + extra))
    return tuple(new), False


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('n', [1, 2, 3, 4, 5])
def test_adjoint_identity(n, seed, rng):
    g, D, k, s, d, pads, ranges = _adjoint_case(rng, n)
    cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    W = _rand(rng, (g * cout, cin) + k)
    y = _rand(rng, (2, g * cout) + D)
    # every legal outsize: all combinations for n <= 2, else every offset from
    # the low end applied to all axes at once plus one random combination
    if n <= 2:
        sizes = list(itertools.product(*[range(lo, hi + 1) for lo, hi in ranges]))
    else:
        span = max(hi - lo for lo, hi in ranges)
        sizes = [tuple(min(lo + j, hi) for lo, hi in ranges) for j in range(span + 1)]
        sizes.append(tuple(int(rng.integers(lo, hi + 1)) for lo, hi in ranges))
    for O in sizes:
        a = _rand(rng, (2, g * cin) + O)
        cpads, cover_all = _conv_for(O, D, k, s, d, pads)
        ya = ndconv.convolution_nd(a, W, None, s, cpads, cover_all, d, g)
        assert ya.shape == y.shape, (O, ya.shape, y.shape)
        da = ndconv.deconvolution_nd(y, W, None, s, pads, O, d, g)
        assert da.shape == a.shape
        lhs, rhs = np.sum(ya * y), np.sum(a * da)
        bound = np.sum(np.abs(ya) * np.abs(y)) + 1.0
        assert abs(lhs - rhs) <= 1e-12 * bound * 10, (O, lhs, rhs)


# ----------------------------------------------------------------------------
# The weight gradient.

@pytest.mark.parametrize('pad_form', CONV_PADS)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('n', [1, 2, 3, 4])
def test_grad_w_matches_reference(n, dtype, pad_form, rng, close):
    for path in PATHS:
        c = draw_conv(rng, n, pad_form, path)
        x, W, _ = conv_arrays(rng, c, dtype)
        gy = _rand(rng, (c['N'], c['g'] * c['cog']) + c['out'], dtype)
        gW = ndconv.convolution_nd_grad_W(x, gy, c['k'], c['stride'], c['pad'],
                                          c['cover_all'], c['dilate'], c['g'],
                                          input_dilate=c['input_dilate'])
        assert gW.dtype == dtype and gW.shape == W.shape
        ref = R.conv_grad_w_ref(x, gy, c['k'], c['stride'], c['pad'], c['cover_all'],
                                c['dilate'], c['g'], c['input_dilate'])
        close(gW, ref)
        # linearity: <gW, V> == <conv(x, V), gy>, the convolution by the reference
        V = _rand(rng, W.shape)
        rhs = np.sum(ref_conv(c, x, V, None) * gy)
        close(np.array(np.sum(gW.astype(np.float64) * V)), np.array(rhs), dtype)


@pytest.mark.parametrize('n', [1, 2, 3])
def test_grad_w_consistent_with_conv(n, rng):
    """<gW, V> == <convolution_nd(x, V), gy> with both sides from ndconv."""
    for _ in range(3):
        c = draw_conv(rng, n, 'pairs', 'gemm')
        x, W, _ = conv_arrays(rng, c, np.float64)
        gy = _rand(rng, (c['N'], c['g'] * c['cog']) + c['out'])
        gW = ndconv.convolution_nd_grad_W(x, gy, c['k'], c['stride'], c['pad'],
                                          c['cover_all'], c['dilate'], c['g'],
                                          input_dilate=c['input_dilate'])
        lhs = np.sum(gW * W)
        rhs = np.sum(run_conv(c, x, W, None) * gy)
        assert np.isclose(lhs, rhs, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------
# The cases of the issue.

def test_user_case_shrink_and_grow(rng, close):
    x = _rand(rng, (1, 1, 100, 100))
    W = _rand(rng, (1, 1, 4, 4))
    kw = dict(stride=(2, 1), pad=((1, 1), (2, 2)))
    y = ndconv.convolution_nd(x, W, input_dilate=(1, 2), **kw)
    assert y.shape == (1, 1, 50, 200)
    close(y, R.conv_nd_ref(x, W, None, kw['stride'], kw['pad'], input_dilate=(1, 2)))


def test_user_case_alexnet(rng, close):
    # the full first layer: shapes (and values, the reference is cheap here)
    x = _rand(rng, (1, 3, 227, 227), np.float32)
    W = _rand(rng, (96, 3, 11, 11), np.float32)
    y = ndconv.convolution_nd(x, W, stride=4)
    assert y.shape == (1, 96, 55, 55) and y.dtype == np.float32
    close(y, R.conv_nd_ref(x, W, stride=4))
    back = ndconv.deconvolution_nd(y, W, stride=4)
    assert back.shape == (1, 3, 227, 227) and back.dtype == np.float32
    # values of a small-channel version
    x = _rand(rng, (1, 1, 227, 227))
    W = _rand(rng, (2, 1, 11, 11))
    b = _rand(rng, (2,))
    y = ndconv.convolution_nd(x, W, b, stride=4)
    assert y.shape == (1, 2, 55, 55)
    close(y, R.conv_nd_ref(x, W, b, stride=4))
    back = ndconv.deconvolution_nd(y, W, stride=4)
    assert back.shape == (1, 1, 227, 227)
    close(back, R.deconv_nd_ref(y, W, stride=4))


def test_user_case_small_deconvolutions():
    x = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    W = x.copy()
    np.testing.assert_array_equal(ndconv.deconvolution_nd(x, W)[0, 0],
                                  [[0, 0, 1], [0, 4, 6], [4, 12, 9]])
    np.testing.assert_array_equal(ndconv.deconvolution_nd(x, W, pad=1)[0, 0], [[4]])
    np.testing.assert_array_equal(ndconv.deconvolution_nd(x, W, stride=2)[0, 0],
                                  [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]])
    assert np.array_equal(x, [[[[0, 1], [2, 3]]]])


def test_user_case_same_stride2():
    x = np.array([[[[0, 0, 1.5], [0, 1, 0], [0, 0, 0]]]])
    W = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = ndconv.deconvolution_nd(x, W, stride=2, pad='same')[0, 0]
    expected = np.zeros((6, 6))
    expected[0:2, 4:6] = [[1.5, 3], [4.5, 6]]
    expected[2:4, 2:4] = [[1, 2], [3, 4]]
    np.testing.assert_array_equal(y, expected)


# ----------------------------------------------------------------------------
# dtypes.

@pytest.mark.parametrize('fn', ['conv', 'deconv', 'grad_w'])
def test_float16_in_float16_out(fn, rng, close):
    x = _rand(rng, (2, 4, 9, 7), np.float16)
    W = _rand(rng, (4, 2, 3, 3), np.float16)
    b = _rand(rng, (4,), np.float16)
    if fn == 'conv':
        got = ndconv.convolution_nd(x, W, b, 2, 1, groups=2)
        ref = R.conv_nd_ref(x, W, b, 2, 1, groups=2)
    elif fn == 'deconv':
        got = ndconv.deconvolution_nd(x, W, b, 2, 1, groups=2)
        ref = R.deconv_nd_ref(x, W, b, 2, 1, groups=2)
    else:
        gy = _rand(rng, (2, 4, 5, 4), np.float16)
        got = ndconv.convolution_nd_grad_W(x, gy, 3, 2, 1, groups=2)
        ref = R.conv_grad_w_ref(x, gy, 3, 2, 1, groups=2)
    assert got.dtype == np.float16
    close(got, ref)


def test_float16_accumulates_in_float32():
    """1000 products of 0.1: a float16 running sum stalls far from 100."""
    x = np.full((1, 1, 1000), 0.1, np.float16)
    W = np.ones((1, 1, 1000), np.float16)
    exact = 1000 * float(np.float16(0.1))
    y = ndconv.convolution_nd(x, W)
    assert y.dtype == np.float16
    assert abs(float(y[0, 0, 0]) - exact) <= 0.0625      # one float16 ulp at 100
    g = ndconv.convolution_nd_grad_W(x, np.ones((1, 1, 1), np.float16), 1000)
    assert g.dtype == np.float16 and np.allclose(g.astype(float), float(np.float16(0.1)))
    x = np.full((1, 1000, 1), 0.1, np.float16)
    W = np.ones((1000, 1, 1), np.float16)
    y = ndconv.deconvolution_nd(x, W)
    assert y.dtype == np.float16
    assert abs(float(y[0, 0, 0]) - exact) <= 0.0625


MIXED = [
    (np.float32, np.float64, None),
    (np.float64, np.float32, np.float32),
    (np.float16, np.float32, None),
    (np.float16, np.float16, np.float32),
    (np.float32, np.float32, np.float64),
    (np.float16, np.float16, np.float64),
    (np.float32, np.float16, np.float16),
]


@pytest.mark.parametrize('xt,wt,bt', MIXED)
def test_mixed_dtypes_follow_result_type(xt, wt, bt, rng, close):
    x = _rand(rng, (1, 2, 6, 5), xt)
    W = _rand(rng, (2, 2, 2, 3), wt)
    b = None if bt is None else _rand(rng, (2,), bt)
    want = np.result_type(*[a.dtype for a in (x, W, b) if a is not None])
    y = ndconv.convolution_nd(x, W, b, pad=1)
    assert y.dtype == want
    close(y, R.conv_nd_ref(x, W, b, pads=1), want)
    y = ndconv.deconvolution_nd(x, W, b, stride=2)
    assert y.dtype == want
    close(y, R.deconv_nd_ref(x, W, b, stride=2), want)
    gy = _rand(rng, (1, 2, 5, 3), wt)
    g = ndconv.convolution_nd_grad_W(x, gy, (2, 3))
    assert g.dtype == np.result_type(x.dtype, gy.dtype)
    close(g, R.conv_grad_w_ref(x, gy, (2, 3)), g.dtype)


BAD_DTYPES = [np.int32, np.int64, np.uint8, np.bool_, np.complex128, object]


@pytest.mark.parametrize('bad', BAD_DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize('which', ['x', 'W', 'b'])
def test_bad_dtypes_raise_type_error(which, bad):
    arrs = dict(x=np.ones((1, 2, 5, 5)), W=np.ones((2, 2, 3, 3)), b=np.ones(2))
    arrs[which] = arrs[which].astype(bad)
    with pytest.raises(TypeError):
        ndconv.convolution_nd(arrs['x'], arrs['W'], arrs['b'])
    with pytest.raises(TypeError):
        ndconv.deconvolution_nd(arrs['x'], arrs['W'], arrs['b'])
    if which != 'b':
        gy = np.ones((1, 2, 3, 3))
        x = arrs['x'] if which == 'x' else np.ones((1, 2, 5, 5))
        if which == 'W':
            gy = gy.astype(bad)
        with pytest.raises(TypeError):
            ndconv.convolution_nd_grad_W(x, gy, 3)


# ----------------------------------------------------------------------------
# Memory layouts: views, Fortran order, read-only, memory-mapped.

def _layouts(base, tmp_path, name):
    """The same values in several layouts: (label, array)."""
    out = []
    big = np.zeros(base.shape[:-1] + (2 * base.shape[-1] + 1,), base.dtype)
    big[..., 1::2] = base
    out.append(('strided', big[..., 1::2]))
    rev = base[..., ::-1].copy()
    out.append(('reversed', rev[..., ::-1]))
    out.append(('fortran', np.asfortranarray(base)))
    perm = np.ascontiguousarray(np.swapaxes(base, 0, 1))
    out.append(('swapped', np.swapaxes(perm, 0, 1)))
    ro = base.copy()
    ro.flags.writeable = False
    out.append(('readonly', ro))
    path = tmp_path / ('%s.dat' % name)
    mm = np.memmap(path, dtype=base.dtype, mode='w+', shape=base.shape)
    mm[...] = base
    mm.flush()
    del mm
    out.append(('memmap', np.memmap(path, dtype=base.dtype, mode='r', shape=base.shape)))
    for label, a in out:
        assert np.array_equal(a, base), label
    return out


@pytest.mark.parametrize('dtype', DTYPES)
def test_layouts_give_right_answer_and_are_unchanged(dtype, rng, tmp_path, close):
    x = _rand(rng, (2, 4, 7, 6), dtype)
    W = _rand(rng, (6, 2, 3, 2), dtype)
    Wd = _rand(rng, (4, 3, 3, 2), dtype)
    b = _rand(rng, (6,), dtype)
    gy = _rand(rng, (2, 6) + R.conv_out_shape((7, 6), (3, 2), 2, ((1, 0), (0, 1))),
               dtype)
    ref_c = R.conv_nd_ref(x, W, b, 2, ((1, 0), (0, 1)), groups=2)
    ref_d = R.deconv_nd_ref(x, Wd, b, 2, 1, groups=2)
    ref_g = R.conv_grad_w_ref(x, gy, (3, 2), 2, ((1, 0), (0, 1)), groups=2)
    xs = _layouts(x, tmp_path, 'x')
    Ws = _layouts(W, tmp_path, 'W')
    Wds = _layouts(Wd, tmp_path, 'Wd')
    bs = _layouts(b[None], tmp_path, 'b')
    gys = _layouts(gy, tmp_path, 'gy')
    for i, (label, xa) in enumerate(xs):
        Wa, Wda, ba, gya = Ws[i][1], Wds[i][1], bs[i][1][0], gys[i][1]
        keep = [a.copy() for a in (xa, Wa, Wda, ba, gya)]
        close(ndconv.convolution_nd(xa, Wa, ba, 2, ((1, 0), (0, 1)), groups=2), ref_c)
        close(ndconv.deconvolution_nd(xa, Wda, ba, 2, 1, groups=2), ref_d)
        close(ndconv.convolution_nd_grad_W(xa, gya, (3, 2), 2, ((1, 0), (0, 1)),
                                           groups=2), ref_g)
        for before, after in zip(keep, (xa, Wa, Wda, ba, gya)):
            assert np.array_equal(before, after), label


def test_input_not_modified_with_pad_modes(rng):
    x = _rand(rng, (1, 2, 5, 4))
    W = _rand(rng, (3, 2, 3, 3))
    keep = x.copy(), W.copy()
    x.flags.writeable = False
    W.flags.writeable = False
    for mode in ('reflect', 'edge', 'wrap', 'constant'):
        ndconv.convolution_nd(x, W, pad=4, pad_mode=mode, cover_all=True, stride=3)
    assert np.array_equal(x, keep[0]) and np.array_equal(W, keep[1])


# ----------------------------------------------------------------------------
# Empty batches and channels.

def test_empty_batch_and_channels():
    W = np.ones((3, 2, 2, 2))
    y = ndconv.convolution_nd(np.ones((0, 2, 5, 5)), W)
    assert y.shape == (0, 3, 4, 4)
    y = ndconv.convolution_nd(np.ones((2, 2, 5, 5)), np.ones((0, 2, 2, 2)))
    assert y.shape == (2, 0, 4, 4)
    b = np.array([1.0, 2.0, 3.0])
    y = ndconv.convolution_nd(np.ones((2, 0, 5, 5)), np.ones((3, 0, 2, 2)), b)
    assert y.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], y.shape))
    y = ndconv.deconvolution_nd(np.ones((0, 2, 5, 5)), np.ones((2, 3, 2, 2)), stride=2)
    assert y.shape == (0, 3, 10, 10)
    y = ndconv.deconvolution_nd(np.ones((1, 0, 5, 5)), np.ones((0, 3, 2, 2)), b)
    assert y.shape == (1, 3, 6, 6)
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], y.shape))
    y = ndconv.deconvolution_nd(np.ones((1, 2, 5, 5)), np.ones((2, 0, 2, 2)))
    assert y.shape == (1, 0, 6, 6)
    g = ndconv.convolution_nd_grad_W(np.ones((0, 2, 5, 5)), np.ones((0, 3, 4, 4)), 2)
    assert g.shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(g, 0)
    g = ndconv.convolution_nd_grad_W(np.ones((2, 0, 5, 5)), np.ones((2, 3, 4, 4)), 2)
    assert g.shape == (3, 0, 2, 2)


# ----------------------------------------------------------------------------
# out=.

@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_out_is_filled_and_returned(dtype, rng, close):
    x = _rand(rng, (2, 3, 6, 5), dtype)
    W = _rand(rng, (3, 4, 3, 2), dtype)
    b = _rand(rng, (4,), dtype)
    out = np.full((2, 3, 4, 4), np.nan, dtype)
    got = ndconv.convolution_nd(x, W[:, :3], None, out=out)
    assert got is out
    close(out, R.conv_nd_ref(x, W[:, :3]))
    out = np.full((2, 4, 8, 6), np.nan, dtype)
    got = ndconv.deconvolution_nd(x, W, b, out=out)
    assert got is out
    close(out, R.deconv_nd_ref(x, W, b))


def test_bad_out_raises_value_error():
    x = np.ones((1, 2, 5, 5))
    W = np.ones((2, 2, 3, 3))
    shape = (1, 2, 5, 5)        # with pad=1
    buf = np.ones(200)
    Wb = buf[:36].reshape(2, 2, 3, 3)           # W inside a buffer out overlaps
    bads = {
        'shape': np.empty((1, 2, 4, 4)),
        'dtype': np.empty(shape, np.float32),
        'fortran': np.asfortranarray(np.empty(shape)),
        'strided': np.empty((1, 2, 5, 10))[..., ::2],
        'readonly': np.empty(shape),
        'overlap x': x,
        'overlap W': buf[20:70].reshape(shape),
        'list': np.empty(shape).tolist(),
    }
    bads['readonly'].flags.writeable = False
    for label, out in bads.items():
        Wx = Wb if label == 'overlap W' else W
        with pytest.raises(ValueError, match='out'):
            ndconv.convolution_nd(x, Wx, None, pad=1, out=out)
    # deconvolution
    y = np.ones((1, 2, 3, 3))
    shape = (1, 2, 5, 5)
    for out in (np.empty((1, 2, 6, 6)), np.empty(shape, np.float16),
                np.empty((1, 2, 5, 10))[..., ::2]):
        with pytest.raises(ValueError, match='out'):
            ndconv.deconvolution_nd(y, W, out=out)
    buf = np.ones(100)
    yb = buf[:18].reshape(1, 2, 3, 3)
    with pytest.raises(ValueError, match='out'):
        ndconv.deconvolution_nd(yb, W, out=buf[:50].reshape(shape))
    # the float16 result needs a float16 out
    with pytest.raises(ValueError, match='out'):
        ndconv.convolution_nd(x.astype(np.float16), W.astype(np.float16), pad=1,
                              out=np.empty(shape, np.float32))


# ----------------------------------------------------------------------------
# NaN and Inf.

def test_nan_and_inf_propagate(close):
    x = np.zeros((1, 3, 8, 9))
    x[0, 1, 2, 3] = np.nan
    x[0, 2, 6, 7] = np.inf
    for W in (np.ones((2, 3, 3, 2)), np.ones((1, 3, 3, 2)), np.ones((4, 3, 3, 2))):
        y = ndconv.convolution_nd(x, W, stride=(2, 1), pad=1)
        close(y, R.conv_nd_ref(x, W, None, (2, 1), 1))
        assert np.isnan(y).any() and np.isinf(y).any()
        g = ndconv.deconvolution_nd(x, W.swapaxes(0, 1).copy(), stride=2)
        close(g, R.deconv_nd_ref(x, W.swapaxes(0, 1), stride=2))


def test_nan_and_inf_weights_propagate(close):
    """IEEE: a NaN or Inf weight times a padding zero is NaN, as in the
    dense reference (and PyTorch), even for outputs made only of padding.
    (The zeros that input_dilate inserts are skipped, not multiplied, by
    design: DESIGN.md, so they are left out here.)"""
    x = np.ones((1, 2, 3, 4))
    W = np.ones((3, 2, 2, 3))
    W[0, 0, 0, 0] = np.nan
    W[1, 1, 1, 2] = np.inf
    W[2, 0, 1, 1] = -np.inf
    for kw in (dict(pads=4), dict(pads=((0, 3), (2, 0)), stride=2)):
        got = ndconv.convolution_nd(x, W, None, kw.get('stride', 1), kw['pads'])
        close(got, R.conv_nd_ref(x, W, None, **kw))
    xd = np.ones((1, 3, 3, 4))
    close(ndconv.deconvolution_nd(xd, W, stride=3), R.deconv_nd_ref(xd, W, stride=3))


@pytest.mark.parametrize('order', ['>', '<'])
def test_byte_orders(order, rng, close):
    x = _rand(rng, (1, 2, 6, 5)).astype(order + 'f8')
    W = _rand(rng, (3, 2, 2, 2)).astype(order + 'f4')
    b = _rand(rng, (3,)).astype(order + 'f8')
    y = ndconv.convolution_nd(x, W, b, pad=1)
    assert y.dtype.kind == 'f' and y.dtype.itemsize == 8
    close(y, R.conv_nd_ref(x, W, b, pads=1), np.float64)
    Wd = W.astype(order + 'f8').swapaxes(0, 1)
    close(ndconv.deconvolution_nd(x, Wd, None, 2), R.deconv_nd_ref(x, Wd, None, 2),
          np.float64)
    gy = _rand(rng, (1, 3, 5, 4)).astype(order + 'f8')
    close(ndconv.convolution_nd_grad_W(x, gy, 2), R.conv_grad_w_ref(x, gy, 2), np.float64)


# ----------------------------------------------------------------------------
# Thread counts, repeated calls and concurrent callers.

THREAD_CASES = {
    'conv_direct': ('conv', (2, 1, 64, 70), (2, 1, 5, 5), dict(pad=2)),
    'conv_gemm': ('conv', (2, 6, 50, 50), (5, 6, 3, 3), dict(pad=1)),
    'conv_kchunk': ('conv', (1, 96, 18, 18), (3, 96, 11, 11), {}),
    'conv_modes': ('conv', (2, 4, 30, 33), (4, 2, 3, 4),
                   dict(pad=5, pad_mode='reflect', groups=2, stride=(2, 3),
                        cover_all=True)),
    'deconv_direct': ('deconv', (2, 1, 30, 40), (1, 2, 5, 3), dict(stride=2, pad=1)),
    'deconv_gemm': ('deconv', (2, 6, 25, 30), (6, 4, 4, 3), dict(stride=(2, 3))),
    'grad_w_small': ('grad_w', (2, 2, 40, 40), (2, 2, 3, 3), dict(pad=1)),
    'grad_w_gemm': ('grad_w', (4, 6, 50, 50), (5, 6, 3, 3), dict(stride=2, dilate=2)),
    'grad_w_kchunk': ('grad_w', (1, 96, 18, 18), (3, 96, 11, 11), {}),
    'grad_w_channels_last': ('grad_w', (2, 32, 30, 20), (8, 32, 3, 3), dict(pad=1)),
}


# The channels-last weight gradient (conv_grad_w_cl) takes over where the
# input channels of a group fill most of the micro-kernel's NR columns; 24,
# 25 and 32 channels do on every ISA and dtype.  (x, W, keywords)
CL_GRAD_W_CASES = {
    'plain_2d': ((2, 32, 9, 11), (8, 32, 3, 3), dict(pad=1)),
    'ragged_3d': ((1, 25, 7, 6, 9), (5, 25, 3, 2, 3),
                  dict(stride=(2, 1, 2), pad=((1, 0), (0, 1), (2, 1)), dilate=(1, 2, 1))),
    'groups_1d': ((2, 48, 37), (8, 24, 4), dict(stride=3, pad=2, groups=2)),
    'four_axes': ((1, 24, 4, 5, 3, 6), (4, 24, 2, 3, 2, 2), dict(pad=1)),
    'input_dilate': ((1, 32, 6, 7), (7, 32, 3, 3), dict(input_dilate=(2, 3), pad=2)),
    'cover_all': ((2, 24, 10, 9), (6, 24, 3, 4), dict(stride=(3, 2), cover_all=True)),
}


@pytest.mark.parametrize('isa', ['auto', 'avx2', 'generic'])
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', sorted(CL_GRAD_W_CASES))
@pytest.mark.parametrize('small_blocks', [False, True])
def test_grad_w_channels_last(name, dtype, isa, small_blocks, rng, close, monkeypatch):
    """Against the loop reference, through every micro-kernel ISA; with the
    blocking shrunk, rows are cut into segments and planes into row blocks."""
    from ndconv import _conv, _engine
    if _conv.select_isa(isa)[0] != isa and isa != 'auto':
        _conv.select_isa('auto')
        pytest.skip('this CPU has no %s' % isa)
    calls = []
    real = _conv.conv_grad_w_cl

    def counting(*args):
        calls.append(args[7:9])
        return real(*args)
    monkeypatch.setattr(_conv, 'conv_grad_w_cl', counting)
    monkeypatch.setattr(_engine, 'METHOD', 'implicit')   # 'auto' is gemm on generic
    if small_blocks:
        monkeypatch.setattr(_engine, '_CL_STAGE_BYTES', 2048)
        monkeypatch.setattr(_engine, '_CL_GY_BYTES', 1024)
    try:
        xs, Ws, kw = CL_GRAD_W_CASES[name]
        x = _rand(rng, xs, dtype)
        out = ndconv.convolution_nd(x, _rand(rng, Ws, dtype), **kw).shape
        gy = _rand(rng, out, dtype)
        got = ndconv.convolution_nd_grad_W(x, gy, Ws[2:], **kw)
    finally:
        _conv.select_isa('auto')
    assert calls, 'the channels-last kernel did not run'
    ref = R.conv_grad_w_ref(x, gy, Ws[2:], kw.get('stride', 1), kw.get('pad', 0),
                            kw.get('cover_all', False), kw.get('dilate', 1),
                            kw.get('groups', 1), kw.get('input_dilate', 1))
    close(got, ref)


def _spy(monkeypatch, name, keep=lambda args, result: result):
    """Record keep(args, result) of every call of ndconv._conv.<name>."""
    from ndconv import _conv
    seen = []
    real = getattr(_conv, name)

    def spy(*args):
        result = real(*args)
        seen.append(keep(args, result))
        return result
    monkeypatch.setattr(_conv, name, spy)
    return seen


def _at_one_and_two_threads(call):
    """[call() at 1 thread, call() at 2 threads]; the count is restored."""
    before = ndconv.get_num_threads()
    try:
        got = []
        for t in (1, 2):
            ndconv.set_num_threads(t)
            got.append(call())
        return got
    finally:
        ndconv.set_num_threads(before)


@contextlib.contextmanager
def _kernels_for(isa):
    """The micro-kernels of ``isa`` for the block (a skip where this CPU
    lacks it), then the automatic choice again."""
    from ndconv import _conv
    if _conv.select_isa(isa)[0] != isa and isa != 'auto':
        _conv.select_isa('auto')
        pytest.skip('this CPU has no %s' % isa)
    try:
        yield
    finally:
        _conv.select_isa('auto')


def _conv_or_deconv(kind, x, W, b, kw):
    if kind == 'conv':
        return ndconv.convolution_nd(x, W, b, **kw)
    return ndconv.deconvolution_nd(x, W, b, **kw)


def _conv_or_deconv_ref(kind, x, W, b, kw):
    if kind == 'conv':
        return R.conv_nd_ref(x, W, b, kw.get('stride', 1), kw.get('pad', 0),
                             kw.get('dilate', 1), 1, kw.get('pad_mode', 'constant'), False,
                             kw.get('groups', 1))
    return R.deconv_nd_ref(x, W, b, kw.get('stride', 1), kw.get('pad', 0))


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('kw', [dict(pad=1), dict(pad=((2, 0), 1, (0, 1))),
                                dict(pad=1, dilate=(1, 2, 1)), dict(pad=(0, 1, 1), groups=2)])
def test_grad_w_runs_of_planes(kw, dtype, rng, close, monkeypatch):
    """Channels-last weight gradient of deep volumes: consecutive planes of a
    part keep the staged input planes they share (13 planes a volume, so
    parts cross from one volume to the next); 1 and 2 threads bitwise."""
    calls = _spy(monkeypatch, 'conv_grad_w_cl')
    g = kw.get('groups', 1)
    x = _rand(rng, (2, 32 * g, 13, 6, 7), dtype)
    ks = (3, 3, 2)
    out = ndconv.convolution_nd(x, _rand(rng, (8, 32) + ks, dtype), **kw).shape
    gy = _rand(rng, out, dtype)
    got = _at_one_and_two_threads(lambda: ndconv.convolution_nd_grad_W(x, gy, ks, **kw))
    assert calls, 'the channels-last kernel did not run'
    np.testing.assert_array_equal(got[0], got[1])
    close(got[0], R.conv_grad_w_ref(x, gy, ks, 1, kw['pad'], False, kw.get('dilate', 1), g))


# Winograd F(2, 3): three taps on each of 2 or 3 axes, unit steps, 16 or more
# input channels a group.  Odd sizes leave half tiles at the ends; the
# transposed case is a stride-1 deconvolution (its correlation view).
WINOGRAD_CASES = {
    'plain_3d': ('conv', (2, 16, 5, 6, 7), (8, 16, 3, 3, 3), dict(pad=1)),
    'valid_2d': ('conv', (1, 20, 9, 14), (12, 20, 3, 3), {}),
    'asym_reflect': ('conv', (1, 16, 7, 9), (9, 16, 3, 3),
                     dict(pad=((2, 0), (1, 3)), pad_mode='reflect')),
    'edge_wrap_3d': ('conv', (1, 16, 4, 5, 3), (8, 16, 3, 3, 3),
                     dict(pad=(1, 2, 1), pad_mode='wrap')),
    'edge_mode': ('conv', (2, 16, 6, 5), (8, 16, 3, 3), dict(pad=2, pad_mode='edge')),
    'groups_bias': ('conv', (1, 32, 6, 7), (16, 16, 3, 3), dict(pad=1, groups=2)),
    'transposed': ('deconv', (1, 16, 5, 6, 7), (16, 8, 3, 3, 3), dict(pad=1)),
}


@pytest.mark.parametrize('isa', ['auto', 'avx2', 'generic'])
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', sorted(WINOGRAD_CASES))
@pytest.mark.parametrize('small_blocks', [False, True])
def test_winograd(name, dtype, isa, small_blocks, rng, close, monkeypatch):
    """Against the loop reference, through every micro-kernel ISA, 1 and 2
    threads bitwise equal; with small blocks, rows of tiles are cut into
    segments of 3 tiles and blocks hold 2 tile rows."""
    from ndconv import _conv, _engine
    status = _spy(monkeypatch, 'conv_winograd')
    monkeypatch.setattr(_engine, 'METHOD', 'winograd')
    kind, xs, Ws, kw = WINOGRAD_CASES[name]
    x, W = _rand(rng, xs, dtype), _rand(rng, Ws, dtype)
    b = _rand(rng, (W.shape[1] if kind == 'deconv' else W.shape[0],), dtype)
    with _kernels_for(isa):
        if small_blocks:
            plan = _engine._wino_plan
            nr = _conv.kernel_shape()[1 if dtype == np.float32 else 2]

            def small(*args):
                p = plan(*args)
                return None if p is None else (3, 2, -(-6 // nr) * nr)
            monkeypatch.setattr(_engine, '_wino_plan', small)
        got = _at_one_and_two_threads(lambda: _conv_or_deconv(kind, x, W, b, kw))
    assert status and all(s == 0 for s in status), status
    np.testing.assert_array_equal(got[0], got[1])
    close(got[0], _conv_or_deconv_ref(kind, x, W, b, kw))


@pytest.mark.parametrize('dtype', DTYPES)
def test_winograd_nonfinite(dtype, rng, close, monkeypatch):
    """A NaN or inf in the input, or an inf weight, reaches exactly the
    outputs the direct sum gives NaN or inf: the implicit kernel redoes the
    call (Winograd's transforms would spread them over whole tiles)."""
    status = _spy(monkeypatch, 'conv_winograd')
    x = _rand(rng, (1, 16, 6, 7, 8), dtype)
    W = _rand(rng, (8, 16, 3, 3, 3), dtype)
    x[0, 3, 2, 3, 4] = np.nan
    x[0, 5, 0, 6, 1] = np.inf
    got = ndconv.convolution_nd(x, W, pad=1, method='winograd')
    ref = R.conv_nd_ref(x, W, None, 1, 1)
    assert status == [2]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    assert 0 < fin.sum() < fin.size
    close(got[fin], ref[fin])
    W[2, 1, 0, 1, 2] = np.inf
    x = _rand(rng, (1, 16, 6, 7, 8), dtype)
    got = ndconv.convolution_nd(x, W, pad=1)
    ref = R.conv_nd_ref(x, W, None, 1, 1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))


def test_winograd_where_it_does_not_apply(rng, close):
    """method='winograd' on shapes it does not take (5 taps, stride 2, few
    channels, 1 axis) runs the implicit GEMM."""
    for xs, Ws, kw in [((1, 16, 9, 9), (4, 16, 5, 5), {}),
                       ((1, 16, 9, 9), (4, 16, 3, 3), dict(stride=2)),
                       ((1, 4, 9, 9), (4, 4, 3, 3), {}),
                       ((2, 16, 30), (4, 16, 3), dict(pad=1))]:
        x, W = _rand(rng, xs), _rand(rng, Ws)
        close(ndconv.convolution_nd(x, W, method='winograd', **kw),
              R.conv_nd_ref(x, W, None, kw.get('stride', 1), 0 if 'pad' not in kw else 1))


@pytest.mark.parametrize('dtype', DTYPES)
def test_winograd_items_at_two_threads(dtype, rng, monkeypatch):
    """Many small work items (segments of 3 tiles, 2 tile rows) at 2
    threads, forward and weight gradient, called again and again: every
    result bitwise equal to the 1-thread one.  Each thread must decode its
    own item (batch, group, first tiles); an item field the threads shared
    gave a wrong 2-thread result in 2-30 % of these calls."""
    from ndconv import _conv, _engine
    monkeypatch.setattr(_engine, 'METHOD', 'winograd')
    nr = _conv.kernel_shape()[1 if dtype == np.float32 else 2]
    plan, gw_plan = _engine._wino_plan, _engine._wino_grad_w_plan
    monkeypatch.setattr(_engine, '_wino_plan', lambda *a: None if plan(*a) is None
                        else (3, 2, -(-6 // nr) * nr))
    monkeypatch.setattr(_engine, '_wino_grad_w_plan',
                        lambda *a: None if gw_plan(*a) is None else (3, 2))
    fwd = _spy(monkeypatch, 'conv_winograd')
    gw = _spy(monkeypatch, 'conv_grad_w_winograd')
    x = _rand(rng, (2, 64, 40, 40), dtype)         # 280 items a call
    W = _rand(rng, (16, 32, 3, 3), dtype)
    gy = _rand(rng, (2, 16, 40, 40), dtype)
    calls = [lambda: ndconv.convolution_nd(x, W, pad=1, groups=2),
             lambda: ndconv.convolution_nd_grad_W(x, gy, 3, pad=1, groups=2)]
    want = _at_one_and_two_threads(lambda: [f() for f in calls])[0]
    before = ndconv.get_num_threads()
    ndconv.set_num_threads(2)
    try:
        for _ in range(200):
            for f, w in zip(calls, want):
                np.testing.assert_array_equal(f(), w)
    finally:
        ndconv.set_num_threads(before)
    assert fwd and gw, 'a Winograd kernel did not run'


# The weight gradient by Winograd F(3, 2): three taps on each of 2 or 3 axes,
# unit steps, input channels filling most of NR (24 and 32 do on every ISA
# and dtype).  Odd output sizes leave half tiles.  (x, W, keywords)
WINOGRAD_GRAD_W_CASES = {
    'plain_3d': ((2, 32, 5, 6, 7), (8, 32, 3, 3, 3), dict(pad=1)),
    'valid_2d': ((1, 24, 9, 14), (12, 24, 3, 3), {}),
    'asym_pad_2d': ((2, 32, 7, 9), (9, 32, 3, 3), dict(pad=((2, 0), (1, 3)))),
    'edges_3d': ((1, 24, 4, 5, 3), (10, 24, 3, 3, 3), dict(pad=(1, 2, 0))),
    'groups': ((2, 64, 6, 7), (16, 32, 3, 3), dict(pad=1, groups=2)),
    'cover_all': ((1, 32, 8, 7), (8, 32, 3, 3), dict(pad=2, cover_all=True)),
}


@pytest.mark.parametrize('isa', ['auto', 'avx2', 'generic'])
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', sorted(WINOGRAD_GRAD_W_CASES))
@pytest.mark.parametrize('small_blocks', [False, True])
def test_grad_w_winograd(name, dtype, isa, small_blocks, rng, close, monkeypatch):
    """Against the loop reference, through every micro-kernel ISA, 1 and 2
    threads bitwise equal; with small blocks, work items are 2 tile rows of
    3 tiles (so rows of tiles are cut into segments)."""
    from ndconv import _engine
    calls = _spy(monkeypatch, 'conv_grad_w_winograd', lambda args, result: args[9:11])
    monkeypatch.setattr(_engine, 'METHOD', 'winograd')
    xs, Ws, kw = WINOGRAD_GRAD_W_CASES[name]
    x = _rand(rng, xs, dtype)
    out = ndconv.convolution_nd(x, _rand(rng, Ws, dtype), **kw).shape
    gy = _rand(rng, out, dtype)
    with _kernels_for(isa):
        if small_blocks:
            plan = _engine._wino_grad_w_plan
            monkeypatch.setattr(_engine, '_wino_grad_w_plan',
                                lambda *args: None if plan(*args) is None else (3, 2))
        got = _at_one_and_two_threads(
            lambda: ndconv.convolution_nd_grad_W(x, gy, Ws[2:], **kw))
    assert calls, 'the Winograd weight gradient did not run'
    assert not small_blocks or set(calls) == {(3, 2)}
    np.testing.assert_array_equal(got[0], got[1])
    close(got[0], R.conv_grad_w_ref(x, gy, Ws[2:], 1, kw.get('pad', 0),
                                    kw.get('cover_all', False), 1, kw.get('groups', 1)))


@pytest.mark.parametrize('dtype', DTYPES)
def test_grad_w_winograd_nonfinite(dtype, rng, close, monkeypatch):
    """A NaN in x or an inf in gy, or sums that overflow only in Winograd's
    transforms: the channels-last kernel redoes the phase, so NaN and inf
    land where the direct sum puts them."""
    wino = _spy(monkeypatch, 'conv_grad_w_winograd')
    cl = _spy(monkeypatch, 'conv_grad_w_cl')
    x = _rand(rng, (1, 32, 6, 7, 8), dtype)
    gy = _rand(rng, (1, 8, 6, 7, 8), dtype)
    x[0, 3, 2, 3, 4] = np.nan
    gy[0, 5, 0, 6, 1] = np.inf
    got = ndconv.convolution_nd_grad_W(x, gy, 3, pad=1, method='winograd')
    ref = R.conv_grad_w_ref(x, gy, (3, 3, 3), 1, 1)
    assert wino and cl
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    assert 0 < fin.sum() < fin.size
    close(got[fin], ref[fin])
    # Finite in the direct sum (one product per weight), but A gy adds two
    # cells of a tile and overflows.
    del wino[:], cl[:]
    x = np.zeros((1, 32, 4, 4), dtype)
    gy = np.zeros((1, 8, 4, 4), dtype)
    x[0, :, 1, 1] = 1
    gy[0, 0, 0, :2] = np.finfo(dtype).max / 1.5
    got = ndconv.convolution_nd_grad_W(x, gy, 3, pad=1, method='winograd')
    ref = R.conv_grad_w_ref(x, gy, (3, 3), 1, 1)
    assert wino and cl
    assert np.isfinite(ref).all() and np.isfinite(got).all()
    close(got, ref)


def test_grad_w_winograd_where_it_does_not_apply(rng, close, monkeypatch):
    """method='winograd' on weight gradients it does not take (5 taps,
    stride 2, dilation 2, 8 input channels, 1 axis) runs another kernel."""
    calls = _spy(monkeypatch, 'conv_grad_w_winograd')
    for xs, ks, kw in [((1, 32, 9, 9), (5, 5), {}),
                       ((1, 32, 9, 9), (3, 3), dict(stride=2)),
                       ((1, 32, 9, 9), (3, 3), dict(dilate=2)),
                       ((1, 8, 9, 9), (3, 3), {}),
                       ((2, 32, 30), (3,), dict(pad=1))]:
        x = _rand(rng, xs)
        out = ndconv.convolution_nd(x, _rand(rng, (4, xs[1]) + ks), **kw).shape
        gy = _rand(rng, out)
        close(ndconv.convolution_nd_grad_W(x, gy, ks, method='winograd', **kw),
              R.conv_grad_w_ref(x, gy, ks, kw.get('stride', 1), kw.get('pad', 0), False,
                                kw.get('dilate', 1)))
    assert not calls


# Swapped blocks of the implicit GEMM (output cells on the micro-kernel's MR
# rows, channels on its NR columns) run where the channels of a group are a
# multiple of NR (32 is, on every ISA and dtype) and rows of 6, 7, 13 or 14
# outputs would waste NR columns.  (kind, x, W, keywords)
SWAPPED_CASES = {
    'stride4_2d': ('conv', (2, 3, 37, 53), (32, 3, 5, 5), dict(stride=4, pad=(0, 2))),
    'bias_groups': ('conv', (1, 8, 11, 13), (64, 4, 3, 3), dict(pad=1, groups=2)),
    'reflect_dilate': ('conv', (1, 5, 12, 11), (32, 5, 3, 2),
                       dict(pad=(2, (1, 3)), dilate=(1, 2), pad_mode='reflect')),
    'one_axis': ('conv', (3, 6, 40), (32, 6, 4), dict(stride=3, pad=1)),
    'three_axes': ('conv', (1, 4, 5, 6, 13), (32, 4, 2, 3, 3),
                   dict(pad=1, pad_mode='wrap', stride=(1, 2, 1))),
    'transposed': ('deconv', (1, 6, 5, 7), (6, 32, 3, 4), dict(stride=(2, 3), pad=1)),
}


@pytest.mark.parametrize('isa', ['auto', 'avx2', 'generic'])
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', sorted(SWAPPED_CASES))
@pytest.mark.parametrize('small_blocks', [False, True])
def test_swapped_blocks(name, dtype, isa, small_blocks, rng, close, monkeypatch):
    """Against the loop reference, through every micro-kernel ISA, 1 and 2
    threads bitwise equal; with the blocking shrunk, rows are cut into
    segments and the input channels into chunks."""
    from ndconv import _engine
    tables = _spy(monkeypatch, 'conv_implicit', lambda args, result: list(args[6][6::7]))
    monkeypatch.setattr(_engine, 'METHOD', 'implicit')   # 'auto' is gemm on generic
    if small_blocks:
        monkeypatch.setattr(_engine, '_QSEG', 5)
        monkeypatch.setattr(_engine, '_PACK_BYTES', 4096)
    kind, xs, Ws, kw = SWAPPED_CASES[name]
    x, W = _rand(rng, xs, dtype), _rand(rng, Ws, dtype)
    b = _rand(rng, (W.shape[1] if kind == 'deconv' else W.shape[0],), dtype)
    with _kernels_for(isa):
        got = _at_one_and_two_threads(lambda: _conv_or_deconv(kind, x, W, b, kw))
    assert any(any(t) for t in tables), 'no phase ran swapped blocks'
    np.testing.assert_array_equal(got[0], got[1])
    close(got[0], _conv_or_deconv_ref(kind, x, W, b, kw))


def _thread_call(kind, x, W, kw):
    if kind == 'conv':
        return ndconv.convolution_nd(x, W, **kw)
    if kind == 'deconv':
        return ndconv.deconvolution_nd(x, W, **kw)
    gkw = {k: v for k, v in kw.items() if k not in ('pad_mode',)}
    out = R.conv_out_shape(x.shape[2:], W.shape[2:], gkw.get('stride', 1),
                           gkw.get('pad', 0), gkw.get('cover_all', False),
                           gkw.get('dilate', 1))
    gy = np.cos(np.arange(x.shape[0] * W.shape[0] * int(np.prod(out))) * 0.37)
    gy = gy.reshape((x.shape[0], W.shape[0]) + out).astype(x.dtype)
    return ndconv.convolution_nd_grad_W(x, gy, W.shape[2:], **gkw)


def _one_vs_two(name, dtype, rng, threads):
    kind, xs, Ws, kw = THREAD_CASES[name]
    x = _rand(rng, xs, dtype)
    W = _rand(rng, Ws, dtype)
    threads.set_num_threads(1)
    one = _thread_call(kind, x, W, kw)
    threads.set_num_threads(2)
    two = _thread_call(kind, x, W, kw)
    again = _thread_call(kind, x, W, kw)
    assert np.array_equal(one, two)
    assert np.array_equal(two, again)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', sorted(k for k in THREAD_CASES if k.startswith('grad')))
def test_one_thread_equals_two_bitwise_grad_w(name, dtype, rng, threads):
    _one_vs_two(name, dtype, rng, threads)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', sorted(k for k in THREAD_CASES if not k.startswith('grad')))
def test_one_thread_equals_two_bitwise(name, dtype, rng, threads, kernel_variant):
    _one_vs_two(name, dtype, rng, threads)


def test_concurrent_python_threads(rng):
    x = _rand(rng, (2, 6, 40, 40))
    W = _rand(rng, (5, 6, 3, 3))
    want = ndconv.convolution_nd(x, W, pad=1)
    want_d = ndconv.deconvolution_nd(want, W, pad=1)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(ndconv.convolution_nd, x, W, None, 1, 1) for _ in range(6)]
        futs_d = [pool.submit(ndconv.deconvolution_nd, want, W, None, 1, 1)
                  for _ in range(6)]
        for f in futs:
            assert np.array_equal(f.result(), want)
        for f in futs_d:
            assert np.array_equal(f.result(), want_d)


# ----------------------------------------------------------------------------
# PyTorch, where installed (never required).

def _torch_conv(torch, n):
    F = torch.nn.functional
    return ([F.conv1d, F.conv2d, F.conv3d][n - 1],
            [F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d][n - 1])


@pytest.mark.filterwarnings('ignore:Using padding=.same.')
@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('n', [1, 2, 3])
def test_conv_vs_torch(n, seed, rng, torch, close):
    conv, _ = _torch_conv(torch, n)
    for _ in range(3):
        g = int(rng.integers(1, 4))
        D = tuple(int(v) for v in rng.integers(4, 10, n))
        k = tuple(int(v) for v in rng.integers(1, 4, n))
        s = tuple(int(v) for v in rng.integers(1, 4, n))
        d = tuple(int(v) for v in rng.integers(1, 3, n))
        p = tuple(int(v) for v in rng.integers(0, 3, n))
        if min(R.conv_out_shape(D, k, s, p, False, d)) < 1:
            continue
        x = _rand(rng, (2, 2 * g) + D)
        W = _rand(rng, (3 * g, 2) + k)
        b = _rand(rng, (3 * g,))
        want = conv(torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(b),
                    stride=s, padding=p, dilation=d, groups=g).numpy()
        close(ndconv.convolution_nd(x, W, b, s, p, False, d, g), want)
    # torch's 'same' (stride 1) puts the odd cell on the high side too
    x = _rand(rng, (1, 2) + (7,) * n)
    W = _rand(rng, (2, 2) + (4,) * n)
    want = conv(torch.from_numpy(x), torch.from_numpy(W), padding='same',
                dilation=1).numpy()
    close(ndconv.convolution_nd(x, W, pad='same'), want)


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('n', [1, 2, 3])
def test_deconv_vs_torch(n, seed, rng, torch, close):
    _, convt = _torch_conv(torch, n)
    for _ in range(3):
        g = int(rng.integers(1, 4))
        D = tuple(int(v) for v in rng.integers(2, 7, n))
        k = tuple(int(v) for v in rng.integers(1, 4, n))
        s = tuple(int(v) for v in rng.integers(1, 4, n))
        d = tuple(int(v) for v in rng.integers(1, 3, n))
        p = tuple(int(v) for v in rng.integers(0, 2, n))
        default = R.deconv_out_shape(D, k, s, p, d)
        if min(default) < 1:
            continue
        op = tuple(int(rng.integers(0, si)) for si in s)
        x = _rand(rng, (2, 2 * g) + D)
        W = _rand(rng, (2 * g, 3) + k)
        b = _rand(rng, (3 * g,))
        want = convt(torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(b),
                     stride=s, padding=p, output_padding=op, groups=g,
                     dilation=d).numpy()
        outsize = tuple(o + e for o, e in zip(default, op))
        close(ndconv.deconvolution_nd(x, W, b, s, p, outsize, d, g), want)


def test_grad_w_vs_torch(rng, torch, close):
    x = _rand(rng, (2, 4, 9, 8))
    W = _rand(rng, (6, 2, 3, 2))
    xt = torch.from_numpy(x)
    Wt = torch.from_numpy(W).requires_grad_(True)
    y = torch.nn.functional.conv2d(xt, Wt, stride=(2, 1), padding=(1, 2),
                                   dilation=(1, 2), groups=2)
    gy = _rand(rng, tuple(y.shape))
    (y * torch.from_numpy(gy)).sum().backward()
    got = ndconv.convolution_nd_grad_W(x, gy, (3, 2), (2, 1), (1, 2), False, (1, 2), 2)
    close(got, Wt.grad.numpy())


# ----------------------------------------------------------------------------
# method=: every kernel by name, each against the reference.

METHOD_KERNELS = {'implicit': ('conv_implicit', 'conv_grad_w_cl', 'conv_grad_w_implicit'),
                  'gemm': ('conv_gemm', 'conv_grad_w'),
                  'direct': ('conv_direct',)}


def _counting(monkeypatch, names):
    from ndconv import _conv
    calls = []
    for name in names:
        real = getattr(_conv, name)
        monkeypatch.setattr(_conv, name,
                            lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    return calls


@pytest.mark.parametrize('method', ['auto', 'implicit', 'gemm', 'direct'])
@pytest.mark.parametrize('dtype', DTYPES)
def test_method_runs_its_kernel(method, dtype, rng, close, monkeypatch):
    calls = _counting(monkeypatch, sorted({k for v in METHOD_KERNELS.values() for k in v}))
    x = _rand(rng, (2, 6, 9, 8), dtype)
    W = _rand(rng, (4, 3, 3, 2), dtype)
    b = _rand(rng, (4,), dtype)
    kw = dict(stride=(2, 1), pad=((1, 0), (2, 1)), dilate=(1, 2), groups=2)
    close(ndconv.convolution_nd(x, W, b, **kw, method=method),
          R.conv_nd_ref(x, W, b, kw['stride'], kw['pad'], kw['dilate'], groups=kw['groups']))
    Wd = _rand(rng, (6, 2, 3, 2), dtype)
    close(ndconv.deconvolution_nd(x, Wd, None, 2, 1, method=method),
          R.deconv_nd_ref(x, Wd, None, 2, 1))
    if method != 'auto':
        assert calls and set(calls) <= set(METHOD_KERNELS[method]), calls
    if method != 'direct':
        del calls[:]
        gy = _rand(rng, (2, 4, 4, 9), dtype)
        close(ndconv.convolution_nd_grad_W(x, gy, (3, 2), **kw, method=method),
              R.conv_grad_w_ref(x, gy, (3, 2), kw['stride'], kw['pad'], False,
                                kw['dilate'], kw['groups']))
        if method != 'auto':
            assert calls and set(calls) <= set(METHOD_KERNELS[method]), calls


@pytest.mark.parametrize('bad, exc, word', [
    ('fft', ValueError, "'implicit'"), ('', ValueError, 'method'),
    (None, TypeError, 'string'), (1, TypeError, 'method'), ('GEMM', ValueError, 'gemm')])
def test_method_bad_values(bad, exc, word):
    x = np.ones((1, 2, 5, 5), np.float32)
    W = np.ones((2, 2, 3, 3), np.float32)
    for call in (lambda: ndconv.convolution_nd(x, W, method=bad),
                 lambda: ndconv.deconvolution_nd(x, W, method=bad),
                 lambda: ndconv.convolution_nd_grad_W(x, np.ones((1, 2, 3, 3)), 3,
                                                      method=bad)):
        with pytest.raises(exc, match=word):
            call()


def test_method_direct_is_forward_only_and_keyword_only():
    x = np.ones((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="'auto', 'winograd', 'implicit', 'gemm'"):
        ndconv.convolution_nd_grad_W(x, np.ones((1, 2, 3, 3)), 3, method='direct')
    with pytest.raises(TypeError):
        ndconv.convolution_nd(x, np.ones((2, 2, 3, 3)), None, 1, 0, False, 1, 1, 'gemm')


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('kw', [dict(pad=1), dict(pad=((2, 1), (1, 1), (0, 1)), pad_mode='reflect'),
                                dict(pad=1, dilate=(2, 1, 1)), dict(stride=(1, 2, 1), pad=1, groups=2),
                                dict(pad=(0, 1, 1), pad_mode='wrap')])
def test_conv3d_runs_of_planes(kw, dtype, rng, close):
    """Deep volumes: a work item takes a run of planes along axis 0 and keeps
    the packed input planes consecutive planes share (13 planes, so runs do
    not divide them; 1 and 2 threads)."""
    g = kw.get('groups', 1)
    x = _rand(rng, (2, 4, 13, 6, 7), dtype)
    W = _rand(rng, (6, 4 // g, 3, 3, 2), dtype)
    b = _rand(rng, (6,), dtype)
    ref = R.conv_nd_ref(x, W, b, kw.get('stride', 1), kw['pad'], kw.get('dilate', 1), 1,
                        kw.get('pad_mode', 'constant'), False, g)
    before = ndconv.get_num_threads()
    try:
        for t in (1, 2):
            ndconv.set_num_threads(t)
            close(ndconv.convolution_nd(x, W, b, **kw), ref)
    finally:
        ndconv.set_num_threads(before)
    Wd = _rand(rng, (4, 3, 4, 3, 2), dtype)
    close(ndconv.deconvolution_nd(x, Wd, None, (2, 1, 2), 1),
          R.deconv_nd_ref(x, Wd, None, (2, 1, 2), 1))
