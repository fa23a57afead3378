"""ndconv.dask: lazy, chunked versions equal to the in-memory functions.

Every case computes the same call in memory and on a Dask array cut into
several chunkings (single cells, uneven chunks, one chunk, chunks smaller
than the kernel or the stride), on the threaded scheduler and on a real
distributed.LocalCluster.  Skipped cleanly when dask is not installed.
"""

import numpy as np
import pytest

da = pytest.importorskip('dask.array')
dask = pytest.importorskip('dask')

import ndconv  # noqa: E402
import ndconv.dask as ndd  # noqa: E402

CHUNKINGS_2D = [(2, 2, 4, 5), (1, 3, 3, 2), (2, 3, 100, 100), (1, 2, 7, 3)]


@pytest.fixture(autouse=True)
def threaded_scheduler():
    with dask.config.set(scheduler='threads'):
        yield


def _close(got, ref):
    """Equal up to a different blocking of the sums (in practice bitwise)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype
    rtol = {np.float16: 1e-3, np.float32: 1e-5, np.float64: 1e-12}[ref.dtype.type]
    finite = np.abs(ref[np.isfinite(ref)])
    scale = max(float(finite.max()) if finite.size else 0.0, 1.0)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


def _equal(got, ref):
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


def _chunked(x, chunks):
    return da.from_array(x, chunks=tuple(min(c, s) for c, s in zip(chunks, x.shape)))


# ----------------------------------------------------------------------------
# Convolution and transposed convolution.

CONV_CASES = [
    dict(),
    dict(stride=2),
    dict(stride=(3, 2), pad=((2, 1), (0, 3))),
    dict(pad='same', stride=2),
    dict(pad='full', dilate=2),
    dict(cover_all=True, stride=3, pad=1),
    dict(input_dilate=(1, 2), stride=(2, 1), pad=((1, 1), (2, 2))),
    dict(input_dilate=3, pad=5),
    dict(pad=3, pad_mode='reflect'),
    dict(pad=20, pad_mode='wrap', stride=2, cover_all=True),
    dict(pad=((4, 0), (1, 7)), pad_mode='edge'),
    dict(groups=3, stride=2, pad=1, bias=True),
]


@pytest.mark.parametrize('kw', CONV_CASES, ids=str)
@pytest.mark.parametrize('chunks', CHUNKINGS_2D, ids=str)
def test_convolution_matches_memory(rng, kw, chunks):
    kw = dict(kw)
    groups = kw.get('groups', 1)
    b = rng.standard_normal(6) if kw.pop('bias', False) else None
    x = rng.standard_normal((2, 3, 13, 11))
    W = rng.standard_normal((6, 3 // groups, 3, 2))
    ref = ndconv.convolution_nd(x, W, b, **kw)
    y = ndd.convolution_nd(_chunked(x, chunks), W, b, **kw)
    assert isinstance(y, da.Array) and y.shape == ref.shape
    _close(y.compute(), ref)


DECONV_CASES = [
    dict(),
    dict(stride=2),
    dict(stride=(4, 5)),
    dict(stride=(3, 2), pad=((2, 1), (0, 3))),
    dict(pad='same', stride=2),
    dict(pad=((5, 4), (3, 3)), stride=2),
    dict(stride=3, outsize=(33, 25)),
    dict(stride=3, outsize=(31, 27)),
    dict(dilate=(2, 3), stride=2, pad=1),
    dict(groups=2, stride=2, bias=True),
]


@pytest.mark.parametrize('kw', DECONV_CASES, ids=str)
@pytest.mark.parametrize('chunks', CHUNKINGS_2D, ids=str)
def test_deconvolution_matches_memory(rng, kw, chunks):
    kw = dict(kw)
    b = rng.standard_normal(6).astype(np.float32) if kw.pop('bias', False) else None
    x = rng.standard_normal((2, 4, 11, 9)).astype(np.float32)
    W = rng.standard_normal((4, 6 // kw.get('groups', 1), 3, 2)).astype(np.float32)
    ref = ndconv.deconvolution_nd(x, W, b, **kw)
    y = ndd.deconvolution_nd(_chunked(x, chunks), W, b, **kw)
    assert y.shape == ref.shape
    _close(y.compute(), ref)


def test_chunks_of_one_cell(rng):
    x = rng.standard_normal((1, 2, 7, 6))
    xd = da.from_array(x, chunks=1)
    W = rng.standard_normal((2, 2, 3, 2))
    for kw in (dict(stride=2, pad=((2, 1), (0, 3)), dilate=(1, 2)),
               dict(input_dilate=(2, 1), pad='same', cover_all=True)):
        _close(ndd.convolution_nd(xd, W, **kw).compute(), ndconv.convolution_nd(x, W, **kw))
    _close(ndd.deconvolution_nd(xd, W, stride=(4, 3)).compute(),
           ndconv.deconvolution_nd(x, W, stride=(4, 3)))
    y, i = ndd.max_pooling_nd(xd, 3, 2, 1, return_indices=True)
    ry, ri = ndconv.max_pooling_nd(x, 3, 2, 1, return_indices=True)
    _equal(y.compute(), ry)
    _equal(i.compute(), ri)
    _equal(ndd.max_unpooling_nd(y, i, 3, 2, 1, outsize=x.shape[2:]).compute(),
           ndconv.max_unpooling_nd(ry, ri, 3, 2, 1, outsize=x.shape[2:]))
    _equal(ndd.unpooling_nd(xd, 3, 2, 1).compute(), ndconv.unpooling_nd(x, 3, 2, 1))


@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_convolution_3d_channels_and_dtypes(rng, dtype):
    x = rng.standard_normal((2, 8, 12, 10, 9)).astype(dtype)
    W = rng.standard_normal((5, 8, 3, 3, 3)).astype(dtype)
    for kw in (dict(pad=1), dict(stride=2, pad=1), dict(pad='same', dilate=2)):
        ref = ndconv.convolution_nd(x, W, **kw)
        y = ndd.convolution_nd(da.from_array(x, chunks=(1, 3, 5, 4, 9)), W, **kw)
        _close(y.compute(), ref)
    ref = ndconv.deconvolution_nd(x, W.swapaxes(0, 1), stride=2, pad=1)
    y = ndd.deconvolution_nd(da.from_array(x, chunks=(1, 3, 5, 4, 9)), W.swapaxes(0, 1),
                             stride=2, pad=1)
    _close(y.compute(), ref)


@pytest.mark.parametrize('method', ['implicit', 'gemm', 'direct'])
def test_method_reaches_the_blocks(rng, method, monkeypatch):
    from ndconv import conv as conv_mod
    seen = []
    real = conv_mod.convolution_nd

    def spy(*a, **k):
        seen.append(k.get('method'))
        return real(*a, **k)
    monkeypatch.setattr(conv_mod, 'convolution_nd', spy)
    x = rng.standard_normal((1, 3, 11, 10))
    W = rng.standard_normal((4, 3, 3, 3))
    xd = da.from_array(x, chunks=(1, 3, 4, 5))
    _close(ndd.convolution_nd(xd, W, pad=1, method=method).compute(),
           real(x, W, pad=1))
    _close(ndd.deconvolution_nd(xd, W.swapaxes(0, 1), stride=2, method=method).compute(),
           ndconv.deconvolution_nd(x, W.swapaxes(0, 1), stride=2))
    assert seen and set(seen) == {method}


def test_one_spatial_axis_and_four(rng):
    x = rng.standard_normal((1, 2, 23))
    W = rng.standard_normal((3, 2, 4))
    ref = ndconv.convolution_nd(x, W, stride=3, pad=((2, 1),))
    _close(ndd.convolution_nd(da.from_array(x, chunks=(1, 2, 5)), W, stride=3,
                              pad=((2, 1),)).compute(), ref)
    x = rng.standard_normal((1, 1, 6, 5, 4, 7))
    W = rng.standard_normal((1, 2, 2, 3, 2, 3))
    ref = ndconv.deconvolution_nd(x, W, stride=2, pad=1)
    _close(ndd.deconvolution_nd(da.from_array(x, chunks=(1, 1, 2, 3, 4, 3)), W, stride=2,
                                pad=1).compute(), ref)


def test_linear_upsampling_chunks_follow_the_input(rng):
    x = rng.standard_normal((1, 2, 12, 12, 12)).astype(np.float32)
    W = ndconv.linear_upsampling_kernel(2, 3, 2)
    y = ndd.deconvolution_nd(da.from_array(x, chunks=(1, 2, 4, 6, 12)), W, stride=2, pad=1)
    assert y.shape == (1, 2, 24, 24, 24)
    assert y.chunks[2:] == ((8, 8, 8), (12, 12), (24,))
    _close(y.compute(), ndconv.deconvolution_nd(x, W, stride=2, pad=1))


# ----------------------------------------------------------------------------
# The pooling family (exact: no sums are reordered).

POOL_CASES = [
    dict(ksize=2),
    dict(ksize=3, stride=2, pad=1),
    dict(ksize=3, stride=2, pad=1, cover_all=False),
    dict(ksize=(2, 3), stride=(3, 1), pad=((0, 2), (1, 1))),
    dict(ksize=3, stride=2, pad='same'),
    dict(ksize=3, stride=3, pad=2),
    dict(ksize=2, stride=4, pad=((0, 3), (1, 2))),
]


def _pool_input(rng, dtype=np.float32):
    x = rng.standard_normal((2, 3, 13, 11)).astype(dtype)
    x[0, 0, 3, 3] = np.nan
    x[1, 2, 5, 4:7] = 7.0  # ties
    return x


@pytest.mark.parametrize('kw', POOL_CASES, ids=str)
@pytest.mark.parametrize('chunks', CHUNKINGS_2D, ids=str)
def test_max_pooling_matches_memory(rng, kw, chunks):
    x = _pool_input(rng)
    ry, ri = ndconv.max_pooling_nd(x, return_indices=True, **kw)
    y, i = ndd.max_pooling_nd(_chunked(x, chunks), return_indices=True, **kw)
    y, i = dask.compute(y, i)
    _equal(y, ry)
    _equal(i, ri)
    _equal(ndd.max_pooling_nd(_chunked(x, chunks), **kw).compute(), ry)


@pytest.mark.parametrize('kw', POOL_CASES, ids=str)
@pytest.mark.parametrize('pad_value', [0, None])
def test_average_pooling_matches_memory(rng, kw, pad_value):
    kw = {k: v for k, v in kw.items() if k != 'cover_all'}
    x = _pool_input(rng, np.float64)
    ref = ndconv.average_pooling_nd(x, pad_value=pad_value, **kw)
    for chunks in CHUNKINGS_2D:
        y = ndd.average_pooling_nd(_chunked(x, chunks), pad_value=pad_value, **kw)
        _close(y.compute(), ref)


@pytest.mark.parametrize('kw', [c for c in POOL_CASES if c.get('pad') != 'same'], ids=str)
@pytest.mark.parametrize('cover_all', [True, False])
def test_unpooling_matches_memory(rng, kw, cover_all):
    kw = {k: v for k, v in kw.items() if k != 'cover_all'}
    x = rng.standard_normal((2, 3, 7, 6))
    ref = ndconv.unpooling_nd(x, cover_all=cover_all, **kw)
    for chunks in CHUNKINGS_2D:
        y = ndd.unpooling_nd(_chunked(x, chunks), cover_all=cover_all, **kw)
        _equal(y.compute(), ref)


@pytest.mark.parametrize('kw', [c for c in POOL_CASES if c.get('pad') != 'same'], ids=str)
def test_max_unpooling_inverts_max_pooling(rng, kw):
    x = _pool_input(rng)
    py, pi = ndconv.max_pooling_nd(x, return_indices=True, **kw)
    args = (kw['ksize'], kw.get('stride'), kw.get('pad', 0))
    ref = ndconv.max_unpooling_nd(py, pi, *args, outsize=x.shape[2:])
    for chunks in CHUNKINGS_2D:
        y = ndd.max_unpooling_nd(_chunked(py, chunks), _chunked(pi, chunks[::-1]), *args,
                                 outsize=x.shape[2:])
        _equal(y.compute(), ref)


def test_windows_of_padding_only(rng):
    # cover_all with a wide pad: whole output chunks read only padding.
    x = rng.standard_normal((1, 1, 5, 9))
    kw = dict(ksize=2, stride=2, pad=((0, 6), (5, 0)))
    ry, ri = ndconv.max_pooling_nd(x, return_indices=True, **kw)
    assert (ri == -1).any()
    y, i = ndd.max_pooling_nd(da.from_array(x, chunks=1), return_indices=True, **kw)
    _equal(y.compute(), ry)
    _equal(i.compute(), ri)
    for pv in (0, None):
        ref = ndconv.average_pooling_nd(x, 2, 2, ((0, 6), (5, 0)), pad_value=pv)
        _close(ndd.average_pooling_nd(da.from_array(x, chunks=1), 2, 2, ((0, 6), (5, 0)),
                                      pad_value=pv).compute(), ref)


def test_pooling_3d_keeps_batch_and_channel_chunks(rng):
    x = rng.standard_normal((2, 4, 10, 9, 8)).astype(np.float32)
    xd = da.from_array(x, chunks=(1, 2, 4, 5, 3))
    y, i = ndd.max_pooling_nd(xd, 2, return_indices=True)
    assert y.chunks[:2] == ((1, 1), (2, 2))
    ry, ri = ndconv.max_pooling_nd(x, 2, return_indices=True)
    _equal(y.compute(), ry)
    z = ndd.max_unpooling_nd(y, i, 2, outsize=x.shape[2:])
    _equal(z.compute(), ndconv.max_unpooling_nd(ry, ri, 2, outsize=x.shape[2:]))


# ----------------------------------------------------------------------------
# Laziness, arguments, errors.

def _exploding(shape, chunks):
    def boom(block):
        raise RuntimeError('computed')
    return da.zeros(shape, chunks=chunks).map_blocks(boom, dtype=np.float64)


def test_nothing_is_computed_until_asked():
    x = _exploding((1, 2, 16, 16), (1, 2, 8, 8))
    W = np.ones((2, 2, 3, 3))
    ys = [ndd.convolution_nd(x, W, pad=1), ndd.deconvolution_nd(x, W, stride=2),
          ndd.max_pooling_nd(x, 2), ndd.average_pooling_nd(x, 2), ndd.unpooling_nd(x, 2),
          ndd.max_pooling_nd(x, 2, return_indices=True)[1],
          ndd.max_unpooling_nd(x, x.astype(np.int64), 2)]
    for y in ys:
        with pytest.raises(RuntimeError, match='computed'):
            y.compute()


def test_arguments_are_checked_at_once():
    x = da.zeros((1, 2, 8, 8), chunks=4)
    with pytest.raises(ValueError, match='stride'):
        ndd.convolution_nd(x, np.ones((1, 2, 3, 3)), stride=0)
    with pytest.raises(TypeError):
        ndd.convolution_nd(x.astype(np.int32), np.ones((1, 2, 3, 3)))
    with pytest.raises(ValueError, match='channels'):
        ndd.convolution_nd(x, np.ones((1, 3, 3, 3)))
    with pytest.raises(ValueError, match='outsize'):
        ndd.deconvolution_nd(x, np.ones((2, 1, 3, 3)), stride=2, outsize=(40, 40))
    with pytest.raises(ValueError, match='method'):
        ndd.convolution_nd(x, np.ones((1, 2, 3, 3)), method='fft')
    with pytest.raises(ValueError, match='method'):
        ndd.deconvolution_nd(x, np.ones((2, 1, 3, 3)), method='fftw')
    with pytest.raises(ValueError):
        ndd.max_pooling_nd(x, (2, 2, 2))
    with pytest.raises(ValueError, match='3 dimensions'):
        ndd.max_pooling_nd(da.zeros((4, 4), chunks=2), 2)
    with pytest.raises(ValueError, match='shape'):
        ndd.max_unpooling_nd(x, da.zeros((1, 2, 8, 7), chunks=4, dtype=np.int64), 2)


def test_numpy_input_and_dask_weights(rng):
    x = rng.standard_normal((1, 2, 9, 9))
    W = rng.standard_normal((3, 2, 3, 3))
    ref = ndconv.convolution_nd(x, W, pad=1)
    _close(ndd.convolution_nd(x, da.from_array(W), pad=1).compute(), ref)


def test_max_unpooling_index_outside_its_window(rng):
    x = rng.standard_normal((1, 1, 4, 4))
    y, i = ndconv.max_pooling_nd(x, 2, return_indices=True)
    i = i.copy()
    i[0, 0, 0, 0] = 15  # inside the volume, outside the first window
    z = ndd.max_unpooling_nd(da.from_array(y, chunks=1), da.from_array(i, chunks=1), 2)
    with pytest.raises(ValueError, match='window'):
        z.compute()
    i[0, 0, 0, 0] = 16  # outside the volume
    z = ndd.max_unpooling_nd(da.from_array(y, chunks=1), da.from_array(i, chunks=1), 2)
    with pytest.raises(ValueError, match='outside the output volume'):
        z.compute()


def test_unknown_chunk_sizes_are_refused():
    x = da.zeros((1, 1, 8, 8), chunks=4)
    x = x[x.sum(axis=(1, 2, 3)) >= 0]
    with pytest.raises(ValueError, match='compute_chunk_sizes'):
        ndd.max_pooling_nd(x, 2)


# ----------------------------------------------------------------------------
# Random geometry and chunking.

def test_random_geometry_and_chunking():
    hypothesis = pytest.importorskip('hypothesis')
    st = pytest.importorskip('hypothesis.strategies')

    @st.composite
    def problem(draw):
        n = draw(st.integers(1, 3))
        shape = [draw(st.integers(1, 9)) for _ in range(n)]
        chunks = []
        for D in shape:
            cuts = sorted(draw(st.sets(st.integers(1, D - 1), max_size=3))) if D > 1 else []
            chunks.append(tuple(np.diff([0] + cuts + [D])))
        op = draw(st.sampled_from(['conv', 'deconv', 'max', 'avg', 'unpool']))
        k = [draw(st.integers(1, 4)) for _ in range(n)]
        s = [draw(st.integers(1, 3)) for _ in range(n)]
        p = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(n)]
        extra = {}
        if op == 'conv':
            extra['dilate'] = [draw(st.integers(1, 2)) for _ in range(n)]
            extra['input_dilate'] = [draw(st.integers(1, 3)) for _ in range(n)]
            extra['cover_all'] = draw(st.booleans())
        elif op in ('max', 'unpool'):
            extra['cover_all'] = draw(st.booleans())
        return n, shape, tuple(chunks), op, k, s, p, extra

    @hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
    @hypothesis.given(problem())
    def check(prob):
        n, shape, chunks, op, k, s, p, extra = prob
        rng = np.random.default_rng(len(shape) + sum(shape))
        x = rng.standard_normal([1, 2] + shape)
        xd = da.from_array(x, chunks=(1, 1) + chunks)
        if op in ('conv', 'deconv'):
            W = rng.standard_normal([2, 2] + k)
            f, g = ((ndconv.convolution_nd, ndd.convolution_nd) if op == 'conv'
                    else (ndconv.deconvolution_nd, ndd.deconvolution_nd))
            args = (W, None, s, tuple(p))
            kwargs = {key: v for key, v in extra.items() if key != 'input_dilate'}
            if op == 'conv':
                kwargs['input_dilate'] = extra['input_dilate']
        elif op == 'max':
            f, g, args, kwargs = ndconv.max_pooling_nd, ndd.max_pooling_nd, (k, s, tuple(p)), extra
        elif op == 'avg':
            f, g, args, kwargs = (ndconv.average_pooling_nd, ndd.average_pooling_nd,
                                  (k, s, tuple(p)), {})
        else:
            f, g, args, kwargs = ndconv.unpooling_nd, ndd.unpooling_nd, (k, s, tuple(p)), extra
        try:
            ref = f(x, *args, **kwargs)
        except ValueError:
            with pytest.raises(ValueError):
                g(xd, *args, **kwargs)
            return
        got = g(xd, *args, **kwargs).compute(scheduler='synchronous')
        _close(got, ref)

    check()


# ----------------------------------------------------------------------------
# A real distributed cluster.

def _pipeline(x):
    """conv -> max pool with indices -> max unpool -> trilinear x2, both ways."""
    W = np.full((2, 1, 3, 3, 3), 1.0 / 27, np.float32)
    up = ndconv.linear_upsampling_kernel(2, 3, 2)
    xd = da.from_array(x, chunks=(1, 1, 12, 16, 20))
    f = ndd.convolution_nd(xd, W, pad=1)
    p, i = ndd.max_pooling_nd(f, 2, return_indices=True)
    u = ndd.max_unpooling_nd(p, i, 2, outsize=f.shape[2:])
    t = ndd.deconvolution_nd(p, up, stride=2, pad=1)
    f0 = ndconv.convolution_nd(x, W, pad=1)
    p0, i0 = ndconv.max_pooling_nd(f0, 2, return_indices=True)
    u0 = ndconv.max_unpooling_nd(p0, i0, 2, outsize=f0.shape[2:])
    t0 = ndconv.deconvolution_nd(p0, up, stride=2, pad=1)
    return (f, p, i, u, t), (f0, p0, i0, u0, t0)


@pytest.mark.parametrize('processes', [False, True])
def test_distributed_local_cluster(rng, processes):
    distributed = pytest.importorskip('distributed')
    x = rng.standard_normal((2, 1, 24, 32, 40)).astype(np.float32)
    lazy, ref = _pipeline(x)
    # In-process workers would measure the whole test process against their
    # limit (and pause), so only worker processes get a small one.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                  memory_limit='512MiB' if processes else 0,
                                  dashboard_address=':0') as cluster, \
            distributed.Client(cluster) as client:
        got = client.compute(list(lazy), sync=True)
    for g, r in zip(got, ref):
        if r.dtype.kind == 'f':
            _close(g, r)
        else:
            _equal(g, r)
    _equal(got[3], ref[3])  # max unpooling is exact


@pytest.mark.slow
def test_distributed_volume_larger_than_a_worker():
    """The README's example: a 512 MiB volume through workers limited to
    400 MiB each, generated, filtered and pooled chunk by chunk; checked
    against the in-memory calls on the whole volume."""
    distributed = pytest.importorskip('distributed')
    size = 512
    x = da.random.default_rng(0).standard_normal((1, 1, size, size, size), dtype=np.float32,
                                                 chunks=(1, 1, 128, 128, 128))
    W = np.full((1, 1, 3, 3, 3), 1 / 27, np.float32)
    p = ndd.max_pooling_nd(ndd.convolution_nd(x, W, pad=1), 4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  memory_limit='400MiB', dashboard_address=':0') as cluster, \
            distributed.Client(cluster):
        got = p.compute()
    ref = ndconv.max_pooling_nd(ndconv.convolution_nd(x.compute(scheduler='threads'), W,
                                                      pad=1), 4)
    _close(got, ref)
