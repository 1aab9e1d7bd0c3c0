"""What evaluate's ``regions`` figure would be for a perfect swap: the src person's own faces,
recoloured to the dst shot by convert's colour transfer, against the src person's medians.

``regions`` measures each part of the result (brows, eyes, nose, lips, cheeks) in CIELAB
against the same part of the src person's faces in their own footage. convert matches the
new face's colour to the dst shot (``--color rct`` by default) so that it sits in the frame's
light, which moves every part away from the src footage's colours. This script measures how
far: 48 src faces, each recoloured with the colour statistics of a random dst face (its mask),
as convert does, then measured as evaluate measures a result. The original dst faces are
measured beside them (where the swap starts from). The same is printed for the parts
measured against the face's own skin (evaluate's ``regions`` ``against_skin``), where light
mostly cancels.

Usage: python -m benchmarks.region_floor -w WORKSPACE [--faces 48] [--color rct]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convert.color_transfer import transfer
from evaluate import regions
from pipeline.training.data import load_set
from pipeline.workspace.store import Workspace


def floor(workspace: Path, faces: int = 48, method: str = "rct", seed: int = 0,
          against_skin: bool = False) -> dict[str, tuple[float, float]]:
    """Per region: median delta E of the recoloured src faces, and of the original dst faces.

    ``against_skin`` measures each part against the cheeks (``regions.contrast_delta_e``) instead.
    """
    with Workspace(workspace) as ws:
        dst = load_set(ws, "dst", 256, writer=False)
        src = load_set(ws, "src", 256, writer=False)
    own = [regions.region_colours(src.images[i], src.landmarks[i]) for i in range(len(src))]
    medians = regions.src_contrast_medians(own) if against_skin else regions.src_medians(own)
    assert medians is not None
    measure = regions.contrast_delta_e if against_skin else regions.delta_e
    rng = np.random.default_rng(seed)
    moved, original = [], []
    for i in rng.choice(len(src), min(faces, len(src)), replace=False):
        j = int(rng.integers(len(dst)))
        recoloured = transfer(method, src.images[i], dst.images[j], dst.masks[j])
        moved.append(measure(regions.region_colours(recoloured, src.landmarks[i]), medians))
        original.append(measure(regions.region_colours(dst.images[j], dst.landmarks[j]), medians))

    def median(rows: list[dict[str, float | None]], name: str) -> float:
        return float(np.median([r[name] for r in rows if r[name] is not None]))
    return {name: (median(moved, name), median(original, name))
            for name in (regions.PARTS if against_skin else regions.REGIONS)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", type=Path, required=True)
    ap.add_argument("--faces", type=int, default=48)
    ap.add_argument("--color", default="rct")
    args = ap.parse_args()
    print(f"{'region':8s} {'src recoloured to the dst shot':>31s} {'original dst face':>18s}   (median delta E "
          f"from the src person's own)")
    for name, (moved, original) in floor(args.workspace, args.faces, args.color).items():
        print(f"{name:8s} {moved:31.2f} {original:18.2f}")
    print("\nagainst the face's own skin (each part's colour minus the cheeks', against the same in the src faces):")
    for name, (moved, original) in floor(args.workspace, args.faces, args.color, against_skin=True).items():
        print(f"{name:8s} {moved:31.2f} {original:18.2f}")


if __name__ == "__main__":
    main()
