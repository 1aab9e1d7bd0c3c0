"""Hostile resources: tampered model options, not enough memory, a full disk, nan options, unwritable outputs.

Each case ends with one line (what, which file, what to do), a non-zero exit, and the
workspace as it was, or, where a long run had saved some of its work, the line says
what was kept. A full disk is injected (an ``OSError(ENOSPC)`` in a write, SQLite's
"database or disk is full") or, where the tests run as root, made real on a small
tmpfs; tests that would allocate without the checks run in a child process with its
address space capped, so a regression fails instead of exhausting the machine.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import resource
import sqlite3
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from tests.conftest import PHOTOS, ROOT, clean_error, snapshot

#: Address space of a child process that must refuse before allocating (torch itself needs about 2 GB).
CHILD_MEMORY = 6 << 30


# ---------------------------------------------------------------------- helpers


def run_capped(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """main.py in a child whose address space is capped: an allocation the checks should have stopped
    fails there (a traceback) instead of taking the machine's memory."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=cap, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def run_main(*args: object) -> tuple[int, list[str]]:
    """main.main in this process (so a test can inject a fault); (exit code, the 'error:' lines)."""
    import io
    from contextlib import redirect_stderr

    import main
    err = io.StringIO()
    with redirect_stderr(err):
        code = main.main([str(a) for a in args])
    text = err.getvalue()
    assert "Traceback" not in text, text
    return code, [ln for ln in text.splitlines() if ln.startswith("error:")]


def tamper(options: Path, **values: object) -> None:
    meta = json.loads(options.read_text())
    meta.update(values)
    options.write_text(json.dumps(meta))


def without(snap: dict[str, str] | None, *names: str) -> dict[str, str]:
    assert snap is not None
    return {k: v for k, v in snap.items() if not any(k == n or k.startswith(n) for n in names)}


def index_rows(ws: Path) -> tuple[list, list]:
    """The faces and frames tables, as values (the file's bytes may change when SQLite merely opens it)."""
    con = sqlite3.connect(ws / "faces.sqlite")
    try:
        faces = con.execute("SELECT * FROM faces ORDER BY id").fetchall()
        frames = con.execute("SELECT * FROM frames ORDER BY set_name, source, frame_index").fetchall()
    finally:
        con.close()
    return faces, frames


