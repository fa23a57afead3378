"""Convolution, transposed convolution and the weight gradient, for any n."""

import numpy as np

from . import _args as A
from ._engine import correlate, correlate_grad_w


# ----------------------------------------------------------------------------
# Shared argument handling of the three functions.

def _weights(x, W, name='W'):
    W = A.float_array(W, name)
    if W.ndim != x.ndim:
        raise ValueError('%s must have %d dimensions (out channels, in channels, '
                         'then %d kernel axes) to match x of shape %s; got shape %s'
                         % (name, x.ndim, x.ndim - 2, x.shape, W.shape))
    for i, k in enumerate(W.shape[2:]):
        if k < 1:
            raise ValueError('%s has an empty kernel axis %d (shape %s)' % (name, i, W.shape))
    return W


def _bias(b, c_out):
    if b is None:
        return None
    b = A.float_array(b, 'b')
    if b.shape != (c_out,):
        raise ValueError('b must have shape (%d,) (one value per output channel), '
                         'got %s' % (c_out, b.shape))
    return b


def _finish(res, out, rt):
    """Cast a float32 result computed for float16 back; fill ``out``."""
    if out is not None:
        if res is not out:
            out[...] = res
        return out
    return res if res.dtype == rt else res.astype(rt)


def _result(shape, rt, ct, out, inputs, extra=0):
    """Check ``out`` and the memory the call needs; the array to compute into.

    The workspace counted besides the result: the compute copies of the
    inputs, ``extra`` bytes more, and the float32 result of a float16 call."""
    out = A.check_out(out, shape, rt, inputs)
    extra += A.copy_bytes(inputs, ct)
    if rt != ct:
        extra += int(np.prod(shape, dtype=object)) * rt.itemsize
    A.check_size(shape, ct.itemsize, extra=extra)
    res = out if (out is not None and rt == ct) else np.empty(shape, ct)
    return out, res


# ----------------------------------------------------------------------------
# Public functions.

