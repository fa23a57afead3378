"""Stub of the compiled convolution kernels (ext/_conv.pyx).

Private: the kernels trust their arguments (checked by ndconv._args and the
engine).  Buffers are C-contiguous 1-D views of float32 or float64 arrays
(one dtype per call); ``geo``/``lastinfo`` are packed ``intp`` geometry
vectors.  The kernels return False when a thread could not allocate its
scratch memory.
"""

from typing import Any, Tuple

import numpy as np
import numpy.typing as npt

_FloatBuf = npt.NDArray[np.floating[Any]]
_Geo = npt.NDArray[np.intp]

__test__: dict[str, str]  # Cython's doctest table


def select_isa(name: str = 'auto') -> Tuple[str, int, int, int]: ...


def current_isa() -> str: ...


def kernel_shape() -> Tuple[int, int, int]: ...


def conv_gemm(x: _FloatBuf, w: _FloatBuf, bias: _FloatBuf, out: _FloatBuf, geo: _Geo,
              n: int, N: int, C_in: int, C_out: int, groups: int, mode: int, tile: int,
              cchunk: int, contiguous: bool, nthreads: int) -> bool: ...


def conv_direct(x: _FloatBuf, w: _FloatBuf, bias: _FloatBuf, out: _FloatBuf, geo: _Geo,
                n: int, N: int, C_in: int, C_out: int, groups: int, mode: int,
                rows_per_item: int, nthreads: int) -> bool: ...


def conv_grad_w(x: _FloatBuf, gy: _FloatBuf, parts: _FloatBuf, geo: _Geo, n: int, N: int,
                C_in: int, C_out: int, groups: int, mode: int, tile: int, cchunk: int,
                nparts: int, contiguous: bool, nthreads: int) -> bool: ...


def conv_winograd(x: _FloatBuf, u: _FloatBuf, bias: _FloatBuf, out: _FloatBuf, geo: _Geo,
                  n: int, N: int, C_in: int, C_out: int, groups: int, mode: int, Ls: int,
                  R: int, Tp: int, nthreads: int) -> int: ...


def conv_grad_w_winograd(x: _FloatBuf, gy: _FloatBuf, parts: _FloatBuf, geo: _Geo, n: int,
                         N: int, C_in: int, C_out: int, groups: int, Ls: int, R: int,
                         nparts: int, nthreads: int) -> bool: ...


def wino_kernel(w: _FloatBuf, u: _FloatBuf, C_out: int, cig: int, groups: int, n: int,
                nthreads: int) -> None: ...


def wino_gw_finish(parts: _FloatBuf, out: _FloatBuf, nparts: int, C_out: int, cig: int,
                   cigp: int, n: int, nthreads: int) -> bool: ...


def conv_implicit(x: _FloatBuf, wt: _FloatBuf, bias: _FloatBuf, out: _FloatBuf,
                  geos: _Geo, infos: _Geo, table: _Geo, n: int, N: int, C_in: int,
                  C_out: int, groups: int, mode: int, min_items: int,
                  nthreads: int) -> bool: ...


def conv_grad_w_implicit(x: _FloatBuf, gy: _FloatBuf, parts: _FloatBuf, geo: _Geo,
                         lastinfo: _Geo, n: int, N: int, C_in: int, C_out: int, groups: int,
                         mode: int, cchunk: int, qseg: int, rows: int, nparts: int,
                         nthreads: int) -> bool: ...


def conv_grad_w_cl(x: _FloatBuf, gy: _FloatBuf, parts: _FloatBuf, geo: _Geo,
                   lastinfo: _Geo, n: int, N: int, C_in: int, C_out: int, groups: int,
                   mode: int, qseg: int, rows: int, nparts: int, nthreads: int) -> bool: ...
