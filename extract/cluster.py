"""``extract --ray``: the frames of a video detected on a Ray cluster, stored by this process.

Which data moves where: workers decode their own frame range of the input (an accurate
seek, as ``frame_at``), detect, align, mask and describe the faces, and send back each
face's record with its encoded aligned image and mask. The driver (the process that runs
the command) writes the files and is the only writer of ``faces.sqlite``, so a node needs
to read the input video but never writes the workspace.

Why workers read frames outside their range: whether a frame gets the detector's slow
passes depends on the frames before it (``extract.search``) and a missed face is bridged
from the frames around it (``extract.bridging``). A worker starts at an anchor frame at
least ``bridge_gap`` + 2 frames before its range and reads on past its end until every
decision inside the range is made (at most ``bridge_gap`` + ``ANCHOR_EVERY`` + 2 frames; with
faces in every frame, the few the pipeline has read ahead), so each frame comes out as it
does when one process reads the whole video. The frames outside the range are detected for
those decisions only: their faces are not aligned, masked or described.

Track numbers are per worker; the driver stitches them: a track seen in the frame before a
shard (stored already, shards are stored in order) keeps its number, a new one gets the
next free number.

Shards are stored, and committed, in order as they finish; a killed driver leaves every
stored frame done, and the next run plans shards over the frames still to do.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from extract.durable import DeferredFlush
from extract.faces import AlignSettings, FaceRecord
from extract.inputs import InputSource, resolve_input
from extract.options import ExtractOptions
from extract.runner import ExtractSummary, _done_future, _ExtractJob, _Item, _min_face, detection_threads
from extract.search import ANCHOR_EVERY
from pipeline.core.profile import StepTimes
from pipeline.core.video import FrameReader
from pipeline.faces.analyser import FaceAnalyser, FoundFace
from pipeline.faces.backends.base import Masker
from pipeline.faces.identity import IdentityEncoder
from pipeline.registries import MASKERS
from pipeline.workspace.records import FaceOrigin

if TYPE_CHECKING:
    from collections.abc import Iterator
    from concurrent.futures import Future, ThreadPoolExecutor

    from pipeline.cluster.ray_cluster import Cluster, Lane, Shard

log = logging.getLogger("extract")

#: Landmarks of one face seen by two workers agree far better than this (pixels); other faces are further.
SAME_FACE_PX = 0.5


def read_span(opts: ExtractOptions, start: int, end: int, frames: int) -> tuple[int, int]:
    """The frames a worker reads for shard [start, end): from an anchor before it, past its end."""
    before = start - (opts.bridge_gap + 2)
    first = 0 if before <= 0 else (before // ANCHOR_EVERY) * ANCHOR_EVERY
    return first, min(frames, end + opts.bridge_gap + ANCHOR_EVERY + 2)


@dataclass
class ShardSpec:
    """What every shard of one extract shares (sent once through the object store)."""

    opts: ExtractOptions           # the driver's, backends filled in
    set_name: str
    min_face: int
    reference: np.ndarray | None   # --target-face descriptor


@dataclass
class ShardFrame:
    index: int
    status: str
    records: list[FaceRecord]


@dataclass
class ShardResult:
    frames: list[ShardFrame] = field(default_factory=list)
    edge: list[tuple[int | None, np.ndarray]] = field(default_factory=list)  # (track, landmarks) before the shard
    decoded_to: int = 0            # one past the last frame decoded
    setup_seconds: float = 0.0     # models loaded (0 when the worker had them) and input probed
    seconds: float = 0.0


class _NoIndex:
    """A worker's stand-in for the workspace: nothing done before, tracks numbered from 0 (the driver renumbers)."""

    def done_frames(self, set_name: str) -> set:
        return set()

    def next_track(self, set_name: str) -> int:
        return 0


