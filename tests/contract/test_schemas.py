"""The checked-in JSON Schemas and AsyncAPI document are current, and released versions hold."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts import generate
from contracts.messages import message_body
from contracts.registry import REGISTRY
from tests.builders import order_event
from woofleet import schemas

REGENERATE = "run `python -m woofleet.schemas` and commit the result"


# the checked-in files are what the models generate ----------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[Any, str]:
    return schemas.render()


def test_one_schema_file_per_registry_entry(rendered: dict[Any, str]) -> None:
    expected = {generate.SCHEMAS_DIR / f"{t}.v{v}.json" for t, v in REGISTRY}
    assert {p for p in rendered if p.suffix == ".json"} == expected
    assert set(generate.SCHEMAS_DIR.glob("*.json")) == expected, REGENERATE


def test_checked_in_schemas_and_asyncapi_match_the_models(rendered: dict[Any, str]) -> None:
    stale = [
        str(path.relative_to(generate.HERE.parent))
        for path, text in rendered.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"out of date: {', '.join(stale)}; {REGENERATE}"


def test_the_generators_check_mode_finds_nothing_stale(capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas.main(["--check"]) == 0, capsys.readouterr().err


def test_every_registry_version_has_a_frozen_released_copy() -> None:
    frozen = set(generate.released())
    missing = sorted(set(REGISTRY) - frozen)
    assert not missing, f"no frozen copy of {missing} in contracts/schemas/released; {REGENERATE}"


def test_released_versions_change_only_compatibly(rendered: dict[Any, str]) -> None:
    problems = generate.check_released(rendered)
    assert not problems, (
        "released schema versions changed incompatibly:\n  "
        + "\n  ".join(problems)
        + "\nadd a new schema version (a model with SCHEMA_VERSION = N+1 in the registry) instead"
    )


@pytest.mark.parametrize("key", sorted(REGISTRY), ids=lambda k: f"{k[0]}.v{k[1]}")
def test_every_schema_is_a_valid_2020_12_json_schema(key: tuple[str, int]) -> None:
    schema = json.loads((generate.SCHEMAS_DIR / f"{key[0]}.v{key[1]}.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_money_is_a_string_on_the_wire_in_the_schema() -> None:
    schema = generate.json_schema("order.paid", 1)
    assert schema["properties"]["event_type"]["const"] == "order.paid"
    assert schema["properties"]["schema_version"]["const"] == 1
    line_item = schema["$defs"]["LineItem"]["properties"]
    assert line_item["unit_price"] == {"title": "Unit Price", "type": "string"}
    assert schema["$defs"]["OrderData"]["properties"]["total"]["type"] == "string"


@pytest.mark.parametrize("event_type", ["order.created", "order.paid", "order.refunded"])
def test_a_real_message_body_validates_against_its_checked_in_schema(event_type: str) -> None:
    schema = json.loads((generate.SCHEMAS_DIR / f"{event_type}.v1.json").read_text())
    body = json.loads(message_body(order_event(event_type)))
    jsonschema.Draft202012Validator(schema).validate(body)
    wrong = {**body, "event_type": "order.failed"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(wrong)


# the compatibility rule, on toy schemas ---------------------------------------------------------


def toy() -> dict[str, Any]:
    return {
        "$defs": {
            "Line": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "sku": {"type": "string", "maxLength": 40},
                    "price": {"type": "string"},
                },
                "required": ["sku", "price"],
            }
        },
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "status": {"type": "string", "enum": ["pending", "paid"]},
            "note": {"default": "", "type": "string"},
            "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
            "refund": {"anyOf": [{"$ref": "#/$defs/Line"}, {"type": "null"}], "default": None},
        },
        "required": ["id", "status", "lines"],
    }


def changed(change: Any) -> dict[str, Any]:
    schema = copy.deepcopy(toy())
    change(schema)
    return schema


def test_an_unchanged_schema_is_compatible() -> None:
    assert generate.incompatibilities(toy(), toy()) == []


def test_a_new_optional_property_is_compatible() -> None:
    def add_optional(s: dict[str, Any]) -> None:
        s["properties"]["coupon"] = {"default": "", "type": "string"}
        s["$defs"]["Line"]["properties"]["gift"] = {"default": False, "type": "boolean"}

    assert generate.incompatibilities(toy(), changed(add_optional)) == []


def test_a_new_enum_value_and_a_looser_limit_are_compatible() -> None:
    def loosen(s: dict[str, Any]) -> None:
        s["properties"]["status"]["enum"].append("refunded")
        s["$defs"]["Line"]["properties"]["sku"]["maxLength"] = 64

    assert generate.incompatibilities(toy(), changed(loosen)) == []


def test_descriptions_titles_and_defaults_may_change() -> None:
    def annotate(s: dict[str, Any]) -> None:
        s["properties"]["id"]["description"] = "the order id"
        s["properties"]["note"]["default"] = "-"
        s["title"] = "renamed"

    assert generate.incompatibilities(toy(), changed(annotate)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["properties"].pop("note"), "note: property removed"),
        (
            lambda s: s["$defs"]["Line"]["properties"].pop("price"),
            "lines[].price: property removed",
        ),
        (
            lambda s: s["properties"]["id"].update(type="string"),
            "id: type changed from integer to string",
        ),
        (
            lambda s: s["$defs"]["Line"]["properties"]["price"].update(type="number"),
            "lines[].price: type changed from string to number",
        ),
        (
            lambda s: s["properties"].update(
                note={"anyOf": [{"type": "string"}, {"type": "null"}]}
            ),
            "note: type changed from string to null | string",
        ),
        (
            lambda s: (
                s["properties"].update(email={"type": "string"}),
                s["required"].append("email"),
            ),
            "email: new required property",
        ),
        (lambda s: s["required"].append("note"), "note: optional property became required"),
        (
            lambda s: s["properties"]["status"]["enum"].remove("paid"),
            "status: enum no longer allows ['paid']",
        ),
        (
            lambda s: s["$defs"]["Line"]["properties"]["sku"].update(maxLength=10),
            "lines[].sku: maxLength tightened from 40 to 10",
        ),
        (
            lambda s: s["$defs"]["Line"]["properties"]["sku"].update(pattern="^[A-Z]+$"),
            "lines[].sku: pattern changed from None to '^[A-Z]+$'",
        ),
        (
            lambda s: (
                s["$defs"]["Line"]["required"].append("refund_reason")
                or s["$defs"]["Line"]["properties"].update(refund_reason={"type": "string"})
            ),
            "refund.refund_reason: new required property",
        ),
    ],
    ids=[
        "removed",
        "removed-nested",
        "type",
        "type-nested",
        "nullable",
        "new-required",
        "became-required",
        "enum-value-removed",
        "tighter-limit",
        "new-pattern",
        "required-through-ref",
    ],
)
def test_incompatible_changes_are_reported_with_their_path(change: Any, expected: str) -> None:
    assert expected in generate.incompatibilities(toy(), changed(change))


def test_the_real_released_schemas_are_compatible_with_themselves() -> None:
    for (event_type, version), frozen in generate.released().items():
        assert generate.incompatibilities(frozen, generate.json_schema(event_type, version)) == []


def test_removing_a_field_from_a_real_model_would_be_caught() -> None:
    frozen = generate.released()[("order.paid", 1)]

    def drop_transaction_id(s: dict[str, Any]) -> None:
        del s["$defs"]["OrderData"]["properties"]["transaction_id"]

    current = copy.deepcopy(generate.json_schema("order.paid", 1))
    drop_transaction_id(current)
    assert generate.incompatibilities(frozen, current) == ["data.transaction_id: property removed"]


def test_the_generator_refuses_to_rewrite_a_released_version_incompatibly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a released order.paid v1 that had a property the model no longer has
    frozen = copy.deepcopy(generate.released()[("order.paid", 1)])
    frozen["$defs"]["OrderData"]["properties"]["loyalty_points"] = {"type": "integer"}
    (tmp_path / "order.paid.v1.json").write_text(json.dumps(frozen))
    monkeypatch.setattr(generate, "RELEASED_DIR", tmp_path)
    # When the generator runs
    status = schemas.main([])
    # Then it writes nothing and says what to do instead
    assert status == 1
    err = capsys.readouterr().err
    assert "order.paid v1: data.loyalty_points: property removed" in err
    assert "add a new schema version" in err
