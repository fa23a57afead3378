"""Reliability (issue 5): threads, absurd and big sizes, NaN and Inf, inputs
never modified, out= that overlaps an input.

- Threads: every function gives bitwise-identical results at 1 and 2 OpenMP
  threads and across repeats; 8 Python threads calling at once get what
  serial calls get; the kernels release the GIL; ``set_num_threads`` and
  ``threadpoolctl.threadpool_limits`` govern the thread count the kernels
  are handed.
- Absurd sizes: refused at once with MemoryError or ValueError, before
  anything big is allocated (checked with tracemalloc, which sees NumPy's
  allocations), from views of huge logical shape that own no memory.
- Big arrays (``slow``): results of more than 2**31 elements are right; each
  case runs in a subprocess that reports its time and peak memory.
- NaN and Inf propagate as IEEE arithmetic says.
- Inputs are never modified, whatever their layout and also with ``out=``.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest

import ndconv
import reference as R
import reference_pooling as RP

HAVE_POOLING = hasattr(ndconv, 'max_pooling_nd')
needs_pooling = pytest.mark.skipif(not HAVE_POOLING, reason='no pooling family yet')
# Where the ndconv under test lives (the source tree with an in-place build,
# or site-packages): subprocesses import that one.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ndconv.__file__)))


# ----------------------------------------------------------------------------
# One call of every function, on inputs big enough for several work items
# (tiles, row chunks, partial sums) per kernel.

def _calls(rng, dtype=np.float32):
    def a(*shape):
        return rng.standard_normal(shape).astype(dtype)

    calls = {
        'conv_gemm': (ndconv.convolution_nd, (a(2, 8, 40, 36), a(16, 8, 3, 3), a(16)),
                      dict(pad=1)),
        'conv_gemm_groups': (ndconv.convolution_nd, (a(2, 12, 17, 23), a(9, 4, 3, 5)),
                             dict(pad=((1, 2), (0, 3)), stride=(1, 2), groups=3)),
        'conv_direct': (ndconv.convolution_nd, (a(2, 1, 64, 70), a(1, 1, 5, 5)),
                        dict(pad='same', pad_mode='reflect')),
        'conv_3d': (ndconv.convolution_nd, (a(1, 3, 12, 14, 16), a(4, 3, 3, 3, 3)),
                    dict(dilate=(1, 2, 1), input_dilate=(2, 1, 1), cover_all=True)),
        'deconv': (ndconv.deconvolution_nd, (a(2, 8, 20, 19), a(8, 6, 4, 4), a(6)),
                   dict(stride=2, pad=1)),
        'deconv_1ch': (ndconv.deconvolution_nd, (a(2, 1, 50, 40), a(1, 1, 3, 3)),
                       dict(stride=(3, 2), outsize=(150, 80))),
        'grad_W': (ndconv.convolution_nd_grad_W, (a(4, 8, 32, 30), a(4, 6, 32, 30), 3),
                   dict(pad=1)),
        'grad_W_strided': (ndconv.convolution_nd_grad_W,
                           (a(3, 6, 21, 25), a(3, 4, 11, 12), (3, 4)),
                           dict(stride=2, pad=1, groups=2)),
    }
    if HAVE_POOLING:
        x = a(4, 3, 64, 66)
        pooled, idx = ndconv.max_pooling_nd(x, 3, stride=2, pad=1, return_indices=True)
        calls.update({
            'max_pool': (ndconv.max_pooling_nd, (x, 3), dict(stride=2, pad=1,
                                                             return_indices=True)),
            'avg_pool': (ndconv.average_pooling_nd, (x, (3, 2)),
                         dict(stride=1, pad='same', pad_value=None)),
            'unpool': (ndconv.unpooling_nd, (a(3, 2, 30, 31), 3), dict(stride=2)),
            'max_unpool': (ndconv.max_unpooling_nd, (pooled, idx, 3),
                           dict(stride=2, pad=1, outsize=(64, 66))),
        })
    return calls


def _bytes(result):
    if isinstance(result, tuple):
        return b''.join(r.tobytes() for r in result)
    return result.tobytes()


def _run(call):
    fn, args, kwargs = call
    return fn(*args, **kwargs)


CALL_NAMES = list(_calls(np.random.default_rng(0)))


@pytest.fixture(scope='module')
def calls():
    return _calls(np.random.default_rng(1234))


@pytest.mark.parametrize('name', CALL_NAMES)
def test_bitwise_identical_at_1_and_2_threads(name, calls, threads):
    threads.set_num_threads(1)
    one = _bytes(_run(calls[name]))
    threads.set_num_threads(2)
    two = _bytes(_run(calls[name]))
    again = _bytes(_run(calls[name]))
    assert one == two
    assert two == again


def test_eight_python_threads_match_serial(calls, threads):
    threads.set_num_threads(2)
    names = sorted(calls)
    serial = {name: _bytes(_run(calls[name])) for name in names}
    jobs = [names[(i + j) % len(names)] for i in range(8) for j in range(len(names))]
    start = threading.Barrier(8)

    def worker(i):
        start.wait()
        return [(name, _bytes(_run(calls[name]))) for name in jobs[i::8]]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(worker, range(8)) for r in rs]
    assert len(results) == len(jobs)
    for name, got in results:
        assert got == serial[name], name


def _longest_stall(call):
    """The longest pause of a Python loop running in another thread while
    ``call`` runs, and how long the call took.  With the GIL released the
    loop pauses only while the caller runs Python code; with it held, for
    the whole kernel."""
    stop, box = threading.Event(), []

    def loop():
        last = time.perf_counter()
        longest = 0.0
        while not stop.is_set():
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now
        box.append(longest)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        thread = threading.Thread(target=loop)
        thread.start()
        time.sleep(0.02)
        t0 = time.perf_counter()
        call()
        elapsed = time.perf_counter() - t0
        stop.set()
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    return box[0], elapsed


def _gil_case(name):
    """A call of some 20 ms or more on one thread."""
    rng = np.random.default_rng(5)
    a = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    if name == 'convolution_nd':
        x, W = a(2, 32, 200, 200), a(32, 32, 5, 5)
        return lambda: ndconv.convolution_nd(x, W)
    if name == 'convolution_nd_direct':
        x, W = a(1, 1, 2000, 2000), a(1, 1, 11, 11)
        return lambda: ndconv.convolution_nd(x, W)
    if name == 'deconvolution_nd':
        x, W = a(4, 32, 120, 120), a(32, 32, 6, 6)
        return lambda: ndconv.deconvolution_nd(x, W, stride=2)
    if name == 'convolution_nd_grad_W':
        x, g = a(2, 32, 200, 200), a(2, 32, 196, 196)
        return lambda: ndconv.convolution_nd_grad_W(x, g, 5)
    x = a(4, 4, 400, 400)
    if name == 'max_pooling_nd':
        return lambda: ndconv.max_pooling_nd(x, 5, stride=1)
    if name == 'average_pooling_nd':
        return lambda: ndconv.average_pooling_nd(x, 9, stride=1, pad_value=None)
    return lambda: ndconv.unpooling_nd(x, 5, stride=2)


GIL_CASES = ['convolution_nd', 'convolution_nd_direct', 'deconvolution_nd',
             'convolution_nd_grad_W'] + (
    ['max_pooling_nd', 'average_pooling_nd', 'unpooling_nd'] if HAVE_POOLING else [])


@pytest.mark.parametrize('name', GIL_CASES)
def test_kernels_release_the_gil(name, threads):
    """With one OpenMP thread, a Python thread on the other core keeps
    running while a kernel computes: its longest stall is a fraction of the
    call (it would be all of it if the kernel held the GIL)."""
    threads.set_num_threads(1)
    call = _gil_case(name)
    call()   # warm up
    stall, elapsed = min(_longest_stall(call) for _ in range(3))
    assert stall < 0.5 * elapsed, (stall, elapsed)


def test_gil_check_can_fail():
    """The stall measure does see a call that holds the GIL."""
    stall, elapsed = _longest_stall(lambda: sum(range(2 * 10 ** 6)))
    assert stall > 0.5 * elapsed, (stall, elapsed)


class _KernelSpy:
    """Stands for a kernel module and records the thread count (the last
    argument) of every kernel call."""

    def __init__(self, module, seen):
        self._module, self._seen = module, seen

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if not callable(attr):
            return attr

        def spy(*args, **kwargs):
            # the kernels take the thread count last; helpers (the ISA in
            # use, ...) take no arguments
            if args and type(args[-1]) is int:
                self._seen.append(args[-1])
            return attr(*args, **kwargs)
        return spy


@pytest.fixture
def kernel_threads(monkeypatch):
    """The thread counts handed to the kernels during the test."""
    import ndconv._engine as engine
    seen = []
    monkeypatch.setattr(engine, '_conv', _KernelSpy(engine._conv, seen))
    if HAVE_POOLING:
        import ndconv.pooling as pooling
        monkeypatch.setattr(pooling, '_pool', _KernelSpy(pooling._pool, seen))
    return seen


def _every_kind(calls):
    for name in sorted(calls):
        _run(calls[name])


def test_set_num_threads_governs_the_kernels(calls, threads, kernel_threads):
    for n in (1, 2, 3):
        threads.set_num_threads(n)
        assert threads.get_num_threads() == n
        del kernel_threads[:]
        _every_kind(calls)
        # small calls may run serially; the big ones get the count set
        assert kernel_threads and max(kernel_threads) == n, kernel_threads


def test_threadpool_limits_governs_the_kernels(calls, threads, kernel_threads):
    threadpoolctl = pytest.importorskip('threadpoolctl')
    threads.set_num_threads(2)
    assert threads.get_num_threads() == 2
    with threadpoolctl.threadpool_limits(limits=1, user_api='openmp'):
        assert threads.get_num_threads() == 1
        del kernel_threads[:]
        _every_kind(calls)
        assert kernel_threads and set(kernel_threads) == {1}
    assert threads.get_num_threads() == 2
    del kernel_threads[:]
    _every_kind(calls)
    assert max(kernel_threads) == 2, kernel_threads


def test_threadpool_limits_restores_after_the_block(threads):
    threadpoolctl = pytest.importorskip('threadpoolctl')
    before = threads.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api='openmp'):
        assert threads.get_num_threads() == 1
    assert threads.get_num_threads() == before


def test_set_num_threads_reaches_other_python_threads(threads):
    threads.set_num_threads(1)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert pool.submit(threads.get_num_threads).result() == 1
    threads.set_num_threads(2)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert pool.submit(threads.get_num_threads).result() == 2


def _subprocess(code, env=None, timeout=600):
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    full_env.update(env or {})
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def test_absurd_thread_count_does_not_crash():
    """set_num_threads(100000) must be refused (ValueError) or capped; a call
    afterwards must not crash the interpreter."""
    proc = _subprocess('''
        import numpy as np, ndconv
        try:
            ndconv.set_num_threads(100000)
        except ValueError:
            pass
        y = ndconv.convolution_nd(np.ones((2, 3, 40, 40)), np.ones((4, 3, 3, 3)))
        assert float(y.sum()) == 311904.0
        print('ok')
    ''', timeout=300)
    assert proc.returncode == 0 and 'ok' in proc.stdout, proc.stderr[-2000:]


def test_huge_thread_count_is_a_value_error(threads):
    with pytest.raises(ValueError, match='n'):
        threads.set_num_threads(2 ** 40)


# ----------------------------------------------------------------------------
# Absurd sizes: refused at once, before allocating.

def _huge(shape, dtype=np.float32):
    """A read-only view of ``shape`` with no memory behind it."""
    return np.broadcast_to(np.ones((), dtype), shape)


def _absurd_cases():
    f32 = np.float32
    w1 = np.ones((1, 1, 1, 1), f32)
    cases = {
        # results that cannot fit
        'conv_huge_pad': lambda: ndconv.convolution_nd(np.ones((1, 1, 4, 4), f32), w1,
                                                       pad=10 ** 6),
        'conv_huge_view': lambda: ndconv.convolution_nd(_huge((1, 1, 2 ** 20, 2 ** 20)), w1),
        'conv_huge_batch': lambda: ndconv.convolution_nd(_huge((2 ** 40, 1, 1, 1)), w1),
        'conv_huge_input_dilate': lambda: ndconv.convolution_nd(
            np.ones((1, 1, 3, 3), f32), w1, input_dilate=10 ** 6),
        'conv_huge_channels': lambda: ndconv.convolution_nd(
            np.ones((1, 1, 2, 2), f32), _huge((2 ** 40, 1, 1, 1))),
        # a small result from a huge input: the compute copy is the workspace
        'conv_huge_view_strided': lambda: ndconv.convolution_nd(
            _huge((1, 1, 2 ** 20, 2 ** 20)), w1, stride=2 ** 10),
        'conv_huge_view_float16': lambda: ndconv.convolution_nd(
            _huge((1, 1, 2 ** 19, 2 ** 20), np.float16), w1.astype(np.float16),
            stride=2 ** 10),
        'deconv_huge_stride': lambda: ndconv.deconvolution_nd(
            np.ones((1, 1, 3, 3), f32), w1, stride=10 ** 6),
        'deconv_huge_outsize': lambda: ndconv.deconvolution_nd(
            np.ones((1, 1, 3, 3), f32), w1, stride=10 ** 6, outsize=(2 * 10 ** 6 + 1,) * 2),
        'deconv_huge_view': lambda: ndconv.deconvolution_nd(
            _huge((1, 1, 2 ** 20, 2 ** 20)), w1),
        'grad_w_huge_kernel': lambda: ndconv.convolution_nd_grad_W(
            np.ones((1, 1, 2), f32), np.ones((1, 1, 3), f32), 10 ** 11, pad=5 * 10 ** 10),
        'grad_w_huge_view': lambda: ndconv.convolution_nd_grad_W(
            _huge((1, 1, 2 ** 20, 2 ** 20)), _huge((1, 1, 2 ** 20, 2 ** 20)), 1),
        # geometry beyond 64-bit offsets
        'conv_stride_2_70': lambda: ndconv.convolution_nd(np.ones((1, 1, 4), f32),
                                                          np.ones((1, 1, 2), f32),
                                                          stride=2 ** 70),
        'conv_dilate_2_62': lambda: ndconv.convolution_nd(np.ones((1, 1, 4), f32),
                                                          np.ones((1, 1, 2), f32),
                                                          dilate=2 ** 62, pad=2 ** 62),
        'deconv_stride_2_63': lambda: ndconv.deconvolution_nd(np.ones((1, 1, 4), f32),
                                                              np.ones((1, 1, 2), f32),
                                                              stride=2 ** 63),
        'conv_outsize_2_80': lambda: ndconv.conv_outsize((2 ** 80,), 3),
    }
    if HAVE_POOLING:
        x = np.ones((1, 1, 4, 4), f32)
        cases.update({
            'unpool_huge_ksize': lambda: ndconv.unpooling_nd(x, 10 ** 6),
            'unpool_huge_view': lambda: ndconv.unpooling_nd(_huge((1, 1, 2 ** 18, 2 ** 18)), 4),
            'max_pool_huge_pad': lambda: ndconv.max_pooling_nd(x, 1, pad=10 ** 6),
            'max_pool_huge_view': lambda: ndconv.max_pooling_nd(_huge((1, 1, 2 ** 20, 2 ** 20)), 1),
            'max_pool_huge_view_strided': lambda: ndconv.max_pooling_nd(
                _huge((1, 1, 2 ** 20, 2 ** 20)), 2 ** 10),
            'avg_pool_huge_view_strided': lambda: ndconv.average_pooling_nd(
                _huge((1, 1, 2 ** 20, 2 ** 20)), 2 ** 10),
            'max_unpool_huge_outsize': lambda: ndconv.max_unpooling_nd(
                x, np.zeros((1, 1, 4, 4), np.int64), 1, stride=10 ** 6),
            'pool_stride_2_70': lambda: ndconv.max_pooling_nd(x, 1, stride=2 ** 70),
            'upsampling_kernel_channels': lambda: ndconv.linear_upsampling_kernel(2, 3, 2 ** 30),
            'upsampling_kernel_factor': lambda: ndconv.linear_upsampling_kernel(2 ** 62, 1, 1),
        })
    return cases


KNOWN_BUGS = {}   # case name -> reason, for bugs reported and not fixed yet


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_BUGS[name], strict=False))
    if name in KNOWN_BUGS else name for name in _absurd_cases()])
def test_absurd_sizes_are_refused_at_once(name):
    call = _absurd_cases()[name]
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises((MemoryError, ValueError)) as info:
            call()
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0, elapsed
    # NumPy refusing an allocation outright (more than the machine has) is
    # refused at once too, but tracemalloc counts the attempt
    if 'Unable to allocate' not in str(info.value):
        assert peak < 64 << 20, peak


@pytest.mark.slow
def test_max_unpooling_huge_view_is_refused_at_once():
    x = _huge((1, 1, 2 ** 17, 2 ** 16))            # result would be 32 GiB
    idx = _huge((1, 1, 2 ** 17, 2 ** 16), np.int64)
    t0 = time.perf_counter()
    with pytest.raises((MemoryError, ValueError)):
        ndconv.max_unpooling_nd(x, idx, 2, stride=1)   # overlapping windows
    assert time.perf_counter() - t0 < 2.0


# ----------------------------------------------------------------------------
# Big arrays: more than 2**31 output elements (slow; several GiB).

BIG_SCRIPT = '''
import json, resource, sys, time
import numpy as np
import ndconv

case = sys.argv[1]
CH = 1 << 26
t0 = time.perf_counter()
if case == 'unpooling_1d':
    # (1, 1, 2**30 + 1) -> 2**31 + 2 outputs, each input copied twice
    D = 2 ** 30 + 1
    x = np.empty((1, 1, D), np.float32)
    for s in range(0, D, CH):
        x[0, 0, s:s + CH] = np.arange(s, min(s + CH, D), dtype=np.float32) % 4093
    t1 = time.perf_counter()
    y = ndconv.unpooling_nd(x, 2, cover_all=False)
    t2 = time.perf_counter()
    assert y.shape == (1, 1, 2 * D) and y.dtype == np.float32
    yy = y.reshape(-1, 2)
    xf = x.reshape(-1)
    for s in range(0, D, CH):
        ref = xf[s:s + CH]
        assert np.array_equal(yy[s:s + CH, 0], ref) and np.array_equal(yy[s:s + CH, 1], ref), s
    n_out = y.size
elif case == 'conv_1x1_input_dilate':
    # a 1x1 convolution with input_dilate (2, 1): (2**15 + 1, 2**15) ->
    # (2**16 + 1, 2**15), 2**31 + 2**15 outputs; even rows 3 * x, odd rows 0
    H, Wd = 2 ** 15 + 1, 2 ** 15
    x = np.empty((1, 1, H, Wd), np.float32)
    rows = CH // Wd
    for r in range(0, H, rows):
        blk = x[0, 0, r:r + rows]
        blk[...] = (np.arange(r, r + blk.shape[0], dtype=np.float32)[:, None]
                    + np.arange(Wd, dtype=np.float32)[None, :]) % 1021
    W = np.full((1, 1, 1, 1), 3.0, np.float32)
    t1 = time.perf_counter()
    y = ndconv.convolution_nd(x, W, input_dilate=(2, 1))
    t2 = time.perf_counter()
    assert y.shape == (1, 1, 2 * H - 1, Wd) and y.dtype == np.float32
    for r in range(0, H, rows):
        ref = 3 * x[0, 0, r:r + rows]
        assert np.array_equal(y[0, 0, 2 * r:2 * (r + rows):2], ref), r
        odd = y[0, 0, 2 * r + 1:2 * (r + rows):2]
        assert not odd.any(), r
    n_out = y.size
else:
    raise SystemExit('unknown case ' + case)
t3 = time.perf_counter()
print(json.dumps(dict(case=case, outputs=n_out, call_s=round(t2 - t1, 2),
                      total_s=round(t3 - t0, 2), threads=ndconv.get_num_threads(),
                      peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                         / 2 ** 20, 2))))
'''


@pytest.mark.slow
@pytest.mark.parametrize('case', ['unpooling_1d', 'conv_1x1_input_dilate'])
def test_output_beyond_2_31_elements(case):
    if case == 'unpooling_1d' and not HAVE_POOLING:
        pytest.skip('no pooling family yet')
    proc = subprocess.run([sys.executable, '-c', BIG_SCRIPT, case], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get(
                              'PYTHONPATH', '')), capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print('\nbig array:', report)
    assert report['outputs'] > 2 ** 31


# ----------------------------------------------------------------------------
# NaN and Inf.

def _same_nonfinite(res, ref):
    """NaN exactly where the reference has NaN, the same infinities, and
    the finite values close."""
    res = np.asarray(res, np.float64)
    assert res.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(res), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(res), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(res), np.isneginf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(res[fin], ref[fin], rtol=1e-5, atol=1e-5)


def _poison(rng, shape, dtype=np.float32, count=4):
    x = rng.uniform(0.5, 1.5, shape).astype(dtype)
    flat = x.reshape(-1)
    spots = rng.choice(flat.size, size=3 * count, replace=False)
    flat[spots[:count]] = np.nan
    flat[spots[count:2 * count]] = np.inf
    flat[spots[2 * count:]] = -np.inf
    return x


@pytest.mark.parametrize('path', ['direct', 'gemm'])
@pytest.mark.parametrize('n', [1, 2, 3])
def test_nan_inf_convolution(path, n, rng):
    C_in, C_out = (1, 1) if path == 'direct' else (3, 4)
    x = _poison(rng, (2, C_in) + (7,) * n)
    W = rng.uniform(0.5, 1.5, (C_out, C_in) + (3,) * n).astype(np.float32)  # no zeros
    for kwargs in (dict(), dict(pad=1), dict(stride=2, pad=2, cover_all=True),
                   dict(pad=1, pad_mode='edge'), dict(input_dilate=2, pad=1)):
        res = ndconv.convolution_nd(x, W, **kwargs)
        pads = kwargs.get('pad', 0)
        ref = R.conv_nd_ref(x, W, None, kwargs.get('stride', 1), pads, 1,
                            kwargs.get('input_dilate', 1), kwargs.get('pad_mode', 'constant'),
                            kwargs.get('cover_all', False), 1)
        assert np.isnan(ref).any()
        _same_nonfinite(res, ref)


@pytest.mark.parametrize('n', [1, 2])
def test_nan_inf_deconvolution_and_grad_w(n, rng):
    x = _poison(rng, (2, 3) + (6,) * n)
    W = rng.uniform(0.5, 1.5, (3, 2) + (3,) * n).astype(np.float32)
    res = ndconv.deconvolution_nd(x, W, stride=2, pad=1)
    _same_nonfinite(res, R.deconv_nd_ref(x, W, None, 2, 1, None, 1, 1))
    gy = _poison(rng, (2, 2) + (4,) * n, count=1)
    res = ndconv.convolution_nd_grad_W(x, gy, 3, pad=0)
    _same_nonfinite(res, R.conv_grad_w_ref(x, gy, (3,) * n, 1, 0))


@pytest.mark.parametrize('case', [
    'zero_weight', 'zero_weight_gemm', 'deconv_zero_weight', 'nan_weight_on_padding'])
def test_nan_times_zero_is_nan(case):
    xn = np.array([[[1.0, np.nan, 3.0, np.inf]]])
    if case == 'zero_weight':
        res, ref = ndconv.convolution_nd(xn, np.array([[[0.0, 1.0]]])), \
            R.conv_nd_ref(xn, np.array([[[0.0, 1.0]]]))
    elif case == 'zero_weight_gemm':
        x = np.repeat(xn, 3, axis=1)
        W = np.zeros((3, 3, 2))
        W[:, :, 1] = 1.0
        res, ref = ndconv.convolution_nd(x, W), R.conv_nd_ref(x, W)
    elif case == 'deconv_zero_weight':
        W = np.array([[[0.0, 1.0]]])
        res, ref = ndconv.deconvolution_nd(xn, W), R.deconv_nd_ref(xn, W)
    else:
        x = np.ones((1, 1, 1))
        W = np.array([[[np.nan, 1.0, np.nan]]])
        res, ref = ndconv.convolution_nd(x, W, pad=1), R.conv_nd_ref(x, W, pads=1)
    assert np.isnan(ref).any()
    _same_nonfinite(res, ref)


@pytest.mark.parametrize('seed', range(4))
def test_nan_with_zero_weights_random(seed):
    """0 * NaN is NaN on every kernel path: weights half zeros, a few NaN inputs."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(1, 4))
        cin, cout = [(1, 1), (1, 3), (3, 1), (4, 5), (8, 8)][rng.integers(0, 5)]
        x = rng.uniform(0.5, 1.5, (1, cin) + (int(rng.integers(3, 9)),) * n)
        x.reshape(-1)[rng.choice(x.size, 2, replace=False)] = np.nan
        W = rng.uniform(0.5, 1.5, (cout, cin) + (3,) * n)
        W[rng.random(W.shape) < 0.5] = 0
        pad = int(rng.integers(0, 3))
        with np.errstate(invalid='ignore'):
            _same_nonfinite(ndconv.convolution_nd(x, W, pad=pad), R.conv_nd_ref(x, W, pads=pad))
            Wd = np.ascontiguousarray(W.swapaxes(0, 1))
            s = int(rng.integers(1, 3))
            _same_nonfinite(ndconv.deconvolution_nd(x, Wd, stride=s),
                            R.deconv_nd_ref(x, Wd, stride=s))


