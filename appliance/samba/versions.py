"""Previous Versions: a client's share points shown to Windows through Samba's ``shadow_copy2``.

Each recovery point of the ``share`` dataset is a read-only clone ``<pool>/previous-versions/<client>/<folder>``
mounted at ``<client dir>/versions/<folder>``, the folder named by the point's UTC creation time in
shadow_copy2's format (``bw-20261126T143400Z``). zfs-fuse has no ``.zfs/snapshot`` directory, and the same
clones work on OpenZFS, so this is done the same way on both. :func:`sync` keeps the clones in step with point
creations and prunes (bulwarkd runs it after each SMB point and periodically).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from dataclasses import dataclass

from appliance.clients import points, service
from appliance.clients.model import Client
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.zfs import datasets, properties, snapshots
from appliance.zfs.errors import DatasetNotFound
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.samba.versions")

ROOT = "previous-versions"
FOLDER = "versions"
P_POINT = "bulwark:pv-point"


def folder_name(created_at: float) -> str:
    return dt.datetime.fromtimestamp(int(created_at), dt.UTC).strftime("bw-%Y%m%dT%H%M%SZ")


def _client_dir(zfs: ZfsHost, client: Client) -> str | None:
    try:
        ds = datasets.get_dataset(zfs, client.dataset)
    except DatasetNotFound:
        return None
    return ds.mountpoint if ds.mounted and ds.mountpoint else None


def snapdir(zfs: ZfsHost, client: Client) -> str | None:
    """The folder shadow_copy2 reads the client's versions from (made if missing), or None if unmounted."""
    base = _client_dir(zfs, client)
    if base is None:
        return None
    path = os.path.join(base, FOLDER)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)  # noqa: S103 - the client account lists its versions
    return path


def _destroy(zfs: ZfsHost, clone: str) -> None:
    """Destroy a version clone and remove its (then empty) mount directory."""
    mountpoint = datasets.get_dataset(zfs, clone).mountpoint
    datasets.destroy(zfs, clone)
    if mountpoint and os.path.basename(os.path.dirname(mountpoint)) == FOLDER:
        with contextlib.suppress(OSError):
            os.rmdir(mountpoint)


@dataclass(frozen=True)
class SyncReport:
    added: list[str]
    removed: list[str]
    failed: dict[str, str]


def _pool(client: Client) -> str:
    return client.dataset.split("/", 1)[0]


def sync(store: Store, zfs: ZfsHost, client: Client) -> SyncReport:
    """Make the client's version clones match its share points (missing ones cloned, pruned ones removed)."""
    base = snapdir(zfs, client)
    if base is None:
        return SyncReport([], [], {})
    root = f"{_pool(client)}/{ROOT}"
    mine = f"{root}/{client.name}"
    for ds, props in ((root, {"bulwark:role": "previous-versions", "canmount": "off"}), (mine, {"canmount": "off"})):
        if not datasets.exists(zfs, ds):
            datasets.create(zfs, ds, props)
    wanted: dict[str, points.RecoveryPoint] = {}
    for p in points.scan(zfs, client).points:
        if p.area == "share":
            wanted.setdefault(folder_name(p.created_at), p)  # newest first: a second's later point wins
    have = properties.get(zfs, [mine], (P_POINT, "type"), depth=1)
    existing = {n.rsplit("/", 1)[1]: n for n in have if n != mine and "@" not in n}
    added, removed, failed = [], [], {}
    for folder, ds in sorted(existing.items()):
        point = wanted.get(folder)
        prop = have[ds].get(P_POINT)
        if point is not None and prop is not None and prop.value == point.snapshot:
            continue
        try:
            _destroy(zfs, ds)
            removed.append(folder)
        except BulwarkError as exc:  # busy while a client reads it: next time
            failed[folder] = str(exc)
    for folder, point in sorted(wanted.items()):
        if folder in existing and folder not in removed:
            continue
        target = os.path.join(base, folder)
        try:
            snapshots.clone(
                zfs,
                point.snapshot,
                f"{mine}/{folder}",
                {"readonly": "on", "mountpoint": target, P_POINT: point.snapshot},
            )
            added.append(folder)
        except BulwarkError as exc:
            failed[folder] = str(exc)
    if failed:
        log.warning("previous versions of %s: %s", client.name, failed)
    return SyncReport(added, removed, failed)


def sync_if_served(store: Store, zfs: ZfsHost, client: Client) -> SyncReport | None:
    """:func:`sync` when this appliance serves SMB shares (its smb.conf exists)."""
    from appliance.samba import shares

    if not shares.has_share(client) or not shares.layout(store).conf.exists():
        return None
    return sync(store, zfs, client)


def sync_all(store: Store, zfs: ZfsHost) -> None:
    for client in service.list_clients(store):
        if client.kind in ("smb", "both"):
            try:
                sync(store, zfs, client)
            except BulwarkError as exc:
                log.warning("previous versions of %s: %s", client.name, exc)


def remove_all(zfs: ZfsHost, client: Client) -> None:
    """Destroy the client's version clones (before its share dataset's points can go)."""
    mine = f"{_pool(client)}/{ROOT}/{client.name}"
    if datasets.exists(zfs, mine):
        datasets.destroy(zfs, mine, recursive=True)


def release(zfs: ZfsHost, client: str, snapshot: str) -> bool:
    """Destroy the version clone of ``snapshot`` (so the point can be pruned); False if it had none."""
    mine = f"{snapshot.split('/', 1)[0]}/{ROOT}/{client}"
    if not datasets.exists(zfs, mine):
        return False
    have = properties.get(zfs, [mine], (P_POINT,), depth=1)
    for name, props in have.items():
        prop = props.get(P_POINT)
        if name != mine and prop is not None and prop.value == snapshot:
            _destroy(zfs, name)
            return True
    return False
