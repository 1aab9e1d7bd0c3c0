"""``convert --credentials`` (on by default): the C2PA manifest signed into the finished video (issue 30).

Everything that can fail is checked before a frame is rendered (the signing key, the
output's format, the consent file), so a bad key costs seconds, not a render. The hashes
of the dst video and of the src face set are taken in a background thread while the
frames render (they only read files), so signing adds little to convert's time; the
signature itself is written into a second temp file that replaces ``--output`` only when
complete, as the video does.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from convert.options import ConvertOptions
from pipeline.core.errors import UserError
from pipeline.core.files import remove_quietly
from pipeline.provenance import consent as consent_records
from pipeline.provenance.credentials import Facts, check_signer, set_hash, sign_video
from pipeline.provenance.signing import SigningMaterial, resolve
from pipeline.provenance.watermark import Watermark

log = logging.getLogger("convert")

#: options that name files on the artist's machine: not stated in the manifest (it travels with the video)
_PRIVATE = ("workspace", "input", "output", "watermark_key", "sign_key", "sign_cert")


def settings(opts: ConvertOptions) -> dict[str, Any]:
    """Convert's settings as the manifest states them: every option except paths on this machine."""
    out: dict[str, Any] = {}
    for name, value in dataclasses.asdict(opts).items():
        if name in _PRIVATE:
            continue
        out[name] = str(value) if isinstance(value, Path) else value
    return out


def signing_material(opts: ConvertOptions, output: Path) -> SigningMaterial:
    """The key that will sign, checked before anything is loaded (a bad key costs no render)."""
    if output.suffix.lower() == ".mkv":         # an output convert writes, but C2PA has no place in Matroska
        raise UserError(f"--output {output}: content credentials go into .mp4, .m4v or .mov files, not "
                        f"{output.suffix}; use one of those, or --no-credentials")  # other names: _check_output
    material = resolve(opts.sign_key, opts.sign_cert)
    check_signer(material)
    return material


class Credentials:
    """The signing material and the facts of one convert, gathered before and during the render."""

    def __init__(self, opts: ConvertOptions, material: SigningMaterial, dst: Path,
                 input_hashes: Callable[[], tuple[str, str]], meta: dict, mark: Watermark | None) -> None:
        self.material = material
        root = Path(opts.workspace)
        self.consent = consent_records.summary(root)
        self.opts, self.dst, self.input_hashes, self.meta = opts, dst, input_hashes, meta
        self.key_id = mark.key_id if mark is not None else None
        self.payload = mark.payload.hex() if mark is not None and mark.payload is not None else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="credentials")
        self._hashes: Future = self._pool.submit(self._hash_inputs, root / "data_src" / "aligned")

    def _hash_inputs(self, src_folder: Path) -> tuple[str, int, str, str]:
        src = sorted(p for p in src_folder.glob("*") if p.is_file()) if src_folder.is_dir() else []
        dst_sha, weights_sha = self.input_hashes()        # the renderer's, shared with the watermark's payload
        return dst_sha, len(src), set_hash(src), weights_sha

    def notices(self) -> None:
        kind = "self-signed key of this machine" if self.material.self_signed else "key"
        log.info("convert: content credentials (C2PA) signed with the %s: %s", kind, self.material.source)
        if not self.consent["recorded"]:
            log.warning("convert: no consent recorded in this workspace; the credentials will say so "
                        "('main.py consent add --set src --name NAME --document FILE' records it)")

    def sign(self, video: Path, output: Path, frames: int) -> Path:
        """``video`` (finished, unsigned) with the manifest, in a new temp file beside ``output``; ``video`` removed."""
        dst_sha, src_faces, src_sha, weights_sha = self._hashes.result()
        self._pool.shutdown()
        facts = Facts(title=output.name, dst_path=self.dst, dst_sha256=dst_sha, src_faces=src_faces,
                      src_sha256=src_sha, model_type=str(self.meta.get("model_type", "?")),
                      model_sha256=weights_sha, model_iteration=self.meta.get("iteration"),
                      settings=settings(self.opts), consent=self.consent, watermark_key_id=self.key_id,
                      watermark_payload=self.payload, frames=frames)
        signed = video.with_name(video.name.replace(".tmp", ".signed.tmp", 1))
        try:
            sign_video(video, signed, self.material, facts)
        except BaseException:
            remove_quietly(signed)
            raise
        remove_quietly(video)
        return signed

    def close(self) -> None:
        self._pool.shutdown(wait=True)
