"""Agent image jobs: opened for one image, fed changed blocks, committed into a recovery point of
``images/<name>`` only when the appliance's block map equals the agent's (every block verified on arrival)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from appliance.clients import points
from appliance.clients.model import Client
from appliance.ingest import images
from appliance.ingest.credentials import Credential
from appliance.ingest.errors import ImageIncomplete, ImageNotFound, JobNotFound, JobNotOpen, ProtocolError
from appliance.ingest.images import Image
from appliance.ingest.jobs import active_client, mounted_root
from appliance.store import Store
from appliance.zfs import datasets
from appliance.zfs.errors import DatasetNotFound
from appliance.zfs.host import ZfsHost


def area(name: str) -> str:
    return f"images/{images.check_name(name)}"


def image_root(zfs: ZfsHost, client: Client, name: str, *, create: bool = False) -> Path:
    dataset = client.area_dataset(area(name))
    try:
        return mounted_root(zfs, dataset)  # no ZFS command while it stays mounted
    except DatasetNotFound:
        if not create:
            raise ImageNotFound(name) from None
    datasets.create(zfs, dataset, parents=True)
    return mounted_root(zfs, dataset)


def last_point(store: Store, zfs: ZfsHost, client: str, name: str) -> str | None:
    found = [p for p in points.list_points(store, zfs, client) if p.area == area(name) and p.source == "agent"]
    return max(found, key=lambda p: (p.created_at, p.seq)).id if found else None


def list_images(store: Store, zfs: ZfsHost, client: str) -> list[dict[str, Any]]:
    """The client's images, each with its points (newest first), for ``bulwark-agent status`` and restores."""
    found: dict[str, list[Any]] = {}
    for p in points.list_points(store, zfs, client):  # newest first
        if p.area.startswith("images/"):
            found.setdefault(p.area, []).append(p)
    return [
        {
            "image": a.split("/", 1)[1],
            "latest": ps[0].id,
            "created_at": ps[0].created_at,
            "bytes": ps[0].referenced_bytes,
            "points": [{"id": p.id, "created_at": p.created_at, "source": p.source} for p in ps],
        }
        for a, ps in sorted(found.items())
    ]


def open_job(store: Store, zfs: ZfsHost, cred: Credential, body: dict[str, Any]) -> dict[str, Any]:
    """A new image job; an earlier open job for the same image is marked aborted (the blocks it wrote stay in
    the image and its map, so they are not sent again)."""
    name = images.check_name(body.get("image"))
    size = images.check_size(body.get("size"))
    if body.get("block_size", images.BLOCK) != images.BLOCK:
        raise ProtocolError(f"this appliance keeps images in blocks of {images.BLOCK} bytes")
    consistency = body.get("consistency", "crash")
    if consistency not in images.CONSISTENCY:
        raise ProtocolError(f"consistency must be one of {', '.join(images.CONSISTENCY)}")
    client = active_client(store, cred)
    Image(image_root(zfs, client, name, create=True)).prepare(size)
    job_id = f"j-{secrets.token_hex(8)}"
    now = time.time()
    with store.write() as db:
        db.execute(
            "UPDATE agent_jobs SET state = 'aborted', error = 'superseded by a new job', finished_at = ?"
            " WHERE client = ? AND kind = 'image' AND image = ? AND state = 'open'",
            (now, client.name, name),
        )
        db.execute(
            "INSERT INTO agent_jobs (id, client, agent_id, kind, state, base_point, started_at, image, consistency,"
            " bytes_scanned, files) VALUES (?, ?, ?, 'image', 'open', ?, ?, ?, ?, ?, 1)",
            (job_id, client.name, cred.id, last_point(store, zfs, client.name, name), now, name, consistency, size),
        )
    base = _row(store, cred, job_id)["base_point"]
    return {"job": job_id, "image": name, "size": size, "block_size": images.BLOCK, "base_point": base}


def _row(store: Store, cred: Credential, job_id: str, *, open_only: bool = False) -> Any:
    row = store.query_one(
        "SELECT * FROM agent_jobs WHERE id = ? AND client = ? AND kind = 'image'", (str(job_id)[:64], cred.client)
    )
    if row is None:
        raise JobNotFound(str(job_id)[:64])
    if open_only and row["state"] != "open":
        raise JobNotOpen(row["id"], row["state"])
    return row


def job_image(store: Store, zfs: ZfsHost, cred: Credential, job_id: str) -> tuple[Any, Image]:
    row = _row(store, cred, job_id, open_only=True)
    client = active_client(store, cred)
    return row, Image(image_root(zfs, client, row["image"]))


def block_map(store: Store, zfs: ZfsHost, cred: Credential, job_id: str) -> bytes:
    _, image = job_image(store, zfs, cred, job_id)
    return image.block_map()


def receive(store: Store, zfs: ZfsHost, cred: Credential, job_id: str, body: bytes, encoding: str) -> int:
    row, image = job_image(store, zfs, cred, job_id)
    blocks = images.parse_blocks(body, encoding, row["bytes_scanned"])
    written = image.write_blocks(blocks, row["bytes_scanned"])
    with store.write() as db:
        db.execute("UPDATE agent_jobs SET bytes_sent = bytes_sent + ? WHERE id = ?", (len(body), row["id"]))
    return written


def commit(store: Store, zfs: ZfsHost, cred: Credential, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Take the point only if the image's block map is exactly the one the agent read."""
    row, image = job_image(store, zfs, cred, job_id)
    digest = body.get("map")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ProtocolError("'map' must be the BLAKE3 (64 hex digits) of the agent's block map")
    client = active_client(store, cred)
    size = row["bytes_scanned"]
    source = str(body.get("source", ""))[:4096]
    with image.locked():
        current = image.block_map()
        if image.differing(size, digest):
            unknown = sum(current[i : i + images.HASH] == images.UNKNOWN for i in range(0, len(current), images.HASH))
            detail = f"{unknown} block(s) unknown" if unknown else "the block maps differ"
            raise ImageIncomplete(row["image"], detail)
        image.finish(
            {
                "size": size,
                "block_size": images.BLOCK,
                "map": digest,
                "source": source,
                "consistency": row["consistency"],
                "job": row["id"],
                "committed_at": time.time(),
            }
        )
        taken = {p.snapshot for p in points.list_points(store, zfs, client.name)}
        now = time.time()
        attempt = 0
        dataset = client.area_dataset(area(row["image"]))
        while f"{dataset}@{points.snapname_for(now, 'agent', attempt)}" in taken:
            attempt += 1
        point = points.take_point(
            zfs,
            client,
            area(row["image"]),
            points.snapname_for(now, "agent", attempt),
            source="agent",
            created_by=f"agent:{cred.id}",
            verified="verified",
        )
    with store.write() as db:
        db.execute(
            "UPDATE agent_jobs SET state = 'committed', point = ?, finished_at = ? WHERE id = ?",
            (point.id, time.time(), row["id"]),
        )
    store.audit(f"agent:{cred.id}", "agent.image-backup", f"client:{client.name}", point=point.id, job=row["id"])
    done = _row(store, cred, row["id"])
    return {
        "job": row["id"],
        "point": point.id,
        "image": row["image"],
        "size": size,
        "consistency": row["consistency"],
        "bytes_sent": done["bytes_sent"],
    }
