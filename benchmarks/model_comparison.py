"""Transformation network vs DF vs LIAE, after the same training time on the same CPU.

For one pair workspace (dst and src extracted) and each model type, one training run is
stopped at each mark of ``--minutes`` (by default 15, 30, 60: train ``--max-minutes`` the
difference, then resume), and each stop is judged as a user would: the model directory is
kept as ``snapshots/<m>min/``, ``convert`` renders the clip with default options,
``evaluate`` writes its report (held-apart identity, expression, pose, SSIM) and frames 10,
90 and 170 of the result are kept as stills.

The minutes are **CPU minutes of one core**: every model type trains in its own copy of
the workspace, in a process pinned to one core (``--core``) with one torch thread, and
``--max-minutes`` is measured on that process's CPU clock (``time.process_time``) instead
of the wall clock. Two queues can then run side by side on the two cores, and other work
on the machine slows them down without changing what a mark means; the types are
compared on equal terms. The work is resumable: what is recorded in
``<copy>/comparison.json`` is not redone, and a leg cut short (the process killed)
restarts from the previous mark's snapshot.

Usage:
  python -m benchmarks.model_comparison run --base WS --name main --root DIR [--models transform df liae]
         [--minutes 15 30 60] [--core 1]
  python -m benchmarks.model_comparison table --root DIR [--out docs/model_comparison] [--readme docs/measurements.md]
  python -m benchmarks.model_comparison rejudge --root DIR        (convert and evaluate every mark again)
  python -m benchmarks.model_comparison train-cpu-clock TRAIN_ARGS...   (one leg: what ``run`` starts)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STILL_FRAMES = (10, 90, 170)
#: Training options per model type: what the README tells a CPU user (batch 8; the transformation
#: network at the README main job's width 16, the autoencoders at their cpu preset and 96 px).
TRAIN_ARGS = {"transform": ["--width", "16"], "df": [], "liae": []}
BATCH = 8
#: Files of a pair workspace that every copy starts from (no model, result or report).
SKIP = ("model", "model-old-*", "result.mp4", "report", "snapshots", "comparison.json", "*.log")


def _run(cmd: list[str], log: Path, core: int | None, cpu_clock: bool = False) -> float:
    """Run ``main.py`` (``cpu_clock``: train on the CPU clock) with one torch thread on CPU core ``core``,
    appending to ``log``; wall seconds taken."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    prefix = ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []
    program = ["-m", "benchmarks.model_comparison", "train-cpu-clock"] if cpu_clock else [str(ROOT / "main.py")]
    t = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.run(prefix + [sys.executable, *program, *cmd], stdout=fh, stderr=subprocess.STDOUT,
                            env=env, cwd=ROOT).returncode
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {rc}; see {log}")
    return time.perf_counter() - t


def _figures(report: dict) -> dict:
    """The report's figures the table shows."""
    held = report["identity_held_apart"]
    return {"held_share_closer_to_src": held["share_closer_to_src"],
            "held_to_src": held["to_src"]["mean"], "held_to_dst": held["to_dst"]["mean"],
            "dlib_share_closer_to_src": report["identity_trained_against"]["share_closer_to_src"],
            "dlib_to_src": report["identity_to_src"]["mean"], "dlib_to_dst": report["identity_to_dst"]["mean"],
            "expression": report["expression"]["mean"], "pose": report["pose"]["mean"],
            "ssim": report["ssim"]["mean"], "frames_compared": report["coverage"]["frames_compared"]}


