"""Rendered segments of a cluster job: where they live, which are finished, and joining them into one video.

Why segments are files next to the output: a worker writes its range as a complete H.264
file (temp name, renamed when whole), so a segment that exists is finished; a driver
killed mid-job finds them on the next run and renders only the ranges still missing. The
folder is named after everything the frames depend on (``job_key``), so a rerun with other
options or an edited workspace never reuses a stale segment. The driver joins them with
ffmpeg's concat demuxer and stream copy (no re-encode: the frames are the workers') and
muxes the input's audio in the same pass.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.files import remove_quietly, write_atomic
from pipeline.core.video import MP4_AUDIO, NO_SPACE_WORDS, audio_codec, ffmpeg_exe

_NAME = re.compile(r"^seg_(\d{8})_(\d{8})\.mp4$")


def job_key(facts: Any) -> str:
    """A short, stable name for everything (JSON-able) a job's frames depend on."""
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def segments_root(output: Path) -> Path:
    """The folder of the segments of jobs that render ``output`` (hidden, beside it)."""
    return output.with_name(f".{output.stem}.segments")


def segment_name(start: int, end: int) -> str:
    return f"seg_{start:08d}_{end:08d}.mp4"


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


def join_segments(segments: Sequence[Path], output: Path, audio_from: Path | None = None, audio_start: float = 0.0,
                  audio_duration: float | None = None) -> None:
    """``segments`` (in order) joined into ``output`` by stream copy, with ``audio_from``'s audio muxed in."""
    listing = output.with_name(f".{output.name}.concat.txt")

    def quoted(path: Path) -> str:
        return "file '" + str(Path(path).resolve()).replace("'", "'\\''") + "'\n"
    write_atomic(listing, "".join(quoted(p) for p in segments).encode())
    cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing)]
    codec = audio_codec(audio_from) if audio_from is not None else None
    if codec is not None:
        if audio_start > 0:
            cmd += ["-ss", f"{audio_start:.6f}"]
        if audio_duration is not None:
            cmd += ["-t", f"{audio_duration:.6f}"]
        cmd += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0"]
        copy = codec in MP4_AUDIO or output.suffix.lower() not in (".mp4", ".m4v", ".mov")
        cmd += ["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "192k"]
    cmd += ["-c:v", "copy"]
    if output.suffix.lower() in (".mp4", ".m4v", ".mov"):
        cmd += ["-movflags", "+faststart"]
    cmd.append(str(output))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    finally:
        remove_quietly(listing)
    if res.returncode != 0:
        text = res.stderr.strip()
        if any(words in text for words in NO_SPACE_WORDS):
            raise UserError(f"no space left to join the segments into {output}; free some and run the same "
                            f"command again (finished segments are kept)")
        raise UserError(f"ffmpeg could not join the segments into {output}: "
                        f"{text.splitlines()[-1] if text else 'it failed'}")
