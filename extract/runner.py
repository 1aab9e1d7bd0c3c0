"""The extract stage: input -> detected faces, landmarks, aligned crops and masks, indexed.

Decoding runs ahead in ffmpeg's thread; detection and per-face work run in a thread
pool (dlib and OpenCV release the GIL, so every core works); the main thread keeps
frame order, bridges gaps, writes files and commits the index in batches. A frame is
marked done only in the transaction that stores its faces, so a killed run resumes
exactly where it stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from extract.bridging import GapBridger
from extract.durable import DeferredFlush
from extract.faces import AlignSettings, FaceRecord, build_face
from extract.inputs import InputSource, resolve_input
from extract.options import DEFAULT_BACKENDS, ExtractOptions
from extract.search import SlowPassGate, is_anchor
from pipeline.core import geometry
from pipeline.core.errors import UserError
from pipeline.core.files import DiskFullError, is_disk_full, remove_quietly, write_atomic
from pipeline.core.images import ImageReadError, encode, opencv_threads, read_gray, read_rgb
from pipeline.core.options import check
from pipeline.core.profile import StepTimes
from pipeline.core.video import FrameReader
from pipeline.faces.analyser import FaceAnalyser, FoundFace
from pipeline.faces.backends.base import Masker
from pipeline.faces.identity import IdentityEncoder, distances
from pipeline.registries import LANDMARKERS, MASKERS
from pipeline.workspace.mask_guard import mask_writes
from pipeline.workspace.records import DropReason, ExtractSettings, FaceOrigin, FaceRow, MaskOrigin, SetMeta
from pipeline.workspace.store import Workspace, mask_hash

if TYPE_CHECKING:
    from pipeline.cluster.ray_cluster import Cluster

log = logging.getLogger("extract")

COMMIT_EVERY_S = 1.0


@dataclass
class ExtractSummary:
    set_name: str = ""
    frames_total: int = 0
    frames_new: int = 0
    frames_resumed: int = 0
    faces: int = 0
    detected: int = 0
    bridged: int = 0
    without_face: int = 0
    unreadable: list[str] = field(default_factory=list)
    kept_hand_masks: int = 0
    kept_learned_masks: int = 0
    dropped_identity: int = 0
    seconds: float = 0.0
    truncated: bool = False
    timings: dict = field(default_factory=dict)     # seconds per step, summed over threads (and ffmpeg's CPU)
    wall: dict = field(default_factory=dict)        # seconds per step during which some thread was in it

    def line(self) -> str:
        rate = self.frames_new / self.seconds if self.seconds > 0 else 0.0
        parts = [f"extract done: set {self.set_name}, {self.frames_total} frames "
                 f"({self.frames_new} new, {self.frames_resumed} already done)",
                 f"{self.faces} faces ({self.detected} detected, {self.bridged} bridged)",
                 f"{self.without_face} frames without a face",
                 f"{len(self.unreadable)} unreadable"]
        if self.dropped_identity:
            parts.append(f"{self.faces - self.dropped_identity} kept, {self.dropped_identity} dropped "
                         f"as not the target face")
        if self.kept_hand_masks:
            parts.append(f"{self.kept_hand_masks} hand-edited masks kept")
        if self.kept_learned_masks:
            parts.append(f"{self.kept_learned_masks} learned masks kept (--replace-learned-masks to redo them)")
        parts.append(f"{self.seconds:.1f} s ({rate:.1f} frames/s)")
        return ", ".join(parts)


@dataclass
class _Item:
    """One frame (or photo) travelling through the pipeline."""

    source: str
    index: int
    stem: str                      # file-name stem of its faces
    image: np.ndarray | None
    status: str = "ok"


def _settings_of(opts: ExtractOptions) -> ExtractSettings:
    return ExtractSettings(detector=opts.detector, landmarker=opts.landmarker, masker=opts.masker,
                           face_type=opts.face_type, size=opts.size, image_format=opts.image_format,
                           target_face=str(Path(opts.target_face).resolve()) if opts.target_face else None,
                           target_threshold=opts.target_threshold if opts.target_face else None)


def _with_backends(opts: ExtractOptions, meta: SetMeta | None) -> ExtractOptions:
    """Backends the command line did not name: the set's own (running extract again goes on as it
    began, also in a workspace made before the defaults changed), else the defaults."""
    chosen = {kind: getattr(meta.extract, kind) if meta is not None else default
              for kind, default in DEFAULT_BACKENDS.items() if getattr(opts, kind) is None}
    return dataclasses.replace(opts, **chosen) if chosen else opts


def detection_threads(workers: int) -> contextlib.AbstractContextManager:
    """OpenCV on one thread while a pool of ``workers`` > 1 threads detects frames side by side.

    Why: the pool's threads are the parallelism, and OpenCV's own on top of them only adds
    hand-offs. It also fixes the arithmetic: OpenCV's dnn layers round differently with
    another thread count (landmarks moved by up to 1e-4 px, enough to flip a stored value's
    last digit and, through x264, a converted frame by 43 dB), so a cluster worker, which
    reads the driver's ``workers``, detects under this same setting and stores the same bytes.
    """
    return opencv_threads(1) if workers > 1 else contextlib.nullcontext()


def _min_face(opts: ExtractOptions, src: InputSource) -> int:
    """Video: faces under a quarter of the frame are searched only where no larger one is."""
    if opts.min_face is not None:
        return opts.min_face
    if src.video is not None:
        return max(80, min(src.video.width, src.video.height) // 4)
    return 80


def _reference_descriptor(path: Path, detect: FaceAnalyser, encoder: IdentityEncoder) -> np.ndarray:
    """Identity of the one face in the --target-face photo (the largest, if several)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"--target-face {path} does not exist; give a photo of the person to keep")
    try:
        image = read_rgb(path)
    except ImageReadError as exc:
        raise UserError(f"--target-face: {exc}; give a photo (jpg, png) of the person to keep") from exc
    faces = detect(image)
    if not faces:
        raise UserError(f"--target-face: no face found in {path}; use a clear, frontal photo of the person")
    if len(faces) > 1:
        log.warning("warning: %d faces in %s; the largest is the target", len(faces), path)
    return encoder.describe_face(image, faces[0].landmarks)


