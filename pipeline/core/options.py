"""One declaration per option: the dataclass field is the option.

A stage's options are a dataclass whose fields are declared with :func:`option`: name,
default, range or choices, and help are written once, there. The command line is built
from the fields (``add_arguments``), parsed values become the dataclass
(``from_namespace``), and ``check`` validates an instance the same way whether it came
from the command line or from Python, so a library call gets the CLI's errors.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
import weakref
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.registry import Registry


@dataclass(frozen=True)
class Spec:
    help: str
    flags: tuple[str, ...] = ()              # extra spellings, e.g. ("-w",)
    flag: str | None = None                  # the main spelling when it is not --field-name
    choices: Registry | Sequence[Any] | None = None
    low: float | None = None                 # inclusive range
    high: float | None = None
    metavar: str | None = None
    nargs: str | None = None
    action: str | None = None                # "store_true" / "store_false"; "toggle": --name and --no-name
    required: bool = False
    default_text: str | None = None          # the default in words, when the value is None or computed
    cli: bool = True                         # False: settable from Python only


def option(default: Any = MISSING, *, help: str, factory: Callable[[], Any] | None = None,
           **spec: Any) -> Any:
    """A dataclass field that is also a command-line option (see :class:`Spec` for ``spec``)."""
    meta = {"option": Spec(help=help, **spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def _specs(cls: type) -> list[tuple[dataclasses.Field, Spec, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata["option"], hints[f.name]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def flag_of(f: dataclasses.Field, spec: Spec) -> str:
    return spec.flag or "--" + f.name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(element type, is a list) of ``int``, ``int | None``, ``list[Path]``, ``list[str] | None``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin is list:
        return args[0], True
    if args and origin is not list:          # Optional / Union
        inner = args[0]
        if typing.get_origin(inner) is list:
            return typing.get_args(inner)[0], True
        return inner, False
    return tp, False


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def _choice_names(choices: Registry | Sequence[Any] | None) -> list[Any] | None:
    if choices is None:
        return None
    return choices.names() if isinstance(choices, Registry) else list(choices)


def describe_default(f: dataclasses.Field, spec: Spec) -> str | None:
    if spec.default_text is not None:
        return spec.default_text
    if spec.action == TOGGLE:
        return "on" if _default_of(f) else "off"
    if spec.action or spec.required:
        return None
    value = _default_of(f)
    if value is None or value == []:
        return None
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def help_text(f: dataclasses.Field, spec: Spec) -> str:
    text = spec.help
    if isinstance(spec.choices, Registry):
        text += f" ({spec.choices.help()})"
    if spec.low is not None or spec.high is not None:
        text += f"; range {_range_words(spec)}"
    default = describe_default(f, spec)
    if default is not None:
        text += f" (default: {default})"
    return text.replace("%", "%%")


def _number(x: float) -> str:
    """A bound as a user types it: whole numbers in full (1000000, not 1e+06), others short."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _range_words(spec: Spec) -> str:
    if spec.high is None:
        return f"{_number(spec.low)} or more" if spec.low is not None else "any"
    if spec.low is None:
        return f"up to {_number(spec.high)}"
    return f"{_number(spec.low)} to {_number(spec.high)}"


#: ``Spec.action`` of a boolean with both spellings, ``--name`` and ``--no-name``.
TOGGLE = "toggle"
#: Per argument, its help texts and the option groups that gave each (for options groups share).
_MEANINGS: weakref.WeakKeyDictionary[argparse.Action, dict[str, list[str]]] = weakref.WeakKeyDictionary()


