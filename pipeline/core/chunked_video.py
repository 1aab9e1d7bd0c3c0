"""A video encoded in independent pieces of a fixed number of frames, joined by stream copy.

Why (``convert --encode-chunk N``): one H.264 encode of a whole video is serial, so a render
farm's nodes wait for the one machine that encodes. Encoded in pieces that each start a new
x264 encode at a fixed place in the frame grid (every ``N`` frames from the range's first),
the pieces a node encodes are byte for byte the pieces one machine encodes, wherever they
were made, and joining them by stream copy gives the same video. What makes that hold:
- the pieces' edges are on the grid, not where a shard happens to start;
- x264's thread count is fixed (``X264_THREADS``): x264 is deterministic for given
  settings, but it picks its threads from the CPU count, and another thread count is
  another (equally good) encode (checked: 100 frames of the Hill clip at crf 18 gave the
  same bytes on one core and on two with 3 threads, other bytes with x264's own choice);
- every node runs the same ffmpeg build (``imageio-ffmpeg`` in the lock).
The price: a keyframe every ``N`` frames (the encode of each piece starts afresh), which a
larger ``N`` makes small (x264's own default puts one every 250 frames at most).
"""
from __future__ import annotations

import re
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.files import commit_file, frame_range_files, remove_quietly
from pipeline.core.profile import StepTimes
from pipeline.core.video import FrameWriter, audio_input_args, ffmpeg_exe

#: x264's threads in every piece, whatever the machine: the same settings give the same bytes.
X264_THREADS = 4
CHUNK_SUFFIX = ".mp4"
_NAME = re.compile(r"^chunk_(\d{8})_(\d{8})\.mp4$")


def chunk_video_args(crf: int, preset: str) -> list[str]:
    """The encode of one piece: the finished video's H.264 settings, x264's threads fixed, no audio."""
    return ["-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-threads", str(X264_THREADS)]


def chunk_name(start: int, end: int) -> str:
    return f"chunk_{start:08d}_{end:08d}{CHUNK_SUFFIX}"


