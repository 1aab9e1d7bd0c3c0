"""Registries, option declarations, ``main.py models``, and what they promise."""
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import main
from convert.backends import COLOR_TRANSFERS
from extract.options import ExtractOptions
from extract.runner import run_extract
from extract.search import ANCHOR_EVERY, SlowPassGate
from pipeline.core import weights
from pipeline.core.errors import UserError
from pipeline.core.registry import Entry, listed
from pipeline.core.video import FrameReader, probe
from pipeline.registries import DETECTORS
from tests.conftest import CLIP6, ROOT, clean_error, detector, ffmpeg, run_cli

# ---------------------------------------------------------------------- registries


class CountingDetector:
    """dlib's HOG detector that counts its calls, and how many were thorough (all passes)."""

    calls = {"all": 0, "thorough": 0}

    def __init__(self, upsample: str = "auto", min_face: int = 80) -> None:
        self.inner = detector("dlib", upsample, min_face)
        self.description = "counting HOG (test)"

    def detect(self, image, thorough=True):
        CountingDetector.calls["all"] += 1
        CountingDetector.calls["thorough"] += bool(thorough)
        return self.inner.detect(image, thorough)


@pytest.fixture
def counting_detector():
    CountingDetector.calls.update(all=0, thorough=0)
    DETECTORS.register(Entry("counting", "tests.test_architecture:CountingDetector", "counts its calls (test)"))
    yield CountingDetector.calls
    DETECTORS.unregister("counting")


@pytest.mark.slow
def test_a_registered_detector_runs_extract_and_evaluate_uses_it(counting_detector, tmp_path):
    ws = tmp_path / "ws"
    summary = run_extract(ExtractOptions(input=CLIP6, workspace=ws, size=128, detector="counting"))
    assert summary.faces == 6 and counting_detector["all"] >= 6
    meta = json.loads((ws / "workspace.json").read_text())
    assert meta["sets"]["dst"]["extract"]["detector"] == "counting"
    from evaluate.options import EvaluateOptions
    from evaluate.runner import run_evaluate
    counting_detector.update(all=0, thorough=0)
    report, _ = run_evaluate(EvaluateOptions(workspace=ws, video=CLIP6, samples=0))
    assert counting_detector["all"] == 12                      # 6 frames of each video: the set's detector
    assert report["coverage"]["frames_compared"] == 6


def test_choices_and_help_come_from_the_registries():
    COLOR_TRANSFERS.register(Entry("fake", "convert.color_transfer:none", "a colour transfer registered by a test"))
    try:
        args = main._parser().parse_args(["convert", "--color", "fake"])
        assert args.color == "fake"
        help_text = main._parser()._subparsers._group_actions[0].choices["convert"].format_help()
        assert "a colour transfer registered by a test" in " ".join(help_text.split())
    finally:
        COLOR_TRANSFERS.unregister("fake")
    with pytest.raises(SystemExit):
        main._parser().parse_args(["convert", "--color", "fake"])


def test_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="unknown detector 'nope'.*retinaface, blazeface, dlib, dlib-cnn"):
        DETECTORS.get("nope")


def test_a_backend_whose_package_is_missing_says_so():
    DETECTORS.register(Entry("missing", "no_such_package.detector:Detector", "needs a package that is absent"))
    try:
        with pytest.raises(UserError, match="no_such_package.*pip install it or choose another --detector"):
            DETECTORS.load("missing")
    finally:
        DETECTORS.unregister("missing")


# ---------------------------------------------------------------------- options


def test_an_option_out_of_range_is_refused_in_python_and_on_the_command_line(tmp_path):
    with pytest.raises(UserError, match="--size 10 is out of range; use 64 to 2048"):
        run_extract(ExtractOptions(input=CLIP6, workspace=tmp_path / "ws", size=10))
    clean_error(run_cli("extract", "--input", CLIP6, "--workspace", tmp_path / "ws", "--workers", "0"),
                "--workers 0 is out of range")
    assert not (tmp_path / "ws").exists()
    clean_error(run_cli("convert", "--workspace", tmp_path / "ws", "--crf", "99"), "--crf 99")