class Tmpfs:
    """A small tmpfs mounted on a folder (root only); ``None`` from ``mount`` where that is not possible."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def mount(cls, folder: Path, size: str, readonly: bool = False) -> Tmpfs | None:
        if os.geteuid() != 0:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        opts = f"size={size}" + (",ro" if readonly else "")
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True)
        return cls(folder) if res.returncode == 0 else None

    def fill(self) -> None:
        """Take every free byte (a file written until the disk refuses)."""
        with open(self.folder / "filler", "wb", buffering=0) as fh:
            for size in (1 << 16, 4096, 1):
                try:
                    while fh.write(b"\0" * size):
                        pass
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.folder)], check=False)


# ---------------------------------------------------------------------- nan, inf and ranges in every option


def _commands() -> list[tuple[str, type]]:
    import main
    return [(path, cls) for command in main.commands().values() for path, sub in command.walk()
            for _, cls in sub.option_groups()]


def _float_fields(cls: type) -> list[dataclasses.Field]:
    hints = typing.get_type_hints(cls)
    return [f for f in dataclasses.fields(cls)
            if "option" in f.metadata and hints[f.name] in (float, float | None)]


def test_every_float_option_of_every_command_refuses_nan_and_inf():
    from pipeline.core.options import check
    tried = 0
    for command, cls in _commands():
        defaults = {f.name: None for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        for f in _float_fields(cls):
            for bad in (math.nan, math.inf, -math.inf):
                opts = cls(**{**defaults, f.name: bad})
                with pytest.raises(UserError) as err:
                    check(opts)
                assert "finite" in str(err.value) and str(bad) in str(err.value), (command, f.name, str(err.value))
                tried += 1
    assert tried > 20          # train, convert, extract, masks train, the model types ... all have some


def test_the_cli_checks_options_when_it_parses_them(tmp_path):
    """``from_namespace`` checks what it builds: a bad value never reaches a stage."""
    import main
    from convert.options import ConvertOptions
    from pipeline.core.options import from_namespace
    from train.options import TrainOptions
    parser = main._parser()
    for argv, cls, needle in ((["train", "--lr", "nan"], TrainOptions, "--lr nan"),
                              (["train", "--batch-size", "0"], TrainOptions, "--batch-size 0 is out of range"),
                              (["convert", "--sharpen", "nan"], ConvertOptions, "--sharpen nan"),
                              (["convert", "--smooth", "inf"], ConvertOptions, "--smooth inf")):
        with pytest.raises(UserError, match=needle):
            from_namespace(cls, parser.parse_args(argv))


@pytest.mark.slow
def test_bad_options_are_refused_before_torch_is_imported(tmp_path):
    """Under load torch takes 30-50 s to import: a typo must not wait for it."""
    code = ("import sys, main\n"
            "rc = main.main(sys.argv[1:])\n"
            "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n"
            "sys.exit(rc)\n")
    for argv, needle in ((["train", "--lr", "nan"], "--lr nan"),
                         (["train", "--iterations", "0"], "--iterations 0 is out of range"),
                         (["train", "--model", "df", "--gan-power", "inf"], "--gan-power inf"),
                         (["convert", "--sharpen", "nan"], "--sharpen nan"),
                         (["convert", "--crf", "99"], "--crf 99 is out of range"),
                         (["masks", "train", "--occluders", "nan"], "--occluders nan"),
                         (["export", "--opset", "3"], "--opset 3 is out of range")):
        res = subprocess.run([sys.executable, "-c", code, *argv, "--workspace", str(tmp_path / "ws")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        clean_error(res, needle)
        assert "torch not loaded" in res.stdout, (argv, res.stdout)


@pytest.mark.slow
def test_train_lr_nan_and_convert_sharpen_nan_are_one_line_and_change_nothing(small_ws):
    before = snapshot(small_ws)
    clean_error(run_capped("train", "--workspace", small_ws, "--lr", "nan", "--iterations", "1"), "--lr nan",
                "finite")
    clean_error(run_capped("convert", "--workspace", small_ws, "--sharpen", "nan"), "--sharpen nan", "0 to 5")
    assert snapshot(small_ws) == before and not (small_ws / "result.mp4").exists()


# ---------------------------------------------------------------------- export into a folder it cannot write


@pytest.mark.slow
def test_export_into_a_read_only_folder_is_one_line(small_ws, tmp_path):
    folder = tmp_path / "readonly"
    mounted = Tmpfs.mount(folder, "1m", readonly=True)
    if mounted is None:
        folder.mkdir(exist_ok=True)
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        before = snapshot(small_ws)
        res = run_capped("export", "--workspace", small_ws, "--output", folder / "m.dfm")
        clean_error(res, str(folder), "choose another --output")
        assert list(folder.iterdir()) == [] and snapshot(small_ws) == before
    finally:
        if mounted is not None:
            mounted.unmount()
        else:
            folder.chmod(0o755)


@pytest.mark.slow
def test_export_reports_a_failed_write_in_one_line(small_ws, tmp_path, monkeypatch):
    """A folder that turns unwritable between the check and the write (or refuses only the write)."""
    import export.dfm
    from export.options import ExportOptions

    def refuse(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(export.dfm, "write_atomic", refuse)
    with pytest.raises(UserError, match="cannot write .*m.dfm.*Permission denied.*choose another --output"):
        export.dfm.run_export(ExportOptions(workspace=small_ws, output=tmp_path / "m.dfm"))


# ---------------------------------------------------------------------- tampered model options


def _write_tiny(folder: Path) -> None:
    from tests.conftest import write_tiny_model
    write_tiny_model(folder)


def test_tampered_model_options_are_refused_when_read(tmp_path):
    from pipeline.models.segmenter import SegmenterModel, SegmenterNet
    from pipeline.models.store import read_options, save_model
    _write_tiny(tmp_path / "model")
    for key, value in (("width", 4096), ("width", 0), ("resolution", 4096), ("width", 1e9)):
        tamper(tmp_path / "model" / "options.json", **{key: value})
        with pytest.raises(UserError) as err:
            read_options(tmp_path / "model")
        text = str(err.value)
        assert "options.json" in text and key in text and "restore" in text, text
    save_model(tmp_path / "mask_model", SegmenterModel(SegmenterNet(64, width=8)), {"face_type": "full"})
    tamper(tmp_path / "mask_model" / "options.json", width=4096)
    with pytest.raises(UserError, match="mask_model/options.json.*width 4096.*4 to 128"):
        read_options(tmp_path / "mask_model", SegmenterModel)
    for kind, values in (("df", {"ae_dims": 1 << 20}), ("liae", {"e_dims": 4096}), ("df", {"d_dims": -3})):
        folder = tmp_path / kind
        folder.mkdir(exist_ok=True)
        meta = {"model_type": kind, "format_version": 1, "resolution": 64, "ae_dims": 16, "e_dims": 8, "d_dims": 8,
                "d_mask_dims": 4, **values}
        (folder / "options.json").write_text(json.dumps(meta))
        with pytest.raises(UserError, match=f"{kind}/options.json.*{next(iter(values))}"):
            read_options(folder)


@pytest.mark.slow
def test_convert_export_and_train_refuse_a_tampered_width_before_allocating(small_ws):
    """The hostile test's case: width 4096 in model/options.json grew convert to 24 GB."""
    tamper(small_ws / "model" / "options.json", width=4096)
    before = snapshot(small_ws)
    for args in (("convert",), ("export",), ("train", "--iterations", "1")):
        res = run_capped(*args, "--workspace", small_ws)
        line = clean_error(res, "options.json", "width 4096")
        assert "restore" in line, line
        assert snapshot(small_ws) == before, args


