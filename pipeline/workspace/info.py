"""``main.py info``: what a workspace holds, per set, as stable JSON and as text.

Read-only: it reports artist edits (deleted faces, repainted masks) as they are on disk
without writing them to the index.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.options import option

from pipeline.faces.identity import SAME_PERSON, cluster
from pipeline.registries import MASKERS
from pipeline.workspace.records import SETS, DropReason, FaceOrigin, MaskOrigin
from pipeline.workspace.store import Workspace


@dataclass
class InfoOptions:
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
    json: bool = option(False, action="store_true", help="print stable JSON for other tools")


@dataclass
class MigrateOptions:
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")


def run_info(opts: InfoOptions) -> dict:
    """The summary of a workspace (read-only)."""
    if not (Path(opts.workspace) / "workspace.json").exists():
        raise UserError(f"{opts.workspace} is not a workspace yet (no workspace.json); run "
                        f"'python main.py extract --input VIDEO' first")
    with Workspace(opts.workspace) as ws:
        return summarise(ws)


def run_migrate(opts: MigrateOptions) -> str:
    """Bring a workspace to the current schema now (writers do it on their own)."""
    if not (Path(opts.workspace) / "workspace.json").exists():
        raise UserError(f"{opts.workspace} is not a workspace (no workspace.json); nothing to migrate")
    with Workspace(opts.workspace, write=True, command="migrate") as ws:
        if ws.migrated_from is not None:
            return f"workspace {ws.root}: migrated from schema {ws.migrated_from} to {ws.file_version}"
        return f"workspace {ws.root} is already at schema {ws.file_version}"


def mask_origins() -> tuple[str, ...]:
    """Every automatic masker, the artist's hand, and masks whose file is gone."""
    return (*MASKERS.names(), MaskOrigin.HAND.value, "missing")


def _empty_set() -> dict:
    return {"input": None, "kind": None, "complete": False, "frames": 0, "faces": 0, "dropped": 0,
            "dropped_by_reason": {}, "detected": 0, "bridged": 0, "frames_without_face": [],
            "sources_without_face": [], "unreadable": [], "masks": {k: 0 for k in mask_origins()},
            "face_type": None, "size": None, "video": None,
            "identity": {"target_face": None, "threshold": None, "kept": 0, "dropped": 0},
            "identities": 0, "identity_groups": [], "faces_without_descriptor": 0, "backends": {}}


def summarise(ws: Workspace) -> dict:
    """The JSON ``info --json`` prints; keys are stable for other tools to read."""
    out: dict = {"workspace": str(ws.root), "schema_version": ws.file_version, "sets": {}}
    for set_name in SETS:
        info = _empty_set()
        out["sets"][set_name] = info
        meta = ws.set_meta(set_name)
        if meta is None:
            continue
        settings = meta.extract
        info.update(input=meta.input, kind=meta.kind, complete=meta.complete, face_type=settings.face_type,
                    size=settings.size, video=meta.video,
                    backends={"detector": settings.detector, "landmarker": settings.landmarker,
                              "masker": settings.masker})
        scan = ws.scan_artist_edits(set_name)
        missing = set(scan.missing_masks)
        reasons: Counter = Counter()
        masks: Counter = Counter({k: 0 for k in mask_origins()})
        descriptors = []
        for row in ws.faces_as_edited(set_name, scan):
            if row.dropped:
                reasons[(row.drop_reason or DropReason.DELETED).value] += 1
                continue
            info["faces"] += 1
            if row.descriptor is None:
                info["faces_without_descriptor"] += 1
            else:
                descriptors.append(row.descriptor)
            info["detected" if row.origin == FaceOrigin.DETECTED else "bridged"] += 1
            masks["missing" if row.id in missing else MaskOrigin(row.mask_origin).value] += 1
        if descriptors:
            groups = np.bincount(cluster(np.stack(descriptors), SAME_PERSON))
            info["identities"] = int(len(groups))
            info["identity_groups"] = [int(g) for g in groups]
        info["identity"] = {"target_face": settings.target_face,
                            "threshold": settings.target_threshold,
                            "kept": info["faces"], "dropped": reasons.get("identity", 0)}
        info["dropped"] = sum(reasons.values())
        info["dropped_by_reason"] = dict(reasons)
        info["masks"] = dict(masks)
        frames = ws.frames(set_name)
        info["frames"] = len(frames)
        for ordinal, fr in enumerate(frames):
            key = fr.frame_index if meta.kind == "video" else ordinal
            if fr.status == "unreadable":
                info["unreadable"].append(fr.source)
            elif fr.faces == 0:
                info["frames_without_face"].append(key)
                info["sources_without_face"].append(fr.source if meta.kind != "video" else f"{fr.source}#{fr.frame_index}")
    out["model"] = model_summary(ws.root / "model")
    return out


