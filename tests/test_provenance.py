"""Content credentials and consent (issue 30): convert signs a C2PA manifest into the result, verify validates it,
a changed video reads as damaged and never as marked and valid; consent records are kept and stated."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pipeline.provenance.credentials import C2PA_BOX_UUID, read_credentials
from pipeline.provenance.signing import machine_dir, machine_material, machine_root
from tests.conftest import clean_error, ffmpeg, run_cli, snapshot
from tests.test_watermark import frames_and_faces, marked_clip, payload_clip  # noqa: F401  (fixtures)


def _boxes(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        out.append((pos, size, data[pos + 4:pos + 8]))
        pos += size
    return out


def _manifest_box(data: bytes) -> tuple[int, int]:
    return next((p, s) for p, s, k in _boxes(data) if k == b"uuid" and data[p + 8:p + 24] == C2PA_BOX_UUID)


def _verify_json(video: Path, key: Path) -> tuple[int, dict]:
    res = run_cli("verify", video, "--key", key, "--json")
    assert res.returncode in (0, 1, 3), res.stderr
    return res.returncode, json.loads(res.stdout)


@pytest.fixture(scope="module")
def signed_clip(marked_clip, tmp_path_factory):  # noqa: F811
    """``marked_clip`` signed as convert signs (this machine's self-signed key)."""
    from pipeline.provenance.credentials import Facts, sign_video
    video, _, key = marked_clip
    folder = tmp_path_factory.mktemp("signed")
    facts = Facts(title="signed.mp4", dst_path=video, dst_sha256="0" * 64, src_faces=2, src_sha256="1" * 64,
                  model_type="transform", model_sha256="2" * 64, model_iteration=5, settings={"crf": 18},
                  consent={"recorded": False}, watermark_key_id="k", frames=9)
    signed = folder / "signed.mp4"
    sign_video(video, signed, machine_material(create=True), facts)
    return signed, key


def test_signed_video_reads_valid_and_says_trained_algorithm(signed_clip):
    signed, key = signed_clip
    creds = read_credentials(signed, [machine_root()])
    assert creds.valid and creds.state == "Trusted" and creds.trained_algorithmic
    assert creds.ours["model"]["sha256"] == "2" * 64 and creds.ours["consent"] == {"recorded": False}
    assert read_credentials(signed, []).state == "Valid"          # elsewhere: valid, signer not trusted
    code, report = _verify_json(signed, key)
    assert code == 0 and report["verdict"] == "marked" and report["credentials"]["valid"]
    assert report["frames_marked"] == 9


def test_verify_without_a_watermark_key_still_reads_the_credentials(signed_clip, tmp_path):
    """A compliance desk that never marked anything has no key: the credentials alone decide, and no key is made."""
    import sys

    from tests.conftest import ROOT
    signed, _ = signed_clip
    env = {**os.environ, "FACE_WATERMARK_KEY": str(tmp_path / "none.key")}
    res = subprocess.run([sys.executable, str(ROOT / "main.py"), "verify", str(signed), "--json"], cwd=ROOT,
                         capture_output=True, text=True, env=env)
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["verdict"] == "marked" and report["watermark"] == "not checked"
    assert report["credentials"]["valid"] and not (tmp_path / "none.key").exists()
    res = subprocess.run([sys.executable, str(ROOT / "main.py"), "verify", str(signed)], cwd=ROOT,
                         capture_output=True, text=True, env=env)
    assert "watermark not looked for: no key on this machine" in res.stdout


def test_verify_bad_trust_file_is_one_line(signed_clip, tmp_path):
    signed, key = signed_clip
    clean_error(run_cli("verify", signed, "--key", key, "--trust", tmp_path / "none.pem"), "--trust", "cannot be read")
    (tmp_path / "bad.pem").write_text("not a certificate")
    clean_error(run_cli("verify", signed, "--key", key, "--trust", tmp_path / "bad.pem"), "not a PEM certificate")


@pytest.mark.parametrize("stated", ["right", "wrong"])
def test_verify_reads_the_payload_and_a_manifest_stating_another_is_damaged(payload_clip, tmp_path, stated):  # noqa: F811
    """The mark's payload printed and checked against the manifest's: credentials signed for another render and put
    on these frames read as damaged, not as marked and valid."""
    from pipeline.provenance.credentials import Facts, sign_video
    video, _, payload, key = payload_clip
    said = payload.hex() if stated == "right" else "0badf00d"
    facts = Facts(title="signed.mp4", dst_path=video, dst_sha256="d" * 64, src_faces=2, src_sha256="1" * 64,
                  model_type="transform", model_sha256="e" * 64, model_iteration=5, settings={"crf": 18},
                  consent={"recorded": False}, watermark_key_id="k", watermark_payload=said, frames=60)
    signed = tmp_path / "signed.mp4"
    sign_video(video, signed, machine_material(create=True), facts)
    code, report = _verify_json(signed, key)
    assert report["payload"] == payload.hex() and report["credentials"]["valid"]
    if stated == "right":
        assert code == 0 and report["verdict"] == "marked" and report["payload_matches_manifest"] is True
        assert f"payload {payload.hex()} (as the manifest states)" in run_cli("verify", signed, "--key", key).stdout
    else:
        assert code == 3 and report["verdict"] == "damaged" and report["payload_matches_manifest"] is False
    # re-encoded (the manifest gone): the payload alone says which render it was (60 frames carry each bit once or
    # twice: enough at crf 23; at crf 28 a video needs more frames, measured in the README)
    again = tmp_path / "again.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-i", signed, "-c:v", "libx264", "-crf", "23", again], check=True)
    code, report = _verify_json(again, key)
    assert code == 0 and report["payload"] == payload.hex() and report["payload_matches_manifest"] is None


