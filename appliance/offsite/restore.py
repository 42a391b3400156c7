"""Reading offsite copies back: the catalog of a target, restoring a chain into ``zfs receive``, verification
drills, and disaster recovery onto a fresh appliance with only the target and the recovery kit."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.clients import model, points, service
from appliance.offsite import config, download, keys, repo, watch
from appliance.offsite.errors import NothingOffsite, OffsiteError, Tampered
from appliance.offsite.repo import ChainInfo
from appliance.offsite.targets.base import Target
from appliance.store import Store
from appliance.system.errors import BulwarkError, Conflict
from appliance.system.paths import Paths
from appliance.zfs import datasets, properties, snapshots, transfer
from appliance.zfs.host import ZfsHost

Progress = Callable[[int, int, str], None]


# -- catalog -------------------------------------------------------------------------------------------------------


def catalog(target: Target, keys_: dict[bytes, bytes], client: str | None = None) -> list[ChainInfo]:
    """Every chain on the target (of one client), authenticated; newest last within each area."""
    layout = repo.list_layout(target)
    out: list[ChainInfo] = []
    for name, areas in sorted(layout.items()):
        if client is not None and name != client:
            continue
        for area, chain_ids in sorted(areas.items()):
            chains = [repo.read_chain(target, keys_, name, area, cid) for cid in chain_ids]
            out += sorted((c for c in chains if c.streams), key=lambda c: c.streams[0].get("created_at", 0))
    return out


def catalog_dict(chains: list[ChainInfo]) -> list[dict[str, Any]]:
    """The JSON of ``bulwark offsite list``: clients → areas → chains → points."""
    clients: dict[str, dict[str, Any]] = {}
    for chain in chains:
        entry = clients.setdefault(chain.client, {"client": chain.client, "areas": {}})
        entry["areas"].setdefault(chain.area, []).append(
            {
                "chain_id": chain.chain_id.hex(),
                "updated_at": chain.updated_at,
                "points": [
                    {
                        "point": f"{chain.area}@{s['snapshot']}",
                        "snapshot": s["snapshot"],
                        "seq": s["seq"],
                        "created_at": s.get("created_at"),
                        "plain_bytes": s.get("plain_bytes"),
                        "stored_bytes": s.get("stored_bytes"),
                    }  # fmt: skip
                    for s in chain.streams
                ],
            }
        )
    return list(clients.values())


def select(chains: list[ChainInfo], client: str, point: str) -> list[tuple[ChainInfo, int]]:
    """(chain, index of the last stream to restore) per area for ``point`` ('latest', 'AREA@SNAP' or 'SNAP')."""
    mine = [c for c in chains if c.client == client]
    if not mine:
        raise NothingOffsite("the target", f"client {client}")
    if point == "latest":
        newest: dict[str, ChainInfo] = {}
        for chain in mine:
            newest[chain.area] = chain  # sorted oldest first within an area
        return [(c, len(c.streams) - 1) for _, c in sorted(newest.items())]
    area, _, snap = point.rpartition("@")
    for chain in reversed(mine):
        if area and chain.area != area:
            continue
        for k, entry in enumerate(chain.streams):
            if entry["snapshot"] == snap:
                return [(chain, k)]
    raise NothingOffsite("the target", f"point {point} of client {client}")


# -- restoring a chain ------------------------------------------------------------------------------------------


@dataclass
class Restored:
    area: str
    dataset: str
    snapshots: list[str]
    plain_bytes: int
    chunks: int


def restore_chain(
    target: Target, keys_: dict[bytes, bytes], zfs: ZfsHost, chain: ChainInfo, upto: int, dest: str,
    *, progress: Progress | None = None, check: Callable[[], None] | None = None, set_points: bool = True,
) -> Restored:  # fmt: skip
    """Receive streams 0…``upto`` of ``chain`` as ``dest`` (which must not exist yet); all or nothing."""
    manifests = [
        repo.read_stream_manifest(target, keys_, chain.client, chain.area, e) for e in chain.streams[: upto + 1]
    ]
    total = sum(int(m["plain_bytes"]) for m in manifests)
    done, chunks, names = 0, 0, []
    for manifest in manifests:
        label = f"{chain.area}@{manifest['snapshot']}"

        def on_progress(plain: int, _chunks: int, base: int = done, label: str = label) -> None:
            if progress is not None:
                progress(base + plain, total, label)

        result = _receive_one(target, keys_, zfs, manifest, dest, on_progress, check)
        snapshot = f"{dest}@{manifest['snapshot']}"
        if not snapshots.exists(zfs, snapshot):
            raise Tampered(label, "zfs receive did not create the recovery point the manifest names")
        if set_points:
            point = manifest.get("point") or {}
            props = {points.P_SOURCE: str(point.get("source") or "manual"), points.P_VERIFIED: "unverified",
                     points.P_CREATED_BY: f"offsite:{target.name}"}  # fmt: skip
            properties.set_properties(zfs, snapshot, props)
        done += result.plain_bytes
        chunks += result.chunks
        names.append(manifest["snapshot"])
    return Restored(chain.area, dest, names, done, chunks)


def _receive_one(
    target: Target, keys_: dict[bytes, bytes], zfs: ZfsHost, manifest: dict[str, Any], dest: str,
    progress: Callable[[int, int], None], check: Callable[[], None] | None,
) -> download.ReadResult:  # fmt: skip
    """One stream into ``zfs receive``. When the stream fails its checks, ``zfs receive`` gets an end of file
    instead of being killed: it then discards the incomplete stream itself before it exits (a killed receive
    can leave a half-received dataset behind on zfs-fuse)."""
    failure: BaseException | None = None
    try:
        with transfer.receive(zfs, dest) as pipe:
            try:
                return download.read_stream(target, keys_, manifest, pipe, progress=progress, check=check)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after zfs receive has ended
                failure = exc
                pipe.close()
    except BulwarkError:
        if failure is None:
            raise
    assert failure is not None
    raise failure


# -- disaster recovery ------------------------------------------------------------------------------------------


def disaster_restore(
    store: Store, paths: Paths, zfs: ZfsHost, target_name: str, client: str, point: str, read_keys: dict[bytes, bytes],
    *, progress: Progress | None = None, by: str,
) -> dict[str, Any]:  # fmt: skip
    """Bring a client's offsite point back as recovery points of this appliance (its datasets must not exist)."""
    model.check_name(client)
    target = config.open_target(store, paths, target_name)
    try:
        chains = catalog(target, read_keys, client)
        chosen = select(chains, client, point)
        root = service.ensure_clients_root(store, zfs)
        dataset = f"{root}/{client}"
        first = repo.read_stream_manifest(target, read_keys, client, chosen[0][0].area, chosen[0][0].streams[0])
        for chain, _ in chosen:
            if datasets.exists(zfs, f"{dataset}/{chain.area}"):
                raise Conflict(f"{dataset}/{chain.area} already exists; restore into an appliance without it")
        made_client = False
        if not datasets.exists(zfs, dataset):
            props = {k: v for k, v in (first.get("client_properties") or {}).items() if k.startswith("bulwark:")}
            props.setdefault(model.P_ROLE, model.ROLE_CLIENT)
            datasets.create(zfs, dataset, props)
            made_client = True
        restored = []
        for chain, upto in chosen:
            if "/" in chain.area and not datasets.exists(zfs, f"{dataset}/{chain.area.rsplit('/', 1)[0]}"):
                datasets.create(zfs, f"{dataset}/{chain.area.rsplit('/', 1)[0]}")
            restored.append(restore_chain(target, read_keys, zfs, chain, upto, f"{dataset}/{chain.area}",
                                          progress=progress))  # fmt: skip
            _ensure_mounted(zfs, f"{dataset}/{chain.area}")  # live data again, where the client expects it
        report = service.import_clients(store, zfs, by=by)
        store.audit(by, "offsite.restore", client, offsite_target=target_name, point=point,
                    areas=[r.area for r in restored])  # fmt: skip
        return {
            "client": client,
            "target": target_name,
            "point": point,
            "client_created": made_client,
            "imported": report.added,
            "restored": [r.__dict__ for r in restored],
        }
    finally:
        target.close()


