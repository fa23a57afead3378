"""The ``ndconv`` command (also ``python -m ndconv``).

``ndconv info``
    Version, OpenMP, threads, BLAS, build flags and the optional extras.
``ndconv demo [--size 96] [--plot FILE.png]``
    ndconv's main job on generated data: a 3-D phantom filtered, max-pooled
    with indices and max-unpooled back, unpooled, upsampled with the
    trilinear kernel, and a 2-D image taken from (100, 100) to (50, 200) in
    one call.  Every step is timed and checked against an independent NumPy
    or SciPy computation; the exit status is 1 when a check fails.
``ndconv bench [--quick] [--plot FILE.png] ...``
    The benchmark suite (`ndconv.bench`): ndconv against its peers.
"""

import argparse
import importlib
import os
import sys
import time

import numpy as np

PLOT_MISSING = ("--plot needs matplotlib, which is not installed; install it with "
                "`python -m pip install \"ndconv[plot]\"` (or `pip install matplotlib`)")


def _ndconv():
    return importlib.import_module(__package__ or 'ndconv')


def _pyplot():
    """matplotlib.pyplot on a file backend, or None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


# ----------------------------------------------------------------------------
# info

def _version_of(name):
    try:
        mod = importlib.import_module(name)
    except ImportError:
        return 'not installed'
    return getattr(mod, '__version__', 'installed')


def cmd_info(args):
    nd = _ndconv()
    nd.show_config()
    try:
        from . import _build_info as bi
        print('build: %s%s' % (' '.join(bi.COMPILE_ARGS),
                               ', DEBUG (bounds checks on)' if bi.DEBUG else ''))
        print('built with OpenMP: %s' % ('yes' if bi.OPENMP else 'no'))
    except ImportError:
        print('build: unknown (no ndconv._build_info)')
    print('python %s, numpy %s, scipy %s' % (sys.version.split()[0], np.__version__,
                                             _version_of('scipy')))
    print('extras: ' + ', '.join('%s %s' % (m, _version_of(m)) for m in
                                 ('dask', 'distributed', 'matplotlib', 'threadpoolctl')))
    return 0


# ----------------------------------------------------------------------------
# demo: the data and the NumPy references (independent of ndconv).

def phantom(size, seed=0):
    """A (1, 1, size, size, size) float32 volume: spheres in Gaussian noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:size, :size, :size]
    vol = np.zeros((size,) * 3, np.float32)
    for _ in range(12):
        c = rng.uniform(0.15, 0.85, 3) * size
        r = rng.uniform(0.05, 0.18) * size
        vol[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r] += rng.uniform(0.4, 1.0)
    vol += rng.normal(0.0, 0.2, vol.shape).astype(np.float32)
    return vol[None, None]


def rings_image(shape=(100, 100)):
    """A (1, 1, H, W) float32 pattern of rings and stripes."""
    h, w = shape
    y, x = np.mgrid[:h, :w].astype(np.float32)
    r = np.hypot(y - h / 2, x - w / 2)
    img = 0.5 + 0.5 * np.cos(r / 3.0) * np.exp(-r / (0.6 * max(h, w)))
    img += 0.25 * (np.sin(x / 4.0) > 0)
    return img.astype(np.float32)[None, None]


