"""The hard test clip (benchmarks/hard_clip.py): the video, its truth, and the coverage measure."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import hard_clip as hc
from pipeline.core.video import FrameReader, probe

from .conftest import KATIE


@pytest.fixture(scope="module")
def sources() -> hc.FaceSources:
    return hc.FaceSources()


@pytest.fixture(scope="module")
def short(tmp_path_factory, sources) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("hard") / "hard.mp4"
    video = hc.render_clip(out, hc.plan_clip(12, 480, 270, seed=3), 480, 270, seed=3, sources=sources)
    return video, json.loads(hc.truth_path(video).read_text())


def test_the_clip_decodes_with_its_frame_count_and_size(short):
    video, truth = short
    info = probe(video)
    assert (info.width, info.height, info.codec, round(info.fps)) == (480, 270, "h264", 25)
    frames = [f for _, f in FrameReader(video, 480, 270)]
    assert len(frames) == 12 == len(truth["frames"]) == truth["count"]
    assert [f["index"] for f in truth["frames"]] == list(range(12))


def test_the_truth_has_small_tilted_faces_two_at_a_time_and_empty_frames(short):
    _, truth = short
    counts = [len(f["faces"]) for f in truth["frames"]]
    assert 0 in counts and 2 in counts and max(counts) == 2
    assert truth["cuts"] and all(0 < c < 12 for c in truth["cuts"])
    faces = [face for f in truth["frames"] for face in f["faces"]]
    for face in faces:
        assert 40 <= face["size"] <= 80
        assert abs(face["angle"]) <= 60
        assert 0 <= face["occluded"] <= 0.45
        x0, y0, x1, y1 = face["box"]
        assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 270
        pts = np.array(face["landmarks"])
        assert pts.shape == (68, 2)
        assert np.allclose(pts.min(0), [x0, y0], atol=0.02) and np.allclose(pts.max(0), [x1, y1], atol=0.02)
    assert len({round(f["angle"]) for f in faces}) > 3                 # the roll changes
    assert any(f["source"]["name"] == "KatieHill" for f in faces)


def test_the_clip_is_the_same_for_a_seed(sources):
    a = hc.plan_clip(40, 960, 540, seed=5)
    b = hc.plan_clip(40, 960, 540, seed=5)
    c = hc.plan_clip(40, 960, 540, seed=6)
    assert [t.poses for s in a for t in s.tracks] == [t.poses for s in b for t in s.tracks]
    assert [t.poses for s in a for t in s.tracks] != [t.poses for s in c for t in s.tracks]


def test_the_pasted_landmarks_are_where_dlib_finds_them(tmp_path, sources):
    """A large upright face: dlib finds it (matched to the truth) and its landmarks near the truth's."""
    poses = [hc.Pose(150.0 + 4 * k, 120.0, 78.0, 0.0) for k in range(3)]
    scene = hc.Scene(0, 2, ("AlexandriaOcasioCortez", 0, 1), [hc.Track("KatieHill", 10, 0, poses)])
    video = hc.render_clip(tmp_path / "easy.mp4", [scene], 320, 240, sources=sources)
    truth = json.loads(hc.truth_path(video).read_text())
    res = hc.measure_coverage(video, truth, "dlib")
    assert (res["faces"], res["found"], res["false"]) == (3, 3, 0)
    assert res["by_size"]["70-80"]["recall"] == 1.0 and res["by_angle"]["0-15"]["recall"] == 1.0
    frame = next(iter(FrameReader(video, 320, 240)))[1]
    found = sources.analyser(frame)
    err = np.linalg.norm(found[0].landmarks - np.array(truth["frames"][0]["faces"][0]["landmarks"]), axis=1)
    assert err.mean() < 0.06 * 78                     # dlib's own wobble at this size, not a wrong transform


def test_matching_is_greedy_by_iou_and_a_false_box_counts_as_false():
    truth: dict = {"frames": [
        {"faces": [{"box": [10, 10, 60, 60], "size": 50, "angle": 5, "occluded": 0.0},
                   {"box": [100, 10, 175, 85], "size": 75, "angle": -40, "occluded": 0.2}]},
        {"faces": []}]}
    found = [[(12, 12, 62, 62), (300, 300, 350, 350), (11, 11, 61, 61)],   # two on face 0, one nowhere
             [(5, 5, 50, 50)]]                                            # in an empty frame
    assert hc.match([f["box"] for f in truth["frames"][0]["faces"]], found[0]) == [(0, 2)]
    res = hc.score_frames(truth, found)
    assert (res["faces"], res["found"], res["false"], res["false_in_empty_frames"]) == (2, 1, 3, 1)
    assert res["recall"] == 0.5
    assert res["by_size"]["40-55"] == {"faces": 1, "found": 1, "recall": 1.0}
    assert res["by_size"]["70-80"] == {"faces": 1, "found": 0, "recall": 0.0}
    assert res["by_angle"]["35-60"]["found"] == 0 and res["by_cover"]["occluded"]["faces"] == 1
    # IoU just under the threshold is a miss and a false detection
    assert hc.iou((0, 0, 10, 10), (0, 0, 10, 3.2)) < 0.33
    res = hc.score_frames({"frames": [truth["frames"][0]]}, [[(10, 10, 60, 25)]], threshold=0.33)
    assert (res["found"], res["false"]) == (0, 1)


def test_the_background_has_no_face(sources):
    sources.load([("KatieHill", 0)])
    back = hc.make_background(sources, ("KatieHill", 0, 0), 480, 270)
    assert not sources.analyser(np.clip(back, 0, 255).astype(np.uint8))


def test_photos_have_a_face_found_once(sources):
    sources.load([("obama", 0)])
    image, lm = sources.get("obama", 0)
    assert image.ndim == 3 and lm.shape == (68, 2)
    assert KATIE.exists()