def _check_set(ws: Workspace, set_name: str, src: InputSource, opts: ExtractOptions) -> None:
    """Refuse to mix inputs or settings in one set; the artist's data stays consistent."""
    meta = ws.set_meta(set_name)
    if meta is None:
        return
    if meta.input != str(src.path):
        raise UserError(f"set '{set_name}' in {ws.root} already holds faces from {meta.input}; "
                        f"extract {src.path} into another workspace (--workspace DIR)")
    old = meta.extract.to_json()
    new = _settings_of(opts).to_json()
    diff = [f"{k} {old.get(k)} -> {v}" for k, v in new.items() if old.get(k) != v]
    if diff and not opts.force:
        raise UserError(f"set '{set_name}' was extracted with other settings ({', '.join(diff)}); "
                        f"run with the same options, or add --force to re-extract (hand-edited masks are kept)")
    video = meta.video
    if src.video and video and not opts.force and (
            (video.get("width"), video.get("height")) != (src.video.width, src.video.height)
            or video.get("frames_expected") != src.video.frames_expected):
        raise UserError(f"{src.path} has changed since it was extracted ({video.get('frames')} frames "
                        f"{video.get('width')}x{video.get('height')} then, {src.video.frames} frames "
                        f"{src.video.width}x{src.video.height} now); add --force to re-extract it")


def run_extract(opts: ExtractOptions) -> ExtractSummary:
    """Extract faces from ``opts.input`` into the workspace; resumable and idempotent.

    With ``--ray`` the frames are detected on a Ray cluster in frame-range shards
    (``extract.cluster``) and this process, the only writer of the workspace, stores them;
    the cluster is joined before the workspace is opened, so a bad address changes nothing.
    """
    started = time.perf_counter()
    check(opts)
    src = resolve_input(opts.input)
    if opts.ray is None:
        return _extract(opts, src, None, started)
    if src.kind != "video":
        raise UserError(f"--ray spreads the frames of a video; {src.path} is {src.kind}: extract photos without --ray")
    from pipeline.cluster.ray_cluster import connect
    with connect(opts.ray, opts.device) as cluster:
        return _extract(opts, src, cluster, started)