def test_every_option_is_declared_once_with_help_and_default():
    parser = main._parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if action.dest in ("help",):
                continue
            assert action.help, (name, action.dest)
    text = " ".join(main._parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "(default: 10000)" in text and "range 1 or more" in text and "options of --model transform" in text


# ---------------------------------------------------------------------- main.py models


def test_models_lists_every_kind_and_checks_the_weights(tmp_path, monkeypatch):
    env_home = tmp_path / "torch_home"
    res = subprocess.run([sys.executable, str(ROOT / "main.py"), "models", "--json"], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "TORCH_HOME": str(env_home)})
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    kinds = {k["kind"]: k for k in report["kinds"]}
    assert set(kinds) == {r.kind for r in listed()} == {"detector", "landmarker", "masker", "feature network",
                                                    "colour transfer", "blend mode", "model type",
                                                    "held-apart identity network"}
    facenet = kinds["held-apart identity network"]["entries"][0]["weights"][0]
    assert facenet["verified"] is True and facenet["size"] == 94022009 and "CASIA-WebFace" in facenet["terms"]
    landmarks = next(e for e in kinds["landmarker"]["entries"] if e["name"] == "dlib")["weights"][0]
    assert landmarks["verified"] is True and landmarks["size"] == 99693937 and landmarks["problem"] is None
    assert "iBUG 300-W" in landmarks["terms"]
    vgg = next(e for e in kinds["feature network"]["entries"] if e["name"] == "vgg19")["weights"][0]
    assert vgg["present"] is False and vgg["problem"].startswith("missing; download https://download.pytorch.org")
    assert str(env_home) in vgg["problem"]
    # the optional files fetched by hand are the only problems on a machine that never fetched them
    assert sorted(p["file"] for p in report["problems"]) == [
        "2DFAN4-11f355bf06.pth.tar", "detection_Resnet50_Final.pth", "parsing_bisenet.pth", "s3fd-619a316812.pth",
        "vgg19-dcbb9e9d.pth"]
    fan = next(e for e in kinds["landmarker"]["entries"] if e["name"] == "fan")["weights"][0]
    assert fan["problem"].startswith("missing; download https://www.adrianbulat.com/downloads/python-fan/"
                                     "2DFAN4-11f355bf06.pth.tar") and str(env_home) in fan["problem"]


def test_a_damaged_weight_file_is_reported_with_where_to_get_it(tmp_path, monkeypatch):
    from models.catalogue import catalogue
    fake = tmp_path / "face_recognition_models"
    (fake / "models").mkdir(parents=True)
    real = weights.package_dir("face_recognition_models")
    for name in ("mmod_human_face_detector.dat", "dlib_face_recognition_resnet_model_v1.dat"):
        shutil.copy(real / "models" / name, fake / "models" / name)
    (fake / "models" / "shape_predictor_68_face_landmarks.dat").write_bytes(b"half a file")
    monkeypatch.setattr(weights, "package_dir", lambda package: fake)
    report = catalogue()
    problems = {p["file"]: p["problem"] for p in report["problems"]}
    assert "damaged (11 bytes, expected 99693937)" in problems["shape_predictor_68_face_landmarks.dat"]
    assert "pip install --force-reinstall face_recognition_models" in problems["shape_predictor_68_face_landmarks.dat"]
    with pytest.raises(UserError, match="damaged"):
        weights.model_path("landmarks-68")
    # a file of the right size with other bytes fails the checksum
    monkeypatch.setitem(weights.WEIGHTS, "dlib-cnn-detector",
                        replace(weights.WEIGHTS["dlib-cnn-detector"], sha256="0" * 64))
    assert weights.check("dlib-cnn-detector").verified is False


# ---------------------------------------------------------------------- the slow detector passes


def test_slow_passes_run_on_anchors_after_faces_and_before_a_face_appears():
    searched: list[int] = []
    faces_at = {14, 15, 16, 17, 18}               # a small face, visible to the slow passes only

    def search(frame):
        searched.append(frame)
        return ["face"] if frame in faces_at else []

    gate = SlowPassGate(search, face_before=False)
    out = []
    for i in range(40):
        anchor = i % ANCHOR_EVERY == 0
        cheap = []
        out += gate.push(i, ["face"] if anchor and i in faces_at else cheap, thorough=anchor)
        if anchor:
            searched.append(i)        # the first look itself was thorough
    out += gate.finish()
    assert [f for f, _ in out] == list(range(40))             # every frame, in order
    assert [f for f, faces in out if faces] == [14, 15, 16, 17, 18]   # the anchor at 16 finds it, then
    # the frames held since 8 are searched, and every frame after a face until it is gone
    assert sorted(searched) == [0, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 24, 32, 33, 34, 35, 36, 37, 38, 39]


