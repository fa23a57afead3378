"""Tests of ndconv.pooling and ndconv.upsampling against the plain NumPy
loops of tests/reference_pooling.py."""

import itertools
import math
import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import reference_pooling as ref  # noqa: E402

import ndconv  # noqa: E402
from ndconv import (average_pooling_nd, linear_upsampling_kernel,  # noqa: E402
                    max_pooling_nd, max_unpooling_nd, unpooling_nd)

FLOATS = [np.float32, np.float64]
NS = [1, 2, 3, 4, 5]
# Spatial size per number of axes: the references loop in Python.
SIZE = {1: 9, 2: 7, 3: 5, 4: 4, 5: 3, 6: 2}
RTOL = {np.dtype(np.float16): 3e-3, np.dtype(np.float32): 3e-6,
        np.dtype(np.float64): 1e-12}


def gen(*key):
    """A Generator seeded from the test's parameters (the same every run)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def check(actual, expected, dtype=None):
    """``actual`` against a float64 reference, to the dtype's rounding."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rtol = RTOL[np.dtype(dtype or actual.dtype)]
    finite = expected[np.isfinite(expected)]
    scale = max(float(np.max(np.abs(finite))), 1.0) if finite.size else 1.0
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol,
                               atol=rtol * scale)


def batch(n):
    return (2, 2) if n <= 3 else (1, 2)


def window_cases(n):
    """(name, ksize, stride, pad) with per-axis tuples and (lo, hi) pairs:
    non-overlapping, overlapping, gapped, asymmetric."""
    per_k = (2, 3, 1, 2, 3, 2)[:n]
    per_s = (1, 2, 2, 1, 3, 1)[:n]
    per_p = ((0, 1), (1, 1), (0, 0), (1, 0), (1, 2), (0, 1))[:n]
    return [
        ('tile', (2,) * n, (2,) * n, ((0, 0),) * n),
        ('overlap', (3,) * n, (2,) * n, ((1, 1),) * n),
        ('gap', (2,) * n, (3,) * n, ((0, 0),) * n),
        ('per-axis', per_k, per_s, per_p),
    ]


def pad_forms(pads):
    """The ways to pass the same (lo, hi) pairs: int, per-axis ints, pairs."""
    forms = [tuple(pads)]
    if all(lo == hi for lo, hi in pads):
        forms.append(tuple(lo for lo, _ in pads))
        if len(set(pads)) == 1:
            forms.append(pads[0][0])
    return forms


@pytest.fixture
def restore_threads():
    before = ndconv.get_num_threads()
    yield
    ndconv.set_num_threads(before)


# ----------------------------------------------------------------------------
# unpooling_nd

@pytest.mark.parametrize('kwargs, expected', [
    (dict(ksize=3), [1, 1, 1, 2, 2, 2, 3]),
    (dict(ksize=3, cover_all=False), [1, 1, 1, 2, 2, 2, 3, 3, 3]),
    (dict(ksize=3, stride=2), [1, 1, 3, 2, 5, 3]),
    (dict(ksize=3, stride=2, cover_all=False), [1, 1, 3, 2, 5, 3, 3]),
    (dict(ksize=3, stride=2, pad=1, cover_all=False), [1, 3, 2, 5, 3]),
])
@pytest.mark.parametrize('dtype', FLOATS)
def test_unpooling_examples(kwargs, expected, dtype):
    x = np.array([[[1, 2, 3]]], dtype)
    y = unpooling_nd(x, **kwargs)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.array([[expected]], dtype))


def test_unpooling_image_shape():
    x = np.ones((1, 1, 100, 100), np.float32)
    y = unpooling_nd(x, (1, 2))
    assert y.shape == (1, 1, 100, 199)
    np.testing.assert_array_equal(y, 1)


@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', FLOATS)
@pytest.mark.parametrize('cover_all', [True, False])
def test_unpooling_reference(n, dtype, cover_all):
    rng = gen('unpool', n, dtype, cover_all)
    x = rand(rng, batch(n) + (3,) * n, dtype)
    for name, k, s, pads in window_cases(n):
        out = tuple(ref.unpool_size(D, kk, ss, lo, hi, cover_all)
                    for D, kk, ss, (lo, hi) in zip(x.shape[2:], k, s, pads))
        expected = ref.unpool(x, k, s, pads, out)
        for pad in pad_forms(pads):
            y = unpooling_nd(x, k, s, pad, cover_all=cover_all)
            assert y.dtype == dtype
            check(y, expected)


@pytest.mark.parametrize('cover_all', [True, False])
def test_unpooling_outsize_range(cover_all):
    rng = gen('unpool-outsize', cover_all)
    x = rand(rng, (1, 2, 3, 4), np.float64)
    k, s, pads = (3, 2), (2, 3), ((1, 1), (0, 1))
    ranges = []
    for D, kk, ss, (lo, hi) in zip(x.shape[2:], k, s, pads):
        sizes = [O for O in range(1, 40)
                 if ref.pool_size(O, kk, ss, lo, hi, cover_all) == D]
        ranges.append(sizes)
        assert len(sizes) == ss
    for out in itertools.product(*ranges):
        y = unpooling_nd(x, k, s, pads, outsize=out, cover_all=cover_all)
        check(y, ref.unpool(x, k, s, pads, out))
    # One past each end of the range, on each axis.
    for axis in range(2):
        for bad in (min(ranges[axis]) - 1, max(ranges[axis]) + 1):
            out = [r[0] for r in ranges]
            out[axis] = bad
            with pytest.raises(ValueError, match=r'outsize\[%d\]=%d.*\[%d, %d\]'
                               % (axis, bad, min(ranges[axis]), max(ranges[axis]))):
                unpooling_nd(x, k, s, pads, outsize=out, cover_all=cover_all)


