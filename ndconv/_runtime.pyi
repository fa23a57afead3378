"""Stub of the compiled OpenMP shim (ext/_runtime.pyx)."""

__test__: dict[str, str]  # Cython's doctest table

HAVE_OPENMP: bool


def max_threads() -> int: ...


def set_max_threads(n: int) -> None: ...


def num_procs() -> int: ...