def gaussian_kernel(k, sigma):
    t = np.arange(k) - (k - 1) / 2.0
    g = np.exp(-t ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    return np.einsum('i,j,k->ijk', g, g, g).astype(np.float32)


def ref_maxpool2(v):
    """Max over 2x2x2 blocks by reshaping, and the flat index of the first
    maximum of each block (C order inside the block)."""
    a, b, c = (s // 2 for s in v.shape)
    blocks = v[:2 * a, :2 * b, :2 * c].reshape(a, 2, b, 2, c, 2).transpose(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(a, b, c, 8)
    arg = blocks.argmax(axis=-1)
    dz, dy, dx = np.unravel_index(arg, (2, 2, 2))
    i, j, k = np.ogrid[:a, :b, :c]
    flat = ((2 * i + dz) * v.shape[1] + 2 * j + dy) * v.shape[2] + 2 * k + dx
    return blocks.max(axis=-1), flat


def ref_linear_upsample2(v):
    """Linear x2 upsampling along every axis, zero outside (the adjoint
    of the FCN kernel [1/4, 3/4, 3/4, 1/4] with stride 2 and pad 1)."""
    out = v.astype(np.float64)
    for axis in range(out.ndim):
        x = np.moveaxis(out, axis, 0)
        prev = np.concatenate([np.zeros_like(x[:1]), x[:-1]])
        nxt = np.concatenate([x[1:], np.zeros_like(x[:1])])
        y = np.empty((2 * x.shape[0],) + x.shape[1:])
        y[0::2] = 0.75 * x + 0.25 * prev
        y[1::2] = 0.75 * x + 0.25 * nxt
        out = np.moveaxis(y, 0, axis)
    return out


def ref_conv2d(img, w, stride, input_dilate, pads):
    """Cross-correlation by hand: zeros inserted, padded, windowed."""
    (sy, sx), (ry, rx) = stride, input_dilate
    h, wd = img.shape
    xd = np.zeros(((h - 1) * ry + 1, (wd - 1) * rx + 1), np.float64)
    xd[::ry, ::rx] = img
    xp = np.pad(xd, pads)
    win = np.lib.stride_tricks.sliding_window_view(xp, w.shape)[::sy, ::sx]
    return np.einsum('ijkl,kl->ij', win, w.astype(np.float64))


# ----------------------------------------------------------------------------
# demo: the run.

class _Steps:
    def __init__(self):
        self.rows = []
        self.ok = True

    def run(self, name, fn, repeat=3):
        """Call ``fn`` ``repeat`` times; its result and the best time in ms."""
        best = float('inf')
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = fn()
            best = min(best, time.perf_counter() - t0)
        return res, best * 1e3

    def report(self, name, shape, ms, check, ok):
        if ok is not None:
            self.ok &= bool(ok)
        line = '%-48s %-19s %9s  %-6s %s' % (
            name, shape, '' if ms is None else '%.1f ms' % ms,
            '' if ok is None else ('OK' if ok else 'FAILED'), check)
        print(line.rstrip())
        sys.stdout.flush()


def _err(got, ref):
    """Largest error relative to the largest reference value."""
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def cmd_demo(args):
    plt = None
    if args.plot:
        plt = _pyplot()
        if plt is None:
            sys.stderr.write('ndconv demo: %s\n' % PLOT_MISSING)
            return 2
    nd = _ndconv()
    from scipy import ndimage
    if args.size < 8 or args.size % 2:
        sys.stderr.write('ndconv demo: --size must be an even number >= 8\n')
        return 2
    if args.threads is not None:
        nd.set_num_threads(args.threads)
    S = args.size
    tol = 2e-5
    st = _Steps()
    print('ndconv %s demo: %d threads, every step checked against NumPy/SciPy'
          % (nd.__version__, nd.get_num_threads()))
    print('%-48s %-19s %9s  %s' % ('step (time: best of 3 calls)', 'output shape', 'time',
                                   'check'))

    vol = phantom(S, args.seed)
    st.report('phantom: 12 spheres in noise (float32)', vol.shape, None, '', None)

    # 1. Filter with a 5x5x5 Gaussian, zero padding, same size.
    k = gaussian_kernel(5, 1.0)
    filt, ms = st.run('filter', lambda: nd.convolution_nd(vol, k[None, None], pad=2))
    e = _err(filt[0, 0], ndimage.correlate(vol[0, 0].astype(np.float64), k, mode='constant'))
    st.report('filter: convolution_nd, 5^3 Gaussian, pad=2', filt.shape, ms,
              'err %.1e vs scipy.ndimage.correlate' % e, e < tol)

    # 2. Max pooling 2x2x2 with indices.
    (pooled, idx), ms = st.run('pool', lambda: nd.max_pooling_nd(filt, 2, return_indices=True))
    rp, ri = ref_maxpool2(filt[0, 0])
    ok = np.array_equal(pooled[0, 0], rp) and np.array_equal(idx[0, 0], ri)
    st.report('max_pooling_nd(2, return_indices=True)', pooled.shape, ms,
              '%s reshape-max and argmax' % ('equal to' if ok else 'differs from'), ok)

    # 3. Max unpooling back to the full size.
    unp, ms = st.run('max_unpool', lambda: nd.max_unpooling_nd(pooled, idx, 2))
    ref = np.zeros(filt.shape[2:], filt.dtype)
    ref.ravel()[ri.ravel()] = rp.ravel()
    ok = np.array_equal(unp[0, 0], ref)
    st.report('max_unpooling_nd(2)', unp.shape, ms,
              '%s a scatter at the indices' % ('equal to' if ok else 'differs from'), ok)

    # 4. Unpooling: every value over its 2x2x2 window.
    up, ms = st.run('unpool', lambda: nd.unpooling_nd(pooled, 2, cover_all=False))
    ref = pooled[0, 0]
    for axis in range(3):
        ref = ref.repeat(2, axis=axis)
    ok = np.array_equal(up[0, 0], ref)
    st.report('unpooling_nd(2, cover_all=False)', up.shape, ms,
              '%s numpy.repeat' % ('equal to' if ok else 'differs from'), ok)

    # 5. Trilinear x2 upsampling by transposed convolution.
    W = nd.linear_upsampling_kernel(2, 3, 1)
    tri, ms = st.run('upsample', lambda: nd.deconvolution_nd(pooled, W, stride=2, pad=1))
    e = _err(tri[0, 0], ref_linear_upsample2(pooled[0, 0]))
    st.report('trilinear x2: deconvolution_nd(stride=2, pad=1)', tri.shape, ms,
              'err %.1e vs separable linear interpolation' % e, e < tol)

    # 6. A 2-D image from (100, 100) to (50, 200) in one call.
    img = rings_image()
    w2 = (np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0).astype(np.float32)
    kw = dict(stride=(2, 1), input_dilate=(1, 2), pad=((1, 1), (2, 2)))
    res2, ms = st.run('2d', lambda: nd.convolution_nd(img, w2[None, None], **kw))
    e = _err(res2[0, 0], ref_conv2d(img[0, 0], w2, kw['stride'], kw['input_dilate'],
                                    kw['pad']))
    st.report('2-D: convolution_nd, (100, 100) -> (50, 200)', res2.shape, ms,
              'err %.1e vs zeros inserted + pad + windows' % e, e < tol)
    print('  (ksize 4, stride (2, 1), input_dilate (1, 2), pad ((1, 1), (2, 2)))')

    if plt is not None:
        _demo_figure(plt, args.plot, [
            ('phantom', vol), ('filtered', filt), ('max-pooled', pooled),
            ('max-unpooled', unp), ('unpooled', up), ('trilinear x2', tri),
            ('2-D image', img), ('2-D result (one call)', res2)])
        print('figure written to %s' % args.plot)
    print('all checks passed' if st.ok else 'SOME CHECKS FAILED')
    return 0 if st.ok else 1


def _middle(a):
    a = a[0, 0]
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    return a


def _demo_figure(plt, path, panels):
    fig, axes = plt.subplots(2, 4, figsize=(13, 7.4), constrained_layout=True)
    for ax, (title, a) in zip(axes.ravel(), panels):
        m = _middle(a)
        ax.imshow(m, cmap='gray', interpolation='nearest')
        ax.set_title('%s\n%s' % (title, 'x'.join(map(str, a.shape[2:]))), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle('ndconv demo: middle slices', fontsize=12)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------
# bench

def _progress_bar(stream=None, width=30):
    stream = sys.stderr if stream is None else stream

    def progress(done, total, name=None):
        total = max(int(total), 1)
        filled = width * done // total
        label = '' if name is None else ' ' + str(name)
        stream.write('\r[%s%s] %d/%d%s\033[K' % ('#' * filled, '.' * (width - filled),
                                                  done, total, label))
        if name is None:
            stream.write('\n')
        stream.flush()
    return progress


def _load_bench():
    try:
        return importlib.import_module('.bench', __package__ or 'ndconv')
    except ImportError as exc:
        if getattr(exc, 'name', None) not in ('ndconv.bench', None):
            raise
        return None


def cmd_bench(args):
    bench = _load_bench()
    if bench is None or not hasattr(bench, 'run'):
        sys.stderr.write('ndconv bench: the benchmark suite (ndconv.bench) is not '
                         'part of this installation of ndconv\n')
        return 2
    plt = None
    if args.plot:
        plt = _pyplot()
        if plt is None:
            sys.stderr.write('ndconv bench: %s\n' % PLOT_MISSING)
            return 2
    if args.list:
        for c in getattr(bench, 'CASES', []):
            print('%-18s %s' % (c.name, getattr(c, 'title', '')))
        return 0
    if args.threads < 1 or args.repeat < 5:
        sys.stderr.write('ndconv bench: --threads must be >= 1 and --repeat >= 5\n')
        return 2
    info = None
    if hasattr(bench, 'machine') and hasattr(bench, 'format_header'):
        info = bench.machine(args.threads, args.quick, args.repeat, args.cold)
        print(bench.format_header(info, args.quick, args.repeat))
        print()
        sys.stdout.flush()
    try:
        rows = bench.run(args.cases, threads=args.threads, repeat=args.repeat,
                         quick=args.quick, progress=_progress_bar(), memory=args.memory,
                         speedup=args.speedup, cold=args.cold)
    except ValueError as exc:
        sys.stderr.write('ndconv bench: %s\n' % exc)
        return 2
    print(bench.format_table(rows, info))
    if args.json:
        import json
        with open(args.json, 'w') as f:
            json.dump({'machine': info, 'rows': rows}, f, indent=1, default=str)
        print('results written to %s' % args.json)
    if plt is not None:
        _bench_figure(plt, args.plot, rows)
        print('figure written to %s' % args.plot)
    bad = [r for r in rows if r.get('status') in ('mismatch', 'error')]
    return 1 if bad else 0


def _bench_figure(plt, path, rows):
    """Grouped bars per case: each implementation's median time over ndconv's."""
    cases, impls, ms = [], [], {}
    for r in rows:
        if r.get('ms') is None:
            continue
        if r['case'] not in cases:
            cases.append(r['case'])
        if r['impl'] not in impls:
            impls.append(r['impl'])
        ms[r['case'], r['impl']] = r['ms']
    if 'ndconv' in impls:
        impls.remove('ndconv')
        impls.insert(0, 'ndconv')
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(cases) + 3), 4.5),
                           constrained_layout=True)
    width = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        xs, hs = [], []
        for i, c in enumerate(cases):
            base = ms.get((c, 'ndconv'))
            if base and (c, impl) in ms:
                xs.append(i + (j - (len(impls) - 1) / 2) * width)
                hs.append(ms[c, impl] / base)
        ax.bar(xs, hs, width, label=impl)
    ax.axhline(1.0, color='k', lw=0.8)
    ax.set_yscale('log')
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=35, ha='right', fontsize=8)
    ax.set_ylabel('median time / ndconv time (lower is faster)')
    ax.set_title('ndconv against its peers')
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------

