"""The studio's row of people (issue 27): who the dst video shows, picked to filter the faces and to preview.

Real footage: ``tests.material``'s cut from Hill to Ocasio-Cortez, short (16 + 10 frames),
extracted as a user would; the model is an untrained plain transformation net, whose face
differs from the input far beyond codec noise, so a swapped face is plain to see in numbers.
"""
from __future__ import annotations

import json
import shutil
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.options import ConvertOptions
from convert.runner import run_convert
from info.summary import InfoOptions, run_info
from pipeline.core.video import frames_at
from studio.faces import delete_faces
from studio.options import StudioOptions
from studio.server import start
from tests.conftest import run_cli
from tests.material import SHORT_TWO_PERSON, two_person_clip
from tests.test_studio import _get, chromium

HILL, AOC = range(0, 16), range(16, 26)


@pytest.fixture(scope="module")
def two_people(tmp_path_factory) -> dict[str, Path]:
    """The short two-person clip extracted into a workspace with a model (copy ``ws`` before changing it)."""
    import torch

    from pipeline.models.store import save_model
    from pipeline.models.transform import TransformModel
    from pipeline.models.transform_net import TransformNet
    clip = two_person_clip(tmp_path_factory.getbasetemp().parent / "material" / "hill16_aoc10.mp4",
                           SHORT_TWO_PERSON)
    ws = tmp_path_factory.mktemp("studio_people") / "ws"
    res = run_cli("extract", "--input", clip, "--workspace", ws)
    assert res.returncode == 0, res.stderr
    torch.manual_seed(0)
    save_model(ws / "model", TransformModel(TransformNet(128, width=4, skip=False)),
               {"face_type": "full", "iteration": 0})
    return {"clip": clip, "ws": ws}


