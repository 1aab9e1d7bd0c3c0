"""Gap bridging on real frames with detections removed on purpose."""
import hashlib
import subprocess

import numpy as np
import pytest

from extract.bridging import GapBridger
from extract.options import ExtractOptions
from extract.runner import run_extract
from pipeline.faces.analyser import FoundFace
from pipeline.registries import DETECTORS
from pipeline.workspace.records import FaceOrigin
from pipeline.workspace.store import Workspace
from tests.conftest import detector, ffmpeg, landmarker

pytestmark = pytest.mark.slow      # runs commands end to end: not in the quick selection


@pytest.fixture(scope="module")
def frames(short_clip):
    from pipeline.core.video import SWS_FLAGS  # the frames exactly as extract's FrameReader decodes them
    raw = subprocess.run([ffmpeg(), "-v", "error", "-i", str(short_clip), *SWS_FLAGS, "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 512, 512, 3)


@pytest.fixture(scope="module")
def detections(frames):
    det, lm = detector(), landmarker()
    out = []
    for f in frames:
        out.append([FoundFace(d.box, lm.landmarks(f, d.box), d.score, "detected") for d in det.detect(f)])
    assert all(len(d) == 1 for d in out)
    return out


def _run(frames, detections, missing: set[int], max_gap: int = 5, blank: set[int] = frozenset()):
    bridger = GapBridger(landmarker(), max_gap=max_gap)
    released = []
    for i, f in enumerate(frames):
        image = np.zeros_like(f) if i in blank else f
        faces = [] if i in missing else [FoundFace(d.box, d.landmarks, d.score, "detected") for d in detections[i]]
        released += bridger.push(i, None, faces, image)
    released += bridger.finish()
    assert [r[0] for r in released] == list(range(len(frames)))   # every frame, in order
    return {i: faces for i, _, faces in released}, bridger


def test_a_gap_between_detections_is_bridged_close_to_the_truth(frames, detections):
    out, bridger = _run(frames, detections, missing={5, 6, 7})
    assert bridger.bridged == 3
    for i in (5, 6, 7):
        assert [f.origin for f in out[i]] == ["bridged"]
        err = np.linalg.norm(out[i][0].landmarks - detections[i][0].landmarks, axis=1).mean()
        assert err < 3.0, f"frame {i}: bridged landmarks {err:.2f} px from the detector's"
        assert out[i][0].track == out[4][0].track == out[8][0].track


def test_no_bridge_without_a_detection_after_the_gap(frames, detections):
    out, bridger = _run(frames, detections, missing=set(range(20, 24)))
    assert bridger.bridged == 0 and all(out[i] == [] for i in range(20, 24))


def test_no_bridge_across_a_gap_longer_than_the_limit(frames, detections):
    out, bridger = _run(frames, detections, missing=set(range(5, 12)), max_gap=5)
    assert bridger.bridged == 0 and all(out[i] == [] for i in range(5, 12))


def test_a_frame_without_a_face_is_not_bridged(frames, detections):
    out, _ = _run(frames, detections, missing={5, 6}, blank={5, 6})
    assert out[5] == [] and out[6] == []


HIDDEN: set[str] = set()


class FlakyDetector:
    """dlib's HOG detector that 'misses' the frames whose hashes are in HIDDEN."""

    def __init__(self, upsample: str = "auto", min_face: int = 80) -> None:
        self.inner = detector("dlib", upsample, min_face)
        self.description = "dlib HOG, blind in some frames (test)"

    def detect(self, img, thorough=True):
        if hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest() in HIDDEN:
            return []
        return self.inner.detect(img, thorough)


def test_extract_reports_and_indexes_bridged_faces(tmp_path, short_clip, frames):
    """Through the whole runner: the detector 'misses' frames 10 and 11."""
    from pipeline.core.registry import Entry
    HIDDEN.clear()
    HIDDEN.update(hashlib.sha1(frames[i].tobytes()).hexdigest() for i in (10, 11))
    DETECTORS.register(Entry("flaky", "tests.test_bridging:FlakyDetector", "misses frames 10 and 11"))
    try:
        summary = run_extract(ExtractOptions(input=short_clip, workspace=tmp_path / "ws", detector="flaky"))
    finally:
        DETECTORS.unregister("flaky")
    assert summary.bridged == 2 and summary.detected == 22 and summary.without_face == 0
    assert "2 bridged" in summary.line()
    all_rows = Workspace(tmp_path / "ws").faces("dst")
    rows = [r for r in all_rows if r.origin == FaceOrigin.BRIDGED]
    assert [r.frame_index for r in rows] == [10, 11]
    assert len({r.track for r in all_rows}) == 1
    assert all(len(r.landmarks) == 68 for r in rows)


def test_a_small_fast_face_is_bridged_where_its_motion_takes_it_and_never_twice(frames):
    """A 100 px face crossing the frame at 24 px a frame (more than the 0.25 template units a
    still face may move): found again along its path, with one face per frame."""
    import cv2
    face = cv2.resize(frames[0], (200, 200), interpolation=cv2.INTER_AREA)
    clip = []
    for t in range(12):
        canvas = np.full((360, 640, 3), 40, np.uint8)
        x = 40 + 24 * t
        canvas[80:280, x:x + 200] = face
        clip.append(canvas)
    det, mp = detector("retinaface", min_face=40), landmarker("mediapipe")
    found = [[FoundFace(d.box, mp.shape(f, d.box, d.points).landmarks, d.score, "detected") for d in det.detect(f)]
             for f in clip]
    assert all(len(d) == 1 for d in found)
    bridger = GapBridger(mp, max_gap=5)
    released = []
    for i, f in enumerate(clip):
        released += bridger.push(i, None, [] if i in (5, 6) else found[i], f)
    released += bridger.finish()
    out = {i: faces for i, _, faces in released}
    assert bridger.bridged == 2 and all(len(out[i]) == 1 for i in range(12))
    for i in (5, 6):
        assert out[i][0].origin == "bridged" and out[i][0].track == out[4][0].track == out[7][0].track
        err = np.linalg.norm(out[i][0].landmarks - found[i][0].landmarks, axis=1).mean()
        assert err < 3.0, f"frame {i}: {err:.2f} px from where the detector puts the face"
