"""ndconv: N-dimensional convolution, transposed convolution, pooling and
unpooling for NumPy arrays laid out as (N, C, D1, ..., Dn)."""

__version__ = '0.1.0'

from .conv import (convolution_nd, deconvolution_nd, convolution_nd_grad_W,
                   conv_outsize, deconv_outsize)
from ._threads import get_num_threads, set_num_threads, show_config
from .pooling import (unpooling_nd, max_pooling_nd, max_unpooling_nd,
                      average_pooling_nd)
from .upsampling import linear_upsampling_kernel

__all__ = [
    'convolution_nd', 'deconvolution_nd', 'convolution_nd_grad_W',
    'conv_outsize', 'deconv_outsize',
    'get_num_threads', 'set_num_threads', 'show_config',
    'unpooling_nd', 'max_pooling_nd', 'max_unpooling_nd', 'average_pooling_nd',
    'linear_upsampling_kernel',
]
