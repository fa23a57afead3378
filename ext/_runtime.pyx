# cython: language_level=3
"""OpenMP thread control and build facts, through the one OpenMP shim."""

from _util cimport NDCONV_HAVE_OPENMP, omp_get_max_threads, omp_set_num_threads, omp_get_num_procs

HAVE_OPENMP = bool(NDCONV_HAVE_OPENMP)


def max_threads():
    """omp_get_max_threads() of the calling thread (1 without OpenMP)."""
    return omp_get_max_threads()


def set_max_threads(int n):
    omp_set_num_threads(n)


def num_procs():
    return omp_get_num_procs()
