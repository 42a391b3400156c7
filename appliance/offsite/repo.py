"""The repository on a target: its ``config`` object, where chains and streams live, and sealed manifests
(docs/offsite-format.md §2, §5, §6)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from appliance.offsite import envelope
from appliance.offsite.errors import ForeignRepository, ObjectMissing, Tampered, UnsupportedVersion
from appliance.offsite.targets.base import Target

FORMAT = "bulwark-offsite"
VERSION = 1
MAX_CHUNKS = 10**8


def area_component(area: str) -> str:
    return area.replace("/", "~")


def area_from_component(component: str) -> str:
    return component.replace("~", "/")


def area_dir(client: str, area: str) -> str:
    return f"clients/{client}/{area_component(area)}"


def chain_path(client: str, area: str, chain_id: bytes) -> str:
    return f"{area_dir(client, area)}/chains/{chain_id.hex()}"


def stream_dir(client: str, area: str, stream_id: bytes) -> str:
    return f"{area_dir(client, area)}/streams/{stream_id.hex()}"


def chunk_path(client: str, area: str, stream_id: bytes, index: int) -> str:
    if not 0 <= index < MAX_CHUNKS:
        raise ValueError("chunk index out of range")
    return f"{stream_dir(client, area, stream_id)}/{index:08d}"


def manifest_path(client: str, area: str, stream_id: bytes) -> str:
    return f"{stream_dir(client, area, stream_id)}/manifest"


def new_id() -> bytes:
    return secrets.token_bytes(envelope.ID_SIZE)


# -- config ----------------------------------------------------------------------------------------------------


def read_config(target: Target) -> dict[str, Any] | None:
    try:
        raw = target.get("config")
    except ObjectMissing:
        return None
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Tampered("config", "not JSON") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise Tampered("config", "not a Bulwark offsite repository")
    if config.get("version") != VERSION:
        raise UnsupportedVersion("config", config.get("version"))
    return config


def ensure_config(target: Target, expected_id: str | None, hostname: str) -> str:
    """The repository id, creating the repository if the target is empty. Writing to another appliance's
    repository is refused (:class:`ForeignRepository`)."""
    config = read_config(target)
    if config is None:
        repo_id = expected_id or secrets.token_hex(16)
        doc = {"format": FORMAT, "version": VERSION, "repository_id": repo_id, "created_at": time.time(),
               "appliance": hostname}  # fmt: skip
        target.put("config", json.dumps(doc, sort_keys=True).encode())
        return repo_id
    repo_id = str(config.get("repository_id", ""))
    if expected_id is not None and repo_id != expected_id:
        raise ForeignRepository(target.name, config.get("appliance", "unknown"))
    return repo_id


# -- manifests ---------------------------------------------------------------------------------------------------


def seal_json(data_key: bytes, key_id: bytes, kind: int, owner: bytes, index: int, doc: dict[str, Any]) -> bytes:
    blob, _ = envelope.Sealer(data_key, key_id, kind, owner).seal(json.dumps(doc, sort_keys=True).encode(), index)
    return bytes(blob)


def open_json(
    keys: dict[bytes, bytes], kind: int, owner: bytes, index: int | None, name: str, blob: bytes
) -> dict[str, Any]:
    """Authenticate and parse a manifest; ``index`` None accepts any generation (chain manifests)."""
    if index is None:
        index = envelope.parse_header(name, blob).index
    opened = envelope.Opener(keys, kind, owner, limit=envelope.MANIFEST_LIMIT).open(name, blob, index)
    try:
        doc = json.loads(opened.payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Tampered(name, "authentic but not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise Tampered(name, "authentic but not a version 1 manifest")
    return doc


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class ChainInfo:
    client: str
    area: str
    chain_id: bytes
    manifest: dict[str, Any]

    @property
    def streams(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("streams", []))

    @property
    def updated_at(self) -> float:
        return float(self.manifest.get("updated_at", 0))


def write_chain(
    target: Target, data_key: bytes, key_id: bytes, client: str, area: str, chain_id: bytes,
    created_at: float, streams: list[dict[str, Any]],
) -> None:  # fmt: skip
    doc = {
        "format": 1,
        "chain_id": chain_id.hex(),
        "client": client,
        "area": area,
        "generation": len(streams),
        "created_at": created_at,
        "updated_at": time.time(),
        "streams": streams,
    }
    blob = seal_json(data_key, key_id, envelope.CHAIN_MANIFEST, chain_id, len(streams), doc)
    target.put(chain_path(client, area, chain_id), blob)


def read_chain(target: Target, keys: dict[bytes, bytes], client: str, area: str, chain_id: bytes) -> ChainInfo:
    name = chain_path(client, area, chain_id)
    doc = open_json(keys, envelope.CHAIN_MANIFEST, chain_id, None, name, target.get(name))
    if doc.get("client") != client or doc.get("area") != area or doc.get("chain_id") != chain_id.hex():
        raise Tampered(name, "names another client, area or chain than where it is stored")
    streams = doc.get("streams")
    if not isinstance(streams, list) or doc.get("generation") != len(streams):
        raise Tampered(name, "its stream list does not match its generation")
    for k, entry in enumerate(streams):
        if entry.get("seq") != k or (k > 0 and entry.get("base") != streams[k - 1].get("snapshot")):
            raise Tampered(name, f"stream {k} is out of sequence")
    return ChainInfo(client, area, chain_id, doc)


def read_stream_manifest(
    target: Target, keys: dict[bytes, bytes], client: str, area: str, entry: dict[str, Any]
) -> dict[str, Any]:
    """The stream manifest a chain entry names, checked against the entry's digest."""
    stream_id = bytes.fromhex(entry["stream_id"])
    name = manifest_path(client, area, stream_id)
    blob = target.get(name)
    if sha256(blob) != entry.get("manifest_sha256"):
        raise Tampered(name, "is not the stream manifest its chain recorded (replaced or edited)")
    doc = open_json(keys, envelope.STREAM_MANIFEST, stream_id, 0, name, blob)
    for key in ("snapshot", "base", "seq"):
        if doc.get(key) != entry.get(key):
            raise Tampered(name, f"its {key} differs from the chain's record")
    return doc


def list_layout(target: Target) -> dict[str, dict[str, list[bytes]]]:
    """client → area → chain ids, from the object names (nothing authenticated yet)."""
    out: dict[str, dict[str, list[bytes]]] = {}
    for path in target.list("clients/"):
        parts = path.split("/")
        if len(parts) == 5 and parts[3] == "chains":
            try:
                chain_id = bytes.fromhex(parts[4])
            except ValueError:
                continue
            out.setdefault(parts[1], {}).setdefault(area_from_component(parts[2]), []).append(chain_id)
    return out
