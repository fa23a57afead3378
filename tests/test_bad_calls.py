"""A catalogue of bad calls, one per line, across every public function.

Each case names the exception *type* (exactly: not a subclass, not a
different one) and a word its message must contain, usually the parameter's
name, so that a user reading the error knows what to fix.  Absurd sizes must
be refused at once (``MemoryError`` or ``ValueError``), before anything big
is allocated.
"""

import numpy as np
import pytest

import ndconv

f32, f64 = np.float32, np.float64

x1 = np.ones((2, 3, 5), f32)             # 1-D, C_in 3
W1 = np.ones((4, 3, 2), f32)
x2 = np.ones((2, 4, 6, 5), f32)          # 2-D, C_in 4
W2 = np.ones((6, 4, 3, 3), f32)          # C_out 6
x3 = np.ones((1, 2, 4, 4, 4), f64)       # 3-D
W3 = np.ones((2, 2, 3, 3, 3), f64)
xd = np.ones((2, 4, 3, 3), f32)          # deconvolution: C_in 4
Wd = np.ones((4, 3, 2, 2), f32)          # C_out 3, default output (4, 4)
gy2 = np.ones((2, 6, 4, 3), f32)         # convolution_nd(x2, W2) output
xp = np.ones((2, 3, 6, 6), f32)          # pooling
# A broadcast view of 2**40 logical elements (4 TiB as float32); no memory
# behind it.
HUGE_VIEW = np.broadcast_to(np.ones((1,), f32), (1, 1, 2 ** 20, 2 ** 20))

GLOBALS = dict(x1=x1, W1=W1, x2=x2, W2=W2, x3=x3, W3=W3, xd=xd, Wd=Wd, gy2=gy2, xp=xp)
SNAPSHOT = {k: v.copy() for k, v in GLOBALS.items()}

CASES = []


def case(exc, word, fn, *args, **kwargs):
    CASES.append((exc, word, fn, args, kwargs))


conv, deconv = ndconv.convolution_nd, ndconv.deconvolution_nd
gradw = ndconv.convolution_nd_grad_W
conv_os, deconv_os = ndconv.conv_outsize, ndconv.deconv_outsize