def test_changed_manifest_bytes_read_damaged(signed_clip, tmp_path):
    signed, key = signed_clip
    data = signed.read_bytes()
    start, size = _manifest_box(data)
    for offset in (size // 2, 60):          # inside the signed claim; in the store's own header
        changed = bytearray(data)
        changed[start + offset] ^= 0x55
        bad = tmp_path / f"bad{offset}.mp4"
        bad.write_bytes(bytes(changed))
        code, report = _verify_json(bad, key)
        assert code == 3 and report["verdict"] == "damaged", report["credentials"]
        assert not report["credentials"]["valid"]


def test_cut_frames_read_damaged_with_the_manifest_and_unsigned_without(signed_clip, tmp_path):
    signed, key = signed_clip
    cut = tmp_path / "cut.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-i", signed, "-c", "copy", "-frames:v", "5", cut], check=True)
    code, report = _verify_json(cut, key)            # ffmpeg drops the manifest: the watermark alone speaks
    assert not report["credentials"]["found"] and report["verdict"] != "damaged"
    assert "no content credentials" in run_cli("verify", cut, "--key", key).stdout
    # the same cut with the original manifest kept (a tool that carries metadata over): the hashes fail
    data = signed.read_bytes()
    start, size = _manifest_box(data)
    kept = tmp_path / "cut_kept.mp4"
    kept.write_bytes(cut.read_bytes() + data[start:start + size])
    code, report = _verify_json(kept, key)
    assert code == 3 and report["verdict"] == "damaged" and not report["credentials"]["valid"]


def test_machine_key_is_made_once_and_private():
    first = machine_material(create=True)
    assert stat.S_IMODE(os.stat(machine_dir() / "signing-key.pem").st_mode) == 0o600
    again = machine_material(create=True)
    assert again.cert_chain == first.cert_chain and again.self_signed


def _own_key(folder: Path) -> tuple[Path, Path]:
    """A studio's key and certificate chain (its own CA), as --sign-key/--sign-cert take them."""
    from pipeline.provenance.signing import _make_machine_material
    _make_machine_material(folder)
    return folder / "signing-key.pem", folder / "signing-cert.pem"