# -- verification -----------------------------------------------------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    """relative path → SHA-256 of each regular file (symlinks by their target) under ``root``."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = "link:" + os.readlink(full)
                continue
            h = hashlib.sha256()
            with open(full, "rb") as fh:
                for block in iter(lambda: fh.read(1024 * 1024), b""):  # noqa: B023
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


def verify(
    store: Store, paths: Paths, zfs: ZfsHost, client_name: str, target_name: str, *, receive: bool = True,
    progress: Progress | None = None, check: Callable[[], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Download the client's latest chain of every area, check every tag and digest, and (``receive``) receive it
    into a scratch dataset and compare its files with the local recovery point. Records the result."""
    client = service.get_client(store, client_name)
    read_keys = keys.all_keys(store, paths)
    target = config.open_target(store, paths, target_name)
    detail: dict[str, Any] = {"areas": [], "receive": receive}
    ok = False
    try:
        chains = catalog(target, read_keys, client.name)
        if not chains:
            raise NothingOffsite(target_name, f"client {client.name}")
        local = {p.id: p for p in points.scan(zfs, client).points}
        for chain, upto in select(chains, client.name, "latest"):
            detail["areas"].append(_verify_area(store, zfs, target, read_keys, chain, upto, local, receive,
                                                progress, check))  # fmt: skip
        ok = all(a["ok"] for a in detail["areas"])
    except OffsiteError as exc:
        detail["error"] = exc.to_dict()
    finally:
        target.close()
        record_verification(store, client.name, target_name, ok, detail)
        error = (detail.get("error") or {}).get("message") or "the restored files differ from the local point"
        watch.verified(store, client.name, target_name, ok, error)
    return {"ok": ok, "client": client.name, "target": target_name, **detail}


def _verify_area(
    store: Store, zfs: ZfsHost, target: Target, read_keys: dict[bytes, bytes], chain: ChainInfo, upto: int,
    local: dict[str, points.RecoveryPoint], receive: bool, progress: Progress | None, check: Callable[[], None] | None,
) -> dict[str, Any]:  # fmt: skip
    last = chain.streams[upto]["snapshot"]
    out: dict[str, Any] = {"area": chain.area, "chain_id": chain.chain_id.hex(), "point": f"{chain.area}@{last}",
                           "streams": upto + 1, "ok": False}  # fmt: skip
    if not receive:
        for entry in chain.streams[: upto + 1]:
            manifest = repo.read_stream_manifest(target, read_keys, chain.client, chain.area, entry)
            result = download.read_stream(target, read_keys, manifest, None, check=check)
            out["chunks"] = out.get("chunks", 0) + result.chunks
        out["ok"] = True
        return out
    pool = service.pool_name(store)
    scratch_root = f"{pool}/offsite-verify"
    if not datasets.exists(zfs, scratch_root):
        datasets.create(zfs, scratch_root, {"mountpoint": "none"})
    scratch = f"{scratch_root}/{chain.client}-{secrets.token_hex(4)}"
    clone = f"{scratch_root}/{chain.client}-local-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="bulwark-verify-") as tmp:
        try:
            restored = restore_chain(target, read_keys, zfs, chain, upto, scratch, progress=progress, check=check,
                                     set_points=False)  # fmt: skip
            out["chunks"] = restored.chunks
            out["plain_bytes"] = restored.plain_bytes
            point = local.get(f"{chain.area}@{last}")
            if point is None:
                out["ok"] = True
                out["files"] = None
                out["note"] = "the local point is gone (pruned); the stream authenticated and received"
                return out
            properties.set_properties(zfs, scratch, {"mountpoint": f"{tmp}/offsite", "readonly": "on"})
            _ensure_mounted(zfs, scratch)
            snapshots.clone(zfs, point.snapshot, clone, {"mountpoint": f"{tmp}/local", "readonly": "on"})
            theirs, ours = tree_digest(Path(tmp) / "offsite"), tree_digest(Path(tmp) / "local")
            out["files"] = len(ours)
            out["differences"] = sorted(set(theirs.items()) ^ set(ours.items()))[:20]
            out["ok"] = theirs == ours
        finally:
            for name in (clone, scratch):
                if datasets.exists(zfs, name):
                    zfs.retry_spurious_busy(lambda n=name: zfs.zfs("destroy", "-r", n, subject=n))  # type: ignore[misc]
    return out


def _ensure_mounted(zfs: ZfsHost, dataset: str) -> None:
    """Mount ``dataset`` unless it is (zfs-fuse mounts a dataset as soon as its mountpoint is set)."""
    mounted = properties.get_one(zfs, dataset, ("mounted",)).get("mounted")
    if mounted is None or mounted.value != "yes":
        datasets.mount(zfs, dataset)


def record_verification(store: Store, client: str, target: str, ok: bool, detail: dict[str, Any]) -> None:
    with store.write() as tx:
        tx.execute("INSERT INTO offsite_verifications (client, target, at, ok, detail) VALUES (?, ?, ?, ?, ?)",
                   (client, target, time.time(), int(ok), json.dumps(detail, default=str)))  # fmt: skip


def last_verification(store: Store, client: str, target: str | None = None) -> dict[str, Any] | None:
    sql = "SELECT * FROM offsite_verifications WHERE client = ?"
    params: tuple[Any, ...] = (client,)
    if target is not None:
        sql += " AND target = ?"
        params += (target,)
    row = store.query_one(sql + " ORDER BY at DESC LIMIT 1", params)
    if row is None:
        return None
    return {"client": row["client"], "target": row["target"], "at": row["at"], "ok": bool(row["ok"]),
            "detail": json.loads(row["detail"])}  # fmt: skip
