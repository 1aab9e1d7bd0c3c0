"""main.py evaluate: numbers that mean what they say, reports that survive odd input."""
import json
import subprocess

import numpy as np
import pytest

from evaluate import metrics
from pipeline.core import geometry
from tests.conftest import AOC, ffmpeg, run_cli

pytestmark = pytest.mark.slow      # runs commands end to end: not in the quick selection


@pytest.fixture(scope="module")
def aoc_short(tmp_path_factory):
    out = tmp_path_factory.mktemp("aoc") / "aoc_24.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(AOC), "-frames:v", "24", "-c:v", "mpeg4", "-q:v", "3",
                    "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


def _report(ws):
    return json.loads((ws / "report" / "report.json").read_text())


def test_the_dst_clip_against_itself(tmp_path, short_clip):
    ws = tmp_path / "ws"
    assert run_cli("extract", "--input", short_clip, "--workspace", ws).returncode == 0
    res = run_cli("evaluate", "--workspace", ws, "--video", short_clip)
    assert res.returncode == 0, res.stderr
    rep = _report(ws)
    assert rep["reference"] == str(short_clip.resolve())          # default: the dst input
    assert rep["identity_to_dst"]["worst"] < 1e-6 and rep["identity_to_dst"]["count"] == 24
    assert rep["expression"]["worst"] < 1e-9 and rep["pose"]["worst"] < 1e-9
    assert rep["ssim"]["worst"] > 0.999999
    assert rep["jitter"]["output"] == pytest.approx(rep["jitter"]["reference"]) and rep["jitter"]["output"] > 0
    assert rep["seam_delta_e"]["output"] == pytest.approx(rep["seam_delta_e"]["reference"])
    cov = rep["coverage"]
    assert cov["frames_in"] == cov["frames_out"] == cov["frames_compared"] == 24
    assert cov["frames_swapped"] == 0 and cov["frames_passed_through"] == 24
    assert cov["audio_in"] and cov["audio_out"] and cov["fps_in"] == cov["fps_out"] == 25.0
    assert rep["identity_to_src"]["count"] == 0 and any("src" in n for n in rep["notes"])
    # realism: the reference against itself
    assert rep["sharpness"]["worst"] == pytest.approx(1.0) and rep["sharpness"]["count"] == 24
    assert rep["fringing"]["worst"] == pytest.approx(1.0) and rep["tone_delta_e"]["worst"] < 1e-6
    held = rep["identity_held_apart"]
    assert held["to_dst"]["worst"] < 1e-6 and held["to_dst"]["count"] == 24 and held["to_src"]["count"] == 0
    assert held["share_closer_to_src"] is None and held["threshold"] == pytest.approx(0.92)
    assert "FaceNet" in held["network"] and held["trained_network_fooled"] is False
    assert set(rep["per_frame"][0]) >= {"sharpness", "fringing", "tone_delta_e", "held_apart_to_src",
                                        "held_apart_to_dst", "eyes_output", "eyes_reference", "mouth_output"}
    # blinks and mouth: the clip follows itself exactly
    for key in ("eyes", "mouth"):
        assert rep[key]["frames"] == 24 and rep[key]["mean_abs_difference"] < 1e-9
        assert rep[key]["closed_in_original_open_in_result"] == rep[key]["open_in_original_closed_in_result"] == 0
    assert rep["eyes"]["correlation"] == pytest.approx(1.0)
    assert all(r["frames"] == 0 and r["output"] is None for r in rep["regions"].values())     # no src set
    # the printed table and the page
    assert "identity_to_dst" in res.stdout and "report:" in res.stdout
    html = (ws / "report" / "index.html").read_text()
    assert html.count("data:image/jpeg;base64") >= 8
    assert "Eyes (blinks)" in html and "Eye openness over time" in html and "eyes:" in res.stdout
    # provenance (issue 30): the dst clip carries no credentials and no watermark
    prov = rep["provenance"]
    assert prov["credentials"]["found"] is False and not prov["watermark_frames_marked"]
    assert "<h2>Provenance</h2>" in html and "none found" in html


