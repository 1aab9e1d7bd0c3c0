"""The studio's whole frames: a face's source frame with its faces drawn, and the convert preview."""
import dataclasses
import json

import cv2
import numpy as np
import pytest

from convert.options import ConvertOptions
from convert.runner import before_after, run_convert
from pipeline.core.errors import UserError
from pipeline.core.images import encode, read_rgb
from pipeline.core.video import frames_at
from pipeline.workspace.store import Workspace
from studio import frames
from studio.faces import delete_faces
from studio.frames import (
    DROPPED,
    HIGHLIGHT,
    OTHER,
    PREVIEW_SETTINGS,
    convert_preview,
    convert_settings,
    draw_faces,
    parse_settings,
    source_frame,
)
from tests.conftest import CLIP6, PHOTOS


def _decode(data: bytes) -> np.ndarray:
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _rows(root, set_name):
    with Workspace(root) as ws:
        return ws.faces(set_name)


def _green(image: np.ndarray) -> np.ndarray:
    """Where an RGB image is (JPEG-blurred) HIGHLIGHT green."""
    im = image.astype(int)
    return (im[..., 1] > 150) & (im[..., 1] - im[..., 0] > 60) & (im[..., 1] - im[..., 2] > 60)


def _near(green: np.ndarray, x: float, y: float, r: int = 2) -> bool:
    x, y = int(round(x)), int(round(y))
    return bool(green[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1].any())


def _box_points(bbox, n: int = 8):
    x0, y0, x1, y1 = bbox
    for t in np.linspace(0.1, 0.9, n):
        yield from ((x0 + t * (x1 - x0), y0), (x0 + t * (x1 - x0), y1), (x0, y0 + t * (y1 - y0)),
                    (x1, y0 + t * (y1 - y0)))


def _set_input(root, set_name, path) -> None:
    meta_file = root / "workspace.json"
    meta = json.loads(meta_file.read_text())
    meta["sets"][set_name]["input"] = str(path)
    meta_file.write_text(json.dumps(meta, indent=2))


# ---------------------------------------------------------------------- source frames


def test_source_frame_of_a_dst_face_is_its_video_frame_with_the_face_drawn(small_ws):
    row = _rows(small_ws, "dst")[3]
    image = _decode(source_frame(small_ws, "dst", row.id))
    plain = frames_at(CLIP6, {row.frame_index})[row.frame_index]
    assert image.shape == plain.shape
    green = _green(image)
    assert all(_near(green, x, y) for x, y in row.landmarks)
    assert all(_near(green, x, y) for x, y in _box_points(row.bbox))
    assert not _green(plain).any()
    # elsewhere the frame is untouched: the same as the plain frame through the same JPEG coder
    near = np.zeros(plain.shape[:2], np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in row.bbox)
    cv2.rectangle(near, (x0, y0), (x1, y1), 255, 1)
    cv2.rectangle(near, (x0, max(y0 - 40, 0)), (x0 + 80, y0), 255, -1)          # the frame:face label
    for x, y in row.landmarks:
        cv2.circle(near, (int(round(x)), int(round(y))), 1, 255, -1)
    near = cv2.dilate(near, np.ones((49, 49), np.uint8)) > 0                   # 24 px: JPEG blocks and ringing
    assert (~near).mean() > 0.3
    diff = np.abs(image.astype(int) - _decode(encode(plain, ".jpg")).astype(int)).max(axis=2)
    assert diff[~near].max() <= 2
    assert diff[near].max() > 100


def test_source_frame_of_a_src_face_is_its_photo(small_ws):
    rows = _rows(small_ws, "src")
    row = next(r for r in rows if r.source == "obama2.jpg")
    image = _decode(source_frame(small_ws, "src", row.id))
    assert image.shape == read_rgb(PHOTOS / "obama2.jpg").shape
    green = _green(image)
    assert all(_near(green, x, y, r=3) for x, y in row.landmarks)


def test_a_deleted_face_is_still_drawn_dashed(small_ws):
    row = _rows(small_ws, "dst")[2]
    assert delete_faces(small_ws, "dst", [row.id]) == 1
    image = _decode(source_frame(small_ws, "dst", row.id))
    green = _green(image)
    assert all(_near(green, x, y) for x, y in row.landmarks)
    x0, y0, x1, y1 = row.bbox
    along = [_near(green, x, y1, r=0) for x in np.arange(x0 + 10, x1 - 10)]     # the bottom edge: dashes and gaps
    assert 0.3 < np.mean(along) < 0.8, np.mean(along)


