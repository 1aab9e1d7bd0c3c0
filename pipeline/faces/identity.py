"""Face identity from descriptors: batched encoding, matching a reference, clustering (see people.py).

Descriptors come from our PyTorch port of dlib's face-recognition ResNet (run in ONNX Runtime
on the CPU, ``face_net_onnx``); two faces of one person are closer than ``SAME_PERSON``
(dlib's threshold) in Euclidean distance.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.faces.face_chip import extract_chip
from pipeline.workspace.records import DESCRIPTOR_DIM

if TYPE_CHECKING:
    from pipeline.faces.face_net_onnx import OnnxFaceNet

log = logging.getLogger("identity")

SAME_PERSON = 0.6


class IdentityEncoder:
    """Turns face chips into descriptors on the chosen device, in batches.

    On the CPU the network runs in ONNX Runtime (``face_net_onnx``: no torch import, faster per
    face); on a GPU in PyTorch. Both are the same port of dlib's network, agreeing to 1e-4.
    """

    def __init__(self, device: str = "auto", batch_size: int = 16, cpu_threads: int | None = None) -> None:
        from pipeline.core.device import on_cpu_only
        from pipeline.core.errors import first_line
        from pipeline.core.weights import model_path
        self.batch_size = batch_size
        weights = model_path("dlib-face-recognition")
        self._onnx: OnnxFaceNet | None = None
        if on_cpu_only(device) and weights.is_file():     # a missing file: the port's loader says what to install
            from pipeline.faces.face_net_onnx import OnnxFaceNet
            try:
                self._onnx = OnnxFaceNet(weights, cpu_threads)
            except Exception as exc:  # noqa: BLE001 - exporter or runtime: the PyTorch port does the same work
                log.warning("warning: dlib's face-recognition ResNet cannot run in ONNX Runtime here (%s); "
                            "using the PyTorch port", first_line(exc))
            else:
                self.device: Any = "cpu"
                self.description = (f"dlib face-recognition ResNet (ONNX Runtime, exported from the PyTorch "
                                    f"port, {self._onnx.source}), weights {weights}, on cpu "
                                    f"({cpu_threads or 'all'} threads)")
                return
        import torch

        from pipeline.core.device import choose_device, describe_device
        from pipeline.faces.face_net import load_face_net
        self._torch = torch
        if cpu_threads is not None:
            torch.set_num_threads(cpu_threads)   # beside busy detector threads: no spin-waiting
        self.device = choose_device(device)
        self.net = load_face_net(self.device)
        self.description = (f"dlib face-recognition ResNet (PyTorch port), weights {weights}, "
                            f"on {describe_device(self.device)}")

    def describe_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        """(N, 128) float64 descriptors of (150, 150, 3) uint8 RGB chips."""
        out = []
        for start in range(0, len(chips), self.batch_size):
            batch = np.stack(chips[start:start + self.batch_size])
            out.append(self._describe_batch(batch))
        return np.concatenate(out) if out else np.zeros((0, DESCRIPTOR_DIM))

    def _describe_batch(self, batch: np.ndarray) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx(batch)
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
            return self.net(x).double().cpu().numpy()

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
