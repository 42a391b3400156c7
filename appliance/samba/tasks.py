"""bulwarkd's periodic SMB work: the "backup finished" trigger and Previous Versions kept in step."""

from __future__ import annotations

from collections.abc import Callable

from appliance.samba import activity, shares, versions
from appliance.store import Store
from appliance.system.runner import Runner
from appliance.zfs.host import ZfsHost

QUIET_POLL = 15.0  # how often shares are looked at for the end of a backup
VERSIONS_SYNC = 600.0  # Previous Versions also follow points taken or pruned outside a job (e.g. by hand)


def periodic(store: Store, zfs: ZfsHost, runner: Runner) -> list[tuple[str, float, Callable[[], None]]]:
    """(name, interval, function) of each periodic task; nothing runs unless this appliance serves SMB."""
    watcher = activity.QuietWatcher(store, zfs, runner)

    def served() -> bool:
        return shares.layout(store).conf.exists()

    def quiet() -> None:
        if served():
            shares.apply(store, zfs, runner)  # clients added, changed or removed elsewhere: their shares follow
            watcher.tick()

    def sync_versions() -> None:
        if served():
            versions.sync_all(store, zfs)

    return [("smb.quiet", QUIET_POLL, quiet), ("smb.versions", VERSIONS_SYNC, sync_versions)]
