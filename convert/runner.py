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

import logging
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from convert import blending, color_transfer
from convert.smoothing import smooth_track
from pipeline.core import geometry
from pipeline.core.errors import UserError
from pipeline.core.files import commit_file, remove_quietly, write_atomic
from pipeline.core.images import encode, read_gray
from pipeline.core.video import FrameReader, FrameWriter, probe
from pipeline.workspace.store import Workspace, loads_array

log = logging.getLogger("convert")

#: Why a frame is passed through unchanged, as the summary words it.
REASONS = {"no_face": "no face found", "deleted": "face deleted by the artist",
           "identity": "not the target person", "dropped": "face dropped"}


@dataclass
class ConvertOptions:
    workspace: Path = Path("workspace")
    input: Path | None = None           # default: the dst input recorded by extract
    output: Path | None = None          # default: workspace/result.mp4
    smooth: float = 2.0                 # landmark smoothing, Gaussian sigma in frames; 0 = off
    color: str = "rct"
    blend: str = "poisson"
    mask_erode: int = 4                 # pixels at the aligned size (< 0 dilates)
    mask_blur: int = 8
    sharpen: float = 0.0
    crf: int = 18
    preset: str = "medium"
    start: int = 0
    end: int | None = None              # exclusive
    preview: int = 0                    # > 0: this many before/after stills, no video
    batch_size: int = 8
    device: str = "auto"
    precision: str = "auto"             # auto: int8 on the CPU (128 models), float on CUDA
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass
class FacePlan:
    """Everything needed to swap one face, fixed before decoding starts."""

    frame: int
    landmarks: np.ndarray          # smoothed, frame pixels
    to_aligned: np.ndarray         # frame -> aligned crop (size S), smoothed
    to_model: np.ndarray           # frame -> network crop (resolution R), smoothed
    hand_mask: Path | None         # the artist's (or a non-hull) mask file, else None
    hand_mask_move: np.ndarray | None  # its crop (stored transform) -> the smoothed aligned crop


@dataclass
class ConvertSummary:
    frames: int = 0
    faces: int = 0
    passed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    output: Path | None = None
    previews: list[Path] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

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


def _check_input(ws: Workspace, meta: dict, requested: Path | None) -> tuple[Path, dict]:
    if meta.get("kind") != "video":
        raise UserError(f"workspace {ws.root}: the dst set was extracted from images, not a video; "
                        f"extract the dst video with 'python main.py extract --input VIDEO'")
    path = Path(requested) if requested is not None else Path(meta["input"])
    hint = "pass --input with its new location" if requested is None else "check --input"
    if not path.is_file():
        raise UserError(f"dst video {path} not found; {hint}")
    info = probe(path)
    recorded = meta.get("video") or {}
    if (info.width, info.height) != (recorded.get("width"), recorded.get("height")) or \
            info.frames != recorded.get("frames"):
        raise UserError(f"dst video {path} is not the one extracted ({info.width}x{info.height}, "
                        f"{info.frames} frames; extract saw {recorded.get('width')}x{recorded.get('height')}, "
                        f"{recorded.get('frames')} frames); pass --input with the original, or re-extract "
                        f"with 'python main.py extract --input {path} --force'")
    return path, recorded


def _check_model(model_meta: dict, set_meta: dict, model_dir: Path) -> None:
    dst_type = set_meta.get("extract", {}).get("face_type")
    dst_size = set_meta.get("extract", {}).get("size")
    model_type = model_meta.get("face_type")
    if model_type != dst_type:
        raise UserError(f"model in {model_dir} was trained on '{model_type}' faces but the workspace's dst "
                        f"faces are '{dst_type}'; retrain with 'python main.py train --fresh' or re-extract "
                        f"with --face-type {model_type}")
    if isinstance(dst_size, int) and model_meta["resolution"] > dst_size:
        raise UserError(f"model in {model_dir} has resolution {model_meta['resolution']} but the dst faces are "
                        f"only {dst_size} px; re-extract with --size {model_meta['resolution']} or use a "
                        f"{dst_size} model")


