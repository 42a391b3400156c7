"""The real appliance on a mirror of two sparse files: one side taken offline shows DEGRADED in
``bulwark status --json`` and bulwarkd raises the critical pool alert within a minute; back online, the
alert clears by itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.system.runner import local_runner
from tests.e2e.conftest import Appliance, running_appliance

ALERT_WAIT = 60.0  # bulwarkd checks the pool every 30 s: the alert comes within a minute


def health(app: Appliance) -> str:
    report: dict[str, Any] = json.loads(app.cli("status", "--json").out)
    return str(report["pool"]["health"])


def pool_alerts(app: Appliance) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(app.cli("alert", "list", "--json").out)
    return [a for a in found if a["key"] == f"pool:health:{app.pool}"]


def wait_for(what: str, check: Callable[[], bool], timeout: float = ALERT_WAIT) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(1.0)
    return time.monotonic() - started


def test_offline_side_degrades_alerts_and_recovers(tmp_path: Path) -> None:
    sides = [tmp_path / "side-a.img", tmp_path / "side-b.img"]
    for side in sides:
        with side.open("wb") as fh:
            fh.truncate(256 * 1024 * 1024)
    layout = ("--devices", ",".join(map(str, sides)), "--layout", "mirror")
    with running_appliance(tmp_path, init_args=layout) as app:
        assert health(app) == "ONLINE" and pool_alerts(app) == []
        local_runner().run(["zpool", "offline", app.pool, str(sides[1])])
        assert health(app) == "DEGRADED"
        waited = wait_for("the DEGRADED alert", lambda: bool(pool_alerts(app)))
        [alert] = pool_alerts(app)
        assert alert["level"] == "critical" and "DEGRADED" in alert["message"], alert
        print(f"DEGRADED alert raised {waited:.0f} s after the side went offline")
        local_runner().run(["zpool", "online", app.pool, str(sides[1])])
        wait_for("ONLINE again", lambda: health(app) == "ONLINE", timeout=30)
        wait_for("the alert to clear", lambda: pool_alerts(app) == [])
