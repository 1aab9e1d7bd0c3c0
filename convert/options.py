"""Options of ``main.py convert``, each declared once (name, default, range, help)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from convert.backends import BLEND_MODES, COLOR_TRANSFERS
from pipeline.cluster.options import ClusterOptions
from pipeline.core.low_light import DEFAULT_TARGET
from pipeline.core.options import option
from pipeline.workspace.options import DeviceOptions

#: Where convert's mask comes from (``--mask``).
MASK_SOURCES = ("workspace", "learned", "both")


#: ``--chroma-smooth`` for model types that do not name their own (``FaceModel.convert_defaults``)
CHROMA_SMOOTH = 8.0
#: ``--part-colour`` for model types that do not name their own: the transformation network keeps the dst
#: person's brows, nose and lips against the skin, and moving them to the src person's brought FaceNet closer to
#: the src person on both pairs (issue 26, docs/measurements.md)
PART_COLOUR = 1.0


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass
class ConvertOptions(DeviceOptions, ClusterOptions):
    input: Path | None = option(None, flags=("-i",), default_text="the path extract recorded",
                                help="the dst video, if it moved since extract")
    output: Path | None = option(None, flags=("-o",), default_text="WORKSPACE/result.mp4",
                                 help="video to write (.mp4/.mov/.mkv/.m4v); replaced only when the new one is "
                                      "complete")
    person: str | None = option(None, metavar="N|all", default_text="1, the person in the most frames",
                                help="whom to swap when the dst video shows several people: a person's number as "
                                     "'python main.py info' lists them (most frames first), or all. Other people's "
                                     "faces pass through untouched. --target-face at extract still drops faces "
                                     "before this")
    smooth: float = option(2.0, low=0, high=50, metavar="SIGMA",
                           help="temporal landmark smoothing per face track: Gaussian width in frames of a local "
                                "quadratic fit (follows fast motion without lag); 0 = off. Never crosses a cut or "
                                "a gap in the track")
    color: str = option("rct", choices=COLOR_TRANSFERS,
                        help="colour transfer of the generated face toward the dst face, inside the mask")
    blend: str = option("poisson", choices=BLEND_MODES, help="how the face enters the frame")
    poisson_reach: float = option(0.3, low=0, high=4, metavar="FRACTION",
                                  help="with --blend poisson: how far into the face the seamless clone's correction "
                                       "reaches, as a share of the face mask's size; it fades smoothly from the mask's "
                                       "edge, where it is whole (no seam), to nothing at this depth, so the frame's "
                                       "colour at the border (hair, shadow under the jaw) does not tint the middle of "
                                       "the face (0 = the whole face, classic Poisson cloning)")
    low_light: float = option(DEFAULT_TARGET, low=0, high=255, metavar="LEVEL",
                              help="a face darker than this (median grey level inside the mask) is lifted to it by a "
                                   "gamma curve before the network and brought back down after: on dim footage the "
                                   "network, trained on faces lit at 140-160, drew a face whose landmarks shook more "
                                   "than the footage's; faces at or above it are untouched (0 = off)")
    mask: str = option("workspace", choices=MASK_SOURCES,
                       help="which mask cuts the new face in: workspace = the workspace's masks (hand-painted, the "
                            "learned segmenter's or the landmark hull); learned = the mask the model paints with its "
                            "face (df and liae: it follows the new face's own outline); both = their product, only "
                            "what both call face (DeepFaceLab's learned*dst)")
    mask_erode: int = option(4, low=-64, high=64, metavar="PX",
                             help="shrink the mask by this many pixels at the aligned size (negative grows it)")
    mask_blur: int = option(8, low=0, high=128, metavar="PX",
                            help="feather width of the mask edge in pixels at the aligned size (0 = hard edge)")
    detail: float = option(1.0, low=0, high=1, metavar="AMOUNT",
                           help="fine detail of the dst frame that the network's crop is too small to hold, put "
                                "back where the network kept the face's structure (1 = all of it: a 128 px network "
                                "face stays as sharp as the frame; 0 = the network's face as it is, stretched). On "
                                "faces smaller than twice the crop, the frame's finest band (about one frame pixel) "
                                "replaces the network's there, and the network's finest detail is held to the "
                                "frame's level")
    detail_gate: float = option(0.4, low=0, high=1, metavar="CORR",
                                help="the dst's own detail comes back in full where the network's face keeps the "
                                     "input's fine structure with at least this correlation, and not at all where "
                                     "it erased or moved it (new brows, eyelids), so no ghost of the old features "
                                     "shows; 0 = put it back everywhere")
    sharpen_new: float = option(1.5, low=0, high=5, metavar="AMOUNT",
                                help="unsharp-mask amount on what the network drew anew, where the dst's own detail "
                                     "is not put back (new brows, eyelids): its 128 px structure stretched over the "
                                     "face is all there is there (0 = off; no effect with --detail 0). Scales with "
                                     "the face: in full on faces twice the network's crop or more (~220 px for a "
                                     "128 net), none on faces no larger than it (~110 px), where it drew halos")
    chroma_smooth: float | None = option(None, low=0, high=32, metavar="PX",
                                         default_text="the model type's: 8 for transform, 0 for df and liae",
                                         help="smooth the colour part of the network's change over this many pixels "
                                              "of its crop, keeping all of its brightness detail: removes green and "
                                              "purple fringes along eyelids and brows (0 = off). For a model that "
                                              "keeps the dst face's structure (transform); an autoencoder paints "
                                              "the face anew, and smoothing its change would carry the dst's lip "
                                              "colour onto new teeth")
    blink: float = option(1.0, low=0, high=1, metavar="AMOUNT",
                          help="carry the dst's blinks: where the dst person's eyes close, the dst's own eyes (colour-"
                               "matched, feathered) replace the network's, in proportion to how far they are shut "
                               "(1 = all the way on a shut eye; 0 = off, the network's eyes always)")
    skin_tone: float = option(1.0, low=0, high=1, metavar="AMOUNT",
                              help="shift the whole swapped face this share of the way so its skin's median colour "
                                   "(the face without eyes, brows and mouth) is the dst skin's, after --color, which "
                                   "matches the whole face and can leave the skin warmer or darker than its own neck "
                                   "(0 = off)")
    grain_match: float = option(1.0, low=0, high=1, metavar="AMOUNT",
                                help="where the swapped skin is grainier (finest against middle-scale detail) than "
                                     "both the dst frame's own skin at the same place and the src person's skin, "
                                     "take this share of the excess fine detail away, so the network's texture, the "
                                     "enhancer and the detail put back do not add up to speckled, made-up skin; "
                                     "eyes, brows and mouth are left alone (0 = off)")
    part_colour: float | None = option(None, low=0, high=1, metavar="AMOUNT",
                                       default_text="the model type's: 1 for transform, 0 for df and liae",
                                       help="move the swapped face's brows, nose and lips this share of the way to "
                                            "the src person's colours against the face's own cheeks (median over the "
                                            "src set; each part's mean moved the whole way, no pixel pushed past "
                                            "neutral to the cool side), so the dst's "
                                            "lipstick, darker nose or lighter brows do not come back with the "
                                            "colour transfer; the skin "
                                            "keeps the dst frame's tone (0 = off). On by default for the "
                                            "transformation network, whose face keeps the dst's parts; not measured "
                                            "on the autoencoders")
    enhance: float = option(1.0, low=0, high=1, metavar="AMOUNT",
                            help="strength of the src person's face enhancer (trained by 'main.py enhance' into "
                                 "WORKSPACE/enhancer/) on the model's output, before colour and blending; used only "
                                 "when the workspace has one (0 = off)")
    sharpen: float = option(0.0, low=0, high=5, metavar="AMOUNT",
                            help="unsharp-mask amount applied to the generated face (0 = off, 0.5 = moderate); "
                                 "scales with the face as --sharpen-new does")
    watermark: bool = option(True, action="toggle",
                             help="an invisible watermark in every swapped face (keyed; 'main.py verify VIDEO' finds "
                                  "it, also after a crf 28 re-encode): says the face was swapped; --no-watermark "
                                  "leaves it out and says so")
    watermark_key: Path | None = option(None, metavar="FILE",
                                        default_text="this machine's key, made on first use: $FACE_WATERMARK_KEY, "
                                                     "else ~/.config/faceswap-workbench/watermark.key",
                                        help="the watermark's key file (64 hex digits); give verify the same file")
    credentials: bool = option(True, action="toggle",
                               help="C2PA content credentials signed into the result (made by a trained algorithm; "
                                    "dst and src set by hash, model hash, these settings, consent recorded or not); "
                                    "--no-credentials leaves them out and says so")
    sign_key: Path | None = option(None, metavar="FILE",
                                   default_text="the config entry ~/.config/faceswap-workbench/signing.json, else "
                                                "this machine's self-signed key made on first use ($FACE_SIGNING_DIR "
                                                "or ~/.config/faceswap-workbench/signing/)",
                                   help="PEM private key that signs the content credentials (with --sign-cert)")
    sign_cert: Path | None = option(None, metavar="FILE",
                                    help="PEM certificate chain of --sign-key, the signing certificate first")
    crf: int = option(18, low=0, high=51, help="H.264 quality (lower = better and larger; 18 is visually lossless)")
    preset: str = option("medium", choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                                            "slow", "slower", "veryslow"), help="x264 speed preset")
    encode_chunk: int = option(0, low=0, high=1_000_000, metavar="FRAMES",
                               help="encode the video in independent pieces of this many frames (a new x264 encode, "
                                    "so a keyframe, every FRAMES frames from the range's first; x264's threads fixed "
                                    "at 4) joined by stream copy: with --ray the nodes encode their own pieces and "
                                    "the video is byte for byte what one machine writes with the same setting, "
                                    "wherever each piece was made (0 = one encode of the whole video)")
    start: int = option(0, low=0, metavar="FRAME", help="first frame to render")
    end: int | None = option(None, low=1, metavar="FRAME", default_text="the end of the video",
                             help="render up to this frame, not including it")
    preview: int = option(0, low=0, high=1000, metavar="N",
                          help="write N evenly spaced before|after stills to WORKSPACE/preview/ instead of the video "
                               "(fast, for tuning options)")
    batch_size: int = option(8, low=1, high=1024, help="faces per network call")
    precision: str = option("auto", choices=("auto", "float", "int8"),
                            help="network arithmetic: int8 is ~8x faster on the CPU (mean change ~1.9 grey levels); "
                                 "auto = int8 for a transform model on the CPU, bfloat16 for df/liae and the face "
                                 "enhancer on a CPU that computes it natively (AMX or AVX-512 BF16), float32 "
                                 "otherwise and on CUDA; float = float32 throughout")
    workers: int = option(factory=_cores, low=1, high=256, default_text="number of CPU cores",
                          help="threads for cropping and blending")