# ---- convolution_nd: stride ------------------------------------------------
case(ValueError, 'stride', conv, x2, W2, stride=0)
case(ValueError, 'stride', conv, x2, W2, stride=-1)
case(TypeError, 'stride', conv, x2, W2, stride=1.0)
case(TypeError, 'stride', conv, x2, W2, stride=2.5)
case(TypeError, 'stride', conv, x2, W2, stride=True)
case(TypeError, 'stride', conv, x2, W2, stride=False)
case(TypeError, 'stride', conv, x2, W2, stride=np.bool_(True))
case(TypeError, 'stride', conv, x2, W2, stride=np.float64(1))
case(ValueError, 'stride', conv, x2, W2, stride=(1,))
case(ValueError, 'stride', conv, x2, W2, stride=(1, 1, 1))
case(ValueError, 'stride', conv, x2, W2, stride=())
case(ValueError, 'stride[1]', conv, x2, W2, stride=(1, 0))
case(ValueError, 'stride[1]', conv, x2, W2, stride=[1, -2])
case(TypeError, 'stride[1]', conv, x2, W2, stride=(1, 1.0))
case(TypeError, 'stride[0]', conv, x2, W2, stride=(True, 1))
case(TypeError, 'stride', conv, x2, W2, stride='1')
case(TypeError, 'stride', conv, x2, W2, stride=None)
case(TypeError, 'stride', conv, x2, W2, stride=np.array([1.0, 1.0]))
case(TypeError, 'stride', conv, x2, W2, stride=((1, 1), (1, 1)))
case(TypeError, 'stride', conv, x2, W2, stride=[1, None])
case(TypeError, 'stride', conv, x2, W2, stride=1 + 0j)
case(TypeError, 'stride', conv, x2, W2, stride={'a': 1})
case(ValueError, 'stride', conv, x2, W2, stride=2 ** 70)
case(ValueError, 'stride', conv, x1, W1, stride=(2 ** 63,))
# ---- convolution_nd: dilate, input_dilate ------------------------------------
case(ValueError, 'dilate', conv, x2, W2, dilate=0)
case(ValueError, 'dilate', conv, x2, W2, dilate=-2)
case(TypeError, 'dilate', conv, x2, W2, dilate=1.5)
case(TypeError, 'dilate', conv, x2, W2, dilate=True)
case(ValueError, 'dilate', conv, x2, W2, dilate=(1,))
case(ValueError, 'dilate[1]', conv, x2, W2, dilate=(1, 0))
case(TypeError, 'dilate', conv, x2, W2, dilate='2')
case(ValueError, 'dilate', conv, x2, W2, dilate=2 ** 62)
case(ValueError, 'input_dilate', conv, x2, W2, input_dilate=0)
case(ValueError, 'input_dilate', conv, x2, W2, input_dilate=-3)
case(TypeError, 'input_dilate', conv, x2, W2, input_dilate=1.5)
case(TypeError, 'input_dilate', conv, x2, W2, input_dilate=np.bool_(False))
case(ValueError, 'input_dilate', conv, x2, W2, input_dilate=(1, 2, 3))
case(ValueError, 'input_dilate[0]', conv, x2, W2, input_dilate=(0, 1))
case(ValueError, 'input_dilate', conv, x2, W2, input_dilate=2 ** 62)
# ---- convolution_nd: pad -----------------------------------------------------
case(ValueError, 'pad', conv, x2, W2, pad=-1)
case(ValueError, 'pad[0]', conv, x2, W2, pad=(-1, 0))
case(ValueError, 'pad[0]', conv, x2, W2, pad=((0, -1), (0, 0)))
case(ValueError, 'pad[1]', conv, x2, W2, pad=((0, 0), (-2, 1)))
case(TypeError, 'pad', conv, x2, W2, pad=1.5)
case(TypeError, 'pad', conv, x2, W2, pad=True)
case(ValueError, 'pad', conv, x2, W2, pad=(1,))
case(ValueError, 'pad', conv, x2, W2, pad=(1, 1, 1))
case(ValueError, 'pad', conv, x2, W2, pad=())
case(ValueError, 'pad[0]', conv, x2, W2, pad=((1, 2, 3), (0, 0)))
case(ValueError, 'pad[0]', conv, x2, W2, pad=((1,), (0, 0)))
case(ValueError, 'pad[1]', conv, x2, W2, pad=((0, 0), ()))
case(TypeError, 'pad[0]', conv, x2, W2, pad=((1, 1.5), (0, 0)))
case(TypeError, 'pad[0]', conv, x2, W2, pad=((True, 0), (0, 0)))
case(TypeError, 'pad[1]', conv, x2, W2, pad=(0, None))
case(ValueError, 'pad', conv, x2, W2, pad='bogus')
case(ValueError, 'pad', conv, x2, W2, pad='SAME')
case(ValueError, 'pad', conv, x2, W2, pad='')
case(ValueError, 'pad', conv, x2, W2, pad='valid ')
case(TypeError, 'pad', conv, x2, W2, pad=b'same')
case(TypeError, 'pad', conv, x2, W2, pad=None)
case(TypeError, 'pad[0]', conv, x2, W2, pad=('same', 'same'))
case(TypeError, 'pad', conv, x2, W2, pad={'lo': 1})
case(ValueError, 'pad', conv, x2, W2, pad=((1, 1),))
case(ValueError, 'pad', conv, x1, W1, pad=(1, 2))          # n = 1: write ((1, 2),)
case(ValueError, 'pad[0]', conv, x2, W2, pad=np.array([-1, 0]))
case(ValueError, 'pad', conv, x2, W2, pad=np.zeros((2, 3), int))
case(TypeError, 'pad', conv, x2, W2, pad=np.array([0.5, 1.0]))
case(ValueError, 'pad', conv, x2, W2, pad=2 ** 70)
case(ValueError, 'pad', conv, x2, W2, pad=((0, 2 ** 62), (0, 0)))
# ---- convolution_nd: cover_all, pad_mode, groups -----------------------------
case(TypeError, 'cover_all', conv, x2, W2, cover_all=1)
case(TypeError, 'cover_all', conv, x2, W2, cover_all='yes')
case(TypeError, 'cover_all', conv, x2, W2, cover_all=None)
case(TypeError, 'cover_all', conv, x2, W2, cover_all=np.array([True]))
case(ValueError, 'pad_mode', conv, x2, W2, pad_mode='zeros')
case(ValueError, 'pad_mode', conv, x2, W2, pad_mode='Reflect')
case(ValueError, 'pad_mode', conv, x2, W2, pad_mode='symmetric')
case(TypeError, 'pad_mode', conv, x2, W2, pad_mode=None)
case(TypeError, 'pad_mode', conv, x2, W2, pad_mode=0)
case(TypeError, 'pad_mode', conv, x2, W2, pad_mode=b'edge')
case(ValueError, 'input_dilate', conv, x2, W2, pad_mode='reflect', input_dilate=2)
case(ValueError, 'input_dilate', conv, x2, W2, pad_mode='wrap', input_dilate=(1, 3))
case(ValueError, 'groups', conv, x2, W2, groups=0)
case(ValueError, 'groups', conv, x2, W2, groups=-1)
case(TypeError, 'groups', conv, x2, W2, groups=1.0)
case(TypeError, 'groups', conv, x2, W2, groups=True)
case(TypeError, 'groups', conv, x2, W2, groups='2')
case(TypeError, 'groups', conv, x2, W2, groups=None)
case(ValueError, 'groups', conv, x2, W2, groups=3)               # C_in 4
case(ValueError, 'groups', conv, x2, np.ones((6, 1, 3, 3), f32), groups=4)  # C_out 6
case(ValueError, 'W', conv, x2, W2, groups=2)                    # W.shape[1] 4 != 2
case(ValueError, 'groups', conv, x2, W2, groups=2 ** 70)
# ---- convolution_nd: x, W, b -------------------------------------------------
case(ValueError, 'W', conv, x2, np.ones((6, 3, 3, 3), f32))     # C_in mismatch
case(ValueError, 'W', conv, x2, np.ones((6, 5, 3, 3), f32))
case(ValueError, 'W', conv, x2, np.ones((6, 4, 3), f32))        # W ndim
case(ValueError, 'W', conv, x2, np.ones((6, 4, 3, 3, 1), f32))
case(ValueError, 'W', conv, x2, np.ones((6, 4, 0, 3), f32))     # empty kernel axis
case(ValueError, 'W', conv, x2, np.ones((6,), f32))
case(TypeError, 'W', conv, x2, np.ones((6, 4, 3, 3), np.int32))
case(TypeError, 'W', conv, x2, np.ones((6, 4, 3, 3), bool))
case(TypeError, 'W', conv, x2, np.ones((6, 4, 3, 3), np.complex64))
case(TypeError, 'W', conv, x2, np.ones((6, 4, 3, 3), object))
case(TypeError, 'W', conv, x2, None)
case(TypeError, 'W', conv, x2, 'abc')
case(TypeError, 'W', conv, x2, [[[[1, 2]]]])
case(ValueError, 'kernel', conv, x2, np.ones((6, 4, 7, 3), f32))  # larger than input
case(ValueError, 'kernel', conv, x2, W2, dilate=4)
case(ValueError, 'kernel', conv, x2, W2, stride=2, pad='valid', dilate=(3, 1))
case(ValueError, 'kernel', conv, x1, np.ones((4, 3, 4), f32), pad=((0, 0),), dilate=2)
case(ValueError, 'b', conv, x2, W2, b=np.ones(5, f32))
case(ValueError, 'b', conv, x2, W2, b=np.ones((6, 1), f32))
case(ValueError, 'b', conv, x2, W2, b=np.float32(1))
case(ValueError, 'b', conv, x2, W2, b=np.ones((), f32))
case(TypeError, 'b', conv, x2, W2, b=np.ones(6, np.int64))
case(TypeError, 'b', conv, x2, W2, b=np.ones(6, np.complex128))
case(TypeError, 'b', conv, x2, W2, b=[1, 2, 3, 4, 5, 6])
case(TypeError, 'x', conv, np.ones((2, 4, 6, 5), np.int64), W2)
case(TypeError, 'x', conv, np.ones((2, 4, 6, 5), np.uint8), W2)
case(TypeError, 'x', conv, np.ones((2, 4, 6, 5), bool), W2)
case(TypeError, 'x', conv, np.ones((2, 4, 6, 5), np.complex64), W2)
case(TypeError, 'x', conv, np.ones((2, 4, 6, 5), object), W2)
case(TypeError, 'x', conv, np.ones((2, 4, 6, 5), np.longdouble), W2)
case(TypeError, 'x', conv, np.zeros((2, 4, 6, 5), 'datetime64[s]'), W2)
case(TypeError, 'x', conv, np.zeros((2, 4, 6, 5), 'U2'), W2)
case(TypeError, 'x', conv, np.zeros((2, 4, 6, 5), [('a', f32)]), W2)
case(TypeError, 'x', conv, None, W2)
case(TypeError, 'x', conv, 'x', W2)
case(TypeError, 'x', conv, [[[1.0, 2.0], [3.0]]], W1)       # ragged
case(ValueError, 'x', conv, np.float32(1), W2)               # 0-d
case(ValueError, 'x', conv, np.ones(5, f32), W2)             # 1-d
case(ValueError, 'x', conv, np.ones((2, 4), f32), W2)        # no spatial axis
case(ValueError, 'x', conv, np.ones((2, 4, 0, 5), f32), W2)  # empty spatial axis
case(ValueError, 'x', conv, np.ones((2, 4, 6, 0), f32), W2)
# ---- convolution_nd: out= ------------------------------------------------------
case(ValueError, 'out', conv, x2, W2, out=np.empty((2, 6, 4, 4), f32))
case(ValueError, 'out', conv, x2, W2, out=np.empty((2, 6, 4, 3), f64))
case(ValueError, 'out', conv, x2, W2, out=np.empty((2, 6, 4, 3), f32, order='F'))
case(ValueError, 'out', conv, x2, W2, out=np.empty((2, 6, 4, 6), f32)[..., ::2])
case(ValueError, 'out', conv, x2, W2, out=np.broadcast_to(np.empty((1,), f32), (2, 6, 4, 3)))
case(ValueError, 'out', conv, x2, W2, out=np.zeros((2, 6, 4, 3), f32).tolist())
case(ValueError, 'out', conv, x2, W2, out=np.empty((2, 6, 4, 3), np.float16))
case(ValueError, 'shares memory', conv, x2.copy(), np.ones((4, 4, 1, 1), f32),
     out='x')                                   # out is x itself
