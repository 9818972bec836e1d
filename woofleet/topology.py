"""``woofleet topology apply | export --format definitions|k8s|asyncapi``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from fleet.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "topology",
        help="declare or export the broker topology (exchanges, queues, bindings, policies)",
        description="The topology is data (topology/fleet.py); these verbs declare or render it.",
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)

    apply = verbs.add_parser(
        "apply",
        help="declare every exchange, queue, binding and policy (idempotent)",
        description="Declare the topology on the broker at WOOFLEET_AMQP_URL. Running it again "
        "changes nothing; a queue that exists with other arguments is reported with the fix.",
    )
    apply.add_argument(
        "--classic-tiers",
        action="store_true",
        help="use classic queues for retry tiers and DLQs even where quorum queues are supported",
    )
    apply.set_defaults(func=run_apply)

    export = verbs.add_parser(
        "export",
        help="print the topology as RabbitMQ definitions, Kubernetes resources or AsyncAPI",
        description="definitions: JSON for `rabbitmqctl import_definitions`; k8s: the generated "
        "manifests under k8s/ (written to --out); asyncapi: the AsyncAPI document.",
    )
    export.add_argument("--format", choices=("definitions", "k8s", "asyncapi"), required=True)
    export.add_argument("--vhost", default="/", help="virtual host for definitions (default /)")
    export.add_argument("--out", type=Path, help="k8s: directory to write into (default k8s/)")
    export.set_defaults(func=run_export)


def run_apply(args: argparse.Namespace) -> int:
    from fleet.amqp import connect
    from topology.apply import apply_fleet, vhost_of
    from topology.fleet import DEFAULT_FLEET
    from topology.management import Management

    settings: Settings = args.settings
    fleet = DEFAULT_FLEET
    if args.classic_tiers:
        from dataclasses import replace

        fleet = replace(fleet, quorum_tiers=False)

    async def main() -> str:
        connection = await connect(settings, name="woofleet topology apply")
        try:
            with Management(settings.management_url.get_secret_value()) as management:
                report = await apply_fleet(
                    connection,
                    fleet,
                    vhost=vhost_of(settings.amqp_url.get_secret_value()),
                    management=management,
                )
        finally:
            await connection.close()
        return report.summary()

    print(f"topology applied: {asyncio.run(main())}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from topology.fleet import DEFAULT_FLEET

    if args.format == "definitions":
        from topology.export import definitions

        json.dump(definitions(DEFAULT_FLEET, vhost=args.vhost), sys.stdout, indent=2)
        print()
    elif args.format == "asyncapi":
        from topology.export import asyncapi_yaml

        sys.stdout.write(asyncapi_yaml(DEFAULT_FLEET))
    else:
        from topology.k8s import write_manifests

        out: Path = args.out or Path("k8s")
        # write_manifests also removes generated files of consumers no longer in the table.
        written = write_manifests(DEFAULT_FLEET, out)
        print(f"wrote {len(written)} files under {out}/", file=sys.stderr)
    return 0
