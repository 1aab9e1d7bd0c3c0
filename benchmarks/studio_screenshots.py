"""Screenshots of each studio view, taken by the test browser (headless Chromium via Playwright).

Works on a copy of the given workspace (the conflict view saves masks), so the workspace
itself is untouched. For the README's pictures:

    python benchmarks/studio_screenshots.py --workspace WS --out docs --face 40 [--input VIDEO]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.options import StudioOptions  # noqa: E402
from studio.server import start  # noqa: E402


def _wait_status(page, text: str, timeout: float = 120_000) -> None:
    page.wait_for_function(f"document.getElementById('status').textContent.includes({json.dumps(text)})",
                           timeout=timeout)


def shoot(workspace: Path, out: Path, face: int, carry: int, frame: int) -> list[Path]:
    from playwright.sync_api import sync_playwright
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    out.mkdir(parents=True, exist_ok=True)
    server, _ = start(StudioOptions(workspace=workspace, port=0))
    base = f"http://127.0.0.1:{server.server_address[1]}/?token={server.token}"
    shots = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1500, "height": 950})
            page = context.new_page()
            page.goto(base)
            page.wait_for_selector(".face")
            cell = page.locator(f".face[data-id='{face}']")
            cell.scroll_into_view_if_needed()
            cell.click()
            page.wait_for_function("document.getElementById('source-frame').naturalWidth > 0")
            page.wait_for_timeout(500)
            shots.append(out / "studio_faces.jpg")
            page.screenshot(path=str(shots[-1]), quality=85)
            page.goto(f"{base}#/edit/dst/{face}")
            page.wait_for_function("document.getElementById('ed-face').textContent.includes('mask')")
            if page.evaluate("!document.getElementById('ed-predict').disabled"):
                page.wait_for_function("document.getElementById('ed-predict').textContent === 'Hide prediction'")
            shots.append(out / "studio_editor.jpg")
            page.screenshot(path=str(shots[-1]), quality=85)
            page.fill("#carry-count", str(carry))
            page.click("#carry-go")
            page.wait_for_selector("#carry:not([hidden]) .proposal")
            page.wait_for_timeout(1000)
            shots.append(out / "studio_carry.jpg")
            page.screenshot(path=str(shots[-1]), quality=85)
            # two tabs on one face: the later save is refused and shows both
            tabs = [page, context.new_page()]
            tabs[0].goto(f"{base}#/edit/dst/{face}")
            tabs[1].goto(f"{base}#/edit/dst/{face}")
            for tab in tabs:
                tab.wait_for_function("document.getElementById('ed-face').textContent.includes('mask')")
            width = tabs[0].locator("#ed-canvas").bounding_box()["width"]     # CSS pixels
            for tab, corner in zip(tabs, ((0.1, 0.6), (0.55, 0.6))):
                tab.keyboard.press("x")
                for dx, dy in ((0, 0), (0.3, 0), (0.3, 0.3)):
                    tab.locator("#ed-canvas").click(position={"x": (corner[0] + dx) * width,
                                                              "y": (corner[1] + dy) * width})
                tab.keyboard.press("Enter")
            tabs[0].click("#ed-save")
            _wait_status(tabs[0], "saved face")
            tabs[1].click("#ed-save")
            tabs[1].wait_for_selector("#conflict:not([hidden])")
            tabs[1].wait_for_timeout(500)
            shots.append(out / "studio_conflict.jpg")
            tabs[1].screenshot(path=str(shots[-1]), quality=85)
            page.goto(f"{base}#/preview/{frame}")
            _wait_status(page, "rendered")
            shots.append(out / "studio_preview.jpg")
            page.screenshot(path=str(shots[-1]), quality=85)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return shots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True, help="a workspace with dst faces (copied first)")
    ap.add_argument("--out", type=Path, default=Path("docs"), help="folder for the PNGs (default docs)")
    ap.add_argument("--face", type=int, default=1, help="dst face id shown in the editor (default 1)")
    ap.add_argument("--carry", type=int, default=10, help="faces to carry the mask over (default 10)")
    ap.add_argument("--frame", type=int, default=None, help="frame of the convert preview (default the face's)")
    ap.add_argument("--input", type=Path, default=None, help="the dst video, if it moved since extract")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
        ws = Path(tmp) / "ws"
        t0 = time.perf_counter()
        shutil.copytree(args.workspace, ws, ignore=shutil.ignore_patterns("*.mp4", "report", "preview"))
        if args.input is not None:
            meta = json.loads((ws / "workspace.json").read_text())
            meta["sets"]["dst"]["input"] = str(args.input.resolve())
            (ws / "workspace.json").write_text(json.dumps(meta, indent=2))
        from pipeline.workspace.store import Workspace
        with Workspace(ws) as w:
            row = w.face("dst", args.face)
            if row is None:
                sys.exit(f"error: no dst face {args.face} in {args.workspace}")
            frame = row.frame_index if args.frame is None else args.frame
        for shot in shoot(ws, args.out, args.face, args.carry, frame):
            print(shot)
        print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
