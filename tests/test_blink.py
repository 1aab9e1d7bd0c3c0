"""convert.blink: the dst's blinks carried into the swap, on Hill's real blinks (frames 24-34, 112-113, 170-173)."""
import cv2
import numpy as np
import pytest

from convert import blink
from pipeline.core import geometry
from pipeline.core.video import FrameReader, probe
from pipeline.workspace.store import Workspace
from tests.conftest import KATIE, copy_workspace, write_tiny_model

OPEN, SHUT = 22, 170


@pytest.fixture(scope="module")
def frames():
    """Frames 22 (eyes open) and 170 (shut) of the dst clip with their 68 landmarks."""
    from pipeline.faces.analyser import FaceAnalyser
    find = FaceAnalyser("retinaface", "mediapipe", "auto", 80)
    info = probe(KATIE)
    out = {}
    for i, frame in FrameReader(KATIE, info.width, info.height):
        if i in (OPEN, SHUT):
            (face,) = find(frame)
            out[i] = (frame, face.landmarks)
        if i >= SHUT:
            break
    return out, find


def test_closure_follows_the_persons_own_open_level(extracted_clips):
    with Workspace(extracted_clips["katie"]) as ws:
        rows = {r.frame_index: r for r in ws.faces("dst", kept=True)}
    level = blink.open_level([r.landmarks for r in rows.values()])
    amount = {i: blink.closure(geometry.eye_openness(r.landmarks), level) for i, r in rows.items()}
    assert all(amount[i] > 0.5 for i in (25, 33, 170, 171))           # blinks
    assert amount[OPEN] == 0.0 and amount[90] == 0.0
    assert sum(1 for a in amount.values() if a > 0) < 0.2 * len(amount)  # a clip is mostly open eyes
    assert blink.closure(0.3, None) == 0.0


def test_open_eyes_painted_over_a_blink_close_again(frames):
    """The open frame's face moved onto the shut frame's place stands in for a network that paints open
    eyes; carried, the landmarker reads the eyes as shut, and far from the eyes nothing changed."""
    (open_frame, open_lm), (shut_frame, shut_lm) = frames[0][OPEN], frames[0][SHUT]
    find = frames[1]
    still = list(range(27, 36)) + [36, 39, 42, 45]                      # nose and eye corners: not the lids
    move = geometry.umeyama(open_lm[still], shut_lm[still])[:2]
    painted = cv2.warpAffine(open_frame, move, open_frame.shape[1::-1], flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    level = geometry.eye_openness(open_lm)
    (before,) = find(painted)
    assert geometry.eye_openness(before.landmarks) > 0.8 * level
    carried = blink.carry(painted, shut_frame, shut_lm, 1.0)
    (after,) = find(carried)
    assert geometry.eye_openness(after.landmarks) < 0.6 * level
    far = blink.eye_patch(shut_lm, carried.shape[0], 0.6) == 0
    assert np.array_equal(carried[far], painted[far])
    assert blink.carry(painted, shut_frame, shut_lm, 0.0) is painted


def test_convert_carries_blinks_and_leaves_open_eyes_alone(extracted_clips, tmp_path):
    """Wired into convert: frames with open eyes come out the same with and without, a blink frame differs
    in its eyes only."""
    from convert.options import ConvertOptions
    from convert.runner import run_convert
    ws = copy_workspace(extracted_clips["katie"], tmp_path, "ws")
    write_tiny_model(ws / "model")
    stills = {}
    for amount in (0.0, 1.0):
        stills[amount] = {}
        # no watermark: it follows the face's colour, so a changed eye would move it a little everywhere
        run_convert(ConvertOptions(workspace=ws, start=20, end=36, preview=16, blink=amount, workers=1, blend="alpha",
                                   watermark=False), stills=stills[amount])
    assert set(stills[0.0]) == set(range(20, 36))
    with Workspace(ws) as w:
        rows = {r.frame_index: r for r in w.faces("dst", kept=True)}
    for i in (20, 21, 22):                    # eyes open: not one pixel differs
        assert np.array_equal(stills[0.0][i], stills[1.0][i]), i
    shut = stills[1.0][33].astype(np.int16) - stills[0.0][33].astype(np.int16)
    eyes = blink.eye_patch(rows[33].landmarks, shut.shape[0], 0.3) > 0
    # an untrained network keeps the dst's face nearly as it is, so the change is small; alpha blending
    # keeps it where it was made: the eyes, and nowhere else
    assert np.abs(shut[eyes]).max() >= 2 and np.abs(shut[eyes]).mean() > 0.05
    assert not np.abs(shut[~eyes]).any()


@pytest.mark.parametrize("args, message", [
    (("--blink", "2"), "--blink 2.0 is out of range; use 0 to 1"),
    (("--part-colour", "nan"), "--part-colour nan is not a finite number; use 0 to 1"),
    (("--skin-tone", "1.5"), "--skin-tone 1.5 is out of range; use 0 to 1"),
    (("--poisson-reach", "-1"), "--poisson-reach -1.0 is out of range; use 0 to 4"),
    (("--grain-match", "1.2"), "--grain-match 1.2 is out of range; use 0 to 1"),
    (("--encode-chunk", "-5"), "--encode-chunk -5 is out of range; use 0 to 1000000"),
])
def test_bad_colour_and_blend_amounts_are_one_line_and_change_nothing(extracted_clips, tmp_path, args, message):
    from tests.conftest import clean_error, run_cli, snapshot
    ws = copy_workspace(extracted_clips["katie"], tmp_path, "ws")
    before = snapshot(ws)
    clean_error(run_cli("convert", "--workspace", ws, *args), message)
    assert snapshot(ws) == before
