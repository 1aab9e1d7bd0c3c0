"""Options of the autoencoder model types (``--model df``, ``--model liae``), each declared once.

Names and defaults follow DeepFaceLab's SAEHD, so its users find them where they expect:
``ae_dims``, ``e_dims``, ``d_dims``, ``d_mask_dims``, random warp, random flip, masked
training, eyes and mouth priority. Two named width presets stand in for DeepFaceLab's
prompts: ``gpu`` is SAEHD's defaults, ``cpu`` is what two CPU cores train at a useful rate
(``benchmarks/autoencoder_speed.py`` measures both).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipeline.core.options import TOGGLE, option

#: Sides the networks take: their encoder halves the side four times (read when the parser is
#: built, so this module imports no torch).
RESOLUTIONS = tuple(range(64, 257, 16))


class Widths(NamedTuple):
    ae_dims: int
    e_dims: int
    d_dims: int
    d_mask_dims: int


#: Named widths: ``gpu`` = DeepFaceLab SAEHD's defaults; ``cpu`` = small enough for two CPU cores.
PRESETS: dict[str, Widths] = {"cpu": Widths(128, 24, 12, 6), "gpu": Widths(256, 64, 64, 22)}
WIDTH_KEYS = Widths._fields
#: The model types that take these options.
KINDS = ("df", "liae")


def _preset_text(name: str) -> str:
    w = PRESETS[name]
    return f"ae {w.ae_dims}, e {w.e_dims}, d {w.d_dims}, d_mask {w.d_mask_dims}"


@dataclass
class AutoencoderOptions:
    resolution: int = option(96, choices=RESOLUTIONS, metavar="R",
                             help="side of the face the network sees and paints, in pixels: a multiple of 16 from "
                                  "64 to 256 (the aligned faces are scaled to it; convert scales the result back). "
                                  "The cost grows with its square")
    preset: str | None = option(None, choices=tuple(PRESETS),
                                default_text="cpu on the CPU, gpu on CUDA; a model being continued keeps its widths",
                                help=f"named widths: cpu = {_preset_text('cpu')} (two CPU cores train it at a useful "
                                     f"rate), gpu = {_preset_text('gpu')} (DeepFaceLab SAEHD's defaults); "
                                     f"--ae-dims and the others override single widths")
    ae_dims: int | None = option(None, low=4, high=2048, default_text="from --preset",
                                 help="bottleneck width: the code every face passes through (DeepFaceLab ae_dims)")
    e_dims: int | None = option(None, low=1, high=512, default_text="from --preset",
                                help="encoder width: channels of its first level; the levels have 1, 2, 4, 8 times "
                                     "as many (DeepFaceLab e_dims)")
    d_dims: int | None = option(None, low=1, high=512, default_text="from --preset",
                                help="face decoder width: its levels have 8, 4, 2 times as many channels "
                                     "(DeepFaceLab d_dims)")
    d_mask_dims: int | None = option(None, low=1, high=512, default_text="from --preset",
                                     help="mask decoder width, as d_dims (DeepFaceLab d_mask_dims)")
    random_warp: bool = option(True, action=TOGGLE,
                               help="warp each input face by a smooth random grid while the target it must "
                                    "reproduce stays unwarped, so the network learns faces rather than copying "
                                    "pixels (DeepFaceLab turns it off late in training to sharpen)")
    random_flip: bool = option(True, action=TOGGLE,
                               help="mirror half of the faces (input and target alike); the rotation, scale and "
                                    "shift jitter always applies to both")
    eyes_mouth_prio: bool = option(False, action=TOGGLE,
                                   help="extra loss weight on the eyes and mouth, found from the aligned landmarks "
                                        "(DeepFaceLab eyes_mouth_prio): sharper eyes and teeth, slower elsewhere")
    masked_loss: bool = option(True, action=TOGGLE,
                               help="count the face's reconstruction error only inside the workspace's masks "
                                    "(hand-painted ones included), softened at the edge; off = the whole crop "
                                    "(DeepFaceLab masked_training)")
    true_face_power: float = option(0.0, low=0.0, high=1.0, metavar="W",
                                    help="DF only: weight of a code discriminator that pushes the dst faces' codes "
                                         "to pass for src ones, so the swap looks more like the src person "
                                         "(DeepFaceLab true_face_power; 0 = off, 0.01 is a usual value)")
    gan_power: float = option(0.0, low=0.0, high=1.0, metavar="W",
                              help="weight of a patch discriminator that rates the src reconstructions against the "
                                   "real src faces inside the mask: sharper skin texture, can add artefacts "
                                   "(DeepFaceLab gan_power; 0 = off, 0.1 is usual, turned on late in training)")
    mask_loss: bool = option(True, action=TOGGLE,
                             help="train the network's own mask output against the workspace's masks (convert can "
                                  "use it where faces are turned or covered)")


def widths_of_model(model_dir: Path | None) -> Widths | None:
    """The widths of the autoencoder in ``model_dir`` (to continue it), or None when there is none."""
    path = None if model_dir is None else model_dir / "options.json"
    if path is None or not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        values = [meta.get(k) for k in WIDTH_KEYS]
        if meta.get("model_type") not in KINDS:
            return None
    except (ValueError, AttributeError, OSError):
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return Widths(*values)
    return None


def resolve_widths(o: AutoencoderOptions, device_type: str, model_dir: Path | None) -> tuple[Widths, str]:
    """(widths, where they came from): --preset, else the model being continued, else by device; then
    single widths given override."""
    continued = None if o.preset is not None else widths_of_model(model_dir)
    if continued is not None:
        base, source = continued, "the model being continued"
    else:
        name = o.preset or ("cpu" if device_type == "cpu" else "gpu")
        base, source = PRESETS[name], f"preset {name}"
    given = {k: getattr(o, k) for k in WIDTH_KEYS if getattr(o, k) is not None}
    if given:
        base = base._replace(**given)
        source += " with " + ", ".join(f"{k.removesuffix('_dims')} {v}" for k, v in given.items())
    return base, source
