"""The studio's local web server: the standard library's threading HTTP server, one token per run.

Every request must carry the run's token (``?token=`` on the address printed at start, then
a same-site cookie the page gets, or an ``X-Studio-Token`` header); anything else gets 403,
so another local user or a web page in the same browser cannot read or change the
workspace. Everything the page needs is served from the package (no CDN: works offline).
"""
from __future__ import annotations

import json
import logging
import mimetypes
import secrets
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from pipeline.core.errors import UserError
from pipeline.core.images import encode
from studio import faces, frames, masks
from studio.options import StudioOptions

log = logging.getLogger("studio")

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "studio_token"
LOCAL = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 64 << 20


class StudioServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, opts: StudioOptions) -> None:
        self.root = Path(opts.workspace).absolute()
        self.token = secrets.token_urlsafe(18)
        super().__init__((opts.host, opts.port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closes a connection early (scrolling past a thumbnail) is no error."""
        import sys
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        log.exception("studio: request from %s failed", client_address)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{shown}:{port}/?token={self.token}"


class _Handler(BaseHTTPRequestHandler):
    server: StudioServer
    protocol_version = "HTTP/1.1"
    #: headers and body go out in two writes; without TCP_NODELAY each keep-alive response waits ~40 ms
    #: for the first one's ACK (192 thumbnails on one connection: 8.4 s, with it 0.16 s)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    # ------------------------------------------------------------------ the token
    def _authorised(self, query: dict[str, list[str]]) -> bool:
        token = self.server.token
        given = [*query.get("token", []), self.headers.get("X-Studio-Token", "")]
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        if COOKIE in cookie:
            given.append(cookie[COOKIE].value)
        return any(secrets.compare_digest(g, token) for g in given if g)

    def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None,
              fresh: bool = False) -> None:
        """``fresh``: never cached (masks, previews: what the page shows must be what is on disk now)."""
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        no_store = fresh or kind.startswith("application/json")
        self.send_header("Cache-Control", "no-store" if no_store else "private, max-age=60")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), "application/json; charset=utf-8")

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if not self._authorised(query):
            self._send(HTTPStatus.FORBIDDEN, b"forbidden: open the address the studio printed (it carries the token)",
                       "text/plain; charset=utf-8")
            return
        try:
            self._dispatch(method, url.path, query)
        except masks.MaskConflict as exc:
            theirs, version = masks.current_mask(self.server.root, exc.set_name, exc.face_id)
            self._json({"error": str(exc), "conflict": exc.face_id, "current": version,
                        "theirs": masks.png_base64(theirs)}, HTTPStatus.CONFLICT)
        except UserError as exc:
            self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
        except (ValueError, KeyError) as exc:
            self._json({"error": f"bad request: {exc}"}, HTTPStatus.BAD_REQUEST)

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        root = self.server.root
        one = {k: v[0] for k, v in query.items()}
        if method == "GET" and path in ("/", "/index.html"):
            cookie = f"{COOKIE}={self.server.token}; Path=/; HttpOnly; SameSite=Strict"
            self._send(200, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8", {"Set-Cookie": cookie})
        elif method == "GET" and path.startswith("/static/"):
            name = path.removeprefix("/static/")
            file = (STATIC / name).resolve()
            if file.parent != STATIC or not file.is_file():
                self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)
                return
            self._send(200, file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream")
        elif method == "GET" and path == "/api/faces":
            ref = int(one["ref"]) if one.get("ref") else None
            self._json(faces.face_list(root, one.get("set", "dst"), one.get("sort", "frame"), ref))
        elif method == "GET" and path.startswith("/thumb/"):
            _, _, set_name, face_id = path.split("/")
            self._send(200, faces.thumbnail(root, set_name, int(face_id.removesuffix(".jpg"))), "image/jpeg")
        elif method == "POST" and path in ("/api/delete", "/api/restore"):
            body = self._body()
            ids = [int(i) for i in body["ids"]]
            act = faces.delete_faces if path == "/api/delete" else faces.restore_faces
            self._json({"moved": act(root, body.get("set", "dst"), ids)})
        elif method == "GET" and path == "/api/face":
            self._json(masks.face_state(root, one.get("set", "dst"), int(one["id"])))
        elif method == "GET" and path.startswith("/aligned/"):
            _, _, set_name, face_id = path.split("/")
            data, kind = masks.aligned_image(root, set_name, int(face_id))
            self._send(200, data, kind, fresh=True)
        elif method == "GET" and path.startswith("/mask/"):
            _, _, set_name, face_id = path.split("/")
            pixels, version = masks.current_mask(root, set_name, int(face_id.removesuffix(".png")))
            self._send(200, encode(pixels, ".png", rgb=False), "image/png", {"X-Mask-Version": version}, fresh=True)
        elif method == "GET" and path == "/api/predict":
            pixels = masks.predict(root, one.get("set", "dst"), int(one["id"]))
            self._send(200, encode(pixels, ".png", rgb=False), "image/png", fresh=True)
        elif method == "POST" and path in ("/api/mask", "/api/accept"):
            body = self._body()
            items = body["items"] if path == "/api/accept" else [body]
            edits = [_edit(item) for item in items]
            self._json(masks.save_masks(root, body.get("set", "dst"), edits, force=bool(body.get("force"))))
        elif method == "POST" and path == "/api/carry":
            body = self._body()
            set_name, face_id = body.get("set", "dst"), int(body["id"])
            mask = masks.decode_mask(masks.png_data(body["png"])) if body.get("png") else None
            self._json({"proposals": masks.carry_forward(root, set_name, face_id, int(body.get("count", 10)), mask,
                                                         bool(body.get("flow")), str(body.get("anchor", "frame")))})
        elif method == "GET" and path.startswith("/frame/"):
            _, _, set_name, face_id = path.split("/")
            self._send(200, frames.source_frame(root, set_name, int(face_id.removesuffix(".jpg"))), "image/jpeg",
                       fresh=True)
        elif method == "GET" and path == "/api/convert-settings":
            self._json(frames.convert_settings())
        elif method == "GET" and path.startswith("/preview/"):
            frame = int(path.removeprefix("/preview/").removesuffix(".jpg"))
            settings = {k: v for k, v in one.items() if k != "token"}
            self._send(200, frames.convert_preview(root, frame, settings), "image/jpeg", fresh=True)
        else:
            self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY:
            raise UserError(f"request of {length} bytes is too large (at most {MAX_BODY})")
        body = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")


def _edit(item: dict[str, Any]) -> masks.MaskEdit:
    return masks.MaskEdit(int(item["id"]), masks.decode_mask(masks.png_data(str(item["png"]))), str(item["base"]))


def start(opts: StudioOptions) -> tuple[StudioServer, threading.Thread]:
    """A running studio in a background thread (tests, and ``run_studio``)."""
    if not (Path(opts.workspace) / "workspace.json").is_file():
        raise UserError(f"{opts.workspace} is not a workspace yet (no workspace.json); run 'python main.py extract' "
                        f"first")
    try:
        server = StudioServer(opts)
    except OSError as exc:
        raise UserError(f"cannot serve on {opts.host}:{opts.port} ({exc.strerror}); choose another --port") from exc
    thread = threading.Thread(target=server.serve_forever, name="studio", daemon=True)
    thread.start()
    return server, thread


def run_studio(opts: StudioOptions) -> str:
    """Serve until Ctrl-C; every write is atomic, so stopping at any moment leaves the workspace whole."""
    server, thread = start(opts)
    if opts.host not in LOCAL:
        log.warning("warning: --host %s serves the studio to the network; anyone who has the address (with its "
                    "token) can see and change this workspace", opts.host)
    print(f"studio: open {server.address}  (Ctrl-C to stop)", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return "studio stopped"
