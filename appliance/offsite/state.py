"""What the appliance records about the streams it sent: one row per stream, and the chains they form."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.store import Store


@dataclass(frozen=True)
class StreamRow:
    id: str
    target: str
    client: str
    area: str
    chain_id: str
    seq: int
    snapshot: str
    base: str | None
    key_id: str
    state: str
    chunks_done: int
    plain_bytes: int
    stored_bytes: int
    started_at: float
    completed_at: float | None
    seconds: float
    manifest_sha256: str | None

    def chain_entry(self, created_at: float) -> dict[str, Any]:
        return {
            "stream_id": self.id, "seq": self.seq, "snapshot": self.snapshot, "base": self.base,
            "created_at": created_at, "plain_bytes": self.plain_bytes, "stored_bytes": self.stored_bytes,
            "manifest_sha256": self.manifest_sha256,
        }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _row(r: Any) -> StreamRow:
    return StreamRow(**{k: r[k] for k in r.keys()})


def streams(
    store: Store, target: str, client: str, area: str | None = None, state: str | None = None
) -> list[StreamRow]:
    sql = "SELECT * FROM offsite_streams WHERE target = ? AND client = ?"
    params: list[Any] = [target, client]
    if area is not None:
        sql += " AND area = ?"
        params.append(area)
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    return [_row(r) for r in store.query(sql + " ORDER BY started_at, seq", tuple(params))]


def all_streams(store: Store, state: str | None = None) -> list[StreamRow]:
    if state is None:
        return [_row(r) for r in store.query("SELECT * FROM offsite_streams ORDER BY started_at")]
    return [_row(r) for r in store.query("SELECT * FROM offsite_streams WHERE state = ? ORDER BY started_at", (state,))]


def chains(store: Store, target: str, client: str, area: str) -> list[list[StreamRow]]:
    """Complete chains of an area, oldest first; each a list of its complete streams in order."""
    by_chain: dict[str, list[StreamRow]] = {}
    for row in streams(store, target, client, area, "complete"):
        by_chain.setdefault(row.chain_id, []).append(row)
    out = [sorted(rows, key=lambda r: r.seq) for rows in by_chain.values()]
    out = [c for c in out if c[0].seq == 0]
    return sorted(out, key=lambda c: c[0].started_at)


def insert(store: Store, row: StreamRow) -> None:
    with store.write() as tx:
        tx.execute(
            "INSERT INTO offsite_streams (id, target, client, area, chain_id, seq, snapshot, base, key_id, state,"
            " chunks_done, plain_bytes, stored_bytes, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'uploading',"
            " 0, 0, 0, ?)",
            (row.id, row.target, row.client, row.area, row.chain_id, row.seq, row.snapshot, row.base, row.key_id,
             row.started_at),
        )  # fmt: skip


def progress(store: Store, stream_id: str, chunks: int, plain_bytes: int) -> None:
    with store.write() as tx:
        tx.execute("UPDATE offsite_streams SET chunks_done = ?, plain_bytes = ? WHERE id = ?",
                   (chunks, plain_bytes, stream_id))  # fmt: skip


def complete(store: Store, stream_id: str, *, chunks: int, plain: int, stored: int, seconds: float, sha: str) -> None:
    with store.write() as tx:
        tx.execute(
            "UPDATE offsite_streams SET state = 'complete', chunks_done = ?, plain_bytes = ?, stored_bytes = ?,"
            " seconds = seconds + ?, completed_at = ?, manifest_sha256 = ? WHERE id = ?",
            (chunks, plain, stored, seconds, time.time(), sha, stream_id),
        )


def add_seconds(store: Store, stream_id: str, seconds: float) -> None:
    with store.write() as tx:
        tx.execute("UPDATE offsite_streams SET seconds = seconds + ? WHERE id = ?", (seconds, stream_id))


def abandon(store: Store, stream_id: str) -> None:
    with store.write() as tx:
        tx.execute("UPDATE offsite_streams SET state = 'abandoned' WHERE id = ?", (stream_id,))


def forget(store: Store, stream_ids: list[str]) -> None:
    with store.write() as tx:
        tx.executemany("DELETE FROM offsite_streams WHERE id = ?", [(s,) for s in stream_ids])


def observed_rate(store: Store, target: str) -> float | None:
    """Bytes per second of the target's completed uploads (the last 20), or None before any."""
    rows = store.query(
        "SELECT stored_bytes, seconds FROM offsite_streams WHERE target = ? AND state = 'complete' AND seconds > 0"
        " ORDER BY completed_at DESC LIMIT 20",
        (target,),
    )
    total_bytes = sum(r["stored_bytes"] for r in rows)
    total_s = sum(r["seconds"] for r in rows)
    return total_bytes / total_s if rows and total_s > 0 else None
