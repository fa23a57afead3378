"""Type stubs for the public API of ndconv (see API.md / the README)."""

from typing import Any, Literal, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    'convolution_nd', 'deconvolution_nd', 'convolution_nd_grad_W',
    'conv_outsize', 'deconv_outsize',
    'get_num_threads', 'set_num_threads', 'show_config',
    'unpooling_nd', 'max_pooling_nd', 'max_unpooling_nd', 'average_pooling_nd',
    'linear_upsampling_kernel',
]

# An int: Python or NumPy (bool is refused at run time).
_Int = Union[int, np.integer[Any]]
# ksize, stride, dilate, input_dilate: an int, or one per spatial axis.
_Ints = Union[_Int, Sequence[_Int]]
# pad: an int, one int per axis, or one (lo, hi) pair (or int) per axis.
_PadNumbers = Union[_Int, Sequence[Union[_Int, Tuple[_Int, _Int], Sequence[_Int]]]]
_ConvPad = Union[_PadNumbers, Literal['valid', 'same', 'full']]
_DeconvPad = Union[_PadNumbers, Literal['valid', 'same']]
_PoolPad = Union[_PadNumbers, Literal['valid', 'same']]
_Sizes = Sequence[_Int]
_PadMode = Literal['constant', 'reflect', 'edge', 'wrap']
_Method = Literal['auto', 'winograd', 'implicit', 'gemm', 'direct']
_GradWMethod = Literal['auto', 'winograd', 'implicit', 'gemm']

# Inputs: float16/32/64 arrays (anything numpy.asarray takes is accepted).
_Array = npt.ArrayLike
# Results: a float array of the inputs' result dtype.
_Float = npt.NDArray[np.floating[Any]]
_Indices = npt.NDArray[np.int64]


def convolution_nd(x: _Array, W: _Array, b: Optional[_Array] = None, stride: _Ints = 1,
                   pad: _ConvPad = 0, cover_all: bool = False, dilate: _Ints = 1,
                   groups: _Int = 1, *, input_dilate: _Ints = 1,
                   pad_mode: _PadMode = 'constant',
                   out: Optional[npt.NDArray[Any]] = None,
                   method: _Method = 'auto') -> _Float: ...


def deconvolution_nd(x: _Array, W: _Array, b: Optional[_Array] = None, stride: _Ints = 1,
                     pad: _DeconvPad = 0, outsize: Optional[_Sizes] = None,
                     dilate: _Ints = 1, groups: _Int = 1, *,
                     out: Optional[npt.NDArray[Any]] = None,
                     method: _Method = 'auto') -> _Float: ...


def convolution_nd_grad_W(x: _Array, gy: _Array, ksize: _Ints, stride: _Ints = 1,
                          pad: _ConvPad = 0, cover_all: bool = False, dilate: _Ints = 1,
                          groups: _Int = 1, *, input_dilate: _Ints = 1,
                          method: _GradWMethod = 'auto') -> _Float: ...


def conv_outsize(size: _Sizes, ksize: _Ints, stride: _Ints = 1, pad: _ConvPad = 0,
                 cover_all: bool = False, dilate: _Ints = 1,
                 input_dilate: _Ints = 1) -> Tuple[int, ...]: ...


def deconv_outsize(size: _Sizes, ksize: _Ints, stride: _Ints = 1, pad: _DeconvPad = 0,
                   dilate: _Ints = 1) -> Tuple[int, ...]: ...


def unpooling_nd(x: _Array, ksize: _Ints, stride: Optional[_Ints] = None,
                 pad: _PadNumbers = 0, outsize: Optional[_Sizes] = None,
                 cover_all: bool = True) -> _Float: ...


@overload
def max_pooling_nd(x: _Array, ksize: _Ints, stride: Optional[_Ints] = None,
                   pad: _PoolPad = 0, cover_all: bool = True,
                   return_indices: Literal[False] = False) -> _Float: ...
@overload
def max_pooling_nd(x: _Array, ksize: _Ints, stride: Optional[_Ints] = None,
                   pad: _PoolPad = 0, cover_all: bool = True, *,
                   return_indices: Literal[True]) -> Tuple[_Float, _Indices]: ...
@overload
def max_pooling_nd(x: _Array, ksize: _Ints, stride: Optional[_Ints], pad: _PoolPad,
                   cover_all: bool, return_indices: Literal[True]) -> Tuple[_Float, _Indices]: ...
@overload
def max_pooling_nd(x: _Array, ksize: _Ints, stride: Optional[_Ints] = None,
                   pad: _PoolPad = 0, cover_all: bool = True,
                   return_indices: bool = False) -> Union[_Float, Tuple[_Float, _Indices]]: ...


def max_unpooling_nd(x: _Array, indices: _Array, ksize: _Ints,
                     stride: Optional[_Ints] = None, pad: _PadNumbers = 0,
                     outsize: Optional[_Sizes] = None) -> _Float: ...


def average_pooling_nd(x: _Array, ksize: _Ints, stride: Optional[_Ints] = None,
                       pad: _PoolPad = 0, pad_value: Optional[float] = 0) -> _Float: ...


def linear_upsampling_kernel(factor: _Ints, ndim: _Int, channels: _Int, *,
                             dtype: npt.DTypeLike = ...) -> _Float: ...


def get_num_threads() -> int: ...


def set_num_threads(n: _Int) -> None: ...


def show_config() -> None: ...
