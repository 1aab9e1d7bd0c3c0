"""The studio's local web server: the standard library's threading HTTP server, one token per run.

Every request must carry the run's token (``?token=`` on the address printed at start, then
a same-site cookie the page gets, or an ``X-Studio-Token`` header); anything else gets 403,
so another local user or a web page in the same browser cannot read or change the
workspace. Everything the page needs is served from the package (no CDN: works offline).

The cookie is sent by the browser on its own, also for a page of another port of 127.0.0.1
(the same *site*), so it never authorises a change alone: a POST needs the token in the
``X-Studio-Token`` header (the page reads it from its own HTML, which no other origin can
read) or the page's own ``Origin``, and a JSON ``Content-Type`` (which a plain HTML form
cannot send). A ``Host`` that is not the address this server was reached at is refused
(421: DNS rebinding), as is an ``Origin`` of another site. Every field a request sends is
checked for type and range, the body is capped and must arrive within ``request_timeout``:
bad input gets one line of JSON (400, 408, 413, 415), never a traceback or a held thread.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import re
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from pipeline.core.errors import UserError
from pipeline.core.images import encode
from pipeline.workspace import layout
from pipeline.workspace.records import SETS
from studio import faces, frames, masks
from studio.options import StudioOptions

log = logging.getLogger("studio")

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "studio_token"
LOCAL = ("127.0.0.1", "localhost", "::1")
#: the names a browser may use for a server reached over the loopback interface
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
WILDCARDS = ("", "0.0.0.0", "::")
#: The body of one request. Its largest legitimate content is one mask PNG (/api/mask, /api/carry)
#: or an id list (/api/delete): a painted 1024 px mask is 10-70 kB of PNG, even pure noise at
#: 1024 px is 1 MiB (1.4 MiB as base64), and MAX_IDS ids are under 2.5 MiB of JSON.
MAX_BODY = 4 << 20
#: /api/accept sends up to MAX_CARRY carried masks at once (all or none are saved): 500 soft-edged
#: 512 px masks (~24 kB of PNG, 32 kB as base64) are 16 MiB; larger faces accept in smaller batches.
MAX_ACCEPT_BODY = 32 << 20
#: ids in one delete or restore: the faces of a two-hour video at 25 fps, in one selection
MAX_IDS = 200_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: seconds a client has to send a whole request body (and a socket may stay silent): a slow or
#: lying client (a Content-Length it never sends) holds a thread this long at most
REQUEST_TIMEOUT = 30.0
#: after refusing a body it did not read, the server reads and drops this much of it (for at most
#: LINGER_S) before closing, so that the close does not reset the connection under the answer
LINGER_BYTES, LINGER_S = 1 << 20, 1.0
_ID_TEXT = re.compile(r"-?[0-9]{1,19}")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class Refused(Exception):
    """A request refused with ``status`` and one line saying why (bad input, no token, too large, too slow)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StudioServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, opts: StudioOptions) -> None:
        self.root = Path(opts.workspace).absolute()
        self.token = secrets.token_urlsafe(18)
        #: the name the user asked to bind (``--host``), accepted as a Host besides the address reached
        self.bound_name = opts.host.strip().lower()
        #: seconds a request's body may take, and a socket may stay silent (tests lower it)
        self.request_timeout = REQUEST_TIMEOUT
        super().__init__((opts.host, opts.port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closes a connection early (scrolling past a thumbnail), or one too slow, is no error."""
        import sys
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        log.exception("studio: request from %s failed", client_address)

    @property
    def address(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{shown}:{port}/?token={self.token}"


class _Handler(BaseHTTPRequestHandler):
    server: StudioServer
    protocol_version = "HTTP/1.1"
    #: headers and body go out in two writes; without TCP_NODELAY each keep-alive response waits ~40 ms
    #: for the first one's ACK (192 thumbnails on one connection: 8.4 s, with it 0.16 s)
    disable_nagle_algorithm = True
    #: a POST's body not read yet (an answer before it closes the connection: the rest is no request)
    _unread = False
    #: whether this request's answer has begun (then an error can only close the connection)
    _answered = False

    def setup(self) -> None:
        """A socket timeout on every connection: a silent client cannot hold a thread forever."""
        super().setup()
        self.connection.settimeout(self.server.request_timeout)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    # ------------------------------------------------------------------ host, origin, token
    def _host_ok(self, value: str) -> bool:
        """Whether ``value`` (a Host, or an Origin without its scheme) names this server as the client reached it.

        Accepted: the address the connection came in on (an IP literal: no DNS name can be
        rebound to it), the loopback names when that address is loopback, and the name given
        to ``--host``; always with the bound port. Anything else is another site's name
        resolving to this machine (DNS rebinding) or a mistake.
        """
        match = _HOST.fullmatch(value.strip())
        if match is None:
            return False
        port = self.server.server_address[1]
        if int(match.group(2) or 80) != port:
            return False
        name = match.group(1).lower()
        local = str(self.connection.getsockname()[0])
        try:
            address = ipaddress.ip_address(local.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        names = {f"[{address}]" if address.version == 6 else str(address)}
        if address.is_loopback:
            names |= LOOPBACK_NAMES
        if self.server.bound_name not in WILDCARDS:
            names.add(self.server.bound_name)
        return name in names

    def _token_ok(self, given: str) -> bool:
        return bool(given) and secrets.compare_digest(given.encode("utf-8", "replace"), self.server.token.encode())

    def _cookie_token(self) -> str:
        """The token in the page's cookie, or "" (also for a malformed Cookie header)."""
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return ""
        return cookie[COOKIE].value if COOKIE in cookie else ""

    def _check_access(self, method: str, query: dict[str, list[str]]) -> None:
        """Refuse a request for another Host (421), from another site, or without the token (403).

        The cookie is the one credential a browser adds by itself, to requests of any page of
        the same site (every port of 127.0.0.1), so it counts only for the page's own requests
        (``Sec-Fetch-Site``), and a POST also needs the header or the page's own Origin.
        """
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or not self._host_ok(hosts[0]):
            raise Refused(HTTPStatus.MISDIRECTED_REQUEST,
                          f"this studio does not serve the Host {hosts[0] if hosts else '(none)'!r}: open the address "
                          f"the studio printed")
        origin = self.headers.get("Origin")
        if origin is not None and not (origin.startswith("http://") and self._host_ok(origin.removeprefix("http://"))):
            raise Refused(HTTPStatus.FORBIDDEN, f"forbidden: a request from another site (Origin {origin!r})")
        by_header = self._token_ok(self.headers.get("X-Studio-Token", ""))
        by_query = any(self._token_ok(t) for t in query.get("token", []))
        by_cookie = (self.headers.get("Sec-Fetch-Site", "same-origin").lower() in ("same-origin", "none")
                     and self._token_ok(self._cookie_token()))
        if method == "POST":
            if not (by_header or (origin is not None and (by_cookie or by_query))):
                raise Refused(HTTPStatus.FORBIDDEN, "forbidden: a change needs the token in the X-Studio-Token "
                                                    "header (the studio's page sends it)")
        elif not (by_header or by_query or by_cookie):
            raise Refused(HTTPStatus.FORBIDDEN, "forbidden: open the address the studio printed (it carries the token)")

    # ------------------------------------------------------------------ answers
    def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None,
              fresh: bool = False) -> None:
        """``fresh``: never cached (masks, previews: what the page shows must be what is on disk now)."""
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        no_store = fresh or kind.startswith("application/json")
        self.send_header("Cache-Control", "no-store" if no_store else "private, max-age=60")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self._unread:
            self.send_header("Connection", "close")      # the body left unread is no next request
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any, status: int = 200, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), "application/json; charset=utf-8", extra)

    def _error(self, status: int, message: str, **more: Any) -> None:
        """One line of JSON saying what was wrong."""
        self._json({"error": " ".join(message.split())[:500], **more}, status)

    def _route(self, method: str) -> None:
        self._unread = "Transfer-Encoding" in self.headers or self.headers.get("Content-Length", "0").strip() != "0"
        self._answered = False
        try:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            self._check_access(method, query)
            self._dispatch(method, url.path, query)
        except Exception as exc:        # noqa: BLE001 - every failure gets an answer (or a clean close)
            self._answer_failure(exc, method)
        finally:
            if self._unread:
                self._linger()

    def _answer_failure(self, exc: Exception, method: str) -> None:
        """The one line that says why a request failed: refused input 4xx, a bug 500 (traceback to the log only)."""
        if isinstance(exc, (ConnectionError, TimeoutError)) or self._answered:
            self.close_connection = True              # the client went away or stalled, or the answer has begun
            if not isinstance(exc, (ConnectionError, TimeoutError)):
                log.error("studio: %s %s failed while answering: %s", method, self.path.split("?")[0], exc)
            return
        if isinstance(exc, Refused):
            self._error(exc.status, str(exc))
        elif isinstance(exc, masks.MaskConflict):
            try:
                theirs, version = masks.current_mask(self.server.root, exc.set_name, exc.face_id)
            except UserError as gone:                 # the face went away meanwhile: say that
                self._error(HTTPStatus.CONFLICT, f"{exc}; {gone}")
                return
            self._json({"error": str(exc), "conflict": exc.face_id, "current": version,
                        "theirs": masks.png_base64(theirs)}, HTTPStatus.CONFLICT)
        elif isinstance(exc, UserError):
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        elif isinstance(exc, (ValueError, KeyError)):
            self._error(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
        else:
            # a bug, not bad input: the traceback goes to the studio's log, the client gets one line
            log.error("studio: %s %s failed", method, self.path.split("?")[0], exc_info=exc)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "the studio failed on this request (its log says why)")

    def _linger(self) -> None:
        """Read and drop what the client still sends of a refused body, briefly, then close.

        Closing a socket with unread data resets the connection, and a client still sending can
        lose the answer under that reset; so up to LINGER_BYTES are read for LINGER_S.
        """
        self.close_connection = True
        deadline = time.monotonic() + LINGER_S
        dropped = 0
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while dropped < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                dropped += len(chunk)
        except OSError:
            pass

    # ------------------------------------------------------------------ routes
    def _dispatch(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        root = self.server.root
        one = {k: v[0] for k, v in query.items()}
        if method not in ("GET", "POST"):
            self._json({"error": f"{method} is not served here (GET and POST are)"}, HTTPStatus.METHOD_NOT_ALLOWED,
                       {"Allow": "GET, POST"})
        elif method == "GET" and path in ("/", "/index.html"):
            cookie = f"{COOKIE}={self.server.token}; Path=/; HttpOnly; SameSite=Strict"
            # the page's POSTs send the token from here (no other origin can read this page)
            page = (STATIC / "index.html").read_bytes().replace(
                b'<meta name="studio-token" content="">',
                f'<meta name="studio-token" content="{self.server.token}">'.encode())
            self._send(200, page, "text/html; charset=utf-8", {"Set-Cookie": cookie}, fresh=True)
        elif method == "GET" and path.startswith("/static/"):
            name = path.removeprefix("/static/")
            file = STATIC / name
            if not _STATIC_NAME.fullmatch(name) or not file.is_file():
                raise Refused(HTTPStatus.NOT_FOUND, "not found")
            self._send(200, file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream")
        elif method == "GET" and path == "/api/faces":
            ref = _id_text(one["ref"], "ref") if one.get("ref") else None
            self._json(faces.face_list(root, one.get("set", "dst"), one.get("sort", "frame"), ref))
        elif method == "GET" and path == "/api/people":
            self._json(faces.person_list(root, one.get("set", "dst")))
        elif method == "GET" and path.startswith("/thumb/"):
            set_name, face_id = _face_path(path, ".jpg")
            self._send(200, faces.thumbnail(root, set_name, face_id), "image/jpeg")
        elif method == "POST" and path in ("/api/delete", "/api/restore"):
            body = self._body()
            set_name, ids = _set(body.get("set", "dst")), _ids(_required(body, "ids"))
            act = faces.delete_faces if path == "/api/delete" else faces.restore_faces
            self._json({"moved": act(root, set_name, ids)})
        elif method == "GET" and path == "/api/face":
            self._json(masks.face_state(root, one.get("set", "dst"), _id_text(_required(one, "id"), "id")))
        elif method == "GET" and path.startswith("/aligned/"):
            set_name, face_id = _face_path(path, "")
            data, kind = masks.aligned_image(root, set_name, face_id)
            self._send(200, data, kind, fresh=True)
        elif method == "GET" and path.startswith("/mask/"):
            set_name, face_id = _face_path(path, ".png")
            pixels, version = masks.current_mask(root, set_name, face_id)
            self._send(200, encode(pixels, ".png", rgb=False), "image/png", {"X-Mask-Version": version}, fresh=True)
        elif method == "GET" and path == "/api/predict":
            pixels = masks.predict(root, one.get("set", "dst"), _id_text(_required(one, "id"), "id"))
            self._send(200, encode(pixels, ".png", rgb=False), "image/png", fresh=True)
        elif method == "POST" and path in ("/api/mask", "/api/accept"):
            body = self._body(MAX_ACCEPT_BODY if path == "/api/accept" else MAX_BODY)
            items = _items(_required(body, "items")) if path == "/api/accept" else [body]
            set_name, force = _set(body.get("set", "dst")), _bool(body.get("force", False), "force")
            edits = [_edit(item) for item in items]
            self._json(masks.save_masks(root, set_name, edits, force=force))
        elif method == "POST" and path == "/api/carry":
            body = self._body()
            set_name, face_id = _set(body.get("set", "dst")), _int(_required(body, "id"), "id")
            count = _int(body.get("count", 10), "count")
            flow, anchor = _bool(body.get("flow", False), "flow"), _str(body.get("anchor", "frame"), "anchor")
            png = body.get("png")
            mask = masks.decode_mask(masks.png_data(_str(png, "png"))) if png not in (None, "") else None
            self._json({"proposals": masks.carry_forward(root, set_name, face_id, count, mask, flow, anchor)})
        elif method == "GET" and path.startswith("/frame/"):
            set_name, face_id = _face_path(path, ".jpg")
            self._send(200, frames.source_frame(root, set_name, face_id), "image/jpeg", fresh=True)
        elif method == "GET" and path == "/api/convert-settings":
            self._json(frames.convert_settings())
        elif method == "GET" and path.startswith("/preview/"):
            frame = _id_text(_suffixed(path.removeprefix("/preview/"), ".jpg"), "frame", 0, MAX_FRAME)
            settings = {k: v for k, v in one.items() if k not in ("token", "person")}
            person = _person(one["person"]) if "person" in one else None
            self._send(200, frames.convert_preview(root, frame, settings, person), "image/jpeg", fresh=True)
        else:
            raise Refused(HTTPStatus.NOT_FOUND, "not found")

    def _body(self, cap: int = MAX_BODY) -> dict[str, Any]:
        """The JSON object a POST sends, read within ``request_timeout``; refused unless JSON and at most ``cap``.

        A form of another site can only send text/plain or form data, so JSON also keeps those out.
        """
        kind = self.headers.get("Content-Type", "")
        if kind.split(";")[0].strip().lower() != "application/json":
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                          f"a POST sends JSON with Content-Type: application/json, not {kind or 'none'!r}")
        if "Transfer-Encoding" in self.headers:
            raise Refused(HTTPStatus.BAD_REQUEST, "send the body with a Content-Length, not a Transfer-Encoding")
        given = self.headers.get_all("Content-Length") or []
        text = given[0].strip() if len(set(given)) == 1 else ""
        if not (text.isascii() and text.isdigit() and len(text) <= 15):
            raise Refused(HTTPStatus.BAD_REQUEST, f"Content-Length must be one count of bytes, not "
                                                  f"{', '.join(repr(g[:20]) for g in given) or 'none'}")
        length = int(text)
        if length > cap:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          f"a request of {length} bytes is too large (at most {cap} here)")
        data = self._read(length)
        self._unread = False
        return _json_object(data)

    def _read(self, length: int) -> bytes:
        """``length`` bytes of body, all within ``request_timeout`` (a trickle does not stretch it)."""
        limit = self.server.request_timeout
        deadline = time.monotonic() + limit
        parts: list[bytes] = []
        got = 0
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(length - got, 1 << 16))
                if not chunk:
                    raise Refused(HTTPStatus.BAD_REQUEST, f"the body ended after {got} of its {length} bytes")
                parts.append(chunk)
                got += len(chunk)
        except TimeoutError:
            raise Refused(HTTPStatus.REQUEST_TIMEOUT,
                          f"the body did not arrive within {limit:g} s ({got} of {length} bytes)") from None
        finally:
            self.connection.settimeout(limit)
        return b"".join(parts)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    def do_OPTIONS(self) -> None:  # noqa: N802 - a CORS preflight: no CORS here, so the browser sends nothing
        self._route("OPTIONS")


