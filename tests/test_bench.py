"""Smoke tests of the benchmark suite (ndconv/bench.py, benchmarks/run.py).

The suite runs in --quick mode on tiny sizes: it checks that every installed
peer agrees with ndconv, that missing peers (and pooling functions ndconv does
not have yet) are skipped, and that the table prints.  Timings are not
looked at.
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import ndconv
from ndconv import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def quick_rows():
    # One thread: the smoke test shares the machine with other test runs.
    before = ndconv.get_num_threads()
    rows = bench.run(quick=True, repeat=5, threads=1)
    assert ndconv.get_num_threads() == before          # restored
    return rows


def test_quick_suite_agrees(quick_rows):
    by_case = {}
    for r in quick_rows:
        by_case.setdefault(r['case'], []).append(r)
    assert list(by_case) == bench.case_names()
    for name, rows in by_case.items():
        bad = [(r['impl'], r['status'], r['note']) for r in rows
               if r['status'] in ('mismatch', 'error')]
        assert not bad, (name, bad)
        first = rows[0]
        assert first['impl'] == 'ndconv'
        if first['status'] == 'skipped':          # a pooling function not written yet
            assert 'not available' in first['note']
            continue
        assert first['status'] == 'ok'
        for r in rows:
            if r['status'] == 'skipped':          # a peer that is not installed
                assert 'not installed' in r['note'], r
                continue
            assert r['ms'] > 0 and len(r['times']) == 5
            assert r['rate'] > 0 and r['unit'] == ('GFLOP/s' if r['kind'] == 'conv' else 'GB/s')
            if r['impl'] != 'ndconv':
                assert r['max_err'] <= r['tol']
        timed_peers = [r for r in rows[1:] if r['ms'] is not None]
        if timed_peers:
            assert min(r['ratio'] for r in timed_peers) == 1.0
            assert math.isclose(first['ratio'], first['ms'] / min(r['ms'] for r in timed_peers))
    # The NumPy references are always there: every case that ran has a peer.
    assert all(any(r['impl'] == 'numpy' and r['status'] == 'ok' for r in rows)
               for rows in by_case.values() if rows[0]['status'] == 'ok')


def test_table_prints(quick_rows):
    text = bench.format_table(quick_rows)
    for name in bench.case_names():
        assert name in text
    assert 'median ms' in text and 'ratio' in text
    assert 'geometric mean of ndconv / fastest peer' in text
    g = bench.geomean_ratio(quick_rows)
    assert g is None or g > 0


def test_main_prints_header_and_table(capsys):
    status = bench.main(['--quick', '--repeat', '5', '--cases', 'conv3d_1ch_k3,reshape_2d'])
    out = capsys.readouterr().out
    assert status == 0
    assert 'threads: 2' in out
    assert 'GEMM' in out and 'copy' in out and 'compile flags' in out
    assert 'OpenMP:' in out
    assert 'conv3d_1ch_k3' in out and 'reshape_2d' in out
    assert 'conv3d_1ch_k3_f64' not in out          # an exact name selects one case


def test_missing_peer_is_skipped(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torch', None)        # import torch fails
    rows = bench.run(cases='conv3d_32ch', quick=True, repeat=5)
    torch_row = next(r for r in rows if r['impl'] == 'torch')
    assert torch_row['status'] == 'skipped' and 'not installed' in torch_row['note']
    assert next(r for r in rows if r['impl'] == 'ndconv')['status'] == 'ok'


def test_disagreeing_peer_is_reported_and_not_timed(monkeypatch):
    good = bench.np_correlate
    monkeypatch.setattr(bench, 'np_correlate', lambda *a, **k: good(*a, **k) * 1.001)
    rows = bench.run(cases='conv3d_stride2', quick=True, repeat=5)
    row = next(r for r in rows if r['impl'] == 'numpy')
    assert row['status'] == 'mismatch' and row['ms'] is None
    assert 'disagrees with ndconv' in row['note']
    assert '[1]' in bench.format_table(rows)


def test_missing_pooling_function_is_skipped(monkeypatch):
    monkeypatch.delattr(ndconv, 'max_unpooling_nd', raising=False)
    rows = bench.run(cases='max_unpool3d_k2', quick=True, repeat=5)
    assert [r['status'] for r in rows] == ['skipped']
    assert 'max_unpooling_nd is not available' in rows[0]['note']


@pytest.mark.parametrize('case', ['reshape_2d', 'deconv2d_alexnet', 'conv3d_stride2'])
def test_real_multiply_adds(case):
    # With every input and weight 1, the sum of the output counts the
    # products of a weight with a real input sample: the work GFLOP/s uses.
    c = next(c for c in bench.CASES if c.name == case)
    spec = c.build(quick=True)
    if case == 'reshape_2d':
        x, W = np.ones((1, 2, 10, 10)), np.ones((2, 2, 4, 4))
        y = ndconv.convolution_nd(x, W, stride=(2, 1), input_dilate=(1, 2),
                                  pad=((1, 1), (2, 2)))
    elif case == 'deconv2d_alexnet':
        x, W = np.ones((2, 8, 6, 6)), np.ones((8, 3, 5, 5))
        y = ndconv.deconvolution_nd(x, W, stride=2)
    else:
        x, W = np.ones((1, 2, 8, 8, 8)), np.ones((4, 2, 3, 3, 3))
        y = ndconv.convolution_nd(x, W, stride=2, pad=1)
    assert spec['work'] == 2 * y.sum()


def test_bad_arguments():
    with pytest.raises(ValueError, match='repeat'):
        bench.run(quick=True, repeat=3)
    with pytest.raises(ValueError, match='no case matches'):
        bench.run(cases='no_such_case', quick=True)


def test_runner_script_with_memory():
    # the runner finds ndconv itself: the in-place build of a checkout, else
    # the installed package (a clean clone has no build beside the script)
    env = dict(os.environ)
    p = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'run.py'),
                        '--quick', '--repeat', '5', '--cases', 'conv3d_32ch', '--memory'],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    line = next(l for l in p.stdout.splitlines() if l.startswith('conv3d_32ch'))
    assert 'ndconv' in line and 'memory run failed' not in p.stdout
    assert 'geometric mean' in p.stdout
