"""The broker topology as data: the consumer table and names.

``topology.apply`` (declare on a broker) and ``topology.export`` import the AMQP and HTTP clients;
import them where needed so that reading the table stays cheap.
"""

from topology import names
from topology.fleet import (
    CLASSES,
    CONSUMER_NAMES,
    CONSUMERS,
    DEFAULT_FLEET,
    MAX_PRIORITY,
    ConsumerPolicy,
    FleetSpec,
    PriorityClass,
    build_topology,
)
from topology.model import Binding, Exchange, Policy, Queue, QueueRole, Topology

__all__ = [
    "CLASSES",
    "CONSUMERS",
    "CONSUMER_NAMES",
    "DEFAULT_FLEET",
    "MAX_PRIORITY",
    "Binding",
    "ConsumerPolicy",
    "Exchange",
    "FleetSpec",
    "Policy",
    "PriorityClass",
    "Queue",
    "QueueRole",
    "Topology",
    "build_topology",
    "names",
]