@needs_pooling
@pytest.mark.parametrize('n', [1, 2, 3])
def test_nan_inf_pooling(n, rng):
    x = _poison(rng, (2, 2) + (6,) * n, count=3)
    # ties and NaN next to each other: the first NaN wins
    x.reshape(-1)[:2] = np.nan
    for kwargs in (dict(ksize=2), dict(ksize=3, stride=2, pad=1),
                   dict(ksize=3, stride=1, pad=1, cover_all=False)):
        k = (kwargs['ksize'],) * n
        s = (kwargs.get('stride', kwargs['ksize']),) * n
        pads = ((kwargs.get('pad', 0),) * 2,) * n
        cover = kwargs.get('cover_all', True)
        y, idx = ndconv.max_pooling_nd(x, return_indices=True, **kwargs)
        ry, ridx = RP.max_pool(x, k, s, pads, cover)
        assert np.isnan(ry).any()
        _same_nonfinite(y, ry)
        np.testing.assert_array_equal(idx, ridx)
        back = ndconv.max_unpooling_nd(y, idx, kwargs['ksize'], stride=kwargs.get('stride'),
                                       pad=kwargs.get('pad', 0), outsize=x.shape[2:])
        _same_nonfinite(back, RP.max_unpool(y, idx, x.shape[2:]))
        if not cover:
            for pv in (0, None):
                _same_nonfinite(ndconv.average_pooling_nd(x, pad_value=pv, **{
                    k_: v for k_, v in kwargs.items() if k_ != 'cover_all'}),
                    RP.avg_pool(x, k, s, pads, pv == 0))
        _same_nonfinite(ndconv.unpooling_nd(x, kwargs['ksize'], stride=kwargs.get('stride'),
                                            cover_all=False),
                        RP.unpool(x, k, s, ((0, 0),) * n,
                                  tuple(si * (D - 1) + ki for si, D, ki in
                                        zip(s, x.shape[2:], k))))


