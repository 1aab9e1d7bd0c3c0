"""``evaluate --ray``: the frame pairs measured on a Ray cluster; tracks, people and the report made here.

Each frame pair is measured on its own (faces found in both videos, paired, scored), so a
worker seeks to its range in the output and the reference video (both at the same path on
every node) and sends back its frames' measurements; the identity chips stay on the
worker. What needs the whole video (jitter along tracks, people, the report and its page)
is done by the driver from all frames, as one machine does.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evaluate.held_apart import FaceNetJudge
from evaluate.options import EvaluateOptions
from evaluate.runner import _Analyser, _Frame, _measure
from pipeline.core.video import VideoInfo
from pipeline.faces.identity import IdentityEncoder
from pipeline.provenance.watermark import Watermark

if TYPE_CHECKING:
    from pipeline.cluster.ray_cluster import Shard


@dataclass
class EvalSpec:
    opts: EvaluateOptions
    video: Path
    reference: Path
    info_out: VideoInfo
    info_ref: VideoInfo
    src_mean: np.ndarray | None
    detector: str
    landmarker: str
    min_face: int
    mark_key: bytes | None         # this machine's watermark key, to find the mark in the output's faces


_MODELS: dict[tuple, tuple[IdentityEncoder, _Analyser]] = {}


def evaluate_shard(spec: EvalSpec, shard: Shard) -> list[_Frame]:
    """Run on a worker: the measured frame pairs [shard.start, shard.end)."""
    key = (spec.opts.device, spec.detector, spec.landmarker, spec.min_face)
    models = _MODELS.get(key)
    if models is None:
        _MODELS.clear()
        judge = FaceNetJudge(spec.opts.device)
        models = _MODELS[key] = (IdentityEncoder(spec.opts.device, 16, 1),
                                 _Analyser(spec.detector, spec.landmarker, spec.min_face, judge))
    encoder, analyser = models
    analyser.mark = Watermark(spec.mark_key) if spec.mark_key is not None else None
    frames, _, _ = _measure(spec.video, spec.reference, spec.info_out, spec.info_ref,
                            dataclasses.replace(spec.opts, workers=1), encoder, spec.src_mean, analyser,
                            start=shard.start, end=shard.end)
    empty = np.zeros((0,), np.uint8)
    for fr in frames:
        for face in fr.ref_faces + fr.out_faces:
            face.chip = empty          # described already; the driver needs the numbers only
    return frames


def measure_on_cluster(opts: EvaluateOptions, video: Path, reference: Path, info_out: VideoInfo, info_ref: VideoInfo,
                       src_mean: np.ndarray | None, detector: str, landmarker: str,
                       analyser: _Analyser) -> tuple[list[_Frame], int, int]:
    """Every frame pair measured on the cluster ``opts.ray`` names: (frames, reference frames, output frames)."""
    from pipeline.cluster.ray_cluster import connect, plan_shards
    total = min(info_out.frames, info_ref.frames)
    with connect(str(opts.ray)) as cluster:
        shards = plan_shards([(0, total)], cluster.cpus, opts.shard_frames)
        spec = cluster.put(EvalSpec(opts, video, reference, info_out, info_ref, src_mean, detector, landmarker,
                                    max(80, min(info_ref.width, info_ref.height) // 4),
                                    analyser.mark.key if analyser.mark is not None else None))
        frames: list[_Frame] = []
        for _, result in cluster.run(evaluate_shard, shards, (spec,), "evaluate", total):
            frames.extend(result)
    return frames, info_ref.frames, info_out.frames
