"""Weights for upsampling by transposed convolution."""

import numpy as np

from . import _args as A

__all__ = ['linear_upsampling_kernel']

_FLOATS = (np.float16, np.float32, np.float64)


def _profile(factor):
    """The 1-axis linear interpolation profile for an integer ``factor``:
    ``k = 2 * factor - factor % 2`` taps, ``1 - |t - (k - 1) / 2| / factor``."""
    k = 2 * factor - factor % 2
    t = np.arange(k, dtype=np.float64)
    return 1.0 - np.abs(t - (k - 1) / 2.0) / factor


def linear_upsampling_kernel(factor, ndim, channels, *, dtype=np.float32):
    """Multilinear upsampling weight for `deconvolution_nd`.

    The classic FCN initialisation (bilinear in 2-D, trilinear in 3-D) for
    ``deconvolution_nd(x, W, stride=factor, pad=(k - factor + 1) // 2)``,
    which turns each spatial size ``D`` into ``D * factor``.

    Parameters
    ----------
    factor : int or sequence of ndim ints
        Upsampling factor (``>= 1``); an int applies to every axis.
    ndim : int
        Number of spatial axes (``>= 1``).
    channels : int
        Number of channels; each channel is upsampled on its own.
    dtype : float dtype, keyword-only
        ``float16``, ``float32`` (default) or ``float64``.

    Returns
    -------
    W : ndarray, shape (channels, channels, k1, ..., kn)
        ``k = 2 * factor - factor % 2`` per axis.  ``W[c, c]`` is the outer
        product of the per-axis profiles ``1 - |t - (k - 1) / 2| / factor``;
        ``W[c, d]`` is zero for ``c != d``.

    Raises
    ------
    TypeError
        A non-int ``factor``, ``ndim`` or ``channels``, or a non-float dtype.
    ValueError
        ``factor`` or ``ndim`` below 1, ``channels`` below 0, or a
        ``factor`` sequence whose length is not ``ndim``.

    Notes
    -----
    Away from the border the weights of each output phase add up to one, so
    a constant image stays constant.

    Examples
    --------
    >>> from ndconv import linear_upsampling_kernel
    >>> linear_upsampling_kernel(2, 1, 1)
    array([[[0.25, 0.75, 0.75, 0.25]]], dtype=float32)
    >>> linear_upsampling_kernel(2, 2, 3).shape
    (3, 3, 4, 4)
    """
    ndim = A.as_int(ndim, 'ndim')
    if ndim < 1:
        raise ValueError('ndim must be a positive int, got %d' % ndim)
    factor = A.int_tuple(factor, ndim, 'factor')
    channels = A.as_int(channels, 'channels')
    if channels < 0:
        raise ValueError('channels must be an int >= 0, got %d' % channels)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError('dtype must be float16, float32 or float64, got %r'
                        % (dtype,)) from None
    if dt.type not in _FLOATS:
        raise TypeError('dtype must be float16, float32 or float64, got %s' % dt)
    ksize = tuple(2 * f - f % 2 for f in factor)
    # both before building anything: the float64 profile product and the result
    A.check_size(ksize, 8, 'kernel')
    A.check_size((channels, channels) + ksize, dt.itemsize, 'kernel')
    kernel = np.ones((), np.float64)
    for f in factor:
        kernel = np.multiply.outer(kernel, _profile(f))
    W = np.zeros((channels, channels) + kernel.shape, dt)
    for c in range(channels):
        W[c, c] = kernel
    return W
