"""convert's renderer: a workspace's dst faces, model and src statistics, loaded once, and any frame rendered.

``Renderer`` does everything convert needs before the first frame: it checks the workspace,
the dst video and the model, loads and prepares the network (int8 calibration included),
and plans every face (tracks smoothed, the artist's deletions and masks read, the person
to swap chosen). ``render`` then swaps the faces of one frame. ``run_convert`` uses it for
a whole video; the studio keeps one per workspace, so a preview of another frame costs one
seek and one network pass, not a reload of the model and a decode from the start.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from convert import blending, blink, color_transfer, grain, part_colour, skin_tone
from convert.network import Network, check_model
from convert.options import CHROMA_SMOOTH, PART_COLOUR, ConvertOptions
from convert.smoothing import smooth_track
from pipeline.core import geometry, low_light
from pipeline.core.errors import UserError
from pipeline.core.images import read_gray
from pipeline.core.options import check
from pipeline.core.profile import StepTimes
from pipeline.core.threads import in_background
from pipeline.core.video import frame_at, probe
from pipeline.faces.backends.base import Masker
from pipeline.faces.people import parse_person, people
from pipeline.provenance.keys import load_key
from pipeline.provenance.watermark import Watermark, render_payload
from pipeline.registries import MASKERS
from pipeline.workspace import layout
from pipeline.workspace.records import DropReason, FaceRow, MaskOrigin, SetMeta
from pipeline.workspace.store import Workspace

if TYPE_CHECKING:
    from convert.network_process import ModelFacts, NetworkProcess

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


def with_model_defaults(opts: ConvertOptions, family: dict[str, Any]) -> ConvertOptions:
    """``opts`` with the options left unset (None) filled in: the model family's own default (``family``, the
    network's ``convert_defaults``), else convert's."""
    defaults = {"chroma_smooth": CHROMA_SMOOTH, "part_colour": PART_COLOUR, **family}
    unset = {k: v for k, v in defaults.items() if getattr(opts, k) is None}
    return dataclasses.replace(opts, **unset) if unset else opts



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
    lift: float = 1.0      # ``--low-light``: the exponent the network's input was lifted by (1 = none)
    net_crop: np.ndarray | None = None   # what the network is given: ``crop`` lifted (None: ``crop`` itself)

    @property
    def net_input(self) -> np.ndarray:
        return self.crop if self.net_crop is None else self.net_crop


class _FaceWork:
    """Per-face steps before and after the network (run in pool threads)."""

    def __init__(self, opts: ConvertOptions, size: int, resolution: int, masker: Masker) -> None:
        self.opts, self.size, self.resolution, self.masker = opts, size, resolution, masker
        self.src_parts: dict[str, np.ndarray] | None = None     # ``part_colour.relations`` of the src faces
        self.src_texture: float | None = None                  # ``grain.src_texture``
        self.mark: Watermark | None = None       # ``--watermark``: put into every swapped face
        self.times = StepTimes()       # per step, from the pool's threads (``pipeline.core.profile``)

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
        times = self.times
        with times.step("crop/warp"):
            aligned = geometry.warp_to_aligned(frame, plan.to_aligned, self.size)
            crop = aligned if self.size == self.resolution else cv2.resize(
                aligned, (self.resolution, self.resolution), interpolation=cv2.INTER_AREA)
        with times.step("mask"):
            mask = self._aligned_mask(plan, aligned)
            mask_r, alpha = self._shape(mask) if self.opts.mask == "workspace" else (mask, mask)
        with times.step("low light"):
            lifted, lift = low_light.lift(crop, mask_r, self.opts.low_light)
        return _Prepared(plan, crop, mask, mask_r, alpha, lift, lifted if lift != 1.0 else None)

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
        with self.times.step("mask"):
            m = cv2.resize(learned, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            if self.opts.mask == "both":
                m = ((m.astype(np.uint16) * prep.mask.astype(np.uint16) + 127) // 255).astype(np.uint8)
            prep.mask_r, prep.alpha = self._shape(m)

    def finish(self, frame: np.ndarray, faces: list[tuple[_Prepared, np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """Colour-match, sharpen and blend every generated face of one frame (with the model's masks, if used)."""
        times = self.times
        with times.step("blend"):
            out = np.array(frame, copy=True)
        for prep, generated, learned in faces:
            if learned is not None:
                self.use_learned_mask(prep, learned)
            generated = low_light.undo(generated, prep.lift)
            with times.step("colour"):
                face = color_transfer.transfer(self.opts.color, generated, prep.crop, prep.mask_r)
            with times.step("chroma smoothing"):
                face = blending.clean_chroma(face, prep.crop, self.opts.chroma_smooth)
            with times.step("blink/parts"):
                in_crop = geometry.transform_points(prep.plan.landmarks, prep.plan.to_model)
                # the skin first: the blink's eyes are matched to the face as it will be, and a blink does not
                # move the skin's shift (a blink frame differs from the frame without it in the eyes only)
                face = skin_tone.match(face, prep.crop, in_crop, prep.mask_r, self.opts.skin_tone)
                if self.opts.blink > 0 and prep.plan.closure > 0:
                    face = blink.carry(face, prep.crop, in_crop, self.opts.blink * prep.plan.closure)
                face = part_colour.match(face, in_crop, self.src_parts, self.opts.part_colour)
            zoom = blending.crop_zoom(prep.plan.to_model)
            with times.step("detail"):
                face = blending.match_detail(face, prep.crop, prep.mask_r, zoom)
            with times.step("sharpening"):
                # --sharpen makes up for the crop stretched over the face: none where the face is no larger
                face = blending.sharpen(face, self.opts.sharpen * blending.sharpen_weight(zoom))
            blending.blend_face(out, face, prep.plan.to_model, prep.alpha, prep.plan.to_aligned, self.opts.blend,
                                prep.crop, self.opts.detail, self.opts.detail_gate, self.opts.sharpen_new, times,
                                self.opts.poisson_reach)
            if self.opts.grain_match > 0:
                with times.step("grain"):
                    self._match_grain(out, frame, prep)
            if self.mark is not None:
                with times.step("watermark"):
                    self.mark.embed(out, prep.plan.landmarks, prep.plan.frame,
                                    pasted=(prep.alpha, prep.plan.to_aligned))
        return out

    def _match_grain(self, out: np.ndarray, frame: np.ndarray, prep: _Prepared) -> None:
        """``grain.match`` on the face just pasted into ``out`` (``frame``: the plate)."""
        region = blending.face_region(prep.plan.to_aligned, prep.alpha.shape[0], out.shape)
        if region is None:
            return
        alpha = blending.warp_into_region(prep.alpha, prep.plan.to_aligned, region, cv2.INTER_LINEAR)
        grain.match(out, frame, prep.plan.landmarks, alpha, (region.x0, region.y0, region.x1, region.y1),
                    self.opts.grain_match, self.src_texture)


def before_after(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The preview still: the frame as it was, then as convert renders it, side by side (one layout for
    ``--preview`` files and the studio's preview)."""
    return np.concatenate([before, after], axis=1)


def workspace_state(root: Path) -> tuple:
    """What a renderer's plans and model were made from, cheaply: the index, the model's weights and the
    folders whose files the artist deletes or paints (a change of any makes a new renderer)."""
    parts = [root / layout.INDEX_NAME, layout.model_dir(root) / "weights.pt", layout.enhancer_dir(root) / "weights.pt"]
    for set_dir in ("data_dst",):
        parts += [root / set_dir / "aligned", root / set_dir / "masks"]
    out = []
    for p in parts:
        try:
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(p), None, None))
    return tuple(out)


#: Options that decide what a renderer loads; the rest (colour, blend, masks, steps) may change per frame.
LOAD_OPTIONS = ("workspace", "input", "device", "precision", "batch_size", "enhance")


@dataclass
class SrcLook:
    """What convert reads of the src person's own faces: their parts' colours against their skin
    (``part_colour.relations``) and their skin's texture (``grain.src_texture``); None where not asked for or
    there are no src faces."""

    parts: dict[str, np.ndarray] | None = None
    texture: float | None = None


def _read_src_look(root: Path, parts: bool, texture: bool) -> SrcLook:
    with Workspace(root) as ws:
        faces = part_colour.src_faces(ws)
    return SrcLook(part_colour.relations(faces) if parts and faces else None,
                   grain.src_texture(faces) if texture and faces else None)


class Renderer:
    """A workspace's dst set, model and src statistics, loaded and checked once; renders any frame.

    ``before_model`` is called with the dst video's path and facts once they are checked and
    before the model loads, so a caller's own checks (an output file, a frame range) fail fast.
    """

    def __init__(self, opts: ConvertOptions,
                 before_model: Callable[[Path, dict], None] | None = None,
                 network: NetworkProcess | ModelFacts | None = None) -> None:
        """``network``: the model already loading in a child process (convert's run), or only its facts (a
        cluster's driver, which plans and checks: ``ModelFacts``), else loaded here."""
        check(opts)
        parse_person(opts.person)
        self.state = workspace_state(Path(opts.workspace))
        ws = Workspace(opts.workspace)
        try:
            set_meta = ws.set_meta("dst")
            if not ws.exists or set_meta is None:
                raise UserError(f"workspace {ws.root} has no dst faces; run 'python main.py extract --input "
                                f"DST_VIDEO' first")
            rows = ws.faces_as_edited("dst")     # read-only: the next extract or train records the edits
            if not any(not r.dropped for r in rows):
                raise UserError(f"workspace {ws.root} has no dst faces to swap (every face is deleted or dropped); "
                                f"re-extract the dst video (--force restores deleted faces)")
            self.input_path, self.video = _check_input(ws, set_meta, opts.input)
            if before_model is not None:
                before_model(self.input_path, self.video)
            # the src person's part colours and texture are read beside the model's load (torch's import, most of it)
            self._src_reading = (None if getattr(network, "plans_only", False) else   # the workers read their own
                                 in_background(lambda: _read_src_look(ws.root, self._wants_parts(opts),
                                                                      opts.grain_match > 0), "src-look"))
            model_dir = layout.model_dir(ws.root)
            self.network: Network | NetworkProcess | ModelFacts = (network if network is not None else
                                                      Network(model_dir, opts.device, opts.batch_size))
            check_model(self.network.resolution, self.network.meta, set_meta, model_dir)
            self.opts = with_model_defaults(opts, self.network.convert_defaults)
            self.size, self.face_type = set_meta.extract.size, set_meta.extract.face_type
            self.masker: Masker = MASKERS.load(set_meta.extract.masker)()
            self.rows = rows
            self.root = ws.root
            if not getattr(self.network, "plans_only", False):     # ``ModelFacts``: the workers build the network
                from pipeline.models.calibration import calibration_crops
                self.network.prepare(opts.precision, calibration_crops(ws, rows, self.network.resolution,
                                                                                low_light=self.opts.low_light))
                self.network.use_enhancer(ws.root, opts.enhance, opts.precision)
            self.check(self.opts)
            self._plans: dict[tuple, tuple[dict[int, list[FacePlan]], dict[int, str], str | None]] = {}
            self.plan(self.opts)                           # plans with the given options, checked now
            self._src_look: SrcLook | None = None   # None: not read yet
            self._hashes: tuple[str, str] | None = None      # (dst video, model weights) SHA-256
        finally:
            ws.close()

    def check(self, opts: ConvertOptions) -> None:
        """Refuse options this renderer's model cannot honour."""
        if opts.mask != "workspace" and not self.network.learned_mask:
            raise UserError(f"--mask {opts.mask} needs a model that paints its own mask (df, liae), and the "
                            f"{self.network.meta['model_type']} model in {self.network.model_dir} paints none; use "
                            f"--mask workspace")

    def serves(self, opts: ConvertOptions) -> bool:
        """Whether this renderer, as loaded, can render with ``opts`` (same load options, workspace unchanged)."""
        same = all(getattr(opts, k) == getattr(self.opts, k) for k in LOAD_OPTIONS)
        return same and workspace_state(Path(opts.workspace)) == self.state

    def options(self, opts: ConvertOptions) -> ConvertOptions:
        """``opts`` checked, with the model type's defaults filled in."""
        check(opts)
        parse_person(opts.person)
        full = with_model_defaults(opts, self.network.convert_defaults)
        self.check(full)
        return full

    def plan(self, opts: ConvertOptions) -> tuple[dict[int, list[FacePlan]], dict[int, str], str | None]:
        """(faces to swap per frame, why each frame without one passes through, whom convert swaps), made once per
        smoothing and person."""
        key = (opts.smooth, opts.person)
        if key not in self._plans:
            skip, person_line = choose_person(self.rows, parse_person(opts.person))
            with Workspace(self.root) as ws:
                plans, excluded = plan_faces(ws, self.rows, self.size, self.network.resolution, self.face_type,
                                             opts.smooth, skip)
            self._plans[key] = (plans, excluded, person_line)
        return self._plans[key]

    @staticmethod
    def _wants_parts(opts: ConvertOptions) -> bool:
        return opts.part_colour is None or opts.part_colour > 0

    def src_look(self, opts: ConvertOptions) -> SrcLook:
        """``SrcLook`` of the workspace for ``opts``, read once (again only if ``opts`` asks for more)."""
        if self._src_look is None:
            reading, self._src_reading = self._src_reading, None
            self._src_look = reading.result() if reading is not None else SrcLook()
        look = self._src_look
        if ((opts.part_colour > 0 and look.parts is None) or (opts.grain_match > 0 and look.texture is None)):
            look = self._src_look = _read_src_look(self.root, True, True)
        return look

    def work(self, opts: ConvertOptions) -> _FaceWork:
        """The per-face steps with ``opts`` (checked, model defaults filled in)."""
        work = _FaceWork(opts, self.size, self.network.resolution, self.masker)
        if opts.part_colour > 0 or opts.grain_match > 0:
            look = self.src_look(opts)
            work.src_parts, work.src_texture = look.parts, look.texture
        if opts.watermark:
            work.mark = Watermark(load_key(opts.watermark_key, create=True), self.watermark_payload())
        return work

    def input_hashes(self) -> tuple[str, str]:
        """The SHA-256 of the dst video and of the model's weights, read once: the watermark's payload and the
        content credentials both state them."""
        if self._hashes is None:
            from pipeline.provenance.credentials import model_hash, sha256_file
            self._hashes = (sha256_file(self.input_path), model_hash(self.network.model_dir))
        return self._hashes

    def watermark_payload(self) -> bytes:
        """The payload the mark carries (``render_payload``: this model on this video)."""
        return render_payload(*self.input_hashes())

    def render(self, index: int, opts: ConvertOptions | None = None, frame: np.ndarray | None = None) -> np.ndarray:
        """Dst frame ``index`` with its faces swapped (the frame as it is when it has none to swap).

        ``frame``: the decoded frame, when the caller has it (else it is read by seeking).
        """
        opts = self.opts if opts is None else self.options(opts)
        plans = self.plan(opts)[0].get(index, [])
        if frame is None:
            frame = frame_at(self.input_path, index)
        if not plans:
            return frame
        work = self.work(opts)
        prepared = [work.prepare(frame, p) for p in plans]
        generated, learned = self.network([p.net_input for p in prepared], masks=opts.mask != "workspace")
        return work.finish(frame, list(zip(prepared, generated, learned)))
