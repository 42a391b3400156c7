"""Reading and writing ZFS properties, native and Bulwark's own ``bulwark:`` user properties.

All reads use ``zfs get -H -p -o name,property,value,source``: four tab-separated columns, exact bytes
and epoch seconds. A user property that is not set reads as value ``-`` with source ``-``; the source
column tells it apart from a property set to ``-``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from appliance.system.errors import InvalidInput
from appliance.zfs import names
from appliance.zfs.host import ZfsHost, chunks, split_rows


@dataclass(frozen=True)
class Property:
    value: str
    source: str  # "local", "default", "-", "inherited from X", "received", "temporary"

    @property
    def is_set(self) -> bool:
        """False for a user property that was never set."""
        return not (self.source == "-" and self.value == "-")

    @property
    def is_local(self) -> bool:
        return self.source == "local"


PropertyMap = dict[str, Property]


def parse_get(rows: list[list[str]]) -> dict[str, PropertyMap]:
    """Rows of ``zfs get -H -p -o name,property,value,source`` → {dataset: {property: Property}}."""
    out: dict[str, PropertyMap] = {}
    for name, prop, value, source in rows:
        out.setdefault(name, {})[prop] = Property(value, source)
    return out


def get(
    host: ZfsHost,
    targets: Sequence[str],
    props: Iterable[str] = ("all",),
    *,
    recursive: bool = False,
    depth: int | None = None,
    types: Sequence[str] = (),
) -> dict[str, PropertyMap]:
    """Properties of ``targets`` (and their descendants with ``recursive``/``depth``)."""
    prop_list = list(props)
    for p in prop_list:
        if p != "all":
            names.property_name(p)
    targets = [names.any_name(t) for t in targets]
    if not targets:
        return {}
    args = ["get", "-H", "-p", "-o", "name,property,value,source"]
    if recursive:
        args.append("-r")
    if depth is not None:
        if depth < 0:
            raise InvalidInput("depth must not be negative")
        args += ["-d", str(depth)]
    if types:  # (OpenZFS only; verified in the OpenZFS test machine)
        host.caps.require("get_type_filter")
        args += ["-t", ",".join(types)]
    args.append(",".join(prop_list))
    merged: dict[str, PropertyMap] = {}
    for group in chunks(targets):
        result = host.zfs(*args, *group, subject=group[0] if len(group) == 1 else ", ".join(group))
        for name, values in parse_get(split_rows(result, 4)).items():
            merged.setdefault(name, {}).update(values)
    return merged


def get_one(host: ZfsHost, target: str, props: Iterable[str] = ("all",)) -> PropertyMap:
    return get(host, [target], props).get(target, {})


def set_properties(host: ZfsHost, target: str, values: Mapping[str, str]) -> None:
    """Set properties; all are validated before the first one is written."""
    names.any_name(target)
    checked = [(names.property_name(k), names.property_value(k, v)) for k, v in values.items()]
    if host.caps.has("multi_property_set") and len(checked) > 1:  # (verified in the OpenZFS test machine)
        host.zfs("set", *[f"{k}={v}" for k, v in checked], target, subject=target)
        return
    for key, value in checked:
        host.zfs("set", f"{key}={value}", target, subject=target)


def inherit(host: ZfsHost, target: str, prop: str) -> None:
    """Clear a local value (for a user property: remove it)."""
    host.zfs("inherit", names.property_name(prop), names.any_name(target), subject=target)


def user_properties(props: PropertyMap) -> dict[str, str]:
    """The ``bulwark:`` properties that are actually set."""
    return {k: p.value for k, p in props.items() if k.startswith(names.USER_NAMESPACE) and p.is_set}