case(ValueError, 'shares memory', conv, np.ones((1, 1, 8), f32), np.ones((1, 1, 1), f32),
     out='x[1:]')                               # a view inside x
case(ValueError, 'shares memory', conv, np.ones((1, 1, 4), f32), np.ones((1, 1, 1), f32),
     out='W-buffer')                            # W lives inside out's buffer
case(TypeError, 'foo', conv, x2, W2, foo=1)
case(TypeError, 'positional', conv, x2, W2, None, 1, 0, False, 1, 1, 2)
case(TypeError, 'x', conv)
# ---- convolution_nd: absurd sizes ----------------------------------------------
case(MemoryError, 'bytes', conv, x1, W1, pad=10 ** 12)
case(MemoryError, 'bytes', conv, x1, W1, input_dilate=10 ** 11)
case(MemoryError, 'bytes', conv, np.broadcast_to(np.ones(1, f32), (2 ** 31, 8, 1)),
     np.ones((8, 8, 1), f32))
case(MemoryError, 'bytes', conv, HUGE_VIEW, np.ones((1, 1, 1, 1), f32))
case(MemoryError, 'bytes', conv, HUGE_VIEW, np.ones((1, 1, 1, 1), f32), stride=1024)
case(MemoryError, 'bytes', conv, np.broadcast_to(np.ones(1, np.float16), (1, 1, 2 ** 20, 2 ** 20)),
     np.ones((1, 1, 1, 1), np.float16), stride=512)

