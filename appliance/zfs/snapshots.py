"""Snapshots: create, list (with creation, used and referenced), destroy, clone, rollback.

Rollback exists for the driver's own use (recovery of a half-received dataset, tests); it is not offered
to users on live client data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from appliance.system.errors import UnexpectedOutput
from appliance.zfs import datasets, names, properties
from appliance.zfs.errors import DatasetBusy, DatasetNotFound, SnapshotHeld
from appliance.zfs.host import ZfsHost
from appliance.zfs.properties import PropertyMap

SNAPSHOT_PROPS = ("type", "creation", "used", "referenced", "userrefs")


@dataclass(frozen=True)
class Snapshot:
    name: str  # pool/ds@snap
    creation: int  # epoch seconds
    used: int
    referenced: int
    holds: int  # number of user holds (userrefs)
    user: dict[str, str]

    @property
    def dataset(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def snapname(self) -> str:
        return self.name.split("@", 1)[1]

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "snapname": self.snapname,
            "creation": self.creation,
            "used_bytes": self.used,
            "referenced_bytes": self.referenced,
            "holds": self.holds,
            "user_properties": dict(self.user),
        }


def _int(props: PropertyMap, key: str, name: str) -> int:
    if key not in props or not props[key].value.isdigit():
        raise UnexpectedOutput(f"zfs get {key}", f"{name}: {props.get(key)}")
    return int(props[key].value)


def from_properties(name: str, props: PropertyMap) -> Snapshot:
    if props.get("type") is None or props["type"].value != "snapshot":
        raise UnexpectedOutput("zfs get type", f"{name}: not a snapshot")
    return Snapshot(
        name=name,
        creation=_int(props, "creation", name),
        used=_int(props, "used", name),
        referenced=_int(props, "referenced", name),
        holds=_int(props, "userrefs", name),
        user=properties.user_properties(props),
    )


def create(host: ZfsHost, dataset: str, snapname: str, props: Mapping[str, str] | None = None) -> Snapshot:
    """Take a snapshot; ``props`` (``bulwark:`` user properties) are set in the same command."""
    full = f"{names.dataset_name(dataset)}@{names.component(snapname)}"
    args = ["snapshot"]
    for key, value in (props or {}).items():
        args += ["-o", f"{names.user_property_name(key)}={names.property_value(key, value)}"]
    host.zfs(*args, full, subject=full)
    return get_snapshot(host, full)


def list_snapshots(host: ZfsHost, dataset: str, *, user_props: tuple[str, ...] = ()) -> list[Snapshot]:
    """Snapshots of ``dataset`` itself (not of its children), oldest first."""
    names.dataset_name(dataset)
    wanted: tuple[str, ...] = SNAPSHOT_PROPS + tuple(names.user_property_name(p) for p in user_props)
    if not user_props:
        wanted = ("all",)
    # depth 1 from the dataset covers its own snapshots (and its direct children, filtered out below).
    values = properties.get(host, [dataset], wanted, depth=1)
    if dataset not in values:
        raise DatasetNotFound(dataset)
    prefix = dataset + "@"
    snaps = [from_properties(n, p) for n, p in values.items() if n.startswith(prefix)]
    snaps.sort(
        key=lambda s: (s.creation, int(values[s.name]["createtxg"].value) if "createtxg" in values[s.name] else 0)
    )
    return snaps


def get_snapshot(host: ZfsHost, name: str) -> Snapshot:
    values = properties.get(host, [names.snapshot_name(name)], ("all",))
    if name not in values:
        raise DatasetNotFound(name)
    return from_properties(name, values[name])


def exists(host: ZfsHost, name: str) -> bool:
    try:
        get_snapshot(host, name)
    except DatasetNotFound:
        return False
    return True


def destroy(host: ZfsHost, name: str) -> None:
    """Destroy one snapshot. A held snapshot raises :class:`SnapshotHeld` (with its hold count)."""
    names.snapshot_name(name)
    try:
        host.zfs("destroy", name, subject=name, timeout=600)
    except SnapshotHeld as exc:
        raise SnapshotHeld(name, get_snapshot(host, name).holds) from exc
    except DatasetBusy as exc:
        # zfs-fuse says only "dataset is busy"; the hold count tells whether holds are the reason.
        holds = get_snapshot(host, name).holds
        if holds:
            raise SnapshotHeld(name, holds) from exc
        raise


def clone(host: ZfsHost, snapshot: str, target: str, props: Mapping[str, str] | None = None) -> datasets.Dataset:
    """A writable (or, with ``readonly=on``, read-only) filesystem from a snapshot."""
    names.snapshot_name(snapshot)
    names.dataset_name(target)
    args = ["clone"]
    for key, value in (props or {}).items():
        args += ["-o", f"{names.property_name(key)}={names.property_value(key, value)}"]
    host.zfs(*args, snapshot, target, subject=target)
    return datasets.get_dataset(host, target)


def rollback(host: ZfsHost, snapshot: str) -> None:
    """Roll a dataset back to its most recent snapshot. Refuses (``NewerSnapshotsExist``) when newer
    snapshots exist: this driver never passes ``-r``."""
    host.zfs("rollback", names.snapshot_name(snapshot), subject=snapshot)


def rename(host: ZfsHost, snapshot: str, new_snapname: str) -> str:
    ds, _ = names.split_snapshot(snapshot)
    target = f"{ds}@{names.component(new_snapname)}"
    host.zfs("rename", snapshot, target, subject=snapshot)
    return target
