"""Kubernetes manifests generated from the consumer table, for the kustomize tree under ``k8s/``.

:func:`render_manifests` returns every generated file: one Deployment and one KEDA ScaledObject
per consumer type, and the topology as messaging-topology-operator resources (exchanges,
queues, bindings, policies, and one least-privilege user per role). The hand-written files
(namespace, config, publisher, RabbitmqCluster, overlays) sit beside them and refer to
generated objects by the names made here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from topology import capacity, monitoring, names
from topology.fleet import CLASSES, DEFAULT_FLEET, ConsumerPolicy, FleetSpec, build_topology
from topology.model import Binding, Exchange, Policy, Queue, QueueRole, Topology

Manifest = dict[str, Any]

HEADER = (
    "# Generated from topology/fleet.py by `woofleet topology export --format k8s`; do not edit.\n"
)

#: Image name in the manifests; kustomize pins its registry and tag once, in k8s/base.
IMAGE = "woofleet"
CONTAINER = "woofleet"
SERVICE_ACCOUNT = "woofleet"
CONFIG_MAP = "woofleet-config"
#: Application secrets (webhook secret, WooCommerce keys, state URL, SMTP, Sentry), as env vars.
APP_SECRET_PREFIX = "woofleet-app-"
RABBITMQ_CLUSTER = "woofleet-rabbitmq"
TRIGGER_AUTHENTICATION = "woofleet-rabbitmq-management"
VHOST = "/"
CONSUMER_PORT = 9100
#: Where Secrets holding files are mounted, one directory per Secret.
SECRETS_DIR = "/app/secrets"
RUN_AS = 10001
#: On top of the handler timeout: finish the in-flight delivery, confirm its retry, close.
GRACE_MARGIN_SECONDS = 30
POLLING_INTERVAL_SECONDS = 15
COOLDOWN_SECONDS = 300

PUBLISHER_ROLE = "publisher"
KEDA_ROLE = "keda"
#: ``woofleet alerts`` reads queue figures through the management API, like KEDA.
ALERTS_ROLE = "alerts"
#: Roles that only read the management API: tagged ``monitoring``, allowed nothing on the vhost.
MONITORING_ROLES = (KEDA_ROLE, ALERTS_ROLE)

#: Directories (relative to k8s/) whose every file is generated.
CONSUMERS_DIR = "base/consumers"
KEDA_DIR = "base/keda"
TOPOLOGY_DIR = "topology"
GENERATED_DIRS = (CONSUMERS_DIR, KEDA_DIR, TOPOLOGY_DIR, monitoring.COMPONENT_DIR)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def workload_name(role: str) -> str:
    """A consumer's Deployment and ScaledObject, a role's RabbitMQ user: ``woofleet-stock``."""
    return f"woofleet-{role}"


def app_secret(workload: str) -> str:
    """The Secret of one workload's own settings (its targets' URLs and keys, its store URL):
    each workload mounts its own, never another's (docs/deploy.md lists what each holds)."""
    return f"{APP_SECRET_PREFIX}{workload}"


def rabbitmq_secret(role: str) -> str:
    """The Secret holding a role's RabbitMQ ``username``, ``password`` and ``url`` (or ``host``)."""
    return f"woofleet-rabbitmq-{role}"


def grace_period(consumer: ConsumerPolicy) -> int:
    return math.ceil(consumer.timeout) + GRACE_MARGIN_SECONDS


def selector_labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "woofleet", "app.kubernetes.io/component": component}


def _literal(name: str) -> str:
    # Names are [a-z0-9.-] (checked), so the dot is the only regex metacharacter to escape.
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid woofleet name")
    return name.replace(".", r"\.")


def _only(*entity_names: str) -> str:
    """A RabbitMQ permission regex matching exactly these names (``^$`` matches none)."""
    if not entity_names:
        return "^$"
    return "^(" + "|".join(_literal(n) for n in sorted(set(entity_names))) + ")$"


# --- consumers -------------------------------------------------------------------------------


