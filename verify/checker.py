"""``main.py verify``: is this video a face swap marked with our key? Frame by frame, without the original.

Every frame is decoded, its faces found (RetinaFace + MediaPipe, as extract does), and each
face's watermark score for that frame's pattern taken against the same face in the frames
before and after it (``pipeline.provenance.watermark.FrameScorer``); the best face of a
frame is its score. A frame is marked when the scores of ``--window``
frames around it, summed over the square root of their count, reach ``THRESHOLD``
standard deviations (without the mark that sum is a standard normal variable); without
``--window``, 25 frames, else 51, else 75, the first that finds the mark in at least half
of the frames (a resized copy carries a weaker mark). The
verdict: *marked* when at least half of the frames with a face are, *not marked* when none
is, *partly marked* in between (a video cut together from marked and unmarked shots, or
damaged).

Before the frames, the C2PA content credentials convert signed into the file are read and
validated (signature, assertion hashes, the hash of every byte of the video outside the
manifest): a manifest that is there but does not validate (frames cut, bytes changed,
manifest edited) makes the verdict *damaged*, whatever the watermark says: a changed video
must never read as marked and intact. Without a manifest (a re-encode drops it) the
watermark alone decides, and the verdict says the credentials are missing.

The mark's payload (32 bits: which model was applied to which video, ``render_payload``)
is read back over the whole video and printed; a valid manifest that states another
payload (credentials of another render put on these frames) makes the verdict *damaged*.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.core.errors import UserError
from pipeline.core.video import FrameReader, probe
from pipeline.provenance.credentials import Credentials, read_credentials
from pipeline.provenance.keys import default_key_path, load_key
from pipeline.provenance.watermark import THRESHOLD, WINDOWS, FrameScorer, Watermark, face_cells, judge
from verify.options import VerifyOptions

log = logging.getLogger("verify")

#: exit codes: the verdict is what a script checks (2: bad input, as every command)
MARKED, NOT_MARKED, DAMAGED = 0, 1, 3


@dataclass
class Verdict:
    video: str
    key_id: str | None          # None: no watermark key on this machine, the watermark was not looked for
    frames: int = 0
    frames_with_face: int = 0
    frames_marked: int = 0
    window: int = 25
    first_marked: int | None = None
    last_marked: int | None = None
    scores: dict[int, float] = field(default_factory=dict)
    credentials: Credentials = field(default_factory=Credentials)
    payload: str | None = None          # hex, read back from the mark (None: not read, too few frames or too weak)

    @property
    def stated_payload(self) -> str | None:
        """The payload the manifest says the mark carries (None without a manifest of ours)."""
        return ((self.credentials.ours or {}).get("watermark") or {}).get("payload")

    @property
    def payload_mismatch(self) -> bool:
        """The mark's payload and the manifest's disagree: credentials of another render on these frames."""
        return self.payload is not None and self.stated_payload is not None and self.payload != self.stated_payload

    @property
    def watermark_verdict(self) -> str:
        if self.key_id is None:
            return "not checked"
        if self.frames_marked == 0:
            return "not marked"
        return "marked" if self.frames_marked * 2 >= self.frames_with_face else "partly marked"

    @property
    def verdict(self) -> str:
        """damaged (credentials there but invalid, or the mark in part of the frames only), marked, not marked."""
        if self.credentials.damaged or self.payload_mismatch:
            return "damaged"
        if self.credentials.valid:
            return "marked"
        mark = self.watermark_verdict
        return {"partly marked": "damaged", "not checked": "not marked"}.get(mark, mark)

    @property
    def exit_code(self) -> int:
        return {"marked": MARKED, "not marked": NOT_MARKED}.get(self.verdict, DAMAGED)

    def credentials_text(self) -> str:
        c = self.credentials
        if not c.found:
            return "no content credentials"
        if c.damaged:
            return f"content credentials INVALID ({', '.join(c.failures) or c.state})"
        who = f"signed by {c.signer}" + (" (trusted)" if c.state == "Trusted" else " (signer not on a trust list)")
        what = ", made by a trained algorithm" if c.trained_algorithmic else ""
        consent = (c.ours or {}).get("consent", {})
        said = ("; consent recorded" if consent.get("recorded") else "; no consent recorded") if consent else ""
        return f"content credentials valid, {who}{what}{said}"

    def payload_text(self) -> str:
        if self.payload is None:
            return ""
        if self.payload_mismatch:
            return f"; payload {self.payload} DOES NOT MATCH the manifest's {self.stated_payload}"
        said = " (as the manifest states)" if self.stated_payload == self.payload else \
            " (SHA-256 of the dst video's and the model weights' SHA-256s, first 32 bits)"
        return f"; payload {self.payload}{said}"

    def line(self) -> str:
        share = 100.0 * self.frames_marked / max(self.frames_with_face, 1)
        where = f", frames {self.first_marked}-{self.last_marked}" if self.first_marked is not None else ""
        if self.key_id is None:
            return (f"verify: {self.video}: {self.verdict} - {self.credentials_text()}; watermark not looked for: no "
                    f"key on this machine (give the marking studio's key with --key FILE)")
        return (f"verify: {self.video}: {self.verdict} - {self.credentials_text()}; watermark of key {self.key_id} "
                f"found in {self.frames_marked} of {self.frames_with_face} frames with a face ({share:.1f} %{where}; "
                f"{self.frames} frames, verdict over {self.window} frames){self.payload_text()}")

    def to_json(self) -> dict[str, Any]:
        return {"video": self.video, "verdict": self.verdict, "credentials": self.credentials.to_json(),
                "watermark": self.watermark_verdict, "key_id": self.key_id, "frames": self.frames,
                "frames_with_face": self.frames_with_face, "frames_marked": self.frames_marked,
                "window": self.window, "first_marked": self.first_marked, "last_marked": self.last_marked,
                "threshold": THRESHOLD, "payload": self.payload, "payload_matches_manifest":
                    None if self.payload is None or self.stated_payload is None else not self.payload_mismatch}


def trust_anchors(extra: list[Path]) -> list[bytes]:
    """The roots verify trusts: this machine's own (it made the self-signed credentials) and ``--trust`` files."""
    from pipeline.provenance.signing import machine_root
    anchors = [root] if (root := machine_root()) is not None else []
    from cryptography import x509
    for path in extra:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise UserError(f"--trust {path} cannot be read ({err.strerror}); give a PEM certificate file") from err
        try:             # checked here: c2pa would fail on it and the video would read as damaged
            x509.load_pem_x509_certificates(data)
        except ValueError as err:
            raise UserError(f"--trust {path} is not a PEM certificate file ({err}); give the signer's root "
                            f"certificate in PEM") from err
        anchors.append(data)
    return anchors