class _ShardJob(_ExtractJob):
    """The extract loop over one shard's frames, collecting records instead of writing them."""

    def __init__(self, src: InputSource, spec: ShardSpec, shard: Shard, analyser: FaceAnalyser, masker: Masker,
                 encoder: IdentityEncoder) -> None:
        opts = dataclasses.replace(spec.opts, workers=1, force=False)
        self.ws = _NoIndex()  # type: ignore[assignment]
        self.set_name, self.src, self.opts = spec.set_name, src, opts
        self.detect, self.landmarker, self.masker = analyser, analyser.landmarker, masker
        self._encoder_future = _done_future(encoder)
        self._encoder = encoder
        self.reference = spec.reference
        self.to_describe = []
        self.settings = AlignSettings(opts.face_type, opts.size, opts.image_format)
        self.ext = ".jpg" if opts.image_format == "jpg" else ".png"
        self.summary = ExtractSummary(set_name=spec.set_name)
        self.created, self.rebuilding, self.early = True, False, []
        self.last_commit = time.monotonic()
        self.times, self.flush, self.bar = StepTimes(), DeferredFlush(1), None
        assert src.video is not None
        self.shard = shard
        self.first, self.stop = read_span(opts, shard.start, shard.end, src.video.frames)
        self.released_to = self.first - 1       # the last frame whose faces are decided
        self.result = ShardResult()

    def _items(self) -> tuple[Iterator[_Item], FrameReader | None]:
        info = self.src.video
        assert info is not None
        reader = FrameReader(self.src.path, info.width, info.height, times=self.times, start=self.first)
        name = self.src.source_name()

        def items() -> Iterator[_Item]:
            for i, img in reader:
                if i >= self.stop or self.released_to >= self.shard.end - 1:
                    break               # every frame of the shard is decided: the frames after it can change none
                yield _Item(name, i, f"{i:06d}", img)
        return items(), reader

    def _stored_faces(self, frame_index: int) -> list[FoundFace]:
        return []

    def _submit_build(self, item: _Item, faces: list[FoundFace], pool: ThreadPoolExecutor) -> Future:
        """Only the shard's own frames are built (aligned, masked, described): the frames read before
        and after it are there for the decisions (slow passes, bridging), and their faces would be
        thrown away."""
        self.released_to = max(self.released_to, item.index)
        if item.index == self.shard.start - 1:
            self.result.edge = [(f.track, f.landmarks) for f in faces]
        if self.shard.start <= item.index < self.shard.end:
            return super()._submit_build(item, faces, pool)
        return _done_future([])

    def _store_records(self, item: _Item, records: list[FaceRecord]) -> None:
        if self.shard.start <= item.index < self.shard.end:
            for rec in records:
                rec.chip = np.zeros((0,), np.uint8)     # the driver needs the descriptor, not the chip
            self.result.frames.append(ShardFrame(item.index, item.status, records))

    def _commit(self) -> None:
        self.flush.wait()

    def _finish(self, reader: FrameReader | None, done: set) -> None:
        self.result.decoded_to = self.first + (reader.frames_read if reader is not None else 0)


#: Models a worker process keeps between shards (Ray reuses worker processes): key -> (analyser, masker, encoder).
_MODELS: dict[tuple, tuple[FaceAnalyser, Masker, IdentityEncoder]] = {}


def extract_shard(spec: ShardSpec, shard: Shard) -> ShardResult:
    """Run on a worker: the faces of frames [shard.start, shard.end) of the input, ready to store."""
    t0 = time.perf_counter()
    opts = spec.opts
    src = resolve_input(opts.input)
    key = (opts.detector, opts.landmarker, opts.upsample, spec.min_face, opts.landmark_passes, opts.masker,
           opts.device)
    models = _MODELS.get(key)
    if models is None:
        assert opts.detector and opts.landmarker and opts.masker     # filled in by the driver
        analyser = FaceAnalyser(opts.detector, opts.landmarker, opts.upsample, spec.min_face, opts.landmark_passes)
        masker: Masker = MASKERS.load(opts.masker)()
        _MODELS.clear()
        _MODELS[key] = models = (analyser, masker, IdentityEncoder(opts.device, 16, 1))
    job = _ShardJob(src, spec, shard, *models)
    setup = time.perf_counter() - t0
    with detection_threads(opts.workers):      # the driver's thread setting: the same arithmetic as one machine's
        job.run()
    job.result.setup_seconds, job.result.seconds = setup, time.perf_counter() - t0
    return job.result