@pytest.mark.parametrize('n', [1, 2, 3, 4])
@pytest.mark.parametrize('cover_all', [True, False])
def test_unpooling_adjoint_of_sum_pooling(n, cover_all):
    """<unpool(x), y> == <x, sumpool(y)>, sumpool by ndconv's mean pooling."""
    rng = gen('adjoint', n, cover_all)
    for name, k, s, pads in window_cases(n):
        x = rand(rng, batch(n) + (3,) * n, np.float64)
        u = unpooling_nd(x, k, s, pads, cover_all=cover_all)
        y = rand(rng, u.shape, np.float64)
        # Pooling y back to x's size: cover_all is extra high padding.
        pads2 = tuple((lo, hi + (ss - 1 if cover_all else 0))
                      for (lo, hi), ss in zip(pads, s))
        sp = average_pooling_nd(y, k, s, pads2) * math.prod(k)
        assert sp.shape == x.shape
        lhs, rhs = np.vdot(u, y), np.vdot(x, sp)
        assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs)), name
        check(sp, ref.sum_pool(y, k, s, pads, cover_all))


def test_unpooling_rejects_string_pad():
    x = np.ones((1, 1, 4))
    with pytest.raises(TypeError, match='pad'):
        unpooling_nd(x, 2, pad='same')


# ----------------------------------------------------------------------------
# max_pooling_nd

@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', FLOATS)
@pytest.mark.parametrize('cover_all', [True, False])
def test_max_pooling_reference(n, dtype, cover_all):
    rng = gen('max', n, dtype, cover_all)
    x = rand(rng, batch(n) + (SIZE[n],) * n, dtype)
    for name, k, s, pads in window_cases(n):
        ey, ei = ref.max_pool(x, k, s, pads, cover_all)
        for pad in pad_forms(pads):
            y = max_pooling_nd(x, k, s, pad, cover_all=cover_all)
            assert y.dtype == dtype
            np.testing.assert_array_equal(y, ey.astype(dtype), err_msg=name)
            y, i = max_pooling_nd(x, k, s, pad, cover_all, return_indices=True)
            assert i.dtype == np.int64
            np.testing.assert_array_equal(y, ey.astype(dtype), err_msg=name)
            np.testing.assert_array_equal(i, ei, err_msg=name)


