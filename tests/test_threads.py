"""Native libraries' thread counts while convert's pool renders (``pipeline.core.threads``, issue 31)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from pipeline.core.threads import pool_native_threads


def _blas_threads() -> list[int]:
    # numpy's matrix product loads its BLAS; threadpoolctl lists the libraries loaded so far
    np.ones((2, 2)) @ np.ones((2, 2))
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_a_pool_runs_blas_and_opencv_on_one_thread_each_then_restores_them():
    before_blas, before_cv = _blas_threads(), cv2.getNumThreads()
    assert before_blas, "threadpoolctl finds no BLAS library behind numpy: the cap would do nothing"
    with pool_native_threads(2):
        assert _blas_threads() == [1] * len(before_blas)
        assert cv2.getNumThreads() == 1
    assert (_blas_threads(), cv2.getNumThreads()) == (before_blas, before_cv)


def test_one_worker_keeps_opencvs_threads_and_caps_blas():
    """One worker: OpenCV's own threads are the only parallelism; BLAS is capped anyway (same bytes as many workers)."""
    before_blas, before_cv = _blas_threads(), cv2.getNumThreads()
    with pool_native_threads(1):
        assert (_blas_threads(), cv2.getNumThreads()) == ([1] * len(before_blas), before_cv)
    assert (_blas_threads(), cv2.getNumThreads()) == (before_blas, before_cv)


@pytest.mark.slow
def test_convert_renders_its_faces_with_blas_on_one_thread(small_ws, monkeypatch):
    """The finishing steps (Poisson's matrix products, the luma projections) ran with OpenBLAS capped: with its
    own threads spinning beside the pool's, the Poisson step took 22 ms of thread time a frame, not 4.5."""
    from convert.options import ConvertOptions
    from convert.renderer import _FaceWork
    from convert.runner import run_convert
    seen: list[list[int]] = []
    finish = _FaceWork.finish

    def recording(self, frame, faces):
        seen.append(_blas_threads())
        return finish(self, frame, faces)

    monkeypatch.setattr(_FaceWork, "finish", recording)
    opts = ConvertOptions(workspace=small_ws, output=Path(small_ws) / "out.mp4", precision="float")
    summary = run_convert(dataclasses.replace(opts, workers=2))
    assert summary.faces > 0 and len(seen) == summary.faces
    assert all(threads and set(threads) == {1} for threads in seen), seen
