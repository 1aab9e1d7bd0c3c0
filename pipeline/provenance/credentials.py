"""C2PA content credentials: the signed manifest convert writes into the result, and what verify reads back.

Why C2PA: it is what platforms and broadcasters' compliance desks read to learn that a
video was made by a trained algorithm. The manifest says so in its actions (``c2pa.opened``
the dst video, ``c2pa.edited`` with the IPTC digital source type *trainedAlgorithmicMedia*),
names the dst video (the parent ingredient, hashed by c2pa, not copied) and the src face set
(an ingredient described by its SHA-256, not copied), and carries one assertion of ours,
``LABEL``: the model's type and weight hash, convert's settings, the watermark's key id and
whether the people's consent was recorded (the document hashes, never names).

c2pa-python is imported only inside these functions: commands that never sign or read
credentials do not pay for loading its native library.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.provenance.signing import SigningMaterial

LABEL = "org.faceswap-workbench.provenance"
TOOL = "faceswap-workbench"
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: the UUID of the top-level box C2PA puts its manifest store in (ISO BMFF: MP4, MOV, M4V)
C2PA_BOX_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
UNTRUSTED = "signingCredential.untrusted"
MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime"}


def _c2pa() -> Any:
    """The c2pa module, or one line saying how to get it (it is in requirements.txt)."""
    try:
        import c2pa
    except ImportError as err:
        raise UserError(f"c2pa-python is not installed ({err}); pip install -r requirements.lock, or convert with "
                        f"--no-credentials") from err
    return c2pa


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def set_hash(files: list[Path]) -> str:
    """One SHA-256 for a face set: of the sorted (name, file SHA-256) lines, so it names exactly these faces."""
    lines = sorted(f"{p.name} {sha256_file(p)}\n" for p in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def model_hash(model_dir: Path) -> str:
    """The SHA-256 of the model's weight file: the same figure in the manifest and in an exported .dfm."""
    return sha256_file(Path(model_dir) / "weights.pt")


@dataclass
class Facts:
    """What the manifest states about one convert."""
    title: str
    dst_path: Path
    dst_sha256: str
    src_faces: int
    src_sha256: str
    model_type: str
    model_sha256: str
    model_iteration: Any
    settings: dict[str, Any]
    consent: dict[str, Any]
    watermark_key_id: str | None
    watermark_payload: str | None = None     # hex, what the mark carries (``watermark.render_payload``)
    frames: int = 0
    version: str = "0.2.0"

    def assertion(self) -> dict[str, Any]:
        return {"tool": {"name": TOOL, "version": self.version},
                "dst": {"name": self.dst_path.name, "sha256": self.dst_sha256},
                "src": {"faces": self.src_faces, "sha256": self.src_sha256},
                "model": {"type": self.model_type, "sha256": self.model_sha256, "iteration": self.model_iteration},
                "settings": self.settings, "consent": self.consent,
                "watermark": {"embedded": self.watermark_key_id is not None, "key_id": self.watermark_key_id,
                              "payload": self.watermark_payload},
                "frames": self.frames}


def manifest_definition(facts: Facts) -> dict[str, Any]:
    """The manifest as c2pa's Builder takes it (the dst ingredient is added from its file)."""
    return {
        "claim_generator_info": [{"name": TOOL, "version": facts.version}],
        "title": facts.title,
        "format": MIME.get(Path(facts.title).suffix.lower(), "video/mp4"),
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [
                {"action": "c2pa.opened", "parameters": {"ingredientIds": ["dst"]}},
                {"action": "c2pa.edited", "digitalSourceType": TRAINED,
                 "softwareAgent": {"name": TOOL, "version": facts.version},
                 "description": f"faces replaced by a trained {facts.model_type} model (face swap)",
                 "parameters": {"ingredientIds": ["src"]}}]}},
            {"label": LABEL, "data": facts.assertion()},
        ],
        "ingredients": [
            {"title": "src face set", "relationship": "componentOf", "format": "application/octet-stream",
             "label": "src", "description": f"{facts.src_faces} aligned faces, set SHA-256 {facts.src_sha256} "
                                            f"(hash only; the faces are not copied)"},
        ],
    }


def sign_video(source: Path, dest: Path, material: SigningMaterial, facts: Facts) -> None:
    """Write ``source`` with the signed manifest to ``dest`` (a temp file the caller renames into place)."""
    c2pa = _c2pa()
    mime = MIME.get(source.suffix.lower())
    if mime is None:
        raise UserError(f"content credentials go into .mp4, .m4v or .mov files, not {source.suffix}; use one, or "
                        f"--no-credentials")
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(material.alg, material.cert_chain,
                                                            material.private_key, None))
        with signer, c2pa.Builder(manifest_definition(facts)) as builder:
            with open(facts.dst_path, "rb") as dst:
                builder.add_ingredient({"title": facts.dst_path.name, "relationship": "parentOf", "label": "dst",
                                        "description": f"SHA-256 {facts.dst_sha256} (hash only; not copied)"},
                                       MIME.get(facts.dst_path.suffix.lower(), "video/mp4"), dst)
            with open(source, "rb") as src, open(dest, "w+b") as out:
                builder.sign(signer, mime, src, out)
    except c2pa.C2paError as err:
        raise UserError(f"could not sign the content credentials with {material.source} ({err}); check the key "
                        f"and certificate, or convert with --no-credentials") from err