def _extract(opts: ExtractOptions, src: InputSource, cluster: Cluster | None, started: float) -> ExtractSummary:
    set_name = opts.set_name or src.default_set
    ws = Workspace(opts.workspace, write=True, command="extract", rebuild_index=True)
    try:
        opts = _with_backends(opts, ws.set_meta(set_name))
        masker: Masker = MASKERS.load(opts.masker)()
        if masker.needs_dense and not LANDMARKERS.load(opts.landmarker).dense_points:
            dense = [e.name for e in LANDMARKERS if LANDMARKERS.load(e.name).dense_points]
            raise UserError(f"--masker {opts.masker} needs a landmark model with dense points "
                            f"({', '.join(dense)}); --landmarker {opts.landmarker} gives only the 68: "
                            f"add --landmarker {dense[0]}")
        what = "a video" if src.kind == "video" else "images"
        how = "given by --set" if opts.set_name else f"default for {what}; use --set to change"
        log.info("input: %s (%s) -> set %s (%s)", src.path, src.kind, set_name, how)
        _check_set(ws, set_name, src, opts)
        analyser = FaceAnalyser(opts.detector, opts.landmarker, opts.upsample, _min_face(opts, src),
                                opts.landmark_passes)
        log.info("detector: %s: %s", opts.detector, analyser.detector.description)
        log.info("landmarks: %s: %s", opts.landmarker, analyser.landmarker.description)
        log.info("masks: %s: %s", opts.masker, masker.description)
        log.info("workers: %d threads; face type %s, %dx%d %s", opts.workers, opts.face_type,
                 opts.size, opts.size, opts.image_format)
        rebuilding = ws.set_unindexed(set_name)    # the index lost this set: find the artist's edits on disk
        if rebuilding:
            log.warning("warning: %s has no faces of set %s: building them again from the input; masks repainted "
                        "by hand and aligned faces deleted by hand are found on disk and kept", ws.db_path, set_name)
        elif ws.exists and ws.set_meta(set_name):
            ws.remove_stale_temp_files(set_name)
            scan = ws.sync_artist_edits(set_name)
            if scan.deleted or scan.hand_masks:
                log.info("artist edits found: %d aligned faces deleted (kept dropped%s), %d masks hand-edited "
                         "(never overwritten)", len(scan.deleted), ", restored by --force" if opts.force else "",
                         len(scan.hand_masks))
        loader = ThreadPoolExecutor(1, thread_name_prefix="load")
        # the identity network loads while detection starts (ONNX Runtime on the CPU, torch on a GPU); one
        # thread, the detector threads use the cores (on a cluster the workers describe the faces: this
        # process needs it only for --target-face)
        encoder_future = loader.submit(IdentityEncoder, opts.device, 16, 1 if opts.workers > 1 else None) \
            if cluster is None or opts.target_face is not None else _done_future(None)
        loader.shutdown(wait=False)
        job = _ExtractJob(ws, set_name, src, opts, analyser, masker, encoder_future, rebuilding)
        if opts.target_face is not None:
            job.reference = _reference_descriptor(opts.target_face, analyser, job.encoder)
            log.info("target face: %s (faces further than %.2f from it are dropped)", opts.target_face,
                     opts.target_threshold)
        try:
            if cluster is not None:
                from extract.cluster import run_on_cluster
                summary = run_on_cluster(job, cluster)
            else:
                with detection_threads(opts.workers):
                    summary = job.run()
        except DiskFullError as exc:
            raise job.disk_full(exc) from exc.__cause__
        except OSError as exc:          # a folder that could not be made, a file not flushed
            if not is_disk_full(exc, ws.root):
                raise
            raise job.disk_full(DiskFullError(ws.root, "", None)) from exc
    finally:
        ws.close()
    summary.seconds = time.perf_counter() - started
    return summary