# ---- deconvolution_nd ------------------------------------------------------------
case(ValueError, 'stride', deconv, xd, Wd, stride=0)
case(ValueError, 'stride', deconv, xd, Wd, stride=-2)
case(TypeError, 'stride', deconv, xd, Wd, stride=1.5)
case(TypeError, 'stride', deconv, xd, Wd, stride=True)
case(ValueError, 'stride', deconv, xd, Wd, stride=(1,))
case(ValueError, 'stride[1]', deconv, xd, Wd, stride=(2, 0))
case(ValueError, 'stride', deconv, xd, Wd, stride=2 ** 62)
case(ValueError, 'pad', deconv, xd, Wd, pad=-1)
case(ValueError, 'pad', deconv, xd, Wd, pad='full')            # not for deconvolution
case(ValueError, 'pad', deconv, xd, Wd, pad='bogus')
case(ValueError, 'pad[0]', deconv, xd, Wd, pad=((1, 2, 3), (0, 0)))
case(TypeError, 'pad[0]', deconv, xd, Wd, pad=(1.5, 0))
case(TypeError, 'pad', deconv, xd, Wd, pad=None)
case(ValueError, 'outsize', deconv, xd, Wd, outsize=(100, 100))
case(ValueError, 'outsize', deconv, xd, Wd, outsize=(3, 4))       # below the range
case(ValueError, 'outsize', deconv, xd, Wd, stride=2, outsize=(8, 7))  # above it
case(ValueError, 'outsize', deconv, xd, Wd, stride=2, outsize=(4, 5))  # below it
case(ValueError, 'outsize', deconv, xd, Wd, outsize=(0, 4))
case(ValueError, 'outsize', deconv, xd, Wd, outsize=(-1, 4))
case(ValueError, 'outsize', deconv, xd, Wd, outsize=(4,))
case(ValueError, 'outsize', deconv, xd, Wd, outsize=(4, 4, 4))
case(TypeError, 'outsize', deconv, xd, Wd, outsize=4)
case(TypeError, 'outsize', deconv, xd, Wd, outsize=(4.0, 4))
case(TypeError, 'outsize', deconv, xd, Wd, outsize=(True, 4))
case(TypeError, 'outsize', deconv, xd, Wd, outsize='ab')
case(ValueError, 'outsize', deconv, xd, Wd, outsize=(2 ** 70, 4))
case(ValueError, 'dilate', deconv, xd, Wd, dilate=0)
case(ValueError, 'dilate', deconv, xd, Wd, dilate=(1,))
case(TypeError, 'dilate', deconv, xd, Wd, dilate=2.0)
case(ValueError, 'groups', deconv, xd, Wd, groups=0)
case(ValueError, 'groups', deconv, xd, Wd, groups=3)              # C_in 4
case(TypeError, 'groups', deconv, xd, Wd, groups=1.5)
case(ValueError, 'W', deconv, xd, np.ones((3, 3, 2, 2), f32))     # W.shape[0] != C_in
case(ValueError, 'W', deconv, xd, np.ones((4, 3, 2), f32))
case(ValueError, 'W', deconv, xd, np.ones((4, 3, 2, 0), f32))
case(TypeError, 'W', deconv, xd, np.ones((4, 3, 2, 2), np.int16))
case(ValueError, 'b', deconv, xd, Wd, b=np.ones(4, f32))         # C_out is 3
case(ValueError, 'b', deconv, xd, Wd, b=np.ones(6, f32), groups=1)
case(TypeError, 'b', deconv, xd, Wd, b=np.ones(3, np.int32))
case(TypeError, 'x', deconv, np.ones((2, 4, 3, 3), np.int8), Wd)
case(ValueError, 'x', deconv, np.ones((2, 4), f32), Wd)
case(ValueError, 'x', deconv, np.ones((2, 4, 3, 0), f32), Wd)
case(ValueError, 'x', deconv, np.array(1.0), Wd)
case(ValueError, 'empty', deconv, xd, Wd, pad=5)                 # default output < 1
case(ValueError, 'out', deconv, xd, Wd, out=np.empty((2, 3, 4, 5), f32))
case(ValueError, 'out', deconv, xd, Wd, out=np.empty((2, 3, 4, 4), f64))
case(ValueError, 'shares memory', deconv, np.ones((1, 1, 1, 1), f32), np.ones((1, 1, 1, 1), f32),
     out='x')
