"""Generate the checked-in JSON Schemas; guard released schema versions.

``python -m woofleet.schemas`` writes ``contracts/schemas/<event_type>.v<N>.json`` for every
entry of :data:`contracts.registry.REGISTRY` (and ``contracts/asyncapi.yaml``). The first time a
version is generated it is also frozen as ``contracts/schemas/released/<same name>``; that copy
is never rewritten. From then on the version may only change compatibly (see
:func:`incompatibilities`); anything else needs a new schema version. To rework a version that
was never published, delete its frozen copy and generate again.

``python -m woofleet.schemas --check`` writes nothing and exits 1 when a file is stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.registry import REGISTRY

Schema = dict[str, Any]

HERE = Path(__file__).resolve().parent
SCHEMAS_DIR = HERE / "schemas"
RELEASED_DIR = SCHEMAS_DIR / "released"
ASYNCAPI_FILE = HERE / "asyncapi.yaml"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_filename(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}.json"


def json_schema(event_type: str, version: int) -> Schema:
    """The JSON Schema of one (event_type, schema_version) message body."""
    model = REGISTRY[(event_type, version)]
    # Serialization mode describes the bytes on the wire, which is what other languages read:
    # money is a decimal string there. Validation mode would describe what the model accepts
    # while normalising WooCommerce input (money as number or string).
    generated = model.model_json_schema(mode="serialization")
    properties = dict(generated.pop("properties"))
    properties["event_type"] = {"const": event_type, "title": "Event Type", "type": "string"}
    properties["schema_version"] = {"const": version, "title": "Schema Version", "type": "integer"}
    generated.pop("title", None)
    return {
        "$schema": DIALECT,
        "title": f"{event_type} v{version}",
        **generated,
        "properties": properties,
    }


def dumps(schema: Schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def render_schemas() -> dict[Path, str]:
    """Every generated JSON Schema file (frozen copies excluded) and the text it must hold."""
    return {
        SCHEMAS_DIR / schema_filename(t, v): dumps(json_schema(t, v)) for (t, v) in sorted(REGISTRY)
    }


def released() -> dict[tuple[str, int], Schema]:
    """The frozen schema of every released version, by (event_type, schema_version)."""
    frozen = {}
    for path in sorted(RELEASED_DIR.glob("*.v*.json")):
        event_type, _, version = path.name.removesuffix(".json").rpartition(".v")
        frozen[(event_type, int(version))] = json.loads(path.read_text(encoding="utf-8"))
    return frozen


# The compatibility rule --------------------------------------------------------------------------

_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_EXACT = ("const", "pattern", "format", "multipleOf")


def incompatibilities(released: Schema, current: Schema) -> list[str]:
    """Why ``current`` may not replace ``released`` under the same schema version ([] if it may).

    A released version is a promise to code already written and to messages already sitting in
    queues (a delay queue holds them for days): every property keeps its JSON types, none is
    removed, none becomes required, no constraint tightens and no enum value disappears. The one
    way to grow a released version is a new *optional* property (or enum value); since models
    forbid unknown fields, deploy the consumers that know it before the publisher sends it.
    """
    diff = _Diff(released, current)
    diff.compare(released, current, "", frozenset())
    return diff.problems


def _resolve(node: Schema, root: Schema) -> tuple[Schema, str | None]:
    ref = node.get("$ref")
    if ref is None:
        return node, None
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, not {ref!r}")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return _resolve(merged, root)[0], ref


def _branches(node: Schema, root: Schema) -> Iterator[Schema]:
    node, _ = _resolve(node, root)
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        for alternative in alternatives:
            yield from _branches(alternative, root)
    else:
        yield node


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number", list: "array", dict: "object"}[type(value)]


def _by_type(node: Schema, root: Schema) -> dict[str, Schema]:
    """The node's alternatives keyed by JSON type (``any`` when unconstrained)."""
    typed: dict[str, Schema] = {}
    for branch in _branches(node, root):
        kind = branch.get("type")
        if kind is None and "const" in branch:
            kind = _json_type(branch["const"])
        if kind is None and "enum" in branch:
            kind = sorted({_json_type(v) for v in branch["enum"]})
        for name in kind if isinstance(kind, list) else [kind or "any"]:
            typed[name] = branch
    return typed


_Seen = frozenset[tuple[str | None, str | None]]


@dataclass
class _Diff:
    """One comparison of two schema documents; ``$ref`` resolves within each one's own root."""

    old_root: Schema
    new_root: Schema
    problems: list[str] = field(default_factory=list)

    def compare(self, old: Schema, new: Schema, path: str, seen: _Seen) -> None:
        where = path or "(root)"
        old_types, new_types = _by_type(old, self.old_root), _by_type(new, self.new_root)
        if set(old_types) != set(new_types):
            before, after = " | ".join(sorted(old_types)), " | ".join(sorted(new_types))
            self.problems.append(f"{where}: type changed from {before} to {after}")
            return
        for kind, old_node in old_types.items():
            new_node = new_types[kind]
            self.problems += _tightened(old_node, new_node, where)
            if kind == "object":
                self.compare_objects(old_node, new_node, path, seen)
            elif kind == "array" and "items" in old_node and "items" in new_node:
                self.compare_child(old_node["items"], new_node["items"], f"{path}[]", seen)

    def compare_child(self, old: Schema, new: Schema, path: str, seen: _Seen) -> None:
        key = (_resolve(old, self.old_root)[1], _resolve(new, self.new_root)[1])
        if key != (None, None) and key in seen:
            return  # a recursive model: this pair of definitions is being compared already
        self.compare(old, new, path, seen | {key})

    def compare_objects(self, old: Schema, new: Schema, path: str, seen: _Seen) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name, old_prop in old_props.items():
            child = f"{path}.{name}" if path else name
            if name not in new_props:
                self.problems.append(f"{child}: property removed")
                continue
            if name in new_required and name not in old_required:
                self.problems.append(f"{child}: optional property became required")
            self.compare_child(old_prop, new_props[name], child, seen)
        for name in sorted(new_required - set(old_props)):
            self.problems.append(f"{f'{path}.{name}' if path else name}: new required property")
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self.compare_child(old_extra, new_extra, f"{path}{{}}", seen)
        elif old_extra is not False and new_extra is False:
            self.problems.append(f"{path or '(root)'}: no longer allows additional properties")


def _tightened(old: Schema, new: Schema, where: str) -> list[str]:
    problems = []
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            problems.append(f"{where}: {key} tightened from {old.get(key)} to {new[key]}")
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            problems.append(f"{where}: {key} tightened from {old.get(key)} to {new[key]}")
    for key in _EXACT:
        if key in new and new.get(key) != old.get(key):
            problems.append(f"{where}: {key} changed from {old.get(key)!r} to {new[key]!r}")
    if "enum" in new:
        removed = [v for v in old.get("enum", ()) if v not in new["enum"]]
        if removed or "enum" not in old:
            problems.append(f"{where}: enum no longer allows {removed or 'every value'}")
    return problems


# Command line ----------------------------------------------------------------------------------


def check_released(files: dict[Path, str]) -> list[str]:
    """Incompatible changes to released versions, one line each."""
    problems = []
    for (event_type, version), frozen in released().items():
        path = SCHEMAS_DIR / schema_filename(event_type, version)
        if path not in files:
            problems.append(
                f"{event_type} v{version} was released but is no longer in the registry; "
                "messages of it may still sit in queues"
            )
            continue
        for problem in incompatibilities(frozen, json.loads(files[path])):
            problems.append(f"{event_type} v{version}: {problem}")
    return problems
