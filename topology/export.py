"""Render the topology for other tools: RabbitMQ definitions JSON and the AsyncAPI document.

Both are built from :func:`topology.fleet.build_topology`, the same objects ``apply`` declares,
so an imported definitions file and an applied topology are indistinguishable to the broker.
(The Kubernetes messaging-topology resources live in :mod:`topology.k8s`.)
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from contracts.messages import (
    ATTEMPT_HEADER,
    CONSUMER_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
    MAX_PRIORITY,
    SCHEMA_VERSION_HEADER,
)
from contracts.registry import REGISTRY
from topology import names
from topology.fleet import DEFAULT_FLEET, ConsumerPolicy, FleetSpec, build_topology
from topology.model import QueueRole, Topology
from topology.routing import accepted_contracts

#: The oldest RabbitMQ the rendered definitions are meant for: quorum queues with at-least-once
#: dead lettering arrived in 3.10.
MIN_RABBITMQ_VERSION = "3.10.0"
ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
#: Version of the AsyncAPI document itself; the messages carry their own schema versions.
API_VERSION = "1.0.0"
ASYNCAPI_HEADER = (
    "# Generated from topology/fleet.py and contracts/ by `python -m woofleet.schemas`; "
    "do not edit.\n"
)


def definitions(
    fleet: FleetSpec = DEFAULT_FLEET, *, vhost: str = "/", quorum: bool = True
) -> dict[str, Any]:
    """RabbitMQ definitions JSON for one virtual host (import with ``POST /api/definitions/VH``).

    ``quorum=False`` renders classic retry tiers and DLQs, and policies without
    ``queue-version``, for brokers older than 3.10, as ``apply`` does when it finds one.
    """
    topology = build_topology(fleet, quorum=fleet.quorum_tiers and quorum, storage_v2=quorum)
    return _definitions(topology, vhost)


def _definitions(topology: Topology, vhost: str) -> dict[str, Any]:
    return {
        "rabbit_version": MIN_RABBITMQ_VERSION,
        "rabbitmq_version": MIN_RABBITMQ_VERSION,
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {
                "name": e.name,
                "vhost": vhost,
                "type": e.type.value,
                "durable": e.durable,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for e in topology.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": vhost,
                "durable": q.durable,
                "auto_delete": False,
                "arguments": q.args(),
            }
            for q in topology.queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": vhost,
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for b in topology.bindings
        ],
        "policies": [
            {
                "vhost": vhost,
                "name": p.name,
                "pattern": p.pattern,
                "apply-to": p.apply_to,
                "definition": p.definition_dict(),
                "priority": p.priority,
            }
            for p in topology.policies
        ],
    }


# AsyncAPI -------------------------------------------------------------------------------------


def message_name(event_type: str, version: int) -> str:
    """The AsyncAPI message (and schema file) name of a contract: ``order.paid.v1``."""
    return f"{event_type}.v{version}"


def _amqp(**fields: Any) -> dict[str, Any]:
    return {"amqp": {**fields, "bindingVersion": AMQP_BINDING_VERSION}}


def _headers(version: int) -> dict[str, Any]:
    failure = "set on retried and dead-lettered messages"
    return {
        "type": "object",
        "required": [SCHEMA_VERSION_HEADER],
        "properties": {
            SCHEMA_VERSION_HEADER: {"type": "integer", "const": version},
            ATTEMPT_HEADER: {
                "type": "integer",
                "minimum": 1,
                "description": f"Failed attempts; {failure}",
            },
            ERROR_HEADER: {
                "type": "string",
                "description": f"Exception type and message; {failure}",
            },
            FIRST_FAILED_HEADER: {"type": "string", "format": "date-time", "description": failure},
            LAST_FAILED_HEADER: {"type": "string", "format": "date-time", "description": failure},
            CONSUMER_HEADER: {"type": "string", "description": f"The failing consumer; {failure}"},
        },
    }


def _message(event_type: str, version: int, model: type[BaseModel], schema_base: str) -> Any:
    data_model = model.model_fields["data"].annotation
    about = "data/id" if "id" in getattr(data_model, "model_fields", {}) else "event_id"
    return {
        "name": event_type,
        "title": f"{event_type} v{version}",
        "contentType": "application/json",
        "headers": _headers(version),
        "payload": {"$ref": f"{schema_base}{message_name(event_type, version)}.json"},
        "correlationId": {
            "description": "AMQP correlation_id: the order or product id, else the event id",
            "location": f"$message.payload#/{about}",
        },
        "bindings": _amqp(messageType=event_type),
    }


def _consumer_channel(consumer: ConsumerPolicy, topology: Topology, vhost: str) -> Any:
    queues = [q for q in topology.queues if q.consumer == consumer.name]
    entry = next((q.name for q in queues if q.role is QueueRole.DELAY), consumer.work_queue)
    work = topology.queue(consumer.work_queue)
    extension: dict[str, Any] = {
        "bindings": list(consumer.bindings),
        "entryQueue": entry,
        "priorityClass": consumer.priority_class.value,
        "maxAttempts": consumer.max_attempts,
        "timeoutSeconds": consumer.timeout,
        "prefetch": consumer.effective_prefetch,
        "queueArguments": work.args(),
        "retryQueues": [q.name for q in queues if q.role is QueueRole.RETRY],
        "deadLetterQueue": consumer.dead_letter_queue,
    }
    if consumer.delay is not None:
        extension["delaySeconds"] = consumer.delay
    messages = {
        message_name(t, v): {"$ref": f"#/components/messages/{message_name(t, v)}"}
        for (t, v) in sorted(accepted_contracts(consumer.bindings))
    }
    route = f"Bound to {names.EVENTS_EXCHANGE} with {', '.join(consumer.bindings)}"
    if consumer.delay is not None:
        route += f", delivered through {entry} {names.duration_label(consumer.delay)} later"
    return {
        "address": consumer.work_queue,
        "title": f"{consumer.name} work queue",
        "description": (
            f"{route}; failures retry through {names.retry_exchange(consumer.name)} back to "
            f"this queue only, dead letters go to {consumer.dead_letter_queue}."
        ),
        "messages": messages,
        "bindings": _amqp(
            **{"is": "queue"},
            queue={
                "name": work.name,
                "durable": work.durable,
                "exclusive": False,
                "autoDelete": False,
                "vhost": vhost,
            },
        ),
        "x-woofleet": extension,
    }


def asyncapi(
    fleet: FleetSpec = DEFAULT_FLEET, *, vhost: str = "/", schema_base: str = "./schemas/"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document: ``woo.events`` channels per event type, a queue per consumer.

    ``schema_base`` prefixes the payload ``$ref`` file names; the default suits the checked-in
    ``contracts/asyncapi.yaml`` beside ``contracts/schemas/``.
    """
    topology = build_topology(fleet)
    exchange = {
        "name": names.EVENTS_EXCHANGE,
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": vhost,
    }
    event_types = sorted({t for (t, _) in REGISTRY})
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type in event_types:
        ids = [message_name(t, v) for (t, v) in sorted(REGISTRY) if t == event_type]
        channels[event_type] = {
            "address": event_type,
            "title": f"{event_type} on {names.EVENTS_EXCHANGE}",
            "messages": {i: {"$ref": f"#/components/messages/{i}"} for i in ids},
            "bindings": _amqp(**{"is": "routingKey"}, exchange=dict(exchange)),
        }
        operations[f"publish.{event_type}"] = {
            "action": "send",
            "title": f"Publish {event_type}",
            "description": (
                "Persistent, confirmed and mandatory (an unroutable event is an error). "
                "message_id is the event_id, deterministic per business fact; type is the "
                f"event type; priority 0-{MAX_PRIORITY}."
            ),
            "channel": {"$ref": f"#/channels/{event_type}"},
            "messages": [{"$ref": f"#/channels/{event_type}/messages/{i}"} for i in ids],
            "bindings": _amqp(deliveryMode=2, mandatory=True, timestamp=True),
        }
    for consumer in fleet.consumers:
        channel = _consumer_channel(consumer, topology, vhost)
        channels[consumer.work_queue] = channel
        operations[f"consume.{consumer.name}"] = {
            "action": "receive",
            "title": f"{consumer.name} consumes",
            "channel": {"$ref": f"#/channels/{consumer.work_queue}"},
            "messages": [
                {"$ref": f"#/channels/{consumer.work_queue}/messages/{i}"}
                for i in channel["messages"]
            ],
            "bindings": _amqp(ack=True),
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "woofleet",
            "version": API_VERSION,
            "description": (
                "WooCommerce order events on RabbitMQ: published to the "
                f"{names.EVENTS_EXCHANGE} topic exchange with the event type as routing key, "
                "one work queue per consumer type."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {
                message_name(t, v): _message(t, v, REGISTRY[(t, v)], schema_base)
                for (t, v) in sorted(REGISTRY)
            }
        },
    }


class _Dumper(yaml.SafeDumper):
    # Shared sub-objects must be written out in full, never as YAML anchors and aliases.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def asyncapi_yaml(fleet: FleetSpec = DEFAULT_FLEET, **options: Any) -> str:
    """:func:`asyncapi` as the YAML text checked in as ``contracts/asyncapi.yaml``."""
    body = yaml.dump(
        asyncapi(fleet, **options),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return ASYNCAPI_HEADER + body
