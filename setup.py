"""Build the Cython kernels of ndconv.

Environment variables:
  NDCONV_DEBUG=1    bounds and wrap-around checks back on in every kernel
                    (slow; for hunting out-of-bounds accesses)
  NDCONV_NATIVE=1   compile for this CPU (-march=native); never for wheels
  NDCONV_OPENMP=0   build without OpenMP even when the compiler has it
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, '').strip().lower() in ('1', 'true', 'yes', 'on')


def _compiler_accepts(flags):
    """Compile and link a tiny OpenMP program with ``flags``."""
    cc = os.environ.get('CC') or sysconfig.get_config_var('CC') or 'cc'
    cc = cc.split()
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, 'probe.c')
        with open(src, 'w') as f:
            f.write('#include <omp.h>\nint main(void) {\n'
                    '  int n = 0;\n  #pragma omp parallel reduction(+:n)\n  n += 1;\n'
                    '  return n > 0 ? 0 : 1;\n}\n')
        cmd = cc + flags + [src, '-o', os.path.join(tmp, 'probe')]
        return subprocess.run(cmd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


compile_args = ['-O3', '-fno-math-errno', '-Wno-unused-function']
link_args = []
if os.environ.get('NDCONV_OPENMP', '1') != '0' and _compiler_accepts(['-fopenmp']):
    compile_args.append('-fopenmp')
    link_args.append('-fopenmp')
    openmp = True
else:
    openmp = False
    sys.stderr.write('warning: ndconv is built without OpenMP; the kernels '
                     'will run on one thread\n')
if _flag('NDCONV_NATIVE'):
    compile_args.append('-march=native')

debug = _flag('NDCONV_DEBUG')
directives = {
    'language_level': 3,
    'boundscheck': debug,
    'wraparound': debug,
    'initializedcheck': debug,
}

ext_modules = [
    Extension('ndconv.' + name, [os.path.join('ext', name + '.pyx')],
              include_dirs=['ext', numpy.get_include()],
              extra_compile_args=compile_args, extra_link_args=link_args,
              define_macros=[('NPY_NO_DEPRECATED_API', 'NPY_1_7_API_VERSION')])
    for name in ('_runtime', '_conv', '_pool')
]

with open(os.path.join('ndconv', '_build_info.py'), 'w') as f:
    f.write('# Written by setup.py at build time.\n')
    f.write('OPENMP = %r\nCOMPILE_ARGS = %r\nDEBUG = %r\n'
            % (openmp, compile_args, debug))

setup(
    ext_modules=cythonize(ext_modules, include_path=['ext'],
                          compiler_directives=directives,
                          force=debug),
)