class _Tracks:
    """Worker track numbers -> the index's: a track that crosses into a shard keeps its number."""

    def __init__(self, next_track: int) -> None:
        self.next_track = next_track
        self.mapping: dict[int, int] = {}

    def begin(self, stored: list[tuple[int | None, np.ndarray]], edge: list[tuple[int | None, np.ndarray]]) -> None:
        """A new shard: ``edge`` (its worker's faces of the frame before it) matched to ``stored`` (the index's)."""
        self.mapping = {}
        for track, points in edge:
            if track is None:
                continue
            best = min(((float(np.abs(points - p).mean()), t) for t, p in stored if t is not None),
                       default=None, key=lambda x: x[0])
            if best is not None and best[0] < SAME_FACE_PX and best[1] not in self.mapping.values():
                self.mapping[track] = best[1]

    def __call__(self, track: int | None) -> int | None:
        if track is None:
            return None
        if track not in self.mapping:
            self.mapping[track] = self.next_track
            self.next_track += 1
        return self.mapping[track]


def run_on_cluster(job: _ExtractJob, cluster: Cluster) -> ExtractSummary:
    """Every frame of the video not done yet, detected on ``cluster`` and stored here, shard by shard."""
    from pipeline.cluster.ray_cluster import frame_ranges, plan_shards
    ws, set_name, src, opts = job.ws, job.set_name, job.src, job.opts
    assert src.video is not None
    done = set() if opts.force else ws.done_frames(set_name)
    total, name = src.video.frames, src.source_name()
    todo = [i for i in range(total) if (name, i) not in done]
    job.summary.frames_resumed = total - len(todo)
    where = cluster.where
    shards = plan_shards(frame_ranges(todo), where.slots, opts.shard_frames)
    if shards:
        log.info("ray: %d frames to extract in %d shards (%d-%d frames) on %s", len(todo), len(shards),
                 min(s.frames for s in shards), max(s.frames for s in shards), where.describe())
    min_face = _min_face(opts, src)

    def spec(lane: Lane) -> tuple:
        return (ShardSpec(dataclasses.replace(opts, device=lane.device), set_name, min_face, job.reference),)
    tracks = _Tracks(ws.next_track(set_name))
    decoded, setup, worker_s, storing = total, 0.0, 0.0, 0.0
    try:
        for shard, result in cluster.run(extract_shard, shards, spec, f"extract {set_name}", total,
                                         total - len(todo)):
            t0 = time.perf_counter()
            stored = ws.frame_faces(set_name, name, shard.start - 1).values() if shard.start > 0 else []
            tracks.begin([(r.track, r.landmarks) for r in stored], result.edge)
            for frame in result.frames:
                for rec in frame.records:
                    rec.face.track = tracks(rec.face.track)
                job.summary.bridged += sum(1 for r in frame.records if r.face.origin == FaceOrigin.BRIDGED.value)
                job._store_records(_Item(name, frame.index, f"{frame.index:06d}", None, frame.status), frame.records)
            job._commit()              # a finished shard is kept whatever happens to this process next
            storing += time.perf_counter() - t0
            setup, worker_s = setup + result.setup_seconds, worker_s + result.seconds
            if result.decoded_to < shard.end:
                decoded = min(decoded, result.decoded_to)
    finally:
        job.flush.close()
    if decoded < total:
        job.summary.truncated = True
        log.warning("warning: %s ended after %d of %d frames (truncated or damaged file); extracted the frames "
                    "that decoded", src.path, decoded, total)
    job._finish(None, done)
    if todo:
        log.info("ray: the driver stored %d frames in %.2f s (%.2f ms a frame); workers %.1f s, of which setup %.1f s",
                 len(todo), storing, 1000 * storing / len(todo), worker_s, setup)
    job.summary.timings = {"worker seconds": worker_s, "worker setup seconds": setup, "driver store seconds": storing}
    return job.summary
