"""Checked by mypy (tests/test_typing.py): typical uses of ndconv's public
API type-check against the stubs shipped in the package."""

from typing import Any

import numpy as np
import numpy.typing as npt

import ndconv

Floats = npt.NDArray[np.floating[Any]]

x = np.random.default_rng(0).standard_normal((1, 2, 16, 16)).astype(np.float32)
W = np.ones((4, 2, 3, 3), np.float32)
b = np.zeros(4, np.float32)

y: Floats = ndconv.convolution_nd(x, W, b, stride=(2, 1), pad=((1, 1), (2, 2)),
                                  input_dilate=(1, 2))
y = ndconv.convolution_nd(x, W, pad='same', pad_mode='reflect', dilate=np.int64(2))
g: Floats = ndconv.convolution_nd_grad_W(x, y, 3, pad='same', dilate=2)
z: Floats = ndconv.deconvolution_nd(y, W, stride=2, pad=1, outsize=[32, 32])

pooled: Floats = ndconv.max_pooling_nd(x, 2)
pooled, idx = ndconv.max_pooling_nd(x, 2, return_indices=True)
flat: npt.NDArray[np.int64] = idx
back: Floats = ndconv.max_unpooling_nd(pooled, idx, 2, outsize=(16, 16))
either = ndconv.max_pooling_nd(x, (2, 2), None, 'same', False, bool(idx.size))
avg: Floats = ndconv.average_pooling_nd(x, 3, 2, pad=1, pad_value=None)
up: Floats = ndconv.unpooling_nd(x, 2, cover_all=False)

K: Floats = ndconv.linear_upsampling_kernel(2, 2, 2, dtype=np.float64)
u: Floats = ndconv.deconvolution_nd(x, K, stride=2, pad=1)

sizes: tuple[int, ...] = ndconv.conv_outsize((100, 100), 4, stride=(2, 1),
                                             pad=((1, 1), (2, 2)), input_dilate=(1, 2))
dsizes: tuple[int, ...] = ndconv.deconv_outsize((55, 55), 11, stride=4)

threads: int = ndconv.get_num_threads()
ndconv.set_num_threads(threads)
ndconv.show_config()
version: str = ndconv.__version__