def check_signer(material: SigningMaterial) -> None:
    """Sign a tiny PNG in memory with ``material``: c2pa refuses a certificate it cannot sign with (no CA chain,
    wrong key usage, expired) only when it signs, and that should cost a second before the render, not the render."""
    import io

    import cv2
    import numpy as np
    c2pa = _c2pa()
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(material.alg, material.cert_chain,
                                                            material.private_key, None))
        created = {"actions": [{"action": "c2pa.created", "digitalSourceType": TRAINED}]}
        probe = {"claim_generator_info": [{"name": TOOL}], "title": "probe.png",
                 "assertions": [{"label": "c2pa.actions.v2", "data": created}]}
        with signer, c2pa.Builder(probe) as builder:
            builder.sign(signer, "image/png", io.BytesIO(png), io.BytesIO())
    except c2pa.C2paError as err:
        raise UserError(f"cannot sign content credentials with {material.source} ({err}); C2PA needs a signing "
                        f"certificate issued by a CA (not self-signed alone), with the digitalSignature key usage, "
                        f"given with its chain; or convert with --no-credentials") from err


@dataclass
class Credentials:
    """What verify learned from a video's manifest."""
    found: bool = False
    state: str = "none"                 # none | Invalid | Valid | Trusted (c2pa's validation state)
    failures: list[str] = field(default_factory=list)
    signer: str | None = None
    issuer: str | None = None
    label: str | None = None
    ours: dict[str, Any] | None = None          # the LABEL assertion, when present
    trained_algorithmic: bool = False
    error: str | None = None

    @property
    def valid(self) -> bool:
        """Signature and hashes check out (trusted signer or not)."""
        return self.found and self.state in ("Valid", "Trusted") and not self.failures

    @property
    def damaged(self) -> bool:
        return self.found and not self.valid

    def to_json(self) -> dict[str, Any]:
        return {"found": self.found, "valid": self.valid, "state": self.state,
                "trusted": self.state == "Trusted", "failures": self.failures, "signer": self.signer,
                "issuer": self.issuer, "manifest": self.label, "trained_algorithmic": self.trained_algorithmic,
                "provenance": self.ours, "error": self.error}


def has_c2pa_box(path: Path) -> bool:
    """Whether the file's top-level ISO BMFF boxes hold a C2PA ``uuid`` box (read even when c2pa cannot parse it).

    Why our own scan: a manifest whose bytes were changed may no longer be recognised as
    one, and a video that carried credentials must then read as damaged, not as unsigned.
    """
    try:
        with open(path, "rb") as fh:
            size_total = fh.seek(0, 2)
            pos = 0
            while pos + 8 <= size_total:
                fh.seek(pos)
                head = fh.read(16)
                size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                header = 8
                if size == 1:
                    fh.seek(pos + 8)
                    size, header = int.from_bytes(fh.read(8), "big"), 16
                elif size == 0:
                    size = size_total - pos
                if size < header:
                    return False
                if kind == b"uuid":
                    fh.seek(pos + header)
                    if fh.read(16) == C2PA_BOX_UUID:
                        return True
                pos += size
    except OSError:
        return False
    return False


def read_credentials(path: Path, anchors: list[bytes]) -> Credentials:
    """Read and validate the manifest in ``path`` (signature, assertion and BMFF hashes); ``anchors``: PEM roots
    to trust (this machine's own, a studio's CA)."""
    c2pa = _c2pa()
    result = Credentials()
    mime = MIME.get(path.suffix.lower())
    if mime is None:                    # a container C2PA has no place in (.mkv): nothing to read
        return result
    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if anchors:
        settings["trust"] = {"user_anchors": b"".join(anchors).decode("ascii", "replace")}
    try:
        context = c2pa.Context.from_dict(settings)
        with open(path, "rb") as fh:
            reader = c2pa.Reader.try_create(mime, fh, None, context)
            if reader is None:
                if has_c2pa_box(path):
                    result.found, result.state = True, "Invalid"
                    result.failures = ["manifest box present but unreadable"]
                return result
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError as err:
        result.error = str(err)
        if has_c2pa_box(path):          # a manifest was there and no longer parses: damaged
            result.found, result.state = True, "Invalid"
            result.failures = [f"unreadable manifest: {type(err).__name__.lstrip('_')}"]
        return result                   # else: a file c2pa cannot parse at all, with no manifest in it
    result.found = True
    result.state = str(store.get("validation_state") or "Invalid")
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    # an unknown signer is not damage: the signature and hashes still check out ("Valid", not "Trusted")
    codes = [str(f.get("code")) for f in active.get("failure", [])] if results else \
        [str(f.get("code")) for f in store.get("validation_status") or []]
    result.failures = [c for c in codes if c != UNTRUSTED]
    manifest = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
    result.label = store.get("active_manifest")
    sig = manifest.get("signature_info") or {}
    result.signer, result.issuer = sig.get("common_name"), sig.get("issuer")
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") == LABEL:
            result.ours = assertion.get("data")
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            result.trained_algorithmic |= any(a.get("digitalSourceType") == TRAINED
                                              for a in assertion.get("data", {}).get("actions", []))
    return result
