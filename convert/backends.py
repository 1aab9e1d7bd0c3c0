"""Convert's own pluggable kinds: colour transfers (``--color``) and blend modes (``--blend``).

They are convert's alone, so convert declares them and registers its entries here; the
package imports this module when it loads, which is how ``main.py models`` lists them
(``pipeline.core.registry.listed``). Entries are imported only when used.
"""
from __future__ import annotations

from pipeline.core.registry import Entry, Registry

_OURS = "this project's code"

#: Colour transfer of the generated face toward the dst face: f(source, target, on, seed) (``color_transfer.py``).
COLOR_TRANSFERS = Registry("colour transfer", "--color")
#: How the generated face enters the frame: f(face, frame_roi, alpha) -> face (``convert/blending.py``).
BLEND_MODES = Registry("blend mode", "--blend")

for _name, _what in (("rct", "Reinhard: Lab mean/std"), ("lct", "linear: mean and covariance"),
                     ("mkl", "Monge-Kantorovich linear map"), ("idt", "iterative distribution transfer"),
                     ("sot", "sliced optimal transport"), ("hist", "histogram matching"),
                     ("none", "colours left as generated")):
    COLOR_TRANSFERS.register(Entry(_name, f"convert.color_transfer:{_name}", _what, terms=_OURS))

BLEND_MODES.register(Entry(
    "poisson", "convert.blending:poisson_mode", "seamless cloning (colour at the mask edge taken from the "
    "frame), then feathered", options=("--mask-erode", "--mask-blur", "--poisson-reach"), terms=_OURS))
BLEND_MODES.register(Entry(
    "alpha", "convert.blending:alpha_mode", "feathered mask only", options=("--mask-erode", "--mask-blur"),
    terms=_OURS))
