"""The ``ndconv`` command: info, demo (with and without --plot), bench."""

import os
import subprocess
import sys

import numpy as np
import pytest

import ndconv
from ndconv import cli


def test_info(capsys):
    assert cli.main(['info']) == 0
    out = capsys.readouterr().out
    assert out.startswith('ndconv %s\n' % ndconv.__version__)
    for word in ('OpenMP: ', 'threads: ', 'BLAS: ', 'build: ', 'numpy ', 'extras: '):
        assert word in out


def test_python_dash_m_runs_the_command(tmp_path):
    # The ndconv this test imported (installed, or built in place), run from
    # an empty directory: `python -m` puts the working directory first on
    # sys.path, where a source tree without its compiled kernels may be.
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(ndconv.__file__)))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    res = subprocess.run([sys.executable, '-m', 'ndconv', 'info'], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'OpenMP: ' in res.stdout
    res = subprocess.run([sys.executable, '-m', 'ndconv'], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and 'usage: ndconv' in res.stderr


def test_demo_checks_every_step(capsys, threads):
    assert cli.main(['demo', '--size', '16', '--threads', '1']) == 0
    out = capsys.readouterr().out
    for step in ('convolution_nd', 'max_pooling_nd', 'max_unpooling_nd', 'unpooling_nd',
                 'deconvolution_nd', '(1, 1, 50, 200)', 'all checks passed'):
        assert step in out
    assert 'FAILED' not in out
    assert out.count(' OK ') == 6


def test_demo_refuses_an_odd_size(capsys):
    assert cli.main(['demo', '--size', '15']) == 2
    assert 'even' in capsys.readouterr().err


def test_demo_plot(tmp_path, capsys):
    pytest.importorskip('matplotlib')
    path = tmp_path / 'demo.png'
    assert cli.main(['demo', '--size', '16', '--plot', str(path)]) == 0
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    monkeypatch.setitem(sys.modules, 'matplotlib.pyplot', None)
    path = tmp_path / 'demo.png'
    assert cli.main(['demo', '--plot', str(path)]) == 2
    err = capsys.readouterr().err
    assert 'matplotlib' in err and 'ndconv[plot]' in err
    assert not path.exists()
    assert cli.main(['bench', '--quick', '--plot', str(path)]) == 2
    assert 'ndconv[plot]' in capsys.readouterr().err


def test_references_are_right():
    """The demo's NumPy references against slow loops."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((4, 6, 2))
    m, idx = cli.ref_maxpool2(v)
    assert m.shape == idx.shape == (2, 3, 1)
    for i in range(2):
        for j in range(3):
            block = v[2 * i:2 * i + 2, 2 * j:2 * j + 2, 0:2]
            assert m[i, j, 0] == block.max()
            assert v.ravel()[idx[i, j, 0]] == block.max()
    x = rng.standard_normal(5)
    up = cli.ref_linear_upsample2(x)
    k = np.array([0.25, 0.75, 0.75, 0.25])
    loop = np.zeros(10)
    for i in range(5):
        for t in range(4):
            o = 2 * i + t - 1
            if 0 <= o < 10:
                loop[o] += x[i] * k[t]
    np.testing.assert_allclose(up, loop)
    img = rng.standard_normal((5, 4))
    w = rng.standard_normal((2, 3))
    y = cli.ref_conv2d(img, w, (2, 1), (1, 2), ((1, 0), (0, 2)))
    xd = np.zeros((5, 7))
    xd[:, ::2] = img
    xp = np.pad(xd, ((1, 0), (0, 2)))
    loop = np.array([[np.sum(xp[2 * a:2 * a + 2, b:b + 3] * w) for b in range(7)]
                     for a in range(3)])
    np.testing.assert_allclose(y, loop)


def test_bench_quick(tmp_path, capsys):
    bench = pytest.importorskip('ndconv.bench')
    names = [c.name for c in bench.CASES]
    case = 'unpool3d_k2' if 'unpool3d_k2' in names else names[0]
    path = tmp_path / 'bench.png'
    plot = ['--plot', str(path)] if _has_matplotlib() else []
    assert cli.main(['bench', '--quick', '--repeat', '5', '--threads', '1',
                     '--cases', case, '--json', str(tmp_path / 'b.json')] + plot) == 0
    captured = capsys.readouterr()
    assert case in captured.out and 'ndconv' in captured.out
    assert '1/1' in captured.err  # the progress bar
    if plot:
        assert path.read_bytes()[:4] == b'\x89PNG'
    import json
    with open(tmp_path / 'b.json') as f:
        assert any(r['impl'] == 'ndconv' for r in json.load(f)['rows'])


def test_bench_list(capsys):
    pytest.importorskip('ndconv.bench')
    assert cli.main(['bench', '--list']) == 0
    assert 'conv' in capsys.readouterr().out


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_bench_command_prints_limits_speedup_and_targets(capsys):
    pytest.importorskip('ndconv.bench')
    assert cli.main(['bench', '--quick', '--repeat', '5', '--threads', '2',
                     '--cases', 'conv3d_32ch']) == 0
    out = capsys.readouterr().out
    assert 'targets' in out and 'no machine limits given' not in out
    row = next(line for line in out.splitlines() if line.startswith('conv3d_32ch'))
    # ndconv's row carries a 1-thread time, a speed-up and a % of the GEMM limit
    assert row.split().count('-') <= 1, row
    assert cli.main(['bench', '--quick', '--repeat', '5', '--threads', '2',
                     '--cases', 'conv3d_32ch', '--no-speedup']) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith('conv3d_32ch'))
    assert row.split().count('-') >= 2, row
