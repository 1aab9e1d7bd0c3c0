"""The convert stage: every dst frame with its faces replaced, encoded with the audio.

Flow, streaming (memory does not grow with the video's length):
- before anything is decoded, each face track's landmarks are smoothed over time and
  every face gets its smoothed transform; the artist's deletions and masks are read;
- ffmpeg decodes ahead in a thread; frames come in chunks of ``batch_size``;
- per face (thread pool): the aligned crop, cut with the smoothed transform the same
  way extract cut the training faces, and its mask (hand-painted when there is one);
- the network runs on the chunk's faces in one batch;
- per frame (thread pool): colour transfer, warp back, blend;
- a writer thread feeds the frames, in order, to ffmpeg's H.264 encoder.
The video goes to a temp file renamed over ``--output`` only when complete, so a failed
or interrupted run never leaves a half video where a good one was.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from convert import blending, blink, color_transfer, part_colour
from convert.options import CHROMA_SMOOTH, ConvertOptions
from convert.smoothing import smooth_track
from pipeline.core import geometry
from pipeline.core.errors import UserError
from pipeline.core.files import DiskFullError, commit_file, is_disk_full, pid_alive, remove_quietly, write_atomic
from pipeline.core.images import ImageReadError, encode, read_gray, read_rgb
from pipeline.core.options import check
from pipeline.core.video import FrameReader, FrameWriter, probe
from pipeline.faces.backends.base import Masker
from pipeline.faces.people import parse_person, people
from pipeline.models.interface import FaceModel, Predictor
from pipeline.registries import MASKERS
from pipeline.workspace.records import DropReason, FaceRow, MaskOrigin, SetMeta
from pipeline.workspace.store import Workspace

log = logging.getLogger("convert")

#: Why a frame is passed through unchanged, as the summary words it.
REASONS = {"no_face": "no face found", DropReason.DELETED.value: "face deleted by the artist",
           DropReason.IDENTITY.value: "not the target person", "dropped": "face dropped",
           "other_person": "with only other people's faces (--person)"}


@dataclass
class FacePlan:
    """Everything needed to swap one face, fixed before decoding starts."""

    frame: int
    landmarks: np.ndarray          # smoothed, frame pixels
    to_aligned: np.ndarray         # frame -> aligned crop (size S), smoothed
    to_model: np.ndarray           # frame -> network crop (resolution R), smoothed
    hand_mask: Path | None         # the artist's (or a non-hull) mask file, else None
    hand_mask_move: np.ndarray | None  # its crop (stored transform) -> the smoothed aligned crop
    dense: np.ndarray | None = None    # the landmarker's dense points, frame pixels (for the dense masker)
    closure: float = 0.0               # how far the dst's eyes are shut, 0..1 (``convert.blink``)


@dataclass
class ConvertSummary:
    frames: int = 0
    faces: int = 0
    passed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    output: Path | None = None
    previews: list[Path] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    person: str | None = None          # whom convert swapped, when the dst video shows several people

    def line(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        passed = sum(self.passed.values())
        why = ", ".join(f"{n} {REASONS.get(k, k)}" for k, n in sorted(self.passed.items()))
        head = (f"convert: {self.frames} frames, {self.faces} faces swapped, {passed} frames passed through"
                + (f" ({why})" if why else "") + f", {self.seconds:.1f} s ({fps:.1f} fps)")
        if self.previews:
            return head + f"; {len(self.previews)} previews in {self.previews[0].parent}"
        return head + f" -> {self.output}"


# ---------------------------------------------------------------------- checks


def _check_output(path: Path, input_path: Path) -> None:
    if path.exists() and path.is_dir():
        raise UserError(f"--output {path} is a folder; give a file name such as {path / 'result.mp4'}")
    if path.resolve() == input_path.resolve():
        raise UserError(f"--output {path} is the dst input itself; write the result to another file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: folder {parent} does not exist; create it or choose another --output")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {path}: permission denied; choose another --output")
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
        raise UserError(f"--output {path}: use a .mp4, .mov, .mkv or .m4v file name")


def _check_input(ws: Workspace, meta: SetMeta, requested: Path | None) -> tuple[Path, dict]:
    if meta.kind != "video":
        raise UserError(f"workspace {ws.root}: the dst set was extracted from images, not a video; "
                        f"extract the dst video with 'python main.py extract --input VIDEO'")
    path = Path(requested) if requested is not None else Path(meta.input)
    hint = "pass --input with its new location" if requested is None else "check --input"
    if not path.is_file():
        raise UserError(f"dst video {path} not found; {hint}")
    info = probe(path)
    recorded = meta.video or {}
    if (info.width, info.height) != (recorded.get("width"), recorded.get("height")) or \
            info.frames != recorded.get("frames"):
        raise UserError(f"dst video {path} is not the one extracted ({info.width}x{info.height}, "
                        f"{info.frames} frames; extract saw {recorded.get('width')}x{recorded.get('height')}, "
                        f"{recorded.get('frames')} frames); pass --input with the original, or re-extract "
                        f"with 'python main.py extract --input {path} --force'")
    return path, recorded


def _check_model(model: FaceModel, model_meta: dict, set_meta: SetMeta, model_dir: Path) -> None:
    dst_type, dst_size = set_meta.extract.face_type, set_meta.extract.size
    model_type = model_meta.get("face_type")
    if model_type != dst_type:
        raise UserError(f"model in {model_dir} was trained on '{model_type}' faces but the workspace's dst "
                        f"faces are '{dst_type}'; retrain with 'python main.py train --fresh' or re-extract "
                        f"with --face-type {model_type}")
    if isinstance(dst_size, int) and model.resolution > dst_size:
        raise UserError(f"model in {model_dir} has resolution {model.resolution} but the dst faces are "
                        f"only {dst_size} px; re-extract with --size {model.resolution} or use a "
                        f"{dst_size} model")


def with_model_defaults(opts: ConvertOptions, model: FaceModel) -> ConvertOptions:
    """``opts`` with the options left unset (None) filled in: the model family's own default, else convert's."""
    defaults = {"chroma_smooth": CHROMA_SMOOTH, **model.convert_defaults}
    unset = {k: v for k, v in defaults.items() if getattr(opts, k) is None}
    return dataclasses.replace(opts, **unset) if unset else opts


def remove_stale_outputs(output: Path) -> int:
    """Temp videos of earlier converts to ``output`` that were killed (their process is gone)."""
    count = 0
    for tmp in output.parent.glob(f".{output.stem}.*.tmp{output.suffix}"):
        pid = tmp.name[len(output.stem) + 2:-len(f".tmp{output.suffix}")]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            remove_quietly(tmp)
            count += 1
    return count


# ---------------------------------------------------------------------- planning


def choose_person(rows: list[FaceRow], person: int | None) -> tuple[set[int | None], str | None]:
    """Ids of the kept faces not to swap, and the line saying whom convert swaps (None: one person, nothing to say).

    Why: a clip with an audience or a second speaker must not get the new face on everyone;
    by default only the person in the most frames is swapped, and the line says so.
    """
    kept = [r for r in rows if not r.dropped]
    labels, found = people(kept)
    if person is None:
        if len(found) <= 1:
            return set(), None
        return set(), (f"convert: swapping all {len(found)} people of the dst video ({len(kept)} faces; --person all)")
    if person > max(len(found), 1):
        raise UserError(f"--person {person}: the dst video shows {len(found)} "
                        f"{'person' if len(found) == 1 else 'people'}; 'python main.py info' lists them")
    if len(found) <= 1:
        return set(), None
    chosen = found[person - 1]
    skip = {r.id for r, label in zip(kept, labels) if label != person - 1}
    unplaced = int((labels < 0).sum())
    others = len(found) - 1
    line = (f"convert: the dst video shows {len(found)} people; swapping person {person} ({len(chosen.rows)} faces "
            f"in {chosen.frames} frames, {chosen.first_frame}-{chosen.last_frame}), leaving {len(skip)} faces of "
            f"{others} other {'person' if others == 1 else 'people'}"
            + (f" (and {unplaced} faces no identity places)" if unplaced else "")
            + " untouched (--person N|all to choose; 'python main.py info' lists them)")
    return skip, line


def plan_faces(ws: Workspace, rows: list[FaceRow], size: int, resolution: int, face_type: str,
               sigma: float, skip: set[int | None] | None = None) -> tuple[dict[int, list[FacePlan]], dict[int, str]]:
    """Per frame, the faces to swap (smoothed per track) and, per frame with none, why not.

    ``skip``: ids of kept faces to leave as they are (other people than the one swapped).
    """
    skip = skip or set()
    kept = [r for r in rows if not r.dropped and r.id not in skip]
    excluded: dict[int, str] = {}
    for r in rows:
        if r.dropped:
            reason = r.drop_reason.value if r.drop_reason is not None else "dropped"
            excluded.setdefault(r.frame_index, reason if reason in REASONS else "dropped")
        elif r.id in skip:
            excluded.setdefault(r.frame_index, "other_person")
    by_track: dict[object, list[FaceRow]] = defaultdict(list)
    for r in kept:
        key = r.track if r.track is not None else ("single", r.id)
        by_track[key].append(r)
    plans: dict[int, list[FacePlan]] = defaultdict(list)
    eyes_open = blink.open_level([r.landmarks for r in kept])
    for track_rows in by_track.values():
        track_rows.sort(key=lambda r: r.frame_index)
        frames = np.array([r.frame_index for r in track_rows])
        raw = np.stack([r.landmarks for r in track_rows])
        smoothed = smooth_track(frames, raw, sigma)
        for r, pts in zip(track_rows, smoothed):
            mask_path = ws.mask_path(r)
            hand = mask_path if r.mask_origin != MaskOrigin.HULL and mask_path.is_file() else None
            to_aligned = geometry.face_transform(pts, face_type, size)
            # a mask was painted on the crop of the stored transform: it moves onto the smoothed one
            move = geometry.compose(to_aligned, geometry.invert_affine(r.transform)) if hand is not None else None
            # the network's crop is the aligned crop resized: its matrix adds that resize
            to_model = geometry.compose(geometry.resize_transform(size, resolution), to_aligned)
            plans[r.frame_index].append(FacePlan(r.frame_index, pts, to_aligned, to_model, hand, move,
                                                 r.dense_landmarks,
                                                 blink.closure(geometry.eye_openness(r.landmarks), eyes_open)))
    for frame in plans:
        excluded.pop(frame, None)
    return dict(plans), excluded


# ---------------------------------------------------------------------- per-face work


@dataclass
class _Prepared:
    plan: FacePlan
    crop: np.ndarray       # network input, R x R RGB uint8
    mask: np.ndarray       # the workspace's mask at the aligned size, 0..255
    mask_r: np.ndarray     # face mask at R for colour statistics, 0..255 (``--mask workspace``; else set in finish)
    alpha: np.ndarray      # shaped 0..1 mask at the aligned size (likewise)


class _FaceWork:
    """Per-face steps before and after the network (run in pool threads)."""

    def __init__(self, opts: ConvertOptions, size: int, resolution: int, masker: Masker) -> None:
        self.opts, self.size, self.resolution, self.masker = opts, size, resolution, masker
        self.src_parts: dict[str, np.ndarray] | None = None     # ``part_colour.src_relations``
        self.timings: Counter = Counter()

    def _aligned_mask(self, plan: FacePlan, aligned: np.ndarray) -> np.ndarray:
        if plan.hand_mask is not None:
            painted = read_gray(plan.hand_mask)
            if painted is not None:
                if painted.shape != (self.size, self.size):
                    painted = cv2.resize(painted, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
                return cv2.warpAffine(painted, plan.hand_mask_move, (self.size, self.size), flags=cv2.INTER_LINEAR)
        dense = None if plan.dense is None else geometry.transform_points(plan.dense, plan.to_aligned)
        return self.masker.mask(aligned, geometry.transform_points(plan.landmarks, plan.to_aligned), self.size, dense)

    def prepare(self, frame: np.ndarray, plan: FacePlan) -> _Prepared:
        t0 = time.perf_counter()
        aligned = geometry.warp_to_aligned(frame, plan.to_aligned, self.size)
        crop = aligned if self.size == self.resolution else cv2.resize(
            aligned, (self.resolution, self.resolution), interpolation=cv2.INTER_AREA)
        mask = self._aligned_mask(plan, aligned)
        mask_r, alpha = self._shape(mask) if self.opts.mask == "workspace" else (mask, mask)
        self.timings["crop+mask"] += time.perf_counter() - t0
        return _Prepared(plan, crop, mask, mask_r, alpha)

    def _shape(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the eroded mask at R for colour statistics, the eroded and feathered blend alpha at the aligned size)."""
        core = blending.shape_mask(mask, max(self.opts.mask_erode, 0), 0)
        mask_r = cv2.resize((core * 255).astype(np.uint8), (self.resolution, self.resolution),
                            interpolation=cv2.INTER_AREA)
        alpha = (blending.feather(core, self.opts.mask_blur) if self.opts.mask_erode >= 0 else
                 blending.shape_mask(mask, self.opts.mask_erode, self.opts.mask_blur))
        return mask_r, alpha

    def use_learned_mask(self, prep: _Prepared, learned: np.ndarray) -> None:
        """``--mask learned|both``: the model's mask of its face (R x R, 0..255), alone or times the workspace's,
        becomes the face's mask, eroded and feathered as the workspace's would be."""
        t0 = time.perf_counter()
        m = cv2.resize(learned, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        if self.opts.mask == "both":
            m = ((m.astype(np.uint16) * prep.mask.astype(np.uint16) + 127) // 255).astype(np.uint8)
        prep.mask_r, prep.alpha = self._shape(m)
        self.timings["crop+mask"] += time.perf_counter() - t0

    def finish(self, frame: np.ndarray, faces: list[tuple[_Prepared, np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """Colour-match, sharpen and blend every generated face of one frame (with the model's masks, if used)."""
        out = np.array(frame, copy=True)
        for prep, generated, learned in faces:
            if learned is not None:
                self.use_learned_mask(prep, learned)
            t0 = time.perf_counter()
            face = color_transfer.transfer(self.opts.color, generated, prep.crop, prep.mask_r)
            face = blending.clean_chroma(face, prep.crop, self.opts.chroma_smooth)
            in_crop = geometry.transform_points(prep.plan.landmarks, prep.plan.to_model)
            if self.opts.blink > 0 and prep.plan.closure > 0:
                face = blink.carry(face, prep.crop, in_crop, self.opts.blink * prep.plan.closure)
            face = part_colour.match(face, in_crop, self.src_parts, self.opts.part_colour)
            zoom = blending.crop_zoom(prep.plan.to_model)
            face = blending.match_detail(face, prep.crop, prep.mask_r, zoom)
            # --sharpen makes up for the crop stretched over the face: none where the face is no larger
            face = blending.sharpen(face, self.opts.sharpen * blending.sharpen_weight(zoom))
            t1 = time.perf_counter()
            blending.blend_face(out, face, prep.plan.to_model, prep.alpha, prep.plan.to_aligned, self.opts.blend,
                                prep.crop, self.opts.detail, self.opts.detail_gate, self.opts.sharpen_new)
            t2 = time.perf_counter()
            self.timings["colour"] += t1 - t0
            self.timings["blend"] += t2 - t1
        return out


class _Network:
    """The trained model on its device, run on a batch of crops (uint8 in, uint8 out)."""

    def __init__(self, model_dir: Path, device_name: str, batch: int = 1) -> None:
        import torch

        from pipeline.core.device import choose_device
        from pipeline.models.store import load_model
        self.torch = torch
        self.device = choose_device(device_name)
        self.model_dir = model_dir
        self.model, self.meta = load_model(model_dir, self.device, batch=batch)
        self.resolution = self.model.resolution
        self.predictor: Predictor | None = None
        self.seconds = 0.0

    def prepare(self, precision: str, calibration: list[np.ndarray]) -> None:
        """Pick float or int8 (``auto``: int8 on the CPU when the model allows it) and log it."""
        from pipeline.core.device import describe_device
        if precision != "auto" and not self.model.precision_supported(self.device, precision):
            raise UserError(f"--precision {precision} is not available for this {self.meta['model_type']} model on "
                            f"{self.device.type} (int8 needs --device cpu and a 128 model with the residual skip); "
                            f"use --precision float")
        self.predictor = self.model.predictor(self.device, precision, calibration)
        arch = ", ".join(f"{k} {v}" for k, v in self.model.architecture().items())
        log.info("convert: model %s (%s: %s, iteration %s), device %s, %s", self.model_dir / "weights.pt",
                 self.meta["model_type"], arch, self.meta.get("iteration", "?"), describe_device(self.device),
                 self.predictor.description)

    def __call__(self, crops: list[np.ndarray],
                 masks: bool = False) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """(swapped crops, and with ``masks`` the model's mask of each (R x R uint8), else Nones)."""
        if not crops:
            return [], []
        assert self.predictor is not None
        torch = self.torch

        def u8(t: Any) -> np.ndarray:
            return t.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

        t0 = time.perf_counter()
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            if masks:
                y, m = self.predictor.with_mask(x)
                faces, learned = list(u8(y)), [a[..., 0] for a in u8(m)]
            else:
                faces, learned = list(u8(self.predictor(x))), [None] * len(crops)
        self.seconds += time.perf_counter() - t0
        return faces, learned


def _calibration_crops(ws: Workspace, rows: list[FaceRow], resolution: int, count: int = 16) -> list[np.ndarray]:
    """Evenly spaced kept dst faces at the network's resolution (for int8 activation ranges)."""
    kept = [r for r in rows if not r.dropped]
    crops = []
    for i in np.linspace(0, len(kept) - 1, min(count, len(kept))).round().astype(int):
        try:
            img = read_rgb(ws.aligned_path(kept[i]))
        except ImageReadError:
            continue
        crops.append(cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA))
    return crops


# ---------------------------------------------------------------------- the run


def _chunks(reader: FrameReader, start: int, end: int, wanted: set[int] | None, size: int,
            seen: list[int]) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Chunks of (index, frame) in [start, end); ``seen[0]`` counts the frames decoded."""
    chunk: list[tuple[int, np.ndarray]] = []
    for index, frame in reader:
        seen[0] = index + 1
        if index >= end:
            break
        if index < start or (wanted is not None and index not in wanted):
            continue
        chunk.append((index, frame))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _preview_frames(plans: dict[int, list[FacePlan]], start: int, end: int, count: int) -> list[int]:
    candidates = sorted(f for f in plans if start <= f < end)
    if not candidates:
        return []
    picks = np.linspace(0, len(candidates) - 1, min(count, len(candidates)))
    return sorted({candidates[int(round(p))] for p in picks})


def run_convert(opts: ConvertOptions, stills: dict[int, np.ndarray] | None = None) -> ConvertSummary:
    """Check everything, then render the video (or the preview stills). Raises UserError.

    With ``stills`` (for benchmarks and tools), the ``--preview`` frames are rendered as
    preview does and put in that dict by frame index instead of written as files. A full
    disk (under the output, or under the index SQLite reads) is one line saying what was
    kept: the previous ``--output`` and the workspace, which convert only reads.
    """
    check(opts)
    parse_person(opts.person)
    output = Path(opts.output) if opts.output is not None else Path(opts.workspace) / "result.mp4"
    kept = ("the preview stills written so far are kept" if opts.preview else
            f"{output} is as it was before this convert and its unfinished temp file was removed")
    kept += "; the workspace is unchanged (convert only reads it)"
    try:
        return _convert(opts, stills)
    except DiskFullError as exc:
        raise exc.keeping(kept) from exc.__cause__
    except OSError as exc:             # e.g. the rename or flush of the finished video
        if not is_disk_full(exc, output.parent):
            raise
        raise DiskFullError(output.parent, kept, output.name) from exc


def _convert(opts: ConvertOptions, stills: dict[int, np.ndarray] | None) -> ConvertSummary:
    ws = Workspace(opts.workspace)
    try:
        set_meta = ws.set_meta("dst")
        if not ws.exists or set_meta is None:
            raise UserError(f"workspace {ws.root} has no dst faces; run 'python main.py extract --input DST_VIDEO' "
                            f"first")
        rows = ws.faces_as_edited("dst")     # read-only: the next extract or train records the edits
        if not any(not r.dropped for r in rows):
            raise UserError(f"workspace {ws.root} has no dst faces to swap (every face is deleted or dropped); "
                            f"re-extract the dst video (--force restores deleted faces)")
        input_path, video = _check_input(ws, set_meta, opts.input)
        total = int(video["frames"])
        start, end = max(0, opts.start), total if opts.end is None else min(opts.end, total)
        if end <= start:
            raise UserError(f"--start {opts.start} --end {opts.end}: empty range (the video has {total} frames)")
        output = Path(opts.output) if opts.output is not None else ws.root / "result.mp4"
        if not opts.preview:
            _check_output(output, input_path)
        model_dir = ws.root / "model"
        network = _Network(model_dir, opts.device, opts.batch_size)
        _check_model(network.model, network.meta, set_meta, model_dir)
        opts = with_model_defaults(opts, network.model)
        size, face_type = set_meta.extract.size, set_meta.extract.face_type
        masker: Masker = MASKERS.load(set_meta.extract.masker)()
        skip, person_line = choose_person(rows, parse_person(opts.person))
        plans, excluded = plan_faces(ws, rows, size, network.resolution, face_type, opts.smooth, skip)
        network.prepare(opts.precision, _calibration_crops(ws, rows, network.resolution))
        if opts.mask != "workspace" and not (network.predictor and network.predictor.learned_mask):
            raise UserError(f"--mask {opts.mask} needs a model that paints its own mask (df, liae), and the "
                            f"{network.meta['model_type']} model in {model_dir} paints none; use --mask workspace")
    finally:
        ws.close()
    log.info("convert: %s -> %s; smoothing %s, colour %s (chroma smoothing %g px), blend %s, mask %s, erode %d "
             "blur %d",
             input_path, "previews" if opts.preview else output,
             f"sigma {opts.smooth:g} frames" if opts.smooth > 0 else "off", opts.color, opts.chroma_smooth, opts.blend,
             {"workspace": "the workspace's", "learned": "the model's learned", "both": "workspace x learned"}[
                 opts.mask],
             opts.mask_erode, opts.mask_blur)
    if person_line:
        log.info("%s", person_line)
    work = _FaceWork(opts, size, network.resolution, masker)
    if opts.part_colour > 0:
        work.src_parts = part_colour.src_relations(ws)
        log.info("convert: brows, nose and lips in the src person's colours against the skin (amount %g)%s",
                 opts.part_colour, "" if work.src_parts else ": no src faces in the workspace, left as they are")
    if opts.preview:
        summary = _render(opts, input_path, video, network, work, plans, excluded, start, end, None,
                          ws.root / "preview", stills)
    else:
        stale = remove_stale_outputs(output)
        if stale:
            log.info("convert: removed %d temp video(s) left by an earlier convert that was killed", stale)
        summary = _render(opts, input_path, video, network, work, plans, excluded, start, end, output, None)
    summary.person = person_line
    return summary


def _render(opts: ConvertOptions, input_path: Path, video: dict, network: _Network, work: _FaceWork,
            plans: dict[int, list[FacePlan]], excluded: dict[int, str], start: int, end: int,
            output: Path | None, preview_dir: Path | None,
            stills: dict[int, np.ndarray] | None = None) -> ConvertSummary:
    summary = ConvertSummary(output=output)
    width, height, fps = int(video["width"]), int(video["height"]), float(video["fps"])
    wanted = None
    if preview_dir is not None:
        wanted = set(_preview_frames(plans, start, end, opts.preview))
        if not wanted:
            raise UserError(f"no faces to preview between frames {start} and {end}")
        if stills is None:
            preview_dir.mkdir(parents=True, exist_ok=True)
            for old in preview_dir.glob("frame_*.jpg"):
                remove_quietly(old)
    tmp = writer = None
    if output is not None:
        tmp = output.with_name(f".{output.stem}.{os.getpid()}.tmp{output.suffix}")
        writer = FrameWriter(tmp, width, height, fps, crf=opts.crf, preset=opts.preset,
                             audio_from=input_path, audio_start=start / fps if fps else 0.0,
                             audio_duration=(end - start) / fps if fps and (start > 0 or end < video["frames"])
                             else None)
    t_start = time.perf_counter()
    reader = FrameReader(input_path, width, height)
    bar = tqdm(total=len(wanted) if wanted is not None else end - start, unit="frame", desc="convert",
               dynamic_ncols=True, mininterval=0.5)
    pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="convert")
    ok = False
    try:
        seen = [0]
        for chunk in _chunks(reader, start, end, wanted, max(1, opts.batch_size), seen):
            jobs = [(i, frame, plan) for i, frame in chunk for plan in plans.get(i, [])]
            prepared = list(pool.map(lambda job: work.prepare(job[1], job[2]), jobs))
            generated, learned = network([p.crop for p in prepared], masks=opts.mask != "workspace")
            per_frame: dict[int, list] = defaultdict(list)
            for (i, _, _), prep, gen, lm in zip(jobs, prepared, generated, learned):
                per_frame[i].append((prep, gen, lm))
            for i, frame in chunk:
                faces = per_frame.get(i)
                if faces:
                    summary.faces += len(faces)
                    result: Future | np.ndarray = pool.submit(work.finish, frame, faces)
                else:
                    summary.passed[excluded.get(i, "no_face")] += 1
                    result = frame
                if writer is not None:
                    writer.put(result)
                elif stills is not None:
                    stills[i] = result.result() if isinstance(result, Future) else result
                else:
                    _write_preview(preview_dir, i, frame, result)
                    summary.previews.append(preview_dir / f"frame_{i:06d}.jpg")
                summary.frames += 1
                bar.update(1)
        if seen[0] < end:
            raise UserError(f"dst video {input_path} ended after {seen[0]} of {video['frames']} "
                            f"frames ({reader.error_text.splitlines()[-1] if reader.error_text else 'unreadable'}); "
                            f"check the file")
        if writer is not None:
            writer.close()
            commit_file(tmp, output)
        ok = True
    finally:
        bar.close()
        reader.close()
        if not ok and writer is not None:
            writer.abort()
        pool.shutdown(wait=True)
        if not ok and tmp is not None:
            remove_quietly(tmp)
    summary.seconds = time.perf_counter() - t_start
    summary.timings = {"network": network.seconds, **dict(work.timings)}
    return summary


def before_after(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The preview still: the frame as it was, then as convert renders it, side by side (one layout for
    ``--preview`` files and the studio's preview)."""
    return np.concatenate([before, after], axis=1)


def _write_preview(folder: Path, index: int, before: np.ndarray, after: Future | np.ndarray) -> None:
    image = after.result() if isinstance(after, Future) else after
    write_atomic(folder / f"frame_{index:06d}.jpg", encode(before_after(before, image), ".jpg"))
