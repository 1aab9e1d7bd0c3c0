"""A realistic 2,000-face workspace for the studio's face browser, built in seconds.

The studio must open a set of 2,000 faces quickly, but extracting 2,000 frames takes
minutes. ``build_big_workspace`` extracts a short real piece of two shared clips (the dst
set from ``WDA_KatieHill_000.mp4``, a second person from ``WDA_AlexandriaOcasioCortez_000.mp4``
into the src set) with the default extract settings, then writes 2,000 dst faces into the
index through the Workspace API: one face per frame, in tracks of 40-200 frames, about a
quarter of the tracks showing the second person (so the identity clustering finds two
people), each face's aligned image and mask a hard link to a real one, and its blur, yaw,
pitch and descriptor varied around the real values (seeded). A few masks are recorded as
hand-painted. The rows hold everything extract stores (landmarks, dense points,
transforms), so reading them costs what reading a real set costs.

Usage: python -m benchmarks.studio_big_set --out DIR [--faces 2000] [--frames 12]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.workspace.records import FaceRow, MaskOrigin
from pipeline.workspace.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "data" / "videos"
KATIE = VIDEOS / "WDA_KatieHill_000.mp4"
AOC = VIDEOS / "WDA_AlexandriaOcasioCortez_000.mp4"


def _trim(video: Path, out: Path, frames: int) -> Path:
    from pipeline.core.video import ffmpeg_exe
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-frames:v", str(frames), "-an",
                    "-c:v", "mpeg4", "-q:v", "3", str(out)], check=True)
    return out


def extract_template(folder: Path, frames: int = 12) -> Path:
    """A real workspace: the first ``frames`` frames of KATIE as dst and of AOC as src (default settings)."""
    from extract.options import ExtractOptions
    from extract.runner import run_extract
    folder.mkdir(parents=True, exist_ok=True)
    ws = folder / "template"
    for video, name, set_name in ((KATIE, "katie.mp4", "dst"), (AOC, "aoc.mp4", "src")):
        clip = _trim(video, folder / name, frames)
        run_extract(ExtractOptions(input=clip, workspace=ws, set_name=set_name, workers=2))
    return ws


def _link(src: Path, dst: Path) -> None:
    """Hard link (the same bytes and stat, no copy); a copy where links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _tracks(faces: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(first frame, length, person) runs covering ``faces`` frames; every fourth track is the second person."""
    out, start, track = [], 0, 0
    while start < faces:
        length = min(int(rng.integers(40, 201)), faces - start)
        out.append((start, length, 1 if track % 4 == 3 else 0))
        start += length
        track += 1
    return out


def build_big_workspace(folder: Path, faces: int = 2000, template: Path | None = None, frames: int = 12,
                        seed: int = 0) -> Path:
    """``folder/ws``: a workspace whose dst set has ``faces`` faces made from a real extraction.

    ``template`` is a workspace with dst and src faces (``extract_template`` makes one in
    ``folder`` when it is None). Returns the new workspace; the template is left as it is.
    """
    folder = Path(folder)
    template = template if template is not None else extract_template(folder, frames)
    ws_dir = folder / "ws"
    shutil.copytree(template, ws_dir, ignore=shutil.ignore_patterns(".studio"))
    rng = np.random.default_rng(seed)
    with Workspace(ws_dir, write=True, command="benchmark") as ws:
        old = ws.faces("dst")
        people = [[r for r in old if r.kept], ws.faces("src", kept=True)]
        if not people[0] or not people[1] or faces < len(old):
            raise ValueError(f"{template} needs kept faces in both sets, and at most {faces} dst faces")
        source = people[0][0].source
        for folder_of in (ws.aligned_dir("dst"), ws.masks_dir("dst")):
            for file in folder_of.iterdir():
                file.unlink()
        aligned, masks = ws.aligned_dir("dst"), ws.masks_dir("dst")
        tpl = Workspace(template)
        try:
            for track, (first, length, person) in enumerate(_tracks(faces, rng)):
                pool = people[person]
                offset = int(rng.integers(len(pool)))
                yaw_bias, pitch_bias = rng.normal(0, 15), rng.normal(0, 6)
                for k in range(length):
                    frame = first + k
                    i = (offset + k) % (2 * len(pool))
                    base = pool[i if i < len(pool) else 2 * len(pool) - 1 - i]    # back and forth: a moving face
                    name = f"{frame:06d}_0{Path(base.aligned_file).suffix}"
                    mask_name = f"{frame:06d}_0.png"
                    _link(tpl.aligned_path(base), aligned / name)
                    _link(tpl.mask_path(base), masks / mask_name)
                    st = (masks / mask_name).stat()
                    row: FaceRow = replace(
                        base, set_name="dst", source=source, frame_index=frame, face_index=0, track=track,
                        aligned_file=name, mask_file=mask_name, mask_mtime_ns=st.st_mtime_ns, mask_bytes=st.st_size,
                        mask_origin=MaskOrigin.HAND if rng.random() < 0.03 else base.mask_origin,
                        blur=float((base.blur or 100.0) * rng.uniform(0.3, 1.6)),
                        yaw=float((base.yaw or 0.0) + yaw_bias + rng.normal(0, 4)),
                        pitch=float((base.pitch or 0.0) + pitch_bias + rng.normal(0, 2)),
                        descriptor=None if base.descriptor is None
                        else base.descriptor + rng.normal(0, 0.012, base.descriptor.shape),
                        dropped=False, drop_reason=None, id=None)
                    others = [r for r in old if r.frame_index == frame and r.face_index != 0]
                    ws.write_frame("dst", source, frame, "ok", [row], others)
        finally:
            tpl.close()
        ws.commit()
        meta = ws.set_meta("dst")
        if meta is not None and meta.video is not None:
            ws.put_set_meta("dst", replace(meta, video={**meta.video, "frames": faces, "frames_expected": faces}))
    return ws_dir


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="an empty folder to build in")
    ap.add_argument("--faces", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=12, help="frames of each clip really extracted")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    ws = build_big_workspace(args.out, args.faces, frames=args.frames)
    print(f"{ws}: {args.faces} dst faces, built in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
