"""Bridging detection gaps in video with face tracks.

When the detector misses a face in a frame between frames where the same face was
found, the landmark model is run in the box carried over from the neighbouring frame.
The result is kept only if it is face-shaped, moved and scaled plausibly, and the
track is found again by the detector within ``max_gap`` frames, so a face that really
left the picture is not invented.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from pipeline.core import geometry
from pipeline.faces.analyser import MIN_FACE_PROBABILITY, FoundFace
from pipeline.faces.backends.base import Landmarker

#: Above this RMS misfit to the mean face (template units) landmarks are not a face.
#: Real detections here measured 0.027-0.059.
MAX_TEMPLATE_RESIDUAL = 0.10
MAX_SCALE_CHANGE = 1.25          # per frame
MAX_SHIFT = 0.25                 # per frame, in template units (about a face width / 1.3)


@dataclass
class _Track:
    ident: int
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    box_in_template: np.ndarray   # the detector box corners in template units
    last_detected: int
    broken: bool = False          # a bridge failed: wait for the detector
    #: the face centre's motion per frame between its last two detections (pixels): a bridged
    #: face is looked for, and judged, where that motion takes it
    step: np.ndarray = field(default_factory=lambda: np.zeros(2))
    detected_centre: np.ndarray | None = None
    seen: int = -1                # frame of ``box`` and ``landmarks`` (detected or bridged)

    def box_at(self, index: int) -> tuple[float, float, float, float]:
        """Where the track's motion takes its box by frame ``index``."""
        shift = self.step * (index - self.seen) if self.seen >= 0 else np.zeros(2)
        return tuple(float(v) for v in np.asarray(self.box) + np.tile(shift, 2))  # type: ignore[return-value]


