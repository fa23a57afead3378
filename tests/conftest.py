"""Shared fixtures: a seeded random Generator per test, tolerance-aware
comparison, thread-count restoration and an optional PyTorch."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's id: every parametrisation
    draws its own values, the same on every run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


# Relative tolerance per result dtype (the reference is float64).
_RTOL = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 2e-4,
         np.dtype(np.float64): 1e-10}


def assert_matches(actual, expected, dtype=None):
    """``actual`` (any float dtype) against a float64 reference: shape equal,
    values within the dtype's tolerance, relative to the reference's scale."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rtol = _RTOL[np.dtype(dtype if dtype is not None else actual.dtype)]
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(float(finite.max()), 1.0) if finite.size else 1.0
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol,
                               atol=rtol * scale)


@pytest.fixture
def close():
    """The comparison function `assert_matches`, as a fixture."""
    return assert_matches


@pytest.fixture
def threads():
    """ndconv's thread control; the thread count is restored afterwards."""
    import ndconv
    before = ndconv.get_num_threads()
    try:
        yield ndconv
    finally:
        ndconv.set_num_threads(before)


@pytest.fixture
def torch():
    """PyTorch, or a clean skip when it is not installed (or will not load)."""
    try:
        return pytest.importorskip('torch')
    except OSError as exc:  # a broken install: shared libraries missing
        pytest.skip('torch cannot be loaded: %s' % exc)


# Kernel variants of the forward correlation.  'default' is whatever ndconv
# picks; the others force a method or a micro-kernel ISA through private
# switches of ndconv._engine / ndconv._conv (a variant whose switch is gone,
# or whose ISA this CPU lacks, is skipped), so that every kernel a user's
# machine may run is checked here, not only the one this CPU selects.
KERNEL_VARIANTS = ['default', 'implicit-avx2', 'implicit-generic', 'direct', 'gemm']


@pytest.fixture(params=KERNEL_VARIANTS)
def kernel_variant(request, monkeypatch):
    name = request.param
    if name == 'default':
        yield name
        return
    try:
        from ndconv import _conv, _engine
    except ImportError:
        pytest.skip('ndconv has no _engine/_conv modules')
    method, _, isa = name.partition('-')
    if not hasattr(_engine, 'METHOD'):
        pytest.skip('ndconv._engine.METHOD is gone')
    monkeypatch.setattr(_engine, 'METHOD', method)
    select = getattr(_conv, 'select_isa', None)
    if not isa:
        yield name
        return
    if select is None:
        pytest.skip('ndconv._conv.select_isa is gone')
    try:
        if select(isa)[0] != isa:
            pytest.skip('this CPU has no %s' % isa)
        yield name
    finally:
        select('auto')