@pytest.mark.slow
def test_a_video_without_faces_skips_most_slow_passes(counting_detector, tmp_path):
    black = tmp_path / "black.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=640x360:d=1.92:r=25",
                    "-c:v", "libx264", str(black)], check=True)
    with pytest.raises(UserError, match="no face found in any of the 48"):
        run_extract(ExtractOptions(input=black, workspace=tmp_path / "ws", detector="counting"))
    # one look at each frame; the slow passes on the 6 anchors and the 7 frames after the last one only
    assert counting_detector["all"] - counting_detector["thorough"] == 48 - 48 // ANCHOR_EVERY
    assert counting_detector["thorough"] == 48 // ANCHOR_EVERY + (48 - 1) % ANCHOR_EVERY     # was all 48


# ---------------------------------------------------------------------- odd videos


def test_a_one_pixel_video_is_read_as_a_video(tmp_path):
    tiny = tmp_path / "dot.mp4"
    # 4x4 scaled to 1x1: ffmpeg 7.0's colour source refuses a 1x1 picture
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=4x4:d=0.4:r=25,scale=1:1", "-c:v",
                    "libx264", "-pix_fmt", "yuv444p", str(tiny)], check=True)
    info = probe(tiny)
    assert (info.width, info.height, info.frames) == (1, 1, 10)
    err = clean_error(run_cli("extract", "--input", tiny, "--workspace", tmp_path / "ws"), "no face found")
    assert "no video stream" not in err
    frames = [f for _, f in FrameReader(tiny, 1, 1)]
    assert len(frames) == 10 and np.all(np.abs(frames[0].astype(int) - 128) < 4)


def test_a_registered_masker_is_a_mask_origin():
    from pipeline.registries import MASKERS
    from pipeline.workspace.records import MaskOrigin
    with pytest.raises(ValueError):
        MaskOrigin("painted-by-robot")
    MASKERS.register(Entry("painted-by-robot", "pipeline.faces.backends.hull_mask:HullMasker", "a masker (test)"))
    try:
        assert MaskOrigin("painted-by-robot") == "painted-by-robot"
        assert MaskOrigin("painted-by-robot").value == "painted-by-robot"
        assert MaskOrigin("hand") is MaskOrigin.HAND and MaskOrigin("learned") is MaskOrigin.LEARNED
    finally:
        MASKERS.unregister("painted-by-robot")


# ---------------------------------------------------------------------- layering and the command contract

#: the command packages (each a stage or a small command); they import ``pipeline`` and themselves only
STAGES = tuple(main.PACKAGES)
#: imports between stages that are known and tracked, as (file, imported module): a new one fails the test
KNOWN_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()


#: a stage's public API another stage may import: the studio renders its preview with convert's renderer
#: (its options and the Renderer; never convert.runner or the per-face steps)
PUBLIC_API = {"studio": ("convert.renderer", "convert.options")}


