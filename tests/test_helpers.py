"""Size helpers, thread control, show_config, and the argument errors of the
convolution family."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import ndconv
import reference as R


# ----------------------------------------------------------------------------
# conv_outsize / deconv_outsize against the reference formulas.

def _pad(rng, n):
    form = rng.integers(6)
    if form == 0:
        return int(rng.integers(0, 4))
    if form == 1:
        return tuple(int(v) for v in rng.integers(0, 4, n))
    if form == 2:
        return tuple((int(a), int(b)) for a, b in rng.integers(0, 4, (n, 2)))
    return ('valid', 'same', 'full')[form - 3]


@pytest.mark.parametrize('n', [1, 2, 3, 4])
def test_conv_outsize_matches_formula(n, rng):
    for _ in range(150):
        size = tuple(int(v) for v in rng.integers(1, 12, n))
        k = tuple(int(v) for v in rng.integers(1, 6, n))
        s = tuple(int(v) for v in rng.integers(1, 5, n))
        d = tuple(int(v) for v in rng.integers(1, 4, n))
        r = tuple(int(v) for v in rng.integers(1, 4, n))
        pad = _pad(rng, n)
        cover_all = bool(rng.integers(2))
        want = R.conv_out_shape(size, k, s, pad, cover_all, d, r)
        if min(want) >= 1:
            assert ndconv.conv_outsize(size, k, s, pad, cover_all, d, r) == want
        else:
            with pytest.raises(ValueError):
                ndconv.conv_outsize(size, k, s, pad, cover_all, d, r)


def test_conv_outsize_examples():
    assert ndconv.conv_outsize((100, 100), 4, stride=(2, 1), pad=((1, 1), (2, 2)),
                               input_dilate=(1, 2)) == (50, 200)
    assert ndconv.conv_outsize((227, 227), 11, 4) == (55, 55)
    assert ndconv.conv_outsize((10,), 3, 3) == (3,)
    assert ndconv.conv_outsize((10,), 3, 3, cover_all=True) == (4,)
    # a string pad fixes the size: cover_all is ignored
    assert ndconv.conv_outsize((10,), 3, 3, 'valid', cover_all=True) == (3,)
    assert ndconv.conv_outsize((10, 7), 3, (3, 2), 'same') == (4, 4)
    assert ndconv.conv_outsize((10, 7), 3, (3, 2), 'same', cover_all=True) == (4, 4)
    assert ndconv.conv_outsize((10,), 4, 1, 'full', dilate=2) == (16,)
    # 'same' counts the dilated input: ceil(D' / s) with D' = (D - 1) * r + 1
    assert ndconv.conv_outsize((5,), 3, 2, 'same', input_dilate=3) == (7,)
    assert ndconv.conv_outsize([5], np.int64(3)) == (3,)


@pytest.mark.parametrize('n', [1, 2, 3, 4])
def test_deconv_outsize_matches_formula(n, rng):
    for _ in range(150):
        size = tuple(int(v) for v in rng.integers(1, 12, n))
        k = tuple(int(v) for v in rng.integers(1, 6, n))
        s = tuple(int(v) for v in rng.integers(1, 5, n))
        d = tuple(int(v) for v in rng.integers(1, 4, n))
        pad = _pad(rng, n)
        if pad == 'full':
            pad = 'valid'
        want = R.deconv_out_shape(size, k, s, pad, d)
        if min(want) >= 1:
            assert ndconv.deconv_outsize(size, k, s, pad, d) == want
        else:
            with pytest.raises(ValueError):
                ndconv.deconv_outsize(size, k, s, pad, d)


def test_deconv_outsize_examples():
    assert ndconv.deconv_outsize((55, 55), 11, stride=4) == (227, 227)
    assert ndconv.deconv_outsize((2, 2), 2) == (3, 3)
    assert ndconv.deconv_outsize((2, 2), 2, pad=1) == (1, 1)
    assert ndconv.deconv_outsize((2, 2), 2, stride=2) == (4, 4)
    assert ndconv.deconv_outsize((3, 5), (2, 7), stride=(2, 3), pad='same') == (6, 15)
    assert ndconv.deconv_outsize((3,), 1, stride=4, pad='same') == (12,)
    assert ndconv.deconv_outsize((4,), 3, stride=2, pad='valid', dilate=2) == (11,)
    with pytest.raises(ValueError, match='pad'):
        ndconv.deconv_outsize((4,), 3, pad='full')


def test_size_helpers_argument_errors():
    with pytest.raises(TypeError, match='size'):
        ndconv.conv_outsize(5, 3)
    with pytest.raises(TypeError, match='size'):
        ndconv.deconv_outsize(5, 3)
    with pytest.raises(ValueError, match=r'stride\[1\]'):
        ndconv.conv_outsize((5, 5), 3, (1, 0))
    with pytest.raises(ValueError, match='ksize'):
        ndconv.conv_outsize((5, 5), (3, 3, 3))
    with pytest.raises(TypeError, match='ksize'):
        ndconv.deconv_outsize((5, 5), 2.5)
    with pytest.raises(ValueError, match='size'):
        ndconv.conv_outsize((5, 0), 1)


# ----------------------------------------------------------------------------
# Threads and configuration.

def test_thread_count_get_set(threads):
    n = threads.get_num_threads()
    assert isinstance(n, int) and n >= 1
    threads.set_num_threads(1)
    assert threads.get_num_threads() == 1
    threads.set_num_threads(np.int64(2))
    assert threads.get_num_threads() == 2
    threads.set_num_threads(3)
    assert threads.get_num_threads() == 3


@pytest.mark.parametrize('bad,exc', [(0, ValueError), (-1, ValueError),
                                     (1.5, TypeError), (2.0, TypeError),
                                     (True, TypeError), ('2', TypeError),
                                     (None, TypeError)])
def test_set_num_threads_rejects(bad, exc, threads):
    before = threads.get_num_threads()
    with pytest.raises(exc):
        threads.set_num_threads(bad)
    assert threads.get_num_threads() == before


def test_show_config(capsys, threads):
    threads.set_num_threads(1)
    ndconv.show_config()
    lines = capsys.readouterr().out.splitlines()
    assert any(ndconv.__version__ in line for line in lines)
    assert sum(bool(re.fullmatch(r'OpenMP: (on|off)', ln)) for ln in lines) == 1
    assert 'threads: 1' in lines
    assert any(re.fullmatch(r'BLAS: \S.*', ln) for ln in lines)
    threads.set_num_threads(2)
    ndconv.show_config()
    assert 'threads: 2' in capsys.readouterr().out.splitlines()


def test_default_threads_follow_omp_num_threads():
    root = os.path.dirname(os.path.dirname(os.path.abspath(ndconv.__file__)))
    env = dict(os.environ, OMP_NUM_THREADS='3',
               PYTHONPATH=root + os.pathsep + os.environ.get('PYTHONPATH', ''))
    code = ('import ndconv; print(ndconv.get_num_threads()); ndconv.show_config()')
    out = subprocess.run([sys.executable, '-c', code], env=env, cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    if 'OpenMP: off' in lines:
        pytest.skip('built without OpenMP')
    assert lines[0] == '3'
    assert 'threads: 3' in lines


def test_threadpoolctl_limits_threads(threads):
    threadpoolctl = pytest.importorskip('threadpoolctl')
    threads.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1):
        assert threads.get_num_threads() == 1
    assert threads.get_num_threads() == 2


# ----------------------------------------------------------------------------
# Argument errors of convolution_nd.

X = np.ones((1, 4, 6, 6))
W = np.ones((4, 2, 3, 3))          # groups=2
B = np.ones(4)

CONV_ERRORS = [
    # (kwargs, exception, message pattern)
    (dict(stride=True), TypeError, 'stride'),
    (dict(stride=np.bool_(True)), TypeError, 'stride'),
    (dict(stride=1.5), TypeError, 'stride'),
    (dict(stride=2.0), TypeError, 'stride'),
    (dict(stride=np.float64(2)), TypeError, 'stride'),
    (dict(stride=(1, 2.0)), TypeError, r'stride'),
    (dict(stride=(1, False)), TypeError, r'stride'),
    (dict(stride='2'), TypeError, 'stride'),
    (dict(stride=None), TypeError, 'stride'),
    (dict(stride=0), ValueError, 'stride'),
    (dict(stride=-2), ValueError, 'stride'),
    (dict(stride=(1, 0)), ValueError, r'stride\[1\].*\b0\b'),
    (dict(stride=(-1, 1)), ValueError, r'stride\[0\].*-1'),
    (dict(stride=(1, 1, 1)), ValueError, 'stride'),
    (dict(stride=(1,)), ValueError, 'stride'),
    (dict(dilate=(1, 0)), ValueError, r'dilate\[1\]'),
    (dict(dilate=(2,)), ValueError, 'dilate'),
    (dict(dilate=False), TypeError, 'dilate'),
    (dict(dilate=1.0), TypeError, 'dilate'),
    (dict(input_dilate=0), ValueError, 'input_dilate'),
    (dict(input_dilate=(1, 1, 1)), ValueError, 'input_dilate'),
    (dict(input_dilate=(1, 0.5)), TypeError, 'input_dilate'),
    (dict(pad=-1), ValueError, 'pad'),
    (dict(pad=(0, -1)), ValueError, r'pad\[1\]'),
    (dict(pad=((0, 1), (2, -1))), ValueError, r'pad\[1\]'),
    (dict(pad=((-1, 0), (0, 0))), ValueError, r'pad\[0\]'),
    (dict(pad=(1, 2, 3)), ValueError, 'pad'),
    (dict(pad=((1, 2, 3), (0, 0))), ValueError, 'pad'),
    (dict(pad=((1,), (0, 0))), ValueError, 'pad'),
    (dict(pad='foo'), ValueError, 'pad'),
    (dict(pad='SAME'), ValueError, 'pad'),
    (dict(pad=1.5), TypeError, 'pad'),
    (dict(pad=(1, 1.5)), TypeError, 'pad'),
    (dict(pad=((0, 1.0), (0, 0))), TypeError, 'pad'),
    (dict(pad=True), TypeError, 'pad'),
    (dict(pad=None), TypeError, 'pad'),
    (dict(pad_mode='zeros'), ValueError, 'pad_mode'),
    (dict(pad_mode='symmetric'), ValueError, 'pad_mode'),
    (dict(pad_mode='reflect', input_dilate=2), ValueError, 'input_dilate|pad_mode'),
    (dict(pad_mode='wrap', input_dilate=(1, 3)), ValueError, 'input_dilate|pad_mode'),
    (dict(groups=0), ValueError, 'groups'),
    (dict(groups=-2), ValueError, 'groups'),
    (dict(groups=3), ValueError, 'groups'),
    (dict(groups=1.5), TypeError, 'groups'),
    (dict(groups=True), TypeError, 'groups'),
    (dict(groups=1), ValueError, r'\bW\b|channels'),       # W has 2 per group, x 4
    (dict(groups=4), ValueError, r'\bW\b|channels'),
    (dict(b=np.ones(3)), ValueError, r'\bb\b'),
    (dict(b=np.ones((4, 1))), ValueError, r'\bb\b'),
    (dict(W=np.ones((4, 2, 3))), ValueError, r'\bW\b'),
    (dict(W=np.ones((3, 2, 3, 3))), ValueError, 'groups'),  # 3 outputs, 2 groups
    (dict(W=np.ones((4, 2, 7, 3))), ValueError, 'kernel'),  # larger than the input
    (dict(W=np.ones((4, 2, 3, 3)), dilate=(1, 3)), ValueError, 'kernel'),
    (dict(x=np.ones((4, 6))), ValueError, r'\bx\b'),
    (dict(x=np.ones((1, 4, 6, 0))), ValueError, r'\bx\b'),
]


@pytest.mark.parametrize('kw,exc,pattern', CONV_ERRORS,
                         ids=[repr(c[0])[:60] for c in CONV_ERRORS])
def test_convolution_argument_errors(kw, exc, pattern):
    args = dict(x=X, W=W, b=B, groups=2)
    args.update(kw)
    x, w, b = args.pop('x'), args.pop('W'), args.pop('b')
    with pytest.raises(exc, match=pattern):
        ndconv.convolution_nd(x, w, b, **args)


def test_kernel_fits_only_with_padding():
    x = np.ones((1, 1, 6, 6))
    w = np.ones((1, 1, 7, 7))
    with pytest.raises(ValueError, match='kernel'):
        ndconv.convolution_nd(x, w)
    assert ndconv.convolution_nd(x, w, pad=1).shape == (1, 1, 2, 2)
    assert ndconv.convolution_nd(x, w, pad=((1, 0), (0, 1))).shape == (1, 1, 1, 1)
    assert ndconv.convolution_nd(x, w, pad='same').shape == (1, 1, 6, 6)


def test_n1_pad_forms(close):
    x = np.arange(5.0).reshape(1, 1, 5)
    w = np.array([[[1.0, -1.0, 2.0]]])
    with pytest.raises(ValueError, match='pad'):
        ndconv.convolution_nd(x, w, pad=(1, 2))
    with pytest.raises(ValueError, match='pad'):
        ndconv.deconvolution_nd(x, w, pad=(1, 2))
    with pytest.raises(ValueError, match='pad'):
        ndconv.convolution_nd_grad_W(x, np.ones((1, 1, 6)), 3, pad=(1, 2))
    got = ndconv.convolution_nd(x, w, pad=((1, 2),))
    assert got.shape == (1, 1, 6)
    close(got, R.conv_nd_ref(x, w, pads=((1, 2),)))
    got = ndconv.convolution_nd(x, w, pad=[1])
    close(got, R.conv_nd_ref(x, w, pads=1))
    got = ndconv.deconvolution_nd(x, w, pad=((1, 2),))
    assert got.shape == (1, 1, 4)
    close(got, R.deconv_nd_ref(x, w, pads=((1, 2),)))
    gy = np.ones((1, 1, 6))
    close(ndconv.convolution_nd_grad_W(x, gy, 3, pad=((1, 2),)),
          R.conv_grad_w_ref(x, gy, 3, pads=((1, 2),)))


def test_numpy_integers_accepted(close):
    x = np.arange(20.0).reshape(1, 1, 4, 5)
    w = np.ones((1, 1, 2, 2))
    got = ndconv.convolution_nd(x, w, None, np.int64(2), (np.int32(1), np.int8(0)),
                                False, np.uint8(1), np.int64(1))
    close(got, R.conv_nd_ref(x, w, None, 2, (1, 0)))
    got = ndconv.convolution_nd(x, w, None, np.array([1, 2]), np.array([[0, 1], [1, 0]]))
    close(got, R.conv_nd_ref(x, w, None, (1, 2), ((0, 1), (1, 0))))


# ----------------------------------------------------------------------------
# Argument errors of deconvolution_nd.

XD = np.ones((1, 4, 3, 3))
WD = np.ones((4, 3, 2, 2))         # groups=2: 6 outputs
BD = np.ones(6)

DECONV_ERRORS = [
    (dict(stride=True), TypeError, 'stride'),
    (dict(stride=1.5), TypeError, 'stride'),
    (dict(stride=(1, 0)), ValueError, r'stride\[1\]'),
    (dict(stride=0), ValueError, 'stride'),
    (dict(stride=(2, 2, 2)), ValueError, 'stride'),
    (dict(dilate=(0, 1)), ValueError, r'dilate\[0\]'),
    (dict(pad=-1), ValueError, 'pad'),
    (dict(pad=((0, 0), (0, -2))), ValueError, r'pad\[1\]'),
    (dict(pad='full'), ValueError, 'pad'),
    (dict(pad='bogus'), ValueError, 'pad'),
    (dict(pad=(1,)), ValueError, 'pad'),
    (dict(outsize=(4,)), ValueError, 'outsize'),
    (dict(outsize=(4, 4, 4)), ValueError, 'outsize'),
    (dict(outsize=4), TypeError, 'outsize'),
    (dict(outsize=(4, 4.0)), TypeError, 'outsize'),
    (dict(outsize=(0, 4)), ValueError, 'outsize'),
    (dict(outsize=(4, 6)), ValueError, r'outsize\[1\]'),
    (dict(outsize=(4, 2)), ValueError, r'outsize\[1\]'),
    (dict(groups=0), ValueError, 'groups'),
    (dict(groups=3), ValueError, 'groups'),
    (dict(groups=2.0), TypeError, 'groups'),
    (dict(b=np.ones(3)), ValueError, r'\bb\b'),
    (dict(W=np.ones((3, 3, 2, 2))), ValueError, r'\bW\b|channels'),
    (dict(W=np.ones((4, 3, 2))), ValueError, r'\bW\b'),
    (dict(x=np.ones((1, 1, 1)), W=np.ones((1, 1, 1)), b=None, groups=1, pad=1),
     ValueError, 'empty|output|outsize'),
]


@pytest.mark.parametrize('kw,exc,pattern', DECONV_ERRORS,
                         ids=[repr(c[0])[:60] for c in DECONV_ERRORS])
def test_deconvolution_argument_errors(kw, exc, pattern):
    args = dict(x=XD, W=WD, b=BD, groups=2)
    args.update(kw)
    x, w, b = args.pop('x'), args.pop('W'), args.pop('b')
    with pytest.raises(exc, match=pattern):
        ndconv.deconvolution_nd(x, w, b, **args)


def test_deconvolution_valid_outsizes_near_errors():
    # default 4 on both axes (stride 1, k 2): only 4 itself is reachable
    assert ndconv.deconvolution_nd(XD, WD, BD, groups=2, outsize=(4, 4)).shape == (1, 6, 4, 4)
    # stride 2: default 6, range [5, 7]
    for o in (5, 6, 7):
        y = ndconv.deconvolution_nd(XD, WD, None, 2, 0, (o, o), groups=2)
        assert y.shape == (1, 6, o, o)
    for o in (4, 8):
        with pytest.raises(ValueError, match=r'outsize\[0\].*5.*7'):
            ndconv.deconvolution_nd(XD, WD, None, 2, 0, (o, 6), groups=2)


# ----------------------------------------------------------------------------
# Argument errors of convolution_nd_grad_W.

XG = np.ones((2, 4, 6, 6))
GY = np.ones((2, 4, 4, 4))          # ksize 3, groups 2

GRAD_ERRORS = [
    (dict(ksize=(3,)), ValueError, 'ksize'),
    (dict(ksize=0), ValueError, 'ksize'),
    (dict(ksize=(3, 0)), ValueError, r'ksize\[1\]'),
    (dict(ksize=2.5), TypeError, 'ksize'),
    (dict(ksize=True), TypeError, 'ksize'),
    (dict(stride=(1, 0)), ValueError, r'stride\[1\]'),
    (dict(stride=False), TypeError, 'stride'),
    (dict(dilate=(1, 1, 1)), ValueError, 'dilate'),
    (dict(input_dilate=0), ValueError, 'input_dilate'),
    (dict(pad=-1), ValueError, 'pad'),
    (dict(pad='nope'), ValueError, 'pad'),
    (dict(groups=3), ValueError, 'groups'),
    (dict(groups=0), ValueError, 'groups'),
    (dict(gy=np.ones((2, 4, 5, 4))), ValueError, r'\bgy\b'),
    (dict(gy=np.ones((3, 4, 4, 4))), ValueError, r'\bgy\b'),
    (dict(gy=np.ones((2, 4, 4))), ValueError, r'\bgy\b'),
    (dict(gy=np.ones((2, 3, 4, 4))), ValueError, 'groups'),
    (dict(gy=np.ones((2, 4, 4, 4), np.int64)), TypeError, r'\bgy\b'),
    (dict(ksize=7), ValueError, 'kernel'),
]


@pytest.mark.parametrize('kw,exc,pattern', GRAD_ERRORS,
                         ids=[repr(c[0])[:60] for c in GRAD_ERRORS])
def test_grad_w_argument_errors(kw, exc, pattern):
    args = dict(x=XG, gy=GY, ksize=3, groups=2)
    args.update(kw)
    x, gy, ksize = args.pop('x'), args.pop('gy'), args.pop('ksize')
    with pytest.raises(exc, match=pattern):
        ndconv.convolution_nd_grad_W(x, gy, ksize, **args)
