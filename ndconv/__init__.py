"""ndconv: N-dimensional convolution, transposed convolution, pooling and
unpooling for NumPy arrays laid out as (N, C, D1, ..., Dn)."""

__version__ = '0.1.0'

from .conv import (convolution_nd, deconvolution_nd, convolution_nd_grad_W,
                   conv_outsize, deconv_outsize)
from ._threads import get_num_threads, set_num_threads, show_config

__all__ = [
    'convolution_nd', 'deconvolution_nd', 'convolution_nd_grad_W',
    'conv_outsize', 'deconv_outsize',
    'get_num_threads', 'set_num_threads', 'show_config',
]