@dataclass
class _Pending:
    index: int
    payload: object
    faces: list[FoundFace]
    open_tracks: set[int] = field(default_factory=set)   # tentative faces awaiting confirmation


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _box_corners(box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _box_from_corners(corners: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def _centre(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[geometry.ALIGN_POINTS].mean(axis=0)


def _eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """(2, 2) eye centres, image-left eye first on an upright face, as a detector's keypoints give them."""
    return np.stack([landmarks[geometry.EYE_RIGHT].mean(axis=0), landmarks[geometry.EYE_LEFT].mean(axis=0)])


class GapBridger:
    """Feed frames in order with their detections; get them back in order, gaps bridged.

    Frames are held back only while a bridged face in them waits for the detector to
    find its track again, so at most ``max_gap`` + 1 frames are held.
    """

    def __init__(self, landmarker: Landmarker, max_gap: int = 5, next_track: int = 0) -> None:
        self.landmarker = landmarker
        self.max_gap = max_gap
        self.tracks: list[_Track] = []
        self.pending: deque[_Pending] = deque()
        self.next_track = next_track
        self.bridged = 0

    def seed(self, faces: list[FoundFace], frame_index: int) -> None:
        """Continue tracks from faces already stored (resuming an interrupted run)."""
        for face in faces:
            self._start_track(face, frame_index, ident=face.track)

    def _start_track(self, face: FoundFace, index: int, ident: int | None = None) -> _Track:
        if ident is None:
            ident = self.next_track
        self.next_track = max(self.next_track, ident + 1)
        to_t = geometry.to_template(face.landmarks)
        track = _Track(ident, face.box, face.landmarks,
                       geometry.transform_points(_box_corners(face.box), to_t), index, seen=index)
        self.tracks.append(track)
        face.track = ident
        return track

    def push(self, index: int, payload: object, faces: list[FoundFace], image: np.ndarray | None
             ) -> list[tuple[int, object, list[FoundFace]]]:
        """Add frame ``index`` (its detected faces; ``image`` for bridging)."""
        live = [t for t in self.tracks if index - t.last_detected <= self.max_gap + 1]
        self.tracks = list(live)       # new tracks go here; only ``live`` ones get bridged
        matched: set[int] = set()
        pairs = sorted(((_iou(f.box, t.box_at(index)), fi, ti) for fi, f in enumerate(faces)
                        for ti, t in enumerate(live)), reverse=True)
        used_faces: set[int] = set()
        for iou, fi, ti in pairs:
            if iou < 0.3 or fi in used_faces or ti in matched:
                continue
            used_faces.add(fi)
            matched.add(ti)
            self._update(live[ti], faces[fi], index)
            self._confirm(live[ti].ident)
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                self._start_track(face, index)
        entry = _Pending(index, payload, faces)
        if image is not None:
            for ti, track in enumerate(live):
                if ti in matched or track.broken or index - track.last_detected > self.max_gap:
                    continue
                if any(_iou(f.box, track.box_at(index)) >= 0.3 for f in faces):
                    continue     # a face is already there (a new track of the same face, or another's)
                face = self._bridge(image, track, index)
                if face is None:
                    track.broken = True
                    self._expire(track.ident)
                    continue
                faces.append(face)
                entry.open_tracks.add(track.ident)
        self.pending.append(entry)
        self._expire_old(index)
        return self._release()

    def finish(self) -> list[tuple[int, object, list[FoundFace]]]:
        """End of input: bridges still waiting for their track are dropped."""
        for entry in self.pending:
            for ident in list(entry.open_tracks):
                self._drop_tentative(entry, ident)
        return self._release()

    # ------------------------------------------------------------------ internals
    def _update(self, track: _Track, face: FoundFace, index: int) -> None:
        face.track = track.ident
        to_t = geometry.to_template(face.landmarks)
        centre = _centre(face.landmarks)
        if track.detected_centre is not None and index > track.last_detected:
            track.step = (centre - track.detected_centre) / (index - track.last_detected)
        track.detected_centre = centre
        track.box, track.landmarks, track.seen = face.box, face.landmarks, index
        track.box_in_template = geometry.transform_points(_box_corners(face.box), to_t)
        track.last_detected = index
        track.broken = False

    def _bridge(self, image: np.ndarray, track: _Track, index: int) -> FoundFace | None:
        # the eyes of the track's last face give the roll (a landmark model that turns its crop
        # upright, MediaPipe's, needs it for a tilted face: the detector's keypoints are missing here)
        shift = track.step * (index - track.seen)
        points = self.landmarker.shape(image, track.box_at(index), _eye_centres(track.landmarks + shift)).landmarks
        # second pass: put the box where the detector would have, around the new points
        from_t = geometry.invert_affine(geometry.to_template(points))
        box = _box_from_corners(geometry.transform_points(track.box_in_template, from_t))
        shape = self.landmarker.shape(image, box, _eye_centres(points))
        points = shape.landmarks
        if shape.confidence is not None and shape.confidence < MIN_FACE_PROBABILITY:
            return None
        if not self._plausible(track.landmarks, points, shift):
            return None
        track.box, track.landmarks, track.seen = box, points, index
        return FoundFace(box, points, None, "bridged", track.ident, dense=shape.dense)

    @staticmethod
    def _plausible(previous: np.ndarray, points: np.ndarray, step: np.ndarray | None = None) -> bool:
        if geometry.template_residual(points) > MAX_TEMPLATE_RESIDUAL:
            return False
        prev_t = geometry.to_template(previous)
        new_t = geometry.to_template(points)
        ratio = geometry.similarity_scale(prev_t) / geometry.similarity_scale(new_t)
        if not 1 / MAX_SCALE_CHANGE <= ratio <= MAX_SCALE_CHANGE:
            return False
        # where the new face's centre lands in the previous face's template frame, against where
        # the track's motion would take it
        centre = points[geometry.ALIGN_POINTS].mean(axis=0, keepdims=True)
        prev_centre = geometry.transform_points(centre, prev_t)[0]
        expected = geometry.mean_face()[geometry.ALIGN_POINTS].mean(axis=0)
        if step is not None:
            expected = expected + prev_t[:, :2] @ step
        return float(np.linalg.norm(prev_centre - expected)) <= MAX_SHIFT

    def _confirm(self, ident: int) -> None:
        for entry in self.pending:
            if ident in entry.open_tracks:
                entry.open_tracks.discard(ident)
                self.bridged += 1

    def _drop_tentative(self, entry: _Pending, ident: int) -> None:
        entry.open_tracks.discard(ident)
        entry.faces[:] = [f for f in entry.faces if not (f.origin == "bridged" and f.track == ident)]

    def _expire(self, ident: int) -> None:
        for entry in self.pending:
            if ident in entry.open_tracks:
                self._drop_tentative(entry, ident)

    def _expire_old(self, index: int) -> None:
        for entry in self.pending:
            for ident in list(entry.open_tracks):
                track = next((t for t in self.tracks if t.ident == ident), None)
                if track is None or index - track.last_detected > self.max_gap:
                    self._drop_tentative(entry, ident)

    def _release(self) -> list[tuple[int, object, list[FoundFace]]]:
        out = []
        while self.pending and not self.pending[0].open_tracks:
            entry = self.pending.popleft()
            out.append((entry.index, entry.payload, entry.faces))
        return out