def chunk_edges(start: int, end: int, origin: int, size: int) -> list[tuple[int, int]]:
    """The pieces (first, end) covering frames [start, end) on the grid of ``size`` frames from ``origin``."""
    out = []
    at = start
    while at < end:
        stop = min(end, origin + ((at - origin) // size + 1) * size)
        out.append((at, stop))
        at = stop
    return out


def finished_chunks(folder: Path, start: int, end: int) -> dict[tuple[int, int], Path]:
    """Pieces already encoded in ``folder`` inside [start, end), by (first, end), in frame order."""
    return {(a, b): path for a, b, path in frame_range_files(folder, _NAME, start, end)}


class ChunkedWriter:
    """``FrameWriter``'s ``put``/``close``/``abort`` for frames ``first``, ``first`` + 1, ... written as pieces of
    the ``size``-frame grid from ``origin`` into ``folder`` (each under a temp name, renamed when whole).

    A piece is finished in the background while the next one is fed, so the caller does not
    wait for x264's look-ahead at every edge; ``close`` waits for them all.
    """

    def __init__(self, folder: Path, width: int, height: int, fps: float, crf: int, preset: str, size: int,
                 first: int, origin: int, times: StepTimes | None = None) -> None:
        if size <= 0:
            raise ValueError("a piece has at least one frame")
        self.folder, self.size, self.origin = Path(folder), size, origin
        self.width, self.height, self.fps, self.times = width, height, fps, times
        self.args = chunk_video_args(crf, preset)
        self.next_frame = first
        self.frames_written = 0
        self.written: list[Path] = []
        self._writer: FrameWriter | None = None
        self._piece: tuple[int, int] | None = None
        self._closing = ThreadPoolExecutor(1, thread_name_prefix="chunk")
        self._pending: list[Future] = []

    def _tmp(self, piece: tuple[int, int]) -> Path:
        return self.folder / f".{chunk_name(*piece)}.tmp{CHUNK_SUFFIX}"

    def put(self, frame) -> None:
        """The next frame (an array, or a Future of one), in order."""
        if self._piece is None or self.next_frame >= self._piece[1]:
            self._finish_piece()
            end = self.origin + ((self.next_frame - self.origin) // self.size + 1) * self.size
            self._piece = (self.next_frame, end)
            self._writer = FrameWriter(self._tmp(self._piece), self.width, self.height, self.fps, times=self.times,
                                       video_args=self.args)
        assert self._writer is not None
        self._writer.put(frame)
        self.next_frame += 1
        self.frames_written += 1

    def _finish_piece(self) -> None:
        if self._writer is None or self._piece is None:
            return
        writer, (a, _) = self._writer, self._piece
        piece = (a, self.next_frame)           # the last piece of a range may end before the grid's edge
        self._writer = None
        self._pending.append(self._closing.submit(self._commit, writer, self._tmp(self._piece), piece))

    def _commit(self, writer: FrameWriter, tmp: Path, piece: tuple[int, int]) -> Path:
        writer.close()
        final = self.folder / chunk_name(*piece)
        commit_file(tmp, final)
        return final

    def close(self) -> list[Path]:
        """Every piece finished and renamed; their paths, in frame order."""
        self._finish_piece()
        try:
            for fut in self._pending:
                self.written.append(fut.result())
        finally:
            self._closing.shutdown(wait=True)
        return self.written

    def abort(self) -> None:
        """Stop: the piece being fed is dropped (pieces already finished stay: they are whole)."""
        if self._writer is not None and self._piece is not None:
            self._writer.abort()
            remove_quietly(self._tmp(self._piece))
            self._writer = None
        for fut in self._pending:
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - the caller is already failing; a half piece is never renamed
                pass
        self._closing.shutdown(wait=True)


def join_chunks(pieces: list[Path], output: Path, audio_from: Path | None = None, audio_start: float = 0.0,
                audio_duration: float | None = None) -> None:
    """``pieces`` (in frame order) joined by stream copy into ``output``, with the audio of ``audio_from``."""
    if not pieces:
        raise UserError(f"nothing to join into {output}: no encoded pieces")
    listing = output.with_name(f".{output.name}.pieces.txt")
    listing.write_text("".join("file '{}'\n".format(str(Path(p).resolve()).replace("'", "'\\''")) for p in pieces))
    cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing)]
    cmd += audio_input_args(output, audio_from, audio_start, audio_duration)
    cmd += ["-c:v", "copy"]
    if output.suffix.lower() in (".mp4", ".m4v", ".mov"):
        cmd += ["-movflags", "+faststart"]
    cmd += [str(output)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    finally:
        remove_quietly(listing)
    if res.returncode != 0:
        lines = res.stderr.strip().splitlines()
        raise UserError(f"ffmpeg could not join the encoded pieces into {output}: "
                        f"{lines[-1] if lines else 'it exited'}")


class ChunkedVideo:
    """A whole video written as pieces into a hidden folder beside ``path`` and joined into ``path`` at ``close``:
    one machine's ``--encode-chunk`` convert, the same bytes a cluster's nodes encode and its driver joins."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int, preset: str, size: int,
                 first: int, audio_from: Path | None = None, audio_start: float = 0.0,
                 audio_duration: float | None = None, times: StepTimes | None = None) -> None:
        self.path = Path(path)
        self.folder = pieces_folder(self.path)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.audio = (audio_from, audio_start, audio_duration)
        self._pieces = ChunkedWriter(self.folder, width, height, fps, crf, preset, size, first, first, times)

    @property
    def frames_written(self) -> int:
        return self._pieces.frames_written

    def put(self, frame) -> None:
        self._pieces.put(frame)

    def close(self) -> None:
        try:
            join_chunks(self._pieces.close(), self.path, *self.audio)
        finally:
            _remove_folder(self.folder)

    def abort(self) -> None:
        self._pieces.abort()
        _remove_folder(self.folder)


def pieces_folder(path: Path) -> Path:
    """The hidden folder beside ``path`` (a temp video of this process) that its pieces are encoded into."""
    return path.with_name(f".{path.name}.pieces")


def _remove_folder(folder: Path) -> None:
    import shutil
    shutil.rmtree(folder, ignore_errors=True)
