"""Property-based fuzzing of every public function (issue 5).

Each example draws a shape, dtypes, memory layouts and every parameter of
one public function, valid or not, then an *oracle* written here from
API.md decides what must happen:

- a valid call returns the result of the plain NumPy reference
  (``tests/reference.py``, ``tests/reference_pooling.py``), of the right
  shape and dtype, bitwise equal when the data are small integers (every
  sum is then exact), within a rounding bound otherwise;
- an invalid call raises ``TypeError`` or ``ValueError`` (``MemoryError``
  for sizes that cannot fit) whose message names the parameter;
- nothing else: any other exception fails the example, a crash fails the
  run, and the inputs must come back unmodified, bit for bit.

The oracle collects every error the arguments deserve (the order in which
ndconv checks them is its own business) and accepts any one of them.

Budget: ``NDCONV_FUZZ_EXAMPLES`` examples per function (default 300 in the
ordinary run).  The ``slow`` long run does 12 500 per function, over 100 000
calls in all (``pytest tests/test_fuzz.py -m slow``); set
``NDCONV_FUZZ_EXAMPLES`` to change either.  The calls made are counted and
printed at the end of the module (``-s`` shows them).

Debug build: the same fuzz with Cython's bounds checks on::

    NDCONV_DEBUG=1 python3 setup.py build_ext --inplace -q
    PYTHONPATH=. python3 -m pytest tests/test_fuzz.py -m slow -s
    python3 setup.py build_ext --inplace -q      # back to the normal build

(``NDCONV_DEBUG`` only reaches a kernel whose ``# cython:`` header does not
set ``boundscheck``/``wraparound``/``initializedcheck`` itself.)  For raw
pointer accesses, which bounds checks do not see, build with
``CFLAGS='-fsanitize=address -fno-omit-frame-pointer'
LDFLAGS=-fsanitize=address`` and run pytest with
``LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0``.
"""

import collections
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndconv
import reference as R

try:
    import reference_pooling as RP
except ImportError:  # pragma: no cover - the pooling references not there yet
    RP = None

HAVE_POOLING = RP is not None and all(hasattr(ndconv, name) for name in (
    'unpooling_nd', 'max_pooling_nd', 'max_unpooling_nd', 'average_pooling_nd',
    'linear_upsampling_kernel'))

SHORT_EXAMPLES = 300
LONG_EXAMPLES = 12500

FLOATS = (np.float16, np.float32, np.float64)
BAD_DTYPES = ('int32', 'int64', 'uint8', 'bool', 'complex64', 'complex128',
              'object', 'longdouble', 'U3', 'datetime64[s]', 'timedelta64[s]')
PAD_MODES = ('constant', 'reflect', 'edge', 'wrap')
HUGE = (2 ** 62, 2 ** 63, 2 ** 64 + 3, 10 ** 30)
# An output or workspace beyond this many bytes may be refused with
# MemoryError (this machine has 24 GiB; nothing the fuzz draws comes near,
# except on purpose).
MEMORY_LIMIT = 1 << 34

CALLS = collections.Counter()
OUTCOMES = collections.Counter()


# ----------------------------------------------------------------------------
# Drawing.

class Draw:
    """Labelled draws from hypothesis' ``data`` (readable failure reports)."""

    def __init__(self, data):
        self.data = data

    def int(self, lo, hi, label=None):
        return self.data.draw(st.integers(lo, hi), label=label)

    def choice(self, seq, label=None):
        return self.data.draw(st.sampled_from(list(seq)), label=label)

    def flag(self, one_in, label=None):
        """True about once in ``one_in`` draws."""
        return self.data.draw(st.integers(0, one_in - 1), label=label) == one_in - 1


def draw_ints(d, name, n, lo, hi, bad):
    """An int-or-sequence parameter: valid (values in [lo, hi]) or, with
    ``bad``, one of the wrong forms."""
    if not bad:
        form = d.choice(['int', 'int', 'tuple', 'list', 'npint', 'array'], name + ':form')
        if form == 'int':
            return d.int(lo, hi, name)
        if form == 'npint':
            return d.choice([np.int64, np.int32, np.uint16, np.intp])(d.int(lo, hi, name))
        vals = [d.int(lo, hi, '%s[%d]' % (name, i)) for i in range(n)]
        if form == 'tuple':
            return tuple(vals)
        if form == 'list':
            return vals
        return np.array(vals, dtype=d.choice(['int64', 'int32', 'uint8']))
    form = d.choice(['zero', 'neg', 'float', 'bool', 'npbool', 'len', 'str', 'none',
                     'elem_float', 'elem_zero', 'elem_bool', 'nested', 'npfloat',
                     'floatarray', 'huge', 'bytes', 'empty', 'dict', 'complex'],
                    name + ':bad')
    ok = [d.int(lo, hi) for _ in range(n)]
    i = d.int(0, n - 1)
    if form == 'zero':
        return 0
    if form == 'neg':
        return -d.int(1, 3)
    if form == 'float':
        return float(d.choice([1.0, 2.0, 1.5]))
    if form == 'bool':
        return d.choice([True, False])
    if form == 'npbool':
        return np.bool_(True)
    if form == 'len':
        return tuple(ok) + (1,) if d.flag(2) else tuple(ok[:-1])
    if form == 'str':
        return d.choice(['1', 'same', ''])
    if form == 'none':
        return None
    if form == 'elem_float':
        ok[i] = 2.0
        return tuple(ok)
    if form == 'elem_zero':
        ok[i] = d.choice([0, -1])
        return tuple(ok)
    if form == 'elem_bool':
        ok[i] = True
        return ok
    if form == 'nested':
        return tuple((v, v) for v in ok)
    if form == 'npfloat':
        return np.float64(1)
    if form == 'floatarray':
        return np.array(ok, dtype=np.float64)
    if form == 'huge':
        h = d.choice(HUGE)
        if d.flag(2):
            return h
        ok[i] = h
        return tuple(ok)
    if form == 'bytes':
        return b'1'
    if form == 'empty':
        return ()
    if form == 'dict':
        return {'a': 1}
    return 1 + 0j


def draw_pad(d, n, strings, pmax, bad, name='pad'):
    """A pad: int, n ints, n pairs (mixed with ints), ndarrays, strings."""
    if not bad:
        form = d.choice(['int', 'int', 'ints', 'pairs', 'mixed', 'array', 'array2']
                        + ['str'] * (2 if strings else 0), name + ':form')
        if form == 'int':
            return d.int(0, pmax, name)
        if form == 'str':
            return d.choice(strings, name)
        if form == 'ints':
            return tuple(d.int(0, pmax) for _ in range(n))
        if form == 'array':
            return np.array([d.int(0, pmax) for _ in range(n)])
        if form == 'array2':
            return np.array([[d.int(0, pmax), d.int(0, pmax)] for _ in range(n)])
        pairs = [(d.int(0, pmax), d.int(0, pmax)) for _ in range(n)]
        if form == 'mixed':
            return [list(p) if d.flag(2) else p[0] for p in pairs]
        return tuple(pairs)
    form = d.choice(['neg', 'negpair', 'pair3', 'pair1', 'float', 'bool', 'len',
                     'n1pair', 'badstr', 'otherstr', 'bytes', 'none', 'huge',
                     'strelem', 'floatpair', 'boolpair', 'dict'], name + ':bad')
    pairs = [(d.int(0, pmax), d.int(0, pmax)) for _ in range(n)]
    i = d.int(0, n - 1)
    if form == 'neg':
        return -d.int(1, 2)
    if form == 'negpair':
        pairs[i] = (pairs[i][0], -1)
        return tuple(pairs)
    if form == 'pair3':
        pairs[i] = (1, 1, 1)
        return tuple(pairs)
    if form == 'pair1':
        pairs[i] = (1,)
        return tuple(pairs)
    if form == 'float':
        return 1.0
    if form == 'bool':
        return True
    if form == 'len':
        return tuple(pairs) + ((0, 0),) if d.flag(2) else tuple(pairs[:-1])
    if form == 'n1pair':
        # (lo, hi) written without the outer tuple: n = 1 only, else a pair
        # per axis of the wrong length
        return (1, 2) if n == 1 else ((1, 2, 0),) * n
    if form == 'badstr':
        return d.choice(['SAME', 'bogus', '', 'valid '])
    if form == 'otherstr':
        others = [s for s in ('valid', 'same', 'full') if s not in strings]
        return d.choice(others) if others else 'circular'
    if form == 'bytes':
        return b'same'
    if form == 'none':
        return None
    if form == 'huge':
        h = d.choice(HUGE)
        if d.flag(2):
            return h
        pairs[i] = (0, h)
        return tuple(pairs)
    if form == 'strelem':
        pairs[i] = 'same'
        return tuple(pairs)
    if form == 'floatpair':
        pairs[i] = (1.0, 0)
        return tuple(pairs)
    if form == 'boolpair':
        pairs[i] = (0, False)
        return tuple(pairs)
    return {0: 1}


