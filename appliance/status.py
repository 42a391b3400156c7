"""The appliance's state in one report: what ``bulwark status --json`` and ``GET /api/v1/status`` show."""

from __future__ import annotations

from typing import Any

import appliance
from appliance import provision
from appliance.daemon import daemon_state
from appliance.disks import pool as pool_service
from appliance.jobs import queue
from appliance.samba import supervise as smb
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.system.paths import Paths
from appliance.system.runner import Runner
from appliance.zfs import service
from appliance.zfs.host import ZfsHost


def report(paths: Paths, store: Store, runner: Runner, zfs: ZfsHost | None = None) -> dict[str, Any]:
    config = provision.load_settings(paths, store)
    out: dict[str, Any] = {
        "version": appliance.__version__,
        "data_dir": str(paths.data_dir),
        "hostname": config.hostname,
        "web": {"port": config.web_port},
        "daemon": daemon_state(store),
        "jobs": queue.counts(store),
        "smb": smb.state(store),
    }
    if zfs is None:
        if not service.kernel_zfs_loaded() and not service.responding(runner):
            out["zfs"] = {"implementation": None, "running": False}
            out["pool"] = {"name": config.pool.name, "health": "UNAVAILABLE"}
            return out
        zfs = ZfsHost.detect(runner)
    out["zfs"] = {**zfs.caps.to_dict(), "running": True}
    try:
        summary = pool_service.summary(zfs, config.pool.name)
    except BulwarkError as exc:
        out["pool"] = {"name": config.pool.name, "health": "UNAVAILABLE", "error": exc.to_dict()}
        return out
    pool = summary.pool
    out["pool"] = {
        "name": pool.name,
        "health": pool.health,
        "size_bytes": pool.size_bytes,
        "alloc_bytes": pool.alloc_bytes,
        "free_bytes": pool.free_bytes,
        "sizes_exact": pool.sizes_exact,
        "scan": summary.status.scan.to_dict(),
        "devices": [
            {
                "name": d.name,
                "state": d.state,
                "read_errors": d.read_errors,
                "write_errors": d.write_errors,
                "checksum_errors": d.checksum_errors,
            }
            for d in summary.status.devices()
        ],
    }
    return out
