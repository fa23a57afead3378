"""Smoke tests of the benchmark suite (ndconv/bench.py, benchmarks/run.py).

The suite runs in --quick mode on tiny sizes: it checks that every installed
peer agrees with ndconv, that missing peers (and pooling functions ndconv does
not have yet) are skipped, and that the table prints.  Timings are not
looked at.
"""

import json
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
    assert '1-thr ms' in text and 'speed-up' in text and '% limit' in text
    assert 'geometric mean of ndconv / fastest peer' in text
    # the targets follow the geometric mean; a 1-thread run has no speed-up
    assert text.index('targets') > text.index('geometric mean')
    assert 'faster than 1, cases over 10 ms: not measured' in text
    assert 'no machine limits given' in text               # no info passed
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


# ----------------------------------------------------------------------------
# The speed-up (ndconv at 1 thread in the same loop), the percent of the
# machine's limits, and the targets summary.

def _columns(text, case):
    """The cells of the table line that starts with ``case`` (ndconv's row)."""
    line = next(l for l in text.splitlines() if l.split()[:1] == [case])
    return line.split()


HEAD = ['case', 'dtype', 'implementation', 'thr', 'median ms', '1-thr ms', 'speed-up',
        'rate', 'unit', '% limit', 'ratio', 'peak MiB', 'max err', 'status']


def test_speedup_row_keys_and_columns():
    rows = bench.run(cases='conv3d_32ch', quick=True, repeat=5, threads=2)
    nd = rows[0]
    assert nd['impl'] == 'ndconv' and nd['status'] == 'ok'
    assert nd['ms_1thread'] > 0 and len(nd['times_1thread']) == 5
    assert math.isclose(nd['speedup'], nd['ms_1thread'] / nd['ms'])
    peers = [r for r in rows[1:] if r['ms'] is not None]
    assert peers and all(r['ms_1thread'] is None and r['speedup'] is None for r in rows[1:])
    # the 1-thread timing is not a peer: the ratios are over the real peers only
    assert math.isclose(nd['ratio'], nd['ms'] / min(r['ms'] for r in peers))
    assert len(rows) == len({r['impl'] for r in rows})
    back = json.loads(json.dumps(rows))                   # kept in the JSON rows
    assert back[0]['speedup'] == nd['speedup'] and 'ms_1thread' in back[0]
    text = bench.format_table(rows)
    cells = _columns(text, 'conv3d_32ch')
    assert cells[HEAD.index('1-thr ms')] == '%.3f' % nd['ms_1thread']
    assert cells[HEAD.index('speed-up')] == '%.2f' % nd['speedup']


def test_no_speedup_and_one_thread_runs_skip_it():
    for kw in (dict(threads=2, speedup=False), dict(threads=1)):
        rows = bench.run(cases='conv3d_stride2', quick=True, repeat=5, **kw)
        assert rows[0]['ms'] > 0
        assert rows[0]['ms_1thread'] is None and rows[0]['speedup'] is None
        cells = _columns(bench.format_table(rows), 'conv3d_stride2')
        assert cells[HEAD.index('1-thr ms')] == '-' and cells[HEAD.index('speed-up')] == '-'


def test_main_no_speedup_flag(capsys):
    assert bench.main(['--quick', '--repeat', '5', '--cases', 'conv3d_stride2',
                       '--no-speedup']) == 0
    out = capsys.readouterr().out
    assert '2 threads >= 1.8x faster than 1, cases over 10 ms: not measured' in out


def test_one_thread_call_restores_the_thread_count(monkeypatch):
    # ndconv's n-thread calls, the 1-thread calls and the peers' calls record
    # the thread count ndconv is at: only the 1-thread calls may see 1.
    seen = {'ndconv': [], 'numpy': []}
    conv = ndconv.convolution_nd
    ref = bench.np_correlate

    def recording_conv(*a, **k):
        seen['ndconv'].append(ndconv.get_num_threads())
        return conv(*a, **k)

    def recording_ref(*a, **k):
        seen['numpy'].append(ndconv.get_num_threads())
        return ref(*a, **k)
    monkeypatch.setattr(ndconv, 'convolution_nd', recording_conv)
    monkeypatch.setattr(bench, 'np_correlate', recording_ref)
    before = ndconv.get_num_threads()
    rows = bench.run(cases='conv3d_32ch', quick=True, repeat=5, threads=2)
    assert ndconv.get_num_threads() == before
    assert rows[0]['speedup'] is not None
    # the check call, a warm-up and 5 timed calls at 2; a warm-up and 5 at 1
    assert sorted(seen['ndconv']) == [1] * 6 + [2] * 7
    assert seen['numpy'] == [2] * 7


