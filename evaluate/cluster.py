"""``evaluate --ray``: the frame pairs measured on a Ray cluster; tracks, people and the report made here.

Each frame pair is measured on its own (faces found in both videos, paired, scored), so a
worker seeks to its range in the output and the reference video (both at the same path on
every node) and sends back its frames' measurements; the identity chips stay on the
worker. What needs the whole video (jitter along tracks, people, the report and its page)
is done by the driver from all frames, as one machine does.

A finished shard's measurements are written (JSON, atomically) to
``report/.cluster/<key>/`` in the workspace as it arrives, so a driver killed mid-job loses
nothing finished: the same command again measures only the frames no kept shard covers. The
folder's key is made of everything the numbers depend on (the options but where and how
wide they run, both videos' paths, sizes and times, the face models, the src identity and
the watermark key's id), so a changed input or setting never reuses a stale shard; it is
removed once the report is made from all frames.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluate.held_apart import FaceNetJudge
from evaluate.options import EvaluateOptions
from evaluate.runner import _Analyser, _Face, _Frame, _measure, _Pair
from pipeline.core.files import remove_quietly, write_atomic
from pipeline.core.video import VideoInfo
from pipeline.faces.identity import IdentityEncoder
from pipeline.provenance.watermark import FaceCells, Watermark
from pipeline.workspace import layout

if TYPE_CHECKING:
    from pipeline.cluster.ray_cluster import Lane, Shard

log = logging.getLogger("evaluate")

#: Options that change no measurement: where and how wide the work runs, and what the report shows of it.
_NOT_IN_NUMBERS = ("ray", "shard_frames", "workers", "samples")
#: The classes a stored shard may hold (read back by name from this list only).
_CLASSES: dict[str, type] = {c.__name__: c for c in (_Frame, _Face, _Pair, FaceCells)}
_SHARD_FILE = re.compile(r"^frames_(\d{8})_(\d{8})\.json$")


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


def _to_json(value: Any, seen: dict[int, int] | None = None) -> Any:
    """A shard's measurements as JSON: dataclasses by class name, arrays and numpy numbers exactly (base64, dtype).

    An object met twice (a pair's ``ref`` is one of its frame's ``ref_faces``: the report finds a face's
    person by identity) is written once and then referred to, so it reads back as one object again.
    """
    seen = {} if seen is None else seen
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if id(value) in seen:
            return {"__same__": seen[id(value)]}
        seen[id(value)] = len(seen)
        return {"__class__": type(value).__name__, "__id__": seen[id(value)],
                **{f.name: _to_json(getattr(value, f.name), seen) for f in dataclasses.fields(value)}}
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {"__array__": [data.dtype.str, list(data.shape), base64.b64encode(data.tobytes()).decode()]}
    if isinstance(value, np.generic):
        return {"__number__": [value.dtype.str, value.item()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v, seen) for v in value]}
    if isinstance(value, list):
        return [_to_json(v, seen) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return {"__dict__": [[_to_json(k, seen), _to_json(v, seen)] for k, v in value.items()]}
        return {k: _to_json(v, seen) for k, v in value.items()}
    return value


def _from_json(value: Any, made: dict[int, Any] | None = None) -> Any:
    """``_to_json`` undone (objects written once are one object again); only the classes in ``_CLASSES`` are
    made."""
    made = {} if made is None else made
    if isinstance(value, list):
        return [_from_json(v, made) for v in value]
    if not isinstance(value, dict):
        return value
    if "__same__" in value:
        return made[value["__same__"]]
    if "__class__" in value:
        cls = _CLASSES[value["__class__"]]
        obj = cls(**{k: _from_json(v, made) for k, v in value.items() if k not in ("__class__", "__id__")})
        made[value["__id__"]] = obj
        return obj
    if "__array__" in value:
        dtype, shape, data = value["__array__"]
        return np.frombuffer(base64.b64decode(data), dtype=np.dtype(dtype)).reshape(shape).copy()
    if "__number__" in value:
        dtype, number = value["__number__"]
        return np.dtype(dtype).type(number)
    if "__tuple__" in value:
        return tuple(_from_json(v, made) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_from_json(k, made): _from_json(v, made) for k, v in value["__dict__"]}
    return {k: _from_json(v, made) for k, v in value.items()}


def _shard_file(start: int, end: int) -> str:
    return f"frames_{start:08d}_{end:08d}.json"


def kept_shards(folder: Path, total: int) -> dict[tuple[int, int], list[_Frame]]:
    """The shards measured by an earlier run in ``folder`` (non-overlapping, inside [0, total)); a file that
    does not read back whole is dropped (measured again)."""
    found: dict[tuple[int, int], list[_Frame]] = {}
    reach = 0
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    for name in names:
        m = _SHARD_FILE.match(name)
        if not m:
            continue
        a, b = int(m.group(1)), int(m.group(2))
        if not (reach <= a < b <= total):
            continue
        try:
            frames = _from_json(json.loads((folder / name).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            remove_quietly(folder / name)
            continue
        if [f.index for f in frames] != list(range(a, a + len(frames))):
            continue
        found[(a, b)] = frames
        reach = b
    return found


def shards_folder(opts: EvaluateOptions, video: Path, reference: Path, src_mean: np.ndarray | None, detector: str,
                  landmarker: str, min_face: int, mark: Watermark | None) -> Path:
    """Where the shards of this measurement are kept: ``report/.cluster/<key>`` in the workspace."""
    def stat(path: Path) -> list:
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    facts = {"options": {k: v for k, v in dataclasses.asdict(opts).items() if k not in _NOT_IN_NUMBERS},
             "video": stat(video), "reference": stat(reference), "models": [detector, landmarker, min_face],
             "src": None if src_mean is None else hashlib.sha256(np.ascontiguousarray(src_mean).tobytes()).hexdigest(),
             "mark": None if mark is None else hashlib.sha256(mark.key).hexdigest()}
    key = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return layout.report_dir(Path(opts.workspace)) / ".cluster" / key


def measure_on_cluster(opts: EvaluateOptions, video: Path, reference: Path, info_out: VideoInfo, info_ref: VideoInfo,
                       src_mean: np.ndarray | None, detector: str, landmarker: str,
                       analyser: _Analyser) -> tuple[list[_Frame], int, int]:
    """Every frame pair measured on the cluster ``opts.ray`` names: (frames, reference frames, output frames).

    Each finished shard is kept on disk as it arrives; frames kept by an earlier, killed run are not
    measured again. The kept shards are removed once every frame is here (``forget_shards``, after the
    report is written).
    """
    from pipeline.cluster.ray_cluster import connect, plan_shards
    from pipeline.cluster.segments import missing_ranges
    total = min(info_out.frames, info_ref.frames)
    min_face = max(80, min(info_ref.width, info_ref.height) // 4)
    with connect(str(opts.ray), opts.device) as cluster:
        folder = shards_folder(opts, video, reference, src_mean, detector, landmarker, min_face, analyser.mark)
        if folder.parent.is_dir():             # shards of other settings or inputs can never be used again
            for other in folder.parent.iterdir():
                if other.is_dir() and other != folder:
                    shutil.rmtree(other, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        kept = kept_shards(folder, total)
        done = sum(b - a for a, b in kept)
        shards = plan_shards(missing_ranges(0, total, list(kept)), cluster.where.slots, opts.shard_frames)
        log.info("ray: %d shards kept from an earlier run (%d frames), %d frames to measure in %d shards on %s",
                 len(kept), done, total - done, len(shards), cluster.where.describe())
        mark = analyser.mark.key if analyser.mark is not None else None

        def spec(lane: Lane) -> tuple:
            return (EvalSpec(dataclasses.replace(opts, device=lane.device), video, reference, info_out, info_ref,
                             src_mean, detector, landmarker, min_face, mark),)
        measured: dict[tuple[int, int], list[_Frame]] = dict(kept)
        for shard, result in cluster.run(evaluate_shard, shards, spec, "evaluate", total, done):
            write_atomic(folder / _shard_file(shard.start, shard.end), json.dumps(_to_json(result)).encode())
            measured[(shard.start, shard.end)] = result
    frames = [f for key in sorted(measured) for f in measured[key]]
    return frames, info_ref.frames, info_out.frames


def forget_shards(opts: EvaluateOptions) -> None:
    """The kept shards removed: the report is made from all frames, a rerun measures afresh."""
    shutil.rmtree(layout.report_dir(Path(opts.workspace)) / ".cluster", ignore_errors=True)
