"""Strict checking of JSON bodies against the protocol models.

The models convert leniently (``5`` becomes ``"5"``, a string becomes a list of characters), so
a server first walks a body from an untrusted client along the model's own field types and
refuses any JSON value of the wrong type, naming it by its path (``intervals[0].id``). The models
stay the one definition of the objects: the walk reads their dataclass fields, aliases and
annotations.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from datetime import datetime
from enum import Enum
import types
from typing import Any, TypeAliasType, Union, get_args, get_origin, get_type_hints

from .models import ModelError
from .timing import TimingError, parse_datetime, parse_duration

# The specification types these string properties as ISO 8601 durations.
_DURATION_PROPERTIES = frozenset({"duration", "randomizeStart"})


def check_body(model: type[Any], data: object) -> None:
    """Raise ModelError naming the first property of ``data`` that ``model`` cannot take."""
    _check_object(model, data, "")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _got(value: object) -> str:
    """The offending value as a message shows it: strings by content, others by JSON type."""
    return f"'{value[:60]}'" if isinstance(value, str) else _json_type(value)


def _describe(annotation: Any) -> str:
    annotation = _unalias(annotation)
    if _is_union(annotation):
        return " or ".join(_describe(arg) for arg in get_args(annotation))
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        datetime: "an RFC 3339 date-time",
        type(None): "null",
    }
    if annotation in names:
        return names[annotation]
    if get_origin(annotation) is list:
        return "an array"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(str(member.value) for member in annotation)
    return "an object"


def _unalias(annotation: Any) -> Any:
    while isinstance(annotation, TypeAliasType):
        annotation = annotation.__value__
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and is_dataclass(annotation)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(model: type[Any]) -> dict[str, Any]:
    # Resolving string annotations compiles them: once per model, not once per body.
    if (hints := _HINTS.get(model)) is None:
        hints = _HINTS[model] = get_type_hints(model)
    return hints


def _check_object(model: type[Any], data: object, path: str) -> None:
    if not isinstance(data, dict):
        raise ModelError(f"{path or 'body'}: expected a JSON object, got {_got(data)}")
    hints = _hints(model)
    for field in fields(model):
        name = field.metadata.get("alias", field.name)
        label = f"{path}.{name}" if path else name
        if name not in data:
            if field.default is MISSING and field.default_factory is MISSING:
                raise ModelError(f"{label}: required property is missing")
            continue
        _check_value(hints[field.name], data[name], label, name)


def _check_value(annotation: Any, value: object, label: str, name: str) -> None:
    annotation = _unalias(annotation)
    if annotation is Any:
        return
    if _is_union(annotation):
        _check_union(annotation, value, label, name)
        return
    origin = get_origin(annotation)
    if origin is list:
        if not isinstance(value, list):
            raise ModelError(f"{label}: expected an array, got {_got(value)}")
        (item,) = get_args(annotation)
        for index, element in enumerate(value):
            _check_value(item, element, f"{label}[{index}]", name)
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise ModelError(f"{label}: expected an object, got {_got(value)}")
        return
    if _is_model(annotation):
        _check_object(annotation, value, label)
        return
    if not _scalar_fits(annotation, value):
        raise ModelError(f"{label}: expected {_describe(annotation)}, got {_got(value)}")
    _check_text(annotation, value, label, name)


def _check_union(annotation: Any, value: object, label: str, name: str) -> None:
    options = [option for option in get_args(annotation) if option is not type(None)]
    if value is None and len(options) < len(get_args(annotation)):
        return
    errors: list[tuple[Any, ModelError]] = []
    for option in options:
        try:
            _check_value(option, value, label, name)
        except ModelError as err:
            errors.append((option, err))
        else:
            return
    # An option of the value's own shape failed inside it: its error says where.
    for option, error in errors:
        if _same_shape(option, value):
            raise error
    raise ModelError(f"{label}: expected {_describe(annotation)}, got {_got(value)}")


def _same_shape(annotation: Any, value: object) -> bool:
    if _is_model(annotation) or get_origin(annotation) is dict:
        return isinstance(value, dict)
    if get_origin(annotation) is list:
        return isinstance(value, list)
    return _scalar_fits(annotation, value)


def _scalar_fits(annotation: Any, value: object) -> bool:
    # bool is an int in Python but not a number in JSON.
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str or annotation is datetime:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return isinstance(value, str) and value in {member.value for member in annotation}
    return False


def _check_text(annotation: Any, value: object, label: str, name: str) -> None:
    if not isinstance(value, str):
        return
    try:
        if annotation is datetime:
            parse_datetime(value)
        elif annotation is str and name in _DURATION_PROPERTIES:
            parse_duration(value)
    except TimingError as err:
        raise ModelError(f"{label}: {err}") from err
