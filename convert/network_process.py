"""convert's network in a child process: the model loads beside the rest of convert's start-up.

Why: torch's import and the model's load and int8 build are most of convert's start-up
(about 1.1 of 1.6 s on the 2-core machine), and in one process they hold the interpreter's
lock, so nothing else can run beside them (a thread preparing crops during torch's import
finished no sooner than after it). In a child process they run on the other core while
convert checks the workspace, the video and the output, reads the artist's edits, plans the
faces and starts the decoder and the encoder; and in the frame loop the network's own
Python work no longer takes turns with the pool's.

The protocol is ours and small, on the child's stdin and stdout (no pickle): each message
is one JSON line, followed by as many raw bytes as its ``bytes`` field says (uint8 crops,
C order). The parent sends ``prepare`` (the calibration crops), ``enhancer``, ``threads``,
``run`` (a batch of crops) and ``close``; the child answers each with one message:
``loaded`` first (the model's facts), then ``done`` or ``result``, or ``error`` (a
``UserError``'s line, or an unexpected failure's traceback). Log records the child makes
travel with its next answer and are logged here, so they print above the progress bar as
convert's own do. The child ends at ``close`` or when its stdin closes (convert killed).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.profile import StepTimes

log = logging.getLogger("convert")

#: the folder that holds the ``convert`` package, put on the child's import path
_ROOT = Path(__file__).resolve().parents[1]


def _send(stream: IO[bytes], header: dict[str, Any], *arrays: np.ndarray) -> None:
    payload = [np.ascontiguousarray(a, np.uint8).tobytes() for a in arrays]
    header = {**header, "bytes": [len(p) for p in payload]}
    stream.write(json.dumps(header).encode() + b"\n")
    for p in payload:
        stream.write(p)
    stream.flush()


class _Channel:
    """A reading end of the protocol (the parent's on the child's stdout, the child's on its stdin): whole
    messages, and whether one has come without waiting."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.fd = stream.fileno()
        self.buf = bytearray()

    def _complete(self) -> int:
        """Bytes of the first whole message in the buffer, or 0."""
        end = self.buf.find(b"\n")
        if end < 0:
            return 0
        size = end + 1 + sum(json.loads(self.buf[:end]).get("bytes", []))
        return size if len(self.buf) >= size else 0

    def _fill(self, wait: bool) -> bool:
        if not wait and not select.select([self.fd], [], [], 0)[0]:
            return False
        data = os.read(self.fd, 1 << 20)
        if not data:
            raise EOFError
        self.buf += data
        return True

    def has_message(self) -> bool:
        """Whether a whole message can be read now (reads what the pipe holds, never waits)."""
        try:
            while not self._complete():
                if not self._fill(wait=False):
                    return False
        except EOFError:
            return True                # the end: ``read`` says so at once
        return True

    def read(self) -> tuple[dict[str, Any], list[bytes]] | None:
        """The next message (waiting for it), or None at the end of the stream."""
        try:
            while not self._complete():
                self._fill(wait=True)
        except EOFError:
            return None
        end = self.buf.find(b"\n")
        header = json.loads(self.buf[:end])
        payloads, at = [], end + 1
        for size in header.get("bytes", []):
            payloads.append(bytes(self.buf[at:at + size]))
            at += size
        del self.buf[:at]
        return header, payloads


def _expected_facts(model_dir: Path) -> dict[str, Any] | None:
    """What the child will say about the model, read from its ``options.json`` here (no torch): its options,
    resolution and convert defaults; None when the file is not as train writes it (the child's answer then
    decides, with its error)."""
    from pipeline.registries import MODEL_TYPES
    try:
        meta = json.loads((model_dir / "options.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("model_type") not in MODEL_TYPES:
        return None
    resolution = meta.get("resolution")
    if not isinstance(resolution, int) or isinstance(resolution, bool) or not isinstance(meta.get("face_type"), str):
        return None
    if "convert_defaults" not in MODEL_TYPES.get(meta["model_type"]).parts:
        return None                    # a family registered without it (a plugin, a test's): loaded in-process
    return {"meta": meta, "resolution": resolution,
            "convert_defaults": dict(MODEL_TYPES.load(meta["model_type"], "convert_defaults"))}


class ModelFacts:
    """The model as a process that only plans needs it (a cluster's driver: the workers load the network): its
    options, resolution, the family's convert defaults and whether it paints its own mask, read from
    ``options.json`` without torch. Why: torch's import and the model's load took 1.3-1.4 s of the driver's
    set-up before the first shard could be sent, on one machine and on a cluster alike."""

    plans_only = True

    def __init__(self, model_dir: Path, facts: dict[str, Any], paints_mask: bool) -> None:
        self.model_dir = Path(model_dir)
        self.meta: dict[str, Any] = facts["meta"]
        self.resolution: int = facts["resolution"]
        self.convert_defaults: dict[str, Any] = dict(facts["convert_defaults"])
        self.learned_mask = paints_mask
        self.times = StepTimes()

    @classmethod
    def read(cls, model_dir: Path) -> ModelFacts | None:
        """The facts of ``model_dir``, or None where they cannot be told without loading it (no readable
        ``options.json`` or weights, a family without the torch-free parts): the caller loads the model then, and
        its errors say what is wrong."""
        from pipeline.registries import MODEL_TYPES
        facts = _expected_facts(Path(model_dir))
        if facts is None or not (Path(model_dir) / "weights.pt").is_file():
            return None
        entry = MODEL_TYPES.get(facts["meta"]["model_type"])
        if "paints_mask" not in entry.parts:
            return None
        return cls(model_dir, facts, bool(MODEL_TYPES.load(entry.name, "paints_mask")))

    def prepare(self, precision: str, calibration: list[np.ndarray]) -> None:
        """Nothing: the workers build the network."""

    def use_enhancer(self, workspace: Path, strength: float, precision: str = "auto") -> None:
        """Nothing: the workers load the enhancer."""


def _stack(data: bytes, shape: list[int]) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(shape)


class NetworkProcess:
    """``convert.network.Network``'s interface, the model held by a child process (started at once)."""

    @classmethod
    def start(cls, model_dir: Path, device_name: str, batch: int = 1) -> NetworkProcess | None:
        """The child started on ``model_dir``, or None where convert loads the model in its own process: no
        readable ``options.json`` (the in-process load then says what is wrong, in the same words), or a
        model family the child may not know (registered at run time, by a plugin or a test, without the
        torch-free ``convert_defaults`` part the parent plans with)."""
        expected = _expected_facts(Path(model_dir))
        return None if expected is None else cls(model_dir, device_name, batch, expected)

    def __init__(self, model_dir: Path, device_name: str, batch: int = 1,
                 expected: dict[str, Any] | None = None) -> None:
        """``expected``: ``_expected_facts`` of ``model_dir`` when the caller has read them."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        self.model_dir = Path(model_dir)
        self.times = StepTimes()       # 'network': each batch's round trip
        self._proc: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-m", "convert.network_process", str(model_dir), device_name, str(batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self._proc.stdout is not None and self._proc.stdin is not None
        self._channel = _Channel(self._proc.stdout)
        # requests go out on a thread of their own: a pipe holds 64 kB, and the child reads nothing until torch
        # is imported, so a posted request (16 calibration crops, 786 kB) would hold convert up until then
        self._outbox: queue.SimpleQueue[tuple[dict[str, Any], tuple[np.ndarray, ...]] | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_all, args=(self._proc.stdin,), name="network-requests",
                                        daemon=True)
        self._sender.start()
        # read here: the parent plans with them while the child loads
        self._expected = expected if expected is not None else _expected_facts(self.model_dir)
        self._facts: dict[str, Any] | None = None
        self._learned_mask = False
        self._pending = 0              # requests sent whose answers are not read yet (``_post``)

    # ------------------------------------------------------------------ the child's answers
    def _ask(self, header: dict[str, Any], *arrays: np.ndarray) -> tuple[dict[str, Any], list[bytes]]:
        self._settle()
        return self._exchange(header, *arrays)

    def _post(self, header: dict[str, Any], *arrays: np.ndarray) -> None:
        """Send a request whose answer is read later (by the next ``_ask`` or ``_settle``): the child works on it
        while convert goes on with its own start-up. The child reads requests once it has loaded the model and
        answers them in order, after its ``loaded``."""
        if self._proc is None:
            raise RuntimeError("the network process was closed")
        self._outbox.put((header, arrays))
        self._pending += 1

    def _send_all(self, stdin: IO[bytes]) -> None:
        """The request thread: each request written in turn; the child's stdin closed at the end (``close``)."""
        try:
            while (item := self._outbox.get()) is not None:
                _send(stdin, item[0], *item[1])
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
            pass                       # the child is gone: the next answer read says so
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    def _settle(self) -> None:
        """The model's facts and the answers to every posted request, read (raising the first error)."""
        self._wait_loaded()
        while self._pending:
            self._settle_one()

    def _settle_one(self) -> None:
        self._pending -= 1
        reply, _ = self._exchange(None)
        if "learned_mask" in reply:
            self._learned_mask = bool(reply["learned_mask"])

    def _exchange(self, header: dict[str, Any] | None, *arrays: np.ndarray) -> tuple[dict[str, Any], list[bytes]]:
        proc = self._proc
        if proc is None:
            raise RuntimeError("the network process was closed")
        if header is not None:
            self._outbox.put((header, arrays))
        try:
            answer = self._channel.read()
        except (OSError, ValueError):
            answer = None
        if answer is None:
            code = proc.wait()
            self._proc = None
            self._outbox.put(None)     # the request thread ends too
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            raise UserError(f"convert's network process ended unexpectedly ({how}; killed for memory, or its "
                            f"error is above); nothing was written: run convert again", exit_code=1)
        reply, payloads = answer
        for level, name, message in reply.get("logs", []):
            logging.getLogger(name).log(level, "%s", message)
        if reply.get("event") == "error":
            self.close()
            if reply.get("user"):
                raise UserError(reply["message"], reply.get("exit_code", 2))
            raise RuntimeError(f"convert's network process failed:\n{reply['message']}")
        return reply, payloads

    def _wait_loaded(self) -> dict[str, Any]:
        if self._facts is None:
            facts, _ = self._exchange(None)
            expected = self._expected
            if expected is not None and (facts["resolution"] != expected["resolution"]
                                         or facts["meta"].get("model_type") != expected["meta"]["model_type"]
                                         or facts["meta"].get("face_type") != expected["meta"]["face_type"]):
                self.close()
                raise UserError(f"the model in {self.model_dir} changed while convert loaded it; run convert "
                                f"again", exit_code=1)
            self._facts = facts
        return self._facts

    def _known(self) -> dict[str, Any]:
        """The model's facts: as its options file states them when it could be read here, else the child's."""
        return self._expected if self._expected is not None else self._wait_loaded()

    def ready(self) -> bool:
        """Whether the child has loaded and answered every request so far; never waits (the frame loop prepares
        more crops while it is not)."""
        try:
            while (self._facts is None or self._pending) and self._channel.has_message():
                if self._facts is None:
                    self._wait_loaded()
                else:
                    self._settle_one()
        except OSError:
            return True                # a broken channel: the next request reports it
        return self._facts is not None and not self._pending

    # ------------------------------------------------------------------ Network's interface
    @property
    def meta(self) -> dict[str, Any]:
        return dict(self._known()["meta"])

    @property
    def resolution(self) -> int:
        return int(self._known()["resolution"])

    @property
    def convert_defaults(self) -> dict[str, Any]:
        return dict(self._known()["convert_defaults"])

    @property
    def learned_mask(self) -> bool:
        self._settle()
        return self._learned_mask

    def prepare(self, precision: str, calibration: list[np.ndarray]) -> None:
        """Posted: the int8 build runs in the child while convert plans the faces and starts its coders."""
        self._post({"op": "prepare", "precision": precision, "shape": _shape(calibration)}, *_arrays(calibration))

    def use_enhancer(self, workspace: Path, strength: float, precision: str = "auto") -> None:
        self._post({"op": "enhancer", "workspace": str(workspace), "strength": strength, "precision": precision})

    @contextlib.contextmanager
    def threads(self, count: int | None) -> Iterator[None]:
        """Torch's threads in the child when it runs on the CPU (it ends with the run: nothing to restore)."""
        if count is not None:
            self._post({"op": "threads", "count": count})
        yield

    def __call__(self, crops: list[np.ndarray],
                 masks: bool = False) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        if not crops:
            return [], []
        with self.times.step("network"):
            reply, payloads = self._ask({"op": "run", "masks": masks, "shape": _shape(crops)}, *_arrays(crops))
        faces = list(_stack(payloads[0], reply["shape"]))
        learned: list[np.ndarray | None] = (list(_stack(payloads[1], reply["mask_shape"])) if masks
                                            else [None] * len(crops))
        return faces, learned

    def close(self) -> None:
        """End the child (it exits at once, without torch's slow teardown)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._outbox.put(None)         # the request thread closes the child's stdin: it ends at that
        self._sender.join(timeout=10)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _shape(crops: list[np.ndarray]) -> list[int]:
    return [len(crops), *crops[0].shape] if crops else [0]


def _arrays(crops: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    return (np.stack(crops),) if crops else ()


# ---------------------------------------------------------------------- the child


class _Records(logging.Handler):
    """Keeps the child's log records for its next answer."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[list[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append([record.levelno, record.name, record.getMessage()])

    def take(self) -> list[list[Any]]:
        out, self.records = self.records, []
        return out


def _serve(argv: list[str], stdin: IO[bytes], stdout: IO[bytes]) -> None:
    records = _Records()
    root = logging.getLogger()
    root.handlers[:] = [records]
    root.setLevel(logging.INFO)

    def answer(header: dict[str, Any], *arrays: np.ndarray) -> None:
        _send(stdout, {**header, "logs": records.take()}, *arrays)

    try:
        from convert.network import Network
        model_dir, device_name, batch = Path(argv[0]), argv[1], int(argv[2])
        network = Network(model_dir, device_name, batch)
        answer({"event": "loaded", "meta": network.meta, "resolution": network.resolution,
                "device": network.device_type, "convert_defaults": network.convert_defaults})
        requests = _Channel(stdin)
        while (message := requests.read()) is not None:
            header, payloads = message
            op = header["op"]
            if op == "run":
                crops = list(_stack(payloads[0], header["shape"]))
                faces, learned = network(crops, masks=bool(header["masks"]))
                extra = (np.stack([m for m in learned if m is not None]),) if header["masks"] else ()
                answer({"event": "result", "shape": [len(faces), *faces[0].shape],
                        "mask_shape": [len(extra[0]), *extra[0].shape[1:]] if extra else None},
                       np.stack(faces), *extra)
            elif op == "prepare":
                calibration = list(_stack(payloads[0], header["shape"])) if payloads else []
                network.prepare(header["precision"], calibration)
                answer({"event": "done", "learned_mask": network.learned_mask})
            elif op == "enhancer":
                network.use_enhancer(Path(header["workspace"]), float(header["strength"]), str(header["precision"]))
                answer({"event": "done"})
            elif op == "threads":
                if network.device_type == "cpu":
                    network.torch.set_num_threads(int(header["count"]))
                answer({"event": "done"})
            else:
                raise ValueError(f"unknown request {op!r}")
    except UserError as exc:
        answer({"event": "error", "user": True, "message": str(exc), "exit_code": exc.exit_code})
    except BrokenPipeError:
        pass                                     # the parent is gone: nothing to tell
    except Exception:  # noqa: BLE001 - told to the parent, which raises it
        answer({"event": "error", "user": False, "message": traceback.format_exc()})


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: convert handles it and closes this process's stdin
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the protocol gets its own copy of stdout; anything a library prints goes to stderr instead of into it
    _channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        _serve(sys.argv[1:], sys.stdin.buffer, _channel)
    finally:
        with contextlib.suppress(OSError, ValueError):
            _channel.flush()
        os._exit(0)              # without torch's teardown (0.3-0.5 s): the parent may be waiting on it
