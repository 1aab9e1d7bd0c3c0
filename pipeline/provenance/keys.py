"""The watermark key: 32 random bytes, made once per machine, kept where the user's settings are.

Why a file per machine (and not per workspace): a studio marks every result with one key
and hands the same file to whoever checks its output (``verify --key``); a workspace is
copied and shared more freely than a key should be. ``$FACE_WATERMARK_KEY`` points at
another file (a studio's shared key, or a test's).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.files import write_atomic

KEY_BYTES = 32


def default_key_path() -> Path:
    """$FACE_WATERMARK_KEY, else ``watermark.key`` in the user's config folder ($XDG_CONFIG_HOME or ~/.config)."""
    env = os.environ.get("FACE_WATERMARK_KEY")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "faceswap-workbench" / "watermark.key"


def load_key(path: Path | None = None, create: bool = False) -> bytes:
    """The key in ``path`` (64 hex digits; default: this machine's); made there first when ``create``."""
    path = Path(path) if path is not None else default_key_path()
    if not path.is_file():
        if not create:
            raise UserError(f"no watermark key at {path}; give the key the video was marked with (--key FILE)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, (secrets.token_hex(KEY_BYTES) + "\n").encode())
            os.chmod(path, 0o600)
        except OSError as err:
            raise UserError(f"could not write a new watermark key to {path} ({err.strerror}); set "
                            f"FACE_WATERMARK_KEY to a writable file, or convert with --no-watermark") from err
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"watermark key {path} is unreadable or not 64 hex digits ({err}); restore it from your "
                        f"backup") from err
    if len(key) != KEY_BYTES:
        raise UserError(f"watermark key {path} holds {len(key)} bytes, not {KEY_BYTES}; restore it from your "
                        f"backup")
    return key
