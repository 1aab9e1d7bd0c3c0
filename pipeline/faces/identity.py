"""Face identity from descriptors: batched encoding, matching a reference, clustering (see people.py).

Descriptors come from our PyTorch port of dlib's face-recognition ResNet; two faces of
one person are closer than ``SAME_PERSON`` (dlib's threshold) in Euclidean distance.
"""
from __future__ import annotations

import numpy as np

from pipeline.faces.face_chip import extract_chip
from pipeline.workspace.records import DESCRIPTOR_DIM

SAME_PERSON = 0.6


class IdentityEncoder:
    """Turns face chips into descriptors on the chosen device, in batches."""

    def __init__(self, device: str = "auto", batch_size: int = 16, cpu_threads: int | None = None) -> None:
        import torch

        from pipeline.core.device import choose_device, describe_device
        from pipeline.core.weights import model_path
        from pipeline.faces.face_net import load_face_net
        self._torch = torch
        if cpu_threads is not None:
            torch.set_num_threads(cpu_threads)   # beside busy detector threads: no spin-waiting
        self.device = choose_device(device)
        self.batch_size = batch_size
        self.net = load_face_net(self.device)
        self.description = (f"dlib face-recognition ResNet (PyTorch port), weights "
                            f"{model_path('dlib-face-recognition')}, on {describe_device(self.device)}")

    def describe_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        """(N, 128) float64 descriptors of (150, 150, 3) uint8 RGB chips."""
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(chips), self.batch_size):
                batch = np.stack(chips[start:start + self.batch_size])
                x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
                out.append(self.net(x).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, DESCRIPTOR_DIM))

    def describe_face(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return self.describe_chips([extract_chip(image, landmarks)])[0]


def distances(descriptors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.atleast_2d(descriptors) - np.asarray(reference)[None, :], axis=1)


def cluster(descriptors: np.ndarray, threshold: float = SAME_PERSON) -> np.ndarray:
    """Label per descriptor; one label per person, largest group first.

    For callers without tracks: every face is a unit, joined by average linkage
    (``pipeline.faces.people.group``), which does not chain people together the way
    joining the nearest group mean did. Callers with index rows use ``people.people``,
    which keeps each face track one person.
    """
    from pipeline.faces.people import group
    return group(descriptors, threshold=threshold)