@pytest.mark.slow
def test_masks_apply_refuses_a_tampered_mask_model(small_ws):
    from pipeline.models.segmenter import SegmenterModel, SegmenterNet
    from pipeline.models.store import save_model
    save_model(small_ws / "mask_model", SegmenterModel(SegmenterNet(64, width=8)), {"face_type": "full"})
    tamper(small_ws / "mask_model" / "options.json", width=4096)
    before = snapshot(small_ws)
    clean_error(run_capped("masks", "apply", "--workspace", small_ws), "mask_model", "options.json", "width 4096")
    assert snapshot(small_ws) == before


# ---------------------------------------------------------------------- memory


MEMINFO = """MemTotal:       16318412 kB
MemFree:          512000 kB
MemAvailable:    8159206 kB
Buffers:          204800 kB
"""


def test_machine_memory_reads_proc_meminfo_and_falls_back_to_sysconf(tmp_path, monkeypatch):
    from pipeline.core import memory
    info = tmp_path / "meminfo"
    info.write_text(MEMINFO)
    monkeypatch.setattr(memory, "MEMINFO", info)
    monkeypatch.setattr(memory, "CGROUP_LIMITS", ())
    got = memory.machine_memory()
    assert got.total == 16318412 * 1024 and got.available == 8159206 * 1024
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "missing")
    got = memory.machine_memory()
    page = os.sysconf("SC_PAGE_SIZE")
    assert got.total == os.sysconf("SC_PHYS_PAGES") * page and 0 < got.available <= got.total


def test_a_container_limit_lowers_what_is_available(tmp_path, monkeypatch):
    from pipeline.core import memory
    info, limit, usage = tmp_path / "meminfo", tmp_path / "memory.max", tmp_path / "memory.current"
    info.write_text(MEMINFO)
    limit.write_text(f"{2 << 30}\n")
    usage.write_text(f"{1 << 30}\n")
    monkeypatch.setattr(memory, "MEMINFO", info)
    monkeypatch.setattr(memory, "CGROUP_LIMITS", ((limit, usage),))
    got = memory.machine_memory()
    assert got.total == 2 << 30 and got.available == 1 << 30
    limit.write_text("max\n")
    assert memory.machine_memory().available == 8159206 * 1024


def test_the_estimate_grows_with_width_and_batch_and_allocates_nothing():
    import torch

    from pipeline.models.memory import estimate
    from pipeline.models.transform import TransformModel
    small = estimate(TransformModel, {"resolution": 128, "width": 16, "skip": True}, batch=8, training=False)
    assert small.parameters == pytest.approx(0.28e6, rel=0.1)
    assert 10e6 < small.total < 2e9
    wide = estimate(TransformModel, {"resolution": 256, "width": 512, "skip": True}, batch=64, training=True)
    assert wide.total > 50e9                             # more than this machine has: it would have been refused
    assert estimate(TransformModel, {"resolution": 128, "width": 16, "skip": True}, batch=8, training=True).total \
        > small.total
    # built on the meta device: nothing real was allocated for those billions of bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    estimate(TransformModel, {"resolution": 256, "width": 512, "skip": True}, batch=1, training=False)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak < 1e9
    assert torch.empty(0).device.type == "cpu"           # the default device is left as it was