def _self_signed_alone(folder: Path) -> tuple[Path, Path]:
    """A key with a certificate that is its own issuer: C2PA refuses to sign with it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    key_path, cert_path = folder / "self.key", folder / "self.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.mark.slow
def test_convert_signs_consent_and_options(small_ws, tmp_path):
    key = Path(os.environ["FACE_WATERMARK_KEY"])
    res = run_cli("convert", "--workspace", small_ws)
    assert res.returncode == 0, res.stderr
    assert "content credentials (C2PA) signed with the self-signed key of this machine" in res.stderr
    assert "no consent recorded in this workspace" in res.stderr
    creds = read_credentials(small_ws / "result.mp4", [machine_root()])
    assert creds.valid and creds.trained_algorithmic and creds.ours["consent"]["recorded"] is False
    from pipeline.provenance.credentials import model_hash
    assert creds.ours["model"]["sha256"] == model_hash(small_ws / "model")
    from pipeline.provenance.watermark import render_payload  # the payload is this model on this dst video
    assert creds.ours["watermark"]["payload"] == render_payload(creds.ours["dst"]["sha256"],
                                                               creds.ours["model"]["sha256"]).hex()
    assert creds.ours["src"]["faces"] == 2 and "workspace" not in creds.ours["settings"]

    # consent, then a convert with a key of the studio's own: the manifest says consent was recorded
    release = tmp_path / "release.pdf"
    release.write_bytes(b"%PDF signed release")
    res = run_cli("consent", "add", "-w", small_ws, "--set", "src", "--name", "Jane Doe", "--document", release)
    assert res.returncode == 0 and "hash only" in res.stdout, res.stderr
    assert not (small_ws / "consent").exists()
    assert "consent: src: Jane Doe" in run_cli("info", "-w", small_ws).stdout
    sign_key, sign_cert = _own_key(tmp_path / "studio")
    out = tmp_path / "signed.mp4"
    res = run_cli("convert", "--workspace", small_ws, "--output", out, "--sign-key", sign_key,
                  "--sign-cert", sign_cert)
    assert res.returncode == 0 and "no consent recorded" not in res.stderr, res.stderr
    creds = read_credentials(out, [])
    assert creds.valid and creds.ours["consent"]["recorded"] is True
    assert creds.ours["consent"]["documents"][0]["sha256"] == __import__("hashlib").sha256(
        release.read_bytes()).hexdigest()
    assert "Jane" not in json.dumps(creds.ours)                    # names stay in the workspace
    code, report = _verify_json(out, key)
    assert code == 0 and report["credentials"]["state"] == "Valid"  # the studio's CA is not trusted here...
    trusted = run_cli("verify", out, "--key", key, "--trust", sign_cert.parent / "signing-root.pem")
    assert trusted.returncode == 0 and "(trusted)" in trusted.stdout   # ... unless given

    plain = tmp_path / "plain.mp4"
    res = run_cli("convert", "--workspace", small_ws, "--output", plain, "--no-credentials")
    assert res.returncode == 0 and "--no-credentials: the video will carry no content credentials" in res.stderr
    assert not read_credentials(plain, []).found


@pytest.mark.parametrize("args, message", [
    (["--sign-key", "KEY"], "--sign-key and --sign-cert go together"),
    (["--sign-key", "MISSING", "--sign-cert", "CERT"], "cannot be read"),
    (["--sign-key", "GARBAGE", "--sign-cert", "CERT"], "is not an unencrypted PEM private key"),
    (["--sign-key", "OTHER", "--sign-cert", "CERT"], "does not belong to the key"),
    (["--output", "OUT.mkv"], "content credentials go into .mp4"),
    (["--sign-key", "SELF_KEY", "--sign-cert", "SELF_CERT"], "cannot sign content credentials"),
])
def test_convert_bad_signing_input_is_one_line_and_changes_nothing(small_ws, tmp_path, args, message):
    sign_key, sign_cert = _own_key(tmp_path / "studio")
    other_key, _ = _own_key(tmp_path / "other")
    (tmp_path / "garbage.pem").write_text("not a key")
    self_key, self_cert = _self_signed_alone(tmp_path)
    swap = {"KEY": sign_key, "CERT": sign_cert, "MISSING": tmp_path / "none.pem", "GARBAGE": tmp_path / "garbage.pem",
            "OTHER": other_key, "OUT.mkv": tmp_path / "out.mkv", "SELF_KEY": self_key, "SELF_CERT": self_cert}
    before = snapshot(small_ws)
    clean_error(run_cli("convert", "--workspace", small_ws, *[swap.get(a, a) for a in args]), message)
    assert snapshot(small_ws) == before and not (tmp_path / "out.mkv").exists()


def test_consent_add_copy_and_bad_input(small_ws, tmp_path):
    release = tmp_path / "release.pdf"
    release.write_bytes(b"%PDF-1.4 signed")
    before = snapshot(small_ws)
    clean_error(run_cli("consent", "add", "-w", small_ws, "--name", "A", "--document", tmp_path / "none.pdf"),
                "is not a file")
    clean_error(run_cli("consent", "add", "-w", small_ws, "--name", " ", "--document", release), "--name is empty")
    clean_error(run_cli("consent", "add", "-w", tmp_path / "nows", "--name", "A", "--document", release),
                "is not a workspace yet")
    assert snapshot(small_ws) == before
    res = run_cli("consent", "add", "-w", small_ws, "--set", "dst", "--name", "B", "--document", release, "--copy")
    assert res.returncode == 0, res.stderr
    records = json.loads(run_cli("consent", "list", "-w", small_ws, "--json").stdout)
    assert [r["set"] for r in records] == ["dst"]
    assert (small_ws / records[0]["document"]["copy"]).read_bytes() == release.read_bytes()
    info = json.loads(run_cli("info", "-w", small_ws, "--json").stdout)
    assert info["consent"][0]["name"] == "B"
    (small_ws / "consent_records.json").write_text("{broken")
    clean_error(run_cli("consent", "add", "-w", small_ws, "--name", "C", "--document", release), "is damaged")
    assert (small_ws / "consent_records.json").read_text() == "{broken"
    shutil.rmtree(small_ws / "consent")


def test_report_page_provenance_section():
    from evaluate.html_report import _provenance_html
    valid = {"found": True, "valid": True, "trusted": False, "signer": "studio", "trained_algorithmic": True,
             "provenance": {"consent": {"recorded": True}}, "failures": [], "state": "Valid"}
    html = _provenance_html({"provenance": {"credentials": valid, "watermark_key_id": "ab",
                                            "watermark_frames": 200, "watermark_frames_marked": 167}})
    assert "found and valid" in html and "signer not on a trust list" in html and "consent recorded" in html
    assert "found in 167 of 200 frames with a face (83.5 %)" in html
    bad = dict(valid, valid=False, failures=["assertion.bmffHash.mismatch"])
    html = _provenance_html({"provenance": {"credentials": bad, "watermark_key_id": None}})
    assert "INVALID (assertion.bmffHash.mismatch)" in html and "no watermark key" in html
    assert _provenance_html({}) == ""


def test_report_terminal_table_says_provenance_and_payload():
    from evaluate.html_report import _provenance_html, _provenance_line
    valid = {"found": True, "valid": True, "trusted": True, "failures": [], "state": "Trusted"}
    report = {"provenance": {"credentials": valid, "watermark_key_id": "ab", "watermark_frames": 200,
                             "watermark_frames_marked": 200, "watermark_payload": "378cc670"}}
    assert _provenance_line(report) == ["provenance: content credentials valid, trusted; watermark 200 of 200 "
                                        "frames with a face, key ab, payload 378cc670"]
    assert "payload 378cc670" in _provenance_html(report)
    report["provenance"].update(credentials={"found": True, "valid": False}, watermark_payload=None)
    assert "content credentials INVALID" in _provenance_line(report)[0] and "payload not read" in \
        _provenance_line(report)[0]
    report["provenance"].update(watermark_window=51, watermark_frames_marked=190)   # judged as verify judges
    assert "190 of 200 frames with a face (over 51-frame windows, as verify judges)" in _provenance_line(report)[0]
    assert "found in 190 of 200 frames with a face (95.0 %) over 51-frame windows" in _provenance_html(report)
    assert _provenance_line({}) == []