def run_verify(opts: VerifyOptions) -> Verdict:
    if not opts.video.is_file():
        raise UserError(f"{opts.video} is not a file; give the video to check")
    # a key named with --key must be there; without one, a machine that never marked anything (a compliance desk
    # checking a delivery) still reads the content credentials
    key_path = opts.key if opts.key is not None else default_key_path()
    mark = Watermark(load_key(key_path)) if opts.key is not None or key_path.is_file() else None
    credentials = read_credentials(opts.video, trust_anchors(opts.trust))
    info = probe(opts.video)
    result = Verdict(str(opts.video), mark.key_id if mark else None, window=opts.window or WINDOWS[0],
                     credentials=credentials)
    if mark is None:
        return result
    from pipeline.faces.analyser import FaceAnalyser
    analyser = FaceAnalyser("retinaface", "mediapipe", min_face=40)
    scorer = FrameScorer(mark)
    reader = FrameReader(opts.video, info.width, info.height)
    for index, frame in tqdm(reader, total=info.frames or None, unit="frame", desc="verify"):
        result.frames += 1
        scorer.add(index, [face_cells(frame, f.landmarks) for f in analyser(frame)])
    scores = scorer.finish()
    if reader.error_text:
        if credentials.damaged:         # the verdict stands: changed after signing
            log.warning("verify: %s could not be read to the end either", opts.video)
            return result
        raise UserError(f"{opts.video} could not be read to the end ({reader.error_text}); it is damaged")
    result.window, marked = judge(scores, opts.window)
    result.frames_with_face, result.frames_marked, result.scores = len(scores), len(marked), scores
    result.payload = scorer.payload.hex() if scorer.payload is not None else None
    if marked:
        result.first_marked, result.last_marked = marked[0], marked[-1]
    return result