@needs_pooling
def test_max_pool_nan_index_is_first_nan():
    x = np.array([[[1.0, np.nan, 5.0, np.nan, -np.inf, 2.0]]])
    y, idx = ndconv.max_pooling_nd(x, 3, return_indices=True)
    assert np.isnan(y[0, 0]).all()
    assert idx.tolist() == [[[1, 3]]]
    y, idx = ndconv.max_pooling_nd(np.array([[[-np.inf, -np.inf, np.inf, np.inf]]]), 2,
                                   return_indices=True)
    assert y.tolist() == [[[-np.inf, np.inf]]] and idx.tolist() == [[[0, 2]]]


# ----------------------------------------------------------------------------
# Inputs never modified; out= that overlaps an input refused.

def _layouts(a, tmp_path, name):
    mm = np.lib.format.open_memmap(str(tmp_path / (name + '.npy')), mode='w+',
                                   dtype=a.dtype, shape=a.shape)
    mm[...] = a
    mm.flush()
    ro = np.load(str(tmp_path / (name + '.npy')), mmap_mode='r')
    return {
        'C': a.copy(),
        'F': np.asfortranarray(a),
        'strided': np.repeat(a, 2, axis=-1)[..., ::2],
        'reversed': a[..., ::-1].copy()[..., ::-1],
        'memmap_rw': mm,
        'memmap_ro': ro,
    }