def add_bench_arguments(p):
    """The benchmark suite's options (`ndconv.bench`), on an argparse parser:
    ``ndconv bench`` and ``benchmarks/run.py`` share them.  Here, so that
    building the command's parser does not import the suite."""
    p.add_argument('--quick', action='store_true',
                   help='tiny sizes: the whole suite in a few seconds (smoke test)')
    p.add_argument('--threads', type=int, default=2,
                   help='threads for ndconv, torch and BLAS (default 2)')
    p.add_argument('--cases', default=None, metavar='PATTERN',
                   help='comma-separated case names, globs or substrings '
                   '(default: all; --list shows them)')
    p.add_argument('--repeat', type=int, default=7,
                   help='timed calls per implementation, >= 5 (default 7)')
    p.add_argument('--memory', nargs='?', const='ndconv', default=None,
                   choices=('ndconv', 'all'),
                   help='also measure the peak extra memory of one call in a '
                   'fresh subprocess (slow); "all" measures the peers too')
    p.add_argument('--no-speedup', dest='speedup', action='store_false',
                   help='do not also time ndconv at 1 thread (the speed-up column)')
    p.add_argument('--cold', action='store_true',
                   help='time the first call after each pause (no untimed call before '
                   'it): multi-threaded calls then include the wake-up of idle cores')
    p.add_argument('--json', metavar='FILE', default=None,
                   help='also write the header facts and the rows as JSON')
    p.add_argument('--list', action='store_true', help='list the cases and exit')


