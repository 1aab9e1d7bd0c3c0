"""Options of ``main.py extract``, each declared once (name, default, range, help)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.cluster.options import ClusterOptions
from pipeline.core.geometry import FACE_TYPES
from pipeline.core.options import option
from pipeline.registries import DETECTORS, LANDMARKERS, MASKERS
from pipeline.workspace.options import DeviceOptions


def _cores() -> int:
    return os.cpu_count() or 1


#: The backends a new set is extracted with (chosen by measurement: README, "Choosing the default
#: face analysis"). A set extracted before keeps its own unless an option names another.
DEFAULT_BACKENDS = {"detector": "retinaface", "landmarker": "mediapipe", "masker": "hull"}


def _backend_default(kind: str) -> str:
    return f"{DEFAULT_BACKENDS[kind]}; a set extracted before: the one it used"


@dataclass
class ExtractOptions(DeviceOptions, ClusterOptions):
    input: Path = option(required=True, flags=("-i",), help="a video file, a folder of images, or one image")
    set_name: str | None = option(None, flag="--set", choices=("dst", "src"),
                                  default_text="dst for a video, src for images", help="which face set to fill")
    detector: str | None = option(None, choices=DETECTORS, default_text=_backend_default("detector"),
                                  help="face detector")
    landmarker: str | None = option(None, choices=LANDMARKERS, default_text=_backend_default("landmarker"),
                                    help="landmark model (68 iBUG points; mediapipe also keeps its 478 points)")
    masker: str | None = option(None, choices=MASKERS, default_text=_backend_default("masker"),
                                help="automatic face mask")
    landmark_passes: int = option(1, low=1, high=3, metavar="N",
                                  help="landmark models that cut their own crop (mediapipe): crops per face; 2 "
                                       "cuts a second crop around the first points: about a quarter less landmark "
                                       "noise for about 15 ms a face")
    face_type: str = option("full", choices=FACE_TYPES, help="how much of the head the aligned crop shows: full "
                                                               "(brows to chin), whole (with forehead), head")
    size: int = option(256, low=64, high=2048, help="aligned face size in pixels")
    image_format: str = option("png", choices=("png", "jpg"), help="aligned image format (masks are always png)")
    upsample: str = option("auto", choices=("auto", "0", "1", "2"),
                           help="detector upsampling for small faces; auto = 0, retried at 1 on images with no "
                                "face found")
    min_face: int | None = option(None, low=20, metavar="PX",
                                  default_text="a quarter of the frame's shorter side for video, 80 for photos",
                                  help="smallest face searched in every frame, in pixels; smaller faces are still "
                                       "searched in frames where no larger one is found (80 = everything)")
    bridge_gap: int = option(5, low=0, high=1000, help="longest run of frames where a lost face is bridged from its "
                                                      "neighbours (0 = off)")
    workers: int = option(factory=_cores, low=1, high=256, default_text="number of CPU cores",
                          help="detection threads")
    target_face: Path | None = option(None, metavar="PHOTO",
                                      help="keep only faces of the person in this photo; other faces are indexed "
                                           "as dropped (reason: identity) and get no aligned file")
    target_threshold: float = option(0.6, low=0.01, high=1.99,
                                     help="largest identity distance to the target face that still counts as the "
                                          "same person (dlib's threshold)")
    force: bool = option(False, action="store_true",
                         help="re-extract every frame and restore deleted faces; hand-edited masks are still "
                              "never overwritten, learned masks (masks apply) are kept, moved with the face")
    replace_learned_masks: bool = option(False, action="store_true",
                                         help="with --force: write the automatic masks over learned ones too "
                                              "(hand-edited masks are never overwritten)")