def _iteration(model_dir: Path) -> int:
    return int(json.loads((model_dir / "options.json").read_text())["iteration"])


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def judge(ws: Path, snap: Path, core: int | None) -> dict:
    """Convert and evaluate with the model in ``snap`` as a user would (default options), in a scratch copy of
    ``ws`` (training may go on in ``ws``); the report and the stills go into ``snap``. Its figures."""
    scratch = ws.parent / f"_judge_{ws.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(ws, scratch, ignore=shutil.ignore_patterns(*SKIP))
    shutil.copytree(snap, scratch / "model", ignore=shutil.ignore_patterns("report.json", "frame_*.png"))
    log = ws / "comparison.log"
    convert_s = _run(["convert", "-w", str(scratch)], log, core)
    evaluate_s = _run(["evaluate", "-w", str(scratch), "--workers", "1", "--samples", "0"], log, core)
    shutil.copy(scratch / "report" / "report.json", snap / "report.json")
    from pipeline.core.video import frame_at
    for f in STILL_FRAMES:
        still = frame_at(scratch / "result.mp4", f)
        cv2.imwrite(str(snap / f"frame_{f:03d}.png"), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    report = json.loads((snap / "report.json").read_text())
    shutil.rmtree(scratch, ignore_errors=True)
    return {"iteration": _iteration(snap), **_figures(report), "convert_seconds": convert_s,
            "evaluate_seconds": evaluate_s}


def rejudge(root: Path, core: int | None, marks: list[float] | None = None) -> None:
    """Convert and evaluate the recorded marks (all, or those in ``marks``) again, after a change to convert or
    evaluate."""
    for path in sorted(root.glob("*/comparison.json")):
        state = json.loads(path.read_text())
        for key in [k for k in state["legs"] if marks is None or float(k) in marks]:
            state["legs"][key] = judge(path.parent, path.parent / "snapshots" / f"{key}min", core)
            print(f"{state['pair']} {state['model']} {key} min judged again: {json.dumps(state['legs'][key])}",
                  flush=True)
            fresh = json.loads(path.read_text())        # a running queue may have added a mark meanwhile
            fresh["legs"][key] = state["legs"][key]
            _write_state(path, fresh)


def run_model(base: Path, name: str, model: str, root: Path, minutes: list[float], core: int | None) -> dict:
    ws = root / f"{name}_{model}"
    state_path = ws / "comparison.json"
    if not ws.exists():
        shutil.copytree(base, ws, ignore=shutil.ignore_patterns(*SKIP))
    state = json.loads(state_path.read_text()) if state_path.exists() else {"model": model, "pair": name, "legs": {}}
    log = ws / "comparison.log"
    previous = 0.0
    for m in minutes:
        key = f"{m:g}"
        if key in state["legs"]:
            previous = m
            continue
        # a leg starts from the previous mark exactly, even if an earlier try of it was cut short
        shutil.rmtree(ws / "model", ignore_errors=True)
        if previous:
            shutil.copytree(ws / "snapshots" / f"{previous:g}min", ws / "model")
        print(f"{name} {model}: training {previous:g} -> {m:g} min", flush=True)
        _run(["train", "-w", str(ws), "--model", model, "--batch-size", str(BATCH), *TRAIN_ARGS[model],
              "--max-minutes", f"{m - previous:g}", "--save-every", "100000", "--preview-every", "200"], log, core,
             cpu_clock=True)
        snap = ws / "snapshots" / f"{key}min"
        shutil.rmtree(snap, ignore_errors=True)
        shutil.copytree(ws / "model", snap)
        state["legs"][key] = judge(ws, snap, core)
        _write_state(state_path, state)
        print(f"{name} {model} {key} min: {json.dumps(state['legs'][key])}", flush=True)
        previous = m
    return state


COLUMNS = [("minutes", "{}"), ("iteration", "{}"), ("held_share_closer_to_src", "{:.3f}"), ("held_to_src", "{:.3f}"),
           ("held_to_dst", "{:.3f}"), ("dlib_share_closer_to_src", "{:.3f}"), ("dlib_to_src", "{:.3f}"),
           ("expression", "{:.4f}"), ("pose", "{:.2f}"), ("ssim", "{:.3f}")]
HEADERS = ["minutes", "iterations", "held-apart: share closer to src", "held-apart: to src", "held-apart: to dst",
           "dlib: share closer to src", "dlib: to src", "expression", "pose (deg)", "SSIM"]


def _label(image: np.ndarray, text: str) -> np.ndarray:
    from pipeline.core.images import outlined_text
    out = image.copy()
    outlined_text(out, text, (8, 26), 0.8, (255, 255, 255), thickness=2)
    return out


def _crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


README_ANCHOR = "no training uses), lower distance to src is better:\n\n"


def compact_table(states: list[dict]) -> str:
    """The README's table: per pair and model, each mark's held-apart share and distance to src."""
    rows = ["| pair | model | 15 min | 30 min | 60 min | at 60 min: expression, pose, SSIM |",
            "|---|---|---|---|---|---|"]
    for pair in ("main", "reverse"):
        for model in ("transform", "df", "liae"):
            s = next((s for s in states if s["pair"] == pair and s["model"] == model), None)
            if s is None or not s["legs"]:
                rows.append(f"| {pair} | {model} | not run yet | | | |")
                continue
            cells = [("not run yet" if (leg := s["legs"].get(m)) is None else
                      f"{leg['held_share_closer_to_src']:.2f} closer, {leg['held_to_src']:.3f} ({leg['iteration']} it)")
                     for m in ("15", "30", "60")]
            upto_60 = [k for k in s["legs"] if float(k) <= 60] or list(s["legs"])
            last = s["legs"][max(upto_60, key=float)]
            rows.append(f"| {pair} | {model} | " + " | ".join(cells)
                        + f" | {last['expression']:.3f}, {last['pose']:.1f} deg, {last['ssim']:.3f} |")
    return "\n".join(rows)


def fill_readme(readme: Path, states: list[dict]) -> None:
    """Replace the table after the README's comparison paragraph with ``compact_table``."""
    text = readme.read_text()
    start = text.index(README_ANCHOR) + len(README_ANCHOR)
    end = text.index("\n\n", start)
    readme.write_text(text[:start] + compact_table(states) + text[end:])


def table(root: Path, out: Path, readme: Path | None = None) -> None:
    """The markdown table of every finished leg and, per pair and mark, a stills sheet."""
    from pipeline.core.video import frame_at
    states = [json.loads(p.read_text()) for p in sorted(root.glob("*/comparison.json"))]
    if readme is not None:
        fill_readme(readme, states)
    lines = []
    for pair in sorted({s["pair"] for s in states}):
        lines += [f"\n**{pair}**\n", "| model | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
        for s in (s for s in states if s["pair"] == pair):
            for key, leg in sorted(s["legs"].items(), key=lambda kv: float(kv[0])):
                cells = [fmt.format(key if col == "minutes" else leg[col]) for col, fmt in COLUMNS]
                lines.append(f"| {s['model']} | " + " | ".join(cells) + " |")
    out.parent.mkdir(parents=True, exist_ok=True)
    header = [
        "# Transformation network vs DF vs LIAE, after the same CPU time",
        "",
        "Written by `python -m benchmarks.model_comparison table` from the runs of `benchmarks/model_comparison.py`",
        f"({time.strftime('%Y-%m-%d')}). Per pair workspace (main: dst = Hill's clip, src = Ocasio-Cortez's;",
        "reverse: the other way round) and model type, one training run, stopped at each mark of CPU minutes of",
        "one core (a second run trained on the other core meanwhile), judged as a user would: `convert` with",
        "default options, then `evaluate` on all 200 frames. Training options: batch 8; transform at",
        "`--width 16` (128 px), df and liae at their cpu preset (96 px). Held-apart identity is FaceNet (never",
        "used in training); dlib's is the network the transformation network trains against. Distances: lower",
        "to src and higher to dst is better; expression (landmark error in eye distances), pose (degrees) lower",
        "is better; SSIM against the original frame (structure kept) higher is better. A mark past 60 minutes",
        "continues the same run (`run --minutes 15 30 60 90`).",
        "",
        "Stills: `model_comparison_<pair>_<minutes>min.jpg`, frames 10, 90, 170: original | each model.",
    ]
    out.with_suffix(".md").write_text("\n".join(header + lines) + "\n")
    print("\n".join(lines))
    for pair in sorted({s["pair"] for s in states}):
        models = [s for s in states if s["pair"] == pair]
        marks = sorted({k for s in models for k in s["legs"]}, key=float)
        ws0 = root / f"{pair}_{models[0]['model']}"
        reference = Path(json.loads((ws0 / "snapshots" / f"{marks[0]}min" / "report.json").read_text())["reference"])
        for key in marks:
            rows = []
            for f in STILL_FRAMES:
                original = frame_at(reference, f)
                h, w = original.shape[:2]
                side = min(h, w)
                box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
                cells = [_label(cv2.resize(_crop(original, box), (320, 320)), f"original {f}")]
                for s in models:
                    p = root / f"{pair}_{s['model']}" / "snapshots" / f"{key}min" / f"frame_{f:03d}.png"
                    if p.exists():
                        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                        cells.append(_label(cv2.resize(_crop(img, box), (320, 320)), s["model"]))
                rows.append(np.hstack(cells))
            sheet = np.vstack(rows)
            path = out.parent / f"{out.name}_{pair}_{key}min.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
            print(f"stills: {path}")


def train_on_cpu_clock(argv: list[str]) -> int:
    """``main.py train`` with its clock (``--max-minutes``, the log's seconds) reading this process's CPU time."""
    import types

    import torch

    import main as cli
    import pipeline.training.loop
    torch.set_num_threads(1)
    pipeline.training.loop.time = types.SimpleNamespace(perf_counter=time.process_time,     # type: ignore[attr-defined]
                                               strftime=time.strftime)
    return cli.main(argv)


def main() -> None:
    if sys.argv[1:2] == ["train-cpu-clock"]:
        raise SystemExit(train_on_cpu_clock(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train, snapshot, convert and evaluate each model type")
    r.add_argument("--base", type=Path, required=True, help="pair workspace with dst and src extracted")
    r.add_argument("--name", required=True, help="name of the pair in the table (main, reverse)")
    r.add_argument("--root", type=Path, required=True, help="folder for the per-model workspace copies")
    r.add_argument("--models", nargs="+", default=["transform", "df", "liae"], choices=sorted(TRAIN_ARGS))
    r.add_argument("--minutes", nargs="+", type=float, default=[15, 30, 60])
    r.add_argument("--core", type=int, default=1, help="CPU core to pin to (-1: no pinning)")
    j = sub.add_parser("rejudge", help="convert and evaluate every recorded mark again")
    j.add_argument("--root", type=Path, required=True)
    j.add_argument("--core", type=int, default=-1, help="CPU core to pin to (-1: no pinning)")
    j.add_argument("--marks", nargs="+", type=float, help="only these marks (minutes)")
    t = sub.add_parser("table", help="the table and stills of what has been run")
    t.add_argument("--root", type=Path, required=True)
    t.add_argument("--out", type=Path, default=ROOT / "docs" / "model_comparison")
    t.add_argument("--readme", type=Path, help="also fill the compact table in this file (docs/measurements.md)")
    args = ap.parse_args()
    if args.cmd == "run":
        for model in args.models:
            core = None if args.core < 0 else args.core
            run_model(args.base, args.name, model, args.root, sorted(args.minutes), core)
    elif args.cmd == "rejudge":
        rejudge(args.root, None if args.core < 0 else args.core, args.marks)
    else:
        table(args.root, args.out, args.readme)


if __name__ == "__main__":
    main()
