#!/usr/bin/env python3
"""Run the ndconv benchmark suite: python benchmarks/run.py [--quick] [--threads 2]
[--cases PATTERN] [--repeat 7] [--memory [all]] [--json FILE] [--list].

A thin runner: the harness and the cases live in ``ndconv/bench.py``.  Run from
a source checkout it uses the in-place build next to this file (build it with
``python setup.py build_ext --inplace``); otherwise the installed ndconv.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_ROOT, 'ndconv')) and _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from ndconv import bench  # noqa: E402

if __name__ == '__main__':
    sys.exit(bench.main(prog='benchmarks/run.py'))
