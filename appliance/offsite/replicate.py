"""Replicating one client to one target: what to send (chains and policy), resuming, chain manifests, retention.

For each dataset area of the client, oldest point first: an interrupted stream is resumed first (if its
snapshots still exist); then the points newer than the chain's last stream are sent as incrementals, each from
the one before; a new chain (a full of the newest point) starts when there is none, when the chain has
``chain_length`` streams or its full is older than ``chain_age``, or when its last point is gone locally.
After each stream the chain manifest is rewritten; then the target keeps the newest ``keep_chains`` chains.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.clients import model, points, service
from appliance.clients.points import RecoveryPoint
from appliance.offsite import config, keys, repo, state, upload
from appliance.offsite.state import StreamRow
from appliance.offsite.targets.base import Target
from appliance.store import Store
from appliance.system import settings
from appliance.system.paths import Paths
from appliance.zfs import properties
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.offsite")
MIN_ESTIMATE = 64 * 1024


@dataclass
class Planned:
    area: str
    point: RecoveryPoint
    base: RecoveryPoint | None
    chain_id: str
    seq: int
    resume: StreamRow | None = None

    @property
    def estimate(self) -> int:
        if self.base is None:
            return max(self.point.referenced_bytes, MIN_ESTIMATE)
        return max(abs(self.point.referenced_bytes - self.base.referenced_bytes), self.base.used_bytes, MIN_ESTIMATE)


@dataclass
class RunReport:
    client: str
    target: str
    streams: list[dict[str, Any]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    pruned_chains: int = 0
    chunks_uploaded: int = 0
    plain_bytes: int = 0
    stored_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def journal_path(paths: Paths, stream_id: str) -> Any:
    return paths.data_dir / "offsite" / "journal" / stream_id


def _area_points(scan: points.Scan, area: str) -> list[RecoveryPoint]:
    """The area's points, oldest first."""
    return sorted((p for p in scan.points if p.area == area), key=lambda p: (p.created_at, p.seq))


def plan(
    store: Store, target: str, scan: points.Scan, policy: config.Policy, now: float | None = None
) -> list[Planned]:
    """The streams to send, in order (pure apart from reading the stream records)."""
    now = time.time() if now is None else now
    out: list[Planned] = []
    client = scan.client.name
    for area in scan.areas:
        local = _area_points(scan, area)
        if not local:
            continue
        by_name = {p.snapname: p for p in local}
        uploading = state.streams(store, target, client, area, "uploading")
        chain_rows: list[StreamRow] = []
        chains = state.chains(store, target, client, area)
        if chains:
            chain_rows = chains[-1]
        for row in uploading:  # at most one: resume it if its snapshots are still there
            point, base = by_name.get(row.snapshot), by_name.get(row.base) if row.base else None
            if point is not None and (row.base is None or base is not None):
                out.append(Planned(area, point, base, row.chain_id, row.seq, resume=row))
                chain_rows = [r for r in (chains[-1] if chains and chains[-1][0].chain_id == row.chain_id else [])]
                chain_rows = chain_rows + [row]
            else:
                out.append(Planned(area, local[-1], None, "", -1, resume=row))  # seq -1: abandon it
        last = chain_rows[-1] if chain_rows else None
        last_point = by_name.get(last.snapshot) if last else None
        full_age = now - chain_rows[0].started_at if chain_rows else 0
        new_chain = (
            last is None
            or last_point is None
            or len(chain_rows) >= policy.chain_length
            or full_age > policy.chain_age_s
        )
        if new_chain:
            if last is not None and last.snapshot == local[-1].snapname:
                continue  # nothing newer than what the target holds
            out.append(Planned(area, local[-1], None, repo.new_id().hex(), 0))
            continue
        assert last is not None and last_point is not None
        newer = [p for p in local if (p.created_at, p.seq) > (last_point.created_at, last_point.seq)]
        base, seq = last_point, last.seq
        for p in newer[: max(0, policy.chain_length - len(chain_rows))]:
            seq += 1
            out.append(Planned(area, p, base, last.chain_id, seq))
            base = p
    return out


