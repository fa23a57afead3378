"""Thread counts for the kernels, and the BLAS they call.

The kernels run under OpenMP and call BLAS from inside their parallel
regions, one GEMM per tile.  SciPy's OpenBLAS has a thread pool of its own;
while a kernel runs it is held to one thread, so the OpenMP team alone sets
the parallelism and the result does not depend on the BLAS thread count.
"""

import contextlib
import ctypes
import os
import threading

from . import _args, _runtime

_lock = threading.Lock()
_user_threads = None      # set by set_num_threads
_user_thread_id = None    # the Python thread that set it
_blas = None              # (name, get, set, config) or False when not found
# At most this many threads per kernel: a team far larger than the machine
# only slows it, and past the system's limits OpenMP cannot create the
# threads at all (libgomp then aborts the process).
_MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))
_blas_depth = 0
_blas_saved = None


def get_num_threads():
    """Number of OpenMP threads the kernels use.

    The default follows ``OMP_NUM_THREADS``, else the number of cores.
    ``set_num_threads`` changes it for the whole process, and
    ``threadpoolctl.threadpool_limits`` limits it within its block.  Whatever
    is asked, a kernel uses at most ``max(64, 4 * cores)`` threads.

    Returns
    -------
    n : int

    Examples
    --------
    >>> import ndconv
    >>> ndconv.get_num_threads() >= 1
    True
    """
    if _user_threads is not None and threading.get_ident() != _user_thread_id:
        n = _user_threads
    else:
        n = int(_runtime.max_threads())
    return min(max(1, n), _MAX_THREADS)


def set_num_threads(n):
    """Set the number of OpenMP threads used by the kernels.

    Parameters
    ----------
    n : int
        At least 1 (and below 2**31).  Results are bitwise the same for every
        ``n``; a kernel uses at most ``max(64, 4 * cores)`` threads.

    Raises
    ------
    TypeError, ValueError
        For a non-int or an ``n`` below 1.

    Examples
    --------
    >>> import ndconv
    >>> before = ndconv.get_num_threads()
    >>> ndconv.set_num_threads(1)
    >>> ndconv.get_num_threads()
    1
    >>> ndconv.set_num_threads(before)
    """
    global _user_threads, _user_thread_id
    n = _args.as_int(n, 'n')
    if not 1 <= n <= 2 ** 31 - 1:
        raise ValueError('n must be a positive int below 2**31, got %d' % n)
    _runtime.set_max_threads(n)
    _user_threads = n
    _user_thread_id = threading.get_ident()


def _find_blas():
    """ctypes handles on the OpenBLAS behind scipy.linalg.cython_blas."""
    global _blas
    if _blas is not None:
        return _blas
    _blas = False
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
    try:
        with open('/proc/self/maps') as f:
            paths = {line.split(None, 5)[-1].strip() for line in f
                     if 'blas' in line.lower() and '/' in line}
    except OSError:
        return _blas
    # scipy's own copy first: numpy may carry another (64-bit int) one.
    def rank(path):
        name = os.path.basename(path).lower()
        return ('scipy' not in path, 'openblas' not in name, '64' in name)

    for path in sorted(paths, key=rank):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (('scipy_openblas', ''), ('openblas', '')):
            get = getattr(lib, prefix + '_get_num_threads' + suffix, None)
            set_ = getattr(lib, prefix + '_set_num_threads' + suffix, None)
            if get is None or set_ is None:
                continue
            config = getattr(lib, prefix + '_get_config' + suffix, None)
            text = 'OpenBLAS'
            if config is not None:
                config.restype = ctypes.c_char_p
                text = config().decode(errors='replace')
            get.restype = ctypes.c_int
            set_.argtypes = [ctypes.c_int]
            _blas = (os.path.basename(path), get, set_, text)
            return _blas
    return _blas


@contextlib.contextmanager
def blas_single_thread():
    """Hold the kernels' BLAS to one thread for the duration of a call.

    Nested and concurrent calls share one hold: the first saves the BLAS
    thread count, the last restores it."""
    global _blas_depth, _blas_saved
    blas = _find_blas()
    if not blas:
        yield
        return
    with _lock:
        if _blas_depth == 0:
            _blas_saved = blas[1]()
            if _blas_saved != 1:
                blas[2](1)
        _blas_depth += 1
    try:
        yield
    finally:
        with _lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_saved != 1:
                blas[2](_blas_saved)


def blas_description():
    blas = _find_blas()
    if not blas:
        return 'scipy.linalg.cython_blas (library not identified)'
    return '%s (%s)' % (blas[3], blas[0])


def show_config():
    """Print the version, OpenMP status, thread count and BLAS, one per line.

    Examples
    --------
    >>> import ndconv
    >>> ndconv.show_config()  # doctest: +ELLIPSIS
    ndconv ...
    OpenMP: ...
    threads: ...
    BLAS: ...
    """
    from . import __version__
    print('ndconv %s' % __version__)
    print('OpenMP: %s' % ('on' if _runtime.HAVE_OPENMP else 'off'))
    print('threads: %d' % get_num_threads())
    print('BLAS: %s' % blas_description())
