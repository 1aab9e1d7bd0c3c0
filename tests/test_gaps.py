"""convert.gaps: where the swapped face goes missing between swapped frames (a face lost in profile flickers)."""
import logging
import sqlite3

from convert.gaps import MAX_GAP, describe, flicker_gaps
from convert.options import ConvertOptions
from convert.runner import run_convert
from pipeline.workspace.records import DropReason
from pipeline.workspace.store import Workspace


def test_short_runs_between_swapped_frames_are_gaps_and_the_artists_choices_are_not():
    swapped = [*range(0, 10), *range(13, 20), *range(21, 30), *range(30 + MAX_GAP + 1, 80), 90, 91]
    # 30 .. 30 + MAX_GAP is one frame too long: the person left, nothing flickers
    assert flicker_gaps(swapped, {}) == [(10, 12), (20, 20), (80, 89)]
    assert flicker_gaps(swapped, {}, max_gap=MAX_GAP + 10) == [(10, 12), (20, 20), (30, 30 + MAX_GAP), (80, 89)]
    assert flicker_gaps(swapped, {11: DropReason.DELETED.value}) == [(20, 20), (80, 89)]   # the artist deleted one
    assert flicker_gaps(swapped, {20: "other_person", 11: "no_face"}) == [(10, 12), (80, 89)]
    assert flicker_gaps([], {}) == [] and flicker_gaps([5], {}) == []
    assert describe([(10, 12), (20, 20)]) == "10-12, 20"
    assert describe([(i, i) for i in range(10)], most=2) == "0, 1 and 8 more"


def test_convert_says_where_the_face_goes_missing(small_ws, caplog):
    # the 6-frame clip with the faces of frames 2 and 3 gone from the index, as a face lost in profile would be
    with sqlite3.connect(small_ws / "faces.sqlite") as db:
        assert db.execute("DELETE FROM faces WHERE set_name = 'dst' AND frame_index IN (2, 3)").rowcount == 2
    with caplog.at_level(logging.WARNING, logger="convert"):
        summary = run_convert(ConvertOptions(workspace=small_ws, output=small_ws / "out.mp4", workers=1,
                                             watermark=False, credentials=False))
    assert summary.gaps == [(2, 3)] and summary.faces == 4
    said = [r.getMessage() for r in caplog.records if "goes missing" in r.getMessage()]
    assert len(said) == 1 and "at frames 2-3 (2 frames in all)" in said[0] and "studio" in said[0]
    # nothing missing: nothing said
    caplog.clear()
    with Workspace(small_ws) as ws:
        assert len({r.frame_index for r in ws.faces("dst", kept=True)}) == 4
    assert run_convert(ConvertOptions(workspace=small_ws, output=small_ws / "part.mp4", workers=1, watermark=False,
                                      credentials=False, start=4)).gaps == []
