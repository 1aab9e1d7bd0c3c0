"""The evaluate report page: self-contained, every image decodes in a real browser, and the
terminal table says the same thing."""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluate.html_report import format_table, render_html

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KATIE = DATA / "videos" / "WDA_KatieHill_000.mp4"
SIZE = 512
FRAMES = (0, 100, 199)


def _decode_frames(video: Path, frames: tuple[int, ...]) -> list[np.ndarray]:
    """Chosen frames of a real clip as RGB arrays, through the ffmpeg binary."""
    import imageio_ffmpeg
    select = "+".join(f"eq(n\\,{i})" for i in frames)
    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(video), "-vf", f"select={select}",
         "-fps_mode", "passthrough", "-s", f"{SIZE}x{SIZE}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True, timeout=60).stdout
    arr = np.frombuffer(raw, np.uint8)
    assert arr.size == len(frames) * SIZE * SIZE * 3, "ffmpeg did not return the frames asked for"
    return list(arr.reshape(len(frames), SIZE, SIZE, 3))


def _jpg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


NOTES = ["output has 150 frames, reference 200: only the first 150 were compared",
         "output has no audio track, the reference has one"]


def _report() -> dict:
    return {
        "video": "/work/out/katie_swapped.mp4",
        "reference": str(KATIE),
        "workspace": "/work/ws/katie <test & \"quotes\">",
        "identity_to_src": {"mean": 0.4213, "median": 0.4102, "worst": 0.7121, "count": 148},
        "identity_to_dst": {"mean": 0.6811, "median": 0.69, "worst": 0.8034, "count": 148},
        "expression": {"mean": 0.0412, "median": 0.0388, "worst": 0.1271, "count": 148},
        "pose": {"mean": None, "median": None, "worst": None, "count": 0},
        "ssim": {"mean": 0.8123, "median": 0.8231, "worst": 0.5534, "count": 148},
        "jitter": {"output": 0.01234, "reference": 0.00876},
        "seam_delta_e": {"output": 6.42, "reference": None},
        "coverage": {"frames_in": 200, "frames_out": 150, "frames_compared": 150, "frames_swapped": 148,
                     "frames_passed_through": 2, "frames_face_missing_in_output": 2,
                     "fps_in": 25.0, "fps_out": 25.0, "duration_in": 8.0, "duration_out": 6.0,
                     "audio_in": True, "audio_out": False},
        "notes": list(NOTES),
        "per_frame": [],
    }


def _series(n: int = 150) -> dict[str, list[float | None]]:
    rng = np.random.default_rng(0)
    src = [float(0.42 + 0.05 * np.sin(i / 9) + 0.02 * rng.standard_normal()) for i in range(n)]
    dst = [float(0.69 + 0.04 * np.cos(i / 13) + 0.02 * rng.standard_normal()) for i in range(n)]
    jo = [None] + [float(abs(0.012 + 0.004 * rng.standard_normal())) for _ in range(n - 2)] + [None]
    jr = [None] + [float(abs(0.009 + 0.003 * rng.standard_normal())) for _ in range(n - 2)] + [None]
    for i in (40, 41, 42, 97):  # frames where the face was missing: gaps in every line
        src[i] = dst[i] = jo[i] = jr[i] = None
    return {"identity_to_src": src, "identity_to_dst": dst, "jitter_output": jo, "jitter_reference": jr}


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    frames = _decode_frames(KATIE, FRAMES)
    whys = ["evenly spaced", "worst identity", "worst jitter"]
    out = []
    for idx, rgb, why in zip(FRAMES, frames, whys):
        swapped = cv2.GaussianBlur(rgb, (9, 9), 0)  # stands in for the swapped frame
        out.append({"frame": idx, "why": why, "reference_jpg": _jpg(rgb), "output_jpg": _jpg(swapped),
                    "caption": f"identity to src 0.41, ssim 0.81 <frame {idx}>"})
    return out


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browser_title(page: Path, profile: Path) -> str:
    """Load the page in headless Chromium and return the <title> of the DOM after load."""
    exe = _chromium()
    if exe is None:
        if os.environ.get("REQUIRE_CHROMIUM") == "1":
            pytest.fail("REQUIRE_CHROMIUM=1 but no chromium / chromium-browser on PATH: "
                        "install it (apt-get install chromium)")
        pytest.skip("chromium not installed")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
           page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    m = re.search(r"<title>(.*?)</title>", proc.stdout, re.S | re.I)
    assert m, f"no <title> in chromium's DOM (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return html.unescape(m.group(1)).strip()


def test_page_is_self_contained_with_images_plots_and_notes(tmp_path, samples):
    page = tmp_path / "report" / "index.html"  # parent folder does not exist yet
    render_html(_report(), samples, _series(), page)
    assert page.is_file()
    assert [p.name for p in page.parent.iterdir()] == ["index.html"]  # no temp file left
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    imgs = re.findall(r"<img\b[^>]*>", text, re.I)
    assert len(imgs) == 6
    assert all('src="data:image/jpeg;base64,' in i for i in imgs)
    assert len(re.findall(r"<svg\b", text, re.I)) == 5     # identity, held-apart identity, realism, jitter, eyes
    for note in NOTES:
        assert html.escape(note) in text
    assert "<frame 0>" not in text and "&lt;frame 0&gt;" in text  # captions are escaped
    assert "&lt;test &amp; &quot;quotes&quot;&gt;" in text


def test_every_image_loads_in_headless_chromium(tmp_path, samples):
    page = tmp_path / "index.html"
    render_html(_report(), samples, _series(), page)
    assert _browser_title(page, tmp_path / "profile") == "report-ok images=6"


def test_self_check_reports_a_broken_image(tmp_path, samples):
    bad = [dict(s) for s in samples]
    bad[1]["output_jpg"] = b"\xff\xd8 this is not a jpeg"
    page = tmp_path / "index.html"
    render_html(_report(), bad, _series(), page)
    assert _browser_title(page, tmp_path / "profile") == "report-broken loaded=5 of 6"


def test_format_table_names_every_metric_and_dashes_missing_values():
    table = format_table(_report())
    for name in ("identity_to_src", "identity_to_dst", "expression", "pose", "ssim", "jitter",
                 "seam_delta_e", "coverage", "audio"):
        assert name in table
    lines = table.splitlines()
    assert all(len(line) < 100 for line in lines)
    pose = next(line for line in lines if line.startswith("pose"))
    assert pose.split() == ["pose", "-", "-", "-", "0"]
    seam = next(line for line in lines if line.startswith("seam_delta_e"))
    assert seam.split() == ["seam_delta_e", "6.42", "-", "-"]
    ident = next(line for line in lines if line.startswith("identity_to_src"))
    assert ident.split()[1:5] == ["0.421", "0.410", "0.712", "148"]
    assert NOTES[0].split(":")[0] in table
