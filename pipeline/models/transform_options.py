"""Options of the transformation-network model type (``--model transform``), each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option
from pipeline.registries import FEATURES


@dataclass
class TransformOptions:
    resolution: int = option(128, choices=(128, 256),
                             help="network resolution; 256 grows from the workspace's trained 128 model (only the "
                                  "new branch trains)")
    width: int | None = option(None, low=1, high=512,
                               default_text="16 on the CPU, 32 on CUDA; a model being continued keeps its own",
                               help="channels per branch of the network (32: about 1.1M parameters; 16 trains 2.7x "
                                    "faster on a CPU and converts 1.5x faster there)")
    skip: bool = option(True, flag="--no-skip", action="store_false",
                        help="the paper's plain output instead of input + learned residual")
    alpha: float | None = option(None, low=0, default_text="20 at 128, 80 at 256",
                                 help="style weight, raised from 0 over --alpha-ramp of the iterations")
    alpha_ramp: float = option(0.5, low=0, high=1,
                               help="fraction of the iterations over which the style weight rises from 0 "
                                    "(0 = constant)")
    beta: float = option(20.0, low=0, help="light weight: keeps the dst face's low-frequency shading and colour")
    gamma: float = option(0.3, low=0, help="total-variation weight")
    skin_chroma: bool = option(False, action="toggle",
                               help="let the colour of a change go toward the face's own colour around it (erasing "
                                    "a feature with skin); other colour changes still count against the light term")
    identity_weight: float = option(1.0, low=0,
                                    help="weight of the identity loss (distance of the output's face descriptor, "
                                         "on randomly degraded copies, to the src identity); 0 = off")
    features: str = option("dlib", choices=FEATURES, help="loss network")
    content_layers: list[str] | None = option(None, metavar="LAYER",
                                              default_text="level2 for dlib, relu4_2 for vgg19",
                                              help="content layers")
    style_layers: list[str] | None = option(None, metavar="LAYER",
                                            default_text="level1 level2 for dlib, relu3_1 relu4_1 for vgg19",
                                            help="style layers")
    patch: int = option(1, low=1, high=15, help="style patch size k (odd)")
    n_best: int = option(16, low=1, help="style faces per dst face, by closest landmarks")
    style_warp: bool = option(True, action="toggle",
                              help="bring each src face's style features into the dst face's shape (a spline on "
                                   "the landmarks) and skip what is not src face, so a turned head is not painted "
                                   "with a frontal face's nose, brows or edge; --no-style-warp compares the same "
                                   "position, as the paper does")


#: ``--width`` when not given: what a CPU trains and converts in its budget, and the paper-sized
#: net where a GPU makes it cheap.
CPU_WIDTH, CUDA_WIDTH = 16, 32


def default_width(device_type: str, model_dir: Path | None = None) -> int:
    """The width of the model in ``model_dir`` when there is one to continue, else by device."""
    import json
    options = None if model_dir is None else model_dir / "options.json"
    if options is not None and options.is_file():
        try:
            width = json.loads(options.read_text()).get("width")
        except (ValueError, AttributeError):
            width = None
        if isinstance(width, int) and not isinstance(width, bool) and width >= 1:
            return width
    return CPU_WIDTH if device_type == "cpu" else CUDA_WIDTH