case(TypeError, 'cover_all', deconv, xd, Wd, cover_all=True)    # not a parameter here
case(MemoryError, 'bytes', deconv, xd, Wd, stride=10 ** 6)
case(MemoryError, 'bytes', deconv, np.ones((1, 1, 2, 2), f32), np.ones((1, 1, 1, 1), f32),
     stride=(2 ** 20, 2 ** 20))

# ---- convolution_nd_grad_W ------------------------------------------------------------
case(ValueError, 'ksize', gradw, x2, gy2, 0)
case(ValueError, 'ksize', gradw, x2, gy2, -3)
case(TypeError, 'ksize', gradw, x2, gy2, 3.0)
case(TypeError, 'ksize', gradw, x2, gy2, True)
case(ValueError, 'ksize', gradw, x2, gy2, (3,))
case(ValueError, 'ksize', gradw, x2, gy2, (3, 3, 3))
case(TypeError, 'ksize', gradw, x2, gy2, None)
case(TypeError, 'ksize', gradw, x2, gy2, '3')
case(ValueError, 'ksize[1]', gradw, x2, gy2, (3, 0))
case(ValueError, 'ksize', gradw, x2, gy2, 2 ** 62)
case(ValueError, 'gy', gradw, x2, np.ones((2, 6, 4, 4), f32), 3)   # wrong spatial
case(ValueError, 'gy', gradw, x2, np.ones((3, 6, 4, 3), f32), 3)   # wrong batch
case(ValueError, 'gy', gradw, x2, np.ones((2, 6, 4), f32), 3)      # wrong ndim
case(TypeError, 'gy', gradw, x2, np.ones((2, 6, 4, 3), np.int32), 3)
case(TypeError, 'gy', gradw, x2, None, 3)
case(ValueError, 'groups', gradw, x2, gy2, 3, groups=3)
case(ValueError, 'groups', gradw, x2, gy2, 3, groups=4)             # C_out 6
case(ValueError, 'groups', gradw, x2, gy2, 3, groups=0)
case(TypeError, 'groups', gradw, x2, gy2, 3, groups=2.0)
case(ValueError, 'stride', gradw, x2, gy2, 3, stride=0)
case(TypeError, 'stride', gradw, x2, gy2, 3, stride=1.5)
case(ValueError, 'pad', gradw, x2, gy2, 3, pad=-1)
case(ValueError, 'pad', gradw, x2, gy2, 3, pad='bogus')
case(TypeError, 'cover_all', gradw, x2, gy2, 3, cover_all='no')
case(ValueError, 'dilate', gradw, x2, gy2, 3, dilate=0)
case(ValueError, 'input_dilate', gradw, x2, gy2, 3, input_dilate=0)
case(ValueError, 'kernel', gradw, x2, gy2, 7)                       # larger than input
case(TypeError, 'x', gradw, np.ones((2, 4, 6, 5), np.int32), gy2, 3)
case(ValueError, 'x', gradw, np.ones((2, 4), f32), gy2, 3)
case(ValueError, 'x', gradw, np.ones((2, 4, 0, 5), f32), gy2, 3)
case(TypeError, 'pad_mode', gradw, x2, gy2, 3, pad_mode='constant')  # not a parameter
case(MemoryError, 'bytes', gradw, np.ones((1, 1, 2), f32), np.ones((1, 1, 3), f32),
     10 ** 11, pad=5 * 10 ** 10)                        # a 400 GB weight gradient

