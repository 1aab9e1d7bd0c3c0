"""Video I/O through ffmpeg: probing, and a frame reader that decodes ahead in a thread.

Every ffmpeg command is an argument list built here, by hand, and run as a subprocess
(no shell, no command-line builder library): what runs is what the code shows.

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
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.files import DiskFullError
from pipeline.core.profile import StepTimes, cpu_at_exit


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


#: The first video stream and its size; any size from 1x1 up ("0x31637661" codec tags are not
#: sizes: a size follows ", " and is not followed by more hex digits)
_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+).*?, (?P<w>\d{1,5})x(?P<h>\d{1,5})(?![\dA-Fa-fx])")


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
    """Number of video packets, by a stream copy to nowhere (no decoding, milliseconds).

    ffmpeg 7.0 reports no ``frame=`` count for a stream copy; there the packets are counted
    from a ``framecrc`` listing (one line a packet), which every release writes.
    """
    base = [ffmpeg_exe(), "-v", "error", "-nostats", "-i", str(path), "-map", "0:v:0", "-c", "copy"]
    res = subprocess.run([*base, "-f", "null", "-progress", "pipe:1", "-"],
                         capture_output=True, text=True, errors="replace")
    counts = re.findall(r"^frame=(\d+)", res.stdout, flags=re.M)
    if counts:
        return int(counts[-1])
    res = subprocess.run([*base, "-f", "framecrc", "-"], capture_output=True, text=True, errors="replace")
    return sum(1 for line in res.stdout.splitlines() if line.strip() and not line.startswith("#"))


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Invalid" in ln or "not found" in ln or "No such" in ln:
            return re.sub(r"^\[[^\]]*\]\s*", "", ln)
    return ""


#: Colour conversion flags for yuv -> rgb24: ffmpeg's default (fast rounding, chroma
#: interpolated at low precision) reads frames ~1 grey level too dark, and a converted
#: video would come out darker than its input even where nothing was swapped.
SWS_FLAGS = ["-sws_flags", "accurate_rnd+full_chroma_int+full_chroma_inp"]


def _sync_args() -> list[str]:
    return ["-fps_mode", "passthrough"] if ffmpeg_major_version() >= 5 else ["-vsync", "passthrough"]


class FrameReader:
    """Iterate (index, RGB frame) of a video, decoded ahead by ffmpeg in a thread.

    Memory is bounded by ``prefetch`` frames whatever the video length. After the loop,
    ``frames_read`` and ``error_text`` tell whether the file ended early.
    """

    def __init__(self, path: Path, width: int, height: int, prefetch: int = 16,
                 times: StepTimes | None = None, start: int = 0) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.start = start             # first frame read (accurate seek, as ``frame_at``); frames keep their numbers
        self.times = times             # 'decode': our waits on ffmpeg's pipe, and its CPU seconds
        self.frames_read = 0
        self.error_text = ""
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def _command(self) -> list[str]:
        seek: list[str] = []
        if self.start > 0:             # a shard of a cluster job: half a frame before the frame's time
            st = self.path.stat()
            info, first = _seek_facts(str(self.path), st.st_mtime_ns, st.st_size)
            if info.fps <= 0:
                raise UserError(f"{self.path} has no frame rate to seek by; re-encode it with ffmpeg")
            seek = ["-ss", f"{first + (self.start - 0.5) / info.fps:.6f}"]
        return [ffmpeg_exe(), "-v", "error", *seek, "-i", str(self.path), "-f", "rawvideo", "-an", "-dn", "-map",
                "0:v:0", "-pix_fmt", "rgb24", "-sn", *_sync_args(), *SWS_FLAGS, "pipe:"]

    def _run(self) -> None:
        frame_bytes = self.width * self.height * 3
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        index = self.start
        while not self._stop.is_set():
            t0 = time.perf_counter()
            buf = proc.stdout.read(frame_bytes)
            if self.times is not None:
                self.times.add("decode", t0, time.perf_counter())
            if len(buf) < frame_bytes:
                if self.times is not None and not self._stop.is_set():
                    self.times.add_cpu("decode", cpu_at_exit(proc.pid) or 0.0)
                break
            frame = np.frombuffer(buf, dtype=np.uint8).reshape(self.height, self.width, 3)
            self._put((index, frame))
            index += 1
        self.frames_read = index - self.start
        self._put(None)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        proc = self._proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             bufsize=self.width * self.height * 3)
        err_chunks: list[bytes] = []
        stderr = proc.stderr
        assert stderr is not None
        err_thread = threading.Thread(target=lambda: err_chunks.append(stderr.read()), daemon=True)
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


def frame_rate_arg(fps: float) -> str:
    """Exact rate for ffmpeg: NTSC rates (29.97...) as n*1000/1001, others as printed."""
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.005:
            return f"{base * 1000}/1001"
    return f"{fps:.6g}"


#: What ffmpeg (strerror of ENOSPC, EDQUOT) says when the disk it writes to has no room left.
NO_SPACE_WORDS = ("No space left on device", "Disk quota exceeded")
_AUDIO_RE = re.compile(r"Stream #\d+:\d+.*?: Audio: (?P<codec>\w+)")
#: Audio codecs an .mp4 holds as they are; others are re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


def audio_codec(path: Path) -> str | None:
    """Codec name of the first audio stream, None when there is none."""
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                         capture_output=True, text=True, errors="replace")
    match = _AUDIO_RE.search(res.stderr)
    return match.group("codec") if match else None


#: A lossless intermediate: FFV1 keeps the RGB frames exactly (decoded to rgb24 they are
#: the bytes that were put), at about a quarter of raw size. Cluster segments use it.
LOSSLESS_ARGS = ["-c:v", "ffv1", "-level", "3", "-pix_fmt", "bgr0"]


def audio_input_args(output: Path, audio_from: Path | None, start: float = 0.0,
                     duration: float | None = None) -> list[str]:
    """ffmpeg arguments that add the audio of ``audio_from`` (cut to ``start`` for ``duration`` seconds) as the
    second input to a command whose first input is the video, mapped and coded for ``output``'s container
    (copied when it takes the codec, else AAC); none when there is no audio."""
    codec = audio_codec(audio_from) if audio_from is not None else None
    if codec is None:
        return []
    cmd = ["-ss", f"{start:.6f}"] if start > 0 else []
    if duration is not None:
        cmd += ["-t", f"{duration:.6f}"]
    cmd += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0"]
    copy = codec in MP4_AUDIO or Path(output).suffix.lower() not in (".mp4", ".m4v", ".mov")
    return cmd + (["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "192k"])


class FrameWriter:
    """Encode RGB frames to H.264 in an ffmpeg process fed from a thread (encode behind).

    ``video_args`` replaces the H.264 options (``LOSSLESS_ARGS``: an exact intermediate).

    Audio is taken from ``audio_from`` (the dst input), cut to ``audio_start`` seconds
    for ``audio_duration`` seconds when a range is rendered, and copied as it is when the
    container takes it. ``put`` blocks only when ``queue_size`` frames wait, so memory
    stays bounded; ``close`` waits for ffmpeg and raises UserError if it failed.
    """

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 18,
                 preset: str = "medium", audio_from: Path | None = None, audio_start: float = 0.0,
                 audio_duration: float | None = None, queue_size: int = 16,
                 times: StepTimes | None = None, video_args: list[str] | None = None) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.times = times             # 'encode': our writes into ffmpeg's pipe and the final flush, its CPU seconds
        self.frames_written = 0
        cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-framerate", frame_rate_arg(fps), "-i", "pipe:0"]
        cmd += audio_input_args(self.path, audio_from, audio_start, audio_duration)
        if video_args is None:     # what a finished video gets; ``video_args`` is for intermediates
            video_args = ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
        cmd += video_args
        if self.path.suffix.lower() in (".mp4", ".m4v", ".mov"):
            cmd += ["-movflags", "+faststart"]
        cmd += [str(self.path)]
        self.command = cmd
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self._err: list[bytes] = []
        stderr = self._proc.stderr
        assert stderr is not None
        self._err_thread = threading.Thread(target=lambda: self._err.append(stderr.read()), daemon=True)
        self._err_thread.start()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        while True:
            item = self._queue.get()
            if item is None:
                break
            if self._failed is not None:
                continue
            try:
                frame = item.result() if hasattr(item, "result") else item
                t0 = time.perf_counter()
                stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
                if self.times is not None:
                    self.times.add("encode", t0, time.perf_counter())
                self.frames_written += 1
            except BaseException as exc:  # noqa: BLE001 - reported by close()
                self._failed = exc
        try:
            stdin.close()
        except OSError:
            pass

    def put(self, frame) -> None:
        """Queue a frame (an array, or a Future of one: encoding keeps the queue's order)."""
        if self._failed is not None:
            self._raise()
        self._queue.put(frame)

    def _raise(self) -> None:
        text = b"".join(self._err).decode("utf-8", "replace").strip()
        if any(words in text for words in NO_SPACE_WORDS):
            raise DiskFullError(self.path.parent, f"{self.path.name} was not finished", self.path.name)
        if isinstance(self._failed, (BrokenPipeError, OSError)) or self._failed is None:
            raise UserError(f"ffmpeg could not write {self.path}: {text.splitlines()[-1] if text else 'it exited'}")
        raise self._failed

    def close(self) -> None:
        """Flush and wait for ffmpeg; raises if encoding failed."""
        self._queue.put(None)
        self._thread.join()
        t0 = time.perf_counter()
        cpu = cpu_at_exit(self._proc.pid) if self.times is not None else None
        self._proc.wait()
        if self.times is not None:
            self.times.add("encode", t0, time.perf_counter())
            self.times.add_cpu("encode", cpu or 0.0)
        self._err_thread.join(timeout=5)
        if self._failed is not None or self._proc.returncode != 0:
            self._raise()

    def abort(self) -> None:
        """Stop without waiting for the queue (interrupt or error elsewhere)."""
        self._failed = self._failed or RuntimeError("aborted")
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(None)
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._thread.join(timeout=5)


def frames_at(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames numbered ``wanted`` of a video (RGB), decoding only up to the last of them."""
    info = probe(video)
    out: dict[int, np.ndarray] = {}
    if not wanted:
        return out
    for i, frame in FrameReader(video, info.width, info.height):
        if i in wanted:
            out[i] = frame
        if i >= max(wanted):
            break
    return out


@functools.lru_cache(maxsize=8)
def _seek_facts(path: str, mtime_ns: int, size: int) -> tuple[VideoInfo, float]:
    """Probe facts and the first frame's time of a video, cached while the file is unchanged.

    The time is what ffmpeg's input ``-ss`` counts from: 0 for most files, later when the
    video stream starts after the container (audio first), where ``index / fps`` alone would
    land up to a few frames early.
    """
    info = probe(Path(path))
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-i", path, "-map", "0:v:0", "-an", "-sn",
                          "-dn", "-frames:v", "1", "-vf", "showinfo", "-f", "null", "-"],
                         capture_output=True, text=True, errors="replace")
    match = re.search(r"pts_time:\s*(-?[\d.]+)", res.stderr)
    return info, float(match.group(1)) if match else 0.0


def frame_at(video: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video (RGB uint8, H x W x 3), found by seeking instead of decoding from the start.

    Numbered and converted as FrameReader numbers and converts frames (same pixels). The seek
    is ffmpeg's accurate input seek to half a frame before the frame's time, so rounding of
    timestamps can neither skip the frame nor land on the one before it.
    """
    video = Path(video)
    if not video.is_file():
        raise UserError(f"video {video} not found; check the path")
    st = video.stat()
    info, first = _seek_facts(str(video), st.st_mtime_ns, st.st_size)
    if not 0 <= index < info.frames:
        raise UserError(f"frame {index} is outside {video} ({info.frames} frames, numbered from 0); "
                        f"ask for one of its frames")
    size = info.width * info.height * 3
    if info.fps <= 0:                        # no rate to seek by: decode from the start
        got = frames_at(video, {index}).get(index)
        data, reason = (b"", "the file ends before it") if got is None else (got.tobytes(), "")
    else:
        when = first + (index - 0.5) / info.fps
        cmd = [ffmpeg_exe(), "-v", "error", "-nostdin"]
        if when > 0:                         # frame 0 of a stream starting at 0: read from the start
            cmd += ["-ss", f"{when:.6f}"]
        cmd += ["-i", str(video), "-map", "0:v:0", "-an", "-sn", "-dn", "-frames:v", "1", "-f", "rawvideo",
                "-pix_fmt", "rgb24", *_sync_args(), *SWS_FLAGS, "pipe:"]
        res = subprocess.run(cmd, capture_output=True)
        data, reason = res.stdout, _last_error_line(res.stderr.decode("utf-8", "replace"))
    if len(data) < size:
        raise UserError(f"cannot decode frame {index} of {video} ({reason or 'no frame decoded there'}); check "
                        f"the file, or re-encode it with ffmpeg")
    return np.frombuffer(data[:size], dtype=np.uint8).reshape(info.height, info.width, 3).copy()
