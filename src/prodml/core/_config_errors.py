"""Configuration errors as people read them: one line per problem, naming the dotted
key (``monitoring.window``, ``gate.change[0].metric``), what was expected in words,
and the value given — and the environment variable when the value came from one.

>>> from pydantic import BaseModel, ConfigDict, Field, ValidationError
>>> class Section(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     window: str = Field(default="1d", pattern=r"^[1-9][0-9]*(h|d|w|mo|rows)$")
>>> class Root(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     monitoring: Section = Section()
>>> try:
...     Root(monitoring={"window": "2m", "size": 3})
... except ValidationError as exc:
...     print(describe_errors(exc, Root, environ={}))
monitoring.window: expected a window length such as '1d', '6h', '2w', '1mo' or '500rows' (<n>h, <n>d, <n>w, <n>mo for calendar months, <n>rows); got '2m'
monitoring.size: unknown key; expected one of: window; got 3
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["describe_errors"]

#: What a pattern of the config means, in words.
PATTERN_MEANINGS: dict[str, str] = {
    r"^[1-9][0-9]*(h|d|w|mo|rows)$": (
        "a window length such as '1d', '6h', '2w', '1mo' or '500rows' "
        "(<n>h, <n>d, <n>w, <n>mo for calendar months, <n>rows)"
    ),
    r"^[0-9]+(s|m|h|d|w)$": "a duration such as '30s', '5m', '6h', '1d' or '1w'",
    r"^(training|\d{4}-\d{2}-\d{2}(T[0-9:]+Z?)?/\d{4}-\d{2}-\d{2}(T[0-9:]+Z?)?)$": (
        "'training' or a past window of the log as 'START/END' in ISO dates, "
        "such as '2013-01-01/2013-02-01'"
    ),
}


def describe_errors(
    exc: ValidationError, model: type[BaseModel], *, environ: Mapping[str, str], prefix: str = ""
) -> str:
    """One line per error of ``exc`` raised while validating ``model``."""
    lines = []
    for error in exc.errors():
        parts, parent = _walk(model, error["loc"])
        kind = error["type"]
        got: Any = error.get("input")
        if kind == "union_tag_invalid":
            parts = [*parts, "type"]
            ctx = error.get("ctx", {})
            expected = f"expected one of {ctx.get('expected_tags', '')}"
            got = ctx.get("tag", got)
        elif kind == "extra_forbidden":
            keys = _keys(parent)
            expected = "unknown key" + (f"; expected one of: {', '.join(keys)}" if keys else "")
        elif kind == "string_pattern_mismatch":
            pattern = str(error.get("ctx", {}).get("pattern", ""))
            expected = f"expected {PATTERN_MEANINGS.get(pattern, f'a value matching {pattern}')}"
        elif kind == "missing":
            lines.append(f"{prefix}{_dotted(parts)}: required, but not given")
            continue
        else:
            expected = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{prefix}{_dotted(parts)}: {expected}; got {got!r}{_env(parts, environ)}")
    return "\n".join(lines)


def _dotted(parts: Sequence[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _env(parts: Sequence[str | int], environ: Mapping[str, str]) -> str:
    if not parts or not all(isinstance(p, str) for p in parts):
        return ""
    name = "PRODML__" + "__".join(str(p).upper() for p in parts)
    present = {k.upper() for k in environ}
    return f" (from environment variable {name})" if name in present else ""


def _walk(
    model: type[BaseModel], loc: Sequence[str | int]
) -> tuple[list[str | int], type[BaseModel] | None]:
    """The key path of ``loc`` without union tags, and the model holding its last key."""
    parts: list[str | int] = []
    current: Any = model
    parent: type[BaseModel] | None = model
    for item in loc:
        current, tagged = _pick(current, item)
        if tagged:
            continue
        parts.append(item)
        parent = current if _is_model(current) else None
        current = _step(current, item)
    return parts, parent


def _pick(annotation: Any, item: str | int) -> tuple[Any, bool]:
    """Resolve a union: the member ``item`` tags (``True``), or its one model member."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return annotation, False
    members = [a for a in get_args(annotation) if _is_model(a)]
    for member in members:
        tag = member.model_fields.get("type")
        if tag is None or get_origin(tag.annotation) is not Literal:
            continue
        if item in get_args(tag.annotation):
            return member, True
    return (members[0] if len(members) == 1 else None), False


def _step(annotation: Any, item: str | int) -> Any:
    """The type found under ``item`` in a value of type ``annotation``."""
    if _is_model(annotation):
        for name, field in annotation.model_fields.items():
            if item in (name, field.alias):
                return field.annotation
        return None
    args = [a for a in get_args(annotation) if a is not Ellipsis]
    if get_origin(annotation) in (tuple, list) and args:
        return args[0]
    if get_origin(annotation) is dict and len(args) == 2:
        return args[1]
    return None


def _keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
