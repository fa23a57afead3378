#!/usr/bin/env python3
"""Run the ndconv benchmark suite: python benchmarks/run.py [--quick] [--threads 2]
[--cases PATTERN] [--repeat 7] [--memory [all]] [--json FILE] [--list].

A thin runner: the harness and the cases live in ``ndconv/bench.py``.  Run from
a source checkout with an in-place build it uses that build (build it with
``python setup.py build_ext --inplace``); otherwise the installed ndconv.
"""

import importlib.machinery
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The source tree only when it holds an in-place build; else the installed ndconv.
_BUILT = any(os.path.exists(os.path.join(_ROOT, 'ndconv', '_conv' + suffix))
             for suffix in importlib.machinery.EXTENSION_SUFFIXES)
if _BUILT and _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from ndconv import bench  # noqa: E402

if __name__ == '__main__':
    sys.exit(bench.main(prog='benchmarks/run.py'))