def test_a_model_larger_than_the_memory_is_refused_by_load_model(tmp_path, monkeypatch):
    from pipeline.core import memory
    from pipeline.models import store
    _write_tiny(tmp_path / "model")
    monkeypatch.setattr(memory, "machine_memory", lambda: memory.Memory(total=64 << 20, available=1 << 20))
    with pytest.raises(UserError) as err:
        store.load_model(tmp_path / "model", "cpu", batch=8)
    text = str(err.value)
    assert "needs about" in text and "1 MB available" in text and "--batch-size" in text, text


@pytest.mark.slow
def test_train_and_convert_refuse_a_model_the_memory_cannot_hold(small_ws, monkeypatch):
    import shutil

    from convert import runner
    from pipeline.core import memory
    monkeypatch.setattr(memory, "machine_memory", lambda: memory.Memory(total=256 << 20, available=2 << 20),
                        raising=False)
    # the model loads in this process, where the fake memory is (a child's refusal reaches convert as any of
    # its UserErrors does: tests/test_network_process.py)
    monkeypatch.setattr(runner, "NETWORK_PROCESS", False)
    before = snapshot(small_ws)
    code, errors = run_main("convert", "--workspace", small_ws)
    assert code != 0 and len(errors) == 1 and "needs about" in errors[0] and "batch" in errors[0], errors
    assert snapshot(small_ws) == before
    # --fresh: refused before the old model is moved aside
    code, errors = run_main("train", "--workspace", small_ws, "--iterations", "1", "--batch-size", "2", "--fresh")
    assert code != 0 and len(errors) == 1 and "needs about" in errors[0] and "--batch-size" in errors[0], errors
    assert snapshot(small_ws) == before
    shutil.rmtree(small_ws / "model")          # small_ws's model was not made by train: it would not resume
    before = snapshot(small_ws)
    code, errors = run_main("train", "--workspace", small_ws, "--iterations", "1", "--batch-size", "2")
    assert code != 0 and len(errors) == 1 and "needs about" in errors[0] and "--batch-size" in errors[0], errors
    assert snapshot(small_ws) == before


# ---------------------------------------------------------------------- a full disk


def _enospc(*_: object, **__: object) -> typing.NoReturn:
    raise OSError(errno.ENOSPC, "No space left on device")


class _FillingFile:
    """A file that takes ``room`` bytes and then refuses with ENOSPC, as a full disk's file does."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name: str):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def _fill_after(monkeypatch, room: int) -> None:
    """Every file write_atomic opens fills after ``room`` bytes."""
    from pipeline.core import files
    real_open = open
    monkeypatch.setattr(files, "open", lambda path, mode="r", *a, **k: _FillingFile(real_open(path, mode, *a, **k),
                                                                                   room), raising=False)


def test_a_full_disk_in_an_atomic_write_is_reported_as_such_and_keeps_the_old_file(tmp_path, monkeypatch):
    from pipeline.core.files import write_atomic
    target = tmp_path / "options.json"
    target.write_bytes(b"the old one")
    _fill_after(monkeypatch, 3)
    with pytest.raises(UserError) as err:
        write_atomic(target, b"a new one, longer than the room left")
    text = str(err.value)
    assert "disk full" in text and str(tmp_path) in text and "options.json is as it was" in text, text
    assert target.read_bytes() == b"the old one" and [p.name for p in tmp_path.iterdir()] == ["options.json"]


def test_torch_save_on_a_full_disk_is_disk_full_not_an_inline_container_error(tmp_path, monkeypatch):
    """torch.save turns the file's ENOSPC into 'RuntimeError ... inline_container.cc'; the cause is found."""
    import torch

    from pipeline.core.files import write_atomic
    _fill_after(monkeypatch, 1000)
    with pytest.raises(UserError) as err:
        write_atomic(tmp_path / "weights.pt", lambda fh: torch.save({"w": torch.zeros(100_000)}, fh))
    assert "disk full" in str(err.value) and "inline_container" not in str(err.value), str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_real_full_disk(tmp_path):
    """On a 1 MB tmpfs (root only): torch.save, a plain write and SQLite's index all say disk full."""
    import torch

    from pipeline.core.files import write_atomic
    from pipeline.workspace.store import Workspace
    disk = Tmpfs.mount(tmp_path / "disk", "1m")
    if disk is None:
        pytest.skip("mounting a tmpfs needs root")
    try:
        folder = disk.folder
        write_atomic(folder / "keep.pt", lambda fh: torch.save({"w": torch.zeros(1000)}, fh))
        kept = (folder / "keep.pt").read_bytes()
        ws = Workspace(folder / "ws", write=True, command="test")
        try:
            ws.create("dst")
            disk.fill()
            with pytest.raises(UserError, match="disk full.*keep.pt is as it was"):
                write_atomic(folder / "keep.pt", lambda fh: torch.save({"w": torch.zeros(1_000_000)}, fh))
            assert (folder / "keep.pt").read_bytes() == kept
            with pytest.raises(UserError) as err:
                for frame in range(10_000):                   # until the index needs a page the disk has not
                    ws.write_frame("dst", f"clip-{frame:04d}-{'x' * 200}.mp4", frame, "ok", [], [])
                    ws.commit()
            assert "disk full" in str(err.value) and "damaged" not in str(err.value), str(err.value)
        finally:
            ws.close()
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["filler", "keep.pt", "ws"]
    finally:
        disk.unmount()


