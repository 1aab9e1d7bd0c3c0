"""``main.py models``: every registered backend by kind, its weight files and their state, its terms."""
from __future__ import annotations

from typing import Any

from pipeline.core import weights
from pipeline.core.environment import survey
from pipeline.core.registry import listed


def catalogue() -> dict[str, Any]:
    """Stable JSON: kinds -> entries, each with its weight files checked (size and checksum)."""
    checked: dict[str, weights.WeightStatus] = {}

    def status(key: str) -> dict[str, Any]:
        if key not in checked:
            checked[key] = weights.check(key)
        return checked[key].to_json()

    kinds = []
    for registry in listed():
        entries = [{"name": e.name, "description": e.description, "implementation": e.target,
                    "options": list(e.options), "terms": e.terms, "weights": [status(k) for k in e.weights],
                    "ready": all(checked[k].problem is None for k in e.weights)}
                   for e in registry]
        kinds.append({"kind": registry.kind, "option": registry.option, "entries": entries})
    problems = [s.to_json() for s in checked.values() if s.problem is not None]
    packages = [f.to_json() for f in survey()]
    return {"kinds": kinds, "problems": problems, "packages": packages,
            "package_problems": [p["problem"] for p in packages if p["problem"]]}


def format_catalogue(report: dict[str, Any]) -> str:
    lines = []
    for kind in report["kinds"]:
        lines.append(f"{kind['kind']} ({kind['option']}):")
        for e in kind["entries"]:
            lines.append(f"  {e['name']:<10} {e['description']}")
            lines.append(f"  {'':<10} code: {e['implementation']} ({e['terms']})")
            for w in e["weights"]:
                if w["problem"] is None:
                    checksum = "checksum verified" if w["verified"] else "present (no checksum pinned)"
                    lines.append(f"  {'':<10} weights: {w['path']} ({w['size']:,} bytes, {checksum}); {w['terms']}")
                else:
                    lines.append(f"  {'':<10} weights: {w['file']} {w['problem']}; {w['terms']}")
    if report["problems"]:
        lines.append(f"{len(report['problems'])} weight file(s) missing or damaged: the backends that need them "
                     f"fail with this advice until the file is in place")
    else:
        lines.append("all weight files present and verified")
    lines.append("packages (installed / tested range):")
    for p in report["packages"]:
        version = f"{p['version']} ({p['distribution']})" if p["version"] else "not installed"
        lines.append(f"  {p['package']:<24} {version:<40} {p['supported']}")
    for problem in report["package_problems"]:
        lines.append(f"problem: {problem}")
    if not report["package_problems"]:
        lines.append("all packages within their tested ranges")
    return "\n".join(lines)
