"""Run every benchmark of the project and print one table of ratios measured in this run.

Each benchmark is a script in this folder that takes ``--json PATH`` and writes its
figures there, with a ``ratios`` list (name, value, baseline, unit, ratio, target); the
baseline of a video stage is a plain ffmpeg transcode of the same clip, timed in the same
run. CUDA is used by the benchmarks that have a GPU path when torch sees one.

Usage: python -m benchmarks.run_all [--json results.json] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> script; later stages (train, convert) add theirs here.
BENCHMARKS = {
    "extract": "extract_speed.py",
    "descriptors": "descriptor_speed.py",
    "train": "train_speed.py",
    "autoencoder": "autoencoder_speed.py",
    "convert": "convert_speed.py",
}


def run_one(name: str, script: str, out_dir: Path) -> dict:
    out = out_dir / f"{name}.json"
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", f"benchmarks.{Path(script).stem}", "--json", str(out)],
                         capture_output=True, text=True, cwd=HERE.parent)
    took = time.perf_counter() - start
    if res.returncode != 0 or not out.exists():
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"name": name, "ok": False, "error": tail[0], "seconds": took}
    return {"name": name, "ok": True, "seconds": took, "figures": json.loads(out.read_text())}


def table(results: list[dict]) -> str:
    lines = [f"{'benchmark':12s} {'measure':38s} {'value':>10s} {'baseline':>10s} {'ratio':>7s} {'target':>7s}"]
    for r in results:
        if not r["ok"]:
            lines.append(f"{r['name']:12s} FAILED: {r['error']}")
            continue
        for q in r["figures"].get("ratios", []):
            target = f"{q['target']:.2f}" if q.get("target") is not None else "-"
            lines.append(f"{r['name']:12s} {q['name'][:38]:38s} {q['value']:9.3f}{q['unit'][:1]} "
                         f"{q['baseline']:9.3f}{q['unit'][:1]} {q['ratio']:7.3f} {target:>7s}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    args = ap.parse_args()
    import torch
    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    names = args.only or list(BENCHMARKS)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_one(n, BENCHMARKS[n], Path(tmp)) for n in names]
    print(f"device: {device}; units: s = seconds, m = ms per face")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"device": device, "results": results}, indent=2))
    if not all(r["ok"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
