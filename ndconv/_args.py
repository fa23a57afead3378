"""Argument normalisation and validation for every public function.

Every rule of the public contract that concerns arguments lives here:
int-or-sequence parameters become ``n``-tuples, the forms of ``pad`` become
``(lo, hi)`` pairs, the output-size arithmetic is written once per axis, the
dtype table is applied and ``out=`` is checked.  Kernels never see a value
that did not pass through this module.
"""

import numbers
import operator

import numpy as np

PAD_MODES = ('constant', 'reflect', 'edge', 'wrap')
PAD_MODE_CODES = {name: code for code, name in enumerate(PAD_MODES)}

# Largest result or workspace (bytes) one call may ask for.  Anything larger
# is refused before allocating, instead of being left to the OOM killer.
_MAX_BYTES = None

# Largest span (in cells) of one axis' geometry: padded input, kernel extent,
# strides.  The kernels index with 64-bit ints, so every offset they form
# must stay well inside int64; anything beyond this is refused (ValueError)
# rather than left to overflow.
MAX_EXTENT = 1 << 62


def _axis_name(name, axis):
    return name if axis is None else '%s[%d]' % (name, axis)


def as_int(value, name, axis=None):
    """Return ``value`` as a Python int; Python and NumPy ints only."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (numbers.Integral, np.integer)):
        raise TypeError('%s must be an int, got %r (%s)'
                        % (_axis_name(name, axis), value, type(value).__name__))
    return operator.index(value)


def _is_sequence(value):
    return isinstance(value, (tuple, list, np.ndarray)) and not (
        isinstance(value, np.ndarray) and value.ndim == 0)


def int_tuple(value, n, name, minimum=1):
    """An int or a sequence of ``n`` ints, each ``>= minimum``, as a tuple."""
    if _is_sequence(value):
        items = list(value)
        if len(items) != n:
            raise ValueError('%s must be an int or a sequence of %d ints '
                             '(one per spatial axis), got %d values: %r'
                             % (name, n, len(items), tuple(items)))
        out = tuple(as_int(v, name, i) for i, v in enumerate(items))
    elif isinstance(value, (str, bytes)):
        raise TypeError('%s must be an int or a sequence of %d ints, got %r'
                        % (name, n, value))
    else:
        out = (as_int(value, name),) * n
    for i, v in enumerate(out):
        if v < minimum:
            qual = 'a positive int' if minimum == 1 else 'an int >= %d' % minimum
            where = _axis_name(name, i) if _is_sequence(value) else name
            raise ValueError('%s must be %s, got %d' % (where, qual, v))
    return out


def pad_spec(pad, n, strings=(), name='pad'):
    """Normalise ``pad``: a string from ``strings`` or ``n`` (lo, hi) pairs.

    Accepted: an int; a sequence of ``n`` ints; a sequence of ``n`` pairs of
    ints (each entry may also be a plain int); a string from ``strings``.
    """
    if isinstance(pad, str):
        if pad not in strings:
            if strings:
                raise ValueError('%s=%r is not understood; the strings accepted '
                                 'here are %s' % (name, pad, ', '.join(repr(s) for s in strings)))
            raise TypeError('%s must be an int, a sequence of %d ints or of '
                            '%d (lo, hi) pairs; strings are not accepted here, '
                            'got %r' % (name, n, n, pad))
        return pad
    if isinstance(pad, bytes):
        raise TypeError('%s must be an int, a sequence or a string, got %r' % (name, pad))
    if _is_sequence(pad):
        items = list(pad)
        if len(items) != n:
            raise ValueError('%s must be an int, a sequence of %d ints or a '
                             'sequence of %d (lo, hi) pairs, got %d entries: %r'
                             % (name, n, n, len(items), pad))
        pairs = []
        for i, item in enumerate(items):
            if _is_sequence(item):
                sub = list(item)
                if len(sub) != 2:
                    raise ValueError('%s[%d] must be an int or a (lo, hi) pair, '
                                     'got %d values: %r' % (name, i, len(sub), item))
                lo = as_int(sub[0], name, i)
                hi = as_int(sub[1], name, i)
            elif isinstance(item, (str, bytes)):
                raise TypeError('%s[%d] must be an int or a (lo, hi) pair, got %r'
                                % (name, i, item))
            else:
                lo = hi = as_int(item, name, i)
            pairs.append((lo, hi))
    else:
        v = as_int(pad, name)
        pairs = [(v, v)] * n
    for i, (lo, hi) in enumerate(pairs):
        if lo < 0 or hi < 0:
            raise ValueError('%s[%d] must be >= 0, got %r' % (name, i, (lo, hi)))
    return tuple(pairs)


def optional_sizes(value, n, name='outsize'):
    """``None`` or a sequence of ``n`` ints (each >= 1)."""
    if value is None:
        return None
    if not _is_sequence(value):
        raise TypeError('%s must be None or a sequence of %d ints, got %r'
                        % (name, n, value))
    return int_tuple(value, n, name)


def as_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError('%s must be a bool, got %r' % (name, value))
    return bool(value)


# ----------------------------------------------------------------------------
# Output sizes, written for one axis.

def extent(k, dilate=1):
    """Span of a kernel of ``k`` taps spaced ``dilate`` apart."""
    return (k - 1) * dilate + 1


def conv_axis_size(size, k, s, lo, hi, cover_all=False, d=1, r=1):
    """Output length of a convolution along one axis (may be < 1)."""
    dsize = (size - 1) * r + 1
    span = dsize + lo + hi - extent(k, d)
    if cover_all:
        span += s - 1
    return span // s + 1


def deconv_axis_size(size, k, s, lo, hi, d=1):
    """Default output length of a transposed convolution along one axis."""
    return s * (size - 1) + extent(k, d) - lo - hi


def same_pad(size, k, s, d=1, r=1):
    """TensorFlow 'same' padding: ceil(D'/s) outputs, odd cell on the high side."""
    dsize = (size - 1) * r + 1
    out = -(-dsize // s)
    total = max((out - 1) * s + extent(k, d) - dsize, 0)
    return total // 2, total - total // 2


def string_pads(pad, sizes, ksize, stride, dilate, input_dilate):
    """``(lo, hi)`` pairs for a convolution's string pad."""
    n = len(sizes)
    if pad == 'valid':
        return ((0, 0),) * n
    if pad == 'full':
        return tuple((extent(k, d) - 1,) * 2 for k, d in zip(ksize, dilate))
    return tuple(same_pad(D, k, s, d, r) for D, k, s, d, r
                 in zip(sizes, ksize, stride, dilate, input_dilate))


def deconv_string_pads(pad, ksize, stride, dilate):
    n = len(ksize)
    if pad == 'valid':
        return ((0, 0),) * n
    pairs = []
    for k, s, d in zip(ksize, stride, dilate):
        total = max(extent(k, d) - s, 0)
        pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


def _too_large(i, total, D, k, s, lo, hi, d, r=None):
    """Refuse an axis whose geometry would overflow the kernels' 64-bit
    offsets (absurd strides, pads, dilations or sizes)."""
    if total > MAX_EXTENT:
        rtext = '' if r is None else ', input_dilate %d' % r
        raise ValueError(
            'axis %d is too large to compute: input size %d, ksize %d, stride %d, '
            'pad %r, dilate %d%s span %d cells, more than 2**62'
            % (i, D, k, s, (lo, hi), d, rtext, total))


def conv_out_shape(sizes, ksize, stride, pads, cover_all, dilate, input_dilate,
                   what='output'):
    out = []
    for i, (D, k, s, (lo, hi), d, r) in enumerate(
            zip(sizes, ksize, stride, pads, dilate, input_dilate)):
        _too_large(i, (D - 1) * r + 1 + lo + hi + extent(k, d) + s * r + s,
                   D, k, s, lo, hi, d, r)
        o = conv_axis_size(D, k, s, lo, hi, cover_all, d, r)
        if o < 1:
            raise ValueError(
                'the %s would be empty on axis %d: input size %d, kernel '
                'extent %d (ksize %d, dilate %d), stride %d, pad %r, '
                'input_dilate %d give %d; the kernel is larger than the '
                'padded input' % (what, i, D, extent(k, d), k, d, s, (lo, hi), r, o))
        out.append(o)
    return tuple(out)


def transposed_out_shape(sizes, ksize, stride, pads, dilate, outsize,
                         cover_all=(False, True), fixed=None):
    """Output shape of a transposed op, checking ``outsize``.

    An ``outsize`` ``O`` is accepted on an axis when the forward convolution
    maps it back to the input size for one of the ``cover_all`` settings
    given: without cover_all ``O`` is in ``[default, default + s - 1]``, with
    it in ``[default - s + 1, default]``, where ``default = s * (D - 1) + dk
    - lo - hi``.  ``fixed`` gives the sizes used when ``outsize`` is None
    (default: ``default`` itself).
    """
    out = []
    for i, (D, k, s, (lo, hi), d) in enumerate(zip(sizes, ksize, stride, pads, dilate)):
        _too_large(i, s * (D - 1) + 1 + 2 * extent(k, d) + lo + hi + 2 * s,
                   D, k, s, lo, hi, d)
        default = deconv_axis_size(D, k, s, lo, hi, d)
        low = default - (s - 1) if True in cover_all else default
        high = default + (s - 1) if False in cover_all else default
        low = max(low, 1)
        if outsize is None:
            o = default if fixed is None else fixed[i]
        else:
            o = outsize[i]
            if not low <= o <= high:
                if low > high:
                    raise ValueError(
                        'outsize[%d]=%d cannot be reached: input size %d, kernel '
                        'extent %d, stride %d and pad %r leave no output size >= 1'
                        % (i, o, D, extent(k, d), s, (lo, hi)))
                raise ValueError(
                    'outsize[%d]=%d cannot be reached: with input size %d, kernel '
                    'extent %d, stride %d and pad %r it must be in [%d, %d]'
                    % (i, o, D, extent(k, d), s, (lo, hi), low, high))
        if o < 1:
            raise ValueError(
                'the output would be empty on axis %d: input size %d, kernel '
                'extent %d, stride %d and pad %r give %d'
                % (i, D, extent(k, d), s, (lo, hi), o))
        out.append(o)
    return tuple(out)


# ----------------------------------------------------------------------------
# Arrays and dtypes.

_FLOATS = (np.float16, np.float32, np.float64)


def float_array(x, name, ndim=None, min_ndim=None):
    """Check that ``x`` is a float16/32/64 array (array-likes are converted)."""
    if not isinstance(x, np.ndarray):
        if x is None:
            raise TypeError('%s must be a float array, got None' % name)
        try:
            x = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError('%s must be a float array: %s' % (name, exc)) from None
    if x.dtype.type not in _FLOATS:
        raise TypeError('%s must be a float16, float32 or float64 array, got dtype %s'
                        % (name, x.dtype))
    if ndim is not None and x.ndim != ndim:
        raise ValueError('%s must have %d dimensions, got shape %s'
                         % (name, ndim, x.shape))
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError('%s must have at least %d dimensions (N, C, D1, ..., Dn), '
                         'got shape %s' % (name, min_ndim, x.shape))
    return x


def spatial_input(x, name='x'):
    """The main input: float, shape (N, C, D1..Dn) with every Di >= 1."""
    x = float_array(x, name, min_ndim=3)
    for i, D in enumerate(x.shape[2:]):
        if D < 1:
            raise ValueError('%s has an empty spatial axis %d (shape %s); every '
                             'spatial size must be >= 1' % (name, i, x.shape))
    return x


def result_dtype(*arrays):
    """(result dtype, compute dtype) for float inputs; float16 computes in float32."""
    rt = np.result_type(*[a.dtype for a in arrays if a is not None])
    ct = np.dtype(np.float32) if rt == np.float16 else rt
    return rt, ct


def as_compute(a, dtype):
    """C-contiguous copy (only when needed) of ``a`` in ``dtype``."""
    return np.ascontiguousarray(a, dtype=dtype)


def check_out(out, shape, dtype, inputs):
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise ValueError('out must be a numpy array, got %s' % type(out).__name__)
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError('out must have shape %s and dtype %s, got shape %s and '
                         'dtype %s' % (tuple(shape), dtype, out.shape, out.dtype))
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError('out must be a writeable C-contiguous array')
    for a in inputs:
        if a is not None and isinstance(a, np.ndarray) and np.shares_memory(out, a):
            raise ValueError('out shares memory with an input; pass a separate array')
    return out


def check_size(shape, itemsize, what='result', extra=0):
    """Refuse, before allocating, a result that cannot fit in memory.

    ``extra`` is the other memory the call needs besides the result (its
    workspace: compute copies of the inputs, a float32 result computed for
    float16); the sum must fit.
    """
    count = 1
    for s in shape:
        count *= int(s)
    nbytes = count * itemsize
    limit = max_bytes()
    if nbytes + extra > limit:
        if extra:
            raise MemoryError(
                'the %s of shape %s needs %d bytes and a workspace of %d bytes, '
                'more than this machine can hold (%d bytes)'
                % (what, tuple(shape), nbytes, extra, limit))
        raise MemoryError('the %s of shape %s needs %d bytes, more than this '
                          'machine can hold (%d bytes)' % (what, tuple(shape), nbytes, limit))
    return count


def copy_bytes(arrays, dtype):
    """Bytes of the C-contiguous ``dtype`` copies `as_compute` will make."""
    dtype = np.dtype(dtype)
    total = 0
    for a in arrays:
        if a is not None and not (a.flags.c_contiguous and a.dtype == dtype):
            total += a.size * dtype.itemsize
    return total


def max_bytes():
    global _MAX_BYTES
    if _MAX_BYTES is None:
        try:
            import os
            _MAX_BYTES = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
        except (ValueError, OSError, AttributeError):
            _MAX_BYTES = 1 << 46
    return _MAX_BYTES


def pad_mode_code(pad_mode):
    if not isinstance(pad_mode, str):
        raise TypeError('pad_mode must be a string, one of %s; got %r'
                        % (', '.join(PAD_MODES), pad_mode))
    try:
        return PAD_MODE_CODES[pad_mode]
    except KeyError:
        raise ValueError('pad_mode must be one of %s; got %r'
                         % (', '.join(repr(m) for m in PAD_MODES), pad_mode)) from None


# Kernels a caller may ask for by name (``method=``).
CONV_METHODS = ('auto', 'winograd', 'implicit', 'gemm', 'direct')
GRAD_W_METHODS = ('auto', 'winograd', 'implicit', 'gemm')


def method_arg(method, choices=CONV_METHODS):
    if not isinstance(method, str):
        raise TypeError('method must be a string, one of %s; got %r'
                        % (', '.join(repr(m) for m in choices), method))
    if method not in choices:
        raise ValueError('method must be one of %s; got %r'
                         % (', '.join(repr(m) for m in choices), method))
    return method


def groups_arg(groups, c_in, c_out, w_name='W'):
    g = as_int(groups, 'groups')
    if g < 1:
        raise ValueError('groups must be a positive int, got %d' % g)
    if c_in % g:
        raise ValueError('groups=%d does not divide the %d input channels' % (g, c_in))
    if c_out % g:
        raise ValueError('groups=%d does not divide the %d output channels' % (g, c_out))
    return g
