"""The client's types against the daemon's own ``/openapi.json``, so that the
two cannot drift apart: every field of each dataclass is in its schema with
a compatible type, every field of the schema is in the dataclass (required
ones without a default), every enum has the schema's names, every event
type has its class, and the run options are the schema's."""

import dataclasses
import enum
import typing
from datetime import datetime
from typing import Any, Dict, List, Tuple

import pytest

import wrangle
from wrangle import _api, _types, errors
from wrangle._convert import json_name

SCHEMAS: Dict[type, str] = {
    _types.Agent: "AgentView",
    _types.Run: "RunView",
    _types.StopResult: "StopResult",
    _types.LogLine: "LogLine",
    _types.Summary: "Summary",
    _types.SummaryEntry: "SummaryEntry",
    _types.CostEntry: "CostEntry",
    _types.DaemonInfo: "DaemonInfo",
    _types.ProcessMetrics: "ProcessMetrics",
    _types.TreeMetrics: "TreeMetrics",
    _types.Limits: "LimitsView",
    _types.LimitEnforcement: "LimitEnforcement",
    _types.TokenCounts: "TokenCounts",
    _types.Session: "SessionView",
    _types.SessionResult: "ResultView",
    _types.Retry: "RetryView",
    _types.Tool: "ToolView",
    _types.Telemetry: "TelemetryView",
    _types.EventAgent: "EventAgent",
}
"""Each dataclass and the schema it mirrors."""

ENUMS: Dict[type, str] = {
    _types.State: "State",
    _types.Health: "Health",
    _types.Cause: "Cause",
    _types.RestartPolicy: "RestartPolicy",
    _types.OnHang: "OnHang",
    _types.LogStream: "LogStream",
    _types.AdapterKind: "AdapterKind",
    _types.CostSource: "CostSource",
    _types.Enforcement: "Enforcement",
}
"""Each enum and the schema of its names."""


