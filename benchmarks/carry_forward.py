"""Carrying one painted mask forward along a track, scored against exact truth on the occluded clip.

The studio's carry-forward (``studio.masks.carry_forward``) moves an artist's mask onto the
next faces of the track, following the frame (through the stored source->aligned transforms)
or the face (its place in the aligned crop), optionally refined by optical flow. How far can
a mask be carried before it is worse than the automatic hull, and
does the flow refinement earn its cost? The occluded clip of ``benchmarks.mask_quality``
answers that with exact truth (the clean frame's hull minus the drawn occluders):

1. Both workspaces are copied into a temporary folder (the index is only ever opened there,
   so nothing in the given folders changes).
2. Start faces: every ``--every``-th frame whose track has at least ``--count`` later faces
   (or the frames of ``--starts``). The "artist's painted mask" is the truth of the start face.
3. For each of the next ``count`` faces (distance d = 1..count), the IoU with that face's truth of:
   the four proposals of the studio, ``frame`` / ``frame_flow`` (following the frame, without and
   with the Farneback refinement) and ``face`` / ``face_flow`` (following the face: ``face`` is the
   start mask pasted as it is), beside ``hull`` (the automatic mask of the occluded workspace: its
   mask file when the origin is the hull, else the hull recomputed from the landmarks).
4. Means overall, at d = 1, 5, 10, on faces with over 10 % of the face covered
   (``mask_quality.COVERED``), per occluder kind shown in the target frame (needs the clean
   video), and where the wrong pixels lie: near an occluder (the start's or the target's,
   dilated 3 px) or elsewhere (the face's outline); and the studio's time per carried face.

Defaults are the data of ``python -m benchmarks.mask_quality --work /work/mq``: the occluded
workspace ``/work/mq/occluded`` (dst, one track of 200 faces, 256 px, hull masks), the clean one
``/work/mq/clean``, the occluder masks ``/work/mq/occluder_masks/NNNNNN.png`` and the clean clip
``../shared/data/videos/WDA_KatieHill_000.mp4`` (only for the occluder kinds).

Usage:
  python -m benchmarks.carry_forward [--occluded WS] [--clean WS] [--masks DIR] [--count 10]
      [--every 10 | --starts F F ...] [--video V] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.mask_quality import COVERED, DEFAULT_VIDEO, iou, truths
from pipeline.core import geometry
from pipeline.core.images import read_gray
from pipeline.workspace.records import FaceRow, MaskOrigin
from pipeline.workspace.store import Workspace
from studio.masks import carry_forward, decode_mask, png_data

WORK = Path("/work/mq")
#: The studio's four proposals (anchor, flow) and the automatic mask.
VARIANTS = {"frame": ("frame", False), "frame_flow": ("frame", True), "face": ("face", False),
            "face_flow": ("face", True)}
METHODS = (*VARIANTS, "hull")
#: The variant compared face by face with every other method.
LEAD = "face_flow"
DISTANCES = (1, 5, 10)
#: Wrong pixels within this many pixels of an occluder (start's or target's) count as the occluder's.
ZONE_PX = 3
#: IoU differences within this count as ties when counting where flow is better or worse.
TIE = 0.005


def start_faces(rows: list[FaceRow], count: int, every: int = 10, frames: Iterable[int] | None = None
                ) -> list[FaceRow]:
    """Start faces with at least ``count`` later kept faces in their track (each ``every``-th frame, or ``frames``)."""
    later: dict[int, int] = {}
    for r in rows:
        assert r.id is not None
        later[r.id] = sum(1 for o in rows if o.track == r.track and o.source == r.source
                          and o.frame_index > r.frame_index and not o.dropped)
    wanted = set(frames) if frames is not None else None
    return [r for r in rows if r.track is not None and not r.dropped and later[r.id] >= count  # type: ignore[index]
            and (r.frame_index in wanted if wanted is not None else r.frame_index % every == 0)]


def automatic_hull(ws: Workspace, row: FaceRow) -> np.ndarray:
    """The hull mask the extract wrote: the file when its origin is the hull, else recomputed from the landmarks."""
    if row.mask_origin == MaskOrigin.HULL and not ws.is_hand_mask(row):
        pixels = read_gray(ws.mask_path(row))
        if pixels is not None:
            return pixels
    return geometry.hull_mask(geometry.transform_points(row.landmarks, row.transform), row.size)


def occluder_aligned(masks: Path, frame: int, row: FaceRow) -> np.ndarray:
    """The occluder of ``frame`` (full-frame truth) cut through ``row``'s transform: a bool crop."""
    occ = read_gray(masks / f"{frame:06d}.png")
    if occ is None:
        raise FileNotFoundError(masks / f"{frame:06d}.png")
    return cv2.warpAffine(occ, row.transform, (row.size, row.size), flags=cv2.INTER_LINEAR) > 127


