"""The studio's mask editor, carry-forward, predictions and convert preview, over HTTP and in Chromium.

The workspace is the first 24 frames of a real clip at 128 px (one track of 24 faces) with
a tiny untrained model, so convert and the preview run in seconds.
"""
import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
import pytest

from info.summary import InfoOptions, run_info
from pipeline.core.images import encode, read_gray
from pipeline.workspace.store import Workspace
from studio.masks import _flow_refine
from studio.options import StudioOptions
from studio.server import start
from tests.conftest import copy_workspace, write_tiny_model
from tests.test_studio import chromium

SHOTS = os.environ.get("STUDIO_SCREENSHOTS")   # a folder: the browser tests leave their screenshots there


@pytest.fixture(scope="module")
def track_template(tmp_path_factory, short_clip) -> Path:
    from extract.options import ExtractOptions
    from extract.runner import run_extract
    ws = tmp_path_factory.mktemp("studio_track") / "ws"
    run_extract(ExtractOptions(input=short_clip, workspace=ws, size=128))
    write_tiny_model(ws / "model")
    return ws


@pytest.fixture
def studio(track_template, tmp_path):
    ws = copy_workspace(track_template, tmp_path, "ws")
    server, _ = start(StudioOptions(workspace=ws, port=0))
    yield ws, f"http://127.0.0.1:{server.server_address[1]}", server.token
    server.shutdown()
    server.server_close()


def _call(url, body=None):
    """GET, or POST ``body`` as JSON with the address's token in the header a change needs."""
    data = None if body is None else json.dumps(body).encode()
    token = parse_qs(urlparse(url).query).get("token", [""])[0]
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json", "X-Studio-Token": token})
    with urllib.request.urlopen(req, timeout=120) as res:
        raw = res.read()
        return (json.loads(raw) if res.headers["Content-Type"].startswith("application/json") else raw), res.headers


def _refused(url, body=None):
    with pytest.raises(urllib.error.HTTPError) as err:
        _call(url, body)
    return err.value.code, json.loads(err.value.read())


def _png(mask):
    return "data:image/png;base64," + base64.b64encode(encode(mask, ".png", rgb=False)).decode()


def _faces(base, token):
    return _call(f"{base}/api/faces?set=dst&sort=frame&token={token}")[0]["faces"]


def _mask_file(ws, face_id) -> Path:
    with Workspace(ws) as w:
        return w.mask_path(w.face("dst", face_id))


def _info(ws):
    return run_info(InfoOptions(workspace=ws))["sets"]["dst"]


def _moved_directly(mask, old, new, size):
    """The test's own warp: the mask's crop back to the frame (inverse of ``old``), then into ``new``."""
    a = np.vstack([np.asarray(new, float), [0, 0, 1]]) @ np.linalg.inv(np.vstack([np.asarray(old, float), [0, 0, 1]]))
    return cv2.warpAffine(mask, a[:2], (size, size), flags=cv2.INTER_LINEAR)


def _iou(a, b):
    a, b = a >= 128, b >= 128
    return (a & b).sum() / max(1, (a | b).sum())


# ---------------------------------------------------------------------- saving, guarded


