"""Which loss term paints colour into the trained network's output? Gradients, term by term.

For a workspace with a trained transformation network, the model is loaded as training
would resume it, and for a few batches of dst faces each weighted loss term's gradient
with respect to the output image is taken apart:

- ``colour share``: the part of the term's gradient that is colour (the gradient minus its
  grey mean over R, G, B), as a share of the whole, inside the face mask;
- ``push to output's colour``: cosine between the term's descent direction (minus its
  gradient), colour part only, and the colour part of the change the network actually
  makes (output minus input). Positive: this term pulls the output toward the colour it
  has, i.e. it keeps the fringes there; negative: it pushes them out.

A term with a large colour share and a positive push is where the colour comes from.
Nothing is trained or written: the workspace is copied to a temp folder first.

Usage: python -m benchmarks.fringe_sources -w WORKSPACE [--batches 4]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.models.transform_options import TransformOptions
from pipeline.training.data import to_tensor
from train.options import TrainOptions
from train.trainer import Trainer


def _copy(workspace: Path, into: Path) -> Path:
    dst = into / "ws"
    shutil.copytree(workspace, dst, ignore=shutil.ignore_patterns("history", "report", "preview", "*.mp4",
                                                                  "model-old-*"))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", type=Path, required=True)
    ap.add_argument("--batches", type=int, default=4)
    args = ap.parse_args()
    saved = json.loads((args.workspace / "model" / "options.json").read_text())
    fields = {f.name for f in dataclasses.fields(TransformOptions)}
    model_options = TransformOptions(**{k: v for k, v in saved.items() if k in fields})
    with tempfile.TemporaryDirectory() as tmp:
        ws = _copy(args.workspace, Path(tmp))
        trainer = Trainer(TrainOptions(workspace=ws, iterations=saved["iterations"], batch_size=saved["batch_size"],
                                       seed=saved.get("seed", 0), model_options=model_options, device="cpu"))
        try:
            family = trainer.family
            print(f"model at iteration {trainer.iteration} of {saved['iterations']}, width {model_options.width}")
            rows: dict[str, list[tuple[float, float, float]]] = {}
            for _ in range(args.batches):
                idx = trainer._batch()
                y, terms, _, _ = family.loss_terms(idx, trainer.iteration, saved["iterations"])
                x = to_tensor(family.content.images[idx], family.device)
                m = to_tensor(family.content.masks[idx], family.device)
                change = (y - x).detach()
                change_colour = (change - change.mean(dim=1, keepdim=True)) * m
                for name, term in terms.items():
                    (g,) = torch.autograd.grad(term, y, retain_graph=True)
                    g = g * m
                    colour = g - g.mean(dim=1, keepdim=True)
                    share = float(colour.pow(2).sum() / g.pow(2).sum().clamp_min(1e-30))
                    push = float(torch.nn.functional.cosine_similarity(
                        (-colour).flatten(), change_colour.flatten(), dim=0))
                    rows.setdefault(name, []).append((share, push, float(colour.pow(2).sum().sqrt())))
        finally:
            trainer.lock.release()
    print(f"\n{'term':<10}{'colour share':>14}{'push to output colour':>24}{'colour gradient norm':>22}")
    for name, vals in rows.items():
        a = np.array(vals)
        print(f"{name:<10}{a[:, 0].mean():>14.3f}{a[:, 1].mean():>24.3f}{a[:, 2].mean():>22.2e}")


if __name__ == "__main__":
    main()