# ---- conv_outsize, deconv_outsize ---------------------------------------------------------
case(TypeError, 'size', conv_os, 5, 3)
case(TypeError, 'size', conv_os, None, 3)
case(TypeError, 'size', conv_os, 'abc', 3)
case(ValueError, 'size', conv_os, (), 3)
case(ValueError, 'size', conv_os, (0, 5), 3)
case(ValueError, 'size', conv_os, (5, -5), 3)
case(TypeError, 'size', conv_os, (5.0, 5), 3)
case(TypeError, 'size', conv_os, (True, 5), 3)
case(ValueError, 'ksize', conv_os, (5, 5), 0)
case(ValueError, 'ksize', conv_os, (5, 5), (3,))
case(TypeError, 'ksize', conv_os, (5, 5), 1.5)
case(ValueError, 'stride', conv_os, (5, 5), 3, stride=0)
case(ValueError, 'pad', conv_os, (5, 5), 3, pad=-1)
case(ValueError, 'pad', conv_os, (5, 5), 3, pad='circular')
case(ValueError, 'dilate', conv_os, (5, 5), 3, dilate=0)
case(ValueError, 'input_dilate', conv_os, (5, 5), 3, input_dilate=0)
case(TypeError, 'cover_all', conv_os, (5, 5), 3, cover_all=1)
case(ValueError, 'kernel', conv_os, (5, 5), 6)
case(ValueError, 'kernel', conv_os, (5,), 3, dilate=3)
case(ValueError, 'stride', conv_os, (5,), 3, stride=2 ** 64)
case(TypeError, 'size', deconv_os, 5, 3)
case(ValueError, 'size', deconv_os, (0,), 3)
case(ValueError, 'size', deconv_os, (), 3)
case(ValueError, 'ksize', deconv_os, (5,), 0)
case(ValueError, 'stride', deconv_os, (5,), 3, stride=0)
case(ValueError, 'pad', deconv_os, (5,), 3, pad='full')
case(ValueError, 'pad', deconv_os, (5,), 3, pad=-1)
case(ValueError, 'dilate', deconv_os, (5,), 3, dilate=(1, 1))
case(ValueError, 'empty', deconv_os, (1,), 3, pad=2)
case(TypeError, 'cover_all', deconv_os, (5,), 3, cover_all=True)

# ---- threads, show_config -----------------------------------------------------------------
case(ValueError, 'n', ndconv.set_num_threads, 0)
case(ValueError, 'n', ndconv.set_num_threads, -1)
case(TypeError, 'n', ndconv.set_num_threads, 1.5)
case(TypeError, 'n', ndconv.set_num_threads, True)
case(TypeError, 'n', ndconv.set_num_threads, None)
case(TypeError, 'n', ndconv.set_num_threads, '2')
case(TypeError, 'positional', ndconv.get_num_threads, 1)
case(TypeError, 'positional', ndconv.show_config, 1)

# ---- pooling family (once it exists) ------------------------------------------------------
POOL_CASES_START = len(CASES)


def _pool(name):
    """The pooling function ``name`` looked up at call time (absent: skip)."""
    def call(*args, **kwargs):
        fn = getattr(ndconv, name, None)
        if fn is None:
            pytest.skip('ndconv.%s does not exist yet' % name)
        return fn(*args, **kwargs)
    call.__name__ = name
    return call


mp, ap = _pool('max_pooling_nd'), _pool('average_pooling_nd')
up, mup = _pool('unpooling_nd'), _pool('max_unpooling_nd')
luk = _pool('linear_upsampling_kernel')
xu = np.ones((2, 3, 3, 3), f32)               # unpooling input: ksize 2 -> (6, 6)
idx_ok = np.zeros((2, 3, 3, 3), np.int64)

