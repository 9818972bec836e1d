"""topology.export: definitions JSON and the AsyncAPI document render the same topology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.registry import REGISTRY
from topology import names
from topology.export import asyncapi, asyncapi_yaml, definitions
from topology.fleet import CONSUMERS, DEFAULT_FLEET, build_topology
from topology.routing import topic_matches

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


# definitions ------------------------------------------------------------------------------------


def test_definitions_hold_exactly_what_build_topology_declares() -> None:
    topology = build_topology(DEFAULT_FLEET, quorum=True)
    rendered = definitions(vhost="shop")
    assert [e["name"] for e in rendered["exchanges"]] == [e.name for e in topology.exchanges]
    assert {q["name"]: q["arguments"] for q in rendered["queues"]} == {
        q.name: q.args() for q in topology.queues
    }
    assert [(b["source"], b["destination"], b["routing_key"]) for b in rendered["bindings"]] == [
        (b.exchange, b.queue, b.routing_key) for b in topology.bindings
    ]
    assert [p["name"] for p in rendered["policies"]] == [p.name for p in topology.policies]


def test_definitions_name_the_vhost_everywhere_and_bind_queues_only() -> None:
    rendered = definitions(vhost="shop")
    assert rendered["vhosts"] == [{"name": "shop"}]
    for kind in ("exchanges", "queues", "bindings", "policies"):
        assert {item["vhost"] for item in rendered[kind]} == {"shop"}, kind
    assert {b["destination_type"] for b in rendered["bindings"]} == {"queue"}
    assert all(q["durable"] and not q["auto_delete"] for q in rendered["queues"])
    assert all(e["durable"] and not e["auto_delete"] for e in rendered["exchanges"])
    assert rendered["rabbit_version"].startswith("3.")


def test_definitions_policies_use_the_management_api_field_names() -> None:
    policy = next(p for p in definitions()["policies"] if p["name"].endswith(".dlq-limit"))
    assert set(policy) == {"vhost", "name", "pattern", "apply-to", "definition", "priority"}
    assert policy["apply-to"] == "queues"
    assert policy["definition"]["overflow"] == "reject-publish"


def test_definitions_for_an_old_broker_use_classic_queues_only() -> None:
    rendered = definitions(quorum=False)
    assert not [q["name"] for q in rendered["queues"] if "x-queue-type" in q["arguments"]]
    # and no queue-version, which a broker older than 3.10 rejects in a policy
    assert rendered["policies"]
    assert not [p["name"] for p in rendered["policies"] if "queue-version" in p["definition"]]


def test_work_queues_keep_x_max_priority_in_definitions() -> None:
    queues = {q["name"]: q["arguments"] for q in definitions()["queues"]}
    for consumer in CONSUMERS:
        assert queues[names.work_queue(consumer.name)] == {"x-max-priority": 5}


# topic matching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("order.#", "order.paid", True),
        ("order.#", "order", True),
        ("order.#", "product.updated", False),
        ("order.*", "order.paid", True),
        ("order.*", "order.paid.late", False),
        ("#", "catalog.stock_sync", True),
        ("order.paid", "order.paid", True),
        ("order.paid", "order.paid2", False),
        ("*.updated", "product.updated", True),
    ],
)
def test_topic_matches_follows_amqp_topic_rules(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


# AsyncAPI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi()


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_asyncapi_has_a_woo_events_channel_per_event_type(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    for event_type in {t for t, _ in REGISTRY}:
        channel = doc["channels"][event_type]
        assert channel["address"] == event_type
        amqp = channel["bindings"]["amqp"]
        assert amqp["is"] == "routingKey"
        assert amqp["exchange"] == {
            "name": "woo.events",
            "type": "topic",
            "durable": True,
            "autoDelete": False,
            "vhost": "/",
        }
        send = doc["operations"][f"publish.{event_type}"]
        assert send["action"] == "send"
        assert send["bindings"]["amqp"]["deliveryMode"] == 2
        assert send["bindings"]["amqp"]["mandatory"] is True


def test_asyncapi_messages_point_at_the_checked_in_schemas(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    assert set(messages) == {f"{t}.v{v}" for t, v in REGISTRY}
    for (event_type, version), message in ((k, messages[f"{k[0]}.v{k[1]}"]) for k in REGISTRY):
        ref = message["payload"]["$ref"]
        assert ref == f"./schemas/{event_type}.v{version}.json"
        assert (CONTRACTS / ref).is_file()
        headers = message["headers"]["properties"]
        assert headers["woofleet-schema-version"]["const"] == version
        assert {h for h in headers if h.startswith("woofleet-")} == set(headers)
        assert message["bindings"]["amqp"]["messageType"] == event_type


def test_asyncapi_correlation_id_is_the_order_id_for_order_events(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    assert messages["order.paid.v1"]["correlationId"]["location"] == "$message.payload#/data/id"
    location = messages["catalog.stock_sync.v1"]["correlationId"]["location"]
    assert location == "$message.payload#/event_id"


def test_asyncapi_every_internal_ref_resolves(doc: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    internal = [r for r in refs(doc) if r.startswith("#/")]
    assert internal
    for ref in internal:
        assert resolve(doc, ref) is not None


@pytest.mark.parametrize("consumer", CONSUMERS, ids=lambda c: c.name)
def test_asyncapi_has_each_consumers_queue_and_the_event_types_it_binds(
    doc: dict[str, Any], consumer: Any
) -> None:
    channel = doc["channels"][consumer.work_queue]
    assert channel["address"] == consumer.work_queue
    assert channel["bindings"]["amqp"]["is"] == "queue"
    assert channel["bindings"]["amqp"]["queue"]["name"] == consumer.work_queue
    assert channel["x-woofleet"]["bindings"] == list(consumer.bindings)
    expected = {
        f"{t}.v{v}"
        for t, v in REGISTRY
        if any(topic_matches(pattern, t) for pattern in consumer.bindings)
    }
    assert set(channel["messages"]) == expected
    receive = doc["operations"][f"consume.{consumer.name}"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": f"#/channels/{consumer.work_queue}"}
    assert len(receive["messages"]) == len(expected)


def test_asyncapi_expands_wildcard_bindings_to_event_types(doc: dict[str, Any]) -> None:
    analytics = doc["channels"]["woo.analytics"]["messages"]
    assert "order.refunded.v1" in analytics
    assert "product.updated.v1" not in analytics
    catalog = set(doc["channels"]["woo.catalog"]["messages"])
    assert catalog == {
        "product.updated.v1",
        "catalog.price_update.v1",
        "catalog.stock_sync.v1",
        "catalog.product_import.v1",
    }


def test_asyncapi_shows_review_requests_delay_queue(doc: dict[str, Any]) -> None:
    extension = doc["channels"]["woo.review-request"]["x-woofleet"]
    assert extension["entryQueue"] == "woo.review-request.delay"
    assert extension["delaySeconds"] == 7 * 86_400


def test_asyncapi_yaml_round_trips_without_anchors() -> None:
    text = asyncapi_yaml()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == asyncapi()


def test_asyncapi_schema_base_can_point_elsewhere() -> None:
    doc = asyncapi(schema_base="https://example.org/schemas/")
    ref = doc["components"]["messages"]["order.paid.v1"]["payload"]["$ref"]
    assert ref == "https://example.org/schemas/order.paid.v1.json"
