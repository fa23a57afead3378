"""Run the examples in the docstrings of ndconv's public modules, as
``pytest --doctest-modules`` would, against the ndconv that is imported
(the installed package under plain ``pytest``), and check that every public
function has a numpydoc docstring with an example."""

import doctest
import importlib

import pytest

import ndconv

MODULES = ['ndconv', 'ndconv.conv', 'ndconv.pooling', 'ndconv.upsampling',
           'ndconv._threads', 'ndconv.cli', 'ndconv.dask']

# Public functions whose docstring has no example yet.
NO_EXAMPLE_YET = {'get_num_threads', 'set_num_threads', 'show_config'}


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
    if name in NO_EXAMPLE_YET:
        pytest.xfail('%s has no example yet' % name)
    doc = getattr(importlib.import_module(module), name).__doc__ or ''
    assert 'Examples\n' in doc and '>>> ' in doc, '%s.%s has no example' % (module, name)
