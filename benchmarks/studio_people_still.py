"""The still of the studio's row of people (issue 27), taken by the test browser (headless Chromium).

Above: the faces view with a person picked in the row (their faces only); below: the convert
preview of one of their frames, swapping that person. Works on a copy of the workspace (the
studio caches thumbnails in it). For the README's picture, on the 200 + 60 frame cut of
``tests/material.py`` extracted with the main job's model in its ``model/``:

    python benchmarks/studio_people_still.py --workspace WS --person 1 --frame 90 --out docs/studio_people.jpg
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.options import StudioOptions  # noqa: E402
from studio.server import start  # noqa: E402


def shoot(workspace: Path, person: int, frame: int, out: Path) -> Path:
    """Write the two views one above the other as a JPEG at ``out``."""
    from playwright.sync_api import sync_playwright
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    server, _ = start(StudioOptions(workspace=workspace, port=0))
    url = f"http://127.0.0.1:{server.server_address[1]}/?token={server.token}"
    shots = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 560})
            page.goto(url)
            page.wait_for_selector(".face")
            people = page.evaluate("fetch('/api/people?set=dst').then(r => r.json())")["people"]
            faces = next(p["faces"] for p in people if p["person"] == person)
            page.locator("#people .person").nth(person).click()         # 0 is 'everyone'
            page.wait_for_function(f"document.querySelectorAll('.face').length === {faces}")
            page.wait_for_function("[...document.querySelectorAll('#people img, #grid img')]"
                                   ".filter(i => i.getBoundingClientRect().top < innerHeight)"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            shots.append(page.screenshot())
            page.goto(f"{url}#/preview/{frame}/{person}")
            page.wait_for_function(f"document.getElementById('status').textContent.includes({json.dumps('rendered')})",
                                   timeout=180_000)
            page.set_viewport_size({"width": 1280, "height": 760})
            shots.append(page.screenshot())
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    images = [cv2.imdecode(np.frombuffer(s, np.uint8), cv2.IMREAD_COLOR) for s in shots]
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate(images, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--person", type=int, default=1, help="the person to pick (as info numbers them)")
    ap.add_argument("--frame", type=int, default=90, help="a dst frame of theirs to preview")
    ap.add_argument("--out", type=Path, default=Path("docs/studio_people.jpg"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "ws"
        shutil.copytree(args.workspace, copy, ignore=shutil.ignore_patterns("result.mp4", "report"))
        print(shoot(copy, args.person, args.frame, args.out))


if __name__ == "__main__":
    main()