def test_another_person_is_far_from_dst_and_close_to_src(tmp_path, short_clip, aoc_short):
    ws = tmp_path / "ws"
    assert run_cli("extract", "--input", short_clip, "--workspace", ws).returncode == 0
    assert run_cli("extract", "--input", aoc_short, "--set", "src", "--workspace", ws).returncode == 0
    res = run_cli("evaluate", "--workspace", ws, "--video", aoc_short)
    assert res.returncode == 0, res.stderr
    rep = _report(ws)
    src, dst = rep["identity_to_src"], rep["identity_to_dst"]
    assert src["count"] == dst["count"] == 24
    assert src["mean"] < 0.45 and dst["mean"] > 0.7 and src["worst"] < dst["mean"]
    assert rep["coverage"]["frames_swapped"] == 24            # every face differs from the original
    assert rep["ssim"]["mean"] < 0.8 and rep["expression"]["mean"] > 0.05
    held = rep["identity_held_apart"]                         # FaceNet agrees: this is the src person
    assert held["to_src"]["count"] == held["to_dst"]["count"] == 24
    assert held["to_src"]["worst"] < 0.92 < held["to_dst"]["worst"]
    assert held["share_closer_to_src"] == 1.0 and rep["identity_trained_against"]["share_closer_to_src"] == 1.0
    # colour by region: the src person's own frames match their own regions; the original person's do not
    regions = rep["regions"]
    assert set(regions) == {"brows", "eyes", "nose", "lips", "cheeks"}
    # (the src person's own frames still differ a little from their median: blinks, mouth, compression)
    assert all(r["frames"] == 24 and r["output"] < 4.0 for r in regions.values()), regions
    assert sum(r["original"] > r["output"] + 2.0 for r in regions.values()) >= 3, regions
    # each part against the face's own skin (light cancels): the src person's frames match their own
    # part-to-skin colour, the original person's brows, eyes and lips do not
    parts = {name: r for name, r in regions.items() if name != "cheeks"}
    assert "output_vs_skin" not in regions["cheeks"]
    # (measured: the src person's own frames 0.7-3.9, the original person's 5.4-15.1)
    assert all(r["output_vs_skin"] < 4.0 for r in parts.values()), regions
    assert sum(r["original_vs_skin"] > r["output_vs_skin"] + 4.0 for r in parts.values()) >= 3, regions
    assert "regions against the face's own skin" in res.stdout
    assert "output, against its skin" in (ws / "report" / "index.html").read_text()
    assert held["trained_network_fooled"] is False
    assert rep["tone_delta_e"]["mean"] > 3                    # another person's skin


def test_fewer_frames_and_no_audio_are_reported(tmp_path, short_clip):
    cut = tmp_path / "cut.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(short_clip), "-frames:v", "15", "-an", "-c:v", "mpeg4",
                    "-q:v", "2", str(cut)], check=True)
    res = run_cli("evaluate", "--workspace", tmp_path / "ws", "--video", cut, "--reference", short_clip)
    assert res.returncode == 0, res.stderr
    rep = _report(tmp_path / "ws")
    cov = rep["coverage"]
    assert (cov["frames_in"], cov["frames_out"], cov["frames_compared"]) == (24, 15, 15)
    assert cov["audio_in"] is True and cov["audio_out"] is False
    notes = " ".join(rep["notes"])
    assert "9 frames missing" in notes and "no audio" in notes


def test_a_video_without_faces_gets_a_report_not_a_crash(tmp_path, short_clip):
    blank = tmp_path / "blank.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=512x512:r=25:d=1",
                    "-c:v", "mpeg4", str(blank)], check=True)
    res = run_cli("evaluate", "--workspace", tmp_path / "ws", "--video", blank, "--reference", short_clip)
    assert res.returncode == 0, res.stderr
    rep = _report(tmp_path / "ws")
    assert rep["identity_to_dst"]["count"] == 0 and rep["identity_to_dst"]["mean"] is None
    assert rep["jitter"]["output"] is None and rep["jitter"]["reference"] is not None
    assert any("no face found in any frame of the output" in n for n in rep["notes"])
    assert rep["coverage"]["frames_face_missing_in_output"] == 24
    assert (tmp_path / "ws" / "report" / "index.html").exists()


def test_missing_inputs_give_one_line_errors(tmp_path, short_clip):
    res = run_cli("evaluate", "--workspace", tmp_path / "ws", "--video", short_clip)
    assert res.returncode != 0 and "no dst set" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("evaluate", "--workspace", tmp_path / "ws", "--reference", short_clip)
    assert res.returncode != 0 and "result.mp4 does not exist" in res.stderr
    assert not (tmp_path / "ws").exists()


# ------------------------------------------------------------------ the metrics themselves

def _face(scale=100.0, offset=(256.0, 256.0)):
    return geometry.mean_face() * scale + np.array(offset) - scale / 2


