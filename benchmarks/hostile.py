"""Issue 25's hostile cases, run together: a table of each case, and proof nothing outside changed.

Runs the hostile test files (workspace links and names, mask-write races, the lock race,
studio CSRF and robustness, tampered model options, disk full, nan options, the index and
studio fuzz loops) under pytest, then prints one row per case with its outcome and time.
Around the run it fingerprints what no case may touch: the shared footage, this
repository's tracked files, and a canary folder made beside the pytest temp folders; the
last line says whether any of it changed.

Usage: python -m benchmarks.hostile [--json PATH] [-k EXPR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/test_hostile_workspace.py", "tests/test_index_fuzz.py", "tests/test_studio_security.py",
         "tests/test_hostile_resources.py"]


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its hash (links are not followed)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def tracked(repo: Path) -> str:
    """The repository's tracked files as git sees them now (content hashes of the working tree)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
    h = hashlib.sha256()
    for name in sorted(n for n in names if n):
        path = repo / name.decode()
        h.update(name)
        h.update(path.read_bytes() if path.is_file() else b"<gone>")
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the table as JSON here")
    parser.add_argument("-k", help="only the cases whose names match (pytest -k)")
    args = parser.parse_args()
    files = [f for f in FILES if (ROOT / f).is_file()]
    shared = ROOT.parent / "shared" / "data"
    canary = Path(tempfile.mkdtemp(prefix="hostile-canary-"))
    (canary / "notes.txt").write_text("an artist's file outside every workspace")
    (canary / "mask.png").write_bytes(os.urandom(4096))
    before = (fingerprint(shared), tracked(ROOT), fingerprint(canary))
    report = Path(tempfile.mkdtemp(prefix="hostile-")) / "junit.xml"
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--junitxml={report}", *files]
    if args.k:
        cmd += ["-k", args.k]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = (fingerprint(shared), tracked(ROOT), fingerprint(canary))
    rows = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = "failed" if tag != "skipped" else "skipped"
        rows.append({"file": case.get("classname", "").rsplit(".", 1)[-1], "case": case.get("name", ""),
                     "outcome": outcome, "seconds": round(float(case.get("time", 0.0)), 2)})
    untouched = {"shared data": before[0] == after[0], "repository": before[1] == after[1],
                 "canary": before[2] == after[2]}
    width = max((len(r["case"]) for r in rows), default=10)
    print(f"{'file':<24} {'case':<{width}} {'outcome':<8} {'s':>6}")
    for r in rows:
        print(f"{r['file']:<24} {r['case']:<{width}} {r['outcome']:<8} {r['seconds']:>6.1f}")
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed", "skipped")}
    print(f"{len(rows)} cases: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
          f"in {seconds:.0f} s")
    states = ", ".join(f"{k} {'unchanged' if v else 'CHANGED'}" for k, v in untouched.items())
    print(f"outside the workspaces: {states}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": rows, "counts": counts, "untouched": untouched,
                                               "seconds": seconds}, indent=1) + "\n")
    return 0 if counts["failed"] == 0 and all(untouched.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
