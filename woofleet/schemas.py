"""``python -m woofleet.schemas [--check]``: regenerate the contracts' JSON Schemas and the
AsyncAPI document (which also needs topology/, so it is composed here, above both)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.generate import (
    ASYNCAPI_FILE,
    HERE,
    RELEASED_DIR,
    SCHEMAS_DIR,
    check_released,
    render_schemas,
)
from topology.export import asyncapi_yaml


def render() -> dict[Path, str]:
    """Every generated file (frozen copies excluded) and the text it must hold."""
    return render_schemas() | {ASYNCAPI_FILE: asyncapi_yaml()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m woofleet.schemas",
        description="Write contracts/schemas/*.json and contracts/asyncapi.yaml from the models.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    files = render()
    problems = check_released(files)
    if problems:
        print("released schema versions changed incompatibly:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(
            "add a new schema version (a model with SCHEMA_VERSION = N+1 in contracts.registry) "
            "instead of changing a released one",
            file=sys.stderr,
        )
        return 1
    frozen = {
        RELEASED_DIR / path.name: text for path, text in files.items() if path.suffix == ".json"
    }
    wanted = files | {p: t for p, t in frozen.items() if not p.exists()}
    stale = [p for p, t in wanted.items() if not p.exists() or p.read_text("utf-8") != t]
    leftovers = sorted(set(SCHEMAS_DIR.glob("*.json")) - set(files))
    root = HERE.parent
    if args.check:
        for path in [*stale, *leftovers]:
            print(f"stale: {path.relative_to(root)}", file=sys.stderr)
        return 1 if stale or leftovers else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(root)}")
    for path in leftovers:
        path.unlink()
        print(f"removed {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
