"""``main.py evaluate``: a converted video measured against the original, as numbers and a page.

Both videos are decoded in step (never held whole in memory); faces are found in each
with the same detector and landmarks, matched frame by frame, and measured: identity
(to the src person and to the original face) by dlib's network, which training
optimises, and by FaceNet, which training never sees (``evaluate.held_apart``);
expression, pose, SSIM, seam, realism (sharpness, colour fringing, skin tone:
``evaluate.realism``; the face's tone against the neck beside it: ``evaluate.surround``),
jitter per face track, and coverage. A second, cheap decoding pass fetches the sample
frames the page shows.

When the dst video shows several people (``pipeline.faces.people``, as ``info`` lists them),
each face found is given the person of the workspace's dst face at its place, and the
figures are of the swapped person only (the person whose faces the output changed, or
``--person``): another person's untouched faces would read as a perfect "swap" of nobody
and pull every figure toward the original. The report says whom it measured, and whether
anyone else's face was changed.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from evaluate import metrics, realism, regions, surround, texture
from evaluate.held_apart import FaceNetJudge
from evaluate.held_apart import crop as held_apart_crop
from evaluate.options import EvaluateOptions
from pipeline.core.errors import UserError
from pipeline.core.files import write_atomic
from pipeline.core.options import check
from pipeline.core.video import FrameReader, VideoInfo, probe
from pipeline.faces.analyser import FaceAnalyser
from pipeline.faces.face_chip import extract_chip
from pipeline.faces.identity import SAME_PERSON, IdentityEncoder
from pipeline.faces.people import parse_person, people
from pipeline.provenance.keys import default_key_path, load_key
from pipeline.provenance.watermark import FaceCells, FrameScorer, Watermark, face_cells, judge
from pipeline.workspace import layout
from pipeline.workspace.store import Workspace, source_photo

log = logging.getLogger("evaluate")

#: Mean absolute difference (grey levels) inside the face above which it counts as swapped.
SWAP_DIFFERENCE = 4.0


@dataclass
class _Face:
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    chip: np.ndarray


@dataclass
class _Pair:
    """One reference face and the output face at the same place in the same frame."""

    ref: _Face
    out: _Face
    expression: float
    pose: float
    pose_diff: tuple[float, float, float]
    ssim: float | None
    seam_output: float | None
    seam_reference: float | None
    swapped: bool
    realism: dict = field(default_factory=dict)
    held_out: np.ndarray | None = None      # held-apart embeddings of output and reference face
    held_ref: np.ndarray | None = None
    identity_to_src: float | None = None
    identity_to_dst: float | None = None
    held_to_src: float | None = None
    held_to_dst: float | None = None
    colours: tuple[dict, dict] | None = None   # (output, reference) mean Lab colour per face region
    regions_to_src: tuple[dict, dict] | None = None  # (output, reference) delta E per region from the src person
    regions_vs_skin: tuple[dict, dict] | None = None  # the same for each part against the face's own cheeks
    eyes: tuple[float, float] | None = None    # (output, reference) eye openness
    mouth: tuple[float, float] | None = None   # (output, reference) mouth openness
    texture: tuple[float | None, float | None] = (None, None)  # (output, reference) skin texture
    around: dict = field(default_factory=dict)   # ``surround.measure``: the face's tone against the neck
    person: int = -1                              # the dst person (index) of the reference face, -1: nobody's


@dataclass
class _Frame:
    index: int
    ref_faces: list[_Face]
    out_faces: list[_Face]
    pairs: list[_Pair]
    ref_people: list[int] = field(default_factory=list)   # per reference face, its person index (-1: nobody's)
    mark_cells: list[FaceCells] = field(default_factory=list)   # the output faces' watermark cells (with a key)


class _Analyser:
    """Finds faces and measures one frame pair (runs in pool threads)."""

    def __init__(self, detector: str, landmarker: str, min_face: int, judge: FaceNetJudge) -> None:
        self.find = FaceAnalyser(detector, landmarker, "auto", min_face)
        self.judge = judge
        self.mark: Watermark | None = None          # this machine's watermark key, when it has one

    def faces(self, image: np.ndarray) -> list[_Face]:
        return [_Face(f.box, f.landmarks, extract_chip(image, f.landmarks)) for f in self.find(image)]

    def __call__(self, index: int, ref: np.ndarray, out: np.ndarray) -> _Frame:
        ref_faces, out_faces = self.faces(ref), self.faces(out)
        pairs = []
        used: set[int] = set()
        for rf in ref_faces:
            j = _nearest(rf, out_faces, used)
            if j is None:
                continue
            used.add(j)
            of = out_faces[j]
            mask = metrics.face_mask(rf.landmarks, ref.shape)
            band = max(2, int(round(0.08 * metrics.eye_distance(rf.landmarks))))
            inside = mask > 0
            diff = (float(np.abs(out[inside].astype(np.int16) - ref[inside].astype(np.int16)).mean())
                    if inside.any() else 0.0)
            pose, pose_diff = metrics.pose_error(of.landmarks, rf.landmarks)
            held_out, held_ref = self.judge.embed_many([held_apart_crop(out, of.box), held_apart_crop(ref, rf.box)])
            eyes = (metrics.eye_openness(of.landmarks), metrics.eye_openness(rf.landmarks))
            mouth = (metrics.mouth_openness(of.landmarks), metrics.mouth_openness(rf.landmarks))
            colours = (regions.region_colours(out, of.landmarks), regions.region_colours(ref, rf.landmarks))
            pairs.append(_Pair(rf, of, metrics.expression_error(of.landmarks, rf.landmarks), pose, pose_diff,
                               metrics.ssim_in_mask(out, ref, mask), metrics.seam_delta_e(out, mask, band),
                               metrics.seam_delta_e(ref, mask, band), diff > SWAP_DIFFERENCE,
                               realism.measure(out, ref, rf.landmarks),
                               held_out, held_ref, colours=colours, eyes=eyes, mouth=mouth,
                               texture=(texture.texture(out, rf.landmarks), texture.texture(ref, rf.landmarks)),
                               around=surround.measure(out, ref, rf.landmarks)))
        cells = [face_cells(out, f.landmarks) for f in out_faces] if self.mark is not None else []
        return _Frame(index, ref_faces, out_faces, pairs, mark_cells=cells)


def _centre(face: _Face) -> np.ndarray:
    return face.landmarks.mean(axis=0)


def _nearest(face: _Face, candidates: list[_Face], used: set[int]) -> int | None:
    """The candidate at the same place (centres within one eye distance), if any."""
    best, best_d = None, metrics.eye_distance(face.landmarks)
    for j, c in enumerate(candidates):
        d = float(np.linalg.norm(_centre(c) - _centre(face)))
        if j not in used and d < best_d:
            best, best_d = j, d
    return best


def _tracks(frames: list[_Frame], side: str) -> list[list[tuple[int, np.ndarray]]]:
    """Face tracks of one side: a face continues a track if it is at the same place as the
    track's face in the frame just before; gaps and cuts start new tracks."""
    done: list[list[tuple[int, np.ndarray]]] = []
    live: list[list[tuple[int, np.ndarray]]] = []
    for fr in frames:
        faces = fr.ref_faces if side == "reference" else fr.out_faces
        nxt = []
        taken: set[int] = set()
        for face in faces:
            match = None
            for k, tr in enumerate(live):
                if k in taken or tr[-1][0] != fr.index - 1:
                    continue
                if np.linalg.norm(tr[-1][1].mean(axis=0) - _centre(face)) < metrics.eye_distance(face.landmarks):
                    match = k
                    break
            if match is None:
                nxt.append([(fr.index, face.landmarks)])
            else:
                taken.add(match)
                live[match].append((fr.index, face.landmarks))
                nxt.append(live[match])
        done += [tr for k, tr in enumerate(live) if k not in taken]
        live = nxt
    return done + live


def _jitter_series(frames: list[_Frame], side: str, n: int) -> list[float | None]:
    per_frame: list[list[float]] = [[] for _ in range(n)]
    for track in _tracks(frames, side):
        values = metrics.second_difference_jitter([pts for _, pts in track])
        for (index, _), v in zip(track, values):
            if v is not None:
                per_frame[index].append(v)
    return [float(np.mean(v)) if v else None for v in per_frame]


# ---------------------------------------------------------------------- people


@dataclass
class _DstPeople:
    """The dst set's people as ``info`` lists and ``convert --person`` numbers them, and where their faces are."""

    numbers: list[dict]                                         # per person: person, faces, first/last frame
    at: dict[int, list[tuple[np.ndarray, int]]]                 # frame -> (landmark centre, person index)


def _dst_people(ws: Workspace, reference: Path) -> _DstPeople | None:
    """The dst video's people, from the kept faces as the artist left them (the rows convert groups);
    None when the workspace has no dst video or the reference is another video (its frames are not theirs)."""
    meta = ws.set_meta("dst")
    if not ws.exists or meta is None or meta.kind != "video" or Path(meta.input).resolve() != reference:
        return None
    kept = [r for r in ws.faces_as_edited("dst") if not r.dropped]
    labels, found = people(kept)
    at: dict[int, list[tuple[np.ndarray, int]]] = {}
    for r, label in zip(kept, labels):
        if label >= 0:
            at.setdefault(r.frame_index, []).append((np.asarray(r.landmarks).mean(axis=0), int(label)))
    numbers = [{"person": p.number, "faces": len(p.rows), "first_frame": p.first_frame,
                "last_frame": p.last_frame} for p in found]
    return _DstPeople(numbers, at)


def _place(frames: list[_Frame], dst: _DstPeople) -> None:
    """Each reference face (and its pair) takes the person of the dst face at its place: centres within
    one eye distance in the same frame; -1 where extract kept no face there."""
    for fr in frames:
        fr.ref_people = []
        for face in fr.ref_faces:
            best, best_d = -1, metrics.eye_distance(face.landmarks)
            for centre, label in dst.at.get(fr.index, []):
                d = float(np.linalg.norm(centre - _centre(face)))
                if d < best_d:
                    best, best_d = label, d
            fr.ref_people.append(best)
        for p in fr.pairs:
            p.person = next(k for f, k in zip(fr.ref_faces, fr.ref_people) if f is p.ref)


#: A person counts as swapped when the output changed at least this share of their faces.
SWAPPED_SHARE = 0.5


def _choose_people(frames: list[_Frame], dst: _DstPeople | None, asked: str | None,
                   notes: list[str]) -> tuple[set[int] | None, dict]:
    """(person indices to measure, None for every face; the report's ``people``).

    ``asked`` is ``--person``: a number, ``all``, or None for the person(s) whose faces the
    output changed (person 1, convert's default, when nobody's were).
    """
    if dst is None or len(dst.numbers) < 2:
        count = 0 if dst is None else len(dst.numbers)
        why = ("the dst video shows one person" if count == 1 else
               "people not told apart (no dst video in the workspace, or the reference is another video)")
        return None, {"count": count, "measured": "all", "chosen_by": why, "people": [], "faces_unplaced": 0}
    count = len(dst.numbers)
    matched, swapped = [0] * count, [0] * count
    for fr in frames:
        for p in fr.pairs:
            if p.person >= 0:
                matched[p.person] += 1
                swapped[p.person] += int(p.swapped)
    number = parse_person(asked) if asked is not None else 0
    if asked is None:
        changed = {k for k in range(count) if swapped[k] and swapped[k] >= SWAPPED_SHARE * matched[k]}
        measured = changed or {0}
        chosen_by = ("the person whose faces the output changed" if len(changed) == 1 else
                     "the people whose faces the output changed" if changed else
                     "nobody's faces were changed: person 1, whom convert swaps by default")
    elif number is None:
        measured, chosen_by = set(range(count)), "--person all"
    else:
        if number > count:
            raise UserError(f"--person {number}: the dst video shows {count} people; 'python main.py info' "
                            f"lists them")
        measured, chosen_by = {number - 1}, f"--person {number}"
    listed = [{**dst.numbers[k], "matched": matched[k], "swapped": swapped[k], "measured": k in measured}
              for k in range(count)]
    unplaced = sum(1 for fr in frames for k in fr.ref_people if k < 0)
    names = ", ".join(str(k + 1) for k in sorted(measured))
    whose = f"all {count} people" if len(measured) == count else f"person {names} only"
    notes.append(f"the dst video shows {count} people: the figures are of {whose} ({chosen_by}; "
                 f"--person N|all to choose)")
    for k in range(count):
        if k not in measured and swapped[k]:
            notes.append(f"person {k + 1}'s face was changed in {swapped[k]} of {matched[k]} frames, but only "
                         f"person {names} was to be swapped: convert swapped someone else too")
    return measured, {"count": count, "measured": [k + 1 for k in sorted(measured)], "chosen_by": chosen_by,
                      "people": listed, "faces_unplaced": unplaced}


def _only(frames: list[_Frame], measured: set[int]) -> list[_Frame]:
    """The frames with only the measured people's faces (their output faces: those paired with them)."""
    out = []
    for fr in frames:
        pairs = [p for p in fr.pairs if p.person in measured]
        refs = [(f, k) for f, k in zip(fr.ref_faces, fr.ref_people) if k in measured]
        out.append(_Frame(fr.index, [f for f, _ in refs], [p.out for p in pairs], pairs, [k for _, k in refs]))
    return out


def _src_identity(ws: Workspace) -> np.ndarray | None:
    descs = [r.descriptor for r in ws.faces("src", kept=True) if r.descriptor is not None]
    return np.mean(descs, axis=0) if descs else None


def _src_held_apart(ws: Workspace, judge: FaceNetJudge, count: int = 48, colours: list[dict] | None = None,
                    textures: list[float | None] | None = None) -> np.ndarray | None:
    """Mean FaceNet embedding (unit length) of up to ``count`` evenly spaced kept src faces.

    FaceNet reads the detector's box in the source image, so the faces are cut from the src
    set's own video frames or photos (the index keeps their boxes). None when the src input
    is gone or holds no kept face.
    """
    meta = ws.set_meta("src")
    rows = [r for r in ws.faces("src", kept=True)]
    if meta is None or not rows:
        return None
    picks = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int))]
    source = Path(meta.input)
    chips = []
    if meta.kind == "video":
        if not source.is_file():
            return None
        wanted: dict[int, list] = {}
        for r in picks:
            wanted.setdefault(r.frame_index, []).append(r)
        info = probe(source)
        reader = FrameReader(source, info.width, info.height)
        try:
            for index, frame in reader:
                for r in wanted.get(index, []):
                    chips.append(held_apart_crop(frame, r.bbox))
                    if colours is not None:
                        colours.append(regions.region_colours(frame, r.landmarks))
                    if textures is not None:
                        textures.append(texture.texture(frame, r.landmarks))
                if index >= max(wanted):
                    break
        finally:
            reader.close()
    else:
        from pipeline.core.images import ImageReadError, read_rgb
        for r in picks:
            try:
                photo = read_rgb(source_photo(meta, r.source, f"src face {r.id}"))
                chips.append(held_apart_crop(photo, r.bbox))
            except (ImageReadError, ValueError, OSError):
                continue
            if colours is not None:
                colours.append(regions.region_colours(photo, r.landmarks))
            if textures is not None:
                textures.append(texture.texture(photo, r.landmarks))
    if not chips:
        return None
    mean = np.mean(judge.embed_many(chips), axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _check_inputs(opts: EvaluateOptions, ws: Workspace) -> tuple[Path, Path]:
    video = Path(opts.video) if opts.video else layout.default_output(ws.root)
    if opts.reference:
        reference = Path(opts.reference)
    else:
        meta = ws.set_meta("dst")
        if meta is None:
            raise UserError(f"no reference video: {ws.root} has no dst set; pass --reference DST_VIDEO "
                            f"or run 'python main.py extract --input DST_VIDEO' first")
        reference = Path(meta.input)
    if not video.exists():
        hint = "run 'python main.py convert' first, or pass --video" if opts.video is None else "check the path"
        raise UserError(f"video to evaluate {video} does not exist; {hint}")
    if not reference.exists():
        raise UserError(f"reference video {reference} does not exist; pass --reference DST_VIDEO")
    return video.resolve(), reference.resolve()


def run_evaluate(opts: EvaluateOptions) -> tuple[dict, Path]:
    """Measure ``video`` against ``reference``; write report.json and index.html."""
    started = time.perf_counter()
    check(opts)
    if opts.ray is not None:
        from pipeline.cluster.ray_cluster import check_address
        check_address(opts.ray)
    if opts.person is not None:
        parse_person(opts.person)                    # a number or all, checked before anything is read
    with Workspace(opts.workspace) as ws:
        video, reference = _check_inputs(opts, ws)
        src_mean = _src_identity(ws) if ws.exists else None
        judge = FaceNetJudge(opts.device)
        src_colours: list[dict] = []
        src_textures: list[float | None] = []
        src_held = _src_held_apart(ws, judge, colours=src_colours, textures=src_textures) if ws.exists else None
        src_regions = regions.src_medians(src_colours)
        src_contrasts = regions.src_contrast_medians(src_colours)
        dst = ws.set_meta("dst")
        # faces are found the way the dst set was extracted (the defaults when there is none)
        detector, landmarker = (dst.extract.detector, dst.extract.landmarker) if dst else ("dlib", "dlib")
        dst_people = _dst_people(ws, reference) if ws.exists else None
    info_out, info_ref = probe(video), probe(reference)
    notes: list[str] = []
    if src_mean is None:
        notes.append("no src faces with descriptors in the workspace: identity to the src person not measured")
    elif src_held is None:
        notes.append("the src set's video or photos were not found where extract read them: the held-apart "
                     "network's distance to the src person is not measured")
    if (info_out.width, info_out.height) != (info_ref.width, info_ref.height):
        notes.append(f"output is {info_out.width}x{info_out.height}, reference {info_ref.width}x{info_ref.height}: "
                     f"output frames were resized to compare")
    encoder = IdentityEncoder(opts.device, 16, 1 if opts.workers > 1 else None)
    log.info("evaluate: %s against %s", video, reference)
    log.info("identity: %s", encoder.description)
    log.info("identity held apart: %s", judge.description)
    analyser = _Analyser(detector, landmarker, max(80, min(info_ref.width, info_ref.height) // 4), judge)
    log.info("faces: %s", analyser.find.description)

    analyser.mark = _machine_mark()
    if opts.ray is None:
        frames, frames_in, frames_out = _measure(video, reference, info_out, info_ref, opts, encoder, src_mean,
                                                 analyser)
    else:                              # the frames measured on a Ray cluster; the report is made here
        from evaluate.cluster import measure_on_cluster
        frames, frames_in, frames_out = measure_on_cluster(opts, video, reference, info_out, info_ref, src_mean,
                                                           detector, landmarker, analyser)
    provenance = _provenance(video, frames, analyser.mark)
    for fr in frames:
        for p in fr.pairs:
            if p.held_out is not None and p.held_ref is not None:
                p.held_to_dst = float(np.linalg.norm(p.held_out - p.held_ref))
                if src_held is not None:
                    p.held_to_src = float(np.linalg.norm(p.held_out - src_held))
            if src_regions is not None and p.colours is not None:
                p.regions_to_src = (regions.delta_e(p.colours[0], src_regions),
                                    regions.delta_e(p.colours[1], src_regions))
            if src_contrasts is not None and p.colours is not None:
                p.regions_vs_skin = (regions.contrast_delta_e(p.colours[0], src_contrasts),
                                     regions.contrast_delta_e(p.colours[1], src_contrasts))
    if dst_people is not None:
        _place(frames, dst_people)
    measured, people_report = _choose_people(frames, dst_people, opts.person, notes)
    if measured is not None:
        frames = _only(frames, measured)
    n = len(frames)
    jitter_out, jitter_ref = _jitter_series(frames, "output", n), _jitter_series(frames, "reference", n)
    report = _report(video, reference, ws.root, frames, frames_in, frames_out, info_out, info_ref,
                     jitter_out, jitter_ref, notes, src_textures)
    report["people"] = people_report
    report["provenance"] = provenance
    report_dir = layout.report_dir(ws.root)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(report_dir / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    samples = _samples(video, reference, info_out, info_ref, report, opts.samples)
    col = lambda k: [f[k] for f in report["per_frame"]]  # noqa: E731
    series = {"identity_to_src": col("identity_to_src"), "identity_to_dst": col("identity_to_dst"),
              "held_apart_to_src": col("held_apart_to_src"), "held_apart_to_dst": col("held_apart_to_dst"),
              "realism_sharpness": col("sharpness"), "realism_fringing": col("fringing"),
              "tone_delta_e": col("tone_delta_e"),
              "eyes_output": col("eyes_output"), "eyes_reference": col("eyes_reference"),
              "jitter_output": jitter_out, "jitter_reference": jitter_ref}
    from evaluate.html_report import render_html
    render_html(report, samples, series, report_dir / "index.html")
    if opts.ray is not None:           # the report is made: the shards a killed run would have resumed from go
        from evaluate.cluster import forget_shards
        forget_shards(opts)
    log.info("evaluated %d frames in %.1f s", n, time.perf_counter() - started)
    return report, report_dir


def _machine_mark() -> Watermark | None:
    """This machine's watermark key (convert's default), never made here: evaluate only reads."""
    path = default_key_path()
    return Watermark(load_key(path)) if path.is_file() else None


def _provenance(video: Path, frames: list[_Frame], mark: Watermark | None) -> dict:
    """What says the output is a face swap (issue 30): its content credentials and the watermark, as verify
    judges them (the watermark over every frame with a face, before any person is chosen)."""
    from pipeline.provenance.credentials import MIME, read_credentials
    from pipeline.provenance.signing import machine_root
    creds = None
    if video.suffix.lower() in MIME:
        root = machine_root()
        creds = read_credentials(video, [root] if root is not None else []).to_json()
    out: dict = {"credentials": creds, "watermark_key_id": mark.key_id if mark is not None else None,
                 "watermark_frames": None, "watermark_frames_marked": None, "watermark_window": None,
                 "watermark_payload": None}
    if mark is not None:
        scorer = FrameScorer(mark)
        for fr in sorted(frames, key=lambda f: f.index):
            scorer.add(fr.index, fr.mark_cells)
        scores = scorer.finish()
        out["watermark_frames"] = len(scores)
        out["watermark_window"], marked = judge(scores)           # as verify judges it without --window
        out["watermark_frames_marked"] = len(marked)
        out["watermark_payload"] = scorer.payload.hex() if scorer.payload is not None else None
    return out


def _measure(video: Path, reference: Path, info_out: VideoInfo, info_ref: VideoInfo, opts: EvaluateOptions,
             encoder: IdentityEncoder, src_mean: np.ndarray | None,
             analyser: _Analyser, start: int = 0, end: int | None = None) -> tuple[list[_Frame], int, int]:
    """Every frame pair measured (frames ``start`` to ``end`` only: a shard of ``evaluate --ray``)."""
    ref_reader = FrameReader(reference, info_ref.width, info_ref.height, start=start)
    out_reader = FrameReader(video, info_out.width, info_out.height, start=start)
    resize = (info_out.width, info_out.height) != (info_ref.width, info_ref.height)
    frames: list[_Frame] = []
    pending: deque[Future] = deque()
    to_describe: list[_Frame] = []
    bar = tqdm(total=min(info_out.frames, info_ref.frames, end or info_ref.frames) - start, unit="frame",
               desc="evaluate", mininterval=0.5, disable=end is not None)

    def collect(fut: Future) -> None:
        to_describe.append(fut.result())
        bar.update(1)
        if sum(2 * len(f.pairs) for f in to_describe) >= encoder.batch_size:
            describe()

    def describe() -> None:
        pairs = [p for f in to_describe for p in f.pairs]
        if pairs:
            descs = encoder.describe_chips([c for p in pairs for c in (p.out.chip, p.ref.chip)])
            for k, p in enumerate(pairs):
                d_out, d_ref = descs[2 * k], descs[2 * k + 1]
                p.identity_to_dst = float(np.linalg.norm(d_out - d_ref))
                if src_mean is not None:
                    p.identity_to_src = float(np.linalg.norm(d_out - src_mean))
        frames.extend(to_describe)
        to_describe.clear()

    with ThreadPoolExecutor(max(1, opts.workers)) as pool:
        ref_iter, out_iter = iter(ref_reader), iter(out_reader)
        try:
            for (i, ref), (_, out) in zip(ref_iter, out_iter):
                if end is not None and i >= end:
                    break
                if resize:
                    out = cv2.resize(out, (info_ref.width, info_ref.height), interpolation=cv2.INTER_AREA)
                pending.append(pool.submit(analyser, i, ref, out))
                while len(pending) > 2 * opts.workers + 2:
                    collect(pending.popleft())
            while pending:
                collect(pending.popleft())
            describe()
            for _ in ref_iter if end is None else ():     # the longer video: count what is left (decoding only)
                pass
            for _ in out_iter if end is None else ():
                pass
        finally:
            bar.close()
            ref_reader.close()
            out_reader.close()
    return frames, ref_reader.frames_read, out_reader.frames_read


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _report(video: Path, reference: Path, root: Path, frames: list[_Frame], frames_in: int, frames_out: int,
            info_out: VideoInfo, info_ref: VideoInfo, jitter_out: list, jitter_ref: list, notes: list[str],
            src_textures: list[float | None] | None = None) -> dict:
    per_frame = []
    for fr in frames:
        pairs = fr.pairs
        per_frame.append({
            "frame": fr.index, "faces_reference": len(fr.ref_faces), "faces_output": len(fr.out_faces),
            "matched": len(pairs),
            "identity_to_src": _mean([p.identity_to_src for p in pairs]),
            "identity_to_dst": _mean([p.identity_to_dst for p in pairs]),
            "expression": _mean([p.expression for p in pairs]),
            "pose": _mean([p.pose for p in pairs]),
            "yaw_diff": _mean([p.pose_diff[0] for p in pairs]), "pitch_diff": _mean([p.pose_diff[1] for p in pairs]),
            "roll_diff": _mean([p.pose_diff[2] for p in pairs]),
            "ssim": _mean([p.ssim for p in pairs]),
            "seam_output": _mean([p.seam_output for p in pairs]),
            "seam_reference": _mean([p.seam_reference for p in pairs]),
            "held_apart_to_src": _mean([p.held_to_src for p in pairs]),
            "held_apart_to_dst": _mean([p.held_to_dst for p in pairs]),
            "sharpness": _mean([p.realism.get("sharpness") for p in pairs]),
            "fringing": _mean([p.realism.get("fringing") for p in pairs]),
            "tone_delta_e": _mean([p.realism.get("tone_delta_e") for p in pairs]),
            **{f"{name}_to_src_{side}": _mean([p.regions_to_src[k][name] for p in pairs if p.regions_to_src])
               for name in regions.REGIONS for k, side in ((0, "output"), (1, "reference"))},
            **{f"{name}_vs_skin_{side}": _mean([p.regions_vs_skin[k][name] for p in pairs if p.regions_vs_skin])
               for name in regions.PARTS for k, side in ((0, "output"), (1, "reference"))},
            "eyes_output": _mean([p.eyes[0] for p in pairs if p.eyes]),
            "eyes_reference": _mean([p.eyes[1] for p in pairs if p.eyes]),
            "mouth_output": _mean([p.mouth[0] for p in pairs if p.mouth]),
            "mouth_reference": _mean([p.mouth[1] for p in pairs if p.mouth]),
            "texture_output": _mean([p.texture[0] for p in pairs]),
            "texture_reference": _mean([p.texture[1] for p in pairs]),
            **{f"surround_{key}": _mean([p.around.get(key) for p in pairs])
               for name in surround.AREAS for key in (f"{name}_change", f"{name}_output", f"{name}_original")},
            "face_box": [int(round(v)) for v in pairs[0].ref.box] if pairs else None,
            "swapped": any(p.swapped for p in pairs),
            "jitter_output": jitter_out[fr.index], "jitter_reference": jitter_ref[fr.index],
        })
    col = lambda k: [f[k] for f in per_frame]  # noqa: E731
    compared = len(frames)
    swapped = sum(1 for f in per_frame if f["swapped"])
    missing = sum(1 for f in per_frame if f["faces_reference"] > f["matched"])
    ref_faces = sum(1 for f in per_frame if f["faces_reference"])
    if frames_out != frames_in:
        where = "missing from" if frames_out < frames_in else "extra in"
        notes.append(f"output has {frames_out} frames, reference {frames_in}: "
                     f"{abs(frames_in - frames_out)} frames {where} the output")
    if not info_out.has_audio and info_ref.has_audio:
        notes.append("the output has no audio stream; the reference has one")
    elif not info_out.has_audio:
        notes.append("neither video has an audio stream")
    if ref_faces == 0:
        notes.append("no face found in any frame of the reference: face metrics not measured")
    elif not any(f["faces_output"] for f in per_frame):
        notes.append("no face found in any frame of the output: face metrics not measured")
    elif missing:
        notes.append(f"{missing} frames have a face in the reference but none at the same place in the output")
    held = _held_apart_summary(per_frame, notes)
    return {
        "video": str(video), "reference": str(reference), "workspace": str(root),
        "identity_to_src": metrics.summary(col("identity_to_src")),
        "identity_to_dst": metrics.summary(col("identity_to_dst"), worst="min"),  # near the original = failed swap
        "expression": metrics.summary(col("expression")),
        "pose": metrics.summary(col("pose")),
        "ssim": metrics.summary(col("ssim"), worst="min"),
        "sharpness": metrics.summary(col("sharpness"), worst="min"),
        "fringing": metrics.summary(col("fringing")),
        "tone_delta_e": metrics.summary(col("tone_delta_e")),
        "identity_trained_against": {"network": "dlib face-recognition ResNet", "threshold": SAME_PERSON,
                                     "share_closer_to_src": _share_closer(per_frame, "identity")},
        "identity_held_apart": held,
        "regions": _regions_summary(per_frame),
        "eyes": metrics.agreement(col("eyes_reference"), col("eyes_output"), None, "eye openness"),
        "mouth": metrics.agreement(col("mouth_reference"), col("mouth_output"), metrics.MOUTH_OPEN,
                                   "mouth openness"),
        "texture": texture.summary(col("texture_output"), col("texture_reference"), src_textures or []),
        "surround_tone": surround.summary(per_frame),
        "jitter": {"output": metrics.rms(jitter_out), "reference": metrics.rms(jitter_ref)},
        "seam_delta_e": {"output": _mean(col("seam_output")), "reference": _mean(col("seam_reference"))},
        "coverage": {"frames_in": frames_in, "frames_out": frames_out, "frames_compared": compared,
                     "frames_swapped": swapped, "frames_passed_through": compared - swapped,
                     "frames_face_missing_in_output": missing,
                     "fps_in": info_ref.fps, "fps_out": info_out.fps,
                     "duration_in": info_ref.duration, "duration_out": info_out.duration,
                     "audio_in": info_ref.has_audio, "audio_out": info_out.has_audio},
        "thresholds": {"same_person": SAME_PERSON, "swapped_difference": SWAP_DIFFERENCE},
        "notes": notes,
        "per_frame": per_frame,
    }


def _regions_summary(per_frame: list[dict]) -> dict:
    """Per face region, the median delta E from the src person's own colour: the output's and the original's.

    Each part but the cheeks also has the same measured against the face's own skin
    (``output_vs_skin``, ``original_vs_skin``), where the shot's light mostly cancels.
    """
    def median(key: str) -> tuple[float | None, int]:
        values = [f[key] for f in per_frame if f.get(key) is not None]
        return (float(np.median(values)) if values else None), len(values)

    out = {}
    for name in regions.REGIONS:
        got, frames = median(f"{name}_to_src_output")
        out[name] = {"output": got, "original": median(f"{name}_to_src_reference")[0], "frames": frames}
        if name in regions.PARTS:
            out[name]["output_vs_skin"] = median(f"{name}_vs_skin_output")[0]
            out[name]["original_vs_skin"] = median(f"{name}_vs_skin_reference")[0]
    return out


def _share_closer(per_frame: list[dict], prefix: str) -> float | None:
    """Share of the frames measured both ways whose output is closer to the src person than to the original."""
    both = [(f[f"{prefix}_to_src"], f[f"{prefix}_to_dst"]) for f in per_frame
            if f[f"{prefix}_to_src"] is not None and f[f"{prefix}_to_dst"] is not None]
    return sum(1 for s, d in both if s < d) / len(both) if both else None


#: dlib's share of frames closer to src above FaceNet's by this much: the swap fooled the
#: network training optimises more than it changed the face.
DISAGREEMENT = 0.25


def _held_apart_summary(per_frame: list[dict], notes: list[str]) -> dict:
    from evaluate.held_apart import DESCRIPTION
    from evaluate.held_apart import SAME_PERSON as HELD_SAME_PERSON
    share = _share_closer(per_frame, "held_apart")
    trained = _share_closer(per_frame, "identity")
    fooled = share is not None and trained is not None and trained - share >= DISAGREEMENT
    if fooled:
        notes.append(f"the swap convinces the network training optimises much more than the held-apart one: "
                     f"dlib puts {trained:.0%} of frames closer to the src person, FaceNet only {share:.0%}; "
                     f"the face may not look like the src person to a viewer")
    return {"network": DESCRIPTION, "threshold": HELD_SAME_PERSON,
            "to_src": metrics.summary([f["held_apart_to_src"] for f in per_frame]),
            "to_dst": metrics.summary([f["held_apart_to_dst"] for f in per_frame], worst="min"),
            "share_closer_to_src": share, "trained_network_fooled": fooled}


def _pick_samples(report: dict, count: int) -> list[tuple[int, str]]:
    per = report["per_frame"]
    n = len(per)
    if n == 0:
        return []
    picks: list[tuple[int, str]] = [(int(round(k * (n - 1) / max(count - 1, 1))), "evenly spaced")
                                    for k in range(count)]
    ident = [(f["identity_to_src"], f["frame"]) for f in per if f["identity_to_src"] is not None]
    if ident:
        picks.append((max(ident)[1], "worst identity (furthest from src)"))
    for key, worst, why in (("held_apart_to_src", max, "worst held-apart identity"),
                            ("sharpness", min, "softest face"), ("fringing", max, "worst colour fringes"),
                            ("tone_delta_e", max, "worst skin tone"),
                            ("surround_neck_change", max, "face against the neck changed most")):
        values = [(f[key], f["frame"]) for f in per if f[key] is not None]
        if values:
            picks.append((worst(values)[1], why))
    jit = [(f["jitter_output"], f["frame"]) for f in per if f["jitter_output"] is not None]
    if jit:
        picks.append((max(jit)[1], "worst jitter"))
    picks += _worst_realism(report)
    seen: dict[int, str] = {}
    for frame, why in picks:
        seen[frame] = why if frame not in seen else f"{seen[frame]}; {why}"
    return sorted(seen.items())


def _worst_realism(report: dict) -> list[tuple[int, str]]:
    """The frames issue 26 asks the page to show: the worst for eyes, mouth, each region's colour and texture."""
    per = report["per_frame"]
    picks: list[tuple[int, str]] = []
    for key, what in (("eyes", "eye openness (blink lost or added)"), ("mouth", "mouth openness")):
        gaps = [(abs(f[f"{key}_output"] - f[f"{key}_reference"]), f["frame"]) for f in per
                if f[f"{key}_output"] is not None and f[f"{key}_reference"] is not None]
        if gaps and max(gaps)[0] > 0:
            picks.append((max(gaps)[1], f"worst {what}"))
    for name in regions.REGIONS:               # the parts against the face's own skin, where light cancels
        key, what = ((f"{name}_vs_skin_output", f"worst {name} colour against the skin") if name in regions.PARTS
                     else (f"{name}_to_src_output", f"worst {name} colour"))
        values = [(f[key], f["frame"]) for f in per if f.get(key) is not None]
        if values:
            picks.append((max(values)[1], what))
    bounds = (report.get("texture") or {}).get("src_range")
    off = [(d, f["frame"]) for f in per if (d := texture.distance_from_range(f["texture_output"], bounds))]
    if off:
        picks.append((max(off)[1], "worst texture (furthest outside the src person's range)"))
    return picks


def _thumb(frame: np.ndarray, height: int = 256) -> bytes:
    scale = height / frame.shape[0]
    small = cv2.resize(frame, (max(1, int(frame.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes()


#: Per-frame figures under each sample, and how the caption names them.
CAPTION = (("identity_to_src", "dlib to src"), ("identity_to_dst", "to dst"),
           ("held_apart_to_src", "FaceNet to src"), ("held_apart_to_dst", "to dst"),
           ("expression", "expression"), ("sharpness", "sharpness"), ("fringing", "fringing"),
           ("tone_delta_e", "tone dE"), ("surround_neck_change", "face-neck dE change"),
           ("eyes_reference", "eyes original"), ("eyes_output", "output"),
           ("mouth_reference", "mouth original"), ("mouth_output", "output"), ("texture_output", "texture"))


def _eyes(frame: np.ndarray, box: list[int], height: int = 256) -> bytes:
    """Brows to nose tip of the face box at full resolution, enlarged by whole pixels (no smoothing),
    so softness and colour fringes show as they are."""
    x0, y0, x1, y1 = box
    h, w = frame.shape[:2]
    top, bottom = y0 + (y1 - y0) // 8, y0 + (y1 - y0) * 5 // 8
    region = frame[max(top, 0):min(bottom, h), max(x0, 0):min(x1, w)]
    if region.size == 0:
        return b""
    factor = max(1, height // max(region.shape[0], 1))
    big = cv2.resize(region, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def _samples(video: Path, reference: Path, info_out: VideoInfo, info_ref: VideoInfo, report: dict,
             count: int) -> list[dict]:
    """Second pass: decode again and keep only the frames the page shows."""
    wanted = dict(_pick_samples(report, count))
    if not wanted:
        return []
    per = {f["frame"]: f for f in report["per_frame"]}
    out = []
    for (i, ref), (_, res) in zip(FrameReader(reference, info_ref.width, info_ref.height),
                                  FrameReader(video, info_out.width, info_out.height)):
        if i in wanted:
            f = per[i]
            if (info_out.width, info_out.height) != (info_ref.width, info_ref.height):
                res = cv2.resize(res, (info_ref.width, info_ref.height), interpolation=cv2.INTER_AREA)
            caption = " ".join(f"{label} {f[k]:.3f}" for k, label in CAPTION if f.get(k) is not None)
            sample = {"frame": i, "why": wanted[i], "reference_jpg": _thumb(ref), "output_jpg": _thumb(res),
                      "caption": caption or "no face matched"}
            if f.get("face_box"):
                sample["reference_face_jpg"] = _eyes(ref, f["face_box"])
                sample["output_face_jpg"] = _eyes(res, f["face_box"])
            out.append(sample)
        if i >= max(wanted):
            break
    return out
