"""The kinds every stage shares and their built-in entries whose code lives in ``pipeline/``.

The command line's choices and help, ``main.py models`` and the stages all read these
registries. To add a backend, write its module (a class or function with the kind's
interface, see the kind's base module named below) and register it here with one
``register`` call; nothing else lists the names. Entries point at their implementation
by import path and are imported only when used, so a stage that never uses a backend
never imports it.

Kinds and entries whose code belongs to one stage are that stage's: ``convert/backends.py``
(colour transfers, blend modes), ``evaluate/backends.py`` (evaluate's identity network) and
``train/backends.py`` (the loss feature networks registered into :data:`FEATURES`, and each
model type's trainer). Nothing here names a stage's module (``tests/test_architecture.py``).
"""
from __future__ import annotations

from pipeline.core.registry import Entry, Registry

#: Face detectors: ``pipeline.faces.backends.base.FaceDetector`` (extract, evaluate).
DETECTORS = Registry("detector", "--detector")
#: 68-point landmark models: ``pipeline.faces.backends.base.Landmarker`` (extract, evaluate).
LANDMARKERS = Registry("landmarker", "--landmarker")
#: Automatic face masks: ``pipeline.faces.backends.base.Masker`` (extract, train, convert).
MASKERS = Registry("masker", "--masker")
#: Loss networks of the transform model (``--features``, an option of its model options, so the kind is
#: declared here); the entries are train's (``train/backends.py``), registered when train loads.
FEATURES = Registry("feature network", "--features")
#: Model families: ``pipeline.models.interface.FaceModel`` + its options (train, convert); each one's trainer is
#: train's (``train.backends.TRAINERS``).
MODEL_TYPES = Registry("model type", "--model")

_BSL = "dlib code: Boost Software License"
_OURS = "this project's code"
_FACEXLIB = "our PyTorch definition of facexlib's network (facexlib code: MIT)"
_FA = "our port of face-alignment's network; face-alignment code: BSD-3-Clause"

DETECTORS.register(Entry(
    "retinaface", "pipeline.faces.backends.retinaface:RetinaFaceDetector",
    "RetinaFace MobileNet-0.25 (turned, tilted, small and partly hidden faces; fast)", options=("--min-face",),
    weights=("retinaface-mobilenet",), terms="this project's code (the RetinaFace method, Deng et al. 2020)"))
DETECTORS.register(Entry(
    "blazeface", "pipeline.faces.backends.blazeface:BlazeFaceDetector",
    "MediaPipe BlazeFace full range (very fast; weaker on small, turned and covered faces)",
    weights=("blazeface-full-range",), terms=_OURS))
DETECTORS.register(Entry(
    "dlib", "pipeline.faces.backends.dlib_hog:DlibHogDetector",
    "HOG frontal detector (frontal faces of 80 px and more; misses turned, small and covered ones)",
    options=("--upsample", "--min-face"), terms=_BSL))
DETECTORS.register(Entry(
    "dlib-cnn", "pipeline.faces.backends.dlib_cnn:DlibCnnDetector",
    "dlib's MMOD CNN (finds turned faces, slow on CPU)", options=("--upsample",),
    weights=("dlib-cnn-detector",), terms=_BSL))
DETECTORS.register(Entry(
    "retinaface-r50", "pipeline.faces.backends.retinaface_r50:RetinaFaceDetector",
    "RetinaFace ResNet-50, facexlib's weights in our PyTorch definition (turned, small and partly hidden "
    "faces; GPU when present)", options=("--upsample", "--min-face"), weights=("retinaface-r50",),
    terms=_FACEXLIB))
DETECTORS.register(Entry(
    "s3fd", "pipeline.faces.backends.s3fd:S3FDDetector",
    "S3FD, DeepFaceLab's detector (small and turned faces; GPU if present; weights fetched by hand)",
    options=("--min-face",), weights=("s3fd",), terms=_FA))

LANDMARKERS.register(Entry(
    "mediapipe", "pipeline.faces.backends.mediapipe_mesh:MediaPipeLandmarker",
    "MediaPipe Face Landmarker v2: 478 points (kept for the dense masker), mapped to the 68",
    options=("--landmark-passes",), weights=("mediapipe-face-landmarker",), terms=_OURS))
