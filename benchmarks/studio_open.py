"""How fast the studio's face browser opens a set of 2,000 faces, in headless Chromium.

The issue asks: the browser opens 2,000 faces in under 2 s after the first visit (thumbnails
cached) and scrolls without loading every image at once. This builds the 2,000-face
workspace of ``benchmarks.studio_big_set`` (or takes one), starts the studio, and visits it
twice with Chromium through Playwright:

- first visit: open, then scroll through the whole grid a screen at a time, waiting for each
  screen's thumbnails, so every thumbnail gets made and cached;
- second visit, in a fresh browser context (no browser cache: every thumbnail it shows is
  asked of the server): the time from navigation until the grid holds every face and the
  thumbnails of the first screen are loaded; the /thumb requests the server answered by then,
  and after scrolling straight to the bottom; whether any cached thumbnail was written again.

Also the time of ``GET /api/faces`` alone. Thumbnail requests are counted on the server side
(``studio.faces.thumbnail`` wrapped), so a thumbnail the browser took from its own cache
would not count.

Usage: python -m benchmarks.studio_open [--workspace WS | --build-in DIR] [--faces 2000] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import faces as studio_faces
from studio.faces import STUDIO_DIR, face_list
from studio.options import StudioOptions
from studio.server import start

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

CHROMIUM_ARGS = ["--no-sandbox"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}

#: In the page: performance.now() once the grid holds ``n`` faces (any number: -1) and every image of the
#: screen is loaded.
READY = """(n) => {
  if (n >= 0 && document.querySelectorAll('#grid .face').length !== n) return false;
  const h = window.innerHeight;
  let seen = 0;
  for (const img of document.querySelectorAll('#grid img')) {
    const r = img.getBoundingClientRect();
    if (r.top >= h) break;                       // the grid is in document order, top to bottom
    if (r.bottom <= 0) continue;
    if (!(img.complete && img.naturalWidth > 0)) return false;
    seen++;
  }
  return seen > 0 ? performance.now() : false;
}"""


class ThumbCounter:
    """Counts the thumbnails the server sends (wraps ``studio.faces.thumbnail``, which the server calls)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator[ThumbCounter]:
        real = studio_faces.thumbnail

        def counted(*args: Any, **kwargs: Any) -> bytes:
            with self._lock:
                self.count += 1
            return real(*args, **kwargs)

        studio_faces.thumbnail = counted
        try:
            yield self
        finally:
            studio_faces.thumbnail = real

    def settled(self, quiet: float = 0.4, limit: float = 10.0) -> int:
        """The count once no request came for ``quiet`` seconds (the lazy loader's stragglers included)."""
        end = time.perf_counter() + limit
        last, since = self.count, time.perf_counter()
        while time.perf_counter() < end:
            time.sleep(0.05)
            if self.count != last:
                last, since = self.count, time.perf_counter()
            elif time.perf_counter() - since >= quiet:
                break
        return self.count


