"""``main.py info``: what a workspace holds, per set, as stable JSON and as text.

Read-only: it reports artist edits (deleted faces, repainted masks) as they are on disk
without writing them to the index.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.faces.identity import SAME_PERSON, cluster, unpack
from pipeline.workspace.store import SETS, Workspace

MASK_ORIGINS = ("hull", "xseg", "parsing", "hand", "missing")


def _empty_set() -> dict:
    return {"input": None, "kind": None, "complete": False, "frames": 0, "faces": 0, "dropped": 0,
            "dropped_by_reason": {}, "detected": 0, "bridged": 0, "frames_without_face": [],
            "sources_without_face": [], "unreadable": [], "masks": {k: 0 for k in MASK_ORIGINS},
            "face_type": None, "size": None, "video": None,
            "identity": {"target_face": None, "threshold": None, "kept": 0, "dropped": 0},
            "identities": 0, "identity_groups": [], "faces_without_descriptor": 0}


def summarise(ws: Workspace) -> dict:
    """The JSON ``info --json`` prints; keys are stable for other tools to read."""
    out = {"workspace": str(ws.root), "schema_version": ws.meta.get("schema_version"), "sets": {}}
    for set_name in SETS:
        info = _empty_set()
        out["sets"][set_name] = info
        meta = ws.set_meta(set_name)
        if meta is None:
            continue
        info.update(input=meta.get("input"), kind=meta.get("kind"), complete=bool(meta.get("complete")),
                    face_type=meta.get("extract", {}).get("face_type"), size=meta.get("extract", {}).get("size"),
                    video=meta.get("video"))
        scan = ws.scan_artist_edits(set_name)
        deleted, hand = set(scan.deleted), set(scan.hand_masks)
        restored, missing = set(scan.restored_masks), set(scan.missing_masks)
        reasons: Counter = Counter()
        masks: Counter = Counter({k: 0 for k in MASK_ORIGINS})
        descriptors = []
        for row in ws.faces(set_name):
            if row["dropped"] or row["id"] in deleted:
                reasons[row["drop_reason"] or "deleted"] += 1
                continue
            info["faces"] += 1
            desc = unpack(row["descriptor"])
            if desc is None:
                info["faces_without_descriptor"] += 1
            else:
                descriptors.append(desc)
            info["detected" if row["origin"] == "detected" else "bridged"] += 1
            if row["id"] in missing:
                masks["missing"] += 1
            elif row["id"] in hand:
                masks["hand"] += 1
            elif row["id"] in restored:
                masks["hull"] += 1
            else:
                masks[row["mask_origin"]] += 1
        if descriptors:
            groups = np.bincount(cluster(np.stack(descriptors), SAME_PERSON))
            info["identities"] = int(len(groups))
            info["identity_groups"] = [int(g) for g in groups]
        settings = meta.get("extract", {})
        info["identity"] = {"target_face": settings.get("target_face"),
                            "threshold": settings.get("target_threshold"),
                            "kept": info["faces"], "dropped": reasons.get("identity", 0)}
        info["dropped"] = sum(reasons.values())
        info["dropped_by_reason"] = dict(reasons)
        info["masks"] = dict(masks)
        db = ws.read_db()
        frames = db.execute("SELECT source, frame_index, status, faces FROM frames WHERE set_name=? "
                            "ORDER BY source, frame_index", (set_name,)).fetchall() if db else []
        info["frames"] = len(frames)
        for ordinal, (source, index, status, faces) in enumerate(frames):
            key = index if meta.get("kind") == "video" else ordinal
            if status == "unreadable":
                info["unreadable"].append(source)
            elif faces == 0:
                info["frames_without_face"].append(key)
                info["sources_without_face"].append(source if meta.get("kind") != "video" else f"{source}#{index}")
    return out


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
        if s["frames_without_face"]:
            shown = s["frames_without_face"][:20] if s["kind"] == "video" else s["sources_without_face"][:20]
            more = len(s["frames_without_face"]) - len(shown)
            lines.append(f"    without a face: {', '.join(map(str, shown))}" + (f" (+{more} more)" if more > 0 else ""))
        if s["unreadable"]:
            lines.append(f"    unreadable: {', '.join(s['unreadable'])}")
    return "\n".join(lines)