def draw_bool(d, name, bad):
    if not bad:
        return d.choice([True, False, np.bool_(True), np.bool_(False)], name)
    return d.choice([1, 0, 'yes', None, 1.0, np.array([True, False])], name + ':bad')


def base_values(rng, shape, exact):
    if exact:
        return rng.integers(-3, 4, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


def with_layout(a, kind):
    """The same values in another memory layout (a view where possible)."""
    if a.ndim == 0:
        return a
    if kind == 'F':
        return np.asfortranarray(a)
    if kind == 'strided':
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == 'neg':
        rev = (slice(None, None, -1),) * a.ndim
        return a[rev].copy()[rev]
    if kind == 'readonly':
        b = a.copy()
        b.flags.writeable = False
        return b
    if kind == 'broadcast':
        if a.ndim and a.shape[0] > 1:
            return np.broadcast_to(a[:1], a.shape)
        return a
    if kind == 'list':
        return a.tolist() if a.dtype == np.float64 else a
    return a


def draw_array(d, rng, name, shape, dtype, exact, bad=False):
    """A float array of ``shape`` in a drawn layout, or (``bad``) an array
    of a wrong dtype, a wrong number of dimensions, an empty spatial axis or
    a non-array."""
    a = base_values(rng, shape, exact).astype(dtype)
    if bad:
        form = d.choice(['dtype', 'dtype', 'ndim0', 'ndim1', 'ndim2', 'extra', 'empty',
                         'none', 'ragged', 'str'], name + ':bad')
        if form == 'dtype':
            dt = d.choice(BAD_DTYPES, name + ':dtype')
            if dt in ('object', 'bool') or dt.startswith(('int', 'uint', 'complex')):
                return a.astype(dt)
            return np.zeros(shape, dt)
        if form == 'ndim0':
            return np.array(1.0, dtype)
        if form == 'ndim1':
            return np.ones(3, dtype)
        if form == 'ndim2':
            return np.ones((2, 3), dtype)
        if form == 'extra':
            return a[..., None]
        if form == 'empty':
            if len(shape) > 2:
                ax = d.int(2, len(shape) - 1)
                return np.ones(shape[:ax] + (0,) + shape[ax + 1:], dtype)
            return np.ones((0,), dtype)
        if form == 'none':
            return None
        if form == 'ragged':
            return [[1.0, 2.0], [3.0]]
        return 'x'
    kind = d.choice(['C', 'C', 'C', 'F', 'strided', 'neg', 'readonly', 'broadcast', 'list'],
                    name + ':layout')
    return with_layout(a, kind)


# ----------------------------------------------------------------------------
# The oracle: what API.md says about a set of arguments.

class Expect:
    """Every error a call deserves, as (exception types, words of which the
    message must contain one)."""

    def __init__(self):
        self.errors = []
        self.absurd = False

    def add(self, types, *words):
        if not isinstance(types, tuple):
            types = (types,)
        self.errors.append((types, words))

    def __bool__(self):
        return bool(self.errors)

    def accepts(self, exc):
        msg = str(exc)
        for types, words in self.errors:
            if type(exc) in types and any(w in msg for w in words):
                return True
        if self.absurd and type(exc) in (ValueError, MemoryError):
            return True
        return False


def p_int(v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        return None
    return int(v)


def is_seq(v):
    return isinstance(v, (tuple, list)) or (isinstance(v, np.ndarray) and v.ndim > 0)


def p_ints(E, v, n, name, minimum=1):
    """The n-tuple an int-or-sequence parameter stands for, or None (and
    the errors it deserves in E)."""
    if is_seq(v):
        items = list(v)
        if len(items) != n:
            E.add(ValueError, name)
            return None
        vals = [p_int(i) for i in items]
        bad = False
        if any(x is None for x in vals):
            E.add(TypeError, name)
            bad = True
        if any(x is not None and x < minimum for x in vals):
            E.add(ValueError, name)
            bad = True
        return None if bad else tuple(vals)
    i = p_int(v)
    if i is None:
        E.add(TypeError, name)
        return None
    if i < minimum:
        E.add(ValueError, name)
        return None
    return (i,) * n


def p_pad(E, v, n, strings, name='pad'):
    """(lo, hi) pairs or an accepted string; None (and errors) otherwise."""
    if isinstance(v, str):
        if v in strings:
            return v
        E.add((ValueError, TypeError), name)
        return None
    if is_seq(v):
        items = list(v)
        if len(items) != n:
            E.add(ValueError, name)
            return None
        pairs, bad = [], False
        for it in items:
            if is_seq(it):
                sub = list(it)
                if len(sub) != 2:
                    E.add(ValueError, name)
                    bad = True
                    continue
                lo, hi = p_int(sub[0]), p_int(sub[1])
            else:
                lo = hi = p_int(it)
            if lo is None or hi is None:
                E.add(TypeError, name)
                bad = True
            elif lo < 0 or hi < 0:
                E.add(ValueError, name)
                bad = True
            else:
                pairs.append((lo, hi))
        return None if bad else tuple(pairs)
    i = p_int(v)
    if i is None:
        E.add(TypeError, name)
        return None
    if i < 0:
        E.add(ValueError, name)
        return None
    return ((i, i),) * n


def p_bool(E, v, name):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    E.add(TypeError, name)
    return None


def p_array(E, v, name):
    """The float ndarray behind ``v``, or None (TypeError)."""
    if v is None:
        E.add(TypeError, name)
        return None
    try:
        a = np.asarray(v)
    except ValueError:
        E.add(TypeError, name)
        return None
    if a.dtype.type not in FLOATS:
        E.add(TypeError, name)
        return None
    return a


def p_spatial(E, v, name):
    """The main input: float, (N, C, D1..Dn), every Di >= 1."""
    a = p_array(E, v, name)
    if a is None:
        return None
    if a.ndim < 3 or 0 in a.shape[2:]:
        E.add(ValueError, name)
        return None
    return a


def p_outsize(E, v, n, name='outsize'):
    if v is None:
        return None
    if not is_seq(v):
        E.add(TypeError, name)
        return False
    r = p_ints(E, v, n, name)
    return False if r is None else r


def _leaves(v):
    if isinstance(v, (tuple, list)) or (isinstance(v, np.ndarray) and v.ndim):
        for item in v:
            yield from _leaves(item)
    else:
        yield v


def mark_absurd(E, *values):
    """A parameter of absurd size: refusing it (ValueError or MemoryError)
    is always right; a result, if any, is not checked further."""
    for v in values:
        if any(p_int(x) is not None and abs(p_int(x)) > 2 ** 40 for x in _leaves(v)):
            E.absurd = True


GEOMETRY_WORDS = ('kernel', 'ksize', 'pad', 'stride', 'dilate', 'W', 'output', 'size')


def check_memory(E, shape, itemsize):
    nbytes = itemsize
    for s in shape:
        nbytes *= int(s)
    if nbytes > MEMORY_LIMIT:
        E.add((MemoryError, ValueError), 'bytes', 'memory', 'large')
        return False
    return True


def p_out(E, out, shape, dtype, inputs):
    """``out=``: a writeable C-contiguous array of the result's shape and
    dtype sharing no memory with an input; anything else is a ValueError."""
    if out is None:
        return
    if (not isinstance(out, np.ndarray) or out.shape != tuple(shape)
            or out.dtype != dtype or not out.flags.c_contiguous
            or not out.flags.writeable):
        E.add(ValueError, 'out')
        return
    for a in inputs:
        if isinstance(a, np.ndarray) and np.shares_memory(a, out):
            E.add(ValueError, 'out')
            return


# ----------------------------------------------------------------------------
# Running a call and judging the outcome.

def snapshot(values):
    snap = []
    for v in values:
        if isinstance(v, np.ndarray):
            snap.append((v, v.tobytes(), v.shape, v.dtype))
        else:
            snap.append((v, repr(v), None, None))
    return snap


def assert_unchanged(snap):
    for v, before, shape, dtype in snap:
        if shape is not None:
            assert v.shape == shape and v.dtype == dtype and v.tobytes() == before, \
                'an input was modified'
        else:
            assert repr(v) == before, 'an input was modified'


def judge(name, call, E, inputs, check):
    """Call; an expected error must come with an accepted type and word,
    a result must pass ``check``; the inputs must be unchanged."""
    snap = snapshot(inputs)
    CALLS[name] += 1
    try:
        result = call()
    except (TypeError, ValueError, MemoryError) as exc:
        OUTCOMES[type(exc).__name__] += 1
        assert E or E.absurd, 'valid call raised %s: %s' % (type(exc).__name__, exc)
        assert E.accepts(exc), 'raised %s: %s; expected one of %r' % (
            type(exc).__name__, exc, E.errors)
        assert_unchanged(snap)
        return None
    OUTCOMES['result'] += 1
    assert not E, 'expected one of %r, got a result' % (E.errors,)
    assert_unchanged(snap)
    check(result)
    return result


def assert_values(res, ref, rt, exact, absref=None):
    """Bitwise (small-integer data: every sum exact) or within a rounding
    bound of the float64 reference."""
    assert res.dtype == rt, (res.dtype, rt)
    assert res.shape == ref.shape, (res.shape, ref.shape)
    if exact:
        np.testing.assert_array_equal(res, ref.astype(rt))
        return
    ct = np.float32 if rt == np.float16 else rt
    if absref is None:
        absref = np.abs(ref)
    tol = (64 * np.finfo(ct).eps * absref + 2 * np.finfo(rt).eps * np.abs(ref)
           + np.finfo(rt).tiny)
    err = np.abs(res.astype(np.float64) - ref)
    both_nan = np.isnan(ref) & np.isnan(res)
    bad = ~((err <= tol) | both_nan)
    assert not bad.any(), 'max error %g (tolerance %g) at %s' % (
        err[bad].max(), tol[bad].max(), np.argwhere(bad)[:3].tolist())


def assert_shape_only(res, shape, rt):
    assert res.shape == tuple(shape) and res.dtype == rt


def draw_out(d, rng, shape, dtype, inputs):
    """``out=``: omitted mostly; a good one (filled with garbage); or one of
    the wrong kinds (wrong shape, dtype, order, read-only, a list, or
    memory shared with ``inputs[0]``)."""
    form = d.choice(['none'] * 5 + ['good'] * 3 + ['overlap'] * 2 + [
        'shape', 'dtype', 'F', 'strided', 'readonly', 'list'], 'out')
    if form == 'none' or shape is None:
        return None
    shape = tuple(shape)
    if form == 'good':
        out = np.empty(shape, dtype)
        out[...] = np.nan
        return out
    if form == 'shape':
        return np.empty(shape[:-1] + (shape[-1] + 1,), dtype)
    if form == 'dtype':
        return np.empty(shape, np.float64 if dtype != np.float64 else np.float32)
    if form == 'F':
        if sum(s > 1 for s in shape) < 2:
            return np.empty(shape, dtype)     # F and C at once: a good one
        return np.asfortranarray(np.empty(shape, dtype))
    if form == 'strided':
        return np.empty(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
    if form == 'readonly':
        out = np.zeros(shape, dtype)
        out.flags.writeable = False
        return out
    if form == 'list':
        return np.zeros(shape, dtype).tolist()
    # shares memory with an input: the output's bytes start where the
    # input's start (inputs that are not C-contiguous ndarrays, or too
    # small, are copied into a buffer that is big enough first)
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    cands = [i for i, a in enumerate(inputs) if isinstance(a, np.ndarray) and a.size]
    if need == 0 or not cands:
        return None
    i = d.choice(cands, 'out:aliases')
    a = inputs[i]
    if a.flags.c_contiguous and a.flags.writeable and a.nbytes >= need:
        buf = np.frombuffer(a.data, dtype=np.uint8)
    else:
        buf = np.zeros(max(need, a.nbytes), np.uint8)
        alias = buf[:a.nbytes].view(a.dtype).reshape(a.shape)
        alias[...] = a
        inputs[i] = alias
    return buf[:need].view(dtype).reshape(shape)


def set_threads(d):
    t = d.choice([None, None, 1, 2], 'threads')
    if t is not None:
        ndconv.set_num_threads(t)


# ----------------------------------------------------------------------------
# One fuzz case per public function.

def spatial_dims(d, n, big=False):
    top = ({1: 70, 2: 16, 3: 7} if big else {1: 7, 2: 5, 3: 4}).get(n, 3)
    return tuple(d.int(1, top, 'D%d' % i) for i in range(n))


def kernel_dims(d, n, big=False):
    return tuple(d.int(1, 5 if big else 3, 'k%d' % i) for i in range(n))


def conv_channels(d):
    """(big, groups, in and out channels per group): mostly a few, now and
    then (``big``) more channels and bigger volumes, whose outputs span
    several tiles of the GEMM kernels."""
    big = d.flag(6, 'big')
    g = 1 if big and d.flag(2) else d.int(1, 3, 'groups')
    top = 9 if big else 3
    cig = d.int(0 if d.flag(8) else 1, top, 'cig')
    cog = d.int(0 if d.flag(8) else 1, top, 'cog')
    return big, g, cig, cog


def pick_bad(d, names):
    """The parameter drawn wrong in this example (None, two times in three:
    all drawn right)."""
    return d.choice([None] * (2 * len(names)) + list(names), 'bad')


def fuzz_convolution_nd(d):
    rng = np.random.default_rng(d.int(0, 2 ** 32 - 1, 'seed'))
    exact = not d.flag(5, 'float data')
    n = d.choice([1, 1, 2, 2, 3, 4], 'n')
    bad = pick_bad(d, ['x', 'W', 'b', 'stride', 'pad', 'cover_all', 'dilate', 'groups',
                       'input_dilate', 'pad_mode', 'channels'])
    big, g, cig, cog = conv_channels(d)
    N = d.int(0 if d.flag(8) else 1, 2, 'N')
    sizes, ksize = spatial_dims(d, n, big), kernel_dims(d, n, big)
    dts = [d.choice(FLOATS, 'dtype')] * 3
    if d.flag(4):
        dts = [d.choice(FLOATS, 'dtype %d' % i) for i in range(3)]
    x = draw_array(d, rng, 'x', (N, g * cig) + sizes, dts[0], exact, bad == 'x')
    W = draw_array(d, rng, 'W', (g * cog, cig) + ksize, dts[1], exact, bad == 'W')
    if bad == 'channels':
        W = base_values(rng, (g * cog, cig + 1) + ksize, exact).astype(dts[1])
    kwargs = {}
    if d.flag(2) or bad == 'b':
        shape = (g * cog,) if bad != 'b' else d.choice([(g * cog + 1,), (g * cog, 1), ()])
        kwargs['b'] = draw_array(d, rng, 'b', shape, dts[2], exact, bad == 'b' and d.flag(2))
    params = [('stride', lambda b: draw_ints(d, 'stride', n, 1, 3, b)),
              ('pad', lambda b: draw_pad(d, n, ('valid', 'same', 'full'), 2, b)),
              ('cover_all', lambda b: draw_bool(d, 'cover_all', b)),
              ('dilate', lambda b: draw_ints(d, 'dilate', n, 1, 2, b)),
              ('groups', lambda b: g if not b else d.choice(
                  [0, -1, g + 1, 2 * g, float(g), True, None, str(g)], 'groups:bad')),
              ('input_dilate', lambda b: draw_ints(d, 'input_dilate', n, 1, 3, b)),
              ('pad_mode', lambda b: d.choice(PAD_MODES, 'pad_mode') if not b else d.choice(
                  ['zeros', 'Reflect', 'symmetric', None, 0, b'edge'], 'pad_mode:bad'))]
    for name, draw in params:
        if name == 'groups' and g > 1 or name == bad or not d.flag(3):
            kwargs[name] = draw(name == bad)
    if (kwargs.get('pad_mode', 'constant') != 'constant' and bad != 'input_dilate'
            and not d.flag(3)):
        kwargs.pop('input_dilate', None)     # mostly, the combination that works
    # The oracle.
    E = Expect()
    xa = p_spatial(E, x, 'x')
    if xa is not None:   # an extra axis makes a valid x of another n
        n, sizes = xa.ndim - 2, xa.shape[2:]
    Wa = p_array(E, W, 'W')
    ba = None if kwargs.get('b') is None else p_array(E, kwargs['b'], 'b')
    stride = p_ints(E, kwargs.get('stride', 1), n, 'stride')
    dilate = p_ints(E, kwargs.get('dilate', 1), n, 'dilate')
    idil = p_ints(E, kwargs.get('input_dilate', 1), n, 'input_dilate')
    cover_all = p_bool(E, kwargs.get('cover_all', False), 'cover_all')
    pads = p_pad(E, kwargs.get('pad', 0), n, ('valid', 'same', 'full'))
    mark_absurd(E, kwargs.get('stride'), kwargs.get('dilate'), kwargs.get('input_dilate'),
                kwargs.get('pad'))
    mode = kwargs.get('pad_mode', 'constant')
    if not isinstance(mode, str):
        E.add(TypeError, 'pad_mode')
    elif mode not in PAD_MODES:
        E.add(ValueError, 'pad_mode')
    elif mode != 'constant' and idil is not None and max(idil) > 1:
        E.add(ValueError, 'pad_mode', 'input_dilate')
    gg = p_int(kwargs.get('groups', 1))
    if gg is None:
        E.add(TypeError, 'groups')
    elif gg < 1:
        E.add(ValueError, 'groups')
    C_out = None
    if xa is not None and Wa is not None:
        if Wa.ndim != xa.ndim or 0 in Wa.shape[2:]:
            E.add(ValueError, 'W')
        elif gg is not None and gg >= 1:
            C_out = Wa.shape[0]
            if xa.shape[1] % gg or C_out % gg:
                E.add(ValueError, 'groups')
            elif Wa.shape[1] * gg != xa.shape[1]:
                E.add(ValueError, 'W', 'groups')
    if ba is not None and C_out is not None and ba.shape != (C_out,):
        E.add(ValueError, 'b')
    shape = None
    if not E and not E.absurd:
        pairs, is_str = R.conv_pads(pads, sizes, ksize, stride, dilate, idil)
        osz = tuple(R.conv_axis_out(D, k, s, lo, hi, cover_all and not is_str, dd, r)
                    for D, k, s, (lo, hi), dd, r in zip(sizes, ksize, stride, pairs,
                                                         dilate, idil))
        if min(osz) < 1:
            E.add(ValueError, *GEOMETRY_WORDS)
        else:
            shape = (N, C_out) + osz
    rt = None
    if not E and shape is not None:
        rt = np.result_type(*[a for a in (xa, Wa, ba) if a is not None])
        check_memory(E, shape, 4 if rt == np.float16 else rt.itemsize)
        ins = [x, W, kwargs.get('b')]
        out = draw_out(d, rng, shape, rt, ins)
        x, W = ins[:2]
        if ins[2] is not None:
            kwargs['b'] = ins[2]
        if out is not None:
            kwargs['out'] = out
            p_out(E, out, shape, rt, [x, W, kwargs.get('b')])
    set_threads(d)

    def check(res):
        if 'out' in kwargs:
            assert res is kwargs['out']
        if E.absurd or shape is None:
            return
        ref = R.conv_nd_ref(xa, Wa, ba, stride, pads, dilate, idil, mode, cover_all, gg)
        absref = None if exact else R.conv_nd_ref(
            np.abs(xa), np.abs(Wa), None if ba is None else np.abs(ba), stride, pads,
            dilate, idil, mode, cover_all, gg)
        assert_values(res, ref, rt, exact, absref)

    judge('convolution_nd', lambda: ndconv.convolution_nd(x, W, **kwargs), E,
          [x, W] + [v for k, v in kwargs.items() if k != 'out'], check)


def fuzz_deconvolution_nd(d):
    rng = np.random.default_rng(d.int(0, 2 ** 32 - 1, 'seed'))
    exact = not d.flag(5, 'float data')
    n = d.choice([1, 1, 2, 2, 3], 'n')
    bad = pick_bad(d, ['x', 'W', 'b', 'stride', 'pad', 'dilate', 'groups', 'outsize',
                       'channels'])
    big, g, cig, cog = conv_channels(d)
    N = d.int(0 if d.flag(8) else 1, 2, 'N')
    sizes, ksize = spatial_dims(d, n, big), kernel_dims(d, n, big)
    dts = [d.choice(FLOATS, 'dtype')] * 3
    if d.flag(4):
        dts = [d.choice(FLOATS, 'dtype %d' % i) for i in range(3)]
    x = draw_array(d, rng, 'x', (N, g * cig) + sizes, dts[0], exact, bad == 'x')
    W = draw_array(d, rng, 'W', (g * cig, cog) + ksize, dts[1], exact, bad == 'W')
    if bad == 'channels':
        W = base_values(rng, (g * cig + 1, cog) + ksize, exact).astype(dts[1])
    kwargs = {}
    if d.flag(2) or bad == 'b':
        shape = (g * cog,) if bad != 'b' else d.choice([(g * cog + 1,), (g * cog, 1), ()])
        kwargs['b'] = draw_array(d, rng, 'b', shape, dts[2], exact, bad == 'b' and d.flag(2))
    for name, draw in [('stride', lambda b: draw_ints(d, 'stride', n, 1, 3, b)),
                       ('pad', lambda b: draw_pad(d, n, ('valid', 'same'), 2, b)),
                       ('dilate', lambda b: draw_ints(d, 'dilate', n, 1, 2, b)),
                       ('groups', lambda b: g if not b else d.choice(
                           [0, -2, g + 1, 2.0, True, None], 'groups:bad'))]:
        if name == 'groups' and g > 1 or name == bad or not d.flag(3):
            kwargs[name] = draw(name == bad)
    E = Expect()
    xa = p_spatial(E, x, 'x')
    if xa is not None:   # an extra axis makes a valid x of another n
        n, sizes = xa.ndim - 2, xa.shape[2:]
    Wa = p_array(E, W, 'W')
    ba = None if kwargs.get('b') is None else p_array(E, kwargs['b'], 'b')
    stride = p_ints(E, kwargs.get('stride', 1), n, 'stride')
    dilate = p_ints(E, kwargs.get('dilate', 1), n, 'dilate')
    pads = p_pad(E, kwargs.get('pad', 0), n, ('valid', 'same'))
    mark_absurd(E, kwargs.get('stride'), kwargs.get('dilate'), kwargs.get('pad'))
    gg = p_int(kwargs.get('groups', 1))
    if gg is None:
        E.add(TypeError, 'groups')
    elif gg < 1:
        E.add(ValueError, 'groups')
    C_out = None
    if xa is not None and Wa is not None:
        if Wa.ndim != xa.ndim or 0 in Wa.shape[2:] or Wa.shape[0] != xa.shape[1]:
            E.add(ValueError, 'W')
        elif gg is not None and gg >= 1:
            if xa.shape[1] % gg:
                E.add(ValueError, 'groups')
            else:
                C_out = Wa.shape[1] * gg
    if ba is not None and C_out is not None and ba.shape != (C_out,):
        E.add(ValueError, 'b')
    # outsize: None, or drawn around the default (on both sides of the
    # valid range), or a wrong form.
    outsize = None
    if not E and not E.absurd:
        pairs, same = R.deconv_pads(pads, ksize, stride, dilate)
        default = R.deconv_out_shape(sizes, ksize, stride, pads, dilate)
        if bad == 'outsize' or d.flag(3):
            if bad == 'outsize' and d.flag(2):
                outsize = d.choice([5, 'ab', (1.5,) * n, (True,) * n, (0,) * n, (-1,) * n,
                                    tuple(default) + (1,)], 'outsize:bad')
            else:
                outsize = tuple(o + d.int(-s - 1, s + 1, 'outsize%d' % i)
                                for i, (o, s) in enumerate(zip(default, stride)))
            kwargs['outsize'] = outsize
    osz = p_outsize(E, outsize, n)
    shape = None
    if not E and not E.absurd:
        if osz is None:
            if min(default) < 1:
                E.add(ValueError, *GEOMETRY_WORDS)
            else:
                osz = default
        else:
            for D, k, s, (lo, hi), dd, o in zip(sizes, ksize, stride, pairs, dilate, osz):
                low, high = R.deconv_outsize_range(D, k, s, lo, hi, dd)
                if not low <= o <= high:
                    E.add(ValueError, 'outsize')
        if not E:
            shape = (N, C_out) + tuple(osz)
    rt = None
    if not E and shape is not None:
        rt = np.result_type(*[a for a in (xa, Wa, ba) if a is not None])
        check_memory(E, shape, 4 if rt == np.float16 else rt.itemsize)
        ins = [x, W, kwargs.get('b')]
        out = draw_out(d, rng, shape, rt, ins)
        x, W = ins[:2]
        if ins[2] is not None:
            kwargs['b'] = ins[2]
        if out is not None:
            kwargs['out'] = out
            p_out(E, out, shape, rt, [x, W, kwargs.get('b')])
    set_threads(d)

    def check(res):
        if 'out' in kwargs:
            assert res is kwargs['out']
        if E.absurd or shape is None:
            return
        ref = R.deconv_nd_ref(xa, Wa, ba, stride, pads, osz, dilate, gg)
        absref = None if exact else R.deconv_nd_ref(
            np.abs(xa), np.abs(Wa), None if ba is None else np.abs(ba), stride, pads,
            osz, dilate, gg)
        assert_values(res, ref, rt, exact, absref)

    judge('deconvolution_nd', lambda: ndconv.deconvolution_nd(x, W, **kwargs), E,
          [x, W] + [v for k, v in kwargs.items() if k != 'out'], check)


def fuzz_convolution_nd_grad_W(d):
    rng = np.random.default_rng(d.int(0, 2 ** 32 - 1, 'seed'))
    exact = not d.flag(5, 'float data')
    n = d.choice([1, 1, 2, 2, 3], 'n')
    bad = pick_bad(d, ['x', 'gy', 'ksize', 'stride', 'pad', 'cover_all', 'dilate',
                       'groups', 'input_dilate'])
    big, g, cig, cog = conv_channels(d)
    N = d.int(0 if d.flag(8) else 1, 2, 'N')
    sizes, ksize_v = spatial_dims(d, n, big), kernel_dims(d, n, big)
    dts = [d.choice(FLOATS, 'dtype')] * 2
    if d.flag(4):
        dts = [d.choice(FLOATS, 'dtype %d' % i) for i in range(2)]
    x = draw_array(d, rng, 'x', (N, g * cig) + sizes, dts[0], exact, bad == 'x')
    ksize = (ksize_v if bad != 'ksize' and d.flag(2)
             else draw_ints(d, 'ksize', n, 1, 3, bad == 'ksize'))
    kwargs = {}
    for name, draw in [('stride', lambda b: draw_ints(d, 'stride', n, 1, 3, b)),
                       ('pad', lambda b: draw_pad(d, n, ('valid', 'same', 'full'), 2, b)),
                       ('cover_all', lambda b: draw_bool(d, 'cover_all', b)),
                       ('dilate', lambda b: draw_ints(d, 'dilate', n, 1, 2, b)),
                       ('groups', lambda b: g if not b else d.choice(
                           [0, -1, g + 1, 1.0, True], 'groups:bad')),
                       ('input_dilate', lambda b: draw_ints(d, 'input_dilate', n, 1, 3, b))]:
        if name == 'groups' and g > 1 or name == bad or not d.flag(3):
            kwargs[name] = draw(name == bad)
    E = Expect()
    xa = p_spatial(E, x, 'x')
    if xa is not None:   # an extra axis makes a valid x of another n
        n, sizes = xa.ndim - 2, xa.shape[2:]
    ks = p_ints(E, ksize, n, 'ksize')
    stride = p_ints(E, kwargs.get('stride', 1), n, 'stride')
    dilate = p_ints(E, kwargs.get('dilate', 1), n, 'dilate')
    idil = p_ints(E, kwargs.get('input_dilate', 1), n, 'input_dilate')
    cover_all = p_bool(E, kwargs.get('cover_all', False), 'cover_all')
    pads = p_pad(E, kwargs.get('pad', 0), n, ('valid', 'same', 'full'))
    mark_absurd(E, ksize, kwargs.get('stride'), kwargs.get('dilate'),
                kwargs.get('input_dilate'), kwargs.get('pad'))
    gg = p_int(kwargs.get('groups', 1))
    if gg is None:
        E.add(TypeError, 'groups')
    elif gg < 1:
        E.add(ValueError, 'groups')
    # gy: the convolution's output shape (when the arguments have one), or
    # a wrong one.
    osz = None
    if None not in (ks, stride, dilate, idil, cover_all, pads) and not E.absurd:
        pairs, is_str = R.conv_pads(pads, sizes, ks, stride, dilate, idil)
        osz = tuple(R.conv_axis_out(D, k, s, lo, hi, cover_all and not is_str, dd, r)
                    for D, k, s, (lo, hi), dd, r in zip(sizes, ks, stride, pairs,
                                                         dilate, idil))
    gshape = (N, g * cog) + (osz if osz and min(osz) >= 1 else (1,) * n)
    gform = 'ok' if bad != 'gy' else d.choice(['batch', 'spatial', 'ndim', 'array'], 'gy:bad')
    if gform == 'batch':
        gshape = (N + 1,) + gshape[1:]
    elif gform == 'spatial':
        gshape = gshape[:-1] + (gshape[-1] + 1,)
    elif gform == 'ndim':
        gshape = gshape[:-1]
    gy = draw_array(d, rng, 'gy', gshape, dts[1], exact, gform == 'array')
    gya = p_array(E, gy, 'gy')
    if xa is not None and gya is not None:
        if gya.ndim != xa.ndim or gya.shape[0] != xa.shape[0]:
            E.add(ValueError, 'gy')
        elif gg is not None and gg >= 1 and (xa.shape[1] % gg or gya.shape[1] % gg):
            E.add(ValueError, 'groups')
    shape = None
    if not E and not E.absurd:
        if min(osz) < 1:
            E.add(ValueError, *GEOMETRY_WORDS)
        elif gya.shape[2:] != osz:
            E.add(ValueError, 'gy')
        else:
            shape = (gya.shape[1], xa.shape[1] // gg) + ks
            rt = np.result_type(xa, gya)
            check_memory(E, shape, 4 if rt == np.float16 else rt.itemsize)
    set_threads(d)

    def check(res):
        if E.absurd or shape is None:
            return
        ref = R.conv_grad_w_ref(xa, gya, ks, stride, pads, cover_all, dilate, gg, idil)
        absref = None if exact else R.conv_grad_w_ref(
            np.abs(xa), np.abs(gya), ks, stride, pads, cover_all, dilate, gg, idil)
        assert_values(res, ref, rt, exact, absref)

    judge('convolution_nd_grad_W',
          lambda: ndconv.convolution_nd_grad_W(x, gy, ksize, **kwargs), E,
          [x, gy, ksize] + list(kwargs.values()), check)


def fuzz_outsize_helpers(d):
    deconv = d.flag(2, 'deconv')
    n = d.int(1, 4, 'n')
    bad = pick_bad(d, ['size', 'ksize', 'stride', 'pad', 'dilate']
                   + ([] if deconv else ['cover_all', 'input_dilate']))
    if bad == 'size':
        size = d.choice([5, None, (), [0] * n, [3] * (n - 1) + [1.5], 'abc',
                         [-2] * n, [True] * n], 'size:bad')
    else:
        size = tuple(d.int(1, 9, 'size%d' % i) for i in range(n))
        if d.flag(3):
            size = list(size) if d.flag(2) else np.array(size)
    kwargs = {'ksize': draw_ints(d, 'ksize', n, 1, 5, bad == 'ksize')}
    strings = ('valid', 'same') if deconv else ('valid', 'same', 'full')
    params = [('stride', lambda b: draw_ints(d, 'stride', n, 1, 4, b)),
              ('pad', lambda b: draw_pad(d, n, strings, 3, b)),
              ('dilate', lambda b: draw_ints(d, 'dilate', n, 1, 3, b))]
    if not deconv:
        params += [('cover_all', lambda b: draw_bool(d, 'cover_all', b)),
                   ('input_dilate', lambda b: draw_ints(d, 'input_dilate', n, 1, 3, b))]
    for name, draw in params:
        if name == bad or not d.flag(2):
            kwargs[name] = draw(name == bad)
    E = Expect()
    if not is_seq(size):
        E.add(TypeError, 'size')
        sz = None
    elif len(size) == 0:
        E.add(ValueError, 'size')
        sz = None
    else:
        sz = p_ints(E, size, len(size), 'size')
    m = len(size) if is_seq(size) and len(size) else n
    ks = p_ints(E, kwargs['ksize'], m, 'ksize')
    stride = p_ints(E, kwargs.get('stride', 1), m, 'stride')
    dilate = p_ints(E, kwargs.get('dilate', 1), m, 'dilate')
    pads = p_pad(E, kwargs.get('pad', 0), m, strings)
    mark_absurd(E, kwargs['ksize'], kwargs.get('stride'), kwargs.get('dilate'),
                kwargs.get('pad'), kwargs.get('input_dilate'))
    if not deconv:
        idil = p_ints(E, kwargs.get('input_dilate', 1), m, 'input_dilate')
        cover_all = p_bool(E, kwargs.get('cover_all', False), 'cover_all')
    expected = None
    if not E and not E.absurd:
        if deconv:
            expected = R.deconv_out_shape(sz, ks, stride, pads, dilate)
        else:
            expected = R.conv_out_shape(sz, ks, stride, pads, cover_all, dilate, idil)
        if min(expected) < 1:
            E.add(ValueError, *GEOMETRY_WORDS)

    def check(res):
        assert isinstance(res, tuple) and all(type(v) is int for v in res), res
        if expected is not None:
            assert res == expected, (res, expected)

    fn = ndconv.deconv_outsize if deconv else ndconv.conv_outsize
    judge(fn.__name__, lambda: fn(size, **kwargs), E, [size] + list(kwargs.values()),
          check)


def fuzz_threads(d):
    before = ndconv.get_num_threads()
    v = d.choice([1, 2, 3, np.int64(2), 0, -1, 1.0, True, None, '2', np.float32(2)],
                 'n')
    E = Expect()
    i = p_int(v)
    if i is None:
        E.add(TypeError, 'n')
    elif i < 1:
        E.add(ValueError, 'n')
    try:
        def check(_):
            assert ndconv.get_num_threads() == i
        judge('set_num_threads', lambda: ndconv.set_num_threads(v), E, [v], check)
        CALLS['get_num_threads'] += 1
        assert type(ndconv.get_num_threads()) is int
    finally:
        ndconv.set_num_threads(before)


# ---- pooling family ---------------------------------------------------------

def p_pool_common(E, x, ksize, stride, n):
    xa = p_spatial(E, x, 'x')
    if xa is not None:   # an extra axis makes a valid x of another n
        n = xa.ndim - 2
    ks = p_ints(E, ksize, n, 'ksize')
    st_ = ks if stride is None else p_ints(E, stride, n, 'stride')
    mark_absurd(E, ksize, stride)
    return xa, ks, st_


def draw_pool_args(d, n, bad, strings):
    kw = {}
    if bad == 'stride' or d.flag(2):
        kw['stride'] = None if d.flag(4) and bad != 'stride' else draw_ints(
            d, 'stride', n, 1, 3, bad == 'stride')
    if bad == 'pad' or d.flag(2):
        kw['pad'] = draw_pad(d, n, strings, 2, bad == 'pad')
    return kw


def fuzz_max_pooling_nd(d):
    rng = np.random.default_rng(d.int(0, 2 ** 32 - 1, 'seed'))
    exact = not d.flag(5, 'float data')
    n = d.choice([1, 1, 2, 2, 3, 4], 'n')
    bad = pick_bad(d, ['x', 'ksize', 'stride', 'pad', 'cover_all', 'return_indices'])
    N, C = d.int(0 if d.flag(8) else 1, 2, 'N'), d.int(0 if d.flag(8) else 1, 3, 'C')
    sizes = spatial_dims(d, n)
    x = draw_array(d, rng, 'x', (N, C) + sizes, d.choice(FLOATS, 'dtype'), exact, bad == 'x')
    ksize = draw_ints(d, 'ksize', n, 1, 3, bad == 'ksize')
    kw = draw_pool_args(d, n, bad, ('valid', 'same'))
    if bad == 'cover_all' or d.flag(2):
        kw['cover_all'] = draw_bool(d, 'cover_all', bad == 'cover_all')
    ri = draw_bool(d, 'return_indices', bad == 'return_indices')
    kw['return_indices'] = ri
    E = Expect()
    xa, ks, stride = p_pool_common(E, x, ksize, kw.get('stride'), n)
    if xa is not None:
        n, sizes = xa.ndim - 2, xa.shape[2:]
    pads = p_pad(E, kw.get('pad', 0), n, ('valid', 'same'))
    mark_absurd(E, kw.get('pad'))
    cover_all = p_bool(E, kw.get('cover_all', True), 'cover_all')
    ret = p_bool(E, ri, 'return_indices')
    shape = None
    if not E and not E.absurd:
        if isinstance(pads, str):
            pads = (((0, 0),) * n if pads == 'valid' else
                    tuple(RP.tf_same_pads(D, k, s) for D, k, s in zip(sizes, ks, stride)))
            cover_all = False
        osz = tuple(RP.pool_size(D, k, s, lo, hi, cover_all)
                    for D, k, s, (lo, hi) in zip(sizes, ks, stride, pads))
        if min(osz) < 1:
            E.add(ValueError, *GEOMETRY_WORDS)
        else:
            shape = (N, C) + osz
    set_threads(d)

    def check(res):
        if ret:
            assert isinstance(res, tuple) and len(res) == 2
            res, idx = res
            assert idx.dtype == np.int64
        if E.absurd or shape is None:
            return
        if xa.shape[0] * xa.shape[1] == 0:
            return assert_shape_only(res, shape, xa.dtype)
        ref, ref_idx = RP.max_pool(xa, ks, stride, pads, cover_all)
        assert_values(res, ref, xa.dtype, True)
        if ret:
            np.testing.assert_array_equal(idx, ref_idx)

    judge('max_pooling_nd', lambda: ndconv.max_pooling_nd(x, ksize, **kw), E,
          [x, ksize] + list(kw.values()), check)


def fuzz_average_pooling_nd(d):
    rng = np.random.default_rng(d.int(0, 2 ** 32 - 1, 'seed'))
    n = d.choice([1, 1, 2, 2, 3, 4], 'n')
    bad = pick_bad(d, ['x', 'ksize', 'stride', 'pad', 'pad_value'])
    N, C = d.int(0 if d.flag(8) else 1, 2, 'N'), d.int(0 if d.flag(8) else 1, 3, 'C')
    sizes = spatial_dims(d, n)
    x = draw_array(d, rng, 'x', (N, C) + sizes, d.choice(FLOATS, 'dtype'), True, bad == 'x')
    ksize = draw_ints(d, 'ksize', n, 1, 3, bad == 'ksize')
    kw = draw_pool_args(d, n, bad, ('valid', 'same'))
    if bad == 'pad_value' or d.flag(2):
        kw['pad_value'] = (d.choice([0, None, 0.0, np.float32(0), np.int64(0)], 'pad_value')
                           if bad != 'pad_value' else
                           d.choice([1, -1, 0.5, np.nan, 'zero', True, False, [0]],
                                    'pad_value:bad'))
    E = Expect()
    xa, ks, stride = p_pool_common(E, x, ksize, kw.get('stride'), n)
    if xa is not None:
        n, sizes = xa.ndim - 2, xa.shape[2:]
    pads = p_pad(E, kw.get('pad', 0), n, ('valid', 'same'))
    mark_absurd(E, kw.get('pad'))
    pv = kw.get('pad_value', 0)
    count_pad = None
    if pv is None:
        count_pad = False
    elif (not isinstance(pv, (bool, np.bool_, str, list)) and pv == 0):
        count_pad = True
    else:
        E.add((ValueError, TypeError), 'pad_value')
    shape = None
    if not E and not E.absurd:
        if isinstance(pads, str):
            pads = (((0, 0),) * n if pads == 'valid' else
                    tuple(RP.tf_same_pads(D, k, s) for D, k, s in zip(sizes, ks, stride)))
        osz = tuple(RP.pool_size(D, k, s, lo, hi, False)
                    for D, k, s, (lo, hi) in zip(sizes, ks, stride, pads))
        if min(osz) < 1:
            E.add(ValueError, *GEOMETRY_WORDS)
        else:
            shape = (N, C) + osz
    set_threads(d)

    def check(res):
        if E.absurd or shape is None:
            return
        if xa.shape[0] * xa.shape[1] == 0:
            return assert_shape_only(res, shape, xa.dtype)
        ref = RP.avg_pool(xa, ks, stride, pads, count_pad)
        # means of small integers: exact up to one rounding of the division
        assert_values(res, ref, xa.dtype, False, np.abs(ref) / 16)

    judge('average_pooling_nd', lambda: ndconv.average_pooling_nd(x, ksize, **kw), E,
          [x, ksize] + list(kw.values()), check)


def fuzz_unpooling_nd(d):
    rng = np.random.default_rng(d.int(0, 2 ** 32 - 1, 'seed'))
    n = d.choice([1, 1, 2, 2, 3], 'n')
    bad = pick_bad(d, ['x', 'ksize', 'stride', 'pad', 'cover_all', 'outsize'])
    N, C = d.int(0 if d.flag(8) else 1, 2, 'N'), d.int(0 if d.flag(8) else 1, 3, 'C')
    sizes = spatial_dims(d, n)
    x = draw_array(d, rng, 'x', (N, C) + sizes, d.choice(FLOATS, 'dtype'), True, bad == 'x')
    ksize = draw_ints(d, 'ksize', n, 1, 3, bad == 'ksize')
    kw = draw_pool_args(d, n, bad, ())
    if bad == 'cover_all' or d.flag(2):
        kw['cover_all'] = draw_bool(d, 'cover_all', bad == 'cover_all')
    E = Expect()
    xa, ks, stride = p_pool_common(E, x, ksize, kw.get('stride'), n)
    if xa is not None:
        n, sizes = xa.ndim - 2, xa.shape[2:]
    pads = p_pad(E, kw.get('pad', 0), n, ())
    mark_absurd(E, kw.get('pad'))
    cover_all = p_bool(E, kw.get('cover_all', True), 'cover_all')
    osz = None
    if not E and not E.absurd:
        default = tuple(RP.unpool_size(D, k, s, lo, hi, cover_all)
                        for D, k, s, (lo, hi) in zip(sizes, ks, stride, pads))
        if bad == 'outsize' or d.flag(3):
            if bad == 'outsize' and d.flag(2):
                kw['outsize'] = d.choice([4, 'ab', (2.0,) * n, (0,) * n, (1,) * (n + 1)],
                                         'outsize:bad')
            else:
                kw['outsize'] = tuple(o + d.int(-s - 1, s + 1, 'outsize%d' % i)
                                      for i, (o, s) in enumerate(zip(default, stride)))
    osz = p_outsize(E, kw.get('outsize'), n)
    shape = None
    if not E and not E.absurd:
        if osz is None:
            if min(default) < 1:
                E.add(ValueError, *GEOMETRY_WORDS)
            osz = default
        else:
            for D, k, s, (lo, hi), o in zip(sizes, ks, stride, pads, osz):
                if RP.pool_size(o, k, s, lo, hi, cover_all) != D:
                    E.add(ValueError, 'outsize')
        if not E:
            shape = (N, C) + tuple(osz)
    set_threads(d)

    def check(res):
        if E.absurd or shape is None:
            return
        if xa.shape[0] * xa.shape[1] == 0:
            return assert_shape_only(res, shape, xa.dtype)
        ref = RP.unpool(xa, ks, stride, pads, osz)
        assert_values(res, ref, xa.dtype, True)

    judge('unpooling_nd', lambda: ndconv.unpooling_nd(x, ksize, **kw), E,
          [x, ksize] + list(kw.values()), check)


def fuzz_max_unpooling_nd(d):
    rng = np.random.default_rng(d.int(0, 2 ** 32 - 1, 'seed'))
    n = d.choice([1, 1, 2, 2, 3], 'n')
    bad = pick_bad(d, ['x', 'indices', 'ksize', 'stride', 'pad', 'outsize'])
    N, C = d.int(0 if d.flag(8) else 1, 2, 'N'), d.int(0 if d.flag(8) else 1, 3, 'C')
    sizes = spatial_dims(d, n)
    x = draw_array(d, rng, 'x', (N, C) + sizes, d.choice(FLOATS, 'dtype'), True, bad == 'x')
    ksize = draw_ints(d, 'ksize', n, 1, 3, bad == 'ksize')
    kw = draw_pool_args(d, n, bad, ())
    E = Expect()
    xa, ks, stride = p_pool_common(E, x, ksize, kw.get('stride'), n)
    if xa is not None:
        n, sizes = xa.ndim - 2, xa.shape[2:]
    pads = p_pad(E, kw.get('pad', 0), n, ())
    mark_absurd(E, kw.get('pad'))
    default = None
    if not E.absurd and None not in (ks, stride, pads):
        default = tuple(s * (D - 1) + k - lo - hi
                        for D, k, s, (lo, hi) in zip(sizes, ks, stride, pads))
        if bad == 'outsize' or d.flag(3):
            if bad == 'outsize' and d.flag(2):
                kw['outsize'] = d.choice([4, (2.0,) * n, (0,) * n, (1,) * (n + 1)],
                                         'outsize:bad')
            else:
                kw['outsize'] = tuple(o + d.int(-s - 1, s + 1, 'outsize%d' % i)
                                      for i, (o, s) in enumerate(zip(default, stride)))
    osz = p_outsize(E, kw.get('outsize'), n)
    if default is not None and osz is not False and not E:
        if osz is None:
            if min(default) < 1:
                E.add(ValueError, *GEOMETRY_WORDS)
            osz = default
        else:
            for D, k, s, (lo, hi), o in zip(sizes, ks, stride, pads, osz):
                low, high = R.deconv_outsize_range(D, k, s, lo, hi, 1)
                if not low <= o <= high:
                    E.add(ValueError, 'outsize')
    vol = int(np.prod(osz)) if osz and not E else 4
    ishape = (N, C) + sizes
    iform = 'ok' if bad != 'indices' else d.choice(
        ['range', 'below', 'shape', 'float', 'bool', 'none', 'list'], 'indices:bad')
    idx = rng.integers(-1, max(vol, 1), size=ishape)
    if vol > 1 and d.flag(2):   # few distinct cells: many collisions
        idx = rng.integers(-1, 2, size=ishape)
    idx = idx.astype(d.choice(['int64', 'int32', 'int16', 'uint64', 'intp'], 'idx dtype')
                     if iform == 'ok' and idx.min(initial=0) >= 0 else 'int64')
    if iform == 'range' and idx.size:
        idx.flat[d.int(0, idx.size - 1)] = vol + d.int(0, 3)
    elif iform == 'below' and idx.size:
        idx.flat[d.int(0, idx.size - 1)] = -2 - d.int(0, 3)
    elif iform == 'shape':
        idx = idx[..., :-1] if sizes[-1] > 1 else idx[..., None]
    elif iform == 'float':
        idx = idx.astype(np.float64)
    elif iform == 'bool':
        idx = idx > 0
    elif iform == 'none':
        idx = None
    elif iform == 'list':
        idx = idx.tolist()
    if isinstance(idx, np.ndarray) and d.flag(4):
        idx = with_layout(idx, d.choice(['F', 'strided', 'neg', 'readonly']))
    ia = None
    if idx is None:
        E.add(TypeError, 'indices')
    else:
        ia = np.asarray(idx)
        if ia.dtype.kind not in 'iu':
            E.add(TypeError, 'indices')
        elif xa is not None and ia.shape != xa.shape:
            E.add(ValueError, 'indices')
        elif not E and ia.size and (ia.min() < -1 or ia.max() >= vol):
            E.add(ValueError, 'indices')
    shape = None if E or E.absurd else (N, C) + tuple(osz)
    set_threads(d)

    def check(res):
        if E.absurd or shape is None:
            return
        if xa.shape[0] * xa.shape[1] == 0:
            return assert_shape_only(res, shape, xa.dtype)
        ref = RP.max_unpool(xa, ia, osz)
        assert_values(res, ref, xa.dtype, True)

    judge('max_unpooling_nd', lambda: ndconv.max_unpooling_nd(x, idx, ksize, **kw), E,
          [x, idx, ksize] + list(kw.values()), check)


def fuzz_linear_upsampling_kernel(d):
    bad = pick_bad(d, ['factor', 'ndim', 'channels', 'dtype'])
    ndim = d.int(1, 4, 'ndim') if bad != 'ndim' else d.choice(
        [0, -1, 2.0, True, None, '2'], 'ndim:bad')
    nn = ndim if p_int(ndim) and p_int(ndim) > 0 else 2
    factor = draw_ints(d, 'factor', nn, 1, 4, bad == 'factor')
    channels = d.int(0, 3, 'channels') if bad != 'channels' else d.choice(
        [-1, 1.0, False, None, '3', 2 ** 40], 'channels:bad')
    kw = {}
    if bad == 'dtype' or d.flag(2):
        kw['dtype'] = d.choice(FLOATS + ('float32', np.dtype('float64')), 'dtype') \
            if bad != 'dtype' else d.choice(['int32', np.int64, bool, 'bogus', complex,
                                             object], 'dtype:bad')
    E = Expect()
    nd = p_int(ndim)
    if nd is None:
        E.add(TypeError, 'ndim')
    elif nd < 1:
        E.add(ValueError, 'ndim')
    fac = p_ints(E, factor, nn, 'factor')
    mark_absurd(E, factor)
    ch = p_int(channels)
    if ch is None:
        E.add(TypeError, 'channels')
    elif ch < 0:
        E.add(ValueError, 'channels')
    elif ch > 2 ** 20:
        E.absurd = True
    dt = kw.get('dtype', np.float32)
    try:
        dt = np.dtype(dt)
        if dt.type not in FLOATS:
            raise TypeError
    except TypeError:
        E.add(TypeError, 'dtype')

    def check(res):
        if E.absurd:
            return
        prof = np.ones(())
        for f in fac:
            prof = np.multiply.outer(prof, RP.linear_profile(f))
        ref = np.zeros((ch, ch) + prof.shape)
        for c in range(ch):
            ref[c, c] = prof
        assert res.dtype == dt and res.shape == ref.shape
        np.testing.assert_array_equal(res, ref.astype(dt))

    judge('linear_upsampling_kernel',
          lambda: ndconv.linear_upsampling_kernel(factor, ndim, channels, **kw), E,
          [factor, ndim, channels] + list(kw.values()), check)


# ----------------------------------------------------------------------------
# The tests.

CONV_TARGETS = {
    'convolution_nd': fuzz_convolution_nd,
    'deconvolution_nd': fuzz_deconvolution_nd,
    'convolution_nd_grad_W': fuzz_convolution_nd_grad_W,
    'outsize_helpers': fuzz_outsize_helpers,
    'threads': fuzz_threads,
}
POOL_TARGETS = {
    'max_pooling_nd': fuzz_max_pooling_nd,
    'average_pooling_nd': fuzz_average_pooling_nd,
    'unpooling_nd': fuzz_unpooling_nd,
    'max_unpooling_nd': fuzz_max_unpooling_nd,
    'linear_upsampling_kernel': fuzz_linear_upsampling_kernel,
}
TARGETS = dict(CONV_TARGETS, **POOL_TARGETS)


def examples(default):
    env = os.environ.get('NDCONV_FUZZ_EXAMPLES', '').strip()
    return int(env) if env else default


def run_fuzz(target, count):
    if target in POOL_TARGETS and not HAVE_POOLING:
        pytest.skip('the pooling family (or tests/reference_pooling.py) is not there yet')
    fn = TARGETS[target]
    threads = ndconv.get_num_threads()

    @settings(max_examples=count, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data):
        try:
            fn(Draw(data))
        finally:
            ndconv.set_num_threads(threads)

    fuzz()


@pytest.fixture(scope='module', autouse=True)
def _report_calls():
    yield
    total = sum(CALLS.values())
    if total:
        print('\nndconv fuzz: %d calls (%s); outcomes: %s' % (total, ', '.join(
            '%s %d' % kv for kv in sorted(CALLS.items())), ', '.join(
            '%s %d' % kv for kv in sorted(OUTCOMES.items()))))


@pytest.mark.parametrize('target', list(TARGETS))
def test_fuzz(target):
    run_fuzz(target, examples(SHORT_EXAMPLES))


@pytest.mark.slow
@pytest.mark.parametrize('target', list(TARGETS))
def test_fuzz_long(target):
    run_fuzz(target, examples(LONG_EXAMPLES))


def test_fuzz_covers_every_public_function():
    """A new public function must get a fuzz case."""
    covered = set(TARGETS) - {'outsize_helpers', 'threads'}
    covered |= {'conv_outsize', 'deconv_outsize', 'get_num_threads', 'set_num_threads',
                'show_config'}
    missing = set(ndconv.__all__) - covered
    assert not missing, missing
