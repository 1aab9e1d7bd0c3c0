"""``convert --enhance``: the src person's face enhancer (``main.py enhance``) run on the face model's output.

It runs on the model's output batch, at the model's resolution and before colour
transfer, so every later step (colour, blinks, detail, blending) sees a restored face and
nothing else changes. Used when the workspace has one (``workspace/enhancer/``) and
``--enhance`` is above 0; an enhancer made for another resolution than the face model's
is refused in one line (retrain it, or convert with ``--enhance 0``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.workspace import layout

log = logging.getLogger("convert")


class FaceEnhancer:
    """The enhancer on the face model's device, mixing its restoration in at ``strength`` (0..1)."""

    def __init__(self, folder: Path, device: Any, resolution: int, strength: float, precision: str = "auto") -> None:
        from pipeline.models.enhancer import load_enhancer
        self.predictor, self.meta = load_enhancer(folder, device, "float" if precision == "float" else "auto")
        if self.meta["resolution"] != resolution:
            raise UserError(f"the face enhancer in {folder} restores {self.meta['resolution']} px faces, but the face "
                            f"model makes {resolution} px ones; retrain it with 'python main.py enhance --fresh' or "
                            f"convert with --enhance 0")
        self.strength = strength
        self.folder = folder
        log.info("convert: face enhancer %s (%s px, width %s, iteration %s, %s src faces), strength %g, %s",
                 folder / "weights.pt", self.meta["resolution"], self.meta["width"], self.meta.get("iteration", "?"),
                 self.meta.get("src_faces", "?"), strength, self.predictor.description)

    def __call__(self, faces: Any) -> Any:
        """(N, 3, R, R) float faces in [0, 1] -> restored (a torch tensor, same device)."""
        restored = self.predictor(faces.float())
        if self.strength >= 1.0:
            return restored
        return faces + (restored - faces) * self.strength


def find_enhancer(workspace: Path, strength: float, device: Any, resolution: int,
                  precision: str = "auto") -> FaceEnhancer | None:
    """The workspace's enhancer, or None when ``strength`` is 0 or none was trained; ``precision`` is
    convert's ``--precision`` (``float`` keeps it in float32, otherwise bfloat16 where the CPU has it)."""
    folder = layout.enhancer_dir(workspace)
    if strength <= 0:
        return None
    if not (folder / "weights.pt").is_file():
        return None
    return FaceEnhancer(folder, device, resolution, strength, precision)
