"""Strict checking of JSON bodies against the protocol models.

The models convert leniently (``5`` becomes ``"5"``, a string becomes a list of characters), so
a server first walks a body from an untrusted client along the model's own field types and
refuses any JSON value of the wrong type, naming it by its path (``intervals[0].id``). The models
stay the one definition of the objects: the walk reads their dataclass fields, aliases and
annotations.

Each model's walk is compiled once into a tree of small checks (what a field's annotation asks
for is worked out when the model is first used), so a body costs only the checks of its values:
the bridge runs this on every report its homes send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields, is_dataclass
from datetime import datetime
from enum import Enum
import types
from typing import Any, TypeAliasType, Union, get_args, get_origin, get_type_hints

import orjson

from .models import ModelError
from .timing import TimingError, parse_datetime, parse_duration

# The specification types these string properties as ISO 8601 durations.
_DURATION_PROPERTIES = frozenset({"duration", "randomizeStart"})

# A compiled check: raises ModelError when the value (at the labelled path) does not fit.
type _Check = Callable[[object, str], None]
# A compiled test of whether a value has a shape (object, array or fitting scalar).
type _Shape = Callable[[object], bool]

_MODELS: dict[type[Any], _Check] = {}


def parse_json(text: str | bytes) -> Any:
    """Decode JSON as RFC 8259 defines it; ValueError (orjson's) names the problem.

    orjson is strict where Python's own decoder is not: it refuses ``NaN`` and ``Infinity``,
    which JSON does not have and which no sum or comparison survives, and it is several times
    faster, which matters on the bridge's ingest path.
    """
    return orjson.loads(text)


def check_body(model: type[Any], data: object) -> None:
    """Raise ModelError naming the first property of ``data`` that ``model`` cannot take."""
    _model_check(model)(data, "")


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


def _model_check(model: type[Any]) -> _Check:
    if (check := _MODELS.get(model)) is None:
        check = _MODELS[model] = _compile_model(model)
    return check


def _compile_model(model: type[Any]) -> _Check:
    hints = get_type_hints(model)
    plan: list[tuple[str, bool, _Check | None]] = []

    def check(data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ModelError(f"{path or 'body'}: expected a JSON object, got {_got(data)}")
        for name, required, value_check in plan:
            if name in data:
                if value_check is not None:
                    value_check(data[name], f"{path}.{name}" if path else name)
            elif required:
                label = f"{path}.{name}" if path else name
                raise ModelError(f"{label}: required property is missing")

    # Registered before its fields compile, so a model that contains itself finds its check.
    _MODELS[model] = check
    for field in fields(model):
        name = field.metadata.get("alias", field.name)
        required = field.default is MISSING and field.default_factory is MISSING
        plan.append((name, required, _compile(hints[field.name], name)))
    return check


def _compile(annotation: Any, name: str) -> _Check | None:
    """The check of one annotation (None: anything goes)."""
    annotation = _unalias(annotation)
    if annotation is Any:
        return None
    if _is_union(annotation):
        return _compile_union(annotation, name)
    origin = get_origin(annotation)
    if origin is list:
        (item,) = get_args(annotation)
        return _compile_list(_compile(item, name))
    if origin is dict:
        return _compile_dict()
    if _is_model(annotation):
        model: type[Any] = annotation

        def check_model(value: object, label: str) -> None:
            _model_check(model)(value, label)

        return check_model
    return _compile_scalar(annotation, name)


def _compile_list(item: _Check | None) -> _Check:
    def check(value: object, label: str) -> None:
        if not isinstance(value, list):
            raise ModelError(f"{label}: expected an array, got {_got(value)}")
        if item is not None:
            for index, element in enumerate(value):
                item(element, f"{label}[{index}]")

    return check


def _compile_dict() -> _Check:
    def check(value: object, label: str) -> None:
        if not isinstance(value, dict):
            raise ModelError(f"{label}: expected an object, got {_got(value)}")

    return check


def _compile_scalar(annotation: Any, name: str) -> _Check:
    fits = _fits(annotation)
    expected = _describe(annotation)
    parse: Callable[[str], object] | None = None
    if annotation is datetime:
        parse = parse_datetime
    elif annotation is str and name in _DURATION_PROPERTIES:
        parse = parse_duration

    def check(value: object, label: str) -> None:
        if not fits(value):
            raise ModelError(f"{label}: expected {expected}, got {_got(value)}")
        if parse is not None and isinstance(value, str):
            try:
                parse(value)
            except TimingError as err:
                raise ModelError(f"{label}: {err}") from err

    return check


def _compile_union(annotation: Any, name: str) -> _Check:
    arguments = get_args(annotation)
    options = [option for option in arguments if option is not type(None)]
    nullable = len(options) < len(arguments)
    checks = [(_compile(option, name), _shape(option)) for option in options]
    expected = _describe(annotation)

    def check(value: object, label: str) -> None:
        if value is None and nullable:
            return
        errors: list[tuple[_Shape, ModelError]] = []
        for option_check, shape in checks:
            if option_check is None:
                return
            try:
                option_check(value, label)
            except ModelError as err:
                errors.append((shape, err))
            else:
                return
        # An option of the value's own shape failed inside it: its error says where.
        for shape, error in errors:
            if shape(value):
                raise error
        raise ModelError(f"{label}: expected {expected}, got {_got(value)}")

    return check


def _shape(annotation: Any) -> _Shape:
    annotation = _unalias(annotation)
    if _is_model(annotation) or get_origin(annotation) is dict:
        return lambda value: isinstance(value, dict)
    if get_origin(annotation) is list:
        return lambda value: isinstance(value, list)
    return _fits(annotation)


def _fits(annotation: Any) -> _Shape:
    """Whether a JSON value fits a scalar annotation (bool is an int in Python, not in JSON)."""
    if annotation is bool:
        return lambda value: isinstance(value, bool)
    if annotation is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return lambda value: isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str or annotation is datetime:
        return lambda value: isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        members = frozenset(member.value for member in annotation)
        return lambda value: isinstance(value, str) and value in members
    return lambda _value: False