LANDMARKERS.register(Entry(
    "dlib", "pipeline.faces.backends.dlib_landmarks:DlibLandmarker",
    "dlib's 68-point shape predictor (regression trees)", weights=("landmarks-68",), terms=_BSL))
LANDMARKERS.register(Entry(
    "fan", "pipeline.faces.backends.fan:FanLandmarker",
    "2D-FAN-4, DeepFaceLab's landmark network (GPU if present; weights fetched by hand)",
    weights=("fan-2d",), terms=_FA))

MASKERS.register(Entry(
    "hull", "pipeline.faces.backends.hull_mask:HullMasker",
    "union of convex hulls of the 68 landmarks, brows raised to cover the forehead", terms=_OURS))
MASKERS.register(Entry(
    "dense", "pipeline.faces.backends.dense_mask:DenseMasker",
    "face outline of MediaPipe's 478 points, forehead included (needs --landmarker mediapipe)", terms=_OURS))
MASKERS.register(Entry(
    "learned", "pipeline.faces.backends.learned_mask:LearnedMasker",
    "a segmenter trained on the artist's hand-painted masks ('masks train', written by 'masks apply'): "
    "hands, microphones, glasses and hair that cross the face stay out", terms=_OURS))
MASKERS.register(Entry(
    "parsing", "pipeline.faces.backends.bisenet_parsing:ParsingMasker",
    "BiSeNet face parsing (facexlib's weights): skin, brows, eyes, glasses, nose, mouth and lips only, so "
    "hands, hair and microphones over the face stay out of the mask", weights=("bisenet-parsing",),
    terms=_FACEXLIB))

MODEL_TYPES.register(Entry(
    "transform", "pipeline.models.transform:TransformModel",
    "Korshunova et al.'s feed-forward transformation network (dst face = content, src identity = style)",
    options=("--resolution", "--width", "--no-skip", "--alpha", "--beta", "--gamma", "--skin-chroma",
             "--identity-weight", "--features", "--content-layers", "--style-layers", "--patch", "--n-best"),
    terms=_OURS,
    parts={"options": "pipeline.models.transform_options:TransformOptions",
           "convert_defaults": "pipeline.models.convert_defaults:TRANSFORM",
           "paints_mask": "pipeline.models.convert_defaults:TRANSFORM_PAINTS_MASK"}))
_AE_OPTIONS = ("--resolution", "--preset", "--ae-dims", "--e-dims", "--d-dims", "--d-mask-dims", "--random-warp",
               "--random-flip", "--eyes-mouth-prio", "--masked-loss", "--mask-loss", "--true-face-power", "--gan-power")
_DFL = "this project's code (the DeepFaceLab DF/LIAE architectures, Perov et al.)"
MODEL_TYPES.register(Entry(
    "df", "pipeline.models.autoencoder:DFModel",
    "DeepFaceLab's DF autoencoder: shared encoder and bottleneck, a decoder per person (strong src likeness; "
    "learns both faces from scratch: many thousands of iterations, a GPU for the full size)",
    options=_AE_OPTIONS, terms=_DFL,
    parts={"options": "pipeline.models.autoencoder_options:AutoencoderOptions",
           "convert_defaults": "pipeline.models.convert_defaults:AUTOENCODER",
           "paints_mask": "pipeline.models.convert_defaults:AUTOENCODER_PAINTS_MASK"}))
MODEL_TYPES.register(Entry(
    "liae", "pipeline.models.autoencoder:LIAEModel",
    "DeepFaceLab's LIAE autoencoder: shared encoder and decoder, a shared and a dst-only bottleneck (keeps the "
    "dst's light and colour better, the src likeness weaker than df; the same options as df)",
    options=_AE_OPTIONS, terms=_DFL,
    parts={"options": "pipeline.models.autoencoder_options:AutoencoderOptions",
           "convert_defaults": "pipeline.models.convert_defaults:AUTOENCODER",
           "paints_mask": "pipeline.models.convert_defaults:AUTOENCODER_PAINTS_MASK"}))