def test_other_faces_of_the_frame_in_their_own_colour(small_ws):
    asked, other = _rows(small_ws, "dst")[:2]
    # a second, smaller face in the corner, clear of the first one's box
    other = dataclasses.replace(other, landmarks=other.landmarks * 0.3, bbox=other.bbox * 0.3)
    assert other.bbox[2] < asked.bbox[0] - 5
    for dropped, colour in ((set(), OTHER), ({other.id}, DROPPED)):
        image = np.zeros((512, 512, 3), np.uint8)
        draw_faces(image, [asked, other], asked.id, dropped)
        assert all(tuple(image[int(round(y)), int(round(x))]) == HIGHLIGHT for x, y in asked.landmarks)
        assert all(tuple(image[int(round(y)), int(round(x))]) == colour for x, y in other.landmarks)
        bottom = int(round(other.bbox[3]))
        edge = [tuple(image[bottom, x]) == colour for x in range(int(other.bbox[0]) + 5, int(other.bbox[2]) - 5)]
        assert (np.mean(edge) > 0.95) == (not dropped), np.mean(edge)   # dashed when dropped
        assert np.mean(edge) > 0.3


def test_a_moved_video_or_photo_is_named(small_ws, tmp_path):
    dst, src = _rows(small_ws, "dst")[0], _rows(small_ws, "src")[0]
    gone = tmp_path / "moved" / "clip.mp4"
    _set_input(small_ws, "dst", gone)
    with pytest.raises(UserError, match=rf"dst video {gone} is not there any more.*put it back"):
        source_frame(small_ws, "dst", dst.id)
    _set_input(small_ws, "src", tmp_path / "moved_photos")
    with pytest.raises(UserError, match=rf"src photo {tmp_path / 'moved_photos' / src.source} is not there"):
        source_frame(small_ws, "src", src.id)
    with pytest.raises(UserError, match="no face 999 in set dst"):
        source_frame(small_ws, "dst", 999)
    with pytest.raises(UserError, match="unknown face set 'both'"):
        source_frame(small_ws, "both", dst.id)


# ---------------------------------------------------------------------- convert preview


def test_convert_preview_is_convert_preview_side_by_side(small_ws):
    frame, settings = 2, {"color": "none", "mask_blur": "4", "sharpen": "0.5"}
    image = _decode(convert_preview(small_ws, frame, settings))
    plain = frames_at(CLIP6, {frame})[frame]
    h, w = plain.shape[:2]
    assert image.shape == (h, 2 * w, 3)
    stills: dict = {}
    run_convert(ConvertOptions(workspace=small_ws, start=frame, end=frame + 1, preview=1, color="none",
                               mask_blur=4, sharpen=0.5), stills)
    assert list(stills) == [frame]
    left, right = image[:, :w].astype(int), image[:, w:].astype(int)
    assert np.abs(left - plain).mean() < 2 and np.abs(left - plain).max() < 40
    assert np.abs(right - stills[frame]).mean() < 2 and np.abs(right - stills[frame]).max() < 40
    # the same pixels through the same JPEG coder: nothing but convert's own rendering in it
    same = _decode(encode(before_after(plain, stills[frame]), ".jpg")).astype(int)
    assert np.abs(image.astype(int) - same).max() <= 2
    assert np.abs(stills[frame].astype(int) - plain).mean() > 0.2         # the face was converted
    defaults: dict = {}
    run_convert(ConvertOptions(workspace=small_ws, start=frame, end=frame + 1, preview=1), defaults)
    assert np.abs(right - defaults[frame]).max() > 10                     # the settings were used
    assert not (small_ws / "preview").exists()                            # nothing written


@pytest.mark.parametrize("settings, message", [
    ({"blend": "nope"}, "unknown blend mode 'nope'"),
    ({"mask_blur": "-5"}, r"--mask-blur -5 is out of range; use 0 to 128"),
    ({"mask_blur": "2.5"}, r"mask_blur='2.5' is not a whole number; use 0 to 128 \(default 8\)"),
    ({"detail": "nan"}, "detail='nan' is not a finite number"),
    ({"output": "/tmp/x.mp4"}, "unknown convert setting 'output'; use one of smooth, color"),
])
def test_bad_preview_settings(small_ws, settings, message):
    with pytest.raises(UserError, match=message):
        convert_preview(small_ws, 0, settings)


