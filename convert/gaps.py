"""Short runs of frames where the swapped face goes missing between swapped frames: the flicker an artist must see.

A face the detector loses for a few frames (turned past profile, covered by a hand, blurred
by motion) is not swapped there, so the original person pops back between swapped frames:
the flicker issue 27 saw in profile shots. Convert cannot swap a face it has no landmarks
for, but it can say where this happens, so the artist checks those frames (and deletes the
neighbouring faces to leave the whole moment original, or fixes the landmarks) instead of
finding them in review. Frames the artist chose to leave (deleted faces) and frames of other
people are not gaps.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from pipeline.workspace.records import DropReason

log = logging.getLogger("convert")

#: The longest run of missing frames reported (about a second at 24-30 fps): longer, the person has left the
#: shot or the shot has changed, and nothing flickers.
MAX_GAP = 30
#: Why a frame holds no swapped face, as ``plan_faces`` records it, when it is not a gap: the artist's choice.
CHOSEN = frozenset({DropReason.DELETED.value, DropReason.IDENTITY.value, "other_person"})


def flicker_gaps(swapped: Iterable[int], excluded: dict[int, str], max_gap: int = MAX_GAP) -> list[tuple[int, int]]:
    """[first, last] frame runs of at most ``max_gap`` frames without a swapped face, between swapped frames.

    ``swapped``: the frames that get a swapped face; ``excluded``: why other frames do not (frames absent from
    it had no face found). A run that holds a frame the artist chose to leave is not reported.
    """
    frames = sorted(set(swapped))
    gaps = []
    for a, b in zip(frames, frames[1:]):
        if 1 < b - a <= max_gap + 1 and not any(excluded.get(f) in CHOSEN for f in range(a + 1, b)):
            gaps.append((a + 1, b - 1))
    return gaps


def describe(gaps: list[tuple[int, int]], most: int = 8) -> str:
    """'101-104, 150, ...' for the log line."""
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in gaps[:most]]
    return ", ".join(parts) + (f" and {len(gaps) - most} more" if len(gaps) > most else "")


def report(planned: Iterable[int], excluded: dict[int, str], start: int, end: int) -> list[tuple[int, int]]:
    """The gaps among the frames ``start`` .. ``end`` - 1 that convert swaps, said in one warning line."""
    gaps = flicker_gaps([f for f in planned if start <= f < end], excluded)
    if gaps:
        log.warning("convert: the swapped face goes missing between swapped frames at frames %s (%d frames in all): "
                    "it was not found there (turned away, covered, blurred?) and the original face shows through; "
                    "check them in the studio (python main.py studio)", describe(gaps),
                    sum(b - a + 1 for a, b in gaps))
    return gaps
