"""The type stubs: shipped with the package, in step with the runtime
signatures, and accepted by mypy on tests/typing_example.py (when mypy is
installed)."""

import ast
import importlib
import inspect
import os
import runpy
import subprocess
import sys

import pytest

import ndconv

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, 'typing_example.py')
PKG = os.path.dirname(os.path.abspath(ndconv.__file__))

STUBS = {
    'ndconv': '__init__.pyi',
    'ndconv._conv': '_conv.pyi',
    'ndconv._pool': '_pool.pyi',
    'ndconv._runtime': '_runtime.pyi',
    'ndconv.dask': 'dask.pyi',
}


def test_marker_and_stubs_are_in_the_package():
    assert os.path.isfile(os.path.join(PKG, 'py.typed'))
    for stub in STUBS.values():
        assert os.path.isfile(os.path.join(PKG, stub)), stub


def _stub_functions(path):
    """name -> parameter names (of the last overload) for each def in a stub."""
    with open(path) as f:
        tree = ast.parse(f.read())
    funcs = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            funcs[node.name] = ([p.arg for p in a.posonlyargs + a.args],
                                [p.arg for p in a.kwonlyargs])
    return funcs


@pytest.mark.parametrize('module', sorted(STUBS))
def test_stub_signatures_match_the_runtime(module):
    if module == 'ndconv.dask':
        pytest.importorskip('dask.array')
    mod = importlib.import_module(module)
    stub = _stub_functions(os.path.join(PKG, STUBS[module]))
    public = getattr(mod, '__all__', None)
    if public is None:
        public = [n for n in dir(mod) if not n.startswith('_') and callable(getattr(mod, n))
                  and not inspect.isclass(getattr(mod, n))]
    runtime = sorted(n for n in public if callable(getattr(mod, n)))
    assert runtime == sorted(stub), (
        'ndconv/%s is out of step with %s: functions missing from the stub: %s; '
        'in the stub only: %s' % (STUBS[module], module, sorted(set(runtime) - set(stub)),
                                  sorted(set(stub) - set(runtime))))
    for name, (positional, keyword) in stub.items():
        sig = inspect.signature(getattr(mod, name))
        pos = [p.name for p in sig.parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        kw = [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]
        assert (pos, kw) == (positional, keyword), name


def test_example_runs(capsys):
    runpy.run_path(EXAMPLE, run_name='typing_example')
    assert 'OpenMP' in capsys.readouterr().out


def _mypy(path, tmp_path):
    pytest.importorskip('mypy')
    # Run from an empty directory so that mypy finds ndconv where Python
    # does (the installed package, or PYTHONPATH), never a source tree by
    # accident.
    return subprocess.run(
        [sys.executable, '-m', 'mypy', '--strict', '--no-incremental',
         '--cache-dir', str(tmp_path / 'cache'), '--no-error-summary', str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_mypy_accepts_the_example(tmp_path):
    res = _mypy(EXAMPLE, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


BAD = """\
import numpy as np
import numpy.typing as npt
import ndconv
x = np.zeros((1, 1, 4, 4))
a = ndconv.convolution_nd(x, x, pad_mode='mirror')
b = ndconv.convolution_nd(x, x, padding=1)
c: npt.NDArray[np.int64] = ndconv.max_pooling_nd(x, 2)
d: str = ndconv.get_num_threads()
e = ndconv.max_pooling_nd(x, 2.5)
f: tuple[str, ...] = ndconv.conv_outsize((4, 4), 2)
"""


def test_mypy_rejects_misuse(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text(BAD)
    res = _mypy(bad, tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = {int(line.split(':')[1]) for line in res.stdout.splitlines()
             if ': error:' in line}
    assert lines == {5, 6, 7, 8, 9, 10}, res.stdout
