"""The carry-forward benchmark's bookkeeping (benchmarks/carry_forward.py), without its clip.

The benchmark itself needs the occluded clip's workspaces (minutes to make); these check the
parts that decide its numbers: which faces start, how errors are split and how the scores
are averaged and printed, so a wrong table cannot come from them.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from benchmarks import carry_forward as cf


def _row(i: int, frame: int, track: int | None = 0, dropped: bool = False) -> SimpleNamespace:
    return SimpleNamespace(id=i, frame_index=frame, track=track, source="clip.mp4", dropped=dropped)


def test_start_faces_need_enough_later_faces_in_their_own_track():
    rows = [_row(i, i) for i in range(25)] + [_row(100, 0, track=1), _row(101, 1, track=1)]
    rows[22].dropped = True                                  # a dropped face is not a later face
    starts = cf.start_faces(rows, count=10, every=10)        # type: ignore[arg-type]
    assert [r.frame_index for r in starts] == [0, 10]        # 20 has only 3 kept faces after it; track 1 too short
    assert [r.id for r in cf.start_faces(rows, 10, frames=[3, 20])] == [3]   # type: ignore[arg-type]


def test_errors_split_into_the_occluder_zone_and_the_outline():
    truth = np.zeros((10, 10), np.uint8)
    truth[2:8, 2:8] = 255                                    # 36 px
    pred = truth.copy()
    pred[2:4, 2:4] = 0                                       # 4 px missed inside the zone
    pred[8, 2:8] = 255                                       # 6 px spilled below, outside it
    zone = np.zeros((10, 10), bool)
    zone[:5, :5] = True
    inside, outside = cf.error_split(pred, truth, zone)
    assert (inside, outside) == (4 / 36, 6 / 36)


def _record(d: int, covered: float, kinds: list[str], base: float) -> dict:
    return {"start": 0, "frame": d, "d": d, "covered": covered, "kinds": kinds,
            "iou": {m: base + 0.01 * k for k, m in enumerate(cf.METHODS)},
            "errors": {m: (0.1, 0.2) for m in cf.METHODS}}


def test_summary_and_table():
    records = [_record(1, 0.0, ["hair"], 0.9), _record(2, 0.3, ["hand", "hair"], 0.7), _record(2, 0.05, [], 0.8)]
    s = cf.summarise(records, count=2)
    assert s["all"]["faces"] == 3 and s["all"]["frame"] == 0.8
    assert s["by_distance"][2]["frame"] == 0.75 and s["covered"]["frame"] == 0.7 and s["uncovered"]["faces"] == 2
    assert s["by_kind"]["hair"]["faces"] == 2 and s["by_kind"]["none"]["faces"] == 1
    assert s["flow_vs"]["frame"] == {"flow_better": 3, "flow_worse": 0}      # face_flow is 0.03 above frame
    assert s["flow_vs"]["hull"] == {"flow_better": 0, "flow_worse": 3}
    assert s["worst"]["frame"] == 0.7 and s["errors"]["hull"] == {"occluder_zone": 0.1, "elsewhere": 0.2}
    s["ms_per_face"] = {m: 1.0 for m in cf.VARIANTS}
    text = cf.table({"summary": s, "count": 2, "starts": [0]})
    assert "d=1" in text and "d=5" not in text and "face_flow" in text
    bare = cf.summarise([r for r in records if r["covered"] <= 0.1], count=2)    # no covered face: a dash
    bare["ms_per_face"] = s["ms_per_face"]
    carry_line = next(x for x in cf.table({"summary": bare, "count": 2, "starts": [0]}).splitlines()
                      if x.startswith("frame "))
    assert carry_line.split()[-2:] == ["-", "0.8500"]