def test_a_save_makes_the_face_hand_and_a_stale_save_is_refused(studio):
    ws, base, token = studio
    face = _faces(base, token)[5]
    state = _call(f"{base}/api/face?set=dst&id={face['id']}&token={token}")[0]
    assert state["size"] == 128 and state["mask_origin"] == "hull" and state["later_in_track"] == 18
    png, headers = _call(f"{base}/mask/dst/{face['id']}.png?token={token}")
    opened = headers["X-Mask-Version"]
    before = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(before, read_gray(_mask_file(ws, face["id"])))
    mine = before.copy()
    mine[60:100, 30:70] = 0                                   # a microphone painted out
    done = _call(f"{base}/api/mask?token={token}",
                 {"set": "dst", "id": face["id"], "base": opened, "png": _png(mine)})[0]
    assert done["saved"] == 1 and done["recorded"] is True
    assert np.array_equal(read_gray(_mask_file(ws, face["id"])), mine)
    assert _info(ws)["masks"]["hand"] == 1
    # a second tab, opened before that save, saves its own edit: refused, and it gets both versions
    theirs = before.copy()
    theirs[0:20] = 0
    code, body = _refused(f"{base}/api/mask?token={token}",
                          {"set": "dst", "id": face["id"], "base": opened, "png": _png(theirs)})
    assert code == 409 and "saved elsewhere" in body["error"] and body["current"] == done["versions"][str(face["id"])]
    shown = cv2.imdecode(np.frombuffer(base64.b64decode(body["theirs"].split(",")[1]), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(shown, mine) and np.array_equal(read_gray(_mask_file(ws, face["id"])), mine)
    # the artist saw both and chose theirs: saved against the version now on disk
    _call(f"{base}/api/mask?token={token}", {"set": "dst", "id": face["id"], "base": body["current"],
                                            "png": _png(theirs)})
    assert np.array_equal(read_gray(_mask_file(ws, face["id"])), theirs)


def test_bad_masks_are_refused_and_change_nothing(studio):
    ws, base, token = studio
    face = _faces(base, token)[0]
    path = _mask_file(ws, face["id"])
    before = path.read_bytes()
    version = _call(f"{base}/mask/dst/{face['id']}.png?token={token}")[1]["X-Mask-Version"]
    for body, needle in (
            ({"id": face["id"], "base": version, "png": _png(np.zeros((64, 64), np.uint8))}, "does not fit"),
            ({"id": face["id"], "base": version, "png": "data:image/png;base64,bm90IGEgcG5n"}, "not a readable PNG"),
            ({"id": face["id"], "base": version, "png": "%%%"}, "not base64"),
            ({"id": 999999, "base": version, "png": _png(np.zeros((128, 128), np.uint8))}, "no face 999999"),
            ({"set": "both", "id": face["id"], "base": version, "png": _png(np.zeros((128, 128), np.uint8))},
             "unknown face set")):
        code, err = _refused(f"{base}/api/mask?token={token}", {"set": "dst", **body})
        assert code == 400 and needle in err["error"], err
    code, err = _refused(f"{base}/api/carry?token={token}", {"set": "dst", "id": face["id"], "count": 0})
    assert code == 400 and "carry forward over 1 to" in err["error"]
    code, err = _refused(f"{base}/api/carry?token={token}", {"set": "dst", "id": face["id"], "anchor": "moon"})
    assert code == 400 and "the frame or the face" in err["error"]
    assert path.read_bytes() == before and _info(ws)["masks"].get("hand", 0) == 0


# ---------------------------------------------------------------------- carry forward


def test_carry_forward_moves_the_mask_with_the_stored_transforms(studio):
    ws, base, token = studio
    faces = _faces(base, token)
    first = faces[0]
    mask = read_gray(_mask_file(ws, first["id"]))
    mask[70:110, 20:60] = 0
    proposals = _call(f"{base}/api/carry?token={token}", {"set": "dst", "id": first["id"], "count": 10,
                                                          "png": _png(mask)})[0]["proposals"]
    assert [p["frame"] for p in proposals] == list(range(1, 11))
    with Workspace(ws) as w:
        rows = {r.id: r for r in w.faces("dst")}
    for p in proposals:
        got = cv2.imdecode(np.frombuffer(base64.b64decode(p["png"].split(",")[1]), np.uint8), cv2.IMREAD_GRAYSCALE)
        want = _moved_directly(mask, rows[first["id"]].transform, rows[p["id"]].transform, 128)
        assert np.abs(got.astype(int) - want).max() <= 1, p["frame"]
    assert _info(ws)["masks"].get("hand", 0) == 0                    # proposals write nothing
    on_face = _call(f"{base}/api/carry?token={token}", {"set": "dst", "id": first["id"], "count": 2,
                                                        "anchor": "face", "png": _png(mask)})[0]["proposals"]
    for p in on_face:                                                  # following the face: its place in the crop
        assert np.array_equal(cv2.imdecode(np.frombuffer(base64.b64decode(p["png"].split(",")[1]), np.uint8), 0), mask)
    flowed = _call(f"{base}/api/carry?token={token}", {"set": "dst", "id": first["id"], "count": 3, "flow": True,
                                                       "png": _png(mask)})[0]["proposals"]
    for p, q in zip(flowed, proposals):                                # a steady face: flow changes little
        a, b = (cv2.imdecode(np.frombuffer(base64.b64decode(x["png"].split(",")[1]), np.uint8), 0) for x in (p, q))
        assert _iou(a, b) > 0.9


def test_optical_flow_follows_what_the_transforms_missed(track_template):
    ws = track_template
    with Workspace(ws) as w:
        row = w.faces("dst")[0]
        from pipeline.core.images import read_rgb
        face = read_rgb(w.aligned_path(row))
        mask = read_gray(w.mask_path(row))
    mask = mask.copy()
    mask[70:110, 20:60] = 0
    shift = np.float32([[1, 0, 5], [0, 1, 3]])                    # the face moved 5, 3 px; the transform did not
    moved_face = cv2.warpAffine(face, shift, (128, 128), borderMode=cv2.BORDER_REPLICATE)
    truth = cv2.warpAffine(mask, shift, (128, 128), borderMode=cv2.BORDER_REPLICATE)
    refined = _flow_refine(mask, face, moved_face)
    assert _iou(refined, truth) > 0.95 and _iou(refined, truth) > _iou(mask, truth) + 0.03


# ---------------------------------------------------------------------- delete / restore, then convert


def test_deleted_faces_pass_through_convert_and_restored_ones_are_swapped(studio, tmp_path):
    from convert.options import ConvertOptions
    from convert.runner import run_convert
    ws, base, token = studio
    faces = _faces(base, token)
    doomed = [f["id"] for f in faces[2:5]]
    assert _call(f"{base}/api/delete?token={token}", {"set": "dst", "ids": doomed})[0] == {"moved": 3}
    assert _call(f"{base}/api/restore?token={token}", {"set": "dst", "ids": doomed[1:2]})[0] == {"moved": 1}
    info = _info(ws)
    assert info["faces"] == 22 and info["dropped_by_reason"] == {"deleted": 2}
    summary = run_convert(ConvertOptions(workspace=ws, output=tmp_path / "out.mp4", precision="float", detail=0,
                                         color="none", blend="alpha"))   # the untrained face, as it is
    assert summary.frames == 24 and summary.faces == 22 and dict(summary.passed) == {"deleted": 2}
    from pipeline.core.video import FrameReader, probe
    src, out = probe(Path(_dst_input(ws))), tmp_path / "out.mp4"
    plain = dict(FrameReader(Path(_dst_input(ws)), src.width, src.height))
    result = dict(FrameReader(out, src.width, src.height))
    with Workspace(ws) as w:
        boxes = {r.frame_index: r.bbox.astype(int) for r in w.faces("dst")}

    def in_face(i):          # mean change inside the face box over the change in the rest (encoding noise)
        x0, y0, x1, y1 = boxes[i]
        d = np.abs(result[i].astype(int) - plain[i]).mean(axis=2)
        inside = np.zeros(d.shape, bool)
        inside[max(0, y0):y1, max(0, x0):x1] = True
        return d[inside].mean() / d[~inside].mean()

    ratio = {i: in_face(i) for i in (1, 2, 3, 4)}
    assert ratio[2] < 1.35 and ratio[4] < 1.35                # deleted: the frame as it was (encoding noise)
    assert min(ratio[1], ratio[3]) > max(ratio[2], ratio[4]) + 0.3   # swapped: the face changed


def _dst_input(ws) -> str:
    return json.loads((ws / "workspace.json").read_text())["sets"]["dst"]["input"]


# ---------------------------------------------------------------------- predictions, frames, preview


def test_prediction_of_the_mask_model(studio):
    import torch

    from pipeline.faces.backends.learned_mask import LearnedMasker
    from pipeline.models.segmenter import MASK_MODEL_DIR, SegmenterModel, SegmenterNet
    from pipeline.models.store import save_model
    ws, base, token = studio
    face = _faces(base, token)[0]
    code, err = _refused(f"{base}/api/predict?set=dst&id={face['id']}&token={token}")
    assert code == 400 and "masks train" in err["error"]
    torch.manual_seed(0)
    save_model(ws / MASK_MODEL_DIR, SegmenterModel(SegmenterNet(64, width=8)), {"face_type": "full", "iteration": 0})
    assert _call(f"{base}/api/face?set=dst&id={face['id']}&token={token}")[0]["can_predict"] is True
    png, _ = _call(f"{base}/api/predict?set=dst&id={face['id']}&token={token}")
    got = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    from pipeline.core.images import read_rgb
    with Workspace(ws) as w:
        aligned = read_rgb(w.aligned_path(w.face("dst", face["id"])))
    want = LearnedMasker(ws / MASK_MODEL_DIR, "cpu").masks([aligned])[0]
    assert got.shape == (128, 128) and np.array_equal(got, want)


def test_source_frame_and_convert_preview_over_http(studio):
    ws, base, token = studio
    face = _faces(base, token)[3]
    jpeg, _ = _call(f"{base}/frame/dst/{face['id']}.jpg?token={token}")
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    from pipeline.core.video import probe
    info = probe(Path(_dst_input(ws)))
    assert frame.shape == (info.height, info.width, 3)
    settings = _call(f"{base}/api/convert-settings?token={token}")[0]
    assert {"color", "blend", "mask_erode"} <= {s["name"] for s in settings}
    pair, _ = _call(f"{base}/preview/3.jpg?blend=alpha&precision=float&token={token}")
    both = cv2.imdecode(np.frombuffer(pair, np.uint8), cv2.IMREAD_COLOR)
    assert both.shape == (info.height, 2 * info.width, 3)
    code, err = _refused(f"{base}/preview/3.jpg?blend=nope&token={token}")
    assert code == 400 and "nope" in err["error"]


# ---------------------------------------------------------------------- in Chromium


def _shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name))