def imported_modules(source: str) -> set[str]:
    """Every absolute module a source imports, at the top or inside a function (relative imports are the
    package's own)."""
    import ast
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def layering_faults(root, stages=STAGES, known=frozenset(), public=PUBLIC_API) -> list[str]:
    """'file imports module' for each import that crosses the layers under ``root``: a stage importing
    another stage, or pipeline importing a stage."""
    faults = []
    for package in (*stages, "pipeline"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for module in sorted(imported_modules(path.read_text(encoding="utf-8"))):
                top = module.split(".")[0]
                allowed = module in public.get(package, ())
                if top in stages and top != package and (rel, module) not in known and not allowed:
                    faults.append(f"{rel} imports {module}")
    return faults


def test_stages_import_only_pipeline_and_pipeline_no_stage():
    assert all((ROOT / s / "__init__.py").is_file() for s in STAGES)
    assert layering_faults(ROOT, known=KNOWN_EXCEPTIONS) == []
    # known exceptions, while there are any, must still exist (none since the training loop moved to pipeline)
    found = set(layering_faults(ROOT))
    assert {f"{f} imports {m}" for f, m in KNOWN_EXCEPTIONS} <= found


def test_the_layering_check_fails_when_a_stage_imports_another(tmp_path):
    for package in ("extract", "convert", "pipeline"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "extract" / "runner.py").write_text(
        "from pipeline.core import geometry\nfrom . import options\nfrom extract.options import X\n\n"
        "def f():\n    import convert.runner\n    from convert import blending\n")
    (tmp_path / "pipeline" / "util.py").write_text("import os\nfrom extract.runner import run_extract\n")
    assert layering_faults(tmp_path, stages=("extract", "convert")) == [
        "extract/runner.py imports convert", "extract/runner.py imports convert.runner",
        "pipeline/util.py imports extract.runner"]
    assert layering_faults(tmp_path, stages=("extract", "convert"), known={
        ("extract/runner.py", "convert"), ("extract/runner.py", "convert.runner")}) == [
        "pipeline/util.py imports extract.runner"]



def test_the_studio_may_use_convert_s_renderer_and_nothing_else_of_convert(tmp_path):
    for package in ("studio", "convert", "pipeline"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "studio" / "frames.py").write_text(
        "from convert.renderer import Renderer\nfrom convert.options import ConvertOptions\n"
        "from convert.runner import run_convert\n")
    assert layering_faults(tmp_path, stages=("studio", "convert")) == ["studio/frames.py imports convert.runner"]
    assert "studio/frames.py imports convert.renderer" in layering_faults(tmp_path, stages=("studio", "convert"),
                                                                            public={})


def test_every_command_is_a_package_and_nothing_in_pipeline_is_one():
    from pipeline.core.command import Command
    commands = main.commands()
    assert list(commands) == list(STAGES) and "pipeline" not in commands
    for name, command in commands.items():
        for path, sub in command.walk():
            for _, cls in sub.option_groups():
                # a train --model group's options belong to the model family in pipeline/models
                assert cls.__module__.split(".")[0] == name or cls.__module__.startswith("pipeline.models."), \
                    (path, cls)
            if sub.run is not None:
                assert sub.run.__module__.split(".")[0] == name, (path, sub.run.__module__)
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert "COMMAND" not in source.replace("COMMANDS", "") or path.name == "command.py", path
        assert not source.startswith('"""``main.py '), f"{path} is a command: it belongs in its own package"
    assert all(isinstance(c, Command) for c in commands.values())


def test_a_command_is_checked_when_it_is_built(tmp_path, monkeypatch):
    from pipeline.core.command import Command, load_command

    def run(args):
        return 0

    with pytest.raises(TypeError, match="either run or subcommands"):
        Command("hello", help="say hello", description="Says hello.")
    with pytest.raises(TypeError, match="one line"):
        Command("hello", help="say\nhello", description="Says hello.", run=run)
    with pytest.raises(TypeError, match="not an options dataclass"):
        Command("hello", help="say hello", description="Says hello.", options=(dict,), run=run)
    with pytest.raises(TypeError, match="lower-case"):
        Command("Hello", help="say hello", description="Says hello.", run=run)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "__init__.py").write_text("COMMAND = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken", raising=False)
    with pytest.raises(TypeError, match="exports no COMMAND"):
        load_command("broken")
    monkeypatch.delitem(sys.modules, "broken")


