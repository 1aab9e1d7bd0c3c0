"""The studio's server: the token, the face list, cached thumbnails, delete and restore.

These talk HTTP to a real running studio over the small workspace in tests/data.
"""
import contextlib
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
import pytest

from info.summary import InfoOptions, run_info
from studio.faces import STUDIO_DIR, trash_dir
from studio.options import StudioOptions
from studio.server import start
from tests.conftest import clean_error, copy_v1_workspace, run_cli


@pytest.fixture
def studio(tmp_path):
    ws = copy_v1_workspace(tmp_path)
    server, thread = start(StudioOptions(workspace=ws, port=0))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield ws, base, server.token
    server.shutdown()
    server.server_close()


def _get(url, headers=None):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as res:
        return res.status, dict(res.headers), res.read()


def _post(url, body):
    """POST ``body`` as JSON with the address's token in the header a change needs."""
    token = parse_qs(urlparse(url).query).get("token", [""])[0]
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Studio-Token": token})
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read())


def test_every_request_needs_the_token(studio):
    ws, base, token = studio
    for path in ("/", "/api/faces?set=dst", "/thumb/dst/1.jpg", "/static/studio.js"):
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(base + path)
        assert err.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(base + path + ("&" if "?" in path else "?") + "token=wrong")
        assert err.value.code == 403
    status, headers, body = _get(f"{base}/?token={token}")
    assert status == 200 and b"/static/studio.js" in body
    assert f"studio_token={token}" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    status, _, _ = _get(f"{base}/static/studio.js", {"Cookie": f"studio_token={token}"})     # the page's cookie
    assert status == 200
    for sneaky in ("/static/..%2fserver.py", "/static/../server.py", "/static/../../main.py"):   # outside static/
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(f"{base}{sneaky}?token={token}")
        assert err.value.code == 404


def test_face_list_sorts_and_thumbnails_are_cached(studio):
    ws, base, token = studio
    data = json.loads(_get(f"{base}/api/faces?set=dst&sort=frame&token={token}")[2])
    assert [f["frame"] for f in data["faces"]] == [0, 1, 2, 3, 4, 5]
    assert [f["dropped"] for f in data["faces"]] == [False, False, True, False, False, False]
    assert data["persons"] == 1 and {f["person"] for f in data["faces"]} == {0}
    assert {f["mask_origin"] for f in data["faces"] if f["frame"] in (1, 4)} == {"hand"}
    by_blur = json.loads(_get(f"{base}/api/faces?set=dst&sort=blur&token={token}")[2])["faces"]
    blurs = [f["blur"] for f in by_blur]
    assert blurs == sorted(blurs, reverse=True)
    ref = data["faces"][0]["id"]
    alike = json.loads(_get(f"{base}/api/faces?set=dst&sort=identity&ref={ref}&token={token}")[2])["faces"]
    assert alike[0]["id"] == ref
    status, headers, jpeg = _get(f"{base}/thumb/dst/{ref}.jpg?token={token}")
    thumb = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert headers["Content-Type"] == "image/jpeg" and thumb.shape == (96, 96, 3)
    cached = ws / STUDIO_DIR / "thumbs" / "dst" / "000000_0.jpg"
    stamp = cached.stat().st_mtime_ns
    assert _get(f"{base}/thumb/dst/{ref}.jpg?token={token}")[2] == jpeg and cached.stat().st_mtime_ns == stamp


