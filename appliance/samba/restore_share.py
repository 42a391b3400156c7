"""Restore share: one recovery point of a client's share published read-only as ``\\\\appliance\\CLIENT-restore``.

The share's path is the point's Previous Versions clone (read-only, mounted under the client's ``versions``
folder), open to the client's own account only. One restore share per client; publishing another point
replaces it. If the point is pruned, its clone goes and the restore share with it.
"""

from __future__ import annotations

import os
from typing import Any

from appliance.clients import points, service
from appliance.clients.model import Client
from appliance.samba import accounts, conf, shares, versions
from appliance.samba.conf import ShareSpec
from appliance.store import Store
from appliance.system.errors import InvalidInput, NotFound
from appliance.system.runner import Runner
from appliance.zfs.host import ZfsHost

KEY = "smb.restore."
SUFFIX = "-restore"


def share_name(client: str) -> str:
    return conf.check_share_name(client + SUFFIX)


def published(store: Store, client: str) -> dict[str, Any] | None:
    raw = store.get_setting(KEY + client)
    return raw if isinstance(raw, dict) and raw.get("point") else None


def _path(zfs: ZfsHost, client: Client, created_at: float) -> str | None:
    base = versions.snapdir(zfs, client)
    if base is None:
        return None
    path = os.path.join(base, versions.folder_name(created_at))
    return path if os.path.ismount(path) else None


def spec(store: Store, zfs: ZfsHost, client: Client) -> ShareSpec | None:
    """The client's restore share, if one is published and its point's clone is mounted."""
    entry = published(store, client.name)
    if entry is None or not shares.has_share(client):
        return None
    path = _path(zfs, client, float(entry["created_at"]))
    if path is None:
        return None  # its point was pruned (or is not cloned yet)
    return ShareSpec(
        name=share_name(client.name),
        path=path,
        account=accounts.account_name(client.name, shares.load_settings(store).account_prefix),
        comment=f"{client.name} as of {entry['point']} (read-only)",
        read_only=True,
    )


def publish(store: Store, zfs: ZfsHost, runner: Runner, name: str, ref: str, *, by: str) -> dict[str, Any]:
    """Publish point ``ref`` of the client's share read-only; returns the share's connection details."""
    client = service.get_client(store, name)
    if not shares.has_share(client):
        raise InvalidInput(f"client {name!r} has no SMB share (its kind is {client.kind})")
    share_name(name)
    point = points.get_point(store, zfs, name, ref)
    if point.area != "share":
        raise InvalidInput(f"point {point.id} is not of the SMB share (only share@… points can be published)")
    versions.sync(store, zfs, client)
    if _path(zfs, client, point.created_at) is None:
        raise NotFound(f"a mounted read-only copy of {point.id}")
    before = store.get_setting(KEY + name)
    store.set_setting(KEY + name, {"point": point.id, "created_at": point.created_at})
    try:
        shares.apply(store, zfs, runner)
    except Exception:
        store.set_setting(KEY + name, before or {})
        raise
    store.audit(by, "smb.restore_share.publish", name, point=point.id)
    account = accounts.account_name(name, shares.load_settings(store).account_prefix)
    return {"share": share_name(name), "point": point.id, "user": account}


def unpublish(store: Store, zfs: ZfsHost, runner: Runner, name: str, *, by: str) -> bool:
    service.get_client(store, name)
    if published(store, name) is None:
        return False
    store.set_setting(KEY + name, {})
    shares.apply(store, zfs, runner)
    store.audit(by, "smb.restore_share.unpublish", name)
    return True