def _with_out(fn, args, kwargs):
    """The call's result shape/dtype, then the same call writing into out=."""
    ref = fn(*args, **kwargs)
    out = np.full(ref.shape, np.nan, ref.dtype)
    res = fn(*args, out=out, **kwargs)
    assert res is out
    np.testing.assert_array_equal(out, ref)
    return ref


@pytest.mark.parametrize('layout', ['C', 'F', 'strided', 'reversed', 'memmap_rw', 'memmap_ro'])
def test_inputs_never_modified(layout, tmp_path, rng):
    x = _layouts(rng.standard_normal((2, 4, 9, 8)).astype(np.float32), tmp_path, 'x')[layout]
    W = _layouts(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), tmp_path, 'W')[layout]
    Wd = _layouts(rng.standard_normal((4, 6, 3, 3)).astype(np.float32), tmp_path, 'Wd')[layout]
    b = _layouts(rng.standard_normal(6).astype(np.float32), tmp_path, 'b')[layout]
    gy = _layouts(rng.standard_normal((2, 6, 9, 8)).astype(np.float32), tmp_path, 'gy')[layout]
    arrays = [x, W, Wd, b, gy]
    before = [np.array(a).tobytes() for a in arrays]
    _with_out(ndconv.convolution_nd, (x, W, b), dict(pad=1))
    _with_out(ndconv.convolution_nd, (x, W, b), dict(pad=2, pad_mode='reflect'))
    _with_out(ndconv.deconvolution_nd, (x, Wd, b), dict(stride=2, pad=1))
    ndconv.convolution_nd_grad_W(x, gy, 3, pad=1)
    if HAVE_POOLING:
        y, idx = ndconv.max_pooling_nd(x, 2, return_indices=True)
        iy = [np.array(y).tobytes(), idx.tobytes()]
        ndconv.max_unpooling_nd(y, idx, 2)
        assert [np.array(y).tobytes(), idx.tobytes()] == iy
        ndconv.average_pooling_nd(x, 3, stride=1, pad=1, pad_value=None)
        ndconv.unpooling_nd(x, 3, stride=2)
    for a, bb in zip(arrays, before):
        assert np.array(a).tobytes() == bb


