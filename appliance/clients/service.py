"""Clients: create, read, change; the database row is a cache of the client dataset's ``bulwark:`` properties.

Every change is written to ZFS first and to the database second, so a crash in between leaves ZFS right and
:func:`import_clients` (run at daemon start and when a pool is adopted) brings the database back in line.
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.clients import model
from appliance.clients.errors import ClientExists, ClientNotFound
from appliance.clients.model import Client, ClientSettings
from appliance.store import Store
from appliance.system import settings as appliance_settings
from appliance.system.errors import BulwarkError, InvalidInput, NotInitialized
from appliance.zfs import datasets, properties
from appliance.zfs.errors import DatasetNotFound
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.clients")

CLIENTS = "clients"


def pool_name(store: Store) -> str:
    config = appliance_settings.load(store)
    if config is None:
        raise NotInitialized(str(store.path.parent))
    return config.pool.name


def timezone(store: Store) -> str:
    config = appliance_settings.load(store)
    return config.timezone if config is not None else "UTC"


def clients_root(store: Store) -> str:
    return f"{pool_name(store)}/{CLIENTS}"


# -- database --------------------------------------------------------------------------------------


def _from_row(row: Any) -> Client:
    settings = ClientSettings(
        kind=row["kind"],
        quota=row["quota_bytes"],
        rpo=row["rpo_seconds"],
        schedule=row["schedule"],
        window=row["backup_window"],
        retention=row["retention"],
        lock=row["lock_seconds"],
        notes=row["notes"],
    )
    return Client(
        row["name"], row["uuid"], row["dataset"], row["state"], settings, row["created_at"], row["updated_at"]
    )


def _row(client: Client) -> dict[str, Any]:
    s = client.settings
    return {
        "name": client.name,
        "uuid": client.uuid,
        "dataset": client.dataset,
        "kind": s.kind,
        "state": client.state,
        "quota_bytes": s.quota,
        "rpo_seconds": s.rpo,
        "schedule": s.schedule,
        "backup_window": s.window,
        "retention": s.retention,
        "lock_seconds": s.lock,
        "notes": s.notes,
        "created_at": client.created_at,
        "updated_at": client.updated_at,
    }


def save_row(store: Store, client: Client) -> None:
    """Insert or replace the cached row of ``client`` (schedule bookkeeping is kept)."""
    row = _row(client)
    cols = ", ".join(row)
    marks = ", ".join("?" * len(row))
    updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != "name")
    with store.write() as conn:
        conn.execute(
            f"INSERT INTO clients ({cols}) VALUES ({marks}) ON CONFLICT (name) DO UPDATE SET {updates}",  # noqa: S608
            tuple(row.values()),
        )


def delete_row(store: Store, name: str) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM clients WHERE name = ?", (name,))


def get_client(store: Store, name: str) -> Client:
    model.check_name(name)
    row = store.query_one("SELECT * FROM clients WHERE name = ?", (name,))
    if row is None:
        raise ClientNotFound(name)
    return _from_row(row)


def list_clients(store: Store, *, include_removed: bool = False) -> list[Client]:
    if include_removed:
        rows = store.query("SELECT * FROM clients ORDER BY name")
    else:
        rows = store.query("SELECT * FROM clients WHERE state = 'active' ORDER BY name")
    return [_from_row(r) for r in rows]


# -- ZFS -------------------------------------------------------------------------------------------


def ensure_clients_root(store: Store, zfs: ZfsHost) -> str:
    root = clients_root(store)
    if not datasets.exists(zfs, root):
        datasets.create(zfs, root, {model.P_ROLE: "clients"})
    return root


def create_client(store: Store, zfs: ZfsHost, name: str, settings: ClientSettings, *, by: str) -> Client:
    """Make the client's datasets (with its properties, atomically per dataset) and its database row.

    Refused with :class:`ClientExists` if the name is taken in the database or on the pool (a removed client's
    data keeps its name). On a failure nothing is left behind."""
    model.check_name(name)
    if store.query_one("SELECT state FROM clients WHERE name = ?", (name,)) is not None:
        raise ClientExists(name, "")
    root = ensure_clients_root(store, zfs)
    dataset = f"{root}/{name}"
    if datasets.exists(zfs, dataset):
        raise ClientExists(name, f" on the pool ({dataset} holds its data)")
    now = time.time()
    client = Client(name, str(uuidlib.uuid4()), dataset, "active", settings, float(int(now)), now)
    props = model.to_properties(client)
    if settings.quota is not None:
        props["quota"] = str(settings.quota)
    datasets.create(zfs, dataset, props)
    try:
        for area in model.live_areas(settings.kind):
            datasets.create(zfs, f"{dataset}/{area}")
    except BaseException:
        datasets.destroy(zfs, dataset, recursive=True)  # fresh and empty: nothing stored is lost
        raise
    save_row(store, client)
    store.audit(by, "client.create", name, **settings.to_dict())
    log.info("client %s created (%s)", name, settings.kind)
    return client


def ensure_areas(zfs: ZfsHost, client: Client) -> list[str]:
    """Create the child datasets the client's kind needs and lacks (a kind change only ever adds)."""
    made = []
    for area in model.live_areas(client.kind):
        ds = client.area_dataset(area)
        if not datasets.exists(zfs, ds):
            datasets.create(zfs, ds)
            made.append(area)
    return made


