"""Temporal landmark smoothing (convert/smoothing.py): no lag, less jitter, never across a cut.

Synthetic tracks move the 68-point mean face (scaled to an eye distance of about 81 px);
the last test uses the landmarks extract stored for the real 200-frame Katie Hill clip.
Figures quoted in comments were measured with these seeds (numpy 2).
"""
from __future__ import annotations

import numpy as np
import pytest

from convert.smoothing import (
    MAX_JUMP,
    MAX_ROLL_STEP,
    MAX_SCALE_STEP,
    eye_distance,
    segment_bounds,
    smooth_segment,
    smooth_track,
)
from pipeline.core import geometry
from pipeline.workspace.store import Workspace

SIGMA = 2.0


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """(68, 2) mean face in frame pixels, eye distance ~81 px."""
    return geometry.mean_face() * 150.0 + (180.0, 150.0)


def _track(face: np.ndarray, offsets: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """(T, 68, 2): the face moved by offsets (T, 2), optionally scaled about its centre."""
    centre = face.mean(axis=0)
    s = np.ones(len(offsets)) if scales is None else np.asarray(scales, dtype=np.float64)
    return centre + (face - centre)[None] * s[:, None, None] + offsets[:, None, :]


def _jitter(track: np.ndarray) -> float:
    """RMS second temporal difference (pixels per frame^2), over points and frames."""
    return float(np.sqrt((np.diff(track, 2, axis=0) ** 2).sum(axis=-1).mean()))


def _rms(err: np.ndarray) -> float:
    return float(np.sqrt((err ** 2).sum(axis=-1).mean()))


# ---------------------------------------------------------------------- no lag


def test_quadratic_motion_is_reproduced_exactly_also_at_the_ends(face):
    t = np.arange(40, dtype=np.float64)
    b, c = np.array([3.0, -2.0]), np.array([0.15, 0.05])      # px/frame, px/frame^2
    truth = _track(face, b * t[:, None] + c * t[:, None] ** 2)
    smoothed = smooth_segment(truth, SIGMA)
    assert np.abs(smoothed - truth).max() <= 1e-6
    assert np.abs(smoothed[:3] - truth[:3]).max() <= 1e-6 and np.abs(smoothed[-3:] - truth[-3:]).max() <= 1e-6
    # through smooth_track too: fast but plausible motion (up to 15 px/frame) is one segment
    frames = np.arange(40)
    assert segment_bounds(frames, truth) == [(0, 40)]
    assert np.abs(smooth_track(frames, truth, SIGMA) - truth).max() <= 1e-6


def test_fast_linear_motion_has_no_lag(face):
    t = np.arange(40, dtype=np.float64)
    truth = _track(face, np.stack([15.0 * t, -4.0 * t], axis=1))   # 15 px/frame sideways
    assert np.abs(smooth_segment(truth, SIGMA) - truth).max() <= 1e-6
    assert np.abs(smooth_track(np.arange(40), truth, SIGMA) - truth).max() <= 1e-6


def test_a_changing_scale_is_followed(face):
    t = np.arange(30, dtype=np.float64)
    truth = _track(face, np.zeros((30, 2)), 1.0 + 0.01 * t)       # a zoom, linear in scale
    assert np.abs(smooth_track(np.arange(30), truth, SIGMA) - truth).max() <= 1e-6


# ---------------------------------------------------------------------- less jitter


def test_noise_and_jitter_go_down_on_a_noisy_sinusoid(face):
    rng = np.random.default_rng(1234)
    t = np.arange(100, dtype=np.float64)
    motion = np.stack([40.0 * np.sin(2 * np.pi * t / 25.0), np.zeros_like(t)], axis=1)
    truth = _track(face, motion)
    noisy = truth + rng.normal(0.0, 1.5, truth.shape)
    smoothed = smooth_segment(noisy, SIGMA)
    # measured: RMS error 2.13 px -> 1.10 px (ratio 0.52; 0.18 px of it is the fit's own
    # bias on this fast sinusoid); jitter 5.5 -> 1.8 px/frame^2 (ratio 0.34, and 1.8 is the
    # true motion's own second difference); wobble around the truth (second difference of
    # the error) 5.2 -> 0.44 (ratio 0.085); peak amplitude 39.8 px
    assert _rms(smoothed - truth) < 0.6 * _rms(noisy - truth)
    assert _jitter(smoothed) < 0.5 * _jitter(noisy)
    assert _jitter(smoothed - truth) < 0.15 * _jitter(noisy - truth)
    # and the motion is not flattened: the amplitude stays within 1 px of 40
    amplitude = (smoothed[:, :, 0].mean(axis=1) - truth[:, :, 0].mean(axis=1) + motion[:, 0])
    assert abs(np.abs(amplitude[10:-10]).max() - 40.0) < 1.0


# ---------------------------------------------------------------------- segments


def test_segment_bounds(face):
    still = _track(face, np.zeros((10, 2)))
    frames = np.arange(10)
    assert segment_bounds(frames, still) == [(0, 10)]
    assert segment_bounds(np.array([], dtype=int), still[:0]) == []

    # a gap in the frame numbers
    gap = np.array([0, 1, 2, 3, 4, 7, 8, 9, 10, 11])
    assert segment_bounds(gap, still) == [(0, 5), (5, 10)]

    # a jump of 3 eye distances between consecutive frames (a cut); ordinary motion does not split
    e = eye_distance(face)
    assert 75 < e < 90
    offsets = np.zeros((10, 2))
    offsets[6:, 0] = 3.0 * e
    assert segment_bounds(frames, _track(face, offsets)) == [(0, 6), (6, 10)]
    walk = np.stack([0.3 * e * np.arange(10), 0.2 * e * np.arange(10)], axis=1)   # 0.36 e/frame
    assert segment_bounds(frames, _track(face, walk)) == [(0, 10)]
    just_over = np.zeros((10, 2))
    just_over[4:, 1] = (MAX_JUMP + 0.05) * e
    assert segment_bounds(frames, _track(face, just_over)) == [(0, 4), (4, 10)]

    # a 1.5x size change from one frame to the next splits, either way; a steady zoom does not
    scales = np.ones(10)
    scales[3:] = 1.5
    assert segment_bounds(frames, _track(face, np.zeros((10, 2)), scales)) == [(0, 3), (3, 10)]
    assert segment_bounds(frames, _track(face, np.zeros((10, 2)), 1.0 / scales)) == [(0, 3), (3, 10)]
    zoom = 1.1 ** np.arange(10)                                   # 10% a frame, 2.4x overall
    assert MAX_SCALE_STEP > 1.1
    assert segment_bounds(frames, _track(face, np.zeros((10, 2)), zoom)) == [(0, 10)]

    # a roll the head cannot make in one frame splits (a cut to the same person tilted, issue 27's clip);
    # a steady roll of 3 degrees a frame, 27 in all, does not
    def rolled(degrees: np.ndarray) -> np.ndarray:
        centre = face.mean(axis=0)
        out = []
        for a in np.radians(degrees):
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            out.append((face - centre) @ rot.T + centre)
        return np.stack(out)
    assert segment_bounds(frames, rolled(3.0 * np.arange(10))) == [(0, 10)]
    step = np.zeros(10)
    step[5:] = MAX_ROLL_STEP + 2.0
    assert segment_bounds(frames, rolled(step)) == [(0, 5), (5, 10)]


def test_the_shared_clips_real_tracks_are_one_segment_each(extracted_clips):
    """No false cut in real footage: blinks, talking and head motion stay within the cut tests' bounds."""
    for clip in ("katie", "aoc"):
        with Workspace(extracted_clips[clip]) as ws:
            rows = sorted(ws.faces("dst", kept=True), key=lambda r: r.frame_index)
        lms = np.stack([r.landmarks for r in rows]).astype(np.float64)
        assert segment_bounds(np.array([r.frame_index for r in rows]), lms) == [(0, len(rows))], clip


def test_smoothing_never_crosses_a_gap(face):
    rng = np.random.default_rng(7)
    frames = np.concatenate([np.arange(0, 20), np.arange(23, 40)])
    base = _track(face, np.stack([2.0 * frames, np.zeros(len(frames))], axis=1)) + rng.normal(0, 1.5, (37, 68, 2))
    other = base.copy()
    other[20:] += rng.normal(0, 5.0, other[20:].shape) + (3.0, -2.0)     # anything after the gap
    a, b = smooth_track(frames, base, SIGMA), smooth_track(frames, other, SIGMA)
    assert np.array_equal(a[:20], b[:20])
    assert not np.allclose(a[20:], b[20:])
    assert not np.allclose(a[:20], base[:20])            # it did smooth before the gap
    # the same across a cut inside consecutive frames
    cut = base.copy()
    cut[20:] += (300.0, 0.0)
    frames_c = np.arange(37)
    assert np.array_equal(smooth_track(frames_c, cut, SIGMA)[:20], smooth_track(frames_c[:20], cut[:20], SIGMA))


def test_sigma_zero_and_short_segments_are_unchanged(face):
    rng = np.random.default_rng(3)
    noisy = _track(face, np.zeros((12, 2))) + rng.normal(0, 2.0, (12, 68, 2))
    out = smooth_segment(noisy, 0.0)
    assert np.array_equal(out, noisy) and out is not noisy
    assert np.array_equal(smooth_track(np.arange(12), noisy, 0.0), noisy)
    for n in (1, 2):
        assert np.array_equal(smooth_segment(noisy[:n], SIGMA), noisy[:n])
    # a track of a 1-frame, a 2-frame and a longer segment: only the long one changes
    frames = np.array([0, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16])
    out = smooth_track(frames, noisy, SIGMA)
    assert np.array_equal(out[:3], noisy[:3])
    assert not np.allclose(out[3:], noisy[3:])


# ---------------------------------------------------------------------- real landmarks


def test_real_track_gets_less_jitter_and_stays_on_the_face(extracted_clips):
    ws = Workspace(extracted_clips["katie"])
    try:
        rows = [r for r in ws.faces("dst") if not r.dropped]
    finally:
        ws.close()
    assert len(rows) == 200 and len({r.track for r in rows}) == 1
    frames = np.array([r.frame_index for r in rows])
    raw = np.stack([r.landmarks for r in rows])
    e = float(np.mean([eye_distance(p) for p in raw]))
    smoothed = smooth_track(frames, raw, SIGMA)
    # measured: eye distance 108 px; jitter 0.044 -> 0.017 eye distances/frame^2 (ratio 0.38);
    # mean displacement from the detector's landmarks 0.013 eye distances (1.4 px)
    assert _jitter(smoothed) <= 0.5 * _jitter(raw), (_jitter(smoothed) / e, _jitter(raw) / e)
    displacement = float(np.linalg.norm(smoothed - raw, axis=-1).mean()) / e
    assert 0.001 < displacement < 0.05, displacement