def convolution_nd(x, W, b=None, stride=1, pad=0, cover_all=False, dilate=1,
                   groups=1, *, input_dilate=1, pad_mode='constant', out=None,
                   method='auto'):
    """N-dimensional convolution (cross-correlation, no kernel flip).

    Parameters
    ----------
    x : ndarray, shape (N, C_in, D1, ..., Dn)
        Input, float16, float32 or float64.
    W : ndarray, shape (C_out, C_in // groups, k1, ..., kn)
        Filters.
    b : ndarray, shape (C_out,), optional
        Bias.
    stride, dilate : int or sequence of n ints
        An int applies to every axis.  ``dilate`` spaces the kernel taps.
    pad : int, sequence of n ints, sequence of n (lo, hi) pairs, or 'valid', 'same', 'full'
        Padding on each side.  A string fixes the output size and ``cover_all``
        is then ignored.
    cover_all : bool
        Add outputs on the high side so every input cell is covered.
    groups : int
        Number of channel groups; it divides ``C_in`` and ``C_out``.
    input_dilate : int or sequence of n ints, keyword-only
        Insert ``input_dilate - 1`` zeros between input samples (a fractional
        stride).
    pad_mode : {'constant', 'reflect', 'edge', 'wrap'}, keyword-only
        What the padding holds, as in ``numpy.pad``.  Modes other than
        'constant' need ``input_dilate == 1``.
    out : ndarray, optional, keyword-only
        C-contiguous array of the result's shape and dtype to fill.
    method : {'auto', 'winograd', 'implicit', 'gemm', 'direct'}, keyword-only
        The kernel: 'implicit' (packed input rows and register-blocked
        micro-kernels, no im2col buffer), 'winograd' (Winograd F(2, 3) where
        every one of 2 or 3 axes has a 3-tap kernel at unit stride and
        dilation and there are 16 or more input channels a group, the
        implicit kernel elsewhere), 'gemm' (im2col tiles and single-threaded
        BLAS), 'direct' (row by row, for few channels), or 'auto': winograd
        on CPUs with AVX2 or AVX-512, gemm on others.  Results agree within
        float rounding whatever the method.

    Returns
    -------
    y : ndarray, shape (N, C_out, O1, ..., On)

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value; the message names the
        parameter.

    Notes
    -----
    With ``D' = (D - 1) * input_dilate + 1`` and ``dk = (k - 1) * dilate + 1``,
    each output size is ``(D' + lo + hi - dk) // stride + 1``, or
    ``(D' + lo + hi - dk + stride - 1) // stride + 1`` with ``cover_all``.

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import convolution_nd
    >>> x = np.arange(5.0).reshape(1, 1, 5)
    >>> convolution_nd(x, np.ones((1, 1, 2)))
    array([[[1., 3., 5., 7.]]])
    """
    x = A.spatial_input(x)
    n = x.ndim - 2
    W = _weights(x, W)
    N, C_in = x.shape[:2]
    C_out = W.shape[0]
    ksize = W.shape[2:]
    g = A.groups_arg(groups, C_in, C_out)
    if W.shape[1] * g != C_in:
        raise ValueError('W has %d input channels per group but x has %d channels '
                         'and groups=%d (expected W.shape[1] == %d)'
                         % (W.shape[1], C_in, g, C_in // g))
    b = _bias(b, C_out)
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    input_dilate = A.int_tuple(input_dilate, n, 'input_dilate')
    cover_all = A.as_bool(cover_all, 'cover_all')
    mode = A.pad_mode_code(pad_mode)
    method = A.method_arg(method)
    if mode and any(r > 1 for r in input_dilate):
        raise ValueError("pad_mode=%r needs input_dilate=1 on every axis, got %s"
                         % (pad_mode, input_dilate))
    pads = A.pad_spec(pad, n, ('valid', 'same', 'full'))
    if isinstance(pads, str):
        pads = A.string_pads(pads, x.shape[2:], ksize, stride, dilate, input_dilate)
        cover_all = False
    out_sp = A.conv_out_shape(x.shape[2:], ksize, stride, pads, cover_all, dilate,
                              input_dilate)
    rt, ct = A.result_dtype(x, W, b)
    out, res = _result((N, C_out) + out_sp, rt, ct, out, (x, W, b))
    correlate(A.as_compute(x, ct), A.as_compute(W, ct),
               None if b is None else A.as_compute(b, ct), res, stride, dilate,
               input_dilate, [lo for lo, _ in pads], mode, g, method)
    return _finish(res, out, rt)


def deconvolution_nd(x, W, b=None, stride=1, pad=0, outsize=None, dilate=1,
                     groups=1, *, out=None, method='auto'):
    """N-dimensional transposed convolution, the adjoint of `convolution_nd`.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, D1, ..., Dn)
    W : ndarray, shape (C_in, C_out // groups, k1, ..., kn)
    b : ndarray, shape (C_out,), optional
    stride, dilate : int or sequence of n ints
        An int applies to every axis.
    pad : int, sequence of n ints, sequence of n (lo, hi) pairs, or 'valid', 'same'
        The padding of the convolution this is the adjoint of.  ``'same'``
        gives ``D * stride`` outputs.
    outsize : sequence of n ints, optional
        The wanted output size, any size the convolution maps back to ``D``
        (with or without ``cover_all``): from ``stride - 1`` below the default
        to ``stride - 1`` above it.
    groups : int
    out : ndarray, optional, keyword-only
    method : {'auto', 'winograd', 'implicit', 'gemm', 'direct'}, keyword-only
        As in `convolution_nd`.

    Returns
    -------
    y : ndarray, shape (N, C_out, O1, ..., On)

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value; an unreachable ``outsize``
        names the valid range.

    Notes
    -----
    Default output size per axis: ``stride * (D - 1) + dk - lo - hi`` with
    ``dk = (k - 1) * dilate + 1``.  For the same ``W``, ``stride``, ``pad``,
    ``dilate`` and ``groups``,
    ``sum(convolution_nd(a, W) * y) == sum(a * deconvolution_nd(y, W, outsize=a.shape[2:]))``.

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import deconvolution_nd
    >>> x = np.array([[[[0., 1.], [2., 3.]]]])
    >>> deconvolution_nd(x, x)[0, 0]
    array([[ 0.,  0.,  1.],
           [ 0.,  4.,  6.],
           [ 4., 12.,  9.]])
    """
    x = A.spatial_input(x)
    n = x.ndim - 2
    W = _weights(x, W)
    N, C_in = x.shape[:2]
    if W.shape[0] != C_in:
        raise ValueError('W must have shape (C_in, C_out // groups, k...) with '
                         'C_in = %d (the channels of x), got W.shape[0] = %d'
                         % (C_in, W.shape[0]))
    g = A.as_int(groups, 'groups')
    method = A.method_arg(method)
    if g < 1:
        raise ValueError('groups must be a positive int, got %d' % g)
    if C_in % g:
        raise ValueError('groups=%d does not divide the %d input channels' % (g, C_in))
    C_out = W.shape[1] * g
    ksize = W.shape[2:]
    b = _bias(b, C_out)
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    outsize = A.optional_sizes(outsize, n)
    pads = A.pad_spec(pad, n, ('valid', 'same'))
    fixed = None
    if isinstance(pads, str):
        if pads == 'same':
            fixed = tuple(D * s for D, s in zip(x.shape[2:], stride))
        pads = A.deconv_string_pads(pads, ksize, stride, dilate)
    out_sp = A.transposed_out_shape(x.shape[2:], ksize, stride, pads, dilate,
                                    outsize, fixed=fixed)
    rt, ct = A.result_dtype(x, W, b)
    # The flipped, regrouped copy of W is workspace too.
    out, res = _result((N, C_out) + out_sp, rt, ct, out, (x, W, b),
                       extra=W.size * ct.itemsize)
    cig, cog = C_in // g, W.shape[1]
    Wc = A.as_compute(W, ct).reshape((g, cig, cog) + ksize).swapaxes(1, 2)
    Wc = Wc.reshape((C_out, cig) + ksize)[(slice(None),) * 2 + (slice(None, None, -1),) * n]
    lo2 = [A.extent(k, d) - 1 - lo for k, d, (lo, _) in zip(ksize, dilate, pads)]
    correlate(A.as_compute(x, ct), Wc, None if b is None else A.as_compute(b, ct),
               res, (1,) * n, dilate, stride, lo2, 0, g, method)
    return _finish(res, out, rt)


def convolution_nd_grad_W(x, gy, ksize, stride=1, pad=0, cover_all=False,
                          dilate=1, groups=1, *, input_dilate=1, method='auto'):
    """Gradient of ``sum(convolution_nd(x, W, ...) * gy)`` with respect to W.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, D1, ..., Dn)
    gy : ndarray, shape (N, C_out, O1, ..., On)
        The output gradient; its spatial shape must be the convolution's.
    ksize : int or sequence of n ints
        Kernel size; an int applies to every axis.
    stride, pad, cover_all, dilate, groups, input_dilate
        As in `convolution_nd` (zero padding).
    method : {'auto', 'winograd', 'implicit', 'gemm'}, keyword-only
        The kernel, as in `convolution_nd`; 'implicit' reads both operands
        channels-last where the input channels fill the micro-kernel's width;
        'winograd' is Winograd F(3, 2) on the shapes where the forward
        Winograd applies and the input channels fill the micro-kernel's
        width, the implicit kernel on the others.

    Returns
    -------
    gW : ndarray, shape (C_out, C_in // groups, k1, ..., kn)

    Examples
    --------
    >>> import numpy as np
    >>> from ndconv import convolution_nd_grad_W
    >>> x = np.arange(4.0).reshape(1, 1, 4)
    >>> convolution_nd_grad_W(x, np.ones((1, 1, 3)), 2)
    array([[[3., 6.]]])
    """
    x = A.spatial_input(x)
    n = x.ndim - 2
    gy = A.float_array(gy, 'gy', ndim=x.ndim)
    N, C_in = x.shape[:2]
    C_out = gy.shape[1]
    if gy.shape[0] != N:
        raise ValueError('gy must have the batch size of x (%d), got shape %s'
                         % (N, gy.shape))
    ksize = A.int_tuple(ksize, n, 'ksize')
    g = A.groups_arg(groups, C_in, C_out)
    method = A.method_arg(method, A.GRAD_W_METHODS)
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    input_dilate = A.int_tuple(input_dilate, n, 'input_dilate')
    cover_all = A.as_bool(cover_all, 'cover_all')
    pads = A.pad_spec(pad, n, ('valid', 'same', 'full'))
    if isinstance(pads, str):
        pads = A.string_pads(pads, x.shape[2:], ksize, stride, dilate, input_dilate)
        cover_all = False
    out_sp = A.conv_out_shape(x.shape[2:], ksize, stride, pads, cover_all, dilate,
                              input_dilate)
    if gy.shape[2:] != out_sp:
        raise ValueError('gy must have spatial shape %s (the convolution output), '
                         'got %s' % (out_sp, gy.shape[2:]))
    rt, ct = A.result_dtype(x, gy)
    A.check_size((C_out, C_in // g) + ksize, ct.itemsize, 'weight gradient',
                 extra=A.copy_bytes((x, gy), ct))
    gW = correlate_grad_w(A.as_compute(x, ct), A.as_compute(gy, ct), ksize, stride,
                           dilate, input_dilate, [lo for lo, _ in pads], g, method)
    return gW.astype(rt, copy=False)


# ----------------------------------------------------------------------------
# Size helpers.

def _sizes_arg(size):
    if not A._is_sequence(size):
        raise TypeError('size must be a sequence of ints (one per spatial axis), got %r'
                        % (size,))
    if len(size) == 0:
        raise ValueError('size must have at least one spatial axis, got %r' % (size,))
    return A.int_tuple(size, len(size), 'size')


def conv_outsize(size, ksize, stride=1, pad=0, cover_all=False, dilate=1,
                 input_dilate=1):
    """Output spatial shape of `convolution_nd` for an input of spatial shape ``size``.

    Examples
    --------
    >>> from ndconv import conv_outsize
    >>> conv_outsize((100, 100), 4, stride=(2, 1), pad=((1, 1), (2, 2)), input_dilate=(1, 2))
    (50, 200)
    """
    size = _sizes_arg(size)
    n = len(size)
    ksize = A.int_tuple(ksize, n, 'ksize')
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    input_dilate = A.int_tuple(input_dilate, n, 'input_dilate')
    cover_all = A.as_bool(cover_all, 'cover_all')
    pads = A.pad_spec(pad, n, ('valid', 'same', 'full'))
    if isinstance(pads, str):
        pads = A.string_pads(pads, size, ksize, stride, dilate, input_dilate)
        cover_all = False
    return A.conv_out_shape(size, ksize, stride, pads, cover_all, dilate, input_dilate)


def deconv_outsize(size, ksize, stride=1, pad=0, dilate=1):
    """Default output spatial shape of `deconvolution_nd`.

    Examples
    --------
    >>> from ndconv import deconv_outsize
    >>> deconv_outsize((55, 55), 11, stride=4)
    (227, 227)
    """
    size = _sizes_arg(size)
    n = len(size)
    ksize = A.int_tuple(ksize, n, 'ksize')
    stride = A.int_tuple(stride, n, 'stride')
    dilate = A.int_tuple(dilate, n, 'dilate')
    pads = A.pad_spec(pad, n, ('valid', 'same'))
    fixed = None
    if isinstance(pads, str):
        if pads == 'same':
            fixed = tuple(D * s for D, s in zip(size, stride))
        pads = A.deconv_string_pads(pads, ksize, stride, dilate)
    return A.transposed_out_shape(size, ksize, stride, pads, dilate, None, fixed=fixed)
