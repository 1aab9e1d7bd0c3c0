"""Rendered segments of a cluster job: where they live, which are finished, and joining them into one video.

Why segments are files next to the output: a worker writes its range as a complete
lossless file (Ut Video, temp name, renamed when whole), so a segment that exists is finished;
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
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.files import frame_range_files, remove_quietly
from pipeline.core.profile import StepTimes
from pipeline.core.video import FrameReader, FrameWriter

log = logging.getLogger("cluster")

#: Segments are lossless (Ut Video in Matroska): the driver decodes and encodes them once.
SEGMENT_SUFFIX = ".mkv"
#: The segments' codec: Ut Video in planar RGB keeps the rendered RGB frames exactly (decoded to rgb24 they
#: are the same bytes). Why not FFV1 (the first choice, half the size): its encode on the workers and its
#: decode on the driver cost 1.73 s and 1.65 s of one core for the Hill clip's 200 frames at 512x512, Ut
#: Video's 0.51 s and 0.31 s, and the driver's decode is on the final encode's path (2026-12-06, this
#: machine). The price is space while the job runs: 56 MB against 28 MB for those 200 frames.
SEGMENT_VIDEO_ARGS = ["-c:v", "utvideo", "-pix_fmt", "gbrp"]
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
    kept: dict[tuple[int, int], Path] = {}
    reach = start
    for a, b, path in frame_range_files(folder, _NAME, start, end):
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


class SegmentEncoder:
    """The final video, encoded segment by segment as the segments become ready, in frame order.

    Why while the shards run: the encode is one machine's whole encode (x264 at the chosen
    preset), serial on the driver; done after the last shard it adds its full length to the
    job. Fed each segment as soon as it and every segment before it are finished, it runs
    beside the shards and only the last segments' encode is left at the end. The frames
    still reach the encoder in frame order, so the video is the same as one encode after
    the shards (and as one machine's). ``add`` queues a segment and returns at once (one
    background thread decodes it into the writer); ``close`` waits for them all.
    """

    def __init__(self, output: Path, width: int, height: int, fps: float, crf: int, preset: str,
                 audio_from: Path | None = None, audio_start: float = 0.0, audio_duration: float | None = None,
                 times: StepTimes | None = None, progress: Callable[[int], None] | None = None) -> None:
        self.output, self.width, self.height, self.progress = output, width, height, progress
        self.frames = 0
        self.busy_seconds = 0.0        # time the thread spent decoding segments into the writer
        self._writer = FrameWriter(output, width, height, fps, crf=crf, preset=preset, audio_from=audio_from,
                                   audio_start=audio_start, audio_duration=audio_duration, times=times)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="encode")
        self._queued: list[Future] = []
        self._closed = False

    def add(self, path: Path) -> None:
        """``path`` (the next segment in frame order) to be encoded after those added before."""
        self._queued.append(self._pool.submit(self._encode, path, time.perf_counter()))

    def _encode(self, path: Path, queued: float) -> None:
        t0 = time.perf_counter()
        reader = FrameReader(path, self.width, self.height)
        before = self.frames
        try:
            for _, frame in reader:
                self._writer.put(frame)
                self.frames += 1
        finally:
            reader.close()
        if self.frames == before or reader.error_text:
            raise UserError(f"segment {path} could not be read ({reader.error_text or 'no frames'}); delete it "
                            f"and run the same command again")
        if self.progress is not None:
            self.progress(self.frames - before)
        t1 = time.perf_counter()
        self.busy_seconds += t1 - t0
        log.debug("segment %s: %d frames into the encoder in %.2f s, %.2f s after it was queued", path.name,
                  self.frames - before, t1 - t0, t1 - queued)

    def close(self) -> int:
        """Every segment added encoded and the video finished (audio muxed); the number of frames."""
        try:
            for fut in self._queued:
                fut.result()           # a segment that failed stops the encode here, in order
            self._writer.close()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._pool.shutdown(wait=True)
        return self.frames

    def abort(self) -> None:
        """Stop: the segments not started are dropped, the unfinished video removed."""
        if self._closed:
            return
        self._closed = True
        for fut in self._queued:
            fut.cancel()
        self._writer.abort()           # first: a segment being put into it then stops at its next frame
        self._pool.shutdown(wait=True)
        remove_quietly(self.output)
