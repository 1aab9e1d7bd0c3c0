"""The studio's server against a hostile client (issue 25, items 6 and 11).

Another web page in the same browser must not change the workspace (the cookie alone never
authorises a change; a foreign ``Origin`` or ``Host`` is refused: CSRF and DNS rebinding),
and no request, however malformed, may crash a handler, hold it forever or answer 500.
These talk raw HTTP to a real studio over the small workspace in tests/data.
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from studio.options import StudioOptions
from studio.server import StudioServer, start
from tests.conftest import copy_v1_workspace

INT64_MAX = 2**63 - 1


@dataclass
class Studio:
    ws: Path
    port: int
    token: str
    server: StudioServer

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.host}"


@pytest.fixture
def studio(tmp_path):
    ws = copy_v1_workspace(tmp_path)
    server, _ = start(StudioOptions(workspace=ws, port=0))
    yield Studio(ws, server.server_address[1], server.token, server)
    server.shutdown()
    server.server_close()


def _request(st: Studio, method: str, path: str, body: bytes | str | None = None,
             headers: dict[str, str] | None = None, host: str | None = "default",
             timeout: float = 15) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection with exactly these headers (``host=None``: no Host header)."""
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", st.host if host == "default" else host)
        data = body.encode() if isinstance(body, str) else body
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders(data)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def _post(st: Studio, path: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A JSON POST as a script sends it: the token in the ``X-Studio-Token`` header."""
    status, _, data = _request(st, "POST", path, json.dumps(body),
                               {"Content-Type": "application/json", "X-Studio-Token": st.token, **(headers or {})})
    return status, data


def _faces(st: Studio) -> list[dict]:
    status, _, data = _request(st, "GET", f"/api/faces?set=dst&token={st.token}")
    assert status == 200
    return json.loads(data)["faces"]


def _one_line_error(data: bytes) -> str:
    """The error of a refused request: JSON with one line of text, no traceback."""
    error = json.loads(data)["error"]
    assert isinstance(error, str) and error and "\n" not in error and "Traceback" not in error
    return error


def _cookie(st: Studio) -> str:
    status, headers, _ = _request(st, "GET", f"/?token={st.token}")
    assert status == 200
    return headers["set-cookie"].split(";")[0]


def _raw(st: Studio, data: bytes, timeout: float = 10) -> bytes:
    """Bytes sent as they are; what comes back until the server answers (or closes)."""
    with socket.create_connection(("127.0.0.1", st.port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def _status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1."), raw[:200]
    return int(raw.split(b" ", 2)[1])


# ---------------------------------------------------------------------- item 6: CSRF and DNS rebinding


def test_a_cookie_alone_never_changes_anything(studio):
    """The attack as found: another page's form (text/plain, its own Origin) with the browser's cookie."""
    cookie = _cookie(studio)
    victim = [f for f in _faces(studio) if not f["dropped"]][0]
    aligned = studio.ws / "data_dst" / "aligned" / victim["file"]
    body = json.dumps({"set": "dst", "ids": [victim["id"]]})
    for headers in ({"Content-Type": "text/plain", "Origin": "http://evil.example"},
                    {"Content-Type": "application/json", "Origin": "http://evil.example"},
                    {"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"},     # another port: same site
                    {"Content-Type": "application/json", "Origin": "null"},                   # a sandboxed frame
                    {"Content-Type": "application/json"}):                                    # no Origin at all
        status, _, data = _request(studio, "POST", "/api/delete", body, {"Cookie": cookie, **headers})
        assert status == 403, (headers, status, data)
        _one_line_error(data)
        assert aligned.exists()
    # the mask editor's forced save, the same way
    mask = studio.ws / "data_dst" / "masks" / Path(victim["file"]).with_suffix(".png").name
    before = mask.read_bytes()
    status, _, _ = _request(studio, "POST", "/api/mask",
                            json.dumps({"set": "dst", "id": victim["id"], "base": "x", "png": "AAAA", "force": True}),
                            {"Cookie": cookie, "Content-Type": "text/plain", "Origin": "http://evil.example"})
    assert status == 403 and mask.read_bytes() == before
    # the token in the address is no header: a POST carrying it without the page's Origin is refused too
    status, _, _ = _request(studio, "POST", f"/api/delete?token={studio.token}", body,
                            {"Content-Type": "application/json"})
    assert status == 403 and aligned.exists()


def test_another_pages_requests_with_the_cookie_are_refused_even_reads(studio):
    """A page on another port (same site: the browser sends the cookie) cannot even make the studio work for it."""
    cookie = _cookie(studio)
    for site in ("same-site", "cross-site"):
        for path in ("/api/faces?set=dst", "/thumb/dst/1.jpg", "/preview/0.jpg"):
            status, _, _ = _request(studio, "GET", path, headers={"Cookie": cookie, "Sec-Fetch-Site": site})
            assert status == 403, (site, path, status)
    status, _, _ = _request(studio, "GET", "/api/faces?set=dst", headers={"Cookie": cookie,
                                                                          "Sec-Fetch-Site": "same-origin"})
    assert status == 200


def test_the_page_itself_and_scripts_with_the_header_may_change(studio):
    cookie = _cookie(studio)
    faces = [f for f in _faces(studio) if not f["dropped"]]
    # the page: same origin, its cookie (localhost is the same loopback server)
    for origin, host in ((studio.origin, studio.host), (f"http://localhost:{studio.port}", f"localhost:{studio.port}")):
        status, _, data = _request(studio, "POST", "/api/delete", json.dumps({"set": "dst", "ids": [faces[0]["id"]]}),
                                   {"Cookie": cookie, "Content-Type": "application/json", "Origin": origin,
                                    "Sec-Fetch-Site": "same-origin"}, host=host)
        assert status == 200, data
        status, _, data = _request(studio, "POST", "/api/restore", json.dumps({"set": "dst", "ids": [faces[0]["id"]]}),
                                   {"Cookie": cookie, "Content-Type": "application/json", "Origin": origin},
                                   host=host)
        assert status == 200 and json.loads(data) == {"moved": 1}
    # a script: the header
    assert _post(studio, "/api/delete", {"set": "dst", "ids": [faces[1]["id"]]}) == (200, b'{"moved": 1}')
    # the page gets the token only inside its own HTML (which no other origin can read), for that header
    status, headers, html = _request(studio, "GET", f"/?token={studio.token}")
    assert status == 200 and f'content="{studio.token}"'.encode() in html
    assert headers["cache-control"] == "no-store"


def test_json_posts_need_the_json_content_type(studio):
    victim = [f for f in _faces(studio) if not f["dropped"]][0]
    body = json.dumps({"set": "dst", "ids": [victim["id"]]})
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"X-Studio-Token": studio.token, **({"Content-Type": kind} if kind else {})}
        status, _, data = _request(studio, "POST", "/api/delete", body, headers)
        assert status == 415, (kind, status)
        assert "application/json" in _one_line_error(data)
    assert (studio.ws / "data_dst" / "aligned" / victim["file"]).exists()
    status, _ = _post(studio, "/api/delete", json.loads(body), {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1", "127.0.0.1:1",
                                  "localhost.:{port}", "127.0.0.1:{port}@evil.example", "", None])
def test_a_foreign_host_header_is_refused_on_every_request(studio, host):
    """DNS rebinding: evil.example resolving to 127.0.0.1 sends its own name as Host."""
    given = host.format(port=studio.port) if host is not None else None
    cookie = _cookie(studio)
    before = _faces(studio)
    for method, path, body in (("GET", f"/?token={studio.token}", None),
                               ("GET", f"/api/faces?set=dst&token={studio.token}", None),
                               ("GET", "/static/studio.js", None),
                               ("POST", "/api/delete", json.dumps({"set": "dst", "ids": [before[0]["id"]]}))):
        headers = {"Cookie": cookie, "X-Studio-Token": studio.token, "Content-Type": "application/json"}
        status, _, data = _request(studio, method, path, body, headers, host=given)
        assert status in (403, 421), (given, path, status)
        assert b"Host" in data
    assert _faces(studio) == before


def test_loopback_names_are_accepted_for_a_loopback_bind(studio):
    for host in (f"127.0.0.1:{studio.port}", f"localhost:{studio.port}", f"LOCALHOST:{studio.port}"):
        status, _, _ = _request(studio, "GET", f"/api/faces?set=dst&token={studio.token}", host=host)
        assert status == 200, host


def _lan_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_a_server_on_every_interface_accepts_the_address_it_was_reached_at(tmp_path):
    ws = copy_v1_workspace(tmp_path)
    server, _ = start(StudioOptions(workspace=ws, port=0, host="0.0.0.0"))
    try:
        st = Studio(ws, server.server_address[1], server.token, server)
        path = f"/api/faces?set=dst&token={st.token}"
        assert _request(st, "GET", path)[0] == 200
        assert _request(st, "GET", path, host=f"localhost:{st.port}")[0] == 200
        assert _request(st, "GET", path, host=f"evil.example:{st.port}")[0] in (403, 421)
        lan = _lan_address()
        if lan is not None:
            conn = http.client.HTTPConnection(lan, st.port, timeout=10)
            try:
                conn.request("GET", path)          # Host: the LAN address and port, as a browser on the LAN sends
                assert conn.getresponse().status == 200
            except OSError:
                pass                                # no route to our own address here: nothing to check
            finally:
                conn.close()
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------- item 11: robustness


BAD_BODIES = [
    ("/api/delete", {"set": "dst", "ids": 5}),
    ("/api/delete", {"set": "dst", "ids": [None]}),
    ("/api/delete", '{"set": "dst", "ids": [1e999]}'),
    ("/api/delete", '{"set": "dst", "ids": [NaN]}'),
    ("/api/delete", {"set": "dst", "ids": [10**23]}),
    ("/api/delete", {"set": "dst", "ids": [-(2**63) - 1]}),
    ("/api/delete", {"set": "dst", "ids": ["1"]}),
    ("/api/delete", {"set": "dst", "ids": [True]}),
    ("/api/delete", {"set": "dst", "ids": [1.5]}),
    ("/api/delete", {"set": "dst", "ids": "1,2"}),
    ("/api/delete", {"set": "dst"}),
    ("/api/delete", {"set": "moon", "ids": [1]}),
    ("/api/delete", {"set": 5, "ids": [1]}),
    ("/api/delete", {"set": ["dst"], "ids": [1]}),
    ("/api/restore", {"set": "dst", "ids": {"1": 1}}),
    ("/api/delete", [1, 2]),
    ("/api/delete", "null"),
    ("/api/delete", "{"),
    ("/api/delete", "[" * 100_000 + "]" * 100_000),
    ("/api/delete", '{"ids": [' + "9" * 5000 + "]}"),
    ("/api/delete", b'{"set": "\xff\xfe"}'),
    ("/api/mask", {"set": "dst", "id": 10**23, "base": "x", "png": "AAAA"}),
    ("/api/mask", {"set": "dst", "id": "1", "base": "x", "png": "AAAA"}),
    ("/api/mask", {"set": "dst", "id": 1, "base": None, "png": "AAAA"}),
    ("/api/mask", {"set": "dst", "id": 1, "base": "x", "png": 5}),
    ("/api/mask", {"set": "dst", "id": 1, "base": "x", "png": "AAAA", "force": "yes"}),
    ("/api/mask", {"set": "dst", "id": 1, "base": "x", "png": "AAAA", "force": 1}),
    ("/api/accept", {"set": "dst", "items": 5}),
    ("/api/accept", {"set": "dst", "items": [5]}),
    ("/api/accept", {"set": "dst", "items": [{"id": [1], "base": "x", "png": "AAAA"}]}),
    ("/api/accept", {"set": "dst", "items": [{"id": 1, "base": "x", "png": "AAAA"}] * 501}),
    ("/api/carry", {"set": "dst", "id": 1, "count": "10"}),
    ("/api/carry", {"set": "dst", "id": 1, "count": 10**30}),
    ("/api/carry", {"set": "dst", "id": 1, "count": 2.5}),
    ("/api/carry", {"set": "dst", "id": 1, "flow": "no"}),
    ("/api/carry", {"set": "dst", "id": 1, "anchor": 5}),
    ("/api/carry", {"set": "dst", "id": 1, "png": 7}),
    ("/api/carry", {"set": "dst", "id": None}),
]


@pytest.mark.parametrize("path, body", BAD_BODIES, ids=[f"{p}:{str(b)[:40]}" for p, b in BAD_BODIES])
def test_a_bad_json_field_is_one_line_400(studio, path, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    status, _, answer = _request(studio, "POST", path, data,
                                 {"Content-Type": "application/json", "X-Studio-Token": studio.token})
    assert status == 400, (status, answer[:300])
    _one_line_error(answer)
    assert len(_faces(studio)) == 6                                  # still up, nothing moved


BAD_PATHS = ["/thumb/dst/100000000000000000000000.jpg", "/thumb/dst/-1.jpg", "/thumb/dst/%EF%BC%91.jpg",
             "/thumb/dst/1e5.jpg", "/thumb/dst/.jpg", "/thumb/dst/1", "/thumb/dst", "/thumb/dst/1/2.jpg",
             "/mask/dst/100000000000000000000000.png", "/mask/dst/abc.png", "/mask/moon/1.png",
             "/frame/dst/100000000000000000000000.jpg", "/frame/dst/9223372036854775808.jpg",
             "/aligned/dst/100000000000000000000000", "/aligned/dst/x",
             "/api/face?set=dst&id=100000000000000000000000", "/api/face?set=dst&id=x", "/api/face?set=dst",
             "/api/predict?set=dst&id=100000000000000000000000",
             "/api/faces?set=dst&sort=identity&ref=100000000000000000000000", "/api/faces?set=dst&ref=1.5",
             "/preview/100000000000000000000000.jpg", "/preview/-3.jpg", "/preview/x.jpg",
             "/static/%00", "/static/\x00x"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_bad_path_id_is_400_or_404(studio, path):
    sep = "&" if "?" in path else "?"
    status, _, data = _request(studio, "GET", f"{path}{sep}token={studio.token}".replace("\x00", "%00"))
    assert status in (400, 404), (path, status, data[:300])
    _one_line_error(data)


def test_a_token_that_is_no_ascii_is_refused_not_a_crash(studio):
    for path, headers in ((f"/api/faces?set=dst&token=%C3%A9{studio.token}", {}),
                          ("/api/faces?set=dst", {"X-Studio-Token": "\u00e9"}),
                          ("/api/faces?set=dst", {"Cookie": "studio_token=\u00e9\u00e9"}),
                          ("/api/faces?set=dst", {"Cookie": 'studio_token="\\377'})):
        status, _, _ = _request(studio, "GET", path, headers=headers)
        assert status == 403


@pytest.mark.parametrize("length", [b"-1", b"abc", b"1e3", b" ", b"0x10", b"99999999999999999999999999"])
def test_a_bad_content_length_is_400_at_once(studio, length):
    request = (b"POST /api/delete HTTP/1.1\r\nHost: " + studio.host.encode() + b"\r\nX-Studio-Token: "
               + studio.token.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: " + length
               + b"\r\n\r\n{}")
    start_ = time.monotonic()
    status = _status_of(_raw(studio, request))
    assert status in (400, 413) and time.monotonic() - start_ < 5


def test_a_body_over_the_cap_is_refused_at_once_and_a_long_id_list_quickly(studio):
    # 60 MB announced: refused before a byte of it is read
    head = (f"POST /api/delete HTTP/1.1\r\nHost: {studio.host}\r\nX-Studio-Token: {studio.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 60000000\r\n\r\n").encode()
    start_ = time.monotonic()
    assert _status_of(_raw(studio, head + b'{"set": "dst", "ids": [' + b"1, " * 20000)) == 413
    assert time.monotonic() - start_ < 5
    # under the byte cap, over the count cap: parsed and refused in well under a few seconds
    start_ = time.monotonic()
    status, data = _post(studio, "/api/delete", {"set": "dst", "ids": list(range(1_000_000, 1_300_000))})
    assert status == 400 and "at most" in _one_line_error(data)
    assert time.monotonic() - start_ < 5
    assert all(not f["dropped"] for f in _faces(studio)[:2])


def test_a_client_that_sends_less_than_it_announced_is_cut_off(studio):
    studio.server.request_timeout = 1.5
    head = (f"POST /api/delete HTTP/1.1\r\nHost: {studio.host}\r\nX-Studio-Token: {studio.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", studio.port), timeout=10) as slow:
        slow.sendall(head + b'{"set": "dst", "ids": [')
        # meanwhile the studio serves everyone else
        assert len(_faces(studio)) == 6
        start_ = time.monotonic()
        got = slow.recv(65536)
        assert _status_of(got) == 408 and time.monotonic() - start_ < 8
        assert "Traceback" not in got.decode(errors="replace")
    # a trickle of bytes does not stretch it either: the whole body has one deadline
    with socket.create_connection(("127.0.0.1", studio.port), timeout=10) as slow:
        slow.sendall(head)
        start_ = time.monotonic()
        answered = threading.Event()

        def trickle() -> None:
            for _ in range(40):
                if answered.is_set():
                    return
                try:
                    slow.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.2)

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        got = slow.recv(65536)
        answered.set()
        assert _status_of(got) == 408 and time.monotonic() - start_ < 5


def test_an_unknown_method_is_refused_without_a_crash(studio):
    for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
        status, _, _ = _request(studio, method, f"/api/delete?token={studio.token}",
                                headers={"Origin": "http://evil.example",
                                         "Access-Control-Request-Method": "POST"})
        assert 400 <= status < 500


# ---------------------------------------------------------------------- fuzz


def _fuzz_value(rng: random.Random, depth: int = 0) -> object:
    choices = [None, True, False, 0, -1, 1, 2, 3, 10**23, -(10**23), 2**63, 2**63 - 1, 1.5, float("nan"),
               "", "dst", "src", "moon", "\u00e9", "x" * 1000, "AAAA", "data:image/png;base64,AAAA",
               "frame", "face"]
    if depth < 3 and rng.random() < 0.3:
        if rng.random() < 0.5:
            return [_fuzz_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(["id", "ids", "set", "items", "png", "base", "force", "count", "flow", "anchor"]):
                _fuzz_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return rng.choice(choices)


def _fuzz_body(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
    if kind < 0.2:
        return json.dumps(_fuzz_value(rng)).encode()
    body = {k: _fuzz_value(rng) for k in rng.sample(["id", "ids", "set", "items", "png", "base", "force", "count",
                                                     "flow", "anchor"], rng.randint(0, 6))}
    if rng.random() < 0.5:
        body["set"] = rng.choice(["dst", "src"])
    return json.dumps(body, allow_nan=True).encode()


def _fuzz_path(rng: random.Random) -> str:
    number = rng.choice(["1", "0", "-1", "5", "99999", "100000000000000000000000", "9223372036854775807",
                         "x", "", "1.0", "%EF%BC%91", "%00", "1e3"])
    set_name = rng.choice(["dst", "src", "moon", "", ".."])
    return rng.choice([f"/thumb/{set_name}/{number}.jpg", f"/mask/{set_name}/{number}.png",
                       f"/frame/{set_name}/{number}.jpg", f"/aligned/{set_name}/{number}",
                       f"/api/face?set={set_name}&id={number}", f"/api/faces?set={set_name}&sort=identity&ref={number}",
                       f"/api/faces?set={set_name}&sort={number}", f"/preview/{number}.jpg?face_scale={number}",
                       f"/api/predict?set={set_name}&id={number}", f"/static/{number}", "/api/convert-settings",
                       f"/{number}", f"/api/{number}", "/"])


def test_fuzz_never_answers_500_and_the_studio_stays_up(studio):
    rng = random.Random(25)
    cookie = _cookie(studio)
    start_ = time.monotonic()
    statuses: dict[int, int] = {}
    for i in range(300):
        auth = rng.choice([{"X-Studio-Token": studio.token}, {"Cookie": cookie, "Origin": studio.origin},
                           {"Cookie": cookie}, {}])
        if rng.random() < 0.5:
            path = rng.choice(["/api/delete", "/api/restore", "/api/mask", "/api/accept", "/api/carry", "/api/x"])
            headers = {"Content-Type": rng.choice(["application/json"] * 4 + ["text/plain"]), **auth}
            status, _, data = _request(studio, "POST", path, _fuzz_body(rng), headers)
        else:
            path = _fuzz_path(rng).replace("\x00", "%00")
            if rng.random() < 0.8:
                path += ("&" if "?" in path else "?") + f"token={studio.token}"
            status, _, data = _request(studio, "GET", path, headers=auth)
        assert status < 500, (i, path, status, data[:300])
        statuses[status] = statuses.get(status, 0) + 1
    assert time.monotonic() - start_ < 60
    assert statuses.get(400, 0) > 50 and statuses.get(200, 0) > 5, statuses
    assert _request(studio, "GET", f"/api/faces?set=dst&token={studio.token}")[0] == 200


EVIL_PAGE = """<!doctype html><meta charset="utf-8"><title>evil</title>
<form id="f" method="POST" enctype="text/plain" action="{studio}/api/delete">
<input name='{{"set": "dst", "ids": [{face}], "x": "' value='"}}'></form>
<script>
fetch("{studio}/api/delete", {{method: "POST", mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{set: "dst", ids: [{face}]}})}})
  .finally(() => {{ document.title = "fetched"; document.getElementById("f").submit(); }});
</script>"""


def test_a_page_on_another_port_in_chromium_cannot_delete_a_face(studio):
    """The browser itself: the studio's cookie is set, then a page of another port posts a fetch and a form."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.test_studio import chromium

    victim = [f for f in _faces(studio) if not f["dropped"]][0]
    page_html = EVIL_PAGE.format(studio=studio.origin, face=victim["id"]).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page_html)))
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args) -> None:
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with chromium() as browser:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{studio.origin}/?token={studio.token}")            # the artist's tab: the cookie is set
            page.wait_for_selector(".face")
            attacker = context.new_page()
            attacker.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            attacker.wait_for_url(f"{studio.origin}/api/delete")             # the form's POST lands on the studio
            attacker.wait_for_load_state()
            assert "forbidden" in attacker.content()
            assert (studio.ws / "data_dst" / "aligned" / victim["file"]).exists()
            assert not next(f for f in _faces(studio) if f["id"] == victim["id"])["dropped"]
    finally:
        evil.shutdown()
        evil.server_close()