for fn in (mp, ap):
    case(ValueError, 'ksize', fn, xp, 0)
    case(ValueError, 'ksize', fn, xp, -2)
    case(TypeError, 'ksize', fn, xp, 2.0)
    case(TypeError, 'ksize', fn, xp, True)
    case(ValueError, 'ksize', fn, xp, (2,))
    case(TypeError, 'ksize', fn, xp, None)
    case(ValueError, 'stride', fn, xp, 2, stride=0)
    case(TypeError, 'stride', fn, xp, 2, stride=1.5)
    case(ValueError, 'stride', fn, xp, 2, stride=(1, 1, 1))
    case(ValueError, 'pad', fn, xp, 2, pad=-1)
    case(ValueError, 'pad', fn, xp, 2, pad='full')
    case(ValueError, 'pad[0]', fn, xp, 2, pad=((0, 1, 2), (0, 0)))
    case(TypeError, 'pad', fn, xp, 2, pad=0.5)
    case(ValueError, 'kernel', fn, xp, 7, **({} if fn is ap else {'cover_all': False}))
    case(TypeError, 'x', fn, np.ones((2, 3, 6, 6), np.int32), 2)
    case(TypeError, 'x', fn, np.ones((2, 3, 6, 6), object), 2)
    case(ValueError, 'x', fn, np.ones((2, 3), f32), 2)
    case(ValueError, 'x', fn, np.ones((2, 3, 0, 6), f32), 2)
    case(ValueError, 'stride', fn, xp, 2, stride=2 ** 62)
    case(MemoryError, 'bytes', fn, xp, 1, pad=10 ** 6)
case(TypeError, 'cover_all', mp, xp, 2, cover_all='yes')
case(TypeError, 'return_indices', mp, xp, 2, return_indices=1)
case(TypeError, 'return_indices', mp, xp, 2, return_indices=None)
case(ValueError, 'pad_value', ap, xp, 2, pad_value=1)
case(ValueError, 'pad_value', ap, xp, 2, pad_value=np.nan)
case(ValueError, 'pad_value', ap, xp, 2, pad_value='zero')
case(ValueError, 'pad_value', ap, xp, 2, pad_value=False)
case(ValueError, 'ksize', up, xu, 0)
case(TypeError, 'ksize', up, xu, 1.5)
case(ValueError, 'stride', up, xu, 2, stride=-1)
case(TypeError, 'pad', up, xu, 2, pad='same')          # unpooling takes no strings
case(ValueError, 'pad', up, xu, 2, pad=-1)
case(ValueError, 'outsize', up, xu, 2, outsize=(7, 6))
case(ValueError, 'outsize', up, xu, 2, outsize=(6,))
case(TypeError, 'outsize', up, xu, 2, outsize=6)
case(TypeError, 'cover_all', up, xu, 2, cover_all=0)
case(TypeError, 'x', up, np.ones((2, 3, 3, 3), np.int64), 2)
case(ValueError, 'x', up, np.ones(3, f32), 2)
case(MemoryError, 'bytes', up, xu, 10 ** 6)
case(TypeError, 'indices', mup, xu, idx_ok.astype(f64), 2)
case(TypeError, 'indices', mup, xu, idx_ok.astype(bool), 2)
case(TypeError, 'indices', mup, xu, None, 2)
case(ValueError, 'indices', mup, xu, idx_ok[..., :2], 2)
case(ValueError, 'indices', mup, xu, idx_ok[:1], 2)
case(ValueError, 'indices', mup, xu, idx_ok + 36, 2)           # output volume is 36
case(ValueError, 'indices', mup, xu, idx_ok - 2, 2)
case(ValueError, 'indices', mup, xu, np.full((2, 3, 3, 3), 2 ** 40), 2)
case(ValueError, 'indices', mup, xu, np.full((2, 3, 3, 3), 2 ** 64 - 1, np.uint64), 2)
case(ValueError, 'indices', mup, xu, np.full((2, 3, 3, 3), 2 ** 64 - 1, np.uint64), 2,
     stride=1)