def update_client(store: Store, zfs: ZfsHost, name: str, *, by: str, **changes: Any) -> Client:
    """Change settings (validated first; nothing changes on bad input). A shorter lock period applies only to
    points taken from now on; a narrower kind keeps the datasets (and points) it had."""
    client = get_client(store, name)
    new_settings = client.settings.changed(**changes)
    if new_settings == client.settings:
        return client
    if "quota" in changes and new_settings.quota != client.settings.quota:
        datasets.set_quota(zfs, client.dataset, new_settings.quota)
    datasets.set_user_properties(zfs, client.dataset, model.settings_properties(new_settings))
    updated = Client(
        client.name, client.uuid, client.dataset, client.state, new_settings, client.created_at, time.time()
    )
    ensure_areas(zfs, updated)
    save_row(store, updated)
    store.audit(by, "client.update", name, **{k: str(v) for k, v in changes.items()})
    return updated


def set_state(store: Store, zfs: ZfsHost, client: Client, state: str) -> Client:
    datasets.set_user_properties(zfs, client.dataset, {model.P_STATE: state})
    updated = replace(client, state=state, updated_at=time.time())
    save_row(store, updated)
    return updated


@dataclass(frozen=True)
class ClientUsage:
    used_bytes: int  # the client's data and all its points
    referenced_bytes: int
    available_bytes: int
    quota_bytes: int | None
    areas: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "used_bytes": self.used_bytes,
            "referenced_bytes": self.referenced_bytes,
            "available_bytes": self.available_bytes,
            "quota_bytes": self.quota_bytes,
            "areas": self.areas,
        }


def usage(zfs: ZfsHost, client: Client) -> ClientUsage:
    """Space used by a client (its dataset tree, points included), from ZFS."""
    found = properties.get(zfs, [client.dataset], ("used", "referenced", "available", "quota", "type"), recursive=True)
    if client.dataset not in found:
        raise DatasetNotFound(client.dataset)
    top = found[client.dataset]
    areas = {
        name[len(client.dataset) + 1 :]: {
            "used_bytes": int(p["used"].value),
            "referenced_bytes": int(p["referenced"].value),
        }
        for name, p in found.items()
        if name.startswith(client.dataset + "/") and "@" not in name and p["type"].value == "filesystem"
    }
    quota = top["quota"].value
    return ClientUsage(
        used_bytes=int(top["used"].value),
        referenced_bytes=int(top["referenced"].value),
        available_bytes=int(top["available"].value),
        quota_bytes=None if quota in ("0", "none", "-") else int(quota),
        areas=areas,
    )


# -- import from ZFS -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport:
    added: list[str]
    updated: list[str]
    forgotten: list[str]  # rows whose dataset no longer exists
    skipped: dict[str, str]  # datasets that look like clients but could not be read, with why

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated, "forgotten": self.forgotten, "skipped": self.skipped}


def read_clients_from_zfs(store: Store, zfs: ZfsHost) -> tuple[list[Client], dict[str, str]]:
    """Every client described by the pool's datasets, and the datasets that could not be read (with why)."""
    root = clients_root(store)
    if not datasets.exists(zfs, root):
        return [], {}
    wanted = (*model.CLIENT_PROPS, "quota", "type")
    found = properties.get(zfs, [root], wanted, depth=1)
    clients: list[Client] = []
    skipped: dict[str, str] = {}
    now = time.time()
    for name, props in sorted(found.items()):
        if name == root or "@" in name or props.get("type") is None or props["type"].value != "filesystem":
            continue
        user = properties.user_properties(props)
        if user.get(model.P_ROLE) != model.ROLE_CLIENT:
            skipped[name] = "no bulwark:role=client property"
            continue
        quota = props["quota"].value
        try:
            clients.append(model.from_properties(name, user, None if quota in ("0", "none", "-") else int(quota), now))
        except (BulwarkError, ValueError) as exc:
            skipped[name] = str(exc)
    return clients, skipped


def import_clients(store: Store, zfs: ZfsHost, *, by: str = "daemon") -> ImportReport:
    """Make the database's clients what the pool says (ZFS is the source of truth): add the missing, correct
    the changed, forget rows whose dataset is gone. Datasets that cannot be read are left alone and reported."""
    from_zfs, skipped = read_clients_from_zfs(store, zfs)
    cached = {c.name: c for c in list_clients(store, include_removed=True)}
    added, updated = [], []
    for client in from_zfs:
        old = cached.pop(client.name, None)
        if old is None:
            save_row(store, client)
            added.append(client.name)
        elif (old.uuid, old.dataset, old.state, old.settings, old.created_at) != (
            client.uuid,
            client.dataset,
            client.state,
            client.settings,
            client.created_at,
        ):
            save_row(store, client)
            updated.append(client.name)
    forgotten = []
    for name, client in cached.items():
        if client.dataset in skipped or datasets.exists(zfs, client.dataset):
            continue  # there but unreadable: keep the cached row
        delete_row(store, name)
        forgotten.append(name)
    for name in skipped:
        log.warning("dataset %s was not imported as a client: %s", name, skipped[name])
    if added or updated or forgotten:
        store.audit(by, "client.import", None, added=added, updated=updated, forgotten=forgotten)
    return ImportReport(added, updated, forgotten, skipped)


def check_settings_input(**raw: Any) -> ClientSettings:
    """Validate raw settings for a new client (what forms and the CLI pass)."""
    try:
        return ClientSettings.build(**raw)
    except TypeError as exc:
        raise InvalidInput(str(exc)) from None
