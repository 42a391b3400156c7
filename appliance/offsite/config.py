"""Offsite targets and per-client policies as the appliance stores them, and opening a target from them."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.offsite import bandwidth
from appliance.offsite.bandwidth import Throttle
from appliance.offsite.errors import TargetExists, TargetNotFound
from appliance.offsite.targets.base import Target
from appliance.offsite.targets.local import LocalTarget
from appliance.offsite.targets.s3 import S3Config, S3Target
from appliance.offsite.targets.sftp import SftpConfig, SftpTarget
from appliance.store import Store
from appliance.system.errors import InvalidInput
from appliance.system.paths import Paths

TYPES = ("local", "sftp", "s3")
_NAME = re.compile(r"[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,31}")
DEFAULT_INTERVAL = 86400
DEFAULT_CHAIN_LENGTH = 30
DEFAULT_CHAIN_AGE = 30 * 86400


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            "a target name is 1 to 32 lowercase letters, digits and single hyphens, starting with a letter"
        )
    return name


@dataclass(frozen=True)
class TargetRecord:
    name: str
    type: str
    config: dict[str, Any]
    has_secret: bool
    keep_chains: int
    created_at: float
    updated_at: float

    def describe(self) -> str:
        c = self.config
        if self.type == "local":
            return str(c["path"])
        if self.type == "sftp":
            return f"sftp://{c['user']}@{c['host']}:{c['port']}{c['path']}"
        return f"s3://{c['bucket']}/{c.get('prefix', '')} at {c.get('endpoint') or 'AWS'}"

    def to_dict(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.config.items() if k != "repository_id"}
        return {
            "name": self.name,
            "type": self.type,
            "config": shown,
            "where": self.describe(),
            "has_secret": self.has_secret,
            "keep_chains": self.keep_chains,
            "repository_id": self.config.get("repository_id"),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def build_config(kind: str, raw: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """Validate a target's settings (and check that its secret is there when it needs one)."""
    if kind == "local":
        path = raw.get("path")
        if not isinstance(path, str) or not path.startswith("/") or any(ch in path for ch in "\n\r\0"):
            raise InvalidInput("a local target needs an absolute --path (a folder, or a USB disk's mount point)")
        return {"path": path, "require_mount": bool(raw.get("require_mount", False))}
    if kind == "sftp":
        cfg = SftpConfig(
            str(raw.get("host", "")), int(raw.get("port") or 22), str(raw.get("user", "")), str(raw.get("path", "")),
            str(raw.get("host_key", "")),
        ).check()  # fmt: skip
        if not secret:
            raise InvalidInput("an SFTP target needs the private key it signs in with (--identity-file)")
        return {"host": cfg.host, "port": cfg.port, "user": cfg.user, "path": cfg.path, "host_key": cfg.host_key}
    if kind == "s3":
        s3 = S3Config(
            bucket=str(raw.get("bucket", "")), endpoint=raw.get("endpoint") or None,
            region=str(raw.get("region") or "us-east-1"),
            prefix=str(raw.get("prefix") or ""), access_key=str(raw.get("access_key", "")),
            lock_days=int(str(raw["lock_days"])) if raw.get("lock_days") is not None else 30,
        ).check()  # fmt: skip
        if not secret:
            raise InvalidInput("an S3 target needs its secret key (--secret-key-stdin)")
        return {"bucket": s3.bucket, "endpoint": s3.endpoint, "region": s3.region, "prefix": s3.prefix,
                "access_key": s3.access_key, "lock_days": s3.lock_days}  # fmt: skip
    raise InvalidInput(f"target type {kind!r} must be one of {', '.join(TYPES)}")


def _record(row: Any) -> TargetRecord:
    return TargetRecord(row["name"], row["type"], json.loads(row["config"]), bool(row["secret"]), row["keep_chains"],
                        row["created_at"], row["updated_at"])  # fmt: skip


def add_target(
    store: Store, name: str, kind: str, raw: dict[str, Any], secret: str | None, *, keep_chains: int = 2, by: str
) -> TargetRecord:
    check_name(name)
    if not 1 <= keep_chains <= 1000:
        raise InvalidInput("keep-chains must be between 1 and 1000")
    config = build_config(kind, raw, secret)
    now = time.time()
    with store.write() as tx:
        if tx.execute("SELECT 1 FROM offsite_targets WHERE name = ?", (name,)).fetchone():
            raise TargetExists(name)
        tx.execute(
            "INSERT INTO offsite_targets (name, type, config, secret, keep_chains, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, kind, json.dumps(config, sort_keys=True), secret, keep_chains, now, now),
        )
    store.audit(by, "offsite.target.add", name, type=kind)
    return get_target(store, name)


def get_target(store: Store, name: str) -> TargetRecord:
    row = store.query_one("SELECT * FROM offsite_targets WHERE name = ?", (name,))
    if row is None:
        raise TargetNotFound(name)
    return _record(row)


def list_targets(store: Store) -> list[TargetRecord]:
    return [_record(r) for r in store.query("SELECT * FROM offsite_targets ORDER BY name")]


def remove_target(store: Store, name: str, *, by: str) -> None:
    get_target(store, name)
    with store.write() as tx:
        tx.execute("DELETE FROM offsite_targets WHERE name = ?", (name,))
    store.audit(by, "offsite.target.remove", name)


def remember_repository(store: Store, name: str, repository_id: str) -> None:
    record = get_target(store, name)
    config = {**record.config, "repository_id": repository_id}
    with store.write() as tx:
        tx.execute("UPDATE offsite_targets SET config = ?, updated_at = ? WHERE name = ?",
                   (json.dumps(config, sort_keys=True), time.time(), name))  # fmt: skip