@pytest.fixture(scope="module")
def openapi(wrangle_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    from conftest import Home

    home = Home(wrangle_bin)
    try:
        with wrangle.Client(home.path, wrangle_bin=wrangle_bin) as client:
            return client.openapi()
    finally:
        home.clean_up()


class Schemas:
    def __init__(self, document: Dict[str, Any]) -> None:
        self.components: Dict[str, Any] = document["components"]["schemas"]

    def resolve(self, schema: Dict[str, Any]) -> Dict[str, Any]:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def object(self, schema: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
        """The properties and required names of an object schema, its
        ``allOf`` parts merged."""
        schema = self.resolve(schema)
        properties = dict(schema.get("properties", {}))
        required = list(schema.get("required", []))
        for part in schema.get("allOf", []):
            more, needed = self.object(part)
            properties.update(more)
            required.extend(needed)
        return properties, required


def nullable(schema: Dict[str, Any]) -> bool:
    kinds = schema.get("type")
    if isinstance(kinds, list) and "null" in kinds:
        return True
    return any(option.get("type") == "null" for option in schema.get("oneOf", []))


def without_null(schema: Dict[str, Any]) -> Dict[str, Any]:
    if "oneOf" in schema:
        rest = [option for option in schema["oneOf"] if option.get("type") != "null"]
        if len(rest) == 1:
            return dict(rest[0])
    kinds = schema.get("type")
    if isinstance(kinds, list):
        rest = [kind for kind in kinds if kind != "null"]
        return dict(schema, type=rest[0] if len(rest) == 1 else rest)
    return schema


def check_type(schemas: Schemas, hint: Any, schema: Dict[str, Any], where: str) -> None:
    """Fails unless values of ``schema`` fit the Python type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        assert type(None) in args, f"{where}: only Optional unions are used"
        hint = next(arg for arg in args if arg is not type(None))
        schema = without_null(schema)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    else:
        assert not nullable(schema), f"{where}: the daemon may send null; make it Optional"
    if hint is Any:
        return
    ref = schema.get("$ref")
    target = schemas.resolve(schema)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        assert (
            ref and ref.endswith("/" + ENUMS[hint]) or set(target.get("enum", [])) == {m.value for m in hint}
        ), f"{where}: {hint.__name__} is not the schema's {schema}"
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        assert ref is not None and ref.endswith("/" + SCHEMAS[hint]), (
            f"{where}: expected a {SCHEMAS[hint]}, got {schema}"
        )
        return
    kind = target.get("type")
    if origin is list:
        assert kind == "array", f"{where}: expected an array, got {schema}"
        check_type(schemas, args[0], target["items"], where + "[]")
    elif origin is dict:
        assert kind == "object", f"{where}: expected an object, got {schema}"
        if isinstance(args[0], type) and issubclass(args[0], enum.Enum):
            names = set(target.get("propertyNames", {}).get("enum", []))
            assert names == {m.value for m in args[0]}, f"{where}: keys {names}"
        values = target.get("additionalProperties", {})
        if values:
            check_type(schemas, args[1], values, where + "{}")
        else:
            assert args[1] is Any, f"{where}: the schema's values are anything"
    elif hint is datetime:
        assert kind == "string" and target.get("format") == "date-time", (
            f"{where}: expected a date-time, got {schema}"
        )
    elif hint is str:
        assert kind == "string" and "format" not in target, f"{where}: expected a string, got {schema}"
    elif hint is bool:
        assert kind == "boolean", f"{where}: expected a boolean, got {schema}"
    elif hint is int:
        assert kind == "integer", f"{where}: expected an integer, got {schema}"
    elif hint is float:
        assert kind in ("number", "integer"), f"{where}: expected a number, got {schema}"
    else:
        raise AssertionError(f"{where}: no check for {hint!r}")


def check_fields(
    schemas: Schemas, cls: type, properties: Dict[str, Any], required: List[str], skip: Tuple[str, ...] = ()
) -> None:
    hints = typing.get_type_hints(cls)
    fields = {json_name(field): field for field in dataclasses.fields(cls) if field.name not in skip}
    name = cls.__name__
    for key, field in fields.items():
        assert key in properties, f"{name}.{field.name} is not in the schema"
        check_type(schemas, hints[field.name], properties[key], f"{name}.{field.name}")
        no_default = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        optional = typing.get_origin(hints[field.name]) is typing.Union
        if no_default and not optional:
            assert key in required, f"{name}.{field.name} has no default but the daemon may leave it out"
    for key in required:
        assert key in fields, f"{name} lacks {key}, which the schema requires"
    for key in properties:
        assert key in fields, f"{name} lacks {key}, which the daemon sends"


def test_every_dataclass_agrees_with_its_schema(openapi: Dict[str, Any]) -> None:
    schemas = Schemas(openapi)
    for cls, schema_name in SCHEMAS.items():
        assert schema_name in schemas.components, f"the daemon has no schema {schema_name}"
        properties, required = schemas.object({"$ref": f"#/components/schemas/{schema_name}"})
        check_fields(schemas, cls, properties, required)


def test_every_enum_has_the_schemas_names(openapi: Dict[str, Any]) -> None:
    schemas = Schemas(openapi)
    for cls, schema_name in ENUMS.items():
        names = schemas.components[schema_name]["enum"]
        assert [member.value for member in cls] == names, f"{cls.__name__} against {schema_name}"  # type: ignore[attr-defined]
    codes = schemas.components["ErrorCode"]["enum"]
    assert sorted(errors.ERRORS) == sorted(codes)
    for code, cls in errors.ERRORS.items():
        assert issubclass(cls, wrangle.DaemonError) and cls.code == code


def test_every_event_type_has_its_class(openapi: Dict[str, Any]) -> None:
    schemas = Schemas(openapi)
    event = schemas.components["Event"]
    common, common_required = schemas.object(event["allOf"][1])
    check_fields(schemas, _types.Event, dict(common, type={"type": "string"}), common_required + ["type"])
    variants = {}
    for variant in schemas.components["EventKind"]["oneOf"]:
        [kind] = variant["properties"]["type"]["enum"]
        variants[kind] = variant
    # `Unknown` stands for types of a newer daemon: UnknownEvent here.
    variants.pop("Unknown", None)
    assert sorted(variants) == sorted(_types.EVENT_TYPES)
    base = {field.name for field in dataclasses.fields(_types.Event)}
    for kind, variant in variants.items():
        cls = _types.EVENT_TYPES[kind]
        properties = {key: value for key, value in variant["properties"].items() if key != "type"}
        required = [key for key in variant.get("required", []) if key != "type"]
        check_fields(schemas, cls, properties, required, skip=tuple(base))


def test_run_options_are_the_schemas(openapi: Dict[str, Any]) -> None:
    schemas = Schemas(openapi)
    properties, _ = schemas.object({"$ref": "#/components/schemas/RunOptions"})
    assert sorted(properties) == sorted(_api.RUN_OPTIONS)
    for name, kind in _api.RUN_OPTIONS.items():
        check_type(schemas, typing.Optional[kind], properties[name], f"RunOptions.{name}")
    create, _ = schemas.object({"$ref": "#/components/schemas/CreateAgent"})
    # What run() takes besides the options.
    assert {"name", "command", "env", "inherit_env", "cwd", "labels"} <= set(create)
