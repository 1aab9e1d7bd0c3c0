"""extract/durable.py: new face files visible at once, on disk before the index commits them."""
from __future__ import annotations

import errno

import pytest

from extract import durable
from pipeline.core.files import DiskFullError


def test_files_are_whole_at_once_and_flushed_by_wait(tmp_path, monkeypatch):
    flushed = []
    real = durable._flush
    monkeypatch.setattr(durable, "_flush", lambda path: (real(path), flushed.append(path.name)))
    sink = durable.DeferredFlush()
    try:
        for i in range(20):
            sink.write(tmp_path / f"f{i}.png", bytes([i]) * 1000)
            assert (tmp_path / f"f{i}.png").read_bytes() == bytes([i]) * 1000   # renamed into place already
        sink.wait()
        assert sorted(flushed) == sorted(f"f{i}.png" for i in range(20))
        assert not list(tmp_path.glob(".*.tmp"))                                  # no temp file left
    finally:
        sink.close()


def test_a_flush_that_fails_is_raised_by_wait_as_disk_full(tmp_path, monkeypatch):
    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(durable, "_flush", full)
    sink = durable.DeferredFlush()
    try:
        sink.write(tmp_path / "a.png", b"x" * 10)
        with pytest.raises(DiskFullError, match="a.png"):
            sink.wait()
        sink.wait()                       # reported once; nothing pending after
    finally:
        sink.close()
