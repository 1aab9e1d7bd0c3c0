"""Learned masks against the landmark hull, on a clip with moving occluders and exact truth.

1. A clean shared clip is extracted (``clean/``); ``benchmarks.occluded_clip`` draws a hand,
   a microphone, glasses and a strand of hair over its faces, moving across the frames,
   with the exact occluder mask of each frame.
2. The occluded clip is extracted as a user would (``occluded/``: hull masks).
3. Truth per face: the hull of the *clean* frame's landmarks, minus the occluder, both cut
   through the face's stored transform into its aligned crop.
4. For each N (5, 10, 20): a copy of the workspace gets the truth of N evenly spaced frames
   as hand-painted masks, ``masks train`` runs for at most ``--minutes``, ``masks apply``
   writes the rest; IoU against the truth on the unlabelled faces, beside the hull's IoU on
   the same faces (all of them, and those with over 10 % of the face covered).
   ``--unseen hand`` labels only frames without the hand and also scores the frames with it:
   does the segmenter keep an occluder out that no painted mask showed it?
5. With ``--face-model`` (a trained ``workspace/model`` of this clip's person), the occluded
   clip is converted twice, with the hull masks and with the N = max learned masks, and the
   mean CIE76 colour difference between output and input frames is measured inside the
   occluders (where they cross the face's hull) and, to show the swap still happened, on the
   visible face.

Usage:
  python -m benchmarks.mask_quality --work /tmp/maskq [--video ../shared/data/videos/WDA_KatieHill_000.mp4]
      [--labels 5 10 20] [--minutes 10] [--face-model WS/model]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.occluded_clip import build_occluded_clip, occluder_presence
from pipeline.core import geometry
from pipeline.core.files import write_atomic
from pipeline.core.images import encode, read_gray
from pipeline.core.video import FrameReader, probe
from pipeline.workspace.records import FaceRow
from pipeline.workspace.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"
COVERED = 0.10          # faces with more than this share of their truth hull covered count as "occluded"


def _extract(video: Path, ws: Path) -> None:
    from extract.options import ExtractOptions
    from extract.runner import run_extract
    if not (ws / "workspace.json").exists():
        print(run_extract(ExtractOptions(input=video, workspace=ws)).line())


def truths(occluded_ws: Path, clean_ws: Path, occluder_masks: Path) -> dict[int, tuple[np.ndarray, float]]:
    """Per face id of the occluded workspace: (truth mask at the aligned size, covered share of the face)."""
    with Workspace(clean_ws) as ws:
        clean = {r.frame_index: r.landmarks for r in ws.faces("dst", kept=True) if r.face_index == 0}
    out: dict[int, tuple[np.ndarray, float]] = {}
    with Workspace(occluded_ws) as ws:
        for row in ws.faces("dst", kept=True):
            if row.frame_index not in clean or row.face_index != 0:
                continue
            face = geometry.hull_mask(geometry.transform_points(clean[row.frame_index], row.transform), row.size)
            occ = read_gray(occluder_masks / f"{row.frame_index:06d}.png")
            assert occ is not None
            occ_aligned = cv2.warpAffine(occ, row.transform, (row.size, row.size), flags=cv2.INTER_LINEAR) > 127
            truth = np.where(occ_aligned, 0, face).astype(np.uint8)
            covered = float((occ_aligned & (face > 127)).sum() / max((face > 127).sum(), 1))
            assert row.id is not None
            out[row.id] = (truth, covered)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a > 127, b > 127
    union = np.logical_or(x, y).sum()
    return float(np.logical_and(x, y).sum() / union) if union else 1.0


def _rows(ws_path: Path) -> list[FaceRow]:
    with Workspace(ws_path) as ws:
        return ws.faces("dst", kept=True)


def _scores(ws_path: Path, truth: dict[int, tuple[np.ndarray, float]], skip: set[int],
            frames: set[int] | None = None) -> dict[str, float]:
    with Workspace(ws_path) as ws:
        rows = [r for r in ws.faces("dst", kept=True) if r.id in truth and r.id not in skip
                and (frames is None or r.frame_index in frames)]
        values = [(iou(read_gray(ws.mask_path(r)), truth[r.id][0]), truth[r.id][1]) for r in rows]  # type: ignore
    all_iou = np.array([v for v, _ in values])
    occ_iou = np.array([v for v, c in values if c > COVERED])
    return {"faces": len(values), "mean": round(float(all_iou.mean()), 4),
            "median": round(float(np.median(all_iou)), 4), "worst": round(float(all_iou.min()), 4),
            "occluded_faces": len(occ_iou),
            "occluded_mean": round(float(occ_iou.mean()), 4) if len(occ_iou) else None}


def _label(ws_path: Path, truth: dict[int, tuple[np.ndarray, float]], n: int,
           frames: set[int] | None = None) -> set[int]:
    """Paint the truth of ``n`` evenly spaced faces (of ``frames``) as an artist would: they become 'hand'."""
    rows = [r for r in _rows(ws_path) if r.id in truth and (frames is None or r.frame_index in frames)]
    picks = np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))
    with Workspace(ws_path) as ws:
        for i in picks:
            write_atomic(ws.mask_path(rows[i]), encode(truth[rows[i].id][0], ".png"))  # type: ignore[index]
    return {rows[i].id for i in picks}  # type: ignore[misc]


def colour_change(output: Path, source: Path, occluder_masks: Path, clean_ws: Path) -> dict[str, float]:
    """Mean CIE76 distance output vs input: inside occluders over the face's hull, and on the visible face."""
    with Workspace(clean_ws) as ws:
        clean = {r.frame_index: r.landmarks for r in ws.faces("dst", kept=True) if r.face_index == 0}
    info = probe(source)
    occ_sum = occ_n = face_sum = face_n = 0.0
    for (i, a), (_, b) in zip(FrameReader(source, info.width, info.height), FrameReader(output, info.width,
                                                                                        info.height)):
        if i not in clean:
            continue
        hull = geometry.hull_mask(clean[i], (info.height, info.width)) > 127
        occ = read_gray(occluder_masks / f"{i:06d}.png")
        assert occ is not None
        occ = occ > 127
        lab_a = cv2.cvtColor(a.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
        lab_b = cv2.cvtColor(b.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
        de = np.sqrt(((lab_a - lab_b) ** 2).sum(2))
        inside = occ & hull
        visible = hull & ~cv2.dilate(occ.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        occ_sum, occ_n = occ_sum + de[inside].sum(), occ_n + inside.sum()
        face_sum, face_n = face_sum + de[visible].sum(), face_n + visible.sum()
    return {"occluder_delta_e": round(occ_sum / max(occ_n, 1), 3),
            "visible_face_delta_e": round(face_sum / max(face_n, 1), 3), "occluder_pixels": int(occ_n)}


def _convert(ws_path: Path, model: Path, output: Path) -> float:
    from convert.options import ConvertOptions
    from convert.runner import run_convert
    if (ws_path / "model").exists():
        shutil.rmtree(ws_path / "model")
    shutil.copytree(model, ws_path / "model", ignore=shutil.ignore_patterns("history", "checkpoint.pt"))
    t0 = time.perf_counter()
    print(run_convert(ConvertOptions(workspace=ws_path, output=output)).line())
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the clips and workspaces")
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="clean clip (default: Katie Hill's)")
    ap.add_argument("--labels", type=int, nargs="+", default=[5, 10, 20], help="hand-painted faces per run")
    ap.add_argument("--minutes", type=float, default=10.0, help="masks train --max-minutes per run")
    ap.add_argument("--iterations", type=int, default=850,
                    help="masks train --iterations per run (its learning rate decays over them; 850 fit in 10 "
                         "minutes here)")
    ap.add_argument("--resolution", type=int, default=128, help="masks train --resolution")
    ap.add_argument("--occluders", type=float, default=0.6, help="masks train --occluders (0: no synthetic ones)")
    ap.add_argument("--unseen", choices=("hand", "microphone", "glasses", "hair"), default=None,
                    help="label only frames without this occluder; also score the frames that show it")
    ap.add_argument("--face-model", type=Path, default=None,
                    help="a trained model folder (workspace/model) for this clip's person: also convert and measure")
    args = ap.parse_args(argv)
    from masks.apply import run_apply
    from masks.options import MaskApplyOptions, MaskTrainOptions
    from masks.training import run_mask_train

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    clean, occluded = work / "clean", work / "occluded"
    clip, occ_masks = work / "occluded.mp4", work / "occluder_masks"
    _extract(args.video, clean)
    if not clip.exists():
        print(json.dumps(build_occluded_clip(clean, args.video, clip, occ_masks)))
    _extract(clip, occluded)
    truth = truths(occluded, clean, occ_masks)
    shown: set[int] | None = None
    if args.unseen:
        presence = occluder_presence(clean, args.video)
        shown = {i for i, kinds in enumerate(presence) if kinds[args.unseen]}
        print(f"--unseen {args.unseen}: labels only from the {len(presence) - len(shown)} frames without it; "
              f"scored also on the {len(shown)} frames with it")
    hull_all = _scores(occluded, truth, set())
    results: dict = {"hull_all_faces": hull_all, "runs": {}}
    print(f"hull masks, all {hull_all['faces']} faces: IoU mean {hull_all['mean']}, worst {hull_all['worst']}; "
          f"faces over {COVERED:.0%} covered ({hull_all['occluded_faces']}): {hull_all['occluded_mean']}")
    last = None
    for n in args.labels:
        ws_n = work / f"labels_{n}"
        if ws_n.exists():
            shutil.rmtree(ws_n)
        shutil.copytree(occluded, ws_n, ignore=shutil.ignore_patterns("model", "mask_model", "result.mp4"))
        hidden = None if shown is None else {i for i in range(probe(clip).frames) if i not in shown}
        labelled = _label(ws_n, truth, n, hidden)
        hull = _scores(occluded, truth, labelled)
        t0 = time.perf_counter()
        summary = run_mask_train(MaskTrainOptions(workspace=ws_n, max_minutes=args.minutes, iterations=args.iterations,
                                                  resolution=args.resolution, occluders=args.occluders))
        train_s = time.perf_counter() - t0
        print(summary.line())
        print(run_apply(MaskApplyOptions(workspace=ws_n, set_name="dst")).line())
        learned = _scores(ws_n, truth, labelled)
        results["runs"][n] = {"hull": hull, "learned": learned, "iterations": summary.iterations_done,
                              "train_seconds": round(train_s, 1)}
        if shown is not None:
            unseen = {"hull": _scores(occluded, truth, labelled, shown),
                      "learned": _scores(ws_n, truth, labelled, shown)}
            results["runs"][n]["unseen"] = {"kind": args.unseen, **unseen}
            print(f"N={n}, frames showing the unseen {args.unseen} ({unseen['learned']['faces']}): IoU learned "
                  f"{unseen['learned']['mean']} (worst {unseen['learned']['worst']}) vs hull {unseen['hull']['mean']}")
        print(f"N={n}: {learned['faces']} unlabelled faces; IoU learned {learned['mean']} (median {learned['median']}, "
              f"worst {learned['worst']}) vs hull {hull['mean']} (worst {hull['worst']}); occluded faces "
              f"({learned['occluded_faces']}): learned {learned['occluded_mean']} vs hull {hull['occluded_mean']}; "
              f"{summary.iterations_done} iterations in {train_s:.0f} s")
        last = ws_n
    if args.face_model is not None and last is not None:
        out_hull, out_learned = work / "convert_hull.mp4", work / "convert_learned.mp4"
        _convert(occluded, args.face_model, out_hull)
        _convert(last, args.face_model, out_learned)
        results["convert"] = {"hull": colour_change(out_hull, clip, occ_masks, clean),
                              "learned": colour_change(out_learned, clip, occ_masks, clean)}
        c = results["convert"]
        print(f"convert, inside the occluders over the face (mean CIE76 output vs input): hull masks "
              f"{c['hull']['occluder_delta_e']}, learned masks {c['learned']['occluder_delta_e']}; on the visible "
              f"face: {c['hull']['visible_face_delta_e']} / {c['learned']['visible_face_delta_e']}")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
