"""``main.py info``: what a workspace holds, per set, as stable JSON and as text.

Read-only: it reports artist edits (deleted faces, repainted masks) as they are on disk
without writing them to the index.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from info.options import InfoOptions
from pipeline.faces.people import people
from pipeline.registries import MASKERS
from pipeline.workspace import layout
from pipeline.workspace.records import SETS, DropReason, FaceOrigin, FaceRow, MaskOrigin
from pipeline.workspace.store import Workspace


def run_info(opts: InfoOptions) -> dict:
    """The summary of a workspace (read-only)."""
    layout.require(opts.workspace, "python main.py extract --input VIDEO")
    with Workspace(opts.workspace) as ws:
        return summarise(ws)


def mask_origins() -> tuple[str, ...]:
    """Every automatic masker, the artist's hand, and masks whose file is gone."""
    return (*MASKERS.names(), MaskOrigin.HAND.value, "missing")


def _empty_set() -> dict:
    return {"input": None, "kind": None, "complete": False, "frames": 0, "faces": 0, "dropped": 0,
            "dropped_by_reason": {}, "detected": 0, "bridged": 0, "frames_without_face": [],
            "sources_without_face": [], "unreadable": [], "masks": {k: 0 for k in mask_origins()},
            "face_type": None, "size": None, "video": None,
            "identity": {"target_face": None, "threshold": None, "kept": 0, "dropped": 0},
            "identities": 0, "identity_groups": [], "people": [], "faces_without_descriptor": 0, "backends": {}}


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
        kept = []
        for row in ws.faces_as_edited(set_name, scan):
            if row.dropped:
                reasons[(row.drop_reason or DropReason.DELETED).value] += 1
                continue
            kept.append(row)
            info["faces"] += 1
            if row.descriptor is None:
                info["faces_without_descriptor"] += 1
            info["detected" if row.origin == FaceOrigin.DETECTED else "bridged"] += 1
            masks["missing" if row.id in missing else MaskOrigin(row.mask_origin).value] += 1
        info["people"] = people_json(ws, set_name, kept)
        info["identities"] = len(info["people"])
        info["identity_groups"] = [p["faces"] for p in info["people"]]
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
                info["sources_without_face"].append(fr.source if meta.kind != "video"
                                                    else f"{fr.source}#{fr.frame_index}")
    out["model"] = model_summary(layout.model_dir(ws.root))
    out["consent"] = _consent(ws.root)
    return out


def people_json(ws: Workspace, set_name: str, rows: list[FaceRow]) -> list[dict]:
    """The people of a set's kept faces (``pipeline.faces.people``), most frames first, as info prints them.

    ``thumbnail`` is the person's best face (quality, then size) whose aligned file exists,
    relative to the workspace, so an artist (or a tool) sees at once who person 2 is.
    """
    _, found = people(rows)
    out = []
    for person in found:
        ranked = [person.best] + [i for i in person.rows if i != person.best]
        thumb = next((ws.aligned_path(rows[i]) for i in ranked if ws.aligned_path(rows[i]).is_file()), None)
        sources = {rows[i].source for i in person.rows}
        out.append({"person": person.number, "faces": len(person.rows), "frames": person.frames,
                    "first_frame": person.first_frame, "last_frame": person.last_frame,
                    "sources": len(sources),
                    "thumbnail": None if thumb is None else thumb.relative_to(ws.root).as_posix()})
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


#: people listed per set by the text version (the JSON has all)
PEOPLE_SHOWN = 12


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
        video = s["kind"] == "video"
        lines.append(f"    people: {s['identities']}" + (" (most frames first; convert swaps person 1 unless "
                                                          "--person says otherwise)" if video and s["identities"] > 1
                                                          else "")
                     + (f"; target face {ident['target_face']}: {ident['kept']} kept, {ident['dropped']} "
                        f"dropped" if ident["target_face"] else ""))
        for p in s["people"][:PEOPLE_SHOWN]:
            where = (f"{p['frames']} frames, {p['first_frame']}-{p['last_frame']}" if video
                     else f"{p['sources']} images")
            lines.append(f"      person {p['person']}: {p['faces']} faces ({where}), face {p['thumbnail'] or '-'}")
        if len(s["people"]) > PEOPLE_SHOWN:
            rest = s["people"][PEOPLE_SHOWN:]
            lines.append(f"      ... {len(rest)} more people with {sum(p['faces'] for p in rest)} faces "
                         f"(info --json lists them all)")
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
    consent = summary.get("consent") or []
    if isinstance(consent, dict):
        lines.append(f"  consent: {consent['error']}")
    elif not consent:
        lines.append("  consent: none recorded (python main.py consent add --set src --name NAME --document FILE)")
    for r in consent if isinstance(consent, list) else []:
        doc = r.get("document") or {}
        lines.append(f"  consent: {r.get('set')}: {r.get('name')}, {r.get('recorded_at')}, {doc.get('name')} "
                     f"SHA-256 {doc.get('sha256')}" + (f" (copy {doc['copy']})" if doc.get("copy") else ""))
    return "\n".join(lines)


def _consent(root: Path) -> list | dict:
    """The consent records (``main.py consent add``); a damaged file is reported, not raised: info only reads."""
    from pipeline.core.errors import UserError
    from pipeline.provenance.consent import read_records
    try:
        return read_records(root)
    except UserError as err:
        return {"error": str(err)}
