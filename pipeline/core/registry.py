"""Named, lazily imported implementations: one registry per pluggable kind.

A registry is the single source of truth for its kind: the command line takes its
choices and help from it, ``main.py models`` lists it, and stages create backends
through it. An :class:`Entry` names its implementation by import path ("module:attr")
and is imported only when that entry is used, so a missing optional package matters
only to the user who asks for that backend.

Who registers what follows the layering: the kinds every stage shares (detectors,
landmarkers, maskers, model types, loss feature networks) are declared in
``pipeline/registries.py`` with the entries whose code lives in ``pipeline/``; a stage
declares its own kinds and registers the entries whose code it holds in its
``backends.py``, which its package imports when it loads (convert: colour transfers and
blend modes; evaluate: its own identity network; train: loss feature networks and model
trainers). So nothing in ``pipeline/`` names a stage's module, and ``main.py models``,
which runs after every command package has loaded, lists every kind from :func:`listed`.
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.errors import UserError


@dataclass(frozen=True)
class Entry:
    """One registered implementation of a kind."""

    name: str
    target: str                                  # "package.module:attribute", imported on first use
    description: str                             # one line: what it is and when to choose it
    options: tuple[str, ...] = ()                # command-line options this entry reads
    weights: tuple[str, ...] = ()                # keys of pipeline.core.weights.WEIGHTS it needs
    terms: str = ""                              # licence of the code or method (weights carry their own)
    parts: Mapping[str, str] = field(default_factory=dict)   # further lazy targets, e.g. a model's trainer


#: every registry made with ``listed=True``, in the order they were made (``main.py models`` shows them)
_LISTED: list[Registry] = []


def listed() -> tuple[Registry, ...]:
    """The registries ``main.py models`` shows: those of pipeline and of every stage package loaded so far."""
    return tuple(_LISTED)


class Registry:
    """Entries of one kind, by name, in registration order."""

    def __init__(self, kind: str, option: str | None = None, *, listed: bool = True) -> None:
        self.kind = kind                  # e.g. "detector"
        self.option = option              # the command-line option that picks one, e.g. "--detector"
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        if listed:
            if any(r.kind == kind for r in _LISTED):
                raise ValueError(f"a registry of {kind}s exists already")
            _LISTED.append(self)

    def register(self, entry: Entry) -> Entry:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} '{entry.name}' is registered twice")
        if ":" not in entry.target:
            raise ValueError(f"{self.kind} '{entry.name}': target must be 'module:attribute', not {entry.target!r}")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register fakes and take them away again)."""
        self._entries.pop(name, None)
        self._loaded = {k: v for k, v in self._loaded.items() if k[0] != name}

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            how = self.option or self.kind
            raise UserError(f"unknown {self.kind} '{name}' ({how}); choose one of: "
                            f"{', '.join(self._entries)}") from None

    def load(self, name: str, part: str | None = None) -> Any:
        """The entry's implementation (or one of its ``parts``), imported once."""
        entry = self.get(name)
        target = entry.target if part is None else entry.parts[part]
        key = (name, part or "")
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = _import(target, f"{self.kind} '{name}'", self.option)
            return self._loaded[key]

    def help(self) -> str:
        """'a = what a is; b = what b is' for an option's help text."""
        return "; ".join(f"{e.name} = {e.description}" for e in self)


def _import(target: str, what: str, option: str | None) -> Any:
    module_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or module_name
        other = f" or choose another {option}" if option else ""
        raise UserError(f"{what} needs the Python package '{missing}', which is not installed; "
                        f"pip install it{other}") from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
