"""Bookmarks (OpenZFS only): the point in time of a snapshot, kept after the snapshot itself is destroyed, to
send incrementals from (``transfer.SendOptions(incremental_from="pool/ds#mark")``).

A replication source can thus free the space of a snapshot that the target already holds, and still send the
next incremental. A bookmark holds no data: it cannot be rolled back to, mounted or cloned.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.zfs import names
from appliance.zfs.host import ZfsHost, split_rows

_COLUMNS = ("name", "createtxg", "guid", "creation")


@dataclass(frozen=True)
class Bookmark:
    name: str  # pool/ds#mark
    createtxg: int
    guid: str  # the snapshot's GUID: what an incremental stream's receiver checks
    creation: int  # epoch seconds of the snapshot it marks

    @property
    def dataset(self) -> str:
        return self.name.split("#", 1)[0]

    @property
    def mark(self) -> str:
        return self.name.split("#", 1)[1]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "dataset": self.dataset, "mark": self.mark, "creation": self.creation}


def parse_list(rows: list[list[str]]) -> list[Bookmark]:
    """Rows of ``zfs list -H -p -t bookmark -o name,createtxg,guid,creation``."""
    out = []
    for name, createtxg, guid, creation in rows:
        if "#" not in name or not (createtxg.isdigit() and guid.isdigit() and creation.isdigit()):
            raise UnexpectedOutput("zfs list -t bookmark", "\t".join((name, createtxg, guid, creation)))
        out.append(Bookmark(name, int(createtxg), guid, int(creation)))
    return out


def create(host: ZfsHost, snapshot: str, mark: str) -> Bookmark:
    """Bookmark ``snapshot`` (``pool/ds@snap``) as ``pool/ds#mark``."""
    host.caps.require("bookmarks")
    dataset, _ = names.split_snapshot(snapshot)
    name = names.bookmark_name(f"{dataset}#{names.component(mark)}")
    host.zfs("bookmark", snapshot, name, subject=name)
    found = [b for b in list_bookmarks(host, dataset) if b.name == name]
    if len(found) != 1:
        raise UnexpectedOutput("zfs list -t bookmark", f"{name} missing after it was made")
    return found[0]


def list_bookmarks(host: ZfsHost, dataset: str) -> list[Bookmark]:
    """The bookmarks of ``dataset``, oldest first."""
    host.caps.require("bookmarks")
    result = host.zfs(
        "list",
        "-H",
        "-p",
        "-t",
        "bookmark",
        "-o",
        ",".join(_COLUMNS),
        "-s",
        "createtxg",
        "-d",
        "1",
        names.dataset_name(dataset),
        subject=dataset,
    )
    return [b for b in parse_list(split_rows(result, len(_COLUMNS))) if b.dataset == dataset]


def destroy(host: ZfsHost, bookmark: str) -> None:
    host.caps.require("bookmarks")
    if "@" in bookmark:
        raise InvalidInput(f"{bookmark} is a snapshot, not a bookmark")
    host.zfs("destroy", names.bookmark_name(bookmark), subject=bookmark)
