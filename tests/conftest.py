"""Shared fixtures: real footage from ../shared/data, trimmed where speed needs it."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VIDEOS = DATA / "videos"
PHOTOS = DATA / "photos"
KATIE = VIDEOS / "WDA_KatieHill_000.mp4"
AOC = VIDEOS / "WDA_AlexandriaOcasioCortez_000.mp4"


def ffmpeg() -> str:
    from pipeline.core.video import ffmpeg_exe
    return ffmpeg_exe()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run main.py as a user would, in a fresh process."""
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def snapshot(folder: Path) -> dict[str, str] | None:
    """Every file under ``folder`` with its content hash; None when it does not exist."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory) -> Path:
    """The first 24 frames of a real clip, re-encoded, audio kept (fast extract tests)."""
    out = tmp_path_factory.mktemp("clips") / "katie_24.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(KATIE), "-frames:v", "24", "-c:v", "mpeg4",
                    "-q:v", "3", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def extracted_clips(tmp_path_factory) -> dict[str, Path]:
    """Both shared clips extracted once (default options) into their own workspaces."""
    from extract.runner import ExtractOptions, run_extract
    out = {}
    for name, clip in (("katie", KATIE), ("aoc", AOC)):
        ws = tmp_path_factory.mktemp(f"ws_{name}")
        run_extract(ExtractOptions(input=clip, workspace=ws))
        out[name] = ws
    return out


@pytest.fixture
def ws(base_ws, tmp_path) -> Path:
    """A fresh copy of the requesting module's ``base_ws`` workspace for one test."""
    dst = tmp_path / "ws"
    shutil.copytree(base_ws, dst)
    return dst