case(ValueError, 'indices', mup, xu, np.full((2, 3, 3, 3), 2 ** 63, np.uint64), 2)
case(ValueError, 'outsize', mup, xu, idx_ok, 2, outsize=(9, 6))
case(ValueError, 'pad', mup, xu, idx_ok, 2, pad=-1)
case(TypeError, 'pad', mup, xu, idx_ok, 2, pad='valid')
case(TypeError, 'x', mup, np.ones((2, 3, 3, 3), np.int32), idx_ok, 2)
case(ValueError, 'factor', luk, 0, 2, 3)
case(TypeError, 'factor', luk, 1.5, 2, 3)
case(ValueError, 'factor', luk, (2, 2, 2), 2, 3)
case(ValueError, 'ndim', luk, 2, 0, 3)
case(TypeError, 'ndim', luk, 2, 2.0, 3)
case(ValueError, 'channels', luk, 2, 2, -1)
case(TypeError, 'channels', luk, 2, 2, None)
case(TypeError, 'dtype', luk, 2, 2, 3, dtype=np.int32)
case(TypeError, 'dtype', luk, 2, 2, 3, dtype='bogus')
case(MemoryError, 'bytes', luk, 2, 2, 2 ** 40)


# ----------------------------------------------------------------------------

def _resolve_out(args, kwargs):
    """Turn the out='x' / 'x[1:]' / 'W-buffer' markers into arrays that
    share memory with an input."""
    out = kwargs.get('out')
    if not isinstance(out, str):
        return args, kwargs
    x, W = args[0], args[1]
    kwargs = dict(kwargs)
    if out == 'x':
        kwargs['out'] = x
    elif out == 'x[1:]':
        # x of shape (1, 1, 8); its cells 1..7 seen as a (1, 1, 8) result
        # would need 8: take the same buffer shifted by one cell instead
        buf = np.ones(9, f32)
        x = buf[:8].reshape(1, 1, 8)
        kwargs['out'] = buf[1:].reshape(1, 1, 8)
    else:
        buf = np.ones(8, f32)
        W = buf[:1].reshape(1, 1, 1)
        x = buf[4:].reshape(1, 1, 4)
        kwargs['out'] = buf[:4].reshape(1, 1, 4)
    return (x, W) + tuple(args[2:]), kwargs


def _short(a):
    if isinstance(a, np.ndarray):
        return '%s%s' % (a.dtype, list(a.shape)) if a.ndim else repr(a)[:24]
    return repr(a)[:24]


def _ids():
    seen = {}
    ids = []
    for exc, word, fn, args, kwargs in CASES:
        bits = [getattr(fn, '__name__', 'fn')]
        bits += [_short(a) for a in args]
        bits += ['%s=%s' % (k, _short(v)) for k, v in kwargs.items()]
        key = '-'.join(bits)
        seen[key] = seen.get(key, 0) + 1
        ids.append(key if seen[key] == 1 else '%s#%d' % (key, seen[key]))
    return ids


# Bad calls that ndconv does not refuse yet (bugs reported, not ours to fix).
KNOWN_BUGS = {}   # case id -> reason, for bugs reported and not fixed yet


def _params():
    return [pytest.param(*c, id=i, marks=pytest.mark.xfail(reason=KNOWN_BUGS[i], strict=False))
            if i in KNOWN_BUGS else pytest.param(*c, id=i) for c, i in zip(CASES, _ids())]


@pytest.mark.parametrize('exc, word, fn, args, kwargs', _params())
def test_bad_call(exc, word, fn, args, kwargs):
    args, kwargs = _resolve_out(args, kwargs)
    # (broadcast views of huge logical size are read-only: nothing to check)
    arrays = [a for a in tuple(args) + tuple(kwargs.values())
              if isinstance(a, np.ndarray) and a is not kwargs.get('out')
              and a.size < 10 ** 7]
    before = [a.tobytes() for a in arrays]
    out = kwargs.get('out')
    out_before = out.tobytes() if isinstance(out, np.ndarray) else None
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    assert info.type is exc, 'raised %s (%s), expected %s' % (
        info.type.__name__, info.value, exc.__name__)
    assert word.lower() in str(info.value).lower(), str(info.value)
    for a, b in zip(arrays, before):
        assert a.tobytes() == b, 'an input was modified'
    if out_before is not None:
        assert out.tobytes() == out_before, 'out written on error'


def test_catalogue_size():
    """At least 150 distinct bad calls, on every public function."""
    assert len(CASES) >= 150
    assert len(set(_ids())) == len(CASES)
    names = {getattr(fn, '__name__', None) for _, _, fn, _, _ in CASES}
    for name in ('convolution_nd', 'deconvolution_nd', 'convolution_nd_grad_W',
                 'conv_outsize', 'deconv_outsize', 'set_num_threads', 'get_num_threads',
                 'show_config', 'max_pooling_nd', 'average_pooling_nd', 'unpooling_nd',
                 'max_unpooling_nd', 'linear_upsampling_kernel'):
        assert name in names, name


def test_module_arrays_untouched():
    for k, v in GLOBALS.items():
        assert np.array_equal(v, SNAPSHOT[k]), k
