"""Filesystems and volumes: create, list, destroy, quotas and user properties."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.zfs import names, properties, units
from appliance.zfs.capabilities import ZFS_FUSE
from appliance.zfs.errors import DatasetNotFound
from appliance.zfs.host import ZfsHost, split_rows
from appliance.zfs.properties import PropertyMap

DATASET_PROPS = (
    "type",
    "creation",
    "used",
    "available",
    "referenced",
    "mountpoint",
    "mounted",
    "quota",
    "refquota",
    "compression",
    "readonly",
)


@dataclass(frozen=True)
class Dataset:
    name: str
    type: str  # "filesystem" or "volume"
    creation: int
    used: int
    available: int
    referenced: int
    mountpoint: str | None
    mounted: bool
    quota: int | None
    refquota: int | None
    compression: str
    readonly: bool
    user: dict[str, str]

    @property
    def pool(self) -> str:
        return self.name.split("/", 1)[0]

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.type,
            "creation": self.creation,
            "used_bytes": self.used,
            "available_bytes": self.available,
            "referenced_bytes": self.referenced,
            "mountpoint": self.mountpoint,
            "mounted": self.mounted,
            "quota_bytes": self.quota,
            "refquota_bytes": self.refquota,
            "compression": self.compression,
            "readonly": self.readonly,
            "user_properties": dict(self.user),
        }


def _int(props: PropertyMap, key: str, name: str) -> int:
    value = props[key].value
    if not value.isdigit():
        raise UnexpectedOutput(f"zfs get {key}", f"{name}\t{key}\t{value}")
    return int(value)


def from_properties(name: str, props: PropertyMap, implementation: str | None = None) -> Dataset:
    """Build a :class:`Dataset` from ``zfs get -H -p`` values (of ``implementation``, when known)."""
    missing = [k for k in DATASET_PROPS if k not in props]
    if missing:
        raise UnexpectedOutput("zfs get", f"{name}: missing {', '.join(missing)}")
    kind = props["type"].value
    if kind not in ("filesystem", "volume"):
        raise UnexpectedOutput("zfs get type", f"{name}\t{kind}")
    mountpoint = props["mountpoint"].value
    return Dataset(
        name=name,
        type=kind,
        creation=_int(props, "creation", name),
        used=_int(props, "used", name),
        available=_int(props, "available", name),
        referenced=_int(props, "referenced", name),
        mountpoint=None if mountpoint in ("-", "none", "legacy") else mountpoint,
        mounted=props["mounted"].value == "yes",
        quota=units.parse_optional_size(props["quota"].value, what="quota"),
        refquota=units.parse_optional_size(props["refquota"].value, what="refquota"),
        compression=props["compression"].value,
        readonly=_readonly(props["readonly"], implementation),
        user=properties.user_properties(props),
    )


def _readonly(prop: properties.Property, implementation: str | None) -> bool:
    # A mounted zfs-fuse filesystem with readonly=on reads back as "off" from source "temporary" (its FUSE
    # mount is rw; zfs-fuse refuses the writes itself). On OpenZFS "temporary" is a real mount option.
    if implementation == ZFS_FUSE and prop.source == "temporary":
        return True
    return prop.value == "on"


def list_names(host: ZfsHost, root: str, *, recursive: bool = True, kinds: str = "filesystem,volume") -> list[str]:
    """Names under ``root`` (itself included), parents before children."""
    args = ["list", "-H", "-o", "name", "-t", kinds]
    if recursive:
        args.append("-r")
    result = host.zfs(*args, names.dataset_name(root), subject=root)
    return [row[0] for row in split_rows(result, 1)]


def list_datasets(
    host: ZfsHost, root: str, *, recursive: bool = True, user_props: tuple[str, ...] = ()
) -> list[Dataset]:
    """Filesystems and volumes under ``root``, with their ``bulwark:`` properties."""
    wanted = DATASET_PROPS + tuple(names.user_property_name(p) for p in user_props)
    if not user_props:
        wanted = ("all",)
    dataset_names = list_names(host, root, recursive=recursive)
    values = properties.get(host, dataset_names, wanted)
    return [from_properties(n, values[n], host.caps.implementation) for n in dataset_names if n in values]


def get_dataset(host: ZfsHost, name: str) -> Dataset:
    values = properties.get(host, [names.dataset_name(name)], ("all",))
    if name not in values:
        raise DatasetNotFound(name)
    return from_properties(name, values[name], host.caps.implementation)


def exists(host: ZfsHost, name: str) -> bool:
    try:
        list_names(host, name, recursive=False, kinds="filesystem,volume")
    except DatasetNotFound:
        return False
    return True


def create(
    host: ZfsHost,
    name: str,
    props: Mapping[str, str] | None = None,
    *,
    parents: bool = False,
) -> Dataset:
    """Create a filesystem with properties (user properties included) set atomically at creation."""
    names.dataset_name(name)
    if "/" not in name:
        raise InvalidInput("a dataset name needs a pool and at least one child: 'pool/name'")
    args = ["create"]
    if parents:
        args.append("-p")
    for key, value in (props or {}).items():
        args += ["-o", f"{names.property_name(key)}={names.property_value(key, value)}"]
    host.zfs(*args, name, subject=name)
    return get_dataset(host, name)


def destroy(host: ZfsHost, name: str, *, recursive: bool = False) -> None:
    """Destroy a filesystem. Refused (``HasChildren``) if it has children or snapshots, unless
    ``recursive`` is asked for explicitly. Never destroys dependent clones elsewhere (no ``-R``)."""
    names.dataset_name(name)
    if "/" not in name:
        raise InvalidInput("refusing to destroy a pool's root dataset")
    args = ["destroy"]
    if recursive:
        args.append("-r")
    host.retry_spurious_busy(lambda: host.zfs(*args, name, subject=name, timeout=600))


def set_quota(host: ZfsHost, name: str, quota: int | None, *, ref: bool = False) -> None:
    """Set (or clear with ``None``) the quota (``ref``: refquota, excluding snapshots)."""
    key = "refquota" if ref else "quota"
    value = "none" if quota is None else units.size_argument(quota)
    if value == "0":
        raise InvalidInput("a quota of 0 would mean 'no quota'; pass None to clear it")
    properties.set_properties(host, name, {key: value})


def set_user_properties(host: ZfsHost, name: str, values: Mapping[str, str]) -> None:
    checked = {names.user_property_name(k): v for k, v in values.items()}
    properties.set_properties(host, name, checked)


def clear_user_property(host: ZfsHost, name: str, key: str) -> None:
    properties.inherit(host, name, names.user_property_name(key))


def mount(host: ZfsHost, name: str) -> None:
    host.zfs("mount", names.dataset_name(name), subject=name)


def unmount(host: ZfsHost, name: str) -> None:
    host.zfs("unmount", names.dataset_name(name), subject=name)