def _canvas_click(page, mx, my, zoom):
    page.locator("#ed-canvas").click(position={"x": mx * zoom + zoom / 2, "y": my * zoom + zoom / 2})


def test_the_editor_in_chromium_polygon_brush_undo_keys_and_carry(studio):
    ws, base, token = studio
    faces = _faces(base, token)
    first, third = faces[0], faces[3]
    hand = read_gray(_mask_file(ws, third["id"]))                      # the artist painted frame 3 earlier
    hand[:16] = 0
    cv2.imwrite(str(_mask_file(ws, third["id"])), hand)
    before = read_gray(_mask_file(ws, first["id"]))
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/?token={token}")
        page.wait_for_selector(".face")
        page.locator(".face").first.click()
        page.wait_for_function("document.getElementById('source-frame').naturalWidth > 0")
        _shot(page, "studio_faces.png")
        page.locator(".face").first.dblclick()
        page.wait_for_function("document.getElementById('ed-face').textContent.includes('mask hull')")
        zoom = page.evaluate("document.getElementById('ed-canvas').width") // 128
        assert zoom >= 2
        # an exclude polygon: four corners, then Enter
        page.keyboard.press("x")
        for mx, my in ((20, 70), (60, 70), (60, 110), (20, 110)):
            _canvas_click(page, mx, my, zoom)
        page.keyboard.press("Enter")
        # a brush stroke in the top-left corner (outside the face), undone, redone, undone again
        page.keyboard.press("b")
        box = page.locator("#ed-canvas").bounding_box()
        page.mouse.move(box["x"] + 4 * zoom, box["y"] + 4 * zoom)
        page.mouse.down()
        page.mouse.move(box["x"] + 30 * zoom, box["y"] + 4 * zoom, steps=5)
        page.mouse.up()
        page.keyboard.press("Control+z")
        page.keyboard.press("Control+y")
        page.keyboard.press("Control+z")
        _shot(page, "studio_editor.png")
        page.keyboard.press("s")
        page.wait_for_function("document.getElementById('status').textContent.includes('saved face')")
        saved = read_gray(_mask_file(ws, first["id"]))
        assert (saved[72:109, 22:59] == 0).all()                         # inside the polygon: painted out
        ring = np.ones_like(saved, bool)
        ring[66:115, 16:65] = False                                      # away from its antialiased edge
        assert np.array_equal(saved[ring], before[ring])                 # everything else as it was
        info = _info(ws)
        assert info["masks"]["hand"] == 2                                # this face and frame 3's
        # carry it forward over 10 faces; frame 3's hand mask is proposed unticked
        page.fill("#carry-count", "10")
        page.uncheck("#carry-flow")                                      # the transforms alone, to compare
        page.click("#carry-go")
        page.wait_for_selector("#carry:not([hidden]) .proposal")
        assert page.locator("#carry-list .proposal").count() == 10
        assert page.locator("#carry-list input:checked").count() == 9
        _shot(page, "studio_carry.png")
        page.click("#carry-accept")
        page.wait_for_function("document.getElementById('status').textContent.includes('9 masks saved')")
        with Workspace(ws) as w:
            rows = {r.frame_index: r for r in w.faces("dst")}
        for frame in range(1, 11):
            got = read_gray(_mask_file(ws, rows[frame].id))
            if frame == 3:
                assert np.array_equal(got, hand)                         # hand work never overwritten
                continue
            want = _moved_directly(saved, rows[0].transform, rows[frame].transform, 128)
            assert np.abs(got.astype(int) - want).max() <= 1, frame
        assert _info(ws)["masks"]["hand"] == 11
        # next face by keyboard
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"location.hash === '#/edit/dst/{faces[1]['id']}'")
        page.wait_for_function("document.getElementById('ed-face').textContent.includes('frame 1,')")


