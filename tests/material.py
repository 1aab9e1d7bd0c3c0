"""Test material built from the shared clips: footage with known ground truth.

``two_person_clip``: the first 200 frames of the Hill clip followed by the first 60 frames
of the Ocasio-Cortez clip (both 512x512, 25 fps), a hard cut between two people. Ground
truth: frames 0-199 are Hill, 200-259 AOC. Built with ffmpeg (H.264, CRF 12, audio of both
clips cut to match), in a folder outside git (the tests keep it beside pytest's temp
folders); building takes a few seconds.

Run as ``python -m tests.material OUT.mp4`` to write the clip for a manual try.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "data" / "videos"
KATIE = VIDEOS / "WDA_KatieHill_000.mp4"
AOC = VIDEOS / "WDA_AlexandriaOcasioCortez_000.mp4"

#: (clip, frames taken from its start) in the order they are joined
TWO_PERSON_PARTS = ((KATIE, 200), (AOC, 60))
#: the same cut, shorter: 16 frames of Hill (0-15), then 10 of Ocasio-Cortez (16-25)
SHORT_TWO_PERSON = ((KATIE, 16), (AOC, 10))
FPS = 25


def two_person_clip(out: Path, parts: tuple[tuple[Path, int], ...] = TWO_PERSON_PARTS) -> Path:
    """Write the Hill + AOC clip to ``out`` (kept when it is already there) and return it.

    ``parts``: (clip, frames from its start) joined in order; a shorter pair (``SHORT_TWO_PERSON``)
    keeps tests that only need two people in one video quick to extract.
    """
    out = Path(out)
    if out.is_file() and out.stat().st_size > 0:
        return out
    from pipeline.core.video import ffmpeg_exe
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs: list[str] = []
    chains, labels = [], []
    for i, (clip, frames) in enumerate(parts):
        inputs += ["-i", str(clip)]
        seconds = frames / FPS
        chains.append(f"[{i}:v]trim=end_frame={frames},setpts=PTS-STARTPTS,fps={FPS}[v{i}];"
                      f"[{i}:a]atrim=end={seconds},asetpts=PTS-STARTPTS[a{i}]")
        labels.append(f"[v{i}][a{i}]")
    graph = ";".join(chains) + ";" + "".join(labels) + f"concat=n={len(parts)}:v=1:a=1[v][a]"
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")     # concurrent builders do not collide
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[v]",
                    "-map", "[a]", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    str(tmp)], check=True)
    tmp.replace(out)
    return out


if __name__ == "__main__":
    print(two_person_clip(Path(sys.argv[1] if len(sys.argv) > 1 else "two_person.mp4")))