# ---------------------------------------------------------------------- planning


def _rows_with_edits(ws: Workspace) -> list[dict]:
    """The dst rows as the artist left them (deleted faces dropped, repainted masks 'hand').

    Read-only: convert never writes the index, so a run that fails on bad input leaves
    the workspace exactly as it was (the next extract or train records the edits).
    """
    scan = ws.scan_artist_edits("dst")
    deleted, hand, restored = set(scan.deleted), set(scan.hand_masks), set(scan.restored_masks)
    rows = []
    for row in ws.faces("dst"):
        r = dict(row)
        if r["id"] in deleted:
            r["dropped"], r["drop_reason"] = 1, "deleted"
        if r["id"] in hand:
            r["mask_origin"] = "hand"
        elif r["id"] in restored:
            r["mask_origin"] = "hull"
        rows.append(r)
    return rows


def plan_faces(ws: Workspace, rows: list, size: int, resolution: int, face_type: str,
               sigma: float) -> tuple[dict[int, list[FacePlan]], dict[int, str]]:
    """Per frame, the faces to swap (smoothed per track) and, per frame with none, why not."""
    kept = [r for r in rows if not r["dropped"]]
    excluded: dict[int, str] = {}
    for r in rows:
        if r["dropped"]:
            excluded.setdefault(r["frame_index"], r["drop_reason"] if r["drop_reason"] in REASONS else "dropped")
    by_track: dict[object, list] = defaultdict(list)
    for r in kept:
        key = r["track"] if r["track"] is not None else ("single", r["id"])
        by_track[key].append(r)
    plans: dict[int, list[FacePlan]] = defaultdict(list)
    masks_dir = ws.masks_dir("dst")
    for track_rows in by_track.values():
        track_rows.sort(key=lambda r: r["frame_index"])
        frames = np.array([r["frame_index"] for r in track_rows])
        raw = np.stack([loads_array(r["landmarks"]) for r in track_rows])
        smoothed = smooth_track(frames, raw, sigma)
        for r, pts in zip(track_rows, smoothed):
            mask_path = masks_dir / r["mask_file"]
            hand = mask_path if r["mask_origin"] != "hull" and mask_path.is_file() else None
            to_aligned = geometry.face_transform(pts, face_type, size)
            # a mask was painted on the crop of the stored transform: it moves onto the smoothed one
            move = (geometry.compose(to_aligned, geometry.invert_affine(loads_array(r["transform"])))
                    if hand is not None else None)
            # the network's crop is the aligned crop resized: its matrix adds that resize
            to_model = geometry.compose(geometry.resize_transform(size, resolution), to_aligned)
            plans[r["frame_index"]].append(FacePlan(r["frame_index"], pts, to_aligned, to_model, hand, move))
    for frame in plans:
        excluded.pop(frame, None)
    return dict(plans), excluded


# ---------------------------------------------------------------------- per-face work


@dataclass
class _Prepared:
    plan: FacePlan
    crop: np.ndarray       # network input, R x R RGB uint8
    mask_r: np.ndarray     # face mask at R for colour statistics, 0..255
    alpha: np.ndarray      # shaped 0..1 mask at the aligned size