def consumer_deployment(consumer: ConsumerPolicy) -> Manifest:
    policy = CLASSES[consumer.priority_class]
    selector = selector_labels(consumer.name)
    labels = {
        **selector,
        "woofleet/role": "consumer",
        "woofleet/class": consumer.priority_class.value,
    }
    container: Manifest = {
        "name": CONTAINER,
        "image": IMAGE,
        "args": ["consume", consumer.name, "--host", "0.0.0.0", "--port", str(CONSUMER_PORT)],
        "ports": [{"name": "metrics", "containerPort": CONSUMER_PORT}],
        "envFrom": [
            {"configMapRef": {"name": CONFIG_MAP}},
            # optional: a consumer whose settings hold no secret needs no Secret at all
            {"secretRef": {"name": app_secret(consumer.name), "optional": True}},
        ],
        "env": [
            {
                "name": "WOOFLEET_AMQP_URL",
                "valueFrom": {
                    "secretKeyRef": {"name": rabbitmq_secret(consumer.name), "key": "url"}
                },
            }
        ],
        "resources": {
            "requests": {"cpu": policy.cpu_request, "memory": capacity.memory_request(consumer)},
            "limits": {"cpu": policy.cpu_limit, "memory": policy.memory_limit},
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "var", "mountPath": "/app/var"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes: list[Manifest] = [
        {"name": "var", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    # Files from Secrets (a service-account key, say) are mounted read-only, never put in env.
    for secret_file in consumer.secret_files:
        mount = f"{SECRETS_DIR}/{secret_file.secret}"
        container["env"].append(
            {"name": secret_file.setting, "value": f"{mount}/{secret_file.key}"}
        )
        container["volumeMounts"].append(
            {"name": secret_file.secret, "mountPath": mount, "readOnly": True}
        )
        volumes.append(
            {
                "name": secret_file.secret,
                "secret": {"secretName": secret_file.secret, "defaultMode": 0o440},
            }
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": workload_name(consumer.name), "labels": labels},
        # No replicas: the ScaledObject owns the count, and a fixed one would reset it on apply.
        "spec": {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(CONSUMER_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": grace_period(consumer),
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def scaled_object(consumer: ConsumerPolicy, topology: Topology) -> Manifest:
    """Scale on the consumer's own work queue: retry tiers hold delayed, not ready, work."""
    queue = topology.queue(consumer.work_queue)
    if queue.role is not QueueRole.WORK:
        raise ValueError(f"{queue.name} is a {queue.role} queue; KEDA scales on work queues only")
    policy = CLASSES[consumer.priority_class]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": workload_name(consumer.name),
            "labels": {**selector_labels(consumer.name), "woofleet/role": "consumer"},
        },
        "spec": {
            "scaleTargetRef": {"name": workload_name(consumer.name)},
            "minReplicaCount": policy.min_replicas,
            "maxReplicaCount": capacity.max_replicas(consumer),
            "pollingInterval": POLLING_INTERVAL_SECONDS,
            "cooldownPeriod": COOLDOWN_SECONDS,
            "triggers": [
                {
                    "type": "rabbitmq",
                    # The management API (http) counts unacknowledged messages too, so busy
                    # replicas are not scaled away while they work.
                    "metadata": {
                        "protocol": "http",
                        "queueName": queue.name,
                        "vhostName": VHOST,
                        "mode": "QueueLength",
                        "value": str(capacity.target_queue_length(consumer)),
                        "activationValue": "0",
                    },
                    "authenticationRef": {"name": TRIGGER_AUTHENTICATION},
                }
            ],
        },
    }


def trigger_authentication() -> Manifest:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": TRIGGER_AUTHENTICATION},
        "spec": {
            "secretTargetRef": [
                {"parameter": "host", "name": rabbitmq_secret(KEDA_ROLE), "key": "host"}
            ]
        },
    }


# --- topology as messaging-topology-operator resources ----------------------------------------


def _topology_resource(kind: str, name: str, spec: Manifest) -> Manifest:
    if not _NAME.match(name) or len(name) > 253:
        raise ValueError(f"{kind} name {name!r} is not a valid Kubernetes name")
    return {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {**spec, "rabbitmqClusterReference": {"name": RABBITMQ_CLUSTER}},
    }


def exchange_resource(exchange: Exchange) -> Manifest:
    spec = {"name": exchange.name, "vhost": VHOST, "type": exchange.type.value}
    return _topology_resource(
        "Exchange", exchange.name, {**spec, "durable": exchange.durable, "autoDelete": False}
    )


def queue_resource(queue: Queue) -> Manifest:
    arguments = {k: v for k, v in queue.arguments if k != "x-queue-type"}
    spec: Manifest = {
        "name": queue.name,
        "vhost": VHOST,
        "type": queue.type,
        "durable": queue.durable,
        "autoDelete": False,
        # Deleting the resource must never drop parked or waiting messages with it.
        "deletionPolicy": "retain",
    }
    if arguments:
        spec["arguments"] = arguments
    return _topology_resource("Queue", queue.name, spec)


def binding_name(binding: Binding) -> str:
    key = binding.routing_key.replace("#", "hash").replace("*", "star")
    return f"{binding.exchange}--{binding.queue}--{key}"


def binding_resource(binding: Binding) -> Manifest:
    spec = {
        "vhost": VHOST,
        "source": binding.exchange,
        "destination": binding.queue,
        "destinationType": "queue",
        "routingKey": binding.routing_key,
    }
    return _topology_resource("Binding", binding_name(binding), spec)


def policy_resource(policy: Policy) -> Manifest:
    spec = {
        "name": policy.name,
        "vhost": VHOST,
        "pattern": policy.pattern,
        "applyTo": policy.apply_to,
        "priority": policy.priority,
        "definition": policy.definition_dict(),
    }
    return _topology_resource("Policy", policy.name, spec)


def role_permissions(fleet: FleetSpec, topology: Topology) -> dict[str, dict[str, str]]:
    """Least privilege per role: configure nothing (topology is declared by an admin), the
    publisher writes to woo.events and woo.ingress only and reads only the deliveries it held
    there (woo.ingress.held), a consumer reads its own queues and writes only to
    its own retry and dead-letter exchanges, KEDA and the alerts read queue depths through the
    management API."""
    nothing = _only()
    permissions = {
        PUBLISHER_ROLE: {
            "configure": nothing,
            "write": _only(names.EVENTS_EXCHANGE, names.INGRESS_EXCHANGE),
            "read": _only(names.HELD_QUEUE),
        },
        **{
            role: {"configure": nothing, "write": nothing, "read": nothing}
            for role in MONITORING_ROLES
        },
    }
    for consumer in fleet.consumers:
        own = [q.name for q in topology.queues if q.consumer == consumer.name]
        permissions[consumer.name] = {
            "configure": nothing,
            # Its own exchanges only: they route to nothing but its own queues.
            "write": _only(
                names.retry_exchange(consumer.name), names.dead_letter_exchange(consumer.name)
            ),
            "read": _only(*own),
        }
    return permissions


def user_resources(fleet: FleetSpec, topology: Topology) -> tuple[list[Manifest], list[Manifest]]:
    users: list[Manifest] = []
    grants: list[Manifest] = []
    for role, permissions in role_permissions(fleet, topology).items():
        name = workload_name(role)
        spec: Manifest = {"importCredentialsSecret": {"name": rabbitmq_secret(role)}}
        if role in MONITORING_ROLES:
            spec["tags"] = ["monitoring"]  # enough to read queue depths, nothing else
        users.append(_topology_resource("User", name, spec))
        grant = {"vhost": VHOST, "userReference": {"name": name}, "permissions": permissions}
        grants.append(_topology_resource("Permission", name, grant))
    return users, grants


# --- files -----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # repeated label maps stay readable, not &id001 anchors


def _dump(*documents: Manifest) -> str:
    body = "---\n".join(
        yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
        for d in documents
    )
    return HEADER + body


def _kustomization(resources: list[str]) -> str:
    return _dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
        }
    )


def render_manifests(fleet: FleetSpec = DEFAULT_FLEET) -> dict[str, str]:
    """Every generated file, as {path relative to k8s/: YAML text}."""
    taken = {PUBLISHER_ROLE, *MONITORING_ROLES, "webhook", "topology", "admin"}
    reserved = taken & {c.name for c in fleet.consumers}
    if reserved:
        raise ValueError(f"consumer names {sorted(reserved)} clash with other workloads")
    topology = build_topology(fleet)
    files: dict[str, str] = {}

    consumer_files = [f"{c.name}.yaml" for c in fleet.consumers]
    for consumer, file in zip(fleet.consumers, consumer_files, strict=True):
        files[f"{CONSUMERS_DIR}/{file}"] = _dump(consumer_deployment(consumer))
        files[f"{KEDA_DIR}/{file}"] = _dump(scaled_object(consumer, topology))
    files[f"{KEDA_DIR}/trigger-authentication.yaml"] = _dump(trigger_authentication())
    files[f"{CONSUMERS_DIR}/kustomization.yaml"] = _kustomization(consumer_files)
    files[f"{KEDA_DIR}/kustomization.yaml"] = _kustomization(
        ["trigger-authentication.yaml", *consumer_files]
    )

    bindings = [binding_resource(b) for b in topology.bindings]
    if len({b["metadata"]["name"] for b in bindings}) != len(bindings):
        raise ValueError("two bindings map to one resource name; make their routing keys distinct")
    users, grants = user_resources(fleet, topology)
    topology_files = {
        "exchanges.yaml": [exchange_resource(e) for e in topology.exchanges],
        "queues.yaml": [queue_resource(q) for q in topology.queues],
        "bindings.yaml": bindings,
        "policies.yaml": [policy_resource(p) for p in topology.policies],
        "users.yaml": users,
        "permissions.yaml": grants,
    }
    for file, documents in topology_files.items():
        files[f"{TOPOLOGY_DIR}/{file}"] = _dump(*documents)
    files[f"{TOPOLOGY_DIR}/kustomization.yaml"] = _kustomization(list(topology_files))

    component = monitoring.COMPONENT_DIR
    files[f"{component}/kustomization.yaml"] = _dump(monitoring.component_kustomization())
    files[f"{component}/podmonitors.yaml"] = _dump(*monitoring.pod_monitors())
    files[f"{component}/prometheusrule.yaml"] = _dump(monitoring.prometheus_rule())
    files[f"{component}/{monitoring.DASHBOARD_FILE}"] = monitoring.dashboard_json()
    return files


def write_manifests(fleet: FleetSpec, out_dir: Path) -> list[Path]:
    """Write the generated files under ``out_dir`` and delete stale ones in generated dirs."""
    files = render_manifests(fleet)
    written: list[Path] = []
    for relative, text in files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for directory in GENERATED_DIRS:
        for path in (out_dir / directory).glob("*.yaml"):
            if path.relative_to(out_dir).as_posix() not in files:
                path.unlink()  # a consumer removed from the table
    return written