@pytest.fixture
def studio(two_people, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(two_people["ws"], ws)
    server, thread = start(StudioOptions(workspace=ws, port=0))
    yield ws, f"http://127.0.0.1:{server.server_address[1]}", server.token
    server.shutdown()
    server.server_close()


def _json(url: str) -> dict:
    return json.loads(_get(url)[2])


def _refused(url: str) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(url)
    return err.value.code, json.loads(err.value.read())["error"]


def _dst_video(ws: Path) -> Path:
    """The dst video a workspace was extracted from."""
    return Path(json.loads((ws / "workspace.json").read_text())["sets"]["dst"]["input"])


def _decode(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_the_people_are_info_s_people_each_with_a_face_of_their_own(studio):
    ws, base, token = studio
    found = _json(f"{base}/api/people?set=dst&token={token}")
    rows = [(p["person"], p["faces"], p["frames"], p["first_frame"], p["last_frame"]) for p in found["people"]]
    assert rows == [(1, 16, 16, 0, 15), (2, 10, 10, 16, 25)], rows
    assert found["unplaced"] == 0
    info = run_info(InfoOptions(workspace=ws))["sets"]["dst"]["people"]
    assert rows == [(p["person"], p["faces"], p["frames"], p["first_frame"], p["last_frame"]) for p in info]
    faces = {f["id"]: f for f in _json(f"{base}/api/faces?set=dst&token={token}")["faces"]}
    for p, frames in zip(found["people"], (HILL, AOC)):
        shown = faces[p["face"]]                        # the face shown for the person is one of theirs
        assert shown["frame"] in frames and shown["person"] == p["person"] - 1
        jpeg = _get(f"{base}/thumb/dst/{p['face']}.jpg?token={token}")[2]
        assert _decode(jpeg).shape == (96, 96, 3)
    # the face list's person (an index into the people) is the one of the person's frames
    assert {f["frame"]: f["person"] for f in faces.values()} == {i: 0 if i in HILL else 1 for i in range(26)}
    assert _json(f"{base}/api/people?set=src&token={token}") == {"set": "src", "people": [], "unplaced": 0}
    assert _refused(f"{base}/api/people?set=both&token={token}") == (400, "unknown face set 'both' (dst or src)")


def test_a_deleted_face_is_nobody_s_to_convert_but_still_shown_with_its_person(studio):
    ws, base, token = studio
    faces = _json(f"{base}/api/faces?set=dst&token={token}")["faces"]
    doomed = [f["id"] for f in faces if f["frame"] in (17, 18)]
    assert delete_faces(ws, "dst", doomed) == 2
    found = _json(f"{base}/api/people?set=dst&token={token}")["people"]
    assert [(p["person"], p["faces"], p["first_frame"]) for p in found] == [(1, 16, 0), (2, 8, 16)]
    listed = {f["id"]: f for f in _json(f"{base}/api/faces?set=dst&token={token}")["faces"]}
    assert all(listed[i]["dropped"] and listed[i]["person"] == 1 for i in doomed)


def test_previewing_a_person_renders_what_convert_person_n_renders(studio):
    ws, base, token = studio
    frame = 20                                                   # Ocasio-Cortez: person 2
    image = _decode(_get(f"{base}/preview/{frame}.jpg?person=2&color=none&token={token}")[2])
    plain = frames_at(_dst_video(ws), {frame})[frame].astype(int)
    h, w = plain.shape[:2]
    stills: dict = {}
    run_convert(ConvertOptions(workspace=ws, start=frame, end=frame + 1, preview=1, color="none", person="2"),
                stills)
    right = image[:, w:].astype(int)
    assert np.abs(right - stills[frame]).mean() < 2              # convert --person 2's own frame (JPEG apart)
    assert np.abs(stills[frame].astype(int) - plain).mean() > 2   # and it is swapped
    assert np.abs(_decode(_get(f"{base}/preview/{frame}.jpg?person=all&token={token}")[2])[:, w:].astype(int)
                  - plain).mean() > 2
    # convert's default, person 1, is not in this frame: said so, in one line
    code, error = _refused(f"{base}/preview/{frame}.jpg?token={token}")
    assert code == 400 and error.startswith(f"frame {frame} shows only other people than person 1"), error
    code, error = _refused(f"{base}/preview/5.jpg?person=2&token={token}")
    assert code == 400 and "frame 5 shows only other people than person 2" in error, error
    image = _decode(_get(f"{base}/preview/5.jpg?person=1&token={token}")[2])
    assert np.abs(image[:, w:].astype(int) - image[:, :w].astype(int)).mean() > 2
    for bad, message in (("0", "person 0 is out of range"), ("two", "person must be a whole number"),
                         ("3", "--person 3: the dst video shows 2 people")):
        code, error = _refused(f"{base}/preview/5.jpg?person={bad}&token={token}")
        assert code == 400 and message in error, error


def test_picking_a_person_in_chromium_filters_the_faces_and_previews_their_swap(studio):
    ws, base, token = studio
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/?token={token}")
        page.wait_for_selector(".face")
        cells = page.locator("#people .person")
        assert cells.count() == 3                                 # everyone, person 1, person 2
        assert cells.nth(1).inner_text().split() == ["person", "1", "16", "faces", "·", "16", "frames", "(0-15)"]
        assert cells.nth(2).inner_text().split() == ["person", "2", "10", "faces", "·", "10", "frames", "(16-25)"]
        page.wait_for_function("[...document.querySelectorAll('#people img')]"
                               ".every(i => i.complete && i.naturalWidth === 96)")
        assert page.locator(".face").count() == 26
        cells.nth(2).click()
        page.wait_for_function("document.querySelectorAll('.face').length === 10")
        assert page.locator("#people .person.picked").inner_text().startswith("person 2")
        frames = [int(t.split(":")[0]) for t in page.locator(".face span").all_inner_texts()]
        assert sorted(frames) == list(AOC)
        page.screenshot(path=str(ws / "people_row.png"))
        page.locator(".face").nth(4).click()                      # frame 20: its source frame, then its swap
        page.click("#side-preview")
        page.wait_for_function("document.getElementById('status').textContent.includes('rendered')", timeout=60_000)
        assert page.input_value("#pv-person") == "2"
        assert page.locator("#pv-image").evaluate("i => i.naturalWidth") == 1024
        page.screenshot(path=str(ws / "people_preview.png"))
        page.click("#nav-faces")
        page.locator("#people .person").nth(0).click()           # everyone again
        page.wait_for_function("document.querySelectorAll('.face').length === 26")
