"""Run the examples in the docstrings of ndconv's public modules, as
``pytest --doctest-modules`` would, against the ndconv that is imported
(the installed package under plain ``pytest``), and check that every public
function has a numpydoc docstring with an example."""

import doctest
import importlib

import numpy as np
import pytest

import ndconv

MODULES = ['ndconv', 'ndconv.conv', 'ndconv.pooling', 'ndconv.upsampling',
           'ndconv._threads', 'ndconv.cli', 'ndconv.dask']



@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
    if name == 'ndconv.dask':
        pytest.importorskip('dask.array')
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True,
                             verbose=False)
    assert result.failed == 0, '%d of %d examples failed in %s' % (
        result.failed, result.attempted, name)


def _public():
    funcs = [('ndconv', n) for n in ndconv.__all__]
    try:
        import ndconv.dask as ndd
    except ImportError:
        pass
    else:
        funcs += [('ndconv.dask', n) for n in ndd.__all__]
    return funcs


@pytest.mark.parametrize('module, name', _public())
def test_every_public_function_has_an_example(module, name):
    doc = getattr(importlib.import_module(module), name).__doc__ or ''
    assert 'Examples\n' in doc and '>>> ' in doc, '%s.%s has no example' % (module, name)


def _readme_block(title):
    """The first ```python block after the heading ``title`` of README.md."""
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'README.md')
    if not os.path.isfile(path):
        pytest.skip('README.md is not beside the tests')
    with open(path) as f:
        text = f.read()
    start = text.index('```python\n', text.index(title)) + len('```python\n')
    return text[start:text.index('```', start)]


def test_readme_ten_lines():
    code = _readme_block('## Ten lines')
    assert len(code.strip().splitlines()) <= 12
    env = {}
    exec(compile(code, 'README.md', 'exec'), env)
    assert env['y'].shape == (1, 8, 64, 64, 64)
    assert env['p'].shape == (1, 8, 32, 32, 32)
    assert env['u'].shape == env['t'].shape == (1, 8, 64, 64, 64)
    assert env['z'].shape == (1, 1, 50, 200)


def test_readme_threads_example():
    pytest.importorskip('threadpoolctl')
    code = _readme_block('## Threads')
    env = {'ndconv': ndconv, 'x': np.ones((1, 1, 8, 8)), 'W': np.ones((1, 1, 3, 3))}
    exec(compile(code, 'README.md', 'exec'), env)
    assert env['y'].shape == (1, 1, 8, 8)
