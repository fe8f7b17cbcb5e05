"""JSON to the dataclasses of ``_types``, driven by their type hints.

Each class gets one decoder, built the first time it is needed: a value of
the wrong JSON type is refused with the path to it, a field the daemon does
not send takes its default (None for an Optional), and a field this client
does not know is passed over, so an older client reads a newer daemon.
"""

import dataclasses
import enum
import functools
import re
from datetime import datetime, timedelta, timezone
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

from . import _types

T = TypeVar("T")

Decoder = Callable[[Any, str], Any]


class DecodeError(ValueError):
    """The daemon's JSON does not have the shape this client expects."""


def decode(cls: Type[T], value: Any) -> T:
    """``value`` (parsed JSON) as a ``cls``; DecodeError when it does not fit."""
    return cast(T, _decoder(cast(Any, cls))(value, cls.__name__))


def decode_list(cls: Type[T], value: Any) -> List[T]:
    """``value`` (a JSON array) as a list of ``cls``."""
    return cast(List[T], _decoder(List[cls])(value, cls.__name__ + "[]"))  # type: ignore[valid-type]


_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))\Z"
)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the daemon writes it (up to nanoseconds, ``Z``),
    as an aware datetime (to the microsecond: Python has no finer)."""
    match = _TIME.match(text)
    if match is None:
        raise DecodeError(f"{text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second, fraction, zulu, sign, oh, om = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if zulu:
        zone = timezone.utc
    else:
        offset = timedelta(hours=int(oh), minutes=int(om))
        zone = timezone(offset if sign == "+" else -offset)
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, zone)


def _fail(path: str, expected: str, value: Any) -> DecodeError:
    return DecodeError(f"{path}: expected {expected}, got {type(value).__name__} {value!r:.80}")


def _decode_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, "a string", value)
    return value


def _decode_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, "an integer", value)
    return int(value)


def _decode_float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, "a number", value)
    return float(value)


def _decode_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def _decode_time(value: Any, path: str) -> datetime:
    try:
        return parse_time(_decode_str(value, path))
    except DecodeError as error:
        raise DecodeError(f"{path}: {error}") from None


def _decode_any(value: Any, path: str) -> Any:
    return value


_SCALARS: Dict[Any, Decoder] = {
    str: _decode_str,
    int: _decode_int,
    float: _decode_float,
    bool: _decode_bool,
    datetime: _decode_time,
    Any: _decode_any,
}


@functools.lru_cache(maxsize=None)
def _decoder(tp: Any) -> Decoder:
    """The decoder of one type hint."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Union:
        present = [arg for arg in args if arg is not type(None)]
        inner = _decoder(present[0]) if len(present) == 1 else _decode_any

        def optional(value: Any, path: str) -> Any:
            return None if value is None else inner(value, path)

        return optional
    if origin in (list, List):
        item = _decoder(args[0])

        def sequence(value: Any, path: str) -> List[Any]:
            if not isinstance(value, list):
                raise _fail(path, "an array", value)
            return [item(element, f"{path}[{index}]") for index, element in enumerate(value)]

        return sequence
    if origin in (dict, Dict):
        key, val = _decoder(args[0]), _decoder(args[1])

        def mapping(value: Any, path: str) -> Dict[Any, Any]:
            if not isinstance(value, dict):
                raise _fail(path, "an object", value)
            return {key(k, path): val(v, f"{path}.{k}") for k, v in value.items()}

        return mapping
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        names = tp

        def member(value: Any, path: str) -> Any:
            try:
                return names(value)
            except ValueError:
                choices = ", ".join(str(m.value) for m in names)
                raise DecodeError(f"{path}: {value!r} is not one of {choices}") from None

        return member
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    raise TypeError(f"no decoder for {tp!r}")


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) is Union and type(None) in get_args(tp)


def json_name(field: "dataclasses.Field[Any]") -> str:
    """The key of a dataclass field in the daemon's JSON."""
    return str(field.metadata.get("json", field.name))


def _dataclass_decoder(cls: type) -> Decoder:
    hints = get_type_hints(cls)
    # (attribute, JSON key, decoder, what to do when the key is missing:
    # "required", "none" or "default")
    specs: List[Tuple[str, str, Decoder, str]] = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        has_default = (
            field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        )
        if has_default:
            missing = "default"
        elif _is_optional(hints[field.name]):
            missing = "none"
        else:
            missing = "required"
        specs.append((field.name, json_name(field), _decoder(hints[field.name]), missing))
    everything = cls is _types.UnknownEvent

    def instance(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _fail(path, "an object", value)
        kwargs: Dict[str, Any] = {}
        for name, key, decoder, missing in specs:
            if key in value:
                kwargs[name] = decoder(value[key], f"{path}.{key}")
            elif missing == "none":
                kwargs[name] = None
            elif missing == "required":
                raise DecodeError(f"{path}: {key} is missing")
        if everything:
            kwargs["data"] = dict(value)
        return cls(**kwargs)

    return instance


def decode_event(value: Any) -> "_types.Event":
    """One event of the stream, as the subclass of its type."""
    if not isinstance(value, dict):
        raise _fail("Event", "an object", value)
    kind = value.get("type")
    cls = _types.EVENT_TYPES.get(kind, _types.UnknownEvent) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError("Event: type is missing")
    return cast(_types.Event, _decoder(cls)(value, str(kind)))