def backlog_bytes(store: Store, zfs: ZfsHost, client_name: str, target: str) -> int:
    client = service.get_client(store, client_name)
    policy = config.get_policy(store, client_name, target)
    return sum(p.estimate for p in plan(store, target, points.scan(zfs, client), policy) if p.seq >= 0)


def client_properties(zfs: ZfsHost, dataset: str) -> dict[str, str]:
    found = properties.get(zfs, [dataset], model.CLIENT_PROPS)
    return {k: v.value for k, v in found.get(dataset, {}).items() if v.is_set}


class Replicator:
    def __init__(
        self,
        store: Store,
        paths: Paths,
        zfs: ZfsHost,
        client: str,
        target: str,
        *,
        progress: Callable[[int, int, str], None] | None = None,
        check: Callable[[], None] | None = None,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.paths, self.zfs = store, paths, zfs
        self.client = service.get_client(store, client)
        self.record = config.get_target(store, target)
        self.policy = config.get_policy(store, client, target)
        self._progress, self._check, self._note = progress, check, note or (lambda m: log.info("%s", m))

    def run(self) -> RunReport:
        report = RunReport(self.client.name, self.record.name)
        key_id, data_key = keys.active_key(self.store, self.paths)
        target = config.open_target(self.store, self.paths, self.record.name)
        try:
            loaded = settings.load(self.store)
            hostname = loaded.hostname if loaded else "bulwark"
            repo_id = repo.ensure_config(target, self.record.config.get("repository_id"), hostname)
            if self.record.config.get("repository_id") != repo_id:
                config.remember_repository(self.store, self.record.name, repo_id)
            scan = points.scan(self.zfs, self.client)
            props = client_properties(self.zfs, self.client.dataset)
            todo = plan(self.store, self.record.name, scan, self.policy)
            total = sum(p.estimate for p in todo if p.seq >= 0)
            done_before = 0
            for item in todo:
                if item.seq < 0:
                    assert item.resume is not None
                    self._abandon(target, item.resume, "its snapshot is gone locally")
                    report.abandoned.append(item.resume.id)
                    continue
                sent = self._send(target, item, key_id, data_key, props, report, done_before, total)
                done_before += sent
            for area in scan.areas:
                report.pruned_chains += self._retain(target, area)
        finally:
            target.close()
        return report

    # -- one stream -----------------------------------------------------------------------------------------------

    def _send(
        self, target: Target, item: Planned, key_id: bytes, data_key: bytes, props: dict[str, str],
        report: RunReport, done_before: int, total: int,
    ) -> int:  # fmt: skip
        row = item.resume
        if row is None:
            row = StreamRow(
                repo.new_id().hex(), self.record.name, self.client.name, item.area, item.chain_id, item.seq,
                item.point.snapname, item.base.snapname if item.base else None, key_id.hex(), "uploading", 0, 0, 0,
                time.time(), None, 0.0, None,
            )  # fmt: skip
            state.insert(self.store, row)
        else:
            report.resumed.append(row.id)
            self._note(f"resuming stream {row.id} of {item.area}@{row.snapshot} after chunk {row.chunks_done}")
        stream_key_id = bytes.fromhex(row.key_id)
        stream_key = keys.require_key(keys.all_keys(self.store, self.paths), stream_key_id, f"stream {row.id}")
        spec = upload.StreamSpec(
            stream_id=bytes.fromhex(row.id), chain_id=bytes.fromhex(row.chain_id), seq=row.seq,
            client=self.client.name, area=item.area, dataset=self.client.area_dataset(item.area),
            snapshot=row.snapshot, base=row.base,
            point={"created_at": item.point.created_at, "source": item.point.source,
                   "created_by": item.point.created_by, "verified": item.point.verified},
            client_properties=props, chunk_size=upload.CHUNK_SIZE,
        )  # fmt: skip
        label = f"{item.area}@{row.snapshot}" + (f" (incremental from {row.base})" if row.base else " (full)")
        last_write = [0.0]

        def progress(plain: int, chunks: int) -> None:
            if self._progress is not None:
                self._progress(done_before + plain, max(total, done_before + plain), label)
            if time.monotonic() - last_write[0] > 2.0:
                last_write[0] = time.monotonic()
                state.progress(self.store, row.id, chunks, plain)

        started = time.monotonic()
        try:
            result = upload.upload_stream(
                target, self.zfs, spec, stream_key_id, stream_key, journal_path(self.paths, row.id),
                throttle=self.policy.throttle(), progress=progress, check=self._check,
            )  # fmt: skip
        except upload.ResumeMismatch as exc:
            self._note(f"{exc.message} ({label})")
            self._abandon(target, row, "the resent stream differed")
            report.abandoned.append(row.id)
            fresh = Planned(item.area, item.point, item.base, item.chain_id, item.seq)
            return self._send(target, fresh, key_id, data_key, props, report, done_before, total)
        except BaseException:
            state.add_seconds(self.store, row.id, time.monotonic() - started)
            raise
        state.complete(self.store, row.id, chunks=result.chunks, plain=result.plain_bytes,
                       stored=result.stored_bytes, seconds=result.seconds, sha=result.manifest_sha256)  # fmt: skip
        upload.Journal(journal_path(self.paths, row.id)).remove()
        self._write_chain(target, item.area, row.chain_id, key_id, data_key)
        report.streams.append({"stream_id": row.id, "area": item.area, "snapshot": row.snapshot, "base": row.base,
                               "seq": row.seq, "chunks": result.chunks, "uploaded_chunks": len(result.uploaded),
                               "resumed_from": result.resumed_from, "plain_bytes": result.plain_bytes,
                               "stored_bytes": result.stored_bytes})  # fmt: skip
        report.chunks_uploaded += len(result.uploaded)
        report.plain_bytes += result.plain_bytes
        report.stored_bytes += result.stored_bytes
        self._note(f"sent {label}: {result.chunks} chunks, {result.plain_bytes} bytes "
                   f"({result.stored_bytes} stored, {len(result.uploaded)} uploaded now)")  # fmt: skip
        return item.estimate

    def _write_chain(self, target: Target, area: str, chain_id: str, key_id: bytes, data_key: bytes) -> None:
        rows = [r for r in state.streams(self.store, self.record.name, self.client.name, area, "complete")
                if r.chain_id == chain_id]  # fmt: skip
        rows.sort(key=lambda r: r.seq)
        scan = {p.snapname: p for p in points.scan(self.zfs, self.client).points if p.area == area}
        entries = [r.chain_entry(scan[r.snapshot].created_at if r.snapshot in scan else r.started_at) for r in rows]
        repo.write_chain(target, data_key, key_id, self.client.name, area, bytes.fromhex(chain_id),
                         rows[0].started_at, entries)  # fmt: skip

    def _abandon(self, target: Target, row: StreamRow, why: str) -> None:
        self._note(f"abandoning stream {row.id} ({row.area}@{row.snapshot}): {why}")
        upload.delete_stream(target, self.client.name, row.area, bytes.fromhex(row.id))
        journal_path(self.paths, row.id).unlink(missing_ok=True)
        state.abandon(self.store, row.id)

    def _retain(self, target: Target, area: str) -> int:
        chains = state.chains(self.store, self.record.name, self.client.name, area)
        excess = chains[: max(0, len(chains) - self.record.keep_chains)]
        removed = 0
        for chain in excess:
            left = 0
            for row in reversed(chain):
                upload.delete_stream(target, self.client.name, area, bytes.fromhex(row.id))
                left += len(target.list(repo.stream_dir(self.client.name, area, bytes.fromhex(row.id)) + "/"))
            if left:  # S3 Object Lock still protects them: the chain stays listed, a later run tries again
                self._note(f"target retention: chain {chain[0].chain_id} of {area} is still locked ({left} objects);"
                           " it is removed by a later run")  # fmt: skip
                continue
            target.delete(repo.chain_path(self.client.name, area, bytes.fromhex(chain[0].chain_id)))
            state.forget(self.store, [r.id for r in chain])
            removed += 1
            self._note(f"target retention: removed chain {chain[0].chain_id} of {area} ({len(chain)} streams)")
        return removed
