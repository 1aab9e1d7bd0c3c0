"""Train's entries: the transform model's loss feature networks and each model type's trainer.

The feature-network kind is declared in ``pipeline.registries.FEATURES`` (the transform
model's options name it for ``--features``), but the networks are training code, so
train registers them here; trainers are train's own kind, one per model type, named as
the model type (a test checks every ``MODEL_TYPES`` entry has one). The package imports
this module when it loads. Entries are imported only when used.
"""
from __future__ import annotations

from pipeline.core.registry import Entry, Registry
from pipeline.registries import FEATURES

_OURS = "this project's code"

#: What each model type does in a training step (``pipeline.training.model_trainer.ModelTrainer``), by model
#: type name; not listed by ``main.py models`` (it lists the model types themselves).
TRAINERS = Registry("model trainer", listed=False)

FEATURES.register(Entry(
    "dlib", "train.features:FaceFeatures",
    "dlib's face-recognition ResNet, our PyTorch port (offline; descriptors and training losses)",
    options=("--content-layers", "--style-layers"), weights=("dlib-face-recognition",), terms=_OURS))
FEATURES.register(Entry(
    "vgg19", "train.features:VGGFeatures", "ImageNet VGG19 as in the paper (weights downloaded once)",
    options=("--content-layers", "--style-layers"), weights=("vgg19-imagenet",), terms=_OURS))

TRAINERS.register(Entry("transform", "train.transform_trainer:TransformTrainer", "the transform model's trainer"))
TRAINERS.register(Entry("df", "train.autoencoder_trainer:DFTrainer", "the DF autoencoder's trainer"))
TRAINERS.register(Entry("liae", "train.autoencoder_trainer:LIAETrainer", "the LIAE autoencoder's trainer"))