def error_split(pred: np.ndarray, truth: np.ndarray, zone: np.ndarray) -> tuple[float, float]:
    """Wrong pixels inside and outside the occluder ``zone``, each as a share of the truth's area."""
    wrong = (pred > 127) != (truth > 127)
    area = max(int((truth > 127).sum()), 1)
    return float((wrong & zone).sum() / area), float((wrong & ~zone).sum() / area)


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def summarise(records: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """Mean IoU per method: overall, per distance, on covered faces, per occluder kind; where the errors lie."""
    def means(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"faces": len(rs), **{m: _mean([r["iou"][m] for r in rs]) for m in METHODS}}
    out: dict[str, Any] = {"all": means(records),
                           "by_distance": {d: means([r for r in records if r["d"] == d]) for d in range(1, count + 1)},
                           "covered": means([r for r in records if r["covered"] > COVERED]),
                           "uncovered": means([r for r in records if r["covered"] <= COVERED])}
    kinds = sorted({k for r in records for k in r.get("kinds") or []})
    if kinds:
        out["by_kind"] = {k: means([r for r in records if k in r["kinds"]]) for k in kinds}
        bare = [r for r in records if r.get("kinds") == []]
        if bare:
            out["by_kind"]["none"] = means(bare)
    out["worst"] = {m: round(min(r["iou"][m] for r in records), 4) for m in METHODS} if records else {}
    out["flow_vs"] = {m: {"flow_better": sum(r["iou"][LEAD] > r["iou"][m] + TIE for r in records),
                          "flow_worse": sum(r["iou"][LEAD] < r["iou"][m] - TIE for r in records)}
                      for m in METHODS if m != LEAD}
    out["errors"] = {m: {"occluder_zone": _mean([r["errors"][m][0] for r in records]),
                         "elsewhere": _mean([r["errors"][m][1] for r in records])} for m in METHODS}
    return out


def measure(occluded: Path, clean: Path, masks: Path, count: int = 10, every: int = 10,
            frames: Iterable[int] | None = None, video: Path | None = None) -> dict[str, Any]:
    """Carry each start face's truth forward ``count`` faces on a copy of ``occluded``; per-face IoUs and timings."""
    with tempfile.TemporaryDirectory(prefix="carry_forward_") as tmp:
        ws_path, clean_path = Path(tmp) / "occluded", Path(tmp) / "clean"
        skip = shutil.ignore_patterns("model", "mask_model", "studio", "*.mp4")
        shutil.copytree(occluded, ws_path, ignore=skip)
        shutil.copytree(clean, clean_path, ignore=skip)
        truth = truths(ws_path, clean_path, masks)
        presence = None
        if video is not None and video.exists():
            from benchmarks.occluded_clip import occluder_presence
            presence = occluder_presence(clean_path, video)
        with Workspace(ws_path) as ws:
            rows = sorted(ws.faces("dst"), key=lambda r: (r.source, r.track or 0, r.frame_index))
            by_id = {r.id: r for r in rows}
            hulls = {r.id: automatic_hull(ws, r) for r in rows if r.id in truth}
            origins = sorted({r.mask_origin.value for r in rows})
        starts = [r for r in start_faces(rows, count, every, frames) if r.id in truth]
        if not starts:
            raise SystemExit(f"no start face in {occluded} with {count} later faces in its track and a truth mask")
        first = starts[0].id
        assert first is not None
        carry_forward(ws_path, "dst", first, 1, truth[first][0], flow=True)   # warm-up: first reads are not timed
        records: list[dict[str, Any]] = []
        timing: dict[str, list[float]] = {m: [] for m in VARIANTS}
        for s in starts:
            assert s.id is not None
            painted = truth[s.id][0]
            proposals = {}
            for method, (anchor, flow) in VARIANTS.items():
                t0 = time.perf_counter()
                proposals[method] = carry_forward(ws_path, "dst", s.id, count, painted, flow=flow, anchor=anchor)
                timing[method].append((time.perf_counter() - t0) / max(len(proposals[method]), 1))
            for d, carried in enumerate(zip(*(proposals[m] for m in VARIANTS)), start=1):
                row = by_id[carried[0]["id"]]
                if row.id not in truth:
                    continue
                want, covered = truth[row.id]
                preds = {m: decode_mask(png_data(c["png"]), row.size) for m, c in zip(VARIANTS, carried)}
                preds["hull"] = hulls[row.id]
                occ = occluder_aligned(masks, s.frame_index, row) | occluder_aligned(masks, row.frame_index, row)
                zone = cv2.dilate(occ.astype(np.uint8), np.ones((2 * ZONE_PX + 1,) * 2, np.uint8)).astype(bool)
                records.append({
                    "start": s.frame_index, "frame": row.frame_index, "d": d, "covered": round(covered, 4),
                    "kinds": [k for k, here in presence[row.frame_index].items() if here] if presence else None,
                    "iou": {m: round(iou(p, want), 4) for m, p in preds.items()},
                    "errors": {m: tuple(round(x, 4) for x in error_split(p, want, zone)) for m, p in preds.items()}})
    summary = summarise(records, count)
    summary["ms_per_face"] = {m: round(1000 * float(np.mean(t)), 2) for m, t in timing.items()}
    return {"occluded": str(occluded), "clean": str(clean), "masks": str(masks), "count": count,
            "starts": [s.frame_index for s in starts], "mask_origins": origins, "summary": summary,
            "faces": records}


def _cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.4f}"