def chromium() -> str | None:
    """The system's Chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_grid(page: Any, url: str, faces: int, timeout_ms: float = 60_000) -> dict[str, float]:
    """Navigate and wait for the whole grid with its first screen loaded; seconds, as seen here and in the page."""
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    ready_ms = page.wait_for_function(READY, arg=faces, timeout=timeout_ms).json_value()
    seconds = time.perf_counter() - started
    api = page.evaluate("performance.getEntriesByType('resource').filter(e => e.name.includes('/api/faces'))"
                        ".map(e => [e.requestStart, e.responseEnd])")
    out = {"seconds": seconds, "page_seconds": ready_ms / 1000}
    if api:
        out["api_request_s"], out["api_response_end_s"] = api[0][0] / 1000, api[0][1] / 1000
    return out


def scroll_through(page: Any, timeout_ms: float = 60_000) -> int:
    """Scroll the grid a screen at a time, waiting at each for its thumbnails; the screens visited."""
    height = page.evaluate("document.documentElement.scrollHeight")
    step = page.evaluate("window.innerHeight")
    screens = 0
    for y in range(0, height + step, step):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_function(READY, arg=-1, timeout=timeout_ms)
        screens += 1
    return screens


def scroll_to_bottom(page: Any, timeout_ms: float = 60_000) -> float:
    """Jump to the end of the grid; seconds until its thumbnails there are loaded."""
    started = time.perf_counter()
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_function(READY, arg=-1, timeout=timeout_ms)
    return time.perf_counter() - started


def thumb_stamps(ws: Path) -> dict[str, int]:
    """Every cached thumbnail with its mtime (a rewrite changes it)."""
    folder = ws / STUDIO_DIR / "thumbs"
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.jpg")} if folder.exists() else {}


def time_api(base: str, token: str, repeat: int = 5) -> list[float]:
    """Seconds of GET /api/faces (the whole face list) alone, ``repeat`` times."""
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{base}/api/faces?set=dst&sort=frame&token={token}", timeout=60) as res:
            res.read()
        out.append(time.perf_counter() - started)
    return out


def later_visit(browser: Any, url: str, faces: int, counter: ThumbCounter) -> dict[str, Any]:
    """A visit in a fresh browser context (no browser cache: every thumbnail shown comes from the server)."""
    counter.count = 0
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        out: dict[str, Any] = open_grid(page, url, faces)
        out["grid_ids"] = page.evaluate("[...document.querySelectorAll('#grid .face')].map(c => Number(c.dataset.id))")
        out["cells"] = len(out["grid_ids"])
        out["in_view"] = page.evaluate(
            "[...document.querySelectorAll('#grid img')].filter(i => { const r = i.getBoundingClientRect();"
            " return r.bottom > 0 && r.top < innerHeight; }).length")
        out["thumbs_at_open"] = counter.settled()
        out["bottom_s"] = scroll_to_bottom(page)
        out["thumbs_after_bottom"] = counter.settled()
    finally:
        context.close()
    return out


def measure(ws: Path, faces: int, exe: str, visits: int = 3) -> dict[str, Any]:
    """Both visits and the API timing on a running studio over ``ws`` (see the module's docstring).

    The later visit is made ``visits`` times; ``second_visit`` is the quickest (other
    programs on the machine slow some down), ``later_visits`` all of them.
    """
    from playwright.sync_api import sync_playwright
    server, _ = start(StudioOptions(workspace=ws, port=0))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    url = f"{base}/?token={server.token}"
    out: dict[str, Any] = {"faces": faces}
    try:
        with ThumbCounter().installed() as counter, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                first = browser.new_context(viewport=VIEWPORT)
                page = first.new_page()
                out["first_visit"] = open_grid(page, url, faces)
                out["first_visit"]["thumbs_at_open"] = counter.settled()
                started = time.perf_counter()
                out["first_visit"]["screens_scrolled"] = scroll_through(page)
                out["first_visit"]["scroll_s"] = time.perf_counter() - started
                out["first_visit"]["thumbs"] = counter.settled()
                first.close()
                before = thumb_stamps(ws)
                out["thumbs_cached"] = len(before)
                out["api_faces_s"] = time_api(base, server.token)
                out["later_visits"] = [later_visit(browser, url, faces, counter) for _ in range(visits)]
                after = thumb_stamps(ws)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    out["thumbs_new"] = len(set(after) - set(before))
    out["thumbs_rewritten"] = sum(1 for k, v in before.items() if after.get(k) != v)
    out["second_visit"] = min(out["later_visits"], key=lambda v: v["seconds"])
    return out


def report(r: dict[str, Any]) -> str:
    f, s, api = r["first_visit"], r["second_visit"], r["api_faces_s"]
    times = ", ".join(f"{v['seconds']:.2f}" for v in r["later_visits"])
    return "\n".join([
        f"studio face browser, {r['faces']} faces",
        f"  first visit : grid + first screen {f['seconds']:.2f} s (page {f['page_seconds']:.2f} s), "
        f"{f['thumbs_at_open']} thumbnails at open, {f['thumbs']} after scrolling {f['screens_scrolled']} screens "
        f"({f['scroll_s']:.1f} s); "
        f"{r['thumbs_cached']} cached",
        f"  GET /api/faces alone: median {statistics.median(api):.3f} s (min {min(api):.3f}, max {max(api):.3f})",
        f"  later visits (fresh browser context each): {times} s",
        f"  quickest    : grid + first screen {s['seconds']:.2f} s (page {s['page_seconds']:.2f} s; "
        f"/api/faces answered at {s.get('api_response_end_s', float('nan')):.2f} s), {s['cells']} cells, "
        f"{s['in_view']} thumbnails in view",
        f"                /thumb requests: {s['thumbs_at_open']} at open, {s['thumbs_after_bottom']} after "
        f"scrolling to the bottom ({s['bottom_s']:.2f} s)",
        f"  thumbnails made by the later visits: {r['thumbs_new']}, written again: {r['thumbs_rewritten']}",
    ])


def main(argv: list[str] | None = None) -> None:
    from benchmarks.studio_big_set import build_big_workspace
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, help="a workspace to open (its thumbnail cache is emptied first)")
    ap.add_argument("--build-in", type=Path, help="build the big workspace here (default: a temporary folder)")
    ap.add_argument("--faces", type=int, default=2000)
    ap.add_argument("--visits", type=int, default=3, help="later visits to make (the quickest is reported)")
    ap.add_argument("--nagle", action="store_true",
                    help="serve without TCP_NODELAY (the handler's disable_nagle_algorithm off), to compare")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    exe = chromium()
    if exe is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.workspace is not None:
            ws = args.workspace
            faces = sum(1 for f in face_list(ws, "dst")["faces"] if not f["dropped"])
        else:
            started = time.perf_counter()
            ws = build_big_workspace(args.build_in or Path(tmp), args.faces)
            faces = args.faces
            print(f"built {ws} ({faces} faces) in {time.perf_counter() - started:.1f} s")
        shutil.rmtree(ws / STUDIO_DIR / "thumbs", ignore_errors=True)
        if args.nagle:
            from studio import server
            server._Handler.disable_nagle_algorithm = False
        result = measure(ws, faces, exe, args.visits)
    print(report(result))
    if args.json:
        for visit in result["later_visits"]:
            visit.pop("grid_ids")
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
