"""Who signs the content credentials: a key and its certificate chain (issue 30).

Three places, first found wins:
1. ``convert --sign-key KEY --sign-cert CERT`` (a studio's key, its certificate chain from a CA);
2. the config entry ``signing.json`` in the user's config folder (``{"key": PATH, "cert": PATH}``),
   so a studio sets its key once per machine instead of on every convert;
3. this machine's own key, made on first use in ``$FACE_SIGNING_DIR`` (else
   ``~/.config/faceswap-workbench/signing/``): a local root certificate and a signing
   certificate issued by it. Why two certificates and not one: the C2PA rules refuse a
   signing certificate that is its own CA, so a single self-signed certificate would not
   validate anywhere. Nobody else trusts that root: a verifier elsewhere reads a *valid*
   signature from an *unknown* signer. The README says how to use a real one.

Private keys are written with 0600 permissions, atomically.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.core.errors import UserError
from pipeline.core.files import write_atomic

KEY_FILE, CERT_FILE, ROOT_FILE = "signing-key.pem", "signing-cert.pem", "signing-root.pem"
CONFIG_FILE = "signing.json"
ORGANIZATION = "faceswap-workbench (self-signed, this machine)"


def config_dir() -> Path:
    """The user's config folder for this tool ($XDG_CONFIG_HOME or ~/.config)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "faceswap-workbench"


def machine_dir() -> Path:
    """Where this machine's own signing key lives: $FACE_SIGNING_DIR, else the config folder's ``signing/``."""
    env = os.environ.get("FACE_SIGNING_DIR")
    return Path(env) if env else config_dir() / "signing"


@dataclass(frozen=True)
class SigningMaterial:
    """What c2pa needs to sign: the algorithm, the certificate chain (PEM, signer first) and the private key (PEM)."""
    alg: str
    cert_chain: bytes
    private_key: bytes
    source: str                     # where it came from, for the log line
    self_signed: bool


def _algorithm(key: object, where: Path) -> str:
    """The C2PA signing algorithm for this kind of key (why: c2pa takes it as a name, not from the key)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in names:
            return names[key.curve.name]
    elif isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise UserError(f"signing key {where}: unsupported key type for C2PA (use EC P-256/P-384/P-521, RSA or "
                    f"Ed25519)")


def load_material(key_path: Path, cert_path: Path, self_signed: bool = False, source: str = "") -> SigningMaterial:
    """Read a PEM private key and its PEM certificate chain, checking that they belong together."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    try:
        key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
    except OSError as err:
        which = key_path if not key_path.is_file() else cert_path
        raise UserError(f"signing key or certificate {which} cannot be read ({err.strerror}); give a PEM key with "
                        f"--sign-key and its PEM certificate chain with --sign-cert, or --no-credentials") from err
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise UserError(f"signing key {key_path} is not an unencrypted PEM private key ({err}); export it "
                        f"without a passphrase, or --no-credentials") from err
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as err:
        raise UserError(f"signing certificate {cert_path} is not a PEM certificate chain ({err}); give the chain "
                        f"with the signing certificate first") from err
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if (certs[0].public_key().public_bytes(serialization.Encoding.DER, pub)
            != key.public_key().public_bytes(serialization.Encoding.DER, pub)):
        raise UserError(f"signing certificate {cert_path} does not belong to the key {key_path} (its first "
                        f"certificate must be the signing one)")
    return SigningMaterial(_algorithm(key, key_path), cert_pem, key_pem, source or f"{key_path} + {cert_path}",
                           self_signed)


def _config_entry() -> tuple[Path, Path] | None:
    path = config_dir() / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        return Path(entry["key"]).expanduser(), Path(entry["cert"]).expanduser()
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"config entry {path} is not JSON with \"key\" and \"cert\" paths ({err}); fix it or "
                        f"remove it to sign with this machine's own key") from err


def resolve(key: Path | None, cert: Path | None) -> SigningMaterial:
    """The signing material convert uses: the options', else the config entry's, else this machine's own."""
    if (key is None) != (cert is None):
        raise UserError("--sign-key and --sign-cert go together: give both (the key and its certificate chain)")
    if key is not None and cert is not None:
        return load_material(key, cert)
    entry = _config_entry()
    if entry is not None:
        return load_material(*entry, source=f"{config_dir() / CONFIG_FILE}: {entry[0]}")
    return machine_material(create=True)


def machine_material(create: bool = False) -> SigningMaterial:
    """This machine's self-signed signing key and chain, made on first use when ``create``."""
    folder = machine_dir()
    if not (folder / KEY_FILE).is_file() or not (folder / CERT_FILE).is_file():
        if not create:
            raise UserError(f"no signing key in {folder}")
        _make_machine_material(folder)
    return load_material(folder / KEY_FILE, folder / CERT_FILE, self_signed=True,
                         source=f"this machine's self-signed key in {folder}")


def machine_root() -> bytes | None:
    """This machine's root certificate (PEM), which verify trusts on the machine that made it; None if none yet."""
    path = machine_dir() / ROOT_FILE
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write_private(fh: BinaryIO, secret: bytes) -> None:
    """The file made readable by its owner only before a byte of the key is in it."""
    os.fchmod(fh.fileno(), 0o600)
    fh.write(secret)


def _make_machine_material(folder: Path) -> None:
    """A local root (CA) and an ES256 signing certificate it issued, 10 years; the key 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])

    host = socket.gethostname()[:40] or "this machine"
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(name(f"faceswap-workbench root on {host}"))
            .issuer_name(name(f"faceswap-workbench root on {host}")).public_key(root_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name(f"faceswap-workbench on {host}")).issuer_name(root.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key_path = folder / KEY_FILE
        secret = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_atomic(key_path, lambda fh: _write_private(fh, secret))
        write_atomic(folder / ROOT_FILE, root.public_bytes(pem))
        write_atomic(folder / CERT_FILE, cert.public_bytes(pem) + root.public_bytes(pem))   # written last
    except OSError as err:
        raise UserError(f"could not write a new signing key to {folder} ({err.strerror}); set FACE_SIGNING_DIR to "
                        f"a writable folder, give --sign-key/--sign-cert, or convert with --no-credentials") from err
