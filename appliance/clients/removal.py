"""Removing a client: by default its data stays (and can be reattached); destroying it needs the client's name
typed as confirmation and is refused while any of its points is pinned or locked."""

from __future__ import annotations

import logging

from appliance.clients import browse, model, points, service
from appliance.clients.errors import ClientExists, ConfirmationMismatch, ProtectedPointsExist
from appliance.clients.model import Client
from appliance.store import Store
from appliance.system.errors import Conflict
from appliance.zfs import datasets
from appliance.zfs.errors import DatasetNotFound
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.clients")


def remove_client(store: Store, zfs: ZfsHost, name: str, *, by: str) -> Client:
    """Stop everything for a client (schedules, pruning, RPO alerts) and hide it from lists; its datasets and
    points stay on the pool, marked ``bulwark:state=removed``."""
    client = service.get_client(store, name)
    if not client.active:
        return client
    browse.close_client_sessions(store, zfs, name)
    updated = service.set_state(store, zfs, client, "removed")
    store.audit(by, "client.remove", name)
    return updated


def reattach_client(store: Store, zfs: ZfsHost, name: str, *, by: str) -> Client:
    """Bring a removed client back, with its data and points. A client whose dataset is on the pool but unknown
    to the database (another appliance's pool, say) is imported first."""
    model.check_name(name)
    service.import_clients(store, zfs, by=by)
    client = service.get_client(store, name)
    if client.active:
        raise ClientExists(name, " and is active")
    updated = service.set_state(store, zfs, client, "active")
    service.ensure_areas(zfs, updated)
    store.audit(by, "client.reattach", name)
    return updated


def destroy_client(store: Store, zfs: ZfsHost, name: str, *, confirm: str, by: str) -> None:
    """Destroy a client's datasets and every point, then forget it. ``confirm`` must be the client's name."""
    client = service.get_client(store, name)
    if confirm != name:
        raise ConfirmationMismatch(name, name, confirm)
    if client.active:
        raise Conflict(f"client {name} is active; remove it first ('bulwark client remove {name}')")
    try:
        timeline = points.scan(zfs, client).points
    except DatasetNotFound:
        timeline = ()
    pinned = sum(p.pinned for p in timeline)
    locked = sum(p.locked() for p in timeline)
    if pinned or locked:
        raise ProtectedPointsExist(name, pinned, locked)
    browse.close_client_sessions(store, zfs, name)
    from appliance.samba import versions  # its Previous Versions clones depend on its share's points

    versions.remove_all(zfs, client)
    if timeline or datasets.exists(zfs, client.dataset):
        datasets.destroy(zfs, client.dataset, recursive=True)
    service.delete_row(store, name)
    store.audit(by, "client.destroy", name, points=len(timeline))
    log.warning("client %s destroyed with its %d point(s) by %s", name, len(timeline), by)