def test_two_tabs_saving_one_mask_the_later_is_refused_and_shown_both(studio):
    ws, base, token = studio
    face = _faces(base, token)[0]
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        tabs = [context.new_page(), context.new_page()]
        for tab in tabs:
            tab.goto(f"{base}/?token={token}#/edit/dst/{face['id']}")
            tab.wait_for_function("document.getElementById('ed-face').textContent.includes('mask hull')")
        zoom = tabs[0].evaluate("document.getElementById('ed-canvas').width") // 128
        for tab, (x0, y0) in zip(tabs, ((10, 60), (70, 60))):
            tab.keyboard.press("x")
            for mx, my in ((x0, y0), (x0 + 40, y0), (x0 + 40, y0 + 40)):
                _canvas_click(tab, mx, my, zoom)
            tab.keyboard.press("Enter")
        tabs[0].click("#ed-save")
        tabs[0].wait_for_function("document.getElementById('status').textContent.includes('saved face')")
        first = read_gray(_mask_file(ws, face["id"]))
        tabs[1].click("#ed-save")
        tabs[1].wait_for_selector("#conflict:not([hidden])")
        assert "saved elsewhere" in tabs[1].inner_text("#conflict-text")
        tabs[1].wait_for_function("document.getElementById('conflict-theirs').naturalWidth === 128"
                                  " && document.getElementById('conflict-mine').naturalWidth === 128")
        _shot(tabs[1], "studio_conflict.png")
        assert np.array_equal(read_gray(_mask_file(ws, face["id"])), first)     # not overwritten
        tabs[1].click("#conflict-mine-save")
        tabs[1].wait_for_function("document.getElementById('status').textContent.includes('saved face')")
        second = read_gray(_mask_file(ws, face["id"]))
        assert (second[62:98, 72:100] == 0).sum() > 300 and not np.array_equal(second, first)


