"""The ``learned`` masker: the workspace's trained segmenter (``masks train``) as a masker.

``masks apply`` runs it on every face whose mask the artist did not paint and records
its masks as origin ``learned``. It needs a trained model, so it is not an extract-time
masker: extract writes the landmark hull first, and the segmenter learns from the
artist's corrections of it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError
from pipeline.faces.backends.base import Masker

log = logging.getLogger("masks")

MASKS_TRAIN = "retrain with 'python main.py masks train'"


class LearnedMasker(Masker):
    name = "learned"
    description = "segmenter trained on the artist's hand-painted masks (masks train, then masks apply)"

    def __init__(self, model_dir: Path | None = None, device: str = "auto", batch: int = 16) -> None:
        if model_dir is None:
            raise UserError("the learned masker needs a trained mask model: run 'python main.py masks train' and "
                            "then 'python main.py masks apply' (extract with --masker hull or dense)")
        import torch

        from pipeline.core.device import choose_device
        from pipeline.models.segmenter import SegmenterModel, weights_hash
        from pipeline.models.store import load_model
        self.device = choose_device(device)
        model, meta = load_model(Path(model_dir), self.device, SegmenterModel, MASKS_TRAIN)
        assert isinstance(model, SegmenterModel)
        self.model, self.meta = model, meta
        self.face_type: str = meta.get("face_type", "full")
        self.hash = weights_hash(Path(model_dir))
        self.predictor = model.predictor(self.device)
        self.batch = batch
        self._torch = torch

    def describe(self) -> str:
        return (f"learned segmenter {self.hash} ({self.model.resolution} px, iteration {self.meta.get('iteration')}, "
                f"{self.meta.get('hand_masks')} hand masks) on {self.device}")

    def masks(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        """Masks (0/255, each face's size) of aligned RGB faces, in batches."""
        from pipeline.models.segmenter import predict_masks
        out: list[np.ndarray] = []
        for i in range(0, len(faces), self.batch):
            chunk = faces[i:i + self.batch]
            sizes = {f.shape[0] for f in chunk}
            if len(sizes) == 1:
                out += predict_masks(self.predictor, chunk, self.model.resolution, self.device)
            else:
                for f in chunk:
                    out += predict_masks(self.predictor, [f], self.model.resolution, self.device)
        return out

    def mask(self, aligned: np.ndarray | None, landmarks: np.ndarray, size: int,
             dense: np.ndarray | None = None) -> np.ndarray:
        if aligned is None:
            raise UserError("the learned masker needs the aligned face image")
        from pipeline.models.segmenter import predict_masks
        return predict_masks(self.predictor, [aligned], self.model.resolution, self.device, size)[0]
