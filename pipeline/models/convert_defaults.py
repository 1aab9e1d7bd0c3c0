"""convert's option defaults that differ by model family, importable without torch.

Why a module of their own: convert's run loads the model in a child process
(``convert.network_process``) and plans the faces in the parent meanwhile, which needs
these defaults before the child has said anything; the model classes (which import torch)
take theirs from here, so both read the same values (``MODEL_TYPES`` lists them as each
entry's ``convert_defaults`` part).
"""
from __future__ import annotations

from typing import Any

#: the transformation network changes the dst face: convert's own defaults suit it
TRANSFORM: dict[str, Any] = {}
#: the face is painted anew, not a changed dst face: smoothing the colour of its change would carry the
#: dst's colour detail (lip edges) onto it, green teeth where the dst shows white ones (seen at frame 10);
#: part colour was not measured on autoencoders
AUTOENCODER: dict[str, Any] = {"chroma_smooth": 0.0, "part_colour": 0.0}
#: whether a family's model paints its own mask beside the face (convert's ``--mask learned|both``), for the
#: processes that check options without loading the model (a cluster's driver); the predictors say the same
TRANSFORM_PAINTS_MASK = False
AUTOENCODER_PAINTS_MASK = True