def test_preview_of_a_frame_whose_face_is_deleted(small_ws):
    row = _rows(small_ws, "dst")[4]
    delete_faces(small_ws, "dst", [row.id])
    with pytest.raises(UserError, match=f"no faces to preview between frames {row.frame_index} and "):
        convert_preview(small_ws, row.frame_index, {})


def test_convert_settings_describe_the_form():
    settings = {s["name"]: s for s in convert_settings()}
    assert list(settings) == list(PREVIEW_SETTINGS)
    assert settings["mask_blur"] | {"help": ""} == {"name": "mask_blur", "flag": "--mask-blur", "default": 8,
                                                     "type": "int", "low": 0, "high": 128, "default_text": "8",
                                                     "help": ""}
    assert settings["blend"]["type"] == "choice" and settings["blend"]["choices"] == ["poisson", "alpha"]
    assert set(settings["color"]["choice_help"]) == set(settings["color"]["choices"])
    assert settings["precision"]["choices"] == ["auto", "float", "int8"]
    assert all(s["help"] for s in settings.values())
    assert settings["mask"]["choices"] == ["workspace", "learned", "both"]
    assert settings["mask"]["default"] == "workspace"
    # the realism steps an artist tunes per shot are offered too (part colour: the model type's default)
    assert {"blink", "part_colour", "skin_tone", "poisson_reach", "grain_match", "low_light",
            "enhance"} <= set(settings)
    assert settings["part_colour"]["default"] is None and "transform" in settings["part_colour"]["default_text"]
    assert settings["low_light"]["default"] == 140.0
    # unset by default: the model type's own (8 for transform, 0 for the autoencoders); the page leaves it empty
    assert settings["chroma_smooth"]["default"] is None and settings["chroma_smooth"]["type"] == "float"
    assert "8 for transform, 0 for df and liae" in settings["chroma_smooth"]["default_text"]
    assert parse_settings({"chroma_smooth": ""}) == {}
    assert parse_settings({"chroma_smooth": "3"}) == {"chroma_smooth": 3.0}
    # every default, as the page sends it back (an unset one as an empty field), is accepted
    defaults = {name: "" if s["default"] is None else str(s["default"]) for name, s in settings.items()}
    assert parse_settings(defaults) == {name: s["default"] for name, s in settings.items() if s["default"] is not None}


def _calls(monkeypatch, cls, name: str) -> list:
    """The arguments of every call of ``cls.name`` from now on (the method still runs)."""
    calls: list = []
    original = getattr(cls, name)

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(cls, name, counting)
    return calls


def test_a_second_preview_reuses_the_loaded_model(small_ws, monkeypatch):
    """The studio keeps convert's Renderer: another frame (or other settings) loads no model again."""
    from convert.network import Network
    loads = _calls(monkeypatch, Network, "__init__")
    prepared = _calls(monkeypatch, Network, "prepare")
    frames._RENDERERS.clear()
    first = convert_preview(small_ws, 1, {})
    second = convert_preview(small_ws, 3, {"sharpen": "0.5"})
    assert len(loads) == 1
    assert first != second
    assert len(prepared) == 1                  # the int8 net was built once
    # not timed: the first preview (0.23-0.38 s here, 2026-12-06) and the second (0.12-0.16 s) are too close for a
    # ratio to hold on a busy machine (3x failed in some runs once the src colours were read beside the model);
    # the counts are what "reuses" means
    # the same frame through run_convert: the kept renderer renders what convert renders
    stills: dict = {}
    run_convert(ConvertOptions(workspace=small_ws, start=3, end=4, preview=1, sharpen=0.5), stills)
    right = _decode(second)[:, stills[3].shape[1]:].astype(int)
    assert np.abs(right - stills[3]).mean() < 2
    # an edit of the workspace (a face deleted) makes a new renderer, and the preview follows it
    row = _rows(small_ws, "dst")[3]
    delete_faces(small_ws, "dst", [row.id])
    before = len(loads)                       # run_convert above loaded its own
    with pytest.raises(UserError, match="no faces to preview"):
        convert_preview(small_ws, 3, {})
    assert len(loads) == before + 1