def test_out_overlapping_an_input_is_refused():
    buf = np.arange(64, dtype=np.float32)
    x = buf[:32].reshape(1, 2, 16)
    W = np.ones((2, 2, 1), np.float32)
    keep = buf.copy()
    for out in (x, buf[8:40].reshape(1, 2, 16), buf[31:63].reshape(1, 2, 16)):
        with pytest.raises(ValueError, match='out'):
            ndconv.convolution_nd(x, W, out=out)
        assert buf.tobytes() == keep.tobytes()
    # overlapping W, b, and the deconvolution's inputs
    Wb = buf[:4].reshape(2, 2, 1)
    with pytest.raises(ValueError, match='out'):
        ndconv.convolution_nd(np.ones((1, 2, 16), np.float32), Wb, out=buf[2:34].reshape(1, 2, 16))
    with pytest.raises(ValueError, match='out'):
        ndconv.convolution_nd(np.ones((1, 2, 16), np.float32), W, b=buf[:2],
                              out=buf[:32].reshape(1, 2, 16))
    with pytest.raises(ValueError, match='out'):
        ndconv.deconvolution_nd(x, W, out=buf[16:48].reshape(1, 2, 16))
    assert buf.tobytes() == keep.tobytes()
    # the same memory seen through a strided view of another shape
    with pytest.raises(ValueError, match='out'):
        ndconv.convolution_nd(buf[::2].reshape(1, 2, 16), W, out=buf[32:64].reshape(1, 2, 16))
    assert buf.tobytes() == keep.tobytes()


def test_out_next_to_an_input_is_accepted():
    """Sharing a buffer without overlapping is fine."""
    buf = np.zeros(64, np.float32)
    buf[:32] = np.arange(32)
    x = buf[:32].reshape(1, 2, 16)
    out = buf[32:].reshape(1, 2, 16)
    res = ndconv.convolution_nd(x, np.ones((2, 2, 1), np.float32), out=out)
    assert res is out
    np.testing.assert_array_equal(out[0, 0], np.arange(16) + np.arange(16, 32))