#: options.json keys that size a model, shown by info (the transformation network's, the autoencoders')
_SIZE_KEYS = ("width", "ae_dims", "e_dims", "d_dims", "d_mask_dims")


def model_summary(folder: Path) -> dict | None:
    """The trained model's type, size and progress from its options.json (no torch); None when there is none,
    ``{"error": ...}`` when the file is unreadable."""
    path = folder / "options.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return {"error": f"{path} is unreadable ({err})"}
    return {"type": meta.get("model_type"), "resolution": meta.get("resolution"), "face_type": meta.get("face_type"),
            "iteration": meta.get("iteration"), "iterations": meta.get("iterations"),
            "size": {k: meta[k] for k in _SIZE_KEYS if k in meta},
            "weights": (folder / "weights.pt").is_file()}


def format_info(summary: dict) -> str:
    """Human-readable version of ``summarise``."""
    lines = [f"workspace {summary['workspace']} (schema {summary['schema_version']})"]
    for set_name, s in summary["sets"].items():
        if s["input"] is None:
            lines.append(f"  {set_name}: empty")
            continue
        state = "" if s["complete"] else " (incomplete: run extract again to resume)"
        lines.append(f"  {set_name}: {s['input']}{state}")
        lines.append(f"    {s['frames']} {'frames' if s['kind'] == 'video' else 'images'}, {s['faces']} faces "
                     f"({s['detected']} detected, {s['bridged']} bridged), {s['dropped']} dropped "
                     f"{s['dropped_by_reason'] or ''}".rstrip())
        ident = s["identity"]
        groups = ", ".join(map(str, s["identity_groups"][:8])) + (" ..." if len(s["identity_groups"]) > 8 else "")
        lines.append(f"    identities: {s['identities']} distinct (faces per person: {groups or '-'})"
                     + (f"; target face {ident['target_face']}: {ident['kept']} kept, {ident['dropped']} "
                        f"dropped" if ident["target_face"] else ""))
        lines.append("    masks: " + ", ".join(f"{k} {v}" for k, v in s["masks"].items() if v or k in ("hull", "hand")))
        lines.append("    extracted with: " + ", ".join(f"{k} {v}" for k, v in s["backends"].items()))
        if s["frames_without_face"]:
            shown = s["frames_without_face"][:20] if s["kind"] == "video" else s["sources_without_face"][:20]
            more = len(s["frames_without_face"]) - len(shown)
            lines.append(f"    without a face: {', '.join(map(str, shown))}" + (f" (+{more} more)" if more > 0 else ""))
        if s["unreadable"]:
            lines.append(f"    unreadable: {', '.join(s['unreadable'])}")
    m = summary.get("model")
    if m is None:
        lines.append("  model: none trained (python main.py train)")
    elif "error" in m:
        lines.append(f"  model: {m['error']}")
    else:
        size = ", ".join(f"{k} {v}" for k, v in m["size"].items())
        lines.append(f"  model: {m['type']} {m['resolution']} px ({size}) on '{m['face_type']}' faces, iteration "
                     f"{m['iteration']}" + (f" of {m['iterations']}" if m["iterations"] else "")
                     + ("" if m["weights"] else "; weights.pt missing"))
    return "\n".join(lines)
