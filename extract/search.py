"""When a video frame gets the detector's slow passes.

A detector finds most faces with a cheap first pass (dlib's HOG on a frame shrunk to the
smallest face searched) and needs slow passes (full size, upsampled) only for small or
hard faces. Frames where the cheap pass finds nothing used to get every slow pass, so a
video with no face, or long stretches without one, took many times as long as one with
faces. In video, faces persist from frame to frame, so the slow passes run:

- on every ``every``-th frame (an anchor), whatever came before;
- on a frame right after one with a face (so a small face is followed frame by frame);
- on the frames held since the last anchor once a face shows up (it may have been there,
  small, already).

Frames between two anchors where neither anchor nor any frame between them shows a face
are released as empty without slow passes. Only a face that is too small for the cheap
pass and visible for fewer than ``every`` frames, none of them an anchor, is missed.
Decisions depend only on frame indices and results, never on thread timing, so a
resumed run repeats a clean one (the held frames are never stored before they are
decided, and a resume starts at the first frame not stored).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.faces.analyser import FoundFace

#: An anchor every this many frames (0.32 s at 25 fps).
ANCHOR_EVERY = 8


def is_anchor(frame_index: int, every: int = ANCHOR_EVERY) -> bool:
    return frame_index % every == 0


class SlowPassGate:
    """In frame order: (frame, faces of the first look, whether that look was thorough) in,
    (frame, faces) out once each frame is decided."""

    def __init__(self, thorough_search: Callable[[Any], list[FoundFace]], face_before: bool) -> None:
        self.search = thorough_search          # frame -> faces with every pass
        self.prev_found = face_before           # the frame just before the first pushed one had a face
        self.held: list[Any] = []
        self.slow_searches = 0

    def _search(self, frame: Any) -> list[FoundFace]:
        self.slow_searches += 1
        return self.search(frame)

    def _release_held(self, search: bool) -> list[tuple[Any, list[FoundFace]]]:
        held, self.held = self.held, []
        return [(frame, self._search(frame) if search else []) for frame in held]

    def push(self, frame: Any, faces: list[FoundFace], thorough: bool) -> list[tuple[Any, list[FoundFace]]]:
        if not faces and not thorough and self.prev_found:
            faces, thorough = self._search(frame), True
        if faces:
            out = self._release_held(search=True) + [(frame, faces)]
        elif thorough:
            out = self._release_held(search=False) + [(frame, faces)]
        else:
            self.held.append(frame)
            return []
        self.prev_found = bool(faces)
        return out

    def finish(self) -> list[tuple[Any, list[FoundFace]]]:
        """The frames after the last anchor: searched (no later frame can vouch for them)."""
        return self._release_held(search=True)
