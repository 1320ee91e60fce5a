"""Compilation: how long a call spent compiling, and an opt-in persistent compilation cache.

* `CompileClock` -- a context manager that adds up the seconds JAX reports (through
  `jax.monitoring`) for tracing, lowering and XLA compilation while it is open, and counts
  the XLA compilations. Every evidence result carries it as ``result.compile_time`` (the rest of
  ``wall_time`` is run time); tests use ``num_compiles`` to check that a second call with new
  data compiles nothing.
* `enable_compilation_cache` -- JAX's persistent compilation cache in a directory, so that
  a fresh process (a rerun script or notebook) loads the compiled programs from disk instead of
  compiling them. Opt in with ``ep.enable_compilation_cache(path)`` or by setting the
  environment variable ``EBM_PPL_COMPILATION_CACHE`` to a directory before importing
  ``ebm_ppl``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import jax

__all__ = ["CompileClock", "enable_compilation_cache", "compile_seconds", "CACHE_ENV_VAR"]

CACHE_ENV_VAR = "EBM_PPL_COMPILATION_CACHE"

_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_time",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_time",
    "/jax/core/compile/backend_compile_duration": "backend_time",
}
_active = threading.local()


def _clocks() -> list:
    if not hasattr(_active, "clocks"):
        _active.clocks = []
    return _active.clocks


def _listener(event: str, duration: float, **_) -> None:
    field = _EVENTS.get(event)
    if field is None:
        return
    for clock in _clocks():
        setattr(clock, field, getattr(clock, field) + duration)
        if field == "backend_time":
            clock.num_compiles += 1


jax.monitoring.register_event_duration_secs_listener(_listener)


class CompileClock:
    """Seconds spent tracing, lowering and compiling (XLA) while open, and the number of XLA
    compilations (a program loaded from the persistent cache is not counted as one).

    ``with CompileClock() as clock: ...`` then ``clock.seconds``; clocks nest (each sees all
    compilations in its own thread while it is open).
    """

    def __init__(self):
        self.trace_time = 0.0
        self.lower_time = 0.0
        self.backend_time = 0.0
        self.num_compiles = 0

    @property
    def seconds(self) -> float:
        """Tracing + lowering + XLA compilation, in seconds."""
        return self.trace_time + self.lower_time + self.backend_time

    def __enter__(self) -> CompileClock:
        _clocks().append(self)
        return self

    def __exit__(self, *exc) -> None:
        _clocks().remove(self)

    def __repr__(self) -> str:
        return (f"CompileClock(seconds={self.seconds:.3f}, num_compiles={self.num_compiles}, "
                f"trace={self.trace_time:.3f}, lower={self.lower_time:.3f}, "
                f"backend={self.backend_time:.3f})")


def compile_seconds() -> float | None:
    """Seconds counted so far by the outermost
    [`CompileClock`][ebm_ppl.compilation.CompileClock] open in this thread (the whole call's
    compilation, for progress output), or None when no clock is open."""
    clocks = _clocks()
    return clocks[0].seconds if clocks else None


def compiled_postfix() -> dict:
    """``{"compiled": "4.1s"}`` from ``compile_seconds`` for a progress bar's postfix
    (empty when no clock is open)."""
    secs = compile_seconds()
    return {} if secs is None else {"compiled": f"{secs:.1f}s"}


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` (default: the environment variable
    ``EBM_PPL_COMPILATION_CACHE``, else ``~/.cache/ebm_ppl/jax``) for every program, however
    quick to compile; returns the directory.

    A later process with the same JAX version, backend and program loads the compiled program
    from disk. The cache is JAX's own (``jax_compilation_cache_dir``): delete the directory to
    clear it.
    """
    if path is None:
        path = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "ebm_ppl" / "jax"
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"path: cannot create the compilation cache directory "
                         f"{str(path)!r} ({err.strerror})") from None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _enable_from_environment() -> None:
    if os.environ.get(CACHE_ENV_VAR):
        enable_compilation_cache(os.environ[CACHE_ENV_VAR])