def _small_index(tmp_path: Path):
    from pipeline.workspace.store import Workspace
    ws = Workspace(tmp_path / "ws", write=True, command="test")
    ws.create("dst")
    return ws


def test_a_full_index_write_is_disk_full_not_damaged(tmp_path, monkeypatch):
    from pipeline.workspace import store
    ws = _small_index(tmp_path)
    try:
        def full(row):
            raise sqlite3.OperationalError("database or disk is full")
        monkeypatch.setattr(store, "face_to_sql", full)
        with pytest.raises(UserError) as err:
            ws.write_frame("dst", "clip.mp4", 0, "ok", [object()], [])    # type: ignore[list-item]
        text = str(err.value)
        assert "disk full" in text and str(tmp_path / "ws") in text and "damaged" not in text, text
        assert "faces.sqlite is as it was before this write" in text, text
    finally:
        ws.close()


def test_an_io_error_on_a_full_disk_is_disk_full_and_on_a_roomy_one_is_still_damage(tmp_path, monkeypatch):
    from pipeline.core import files
    from pipeline.workspace.store import Workspace
    _small_index(tmp_path).close()

    def broken(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(sqlite3, "connect", broken)
    monkeypatch.setattr(files, "free_bytes", lambda folder: 4096, raising=False)
    with pytest.raises(UserError) as err:
        with Workspace(tmp_path / "ws") as ws:
            ws.faces("dst")
    assert "disk full" in str(err.value) and "damaged" not in str(err.value), str(err.value)
    monkeypatch.setattr(files, "free_bytes", lambda folder: 50 << 30)
    with pytest.raises(UserError, match="damaged"):
        with Workspace(tmp_path / "ws") as ws:
            ws.faces("dst")


def _without_src(ws: Path) -> None:
    """The workspace as it was before its src set was extracted."""
    import shutil
    meta = json.loads((ws / "workspace.json").read_text())
    del meta["sets"]["src"]
    (ws / "workspace.json").write_text(json.dumps(meta, indent=2))
    con = sqlite3.connect(ws / "faces.sqlite")
    with con:
        con.execute("DELETE FROM faces WHERE set_name='src'")
        con.execute("DELETE FROM frames WHERE set_name='src'")
    con.close()
    shutil.rmtree(ws / "data_src")


@pytest.mark.slow
def test_extract_on_a_full_disk_says_so_and_keeps_the_index_and_files_consistent(small_ws, tmp_path, monkeypatch):
    from pipeline.workspace import store
    _without_src(small_ws)
    photos = tmp_path / "more"
    photos.mkdir()
    for name in ("obama2.jpg", "obama3.jpg"):
        (photos / name).write_bytes((PHOTOS / name).read_bytes())
    files_before, rows_before = without(snapshot(small_ws), "faces.sqlite"), index_rows(small_ws)

    def full(row):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(store, "face_to_sql", full)
    code, errors = run_main("extract", "--input", photos, "--set", "src", "--workspace", small_ws, "--size", "128")
    assert code != 0 and len(errors) == 1, errors
    line = errors[0]
    assert "disk full" in line and str(small_ws) in line and "damaged" not in line and "run" in line, line
    assert index_rows(small_ws) == rows_before
    after = without(snapshot(small_ws), "faces.sqlite", "workspace.json")
    assert after == without(files_before, "workspace.json"), "files of the discarded batch were left"

    # and a full disk under the aligned images themselves
    monkeypatch.undo()
    _fill_after(monkeypatch, 100)
    code, errors = run_main("extract", "--input", photos, "--set", "src", "--workspace", small_ws, "--size", "128")
    assert code != 0 and len(errors) == 1 and "disk full" in errors[0], errors
    assert index_rows(small_ws) == rows_before
    assert without(snapshot(small_ws), "faces.sqlite", "workspace.json") == without(files_before, "workspace.json")


@pytest.mark.slow
def test_convert_on_a_full_disk_blames_the_disk_not_the_index(small_ws, monkeypatch):
    from pipeline.core import files
    before = snapshot(small_ws)

    def broken(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(sqlite3, "connect", broken)
    monkeypatch.setattr(files, "free_bytes", lambda folder: 0, raising=False)
    code, errors = run_main("convert", "--workspace", small_ws)
    assert code != 0 and len(errors) == 1, errors
    assert "disk full" in errors[0] and "damaged" not in errors[0] and str(small_ws) in errors[0], errors
    assert snapshot(small_ws) == before


@pytest.mark.slow
def test_convert_output_on_a_real_full_disk(small_ws, tmp_path):
    disk = Tmpfs.mount(tmp_path / "out", "16k")
    if disk is None:
        pytest.skip("mounting a tmpfs needs root")
    try:
        before = snapshot(small_ws)
        res = run_capped("convert", "--workspace", small_ws, "--output", disk.folder / "result.mp4")
        line = clean_error(res, "disk full", str(disk.folder))
        assert "result.mp4" in line, line
        assert list(disk.folder.iterdir()) == [] and snapshot(small_ws) == before
    finally:
        disk.unmount()


@pytest.mark.slow
def test_train_on_a_full_disk_says_what_was_saved(small_ws, monkeypatch):
    """torch.save's failure (RuntimeError from inline_container.cc, the ENOSPC as its context) is disk full."""
    import shutil

    import torch
    real_save = torch.save

    def full(obj, f, *a, **k):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    shutil.rmtree(small_ws / "model")          # small_ws's model was not made by train: it would not resume
    before = snapshot(small_ws)
    monkeypatch.setattr(torch, "save", full)
    code, errors = run_main("train", "--workspace", small_ws, "--iterations", "1", "--batch-size", "2",
                            "--n-best", "2")
    monkeypatch.setattr(torch, "save", real_save)
    assert code != 0 and len(errors) == 1, errors
    line = errors[0]
    assert "disk full" in line and str(small_ws / "model") in line and "inline_container" not in line, line
    assert "is as it was before this run" in line, line
    assert without(snapshot(small_ws), "model/log.jsonl") == without(before, "model/log.jsonl")


# ---------------------------------------------------------------------- a tiny image


def test_a_one_pixel_image_is_read():
    import cv2
    import numpy as np

    from pipeline.core.images import read_rgb
    ok, buf = cv2.imencode(".png", np.full((1, 1, 3), 200, np.uint8))
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"one_pixel_{os.getpid()}.png"
    path.write_bytes(buf.tobytes())
    try:
        assert read_rgb(path).shape == (1, 1, 3)
    finally:
        path.unlink()


@pytest.mark.slow
def test_extract_of_a_one_pixel_png_finds_no_face_rather_than_calling_it_unreadable(tmp_path):
    import cv2
    import numpy as np
    folder = tmp_path / "tiny"
    folder.mkdir()
    cv2.imwrite(str(folder / "dot.png"), np.full((1, 1, 3), 200, np.uint8))
    res = run_capped("extract", "--input", folder, "--workspace", tmp_path / "ws")
    line = clean_error(res, "no face found")
    assert "could not be read" not in line and "not a readable image" not in res.stderr, res.stderr
    assert res.returncode == 1 and not (tmp_path / "ws").exists()