def test_one_thread_wrapper_restores_on_error():
    before = ndconv.get_num_threads()
    ndconv.set_num_threads(2)
    try:
        def boom():
            assert ndconv.get_num_threads() == 1
            raise RuntimeError('boom')
        with pytest.raises(RuntimeError):
            bench._at_one_thread(boom)()
        assert ndconv.get_num_threads() == 2
    finally:
        ndconv.set_num_threads(before)


def test_percent_of_limit_column():
    info = bench.machine(2, quick=True, repeat=5)
    rows = bench.run(cases='conv3d_32ch,avg_pool3d_k2', quick=True, repeat=5, threads=2)
    text = bench.format_table(rows, info)
    conv = next(r for r in rows if r['case'] == 'conv3d_32ch')
    cells = _columns(text, 'conv3d_32ch')
    assert cells[HEAD.index('% limit')] == '%.1f' % (100 * conv['rate'] / info['gemm_gflops'])
    if rows[-1]['status'] != 'skipped':               # average_pooling_nd exists
        pool = next(r for r in rows if r['case'] == 'avg_pool3d_k2')
        cells = _columns(text, 'avg_pool3d_k2')
        assert cells[HEAD.index('% limit')] == '%.1f' % (100 * pool['rate'] / info['copy_gbs'])
    # without the machine's facts the column shows '-'
    assert _columns(bench.format_table(rows), 'conv3d_32ch')[HEAD.index('% limit')] == '-'


def test_limits_are_timed_like_the_calls(monkeypatch):
    # machine() times the GEMM and the copy through the calls' own timer:
    # each call SETTLE seconds after the last (0 with quick).
    calls = []

    def fake_timer(fns, repeat, settle=bench.SETTLE, prime=True):
        calls.append((len(fns), repeat, settle))
        return [[0.010] * repeat for _ in fns]
    monkeypatch.setattr(bench, '_time_interleaved', fake_timer)
    info = bench.machine(2, quick=False, repeat=6)
    assert calls == [(1, 6, bench.SETTLE)] * 3      # GEMM float32, float64, copy
    assert math.isclose(info['gemm_gflops'], 2.0 * info['gemm_n'] ** 3 / 0.010 / 1e9)
    assert math.isclose(info['gemm64_gflops'], 2.0 * info['gemm_n'] ** 3 / 0.010 / 1e9)
    header = bench.format_header(info, repeat=6)
    assert 'timed like the calls: median of 6 after a warm-up, each 0.15 s after the last' \
        in header
    calls.clear()
    bench.machine(2, quick=True, repeat=5)
    assert calls == [(1, 5, 0)] * 3


def test_gemm_shaped_cases_from_the_spec():
    def channels(name, quick):
        return next(c for c in bench.CASES if c.name == name).build(quick)['channels']
    assert channels('conv3d_32ch', False) == (32, 32)
    assert channels('grad_w_32ch', False) == (32, 32)
    assert channels('deconv3d_32to16', False) == (32, 16)
    assert channels('conv2d_alexnet', False) == (3, 96)
    assert channels('conv3d_32ch', True) == (4, 4)


def _fake(case, kind, impl='ndconv', ms=20.0, ratio=0.5, rate=1.0, channels=None,
          speedup=None, mem=None, out=None):
    return dict(case=case, title=case, kind=kind, dtype='float32', shape='', impl=impl,
                status='ok', note='', ms=ms, times=None, rate=rate,
                unit='GFLOP/s' if kind == 'conv' else 'GB/s', ratio=ratio,
                mem_mib=mem, threads=2, max_err=None, tol=None,
                ms_1thread=None if speedup is None else ms * speedup, times_1thread=None,
                speedup=speedup, channels=channels, out_mib=out)


def _targets(text):
    lines = text.splitlines()
    start = lines.index("targets (this run's numbers, ndconv's rows):")
    return {l.split(':')[0].strip(): l.split(':', 1)[1].strip() for l in lines[start + 1:]}


