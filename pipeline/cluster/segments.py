"""Rendered segments of a cluster job: where they live, which are finished, and joining them into one video.

Why segments are files next to the output: a worker writes its range as a complete
lossless file (FFV1, temp name, renamed when whole), so a segment that exists is finished;
a driver killed mid-job finds them on the next run and renders only the ranges still
missing. The folder is named after everything the frames depend on (``job_key``), so a
rerun with other options or an edited workspace never reuses a stale segment.

Why lossless segments and one encode on the driver, not H.264 segments joined by stream
copy: x264 starts a new keyframe group (and rate control) in every segment, so at crf 18
the frames after a shard edge came out differently from one machine's (38 dB at worst).
The driver decodes the segments in order and encodes them once with exactly the options
of a one-machine convert: the encoder sees the same frames in the same order, and the
video is the one one machine writes.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.files import remove_quietly
from pipeline.core.profile import StepTimes
from pipeline.core.video import FrameReader, FrameWriter

#: Segments are lossless (FFV1 in Matroska): the driver decodes and encodes them once.
SEGMENT_SUFFIX = ".mkv"
_NAME = re.compile(r"^seg_(\d{8})_(\d{8})\.mkv$")


def job_key(facts: Any) -> str:
    """A short, stable name for everything (JSON-able) a job's frames depend on."""
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def segments_root(output: Path) -> Path:
    """The folder of the segments of jobs that render ``output`` (hidden, beside it)."""
    return output.with_name(f".{output.stem}.segments")


def segment_name(start: int, end: int) -> str:
    return f"seg_{start:08d}_{end:08d}{SEGMENT_SUFFIX}"


def finished_segments(folder: Path, start: int, end: int) -> dict[tuple[int, int], Path]:
    """Segments already rendered in ``folder`` inside [start, end), by (start, end); overlapping ones are dropped."""
    found: list[tuple[int, int, Path]] = []
    if folder.is_dir():
        for path in folder.iterdir():
            m = _NAME.match(path.name)
            if m and path.is_file() and not path.is_symlink() and path.stat().st_size > 0:
                a, b = int(m.group(1)), int(m.group(2))
                if start <= a < b <= end:
                    found.append((a, b, path))
    kept: dict[tuple[int, int], Path] = {}
    reach = start
    for a, b, path in sorted(found):
        if a >= reach:
            kept[(a, b)] = path
            reach = b
    return kept


def missing_ranges(start: int, end: int, done: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [start, end) that no (sorted, non-overlapping) range in ``done`` covers."""
    out, at = [], start
    for a, b in sorted(done):
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if at < end:
        out.append((at, end))
    return out


def encode_segments(segments: Sequence[Path], output: Path, width: int, height: int, fps: float, crf: int,
                    preset: str, audio_from: Path | None = None, audio_start: float = 0.0,
                    audio_duration: float | None = None, times: StepTimes | None = None,
                    progress: Callable[[int], None] | None = None) -> int:
    """The frames of ``segments`` (in order) encoded once into ``output``, as one machine's convert encodes them.

    Each segment is decoded back to the RGB frames its worker rendered (lossless) and put
    into the same ``FrameWriter`` with the same options and audio as a one-machine convert,
    so the encoder sees the same frames in the same order and writes the same video.
    ``progress`` is called with the number of frames after each segment. Returns the frames.
    """
    writer = FrameWriter(output, width, height, fps, crf=crf, preset=preset, audio_from=audio_from,
                         audio_start=audio_start, audio_duration=audio_duration, times=times)
    frames, ok = 0, False
    try:
        for path in segments:
            reader = FrameReader(path, width, height)
            before = frames
            for _, frame in reader:
                writer.put(frame)
                frames += 1
            if frames == before or reader.error_text:
                raise UserError(f"segment {path} could not be read ({reader.error_text or 'no frames'}); delete it "
                                f"and run the same command again")
            if progress is not None:
                progress(frames - before)
        writer.close()
        ok = True
    finally:
        if not ok:
            writer.abort()
            remove_quietly(output)
    return frames
