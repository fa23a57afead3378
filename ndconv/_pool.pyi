"""Stub of the compiled pooling kernels (ext/_pool.pyx).

Private: the kernels trust their arguments (checked by ndconv.pooling).
Buffers are C-contiguous 1-D views of float32 or float64 arrays (one dtype
per call), ``indices`` int64, ``geo`` a packed ``intp`` geometry vector.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_FloatBuf = npt.NDArray[np.floating[Any]]
_Geo = npt.NDArray[np.intp]
_Index = npt.NDArray[np.int64]

__test__: dict[str, str]  # Cython's doctest table


def max_pool(x: _FloatBuf, out: _FloatBuf, indices: _Index, geo: _Geo, n: int, nvol: int,
             rows_per_item: int, with_indices: bool, nthreads: int) -> None: ...


def avg_pool(x: _FloatBuf, out: _FloatBuf, geo: _Geo, n: int, nvol: int,
             rows_per_item: int, count_pad: bool, nthreads: int) -> None: ...


def unpool(x: _FloatBuf, out: _FloatBuf, geo: _Geo, n: int, nvol: int, rows_per_item: int,
           nthreads: int) -> bool: ...


def max_unpool(x: _FloatBuf, indices: _Index, out: _FloatBuf, nvol: int, in_vol: int,
               out_vol: int, nthreads: int) -> bool: ...