def test_ssim_is_one_for_identical_and_lower_for_noise():
    import cv2
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), (0, 0), 3)  # smooth, like skin
    mask = np.zeros((128, 128), np.uint8)
    mask[30:90, 30:90] = 255
    assert metrics.ssim_in_mask(img, img, mask) == pytest.approx(1.0)
    slight = np.clip(img.astype(int) + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    noisy = np.clip(img.astype(int) + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    s_slight, s_noisy = metrics.ssim_in_mask(slight, img, mask), metrics.ssim_in_mask(noisy, img, mask)
    assert 1.0 > s_slight > s_noisy and s_noisy < 0.5


def test_seam_measures_a_colour_step_at_the_mask_border():
    pts = _face(200)
    mask = metrics.face_mask(pts, (512, 512))
    flat = np.full((512, 512, 3), 150, np.uint8)
    assert metrics.seam_delta_e(flat, mask, 6) == pytest.approx(0.0, abs=1e-3)
    stepped = flat.copy()
    stepped[mask > 0] = (190, 150, 150)             # a reddish face pasted on grey
    import cv2
    lab = cv2.cvtColor(np.array([[[150, 150, 150], [190, 150, 150]]], np.float32) / 255, cv2.COLOR_RGB2Lab)[0]
    assert metrics.seam_delta_e(stepped, mask, 6) == pytest.approx(float(np.linalg.norm(lab[0] - lab[1])), rel=0.02)


def test_jitter_is_zero_for_smooth_motion_and_grows_with_noise():
    rng = np.random.default_rng(1)
    smooth = [_face(100, (200 + 3 * t, 250 + 0.5 * t)) for t in range(20)]
    assert max(v for v in metrics.second_difference_jitter(smooth) if v is not None) < 1e-9
    shaky = [p + rng.normal(0, 1.0, p.shape) for p in smooth]
    shakier = [p + rng.normal(0, 3.0, p.shape) for p in smooth]
    j1 = metrics.rms(metrics.second_difference_jitter(shaky))
    j3 = metrics.rms(metrics.second_difference_jitter(shakier))
    assert 0 < j1 < j3 and j3 / j1 == pytest.approx(3.0, rel=0.2)


def test_expression_error_is_in_eye_distances():
    ref = _face(100)
    assert metrics.expression_error(ref, ref) == 0.0
    moved = ref + np.array([metrics.eye_distance(ref) * 0.1, 0.0])
    assert metrics.expression_error(moved, ref) == pytest.approx(0.1)


def _blink(face, amount):
    """``face`` with both upper lids moved ``amount`` of the way down to the lower lids (1 = shut)."""
    out = face.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        out[upper] = face[upper] + amount * (face[lower] - face[upper])
    return out


def test_a_blink_the_output_does_not_follow_is_counted_and_lowers_the_correlation():
    face = _face(100)
    open_eyes = metrics.eye_openness(face)
    assert metrics.eye_openness(_blink(face, 0.9)) < 0.2 * open_eyes
    lids = [0.0, 0.1, 0.0, 0.95, 0.9, 0.95, 0.0, 0.05, 0.0, 0.1]        # the original blinks at frames 3-5
    reference = [metrics.eye_openness(_blink(face, a)) for a in lids]
    followed = list(reference)
    kept_open = [metrics.eye_openness(_blink(face, 0.0 if i in (3, 4, 5) else a)) for i, a in enumerate(lids)]
    good = metrics.agreement(reference, followed, None, "eyes")
    assert good["correlation"] == pytest.approx(1.0) and good["closed_in_original"] == 3
    assert good["closed_in_original_open_in_result"] == 0
    lost = metrics.agreement(reference, kept_open, None, "eyes")
    assert lost["closed_in_original_open_in_result"] == 3 and lost["open_in_original_closed_in_result"] == 0
    assert lost["correlation"] < 0.5
    nothing = metrics.agreement([None] * 3, [0.3] * 3, None, "eyes")
    assert nothing["frames"] == 0 and nothing["correlation"] is None


def test_mouth_openness_is_the_inner_lip_gap_over_the_mouth_width():
    face = _face(100)
    closed = face.copy()
    closed[[61, 62, 63]] = (face[[61, 62, 63]] + face[[67, 66, 65]]) / 2     # inner lips meet
    closed[[67, 66, 65]] = closed[[61, 62, 63]]
    assert metrics.mouth_openness(closed) == pytest.approx(0.0, abs=1e-9)
    opened = face.copy()
    width = np.linalg.norm(face[60] - face[64])
    opened[[65, 66, 67]] = face[[63, 62, 61]] + np.array([0.0, 0.3 * width])
    assert metrics.mouth_openness(opened) == pytest.approx(0.3, abs=0.02)


def test_a_recoloured_nose_moves_the_nose_region_only():
    from evaluate import regions
    face = _face(200)
    image = np.full((512, 512, 3), (200, 160, 140), np.uint8)          # skin everywhere
    src = regions.src_medians([regions.region_colours(image, face)])
    painted = image.copy()
    painted[regions.region_masks(face, image.shape)["nose"] > 0] = (230, 120, 60)   # an orange-brown cast
    de = regions.delta_e(regions.region_colours(painted, face), src)
    assert de["nose"] > 20
    assert all(de[name] < 3 for name in ("brows", "eyes", "lips")), de
    assert regions.delta_e(regions.region_colours(image, face), src)["nose"] == pytest.approx(0.0, abs=1e-6)