class _ExtractJob:
    def __init__(self, ws: Workspace, set_name: str, src: InputSource, opts: ExtractOptions,
                 analyser: FaceAnalyser, masker: Masker, encoder: Future, rebuilding: bool) -> None:
        self.ws, self.set_name, self.src, self.opts = ws, set_name, src, opts
        self.detect, self.landmarker, self.masker = analyser, analyser.landmarker, masker
        self._encoder_future: Future = encoder
        self._encoder: IdentityEncoder | None = None
        self.reference: np.ndarray | None = None      # --target-face descriptor
        self.to_describe: list[tuple[_Item, list[FaceRecord]]] = []
        self.settings = AlignSettings(opts.face_type, opts.size, opts.image_format)
        self.ext = ".jpg" if opts.image_format == "jpg" else ".png"
        self.summary = ExtractSummary(set_name=set_name)
        self.created = ws.exists and ws.set_meta(set_name) is not None and not ws.index_missing
        self.rebuilding = rebuilding
        self.early: list[tuple[_Item, list[FaceRecord]]] = []   # stored once the set exists
        self.last_commit = time.monotonic()
        self.times = StepTimes()       # where the time goes (``pipeline.core.profile``; benchmarks read it)
        self.flush = DeferredFlush()   # new face files, flushed in the background before each commit
        self.bar: tqdm | None = None
        self.files_before = self._set_files()     # to tell the files of a batch a full disk stopped

    def _set_files(self) -> set[Path]:
        """The aligned images and masks now in the set's folders."""
        out: set[Path] = set()
        for folder in (self.ws.aligned_dir(self.set_name), self.ws.masks_dir(self.set_name)):
            if folder.is_dir():
                out |= {p for p in folder.iterdir() if p.is_file()}
        return out

    def disk_full(self, exc: DiskFullError) -> DiskFullError:
        """The disk filled up: roll back the unfinished batch, remove the files it had written, and say what
        the index keeps (every frame committed before), so a rerun resumes with nothing half done."""
        ws = self.ws
        ws.close_db()                  # the batch's uncommitted rows are rolled back
        try:
            rows = ws.faces(self.set_name)
            done = len(ws.done_frames(self.set_name))
        except UserError:              # not even readable now: leave the files, the next extract sorts them
            return exc.keeping(f"the index keeps the frames of set {self.set_name} stored before the disk filled; "
                               f"run the same command again to resume")
        finally:
            ws.close_db()
        known = {ws.aligned_dir(self.set_name) / r.aligned_file for r in rows} | \
            {ws.masks_dir(self.set_name) / r.mask_file for r in rows}
        unfinished = self._set_files() - self.files_before - known
        for path in unfinished:
            remove_quietly(path)
        return exc.keeping(f"the index keeps the {done} frames of set {self.set_name} stored before (the unfinished "
                           f"batch was rolled back and its {len(unfinished)} files removed); run the same command "
                           f"again to resume")

    # ------------------------------------------------------------------ main loop
    def run(self) -> ExtractSummary:
        done = set() if self.opts.force else self.ws.done_frames(self.set_name)
        total = self.src.video.frames if self.src.video else len(self.src.images)
        self.summary.frames_resumed = len(done)
        bridger = None
        if self.src.kind == "video" and self.opts.bridge_gap > 0:
            bridger = GapBridger(self.landmarker, self.opts.bridge_gap, next_track=self.ws.next_track(self.set_name))
        unit = "frame" if self.src.kind == "video" else "img"
        self.bar = tqdm(total=total, initial=len(done), unit=unit, desc=f"extract {self.set_name}",
                        dynamic_ncols=True, mininterval=0.5)
        workers = max(1, self.opts.workers)
        inflight: deque[tuple[_Item, Future]] = deque()
        building: deque[tuple[_Item, Future]] = deque()
        reader: FrameReader | None = None
        pool = ThreadPoolExecutor(workers, thread_name_prefix="extract")
        seeded = False
        gate: SlowPassGate | None = None
        try:
            items, reader = self._items()
            for item in items:
                if (item.source, item.index) in done:
                    continue
                if not seeded:
                    seeded = True
                    before = self._stored_faces(item.index - 1)
                    if bridger is not None:
                        bridger.seed(before, item.index - 1)
                    if self.src.kind == "video":
                        gate = SlowPassGate(lambda it: self.detect(it.image), bool(before))
                if item.image is None:   # unreadable photo
                    building.append((item, _done_future([])))
                else:
                    inflight.append((item, pool.submit(self._first_look, item)))
                while len(inflight) > 2 * workers + 2:
                    item, fut = inflight.popleft()
                    self._decided(self._after_look(item, fut, gate), bridger, pool, building)
                while len(building) > 2 * workers + 2:
                    self._store(*building.popleft())
            while inflight:
                item, fut = inflight.popleft()
                self._decided(self._after_look(item, fut, gate), bridger, pool, building)
            if gate is not None:
                self._decided(gate.finish(), bridger, pool, building)
                log.debug("slow detector passes on %d frames", gate.slow_searches)
            if bridger is not None:
                for _, item, faces in bridger.finish():
                    building.append((item, self._submit_build(item, faces, pool)))
            while building:
                self._store(*building.popleft())
            self._flush_descriptors()
            self._commit()
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            while building and building[0][1].done() and not building[0][1].cancelled():
                self._store(*building.popleft())
            self._flush_descriptors()
            self._commit()
            raise UserError(f"interrupted after {self.summary.frames_new} new frames; run the same "
                            f"command again to resume", exit_code=130) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.flush.close()
            if reader is not None:
                reader.close()
            if self.bar is not None:
                self.bar.close()
        if bridger is not None:
            self.summary.bridged = bridger.bridged
        self._finish(reader, done)
        self.times.merge(self.detect.times)
        self.summary.timings, self.summary.wall = self.times.summed(), self.times.wall()
        return self.summary

    def _first_look(self, item: _Item) -> tuple[list[FoundFace], bool]:
        """Faces with the cheap pass (every pass for photos and anchor frames); runs in the pool."""
        thorough = self.src.kind != "video" or is_anchor(item.index)
        return self.detect(item.image, thorough), thorough

    def _after_look(self, item: _Item, fut: Future, gate: SlowPassGate | None) -> list[tuple[_Item, list[FoundFace]]]:
        with self.times.step("waiting"):
            faces, thorough = fut.result()
        return [(item, faces)] if gate is None else gate.push(item, faces, thorough)

    def _decided(self, frames: list[tuple[_Item, list[FoundFace]]], bridger: GapBridger | None,
                 pool: ThreadPoolExecutor, building: deque) -> None:
        """Frames whose faces are known, in order: through the gap bridger, then built in the pool."""
        for item, faces in frames:
            released = [(item.index, item, faces)] if bridger is None else bridger.push(item.index, item, faces,
                                                                                      item.image)
            for _, ready, ready_faces in released:
                building.append((ready, self._submit_build(ready, ready_faces, pool)))

    def _submit_build(self, item: _Item, faces: list[FoundFace], pool: ThreadPoolExecutor) -> Future:
        """The records of a decided frame, built in the pool."""
        return pool.submit(self._build, item.image, faces)

    def _build(self, image: np.ndarray, faces: list[FoundFace]) -> list[FaceRecord]:
        return [build_face(image, face, self.settings, self.masker, self.times) for face in faces]

    # ------------------------------------------------------------------ inputs
    def _items(self) -> tuple[Iterator[_Item], FrameReader | None]:
        if self.src.kind == "video":
            info = self.src.video
            reader = FrameReader(self.src.path, info.width, info.height, times=self.times)
            name = self.src.source_name()
            return (_Item(name, i, f"{i:06d}", img) for i, img in reader), reader
        return self._photo_items(), None

    def _photo_items(self) -> Iterator[_Item]:
        """One item per photo; its faces are named after the photo's whole file name.

        The whole name (``a.png`` -> ``a.png_0.png``) is unique in the folder, so two photos
        can never share a face's files, whatever order or run they are extracted in (the
        stem alone let ``a.jpg`` added later overwrite ``a.png``'s faces and painted masks).
        Faces extracted before keep the names the index records for them.
        """
        for path in self.src.images:
            stem = path.name
            name = self.src.source_name(path)
            try:
                image = read_rgb(path)
                yield _Item(name, 0, stem, image)
            except ImageReadError as exc:
                log.warning("warning: skipping %s", exc)
                yield _Item(name, 0, stem, None, status="unreadable")

    # ------------------------------------------------------------------ index
    def _stored_faces(self, frame_index: int) -> list[FoundFace]:
        """Faces of the last frame done before a resume, to continue their tracks."""
        if frame_index < 0 or self.src.kind != "video":
            return []
        rows = self.ws.faces(self.set_name, source=self.src.source_name(), frame_index=frame_index)
        return [FoundFace((float(r.bbox[0]), float(r.bbox[1]), float(r.bbox[2]), float(r.bbox[3])), r.landmarks,
                          r.score, r.origin.value, r.track, r.dense_landmarks) for r in rows]

    @property
    def encoder(self) -> IdentityEncoder:
        if self._encoder is None:
            with self.times.step("waiting"):
                self._encoder = self._encoder_future.result()
            log.info("identity: %s", self._encoder.description)
        return self._encoder

    def _store(self, item: _Item, fut: Future) -> None:
        """Queue a finished frame; descriptors are computed a batch of faces at a time."""
        with self.times.step("waiting"):
            records = fut.result()
        self.to_describe.append((item, records))
        if sum(len(r) for _, r in self.to_describe) >= self.encoder.batch_size:
            self._flush_descriptors()

    def _flush_descriptors(self) -> None:
        queued, self.to_describe = self.to_describe, []
        records = [rec for _, recs in queued for rec in recs]
        if records:
            encoder = self.encoder
            with self.times.step("identity descriptors"):
                descriptors = encoder.describe_chips([rec.chip for rec in records])
            for rec, desc in zip(records, descriptors):
                rec.descriptor = desc
                if self.reference is not None and distances(desc, self.reference)[0] > self.opts.target_threshold:
                    rec.dropped_reason = DropReason.IDENTITY
        with self.times.step("write"):
            for item, recs in queued:
                self._store_records(item, recs)

    def _store_records(self, item: _Item, records: list[FaceRecord]) -> None:
        if not self.created:
            if not records:
                self.early.append((item, records))
                self._count(item, records)
                return
            self._create()
        self._write(item, records)
        self._count(item, records)

    def _count(self, item: _Item, records: list[FaceRecord]) -> None:
        s = self.summary
        s.frames_new += 1
        if item.status == "unreadable":
            s.unreadable.append(item.source)
        elif not records:
            s.without_face += 1
        s.faces += len(records)
        s.detected += sum(1 for r in records if r.face.origin == FaceOrigin.DETECTED)
        s.dropped_identity += sum(1 for r in records if r.dropped_reason == DropReason.IDENTITY)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(faces=s.faces, refresh=False)

    def _create(self) -> None:
        self.ws.create(self.set_name)
        self._record_set_meta(complete=False)
        self.created = True
        early, self.early = self.early, []
        for item, records in early:
            self._write(item, records)

    def _record_set_meta(self, complete: bool, frames_decoded: int | None = None) -> None:
        meta = SetMeta(input=str(self.src.path), kind=self.src.kind, extract=_settings_of(self.opts),
                       complete=complete)
        if self.src.video is not None:
            video = self.src.video.to_json()
            video["frames_expected"] = self.src.video.frames_expected
            if frames_decoded is not None:
                video["frames"] = frames_decoded
            meta.video = video
        else:
            meta.images = len(self.src.images)
        self.ws.put_set_meta(self.set_name, meta)

    def _row(self, item: _Item, face_index: int, rec: FaceRecord, aligned_name: str, mask_name: str) -> FaceRow:
        f = rec.face
        yaw, pitch, roll = rec.pose
        return FaceRow(set_name=self.set_name, source=item.source, frame_index=item.index, face_index=face_index,
                       track=f.track, origin=FaceOrigin(f.origin), detector=self.opts.detector,
                       landmarker=self.opts.landmarker, score=f.score, bbox=np.asarray(f.box, np.float64),
                       landmarks=f.landmarks, aligned_landmarks=rec.aligned_points, transform=rec.transform,
                       face_type=self.settings.face_type, size=self.settings.size, aligned_file=aligned_name,
                       mask_file=mask_name, mask_origin=MaskOrigin(self.opts.masker),
                       mask_hash=rec.mask_pixels_hash, mask_mtime_ns=None, mask_bytes=None,
                       descriptor=rec.descriptor, blur=rec.blur, yaw=yaw, pitch=pitch, roll=roll,
                       dense_landmarks=f.dense)

    def _unindexed_edits(self, aligned: Path, mask: Path, rec: FaceRecord) -> tuple[bool, bool]:
        """(repainted mask, deleted face) for a face the index does not know but whose files exist.

        Only after the index was lost: a mask of the right size whose pixels are not the
        automatic ones was painted by the artist; a mask whose aligned image is gone means
        the artist deleted that face. Files a killed run left are the automatic ones, so
        they are neither.
        """
        pixels = read_gray(mask) if mask.exists() else None
        if pixels is None or pixels.shape != (self.settings.size, self.settings.size):
            return False, False
        return mask_hash(pixels) != rec.mask_pixels_hash, not aligned.exists()

    def _kept_learned_mask(self, old: FaceRow, row: FaceRow) -> np.ndarray | None:
        """A learned mask the re-extract keeps (moved onto the new crop), recorded in ``row``; else None.

        ``--replace-learned-masks`` asks for the automatic mask instead; an unreadable mask
        file is replaced too.
        """
        if old.mask_origin != MaskOrigin.LEARNED or self.opts.replace_learned_masks:
            return None
        pixels = read_gray(self.ws.mask_path(old))
        if pixels is None or pixels.shape[0] != pixels.shape[1]:
            return None
        moved = geometry.move_between_crops(pixels, old.transform, row.transform, row.size)
        row.mask_origin, row.mask_model, row.mask_hash = MaskOrigin.LEARNED, old.mask_model, mask_hash(moved)
        self.summary.kept_learned_masks += 1
        return moved

    def _write(self, item: _Item, records: list[FaceRecord]) -> None:
        """Files first (atomic), then the rows; the frame counts as done with its rows."""
        ws = self.ws
        existing = ws.frame_faces(self.set_name, item.source, item.index)
        aligned_dir, masks_dir = ws.aligned_dir(self.set_name), ws.masks_dir(self.set_name)
        rows = []
        for face_index, rec in enumerate(records):
            aligned_name, mask_name = self._free_names(item, face_index)
            row = self._row(item, face_index, rec, aligned_name, mask_name)
            old = existing.get(face_index)
            if old is not None and old.aligned_file != aligned_name:
                remove_quietly(ws.aligned_path(old))
            # the studio may save an old face's mask meanwhile: its check and this write under one lock
            with mask_writes(ws.root) if old is not None else contextlib.nullcontext():
                hand = old is not None and (old.mask_origin == MaskOrigin.HAND or ws.is_hand_mask(old))
                deleted = False
                if old is None and self.rebuilding:
                    hand, deleted = self._unindexed_edits(aligned_dir / aligned_name, masks_dir / mask_name, rec)
                if hand:            # the artist's mask stays, under the name and hash it has
                    mask_path = ws.mask_path(old) if old is not None else masks_dir / mask_name
                    row.mask_file, row.mask_origin = mask_path.name, MaskOrigin.HAND
                    row.mask_hash = old.mask_hash if old is not None else rec.mask_pixels_hash
                    row.mask_model = old.mask_model if old is not None else None   # an edited learned mask
                if rec.dropped_reason is not None:
                    # not the target person: indexed (with why) but no files for the artist to sort
                    remove_quietly(aligned_dir / aligned_name)
                    row.dropped, row.drop_reason = True, DropReason(rec.dropped_reason)
                    if not hand:
                        remove_quietly(masks_dir / mask_name)
                    rows.append(row)
                    continue
                if deleted:
                    row.dropped, row.drop_reason = True, DropReason.DELETED
                else:
                    self._put(aligned_dir / aligned_name, rec.aligned_png, fresh=old is None)
                learned = None if hand or old is None else self._kept_learned_mask(old, row)
                if hand:
                    self.summary.kept_hand_masks += 1
                    st = mask_path.stat()
                    row.mask_mtime_ns, row.mask_bytes = st.st_mtime_ns, st.st_size
                else:
                    path = masks_dir / mask_name
                    self._put(path, rec.mask_png if learned is None else encode(learned, ".png"), fresh=old is None)
                    st = path.stat()
                    row.mask_mtime_ns, row.mask_bytes = st.st_mtime_ns, st.st_size
                    if old is not None and old.mask_file != mask_name:    # named the older way
                        remove_quietly(ws.mask_path(old))
                rows.append(row)
        removed = [old for face_index, old in existing.items() if face_index >= len(records)]
        for old in removed:                    # --force found fewer faces than before
            remove_quietly(ws.aligned_path(old))
            if old.mask_origin != MaskOrigin.HAND:
                remove_quietly(ws.mask_path(old))
        ws.write_frame(self.set_name, item.source, item.index, item.status, rows, removed)
        if time.monotonic() - self.last_commit > COMMIT_EVERY_S:
            self._commit()

    def _free_names(self, item: _Item, face_index: int) -> tuple[str, str]:
        """The face's aligned and mask file names: after its photo or frame, never a name another face has.

        Only photos of a set an older version extracted can meet a taken name (it named faces
        by the stem alone); such a face gets a ``~2``, ``~3`` ... before its index.
        """
        for n in range(1, 1000):
            tag = f"{item.stem}{'' if n == 1 else f'~{n}'}_{face_index}"
            names = (f"{tag}{self.ext}", f"{tag}.png")
            if self.src.kind == "video" or not self.ws.names_taken(self.set_name, list(names), item.source,
                                                                        item.index):
                return names
        raise UserError(f"no free file name for face {face_index} of {item.source}: the index of set "
                        f"{self.set_name} names a thousand files after it; faces.sqlite was edited: restore it "
                        f"from a backup")

    def _put(self, path: Path, data: bytes, fresh: bool) -> None:
        """A face's file: a new one written now and flushed before the next commit (``DeferredFlush``), one
        that replaces a file atomically and flushed at once (the index may already name it)."""
        if fresh and not self.rebuilding and not path.exists():
            self.flush.write(path, data)
        else:
            write_atomic(path, data)

    def _commit(self) -> None:
        self.flush.wait()              # the rows committed here name only files already on disk
        self.ws.commit()
        self.last_commit = time.monotonic()

    # ------------------------------------------------------------------ the end
    def _finish(self, reader: FrameReader | None, done: set) -> None:
        s = self.summary
        s.frames_total = s.frames_new + s.frames_resumed
        if reader is not None:
            expected = self.src.video.frames_expected
            if reader.frames_read == 0 and not done:
                detail = reader.error_text.splitlines()[-1] if reader.error_text else "nothing decoded"
                raise UserError(f"no frame of {self.src.path} could be decoded ({detail}); the file is "
                                f"damaged: re-export or re-download it")
            if reader.frames_read < expected:
                s.truncated = True
                log.warning("warning: %s ended after %d of %d frames (truncated or damaged file); "
                            "extracted the frames that decoded", self.src.path, reader.frames_read, expected)
        if not self.created:
            what = "frames of the video" if self.src.kind == "video" else "images"
            readable = s.frames_new - len(s.unreadable)
            if readable == 0:
                raise UserError(f"none of the {s.frames_new} images in {self.src.path} could be read; "
                                f"check the files")
            hint = ("try --detector retinaface (finds turned, small and partly hidden faces)"
                    if self.opts.detector != "retinaface" else "try a smaller --min-face")
            raise UserError(f"no face found in any of the {readable} {what} in {self.src.path} with detector "
                            f"{self.opts.detector}; nothing was written. Use clearer, larger faces, or {hint}",
                            exit_code=1)
        decoded = reader.frames_read if reader is not None else None
        self._record_set_meta(complete=True, frames_decoded=decoded)


def _done_future(value) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut
