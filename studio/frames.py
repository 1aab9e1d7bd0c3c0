"""Whole frames for the studio: a face's source frame with every face of it drawn, and the convert preview.

The source frame shows where a face came from (and which other faces share its frame), so
the artist can judge a bad detection or a swapped identity at a glance. The convert preview
is rendered by convert's own ``--preview`` code with the page's settings, so what the page
shows is what ``convert`` will write with the same options.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from convert.options import ConvertOptions
from convert.renderer import Renderer, before_after
from pipeline.core.errors import UserError
from pipeline.core.images import ImageReadError, encode, read_rgb
from pipeline.core.options import Spec, check, describe_default, flag_of
from pipeline.core.registry import Registry
from pipeline.core.video import frame_at
from pipeline.faces.people import parse_person
from pipeline.workspace.records import SETS, DropReason, FaceRow, SetMeta
from pipeline.workspace.store import Workspace, source_photo

#: Colours (RGB) of the drawing: the asked face, the other faces of its frame, faces deleted or dropped
HIGHLIGHT = (0, 255, 0)
OTHER = (255, 150, 0)
DROPPED = (150, 150, 150)

#: The convert options the studio's preview may change; the rest (output, range, device...) stay the page's own
PREVIEW_SETTINGS = ("smooth", "color", "blend", "mask", "mask_erode", "mask_blur", "detail", "detail_gate",
                    "sharpen_new", "chroma_smooth", "sharpen", "blink", "part_colour", "skin_tone", "poisson_reach",
                    "grain_match", "low_light", "enhance", "precision")


# ---------------------------------------------------------------------- source frames


def source_frame(root: Path, set_name: str, face_id: int) -> bytes:
    """A JPEG of the frame (or photo) a face was found in, with every face of it drawn and this one highlighted.

    Deleted or dropped faces are drawn too, dashed and (unless asked for) dim, so the artist
    sees what the index holds for the frame, not only what is still used.
    """
    if set_name not in SETS:
        raise UserError(f"unknown face set '{set_name}' (dst or src)")
    with Workspace(root) as ws:
        row = ws.face(set_name, face_id)
        meta = ws.set_meta(set_name)
        if row is None or meta is None:
            raise UserError(f"no face {face_id} in set {set_name} of {ws.root}")
        faces = list(ws.frame_faces(set_name, row.source, row.frame_index).values())
        dropped = {f.id for f in faces if f.id is not None and _dropped_now(ws, f)}
    image = _source_image(meta, row, set_name)
    draw_faces(image, faces, face_id, dropped)
    return encode(image, ".jpg")


def _dropped_now(ws: Workspace, row: FaceRow) -> bool:
    """Dropped as the artist's files say now (an aligned file deleted or put back counts before any scan)."""
    live = ws.aligned_path(row).exists()
    if row.dropped:
        return not (row.drop_reason == DropReason.DELETED and live)
    return not live


def _source_image(meta: SetMeta, row: FaceRow, set_name: str) -> np.ndarray:
    """The face's frame as extract saw it (RGB, writable); UserError naming the file when it is gone or changed."""
    if meta.kind == "video":
        video = Path(meta.input)
        if not video.is_file():
            raise UserError(f"{set_name} video {video} is not there any more (moved or deleted since extract); "
                            f"put it back there to see its frames")
        frame = frame_at(video, row.frame_index)
        recorded = meta.video or {}
        size = (recorded.get("width"), recorded.get("height"))
        if size != (None, None) and size != (frame.shape[1], frame.shape[0]):
            raise UserError(f"{set_name} video {video} is {frame.shape[1]}x{frame.shape[0]} but extract saw "
                            f"{size[0]}x{size[1]}: it is not the file the faces came from; put the original back")
        return frame
    photo = source_photo(meta, row.source, f"{set_name} face {row.id}, source")
    if not photo.is_file():
        raise UserError(f"{set_name} photo {photo} is not there any more (moved or deleted since extract); "
                        f"put it back in {meta.input} to see it")
    try:
        return read_rgb(photo)
    except ImageReadError as exc:
        raise UserError(f"{exc}; put the original photo back") from exc


def line_width(image: np.ndarray) -> int:
    """Pixels per line: 2 on a 512 px frame, growing with the frame so boxes stay visible on 4K."""
    return max(2, round(max(image.shape[:2]) / 320))


def draw_faces(image: np.ndarray, faces: list[FaceRow], asked: int | None,
               dropped: Collection[int] = frozenset()) -> None:
    """Draw each face's box, 68 landmarks and frame:face label on ``image`` (RGB, in place).

    ``asked`` in HIGHLIGHT, the others in OTHER; ids in ``dropped`` with a dashed box, in
    DROPPED unless asked for.
    """
    width = line_width(image)
    for row in sorted(faces, key=lambda f: f.id == asked):        # the asked face last, on top
        gone = row.id in dropped
        colour = HIGHLIGHT if row.id == asked else (DROPPED if gone else OTHER)
        x0, y0, x1, y1 = (int(round(float(v))) for v in row.bbox)
        if gone:
            _dashed_rect(image, (x0, y0), (x1, y1), colour, width)
        else:
            cv2.rectangle(image, (x0, y0), (x1, y1), colour, width, cv2.LINE_AA)
        for x, y in np.asarray(row.landmarks, dtype=np.float64):
            cv2.circle(image, (int(round(x)), int(round(y))), width, colour, -1, cv2.LINE_AA)
        _label(image, f"{row.frame_index}:{row.face_index}", (x0, y0), colour, width)


def _dashed_rect(image: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], colour: tuple[int, int, int],
                 width: int) -> None:
    (x0, y0), (x1, y1) = p0, p1
    dash, gap = 3 * width, 4 * width               # the round ends of a dash take about one width of the gap
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        for start in np.arange(0, length, dash + gap):
            t0, t1 = start / max(length, 1), min(start + dash, length) / max(length, 1)
            q0 = (int(round(a[0] + (b[0] - a[0]) * t0)), int(round(a[1] + (b[1] - a[1]) * t0)))
            q1 = (int(round(a[0] + (b[0] - a[0]) * t1)), int(round(a[1] + (b[1] - a[1]) * t1)))
            cv2.line(image, q0, q1, colour, width, cv2.LINE_AA)


def _label(image: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int], width: int) -> None:
    """``text`` in black on a tab of ``colour`` above the box's top-left corner (inside the box at the frame's top)."""
    scale, thick = 0.35 * width, max(1, width // 2)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = width
    x = min(max(corner[0], 0), max(image.shape[1] - tw - 2 * pad, 0))
    top = corner[1] - th - base - 2 * pad
    if top < 0:
        top = max(corner[1], 0)
    cv2.rectangle(image, (x, top), (x + tw + 2 * pad, top + th + base + 2 * pad), colour, -1)
    cv2.putText(image, text, (x + pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                cv2.LINE_AA)


# ---------------------------------------------------------------------- convert preview


def _preview_fields() -> dict[str, tuple[dataclasses.Field, Spec, Any]]:
    hints = typing.get_type_hints(ConvertOptions)
    fields = {f.name: f for f in dataclasses.fields(ConvertOptions)}

    def value_type(hint: Any) -> Any:            # float | None (unset: the model type's default) -> float
        return next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    return {name: (fields[name], fields[name].metadata["option"], value_type(hints[name])) for name in PREVIEW_SETTINGS}


def convert_settings() -> list[dict[str, Any]]:
    """The preview's settings (name, type, default, choices or range, help), for the page to build its form from.

    Read from ConvertOptions, so the form offers exactly what ``convert`` accepts.
    """
    out = []
    for name, (f, spec, tp) in _preview_fields().items():
        item: dict[str, Any] = {"name": name, "flag": flag_of(f, spec), "default": f.default,
                                "help": spec.help}
        if spec.choices is not None:
            item["type"] = "choice"
            if isinstance(spec.choices, Registry):
                item["choices"] = spec.choices.names()
                item["choice_help"] = {e.name: e.description for e in spec.choices}
            else:
                item["choices"] = list(spec.choices)
        else:
            item["type"] = tp.__name__
            item["low"], item["high"] = spec.low, spec.high
        default_text = describe_default(f, spec)
        if default_text is not None:
            item["default_text"] = default_text
        out.append(item)
    return out


def parse_settings(settings: dict[str, str]) -> dict[str, Any]:
    """The page's settings (strings from the query) as ConvertOptions values; UserError for an unknown or bad one.

    Ranges and choices are checked by convert's own ``check``, with the CLI's words.
    """
    fields = _preview_fields()
    values: dict[str, Any] = {}
    for name, text in settings.items():
        if name not in fields:
            raise UserError(f"unknown convert setting '{name}'; use one of {', '.join(PREVIEW_SETTINGS)}")
        f, spec, tp = fields[name]
        text = str(text).strip()
        if not text and f.default is None:
            continue                            # left empty: the default that depends on the model
        try:
            value = tp(text)
        except ValueError:
            kind = "a whole number" if tp is int else "a number"
            raise UserError(f"convert setting {name}={text!r} is not {kind}; {_what_to_use(f, spec)}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"convert setting {name}={text!r} is not a finite number; {_what_to_use(f, spec)}")
        values[name] = value
    check(ConvertOptions(**values))
    return values


def _what_to_use(f: dataclasses.Field, spec: Spec) -> str:
    """'use 0 to 128 (default 8)', as check words a range."""
    if spec.low is not None and spec.high is not None:
        span = f"{spec.low:g} to {spec.high:g}"
    elif spec.low is not None or spec.high is not None:
        span = f"{spec.low:g} or more" if spec.low is not None else f"up to {spec.high:g}"
    else:
        span = "a number"
    return f"use {span} (default {describe_default(f, spec)})"


#: One renderer per workspace (its model loaded, its faces planned), kept while its load options and the
#: workspace's index, model and face files stay as they were; the lock makes one preview at a time use it.
_RENDERERS: dict[str, Renderer] = {}
_RENDER_LOCK = threading.Lock()


def _renderer(opts: ConvertOptions) -> Renderer:
    key = str(Path(opts.workspace).resolve())
    found = _RENDERERS.get(key)
    if found is None or not found.serves(opts):
        _RENDERERS.pop(key, None)
        found = Renderer(opts)
        _RENDERERS[key] = found
    return found


def convert_preview(root: Path, frame: int, settings: dict[str, str], person: str | None = None) -> bytes:
    """A JPEG of dst frame ``frame`` before|after, rendered by convert's renderer with the model and ``settings``.

    ``person`` is ``convert --person``: a number as the studio's row of people (and ``info``)
    lists them, ``all``, or None for convert's default (person 1), so the person picked on the
    page is the one swapped here, and the others pass through as ``convert`` leaves them.
    The renderer is kept between calls, so a preview of another frame, or with other settings,
    costs one seek and one network pass (the first loads the model and plans every face).
    UserError as convert words it (no faces to preview there, a missing model, a moved video...).
    """
    values = parse_settings(settings)
    if person is not None and not person.strip():
        person = None
    parse_person(person)
    opts = ConvertOptions(workspace=Path(root), start=frame, end=frame + 1, preview=1, person=person, **values)
    with _RENDER_LOCK:
        renderer = _renderer(opts)
        full = renderer.options(opts)
        plans, excluded, _ = renderer.plan(full)
        if frame not in plans:
            if excluded.get(frame) == "other_person":
                whom = "person 1" if person is None else f"person {person}"
                raise UserError(f"frame {frame} shows only other people than {whom}, whom the preview swaps; pick "
                                f"the person whose face is there, or a frame where {whom} is")
            raise UserError(f"no faces to preview between frames {frame} and {frame + 1}")
        before = frame_at(renderer.input_path, frame)
        after = renderer.render(frame, full, before)
    return encode(before_after(before, after), ".jpg")
