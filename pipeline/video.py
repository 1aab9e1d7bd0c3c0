"""Video I/O through ffmpeg: probing, and a frame reader that decodes ahead in a thread.

Frame indices are the order in which ffmpeg hands frames out with timestamps passed
through untouched (no dropped or duplicated frames), rotation applied. Extract and
convert both read frames this way, so a face row's frame index is the frame convert
will see.
"""
from __future__ import annotations

import functools
import queue
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.errors import UserError


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The system ffmpeg if on PATH, else the binary shipped in the imageio-ffmpeg wheel."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise UserError("ffmpeg not found: install it (apt install ffmpeg) or run: "
                        "pip install imageio-ffmpeg") from exc


@functools.lru_cache(maxsize=1)
def ffmpeg_major_version() -> int:
    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
    match = re.search(r"version n?(\d+)\.", out)
    return int(match.group(1)) if match else 4


@dataclass
class VideoInfo:
    """What workspace.json records about a video input."""

    width: int             # of decoded frames, i.e. after rotation
    height: int
    fps: float
    frames: int            # frame count found by the probe (packets in the video stream)
    rotation: int          # degrees of the display matrix, applied when decoding
    has_audio: bool
    codec: str
    duration: float

    @property
    def frames_in_header(self) -> int:
        """Frames the container's duration promises; more than ``frames`` when cut short."""
        return int(round(self.duration * self.fps)) if self.fps > 0 else self.frames

    @property
    def frames_expected(self) -> int:
        promised = self.frames_in_header
        return promised if promised > self.frames * 1.01 + 1 else self.frames

    def to_json(self) -> dict:
        return asdict(self)


_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+).*?, (?P<w>\d{2,5})x(?P<h>\d{2,5})")


def probe(path: Path) -> VideoInfo:
    """Read stream facts with ffmpeg alone (the imageio-ffmpeg wheel has no ffprobe)."""
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                         capture_output=True, text=True, errors="replace")
    text = res.stderr
    stream = _STREAM_RE.search(text)
    if stream is None:
        reason = _last_error_line(text) or "no video stream"
        raise UserError(f"cannot read {path} as a video or image ({reason}); "
                        f"check the file, or convert it with ffmpeg to .mp4")
    line = text[stream.start():text.find("\n", stream.start())]
    fps_match = re.search(r"([\d.]+) fps", line) or re.search(r"([\d.]+) tbr", line)
    fps = float(fps_match.group(1)) if fps_match else 0.0
    rot_match = re.search(r"rotation of (-?[\d.]+) degrees", text) or re.search(r"rotate\s*:\s*(-?\d+)", text)
    rotation = int(round(float(rot_match.group(1)))) % 360 if rot_match else 0
    width, height = int(stream.group("w")), int(stream.group("h"))
    if rotation in (90, 270):
        width, height = height, width
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio:", text) is not None
    return VideoInfo(width, height, fps, count_frames(path), rotation, has_audio,
                     stream.group("codec"), duration)


def count_frames(path: Path) -> int:
    """Number of video packets, by a stream copy to nowhere (no decoding, milliseconds)."""
    res = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostats", "-i", str(path), "-map", "0:v:0",
                          "-c", "copy", "-f", "null", "-progress", "pipe:1", "-"],
                         capture_output=True, text=True, errors="replace")
    counts = re.findall(r"^frame=(\d+)", res.stdout, flags=re.M)
    return int(counts[-1]) if counts else 0


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Invalid" in ln or "not found" in ln or "No such" in ln:
            return re.sub(r"^\[[^\]]*\]\s*", "", ln)
    return ""


def _sync_args() -> list[str]:
    return ["-fps_mode", "passthrough"] if ffmpeg_major_version() >= 5 else ["-vsync", "passthrough"]


class FrameReader:
    """Iterate (index, RGB frame) of a video, decoded ahead by ffmpeg in a thread.

    Memory is bounded by ``prefetch`` frames whatever the video length. After the loop,
    ``frames_read`` and ``error_text`` tell whether the file ended early.
    """

    def __init__(self, path: Path, width: int, height: int, prefetch: int = 16) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.frames_read = 0
        self.error_text = ""
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def _command(self) -> list[str]:
        import ffmpeg  # ffmpeg-python builds the command line
        stream = ffmpeg.input(str(self.path), v="error").output(
            "pipe:", format="rawvideo", pix_fmt="rgb24", map="0:v:0", an=None, sn=None, dn=None)
        args = ffmpeg.compile(stream, cmd=ffmpeg_exe())
        return args[:-1] + _sync_args() + args[-1:]

    def _run(self) -> None:
        frame_bytes = self.width * self.height * 3
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        index = 0
        while not self._stop.is_set():
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            frame = np.frombuffer(buf, dtype=np.uint8).reshape(self.height, self.width, 3)
            self._put((index, frame))
            index += 1
        self.frames_read = index
        self._put(None)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        self._proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      bufsize=self.width * self.height * 3)
        err_chunks: list[bytes] = []
        err_thread = threading.Thread(target=lambda: err_chunks.append(self._proc.stderr.read()), daemon=True)
        err_thread.start()
        self._thread = threading.Thread(target=self._run, name="decode", daemon=True)
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                yield item
        finally:
            self.close()
            err_thread.join(timeout=5)
            self.error_text = b"".join(err_chunks).decode("utf-8", "replace").strip()

    def close(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