def test_targets_name_the_cases_that_miss():
    info = {'gemm_gflops': 200.0, 'copy_gbs': 60.0}
    rows = [_fake('grad_w_32ch', 'conv', ratio=1.59, rate=100.0, channels=(32, 32),
                  ms=50.0, speedup=1.5, mem=100.0, out=20.0),
            _fake('grad_w_32ch', 'conv', impl='torch', ratio=1.0, rate=159.0),
            _fake('conv3d_1ch_k3', 'conv', ratio=0.5, rate=10.0, channels=(1, 1),
                  ms=5.0, speedup=1.0, mem=5.0, out=8.0),
            _fake('avg_pool3d_k2', 'pool', ratio=0.4, rate=50.0, ms=20.0, speedup=1.9,
                  mem=1.0, out=1.0),
            _fake('max_pool3d_k2', 'pool', ratio=0.3, rate=20.0, ms=20.0, speedup=2.0,
                  mem=1.0, out=1.0),
            _fake('max_unpool3d_k2', 'pool', ms=None, ratio=None, rate=None)]
    text = bench.format_table(rows, info)
    t = _targets(text)
    assert t['ratio <= 1'] == 'missed by grad_w_32ch (1.59) [1 of 4 cases]'
    assert t['conv with >= 16 in and out channels at >= 75% of GEMM (200.0 GFLOP/s)'] == \
        'missed by grad_w_32ch (50.0%) [1 of 1 cases]'
    assert t['pooling at >= 60% of copy (60.0 GB/s)'] == \
        'missed by max_pool3d_k2 (33.3%) [1 of 2 cases]'
    # conv3d_1ch_k3 (1.00x) is under 10 ms: not held to the speed-up
    assert t['2 threads >= 1.8x faster than 1, cases over 10 ms'] == \
        'missed by grad_w_32ch (1.50x) [1 of 3 cases]'
    assert t['peak extra memory <= output + 16 MiB'] == \
        'missed by grad_w_32ch (100.0 MiB, output 20.0 MiB) [1 of 4 cases]'
    g = (1.59 * 0.5 * 0.4 * 0.3) ** 0.25
    assert t['geometric mean <= 0.6'] == 'met (%.3f)' % g
    assert t['not timed (in no target)'] == 'max_unpool3d_k2'

    # everything met; without memory numbers there is no memory line
    for r in rows:
        r.update(ratio=0.5 if r['ratio'] else r['ratio'], mem_mib=None)
        if r['ms'] is not None:
            r.update(rate=1000.0, speedup=2.0)
    t = _targets(bench.format_targets(rows, info))
    assert t['ratio <= 1'] == 'met by all 4 cases'
    assert t['geometric mean <= 0.6'] == 'met (0.500)'
    assert not any(k.startswith('peak extra memory') for k in t)
    assert all(v.startswith('met') for k, v in t.items() if not k.startswith('not timed'))
    for r in rows:
        r['ratio'] = 0.9 if r['ratio'] else r['ratio']
    assert _targets(bench.format_targets(rows))['geometric mean <= 0.6'] == 'missed (0.900)'


def test_float64_rows_are_held_to_the_float64_gemm():
    info = {'gemm_gflops': 200.0, 'gemm64_gflops': 100.0, 'copy_gbs': 50.0}
    row = {'rate': 80.0, 'unit': 'GFLOP/s', 'dtype': 'float64'}
    assert bench.limit_fraction(row, info) == 0.8
    assert bench.limit_fraction(dict(row, dtype='float32'), info) == 0.4
    assert bench.limit_fraction(dict(row, unit='GB/s'), info) == 1.6
    assert bench.limit_fraction(row, {'gemm_gflops': 200.0}) == 0.4   # no float64 GEMM


def test_primed_timing_calls_each_function_once_more_per_round(monkeypatch):
    monkeypatch.setattr(bench.time, 'sleep', lambda s: None)
    monkeypatch.setattr(bench, 'PRIME', 0.0)         # one primer call per round
    calls = []
    fns = [lambda: calls.append('a'), lambda: calls.append('b')]
    times = bench._time_interleaved(fns, 5, settle=0.1, prime=True)
    assert [len(t) for t in times] == [5, 5]
    # warm-up a, b; then per round: primer + timed call of a, then of b
    assert calls == ['a', 'b'] + ['a', 'a', 'b', 'b'] * 5
    del calls[:]
    bench._time_interleaved(fns, 5, settle=0.1, prime=False)
    assert calls == ['a', 'b'] + ['a', 'b'] * 5
    del calls[:]
    bench._time_interleaved(fns, 5, settle=0, prime=True)   # no pause (quick): no primer
    assert calls == ['a', 'b'] + ['a', 'b'] * 5


def test_primer_calls_last_at_least_prime_seconds(monkeypatch):
    monkeypatch.setattr(bench.time, 'sleep', lambda s: None)
    clock = [0.0]
    monkeypatch.setattr(bench.time, 'perf_counter', lambda: clock[0])
    calls = []

    def f():
        calls.append(clock[0])
        clock[0] += 0.004                             # each call "takes" 4 ms
    monkeypatch.setattr(bench, 'PRIME', 0.02)
    times = bench._time_interleaved([f], 5, settle=0.1, prime=True)
    # warm-up, then per round 5 primer calls (20 ms) and the timed one
    assert len(calls) == 1 + 5 * 6
    assert all(abs(t - 0.004) < 1e-12 for t in times[0])