def table(result: dict[str, Any]) -> str:
    """The summary as a few plain-text tables."""
    s, count = result["summary"], result["count"]
    dists = [d for d in DISTANCES if d <= count]
    head = ["all", *[f"d={d}" for d in dists], f">{COVERED:.0%} covered", "uncovered"]
    cols = [s["all"], *[s["by_distance"][d] for d in dists], s["covered"], s["uncovered"]]
    lines = [f"{len(result['starts'])} starts (frames {result['starts'][0]}..{result['starts'][-1]}), "
             f"{s['all']['faces']} carried faces; mean IoU with the truth",
             f"{'method':<12}" + "".join(f"{h:>15}" for h in head),
             f"{'faces':<12}" + "".join(f"{c['faces']:>15}" for c in cols)]
    for m in METHODS:
        lines.append(f"{m:<12}" + "".join(_cell(c[m], 15) for c in cols))
    if "by_kind" in s:
        kinds = list(s["by_kind"])
        lines += ["", "by occluder kind in the target frame (faces may show several)",
                  f"{'method':<12}" + "".join(f"{k:>12}" for k in kinds),
                  f"{'faces':<12}" + "".join(f"{s['by_kind'][k]['faces']:>12}" for k in kinds)]
        for m in METHODS:
            lines.append(f"{m:<12}" + "".join(_cell(s["by_kind"][k][m], 12) for k in kinds))
    lines += ["", f"{LEAD} against each other method, per face (ties within {TIE}): better / worse; worst IoU"]
    for m in METHODS:
        v = s["flow_vs"].get(m, {"flow_better": "", "flow_worse": ""})
        lines.append(f"{m:<12}{v['flow_better']:>8}{v['flow_worse']:>8}{s['worst'][m]:>15.4f}")
    lines += ["", f"wrong pixels per truth pixel: within {ZONE_PX} px of an occluder / elsewhere (the outline)"]
    for m in METHODS:
        e = s["errors"][m]
        lines.append(f"{m:<12}{e['occluder_zone']:>15.4f}{e['elsewhere']:>15.4f}")
    lines += ["", "studio carry_forward time per carried face (ms): "
              + ", ".join(f"{m} {t:.1f}" for m, t in s["ms_per_face"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--occluded", type=Path, default=WORK / "occluded", help="the occluded clip's workspace")
    ap.add_argument("--clean", type=Path, default=WORK / "clean", help="the clean clip's workspace")
    ap.add_argument("--masks", type=Path, default=WORK / "occluder_masks", help="frame-space occluder truth")
    ap.add_argument("--count", type=int, default=10, help="faces to carry each mask forward")
    ap.add_argument("--every", type=int, default=10, help="a start face every N frames")
    ap.add_argument("--starts", type=int, nargs="+", default=None, help="start frames (instead of --every)")
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO,
                    help="the clean clip, for the occluder kinds per frame (skipped when missing)")
    ap.add_argument("--json", type=Path, default=None, help="write the summary and per-face scores here")
    args = ap.parse_args(argv)
    result = measure(args.occluded, args.clean, args.masks, args.count, args.every, args.starts, args.video)
    print(table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
