"""smbd under ``bulwark run``: configured from the appliance's data, started, restarted if it dies, reported.

The supervisor installs the smb.conf the data describes (:func:`appliance.samba.shares.apply`), starts smbd on
the configured port, and is polled by the run loop; an smbd that exits is restarted (at most
:data:`RESTART_LIMIT` times a minute, then an alert says so and the rest of the appliance keeps running).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import alerts
from appliance.clients import service
from appliance.samba import server, shares
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.system.runner import LocalRunner
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.samba")

RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
STATE_KEY = "smb.server"

SMB_DOWN = alerts.declare(
    "smb.down",
    level="critical",
    category="smb",
    title="SMB shares unavailable",
    template="smbd is not running: {reason}. Clients cannot write their backups to their shares.",
)


@dataclass
class SmbSupervisor:
    store: Store
    zfs: ZfsHost
    runner: LocalRunner
    log_path: Path
    smbd: server.Smbd | None = None
    restarts: list[float] = field(default_factory=list)
    gave_up: bool = False

    def start(self) -> bool:
        """Configure and start smbd; False (with an alert) if it could not start."""
        try:
            service.ensure_clients_root(self.store, self.zfs)
            shares.apply(self.store, self.zfs, self.runner)
            self.smbd = server.Smbd(self.runner, shares.layout(self.store), self.log_path)
            self.smbd.start()
        except BulwarkError as exc:
            self._down(str(exc))
            return False
        self._record(running=True)
        alerts.clear(self.store, SMB_DOWN.name)
        log.info("smbd listening on port %d", self.smbd.layout.port)
        return True

    def check(self) -> None:
        """Restart smbd if it exited (called often by the run loop; cheap when all is well)."""
        if self.gave_up or (self.smbd is not None and self.smbd.running):
            return
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
        if len(self.restarts) > RESTART_LIMIT:
            self.gave_up = True
            self._down(f"it stopped {RESTART_LIMIT} times within {RESTART_WINDOW:.0f} s; see {self.log_path}")
            return
        log.error("smbd is not running; starting it again")
        self.start()

    def stop(self) -> None:
        if self.smbd is not None:
            self.smbd.stop()
        self._record(running=False)

    def _record(self, *, running: bool, error: str | None = None) -> None:
        port = shares.load_settings(self.store).port
        self.store.set_setting(STATE_KEY, {"running": running, "port": port, "error": error, "at": time.time()})

    def _down(self, reason: str) -> None:
        log.error("smbd: %s", reason)
        self._record(running=False, error=reason)
        alerts.fire(self.store, SMB_DOWN, SMB_DOWN.name, subject="smb", reason=reason)


def state(store: Store) -> dict[str, Any]:
    """What ``bulwark status --json`` shows: the port, whether smbd is running (its pid file and port), why not."""
    settings = shares.load_settings(store)
    layout = shares.layout(store, settings)
    pid = server.pid_of(layout)
    running = pid is not None and server.listening(settings.port)
    recorded = store.get_setting(STATE_KEY) or {}
    error = None if running else recorded.get("error")
    return {"port": settings.port, "running": running, "pid": pid if running else None, "error": error}
