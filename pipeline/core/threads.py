"""Native libraries' own thread counts, capped while a stage runs its own pool of threads.

Why: convert renders faces in a pool of one thread per core, beside torch and x264. NumPy's
OpenBLAS (the matrix products of the Poisson solver, the ``@ LUMA`` projections) starts its own
threads for every call on top of that, and they spin waiting for work while the pool's threads
and the network want the same cores: on the 2-core machine the Poisson step took 22 ms of
thread time a frame that way against 4.5 ms with OpenBLAS on one thread, and the frame loop
30.5 -> 22.6 ms a frame (issue 31). OpenCV splitting each small call over its own threads
costs the same way (``pipeline.core.images.opencv_threads``).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

from pipeline.core.images import opencv_threads

T = TypeVar("T")


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """The BLAS libraries' (NumPy's OpenBLAS) thread count set to ``count`` for the block, restored after."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=count, user_api="blas"):
        yield


@contextlib.contextmanager
def pool_native_threads(workers: int) -> Iterator[None]:
    """BLAS on one thread, and OpenCV on one thread while a pool of ``workers`` > 1 threads does the parallel work.

    BLAS is capped whatever the worker count: its matrices here are a Poisson box's sides
    (<= 128), too small to gain from threads, and OpenBLAS splits a product over threads
    by size, which moves its float rounding. Capped always, a render is the same bytes with
    one worker or many, on one core or sixteen (a one-core cluster node's segment matches
    the two-core machine's render, which it did not with OpenBLAS left alone there).
    """
    with blas_threads(1), opencv_threads(1) if workers > 1 else contextlib.nullcontext():
        yield


def in_background(fn: Callable[[], T], name: str) -> Future[T]:
    """``fn()`` started now on a daemon thread; its result (or exception) from the returned future.

    Why: a stage's start-up is one thread (imports, model load) while the other cores idle; a
    read that does not depend on it (convert's src statistics) runs beside it instead of after.
    A daemon thread, so a start-up that fails does not wait for it at exit.
    """
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