def parser():
    p = argparse.ArgumentParser(
        prog='ndconv', description='N-dimensional convolution, pooling and '
        'unpooling for NumPy: configuration, a demo and the benchmarks.')
    sub = p.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    s = sub.add_parser('info', help='version, OpenMP, threads, BLAS, build flags')
    s.set_defaults(func=cmd_info)
    s = sub.add_parser('demo', help='filter, pool, unpool and upsample generated '
                       'data, each step timed and checked against NumPy')
    s.add_argument('--size', type=int, default=96,
                   help='edge of the 3-D phantom, even (default 96)')
    s.add_argument('--seed', type=int, default=0, help='phantom seed (default 0)')
    s.add_argument('--threads', type=int, default=None,
                   help='OpenMP threads (default: OMP_NUM_THREADS or all cores)')
    s.add_argument('--plot', metavar='FILE.png', default=None,
                   help='write a figure of the middle slices (needs matplotlib)')
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser('bench', help='the benchmark suite: ndconv against its peers')
    add_bench_arguments(s)
    s.add_argument('--plot', metavar='FILE.png', default=None,
                   help='write a bar chart of the times (needs matplotlib)')
    s.set_defaults(func=cmd_bench)
    return p


def main(argv=None):
    """Run the ``ndconv`` command with ``argv`` (default: ``sys.argv[1:]``);
    return the exit status."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (``ndconv info | head -1``): stop quietly.
        try:
            sys.stdout = open(os.devnull, 'w')
        except OSError:
            pass
        return 0