# ---------------------------------------------------------------------- what a request may send

#: a video frame index (2^31 frames: over two years at 25 fps)
MAX_FRAME = 2**31 - 1


def _shown(value: Any) -> str:
    """A sent value in an error line, short."""
    try:
        text = json.dumps(value) if not isinstance(value, float) else repr(value)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _json_object(data: bytes) -> dict[str, Any]:
    """The body as a JSON object; no NaN or Infinity, no nesting deeper than Python's stack."""
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is no JSON number")

    try:
        body = json.loads(data, parse_constant=no_constant) if data.strip() else {}
    except RecursionError:
        raise Refused(HTTPStatus.BAD_REQUEST, "the body is not JSON we read: nested too deeply") from None
    except ValueError as exc:                   # also bytes that are no UTF-8, and ints over 4300 digits
        raise Refused(HTTPStatus.BAD_REQUEST, f"the body is not JSON we read: {exc}") from None
    if not isinstance(body, dict):
        raise Refused(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
    return body


def _required(fields: dict[str, Any], name: str) -> Any:
    if name not in fields:
        raise Refused(HTTPStatus.BAD_REQUEST, f"the request has no '{name}'")
    return fields[name]


def _int(value: Any, what: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """A JSON whole number (not a bool, a float or a string) from ``low`` to ``high`` (SQLite's int64 by default)."""
    if type(value) is not int:
        raise Refused(HTTPStatus.BAD_REQUEST, f"{what} must be a whole number, not {_shown(value)}")
    if not low <= value <= high:
        raise Refused(HTTPStatus.BAD_REQUEST, f"{what} {_shown(value)} is out of range ({low} to {high})")
    return value


def _id_text(text: str, what: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """A whole number in an address (ASCII digits only: int() would also take other scripts' digits)."""
    if not _ID_TEXT.fullmatch(text):
        raise Refused(HTTPStatus.BAD_REQUEST, f"{what} must be a whole number, not {text[:40]!r}")
    return _int(int(text), what, low, high)


def _suffixed(name: str, suffix: str) -> str:
    if not name.endswith(suffix):
        raise Refused(HTTPStatus.NOT_FOUND, "not found")
    return name.removesuffix(suffix)


def _face_path(path: str, suffix: str) -> tuple[str, int]:
    """``/<kind>/<set>/<id><suffix>`` as (set, id); another shape is 404, an id that is no number 400."""
    parts = path.split("/")
    if len(parts) != 4:
        raise Refused(HTTPStatus.NOT_FOUND, "not found")
    return parts[2], _id_text(_suffixed(parts[3], suffix), "face id")


def _set(value: Any) -> str:
    if not isinstance(value, str) or value not in SETS:
        raise Refused(HTTPStatus.BAD_REQUEST, f"unknown face set {_shown(value)} (dst or src)")
    return value


def _person(text: str) -> str:
    """``person=`` of a preview: a person's number (1 or more, at most MAX_FRAME) or ``all``."""
    if text.strip().lower() == "all":
        return "all"
    return str(_id_text(text, "person", 1, MAX_FRAME))


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise Refused(HTTPStatus.BAD_REQUEST, f"{what} must be true or false, not {_shown(value)}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Refused(HTTPStatus.BAD_REQUEST, f"{what} must be a string, not {_shown(value)}")
    return value


def _ids(value: Any) -> list[int]:
    """Face ids: a list of at most MAX_IDS whole numbers in SQLite's range."""
    if not isinstance(value, list):
        raise Refused(HTTPStatus.BAD_REQUEST, f"ids must be a list of face ids, not {_shown(value)}")
    if len(value) > MAX_IDS:
        raise Refused(HTTPStatus.BAD_REQUEST, f"{len(value)} ids in one request; at most {MAX_IDS} at once")
    return [_int(i, "a face id") for i in value]


def _items(value: Any) -> list[dict[str, Any]]:
    """The masks of one accept: a list of 1 to MAX_CARRY objects."""
    if not isinstance(value, list) or not value or not all(isinstance(i, dict) for i in value):
        raise Refused(HTTPStatus.BAD_REQUEST, "items must be a list of masks ({id, base, png} objects)")
    if len(value) > masks.MAX_CARRY:
        raise Refused(HTTPStatus.BAD_REQUEST, f"{len(value)} masks in one request; at most {masks.MAX_CARRY} at once")
    return value


def _edit(item: dict[str, Any]) -> masks.MaskEdit:
    png = _str(_required(item, "png"), "png")
    return masks.MaskEdit(_int(_required(item, "id"), "id"), masks.decode_mask(masks.png_data(png)),
                          _str(_required(item, "base"), "base"))


def start(opts: StudioOptions) -> tuple[StudioServer, threading.Thread]:
    """A running studio in a background thread (tests, and ``run_studio``)."""
    layout.require(opts.workspace)
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
