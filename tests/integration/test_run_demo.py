"""``woofleet run --demo`` (what ``make run`` does): every consumer does its job end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_demo_processes_orders_through_every_consumer(
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "woofleet.main",
            "run",
            "--demo",
            "--orders",
            "4",
            "--port",
            str(free_port()),
            "--health-port",
            str(free_port()),
        ],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = dict(re.findall(r"│ ([a-z-]+)\s+│ (\d+)\s+│", result.stdout))
    # review-request's emails wait seven days in the delay queue; every other consumer worked
    assert rows.pop("review-request") == "0"
    assert rows and all(int(handled) > 0 for handled in rows.values()), result.stdout
    assert "dead-lettered" in result.stdout
    assert list((tmp_path / "var" / "mail").glob("*.eml"))
    assert list((tmp_path / "invoices").rglob("*.pdf"))
    # shipping-label bought labels on the dev carrier; the carrier's signed updates completed
    # their orders, and every write back to WooCommerce went to the dev sink
    assert list((tmp_path / "var" / "shipping").glob("carrier.jsonl"))
    assert "reported in transit, then delivered" in result.stdout
    writes = (tmp_path / "var" / "woocommerce" / "writes.jsonl").read_text()
    assert '"status": "completed"' in writes and "_wc_shipment_tracking_items" in writes
    # the authorised order was captured and moved to processing, whose echo was order.paid
    assert "was captured and moved to processing" in result.stdout
    assert "Payment of" in writes and '"status": "processing"' in writes
