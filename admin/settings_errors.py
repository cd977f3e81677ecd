"""Settings errors as an operator reads them: the dotted path of each bad key and what to do."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def describe(error: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per problem: `sip.call_capcity: not a setting (did you mean call_capacity?)`."""
    lines = []
    for problem in error.errors(include_url=False):
        loc = tuple(problem["loc"])
        path = ".".join(str(part) for part in loc) or "(the settings as a whole)"
        lines.append(f"{path}: {_message(problem, loc, model)}")
    return lines


def _message(problem: Any, loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    kind = problem["type"]
    if kind == "extra_forbidden":
        known = _keys_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if known else []
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"not a setting{hint}"
    if kind == "missing":
        return "required, but not set"
    message = str(problem["msg"])
    # pydantic prefixes the text of a ValueError raised by a validator; the text is ours.
    return message.removeprefix("Value error, ")


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The setting names the section at `loc` knows; empty when it is not a section."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue  # an item of a list: the list's section is already in hand
        field = current.model_fields.get(str(part))
        current = None if field is None else _section(field.annotation)
    return [] if current is None else list(current.model_fields)


def _section(annotation: Any) -> type[BaseModel] | None:
    """The settings section a field holds, directly or as the items of a list or optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _section(arg)
            if found is not None:
                return found
    return None