def _group_name(parser: Any) -> str:
    """'--model df' for the group 'options of --model df'; '' for a parser."""
    return (getattr(parser, "title", None) or "").removeprefix("options of ")


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, skip: set[str] | None = None) -> None:
    """Add one argument per option field of ``cls`` to ``parser`` (or an argument group).

    A field named in ``skip`` that is already on the parser, declared by an earlier group
    (two model types that both have ``--resolution``), is not added again: the one flag
    serves both groups (:func:`_share`).
    """
    name = _group_name(parser)
    origins: set[str] = set()
    added = 0
    for f, spec, tp in _specs(cls):
        if not spec.cli:
            continue
        origin = _share(parser, f, spec) if skip and f.name in skip else None
        if origin is not None:
            origins.add(origin)
            continue
        added += 1
        names = [flag_of(f, spec), *spec.flags]
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text(f, spec)}
        if spec.action == TOGGLE:
            # not given = absent from the namespace, so the dataclass's own default applies
            kwargs.update(action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
        elif spec.action:
            kwargs["action"] = spec.action
        else:
            base, is_list = _base_type(tp)
            kwargs["type"] = Path if base is Path else (base if base in (int, float) else str)
            kwargs["default"] = _default_of(f)
            choices = _choice_names(spec.choices)
            if choices is not None:
                kwargs["choices"] = choices
            if is_list:
                kwargs["nargs"] = spec.nargs or "+"
            elif spec.nargs:
                kwargs["nargs"] = spec.nargs
            if spec.metavar:
                kwargs["metavar"] = spec.metavar
            if spec.required:
                kwargs["required"] = True
                kwargs.pop("default")
            if not names[0].startswith("-"):      # a positional argument: its name is its dest
                kwargs.pop("dest")
                kwargs.pop("default", None)
        _MEANINGS[parser.add_argument(*names, **kwargs)] = {kwargs["help"]: [name]}
    if origins and not added and len(origins) == 1 and name and "" not in origins:
        parser.description = f"the same options as {origins.pop()} above"


def _share(parser: Any, f: dataclasses.Field, spec: Spec) -> str | None:
    """Make the argument an earlier group declared for this field serve this group's dataclass too.

    Its choices and default are left to each dataclass: not given, the option is absent
    from the namespace and ``from_namespace`` keeps the dataclass's own default; given,
    ``check`` applies this dataclass's range or choices. The help says what it means for
    which group. Returns the group that first gave this meaning; None when the parser has
    no such argument yet.
    """
    action: argparse.Action | None = parser._option_string_actions.get(flag_of(f, spec))
    if action is None:
        return None
    if action.dest != f.name or (spec.action is None) != (action.nargs != 0):
        raise ValueError(f"option {flag_of(f, spec)} of {f.name} is declared differently by two option groups")
    action.choices = None
    action.default = argparse.SUPPRESS
    meanings = _MEANINGS.setdefault(action, {action.help or "": [""]})
    text = help_text(f, spec)
    groups = meanings.setdefault(text, [])
    groups.append(_group_name(parser))
    (first, _), *others = meanings.items()
    action.help = first + "".join(f". For {', '.join(who)}: {words}" for words, who in others)
    return groups[0]


def from_namespace(cls: type, args: argparse.Namespace) -> Any:
    """The options dataclass from parsed arguments (fields not on the command line keep defaults), checked.

    Checked here, while the command line is parsed, so a value out of range (or nan) is
    refused in a fraction of a second, before the stage's modules import torch and load
    models (30 to 50 s on a busy machine).
    """
    values = {f.name: getattr(args, f.name) for f, spec, _ in _specs(cls) if spec.cli and hasattr(args, f.name)}
    opts = cls(**values)
    check(opts)
    return opts


def check(opts: Any) -> None:
    """Ranges and choices of every option field; UserError naming the option and what to use."""
    for f, spec, _ in _specs(type(opts)):
        value = getattr(opts, f.name)
        if value is None:
            continue
        problem = value_problem(f, spec, value)
        if problem is not None:
            raise UserError(problem)


def value_problem(f: dataclasses.Field, spec: Spec, value: Any) -> str | None:
    """Why ``value`` is not a valid value of the option (what is wrong and what to use), or None.

    A float must be finite: nan compares false with every bound, so without this test
    ``--lr nan`` passes the range check and fails later as a traceback (or, for convert's
    ``--sharpen nan``, renders garbage).
    """
    flag = flag_of(f, spec)
    values = value if isinstance(value, (list, tuple)) else [value]
    choices = _choice_names(spec.choices)
    default = describe_default(f, spec)
    use = (f"; use {_range_words(spec)}" if spec.low is not None or spec.high is not None else "") \
        + (f" (default {default})" if default is not None else "")
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            return f"{flag} {v} is not a finite number{use}"
        if choices is not None and v not in choices:
            if isinstance(spec.choices, Registry):
                spec.choices.get(v)              # its own error, naming the kind
            return f"{flag} {v}: choose one of {', '.join(map(str, choices))}"
        if isinstance(v, (int, float)) and not isinstance(v, bool) and (
                (spec.low is not None and v < spec.low) or (spec.high is not None and v > spec.high)):
            return f"{flag} {v} is out of range{use}"
    return None


def declared_range(cls: type, name: str) -> tuple[float | None, float | None]:
    """(low, high) that option ``name`` of ``cls`` is declared with: what a value read back from a file
    (a model's options.json) is checked against, so a file cannot ask for what the command line may not."""
    for f, spec, _ in _specs(cls):
        if f.name == name:
            return spec.low, spec.high
    raise KeyError(f"{cls.__name__} declares no option {name}")


def as_dict(opts: Any) -> dict[str, Any]:
    """Option values as plain JSON-able values (paths as strings)."""
    out = {}
    for f in dataclasses.fields(opts):
        v = getattr(opts, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else ([str(x) if isinstance(x, Path) else x for x in v]
                                                          if isinstance(v, list) else v)
    return out