@pytest.mark.parametrize('n', [1, 2, 3])
@pytest.mark.parametrize('pad', ['valid', 'same'])
@pytest.mark.parametrize('cover_all', [True, False])
def test_max_pooling_string_pads(n, pad, cover_all):
    rng = gen('max-str', n, pad, cover_all)
    x = rand(rng, (2, 1) + (7, 6, 5)[:n], np.float64)
    for k, s in [((3,) * n, (2,) * n), ((2, 3, 4)[:n], (3, 1, 2)[:n])]:
        if pad == 'valid':
            pads = ((0, 0),) * n
        else:
            pads = tuple(ref.tf_same_pads(D, kk, ss)
                         for D, kk, ss in zip(x.shape[2:], k, s))
        ey, ei = ref.max_pool(x, k, s, pads, False)
        y, i = max_pooling_nd(x, k, s, pad, cover_all, return_indices=True)
        if pad == 'same':
            assert y.shape[2:] == tuple(-(-D // ss) for D, ss in zip(x.shape[2:], s))
        np.testing.assert_array_equal(y, ey)
        np.testing.assert_array_equal(i, ei)


def test_max_pooling_all_padding_window():
    # D=3, k=2, s=2, pad=1 with cover_all: the third window is all padding.
    x = np.array([[[1., 2., 3.]]])
    y, i = max_pooling_nd(x, 2, 2, 1, cover_all=True, return_indices=True)
    np.testing.assert_array_equal(y, [[[1., 3., -np.inf]]])
    np.testing.assert_array_equal(i, [[[0, 2, -1]]])
    # Padding never wins, even against -inf values.
    x = np.full((1, 1, 3), -np.inf)
    y, i = max_pooling_nd(x, 2, 1, 1, cover_all=False, return_indices=True)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(i, [[[0, 0, 1, 2]]])


def test_max_pooling_ties_and_nan():
    x = np.array([[[[1., 5., 5.],
                    [5., 2., 5.],
                    [np.nan, 9., np.nan]]]])
    y, i = max_pooling_nd(x, (3, 3), return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and i[0, 0, 0, 0] == 6
    y, i = max_pooling_nd(x, (2, 3), stride=1, return_indices=True, cover_all=False)
    assert y[0, 0, 0, 0] == 5 and i[0, 0, 0, 0] == 1      # first 5 in C order
    assert np.isnan(y[0, 0, 1, 0]) and i[0, 0, 1, 0] == 6
    # A NaN after a larger value still wins; the first NaN is kept.
    x = np.array([[[3., np.nan, 7., np.nan]]], np.float32)
    y, i = max_pooling_nd(x, 4, return_indices=True)
    assert np.isnan(y[0, 0, 0]) and i[0, 0, 0] == 1
    check(max_pooling_nd(x, 4), [[[np.nan]]])


# ----------------------------------------------------------------------------
# max_unpooling_nd

@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', FLOATS)
def test_max_unpooling_roundtrip(n, dtype):
    """max_unpooling of max_pooling's indices puts every maximum back."""
    rng = gen('roundtrip', n, dtype)
    x = rand(rng, batch(n) + (SIZE[n],) * n, dtype)
    for name, k, s, pads in window_cases(n):
        y, idx = max_pooling_nd(x, k, s, pads, cover_all=False, return_indices=True)
        u = max_unpooling_nd(y, idx, k, s, pads, outsize=x.shape[2:])
        assert u.shape == x.shape and u.dtype == dtype
        flat = u.reshape(u.shape[0] * u.shape[1], -1)
        xs = x.reshape(flat.shape)
        ids = idx.reshape(flat.shape[0], -1)
        vals = y.reshape(flat.shape[0], -1)
        for r in range(flat.shape[0]):
            ok = ids[r] >= 0
            np.testing.assert_array_equal(flat[r, ids[r][ok]], vals[r][ok])
            np.testing.assert_array_equal(xs[r, ids[r][ok]], vals[r][ok])
            untouched = np.ones(flat.shape[1], bool)
            untouched[ids[r][ok]] = False
            assert np.all(flat[r, untouched] == 0)
        check(u, ref.max_unpool(y, idx, x.shape[2:]))


@pytest.mark.parametrize('dtype', FLOATS)
def test_max_unpooling_collisions(dtype):
    """Several values on one cell: the largest (NaN beats numbers) is kept,
    negative values included; -1 skipped."""
    rng = gen('collide', dtype)
    x = rand(rng, (3, 2, 4, 5), dtype)
    x[0, 0, 1, 1] = np.nan
    x[1, 1, 2, 2] = -np.inf
    k, s = (2, 2), (1, 1)
    out = (5, 6)
    idx = rng.integers(-1, 6, size=x.shape)          # many collisions
    idx[0, 0, 0, 0] = idx[0, 0, 1, 1] = 3            # NaN shares a cell
    u = max_unpooling_nd(x, idx, k, s, 0, outsize=out)
    check(u, ref.max_unpool(x, idx, out))
    # every cell named only by negative values holds the largest of them
    assert np.any(u < 0)


@pytest.mark.parametrize('n', [1, 2, 3])
def test_max_unpooling_outsize_range(n):
    rng = gen('mu-outsize', n)
    x = rand(rng, (1, 2) + (3,) * n, np.float64)
    k, s, pads = (3,) * n, (2,) * n, ((1, 0),) * n
    default = tuple(2 * 2 + 3 - 1 for _ in range(n))   # s*(D-1)+k-lo-hi = 6
    idx = np.zeros(x.shape, np.int64)
    for d in range(-1, 2):
        out = tuple(o + d for o in default)
        idx = rng.integers(-1, math.prod(out), size=x.shape)
        u = max_unpooling_nd(x, idx, k, s, pads, outsize=out)
        check(u, ref.max_unpool(x, idx, out))
    assert max_unpooling_nd(x, idx * 0, k, s, pads).shape[2:] == default
    for bad in (default[0] - 2, default[0] + 2):
        with pytest.raises(ValueError, match=r'outsize\[0\]=%d.*\[%d, %d\]'
                           % (bad, default[0] - 1, default[0] + 1)):
            max_unpooling_nd(x, idx * 0, k, s, pads,
                             outsize=(bad,) + default[1:])


def test_max_unpooling_errors():
    x = np.arange(8.0).reshape(1, 2, 4)
    idx = np.array([[[0, 1, 2, 3], [4, 5, 6, 7]]])
    out = np.full(8, 7.0)
    assert max_unpooling_nd(x, idx, 2).shape == (1, 2, 8)
    with pytest.raises(TypeError, match='indices'):
        max_unpooling_nd(x, idx.astype(np.float64), 2)
    with pytest.raises(TypeError, match='indices'):
        max_unpooling_nd(x, idx > 0, 2)
    with pytest.raises(TypeError, match='indices'):
        max_unpooling_nd(x, None, 2)
    with pytest.raises(ValueError, match='shape'):
        max_unpooling_nd(x, idx[:, :, :3], 2)
    for bad in (-2, 8, 2 ** 40):
        wrong = idx.copy()
        wrong[0, 1, 2] = bad
        with pytest.raises(ValueError, match=r'indices\[0, 1, 2\] = %d.*\[0, 8\)' % bad):
            max_unpooling_nd(x, wrong, 2)
    # unsigned and narrow integer types are fine
    for t in (np.uint8, np.int16, np.uint64, np.int32):
        u = max_unpooling_nd(x, idx.astype(t), 2)
        np.testing.assert_array_equal(u[0, 0, :4], [0, 1, 2, 3])
    wrong = idx.astype(np.uint64)
    wrong[0, 0, 0] = 2 ** 63 + 5
    with pytest.raises(ValueError, match='outside'):
        max_unpooling_nd(x, wrong, 2)
    del out


# ----------------------------------------------------------------------------
# average_pooling_nd

@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', FLOATS)
@pytest.mark.parametrize('pad_value', [0, None])
def test_average_pooling_reference(n, dtype, pad_value):
    rng = gen('avg', n, dtype, pad_value)
    x = rand(rng, batch(n) + (SIZE[n],) * n, dtype)
    for name, k, s, pads in window_cases(n):
        expected = ref.avg_pool(x, k, s, pads, pad_value == 0)
        for pad in pad_forms(pads):
            y = average_pooling_nd(x, k, s, pad, pad_value=pad_value)
            assert y.dtype == dtype
            check(y, expected)


@pytest.mark.parametrize('n', [1, 2, 3])
@pytest.mark.parametrize('pad', ['valid', 'same'])
@pytest.mark.parametrize('pad_value', [0, None])
def test_average_pooling_string_pads(n, pad, pad_value):
    rng = gen('avg-str', n, pad, pad_value)
    x = rand(rng, (1, 2) + (7, 6, 5)[:n], np.float64)
    for k, s in [((3,) * n, (2,) * n), ((2, 3, 4)[:n], (3, 1, 2)[:n])]:
        if pad == 'valid':
            pads = ((0, 0),) * n
        else:
            pads = tuple(ref.tf_same_pads(D, kk, ss)
                         for D, kk, ss in zip(x.shape[2:], k, s))
        y = average_pooling_nd(x, k, s, pad, pad_value)
        check(y, ref.avg_pool(x, k, s, pads, pad_value == 0))


def test_average_pooling_pad_values():
    x = np.array([[[2., 4., 6., 8.]]])
    for zero in (0, 0.0, np.float32(0), np.int64(0)):
        check(average_pooling_nd(x, 2, pad=1, pad_value=zero), [[[1., 5., 4.]]])
    check(average_pooling_nd(x, 2, pad=1, pad_value=None), [[[2., 5., 8.]]])
    for bad in (1, -1.0, np.nan, 'zero', False, True, (0,)):
        with pytest.raises(ValueError, match='pad_value'):
            average_pooling_nd(x, 2, pad_value=bad)
    # a window of padding only: 0 with pad_value=0, 0 / 0 with None
    y = average_pooling_nd(x, 1, 1, pad=1)
    np.testing.assert_array_equal(y, [[[0., 2., 4., 6., 8., 0.]]])
    with np.errstate(invalid='ignore'):
        y = average_pooling_nd(x, 1, 1, pad=1, pad_value=None)
    assert np.isnan(y[0, 0, 0]) and np.isnan(y[0, 0, -1])


# ----------------------------------------------------------------------------
# Every function: 6 axes, dtypes, layouts, empty inputs, threads.

def test_six_axes():
    rng = gen('six')
    x = rand(rng, (1, 2) + (3, 2, 3, 2, 2, 3), np.float64)
    k, s = (2, 1, 2, 2, 1, 2), (1, 1, 2, 1, 1, 2)
    pads = ((1, 0), (0, 0), (0, 1), (0, 0), (0, 1), (0, 0))
    check(average_pooling_nd(x, k, s, pads, None), ref.avg_pool(x, k, s, pads, False))
    ey, ei = ref.max_pool(x, k, s, pads, True)
    y, i = max_pooling_nd(x, k, s, pads, return_indices=True)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(i, ei)
    out = tuple(ref.unpool_size(D, kk, ss, lo, hi, True)
                for D, kk, ss, (lo, hi) in zip(x.shape[2:], k, s, pads))
    check(unpooling_nd(x, k, s, pads), ref.unpool(x, k, s, pads, out))


CALLS = [
    ('unpooling_nd', lambda x: unpooling_nd(x, 3, 2, 1)),
    ('max_pooling_nd', lambda x: max_pooling_nd(x, 3, 2, 1)),
    ('max_pooling_nd-idx', lambda x: max_pooling_nd(x, 3, 2, 1, return_indices=True)),
    ('max_unpooling_nd', lambda x: max_unpooling_nd(
        x, np.arange(x.size).reshape(x.shape) % 7 - 1, 2)),
    ('average_pooling_nd', lambda x: average_pooling_nd(x, 3, 2, 1)),
    ('average_pooling_nd-none', lambda x: average_pooling_nd(x, 3, 2, 1, None)),
]


def _as_list(res):
    return list(res) if isinstance(res, tuple) else [res]


@pytest.mark.parametrize('name, call', CALLS, ids=[c[0] for c in CALLS])
def test_float16(name, call):
    rng = gen('f16', name)
    x = rand(rng, (2, 2, 6, 5), np.float16)
    got = _as_list(call(x))
    want = _as_list(call(x.astype(np.float32)))
    assert got[0].dtype == np.float16
    check(got[0], want[0].astype(np.float16).astype(np.float64), np.float16)
    if len(got) > 1:
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize('name, call', CALLS, ids=[c[0] for c in CALLS])
def test_layouts_are_not_modified(name, call):
    rng = gen('layout', name)
    base = rand(rng, (2, 3, 8, 10), np.float64)
    want = _as_list(call(np.ascontiguousarray(base[:, :, ::2, 1::2])))
    views = [base[:, :, ::2, 1::2], np.asfortranarray(base[:, :, ::2, 1::2])]
    ro = base[:, :, ::2, 1::2].copy()
    ro.flags.writeable = False
    views.append(ro)
    for v in views:
        before = v.copy()
        got = _as_list(call(v))
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(v, before)
    np.testing.assert_array_equal(base[:, :, ::2, 1::2], views[0])


@pytest.mark.parametrize('name, call', CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize('empty', [(0, 3), (2, 0)])
def test_empty_batch_or_channels(name, call, empty):
    x = np.ones(empty + (6, 5), np.float32)
    full = _as_list(call(np.ones((1, 1, 6, 5), np.float32)))
    got = _as_list(call(x))
    for g, f in zip(got, full):
        assert g.shape == empty + f.shape[2:]
        assert g.dtype == f.dtype


@pytest.mark.parametrize('name, call', CALLS, ids=[c[0] for c in CALLS])
def test_threads_bitwise_equal(name, call, restore_threads):
    rng = gen('threads', name)
    x = rand(rng, (2, 3, 33, 40), np.float32)
    x1 = rand(rng, (1, 1, 9, 300, 41), np.float64)
    results = []
    for t in (1, 2):
        ndconv.set_num_threads(t)
        results.append(_as_list(call(x)) + _as_list(call(x1)))
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize('dtype', [np.int32, np.int64, np.bool_, np.complex64,
                                   np.complex128, object])
@pytest.mark.parametrize('name, call', CALLS, ids=[c[0] for c in CALLS])
def test_non_float_inputs(dtype, name, call):
    x = np.ones((1, 1, 4, 4), dtype)
    with pytest.raises(TypeError, match='x must be a float'):
        call(x)


def test_argument_errors():
    x = np.ones((1, 1, 5, 6))
    pools = [unpooling_nd, max_pooling_nd, average_pooling_nd,
             lambda x, *a, **k: max_unpooling_nd(x, np.zeros(np.shape(x), int), *a, **k)]
    for f in pools:
        with pytest.raises(ValueError, match=r'ksize\[1\] must be a positive int, got 0'):
            f(x, (2, 0))
        with pytest.raises(ValueError, match='ksize must be an int or a sequence of 2'):
            f(x, (2, 2, 2))
        with pytest.raises(TypeError, match=r'ksize\[0\]'):
            f(x, (2.0, 2))
        with pytest.raises(TypeError, match='stride'):
            f(x, 2, True)
        with pytest.raises(ValueError, match='stride must be a positive int, got -1'):
            f(x, 2, -1)
        with pytest.raises(ValueError, match=r'pad\[1\] must be >= 0'):
            f(x, 2, 1, (0, -1))
        with pytest.raises(ValueError, match='pad'):
            f(x, 2, 1, (1, 1, 1))
        with pytest.raises(ValueError, match=r'pad\[0\] must be an int or a \(lo, hi\) pair'):
            f(x, 2, 1, ((1, 2, 3), 1))
        with pytest.raises(ValueError, match='x must have at least 3 dimensions'):
            f(np.ones((2, 2)), 2)
        with pytest.raises(TypeError, match='x must be a float'):
            f([[['a']]], 2)
    with pytest.raises(ValueError, match='pad'):
        max_pooling_nd(x, 2, pad='full')
    with pytest.raises(ValueError, match='pad'):
        average_pooling_nd(x, 2, pad='full')
    with pytest.raises(TypeError, match='cover_all'):
        max_pooling_nd(x, 2, cover_all=1)
    with pytest.raises(TypeError, match='cover_all'):
        unpooling_nd(x, 2, cover_all=None)
    with pytest.raises(TypeError, match='return_indices'):
        max_pooling_nd(x, 2, return_indices='yes')
    with pytest.raises(TypeError, match='outsize'):
        unpooling_nd(x, 2, outsize=10)
    with pytest.raises(ValueError, match='outsize'):
        unpooling_nd(x, 2, outsize=(10,))
    with pytest.raises(ValueError, match='empty on axis 1'):
        max_pooling_nd(x, (2, 7), cover_all=False)
    with pytest.raises(ValueError, match='empty on axis 0'):
        average_pooling_nd(x, (6, 2))
    # one axis with asymmetric padding is written ((lo, hi),)
    x1 = np.arange(4.0).reshape(1, 1, 4)
    with pytest.raises(ValueError, match='pad'):
        max_pooling_nd(x1, 2, pad=(1, 2))
    assert max_pooling_nd(x1, 2, pad=((1, 2),)).shape == (1, 1, 4)
    # huge pads never reach the kernels
    with pytest.raises((ValueError, MemoryError)):
        max_pooling_nd(x1, 2, stride=2 ** 61, pad=2 ** 61)


# ----------------------------------------------------------------------------
# linear_upsampling_kernel

def test_linear_upsampling_profile():
    W = linear_upsampling_kernel(2, 1, 1)
    assert W.dtype == np.float32
    np.testing.assert_array_equal(W, [[[0.25, 0.75, 0.75, 0.25]]])
    for f in range(1, 7):
        np.testing.assert_allclose(linear_upsampling_kernel(f, 1, 1, dtype=np.float64)[0, 0],
                                   ref.linear_profile(f), rtol=1e-15)


@pytest.mark.parametrize('factor, ndim', [(2, 2), (3, 3), ((2, 3), 2), ((1, 4, 3), 3),
                                          (2, 4)])
@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_linear_upsampling_nd(factor, ndim, dtype):
    channels = 3
    W = linear_upsampling_kernel(factor, ndim, channels, dtype=dtype)
    fs = (factor,) * ndim if isinstance(factor, int) else factor
    want = np.ones(())
    for f in fs:
        want = np.multiply.outer(want, ref.linear_profile(f))
    assert W.dtype == dtype
    assert W.shape == (channels, channels) + tuple(2 * f - f % 2 for f in fs)
    for c, d in itertools.product(range(channels), repeat=2):
        if c == d:
            check(W[c, d], want, dtype)
        else:
            assert not W[c, d].any()


def test_linear_upsampling_with_deconvolution():
    f = 2
    W = linear_upsampling_kernel(f, 2, 3)
    k = W.shape[-1]
    pad = (k - f + 1) // 2
    rng = gen('upsample')
    x = rng.random((1, 3, 256, 256)).astype(np.float32)
    y = ndconv.deconvolution_nd(x, W, stride=f, pad=pad)
    assert y.shape == (1, 3, 512, 512)
    c = np.full((1, 3, 256, 256), 0.7, np.float32)
    y = ndconv.deconvolution_nd(c, W, stride=f, pad=pad)
    np.testing.assert_allclose(y[:, :, 1:-1, 1:-1], 0.7, rtol=1e-6)
    for f in (3, (2, 3)):
        W = linear_upsampling_kernel(f, 2, 1, dtype=np.float64)
        fs = (f, f) if isinstance(f, int) else f
        pads = tuple((kk - ff + 1) // 2 for kk, ff in zip(W.shape[2:], fs))
        y = ndconv.deconvolution_nd(np.ones((1, 1, 10, 9)), W, stride=fs, pad=pads)
        assert y.shape[2:] == (10 * fs[0], 9 * fs[1])
        np.testing.assert_allclose(y[0, 0, 3:-3, 3:-3], 1.0, rtol=1e-12)


def test_linear_upsampling_errors():
    with pytest.raises(ValueError, match='factor must be a positive int'):
        linear_upsampling_kernel(0, 2, 1)
    with pytest.raises(ValueError, match='factor'):
        linear_upsampling_kernel((2, 2, 2), 2, 1)
    with pytest.raises(TypeError, match='factor'):
        linear_upsampling_kernel(1.5, 2, 1)
    with pytest.raises(ValueError, match='ndim'):
        linear_upsampling_kernel(2, 0, 1)
    with pytest.raises(TypeError, match='channels'):
        linear_upsampling_kernel(2, 2, 1.0)
    with pytest.raises(ValueError, match='channels'):
        linear_upsampling_kernel(2, 2, -1)
    for dt in (np.int32, bool, np.complex64, 'nonsense'):
        with pytest.raises(TypeError, match='dtype'):
            linear_upsampling_kernel(2, 2, 1, dtype=dt)


# ----------------------------------------------------------------------------
# The row kernels of ext/ndconv_pool.h: one copy per ISA, picked at run time.
# Every copy this CPU runs must give the bits of the generic (plain C) one, on
# shapes that hit their vector tails, window edges, each stride path and
# windows cut into several kernel calls.

ISAS = ['avx512', 'avx2', 'generic']


@pytest.fixture(params=ISAS)
def isa(request):
    from ndconv import _pool
    try:
        if _pool._select_isa(request.param) != request.param:
            pytest.skip('this CPU has no %s' % request.param)
        yield request.param
    finally:
        _pool._select_isa('auto')


def _generic(call):
    from ndconv import _pool
    _pool._select_isa('generic')
    try:
        return call()
    finally:
        _pool._select_isa('auto')


def _awkward(rng, shape, dtype):
    """Few distinct values (many ties), signed zeros, NaNs and infinities."""
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    x[x == 0] = rng.choice(np.array([0.0, -0.0], dtype), size=int(np.sum(x == 0)))
    flat = x.reshape(-1)
    for v in (np.nan, np.inf, -np.inf):
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 97))] = v
    return x


def _finite(x):
    return np.where(np.isfinite(x), x, 0).astype(x.dtype)


def _same_bits(got, want, any_nan=False):
    """Bitwise equal; with any_nan, a NaN may have any sign and payload (the
    NaN of an arithmetic result, inf - inf meeting an input NaN, depends on
    the order of the operands inside the add instruction)."""
    for g, w in zip(_as_list(got), _as_list(want)):
        assert g.dtype == w.dtype and g.shape == w.shape
        if any_nan and g.dtype.kind == 'f':
            nan = np.isnan(g)
            np.testing.assert_array_equal(nan, np.isnan(w))
            g, w = g[~nan], w[~nan]
        assert g.tobytes() == w.tobytes()


# (spatial shape, ksize, stride, pad): last-axis lengths around 4, 8, 16 and 32
# (every vector width), edges on both sides, strides 1, 2 and 3 (gathers), and
# a window with more than 64 outer rows (several calls per output row).
KERNEL_CASES = [
    ((37,), 2, 2, 0),
    ((33,), 3, 1, 1),
    ((2, 31), (1, 2), (1, 2), ((0, 0), (1, 0))),
    ((3, 17), (2, 3), (1, 2), 1),
    ((4, 40), (2, 4), (2, 3), ((1, 0), (2, 1))),
    ((5, 6, 65), 2, 2, 0),
    ((4, 5, 50), (2, 2, 3), (2, 1, 1), ((0, 1), (1, 1), (1, 1))),
    ((9, 9, 12), (9, 9, 2), (1, 1, 2), ((0, 0), (1, 1), (1, 0))),
    ((3, 4, 2, 19), (2, 1, 2, 2), (1, 1, 2, 2), ((0, 1), (0, 0), (1, 0), (0, 1))),
    ((3, 610), (2, 300), (1, 3), ((0, 1), (4, 0))),
    ((2, 70), (2, 20), (1, 7), ((1, 1), (9, 9))),
    ((4, 6, 64), 2, 2, 0),
    ((3, 32, 32), (3, 1, 2), (1, 1, 2), ((1, 1), (0, 0), (0, 0))),
]


@pytest.fixture(params=['store', 'stream'])
def stores(request, monkeypatch):
    """'stream': every result from the results allocator (64-byte aligned)
    and streaming stores from any size, so that small cases reach them."""
    if request.param == 'store':
        yield request.param
        return
    from ndconv import _pool, pooling
    monkeypatch.setattr(pooling, '_RESULTS_ALLOCATOR_BYTES', 0)
    old = _pool._stream_bytes(0, 0)
    try:
        yield request.param
    finally:
        _pool._stream_bytes(*old)


@pytest.mark.parametrize('dtype', FLOATS)
@pytest.mark.parametrize('case', range(len(KERNEL_CASES)))
def test_kernels_every_isa_bitwise(isa, stores, case, dtype):
    sp, k, s, p = KERNEL_CASES[case]
    rng = gen('isa', case, dtype)
    x = _awkward(rng, (2, 3) + sp, dtype)
    calls = [
        (lambda: max_pooling_nd(x, k, s, p), False),
        (lambda: max_pooling_nd(x, k, s, p, return_indices=True), False),
        (lambda: max_pooling_nd(x, k, s, p, cover_all=False, return_indices=True), False),
        (lambda: average_pooling_nd(x, k, s, p), True),
        (lambda: average_pooling_nd(x, k, s, p, None), True),
        (lambda: unpooling_nd(_finite(x), k, s, p), False),
        (lambda: unpooling_nd(_finite(x), k, None, 0, cover_all=False), False),
    ]
    for call, any_nan in calls:
        _same_bits(call(), _generic(call), any_nan)


@pytest.mark.parametrize('dtype', FLOATS)
def test_kernels_every_isa_against_reference(isa, dtype):
    rng = gen('isa-ref', dtype)
    for sp, k, s, p in KERNEL_CASES[:4] + KERNEL_CASES[6:7]:
        n = len(sp)
        x = _awkward(rng, (1, 2) + sp, dtype)
        k_, s_ = (k,) * n if isinstance(k, int) else k, (s,) * n if isinstance(s, int) else s
        pads = tuple((p, p) if isinstance(p, int) else p for _ in range(n)) \
            if isinstance(p, int) else p
        ey, ei = ref.max_pool(x, k_, s_, pads, True)
        y, i = max_pooling_nd(x, k, s, p, return_indices=True)
        np.testing.assert_array_equal(y, ey.astype(dtype))
        np.testing.assert_array_equal(i, ei)
        check(average_pooling_nd(_finite(x), k, s, p, None),
              ref.avg_pool(_finite(x), k_, s_, pads, False))


@pytest.mark.parametrize('dtype', FLOATS)
@pytest.mark.parametrize('sp, k', [((36,), 2), ((4, 18), (2, 3)), ((4, 6, 34), 2),
                                   ((4, 2, 3, 10), (2, 1, 3, 2))])
def test_max_unpooling_blocks_every_isa(isa, stores, sp, k, dtype):
    """Disjoint windows: the gather path (indices inside their own windows),
    its fall back to the scatter when an index leaves its window, -1 entries
    and an output larger than the windows cover."""
    rng = gen('mu-isa', sp, k, dtype)
    n = len(sp)
    x = _awkward(rng, (2, 3) + sp, dtype)
    y, idx = max_pooling_nd(x, k, return_indices=True)
    kk = (k,) * n if isinstance(k, int) else k
    big = tuple(d + kk_ - 1 for d, kk_ in zip(sp, kk))     # the largest outsize
    ibig = np.ravel_multi_index(np.unravel_index(idx, sp), big)
    for out, ids in ((sp, idx), (big, ibig)):
        want = ref.max_unpool(y, ids, out)
        u = max_unpooling_nd(y, ids, k, outsize=out)
        check(u, want)
        _same_bits(u, _generic(lambda: max_unpooling_nd(y, ids, k, outsize=out)))
    idx2 = idx.copy()
    idx2.reshape(-1)[::7] = -1
    check(max_unpooling_nd(y, idx2, k, outsize=sp), ref.max_unpool(y, idx2, sp))
    # one index moved to a valid cell outside its window (a collision too)
    idx3 = idx.copy()
    idx3.reshape(6, -1)[:, -1] = idx3.reshape(6, -1)[:, 0]
    check(max_unpooling_nd(y, idx3, k, outsize=sp), ref.max_unpool(y, idx3, sp))
    bad = idx.copy()
    bad.reshape(-1)[-1] = math.prod(sp)
    with pytest.raises(ValueError, match='outside the output volume'):
        max_unpooling_nd(y, bad, k, outsize=sp)
    bad.reshape(-1)[-1] = -2
    with pytest.raises(ValueError, match='outside the output volume'):
        max_unpooling_nd(y, bad, k, outsize=sp)


@pytest.mark.parametrize('dtype', FLOATS)
@pytest.mark.parametrize('last', [32, 37])
def test_big_unpoolings_every_isa(isa, dtype, last):
    """Results over 16 MiB: written with streaming stores where rows are
    64-byte aligned (all of them for 32, some for 37)."""
    rng = gen('big-unpool', dtype, last)
    c = 6 if dtype == np.float32 else 3
    x = rng.standard_normal((1, c, 60, 60, last)).astype(dtype)
    u = unpooling_nd(x, 2, cover_all=False)
    assert u.nbytes >= 16 << 20
    np.testing.assert_array_equal(u, x.repeat(2, 2).repeat(2, 3).repeat(2, 4))
    y, idx = max_pooling_nd(u + rng.standard_normal(u.shape).astype(dtype), 2,
                            return_indices=True)
    m = max_unpooling_nd(y, idx, 2)
    want = np.zeros((c, u[0, 0].size), dtype)
    np.put_along_axis(want, idx.reshape(c, -1), y.reshape(c, -1), axis=1)
    np.testing.assert_array_equal(m, want.reshape(u.shape))


@pytest.mark.parametrize('dtype', FLOATS)
@pytest.mark.parametrize('sp, k, s', [((40,), 2, 2), ((39,), 3, 3), ((12, 10), 2, 2),
                                      ((12, 10), (3, 2), (3, 1)), ((1, 6, 8), (1, 2, 4), (1, 2, 3))])
@pytest.mark.parametrize('cells', [50, 333, None])
def test_runs_across_volumes(isa, monkeypatch, sp, k, s, dtype, cells):
    """Exact-fit 1-D and 2-D poolings and unpoolings run through all volumes
    in one call per work item; items split anywhere, indices restart at
    each volume."""
    from ndconv import pooling
    if cells is not None:
        monkeypatch.setattr(pooling, '_ITEM_CELLS', cells)
    rng = gen('runs', sp, k, s, dtype)
    n = len(sp)
    x = _awkward(rng, (3, 5) + sp, dtype)
    kk = (k,) * n if isinstance(k, int) else k
    ss = (s,) * n if isinstance(s, int) else s
    pads = ((0, 0),) * n
    ey, ei = ref.max_pool(x, kk, ss, pads, False)
    y, i = max_pooling_nd(x, k, s, cover_all=False, return_indices=True)
    np.testing.assert_array_equal(y, ey.astype(dtype))
    np.testing.assert_array_equal(i, ei)
    np.testing.assert_array_equal(max_pooling_nd(x, k, s, cover_all=False), y)
    check(average_pooling_nd(_finite(x), k, s), ref.avg_pool(_finite(x), kk, ss, pads, True))
    if kk == ss:
        f = _finite(x)
        out = tuple(d * kk_ for d, kk_ in zip(sp, kk))
        check(unpooling_nd(f, k, cover_all=False), ref.unpool(f, kk, ss, pads, out))


def test_threads_bitwise_equal_new_paths(stores, monkeypatch, restore_threads):
    """1 and 2 threads, through streaming stores, aligned results, work
    items split mid-volume and runs through volumes."""
    from ndconv import pooling
    monkeypatch.setattr(pooling, '_ITEM_CELLS', 700)
    rng = gen('threads-new', stores)
    x3 = _awkward(rng, (2, 3, 16, 12, 32), np.float32)
    x2 = _awkward(rng, (3, 4, 12, 64), np.float64)
    x1 = _awkward(rng, (4, 5, 96), np.float32)
    calls = [lambda x: max_pooling_nd(x, 2, return_indices=True),
             lambda x: max_pooling_nd(x, 3, 2, 1, return_indices=True),
             lambda x: average_pooling_nd(x, 2),
             lambda x: unpooling_nd(_finite(x), 2, cover_all=False)]
    results = []
    for t in (1, 2):
        ndconv.set_num_threads(t)
        results.append([r for x in (x3, x2, x1) for c in calls for r in _as_list(c(x))]
                       + _as_list(max_unpooling_nd(*max_pooling_nd(x3, 2, return_indices=True), 2)))
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------
# The results allocator (ext/ndconv_pool.h): big results on 2 MiB-aligned
# mappings, a freed one kept for the next result of its size.

def test_results_allocator_reuses_freed_results():
    from ndconv import _pool
    _pool._release_kept()
    x = np.ones((1, 2, 64, 64, 64), np.float32)          # 2 MiB, result 16 MiB
    y = unpooling_nd(x, 2, cover_all=False)
    assert y.nbytes >= _pool._BIG_RESULT and y.flags.owndata and y.base is None
    assert y.ctypes.data % 64 == 0
    where = y.ctypes.data
    np.testing.assert_array_equal(y, 1)
    del y
    assert _pool._kept_blocks() == 1
    y = unpooling_nd(2 * x, 2, cover_all=False)             # same size: same mapping
    assert y.ctypes.data == where and _pool._kept_blocks() == 0
    np.testing.assert_array_equal(y, 2)
    z = max_pooling_nd(y, 2)                               # smaller: plain numpy
    np.testing.assert_array_equal(z, 2)
    del y, z
    _pool._release_kept()
    assert _pool._kept_blocks() == 0


def test_results_allocator_realloc_calloc_and_limits():
    from ndconv import _pool
    _pool._release_kept()
    big = _pool._BIG_RESULT // 4
    a = _pool._empty((big,), np.float32)
    a[:] = np.arange(big, dtype=np.float32)
    a.resize((3 * big,), refcheck=False)                     # realloc: bigger
    np.testing.assert_array_equal(a[:big], np.arange(big, dtype=np.float32))
    a.resize((10,), refcheck=False)                          # realloc: to malloc
    np.testing.assert_array_equal(a, np.arange(10, dtype=np.float32))
    b = _pool._empty((big,), np.float32)
    b.fill(7)
    del b                                                    # kept, dirty
    c = _pool._empty((big,), np.float32, zero=True)          # calloc reuses it
    assert not c.any()
    small = _pool._empty((5,), np.float64, zero=True)
    assert not small.any()
    blocks = [_pool._empty((big * k,), np.float32) for k in range(1, 8)]
    del blocks, a, c, small
    assert 1 <= _pool._kept_blocks() <= 4                    # at most 4 kept
    _pool._release_kept()
    assert _pool._kept_blocks() == 0


def test_results_allocator_threads():
    """Python threads allocating and freeing big results at once."""
    import concurrent.futures
    from ndconv import _pool
    x = np.arange(2 * 32 ** 3, dtype=np.float32).reshape(1, 2, 32, 32, 32)
    want = unpooling_nd(x, 2, cover_all=False)

    def work(i):
        for _ in range(6):
            y = unpooling_nd(x, 2, cover_all=False)
            assert y.tobytes() == want.tobytes()
            del y
        return i

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        assert sorted(ex.map(work, range(8))) == list(range(8))
    assert _pool._kept_blocks() <= 4
    _pool._release_kept()


# ----------------------------------------------------------------------------
# PyTorch, where it is installed.

def _torch():
    torch = pytest.importorskip('torch')
    torch.set_num_threads(1)
    return torch


@pytest.mark.parametrize('ceil', [False, True])
def test_torch_max_pool3d_and_unpool3d(ceil):
    torch = _torch()
    F = torch.nn.functional
    rng = gen('torch-max', ceil)
    x = rand(rng, (2, 3, 7, 8, 9), np.float32)
    for k, s, p in [(2, 2, 0), (3, 2, 1), ((3, 2, 2), (1, 2, 3), (1, 0, 1))]:
        ty, ti = F.max_pool3d(torch.from_numpy(x), k, s, p, ceil_mode=ceil,
                              return_indices=True)
        y, i = max_pooling_nd(x, k, s, p, cover_all=ceil, return_indices=True)
        # PyTorch's ceil_mode drops a last window that starts in the padding;
        # cover_all keeps it (as -inf, index -1 when it holds no input).
        common = (Ellipsis,) + tuple(slice(0, m) for m in ty.shape[2:])
        assert all(a - b in (0, 1) for a, b in zip(y.shape, ty.shape))
        np.testing.assert_array_equal(y[common], ty.numpy())
        np.testing.assert_array_equal(i[common], ti.numpy())
        tu = F.max_unpool3d(ty, ti, k, s, p, output_size=x.shape[2:])
        u = max_unpooling_nd(ty.numpy(), ti.numpy(), k, s, p, outsize=x.shape[2:])
        np.testing.assert_array_equal(u, tu.numpy())


@pytest.mark.parametrize('count_include_pad', [True, False])
def test_torch_avg_pool3d(count_include_pad):
    torch = _torch()
    F = torch.nn.functional
    rng = gen('torch-avg', count_include_pad)
    x = rand(rng, (2, 3, 7, 8, 9), np.float64)
    for k, s, p in [(2, 2, 0), (3, 2, 1), ((3, 2, 2), (1, 2, 3), (1, 0, 1))]:
        t = F.avg_pool3d(torch.from_numpy(x), k, s, p,
                         count_include_pad=count_include_pad).numpy()
        y = average_pooling_nd(x, k, s, p, 0 if count_include_pad else None)
        check(y, t)
