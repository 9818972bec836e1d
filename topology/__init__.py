"""The broker topology as data: the consumer table, names, apply and export."""

from topology import names
from topology.apply import ApplyReport, apply_fleet, apply_topology, vhost_of
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
    "ApplyReport",
    "Binding",
    "ConsumerPolicy",
    "Exchange",
    "FleetSpec",
    "Policy",
    "PriorityClass",
    "Queue",
    "QueueRole",
    "Topology",
    "apply_fleet",
    "apply_topology",
    "build_topology",
    "names",
    "vhost_of",
]
