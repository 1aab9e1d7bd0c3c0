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
#: convert marks every result with this machine's watermark key: the tests (and the commands they run) use one
#: of their own, made on first use, never the user's
os.environ.setdefault("FACE_WATERMARK_KEY", str(Path(__import__("tempfile").mkdtemp(prefix="wmkey-")) / "key"))
#: the face-recognition graph for ONNX Runtime is exported once for the whole run, never into the home folder
os.environ.setdefault("FACE_CACHE_DIR", str(Path(__import__("tempfile").mkdtemp(prefix="fscache-"))))
#: ... and signs its content credentials with this machine's self-signed key: the tests make one of their own
os.environ.setdefault("FACE_SIGNING_DIR", str(Path(__import__("tempfile").mkdtemp(prefix="c2pa-")) / "signing"))

#: The first 6 frames of KATIE (kept in the repository with the version-1 workspace made from them)
CLIP6 = ROOT / "tests" / "data" / "workspace_v1_input" / "clip.mp4"


#: A schema-1 workspace made by the tool itself, and the clip it was made from (tests/data/README.md)
V1_WORKSPACE = ROOT / "tests" / "data" / "workspace_v1"


def copy_v1_workspace(tmp_path: Path) -> Path:
    """A fresh copy of the version-1 test workspace, its input paths pointed at this machine."""
    import json
    ws = tmp_path / "ws"
    shutil.copytree(V1_WORKSPACE, ws)
    meta = json.loads((ws / "workspace.json").read_text())
    meta["sets"]["dst"]["input"] = str(CLIP6)            # the paths of the machine that made it
    meta["sets"]["src"]["input"] = str(tmp_path / "photos")
    (ws / "workspace.json").write_text(json.dumps(meta, indent=2))
    return ws


def detector(name: str = "dlib", upsample: str = "auto", min_face: int = 80):
    """A registered face detector, as extract creates it."""
    from pipeline.registries import DETECTORS
    return DETECTORS.load(name)(upsample=upsample, min_face=min_face)


def landmarker(name: str = "dlib"):
    from pipeline.registries import LANDMARKERS
    return LANDMARKERS.load(name)()


def ffmpeg() -> str:
    from pipeline.core.video import ffmpeg_exe
    return ffmpeg_exe()


def default_sigint() -> None:
    """For a child process: Ctrl-C as a terminal delivers it, whatever the test run inherited.

    A test suite started in the background by a non-interactive shell (``cmd &``) inherits
    SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    """
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
def hill_frame_90() -> tuple:
    """Frame 90 of the Hill clip (RGB) and its one face's 68 landmarks, as extract's default analysis finds them."""
    from pipeline.core.video import FrameReader, probe
    from pipeline.faces.analyser import FaceAnalyser
    info = probe(KATIE)
    frame = next(f for i, f in FrameReader(KATIE, info.width, info.height) if i == 90)
    found = FaceAnalyser("retinaface", "mediapipe", "auto", 80)(frame)
    assert len(found) == 1
    frame.flags.writeable = False
    return frame, found[0].landmarks


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
    from extract.options import ExtractOptions
    from extract.runner import run_extract
    out = {}
    for name, clip in (("katie", KATIE), ("aoc", AOC)):
        ws = tmp_path_factory.mktemp(f"ws_{name}")
        run_extract(ExtractOptions(input=clip, workspace=ws))
        out[name] = ws
    return out


def copy_workspace(template: Path, folder: Path, name: str) -> Path:
    """A copy of a prepared workspace that one test may change."""
    dst = folder / name
    shutil.copytree(template, dst)
    return dst


@pytest.fixture
def ws(base_ws, tmp_path) -> Path:
    """A fresh copy of the requesting module's ``base_ws`` workspace for one test."""
    return copy_workspace(base_ws, tmp_path, "ws")


def clean_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """The one 'error:' line of a failed command (no traceback), containing every needle."""
    assert res.returncode != 0, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def write_tiny_model(folder: Path, face_type: str = "full", width: int = 4) -> None:
    """An untrained transformation network as a trained model (for convert tests)."""
    import torch

    from pipeline.models.store import save_model
    from pipeline.models.transform import TransformModel
    from pipeline.models.transform_net import TransformNet
    torch.manual_seed(0)
    save_model(folder, TransformModel(TransformNet(128, width=width)), {"face_type": face_type, "iteration": 0})


@pytest.fixture(scope="session")
def small_ws_template(tmp_path_factory) -> Path:
    """dst: the 6-frame clip at 128 px; src: two photos; a tiny model. Copy it before use."""
    ws = tmp_path_factory.mktemp("small") / "ws"
    photos = ws.parent / "photos"
    photos.mkdir()
    for name in ("obama2.jpg", "obama3.jpg"):
        shutil.copy(PHOTOS / name, photos / name)
    assert run_cli("extract", "--input", CLIP6, "--workspace", ws, "--size", "128").returncode == 0
    assert run_cli("extract", "--input", photos, "--workspace", ws, "--size", "128").returncode == 0
    write_tiny_model(ws / "model")
    return ws


@pytest.fixture
def small_ws(small_ws_template, tmp_path) -> Path:
    return copy_workspace(small_ws_template, tmp_path, "small_ws")