def test_a_new_command_is_one_package_and_one_line(tmp_path, monkeypatch, capsys):
    """The README's example: a package with a COMMAND, and its name in main.PACKAGES."""
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "__init__.py").write_text('''
from dataclasses import dataclass

from pipeline.core.command import Command
from pipeline.core.options import from_namespace, option
from pipeline.workspace.options import WorkspaceOptions


@dataclass
class HelloOptions(WorkspaceOptions):
    times: int = option(1, low=1, high=3, help="how often")


def _run(args):
    opts = from_namespace(HelloOptions, args)
    print(f"hello {opts.workspace} " * opts.times)
    return 0


COMMAND = Command("hello", help="say hello", description="Says hello to the workspace.",
                  options=(HelloOptions,), run=_run)
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hello", raising=False)
    monkeypatch.setattr(main, "PACKAGES", (*main.PACKAGES, "hello"))
    assert main.main(["hello", "-w", "ws", "--times", "2"]) == 0
    assert capsys.readouterr().out.strip() == "hello ws hello ws"
    assert main.main(["hello", "--times", "5"]) == 2
    assert capsys.readouterr().err.strip() == "error: --times 5 is out of range; use 1 to 3 (default 1)"
    monkeypatch.delitem(sys.modules, "hello")


def test_a_newcomer_finds_the_main_job_on_the_readme_s_first_screen():
    """Issue 28: what it is, set up, then the main job, within the first 80 lines; reference after."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    heads = [(i, line) for i, line in enumerate(lines, 1) if line.startswith("## ")]
    main_job = next(i for i, line in heads if line.startswith("## The main job"))
    assert main_job <= 80
    assert [line for _, line in heads[:2]] == ["## Set up (fresh machine)", heads[1][1]] and \
        heads[1][1].startswith("## The main job")


def test_only_the_workspace_layout_names_the_workspace_s_folders():
    """Issue 28: model/, mask_model/, report/, .studio/, result.mp4 and workspace.json are named in
    pipeline/workspace/layout.py only; commands ask it (and its ``require`` says 'not a workspace yet')."""
    import re
    pattern = re.compile(r'/ "(model|report|workspace\.json)"|"(result\.mp4|mask_model|\.studio)"(?!\s+(in|not in)\b)')
    found = []
    for package in (*STAGES, "pipeline"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "pipeline/workspace/layout.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line) and 'r["mask_model"]' not in line:
                    found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []
    from pipeline.workspace import layout
    with pytest.raises(UserError, match=r"is not a workspace yet \(no workspace.json\); run 'python main.py extract'"):
        layout.require(ROOT / "docs")
    assert layout.require(ROOT / "tests" / "data" / "workspace_v1") == ROOT / "tests" / "data" / "workspace_v1"


def stage_names_in_strings(root, stages=STAGES) -> list[str]:
    """'file: text' for each string literal under ``root/pipeline`` that names a stage's module by import path
    ("convert.blending:poisson_mode", "train.features"): a lazy import is still an import."""
    import ast
    import re
    pattern = re.compile(rf"^({'|'.join(stages)})(\.[A-Za-z_]\w*)+(:[\w.]+)?$")
    faults = []
    for path in sorted((root / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value):
                faults.append(f"{path.relative_to(root).as_posix()}: {node.value}")
    return sorted(faults)


def test_pipeline_names_no_stage_module_and_its_registries_only_pipeline_code(tmp_path):
    assert stage_names_in_strings(ROOT) == []
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "registries.py").write_text(
        'X.register(Entry("a", "convert.blending:poisson_mode", "text"))\nY = "train.features"\n'
        'Z = "pipeline.models.transform:TransformModel"\nW = "convert the video."\n')
    assert stage_names_in_strings(tmp_path) == ["pipeline/registries.py: convert.blending:poisson_mode",
                                                "pipeline/registries.py: train.features"]
    # what pipeline registers by itself, with no stage loaded, is pipeline's own code
    code = ("import pipeline.registries\nfrom pipeline.core.registry import listed\n"
            "print('\\n'.join(t for r in listed() for e in r for t in (e.target, *e.parts.values())))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    targets = res.stdout.split()
    assert len(targets) >= 15 and all(t.startswith("pipeline.") for t in targets), targets
    # every stage's entries are its own code, and every model type has train's trainer
    from pipeline.registries import MODEL_TYPES
    from train.backends import TRAINERS
    for registry in listed():
        for entry in registry:
            assert entry.target.split(".")[0] in ("pipeline", "convert", "evaluate", "train", "tests"), entry
    assert set(MODEL_TYPES.names()) <= set(TRAINERS.names())


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    import re
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(root) -> list[str]:
    """'file: target' for each relative link of README.md and docs/*.md whose file or heading is missing."""
    import re
    faults = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                faults.append(f"{page.relative_to(root)}: {target}")
            elif anchor and dest.suffix == ".md":
                heads = {_anchor(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)}
                if anchor not in heads:
                    faults.append(f"{page.relative_to(root)}: {target}")
    return faults


def test_the_readme_s_links_into_docs_lead_somewhere(tmp_path):
    """Measurements moved to docs/ (issue 28): every link from the README and docs/ reaches its file and heading."""
    assert broken_links(ROOT) == []
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "m.md").write_text("# M\n\n## Blinks carried and the face's parts (issue 26)\n")
    (tmp_path / "README.md").write_text("[a](docs/m.md#blinks-carried-and-the-faces-parts-issue-26) "
                                        "[b](docs/m.md#gone) [c](docs/none.md) [d](https://example.org/x)\n")
    assert broken_links(tmp_path) == ["README.md: docs/m.md#gone", "README.md: docs/none.md"]
