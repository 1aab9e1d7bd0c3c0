"""Issue 27's multi-shot clip (benchmarks/real_footage.py): its truth must describe the video it wrote.

The benchmark's verdicts (people merged or split, AOC's frames untouched, faces swapped) are only as
good as the truth's boxes, persons and cuts, so a short version (4 frames per shot, 24 in all) is
built and checked against the decoded video: a detector finds faces at the boxes, the pixels in each
box are the named person's source face, the cuts are where the picture jumps, and shot C's faces are
60-110 px and dark. The full pipeline is not run here (minutes); ``python -m benchmarks.real_footage``
does that.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from benchmarks import real_footage as rf
from benchmarks.hard_clip import FaceSources
from pipeline.core.errors import UserError
from pipeline.core.video import FrameReader, probe


@pytest.fixture(scope="module")
def sources() -> FaceSources:
    return FaceSources()


@pytest.fixture(scope="module")
def built(tmp_path_factory, sources):
    clip = rf.make_clip(tmp_path_factory.mktemp("real_footage") / "clip.mp4", rf.SHORT_SHOTS, sources=sources)
    info = probe(clip)
    frames = [f.copy() for _, f in FrameReader(clip, info.width, info.height)]
    return clip, rf.load_truth(clip), frames, info


def test_clip_format_shots_and_cuts(built):
    clip, truth, frames, info = built
    assert (info.width, info.height, info.codec, round(info.fps)) == (640, 360, "h264", 25)
    assert len(frames) == truth["count"] == 24 == len(truth["frames"])
    assert truth["cuts"] == [4, 8, 12, 16, 20]
    assert [f["shot"] for f in truth["frames"]] == [s for s in "ABCDEF" for _ in range(4)]
    persons = [sorted(x["person"] for x in f["faces"]) for f in truth["frames"]]
    assert persons == [[0]] * 4 + [[1]] * 4 + [[0]] * 12 + [[0, 1]] * 4
    # the picture jumps at every cut; inside a shot it moves a little (most: shot E's roll, ~8 degrees a
    # frame in this short version, a mean step of ~28 grey levels; a talking head 2-6)
    steps = [float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) for a, b in zip(frames, frames[1:])]
    at_cuts = [steps[c - 1] for c in truth["cuts"]]
    inside = [s for i, s in enumerate(steps) if i + 1 not in truth["cuts"]]
    assert min(at_cuts) > max(30.0, 5 * float(np.median(inside))), (at_cuts, inside)


def test_small_shot_is_small_and_dark_and_the_others_large(built):
    _, truth, frames, _ = built
    for f, image in zip(truth["frames"], frames):
        (face, *_) = f["faces"]
        if f["shot"] == "C":
            assert 55 <= face["width"] <= 115, face
            x0, y0, x1, y1 = (int(v) for v in face["box"])
            assert image[y0:y1, x0:x1].mean() < 90                      # stage-dark (lit: ~140)
        elif f["shot"] in "ABD":
            assert 150 <= face["width"] <= 220, face
    rolls = [f["faces"][0]["roll"] for f in truth["frames"] if f["shot"] == "E"]
    assert rolls[0] == rf.ROLL[0] and rolls[-1] == rf.ROLL[1]
    covered = [f["faces"][0] for f in truth["frames"] if f["shot"] == "D"]
    assert any(c["microphone"] for c in covered) and max(c["covered"] for c in covered) > 0.02


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_a_detector_finds_the_faces_at_the_truth_boxes(built, sources):
    """dlib (the truth's own landmarker, run on the finished frame) puts its landmarks in the truth box of
    every lit upright face: the paste transform and the boxes agree to within the encoding's softening."""
    _, truth, frames, _ = built
    for f, image in zip(truth["frames"], frames):
        if f["shot"] not in "ABDF":
            continue
        found = [rf._box(np.asarray(x.landmarks)) for x in sources.analyser(image)]
        for face in f["faces"]:
            best = max((_iou(face["box"], b) for b in found), default=0.0)
            assert best > 0.6, (f["index"], face, found)


def test_each_box_shows_the_named_person(built, sources):
    """The pixels in a box are the named person's source face (correlation with the source crop), and
    clearly less like the other person's face from the same source frame number."""
    _, truth, frames, _ = built
    first = {s["name"]: {x["person"]: x["first_source_frame"] for x in s["sources"]} for s in truth["shots"]}
    start = {s["name"]: s["first"] for s in truth["shots"]}

    def crop_from_source(person: int, index: int, size: tuple[int, int]) -> np.ndarray:
        img, lm = sources.get(rf.SOURCE[person], index)
        x0, y0, x1, y1 = (int(round(v)) for v in rf._box(lm))
        return cv2.resize(img[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA).astype(np.float32)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    for f, image in zip(truth["frames"], frames):
        if f["shot"] not in "ABF":
            continue
        k = f["index"] - start[f["shot"]]
        for face in f["faces"]:
            x0, y0, x1, y1 = (int(round(v)) for v in face["box"])
            here = image[y0:y1, x0:x1].astype(np.float32)
            own = crop_from_source(face["person"], first[f["shot"]][face["person"]] + k, (x1 - x0, y1 - y0))
            other = 1 - face["person"]
            theirs = crop_from_source(other, k, (x1 - x0, y1 - y0))
            assert corr(here, own) > 0.9 and corr(here, own) > corr(here, theirs) + 0.1, f["index"]


def test_bad_shots_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="shots"):
        rf.make_clip(tmp_path / "x.mp4", {"Z": 3})
    with pytest.raises(UserError, match="200"):
        rf.make_clip(tmp_path / "x.mp4", {"A": 150, "C": 60})
