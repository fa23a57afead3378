"""Type stubs of ndconv.dask: the public functions on Dask arrays."""

from typing import Literal, Optional, Tuple, Union, overload

import numpy.typing as npt
from dask.array import Array

from . import _ConvPad, _DeconvPad, _Int, _Ints, _Method, _PadMode, _PadNumbers, _PoolPad, _Sizes

__all__ = [
    'convolution_nd', 'deconvolution_nd', 'max_pooling_nd',
    'average_pooling_nd', 'unpooling_nd', 'max_unpooling_nd',
]

_X = Union[Array, npt.ArrayLike]
_W = Union[Array, npt.ArrayLike]


def convolution_nd(x: _X, W: _W, b: Optional[_W] = None, stride: _Ints = 1,
                   pad: _ConvPad = 0, cover_all: bool = False, dilate: _Ints = 1,
                   groups: _Int = 1, *, input_dilate: _Ints = 1,
                   pad_mode: _PadMode = 'constant',
                   method: _Method = 'auto') -> Array: ...


def deconvolution_nd(x: _X, W: _W, b: Optional[_W] = None, stride: _Ints = 1,
                     pad: _DeconvPad = 0, outsize: Optional[_Sizes] = None,
                     dilate: _Ints = 1, groups: _Int = 1, *,
                     method: _Method = 'auto') -> Array: ...


@overload
def max_pooling_nd(x: _X, ksize: _Ints, stride: Optional[_Ints] = None, pad: _PoolPad = 0,
                   cover_all: bool = True,
                   return_indices: Literal[False] = False) -> Array: ...
@overload
def max_pooling_nd(x: _X, ksize: _Ints, stride: Optional[_Ints] = None, pad: _PoolPad = 0,
                   cover_all: bool = True, *,
                   return_indices: Literal[True]) -> Tuple[Array, Array]: ...
@overload
def max_pooling_nd(x: _X, ksize: _Ints, stride: Optional[_Ints], pad: _PoolPad,
                   cover_all: bool, return_indices: Literal[True]) -> Tuple[Array, Array]: ...
@overload
def max_pooling_nd(x: _X, ksize: _Ints, stride: Optional[_Ints] = None, pad: _PoolPad = 0,
                   cover_all: bool = True,
                   return_indices: bool = False) -> Union[Array, Tuple[Array, Array]]: ...


def average_pooling_nd(x: _X, ksize: _Ints, stride: Optional[_Ints] = None,
                       pad: _PoolPad = 0, pad_value: Optional[float] = 0) -> Array: ...


def unpooling_nd(x: _X, ksize: _Ints, stride: Optional[_Ints] = None, pad: _PadNumbers = 0,
                 outsize: Optional[_Sizes] = None, cover_all: bool = True) -> Array: ...


def max_unpooling_nd(x: _X, indices: _X, ksize: _Ints, stride: Optional[_Ints] = None,
                     pad: _PadNumbers = 0, outsize: Optional[_Sizes] = None) -> Array: ...