def open_target(store: Store, paths: Paths, name: str) -> Target:
    row = store.query_one("SELECT * FROM offsite_targets WHERE name = ?", (name,))
    if row is None:
        raise TargetNotFound(name)
    return open_record(_record(row), row["secret"], paths)


def open_record(record: TargetRecord, secret: str | None, paths: Paths) -> Target:
    c = record.config
    if record.type == "local":
        return LocalTarget(record.name, Path(c["path"]), require_mount=bool(c.get("require_mount")))
    if record.type == "sftp":
        cfg = SftpConfig(c["host"], int(c["port"]), c["user"], c["path"], c["host_key"])
        return SftpTarget(record.name, cfg, secret or "", paths.data_dir / "offsite" / "ssh" / record.name)
    cfg3 = S3Config(
        bucket=c["bucket"], endpoint=c.get("endpoint"), region=c.get("region", "us-east-1"),
        prefix=c.get("prefix", ""), access_key=c["access_key"], lock_days=int(c.get("lock_days", 30)),
    )  # fmt: skip
    return S3Target(record.name, cfg3, secret or "")


# -- policies -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    client: str
    target: str
    enabled: bool
    interval_s: int
    chain_length: int
    chain_age_s: int
    bandwidth: list[bandwidth.Window]
    default_kbps: int | None
    next_run_at: float | None
    last_run_at: float | None
    last_job_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client, "target": self.target, "enabled": self.enabled, "interval_s": self.interval_s,
            "chain_length": self.chain_length, "chain_age_s": self.chain_age_s,
            "bandwidth": [w.text() for w in self.bandwidth], "default_kbps": self.default_kbps,
            "next_run_at": self.next_run_at, "last_run_at": self.last_run_at, "last_job_id": self.last_job_id,
        }  # fmt: skip

    def throttle(self) -> Throttle:
        return Throttle(self.bandwidth, self.default_kbps)


def _policy(row: Any) -> Policy:
    rules = [bandwidth.parse_rule(t) for t in json.loads(row["bandwidth"])]
    return Policy(row["client"], row["target"], bool(row["enabled"]), row["interval_s"], row["chain_length"],
                  row["chain_age_s"], rules, row["default_kbps"], row["next_run_at"], row["last_run_at"],
                  row["last_job_id"])  # fmt: skip


def get_policy(store: Store, client: str, target: str) -> Policy:
    row = store.query_one("SELECT * FROM offsite_policies WHERE client = ? AND target = ?", (client, target))
    if row is None:
        get_target(store, target)
        return Policy(client, target, False, DEFAULT_INTERVAL, DEFAULT_CHAIN_LENGTH, DEFAULT_CHAIN_AGE, [], None,
                      None, None, None)  # fmt: skip
    return _policy(row)


def list_policies(store: Store) -> list[Policy]:
    return [_policy(r) for r in store.query("SELECT * FROM offsite_policies ORDER BY client, target")]


def set_policy(
    store: Store, client: str, target: str, *, by: str, enabled: bool | None = None, interval_s: int | None = None,
    chain_length: int | None = None, chain_age_s: int | None = None, bandwidth_rules: list[str] | None = None,
    default_kbps: int | None | str = "keep",
) -> Policy:  # fmt: skip
    current = get_policy(store, client, target)
    rules = [w.text() for w in current.bandwidth] if bandwidth_rules is None else bandwidth_rules
    parsed = [bandwidth.parse_rule(r) for r in rules]
    new_interval = current.interval_s if interval_s is None else interval_s
    new_length = current.chain_length if chain_length is None else chain_length
    new_age = current.chain_age_s if chain_age_s is None else chain_age_s
    kbps = current.default_kbps if default_kbps == "keep" else default_kbps
    if not 300 <= new_interval <= 366 * 86400:
        raise InvalidInput("the offsite interval must be between 5 minutes and a year")
    if not 1 <= new_length <= 10000:
        raise InvalidInput("the chain length must be between 1 and 10000 streams")
    if not 3600 <= new_age <= 3660 * 86400:
        raise InvalidInput("the chain age must be between an hour and ten years")
    if kbps is not None and (not isinstance(kbps, int) or not 1 <= kbps <= 10**8):
        raise InvalidInput("the default bandwidth limit is 1 to 100000000 KiB/s, or none")
    on = current.enabled if enabled is None else enabled
    next_run = current.next_run_at if current.next_run_at is not None else time.time()
    with store.write() as tx:
        tx.execute(
            "INSERT INTO offsite_policies (client, target, enabled, interval_s, chain_length, chain_age_s, bandwidth,"
            " default_kbps, next_run_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (client, target) DO UPDATE SET"
            " enabled = excluded.enabled, interval_s = excluded.interval_s, chain_length = excluded.chain_length,"
            " chain_age_s = excluded.chain_age_s, bandwidth = excluded.bandwidth, default_kbps = excluded.default_kbps,"
            " next_run_at = excluded.next_run_at",
            (client, target, int(on), new_interval, new_length, new_age, json.dumps([w.text() for w in parsed]), kbps,
             next_run),
        )  # fmt: skip
    policy = get_policy(store, client, target)
    store.audit(
        by,
        "offsite.policy.set",
        f"{client}->{target}",
        **{k: v for k, v in policy.to_dict().items() if k not in ("client", "target")},
    )
    return policy