def test_prediction_and_convert_preview_views_in_chromium(studio):
    import torch

    from pipeline.core.images import read_rgb
    from pipeline.faces.backends.learned_mask import LearnedMasker
    from pipeline.models.segmenter import MASK_MODEL_DIR, SegmenterModel, SegmenterNet
    from pipeline.models.store import save_model
    ws, base, token = studio
    face = _faces(base, token)[2]
    with Workspace(ws) as w:
        aligned = read_rgb(w.aligned_path(w.face("dst", face["id"])))
    torch.manual_seed(1)
    net = SegmenterNet(64, width=8).eval()
    with torch.no_grad():               # an untrained net, its threshold moved to split this face in two
        x = torch.from_numpy(cv2.resize(aligned, (64, 64))).permute(2, 0, 1)[None].float() / 255
        net.head.bias -= net(x).median()
    save_model(ws / MASK_MODEL_DIR, SegmenterModel(net), {"face_type": "full", "iteration": 0})
    predicted = LearnedMasker(ws / MASK_MODEL_DIR, "cpu").masks([aligned])[0]
    assert 0 < (predicted > 0).mean() < 1                     # an untrained model: some face, some not
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/?token={token}#/edit/dst/{face['id']}")
        page.wait_for_function("document.getElementById('ed-predict').textContent === 'Hide prediction'")
        page.click("#ed-use-predict")
        page.click("#ed-save")
        page.wait_for_function("document.getElementById('status').textContent.includes('saved face')")
        assert np.array_equal(read_gray(_mask_file(ws, face["id"])), predicted)     # accepted as it was
        assert _info(ws)["masks"]["hand"] == 1
        page.goto(f"{base}/?token={token}#/preview/5")
        page.wait_for_function("document.getElementById('status').textContent.includes('rendered')",
                               timeout=120_000)
        width = page.evaluate("document.getElementById('pv-image').naturalWidth")
        assert width == 2 * json.loads((ws / "workspace.json").read_text())["sets"]["dst"]["video"]["width"]
        _shot(page, "studio_preview.png")
        page.select_option("[data-name=blend]", "alpha")
        page.fill("[data-name=mask_blur]", "500")
        page.click("#pv-render")
        page.wait_for_function("document.getElementById('status').textContent.includes('error')")
        assert "--mask-blur 500" in page.inner_text("#status")