def test_delete_three_and_restore_one_is_what_info_sees(studio):
    ws, base, token = studio
    faces = json.loads(_get(f"{base}/api/faces?set=dst&token={token}")[2])["faces"]
    kept = [f for f in faces if not f["dropped"]]
    doomed = [f["id"] for f in kept[:3]]
    assert _post(f"{base}/api/delete?token={token}", {"set": "dst", "ids": doomed}) == {"moved": 3}
    for f in kept[:3]:
        assert not (ws / "data_dst" / "aligned" / f["file"]).exists()
        assert (trash_dir(ws, "dst") / f["file"]).exists()
    info = run_info(InfoOptions(workspace=ws))["sets"]["dst"]
    assert info["faces"] == 2 and info["dropped_by_reason"] == {"deleted": 4}
    assert _post(f"{base}/api/restore?token={token}", {"set": "dst", "ids": doomed[:1]}) == {"moved": 1}
    assert (ws / "data_dst" / "aligned" / kept[0]["file"]).exists()
    info = run_info(InfoOptions(workspace=ws))["sets"]["dst"]
    assert info["faces"] == 3 and info["dropped_by_reason"] == {"deleted": 3}
    listed = {f["id"]: f["dropped"] for f in json.loads(_get(f"{base}/api/faces?set=dst&token={token}")[2])["faces"]}
    assert [listed[i] for i in doomed] == [False, True, True]
    with pytest.raises(urllib.error.HTTPError) as err:
        _post(f"{base}/api/delete?token={token}", {"set": "dst", "ids": [9999]})
    assert err.value.code == 400 and "no face 9999" in json.loads(err.value.read())["error"]


def _browser():
    """Headless Chromium through Playwright (the system's browser), or a skip saying what is missing."""
    import os
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if exe is None or sync_playwright is None:
        if os.environ.get("REQUIRE_CHROMIUM") == "1":
            pytest.fail("REQUIRE_CHROMIUM=1 but chromium or playwright is missing (apt-get install chromium; "
                        "pip install -r requirements-dev.txt)")
        pytest.skip("chromium or playwright not installed")
    return sync_playwright, exe


@contextlib.contextmanager
def chromium() -> Iterator:
    """A launched headless Chromium (or the skip of ``_browser``), closed afterwards."""
    sync_playwright, exe = _browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def test_the_face_browser_in_chromium_deletes_and_restores(studio):
    ws, base, token = studio
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base}/?token={token}")
        page.wait_for_selector(".face")
        assert page.locator(".face").count() == 5                    # the face deleted earlier is hidden
        page.wait_for_function("[...document.querySelectorAll('#grid img')]"
                               ".every(i => i.complete && i.naturalWidth === 96)")
        cells = page.locator(".face")
        cells.nth(0).click()
        cells.nth(2).click(modifiers=["Shift"])
        assert page.locator(".face.selected").count() == 3
        page.click("#delete")
        page.wait_for_function("document.querySelectorAll('.face').length === 2")
        info = run_info(InfoOptions(workspace=ws))["sets"]["dst"]
        assert info["faces"] == 2 and info["dropped_by_reason"] == {"deleted": 4}
        page.check("#dropped")
        page.wait_for_function("document.querySelectorAll('.face.dropped').length === 4")
        page.locator(".face.dropped").first.click()
        page.click("#restore")
        page.wait_for_function("document.querySelectorAll('.face.dropped').length === 3")
        assert run_info(InfoOptions(workspace=ws))["sets"]["dst"]["faces"] == 3
        page.screenshot(path=str(ws / "face_browser.png"))


def test_studio_on_a_folder_that_is_no_workspace_or_a_taken_port(tmp_path, studio):
    clean_error(run_cli("studio", "--workspace", tmp_path / "nothing"), "is not a workspace yet")
    assert not (tmp_path / "nothing").exists()
    ws, base, _ = studio
    taken = base.rsplit(":", 1)[1]
    clean_error(run_cli("studio", "--workspace", ws, "--port", taken), f"cannot serve on 127.0.0.1:{taken}",
                "choose another --port")


def test_ctrl_c_stops_the_studio_cleanly_and_changes_nothing(tmp_path):
    """The command as a user runs it: prints its address, serves, exits 0 on Ctrl-C; the workspace as it was."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, default_sigint, snapshot
    ws = copy_v1_workspace(tmp_path)
    before = snapshot(ws)
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "studio", "--workspace", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        line = proc.stdout.readline()
        assert line.startswith("studio: open http://127.0.0.1:") and "?token=" in line, line
        address = line.split()[2]
        assert _get(address)[0] == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(address.split("?")[0] + "api/faces?set=dst")
        assert err.value.code == 403
    finally:
        os.kill(proc.pid, signal.SIGINT)
        out, errs = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "studio stopped" in out and "Traceback" not in errs, errs
    assert snapshot(ws) == before
