"""Options of ``main.py verify``, each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option


@dataclass
class VerifyOptions:
    video: Path = option(flag="video", metavar="VIDEO", help="the video to check")
    key: Path | None = option(None, metavar="FILE",
                              default_text="this machine's key: $FACE_WATERMARK_KEY, else "
                                           "~/.config/faceswap-workbench/watermark.key",
                              help="the watermark key the video was marked with (the file convert used)")
    window: int | None = option(None, low=1, high=1001, metavar="FRAMES",
                                default_text="25, else 51, else 75: the first that finds the mark in at least "
                                             "half of the frames",
                                help="frames whose evidence is summed for each frame's verdict (25: about a second; "
                                     "a re-encoded video needs it, a video as convert wrote it is found frame by "
                                     "frame; a resized one needs more)")
    trust: list[Path] = option(factory=list, metavar="PEM",
                               help="certificates (PEM) of signers to trust besides this machine's own, e.g. your "
                                    "studio's CA; without them a valid signature reads 'signer not on a trust list'")
    json: bool = option(False, action="store_true", help="print the result as JSON")
