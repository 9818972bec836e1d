"""(event_type, schema_version) → envelope model, and the one way to parse a message body."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import ValidationError

from contracts.catalog import (
    PriceUpdateCommand,
    ProductEvent,
    ProductImportCommand,
    StockSyncCommand,
)
from contracts.envelope import Envelope
from contracts.errors import ContractError
from contracts.orders import OrderEvent

AnyEnvelope = Envelope[Any]

MODELS: tuple[type[AnyEnvelope], ...] = (
    OrderEvent,
    ProductEvent,
    PriceUpdateCommand,
    StockSyncCommand,
    ProductImportCommand,
)

REGISTRY: dict[tuple[str, int], type[AnyEnvelope]] = {
    (event_type, model.SCHEMA_VERSION): model
    for model in MODELS
    for event_type in model.EVENT_TYPES
}

EVENT_TYPES: tuple[str, ...] = tuple(sorted({event_type for event_type, _ in REGISTRY}))


def latest_version(event_type: str) -> int:
    """The newest schema version of an event type: the one publishers emit."""
    versions = [v for (t, v) in REGISTRY if t == event_type]
    if not versions:
        raise ContractError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
    return max(versions)


def model_for(event_type: str, schema_version: int) -> type[AnyEnvelope]:
    try:
        return REGISTRY[(event_type, schema_version)]
    except KeyError:
        raise ContractError(
            f"no contract for {event_type!r} version {schema_version}; "
            f"known versions: {sorted(v for (t, v) in REGISTRY if t == event_type) or 'none'}"
        ) from None


def parse(
    body: bytes,
    *,
    event_type: str | None = None,
    schema_version: int | None = None,
    accepted: Collection[tuple[str, int]] | None = None,
) -> AnyEnvelope:
    """Parse and validate a message body; raise :class:`ContractError` saying what is wrong.

    ``event_type`` is the AMQP ``type`` property and ``schema_version`` the
    ``woofleet-schema-version`` header (both checked against the body when given);
    ``accepted`` limits the (event_type, version) pairs a consumer declared it handles.
    """
    if event_type is not None and schema_version is not None:
        # The hot path: the properties name the model, so the body is parsed once, in
        # pydantic's JSON parser. Any failure is explained by the careful path below.
        key = (event_type, schema_version)
        model = REGISTRY.get(key)
        if model is not None and (accepted is None or key in accepted):
            try:
                # The validator itself: model_validate_json is a Python wrapper around it that
                # costs about half a microsecond per message on this path.
                envelope: AnyEnvelope = model.__pydantic_validator__.validate_json(body)
            except ValidationError:
                pass
            else:
                if envelope.event_type == event_type and envelope.schema_version == schema_version:
                    return envelope
    return _parse_carefully(body, event_type=event_type, accepted=accepted)


def _parse_carefully(
    body: bytes,
    *,
    event_type: str | None,
    accepted: Collection[tuple[str, int]] | None,
) -> AnyEnvelope:
    import json

    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"body is not JSON: {exc}") from None
    except RecursionError:
        # Not a crash to retry: the same body breaks the parser every time.
        raise ContractError("body nests deeper than the JSON parser allows") from None
    if not isinstance(raw, dict):
        raise ContractError(f"body is a JSON {type(raw).__name__}, not an object")
    body_type, version = raw.get("event_type"), raw.get("schema_version")
    # bool is an int in Python: a JSON `true` would otherwise be read as version 1
    if not isinstance(body_type, str) or not isinstance(version, int) or isinstance(version, bool):
        raise ContractError("body lacks a string event_type and an integer schema_version")
    if event_type is not None and event_type != body_type:
        raise ContractError(
            f"AMQP type {event_type!r} disagrees with body event_type {body_type!r}"
        )
    if accepted is not None and (body_type, version) not in accepted:
        raise ContractError(f"{body_type} v{version} is not a contract this consumer accepts")
    model = model_for(body_type, version)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ContractError(
            f"{body_type} v{version} fails its contract ({exc.error_count()} errors; "
            f"first at {where}: {first['msg']})"
        ) from None