class _FaceWork:
    """Per-face steps before and after the network (run in pool threads)."""

    def __init__(self, opts: ConvertOptions, size: int, resolution: int) -> None:
        self.opts, self.size, self.resolution = opts, size, resolution
        self.timings: Counter = Counter()

    def _aligned_mask(self, plan: FacePlan) -> np.ndarray:
        if plan.hand_mask is not None:
            painted = read_gray(plan.hand_mask)
            if painted is not None:
                if painted.shape != (self.size, self.size):
                    painted = cv2.resize(painted, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
                return cv2.warpAffine(painted, plan.hand_mask_move, (self.size, self.size), flags=cv2.INTER_LINEAR)
        return geometry.hull_mask(geometry.transform_points(plan.landmarks, plan.to_aligned), self.size)

    def prepare(self, frame: np.ndarray, plan: FacePlan) -> _Prepared:
        t0 = time.perf_counter()
        aligned = geometry.warp_to_aligned(frame, plan.to_aligned, self.size)
        crop = aligned if self.size == self.resolution else cv2.resize(
            aligned, (self.resolution, self.resolution), interpolation=cv2.INTER_AREA)
        mask = self._aligned_mask(plan)
        core = blending.shape_mask(mask, max(self.opts.mask_erode, 0), 0)
        mask_r = cv2.resize((core * 255).astype(np.uint8), (self.resolution, self.resolution),
                            interpolation=cv2.INTER_AREA)
        alpha = (blending.feather(core, self.opts.mask_blur) if self.opts.mask_erode >= 0 else
                 blending.shape_mask(mask, self.opts.mask_erode, self.opts.mask_blur))
        self.timings["crop+mask"] += time.perf_counter() - t0
        return _Prepared(plan, crop, mask_r, alpha)

    def finish(self, frame: np.ndarray, faces: list[tuple[_Prepared, np.ndarray]]) -> np.ndarray:
        """Colour-match, sharpen and blend every generated face of one frame."""
        out = np.array(frame, copy=True)
        for prep, generated in faces:
            t0 = time.perf_counter()
            face = color_transfer.transfer(self.opts.color, generated, prep.crop, prep.mask_r)
            face = blending.sharpen(face, self.opts.sharpen)
            t1 = time.perf_counter()
            blending.blend_face(out, face, prep.plan.to_model, prep.alpha, prep.plan.to_aligned, self.opts.blend)
            t2 = time.perf_counter()
            self.timings["colour"] += t1 - t0
            self.timings["blend"] += t2 - t1
        return out


class _Network:
    """The trained net on its device, run on a batch of crops (uint8 in, uint8 out)."""

    def __init__(self, model_dir: Path, device_name: str) -> None:
        import torch
        from pipeline.core.device import choose_device
        from pipeline.models.transform_net import load_model
        self.torch = torch
        self.device = choose_device(device_name)
        self.model_dir = model_dir
        self.raw, self.meta = load_model(model_dir, self.device)
        self.net: object = None
        self.precision = "float32"
        self.seconds = 0.0

    def prepare(self, precision: str, calibration: list[np.ndarray]) -> None:
        """Pick float or int8 (``auto``: int8 on the CPU when the model allows it) and log it."""
        from pipeline.models import int8_inference
        from pipeline.core.device import describe_device
        from pipeline.models.transform_net import inference_copy
        want_int8 = precision == "int8" or (precision == "auto" and self.device.type == "cpu")
        if precision == "int8" and (self.device.type != "cpu" or not int8_inference.supported(self.raw)):
            raise UserError("--precision int8 needs --device cpu and a 128 model with the residual skip; "
                            "use --precision float")
        self.net = inference_copy(self.raw)
        if want_int8 and int8_inference.supported(self.raw) and calibration:
            t0 = time.perf_counter()
            try:
                crops = self.torch.from_numpy(np.stack(calibration)).permute(0, 3, 1, 2).float().div_(255.0)
                self.net = int8_inference.quantize(self.raw, crops)
                self.precision = f"int8 (calibrated on {len(calibration)} dst faces in {time.perf_counter() - t0:.1f} s)"
            except Exception as exc:  # noqa: BLE001 - an optional speed path; float always works
                log.warning("convert: int8 inference unavailable (%s); running in float32", exc)
        log.info("convert: model %s (resolution %d, width %d, iteration %s), device %s, %s",
                 self.model_dir / "weights.pt", self.meta["resolution"], self.meta["width"],
                 self.meta.get("iteration", "?"), describe_device(self.device), self.precision)

    def __call__(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        if not crops:
            return []
        torch = self.torch
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            if self.precision == "float32":
                x = x.contiguous(memory_format=torch.channels_last)
            y = self.net(x).clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8)
            out = y.permute(0, 2, 3, 1).cpu().numpy()
        self.seconds += time.perf_counter() - t0
        return list(out)


def _calibration_crops(ws: Workspace, rows: list, resolution: int, count: int = 16) -> list[np.ndarray]:
    """Evenly spaced kept dst faces at the network's resolution (for int8 activation ranges)."""
    from pipeline.core.images import ImageReadError, read_rgb
    kept = [r for r in rows if not r["dropped"]]
    crops = []
    for i in np.linspace(0, len(kept) - 1, min(count, len(kept))).round().astype(int):
        try:
            img = read_rgb(ws.aligned_dir("dst") / kept[i]["aligned_file"])
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


def run_convert(opts: ConvertOptions) -> ConvertSummary:
    """Check everything, then render the video (or the preview stills). Raises UserError."""
    ws = Workspace(opts.workspace)
    if not ws.exists or ws.set_meta("dst") is None:
        raise UserError(f"workspace {ws.root} has no dst faces; run 'python main.py extract --input DST_VIDEO' "
                        f"first")
    set_meta = ws.set_meta("dst")
    if opts.color not in color_transfer.METHODS:
        raise UserError(f"--color {opts.color}: choose from {', '.join(color_transfer.METHODS)}")
    if opts.blend not in blending.BLEND_MODES:
        raise UserError(f"--blend {opts.blend}: choose from {', '.join(blending.BLEND_MODES)}")
    try:
        rows = _rows_with_edits(ws)
        if not any(not r["dropped"] for r in rows):
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
        network = _Network(model_dir, opts.device)
        _check_model(network.meta, set_meta, model_dir)
        size = int(set_meta["extract"]["size"])
        face_type = set_meta["extract"]["face_type"]
        plans, excluded = plan_faces(ws, rows, size, network.meta["resolution"], face_type, opts.smooth)
        if opts.precision not in ("auto", "float", "int8"):
            raise UserError(f"--precision {opts.precision}: choose auto, float or int8")
        network.prepare(opts.precision, _calibration_crops(ws, rows, network.meta["resolution"]))
    finally:
        ws.close()
    log.info("convert: %s -> %s; smoothing %s, colour %s, blend %s, mask erode %d blur %d",
             input_path, "previews" if opts.preview else output,
             f"sigma {opts.smooth:g} frames" if opts.smooth > 0 else "off", opts.color, opts.blend,
             opts.mask_erode, opts.mask_blur)
    if opts.preview:
        return _render(opts, input_path, video, network, plans, excluded, start, end, None,
                       ws.root / "preview", size)
    return _render(opts, input_path, video, network, plans, excluded, start, end, output, None, size)


def _render(opts: ConvertOptions, input_path: Path, video: dict, network: _Network,
            plans: dict[int, list[FacePlan]], excluded: dict[int, str], start: int, end: int,
            output: Path | None, preview_dir: Path | None, size: int) -> ConvertSummary:
    summary = ConvertSummary(output=output)
    width, height, fps = int(video["width"]), int(video["height"]), float(video["fps"])
    work = _FaceWork(opts, size, network.meta["resolution"])
    wanted = None
    if preview_dir is not None:
        wanted = set(_preview_frames(plans, start, end, opts.preview))
        if not wanted:
            raise UserError(f"no faces to preview between frames {start} and {end}")
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
            generated = network([p.crop for p in prepared])
            per_frame: dict[int, list] = defaultdict(list)
            for (i, _, _), prep, gen in zip(jobs, prepared, generated):
                per_frame[i].append((prep, gen))
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


def _write_preview(folder: Path, index: int, before: np.ndarray, after: Future | np.ndarray) -> None:
    image = after.result() if isinstance(after, Future) else after
    pair = np.concatenate([before, image], axis=1)
    write_atomic(folder / f"frame_{index:06d}.jpg", encode(pair, ".jpg"))
